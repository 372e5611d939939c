//! A file stat cache: content hashes of context files keyed by what `stat` says, so a
//! rebuild of an unchanged context reads no file content.
//!
//! Keyed by absolute path; an entry is valid while (device, inode, size, mtime, ctime) are
//! unchanged, which is the rule git's index and BuildKit's content hasher use too.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use sha2::{Digest as _, Sha256};

use crate::tree::Node;

#[derive(Clone, PartialEq, Eq)]
struct Stamp {
    dev_ino: (u64, u64),
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

/// Keyed by the path's bytes: `Path`'s own `Hash` and `Eq` walk its components, which a
/// no-change rebuild of a large context pays once per file.
type Entries = Mutex<HashMap<Box<[u8]>, (Stamp, [u8; 32])>>;

/// The cache, loaded from and saved to one file in the store's metadata directory.
pub struct StatCache {
    path: PathBuf,
    /// Read from `path` on first use: a build that hashes no context file (RUN steps only)
    /// never parses the file, which holds every context the store has seen.
    entries: OnceLock<Entries>,
    dirty: Mutex<bool>,
}

impl StatCache {
    /// The cache kept in `path`, read when first needed (a missing or unreadable file is an
    /// empty cache: it is only an accelerator, never a source of truth beyond the stamps it
    /// checks).
    pub fn load(path: PathBuf) -> StatCache {
        StatCache {
            path,
            entries: OnceLock::new(),
            dirty: Mutex::new(false),
        }
    }

    /// The cache file of one build context, in kiln's metadata directory: one file per
    /// context directory, so a build reads and rewrites the stamps of its own context only,
    /// not those of every context the store has seen (a Debian rootfs context alone holds
    /// tens of thousands).
    pub fn path_for(meta_dir: &Path, context_root: &Path) -> PathBuf {
        let id = Sha256::digest(context_root.as_os_str().as_encoded_bytes());
        meta_dir.join("statcache.d").join(hex::encode(&id[..16]))
    }

    fn entries(&self) -> &Entries {
        self.entries.get_or_init(|| {
            let mut entries = HashMap::new();
            if let Ok(text) = std::fs::read_to_string(&self.path) {
                for line in text.lines() {
                    if let Some((stamp, hash, p)) = parse_line(line) {
                        entries.insert(Box::from(p.as_bytes()), (stamp, hash));
                    }
                }
            }
            Mutex::new(entries)
        })
    }

    /// Reads the cache file now (on another thread while the context is walked).
    pub fn preload(&self) {
        self.entries();
    }

    /// The sha256 of a regular file's content, from the cache when its stamp still matches.
    pub fn hash(&self, node: &Node) -> io::Result<[u8; 32]> {
        let stamp = Stamp {
            dev_ino: node.dev_ino,
            size: node.size,
            mtime: (node.mtime, node.mtime_nsec),
            ctime: node.ctime,
        };
        if let Some((s, h)) = self
            .entries()
            .lock()
            .unwrap()
            .get(node.real.as_os_str().as_encoded_bytes())
            && *s == stamp
        {
            return Ok(*h);
        }
        let h = hash_file(&node.real)?;
        self.entries()
            .lock()
            .unwrap()
            .insert(Box::from(node.real.as_os_str().as_encoded_bytes()), (stamp, h));
        *self.dirty.lock().unwrap() = true;
        Ok(h)
    }

    /// Writes the cache back if anything changed (atomically; errors are ignored since the
    /// cache only saves time).
    pub fn save(&self, tmp_dir: &Path) {
        if !*self.dirty.lock().unwrap() {
            return;
        }
        let entries = self.entries().lock().unwrap();
        let mut out = String::with_capacity(entries.len() * 160);
        for (p, (s, h)) in entries.iter() {
            let Some(p) = std::str::from_utf8(p).ok().filter(|p| !p.contains('\n')) else {
                continue;
            };
            out.push_str(&format!(
                "{} {} {} {} {} {} {} {} {}\n",
                s.dev_ino.0,
                s.dev_ino.1,
                s.size,
                s.mtime.0,
                s.mtime.1,
                s.ctime.0,
                s.ctime.1,
                hex::encode(h),
                p
            ));
        }
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = kiln_oci::store::atomic_write(tmp_dir, &self.path, out.as_bytes());
    }
}

fn parse_line(line: &str) -> Option<(Stamp, [u8; 32], &str)> {
    let mut it = line.splitn(9, ' ');
    let mut n = || it.next()?.parse::<i64>().ok();
    let (dev, ino, size, m0, m1, c0, c1) = (n()?, n()?, n()?, n()?, n()?, n()?, n()?);
    let hash_hex = it.next()?;
    let path = it.next()?;
    let mut hash = [0u8; 32];
    hex::decode_to_slice(hash_hex, &mut hash).ok()?;
    Some((
        Stamp {
            dev_ino: (dev as u64, ino as u64),
            size: size as u64,
            mtime: (m0, m1),
            ctime: (c0, c1),
        },
        hash,
        path,
    ))
}

/// sha256 of a file, streamed.
pub fn hash_file(path: &Path) -> io::Result<[u8; 32]> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().into())
}
