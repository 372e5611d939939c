//! The typed lock: every input of a build that could move, pinned, in one TOML format.
//!
//! A Dockerfile build pins its base and `COPY --from` images (name and platform → manifest
//! digest) in `Dockerfile.lock`; a `kiln.toml` build pins its Debian suites and packages
//! (name, version, architecture, sha256, source) in `kiln.lock`. Both are a [`Lock`], read
//! with [`Lock::parse`] and written with [`Lock::to_text`]; the files themselves are read and
//! written by kiln-build (this crate does no I/O).
//!
//! A lock comes from outside (a repository, a pull request), so [`Lock::parse`] checks every
//! value before anything uses it: digests and sha256 sums are lowercase hex of the right
//! length, package names, versions and architectures use Debian's characters, pool paths are
//! relative with no `..`, URLs are http(s). A crafted lock cannot make kiln read, write or
//! delete anything outside its cache (issue 12.9).

use std::collections::{BTreeMap, BTreeSet};

use kiln_oci::Digest;
use serde::{Deserialize, Serialize};

/// The lock format version this kiln writes and reads.
pub const LOCK_VERSION: u32 = 1;

/// A whole lock file.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Lock {
    /// Format version.
    pub version: u32,
    /// For a kiln.toml lock: the spec's resolution hash, so a lock made for other sources or
    /// packages is noticed. Empty for a Dockerfile lock.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub spec_hash: String,
    /// Pinned images (Dockerfile `FROM` and `COPY --from`), sorted by name then platform.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image: Vec<LockedImage>,
    /// The Debian suites as they were when locked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshot: Vec<Snapshot>,
    /// Debian packages, sorted by architecture then name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub package: Vec<LockedPackage>,
    /// Files a Dockerfile `ADD`s from a URL, sorted by URL.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub url: Vec<LockedUrl>,
    /// Git repositories a Dockerfile `ADD`s, sorted by URL.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub git: Vec<LockedGit>,
}

/// A URL `ADD`ed by a Dockerfile, pinned to the sha256 of its content.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LockedUrl {
    /// The URL as written in the Dockerfile (after ARG expansion).
    pub url: String,
    /// sha256 of what it served.
    pub digest: Digest,
}

/// A git repository `ADD`ed by a Dockerfile, its ref pinned to a commit.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LockedGit {
    /// The source as written (`https://host/repo.git#ref`), after ARG expansion.
    pub url: String,
    /// The commit the ref named.
    pub commit: String,
}

/// One image name, for one platform, pinned to a manifest digest.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LockedImage {
    /// The name as written in the Dockerfile (after ARG expansion).
    pub name: String,
    /// `os/arch[/variant]` it was resolved for.
    pub platform: String,
    /// The manifest digest it resolved to.
    pub digest: Digest,
}

/// One Debian suite's Release at lock time.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Snapshot {
    /// Mirror URL.
    pub url: String,
    /// Suite.
    pub suite: String,
    /// Codename.
    pub codename: String,
    /// Release version.
    pub release: String,
    /// Release date (the signed `Date`): a later `kiln lock` refuses an InRelease older
    /// than this, so a mirror cannot replay an old, validly signed one.
    pub date: String,
    /// The signed `Valid-Until`, where the archive sets one: a later `kiln lock` then
    /// requires it again (and refuses an expired one).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub valid_until: String,
    /// sha256 of the verified InRelease.
    pub inrelease_sha256: String,
}

/// One Debian package for one image architecture.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LockedPackage {
    /// Package name.
    pub name: String,
    /// Version.
    pub version: String,
    /// The image architecture this entry belongs to.
    pub arch: String,
    /// The package's own Architecture (`all` or `arch`).
    pub package_arch: String,
    /// Source package.
    pub source: String,
    /// Source version.
    pub source_version: String,
    /// Mirror base URL.
    pub url: String,
    /// Path below the mirror (`pool/…`).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// sha256 of the .deb (lowercase hex).
    pub sha256: String,
    /// Locked packages it depends on (decides layer order).
    #[serde(default)]
    pub depends: Vec<String>,
}

