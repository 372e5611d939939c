//! The store and its files from the outside: reproducible digests, interop with skopeo and
//! umoci, archives written by skopeo, hostile layers, and a load killed half-way.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use kiln_oci::image::{ImageConfig, write_image};
use kiln_oci::store::Descriptor;
use kiln_oci::{Digest, Store, media};
use kiln_tests::{KilnStore, require_tool, run_ok};

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// A context exercising several features (multi-stage, chown, chmod, heredoc, wildcards).
fn write_context(dir: &Path) {
    fs::create_dir_all(dir.join("src/nested")).unwrap();
    fs::write(dir.join("src/a.txt"), "alpha\n").unwrap();
    fs::write(dir.join("src/b.txt"), "beta\n").unwrap();
    fs::write(dir.join("src/nested/c.bin"), vec![7u8; 70_000]).unwrap();
    std::os::unix::fs::symlink("a.txt", dir.join("src/link")).unwrap();
    fs::write(
        dir.join("Dockerfile"),
        "FROM scratch AS one\nCOPY src/*.txt /one/\nFROM scratch AS two\nCOPY --chmod=0640 src/nested /two/\n\
         FROM scratch\nARG V=1\nENV V=$V\nCOPY --from=one /one /app/one\nCOPY --from=two /two /app/two\n\
         COPY --chown=10:20 src /app/src\nCOPY <<EOF /app/note\nversion $V\nEOF\nWORKDIR /app\nCMD [\"/app/run\"]\n",
    )
    .unwrap();
}

fn set_mtimes(dir: &Path, when: &str) {
    run_ok(
        Command::new("find")
            .arg(dir)
            .args(["-exec", "touch", "-h", "-d", when, "{}", "+"]),
    );
}

#[test]
fn same_inputs_same_digest_whatever_the_environment() {
    let base = tempfile::tempdir().unwrap();
    let (c1, c2) = (base.path().join("first/ctx"), base.path().join("elsewhere/deeper/ctx2"));
    write_context(&c1);
    fs::create_dir_all(&c2).unwrap();
    run_ok(Command::new("cp").arg("-a").arg(format!("{}/.", c1.display())).arg(&c2));
    set_mtimes(&c1, "2001-02-03 04:05:06");
    set_mtimes(&c2, "2024-12-31 23:59:59");
    let (s1, s2) = (KilnStore::new(), KilnStore::new());
    let first = run_ok(
        s1.cmd(["build", "-q"])
            .arg(&c1)
            .env("HOME", "/tmp")
            .env("USER", "alice"),
    );
    // Second build: other store, directory, mtimes, umask, hostname, user, and a clock
    // three days ahead.
    let faketime = require_tool("faketime");
    let unshare = require_tool("unshare");
    let kiln = kiln_tests::kiln_bin();
    let script = format!(
        "umask 077; hostname other-host-xyz; exec {} -f +3d {} build -q {}",
        faketime.display(),
        kiln.display(),
        c2.display()
    );
    let second = run_ok(
        Command::new(unshare)
            .args(["--uts", "sh", "-c", &script])
            .env("KILN_HOME", s2.path())
            .env_remove("SOURCE_DATE_EPOCH")
            .env("HOME", "/root")
            .env("USER", "bob"),
    );
    assert_eq!(
        stdout(&first),
        stdout(&second),
        "digests differ:\n{}\n{}",
        stderr(&first),
        stderr(&second)
    );
    assert!(stdout(&first).starts_with("sha256:"));
    // And a change that matters does change the digest.
    fs::write(c2.join("src/a.txt"), "ALPHA\n").unwrap();
    let third = run_ok(s2.cmd(["build", "-q"]).arg(&c2));
    assert_ne!(stdout(&first), stdout(&third));
}

