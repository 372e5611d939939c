//! Decisions cached by (reference, image digest, policy hash, vulnerability database
//! version). The digest names content that cannot change, so a moved tag cannot serve a
//! stale decision (the reference is resolved to its digest before the lookup); the
//! reference is in the key because rules match references. Time-dependent checks
//! (`max_age`, ignore `until`) make entries expire after [`TTL_SECS`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest as _, Sha256};

use crate::decision::Decision;

/// How long a cached decision holds.
pub const TTL_SECS: i64 = 600;

/// A cache key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    /// The reference as given.
    pub reference: String,
    /// The image digest it resolved to.
    pub digest: String,
    /// The policy's hash.
    pub policy: String,
    /// The vulnerability database version (empty when no rule reads it).
    pub db: String,
}

impl Key {
    fn file_name(&self) -> String {
        let mut h = Sha256::new();
        for part in [&self.reference, &self.digest, &self.policy, &self.db] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        format!("{}.json", hex::encode(h.finalize()))
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Entry {
    at: i64,
    digest: String,
    policy: String,
    decision: Decision,
}

/// In memory, and on disk under a directory when given (the CLI's `$KILN_HOME/kiln/policy`).
#[derive(Debug, Default)]
pub struct DecisionCache {
    dir: Option<PathBuf>,
    mem: Mutex<HashMap<Key, (i64, Decision)>>,
}

impl DecisionCache {
    /// A cache in memory only (`kiln serve`).
    pub fn in_memory() -> DecisionCache {
        DecisionCache::default()
    }

    /// A cache also kept in `dir` (created 0700 when first written).
    pub fn on_disk(dir: &Path) -> DecisionCache {
        DecisionCache {
            dir: Some(dir.to_path_buf()),
            mem: Mutex::default(),
        }
    }

    /// The decision for `key`, if cached and fresh at `now`.
    pub fn get(&self, key: &Key, now: i64) -> Option<Decision> {
        let fresh = |at: i64| now >= at && now - at < TTL_SECS;
        if let Some((at, d)) = self.mem.lock().ok()?.get(key)
            && fresh(*at)
        {
            return Some(d.clone());
        }
        let path = self.dir.as_ref()?.join(key.file_name());
        let bytes = std::fs::read(path).ok()?;
        let e: Entry = serde_json::from_slice(&bytes).ok()?;
        // A file is only a hint: it must be for this digest and policy.
        (fresh(e.at) && e.digest == key.digest && e.policy == key.policy && e.decision.digest == key.digest)
            .then_some(e.decision)
    }

    /// Records a decision made at `now`.
    pub fn put(&self, key: Key, decision: &Decision, now: i64) {
        if let Some(dir) = &self.dir {
            let _ = write_private(dir, &key, decision, now);
        }
        if let Ok(mut m) = self.mem.lock() {
            m.insert(key, (now, decision.clone()));
        }
    }
}

fn write_private(dir: &Path, key: &Key, decision: &Decision, now: i64) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let e = Entry {
        at: now,
        digest: key.digest.clone(),
        policy: key.policy.clone(),
        decision: decision.clone(),
    };
    let tmp = tempfile::NamedTempFile::new_in(dir)?;
    serde_json::to_writer(&tmp, &e)?;
    tmp.persist(dir.join(key.file_name())).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(digest: &str) -> Decision {
        Decision {
            reference: "r".into(),
            digest: digest.into(),
            allowed: true,
            rules: vec![],
            violations: vec![],
            warnings: vec![],
            policy: "p".into(),
        }
    }

    fn key(digest: &str, policy: &str) -> Key {
        Key {
            reference: "r".into(),
            digest: digest.into(),
            policy: policy.into(),
            db: String::new(),
        }
    }

    #[test]
    fn hits_only_for_the_same_digest_policy_and_time() {
        let dir = tempfile::tempdir().unwrap();
        let c = DecisionCache::on_disk(dir.path());
        c.put(key("sha256:a", "p1"), &decision("sha256:a"), 1000);
        assert!(c.get(&key("sha256:a", "p1"), 1001).is_some());
        assert!(c.get(&key("sha256:b", "p1"), 1001).is_none());
        assert!(c.get(&key("sha256:a", "p2"), 1001).is_none());
        assert!(c.get(&key("sha256:a", "p1"), 1000 + TTL_SECS).is_none());
        // A fresh process reads the file; a file swapped in for another digest is refused.
        let again = DecisionCache::on_disk(dir.path());
        assert!(again.get(&key("sha256:a", "p1"), 1001).is_some());
        let path = dir.path().join(key("sha256:a", "p1").file_name());
        let text = std::fs::read_to_string(&path).unwrap().replace("sha256:a", "sha256:z");
        std::fs::write(&path, text).unwrap();
        assert!(
            DecisionCache::on_disk(dir.path())
                .get(&key("sha256:a", "p1"), 1001)
                .is_none()
        );
        // In memory, a lookup is a hash-map probe: far under a millisecond.
        let t = std::time::Instant::now();
        for _ in 0..1000 {
            assert!(c.get(&key("sha256:a", "p1"), 1001).is_some());
        }
        eprintln!("1000 in-memory lookups: {:?}", t.elapsed());
    }
}
