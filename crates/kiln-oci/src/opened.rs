//! An image opened through [`crate::transport::open_image`]: what callers hold, whatever
//! the transport. It gives the resolved descriptor, the manifest and config of the chosen
//! platform, verified blob streams, the image's referrers and cosign tags, and, for readers
//! that need one, a layout holding every blob (the source's own, or a staging layout in the
//! store's temp dir filled from the source once).

use std::collections::BTreeSet;
use std::sync::OnceLock;

use crate::digest::Digest;
use crate::image::{Image, ImageConfig, choose_platform};
use crate::media;
use crate::source::{ImageSource, MAX_CONFIG_BYTES, read_small_blob};
use crate::store::{Descriptor, Index, LockGuard, Manifest, Platform, Store};
use crate::transport::TransportError;

/// The suffixes of cosign's tags beside an image: signatures, attestations, SBOMs.
pub const COSIGN_SUFFIXES: [&str; 3] = ["sig", "att", "sbom"];

/// An image ready to read, from any transport. See the module docs.
pub struct OpenedImage {
    pub(crate) source: Box<dyn ImageSource>,
    /// The descriptor the reference resolved to (an index for multi-arch images): what is
    /// signed, tagged or exported to keep every platform.
    pub descriptor: Descriptor,
    /// The image (for an index, the manifest chosen for the platform).
    pub image: Image,
    /// The store, whose temp dir receives a staging layout when one is needed.
    store: Store,
    staging: OnceLock<Staging>,
    /// Keeps an archive's temp layout alive as long as the image is in use.
    pub(crate) temp: Option<tempfile::TempDir>,
    /// A temp layout sits in the store's temp dir, so hold off `kiln prune` meanwhile.
    pub(crate) lease: Option<LockGuard>,
}

struct Staging {
    layout: Store,
    _dir: tempfile::TempDir,
    _lease: LockGuard,
}

impl std::fmt::Debug for OpenedImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.source.location(), self.descriptor.digest)
    }
}

/// Which part of a multi-arch image to copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The chosen platform's manifest and its blobs.
    Platform,
    /// The resolved descriptor with every manifest under it (`--all`).
    All,
}

impl OpenedImage {
    /// Reads the image `descriptor` resolves to (choosing `platform`'s manifest from an
    /// index) through `source`.
    pub(crate) fn read(
        source: Box<dyn ImageSource>,
        mut descriptor: Descriptor,
        platform: Option<&Platform>,
        store: &Store,
        image_name: &str,
    ) -> Result<OpenedImage, TransportError> {
        // A tag is where the image was found, not part of what it is.
        descriptor.annotations.remove(crate::store::REF_NAME);
        let image = read_image(source.as_ref(), &descriptor, platform, image_name)?;
        Ok(OpenedImage {
            source,
            descriptor,
            image,
            store: store.clone(),
            staging: OnceLock::new(),
            temp: None,
            lease: None,
        })
    }

    /// Where the image is read from.
    pub fn source(&self) -> &dyn ImageSource {
        self.source.as_ref()
    }

    /// The chosen manifest's layers, base first.
    pub fn layers(&self) -> &[Descriptor] {
        &self.image.manifest.layers
    }

