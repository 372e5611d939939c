//! The OSV schema (the parts a matcher reads) and the range logic of its specification.
//!
//! <https://ossf.github.io/osv-schema/>: a record names affected packages by ecosystem and
//! name, with explicit `versions` and/or `ranges` of `introduced` / `fixed` /
//! `last_affected` events in the ecosystem's own version order. `GIT` ranges name commits,
//! which an image does not carry, so they never match.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::version::Scheme;

/// One OSV record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vulnerability {
    /// `GHSA-…`, `CVE-…`, `DSA-…`, `PYSEC-…`.
    pub id: String,
    /// RFC 3339 time of the last change (newer imports win by it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified: Option<String>,
    /// Set when the record was withdrawn: it must no longer match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrawn: Option<String>,
    /// Other ids of the same vulnerability (CVE numbers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Ids of closely related records (Debian's DSA/DLA name their CVEs here).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstream: Vec<String>,
    /// One line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Longer text (Markdown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
    /// CVSS vectors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub severity: Vec<SeverityScore>,
    /// What is affected.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub affected: Vec<Affected>,
    /// Links.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<Reference>,
    /// Database-specific data (GHSA's `severity`, for one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_specific: Option<serde_json::Value>,
}

/// `severity[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeverityScore {
    /// `CVSS_V2`, `CVSS_V3`, `CVSS_V4`, `Ubuntu`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The vector (or a word, for `Ubuntu`).
    pub score: String,
}

/// `references[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// `ADVISORY`, `WEB`, `FIX`…
    #[serde(rename = "type")]
    pub kind: String,
    /// The address.
    pub url: String,
}

/// `affected[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Affected {
    /// The package.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<PackageId>,
    /// Per-package severity (overrides the record's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub severity: Vec<SeverityScore>,
    /// Ranges of events.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ranges: Vec<Range>,
    /// Explicitly affected versions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<String>,
    /// Ecosystem data (Debian's `urgency`, GHSA's `severity`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ecosystem_specific: Option<serde_json::Value>,
    /// Database data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_specific: Option<serde_json::Value>,
}

/// `affected[].package`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageId {
    /// `Debian:12`, `PyPI`, `npm`…
    pub ecosystem: String,
    /// The name (Debian: the source package).
    pub name: String,
    /// Package URL, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purl: Option<String>,
}

/// `affected[].ranges[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Range {
    /// `ECOSYSTEM`, `SEMVER` or `GIT`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The events, in any order.
    #[serde(default)]
    pub events: Vec<Event>,
}

/// One event: exactly one field is set.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Event {
    /// Affected from this version on (`0`: from the beginning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introduced: Option<String>,
    /// No longer affected from this version on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed: Option<String>,
    /// Affected up to and including this version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_affected: Option<String>,
    /// Ranges stop here (for GIT); ignored for versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
}

impl Vulnerability {
    /// Checks what a matcher relies on, so a bad file fails at import with the record named.
    pub fn validate(&self) -> Result<(), String> {
        if self.id.trim().is_empty() {
            return Err("`id` is empty".into());
        }
        for (i, a) in self.affected.iter().enumerate() {
            for (j, r) in a.ranges.iter().enumerate() {
                for (k, e) in r.events.iter().enumerate() {
                    let n = [&e.introduced, &e.fixed, &e.last_affected, &e.limit]
                        .iter()
                        .filter(|x| x.is_some())
                        .count();
                    if n != 1 {
                        return Err(format!(
                            "affected[{i}].ranges[{j}].events[{k}] must have exactly one of introduced, fixed, last_affected, limit"
                        ));
                    }
                }
                if r.kind != "GIT" && !r.events.iter().any(|e| e.introduced.is_some()) {
                    return Err(format!("affected[{i}].ranges[{j}] has no `introduced` event"));
                }
            }
        }
        Ok(())
    }
}

/// The outcome of checking one version against one `affected` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The lowest `fixed` version above the installed one, if the record names one.
    pub fixed: Option<String>,
}

fn cmp_event(scheme: Scheme, a: &str, b: &str) -> Ordering {
    // `0` means "before every version" whatever the scheme.
    match (a == "0", b == "0") {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        _ => scheme.compare(a, b),
    }
}

