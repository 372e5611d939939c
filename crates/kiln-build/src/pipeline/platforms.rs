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
    let mut built: Vec<(Platform, BuildResult)> = vec![];
    for p in platforms {
        progress.note(&format!("platform {}", platform::format(p)));
        let mut one = df.clone();
        one.platform = Some(p.clone());
        built.push((p.clone(), super::build_dockerfile(store, req, &one, &[], progress)?));
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
