//! Talking to a Debian archive: the signed InRelease, and the Packages indexes it names by
//! hash. Indexes are cached by their sha256, so a re-lock only downloads what changed.

use std::collections::BTreeMap;
use std::io::Read;
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

/// Fetches (or takes from the cache) `COMPONENT/binary-ARCH/Packages` and returns its text.
/// Every byte is checked against the InRelease hash.
pub fn fetch_packages(release: &Release, component: &str, arch: &str, cache: &Path) -> Result<String, Error> {
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
        return decompress(&data, ext).map_err(|e| Error::Input {
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

fn decompress(data: &[u8], ext: &str) -> std::io::Result<String> {
    let reader: Box<dyn Read + '_> = match ext {
        ".xz" => Box::new(xz2::read::XzDecoder::new(data)),
        ".gz" => Box::new(flate2::read::GzDecoder::new(data)),
        _ => Box::new(data),
    };
    let mut out = String::new();
    reader.take(MAX_PACKAGES_BYTES + 1).read_to_string(&mut out)?;
    if out.len() as u64 > MAX_PACKAGES_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!(
                "decompresses to more than {} MiB, the most kiln reads for a Packages index",
                MAX_PACKAGES_BYTES >> 20
            ),
        ));
    }
    Ok(out)
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
    let mut out = Vec::new();
    let mut cur = Stanza::default();
    let mut depends = String::new();
    let mut pre = String::new();
    let mut breaks = String::new();
    let mut last_field = "";
    let mut flush = |cur: &mut Stanza, depends: &mut String, pre: &mut String, breaks: &mut String| {
        if !cur.package.is_empty() {
            let mut s = std::mem::take(cur);
            s.depends = [pre.as_str(), depends.as_str()]
                .iter()
                .filter(|x| !x.is_empty())
                .cloned()
                .collect::<Vec<_>>()
                .join(", ");
            if !breaks.is_empty() {
                s.conflicts = [s.conflicts.as_str(), breaks.as_str()]
                    .iter()
                    .filter(|x| !x.is_empty())
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ");
            }
            if s.source.is_empty() {
                s.source = s.package.clone();
            }
            if s.source_version.is_empty() {
                s.source_version = s.version.clone();
            }
            out.push(s);
        }
        *cur = Stanza::default();
        depends.clear();
        pre.clear();
        breaks.clear();
    };
    for line in text.lines() {
        if line.is_empty() {
            flush(&mut cur, &mut depends, &mut pre, &mut breaks);
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            // Continuations only matter for relation fields (rarely folded).
            match last_field {
                "Depends" => depends.push_str(line),
                "Pre-Depends" => pre.push_str(line),
                _ => {}
            }
            continue;
        }
        let Some((k, v)) = line.split_once(':') else { continue };
        let v = v.trim();
        last_field = "";
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
                depends.push_str(v);
                last_field = "Depends";
            }
            "Pre-Depends" => {
                pre.push_str(v);
                last_field = "Pre-Depends";
            }
            "Provides" => cur.provides = v.to_string(),
            "Conflicts" => cur.conflicts = v.to_string(),
            "Breaks" => breaks.push_str(v),
            "Multi-Arch" => cur.multi_arch = v.to_string(),
            "Essential" => cur.essential = v == "yes",
            "Priority" => cur.priority = v.to_string(),
            "Filename" => cur.filename = v.to_string(),
            "Size" => cur.size = v.parse().unwrap_or(0),
            "SHA256" => cur.sha256 = v.to_string(),
            _ => {}
        }
    }
    flush(&mut cur, &mut depends, &mut pre, &mut breaks);
    out
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
    }
}
