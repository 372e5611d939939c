//! The cache config: BuildKit's `application/vnd.buildkit.cacheconfig.v0` shape (layers,
//! and records whose `digest` is a cache key and whose `layers` point into the layer list),
//! with a `kiln.format` marker, since only kiln's keys can match kiln's steps.

use std::collections::{BTreeMap, HashMap};

use kiln_oci::{Descriptor, Digest};
use serde::{Deserialize, Serialize};

use crate::solver::LayerRef;

/// The config media type of a cache manifest (BuildKit's).
pub const MEDIA_TYPE: &str = "application/vnd.buildkit.cacheconfig.v0";
/// The image config key of an inline cache (BuildKit's; the value is the config, base64).
pub const INLINE_KEY: &str = "moby.buildkit.cache.v0";
/// The value of `kiln.format`: which cache keys the records hold.
pub const FORMAT: &str = "kiln-cache-v1";
/// The layer annotation naming its uncompressed digest (containerd's, as BuildKit writes it).
pub const UNCOMPRESSED: &str = "containerd.io/uncompressed";

/// A cache config.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CacheConfig {
    /// The layers records point at.
    #[serde(default)]
    pub layers: Vec<CacheLayer>,
    /// One record per step.
    #[serde(default)]
    pub records: Vec<CacheRecord>,
    /// [`FORMAT`] when kiln wrote it.
    #[serde(rename = "kiln.format", default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

/// A layer of the cache.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CacheLayer {
    /// The blob digest (one of the manifest's layers).
    pub blob: String,
    /// BuildKit's parent index; kiln's layers stand alone (`-1`).
    #[serde(default = "no_parent")]
    pub parent: i64,
    /// Media type, diff_id and size.
    #[serde(default)]
    pub annotations: Option<LayerAnnotations>,
}

fn no_parent() -> i64 {
    -1
}

/// What BuildKit records about a cache layer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerAnnotations {
    /// The blob's media type.
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    /// The uncompressed digest.
    #[serde(rename = "diffID")]
    pub diff_id: String,
    /// The blob's size.
    #[serde(default)]
    pub size: u64,
}

/// One step: its key and what it made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CacheRecord {
    /// `sha256:<the step's cache key>`.
    pub digest: String,
    /// The step's layer (none for a step that made no layer).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<CacheResult>,
}

/// A record's result: an index into [`CacheConfig::layers`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CacheResult {
    /// The layer's index.
    pub layer: usize,
}

/// One step's record as the solver returns it.
#[derive(Debug, Clone)]
pub struct StepRecord {
    /// The stage's index in the plan.
    pub stage: usize,
    /// The step's cache key.
    pub key: [u8; 32],
    /// What it made.
    pub layer: Option<LayerRef>,
}

/// The cache config of `records` (in order, each key once) and the layers it names, in the
/// order of their first use.
pub fn build<'r>(records: impl IntoIterator<Item = &'r StepRecord>) -> (CacheConfig, Vec<LayerRef>) {
    let mut config = CacheConfig {
        format: Some(FORMAT.into()),
        ..CacheConfig::default()
    };
    let mut layers: Vec<LayerRef> = vec![];
    let mut index: HashMap<Digest, usize> = HashMap::new();
    let mut seen = std::collections::HashSet::new();
    for r in records {
        if !seen.insert(r.key) {
            continue;
        }
        let results = match &r.layer {
            None => vec![],
            Some(l) => {
                let i = *index.entry(l.descriptor.digest.clone()).or_insert_with(|| {
                    layers.push(l.clone());
                    config.layers.push(CacheLayer {
                        blob: l.descriptor.digest.to_string(),
                        parent: -1,
                        annotations: Some(LayerAnnotations {
                            media_type: l.descriptor.media_type.clone(),
                            diff_id: l.diff_id.to_string(),
                            size: l.descriptor.size,
                        }),
                    });
                    layers.len() - 1
                });
                vec![CacheResult { layer: i }]
            }
        };
        config.records.push(CacheRecord {
            digest: format!("sha256:{}", hex::encode(r.key)),
            layers: results,
        });
    }
    (config, layers)
}

/// The manifest layer descriptor of a cache layer: its media type and size, with the
/// diff_id as containerd's annotation.
pub fn layer_descriptor(l: &LayerRef) -> Descriptor {
    let mut d = Descriptor::new(
        l.descriptor.media_type.clone(),
        l.descriptor.digest.clone(),
        l.descriptor.size,
    );
    d.annotations = BTreeMap::from([(UNCOMPRESSED.to_string(), l.diff_id.to_string())]);
    d
}

