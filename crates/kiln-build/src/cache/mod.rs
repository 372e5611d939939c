//! The build cache shared beyond this machine: `--cache-to` and `--cache-from`.
//!
//! A cache is an OCI image manifest (as BuildKit's `image-manifest=true` writes it): its
//! config is a cache config ([`config::CacheConfig`], close to BuildKit's
//! `application/vnd.buildkit.cacheconfig.v0`) whose records map a step's cache key (the
//! solver's own key, computed locally) to a layer, and its layers are those layers. It
//! travels through a registry (`type=registry,ref=REF`), an OCI layout directory
//! (`type=local,dest=DIR|src=DIR`) or the image's own config (`type=inline`).
//!
//! Trust: a record only says "the step with this key made this layer"; the key is always
//! computed here from the step and its inputs, and every layer taken from a cache is
//! checked against its digest and its diff_id before it is used. A cache that cannot be
//! read, or that is not kiln's, is ignored with a warning and the build runs cold.
//! RUN cache mounts (`--mount=type=cache`) stay on the machine that ran the step.

pub mod config;
pub mod explain;
pub mod export;
pub mod import;

use std::path::PathBuf;

use kiln_oci::Store;

use crate::solver::LayerRef;

/// Which steps a cache export records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// The final stage's steps only (BuildKit's default).
    #[default]
    Min,
    /// Every stage's steps.
    Max,
}

/// Where `--cache-to` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheTo {
    /// A cache manifest pushed to `REF` in a registry.
    Registry {
        /// The reference (`HOST/REPO:TAG`).
        reference: String,
        /// Which steps.
        mode: Mode,
    },
    /// An OCI layout directory.
    Local {
        /// The directory.
        dest: PathBuf,
        /// Which steps.
        mode: Mode,
    },
    /// The image's own config (the final stage's steps).
    Inline,
}

/// Where `--cache-from` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheFrom {
    /// A cache manifest, or an image with an inline cache, in a registry.
    Registry {
        /// The reference.
        reference: String,
    },
    /// An OCI layout directory written by `type=local,dest=`.
    Local {
        /// The directory.
        src: PathBuf,
    },
}

/// The cache flags of a build.
#[derive(Debug, Clone, Default)]
pub struct CacheOptions {
    /// `--cache-to` (repeatable).
    pub to: Vec<CacheTo>,
    /// `--cache-from` (repeatable).
    pub from: Vec<CacheFrom>,
    /// `--explain-cache`.
    pub explain: bool,
}

impl CacheOptions {
    /// Whether `--cache-to type=inline` was given.
    pub fn inline(&self) -> bool {
        self.to.contains(&CacheTo::Inline)
    }
}

/// A cache the solver consults after its local one: records from `--cache-from`.
pub trait RemoteCache: Sync {
    /// The result recorded for `key`: `Some(None)` for a step that made no layer.
    fn lookup(&self, key: &[u8; 32]) -> Option<Option<LayerRef>>;
    /// Puts `layer`'s blob into `store`, checked against its digest and its diff_id.
    fn fetch(&self, store: &Store, layer: &LayerRef) -> Result<(), String>;
}

fn parse_pairs(flag: &str, spec: &str) -> Result<Vec<(String, String)>, String> {
    spec.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| format!("{flag} {spec:?}: {p:?} is not KEY=VALUE"))
        })
        .collect()
}

fn parse_mode(flag: &str, v: &str) -> Result<Mode, String> {
    match v {
        "min" => Ok(Mode::Min),
        "max" => Ok(Mode::Max),
        other => Err(format!("{flag}: mode={other:?} is not min or max")),
    }
}

