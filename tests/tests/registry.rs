//! kiln against Debian's real `docker-registry` on 127.0.0.1: round trips, interop with
//! skopeo both ways (single-arch and multi-arch), copy between transports, referrers through
//! the tag schema, and the base-image lock.

use std::process::Command;

use kiln_oci::Platform;
use kiln_tests::registry::{TestRegistry, last_digest, skopeo, write_image, write_multiarch};
use kiln_tests::{KilnStore, run_ok};

fn kiln(store: &KilnStore, docker_config: &std::path::Path, args: &[&str]) -> Command {
    let mut c = store.cmd(args);
    c.env("DOCKER_CONFIG", docker_config).env_remove("REGISTRY_AUTH_FILE");
    c
}

fn small_context() -> tempfile::TempDir {
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("hello.txt"), "hello from kiln\n").unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\nCOPY hello.txt /hello.txt\nCMD [\"/hello\"]\n",
    )
    .unwrap();
    ctx
}

/// The digest of a manifest as the registry holds it (skopeo compresses uncompressed layers
/// when it pushes, so it is not the digest of the layout we wrote).
fn registry_digest(reference: &str) -> kiln_oci::Digest {
    let raw = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{reference}"),
    ]);
    kiln_oci::Digest::sha256_of(&raw.stdout)
}

/// The digest of a platform's manifest in a registry index.
fn platform_digest(reference: &str, arch: &str) -> kiln_oci::Digest {
    let raw = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{reference}"),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    let m = v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["architecture"] == arch)
        .unwrap();
    m["digest"].as_str().unwrap().parse().unwrap()
}

fn amd64() -> Platform {
    Platform {
        os: "linux".into(),
        architecture: "amd64".into(),
        variant: None,
    }
}

#[test]
fn round_trip_build_push_pull_and_skopeo_reads_it() {
    let reg = TestRegistry::start();
    let dc = tempfile::tempdir().unwrap();
    let store = KilnStore::new();
    let ctx = small_context();
    let name = format!("{}/team/app:1", reg.addr);
    let built = last_digest(&run_ok(
        kiln(&store, dc.path(), &["build", "-q", "-t", &name]).arg(ctx.path()),
    ));
    let pushed = last_digest(&run_ok(&mut kiln(&store, dc.path(), &["push", &name])));
    assert_eq!(built, pushed);

    // Into an empty store: same digest, and the name resolves there.
    let empty = KilnStore::new();
    let pulled = last_digest(&run_ok(&mut kiln(&empty, dc.path(), &["pull", &name])));
    assert_eq!(pulled, built);
    let out = run_ok(&mut kiln(&empty, dc.path(), &["images", "--format", "json"]));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("{}/team/app", reg.addr)),
        "{out:?}"
    );

    // skopeo reads what kiln pushed.
    let inspect = skopeo(&["inspect", "--tls-verify=false", &format!("docker://{name}")]);
    let v: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(v["Digest"], built.to_string());
    let layout = tempfile::tempdir().unwrap();
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{name}"),
        &format!("oci:{}:x", layout.path().display()),
    ]);
    let (manifest, _) = kiln_tests::layout_image(layout.path(), Some("x")).unwrap();
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 1);

    // build --push, and a second push with nothing new.
    let name2 = format!("{}/team/app:2", reg.addr);
    let out = run_ok(kiln(&store, dc.path(), &["build", "--push", "-t", &name2]).arg(ctx.path()));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pushed"), "{out:?}");
    let out = run_ok(&mut kiln(&store, dc.path(), &["push", &name2]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("0 blobs uploaded"), "{err}");

    // --push to a name without a registry is refused before anything is built.
    let out = kiln(&store, dc.path(), &["build", "--push", "-t", "plain/app:1"])
        .arg(ctx.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("names no registry"),
        "{out:?}"
    );
    assert!(
        !String::from_utf8_lossy(&kiln_tests::KilnStore::index(&store).to_string().into_bytes()).contains("plain/app")
    );

    // A push to another repository of the same registry mounts the blobs it knows there.
    let out = run_ok(&mut kiln(
        &store,
        dc.path(),
        &["push", &name, &format!("{}/other:1", reg.addr)],
    ));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("2 mounted"), "{err}");
}

