//! CI thresholds, as dive's `--ci` reads them: `lowestEfficiency` (default 0.9),
//! `highestWastedBytes` (default disabled) and `highestUserWastedPercent` (default 0.1), from
//! flags or a `.dive-ci` YAML file (`rules:` with those keys). A value of `disabled`, `off`,
//! `false` or empty turns a rule off. Any failed rule makes `kiln analyze` exit 1.

use std::path::Path;

use serde::Serialize;

use crate::error::AnalyzeError;
use crate::report::Analysis;

/// The three rules; `None` is disabled.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rules {
    /// Fail when efficiency is below this.
    pub lowest_efficiency: Option<f64>,
    /// Fail when wasted bytes are above this.
    pub highest_wasted_bytes: Option<u64>,
    /// Fail when wasted / user bytes is above this.
    pub highest_user_wasted_percent: Option<f64>,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            lowest_efficiency: Some(0.9),
            highest_wasted_bytes: None,
            highest_user_wasted_percent: Some(0.1),
        }
    }
}

/// One rule's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct RuleResult {
    /// dive's rule name.
    pub rule: &'static str,
    /// `pass`, `fail` or `disabled`.
    pub status: &'static str,
    /// Why it failed, with the numbers.
    pub message: String,
}

fn disabled(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "" | "disabled" | "off" | "false"
    )
}

fn bad(location: &str, message: String, hint: &str) -> AnalyzeError {
    AnalyzeError::Config {
        location: location.to_string(),
        message,
        hint: hint.to_string(),
    }
}

/// A ratio in 0..=1, or `None` when disabled.
pub fn parse_ratio(v: &str, location: &str) -> Result<Option<f64>, AnalyzeError> {
    if disabled(v) {
        return Ok(None);
    }
    match v.trim().parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(Some(r)),
        _ => Err(bad(
            location,
            format!("{v:?} is not a ratio between 0 and 1"),
            "e.g. 0.95, or disabled",
        )),
    }
}

/// Bytes as go-humanize parses them (`20MB` = 20,000,000, `20MiB` = 20 × 2²⁰, `1.5 GB`, `512`),
/// or `None` when disabled.
pub fn parse_bytes(v: &str, location: &str) -> Result<Option<u64>, AnalyzeError> {
    if disabled(v) {
        return Ok(None);
    }
    let s = v.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = (s[..split].trim(), s[split..].trim().to_ascii_lowercase());
    let mult: f64 = match unit.as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "ki" | "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mi" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gi" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" => 1e12,
        "ti" | "tib" => 1024f64.powi(4),
        _ => {
            return Err(bad(
                location,
                format!("{v:?}: unknown unit {unit:?}"),
                "e.g. 20MB, 20MiB or 512",
            ));
        }
    };
    let n: f64 = num
        .parse()
        .map_err(|_| bad(location, format!("{v:?} is not a size"), "e.g. 20MB, 20MiB or 512"))?;
    Ok(Some((n * mult) as u64))
}

/// Reads a `.dive-ci` file: a `rules:` map with dive's keys (camelCase or kebab-case).
pub fn read_file(path: &Path) -> Result<Rules, AnalyzeError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        bad(
            &path.display().to_string(),
            e.to_string(),
            "give a readable .dive-ci file",
        )
    })?;
    let mut rules = Rules::default();
    let mut in_rules = false;
    for (n, line) in text.lines().enumerate() {
        let content = line.split(" #").next().unwrap_or("");
        if content.trim().is_empty() || content.trim_start().starts_with('#') {
            continue;
        }
        let loc = format!("{}:{}:1", path.display(), n + 1);
        let indented = content.starts_with([' ', '\t']);
        let (key, value) = content.split_once(':').ok_or_else(|| {
            bad(
                &loc,
                format!("expected `key: value`, found {:?}", content.trim()),
                "see dive's .dive-ci format",
            )
        })?;
        let (key, value) = (key.trim(), value.trim().trim_matches(['"', '\'']));
        if !indented {
            in_rules = key == "rules";
            continue;
        }
        if !in_rules {
            continue;
        }
        match key {
            "lowestEfficiency" | "lowest-efficiency" => rules.lowest_efficiency = parse_ratio(value, &loc)?,
            "highestWastedBytes" | "highest-wasted-bytes" => rules.highest_wasted_bytes = parse_bytes(value, &loc)?,
            "highestUserWastedPercent" | "highest-user-wasted-percent" => {
                rules.highest_user_wasted_percent = parse_ratio(value, &loc)?
            }
            other => {
                return Err(bad(
                    &loc,
                    format!("unknown rule {other:?}"),
                    "lowestEfficiency, highestWastedBytes or highestUserWastedPercent",
                ));
            }
        }
    }
    Ok(rules)
}

/// Evaluates the rules as dive does (a NaN user-wasted ratio never fails).
pub fn evaluate(rules: &Rules, a: &Analysis) -> Vec<RuleResult> {
    let mut out = Vec::new();
    let mut push = |rule: &'static str, fail: Option<String>, on: bool| {
        out.push(RuleResult {
            rule,
            status: if !on {
                "disabled"
            } else if fail.is_some() {
                "fail"
            } else {
                "pass"
            },
            message: fail.unwrap_or_default(),
        });
    };
    let e = rules.lowest_efficiency;
    push(
        "lowestEfficiency",
        e.filter(|t| *t > a.efficiency).map(|t| {
            format!(
                "image efficiency is too low (efficiency={:.4} < threshold={t})",
                a.efficiency
            )
        }),
        e.is_some(),
    );
    let w = rules.highest_wasted_bytes;
    push(
        "highestWastedBytes",
        w.filter(|t| a.wasted_bytes > *t).map(|t| {
            format!(
                "too many bytes wasted (wasted-bytes={} > threshold={t})",
                a.wasted_bytes
            )
        }),
        w.is_some(),
    );
    let p = rules.highest_user_wasted_percent;
    push(
        "highestUserWastedPercent",
        p.and_then(|t| {
            let v = a.wasted_user_percent?;
            (v > t).then(|| format!("too many bytes wasted, relative to the user bytes added (%-user-wasted-bytes={v:.4} > threshold={t})"))
        }),
        p.is_some(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_go_humanize() {
        assert_eq!(parse_bytes("20MB", "x").unwrap(), Some(20_000_000));
        assert_eq!(parse_bytes("20MiB", "x").unwrap(), Some(20 * 1024 * 1024));
        assert_eq!(parse_bytes("512", "x").unwrap(), Some(512));
        assert_eq!(parse_bytes("disabled", "x").unwrap(), None);
        assert!(parse_bytes("12 parsecs", "x").is_err());
        assert!(parse_ratio("1.5", "x").is_err());
    }

    #[test]
    fn dive_ci_file() {
        let dir = std::env::temp_dir().join(format!("kiln-dive-ci-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join(".dive-ci");
        std::fs::write(&f, "rules:\n  # comment\n  lowestEfficiency: 0.95\n  highestWastedBytes: 20MB\n  highestUserWastedPercent: disabled\n").unwrap();
        let r = read_file(&f).unwrap();
        assert_eq!(r.lowest_efficiency, Some(0.95));
        assert_eq!(r.highest_wasted_bytes, Some(20_000_000));
        assert_eq!(r.highest_user_wasted_percent, None);
        std::fs::write(&f, "rules:\n  lowestEfficency: 0.95\n").unwrap();
        let e = read_file(&f).unwrap_err().to_string();
        assert!(e.contains(":2:1: unknown rule"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
