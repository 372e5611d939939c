//! The kiln.toml frontend's glue: which file a `kiln build` means, the lock beside the spec,
//! SOURCE_DATE_EPOCH, and tagging. The Debian work itself is in `kiln-debian`.

use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_debian::assemble::{self, BuildOptions, Built};
use kiln_debian::{Error, Lock, Spec};
use kiln_oci::Store;
use kiln_oci::layer::Compression;
use kiln_oci::reference::Name;

/// The spec file a build means: `-f` naming a `.toml` file, or a context directory with a
/// kiln.toml and no Dockerfile.
pub fn find_spec(context: &Path, file: Option<&Path>) -> Option<PathBuf> {
    match file {
        Some(f) => (f.extension().is_some_and(|e| e == "toml")).then(|| f.to_path_buf()),
        None => {
            let spec = context.join("kiln.toml");
            (spec.is_file() && !context.join("Dockerfile").exists()).then_some(spec)
        }
    }
}

/// The lock file that belongs to a spec: `kiln.lock` beside it.
pub fn lock_path(spec: &Path) -> PathBuf {
    spec.with_file_name("kiln.lock")
}

/// What `kiln lock` did.
#[derive(Debug)]
pub struct Locked {
    /// The lock (new or unchanged).
    pub lock: Lock,
    /// Where it is.
    pub path: PathBuf,
    /// Whether the file was (re)written.
    pub written: bool,
    /// (added, removed, changed) against the previous lock.
    pub changes: (usize, usize, usize),
}

/// `kiln lock`: resolves the spec when there is no lock, when the lock disagrees with the
/// spec, or when `update` is set; otherwise keeps the lock as it is (no network).
pub fn lock(store: &Store, spec_path: &Path, update: bool, progress: &(dyn Fn(&str) + Sync)) -> Result<Locked, Error> {
    let spec = Spec::load(spec_path)?;
    let path = lock_path(spec_path);
    let old = if path.exists() { Some(Lock::load(&path)) } else { None };
    if !update
        && let Some(Ok(old)) = &old
        && old.disagreement(&spec).is_none()
    {
        return Ok(Locked {
            lock: old.clone(),
            path,
            written: false,
            changes: (0, 0, 0),
        });
    }
    let cache = kiln_debian::repo::cache_dir(&store.meta_dir());
    let new = kiln_debian::lock::lock(&spec, &cache, progress)?;
    let empty = Lock {
        version: kiln_debian::lock::LOCK_VERSION,
        spec_hash: String::new(),
        snapshot: vec![],
        package: vec![],
    };
    let changes = kiln_debian::lock::diff(old.and_then(Result::ok).as_ref().unwrap_or(&empty), &new);
    new.save(&path)?;
    Ok(Locked {
        lock: new,
        path,
        written: true,
        changes,
    })
}

/// A kiln.toml build request.
#[derive(Debug, Clone)]
pub struct SpecRequest {
    /// The kiln.toml.
    pub spec: PathBuf,
    /// Names to tag the index with.
    pub tags: Vec<String>,
    /// Layer compression.
    pub compression: Compression,
    /// SOURCE_DATE_EPOCH from the user; default: the spec directory's git commit time, or 0.
    pub source_date_epoch: Option<i64>,
    /// Fail instead of re-locking when the lock is missing or disagrees with the spec.
    pub locked: bool,
    /// Rebuild package layers.
    pub no_cache: bool,
}

/// The spec and the lock a build will use: the lock is made or refreshed first unless
/// `locked`, in which case a missing or disagreeing lock is an error.
fn spec_and_lock(store: &Store, req: &SpecRequest, progress: &(dyn Fn(&str) + Sync)) -> Result<(Spec, Lock), Error> {
    let spec = Spec::load(&req.spec)?;
    let lock_file = lock_path(&req.spec);
    let lock = if req.locked {
        let lock = Lock::load(&lock_file)?;
        if let Some(why) = lock.disagreement(&spec) {
            return Err(Error::Lock {
                path: lock_file.display().to_string(),
                message: format!("--locked: the lock disagrees with kiln.toml: {why}"),
                hint: "run `kiln lock` and commit kiln.lock, or build without --locked".into(),
            });
        }
        lock
    } else {
        let l = lock(store, &req.spec, false, progress)?;
        if l.written {
            progress(&format!("wrote {}", l.path.display()));
        }
        l.lock
    };
    Ok((spec, lock))
}