/// Is `version` affected by `a` under `scheme`? Explicit versions match exactly; each
/// non-GIT range is evaluated as the OSV specification's pseudo-code does: events sorted by
/// version, `introduced` switches on, `fixed` (at or below) and `last_affected` (below)
/// switch off.
pub fn check(a: &Affected, scheme: Scheme, version: &str) -> Option<Hit> {
    let mut hit = false;
    let mut fixed: Option<String> = None;
    if a.versions
        .iter()
        .any(|v| v == version || scheme.compare(v, version) == Ordering::Equal)
    {
        hit = true;
    }
    for r in &a.ranges {
        if r.kind == "GIT" {
            continue;
        }
        let mut events: Vec<(&str, u8)> = r
            .events
            .iter()
            .filter_map(|e| {
                e.introduced
                    .as_deref()
                    .map(|v| (v, 0))
                    .or(e.fixed.as_deref().map(|v| (v, 1)))
                    .or(e.last_affected.as_deref().map(|v| (v, 2)))
            })
            .collect();
        events.sort_by(|x, y| cmp_event(scheme, x.0, y.0).then(x.1.cmp(&y.1)));
        let mut affected = false;
        for (v, kind) in &events {
            let o = cmp_event(scheme, version, v);
            match kind {
                0 if o != Ordering::Less => affected = true,
                1 if o != Ordering::Less => affected = false,
                2 if o == Ordering::Greater => affected = false,
                _ => {}
            }
        }
        if affected {
            hit = true;
            // The fix for this range: the first `fixed` above the installed version.
            let f = events
                .iter()
                .filter(|(v, k)| *k == 1 && cmp_event(scheme, v, version) == Ordering::Greater)
                .map(|(v, _)| v.to_string())
                .next();
            if let Some(f) = f
                && fixed.as_ref().is_none_or(|g| scheme.compare(&f, g) == Ordering::Less)
            {
                fixed = Some(f);
            }
        }
    }
    hit.then_some(Hit { fixed })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(i: Option<&str>, f: Option<&str>, l: Option<&str>) -> Event {
        Event {
            introduced: i.map(str::to_string),
            fixed: f.map(str::to_string),
            last_affected: l.map(str::to_string),
            limit: None,
        }
    }

    fn affected(events: Vec<Event>, versions: &[&str]) -> Affected {
        Affected {
            package: None,
            severity: vec![],
            ranges: vec![Range {
                kind: "ECOSYSTEM".into(),
                events,
            }],
            versions: versions.iter().map(|s| s.to_string()).collect(),
            ecosystem_specific: None,
            database_specific: None,
        }
    }

    #[test]
    fn introduced_fixed_last_affected() {
        let s = Scheme::Semver;
        let a = affected(
            vec![
                ev(Some("1.0.0"), None, None),
                ev(None, Some("1.2.0"), None),
                ev(Some("2.0.0"), None, None),
                ev(None, None, Some("2.1.0")),
            ],
            &[],
        );
        assert_eq!(check(&a, s, "0.9.0"), None);
        assert_eq!(
            check(&a, s, "1.1.9"),
            Some(Hit {
                fixed: Some("1.2.0".into())
            })
        );
        assert_eq!(check(&a, s, "1.2.0"), None);
        assert_eq!(check(&a, s, "2.1.0"), Some(Hit { fixed: None }));
        assert_eq!(check(&a, s, "2.1.1"), None);
        let z = affected(vec![ev(Some("0"), None, None), ev(None, Some("3"), None)], &["9.9.9"]);
        assert!(check(&z, s, "0.0.1").is_some());
        assert!(check(&z, s, "9.9.9").is_some());
        assert!(check(&z, s, "5.0.0").is_none());
    }

    #[test]
    fn validation_names_the_event() {
        let mut v = Vulnerability {
            id: "X-1".into(),
            modified: None,
            withdrawn: None,
            aliases: vec![],
            upstream: vec![],
            summary: None,
            details: None,
            severity: vec![],
            affected: vec![affected(vec![ev(Some("1"), Some("2"), None)], &[])],
            references: vec![],
            database_specific: None,
        };
        assert!(v.validate().unwrap_err().contains("events[0]"));
        v.affected[0].ranges[0].events = vec![ev(None, Some("2"), None)];
        assert!(v.validate().unwrap_err().contains("no `introduced`"));
    }
}
