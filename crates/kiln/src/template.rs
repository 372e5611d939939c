//! The small subset of Go's text/template that `kiln inspect --format` takes, so docker
//! habits such as `--format '{{.Id}}'` or `'{{json .Config.Env}}'` work:
//!
//! - `{{.}}` and `{{.A.B}}`: a value, printed as Go prints it (`[a b]`, `map[k:v]`);
//! - `{{json .A}}`: the value as JSON;
//! - `{{index .A "key"}}` / `{{index .A 0}}`: a map entry or list item;
//! - `{{join .A ","}}`: a list of strings joined;
//! - `{{"text"}}`: a string literal (e.g. `{{"\n"}}`);
//! - `{{- …}}` and `{{… -}}` trim the white space before or after the action.
//!
//! Anything else (`range`, `if`, pipes) is refused with a clear error instead of being
//! printed wrongly.

use serde_json::Value;

/// Renders `template` against `data`. The error is one line naming the action.
pub fn render(template: &str, data: &Value) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("template {template:?}: `{{{{` without `}}}}`"))?;
        let mut action = &after[..end];
        rest = &after[end + 2..];
        if let Some(a) = action.strip_prefix('-').filter(|a| a.starts_with(char::is_whitespace)) {
            out.truncate(out.trim_end().len());
            action = a;
        }
        if let Some(a) = action.strip_suffix('-').filter(|a| a.ends_with(char::is_whitespace)) {
            rest = rest.trim_start();
            action = a;
        }
        out.push_str(&action_value(action.trim(), data).map_err(|e| format!("template action {{{{{action}}}}}: {e}"))?);
    }
    out.push_str(rest);
    Ok(out)
}

fn action_value(action: &str, data: &Value) -> Result<String, String> {
    let words = split_words(action)?;
    match words.as_slice() {
        [w] if w.starts_with('"') => literal(w),
        [w] => Ok(go_string(lookup(data, w)?)),
        [f, arg] if f == "json" => Ok(serde_json::to_string(lookup(data, arg)?).expect("json values serialise")),
        [f, arg, key] if f == "index" => {
            let v = lookup(data, arg)?;
            let item = match (v, key.parse::<usize>()) {
                (Value::Array(a), Ok(i)) => a.get(i).ok_or_else(|| format!("index {i} out of range (length {})", a.len()))?,
                (Value::Object(m), _) => {
                    let k = literal(key)?;
                    m.get(&k).unwrap_or(&Value::Null)
                }
                _ => return Err(format!("cannot index {arg} with {key}")),
            };
            Ok(go_string(item))
        }
        [f, arg, sep] if f == "join" => {
            let sep = literal(sep)?;
            match lookup(data, arg)? {
                Value::Array(a) => Ok(a.iter().map(go_string).collect::<Vec<_>>().join(&sep)),
                Value::Null => Ok(String::new()),
                _ => Err(format!("join needs a list, and {arg} is not one")),
            }
        }
        _ => Err(
            "unsupported (hint: kiln takes .Field.Path, json .Field, index .Field \"key\", join .Field \"sep\" and \"literals\"; use --format json with jq for more)"
                .into(),
        ),
    }
}

/// Splits an action into words, keeping quoted strings whole.
fn split_words(action: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = action.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' {
            let mut w = String::from('"');
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                w.push(c);
                if c == '\\' {
                    w.extend(chars.next());
                } else if c == '"' {
                    closed = true;
                    break;
                }
            }
            if !closed {
                return Err("unterminated string".into());
            }
            words.push(w);
        } else {
            let mut w = String::new();
            while let Some(&c) = chars.peek().filter(|c| !c.is_whitespace()) {
                w.push(c);
                chars.next();
            }
            words.push(w);
        }
    }
    if words.is_empty() {
        return Err("empty action".into());
    }
    Ok(words)
}

/// A Go string literal (`"a\nb"`), or a bare word as itself.
fn literal(word: &str) -> Result<String, String> {
    let Some(inner) = word.strip_prefix('"').and_then(|w| w.strip_suffix('"')) else {
        return Ok(word.to_string());
    };
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('\\') => out.push('\\'),
            Some('"') => out.push('"'),
            other => return Err(format!("unknown escape \\{}", other.unwrap_or(' '))),
        }
    }
    Ok(out)
}

/// Follows `.A.B` from `data`; `.` is `data` itself.
fn lookup<'a>(data: &'a Value, path: &str) -> Result<&'a Value, String> {
    let Some(path) = path.strip_prefix('.') else {
        return Err(format!(
            "{path:?} is not a field (hint: fields start with a dot, e.g. .Digest)"
        ));
    };
    let mut v = data;
    if path.is_empty() {
        return Ok(v);
    }
    let mut seen = String::new();
    for field in path.split('.') {
        seen.push('.');
        seen.push_str(field);
        v = match v {
            Value::Object(m) => match m.get(field) {
                Some(x) => x,
                None => {
                    return Err(format!(
                        "no field {seen} (hint: fields here are {})",
                        m.keys().map(|k| format!(".{k}")).collect::<Vec<_>>().join(", ")
                    ));
                }
            },
            // As in Go, a missing map or an absent value has no fields, and prints as such.
            Value::Null => return Ok(&Value::Null),
            _ => return Err(format!("{seen}: the value before it has no fields")),
        };
    }
    Ok(v)
}

/// A value as Go's template package prints it.
fn go_string(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => format!("[{}]", a.iter().map(go_string).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => format!(
            "map[{}]",
            m.iter()
                .map(|(k, v)| format!("{k}:{}", go_string(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> Value {
        serde_json::json!({
            "Digest": "sha256:abc",
            "Size": 42,
            "Config": {"Env": ["A=1", "B=2"], "Labels": {"k": "v", "a.b": "c"}, "User": null},
        })
    }

    #[test]
    fn renders_the_docker_habits() {
        let d = data();
        assert_eq!(render("{{.Digest}}", &d).unwrap(), "sha256:abc");
        assert_eq!(
            render("id={{ .Digest }} size={{.Size}}", &d).unwrap(),
            "id=sha256:abc size=42"
        );
        assert_eq!(render("{{.Config.Env}}", &d).unwrap(), "[A=1 B=2]");
        assert_eq!(render("{{json .Config.Env}}", &d).unwrap(), r#"["A=1","B=2"]"#);
        assert_eq!(render(r#"{{index .Config.Labels "a.b"}}"#, &d).unwrap(), "c");
        assert_eq!(render("{{index .Config.Env 1}}", &d).unwrap(), "B=2");
        assert_eq!(render(r#"{{join .Config.Env ","}}"#, &d).unwrap(), "A=1,B=2");
        assert_eq!(render("{{.Config.Labels}}", &d).unwrap(), "map[a.b:c k:v]");
        assert_eq!(render("{{.Config.User}}", &d).unwrap(), "<no value>");
        assert_eq!(render(r#"a{{"\n"}}b"#, &d).unwrap(), "a\nb");
        assert_eq!(render("a  {{- .Size -}}  b", &d).unwrap(), "a42b");
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        let d = data();
        let e = render("{{.Nope}}", &d).unwrap_err();
        assert!(e.contains("no field .Nope") && e.contains(".Digest"), "{e}");
        assert!(
            render("{{range .Config.Env}}{{.}}{{end}}", &d)
                .unwrap_err()
                .contains("unsupported")
        );
        assert!(render("{{.Digest", &d).is_err());
        assert!(render("{{Digest}}", &d).is_err());
        assert!(render("{{.Digest.X}}", &d).unwrap_err().contains("no fields"));
    }
}
