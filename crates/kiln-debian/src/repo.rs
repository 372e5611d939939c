//! Talking to a Debian archive: the signed InRelease, and the Packages indexes it names by
//! hash. Indexes are cached by their sha256, so a re-lock only downloads what changed.

use std::collections::BTreeMap;
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::error::Error;
use crate::pgp;
use crate::{control, http};
use kiln_plan::lock::Snapshot;

/// A verified Release file.
#[derive(Debug, Clone)]
pub struct Release {
    /// Mirror base URL.
    pub url: String,
    /// The suite as asked for.
    pub suite: String,
    /// The signed `Suite` (e.g. `oldstable`; may be empty).
    pub signed_suite: String,
    /// `Codename`.
    pub codename: String,
    /// `Version` (may be empty).
    pub version: String,
    /// `Date`.
    pub date: String,
    /// sha256 of the InRelease file as downloaded.
    pub inrelease_sha256: String,
    /// `Acquire-By-Hash: yes`: indexes can be fetched by their hash, immune to mirror updates.
    pub by_hash: bool,
    /// Path (relative to dists/SUITE/) → (size, sha256) from the `SHA256` field.
    pub files: BTreeMap<String, (u64, String)>,
    /// `Valid-Until` in seconds since the epoch (security suites set it, so an old signed
    /// InRelease cannot be replayed forever).
    pub valid_until: Option<i64>,
    /// `Valid-Until` as signed (empty when the archive sets none).
    pub valid_until_text: String,
}

/// Parses an RFC 2822 date as Release files write it (`Sat, 29 Nov 2026 00:12:41 UTC`).
pub fn parse_release_date(s: &str) -> Option<i64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let rest = if parts.first()?.ends_with(',') {
        &parts[1..]
    } else {
        &parts[..]
    };
    let [day, month, year, time, zone, ..] = rest else {
        return None;
    };
    if !matches!(*zone, "UTC" | "GMT" | "+0000" | "Z") {
        return None;
    }
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| m == month)? as i64
        + 1;
    let (d, y): (i64, i64) = (day.parse().ok()?, year.parse().ok()?);
    let hms: Vec<i64> = time.split(':').map(|x| x.parse().ok()).collect::<Option<_>>()?;
    let [h, mi, sec] = hms[..] else { return None };
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if month <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + sec)
}

/// Downloads `dists/SUITE/InRelease`, checks its signature against the keyring, and checks
/// that it is current: not expired (`Valid-Until`), not older than the `Date` recorded in
/// the previous lock (`recorded`), and carrying a `Valid-Until` again when the recorded one
/// had it. Each refusal is an [`Error::Input`] naming the InRelease.
pub fn fetch_release(
    url: &str,
    suite: &str,
    keyring_path: &Path,
    recorded: Option<&Snapshot>,
) -> Result<Release, Error> {
    let location = format!("{}/dists/{suite}/InRelease", url.trim_end_matches('/'));
    let raw = http::get_bytes(&location, http::MAX_INRELEASE_BYTES).map_err(|e| {
        if e.is_not_found() {
            Error::Input {
                message: format!("{location}: no such suite on this mirror"),
                hint: format!("check `suites` in kiln.toml; {suite} may be misspelt or archived"),
            }
        } else {
            Error::Http(e)
        }
    })?;
    let release = parse_release(url, suite, &raw, keyring_path).map_err(|e| match e {
        Error::Signature { source, .. } => Error::Signature {
            url: location.clone(),
            source,
        },
        other => other,
    })?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    check_current(&release, &location, recorded, now)?;
    Ok(release)
}

