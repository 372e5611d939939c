//! The web page, rendered on the server with no script: `GET /` lists recent images and
//! decisions, `GET /images/sha256:<hex>` shows one image's packages, vulnerabilities,
//! signatures, provenance and admission history (with the denial reasons).

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::audit::AuditRow;
use crate::server::App;

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}\
th{background:#f3f3f3}code{font-size:12px}.denied{color:#a00}.allowed{color:#070}pre{white-space:pre-wrap;margin:0}";

fn page(title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>{body}</body></html>",
        esc(title)
    );
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response()
}

fn time(at: i64) -> String {
    crate::record::rfc3339(at)
}

fn admissions_table(rows: &[AuditRow], out: &mut String) {
    out.push_str("<table id=\"admissions\"><tr><th>time</th><th>namespace</th><th>object</th><th>endpoint</th><th>result</th><th>images</th><th>reason</th></tr>");
    for r in rows {
        let images: Vec<String> = r
            .images
            .iter()
            .map(|i| format!("{} <code>{}</code>", esc(&i.container), esc(&i.image)))
            .collect();
        let class = if r.allowed { "allowed" } else { "denied" };
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{} {}</td><td>{}</td><td class=\"{class}\">{}</td><td>{}</td><td><pre>{}</pre></td></tr>",
            time(r.at),
            esc(&r.namespace),
            esc(&r.kind),
            esc(&r.name),
            esc(&r.endpoint),
            esc(&r.result),
            images.join("<br>"),
            esc(&r.message)
        );
    }
    out.push_str("</table>");
}

/// `GET /`.
pub async fn index(State(app): State<Arc<App>>) -> Response {
    let audit = app.audit.clone();
    let got = tokio::task::spawn_blocking(move || -> Result<_, String> {
        let records = audit.recent_records(50).map_err(|e| e.to_string())?;
        let rows = audit.recent(50).map_err(|e| e.to_string())?;
        Ok((records, rows))
    })
    .await;
    let (records, rows) = match got {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    let mut b = String::from("<h1>kiln serve</h1><h2>Recent images</h2>");
    b.push_str("<table id=\"images\"><tr><th>recorded</th><th>image</th><th>digest</th></tr>");
    for (digest, at, record) in &records {
        let r: Value = serde_json::from_str(record).unwrap_or(Value::Null);
        let name = r.get("reference").and_then(Value::as_str).unwrap_or_default();
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td><a href=\"/images/{d}\"><code>{d}</code></a></td></tr>",
            time(*at),
            esc(name),
            d = esc(digest)
        );
    }
    b.push_str("</table><h2>Recent decisions</h2>");
    admissions_table(&rows, &mut b);
    page("kiln serve", &b)
}