#[test]
fn kiln_pulls_what_skopeo_pushed_single_and_multiarch() {
    let reg = TestRegistry::start();
    let dc = tempfile::tempdir().unwrap();
    let layout = tempfile::tempdir().unwrap();
    write_image(layout.path(), Some("single"), &[3000, 70_000], &amd64(), 7);
    write_multiarch(layout.path(), "multi");
    let lp = layout.path().display().to_string();

    // Single-arch, as OCI and as Docker schema2 (skopeo converts the manifest).
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{lp}:single"),
        &format!("docker://{}/s:oci", reg.addr),
    ]);
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--format",
        "v2s2",
        &format!("oci:{lp}:single"),
        &format!("docker://{}/s:v2s2", reg.addr),
    ]);
    let store = KilnStore::new();
    let d = last_digest(&run_ok(&mut kiln(
        &store,
        dc.path(),
        &["pull", &format!("{}/s:oci", reg.addr)],
    )));
    assert_eq!(d, registry_digest(&format!("{}/s:oci", reg.addr)));
    let v2 = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{}/s:v2s2", reg.addr),
    ]);
    assert!(String::from_utf8_lossy(&v2.stdout).contains("vnd.docker.distribution.manifest.v2+json"));
    let d = last_digest(&run_ok(&mut kiln(
        &store,
        dc.path(),
        &["pull", &format!("docker://{}/s:v2s2", reg.addr)],
    )));
    assert_eq!(d, kiln_oci::Digest::sha256_of(&v2.stdout));
    // The pulled schema2 image is usable: inspect reads its config.
    run_ok(&mut kiln(
        &store,
        dc.path(),
        &["inspect", &format!("{}/s:v2s2", reg.addr)],
    ));

    // Multi-arch index.
    skopeo(&[
        "copy",
        "--all",
        "--dest-tls-verify=false",
        &format!("oci:{lp}:multi"),
        &format!("docker://{}/m:1", reg.addr),
    ]);
    let m = format!("{}/m:1", reg.addr);
    let (index, a, b) = (
        registry_digest(&m),
        platform_digest(&m, "amd64"),
        platform_digest(&m, "arm64"),
    );
    let d = last_digest(&run_ok(&mut kiln(
        &store,
        dc.path(),
        &["pull", "--platform", "linux/arm64/v8", &m],
    )));
    assert_eq!(d, b);
    let d = last_digest(&run_ok(&mut kiln(
        &store,
        dc.path(),
        &["pull", "--platform", "linux/amd64", &m],
    )));
    assert_eq!(d, a);
    let all = KilnStore::new();
    let d = last_digest(&run_ok(&mut kiln(&all, dc.path(), &["pull", "--all", &m])));
    assert_eq!(d, index);
    let out = kiln(&store, dc.path(), &["pull", "--platform", "linux/s390x", &m])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no manifest for linux/s390x") && err.contains("linux/arm64/v8"),
        "{err}"
    );

    // A Docker manifest list (schema2) works the same way.
    skopeo(&[
        "copy",
        "--all",
        "--format",
        "v2s2",
        "--dest-tls-verify=false",
        &format!("oci:{lp}:multi"),
        &format!("docker://{}/ml:1", reg.addr),
    ]);
    let ml = format!("{}/ml:1", reg.addr);
    let raw = skopeo(&["inspect", "--tls-verify=false", "--raw", &format!("docker://{ml}")]);
    assert!(String::from_utf8_lossy(&raw.stdout).contains("manifest.list.v2+json"));
    let d = last_digest(&run_ok(&mut kiln(
        &store,
        dc.path(),
        &["pull", "--platform", "linux/arm64", &ml],
    )));
    assert_eq!(d, platform_digest(&ml, "arm64"));

    // copy --all between repositories keeps the index digest; skopeo sees both platforms.
    let out = run_ok(&mut kiln(
        &all,
        dc.path(),
        &["copy", "--all", &m, &format!("docker://{}/m2:1", reg.addr)],
    ));
    assert_eq!(last_digest(&out), index);
    let raw = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{}/m2:1", reg.addr),
    ]);
    assert_eq!(kiln_oci::Digest::sha256_of(&raw.stdout), index);
}

