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

/// The top-level fields of the input document that `modules` can read, when every use of
/// `input` in their text is `input.FIELD` or `input["FIELD"]`; `None` (the whole document)
/// when any other use is found (`input[x]`, `x := input`, `import input`). The scan is over
/// the raw text, comments and strings included, so it can only find more than is read,
/// never less: a field Rego reads is always in the document it gets.
pub fn reach(modules: &[RegoModule]) -> Option<std::collections::BTreeSet<String>> {
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut fields = std::collections::BTreeSet::new();
    for m in modules {
        let t = m.text.as_bytes();
        let mut from = 0;
        while let Some(i) = m.text[from..].find("input").map(|i| from + i) {
            from = i + "input".len();
            if (i > 0 && ident(t[i - 1])) || t.get(from).is_some_and(|&c| ident(c)) {
                continue; // part of another identifier (`myinput`, `input2`)
            }
            let mut j = from;
            while t.get(j).is_some_and(|c| c.is_ascii_whitespace()) {
                j += 1;
            }
            let rest = &m.text[j..];
            let field = if let Some(r) = rest.strip_prefix('.') {
                let r = r.trim_start();
                let end = r.bytes().position(|c| !ident(c)).unwrap_or(r.len());
                Some(&r[..end])
            } else if let Some(r) = rest.strip_prefix('[') {
                let r = r.trim_start();
                r.strip_prefix('"')
                    .and_then(|q| q.split_once('"'))
                    .filter(|(name, after)| !name.contains('\\') && after.trim_start().starts_with(']'))
                    .map(|(name, _)| name)
            } else {
                None
            };
            match field {
                Some(f) if !f.is_empty() => {
                    fields.insert(f.to_string());
                }
                _ => return None,
            }
        }
    }
    Some(fields)
}

/// The `data.kiln.deny` messages for `input`.
pub fn deny(modules: &[RegoModule], input: &serde_json::Value) -> Result<Vec<String>, PolicyError> {
    use serde::Deserialize as _;
    let value = regorus::Value::deserialize(input).map_err(|e| PolicyError::Rego {
        file: modules.first().map(|m| m.file.clone()).unwrap_or_default(),
        reason: e.to_string(),
    })?;
    deny_value(modules, value)
}

/// The `data.kiln.deny` messages for an input document already in regorus's form.
pub fn deny_value(modules: &[RegoModule], value: regorus::Value) -> Result<Vec<String>, PolicyError> {
    let mut engine = engine(modules)?;
    let file = modules.first().map(|m| m.file.clone()).unwrap_or_default();
    let err = |e: String| PolicyError::Rego {
        file: file.clone(),
        reason: e,
    };
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

    fn module(text: &str) -> Vec<RegoModule> {
        vec![RegoModule {
            file: "m.rego".into(),
            text: text.into(),
        }]
    }

    #[test]
    fn reach_is_what_the_text_can_read() {
        let set = |names: &[&str]| Some(names.iter().map(|s| s.to_string()).collect());
        let r = reach(&module(
            "package kiln\n# input.errors in a comment counts too\ndeny contains m if {\n\tsome p in input.sbom.packages\n\tinput [ \"config\" ].user == \"\"\n\tmyinput := 1\n\tm := \"x\"\n}\n",
        ));
        assert_eq!(r, set(&["config", "errors", "sbom"]));
        // Any other use of `input` gets the whole document.
        for whole in [
            "x := input",
            "import input",
            "input[k]",
            "object.get(input, \"sbom\", {})",
            "input[\"a\\\"b\"]",
            "input.",
        ] {
            assert_eq!(reach(&module(whole)), None, "{whole}");
        }
        assert_eq!(reach(&module("package kiln")), set(&[]));
    }

    #[test]
    fn a_partial_document_decides_as_the_whole_one() {
        let m = module(
            "package kiln\n\ndeny contains msg if {\n\tsome p in input.sbom.packages\n\tp.name == \"telnetd\"\n\tmsg := sprintf(\"%s on %s\", [p.name, input.platform])\n}\n",
        );
        let mut input = crate::Input {
            platform: "linux/amd64".into(),
            sbom: Some(crate::input::SbomFacts {
                source: "s".into(),
                packages: vec![crate::input::PackageFact {
                    name: "telnetd".into(),
                    version: "1".into(),
                    purl: String::new(),
                }],
            }),
            ..Default::default()
        };
        input.errors.push("e".into());
        let fields = reach(&m);
        assert_eq!(fields, Some(["platform".to_string(), "sbom".to_string()].into()));
        let part = deny_value(&m, input.to_rego(fields.as_ref()).unwrap()).unwrap();
        let whole = deny(&m, &serde_json::to_value(&input).unwrap()).unwrap();
        assert_eq!(part, vec!["telnetd on linux/amd64"]);
        assert_eq!(part, whole);
    }
}