fn list_section(b: &mut String, id: &str, title: &str, head: &[&str], rows: Vec<Vec<String>>, empty: &str) {
    let _ = write!(b, "<h2>{}</h2>", esc(title));
    if rows.is_empty() {
        let _ = write!(b, "<p id=\"{id}\">{}</p>", esc(empty));
        return;
    }
    let _ = write!(b, "<table id=\"{id}\"><tr>");
    for h in head {
        let _ = write!(b, "<th>{}</th>", esc(h));
    }
    b.push_str("</tr>");
    for r in rows {
        b.push_str("<tr>");
        for c in r {
            let _ = write!(b, "<td>{}</td>", esc(&c));
        }
        b.push_str("</tr>");
    }
    b.push_str("</table>");
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// "Changes since the previous release": packages, then vulnerabilities; files are
/// `kiln diff`'s (both images' layers), so the command is shown.
fn release_section(b: &mut String, reference: &str, digest: &str, diff: Option<&crate::release::ReleaseDiff>) {
    let Some(d) = diff else {
        b.push_str("<h2>Changes since the previous release</h2>");
        b.push_str("<p id=\"release\">no earlier release of this name is recorded</p>");
        return;
    };
    let repo = reference.split('@').next().unwrap_or(reference);
    let repo = repo
        .rsplit_once(':')
        .filter(|(_, t)| !t.contains('/'))
        .map_or(repo, |(r, _)| r);
    let pkg = |what: &str, p: &crate::release::Pkg| vec![what.into(), p.name.clone(), String::new(), p.version.clone()];
    let change =
        |what: &str, c: &crate::release::Change| vec![what.into(), c.name.clone(), c.from.clone(), c.to.clone()];
    let mut rows: Vec<Vec<String>> = d.added.iter().map(|p| pkg("added", p)).collect();
    rows.extend(
        d.removed
            .iter()
            .map(|p| vec!["removed".into(), p.name.clone(), p.version.clone(), String::new()]),
    );
    rows.extend(d.upgraded.iter().map(|c| change("upgraded", c)));
    rows.extend(d.downgraded.iter().map(|c| change("downgraded", c)));
    list_section(
        b,
        "release",
        "Changes since the previous release",
        &["change", "package", "from", "to"],
        rows,
        "no package changed",
    );
    let _ = write!(
        b,
        "<p>against <a href=\"/images/{p}\"><code>{p}</code></a>; for files: <code>kiln diff {r}@{p} {r}@{digest}</code></p>",
        p = esc(&d.previous),
        r = esc(repo),
        digest = esc(digest)
    );
    let vulns = match (&d.introduced, &d.fixed) {
        (Some(i), Some(f)) => {
            let row = |what: &str, v: &crate::release::Vuln| {
                vec![what.into(), v.id.clone(), v.package.clone(), v.severity.clone()]
            };
            let mut rows: Vec<Vec<String>> = i.iter().map(|v| row("introduced", v)).collect();
            rows.extend(f.iter().map(|v| row("fixed", v)));
            rows
        }
        _ => {
            b.push_str("<p id=\"release-vulnerabilities\">vulnerabilities: not both releases have a scan (kiln record push --scan)</p>");
            return;
        }
    };
    let head = ["change", "id", "package", "severity"];
    list_section(
        b,
        "release-vulnerabilities",
        "Vulnerabilities since the previous release",
        &head,
        vulns,
        "none introduced or fixed",
    );
}

/// `GET /images/sha256:<hex>`.
pub async fn image(State(app): State<Arc<App>>, Path(digest): Path<String>) -> Response {
    if !crate::record::is_digest(&digest) {
        return (StatusCode::NOT_FOUND, "not found: /images/sha256:<hex>\n").into_response();
    }
    let m = match crate::api::everything(&app, &digest).await {
        Ok(Some(m)) => m,
        Ok(None) => return (StatusCode::NOT_FOUND, format!("nothing is known about {digest}\n")).into_response(),
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    };
    let mut b = format!(
        "<p><a href=\"/\">kiln serve</a></p><h1>{}</h1><p>digest <code id=\"digest\">{}</code></p>",
        esc(&s(&m["reference"])),
        esc(&digest)
    );
    let arr = |v: &Value| v.as_array().cloned().unwrap_or_default();
    let packages = arr(&m["sbom"]["packages"])
        .iter()
        .map(|p| vec![s(&p["name"]), s(&p["version"]), s(&p["purl"])])
        .collect();
    list_section(
        &mut b,
        "packages",
        "Packages",
        &["name", "version", "purl"],
        packages,
        "no SBOM recorded",
    );
    let findings = arr(&m["scan"]["findings"])
        .iter()
        .map(|f| {
            vec![
                s(&f["id"]),
                s(&f["severity"]),
                s(&f["package"]),
                s(&f["installed"]),
                s(&f["fixed"]),
            ]
        })
        .collect();
    let head = ["id", "severity", "package", "installed", "fixed"];
    list_section(
        &mut b,
        "vulnerabilities",
        "Vulnerabilities",
        &head,
        findings,
        "no scan recorded",
    );
    let before = crate::api::previous(&app, &digest).await.ok().flatten();
    let diff = before.map(|(prev, packages, scan)| {
        let now = m["sbom"]["packages"].as_array().cloned().unwrap_or_default();
        crate::release::compare(&prev, (&packages, &scan), (&now, &m["scan"]))
    });
    release_section(&mut b, &s(&m["reference"]), &digest, diff.as_ref());
    let sigs = match m["signatures"].as_array() {
        Some(a) => a
            .iter()
            .map(|x| vec![s(&x["source"]), s(&x["authority"]), s(&x["rejected"])])
            .collect(),
        None => vec![vec![String::new(), String::new(), s(&m["signatures"]["error"])]],
    };
    let head = ["signature", "signed by", "rejected"];
    list_section(&mut b, "signatures", "Signatures", &head, sigs, "no signatures");
    b.push_str("<h2>Provenance</h2>");
    let build = serde_json::to_string_pretty(&m["build"]).unwrap_or_default();
    let _ = write!(b, "<pre id=\"provenance\">{}</pre>", esc(&build));
    b.push_str("<h2>Admissions</h2>");
    let rows: Vec<AuditRow> = serde_json::from_value(m["admissions"].clone()).unwrap_or_default();
    admissions_table(&rows, &mut b);
    page(&format!("kiln: {digest}"), &b)
}
