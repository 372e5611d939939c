//! `kiln serve` (issue 14): AdmissionReview v1 requests shaped as kube-apiserver sends them,
//! over HTTPS trusting a CA made here (rcgen), to a real `kiln serve` deciding images
//! built, pushed and signed by kiln in Debian's docker-registry on loopback.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use kiln_tests::registry::SigningEnv;
use kiln_tests::{free_port, run_ok, venv_tool};
use serde_json::{Value, json};

/// A CA and a serving certificate for 127.0.0.1 and localhost, written as PEM files.
fn certs(dir: &Path, tag: &str) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, format!("kiln test CA {tag}"));
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &ca).unwrap();
    let paths = (
        dir.join(format!("ca-{tag}.crt")),
        dir.join(format!("tls-{tag}.crt")),
        dir.join(format!("tls-{tag}.key")),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

/// A running `kiln serve`, stopped when dropped.
struct Server {
    child: Child,
    port: u16,
    ca: PathBuf,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// `curl` over HTTPS trusting `ca`: (HTTP code, body).
    fn curl_with(&self, ca: &Path, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let mut c = Command::new("curl");
        c.args([
            "-sS",
            "--max-time",
            "30",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "-X",
            method,
            "--cacert",
        ])
        .arg(ca)
        .arg(format!("https://127.0.0.1:{}{path}", self.port));
        if let Some(b) = body {
            c.args(["-H", "Content-Type: application/json", "--data-binary", b]);
        }
        let o = c.output().unwrap();
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        let (text, code) = out.rsplit_once('\n').unwrap_or(("", "000"));
        (code.trim().parse().unwrap_or(0), text.to_string())
    }

    fn curl(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        self.curl_with(&self.ca, method, path, body)
    }

    /// POSTs a review to `/validate` or `/mutate`; the response object.
    fn review(&self, endpoint: &str, review: &Value) -> Value {
        let (code, body) = self.curl("POST", endpoint, Some(&review.to_string()));
        assert_eq!(
            code,
            200,
            "{body}\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(v["kind"], "AdmissionReview");
        assert_eq!(v["response"]["uid"], review["request"]["uid"], "the uid is echoed");
        v["response"].clone()
    }
}

/// A store, a registry, key `a` and a scratch directory.
struct Env(SigningEnv);

impl std::ops::Deref for Env {
    type Target = SigningEnv;
    fn deref(&self) -> &SigningEnv {
        &self.0
    }
}

impl Env {
    fn new() -> Env {
        Env(SigningEnv::new(&["a"]))
    }

    /// Builds an image running as `user` (a file holding `text` makes it unique), pushes it
    /// as `repo` in the registry and signs it with key `a` when `signed`.
    fn push(&self, repo: &str, user: &str, text: &str, signed: bool) -> String {
        let ctx = tempfile::tempdir_in(self.dir.path()).unwrap();
        std::fs::write(ctx.path().join("f.txt"), text).unwrap();
        let dockerfile = format!("FROM scratch\nCOPY f.txt /f.txt\nUSER {user}\n");
        std::fs::write(ctx.path().join("Dockerfile"), dockerfile).unwrap();
        let name = format!("{}/{repo}", self.host());
        run_ok(self.kiln(&["build", "-q", "-t", &name]).arg(ctx.path()));
        run_ok(&mut self.kiln(&["push", "-q", &name]));
        if signed {
            let k = self.path("a.key").display().to_string();
            run_ok(&mut self.kiln(&["sign", "--key", &k, &name]));
        }
        name
    }

    /// The registry's digest for `reference`.
    fn digest(&self, reference: &str) -> String {
        let o = run_ok(Command::new("skopeo").args([
            "inspect",
            "--tls-verify=false",
            "--format",
            "{{.Digest}}",
            &format!("docker://{reference}"),
        ]));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// Starts `kiln serve` with `policy` (text) and waits until it answers `/healthz`.
    fn serve(&self, policy: &str, extra: &[&str]) -> Server {
        let p = self.path("kiln-policy.yaml");
        std::fs::write(&p, policy).unwrap();
        let (ca, cert, key) = certs(self.dir.path(), "one");
        let port = free_port();
        let log = self.path(&format!("serve-{port}.log"));
        let mut cmd = self.kiln(&["serve", "--listen", &format!("127.0.0.1:{port}")]);
        cmd.arg("--policy")
            .arg(&p)
            .arg("--tls-cert")
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key);
        cmd.args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let server = Server {
            child: cmd.spawn().unwrap(),
            port,
            ca,
            log,
        };
        for _ in 0..300 {
            if server.curl("GET", "/healthz", None) == (200, "ok\n".to_string()) {
                return server;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!(
            "kiln serve did not start: {}",
            std::fs::read_to_string(&server.log).unwrap_or_default()
        );
    }
}

/// An AdmissionReview v1 as kube-apiserver sends it (Kubernetes documentation, "Dynamic
/// Admission Control": request fields).
fn review(uid: &str, kind: &str, group: &str, namespace: &str, object: Value, dry_run: bool) -> Value {
    let (resource, version) = match kind {
        "Pod" => ("pods", "v1"),
        "Deployment" => ("deployments", "v1"),
        "CronJob" => ("cronjobs", "v1"),
        other => panic!("no resource for {other}"),
    };
    let name = object["metadata"]["name"].clone();
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": resource},
            "requestKind": {"group": group, "version": version, "kind": kind},
            "requestResource": {"group": group, "version": version, "resource": resource},
            "name": name,
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "admin", "uid": "014fbff9a07c", "groups": ["system:authenticated"]},
            "object": object,
            "oldObject": null,
            "dryRun": dry_run,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        }
    })
}

