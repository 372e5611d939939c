//! `kiln policy check` against Debian's docker-registry on loopback, with images built,
//! pushed and signed by kiln (issue 13): signature thresholds, wrong keys, signatures for
//! another digest, config checks, modes and defaults, and bad policies.

use std::process::{Command, Output};

use kiln_tests::registry::{SigningEnv, skopeo};
use kiln_tests::{free_port, run_ok};

/// A store, a registry, keys `a`, `b`, `c` and a scratch directory.
struct Env(SigningEnv);

impl std::ops::Deref for Env {
    type Target = SigningEnv;
    fn deref(&self) -> &SigningEnv {
        &self.0
    }
}

impl Env {
    fn new() -> Env {
        Env(SigningEnv::new(&["a", "b", "c"]))
    }

    /// Builds `dockerfile` (with a file f.txt holding `text`), pushes it as `repo:tag` in the
    /// registry; returns the reference.
    fn push(&self, repo: &str, dockerfile: &str, text: &str) -> String {
        let ctx = tempfile::tempdir_in(self.dir.path()).unwrap();
        std::fs::write(ctx.path().join("f.txt"), text).unwrap();
        std::fs::write(ctx.path().join("Dockerfile"), dockerfile).unwrap();
        let name = format!("{}/{repo}", self.host());
        run_ok(self.kiln(&["build", "-q", "-t", &name]).arg(ctx.path()));
        run_ok(&mut self.kiln(&["push", "-q", &name]));
        name
    }

    fn sign(&self, key: &str, image: &str) {
        let k = self.path(&format!("{key}.key")).display().to_string();
        run_ok(&mut self.kiln(&["sign", "--key", &k, image]));
    }

    /// Writes the policy text as `name` in the scratch directory.
    fn policy(&self, name: &str, text: &str) -> String {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }

    fn check(&self, policy: &str, image: &str) -> Output {
        self.kiln(&["policy", "check", "--no-cache", "--policy", policy, image])
            .output()
            .unwrap()
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[track_caller]
fn allowed(o: &Output) {
    assert_eq!(o.status.code(), Some(0), "expected allowed:\n{}", text(o));
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with("ALLOWED "),
        "{}",
        text(o)
    );
}

#[track_caller]
fn denied(o: &Output, why: &str) {
    assert_eq!(o.status.code(), Some(1), "expected denied:\n{}", text(o));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("DENIED "), "{}", text(o));
    assert!(text(o).contains(why), "expected {why:?} in:\n{}", text(o));
}

const IMAGE: &str = "FROM scratch\nCOPY f.txt /f.txt\n";

fn signature_policy(by: &str, threshold: usize) -> String {
    format!(
        "version: 1\nauthorities:\n  a: {{ key: a.pub }}\n  b: {{ key: b.pub }}\n  c: {{ key: c.pub }}\nrules:\n  - name: production\n    images: [\"127.0.0.1:*/prod/**\"]\n    signatures: {{ by: [{by}], threshold: {threshold} }}\n"
    )
}

