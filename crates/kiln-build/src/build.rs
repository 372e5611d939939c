//! `kiln build` from a Dockerfile, end to end: read inputs, resolve the plan, solve it, tag.

use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_oci::layer::Compression;
use kiln_oci::reference::{ImageRef, Name};
use kiln_oci::{Platform, Store};

use kiln_oci::Digest;
use kiln_plan::inputs::{FileInput, Frontend, GitSource, Inputs};
use kiln_plan::plan::BuildPlan;

use crate::error::BuildError;
use crate::frontend::{self, FrontendInput, ResolvedImage};
use crate::solver::{self, Progress, SolveOptions, Solved};
use crate::tree::ContextTree;
use kiln_plan::plan::Plan;

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct DockerfileRequest {
    /// Context directory.
    pub context: PathBuf,
    /// Dockerfile path (`-f`); default `<context>/Dockerfile`.
    pub dockerfile: Option<PathBuf>,
    /// `--build-arg` pairs in order.
    pub build_args: Vec<(String, String)>,
    /// `--target`.
    pub target: Option<String>,
    /// `--platform`; default the host's.
    pub platform: Option<Platform>,
    /// `--no-cache`.
    pub no_cache: bool,
    /// `--compression`.
    pub compression: Compression,
    /// SOURCE_DATE_EPOCH given by the user (flag or environment).
    pub source_date_epoch: Option<i64>,
    /// How RUN steps execute (runtime, secrets, ssh, network).
    pub run: crate::solver::RunSettings,
    /// `--label` pairs, set on the result's config over any LABEL of the same key.
    pub labels: Vec<(String, String)>,
}

/// A plan with the inputs it was made from.
pub struct Prepared {
    /// The plan.
    pub plan: Plan,
    /// Dockerfile name as shown in messages.
    pub file_name: String,
    /// The context, with .dockerignore loaded.
    pub context: ContextTree,
    /// Warnings (unused build args, credentials in build args…).
    pub warnings: Vec<String>,
    /// What the plan was made from (the Dockerfile's digest, the context's commit, the
    /// build args), for `--print-plan` and provenance.
    pub inputs: Inputs,
}

