//! Rendering a [`Report`]: aligned tables for people, JSON for scripts, SARIF 2.1.0 for
//! code-scanning services.

use std::collections::BTreeMap;

use kiln_sarif as sarif;

use crate::{Report, Severity};

fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |out: &mut String, cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(c);
                s.push_str(&" ".repeat(w[i] - c.chars().count() + 2));
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(out, header.to_vec());
    for r in rows {
        line(out, r.iter().map(String::as_str).collect());
    }
}

fn short(d: &str) -> String {
    match d.split_once(':') {
        Some((a, h)) => format!("{a}:{}", &h[..h.len().min(12)]),
        None => d.to_string(),
    }
}

/// Human tables, one per kind of finding, and a summary line.
pub fn render_table(r: &Report) -> String {
    let mut out = format!(
        "{} ({}), {} layer{}\n",
        r.name,
        short(&r.image),
        r.layers.len(),
        if r.layers.len() == 1 { "" } else { "s" }
    );
    if !r.vulnerabilities.is_empty() {
        out.push_str(&format!("\nVulnerabilities ({})\n", r.vulnerabilities.len()));
        let rows: Vec<Vec<String>> = r
            .vulnerabilities
            .iter()
            .map(|v| {
                let cve = v.aliases.iter().find(|a| a.starts_with("CVE-"));
                vec![
                    match cve {
                        Some(c) if *c != v.id => format!("{} ({c})", v.id),
                        _ => v.id.clone(),
                    },
                    v.severity.to_string(),
                    match &v.source_package {
                        Some(s) => format!("{} (src {s})", v.package),
                        None => v.package.clone(),
                    },
                    v.installed.clone(),
                    v.fixed.clone().unwrap_or_else(|| "-".into()),
                    v.layer_index.map_or("-".into(), |i| i.to_string()),
                ]
            })
            .collect();
        table(
            &mut out,
            &["ID", "SEVERITY", "PACKAGE", "INSTALLED", "FIXED", "LAYER"],
            &rows,
        );
    }
    if !r.secrets.is_empty() {
        out.push_str(&format!("\nSecrets ({})\n", r.secrets.len()));
        let rows: Vec<Vec<String>> = r
            .secrets
            .iter()
            .map(|s| {
                let mut loc = s.location.clone();
                if let Some(l) = s.line {
                    loc.push_str(&format!(":{l}"));
                } else if let Some(o) = s.offset {
                    loc.push_str(&format!(" @{o}"));
                }
                let place = match (s.layer_index, s.removed_in_layer, s.removed) {
                    (Some(n), Some(m), Some(kiln_oci::walk::Removal::Deleted)) => {
                        format!("present in layer {n}, deleted in layer {m}")
                    }
                    (Some(n), Some(m), _) => format!("present in layer {n}, overwritten in layer {m}"),
                    (Some(n), None, _) => format!("layer {n}"),
                    (None, ..) => format!(
                        "config ({})",
                        serde_json::to_value(s.source)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default()
                    ),
                };
                vec![s.rule.to_string(), s.severity.to_string(), loc, place, s.value.clone()]
            })
            .collect();
        table(&mut out, &["RULE", "SEVERITY", "WHERE", "LAYER", "VALUE"], &rows);
    }
    if !r.misconfigurations.is_empty() {
        out.push_str(&format!("\nMisconfigurations ({})\n", r.misconfigurations.len()));
        let rows: Vec<Vec<String>> = r
            .misconfigurations
            .iter()
            .map(|m| vec![m.id.to_string(), m.severity.to_string(), m.message.clone()])
            .collect();
        table(&mut out, &["ID", "SEVERITY", "MESSAGE"], &rows);
    }
    if !r.not_checked.is_empty() {
        not_checked_table(&mut out, r);
    }
    out.push('\n');
    out.push_str(&summary(r));
    out.push('\n');
    out
}

/// Packages the database could not check, one row per type and reason (the JSON and SARIF
/// reports list each package).
fn not_checked_table(out: &mut String, r: &Report) {
    let mut groups: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
    for p in &r.not_checked {
        groups.entry((&p.kind, &p.reason)).or_default().push(&p.package);
    }
    out.push_str(&format!(
        "\nNot checked ({})\n",
        plural(r.not_checked.len(), "package", "packages")
    ));
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|((kind, reason), names)| {
            let mut some: Vec<&str> = names.iter().take(3).copied().collect();
            if names.len() > 3 {
                some.push("…");
            }
            vec![
                kind.to_string(),
                names.len().to_string(),
                some.join(", "),
                reason.to_string(),
            ]
        })
        .collect();
    table(out, &["TYPE", "COUNT", "PACKAGES", "WHY"], &rows);
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `2 vulnerabilities, 1 secret, 3 misconfigurations, 4 packages not checked (CRITICAL 1, HIGH 3, …)`.
pub fn summary(r: &Report) -> String {
    let mut by: BTreeMap<std::cmp::Reverse<Severity>, usize> = BTreeMap::new();
    for s in r
        .vulnerabilities
        .iter()
        .map(|v| v.severity)
        .chain(r.secrets.iter().map(|s| s.severity))
        .chain(r.misconfigurations.iter().map(|m| m.severity))
    {
        *by.entry(std::cmp::Reverse(s)).or_default() += 1;
    }
    let mut s = format!(
        "{}, {}, {}",
        plural(r.vulnerabilities.len(), "vulnerability", "vulnerabilities"),
        plural(r.secrets.len(), "secret", "secrets"),
        plural(r.misconfigurations.len(), "misconfiguration", "misconfigurations"),
    );
    if !r.not_checked.is_empty() {
        s.push_str(&format!(
            ", {} not checked",
            plural(r.not_checked.len(), "package", "packages")
        ));
    }
    if !by.is_empty() {
        let parts: Vec<String> = by.iter().map(|(k, n)| format!("{} {n}", k.0)).collect();
        s.push_str(&format!(" ({})", parts.join(", ")));
    }
    s
}