/// The freshness checks of [`fetch_release`] at time `now` (seconds since the epoch).
pub fn check_current(release: &Release, location: &str, recorded: Option<&Snapshot>, now: i64) -> Result<(), Error> {
    let refuse = |message: String, hint: &str| Error::Input {
        message: format!("{location}: {message}"),
        hint: hint.to_string(),
    };
    let replay = "the mirror is stale or replaying an old Release; use another mirror or try again later";
    let Some(date) = parse_release_date(&release.date) else {
        return Err(refuse(
            format!("the signed Release has no valid Date ({:?})", release.date),
            "kiln needs the archive's Date to refuse replayed Releases; use a mirror of a Debian-style archive",
        ));
    };
    if let Some(until) = release.valid_until {
        if until < now {
            return Err(refuse(
                format!(
                    "the signed Release expired at {} (Valid-Until)",
                    kiln_oci::image::rfc3339(until)
                ),
                replay,
            ));
        }
    } else if !release.valid_until_text.is_empty() {
        return Err(refuse(
            format!("the signed Valid-Until {:?} is not a date", release.valid_until_text),
            "the archive's Release file is malformed; use another mirror",
        ));
    }
    let Some(rec) = recorded else { return Ok(()) };
    if let Some(old) = parse_release_date(&rec.date)
        && date < old
    {
        return Err(refuse(
            format!(
                "the signed Release is dated {}, older than the {} recorded in kiln.lock (a replayed InRelease)",
                kiln_oci::image::rfc3339(date),
                kiln_oci::image::rfc3339(old)
            ),
            replay,
        ));
    }
    if !rec.valid_until.is_empty() && release.valid_until.is_none() {
        return Err(refuse(
            "the signed Release has no Valid-Until, but the one recorded in kiln.lock had one".into(),
            replay,
        ));
    }
    Ok(())
}

/// Verifies and parses InRelease bytes.
/// The signed `Suite` or `Codename` must be the suite that was asked for, so a mirror
/// cannot serve one suite's Release (validly signed by the same key) for another's.
pub fn parse_release(url: &str, suite: &str, raw: &[u8], keyring: &Path) -> Result<Release, Error> {
    let url = url.trim_end_matches('/');
    let location = format!("{url}/dists/{suite}/InRelease");
    let text = pgp::verify_cleartext(raw, keyring).map_err(|source| match source {
        pgp::PgpError::Keyring { path, message } => Error::Keyring { path, message },
        pgp::PgpError::Verifier(message) => Error::Verifier { message },
        source => Error::Signature {
            url: location.clone(),
            source,
        },
    })?;
    let paras = control::parse(&text).map_err(|e| Error::Input {
        message: format!("{location}: {e}"),
        hint: "the mirror served a malformed Release file".into(),
    })?;
    let p = paras.first().cloned().unwrap_or_default();
    let (signed_suite, codename) = (p.get("Suite").unwrap_or(""), p.get("Codename").unwrap_or(""));
    if signed_suite != suite && codename != suite {
        return Err(Error::Input {
            message: format!(
                "{location}: the signed Release is for Suite {signed_suite:?}, Codename {codename:?}, not {suite:?} (a substituted InRelease)"
            ),
            hint: "the mirror serves another suite's Release under this name; use another mirror, or check `suites` in kiln.toml".into(),
        });
    }
    let mut files = BTreeMap::new();
    for line in p.get("SHA256").unwrap_or("").lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        if let [hash, size, path] = parts[..]
            && let Ok(size) = size.parse()
        {
            files.insert(path.to_string(), (size, hash.to_string()));
        }
    }
    Ok(Release {
        url: url.to_string(),
        suite: suite.to_string(),
        signed_suite: signed_suite.to_string(),
        codename: if codename.is_empty() { suite } else { codename }.to_string(),
        version: p.get("Version").unwrap_or("").to_string(),
        date: p.get("Date").unwrap_or("").to_string(),
        inrelease_sha256: hex::encode(Sha256::digest(raw)),
        by_hash: p.get("Acquire-By-Hash").is_some_and(|v| v.eq_ignore_ascii_case("yes")),
        files,
        valid_until: p.get("Valid-Until").and_then(parse_release_date),
        valid_until_text: p.get("Valid-Until").unwrap_or("").to_string(),
    })
}

