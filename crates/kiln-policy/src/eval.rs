//! Evaluating a policy against an input document: every rule whose images match applies;
//! enforce-mode violations deny, warn-mode ones are reported. Evaluation does no I/O (the
//! input holds every fact), so it is fast and the same for the CLI, `kiln policy test`
//! fixtures and `kiln serve`.

use std::collections::BTreeSet;

use crate::decision::{Decision, Violation};
use crate::input::{FindingFact, Input};
use crate::load::Policy;
use crate::model::{AttestationRule, ConfigRule, DefaultAction, Mode, Rule, SignatureRule, VulnRule};
use crate::vex::VexStatement;

/// Rank of a `max_severity` value: findings ranked above it violate.
pub fn severity_limit(s: &str) -> Option<u8> {
    Some(match s.to_ascii_lowercase().as_str() {
        "none" => 0,
        "unknown" => 1,
        "low" => 2,
        "medium" | "moderate" => 3,
        "high" => 4,
        "critical" => 5,
        _ => return None,
    })
}

/// Collects one rule's violations.
struct Out<'a> {
    rule: &'a Rule,
    found: Vec<Violation>,
}

impl Out<'_> {
    fn add(&mut self, message: impl Into<String>, fix: impl Into<String>) {
        self.found.push(Violation {
            rule: self.rule.name.clone(),
            mode: self.rule.mode,
            message: message.into(),
            fix: fix.into(),
        });
    }
}

fn quoted(names: &[String]) -> String {
    names.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", ")
}

impl Policy {
    /// The decision for `input`, at the current time.
    pub fn evaluate(&self, input: &Input) -> Decision {
        self.evaluate_at(input, crate::time::now())
    }

    /// The decision for `input` at `now` (seconds since the epoch): `until` dates and
    /// `max_age` are judged against it.
    pub fn evaluate_at(&self, input: &Input, now: i64) -> Decision {
        let matching = self.matching(&input.reference);
        let mut d = Decision {
            reference: input.reference.clone(),
            digest: input.digest.clone(),
            allowed: true,
            rules: matching.iter().map(|(_, r)| r.name.clone()).collect(),
            violations: vec![],
            warnings: vec![],
            policy: self.hash.clone(),
        };
        if matching.is_empty() && self.file.default == DefaultAction::Deny {
            d.violations.push(Violation {
                rule: "(default)".into(),
                mode: Mode::Enforce,
                message: format!("no rule of the policy matches {}", input.reference),
                fix: "add a rule whose images match it, or `default: allow`".into(),
            });
        }
        for (i, rule) in matching {
            let mut out = Out { rule, found: vec![] };
            self.check_rule(i, rule, input, now, &mut out);
            for v in out.found {
                match v.mode {
                    Mode::Enforce => d.violations.push(v),
                    Mode::Warn => d.warnings.push(v),
                }
            }
        }
        d.allowed = d.violations.is_empty();
        d
    }

    fn check_rule(&self, i: usize, rule: &Rule, input: &Input, now: i64, out: &mut Out) {
        if let Some(s) = &rule.signatures {
            self.check_signatures(s, input, out);
        }
        for a in &rule.attestations {
            check_attestation(a, input, out);
        }
        if let Some(v) = &rule.vulnerabilities {
            check_vulns(v, &self.vex[i], input, now, out);
        }
        if let Some(c) = &rule.config {
            check_config(c, input, now, out);
        }
        if let Some(globs) = &rule.base_images {
            check_bases(globs, input, out);
        }
        if !self.rego[i].is_empty() {
            // Only the fields the rule's Rego can read, built straight into regorus's form.
            let doc = input.to_rego(self.rego_reach[i].as_ref());
            match doc.and_then(|d| crate::rego::deny_value(&self.rego[i], d).map_err(|e| e.to_string())) {
                Ok(msgs) => {
                    for m in msgs {
                        out.add(format!("rego: {m}"), "see the Rego rule that denied it");
                    }
                }
                Err(e) => out.add(format!("rego failed: {e}"), "fix the Rego policy"),
            }
        }
    }

