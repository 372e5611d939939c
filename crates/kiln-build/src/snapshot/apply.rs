//! The applier: makes the snapshot of a stack of layers from the store's blobs, checking
//! every layer's content against the diff_id its image claims before anything of it is
//! trusted.
//!
//! Snapshots are keyed by chain ID, which is computed from claimed diff_ids, so the claim
//! itself must be checked: an image that claims a popular base's diff_ids but carries its
//! own layer would otherwise poison every later build on that base. A layer is checked
//! while it is unpacked (its uncompressed stream is hashed on the way through); a blob that
//! maps to an already published snapshot is checked once by hashing it alone, and the
//! result recorded under `snapshots/.verified/`.

use std::path::PathBuf;

use kiln_oci::digest::VerifyingReader;
use kiln_oci::unpack::{UnpackOptions, WhiteoutMode};
use kiln_oci::{Digest, Store};

use super::{Active, Snapshotter, chain_id, io_err, snapshots_dir};
use crate::error::BuildError;
use crate::solver::LayerRef;

impl Snapshotter<'_> {
    /// The snapshot of the rootfs after `layers` (the last one applied on top of the
    /// others). Made once and reused by every later build.
    ///
    /// The layer is applied through an overlay of the snapshots below it, as containerd's
    /// snapshotter does: a parent directory the layer's tar does not list is copied up with
    /// its real owner and mode, rather than invented as root's 0755, which would hide them.
    pub fn unpacked(&self, layers: &[LayerRef], image: &str) -> Result<PathBuf, BuildError> {
        let layer = layers.last().expect("at least one layer");
        let chain = chain_id(layers);
        if let Some(dir) = self.trusted(&chain) {
            return Ok(dir);
        }
        let lowers = (1..layers.len())
            .map(|n| self.unpacked(&layers[..n], image))
            .collect::<Result<Vec<_>, _>>()?;
        let _g = self.unpack_lock.lock().unwrap();
        if let Some(dir) = self.get(&chain, &layer.diff_id) {
            self.check_blob(layer, image)?;
            return Ok(self.trust(chain, dir));
        }
        let active = self.prepare()?;
        self.apply(layer, &lowers, image, &active)?;
        record_verified(self.store, layer)?;
        let dir = self.commit(active, &chain, &layer.diff_id)?;
        Ok(self.trust(chain, dir))
    }

    /// The snapshot directories of every prefix of `layers`, bottom first: the lower dirs
    /// of an overlay (or a layered view) of the rootfs after `layers`.
    pub fn stack(&self, layers: &[LayerRef], image: &str) -> Result<Vec<PathBuf>, BuildError> {
        (1..=layers.len()).map(|n| self.unpacked(&layers[..n], image)).collect()
    }

    /// Unpacks `layer` into `active` over `lowers`, hashing the uncompressed stream, and
    /// fails unless it hashes to the layer's diff_id.
    fn apply(&self, layer: &LayerRef, lowers: &[PathBuf], image: &str, active: &Active) -> Result<(), BuildError> {
        let blob = self.store.open_blob(&layer.descriptor.digest)?;
        let stream = kiln_oci::decompress::open_layer_stream_for_media_type(blob, &layer.descriptor.media_type)
            .map_err(|source| BuildError::Io {
                path: layer.descriptor.digest.to_string(),
                source,
            })?;
        let mut hashing = VerifyingReader::hashing(stream, layer.diff_id.algorithm());
        // Through an overlay when there is something below and we may mount (root, or the
        // user namespace of a rootless build); otherwise straight into the snapshot, with
        // whiteouts recorded the way overlay would.
        let (upper, merged) = (active.upper(), active.merged());
        let mount = if lowers.is_empty() {
            None
        } else {
            crate::run::overlay::OverlayMount::mount(lowers, &upper, &active.work(), &merged, &active.empty()).ok()
        };
        let (target, whiteouts) = match &mount {
            Some(_) => (&merged, WhiteoutMode::Apply),
            None => (&upper, WhiteoutMode::Keep),
        };
        let opts = UnpackOptions {
            whiteouts,
            ..Default::default()
        };
        kiln_oci::unpack::unpack_layer(&mut hashing, target, &opts).map_err(|source| {
            if is_disk_full(&source) {
                return BuildError::DiskFull {
                    at: format!("image {image}, layer {}", layer.descriptor.digest),
                    path: self.store.meta_dir().display().to_string(),
                    free: free_bytes(&self.store.meta_dir()),
                };
            }
            BuildError::Unpack {
                image: image.to_string(),
                layer: layer.descriptor.digest.to_string(),
                source,
            }
        })?;
        drop(mount);
        let (actual, _) = hashing.drain().map_err(io_err(&upper))?;
        check(layer, &actual, image)
    }

    /// Makes sure `layer`'s blob really holds the content of its diff_id, when the snapshot
    /// of that diff_id was made from another blob (or before the check was recorded).
    fn check_blob(&self, layer: &LayerRef, image: &str) -> Result<(), BuildError> {
        let record = verified_path(self.store, &layer.descriptor.digest);
        if std::fs::read_to_string(&record).is_ok_and(|d| d.trim() == layer.diff_id.to_string()) {
            return Ok(());
        }
        let blob = self.store.open_blob(&layer.descriptor.digest)?;
        let stream = kiln_oci::decompress::open_layer_stream_for_media_type(blob, &layer.descriptor.media_type)
            .map_err(|source| BuildError::Io {
                path: layer.descriptor.digest.to_string(),
                source,
            })?;
        let limited = std::io::Read::take(stream, kiln_oci::unpack::max_layer_bytes());
        let (actual, _) = VerifyingReader::hashing(limited, layer.diff_id.algorithm())
            .drain()
            .map_err(|source| BuildError::Io {
                path: layer.descriptor.digest.to_string(),
                source,
            })?;
        check(layer, &actual, image)?;
        record_verified(self.store, layer)
    }
}