#[test]
fn signatures_right_wrong_unsigned_threshold_and_other_digest() {
    let e = Env::new();
    let app = e.push("prod/app:1", IMAGE, "one");
    let one_of_a = e.policy("a.yaml", &signature_policy("a", 1));
    denied(
        &e.check(&one_of_a, &app),
        "production: no signature by 'a' (sign with kiln sign --key a.key IMAGE)",
    );
    e.sign("b", &app);
    // Signed, but by another key: the rejection says so.
    let only_a = e.policy(
        "only-a.yaml",
        "version: 1\nauthorities:\n  a: { key: a.pub }\nrules:\n  - name: production\n    images: [\"**\"]\n    signatures: { by: [a] }\n",
    );
    denied(&e.check(&only_a, &app), "rejected: bundle sha256:");
    denied(&e.check(&only_a, &app), "wrong key");
    e.sign("a", &app);
    allowed(&e.check(&one_of_a, &app));

    // Two of three: a and b signed app; other has only c's signature.
    let two = e.policy("two.yaml", &signature_policy("a, b, c", 2));
    allowed(&e.check(&two, &app));
    let other = e.push("prod/other:1", IMAGE, "two");
    e.sign("c", &other);
    denied(
        &e.check(&two, &other),
        "1 of the 2 required signatures by 'a', 'b', 'c' (signed by: 'c')",
    );

    // app's signature tag copied onto `third`: valid signatures, for another digest.
    let third = e.push("prod/third:1", IMAGE, "three");
    let digest = |r: &str| {
        let o = run_ok(Command::new("skopeo").args([
            "inspect",
            "--tls-verify=false",
            "--format",
            "{{.Digest}}",
            &format!("docker://{r}"),
        ]));
        String::from_utf8_lossy(&o.stdout).trim().replace(':', "-")
    };
    let (da, dt) = (digest(&app), digest(&third));
    let host = e.host();
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &format!("docker://{host}/prod/app:{da}.sig"),
        &format!("docker://{host}/prod/third:{dt}.sig"),
    ]);
    denied(&e.check(&one_of_a, &third), "digest mismatch");
}

#[test]
fn config_rules_modes_and_defaults() {
    let e = Env::new();
    let good = e.push(
        "prod/good:1",
        "FROM scratch\nCOPY f.txt /f.txt\nUSER 65532\nLABEL org.opencontainers.image.source=https://example.com/x\n",
        "good",
    );
    let root = e.push(
        "prod/root:1",
        "FROM scratch\nCOPY f.txt /f.txt\nLABEL org.opencontainers.image.source=x\n",
        "r",
    );
    let nolabel = e.push("prod/nolabel:1", "FROM scratch\nCOPY f.txt /f.txt\nUSER 1000\n", "n");
    let secret = e.push(
        "prod/secret:1",
        "FROM scratch\nCOPY f.txt /f.txt\nUSER 1000\nLABEL org.opencontainers.image.source=x\nENV AWS_SECRET=AKIAIOSFODNN7EXAMPLQ\n",
        "s",
    );
    let p = e.policy(
        "config.yaml",
        "version: 1\nrules:\n  - name: hygiene\n    images: [\"127.0.0.1:*/prod/**\"]\n    config:\n      non_root: true\n      required_labels: [org.opencontainers.image.source]\n      no_secrets: true\n",
    );
    allowed(&e.check(&p, &good));
    denied(&e.check(&p, &root), "hygiene: the image runs as root");
    denied(
        &e.check(&p, &nolabel),
        "hygiene: label org.opencontainers.image.source is missing",
    );
    denied(&e.check(&p, &secret), "hygiene: secret (");
    // kiln builds are dated SOURCE_DATE_EPOCH (1970 by default): older than any max_age.
    let aged = e.policy(
        "age.yaml",
        "version: 1\nrules:\n  - name: fresh\n    images: [\"**\"]\n    config: { max_age: 90d }\n",
    );
    denied(&e.check(&aged, &good), "fresh: the image is");
    // Dated now (SOURCE_DATE_EPOCH), the same image is young enough.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let ctx = tempfile::tempdir_in(e.dir.path()).unwrap();
    std::fs::write(ctx.path().join("f.txt"), "fresh").unwrap();
    std::fs::write(ctx.path().join("Dockerfile"), IMAGE).unwrap();
    let young = format!("{}/prod/young:1", e.host());
    run_ok(
        e.kiln(&["build", "-q", "-t", &young])
            .env("SOURCE_DATE_EPOCH", &now)
            .arg(ctx.path()),
    );
    run_ok(&mut e.kiln(&["push", "-q", &young]));
    allowed(&e.check(&aged, &young));

    // Warn mode prints and allows; no matching rule denies unless default: allow.
    let warn = e.policy(
        "warn.yaml",
        "version: 1\nrules:\n  - name: soft\n    images: [\"**\"]\n    mode: warn\n    config: { non_root: true }\n",
    );
    let o = e.check(&warn, &root);
    allowed(&o);
    assert!(text(&o).contains("warn: soft: the image runs as root"), "{}", text(&o));
    let none = e.policy(
        "none.yaml",
        "version: 1\nrules:\n  - name: other\n    images: [\"elsewhere/**\"]\n",
    );
    denied(&e.check(&none, &good), "(default): no rule of the policy matches");
    let open = e.policy("open.yaml", "version: 1\ndefault: allow\nrules: []\n");
    allowed(&e.check(&open, &good));
}

