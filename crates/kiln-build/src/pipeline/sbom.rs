//! The SBOM a build attaches to every image it makes: SPDX 2.3 and CycloneDX 1.6 documents,
//! each an OCI artifact whose `subject` is the image, kept in the store as untagged
//! index.json entries with their `artifactType` (how OCI layouts record referrers; oras does
//! the same). `kiln push` sends them after the image.

use std::collections::BTreeMap;

use kiln_oci::image::{read_image, rfc3339};
use kiln_oci::{Descriptor, Store};
use kiln_registry::ops::artifact_manifest;
use kiln_sbom::Options;

use super::PipelineError;

/// Media type (and artifactType) of an attached SPDX document.
pub const SPDX_MEDIA_TYPE: &str = "application/spdx+json";
/// Media type (and artifactType) of an attached CycloneDX document.
pub const CYCLONEDX_MEDIA_TYPE: &str = "application/vnd.cyclonedx+json";

/// What to catalogue.
pub struct BuildSbom<'a> {
    /// The built image's manifest descriptor.
    pub image: &'a Descriptor,
    /// Builder stages' layers (`--sbom-stages`): their packages are marked build-time only.
    pub stages: Vec<Vec<Descriptor>>,
    /// SOURCE_DATE_EPOCH of the build (the documents' creation time).
    pub source_date_epoch: i64,
}

/// Stores `doc` as an artifact whose subject is `subject` and lists it in index.json.
fn store_artifact(
    store: &Store,
    subject: &Descriptor,
    artifact_type: &str,
    doc: &[u8],
) -> Result<Descriptor, PipelineError> {
    let _lease = store.lease()?;
    let layers = [(artifact_type.to_string(), doc.to_vec())];
    let (desc, _) = artifact_manifest(store, subject, artifact_type, &layers, BTreeMap::new())?;
    store.add_untagged(&desc)?;
    Ok(desc)
}

/// Catalogues a built image (and builder stages) and attaches both documents to it.
/// Returns how many packages were found, or `None` when the image already had both (an
/// image's SBOM depends only on its content, so a rebuild that changed nothing is not
/// catalogued again).
pub fn attach(store: &Store, b: &BuildSbom<'_>, warn: &dyn Fn(&str)) -> Result<Option<usize>, PipelineError> {
    if b.stages.is_empty()
        && !store.referrers(&b.image.digest, Some(SPDX_MEDIA_TYPE))?.is_empty()
        && !store.referrers(&b.image.digest, Some(CYCLONEDX_MEDIA_TYPE))?.is_empty()
    {
        return Ok(None);
    }
    let image = read_image(store, b.image, None)?;
    let opts = Options {
        layer_cache: true,
        ..Options::default()
    };
    let created = Some(rfc3339(b.source_date_epoch));
    let mut sbom = kiln_sbom::catalog_image(store, &image, &image.descriptor.digest.to_string(), created, &opts)?;
    for layers in &b.stages {
        kiln_sbom::add_build_stage(&mut sbom, store, layers, &opts)?;
    }
    for w in &sbom.warnings {
        warn(&format!("sbom: {w}"));
    }
    store_artifact(
        store,
        &image.descriptor,
        SPDX_MEDIA_TYPE,
        &kiln_sbom::spdx::to_json(&sbom),
    )?;
    store_artifact(
        store,
        &image.descriptor,
        CYCLONEDX_MEDIA_TYPE,
        &kiln_sbom::cyclonedx::to_json(&sbom),
    )?;
    Ok(Some(sbom.packages.len()))
}
