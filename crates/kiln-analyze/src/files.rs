//! The final filesystem of an image with every regular file's sha256, from one streaming pass
//! over its layers (kiln-oci's walk; nothing is unpacked), and the differences between two.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read};

use kiln_oci::image::Image;
use kiln_oci::layer::absolute_entry_path;
use kiln_oci::walk::{Content, Kind, Meta, Tree, Visitor};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::Layers;
use crate::error::AnalyzeError;

/// Hashes every regular file of one layer as it streams past: path → sha256 (hex).
#[derive(Default)]
pub struct Hasher(pub HashMap<String, String>);

impl Visitor for Hasher {
    fn entry(&mut self, path: &str, meta: &Meta, content: &mut Content<'_>) -> io::Result<()> {
        if meta.kind == Kind::File {
            let mut h = Sha256::new();
            let mut r = content.reader();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = r.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            self.0.insert(path.to_string(), hex::encode(h.finalize()));
        }
        Ok(())
    }
}

/// One path of a final filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileEntry {
    /// `file`, `dir`, `symlink`, `hardlink` or `other`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Permission bits (octal string, e.g. `0644`).
    pub mode: String,
    /// Owner uid.
    pub uid: u64,
    /// Owner gid.
    pub gid: u64,
    /// Size in bytes (regular files).
    pub size: u64,
    /// sha256 of the content (regular files, and hard links through their target).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Symlink target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::File => "file",
        Kind::Dir => "dir",
        Kind::Symlink => "symlink",
        Kind::Hardlink => "hardlink",
        Kind::Other => "other",
    }
}

/// Reads `img`'s layers once and returns its final filesystem, path → entry.
pub fn final_tree(
    reference: &str,
    layers: Layers<'_>,
    img: &Image,
    jobs: usize,
) -> Result<BTreeMap<String, FileEntry>, AnalyzeError> {
    let walked = crate::walk_image(reference, layers, img, jobs, |_| Hasher::default())?;
    let tree = Tree::of(walked.iter().map(|w| w.changes.as_slice()));
    Ok(entries(&tree, |i| &walked[i].visitor))
}

/// The final filesystem `tree` describes, path → entry, with the file hashes a [`Hasher`]
/// per layer collected (`hashes(i)` gives layer `i`'s).
pub fn entries<'h>(tree: &Tree, hashes: impl Fn(usize) -> &'h Hasher) -> BTreeMap<String, FileEntry> {
    let mut out = BTreeMap::new();
    for (path, node) in tree.iter() {
        if path == "/" {
            continue;
        }
        let m = &node.meta;
        let hashes = &hashes(node.layer).0;
        let sha256 = match m.kind {
            Kind::File => hashes.get(path).cloned(),
            Kind::Hardlink => m
                .link
                .as_deref()
                .and_then(|l| hashes.get(&absolute_entry_path(l)).cloned()),
            _ => None,
        };
        let size = match m.kind {
            Kind::Hardlink => m
                .link
                .as_deref()
                .and_then(|l| tree.get(&absolute_entry_path(l)))
                .map(|n| n.meta.size)
                .unwrap_or(0),
            _ => m.size,
        };
        out.insert(
            path.to_string(),
            FileEntry {
                // A hard link is the same file as its target to anyone reading the tree.
                kind: kind_name(if m.kind == Kind::Hardlink { Kind::File } else { m.kind }),
                mode: format!("{:04o}", m.mode & 0o7777),
                uid: m.uid,
                gid: m.gid,
                size,
                sha256,
                target: (m.kind == Kind::Symlink).then(|| m.link.clone().unwrap_or_default()),
            },
        );
    }
    out
}

/// A path present in both images whose entry differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileChange {
    /// The path.
    pub path: String,
    /// What differs: `type`, `content`, `mode`, `owner`, `target`.
    pub changes: Vec<&'static str>,
    /// The entry in image A.
    pub a: FileEntry,
    /// The entry in image B.
    pub b: FileEntry,
}

/// Files added, removed and changed from A to B.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FileDiff {
    /// In B only.
    pub added: BTreeMap<String, FileEntry>,
    /// In A only.
    pub removed: BTreeMap<String, FileEntry>,
    /// In both, different.
    pub changed: Vec<FileChange>,
}

/// Compares two final filesystems. Content is compared by sha256, so a change that keeps
/// the size is a change; directories differ only in mode and owner.
pub fn compare(a: &BTreeMap<String, FileEntry>, b: &BTreeMap<String, FileEntry>) -> FileDiff {
    let mut d = FileDiff::default();
    for (p, ea) in a {
        match b.get(p) {
            None => {
                d.removed.insert(p.clone(), ea.clone());
            }
            Some(eb) => {
                let mut what = Vec::new();
                if ea.kind != eb.kind {
                    what.push("type");
                } else if ea.sha256 != eb.sha256 {
                    what.push("content");
                }
                if ea.mode != eb.mode {
                    what.push("mode");
                }
                if (ea.uid, ea.gid) != (eb.uid, eb.gid) {
                    what.push("owner");
                }
                if ea.kind == eb.kind && ea.target != eb.target {
                    what.push("target");
                }
                if !what.is_empty() {
                    d.changed.push(FileChange {
                        path: p.clone(),
                        changes: what,
                        a: ea.clone(),
                        b: eb.clone(),
                    });
                }
            }
        }
    }
    for (p, eb) in b {
        if !a.contains_key(p) {
            d.added.insert(p.clone(), eb.clone());
        }
    }
    d
}
