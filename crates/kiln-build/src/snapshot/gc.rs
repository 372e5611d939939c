//! Removing build state: the cache (`prune --cache`) and what killed processes left behind.
//!
//! Every removal happens under the store's exclusive GC lock ([`Store::lock_gc`]), which no
//! build can hold while another holds a lease: so nothing removed here is in use. State is
//! renamed into `kiln/trash` first and deleted from there, so a removal cut short (kill -9)
//! never leaves a half-deleted snapshot or cache directory under its real name.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use kiln_oci::store::{GcLock, disk_usage, remove_contents};
use kiln_oci::{Digest, Store};

use super::snapshots_dir;

/// Where state goes to be deleted.
pub fn trash(store: &Store) -> PathBuf {
    store.meta_dir().join("trash")
}

/// Renames `path` into the trash (under a fresh name), durably.
pub(super) fn move_to_trash(store: &Store, path: &Path) -> io::Result<()> {
    let bin = trash(store);
    kiln_oci::fsutil::create_private_dir(&bin)?;
    let slot = tempfile::Builder::new().prefix("t-").tempdir_in(&bin)?.keep();
    let name = path.file_name().unwrap_or_default();
    kiln_oci::fsutil::rename_durable(path, &slot.join(name))
}

/// Every blob a cache record references, so `prune` can keep them (unless asked to drop the
/// build cache too).
pub fn cache_roots(store: &Store) -> BTreeSet<Digest> {
    let mut out = BTreeSet::new();
    let dir = store.meta_dir().join("cache");
    if let Ok(entries) = fs::read_dir(&dir) {
        for e in entries.flatten() {
            if let Ok(data) = fs::read(e.path())
                && let Ok(rec) = serde_json::from_slice::<crate::solver::CacheRecord>(&data)
                && let Some(l) = rec.layer
            {
                out.insert(l.descriptor.digest);
            }
        }
    }
    out
}

/// Removes the build cache records, snapshots, stat cache, the key inputs kept for
/// `--explain-cache` and the SBOM's per-layer catalogue; returns the bytes they held.
/// The caller holds the GC lock, so no build is using them; each is renamed away before it
/// is deleted.
pub fn clear_cache(store: &Store, _gc: &GcLock) -> io::Result<u64> {
    let meta = store.meta_dir();
    for d in [
        meta.join("cache"),
        snapshots_dir(store),
        meta.join("layers"),
        meta.join("statcache"),
        meta.join("statcache.d"),
        meta.join("cache-inputs"),
        kiln_sbom::layer_cache::dir(store),
    ] {
        if fs::symlink_metadata(&d).is_ok() {
            move_to_trash(store, &d)?;
        }
    }
    Ok(remove_contents(&trash(store)).1)
}

/// Removes what killed kiln processes left: snapshot staging dirs (`.unpack-*`), the trash,
/// RUN step directories (unmounting anything still mounted below them) and runtime state
/// of containers that outlived them. The caller holds the GC lock, so none of it belongs
/// to a running build. Returns (entries removed, bytes).
pub fn remove_leftovers(store: &Store, _gc: &GcLock) -> (usize, u64) {
    let meta = store.meta_dir();
    unmount_below(&meta);
    let (mut n, mut bytes) = remove_contents(&trash(store));
    if let Ok(entries) = fs::read_dir(snapshots_dir(store)) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(".unpack-") {
                bytes += disk_usage(&e.path());
                if fs::remove_dir_all(e.path()).is_ok() {
                    n += 1;
                }
            }
        }
    }
    kill_stale_containers(&meta.join("runtime-state"));
    // Step lock files are not leftovers (every build makes them), so they are not counted;
    // with no build running none is held, and removing them keeps the directory small.
    remove_contents(&crate::solver::inflight::locks_dir(&meta));
    for d in [meta.join("run"), meta.join("runtime-state")] {
        let (rn, rb) = remove_contents(&d);
        n += rn;
        bytes += rb;
    }
    (n, bytes)
}

/// At the start of a build: removes leftovers if no other kiln process is running (then
/// the GC lock is free); otherwise leaves them for later, since they may be in use.
pub fn clean_if_idle(store: &Store) -> Result<(), kiln_oci::StoreError> {
    if let Some(gc) = store.try_lock_gc()? {
        remove_leftovers(store, &gc);
    }
    Ok(())
}

/// Lazily unmounts every mount point at or below `dir` in this mount namespace, deepest
/// first (mounts of a kiln that died outside a private mount namespace).
fn unmount_below(dir: &Path) {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = dir.to_string_lossy().into_owned();
    let mut points: Vec<String> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|p| p == &prefix || p.starts_with(&format!("{prefix}/")))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = rustix::mount::unmount(p.as_str(), rustix::mount::UnmountFlags::DETACH);
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Ok(v) = u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 4]).unwrap_or("x"), 8)
        {
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Kills and deletes every container left in a runtime state dir (a reaper that never ran).
fn kill_stale_containers(state: &Path) {
    let Ok(entries) = fs::read_dir(state) else { return };
    // Either runtime may have left it: each deletes only containers it knows.
    let runtimes: Vec<_> = ["runc", "crun"]
        .iter()
        .filter_map(|n| crate::run::exec::Runtime::find(Some(n)).ok())
        .collect();
    for e in entries.flatten() {
        for runtime in &runtimes {
            let _ = std::process::Command::new(&runtime.path)
                .args(runtime.global_args())
                .arg("--root")
                .arg(state)
                .args(["delete", "-f"])
                .arg(e.file_name())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo(r"/a\040b/c"), "/a b/c");
        assert_eq!(unescape_mountinfo(r"/plain"), "/plain");
        assert_eq!(unescape_mountinfo(r"/x\134y"), r"/x\y");
    }

    /// A cleared cache leaves nothing under the old names, and what a killed process left
    /// is removed and counted.
    #[test]
    fn clear_and_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let snaps = snapshots_dir(&store);
        fs::create_dir_all(snaps.join("abc/fs/etc")).unwrap();
        fs::create_dir_all(snaps.join(".unpack-x/snap/fs")).unwrap();
        fs::write(snaps.join(".unpack-x/snap/fs/f"), vec![0u8; 100]).unwrap();
        fs::create_dir_all(store.meta_dir().join("run/step-1/upper")).unwrap();
        let gc = store.lock_gc().unwrap();
        let (n, bytes) = remove_leftovers(&store, &gc);
        assert_eq!((n, bytes), (2, 100));
        assert!(snaps.join("abc/fs/etc").is_dir());
        clear_cache(&store, &gc).unwrap();
        assert!(!snaps.exists());
        assert_eq!(fs::read_dir(trash(&store)).unwrap().count(), 0);
    }
}
