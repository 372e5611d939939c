//! Packages embedded in ELF binaries: Go's build info (`.go.buildinfo`: module path,
//! version, dependencies, Go version) and cargo-auditable's `.dep-v0` section (zlib JSON
//! of every crate). Our own small ELF reader: only the section table is needed.

use std::io::Read;

use crate::{Ecosystem, Package, purl};

/// A section: (name, file offset, size, virtual address).
#[derive(Debug, Clone)]
struct Section {
    name: String,
    offset: u64,
    size: u64,
    addr: u64,
    nobits: bool,
}

struct Elf {
    big: bool,
    wide: bool,
    sections: Vec<Section>,
}

fn rd(b: &[u8], off: usize, n: usize, big: bool) -> Option<u64> {
    let s = b.get(off..off.checked_add(n)?)?;
    let mut v: u64 = 0;
    if big {
        for x in s {
            v = (v << 8) | *x as u64;
        }
    } else {
        for x in s.iter().rev() {
            v = (v << 8) | *x as u64;
        }
    }
    Some(v)
}

fn parse_elf(b: &[u8]) -> Option<Elf> {
    if b.get(..4)? != b"\x7fELF" {
        return None;
    }
    let wide = *b.get(4)? == 2;
    let big = *b.get(5)? == 2;
    let (shoff, shentsize, shnum, shstrndx) = if wide {
        (
            rd(b, 0x28, 8, big)?,
            rd(b, 0x3A, 2, big)?,
            rd(b, 0x3C, 2, big)?,
            rd(b, 0x3E, 2, big)?,
        )
    } else {
        (
            rd(b, 0x20, 4, big)?,
            rd(b, 0x2E, 2, big)?,
            rd(b, 0x30, 2, big)?,
            rd(b, 0x32, 2, big)?,
        )
    };
    let mut raw = vec![];
    for i in 0..shnum {
        let h = usize::try_from(shoff.checked_add(i.checked_mul(shentsize)?)?).ok()?;
        let name = rd(b, h, 4, big)?;
        let kind = rd(b, h + 4, 4, big)?;
        let (addr, offset, size) = if wide {
            (rd(b, h + 16, 8, big)?, rd(b, h + 24, 8, big)?, rd(b, h + 32, 8, big)?)
        } else {
            (rd(b, h + 12, 4, big)?, rd(b, h + 16, 4, big)?, rd(b, h + 20, 4, big)?)
        };
        raw.push((name, kind, addr, offset, size));
    }
    let strtab = raw.get(shstrndx as usize)?;
    let tab = b.get(strtab.3 as usize..(strtab.3 + strtab.4) as usize)?;
    let sections = raw
        .iter()
        .map(|(n, kind, addr, offset, size)| {
            let n = *n as usize;
            let name = tab
                .get(n..)
                .map(|s| String::from_utf8_lossy(&s[..s.iter().position(|c| *c == 0).unwrap_or(s.len())]).into_owned())
                .unwrap_or_default();
            Section {
                name,
                offset: *offset,
                size: *size,
                addr: *addr,
                nobits: *kind == 8,
            }
        })
        .collect();
    Some(Elf { big, wide, sections })
}

impl Elf {
    fn data<'a>(&self, b: &'a [u8], name: &str) -> Option<Result<&'a [u8], ()>> {
        let s = self.sections.iter().find(|s| s.name == name && !s.nobits)?;
        Some(
            b.get(s.offset as usize..(s.offset.saturating_add(s.size)) as usize)
                .ok_or(()),
        )
    }

    /// Bytes at a virtual address (for pre-1.18 Go build info, which holds pointers).
    fn at_addr<'a>(&self, b: &'a [u8], addr: u64, len: u64) -> Option<&'a [u8]> {
        let s = self
            .sections
            .iter()
            .find(|s| !s.nobits && s.addr <= addr && addr.checked_add(len).is_some_and(|end| end <= s.addr + s.size))?;
        let off = (s.offset + (addr - s.addr)) as usize;
        b.get(off..off + len as usize)
    }
}

const GO_MAGIC: &[u8] = b"\xff Go buildinf:";

