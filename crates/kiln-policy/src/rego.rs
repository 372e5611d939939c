//! Rego rules, evaluated with regorus (Rego v1) against the input document. A module is
//! `package kiln` with `deny contains msg if { … }`; every message denies (or warns, in a
//! warn-mode rule). Modules are kept as text and compiled per evaluation: regorus engines
//! are not shared between threads, and a few small modules parse in microseconds.

use crate::error::PolicyError;

/// One Rego file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegoModule {
    /// The path as shown in messages.
    pub file: String,
    /// The source.
    pub text: String,
}

/// regorus's message in one line: its `--> FILE:LINE:COL` and `error: MESSAGE` lines.
fn first_line(e: impl std::fmt::Display) -> String {
    let s = e.to_string();
    let at = s.lines().find_map(|l| l.trim().strip_prefix("--> "));
    let msg = s.lines().find_map(|l| l.trim().strip_prefix("error:")).map(str::trim);
    match (at, msg) {
        (Some(a), Some(m)) => format!("{a}: {m}"),
        _ => s
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("")
            .to_string(),
    }
}

fn engine(modules: &[RegoModule]) -> Result<regorus::Engine, PolicyError> {
    let mut engine = regorus::Engine::new();
    engine.set_rego_v0(false);
    for m in modules {
        engine
            .add_policy(m.file.clone(), m.text.clone())
            .map_err(|e| rego_parse_error(&m.file, first_line(e)))?;
    }
    Ok(engine)
}

/// A regorus parse error (`FILE:LINE:COL: MESSAGE`) as a located policy error.
fn rego_parse_error(file: &str, line: String) -> PolicyError {
    let rest = line.strip_prefix(file).and_then(|r| r.strip_prefix(':'));
    if let Some(rest) = rest {
        let mut parts = rest.splitn(3, ':');
        if let (Some(l), Some(c), Some(msg)) = (parts.next(), parts.next(), parts.next())
            && let (Ok(l), Ok(c)) = (l.trim().parse(), c.trim().parse())
        {
            return PolicyError::Parse {
                file: file.to_string(),
                line: l,
                col: c,
                reason: msg.trim().to_string(),
                hint: "Rego v1: `package kiln` and `deny contains msg if { … }`".into(),
            };
        }
    }
    PolicyError::Rego {
        file: file.to_string(),
        reason: line,
    }
}

/// Parses every module, so syntax errors surface when the policy is loaded.
pub fn check(modules: &[RegoModule]) -> Result<(), PolicyError> {
    engine(modules).map(|_| ())
}

/// The `data.kiln.deny` messages for `input`.
pub fn deny(modules: &[RegoModule], input: &serde_json::Value) -> Result<Vec<String>, PolicyError> {
    let mut engine = engine(modules)?;
    let file = modules.first().map(|m| m.file.clone()).unwrap_or_default();
    let err = |e: String| PolicyError::Rego {
        file: file.clone(),
        reason: e,
    };
    let value = regorus::Value::from_json_str(&input.to_string()).map_err(|e| err(first_line(e)))?;
    engine.set_input(value);
    let result = engine
        .eval_rule("data.kiln.deny".to_string())
        .map_err(|e| err(first_line(e)))?;
    let mut out = vec![];
    if result == regorus::Value::Undefined {
        return Ok(out);
    }
    let json: serde_json::Value =
        serde_json::from_str(&result.to_json_str().map_err(|e| err(first_line(e)))?).map_err(|e| err(e.to_string()))?;
    match json {
        serde_json::Value::Array(items) => {
            for i in items {
                out.push(match i {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                });
            }
        }
        other => return Err(err(format!("data.kiln.deny is {other}, not a set of messages"))),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_errors_have_file_line_col() {
        let m = RegoModule {
            file: "x.rego".into(),
            text: "package kiln\n\ndeny contains msg if {\n\tinput.x ==\n".into(),
        };
        let e = check(&[m]).unwrap_err().to_string();
        assert!(e.starts_with("x.rego:5:1: expecting expression"), "{e}");
    }

    #[test]
    fn deny_messages() {
        let m = RegoModule {
            file: "d.rego".into(),
            text: "package kiln\n\ndeny contains msg if {\n\tinput.user == \"\"\n\tmsg := \"root\"\n}\n".into(),
        };
        assert_eq!(
            deny(std::slice::from_ref(&m), &serde_json::json!({"user": ""})).unwrap(),
            vec!["root"]
        );
        assert!(deny(&[m], &serde_json::json!({"user": "1"})).unwrap().is_empty());
    }
}
