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
        ..RegistryConfig::default()
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
    let (bin, hc, path) = helper_config(&reg.addr, "kilntest", r#"{"Username":"alice","Secret":"s3cret-pw"}"#);
    let out = kiln(&KilnStore::new(), hc.path(), &["pull", &dest])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(bin.path().join("asked-kilntest"))
            .unwrap()
            .trim(),
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
        ..RegistryConfig::default()
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

/// Writes an executable `docker-credential-NAME` into `dir` that answers `get` with `json`
/// and appends the host it was asked for to `dir/asked-NAME`.
fn helper(dir: &std::path::Path, name: &str, json: &str) {
    let path = dir.join(format!("docker-credential-{name}"));
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread host\necho \"$host\" >> \"$(dirname \"$0\")/asked-{name}\"\nprintf '%s' '{json}'\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A helper (as [`helper`]) named in `credHelpers` for `host`: (the helper's directory, the
/// config directory, a PATH that finds the helper first).
fn helper_config(host: &str, name: &str, json: &str) -> (tempfile::TempDir, tempfile::TempDir, String) {
    let bin = tempfile::tempdir().unwrap();
    helper(bin.path(), name, json);
    let config = tempfile::tempdir().unwrap();
    std::fs::write(
        config.path().join("config.json"),
        serde_json::json!({"credHelpers": {host: name}}).to_string(),
    )
    .unwrap();
    let path = format!("{}:{}", bin.path().display(), std::env::var("PATH").unwrap_or_default());
    (bin, config, path)
}

fn basic(user: &str, password: &str) -> String {
    kiln_tests::registry::base64(format!("{user}:{password}").as_bytes(), false)
}

/// Docker's order: `credHelpers[host]`, else `credsStore`, else `auths`; a configured helper
/// is authoritative. Helper names are never paths.
#[test]
fn credentials_resolve_as_docker_does_and_helper_names_are_sanitised() {
    let reg = TestRegistry::start_with(RegistryConfig {
        htpasswd: Some(("alice".into(), "s3cret-pw".into())),
        ..RegistryConfig::default()
    });
    let layout = tempfile::tempdir().unwrap();
    let img = image(layout.path());
    let src = format!("oci:{}:app", layout.path().display());
    let dest = format!("{}/private/app:1", reg.addr);
    run_ok(
        KilnStore::new()
            .cmd(["copy", "--creds", "alice:s3cret-pw", &src, &dest])
            .env_remove("REGISTRY_AUTH_FILE"),
    );
    let bin = tempfile::tempdir().unwrap();
    helper(bin.path(), "good", r#"{"Username":"alice","Secret":"s3cret-pw"}"#);
    helper(bin.path(), "bad", r#"{"Username":"alice","Secret":"wrong"}"#);
    let path = format!("{}:{}", bin.path().display(), std::env::var("PATH").unwrap_or_default());
    let wrong = serde_json::json!({&reg.addr: {"auth": basic("alice", "wrong")}});
    let right = serde_json::json!({&reg.addr: {"auth": basic("alice", "s3cret-pw")}});
    let pull = |config: serde_json::Value| {
        let dc = tempfile::tempdir().unwrap();
        std::fs::write(dc.path().join("config.json"), config.to_string()).unwrap();
        kiln(&KilnStore::new(), dc.path(), &["pull", &dest])
            .env("PATH", &path)
            .output()
            .unwrap()
    };
    let ok = |config: serde_json::Value, why: &str| {
        let out = pull(config);
        assert!(out.status.success(), "{why}: {out:?}");
        assert_eq!(last_digest(&out), img.digest);
    };
    let rejected = |config: serde_json::Value, why: &str| {
        let out = pull(config);
        assert_eq!(out.status.code(), Some(2), "{why}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("rejected the credentials"),
            "{why}: {out:?}"
        );
    };
    ok(
        serde_json::json!({"credHelpers": {&reg.addr: "good"}, "credsStore": "bad", "auths": wrong}),
        "credHelpers comes first",
    );
    rejected(
        serde_json::json!({"credHelpers": {&reg.addr: "bad"}, "credsStore": "good", "auths": right}),
        "credHelpers comes first, even when it is wrong",
    );
    ok(
        serde_json::json!({"credHelpers": {"other.example": "bad"}, "credsStore": "good", "auths": wrong}),
        "credsStore comes before auths",
    );
    rejected(
        serde_json::json!({"credsStore": "bad", "auths": right}),
        "a configured credsStore is authoritative",
    );
    ok(serde_json::json!({"auths": right}), "auths alone");
    assert!(
        std::fs::read_to_string(bin.path().join("asked-good"))
            .unwrap()
            .contains(&reg.addr)
    );

    // A helper name with a path in it is refused before anything runs: here it would
    // resolve (relative to the working directory) to a script of the file's choosing.
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir(work.path().join("docker-credential-x")).unwrap();
    let evil = work.path().join("evil");
    std::fs::write(
        &evil,
        "#!/bin/sh\ntouch \"$(dirname \"$0\")/ran\"\nprintf '{\"Username\":\"alice\",\"Secret\":\"s3cret-pw\"}'\n",
    )
    .unwrap();
    std::fs::set_permissions(&evil, std::fs::Permissions::from_mode(0o755)).unwrap();
    for config in [
        serde_json::json!({"credsStore": "x/../evil"}),
        serde_json::json!({"credHelpers": {&reg.addr: "x/../evil"}}),
    ] {
        let dc = tempfile::tempdir().unwrap();
        std::fs::write(dc.path().join("config.json"), config.to_string()).unwrap();
        let out = kiln(&KilnStore::new(), dc.path(), &["pull", &dest])
            .current_dir(work.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("may only contain") && err.contains("hint"), "{err}");
        assert!(!work.path().join("ran").exists(), "the helper path was executed");
    }
}

/// Identity tokens (from an OAuth2 login: `identitytoken` in config.json, or a helper's
/// `<token>` answer) are sent to the token server as an OAuth2 refresh grant, never as a
/// password.
#[test]
fn identity_tokens_are_sent_as_an_oauth2_refresh_grant() {
    let tdir = tempfile::tempdir().unwrap();
    let tokens = TokenServer::start_with_refresh(tdir.path(), "bob", "hunter2", "kiln-refresh-1");
    let reg = TestRegistry::start_with(RegistryConfig {
        token: Some((tokens.realm.clone(), tokens.cert.clone())),
        ..RegistryConfig::default()
    });
    let layout = tempfile::tempdir().unwrap();
    let img = image(layout.path());
    let src = format!("oci:{}:app", layout.path().display());
    let dest = format!("{}/private/app:1", reg.addr);
    let dc = tempfile::tempdir().unwrap();
    // As docker writes it after a login that returned an identity token.
    std::fs::write(
        dc.path().join("config.json"),
        serde_json::json!({"auths": {&reg.addr: {"auth": basic("bob", ""), "identitytoken": "kiln-refresh-1"}}})
            .to_string(),
    )
    .unwrap();
    let out = run_ok(&mut kiln(&KilnStore::new(), dc.path(), &["copy", &src, &dest]));
    assert_eq!(last_digest(&out), img.digest);
    let grants = tokens.grants.lock().unwrap().clone();
    assert!(
        !grants.is_empty() && grants.iter().all(|g| g == "refresh_token"),
        "every token came from the refresh grant: {grants:?}"
    );
    assert!(
        tokens
            .requests
            .lock()
            .unwrap()
            .iter()
            .any(|(s, u)| s == "repository:private/app:pull,push" && u == "bob"),
        "the grant carried the push scope"
    );

    // From a credential helper: user name `<token>`, the identity token as the secret.
    let (_bin, hc, path) = helper_config(
        &reg.addr,
        "oauth",
        r#"{"Username":"<token>","Secret":"kiln-refresh-1"}"#,
    );
    tokens.grants.lock().unwrap().clear();
    let out = run_ok(kiln(&KilnStore::new(), hc.path(), &["pull", &dest]).env("PATH", &path));
    assert_eq!(last_digest(&out), img.digest);
    assert_eq!(
        tokens.grants.lock().unwrap().first().map(String::as_str),
        Some("refresh_token")
    );

    // A stale identity token is refused by the token server: exit 2, one line.
    std::fs::write(
        dc.path().join("config.json"),
        serde_json::json!({"auths": {&reg.addr: {"auth": basic("bob", ""), "identitytoken": "expired"}}}).to_string(),
    )
    .unwrap();
    let out = kiln(&KilnStore::new(), dc.path(), &["pull", &dest]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("HTTP 401") && err.contains("token"), "{err}");
}

/// The host's address on its default route (no packet is sent).
fn host_ip() -> String {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    s.connect("192.0.2.1:9")
        .expect("this test needs a non-loopback IPv4 address on the host (a default route)");
    s.local_addr().unwrap().ip().to_string()
}

/// A registry that is not insecure (HTTPS, not loopback) must send an https token realm:
/// kiln never sends credentials to, or takes tokens from, a plain-HTTP realm it names,
/// unless the registry is marked insecure.
#[test]
fn token_realm_must_be_https_unless_the_registry_is_insecure() {
    let tdir = tempfile::tempdir().unwrap();
    let tokens = TokenServer::start(tdir.path(), "bob", "hunter2");
    assert!(tokens.realm.starts_with("http://"));
    let reg = TestRegistry::start_with(RegistryConfig {
        tls: true,
        token: Some((tokens.realm.clone(), tokens.cert.clone())),
        ip: Some(host_ip()),
        ..RegistryConfig::default()
    });
    let ca = reg.ca_cert.clone().unwrap().display().to_string();
    let layout = tempfile::tempdir().unwrap();
    let img = image(layout.path());
    let src = format!("oci:{}:app", layout.path().display());
    let dest = format!("{}/private/app:1", reg.addr);
    let dc = tempfile::tempdir().unwrap();
    let out = kiln(
        &KilnStore::new(),
        dc.path(),
        &["copy", "--ca-file", &ca, "--creds", "bob:hunter2", &src, &dest],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&tokens.realm) && err.contains("not https") && err.contains("--insecure-registry"),
        "{err}"
    );
    assert!(
        tokens.grants.lock().unwrap().is_empty(),
        "credentials went to the http realm"
    );

    let out = run_ok(&mut kiln(
        &KilnStore::new(),
        dc.path(),
        &[
            "copy",
            "--ca-file",
            &ca,
            "--insecure-registry",
            &reg.addr,
            "--creds",
            "bob:hunter2",
            &src,
            &dest,
        ],
    ));
    assert_eq!(last_digest(&out), img.digest);
}
