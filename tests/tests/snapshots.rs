//! Snapshots of base-image layers are trusted only for what was checked (issue 12.1, 12.2,
//! 12.4): a layer whose content does not hash to its claimed diff_id is refused and never
//! poisons the snapshot of the image it imitates; kiln's state is closed to other users;
//! a build killed mid-unpack leaves nothing the next build trusts.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kiln_oci::store::Descriptor;
use kiln_oci::{Manifest, Store, canonical_json, media};
use kiln_tests::{KilnStore, layout_refs, run_ok, umoci_unpack};

/// A gzipped tar of `files` (name, content), mode 0644, owned by root, mtime 0.
fn tar_gz(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        tar.append_data(&mut h, name, *data).unwrap();
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar.into_inner().unwrap()).unwrap();
    gz.finish().unwrap()
}

/// Builds `dockerfile` (with `files` in its context) in `kiln`; returns the output.
fn build(kiln: &KilnStore, dir: &Path, tag: &str, dockerfile: &str, files: &[(&str, &str)]) -> std::process::Output {
    let ctx = dir.join(tag.replace(['/', ':'], "_"));
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    for (n, c) in files {
        std::fs::write(ctx.join(n), c).unwrap();
    }
    let layout = ctx.join("out");
    let _ = std::fs::remove_dir_all(&layout);
    kiln.cmd(["build", "--progress", "plain", "-t", tag, "--output"])
        .arg(format!("type=oci,dest={},tar=false", layout.display()))
        .arg(&ctx)
        .output()
        .unwrap()
}

/// The content of `path` in the image a [`build`] wrote to its `--output` layout.
fn file_in_output(dir: &Path, tag: &str, path: &str) -> String {
    let ctx = dir.join(tag.replace(['/', ':'], "_"));
    let layout = ctx.join("out");
    let r = layout_refs(&layout).unwrap().remove(0);
    let rootfs = umoci_unpack(&layout, &r, &ctx.join("bundle")).unwrap();
    std::fs::read_to_string(rootfs.join(path)).unwrap()
}

/// Image A is built by kiln (`/marker` says "good"); image B is forged from it: the same
/// config, so it claims A's diff_ids, but its layer carries `/marker` = "evil" and `/evil`.
/// Returns B's layer digest.
fn make_good_and_forged(kiln: &KilnStore, dir: &Path) -> String {
    let out = build(
        kiln,
        dir,
        "localhost/good:1",
        "FROM scratch\nCOPY marker /marker\n",
        &[("marker", "good\n")],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let store = Store::open(kiln.path()).unwrap();
    let a = store.resolve("localhost/good:1").unwrap().expect("good is tagged");
    let mut m: Manifest = store.read_json(&a.digest).unwrap();
    let layer = tar_gz(&[("marker", b"evil\n"), ("evil", b"planted\n")]);
    let ld = store.put_blob(&layer).unwrap();
    m.layers = vec![Descriptor::new(media::OCI_LAYER_GZIP, ld.clone(), layer.len() as u64)];
    let bytes = canonical_json(&m);
    let md = store.put_blob(&bytes).unwrap();
    store
        .tag(
            "localhost/forged:1",
            &Descriptor::new(media::OCI_MANIFEST, md, bytes.len() as u64),
        )
        .unwrap();
    ld.to_string()
}

const FROM_FORGED: &str = "FROM localhost/forged:1\nCOPY x /x\n";
const FROM_GOOD: &str = "FROM scratch\nCOPY --from=localhost/good:1 /marker /seen\n";

fn assert_refused(out: &std::process::Output, forged_layer: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "a forged image must be refused:\n{err}");
    assert!(
        err.contains(forged_layer) && err.contains("diff_id") && err.contains("localhost/forged:1"),
        "the error must name the image and the layer:\n{err}"
    );
}

