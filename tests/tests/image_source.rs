//! One way to reach an image (issue 11, point 5): `inspect`, `sbom`, `scan` and `verify`
//! take a registry reference like any other, through kiln-oci's one image source, from a
//! store that has never seen the image, and refuse what a registry serves altered. Runs
//! against Debian's docker-registry on loopback; multi-arch images are pushed by skopeo.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln_tests::registry::{TestRegistry, skopeo, write_multiarch};
use kiln_tests::{KilnStore, last_line, run_ok};
use serde_json::Value;

fn kiln(store: &KilnStore, docker: &Path, args: &[&str]) -> Command {
    let mut c = store.cmd(args);
    c.env("DOCKER_CONFIG", docker)
        .env_remove("REGISTRY_AUTH_FILE")
        .env("COSIGN_PASSWORD", "pw");
    c
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON: {e}\n{}", String::from_utf8_lossy(&out.stdout)))
}

/// Builds a one-layer image holding `files` into `store` as `tag`; returns its digest.
fn build(store: &KilnStore, docker: &Path, tag: &str, files: &[(&str, &str)]) -> String {
    let ctx = tempfile::tempdir().unwrap();
    let mut dockerfile = String::from("FROM scratch\n");
    for (name, text) in files {
        std::fs::write(ctx.path().join(name), text).unwrap();
        dockerfile.push_str(&format!("COPY {name} /app/{name}\n"));
    }
    std::fs::write(ctx.path().join("Dockerfile"), dockerfile).unwrap();
    last_line(&run_ok(
        kiln(store, docker, &["build", "-q", "-t", tag]).arg(ctx.path()),
    ))
}