/// Why a lock cannot be used, located at a line of its text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message} (hint: {hint})")]
pub struct LockError {
    /// 1-based line of the offending value (1 when unknown).
    pub line: usize,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub hint: String,
}

const REGENERATE: &str =
    "a lock is generated: recreate it with `kiln lock` (`--update` for kiln.toml) and review the diff";

impl Lock {
    /// An empty lock of the current version.
    pub fn new() -> Lock {
        Lock {
            version: LOCK_VERSION,
            spec_hash: String::new(),
            image: vec![],
            snapshot: vec![],
            package: vec![],
            url: vec![],
            git: vec![],
        }
    }

    /// Parses and validates a lock's text.
    pub fn parse(text: &str) -> Result<Lock, LockError> {
        let lock: Lock = toml::from_str(text).map_err(|e| LockError {
            line: e
                .span()
                .map_or(1, |s| text[..s.start.min(text.len())].matches('\n').count() + 1),
            message: e.message().trim().replace('\n', " "),
            hint: REGENERATE.into(),
        })?;
        lock.validate().map_err(|(at, message)| LockError {
            line: at.line_in(text),
            message,
            hint: REGENERATE.into(),
        })?;
        Ok(lock)
    }

    /// The lock as TOML, under a header naming the file it was made from (`kiln.toml`,
    /// `Dockerfile`), so a reader knows it is generated.
    pub fn to_text(&self, made_from: &str) -> String {
        let body = toml::to_string(self).expect("locks serialise");
        let update = if self.spec_hash.is_empty() { "" } else { " --update" };
        format!("# Generated by `kiln lock` from {made_from}. Do not edit: run `kiln lock{update}`.\n{body}")
    }

