//! `kiln.toml`: what an image is made of. Parsed strictly: an unknown or misspelt key is an
//! error at its file:line with a suggestion, never silently ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The default mirror.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
/// The default keyring (Debian's `debian-archive-keyring` package).
pub const DEFAULT_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
/// The default non-root account's uid and gid (distroless' `nonroot`).
pub const NONROOT_ID: u32 = 65532;

/// A whole `kiln.toml`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Spec {
    /// Debian archives to take packages from, in priority order (`[[source]]`).
    pub source: Vec<Source>,
    /// Architectures to build (Debian names: amd64, arm64, armhf, i386, ppc64el, riscv64, s390x).
    pub architectures: Vec<String>,
    /// Packages to install (`name` or `name=version`), with their dependency closure.
    #[serde(default)]
    pub packages: Vec<String>,
    /// Packages treated as present without being installed. For dependencies that only
    /// maintainer scripts use (debconf), which never run in an image.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Users and groups.
    #[serde(default)]
    pub accounts: Accounts,
    /// Files, directories and symlinks added on top of the packages.
    #[serde(default)]
    pub files: Vec<FileSpec>,
    /// The image's run configuration.
    #[serde(default)]
    pub image: ImageSpec,
}

/// One Debian archive.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Source {
    /// Mirror base URL (the directory holding `dists/` and `pool/`).
    #[serde(default = "default_mirror")]
    pub url: String,
    /// Suites (or codenames): bookworm, bookworm-updates, bookworm-security…
    pub suites: Vec<String>,
    /// Components.
    #[serde(default = "default_components")]
    pub components: Vec<String>,
    /// OpenPGP keyring the InRelease files must be signed with.
    #[serde(default = "default_keyring")]
    pub keyring: PathBuf,
}

fn default_mirror() -> String {
    DEFAULT_MIRROR.to_string()
}
fn default_components() -> Vec<String> {
    vec!["main".to_string()]
}
fn default_keyring() -> PathBuf {
    PathBuf::from(DEFAULT_KEYRING)
}

/// Users and groups written to /etc/passwd and /etc/group.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Accounts {
    /// The user the image runs as (a name from `users`, or `root`). Default: `nonroot`.
    pub run_as: Option<String>,
    /// Users; the `nonroot` user (65532) is always there unless redefined.
    #[serde(default)]
    pub users: Vec<User>,
    /// Extra groups.
    #[serde(default)]
    pub groups: Vec<Group>,
}

/// A user account.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct User {
    /// Login name.
    pub name: String,
    /// Numeric id.
    pub uid: u32,
    /// Primary group id (default: the uid; a group of the same name is made if missing).
    pub gid: Option<u32>,
    /// Home directory (default /home/NAME; created, owned by the user, mode 0700).
    pub home: Option<String>,
    /// Login shell (default /sbin/nologin).
    pub shell: Option<String>,
}

/// A group.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Group {
    /// Group name.
    pub name: String,
    /// Numeric id.
    pub gid: u32,
    /// Member user names.
    #[serde(default)]
    pub members: Vec<String>,
}

/// A file, directory or symlink added to the image's last layer.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileSpec {
    /// Absolute path in the image.
    pub path: String,
    /// A file from the context (relative to the kiln.toml directory). Makes a regular file.
    pub src: Option<String>,
    /// Makes a symlink to this target.
    pub symlink: Option<String>,
    /// Permission bits (write them as TOML octal: `0o755`). Default 0o644 for files, 0o755
    /// for directories.
    pub mode: Option<u32>,
    /// Owner uid.
    #[serde(default)]
    pub uid: u32,
    /// Owner gid.
    #[serde(default)]
    pub gid: u32,
}

/// Image configuration (OCI config fields).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ImageSpec {
    /// Entrypoint.
    pub entrypoint: Option<Vec<String>>,
    /// Default arguments.
    pub cmd: Option<Vec<String>>,
    /// Environment (added to PATH's default).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory.
    pub workdir: Option<String>,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Stop signal (e.g. SIGTERM).
    pub stop_signal: Option<String>,
}

/// A kiln.toml that cannot be used, located at file:line:col with a hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// The spec file.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// What is wrong.
    pub message: String,
    /// What to do.
    pub hint: String,
}

