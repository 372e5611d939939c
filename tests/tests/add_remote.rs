//! `ADD` of sources outside the context (issue 16, "Remote inputs, pinned"), offline: a URL
//! served by a small HTTP server in the test, pinned by `--checksum` or by `Dockerfile.lock`;
//! a git repository made with `git init`; bzip2 and xz archives made with their CLIs.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use kiln_tests::{KilnStore, layout_image, run_ok, sha256_hex, write_context};

/// Last-Modified the server sends: Sun, 06 Nov 1994 08:49:37 GMT.
const LAST_MODIFIED: i64 = 784111777;
/// SOURCE_DATE_EPOCH of the builds: later than Last-Modified, so the clamp keeps it.
const SDE: &str = "1700000000";

/// A tiny HTTP/1.1 server: GET of a path it has answers 200 with `Last-Modified` and an
/// `ETag` (the content's sha256), or 304 when `If-None-Match` names the current tag;
/// anything else 404. Counts the requests per path, and the 304s.
struct Server {
    port: u16,
    files: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
    hits: Arc<Mutex<BTreeMap<String, usize>>>,
    not_modified: Arc<Mutex<BTreeMap<String, usize>>>,
}

impl Server {
    fn start(files: &[(&str, &[u8])]) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let files: Arc<Mutex<BTreeMap<String, Vec<u8>>>> = Arc::new(Mutex::new(
            files.iter().map(|(p, d)| (p.to_string(), d.to_vec())).collect(),
        ));
        let hits = Arc::new(Mutex::new(BTreeMap::new()));
        let not_modified = Arc::new(Mutex::new(BTreeMap::new()));
        let (f, h, nm) = (files.clone(), hits.clone(), not_modified.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut request = String::new();
                if reader.read_line(&mut request).is_err() {
                    continue;
                }
                let mut if_none_match = None;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':')
                        && k.eq_ignore_ascii_case("if-none-match")
                    {
                        if_none_match = Some(v.trim().to_string());
                    }
                }
                let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
                *h.lock().unwrap().entry(path.clone()).or_insert(0) += 1;
                let body = f.lock().unwrap().get(&path).cloned();
                let _ = match body {
                    Some(b) if if_none_match == Some(format!("\"{}\"", sha256_hex(&b))) => {
                        *nm.lock().unwrap().entry(path.clone()).or_insert(0) += 1;
                        conn.write_all(b"HTTP/1.1 304 Not Modified\r\nConnection: close\r\n\r\n")
                    }
                    Some(b) => conn
                        .write_all(
                            format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\nETag: \"{}\"\r\nConnection: close\r\n\r\n",
                                b.len(),
                                sha256_hex(&b)
                            )
                            .as_bytes(),
                        )
                        .and_then(|_| conn.write_all(&b)),
                    None => conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
                };
            }
        });
        Server {
            port,
            files,
            hits,
            not_modified,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    fn not_modified(&self, path: &str) -> usize {
        self.not_modified.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    fn set(&self, path: &str, data: &[u8]) {
        self.files.lock().unwrap().insert(path.to_string(), data.to_vec());
    }
}

static BUILDS: AtomicUsize = AtomicUsize::new(0);

/// Builds `ctx` into a fresh OCI layout; returns the output and the layout.
fn build(kiln: &KilnStore, ctx: &Path, extra: &[&str]) -> (Output, std::path::PathBuf) {
    let layout = ctx.join(format!("out-{}", BUILDS.fetch_add(1, Ordering::SeqCst)));
    let out = kiln
        .cmd(["build", "--progress", "plain", "-t", "add-remote:test"])
        .args(extra)
        .env("SOURCE_DATE_EPOCH", SDE)
        .arg("--output")
        .arg(format!("type=oci,dest={},tar=false", layout.display()))
        .arg(ctx)
        .output()
        .unwrap();
    (out, layout)
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "kiln failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One entry of an image's layers: mode, mtime, content (files) or link target.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    mode: u32,
    mtime: u64,
    data: Vec<u8>,
    dir: bool,
}

/// Every entry of every layer of the layout's image, later layers over earlier ones.
fn entries(layout: &Path) -> BTreeMap<String, Entry> {
    let (manifest, _) = layout_image(layout, None).unwrap();
    let mut out = BTreeMap::new();
    for l in manifest["layers"].as_array().unwrap() {
        let d = l["digest"].as_str().unwrap();
        let blob = std::fs::File::open(layout.join("blobs/sha256").join(&d[7..])).unwrap();
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(blob));
        for e in tar.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().trim_end_matches('/').to_string();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            let h = e.header();
            out.insert(
                path,
                Entry {
                    mode: h.mode().unwrap() & 0o7777,
                    mtime: h.mtime().unwrap(),
                    data,
                    dir: h.entry_type().is_dir(),
                },
            );
        }
    }
    out
}

