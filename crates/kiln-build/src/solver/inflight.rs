//! Single flight per cache key: while one solve makes a step's layer, another solve in this
//! process that reaches a step with the same key waits for it, then finds the record (as
//! BuildKit's solver merges equal vertices). Without it, the platforms of a multi-platform
//! build, solved side by side, would each miss the cache of a shared
//! `FROM --platform=$BUILDPLATFORM` step at the same moment and each run it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

/// Steps being made now: the store they are made for and their record key.
static IN_FLIGHT: Mutex<BTreeSet<(PathBuf, [u8; 32])>> = Mutex::new(BTreeSet::new());
static DONE: Condvar = Condvar::new();

/// The claim on a key; dropping it (the step's layer recorded, or the step failed) lets
/// the next waiter in.
pub(super) struct Claim {
    id: (PathBuf, [u8; 32]),
}

/// Claims `key` in the store at `root`, waiting while another thread holds it.
pub(super) fn claim(root: &Path, key: &[u8; 32]) -> Claim {
    let id = (root.to_path_buf(), *key);
    let mut set = IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner());
    while set.contains(&id) {
        set = DONE.wait(set).unwrap_or_else(|e| e.into_inner());
    }
    set.insert(id.clone());
    Claim { id }
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
        let root = Path::new("/store-a");
        let running = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    let _c = claim(root, &[7; 32]);
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    running.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        assert_eq!(most.load(Ordering::SeqCst), 1);
        // Other keys and other stores are not held up.
        let _a = claim(root, &[7; 32]);
        let _b = claim(root, &[8; 32]);
        let _c = claim(Path::new("/store-b"), &[7; 32]);
    }
}