fn varint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let x = *b.get(*pos)?;
        *pos += 1;
        v |= ((x & 0x7f) as u64) << shift;
        if x & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn varstr(b: &[u8], pos: &mut usize) -> Option<Vec<u8>> {
    let n = varint(b, pos)? as usize;
    let s = b.get(*pos..pos.checked_add(n)?)?;
    *pos += n;
    Some(s.to_vec())
}

/// Reads (Go version, modinfo) from build info starting at its magic.
fn go_buildinfo(info: &[u8], elf: Option<&Elf>, whole: &[u8]) -> Result<(String, String), String> {
    if info.len() < 32 {
        return Err("truncated Go build info header".into());
    }
    let ptr = info[14] as usize;
    let flags = info[15];
    let (version, modinfo) = if flags & 2 != 0 {
        let mut pos = 32;
        let v = varstr(info, &mut pos).ok_or("truncated Go build info (version string)")?;
        let m = varstr(info, &mut pos).ok_or("truncated Go build info (module info)")?;
        (v, m)
    } else {
        // Before Go 1.18: two pointers to Go string headers (pointer, length).
        let elf = elf.ok_or("Go build info with pointers but no readable ELF sections")?;
        let big = flags & 1 != 0;
        let read_str = |at: u64| -> Option<String> {
            let hdr = elf.at_addr(whole, at, 2 * ptr as u64)?;
            let p = rd(hdr, 0, ptr, big)?;
            let n = rd(hdr, ptr, ptr, big)?;
            elf.at_addr(whole, p, n)
                .map(|d| String::from_utf8_lossy(d).into_owned())
        };
        let p1 = rd(info, 16, ptr, big).ok_or("truncated Go build info")?;
        let p2 = rd(info, 16 + ptr, ptr, big).ok_or("truncated Go build info")?;
        let _ = elf.big || elf.wide;
        (
            read_str(p1)
                .ok_or("Go version string outside the binary (truncated?)")?
                .into_bytes(),
            read_str(p2).map(String::into_bytes).unwrap_or_default(),
        )
    };
    // Module info is framed by 16-byte sentinels (binary, so cut before decoding).
    let modinfo = if modinfo.len() >= 33 && modinfo[modinfo.len() - 17] == b'\n' {
        &modinfo[16..modinfo.len() - 16]
    } else {
        &modinfo[..]
    };
    Ok((
        String::from_utf8_lossy(&version).into_owned(),
        String::from_utf8_lossy(modinfo).into_owned(),
    ))
}

fn go_purl(path: &str, version: &str) -> String {
    match path.rsplit_once('/') {
        Some((ns, n)) => purl::purl("golang", Some(ns), n, version, &[]),
        None => purl::purl("golang", None, path, version, &[]),
    }
}