#[test]
fn bad_policies_and_unreachable_registries() {
    let e = Env::new();
    let fails = |name: &str, body: &str, want: &str| {
        let p = e.policy(name, body);
        let o = e.check(&p, "app:1");
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.contains(want), "expected {want:?} in {err}");
    };
    fails("malformed.yaml", "version: 1\nrules: [\n", "malformed.yaml:3:1:");
    fails(
        "unknown.yaml",
        "version: 1\nrules:\n  - name: x\n    images: [\"**\"]\n    signature: {}\n",
        "unknown.yaml:5:5: rules[0]: unknown field `signature`",
    );
    fails(
        "nokey.yaml",
        "version: 1\nauthorities:\n  rel: { key: missing.pub }\nrules: []\n",
        "nokey.yaml:3:15: authority \"rel\": cannot read key",
    );
    fails(
        "auth.yaml",
        "version: 1\nrules:\n  - name: x\n    images: [\"**\"]\n    signatures: { by: [nobody] }\n",
        "auth.yaml:5:24: rule \"x\": unknown authority \"nobody\"",
    );
    let p = e.policy("ok.yaml", &signature_policy("a", 1));
    let gone = format!("127.0.0.1:{}/prod/app:1", free_port());
    denied(&e.check(&p, &gone), "(unreadable)");
}

#[test]
fn the_pod_section_parses() {
    let e = Env::new();
    let p = e.policy(
        "pod.yaml",
        "version: 1\ndefault: allow\nrules:\n  - name: pods\n    images: [\"x/**\"]\n    pod: { profile: restricted, read_only_root: true }\n",
    );
    let o = e
        .kiln(&["policy", "check", "--policy", &p, "scratch-missing:1"])
        .output()
        .unwrap();
    // The policy loads (the image is what is missing: exit 2 naming it, not the policy).
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(!text(&o).contains("pod.yaml:"), "{}", text(&o));
    let bad = e.policy(
        "badpod.yaml",
        "version: 1\nrules:\n  - name: pods\n    images: [\"x/**\"]\n    pod: { profile: strict }\n",
    );
    let o = e.kiln(&["policy", "check", "--policy", &bad, "x:1"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("unknown pod profile \"strict\""), "{}", text(&o));
}

/// The registry's digest for `reference`, or `None` when it does not serve it.
fn registry_digest(reference: &str) -> Option<String> {
    let o = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}"])
        .arg(format!("docker://{reference}"))
        .output()
        .unwrap();
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

#[test]
fn build_policy_denies_before_tagging_or_pushing() {
    let e = Env::new();
    let p = e.policy("p.yaml", &signature_policy("a", 1));
    let name = format!("{}/prod/gated:1", e.host());
    let build = |text: &str, extra: &[&str]| {
        let ctx = tempfile::tempdir_in(e.dir.path()).unwrap();
        std::fs::write(ctx.path().join("f.txt"), text).unwrap();
        std::fs::write(ctx.path().join("Dockerfile"), IMAGE).unwrap();
        let mut args = vec!["build", "-q", "--push", "--tag-digest", "--policy", &p, "-t", &name];
        args.extend_from_slice(extra);
        e.kiln(&args).arg(ctx.path()).output().unwrap()
    };
    // Every (name, digest) of the store, sorted.
    let names = || {
        let mut v: Vec<String> = e.store.index()["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| {
                let n = m["annotations"]["org.opencontainers.image.ref.name"].as_str()?;
                Some(format!("{n}={}", m["digest"].as_str().unwrap()))
            })
            .collect();
        v.sort();
        v.join("\n")
    };
    // Unsigned: denied, no tag in the store, nothing in the registry.
    let o = build("one", &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("production: no signature by 'a'"), "{}", text(&o));
    assert!(
        text(&o).contains("nothing was tagged, exported or pushed"),
        "{}",
        text(&o)
    );
    assert!(!names().contains("prod/gated"), "{}", names());
    assert_eq!(registry_digest(&name), None);
    // Signed with a: allowed, tagged and pushed.
    let key = e.path("a.key").display().to_string();
    let o = build("one", &["--sign", "--key", &key]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let pushed = registry_digest(&name).expect("pushed");
    let tagged = names();
    assert!(tagged.contains(&format!("{name}={pushed}")), "{tagged}");
    // A new, unsigned build under the same name: denied; the tag and the registry keep the old image.
    let o = build("two", &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(registry_digest(&name), Some(pushed.clone()));
    let out = run_ok(&mut e.kiln(&["inspect", "--format", "{{.Digest}}", &name]));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), pushed);
    assert_eq!(names(), tagged, "no name added or moved");
}

