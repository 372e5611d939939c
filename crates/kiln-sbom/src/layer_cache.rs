//! What the catalogers kept of each layer, by the layer's digest, beside a store kiln keeps.
//!
//! A build's SBOM covers its base too, and the base is the big part: cataloguing a
//! LABEL-only image on an 80 MiB Debian base spent 363 of its 367 ms inflating the base
//! layer. A layer is content-addressed, so what a walk of it finds (its changes and what the
//! [`Collector`] kept) never changes: it is written here once, after a walk that read the
//! layer to its end and checked its digest, and read back instead of decoding the layer
//! again. Entries are stamped with the cataloguer (format, kiln version, the running
//! binary) and the options that shape them; any other stamp is a miss. Only layouts kiln
//! itself keeps get a cache ([`Store::is_trusted`]): an `oci:DIR` of someone else's is
//! never written to.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use kiln_oci::walk::{Change, LayerWalk};
use kiln_oci::{Digest, Store};
use serde::{Deserialize, Serialize};

use crate::walk::{Collector, Content};
use crate::{Options, Package};

/// Bump when what a [`Collector`] keeps, or how it is written here, changes.
const FORMAT: u32 = 1;
/// An entry larger than this is not read (a layer of millions of files): the layer is
/// walked instead.
const MAX_ENTRY_BYTES: u64 = 256 << 20;

/// The per-layer cache of one store.
pub struct LayerCache {
    store: Store,
    dir: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    stamp: String,
    layer: Digest,
    changes: Vec<Change>,
    kept: BTreeMap<String, Kept>,
    warnings: Vec<String>,
}

#[derive(Serialize, Deserialize)]
enum Kept {
    /// A metadata file's bytes, base64.
    Raw(String),
    Found(Vec<Package>, Vec<String>),
}

/// Who made an entry: entries of another cataloguer, or other options, are misses.
fn stamp(opts: &Options) -> String {
    static BINARY: OnceLock<String> = OnceLock::new();
    let binary = BINARY.get_or_init(|| {
        // The running binary's identity, so a rebuilt kiln (whose cataloguers may differ
        // at the same version number) never reads an older kiln's entries.
        std::env::current_exe()
            .and_then(std::fs::metadata)
            .map(|m| {
                use std::os::unix::fs::MetadataExt;
                format!(
                    "{}.{}.{}.{}",
                    m.dev(),
                    m.ino(),
                    m.size(),
                    m.mtime_nsec() + m.mtime() * 1_000_000_000
                )
            })
            .unwrap_or_default()
    });
    format!("{FORMAT}/{}/{binary}/{}", crate::TOOL_VERSION, opts.max_binary_size)
}

impl LayerCache {
    /// The cache of `layout`, if kiln keeps state beside it.
    pub fn of(layout: &Store, opts: &Options) -> Option<LayerCache> {
        (layout.is_trusted() && opts.layer_cache).then(|| LayerCache {
            store: layout.clone(),
            dir: dir(layout),
        })
    }

    fn path(&self, digest: &Digest) -> PathBuf {
        self.dir
            .join(format!("{}-{}.json", digest.algorithm().as_str(), digest.hex()))
    }

    /// The walk of layer `digest` as kept, if an entry of this cataloguer is there.
    pub fn get(&self, digest: &Digest, opts: &Options) -> Option<LayerWalk<Collector>> {
        let path = self.path(digest);
        if std::fs::metadata(&path).ok()?.len() > MAX_ENTRY_BYTES {
            return None;
        }
        let entry: Entry = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
        if entry.stamp != stamp(opts) || &entry.layer != digest {
            return None;
        }
        let mut visitor = Collector::new(opts);
        visitor.warnings = entry.warnings;
        for (p, k) in entry.kept {
            let content = match k {
                Kept::Raw(b) => Content::Raw(B64.decode(b).ok()?),
                Kept::Found(pkgs, warns) => Content::Found(pkgs, warns),
            };
            visitor.kept.insert(p, content);
        }
        Some(LayerWalk {
            changes: entry.changes,
            visitor,
        })
    }

    /// Keeps the walk of layer `digest`. Best effort: a cache that cannot be written only
    /// costs the next build a decode.
    pub fn put(&self, digest: &Digest, walk: &LayerWalk<Collector>, opts: &Options) {
        let kept = walk
            .visitor
            .kept
            .iter()
            .map(|(p, c)| {
                let k = match c {
                    Content::Raw(b) => Kept::Raw(B64.encode(b)),
                    Content::Found(pkgs, warns) => Kept::Found(pkgs.clone(), warns.clone()),
                };
                (p.clone(), k)
            })
            .collect();
        let entry = Entry {
            stamp: stamp(opts),
            layer: digest.clone(),
            changes: walk.changes.clone(),
            kept,
            warnings: walk.visitor.warnings.clone(),
        };
        let Ok(bytes) = serde_json::to_vec(&entry) else { return };
        if kiln_oci::fsutil::create_private_dir(&self.dir).is_ok() {
            let _ = kiln_oci::store::atomic_write(&self.store.tmp_dir(), &self.path(digest), &bytes);
        }
    }
}

/// Where the entries of `layout` are (`prune --cache` removes the directory whole).
pub fn dir(layout: &Store) -> PathBuf {
    layout.meta_dir().join("sbom-layers")
}

/// Removes the entries of layers `layout` no longer holds (after a prune); returns how many.
pub fn sweep(layout: &Store) -> usize {
    let dir = dir(layout);
    let Ok(entries) = std::fs::read_dir(&dir) else { return 0 };
    let mut n = 0;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let digest = name
            .strip_suffix(".json")
            .and_then(|s| s.split_once('-'))
            .and_then(|(alg, hex)| format!("{alg}:{hex}").parse::<Digest>().ok());
        if !digest.is_some_and(|d| layout.has_blob(&d)) && std::fs::remove_file(e.path()).is_ok() {
            n += 1;
        }
    }
    n
}
