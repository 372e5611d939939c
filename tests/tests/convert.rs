//! `kiln convert --compression zstd|gzip` (issue 16): layers recompressed with the same tars
//! (config and diff_ids unchanged, layer digests and manifest new); the result is what a
//! build with that compression makes, a round trip gives the original back, every platform
//! of an index is converted, and skopeo and umoci read the zstd image.

use std::path::Path;
use std::process::Command;

use kiln_tests::{KilnStore, diff_trees, require_tool, run_ok, umoci_unpack, walk_tree};
use serde_json::Value;

const ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

fn kiln(store: &KilnStore, args: &[&str]) -> String {
    let out = run_ok(store.cmd(args).env("SOURCE_DATE_EPOCH", "1700000000"));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn blob(store: &KilnStore, digest: &str) -> Value {
    let p = store
        .path()
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn media_types(m: &Value) -> Vec<String> {
    m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap().to_string())
        .collect()
}

fn layer_digests(m: &Value) -> Vec<String> {
    m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

/// A context of a few files, one of them large enough for zstd's frames to matter.
fn context(dir: &Path) -> std::path::PathBuf {
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(ctx.join("data")).unwrap();
    let mut big = Vec::new();
    for i in 0..200_000u32 {
        big.extend_from_slice(format!("line {i} of a compressible file\n").as_bytes());
    }
    std::fs::write(ctx.join("data/big.txt"), &big).unwrap();
    std::fs::write(ctx.join("data/small"), "small\n").unwrap();
    std::fs::copy("/bin/busybox", ctx.join("busybox")).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY data /data\nCOPY busybox /bin/busybox\nCMD [\"/bin/busybox\", \"ls\", \"/data\"]\n",
    )
    .unwrap();
    ctx
}

/// The image's tree as umoci unpacks it. Debian's umoci (0.4.7) refuses zstd layers
/// ("blob is not correct mediatype"), so skopeo decodes them first, into gzip; umoci then
/// checks every layer against the config's diff_ids, which kiln kept.
fn unpack(store: &KilnStore, tag: &str, dir: &Path) -> kiln_tests::Tree {
    let layout = dir.join(format!("layout-{}", tag.replace(':', "-")));
    run_ok(Command::new(require_tool("skopeo")).args([
        "copy",
        "-q",
        "--dest-compress-format",
        "gzip",
        &format!("oci:{}:{tag}", store.path().display()),
        &format!("oci:{}:img", layout.display()),
    ]));
    let rootfs = umoci_unpack(&layout, "img", &dir.join(format!("bundle-{}", tag.replace(':', "-")))).unwrap();
    walk_tree(&rootfs).unwrap()
}

#[test]
fn convert_round_trip_matches_builds_and_peers_read_zstd() {
    let store = KilnStore::new();
    let tmp = tempfile::tempdir().unwrap();
    let ctx = context(tmp.path());
    let ctx_s = ctx.to_str().unwrap();
    let gz = kiln(&store, &["build", "-q", "-t", "app:gz", ctx_s]);
    let built_zst = kiln(
        &store,
        &["build", "-q", "--compression", "zstd", "-t", "app:built-zst", ctx_s],
    );
    assert_ne!(gz, built_zst);

    let zst = kiln(&store, &["convert", "--compression", "zstd", "app:gz", "-t", "app:zst"]);
    let (m_gz, m_zst) = (blob(&store, &gz), blob(&store, &zst));
    assert_eq!(m_zst["config"], m_gz["config"], "same config, so the same diff_ids");
    assert!(media_types(&m_gz).iter().all(|t| t == GZIP));
    assert!(media_types(&m_zst).iter().all(|t| t == ZSTD));
    for (a, b) in layer_digests(&m_gz).iter().zip(layer_digests(&m_zst)) {
        assert_ne!(a, &b);
    }
    // The same encoder as the build's: converting gives what building with zstd gives.
    assert_eq!(zst, built_zst);
    // And back: the original gzip image, byte for byte.
    let back = kiln(
        &store,
        &["convert", "--compression", "gzip", "app:zst", "-t", "app:back"],
    );
    assert_eq!(back, gz);

    // Peers: skopeo inspects the zstd image, umoci unpacks it to the gzip image's tree.
    let out = run_ok(
        Command::new(require_tool("skopeo")).args(["inspect", &format!("oci:{}:app:zst", store.path().display())]),
    );
    let inspected: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(inspected["Digest"], zst);
    assert_eq!(
        inspected["Layers"].as_array().unwrap().len(),
        layer_digests(&m_zst).len()
    );
    let raw = run_ok(Command::new(require_tool("skopeo")).args([
        "inspect",
        "--raw",
        &format!("oci:{}:app:zst", store.path().display()),
    ]));
    let raw: Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert!(media_types(&raw).iter().all(|t| t == ZSTD), "{raw}");
    let umoci_direct = Command::new(require_tool("umoci"))
        .args(["unpack", "--image", &format!("{}:app:zst", store.path().display())])
        .arg(tmp.path().join("direct"))
        .output()
        .unwrap();
    let (t_gz, t_zst) = (
        unpack(&store, "app:gz", tmp.path()),
        unpack(&store, "app:zst", tmp.path()),
    );
    let diffs = diff_trees("gzip", &t_gz, "zstd", &t_zst);
    assert!(diffs.is_empty(), "{diffs:?}");
    assert!(
        t_zst.contains_key("/data/big.txt"),
        "{:?}",
        t_zst.keys().collect::<Vec<_>>()
    );
    // umoci reads zstd itself from 0.4.8 on; where it does, its tree is the same.
    if umoci_direct.status.success() {
        let direct = walk_tree(&tmp.path().join("direct/rootfs")).unwrap();
        assert!(diff_trees("gzip", &t_gz, "umoci zstd", &direct).is_empty());
    } else {
        let err = String::from_utf8_lossy(&umoci_direct.stderr);
        assert!(err.contains("not correct mediatype"), "{err}");
    }
}

#[test]
fn every_platform_of_an_index_is_converted() {
    let store = KilnStore::new();
    let tmp = tempfile::tempdir().unwrap();
    let ctx = context(tmp.path());
    let idx = kiln(
        &store,
        &[
            "build",
            "-q",
            "--platform",
            "linux/amd64,linux/arm64",
            "-t",
            "app:multi",
            ctx.to_str().unwrap(),
        ],
    );
    let new = kiln(
        &store,
        &["convert", "--compression", "zstd", "app:multi", "-t", "app:multi-zst"],
    );
    let (a, b) = (blob(&store, &idx), blob(&store, &new));
    assert_eq!(b["manifests"].as_array().unwrap().len(), 2);
    for (old, conv) in a["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .zip(b["manifests"].as_array().unwrap())
    {
        assert_eq!(old["platform"], conv["platform"]);
        assert_ne!(old["digest"], conv["digest"]);
        let m = blob(&store, conv["digest"].as_str().unwrap());
        assert!(media_types(&m).iter().all(|t| t == ZSTD));
        assert_eq!(m["config"], blob(&store, old["digest"].as_str().unwrap())["config"]);
    }
    for arch in ["amd64", "arm64"] {
        let out = run_ok(Command::new(require_tool("skopeo")).args([
            "inspect",
            "--override-arch",
            arch,
            &format!("oci:{}:app:multi-zst", store.path().display()),
        ]));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["Architecture"], arch);
    }
}

#[test]
fn bad_input_is_refused() {
    let store = KilnStore::new();
    let out = store
        .cmd(["convert", "--compression", "brotli", "app:1", "-t", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("use zstd, gzip or none"));
    let out = store
        .cmd(["convert", "--compression", "zstd", "nothing:here", "-t", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}
