//! Issue 16, "Registry cache" and "Build flags": a build cache shared through a real
//! docker-registry (and an OCI layout, and an image's own config), checked from a second
//! store that starts empty of build state; `--hermetic` and `--explain-cache`.

use std::path::Path;
use std::process::Command;

use kiln_tests::registry::TestRegistry;
use kiln_tests::{KilnStore, busybox_store, last_line, run_ok};
use serde_json::Value;

/// Two stages: the builder's output reaches the final image only through COPY --from.
const TWO_STAGES: &str = "FROM localhost/busybox:test AS builder
COPY src.txt /src.txt
RUN sort /src.txt > /sorted.txt
FROM localhost/busybox:test
COPY --from=builder /sorted.txt /app/sorted.txt
COPY app.txt /app/app.txt
RUN cat /app/app.txt /app/sorted.txt > /app/all.txt
";

const ONE_STAGE: &str = "FROM localhost/busybox:test
COPY app.txt /app/app.txt
RUN cp /app/app.txt /app/copy.txt
COPY src.txt /app/src.txt
";

fn context(dockerfile: &str) -> tempfile::TempDir {
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("Dockerfile"), dockerfile).unwrap();
    std::fs::write(ctx.path().join("src.txt"), "pear\napple\nfig\n").unwrap();
    std::fs::write(ctx.path().join("app.txt"), "the app\n").unwrap();
    ctx
}

fn kiln(store: &KilnStore, docker_config: &Path, args: &[&str]) -> Command {
    let mut c = store.cmd(args);
    c.env("DOCKER_CONFIG", docker_config)
        .env_remove("REGISTRY_AUTH_FILE")
        .env("SOURCE_DATE_EPOCH", "1700000000");
    c
}

/// A store with only the busybox base (as a fresh CI runner would pull it), and its temp.
fn runner() -> (tempfile::TempDir, KilnStore) {
    busybox_store()
}

