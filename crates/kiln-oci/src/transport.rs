//! Turning any [`ImageRef`] into an image kiln can read, and writing an image to any
//! destination one names.
//!
//! Every command that takes an image (`kiln sbom`, `scan`, `sign`, `verify`, `inspect`,
//! `push`, `save`, `FROM oci:…`) goes through [`open_image`], so they all accept the same
//! transports, decide "is this image remote?" the same way, and fail with the same
//! messages. Registries are reached through the caller's [`Registries`] (kiln-registry), so
//! this crate has no network code. Archives are loaded into a temp layout inside the
//! store's temp dir (same filesystem as the store, not a possibly small tmpfs), which lives
//! as long as the [`OpenedImage`].

use std::path::Path;

use crate::archive::{self, ArchiveError, CONTAINERD_IMAGE_NAME, Loaded};
use crate::digest::Digest;
use crate::media;
pub use crate::opened::{OpenedImage, Scope};
use crate::reference::{ImageRef, Name};
use crate::source::{LayoutSource, Registries, SourceKind};
use crate::store::{Descriptor, Platform, Store, StoreError};

/// Why an image could not be opened or written. Messages name the image as the user wrote it
/// and end with a hint.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Nothing by that name or digest.
    #[error("image {image:?} not found in {location} (hint: {hint})")]
    NotFound {
        /// The image as named.
        image: String,
        /// Where kiln looked, e.g. `the store at /x`.
        location: String,
        /// What to do.
        hint: String,
    },
    /// A layout or archive holds several images and none was chosen.
    #[error("{image} holds {} images, so it needs a reference to choose one: {} (hint: append :REF, e.g. {image}:{})", .choices.len(), .choices.join(", "), .choices.first().map(String::as_str).unwrap_or("REF"))]
    Ambiguous {
        /// The layout or archive as named.
        image: String,
        /// The names (or digests, for untagged entries) it holds.
        choices: Vec<String>,
    },
    /// A multi-arch image without the requested platform.
    #[error("image {image:?} has no manifest for {os}/{architecture} (hint: pick another --platform)")]
    NoPlatform {
        /// The image as named.
        image: String,
        /// Requested OS.
        os: String,
        /// Requested architecture.
        architecture: String,
    },
    /// The destination cannot receive an image.
    #[error("cannot write an image to {dest}: {reason} (hint: {hint})")]
    BadDestination {
        /// The destination as named.
        dest: String,
        /// Why not.
        reason: String,
        /// What to write instead.
        hint: &'static str,
    },
    /// The store or a layout failed (the message names the blob and layout).
    #[error("image {image:?}: {source}")]
    Store {
        /// The image as named.
        image: String,
        /// The underlying error.
        source: StoreError,
    },
    /// Reading or writing an archive failed (the message names the archive and entry).
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// Content from outside was refused: over a size limit, not matching its digest, not
    /// the JSON it should be.
    #[error("{image}: {what}: {reason} (hint: {hint})")]
    Invalid {
        /// Where the content came from.
        image: String,
        /// What was read, e.g. `manifest sha256:…`.
        what: String,
        /// What is wrong with it.
        reason: String,
        /// What to do.
        hint: &'static str,
    },
    /// A registry failed; the message is the registry client's own (registry, repository,
    /// what kiln was doing, a hint).
    #[error("{source}")]
    Remote {
        /// The registry client's error.
        source: Box<dyn std::error::Error + Send + Sync>,
        /// True when the user can fix it (a name, credentials), false for the environment.
        input: bool,
    },
}

impl TransportError {
    /// True when the user can fix it by changing what they typed (exit 2), false for
    /// environment failures (exit 3).
    pub fn is_input(&self) -> bool {
        match self {
            TransportError::Store {
                source: StoreError::Io { .. },
                ..
            } => false,
            TransportError::Remote { input, .. } => *input,
            _ => true,
        }
    }
}

/// Whether, and when, a reference is read from its registry.
#[derive(Clone, Copy)]
pub enum Remote<'a> {
    /// Only the store and files: for commands that never talk to registries.
    Never,
    /// A host-qualified name (`127.0.0.1:5000/app:1`) comes from the store when the store
    /// has it, else from its registry; `docker://NAME` always from the registry. The
    /// default of the read-only commands, as `docker inspect` and trivy look locally first.
    Fallback(&'a dyn Registries),
    /// Host-qualified names and `docker://NAME` come from their registry: `kiln sign` and
    /// `kiln verify` of a registry reference work on what the registry holds.
    Always(&'a dyn Registries),
}

fn store_err(image: &ImageRef) -> impl FnOnce(StoreError) -> TransportError + '_ {
    move |source| TransportError::Store {
        image: image.to_string(),
        source,
    }
}

