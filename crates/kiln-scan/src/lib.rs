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
        if opts.scanners.secret {
            let later = layers::Later::new(&scans);
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
                        layer: Some(layer_digests[i].clone()),
                        removed_in_layer: gone.map(|(j, _)| j + 1),
                        removed: gone.map(|(_, g)| g),
                    });
                }
            }
            report.secrets.extend(config_secrets(&image.config));
        }
        if opts.scanners.misconfig {
            let fs = layers::final_fs(&scans);
            report.misconfigurations = misconfig::check(&image.config, &fs);
        }
    }
    if opts.scanners.vuln {
        vuln::scan(layout, image, name, opts, &mut report)?;
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
