//! Tag resolutions kept for a few seconds (`--tag-ttl`), as Kyverno keeps image
//! verifications: a pod's three tags cost the registry three manifest requests, several
//! times the work of the decision itself. A moved tag is seen once its entry expires; until
//! then the mutating webhook still pins each tag to a digest that was decided on, so the
//! pod runs what was verified. Errors are never kept: an unreachable registry is asked again
//! (and denied again) on every request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kiln_oci::Digest;

/// At most this many tags are kept; a full cache starts over (the next request for each
/// tag resolves it again).
const MAX_TAGS: usize = 10_000;

/// Digests by normalised tag reference, each with when it was resolved.
pub struct TagCache {
    ttl: Duration,
    map: Mutex<HashMap<String, (Digest, Instant)>>,
}

impl TagCache {
    /// A cache keeping each resolution for `ttl` (zero: nothing is kept).
    pub fn new(ttl: Duration) -> TagCache {
        TagCache {
            ttl,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// The digest `tag` resolved to less than the TTL ago.
    pub fn get(&self, tag: &str) -> Option<Digest> {
        if self.ttl.is_zero() {
            return None;
        }
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(tag)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(d, _)| d.clone())
    }

    /// Keeps `tag`'s resolution to `digest`, made now.
    pub fn put(&self, tag: &str, digest: &Digest) {
        if self.ttl.is_zero() {
            return;
        }
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_TAGS && !map.contains_key(tag) {
            map.clear();
        }
        map.insert(tag.to_string(), (digest.clone(), Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_for_the_ttl_and_never_with_a_zero_ttl() {
        let d = Digest::sha256_of(b"image");
        let c = TagCache::new(Duration::from_millis(200));
        assert_eq!(c.get("r/a:1"), None);
        c.put("r/a:1", &d);
        assert_eq!(c.get("r/a:1"), Some(d.clone()));
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(c.get("r/a:1"), None, "expired");
        let off = TagCache::new(Duration::ZERO);
        off.put("r/a:1", &d);
        assert_eq!(off.get("r/a:1"), None);
    }
}
