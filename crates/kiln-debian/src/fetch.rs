//! The content-addressed .deb cache: `<cache>/debs/<sha256>.deb`. A file enters the cache
//! only after its sha256 matched the lock, and is checked again on every read, so a warm
//! cache needs no network and a corrupt one is caught.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest as _, Sha256};

use crate::error::Error;
use crate::http;
use kiln_plan::lock::LockedPackage;

/// The cache file of a .deb. Its name comes from a lock, which comes from outside: only a
/// sha256 in hex names a file, so no lock can point kiln at a path outside the cache.
fn deb_path(cache: &Path, p: &LockedPackage) -> Result<PathBuf, Error> {
    if p.sha256.len() != 64 || !p.sha256.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(Error::Input {
            message: format!(
                "kiln.lock: sha256 {:?} of {} is not 64 lowercase hex characters",
                p.sha256, p.name
            ),
            hint: "recreate the lock with `kiln lock --update` and review the diff".into(),
        });
    }
    Ok(cache.join("debs").join(format!("{}.deb", p.sha256)))
}

/// Returns the .deb's bytes, downloading it on a cache miss. A download whose sha256 or
/// size differs from the lock is a hard error and never enters the cache.
pub fn get(cache: &Path, p: &LockedPackage) -> Result<Vec<u8>, Error> {
    let path = deb_path(cache, p)?;
    if let Ok(d) = std::fs::read(&path) {
        if hex::encode(Sha256::digest(&d)) == p.sha256 {
            return Ok(d);
        }
        // A corrupt cache entry: drop it and fetch again.
        let _ = std::fs::remove_file(&path);
    }
    let url = format!("{}/{}", p.url.trim_end_matches('/'), p.path);
    let data = match http::get_bytes(&url, p.size) {
        Err(http::HttpError::TooLarge { .. }) => {
            return Err(Error::Input {
                message: format!(
                    "{url}: the mirror sent more than the {} bytes kiln.lock gives for {} {} ({})",
                    p.size, p.name, p.version, p.arch
                ),
                hint: "the mirror or kiln.lock was tampered with, or the lock is stale: check kiln.lock, then `kiln lock --update`".into(),
            });
        }
        other => other?,
    };
    let got = hex::encode(Sha256::digest(&data));
    if got != p.sha256 {
        return Err(Error::Input {
            message: format!(
                "{url}: sha256 {got} ({} bytes) does not match kiln.lock ({}, {} bytes) for {} {} ({})",
                data.len(),
                p.sha256,
                p.size,
                p.name,
                p.version,
                p.arch
            ),
            hint: "the mirror or kiln.lock was tampered with, or the lock is stale: check kiln.lock, then `kiln lock --update`".into(),
        });
    }
    let dir = path.parent().expect("has a parent");
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
    tmp.write_all(&data).map_err(|e| Error::io(&path, e))?;
    tmp.persist(&path).map_err(|e| Error::io(&path, e.error))?;
    Ok(data)
}

/// Makes sure every package is in the cache, downloading up to four at once. Returns how
/// many were downloaded.
pub fn prefetch(cache: &Path, packages: &[&LockedPackage], progress: &(dyn Fn(&str) + Sync)) -> Result<usize, Error> {
    let mut missing: Vec<&LockedPackage> = Vec::new();
    for p in packages {
        if !deb_path(cache, p)?.exists() {
            missing.push(p);
        }
    }
    let queue = Mutex::new(missing.iter());
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    let progress_lock = Mutex::new(());
    std::thread::scope(|s| {
        for _ in 0..4.min(missing.len()) {
            s.spawn(|| {
                loop {
                    if first_error.lock().expect("lock").is_some() {
                        return;
                    }
                    let Some(p) = queue.lock().expect("lock").next() else {
                        return;
                    };
                    {
                        let _g = progress_lock.lock().expect("lock");
                        progress(&format!("fetching {} {} ({})", p.name, p.version, p.arch));
                    }
                    if let Err(e) = get(cache, p) {
                        first_error.lock().expect("lock").get_or_insert(e);
                        return;
                    }
                }
            });
        }
    });
    match first_error.into_inner().expect("lock") {
        Some(e) => Err(e),
        None => Ok(missing.len()),
    }
}