/// Fetches (or takes from the cache) `COMPONENT/binary-ARCH/Packages` and returns its
/// stanzas, parsed while the index is decompressed (it is never held whole). Every byte is
/// checked against the InRelease hash.
pub fn fetch_packages(release: &Release, component: &str, arch: &str, cache: &Path) -> Result<Vec<Stanza>, Error> {
    let base = format!("{component}/binary-{arch}/Packages");
    let mut last = None;
    for ext in [".xz", ".gz", ""] {
        let rel = format!("{base}{ext}");
        let Some((size, sha)) = release.files.get(&rel) else {
            continue;
        };
        let cached = cache.join("indexes").join(format!("{sha}{ext}"));
        let data = match std::fs::read(&cached) {
            Ok(d) if hex::encode(Sha256::digest(&d)) == *sha => d,
            _ => {
                let dir = rel.rsplit_once('/').map_or("", |(d, _)| d);
                let location = if release.by_hash {
                    format!("{}/dists/{}/{dir}/by-hash/SHA256/{sha}", release.url, release.suite)
                } else {
                    format!("{}/dists/{}/{rel}", release.url, release.suite)
                };
                let d = match http::get_bytes(&location, *size) {
                    Ok(d) => d,
                    Err(http::HttpError::TooLarge { .. }) => {
                        return Err(Error::Input {
                            message: format!(
                                "{location}: the mirror sent more than the {size} bytes the signed InRelease gives"
                            ),
                            hint: "the mirror is inconsistent or being updated; run `kiln lock` again, or use another mirror".into(),
                        });
                    }
                    Err(e) => {
                        last = Some(Error::Http(e));
                        continue;
                    }
                };
                let got = hex::encode(Sha256::digest(&d));
                if got != *sha || d.len() as u64 != *size {
                    return Err(Error::Input {
                        message: format!(
                            "{location}: sha256 {got} ({} bytes) does not match the signed InRelease ({sha}, {size} bytes)",
                            d.len()
                        ),
                        hint: "the mirror is inconsistent or being updated; run `kiln lock` again".into(),
                    });
                }
                write_cache(&cached, &d)?;
                d
            }
        };
        return read_packages(&data, ext).map_err(|e| Error::Input {
            message: format!("{}/dists/{}/{rel}: {e}", release.url, release.suite),
            hint: if e.kind() == std::io::ErrorKind::FileTooLarge {
                "the signed index is a decompression bomb or not Debian's; use another mirror".into()
            } else {
                "the index cannot be decompressed; delete the cache and retry".into()
            },
        });
    }
    Err(last.unwrap_or_else(|| Error::Input {
        message: format!(
            "{}/dists/{}: InRelease lists no {base}(.xz|.gz)",
            release.url, release.suite
        ),
        hint: format!("check that component {component:?} and architecture {arch:?} exist in this suite"),
    }))
}

fn write_cache(path: &Path, data: &[u8]) -> Result<(), Error> {
    let dir = path.parent().expect("cache file has a parent");
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    kiln_oci::store::atomic_write(dir, path, data).map_err(|e| Error::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// The largest Packages index kiln reads, decompressed (Debian's largest, sid main amd64,
/// was 62 MiB on 2026-12-05). A bigger one is refused once 256 MiB are read, never read to
/// its end.
pub const MAX_PACKAGES_BYTES: u64 = 256 << 20;

/// The longest line kiln reads from a Packages index (the longest in Debian's, a `Provides`
/// of a Rust library, are tens of KiB), so a bomb without newlines is refused as it is read.
const MAX_PACKAGES_LINE: u64 = 16 << 20;

/// Decompresses a Packages index (`ext` is `.xz`, `.gz` or empty) and parses it as it goes.
fn read_packages(data: &[u8], ext: &str) -> std::io::Result<Vec<Stanza>> {
    let reader: Box<dyn Read + '_> = match ext {
        ".xz" => Box::new(xz2::read::XzDecoder::new(data)),
        ".gz" => Box::new(flate2::read::GzDecoder::new(data)),
        _ => Box::new(data),
    };
    parse_packages_from(std::io::BufReader::with_capacity(1 << 16, reader), MAX_PACKAGES_BYTES)
}

/// Parses a Packages index from a reader, a line at a time, refusing it (`FileTooLarge`)
/// once more than `limit` bytes or a line longer than 16 MiB are read. A run of blank lines
/// is skipped in one step, so a bomb of newlines costs no more than its bytes.
pub fn parse_packages_from(mut reader: impl BufRead, limit: u64) -> std::io::Result<Vec<Stanza>> {
    let too_large = |what: String| std::io::Error::new(std::io::ErrorKind::FileTooLarge, what);
    let mut parser = PackagesParser::default();
    let mut line: Vec<u8> = Vec::new();
    let mut total = 0u64;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        let used = if line.is_empty() && buf[0] == b'\n' {
            // Blank lines: one ends the stanza, the rest change nothing.
            parser.line("");
            buf.iter().position(|b| *b != b'\n').unwrap_or(buf.len())
        } else if let Some(end) = buf.iter().position(|b| *b == b'\n') {
            line.extend_from_slice(&buf[..end]);
            parser.line(utf8(&line)?);
            line.clear();
            end + 1
        } else {
            line.extend_from_slice(buf);
            buf.len()
        };
        reader.consume(used);
        total += used as u64;
        if total > limit {
            return Err(too_large(format!(
                "decompresses to more than {} MiB, the most kiln reads for a Packages index",
                limit >> 20
            )));
        }
        if line.len() as u64 > MAX_PACKAGES_LINE {
            return Err(too_large(format!(
                "has a line longer than {} MiB; it is not a Debian index",
                MAX_PACKAGES_LINE >> 20
            )));
        }
    }
    if !line.is_empty() {
        parser.line(utf8(&line)?);
    }
    Ok(parser.finish())
}

