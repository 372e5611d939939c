//! deb822 control data (Packages indexes, InRelease, a .deb's `control`) and dependency
//! relations (`Depends: a (>= 1) | b:any, c [amd64]`).

use std::cmp::Ordering;
use std::fmt;

use crate::version;

/// One paragraph: fields in file order. Field names compare case-insensitively, as
/// Debian Policy 5.1 says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Paragraph {
    /// (name, value) pairs; a multi-line value keeps its newlines and leading spaces.
    pub fields: Vec<(String, String)>,
    /// 1-based line where the paragraph starts, for error messages.
    pub line: usize,
}

impl Paragraph {
    /// The value of a field, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A malformed line in control data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ControlError {
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Parses every paragraph of a deb822 document. Comment lines (`#`) are skipped; a
/// continuation line before any field, or a field line without a colon, is an error.
pub fn parse(text: &str) -> Result<Vec<Paragraph>, ControlError> {
    let mut out = Vec::new();
    let mut cur = Paragraph::default();
    for (i, line) in text.lines().enumerate() {
        let lineno = i + 1;
        if line.trim().is_empty() {
            if !cur.fields.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            let Some(last) = cur.fields.last_mut() else {
                return Err(ControlError {
                    line: lineno,
                    message: "continuation line before any field".into(),
                });
            };
            last.1.push('\n');
            last.1.push_str(line);
            continue;
        }
        let Some((k, v)) = line.split_once(':') else {
            return Err(ControlError {
                line: lineno,
                message: format!("expected `Field: value`, found {line:?}"),
            });
        };
        if cur.fields.is_empty() {
            cur.line = lineno;
        }
        cur.fields.push((k.trim().to_string(), v.trim().to_string()));
    }
    if !cur.fields.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

/// A version relation operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `<<`
    Lt,
    /// `<=` (and the obsolete `<`)
    Le,
    /// `=`
    Eq,
    /// `>=` (and the obsolete `>`)
    Ge,
    /// `>>`
    Gt,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "<<" => Op::Lt,
            "<=" | "<" => Op::Le,
            "=" => Op::Eq,
            ">=" | ">" => Op::Ge,
            ">>" => Op::Gt,
            _ => return None,
        })
    }

    /// Whether `have OP want` holds.
    pub fn holds(self, have: &str, want: &str) -> bool {
        let o = version::compare(have, want);
        match self {
            Op::Lt => o == Ordering::Less,
            Op::Le => o != Ordering::Greater,
            Op::Eq => o == Ordering::Equal,
            Op::Ge => o != Ordering::Less,
            Op::Gt => o == Ordering::Greater,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Lt => "<<",
            Op::Le => "<=",
            Op::Eq => "=",
            Op::Ge => ">=",
            Op::Gt => ">>",
        })
    }
}

/// One alternative of a relation: `name[:arch] [(op version)] [[arch list]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dep {
    /// Package (or virtual package) name.
    pub name: String,
    /// `:any`, `:native` or an architecture, when given.
    pub arch_qualifier: Option<String>,
    /// Version constraint.
    pub constraint: Option<(Op, String)>,
    /// Architecture restriction list (`[amd64 !arm64]`); empty means every architecture.
    pub arches: Vec<String>,
}

impl Dep {
    /// Whether this alternative applies on `arch` (its `[...]` list allows it).
    pub fn applies_to(&self, arch: &str) -> bool {
        if self.arches.is_empty() {
            return true;
        }
        let negated = self.arches.iter().all(|a| a.starts_with('!'));
        if negated {
            !self.arches.iter().any(|a| &a[1..] == arch)
        } else {
            self.arches.iter().any(|a| a == arch)
        }
    }

    /// Whether a package of `version` satisfies the version constraint.
    pub fn version_ok(&self, version: &str) -> bool {
        match &self.constraint {
            None => true,
            Some((op, want)) => op.holds(version, want),
        }
    }
}

impl fmt::Display for Dep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(q) = &self.arch_qualifier {
            write!(f, ":{q}")?;
        }
        if let Some((op, v)) = &self.constraint {
            write!(f, " ({op} {v})")?;
        }
        Ok(())
    }
}

/// A relation field: AND of OR-groups.
pub type Relation = Vec<Vec<Dep>>;