/// The on-disk decision cache answers a pinned reference only for the same policy: a
/// changed Rego file, key file or policy file is decided again; with the registry gone,
/// the unchanged policy is still answered from the cache and a changed one is denied.
#[test]
fn cached_decisions_follow_the_policy_and_every_file_it_names() {
    let mut e = Env::new();
    let app = e.push("prod/app:1", IMAGE, "one");
    e.sign("a", &app);
    let repo = app.rsplit_once(':').unwrap().0;
    let pinned = format!("{repo}@{}", registry_digest(&app).unwrap());
    std::fs::create_dir_all(e.path("policies")).unwrap();
    let rego = e.path("policies/deny.rego");
    let never =
        "package kiln\n\ndeny contains msg if {\n\tinput.config.user == \"no-such-user\"\n\tmsg := \"user\"\n}\n";
    std::fs::write(&rego, never).unwrap();
    let text_of = format!("{}    rego: [policies/*.rego]\n", signature_policy("a", 1));
    let p = e.policy("cached.yaml", &text_of);
    let check = |e: &Env, no_cache: bool| {
        let mut args = vec!["policy", "check", "--policy", &p, &pinned];
        if no_cache {
            args.insert(2, "--no-cache");
        }
        e.kiln(&args).output().unwrap()
    };
    allowed(&check(&e, false));
    assert!(
        std::fs::read_dir(e.store.path().join("kiln/policy")).unwrap().count() > 0,
        "the decision is on disk"
    );
    // Another Rego file: decided again.
    std::fs::write(
        &rego,
        never.replace("input.config.user == \"no-such-user\"", "input.platform != \"\""),
    )
    .unwrap();
    denied(&check(&e, false), "rego: user");
    std::fs::write(&rego, never).unwrap();
    allowed(&check(&e, false));
    // Another key under the same name: decided again.
    let a_pub = std::fs::read(e.path("a.pub")).unwrap();
    std::fs::copy(e.path("b.pub"), e.path("a.pub")).unwrap();
    denied(&check(&e, false), "no signature by 'a'");
    std::fs::write(e.path("a.pub"), a_pub).unwrap();

    // The registry goes away: the same policy is answered from the cache; deciding again
    // (--no-cache, or an edited policy file) denies, as the image cannot be read.
    e.0.reg.stop();
    allowed(&check(&e, false));
    denied(&check(&e, true), "(unreadable)");
    std::fs::write(&p, format!("{text_of}# edited\n")).unwrap();
    denied(&check(&e, false), "(unreadable)");
}
