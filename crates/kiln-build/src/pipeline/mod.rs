//! The build as a library: one entry point, [`build`], from a request to a tagged, attested,
//! optionally signed and pushed image, for both frontends. The CLI parses flags into a
//! [`BuildRequest`] and renders progress; `kiln serve` and the tests call the same function.
//!
//! The steps, in order: base images pinned (pulled per the pull policy, checked against
//! `Dockerfile.lock` under `--locked`) or the kiln.toml locked; the plan; the solve (the one
//! solver, per platform); tags; the lock written when asked; SBOMs; provenance, twin tags
//! and signatures; `--output` exports; `--push`.

mod error;
mod gate;
pub mod platforms;
pub mod publish;
pub mod sbom;
pub mod trust;

use std::collections::BTreeMap;

use kiln_oci::reference::{ImageRef, Name};
use kiln_oci::{Descriptor, Digest, Store};
use kiln_plan::plan::BuildPlan;
use kiln_sign::PrivateKey;
use kiln_sign::provenance::Timing;

pub use error::PipelineError;
pub use gate::Gate;

use crate::build::{DockerfileRequest, Prepared};
use crate::lockfile;
use crate::pins::{BasePins, Locked, Pin, PullPolicy};
use crate::solver::{LayerRef, Progress, SolveOptions};
use crate::spec::SpecRequest;

/// What to build from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A Dockerfile and its context.
    Dockerfile(Box<DockerfileRequest>),
    /// A kiln.toml (`locked` and `no_cache` there are the request's).
    Spec(SpecRequest),
    /// A Dockerfile built for each of several platforms into one index (`--platform a,b`);
    /// the request's own `platform` is ignored.
    Platforms(Box<DockerfileRequest>, Vec<kiln_oci::Platform>),
}

/// A whole build request.
pub struct BuildRequest {
    /// The frontend's input.
    pub source: Source,
    /// Names to tag the result with (`-t`).
    pub tags: Vec<String>,
    /// Registry settings for pulls and pushes.
    pub registry: kiln_registry::Options,
    /// When base images that name a registry are pulled.
    pub pull: PullPolicy,
    /// `--locked`: base images must match `Dockerfile.lock` (kiln.toml: kiln.lock must match
    /// the spec; set in the [`SpecRequest`]).
    pub locked: bool,
    /// `--write-lock`: write the base images' pins to `Dockerfile.lock`.
    pub write_lock: bool,
    /// Catalogue the image and attach SPDX and CycloneDX SBOMs.
    pub sbom: bool,
    /// Also catalogue builder stages (Dockerfile).
    pub sbom_stages: bool,
    /// Sign the image and attest its provenance and SBOMs with this key.
    pub sign_key: Option<PrivateKey>,
    /// Also tag every name as `NAME:sha256-<hex>`.
    pub tag_digest: bool,
    /// `--output` destinations (Dockerfile builds).
    pub outputs: Vec<ImageRef>,
    /// Push to every tag's registry.
    pub push: bool,
    /// Checked after signing, before `--output` and `--push` (`kiln build --policy`); a
    /// denial puts the build's tags back and stops the build.
    pub gate: Option<Box<dyn Gate>>,
    /// `--cache-to`, `--cache-from`, `--explain-cache` (Dockerfile builds).
    pub cache: crate::cache::CacheOptions,
    /// `--hermetic`: every input pinned (base images by digest or in `Dockerfile.lock`, ADD
    /// of a URL with `--checksum`), and no network for any step (the Dockerfile request's
    /// `run.hermetic` says the same to the solver).
    pub hermetic: bool,
}

/// What a build made.
#[derive(Debug, Clone)]
pub struct BuildResult {
    /// The image: a manifest (Dockerfile) or an index (kiln.toml).
    pub image: Descriptor,
    /// The manifest's config digest (Dockerfile builds).
    pub config_digest: Option<Digest>,
    /// The image's layers (Dockerfile builds).
    pub layers: Vec<LayerRef>,
    /// Per Debian architecture, its manifest (kiln.toml builds).
    pub manifests: Vec<(String, Descriptor)>,
    /// Steps answered from the cache.
    pub cache_hits: usize,
    /// Steps executed.
    pub cache_misses: usize,
    /// .debs downloaded (kiln.toml builds).
    pub downloaded: usize,
    /// Every base image, (name, platform) → pin.
    pub base_images: BTreeMap<(String, String), Pin>,
    /// Packages in the SBOM, when one was made (`None`: off, or already attached).
    pub sbom_packages: Option<usize>,
    /// The plan that was built.
    pub plan: BuildPlan,
}

