//! Reproducible RUN layers against the real Debian mirror (issue 3). A network test: ignored
//! in unit test loops, run by scripts/test in CI with `--include-ignored` (the convention of
//! tests/tests/debian_network.rs).
//!
//! A Debian bookworm base is made in the test (`debootstrap --variant=minbase`, then
//! `FROM scratch` + `COPY rootfs/ /`), and `RUN useradd -r app && apt-get update && apt-get
//! install -y --no-install-recommends jq` is built on it twice, in separate stores. The
//! second build runs under `faketime -f +3d`, kiln and the step alike: libfaketime is
//! bind-mounted into the step and preloaded through build args, so useradd, apt and dpkg see
//! a clock three days later. Both builds must give the same manifest digest. A third build
//! with `--keep-volatile` shows that the strip list is what makes it so.

use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_tests::{KilnStore, diff_trees, layout_image, require_tool, run_ok, umoci_unpack, walk_tree};

const MIRROR: &str = "http://deb.debian.org/debian";
const BASE: &str = "localhost/debian:bookworm";
const APP: &str = "localhost/app:test";

/// The same Dockerfile for every build: without the build args the preload is empty.
const APP_DOCKERFILE: &str = "FROM localhost/debian:bookworm
ARG LD_PRELOAD
ARG FAKETIME
RUN --mount=type=bind,source=faketime,target=/opt/faketime \\
    date -u +%F > /dev/stderr && useradd -r app && apt-get update \\
    && apt-get install -y --no-install-recommends jq
";

/// Host's libfaketime (Debian's `faketime` package), as the step will preload it.
fn libfaketime() -> PathBuf {
    require_tool("faketime");
    let lib = std::fs::read_dir("/usr/lib")
        .unwrap()
        .flatten()
        .map(|e| e.path().join("faketime/libfaketime.so.1"))
        .find(|p| p.is_file());
    lib.unwrap_or_else(|| {
        panic!(
            "libfaketime.so.1 not found under /usr/lib/*/faketime (hint: run scripts/setup, which installs faketime)"
        )
    })
}

fn debootstrap(dir: &Path) {
    let mut c = Command::new(require_tool("debootstrap"));
    c.args(["--variant=minbase", "bookworm"])
        .arg(dir.join("rootfs"))
        .arg(MIRROR);
    run_ok(&mut c);
    std::fs::write(dir.join("Dockerfile"), "FROM scratch\nCOPY rootfs/ /\nCMD [\"bash\"]\n").unwrap();
    // Device nodes and the pseudo filesystems' mount points' contents are not image content.
    std::fs::write(dir.join(".dockerignore"), "rootfs/dev/*\nrootfs/proc/*\nrootfs/sys/*\n").unwrap();
}

/// `[faketime -f +3d] kiln build …`; returns the manifest digest (iidfile).
fn build(store: &KilnStore, later: bool, args: &[&str], ctx: &Path, tag: &str) -> String {
    let iid = store.path().join(format!("{}.iid", tag.replace(['/', ':'], "_")));
    let mut c = if later {
        let mut f = Command::new(require_tool("faketime"));
        f.args(["-f", "+3d"]).arg(kiln_tests::kiln_bin());
        f.env("KILN_HOME", store.path()).env_remove("SOURCE_DATE_EPOCH");
        f.arg("build");
        f
    } else {
        let mut k = store.cmd(["build"]);
        k.env_remove("SOURCE_DATE_EPOCH");
        k
    };
    c.args(["--progress", "plain", "-t", tag, "--iidfile"])
        .arg(&iid)
        .args(args)
        .arg(ctx);
    let out = run_ok(&mut c);
    if later && !args.is_empty() {
        // The step saw the later clock (it prints its date first).
        let stderr = String::from_utf8_lossy(&out.stderr);
        let then = run_ok(Command::new("date").args(["-u", "-d", "+3 days", "+%F"])).stdout;
        let then = String::from_utf8_lossy(&then).trim().to_string();
        assert!(
            stderr
                .lines()
                .any(|l| kiln_tests::step_output(l).is_some_and(|t| t.ends_with(&then))),
            "the step did not run with the clock three days later ({then}):\n{stderr}"
        );
    }
    std::fs::read_to_string(&iid).unwrap().trim().to_string()
}

/// The paths in the last layer of `tag` (`tar -t` of the decompressed blob).
fn top_layer_paths(layout: &Path, tag: &str) -> Vec<String> {
    let (manifest, _) = layout_image(layout, Some(tag)).unwrap_or_else(|e| panic!("{e}"));
    let layers = manifest["layers"].as_array().expect("layers");
    let digest = layers.last().expect("a layer")["digest"].as_str().unwrap();
    let blob = layout.join("blobs/sha256").join(digest.trim_start_matches("sha256:"));
    let out = run_ok(Command::new("tar").arg("-tzf").arg(blob));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim_start_matches("./").trim_end_matches('/').to_string())
        .collect()
}

