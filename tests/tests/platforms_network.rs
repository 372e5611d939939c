//! A foreign-architecture RUN under QEMU user emulation (issue 16), from the real Debian
//! mirror (network test: ignored in unit test loops, run by scripts/test in CI with
//! `--include-ignored`). The base is a kiln.toml image of Debian's busybox-static for amd64
//! and arm64, fetched by kiln's own Debian client; a Dockerfile built for both platforms
//! RUNs that busybox in each, the arm64 one under qemu-aarch64 (registered by kiln when
//! binfmt_misc has no handler yet). CI installs qemu-user-static (scripts/setup).

use std::path::Path;
use std::process::Command;

use kiln_tests::{KilnStore, run_ok, write_context};

const SPEC: &str = r#"architectures = ["amd64", "arm64"]
packages = ["busybox-static"]

[[source]]
url = "http://deb.debian.org/debian"
suites = ["bookworm"]
"#;

const DOCKERFILE: &str = r#"FROM localhost/busybox-deb:1
USER 0
ARG TARGETARCH
RUN ["/bin/busybox", "sh", "-c", "echo \"$TARGETARCH $(/bin/busybox uname -m)\" | /bin/busybox tee /arch"]
"#;

#[test]
#[ignore = "network: the real Debian mirror; scripts/test runs it in CI"]
fn network_arm64_run_steps_run_under_qemu() {
    assert!(
        Path::new("/usr/bin/qemu-aarch64-static").is_file(),
        "qemu-user-static is missing (hint: run scripts/setup)"
    );
    // A host's binfmt_misc is mounted by systemd; a bare CI machine may have none. kiln then
    // mounts it in its own private mount namespace, and since kernel 6.7 handlers live with
    // that mount's instance, so they vanish when kiln exits. Mount it here as systemd
    // would, so the handler kiln registers can be read after the build.
    if !Path::new("/proc/sys/fs/binfmt_misc/register").exists() {
        run_ok(Command::new("mount").args(["-t", "binfmt_misc", "binfmt_misc", "/proc/sys/fs/binfmt_misc"]));
    }
    let store = KilnStore::new();
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    std::fs::create_dir_all(&base).unwrap();
    std::fs::write(base.join("kiln.toml"), SPEC).unwrap();
    run_ok(store.cmd(["build", "-q", "-t", "localhost/busybox-deb:1"]).arg(&base));

    let ctx = tmp.path().join("ctx");
    write_context(&ctx, DOCKERFILE);
    let out = run_ok(
        store
            .cmd([
                "build",
                "--progress",
                "plain",
                "--platform",
                "linux/amd64,linux/arm64",
                "-t",
                "app:qemu",
            ])
            .arg(&ctx)
            .env("SOURCE_DATE_EPOCH", "1700000000"),
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("arm64 aarch64"), "{log}");
    assert!(log.contains("amd64 x86_64"), "{log}");
    assert_eq!(
        kiln_tests::platform_file(&store, "app:qemu", "arm64", "/arch"),
        "arm64 aarch64\n"
    );
    assert_eq!(
        kiln_tests::platform_file(&store, "app:qemu", "amd64", "/arch"),
        "amd64 x86_64\n"
    );

    // The handler kiln relies on is registered with the F flag (by kiln or by the host).
    let handler = std::fs::read_to_string("/proc/sys/fs/binfmt_misc/qemu-aarch64").unwrap();
    assert!(handler.starts_with("enabled"), "{handler}");
    assert!(
        handler.lines().any(|l| l.starts_with("flags:") && l.contains('F')),
        "{handler}"
    );

    // The emulated step's image is reproducible: again from scratch, the same digest.
    let first = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let again = run_ok(
        store
            .cmd(["build", "-q", "--no-cache", "--platform", "linux/amd64,linux/arm64"])
            .arg(&ctx)
            .env("SOURCE_DATE_EPOCH", "1700000000"),
    );
    assert_eq!(String::from_utf8_lossy(&again.stdout).trim(), first);
}
