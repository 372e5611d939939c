//! Globs over image references and predicate strings. In image globs `*` stays within one
//! path segment (never crossing `/`) and `**` crosses them, as in policy-controller and
//! Kyverno; in value globs (`attestations.match`) `*` matches anything.

/// True when `text` matches `pattern`; `*` does not cross `sep` (`None`: crosses
/// everything), `**` always does, `?` is one character.
fn matches_with(pattern: &[char], text: &[char], sep: Option<char>) -> bool {
    // Iterative backtracking over the last star: linear in practice, no recursion depth.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize, bool)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == '*' {
            let double = p + 1 < pattern.len() && pattern[p + 1] == '*';
            let skip = if double { 2 } else { 1 };
            star = Some((p + skip, t, double || sep.is_none()));
            p += skip;
            continue;
        }
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
            continue;
        }
        match star {
            Some((sp, st, crosses)) if crosses || Some(text[st]) != sep => {
                star = Some((sp, st + 1, crosses));
                p = sp;
                t = st + 1;
            }
            _ => return false,
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

/// Image glob: `*` within a segment, `**` across segments.
pub fn image_matches(pattern: &str, reference: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = reference.chars().collect();
    matches_with(&p, &t, Some('/'))
}

/// Value glob: `*` matches any run of characters.
pub fn value_matches(pattern: &str, value: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = value.chars().collect();
    matches_with(&p, &t, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_globs() {
        assert!(image_matches(
            "registry.example.com/prod/**",
            "registry.example.com/prod/a/b:1"
        ));
        assert!(image_matches("127.0.0.1:*/prod/**", "127.0.0.1:5000/prod/app:1"));
        assert!(!image_matches("127.0.0.1:*/prod/**", "127.0.0.1:5000/dev/prod/app:1"));
        assert!(image_matches("app:*", "app:1"));
        assert!(!image_matches("*", "a/b"));
        assert!(image_matches("**", "a/b"));
        assert!(!image_matches("prod/*", "prod/a/b"));
        assert!(image_matches("prod/*", "prod/a"));
    }

    #[test]
    fn value_globs() {
        assert!(value_matches(
            "git+https://example.com/team/*",
            "git+https://example.com/team/x/y"
        ));
        assert!(!value_matches(
            "git+https://example.com/team/*",
            "git+https://example.com/other/x"
        ));
        assert!(value_matches("exact", "exact"));
        assert!(!value_matches("exact", "exactly"));
    }
}
