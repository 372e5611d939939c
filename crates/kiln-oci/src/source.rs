//! The one interface every image is read through, wherever it lives.
//!
//! [`ImageSource`] reads manifests and indexes, blobs (as verified streams), tags of the
//! image's repository (cosign's `.sig`/`.att`/`.sbom`) and referrers. kiln-oci implements it
//! for OCI layouts (the store, `oci:` directories, archives loaded into a temp layout);
//! registries are injected through [`Registries`], which kiln-registry implements, so this
//! crate holds no network code. [`crate::transport::open_image`] picks the source for a
//! reference; [`crate::opened::OpenedImage`] is what callers hold.
//!
//! Everything read here comes from outside: manifests are bounded by
//! [`MAX_MANIFEST_BYTES`] and checked against their digest before they are parsed, and
//! blob streams fail at EOF unless digest and size match their descriptor.

use std::io::Read;

use crate::digest::{Digest, VerifyingReader};
use crate::reference::Name;
use crate::store::{Descriptor, Store, StoreError};
use crate::transport::TransportError;

/// Largest manifest or index kiln reads (containerd's limit), so a hostile registry or
/// layout cannot make kiln hold an unbounded document in memory.
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;

/// Largest image config kiln reads whole; real configs are kilobytes, histories included.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// What kind of place a source reads from. Signing needs it: signatures can be written to
/// the store and to registries, not into someone's layout or archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// kiln's own store.
    Store,
    /// An OCI layout that is not the store: `oci:DIR`, or an archive loaded into a temp layout.
    Layout,
    /// A registry repository.
    Registry,
}

/// Where an image's content is read from. Every method checks what it returns against the
/// digests it was asked for; nothing unverified reaches the caller.
pub trait ImageSource: Send + Sync {
    /// The kind of place, see [`SourceKind`].
    fn kind(&self) -> SourceKind;

    /// Where this is, for messages: `the store at /x`, `oci:/dir`, `127.0.0.1:5000/app`.
    fn location(&self) -> String;

    /// The repository the image was named under (`127.0.0.1:5000/app`, `app`), where
    /// cosign's tags live and what signatures name; `None` for unnamed layout entries.
    fn repository(&self) -> Option<String>;

    /// The bytes of the manifest or index `desc` names, at most [`MAX_MANIFEST_BYTES`],
    /// checked against its digest.
    fn read_manifest(&self, desc: &Descriptor) -> Result<Vec<u8>, TransportError>;

    /// A stream of the blob `desc` names (a config or a layer); the read that reaches the
    /// end fails unless digest and size match.
    fn open_blob(&self, desc: &Descriptor) -> Result<Box<dyn Read + Send + '_>, TransportError>;

    /// What a tag of the image's repository points at (cosign's `sha256-<hex>.sig`), if
    /// anything.
    fn resolve_tag(&self, tag: &str) -> Result<Option<Descriptor>, TransportError>;

    /// Artifacts whose `subject` is `subject`, optionally of one artifact type: the
    /// referrers API or its tag-schema fallback for registries, the untagged index entries
    /// that carry an `artifactType` for layouts.
    fn referrers(&self, subject: &Digest, artifact_type: Option<&str>) -> Result<Vec<Descriptor>, TransportError>;

    /// The layout that holds every blob already, for readers that need a layout (the
    /// SBOM catalogers, the scanners); `None` when blobs must be fetched first.
    fn layout(&self) -> Option<&Store> {
        None
    }

    /// Copies blobs into `to`, each verified before it becomes visible there. Blobs `to`
    /// has are skipped. The default reads them one after another; registries fetch several
    /// at once.
    fn fetch_blobs(&self, blobs: &[Descriptor], to: &Store) -> Result<(), TransportError> {
        for d in blobs {
            if to.has_blob(&d.digest) {
                continue;
            }
            let r = self.open_blob(d)?;
            to.put_blob_from(r, Some((&d.digest, Some(d.size))))
                .map_err(|source| TransportError::Store {
                    image: self.location(),
                    source,
                })?;
        }
        Ok(())
    }
}

/// Opens images in registries. kiln-registry implements it; commands pass it to
/// [`crate::transport::open_image`] so that kiln-oci reaches registries without network code.
pub trait Registries: Sync {
    /// Resolves `name` in its registry: a source reading from its repository, and the
    /// descriptor the tag or digest resolved to (an index for multi-arch images). Temp
    /// files go under `store`'s temp dir.
    fn open(&self, store: &Store, name: &Name) -> Result<(Box<dyn ImageSource>, Descriptor), TransportError>;
}

/// The error for content over a size limit.
fn oversize(location: &str, what: String, size: u64, limit: u64) -> TransportError {
    TransportError::Invalid {
        image: location.to_string(),
        what,
        reason: format!("{size} bytes, more than the {limit}-byte limit for it"),
        hint: "the source serves content kiln will not read; check where the image comes from",
    }
}

/// Refuses a manifest whose declared or actual size is over the limit, or whose bytes do not
/// hash to its digest. Sources call it on everything they return from `read_manifest`.
pub fn check_manifest(location: &str, desc: &Descriptor, bytes: &[u8]) -> Result<(), TransportError> {
    let what = || format!("manifest {}", desc.digest);
    let size = desc.size.max(bytes.len() as u64);
    if size > MAX_MANIFEST_BYTES {
        return Err(oversize(location, what(), size, MAX_MANIFEST_BYTES));
    }
    let mut h = crate::digest::Hasher::new(desc.digest.algorithm());
    h.update(bytes);
    let got = h.finish();
    if got != desc.digest {
        return Err(TransportError::Invalid {
            image: location.to_string(),
            what: what(),
            reason: format!("content hashes to {got}"),
            hint: "the source serves content that does not match its digest; check where the image comes from",
        });
    }
    Ok(())
}