#[test]
fn add_url_checksum_pins_and_a_bad_one_is_refused() {
    let hello = b"hello from the server\n";
    let archive = tar_gz_of("inner.txt", b"inside");
    let server = Server::start(&[("/files/hello.txt", hello), ("/files/a.tar.gz", &archive)]);
    let kiln = KilnStore::new();
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    let good = sha256_hex(hello);
    write_context(
        &ctx,
        &format!(
            "FROM scratch\nADD --checksum=sha256:{good} {} /dst/\nADD {} /arch/\nADD --chmod=644 --checksum=sha256:{good} {} /renamed.txt\n",
            server.url("/files/hello.txt"),
            server.url("/files/a.tar.gz"),
            server.url("/files/hello.txt"),
        ),
    );
    let (out, layout) = build(&kiln, &ctx, &[]);
    ok(&out);
    let e = entries(&layout);
    let f = &e["dst/hello.txt"];
    assert_eq!(f.data, hello);
    assert_eq!(f.mode, 0o600, "BuildKit writes an ADD URL file 0600");
    assert_eq!(f.mtime, LAST_MODIFIED as u64, "mtime from Last-Modified");
    assert_eq!(e["renamed.txt"].mode, 0o644);
    // A remote archive is copied as it is, never extracted.
    assert_eq!(e["arch/a.tar.gz"].data, archive);
    assert!(!e.contains_key("arch/inner.txt"));

    // The checksum is the cache key: a second build fetches nothing pinned again.
    let before = server.hits("/files/hello.txt");
    let (out, layout2) = build(&kiln, &ctx, &[]);
    ok(&out);
    assert_eq!(
        server.hits("/files/hello.txt"),
        before,
        "a pinned URL is not fetched again"
    );
    assert_eq!(
        layout_image(&layout, None).unwrap().0,
        layout_image(&layout2, None).unwrap().0,
        "same inputs, same image"
    );

    // A checksum the content does not match is refused, naming the URL and both digests.
    let wrong = sha256_hex(b"something else");
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM scratch\nADD --checksum=sha256:{wrong} {} /dst/\n",
            server.url("/files/hello.txt")
        ),
    )
    .unwrap();
    let (out, _) = build(&kiln, &ctx, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&server.url("/files/hello.txt"))
            && err.contains(&format!("sha256:{wrong}"))
            && err.contains(&format!("sha256:{good}"))
            && err.contains("Dockerfile:2"),
        "{err}"
    );
    // And a URL that is not there is an error naming the status.
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM scratch\nADD {} /dst/\n", server.url("/missing")),
    )
    .unwrap();
    let (out, _) = build(&kiln, &ctx, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("HTTP 404"), "{err}");
}