/// A container hardened as the restricted profile and `read_only_root` want.
fn container(name: &str, image: &str) -> Value {
    json!({"name": name, "image": image, "securityContext": {
        "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "runAsNonRoot": true,
        "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}})
}

fn pod_spec(containers: Vec<Value>, init: Vec<Value>) -> Value {
    json!({"securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
           "containers": containers, "initContainers": init})
}

fn deployment(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": name, "namespace": "shop"},
           "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                    "template": {"metadata": {"labels": {"app": name}}, "spec": spec}}})
}

fn pod(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "shop"}, "spec": spec})
}

const POLICY: &str = "version: 1
authorities:
  a: { key: a.pub }
rules:
  - name: production
    images: [\"127.0.0.1:*/prod/**\"]
    signatures: { by: [a] }
    pod: { profile: restricted, read_only_root: true }
  - name: hygiene
    images: [\"**\"]
    mode: warn
    config: { non_root: true }
";

/// Rows of the audit table, via Python's sqlite3: (uid, endpoint, result).
fn audit_rows(db: &Path) -> Vec<(String, String, String)> {
    let script = "import sqlite3,sys,json\nc=sqlite3.connect(sys.argv[1])\nprint(json.dumps(c.execute('select uid,endpoint,result from admissions order by id').fetchall()))";
    let o = run_ok(Command::new("python3").args(["-c", script]).arg(db));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn message(r: &Value) -> String {
    r["status"]["message"].as_str().unwrap_or_default().to_string()
}

#[test]
fn admission_verdicts() {
    let e = Env::new();
    let app = e.push("prod/app:1", "65532", "app", true);
    let sidecar = e.push("prod/sidecar:1", "65532", "sidecar", true);
    let unsigned = e.push("prod/init:1", "65532", "init", false);
    let root = e.push("prod/root:1", "0", "root", true);
    let db = e.path("audit.db");
    let mut s = e.serve(POLICY, &["--database", &format!("sqlite:{}", db.display())]);
    // Trust what a cluster would: the caBundle of the generated webhook configuration.
    s.ca = ca_from_manifests(&e, &s.ca);

    // Signed and compliant images in a hardened Deployment: allowed.
    let good = deployment(
        "web",
        pod_spec(vec![container("app", &app), container("sidecar", &sidecar)], vec![]),
    );
    let r = s.review(
        "/validate",
        &review("u-good", "Deployment", "apps", "shop", good.clone(), false),
    );
    assert_eq!(r["allowed"], true, "{r}");
    assert!(r.get("warnings").is_none(), "{r}");

    // One unsigned init container: denied, naming it.
    let init = deployment(
        "init",
        pod_spec(vec![container("app", &app)], vec![container("setup", &unsigned)]),
    );
    let r = s.review(
        "/validate",
        &review("u-init", "Deployment", "apps", "shop", init, false),
    );
    assert_eq!(r["allowed"], false, "{r}");
    assert_eq!(r["status"]["code"], 403);
    let m = message(&r);
    assert!(
        m.contains(&format!(
            "init container \"setup\" ({unsigned}): production: no signature by 'a'"
        )),
        "{m}"
    );
    assert!(
        !m.contains("container \"app\""),
        "only the failing container is named: {m}"
    );

    // A compliant image in a privileged pod: denied.
    let mut spec = pod_spec(vec![container("app", &app)], vec![]);
    spec["containers"][0]["securityContext"]["privileged"] = json!(true);
    spec["hostNetwork"] = json!(true);
    let r = s.review(
        "/validate",
        &review("u-priv", "Pod", "", "shop", pod("priv", spec), false),
    );
    assert_eq!(r["allowed"], false, "{r}");
    let m = message(&r);
    assert!(
        m.contains(&format!("container \"app\" ({app}): production: it is privileged")),
        "{m}"
    );
    assert!(m.contains("pod: production: hostNetwork is true"), "{m}");

    // A warn-mode rule: allowed, with a warning.
    let r = s.review(
        "/validate",
        &review(
            "u-warn",
            "Pod",
            "",
            "shop",
            pod("rooty", pod_spec(vec![container("app", &root)], vec![])),
            false,
        ),
    );
    assert_eq!(r["allowed"], true, "{r}");
    let w = r["warnings"].to_string();
    assert!(w.contains("hygiene: the image runs as root"), "{r}");

    // An unreachable registry: denied with the reason.
    let gone = format!("127.0.0.1:{}/prod/app:1", free_port());
    let r = s.review(
        "/validate",
        &review(
            "u-gone",
            "Pod",
            "",
            "shop",
            pod("gone", pod_spec(vec![container("app", &gone)], vec![])),
            false,
        ),
    );
    assert_eq!(r["allowed"], false, "{r}");
    assert!(message(&r).contains("(unreadable)"), "{r}");

    // An exempt namespace: allowed whatever it runs.
    let r = s.review(
        "/validate",
        &review(
            "u-exempt",
            "Pod",
            "",
            "kube-system",
            pod("x", json!({"containers": [{"name": "x", "image": unsigned}]})),
            false,
        ),
    );
    assert_eq!(r["allowed"], true, "{r}");

    // A dry run is decided, not recorded.
    let cron = json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly"},
        "spec": {"schedule": "@daily", "jobTemplate": {"spec": {"template": {"spec": pod_spec(vec![container("job", &unsigned)], vec![])}}}}});
    let r = s.review("/validate", &review("u-dry", "CronJob", "batch", "shop", cron, true));
    assert_eq!(r["allowed"], false, "{r}");

    // Malformed reviews: HTTP 400 saying what is wrong.
    let (code, body) = s.curl("POST", "/validate", Some("{\"apiVersion\": \"admission.k8s.io/v1\""));
    assert_eq!(code, 400, "{body}");
    assert!(body.starts_with("malformed AdmissionReview: "), "{body}");
    let (code, body) = s.curl(
        "POST",
        "/validate",
        Some(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}).to_string()),
    );
    assert_eq!(
        (code, body.as_str()),
        (400, "malformed AdmissionReview: no request in the review\n")
    );

    // Each answered, non-dry-run request has exactly one audit row.
    let rows = audit_rows(&db);
    let uids: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        uids,
        ["u-good", "u-init", "u-priv", "u-warn", "u-gone", "u-exempt"],
        "{rows:?}"
    );
    let results: Vec<&str> = rows.iter().map(|r| r.2.as_str()).collect();
    assert_eq!(results, ["allowed", "denied", "denied", "allowed", "denied", "exempt"]);

    let (code, m) = s.curl("GET", "/metrics", None);
    assert_eq!(code, 200);
    assert!(
        m.contains("kiln_serve_requests_total{endpoint=\"validate\",code=\"400\"} 2"),
        "{m}"
    );
    assert!(m.contains("kiln_serve_decisions_total{result=\"denied\"} 4"), "{m}");
    assert!(m.contains("kiln_serve_request_duration_seconds_count 9"), "{m}");
    assert_eq!(s.curl("GET", "/readyz", None), (200, "ready\n".to_string()));
}

