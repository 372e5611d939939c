//! The trust chain against tools kiln did not write: openssl verifies the classic cosign
//! signature, sigstore-js (@sigstore/bundle + @sigstore/verify) verifies the bundles and
//! DSSE attestations, the `in-toto-attestation` Python package validates the provenance,
//! and cosign-made keys (sigstore policy-controller's public test pair) are read. Tamper
//! cases each fail with their reason. Registry work runs against Debian's docker-registry
//! on loopback; the registry is read and tampered with over plain HTTP here, not through
//! kiln.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln_tests::registry::{TestRegistry, skopeo};
use kiln_tests::{KilnStore, last_line, require_tool, run_ok};
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// kiln with a private docker config (no credentials) and COSIGN_PASSWORD set.
fn kiln(store: &KilnStore, docker: &Path, args: &[&str]) -> Command {
    let mut c = store.cmd(args);
    c.env("DOCKER_CONFIG", docker)
        .env_remove("REGISTRY_AUTH_FILE")
        .env("COSIGN_PASSWORD", PASSWORD);
    c
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout_json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON: {e}\n{}", String::from_utf8_lossy(&o.stdout)))
}

struct Env {
    store: KilnStore,
    docker: tempfile::TempDir,
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let e = Env {
            store: KilnStore::new(),
            docker: tempfile::tempdir().unwrap(),
            dir: tempfile::tempdir().unwrap(),
        };
        run_ok(
            e.kiln(&["generate-key-pair", "--output-key-prefix"])
                .arg(e.dir.path().join("cosign")),
        );
        e
    }
    fn kiln(&self, args: &[&str]) -> Command {
        kiln(&self.store, self.docker.path(), args)
    }
    fn key(&self) -> String {
        self.dir.path().join("cosign.key").display().to_string()
    }
    fn public(&self) -> String {
        self.dir.path().join("cosign.pub").display().to_string()
    }
    /// Builds a one-file image (content `text`) tagged `tag`; returns its digest.
    fn build(&self, tag: &str, text: &str, extra: &[&str]) -> String {
        let ctx = tempfile::tempdir_in(self.dir.path()).unwrap();
        std::fs::write(ctx.path().join("f.txt"), text).unwrap();
        std::fs::write(ctx.path().join("Dockerfile"), "FROM scratch\nCOPY f.txt /f.txt\n").unwrap();
        let mut args = vec!["build", "-q", "-t", tag];
        args.extend_from_slice(extra);
        last_line(&run_ok(self.kiln(&args).arg(ctx.path())))
    }
    /// Runs kiln expecting failure with `code`; returns stderr.
    fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.kiln(args).output().unwrap();
        assert_eq!(out.status.code(), Some(code), "kiln {args:?}:\n{}", stderr(&out));
        stderr(&out)
    }
}

/// Minimal distribution-API client over HTTP/1.0 on loopback, independent of kiln.
struct Http<'a> {
    addr: &'a str,
}

impl Http<'_> {
    fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, Vec<(String, String)>, Vec<u8>) {
        let mut s = TcpStream::connect(self.addr).unwrap();
        let mut req = format!(
            "{method} {path} HTTP/1.0\r\nHost: {}\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).unwrap();
        let split = resp.windows(4).position(|w| w == b"\r\n\r\n").expect("HTTP response");
        let head = String::from_utf8_lossy(&resp[..split]).into_owned();
        let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        let hdrs = head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        (status, hdrs, resp[split + 4..].to_vec())
    }
    fn manifest(&self, repo: &str, reference: &str) -> Option<Value> {
        let accept = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json";
        let (st, _, body) = self.request(
            "GET",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Accept", accept)],
            b"",
        );
        (st == 200).then(|| serde_json::from_slice(&body).unwrap())
    }
    fn blob(&self, repo: &str, digest: &str) -> Vec<u8> {
        let (st, _, body) = self.request("GET", &format!("/v2/{repo}/blobs/{digest}"), &[], b"");
        assert_eq!(st, 200, "GET blob {digest}");
        body
    }
    fn put_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = format!("sha256:{}", kiln_tests::sha256_hex(data));
        let (st, hdrs, _) = self.request("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], b"");
        assert_eq!(st, 202);
        let loc = &hdrs.iter().find(|(k, _)| k == "location").unwrap().1;
        let path = loc
            .split_once("://")
            .map(|(_, r)| &r[r.find('/').unwrap()..])
            .unwrap_or(loc);
        let sep = if path.contains('?') { '&' } else { '?' };
        let (st, _, body) = self.request(
            "PUT",
            &format!("{path}{sep}digest={digest}"),
            &[("Content-Type", "application/octet-stream")],
            data,
        );
        assert_eq!(st, 201, "PUT blob: {}", String::from_utf8_lossy(&body));
        digest
    }
    fn put_manifest(&self, repo: &str, reference: &str, m: &Value) -> String {
        let data = serde_json::to_vec(m).unwrap();
        let mt = m["mediaType"].as_str().unwrap();
        let (st, _, body) = self.request(
            "PUT",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Content-Type", mt)],
            &data,
        );
        assert_eq!(st, 201, "PUT manifest {reference}: {}", String::from_utf8_lossy(&body));
        format!("sha256:{}", kiln_tests::sha256_hex(&data))
    }
    /// Replaces the referrers tag-schema index of `digest` (docker-registry has no
    /// referrers API) with `manifests`.
    fn set_referrers(&self, repo: &str, digest: &str, manifests: Value) {
        let idx =
            json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests});
        self.put_manifest(repo, &digest.replace(':', "-"), &idx);
    }
    fn referrers(&self, repo: &str, digest: &str) -> Vec<Value> {
        self.manifest(repo, &digest.replace(':', "-"))
            .map(|i| i["manifests"].as_array().unwrap().clone())
            .unwrap_or_default()
    }
    /// Replaces the `.sig` (or `.att`) manifest of `digest` with one holding `layers`.
    fn set_tag_layers(&self, repo: &str, digest: &str, suffix: &str, layers: Value) {
        let cfg = self.put_blob(repo, b"{}");
        let m = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": 2},
            "layers": layers,
        });
        self.put_manifest(repo, &format!("{}.{suffix}", digest.replace(':', "-")), &m);
    }
}

