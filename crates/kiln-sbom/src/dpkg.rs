//! Debian packages: `/var/lib/dpkg/status` (and distroless's `status.d/*`), with each
//! package's files from `info/NAME[:ARCH].list` (or `status.d/NAME.md5sums`).

use std::collections::{BTreeMap, BTreeSet};

use crate::walk::Fs;
use crate::{Context, Ecosystem, Package, purl};

/// One control paragraph: field name → value (continuation lines joined with `\n`).
pub type Paragraph = BTreeMap<String, String>;

/// Splits an RFC 822-style control file into paragraphs. A line that is neither a field nor
/// a continuation makes its paragraph an error (line number, 1-based).
pub fn paragraphs(text: &str) -> Vec<Result<Paragraph, usize>> {
    let mut out = Vec::new();
    let mut cur = Paragraph::new();
    let mut bad: Option<usize> = None;
    let mut last: Option<String> = None;
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            if let Some(l) = bad.take() {
                out.push(Err(l));
            } else if !cur.is_empty() {
                out.push(Ok(std::mem::take(&mut cur)));
            }
            cur.clear();
            last = None;
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            match &last {
                Some(k) => {
                    let v = cur.get_mut(k).expect("last field exists");
                    v.push('\n');
                    v.push_str(line.trim());
                }
                None => {
                    bad.get_or_insert(n + 1);
                }
            }
            continue;
        }
        match line.split_once(':') {
            Some((k, v)) if !k.is_empty() && !k.contains(' ') => {
                cur.insert(k.to_string(), v.trim().to_string());
                last = Some(k.to_string());
            }
            _ => {
                bad.get_or_insert(n + 1);
            }
        }
    }
    if let Some(l) = bad {
        out.push(Err(l));
    } else if !cur.is_empty() {
        out.push(Ok(cur));
    }
    out
}

/// Names in a Depends-style field (alternatives included, versions and arch stripped).
fn dep_names(field: &str) -> Vec<String> {
    field
        .split([',', '|'])
        .filter_map(|d| {
            let n = d.trim().split([' ', '(', '[']).next()?.trim();
            let n = n.split(':').next()?;
            (!n.is_empty()).then(|| n.to_string())
        })
        .collect()
}

