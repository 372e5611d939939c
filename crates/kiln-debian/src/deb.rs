//! Reading a .deb without dpkg: the `ar` container, `control.tar.*` (the control record and
//! md5sums) and `data.tar.{gz,xz,zst}` (the files). Maintainer scripts are never run. Every
//! path is checked: absolute paths are made relative, and `..` components are refused.

use std::io::Read;

/// A .deb that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{deb}: {message} (hint: {hint})")]
pub struct DebError {
    /// Which .deb (package and version, or file).
    pub deb: String,
    /// What is wrong.
    pub message: String,
    /// What to do.
    pub hint: String,
}

/// One file system entry of `data.tar`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebEntry {
    /// Path relative to the root, without `./` or a trailing `/`.
    pub path: String,
    /// Type and content.
    pub kind: DebKind,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Modification time.
    pub mtime: i64,
}

/// An entry's type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DebKind {
    /// Directory.
    Dir,
    /// Regular file with its bytes.
    File(Vec<u8>),
    /// Symlink to a target (as written).
    Symlink(String),
    /// Hard link to another path of the package.
    Hardlink(String),
}

/// The parts of a .deb kiln uses.
#[derive(Debug, Clone, Default)]
pub struct Deb {
    /// The `control` file.
    pub control: String,
    /// The `md5sums` file, if any.
    pub md5sums: Option<String>,
    /// The `conffiles` file, if any.
    pub conffiles: Option<String>,
    /// `data.tar` entries in archive order.
    pub entries: Vec<DebEntry>,
}

/// Reads a whole .deb from memory. `name` is used in messages.
pub fn read(name: &str, bytes: &[u8]) -> Result<Deb, DebError> {
    let err = |message: String| DebError {
        deb: name.to_string(),
        message,
        hint: "the file is corrupt or not a Debian package; delete it from the cache and build again".into(),
    };
    let members = ar_members(bytes).map_err(err)?;
    if members.first().map(|(n, _)| n.as_str()) != Some("debian-binary") {
        return Err(err("first ar member is not debian-binary".into()));
    }
    let mut deb = Deb::default();
    let mut have_control = false;
    let mut have_data = false;
    for (member, data) in &members {
        if let Some(ext) = member.strip_prefix("control.tar") {
            have_control = true;
            let mut ar = tar::Archive::new(decompressor(ext, data).map_err(err)?);
            for e in ar.entries().map_err(|e| err(format!("{member}: {e}")))? {
                let mut e = e.map_err(|e| err(format!("{member}: {e}")))?;
                let path = e
                    .path()
                    .map_err(|e| err(format!("{member}: {e}")))?
                    .to_string_lossy()
                    .to_string();
                let slot = match path.trim_start_matches("./") {
                    "control" => &mut deb.control,
                    "md5sums" => deb.md5sums.get_or_insert_with(String::new),
                    "conffiles" => deb.conffiles.get_or_insert_with(String::new),
                    _ => continue,
                };
                e.read_to_string(slot)
                    .map_err(|e| err(format!("{member}: {path}: {e}")))?;
            }
        } else if let Some(ext) = member.strip_prefix("data.tar") {
            have_data = true;
            deb.entries = data_entries(name, decompressor(ext, data).map_err(err)?)?;
        }
    }
    if !have_control || !have_data || deb.control.is_empty() {
        return Err(err("missing control.tar or data.tar member".into()));
    }
    Ok(deb)
}

/// Splits an `ar` archive into (name, bytes) members.
fn ar_members(bytes: &[u8]) -> Result<Vec<(String, &[u8])>, String> {
    let rest = bytes
        .strip_prefix(b"!<arch>\n")
        .ok_or("not an ar archive (bad magic)")?;
    let mut out = Vec::new();
    let mut off = 0;
    while off < rest.len() {
        let h = rest
            .get(off..off + 60)
            .ok_or_else(|| format!("truncated: ar header at byte {} is cut off", off + 8))?;
        if &h[58..60] != b"`\n" {
            return Err(format!("bad ar header at byte {}", off + 8));
        }
        let name = String::from_utf8_lossy(&h[..16])
            .trim_end()
            .trim_end_matches('/')
            .to_string();
        let size: usize = std::str::from_utf8(&h[48..58])
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| format!("bad size in ar header of {name}"))?;
        let data = rest.get(off + 60..off + 60 + size).ok_or_else(|| {
            format!(
                "truncated: member {name} needs {size} bytes, the file has {}",
                rest.len().saturating_sub(off + 60)
            )
        })?;
        out.push((name, data));
        off += 60 + size + (size % 2);
    }
    Ok(out)
}

