//! The steps the kiln.toml frontend emits: a layer of Debian packages, and a layer given
//! entry by entry (accounts and the spec's `files`). Both write exactly what the plan says;
//! the solver caches them like any other step.

use std::path::Path;

use kiln_oci::Store;
use kiln_oci::layer::{EntryKind, FileSource, LayerEntry};
use kiln_plan::plan::{DebianOp, FileKind, FilesOp};
use sha2::{Digest as _, Sha256};

use crate::error::BuildError;

/// The entries of a Debian packages layer, each .deb read from kiln's content-addressed
/// cache (fetched on a miss and checked against the sha256 the plan pins).
pub fn debian_entries(store: &Store, op: &DebianOp, source_date_epoch: i64) -> Result<Vec<LayerEntry>, BuildError> {
    let cache = kiln_debian::repo::cache_dir(&store.meta_dir());
    Ok(kiln_debian::layer::package_layer(
        &cache,
        &op.packages,
        source_date_epoch,
    )?)
}

/// The entries of a [`FilesOp`]; `Context` files are read from `root` when the layer is
/// written.
pub fn file_entries(op: &FilesOp, root: &Path, source_date_epoch: i64) -> Result<Vec<LayerEntry>, BuildError> {
    let mut out = Vec::with_capacity(op.entries.len());
    for e in &op.entries {
        let kind = match &e.kind {
            FileKind::Dir => EntryKind::Dir,
            FileKind::File { content } => EntryKind::File {
                size: content.len() as u64,
                source: FileSource::Bytes(content.clone().into_bytes()),
            },
            FileKind::Context { src } => {
                let p = root.join(src);
                let meta = std::fs::metadata(&p).map_err(|source| BuildError::Io {
                    path: p.display().to_string(),
                    source,
                })?;
                EntryKind::File {
                    size: meta.len(),
                    source: FileSource::Path(p),
                }
            }
            FileKind::Symlink { target } => EntryKind::Symlink(target.clone()),
        };
        out.push(LayerEntry {
            path: e.path.clone(),
            kind,
            mode: e.mode,
            uid: e.uid.into(),
            gid: e.gid.into(),
            mtime: source_date_epoch,
            xattrs: vec![],
        });
    }
    Ok(out)
}

/// What a [`FilesOp`]'s cache key takes from outside the plan: the content of its
/// `Context` files, in order.
pub fn content_key(op: &FilesOp, root: &Path) -> Result<[u8; 32], BuildError> {
    let mut h = Sha256::new();
    for e in &op.entries {
        if let FileKind::Context { src } = &e.kind {
            let p = root.join(src);
            let data = std::fs::read(&p).map_err(|source| BuildError::Io {
                path: p.display().to_string(),
                source,
            })?;
            h.update(src.as_bytes());
            h.update([0]);
            h.update(Sha256::digest(&data));
        }
    }
    Ok(h.finalize().into())
}
