//! `kiln diff`'s human, Markdown and HTML renderings of one [`Diff`] (JSON is the model
//! itself). Every value from the images is escaped for the format it lands in.

use crate::diff::Diff;

/// Rows of one section: (marker, text).
fn rows(d: &Diff) -> Vec<(&'static str, Vec<(String, String)>)> {
    let config = d
        .config
        .iter()
        .map(|c| ("~".to_string(), format!("{}: {} → {}", c.field, c.a, c.b)))
        .collect();
    let mut files: Vec<(String, String)> = Vec::new();
    files.extend(d.files.added.keys().map(|p| ("+".to_string(), p.clone())));
    files.extend(d.files.removed.keys().map(|p| ("-".to_string(), p.clone())));
    files.extend(d.files.changed.iter().map(|c| {
        let what: Vec<String> = c
            .changes
            .iter()
            .map(|w| match *w {
                "mode" => format!("mode {} → {}", c.a.mode, c.b.mode),
                "owner" => format!("owner {}:{} → {}:{}", c.a.uid, c.a.gid, c.b.uid, c.b.gid),
                "target" => format!(
                    "target {} → {}",
                    c.a.target.as_deref().unwrap_or(""),
                    c.b.target.as_deref().unwrap_or("")
                ),
                "content" => format!("content ({} → {} bytes)", c.a.size, c.b.size),
                other => other.to_string(),
            })
            .collect();
        ("~".to_string(), format!("{} ({})", c.path, what.join(", ")))
    }));
    files.sort_by(|a, b| a.1.cmp(&b.1));
    let p = &d.packages;
    let mut packages: Vec<(String, String)> = Vec::new();
    packages.extend(
        p.added
            .iter()
            .map(|x| ("+".into(), format!("{} {} ({})", x.name, x.version, x.ecosystem))),
    );
    packages.extend(
        p.removed
            .iter()
            .map(|x| ("-".into(), format!("{} {} ({})", x.name, x.version, x.ecosystem))),
    );
    packages.extend(p.upgraded.iter().map(|x| {
        (
            "↑".into(),
            format!("{} {} → {} ({})", x.name, x.from, x.to, x.ecosystem),
        )
    }));
    packages.extend(p.downgraded.iter().map(|x| {
        (
            "↓".into(),
            format!("{} {} → {} ({})", x.name, x.from, x.to, x.ecosystem),
        )
    }));
    let v = &d.vulnerabilities;
    let mut vulns: Vec<(String, String)> = Vec::new();
    if !v.checked {
        vulns.push((
            "?".into(),
            "not checked: no vulnerability database (kiln db import)".into(),
        ));
    }
    vulns.extend(v.introduced.iter().map(|x| {
        (
            "+".into(),
            format!("{} {} in {} {}", x.id, x.severity, x.package, x.version),
        )
    }));
    vulns.extend(v.fixed.iter().map(|x| {
        (
            "-".into(),
            format!("{} {} in {} {}", x.id, x.severity, x.package, x.version),
        )
    }));
    let layers = vec![(
        "=".to_string(),
        format!(
            "{} shared, {} only in A, {} only in B",
            d.layers.shared.len(),
            d.layers.only_a,
            d.layers.only_b
        ),
    )];
    vec![
        ("Config", config),
        ("Files", files),
        ("Packages", packages),
        ("Vulnerabilities", vulns),
        ("Layers", layers),
    ]
}

/// Plain text for a terminal.
pub fn human(d: &Diff) -> String {
    let mut s = format!("A: {} ({})\nB: {} ({})\n", d.a.image, d.a.digest, d.b.image, d.b.digest);
    for (title, rs) in rows(d) {
        s.push_str(&format!("\n{title} ({})\n", rs.len()));
        for (m, t) in rs {
            s.push_str(&format!("  {m} {t}\n"));
        }
    }
    s
}

fn md_escape(t: &str) -> String {
    t.chars()
        .flat_map(|c| match c {
            '|' | '\\' | '`' | '*' | '_' | '<' | '>' | '[' | ']' => vec!['\\', c],
            '\n' => vec![' '],
            c => vec![c],
        })
        .collect()
}

/// Markdown for a release note or a pull request comment.
pub fn markdown(d: &Diff) -> String {
    let mut s = format!(
        "# Image diff\n\n- A: `{}` ({})\n- B: `{}` ({})\n",
        d.a.image.replace('`', "'"),
        d.a.digest,
        d.b.image.replace('`', "'"),
        d.b.digest
    );
    for (title, rs) in rows(d) {
        s.push_str(&format!("\n## {title} ({})\n\n", rs.len()));
        if rs.is_empty() {
            s.push_str("No changes.\n");
            continue;
        }
        s.push_str("| | change |\n|---|---|\n");
        for (m, t) in rs {
            s.push_str(&format!("| {m} | {} |\n", md_escape(&t)));
        }
    }
    s
}

fn html_escape(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A self-contained HTML page.
pub fn html(d: &Diff) -> String {
    let mut s = String::from(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>kiln diff</title>\n<style>body{font-family:sans-serif;margin:2em}td{padding:2px 8px;font-family:monospace}.add{color:#070}.del{color:#a00}</style></head><body>\n",
    );
    s.push_str(&format!(
        "<h1>Image diff</h1>\n<p>A: <code>{}</code> ({})<br>B: <code>{}</code> ({})</p>\n",
        html_escape(&d.a.image),
        html_escape(&d.a.digest),
        html_escape(&d.b.image),
        html_escape(&d.b.digest)
    ));
    for (title, rs) in rows(d) {
        s.push_str(&format!("<h2>{title} ({})</h2>\n<table>\n", rs.len()));
        for (m, t) in rs {
            let class = match m.as_str() {
                "+" | "↑" => "add",
                "-" | "↓" => "del",
                _ => "",
            };
            s.push_str(&format!(
                "<tr class=\"{class}\"><td>{}</td><td>{}</td></tr>\n",
                html_escape(&m),
                html_escape(&t)
            ));
        }
        s.push_str("</table>\n");
    }
    s.push_str("</body></html>\n");
    s
}