/// Built from the forged image first: refused, naming the layer; then from the good image:
/// it sees its own files, never the forged ones.
#[test]
fn forged_diff_ids_are_refused_forged_first() {
    let tmp = tempfile::tempdir().unwrap();
    let kiln = KilnStore::new();
    let forged_layer = make_good_and_forged(&kiln, tmp.path());
    let out = build(&kiln, tmp.path(), "localhost/on-forged:1", FROM_FORGED, &[("x", "x")]);
    assert_refused(&out, &forged_layer);
    let out = build(&kiln, tmp.path(), "localhost/on-good:1", FROM_GOOD, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(file_in_output(tmp.path(), "localhost/on-good:1", "seen"), "good\n");
}

/// The other order: the good image's snapshot exists when the forged image claims it; the
/// forged blob is still checked and refused, and the good snapshot is untouched.
#[test]
fn forged_diff_ids_are_refused_good_first() {
    let tmp = tempfile::tempdir().unwrap();
    let kiln = KilnStore::new();
    let forged_layer = make_good_and_forged(&kiln, tmp.path());
    let out = build(&kiln, tmp.path(), "localhost/on-good:1", FROM_GOOD, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = build(&kiln, tmp.path(), "localhost/on-forged:1", FROM_FORGED, &[("x", "x")]);
    assert_refused(&out, &forged_layer);
    let out = build(&kiln, tmp.path(), "localhost/on-good:2", FROM_GOOD, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(file_in_output(tmp.path(), "localhost/on-good:2", "seen"), "good\n");
}

/// kiln's state (snapshots keep setuid binaries and device nodes) is closed to other local
/// users, even when the store itself is world-readable as /var/lib/kiln is (issue 12.2).
#[test]
fn other_users_cannot_enter_the_snapshot_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let kiln = KilnStore::new();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(kiln.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = build(
        &kiln,
        tmp.path(),
        "localhost/good:1",
        "FROM scratch\nCOPY marker /marker\n",
        &[("marker", "good\n")],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = build(&kiln, tmp.path(), "localhost/on-good:1", FROM_GOOD, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let snaps = kiln.path().join("kiln/snapshots");
    let chain = std::fs::read_dir(&snaps)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().len() == 64)
        .expect("a snapshot was made")
        .path();
    let as_nobody = |args: &[&str]| {
        Command::new(kiln_tests::require_tool("runuser"))
            .args(["-u", "nobody", "--"])
            .args(args)
            .output()
            .unwrap()
    };
    // The store's layout stays readable (skopeo, umoci); its state does not.
    assert!(as_nobody(&["ls", &kiln.path().display().to_string()]).status.success());
    for p in [
        kiln.path().join("kiln"),
        snaps.clone(),
        chain.join("fs"),
        chain.join("fs/marker"),
    ] {
        let out = as_nobody(&["cat", &p.display().to_string()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("Permission denied"),
            "nobody could reach {}: {err}",
            p.display()
        );
        let out = as_nobody(&["ls", &p.display().to_string()]);
        assert!(!out.status.success(), "nobody could list {}", p.display());
    }
}

/// A context of `dirs` × 500 small files under `data/dNNN/`, so unpacking its layer takes
/// a while and shows its progress.
fn many_files(ctx: &Path, dirs: usize) {
    for d in 0..dirs {
        let dir = ctx.join(format!("data/d{d:03}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..500 {
            std::fs::write(dir.join(format!("f{f:03}")), format!("{d} {f}\n")).unwrap();
        }
    }
}

/// Kill -9 a build while it unpacks its base, at three points of the unpack (when the 3rd,
/// 6th and 9th of its 10 directories appear); the next build in the same store gives the
/// image a build in a fresh store gives, and nothing half-made is ever published (issue
/// 12.4). Stores are on /dev/shm: this disk deletes many files slowly.
#[test]
fn killed_mid_unpack_then_rebuilt_correctly() {
    let shm = Path::new("/dev/shm");
    let tmp = tempfile::tempdir_in(shm).unwrap();
    let base_ctx = tmp.path().join("base");
    many_files(&base_ctx, 10);
    std::fs::write(base_ctx.join("Dockerfile"), "FROM scratch\nCOPY data /data\n").unwrap();
    let app_ctx = tmp.path().join("app");
    std::fs::create_dir_all(&app_ctx).unwrap();
    std::fs::write(
        app_ctx.join("Dockerfile"),
        "FROM localhost/many:1\nCOPY --from=localhost/many:1 /data/d009 /copy\n",
    )
    .unwrap();
    let digest_of = |kiln: &KilnStore| {
        let iid = tmp.path().join("iid");
        let mut c = kiln.cmd(["build", "--progress", "quiet", "-t", "localhost/app:1", "--iidfile"]);
        c.arg(&iid).arg(&app_ctx);
        run_ok(&mut c);
        std::fs::read_to_string(&iid).unwrap()
    };
    let base = |kiln: &KilnStore| {
        run_ok(
            kiln.cmd(["build", "--progress", "quiet", "-t", "localhost/many:1"])
                .arg(&base_ctx),
        );
    };
    let serial = KilnStore::new_in(shm);
    base(&serial);
    let want = digest_of(&serial);
    drop(serial);

    let kiln = KilnStore::new_in(shm);
    base(&kiln);
    let snaps = kiln.path().join("kiln/snapshots");
    let mut kills = 0;
    for point in ["d002", "d005", "d008"] {
        let mut child = kiln
            .cmd(["build", "--progress", "quiet", "-t", "localhost/app:1"])
            .arg(&app_ctx)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let reached = || {
            std::fs::read_dir(&snaps).into_iter().flatten().flatten().any(|e| {
                e.file_name().to_string_lossy().starts_with(".unpack-")
                    && e.path().join("snap/fs/data").join(point).exists()
            })
        };
        let start = Instant::now();
        while !reached() && child.try_wait().unwrap().is_none() && start.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(1));
        }
        if child.try_wait().unwrap().is_none() {
            kills += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
        // Nothing half-made is published under a chain ID.
        for e in std::fs::read_dir(&snaps).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.len() == 64 {
                assert!(e.path().join("complete").is_file(), "snapshot {name} has no marker");
            }
        }
        let got = digest_of(&kiln);
        assert_eq!(got, want, "the build after a kill at {point} gave another image");
        // The killed build's staging directory was removed by the next one.
        let left: Vec<String> = std::fs::read_dir(&snaps)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".unpack-"))
            .collect();
        assert!(left.is_empty(), "left behind after a kill at {point}: {left:?}");
        // Start over for the next kill: drop the cache, keep the base.
        run_ok(&mut kiln.cmd(["prune", "--cache"]));
    }
    assert_eq!(kills, 3, "a build finished its unpack before it could be killed");
}
