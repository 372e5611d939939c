//! `.kiln-lint.toml`: which rules run and how severe they are.
//!
//! ```toml
//! # Rules that never report.
//! disable = ["KL003"]
//! # The threshold `kiln lint` uses when --severity is not given.
//! severity = "warning"
//!
//! # Per-rule severity: "error", "warning", "info" or "off".
//! [rules]
//! KL204 = "info"
//! ```
//!
//! Unknown keys and rule ids are errors, not silently ignored: a typo in a
//! config that is meant to relax a rule would otherwise go unnoticed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::Severity;
use crate::rules::{self, Rule};

/// The file name looked up next to each Dockerfile and in its parents.
pub const FILE_NAME: &str = ".kiln-lint.toml";

/// Lint configuration. The default runs every rule at its own severity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// Where it was read from (for messages), `None` for the default.
    pub path: Option<PathBuf>,
    /// Per-rule severity; `None` means the rule is off.
    pub rules: BTreeMap<String, Option<Severity>>,
    /// Threshold to use when the command line gives none.
    pub threshold: Option<Severity>,
}

/// A configuration file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}:{line}:{col}: {message} (hint: {hint})")]
pub struct ConfigError {
    /// The file.
    pub path: String,
    /// 1-based line (1 when unknown).
    pub line: usize,
    /// 1-based column (1 when unknown).
    pub col: usize,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    disable: Vec<toml::Spanned<String>>,
    #[serde(default)]
    severity: Option<toml::Spanned<String>>,
    #[serde(default)]
    rules: BTreeMap<String, toml::Spanned<String>>,
}

impl Config {
    /// The severity of `rule` under this configuration, `None` when off.
    pub fn severity_of(&self, rule: &Rule) -> Option<Severity> {
        match self.rules.get(rule.id) {
            Some(s) => *s,
            None => Some(rule.severity),
        }
    }

    /// Parses configuration text; `path` labels errors.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let at = |span: std::ops::Range<usize>, message: String, hint: &str| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            ConfigError {
                path: path.display().to_string(),
                line,
                col,
                message,
                hint: hint.to_string(),
            }
        };
        let raw: Raw = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            at(
                span,
                e.message().trim().to_string(),
                "keys are `disable = [\"KL###\"]`, `severity = \"warning\"` and a `[rules]` table of `KL### = \"error|warning|info|off\"`",
            )
        })?;
        let mut cfg = Config {
            path: Some(path.to_path_buf()),
            ..Config::default()
        };
        let known = |id: &str| rules::rule(id).is_some();
        for d in &raw.disable {
            if !known(d.get_ref()) {
                return Err(at(
                    d.span(),
                    format!("unknown rule `{}`", d.get_ref()),
                    "rule ids are listed in docs/lint.md",
                ));
            }
            cfg.rules.insert(d.get_ref().clone(), None);
        }
        if let Some(s) = &raw.severity {
            cfg.threshold = Some(Severity::parse(s.get_ref()).ok_or_else(|| {
                at(
                    s.span(),
                    format!("unknown severity `{}`", s.get_ref()),
                    "use error, warning or info",
                )
            })?);
        }
        for (id, sev) in &raw.rules {
            if !known(id) {
                return Err(at(
                    sev.span(),
                    format!("unknown rule `{id}`"),
                    "rule ids are listed in docs/lint.md",
                ));
            }
            let v = sev.get_ref();
            let s = if v.eq_ignore_ascii_case("off") {
                None
            } else {
                Some(Severity::parse(v).ok_or_else(|| {
                    at(
                        sev.span(),
                        format!("unknown severity `{v}` for {id}"),
                        "use error, warning, info or off",
                    )
                })?)
            };
            cfg.rules.insert(id.clone(), s);
        }
        Ok(cfg)
    }

    /// Finds `.kiln-lint.toml` for a Dockerfile: in its directory, then in
    /// each parent up to the filesystem root or a directory holding `.git`.
    pub fn discover(dockerfile: &Path) -> Option<PathBuf> {
        let abs = std::path::absolute(dockerfile).ok()?;
        let mut dir = abs.parent();
        while let Some(d) = dir {
            let p = d.join(FILE_NAME);
            if p.is_file() {
                return Some(p);
            }
            if d.join(".git").exists() {
                return None;
            }
            dir = d.parent();
        }
        None
    }

    /// Reads a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.display().to_string(),
            line: 1,
            col: 1,
            message: format!("cannot read: {e}"),
            hint: "check the path given to --config".to_string(),
        })?;
        Config::parse(path, &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_applies() {
        let c = Config::parse(
            Path::new(".kiln-lint.toml"),
            "disable = [\"KL003\"]\nseverity = \"info\"\n[rules]\nKL204 = \"info\"\nKL306 = \"off\"\n",
        )
        .unwrap();
        assert_eq!(c.severity_of(rules::rule("KL003").unwrap()), None);
        assert_eq!(c.severity_of(rules::rule("KL306").unwrap()), None);
        assert_eq!(c.severity_of(rules::rule("KL204").unwrap()), Some(Severity::Info));
        assert_eq!(c.severity_of(rules::rule("KL001").unwrap()), Some(Severity::Warning));
        assert_eq!(c.threshold, Some(Severity::Info));
    }

    #[test]
    fn errors_are_located() {
        let e = Config::parse(
            Path::new("c.toml"),
            "disable = [\"KL003\"]\n[rules]\nKL999 = \"info\"\n",
        )
        .unwrap_err();
        assert_eq!((e.line, e.message.as_str()), (3, "unknown rule `KL999`"));
        let e = Config::parse(Path::new("c.toml"), "[rules]\nKL001 = \"loud\"\n").unwrap_err();
        assert_eq!(e.line, 2);
        let e = Config::parse(Path::new("c.toml"), "disabled = []\n").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(!e.to_string().contains('\n'), "{e}");
    }
}