/// Shows an OR-group as it is written in control files.
pub fn show_group(g: &[Dep]) -> String {
    g.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(" | ")
}

/// Parses a relation field (`Depends`, `Pre-Depends`, `Provides`, `Conflicts`…).
pub fn parse_relation(s: &str) -> Result<Relation, String> {
    let mut out = Vec::new();
    for group in s.split(',') {
        let group = group.trim();
        if group.is_empty() {
            continue;
        }
        let mut alts = Vec::new();
        for alt in group.split('|') {
            alts.push(parse_dep(alt.trim()).map_err(|e| format!("{e} in {group:?}"))?);
        }
        out.push(alts);
    }
    Ok(out)
}

fn parse_dep(s: &str) -> Result<Dep, String> {
    let mut rest = s;
    // Build profiles (`<!nocheck>`) only appear in build relations; drop them.
    if let Some(i) = rest.find('<').filter(|&i| !rest[..i].contains('(')) {
        rest = rest[..i].trim_end();
    }
    let name_end = rest
        .find(|c: char| c.is_whitespace() || c == '(' || c == '[')
        .unwrap_or(rest.len());
    let (name_q, mut tail) = rest.split_at(name_end);
    if name_q.is_empty() {
        return Err("empty package name".into());
    }
    let (name, arch_qualifier) = match name_q.split_once(':') {
        Some((n, q)) => (n.to_string(), Some(q.to_string())),
        None => (name_q.to_string(), None),
    };
    let mut constraint = None;
    let mut arches = Vec::new();
    tail = tail.trim_start();
    if let Some(t) = tail.strip_prefix('(') {
        let close = t.find(')').ok_or("unclosed `(`")?;
        let inner = t[..close].trim();
        let op_end = inner
            .find(|c: char| !matches!(c, '<' | '>' | '='))
            .unwrap_or(inner.len());
        let op = Op::parse(&inner[..op_end]).ok_or_else(|| format!("bad operator in ({inner})"))?;
        let v = inner[op_end..].trim();
        if v.is_empty() {
            return Err(format!("missing version in ({inner})"));
        }
        constraint = Some((op, v.to_string()));
        tail = t[close + 1..].trim_start();
    }
    if let Some(t) = tail.strip_prefix('[') {
        let close = t.find(']').ok_or("unclosed `[`")?;
        arches = t[..close].split_whitespace().map(str::to_string).collect();
    }
    Ok(Dep {
        name,
        arch_qualifier,
        constraint,
        arches,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paragraphs_and_continuations() {
        let text = "Package: a\nVersion: 1.0\nDescription: short\n long line\n .\n more\n\n\n# comment\npackage: b\nversion: 2\n";
        let ps = parse(text).unwrap();
        assert_eq!(ps.len(), 2);
        assert_eq!(ps[0].get("description"), Some("short\n long line\n .\n more"));
        assert_eq!(ps[1].get("Package"), Some("b"));
        assert_eq!(ps[1].line, 10);
        assert_eq!(parse(" x\n").unwrap_err().line, 1);
        assert!(parse("A: 1\nnocolon\n").unwrap_err().message.contains("nocolon"));
    }

    #[test]
    fn relations() {
        let r = parse_relation(
            "libc6 (>= 2.34), debconf (>= 0.5) | debconf-2.0, python3:any, foo [amd64 arm64], bar (<<1:2~)",
        )
        .unwrap();
        assert_eq!(r.len(), 5);
        assert_eq!(r[0][0].constraint, Some((Op::Ge, "2.34".into())));
        assert_eq!(r[1].len(), 2);
        assert_eq!(r[1][1].name, "debconf-2.0");
        assert_eq!(r[2][0].arch_qualifier.as_deref(), Some("any"));
        assert!(r[3][0].applies_to("arm64") && !r[3][0].applies_to("i386"));
        assert_eq!(r[4][0].constraint, Some((Op::Lt, "1:2~".into())));
        assert_eq!(show_group(&r[1]), "debconf (>= 0.5) | debconf-2.0");
        assert!(parse_relation("a (>= )").is_err());
        assert!(parse_relation("a (~ 1)").is_err());
        assert!(Op::Ge.holds("2.36-9", "2.34") && !Op::Lt.holds("1", "1"));
    }
}
