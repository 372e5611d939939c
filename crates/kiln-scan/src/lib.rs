//! Scanning images for what should stop them shipping: known vulnerabilities in their
//! packages, secrets in any layer, and risky configuration.
//!
//! [`scan_image`] works on any image kiln can open (store, layouts, archives, registries via
//! `kiln_oci::transport`). Packages come from `kiln-sbom`'s catalogers and are matched
//! against an offline OSV database ([`db`]) with each ecosystem's own version order
//! ([`version`]). Secrets are searched in every layer's bytes in one streaming pass
//! ([`layers`], [`secrets`]), so a file deleted by a later layer is still reported (it is still
//! in the image). Misconfiguration checks ([`misconfig`]) read the config and the final
//! filesystem's metadata from the same pass. Nothing is unpacked to disk.

#![deny(missing_docs)]

pub mod cvss;
pub mod db;
pub mod ignore;
pub mod layers;
pub mod misconfig;
pub mod osv;
pub mod report;
pub mod secrets;
pub mod version;
pub mod vuln;
pub mod zip;

use kiln_oci::Store;
use kiln_oci::image::Image;
use serde::Serialize;

/// Why a scan could not run (findings are not errors).
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// A layer could not be read, or does not match its digest.
    #[error(
        "layer {index} ({digest}): {reason} (hint: the image is damaged or was tampered with; pull, load or build it again)"
    )]
    Layer {
        /// 1-based layer number.
        index: usize,
        /// The layer's digest.
        digest: String,
        /// What went wrong.
        reason: String,
    },
    /// A docker-archive tar could not be read.
    #[error("{path}: {reason} (hint: {hint})")]
    Archive {
        /// The archive.
        path: String,
        /// What is wrong.
        reason: String,
        /// What to do.
        hint: &'static str,
    },
    /// Cataloguing packages failed.
    #[error(transparent)]
    Sbom(#[from] kiln_sbom::SbomError),
    /// The vulnerability database failed.
    #[error(transparent)]
    Db(#[from] db::DbError),
}

/// Severity levels, trivy's names and order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    /// Not rated.
    Unknown,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

impl Severity {
    /// The upper-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unknown => "UNKNOWN",
            Severity::Low => "LOW",
            Severity::Medium => "MEDIUM",
            Severity::High => "HIGH",
            Severity::Critical => "CRITICAL",
        }
    }

    /// Parses a name (any case; `MODERATE` is GitHub's MEDIUM).
    pub fn parse(s: &str) -> Option<Severity> {
        Some(match s.trim().to_ascii_uppercase().as_str() {
            "UNKNOWN" => Severity::Unknown,
            "LOW" | "NEGLIGIBLE" | "UNIMPORTANT" => Severity::Low,
            "MEDIUM" | "MODERATE" => Severity::Medium,
            "HIGH" | "IMPORTANT" => Severity::High,
            "CRITICAL" => Severity::Critical,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which scanners run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scanners {
    /// Vulnerabilities (needs a database).
    pub vuln: bool,
    /// Secrets.
    pub secret: bool,
    /// Misconfiguration.
    pub misconfig: bool,
}

impl Default for Scanners {
    fn default() -> Self {
        Scanners {
            vuln: true,
            secret: true,
            misconfig: true,
        }
    }
}

/// Options for [`scan_image`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Scanners to run.
    pub scanners: Scanners,
    /// The vulnerability database.
    pub db: Option<db::Db>,
    /// A database older than this many days gets a warning.
    pub max_db_age_days: i64,
    /// Threads decoding layers at once.
    pub jobs: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            scanners: Scanners::default(),
            db: None,
            max_db_age_days: 7,
            jobs: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .min(4),
        }
    }
}

