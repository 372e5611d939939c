//! Java archives (`.jar`, `.war`, `.ear`, …): the manifest, every
//! `META-INF/maven/**/pom.properties`, and archives nested inside (Spring Boot's
//! `BOOT-INF/lib`, a war's `WEB-INF/lib`). A minimal zip reader of our own: the central
//! directory, stored and deflated entries; nothing is written to disk.

use std::collections::BTreeMap;
use std::io::Read;

use crate::{Ecosystem, Package, purl};

/// True for the file names the Java cataloger opens.
pub fn is_archive_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [".jar", ".war", ".ear", ".par", ".sar", ".nar", ".jpi", ".hpi"]
        .iter()
        .any(|e| lower.ends_with(e))
}

struct Entry {
    name: String,
    method: u16,
    comp: usize,
    local: usize,
}

fn u16le(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?))
}
fn u32le(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}

fn entries(b: &[u8]) -> Result<Vec<Entry>, String> {
    let start = b.len().saturating_sub(65_557);
    let eocd = (start..b.len().saturating_sub(21))
        .rev()
        .find(|&i| b[i..i + 4] == [0x50, 0x4b, 0x05, 0x06])
        .ok_or("no zip end-of-central-directory record (truncated archive?)")?;
    let count = u16le(b, eocd + 10).ok_or("truncated")? as usize;
    let mut pos = u32le(b, eocd + 16).ok_or("truncated")? as usize;
    if pos == 0xffff_ffff {
        return Err("zip64 archives are not read".into());
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        if u32le(b, pos) != Some(0x0201_4b50) {
            return Err(format!("bad central directory entry at offset {pos}"));
        }
        let method = u16le(b, pos + 10).ok_or("truncated")?;
        let comp = u32le(b, pos + 20).ok_or("truncated")? as usize;
        let nlen = u16le(b, pos + 28).ok_or("truncated")? as usize;
        let elen = u16le(b, pos + 30).ok_or("truncated")? as usize;
        let clen = u16le(b, pos + 32).ok_or("truncated")? as usize;
        let local = u32le(b, pos + 42).ok_or("truncated")? as usize;
        let name = String::from_utf8_lossy(b.get(pos + 46..pos + 46 + nlen).ok_or("truncated")?).into_owned();
        out.push(Entry {
            name,
            method,
            comp,
            local,
        });
        pos += 46 + nlen + elen + clen;
    }
    Ok(out)
}

fn read_entry(b: &[u8], e: &Entry, limit: u64) -> Result<Vec<u8>, String> {
    if u32le(b, e.local) != Some(0x0403_4b50) {
        return Err(format!("{}: bad local header", e.name));
    }
    let n = u16le(b, e.local + 26).ok_or("truncated")? as usize;
    let x = u16le(b, e.local + 28).ok_or("truncated")? as usize;
    let start = e.local + 30 + n + x;
    let data = b
        .get(start..start + e.comp)
        .ok_or_else(|| format!("{}: data past the end of the archive", e.name))?;
    match e.method {
        0 => Ok(data.to_vec()),
        8 => {
            let mut out = Vec::new();
            flate2::read::DeflateDecoder::new(data)
                .take(limit)
                .read_to_end(&mut out)
                .map_err(|err| format!("{}: {err}", e.name))?;
            Ok(out)
        }
        m => Err(format!("{}: compression method {m} is not supported", e.name)),
    }
}

/// The main section of a MANIFEST.MF (72-column continuation lines joined).
fn manifest(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut last: Option<String> = None;
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            break;
        }
        if let Some(cont) = line.strip_prefix(' ') {
            if let Some(k) = &last {
                out.entry(k.clone()).or_insert_with(String::new).push_str(cont);
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            out.insert(k.trim().to_string(), v.trim().to_string());
            last = Some(k.trim().to_string());
        }
    }
    out
}

/// `name-1.2.3.jar` → (`name`, `1.2.3`): the version starts at the first `-` followed by a
/// digit.
fn split_filename(file: &str) -> (String, String) {
    let stem = file.rsplit('/').next().unwrap_or(file);
    let stem = stem.rsplit_once('.').map(|(s, _)| s).unwrap_or(stem);
    let bytes = stem.as_bytes();
    for i in 0..bytes.len() {
        if bytes[i] == b'-' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
            return (stem[..i].to_string(), stem[i + 1..].to_string());
        }
    }
    (stem.to_string(), String::new())
}

fn maven(group: &str, artifact: &str, version: &str) -> String {
    purl::purl("maven", Some(group), artifact, version, &[])
}

