//! The persistent directories behind `RUN --mount=type=cache`, kept under
//! `$KILN_HOME/kiln/cache-mounts/` and managed with `kiln cache ls|rm`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// One cache mount directory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CacheMount {
    /// The `id=` it was created for (the target path when no id was given).
    pub id: String,
    /// Its directory.
    pub path: PathBuf,
    /// Bytes used.
    pub size: u64,
}

fn base(meta: &Path) -> PathBuf {
    meta.join("cache-mounts")
}

fn du(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else { return 0 };
    if !meta.is_dir() {
        return meta.len();
    }
    fs::read_dir(path)
        .map(|d| d.flatten().map(|e| du(&e.path())).sum())
        .unwrap_or(0)
}

/// Every cache mount, sorted by id.
pub fn list(meta: &Path) -> io::Result<Vec<CacheMount>> {
    let dir = base(meta);
    let mut out = Vec::new();
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(key) = name.strip_suffix(".id") {
            let id = fs::read_to_string(e.path())?;
            let path = dir.join(key);
            let size = du(&path);
            out.push(CacheMount { id, path, size });
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// Removes the cache mount with this id (every directory of it: `sharing=private` and
/// `from=` make more than one), waiting for a `sharing=locked` or `private` user to finish.
/// Returns false when there is none.
pub fn remove(meta: &Path, id: &str) -> io::Result<bool> {
    let found: Vec<CacheMount> = list(meta)?.into_iter().filter(|m| m.id == id).collect();
    let dir = base(meta);
    for m in &found {
        let key = m
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(format!("{key}.lock")))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)?;
        if m.path.exists() {
            fs::remove_dir_all(&m.path)?;
        }
        fs::remove_file(dir.join(format!("{key}.id")))?;
        let _ = fs::remove_file(dir.join(format!("{key}.lock")));
    }
    Ok(!found.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_and_remove() {
        let d = tempfile::tempdir().unwrap();
        let b = base(d.path());
        fs::create_dir_all(b.join("k1")).unwrap();
        fs::write(b.join("k1/file"), vec![0u8; 100]).unwrap();
        fs::write(b.join("k1.id"), "/root/.cache").unwrap();
        let l = list(d.path()).unwrap();
        assert_eq!((l.len(), l[0].id.as_str(), l[0].size), (1, "/root/.cache", 100));
        assert!(remove(d.path(), "/root/.cache").unwrap());
        assert!(!remove(d.path(), "/root/.cache").unwrap());
        assert!(list(d.path()).unwrap().is_empty() && !b.join("k1").exists());
    }
}
