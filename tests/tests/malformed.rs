//! Bad Dockerfiles: each `kiln build` must exit with exactly 2, print one `error: ` line
//! located at `Dockerfile:LINE[:COL]` with a `hint:`, and add nothing to the store.
//!
//! The error is checked for its location, not its wording, except for a word or two that
//! shows the right problem was found (`needle`).

use std::path::Path;

use kiln_tests::{KilnStore, describe_failure, run_ok};

/// One malformed Dockerfile.
struct Case {
    name: &'static str,
    dockerfile: &'static str,
    /// Extra `kiln build` arguments (before the context).
    args: &'static [&'static str],
    /// Line the error must point at.
    line: usize,
    /// Column, where the error can point inside the line.
    col: Option<usize>,
    /// Text (case-insensitive) the error line must contain.
    needle: &'static str,
}

const CASES: &[Case] = &[
    Case {
        name: "unknown instruction",
        dockerfile: "FROM scratch\nCOPY a /a\nFROOB bar\n",
        args: &[],
        line: 3,
        col: Some(1),
        needle: "froob",
    },
    Case {
        name: "unknown flag",
        dockerfile: "FROM scratch\n\nCOPY --nope=1 a /b\n",
        args: &[],
        line: 3,
        col: Some(6),
        needle: "nope",
    },
    Case {
        name: "COPY with one argument",
        dockerfile: "FROM scratch\nCOPY onlyone\n",
        args: &[],
        line: 2,
        col: None,
        needle: "copy",
    },
    Case {
        name: "FROM without an image",
        dockerfile: "# comment\nFROM\n",
        args: &[],
        line: 2,
        col: None,
        needle: "from",
    },
    Case {
        name: "FROM a AS without a name",
        dockerfile: "FROM scratch AS\nCOPY a /a\n",
        args: &[],
        line: 1,
        col: None,
        needle: "as",
    },
    Case {
        name: "unterminated heredoc",
        dockerfile: "FROM scratch\nCOPY <<EOF /x\nhello\n",
        args: &[],
        line: 2,
        col: None,
        needle: "EOF",
    },
    Case {
        name: "bad escape directive",
        dockerfile: "# escape=x\nFROM scratch\n",
        args: &[],
        line: 1,
        col: None,
        needle: "escape",
    },
    Case {
        name: "SHELL not in JSON form",
        dockerfile: "FROM scratch\nSHELL /bin/sh -c\n",
        args: &[],
        line: 2,
        col: None,
        needle: "shell",
    },
    Case {
        name: "ONBUILD FROM",
        dockerfile: "FROM scratch\nENV a=1\nONBUILD FROM other\n",
        args: &[],
        line: 3,
        col: None,
        needle: "onbuild",
    },
    Case {
        name: "HEALTHCHECK --interval=abc",
        dockerfile: "FROM scratch\nHEALTHCHECK --interval=abc CMD true\n",
        args: &[],
        line: 2,
        col: Some(13),
        needle: "interval",
    },
    Case {
        name: "bad --chmod",
        dockerfile: "FROM scratch\nCOPY --chmod=u+rwx a /b\n",
        args: &[],
        line: 2,
        col: Some(6),
        needle: "chmod",
    },
    Case {
        name: "EXPOSE with a bad port",
        dockerfile: "FROM scratch\nEXPOSE 80\nEXPOSE 80/xyz\n",
        args: &[],
        line: 3,
        col: None,
        needle: "80/xyz",
    },
    Case {
        name: "COPY --from a later stage",
        dockerfile: "FROM scratch AS first\nCOPY --from=second /x /y\nFROM scratch AS second\nCOPY a /x\n",
        args: &[],
        line: 2,
        col: None,
        needle: "second",
    },
    Case {
        name: "COPY --from a later stage index",
        dockerfile: "FROM scratch\nCOPY --from=1 /x /y\nFROM scratch\n",
        args: &[],
        line: 2,
        col: None,
        needle: "1",
    },
    Case {
        name: "unknown --target",
        dockerfile: "FROM scratch AS build\nCOPY a /a\n",
        args: &["--target", "nope"],
        line: 1,
        col: None,
        needle: "nope",
    },
    Case {
        name: "missing source file",
        dockerfile: "FROM scratch\nCOPY a /a\nCOPY missing.txt /x\n",
        args: &[],
        line: 3,
        col: None,
        needle: "missing.txt",
    },
    Case {
        name: "undefined base image",
        dockerfile: "FROM scratch AS ok\nFROM does-not-exist:1\n",
        args: &[],
        line: 2,
        col: None,
        needle: "does-not-exist",
    },
    Case {
        name: "empty FROM $UNSET",
        dockerfile: "ARG UNSET\nFROM $UNSET\n",
        args: &[],
        line: 2,
        col: None,
        needle: "empty",
    },
    Case {
        name: "${x:?message} on an unset variable",
        dockerfile: "FROM scratch\nENV a=1\nENV b=\"${x:?must be set}\"\n",
        args: &[],
        line: 3,
        col: None,
        needle: "must be set",
    },
    Case {
        name: "STOPSIGNAL with two arguments",
        dockerfile: "FROM scratch\nSTOPSIGNAL SIGTERM SIGKILL\n",
        args: &[],
        line: 2,
        col: None,
        needle: "stopsignal",
    },
    Case {
        name: "FROM --platform=bad",
        dockerfile: "FROM scratch\nFROM --platform=bad scratch\n",
        args: &[],
        line: 2,
        col: Some(6),
        needle: "bad",
    },
    Case {
        name: "instruction before FROM",
        dockerfile: "ARG V=1\nENV a=1\nFROM scratch\n",
        args: &[],
        line: 2,
        col: None,
        needle: "from",
    },
    Case {
        name: "empty Dockerfile",
        dockerfile: "# only a comment\n",
        args: &[],
        line: 1,
        col: None,
        needle: "empty",
    },
    Case {
        name: "duplicate stage name",
        dockerfile: "FROM scratch AS a\nCOPY a /a\nFROM scratch AS a\n",
        args: &[],
        line: 3,
        col: None,
        needle: "a",
    },
    Case {
        name: "--chown with an unknown user",
        dockerfile: "FROM localhost/malformed-base:1\nCOPY --chown=nosuchuser a /a\n",
        args: &[],
        line: 2,
        col: None,
        needle: "nosuchuser",
    },
    Case {
        name: "unterminated ${",
        dockerfile: "FROM scratch\nLABEL a=${x\n",
        args: &[],
        line: 2,
        col: None,
        needle: "}",
    },
    Case {
        name: "ADD --checksum of a local file",
        dockerfile: "FROM scratch\nADD --checksum=sha256:0000 a /a\n",
        args: &[],
        line: 2,
        col: Some(5),
        needle: "checksum",
    },
    Case {
        name: "ENV without a value",
        dockerfile: "FROM scratch\nENV\n",
        args: &[],
        line: 2,
        col: None,
        needle: "env",
    },
];

