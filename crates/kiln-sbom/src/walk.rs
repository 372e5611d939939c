//! What the catalogers read of an image: its final filesystem, reduced to the files they
//! want, from one streaming pass over the layers (`kiln_oci::walk`), never unpacked.
//!
//! A [`Collector`] visits each layer while it streams past and keeps only what a cataloger
//! wants: small metadata files as bytes, and binaries and archives already parsed into
//! packages, so memory stays near the size of the largest binary, not of the image. The
//! walk's replay of whiteouts and opaque directories then decides which kept files the final
//! filesystem shows ([`Fs::from_walk`]), exactly what a container would see. `kiln scan`
//! runs a collector in the same pass as its secret scanner.

use std::collections::BTreeMap;

use kiln_oci::Store;
use kiln_oci::store::Descriptor;
use kiln_oci::walk::{Content as WalkContent, Kind, LayerInput, LayerWalk, Meta, Tree, Visitor, walk_layers};

use crate::layer_cache::LayerCache;
use crate::{Options, Package, SbomError};

/// What is kept of one file.
#[derive(Debug, Clone)]
pub enum Content {
    /// A metadata file's bytes.
    Raw(Vec<u8>),
    /// A binary or archive, already catalogued (packages, warnings).
    Found(Vec<Package>, Vec<String>),
}

/// A kept file and the layer (index) it came from.
#[derive(Debug, Clone)]
pub struct File {
    /// Index of the layer in the manifest.
    pub layer: usize,
    /// The content.
    pub content: Content,
}

/// The final filesystem, reduced to what catalogers read.
#[derive(Debug, Default)]
pub struct Fs {
    /// Absolute path → file.
    pub files: BTreeMap<String, File>,
    /// Problems met while reading (files too large, unreadable entries).
    pub warnings: Vec<String>,
}

impl Fs {
    /// The bytes of a kept metadata file.
    pub fn raw(&self, path: &str) -> Option<(&[u8], usize)> {
        match self.files.get(path) {
            Some(File {
                content: Content::Raw(b),
                layer,
            }) => Some((b, *layer)),
            _ => None,
        }
    }

    /// Every kept metadata file whose path satisfies `f`.
    pub fn raw_matching<'a>(
        &'a self,
        f: impl Fn(&str) -> bool + 'a,
    ) -> impl Iterator<Item = (&'a str, &'a [u8], usize)> + 'a {
        self.files.iter().filter_map(move |(p, file)| match &file.content {
            Content::Raw(b) if f(p) => Some((p.as_str(), b.as_slice(), file.layer)),
            _ => None,
        })
    }
}

/// What a path is to the catalogers.
#[derive(Debug, PartialEq, Eq)]
enum Want {
    /// Keep the bytes (metadata).
    Raw,
    /// Parse as a Java archive.
    Archive,
    /// Look inside if it is an ELF binary.
    MaybeBinary,
    /// Not needed.
    No,
}

fn want(path: &str, mode: u32) -> Want {
    let name = path.rsplit('/').next().unwrap_or(path);
    let raw = matches!(
        path,
        "/etc/os-release" | "/usr/lib/os-release" | "/var/lib/dpkg/status" | "/lib/apk/db/installed"
    ) || path.starts_with("/var/lib/dpkg/status.d/")
        || (path.starts_with("/var/lib/dpkg/info/") && name.ends_with(".list"))
        || (path.contains(".dist-info/") && matches!(name, "METADATA" | "RECORD"))
        || (path.contains(".egg-info/") && name == "PKG-INFO")
        || name.ends_with(".egg-info")
        || name == "package.json"
        || (name == "package-lock.json" && !path.contains("/node_modules/"))
        || name == "Cargo.lock";
    if raw {
        return Want::Raw;
    }
    if crate::java::is_archive_name(name) {
        return Want::Archive;
    }
    if mode & 0o111 != 0 {
        return Want::MaybeBinary;
    }
    Want::No
}

use kiln_oci::layer::absolute_entry_path as normalize;

/// Metadata files larger than this are not read (a warning says so).
const MAX_METADATA: u64 = 64 << 20;

/// The cataloguers' visitor for one layer: keeps the files they read (the last entry of
/// each path wins) while the layer streams past, so the image is read once.
#[derive(Debug)]
pub struct Collector {
    max_binary_size: u64,
    pub(crate) kept: BTreeMap<String, Content>,
    pub(crate) warnings: Vec<String>,
}

impl Collector {
    /// A collector for one layer.
    pub fn new(opts: &Options) -> Collector {
        Collector {
            max_binary_size: opts.max_binary_size,
            kept: BTreeMap::new(),
            warnings: Vec::new(),
        }
    }

