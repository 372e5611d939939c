//! `--cache-to`: writes the records of a build as a cache manifest to a registry or an OCI
//! layout directory, or into the image's config (`type=inline`).

use std::collections::BTreeMap;

use base64::Engine as _;
use kiln_oci::image::ImageConfig;
use kiln_oci::reference::Name;
use kiln_oci::{Descriptor, Manifest, Store, StoreError, canonical_json, media};

use super::config::{self, StepRecord};
use super::{CacheTo, Mode, RemoteCache};
use crate::pipeline::PipelineError;
use crate::solver::Progress;

/// The records `mode` selects.
fn chosen(records: &[StepRecord], target: usize, mode: Mode) -> impl Iterator<Item = &StepRecord> {
    records.iter().filter(move |r| mode == Mode::Max || r.stage == target)
}

/// Fetches, from `--cache-from`, the layers of chosen records that this build never needed
/// (a builder stage answered by the cache), so the exported cache keeps them: a runner that
/// both reads and writes one cache ref does not drop what it did not download. A layer that
/// cannot be fetched (or fails its check) is reported and its record left out.
fn fetch_missing(
    store: &Store,
    records: &[StepRecord],
    (target, mode): (usize, Mode),
    remote: Option<&dyn RemoteCache>,
    progress: &dyn Progress,
) {
    let Some(remote) = remote else { return };
    for r in chosen(records, target, mode) {
        if let Some(l) = &r.layer
            && !store.has_blob(&l.descriptor.digest)
            && let Err(e) = remote.fetch(store, l)
        {
            progress.warn(&format!("--cache-to: leaving out a record: {e}"));
        }
    }
}

/// Writes the cache manifest of `records` (those `mode` selects) into `store`; returns its
/// descriptor and the number of records. Records whose layer is not in the store are left
/// out.
fn write_manifest(
    store: &Store,
    target: usize,
    records: &[StepRecord],
    mode: Mode,
) -> Result<(Descriptor, usize), StoreError> {
    let chosen: Vec<&StepRecord> = chosen(records, target, mode)
        .filter(|r| r.layer.as_ref().is_none_or(|l| store.has_blob(&l.descriptor.digest)))
        .collect();
    let (cfg, layers) = config::build(chosen.iter().copied());
    let n = cfg.records.len();
    let bytes = canonical_json(&cfg);
    let digest = store.put_blob(&bytes)?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.into()),
        artifact_type: None,
        config: Descriptor::new(config::MEDIA_TYPE, digest, bytes.len() as u64),
        layers: layers.iter().map(config::layer_descriptor).collect(),
        subject: None,
        annotations: BTreeMap::new(),
    };
    let bytes = canonical_json(&manifest);
    let digest = store.put_blob(&bytes)?;
    Ok((Descriptor::new(media::OCI_MANIFEST, digest, bytes.len() as u64), n))
}

/// Exports the build's records to every `--cache-to` destination except `inline` (which the
/// solver writes into the image itself). `remote` is the `--cache-from` the build used (when
/// it was not given up), for the layers this build did not download.
pub fn export(
    store: &Store,
    (target, records): (usize, &[StepRecord]),
    to: &[CacheTo],
    registry: &kiln_registry::Options,
    remote: Option<&dyn RemoteCache>,
    progress: &dyn Progress,
) -> Result<(), PipelineError> {
    for dest in to {
        if let CacheTo::Registry { mode, .. } | CacheTo::Local { mode, .. } = dest {
            fetch_missing(store, records, (target, *mode), remote, progress);
        }
        match dest {
            CacheTo::Inline => {}
            CacheTo::Registry { reference, mode } => {
                let name = Name::parse(reference).map_err(|e| {
                    PipelineError::input(format!("--cache-to ref={reference:?}: {e}"), "ref=HOST/REPO:TAG")
                })?;
                let (desc, n) = write_manifest(store, target, records, *mode)?;
                let session = kiln_registry::ops::Session::new(registry.clone())?;
                session.push(store, &desc, &name)?;
                progress.note(&format!("cache: {n} records pushed to {reference} ({})", desc.digest));
            }
            CacheTo::Local { dest, mode } => {
                let (desc, n) = write_manifest(store, target, records, *mode)?;
                let out = Store::open(dest)?;
                copy_manifest(store, &out, &desc)?;
                out.tag("latest", &desc)?;
                progress.note(&format!("cache: {n} records written to {}", dest.display()));
            }
        }
    }
    Ok(())
}

fn copy_manifest(from: &Store, to: &Store, desc: &Descriptor) -> Result<(), StoreError> {
    let m: Manifest = from.read_json(&desc.digest)?;
    for d in std::iter::once(&m.config).chain(&m.layers).chain(std::iter::once(desc)) {
        if !to.has_blob(&d.digest) {
            to.put_blob_from(from.open_blob(&d.digest)?, Some((&d.digest, Some(d.size))))?;
        }
    }
    Ok(())
}

/// Writes the image with an inline cache: `config` with BuildKit's `moby.buildkit.cache.v0`
/// key holding the cache config of `records` (the final stage's steps), base64 as BuildKit
/// writes it. The records' layers are the image's own.
pub fn write_inline_image(
    store: &Store,
    config: &ImageConfig,
    layers: &[Descriptor],
    records: &[StepRecord],
) -> Result<Descriptor, StoreError> {
    let (cfg, _) = config::build(records);
    let mut value = serde_json::to_value(config).expect("configs serialise");
    let encoded = base64::engine::general_purpose::STANDARD.encode(canonical_json(&cfg));
    value
        .as_object_mut()
        .expect("a config is an object")
        .insert(config::INLINE_KEY.into(), serde_json::Value::String(encoded));
    kiln_oci::image::write_image_with_config(store, &canonical_json(&value), layers, BTreeMap::new())
}