/// Catalogues the dpkg database of `fs`.
pub fn catalog(fs: &Fs, distro: Option<&str>, cx: &mut Context<'_>) {
    let mut sources: Vec<(String, &[u8], usize)> = vec![];
    if let Some((b, l)) = fs.raw("/var/lib/dpkg/status") {
        sources.push(("/var/lib/dpkg/status".into(), b, l));
    }
    for (p, b, l) in fs.raw_matching(|p| p.starts_with("/var/lib/dpkg/status.d/") && !p.ends_with(".md5sums")) {
        sources.push((p.to_string(), b, l));
    }
    let mut found: Vec<(Package, Vec<String>, Vec<String>)> = vec![];
    for (path, bytes, layer) in sources {
        let text = String::from_utf8_lossy(bytes);
        for para in paragraphs(&text) {
            let para = match para {
                Ok(p) => p,
                Err(line) => {
                    cx.warn(
                        &path,
                        layer,
                        format!("line {line}: malformed control paragraph (expected `Field: value`)"),
                    );
                    continue;
                }
            };
            let installed = para
                .get("Status")
                .is_none_or(|s| s.split_whitespace().last() == Some("installed"));
            if !installed {
                continue;
            }
            let (Some(name), Some(version)) = (para.get("Package"), para.get("Version")) else {
                let what = para
                    .get("Package")
                    .map(|n| format!("package {n}: "))
                    .unwrap_or_default();
                cx.warn(&path, layer, format!("{what}paragraph without Package or Version"));
                continue;
            };
            if name.contains(char::is_whitespace) || version.contains(char::is_whitespace) || version.is_empty() {
                cx.warn(
                    &path,
                    layer,
                    format!("package {name:?}: malformed name or version {version:?}"),
                );
                continue;
            }
            let arch = para.get("Architecture").cloned().unwrap_or_default();
            let (src_name, src_version) = match para.get("Source") {
                Some(s) => {
                    let mut it = s.splitn(2, ' ');
                    let n = it.next().unwrap_or_default().to_string();
                    let v = it
                        .next()
                        .map(|v| v.trim_matches(|c| c == '(' || c == ')' || c == ' ').to_string());
                    (Some(n), v)
                }
                None => (None, None),
            };
            let upstream = match (&src_name, &src_version) {
                (Some(n), Some(v)) => format!("{n}@{v}"),
                (Some(n), None) if n != name => n.clone(),
                _ => String::new(),
            };
            let namespace = distro.and_then(|d| d.split('-').next()).unwrap_or("debian");
            let p = purl::purl(
                "deb",
                Some(namespace),
                name,
                version,
                &[
                    ("arch", &arch),
                    ("distro", distro.unwrap_or("")),
                    ("upstream", &upstream),
                ],
            );
            let mut pkg = Package::new(Ecosystem::Deb, name.clone(), version.clone(), p);
            pkg.supplier = para.get("Maintainer").cloned();
            pkg.layer = cx.layer(layer);
            pkg.evidence.push(path.clone());
            if !arch.is_empty() {
                pkg.properties.insert("architecture".into(), arch.clone());
            }
            if let Some(s) = &src_name {
                pkg.properties.insert("source".into(), s.clone());
            }
            if let Some(v) = &src_version {
                pkg.properties.insert("source-version".into(), v.clone());
            }
            // Files: info/NAME.list (or NAME:ARCH.list), or distroless's md5sums.
            let candidates = [
                format!("/var/lib/dpkg/info/{name}.list"),
                format!("/var/lib/dpkg/info/{name}:{arch}.list"),
            ];
            let md5 = format!("/var/lib/dpkg/status.d/{name}.md5sums");
            if let Some((list, (b, l))) = candidates.iter().find_map(|c| fs.raw(c).map(|r| (c, r))) {
                pkg.evidence.push(list.clone());
                pkg.layer = cx.layer(l);
                pkg.files = String::from_utf8_lossy(b)
                    .lines()
                    .filter(|f| !f.is_empty() && *f != "/.")
                    .map(str::to_string)
                    .collect();
            } else if let Some((b, _)) = fs.raw(&md5) {
                pkg.evidence.push(md5.clone());
                pkg.files = String::from_utf8_lossy(b)
                    .lines()
                    .filter_map(|l| {
                        l.split_once("  ")
                            .map(|(_, f)| format!("/{}", f.trim_start_matches('/')))
                    })
                    .collect();
            }
            let mut deps = vec![];
            for f in ["Depends", "Pre-Depends"] {
                if let Some(d) = para.get(f) {
                    deps.extend(dep_names(d));
                }
            }
            let provides = para.get("Provides").map(|p| dep_names(p)).unwrap_or_default();
            found.push((pkg, deps, provides));
        }
    }
    // DEPENDS_ON only where the dependency is installed (directly or through Provides).
    let mut by_name: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (p, _, provides) in &found {
        by_name.entry(p.name.clone()).or_default().insert(p.name.clone());
        for v in provides {
            by_name.entry(v.clone()).or_default().insert(p.name.clone());
        }
    }
    for (mut p, deps, _) in found {
        for d in deps {
            if let Some(targets) = by_name.get(&d) {
                p.depends.extend(targets.iter().filter(|t| **t != p.name).cloned());
            }
        }
        cx.packages.push(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paragraphs_and_errors() {
        let t = "Package: a\nVersion: 1\nDescription: x\n more\n\ngarbage line\nPackage: b\n\nPackage: c\nVersion: 2\n";
        let p = paragraphs(t);
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].as_ref().unwrap()["Description"], "x\nmore");
        assert_eq!(p[1], Err(6));
        assert_eq!(p[2].as_ref().unwrap()["Package"], "c");
    }

    #[test]
    fn dependency_names() {
        assert_eq!(
            dep_names("libc6 (>= 2.34), debconf (>= 0.5) | debconf-2.0, python3:any"),
            ["libc6", "debconf", "debconf-2.0", "python3"]
        );
    }
}
