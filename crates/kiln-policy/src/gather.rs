//! Gathering the input document of one image, by digest: config, signatures and
//! attestations (each checked with every authority's key), provenance, SBOM packages,
//! and, when a rule asks, vulnerability findings and secrets (one scan pass). What cannot
//! be read is recorded in `errors`, and the rules that need it deny: verification fails
//! closed.

use std::collections::BTreeMap;
use std::sync::Arc;

use kiln_oci::Store;
use kiln_registry::RegistryAccess;
use kiln_sign::PublicKey;
use kiln_sign::place::{Located, locate};
use kiln_sign::sign::Want;
use kiln_sign::verify::{SharedReport, verify_shared};

use crate::error::PolicyError;
use crate::input::*;

/// What the rules that apply need beyond the cheap facts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    /// Vulnerability findings (reads every layer).
    pub vulns: bool,
    /// Secrets (reads every layer).
    pub secrets: bool,
    /// SBOM packages from the attached SPDX document when no SPDX attestation verified
    /// (Rego reads them; built-in rules do not).
    pub sbom: bool,
}

/// Where and how to gather.
pub struct Gather<'a> {
    /// The local store (images by name, and where registry images' signatures are cached).
    pub store: &'a Store,
    /// Registry access for registry references; `None` reads only the store and files.
    pub registries: Option<&'a RegistryAccess>,
    /// Authorities' keys: each signature is checked with each.
    pub keys: &'a BTreeMap<String, PublicKey>,
    /// The vulnerability database.
    pub db: Option<kiln_scan::db::Db>,
    /// Predicate types to read and verify (URIs): [`crate::Policy::types`] for a check,
    /// [`USUAL_TYPES`] as well for `kiln policy input`.
    pub types: Vec<String>,
    /// Layer-reading facts to gather.
    pub needs: Needs,
}

/// Predicate types `kiln policy input` shows even when no rule asks for them.
pub const USUAL_TYPES: [&str; 5] = [
    "https://slsa.dev/provenance/v1",
    "https://spdx.dev/Document",
    "https://cyclonedx.org/bom",
    OPENVEX,
    "https://cosign.sigstore.dev/attestation/vuln/v1",
];

/// Largest attached SBOM read for its packages.
const MAX_SBOM_BYTES: u64 = 64 << 20;

/// The input document of `reference`.
pub fn gather_input(g: &Gather, reference: &str) -> Result<Input, PolicyError> {
    let loc = locate(g.store, reference, g.registries).map_err(|e| PolicyError::gather(reference, &e, e.is_input()))?;
    let img = &loc.opened().image;
    let c = &img.config;
    let mut input = Input {
        reference: reference.to_string(),
        repository: loc.repository.clone(),
        digest: loc.image.digest.to_string(),
        platform: match &c.variant {
            Some(v) => format!("{}/{}/{v}", c.os, c.architecture),
            None => format!("{}/{}", c.os, c.architecture),
        },
        config: ConfigFacts {
            user: c.config.user.clone().unwrap_or_default(),
            env: c.config.env.clone().unwrap_or_default(),
            labels: c.config.labels.clone().unwrap_or_default(),
            created: c.created.clone(),
            entrypoint: c.config.entrypoint.clone().unwrap_or_default(),
            cmd: c.config.cmd.clone().unwrap_or_default(),
        },
        ..Input::default()
    };
    let fail = |e: kiln_sign::SignError| PolicyError::gather(reference, &e, e.is_input());
    // The signature and every attestation type in one pass: each signature object is
    // listed and fetched once, each distinct envelope verified once per key.
    let (sigs, atts) = verified(&loc, g.keys, &g.types).map_err(fail)?;
    input.signatures = sigs;
    input.attestations = atts;
    input.provenance = provenance(&loc, &input.attestations, &mut input.errors);
    input.sbom = sbom(&loc, &input.attestations, g.needs.sbom, &mut input.errors);
    if g.needs.vulns || g.needs.secrets {
        crate::scan::scan(g, &loc, &mut input);
    }
    if let Some(v) = &mut input.vulnerabilities {
        for a in input
            .attestations
            .iter()
            .filter(|a| a.predicate_type == OPENVEX && a.authority.is_some())
        {
            match a.predicate.as_ref().map(|p| crate::vex::parse(p, &a.source)) {
                Some(Ok(st)) => v.vex.extend(st),
                Some(Err(e)) => input.errors.push(format!("VEX attestation {}: {e}", a.source)),
                None => {}
            }
        }
    }
    Ok(input)
}

