//! Turning any [`ImageRef`] into an image kiln can read, and writing an image to any
//! destination one names.
//!
//! Every command that takes an image (`kiln sbom`, `scan`, `push`, `save`, `FROM oci:…`)
//! goes through [`open_image`], so they all accept the same transports and fail with the
//! same messages. Archives are loaded into a temp layout inside the store's temp dir (same
//! filesystem as the store, not a possibly small tmpfs), which lives as long as the
//! [`OpenedImage`].

use std::path::Path;

use crate::archive::{self, ArchiveError, CONTAINERD_IMAGE_NAME, Loaded};
use crate::digest::Digest;
use crate::image::{self, Image};
use crate::media;
use crate::reference::{ImageRef, Name};
use crate::store::{Descriptor, LockGuard, Platform, Store, StoreError};

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
}

fn store_err(image: &ImageRef) -> impl FnOnce(StoreError) -> TransportError + '_ {
    move |source| TransportError::Store {
        image: image.to_string(),
        source,
    }
}

/// An image ready to read: its manifest and config, and the layout holding its blobs.
#[derive(Debug)]
pub struct OpenedImage {
    /// The layout to read blobs from: the store itself, a foreign `oci:` layout (verified on
    /// every read), or a temp layout an archive was loaded into.
    pub layout: Store,
    /// The image (for an index, the manifest chosen for the platform).
    pub image: Image,
    /// The descriptor the reference resolved to (an index for multi-arch images), which is
    /// what to tag or export to keep every platform.
    pub descriptor: Descriptor,
    /// Keeps an archive's temp layout alive as long as the image is in use.
    _temp: Option<tempfile::TempDir>,
    /// The temp layout sits in the store's temp dir, so hold off `kiln prune` meanwhile.
    _lease: Option<LockGuard>,
}

/// Resolves `r` to an image. Store names resolve through the store's index; a digest must be
/// an indexed image or a manifest present in the store; `oci:DIR[:REF]` is read in place;
/// archives are loaded into a temp layout first. With no REF, a layout or archive holding
/// exactly one image yields it; otherwise the error lists the choices.
pub fn open_image(store: &Store, r: &ImageRef, platform: Option<&Platform>) -> Result<OpenedImage, TransportError> {
    match r {
        // A digest pin names content: it wins over the tag, as in docker.
        ImageRef::Store(Name { digest: Some(d), .. }) => {
            let desc = resolve_digest(store, d)
                .map_err(store_err(r))?
                .ok_or_else(|| TransportError::NotFound {
                    image: r.to_string(),
                    location: format!("the store at {}", store.root().display()),
                    hint: "the pinned digest is not in the store; build, load or pull that exact image".into(),
                })?;
            read(store.clone(), desc, r, platform, None)
        }
        ImageRef::Store(name) => {
            let key = name.store_key();
            let desc = store
                .resolve(&key)
                .map_err(store_err(r))?
                .ok_or_else(|| TransportError::NotFound {
                    image: key.clone(),
                    location: format!("the store at {}", store.root().display()),
                    hint: "list images with `kiln images`, or build or pull it first".into(),
                })?;
            read(store.clone(), desc, r, platform, None)
        }
        ImageRef::StoreDigest(d) => {
            let desc = resolve_digest(store, d)
                .map_err(store_err(r))?
                .ok_or_else(|| TransportError::NotFound {
                    image: d.to_string(),
                    location: format!("the store at {}", store.root().display()),
                    hint: "give the digest of a manifest or index; list images with `kiln images`".into(),
                })?;
            read(store.clone(), desc, r, platform, None)
        }
        ImageRef::OciDir { path, reference } => {
            let layout = Store::open_foreign(path).map_err(store_err(r))?;
            let index = layout.index().map_err(store_err(r))?;
            let mut candidates: Vec<Loaded> = Vec::new();
            for m in index.manifests {
                let names: Vec<String> = [
                    m.ref_name(),
                    m.annotations.get(CONTAINERD_IMAGE_NAME).map(String::as_str),
                ]
                .into_iter()
                .flatten()
                .map(str::to_string)
                .collect();
                candidates.push(Loaded { descriptor: m, names });
            }
            let desc = pick(&candidates, reference.as_deref(), path, "oci", r)?;
            read(layout, desc, r, platform, None)
        }
        ImageRef::OciArchive { path, reference } | ImageRef::DockerArchive { path, reference } => {
            let tmp = store.tmp_dir();
            std::fs::create_dir_all(&tmp).map_err(|source| {
                store_err(r)(StoreError::Io {
                    path: tmp.clone(),
                    source,
                })
            })?;
            let dir = tempfile::Builder::new()
                .prefix("archive-")
                .tempdir_in(&tmp)
                .map_err(|source| {
                    store_err(r)(StoreError::Io {
                        path: tmp.clone(),
                        source,
                    })
                })?;
            let lease = store.lease().map_err(store_err(r))?;
            let layout = Store::open(dir.path()).map_err(store_err(r))?;
            let loaded = archive::load(&layout, path)?;
            let transport = if matches!(r, ImageRef::OciArchive { .. }) {
                "oci-archive"
            } else {
                "docker-archive"
            };
            let desc = pick(&loaded, reference.as_deref(), path, transport, r)?;
            let mut opened = read(layout, desc, r, platform, Some(dir))?;
            opened._lease = Some(lease);
            Ok(opened)
        }
        ImageRef::Registry(_) => Err(TransportError::NotFound {
            image: r.to_string(),
            location: "the local store (this command reads registries only through kiln-registry)".into(),
            hint: "pull it first with `kiln pull`, or use a command that talks to registries".into(),
        }),
    }
}

/// An index entry with that digest, else a manifest or index blob with it.
fn resolve_digest(store: &Store, d: &Digest) -> Result<Option<Descriptor>, StoreError> {
    if let Some(mut m) = store.index()?.manifests.into_iter().find(|m| &m.digest == d) {
        m.annotations.remove(crate::store::REF_NAME);
        return Ok(Some(m));
    }
    if !store.has_blob(d) {
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

fn pick(
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

fn read(
    layout: Store,
    desc: Descriptor,
    r: &ImageRef,
    platform: Option<&Platform>,
    temp: Option<tempfile::TempDir>,
) -> Result<OpenedImage, TransportError> {
    let image = image::read_image(&layout, &desc, platform).map_err(store_err(r))?;
    if let Some(p) = platform
        && media::is_index(&desc.media_type)
        && (image.config.os != p.os || image.config.architecture != p.architecture)
    {
        return Err(TransportError::NoPlatform {
            image: r.to_string(),
            os: p.os.clone(),
            architecture: p.architecture.clone(),
        });
    }
    Ok(OpenedImage {
        layout,
        image,
        descriptor: desc,
        _temp: temp,
        _lease: None,
    })
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
