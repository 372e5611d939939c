//! Catalogers of text metadata: os-release, apk's database, Python dist-info and
//! egg-info, npm's package.json and package-lock.json, and Cargo.lock.

use std::collections::BTreeSet;

use crate::walk::Fs;
use crate::{Context, Ecosystem, OsInfo, Package, purl};

/// Reads `/etc/os-release` (or `/usr/lib/os-release`, its fallback).
pub fn os_release(fs: &Fs) -> Option<OsInfo> {
    let (b, _) = fs.raw("/etc/os-release").or_else(|| fs.raw("/usr/lib/os-release"))?;
    let text = String::from_utf8_lossy(b);
    let mut get = std::collections::BTreeMap::new();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().trim_matches('"').trim_matches('\'').to_string();
            get.insert(k.trim().to_string(), v);
        }
    }
    let id = get.get("ID").cloned().filter(|s| !s.is_empty())?;
    let codename = get.get("VERSION_CODENAME").cloned().filter(|s| !s.is_empty());
    let version = get
        .get("VERSION_ID")
        .cloned()
        .filter(|s| !s.is_empty())
        .or_else(|| codename.clone())
        .unwrap_or_else(|| "unknown".into());
    Some(OsInfo {
        id,
        version,
        pretty_name: get.get("PRETTY_NAME").cloned(),
        codename,
    })
}

/// Alpine's `/lib/apk/db/installed`: paragraphs of `X:value` lines.
pub fn apk(fs: &Fs, distro: Option<&str>, cx: &mut Context<'_>) {
    let path = "/lib/apk/db/installed";
    let Some((b, layer)) = fs.raw(path) else { return };
    let text = String::from_utf8_lossy(b).into_owned();
    for (i, para) in text.split("\n\n").enumerate() {
        if para.trim().is_empty() {
            continue;
        }
        let (mut name, mut version, mut arch, mut lic, mut maint, mut origin) = (None, None, None, None, None, None);
        let mut deps = vec![];
        let mut files = vec![];
        let mut dir = String::new();
        for line in para.lines() {
            let Some((k, v)) = line.split_once(':') else { continue };
            match k {
                "P" => name = Some(v.to_string()),
                "V" => version = Some(v.to_string()),
                "A" => arch = Some(v.to_string()),
                "L" => lic = Some(v.to_string()),
                "m" => maint = Some(v.to_string()),
                "o" => origin = Some(v.to_string()),
                "D" => deps.extend(
                    v.split_whitespace()
                        .filter(|d| !d.starts_with('!') && !d.contains(':'))
                        .map(|d| d.split(['=', '<', '>', '~']).next().unwrap_or(d).to_string()),
                ),
                "F" => dir = v.to_string(),
                "R" => files.push(format!("/{dir}/{v}")),
                _ => {}
            }
        }
        let (Some(name), Some(version)) = (name, version) else {
            cx.warn(path, layer, format!("entry {}: no P: or V: line", i + 1));
            continue;
        };
        let arch = arch.unwrap_or_default();
        let up = origin.clone().filter(|o| *o != name).unwrap_or_default();
        let ns = distro.and_then(|d| d.split('-').next()).unwrap_or("alpine");
        let p = purl::purl(
            "apk",
            Some(ns),
            &name,
            &version,
            &[("arch", &arch), ("distro", distro.unwrap_or("")), ("upstream", &up)],
        );
        let mut pkg = Package::new(Ecosystem::Apk, name, version, p);
        pkg.licenses = lic.into_iter().collect();
        pkg.supplier = maint;
        pkg.layer = cx.layer(layer);
        pkg.evidence.push(path.into());
        pkg.files = files;
        pkg.depends = deps;
        if !arch.is_empty() {
            pkg.properties.insert("architecture".into(), arch);
        }
        if let Some(o) = origin {
            pkg.properties.insert("source".into(), o);
        }
        cx.packages.push(pkg);
    }
}

