//! `kiln scan` vulnerability matching: a hand-made OSV database (introduced/fixed/
//! last_affected ranges, explicit versions, Debian source-package names and releases,
//! withdrawn records, GIT-only ranges, aliases shared by two records) imported from a
//! directory and an `all.zip`, against an image kiln builds from local files with a dpkg
//! database, Python dist-info and node_modules. The findings must be exactly the expected
//! ones. Also: `kiln db status`, the old-database warning, severity filtering, `--exit-code`,
//! `.kilnignore`, and SARIF valid against the 2.1.0 schema. A scan with nothing to check
//! against is not a pass: no database is an error (exit 3), and packages of an ecosystem the
//! database does not cover are reported as not checked in every format.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_tests::{KilnStore, run_ok};
use serde_json::{Value, json};

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Layer 1: os-release, dpkg status and Python packages; layer 2: node_modules.
fn build_image(store: &KilnStore, dir: &Path) {
    let ctx = dir.join("ctx");
    write(
        &ctx.join("rootfs/etc/os-release"),
        "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\nID=debian\n",
    );
    let status = [
        ("libssl3", "3.0.11-1~deb12u2", Some("openssl")),
        ("openssl", "3.0.11-1~deb12u2", None),
        ("zlib1g", "1:1.2.13.dfsg-1", Some("zlib (1:1.2.13.dfsg-1)")),
        ("libc6", "2.36-9+deb12u4", Some("glibc")),
        ("bash", "5.2.15-2+b2", Some("bash (5.2.15-2)")),
        ("tzdata", "2024a-0+deb12u1", None),
    ]
    .iter()
    .map(|(n, v, s)| {
        let src = s.map(|s| format!("Source: {s}\n")).unwrap_or_default();
        format!("Package: {n}\nStatus: install ok installed\nArchitecture: amd64\n{src}Version: {v}\nMaintainer: Debian <debian@example.org>\n")
    })
    .collect::<Vec<_>>()
    .join("\n");
    write(&ctx.join("rootfs/var/lib/dpkg/status"), &status);
    for (dist, name, version) in [
        ("requests-2.31.0", "requests", "2.31.0"),
        ("Django-4.2.0", "Django", "4.2.0"),
        ("PyYAML-5.3.1", "PyYAML", "5.3.1"),
        ("urllib3-2.2.2", "urllib3", "2.2.2"),
    ] {
        write(
            &ctx.join(format!(
                "rootfs/usr/lib/python3/dist-packages/{dist}.dist-info/METADATA"
            )),
            &format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"),
        );
    }
    for (name, version) in [
        ("lodash", "4.17.20"),
        ("minimist", "1.2.5"),
        ("semver", "7.5.1"),
        ("express", "4.19.2"),
    ] {
        write(
            &ctx.join(format!("app/node_modules/{name}/package.json")),
            &json!({"name": name, "version": version, "license": "MIT"}).to_string(),
        );
    }
    write(
        &ctx.join("app/package.json"),
        r#"{"name": "app", "version": "1.0.0", "private": true}"#,
    );
    write(
        &ctx.join("Dockerfile"),
        "FROM scratch\nCOPY rootfs/ /\nCOPY app/ /app/\nUSER 1000\n",
    );
    run_ok(
        store
            .cmd(["build", "--progress", "quiet", "-t", "localhost/vulnapp:1"])
            .arg(&ctx),
    );
}

fn ev(kind: &str, v: &str) -> Value {
    json!({ kind: v })
}

fn record(id: &str, eco: &str, name: &str, events: Vec<Value>) -> Value {
    json!({
        "id": id,
        "modified": "2024-06-01T00:00:00Z",
        "affected": [{"package": {"ecosystem": eco, "name": name}, "ranges": [{"type": "ECOSYSTEM", "events": events}]}]
    })
}