/// Resolves `r` to an image. Store names resolve through the store's index; a digest must be
/// an indexed image or a manifest present in the store; `oci:DIR[:REF]` is read in place;
/// archives are loaded into a temp layout first; registry names are read from their
/// registry as `remote` says. With no REF, a layout or archive holding exactly one image
/// yields it; otherwise the error lists the choices. `platform` picks a multi-arch image's
/// manifest (default: this machine's if the index has it, else the first).
pub fn open_image(
    store: &Store,
    r: &ImageRef,
    platform: Option<&Platform>,
    remote: Remote<'_>,
) -> Result<OpenedImage, TransportError> {
    if let Some((registries, name)) = registry_side(store, r, remote)? {
        let (source, desc) = registries.open(store, &name)?;
        return OpenedImage::read(source, desc, platform, store, &r.to_string());
    }
    match r {
        ImageRef::Store(_) | ImageRef::StoreDigest(_) | ImageRef::Registry(_) => {
            let (desc, repository) = resolve_in_store(store, r)?;
            let source = LayoutSource::new(store.clone(), SourceKind::Store, repository);
            OpenedImage::read(Box::new(source), desc, platform, store, &r.to_string())
        }
        ImageRef::OciDir { path, reference } => {
            let layout = Store::open_foreign(path).map_err(store_err(r))?;
            let index = layout.index().map_err(store_err(r))?;
            let candidates: Vec<Loaded> = index.manifests.into_iter().map(loaded).collect();
            let desc = pick(&candidates, reference.as_deref(), path, "oci", r)?;
            let repository = reference
                .as_deref()
                .and_then(|n| Name::parse(n).ok())
                .map(|n| n.repository);
            let source = LayoutSource::new(layout, SourceKind::Layout, repository);
            OpenedImage::read(Box::new(source), desc, platform, store, &r.to_string())
        }
        ImageRef::OciArchive { path, reference } | ImageRef::DockerArchive { path, reference } => {
            open_archive(store, r, path, reference.as_deref(), platform)
        }
    }
}

/// The registry and name `r` is read from, or `None` for the store and files.
fn registry_side<'a>(
    store: &Store,
    r: &ImageRef,
    remote: Remote<'a>,
) -> Result<Option<(&'a dyn Registries, Name)>, TransportError> {
    let (registries, fallback) = match remote {
        Remote::Never => return Ok(None),
        Remote::Fallback(reg) => (reg, true),
        Remote::Always(reg) => (reg, false),
    };
    let Some(name) = r.registry_name() else {
        return Ok(None);
    };
    // docker:// always means the registry; a host-qualified name may mean the store's copy.
    if fallback && matches!(r, ImageRef::Store(_)) && in_store(store, name).map_err(store_err(r))? {
        return Ok(None);
    }
    Ok(Some((registries, name.clone())))
}

/// True if the store holds the image `n` names (by its tag, or by its pinned digest).
fn in_store(store: &Store, n: &Name) -> Result<bool, StoreError> {
    Ok(match &n.digest {
        Some(d) => resolve_digest(store, d)?.is_some(),
        None => store.resolve(&n.store_key())?.is_some(),
    })
}

/// A store reference's descriptor and the repository it is named under.
fn resolve_in_store(store: &Store, r: &ImageRef) -> Result<(Descriptor, Option<String>), TransportError> {
    let not_found = |image: String, hint: &str| TransportError::NotFound {
        image,
        location: format!("the store at {}", store.root().display()),
        hint: hint.into(),
    };
    let found = match r {
        // A digest pin names content: it wins over the tag, as in docker.
        ImageRef::Store(n @ Name { digest: Some(d), .. }) | ImageRef::Registry(n @ Name { digest: Some(d), .. }) => {
            let desc = resolve_digest(store, d).map_err(store_err(r))?.ok_or_else(|| {
                not_found(
                    r.to_string(),
                    "the pinned digest is not in the store; build, load or pull that exact image",
                )
            })?;
            (desc, Some(n.repository.clone()))
        }
        ImageRef::Store(n) | ImageRef::Registry(n) => {
            let key = n.store_key();
            let desc = store.resolve(&key).map_err(store_err(r))?.ok_or_else(|| {
                let hint = match n.registry_host() {
                    Some(_) => "pull it first with `kiln pull`, or list images with `kiln images`",
                    None => "list images with `kiln images`, or build or pull it first",
                };
                not_found(key.clone(), hint)
            })?;
            (desc, Some(n.repository.clone()))
        }
        ImageRef::StoreDigest(d) => {
            let desc = resolve_digest(store, d).map_err(store_err(r))?.ok_or_else(|| {
                not_found(
                    d.to_string(),
                    "give the digest of a manifest or index; list images with `kiln images`",
                )
            })?;
            (desc, repository_of(store, d).map_err(store_err(r))?)
        }
        _ => unreachable!("only store references resolve in the store"),
    };
    Ok(found)
}

