//! Multi-platform Dockerfile builds (`--platform linux/amd64,linux/arm64`): the Dockerfile is
//! planned and solved once per target platform, each with its own `TARGET*` args, and the
//! images are gathered in one index, written as kiln.toml builds write theirs
//! ([`crate::solver::write_index`]). Each platform's image is exactly what a one-platform
//! build of it gives, so its digest is reproducible on its own.

use kiln_oci::{Platform, Store};
use kiln_plan::platform;

use super::{BuildRequest, BuildResult, PipelineError};
use crate::build::DockerfileRequest;
use crate::solver::Progress;

/// Splits a `--platform` value on commas into platforms, in order, without repeats; the
/// error names the part that is not `os/arch[/variant]`.
pub fn parse_list(value: &str) -> Result<Vec<Platform>, String> {
    let mut out: Vec<Platform> = vec![];
    for part in value.split(',').map(str::trim) {
        let p = platform::parse(part).ok_or_else(|| format!("{part:?} is not os/arch[/variant]"))?;
        if !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

/// Builds `df` for every platform, tags each image's index with the request's names, and
/// returns the index with each platform's manifest.
pub(super) fn build(
    store: &Store,
    req: &BuildRequest,
    df: &DockerfileRequest,
    platforms: &[Platform],
    progress: &dyn Progress,
) -> Result<BuildResult, PipelineError> {
    // Held until the index is tagged: the per-platform images are untagged until then.
    let _lease = store.lease()?;
    // The platforms' solves share nothing but the store, so they run side by side (each
    // cross-compiling RUN on its own core), each reporting its stages under its platform.
    let results: Vec<Result<BuildResult, PipelineError>> = std::thread::scope(|s| {
        let handles: Vec<_> = platforms
            .iter()
            .map(|p| {
                s.spawn(move || {
                    let name = platform::format(p);
                    progress.note(&format!("platform {name}"));
                    let mut one = df.clone();
                    one.platform = Some(p.clone());
                    let progress = Prefixed {
                        inner: progress,
                        prefix: name,
                    };
                    super::build_dockerfile(store, req, &one, &[], &progress)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("platform build thread panicked"))
            .collect()
    });
    let mut built: Vec<(Platform, BuildResult)> = vec![];
    for (p, r) in platforms.iter().zip(results) {
        built.push((p.clone(), r?));
    }
    let pairs: Vec<_> = built.iter().map(|(p, r)| (p.clone(), r.image.clone())).collect();
    let index = crate::solver::write_index(store, &pairs)?;
    if req.tags.is_empty() {
        store.add_untagged(&index)?;
    }
    for t in &req.tags {
        let name = kiln_oci::reference::Name::parse(t)
            .map_err(|e| PipelineError::input(format!("-t {t:?}: {e}"), "use NAME[:TAG], e.g. -t app:1"))?;
        store.tag(&name.store_key(), &index)?;
    }
    Ok(merge(index, built))
}

/// One platform's progress: its stage names carry the platform (`linux/arm64 build`), so
/// the lines of platforms built side by side can be told apart.
struct Prefixed<'a> {
    inner: &'a dyn Progress,
    prefix: String,
}

impl Prefixed<'_> {
    fn stage(&self, stage: &str) -> String {
        format!("{} {stage}", self.prefix)
    }
}

impl Progress for Prefixed<'_> {
    fn step_started(&self, stage: &str, index: usize, total: usize, created_by: &str) {
        self.inner.step_started(&self.stage(stage), index, total, created_by);
    }
    fn step_bytes(&self, stage: &str, bytes: u64) {
        self.inner.step_bytes(&self.stage(stage), bytes);
    }
    fn step_done(&self, stage: &str, index: usize, total: usize, created_by: &str, cached: bool, seconds: f64) {
        self.inner
            .step_done(&self.stage(stage), index, total, created_by, cached, seconds);
    }
    fn warn(&self, message: &str) {
        self.inner.warn(&format!("{}: {message}", self.prefix));
    }
    fn output(&self, stage: &str, line: &str) {
        self.inner.output(&self.stage(stage), line);
    }
    fn note(&self, message: &str) {
        self.inner.note(&format!("{}: {message}", self.prefix));
    }
}

/// One result for the index: counts summed, each platform's plan and base images kept.
fn merge(index: kiln_oci::Descriptor, built: Vec<(Platform, BuildResult)>) -> BuildResult {
    let mut iter = built.into_iter();
    let (p0, first) = iter.next().expect("at least one platform");
    let mut out = BuildResult {
        image: index,
        config_digest: None,
        layers: vec![],
        manifests: vec![(platform::format(&p0), first.image)],
        sbom_packages: first.sbom_packages,
        ..first
    };
    for (p, r) in iter {
        out.manifests.push((platform::format(&p), r.image));
        out.cache_hits += r.cache_hits;
        out.cache_misses += r.cache_misses;
        out.base_images.extend(r.base_images);
        out.plan.platforms.extend(r.plan.platforms);
        out.sbom_packages = out.sbom_packages.or(r.sbom_packages);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_lists() {
        let ps = parse_list("linux/amd64, linux/arm64/v8,linux/amd64").unwrap();
        let names: Vec<_> = ps.iter().map(platform::format).collect();
        assert_eq!(names, ["linux/amd64", "linux/arm64"]);
        assert!(parse_list("linux/amd64,").unwrap_err().contains("\"\""));
        assert!(parse_list("linux/amd64,bad/arch").is_err());
    }
}
