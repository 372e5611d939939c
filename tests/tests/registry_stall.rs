//! Registries that stop answering, and pulls that stop halfway (issue 18.5, 18.6): a stall
//! anywhere (ping, token server, blob download, blob upload) ends the command within the
//! timeout with a message naming the host that stalled, and a pull killed halfway is
//! continued by the next one, which downloads only what is missing.

use std::process::{Command, Output, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use kiln_oci::Platform;
use kiln_tests::proxy::Proxy;
use kiln_tests::registry::{RegistryConfig, TestRegistry, make_certs, write_image};
use kiln_tests::{KilnStore, run_ok};

const MIB: usize = 1 << 20;

fn kiln(store: &KilnStore, docker_config: &std::path::Path, args: &[&str]) -> Command {
    let mut c = store.cmd(args);
    c.env("DOCKER_CONFIG", docker_config).env_remove("REGISTRY_AUTH_FILE");
    c
}

fn platform() -> Platform {
    Platform {
        os: "linux".into(),
        architecture: "amd64".into(),
        variant: None,
    }
}

/// Runs `cmd`; (output, seconds it took).
fn timed(cmd: &mut Command) -> (Output, f64) {
    let t = Instant::now();
    let out = cmd.output().unwrap();
    (out, t.elapsed().as_secs_f64())
}

/// Fails (exit 3), within `bound` seconds, with one error line naming `host` as stalled.
fn assert_stalled(what: &str, (out, secs): &(Output, f64), host: &str, bound: f64) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{what}: {err}");
    assert!(
        *secs < bound,
        "{what} took {secs:.1} s to give up (bound {bound} s): {err}"
    );
    let line = err.lines().find(|l| l.starts_with("error:")).unwrap_or_default();
    assert!(
        line.contains(&format!("{host} stalled")) && line.contains("--timeout"),
        "{what}: the error must name the stalled host and the flag: {err}"
    );
}

/// A registry that accepts connections and never answers: pull and push give up within
/// 90 s by default and within 15 s with `--timeout 5`.
#[test]
fn a_registry_that_never_answers() {
    let stall = Proxy::stalling();
    let dc = tempfile::tempdir().unwrap();
    let store = KilnStore::new();
    write_image(store.path(), Some("small:1"), &[4096], &platform(), 1);
    let image = format!("{}/stall/small:1", stall.addr);
    let host = stall.addr.clone();
    // Default timeout: pull and push at the same time (each waits about a minute).
    let (pull, push) = std::thread::scope(|s| {
        let pull = s.spawn(|| timed(&mut kiln(&store, dc.path(), &["pull", &image])));
        let push = s.spawn(|| timed(&mut kiln(&store, dc.path(), &["push", "small:1", &image])));
        (pull.join().unwrap(), push.join().unwrap())
    });
    assert_stalled("pull", &pull, &host, 90.0);
    assert_stalled("push", &push, &host, 90.0);
    let pull = timed(&mut kiln(&store, dc.path(), &["pull", "--timeout", "5", &image]));
    assert_stalled("pull --timeout 5", &pull, &host, 15.0);
    let push = timed(&mut kiln(
        &store,
        dc.path(),
        &["push", "--timeout", "5", "small:1", &image],
    ));
    assert_stalled("push --timeout 5", &push, &host, 15.0);
    assert!(stall.requests.load(Ordering::Relaxed) >= 4);
}