#[test]
fn git_commit_time_is_the_default_source_date_epoch() {
    let d = tempfile::tempdir().unwrap();
    let ctx = d.path().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("f"), "x").unwrap();
    fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY f /f\n").unwrap();
    let git = |args: &[&str]| {
        run_ok(
            Command::new("git")
                .arg("-C")
                .arg(&ctx)
                .args(args)
                .env("GIT_AUTHOR_DATE", "@1700000000 +0000")
                .env("GIT_COMMITTER_DATE", "@1700000000 +0000")
                .env("GIT_AUTHOR_NAME", "t")
                .env("GIT_AUTHOR_EMAIL", "t@example.com")
                .env("GIT_COMMITTER_NAME", "t")
                .env("GIT_COMMITTER_EMAIL", "t@example.com"),
        )
    };
    git(&["init", "-q"]);
    git(&["remote", "add", "origin", "https://user:pw@example.com/team/app.git"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "init"]);
    let store = KilnStore::new();
    run_ok(store.cmd(["build", "-q", "-t", "gitapp:1"]).arg(&ctx));
    let inspect: serde_json::Value =
        serde_json::from_slice(&run_ok(&mut store.cmd(["inspect", "gitapp:1"])).stdout).unwrap();
    let labels = &inspect["config"]["config"]["Labels"];
    assert_eq!(inspect["config"]["created"], "2023-11-14T22:13:20Z");
    assert_eq!(labels["org.opencontainers.image.created"], "2023-11-14T22:13:20Z");
    assert_eq!(
        labels["org.opencontainers.image.source"], "https://example.com/team/app.git",
        "credentials must be stripped"
    );
    assert_eq!(
        labels["org.opencontainers.image.revision"].as_str().map(str::len),
        Some(40)
    );
}

#[test]
fn skopeo_and_umoci_read_the_store_and_outputs() {
    let skopeo = require_tool("skopeo");
    require_tool("umoci");
    let d = tempfile::tempdir().unwrap();
    let ctx = d.path().join("ctx");
    write_context(&ctx);
    let store = KilnStore::new();
    let layout = d.path().join("layout");
    let archive = d.path().join("out.tar");
    let docker = d.path().join("docker.tar");
    let out = run_ok(store.cmd(["build", "-q", "-t", "interop:1"]).arg(&ctx).args([
        "--output",
        &format!("type=oci,dest={},tar=false", layout.display()),
        "--output",
        &format!("type=oci,dest={}", archive.display()),
        "--output",
        &format!("type=docker,dest={}", docker.display()),
    ]));
    let digest = stdout(&out);
    let inspect = |r: String| -> serde_json::Value {
        serde_json::from_slice(&run_ok(Command::new(&skopeo).args(["inspect", &r])).stdout).unwrap()
    };
    assert_eq!(
        inspect(format!("oci:{}:interop:1", store.path().display()))["Digest"],
        digest.as_str()
    );
    assert_eq!(
        inspect(format!("oci:{}:interop:1", layout.display()))["Digest"],
        digest.as_str()
    );
    assert_eq!(
        inspect(format!("oci-archive:{}:interop:1", archive.display()))["Digest"],
        digest.as_str()
    );
    let dock = inspect(format!("docker-archive:{}", docker.display()));
    assert_eq!(dock["Env"][1], "V=1");
    // umoci unpacks what kiln wrote: the store itself and the layout output.
    for (dir, tag) in [(store.path().to_path_buf(), "interop:1"), (layout.clone(), "interop:1")] {
        let bundle = d
            .path()
            .join(format!("bundle-{}", dir.file_name().unwrap().to_string_lossy()));
        run_ok(
            Command::new("umoci")
                .args(["unpack", "--image"])
                .arg(format!("{}:{tag}", dir.display()))
                .arg(&bundle),
        );
        let rootfs = bundle.join("rootfs");
        assert_eq!(fs::read_to_string(rootfs.join("app/note")).unwrap(), "version 1\n");
        assert_eq!(fs::read_to_string(rootfs.join("app/one/a.txt")).unwrap(), "alpha\n");
        let meta = fs::symlink_metadata(rootfs.join("app/src/link")).unwrap();
        assert!(meta.file_type().is_symlink());
        use std::os::unix::fs::MetadataExt;
        let c = fs::metadata(rootfs.join("app/two/c.bin")).unwrap();
        assert_eq!(c.mode() & 0o7777, 0o640);
        assert_eq!((meta.uid(), meta.gid()), (10, 20));
    }
}

