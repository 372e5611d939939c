//! SPDX 2.3 JSON. Ids are derived from package content (purl and evidence), the namespace
//! and name from the image digest, the time from the catalogue: the same image always gives
//! the same bytes. The image is a CONTAINER package the document DESCRIBES; it CONTAINS the
//! operating system (exactly one OPERATING-SYSTEM package) and every package; packages
//! DEPENDS_ON each other where their metadata says. Builder-stage packages are
//! BUILD_DEPENDENCY_OF the image instead.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::{Package, Sbom, TOOL_VERSION, license};

/// A short, stable hash of a package's identity (purl and evidence).
pub fn package_hash(p: &Package) -> String {
    let mut s = p.purl.clone();
    for e in &p.evidence {
        s.push('\n');
        s.push_str(e);
    }
    if p.build_only {
        s.push_str("\nbuild");
    }
    kiln_oci::Digest::sha256_of(s.as_bytes()).hex()[..16].to_string()
}

fn spdx_id(p: &Package) -> String {
    let name: String = p
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("SPDXRef-Package-{}-{}-{}", p.ecosystem.as_str(), name, package_hash(p))
}

/// `Name <email>` → `Person: Name (email)`; SPDX's supplier syntax.
fn supplier(s: &Option<String>) -> String {
    match s {
        Some(s) if !s.trim().is_empty() => {
            let s = s.lines().next().unwrap_or(s).trim();
            match s.split_once('<') {
                Some((n, rest)) => {
                    let email = rest.trim_end_matches('>').trim();
                    let n = n.trim();
                    if n.is_empty() {
                        format!("Person: {email} ({email})")
                    } else {
                        format!("Person: {n} ({email})")
                    }
                }
                None => format!("Person: {s}"),
            }
        }
        _ => "NOASSERTION".into(),
    }
}

/// The supplier when the metadata names none. NTIA's minimum elements need one for every
/// component, so kiln names the channel the package came through (the distribution, the
/// package index, the Maven group, the Go module's host) rather than leave it out.
fn fallback_supplier(p: &Package, sbom: &Sbom) -> String {
    use crate::Ecosystem::*;
    let org = match p.ecosystem {
        Deb | Apk => sbom
            .os
            .as_ref()
            .map(|o| o.pretty_name.clone().unwrap_or_else(|| o.id.clone()))
            .unwrap_or_else(|| p.ecosystem.as_str().to_string()),
        Python => "Python Package Index".into(),
        Npm => "npm registry".into(),
        Rust => match p.properties.get("source").map(String::as_str) {
            Some("crates.io") | None => "crates.io".into(),
            Some(other) => other.to_string(),
        },
        Go if p.name == "stdlib" => "The Go Authors".into(),
        Go => p.name.split('/').next().unwrap_or(&p.name).to_string(),
        Java => p.properties.get("group").cloned().unwrap_or_else(|| p.name.clone()),
    };
    format!("Organization: {org}")
}

/// For each package index, the indexes of the packages it depends on (same ecosystem; a
/// name with several candidates resolves only to one in the same file, else not at all).
pub fn resolve_depends(pkgs: &[Package]) -> Vec<Vec<usize>> {
    let key = |p: &Package, n: &str| -> (crate::Ecosystem, String) {
        let n = if p.ecosystem == crate::Ecosystem::Python {
            crate::purl::pypi_name(n)
        } else {
            n.to_string()
        };
        (p.ecosystem, n)
    };
    let mut by: BTreeMap<(crate::Ecosystem, String), Vec<usize>> = BTreeMap::new();
    for (i, p) in pkgs.iter().enumerate() {
        by.entry(key(p, &p.name)).or_default().push(i);
    }
    pkgs.iter()
        .enumerate()
        .map(|(i, p)| {
            let mut out = vec![];
            for d in &p.depends {
                let Some(c) = by.get(&key(p, d)) else { continue };
                let c: Vec<usize> = if c.len() == 1 {
                    c.clone()
                } else {
                    c.iter()
                        .copied()
                        .filter(|&j| {
                            pkgs[j].evidence.first() == p.evidence.first() && pkgs[j].build_only == p.build_only
                        })
                        .collect()
                };
                if let [j] = c.as_slice()
                    && *j != i
                {
                    out.push(*j);
                }
            }
            out.sort();
            out.dedup();
            out
        })
        .collect()
}