/// Header fields of an email-style metadata file (PKG-INFO, METADATA), up to the body.
fn headers(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = vec![];
    for line in text.lines() {
        if line.is_empty() {
            break;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            if let Some(last) = out.last_mut() {
                last.1.push('\n');
                last.1.push_str(line.trim());
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            out.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    out
}

/// Python distributions: `*.dist-info/METADATA` (files from RECORD) and egg-info.
pub fn python(fs: &Fs, cx: &mut Context<'_>) {
    let metas: Vec<(String, Vec<u8>, usize)> = fs
        .raw_matching(|p| {
            (p.ends_with(".dist-info/METADATA")) || p.ends_with(".egg-info/PKG-INFO") || p.ends_with(".egg-info")
        })
        .map(|(p, b, l)| (p.to_string(), b.to_vec(), l))
        .collect();
    for (path, bytes, layer) in metas {
        let Ok(text) = std::str::from_utf8(&bytes) else {
            cx.warn(&path, layer, "not UTF-8 text (unreadable METADATA)");
            continue;
        };
        let h = headers(text);
        let get = |k: &str| {
            h.iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.clone())
        };
        let (Some(name), Some(version)) = (get("Name"), get("Version")) else {
            cx.warn(&path, layer, "no Name: or Version: header (unreadable METADATA)");
            continue;
        };
        if name.is_empty() || version.is_empty() || name.contains(char::is_whitespace) {
            cx.warn(&path, layer, format!("malformed Name {name:?} or Version {version:?}"));
            continue;
        }
        let p = purl::purl("pypi", None, &purl::pypi_name(&name), &version, &[]);
        let mut pkg = Package::new(Ecosystem::Python, name, version, p);
        pkg.layer = cx.layer(layer);
        pkg.evidence.push(path.clone());
        if let Some(l) = get("License-Expression") {
            pkg.licenses.push(l);
        } else if let Some(l) =
            get("License").filter(|l| !l.is_empty() && !l.contains('\n') && l.len() <= 64 && l != "UNKNOWN")
        {
            pkg.licenses.push(l);
        } else {
            for (k, v) in &h {
                if k == "Classifier"
                    && let Some(l) = v.strip_prefix("License :: ")
                {
                    let l = l.rsplit(" :: ").next().unwrap_or(l);
                    pkg.licenses.push(l.to_string());
                }
            }
        }
        pkg.supplier = get("Author")
            .or_else(|| get("Author-email"))
            .or_else(|| get("Maintainer"))
            .filter(|s| !s.is_empty());
        for (k, v) in &h {
            if k == "Requires-Dist" && !v.contains("extra ==") && !v.contains("extra==") {
                let n: String = v
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                    .collect();
                if !n.is_empty() {
                    pkg.depends.push(purl::pypi_name(&n));
                }
            }
        }
        if let Some(dir) = path.strip_suffix("/METADATA") {
            let record = format!("{dir}/RECORD");
            if let Some((b, _)) = fs.raw(&record) {
                let site = dir.rsplit_once('/').map(|(s, _)| s).unwrap_or("");
                pkg.evidence.push(record.clone());
                pkg.files = String::from_utf8_lossy(b)
                    .lines()
                    .filter_map(|l| l.split(',').next())
                    .filter(|f| !f.is_empty())
                    .map(|f| format!("{site}/{f}"))
                    .collect();
            }
        }
        cx.packages.push(pkg);
    }
}

fn npm_purl(name: &str, version: &str) -> String {
    match name.strip_prefix('@').and_then(|n| n.split_once('/')) {
        Some((scope, n)) => purl::purl("npm", Some(&format!("@{scope}")), n, version, &[]),
        None => purl::purl("npm", None, name, version, &[]),
    }
}

fn npm_license(v: &serde_json::Value) -> Vec<String> {
    let one = |v: &serde_json::Value| -> Option<String> {
        v.as_str()
            .map(str::to_string)
            .or_else(|| v.get("type").and_then(|t| t.as_str()).map(str::to_string))
    };
    if let Some(l) = v.get("license").and_then(one) {
        return vec![l];
    }
    v.get("licenses")
        .and_then(|l| l.as_array())
        .map(|a| a.iter().filter_map(one).collect())
        .unwrap_or_default()
}

/// npm: every `package.json` with a name and a version, then `package-lock.json` entries
/// not already seen in a `node_modules` tree.
pub fn npm(fs: &Fs, cx: &mut Context<'_>) {
    let mut seen = BTreeSet::new();
    let files: Vec<(String, Vec<u8>, usize)> = fs
        .raw_matching(|p| p.ends_with("/package.json"))
        .map(|(p, b, l)| (p.to_string(), b.to_vec(), l))
        .collect();
    for (path, bytes, layer) in files {
        let v: serde_json::Value = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => {
                if path.contains("/node_modules/") {
                    cx.warn(&path, layer, format!("malformed JSON: {e}"));
                }
                continue;
            }
        };
        let (Some(name), Some(version)) = (
            v.get("name").and_then(|n| n.as_str()),
            v.get("version").and_then(|n| n.as_str()),
        ) else {
            continue;
        };
        if name.is_empty() || version.is_empty() {
            continue;
        }
        let p = npm_purl(name, version);
        seen.insert(p.clone());
        let mut pkg = Package::new(Ecosystem::Npm, name, version, p);
        pkg.layer = cx.layer(layer);
        pkg.evidence.push(path.clone());
        pkg.licenses = npm_license(&v);
        pkg.supplier = v.get("author").and_then(|a| {
            a.as_str()
                .map(str::to_string)
                .or_else(|| a.get("name").and_then(|n| n.as_str()).map(str::to_string))
        });
        if let Some(d) = v.get("dependencies").and_then(|d| d.as_object()) {
            pkg.depends = d.keys().cloned().collect();
        }
        cx.packages.push(pkg);
    }
    let locks: Vec<(String, Vec<u8>, usize)> = fs
        .raw_matching(|p| p.ends_with("/package-lock.json"))
        .map(|(p, b, l)| (p.to_string(), b.to_vec(), l))
        .collect();
    for (path, bytes, layer) in locks {
        let v: serde_json::Value = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => {
                cx.warn(&path, layer, format!("malformed JSON: {e}"));
                continue;
            }
        };
        let Some(pkgs) = v.get("packages").and_then(|p| p.as_object()) else {
            continue;
        };
        for (key, entry) in pkgs {
            let Some(name) = key.rsplit_once("node_modules/").map(|(_, n)| n) else {
                continue;
            };
            let Some(version) = entry.get("version").and_then(|v| v.as_str()) else {
                continue;
            };
            let p = npm_purl(name, version);
            if !seen.insert(p.clone()) {
                continue;
            }
            let mut pkg = Package::new(Ecosystem::Npm, name, version, p);
            pkg.layer = cx.layer(layer);
            pkg.evidence.push(path.clone());
            pkg.licenses = npm_license(entry);
            if let Some(d) = entry.get("dependencies").and_then(|d| d.as_object()) {
                pkg.depends = d.keys().cloned().collect();
            }
            cx.packages.push(pkg);
        }
    }
}