/// A vulnerable package.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VulnFinding {
    /// The OSV id.
    pub id: String,
    /// Aliases (CVE ids first).
    pub aliases: Vec<String>,
    /// Severity (from CVSS vectors, else the database's rating).
    pub severity: Severity,
    /// The package as installed.
    pub package: String,
    /// The name the record uses when it differs (Debian's source package).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_package: Option<String>,
    /// The OSV ecosystem matched (`Debian:12`).
    pub ecosystem: String,
    /// Installed version.
    pub installed: String,
    /// First fixed version above it, when one exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fixed: Option<String>,
    /// One line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Package URL.
    pub purl: String,
    /// Where the package's metadata lives.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// 1-based number of the layer that brought the package.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer_index: Option<usize>,
    /// Digest of that layer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
}

/// Where a secret sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretSource {
    /// A file in a layer.
    File,
    /// The config's Env.
    Env,
    /// A config label.
    Label,
    /// A history entry (`created_by`).
    History,
    /// Cmd, Entrypoint or another config field.
    Config,
}

/// A secret.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SecretFinding {
    /// Rule id.
    pub rule: &'static str,
    /// Rule title.
    pub title: &'static str,
    /// Severity.
    pub severity: Severity,
    /// File, Env, label…
    pub source: SecretSource,
    /// The file path, env name, label key or `history[N]`.
    pub location: String,
    /// 1-based line (text files).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// Byte offset (binary files).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// First four characters and a short hash: never the whole value.
    pub value: String,
    /// 1-based layer holding the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer_index: Option<usize>,
    /// Its digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
    /// The later layer that deleted or overwrote the file (it is still in the image).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed_in_layer: Option<usize>,
    /// Deleted or overwritten.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed: Option<layers::Gone>,
}

/// A configuration problem.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MisconfigFinding {
    /// Rule id (`KSC###`).
    pub id: &'static str,
    /// Severity.
    pub severity: Severity,
    /// What is wrong and what to do.
    pub message: String,
    /// Where (a path in the image, or `config.User`…).
    pub location: String,
}

/// Everything a scan found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The image as the user named it.
    pub name: String,
    /// Manifest digest.
    pub image: String,
    /// Layer digests, base first.
    pub layers: Vec<String>,
    /// Vulnerabilities.
    pub vulnerabilities: Vec<VulnFinding>,
    /// Secrets.
    pub secrets: Vec<SecretFinding>,
    /// Misconfiguration.
    pub misconfigurations: Vec<MisconfigFinding>,
    /// Packages checked against the database.
    pub packages: usize,
    /// Things the user should know (no or old database, skipped packages).
    pub warnings: Vec<String>,
}

impl Report {
    /// Total findings.
    pub fn total(&self) -> usize {
        self.vulnerabilities.len() + self.secrets.len() + self.misconfigurations.len()
    }

    /// Keeps only findings whose severity is in `keep`.
    pub fn retain_severities(&mut self, keep: &[Severity]) {
        self.vulnerabilities.retain(|f| keep.contains(&f.severity));
        self.secrets.retain(|f| keep.contains(&f.severity));
        self.misconfigurations.retain(|f| keep.contains(&f.severity));
    }
}

/// Scans `image` (blobs in `layout`).
pub fn scan_image(layout: &Store, image: &Image, name: &str, opts: &Options) -> Result<Report, ScanError> {
    let layer_digests: Vec<String> = image.manifest.layers.iter().map(|d| d.digest.to_string()).collect();
    let mut report = Report {
        name: name.to_string(),
        image: image.descriptor.digest.to_string(),
        layers: layer_digests.clone(),
        vulnerabilities: vec![],
        secrets: vec![],
        misconfigurations: vec![],
        packages: 0,
        warnings: vec![],
    };
    if opts.scanners.secret || opts.scanners.misconfig {
        let scans = layers::scan_layers(
            layout,
            &image.manifest.layers,
            &layers::PassOptions {
                secrets: opts.scanners.secret,
                jobs: opts.jobs,
            },
        )?;
        finish_pass(&mut report, &scans, &image.config, opts);
    }
    if opts.scanners.vuln {
        vuln::scan(layout, image, name, opts, &mut report)?;
    }
    Ok(report)
}