#[test]
fn mutation_pins_tags_to_the_digests_decided_on() {
    let e = Env::new();
    let app = e.push("prod/app:1", "65532", "app", true);
    let init = e.push("prod/init:1", "65532", "init", true);
    let s = e.serve(POLICY, &[]);
    let pinned_already = format!("{app}@{}", e.digest(&app));
    let object = deployment(
        "web",
        pod_spec(
            vec![container("app", &app), container("again", &pinned_already)],
            vec![container("setup", &init)],
        ),
    );
    let r = s.review(
        "/mutate",
        &review("u-m", "Deployment", "apps", "shop", object.clone(), false),
    );
    assert_eq!(r["allowed"], true, "{r}");
    assert_eq!(r["patchType"], "JSONPatch");
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(r["patch"].as_str().unwrap())
        .unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&raw).unwrap();
    let mut patched = object.clone();
    json_patch::patch(&mut patched, &patch).unwrap();
    let mut want = object;
    let t = "/spec/template/spec";
    *want.pointer_mut(&format!("{t}/containers/0/image")).unwrap() = json!(format!("{app}@{}", e.digest(&app)));
    *want.pointer_mut(&format!("{t}/initContainers/0/image")).unwrap() = json!(format!("{init}@{}", e.digest(&init)));
    assert_eq!(patched, want);
    assert_eq!(patch.0.len(), 2, "an image pinned already is left alone: {raw:?}");

    // A denied image gets no patch.
    let unsigned = e.push("prod/unsigned:1", "65532", "u", false);
    let object = deployment("bad", pod_spec(vec![container("app", &unsigned)], vec![]));
    let r = s.review("/mutate", &review("u-m2", "Deployment", "apps", "shop", object, false));
    assert_eq!(r["allowed"], false, "{r}");
    assert!(r.get("patch").is_none(), "{r}");
}

/// The first container's image in a JSONPatch answer applied to `object`.
fn patched_image(r: &Value, object: &Value) -> String {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(r["patch"].as_str().unwrap_or_else(|| panic!("no patch: {r}")))
        .unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&raw).unwrap();
    let mut patched = object.clone();
    json_patch::patch(&mut patched, &patch).unwrap();
    patched["spec"]["containers"][0]["image"].as_str().unwrap().to_string()
}

/// `--tag-ttl`: within it a moved tag still names the digest decided on, and the mutating
/// webhook pins the pod to that verified digest (never to the unsigned image the tag moved
/// to); with `--tag-ttl 0` the move is seen at once and the unsigned image is denied.
#[test]
fn a_moved_tag_is_pinned_to_the_verified_digest_until_its_resolution_expires() {
    let e = Env::new();
    let app = e.push("prod/app:1", "65532", "signed", true);
    let verified = e.digest(&app);
    let object = pod("web", pod_spec(vec![container("app", &app)], vec![]));
    let s = e.serve(POLICY, &["--tag-ttl", "600"]);
    let r = s.review("/mutate", &review("u-t1", "Pod", "", "shop", object.clone(), false));
    assert_eq!(r["allowed"], true, "{r}");
    assert_eq!(patched_image(&r, &object), format!("{app}@{verified}"));
    // The tag moves to an unsigned image.
    e.push("prod/app:1", "65532", "unsigned", false);
    assert_ne!(e.digest(&app), verified);
    let r = s.review("/mutate", &review("u-t2", "Pod", "", "shop", object.clone(), false));
    assert_eq!(r["allowed"], true, "{r}");
    assert_eq!(
        patched_image(&r, &object),
        format!("{app}@{verified}"),
        "pinned to what was verified"
    );
    drop(s);
    let s = e.serve(POLICY, &["--tag-ttl", "0"]);
    for endpoint in ["/validate", "/mutate"] {
        let r = s.review(endpoint, &review("u-t3", "Pod", "", "shop", object.clone(), false));
        assert_eq!(r["allowed"], false, "{endpoint}: {r}");
        assert!(r.get("patch").is_none(), "{r}");
    }
}