/// `kiln build --progress plain ARGS CONTEXT` in `store`: (digest, stderr).
fn build(store: &KilnStore, ctx: &Path, args: &[&str]) -> (String, String) {
    let dc = tempfile::tempdir().unwrap();
    let mut all = vec!["build", "--progress", "plain", "--sbom=false"];
    all.extend_from_slice(args);
    let out = run_ok(kiln(store, dc.path(), &all).arg(ctx));
    (last_line(&out), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// (steps started, steps answered from the cache) in plain progress output.
fn step_counts(stderr: &str) -> (usize, usize) {
    let is_step = |l: &&str| {
        l.strip_prefix('#')
            .and_then(|r| r.split_once(' '))
            .is_some_and(|(n, rest)| n.bytes().all(|b| b.is_ascii_digit()) && rest.starts_with('['))
    };
    let started = stderr.lines().filter(is_step).count();
    let cached = stderr
        .lines()
        .filter(|l| l.starts_with('#') && l.ends_with(" CACHED"))
        .count();
    (started, cached)
}

/// The summary's "(N steps cached, M run)".
fn ran(stderr: &str) -> usize {
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.contains(" steps cached, "))
        .expect(stderr);
    let tail = line.split(" steps cached, ").nth(1).unwrap();
    tail.split(' ').next().unwrap().parse().unwrap()
}

fn get_json(reg: &TestRegistry, path: &str) -> Value {
    let out = run_ok(Command::new("curl").args([
        "-sf",
        "-H",
        "Accept: application/vnd.oci.image.manifest.v1+json",
        &format!("http://{}{path}", reg.addr),
    ]));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The cache manifest and cache config pushed under `repo:tag`.
fn cache_manifest(reg: &TestRegistry, repo: &str, tag: &str) -> (Value, Value) {
    let m = get_json(reg, &format!("/v2/{repo}/manifests/{tag}"));
    assert_eq!(
        m["config"]["mediaType"], "application/vnd.buildkit.cacheconfig.v0",
        "{m}"
    );
    let cfg = get_json(
        reg,
        &format!("/v2/{repo}/blobs/{}", m["config"]["digest"].as_str().unwrap()),
    );
    (m, cfg)
}

fn has_blob(store: &KilnStore, digest: &str) -> bool {
    let hex = digest.strip_prefix("sha256:").unwrap();
    store.path().join("blobs/sha256").join(hex).is_file()
}

#[test]
fn two_stores_share_a_cache_through_the_registry() {
    let reg = TestRegistry::start();
    let ctx = context(TWO_STAGES);
    let cache = format!("{}/team/cache:max", reg.addr);
    let (_t1, first) = runner();
    let (cold, out) = build(
        &first,
        ctx.path(),
        &["--cache-to", &format!("type=registry,ref={cache},mode=max")],
    );
    assert_eq!(ran(&out), 5, "{out}");

    let (_t2, second) = runner();
    let (warm, out) = build(
        &second,
        ctx.path(),
        &["--cache-from", &format!("type=registry,ref={cache}")],
    );
    assert_eq!(warm, cold, "the second runner's image differs:\n{out}");
    assert_eq!(ran(&out), 0, "{out}");
    let (started, cached) = step_counts(&out);
    assert_eq!((started, cached), (5, 5), "every step must say CACHED:\n{out}");

    // Only the layers the build needed came over: the builder stage's never did.
    let (m, cfg) = cache_manifest(&reg, "team/cache", "max");
    assert_eq!(cfg["kiln.format"], "kiln-cache-v1");
    assert_eq!(cfg["records"].as_array().unwrap().len(), 5, "{cfg}");
    let image: Value = serde_json::from_slice(
        &std::fs::read(
            second
                .path()
                .join("blobs/sha256")
                .join(warm.strip_prefix("sha256:").unwrap()),
        )
        .unwrap(),
    )
    .unwrap();
    let in_image = |d: &str| image["layers"].as_array().unwrap().iter().any(|l| l["digest"] == d);
    let mut builder_only = 0;
    for l in m["layers"].as_array().unwrap() {
        let d = l["digest"].as_str().unwrap();
        assert!(l["annotations"]["containerd.io/uncompressed"].is_string(), "{l}");
        if in_image(d) {
            assert!(has_blob(&second, d), "{d} of the image was not fetched");
        } else {
            builder_only += 1;
            assert!(
                !has_blob(&second, d),
                "{d} (builder stage only) was fetched though nothing needed it"
            );
        }
    }
    assert_eq!(builder_only, 2, "{m}");

    // A runner that reads and writes the same ref keeps what it did not need itself: the
    // next runner still finds every stage.
    let (_t3, third) = runner();
    let both = [
        "--cache-from",
        &format!("type=registry,ref={cache}"),
        "--cache-to",
        &format!("type=registry,ref={cache},mode=max"),
    ];
    let (d, out) = build(&third, ctx.path(), &both);
    assert_eq!((d.as_str(), ran(&out)), (cold.as_str(), 0), "{out}");
    let (_, cfg) = cache_manifest(&reg, "team/cache", "max");
    assert_eq!(cfg["records"].as_array().unwrap().len(), 5, "{cfg}");
    let (_t4, fourth) = runner();
    let (d, out) = build(&fourth, ctx.path(), &both[..2]);
    assert_eq!((d.as_str(), ran(&out)), (cold.as_str(), 0), "{out}");
}

#[test]
fn mode_min_caches_the_final_stage_only() {
    let reg = TestRegistry::start();
    let ctx = context(TWO_STAGES);
    let cache = format!("{}/team/cache:min", reg.addr);
    let (_t1, first) = runner();
    let (cold, _) = build(
        &first,
        ctx.path(),
        &["--cache-to", &format!("type=registry,ref={cache}")],
    );
    let (_, cfg) = cache_manifest(&reg, "team/cache", "min");
    assert_eq!(cfg["records"].as_array().unwrap().len(), 3, "final stage only: {cfg}");

    // The builder stage runs again; the final stage comes from the cache.
    let (_t2, second) = runner();
    let (warm, out) = build(
        &second,
        ctx.path(),
        &["--cache-from", &format!("type=registry,ref={cache}")],
    );
    assert_eq!(warm, cold);
    assert_eq!(ran(&out), 2, "{out}");
    assert_eq!(step_counts(&out), (5, 3), "{out}");
}

#[test]
fn inline_cache_travels_with_the_pushed_image() {
    let reg = TestRegistry::start();
    let ctx = context(ONE_STAGE);
    let image = format!("{}/team/app:1", reg.addr);
    let (_t1, first) = runner();
    let (cold, _) = build(
        &first,
        ctx.path(),
        &["--cache-to", "type=inline", "-t", &image, "--push"],
    );
    let (_t2, second) = runner();
    let (warm, out) = build(
        &second,
        ctx.path(),
        &["--cache-from", &image, "--cache-to", "type=inline"],
    );
    assert_eq!(warm, cold, "{out}");
    assert_eq!(ran(&out), 0, "{out}");
    assert_eq!(step_counts(&out), (3, 3), "{out}");
}

#[test]
fn local_cache_directory() {
    let ctx = context(TWO_STAGES);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("cache");
    let (_t1, first) = runner();
    let (cold, _) = build(
        &first,
        ctx.path(),
        &["--cache-to", &format!("type=local,dest={},mode=max", dest.display())],
    );
    assert!(dest.join("index.json").is_file());
    let (_t2, second) = runner();
    let dest2 = dir.path().join("again");
    let (warm, out) = build(
        &second,
        ctx.path(),
        &[
            "--cache-from",
            &format!("type=local,src={}", dest.display()),
            "--cache-to",
            &format!("type=local,dest={},mode=max", dest2.display()),
        ],
    );
    assert_eq!(warm, cold);
    assert_eq!(ran(&out), 0, "{out}");
    // The same build exports the same cache, byte for byte, from either runner.
    let top = |d: &Path| read_json(&d.join("index.json"))["manifests"][0]["digest"].clone();
    assert_eq!(top(&dest), top(&dest2));
}

fn write_blob(layout: &Path, bytes: &[u8]) -> (String, usize) {
    let hex = kiln_tests::sha256_hex(bytes);
    std::fs::write(layout.join("blobs/sha256").join(&hex), bytes).unwrap();
    (format!("sha256:{hex}"), bytes.len())
}

fn read_blob(layout: &Path, digest: &str) -> Value {
    let hex = digest.strip_prefix("sha256:").unwrap();
    serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap()).unwrap()
}

/// Rewrites the cache in `layout` so its first layer claims another diff_id, consistently
/// in the config and the manifest (only fetching the layer can tell).
fn forge_diff_id(layout: &Path) {
    let mut index = read_json(&layout.join("index.json"));
    let mdigest = index["manifests"][0]["digest"].as_str().unwrap().to_string();
    let mut m = read_blob(layout, &mdigest);
    let mut cfg = read_blob(layout, m["config"]["digest"].as_str().unwrap());
    let forged = format!("sha256:{}", kiln_tests::sha256_hex(b"not this layer"));
    cfg["layers"][0]["annotations"]["diffID"] = Value::String(forged.clone());
    let blob = cfg["layers"][0]["blob"].as_str().unwrap().to_string();
    let (d, n) = write_blob(layout, &serde_json::to_vec(&cfg).unwrap());
    m["config"]["digest"] = d.into();
    m["config"]["size"] = n.into();
    for l in m["layers"].as_array_mut().unwrap() {
        if l["digest"] == blob.as_str() {
            l["annotations"]["containerd.io/uncompressed"] = Value::String(forged.clone());
        }
    }
    let (d, n) = write_blob(layout, &serde_json::to_vec(&m).unwrap());
    index["manifests"][0]["digest"] = d.into();
    index["manifests"][0]["size"] = n.into();
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

#[test]
fn corrupt_or_foreign_caches_are_ignored_with_a_warning() {
    let reg = TestRegistry::start();
    let ctx = context(ONE_STAGE);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("cache");
    let (_t1, first) = runner();
    let plain_image = format!("{}/team/plain:1", reg.addr);
    let (cold, _) = build(
        &first,
        ctx.path(),
        &[
            "--cache-to",
            &format!("type=local,dest={}", dest.display()),
            "-t",
            &plain_image,
            "--push",
        ],
    );

    // A layer whose content is not what the cache claims: found when fetched, then cold.
    forge_diff_id(&dest);
    let (_t2, second) = runner();
    let (warm, out) = build(
        &second,
        ctx.path(),
        &["--cache-from", &format!("type=local,src={}", dest.display())],
    );
    assert_eq!(warm, cold, "{out}");
    assert!(
        out.contains("warning: --cache-from:") && out.contains("but the cache claims diff_id"),
        "{out}"
    );
    assert!(out.contains("building again without it"), "{out}");

    // An image without an inline cache, a missing tag, and a config that is not JSON.
    std::fs::write(dest.join("index.json"), b"{not json").unwrap();
    let (_t3, third) = runner();
    let missing = format!("{}/team/nothing:1", reg.addr);
    let (warm, out) = build(
        &third,
        ctx.path(),
        &[
            "--cache-from",
            &plain_image,
            "--cache-from",
            &missing,
            "--cache-from",
            &format!("type=local,src={}", dest.display()),
        ],
    );
    assert_eq!(warm, cold, "{out}");
    assert_eq!(ran(&out), 3, "{out}");
    assert!(out.contains("has no inline cache"), "{out}");
    assert_eq!(out.matches("ignored, the build runs without it").count(), 3, "{out}");
}

#[test]
fn hermetic_refuses_unpinned_inputs() {
    let (_t, store) = runner();
    let dc = tempfile::tempdir().unwrap();
    let ctx = context("FROM scratch\nADD https://example.com/tool.tar.gz /tool.tar.gz\n");
    let out = kiln(&store, dc.path(), &["build", "--hermetic"])
        .arg(ctx.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--hermetic") && err.contains("not pinned") && err.contains("--checksum"),
        "{err}"
    );

    // A base image by tag is unpinned until Dockerfile.lock pins it.
    let ctx = context(ONE_STAGE);
    let out = kiln(&store, dc.path(), &["build", "--hermetic"])
        .arg(ctx.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("localhost/busybox:test is not pinned"), "{err}");
    run_ok(kiln(&store, dc.path(), &["build", "-q", "--write-lock"]).arg(ctx.path()));
    let out = run_ok(kiln(&store, dc.path(), &["build", "--hermetic", "--progress", "plain"]).arg(ctx.path()));
    assert!(String::from_utf8_lossy(&out.stderr).contains("steps cached"));

    // No step has a network: only the loopback interface, and RUN --network=default is refused.
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM localhost/busybox:test\nRUN cat /proc/net/dev\n",
    )
    .unwrap();
    let out = run_ok(kiln(&store, dc.path(), &["build", "--hermetic", "--progress", "plain"]).arg(ctx.path()));
    let ifaces: Vec<String> = kiln_tests::step_lines(&out)
        .iter()
        .filter_map(|l| l.split_once(':').map(|(i, _)| i.trim().to_string()))
        .filter(|i| !i.contains(' ') && !i.contains('|'))
        .collect();
    assert_eq!(ifaces, ["lo"], "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM localhost/busybox:test\nRUN --network=default true\n",
    )
    .unwrap();
    let out = kiln(&store, dc.path(), &["build", "--hermetic"])
        .arg(ctx.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--hermetic: this RUN asks for a network"), "{err}");

    // A kiln.toml build is held to its lock, as under --locked.
    let spec = tempfile::tempdir().unwrap();
    std::fs::write(
        spec.path().join("kiln.toml"),
        "architectures = [\"amd64\"]\npackages = [\"hello\"]\n\n[[source]]\nurl = \"http://127.0.0.1:9/debian\"\nsuites = [\"bookworm\"]\n",
    )
    .unwrap();
    let out = kiln(&store, dc.path(), &["build", "--hermetic"])
        .arg(spec.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no lock file"), "{err}");
}

#[test]
fn explain_cache_names_the_changed_file() {
    let (_t, store) = runner();
    let ctx = context(ONE_STAGE);
    build(&store, ctx.path(), &[]);
    std::fs::write(ctx.path().join("src.txt"), "changed\n").unwrap();
    let (_, out) = build(&store, ctx.path(), &["--explain-cache"]);
    let lines: Vec<&str> = out.lines().filter(|l| l.contains("explain-cache:")).collect();
    assert_eq!(lines.len(), 1, "only the last COPY missed:\n{out}");
    assert!(
        lines[0].contains("COPY src.txt") && lines[0].contains("src.txt (changed)"),
        "{out}"
    );

    std::fs::write(ctx.path().join("app.txt"), "another app\n").unwrap();
    let (_, out) = build(&store, ctx.path(), &["--explain-cache"]);
    let lines: Vec<&str> = out.lines().filter(|l| l.contains("explain-cache:")).collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].contains("app.txt (changed)"), "{out}");
    assert!(lines[1].contains("a step before it changed"), "{out}");
}

/// The kept explain-cache inputs of every step (name → content), and their summaries.
fn kept_inputs(store: &KilnStore) -> std::collections::BTreeMap<String, Vec<u8>> {
    let dir = store.path().join("kiln/cache-inputs");
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn explain_cache_after_no_change_rebuilds_and_a_lost_summary() {
    let (_t, store) = runner();
    let ctx = context(ONE_STAGE);
    let (first, _) = build(&store, ctx.path(), &[]);
    let kept = kept_inputs(&store);
    // A no-change rebuild compares each step's one-hash summary and writes nothing.
    let (again, out) = build(&store, ctx.path(), &["--explain-cache"]);
    assert_eq!(again, first);
    assert!(!out.contains("explain-cache:"), "{out}");
    assert_eq!(kept_inputs(&store), kept);

    // After it, a changed file is still named: the inputs behind the summary are there.
    std::fs::write(ctx.path().join("src.txt"), "plum\n").unwrap();
    let (_, out) = build(&store, ctx.path(), &["--explain-cache"]);
    let lines: Vec<&str> = out.lines().filter(|l| l.contains("explain-cache:")).collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(lines[0].contains("src.txt (changed)"), "{out}");

    // A build killed after writing a step's inputs but before their summary leaves the old
    // summary: it differs, so the next build compares (and keeps) the inputs in full.
    let sums: Vec<String> = kept_inputs(&store)
        .into_keys()
        .filter(|k| k.ends_with(".sum"))
        .collect();
    assert!(sums.len() >= 3, "one summary per step with inputs: {sums:?}");
    for s in &sums {
        std::fs::write(store.path().join("kiln/cache-inputs").join(s), "0".repeat(64)).unwrap();
    }
    std::fs::write(ctx.path().join("src.txt"), "quince\n").unwrap();
    let (_, out) = build(&store, ctx.path(), &["--explain-cache"]);
    let lines: Vec<&str> = out.lines().filter(|l| l.contains("explain-cache:")).collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(lines[0].contains("src.txt (changed)"), "{out}");
    // And a summary that names the wrong inputs is never taken for the right ones: with
    // every summary gone, a miss is still explained from the inputs kept in full.
    for s in &sums {
        let _ = std::fs::remove_file(store.path().join("kiln/cache-inputs").join(s));
    }
    std::fs::write(ctx.path().join("app.txt"), "app three\n").unwrap();
    let (_, out) = build(&store, ctx.path(), &["--explain-cache"]);
    let lines: Vec<&str> = out.lines().filter(|l| l.contains("explain-cache:")).collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].contains("app.txt (changed)"), "{out}");
    assert!(lines[2].contains("a step before it changed"), "{out}");
}
