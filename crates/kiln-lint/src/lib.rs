//! Dockerfile linting for kiln: rules for immutable builds (pinned bases and
//! packages, verified downloads), secrets (credentials in ENV/ARG, URLs and
//! copied files), least privilege (root, sudo, world-writable files, ports)
//! and hygiene (caches, WORKDIR, exec form, shell mistakes).
//!
//! * [`lint`] checks one Dockerfile's text and returns located [`Finding`]s;
//!   it does no I/O, so it is as fast as the parser.
//! * [`Config`] is `.kiln-lint.toml`: disable rules, change severities.
//! * [`output`] renders findings for people, as JSON, or as SARIF 2.1.0.
//! * [`rules::RULES`] is the catalogue; every rule has a docs page,
//!   `docs/lint/KL###.md`, rendered from the same bad/good examples the
//!   tests run.

#![warn(missing_docs)]

mod checks;
pub mod config;
pub mod output;
pub mod rules;
pub mod shell;

use std::fmt;

pub use config::{Config, ConfigError};

/// How bad a finding is. Ordered: `Info < Warning < Error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Advice; shown with `--severity info`.
    Info,
    /// Should be fixed; fails `kiln lint` by default.
    Warning,
    /// Almost certainly wrong or dangerous.
    Error,
}

impl Severity {
    /// The lowercase name used in output and configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }

    /// Parses `error`, `warning` or `info` (any case; `note` and `style`
    /// are accepted as `info` for hadolint and SARIF users).
    pub fn parse(s: &str) -> Option<Severity> {
        match s.to_ascii_lowercase().as_str() {
            "error" => Some(Severity::Error),
            "warning" | "warn" => Some(Severity::Warning),
            "info" | "note" | "style" => Some(Severity::Info),
            _ => None,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem found in a Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// Rule id, `KL###`.
    pub rule: &'static str,
    /// Severity after configuration.
    pub severity: Severity,
    /// The file as the user named it.
    pub file: String,
    /// 1-based line of the offending word.
    pub line: usize,
    /// 1-based column (characters) of the offending word.
    pub col: usize,
    /// 1-based line of the instruction's keyword: tools that report per
    /// instruction (hadolint, editors' gutter marks) use this one.
    pub instruction_line: usize,
    /// What is wrong and how to fix it, one line.
    pub message: String,
    /// The rule's documentation page, relative to the repository root.
    pub doc: String,
}

/// Why a file could not be linted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LintError {
    /// The Dockerfile does not parse; the build would refuse it too.
    #[error("{file}:{line}:{col}: {message}{}", hint.as_ref().map(|h| format!(" (hint: {h})")).unwrap_or_default())]
    Parse {
        /// The file as named.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        col: usize,
        /// The parser's message.
        message: String,
        /// How to fix it, when known.
        hint: Option<String>,
    },
}

/// Lints one Dockerfile. `file` is only used to label findings.
///
/// Inline `# kiln:ignore=KL001,KL002` comments on the line(s) right before an
/// instruction silence those rules for it; `# kiln:ignore` alone silences all.
/// Findings are sorted by position; severities and disabled rules follow
/// `config`. The caller filters by threshold.
pub fn lint(file: &str, source: &str, config: &Config) -> Result<Vec<Finding>, LintError> {
    let df = kiln_dockerfile::parse(source).map_err(|e| LintError::Parse {
        file: file.to_string(),
        line: e.line,
        col: e.col,
        message: e.message.clone(),
        hint: e.hint.clone(),
    })?;
    let src = checks::Source::new(source);
    let mut raw = Vec::new();
    checks::run(&df, &src, &mut raw);
    let mut out: Vec<Finding> = Vec::with_capacity(raw.len());
    for r in raw {
        let Some(rule) = rules::rule(r.rule) else { continue };
        if src.ignored(r.instruction_line, rule) {
            continue;
        }
        let Some(severity) = config.severity_of(rule) else {
            continue;
        };
        out.push(Finding {
            rule: rule.id,
            severity,
            file: file.to_string(),
            line: r.line,
            col: r.col,
            instruction_line: r.instruction_line,
            message: r.message,
            doc: rule.doc(),
        });
    }
    out.sort_by(|a, b| (a.line, a.col, a.rule).cmp(&(b.line, b.col, b.rule)));
    out.dedup_by(|a, b| a.rule == b.rule && a.line == b.line && a.col == b.col);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(src: &str) -> Vec<&'static str> {
        lint("Dockerfile", src, &Config::default())
            .unwrap()
            .into_iter()
            .map(|f| f.rule)
            .collect()
    }