/// The repository of the first name the store gives the image `d`, if any.
fn repository_of(store: &Store, d: &Digest) -> Result<Option<String>, StoreError> {
    Ok(store
        .index()?
        .manifests
        .iter()
        .filter(|m| &m.digest == d)
        .filter_map(|m| m.ref_name().and_then(|n| Name::parse(n).ok()))
        .map(|n| n.repository)
        .next())
}

/// A layout's index entry as a candidate image, with the names it carries.
fn loaded(m: Descriptor) -> Loaded {
    let names: Vec<String> = [
        m.ref_name(),
        m.annotations.get(CONTAINERD_IMAGE_NAME).map(String::as_str),
    ]
    .into_iter()
    .flatten()
    .map(str::to_string)
    .collect();
    Loaded { descriptor: m, names }
}

/// Loads an archive into a temp layout in the store's temp dir and opens the image in it.
fn open_archive(
    store: &Store,
    r: &ImageRef,
    path: &Path,
    reference: Option<&str>,
    platform: Option<&Platform>,
) -> Result<OpenedImage, TransportError> {
    let lease = store.lease().map_err(store_err(r))?;
    let (layout, dir) = store.temp_layout("archive-").map_err(store_err(r))?;
    let loaded = archive::load(&layout, path)?;
    let transport = if matches!(r, ImageRef::OciArchive { .. }) {
        "oci-archive"
    } else {
        "docker-archive"
    };
    let desc = pick(&loaded, reference, path, transport, r)?;
    let repository = reference.and_then(|n| Name::parse(n).ok()).map(|n| n.repository);
    let source = LayoutSource::new(layout, SourceKind::Layout, repository);
    let mut opened = OpenedImage::read(Box::new(source), desc, platform, store, &r.to_string())?;
    opened.temp = Some(dir);
    opened.lease = Some(lease);
    Ok(opened)
}

/// An index entry with that digest, else a manifest or index blob with it.
fn resolve_digest(store: &Store, d: &Digest) -> Result<Option<Descriptor>, StoreError> {
    if let Some(mut m) = store.index()?.manifests.into_iter().find(|m| &m.digest == d) {
        m.annotations.remove(crate::store::REF_NAME);
        return Ok(Some(m));
    }
    // A blob bigger than any manifest (a layer, or a hostile config) is not read to find out.
    let size = std::fs::metadata(store.blob_path(d)).map(|m| m.len());
    if !matches!(size, Ok(n) if n <= crate::source::MAX_MANIFEST_BYTES) {
        return Ok(None);
    }
    let bytes = store.read_blob(d)?;
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return Ok(None);
    };
    let media_type = match v.get("mediaType").and_then(|m| m.as_str()) {
        Some(mt) => mt.to_string(),
        // mediaType is optional in both documents; their shapes tell them apart.
        None if v.get("manifests").is_some() => media::OCI_INDEX.to_string(),
        None if v.get("config").is_some() => media::OCI_MANIFEST.to_string(),
        None => return Ok(None),
    };
    if !media::is_manifest(&media_type) && !media::is_index(&media_type) {
        return Ok(None);
    }
    Ok(Some(Descriptor::new(media_type, d.clone(), bytes.len() as u64)))
}

/// True if two names denote the same image, allowing for Docker's implicit
/// `docker.io/library/` and `:latest`.
fn same_name(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    fn canon(s: &str) -> Option<String> {
        let n = Name::parse(s).ok()?;
        let repo = n.repository.strip_prefix("docker.io/").unwrap_or(&n.repository);
        let repo = repo.strip_prefix("library/").unwrap_or(repo);
        Some(
            Name {
                repository: repo.to_string(),
                ..n
            }
            .to_string(),
        )
    }
    matches!((canon(a), canon(b)), (Some(x), Some(y)) if x == y)
}