/// `Cargo.lock`: every `[[package]]`.
pub fn cargo_lock(fs: &Fs, cx: &mut Context<'_>) {
    let locks: Vec<(String, Vec<u8>, usize)> = fs
        .raw_matching(|p| p.ends_with("/Cargo.lock"))
        .map(|(p, b, l)| (p.to_string(), b.to_vec(), l))
        .collect();
    for (path, bytes, layer) in locks {
        let text = String::from_utf8_lossy(&bytes);
        let mut cur: Option<(Option<String>, Option<String>, Vec<String>)> = None;
        let mut entries = vec![];
        let mut in_deps = false;
        for line in text.lines().chain(std::iter::once("[[end]]")) {
            let line = line.trim();
            if line.starts_with('[') {
                if let Some(c) = cur.take() {
                    entries.push(c);
                }
                in_deps = false;
                if line == "[[package]]" {
                    cur = Some((None, None, vec![]));
                }
                continue;
            }
            let Some(c) = cur.as_mut() else { continue };
            let unq = |s: &str| s.trim().trim_matches(',').trim().trim_matches('"').to_string();
            if in_deps {
                if line.starts_with(']') {
                    in_deps = false;
                } else if !line.is_empty() {
                    c.2.push(unq(line).split(' ').next().unwrap_or_default().to_string());
                }
                continue;
            }
            if let Some((k, v)) = line.split_once('=') {
                match k.trim() {
                    "name" => c.0 = Some(unq(v)),
                    "version" => c.1 = Some(unq(v)),
                    "dependencies" => {
                        let v = v.trim();
                        if v.starts_with('[') && v.ends_with(']') {
                            c.2.extend(
                                v.trim_matches(['[', ']'])
                                    .split(',')
                                    .map(|d| unq(d).split(' ').next().unwrap_or_default().to_string())
                                    .filter(|d| !d.is_empty()),
                            );
                        } else {
                            in_deps = true;
                        }
                    }
                    _ => {}
                }
            }
        }
        for (name, version, deps) in entries {
            let (Some(name), Some(version)) = (name, version) else {
                cx.warn(&path, layer, "[[package]] without name or version");
                continue;
            };
            let p = purl::purl("cargo", None, &name, &version, &[]);
            let mut pkg = Package::new(Ecosystem::Rust, name, version, p);
            pkg.layer = cx.layer(layer);
            pkg.evidence.push(path.clone());
            pkg.depends = deps;
            cx.packages.push(pkg);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_parsing() {
        let h = headers(
            "Metadata-Version: 2.1\nName: x\nClassifier: a\nClassifier: b\nDescription: l1\n  l2\n\nbody: no\n",
        );
        assert_eq!(h.len(), 5);
        assert_eq!(h[4].1, "l1\nl2");
    }
}