    fn check_signatures(&self, s: &SignatureRule, input: &Input, out: &mut Out) {
        let by: BTreeSet<&String> = input
            .signatures
            .iter()
            .filter_map(|f| f.authority.as_ref())
            .filter(|a| s.by.contains(a))
            .collect();
        if by.len() >= s.threshold {
            return;
        }
        let rejected: Vec<String> = input
            .signatures
            .iter()
            .filter(|f| f.authority.is_none())
            .filter_map(|f| f.rejected.as_ref().map(|r| format!("{}: {r}", f.source)))
            .collect();
        let mut msg = if s.threshold == 1 {
            format!("no signature by {}", quoted(&s.by).replace(", ", " or "))
        } else {
            let have: Vec<String> = by.iter().map(|s| s.to_string()).collect();
            format!(
                "{} of the {} required signatures by {} (signed by: {})",
                by.len(),
                s.threshold,
                quoted(&s.by),
                if have.is_empty() { "none".into() } else { quoted(&have) }
            )
        };
        if !rejected.is_empty() {
            msg.push_str(&format!("; rejected: {}", rejected.join("; ")));
        }
        let keys: Vec<String> =
            s.by.iter()
                .filter(|a| !by.contains(a))
                .map(|a| {
                    self.file
                        .authorities
                        .get(a)
                        .map(|x| x.key.replace(".pub", ".key"))
                        .unwrap_or_default()
                })
                .collect();
        out.add(msg, format!("sign with kiln sign --key {} IMAGE", keys.join(" / ")));
    }
}

/// The string at a dotted path of a JSON value.
fn at_path<'a>(v: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    path.split('.').try_fold(v, |v, k| match v {
        serde_json::Value::Array(a) => k.parse::<usize>().ok().and_then(|i| a.get(i)),
        o => o.get(k),
    })
}

fn check_attestation(a: &AttestationRule, input: &Input, out: &mut Out) {
    let uri = crate::input::predicate_uri(&a.kind).unwrap_or_default();
    let of_type: Vec<_> = input.attestations.iter().filter(|f| f.predicate_type == uri).collect();
    let by: Vec<_> = of_type
        .iter()
        .filter(|f| f.authority.as_ref().is_some_and(|x| a.by.contains(x)))
        .collect();
    let fix = format!(
        "attest with kiln attest --type {} --key <{} key> IMAGE",
        a.kind,
        a.by.join("|")
    );
    if by.is_empty() {
        let mut other: Vec<String> = of_type
            .iter()
            .map(|f| match (&f.authority, &f.rejected) {
                (Some(x), _) => format!("one signed by '{x}'"),
                (None, Some(r)) => format!("{}: {r}", f.source),
                (None, None) => f.source.clone(),
            })
            .collect();
        // A bundle and a .att layer carry the same attestation: say each thing once.
        other.sort();
        other.dedup();
        let mut msg = format!("no {} attestation by {}", a.kind, quoted(&a.by).replace(", ", " or "));
        if !other.is_empty() {
            msg.push_str(&format!(" (found: {})", other.join("; ")));
        }
        out.add(msg, fix);
        return;
    }
    let mut mismatch = None;
    let none = serde_json::Value::Null;
    for f in &by {
        let p = f.predicate.as_ref().unwrap_or(&none);
        let bad = a.matches.iter().find(|(path, glob)| {
            !matches!(at_path(p, path), Some(serde_json::Value::String(s)) if crate::glob::value_matches(glob, s))
        });
        match bad {
            None => return,
            Some((path, glob)) => {
                let got = at_path(p, path)
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "missing".into());
                mismatch.get_or_insert(format!("{} attestation: {path} is {got}, not {glob:?}", a.kind));
            }
        }
    }
    out.add(
        mismatch.unwrap_or_default(),
        "build from a source the rule allows, or change the rule's match",
    );
}

