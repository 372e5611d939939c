//! The gate a built image passes before it is exported or pushed (`kiln build --policy`).
//! It runs once the image is tagged, attested and signed, so it sees what a registry would
//! receive; a denial puts the build's names back as they were (the tags it moved, the twin
//! and signature tags it made), and nothing is exported or pushed.

use std::collections::BTreeMap;

use kiln_oci::reference::Name;
use kiln_oci::{Descriptor, Store};

use super::PipelineError;

/// A check of the built image. The CLI's implementation applies a kiln policy.
pub trait Gate: Send + Sync {
    /// `Ok` lets the build go on; `Err` (usually [`PipelineError::Denied`]) stops it.
    fn check(&self, store: &Store, image: &Descriptor, tags: &[String]) -> Result<(), PipelineError>;
}

/// The names the store had before the build: name → what it pointed at.
pub(super) type Names = BTreeMap<String, Descriptor>;

/// Every name in the store now.
pub(super) fn names(store: &Store) -> Result<Names, PipelineError> {
    Ok(store
        .index()?
        .manifests
        .into_iter()
        .filter_map(|m| m.ref_name().map(|n| (n.to_string(), m.clone())))
        .collect())
}

/// Puts the requested tags back as they were in `before`, and removes names made for
/// `image` (`:sha256-<hex>` twins, `.sig`/`.att` tags) that did not exist then.
pub(super) fn restore(store: &Store, before: &Names, image: &Descriptor, tags: &[String]) -> Result<(), PipelineError> {
    for t in tags {
        let Ok(n) = Name::parse(t) else { continue };
        let key = n.store_key();
        match before.get(&key) {
            Some(d) => store.tag(&key, d)?,
            None => {
                store.untag(&key)?;
            }
        }
    }
    let hex = image.digest.hex().to_string();
    for name in names(store)?.into_keys() {
        if name.contains(&hex) && !before.contains_key(&name) {
            store.untag(&name)?;
        }
    }
    Ok(())
}