/// Checks what can be checked before any work: tag names, and that `--push` has
/// somewhere to go.
fn check_request(req: &BuildRequest) -> Result<(), PipelineError> {
    for t in &req.tags {
        Name::parse(t).map_err(|e| PipelineError::input(format!("-t {t:?}: {e}"), "use NAME[:TAG], e.g. -t app:1"))?;
    }
    if req.push {
        if req.tags.is_empty() {
            return Err(PipelineError::input(
                "--push needs a -t NAME to push to",
                "-t HOST/REPO:TAG",
            ));
        }
        for t in &req.tags {
            publish::push_target(t)?;
        }
    }
    if matches!(req.source, Source::Spec(_) | Source::Platforms(..)) && !req.outputs.is_empty() {
        return Err(PipelineError::input(
            "--output is not supported for kiln.toml and multi-platform builds yet",
            "the image is in the store; use `kiln save`",
        ));
    }
    let cache = &req.cache;
    if matches!(req.source, Source::Spec(_) | Source::Platforms(..))
        && (!cache.to.is_empty() || !cache.from.is_empty() || cache.explain)
    {
        return Err(PipelineError::input(
            "--cache-to, --cache-from and --explain-cache apply to one-platform Dockerfile builds for now",
            "build one platform at a time to share its cache",
        ));
    }
    if req.sign_key.is_some() && req.tags.is_empty() {
        return Err(PipelineError::input(
            "--sign needs a -t NAME: signatures are kept under the image's repository",
            "-t app:1",
        ));
    }
    Ok(())
}

/// A Dockerfile's plan with its base images pinned (pulled as the request says, checked
/// against `Dockerfile.lock` under `--locked`).
fn prepare_dockerfile<'s>(
    store: &'s Store,
    req: &BuildRequest,
    df: &DockerfileRequest,
) -> Result<(Prepared, BasePins<'s>), PipelineError> {
    let dockerfile = df.dockerfile.clone().unwrap_or_else(|| df.context.join("Dockerfile"));
    let lock_file = lockfile::for_dockerfile(&dockerfile);
    // --hermetic: base images come from the lock when there is one (as --locked), and must
    // be named by digest when there is none.
    let hermetic_unlocked = req.hermetic && !req.locked && !lock_file.exists();
    let (locked, lock_input) = if req.locked || (req.hermetic && lock_file.exists()) {
        let hint = format!("run `kiln lock {}` to pin the base images", dockerfile.display());
        let (lock, input) = lockfile::load_input(&lock_file, &hint)?;
        (Some(Locked { path: lock_file, lock }), Some(input))
    } else {
        (None, None)
    };
    let pins = BasePins::new(store, req.registry.clone(), req.pull, locked);
    let resolve = |n: &str, p: &kiln_oci::Platform| {
        if hermetic_unlocked && !n.contains('@') {
            return Err(format!(
                "--hermetic: {n} is not pinned (hint: name it by digest, or run `kiln lock {}` to pin it in Dockerfile.lock)",
                dockerfile.display()
            ));
        }
        pins.resolve(n, p)
    };
    let mut prepared =
        crate::build::prepare_with(df, &resolve, &|s| pins.remote().resolve(s)).map_err(|e| match e {
            crate::error::BuildError::Frontend(error) => PipelineError::Frontend {
                error,
                environment: pins.environment_failed(),
            },
            other => other.into(),
        })?;
    prepared.inputs.lock = lock_input;
    Ok((prepared, pins))
}

