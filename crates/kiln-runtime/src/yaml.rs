//! A small block-style YAML writer for the manifests `kiln harden` prints. Strings are
//! always double-quoted with JSON escapes (valid YAML), so no value can change type or break
//! out of its place; maps keep serde_json's order.

use serde_json::Value;

/// Writes `v` as a YAML document.
pub fn to_string(v: &Value) -> String {
    let mut out = String::new();
    write(&mut out, v, 0, false);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => serde_json::to_string(s).expect("strings serialise"),
        Value::Array(a) if a.is_empty() => "[]".into(),
        Value::Object(o) if o.is_empty() => "{}".into(),
        other => other.to_string(),
    }
}

/// A key is written plain when it cannot be read as anything but that string.
fn key(k: &str) -> String {
    let plain = k.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && k.chars().all(|c| c.is_ascii_alphanumeric() || "_.-/".contains(c))
        && !matches!(
            k.to_ascii_lowercase().as_str(),
            "y" | "n" | "yes" | "no" | "on" | "off" | "true" | "false" | "null"
        );
    if plain {
        k.to_string()
    } else {
        scalar(&Value::String(k.to_string()))
    }
}

fn is_block(v: &Value) -> bool {
    matches!(v, Value::Array(a) if !a.is_empty()) || matches!(v, Value::Object(o) if !o.is_empty())
}

/// `inline` is true when the first line continues a `- ` already written.
fn write(out: &mut String, v: &Value, indent: usize, inline: bool) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(o) if !o.is_empty() => {
            for (i, (k, val)) in o.iter().enumerate() {
                if !(inline && i == 0) {
                    out.push_str(&pad);
                }
                out.push_str(&key(k));
                out.push(':');
                if is_block(val) {
                    out.push('\n');
                    let child = if matches!(val, Value::Array(_)) {
                        indent
                    } else {
                        indent + 2
                    };
                    write(out, val, child, false);
                } else {
                    out.push(' ');
                    out.push_str(&scalar(val));
                    out.push('\n');
                }
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for item in a {
                out.push_str(&pad);
                out.push_str("- ");
                if is_block(item) {
                    if matches!(item, Value::Array(_)) {
                        out.push('\n');
                        write(out, item, indent + 2, false);
                    } else {
                        write(out, item, indent + 2, true);
                    }
                } else {
                    out.push_str(&scalar(item));
                    out.push('\n');
                }
            }
        }
        other => {
            out.push_str(&pad);
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_maps_and_lists() {
        let v = serde_json::json!({"a": {"b": [1, {"c": "x", "d": []}]}, "e": true});
        assert_eq!(key("on"), "\"on\"");
        assert_eq!(key("a b"), "\"a b\"");
        assert_eq!(to_string(&v), "a:\n  b:\n  - 1\n  - c: \"x\"\n    d: []\ne: true\n");
    }
}
