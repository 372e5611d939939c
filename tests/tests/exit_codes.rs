//! The README's exit-code table, one row per documented error class: 0 success, 1 findings
//! or a failed verification, 2 bad usage or input, 3 environment or internal errors. Every
//! case runs the real binary and checks its exit code and that the error is one line that
//! says what to do.

use std::fs;
use std::net::TcpListener;
use std::path::Path;
use std::process::Stdio;

use kiln_tests::registry::TestRegistry;
use kiln_tests::{KilnStore, build_busybox_base, run_ok};

/// One row: what to run and the exit code the README promises.
struct Case {
    what: &'static str,
    args: Vec<String>,
    code: i32,
    /// Extra environment.
    env: Vec<(&'static str, String)>,
}

fn case(what: &'static str, code: i32, args: &[&str]) -> Case {
    Case {
        what,
        args: args.iter().map(|a| a.to_string()).collect(),
        code,
        env: vec![],
    }
}

/// A loopback port nothing listens on.
fn dead_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

#[test]
fn every_documented_error_class_exits_with_its_code() {
    let store = KilnStore::new();
    let dir = tempfile::tempdir().unwrap();
    let d = |rel: &str| dir.path().join(rel).display().to_string();
    build_busybox_base(&store, dir.path());
    write(&dir.path().join("ok/Dockerfile"), "FROM scratch\nCOPY Dockerfile /\n");
    run_ok(&mut store.cmd(["build", "-q", "-t", "app:1", &d("ok")]));
    write(&dir.path().join("bad/Dockerfile"), "FROM scratch\nFROB x\n");
    fs::create_dir_all(dir.path().join("empty")).unwrap();
    write(
        &dir.path().join("runfails/Dockerfile"),
        "FROM localhost/busybox:test\nRUN exit 7\n",
    );
    write(
        &dir.path().join("unpinned/Dockerfile"),
        "FROM debian:latest\nRUN apt-get update\n",
    );
    write(
        &dir.path().join("secret/Dockerfile"),
        "FROM scratch\nCOPY creds /creds\n",
    );
    write(
        &dir.path().join("secret/creds"),
        "token = ghp_Zq3vN8xL2mK7pR4tW9yB1cD6fH0jS5gA2eU8\n",
    );
    run_ok(&mut store.cmd(["build", "-q", "-t", "secret:1", &d("secret")]));
    write(&dir.path().join("badexp.kilnignore"), "CVE-2024-1 exp:2020-13-45\n");
    run_ok(
        store
            .cmd(["generate-key-pair", "--output-key-prefix", &d("cosign")])
            .env("COSIGN_PASSWORD", "pw")
            .stdin(Stdio::null()),
    );
    write(&dir.path().join("not-a-dir"), "a file\n");
    let dead = format!("127.0.0.1:{}", dead_port());
    write(
        &dir.path().join("unreachable/Dockerfile"),
        &format!("FROM {dead}/base:1\n"),
    );
    let registry = TestRegistry::start();

    let mut cases = vec![
        // 0: success.
        case("images", 0, &["images"]),
        case("build", 0, &["build", "-q", &d("ok")]),
        // 1: findings, a failing step, a verification that fails.
        case("lint finds unpinned FROM", 1, &["lint", &d("unpinned/Dockerfile")]),
        case("RUN exits non-zero", 1, &["build", "-q", &d("runfails")]),
        case(
            "scan --exit-code 1 with a secret",
            1,
            &["scan", "--scanners", "secret", "--exit-code", "1", "secret:1"],
        ),
        case(
            "verify an unsigned image",
            1,
            &["verify", "--key", &d("cosign.pub"), "app:1"],
        ),
        // 2: bad usage.
        case("unknown flag", 2, &["images", "--frobnicate"]),
        case("missing argument", 2, &["tag", "app:1"]),
        // 2: bad input.
        case("malformed Dockerfile", 2, &["build", &d("bad")]),
        case("context without a Dockerfile", 2, &["build", &d("empty")]),
        case(
            "-f names a missing file",
            2,
            &["build", "-f", &d("nope/Dockerfile"), &d("ok")],
        ),
        case("context is not a directory", 2, &["build", &d("not-a-dir")]),
        case("-t with an invalid name", 2, &["build", "-t", "UPPER", &d("ok")]),
        case("--label without =", 2, &["build", "--label", "novalue", &d("ok")]),
        case("db import of a missing file", 2, &["db", "import", &d("missing.json")]),
        case("a malformed digest", 2, &["inspect", "sha256:zz"]),
        case("an image not in the store", 2, &["inspect", "nothere:1"]),
        case("a digest prefix matching nothing", 2, &["inspect", "sha256:0000000"]),
        case("load of a missing archive", 2, &["load", "-i", &d("missing.tar")]),
        case("lint of a missing file", 2, &["lint", &d("missing/Dockerfile")]),
        case(
            "--ignore-file names a missing file",
            2,
            &[
                "scan",
                "--scanners",
                "secret",
                "--ignore-file",
                &d("missing.ignore"),
                "app:1",
            ],
        ),
        case(
            "an ignore file with exp:2020-13-45",
            2,
            &[
                "scan",
                "--scanners",
                "secret",
                "--ignore-file",
                &d("badexp.kilnignore"),
                "app:1",
            ],
        ),
        case("push of a name without a registry", 2, &["push", "app:1"]),
        case("pull of a name without a registry", 2, &["pull", "app:1"]),
        // 3: the environment.
        case(
            "pull from an unreachable registry",
            3,
            &["pull", "--retry-times", "1", &format!("{dead}/base:1")],
        ),
        case(
            "build FROM an unreachable registry",
            3,
            &["build", "--retry-times", "1", &d("unreachable")],
        ),
        case(
            "push to an unreachable registry",
            3,
            &["push", "--retry-times", "1", "app:1", &format!("{dead}/app:1")],
        ),
        case(
            "copy from an unreachable registry",
            3,
            &[
                "copy",
                "--retry-times",
                "1",
                &format!("{dead}/base:1"),
                &format!("oci:{}", d("layout")),
            ],
        ),
    ];
    cases.push(case("scan without a vulnerability database", 3, &["scan", "app:1"]));
    // A store that cannot be created (its parent is a file).
    let mut c = case("store cannot be created", 3, &["build", "-q", &d("ok")]);
    c.env.push(("KILN_HOME", d("not-a-dir/store")));
    cases.push(c);
    // A registry that exists but lacks the image is the user's mistake, not the environment's.
    cases.push(case(
        "pull of a tag the registry lacks",
        2,
        &["pull", &format!("{}/absent:1", registry.addr)],
    ));

    let mut wrong = Vec::new();
    for c in &cases {
        let mut cmd = store.cmd(&c.args);
        cmd.current_dir(dir.path()).stdin(Stdio::null());
        for (k, v) in &c.env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let code = out.status.code().unwrap_or(-1);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if code != c.code {
            wrong.push(format!(
                "{}: `kiln {}` exited {code}, want {}\n{stderr}",
                c.what,
                c.args.join(" "),
                c.code
            ));
            continue;
        }
        // Errors of kiln itself (2 and 3) are one `error:` line with a hint.
        if code >= 2 && !c.args.iter().any(|a| a == "--frobnicate" || a == "tag") {
            let first = stderr.lines().find(|l| l.starts_with("error: ")).unwrap_or_default();
            if !first.contains("hint") && !stderr.contains("hint") {
                wrong.push(format!("{}: no hint in the error:\n{stderr}", c.what));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cases wrong:\n\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
}