/// The plan a build would run (`--print-plan`), with nothing built. Base images are pinned
/// (and pulled if the request says so); a kiln.toml is locked first unless `--locked`.
pub fn plan(store: &Store, req: &BuildRequest, progress: &dyn Progress) -> Result<BuildPlan, PipelineError> {
    match &req.source {
        Source::Dockerfile(df) => Ok(prepare_dockerfile(store, req, df)?.0.build_plan()),
        Source::Platforms(df, platforms) => {
            let mut whole: Option<BuildPlan> = None;
            for p in platforms {
                let one = DockerfileRequest {
                    platform: Some(p.clone()),
                    ..(**df).clone()
                };
                let plan = prepare_dockerfile(store, req, &one)?.0.build_plan();
                match &mut whole {
                    Some(w) => w.platforms.extend(plan.platforms),
                    None => whole = Some(plan),
                }
            }
            whole.ok_or_else(|| PipelineError::input("--platform names no platform", "--platform linux/amd64"))
        }
        Source::Spec(spec) => {
            let note = |m: &str| progress.note(m);
            Ok(crate::spec::prepare(store, spec, &note)?.plan)
        }
    }
}

/// Builds, tags, attests, signs, exports and pushes, as `req` asks.
pub fn build(store: &Store, req: &BuildRequest, progress: &dyn Progress) -> Result<BuildResult, PipelineError> {
    check_request(req)?;
    let timing = Timing::start();
    let before = match &req.gate {
        Some(_) => Some(gate::names(store)?),
        None => None,
    };
    let result = match &req.source {
        Source::Dockerfile(df) => build_dockerfile(store, req, df, &req.tags, progress)?,
        Source::Platforms(df, platforms) => platforms::build(store, req, df, platforms, progress)?,
        Source::Spec(spec) => build_spec(store, req, spec, progress)?,
    };
    trust::after_build(store, &result.image, &result.plan, req, &timing)?;
    if let (Some(g), Some(before)) = (&req.gate, &before)
        && let Err(e) = g.check(store, &result.image, &req.tags)
    {
        gate::restore(store, before, &result.image, &req.tags)?;
        return Err(e);
    }
    publish::export(store, &result.image, &req.outputs, &req.tags)?;
    if req.push {
        publish::push(store, &req.registry, &result.image, &req.tags, progress)?;
    }
    Ok(result)
}

fn build_dockerfile(
    store: &Store,
    req: &BuildRequest,
    df: &DockerfileRequest,
    tags: &[String],
    progress: &dyn Progress,
) -> Result<BuildResult, PipelineError> {
    let (prepared, pins) = prepare_dockerfile(store, req, df)?;
    for w in &prepared.warnings {
        progress.warn(w);
    }
    let imported = crate::cache::import::import(&req.cache.from, &req.registry, &|w| progress.warn(w));
    if let Some(i) = &imported {
        progress.note(&format!("--cache-from: {} step records", i.len()));
    }
    let remote = imported.as_ref().map(|i| i as &dyn crate::cache::RemoteCache);
    let (solved, remote) = solve_with_caches(store, req, (&prepared, df), tags, remote, progress)?;
    crate::cache::export::export(
        store,
        (prepared.plan.target, &solved.records),
        &req.cache.to,
        &req.registry,
        remote,
        progress,
    )?;
    if req.write_lock {
        write_lock(df, &pins)?;
    }
    let sbom_packages = if req.sbom {
        let stages = if req.sbom_stages {
            stage_layers(store, &prepared, df)?
        } else {
            vec![]
        };
        let b = sbom::BuildSbom {
            image: &solved.manifest,
            stages,
            source_date_epoch: prepared.plan.source_date_epoch,
        };
        let n = sbom::attach(store, &b, &|w| progress.warn(w))?;
        report_sbom(progress, n);
        n
    } else {
        None
    };
    Ok(BuildResult {
        image: solved.manifest,
        config_digest: Some(solved.config_digest),
        layers: solved.layers,
        manifests: vec![],
        cache_hits: solved.cache_hits,
        cache_misses: solved.cache_misses,
        downloaded: 0,
        base_images: pins.pins(),
        sbom_packages,
        plan: prepared.build_plan(),
    })
}

