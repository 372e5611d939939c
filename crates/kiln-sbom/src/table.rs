//! The human table: NAME, VERSION, TYPE, then where it was found, sorted like the SBOM.

use crate::Sbom;

/// Renders the table (with a header line and the OS on a line of its own).
pub fn render(sbom: &Sbom) -> String {
    let mut rows: Vec<[String; 4]> = vec![["NAME".into(), "VERSION".into(), "TYPE".into(), "FOUND IN".into()]];
    let mut pkgs: Vec<&crate::Package> = sbom.packages.iter().collect();
    pkgs.sort_by(|a, b| (&a.name, &a.version, a.ecosystem).cmp(&(&b.name, &b.version, b.ecosystem)));
    for p in pkgs {
        let mut kind = p.ecosystem.as_str().to_string();
        if p.build_only {
            kind.push_str(" (build)");
        }
        rows.push([
            p.name.clone(),
            p.version.clone(),
            kind,
            p.evidence.first().cloned().unwrap_or_default(),
        ]);
    }
    let mut w = [0usize; 3];
    for r in &rows {
        for i in 0..3 {
            w[i] = w[i].max(r[i].chars().count());
        }
    }
    let mut out = String::new();
    if let Some(os) = &sbom.os {
        out.push_str(&format!(
            "OS: {} ({} {})\n",
            os.pretty_name.as_deref().unwrap_or(&os.id),
            os.id,
            os.version
        ));
    }
    for r in rows {
        out.push_str(&format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {}\n",
            r[0],
            r[1],
            r[2],
            r[3],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2]
        ));
    }
    out
}
