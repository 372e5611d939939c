//! The image config model and helpers to read and write whole images in a layout.
//!
//! Our own serde model (not oci-spec's) because it must carry Docker's extensions that
//! BuildKit also writes into OCI configs (Healthcheck, OnBuild, Shell) and because its maps
//! are ordered, which keeps config digests stable.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::media;
use crate::store::{Descriptor, Index, Manifest, Platform, Store, StoreError, canonical_json};

/// An empty JSON object, the value type of ExposedPorts and Volumes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// Docker's healthcheck configuration (durations in nanoseconds).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Healthcheck {
    /// `["NONE"]`, `["CMD", …]` or `["CMD-SHELL", "…"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub test: Vec<String>,
    /// Time between checks.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub interval: i64,
    /// Time a check may take.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timeout: i64,
    /// Grace period at start.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_period: i64,
    /// Interval during the start period.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_interval: i64,
    /// Failures before unhealthy.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// The `config` object of an image config: what a runtime uses to start a container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    /// User (name or uid, optionally `:group`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Ports, e.g. `80/tcp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, Empty>>,
    /// Environment, `KEY=value`, in definition order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    /// Entrypoint argv.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// Default arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// Volume mount points.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, Empty>>,
    /// Working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Stop signal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// Docker extension: health check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    /// Docker extension: triggers run when this image is used as a base.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
    /// Docker extension: shell for shell-form commands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    /// Docker extension kept for Windows compatibility; preserved if present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args_escaped: Option<bool>,
}

/// One history entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// RFC 3339 time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The instruction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// Author.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Free comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// True when the step made no layer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

/// The rootfs section: the diff_ids of the layers in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Uncompressed layer digests, base first.
    pub diff_ids: Vec<Digest>,
}

impl Default for RootFs {
    fn default() -> Self {
        RootFs {
            kind: "layers".into(),
            diff_ids: vec![],
        }
    }
}

/// An image config (OCI, with the Docker fields BuildKit also writes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// Creation time, RFC 3339 (SOURCE_DATE_EPOCH in kiln's builds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Author (MAINTAINER).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// GOARCH.
    pub architecture: String,
    /// GOOS.
    pub os: String,
    /// CPU variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// The run config.
    #[serde(default)]
    pub config: RunConfig,
    /// Layer diff_ids.
    #[serde(default)]
    pub rootfs: RootFs,
    /// Build history.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
}

impl ImageConfig {
    /// The platform this config describes.
    pub fn platform(&self) -> Platform {
        Platform {
            architecture: self.architecture.clone(),
            os: self.os.clone(),
            variant: self.variant.clone(),
        }
    }
}

/// An image read from a layout: its manifest descriptor, manifest and config.
#[derive(Debug, Clone)]
pub struct Image {
    /// The manifest's descriptor.
    pub descriptor: Descriptor,
    /// The manifest.
    pub manifest: Manifest,
    /// The parsed config.
    pub config: ImageConfig,
}

/// Chooses a platform's manifest from an index: OS and architecture must match; a requested
/// variant must match (arm64 treats a missing variant as v8), otherwise an entry without a
/// variant is preferred.
pub fn choose_platform<'a>(index: &'a Index, want: &Platform) -> Option<&'a Descriptor> {
    let norm = |arch: &str, v: Option<&str>| -> Option<String> {
        match (arch, v) {
            ("arm64", None) => Some("v8".into()),
            (_, v) => v.map(str::to_string),
        }
    };
    let candidates: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|m| media::is_manifest(&m.media_type))
        .filter(|m| {
            m.platform
                .as_ref()
                .is_some_and(|p| p.os == want.os && p.architecture == want.architecture)
        })
        .collect();
    let want_v = norm(&want.architecture, want.variant.as_deref());
    if want.variant.is_some() {
        return candidates.into_iter().find(|m| {
            let p = m.platform.as_ref().expect("filtered");
            norm(&p.architecture, p.variant.as_deref()) == want_v
        });
    }
    candidates
        .iter()
        .find(|m| {
            let p = m.platform.as_ref().expect("filtered");
            norm(&p.architecture, p.variant.as_deref()) == want_v
        })
        .or_else(|| candidates.first())
        .copied()
}

