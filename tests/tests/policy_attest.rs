//! `kiln policy` attestation, base-image and Rego rules, fixtures and output formats
//! (issue 13), with images built, signed and attested by `kiln build --sign` and pushed to
//! Debian's docker-registry on loopback.

use std::process::Output;

use kiln_tests::registry::SigningEnv;
use kiln_tests::{run_ok, validate_sarif_file};
use serde_json::Value;

struct Env(SigningEnv);

impl std::ops::Deref for Env {
    type Target = SigningEnv;
    fn deref(&self) -> &SigningEnv {
        &self.0
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

impl Env {
    fn new() -> Env {
        Env(SigningEnv::new(&["ci", "release"]))
    }

    fn name(&self, repo: &str) -> String {
        format!("127.0.0.1:{}/{repo}", self.reg.port())
    }

    /// Builds `dockerfile` as `repo` (with `extra` flags) and pushes it with what is attached.
    fn push(&self, repo: &str, dockerfile: &str, extra: &[&str]) -> String {
        let ctx = tempfile::tempdir_in(self.dir.path()).unwrap();
        std::fs::write(ctx.path().join("Dockerfile"), dockerfile).unwrap();
        let name = self.name(repo);
        let mut args = vec!["build", "-q", "-t", &name];
        args.extend_from_slice(extra);
        run_ok(self.kiln(&args).arg(ctx.path()));
        run_ok(&mut self.kiln(&["push", "-q", &name]));
        name
    }

    fn policy(&self, name: &str, text: &str) -> String {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }

    fn check(&self, policy: &str, image: &str, extra: &[&str]) -> Output {
        let mut args = vec!["policy", "check", "--no-cache", "--policy", policy];
        args.extend_from_slice(extra);
        args.push(image);
        self.kiln(&args).output().unwrap()
    }
}

#[track_caller]
fn code(o: &Output, want: i32, needle: &str) {
    assert_eq!(o.status.code(), Some(want), "{}", text(o));
    assert!(text(o).contains(needle), "expected {needle:?} in:\n{}", text(o));
}

const AUTH: &str = "version: 1\nauthorities:\n  ci: { key: ci.pub }\n  release: { key: release.pub }\nrules:\n  - name: production\n    images: [\"127.0.0.1:*/prod/**\"]\n";

#[test]
fn attestations_missing_wrong_authority_mismatch_and_match() {
    let e = Env::new();
    let ci = e.path("ci.key").display().to_string();
    let signed = e.push(
        "prod/att:1",
        "FROM scratch\nCOPY Dockerfile /d\n",
        &["--sign", "--key", &ci],
    );
    let plain = e.push("prod/plain:1", "FROM scratch\nCOPY Dockerfile /e\n", &[]);
    let rule = |by: &str, source: &str| {
        format!(
            "{AUTH}    attestations:\n      - type: slsaprovenance\n        by: [{by}]\n        match:\n          buildDefinition.externalParameters.source.path: \"{source}\"\n      - type: spdxjson\n        by: [{by}]\n"
        )
    };
    let good = e.policy("good.yaml", &rule("ci", "*/Dockerfile"));
    code(&e.check(&good, &signed, &[]), 0, "ALLOWED");
    code(
        &e.check(&good, &plain, &[]),
        1,
        "production: no slsaprovenance attestation by 'ci'",
    );
    let wrong = e.policy("wrong.yaml", &rule("release", "*/Dockerfile"));
    code(
        &e.check(&wrong, &signed, &[]),
        1,
        "no slsaprovenance attestation by 'release' (found: one signed by 'ci')",
    );
    let other = e.policy("other.yaml", &rule("ci", "git+https://example.com/team/*"));
    code(
        &e.check(&other, &signed, &[]),
        1,
        "/Dockerfile\", not \"git+https://example.com/team/*\"",
    );
    // The input document names the signer of each attestation.
    let p = e.policy("keys.yaml", &rule("ci", "*"));
    let out = run_ok(&mut e.kiln(&["policy", "input", "--policy", &p, &signed]));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let by_ci = doc["attestations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["authority"] == "ci")
        .count();
    assert!(
        by_ci >= 3,
        "provenance and two SBOMs, each as bundle and .att layer: {doc}"
    );
    assert_eq!(doc["provenance"]["authority"], "ci");

    // JSON and SARIF formats carry the same violation.
    let o = e.check(&wrong, &signed, &["--format", "json"]);
    assert_eq!(o.status.code(), Some(1));
    let decisions: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(decisions[0]["allowed"], false);
    assert_eq!(decisions[0]["violations"][0]["rule"], "production");
    let o = e.check(&wrong, &signed, &["--format", "sarif"]);
    assert_eq!(o.status.code(), Some(1));
    let sarif = e.path("out.sarif");
    std::fs::write(&sarif, &o.stdout).unwrap();
    validate_sarif_file(&sarif);
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["runs"][0]["results"][0]["ruleId"], "production");
}

#[test]
fn base_images_and_rego() {
    let e = Env::new();
    let base = e.push("base/b:1", "FROM scratch\nCOPY Dockerfile /base\n", &[]);
    let elsewhere = e.push("other/b:1", "FROM scratch\nCOPY Dockerfile /other\n", &[]);
    let good = e.push(
        "prod/good:1",
        &format!("FROM {base}\nCOPY Dockerfile /app\nUSER 1000\n"),
        &[],
    );
    let bad = e.push("prod/bad:1", &format!("FROM {elsewhere}\nCOPY Dockerfile /app\n"), &[]);
    let bases = e.policy(
        "bases.yaml",
        &format!("{AUTH}    base_images: [\"127.0.0.1:*/base/**\"]\n"),
    );
    code(&e.check(&bases, &good, &[]), 0, "ALLOWED");
    code(
        &e.check(&bases, &bad, &[]),
        1,
        &format!("production: base image {elsewhere} is outside the allowed 127.0.0.1:*/base/**"),
    );

    std::fs::create_dir_all(e.path("policies")).unwrap();
    std::fs::write(
        e.path("policies/root.rego"),
        "package kiln\n\ndeny contains msg if {\n\tinput.config.user == \"\"\n\tmsg := sprintf(\"%s runs as root\", [input.repository])\n}\n",
    )
    .unwrap();
    let rego = e.policy("rego.yaml", &format!("{AUTH}    rego: [policies/*.rego]\n"));
    code(&e.check(&rego, &good, &[]), 0, "ALLOWED");
    code(
        &e.check(&rego, &bad, &[]),
        1,
        &format!("production: rego: {} runs as root", bad.trim_end_matches(":1")),
    );
    std::fs::write(
        e.path("policies/broken.rego"),
        "package kiln\n\ndeny contains msg if {\n\tinput.x ==\n",
    )
    .unwrap();
    let o = e.check(&rego, &good, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("policies/broken.rego:"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let loc = err.split("broken.rego:").nth(1).unwrap();
    let mut parts = loc.split(':');
    let (l, c): (usize, usize) = (
        parts.next().unwrap().parse().unwrap(),
        parts.next().unwrap().parse().unwrap(),
    );
    assert!((4..=5).contains(&l) && c >= 1, "line:col of the syntax error: {err}");
}

#[test]
fn fixtures_pass_and_fail() {
    let e = Env::new();
    let root = e.push("prod/root:1", "FROM scratch\nCOPY Dockerfile /d\n", &[]);
    let p = e.policy("p.yaml", &format!("{AUTH}    config: {{ non_root: true }}\n"));
    let input: Value = serde_json::from_slice(&run_ok(&mut e.kiln(&["policy", "input", &root])).stdout).unwrap();
    let dir = e.path("fixtures");
    std::fs::create_dir_all(&dir).unwrap();
    let denied = serde_json::json!({"input": input, "allowed": false, "violations": ["production"]});
    std::fs::write(dir.join("root-denied.json"), denied.to_string()).unwrap();
    let mut nonroot = input.clone();
    nonroot["config"]["user"] = "65532".into();
    let ok = serde_json::json!({"input": nonroot, "allowed": true});
    std::fs::write(dir.join("nonroot-allowed.json"), ok.to_string()).unwrap();
    let dir_s = dir.display().to_string();
    let o = e.kiln(&["policy", "test", "--policy", &p, &dir_s]).output().unwrap();
    code(
        &o,
        0,
        "PASS nonroot-allowed.json\nPASS root-denied.json\n2 passed, 0 failed",
    );
    // A fixture expecting the wrong decision fails, with what was decided.
    let wrong = serde_json::json!({"input": input, "allowed": true});
    std::fs::write(dir.join("wrong.json"), wrong.to_string()).unwrap();
    let o = e.kiln(&["policy", "test", "--policy", &p, &dir_s]).output().unwrap();
    code(
        &o,
        1,
        "FAIL wrong.json: expected allowed, got denied [production: the image runs as root",
    );
    assert!(text(&o).contains("2 passed, 1 failed"), "{}", text(&o));
}