fn utf8(line: &[u8]) -> std::io::Result<&str> {
    std::str::from_utf8(line).map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "is not UTF-8 text"))
}

/// The fields of a Packages stanza kiln uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stanza {
    /// Package name.
    pub package: String,
    /// Version.
    pub version: String,
    /// Architecture (a real one or `all`).
    pub architecture: String,
    /// Source package name (defaults to `package`).
    pub source: String,
    /// Source version (defaults to `version`).
    pub source_version: String,
    /// `Pre-Depends` then `Depends`.
    pub depends: String,
    /// `Provides`.
    pub provides: String,
    /// `Conflicts` and `Breaks`.
    pub conflicts: String,
    /// `Multi-Arch`.
    pub multi_arch: String,
    /// `Essential: yes`.
    pub essential: bool,
    /// `Priority` (required, important, standard, optional, extra).
    pub priority: String,
    /// Path of the .deb under the mirror.
    pub filename: String,
    /// Size of the .deb.
    pub size: u64,
    /// sha256 of the .deb.
    pub sha256: String,
}

/// Parses a Packages index into stanzas, keeping only the fields the resolver needs (an
/// index is tens of megabytes; descriptions are skipped without copying).
pub fn parse_packages(text: &str) -> Vec<Stanza> {
    let mut parser = PackagesParser::default();
    for line in text.lines() {
        parser.line(line);
    }
    parser.finish()
}

/// The state of a Packages parse: the stanzas so far and the one being read.
#[derive(Default)]
struct PackagesParser {
    out: Vec<Stanza>,
    cur: Stanza,
    depends: String,
    pre: String,
    breaks: String,
    /// The relation field a continuation line belongs to (`Depends` or `Pre-Depends`).
    last_field: &'static str,
}

impl PackagesParser {
    /// Ends the current stanza (a blank line or the end of the index).
    fn flush(&mut self) {
        let mut s = std::mem::take(&mut self.cur);
        let (pre, depends, breaks) = (
            std::mem::take(&mut self.pre),
            std::mem::take(&mut self.depends),
            std::mem::take(&mut self.breaks),
        );
        if s.package.is_empty() {
            return;
        }
        s.depends = join_relations(&pre, &depends);
        if !breaks.is_empty() {
            s.conflicts = join_relations(&s.conflicts, &breaks);
        }
        if s.source.is_empty() {
            s.source = s.package.clone();
        }
        if s.source_version.is_empty() {
            s.source_version = s.version.clone();
        }
        self.out.push(s);
    }