fn openssl_b64_decode(dir: &Path, b64: &str) -> Vec<u8> {
    let f = dir.join("b64.txt");
    std::fs::write(&f, b64).unwrap();
    run_ok(
        Command::new(require_tool("openssl"))
            .args(["base64", "-d", "-A", "-in"])
            .arg(&f),
    )
    .stdout
}

fn sigstore_js(file: &Path, key: &str) -> Result<Value, String> {
    require_tool("node");
    let script = repo_root().join("tests/node/verify-bundle.js");
    assert!(
        repo_root().join("tests/node/node_modules/@sigstore/verify").is_dir(),
        "@sigstore/verify is not installed in tests/node (hint: run scripts/setup, which runs npm ci there)"
    );
    let out = Command::new("node").arg(&script).arg(file).arg(key).output().unwrap();
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).unwrap())
    } else {
        Err(stderr(&out))
    }
}

#[test]
fn key_pair_made_by_kiln_is_read_back_and_a_wrong_password_is_clear() {
    let e = Env::new();
    let key = std::fs::read_to_string(e.key()).unwrap();
    assert!(
        key.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----"),
        "{key}"
    );
    assert!(!key.contains(PASSWORD));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(e.key()).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(
        std::fs::read_to_string(e.public())
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----")
    );
    // Never overwritten.
    let err = e.fails(
        &[
            "generate-key-pair",
            "--output-key-prefix",
            &e.dir.path().join("cosign").display().to_string(),
        ],
        2,
    );
    assert!(err.contains("already exists"), "{err}");

    let digest = e.build("app:1", "one", &[]);
    let err = {
        let out = e
            .kiln(&["sign", "--key", &e.key(), "app:1"])
            .env("COSIGN_PASSWORD", "not it")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        stderr(&out)
    };
    assert!(err.contains("wrong password") && err.contains("cosign.key"), "{err}");
    assert!(!err.contains("not it") && !err.contains("panicked"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");

    run_ok(&mut e.kiln(&["sign", "--key", &e.key(), "app:1"]));
    let out = run_ok(&mut e.kiln(&["verify", "--key", &e.public(), "app:1"]));
    let payloads = stdout_json(&out);
    let simple = payloads
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p.get("critical").is_some())
        .expect("the simple-signing payload");
    assert_eq!(simple["critical"]["image"]["docker-manifest-digest"], digest.as_str());
    assert_eq!(simple["critical"]["type"], "cosign container image signature");
    let bundle = payloads
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p.get("_type").is_some())
        .expect("the bundle statement");
    assert_eq!(
        bundle["subject"][0]["digest"]["sha256"],
        digest.trim_start_matches("sha256:")
    );

    // Plain PEM keys sign too (PKCS#8 from openssl).
    let pem = e.dir.path().join("plain.pem");
    run_ok(
        Command::new(require_tool("openssl"))
            .args([
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
            ])
            .arg(&pem),
    );
    let pub_pem = e.dir.path().join("plain.pub");
    run_ok(
        Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&pem)
            .arg("-out")
            .arg(&pub_pem),
    );
    run_ok(&mut e.kiln(&["sign", "--key", &pem.display().to_string(), "app:1"]));
    run_ok(&mut e.kiln(&["verify", "--key", &pub_pem.display().to_string(), "app:1"]));
}

#[test]
fn cosign_made_policy_controller_test_keys_are_read() {
    let e = Env::new();
    let data = repo_root().join("crates/kiln-sign/testdata/policy-controller");
    e.build("app:pc", "pc", &[]);
    let out = e
        .kiln(&[
            "sign",
            "--key",
            &data.join("cosign.key").display().to_string(),
            "app:pc",
        ])
        .env("COSIGN_PASSWORD", "")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    run_ok(&mut e.kiln(&[
        "verify",
        "--key",
        &data.join("cosign.pub").display().to_string(),
        "app:pc",
    ]));
    // Our own key does not verify the policy-controller signature: wrong key.
    let err = e.fails(&["verify", "--key", &e.public(), "app:pc"], 1);
    assert!(err.contains("wrong key"), "{err}");
}