/// A URL nothing pins is asked again on every build, as BuildKit does, but with the ETag
/// of the copy kiln has: "not modified" reuses it, a new tag brings the new content.
#[test]
fn unpinned_url_is_downloaded_again_only_when_its_etag_changed() {
    let server = Server::start(&[("/files/u.txt", b"version one\n")]);
    let kiln = KilnStore::new();
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    write_context(
        &ctx,
        &format!("FROM scratch\nADD {} /u.txt\n", server.url("/files/u.txt")),
    );
    let content = |layout: &Path| entries(layout)["u.txt"].data.clone();

    let (out, first) = build(&kiln, &ctx, &[]);
    ok(&out);
    assert_eq!(content(&first), b"version one\n");
    assert_eq!(
        (server.hits("/files/u.txt"), server.not_modified("/files/u.txt")),
        (1, 0)
    );

    let (out, second) = build(&kiln, &ctx, &[]);
    ok(&out);
    assert_eq!(
        (server.hits("/files/u.txt"), server.not_modified("/files/u.txt")),
        (2, 1)
    );
    assert_eq!(
        layout_image(&first, None).unwrap().0,
        layout_image(&second, None).unwrap().0,
        "not modified: the same image"
    );

    server.set("/files/u.txt", b"version two\n");
    let (out, third) = build(&kiln, &ctx, &[]);
    ok(&out);
    assert_eq!(content(&third), b"version two\n");
    assert_eq!(
        (server.hits("/files/u.txt"), server.not_modified("/files/u.txt")),
        (3, 1)
    );
    let (out, fourth) = build(&kiln, &ctx, &[]);
    ok(&out);
    assert_eq!(content(&fourth), b"version two\n");
    assert_eq!(server.not_modified("/files/u.txt"), 2);
}