    /// A verified stream of one of the image's blobs.
    pub fn open_blob(&self, desc: &Descriptor) -> Result<Box<dyn std::io::Read + Send + '_>, TransportError> {
        self.source.open_blob(desc)
    }

    /// Artifacts attached to the image (its resolved descriptor), optionally of one type.
    pub fn referrers(&self, artifact_type: Option<&str>) -> Result<Vec<Descriptor>, TransportError> {
        self.source.referrers(&self.descriptor.digest, artifact_type)
    }

    /// cosign's tags beside the image that exist: (tag, what it points at) for
    /// `sha256-<hex>.sig`, `.att` and `.sbom`.
    pub fn cosign_tags(&self) -> Result<Vec<(String, Descriptor)>, TransportError> {
        let mut out = Vec::new();
        for suffix in COSIGN_SUFFIXES {
            let tag = cosign_tag(&self.descriptor.digest, suffix);
            if let Some(d) = self.source.resolve_tag(&tag)? {
                out.push((tag, d));
            }
        }
        Ok(out)
    }

    /// A layout holding the chosen manifest, its config and layers: the source's own when
    /// it has one, else a staging layout in the store's temp dir, filled from the source on
    /// first use and removed with the image.
    pub fn layout(&self) -> Result<&Store, TransportError> {
        if let Some(l) = self.source.layout() {
            return Ok(l);
        }
        if let Some(s) = self.staging.get() {
            return Ok(&s.layout);
        }
        let staging = self.new_staging()?;
        self.copy_into(&staging.layout, Scope::Platform)?;
        Ok(&self.staging.get_or_init(|| staging).layout)
    }

    fn new_staging(&self) -> Result<Staging, TransportError> {
        let err = |source| TransportError::Store {
            image: self.source.location(),
            source,
        };
        let lease = self.store.lease().map_err(err)?;
        let (layout, dir) = self.store.temp_layout("staging-").map_err(err)?;
        Ok(Staging {
            layout,
            _dir: dir,
            _lease: lease,
        })
    }

    /// Copies the image into `to` (nothing when `to` is the source's own layout): blobs
    /// first, then manifests children before parents, so `to` never holds a manifest whose
    /// blobs are missing. Returns the descriptor of what was copied. Tags nothing.
    pub fn copy_into(&self, to: &Store, scope: Scope) -> Result<Descriptor, TransportError> {
        let top = self.top(scope);
        if self.source.layout().is_some_and(|l| l.root() == to.root()) {
            return Ok(top);
        }
        self.copy_graph(&top, to)?;
        Ok(top)
    }

    /// What [`Scope`] names: the resolved descriptor, or the chosen platform's manifest.
    pub fn top(&self, scope: Scope) -> Descriptor {
        match scope {
            Scope::All => self.descriptor.clone(),
            Scope::Platform => self.image.descriptor.clone(),
        }
    }

    /// Copies `top` and everything under it from the source into `to`, blobs before the
    /// manifests that name them; returns the manifests copied.
    pub(crate) fn copy_graph(&self, top: &Descriptor, to: &Store) -> Result<Vec<Descriptor>, TransportError> {
        let err = |source| TransportError::Store {
            image: self.source.location(),
            source,
        };
        let _lease = to.lease().map_err(err)?;
        let (manifests, blobs) = self.graph(top)?;
        self.source.fetch_blobs(&blobs, to)?;
        let mut copied = Vec::with_capacity(manifests.len());
        for (d, bytes) in manifests {
            to.put_blob_from(&bytes[..], Some((&d.digest, Some(d.size))))
                .map_err(err)?;
            copied.push(d);
        }
        Ok(copied)
    }

    /// Every manifest under `top` with its bytes (children first) and every blob they name.
    #[allow(clippy::type_complexity)]
    pub(crate) fn graph(
        &self,
        top: &Descriptor,
    ) -> Result<(Vec<(Descriptor, Vec<u8>)>, Vec<Descriptor>), TransportError> {
        let mut manifests = Vec::new();
        let mut blobs = Vec::new();
        let mut seen = BTreeSet::new();
        let mut todo = vec![top.clone()];
        while let Some(d) = todo.pop() {
            if !seen.insert(d.digest.clone()) {
                continue;
            }
            let bytes = self.source.read_manifest(&d)?;
            if media::is_index(&d.media_type) {
                let index: Index = parse(&self.source.location(), &d, &bytes)?;
                todo.extend(index.manifests.into_iter().filter(|m| is_document(&m.media_type)));
            } else {
                let m: Manifest = parse(&self.source.location(), &d, &bytes)?;
                for b in std::iter::once(m.config).chain(m.layers) {
                    if seen.insert(b.digest.clone()) {
                        blobs.push(b);
                    }
                }
            }
            manifests.push((d, bytes));
        }
        // Parents were pushed before their children: reversed, children come first.
        manifests.reverse();
        Ok((manifests, blobs))
    }
}