/// Turns the layer pass into secret and misconfiguration findings.
fn finish_pass(
    report: &mut Report,
    scans: &[layers::LayerScan],
    config: &kiln_oci::image::ImageConfig,
    opts: &Options,
) {
    if opts.scanners.secret {
        let later = layers::Later::new(scans);
        for (i, s) in scans.iter().enumerate() {
            for f in &s.secrets {
                let gone = later.gone(&f.path, i);
                report.secrets.push(SecretFinding {
                    rule: f.rule.id,
                    title: f.rule.title,
                    severity: f.rule.severity,
                    source: SecretSource::File,
                    location: f.path.clone(),
                    line: f.line,
                    offset: f.binary.then_some(f.offset),
                    value: f.redacted.clone(),
                    layer_index: Some(i + 1),
                    layer: report.layers.get(i).cloned(),
                    removed_in_layer: gone.map(|(j, _)| j + 1),
                    removed: gone.map(|(_, g)| g),
                });
            }
        }
        report.secrets.extend(config_secrets(config));
    }
    if opts.scanners.misconfig {
        let fs = layers::final_fs(scans);
        report.misconfigurations = misconfig::check(config, &fs);
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifest {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Scans a `docker save` tar in place for secrets and misconfiguration: layers are read
/// straight from the archive (no temp layout, no recompression) and checked against the
/// config's diff_ids. Vulnerability scanning needs the catalogers' layout, so callers open the
/// archive through `kiln_oci::transport` for that.
pub fn scan_docker_archive(
    path: &std::path::Path,
    reference: Option<&str>,
    name: &str,
    opts: &Options,
) -> Result<Report, ScanError> {
    use std::io::Read;
    let bad = |reason: String, hint: &'static str| ScanError::Archive {
        path: path.display().to_string(),
        reason,
        hint,
    };
    let corrupt = "the archive is damaged or not a `docker save` tar; save it again";
    let file = std::fs::File::open(path).map_err(|e| bad(e.to_string(), "check the path"))?;
    let mut ar = tar::Archive::new(file);
    let mut offsets: std::collections::HashMap<String, (u64, u64)> = Default::default();
    let mut jsons: std::collections::HashMap<String, Vec<u8>> = Default::default();
    for e in ar.entries_with_seek().map_err(|e| bad(e.to_string(), corrupt))? {
        let mut e = e.map_err(|e| bad(format!("reading the tar: {e}"), corrupt))?;
        let p = layers::normalize(&String::from_utf8_lossy(&e.path_bytes()));
        let p = p.trim_start_matches('/').to_string();
        let (off, size) = (e.raw_file_position(), e.size());
        if p.ends_with(".json") && size < 64 << 20 {
            let mut b = Vec::with_capacity(size as usize);
            e.read_to_end(&mut b)
                .map_err(|e| bad(format!("reading {p}: {e}"), corrupt))?;
            jsons.insert(p.clone(), b);
        }
        offsets.insert(p, (off, size));
    }
    let manifests: Vec<DockerManifest> = serde_json::from_slice(
        jsons
            .get("manifest.json")
            .ok_or_else(|| bad("no manifest.json".into(), corrupt))?,
    )
    .map_err(|e| bad(format!("manifest.json: {e}"), corrupt))?;
    let m = match reference {
        Some(r) => manifests
            .iter()
            .find(|m| m.repo_tags.iter().flatten().any(|t| t == r))
            .ok_or_else(|| bad(format!("no image tagged {r:?}"), "pick one of the archive's RepoTags"))?,
        None if manifests.len() == 1 => &manifests[0],
        None => {
            return Err(bad(
                format!("holds {} images", manifests.len()),
                "append :REF (one of its RepoTags) to choose one",
            ));
        }
    };
    let config_key = layers::normalize(&m.config).trim_start_matches('/').to_string();
    let config_bytes = match jsons.get(&config_key) {
        Some(b) => b.clone(),
        None => {
            // Newer `docker save` names blobs without an extension: read it by offset.
            use std::io::{Seek, SeekFrom};
            let (off, size) = *offsets
                .get(&config_key)
                .ok_or_else(|| bad(format!("config {} is missing", m.config), corrupt))?;
            let mut f = std::fs::File::open(path).map_err(|e| bad(e.to_string(), corrupt))?;
            let mut b = vec![0u8; size.min(64 << 20) as usize];
            f.seek(SeekFrom::Start(off))
                .and_then(|_| f.read_exact(&mut b))
                .map_err(|e| bad(format!("reading config {}: {e}", m.config), corrupt))?;
            b
        }
    };
    let config_bytes = &config_bytes;
    let config: kiln_oci::image::ImageConfig =
        serde_json::from_slice(config_bytes).map_err(|e| bad(format!("config {}: {e}", m.config), corrupt))?;
    let diff_ids = &config.rootfs.diff_ids;
    if diff_ids.len() != m.layers.len() {
        return Err(bad(
            format!(
                "{} layers but the config lists {} diff_ids",
                m.layers.len(),
                diff_ids.len()
            ),
            corrupt,
        ));
    }
    let mut sources = vec![];
    for (l, d) in m.layers.iter().zip(diff_ids) {
        let key = layers::normalize(l).trim_start_matches('/').to_string();
        let (offset, size) = *offsets
            .get(&key)
            .ok_or_else(|| bad(format!("layer {l} is missing"), corrupt))?;
        sources.push(layers::LayerSource::ArchiveEntry {
            path,
            offset,
            size,
            diff_id: d,
        });
    }
    let mut report = Report {
        name: name.to_string(),
        image: kiln_oci::Digest::sha256_of(config_bytes).to_string(),
        layers: diff_ids.iter().map(|d| d.to_string()).collect(),
        vulnerabilities: vec![],
        secrets: vec![],
        misconfigurations: vec![],
        packages: 0,
        warnings: vec![],
    };
    if opts.scanners.secret || opts.scanners.misconfig {
        let scans = layers::scan_sources(
            &sources,
            &layers::PassOptions {
                secrets: opts.scanners.secret,
                jobs: opts.jobs,
            },
        )?;
        finish_pass(&mut report, &scans, &config, opts);
    }
    Ok(report)
}

/// Secrets in Env, labels, history and the command fields of the config.
fn config_secrets(config: &kiln_oci::image::ImageConfig) -> Vec<SecretFinding> {
    let mut texts: Vec<(SecretSource, String, String)> = vec![];
    let c = &config.config;
    for e in c.env.iter().flatten() {
        let key = e.split('=').next().unwrap_or(e).to_string();
        texts.push((SecretSource::Env, key, e.clone()));
    }
    for (k, v) in c.labels.iter().flatten() {
        texts.push((SecretSource::Label, k.clone(), format!("{k}={v}")));
    }
    for (i, h) in config.history.iter().enumerate() {
        if let Some(cb) = &h.created_by {
            texts.push((SecretSource::History, format!("history[{i}]"), cb.clone()));
        }
        if let Some(cm) = &h.comment {
            texts.push((SecretSource::History, format!("history[{i}].comment"), cm.clone()));
        }
    }
    for (field, v) in [("Cmd", &c.cmd), ("Entrypoint", &c.entrypoint)] {
        if let Some(v) = v {
            texts.push((SecretSource::Config, field.to_string(), v.join(" ")));
        }
    }
    let mut out = vec![];
    for (source, location, text) in texts {
        for h in secrets::scan(text.as_bytes()) {
            out.push(SecretFinding {
                rule: h.rule.id,
                title: h.rule.title,
                severity: h.rule.severity,
                source,
                location: location.clone(),
                line: None,
                offset: None,
                value: secrets::redact(&text.as_bytes()[h.start..h.end]),
                layer_index: None,
                layer: None,
                removed_in_layer: None,
                removed: None,
            });
        }
    }
    out
}
