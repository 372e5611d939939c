//! What a scan reports: severities, findings of each kind, packages it could not check, and
//! the options that choose the scanners.

use kiln_oci::walk::Removal;
use serde::Serialize;

use crate::db;

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
    pub removed: Option<Removal>,
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

/// A package the vulnerability scanner could not check, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotChecked {
    /// The package as installed.
    pub package: String,
    /// Installed version.
    pub version: String,
    /// Its type, as `kiln sbom` names it (`deb`, `npm`, `python`…).
    #[serde(rename = "type")]
    pub kind: String,
    /// Package URL.
    pub purl: String,
    /// Why it was not checked (the OSV ecosystems looked for, or what is missing).
    pub reason: String,
    /// Where the package's metadata lives.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
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
    /// Packages the database could not check (no records for their ecosystem): not a pass.
    pub not_checked: Vec<NotChecked>,
    /// Things the user should know (no or old database, skipped packages).
    pub warnings: Vec<String>,
}

impl Report {
    /// An empty report for `name` (manifest or config digest `image`, layers base first).
    pub fn new(name: &str, image: String, layers: Vec<String>) -> Report {
        Report {
            name: name.to_string(),
            image,
            layers,
            vulnerabilities: vec![],
            secrets: vec![],
            misconfigurations: vec![],
            packages: 0,
            not_checked: vec![],
            warnings: vec![],
        }
    }

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