#[test]
fn registry_signatures_verify_with_openssl_and_sigstore_js() {
    let reg = TestRegistry::start();
    let e = Env::new();
    let name = format!("{}/app:1", reg.addr);
    let digest = e.build(&name, "registry", &[]);
    run_ok(&mut e.kiln(&["push", "-q", &name]));
    let remote = format!("docker://{name}");
    run_ok(&mut e.kiln(&["sign", "--key", &e.key(), &remote]));
    let http = Http { addr: &reg.addr };

    // Classic form: openssl verifies the payload with cosign.pub.
    let sig = http
        .manifest("app", &format!("{}.sig", digest.replace(':', "-")))
        .expect(".sig tag");
    let layer = &sig["layers"][0];
    assert_eq!(layer["mediaType"], "application/vnd.dev.cosign.simplesigning.v1+json");
    let payload = http.blob("app", layer["digest"].as_str().unwrap());
    let p: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(p["critical"]["image"]["docker-manifest-digest"], digest.as_str());
    assert_eq!(
        p["critical"]["identity"]["docker-reference"],
        format!("{}/app", reg.addr)
    );
    assert!(openssl_verifies(&e, &http, "app", layer));

    // Bundle form: a referrer (tag schema on this registry), verified by sigstore-js.
    let refs = http.referrers("app", &digest);
    let b = refs
        .iter()
        .find(|r| r["artifactType"] == "application/vnd.dev.sigstore.bundle.v0.3+json")
        .expect("bundle referrer");
    let bm = http.manifest("app", b["digest"].as_str().unwrap()).unwrap();
    assert_eq!(bm["subject"]["digest"], digest.as_str());
    let bundle = http.blob("app", bm["layers"][0]["digest"].as_str().unwrap());
    let bf = e.dir.path().join("bundle.json");
    std::fs::write(&bf, &bundle).unwrap();
    let v = sigstore_js(&bf, &e.public()).expect("sigstore-js verifies kiln's bundle");
    assert_eq!(
        v["subject"][0]["digest"]["sha256"],
        digest.trim_start_matches("sha256:")
    );
    let other = Env::new();
    assert!(
        sigstore_js(&bf, &other.public())
            .unwrap_err()
            .contains("signature verification failed")
    );

    // Attestation: the .att DSSE envelope and its bundle verify with sigstore-js too.
    let pred = e.dir.path().join("pred.json");
    std::fs::write(&pred, r#"{"scanner": "test", "result": "clean"}"#).unwrap();
    run_ok(&mut e.kiln(&[
        "attest",
        "--key",
        &e.key(),
        "--predicate",
        &pred.display().to_string(),
        "--type",
        "vuln",
        &remote,
    ]));
    let att = http
        .manifest("app", &format!("{}.att", digest.replace(':', "-")))
        .expect(".att tag");
    let env_layer = &att["layers"][0];
    assert_eq!(env_layer["mediaType"], "application/vnd.dsse.envelope.v1+json");
    assert_eq!(
        env_layer["annotations"]["predicateType"],
        "https://cosign.sigstore.dev/attestation/vuln/v1"
    );
    let ef = e.dir.path().join("envelope.json");
    std::fs::write(&ef, http.blob("app", env_layer["digest"].as_str().unwrap())).unwrap();
    let v = sigstore_js(&ef, &e.public()).expect("sigstore-js verifies kiln's DSSE envelope");
    assert_eq!(v["predicateType"], "https://cosign.sigstore.dev/attestation/vuln/v1");
    // The push also carried the build's SBOMs and provenance; two of the referrers are bundles.
    let refs = http.referrers("app", &digest);
    let bundles = refs
        .iter()
        .filter(|r| r["artifactType"] == "application/vnd.dev.sigstore.bundle.v0.3+json")
        .count();
    assert_eq!(bundles, 2, "{refs:?}");
    let ab = refs
        .iter()
        .find(|r| {
            r["annotations"]["dev.sigstore.bundle.predicateType"] == "https://cosign.sigstore.dev/attestation/vuln/v1"
        })
        .expect("attestation bundle referrer");
    let abm = http.manifest("app", ab["digest"].as_str().unwrap()).unwrap();
    std::fs::write(&bf, http.blob("app", abm["layers"][0]["digest"].as_str().unwrap())).unwrap();
    sigstore_js(&bf, &e.public()).expect("sigstore-js verifies the attestation bundle");

    // And kiln itself, from a store that has never seen the image.
    let fresh = KilnStore::new();
    let out = run_ok(&mut kiln(
        &fresh,
        e.docker.path(),
        &["verify", "--key", &e.public(), &remote],
    ));
    assert_eq!(stdout_json(&out).as_array().unwrap().len(), 2);
    let out = run_ok(&mut kiln(
        &fresh,
        e.docker.path(),
        &["verify-attestation", "--key", &e.public(), "--type", "vuln", &remote],
    ));
    let st = stdout_json(&out);
    assert_eq!(st[0]["predicate"]["result"], "clean");
}

#[test]
fn signatures_made_in_the_store_are_pushed_with_the_image() {
    let reg = TestRegistry::start();
    let e = Env::new();
    let name = format!("{}/team/app:2", reg.addr);
    let digest = e.build(&name, "local", &["--sign", "--key", &e.key()]);
    // Kept beside the image in the store, under cosign's tag names.
    let index = e.store.index();
    let refs: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str())
        .collect();
    let sig_tag = format!("{}/team/app:{}.sig", reg.addr, digest.replace(':', "-"));
    assert!(refs.contains(&sig_tag.as_str()), "{refs:?}");
    // Not pushed yet: the registry name means the registry, which has nothing; --local
    // checks the store's copy.
    let err = e.fails(&["verify", "--key", &e.public(), &name], 2);
    assert!(err.contains("push it first") && err.contains("--local"), "{err}");
    run_ok(&mut e.kiln(&["verify", "--local", "--key", &e.public(), &name]));
    run_ok(&mut e.kiln(&["push", "-q", &name]));
    let http = Http { addr: &reg.addr };
    assert!(
        http.manifest("team/app", &format!("{}.sig", digest.replace(':', "-")))
            .is_some()
    );
    assert!(
        http.manifest("team/app", &format!("{}.att", digest.replace(':', "-")))
            .is_some()
    );
    let fresh = KilnStore::new();
    let remote = format!("docker://{name}");
    run_ok(&mut kiln(
        &fresh,
        e.docker.path(),
        &["verify", "--key", &e.public(), &remote],
    ));
    let out = run_ok(&mut kiln(
        &fresh,
        e.docker.path(),
        &[
            "verify-attestation",
            "--key",
            &e.public(),
            "--type",
            "slsaprovenance",
            &remote,
        ],
    ));
    assert_eq!(stdout_json(&out)[0]["predicateType"], "https://slsa.dev/provenance/v1");
    // The build's SBOMs were attested too.
    for (t, uri) in [
        ("spdxjson", "https://spdx.dev/Document"),
        ("cyclonedx", "https://cyclonedx.org/bom"),
    ] {
        let out = run_ok(&mut kiln(
            &fresh,
            e.docker.path(),
            &["verify-attestation", "--key", &e.public(), "--type", t, &remote],
        ));
        assert_eq!(stdout_json(&out)[0]["predicateType"], uri);
    }
    let help = run_ok(&mut e.kiln(&["verify", "--help"]));
    assert!(
        String::from_utf8_lossy(&help.stdout).contains("keyless"),
        "--help says keyless is out of scope"
    );
    // Pushing again adds nothing twice.
    run_ok(&mut e.kiln(&["push", "-q", &name]));
    let sig = http
        .manifest("team/app", &format!("{}.sig", digest.replace(':', "-")))
        .unwrap();
    assert_eq!(sig["layers"].as_array().unwrap().len(), 1);
}

