//! Failures said plainly (issue 18.7): an archive with no images, a token realm that is not
//! a URL, and a RUN step on a full disk each end with one clear error line and the right
//! exit code, instead of exit 0, six pointless retries, or the runtime's `%!w(<nil>)`.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use kiln_tests::{KilnStore, build_busybox_base, run_ok};

fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut t = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        t.append_data(&mut h, name, *data).unwrap();
    }
    t.into_inner().unwrap()
}

/// `kiln load` of an OCI archive and of a docker archive that hold no image: exit 2 with
/// a message saying so, and nothing is tagged.
#[test]
fn an_archive_with_no_images_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    let kiln = KilnStore::new();
    let oci = d.path().join("empty-oci.tar");
    std::fs::write(
        &oci,
        tar_of(&[
            ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
            ("index.json", br#"{"schemaVersion":2,"manifests":[]}"#),
        ]),
    )
    .unwrap();
    let docker = d.path().join("empty-docker.tar");
    std::fs::write(&docker, tar_of(&[("manifest.json", b"[]")])).unwrap();
    for archive in [&oci, &docker] {
        let out = kiln.cmd(["load", "-i"]).arg(archive).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}: {err}", archive.display());
        assert!(
            err.contains("holds no images") && err.contains(&archive.display().to_string()),
            "{err}"
        );
    }
    assert_eq!(kiln.index()["manifests"].as_array().map_or(0, Vec::len), 0);
}

/// A registry whose auth challenge names a token realm that is not a URL: the pull fails
/// at once with exit 2 and says what is wrong, instead of retrying the token request.
#[test]
fn a_realm_that_is_not_a_url_is_not_retried() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let requests = Arc::new(AtomicU64::new(0));
    {
        let requests = requests.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut c) = conn else { continue };
                let mut first = [0u8; 1];
                if c.peek(&mut first).unwrap_or(0) == 0 || first[0] == 0x16 {
                    continue; // kiln's HTTPS probe
                }
                let mut buf = [0u8; 4096];
                let _ = c.read(&mut buf);
                requests.fetch_add(1, Ordering::Relaxed);
                let _ = c.write_all(
                    b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"not a url\",service=\"x\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
    }
    let kiln = KilnStore::new();
    let out = kiln.cmd(["pull", &format!("{addr}/r/img:1")]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("realm \"not a url\"") && !err.contains("attempts"),
        "{err}"
    );
    // The ping and the manifest request; no token request could even be made.
    assert!(
        requests.load(Ordering::Relaxed) <= 2,
        "{} requests",
        requests.load(Ordering::Relaxed)
    );
}

/// A tmpfs, unmounted on drop.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn new(size: &str) -> Tmpfs {
        let d = tempfile::tempdir().unwrap();
        run_ok(
            std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(d.path()),
        );
        Tmpfs(d)
    }
    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.0.path())
            .status();
    }
}

/// A RUN step with 0 bytes free where kiln keeps its state: the error says the disk is
/// full (exit 3), not the runtime's `unable to store init state: %!w(<nil>)`.
#[test]
fn run_on_a_full_disk_says_so() {
    kiln_tests::require_tool("runc");
    let fs = Tmpfs::new("24m");
    let scratch = tempfile::tempdir().unwrap();
    let mut kiln = KilnStore::new_in(fs.path());
    kiln.umask = None;
    build_busybox_base(&kiln, scratch.path());
    // The base's snapshot exists (a COPY on it unpacks it), so the RUN is what finds the
    // disk full.
    let warm = scratch.path().join("warm");
    std::fs::create_dir_all(&warm).unwrap();
    std::fs::write(
        warm.join("Dockerfile"),
        "FROM localhost/busybox:test\nCOPY Dockerfile /warm\n",
    )
    .unwrap();
    run_ok(
        kiln.cmd(["build", "--progress", "plain", "-t", "localhost/warm:1"])
            .arg(&warm),
    );
    // Fill the filesystem to the last byte.
    let mut fill = std::fs::File::create(fs.path().join("fill")).unwrap();
    let block = vec![0u8; 1 << 20];
    while fill.write_all(&block).is_ok() {}
    let mut small = [0u8; 512].to_vec();
    while !small.is_empty() {
        if fill.write_all(&small).is_err() {
            small.truncate(small.len() / 2);
        }
    }
    drop(fill);
    let ctx = scratch.path().join("app");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM localhost/busybox:test\nRUN echo hi > /x\n",
    )
    .unwrap();
    let out = kiln
        .cmd(["build", "--progress", "plain", "-t", "app:1"])
        .arg(&ctx)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    let line = err.lines().find(|l| l.starts_with("error:")).unwrap_or_default();
    assert!(
        line.contains("Dockerfile:2") && line.contains("is full") && !err.contains("%!w"),
        "{err}"
    );
    // Unpacking a layer onto the full disk says so too.
    let other = scratch.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(
        other.join("Dockerfile"),
        "FROM localhost/warm:1\nCOPY Dockerfile /again\n",
    )
    .unwrap();
    let out = kiln
        .cmd(["build", "--progress", "plain", "-t", "other:1"])
        .arg(&other)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("is full") && err.contains("layer sha256:"), "{err}");
    drop(kiln);
}