impl std::fmt::Display for SpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Line 0: the file itself could not be read.
        if self.line == 0 {
            write!(f, "{}: {} (hint: {})", self.file, self.message, self.hint)
        } else {
            write!(
                f,
                "{}:{}:{}: {} (hint: {})",
                self.file, self.line, self.col, self.message, self.hint
            )
        }
    }
}

impl std::error::Error for SpecError {}

const KNOWN_ARCHES: &[&str] = &[
    "amd64", "arm64", "armel", "armhf", "i386", "mips64el", "ppc64el", "riscv64", "s390x",
];

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn hint_for(message: &str) -> String {
    // serde: "unknown field `pakages`, expected one of `source`, `architectures`, …"
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((bad, expected)) = rest.split_once('`')
    {
        let choices: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        if let Some(best) = choices.iter().min_by_key(|c| strsim::levenshtein(bad, c))
            && strsim::levenshtein(bad, best) <= 3
        {
            return format!("did you mean `{best}`? see docs/kiln-toml.md");
        }
        return format!("valid keys here: {}; see docs/kiln-toml.md", choices.join(", "));
    }
    if message.starts_with("missing field") {
        return "add it; see docs/kiln-toml.md for a complete example".into();
    }
    "see docs/kiln-toml.md for the format".into()
}

impl Spec {
    /// Reads and checks a kiln.toml.
    pub fn load(path: &Path) -> Result<Spec, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|e| SpecError {
            file: path.display().to_string(),
            line: 0,
            col: 0,
            message: e.to_string(),
            hint: "pass the path of a kiln.toml (`kiln build -f kiln.toml`)".into(),
        })?;
        Spec::parse(&path.display().to_string(), &text)
    }

    /// Parses and checks kiln.toml text; `file` is used in messages.
    pub fn parse(file: &str, text: &str) -> Result<Spec, SpecError> {
        let spec: Spec = toml::from_str(text).map_err(|e| {
            let (line, col) = e.span().map_or((1, 1), |s| line_col(text, s.start));
            let message = e.message().trim().replace('\n', " ");
            SpecError {
                file: file.to_string(),
                line,
                col,
                hint: hint_for(&message),
                message,
            }
        })?;
        // Semantic checks, located at the key that holds the bad value.
        let at = |key: &str, message: String, hint: &str| {
            let off = text.find(key).unwrap_or(0);
            let (line, col) = line_col(text, off);
            SpecError {
                file: file.to_string(),
                line,
                col,
                message,
                hint: hint.to_string(),
            }
        };
        if spec.source.is_empty() {
            return Err(at(
                "",
                "no [[source]]".into(),
                "add [[source]] with suites = [\"bookworm\"]",
            ));
        }
        for s in &spec.source {
            if s.suites.is_empty() {
                return Err(at(
                    "suites",
                    "a [[source]] has no suites".into(),
                    "suites = [\"bookworm\", \"bookworm-updates\"]",
                ));
            }
            if !(s.url.starts_with("http://") || s.url.starts_with("https://")) {
                return Err(at(
                    "url",
                    format!("source url {:?} is not http:// or https://", s.url),
                    "give the mirror's base URL, e.g. http://deb.debian.org/debian (the signed InRelease protects every byte either way)",
                ));
            }
        }
        if spec.architectures.is_empty() {
            return Err(at(
                "architectures",
                "architectures is empty".into(),
                "architectures = [\"amd64\", \"arm64\"]",
            ));
        }
        for a in &spec.architectures {
            if !KNOWN_ARCHES.contains(&a.as_str()) {
                return Err(at(
                    "architectures",
                    format!("unknown architecture {a:?}"),
                    &format!("use Debian architecture names: {}", KNOWN_ARCHES.join(", ")),
                ));
            }
        }
        if spec.packages.is_empty() {
            return Err(at(
                "packages",
                "packages is empty".into(),
                "packages = [\"base-files\"]",
            ));
        }
        for f in &spec.files {
            if !f.path.starts_with('/') || f.path.split('/').any(|c| c == "..") {
                return Err(at(
                    &f.path,
                    format!("files: path {:?} must be absolute and without `..`", f.path),
                    "path = \"/etc/app/config.toml\"",
                ));
            }
            if f.src.is_some() && f.symlink.is_some() {
                return Err(at(
                    &f.path,
                    format!("files: {:?} has both src and symlink", f.path),
                    "keep one of them",
                ));
            }
            if let Some(src) = &f.src
                && (src.starts_with('/') || src.split('/').any(|c| c == ".."))
            {
                return Err(at(
                    src,
                    format!("files: src {src:?} must be relative to the kiln.toml directory, without `..`"),
                    "src = \"config/app.toml\"",
                ));
            }
        }
        let run_as = spec.run_as();
        if run_as != "root" && !spec.users().iter().any(|u| u.name == run_as) {
            return Err(at(
                "run-as",
                format!("run-as {run_as:?} is not a user"),
                "add it to [[accounts.users]] or use \"nonroot\" or \"root\"",
            ));
        }
        Ok(spec)
    }

    /// The user the image runs as.
    pub fn run_as(&self) -> &str {
        self.accounts.run_as.as_deref().unwrap_or("nonroot")
    }

    /// Users, with the default `nonroot` (65532) unless a user of that name is given.
    pub fn users(&self) -> Vec<User> {
        let mut users = self.accounts.users.clone();
        if !users.iter().any(|u| u.name == "nonroot") {
            users.insert(
                0,
                User {
                    name: "nonroot".into(),
                    uid: NONROOT_ID,
                    gid: Some(NONROOT_ID),
                    home: None,
                    shell: None,
                },
            );
        }
        users
    }

    /// The part of the spec that decides the lock; a lock records its hash, and `--locked`
    /// builds compare it.
    pub fn resolution_hash(&self) -> String {
        #[derive(Serialize)]
        struct Inputs<'a> {
            source: &'a [Source],
            architectures: &'a [String],
            packages: &'a [String],
            exclude: &'a [String],
        }
        let json = kiln_oci::canonical_json(&Inputs {
            source: &self.source,
            architectures: &self.architectures,
            packages: &self.packages,
            exclude: &self.exclude,
        });
        kiln_oci::Digest::sha256_of(&json).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