/// Merges the reports of every key into one fact per signature object: verified by the
/// first authority whose key verifies it, else rejected with the most telling reason (a
/// digest mismatch or malformed object says more than "another key").
fn merge(per_key: Vec<(String, SharedReport)>) -> Vec<(String, Checked)> {
    let mut out: BTreeMap<String, Checked> = BTreeMap::new();
    for (name, r) in per_key {
        for (source, payload) in r.verified {
            let e = out.entry(source).or_default();
            if e.0.is_none() {
                *e = (Some(name.clone()), None, Some(payload));
            }
        }
        for rej in r.rejected {
            let e = out.entry(rej.source).or_default();
            let telling = !matches!(rej.reason, kiln_sign::sign::Reason::WrongKey { .. });
            if e.0.is_none() && (e.1.is_none() || telling) {
                e.1 = Some(rej.reason.to_string());
            }
        }
    }
    out.into_iter().collect()
}

/// One signature object checked with every key: (authority, rejection, verified payload).
type Checked = (Option<String>, Option<String>, Option<Arc<serde_json::Value>>);

/// The signatures and the attestations of `types`, each object checked with every key.
/// Verified payloads are shared until the end: the same statement as a bundle and as a
/// `.att` layer is one value, compared by pointer, and moved (not copied) into the fact.
fn verified(
    loc: &Located,
    keys: &BTreeMap<String, PublicKey>,
    types: &[String],
) -> kiln_sign::Result<(Vec<SignatureFact>, Vec<AttestationFact>)> {
    let names: Vec<&String> = keys.keys().collect();
    let key_refs: Vec<&PublicKey> = keys.values().collect();
    let mut wants = vec![Want::Signature];
    wants.extend(types.iter().map(|t| Want::Attestation(t.clone())));
    let mut reports = verify_shared(loc, &key_refs, &wants)?.into_iter();
    let per_key =
        |r: Vec<SharedReport>| -> Vec<(String, SharedReport)> { names.iter().map(|n| n.to_string()).zip(r).collect() };
    let sigs = merge(per_key(reports.next().unwrap_or_default()))
        .into_iter()
        .map(|(source, (authority, rejected, _))| SignatureFact {
            source,
            authority,
            rejected,
        })
        .collect();
    let mut out: Vec<(AttestationFact, Option<Arc<serde_json::Value>>)> = vec![];
    for (t, r) in types.iter().zip(reports) {
        for (source, (authority, rejected, payload)) in merge(per_key(r)) {
            let same_statement = |a: &Option<Arc<serde_json::Value>>, b: &Option<Arc<serde_json::Value>>| match (a, b) {
                (Some(x), Some(y)) => Arc::ptr_eq(x, y) || x.get("predicate") == y.get("predicate"),
                (None, None) => true,
                _ => false,
            };
            // The same statement as a bundle and as a .att layer is one attestation.
            if let Some((same, _)) = out.iter_mut().find(|(f, p)| {
                f.predicate_type == *t && authority.is_some() && f.authority == authority && same_statement(p, &payload)
            }) {
                same.source.push_str(&format!(" + {source}"));
                continue;
            }
            let fact = AttestationFact {
                predicate_type: t.clone(),
                source,
                authority,
                rejected,
                predicate: None,
            };
            out.push((fact, payload));
        }
    }
    // Every other holder of the payloads is gone: each is moved out, not copied.
    let atts = out
        .into_iter()
        .map(|(mut fact, payload)| {
            fact.predicate = payload.and_then(|p| match Arc::try_unwrap(p).unwrap_or_else(|p| (*p).clone()) {
                serde_json::Value::Object(mut m) => m.remove("predicate"),
                _ => None,
            });
            fact
        })
        .collect();
    Ok((sigs, atts))
}

/// Base images named by a provenance predicate.
fn base_images(predicate: &serde_json::Value) -> Vec<String> {
    let deps = predicate
        .pointer("/buildDefinition/resolvedDependencies")
        .and_then(|d| d.as_array());
    deps.into_iter()
        .flatten()
        .filter(|d| d.pointer("/annotations/role").and_then(|r| r.as_str()) == Some("base-image"))
        .filter_map(|d| d.get("name").and_then(|n| n.as_str()).map(String::from))
        .collect()
}

