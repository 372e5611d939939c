//! The kiln.toml frontend: which file a `kiln build` means, the lock beside the spec, and
//! the plan. Per architecture the plan is one stage from scratch: a Debian-packages step per
//! layer (libraries first), then the accounts and `files` layer, then the image config. The
//! one solver runs it through its one cache, and the architectures' manifests are joined in
//! an index. The Debian work itself (resolving, fetching, reading .debs) is in kiln-debian.

use std::path::{Path, PathBuf};

use kiln_debian::{Error, Spec};
use kiln_oci::image::{ImageConfig, RunConfig, rfc3339};
use kiln_oci::layer::Compression;
use kiln_oci::reference::Name;
use kiln_oci::{Descriptor, Digest, Store};
use kiln_plan::inputs::{FileInput, Frontend, GitSource, Inputs};
use kiln_plan::lock::{Lock, LockedPackage};
use kiln_plan::plan::{Base, BuildPlan, DebianOp, FilesOp, Op, Plan, StagePlan, Step};

use crate::error::BuildError;
use crate::lockfile;
use crate::solver::{Progress, SolveOptions};
use crate::tree::ContextTree;

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
    let path = lockfile::for_spec(spec_path);
    // A lock that does not read (malformed, or crafted) is replaced, never used.
    let old = lockfile::load_if_present(&path).ok().flatten();
    if !update
        && let Some(old) = &old
        && kiln_debian::lock::disagreement(old, &spec).is_none()
    {
        return Ok(Locked {
            lock: old.clone(),
            path,
            written: false,
            changes: (0, 0, 0),
        });
    }
    let cache = kiln_debian::repo::cache_dir(&store.meta_dir());
    let new = kiln_debian::lock::lock(&spec, &cache, old.as_ref(), progress)?;
    let changes = kiln_plan::lock::diff(&old.unwrap_or_default(), &new);
    lockfile::save(&path, &new, "kiln.toml")?;
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

/// A kiln.toml made into a plan.
#[derive(Debug, Clone)]
pub struct SpecPrepared {
    /// One plan per architecture, and the spec, lock and commit it came from.
    pub plan: BuildPlan,
    /// The kiln.toml's directory, which `files.src` paths are relative to.
    pub spec_dir: PathBuf,
    /// The lock the plan was made from.
    pub lock: Lock,
}

/// What a kiln.toml build produced.
#[derive(Debug, Clone)]
pub struct SpecBuilt {
    /// The image index (tagged with the request's names).
    pub index: Descriptor,
    /// Per Debian architecture: its image's manifest.
    pub manifests: Vec<(String, Descriptor)>,
    /// Layers answered from the build cache.
    pub layers_cached: usize,
    /// Layers written.
    pub layers_built: usize,
    /// .debs downloaded.
    pub downloaded: usize,
    /// The plan that was built.
    pub plan: BuildPlan,
}

