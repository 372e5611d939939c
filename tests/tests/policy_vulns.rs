//! `kiln policy check` vulnerability rules (issue 13) against Debian's docker-registry on
//! loopback: an image kiln builds with a dpkg database and a hand-made OSV database. A
//! critical finding denies; an unexpired ignore allows and an expired one denies; an
//! OpenVEX `not_affected` statement (validated against the OpenVEX schema) allows, from a
//! file and as a VEX attestation signed by an authority; one signed by nobody the policy
//! trusts does not.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln_tests::registry::{SigningEnv, TestRegistry};
use kiln_tests::{KilnStore, last_line, run_ok, venv_tool};
use serde_json::{Value, json};

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

struct Env {
    base: SigningEnv,
    image: String,
    digest: String,
}

impl std::ops::Deref for Env {
    type Target = SigningEnv;
    fn deref(&self) -> &SigningEnv {
        &self.base
    }
}

impl Env {
    /// A Debian 12 image with openssl 3.0.11-1~deb12u2 in its dpkg database, pushed; a
    /// database where DSA-0001-1 (CVE-2024-0727, CVSS 9.8) affects it; keys `vex` and `other`.
    fn new() -> Env {
        let base = SigningEnv::new(&[]);
        let mut e = Env {
            image: format!("{}/prod/vuln:1", base.host()),
            base,
            digest: String::new(),
        };
        let ctx = e.path("ctx");
        write(
            &ctx.join("rootfs/etc/os-release"),
            "NAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\nID=debian\n",
        );
        write(
            &ctx.join("rootfs/var/lib/dpkg/status"),
            "Package: openssl\nStatus: install ok installed\nArchitecture: amd64\nVersion: 3.0.11-1~deb12u2\nMaintainer: Debian <debian@example.org>\n",
        );
        write(&ctx.join("Dockerfile"), "FROM scratch\nCOPY rootfs/ /\nUSER 1000\n");
        e.digest = last_line(&run_ok(e.kiln(&["build", "-q", "-t", &e.image]).arg(&ctx)));
        run_ok(&mut e.kiln(&["push", "-q", &e.image]));
        let osv = e.path("osv");
        let record = json!({
            "id": "DSA-0001-1",
            "modified": "2024-06-01T00:00:00Z",
            "aliases": ["CVE-2024-0727"],
            "summary": "openssl: NULL dereference in PKCS12 parsing",
            "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
            "affected": [{"package": {"ecosystem": "Debian:12", "name": "openssl"},
                          "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0.13-1~deb12u1"}]}]}]
        });
        write(&osv.join("DSA-0001-1.json"), &record.to_string());
        run_ok(e.kiln(&["db", "import"]).arg(&osv));
        for k in ["vex", "other"] {
            run_ok(e.kiln(&["generate-key-pair", "--output-key-prefix"]).arg(e.path(k)));
        }
        e
    }

    fn policy(&self, name: &str, vulns: &str) -> String {
        let p = self.path(name);
        let body = format!(
            "version: 1\nauthorities:\n  vex: {{ key: vex.pub }}\nrules:\n  - name: cves\n    images: [\"127.0.0.1:*/prod/**\"]\n    vulnerabilities:\n      max_severity: high\n{vulns}"
        );
        std::fs::write(&p, body).unwrap();
        p.display().to_string()
    }

    fn check(&self, policy: &str) -> Output {
        self.kiln(&["policy", "check", "--no-cache", "--policy", policy, &self.image])
            .output()
            .unwrap()
    }

    /// An OpenVEX document saying the image is not affected by CVE-2024-0727, checked
    /// against the OpenVEX schema.
    fn vex(&self, name: &str) -> PathBuf {
        let hex = self.digest.trim_start_matches("sha256:");
        let doc = json!({
            "@context": "https://openvex.dev/ns/v0.2.0",
            "@id": "https://openvex.dev/docs/example/vex-kiln-test",
            "author": "kiln tests",
            "timestamp": "2026-01-01T00:00:00Z",
            "version": 1,
            "statements": [{
                "vulnerability": {"name": "CVE-2024-0727"},
                "products": [{"@id": format!("pkg:oci/vuln@sha256%3A{hex}")}],
                "status": "not_affected",
                "justification": "vulnerable_code_not_in_execute_path"
            }]
        });
        let p = self.path(name);
        write(&p, &serde_json::to_string_pretty(&doc).unwrap());
        validate_openvex(&p);
        p
    }
}

