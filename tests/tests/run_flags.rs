//! `kiln build` flags for RUN (issue 3): `--network`, `--runtime`, `--keep-volatile` (and its
//! place in the cache key), cache mounts kept across builds and listed by `kiln cache ls`.

use std::path::Path;
use std::process::Output;

use kiln_tests::{KilnStore, build_busybox_base, require_tool, run_ok, step_lines, write_context as context};

fn build(store: &KilnStore, ctx: &Path, tag: &str, flags: &[&str]) -> Output {
    let mut c = store.cmd(["build", "--progress", "plain", "-t", tag]);
    c.args(flags).arg(ctx);
    run_ok(&mut c)
}

#[test]
fn run_network_flag_sets_the_default_and_run_network_overrides_it() {
    require_tool("runc");
    let tmp = tempfile::tempdir().unwrap();
    let store = KilnStore::new();
    build_busybox_base(&store, tmp.path());
    let ctx = tmp.path().join("ctx");
    context(
        &ctx,
        "FROM localhost/busybox:test
RUN echo \"interfaces: $(ls /sys/class/net | tr '\\n' ' ')\"
RUN --network=default echo \"default: $(ls /sys/class/net | tr '\\n' ' ')\"
",
    );
    let none = step_lines(&build(&store, &ctx, "localhost/net:none", &["--network", "none"]));
    assert!(
        none.iter().any(|l| l.trim_end() == "interfaces: lo"),
        "--network none: only loopback expected, got {none:?}"
    );
    // The default network is the step's own namespace with the user-mode interface.
    assert!(
        none.iter().any(|l| l.trim() == "default: lo tap0"),
        "RUN --network=default overrides --network none (loopback and slirp4netns's tap0): {none:?}"
    );
}

#[test]
fn run_runtime_by_name_and_by_path() {
    let runc = require_tool("runc");
    let tmp = tempfile::tempdir().unwrap();
    let store = KilnStore::new();
    build_busybox_base(&store, tmp.path());
    let ctx = tmp.path().join("ctx");
    context(&ctx, "FROM localhost/busybox:test\nRUN echo ran > /ran\n");
    let by_name = build(&store, &ctx, "localhost/rt:name", &["--runtime", "runc", "--no-cache"]);
    let by_path = build(
        &store,
        &ctx,
        "localhost/rt:path",
        &["--runtime", runc.to_str().unwrap(), "--no-cache"],
    );
    assert_eq!(
        by_name.stdout, by_path.stdout,
        "the same step under the same runtime gives the same image"
    );
}

/// crun runs steps on this host too (hybrid cgroups, which crun 1.8 refuses): kiln gives its
/// private mount namespace a cgroup2 view and runs crun without a cgroup manager. The image
/// is the same as runc's, and the host's /sys/fs/cgroup is untouched.
#[test]
fn crun_runs_steps_with_the_same_digests_as_runc() {
    require_tool("runc");
    require_tool("crun");
    let tmp = tempfile::tempdir().unwrap();
    let store = KilnStore::new();
    build_busybox_base(&store, tmp.path());
    let ctx = tmp.path().join("ctx");
    context(
        &ctx,
        "FROM localhost/busybox:test\nRUN mkdir -p /app && echo ran > /app/ran && ln -s ran /app/link\nUSER 1000:1000\nRUN id -u > /tmp/uid; echo uid=$(id -u)\nWORKDIR /w\nRUN touch here\n",
    );
    let mounts_before = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let runc = build(&store, &ctx, "localhost/rt:runc", &["--runtime", "runc", "--no-cache"]);
    let crun = build(&store, &ctx, "localhost/rt:crun", &["--runtime", "crun", "--no-cache"]);
    let lines = step_lines(&crun);
    assert!(lines.iter().any(|l| l.trim() == "uid=1000"), "{lines:?}");
    assert_eq!(
        String::from_utf8_lossy(&runc.stdout),
        String::from_utf8_lossy(&crun.stdout),
        "crun and runc give the same image"
    );
    let mounts_after = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let cgroup2 = |m: &str| m.lines().filter(|l| l.contains(" - cgroup2 ")).count();
    assert_eq!(
        cgroup2(&mounts_before),
        cgroup2(&mounts_after),
        "kiln's cgroup2 view stays in its own mount namespace"
    );
}

