//! Authentication and TLS against the real `docker-registry`: htpasswd basic auth with
//! credentials from `kiln login`, a hand-written config.json, `REGISTRY_AUTH_FILE` and a
//! `docker-credential-*` helper; wrong passwords; HTTPS with a self-signed CA.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use kiln_oci::Platform;
use kiln_tests::registry::{RegistryConfig, TestRegistry, TokenServer, last_digest, skopeo, write_image};
use kiln_tests::{KilnStore, run_ok};

fn kiln(store: &KilnStore, docker_config: &std::path::Path, args: &[&str]) -> Command {
    let mut c = store.cmd(args);
    c.env("DOCKER_CONFIG", docker_config).env_remove("REGISTRY_AUTH_FILE");
    c
}

fn image(dir: &std::path::Path) -> kiln_oci::Descriptor {
    let p = Platform {
        os: "linux".into(),
        architecture: "amd64".into(),
        variant: None,
    };
    write_image(dir, Some("app"), &[1500, 3000], &p, 21)
}

#[test]
fn htpasswd_basic_auth_with_login_config_json_and_helper() {
    let reg = TestRegistry::start_with(RegistryConfig {
        htpasswd: Some(("alice".into(), "s3cret-pw".into())),
        tls: false,
        token: None,
    });
    let dc = tempfile::tempdir().unwrap();
    let store = KilnStore::new();
    let layout = tempfile::tempdir().unwrap();
    let img = image(layout.path());
    let src = format!("oci:{}:app", layout.path().display());
    let dest = format!("{}/private/app:1", reg.addr);

    // Anonymous: a clear 401 naming registry and repository, exit 2.
    let out = kiln(&store, dc.path(), &["copy", &src, &dest]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("HTTP 401")
            && err.contains(&reg.addr)
            && err.contains("private/app")
            && err.contains("kiln login"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");

    // Wrong password at login: 401, nothing written.
    let out = kiln(
        &store,
        dc.path(),
        &["login", &reg.addr, "-u", "alice", "--password-stdin"],
    )
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .and_then(|mut c| {
        use std::io::Write;
        c.stdin.take().unwrap().write_all(b"wrong\n")?;
        c.wait_with_output()
    })
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("HTTP 401") && err.contains("rejected the credentials"),
        "{err}"
    );
    assert!(!dc.path().join("config.json").exists());

    // Right password: config.json in docker's format; push and pull work.
    run_ok(&mut kiln(
        &store,
        dc.path(),
        &["login", &reg.addr, "-u", "alice", "-p", "s3cret-pw"],
    ));
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dc.path().join("config.json")).unwrap()).unwrap();
    assert!(cfg["auths"][&reg.addr]["auth"].is_string(), "{cfg}");
    let d = last_digest(&run_ok(&mut kiln(&store, dc.path(), &["copy", &src, &dest])));
    assert_eq!(d, img.digest);
    let other = KilnStore::new();
    assert_eq!(
        last_digest(&run_ok(&mut kiln(&other, dc.path(), &["pull", &dest]))),
        img.digest
    );
    // skopeo reads the same file.
    skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--authfile",
        &dc.path().join("config.json").display().to_string(),
        &format!("docker://{dest}"),
    ]);

    // A wrong password in config.json: the 401 says the credentials were rejected.
    let bad = tempfile::tempdir().unwrap();
    std::fs::write(
        bad.path().join("config.json"),
        serde_json::json!({"auths": {&reg.addr: {"username": "alice", "password": "nope"}}}).to_string(),
    )
    .unwrap();
    let out = kiln(&KilnStore::new(), bad.path(), &["pull", &dest]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("rejected the credentials"),
        "{out:?}"
    );

    // REGISTRY_AUTH_FILE wins over DOCKER_CONFIG.
    let out = kiln(&KilnStore::new(), bad.path(), &["pull", &dest])
        .env("REGISTRY_AUTH_FILE", dc.path().join("config.json"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    // A credential helper named in credHelpers.
    let bin = tempfile::tempdir().unwrap();
    let helper = bin.path().join("docker-credential-kilntest");
    std::fs::write(
        &helper,
        "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread host\necho \"$host\" >> \"$(dirname \"$0\")/asked\"\nprintf '{\"ServerURL\":\"%s\",\"Username\":\"alice\",\"Secret\":\"s3cret-pw\"}' \"$host\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let hc = tempfile::tempdir().unwrap();
    std::fs::write(
        hc.path().join("config.json"),
        serde_json::json!({"credHelpers": {&reg.addr: "kilntest"}}).to_string(),
    )
    .unwrap();
    let path = format!("{}:{}", bin.path().display(), std::env::var("PATH").unwrap_or_default());
    let out = kiln(&KilnStore::new(), hc.path(), &["pull", &dest])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(bin.path().join("asked")).unwrap().trim(),
        reg.addr
    );

    // logout removes the entry; anonymous again.
    run_ok(&mut kiln(&store, dc.path(), &["logout", &reg.addr]));
    let out = kiln(&KilnStore::new(), dc.path(), &["pull", &dest]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let out = kiln(&store, dc.path(), &["logout", &reg.addr]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn tls_with_a_self_signed_ca() {
    let reg = TestRegistry::start_with(RegistryConfig {
        htpasswd: None,
        tls: true,
        token: None,
    });
    let ca = reg.ca_cert.clone().unwrap();
    let dc = tempfile::tempdir().unwrap();
    let store = KilnStore::new();
    let layout = tempfile::tempdir().unwrap();
    let img = image(layout.path());
    let src = format!("oci:{}:app", layout.path().display());
    let dest = format!("{}/secure/app:1", reg.addr);

    // Untrusted certificate: a clear error with the hint, and no silent fallback to HTTP.
    let out = kiln(&store, dc.path(), &["copy", &src, &dest]).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("certificate") && err.contains("--ca-file"), "{err}");

    let ca_s = ca.display().to_string();
    let d = last_digest(&run_ok(&mut kiln(
        &store,
        dc.path(),
        &["copy", "--ca-file", &ca_s, &src, &dest],
    )));
    assert_eq!(d, img.digest);
    // --cert-dir with the CA as *.crt, like podman and skopeo.
    let certs = tempfile::tempdir().unwrap();
    std::fs::copy(&ca, certs.path().join("ca.crt")).unwrap();
    let cd = certs.path().display().to_string();
    let other = KilnStore::new();
    assert_eq!(
        last_digest(&run_ok(&mut kiln(
            &other,
            dc.path(),
            &["pull", "--cert-dir", &cd, &dest]
        ))),
        img.digest
    );
    // skopeo trusts the same directory and reads what kiln pushed over HTTPS.
    let out = skopeo(&["inspect", "--cert-dir", &cd, &format!("docker://{dest}")]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["Digest"], img.digest.to_string());
}

#[test]
fn bearer_tokens_anonymous_and_with_credentials() {
    let tdir = tempfile::tempdir().unwrap();
    let tokens = TokenServer::start(tdir.path(), "bob", "hunter2");
    let reg = TestRegistry::start_with(RegistryConfig {
        token: Some((tokens.realm.clone(), tokens.cert.clone())),
        ..RegistryConfig::default()
    });
    let dc = tempfile::tempdir().unwrap();
    let store = KilnStore::new();
    let layout = tempfile::tempdir().unwrap();
    let img = image(layout.path());
    let src = format!("oci:{}:app", layout.path().display());
    let public = format!("{}/public/app:1", reg.addr);

    // Anonymous push is refused by the token server's grant: a clear 401.
    let out = kiln(&store, dc.path(), &["copy", &src, &public]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTP 401"), "{out:?}");

    // A wrong password is refused by the token server itself.
    let out = kiln(&store, dc.path(), &["copy", "--creds", "bob:nope", &src, &public])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("HTTP 401") && err.contains("token"), "{err}");

    // With credentials (from login) push works, and scopes are what the spec says.
    run_ok(&mut kiln(
        &store,
        dc.path(),
        &["login", &reg.addr, "-u", "bob", "-p", "hunter2"],
    ));
    assert_eq!(
        last_digest(&run_ok(&mut kiln(&store, dc.path(), &["copy", &src, &public]))),
        img.digest
    );
    // A copy to another repository asks for push there and pull on the source, and mounts.
    let out = run_ok(&mut kiln(
        &store,
        dc.path(),
        &["copy", &public, &format!("{}/team/app:1", reg.addr)],
    ));
    assert_eq!(last_digest(&out), img.digest);
    let asked = tokens.requests.lock().unwrap().clone();
    assert!(
        asked
            .iter()
            .any(|(s, u)| s == "repository:team/app:pull,push" && u == "bob")
            && asked.iter().any(|(s, _)| s == "repository:public/app:pull"),
        "{asked:?}"
    );

    // Anonymous pull of a public repository gets a pull-only token.
    let anon = tempfile::tempdir().unwrap();
    let out = run_ok(&mut kiln(&KilnStore::new(), anon.path(), &["pull", &public]));
    assert_eq!(last_digest(&out), img.digest);
    assert!(
        tokens
            .requests
            .lock()
            .unwrap()
            .iter()
            .any(|(s, u)| s == "repository:public/app:pull" && u == "-")
    );
}
