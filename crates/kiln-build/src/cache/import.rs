//! `--cache-from`: reads cache manifests (or an image's inline cache) into records the solver
//! consults, and fetches a record's layer only when the build needs its content.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use kiln_oci::digest::VerifyingReader;
use kiln_oci::reference::Name;
use kiln_oci::{Descriptor, Digest, Index, Manifest, Store, media};
use kiln_registry::ops::{Session, reference_of};
use kiln_registry::repo::Repo;

use super::config::{self, CacheConfig};
use super::{CacheFrom, RemoteCache};
use crate::solver::LayerRef;

/// The largest cache config (or image config holding one) read.
const CONFIG_LIMIT: u64 = 64 << 20;

enum Origin {
    Registry { session: Arc<Session>, repo: Repo },
    Layout(Store),
}

/// Records from every `--cache-from` that could be read; the first source with a key wins.
pub struct Imported {
    origins: Vec<(String, Origin)>,
    records: HashMap<[u8; 32], (usize, Option<LayerRef>)>,
    /// One fetch at a time per layer: stages solved in parallel may need the same layer,
    /// and a download resumes from the partial file another one is writing. Different
    /// layers are fetched side by side.
    fetching: std::sync::Mutex<HashMap<Digest, Arc<std::sync::Mutex<()>>>>,
}

impl Imported {
    /// How many records were read.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no record was read.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// Reads every source; one that cannot be read (missing, corrupt, not kiln's) is reported
/// through `warn` and left out. `None` when no source gave a record.
pub fn import(sources: &[CacheFrom], registry: &kiln_registry::Options, warn: &dyn Fn(&str)) -> Option<Imported> {
    if sources.is_empty() {
        return None;
    }
    let mut session: Option<Arc<Session>> = None;
    let mut imported = Imported {
        origins: vec![],
        records: HashMap::new(),
        fetching: std::sync::Mutex::new(HashMap::new()),
    };
    for s in sources {
        let (label, loaded) = match s {
            CacheFrom::Registry { reference } => {
                let loaded = match &session {
                    Some(se) => Ok(se.clone()),
                    None => Session::new(registry.clone()).map(Arc::new).map_err(|e| e.to_string()),
                }
                .and_then(|se| {
                    session = Some(se.clone());
                    load_registry(se, reference)
                });
                (reference.clone(), loaded)
            }
            CacheFrom::Local { src } => (src.display().to_string(), load_layout(src)),
        };
        match loaded {
            Ok((origin, records)) => {
                let i = imported.origins.len();
                imported.origins.push((label, origin));
                for (k, v) in records {
                    imported.records.entry(k).or_insert((i, v));
                }
            }
            Err(e) => warn(&format!(
                "--cache-from {label}: ignored, the build runs without it: {e}"
            )),
        }
    }
    (!imported.records.is_empty()).then_some(imported)
}

type Records = HashMap<[u8; 32], Option<LayerRef>>;

fn load_registry(session: Arc<Session>, reference: &str) -> Result<(Origin, Records), String> {
    let name = Name::parse(reference).map_err(|e| e.to_string())?;
    let repo = session.repo(&name).map_err(|e| e.to_string())?;
    let records = session.block_on(async {
        let raw = repo
            .get_manifest(&reference_of(&name))
            .await
            .map_err(|e| e.to_string())?;
        let get = |d: Descriptor| {
            let repo = repo.clone();
            async move {
                repo.get_small_blob(&d, CONFIG_LIMIT)
                    .await
                    .map(|b| b.to_vec())
                    .map_err(|e| e.to_string())
            }
        };
        if media::is_index(&raw.descriptor.media_type) {
            let index: Index = serde_json::from_slice(&raw.bytes).map_err(|e| format!("its index: {e}"))?;
            let cfg = cache_config_entry(&index)?;
            let bytes = get(cfg.clone()).await?;
            from_index(&index, &bytes)
        } else {
            let m: Manifest = serde_json::from_slice(&raw.bytes).map_err(|e| format!("its manifest: {e}"))?;
            let bytes = get(m.config.clone()).await?;
            from_manifest(&m, &bytes)
        }
    })?;
    Ok((Origin::Registry { session, repo }, records))
}

fn load_layout(src: &std::path::Path) -> Result<(Origin, Records), String> {
    let layout = Store::open_foreign(src).map_err(|e| e.to_string())?;
    let index = layout.index().map_err(|e| e.to_string())?;
    let top = index
        .manifests
        .iter()
        .find(|d| media::is_manifest(&d.media_type))
        .ok_or("its index.json lists no manifest")?;
    let m: Manifest = layout.read_json(&top.digest).map_err(|e| e.to_string())?;
    if m.config.size > CONFIG_LIMIT {
        return Err(format!("its config is {} bytes", m.config.size));
    }
    let bytes = layout.read_blob(&m.config.digest).map_err(|e| e.to_string())?;
    let records = from_manifest(&m, &bytes)?;
    Ok((Origin::Layout(layout), records))
}

/// BuildKit's older format: an index listing the layers and the cache config as a blob.
fn cache_config_entry(index: &Index) -> Result<&Descriptor, String> {
    index
        .manifests
        .iter()
        .find(|d| d.media_type == config::MEDIA_TYPE)
        .ok_or_else(|| "it is an image index, not a cache (no cache config in it)".to_string())
}

fn from_index(index: &Index, bytes: &[u8]) -> Result<Records, String> {
    let cfg: CacheConfig = serde_json::from_slice(bytes).map_err(|e| format!("its cache config: {e}"))?;
    let blobs: Vec<Descriptor> = index
        .manifests
        .iter()
        .filter(|d| d.media_type != config::MEDIA_TYPE)
        .cloned()
        .collect();
    config::records(&cfg, &blobs, &annotated_diff_ids(&blobs)?)
}

fn annotated_diff_ids(blobs: &[Descriptor]) -> Result<HashMap<Digest, Digest>, String> {
    let mut out = HashMap::new();
    for d in blobs {
        if let Some(v) = d.annotations.get(config::UNCOMPRESSED) {
            let id: Digest = v.parse().map_err(|e| format!("layer {}: {v:?}: {e}", d.digest))?;
            out.insert(d.digest.clone(), id);
        }
    }
    Ok(out)
}

/// Records of a cache manifest (config of [`config::MEDIA_TYPE`]) or of an image whose
/// config holds an inline cache.
fn from_manifest(m: &Manifest, config_bytes: &[u8]) -> Result<Records, String> {
    let mut diff_ids = annotated_diff_ids(&m.layers)?;
    let cfg: CacheConfig = if m.config.media_type == config::MEDIA_TYPE {
        serde_json::from_slice(config_bytes).map_err(|e| format!("its cache config: {e}"))?
    } else if m.config.media_type == media::OCI_CONFIG || m.config.media_type == media::DOCKER_CONFIG {
        let image: serde_json::Value =
            serde_json::from_slice(config_bytes).map_err(|e| format!("its image config: {e}"))?;
        let inline = image
            .get(config::INLINE_KEY)
            .and_then(|v| v.as_str())
            .ok_or("the image has no inline cache (build it with --cache-to type=inline)")?;
        let json = base64::engine::general_purpose::STANDARD
            .decode(inline)
            .map_err(|e| format!("its inline cache: {e}"))?;
        let ids = image
            .pointer("/rootfs/diff_ids")
            .and_then(|v| v.as_array())
            .ok_or("its image config has no rootfs.diff_ids")?;
        if ids.len() != m.layers.len() {
            return Err("its image config and manifest disagree on the layer count".into());
        }
        for (d, id) in m.layers.iter().zip(ids) {
            let id: Digest = id
                .as_str()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("diff_id {id} is not a digest"))?;
            if diff_ids.get(&d.digest).is_some_and(|a| a != &id) {
                return Err(format!("layer {} has two diff_ids", d.digest));
            }
            diff_ids.insert(d.digest.clone(), id);
        }
        serde_json::from_slice(&json).map_err(|e| format!("its inline cache: {e}"))?
    } else {
        return Err(format!(
            "its config is {:?}, neither a cache config nor an image config",
            m.config.media_type
        ));
    };
    config::records(&cfg, &m.layers, &diff_ids)
}