impl Prepared {
    /// The whole build as `--print-plan` shows it and provenance describes it.
    pub fn build_plan(&self) -> BuildPlan {
        BuildPlan {
            inputs: self.inputs.clone(),
            platforms: vec![self.plan.clone()],
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + '_ {
    move |source| BuildError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Reads git facts about the context: (commit time, commit, remote URL). Missing git or a
/// context outside a repository gives `None`s.
pub fn git_info(context: &Path) -> (Option<i64>, Option<String>, Option<String>) {
    if !maybe_in_git(context) {
        return (None, None, None);
    }
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").arg("-C").arg(context).args(args).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
            .filter(|s| !s.is_empty())
    };
    // One process for the commit time and the commit (HEAD's, as `rev-parse HEAD`).
    let log = git(&["log", "-1", "--format=%ct%n%H"]).unwrap_or_default();
    let mut lines = log.lines();
    let time = lines.next().and_then(|t| t.trim().parse::<i64>().ok());
    if time.is_none() {
        return (None, None, None);
    }
    let rev = lines.next().map(|r| r.trim().to_string()).filter(|r| !r.is_empty());
    // Never put `user:password@` from the remote into an image label.
    let remote = git(&["config", "--get", "remote.origin.url"]).map(|u| kiln_plan::inputs::without_userinfo(&u));
    (time, rev, remote)
}

/// False only when git could not find a repository for `context`: no `GIT_DIR` in the
/// environment, and neither the context nor a directory above it holds a `.git` or is
/// itself a repository (`HEAD`, `objects/`, `refs/`). Starting git costs several
/// milliseconds, which a no-change rebuild outside git should not pay.
fn maybe_in_git(context: &Path) -> bool {
    if std::env::var_os("GIT_DIR").is_some() {
        return true;
    }
    let start = std::fs::canonicalize(context).unwrap_or_else(|_| context.to_path_buf());
    start.ancestors().any(|d| {
        d.join(".git").symlink_metadata().is_ok()
            || (d.join("HEAD").is_file() && d.join("objects").is_dir() && d.join("refs").is_dir())
    })
}

/// Resolves a base image name (any transport) and makes sure its blobs are in the store,
/// where the solver reads layers from.
pub fn resolve_in_store(store: &Store, name: &str, platform: &Platform) -> Result<ResolvedImage, String> {
    let r = ImageRef::parse(name).map_err(|e| e.to_string())?;
    let remote = kiln_oci::transport::Remote::Never;
    let opened = kiln_oci::transport::open_image(store, &r, Some(platform), remote).map_err(|e| e.to_string())?;
    opened
        .copy_into(store, kiln_oci::transport::Scope::Platform)
        .map_err(|e| e.to_string())?;
    Ok(ResolvedImage {
        digest: opened.image.descriptor.digest,
        config: opened.image.config,
    })
}

/// Reads the Dockerfile and context and makes the plan (no layer work).
pub fn prepare(store: &Store, req: &DockerfileRequest) -> Result<Prepared, BuildError> {
    prepare_with(
        req,
        &|name: &str, p: &Platform| resolve_in_store(store, name, p),
        &frontend::no_remote,
    )
}

/// [`prepare`] with the caller's base-image resolver, usually
/// [`crate::pins::BasePins::resolve`], which pulls from registries (`--pull`) and checks
/// digests against `Dockerfile.lock` (`--locked`). The resolver must leave the image's blobs
/// in the store the build will run against; `remote` pins `ADD` URLs and git sources
/// (usually [`crate::remote::RemoteInputs::resolve`]).
pub fn prepare_with(
    req: &DockerfileRequest,
    resolve: &dyn Fn(&str, &Platform) -> Result<ResolvedImage, String>,
    remote: frontend::ResolveRemote<'_>,
) -> Result<Prepared, BuildError> {
    let dockerfile = req.dockerfile.clone().unwrap_or_else(|| req.context.join("Dockerfile"));
    if !req.context.is_dir() {
        return Err(BuildError::Input {
            message: format!("build context {} is not a directory", req.context.display()),
            hint: "give the directory holding the files COPY reads, e.g. `kiln build -t app .`".into(),
        });
    }
    let source = std::fs::read_to_string(&dockerfile).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound if req.dockerfile.is_none() => BuildError::Input {
            message: format!("{} has no Dockerfile (and no kiln.toml)", req.context.display()),
            hint: "add one, name another with -f, or pipe one in with -f -".into(),
        },
        std::io::ErrorKind::NotFound => BuildError::Input {
            message: format!("Dockerfile {} does not exist", dockerfile.display()),
            hint: "check the -f path; it is relative to the current directory, not the context".into(),
        },
        _ => io_err(&dockerfile)(e),
    })?;
    let file_name = dockerfile.display().to_string();
    let context_root = std::fs::canonicalize(&req.context).map_err(io_err(&req.context))?;
    let ignore = context_ignore(&req.context, &context_root, &dockerfile)?;
    let (git_time, revision, source_url) = git_info(&context_root);
    let git = revision.clone().map(|commit| GitSource {
        dir: context_root.display().to_string(),
        commit,
        remote: source_url.clone(),
    });
    let sde = req.source_date_epoch.or(git_time).unwrap_or(0);
    let host = kiln_plan::platform::host();
    let platform = req.platform.clone().unwrap_or_else(|| host.clone());
    let inputs = Inputs {
        frontend: Frontend::Dockerfile,
        source: FileInput {
            path: file_name.clone(),
            digest: Digest::sha256_of(source.as_bytes()),
        },
        lock: None,
        git,
        build_args: redacted_args(&req.build_args),
        target: req.target.clone(),
        build_platform: Some(host.clone()),
        spec_hash: None,
    };
    let input = FrontendInput {
        file_name: &file_name,
        source: &source,
        build_args: &req.build_args,
        target: req.target.as_deref(),
        platform,
        build_platform: host,
        source_date_epoch: sde,
        revision,
        source_url,
        resolve_image: resolve,
        hermetic: req.run.hermetic,
        resolve_remote: remote,
    };
    let mut out = frontend::plan(&input)?;
    if !req.labels.is_empty() {
        let target = out.plan.target;
        let labels = out.plan.stages[target]
            .config
            .config
            .labels
            .get_or_insert_with(Default::default);
        labels.extend(req.labels.iter().cloned());
    }
    let mut warnings: Vec<String> = out
        .unused_build_args
        .iter()
        .map(|a| format!("build arg {a:?} was not consumed by any ARG instruction"))
        .collect();
    for (k, v) in &req.build_args {
        if looks_like_secret(k, v) {
            warnings.push(format!(
                "build arg {k:?} looks like a credential; build args can end up in images: use --secret id={},env={k} instead",
                k.to_lowercase()
            ));
        }
    }
    Ok(Prepared {
        plan: out.plan,
        file_name,
        context: ContextTree::new(context_root, ignore),
        warnings,
        inputs,
    })
}

