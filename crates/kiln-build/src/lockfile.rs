//! Lock files on disk: `kiln.lock` beside a kiln.toml, `Dockerfile.lock` beside a Dockerfile.
//!
//! Both hold a [`kiln_plan::lock::Lock`]; this module is the one place that reads and writes
//! them. A build never writes a lock by itself: `kiln lock` (or `kiln build --write-lock`)
//! does, and `--locked` reads one (DESIGN.md, "The local store").

use std::path::{Path, PathBuf};

use kiln_plan::lock::Lock;

/// A lock file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LockFileError {
    /// The file is not there (and the build needs it).
    #[error("{path}: no lock file (hint: {hint})")]
    Missing {
        /// The lock file.
        path: String,
        /// How to make it.
        hint: String,
    },
    /// The file is malformed or holds a value kiln refuses.
    #[error("{path}:{line}: {message} (hint: {hint})")]
    Invalid {
        /// The lock file.
        path: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
        /// What to do.
        hint: String,
    },
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The lock file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

impl LockFileError {
    /// DESIGN.md's exit code: 2 for a missing or bad lock, 3 for the disk.
    pub fn exit_code(&self) -> u8 {
        match self {
            LockFileError::Missing { .. } | LockFileError::Invalid { .. } => 2,
            LockFileError::Io { .. } => 3,
        }
    }
}

impl From<LockFileError> for kiln_debian::Error {
    fn from(e: LockFileError) -> kiln_debian::Error {
        match e {
            LockFileError::Missing { path, hint } => kiln_debian::Error::Lock {
                path,
                message: "no lock file".into(),
                hint,
            },
            LockFileError::Invalid {
                path,
                line,
                message,
                hint,
            } => kiln_debian::Error::Lock {
                path: format!("{path}:{line}"),
                message,
                hint,
            },
            LockFileError::Io { path, source } => kiln_debian::Error::Io {
                path,
                message: source.to_string(),
            },
        }
    }
}

/// The lock that belongs to a kiln.toml: `kiln.lock` beside it.
pub fn for_spec(spec: &Path) -> PathBuf {
    spec.with_file_name("kiln.lock")
}

/// The lock that belongs to a Dockerfile: `Dockerfile` → `Dockerfile.lock`,
/// `build/app.Dockerfile` → `build/app.Dockerfile.lock`.
pub fn for_dockerfile(dockerfile: &Path) -> PathBuf {
    let mut s = dockerfile.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

/// Reads and validates a lock; `missing_hint` says how to make one when there is none.
pub fn load(path: &Path, missing_hint: &str) -> Result<Lock, LockFileError> {
    match load_if_present(path)? {
        Some(l) => Ok(l),
        None => Err(LockFileError::Missing {
            path: path.display().to_string(),
            hint: missing_hint.to_string(),
        }),
    }
}

/// [`load`], with the lock's path and digest as a build input (for provenance).
pub fn load_input(path: &Path, missing_hint: &str) -> Result<(Lock, kiln_plan::inputs::FileInput), LockFileError> {
    let lock = load(path, missing_hint)?;
    let data = std::fs::read(path).map_err(|source| LockFileError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let input = kiln_plan::inputs::FileInput {
        path: path.display().to_string(),
        digest: kiln_oci::Digest::sha256_of(&data),
    };
    // The file changed between the two reads: use neither.
    if Lock::parse(&String::from_utf8_lossy(&data)).ok().as_ref() != Some(&lock) {
        return Err(LockFileError::Io {
            path: path.display().to_string(),
            source: std::io::Error::other("the lock changed while it was read"),
        });
    }
    Ok((lock, input))
}

/// Reads and validates a lock, or `None` when the file does not exist.
pub fn load_if_present(path: &Path) -> Result<Option<Lock>, LockFileError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(LockFileError::Io {
                path: path.display().to_string(),
                source,
            });
        }
    };
    Lock::parse(&text).map(Some).map_err(|e| LockFileError::Invalid {
        path: path.display().to_string(),
        line: e.line,
        message: e.message,
        hint: e.hint,
    })
}

/// Writes a lock atomically (a reader never sees half a lock). `made_from` names the input
/// in the file's header (`kiln.toml`, `Dockerfile`).
pub fn save(path: &Path, lock: &Lock, made_from: &str) -> Result<(), LockFileError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    kiln_oci::store::atomic_write(dir, path, lock.to_text(made_from).as_bytes()).map_err(|e| LockFileError::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_round_trip() {
        assert_eq!(for_spec(Path::new("a/kiln.toml")), PathBuf::from("a/kiln.lock"));
        assert_eq!(
            for_dockerfile(Path::new("build/app.Dockerfile")),
            PathBuf::from("build/app.Dockerfile.lock")
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("Dockerfile.lock");
        assert!(load_if_present(&p).unwrap().is_none());
        assert!(
            load(&p, "run `kiln lock`")
                .unwrap_err()
                .to_string()
                .contains("hint: run `kiln lock`")
        );
        let mut lock = Lock::new();
        lock.pin_image("r:5000/a:1", "linux/amd64", kiln_oci::Digest::sha256_of(b"x"));
        save(&p, &lock, "Dockerfile").unwrap();
        assert_eq!(load(&p, "").unwrap(), lock);
        std::fs::write(&p, "version = 1\nspec-hash = 3\n").unwrap();
        let e = load(&p, "").unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(
            e.to_string().contains("Dockerfile.lock:2: ") && e.to_string().contains("hint"),
            "{e}"
        );
    }
}
