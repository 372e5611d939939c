//! Build records: what `kiln build --record URL` and `kiln record push` send to
//! `POST /records` (the image's digest and name, its SLSA provenance, its SPDX and CycloneDX
//! documents, read from the store or the registry by digest), and the summary
//! `GET /metadata/sha256:<hex>.json` makes of one.

use std::path::Path;

use kiln_oci::Store;
use kiln_registry::RegistryAccess;
use serde_json::{Value, json};

/// The largest record accepted (SBOMs of big images are a few MiB).
pub const MAX_RECORD_BYTES: usize = 64 << 20;

/// Whether `d` is a full sha256 digest (`sha256:` and 64 lowercase hex digits).
pub fn is_digest(d: &str) -> bool {
    d.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

/// The record of `reference` (a store name, or a registry image when `registries` is given).
pub fn collect(store: &Store, reference: &str, registries: Option<&RegistryAccess>) -> Result<Value, String> {
    let loc = kiln_sign::place::locate(store, reference, registries).map_err(|e| e.to_string())?;
    let first = |media_type: &str, want: &dyn Fn(&Value) -> Option<Value>| -> Result<Option<Value>, String> {
        for r in loc.referrers(media_type).map_err(|e| e.to_string())? {
            let m = loc.manifest(&r).map_err(|e| e.to_string())?;
            let Some(layer) = m.layers.first() else { continue };
            let bytes = loc.blob(layer).map_err(|e| e.to_string())?;
            let doc: Value = serde_json::from_slice(&bytes).map_err(|e| format!("{media_type} {}: {e}", r.digest))?;
            if let Some(v) = want(&doc) {
                return Ok(Some(v));
            }
        }
        Ok(None)
    };
    let slsa = kiln_sign::provenance::SLSA_PROVENANCE_V1;
    let provenance = first(kiln_sign::provenance::IN_TOTO_MEDIA_TYPE, &|st| {
        (st.get("predicateType").and_then(Value::as_str) == Some(slsa))
            .then(|| st.get("predicate").cloned())
            .flatten()
    })?;
    let spdx = first("application/spdx+json", &|d| Some(d.clone()))?;
    let cyclonedx = first("application/vnd.cyclonedx+json", &|d| Some(d.clone()))?;
    Ok(json!({
        "digest": loc.image.digest.to_string(),
        "reference": reference,
        "repository": loc.repository,
        "provenance": provenance,
        "sbom": {"spdx": spdx, "cyclonedx": cyclonedx},
    }))
}

/// A vulnerability scan of `reference` against `db` (kiln scan's vulnerability scanner over
/// every layer), as a record's `scan`: when, against which database, and each finding.
/// Fails when there is no database: an empty list would read as "no vulnerabilities".
pub fn scan(
    store: &Store,
    reference: &str,
    registries: Option<&RegistryAccess>,
    db: kiln_scan::db::Db,
) -> Result<Value, ScanFailure> {
    let opts = kiln_scan::Options {
        scanners: kiln_scan::Scanners {
            vuln: true,
            secret: false,
            misconfig: false,
        },
        db: Some(db),
        ..kiln_scan::Options::default()
    };
    let (_, meta) = kiln_scan::vuln::available(&opts).map_err(|e| ScanFailure::NoDatabase(e.to_string()))?;
    let loc = kiln_sign::place::locate(store, reference, registries).map_err(|e| ScanFailure::Image(e.to_string()))?;
    let opened = loc.opened();
    let layout = opened.layout().map_err(|e| ScanFailure::Image(e.to_string()))?;
    let report = kiln_scan::scan_image(layout, &opened.image, reference, &opts)
        .map_err(|e| ScanFailure::Image(e.to_string()))?;
    let findings: Vec<Value> = report
        .vulnerabilities
        .iter()
        .map(|v| {
            json!({"id": v.id, "aliases": v.aliases, "severity": v.severity.as_str(), "package": v.package,
                   "installed": v.installed, "fixed": v.fixed, "purl": v.purl})
        })
        .collect();
    Ok(json!({
        "at": rfc3339(kiln_policy::time::now()),
        "db": meta.imported,
        "packages": report.packages,
        "not_checked": report.not_checked.len(),
        "findings": findings,
    }))
}

/// Why a record's scan could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ScanFailure {
    /// No vulnerability database to scan against.
    #[error("{0}")]
    NoDatabase(String),
    /// The image could not be read.
    #[error("{0}")]
    Image(String),
}

