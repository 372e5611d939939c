//! Size limits on what comes from outside (issue 12.8): a manifest, a token answer and a
//! layer that would each expand to a gigabyte are refused with a clear error, and kiln's
//! peak memory (the child's `ru_maxrss`) stays under 256 MiB while it refuses them.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use kiln_oci::store::Descriptor;
use kiln_oci::{Digest, Manifest, Store, canonical_json, media};
use kiln_tests::{KilnStore, run_measured};

const GIB: u64 = 1 << 30;
const MEMORY_BOUND_KIB: u64 = 256 * 1024;

/// What the fake registry answers for a path: a status line with headers, then `body`, then
/// `len` copies of `fill` (streamed, never held in memory).
struct Answer {
    head: String,
    body: Vec<u8>,
    len: u64,
    fill: u8,
}

/// A minimal HTTP server: one thread per connection, `route` decides every answer. TLS
/// probes are dropped (kiln tries HTTPS first).
fn serve(route: fn(&str, &str) -> Answer) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let me = addr.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(c) = conn else { continue };
            let me = me.clone();
            std::thread::spawn(move || answer(c, &me, route));
        }
    });
    addr
}

fn answer(mut c: TcpStream, me: &str, route: fn(&str, &str) -> Answer) {
    let mut first = [0u8; 1];
    if c.peek(&mut first).unwrap_or(0) == 0 || first[0] == 0x16 {
        return;
    }
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && c.read(&mut b).unwrap_or(0) == 1 {
        head.push(b[0]);
    }
    let line = String::from_utf8_lossy(&head)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    let mut words = line.split(' ');
    let method = words.next().unwrap_or_default().to_string();
    let path = words.next().unwrap_or_default().to_string();
    let a = route(&path, me);
    if c.write_all(a.head.as_bytes()).is_err() || method == "HEAD" || c.write_all(&a.body).is_err() {
        return;
    }
    let chunk = vec![a.fill; 64 << 10];
    let mut left = a.len;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        if c.write_all(&chunk[..n]).is_err() {
            return;
        }
        left -= n as u64;
    }
}

/// 200 with `head` (extra header lines) and `len` bytes of `fill`.
fn ok(head: &str, len: u64, fill: u8) -> Answer {
    Answer {
        head: format!("HTTP/1.1 200 OK\r\n{head}Connection: close\r\n\r\n"),
        body: Vec::new(),
        len,
        fill,
    }
}

/// 200 with exactly `body`.
fn exact(content_type: &str, body: Vec<u8>) -> Answer {
    Answer {
        head: format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        ),
        body,
        len: 0,
        fill: 0,
    }
}

fn not_found() -> Answer {
    Answer {
        head: "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
        body: Vec::new(),
        len: 0,
        fill: 0,
    }
}