/// The report as pretty JSON.
pub fn render_json(r: &Report) -> String {
    let mut s = serde_json::to_string_pretty(r).expect("the report serialises");
    s.push('\n');
    s
}

fn level(s: Severity) -> sarif::Level {
    match s {
        Severity::Critical | Severity::High => sarif::Level::Error,
        Severity::Medium => sarif::Level::Warning,
        Severity::Low | Severity::Unknown => sarif::Level::Note,
    }
}

/// GitHub's `security-severity` (a CVSS-like number it sorts alerts by).
fn security_severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "9.5",
        Severity::High => "8.0",
        Severity::Medium => "5.5",
        Severity::Low => "2.0",
        Severity::Unknown => "0.0",
    }
}

/// The SARIF rule of packages the database could not check.
pub const NOT_CHECKED: &str = "kiln-not-checked";

/// SARIF 2.1.0: one rule per vulnerability id, secret rule and config rule that has a result,
/// and a note for each package the database could not check.
pub fn render_sarif(r: &Report) -> String {
    let mut rules: Vec<sarif::Rule> = vec![];
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    let mut results = vec![];
    let mut rule_for =
        |id: &str, name: &str, desc: &str, sev: Severity, tag: &str, help_uri: Option<String>| -> usize {
            if let Some(i) = index.get(id) {
                return *i;
            }
            let mut props = serde_json::Map::new();
            props.insert("tags".into(), serde_json::json!(["security", tag]));
            props.insert("security-severity".into(), security_severity(sev).into());
            rules.push(sarif::Rule {
                id: id.to_string(),
                name: Some(name.to_string()),
                short_description: sarif::Message::new(desc),
                full_description: None,
                help: None,
                help_uri,
                default_configuration: sarif::Configuration { level: level(sev) },
                properties: props,
            });
            index.insert(id.to_string(), rules.len() - 1);
            rules.len() - 1
        };
    for v in &r.vulnerabilities {
        let desc = v.title.clone().unwrap_or_else(|| format!("{} in {}", v.id, v.package));
        let i = rule_for(
            &v.id,
            &v.id,
            &desc,
            v.severity,
            "vulnerability",
            Some(format!("https://osv.dev/vulnerability/{}", v.id)),
        );
        let msg = format!(
            "{} {} {} is affected by {}{}{}",
            v.ecosystem,
            v.package,
            v.installed,
            v.id,
            if v.aliases.is_empty() {
                String::new()
            } else {
                format!(" ({})", v.aliases.join(", "))
            },
            match &v.fixed {
                Some(f) => format!("; fixed in {f}"),
                None => "; no fix yet".into(),
            }
        );
        results.push(result(
            &v.id,
            i,
            v.severity,
            msg,
            v.path.as_deref().unwrap_or("image"),
            None,
            &v.purl,
        ));
    }
    for s in &r.secrets {
        let i = rule_for(s.rule, s.rule, s.title, s.severity, "secret", None);
        let place = match (s.layer_index, s.removed_in_layer) {
            (Some(n), Some(m)) => format!(" (present in layer {n}, removed in layer {m})"),
            (Some(n), None) => format!(" (layer {n})"),
            _ => String::new(),
        };
        let msg = format!("{}: {}{}", s.title, s.value, place);
        let loc = match s.source {
            crate::SecretSource::File => s.location.clone(),
            _ => format!("image-config/{}", s.location),
        };
        results.push(result(s.rule, i, s.severity, msg, &loc, s.line, &s.value));
    }
    for m in &r.misconfigurations {
        let title = crate::misconfig::RULES
            .iter()
            .find(|x| x.0 == m.id)
            .map_or(m.id, |x| x.2);
        let i = rule_for(m.id, m.id, title, m.severity, "misconfiguration", None);
        let loc = if m.location.starts_with('/') {
            m.location.clone()
        } else {
            format!("image-config/{}", m.location)
        };
        results.push(result(m.id, i, m.severity, m.message.clone(), &loc, None, &m.location));
    }
    for p in &r.not_checked {
        let i = rule_for(
            NOT_CHECKED,
            "package not checked",
            "A package the vulnerability database could not check: no finding does not mean no vulnerability",
            Severity::Unknown,
            "not-checked",
            None,
        );
        let msg = format!("{} {} {} was not checked: {}", p.kind, p.package, p.version, p.reason);
        let loc = p.path.as_deref().unwrap_or("image");
        results.push(result(NOT_CHECKED, i, Severity::Unknown, msg, loc, None, &p.purl));
    }
    let log = sarif::Log::new(sarif::Run::kiln(
        "kiln-scan",
        Some("https://github.com/kiln/kiln/blob/main/docs/scan.md".into()),
        rules,
        results,
    ));
    log.to_json()
}

fn result(
    id: &str,
    rule_index: usize,
    sev: Severity,
    message: String,
    path: &str,
    line: Option<usize>,
    identity: &str,
) -> sarif::SarifResult {
    let mut fp = serde_json::Map::new();
    fp.insert("kilnFinding/v1".into(), format!("{id}|{path}|{identity}").into());
    sarif::SarifResult {
        rule_id: id.to_string(),
        rule_index,
        level: level(sev),
        message: sarif::Message::new(message),
        locations: vec![sarif::Location::file(path, line)],
        partial_fingerprints: fp,
    }
}