#[test]
fn loads_archives_written_by_skopeo() {
    let skopeo = require_tool("skopeo");
    let d = tempfile::tempdir().unwrap();
    let ctx = d.path().join("ctx");
    write_context(&ctx);
    let src = KilnStore::new();
    run_ok(src.cmd(["build", "-q", "-t", "peer:1"]).arg(&ctx));
    let src_ref = format!("oci:{}:peer:1", src.path().display());
    let oci_archive = d.path().join("skopeo-oci.tar");
    let docker_archive = d.path().join("skopeo-docker.tar");
    run_ok(Command::new(&skopeo).args([
        "copy",
        "-q",
        &src_ref,
        &format!("oci-archive:{}:peer:1", oci_archive.display()),
    ]));
    run_ok(Command::new(&skopeo).args([
        "copy",
        "-q",
        &src_ref,
        &format!("docker-archive:{}:localhost/peer:2", docker_archive.display()),
    ]));
    let src_inspect: serde_json::Value =
        serde_json::from_slice(&run_ok(&mut src.cmd(["inspect", "peer:1"])).stdout).unwrap();
    for archive in [&oci_archive, &docker_archive] {
        let dst = KilnStore::new();
        let out = run_ok(dst.cmd(["load", "-i"]).arg(archive));
        let text = stdout(&out);
        assert!(text.starts_with("Loaded image: "), "{text}");
        let images: serde_json::Value =
            serde_json::from_slice(&run_ok(&mut dst.cmd(["images", "--format", "json"])).stdout).unwrap();
        let row = &images[0];
        let name = format!(
            "{}:{}",
            row["repository"].as_str().unwrap(),
            row["tag"].as_str().unwrap()
        );
        let got: serde_json::Value = serde_json::from_slice(&run_ok(&mut dst.cmd(["inspect", &name])).stdout).unwrap();
        assert_eq!(
            got["config"]["rootfs"],
            src_inspect["config"]["rootfs"],
            "{} loses layers",
            archive.display()
        );
        assert_eq!(got["config"]["config"]["Env"], src_inspect["config"]["config"]["Env"]);
    }
}

/// A minimal ustar writer for hostile archives (the tar crate refuses to write `..`).
fn tar_entry(out: &mut Vec<u8>, name: &str, kind: u8, link: &str, data: &[u8], mode: u32) {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    let put_octal = |h: &mut [u8; 512], off: usize, len: usize, v: u64| {
        let s = format!("{v:0width$o}\0", width = len - 1);
        h[off..off + len].copy_from_slice(s.as_bytes());
    };
    put_octal(&mut h, 100, 8, mode as u64);
    put_octal(&mut h, 108, 8, 0);
    put_octal(&mut h, 116, 8, 0);
    put_octal(&mut h, 124, 12, data.len() as u64);
    put_octal(&mut h, 136, 12, 0);
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut g = kiln_oci::pgzip::ParallelGzip::new(Vec::new(), 6, 1);
    g.write_all(data).unwrap();
    g.finish().unwrap()
}

/// Puts an image with one given (already compressed) layer into the store under `name`.
fn put_image(store: &Path, name: &str, layer_blob: &[u8], diff_id: Digest) {
    let s = Store::open(store).unwrap();
    let digest = s.put_blob(layer_blob).unwrap();
    let mut config = ImageConfig {
        architecture: "amd64".into(),
        os: "linux".into(),
        ..Default::default()
    };
    config.rootfs.diff_ids = vec![diff_id];
    let layer = Descriptor::new(media::OCI_LAYER_GZIP, digest, layer_blob.len() as u64);
    let m = write_image(&s, &config, &[layer], BTreeMap::new()).unwrap();
    s.tag(name, &m).unwrap();
}

