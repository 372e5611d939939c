//! The policy file as typed data (`kiln-policy.yaml`, version 1). Unknown fields are errors,
//! so a misspelt rule never silently allows an image.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// Always 1; a later format gets a new number so old kiln refuses it.
    pub version: u32,
    /// What happens to an image that no rule matches.
    #[serde(default)]
    pub default: DefaultAction,
    /// Named public keys that rules trust.
    #[serde(default)]
    pub authorities: BTreeMap<String, Authority>,
    /// The rules; every rule whose `images` match applies.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// `default: deny | allow`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultAction {
    /// An image that no rule matches is denied (fail closed).
    #[default]
    Deny,
    /// An image that no rule matches is allowed.
    Allow,
}

/// A trusted key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authority {
    /// cosign-format or PEM public key, relative to the policy file.
    pub key: String,
}

/// `enforce` denies; `warn` reports and allows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A violation denies the image.
    #[default]
    Enforce,
    /// A violation is reported; the image is allowed.
    Warn,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Named in every violation.
    pub name: String,
    /// Globs over the full reference (`*` within a path segment, `**` across them).
    pub images: Vec<String>,
    /// Enforce or warn.
    #[serde(default)]
    pub mode: Mode,
    /// Image signatures required.
    #[serde(default)]
    pub signatures: Option<SignatureRule>,
    /// Attestations required.
    #[serde(default)]
    pub attestations: Vec<AttestationRule>,
    /// Vulnerability limits.
    #[serde(default)]
    pub vulnerabilities: Option<VulnRule>,
    /// Config checks.
    #[serde(default)]
    pub config: Option<ConfigRule>,
    /// Globs every base image (from the provenance) must match.
    #[serde(default)]
    pub base_images: Option<Vec<String>>,
    /// Rego files (globs, relative to the policy file): `package kiln`, `deny contains msg if`.
    #[serde(default)]
    pub rego: Vec<String>,
    /// Pod settings for `kiln serve` (admission); kiln policy only parses them.
    #[serde(default)]
    pub pod: Option<PodRule>,
}

/// `signatures: { by: [...], threshold: N }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureRule {
    /// Authorities whose signatures count.
    pub by: Vec<String>,
    /// How many distinct authorities must have signed (default 1).
    #[serde(default = "one")]
    pub threshold: usize,
}

fn one() -> usize {
    1
}

/// One required attestation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestationRule {
    /// Predicate type: `slsaprovenance`, `spdxjson`, `cyclonedx`, `openvex`, `vuln`, or a URI.
    #[serde(rename = "type")]
    pub kind: String,
    /// Authorities whose attestations count.
    pub by: Vec<String>,
    /// Dotted paths into the predicate and the glob each string must match.
    #[serde(default, rename = "match")]
    pub matches: BTreeMap<String, String>,
}

/// `vulnerabilities:`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VulnRule {
    /// Anything above this severity denies (`none` denies every finding).
    pub max_severity: String,
    /// Findings accepted until a date.
    #[serde(default)]
    pub ignore: Vec<IgnoreRule>,
    /// OpenVEX files (globs, relative to the policy file).
    #[serde(default)]
    pub vex: Vec<String>,
}

/// One accepted finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IgnoreRule {
    /// Vulnerability id or alias (`CVE-2024-0001`, `GHSA-…`).
    pub id: String,
    /// Last day (YYYY-MM-DD, UTC) the ignore holds; after it the finding counts again.
    #[serde(default)]
    pub until: Option<String>,
    /// Why, for the audit trail.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `config:`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigRule {
    /// The image's user must not be root (empty, `root`, `0`, `0:…`).
    #[serde(default)]
    pub non_root: bool,
    /// Labels that must be present and not empty.
    #[serde(default)]
    pub required_labels: Vec<String>,
    /// kiln scan's secret scanner must find nothing (config and every layer).
    #[serde(default)]
    pub no_secrets: bool,
    /// Largest age from the config's `created` time: `90d`, `12h`, `30m`.
    #[serde(default)]
    pub max_age: Option<String>,
}

/// `pod:` — settings a pod running the image must have (checked by `kiln serve`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodRule {
    /// Pod Security Standard: `privileged`, `baseline` or `restricted`.
    #[serde(default)]
    pub profile: Option<String>,
    /// Containers must set `readOnlyRootFilesystem: true`.
    #[serde(default)]
    pub read_only_root: Option<bool>,
}