/// The file docker-registry keeps a blob's bytes in.
fn registry_blob(reg: &TestRegistry, digest: &str) -> PathBuf {
    let hex = digest.trim_start_matches("sha256:");
    reg.dir
        .path()
        .join(format!("data/docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]))
}

/// Images tagged in a store (artifacts and staging never count; read-only commands create
/// no store at all).
fn tagged(store: &KilnStore) -> Vec<String> {
    store.index()["manifests"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str())
        .map(str::to_string)
        .collect()
}

#[test]
fn registry_images_open_like_store_images() {
    let reg = TestRegistry::start();
    let docker = tempfile::tempdir().unwrap();
    let builder = KilnStore::new();
    let name = format!("{}/team/app:1", reg.addr);
    let token = "ghp_Zq3Vn8Lw2Rt6Yp1Xk4Hs9Dj5Fb7Gc0Mv2Na8";
    let digest = build(
        &builder,
        docker.path(),
        &name,
        &[("token.txt", token), ("hello.txt", "hi")],
    );
    run_ok(&mut kiln(&builder, docker.path(), &["push", "-q", &name]));

    // A store that has never seen the image reads it from the registry, by a host-qualified
    // name or docker://, and keeps nothing.
    let fresh = KilnStore::new();
    for reference in [name.clone(), format!("docker://{name}")] {
        let out = run_ok(&mut kiln(&fresh, docker.path(), &["inspect", &reference]));
        let v = json(&out);
        assert_eq!(v["digest"], digest.as_str(), "{reference}");
        assert_eq!(v["config"]["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
    }
    let out = run_ok(&mut kiln(&fresh, docker.path(), &["sbom", "-o", "spdx-json", &name]));
    let doc = json(&out);
    assert_eq!(doc["spdxVersion"], "SPDX-2.3");
    let out = run_ok(&mut kiln(
        &fresh,
        docker.path(),
        &[
            "scan",
            "--scanners",
            "secret",
            "--format",
            "json",
            &format!("docker://{name}"),
        ],
    ));
    let report = json(&out);
    let secrets = report["secrets"].as_array().unwrap();
    assert!(
        secrets.iter().any(|s| s["location"] == "/app/token.txt"),
        "the token in the registry image was not found: {report}"
    );
    assert!(tagged(&fresh).is_empty(), "{:?}", tagged(&fresh));
    let leftovers = std::fs::read_dir(fresh.path().join("kiln/tmp"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(leftovers, 0, "staging layouts outlived their command");

    // A multi-arch index pushed by skopeo: --platform picks the manifest, as for store images.
    let layout = tempfile::tempdir().unwrap();
    let (_, amd64, arm64) = write_multiarch(layout.path(), "multi");
    skopeo(&[
        "copy",
        "--all",
        "--dest-tls-verify=false",
        &format!("oci:{}:multi", layout.path().display()),
        &format!("docker://{}/multi:1", reg.addr),
    ]);
    let m = format!("{}/multi:1", reg.addr);
    let arch = |platform: &str| {
        let out = run_ok(&mut kiln(
            &fresh,
            docker.path(),
            &["inspect", "--platform", platform, &m],
        ));
        json(&out)["config"]["architecture"].as_str().unwrap().to_string()
    };
    assert_eq!(arch("linux/arm64"), "arm64");
    assert_eq!(arch("linux/amd64"), "amd64");
    assert_ne!(amd64.digest, arm64.digest);
    let out = kiln(&fresh, docker.path(), &["inspect", "--platform", "linux/s390x", &m])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no manifest for linux/s390x"));

    // Signatures are read through the same source from an oci: layout too.
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("cosign");
    run_ok(&mut kiln(
        &builder,
        docker.path(),
        &[
            "generate-key-pair",
            "--output-key-prefix",
            &prefix.display().to_string(),
        ],
    ));
    let key = dir.path().join("cosign.key").display().to_string();
    let public = dir.path().join("cosign.pub").display().to_string();
    run_ok(&mut kiln(&builder, docker.path(), &["tag", &name, "local/app:1"]));
    run_ok(&mut kiln(
        &builder,
        docker.path(),
        &["sign", "--key", &key, "local/app:1"],
    ));
    let oci = format!("oci:{}", builder.path().display());
    let try_kiln = |args: &[&str]| kiln(&fresh, docker.path(), args).output().unwrap();
    let out = try_kiln(&["verify", "--key", &public, &format!("{oci}:local/app:1")]);
    // The layout lists the bundle as a referrer and the .sig manifest under the repository.
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json(&out).as_array().unwrap().len(), 2);
    let err = try_kiln(&["sign", "--key", &key, &format!("{oci}:local/app:1")]);
    assert_eq!(err.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&err.stderr).contains("not in layouts or archives"));
}

#[test]
fn a_registry_serving_altered_blobs_is_refused() {
    let reg = TestRegistry::start();
    let docker = tempfile::tempdir().unwrap();
    let builder = KilnStore::new();
    let name = format!("{}/altered:1", reg.addr);
    build(&builder, docker.path(), &name, &[("hello.txt", "hello, world")]);
    run_ok(&mut kiln(&builder, docker.path(), &["push", "-q", &name]));
    let manifest = json(&run_ok(&mut kiln(&builder, docker.path(), &["inspect", &name])))["manifest"].clone();

    // One byte of the layer changes in the registry's storage (same size).
    let layer = registry_blob(&reg, manifest["layers"][0]["digest"].as_str().unwrap());
    let mut data = std::fs::read(&layer).unwrap();
    let last = data.len() - 1;
    data[last] ^= 0x01;
    std::fs::write(&layer, &data).unwrap();
    let fresh = KilnStore::new();
    let out = kiln(&fresh, docker.path(), &["sbom", &name]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an altered layer was catalogued");
    let refused = err.contains("hashes to") || err.contains("digest mismatch");
    assert!(
        refused && err.contains(manifest["layers"][0]["digest"].as_str().unwrap()),
        "{err}"
    );

    // And the config: inspect reads it and refuses it.
    let config = registry_blob(&reg, manifest["config"]["digest"].as_str().unwrap());
    let mut data = std::fs::read(&config).unwrap();
    data[0] = b' ';
    std::fs::write(&config, &data).unwrap();
    let out = kiln(&fresh, docker.path(), &["inspect", &name]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("digest mismatch") || err.contains("hashes to"), "{err}");
}
