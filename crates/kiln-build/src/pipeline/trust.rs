//! The trust steps of a build: SLSA provenance attached to the image (always), the
//! content-addressed twin tags (`--tag-digest`), and with a key: a signature, and
//! attestations of the provenance and of both SBOMs.

use std::collections::BTreeMap;

use kiln_oci::reference::Name;
use kiln_oci::{Descriptor, Store};
use kiln_plan::plan::BuildPlan;
use kiln_sign::PrivateKey;
use kiln_sign::provenance::{IN_TOTO_MEDIA_TYPE, PREDICATE_ANNOTATION, SLSA_PROVENANCE_V1, Timing};

use super::PipelineError;
use super::sbom::{CYCLONEDX_MEDIA_TYPE, SPDX_MEDIA_TYPE};

/// Attaches the build's provenance to `image`, unless it has one: the same digest means the
/// same resolved inputs, so the record of the build that first produced it stays true for a
/// rebuild that changed nothing, rather than piling up one per invocation.
pub fn attach_provenance(
    store: &Store,
    image: &Descriptor,
    tags: &[String],
    provenance: &serde_json::Value,
) -> Result<(), PipelineError> {
    let name = tags
        .first()
        .and_then(|t| Name::parse(t).ok())
        .map(|n| n.repository)
        .unwrap_or_else(|| "kiln-build".to_string());
    let mut has_provenance = false;
    for old in store.referrers(&image.digest, Some(IN_TOTO_MEDIA_TYPE))? {
        let m: kiln_oci::Manifest = store.read_json(&old.digest)?;
        has_provenance |= m.annotations.get(PREDICATE_ANNOTATION).map(String::as_str) == Some(SLSA_PROVENANCE_V1);
    }
    if has_provenance {
        return Ok(());
    }
    let statement = kiln_sign::envelope::Statement::new(&name, &image.digest, SLSA_PROVENANCE_V1, provenance.clone());
    kiln_sign::place::attach_local(
        store,
        image,
        IN_TOTO_MEDIA_TYPE,
        &[(IN_TOTO_MEDIA_TYPE.to_string(), statement.to_bytes())],
        BTreeMap::from([(PREDICATE_ANNOTATION.to_string(), SLSA_PROVENANCE_V1.to_string())]),
    )?;
    Ok(())
}

/// `--tag-digest`: every `-t NAME` also as `NAME:sha256-<hex>` (kept in the store).
pub fn tag_digests(store: &Store, image: &Descriptor, tags: &[String]) -> Result<(), PipelineError> {
    for t in tags {
        let n = Name::parse(t).map_err(|e| PipelineError::input(format!("-t {t:?}: {e}"), "use NAME[:TAG]"))?;
        let twin = Name {
            repository: n.repository.clone(),
            tag: Some(kiln_registry::ops::fallback_tag(&image.digest)),
            digest: None,
        };
        store.tag(&twin.store_key(), image)?;
    }
    Ok(())
}

/// `--sign --key`: signs the image under its first name, and attests its provenance and
/// both SBOMs.
pub fn sign(
    store: &Store,
    image: &Descriptor,
    tags: &[String],
    key: &PrivateKey,
    provenance: serde_json::Value,
) -> Result<(), PipelineError> {
    let Some(first) = tags.first() else {
        return Err(PipelineError::input(
            "--sign needs a -t NAME: signatures are kept under the image's repository",
            "-t app:1",
        ));
    };
    let name = Name::parse(first).map_err(|e| PipelineError::input(format!("-t {first:?}: {e}"), "use NAME[:TAG]"))?;
    let loc = kiln_sign::place::locate(store, &name.store_key(), None)?;
    kiln_sign::sign::sign(&loc, key, &BTreeMap::new())?;
    kiln_sign::sign::attest(&loc, key, SLSA_PROVENANCE_V1, provenance)?;
    for (media_type, predicate_type) in [
        (SPDX_MEDIA_TYPE, "https://spdx.dev/Document"),
        (CYCLONEDX_MEDIA_TYPE, "https://cyclonedx.org/bom"),
    ] {
        for r in kiln_sign::place::local_referrers(store, &image.digest, Some(media_type))? {
            let m: kiln_oci::Manifest = store.read_json(&r.digest)?;
            if let Some(l) = m.layers.first() {
                let doc: serde_json::Value = serde_json::from_slice(&store.read_blob(&l.digest)?).map_err(|e| {
                    PipelineError::Store(kiln_oci::StoreError::Json {
                        what: format!("SBOM {}", l.digest),
                        source: e,
                    })
                })?;
                kiln_sign::sign::attest(&loc, key, predicate_type, doc)?;
            }
        }
    }
    Ok(())
}

/// Provenance, twin tags and signatures for a built image.
pub fn after_build(
    store: &Store,
    image: &Descriptor,
    plan: &BuildPlan,
    req: &super::BuildRequest,
    timing: &Timing,
) -> Result<(), PipelineError> {
    let provenance = kiln_sign::provenance::predicate(plan, timing).to_value();
    attach_provenance(store, image, &req.tags, &provenance)?;
    if req.tag_digest {
        tag_digests(store, image, &req.tags)?;
    }
    if let Some(key) = &req.sign_key {
        sign(store, image, &req.tags, key, provenance)?;
    }
    Ok(())
}