/// The hand-made database: some records as files in a directory, some in an all.zip.
fn write_db(dir: &Path) -> (PathBuf, PathBuf) {
    let files = dir.join("osv");
    std::fs::create_dir_all(&files).unwrap();
    let mut in_dir: Vec<Value> = vec![];
    let mut in_zip: Vec<Value> = vec![];
    // Debian: source package names, releases, epochs, binNMUs.
    let mut r = record(
        "DSA-0001-1",
        "Debian:12",
        "openssl",
        vec![ev("introduced", "0"), ev("fixed", "3.0.13-1~deb12u1")],
    );
    r["aliases"] = json!(["CVE-2024-0727"]);
    r["summary"] = json!("openssl: NULL dereference in PKCS12 parsing");
    r["severity"] = json!([{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"}]);
    in_zip.push(r);
    in_zip.push(record(
        "DSA-0002-1",
        "Debian:12",
        "openssl",
        vec![ev("introduced", "0"), ev("fixed", "3.0.11-1~deb12u1")],
    ));
    in_zip.push(record(
        "DSA-0003-1",
        "Debian:11",
        "openssl",
        vec![ev("introduced", "0")],
    ));
    let mut r = record(
        "DEBIAN-CVE-2024-2961",
        "Debian:12",
        "glibc",
        vec![ev("introduced", "0"), ev("last_affected", "2.36-9+deb12u4")],
    );
    r["affected"][0]["ecosystem_specific"] = json!({"urgency": "low"});
    in_zip.push(r);
    in_zip.push(record(
        "DEBIAN-CVE-2022-3715",
        "Debian:12",
        "bash",
        vec![ev("introduced", "0"), ev("fixed", "5.2.15-3")],
    ));
    in_zip.push(record(
        "DEBIAN-CVE-2023-45853",
        "Debian:12",
        "zlib",
        vec![ev("introduced", "1:1.2.13.dfsg-1"), ev("fixed", "1:1.2.13.dfsg-2")],
    ));
    let mut r = record("DSA-0007-1", "Debian:12", "openssl", vec![ev("introduced", "0")]);
    r["withdrawn"] = json!("2024-07-01T00:00:00Z");
    in_zip.push(r);
    // A binary package name is not a source name: no match for `libssl3` records.
    in_zip.push(record(
        "DSA-0008-1",
        "Debian:12",
        "libssl3",
        vec![ev("introduced", "0")],
    ));
    // PyPI: normalised names, explicit versions, shared aliases.
    let mut r = record(
        "GHSA-9wx4-h78v-vm56",
        "PyPI",
        "Requests",
        vec![ev("introduced", "2.3.0"), ev("fixed", "2.32.0")],
    );
    r["aliases"] = json!(["CVE-2024-35195"]);
    r["database_specific"] = json!({"severity": "MODERATE"});
    in_dir.push(r);
    let mut r = record(
        "PYSEC-2024-60",
        "PyPI",
        "requests",
        vec![ev("introduced", "0"), ev("fixed", "2.32.0")],
    );
    r["aliases"] = json!(["CVE-2024-35195"]);
    in_dir.push(r);
    in_dir.push(json!({
        "id": "GHSA-django-0001",
        "modified": "2024-06-01T00:00:00Z",
        "affected": [{"package": {"ecosystem": "PyPI", "name": "django"}, "versions": ["4.2.0", "4.2.1"]}],
        "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N"}]
    }));
    let mut r = record(
        "PYSEC-2021-142",
        "PyPI",
        "pyyaml",
        vec![ev("introduced", "0"), ev("fixed", "5.4")],
    );
    r["aliases"] = json!(["CVE-2020-14343"]);
    r["severity"] = json!([{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}]);
    in_dir.push(r);
    in_dir.push(record(
        "PYSEC-urllib3-old",
        "PyPI",
        "urllib3",
        vec![ev("introduced", "0"), ev("fixed", "2.2.2")],
    ));
    // npm: SEMVER ranges, last_affected, several ranges, a GIT-only range.
    let mut r = record(
        "GHSA-35jh-r3h4-6jhm",
        "npm",
        "lodash",
        vec![ev("introduced", "0"), ev("fixed", "4.17.21")],
    );
    r["affected"][0]["ranges"][0]["type"] = json!("SEMVER");
    r["database_specific"] = json!({"severity": "HIGH"});
    in_dir.push(r);
    in_dir.push(record(
        "GHSA-xvch-5gv4-984h",
        "npm",
        "minimist",
        vec![ev("introduced", "1.0.0"), ev("last_affected", "1.2.5")],
    ));
    in_dir.push(json!({
        "id": "GHSA-c2qf-rxjj-qqgw",
        "modified": "2024-06-01T00:00:00Z",
        "affected": [{"package": {"ecosystem": "npm", "name": "semver"}, "ranges": [
            {"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "5.7.2"}]},
            {"type": "SEMVER", "events": [{"introduced": "7.0.0"}, {"fixed": "7.5.2"}]}
        ]}]
    }));
    in_dir.push(record(
        "GHSA-lodash-newer",
        "npm",
        "lodash",
        vec![ev("introduced", "4.17.21")],
    ));
    in_dir.push(json!({
        "id": "GHSA-express-git",
        "modified": "2024-06-01T00:00:00Z",
        "affected": [{"package": {"ecosystem": "npm", "name": "express"}, "ranges": [
            {"type": "GIT", "repo": "https://github.com/expressjs/express", "events": [{"introduced": "0"}, {"fixed": "abc123"}]}
        ]}]
    }));
    for r in &in_dir {
        write(
            &files.join(format!("{}.json", r["id"].as_str().unwrap())),
            &serde_json::to_string_pretty(r).unwrap(),
        );
    }
    // all.zip, deflated, as OSV publishes it (one JSON file per record), made by Python's zipfile.
    let staging = dir.join("zipsrc");
    std::fs::create_dir_all(&staging).unwrap();
    for r in &in_zip {
        write(
            &staging.join(format!("{}.json", r["id"].as_str().unwrap())),
            &serde_json::to_string(r).unwrap(),
        );
    }
    let zip = dir.join("all.zip");
    run_ok(
        Command::new("python3")
            .arg("-c")
            .arg(
                "import sys, os, zipfile\nz = zipfile.ZipFile(sys.argv[2], 'w', zipfile.ZIP_DEFLATED)\nfor n in sorted(os.listdir(sys.argv[1])):\n    z.write(os.path.join(sys.argv[1], n), n)\nz.close()",
            )
            .arg(&staging)
            .arg(&zip),
    );
    (files, zip)
}

fn scan_json(store: &KilnStore, extra: &[&str]) -> (Value, String) {
    let mut c = store.cmd(["scan", "--format", "json", "--scanners", "vuln"]);
    c.args(extra).arg("localhost/vulnapp:1");
    let out = run_ok(&mut c);
    (
        serde_json::from_slice(&out.stdout).unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn finding_set(report: &Value) -> BTreeSet<String> {
    report["vulnerabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            format!(
                "{} {} {} fixed={} {} layer={}",
                v["id"].as_str().unwrap(),
                v["package"].as_str().unwrap(),
                v["installed"].as_str().unwrap(),
                v["fixed"].as_str().unwrap_or("-"),
                v["severity"].as_str().unwrap(),
                v["layer_index"]
            )
        })
        .collect()
}

#[test]
fn hand_made_osv_database_gives_exact_findings() {
    let store = KilnStore::new();
    let dir = tempfile::tempdir().unwrap();
    build_image(&store, dir.path());

    let status = run_ok(&mut store.cmd(["db", "status"]));
    assert!(String::from_utf8_lossy(&status.stdout).contains("no vulnerability database"));

    let (files, zip) = write_db(dir.path());
    let out = run_ok(store.cmd(["db", "import"]).arg(&files).arg(&zip));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("imported 18 OSV records"), "{text}");
    let status = run_ok(&mut store.cmd(["db", "status"]));
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("imported:") && text.contains("minutes ago"), "{text}");
    assert!(
        text.contains("Debian:12") && text.contains("PyPI") && text.contains("npm"),
        "{text}"
    );

    let (report, stderr) = scan_json(&store, &[]);
    assert!(!stderr.contains("vulnerability database"), "{stderr}");
    let expected: BTreeSet<String> = [
        "DSA-0001-1 libssl3 3.0.11-1~deb12u2 fixed=3.0.13-1~deb12u1 HIGH layer=1",
        "DSA-0001-1 openssl 3.0.11-1~deb12u2 fixed=3.0.13-1~deb12u1 HIGH layer=1",
        "DEBIAN-CVE-2024-2961 libc6 2.36-9+deb12u4 fixed=- LOW layer=1",
        "DEBIAN-CVE-2022-3715 bash 5.2.15-2+b2 fixed=5.2.15-3 UNKNOWN layer=1",
        "DEBIAN-CVE-2023-45853 zlib1g 1:1.2.13.dfsg-1 fixed=1:1.2.13.dfsg-2 UNKNOWN layer=1",
        "GHSA-9wx4-h78v-vm56 requests 2.31.0 fixed=2.32.0 MEDIUM layer=1",
        "GHSA-django-0001 Django 4.2.0 fixed=- HIGH layer=1",
        "PYSEC-2021-142 PyYAML 5.3.1 fixed=5.4 CRITICAL layer=1",
        "GHSA-35jh-r3h4-6jhm lodash 4.17.20 fixed=4.17.21 HIGH layer=2",
        "GHSA-xvch-5gv4-984h minimist 1.2.5 fixed=- UNKNOWN layer=2",
        "GHSA-c2qf-rxjj-qqgw semver 7.5.1 fixed=7.5.2 UNKNOWN layer=2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(finding_set(&report), expected);
    // Aliases and the source package are reported; the layer is the image's second one.
    let v = report["vulnerabilities"].as_array().unwrap();
    let ssl = v.iter().find(|f| f["package"] == "libssl3").unwrap();
    assert_eq!(ssl["aliases"], json!(["CVE-2024-0727"]));
    assert_eq!(ssl["source_package"], "openssl");
    assert_eq!(ssl["ecosystem"], "Debian:12");
    let lodash = v.iter().find(|f| f["package"] == "lodash").unwrap();
    assert_eq!(lodash["layer"], report["layers"][1]);

    // --severity filters, --exit-code sets the status when findings remain, .kilnignore
    // drops by id or alias.
    let (r, _) = scan_json(&store, &["--severity", "CRITICAL"]);
    assert_eq!(r["vulnerabilities"].as_array().unwrap().len(), 1);
    let out = store
        .cmd([
            "scan",
            "--scanners",
            "vuln",
            "--severity",
            "HIGH,CRITICAL",
            "--exit-code",
            "5",
            "localhost/vulnapp:1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("PYSEC-2021-142 (CVE-2020-14343)") && table.contains("libssl3 (src openssl)"),
        "{table}"
    );
    let ignore = dir.path().join("kilnignore");
    write(
        &ignore,
        "# accepted\nCVE-2024-0727\nPYSEC-2021-142 exp:2099-12-31\nGHSA-django-0001 exp:2001-01-01\n",
    );
    let (r, _) = scan_json(&store, &["--ignore-file", ignore.to_str().unwrap()]);
    let ids: BTreeSet<&str> = r["vulnerabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert!(
        !ids.contains("DSA-0001-1") && !ids.contains("PYSEC-2021-142"),
        "{ids:?}"
    );
    assert!(
        ids.contains("GHSA-django-0001"),
        "an expired entry no longer applies: {ids:?}"
    );
    let out = store
        .cmd(["scan", "--exit-code", "4", "--scanners", "vuln", "--ignore-file"])
        .arg(&ignore)
        .args(["--severity", "CRITICAL", "localhost/vulnapp:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "nothing left after ignoring: exit 0");

    // SARIF 2.1.0, valid against the official schema.
    let sarif = dir.path().join("scan.sarif");
    run_ok(
        store
            .cmd(["scan", "--format", "sarif", "-o"])
            .arg(&sarif)
            .arg("localhost/vulnapp:1"),
    );
    validate_sarif(&sarif);
    let doc: Value = serde_json::from_slice(&std::fs::read(&sarif).unwrap()).unwrap();
    let results = doc["runs"][0]["results"].as_array().unwrap();
    assert!(results.iter().any(|r| r["ruleId"] == "PYSEC-2021-142"));
    for r in results {
        let i = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(doc["runs"][0]["tool"]["driver"]["rules"][i]["id"], r["ruleId"]);
    }

    // An old database is called old.
    let meta_path = store.path().join("kiln/vulndb/meta.json");
    let mut meta: Value = serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    meta["imported_unix"] = json!(meta["imported_unix"].as_i64().unwrap() - 30 * 86_400);
    std::fs::write(&meta_path, meta.to_string()).unwrap();
    let (_, stderr) = scan_json(&store, &[]);
    assert!(stderr.contains("30 days old"), "{stderr}");
}

/// Validates a SARIF file against the official 2.1.0 schema with Python's jsonschema.
pub fn validate_sarif(doc: &Path) {
    let python = repo().join(".venv/bin/python3");
    assert!(
        python.is_file(),
        "{} is missing (hint: run scripts/setup)",
        python.display()
    );
    let schema = repo().join("tests/schemas/sarif-schema-2.1.0.json");
    let script = "import json, sys\nimport jsonschema\nschema = json.load(open(sys.argv[1])); doc = json.load(open(sys.argv[2]))\ncls = jsonschema.validators.validator_for(schema)\nerrors = sorted(cls(schema).iter_errors(doc), key=str)\nfor e in errors[:5]: print(e.message, list(e.path))\nsys.exit(1 if errors else 0)";
    run_ok(Command::new(python).arg("-c").arg(script).arg(&schema).arg(doc));
}

#[test]
fn malformed_osv_files_are_refused_with_their_names() {
    let store = KilnStore::new();
    let dir = tempfile::tempdir().unwrap();
    let bad_json = dir.path().join("bad.json");
    write(&bad_json, "{\"id\": \"X-1\", \"affected\": [\n  {\"package\": }\n]}");
    let out = store.cmd(["db", "import"]).arg(&bad_json).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.json") && err.contains("line 2") && err.contains("hint:"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");

    let bad_events = dir.path().join("events.json");
    write(
        &bad_events,
        r#"{"id": "X-2", "affected": [{"package": {"ecosystem": "npm", "name": "a"}, "ranges": [{"type": "SEMVER", "events": [{"introduced": "1.0.0", "fixed": "2.0.0"}]}]}]}"#,
    );
    let out = store.cmd(["db", "import"]).arg(&bad_events).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("events.json") && err.contains("X-2") && err.contains("exactly one"),
        "{err}"
    );

    let not_zip = dir.path().join("all.zip");
    let mut f = std::fs::File::create(&not_zip).unwrap();
    f.write_all(b"PK\x03\x04 truncated download").unwrap();
    let out = store.cmd(["db", "import"]).arg(&not_zip).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("all.zip") && err.contains("not a ZIP archive"), "{err}");
    // Nothing was imported.
    let status = run_ok(&mut store.cmd(["db", "status"]));
    assert!(String::from_utf8_lossy(&status.stdout).contains("no vulnerability database"));
}

/// How many times each of `digests` was opened as a blob, from an strace log.
fn blob_opens(trace: &Path, digests: &[String]) -> Vec<usize> {
    let log = std::fs::read_to_string(trace).unwrap();
    digests
        .iter()
        .map(|d| {
            let hex = d.trim_start_matches("sha256:");
            log.lines()
                .filter(|l| l.contains("open") && l.contains(hex) && !l.contains("= -1"))
                .count()
        })
        .collect()
}

#[test]
fn a_full_scan_reads_each_layer_once() {
    let store = KilnStore::new();
    let dir = tempfile::tempdir().unwrap();
    build_image(&store, dir.path());
    let (files, zip) = write_db(dir.path());
    run_ok(store.cmd(["db", "import"]).arg(&files).arg(&zip));
    let inspect: Value =
        serde_json::from_slice(&run_ok(&mut store.cmd(["inspect", "localhost/vulnapp:1"])).stdout).unwrap();
    let layers: Vec<String> = inspect["manifest"]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(layers.len(), 2);
    // Every scanner at once (vulnerabilities, secrets, misconfiguration), traced by strace.
    let kiln = store.cmd(["scan", "--format", "json", "localhost/vulnapp:1"]);
    let trace = dir.path().join("trace");
    let mut traced = Command::new(kiln_tests::require_tool("strace"));
    traced
        .args(["-f", "-qq", "-e", "trace=open,openat,openat2", "-o"])
        .arg(&trace)
        .arg(kiln.get_program())
        .args(kiln.get_args());
    for (k, v) in kiln.get_envs() {
        match v {
            Some(v) => traced.env(k, v),
            None => traced.env_remove(k),
        };
    }
    let out = run_ok(&mut traced);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(finding_set(&report).len(), 11, "the catalogers ran: {report}");
    assert!(report["misconfigurations"].is_array() && report["secrets"].is_array());
    assert_eq!(
        blob_opens(&trace, &layers),
        vec![1, 1],
        "each layer blob is opened once for all three scanners"
    );
}

#[test]
fn no_database_fails_the_vulnerability_scan_with_a_hint() {
    let store = KilnStore::new();
    let dir = tempfile::tempdir().unwrap();
    build_image(&store, dir.path());
    for args in [
        &["scan", "localhost/vulnapp:1"][..],
        &["scan", "--scanners", "vuln", "--format", "json", "localhost/vulnapp:1"],
    ] {
        let out = store.cmd(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {err}");
        assert!(
            err.contains("no vulnerability database") && err.contains("hint:") && err.contains("kiln db import"),
            "{err}"
        );
        assert!(out.stdout.is_empty(), "no report that could pass for a clean one");
    }
    // The other scanners need no database.
    run_ok(&mut store.cmd(["scan", "--scanners", "secret,misconfig", "localhost/vulnapp:1"]));
}

#[test]
fn packages_the_database_does_not_cover_are_not_checked_in_every_format() {
    let store = KilnStore::new();
    let dir = tempfile::tempdir().unwrap();
    build_image(&store, dir.path());
    // Only PyPI records: the Debian and npm packages cannot be checked.
    let osv = dir.path().join("pypi.json");
    write(
        &osv,
        &record(
            "PYSEC-0000-1",
            "PyPI",
            "pyyaml",
            vec![ev("introduced", "0"), ev("fixed", "5.4")],
        )
        .to_string(),
    );
    run_ok(store.cmd(["db", "import"]).arg(&osv));
    let (report, _) = scan_json(&store, &[]);
    assert_eq!(finding_set(&report).len(), 1, "{report}");
    let not_checked: BTreeSet<(String, String)> = report["not_checked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert!(p["reason"].as_str().unwrap().contains("no "), "{p}");
            (
                p["type"].as_str().unwrap().to_string(),
                p["package"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (kind, name) in [
        ("deb", "libssl3"),
        ("deb", "bash"),
        ("npm", "lodash"),
        ("npm", "express"),
    ] {
        assert!(
            not_checked.contains(&(kind.into(), name.into())),
            "{kind} {name} missing from {not_checked:?}"
        );
    }
    assert!(not_checked.iter().all(|(k, _)| k != "python"), "{not_checked:?}");
    let n = not_checked.len();
    assert_eq!(
        report["packages"].as_u64(),
        Some(4),
        "the four Python packages were checked"
    );
    let deb = report["not_checked"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["package"] == "libssl3")
        .unwrap();
    assert!(deb["reason"].as_str().unwrap().contains("Debian:12"), "{deb}");

    // The table lists them and the summary line counts them.
    let out = run_ok(&mut store.cmd(["scan", "--scanners", "vuln", "localhost/vulnapp:1"]));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains(&format!("Not checked ({n} packages)")), "{table}");
    assert!(
        table.contains(&format!(
            "1 vulnerability, 0 secrets, 0 misconfigurations, {n} packages not checked"
        )),
        "{table}"
    );
    // SARIF: one note per package, valid against the schema.
    let sarif = dir.path().join("scan.sarif");
    run_ok(
        store
            .cmd(["scan", "--scanners", "vuln", "--format", "sarif", "-o"])
            .arg(&sarif)
            .arg("localhost/vulnapp:1"),
    );
    validate_sarif(&sarif);
    let doc: Value = serde_json::from_slice(&std::fs::read(&sarif).unwrap()).unwrap();
    let notes: Vec<&Value> = doc["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["ruleId"] == "kiln-not-checked")
        .collect();
    assert_eq!(notes.len(), n);
    assert!(notes.iter().all(|r| r["level"] == "note"));
    assert!(
        notes
            .iter()
            .any(|r| r["message"]["text"].as_str().unwrap().contains("lodash")),
        "{notes:?}"
    );
}

/// `kiln db import ZIP` fails with exit code 2 and one line naming the archive, saying
/// `expect`, with a hint, and its peak memory (the child's `ru_maxrss`) stays under 256 MiB.
fn refused_in_bounded_memory(store: &KilnStore, zip: &Path, expect: &str) {
    let (out, kib) = kiln_tests::run_measured(store.cmd(["db", "import"]).arg(zip));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{} ({kib} KiB): {err}", zip.display());
    assert!(
        err.contains(&zip.display().to_string()) && err.contains(expect) && err.contains("hint:"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(kib < 256 * 1024, "{} used {kib} KiB", zip.display());
}

#[test]
fn osv_zip_bombs_are_refused_with_a_clear_error_in_bounded_memory() {
    let store = KilnStore::new();
    let dir = tempfile::tempdir().unwrap();
    // Python's zipfile, as OSV exports are made: one entry of 1 GiB of spaces (about 1 MiB
    // deflated), and the same entry with headers claiming 100 bytes.
    let honest = dir.path().join("honest.zip");
    let lying = dir.path().join("lying.zip");
    let script = r#"
import sys, zipfile, struct
with zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z:
    with z.open('BOMB-1.json', 'w', force_zip64=True) as f:
        for _ in range(1024):
            f.write(b' ' * (1 << 20))
with zipfile.ZipFile(sys.argv[2], 'w', zipfile.ZIP_DEFLATED) as z:
    with z.open('BOMB-2.json', 'w') as f:
        for _ in range(512):
            f.write(b' ' * (1 << 20))
data = bytearray(open(sys.argv[2], 'rb').read())
local = data.find(b'PK'); central = data.find(b'PK')
struct.pack_into('<I', data, local + 22, 100)
struct.pack_into('<I', data, central + 24, 100)
open(sys.argv[2], 'wb').write(data)
"#;
    run_ok(Command::new("python3").arg("-c").arg(script).arg(&honest).arg(&lying));
    for (zip, expect) in [
        (
            &honest,
            "declares 1073741824 bytes, over the 16777216 byte limit for one entry",
        ),
        (&lying, "inflates to more than the 100 bytes it declares"),
    ] {
        refused_in_bounded_memory(&store, zip, expect);
    }
    // Nothing was imported.
    let status = run_ok(&mut store.cmd(["db", "status"]));
    assert!(String::from_utf8_lossy(&status.stdout).contains("no vulnerability database"));
}

/// Bombs that stay under the size limit of one entry: many entries that add up, entries
/// sharing one compressed kernel, and a record of millions of JSON values. Each was imported
/// (or held gigabytes) before the archive's inflation ratio, overlapping entries and the
/// values of one record were bounded.
#[test]
fn osv_zip_bombs_within_the_entry_limit_are_refused_in_bounded_memory() {
    let store = KilnStore::new();
    let dir = tempfile::tempdir().unwrap();
    let (many, shared, values) = (
        dir.path().join("many.zip"),
        dir.path().join("shared.zip"),
        dir.path().join("values.zip"),
    );
    let script = r#"
import sys, zipfile, struct, random
random.seed(7)
M = 1 << 20
def record(i, field):
    return ('{"id": "BOMB-%d", "modified": "2024-01-01T00:00:00Z", "affected": [{"package": '
            '{"ecosystem": "PyPI", "name": "x"}, %s}]}' % (i, field))
# 100 valid records of 4 MiB each (a summary of one repeated letter): 400 MiB from 400 KiB.
with zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z:
    for i in range(100):
        z.writestr('BOMB-%d.json' % i, record(i, '"versions": ["%s"]' % ('a' * (4 * M))))
# One record of 1 MiB of random versions (it hardly deflates), and 300 central directory
# entries pointing at it: 300 MiB of records from a 600 KiB file.
versions = ', '.join('"%08x"' % random.getrandbits(32) for _ in range(M // 12))
with zipfile.ZipFile(sys.argv[2], 'w', zipfile.ZIP_DEFLATED) as z:
    z.writestr('K-000.json', record(0, '"versions": [%s]' % versions))
data = open(sys.argv[2], 'rb').read()
end = data.rfind(b'PK\x05\x06')
size, offset = struct.unpack_from('<II', data, end + 12)
central = data[offset:offset + size]
out = bytearray(data[:offset])
for i in range(300):
    out += central.replace(b'K-000.json', b'K-%03d.json' % i)
eocd = bytearray(data[end:])
struct.pack_into('<HHI', eocd, 8, 300, 300, size * 300)
open(sys.argv[2], 'wb').write(out + eocd)
# One record whose database_specific holds 8 million numbers (16 MiB, 15 times deflated):
# as a JSON tree, half a GiB.
numbers = ','.join('0' if k % 6 else str(random.randint(0, 9)) for k in range(8 * M - 4096))
with zipfile.ZipFile(sys.argv[3], 'w', zipfile.ZIP_DEFLATED) as z:
    z.writestr('VALUES-1.json', record(1, '"database_specific": {"counts": [%s]}' % numbers))
"#;
    run_ok(
        Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(&many)
            .arg(&shared)
            .arg(&values),
    );
    refused_in_bounded_memory(
        &store,
        &many,
        "and the archive would inflate to more than 100 times its compressed size",
    );
    refused_in_bounded_memory(&store, &shared, "entry K-000.json overlaps entry K-001.json");
    refused_in_bounded_memory(&store, &values, "record 0 holds more than 262144 JSON values");
    let status = run_ok(&mut store.cmd(["db", "status"]));
    assert!(String::from_utf8_lossy(&status.stdout).contains("no vulnerability database"));
}

#[test]
fn alpine_origins_and_crates_io_match() {
    let store = KilnStore::new();
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("ctx");
    write(
        &ctx.join("rootfs/etc/os-release"),
        "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.19.1\nPRETTY_NAME=\"Alpine Linux v3.19\"\n",
    );
    write(
        &ctx.join("rootfs/lib/apk/db/installed"),
        "P:libcrypto3\nV:3.1.4-r5\nA:x86_64\no:openssl\n\nP:busybox\nV:1.36.1-r15\nA:x86_64\no:busybox\n\nP:musl\nV:1.2.4_git20230717-r4\nA:x86_64\no:musl\n",
    );
    write(
        &ctx.join("rootfs/app/Cargo.lock"),
        "version = 3\n\n[[package]]\nname = \"time\"\nversion = \"0.1.43\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n\n[[package]]\nname = \"smallvec\"\nversion = \"1.6.1\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n",
    );
    write(&ctx.join("Dockerfile"), "FROM scratch\nCOPY rootfs/ /\nUSER 1000\n");
    run_ok(
        store
            .cmd(["build", "--progress", "quiet", "-t", "localhost/alpine-app:1"])
            .arg(&ctx),
    );
    let osv = dir.path().join("osv");
    let records = [
        record(
            "ALPINE-CVE-2024-0727",
            "Alpine:v3.19",
            "openssl",
            vec![ev("introduced", "0"), ev("fixed", "3.1.4-r6")],
        ),
        // `_git` sorts after the plain version in apk's order: 1.2.4_git… is newer than 1.2.4.
        record(
            "ALPINE-CVE-musl-old",
            "Alpine:v3.19",
            "musl",
            vec![ev("introduced", "0"), ev("fixed", "1.2.4")],
        ),
        record(
            "ALPINE-CVE-busybox",
            "Alpine:v3.18",
            "busybox",
            vec![ev("introduced", "0")],
        ),
        record(
            "RUSTSEC-2020-0071",
            "crates.io",
            "time",
            vec![ev("introduced", "0.1.0"), ev("fixed", "0.2.23")],
        ),
        record(
            "RUSTSEC-2021-0003",
            "crates.io",
            "smallvec",
            vec![ev("introduced", "1.6.0"), ev("fixed", "1.6.1")],
        ),
    ];
    for r in &records {
        write(&osv.join(format!("{}.json", r["id"].as_str().unwrap())), &r.to_string());
    }
    run_ok(store.cmd(["db", "import"]).arg(&osv));
    let out = run_ok(&mut store.cmd(["scan", "-f", "json", "--scanners", "vuln", "localhost/alpine-app:1"]));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let expected: BTreeSet<String> = [
        "ALPINE-CVE-2024-0727 libcrypto3 3.1.4-r5 fixed=3.1.4-r6 UNKNOWN layer=1",
        "RUSTSEC-2020-0071 time 0.1.43 fixed=0.2.23 UNKNOWN layer=1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(finding_set(&report), expected);
}