#[test]
fn plain_http_is_refused_and_a_new_certificate_is_served_without_restart() {
    let e = Env::new();
    let s = e.serve("version: 1\ndefault: allow\nrules: []\n", &[]);
    // No TLS, no HTTP answer: the request never reaches a handler.
    let plain = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("http://127.0.0.1:{}/healthz", s.port))
        .output()
        .unwrap();
    assert!(!plain.status.success(), "{plain:?}");
    assert_eq!(String::from_utf8_lossy(&plain.stdout), "000");
    // Rotate: write a certificate from another CA over the served files.
    let (ca2, cert2, key2) = certs(e.dir.path(), "two");
    let served = |n: &str| e.dir.path().join(format!("tls-one.{n}"));
    std::fs::copy(&key2, served("key")).unwrap();
    std::fs::copy(&cert2, served("crt")).unwrap();
    let mut switched = false;
    for _ in 0..200 {
        if s.curl_with(&ca2, "GET", "/healthz", None).0 == 200 {
            switched = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(switched, "{}", std::fs::read_to_string(&s.log).unwrap_or_default());
    assert_eq!(s.curl("GET", "/healthz", None).0, 0, "the old CA no longer verifies it");
}

/// `kiln serve manifests` for `ca`: the file and its documents (read by PyYAML).
fn manifests(e: &Env, ca: &Path) -> (PathBuf, Vec<Value>) {
    let out = run_ok(
        e.kiln(&[
            "serve",
            "manifests",
            "--namespace",
            "kiln-system",
            "--image",
            "registry.example.com/kiln:1",
        ])
        .arg("--ca-bundle")
        .arg(ca),
    );
    let file = e.path("webhook.yaml");
    std::fs::write(&file, &out.stdout).unwrap();
    let script = "import sys,json,yaml\nprint(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))";
    let o = run_ok(Command::new(venv_tool("python3")).args(["-c", script]).arg(&file));
    (file, serde_json::from_slice(&o.stdout).unwrap())
}

/// The CA a cluster would trust: the generated ValidatingWebhookConfiguration's caBundle.
fn ca_from_manifests(e: &Env, ca: &Path) -> PathBuf {
    use base64::Engine as _;
    let (_, docs) = manifests(e, ca);
    let hook = docs
        .iter()
        .find(|d| d["kind"] == "ValidatingWebhookConfiguration")
        .expect("a ValidatingWebhookConfiguration");
    let bundle = hook["webhooks"][0]["clientConfig"]["caBundle"].as_str().unwrap();
    let pem = base64::engine::general_purpose::STANDARD.decode(bundle).unwrap();
    let path = e.path("ca-from-manifests.crt");
    std::fs::write(&path, pem).unwrap();
    path
}

#[test]
fn manifests_are_valid_kubernetes_and_fail_closed() {
    let e = Env::new();
    let (ca, _, _) = certs(e.dir.path(), "m");
    let (file, docs) = manifests(&e, &ca);
    let o = run_ok(
        Command::new(venv_tool("kubernetes-validate"))
            .arg("--strict")
            .arg(&file),
    );
    let report = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    for kind in [
        "deployment",
        "service",
        "validatingwebhookconfiguration",
        "mutatingwebhookconfiguration",
    ] {
        assert!(
            report.contains(&format!("passed for resource {kind}/kiln-serve")),
            "{report}"
        );
    }
    let d = &docs[0];
    assert_eq!(d["spec"]["replicas"], 2);
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["runAsNonRoot"], true);
    assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
    for kind in ["ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"] {
        let doc = docs.iter().find(|d| d["kind"] == kind).unwrap();
        let hook = &doc["webhooks"][0];
        assert_eq!(hook["failurePolicy"], "Fail", "{kind}");
        assert_eq!(hook["sideEffects"], "None", "{kind}");
        assert!(
            hook["timeoutSeconds"].as_u64().unwrap() > 8,
            "above the server's deadline"
        );
        let excluded = &hook["namespaceSelector"]["matchExpressions"][0];
        assert_eq!(excluded["operator"], "NotIn");
        assert_eq!(excluded["values"], json!(["kube-system", "kiln-system"]));
    }
    // A bundle that is not a certificate is refused.
    std::fs::write(e.path("junk.crt"), "junk").unwrap();
    let o = e
        .kiln(&["serve", "manifests", "--image", "x:1", "--ca-bundle"])
        .arg(e.path("junk.crt"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no PEM certificate"));
}

/// An image with one Debian package in its dpkg status, so its SBOM lists something.
fn push_with_package(e: &Env, repo: &str, version: &str, record: Option<(&Server, &Path)>) -> String {
    let ctx = tempfile::tempdir_in(e.dir.path()).unwrap();
    let status = format!(
        "Package: hello\nStatus: install ok installed\nVersion: {version}\nArchitecture: amd64\nMaintainer: x <x@example.com>\nDescription: hi\n\n"
    );
    std::fs::write(ctx.path().join("status"), status).unwrap();
    let os = "NAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\nID=debian\n";
    std::fs::write(ctx.path().join("os-release"), os).unwrap();
    let dockerfile = "FROM scratch\nCOPY status /var/lib/dpkg/status\nCOPY os-release /etc/os-release\nUSER 65532\n";
    std::fs::write(ctx.path().join("Dockerfile"), dockerfile).unwrap();
    let name = format!("{}/{repo}", e.host());
    let mut build = e.kiln(&["build", "-q", "-t", &name]);
    if let Some((s, token)) = record {
        build
            .args(["--record", &format!("https://127.0.0.1:{}", s.port)])
            .env("KILN_RECORD_TOKEN", std::fs::read_to_string(token).unwrap())
            .env("KILN_RECORD_CA", &s.ca);
    }
    run_ok(build.arg(ctx.path()));
    run_ok(&mut e.kiln(&["push", "-q", &name]));
    let k = e.path("a.key").display().to_string();
    run_ok(&mut e.kiln(&["sign", "--key", &k, &name]));
    name
}

#[test]
fn metadata_by_digest_after_build_record_and_push() {
    let e = Env::new();
    let token = e.path("token");
    std::fs::write(&token, "s3cret-token\n").unwrap();
    let s = e.serve(POLICY, &["--token-file", token.to_str().unwrap()]);
    let app = push_with_package(&e, "prod/app:1", "2.10-3", Some((&s, &token)));
    let digest = e.digest(&app);
    // An admission of it joins its history.
    let r = s.review(
        "/validate",
        &review(
            "u-md",
            "Pod",
            "",
            "shop",
            pod("web", pod_spec(vec![container("app", &app)], vec![])),
            false,
        ),
    );
    assert_eq!(r["allowed"], true, "{r}");

    let (code, body) = s.curl("GET", &format!("/metadata/{digest}.json"), None);
    assert_eq!(code, 200, "{body}");
    let m: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(m["digest"], digest.as_str());
    assert_eq!(m["build"]["builder"]["id"], "https://kiln.dev/builder/kiln/v1", "{m}");
    assert!(
        m["build"]["resolvedDependencies"].to_string().contains("Dockerfile"),
        "{m}"
    );
    assert_eq!(m["sbom"]["packages"][0]["name"], "hello", "{m}");
    assert_eq!(m["sbom"]["packages"][0]["version"], "2.10-3", "{m}");
    assert_eq!(
        m["provenance"]["runDetails"]["builder"]["id"],
        "https://kiln.dev/builder/kiln/v1"
    );
    let sigs = m["signatures"].as_array().unwrap_or_else(|| panic!("{m}"));
    assert!(sigs.iter().any(|s| s["authority"] == "a"), "{m}");
    let adm = m["admissions"].as_array().unwrap();
    assert_eq!(adm.len(), 1, "{m}");
    assert_eq!(
        (adm[0]["uid"].as_str(), adm[0]["namespace"].as_str()),
        (Some("u-md"), Some("shop"))
    );
    assert_eq!(adm[0]["result"], "allowed");
    let spdx = m["sbom"]["documents"]["spdx"].as_str().unwrap().to_string();
    let (code, doc) = s.curl("GET", &spdx, None);
    assert_eq!(code, 200);
    assert_eq!(serde_json::from_str::<Value>(&doc).unwrap()["spdxVersion"], "SPDX-2.3");
    let cdx = m["sbom"]["documents"]["cyclonedx"].as_str().unwrap().to_string();
    let (code, doc) = s.curl("GET", &cdx, None);
    assert_eq!(code, 200);
    assert_eq!(serde_json::from_str::<Value>(&doc).unwrap()["bomFormat"], "CycloneDX");

    // Unknown digests are 404.
    let unknown = format!("sha256:{}", "0".repeat(64));
    assert_eq!(s.curl("GET", &format!("/metadata/{unknown}.json"), None).0, 404);

    // kiln record push: a bad token is refused and nothing is stored; the right one
    // stores it once.
    let other = push_with_package(&e, "prod/other:1", "2.10-4", None);
    let other_digest = e.digest(&other);
    let bad = e.path("bad-token");
    std::fs::write(&bad, "wrong").unwrap();
    let push = |t: &Path| {
        e.kiln(&["record", "push", "--server", &format!("https://127.0.0.1:{}", s.port)])
            .arg("--token-file")
            .arg(t)
            .arg("--server-ca")
            .arg(&s.ca)
            .arg(&other)
            .output()
            .unwrap()
    };
    let o = push(&bad);
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("401"), "{o:?}");
    assert_eq!(s.curl("GET", &format!("/metadata/{other_digest}.json"), None).0, 404);
    let o = push(&token);
    assert!(o.status.success(), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("recorded: "), "{o:?}");
    let o = push(&token);
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with("already recorded: "),
        "{o:?}"
    );
    assert_eq!(s.curl("GET", &format!("/metadata/{other_digest}.json"), None).0, 200);

    // Admitted, never recorded: the record comes from the registry's referrers.
    let third = push_with_package(&e, "prod/third:1", "2.10-5", None);
    let third_digest = e.digest(&third);
    let r = s.review(
        "/validate",
        &review(
            "u-3",
            "Pod",
            "",
            "shop",
            pod("third", pod_spec(vec![container("app", &third)], vec![])),
            false,
        ),
    );
    assert_eq!(r["allowed"], true, "{r}");
    let (code, body) = s.curl("GET", &format!("/metadata/{third_digest}.json"), None);
    assert_eq!(code, 200, "{body}");
    let m: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(m["sbom"]["packages"][0]["version"], "2.10-5", "{m}");
    assert_eq!(m["build"]["builder"]["id"], "https://kiln.dev/builder/kiln/v1", "{m}");
}