/// The document as a JSON value.
pub fn document(sbom: &Sbom) -> Value {
    let hex = sbom.image.hex();
    let mut packages = vec![json!({
        "SPDXID": "SPDXRef-Image",
        "name": sbom.image.to_string(),
        "versionInfo": sbom.image.to_string(),
        "supplier": format!("Organization: {}", sbom.supplier.as_deref().unwrap_or("unknown")),
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "primaryPackagePurpose": "CONTAINER",
        "comment": format!("container image for {}", sbom.platform),
    })];
    let mut rels = vec![("SPDXRef-DOCUMENT".to_string(), "DESCRIBES", "SPDXRef-Image".to_string())];
    if let Some(os) = &sbom.os {
        let mut o = json!({
            "SPDXID": "SPDXRef-OperatingSystem",
            "name": os.id,
            "versionInfo": os.version,
            "supplier": format!("Organization: {}", os.pretty_name.as_deref().unwrap_or(&os.id)),
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "NOASSERTION",
            "copyrightText": "NOASSERTION",
            "primaryPackagePurpose": "OPERATING-SYSTEM",
        });
        if let Some(p) = &os.pretty_name {
            o["description"] = json!(p);
        }
        packages.push(o);
        rels.push(("SPDXRef-Image".into(), "CONTAINS", "SPDXRef-OperatingSystem".into()));
    }
    let ids: Vec<String> = sbom.packages.iter().map(spdx_id).collect();
    for (p, id) in sbom.packages.iter().zip(&ids) {
        let declared = match p.licenses.as_slice() {
            [] => None,
            ls => {
                let exprs: Option<Vec<String>> = ls.iter().map(|l| license::spdx_expression(l)).collect();
                exprs.map(|e| {
                    if e.len() == 1 {
                        e[0].clone()
                    } else {
                        e.iter().map(|x| format!("({x})")).collect::<Vec<_>>().join(" AND ")
                    }
                })
            }
        };
        let mut source = String::new();
        if let Some(l) = &p.layer {
            source.push_str(&format!("layer {l}: "));
        }
        source.push_str(&p.evidence.join(", "));
        let mut v = json!({
            "SPDXID": id,
            "name": p.name,
            "versionInfo": p.version,
            "supplier": match &p.supplier {
                Some(_) => supplier(&p.supplier),
                None => fallback_supplier(p, sbom),
            },
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": declared.clone().unwrap_or_else(|| "NOASSERTION".into()),
            "copyrightText": "NOASSERTION",
            "primaryPackagePurpose": if p.build_only { "INSTALL" } else { "LIBRARY" },
            "sourceInfo": source,
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": p.purl,
            }],
        });
        if declared.is_none() && !p.licenses.is_empty() {
            v["licenseComments"] = json!(format!("declared: {}", p.licenses.join("; ")));
        }
        if p.build_only {
            v["comment"] = json!("build-time only: found in a builder stage, not in the final image");
        }
        packages.push(v);
        if p.build_only {
            rels.push((id.clone(), "BUILD_DEPENDENCY_OF", "SPDXRef-Image".into()));
        } else {
            rels.push(("SPDXRef-Image".into(), "CONTAINS", id.clone()));
        }
    }
    for (i, deps) in resolve_depends(&sbom.packages).into_iter().enumerate() {
        for j in deps {
            rels.push((ids[i].clone(), "DEPENDS_ON", ids[j].clone()));
        }
    }
    rels.sort();
    rels.dedup();
    let relationships: Vec<Value> = rels
        .into_iter()
        .map(|(a, t, b)| json!({"spdxElementId": a, "relationshipType": t, "relatedSpdxElement": b}))
        .collect();
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("image-{}-{hex}", sbom.image.algorithm().as_str()),
        "documentNamespace": format!("https://kiln.invalid/spdx/image/{}/{hex}", sbom.image.algorithm().as_str()),
        "creationInfo": {
            "created": sbom.created,
            "creators": [format!("Tool: kiln-{TOOL_VERSION}"), "Organization: kiln".to_string()],
        },
        "packages": packages,
        "relationships": relationships,
    })
}

/// The document as pretty JSON bytes (keys sorted), ending in a newline.
pub fn to_json(sbom: &Sbom) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(&document(sbom)).expect("JSON values serialise");
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suppliers() {
        assert_eq!(
            supplier(&Some("GNU Libc Maintainers <debian-glibc@lists.debian.org>".into())),
            "Person: GNU Libc Maintainers (debian-glibc@lists.debian.org)"
        );
        assert_eq!(supplier(&None), "NOASSERTION");
    }
}
