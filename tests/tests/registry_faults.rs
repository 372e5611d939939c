//! Surviving faults: a seeded proxy between kiln and the real `docker-registry` cuts
//! connections mid-blob in both directions, delays requests and answers 503 and 429; a
//! 300 MiB multi-layer image still goes up and comes back with the right digests. With the
//! registry stopped, kiln gives up with one clear line.

use std::process::Command;

use kiln_oci::Platform;
use kiln_tests::registry::{FaultProxy, Faults, TestRegistry, last_digest, skopeo, write_image};
use kiln_tests::{KilnStore, run_ok};

fn kiln(store: &KilnStore, docker_config: &std::path::Path, args: &[&str]) -> Command {
    let mut c = store.cmd(args);
    c.env("DOCKER_CONFIG", docker_config).env_remove("REGISTRY_AUTH_FILE");
    c
}

const MIB: usize = 1 << 20;

#[test]
fn push_and_pull_300_mib_through_a_faulty_proxy() {
    let reg = TestRegistry::start();
    let proxy = FaultProxy::start(&reg.addr, Faults::default());
    let dc = tempfile::tempdir().unwrap();
    let store = KilnStore::new();
    let p = Platform {
        os: "linux".into(),
        architecture: "amd64".into(),
        variant: None,
    };
    // 300 MiB in 7 layers, two of them above the 64 MiB chunk size (chunked uploads).
    let sizes = [90 * MIB, 70 * MIB, 50 * MIB, 40 * MIB, 30 * MIB, 15 * MIB, 5 * MIB];
    let img = write_image(store.path(), Some("big:1"), &sizes, &p, 300);
    let dest = format!("{}/faults/big:1", proxy.addr);
    let out = kiln(&store, dc.path(), &["push", "big:1", &dest]).output().unwrap();
    assert!(
        out.status.success(),
        "push failed with faults [{}]: {}\nregistry log:\n{}",
        proxy.summary(),
        String::from_utf8_lossy(&out.stderr),
        reg.log()
    );
    assert_eq!(last_digest(&out), img.digest);

    // The registry (asked directly, not through the proxy) holds exactly the image.
    let raw = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{}/faults/big:1", reg.addr),
    ]);
    assert_eq!(kiln_oci::Digest::sha256_of(&raw.stdout), img.digest);

    // Pull through the proxy into an empty store: every blob verified on the way in.
    let fresh = KilnStore::new();
    let out = kiln(&fresh, dc.path(), &["pull", &dest]).output().unwrap();
    assert!(
        out.status.success(),
        "pull failed with faults [{}]: {}",
        proxy.summary(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(last_digest(&out), img.digest);
    let m: kiln_oci::Manifest =
        serde_json::from_slice(&std::fs::read(fresh.path().join("blobs/sha256").join(img.digest.hex())).unwrap())
            .unwrap();
    for l in &m.layers {
        let data = std::fs::read(fresh.path().join("blobs/sha256").join(l.digest.hex())).unwrap();
        assert_eq!(kiln_oci::Digest::sha256_of(&data), l.digest);
        assert_eq!(data.len() as u64, l.size);
    }
    // No temp files left behind by the interrupted downloads.
    let leftovers: Vec<_> = std::fs::read_dir(fresh.path().join("kiln/tmp"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Every kind of fault really happened.
    use std::sync::atomic::Ordering::Relaxed;
    let s = &proxy.stats;
    let summary = proxy.summary();
    assert!(s.s503.load(Relaxed) > 0, "{summary}");
    assert!(s.s429.load(Relaxed) > 0, "{summary}");
    assert!(s.cuts_down.load(Relaxed) > 0, "{summary}");
    assert!(s.cuts_up.load(Relaxed) > 0, "{summary}");
    eprintln!("faults injected: {summary}");
}

#[test]
fn a_stopped_registry_gives_one_clear_error() {
    let mut reg = TestRegistry::start();
    let addr = reg.addr.clone();
    reg.stop();
    let dc = tempfile::tempdir().unwrap();
    let store = KilnStore::new();
    let out = kiln(
        &store,
        dc.path(),
        &["pull", "--retry-times", "3", &format!("{addr}/gone/app:1")],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains(&addr) && err.contains("gave up after 3 attempts") && err.contains("hint:"),
        "{err}"
    );
    // A push of a local image fails the same way and leaves the store alone.
    run_ok(&mut kiln(&store, dc.path(), &["images"]));
}
