//! `kiln build` from a Dockerfile, end to end: read inputs, resolve the plan, solve it, tag.

use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_oci::layer::Compression;
use kiln_oci::reference::{ImageRef, Name};
use kiln_oci::{Platform, Store};

use crate::error::BuildError;
use crate::frontend::{self, FrontendInput, ResolvedImage};
use crate::plan::Plan;
use crate::solver::{self, Progress, SolveOptions, Solved};
use crate::tree::ContextTree;

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct BuildRequest {
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
    /// The context's git commit and remote (credentials stripped), read once per build
    /// for labels and provenance.
    pub git: (Option<String>, Option<String>),
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
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").arg("-C").arg(context).args(args).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let time = git(&["log", "-1", "--format=%ct"]).and_then(|t| t.parse().ok());
    if time.is_none() {
        return (None, None, None);
    }
    let rev = git(&["rev-parse", "HEAD"]);
    let remote = git(&["config", "--get", "remote.origin.url"]).map(|u| strip_credentials(&u));
    (time, rev, remote)
}

/// Never put `user:password@` from a remote URL into an image label.
fn strip_credentials(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((_, host)) = rest.split_once('@')
    {
        return format!("{scheme}://{host}");
    }
    url.to_string()
}

/// Resolves a base image name (any transport) and makes sure its blobs are in the store,
/// where the solver reads layers from.
pub fn resolve_in_store(store: &Store, name: &str, platform: &Platform) -> Result<ResolvedImage, String> {
    let r = ImageRef::parse(name).map_err(|e| e.to_string())?;
    let opened = kiln_oci::transport::open_image(store, &r, Some(platform)).map_err(|e| e.to_string())?;
    if opened.layout.root() != store.root() {
        kiln_oci::transport::copy_image(&opened.layout, &opened.image.descriptor, store).map_err(|e| e.to_string())?;
    }
    Ok(ResolvedImage {
        digest: opened.image.descriptor.digest,
        config: opened.image.config,
    })
}

/// Reads the Dockerfile and context and makes the plan (no layer work).
pub fn prepare(store: &Store, req: &BuildRequest) -> Result<Prepared, BuildError> {
    prepare_with(req, &|name: &str, p: &Platform| resolve_in_store(store, name, p))
}

/// [`prepare`] with the caller's base-image resolver, so the CLI can pull from registries
/// (`--pull`) and pin or check digests (`Dockerfile.lock`, `--locked`) without the build
/// engine knowing about registries. The resolver must leave the image's blobs in the store
/// the build will run against.
pub fn prepare_with(
    req: &BuildRequest,
    resolve: &dyn Fn(&str, &Platform) -> Result<ResolvedImage, String>,
) -> Result<Prepared, BuildError> {
    let dockerfile = req.dockerfile.clone().unwrap_or_else(|| req.context.join("Dockerfile"));
    let source = std::fs::read_to_string(&dockerfile).map_err(io_err(&dockerfile))?;
    let file_name = dockerfile.display().to_string();
    let ignore = match kiln_dockerfile::dockerignore::ignore_file_for(&req.context, &dockerfile) {
        Some(p) => {
            let text = std::fs::read_to_string(&p).map_err(io_err(&p))?;
            Some(
                kiln_dockerfile::dockerignore::Matcher::parse(&text).map_err(|e| BuildError::Io {
                    path: p.display().to_string(),
                    source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
                })?,
            )
        }
        None => None,
    };
    let context_root = std::fs::canonicalize(&req.context).map_err(io_err(&req.context))?;
    let (git_time, revision, source_url) = git_info(&context_root);
    let (git_revision, git_remote) = (revision.clone(), source_url.clone());
    let sde = req.source_date_epoch.or(git_time).unwrap_or(0);
    let host = crate::platform::host();
    let platform = req.platform.clone().unwrap_or_else(|| host.clone());
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
    };
    let out = frontend::plan(&input)?;
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
        git: (git_revision, git_remote),
    })
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

/// Solves a prepared build and tags the result with `tags` (or records it untagged).
pub fn run(
    store: &Store,
    prepared: &Prepared,
    req: &BuildRequest,
    tags: &[String],
    progress: &dyn Progress,
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
    };
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
    fn secrets_and_urls() {
        assert!(looks_like_secret("GITHUB_TOKEN", "x"));
        assert!(looks_like_secret("X", "ghp_abc"));
        assert!(!looks_like_secret("VERSION", "1.2"));
        assert_eq!(strip_credentials("https://u:p@host/r.git"), "https://host/r.git");
    }
}