/// An OCI layout as an image source: the store (images named `REPOSITORY:TAG`) or a
/// foreign layout (`oci:DIR`, loaded archives), whose blobs are verified on every read.
#[derive(Debug, Clone)]
pub struct LayoutSource {
    layout: Store,
    kind: SourceKind,
    repository: Option<String>,
}

impl LayoutSource {
    /// A source over `layout`; `repository` is the name the image was found under.
    pub fn new(layout: Store, kind: SourceKind, repository: Option<String>) -> LayoutSource {
        LayoutSource {
            layout,
            kind,
            repository,
        }
    }

    fn store_err(&self) -> impl FnOnce(StoreError) -> TransportError + '_ {
        move |source| TransportError::Store {
            image: self.location(),
            source,
        }
    }
}

impl ImageSource for LayoutSource {
    fn kind(&self) -> SourceKind {
        self.kind
    }

    fn location(&self) -> String {
        match self.kind {
            SourceKind::Store => format!("the store at {}", self.layout.root().display()),
            _ => format!("oci:{}", self.layout.root().display()),
        }
    }

    fn repository(&self) -> Option<String> {
        self.repository.clone()
    }

    fn read_manifest(&self, desc: &Descriptor) -> Result<Vec<u8>, TransportError> {
        let path = self.layout.blob_path(&desc.digest);
        // Bounded before it is read: the file's own size, whatever the descriptor claims.
        let on_disk = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if on_disk > MAX_MANIFEST_BYTES {
            let what = format!("manifest {}", desc.digest);
            return Err(oversize(&self.location(), what, on_disk, MAX_MANIFEST_BYTES));
        }
        let bytes = self.layout.read_blob(&desc.digest).map_err(self.store_err())?;
        check_manifest(&self.location(), desc, &bytes)?;
        Ok(bytes)
    }

    fn open_blob(&self, desc: &Descriptor) -> Result<Box<dyn Read + Send + '_>, TransportError> {
        let r = self.layout.open_blob(&desc.digest).map_err(self.store_err())?;
        Ok(Box::new(VerifyingReader::new(r, desc.digest.clone(), Some(desc.size))))
    }

    fn resolve_tag(&self, tag: &str) -> Result<Option<Descriptor>, TransportError> {
        // The store names tags by repository (`app:sha256-….sig`); other layouts may too,
        // or may hold the bare tag.
        let keys = self
            .repository
            .iter()
            .map(|r| format!("{r}:{tag}"))
            .chain([tag.to_string()]);
        for key in keys {
            if let Some(mut d) = self.layout.resolve(&key).map_err(self.store_err())? {
                d.annotations.remove(crate::store::REF_NAME);
                return Ok(Some(d));
            }
        }
        Ok(None)
    }

    fn referrers(&self, subject: &Digest, artifact_type: Option<&str>) -> Result<Vec<Descriptor>, TransportError> {
        self.layout.referrers(subject, artifact_type).map_err(self.store_err())
    }

    fn layout(&self) -> Option<&Store> {
        Some(&self.layout)
    }
}

/// The bytes `desc` names read whole, for small JSON blobs (configs, signature payloads):
/// at most `limit` bytes, checked against digest and size.
pub fn read_small_blob(source: &dyn ImageSource, desc: &Descriptor, limit: u64) -> Result<Vec<u8>, TransportError> {
    let location = source.location();
    let what = || format!("blob {}", desc.digest);
    if desc.size > limit {
        return Err(oversize(&location, what(), desc.size, limit));
    }
    let mut out = Vec::with_capacity(desc.size as usize);
    source
        .open_blob(desc)?
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| TransportError::Invalid {
            image: location.clone(),
            what: what(),
            reason: e.to_string(),
            hint: "the content does not match its digest; fetch the image again",
        })?;
    if out.len() as u64 > limit {
        return Err(oversize(&location, what(), out.len() as u64, limit));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media;

    #[test]
    fn manifests_are_checked_and_bounded() {
        let bytes = br#"{"schemaVersion":2}"#;
        let desc = Descriptor::new(media::OCI_MANIFEST, Digest::sha256_of(bytes), bytes.len() as u64);
        assert!(check_manifest("x", &desc, bytes).is_ok());
        let err = check_manifest("x", &desc, b"{}").unwrap_err().to_string();
        assert!(err.contains("hashes to"), "{err}");
        let huge = Descriptor::new(media::OCI_MANIFEST, desc.digest.clone(), MAX_MANIFEST_BYTES + 1);
        let err = check_manifest("x", &huge, bytes).unwrap_err().to_string();
        assert!(err.contains("limit"), "{err}");
    }

    #[test]
    fn layout_blobs_are_verified_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = store.put_blob(b"hello").unwrap();
        let src = LayoutSource::new(store.clone(), SourceKind::Layout, None);
        let good = Descriptor::new(media::OCI_LAYER_TAR, d.clone(), 5);
        assert_eq!(read_small_blob(&src, &good, 100).unwrap(), b"hello");
        let short = Descriptor::new(media::OCI_LAYER_TAR, d.clone(), 4);
        assert!(read_small_blob(&src, &short, 100).is_err());
        assert!(read_small_blob(&src, &good, 3).is_err());
        std::fs::write(store.blob_path(&d), b"HELLO").unwrap();
        let err = read_small_blob(&src, &good, 100).unwrap_err().to_string();
        assert!(err.contains("digest mismatch"), "{err}");
    }
}
