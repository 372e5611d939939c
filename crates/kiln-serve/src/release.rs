//! The release diff the web page shows for an image: its record against the record sent
//! just before it for the same repository (the previous release). Packages come from the
//! two SBOMs, vulnerabilities from the two latest scans; the file-level diff needs both
//! images' layers and is `kiln diff`'s job, so the page names that command instead.

use std::collections::{BTreeMap, BTreeSet};

use kiln_scan::version::Scheme;
use serde_json::Value;

/// A package in one release: name and version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkg {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
}

/// A package in both releases at different versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Name.
    pub name: String,
    /// Version in the previous release.
    pub from: String,
    /// Version in this one.
    pub to: String,
}

/// A vulnerability of one package.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Vuln {
    /// OSV id.
    pub id: String,
    /// The package.
    pub package: String,
    /// Severity.
    pub severity: String,
}

/// What changed since the previous release.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReleaseDiff {
    /// The previous release's digest.
    pub previous: String,
    /// Only in this release.
    pub added: Vec<Pkg>,
    /// Only in the previous one.
    pub removed: Vec<Pkg>,
    /// Newer here.
    pub upgraded: Vec<Change>,
    /// Older here.
    pub downgraded: Vec<Change>,
    /// In this release's latest scan, not the previous one's (`None` without both scans).
    pub introduced: Option<Vec<Vuln>>,
    /// In the previous release's latest scan, not this one's.
    pub fixed: Option<Vec<Vuln>>,
}

/// The purl type (`deb`, `pypi`…) that keys a package with its name, so a Python `six`
/// and a Debian `six` are not one package.
fn purl_type(purl: &str) -> &str {
    purl.strip_prefix("pkg:")
        .and_then(|p| p.split('/').next())
        .unwrap_or_default()
}

fn scheme(purl_type: &str) -> Scheme {
    match purl_type {
        "deb" => Scheme::Dpkg,
        "apk" => Scheme::Apk,
        "pypi" => Scheme::Pep440,
        "npm" | "cargo" => Scheme::Semver,
        "golang" => Scheme::Go,
        "maven" => Scheme::Maven,
        _ => Scheme::Generic,
    }
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// Packages (the metadata API's `sbom.packages`: name, version, purl) by (purl type, name).
fn by_key(packages: &[Value]) -> BTreeMap<(String, String), Pkg> {
    packages
        .iter()
        .map(|p| {
            let (name, purl) = (text(&p["name"]), text(&p["purl"]));
            let pkg = Pkg {
                name: name.clone(),
                version: text(&p["version"]),
            };
            ((purl_type(&purl).to_string(), name), pkg)
        })
        .collect()
}

/// Findings of a scan (the metadata API's `scan`) by (id, package); `None` without a scan.
fn findings(scan: &Value) -> Option<BTreeSet<Vuln>> {
    let list = scan.get("findings")?.as_array()?;
    Some(
        list.iter()
            .map(|f| Vuln {
                id: text(&f["id"]),
                package: text(&f["package"]),
                severity: text(&f["severity"]),
            })
            .collect(),
    )
}

/// Compares this release (`packages`, `scan`) with the previous one.
pub fn compare(previous: &str, before: (&[Value], &Value), now: (&[Value], &Value)) -> ReleaseDiff {
    let (a, b) = (by_key(before.0), by_key(now.0));
    let mut d = ReleaseDiff {
        previous: previous.to_string(),
        ..ReleaseDiff::default()
    };
    for ((ty, name), pa) in &a {
        match b.get(&(ty.clone(), name.clone())) {
            None => d.removed.push(pa.clone()),
            Some(pb) if pb.version != pa.version => {
                let c = Change {
                    name: name.clone(),
                    from: pa.version.clone(),
                    to: pb.version.clone(),
                };
                if scheme(ty).compare(&pb.version, &pa.version).is_lt() {
                    d.downgraded.push(c);
                } else {
                    d.upgraded.push(c);
                }
            }
            Some(_) => {}
        }
    }
    d.added = b
        .iter()
        .filter(|(k, _)| !a.contains_key(*k))
        .map(|(_, p)| p.clone())
        .collect();
    if let (Some(va), Some(vb)) = (findings(before.1), findings(now.1)) {
        let key = |v: &Vuln| (v.id.clone(), v.package.clone());
        let ka: BTreeSet<_> = va.iter().map(key).collect();
        let kb: BTreeSet<_> = vb.iter().map(key).collect();
        d.introduced = Some(vb.iter().filter(|v| !ka.contains(&key(v))).cloned().collect());
        d.fixed = Some(va.iter().filter(|v| !kb.contains(&key(v))).cloned().collect());
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn packages_and_vulnerabilities_between_releases() {
        let p =
            |n: &str, v: &str, ty: &str| json!({"name": n, "version": v, "purl": format!("pkg:{ty}/debian/{n}@{v}")});
        let before = vec![
            p("hello", "2.10-3", "deb"),
            p("old", "1", "deb"),
            p("six", "1.16", "pypi"),
        ];
        let now = vec![
            p("hello", "2.10-10", "deb"),
            p("new", "1", "deb"),
            p("six", "1.9", "pypi"),
        ];
        let scan_a = json!({"findings": [{"id": "DEMO-1", "package": "hello", "severity": "HIGH"}]});
        let scan_b = json!({"findings": [{"id": "DEMO-2", "package": "new", "severity": "LOW"}]});
        let d = compare("sha256:a", (&before, &scan_a), (&now, &scan_b));
        // dpkg order: 2.10-10 is newer than 2.10-3 (a text order would say older).
        assert_eq!(
            d.upgraded,
            vec![Change {
                name: "hello".into(),
                from: "2.10-3".into(),
                to: "2.10-10".into()
            }]
        );
        assert_eq!(d.downgraded[0].name, "six");
        assert_eq!(
            d.added,
            vec![Pkg {
                name: "new".into(),
                version: "1".into()
            }]
        );
        assert_eq!(
            d.removed,
            vec![Pkg {
                name: "old".into(),
                version: "1".into()
            }]
        );
        assert_eq!(d.introduced.as_ref().unwrap()[0].id, "DEMO-2");
        assert_eq!(d.fixed.as_ref().unwrap()[0].id, "DEMO-1");
        let unscanned = compare("sha256:a", (&before, &Value::Null), (&now, &scan_b));
        assert_eq!(unscanned.introduced, None, "one side unscanned: nothing claimed");
    }
}
