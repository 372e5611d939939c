//! Package URLs (purl spec): `pkg:TYPE/NAMESPACE/NAME@VERSION?QUALIFIERS`.
//!
//! Written here rather than with the `packageurl` crate: kiln only formats purls (never
//! parses them), the rules that matter are the percent-encoding set and sorted qualifiers,
//! and keeping them in one small function makes the output easy to check against syft's.

/// Percent-encodes everything but the purl spec's unreserved characters (and `:`, which
/// the spec allows unencoded, as in Debian epochs `1:2.3`).
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Formats a purl. `namespace` may contain `/` (each segment is encoded on its own);
/// qualifiers with empty values are left out, the rest sorted by key.
pub fn purl(kind: &str, namespace: Option<&str>, name: &str, version: &str, qualifiers: &[(&str, &str)]) -> String {
    let mut s = format!("pkg:{kind}/");
    if let Some(ns) = namespace.filter(|n| !n.is_empty()) {
        for seg in ns.split('/').filter(|s| !s.is_empty()) {
            s.push_str(&enc(seg));
            s.push('/');
        }
    }
    s.push_str(&enc(name));
    if !version.is_empty() {
        s.push('@');
        s.push_str(&enc(version));
    }
    let mut q: Vec<(&str, &str)> = qualifiers.iter().copied().filter(|(_, v)| !v.is_empty()).collect();
    q.sort();
    for (i, (k, v)) in q.iter().enumerate() {
        s.push(if i == 0 { '?' } else { '&' });
        s.push_str(k);
        s.push('=');
        s.push_str(&enc(v));
    }
    s
}

/// PyPI names are normalised: lower case, runs of `-_.` become `-`.
pub fn pypi_name(name: &str) -> String {
    let mut out = String::new();
    let mut sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
        } else {
            if sep && !out.is_empty() {
                out.push('-');
            }
            sep = false;
            out.extend(c.to_lowercase());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(
            purl(
                "deb",
                Some("debian"),
                "libc6",
                "2.36-9+deb12u4",
                &[("arch", "amd64"), ("distro", "debian-12")]
            ),
            "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12"
        );
        assert_eq!(
            purl("npm", Some("@babel"), "core", "7.0.0", &[]),
            "pkg:npm/%40babel/core@7.0.0"
        );
        assert_eq!(
            purl("golang", Some("github.com/a"), "b", "v1.0.0", &[]),
            "pkg:golang/github.com/a/b@v1.0.0"
        );
        assert_eq!(
            purl("deb", Some("debian"), "x", "1:2.0", &[("upstream", "")]),
            "pkg:deb/debian/x@1:2.0"
        );
        assert_eq!(pypi_name("Foo_Bar.baz"), "foo-bar-baz");
    }
}