    /// Every rule's bad example triggers it and its good example does not:
    /// the same examples are the docs pages, so docs and code agree.
    #[test]
    fn every_rule_bad_and_good() {
        for r in rules::RULES {
            let bad = ids(r.bad);
            assert!(
                bad.contains(&r.id),
                "{}: bad example not flagged; got {bad:?}\n{}",
                r.id,
                r.bad
            );
            let good = ids(r.good);
            assert!(!good.contains(&r.id), "{}: good example flagged\n{}", r.id, r.good);
        }
    }

    /// docs/lint/KL###.md are rendered from the catalogue; run with
    /// KILN_UPDATE_DOCS=1 to rewrite them after changing a rule.
    #[test]
    fn docs_pages_are_current() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/lint");
        let update = std::env::var_os("KILN_UPDATE_DOCS").is_some();
        if update {
            std::fs::create_dir_all(&dir).unwrap();
        }
        for r in rules::RULES {
            let path = dir.join(format!("{}.md", r.id));
            let want = r.doc_page();
            if update {
                std::fs::write(&path, &want).unwrap();
            }
            let have = std::fs::read_to_string(&path).unwrap_or_default();
            assert_eq!(
                have,
                want,
                "{} is stale (hint: KILN_UPDATE_DOCS=1 cargo test -p kiln-lint)",
                path.display()
            );
        }
        for e in std::fs::read_dir(&dir).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().to_string();
            let id = name.trim_end_matches(".md");
            assert!(rules::rule(id).is_some(), "docs/lint/{name} documents no rule");
        }
    }

    /// Linting never panics: every prefix of every corpus file (cut at each
    /// line and inside lines) and every rule example either parses and lints
    /// or is a parse error.
    #[test]
    fn never_panics_on_truncated_input() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/lint-corpus");
        let mut texts: Vec<String> = rules::RULES
            .iter()
            .flat_map(|r| [r.bad.to_string(), r.good.to_string()])
            .collect();
        for e in std::fs::read_dir(dir).unwrap() {
            texts.push(std::fs::read_to_string(e.unwrap().path()).unwrap());
        }
        let mut runs = 0;
        for t in &texts {
            let cuts: Vec<usize> = t.char_indices().map(|(i, _)| i).filter(|i| i % 5 == 0).collect();
            for &c in &cuts {
                let _ = lint("D", &t[..c], &Config::default());
                runs += 1;
            }
        }
        assert!(runs > 1000);
    }

    #[test]
    fn rule_ids_are_unique_and_sorted() {
        let ids: Vec<_> = rules::RULES.iter().map(|r| r.id).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(ids, sorted);
    }

    const D: &str = "@sha256:10901ccd8d249047f9761845b4594f121edbf0d9a2fb47ee3cf4f6caec6a2be8";

    #[test]
    fn base_images_expand_args_and_know_stages() {
        let src = "ARG BASE=debian:12\nFROM ${BASE} AS build\nFROM build\nFROM scratch\nUSER 1\n";
        let f = lint("D", src, &Config::default()).unwrap();
        let base: Vec<_> = f
            .iter()
            .filter(|f| f.rule.starts_with("KL00"))
            .map(|f| (f.rule, f.line))
            .collect();
        assert_eq!(base, [("KL003", 2)]);
        assert!(f[0].message.contains("(= `debian:12`)"), "{}", f[0].message);
        let src = format!("ARG BASE=debian:12{D}\nFROM $BASE\nUSER 1\n");
        assert!(!ids(&src).iter().any(|r| r.starts_with("KL00")));
        assert!(ids("FROM debian:latest\nUSER 1\n").contains(&"KL002"));
        assert!(!ids(&format!("FROM debian:latest{D}\nUSER 1\n")).contains(&"KL002"));
        assert!(ids("FROM localhost:5000/app\nUSER 1\n").contains(&"KL001"));
    }

    #[test]
    fn locks_count_as_pins() {
        let run = |r: &str| ids(&format!("FROM scratch\nRUN {r}\nUSER 1\n"));
        assert!(!run("npm ci").contains(&"KL009"));
        assert!(!run("npm install").contains(&"KL009"));
        assert!(run("npm install left-pad").contains(&"KL009"));
        assert!(!run("npm install @scope/pkg@1.2.3").contains(&"KL009"));
        assert!(!run("pip install --no-cache-dir -r requirements.txt --require-hashes").contains(&"KL008"));
        assert!(run("python3 -m pip install --no-cache-dir requests").contains(&"KL008"));
        assert!(!run("pip install --no-cache-dir .").contains(&"KL008"));
        assert!(run("sudo apt-get install -y --no-install-recommends curl").contains(&"KL005"));
        assert!(!run("apt-get install -y ./pkg.deb").contains(&"KL005"));
        assert!(run("go install example.com/x/cmd/tool").contains(&"KL011"));
        assert!(!run("go install ./cmd/...").contains(&"KL011"));
    }

    #[test]
    fn cache_mounts_are_read_with_the_build_parser() {
        let run = |m: &str| {
            ids(&format!(
                "FROM debian{D}\nRUN --mount={m} apt-get update && apt-get install -y --no-install-recommends curl=1\nUSER 1\n"
            ))
        };
        // BuildKit's aliases for target (dst=, destination=) count, as the build reads them.
        assert!(!run("type=cache,dst=/var/lib/apt").contains(&"KL303"));
        assert!(!run("type=cache,destination=/var/lib/apt/lists").contains(&"KL303"));
        // A bind mount, or a cache somewhere else, keeps the finding.
        assert!(run("type=bind,target=/var/lib/apt").contains(&"KL303"));
        assert!(run("type=cache,target=/root/.cache").contains(&"KL303"));
    }

    #[test]
    fn final_stage_user_and_root() {
        // USER is inherited from the stage the final one is built on.
        assert!(!ids("FROM scratch AS base\nUSER 1000\nFROM base\nHEALTHCHECK NONE\n").contains(&"KL201"));
        // Only the final stage matters.
        assert!(!ids("FROM scratch AS b\nUSER root\nFROM scratch\nUSER 1\n").contains(&"KL201"));
        assert!(ids("FROM scratch\nUSER 0:0\n").contains(&"KL201"));
        assert!(!ids("FROM gcr.io/distroless/static:nonroot\n").contains(&"KL201"));
        let f = lint("D", "FROM scratch\n", &Config::default()).unwrap();
        assert!(
            f.iter()
                .any(|f| f.rule == "KL201" && f.message.starts_with("the image runs as root"))
        );
    }

    #[test]
    fn shell_details() {
        let run = |r: &str| ids(&format!("FROM scratch\nRUN {r}\nUSER 1\n"));
        assert!(!run("set -euo pipefail; curl -fsSL x | tar -x").contains(&"KL401"));
        assert!(
            !ids("FROM scratch\nSHELL [\"/bin/bash\", \"-euxo\", \"pipefail\", \"-c\"]\nRUN a | b\nUSER 1\n")
                .contains(&"KL401")
        );
        assert!(!run("echo 'a | b' > /x").contains(&"KL401"));
        assert!(!run("true || false").contains(&"KL401"));
        assert!(run("sh -c \"$(curl -fsSL https://x/install)\"").contains(&"KL013"));
        assert!(!run("curl -fsSLo /x https://x && sha256sum -c /x.sha && sh /x").contains(&"KL013"));
        assert!(!run("rm -rf \"$DIR\"").contains(&"KL402"));
        assert!(!run("X=$(id -u) && echo \"$X\"").contains(&"KL403"));
        assert!(run("chown -R app $(ls /srv)").contains(&"KL403"));
        assert!(!run("chmod 1777 /tmp").contains(&"KL203"));
        assert!(!run("echo cd /tmp").contains(&"KL301"));
    }

    #[test]
    fn secrets_in_context() {
        assert!(!ids("FROM scratch\nENV PASSWORD_FILE=/run/secrets/pw\nUSER 1\n").contains(&"KL101"));
        assert!(!ids("FROM scratch\nCOPY .env.example /app/\nUSER 1\n").contains(&"KL103"));
        assert!(ids("FROM scratch\nCOPY --from=keys /out/server.key /k\nUSER 1\n").contains(&"KL103"));
        let src = "FROM scratch\nCOPY token.txt /tmp/\nRUN use /tmp/token.txt && rm -f /tmp/token.txt\nUSER 1\n";
        let f = lint("D", src, &Config::default()).unwrap();
        let k = f.iter().find(|f| f.rule == "KL105").unwrap();
        assert_eq!((k.line, k.col), (3, 33));
        assert!(k.message.contains("line 2"));
        assert!(ids("FROM scratch\nLABEL k=\"ghp_0123456789abcdefghijABCDEFGHIJ012345\"\nUSER 1\n").contains(&"KL102"));
        let cmd = "FROM scratch\nUSER 1\nCMD [\"app\", \"--url\", \"https://u:p4ss@db.example.com\"]\n";
        assert!(ids(cmd).contains(&"KL104"));
    }

    #[test]
    fn inline_ignore() {
        let src = "# kiln:ignore=KL001,KL003\nFROM debian\nUSER 1\n";
        assert!(!ids(src).contains(&"KL001"));
        let src = "# a comment\n# kiln:ignore=KL003\nFROM debian\nUSER 1\n";
        let got = ids(src);
        assert!(got.contains(&"KL001") && !got.contains(&"KL003"), "{got:?}");
        let src = "# kiln:ignore\nFROM debian\nUSER 1\n";
        assert!(ids(src).is_empty());
        // hadolint's own comments silence the kiln rules that cover them.
        let src = "FROM scratch\n# hadolint ignore=DL3008,DL3015\nRUN apt-get install -y curl\nUSER 1\n";
        let got = ids(src);
        assert!(
            !got.contains(&"KL005") && !got.contains(&"KL304") && got.contains(&"KL303"),
            "{got:?}"
        );
    }

    #[test]
    fn parse_error_is_located() {
        let e = lint("Dockerfile", "FROM debian\nCOPY --form=x a b\n", &Config::default()).unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("Dockerfile:2:"), "{s}");
        assert!(!s.contains('\n'));
    }

    #[test]
    fn columns_point_at_the_word() {
        let src = "FROM debian:12@sha256:10901ccd8d249047f9761845b4594f121edbf0d9a2fb47ee3cf4f6caec6a2be8\nRUN apt-get update && \\\n    sudo apt-get install -y curl\nUSER 1\n";
        let f = lint("D", src, &Config::default()).unwrap();
        let sudo = f.iter().find(|f| f.rule == "KL202").unwrap();
        assert_eq!((sudo.line, sudo.col, sudo.instruction_line), (3, 5, 2));
        let pin = f.iter().find(|f| f.rule == "KL005").unwrap();
        assert_eq!((pin.line, pin.col), (3, 29));
    }
}