#[test]
fn locked_build_replays_the_digest_kiln_lock_recorded() {
    let server = Server::start(&[("/a.txt", b"version 1\n"), ("/b.txt", b"bee\n")]);
    let kiln = KilnStore::new();
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    write_context(&ctx, &format!("FROM scratch\nADD {} /a.txt\n", server.url("/a.txt")));
    // No lock entry and no --checksum: --locked cannot know the content.
    run_ok(kiln.cmd(["lock"]).arg(ctx.join("Dockerfile")));
    let lock = std::fs::read_to_string(ctx.join("Dockerfile.lock")).unwrap();
    assert!(
        lock.contains("[[url]]") && lock.contains(&sha256_hex(b"version 1\n")),
        "{lock}"
    );
    let (out, layout) = build(&kiln, &ctx, &["--locked"]);
    ok(&out);
    assert_eq!(entries(&layout)["a.txt"].data, b"version 1\n");

    // The server changes the file: --locked still builds what the lock pinned (from the
    // store, without asking the server).
    server.set("/a.txt", b"version 2\n");
    let hits = server.hits("/a.txt");
    let (out, layout) = build(&kiln, &ctx, &["--locked"]);
    ok(&out);
    assert_eq!(entries(&layout)["a.txt"].data, b"version 1\n");
    assert_eq!(server.hits("/a.txt"), hits);

    // A URL the lock does not pin, without --checksum, is an error with a hint.
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM scratch\nADD {} /a.txt\nADD {} /b.txt\n",
            server.url("/a.txt"),
            server.url("/b.txt")
        ),
    )
    .unwrap();
    let (out, _) = build(&kiln, &ctx, &["--locked"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&server.url("/b.txt")) && err.contains("--checksum") && err.contains("kiln lock"),
        "{err}"
    );
    assert_eq!(server.hits("/b.txt"), 0, "nothing unpinned is fetched under --locked");
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = run_ok(
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.org")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.org"),
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn add_git_repository_at_a_ref() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(repo.join("sub")).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("a.txt"), "one\n").unwrap();
    std::fs::write(repo.join("sub/run.sh"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(
        repo.join("sub/run.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "one"]);
    git(&repo, &["tag", "v1"]);
    let v1 = git(&repo, &["rev-parse", "HEAD"]);
    std::fs::write(repo.join("a.txt"), "two\n").unwrap();
    git(&repo, &["commit", "-q", "-am", "two"]);
    let url = format!("file://{}", repo.display());

    let kiln = KilnStore::new();
    let ctx = tmp.path().join("ctx");
    write_context(
        &ctx,
        &format!("FROM scratch\nADD {url}#v1 /v1/\nADD {url}#main:sub /sub/\nADD --keep-git-dir {url}#{v1} /keep/\n"),
    );
    let (out, layout) = build(&kiln, &ctx, &[]);
    ok(&out);
    let e = entries(&layout);
    assert_eq!(e["v1/a.txt"].data, b"one\n");
    assert_eq!(e["v1/a.txt"].mtime, SDE.parse::<u64>().unwrap(), "SOURCE_DATE_EPOCH");
    assert_eq!(e["v1/sub/run.sh"].mode, 0o755);
    assert!(
        !e.keys().any(|k| k.starts_with("v1/.git")),
        "no .git without --keep-git-dir"
    );
    assert_eq!(e["sub/run.sh"].data, b"#!/bin/sh\n", "#ref:dir takes a subdirectory");
    assert!(!e.contains_key("sub/a.txt"));
    assert_eq!(e["keep/a.txt"].data, b"one\n");
    assert!(e.get("keep/.git").is_some_and(|g| g.dir), "--keep-git-dir keeps .git");

    // The lock records each ref's commit; --locked replays it after the branch moved.
    let ctx2 = tmp.path().join("ctx2");
    write_context(&ctx2, &format!("FROM scratch\nADD {url}#main /m/\n"));
    run_ok(kiln.cmd(["lock"]).arg(ctx2.join("Dockerfile")));
    let lock = std::fs::read_to_string(ctx2.join("Dockerfile.lock")).unwrap();
    let main = git(&repo, &["rev-parse", "main"]);
    assert!(lock.contains("[[git]]") && lock.contains(&main), "{lock}");
    std::fs::write(repo.join("a.txt"), "three\n").unwrap();
    git(&repo, &["commit", "-q", "-am", "three"]);
    let (out, layout) = build(&kiln, &ctx2, &["--locked"]);
    ok(&out);
    assert_eq!(entries(&layout)["m/a.txt"].data, b"two\n");
    let (out, layout) = build(&kiln, &ctx2, &[]);
    ok(&out);
    assert_eq!(
        entries(&layout)["m/a.txt"].data,
        b"three\n",
        "unlocked follows the branch"
    );

    // A ref that does not exist is an error naming it.
    std::fs::write(ctx2.join("Dockerfile"), format!("FROM scratch\nADD {url}#nope /m/\n")).unwrap();
    let (out, _) = build(&kiln, &ctx2, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("\"nope\""), "{err}");
}

#[test]
fn add_extracts_bzip2_and_xz_archives() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("d/f.txt"), "packed\n").unwrap();
    std::fs::create_dir_all(&ctx).unwrap();
    run_ok(
        Command::new("tar")
            .arg("-cf")
            .arg(ctx.join("a.tar"))
            .arg("-C")
            .arg(&src)
            .arg("d"),
    );
    std::fs::copy(ctx.join("a.tar"), ctx.join("b.tar")).unwrap();
    run_ok(Command::new("bzip2").arg(ctx.join("a.tar")));
    run_ok(Command::new("xz").arg(ctx.join("b.tar")));
    // A bzip2 file that is not a tar is copied as it is.
    std::fs::write(src.join("plain.txt"), "not a tar\n").unwrap();
    run_ok(Command::new("bzip2").arg("-k").arg(src.join("plain.txt")));
    std::fs::copy(src.join("plain.txt.bz2"), ctx.join("plain.txt.bz2")).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nADD a.tar.bz2 /bz/\nADD b.tar.xz /xz/\nADD plain.txt.bz2 /p/\n",
    )
    .unwrap();
    let kiln = KilnStore::new();
    let (out, layout) = build(&kiln, &ctx, &[]);
    ok(&out);
    let e = entries(&layout);
    assert_eq!(e["bz/d/f.txt"].data, b"packed\n");
    assert_eq!(e["xz/d/f.txt"].data, b"packed\n");
    assert!(e.contains_key("p/plain.txt.bz2"));
}

/// A gzipped tar holding one file.
fn tar_gz_of(name: &str, data: &[u8]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_cksum();
    tar.append_data(&mut h, name, data).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar.into_inner().unwrap()).unwrap();
    gz.finish().unwrap()
}
