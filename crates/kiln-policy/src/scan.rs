//! The layer-reading facts: vulnerability findings and secrets, in one kiln-scan pass.

use kiln_scan::{Options, Scanners};
use kiln_sign::place::Located;

use crate::gather::Gather;
use crate::input::{FindingFact, Input, SecretFact, VulnFacts};

/// Scans the image for what `g.needs` asks; failures go to `input.errors`.
pub fn scan(g: &Gather, loc: &Located, input: &mut Input) {
    let mut db_version = String::new();
    let mut vulns = g.needs.vulns;
    if vulns {
        match g.db.as_ref().map(|d| d.meta()) {
            Some(Ok(Some(meta))) => db_version = meta.imported.clone(),
            Some(Err(e)) => {
                input.errors.push(format!("vulnerabilities: {e}"));
                vulns = false;
            }
            _ => {
                input
                    .errors
                    .push("vulnerabilities: no vulnerability database (hint: kiln db import OSV-EXPORT.zip)".into());
                vulns = false;
            }
        }
    }
    let opts = Options {
        scanners: Scanners {
            vuln: vulns,
            secret: g.needs.secrets,
            misconfig: false,
        },
        db: g.db.clone(),
        ..Options::default()
    };
    let opened = loc.opened();
    let report = opened.layout().map_err(|e| e.to_string()).and_then(|layout| {
        kiln_scan::scan_image(layout, &opened.image, &input.reference, &opts).map_err(|e| e.to_string())
    });
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            input.errors.push(format!("scan: {e}"));
            return;
        }
    };
    if vulns {
        input.vulnerabilities = Some(VulnFacts {
            db: db_version,
            findings: report
                .vulnerabilities
                .iter()
                .map(|v| FindingFact {
                    id: v.id.clone(),
                    aliases: v.aliases.clone(),
                    severity: v.severity.as_str().to_string(),
                    package: v.package.clone(),
                    installed: v.installed.clone(),
                    fixed: v.fixed.clone(),
                    purl: v.purl.clone(),
                })
                .collect(),
            vex: vec![],
        });
    }
    if g.needs.secrets {
        input.secrets = Some(
            report
                .secrets
                .iter()
                .map(|s| SecretFact {
                    rule: s.rule.to_string(),
                    source: serde_json::to_value(s.source)
                        .ok()
                        .and_then(|v| v.as_str().map(String::from))
                        .unwrap_or_default(),
                    location: s.location.clone(),
                })
                .collect(),
        );
    }
}