/// Checks that `layer`'s blob in `store` decompresses to its diff_id.
fn check_diff_id(store: &Store, layer: &LayerRef) -> Result<(), String> {
    let blob = store.open_blob(&layer.descriptor.digest).map_err(|e| e.to_string())?;
    let stream = kiln_oci::decompress::open_layer_stream_for_media_type(blob, &layer.descriptor.media_type)
        .map_err(|e| format!("layer {}: {e}", layer.descriptor.digest))?;
    let limited = std::io::Read::take(stream, kiln_oci::unpack::max_layer_bytes());
    let (actual, _) = VerifyingReader::hashing(limited, layer.diff_id.algorithm())
        .drain()
        .map_err(|e| format!("layer {}: {e}", layer.descriptor.digest))?;
    if actual != layer.diff_id {
        return Err(format!(
            "layer {} decompresses to {actual}, but the cache claims diff_id {}",
            layer.descriptor.digest, layer.diff_id
        ));
    }
    Ok(())
}

impl RemoteCache for Imported {
    fn lookup(&self, key: &[u8; 32]) -> Option<Option<LayerRef>> {
        self.records.get(key).map(|(_, l)| l.clone())
    }

    fn fetch(&self, store: &Store, layer: &LayerRef) -> Result<(), String> {
        let d = &layer.descriptor;
        let origin = self
            .records
            .values()
            .find(|(_, l)| l.as_ref().is_some_and(|l| l.descriptor.digest == d.digest))
            .map(|(i, _)| *i)
            .ok_or_else(|| format!("no cache holds layer {}", d.digest))?;
        let (label, origin) = &self.origins[origin];
        let gate = {
            let mut gates = self.fetching.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            Arc::clone(gates.entry(d.digest.clone()).or_default())
        };
        let _one = gate.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let fetched = match origin {
            Origin::Registry { session, repo } => session
                .block_on(repo.fetch_blob(d, store))
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Origin::Layout(layout) => layout
                .open_blob(&d.digest)
                .and_then(|r| store.put_blob_from(r, Some((&d.digest, Some(d.size)))))
                .map(|_| ())
                .map_err(|e| e.to_string()),
        };
        fetched
            .and_then(|()| check_diff_id(store, layer))
            .map_err(|e| format!("cache {label}: {e}"))
    }
}