/// Solves with the records of `--cache-from` (read first; an unreadable source is ignored
/// with a warning). A layer that a cache names but that cannot be fetched, or is not what
/// the cache says, stops that solve: the build then runs again without the remote cache
/// (what it already made stays in the local cache), so a bad cache never fails a build nor
/// puts a wrong layer into it.
/// Returns the solve, and the remote cache unless it was given up.
fn solve_with_caches<'r>(
    store: &Store,
    req: &BuildRequest,
    (prepared, df): (&Prepared, &DockerfileRequest),
    tags: &[String],
    remote: Option<&'r dyn crate::cache::RemoteCache>,
    progress: &dyn Progress,
) -> Result<(crate::solver::Solved, Option<&'r dyn crate::cache::RemoteCache>), PipelineError> {
    let mut cache = crate::build::CacheUse {
        remote,
        explain: req.cache.explain,
        inline: req.cache.inline(),
    };
    match crate::build::run(store, prepared, df, tags, progress, cache) {
        Err(crate::error::BuildError::CacheImport { message }) => {
            progress.warn(&format!("--cache-from: {message}; building again without it"));
            cache.remote = None;
            Ok((crate::build::run(store, prepared, df, tags, progress, cache)?, None))
        }
        other => Ok((other?, remote)),
    }
}

fn build_spec(
    store: &Store,
    req: &BuildRequest,
    spec: &SpecRequest,
    progress: &dyn Progress,
) -> Result<BuildResult, PipelineError> {
    let mut spec = spec.clone();
    spec.tags = req.tags.clone();
    let built = crate::spec::build(store, &spec, progress)?;
    let sde = built.plan.platforms.first().map_or(0, |p| p.source_date_epoch);
    let mut sbom_packages = None;
    if req.sbom {
        // One SBOM per architecture's image (the index's children are the subjects).
        for (_, image) in &built.manifests {
            let b = sbom::BuildSbom {
                image,
                stages: vec![],
                source_date_epoch: sde,
            };
            let n = sbom::attach(store, &b, &|w| progress.warn(w))?;
            report_sbom(progress, n);
            sbom_packages = sbom_packages.or(n);
        }
    }
    Ok(BuildResult {
        image: built.index,
        config_digest: None,
        layers: vec![],
        manifests: built.manifests,
        cache_hits: built.layers_cached,
        cache_misses: built.layers_built,
        downloaded: built.downloaded,
        base_images: BTreeMap::new(),
        sbom_packages,
        plan: built.plan,
    })
}

fn report_sbom(progress: &dyn Progress, n: Option<usize>) {
    match n {
        Some(n) => progress.note(&format!("sbom: {n} packages (SPDX and CycloneDX attached)")),
        None => progress.note("sbom: already attached to this image"),
    }
}

/// `--sbom-stages`: the layers of every builder stage, solved again (from the cache).
fn stage_layers(
    store: &Store,
    prepared: &Prepared,
    df: &DockerfileRequest,
) -> Result<Vec<Vec<Descriptor>>, PipelineError> {
    let mut out = vec![];
    for plan in prepared.plan.builder_stages() {
        let opts = SolveOptions {
            file_name: prepared.file_name.clone(),
            context: &prepared.context,
            compression: df.compression,
            no_cache: false,
            progress: &crate::solver::Quiet,
            run: df.run.clone(),
            remote: None,
            explain: false,
            inline_cache: false,
        };
        let solved = crate::solver::solve(store, &plan, &opts)?;
        out.push(solved.layers.iter().map(|l| l.descriptor.clone()).collect());
    }
    Ok(out)
}

/// `--write-lock`: this build's pins, merged into the lock beside the Dockerfile (pins of
/// other platforms or images stay).
fn write_lock(df: &DockerfileRequest, pins: &BasePins<'_>) -> Result<(), PipelineError> {
    let dockerfile = df.dockerfile.clone().unwrap_or_else(|| df.context.join("Dockerfile"));
    let path = lockfile::for_dockerfile(&dockerfile);
    let mut lock = lockfile::load_if_present(&path)?.unwrap_or_default();
    let before = lock.clone();
    for ((name, plat), pin) in pins.pins() {
        lock.pin_image(&name, &plat, pin.digest);
    }
    pins.remote().add_to_lock(&mut lock);
    if lock != before || !path.exists() {
        lockfile::save(&path, &lock, "Dockerfile")?;
    }
    Ok(())
}