/// Imports OSV records for the Debian package `hello`: (id, events).
fn osv_db(e: &Env, records: &[(&str, Value)]) {
    let dir = tempfile::tempdir_in(e.dir.path()).unwrap();
    for (id, events) in records {
        let r = json!({"id": id, "modified": "2026-01-01T00:00:00Z",
            "affected": [{"package": {"ecosystem": "Debian:12", "name": "hello"},
                          "ranges": [{"type": "ECOSYSTEM", "events": events}]}]});
        std::fs::write(dir.path().join(format!("{id}.json")), r.to_string()).unwrap();
    }
    run_ok(e.kiln(&["db", "import"]).arg(dir.path()));
}

/// `kiln record push --scan`: the answer line, and the exit status.
fn record_scan(e: &Env, s: &Server, token: &Path, image: &str) -> String {
    let o = run_ok(
        e.kiln(&[
            "record",
            "push",
            "--scan",
            "--server",
            &format!("https://127.0.0.1:{}", s.port),
        ])
        .arg("--token-file")
        .arg(token)
        .arg("--server-ca")
        .arg(&s.ca)
        .arg(image),
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn scan_ids(s: &Server, digest: &str) -> Vec<String> {
    let (code, body) = s.curl("GET", &format!("/metadata/{digest}.json"), None);
    assert_eq!(code, 200, "{body}");
    let m: Value = serde_json::from_str(&body).unwrap();
    let mut ids: Vec<String> = m["scan"]["findings"]
        .as_array()
        .unwrap_or_else(|| panic!("no scan: {m}"))
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

/// Two releases of `repo` (`:1` with hello 2.10-3, `:2` with 2.10-10), each built with a
/// record sent to `s` and scanned against a database where DEMO-1 is fixed in 2.10-5 and
/// DEMO-2 introduced in 2.10-8: (image 1, digest 1, digest 2).
fn two_scanned_releases(e: &Env, s: &Server, token: &Path, repo: &str) -> (String, String, String) {
    osv_db(
        e,
        &[
            ("DEMO-1", json!([{"introduced": "0"}, {"fixed": "2.10-5"}])),
            ("DEMO-2", json!([{"introduced": "2.10-8"}])),
        ],
    );
    let v1 = push_with_package(e, &format!("{repo}:1"), "2.10-3", Some((s, token)));
    let d1 = e.digest(&v1);
    assert!(record_scan(e, s, token, &v1).starts_with("already recorded, with a new scan: "));
    let v2 = push_with_package(e, &format!("{repo}:2"), "2.10-10", Some((s, token)));
    let d2 = e.digest(&v2);
    assert!(record_scan(e, s, token, &v2).starts_with("already recorded, with a new scan: "));
    assert_eq!(scan_ids(s, &d1), ["DEMO-1"]);
    assert_eq!(scan_ids(s, &d2), ["DEMO-2"]);
    (v1, d1, d2)
}

/// The page of release 2 of [`two_scanned_releases`] (`page`, as served or as Chromium
/// rendered it) diffs it against release 1 (`d1`), whose own page has nothing to diff.
fn assert_release_diff(s: &Server, page: &str, d1: &str) {
    // dpkg order: 2.10-10 is an upgrade from 2.10-3.
    assert!(
        page.contains("<td>upgraded</td><td>hello</td><td>2.10-3</td><td>2.10-10</td>"),
        "{page}"
    );
    assert!(page.contains(&format!("href=\"/images/{d1}\"")), "{page}");
    assert!(
        page.contains("<td>introduced</td><td>DEMO-2</td><td>hello</td>"),
        "{page}"
    );
    assert!(page.contains("<td>fixed</td><td>DEMO-1</td><td>hello</td>"), "{page}");
    let (_, first) = s.curl("GET", &format!("/images/{d1}"), None);
    assert!(first.contains("no earlier release of this name is recorded"), "{first}");
}

/// Issue 14: "the latest scan" in the metadata, and "a diff against the previous image
/// with the same name" on the web page (packages from the SBOMs, vulnerabilities from the
/// latest scans).
#[test]
fn latest_scan_and_release_diff_on_the_web_page() {
    let e = Env::new();
    let token = e.path("token");
    std::fs::write(&token, "t0ken").unwrap();
    let s = e.serve(POLICY, &["--token-file", token.to_str().unwrap()]);
    let (v1, d1, d2) = two_scanned_releases(&e, &s, &token, "prod/rel");

    let dom = chromium(
        &e,
        &format!("https://127.0.0.1:{}/images/{d2}", s.port),
        &e.path("rel.png"),
    );
    assert_release_diff(&s, &dom, &d1);

    // A newer database, scanned again: the latest scan is the one shown; the build record
    // stays as first sent.
    osv_db(&e, &[("DEMO-3", json!([{"introduced": "0"}]))]);
    let (_, before) = s.curl("GET", &format!("/metadata/{d1}.json"), None);
    record_scan(&e, &s, &token, &v1);
    assert_eq!(scan_ids(&s, &d1), ["DEMO-1", "DEMO-3"]);
    let (_, after) = s.curl("GET", &format!("/metadata/{d1}.json"), None);
    let build = |b: &str| serde_json::from_str::<Value>(b).unwrap()["build"].clone();
    assert_eq!(build(&before), build(&after));

    // No database: the scan is refused (exit 3, as kiln scan), nothing half-sent.
    let empty = tempfile::tempdir_in(e.dir.path()).unwrap();
    let o = e
        .kiln(&[
            "record",
            "push",
            "--scan",
            "--server",
            &format!("https://127.0.0.1:{}", s.port),
        ])
        .env("KILN_HOME", empty.path())
        .arg("--token-file")
        .arg(&token)
        .arg("--server-ca")
        .arg(&s.ca)
        .arg(&v1)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no vulnerability database"),
        "{o:?}"
    );
}

/// The release diff and the latest scan with the audit in PostgreSQL: build records, their
/// repository order (`previous_record`) and appended scans (`put_scan`, `latest_scan`) go
/// through the PostgreSQL store as they do through the embedded one above.
#[test]
fn release_diff_and_latest_scan_on_postgresql() {
    let e = Env::new();
    let token = e.path("token");
    std::fs::write(&token, "t0ken").unwrap();
    let pg = Postgres::start(e.dir.path());
    let s = e.serve(
        POLICY,
        &["--token-file", token.to_str().unwrap(), "--database", &pg.url()],
    );
    let (v1, d1, d2) = two_scanned_releases(&e, &s, &token, "prod/pgrel");
    assert_eq!(pg.sql("select count(*) from records"), "2");
    assert_eq!(pg.sql("select count(*) from scans"), "2");

    let (code, page) = s.curl("GET", &format!("/images/{d2}"), None);
    assert_eq!(code, 200, "{page}");
    assert_release_diff(&s, &page, &d1);

    // A newer database, scanned again: the newest scan is shown, the older one stays.
    osv_db(&e, &[("DEMO-3", json!([{"introduced": "0"}]))]);
    record_scan(&e, &s, &token, &v1);
    assert_eq!(scan_ids(&s, &d1), ["DEMO-1", "DEMO-3"]);
    assert_eq!(pg.sql("select count(*) from scans"), "3");
    pg.assert_append_only("delete from scans");
}

/// Headless Chromium on `url`: `--dump-dom` output, and a screenshot written to `png`.
fn chromium(e: &Env, url: &str, png: &Path) -> String {
    let profile = tempfile::tempdir_in(e.dir.path()).unwrap();
    let base = |c: &mut Command| {
        c.args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
            // The test CA is not in Chromium's NSS store; curl checks the chain above.
            .arg("--ignore-certificate-errors")
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .env("HOME", profile.path());
    };
    let mut shot = Command::new("chromium");
    base(&mut shot);
    shot.arg(format!("--screenshot={}", png.display()))
        .arg("--window-size=1280,1600")
        .arg(url);
    run_ok(&mut shot);
    let mut dom = Command::new("chromium");
    base(&mut dom);
    String::from_utf8(run_ok(dom.arg("--dump-dom").arg(url)).stdout).unwrap()
}

#[test]
fn web_page_in_headless_chromium() {
    let e = Env::new();
    let token = e.path("token");
    std::fs::write(&token, "t0ken").unwrap();
    let s = e.serve(POLICY, &["--token-file", token.to_str().unwrap()]);
    let app = push_with_package(&e, "prod/web:1", "1.0-1", Some((&s, &token)));
    let digest = e.digest(&app);
    let mut spec = pod_spec(vec![container("app", &app)], vec![]);
    spec["containers"][0]["securityContext"]["privileged"] = json!(true);
    let r = s.review(
        "/validate",
        &review("u-web", "Pod", "", "shop", pod("priv", spec), false),
    );
    assert_eq!(r["allowed"], false, "{r}");

    let index_png = e.path("index.png");
    let dom = chromium(&e, &format!("https://127.0.0.1:{}/", s.port), &index_png);
    assert!(dom.contains(&format!("href=\"/images/{digest}\"")), "{dom}");
    assert!(dom.contains("it is privileged"), "{dom}");
    let image_png = e.path("image.png");
    let dom = chromium(&e, &format!("https://127.0.0.1:{}/images/{digest}", s.port), &image_png);
    assert!(dom.contains(&format!("<code id=\"digest\">{digest}</code>")), "{dom}");
    assert!(dom.contains("<td>hello</td><td>1.0-1</td>"), "the package: {dom}");
    assert!(dom.contains("production: it is privileged"), "the denial reason: {dom}");
    assert!(dom.contains("<td>a</td>"), "the signer: {dom}");
    for png in [index_png, image_png] {
        let bytes = std::fs::read(&png).unwrap();
        assert!(
            bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000,
            "{}",
            png.display()
        );
    }
}

/// Sends `count` reviews (uids `{prefix}-N`) spread over `ports` by 4 threads, each
/// request to the next port in turn; writes one line per request to `out`: `uid port
/// code` (code 0: no answer).
const DRIVER: &str = r#"
import http.client, json, ssl, sys, threading
ca, image, prefix, count, out = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
ports = [int(p) for p in sys.argv[6:]]
ctx = ssl.create_default_context(cafile=ca)
lock = threading.Lock()
results = []
def review(uid):
    c = {"name": "app", "image": image, "securityContext": {"allowPrivilegeEscalation": False,
         "readOnlyRootFilesystem": True, "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]},
         "seccompProfile": {"type": "RuntimeDefault"}}}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": uid, "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": "shop", "operation": "CREATE", "userInfo": {"username": "load"},
        "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": uid},
                   "spec": {"containers": [c]}}, "dryRun": False}}
