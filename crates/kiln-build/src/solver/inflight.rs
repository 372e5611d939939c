//! Single flight per cache key: while one solve makes a step's layer, another solve that
//! reaches a step with the same key waits for it, then finds the record (as BuildKit's
//! solver merges equal vertices). Without it, the platforms of a multi-platform build,
//! solved side by side, would each miss the cache of a shared
//! `FROM --platform=$BUILDPLATFORM` step at the same moment and each run it; and two CI
//! jobs building the same Dockerfile into one store would each run every step.
//!
//! Within a process, threads wait on a condition variable; between processes, on an
//! exclusive `flock` of `kiln/steps.lock.d/<key>` (released by the kernel if the holder
//! dies). A claim is only ever taken inside another for a step the claimed one depends on,
//! and a key hashes its dependencies' keys, so claims nest in one order and cannot deadlock.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

/// Steps being made now: the store they are made for and their record key.
static IN_FLIGHT: Mutex<BTreeSet<(PathBuf, [u8; 32])>> = Mutex::new(BTreeSet::new());
static DONE: Condvar = Condvar::new();

/// The claim on a key; dropping it (the step's layer recorded, or the step failed) lets
/// the next waiter in.
pub(super) struct Claim {
    id: (PathBuf, [u8; 32]),
    /// The flock other processes wait on; `None` where the lock file cannot be made (the
    /// claim then covers this process only).
    _file: Option<File>,
}

/// The directory of the per-key lock files, which `remove_leftovers` empties (under the GC
/// lock, when no build holds one).
pub(crate) fn locks_dir(meta: &Path) -> PathBuf {
    meta.join("steps.lock.d")
}

/// Claims `key` in the store whose kiln directory is `meta`, waiting while another thread
/// or another kiln process holds it; `on_wait` is called before waiting for another
/// process (whose step may take long), so the build can say why it stands still.
pub(super) fn claim(meta: &Path, key: &[u8; 32], on_wait: impl FnOnce()) -> Claim {
    let id = (meta.to_path_buf(), *key);
    let mut set = IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner());
    while set.contains(&id) {
        set = DONE.wait(set).unwrap_or_else(|e| e.into_inner());
    }
    set.insert(id.clone());
    drop(set);
    Claim {
        id,
        _file: lock_between_processes(meta, key, on_wait),
    }
}

fn lock_between_processes(meta: &Path, key: &[u8; 32], on_wait: impl FnOnce()) -> Option<File> {
    let dir = locks_dir(meta);
    kiln_oci::fsutil::create_private_dir(&dir).ok()?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(hex::encode(key)))
        .ok()?;
    if rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
        on_wait();
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).ok()?;
    }
    Some(file)
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut set = IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner());
        set.remove(&self.id);
        DONE.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_second_claim_waits_for_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let running = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    let _c = claim(root, &[7; 32], || {});
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    running.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        assert_eq!(most.load(Ordering::SeqCst), 1);
        // Other keys and other stores are not held up.
        let _a = claim(root, &[7; 32], || {});
        let _b = claim(root, &[8; 32], || {});
        let other = tempfile::tempdir().unwrap();
        let _c = claim(other.path(), &[7; 32], || {});
        // The claim is a file lock too, which another process (here: another open file
        // description) cannot take while it is held.
        let f = std::fs::File::open(locks_dir(root).join(hex::encode([7u8; 32]))).unwrap();
        let busy = rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive);
        assert!(busy.is_err(), "held by the claim");
        drop(_a);
        rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
    }
}