/// Stalls after a good start: the token server, a blob download and a blob upload each
/// stall; `--timeout 5` ends each within 15 s, naming the host that stalled.
#[test]
fn stalls_mid_operation() {
    let dc = tempfile::tempdir().unwrap();
    let store = KilnStore::new();
    write_image(store.path(), Some("img:1"), &[3 * MIB], &platform(), 2);

    // Token server stalls.
    let token = Proxy::stalling();
    let certs = tempfile::tempdir().unwrap();
    let (ca, _, _) = make_certs(certs.path());
    let reg = TestRegistry::start_with(RegistryConfig {
        token: Some((format!("http://{}/token", token.addr), ca)),
        ..RegistryConfig::default()
    });
    let pull = timed(&mut kiln(
        &store,
        dc.path(),
        &["pull", "--timeout", "5", &format!("{}/t/img:1", reg.addr)],
    ));
    assert_stalled("token", &pull, &token.addr, 15.0);

    // Blob downloads and uploads stall; everything else goes through.
    let reg = TestRegistry::start();
    run_ok(&mut kiln(
        &store,
        dc.path(),
        &["push", "img:1", &format!("{}/s/img:1", reg.addr)],
    ));
    let blobs = Proxy::forwarding(&reg.addr, |l| l.starts_with("GET ") && l.contains("/blobs/sha256:"));
    let fresh = KilnStore::new();
    let pull = timed(&mut kiln(
        &fresh,
        dc.path(),
        &["pull", "--timeout", "5", &format!("{}/s/img:1", blobs.addr)],
    ));
    assert_stalled("blob download", &pull, &blobs.addr, 15.0);
    let uploads = Proxy::forwarding(&reg.addr, |l| {
        (l.starts_with("PUT ") || l.starts_with("PATCH ")) && l.contains("/blobs/uploads/")
    });
    let push = timed(&mut kiln(
        &store,
        dc.path(),
        &["push", "--timeout", "5", "img:1", &format!("{}/u/img:1", uploads.addr)],
    ));
    assert_stalled("blob upload", &push, &uploads.addr, 15.0);
}

/// A pull killed halfway through a 64 MiB layer is continued by the next pull, which takes
/// only the missing bytes from the registry (counted at a proxy), and the result verifies.
#[test]
fn a_killed_pull_resumes() {
    let dc = tempfile::tempdir().unwrap();
    let src = KilnStore::new();
    let size = 64 * MIB;
    let img = write_image(src.path(), Some("big:1"), &[size], &platform(), 3);
    let reg = TestRegistry::start();
    run_ok(&mut kiln(
        &src,
        dc.path(),
        &["push", "big:1", &format!("{}/r/big:1", reg.addr)],
    ));
    let proxy = Proxy::forwarding(&reg.addr, |_| false);
    let image = format!("{}/r/big:1", proxy.addr);

    let store = KilnStore::new();
    let mut child = kiln(&store, dc.path(), &["pull", &image])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while proxy.down_bytes.load(Ordering::Relaxed) < (size / 2) as u64 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the pull ended before it was killed"
        );
        assert!(start.elapsed() < Duration::from_secs(60), "the pull made no progress");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let first = proxy.down_bytes.load(Ordering::Relaxed);

    let out = kiln(&store, dc.path(), &["pull", &image]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let second = proxy.down_bytes.load(Ordering::Relaxed) - first;
    // What the first pull had on disk is not fetched again. Part of what the proxy counted
    // for the first pull was still in socket and write buffers when it was killed (under
    // load several MiB), so the bound allows half of it to be fetched again: a pull that
    // starts over fetches the whole layer and still fails.
    assert!(
        second + first / 2 < size as u64,
        "the second pull downloaded {second} bytes of a {size}-byte layer after the first took {first}"
    );
    let m: kiln_oci::Manifest =
        serde_json::from_slice(&std::fs::read(store.path().join("blobs/sha256").join(img.digest.hex())).unwrap())
            .unwrap();
    let data = std::fs::read(store.path().join("blobs/sha256").join(m.layers[0].digest.hex())).unwrap();
    assert_eq!(kiln_oci::Digest::sha256_of(&data), m.layers[0].digest);
    let left: Vec<_> = std::fs::read_dir(store.path().join("kiln/tmp"))
        .unwrap()
        .flatten()
        .collect();
    assert!(left.is_empty(), "temp files left: {left:?}");
}