fn spec_dir(spec: &Path) -> PathBuf {
    spec.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

/// The spec and the lock a build will use: the lock is made or refreshed first unless
/// `locked`, in which case a missing or disagreeing lock is an error.
fn spec_and_lock(store: &Store, req: &SpecRequest, progress: &(dyn Fn(&str) + Sync)) -> Result<(Spec, Lock), Error> {
    let spec = Spec::load(&req.spec)?;
    let lock_file = lockfile::for_spec(&req.spec);
    let lock = if req.locked {
        let lock = lockfile::load(&lock_file, "run `kiln lock` next to kiln.toml to create it")?;
        if let Some(why) = kiln_debian::lock::disagreement(&lock, &spec) {
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

fn file_input(path: &Path) -> Result<FileInput, BuildError> {
    let data = std::fs::read(path).map_err(|source| BuildError::Io {
        path: path.display().to_string(),
        source,
    })?;
    Ok(FileInput {
        path: path.display().to_string(),
        digest: Digest::sha256_of(&data),
    })
}

/// Makes the plan of a kiln.toml from its lock (re-locking first unless `locked`). No .deb
/// is fetched.
pub fn prepare(store: &Store, req: &SpecRequest, progress: &(dyn Fn(&str) + Sync)) -> Result<SpecPrepared, BuildError> {
    let (spec, lock) = spec_and_lock(store, req, progress)?;
    let dir = spec_dir(&req.spec);
    let (git_time, commit, remote) = crate::build::git_info(&dir);
    let sde = req.source_date_epoch.or(git_time).unwrap_or(0);
    let mut platforms = Vec::new();
    for arch in &spec.architectures {
        platforms.push(arch_plan(&spec, &lock, arch, &dir, sde)?);
    }
    let inputs = Inputs {
        frontend: Frontend::KilnToml,
        source: file_input(&req.spec)?,
        lock: Some(file_input(&lockfile::for_spec(&req.spec))?),
        git: commit.map(|commit| GitSource {
            dir: dir.display().to_string(),
            commit,
            remote,
        }),
        build_args: Default::default(),
        target: None,
        build_platform: None,
        spec_hash: Some(lock.spec_hash.clone()),
    };
    Ok(SpecPrepared {
        plan: BuildPlan { inputs, platforms },
        spec_dir: dir,
        lock,
    })
}

/// One architecture's plan: a stage from scratch with a step per package layer, then the
/// accounts and files.
fn arch_plan(spec: &Spec, lock: &Lock, arch: &str, dir: &Path, sde: i64) -> Result<Plan, BuildError> {
    let pkgs: Vec<&LockedPackage> = lock.for_arch(arch).collect();
    let mut steps = Vec::new();
    for group in kiln_debian::layer::layer_groups(&pkgs) {
        let what = group
            .iter()
            .map(|p| format!("{} {}", p.name, p.version))
            .collect::<Vec<_>>()
            .join(", ");
        steps.push(Step {
            line: 0,
            created_by: format!("kiln.toml: deb {what}"),
            op: Op::Debian(DebianOp {
                packages: group.into_iter().cloned().collect(),
            }),
        });
    }
    steps.push(Step {
        line: 0,
        created_by: "kiln.toml: accounts, files".into(),
        op: Op::Files(FilesOp {
            entries: kiln_debian::layer::accounts_layer(spec, dir)?,
        }),
    });
    let platform = kiln_plan::platform::debian(arch);
    Ok(Plan {
        platform: platform.clone(),
        source_date_epoch: sde,
        history_comment: None,
        stages: vec![StagePlan {
            index: 0,
            name: Some(arch.to_string()),
            line: 0,
            base: Base::Scratch,
            steps,
            config: image_config(spec, &platform, sde),
            needed: true,
            depends_on: vec![],
        }],
        target: 0,
    })
}

/// The image config a kiln.toml asks for (rootfs and history are the solver's).
fn image_config(spec: &Spec, platform: &kiln_oci::Platform, sde: i64) -> ImageConfig {
    let user = match spec.run_as() {
        "root" => "0".to_string(),
        name => {
            let u = spec
                .users()
                .into_iter()
                .find(|u| u.name == name)
                .expect("checked by Spec::parse");
            format!("{}:{}", u.uid, u.gid.unwrap_or(u.uid))
        }
    };
    let mut env = vec![crate::frontend::DEFAULT_PATH.to_string()];
    for (k, v) in &spec.image.env {
        if k == "PATH" {
            env[0] = format!("PATH={v}");
        } else {
            env.push(format!("{k}={v}"));
        }
    }
    let img = &spec.image;
    ImageConfig {
        created: Some(rfc3339(sde)),
        architecture: platform.architecture.clone(),
        os: platform.os.clone(),
        variant: platform.variant.clone(),
        config: RunConfig {
            user: Some(user),
            env: Some(env),
            entrypoint: img.entrypoint.clone(),
            cmd: img.cmd.clone(),
            working_dir: img.workdir.clone(),
            labels: (!img.labels.is_empty()).then(|| img.labels.clone()),
            stop_signal: img.stop_signal.clone(),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Builds a kiln.toml: plans it, fetches every .deb the lock names (four at a time), solves
/// each architecture, writes the index and tags it.
pub fn build(store: &Store, req: &SpecRequest, progress: &dyn Progress) -> Result<SpecBuilt, BuildError> {
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
    let note = |m: &str| progress.note(m);
    let prepared = prepare(store, req, &note)?;
    let _lease = store.lease()?;
    let cache = kiln_debian::repo::cache_dir(&store.meta_dir());
    let mut downloaded = 0;
    for plan in &prepared.plan.platforms {
        let pkgs: Vec<&LockedPackage> = plan.stages[0]
            .steps
            .iter()
            .filter_map(|s| match &s.op {
                Op::Debian(d) => Some(&d.packages),
                _ => None,
            })
            .flatten()
            .collect();
        downloaded += kiln_debian::fetch::prefetch(&cache, &pkgs, &note)?;
    }
    let context = ContextTree::new(prepared.spec_dir.clone(), None);
    let opts = SolveOptions {
        file_name: req.spec.display().to_string(),
        context: &context,
        compression: req.compression,
        no_cache: req.no_cache,
        progress,
        run: Default::default(),
        remote: None,
        explain: false,
        inline_cache: false,
    };
    let (mut manifests, mut cached, mut built) = (Vec::new(), 0, 0);
    for plan in &prepared.plan.platforms {
        let solved = crate::solver::solve(store, plan, &opts)?;
        cached += solved.cache_hits;
        built += solved.cache_misses;
        manifests.push((plan.platform.clone(), solved.manifest));
    }
    let index = crate::solver::write_index(store, &manifests)?;
    if names.is_empty() {
        store.add_untagged(&index)?;
    }
    for n in &names {
        store.tag(&n.store_key(), &index)?;
    }
    let arches: Vec<String> = prepared
        .plan
        .platforms
        .iter()
        .map(|p| p.stages[0].name.clone().unwrap_or_default())
        .collect();
    Ok(SpecBuilt {
        index,
        manifests: arches.into_iter().zip(manifests.into_iter().map(|(_, d)| d)).collect(),
        layers_cached: cached,
        layers_built: built,
        downloaded,
        plan: prepared.plan,
    })
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
    }
}