/// The tags skopeo lists for `repo` in the registry.
fn skopeo_tags(reg: &TestRegistry, repo: &str) -> Vec<String> {
    let out = skopeo(&[
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{}/{repo}", reg.addr),
    ]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

/// openssl's verdict on a cosign simple-signing layer of `repo` in the registry.
fn openssl_verifies(e: &Env, http: &Http, repo: &str, layer: &Value) -> bool {
    let payload = http.blob(repo, layer["digest"].as_str().unwrap());
    let sig = layer["annotations"]["dev.cosignproject.cosign/signature"]
        .as_str()
        .unwrap();
    std::fs::write(e.dir.path().join("sig.der"), openssl_b64_decode(e.dir.path(), sig)).unwrap();
    std::fs::write(e.dir.path().join("payload"), &payload).unwrap();
    let out = Command::new(require_tool("openssl"))
        .args([
            "dgst",
            "-sha256",
            "-verify",
            &e.public(),
            "-signature",
            "sig.der",
            "payload",
        ])
        .current_dir(e.dir.path())
        .output()
        .unwrap();
    out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Verified OK")
}

#[test]
fn signing_a_registry_reference_publishes_to_the_registry() {
    let reg = TestRegistry::start();
    let e = Env::new();
    let http = Http { addr: &reg.addr };
    // The image is in the store and in the registry, under the same name.
    let name = format!("{}/pub/app:1", reg.addr);
    let digest = e.build(&name, "published", &[]);
    run_ok(&mut e.kiln(&["push", "-q", &name]));
    let sig_tag = format!("{}.sig", digest.replace(':', "-"));
    assert!(!skopeo_tags(&reg, "pub/app").contains(&sig_tag));

    // kiln sign NAME: the registry has the .sig tag at once (no kiln push), and openssl
    // verifies what it holds.
    let out = run_ok(&mut e.kiln(&["sign", "--key", &e.key(), &name]));
    assert!(
        skopeo_tags(&reg, "pub/app").contains(&sig_tag),
        "{:?}",
        skopeo_tags(&reg, "pub/app")
    );
    assert!(stderr(&out).contains("published to the registry"), "{}", stderr(&out));
    let sig = http.manifest("pub/app", &sig_tag).unwrap();
    assert_eq!(sig["layers"].as_array().unwrap().len(), 1);
    assert!(openssl_verifies(&e, &http, "pub/app", &sig["layers"][0]));
    // kiln attest NAME: the .att tag and the attestation's bundle referrer are there too,
    // and sigstore-js verifies the bundle read from the registry.
    let pred = e.dir.path().join("pred.json");
    std::fs::write(&pred, r#"{"result": "clean"}"#).unwrap();
    let p = pred.display().to_string();
    run_ok(&mut e.kiln(&["attest", "--key", &e.key(), "--predicate", &p, "--type", "vuln", &name]));
    assert!(skopeo_tags(&reg, "pub/app").contains(&format!("{}.att", digest.replace(':', "-"))));
    let refs = http.referrers("pub/app", &digest);
    let ab = refs
        .iter()
        .find(|r| {
            r["annotations"]["dev.sigstore.bundle.predicateType"] == "https://cosign.sigstore.dev/attestation/vuln/v1"
        })
        .unwrap_or_else(|| panic!("no attestation bundle among {refs:?}"));
    let abm = http.manifest("pub/app", ab["digest"].as_str().unwrap()).unwrap();
    let bf = e.dir.path().join("bundle.json");
    std::fs::write(&bf, http.blob("pub/app", abm["layers"][0]["digest"].as_str().unwrap())).unwrap();
    let v = sigstore_js(&bf, &e.public()).expect("sigstore-js verifies the bundle in the registry");
    assert_eq!(
        v["subject"][0]["digest"]["sha256"],
        digest.trim_start_matches("sha256:")
    );
    // The store kept a copy: --local verifies it, and so does the registry.
    run_ok(&mut e.kiln(&["verify", "--local", "--key", &e.public(), &name]));
    run_ok(&mut e.kiln(&["verify", "--key", &e.public(), &name]));

    // kiln verify NAME reads the registry, not the store: an image signed only in the store
    // (--local) has no signature there, whatever the store holds.
    let other = format!("{}/pub/app:2", reg.addr);
    e.build(&other, "signed locally", &[]);
    run_ok(&mut e.kiln(&["push", "-q", &other]));
    run_ok(&mut e.kiln(&["sign", "--local", "--key", &e.key(), &other]));
    let err = e.fails(&["verify", "--key", &e.public(), &other], 1);
    assert!(err.contains("no signature found"), "{err}");
    run_ok(&mut e.kiln(&["verify", "--local", "--key", &e.public(), &other]));
    // A signature that verifies in the store but was altered in the registry fails there.
    let tampered = http.manifest("pub/app", &sig_tag).unwrap();
    let mut layer = tampered["layers"][0].clone();
    let mut payload = http.blob("pub/app", layer["digest"].as_str().unwrap());
    let i = payload.len() / 2;
    payload[i] ^= 0x01;
    layer["digest"] = json!(http.put_blob("pub/app", &payload));
    layer["size"] = json!(payload.len());
    http.set_tag_layers("pub/app", &digest, "sig", json!([layer]));
    http.set_referrers("pub/app", &digest, json!([]));
    let err = e.fails(&["verify", "--key", &e.public(), &name], 1);
    assert!(err.contains("invalid signature"), "{err}");
    run_ok(&mut e.kiln(&["verify", "--local", "--key", &e.public(), &name]));
}

/// `kiln referrers` of an image in a registry, as JSON descriptors.
fn kiln_referrers(store: &KilnStore, docker: &Path, image: &str) -> Vec<Value> {
    let out = run_ok(&mut kiln(store, docker, &["referrers", "--format", "json", image]));
    stdout_json(&out).as_array().unwrap().clone()
}

#[test]
fn copy_between_registries_carries_signatures_attestations_and_sboms() {
    let (a, b) = (TestRegistry::start(), TestRegistry::start());
    let e = Env::new();
    let src = format!("{}/promo/app:1", a.addr);
    // Built with SBOMs and provenance attached, pushed, then signed and attested in A.
    let digest = e.build(&src, "promote me", &[]);
    run_ok(&mut e.kiln(&["push", "-q", &src]));
    run_ok(&mut e.kiln(&["sign", "--key", &e.key(), &src]));
    let sbom = e.dir.path().join("sbom.json");
    run_ok(&mut e.kiln(&["sbom", "-o", "spdx-json", "--file", &sbom.display().to_string(), &src]));
    let p = sbom.display().to_string();
    run_ok(&mut e.kiln(&[
        "attest",
        "--key",
        &e.key(),
        "--predicate",
        &p,
        "--type",
        "spdxjson",
        &src,
    ]));
    // A signature on the SBOM artifact itself: a referrer of a referrer.
    let refs_a = kiln_referrers(&e.store, e.docker.path(), &src);
    let spdx = refs_a
        .iter()
        .find(|r| r["artifactType"] == "application/spdx+json")
        .unwrap_or_else(|| panic!("no SBOM referrer in A: {refs_a:?}"));
    let spdx_digest = spdx["digest"].as_str().unwrap().to_string();
    let spdx_ref = format!("{}/promo/app@{spdx_digest}", a.addr);
    run_ok(&mut e.kiln(&["sign", "--key", &e.key(), &spdx_ref]));

    // Promotion from a store that has never seen the image.
    let dst = format!("{}/prod/app:1", b.addr);
    let mover = KilnStore::new();
    let out = run_ok(&mut kiln(&mover, e.docker.path(), &["copy", &src, &dst]));
    assert_eq!(last_line(&out), digest);

    // B has it all, read by tools kiln did not write: skopeo lists the cosign tags, openssl
    // verifies the signature, sigstore-js the attestation's bundle.
    let hex = digest.replace(':', "-");
    let tags = skopeo_tags(&b, "prod/app");
    for t in [
        format!("{hex}.sig"),
        format!("{hex}.att"),
        format!("{}.sig", spdx_digest.replace(':', "-")),
    ] {
        assert!(tags.contains(&t), "{t} missing from B: {tags:?}");
    }
    assert!(
        stderr(&out).contains("signatures, attestations, SBOMs"),
        "{}",
        stderr(&out)
    );
    let http_b = Http { addr: &b.addr };
    let sig = http_b.manifest("prod/app", &format!("{hex}.sig")).unwrap();
    assert!(openssl_verifies(&e, &http_b, "prod/app", &sig["layers"][0]));
    let refs_b = kiln_referrers(&mover, e.docker.path(), &dst);
    let types = |refs: &[Value]| {
        let mut t: Vec<String> = refs
            .iter()
            .map(|r| r["artifactType"].as_str().unwrap().to_string())
            .collect();
        t.sort();
        t
    };
    assert_eq!(types(&refs_b), types(&kiln_referrers(&e.store, e.docker.path(), &src)));
    let att_bundle = refs_b
        .iter()
        .find(|r| r["annotations"]["dev.sigstore.bundle.predicateType"] == "https://spdx.dev/Document")
        .unwrap_or_else(|| panic!("no SBOM attestation bundle in B: {refs_b:?}"));
    let bm = http_b
        .manifest("prod/app", att_bundle["digest"].as_str().unwrap())
        .unwrap();
    let bf = e.dir.path().join("b-bundle.json");
    std::fs::write(
        &bf,
        http_b.blob("prod/app", bm["layers"][0]["digest"].as_str().unwrap()),
    )
    .unwrap();
    sigstore_js(&bf, &e.public()).expect("sigstore-js verifies the copied attestation");
    // And kiln verifies in B from a third store: the image, its SBOM attestation, and the
    // SBOM artifact's own signature.
    let third = KilnStore::new();
    let verify = |args: &[&str]| run_ok(&mut kiln(&third, e.docker.path(), args));
    let out = verify(&["verify", "--key", &e.public(), &dst]);
    assert_eq!(stdout_json(&out).as_array().unwrap().len(), 2);
    verify(&["verify-attestation", "--key", &e.public(), "--type", "spdxjson", &dst]);
    verify(&[
        "verify",
        "--key",
        &e.public(),
        &format!("{}/prod/app@{spdx_digest}", b.addr),
    ]);

    // --remove-signatures leaves all of it behind.
    let bare = format!("{}/bare/app:1", b.addr);
    run_ok(&mut kiln(
        &mover,
        e.docker.path(),
        &["copy", "--remove-signatures", &src, &bare],
    ));
    assert!(!skopeo_tags(&b, "bare/app").iter().any(|t| t.starts_with("sha256-")));
    assert!(kiln_referrers(&mover, e.docker.path(), &bare).is_empty());
    let out = kiln(&third, e.docker.path(), &["verify", "--key", &e.public(), &bare])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));

    // Into a store, the attachments come along too: verify --local reads them there.
    run_ok(&mut kiln(&mover, e.docker.path(), &["copy", &src, "promoted/app:1"]));
    let out = run_ok(&mut kiln(
        &mover,
        e.docker.path(),
        &["verify", "--key", &e.public(), "promoted/app:1"],
    ));
    assert_eq!(stdout_json(&out).as_array().unwrap().len(), 2);
}

/// Signs `repo:tag` in the registry; returns its digest.
fn signed_remote(e: &Env, reg: &TestRegistry, repo: &str, text: &str) -> String {
    let name = format!("{}/{repo}:1", reg.addr);
    let d = e.build(&name, text, &[]);
    run_ok(&mut e.kiln(&["push", "-q", &name]));
    run_ok(&mut e.kiln(&["sign", "--key", &e.key(), &format!("docker://{name}")]));
    d
}

/// The image signature's bundle entry among the referrers.
fn sign_bundle(refs: &[Value]) -> Value {
    refs.iter()
        .find(|r| r["annotations"]["dev.sigstore.bundle.predicateType"] == "https://sigstore.dev/cosign/sign/v1")
        .unwrap_or_else(|| panic!("no signature bundle in {refs:?}"))
        .clone()
}

fn flip_last_byte_b64(dir: &Path, b64: &str) -> String {
    let mut raw = openssl_b64_decode(dir, b64);
    *raw.last_mut().unwrap() ^= 0x01;
    kiln_tests::registry::base64(&raw, false)
}

#[test]
fn tampering_fails_verification_with_the_reason() {
    let reg = TestRegistry::start();
    let e = Env::new();
    let http = Http { addr: &reg.addr };
    let verify = |repo: &str| {
        e.fails(
            &[
                "verify",
                "--key",
                &e.public(),
                &format!("docker://{}/{repo}:1", reg.addr),
            ],
            1,
        )
    };

    // One byte of the payload (classic form; the bundle is taken away so only it counts).
    let d = signed_remote(&e, &reg, "payload", "p");
    let sig = http
        .manifest("payload", &format!("{}.sig", d.replace(':', "-")))
        .unwrap();
    let mut layer = sig["layers"][0].clone();
    let mut payload = http.blob("payload", layer["digest"].as_str().unwrap());
    let i = payload.len() / 2;
    payload[i] ^= 0x01;
    layer["digest"] = json!(http.put_blob("payload", &payload));
    layer["size"] = json!(payload.len());
    http.set_tag_layers("payload", &d, "sig", json!([layer]));
    http.set_referrers("payload", &d, json!([]));
    let err = verify("payload");
    assert!(err.contains("invalid signature"), "{err}");

    // One byte of the signature, in both forms.
    let d = signed_remote(&e, &reg, "signature", "s");
    let sig = http
        .manifest("signature", &format!("{}.sig", d.replace(':', "-")))
        .unwrap();
    let mut layer = sig["layers"][0].clone();
    let s = layer["annotations"]["dev.cosignproject.cosign/signature"]
        .as_str()
        .unwrap()
        .to_string();
    layer["annotations"]["dev.cosignproject.cosign/signature"] = json!(flip_last_byte_b64(e.dir.path(), &s));
    http.set_tag_layers("signature", &d, "sig", json!([layer]));
    let sb = sign_bundle(&http.referrers("signature", &d));
    let bm = http.manifest("signature", sb["digest"].as_str().unwrap()).unwrap();
    let mut bundle: Value =
        serde_json::from_slice(&http.blob("signature", bm["layers"][0]["digest"].as_str().unwrap())).unwrap();
    let s = bundle["dsseEnvelope"]["signatures"][0]["sig"]
        .as_str()
        .unwrap()
        .to_string();
    bundle["dsseEnvelope"]["signatures"][0]["sig"] = json!(flip_last_byte_b64(e.dir.path(), &s));
    let data = serde_json::to_vec(&bundle).unwrap();
    let mut bm2 = bm.clone();
    bm2["layers"][0]["digest"] = json!(http.put_blob("signature", &data));
    bm2["layers"][0]["size"] = json!(data.len());
    let bd = http.put_manifest("signature", "tampered-bundle", &bm2);
    let mut entry = sb.clone();
    entry["digest"] = json!(bd);
    entry["size"] = json!(serde_json::to_vec(&bm2).unwrap().len());
    http.set_referrers("signature", &d, json!([entry]));
    let err = verify("signature");
    assert_eq!(err.matches("invalid signature").count(), 2, "{err}");

    // One byte of the image manifest, re-tagged: the old signatures do not name it. Moved
    // along to the new digest, they are valid signatures of another digest.
    let d = signed_remote(&e, &reg, "retag", "r");
    let mut m = http.manifest("retag", &d).unwrap();
    m["annotations"] = json!({"x": "y"});
    let d2 = http.put_manifest("retag", "1", &m);
    let err = verify("retag");
    assert!(err.contains("no signature found"), "{err}");
    let sig = http.manifest("retag", &format!("{}.sig", d.replace(':', "-"))).unwrap();
    http.set_tag_layers("retag", &d2, "sig", sig["layers"].clone());
    http.set_referrers("retag", &d2, json!(http.referrers("retag", &d)));
    let err = verify("retag");
    assert_eq!(err.matches("digest mismatch").count(), 2, "{err}");

    // A valid signature of another image attached to this one.
    let other = signed_remote(&e, &reg, "theft", "other image");
    let name = format!("{}/theft:2", reg.addr);
    let victim = e.build(&name, "victim", &[]);
    run_ok(&mut e.kiln(&["push", "-q", &name]));
    let sig = http
        .manifest("theft", &format!("{}.sig", other.replace(':', "-")))
        .unwrap();
    http.set_tag_layers("theft", &victim, "sig", sig["layers"].clone());
    http.set_referrers("theft", &victim, json!(http.referrers("theft", &other)));
    let err = e.fails(&["verify", "--key", &e.public(), &format!("docker://{name}")], 1);
    assert_eq!(err.matches("digest mismatch").count(), 2, "{err}");

    // Another key.
    signed_remote(&e, &reg, "otherkey", "k");
    let stranger = Env::new();
    let err = e.fails(
        &[
            "verify",
            "--key",
            &stranger.public(),
            &format!("docker://{}/otherkey:1", reg.addr),
        ],
        1,
    );
    assert_eq!(err.matches("wrong key").count(), 2, "{err}");

    // Malformed: a bundle that is not JSON.
    let d = signed_remote(&e, &reg, "malformed", "m");
    let sb = sign_bundle(&http.referrers("malformed", &d));
    let mut bm = http.manifest("malformed", sb["digest"].as_str().unwrap()).unwrap();
    bm["layers"][0]["digest"] = json!(http.put_blob("malformed", b"not json"));
    bm["layers"][0]["size"] = json!(8);
    let bd = http.put_manifest("malformed", "broken-bundle", &bm);
    let mut entry = sb.clone();
    entry["digest"] = json!(bd);
    entry["size"] = json!(serde_json::to_vec(&bm).unwrap().len());
    http.set_referrers("malformed", &d, json!([entry]));
    http.set_tag_layers("malformed", &d, "sig", json!([]));
    let err = verify("malformed");
    assert!(err.contains("malformed"), "{err}");
}

#[test]
fn provenance_names_bases_commit_and_validates_with_in_toto_attestation() {
    let reg = TestRegistry::start();
    let e = Env::new();
    let base = format!("{}/base:1", reg.addr);
    let base_digest = e.build(&base, "base", &[]);
    run_ok(&mut e.kiln(&["push", "-q", &base]));
    let tools = format!("{}/tools:1", reg.addr);
    let tools_digest = e.build(&tools, "tools", &[]);
    run_ok(&mut e.kiln(&["push", "-q", &tools]));
    // A fresh store pulls both by tag; the provenance must name the digests they resolved to.
    let s2 = KilnStore::new();
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("app.txt"), "app").unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM {base} AS final\nARG VERSION\nARG API_TOKEN\nCOPY --from={tools} /f.txt /tools.txt\nCOPY app.txt /app.txt\n"),
    )
    .unwrap();
    let git = |args: &[&str]| {
        run_ok(
            Command::new(require_tool("git"))
                .args(["-c", "user.email=t@example.com", "-c", "user.name=t"])
                .args(args)
                .current_dir(ctx.path()),
        )
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["commit", "-qm", "app"]);
    git(&["remote", "add", "origin", "https://git.example.com/team/app.git"]);
    let commit = String::from_utf8(git(&["rev-parse", "HEAD"]).stdout)
        .unwrap()
        .trim()
        .to_string();
    let app = format!("{}/app:1", reg.addr);
    let out = run_ok(
        kiln(
            &s2,
            e.docker.path(),
            &[
                "build",
                "-q",
                "-t",
                &app,
                "--sign",
                "--key",
                &e.key(),
                "--tag-digest",
                "--build-arg",
                "VERSION=1.2",
                "--build-arg",
                "API_TOKEN=s3cr3t-value",
            ],
        )
        .arg(ctx.path()),
    );
    let digest = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let out = run_ok(&mut kiln(
        &s2,
        e.docker.path(),
        &[
            "verify-attestation",
            "--local",
            "--key",
            &e.public(),
            "--type",
            "slsaprovenance",
            &app,
        ],
    ));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        !text.contains("s3cr3t-value"),
        "a secret-looking build arg value leaked: {text}"
    );
    let statement = stdout_json(&out)[0].clone();
    assert_eq!(
        statement["subject"][0]["digest"]["sha256"],
        digest.trim_start_matches("sha256:")
    );
    let p = &statement["predicate"];
    assert_eq!(
        p["buildDefinition"]["buildType"],
        "https://kiln.dev/build-types/dockerfile/v1"
    );
    let ext = &p["buildDefinition"]["externalParameters"];
    assert_eq!(ext["buildArgs"]["VERSION"], "1.2");
    assert_eq!(ext["buildArgs"]["API_TOKEN"], "<redacted>");
    assert_eq!(ext["target"], "final");
    let deps = p["buildDefinition"]["resolvedDependencies"].as_array().unwrap();
    let dep = |name: &str| {
        deps.iter()
            .find(|d| d["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {deps:?}"))
    };
    assert_eq!(
        dep(&base)["digest"]["sha256"],
        base_digest.trim_start_matches("sha256:")
    );
    assert_eq!(
        dep(&tools)["digest"]["sha256"],
        tools_digest.trim_start_matches("sha256:")
    );
    assert_eq!(dep("context")["digest"]["gitCommit"], commit.as_str());
    assert_eq!(
        dep("context")["uri"],
        format!("git+https://git.example.com/team/app.git@{commit}")
    );
    assert!(
        p["buildDefinition"]["internalParameters"]["SOURCE_DATE_EPOCH"]
            .as_i64()
            .unwrap()
            > 0
    );
    // --tag-digest: the content-addressed twin.
    let twin = format!("{}/app:{}", reg.addr, digest.replace(':', "-"));
    let idx = s2.index();
    assert!(
        idx["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .any(
                |m| m["annotations"]["org.opencontainers.image.ref.name"] == twin.as_str()
                    && m["digest"] == digest.as_str()
            )
    );

    // The in-toto attestation framework's own Python bindings accept it.
    let py = repo_root().join(".venv/bin/python");
    assert!(
        py.is_file(),
        "{} is missing (hint: run scripts/setup, which installs in-toto-attestation into .venv)",
        py.display()
    );
    let sf = e.dir.path().join("statement.json");
    std::fs::write(&sf, serde_json::to_vec(&statement).unwrap()).unwrap();
    let check = r#"
import json, sys
from google.protobuf import json_format
from in_toto_attestation.v1 import statement_pb2, statement, resource_descriptor
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
doc = json.load(open(sys.argv[1]))
st = json_format.Parse(json.dumps(doc), statement_pb2.Statement())
statement.Statement.copy_from_pb(st).validate()
prov = json_format.ParseDict(doc["predicate"], provenance_pb2.Provenance())
assert prov.build_definition.build_type, "buildType"
assert prov.run_details.builder.id, "builder.id"
for rd in prov.build_definition.resolved_dependencies:
    resource_descriptor.ResourceDescriptor.copy_from_pb(rd).validate()
print("valid", len(prov.build_definition.resolved_dependencies))
"#;
    let out = run_ok(Command::new(&py).arg("-c").arg(check).arg(&sf));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("valid"));
}