/// True for the config media types of runnable images (OCI and Docker).
fn is_image_config(media_type: &str) -> bool {
    media_type == media::OCI_CONFIG || media_type == media::DOCKER_CONFIG
}

/// True for manifests and indexes (what `read_manifest` reads), not blobs.
fn is_document(media_type: &str) -> bool {
    media::is_manifest(media_type) || media::is_index(media_type)
}

/// The cosign tag for `digest` with `suffix` (`sig`, `att`, `sbom`): `sha256-<hex>.sig`.
pub fn cosign_tag(digest: &Digest, suffix: &str) -> String {
    format!("{}-{}.{suffix}", digest.algorithm().as_str(), digest.hex())
}

fn parse<T: for<'de> serde::Deserialize<'de>>(
    location: &str,
    desc: &Descriptor,
    bytes: &[u8],
) -> Result<T, TransportError> {
    serde_json::from_slice(bytes).map_err(|e| TransportError::Invalid {
        image: location.to_string(),
        what: format!("manifest {}", desc.digest),
        reason: format!("malformed JSON: {e}"),
        hint: "the image is damaged; fetch or build it again",
    })
}

/// Reads a manifest (choosing the platform's entry if `desc` is an index: the one asked
/// for, else this machine's, else the first) and its config through `source`.
fn read_image(
    source: &dyn ImageSource,
    desc: &Descriptor,
    platform: Option<&Platform>,
    image_name: &str,
) -> Result<Image, TransportError> {
    let location = source.location();
    let mut desc = desc.clone();
    if media::is_index(&desc.media_type) {
        let index: Index = parse(&location, &desc, &source.read_manifest(&desc)?)?;
        let chosen = match platform {
            Some(p) => choose_platform(&index, p),
            None => choose_platform(&index, &crate::archive::host_platform())
                .or_else(|| index.manifests.iter().find(|m| media::is_manifest(&m.media_type))),
        };
        desc = match (chosen, platform) {
            (Some(d), _) => d.clone(),
            (None, Some(p)) => {
                return Err(TransportError::NoPlatform {
                    image: image_name.to_string(),
                    os: p.os.clone(),
                    architecture: p.architecture.clone(),
                });
            }
            (None, None) => {
                return Err(TransportError::Invalid {
                    image: location,
                    what: format!("index {}", desc.digest),
                    reason: "it lists no image manifest".into(),
                    hint: "the index is empty or holds only other indexes",
                });
            }
        };
    } else if !media::is_manifest(&desc.media_type) {
        return Err(TransportError::Invalid {
            image: location,
            what: format!("{} {}", desc.media_type, desc.digest),
            reason: "this is not an image manifest or index".into(),
            hint: "name an image, not an artifact or a blob",
        });
    }
    let manifest: Manifest = parse(&location, &desc, &source.read_manifest(&desc)?)?;
    let config = if is_image_config(&manifest.config.media_type) {
        let bytes = read_small_blob(source, &manifest.config, MAX_CONFIG_BYTES)?;
        serde_json::from_slice(&bytes).map_err(|e| TransportError::Invalid {
            image: location.clone(),
            what: format!("config {}", manifest.config.digest),
            reason: format!("malformed JSON: {e}"),
            hint: "the image is damaged; fetch or build it again",
        })?
    } else {
        // An artifact (a chart, an SBOM, a signature): it can be signed, verified and
        // copied, and has no runtime config to read.
        ImageConfig::default()
    };
    Ok(Image {
        descriptor: desc,
        manifest,
        config,
    })
}