/// Reads a manifest (choosing the platform's entry if `desc` is an index) and its config.
pub fn read_image(store: &Store, desc: &Descriptor, platform: Option<&Platform>) -> Result<Image, StoreError> {
    let mut desc = desc.clone();
    if media::is_index(&desc.media_type) {
        let index: Index = store.read_json(&desc.digest)?;
        let first = || index.manifests.iter().find(|m| media::is_manifest(&m.media_type));
        let pick = platform.and_then(|want| choose_platform(&index, want)).or_else(first);
        desc = match pick {
            Some(d) => d.clone(),
            None => {
                return Err(StoreError::MissingBlob {
                    layout: store.root().to_path_buf(),
                    digest: desc.digest.clone(),
                });
            }
        };
    }
    let manifest: Manifest = store.read_json(&desc.digest)?;
    let config: ImageConfig = store.read_json(&manifest.config.digest)?;
    Ok(Image {
        descriptor: desc,
        manifest,
        config,
    })
}

/// Writes config and manifest for `layers` (already in the store) and returns the manifest
/// descriptor. Both documents are canonical JSON, so equal inputs give equal digests.
pub fn write_image(
    store: &Store,
    config: &ImageConfig,
    layers: &[Descriptor],
    annotations: BTreeMap<String, String>,
) -> Result<Descriptor, StoreError> {
    write_image_with_config(store, &canonical_json(config), layers, annotations)
}

/// [`write_image`] for a config that is not (only) an [`ImageConfig`], such as a build-cache
/// image whose config carries the cache records: the caller gives its canonical bytes.
pub fn write_image_with_config(
    store: &Store,
    config_bytes: &[u8],
    layers: &[Descriptor],
    annotations: BTreeMap<String, String>,
) -> Result<Descriptor, StoreError> {
    let config_digest = store.put_blob(config_bytes)?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.into()),
        artifact_type: None,
        config: Descriptor::new(media::OCI_CONFIG, config_digest, config_bytes.len() as u64),
        layers: layers.to_vec(),
        subject: None,
        annotations,
    };
    let bytes = canonical_json(&manifest);
    let digest = store.put_blob(&bytes)?;
    Ok(Descriptor::new(media::OCI_MANIFEST, digest, bytes.len() as u64))
}

/// Formats seconds since the epoch as RFC 3339 UTC (`1970-01-01T00:00:00Z`), without a
/// date crate: civil-from-days per Howard Hinnant's public-domain algorithm.
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(os: &str, arch: &str, v: Option<&str>) -> Platform {
        Platform {
            os: os.into(),
            architecture: arch.into(),
            variant: v.map(Into::into),
        }
    }

    #[test]
    fn platform_choice_honours_variants() {
        let d = |n: u8, pl: Platform| {
            let mut x = Descriptor::new(media::OCI_MANIFEST, Digest::sha256_of(&[n]), 1);
            x.platform = Some(pl);
            x
        };
        let index = Index {
            manifests: vec![
                d(1, p("linux", "amd64", None)),
                d(2, p("linux", "arm", Some("v6"))),
                d(3, p("linux", "arm", Some("v7"))),
                d(4, p("linux", "arm64", None)),
            ],
            ..Index::default()
        };
        let pick = |w: Platform| choose_platform(&index, &w).map(|m| m.digest.clone());
        assert_eq!(pick(p("linux", "arm", Some("v7"))), Some(Digest::sha256_of(&[3])));
        assert_eq!(pick(p("linux", "arm", Some("v5"))), None);
        assert_eq!(pick(p("linux", "arm64", Some("v8"))), Some(Digest::sha256_of(&[4])));
        assert_eq!(pick(p("linux", "amd64", None)), Some(Digest::sha256_of(&[1])));
        assert_eq!(pick(p("linux", "s390x", None)), None);
    }

    #[test]
    fn rfc3339_known_values() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn config_roundtrip_keeps_docker_fields() {
        let json = r#"{"architecture":"amd64","os":"linux","config":{"Healthcheck":{"Test":["CMD","true"],"Interval":1000000000},"OnBuild":["RUN x"],"Shell":["/bin/sh","-c"],"ExposedPorts":{"80/tcp":{}}},"rootfs":{"type":"layers","diff_ids":[]}}"#;
        let c: ImageConfig = serde_json::from_str(json).unwrap();
        assert_eq!(c.config.healthcheck.as_ref().unwrap().interval, 1_000_000_000);
        let back = String::from_utf8(canonical_json(&c)).unwrap();
        assert!(
            back.contains(r#""OnBuild":["RUN x"]"#) && back.contains(r#""Shell""#),
            "{back}"
        );
    }
}