#[test]
fn copy_between_transports() {
    let reg = TestRegistry::start();
    let dc = tempfile::tempdir().unwrap();
    let store = KilnStore::new();
    let layout = tempfile::tempdir().unwrap();
    // Copies by kiln keep uncompressed layers as they are, so digests are the layout's.
    let img = write_image(layout.path(), Some("app"), &[2000, 5000], &amd64(), 3);
    let lp = layout.path().display();
    let r = |s: &str| format!("{}/{s}", reg.addr);

    // oci: -> registry -> oci-archive -> registry -> docker-archive -> store
    let d = last_digest(&run_ok(&mut kiln(
        &store,
        dc.path(),
        &["copy", &format!("oci:{lp}:app"), &r("c:1")],
    )));
    assert_eq!(d, img.digest);
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("a.tar");
    run_ok(&mut kiln(
        &store,
        dc.path(),
        &["copy", &r("c:1"), &format!("oci-archive:{}", archive.display())],
    ));
    let d = last_digest(&run_ok(&mut kiln(
        &store,
        dc.path(),
        &[
            "copy",
            &format!("oci-archive:{}", archive.display()),
            &format!("docker://{}", r("c:2")),
        ],
    )));
    assert_eq!(d, img.digest);
    let darchive = tmp.path().join("d.tar");
    run_ok(&mut kiln(
        &store,
        dc.path(),
        &["copy", &r("c:2"), &format!("docker-archive:{}", darchive.display())],
    ));
    skopeo(&["inspect", &format!("docker-archive:{}", darchive.display())]);
    // registry -> store under a plain local name, then the store -> oci: dir
    run_ok(&mut kiln(
        &store,
        dc.path(),
        &["copy", &format!("docker://{}", r("c:1")), "local/app:1"],
    ));
    let out = tempfile::tempdir().unwrap();
    let d = last_digest(&run_ok(&mut kiln(
        &store,
        dc.path(),
        &["copy", "local/app:1", &format!("oci:{}:x", out.path().display())],
    )));
    assert_eq!(d, img.digest);
    // Between two registries: blobs pass through a staging layout, the digest stays.
    let reg2 = TestRegistry::start();
    let d = last_digest(&run_ok(&mut kiln(
        &store,
        dc.path(),
        &["copy", &r("c:1"), &format!("{}/mirror/c:1", reg2.addr)],
    )));
    assert_eq!(d, img.digest);
    assert_eq!(registry_digest(&format!("{}/mirror/c:1", reg2.addr)), img.digest);
    // A name with no registry cannot be pushed without a destination.
    let o = kiln(&store, dc.path(), &["push", "local/app:1"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("names no registry"),
        "{o:?}"
    );
}

#[test]
fn two_artifacts_are_listed_through_the_tag_schema() {
    let reg = TestRegistry::start();
    let dc = tempfile::tempdir().unwrap();
    let store = KilnStore::new();
    let layout = tempfile::tempdir().unwrap();
    let img = write_image(layout.path(), Some("app"), &[1000], &amd64(), 5);
    let name = format!("{}/ref/app:1", reg.addr);
    run_ok(&mut kiln(
        &store,
        dc.path(),
        &["copy", &format!("oci:{}:app", layout.path().display()), &name],
    ));
    let files = tempfile::tempdir().unwrap();
    std::fs::write(files.path().join("sbom.json"), r#"{"spdxVersion":"SPDX-2.3"}"#).unwrap();
    std::fs::write(files.path().join("sig"), "signature").unwrap();
    // Two clients attach at the same time; the fallback index must keep both.
    let mut a = kiln(
        &store,
        dc.path(),
        &[
            "attach",
            &name,
            "--artifact-type",
            "application/spdx+json",
            "--file",
            &format!("{}:application/spdx+json", files.path().join("sbom.json").display()),
        ],
    );
    let other = KilnStore::new();
    let mut b = kiln(
        &other,
        dc.path(),
        &[
            "attach",
            &name,
            "--artifact-type",
            "application/vnd.dev.cosign.artifact.sig.v1+json",
            "--file",
            &files.path().join("sig").display().to_string(),
            "--annotation",
            "org.example=1",
        ],
    );
    let piped = |c: &mut Command| {
        c.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
    };
    piped(&mut a);
    piped(&mut b);
    let (ca, cb) = (a.spawn().unwrap(), b.spawn().unwrap());
    let (oa, ob) = (ca.wait_with_output().unwrap(), cb.wait_with_output().unwrap());
    assert!(oa.status.success() && ob.status.success(), "{oa:?}\n{ob:?}");
    assert!(!oa.stdout.is_empty() && !ob.stdout.is_empty(), "{oa:?}\n{ob:?}");
    let (da, db) = (last_digest(&oa), last_digest(&ob));

    let out = run_ok(&mut kiln(&store, dc.path(), &["referrers", "--format", "json", &name]));
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let digests: Vec<&str> = list.iter().map(|d| d["digest"].as_str().unwrap()).collect();
    assert!(
        digests.contains(&da.to_string().as_str()) && digests.contains(&db.to_string().as_str()),
        "{list:?}"
    );
    let out = run_ok(&mut kiln(
        &store,
        dc.path(),
        &[
            "referrers",
            "--format",
            "json",
            "--artifact-type",
            "application/spdx+json",
            &name,
        ],
    ));
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["digest"], da.to_string());

    // The fallback tag is a plain OCI index other tools can read, and the artifact has its subject.
    let tag = format!("docker://{}/ref/app:sha256-{}", reg.addr, img.digest.hex());
    let raw = skopeo(&["inspect", "--tls-verify=false", "--raw", &tag]);
    let idx: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(idx["manifests"].as_array().unwrap().len(), 2);
    let art = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{}/ref/app@{db}", reg.addr),
    ]);
    let art: serde_json::Value = serde_json::from_slice(&art.stdout).unwrap();
    assert_eq!(art["subject"]["digest"], img.digest.to_string());
    assert_eq!(art["annotations"]["org.example"], "1");
}