fn build_from(store: &KilnStore, dir: &Path, dockerfile: &str) -> std::process::Output {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join("f"), "x").unwrap();
    fs::write(dir.join("Dockerfile"), dockerfile).unwrap();
    store.cmd(["build", "--progress", "plain"]).arg(dir).output().unwrap()
}

#[test]
fn hostile_layers_stay_inside_and_fail_clearly() {
    let d = tempfile::tempdir().unwrap();
    let outside = d.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    let store = KilnStore::new();
    // `..` climbing out, an absolute path, a symlink to the outside dir and a file through it,
    // and a hardlink to a host path.
    let mut tar = Vec::new();
    tar_entry(&mut tar, "../../../../../../escape-dotdot", b'0', "", b"bad", 0o644);
    tar_entry(&mut tar, "/escape-abs", b'0', "", b"bad", 0o644);
    tar_entry(&mut tar, "evil", b'2', &outside.display().to_string(), b"", 0o777);
    tar_entry(&mut tar, "evil/through-symlink", b'0', "", b"bad", 0o644);
    tar.extend_from_slice(&[0u8; 1024]);
    let diff = Digest::sha256_of(&tar);
    put_image(store.path(), "hostile:1", &gzip(&tar), diff);
    let out = build_from(&store, &d.path().join("c1"), "FROM hostile:1\nCOPY f /f\n");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        fs::read_dir(&outside).unwrap().count(),
        0,
        "a layer wrote outside its root"
    );
    assert!(!Path::new("/escape-abs").exists() && !Path::new("/escape-dotdot").exists());

    // A hardlink to a host file is refused with the image, layer and entry named.
    let mut tar = Vec::new();
    tar_entry(&mut tar, "hl", b'1', "/etc/passwd", b"", 0o644);
    tar.extend_from_slice(&[0u8; 1024]);
    put_image(store.path(), "hardlink:1", &gzip(&tar), Digest::sha256_of(&tar));
    let out = build_from(&store, &d.path().join("c2"), "FROM hardlink:1\nCOPY f /f\n");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("hardlink:1") && err.contains("layer sha256:") && err.contains("\"hl\""),
        "{err}"
    );

    // A truncated gzip stream whose blob digest is right (so only the decompressor notices).
    let mut tar = Vec::new();
    tar_entry(&mut tar, "big", b'0', "", &vec![1u8; 200_000], 0o644);
    tar.extend_from_slice(&[0u8; 1024]);
    let z = gzip(&tar);
    put_image(store.path(), "truncated:1", &z[..z.len() / 2], Digest::sha256_of(&tar));
    let out = build_from(&store, &d.path().join("c3"), "FROM truncated:1\nCOPY f /f\n");
    assert_ne!(out.status.code(), Some(0));
    let err = stderr(&out);
    assert!(
        err.lines()
            .any(|l| l.starts_with("error: ") && l.contains("truncated:1")),
        "{err}"
    );
    // Nothing half-unpacked is left to be reused by a later build.
    let layers = store.path().join("kiln/snapshots");
    for e in fs::read_dir(&layers).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(!name.starts_with(".unpack-"), "leftover temp dir {name}");
    }
}