architectures = ["amd64", "arm64"]
packages = ["base-files", "tzdata"]
exclude = ["debconf"]

[[source]]
suites = ["bookworm", "bookworm-updates"]

[[source]]
url = "http://security.debian.org/debian-security"
suites = ["bookworm-security"]

[[files]]
path = "/etc/app.conf"
src = "app.conf"
mode = 0o600

[image]
entrypoint = ["/usr/bin/app"]
env = { LANG = "C.UTF-8" }
stop-signal = "SIGINT"
"#;

    #[test]
    fn parses_with_defaults() {
        let s = Spec::parse("kiln.toml", GOOD).unwrap();
        assert_eq!(s.source[0].url, DEFAULT_MIRROR);
        assert_eq!(s.source[1].components, ["main"]);
        assert_eq!(s.files[0].mode, Some(0o600));
        assert_eq!(s.run_as(), "nonroot");
        assert_eq!(s.users()[0].uid, 65532);
        assert_eq!(s.image.stop_signal.as_deref(), Some("SIGINT"));
    }

    #[test]
    fn unknown_keys_are_located_with_a_suggestion() {
        let bad = GOOD.replace("packages =", "pakages =");
        let e = Spec::parse("kiln.toml", &bad).unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("pakages"), "{e}");
        assert!(e.hint.contains("did you mean `packages`"), "{e}");
        let bad = GOOD.replace("stop-signal", "stopsignal");
        let e = Spec::parse("kiln.toml", &bad).unwrap_err();
        assert_eq!(e.line, 21, "{e}");
        assert!(e.hint.contains("stop-signal"), "{e}");
        let bad = GOOD.replace("mode = 0o600", "mode = \"rw\"");
        let e = Spec::parse("kiln.toml", &bad).unwrap_err();
        assert_eq!(e.line, 16, "{e}");
        let e = Spec::parse("kiln.toml", &GOOD.replace("\"arm64\"", "\"aarch64\"")).unwrap_err();
        assert!(e.message.contains("aarch64") && e.line == 2, "{e}");
        let e = Spec::parse("kiln.toml", &GOOD.replace("src = \"app.conf\"", "src = \"../x\"")).unwrap_err();
        assert!(e.message.contains("../x"), "{e}");
    }

    #[test]
    fn resolution_hash_ignores_image_config() {
        let a = Spec::parse("k", GOOD).unwrap();
        let b = Spec::parse("k", &GOOD.replace("SIGINT", "SIGTERM")).unwrap();
        let c = Spec::parse("k", &GOOD.replace("\"tzdata\"", "\"netbase\"")).unwrap();
        assert_eq!(a.resolution_hash(), b.resolution_hash());
        assert_ne!(a.resolution_hash(), c.resolution_hash());
    }
}