/// `kiln pull`, measured: exit 2 with `want` in the error, under the memory bound.
fn assert_refused(kiln: &KilnStore, image: &str, want: &str) {
    let (out, rss) = run_measured(&mut kiln.cmd(["pull", image]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{image}: {err}");
    assert!(err.contains(want), "{image}: {err}");
    assert!(rss < MEMORY_BOUND_KIB, "{image}: kiln peaked at {rss} KiB refusing it");
}

/// Manifests and indexes: a gigabyte streamed without a length, and one announced by
/// Content-Length.
#[test]
fn a_manifest_bomb_is_refused() {
    let addr = serve(|path, _| match path {
        "/v2/" => ok("Content-Length: 2\r\n", 2, b' '),
        p if p.starts_with("/v2/stream/") => ok(
            "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n",
            GIB,
            b' ',
        ),
        p if p.starts_with("/v2/index/") => ok("Content-Type: application/vnd.oci.image.index.v1+json\r\n", GIB, b' '),
        p if p.starts_with("/v2/announced/") => ok(
            &format!("Content-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: {GIB}\r\n"),
            GIB,
            b' ',
        ),
        _ => not_found(),
    });
    let kiln = KilnStore::new();
    for repo in ["stream", "index", "announced"] {
        assert_refused(
            &kiln,
            &format!("{addr}/{repo}/img:1"),
            "more than the 4194304 kiln accepts",
        );
    }
}

/// A token server whose answer is a gigabyte long.
#[test]
fn a_token_bomb_is_refused() {
    let addr = serve(|path, me| match path {
        p if p.starts_with("/token") => ok("Content-Type: application/json\r\n", GIB, b' '),
        _ => Answer {
            head: format!(
                "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"http://{me}/token\",service=\"bomb\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            ),
            body: Vec::new(),
            len: 0,
            fill: 0,
        },
    });
    let kiln = KilnStore::new();
    assert_refused(&kiln, &format!("{addr}/r/img:1"), "more than the 1048576 kiln accepts");
}

/// The canonical bytes of an OCI image manifest.
fn manifest(config: Descriptor, layers: Vec<Descriptor>) -> Vec<u8> {
    canonical_json(&Manifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.into()),
        artifact_type: None,
        config,
        layers,
        subject: None,
        annotations: Default::default(),
    })
}

/// Stores a manifest of `config` and `layers` (already in the store) and tags it `name`.
fn tag_image(store: &Store, name: &str, config: Descriptor, layers: Vec<Descriptor>) {
    let bytes = manifest(config, layers);
    let md = store.put_blob(&bytes).unwrap();
    let desc = Descriptor::new(media::OCI_MANIFEST, md, bytes.len() as u64);
    store.tag(name, &desc).unwrap();
}

/// A build context whose Dockerfile starts `FROM image`.
fn context_from(image: &str) -> tempfile::TempDir {
    let ctx = tempfile::tempdir().unwrap();
    let dockerfile = format!("FROM {image}\nCOPY Dockerfile /x\n");
    std::fs::write(ctx.path().join("Dockerfile"), dockerfile).unwrap();
    ctx
}

/// A gzip stream of `n` zero bytes, as concatenated members of 16 MiB each (cheap to make,
/// and as hard to expand as one member).
fn gz_zeros(n: u64) -> Vec<u8> {
    let member = |data: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    };
    let block = member(&vec![0u8; 16 << 20]);
    let mut out = Vec::new();
    for _ in 0..n / (16 << 20) {
        out.extend_from_slice(&block);
    }
    out
}

/// A layer whose gzip stream is ~1 MiB but holds a 1 GiB file: with KILN_MAX_LAYER_SIZE at
/// 64 MiB, a build on it stops at the limit and says why.
#[test]
fn a_layer_bomb_is_refused() {
    let kiln = KilnStore::new();
    let store = Store::open(kiln.path()).unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_path("zeros").unwrap();
    h.set_size(GIB);
    h.set_mode(0o644);
    h.set_cksum();
    let mut head = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    head.write_all(h.as_bytes()).unwrap();
    let mut layer = head.finish().unwrap();
    layer.extend_from_slice(&gz_zeros(GIB));
    let ld = store.put_blob(&layer).unwrap();
    let config = canonical_json(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", "0".repeat(64))]},
    }));
    let cd = store.put_blob(&config).unwrap();
    let config = Descriptor::new(media::OCI_CONFIG, cd, config.len() as u64);
    let layer = Descriptor::new(media::OCI_LAYER_GZIP, ld.clone(), layer.len() as u64);
    tag_image(&store, "localhost/bomb:1", config, vec![layer]);
    let ctx = context_from("localhost/bomb:1");
    let mut cmd = kiln.cmd([
        "build",
        "--progress",
        "plain",
        "--platform",
        "linux/amd64",
        "-t",
        "on-bomb:1",
    ]);
    cmd.env("KILN_MAX_LAYER_SIZE", "64M").arg(ctx.path());
    let (out, rss) = run_measured(&mut cmd);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&ld.to_string())
            && err.contains("more than 67108864 bytes")
            && err.contains("KILN_MAX_LAYER_SIZE"),
        "{err}"
    );
    assert!(rss < MEMORY_BOUND_KIB, "kiln peaked at {rss} KiB refusing the layer");
    // Nothing of it was published as a snapshot.
    let snaps = kiln.path().join("kiln/snapshots");
    let published = std::fs::read_dir(&snaps)
        .map(|d| d.flatten().filter(|e| e.file_name().len() == 64).count())
        .unwrap_or(0);
    assert_eq!(published, 0);
}

