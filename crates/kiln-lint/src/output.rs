//! Rendering findings: one line per finding for people, a JSON document for
//! scripts, and SARIF 2.1.0 for code-scanning services (GitHub reads it).
//!
//! SARIF uses kiln-sarif, the model shared with `kiln scan`, so both commands
//! write logs valid against the official schema (the integration tests check
//! lint's with `jsonschema`).

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

use kiln_sarif::{
    ArtifactLocation, Configuration, Level, Location, Log, Message, PhysicalLocation, Region, Run, SarifResult,
};

/// The schema URI kiln declares.
pub const SARIF_SCHEMA: &str = kiln_sarif::SCHEMA;

fn level(s: Severity) -> Level {
    match s {
        Severity::Error => Level::Error,
        Severity::Warning => Level::Warning,
        Severity::Info => Level::Note,
    }
}

/// A relative path as a relative URI reference; an absolute one as a `file://` URI, so a
/// viewer never resolves it against the wrong root.
fn uri(path: &str) -> String {
    if path.starts_with('/') {
        format!("file:///{}", kiln_sarif::uri(path))
    } else {
        kiln_sarif::uri(path)
    }
}

fn descriptor(r: &Rule) -> kiln_sarif::Rule {
    let mut properties = serde_json::Map::new();
    properties.insert("tags".into(), serde_json::json!([r.category.as_str()]));
    kiln_sarif::Rule {
        id: r.id.to_string(),
        name: Some(r.name.to_string()),
        short_description: Message::new(r.summary),
        full_description: Some(Message::new(r.why)),
        help: Some(Message::new(format!("{} See {}.", r.why, r.doc()))),
        help_uri: None,
        default_configuration: Configuration {
            level: level(r.severity),
        },
        properties,
    }
}

/// A SARIF 2.1.0 log with one run: every rule in the driver (so code-scanning
/// services can show rule help), and one result per finding.
pub fn sarif(findings: &[Finding]) -> String {
    let rules: Vec<kiln_sarif::Rule> = RULES.iter().map(descriptor).collect();
    let results = findings
        .iter()
        .map(|f| SarifResult {
            rule_id: f.rule.to_string(),
            rule_index: RULES.iter().position(|r| r.id == f.rule).unwrap_or(0),
            level: level(f.severity),
            message: Message::new(format!("{} ({})", f.message, f.doc)),
            locations: vec![Location {
                physical_location: PhysicalLocation {
                    artifact_location: ArtifactLocation { uri: uri(&f.file) },
                    region: Some(Region {
                        start_line: f.line,
                        start_column: Some(f.col),
                    }),
                },
            }],
            partial_fingerprints: Default::default(),
        })
        .collect();
    Log::new(Run::kiln("kiln-lint", None, rules, results)).to_json()
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