    /// The packages of one architecture.
    pub fn for_arch<'a>(&'a self, arch: &'a str) -> impl Iterator<Item = &'a LockedPackage> + 'a {
        self.package.iter().filter(move |p| p.arch == arch)
    }

    /// The digest an image name is pinned to for a platform (`os/arch[/variant]`).
    pub fn image(&self, name: &str, platform: &str) -> Option<&Digest> {
        self.image
            .iter()
            .find(|i| i.name == name && i.platform == platform)
            .map(|i| &i.digest)
    }

    /// Pins `name` for `platform`, replacing an older pin of the same pair, keeping the list
    /// sorted so the file only changes where a pin did.
    pub fn pin_image(&mut self, name: &str, platform: &str, digest: Digest) {
        self.image.retain(|i| !(i.name == name && i.platform == platform));
        self.image.push(LockedImage {
            name: name.to_string(),
            platform: platform.to_string(),
            digest,
        });
        self.image
            .sort_by(|a, b| (&a.name, &a.platform).cmp(&(&b.name, &b.platform)));
    }

    /// The digest a URL is pinned to.
    pub fn url(&self, url: &str) -> Option<&Digest> {
        self.url.iter().find(|u| u.url == url).map(|u| &u.digest)
    }

    /// Pins a URL's content, replacing an older pin, keeping the list sorted.
    pub fn pin_url(&mut self, url: &str, digest: Digest) {
        self.url.retain(|u| u.url != url);
        self.url.push(LockedUrl {
            url: url.to_string(),
            digest,
        });
        self.url.sort_by(|a, b| a.url.cmp(&b.url));
    }

    /// The commit a git source (`repo#ref`) is pinned to.
    pub fn git(&self, url: &str) -> Option<&str> {
        self.git.iter().find(|g| g.url == url).map(|g| g.commit.as_str())
    }

    /// Pins a git source to a commit, replacing an older pin, keeping the list sorted.
    pub fn pin_git(&mut self, url: &str, commit: &str) {
        self.git.retain(|g| g.url != url);
        self.git.push(LockedGit {
            url: url.to_string(),
            commit: commit.to_string(),
        });
        self.git.sort_by(|a, b| a.url.cmp(&b.url));
    }

    fn validate(&self) -> Result<(), (At, String)> {
        if self.version != LOCK_VERSION {
            return Err((
                At::top("version"),
                format!(
                    "lock version {} is not supported (this kiln reads {LOCK_VERSION})",
                    self.version
                ),
            ));
        }
        if !self.spec_hash.is_empty() && !is_sha256_digest(&self.spec_hash) {
            return Err((
                At::top("spec-hash"),
                format!(
                    "spec-hash {:?} is not a sha256:<64 lowercase hex> digest",
                    self.spec_hash
                ),
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, img) in self.image.iter().enumerate() {
            validate_image(img).map_err(|(key, m)| (At::entry("image", i, key), m))?;
            if !seen.insert((&img.name, &img.platform)) {
                return Err((
                    At::entry("image", i, "name"),
                    format!("image {} ({}) is pinned twice", img.name, img.platform),
                ));
            }
        }
        for (i, s) in self.snapshot.iter().enumerate() {
            validate_snapshot(s).map_err(|(key, m)| (At::entry("snapshot", i, key), m))?;
        }
        self.validate_remote()?;
        let mut seen = BTreeSet::new();
        for (i, p) in self.package.iter().enumerate() {
            validate_package(p).map_err(|(key, m)| (At::entry("package", i, key), m))?;
            if !seen.insert((&p.arch, &p.name)) {
                return Err((
                    At::entry("package", i, "name"),
                    format!("package {} ({}) is locked twice", p.name, p.arch),
                ));
            }
        }
        Ok(())
    }
}

impl Lock {
    fn validate_remote(&self) -> Result<(), (At, String)> {
        let mut seen = BTreeSet::new();
        for (i, u) in self.url.iter().enumerate() {
            let ok = (u.url.starts_with("http://") || u.url.starts_with("https://"))
                && u.url.bytes().all(|b| b.is_ascii_graphic());
            if !ok {
                return Err((
                    At::entry("url", i, "url"),
                    format!("url {:?} is not an http(s) URL", u.url),
                ));
            }
            if !is_sha256_digest(&u.digest.to_string()) {
                return Err((
                    At::entry("url", i, "digest"),
                    format!("digest {} is not a sha256 digest", u.digest),
                ));
            }
            if !seen.insert(&u.url) {
                return Err((At::entry("url", i, "url"), format!("url {} is pinned twice", u.url)));
            }
        }
        let mut seen = BTreeSet::new();
        for (i, g) in self.git.iter().enumerate() {
            if g.url.is_empty() || !g.url.bytes().all(|b| b.is_ascii_graphic()) || g.url.starts_with('-') {
                return Err((
                    At::entry("git", i, "url"),
                    format!("git source {:?} is not a repository URL", g.url),
                ));
            }
            if !(is_lower_hex(&g.commit, 40) || is_lower_hex(&g.commit, 64)) {
                return Err((
                    At::entry("git", i, "commit"),
                    format!("commit {:?} is not a full lowercase hex commit id", g.commit),
                ));
            }
            if !seen.insert(&g.url) {
                return Err((
                    At::entry("git", i, "url"),
                    format!("git source {} is pinned twice", g.url),
                ));
            }
        }
        Ok(())
    }
}

impl Default for Lock {
    fn default() -> Self {
        Lock::new()
    }
}

/// How a new lock differs from an old one: (added, removed, changed), counting packages by
/// (architecture, name), images by (name, platform), and URLs and git sources by URL.
pub fn diff(old: &Lock, new: &Lock) -> (usize, usize, usize) {
    fn keyed(l: &Lock) -> BTreeMap<(String, String), String> {
        let pkgs = l
            .package
            .iter()
            .map(|p| ((p.arch.clone(), p.name.clone()), p.version.clone()));
        let imgs = l
            .image
            .iter()
            .map(|i| ((i.platform.clone(), i.name.clone()), i.digest.to_string()));
        let urls = l
            .url
            .iter()
            .map(|u| (("url".into(), u.url.clone()), u.digest.to_string()));
        let gits = l.git.iter().map(|g| (("git".into(), g.url.clone()), g.commit.clone()));
        pkgs.chain(imgs).chain(urls).chain(gits).collect()
    }
    let (o, n) = (keyed(old), keyed(new));
    let added = n.keys().filter(|k| !o.contains_key(*k)).count();
    let removed = o.keys().filter(|k| !n.contains_key(*k)).count();
    let changed = n.iter().filter(|(k, v)| o.get(*k).is_some_and(|ov| ov != *v)).count();
    (added, removed, changed)
}

/// Where in the text a bad value sits: a top-level key, or a key of the nth `[[table]]`.
struct At {
    table: Option<&'static str>,
    index: usize,
    key: &'static str,
}

impl At {
    fn top(key: &'static str) -> At {
        At {
            table: None,
            index: 0,
            key,
        }
    }

    fn entry(table: &'static str, index: usize, key: &'static str) -> At {
        At {
            table: Some(table),
            index,
            key,
        }
    }

    /// The 1-based line of the key (the table's header line, or 1, when it is not found).
    fn line_in(&self, text: &str) -> usize {
        let is_key = |l: &str| {
            l.trim_start()
                .strip_prefix(self.key)
                .is_some_and(|r| r.trim_start().starts_with('='))
        };
        let mut in_block = self.table.is_none();
        let mut block_line = 1;
        let mut n = 0;
        for (i, line) in text.lines().enumerate() {
            let t = line.trim();
            if t.starts_with("[[") {
                if in_block && self.table.is_none() {
                    break;
                }
                in_block = false;
                if self.table.is_some_and(|tab| t == format!("[[{tab}]]")) {
                    if n == self.index {
                        in_block = true;
                        block_line = i + 1;
                    }
                    n += 1;
                }
                continue;
            }
            if in_block && is_key(line) {
                return i + 1;
            }
        }
        block_line
    }
}

type Invalid = (&'static str, String);

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn is_sha256_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|h| is_lower_hex(h, 64))
}