fn check(layer: &LayerRef, actual: &Digest, image: &str) -> Result<(), BuildError> {
    if actual == &layer.diff_id {
        return Ok(());
    }
    Err(BuildError::DiffIdMismatch {
        image: image.to_string(),
        layer: layer.descriptor.digest.to_string(),
        claimed: layer.diff_id.to_string(),
        actual: actual.to_string(),
    })
}

/// Where the result of checking a blob against its diff_id is kept.
fn verified_path(store: &Store, blob: &Digest) -> PathBuf {
    snapshots_dir(store)
        .join(".verified")
        .join(format!("{}-{}", blob.algorithm().as_str(), blob.hex()))
}

/// Records that `layer`'s blob decompresses to its diff_id.
fn record_verified(store: &Store, layer: &LayerRef) -> Result<(), BuildError> {
    let path = verified_path(store, &layer.descriptor.digest);
    let dir = path.parent().expect("has a parent");
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    kiln_oci::store::atomic_write(&store.tmp_dir(), &path, layer.diff_id.to_string().as_bytes())?;
    Ok(())
}

/// True when an unpack failed for want of space (ENOSPC or EDQUOT), an environment failure
/// rather than a bad layer.
fn is_disk_full(e: &kiln_oci::unpack::UnpackError) -> bool {
    use kiln_oci::unpack::UnpackError as U;
    let source = match e {
        U::Entry { source, .. } | U::Stream { source, .. } => source.as_ref(),
        _ => None,
    };
    source.is_some_and(|s| {
        matches!(
            s.kind(),
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
        )
    })
}

/// Free bytes on the filesystem holding `dir` (0 if unknown).
fn free_bytes(dir: &std::path::Path) -> u64 {
    rustix::fs::statvfs(dir).map_or(0, |s| s.f_bavail.saturating_mul(s.f_frsize))
}
