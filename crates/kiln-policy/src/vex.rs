//! OpenVEX (v0.2.0, and v0.0.x's string forms): statements saying a product is
//! `not_affected` by (or `fixed` for) a vulnerability. Such a finding no longer counts.
//! Documents come from files the policy names and from `openvex` attestations on the image.

use serde::{Deserialize, Serialize};

/// Largest VEX document read (files and attestations alike).
pub const MAX_VEX_BYTES: u64 = 8 << 20;

/// One statement, reduced to what matching needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VexStatement {
    /// The vulnerability's name (`CVE-…`) and its aliases.
    pub vulnerability: Vec<String>,
    /// Product identifiers (`pkg:oci/…@sha256:…`, purls, digests); empty means any.
    pub products: Vec<String>,
    /// `not_affected`, `affected`, `fixed`, `under_investigation`.
    pub status: String,
    /// The justification, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
    /// Where the statement came from (file or attestation).
    pub source: String,
}

/// The statements of an OpenVEX document, or why it is not one.
pub fn parse(doc: &serde_json::Value, source: &str) -> Result<Vec<VexStatement>, String> {
    let ctx = doc.get("@context").and_then(|c| c.as_str()).unwrap_or("");
    if !ctx.starts_with("https://openvex.dev/ns") {
        return Err(format!(
            "@context {ctx:?} is not an OpenVEX context (https://openvex.dev/ns/v0.2.0)"
        ));
    }
    let statements = doc
        .get("statements")
        .and_then(|s| s.as_array())
        .ok_or("no statements array")?;
    let mut out = vec![];
    for (i, s) in statements.iter().enumerate() {
        let v = s
            .get("vulnerability")
            .ok_or(format!("statements[{i}] has no vulnerability"))?;
        let mut vulnerability = vec![];
        match v {
            serde_json::Value::String(n) => vulnerability.push(n.clone()),
            o => {
                for k in ["name", "@id"] {
                    if let Some(n) = o.get(k).and_then(|n| n.as_str()) {
                        vulnerability.push(n.to_string());
                    }
                }
                for a in o.get("aliases").and_then(|a| a.as_array()).into_iter().flatten() {
                    if let Some(a) = a.as_str() {
                        vulnerability.push(a.to_string());
                    }
                }
            }
        }
        if vulnerability.is_empty() {
            return Err(format!("statements[{i}].vulnerability has no name"));
        }
        let mut products = vec![];
        for p in s.get("products").and_then(|p| p.as_array()).into_iter().flatten() {
            match p {
                serde_json::Value::String(id) => products.push(id.clone()),
                o => {
                    if let Some(id) = o.get("@id").and_then(|x| x.as_str()) {
                        products.push(id.to_string());
                    }
                    for sc in o.get("subcomponents").and_then(|x| x.as_array()).into_iter().flatten() {
                        if let Some(id) = sc.get("@id").and_then(|x| x.as_str()) {
                            products.push(id.to_string());
                        }
                    }
                }
            }
        }
        let status = s
            .get("status")
            .and_then(|x| x.as_str())
            .ok_or(format!("statements[{i}] has no status"))?
            .to_string();
        out.push(VexStatement {
            vulnerability,
            products,
            status,
            justification: s.get("justification").and_then(|x| x.as_str()).map(String::from),
            source: source.to_string(),
        });
    }
    Ok(out)
}

/// Strips a purl's qualifiers and subpath (`?…`, `#…`) so `pkg:deb/debian/x@1?arch=amd64`
/// matches `pkg:deb/debian/x@1`.
fn bare(purl: &str) -> &str {
    purl.split(['?', '#']).next().unwrap_or(purl)
}

impl VexStatement {
    /// True when this statement clears the finding (`ids`: its id and aliases) for the
    /// image `digest` or the package `purl`: status `not_affected` or `fixed`, and a product
    /// naming the image digest or the package (no products: the whole document's scope).
    pub fn clears(&self, ids: &[String], digest: &str, purl: &str) -> bool {
        if !matches!(self.status.as_str(), "not_affected" | "fixed") {
            return false;
        }
        if !self.vulnerability.iter().any(|v| ids.iter().any(|i| i == v)) {
            return false;
        }
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.products.is_empty()
            || self.products.iter().any(|p| {
                p.contains(digest)
                    || p.contains(&format!("sha256%3A{hex}"))
                    || (!purl.is_empty() && bare(p) == bare(purl))
            })
    }
}