def worker(w):
    conns = {}
    for n in range(w, count, 4):
        uid, port = "%s-%d" % (prefix, n), ports[n % len(ports)]
        code = 0
        for attempt in range(2):
            try:
                if port not in conns:
                    conns[port] = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
                conns[port].request("POST", "/validate", json.dumps(review(uid)), {"Content-Type": "application/json"})
                r = conns[port].getresponse()
                body = json.loads(r.read())
                if r.status == 200 and body["response"]["uid"] == uid:
                    code = r.status
                break
            except Exception:
                conns.pop(port, None)
        with lock:
            results.append("%s %d %d" % (uid, port, code))
threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
for t in threads: t.start()
for t in threads: t.join()
open(out, "w").write("\n".join(results) + "\n")
"#;

/// Runs a PostgreSQL cluster as an unprivileged user on a free port; stopped when dropped.
struct Postgres {
    dir: PathBuf,
    port: u16,
    uid: u32,
    gid: u32,
}

impl Postgres {
    fn start(parent: &Path) -> Postgres {
        use std::os::unix::process::CommandExt;
        let (uid, gid) = kiln_tests::rootless_user();
        let dir = parent.join("pg");
        std::fs::create_dir_all(&dir).unwrap();
        run_ok(Command::new("chown").arg(format!("{uid}:{gid}")).arg(&dir));
        let port = free_port();
        let as_user = |c: &mut Command| {
            c.uid(uid).gid(gid).env("HOME", &dir).current_dir(&dir);
        };
        let mut init = Command::new("initdb");
        as_user(&mut init);
        run_ok(init.args(["-A", "trust", "-U", "kiln", "-D"]).arg(dir.join("data")));
        let mut start = Command::new("pg_ctl");
        as_user(&mut start);
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            dir.display()
        );
        run_ok(
            start
                .args(["-w", "-D"])
                .arg(dir.join("data"))
                .args(["-l"])
                .arg(dir.join("log"))
                .args(["-o", &opts, "start"]),
        );
        Postgres { dir, port, uid, gid }
    }

    fn url(&self) -> String {
        format!("postgres://kiln@127.0.0.1:{}/postgres", self.port)
    }

    /// psql on this server, unaligned and tuples only, running `query`.
    fn psql(&self, query: &str) -> Command {
        let mut c = Command::new("psql");
        let port = self.port.to_string();
        c.args([
            "-At",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "kiln",
            "-d",
            "postgres",
            "-c",
            query,
        ]);
        c
    }

    /// `query` (an UPDATE or DELETE) is refused by the append-only trigger.
    fn assert_append_only(&self, query: &str) {
        let o = self.psql(query).output().unwrap();
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("append-only"),
            "{query}: {o:?}"
        );
    }

    fn sql(&self, query: &str) -> String {
        let o = run_ok(&mut self.psql(query));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        use std::os::unix::process::CommandExt;
        let _ = Command::new("pg_ctl")
            .uid(self.uid)
            .gid(self.gid)
            .args(["-m", "immediate", "-D"])
            .arg(self.dir.join("data"))
            .arg("stop")
            .output();
    }
}