/// `kiln images --format json` and the raw index.json: what must not change.
fn store_state(store: &KilnStore) -> (String, String) {
    let out = run_ok(&mut store.cmd(["images", "--format", "json"]));
    let index = std::fs::read_to_string(store.path().join("index.json")).unwrap_or_default();
    (String::from_utf8_lossy(&out.stdout).into_owned(), index)
}

fn check(store: &KilnStore, dir: &Path, case: &Case) -> Result<(), String> {
    let ctx = dir.join(case.name.replace(|c: char| !c.is_ascii_alphanumeric(), "-"));
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("a"), "a\n").unwrap();
    std::fs::write(ctx.join("Dockerfile"), case.dockerfile).unwrap();
    let mut cmd = store.cmd(["build", "--progress", "plain", "-t", "localhost/malformed:never"]);
    cmd.args(case.args).arg(&ctx).current_dir(&ctx);
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut problems = Vec::new();
    if out.status.code() != Some(2) {
        problems.push(format!("exit status {:?}, expected 2", out.status.code()));
    }
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error: ")).collect();
    match errors.as_slice() {
        [line] => {
            let loc = match case.col {
                Some(c) => format!("Dockerfile:{}:{c}:", case.line),
                None => format!("Dockerfile:{}:", case.line),
            };
            if !line.contains(&loc) {
                problems.push(format!("the error line does not contain {loc:?}"));
            }
            if !line.to_lowercase().contains(&case.needle.to_lowercase()) {
                problems.push(format!("the error line does not mention {:?}", case.needle));
            }
        }
        other => problems.push(format!("{} lines start with \"error: \", expected 1", other.len())),
    }
    if !stderr.contains("hint:") {
        problems.push("no hint: in the output".into());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "--- {}\n{}\n{}",
            case.name,
            problems.join("\n"),
            describe_failure(&cmd, &out)
        ))
    }
}

#[test]
fn malformed_dockerfiles_give_located_errors() {
    assert!(CASES.len() >= 20, "the table needs at least 20 cases");
    let store = KilnStore::new();
    let tmp = tempfile::tempdir().unwrap();
    // A base with /etc/passwd and /etc/group, for the --chown case.
    let base = tmp.path().join("base");
    std::fs::create_dir_all(base.join("etc")).unwrap();
    std::fs::write(base.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(base.join("etc/group"), "root:x:0:\n").unwrap();
    std::fs::write(base.join("Dockerfile"), "FROM scratch\nCOPY etc /etc\n").unwrap();
    run_ok(
        store
            .cmd(["build", "--progress", "quiet", "-t", "localhost/malformed-base:1"])
            .arg(&base),
    );

    let before = store_state(&store);
    let mut failures = Vec::new();
    for case in CASES {
        if let Err(e) = check(&store, tmp.path(), case) {
            failures.push(e);
        }
        let after = store_state(&store);
        if after != before {
            failures.push(format!(
                "--- {}\nthe store changed:\nbefore: {}\nafter: {}",
                case.name, before.0, after.0
            ));
            break;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} malformed cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}