/// The records of a cache config, checked: every layer must be one of `blobs` (the
/// manifest's layers, or the image's), with one diff_id agreed by every place that states
/// it (`diff_ids` pairs blobs with the diff_id their manifest or image config gives).
/// Any inconsistency refuses the whole cache.
pub fn records(
    config: &CacheConfig,
    blobs: &[Descriptor],
    diff_ids: &HashMap<Digest, Digest>,
) -> Result<HashMap<[u8; 32], Option<LayerRef>>, String> {
    if config.format.as_deref() != Some(FORMAT) {
        return Err(match &config.format {
            Some(f) => format!("its records are in format {f:?}, not {FORMAT}"),
            None => "it was not written by kiln (no kiln.format), so its keys cannot match kiln's steps".into(),
        });
    }
    let mut layers = Vec::with_capacity(config.layers.len());
    for (i, l) in config.layers.iter().enumerate() {
        let digest: Digest = l
            .blob
            .parse()
            .map_err(|e| format!("layer {i}: blob {:?}: {e}", l.blob))?;
        let desc = blobs
            .iter()
            .find(|d| d.digest == digest)
            .ok_or_else(|| format!("layer {i} ({digest}) is not one of the manifest's layers"))?;
        let stated: Option<Digest> = match &l.annotations {
            Some(a) => Some(
                a.diff_id
                    .parse()
                    .map_err(|e| format!("layer {i}: diffID {:?}: {e}", a.diff_id))?,
            ),
            None => None,
        };
        let diff_id = match (stated, diff_ids.get(&digest)) {
            (Some(a), Some(b)) if &a != b => {
                return Err(format!("layer {i} ({digest}) has two diff_ids, {a} and {b}"));
            }
            (Some(a), _) => a,
            (None, Some(b)) => b.clone(),
            (None, None) => return Err(format!("layer {i} ({digest}) has no diff_id")),
        };
        layers.push(LayerRef {
            diff_id,
            descriptor: Descriptor::new(desc.media_type.clone(), digest, desc.size),
        });
    }
    let mut out = HashMap::with_capacity(config.records.len());
    for r in &config.records {
        let key = r
            .digest
            .strip_prefix("sha256:")
            .and_then(|h| hex::decode(h).ok())
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| format!("record {:?} is not a sha256 key", r.digest))?;
        let layer = match r.layers.as_slice() {
            [] => None,
            [one] => Some(
                layers
                    .get(one.layer)
                    .cloned()
                    .ok_or_else(|| format!("record {} names layer {}, which does not exist", r.digest, one.layer))?,
            ),
            _ => return Err(format!("record {} has several layers; a kiln step makes one", r.digest)),
        };
        out.insert(key, layer);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(n: u8) -> LayerRef {
        LayerRef {
            diff_id: Digest::sha256_of(&[n, 0]),
            descriptor: Descriptor::new(kiln_oci::media::OCI_LAYER_GZIP, Digest::sha256_of(&[n]), 10),
        }
    }

    #[test]
    fn round_trip_and_refusals() {
        let recs = vec![
            StepRecord {
                stage: 0,
                key: [1; 32],
                layer: Some(layer(1)),
            },
            StepRecord {
                stage: 0,
                key: [2; 32],
                layer: None,
            },
            StepRecord {
                stage: 1,
                key: [3; 32],
                layer: Some(layer(1)),
            },
        ];
        let (config, layers) = build(&recs);
        assert_eq!(layers.len(), 1);
        let blobs: Vec<Descriptor> = layers.iter().map(layer_descriptor).collect();
        let map = records(&config, &blobs, &HashMap::new()).unwrap();
        assert_eq!(map.len(), 3);
        assert_eq!(map[&[1; 32]], Some(layer(1)));
        assert_eq!(map[&[2; 32]], None);
        // A layer missing from the manifest, a foreign config, a disagreeing diff_id.
        assert!(records(&config, &[], &HashMap::new()).is_err());
        let foreign = CacheConfig {
            format: None,
            ..config.clone()
        };
        assert!(records(&foreign, &blobs, &HashMap::new()).is_err());
        let other = HashMap::from([(layer(1).descriptor.digest, Digest::sha256_of(b"x"))]);
        assert!(records(&config, &blobs, &other).is_err());
    }
}