#[test]
fn an_oras_shaped_artifact_pushed_by_skopeo_is_listed() {
    // An artifact the way oras writes one (empty config, artifactType, subject) and the
    // tag-schema index pointing at it, pushed by skopeo, not kiln.
    let reg = TestRegistry::start();
    let dc = tempfile::tempdir().unwrap();
    let layout = tempfile::tempdir().unwrap();
    let img = write_image(layout.path(), Some("app"), &[1000], &amd64(), 9);
    let st = kiln_oci::Store::open(layout.path()).unwrap();
    let empty = st.put_blob(b"{}").unwrap();
    let blob = st.put_blob(b"hello artifact").unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.example.thing",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty.to_string(), "size": 2, "data": "e30="},
        "layers": [{"mediaType": "application/vnd.example.thing.layer", "digest": blob.to_string(), "size": 14,
                    "annotations": {"org.opencontainers.image.title": "thing.txt"}}],
        "subject": {"mediaType": img.media_type, "digest": img.digest.to_string(), "size": img.size},
        "annotations": {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"}
    });
    let mbytes = serde_json::to_vec(&manifest).unwrap();
    let md = st.put_blob(&mbytes).unwrap();
    let mut entry = kiln_oci::Descriptor::new(kiln_oci::media::OCI_MANIFEST, md.clone(), mbytes.len() as u64);
    entry.artifact_type = Some("application/vnd.example.thing".into());
    st.tag("art", &entry).unwrap();
    let lp = layout.path().display().to_string();
    let p = "--preserve-digests";
    skopeo(&[
        "copy",
        p,
        "--dest-tls-verify=false",
        &format!("oci:{lp}:app"),
        &format!("docker://{}/o:1", reg.addr),
    ]);
    skopeo(&[
        "copy",
        p,
        "--dest-tls-verify=false",
        &format!("oci:{lp}:art"),
        &format!("docker://{}/o:art", reg.addr),
    ]);
    let index = kiln_oci::Index {
        schema_version: 2,
        media_type: Some(kiln_oci::media::OCI_INDEX.into()),
        manifests: vec![entry],
        annotations: Default::default(),
    };
    let ibytes = kiln_oci::canonical_json(&index);
    let id = st.put_blob(&ibytes).unwrap();
    st.tag(
        "fallback",
        &kiln_oci::Descriptor::new(kiln_oci::media::OCI_INDEX, id, ibytes.len() as u64),
    )
    .unwrap();
    // skopeo would also copy the index's children; they are already there.
    skopeo(&[
        "copy",
        "--all",
        "--dest-tls-verify=false",
        &format!("oci:{lp}:fallback"),
        &format!("docker://{}/o:sha256-{}", reg.addr, img.digest.hex()),
    ]);
    let store = KilnStore::new();
    let out = run_ok(&mut kiln(
        &store,
        dc.path(),
        &["referrers", "--format", "json", &format!("{}/o:1", reg.addr)],
    ));
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["digest"], md.to_string());
    assert_eq!(list[0]["artifactType"], "application/vnd.example.thing");
}