    /// Takes one line (without its newline).
    fn line(&mut self, line: &str) {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            self.flush();
            return;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            // Continuations only matter for relation fields (rarely folded).
            match self.last_field {
                "Depends" => self.depends.push_str(line),
                "Pre-Depends" => self.pre.push_str(line),
                _ => {}
            }
            return;
        }
        let Some((k, v)) = line.split_once(':') else { return };
        let v = v.trim();
        self.last_field = "";
        let cur = &mut self.cur;
        match k {
            "Package" => cur.package = v.to_string(),
            "Version" => cur.version = v.to_string(),
            "Architecture" => cur.architecture = v.to_string(),
            "Source" => match v.split_once(' ') {
                Some((s, ver)) => {
                    cur.source = s.to_string();
                    cur.source_version = ver.trim_matches(|c| c == '(' || c == ')' || c == ' ').to_string();
                }
                None => cur.source = v.to_string(),
            },
            "Depends" => {
                self.depends.push_str(v);
                self.last_field = "Depends";
            }
            "Pre-Depends" => {
                self.pre.push_str(v);
                self.last_field = "Pre-Depends";
            }
            "Provides" => cur.provides = v.to_string(),
            "Conflicts" => cur.conflicts = v.to_string(),
            "Breaks" => self.breaks.push_str(v),
            "Multi-Arch" => cur.multi_arch = v.to_string(),
            "Essential" => cur.essential = v == "yes",
            "Priority" => cur.priority = v.to_string(),
            "Filename" => cur.filename = v.to_string(),
            "Size" => cur.size = v.parse().unwrap_or(0),
            "SHA256" => cur.sha256 = v.to_string(),
            _ => {}
        }
    }

    fn finish(mut self) -> Vec<Stanza> {
        self.flush();
        self.out
    }
}

/// `a, b`, leaving out an empty side.
fn join_relations(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}, {b}"),
    }
}

/// Where kiln keeps downloaded indexes and .debs: `<store>/kiln/debian`.
pub fn cache_dir(store_meta: &Path) -> PathBuf {
    store_meta.join("debian")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_dates() {
        assert_eq!(parse_release_date("Thu, 01 Jan 1970 00:00:00 UTC"), Some(0));
        assert_eq!(parse_release_date("Tue, 14 Nov 2023 22:13:20 UTC"), Some(1_700_000_000));
        assert_eq!(parse_release_date("Tue, 29 Feb 2000 00:00:00 UTC"), Some(951_782_400));
        assert_eq!(parse_release_date("garbage"), None);
    }

    #[test]
    fn packages_stanzas() {
        let text = "Package: libfoo1\nSource: foo (1.2-1)\nVersion: 1.2-1+b1\nArchitecture: amd64\nPre-Depends: libc6 (>= 2.34)\nDepends: libbar,\n baz | qux\nBreaks: old (<< 1)\nDescription: x\n long\nFilename: pool/main/f/foo/libfoo1_1.2-1+b1_amd64.deb\nSize: 100\nSHA256: ab\n\nPackage: base-files\nVersion: 12\nArchitecture: amd64\nEssential: yes\n";
        let s = parse_packages(text);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].source, "foo");
        assert_eq!(s[0].source_version, "1.2-1");
        assert_eq!(s[0].depends, "libc6 (>= 2.34), libbar, baz | qux");
        assert_eq!(s[0].conflicts, "old (<< 1)");
        assert_eq!(s[0].size, 100);
        assert!(s[1].essential);
        assert_eq!(s[1].source, "base-files");
        // Read from a stream (with CRLF line ends), the same stanzas.
        let crlf = text.replace('\n', "\r\n");
        assert_eq!(parse_packages_from(crlf.as_bytes(), 1 << 20).unwrap(), s);
    }

    #[test]
    fn packages_limits() {
        let text = "Package: a\nVersion: 1\n\n".repeat(100);
        assert_eq!(
            parse_packages_from(text.as_bytes(), text.len() as u64).unwrap().len(),
            100
        );
        let e = parse_packages_from(text.as_bytes(), text.len() as u64 - 1).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::FileTooLarge);
        assert!(e.to_string().contains("decompresses to more than"), "{e}");
        // One line longer than 16 MiB: refused before its end.
        let long = std::io::Read::chain(&b"Package: "[..], std::io::repeat(b'a').take(17 << 20));
        let e = parse_packages_from(std::io::BufReader::new(long), 64 << 20).unwrap_err();
        assert!(e.to_string().contains("a line longer than 16 MiB"), "{e}");
    }
}