#[test]
#[ignore = "network: the real Debian mirror; scripts/test runs it in CI"]
fn network_run_apt_layers_are_reproducible() {
    require_tool("runc");
    require_tool("umoci");
    let lib = libfaketime();
    let tmp = tempfile::tempdir().unwrap();
    let base_ctx = tmp.path().join("base");
    debootstrap(&base_ctx);
    let app_ctx = tmp.path().join("app");
    std::fs::create_dir_all(app_ctx.join("faketime")).unwrap();
    std::fs::copy(&lib, app_ctx.join("faketime/libfaketime.so.1")).unwrap();
    std::fs::write(app_ctx.join("Dockerfile"), APP_DOCKERFILE).unwrap();

    let (a, b) = (KilnStore::new(), KilnStore::new());
    let base_a = build(&a, false, &[], &base_ctx, BASE);
    let base_b = build(&b, true, &[], &base_ctx, BASE);
    assert_eq!(base_a, base_b, "the Debian base itself differs between the stores");

    let now = build(&a, false, &[], &app_ctx, APP);
    let later = build(
        &b,
        true,
        &[
            "--build-arg",
            "LD_PRELOAD=/opt/faketime/libfaketime.so.1",
            "--build-arg",
            "FAKETIME=+3d",
        ],
        &app_ctx,
        APP,
    );

    let unpack = |store: &KilnStore, tag: &str, name: &str| {
        let rootfs = umoci_unpack(store.path(), tag, &tmp.path().join(name)).unwrap_or_else(|e| panic!("{e}"));
        let tree = walk_tree(&rootfs).unwrap();
        (rootfs, tree)
    };
    let (rootfs_a, tree_a) = unpack(&a, APP, "unpacked-now");
    if now != later {
        let (_, tree_b) = unpack(&b, APP, "unpacked-later");
        let diffs = diff_trees("now", &tree_a, "3 days later", &tree_b);
        panic!(
            "RUN apt-get is not reproducible: {now} vs {later}\nfiles that differ (content, mode, owner; times not compared):\n{}",
            if diffs.is_empty() {
                "(none: only times or layer metadata differ)".to_string()
            } else {
                diffs.join("\n")
            }
        );
    }
    // The step did its work, and the volatile files are gone.
    assert!(tree_a.contains_key("/usr/bin/jq"), "jq is not installed");
    let passwd = std::fs::read_to_string(rootfs_a.join("etc/passwd")).unwrap();
    assert!(passwd.lines().any(|l| l.starts_with("app:")), "useradd made no user");
    // The volatile files are not in the RUN layer (the base's versions, from debootstrap,
    // show through unchanged).
    let top = top_layer_paths(a.path(), APP);
    assert!(top.iter().any(|p| p == "usr/bin/jq"), "jq is not in the RUN layer");
    for volatile in [
        "var/log/dpkg.log",
        "var/log/apt/history.log",
        "var/log/apt/term.log",
        "var/log/alternatives.log",
        "var/cache/apt/pkgcache.bin",
        "var/cache/ldconfig/aux-cache",
        "etc/shadow-",
    ] {
        assert!(!top.iter().any(|p| p == volatile), "{volatile} is in the RUN layer");
    }
    // useradd writes a day number into /etc/shadow (none for a system account like this
    // one); with SOURCE_DATE_EPOCH (0 outside git) exported it is never the clock's day.
    let shadow = std::fs::read_to_string(rootfs_a.join("etc/shadow")).unwrap();
    let app = shadow
        .lines()
        .find(|l| l.starts_with("app:"))
        .expect("app in /etc/shadow");
    let lastchg = app.split(':').nth(2).unwrap_or_default();
    assert!(
        lastchg.is_empty() || lastchg == "0",
        "lastchg of app is the clock's day: {app}"
    );

    // With --keep-volatile the package managers' logs and caches stay, and the digest differs.
    let kept = build(&a, false, &["--keep-volatile"], &app_ctx, "localhost/app:kept");
    let kept_top = top_layer_paths(a.path(), "localhost/app:kept");
    for volatile in ["var/log/dpkg.log", "var/cache/apt/pkgcache.bin"] {
        assert!(
            kept_top.iter().any(|p| p == volatile),
            "--keep-volatile dropped {volatile}"
        );
    }
    assert_ne!(kept, now, "--keep-volatile gave the stripped image");
}