/// Every file of a directory (relative path → content), to prove a build wrote nothing there.
fn snapshot_dir(dir: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// The files under /src of a stored image.
fn src_files(store: &KilnStore, tag: &str) -> Vec<String> {
    let layout = tempfile::tempdir().unwrap();
    skopeo(&[
        "copy",
        "-q",
        &format!("oci:{}:{tag}", store.path().display()),
        &format!("oci:{}:x", layout.path().display()),
    ]);
    let bundle = tempfile::tempdir().unwrap();
    let rootfs = kiln_tests::umoci_unpack(layout.path(), "x", &bundle.path().join("b")).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(rootfs.join("src"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    names
}

/// Issue 11, point 3: a build writes no file into its context; `kiln lock` writes
/// Dockerfile.lock, which `COPY .` never picks up; `--locked` refuses a moved tag.
#[test]
fn copy_dot_gets_no_lockfile_and_locked_refuses_a_moved_tag() {
    let reg = TestRegistry::start();
    let dc = tempfile::tempdir().unwrap();
    let layout = tempfile::tempdir().unwrap();
    write_image(layout.path(), Some("one"), &[1000], &amd64(), 11);
    write_image(layout.path(), Some("two"), &[1200], &amd64(), 12);
    let lp = layout.path().display().to_string();
    let base = format!("{}/base:1", reg.addr);
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{lp}:one"),
        &format!("docker://{base}"),
    ]);
    let first = registry_digest(&base);

    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("f"), "x").unwrap();
    std::fs::write(ctx.path().join("Dockerfile"), format!("FROM {base}\nCOPY . /src/\n")).unwrap();
    let before = snapshot_dir(ctx.path());
    let store = KilnStore::new();
    let meta = tempfile::tempdir().unwrap();
    let meta = meta.path().join("meta.json");
    let build = |args: &[&str]| -> String {
        let out = run_ok(
            kiln(&store, dc.path(), &[&["build", "-q", "-t", "app:1"], args].concat())
                .arg(ctx.path())
                .current_dir(ctx.path()),
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let built = build(&["--metadata-file", meta.to_str().unwrap()]);
    assert_eq!(snapshot_dir(ctx.path()), before, "the build wrote into its context");
    assert_eq!(build(&[]), built, "a second build is the same image");
    assert_eq!(
        snapshot_dir(ctx.path()),
        before,
        "the second build wrote into its context"
    );
    assert_eq!(src_files(&store, "app:1"), ["Dockerfile", "f"]);
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    assert!(
        meta["kiln.base-images"].to_string().contains(&first.to_string()),
        "{meta}"
    );

    // `kiln lock Dockerfile` writes the lock (TOML, pinned per platform); the lock is not
    // part of the context, so the image stays the same.
    run_ok(kiln(&store, dc.path(), &["lock", "Dockerfile"]).current_dir(ctx.path()));
    let lock = std::fs::read_to_string(ctx.path().join("Dockerfile.lock")).unwrap();
    assert!(
        lock.contains(&format!("name = \"{base}\"")) && lock.contains("platform = \"linux/amd64\""),
        "{lock}"
    );
    assert!(lock.contains(&format!("digest = \"{first}\"")), "{lock}");
    assert_eq!(
        build(&["--locked", "--pull=always"]),
        built,
        "the lockfile entered the context"
    );
    assert_eq!(src_files(&store, "app:1"), ["Dockerfile", "f"]);

    // Move the tag: --locked refuses it, in this store and in a fresh one.
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{lp}:two"),
        &format!("docker://{base}"),
    ]);
    let second = registry_digest(&base);
    for (s, pull) in [(&store, "--pull=always"), (&KilnStore::new(), "--pull=missing")] {
        let out = kiln(s, dc.path(), &["build", "-q", "--locked", pull])
            .arg(ctx.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&second.to_string()) && err.contains("Dockerfile.lock") && err.contains("moved"),
            "{err}"
        );
    }
    // `kiln lock` follows the tag, and then --locked passes again.
    run_ok(kiln(&store, dc.path(), &["lock", "-f"]).arg(ctx.path().join("Dockerfile")));
    let lock = std::fs::read_to_string(ctx.path().join("Dockerfile.lock")).unwrap();
    assert!(
        lock.contains(&second.to_string()) && !lock.contains(&first.to_string()),
        "{lock}"
    );
    run_ok(kiln(&store, dc.path(), &["build", "-q", "--locked"]).arg(ctx.path()));

    // The user's .dockerignore may bring the lock back into the context.
    std::fs::write(ctx.path().join(".dockerignore"), "!Dockerfile.lock\n").unwrap();
    build(&[]);
    assert_eq!(
        src_files(&store, "app:1"),
        [".dockerignore", "Dockerfile", "Dockerfile.lock", "f"]
    );
}