/// `count` admissions over `servers`; the second, if any, is killed (SIGKILL) once the
/// audit table holds `kill_at` rows. Returns the uids answered.
fn load(
    e: &Env,
    servers: &mut [Server],
    image: &str,
    count: usize,
    rows: &dyn Fn() -> usize,
    kill_at: usize,
) -> Vec<String> {
    let script = e.path("driver.py");
    std::fs::write(&script, DRIVER).unwrap();
    let out = e.path("answers.txt");
    let mut driver = Command::new("python3");
    driver
        .arg(&script)
        .arg(&servers[0].ca)
        .args([image, "load", &count.to_string()])
        .arg(&out);
    for s in servers.iter() {
        driver.arg(s.port.to_string());
    }
    let mut child = driver.spawn().unwrap();
    if servers.len() > 1 {
        while rows() < kill_at {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        servers[1].child.kill().unwrap();
    }
    assert!(child.wait().unwrap().success());
    let text = std::fs::read_to_string(&out).unwrap();
    text.lines()
        .filter(|l| l.ends_with(" 200"))
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect()
}

/// Every answered request has exactly one audit row, no uid has two, and every row is a
/// request that was sent.
fn one_row_each(answered: &[String], audit: &[(String, usize)], count: usize) {
    let dups: Vec<&(String, usize)> = audit.iter().filter(|(_, n)| *n != 1).collect();
    assert!(dups.is_empty(), "duplicate audit rows: {dups:?}");
    let have: std::collections::BTreeSet<&str> = audit.iter().map(|(u, _)| u.as_str()).collect();
    let missing: Vec<&String> = answered.iter().filter(|u| !have.contains(u.as_str())).collect();
    assert!(missing.is_empty(), "answered without an audit row: {missing:?}");
    assert!(audit.len() <= count, "{} rows for {count} requests", audit.len());
    assert!(
        answered.len() >= count / 2,
        "only {} of {count} answered",
        answered.len()
    );
}

#[test]
fn two_replicas_on_postgresql_one_killed_halfway() {
    let e = Env::new();
    let app = e.push("prod/app:1", "65532", "app", true);
    let pg = Postgres::start(e.dir.path());
    let db = ["--database", &pg.url()];
    let mut servers = vec![e.serve(POLICY, &db), e.serve(POLICY, &db)];
    let rows = || pg.sql("select count(*) from admissions").parse::<usize>().unwrap_or(0);
    let answered = load(&e, &mut servers, &app, 2000, &rows, 1000);
    let audit: Vec<(String, usize)> = pg
        .sql("select uid || ' ' || count(*) from admissions group by uid")
        .lines()
        .map(|l| {
            let (u, n) = l.split_once(' ').unwrap();
            (u.to_string(), n.parse().unwrap())
        })
        .collect();
    one_row_each(&answered, &audit, 2000);
    assert!(answered.len() < 2000, "the killed replica answered everything?");
    // Both replicas wrote (the table is shared), and the survivor still serves.
    assert_eq!(pg.sql("select count(distinct endpoint) from admissions"), "1");
    assert_eq!(servers[0].curl("GET", "/readyz", None).0, 200);
    pg.assert_append_only("delete from admissions");
}

#[test]
fn one_replica_on_sqlite_the_embedded_default() {
    let e = Env::new();
    let app = e.push("prod/app:1", "65532", "app", true);
    let db = e.path("audit.db");
    let mut servers = vec![e.serve(POLICY, &["--database", &format!("sqlite:{}", db.display())])];
    let answered = load(&e, &mut servers, &app, 2000, &|| 0, 0);
    let script = "import sqlite3,sys\nfor u,n in sqlite3.connect(sys.argv[1]).execute('select uid, count(*) from admissions group by uid'): print(u, n)";
    let o = run_ok(Command::new("python3").args(["-c", script]).arg(&db));
    let audit: Vec<(String, usize)> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| {
            let (u, n) = l.split_once(' ').unwrap();
            (u.to_string(), n.parse().unwrap())
        })
        .collect();
    one_row_each(&answered, &audit, 2000);
    assert_eq!(answered.len(), 2000);
    assert_eq!(audit.len(), 2000);
}
