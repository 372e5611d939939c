//! Rootless RUN: every RUN conformance case (tests/conformance/NN-run-*) built by an
//! unprivileged user gives the very same image digest as the build as root. The root build
//! is compared with buildah by the conformance test, so this carries that comparison over
//! to rootless builds, and it also proves rootless builds are bit-for-bit reproducible
//! against rootful ones.

use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_tests::{ROOTLESS_USER as USER, copy_tree, kiln_bin, require_tool, rootless_user, run_checked, run_ok};

const BASE: &str = "localhost/busybox:test";

fn chown_r(path: &Path, uid: u32, gid: u32) {
    run_ok(Command::new("chown").arg("-R").arg(format!("{uid}:{gid}")).arg(path));
}

/// `kiln build` as root or as the unprivileged user; returns the manifest digest.
fn build(as_user: bool, store: &Path, ctx: &Path, args: &[String]) -> Result<String, String> {
    let kiln = kiln_bin();
    let mut c = if as_user {
        let mut c = Command::new(require_tool("runuser"));
        c.args(["-u", USER, "--", "env"])
            .arg(format!("HOME={}", store.parent().unwrap().display()))
            .arg(format!("KILN_HOME={}", store.display()))
            .arg(format!("PATH={}", std::env::var("PATH").unwrap_or_default()))
            .arg("USER=".to_string() + USER)
            .arg(kiln);
        c
    } else {
        let mut c = Command::new(kiln);
        c.env("KILN_HOME", store);
        c
    };
    c.env_remove("SOURCE_DATE_EPOCH")
        .args(["build", "-q", "--platform", "linux/amd64"])
        .args(args)
        .arg(ctx)
        .current_dir(ctx);
    let o = run_checked(&mut c)?;
    Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
}

fn prepare(src: &Path, dst: &Path) {
    copy_tree(src, dst, &["args", "expected.json", "setup.sh", "buildah.Dockerfile"]).unwrap();
    if src.join("setup.sh").exists() {
        run_ok(Command::new("sh").arg("-eu").arg(src.join("setup.sh")).current_dir(dst));
    }
}

/// Build flags from a case's `args` file; `None` for cases this test does not cover
/// (failing steps, ssh agents, prebuilt images), which the root conformance test covers.
fn case_flags(dir: &Path) -> Option<Vec<String>> {
    let mut flags = Vec::new();
    let text = std::fs::read_to_string(dir.join("args")).unwrap_or_default();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (key, rest) = line.split_once(' ').unwrap_or((line, ""));
        match key {
            "build-arg" => flags.extend(["--build-arg".to_string(), rest.trim().to_string()]),
            "target" => flags.extend(["--target".to_string(), rest.trim().to_string()]),
            "file" => flags.extend(["-f".to_string(), rest.trim().to_string()]),
            "secret" => flags.extend(["--secret".to_string(), rest.trim().to_string()]),
            _ => return None,
        }
    }
    Some(flags)
}

#[test]
fn run_cases_build_the_same_image_rootless() {
    require_tool("runc");
    require_tool("newuidmap");
    require_tool("unshare");
    let (uid, gid) = rootless_user();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (root_store, user_store) = (tmp.path().join("root/store"), tmp.path().join("user/store"));
    std::fs::create_dir_all(&root_store).unwrap();
    std::fs::create_dir_all(&user_store).unwrap();
    chown_r(&tmp.path().join("user"), uid, gid);
    let conformance = Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance");

    // The same base, built by each.
    let base_ctx = tmp.path().join("base");
    prepare(&conformance.join("base"), &base_ctx);
    chown_r(&base_ctx, uid, gid);
    let tag = ["-t".to_string(), BASE.to_string()];
    let root_base = build(false, &root_store, &base_ctx, &tag).unwrap_or_else(|e| panic!("{e}"));
    let user_base = build(true, &user_store, &base_ctx, &tag).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(root_base, user_base, "the base image differs when built rootless");

    let mut cases: Vec<PathBuf> = std::fs::read_dir(&conformance)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().contains("-run-"))
        .collect();
    cases.sort();
    let (mut compared, mut failures) = (0, Vec::new());
    for dir in &cases {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let Some(flags) = case_flags(dir) else { continue };
        let ctx = tmp.path().join("cases").join(&name);
        prepare(dir, &ctx);
        chown_r(&ctx, uid, gid);
        let root = build(false, &root_store, &ctx, &flags);
        let user = build(true, &user_store, &ctx, &flags);
        match (root, user) {
            (Ok(r), Ok(u)) if r == u => compared += 1,
            (Ok(r), Ok(u)) => failures.push(format!("{name}: root built {r}, rootless built {u}")),
            (r, u) => failures.push(format!("{name}: root: {r:?}\nrootless: {u:?}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        compared + failures.len(),
        failures.join("\n")
    );
    assert!(compared >= 12, "only {compared} RUN cases were compared");
}