/// The build plan of a kiln.toml as JSON: per architecture, the layers in order with the
/// exact packages (version, sha256) each holds. No .deb is fetched.
pub fn plan(store: &Store, req: &SpecRequest, progress: &(dyn Fn(&str) + Sync)) -> Result<serde_json::Value, Error> {
    let (spec, lock) = spec_and_lock(store, req, progress)?;
    let mut arches = serde_json::Map::new();
    for arch in &spec.architectures {
        let pkgs: Vec<_> = lock.for_arch(arch).collect();
        let mut layers: Vec<serde_json::Value> = assemble::layer_order(&pkgs)
            .iter()
            .map(|p| {
                serde_json::json!({
                    "packages": [{ "name": p.name, "version": p.version, "sha256": p.sha256, "url": format!("{}/{}", p.url, p.path) }],
                })
            })
            .collect();
        layers.push(serde_json::json!({ "accounts_and_files": spec.files.len() }));
        arches.insert(
            arch.clone(),
            serde_json::json!({ "platform": assemble::platform(arch), "layers": layers }),
        );
    }
    Ok(serde_json::json!({ "spec": req.spec, "spec_hash": lock.spec_hash, "architectures": arches }))
}

/// Builds a kiln.toml from its lock (re-locking first unless `locked`), then tags the index.
pub fn build(store: &Store, req: &SpecRequest, progress: &(dyn Fn(&str) + Sync)) -> Result<Built, Error> {
    let names: Vec<Name> = req
        .tags
        .iter()
        .map(|t| {
            Name::parse(t).map_err(|e| Error::Input {
                message: format!("-t {t:?}: {e}"),
                hint: "use NAME[:TAG], e.g. -t static:latest".into(),
            })
        })
        .collect::<Result<_, _>>()?;
    let (spec, lock) = spec_and_lock(store, req, progress)?;
    let spec_dir = req
        .spec
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let sde = req
        .source_date_epoch
        .or_else(|| git_commit_time(&spec_dir))
        .unwrap_or(0);
    let opts = BuildOptions {
        spec_dir,
        compression: req.compression,
        source_date_epoch: sde,
        no_cache: req.no_cache,
    };
    let built = assemble::build(store, &spec, &lock, &opts, progress)?;
    if names.is_empty() {
        store.add_untagged(&built.index)?;
    }
    for n in &names {
        store.tag(&n.store_key(), &built.index)?;
    }
    Ok(built)
}

/// The commit time of HEAD in the git repository holding `dir`, as DESIGN.md's default
/// SOURCE_DATE_EPOCH.
fn git_commit_time(dir: &Path) -> Option<i64> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["log", "-1", "--format=%ct"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_file_a_build_means() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(find_spec(d.path(), None), None);
        std::fs::write(d.path().join("kiln.toml"), "").unwrap();
        assert_eq!(find_spec(d.path(), None), Some(d.path().join("kiln.toml")));
        std::fs::write(d.path().join("Dockerfile"), "").unwrap();
        assert_eq!(find_spec(d.path(), None), None);
        assert_eq!(
            find_spec(d.path(), Some(Path::new("x/kiln.toml"))),
            Some(PathBuf::from("x/kiln.toml"))
        );
        assert_eq!(find_spec(d.path(), Some(Path::new("Dockerfile"))), None);
        assert_eq!(lock_path(Path::new("a/kiln.toml")), PathBuf::from("a/kiln.lock"));
    }
}