fn catalog_archive(
    label: &str,
    file_name: &str,
    b: &[u8],
    depth: usize,
    pkgs: &mut Vec<Package>,
    warns: &mut Vec<String>,
) {
    let list = match entries(b) {
        Ok(l) => l,
        Err(e) => {
            warns.push(format!("{label}: {e}; archive skipped"));
            return;
        }
    };
    let mut man = BTreeMap::new();
    let mut poms: Vec<BTreeMap<String, String>> = vec![];
    for e in &list {
        if e.name.eq_ignore_ascii_case("META-INF/MANIFEST.MF") {
            match read_entry(b, e, 1 << 20) {
                Ok(d) => man = manifest(&String::from_utf8_lossy(&d)),
                Err(err) => warns.push(format!("{label}: {err}")),
            }
        } else if e.name.starts_with("META-INF/maven/") && e.name.ends_with("/pom.properties") {
            match read_entry(b, e, 1 << 20) {
                Ok(d) => {
                    let mut m = BTreeMap::new();
                    for line in String::from_utf8_lossy(&d).lines() {
                        if line.starts_with('#') {
                            continue;
                        }
                        if let Some((k, v)) = line.split_once('=') {
                            m.insert(k.trim().to_string(), v.trim().to_string());
                        }
                    }
                    poms.push(m);
                }
                Err(err) => warns.push(format!("{label}: {err}")),
            }
        }
    }
    let (fname, fversion) = split_filename(file_name);
    let pick = |keys: &[&str]| keys.iter().find_map(|k| man.get(*k).filter(|v| !v.is_empty()).cloned());
    let name = if !fname.is_empty() {
        fname.clone()
    } else {
        pick(&[
            "Name",
            "Bundle-Name",
            "Short-Name",
            "Extension-Name",
            "Implementation-Title",
        ])
        .unwrap_or_default()
    };
    // The archive's own pom.properties is the one whose artifactId is the file's name: it
    // names the main package. Other poms are packages shaded or bundled inside.
    let main_pom = poms
        .iter()
        .position(|p| p.get("artifactId").map(String::as_str) == Some(name.as_str()))
        .filter(|&i| poms[i].contains_key("version"));
    let license = man.get("Bundle-License").cloned();
    if main_pom.is_none() && !name.is_empty() {
        let version = if !fversion.is_empty() {
            fversion
        } else {
            pick(&[
                "Implementation-Version",
                "Specification-Version",
                "Plugin-Version",
                "Bundle-Version",
            ])
            .unwrap_or_default()
        };
        let group = man
            .get("Automatic-Module-Name")
            .and_then(|m| m.rsplit_once('.').map(|(g, _)| g.to_string()))
            .unwrap_or_else(|| name.clone());
        // An archive that says nothing of its version is still a package; syft calls the
        // version UNKNOWN, and so does kiln (the purl then has none).
        let mut p = Package::new(
            Ecosystem::Java,
            name.clone(),
            if version.is_empty() {
                "UNKNOWN".to_string()
            } else {
                version.clone()
            },
            maven(&group, &name, &version),
        );
        p.evidence.push(label.to_string());
        p.licenses.extend(license.clone());
        p.properties.insert("group".into(), group);
        pkgs.push(p);
    }
    for (i, pom) in poms.iter().enumerate() {
        let (Some(a), Some(v)) = (pom.get("artifactId"), pom.get("version")) else {
            warns.push(format!("{label}: pom.properties without artifactId or version"));
            continue;
        };
        let g = pom.get("groupId").cloned().unwrap_or_else(|| a.clone());
        let mut p = Package::new(Ecosystem::Java, a.clone(), v.clone(), maven(&g, a, v));
        p.evidence.push(label.to_string());
        if Some(i) == main_pom {
            p.licenses.extend(license.clone());
        }
        p.properties.insert("group".into(), g);
        pkgs.push(p);
    }
    if depth >= 4 {
        return;
    }
    for e in &list {
        if is_archive_name(&e.name) {
            match read_entry(b, e, 256 << 20) {
                Ok(d) => catalog_archive(&format!("{label}:{}", e.name), &e.name, &d, depth + 1, pkgs, warns),
                Err(err) => warns.push(format!("{label}: {err}")),
            }
        }
    }
}

/// Catalogues one archive file: (packages, warnings naming the file).
pub fn catalog(path: &str, b: &[u8]) -> (Vec<Package>, Vec<String>) {
    let mut pkgs = vec![];
    let mut warns = vec![];
    catalog_archive(path, path, b, 0, &mut pkgs, &mut warns);
    (pkgs, warns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filenames() {
        assert_eq!(
            split_filename("/a/greeter-1.2.3.jar"),
            ("greeter".into(), "1.2.3".into())
        );
        assert_eq!(
            split_filename("spring-boot-3.1.0-SNAPSHOT.jar"),
            ("spring-boot".into(), "3.1.0-SNAPSHOT".into())
        );
        assert_eq!(split_filename("app.jar"), ("app".into(), String::new()));
    }

    #[test]
    fn manifest_continuations() {
        let m = manifest("Manifest-Version: 1.0\r\nImplementation-Title: a-very\r\n -long\r\n\r\nName: x\r\n");
        assert_eq!(m["Implementation-Title"], "a-very-long");
        assert!(!m.contains_key("Name"));
    }
}