    fn file(&mut self, path: &str, meta: &Meta, content: &mut WalkContent<'_>) -> std::io::Result<Option<Content>> {
        let size = content.size();
        let w = want(path, meta.mode);
        match w {
            Want::No => Ok(None),
            Want::Raw if size > MAX_METADATA => {
                self.warnings.push(format!(
                    "{path}: metadata file of {size} bytes is too large to read; skipped"
                ));
                Ok(None)
            }
            Want::Raw => Ok(content.whole(MAX_METADATA)?.map(|b| Content::Raw(b.to_vec()))),
            Want::Archive | Want::MaybeBinary if size > self.max_binary_size => {
                if w == Want::Archive {
                    self.warnings.push(format!(
                        "{path}: {size} bytes is over the {} byte limit for archives; skipped",
                        self.max_binary_size
                    ));
                }
                Ok(None)
            }
            Want::Archive | Want::MaybeBinary => {
                let head = content.head(4)?;
                let is_elf = head == b"\x7fELF";
                let is_zip = head == b"PK\x03\x04";
                if !((w == Want::MaybeBinary && is_elf) || (w == Want::Archive && is_zip)) {
                    return Ok(None);
                }
                let Some(b) = content.whole(self.max_binary_size)? else {
                    return Ok(None);
                };
                let (pkgs, warns) = if is_elf {
                    crate::binary::catalog(path, b)
                } else {
                    crate::java::catalog(path, b)
                };
                Ok((!pkgs.is_empty() || !warns.is_empty()).then_some(Content::Found(pkgs, warns)))
            }
        }
    }
}

impl Visitor for Collector {
    fn entry(&mut self, path: &str, meta: &Meta, content: &mut WalkContent<'_>) -> std::io::Result<()> {
        let found = match meta.kind {
            // Hard links point at earlier entries of the same layer: keep what was kept for them.
            Kind::Hardlink => meta.link.as_deref().and_then(|l| self.kept.get(&normalize(l))).cloned(),
            Kind::File => self.file(path, meta, content)?,
            // A directory leaves the files under it alone.
            Kind::Dir => return Ok(()),
            Kind::Symlink | Kind::Other => None,
        };
        match found {
            Some(c) => self.kept.insert(path.to_string(), c),
            // Whatever this layer put here before is replaced.
            None => self.kept.remove(path),
        };
        Ok(())
    }
}

impl Fs {
    /// The final filesystem, reduced to what catalogers read, from a walk whose visitors
    /// include a [`Collector`] (`collector(i)` gives layer `i`'s): a kept file counts only if
    /// its layer's entry is the one the final filesystem shows.
    pub fn from_walk<'a>(tree: &Tree, collectors: impl IntoIterator<Item = &'a Collector>) -> Fs {
        let mut fs = Fs::default();
        for (i, c) in collectors.into_iter().enumerate() {
            fs.warnings.extend(c.warnings.iter().cloned());
            for (path, content) in &c.kept {
                if tree.get(path).is_some_and(|n| n.layer == i && n.meta.kind != Kind::Dir) {
                    fs.files.insert(
                        path.clone(),
                        File {
                            layer: i,
                            content: content.clone(),
                        },
                    );
                }
            }
        }
        fs
    }
}

/// Reads `layers` (base first) into the final filesystem, decoding up to `opts.jobs` layers
/// at once; the result does not depend on which finished first.
/// Layers catalogued before (in a store kiln keeps) come from the per-layer cache
/// ([`crate::layer_cache`]) instead of being decoded again.
pub fn read_layers(layout: &Store, layers: &[Descriptor], opts: &Options) -> Result<Fs, SbomError> {
    let cache = LayerCache::of(layout, opts);
    let mut walks: Vec<Option<LayerWalk<Collector>>> = layers
        .iter()
        .map(|d| cache.as_ref().and_then(|c| c.get(&d.digest, opts)))
        .collect();
    let missing: Vec<usize> = (0..layers.len()).filter(|&i| walks[i].is_none()).collect();
    if !missing.is_empty() {
        let inputs = missing.iter().map(|&i| LayerInput::blob(layout, &layers[i])).collect();
        let fresh = walk_layers(inputs, opts.jobs, |_| Collector::new(opts))?;
        for (i, w) in missing.into_iter().zip(fresh) {
            if let Some(c) = &cache {
                c.put(&layers[i].digest, &w, opts);
            }
            walks[i] = Some(w);
        }
    }
    let walks: Vec<LayerWalk<Collector>> = walks.into_iter().flatten().collect();
    let tree = Tree::of(walks.iter().map(|w| w.changes.as_slice()));
    Ok(Fs::from_walk(&tree, walks.iter().map(|w| &w.visitor)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalized() {
        assert_eq!(normalize("./var/lib/dpkg/status"), "/var/lib/dpkg/status");
        assert_eq!(normalize("usr//lib/"), "/usr/lib");
        assert_eq!(normalize("./"), "/");
    }

    #[test]
    fn wanted_files() {
        assert_eq!(want("/var/lib/dpkg/status", 0o644), Want::Raw);
        assert_eq!(want("/app/node_modules/a/package.json", 0o644), Want::Raw);
        assert_eq!(
            want("/usr/lib/python3/dist-packages/x-1.dist-info/METADATA", 0o644),
            Want::Raw
        );
        assert_eq!(want("/app/x.jar", 0o644), Want::Archive);
        assert_eq!(want("/usr/bin/x", 0o755), Want::MaybeBinary);
        assert_eq!(want("/etc/passwd", 0o644), Want::No);
    }
}