#[test]
fn run_keep_volatile_keeps_package_logs_and_is_part_of_the_cache_key() {
    require_tool("runc");
    let tmp = tempfile::tempdir().unwrap();
    let store = KilnStore::new();
    build_busybox_base(&store, tmp.path());
    let ctx = tmp.path().join("ctx");
    context(
        &ctx,
        "FROM localhost/busybox:test
RUN mkdir -p /var/log/apt && date +%s%N > /var/log/dpkg.log && date +%s%N > /var/log/apt/term.log && echo app > /app.txt
",
    );
    let stripped = build(&store, &ctx, "localhost/vol:stripped", &[]);
    let again = build(&store, &ctx, "localhost/vol:again", &["--no-cache"]);
    assert_eq!(
        stripped.stdout, again.stdout,
        "with the volatile files stripped, two runs give the same image"
    );
    // From the same store, so a cache hit on the stripped layer would show here.
    let kept = build(&store, &ctx, "localhost/vol:kept", &["--keep-volatile"]);
    assert_ne!(
        kept.stdout, stripped.stdout,
        "--keep-volatile reused the stripped layer from the cache"
    );
    let bundle = tmp.path().join("kept-bundle");
    let rootfs =
        kiln_tests::umoci_unpack(store.path(), "localhost/vol:kept", &bundle).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        rootfs.join("var/log/dpkg.log").is_file(),
        "--keep-volatile dropped dpkg.log"
    );
    assert!(
        rootfs.join("var/log/apt/term.log").is_file(),
        "--keep-volatile dropped apt/term.log"
    );
    let bundle = tmp.path().join("stripped-bundle");
    let rootfs =
        kiln_tests::umoci_unpack(store.path(), "localhost/vol:stripped", &bundle).unwrap_or_else(|e| panic!("{e}"));
    assert!(!rootfs.join("var/log/dpkg.log").exists(), "dpkg.log was not stripped");
    assert!(rootfs.join("app.txt").is_file(), "the step's other file is missing");
}

#[test]
fn run_cache_mounts_outlive_builds_and_are_listed() {
    require_tool("runc");
    let tmp = tempfile::tempdir().unwrap();
    let store = KilnStore::new();
    build_busybox_base(&store, tmp.path());
    let first = tmp.path().join("first");
    context(
        &first,
        "FROM localhost/busybox:test\nRUN --mount=type=cache,id=kiln-test-cache,target=/c echo from-first-build > /c/note\n",
    );
    build(&store, &first, "localhost/cache:first", &[]);
    let second = tmp.path().join("second");
    context(
        &second,
        "FROM localhost/busybox:test\nRUN --mount=type=cache,id=kiln-test-cache,target=/elsewhere cat /elsewhere/note\n",
    );
    let out = build(&store, &second, "localhost/cache:second", &[]);
    assert!(
        step_lines(&out).iter().any(|l| l == "from-first-build"),
        "the cache mount lost what the first build wrote: {:?}",
        step_lines(&out)
    );
    let ls = run_ok(&mut store.cmd(["cache", "ls"]));
    let ls = String::from_utf8_lossy(&ls.stdout);
    assert!(
        ls.contains("kiln-test-cache"),
        "kiln cache ls does not list the cache:\n{ls}"
    );
    run_ok(&mut store.cmd(["cache", "rm", "kiln-test-cache"]));
    let ls = run_ok(&mut store.cmd(["cache", "ls"]));
    assert!(
        !String::from_utf8_lossy(&ls.stdout).contains("kiln-test-cache"),
        "kiln cache rm left the cache"
    );
}

#[test]
fn run_cache_key_covers_bind_mount_content_but_not_secret_values() {
    require_tool("runc");
    let tmp = tempfile::tempdir().unwrap();
    let store = KilnStore::new();
    build_busybox_base(&store, tmp.path());
    let ctx = tmp.path().join("ctx");
    context(
        &ctx,
        "FROM localhost/busybox:test
RUN --mount=type=bind,source=data,target=/d cat /d/in > /out
RUN --mount=type=secret,id=s test -s /run/secrets/s && echo secret-step > /s
",
    );
    std::fs::create_dir_all(ctx.join("data")).unwrap();
    std::fs::write(ctx.join("data/in"), "one\n").unwrap();
    let secret = tmp.path().join("secret");
    std::fs::write(&secret, "first-value").unwrap();
    let src = format!("id=s,src={}", secret.display());
    let flags = ["--secret", src.as_str()];
    let summary = |o: &Output| {
        String::from_utf8_lossy(&o.stderr)
            .lines()
            .find(|l| l.starts_with("built "))
            .unwrap_or_default()
            .to_string()
    };
    let first = build(&store, &ctx, "localhost/key:1", &flags);
    assert!(
        summary(&first).contains("(0 steps cached, 2 run)"),
        "{}",
        summary(&first)
    );
    // Nothing changed: both steps from the cache.
    let same = build(&store, &ctx, "localhost/key:1", &flags);
    assert!(summary(&same).contains("(2 steps cached, 0 run)"), "{}", summary(&same));
    // A new secret value is not part of the key (as in BuildKit).
    std::fs::write(&secret, "second-value").unwrap();
    let new_secret = build(&store, &ctx, "localhost/key:1", &flags);
    assert!(
        summary(&new_secret).contains("(2 steps cached, 0 run)"),
        "{}",
        summary(&new_secret)
    );
    // The bind-mounted file's content is: both steps run again (the second sits on the first).
    std::fs::write(ctx.join("data/in"), "two\n").unwrap();
    let changed = build(&store, &ctx, "localhost/key:1", &flags);
    assert!(
        summary(&changed).contains("(0 steps cached, 2 run)"),
        "{}",
        summary(&changed)
    );
    assert_ne!(changed.stdout, first.stdout, "new bind content, same image");
}