/// The verified provenance attestation, else the unsigned record a kiln build keeps beside
/// the image in the store.
fn provenance(loc: &Located, atts: &[AttestationFact], errors: &mut Vec<String>) -> Option<ProvenanceFacts> {
    let signed = atts
        .iter()
        .find(|a| a.predicate_type == kiln_sign::provenance::SLSA_PROVENANCE_V1 && a.authority.is_some());
    if let Some(a) = signed
        && let Some(p) = &a.predicate
    {
        return Some(ProvenanceFacts {
            authority: a.authority.clone(),
            base_images: base_images(p),
            predicate: p.clone(),
        });
    }
    let read = || -> Result<Option<serde_json::Value>, String> {
        for r in loc
            .referrers(kiln_sign::provenance::IN_TOTO_MEDIA_TYPE)
            .map_err(|e| e.to_string())?
        {
            let m = loc.manifest(&r).map_err(|e| e.to_string())?;
            let Some(layer) = m.layers.first() else { continue };
            let bytes = loc.blob(layer).map_err(|e| e.to_string())?;
            let st: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
            if st.get("predicateType").and_then(|t| t.as_str()) == Some(kiln_sign::provenance::SLSA_PROVENANCE_V1)
                && let Some(p) = st.get("predicate")
            {
                return Ok(Some(p.clone()));
            }
        }
        Ok(None)
    };
    match read() {
        Ok(Some(p)) => Some(ProvenanceFacts {
            authority: None,
            base_images: base_images(&p),
            predicate: p,
        }),
        Ok(None) => None,
        Err(e) => {
            errors.push(format!("provenance: {e}"));
            None
        }
    }
}

/// Packages of an SPDX document.
fn spdx_packages(doc: &serde_json::Value) -> Vec<PackageFact> {
    let pkgs = doc.get("packages").and_then(|p| p.as_array());
    pkgs.into_iter()
        .flatten()
        .filter_map(|p| {
            let name = p.get("name")?.as_str()?.to_string();
            let version = p.get("versionInfo").and_then(|v| v.as_str()).unwrap_or("").to_string();
            let purl = p
                .get("externalRefs")
                .and_then(|r| r.as_array())
                .into_iter()
                .flatten()
                .find(|r| r.get("referenceType").and_then(|t| t.as_str()) == Some("purl"))
                .and_then(|r| r.get("referenceLocator")?.as_str())
                .unwrap_or("")
                .to_string();
            // The document's own root (the image) is not a package of it.
            let root = purl.starts_with("pkg:oci/")
                || name.starts_with("sha256:")
                || p.get("primaryPackagePurpose").and_then(|x| x.as_str()) == Some("CONTAINER");
            (!root).then_some(PackageFact { name, version, purl })
        })
        .collect()
}

/// SBOM packages: a verified SPDX attestation, else the SPDX document attached to the image.
fn sbom(loc: &Located, atts: &[AttestationFact], attached: bool, errors: &mut Vec<String>) -> Option<SbomFacts> {
    if let Some(a) = atts
        .iter()
        .find(|a| a.predicate_type == "https://spdx.dev/Document" && a.authority.is_some())
        && let Some(p) = &a.predicate
    {
        return Some(SbomFacts {
            source: a.source.clone(),
            packages: spdx_packages(p),
        });
    }
    if !attached {
        return None;
    }
    let read = || -> Result<Option<SbomFacts>, String> {
        let Some(r) = loc
            .referrers("application/spdx+json")
            .map_err(|e| e.to_string())?
            .into_iter()
            .next()
        else {
            return Ok(None);
        };
        let m = loc.manifest(&r).map_err(|e| e.to_string())?;
        let Some(layer) = m.layers.first() else { return Ok(None) };
        if layer.size > MAX_SBOM_BYTES {
            return Err(format!(
                "attached SBOM {} is {} bytes, over the limit",
                r.digest, layer.size
            ));
        }
        let bytes = loc.blob(layer).map_err(|e| e.to_string())?;
        let doc: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        Ok(Some(SbomFacts {
            source: format!("attached SBOM {}", r.digest),
            packages: spdx_packages(&doc),
        }))
    };
    read().unwrap_or_else(|e| {
        errors.push(format!("sbom: {e}"));
        None
    })
}