fn chars_ok(s: &str, extra: &[u8]) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
}

/// A Debian package name (policy 5.6.1, kept loose on length): lowercase letters, digits,
/// `+`, `-`, `.`, starting with a letter or digit.
fn is_package_name(s: &str) -> bool {
    s.bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b))
}

/// A Debian version (policy 5.6.12): letters, digits and `.+~:-`.
fn is_version(s: &str) -> bool {
    chars_ok(s, b".+~:-")
}

fn is_arch(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.is_empty()
}

fn is_url(s: &str) -> bool {
    (s.starts_with("http://") || s.starts_with("https://"))
        && s.bytes().all(|b| b.is_ascii_graphic())
        && !s.contains(['?', '#', '\\'])
}

/// A relative path below a mirror: no leading `/`, no empty, `.` or `..` component.
fn is_relative_path(s: &str) -> bool {
    chars_ok(s, b"._+~:%/-") && s.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

fn validate_image(img: &LockedImage) -> Result<(), Invalid> {
    if img.name.is_empty() || !img.name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(("name", format!("image name {:?} is not a reference", img.name)));
    }
    match crate::platform::parse(&img.platform) {
        Some(p) if crate::platform::format(&p) == img.platform => {}
        _ => {
            return Err((
                "platform",
                format!("platform {:?} is not os/arch[/variant] in normal form", img.platform),
            ));
        }
    }
    if !is_sha256_digest(&img.digest.to_string()) {
        return Err(("digest", format!("digest {} is not a sha256 digest", img.digest)));
    }
    Ok(())
}

fn validate_snapshot(s: &Snapshot) -> Result<(), Invalid> {
    if !is_url(&s.url) {
        return Err(("url", format!("url {:?} is not an http(s) URL", s.url)));
    }
    for (key, v) in [("suite", &s.suite), ("codename", &s.codename)] {
        if !is_relative_path(v) {
            return Err((key, format!("{key} {v:?} is not a suite name")));
        }
    }
    for (key, v) in [
        ("release", &s.release),
        ("date", &s.date),
        ("valid-until", &s.valid_until),
    ] {
        if v.chars().any(char::is_control) {
            return Err((key, format!("{key} {v:?} holds control characters")));
        }
    }
    if !is_lower_hex(&s.inrelease_sha256, 64) {
        return Err((
            "inrelease-sha256",
            format!(
                "inrelease-sha256 {:?} is not 64 lowercase hex characters",
                s.inrelease_sha256
            ),
        ));
    }
    Ok(())
}

