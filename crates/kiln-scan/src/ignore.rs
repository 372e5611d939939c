//! `.kilnignore`: findings a team has decided to accept, in trivy's `.trivyignore` spirit.
//!
//! One entry a line; `#` starts a comment. An entry is an id (a vulnerability id or any of
//! its aliases, a secret rule id, a `KSC###` rule), optionally followed by a path prefix that
//! limits it to findings at that location, and optionally `exp:YYYY-MM-DD`, after which the
//! entry stops applying (so accepted risks get looked at again).
//!
//! ```text
//! CVE-2024-1234 exp:2027-01-01
//! generic-secret-assignment /app/tests/
//! KSC004
//! ```

use crate::{Report, db};

/// One entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The id.
    pub id: String,
    /// Only at locations starting with this.
    pub path: Option<String>,
    /// Expires after this date (`YYYY-MM-DD`).
    pub expires: Option<String>,
}

/// A parsed ignore file.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    /// The entries.
    pub entries: Vec<Entry>,
}

impl Ignore {
    /// Parses the file's text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Ignore, String> {
        let mut entries = vec![];
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut e = Entry {
                id: String::new(),
                path: None,
                expires: None,
            };
            for (i, word) in line.split_whitespace().enumerate() {
                if i == 0 {
                    e.id = word.to_string();
                } else if let Some(d) = word.strip_prefix("exp:") {
                    if !is_date(d) {
                        return Err(format!(
                            "{file}:{}: `{word}` is not a date (hint: write exp:YYYY-MM-DD)",
                            n + 1
                        ));
                    }
                    e.expires = Some(d.to_string());
                } else if e.path.is_none() {
                    e.path = Some(word.to_string());
                } else {
                    return Err(format!(
                        "{file}:{}: unexpected `{word}` (hint: each line is `ID [PATH] [exp:YYYY-MM-DD]`)",
                        n + 1
                    ));
                }
            }
            entries.push(e);
        }
        Ok(Ignore { entries })
    }

    fn applies(&self, ids: &[&str], location: &str, today: &str) -> bool {
        self.entries.iter().any(|e| {
            ids.contains(&e.id.as_str())
                && e.path.as_ref().is_none_or(|p| location.starts_with(p.as_str()))
                && e.expires.as_ref().is_none_or(|d| d.as_str() >= today)
        })
    }

    /// Removes ignored findings; returns how many.
    pub fn apply(&self, report: &mut Report) -> usize {
        let today = kiln_oci::image::rfc3339(db::now_unix())[..10].to_string();
        let before = report.total();
        report.vulnerabilities.retain(|f| {
            let mut ids: Vec<&str> = vec![f.id.as_str()];
            ids.extend(f.aliases.iter().map(String::as_str));
            !self.applies(&ids, f.path.as_deref().unwrap_or(""), &today)
        });
        report.secrets.retain(|f| !self.applies(&[f.rule], &f.location, &today));
        report
            .misconfigurations
            .retain(|f| !self.applies(&[f.id], &f.location, &today));
        before - report.total()
    }
}

/// True for a real calendar date written `YYYY-MM-DD`: `2020-13-45` is refused instead of
/// being compared as text (where it would never expire, or expire at once).
fn is_date(d: &str) -> bool {
    let b = d.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let num = |r: std::ops::Range<usize>| {
        let part = &d[r];
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse::<u32>().ok())
            .flatten()
    };
    let (Some(y), Some(m), Some(day)) = (num(0..4), num(5..7), num(8..10)) else {
        return false;
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_entries_and_errors() {
        let i = Ignore::parse("# x\nCVE-1 exp:2099-01-01\njwt /app/ # tests\n\n", "f").unwrap();
        assert_eq!(i.entries.len(), 2);
        assert_eq!(i.entries[1].path.as_deref(), Some("/app/"));
        assert!(i.applies(&["CVE-1"], "", "2026-01-01"));
        assert!(!i.applies(&["CVE-1"], "", "2100-01-01"));
        assert!(!i.applies(&["jwt"], "/etc/x", "2026-01-01"));
        let e = Ignore::parse("CVE-1 exp:tomorrow", ".kilnignore").unwrap_err();
        assert!(e.starts_with(".kilnignore:1:"), "{e}");
        for bad in [
            "2020-13-45",
            "2020-02-30",
            "2021-02-29",
            "2020-00-10",
            "2020-04-31",
            "2020-1-01",
            "+020-01-01",
        ] {
            let e = Ignore::parse(&format!("CVE-1 exp:{bad}"), "f").unwrap_err();
            assert!(e.contains("is not a date"), "{bad}: {e}");
        }
        for good in ["2020-02-29", "2000-02-29", "2024-12-31", "2025-01-01"] {
            assert!(is_date(good), "{good}");
        }
        assert!(!is_date("1900-02-29"));
    }
}
