//! Bad input to RUN (issue 3): each is one located error line (`error: …Dockerfile:LINE…`, or
//! the flag at fault for a command-line mistake) with a hint, exit 2, and nothing tagged.
//! A failing step exits 1 and shows its exit code, the line and the last 20 output lines.

use std::path::Path;

use kiln_tests::{KilnStore, build_busybox_base, require_tool};

struct Case {
    name: &'static str,
    /// The line after `FROM localhost/busybox:test` (so it is Dockerfile line 2).
    line: &'static str,
    flags: &'static [&'static str],
    /// Texts the first error line must hold (besides the hint).
    says: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        name: "unknown mount type",
        line: "RUN --mount=type=nfs,target=/x true",
        flags: &[],
        says: &["Dockerfile:2", "unknown mount type \"nfs\""],
    },
    Case {
        name: "unknown mount option",
        line: "RUN --mount=type=cache,target=/x,colour=red true",
        flags: &[],
        says: &["Dockerfile:2", "unknown option \"colour\""],
    },
    Case {
        name: "mount without a target",
        line: "RUN --mount=type=tmpfs true",
        flags: &[],
        says: &["Dockerfile:2", "target"],
    },
    Case {
        name: "missing required secret",
        line: "RUN --mount=type=secret,id=tok,required=true true",
        flags: &[],
        says: &["Dockerfile:2", "secret \"tok\" is required"],
    },
    Case {
        name: "secret file that does not exist",
        line: "RUN --mount=type=secret,id=tok cat /run/secrets/tok",
        flags: &["--secret", "id=tok,src=/nonexistent/kiln-test-secret"],
        says: &["--secret id=tok", "/nonexistent/kiln-test-secret", "does not exist"],
    },
    Case {
        name: "missing required ssh agent",
        line: "RUN --mount=type=ssh,required=true true",
        flags: &[],
        says: &["Dockerfile:2", "ssh agent \"default\" is required"],
    },
    Case {
        name: "RUN without a command",
        line: "RUN",
        flags: &[],
        says: &["Dockerfile:2", "RUN"],
    },
    Case {
        name: "RUN with an empty exec form",
        line: "RUN []",
        flags: &[],
        says: &["Dockerfile:2", "empty command"],
    },
    Case {
        name: "runtime not on PATH",
        line: "RUN true",
        flags: &["--runtime", "no-such-runtime"],
        says: &["Dockerfile:2", "no-such-runtime"],
    },
    Case {
        name: "runtime path that does not exist",
        line: "RUN true",
        flags: &["--runtime", "/no/such/dir/runc"],
        says: &["Dockerfile:2", "/no/such/dir/runc"],
    },
    Case {
        name: "bad RUN --network",
        line: "RUN --network=bridge2 true",
        flags: &[],
        says: &["Dockerfile:2", "bridge2"],
    },
    Case {
        name: "RUN --security=insecure",
        line: "RUN --security=insecure true",
        flags: &[],
        says: &["Dockerfile:2", "insecure"],
    },
    Case {
        name: "command missing from the image (exec form)",
        line: "RUN [\"/no/such/command\"]",
        flags: &[],
        says: &["Dockerfile:2", "/no/such/command"],
    },
];

fn write_dockerfile(dir: &Path, body: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("Dockerfile"), body).unwrap();
}

#[test]
fn run_bad_input_is_one_located_error_with_a_hint() {
    require_tool("runc");
    let tmp = tempfile::tempdir().unwrap();
    let store = KilnStore::new();
    build_busybox_base(&store, tmp.path());
    let index_before = store.index();
    let mut failures = Vec::new();
    for (i, case) in CASES.iter().enumerate() {
        let ctx = tmp.path().join(format!("case-{i}"));
        write_dockerfile(&ctx, &format!("FROM localhost/busybox:test\n{}\n", case.line));
        let out = store
            .cmd(["build", "--progress", "quiet", "-t", "localhost/bad:test"])
            .args(case.flags)
            .arg(&ctx)
            .env_remove("SSH_AUTH_SOCK")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let first = stderr.lines().next().unwrap_or_default();
        let mut problems = Vec::new();
        if out.status.code() != Some(2) {
            problems.push(format!("exit {:?}, expected 2", out.status.code()));
        }
        if !first.starts_with("error: ") {
            problems.push("the first line is not `error: …`".to_string());
        }
        if !first.contains("(hint: ") {
            problems.push("no hint on the error line".to_string());
        }
        if first.matches("(hint: ").count() > 1 {
            problems.push("more than one hint on the error line".to_string());
        }
        for s in case.says {
            if !first.contains(s) {
                problems.push(format!("the error line does not say {s:?}"));
            }
        }
        // Only the error line and its source snippet (`  N | …`, `    | ^`) may follow.
        for extra in stderr.lines().skip(1) {
            if !extra.trim_start().starts_with(|c: char| c.is_ascii_digit() || c == '|') {
                problems.push(format!("unexpected extra line {extra:?}"));
            }
        }
        if !problems.is_empty() {
            failures.push(format!("{}: {}\n  stderr:\n{stderr}", case.name, problems.join("; ")));
        }
    }
    assert_eq!(store.index(), index_before, "a bad build changed the store's index");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn run_failing_step_exits_1_with_line_code_and_last_20_lines() {
    require_tool("runc");
    let tmp = tempfile::tempdir().unwrap();
    let store = KilnStore::new();
    build_busybox_base(&store, tmp.path());
    let ctx = tmp.path().join("ctx");
    write_dockerfile(
        &ctx,
        "FROM localhost/busybox:test\nRUN echo first > /first\nRUN for i in $(seq 1 30); do echo out-line-$i; done; exit 5\nRUN echo never\n",
    );
    let out = store
        .cmd(["build", "--progress", "plain", "-t", "localhost/failing:test"])
        .arg(&ctx)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "a failing step exits 1:\n{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "one error line:\n{stderr}");
    let first = errors[0];
    for s in ["Dockerfile:3", "exit code 5", "RUN for i in"] {
        assert!(first.contains(s), "the error line should say {s:?}: {first}");
    }
    let shown: Vec<&str> = stderr
        .lines()
        .skip_while(|l| !l.starts_with("error:"))
        .skip(1)
        .map(str::trim)
        .collect();
    // The last 20 lines of output: out-line-11 … out-line-30 (stderr lines are shown too:
    // conformance case 51-run-failing-step).
    assert!(
        shown.contains(&"out-line-30") && shown.contains(&"out-line-11"),
        "{stderr}"
    );
    assert!(
        !shown.contains(&"out-line-10"),
        "more than the last 20 lines shown:\n{stderr}"
    );
    assert!(!stderr.contains("never"), "a step after the failing one ran:\n{stderr}");
    assert!(
        !store.index().to_string().contains("localhost/failing"),
        "a failed build was tagged"
    );
    // Nothing of the failed step stays mounted or on disk.
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(
        !mounts.contains(&store.path().display().to_string()),
        "mounts left under the store after a failure"
    );
    let run_dir = store.path().join("kiln/run");
    let left: Vec<_> = std::fs::read_dir(&run_dir)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "step dirs left in {}: {left:?}", run_dir.display());
}