/// The image the blob-bomb registry serves: (manifest, config), whose one layer is
/// declared as 1 KiB.
fn small_image() -> (Vec<u8>, Vec<u8>) {
    let config = canonical_json(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [Digest::sha256_of(b"layer")]},
    }));
    let config_desc = Descriptor::new(media::OCI_CONFIG, Digest::sha256_of(&config), config.len() as u64);
    let layer = Descriptor::new(media::OCI_LAYER_GZIP, Digest::sha256_of(b"layer"), 1024);
    (manifest(config_desc, vec![layer]), config)
}

/// A registry whose layer blob runs on for a gigabyte past the 1 KiB its manifest declares:
/// the pull stops at the declared size, says so, and keeps nothing of it.
#[test]
fn a_blob_longer_than_declared_is_refused() {
    let addr = serve(|path, _| {
        let (manifest, config) = small_image();
        match path {
            "/v2/" => ok("Content-Length: 2\r\n", 2, b' '),
            "/v2/blob/img/manifests/1" => exact(media::OCI_MANIFEST, manifest),
            p if p == format!("/v2/blob/img/blobs/{}", Digest::sha256_of(&config)) => {
                exact("application/octet-stream", config)
            }
            p if p.starts_with("/v2/blob/img/blobs/") => ok("Content-Type: application/octet-stream\r\n", GIB, 0),
            _ => not_found(),
        }
    });
    let kiln = KilnStore::new();
    assert_refused(
        &kiln,
        &format!("{addr}/blob/img:1"),
        "more than the 1024 bytes the manifest declares",
    );
    let layer = kiln.path().join("blobs/sha256").join(Digest::sha256_of(b"layer").hex());
    assert!(!layer.exists());
    let kept = kiln_oci::store::disk_usage(&kiln.path().join("kiln/tmp"));
    assert!(kept < 1 << 20, "{kept} bytes of the refused blob kept in kiln/tmp");
}

/// An image in the store whose config is a gigabyte (as a pull or load of a hostile image
/// leaves it): a build on it and `kiln inspect` refuse it by size before reading it.
#[test]
fn a_config_bomb_is_refused() {
    let kiln = KilnStore::new();
    let store = Store::open(kiln.path()).unwrap();
    let config = Digest::sha256_of(b"a config of a gigabyte");
    // Sparse: the size is what is checked, before any byte is read.
    let f = std::fs::File::create(store.blob_path(&config)).unwrap();
    f.set_len(GIB).unwrap();
    let desc = Descriptor::new(media::OCI_CONFIG, config.clone(), GIB);
    tag_image(&store, "localhost/cfgbomb:1", desc, vec![]);
    let ctx = context_from("localhost/cfgbomb:1");
    let mut build = kiln.cmd(["build", "--progress", "plain", "-t", "on-cfgbomb:1"]);
    build.arg(ctx.path());
    let archive = ctx.path().join("docker.tar");
    let mut save = kiln.cmd(["save", "--format", "docker-archive", "-o"]);
    save.arg(&archive).arg("localhost/cfgbomb:1");
    for (what, cmd) in [
        ("build", &mut build),
        ("inspect", &mut kiln.cmd(["inspect", "localhost/cfgbomb:1"])),
        ("save", &mut save),
    ] {
        let (out, rss) = run_measured(cmd);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {err}");
        assert!(
            err.contains(&config.to_string()) && err.contains("more than the 16777216"),
            "{what}: {err}"
        );
        assert!(rss < MEMORY_BOUND_KIB, "{what}: kiln peaked at {rss} KiB refusing it");
    }
    // Naming the blob by digest does not make kiln read it to see whether it is a manifest.
    let (out, rss) = run_measured(&mut kiln.cmd(["inspect", &config.to_string()]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        rss < MEMORY_BOUND_KIB,
        "inspect by digest: kiln peaked at {rss} KiB: {err}"
    );
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("not found"), "{err}");
}
