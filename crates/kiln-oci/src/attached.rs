//! What is attached to an image: its referrers (signature bundles, SBOMs, provenance,
//! attestations; followed to referrers of referrers) and cosign's `sha256-<hex>.sig`,
//! `.att` and `.sbom` tags. [`OpenedImage::copy_attached_into`] copies them, from any
//! source, into a layout in the store's convention (referrers as untagged index entries
//! with an `artifactType`, cosign tags as `REPOSITORY:sha256-<hex>.sig`), which is what
//! `kiln push` sends along and `kiln verify --local` reads. `kiln copy` promotes images with
//! it, as `oras copy -r` and `cosign copy` do.

use std::collections::BTreeSet;

use crate::digest::Digest;
use crate::opened::{COSIGN_SUFFIXES, OpenedImage, Scope, cosign_tag};
use crate::store::{Descriptor, Manifest, Store, StoreError};
use crate::transport::TransportError;

/// How far referrers of referrers are followed (a signature of an SBOM of an image is 2).
pub const MAX_REFERRER_DEPTH: usize = 4;

/// What [`OpenedImage::copy_attached_into`] found and copied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attached {
    /// The image's manifests (the top one, and with [`Scope::All`] every platform's): the
    /// subjects whose attachments were looked for.
    pub subjects: Vec<Digest>,
    /// Referrers copied, at any depth.
    pub referrers: usize,
    /// cosign tags copied.
    pub tags: usize,
}

impl OpenedImage {
    /// Copies everything attached to the image (as `scope` names it) into `to`: each
    /// referrer with its blobs, listed untagged with its `artifactType`, and each cosign tag
    /// named `REPOSITORY:TAG` with `repository`. The image itself is not copied.
    pub fn copy_attached_into(&self, to: &Store, scope: Scope, repository: &str) -> Result<Attached, TransportError> {
        let store_err = |source| TransportError::Store {
            image: self.source.location(),
            source,
        };
        let (manifests, _) = self.graph(&self.top(scope))?;
        let subjects: Vec<Digest> = manifests.into_iter().map(|(d, _)| d.digest).collect();
        let mut out = Attached {
            subjects: subjects.clone(),
            ..Attached::default()
        };
        let mut todo: Vec<(Digest, usize)> = subjects.into_iter().map(|d| (d, 0)).collect();
        let mut seen = BTreeSet::new();
        while let Some((subject, depth)) = todo.pop() {
            if depth > MAX_REFERRER_DEPTH || !seen.insert(subject.clone()) {
                continue;
            }
            for r in self.source.referrers(&subject, None)? {
                self.copy_graph(&r, to)?;
                to.add_untagged(&self.artifact_entry(r.clone())?).map_err(store_err)?;
                out.referrers += 1;
                todo.push((r.digest, depth + 1));
            }
            for suffix in COSIGN_SUFFIXES {
                let tag = cosign_tag(&subject, suffix);
                if let Some(d) = self.source.resolve_tag(&tag)? {
                    self.copy_graph(&d, to)?;
                    to.tag(&format!("{repository}:{tag}"), &d).map_err(store_err)?;
                    out.tags += 1;
                }
            }
        }
        Ok(out)
    }

    /// A referrer's index entry with its `artifactType` (older tools leave it out of index
    /// entries; the manifest's own, or its config media type, stands in as the spec says).
    fn artifact_entry(&self, mut r: Descriptor) -> Result<Descriptor, TransportError> {
        if r.artifact_type.is_none() {
            let bytes = self.source.read_manifest(&r)?;
            let m: Manifest = serde_json::from_slice(&bytes).map_err(|source| TransportError::Store {
                image: self.source.location(),
                source: StoreError::Json {
                    what: format!("referrer {}", r.digest),
                    source,
                },
            })?;
            r.artifact_type = Some(m.artifact_type.unwrap_or(m.config.media_type));
        }
        Ok(r)
    }
}
