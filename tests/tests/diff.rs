//! `kiln diff` (issue 15): two images built by kiln that differ by a file changed at the same
//! size, a removed file, a chmod, a symlink target, a Debian package upgraded (and one
//! replaced), and an ENV: every change listed exactly in JSON; the file list equals
//! `diff -r` over the two trees `umoci unpack` makes; vulnerabilities introduced and fixed
//! against a hand-made OSV database; `--fail-on` exit codes; Markdown and HTML escape.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use kiln_tests::{KilnStore, build_busybox_base, require_tool, run_ok, umoci_unpack};
use serde_json::{Value, json};

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn status(pkgs: &[(&str, &str)]) -> String {
    pkgs.iter()
        .map(|(n, v)| {
            format!("Package: {n}\nStatus: install ok installed\nArchitecture: amd64\nVersion: {v}\nMaintainer: Debian <debian@example.org>\n")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Release 1 and release 2 of the same app.
fn build(store: &KilnStore, dir: &Path, tag: &str, v2: bool) {
    let ctx = dir.join(tag.replace(':', "-"));
    write(
        &ctx.join("rootfs/etc/os-release"),
        "NAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\nID=debian\n",
    );
    let pkgs: &[(&str, &str)] = if v2 {
        &[("libdemo", "1.0-2"), ("newpkg", "3.0-1")]
    } else {
        &[("libdemo", "1.0-1"), ("oldpkg", "2.0-1")]
    };
    write(&ctx.join("rootfs/var/lib/dpkg/status"), &status(pkgs));
    write(&ctx.join("app/same-size"), if v2 { "bbbb\n" } else { "aaaa\n" });
    write(&ctx.join("app/chmod"), "x\n");
    write(&ctx.join("app/kept"), "kept\n");
    if !v2 {
        write(&ctx.join("app/removed"), "gone\n");
    }
    let chmod = if v2 { "--chmod=0755 " } else { "" };
    let target = if v2 { "kept" } else { "same-size" };
    write(
        &ctx.join("Dockerfile"),
        &format!(
            "FROM localhost/busybox:test\nCOPY rootfs/ /\nCOPY app/ /app/\nCOPY {chmod}app/chmod /app/chmod\nRUN ln -s {target} /app/link\nENV MODE={}\n",
            if v2 { "two" } else { "one" }
        ),
    );
    run_ok(store.cmd(["build", "--progress", "quiet", "-t", tag]).arg(&ctx));
}

fn osv_db(store: &KilnStore, dir: &Path) {
    let rec = |id: &str, name: &str, events: Value| {
        json!({"id": id, "modified": "2026-01-01T00:00:00Z",
               "affected": [{"package": {"ecosystem": "Debian:12", "name": name},
                             "ranges": [{"type": "ECOSYSTEM", "events": events}]}]})
    };
    let osv = dir.join("osv");
    for (id, r) in [
        (
            "DEMO-1",
            rec("DEMO-1", "libdemo", json!([{"introduced": "0"}, {"fixed": "1.0-2"}])),
        ),
        ("DEMO-2", rec("DEMO-2", "newpkg", json!([{"introduced": "0"}]))),
        ("DEMO-3", rec("DEMO-3", "libdemo", json!([{"introduced": "0"}]))),
    ] {
        write(&osv.join(format!("{id}.json")), &r.to_string());
    }
    run_ok(store.cmd(["db", "import"]).arg(&osv));
}

fn diff_json(store: &KilnStore, extra: &[&str]) -> Value {
    let out = run_ok(
        store
            .cmd(["diff", "--format", "json"])
            .args(extra)
            .args(["app:1", "app:2"]),
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

#[test]
fn every_change_is_listed_exactly_and_matches_diff_r_over_umoci_trees() {
    let tmp = tempfile::tempdir().unwrap();
    let store = KilnStore::new();
    build_busybox_base(&store, tmp.path());
    build(&store, tmp.path(), "app:1", false);
    build(&store, tmp.path(), "app:2", true);
    osv_db(&store, tmp.path());
    let d = diff_json(&store, &[]);
    assert_eq!(d["schema"], "kiln-diff/v1");
    assert_eq!(d["config"], json!([{"field": "env.MODE", "a": "one", "b": "two"}]));
    assert_eq!(keys(&d["files"]["added"]), BTreeSet::new());
    assert_eq!(
        keys(&d["files"]["removed"]),
        BTreeSet::from(["/app/removed".to_string()])
    );
    let changed: BTreeSet<(String, String)> = d["files"]["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["path"].as_str().unwrap().to_string(), c["changes"].to_string()))
        .collect();
    let want: BTreeSet<(String, String)> = [
        ("/app/chmod", r#"["mode"]"#),
        ("/app/link", r#"["target"]"#),
        ("/app/same-size", r#"["content"]"#),
        ("/var/lib/dpkg/status", r#"["content"]"#),
    ]
    .iter()
    .map(|(p, c)| (p.to_string(), c.to_string()))
    .collect();
    assert_eq!(changed, want, "{}", d["files"]);
    let same = d["files"]["changed"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["path"] == "/app/same-size")
        .unwrap();
    assert_eq!(same["a"]["size"], same["b"]["size"], "same size, different content");
    assert_eq!(
        d["packages"],
        json!({
            "added": [{"name": "newpkg", "ecosystem": "deb", "version": "3.0-1", "purl": d["packages"]["added"][0]["purl"]}],
            "removed": [{"name": "oldpkg", "ecosystem": "deb", "version": "2.0-1", "purl": d["packages"]["removed"][0]["purl"]}],
            "upgraded": [{"name": "libdemo", "ecosystem": "deb", "from": "1.0-1", "to": "1.0-2"}],
            "downgraded": []
        })
    );
    let ids = |k: &str| -> Vec<(String, String)> {
        d["vulnerabilities"][k]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["id"].as_str().unwrap().to_string(),
                    v["package"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    assert_eq!(d["vulnerabilities"]["checked"], true);
    assert_eq!(ids("introduced"), vec![("DEMO-2".to_string(), "newpkg".to_string())]);
    assert_eq!(
        ids("fixed"),
        vec![("DEMO-1".to_string(), "libdemo".to_string())],
        "DEMO-3 stays: neither"
    );
    assert_eq!(d["layers"]["shared"].as_array().unwrap().len(), 2, "the base's layers");

    // The file list equals diff -r over umoci's unpacked trees (content, links, presence;
    // diff -r does not see modes).
    require_tool("diff");
    let (ra, rb) = (
        umoci_unpack(store.path(), "app:1", &tmp.path().join("bundle-a")).unwrap(),
        umoci_unpack(store.path(), "app:2", &tmp.path().join("bundle-b")).unwrap(),
    );
    let out = Command::new("diff")
        .arg("-rq")
        .arg("--no-dereference")
        .arg(&ra)
        .arg(&rb)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let strip = |p: &str| -> String {
        let p = p
            .strip_prefix(ra.to_str().unwrap())
            .or_else(|| p.strip_prefix(rb.to_str().unwrap()))
            .unwrap_or(p);
        if p.is_empty() { "/".into() } else { p.to_string() }
    };
    let mut from_diff_r = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("Only in ") {
            let (dir, name) = rest.split_once(": ").unwrap();
            let dir = strip(dir);
            from_diff_r.insert(if dir == "/" {
                format!("/{name}")
            } else {
                format!("{dir}/{name}")
            });
        } else if let Some(rest) = line
            .strip_prefix("Files ")
            .or_else(|| line.strip_prefix("Symbolic links "))
        {
            let a = rest.split(" and ").next().unwrap();
            from_diff_r.insert(strip(a));
        }
    }
    let mut from_kiln: BTreeSet<String> = keys(&d["files"]["added"])
        .into_iter()
        .chain(keys(&d["files"]["removed"]))
        .collect();
    for c in d["files"]["changed"].as_array().unwrap() {
        let what = c["changes"].as_array().unwrap();
        if what.iter().any(|w| w == "content" || w == "target" || w == "type") {
            from_kiln.insert(c["path"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(from_kiln, from_diff_r, "diff -r said:\n{text}");
}

#[test]
fn docker_archives_read_in_place_diff_as_the_stored_images() {
    let tmp = tempfile::tempdir().unwrap();
    let store = KilnStore::new();
    build_busybox_base(&store, tmp.path());
    build(&store, tmp.path(), "app:1", false);
    build(&store, tmp.path(), "app:2", true);
    osv_db(&store, tmp.path());
    let mut refs = vec![];
    for tag in ["app:1", "app:2"] {
        let tar = tmp.path().join(format!("{}.tar", tag.replace(':', "-")));
        run_ok(
            store
                .cmd(["save", "--format", "docker-archive", "-o"])
                .arg(&tar)
                .arg(tag),
        );
        refs.push(format!("docker-archive:{}", tar.display()));
    }
    let stored = diff_json(&store, &[]);
    let out = run_ok(store.cmd(["diff", "--format", "json"]).args(&refs));
    let archived: Value = serde_json::from_slice(&out.stdout).unwrap();
    for section in ["config", "files", "packages", "vulnerabilities", "layers"] {
        assert_eq!(archived[section], stored[section], "{section}");
    }
    assert_eq!(archived["a"]["packages"], stored["a"]["packages"]);
    assert_eq!(archived["b"]["layers"], stored["b"]["layers"]);
}

#[test]
fn fail_on_and_formats() {
    let tmp = tempfile::tempdir().unwrap();
    let store = KilnStore::new();
    build_busybox_base(&store, tmp.path());
    build(&store, tmp.path(), "app:1", false);
    build(&store, tmp.path(), "app:2", true);
    let code = |args: &[&str]| store.cmd(["diff"]).args(args).output().unwrap().status.code();
    assert_eq!(code(&["--fail-on", "config", "app:1", "app:2"]), Some(1));
    assert_eq!(code(&["--fail-on", "packages,files", "app:1", "app:2"]), Some(1));
    assert_eq!(
        code(&["--fail-on", "files,packages,config", "app:1", "app:1"]),
        Some(0),
        "an image equals itself"
    );
    // No database: vulnerabilities are not checked, and gating on them is an environment error.
    assert_eq!(code(&["--fail-on", "vulns", "app:1", "app:2"]), Some(3));
    osv_db(&store, tmp.path());
    assert_eq!(
        code(&["--fail-on", "vulns", "app:1", "app:2"]),
        Some(1),
        "DEMO-2 is introduced"
    );
    assert_eq!(
        code(&["--fail-on", "vulns", "app:2", "app:1"]),
        Some(1),
        "DEMO-1 comes back"
    );
    let md =
        String::from_utf8(run_ok(&mut store.cmd(["diff", "--format", "markdown", "app:1", "app:2"])).stdout).unwrap();
    assert!(md.contains("| ↑ | libdemo 1.0-1 → 1.0-2 (deb) |"), "{md}");
    let html =
        String::from_utf8(run_ok(&mut store.cmd(["diff", "--format", "html", "app:1", "app:2"])).stdout).unwrap();
    assert!(html.contains("env.MODE: &quot;one&quot; → &quot;two&quot;"), "{html}");
    assert!(!html.contains("\"one\""), "values are escaped");
}