fn decompressor<'a>(ext: &str, data: &'a [u8]) -> Result<Box<dyn Read + 'a>, String> {
    Ok(match ext {
        ".gz" => Box::new(flate2::read::GzDecoder::new(data)),
        ".xz" => Box::new(xz2::read::XzDecoder::new(data)),
        ".zst" => Box::new(zstd::stream::read::Decoder::new(data).map_err(|e| e.to_string())?),
        "" => Box::new(data),
        other => {
            return Err(format!(
                "unsupported compression tar{other} (kiln reads gz, xz and zst)"
            ));
        }
    })
}

/// Makes a tar path relative and clean; refuses `..`.
fn clean_path(raw: &str) -> Result<String, String> {
    let mut parts = Vec::new();
    for c in raw.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(format!("path {raw:?} contains `..`")),
            c => parts.push(c),
        }
    }
    Ok(parts.join("/"))
}

fn data_entries(name: &str, r: Box<dyn Read + '_>) -> Result<Vec<DebEntry>, DebError> {
    let bad = |message: String, hint: &str| DebError {
        deb: name.to_string(),
        message: format!("data.tar: {message}"),
        hint: hint.to_string(),
    };
    let corrupt = "the .deb is truncated or corrupt; delete it from the cache and build again";
    let mut ar = tar::Archive::new(r);
    let mut out = Vec::new();
    for e in ar.entries().map_err(|e| bad(e.to_string(), corrupt))? {
        let mut e = e.map_err(|e| bad(e.to_string(), corrupt))?;
        let raw = String::from_utf8_lossy(&e.path_bytes()).to_string();
        let path = clean_path(&raw)
            .map_err(|m| bad(m, "a package must never write outside its root; do not use this .deb"))?;
        let h = e.header();
        let mode = h.mode().unwrap_or(0o644) & 0o7777;
        let uid = h.uid().unwrap_or(0);
        let gid = h.gid().unwrap_or(0);
        let mtime = h.mtime().unwrap_or(0) as i64;
        let kind = match h.entry_type() {
            tar::EntryType::Directory => DebKind::Dir,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut data = Vec::with_capacity(e.size() as usize);
                e.read_to_end(&mut data)
                    .map_err(|e| bad(format!("{raw}: {e}"), corrupt))?;
                DebKind::File(data)
            }
            tar::EntryType::Symlink => {
                let t = e
                    .link_name_bytes()
                    .ok_or_else(|| bad(format!("{raw}: symlink without target"), corrupt))?;
                DebKind::Symlink(String::from_utf8_lossy(&t).to_string())
            }
            tar::EntryType::Link => {
                let t = e
                    .link_name_bytes()
                    .ok_or_else(|| bad(format!("{raw}: hard link without target"), corrupt))?;
                let t = clean_path(&String::from_utf8_lossy(&t))
                    .map_err(|m| bad(m, "a package must never link outside its root; do not use this .deb"))?;
                DebKind::Hardlink(t)
            }
            // Debian packages carry no devices or fifos; pax headers are handled by tar.
            _ => continue,
        };
        if path.is_empty() {
            continue; // the root directory itself
        }
        out.push(DebEntry {
            path,
            kind,
            mode,
            uid,
            gid,
            mtime,
        });
    }
    Ok(out)
}