/// Whether an ignore entry covers the finding: `Some(true)` in force, `Some(false)` expired.
fn ignored(v: &VulnRule, f: &FindingFact, now: i64) -> Option<(bool, String)> {
    let e = v.ignore.iter().find(|e| e.id == f.id || f.aliases.contains(&e.id))?;
    match &e.until {
        Some(u) => {
            let end = crate::time::parse_date(u).unwrap_or(0) + 86_400;
            Some((now < end, u.clone()))
        }
        None => Some((true, String::new())),
    }
}

fn check_vulns(v: &VulnRule, file_vex: &[VexStatement], input: &Input, now: i64, out: &mut Out) {
    let Some(vulns) = &input.vulnerabilities else {
        let why = input
            .errors
            .iter()
            .find(|e| e.starts_with("vulnerabilities") || e.starts_with("scan"))
            .cloned()
            .unwrap_or_else(|| "not gathered".into());
        out.add(
            format!("vulnerabilities could not be checked: {why}"),
            "import a vulnerability database with kiln db import",
        );
        return;
    };
    let limit = severity_limit(&v.max_severity).unwrap_or(0);
    for f in &vulns.findings {
        let rank = severity_limit(&f.severity).unwrap_or(1);
        if rank <= limit {
            continue;
        }
        let mut ids = vec![f.id.clone()];
        ids.extend(f.aliases.iter().cloned());
        if file_vex
            .iter()
            .chain(&vulns.vex)
            .any(|s| s.clears(&ids, &input.digest, &f.purl))
        {
            continue;
        }
        let name = f.aliases.first().unwrap_or(&f.id);
        let note = match ignored(v, f, now) {
            Some((true, _)) => continue,
            Some((false, until)) => format!("; its ignore expired after {until}"),
            None => String::new(),
        };
        let fix = match &f.fixed {
            Some(x) => format!("upgrade {} to {x}, or add an ignore or a VEX statement", f.package),
            None => "add an ignore with a reason, or a VEX not_affected statement".into(),
        };
        out.add(
            format!(
                "{name} ({}) in {} {}, above max_severity {}{note}",
                f.severity, f.package, f.installed, v.max_severity
            ),
            fix,
        );
    }
}

fn check_config(c: &ConfigRule, input: &Input, now: i64, out: &mut Out) {
    let user = input.config.user.trim();
    let uid = user.split(':').next().unwrap_or("");
    if c.non_root && (uid.is_empty() || uid == "root" || uid == "0") {
        out.add(
            format!("the image runs as root (User {:?})", input.config.user),
            "set USER to a non-root user (USER 65532)",
        );
    }
    for l in &c.required_labels {
        if input.config.labels.get(l).is_none_or(|v| v.trim().is_empty()) {
            out.add(
                format!("label {l} is missing"),
                format!("LABEL {l}=… in the Dockerfile"),
            );
        }
    }
    if c.no_secrets {
        match &input.secrets {
            Some(s) => {
                for f in s {
                    out.add(
                        format!("secret ({}) in {} {}", f.rule, f.source, f.location),
                        "remove it and rotate it; pass secrets with --secret, never ENV",
                    );
                }
            }
            None => out.add("secrets could not be checked", "see the errors above"),
        }
    }
    if let Some(max) = &c.max_age {
        let limit = crate::time::parse_duration(max).unwrap_or(0);
        match input.config.created.as_deref().and_then(crate::time::parse_rfc3339) {
            Some(t) if now - t > limit => out.add(
                format!("the image is {} days old, more than max_age {max}", (now - t) / 86_400),
                "rebuild it",
            ),
            Some(_) => {}
            None => out.add(
                "the image has no created time, so its age is unknown",
                "build with a created time",
            ),
        }
    }
}

fn check_bases(globs: &[String], input: &Input, out: &mut Out) {
    let Some(p) = &input.provenance else {
        out.add(
            "no provenance, so the base images are unknown",
            "build with kiln build (provenance is attached)",
        );
        return;
    };
    for b in &p.base_images {
        if !globs.iter().any(|g| crate::glob::image_matches(g, b)) {
            out.add(
                format!("base image {b} is outside the allowed {}", globs.join(", ")),
                "build FROM an allowed base",
            );
        }
    }
}
