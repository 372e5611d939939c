//! The input document: everything kiln knows about one image, by digest. Built-in rules
//! and Rego read the same document; `kiln policy input IMAGE` prints it, and
//! docs/policy.md describes every field. Field names are stable: Rego policies use them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Facts about one image.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Input {
    /// The reference as given (`127.0.0.1:5000/prod/app:1`).
    pub reference: String,
    /// The repository signatures name.
    pub repository: String,
    /// The digest everything below was read by.
    pub digest: String,
    /// `os/arch[/variant]`.
    pub platform: String,
    /// The config's run settings.
    pub config: ConfigFacts,
    /// Every signature found, with the authority whose key verified it.
    pub signatures: Vec<SignatureFact>,
    /// Every attestation found, with signer and predicate.
    pub attestations: Vec<AttestationFact>,
    /// SBOM packages (from an SBOM attestation or an attached SBOM), when there is one.
    pub sbom: Option<SbomFacts>,
    /// Vulnerability findings, when a rule asks for them.
    pub vulnerabilities: Option<VulnFacts>,
    /// Secrets found by kiln scan's scanner (config and layers), when a rule asks.
    pub secrets: Option<Vec<SecretFact>>,
    /// The SLSA provenance predicate (a signed attestation, else the build's own record).
    pub provenance: Option<ProvenanceFacts>,
    /// What could not be read; a rule needing it denies.
    pub errors: Vec<String>,
}

/// From the image config.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConfigFacts {
    /// `User` (empty: root).
    pub user: String,
    /// `Env`, as written (`KEY=VALUE`).
    pub env: Vec<String>,
    /// `Labels`.
    pub labels: BTreeMap<String, String>,
    /// `created`, RFC 3339.
    pub created: Option<String>,
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    pub cmd: Vec<String>,
}

/// One signature object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignatureFact {
    /// Where it was found (`bundle sha256:…`, `sha256-….sig layer 0`).
    pub source: String,
    /// The authority whose key verified it; `None` when no key did.
    pub authority: Option<String>,
    /// Why no key verified it (wrong key, other digest, malformed).
    pub rejected: Option<String>,
}

/// One attestation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttestationFact {
    /// Predicate type URI.
    pub predicate_type: String,
    /// Where it was found.
    pub source: String,
    /// The authority whose key verified it; `None` when no key did.
    pub authority: Option<String>,
    /// Why no key verified it.
    pub rejected: Option<String>,
    /// The predicate (verified attestations only).
    pub predicate: Option<serde_json::Value>,
}

/// SBOM packages.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SbomFacts {
    /// Where the SBOM came from.
    pub source: String,
    /// The packages.
    pub packages: Vec<PackageFact>,
}

/// One package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageFact {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Package URL, when known.
    pub purl: String,
}

/// Vulnerability findings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VulnFacts {
    /// The database version (its import time), part of the decision cache key.
    pub db: String,
    /// Every finding, with what clears it (VEX statements from attestations).
    pub findings: Vec<FindingFact>,
    /// VEX statements from `openvex` attestations verified by an authority.
    pub vex: Vec<crate::vex::VexStatement>,
}

/// One vulnerable package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingFact {
    /// OSV id.
    pub id: String,
    /// Aliases (CVE ids first).
    pub aliases: Vec<String>,
    /// `CRITICAL`, `HIGH`, `MEDIUM`, `LOW`, `UNKNOWN`.
    pub severity: String,
    /// The package.
    pub package: String,
    /// Installed version.
    pub installed: String,
    /// First fixed version.
    pub fixed: Option<String>,
    /// Package URL.
    pub purl: String,
}

/// One secret (redacted: never the value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretFact {
    /// Rule id.
    pub rule: String,
    /// `file`, `env`, `label`, `history`, `config`.
    pub source: String,
    /// Path, env name, label key.
    pub location: String,
}

/// The provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProvenanceFacts {
    /// The authority that signed it; `None` for the build's own unsigned record.
    pub authority: Option<String>,
    /// The SLSA v1 predicate.
    pub predicate: serde_json::Value,
    /// Base images (`resolvedDependencies` with role `base-image`): `REFERENCE@DIGEST`.
    pub base_images: Vec<String>,
}

/// The predicate type URI for a policy's `type:` (cosign's names, `openvex`, or a URI).
pub fn predicate_uri(kind: &str) -> Option<String> {
    match kind {
        "openvex" => Some(OPENVEX.to_string()),
        k => kiln_sign::envelope::predicate_type(k),
    }
}

/// OpenVEX's predicate type.
pub const OPENVEX: &str = "https://openvex.dev/ns";

impl Input {
    /// The document Rego evaluates against, in regorus's form, with only `fields` (all
    /// fields when `None`): built from the typed facts, not through JSON text.
    pub fn to_rego(&self, fields: Option<&std::collections::BTreeSet<String>>) -> Result<regorus::Value, String> {
        use serde::Deserialize as _;
        let json = match fields {
            None => serde_json::to_value(self).map_err(|e| e.to_string())?,
            Some(fields) => {
                let mut m = serde_json::Map::new();
                for f in fields {
                    if let Some(v) = self.field(f) {
                        m.insert(f.clone(), v.map_err(|e| e.to_string())?);
                    }
                }
                serde_json::Value::Object(m)
            }
        };
        regorus::Value::deserialize(json).map_err(|e| e.to_string())
    }

    /// One top-level field as JSON, as it appears in the whole document; `None` for a name
    /// the document does not have.
    fn field(&self, name: &str) -> Option<serde_json::Result<serde_json::Value>> {
        use serde_json::to_value as v;
        Some(match name {
            "reference" => v(&self.reference),
            "repository" => v(&self.repository),
            "digest" => v(&self.digest),
            "platform" => v(&self.platform),
            "config" => v(&self.config),
            "signatures" => v(&self.signatures),
            "attestations" => v(&self.attestations),
            "sbom" => v(&self.sbom),
            "vulnerabilities" => v(&self.vulnerabilities),
            "secrets" => v(&self.secrets),
            "provenance" => v(&self.provenance),
            "errors" => v(&self.errors),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    /// Rego given only some fields must see each exactly as in the whole document, and
    /// every field must be reachable by name.
    #[test]
    fn every_field_can_be_built_alone() {
        let input = super::Input::default();
        let whole = serde_json::to_value(&input).unwrap();
        let names: std::collections::BTreeSet<String> = whole.as_object().unwrap().keys().cloned().collect();
        for n in &names {
            assert_eq!(input.field(n).map(|v| v.unwrap()).as_ref(), whole.get(n), "{n}");
        }
        use serde::Deserialize as _;
        assert_eq!(
            input.to_rego(Some(&names)).unwrap(),
            regorus::Value::deserialize(whole).unwrap()
        );
    }
}