fn go_packages(path: &str, version: &str, modinfo: &str) -> Vec<Package> {
    let mut out = vec![];
    let mut settings = vec![];
    let mut main: Option<(String, String)> = None;
    let mut deps: Vec<(String, String)> = vec![];
    for line in modinfo.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        match f.as_slice() {
            ["mod", p, v, ..] => main = Some((p.to_string(), v.to_string())),
            // Built outside module mode (Debian's Go packages, `go build file.go`): only
            // the main package's path is known.
            ["path", p] if main.is_none() => main = Some((p.to_string(), "(devel)".to_string())),
            ["dep", p, v, ..] => deps.push((p.to_string(), v.to_string())),
            ["dep", p] => deps.push((p.to_string(), String::new())),
            ["=>", p, v, ..] => {
                if let Some(last) = deps.last_mut() {
                    *last = (p.to_string(), v.to_string());
                }
            }
            ["build", kv] => settings.push(kv.to_string()),
            _ => {}
        }
    }
    let mut dep_names = vec![];
    for (p, v) in &deps {
        let mut pkg = Package::new(Ecosystem::Go, p.clone(), v.clone(), go_purl(p, v));
        pkg.evidence.push(path.to_string());
        pkg.properties.insert("go-version".into(), version.to_string());
        dep_names.push(p.clone());
        out.push(pkg);
    }
    if let Some((p, v)) = main {
        // A main module built outside version control says "(devel)"; its version is then
        // often stamped with `-ldflags "-X pkg.version=1.2.3"` (as syft reads it too).
        let v = if v == "(devel)" {
            settings
                .iter()
                .find_map(|s| s.strip_prefix("-ldflags="))
                .and_then(ldflags_version)
                .unwrap_or(v)
        } else {
            v
        };
        let mut pkg = Package::new(Ecosystem::Go, p.clone(), v.clone(), go_purl(&p, &v));
        pkg.evidence.push(path.to_string());
        pkg.properties.insert("go-version".into(), version.to_string());
        for s in &settings {
            if let Some((k, v)) = s.split_once('=')
                && matches!(k, "GOOS" | "GOARCH" | "CGO_ENABLED" | "vcs.revision" | "-ldflags")
            {
                pkg.properties.insert(format!("go-build.{k}"), v.to_string());
            }
        }
        pkg.depends = dep_names.clone();
        pkg.depends.push("stdlib".into());
        out.push(pkg);
    }
    if !version.is_empty() {
        let plain = version.strip_prefix("go").unwrap_or(version);
        let plain = plain.split([' ', '+']).next().unwrap_or(plain);
        let mut pkg = Package::new(
            Ecosystem::Go,
            "stdlib",
            version.split(' ').next().unwrap_or(version),
            purl::purl("golang", None, "stdlib", plain, &[]),
        );
        pkg.evidence.push(path.to_string());
        pkg.licenses.push("BSD-3-Clause".into());
        out.push(pkg);
    }
    out
}

/// The version an `-ldflags` string stamps with `-X …version=V` (or `gitVersion`), as a Go
/// module version: `v` before a leading digit.
fn ldflags_version(flags: &str) -> Option<String> {
    let flags = flags.trim_matches(|c| c == '"' || c == '\'');
    let mut it = flags.split_whitespace();
    while let Some(tok) = it.next() {
        let kv = match tok.strip_prefix("-X") {
            Some("") => it.next()?,
            Some(rest) => rest.trim_start_matches('='),
            None => continue,
        };
        let Some((key, val)) = kv.split_once('=') else { continue };
        let val = val.trim_matches(|c| c == '"' || c == '\'');
        let leaf = key.rsplit('.').next().unwrap_or(key).to_ascii_lowercase();
        if matches!(leaf.as_str(), "version" | "gitversion") {
            if val.starts_with(|c: char| c.is_ascii_digit()) {
                return Some(format!("v{val}"));
            }
            if val.starts_with('v') && val[1..].starts_with(|c: char| c.is_ascii_digit()) {
                return Some(val.to_string());
            }
        }
    }
    None
}

#[derive(serde::Deserialize)]
struct Auditable {
    packages: Vec<AuditPkg>,
}

#[derive(serde::Deserialize)]
struct AuditPkg {
    name: String,
    version: String,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    dependencies: Vec<usize>,
}

fn rust_packages(path: &str, data: &[u8]) -> Result<Vec<Package>, String> {
    let mut json = Vec::new();
    flate2::read::ZlibDecoder::new(data)
        .take(64 << 20)
        .read_to_end(&mut json)
        .map_err(|e| format!("cargo-auditable section .dep-v0 does not decompress: {e}"))?;
    let a: Auditable =
        serde_json::from_slice(&json).map_err(|e| format!("cargo-auditable section .dep-v0 is not valid JSON: {e}"))?;
    let names: Vec<String> = a.packages.iter().map(|p| p.name.clone()).collect();
    Ok(a.packages
        .iter()
        .map(|p| {
            let mut pkg = Package::new(
                Ecosystem::Rust,
                p.name.clone(),
                p.version.clone(),
                purl::purl("cargo", None, &p.name, &p.version, &[]),
            );
            pkg.evidence.push(path.to_string());
            if let Some(s) = &p.source {
                pkg.properties.insert("source".into(), s.clone());
            }
            if let Some(k) = &p.kind {
                pkg.properties.insert("kind".into(), k.clone());
            }
            pkg.depends = p.dependencies.iter().filter_map(|i| names.get(*i).cloned()).collect();
            pkg
        })
        .collect())
}

