//! The metadata API: `POST /records` (bearer token) and `GET /metadata/sha256:<hex>.json`,
//! with the full SBOM documents at `/metadata/sha256:<hex>/sbom.spdx.json` and
//! `…/sbom.cdx.json`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::record::{build_summary, is_digest, spdx_packages};
use crate::server::App;

fn text(code: StatusCode, body: impl Into<String>) -> Response {
    (code, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body.into()).into_response()
}

fn json_response(v: &Value) -> Response {
    let body = serde_json::to_vec_pretty(v).expect("JSON serialises");
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `POST /records`: 401 without the right bearer token (nothing stored), 400 for a record
/// that is not one, 201 when stored, 200 when the digest has a record already.
pub async fn post_record(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(token) = &app.token else {
        return text(
            StatusCode::FORBIDDEN,
            "records are disabled: start kiln serve with --token-file\n",
        );
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !same(given.trim().as_bytes(), token.as_bytes()) {
        return text(StatusCode::UNAUTHORIZED, "a valid bearer token is required\n");
    }
    let mut record: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("malformed record: {e}\n")),
    };
    let digest = record
        .get("digest")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if !is_digest(&digest) {
        return text(
            StatusCode::BAD_REQUEST,
            format!("malformed record: digest {digest:?} is not sha256:<64 hex>\n"),
        );
    }
    // The scan is kept apart: the record is the build's and stays as first sent; scans
    // are appended, and the newest is the one shown.
    let scan = record
        .as_object_mut()
        .and_then(|o| o.remove("scan"))
        .filter(|s| !s.is_null());
    if scan.as_ref().is_some_and(|s| !s.is_object()) {
        return text(StatusCode::BAD_REQUEST, "malformed record: scan is not an object\n");
    }
    let repository = record
        .get("repository")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let (audit, now) = (app.audit.clone(), kiln_policy::time::now());
    let stored = tokio::task::spawn_blocking(move || {
        let new = audit.put_record(&digest, &repository, now, &record.to_string())?;
        if let Some(scan) = &scan {
            audit.put_scan(&digest, now, &scan.to_string())?;
        }
        Ok::<_, crate::audit::AuditError>((new, scan.is_some()))
    })
    .await;
    match stored {
        Ok(Ok((true, scanned))) => text(StatusCode::CREATED, answer("recorded", scanned)),
        Ok(Ok((false, scanned))) => text(StatusCode::OK, answer("already recorded", scanned)),
        Ok(Err(e)) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

fn answer(what: &str, scanned: bool) -> String {
    if scanned {
        format!("{what}, with a new scan\n")
    } else {
        format!("{what}\n")
    }
}

/// `GET /metadata/sha256:<hex>.json`.
pub async fn metadata(State(app): State<Arc<App>>, Path(name): Path<String>) -> Response {
    let Some(digest) = name.strip_suffix(".json").filter(|d| is_digest(d)) else {
        return text(
            StatusCode::NOT_FOUND,
            "not found: ask for /metadata/sha256:<hex>.json\n",
        );
    };
    match everything(&app, digest).await {
        Ok(Some(v)) => json_response(&v),
        Ok(None) => text(StatusCode::NOT_FOUND, format!("nothing is known about {digest}\n")),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

/// `GET /metadata/sha256:<hex>/sbom.spdx.json` and `…/sbom.cdx.json`.
pub async fn sbom(State(app): State<Arc<App>>, Path((digest, doc)): Path<(String, String)>) -> Response {
    let key = match doc.as_str() {
        "sbom.spdx.json" => "spdx",
        "sbom.cdx.json" => "cyclonedx",
        _ => return text(StatusCode::NOT_FOUND, "not found: sbom.spdx.json or sbom.cdx.json\n"),
    };
    let audit = app.audit.clone();
    let d = digest.clone();
    let record = match tokio::task::spawn_blocking(move || audit.record_of(&d)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    };
    let doc = record
        .and_then(|r| serde_json::from_str::<Value>(&r).ok())
        .and_then(|r| r.pointer(&format!("/sbom/{key}")).cloned())
        .filter(|d| !d.is_null());
    match doc {
        Some(d) => json_response(&d),
        None => text(StatusCode::NOT_FOUND, format!("no {key} document for {digest}\n")),
    }
}

/// Everything known about `digest`: the record, its summaries, live signatures, and the
/// admissions that decided it. `None` when nothing is known.
pub async fn everything(app: &Arc<App>, digest: &str) -> Result<Option<Value>, String> {
    let audit = app.audit.clone();
    let d = digest.to_string();
    let (record, admissions, scan) = tokio::task::spawn_blocking(move || -> Result<_, String> {
        let r = audit.record_of(&d).map_err(|e| e.to_string())?;
        let a = audit.admissions_of(&d).map_err(|e| e.to_string())?;
        let s = audit.latest_scan(&d).map_err(|e| e.to_string())?;
        Ok((r, a, s))
    })
    .await
    .map_err(|e| e.to_string())??;
    if record.is_none() && admissions.is_empty() {
        return Ok(None);
    }
    let record: Value = match record.and_then(|r| serde_json::from_str(&r).ok()) {
        Some(r) => r,
        None => from_registry(app, digest, &admissions).await,
    };
    let provenance = record.get("provenance").cloned().unwrap_or(Value::Null);
    let spdx = record.pointer("/sbom/spdx").cloned().unwrap_or(Value::Null);
    let packages = spdx_packages(&spdx);
    let repository = record.get("repository").and_then(Value::as_str).map(String::from);
    let signatures = match repository {
        Some(repo) => signatures(app, &format!("{repo}@{digest}")).await,
        None => json!({"error": "no build record names the repository to read signatures from"}),
    };
    let has = |k: &str| !record.pointer(&format!("/sbom/{k}")).unwrap_or(&Value::Null).is_null();
    Ok(Some(json!({
        "digest": digest,
        "reference": record.get("reference"),
        "build": build_summary(&provenance),
        "sbom": {
            "packages": packages,
            "documents": {
                "spdx": has("spdx").then(|| format!("/metadata/{digest}/sbom.spdx.json")),
                "cyclonedx": has("cyclonedx").then(|| format!("/metadata/{digest}/sbom.cdx.json")),
            },
        },
        "provenance": provenance,
        "signatures": signatures,
        "scan": scan.and_then(|s| serde_json::from_str::<Value>(&s).ok()).unwrap_or(Value::Null),
        "admissions": admissions,
    })))
}

/// The release before `digest`: the record sent just before its own for the same
/// repository, as (digest, packages, latest scan). `None` when there is none.
pub async fn previous(app: &Arc<App>, digest: &str) -> Result<Option<(String, Vec<Value>, Value)>, String> {
    let audit = app.audit.clone();
    let d = digest.to_string();
    tokio::task::spawn_blocking(move || -> Result<_, String> {
        let Some((prev, record)) = audit.previous_record(&d).map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let scan = audit.latest_scan(&prev).map_err(|e| e.to_string())?;
        let record: Value = serde_json::from_str(&record).unwrap_or(Value::Null);
        let packages = spdx_packages(record.pointer("/sbom/spdx").unwrap_or(&Value::Null));
        let scan = scan.and_then(|s| serde_json::from_str(&s).ok()).unwrap_or(Value::Null);
        Ok(Some((prev, packages, scan)))
    })
    .await
    .map_err(|e| e.to_string())?
}

/// A digest admitted but never recorded: its record read from the registry's referrers
/// (provenance, SBOMs) under the name an admission gave it, and kept (first request only).
async fn from_registry(app: &Arc<App>, digest: &str, admissions: &[crate::audit::AuditRow]) -> Value {
    let image = admissions
        .iter()
        .flat_map(|a| &a.images)
        .find(|i| i.digest == digest)
        .and_then(|i| crate::engine::normalise(&i.image).ok());
    let Some(mut name) = image else { return Value::Null };
    name.tag = None;
    name.digest = digest.parse().ok();
    let (engine, audit, reference) = (app.engine.clone(), app.audit.clone(), name.to_string());
    let work = tokio::task::spawn_blocking(move || {
        let r = crate::record::collect(&engine.store, &reference, Some(&engine.access)).ok()?;
        let repository = r["repository"].as_str().unwrap_or_default();
        let _ = audit.put_record(
            r["digest"].as_str()?,
            repository,
            kiln_policy::time::now(),
            &r.to_string(),
        );
        Some(r)
    });
    match tokio::time::timeout(app.settings.deadline, work).await {
        Ok(Ok(Some(r))) => r,
        _ => Value::Null,
    }
}

/// Signatures of `reference` read from its registry now, each checked with the policy's
/// authorities: who made it, or why it was rejected.
async fn signatures(app: &Arc<App>, reference: &str) -> Value {
    let engine = app.engine.clone();
    let r = reference.to_string();
    let work = tokio::task::spawn_blocking(move || {
        let g = kiln_policy::Gather {
            store: &engine.store,
            registries: Some(&engine.access),
            keys: engine.policy.keys(),
            db: None,
            types: vec![],
            needs: kiln_policy::Needs::default(),
        };
        kiln_policy::gather_input(&g, &r).map(|i| i.signatures)
    });
    match tokio::time::timeout(app.settings.deadline, work).await {
        Ok(Ok(Ok(sigs))) => serde_json::to_value(sigs).unwrap_or(Value::Null),
        Ok(Ok(Err(e))) => json!({"error": e.to_string()}),
        Ok(Err(e)) => json!({"error": e.to_string()}),
        Err(_) => json!({"error": format!("reading signatures of {reference} took too long")}),
    }
}