#[test]
fn write_lock_merges_and_a_crafted_lock_is_refused() {
    let reg = TestRegistry::start();
    let dc = tempfile::tempdir().unwrap();
    let layout = tempfile::tempdir().unwrap();
    write_image(layout.path(), Some("one"), &[1000], &amd64(), 11);
    let base = format!("{}/base:1", reg.addr);
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:one", layout.path().display()),
        &format!("docker://{base}"),
    ]);
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("Dockerfile"), format!("FROM {base}\n")).unwrap();
    let store = KilnStore::new();
    let lock_path = ctx.path().join("Dockerfile.lock");
    // A pin of another platform survives --write-lock, which adds this build's.
    let other = format!(
        "version = 1\n\n[[image]]\nname = \"{base}\"\nplatform = \"linux/arm64\"\ndigest = \"sha256:{}\"\n",
        "a".repeat(64)
    );
    std::fs::write(&lock_path, &other).unwrap();
    run_ok(kiln(&store, dc.path(), &["build", "-q", "--write-lock"]).arg(ctx.path()));
    let lock = std::fs::read_to_string(&lock_path).unwrap();
    assert!(lock.contains("linux/arm64") && lock.contains("linux/amd64"), "{lock}");
    // A crafted digest: refused on load with its line, exit 2.
    std::fs::write(&lock_path, other.replace(&"a".repeat(64), "../../../../etc/passwd")).unwrap();
    let out = kiln(&store, dc.path(), &["build", "-q", "--locked"])
        .arg(ctx.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Dockerfile.lock:6:") && err.contains("hint"), "{err}");
}

/// Several artifacts of one image share blobs (the empty config always, here a layer too).
/// Pushed side by side, each used to upload them, and docker-registry rewrites a blob's
/// link in place on every upload: a manifest PUT checked in that moment failed with
/// MANIFEST_BLOB_UNKNOWN (seen in CI on `kiln push` of a signed image). One session now
/// uploads a blob into a repository once; the others wait and find it there.
#[test]
fn artifacts_sharing_a_blob_upload_it_once() {
    use std::sync::{Arc, Mutex};

    let reg = TestRegistry::start();
    let store = KilnStore::new();
    let docker = tempfile::tempdir().unwrap();
    let ctx = small_context();
    let name = format!("127.0.0.1:{}/shared/app:1", reg.port());
    run_ok(kiln(&store, docker.path(), &["build", "-q", "--sbom=false", "-t", &name]).arg(ctx.path()));
    run_ok(&mut kiln(&store, docker.path(), &["push", "-q", &name]));

    let st = kiln_oci::Store::open(store.path()).unwrap();
    let subject = st.resolve(&name).unwrap().expect("the built image");
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    let opts = kiln_registry::Options {
        jobs: 8,
        progress: Some(Arc::new(move |e: &kiln_registry::transfer::TransferEvent<'_>| {
            if let kiln_registry::transfer::TransferEvent::End { line, .. } = e {
                sink.lock().unwrap().push(line.to_string());
            }
        })),
        ..kiln_registry::Options::default()
    };
    let session = kiln_registry::Session::new(opts).unwrap();
    let pinned =
        kiln_oci::reference::Name::parse(&format!("127.0.0.1:{}/shared/app@{}", reg.port(), subject.digest)).unwrap();
    for round in 0..3 {
        let shared = format!("shared by round {round}\n").into_bytes();
        let artifacts: Vec<_> = (0..8)
            .map(|i| {
                let layers = [
                    ("text/plain".to_string(), shared.clone()),
                    ("text/plain".to_string(), format!("note {round}.{i}\n").into_bytes()),
                ];
                kiln_registry::ops::artifact_manifest(&st, &subject, "application/x-note", &layers, Default::default())
                    .unwrap()
                    .0
            })
            .collect();
        session.push_referrers(&st, &artifacts, &pinned).unwrap();
        let digest = kiln_oci::Digest::sha256_of(&shared);
        let lines = lines.lock().unwrap();
        let uploads = lines
            .iter()
            .filter(|l| l.starts_with(&format!("pushed {digest}")))
            .count();
        assert_eq!(
            uploads, 1,
            "round {round}: the shared layer went up {uploads} times: {lines:?}"
        );
    }
    // Every note went up, and all 24 artifacts are referrers of the image.
    let lines = lines.lock().unwrap();
    let notes = lines.iter().filter(|l| l.starts_with("pushed ")).count();
    assert!(notes >= 3 + 24, "{lines:?}");
    assert_eq!(
        session.referrers(&pinned, Some("application/x-note")).unwrap().len(),
        24
    );
}