/// Validates `doc` against tests/schemas/openvex-0.2.0.schema.json with Python's jsonschema.
fn validate_openvex(doc: &Path) {
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/openvex-0.2.0.schema.json");
    let script = "import json, sys\nimport jsonschema\nschema = json.load(open(sys.argv[1])); doc = json.load(open(sys.argv[2]))\ncls = jsonschema.validators.validator_for(schema)\ncls.check_schema(schema)\nerrors = sorted(cls(schema, format_checker=cls.FORMAT_CHECKER).iter_errors(doc), key=str)\nfor e in errors[:5]: print(e.message, list(e.path))\nsys.exit(1 if errors else 0)";
    run_ok(
        Command::new(venv_tool("python3"))
            .arg("-c")
            .arg(script)
            .arg(&schema)
            .arg(doc),
    );
}

#[test]
fn findings_ignores_and_vex_decide() {
    let e = Env::new();
    let plain = e.policy("plain.yaml", "");
    let o = e.check(&plain);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("cves: CVE-2024-0727 (CRITICAL) in openssl 3.0.11-1~deb12u2, above max_severity high (upgrade openssl to 3.0.13-1~deb12u1"),
        "{}",
        text(&o)
    );
    // The finding's record is in the input document.
    let input = run_ok(&mut e.kiln(&["policy", "input", &e.image]));
    let doc: Value = serde_json::from_slice(&input.stdout).unwrap();
    assert_eq!(doc["vulnerabilities"]["findings"][0]["id"], "DSA-0001-1", "{doc}");
    assert_eq!(doc["digest"], e.digest.as_str());

    let ignored = e.policy(
        "ignored.yaml",
        "      ignore:\n        - { id: CVE-2024-0727, until: 2999-12-31, reason: \"not reachable\" }\n",
    );
    let o = e.check(&ignored);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let expired = e.policy(
        "expired.yaml",
        "      ignore:\n        - { id: CVE-2024-0727, until: 2020-01-31, reason: \"was not reachable\" }\n",
    );
    let o = e.check(&expired);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("its ignore expired after 2020-01-31"), "{}", text(&o));

    // OpenVEX from a file next to the policy.
    e.vex("vex-file.json");
    let from_file = e.policy("from-file.yaml", "      vex: [vex-*.json]\n");
    let o = e.check(&from_file);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // The same statement as an attestation: by an authority it counts, by another key not.
    let att = e.vex("att.json");
    let other = e.path("other.key").display().to_string();
    run_ok(
        e.kiln(&[
            "attest",
            "--type",
            "https://openvex.dev/ns",
            "--key",
            &other,
            "--predicate",
        ])
        .arg(&att)
        .arg(&e.image),
    );
    let o = e.check(&plain);
    assert_eq!(
        o.status.code(),
        Some(1),
        "a VEX statement by an untrusted key counts for nothing: {}",
        text(&o)
    );
    let key = e.path("vex.key").display().to_string();
    run_ok(
        e.kiln(&[
            "attest",
            "--type",
            "https://openvex.dev/ns",
            "--key",
            &key,
            "--predicate",
        ])
        .arg(&att)
        .arg(&e.image),
    );
    let o = e.check(&plain);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn no_database_denies_with_the_reason() {
    let reg = TestRegistry::start();
    let store = KilnStore::new();
    let dir = tempfile::tempdir().unwrap();
    let image = format!("127.0.0.1:{}/prod/x:1", reg.port());
    write(&dir.path().join("ctx/Dockerfile"), "FROM scratch\nCOPY Dockerfile /d\n");
    run_ok(&mut store.cmd([
        "build",
        "-q",
        "-t",
        &image,
        &dir.path().join("ctx").display().to_string(),
    ]));
    run_ok(&mut store.cmd(["push", "-q", &image]));
    let p = dir.path().join("p.yaml");
    std::fs::write(
        &p,
        "version: 1\nrules:\n  - name: cves\n    images: [\"**\"]\n    vulnerabilities: { max_severity: none }\n",
    )
    .unwrap();
    let o = store
        .cmd(["policy", "check", "--policy"])
        .arg(&p)
        .arg(&image)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("cves: vulnerabilities could not be checked: vulnerabilities: no vulnerability database"),
        "{}",
        text(&o)
    );
}