/// Sends `record` to `server`'s `POST /records` with `token`, trusting `ca` besides the
/// system roots. Returns the server's answer (`recorded` or `already recorded`).
pub fn submit(server: &str, token: &str, ca: Option<&Path>, record: &Value) -> Result<String, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut b = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(15))
        .timeout(std::time::Duration::from_secs(60))
        .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")));
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| format!("{}: {e}", ca.display()))?;
        b = b.tls_certs_merge(certs);
    }
    let client = b.build().map_err(|e| e.to_string())?;
    let url = format!("{}/records", server.trim_end_matches('/'));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let resp = client
            .post(&url)
            .bearer_auth(token)
            .json(record)
            .send()
            .await
            .map_err(|e| format!("POST {url}: {e}"))?;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        if status.is_success() {
            Ok(body.trim().to_string())
        } else {
            Err(format!("POST {url}: {status}: {}", body.trim()))
        }
    })
}

/// The build facts a provenance predicate holds: builder, external parameters (build-arg
/// values left out: names only), and resolved dependencies (sources, Dockerfile, lock,
/// base images).
pub fn build_summary(provenance: &Value) -> Value {
    if provenance.is_null() {
        return Value::Null;
    }
    let mut external = provenance
        .pointer("/buildDefinition/externalParameters")
        .cloned()
        .unwrap_or(Value::Null);
    if let Some(args) = external.get("buildArgs").and_then(Value::as_object) {
        let names: Vec<&String> = args.keys().collect();
        external["buildArgs"] = json!(names);
    }
    json!({
        "buildType": provenance.pointer("/buildDefinition/buildType"),
        "builder": provenance.pointer("/runDetails/builder"),
        "externalParameters": external,
        "internalParameters": provenance.pointer("/buildDefinition/internalParameters"),
        "resolvedDependencies": provenance.pointer("/buildDefinition/resolvedDependencies"),
    })
}

/// `at` (seconds since the epoch) as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(at: i64) -> String {
    let (days, secs) = (at.div_euclid(86_400), at.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Packages of an SPDX document: name, version, purl (the image itself and its operating
/// system left out: neither is a package one installs).
pub fn spdx_packages(doc: &Value) -> Vec<Value> {
    let pkgs = doc.get("packages").and_then(Value::as_array);
    pkgs.into_iter()
        .flatten()
        .filter(|p| {
            let purpose = p.get("primaryPackagePurpose").and_then(Value::as_str);
            !matches!(purpose, Some("CONTAINER" | "OPERATING-SYSTEM"))
        })
        .map(|p| {
            let purl = p
                .get("externalRefs")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|r| r.get("referenceType").and_then(Value::as_str) == Some("purl"))
                .and_then(|r| r.get("referenceLocator"))
                .cloned()
                .unwrap_or(Value::Null);
            json!({"name": p.get("name"), "version": p.get("versionInfo"), "purl": purl})
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_and_summaries() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_796_428_800), "2026-12-05T00:00:00Z");
        assert_eq!(rfc3339(951_782_400 + 3661), "2000-02-29T01:01:01Z");
        assert!(is_digest(&format!("sha256:{}", "a".repeat(64))));
        assert!(!is_digest(&format!("sha256:{}", "A".repeat(64))));
        assert!(!is_digest("sha256:abc"));
        let p = json!({"buildDefinition": {"buildType": "t", "externalParameters": {"buildArgs": {"TOKEN": "s3cret"}}},
                       "runDetails": {"builder": {"id": "kiln"}}});
        let s = build_summary(&p);
        assert_eq!(s["externalParameters"]["buildArgs"], json!(["TOKEN"]));
        assert!(!s.to_string().contains("s3cret"), "build-arg values stay out");
        let doc = json!({"packages": [{"name": "img", "primaryPackagePurpose": "CONTAINER"},
            {"name": "debian", "versionInfo": "12", "primaryPackagePurpose": "OPERATING-SYSTEM"},
            {"name": "libc6", "versionInfo": "2.36", "externalRefs": [{"referenceType": "purl", "referenceLocator": "pkg:deb/debian/libc6@2.36"}]}]});
        assert_eq!(
            spdx_packages(&doc),
            vec![json!({"name": "libc6", "version": "2.36", "purl": "pkg:deb/debian/libc6@2.36"})]
        );
    }
}