/// The context's ignore rules: the user's `.dockerignore` (or `<Dockerfile>.dockerignore`),
/// after a first rule that leaves out the Dockerfile's lock file. A lock is kiln's, not the
/// project's, so `COPY . /src/` never carries it into an image; a `!Dockerfile.lock` line in
/// the user's file brings it back, as any later rule would.
fn context_ignore(
    context: &Path,
    context_root: &Path,
    dockerfile: &Path,
) -> Result<Option<kiln_dockerfile::dockerignore::Matcher>, BuildError> {
    use kiln_dockerfile::dockerignore::Matcher;
    let bad = |p: &Path, e: kiln_dockerfile::dockerignore::PatternError| BuildError::Io {
        path: p.display().to_string(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
    };
    let user = match kiln_dockerfile::dockerignore::ignore_file_for(context, dockerfile) {
        Some(p) => {
            let text = std::fs::read_to_string(&p).map_err(io_err(&p))?;
            // Parsed alone first, so an error names the user's own line.
            Matcher::parse(&text).map_err(|e| bad(&p, e))?;
            Some((p, text))
        }
        None => None,
    };
    let lock = crate::lockfile::for_dockerfile(dockerfile);
    let lock_rel = lock
        .parent()
        .and_then(|d| std::fs::canonicalize(if d.as_os_str().is_empty() { Path::new(".") } else { d }).ok())
        .and_then(|d| d.strip_prefix(context_root).ok().map(Path::to_path_buf))
        .and_then(|d| Some(d.join(lock.file_name()?)))
        .and_then(|r| r.to_str().map(escape_pattern));
    let Some(lock_rel) = lock_rel else {
        return Ok(match user {
            Some((p, text)) => Some(Matcher::parse(&text).map_err(|e| bad(&p, e))?),
            None => None,
        });
    };
    let (path, text) = user.unwrap_or_else(|| (context.join(".dockerignore"), String::new()));
    Ok(Some(
        Matcher::parse(&format!("{lock_rel}\n{text}")).map_err(|e| bad(&path, e))?,
    ))
}

/// A path as a .dockerignore pattern that matches only itself.
fn escape_pattern(path: &str) -> String {
    let mut out = String::new();
    for (i, c) in path.chars().enumerate() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') || (i == 0 && matches!(c, '!' | '#')) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `kiln lock` for a Dockerfile: runs the frontend once per platform, resolving every base
/// image through `pins` (which pulls what names a registry) and every `ADD` URL or git
/// source through its [`crate::pins::BasePins::remote`], and returns the lock of what they
/// resolved to. No layer work, and nothing is written.
pub fn lock_dockerfile(
    req: &DockerfileRequest,
    platforms: &[Platform],
    pins: &crate::pins::BasePins<'_>,
) -> Result<kiln_plan::lock::Lock, BuildError> {
    for p in platforms {
        let mut r = req.clone();
        r.platform = Some(p.clone());
        prepare_with(&r, &|name, plat| pins.resolve(name, plat), &|s| {
            pins.remote().resolve(s)
        })?;
    }
    Ok(pins.to_lock())
}

/// The build args as provenance and `--print-plan` record them: the last value of each
/// name, a credential-looking one replaced by `<redacted>`.
fn redacted_args(args: &[(String, String)]) -> std::collections::BTreeMap<String, String> {
    args.iter()
        .map(|(k, v)| {
            let shown = if looks_like_secret(k, v) {
                "<redacted>".to_string()
            } else {
                v.clone()
            };
            (k.clone(), shown)
        })
        .collect()
}

/// A credential-looking build arg name or value.
pub fn looks_like_secret(name: &str, value: &str) -> bool {
    let n = name.to_ascii_lowercase();
    let name_hit = [
        "password",
        "passwd",
        "secret",
        "token",
        "api_key",
        "apikey",
        "private_key",
        "credential",
        "auth",
    ]
    .iter()
    .any(|w| n.contains(w));
    let value_hit = [
        "ghp_",
        "github_pat_",
        "glpat-",
        "xoxb-",
        "xoxp-",
        "sk_live_",
        "AKIA",
        "-----BEGIN",
    ]
    .iter()
    .any(|p| value.starts_with(p));
    name_hit || value_hit
}

/// How a build uses caches beyond the local one.
#[derive(Default, Clone, Copy)]
pub struct CacheUse<'a> {
    /// Records from `--cache-from`.
    pub remote: Option<&'a dyn crate::cache::RemoteCache>,
    /// `--explain-cache`.
    pub explain: bool,
    /// `--cache-to type=inline`.
    pub inline: bool,
}

/// Solves a prepared build and tags the result with `tags` (or records it untagged).
pub fn run(
    store: &Store,
    prepared: &Prepared,
    req: &DockerfileRequest,
    tags: &[String],
    progress: &dyn Progress,
    cache: CacheUse<'_>,
) -> Result<Solved, BuildError> {
    let names: Vec<Name> = tags
        .iter()
        .map(|t| {
            Name::parse(t).map_err(|e| BuildError::Io {
                path: t.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()),
            })
        })
        .collect::<Result<_, _>>()?;
    let opts = SolveOptions {
        file_name: prepared.file_name.clone(),
        context: &prepared.context,
        compression: req.compression,
        no_cache: req.no_cache,
        progress,
        run: req.run.clone(),
        remote: cache.remote,
        explain: cache.explain,
        inline_cache: cache.inline,
    };
    // Held until the tag is written: a `prune` in between would collect the new image.
    let _lease = store.lease()?;
    let solved = solver::solve(store, &prepared.plan, &opts)?;
    if names.is_empty() {
        store.add_untagged(&solved.manifest)?;
    }
    for n in &names {
        store.tag(&n.store_key(), &solved.manifest)?;
    }
    Ok(solved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_is_asked_only_where_a_repository_can_be() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = dir.path().join("a/b");
        std::fs::create_dir_all(&ctx).unwrap();
        if !dir.path().ancestors().any(|d| d.join(".git").exists()) && std::env::var_os("GIT_DIR").is_none() {
            assert!(!maybe_in_git(&ctx), "no repository anywhere above the context");
        }
        std::fs::create_dir(dir.path().join("a/.git")).unwrap();
        assert!(maybe_in_git(&ctx), "a .git above the context");
        let bare = dir.path().join("bare");
        for d in ["objects", "refs"] {
            std::fs::create_dir_all(bare.join(d)).unwrap();
        }
        std::fs::write(bare.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        assert!(maybe_in_git(&bare), "a bare repository as the context");
    }

    #[test]
    fn secrets_and_urls() {
        assert!(looks_like_secret("GITHUB_TOKEN", "x"));
        assert!(looks_like_secret("X", "ghp_abc"));
        assert!(!looks_like_secret("VERSION", "1.2"));
        assert_eq!(
            kiln_plan::inputs::without_userinfo("https://u:p@host/r.git"),
            "https://host/r.git"
        );
    }
}