fn validate_package(p: &LockedPackage) -> Result<(), Invalid> {
    for (key, v) in [("name", &p.name), ("source", &p.source)] {
        if !is_package_name(v) {
            return Err((key, format!("{key} {v:?} is not a Debian package name")));
        }
    }
    for (key, v) in [("version", &p.version), ("source-version", &p.source_version)] {
        if !is_version(v) {
            return Err((key, format!("{key} {v:?} of {} is not a Debian version", p.name)));
        }
    }
    for (key, v) in [("arch", &p.arch), ("package-arch", &p.package_arch)] {
        if !is_arch(v) {
            return Err((key, format!("{key} {v:?} of {} is not a Debian architecture", p.name)));
        }
    }
    if !is_url(&p.url) {
        return Err(("url", format!("url {:?} of {} is not an http(s) URL", p.url, p.name)));
    }
    if !is_relative_path(&p.path) {
        return Err((
            "path",
            format!(
                "path {:?} of {} is not a relative path below the mirror",
                p.path, p.name
            ),
        ));
    }
    if !is_lower_hex(&p.sha256, 64) {
        return Err((
            "sha256",
            format!("sha256 {:?} of {} is not 64 lowercase hex characters", p.sha256, p.name),
        ));
    }
    if let Some(d) = p.depends.iter().find(|d| !is_package_name(d)) {
        return Err(("depends", format!("depends {d:?} of {} is not a package name", p.name)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "3eb1ea6d85488f488cc2a163b98ad640ef88cee4c79287cf14e361aaf6206f47";

    fn package_lock(sha256: &str, path: &str) -> String {
        format!(
            "version = 1\nspec-hash = \"sha256:{SHA}\"\n\n[[package]]\nname = \"base-files\"\nversion = \"12.4+deb12u15\"\narch = \"amd64\"\npackage-arch = \"amd64\"\nsource = \"base-files\"\nsource-version = \"12.4+deb12u15\"\nurl = \"http://deb.debian.org/debian\"\npath = \"{path}\"\nsize = 70936\nsha256 = \"{sha256}\"\ndepends = []\n"
        )
    }

    #[test]
    fn kiln_lock_format_reads_and_round_trips() {
        let text = package_lock(SHA, "pool/main/b/base-files/base-files_12.4+deb12u15_amd64.deb");
        let lock = Lock::parse(&text).unwrap();
        assert_eq!(lock.package[0].sha256, SHA);
        let again = lock.to_text("kiln.toml");
        assert!(
            again.starts_with("# Generated by `kiln lock` from kiln.toml. Do not edit: run `kiln lock --update`.\n")
        );
        assert_eq!(Lock::parse(&again).unwrap(), lock);
        assert!(!again.contains("[[image]]"), "{again}");
    }

    #[test]
    fn crafted_values_are_refused_with_their_line() {
        for (sha, path, needle) in [
            (
                "../../../../tmp/victim",
                "pool/a.deb",
                "sha256 \"../../../../tmp/victim\"",
            ),
            ("/tmp/victim", "pool/a.deb", "not 64 lowercase hex"),
            (&SHA.to_uppercase(), "pool/a.deb", "not 64 lowercase hex"),
            (SHA, "../../etc/passwd", "not a relative path"),
            (SHA, "/etc/passwd", "not a relative path"),
            (SHA, "pool//a.deb", "not a relative path"),
        ] {
            let e = Lock::parse(&package_lock(sha, path)).unwrap_err();
            assert!(e.message.contains(needle), "{e}");
            let want = if needle.contains("path") { 12 } else { 14 };
            assert_eq!(e.line, want, "{e}");
        }
        let text = package_lock(SHA, "pool/a.deb").replace("name = \"base-files\"", "name = \"../x\"");
        assert!(
            Lock::parse(&text)
                .unwrap_err()
                .message
                .contains("not a Debian package name")
        );
        let text = package_lock(SHA, "pool/a.deb").replace("http://deb.debian.org/debian", "file:///etc");
        assert!(Lock::parse(&text).unwrap_err().message.contains("http(s)"));
        let text = package_lock(SHA, "pool/a.deb").replace("version = 1\n", "version = 2\n");
        assert_eq!(Lock::parse(&text).unwrap_err().line, 1);
        let e = Lock::parse("version = 1\nspec-hash = 3\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
    }

    #[test]
    fn the_examples_committed_locks_still_read() {
        for text in [
            include_str!("../../../examples/debian-static/kiln.lock"),
            include_str!("../../../examples/debian-python/kiln.lock"),
        ] {
            let lock = Lock::parse(text).unwrap();
            assert!(!lock.package.is_empty() && !lock.snapshot.is_empty());
            assert_eq!(
                lock.to_text("kiln.toml"),
                text,
                "a rewrite keeps the file byte for byte"
            );
        }
    }

    #[test]
    fn urls_and_git_sources_pin() {
        let mut lock = Lock::new();
        let d = Digest::sha256_of(b"file");
        lock.pin_url("https://example.org/b.tar.gz", d.clone());
        lock.pin_url("http://127.0.0.1:8000/a", d.clone());
        lock.pin_git("https://example.org/r.git#main", &"ab".repeat(20));
        let text = lock.to_text("Dockerfile");
        assert!(text.contains("[[url]]") && text.contains("[[git]]"), "{text}");
        let back = Lock::parse(&text).unwrap();
        assert_eq!(back, lock);
        assert_eq!(back.url[0].url, "http://127.0.0.1:8000/a");
        assert_eq!(back.url("https://example.org/b.tar.gz"), Some(&d));
        assert_eq!(
            back.git("https://example.org/r.git#main"),
            Some("ab".repeat(20).as_str())
        );
        let bad = text.replace(&"ab".repeat(20), "HEAD");
        assert!(Lock::parse(&bad).unwrap_err().message.contains("commit"));
        let bad = text.replace("http://127.0.0.1:8000/a", "file:///etc/passwd");
        assert!(Lock::parse(&bad).unwrap_err().message.contains("http(s)"));
        let mut newer = lock.clone();
        newer.pin_url("http://127.0.0.1:8000/a", Digest::sha256_of(b"other"));
        assert_eq!(diff(&lock, &newer), (0, 0, 1));
    }

    #[test]
    fn images_pin_per_platform() {
        let mut lock = Lock::new();
        let d = |c: char| -> Digest { format!("sha256:{}", c.to_string().repeat(64)).parse().unwrap() };
        lock.pin_image("reg:5000/base:1", "linux/arm64", d('b'));
        lock.pin_image("reg:5000/base:1", "linux/amd64", d('a'));
        lock.pin_image("reg:5000/base:1", "linux/amd64", d('c'));
        assert_eq!(lock.image.len(), 2);
        assert_eq!(lock.image("reg:5000/base:1", "linux/amd64"), Some(&d('c')));
        let text = lock.to_text("Dockerfile");
        assert!(text.starts_with("# Generated by `kiln lock` from Dockerfile. Do not edit: run `kiln lock`.\n"));
        assert!(!text.contains("spec-hash") && !text.contains("[[package]]"), "{text}");
        assert_eq!(Lock::parse(&text).unwrap(), lock);
        let bad = text.replace("linux/arm64", "linux/aarch64");
        let e = Lock::parse(&bad).unwrap_err();
        assert!(e.message.contains("normal form") && e.line == 11, "{e}");
        let mut old = lock.clone();
        old.pin_image("reg:5000/other:1", "linux/amd64", d('a'));
        lock.pin_image("reg:5000/base:1", "linux/amd64", d('e'));
        assert_eq!(diff(&old, &lock), (0, 1, 1));
    }
}