/// Parses a `--cache-to` value: `type=registry,ref=REF[,mode=min|max]`, `type=inline`,
/// `type=local,dest=DIR[,mode=min|max]`. Unknown keys are refused (a typo would otherwise
/// silently write no cache).
pub fn parse_cache_to(spec: &str) -> Result<CacheTo, String> {
    let flag = "--cache-to";
    let pairs = parse_pairs(flag, spec)?;
    let get = |k: &str| pairs.iter().rev().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    let mode = get("mode")
        .map(|m| parse_mode(flag, &m))
        .transpose()?
        .unwrap_or_default();
    let allowed: &[&str] = match get("type").as_deref() {
        Some("registry") => &["type", "ref", "mode", "image-manifest", "oci-mediatypes"],
        Some("local") => &["type", "dest", "mode", "image-manifest", "oci-mediatypes"],
        Some("inline") => &["type", "mode"],
        Some(t) => return Err(format!("{flag} type={t:?}: kiln writes type=registry, local or inline")),
        None => return Err(format!("{flag} {spec:?} has no type= (type=registry,ref=REF)")),
    };
    if let Some((k, _)) = pairs.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
        return Err(format!("{flag} {spec:?}: unknown key {k:?}"));
    }
    Ok(match get("type").as_deref() {
        Some("registry") => CacheTo::Registry {
            reference: get("ref").ok_or_else(|| format!("{flag} type=registry needs ref=HOST/REPO:TAG"))?,
            mode,
        },
        Some("local") => CacheTo::Local {
            dest: get("dest")
                .ok_or_else(|| format!("{flag} type=local needs dest=DIR"))?
                .into(),
            mode,
        },
        _ if mode == Mode::Max => return Err(format!("{flag} type=inline records the final stage only (mode=min)")),
        _ => CacheTo::Inline,
    })
}

/// Parses a `--cache-from` value: `type=registry,ref=REF`, `type=local,src=DIR`, or a bare
/// reference (as `docker buildx build --cache-from REF`).
pub fn parse_cache_from(spec: &str) -> Result<CacheFrom, String> {
    let flag = "--cache-from";
    if !spec.contains('=') {
        return Ok(CacheFrom::Registry {
            reference: spec.to_string(),
        });
    }
    let pairs = parse_pairs(flag, spec)?;
    let get = |k: &str| pairs.iter().rev().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    let allowed: &[&str] = match get("type").as_deref() {
        Some("registry") => &["type", "ref"],
        Some("local") => &["type", "src"],
        Some(t) => return Err(format!("{flag} type={t:?}: kiln reads type=registry or local")),
        None => return Err(format!("{flag} {spec:?} has no type= (type=registry,ref=REF)")),
    };
    if let Some((k, _)) = pairs.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
        return Err(format!("{flag} {spec:?}: unknown key {k:?}"));
    }
    Ok(match get("type").as_deref() {
        Some("registry") => CacheFrom::Registry {
            reference: get("ref").ok_or_else(|| format!("{flag} type=registry needs ref=HOST/REPO:TAG"))?,
        },
        _ => CacheFrom::Local {
            src: get("src")
                .ok_or_else(|| format!("{flag} type=local needs src=DIR"))?
                .into(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags() {
        assert_eq!(
            parse_cache_to("type=registry,ref=h:5000/c:1,mode=max").unwrap(),
            CacheTo::Registry {
                reference: "h:5000/c:1".into(),
                mode: Mode::Max
            }
        );
        assert_eq!(parse_cache_to("type=inline").unwrap(), CacheTo::Inline);
        assert_eq!(
            parse_cache_to("type=local,dest=/tmp/c").unwrap(),
            CacheTo::Local {
                dest: "/tmp/c".into(),
                mode: Mode::Min
            }
        );
        assert!(parse_cache_to("type=registry").is_err());
        assert!(parse_cache_to("type=registry,ref=x,mdoe=max").is_err());
        assert!(parse_cache_to("type=gha").is_err());
        assert!(parse_cache_to("type=inline,mode=max").is_err());
        assert_eq!(
            parse_cache_from("h:5000/app:1").unwrap(),
            CacheFrom::Registry {
                reference: "h:5000/app:1".into()
            }
        );
        assert_eq!(
            parse_cache_from("type=local,src=/c").unwrap(),
            CacheFrom::Local { src: "/c".into() }
        );
        assert!(parse_cache_from("type=local,dest=/c").is_err());
    }
}