fn choice_names(candidates: &[Loaded]) -> Vec<String> {
    candidates
        .iter()
        .flat_map(|c| {
            if c.names.is_empty() {
                vec![c.descriptor.digest.to_string()]
            } else {
                c.names.clone()
            }
        })
        .collect()
}

pub(crate) fn pick(
    candidates: &[Loaded],
    reference: Option<&str>,
    path: &Path,
    transport: &str,
    r: &ImageRef,
) -> Result<Descriptor, TransportError> {
    let location = format!("{transport}:{}", path.display());
    match reference {
        Some(want) => candidates
            .iter()
            .find(|c| c.names.iter().any(|n| same_name(n, want)))
            .or_else(|| candidates.iter().find(|c| c.descriptor.digest.to_string() == want))
            .map(|c| c.descriptor.clone())
            .ok_or_else(|| {
                let names = choice_names(candidates);
                TransportError::NotFound {
                    image: r.to_string(),
                    location,
                    hint: if names.is_empty() {
                        "it holds no images".into()
                    } else {
                        format!("it holds {}", names.join(", "))
                    },
                }
            }),
        None => match candidates {
            [one] => Ok(one.descriptor.clone()),
            [] => Err(TransportError::NotFound {
                image: r.to_string(),
                location,
                hint: "it holds no images".into(),
            }),
            _ => Err(TransportError::Ambiguous {
                image: location,
                choices: choice_names(candidates),
            }),
        },
    }
}

/// Copies every blob of `image` from one layout to another, children before parents and
/// each verified on the way in, so the destination never lists a manifest whose layers are
/// missing. Blobs already present are skipped. Tags nothing.
pub fn copy_image(from: &Store, image: &Descriptor, to: &Store) -> Result<(), StoreError> {
    let _lease = to.lease()?;
    for (digest, size) in archive::collect_blobs(from, image)? {
        if to.has_blob(&digest) {
            continue;
        }
        let r = from.open_blob(&digest)?;
        to.put_blob_from(r, Some((&digest, Some(size))))?;
    }
    Ok(())
}

/// Writes `image`, which is in `store`, to `dest`: tags it in the store, copies it into an
/// `oci:` layout, or saves an `oci-archive` or `docker-archive`. It is named by the
/// destination's reference (if any) followed by `names` (e.g. repeated `-t` flags); a
/// layout with no names gets an untagged entry.
pub fn export(store: &Store, image: &Descriptor, dest: &ImageRef, names: &[String]) -> Result<(), TransportError> {
    let with_ref = |reference: &Option<String>| -> Vec<String> {
        reference.iter().cloned().chain(names.iter().cloned()).collect()
    };
    match dest {
        ImageRef::Store(name) => {
            let all: Vec<String> = std::iter::once(name.store_key()).chain(names.iter().cloned()).collect();
            for n in &all {
                store.tag(n, image).map_err(store_err(dest))?;
            }
            Ok(())
        }
        ImageRef::StoreDigest(_) => Err(TransportError::BadDestination {
            dest: dest.to_string(),
            reason: "a digest names content, it cannot be assigned".into(),
            hint: "give a name such as app:1, or oci:DIR:REF",
        }),
        ImageRef::OciDir { path, reference } => {
            let out = Store::open(path).map_err(store_err(dest))?;
            copy_image(store, image, &out).map_err(store_err(dest))?;
            let mut desc = image.clone();
            desc.annotations.remove(crate::store::REF_NAME);
            let all = with_ref(reference);
            if all.is_empty() {
                out.add_untagged(&desc).map_err(store_err(dest))?;
            }
            for n in &all {
                out.tag(n, &desc).map_err(store_err(dest))?;
            }
            Ok(())
        }
        ImageRef::OciArchive { path, reference } => {
            Ok(archive::save_oci_archive(store, image, &with_ref(reference), path)?)
        }
        ImageRef::DockerArchive { path, reference } => {
            Ok(archive::save_docker_archive(store, image, &with_ref(reference), path)?)
        }
        ImageRef::Registry(_) => Err(TransportError::BadDestination {
            dest: dest.to_string(),
            reason: "registries are written by kiln-registry".into(),
            hint: "use `kiln push` or `kiln copy` to send an image to a registry",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_names_match_their_short_forms() {
        assert!(same_name("docker.io/library/app:1", "app:1"));
        assert!(same_name("app", "app:latest"));
        assert!(!same_name("app:1", "app:2"));
        assert!(same_name("1.0", "1.0"));
    }
}