#[test]
fn wrong_digests_are_clear_errors() {
    let store = KilnStore::new();
    let missing = format!("sha256:{}", "ab".repeat(32));
    let out = store.cmd(["inspect", &missing]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(&missing) && stderr(&out).contains("hint"),
        "{}",
        stderr(&out)
    );
    // A short digest is a prefix (as docker takes image ID prefixes); none matches here.
    let out = store.cmd(["inspect", "sha256:1234"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("starting with sha256:1234") && stderr(&out).contains("hint"),
        "{}",
        stderr(&out)
    );
    let out = store.cmd(["inspect", "sha256:12zz"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("sha256:12zz"), "{}", stderr(&out));
    // A corrupted blob in the store is detected on read.
    let d = tempfile::tempdir().unwrap();
    let ctx = d.path().join("ctx");
    write_context(&ctx);
    let digest = stdout(&run_ok(store.cmd(["build", "-q", "-t", "c:1"]).arg(&ctx)));
    let hex = digest.trim_start_matches("sha256:");
    fs::write(store.path().join("blobs/sha256").join(hex), b"{}").unwrap();
    let out = store.cmd(["inspect", "c:1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains(&digest), "{}", stderr(&out));
}

#[test]
fn a_killed_load_leaves_a_clean_store() {
    let d = tempfile::tempdir().unwrap();
    let ctx = d.path().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    // Large enough that the load is still running when it is killed.
    run_ok(
        Command::new("head")
            .args(["-c", "150000000", "/dev/urandom"])
            .stdout(fs::File::create(ctx.join("big")).unwrap()),
    );
    fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY big /big\nCOPY Dockerfile /d\n",
    )
    .unwrap();
    let src = KilnStore::new();
    run_ok(src.cmd(["build", "-q", "-t", "big:1"]).arg(&ctx));
    let archive = d.path().join("big.tar");
    run_ok(
        src.cmd(["save", "-o"])
            .arg(&archive)
            .args(["--format", "docker-archive", "big:1"]),
    );
    let dst = KilnStore::new();
    let mut killed = 0;
    for delay_ms in [150u64, 400, 800] {
        let mut child = dst
            .cmd(["load", "-i"])
            .arg(&archive)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            killed += 1;
        }
        let _ = child.wait();
        // Every visible blob verifies and every name points at a complete image.
        for e in fs::read_dir(dst.path().join("blobs/sha256")).unwrap().flatten() {
            let hex = e.file_name().to_string_lossy().into_owned();
            let data = fs::read(e.path()).unwrap();
            assert_eq!(kiln_tests::sha256_hex(&data), hex, "partial blob visible after kill");
        }
        let images = run_ok(&mut dst.cmd(["images", "--format", "json"]));
        let rows: serde_json::Value = serde_json::from_slice(&images.stdout).unwrap();
        for row in rows.as_array().unwrap() {
            let name = format!(
                "{}:{}",
                row["repository"].as_str().unwrap(),
                row["tag"].as_str().unwrap()
            );
            run_ok(&mut dst.cmd(["inspect", &name]));
        }
    }
    assert!(
        killed > 0,
        "the load finished before it could be killed; the test needs a bigger archive"
    );
    let out = run_ok(dst.cmd(["load", "-i"]).arg(&archive));
    assert!(stdout(&out).contains("big:1"), "{}", stdout(&out));
    run_ok(&mut dst.cmd(["inspect", "big:1"]));
}

#[test]
fn concurrent_builds_share_the_store_safely() {
    let d = tempfile::tempdir().unwrap();
    let store = KilnStore::new();
    let children: Vec<_> = (0..6)
        .map(|i| {
            let ctx = d.path().join(format!("ctx{i}"));
            fs::create_dir_all(&ctx).unwrap();
            fs::write(ctx.join("f"), format!("content {i}\n")).unwrap();
            fs::write(ctx.join("shared"), "same in every build\n").unwrap();
            fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY shared /shared\nCOPY f /f\n").unwrap();
            store
                .cmd(["build", "-q", "-t", &format!("conc:{i}")])
                .arg(&ctx)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let digests: Vec<String> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success(), "{}", stderr(&out));
            stdout(&out)
        })
        .collect();
    // Every tag survived the concurrent index updates and points at its own build.
    for (i, digest) in digests.iter().enumerate() {
        let out = run_ok(&mut store.cmd(["inspect", &format!("conc:{i}")]));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["digest"].as_str(), Some(digest.as_str()));
    }
    // A prune afterwards keeps everything that is tagged.
    run_ok(&mut store.cmd(["prune"]));
    for i in 0..6 {
        run_ok(&mut store.cmd(["inspect", &format!("conc:{i}")]));
    }
}
