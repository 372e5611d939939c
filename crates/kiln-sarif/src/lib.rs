//! SARIF 2.1.0, as much of it as kiln's checkers fill in.
//!
//! One model for every kiln command that speaks SARIF (`kiln scan`, `lint`, `analyze` and
//! `policy check`), so that what GitHub code scanning reads is validated in one place. Only the objects kiln writes are modelled, and optional members are skipped
//! when empty, which keeps the output valid against the official schema.

#![deny(missing_docs)]

use serde::Serialize;

/// The schema URI kiln declares (the same one `kiln lint` uses).
pub const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

/// A SARIF log: the document root.
#[derive(Debug, Clone, Serialize)]
pub struct Log {
    /// `$schema`.
    #[serde(rename = "$schema")]
    pub schema: &'static str,
    /// Always `2.1.0`.
    pub version: &'static str,
    /// One run per tool invocation.
    pub runs: Vec<Run>,
}

impl Log {
    /// A log with one run.
    pub fn new(run: Run) -> Log {
        Log {
            schema: SCHEMA,
            version: "2.1.0",
            runs: vec![run],
        }
    }

    /// Pretty-printed JSON, ending with a newline.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("the SARIF model serialises");
        s.push('\n');
        s
    }
}

/// One run of one tool.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    /// The tool and its rules.
    pub tool: Tool,
    /// The findings.
    pub results: Vec<SarifResult>,
    /// `unicodeCodePoints` (what GitHub expects for columns).
    pub column_kind: &'static str,
}

impl Run {
    /// A run of one of kiln's own tools (`kiln-scan`, `kiln-lint`, …): kiln's version, and
    /// columns counted as GitHub counts them, the same for every command.
    pub fn kiln(name: &str, information_uri: Option<String>, rules: Vec<Rule>, results: Vec<SarifResult>) -> Run {
        Run {
            tool: Tool {
                driver: Driver {
                    name: name.into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    information_uri,
                    rules,
                },
            },
            results,
            column_kind: "unicodeCodePoints",
        }
    }
}

/// `tool`.
#[derive(Debug, Clone, Serialize)]
pub struct Tool {
    /// The tool itself.
    pub driver: Driver,
}

/// `tool.driver`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Driver {
    /// Tool name (`kiln-scan`).
    pub name: String,
    /// Tool version.
    pub version: String,
    /// Where to read about the tool.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub information_uri: Option<String>,
    /// Every rule a result may refer to by index.
    pub rules: Vec<Rule>,
}

/// `reportingDescriptor`: a rule.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// Stable id (`CVE-2024-1234`, `secret/aws-access-key`).
    pub id: String,
    /// Short name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// One line.
    pub short_description: Message,
    /// Longer text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_description: Option<Message>,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<Message>,
    /// Where to read more.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help_uri: Option<String>,
    /// Default level.
    pub default_configuration: Configuration,
    /// Tags and `security-severity` (GitHub sorts alerts by it).
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub properties: serde_json::Map<String, serde_json::Value>,
}

/// `reportingConfiguration`.
#[derive(Debug, Clone, Serialize)]
pub struct Configuration {
    /// The level.
    pub level: Level,
}

/// A result's level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Must fix.
    Error,
    /// Should fix.
    Warning,
    /// For information.
    Note,
}

/// `message`.
#[derive(Debug, Clone, Serialize)]
pub struct Message {
    /// Plain text.
    pub text: String,
}

impl Message {
    /// A plain-text message.
    pub fn new(text: impl Into<String>) -> Message {
        Message { text: text.into() }
    }
}

/// `result`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SarifResult {
    /// The rule's id.
    pub rule_id: String,
    /// The rule's index in `driver.rules`.
    pub rule_index: usize,
    /// Level.
    pub level: Level,
    /// What was found.
    pub message: Message,
    /// Where.
    pub locations: Vec<Location>,
    /// Stable identity across runs (so services can track a finding).
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub partial_fingerprints: serde_json::Map<String, serde_json::Value>,
}

/// `location`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Location {
    /// File and region.
    pub physical_location: PhysicalLocation,
}

impl Location {
    /// A location in `path` (percent-encoded here), optionally at a 1-based line.
    pub fn file(path: &str, line: Option<usize>) -> Location {
        Location {
            physical_location: PhysicalLocation {
                artifact_location: ArtifactLocation { uri: uri(path) },
                region: line.map(|l| Region {
                    start_line: l.max(1),
                    start_column: None,
                }),
            },
        }
    }
}

/// `physicalLocation`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PhysicalLocation {
    /// The file.
    pub artifact_location: ArtifactLocation,
    /// Where in it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<Region>,
}

/// `artifactLocation`.
#[derive(Debug, Clone, Serialize)]
pub struct ArtifactLocation {
    /// A relative URI reference.
    pub uri: String,
}

/// `region`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Region {
    /// 1-based line.
    pub start_line: usize,
    /// 1-based column.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_column: Option<usize>,
}

/// Percent-encodes what may not appear raw in a relative URI reference (and drops a leading
/// `/`, since SARIF consumers resolve URIs against the scanned root).
pub fn uri(path: &str) -> String {
    let mut out = String::new();
    for b in path.trim_start_matches('/').bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_are_encoded() {
        assert_eq!(uri("/etc/a b"), "etc/a%20b");
        assert_eq!(uri("x#y"), "x%23y");
    }

    #[test]
    fn empty_optionals_are_skipped() {
        let log = Log::new(Run {
            tool: Tool {
                driver: Driver {
                    name: "t".into(),
                    version: "1".into(),
                    information_uri: None,
                    rules: vec![],
                },
            },
            results: vec![SarifResult {
                rule_id: "r".into(),
                rule_index: 0,
                level: Level::Warning,
                message: Message::new("m"),
                locations: vec![Location::file("/a", None)],
                partial_fingerprints: Default::default(),
            }],
            column_kind: "unicodeCodePoints",
        });
        let v: serde_json::Value = serde_json::from_str(&log.to_json()).unwrap();
        assert_eq!(v["version"], "2.1.0");
        assert!(v["runs"][0]["results"][0].get("partialFingerprints").is_none());
        assert!(
            v["runs"][0]["results"][0]["locations"][0]["physicalLocation"]
                .get("region")
                .is_none()
        );
    }
}