/// Catalogues one ELF file: (packages, warnings naming the file).
pub fn catalog(path: &str, b: &[u8]) -> (Vec<Package>, Vec<String>) {
    let mut pkgs = vec![];
    let mut warns = vec![];
    let elf = parse_elf(b);
    let go_section = elf.as_ref().and_then(|e| e.data(b, ".go.buildinfo"));
    let go_info: Option<&[u8]> = match go_section {
        Some(Ok(d)) => d.windows(GO_MAGIC.len()).position(|w| w == GO_MAGIC).map(|i| &d[i..]),
        None if elf.is_some() => None,
        // No usable section table (truncated or stripped of it): look for the magic, which
        // Go aligns to 16 bytes.
        _ => (0..b.len().saturating_sub(GO_MAGIC.len()))
            .step_by(16)
            .find(|&i| &b[i..i + GO_MAGIC.len()] == GO_MAGIC)
            .map(|i| &b[i..]),
    };
    if let Some(info) = go_info {
        match go_buildinfo(info, elf.as_ref(), b) {
            Ok((v, m)) => pkgs.extend(go_packages(path, &v, &m)),
            Err(e) => warns.push(format!("{path}: {e}; Go binary skipped")),
        }
    } else if elf.is_none() && b.len() >= 64 {
        warns.push(format!(
            "{path}: ELF section table is missing or truncated; binary skipped"
        ));
    }
    if let Some(e) = &elf
        && let Some(d) = e.data(b, ".dep-v0")
    {
        match d
            .map_err(|_| "section .dep-v0 lies past the end of the file (truncated?)".to_string())
            .and_then(|d| rust_packages(path, d))
        {
            Ok(p) => pkgs.extend(p),
            Err(e) => warns.push(format!("{path}: {e}; Rust binary skipped")),
        }
    }
    (pkgs, warns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modinfo_lines() {
        let m = "path\tex.com/hello\nmod\tex.com/hello\t(devel)\t\ndep\tex.com/dep\tv1.2.3\th1:x=\ndep\tex.com/old\tv0.1.0\n=>\tex.com/new\tv0.2.0\th1:y=\nbuild\tGOARCH=amd64\n";
        let p = go_packages("/app", "go1.19.8", m);
        let names: Vec<(String, String)> = p.iter().map(|p| (p.name.clone(), p.version.clone())).collect();
        assert_eq!(
            names,
            [
                ("ex.com/dep".into(), "v1.2.3".into()),
                ("ex.com/new".into(), "v0.2.0".into()),
                ("ex.com/hello".into(), "(devel)".into()),
                ("stdlib".into(), "go1.19.8".into())
            ]
        );
        assert_eq!(p[3].purl, "pkg:golang/stdlib@1.19.8");
    }

    #[test]
    fn gopath_builds_name_the_main_package_by_path() {
        let p = go_packages(
            "/usr/bin/skopeo",
            "go1.19.8",
            "path\tgithub.com/containers/skopeo/cmd/skopeo\nbuild\t-compiler=gc\n",
        );
        assert_eq!(p[0].name, "github.com/containers/skopeo/cmd/skopeo");
        assert_eq!(p[0].version, "(devel)");
    }

    #[test]
    fn ldflags_stamp_the_main_version() {
        assert_eq!(
            ldflags_version("-X github.com/docker/cli/cli/version.Version=20.10.24+dfsg1 -s").as_deref(),
            Some("v20.10.24+dfsg1")
        );
        assert_eq!(
            ldflags_version("\"-X=main.gitVersion=v1.2.3\"").as_deref(),
            Some("v1.2.3")
        );
        assert_eq!(ldflags_version("-X main.commit=abc"), None);
    }

    #[test]
    fn truncated_buildinfo_is_a_warning() {
        let mut b = b"\x7fELF".to_vec();
        b.resize(64, 0);
        b.extend_from_slice(GO_MAGIC);
        b.extend_from_slice(&[8, 2]);
        b.resize(b.len() + 16, 0);
        b.push(0x7f); // a 127-byte version string that is not there
        let (p, w) = catalog("/bin/x", &b);
        assert!(p.is_empty());
        assert!(w[0].starts_with("/bin/x: truncated Go build info"), "{w:?}");
    }
}
