//! Rendering findings: one line per finding for people, a JSON document for
//! scripts, and SARIF 2.1.0 for code-scanning services (GitHub reads it).
//!
//! The SARIF model is our own small serde subset of the OASIS schema: only
//! the objects kiln fills in, so the output stays valid against the official
//! schema (the integration tests check it with `jsonschema`).

use serde::Serialize;

use crate::rules::{RULES, Rule};
use crate::{Finding, Severity};

/// `path:line:col: severity[KL###] message (docs/lint/KL###.md)` per finding,
/// then a summary line.
pub fn human(findings: &[Finding], files: usize) -> String {
    let mut out = String::new();
    for f in findings {
        out.push_str(&format!(
            "{}:{}:{}: {}[{}] {} ({})\n",
            f.file, f.line, f.col, f.severity, f.rule, f.message, f.doc
        ));
    }
    out.push_str(&summary(findings, files));
    out.push('\n');
    out
}

/// `3 findings (1 error, 2 warnings) in 2 files`, or `no findings in 1 file`.
pub fn summary(findings: &[Finding], files: usize) -> String {
    let fs = if files == 1 { "file" } else { "files" };
    if findings.is_empty() {
        return format!("no findings in {files} {fs}");
    }
    let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
    let mut parts = Vec::new();
    for (s, one, many) in [
        (Severity::Error, "error", "errors"),
        (Severity::Warning, "warning", "warnings"),
        (Severity::Info, "info", "info"),
    ] {
        let n = count(s);
        if n > 0 {
            parts.push(format!("{n} {}", if n == 1 { one } else { many }));
        }
    }
    let n = findings.len();
    format!(
        "{n} {} ({}) in {files} {fs}",
        if n == 1 { "finding" } else { "findings" },
        parts.join(", ")
    )
}

#[derive(Serialize)]
struct JsonReport<'a> {
    findings: &'a [Finding],
    files: usize,
    summary: String,
}

/// `{"findings": [...], "files": N, "summary": "..."}`, pretty-printed.
pub fn json(findings: &[Finding], files: usize) -> String {
    let r = JsonReport {
        findings,
        files,
        summary: summary(findings, files),
    };
    serde_json::to_string_pretty(&r).expect("findings serialize")
}

// ── SARIF 2.1.0 ──────────────────────────────────────────────────────────

/// The schema URI kiln declares.
pub const SARIF_SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

#[derive(Serialize)]
struct Sarif {
    #[serde(rename = "$schema")]
    schema: &'static str,
    version: &'static str,
    runs: Vec<Run>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Run {
    tool: Tool,
    results: Vec<SarifResult>,
    column_kind: &'static str,
}

#[derive(Serialize)]
struct Tool {
    driver: Driver,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Driver {
    name: &'static str,
    version: &'static str,
    rules: Vec<ReportingDescriptor>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReportingDescriptor {
    id: &'static str,
    name: &'static str,
    short_description: Message,
    full_description: Message,
    help: Message,
    default_configuration: Configuration,
    properties: RuleProperties,
}

#[derive(Serialize)]
struct RuleProperties {
    tags: Vec<&'static str>,
}

#[derive(Serialize)]
struct Configuration {
    level: &'static str,
}

#[derive(Serialize)]
struct Message {
    text: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifResult {
    rule_id: &'static str,
    rule_index: usize,
    level: &'static str,
    message: Message,
    locations: Vec<Location>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Location {
    physical_location: PhysicalLocation,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PhysicalLocation {
    artifact_location: ArtifactLocation,
    region: Region,
}

#[derive(Serialize)]
struct ArtifactLocation {
    uri: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Region {
    start_line: usize,
    start_column: usize,
}

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "note",
    }
}

/// Percent-encodes what may not appear raw in a relative URI reference.
fn uri(path: &str) -> String {
    let mut out = String::new();
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn descriptor(r: &Rule) -> ReportingDescriptor {
    ReportingDescriptor {
        id: r.id,
        name: r.name,
        short_description: Message {
            text: r.summary.to_string(),
        },
        full_description: Message {
            text: r.why.to_string(),
        },
        help: Message {
            text: format!("{} See {}.", r.why, r.doc()),
        },
        default_configuration: Configuration {
            level: level(r.severity),
        },
        properties: RuleProperties {
            tags: vec![r.category.as_str()],
        },
    }
}

/// A SARIF 2.1.0 log with one run: every rule in the driver (so code-scanning
/// services can show rule help), and one result per finding.
pub fn sarif(findings: &[Finding]) -> String {
    let rules: Vec<ReportingDescriptor> = RULES.iter().map(descriptor).collect();
    let results = findings
        .iter()
        .map(|f| SarifResult {
            rule_id: f.rule,
            rule_index: RULES.iter().position(|r| r.id == f.rule).unwrap_or(0),
            level: level(f.severity),
            message: Message {
                text: format!("{} ({})", f.message, f.doc),
            },
            locations: vec![Location {
                physical_location: PhysicalLocation {
                    artifact_location: ArtifactLocation { uri: uri(&f.file) },
                    region: Region {
                        start_line: f.line,
                        start_column: f.col,
                    },
                },
            }],
        })
        .collect();
    let log = Sarif {
        schema: SARIF_SCHEMA,
        version: "2.1.0",
        runs: vec![Run {
            tool: Tool {
                driver: Driver {
                    name: "kiln-lint",
                    version: env!("CARGO_PKG_VERSION"),
                    rules,
                },
            },
            results,
            column_kind: "unicodeCodePoints",
        }],
    };
    serde_json::to_string_pretty(&log).expect("sarif serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, lint};

    #[test]
    fn sarif_has_results_and_rules() {
        let f = lint(
            "dir/Docker file",
            "FROM debian\nUSER 1\nHEALTHCHECK NONE\n",
            &Config::default(),
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&sarif(&f)).unwrap();
        assert_eq!(v["version"], "2.1.0");
        let run = &v["runs"][0];
        assert_eq!(run["results"][0]["ruleId"], "KL001");
        assert_eq!(
            run["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            "dir/Docker%20file"
        );
        let idx = run["results"][0]["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(run["tool"]["driver"]["rules"][idx]["id"], "KL001");
    }

    #[test]
    fn human_lines() {
        let f = lint(
            "Dockerfile",
            "FROM debian\nUSER 1\nHEALTHCHECK NONE\n",
            &Config::default(),
        )
        .unwrap();
        let h = human(&f, 1);
        assert!(
            h.starts_with("Dockerfile:1:6: warning[KL001] base image `debian` has no tag"),
            "{h}"
        );
        assert!(h.contains("(docs/lint/KL001.md)"));
        assert_eq!(summary(&[], 2), "no findings in 2 files");
    }
}