/// Test helper and fuzz seed maker: builds a .deb from a control text and (path, content)
/// files, with data.tar compressed as `ext` (".gz", ".xz", ".zst" or "").
pub fn build_test_deb(control: &str, files: &[(&str, &[u8])], ext: &str) -> Vec<u8> {
    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (p, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            // Write the name bytes directly, so tests can make hostile names.
            let name = p.as_bytes();
            h.as_old_mut().name[..name.len()].copy_from_slice(name);
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }
    fn compress(ext: &str, data: Vec<u8>) -> Vec<u8> {
        use std::io::Write;
        match ext {
            ".gz" => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
                e.write_all(&data).unwrap();
                e.finish().unwrap()
            }
            ".xz" => {
                let mut e = xz2::write::XzEncoder::new(Vec::new(), 6);
                e.write_all(&data).unwrap();
                e.finish().unwrap()
            }
            ".zst" => zstd::encode_all(&data[..], 3).unwrap(),
            _ => data,
        }
    }
    let members: Vec<(String, Vec<u8>)> = vec![
        ("debian-binary".into(), b"2.0\n".to_vec()),
        (
            "control.tar.gz".into(),
            compress(".gz", tar_of(&[("./control", control.as_bytes())])),
        ),
        (format!("data.tar{ext}"), compress(ext, tar_of(files))),
    ];
    let mut out = b"!<arch>\n".to_vec();
    for (name, data) in members {
        out.extend_from_slice(
            format!(
                "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
                name,
                0,
                0,
                0,
                "100644",
                data.len()
            )
            .as_bytes(),
        );
        out.extend_from_slice(&data);
        if data.len() % 2 == 1 {
            out.push(b'\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTROL: &str = "Package: hello\nVersion: 1.0\nArchitecture: all\n";

    #[test]
    fn reads_each_compression() {
        for ext in [".gz", ".xz", ".zst", ""] {
            let deb = build_test_deb(CONTROL, &[("./usr/bin/hello", b"hi"), ("./etc/x", b"")], ext);
            let d = read("hello", &deb).unwrap();
            assert_eq!(d.control, CONTROL);
            assert_eq!(d.entries.len(), 2);
            assert_eq!(d.entries[0].path, "usr/bin/hello");
            assert_eq!(d.entries[0].kind, DebKind::File(b"hi".to_vec()));
        }
    }

    #[test]
    fn refuses_dotdot_and_truncation() {
        let deb = build_test_deb(CONTROL, &[("./../../etc/passwd", b"x")], ".gz");
        let e = read("evil", &deb).unwrap_err();
        assert!(e.message.contains("`..`"), "{e}");
        let deb = build_test_deb(CONTROL, &[("./usr/a", &[7u8; 5000])], ".xz");
        for cut in [10, 100, deb.len() / 2, deb.len() - 3] {
            let e = read("cut", &deb[..cut]).unwrap_err();
            assert!(e.to_string().contains("hint"), "{e}");
        }
        assert!(read("x", b"not a deb").unwrap_err().message.contains("magic"));
    }

    /// Mutated and truncated packages never panic, and never yield an unsafe path.
    #[test]
    fn mutations_never_panic() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for ext in [".gz", ".xz", ".zst", ""] {
            let deb = build_test_deb(CONTROL, &[("./usr/bin/a", &[1u8; 700]), ("./etc/b", b"bb")], ext);
            for _ in 0..300 {
                let mut m = deb.clone();
                for _ in 0..(next() % 4 + 1) {
                    let i = (next() as usize) % m.len();
                    m[i] = next() as u8;
                }
                if next() % 3 == 0 {
                    m.truncate((next() as usize) % m.len());
                }
                if let Ok(d) = read("m", &m) {
                    assert!(
                        d.entries
                            .iter()
                            .all(|e| !e.path.starts_with('/') && !e.path.split('/').any(|c| c == ".."))
                    );
                }
            }
        }
    }

    #[test]
    fn clean_paths() {
        assert_eq!(clean_path("./usr//bin/").unwrap(), "usr/bin");
        assert_eq!(clean_path("/etc/x").unwrap(), "etc/x");
        assert!(clean_path("usr/../../x").is_err());
    }
}
