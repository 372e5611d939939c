//! Matching catalogued packages against the OSV database.
//!
//! Each kiln-sbom ecosystem maps to the OSV ecosystem(s) and name its records use: Debian
//! records name source packages in `Debian:<release>` (so a binary package is looked up by
//! its `Source:` and compared by the source version), Alpine records name origins in
//! `Alpine:v<major.minor>`, PyPI names are PEP 503-normalised, Maven names are
//! `group:artifact`, Go's standard library is `stdlib`.

use std::collections::{BTreeMap, BTreeSet};

use kiln_oci::image::Image;
use kiln_sbom::{Ecosystem, OsInfo, Package, Sbom};

use crate::db::{Db, Meta};
use crate::osv::{self, Vulnerability};
use crate::version::Scheme;
use crate::{NotChecked, Options, Report, ScanError, Severity, VulnFinding, cvss};

/// PEP 503 name normalisation.
pub fn pypi_name(n: &str) -> String {
    let mut out = String::with_capacity(n.len());
    let mut sep = false;
    for c in n.chars() {
        if c == '-' || c == '_' || c == '.' {
            sep = true;
            continue;
        }
        if sep && !out.is_empty() {
            out.push('-');
        }
        sep = false;
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// How a package is looked up: OSV ecosystems, the record name, and the version to compare.
pub struct Lookup {
    /// Candidate ecosystems, most specific first.
    pub ecosystems: Vec<String>,
    /// The name records use.
    pub name: String,
    /// The version compared against ranges.
    pub version: String,
}

/// The lookup for `p` in an image whose OS is `os`.
pub fn lookup(p: &Package, os: Option<&OsInfo>) -> Option<Lookup> {
    let prop = |k: &str| p.properties.get(k).cloned();
    Some(match p.ecosystem {
        Ecosystem::Deb => {
            let (family, release) = match os {
                Some(o) if o.id == "ubuntu" => ("Ubuntu", Some(o.version.clone())),
                Some(o) if o.id == "debian" => ("Debian", Some(o.version.clone())),
                _ => ("Debian", None),
            };
            let mut ecosystems = vec![];
            if let Some(r) = release {
                ecosystems.push(format!("{family}:{r}"));
                if family == "Ubuntu" {
                    ecosystems.push(format!("{family}:{r}:LTS"));
                }
            }
            ecosystems.push(family.to_string());
            Lookup {
                ecosystems,
                name: prop("source").unwrap_or_else(|| p.name.clone()),
                version: prop("source-version").unwrap_or_else(|| p.version.clone()),
            }
        }
        Ecosystem::Apk => {
            let branch = os.map(|o| {
                let mut parts = o.version.split('.');
                match (parts.next(), parts.next()) {
                    (Some(a), Some(b)) => format!("Alpine:v{a}.{b}"),
                    _ => format!("Alpine:{}", o.version),
                }
            });
            Lookup {
                ecosystems: branch.into_iter().chain(["Alpine".to_string()]).collect(),
                name: prop("source").unwrap_or_else(|| p.name.clone()),
                version: p.version.clone(),
            }
        }
        Ecosystem::Python => Lookup {
            ecosystems: vec!["PyPI".into()],
            name: pypi_name(&p.name),
            version: p.version.clone(),
        },
        Ecosystem::Npm => Lookup {
            ecosystems: vec!["npm".into()],
            name: p.name.clone(),
            version: p.version.clone(),
        },
        Ecosystem::Rust => Lookup {
            ecosystems: vec!["crates.io".into()],
            name: p.name.clone(),
            version: p.version.clone(),
        },
        Ecosystem::Go => Lookup {
            ecosystems: vec!["Go".into()],
            name: p.name.clone(),
            version: p.version.trim_start_matches("go").to_string(),
        },
        Ecosystem::Java => Lookup {
            ecosystems: vec!["Maven".into()],
            name: match prop("group") {
                Some(g) => format!("{g}:{}", p.name),
                None => return None,
            },
            version: p.version.clone(),
        },
    })
}

fn norm_name(ecosystem: &str, name: &str) -> String {
    if ecosystem == "PyPI" {
        pypi_name(name)
    } else {
        name.to_string()
    }
}

/// The severity of a record for one affected entry: its CVSS vectors (highest wins), then
/// the database's or ecosystem's rating.
pub fn severity(v: &Vulnerability, a: &osv::Affected) -> Severity {
    let from_vectors = |s: &[osv::SeverityScore]| s.iter().filter_map(|s| cvss::severity_of(&s.score)).max();
    if let Some(s) = from_vectors(&a.severity).or_else(|| from_vectors(&v.severity)) {
        return s;
    }
    let word = |j: &Option<serde_json::Value>| {
        j.as_ref().and_then(|j| {
            ["severity", "urgency", "cvss_severity"]
                .iter()
                .find_map(|k| j.get(*k).and_then(|s| s.as_str()).and_then(Severity::parse))
        })
    };
    word(&a.ecosystem_specific)
        .or_else(|| word(&a.database_specific))
        .or_else(|| word(&v.database_specific))
        .or_else(|| v.severity.iter().find_map(|s| Severity::parse(&s.score)))
        .unwrap_or(Severity::Unknown)
}

/// The vulnerability database, opened for one scan.
pub struct OpenDb {
    db: Db,
    meta: Meta,
}

/// Opens the database before any layer is read: a scan asked to check vulnerabilities with
/// nothing to check them against fails (exit 3), because an empty result would read as
/// "no vulnerabilities". An old database gets a warning in `report`.
pub fn open(opts: &Options, report: &mut Report) -> Result<OpenDb, ScanError> {
    let (db, meta) = available(opts)?;
    let age_days = (crate::db::now_unix() - meta.imported_unix) / 86_400;
    if age_days > opts.max_db_age_days {
        report.warnings.push(format!(
            "the vulnerability database is {age_days} days old (imported {}); newer vulnerabilities are missing (hint: import a fresh OSV export with `kiln db import`)",
            meta.imported
        ));
    }
    Ok(OpenDb { db: db.clone(), meta })
}

/// The database and its metadata, or [`ScanError::NoDatabase`]: callers that must fetch an
/// image before scanning it ask first, so a scan that cannot run fails before any download.
pub fn available(opts: &Options) -> Result<(&Db, Meta), ScanError> {
    let Some(db) = &opts.db else {
        return Err(ScanError::NoDatabase {
            location: "(none configured)".into(),
        });
    };
    match db.meta()? {
        Some(meta) => Ok((db, meta)),
        None => Err(ScanError::NoDatabase {
            location: db.dir().display().to_string(),
        }),
    }
}

/// Matches the catalogued packages of `image` against the database and appends findings,
/// and the packages it could not check, to `report`.
pub fn scan(open: &OpenDb, sbom: &Sbom, image: &Image, report: &mut Report) -> Result<(), ScanError> {
    let (db, meta) = (&open.db, &open.meta);
    report.warnings.extend(sbom.warnings.iter().cloned());
    let lookups = checkable(sbom, meta, report);
    report.packages = lookups.len();
    // Load only the ecosystems present, and index records by name.
    let wanted: BTreeSet<&str> = lookups
        .iter()
        .flat_map(|(_, l)| l.ecosystems.iter().map(String::as_str))
        .collect();
    let mut index: BTreeMap<(String, String), Vec<std::rc::Rc<Vulnerability>>> = BTreeMap::new();
    for eco in wanted {
        if !meta.ecosystems.contains_key(eco) {
            continue;
        }
        for v in db.load(eco)? {
            if v.withdrawn.is_some() {
                continue;
            }
            let v = std::rc::Rc::new(v);
            let names: BTreeSet<String> = v
                .affected
                .iter()
                .filter_map(|a| a.package.as_ref())
                .filter(|p| p.ecosystem == eco)
                .map(|p| norm_name(eco, &p.name))
                .collect();
            for n in names {
                index.entry((eco.to_string(), n)).or_default().push(v.clone());
            }
        }
    }
    let layer_pos = |d: &kiln_oci::Digest| image.manifest.layers.iter().position(|l| &l.digest == d);
    for (p, l) in &lookups {
        let mut seen: BTreeSet<String> = BTreeSet::new();
        for eco in &l.ecosystems {
            let Some(records) = index.get(&(eco.clone(), norm_name(eco, &l.name))) else {
                continue;
            };
            let scheme = Scheme::for_ecosystem(eco);
            for v in records {
                for a in &v.affected {
                    let Some(pkg) = &a.package else { continue };
                    if pkg.ecosystem != *eco || norm_name(eco, &pkg.name) != norm_name(eco, &l.name) {
                        continue;
                    }
                    let Some(hit) = osv::check(a, scheme, &l.version) else {
                        continue;
                    };
                    // One finding per vulnerability: skip records whose id or CVE was reported.
                    let mut ids: Vec<String> = vec![v.id.clone()];
                    ids.extend(v.aliases.iter().cloned());
                    if ids.iter().any(|i| seen.contains(i)) {
                        continue;
                    }
                    seen.extend(ids);
                    let mut aliases = v.aliases.clone();
                    aliases.sort_by_key(|a| (!a.starts_with("CVE-"), a.clone()));
                    let layer_index = p.layer.as_ref().and_then(layer_pos);
                    report.vulnerabilities.push(VulnFinding {
                        id: v.id.clone(),
                        aliases,
                        severity: severity(v, a),
                        package: p.name.clone(),
                        source_package: (l.name != p.name && matches!(p.ecosystem, Ecosystem::Deb | Ecosystem::Apk))
                            .then(|| l.name.clone()),
                        ecosystem: eco.clone(),
                        installed: p.version.clone(),
                        fixed: hit.fixed,
                        title: v.summary.clone(),
                        purl: p.purl.clone(),
                        path: p.evidence.first().cloned(),
                        layer_index: layer_index.map(|i| i + 1),
                        layer: p.layer.as_ref().map(|d| d.to_string()),
                    });
                    break;
                }
            }
        }
    }
    report.vulnerabilities.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.package.cmp(&b.package))
            .then_with(|| a.id.cmp(&b.id))
    });
    Ok(())
}

/// The packages the database can check, with their lookups; the others go to
/// `report.not_checked` with the reason.
fn checkable<'a>(sbom: &'a Sbom, meta: &Meta, report: &mut Report) -> Vec<(&'a Package, Lookup)> {
    let mut out = vec![];
    for p in sbom.packages.iter().filter(|p| !p.build_only) {
        let reason = match lookup(p, sbom.os.as_ref()) {
            Some(l) if l.ecosystems.iter().any(|e| meta.ecosystems.contains_key(e)) => {
                out.push((p, l));
                continue;
            }
            Some(l) => format!(
                "the database has no {} records (hint: `kiln db import` OSV's all.zip for it)",
                l.ecosystems.join(" or ")
            ),
            None => "no Maven group id, so no OSV record can name it".to_string(),
        };
        report.not_checked.push(NotChecked {
            package: p.name.clone(),
            version: p.version.clone(),
            kind: p.ecosystem.as_str().to_string(),
            purl: p.purl.clone(),
            reason,
            path: p.evidence.first().cloned(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pep503() {
        assert_eq!(pypi_name("Django_REST.framework"), "django-rest-framework");
        assert_eq!(pypi_name("a--b"), "a-b");
    }
}
