//! Version order per ecosystem, as each ecosystem's own tools define it.
//!
//! A vulnerability range is only as right as the comparison behind it: `1.0~rc1` is older
//! than `1.0` to dpkg, `1.0rc1` is older than `1.0` to pip, and `1.0.0-rc.1` is older than
//! `1.0.0` to npm, while a naive string or numeric comparison gets at least one of them wrong.
//! Debian's order comes from `kiln-debian` (the resolver uses the same comparator, and both
//! are tested against `dpkg --compare-versions`); PEP 440 is implemented here and tested
//! against Python's `packaging`; npm and crates.io use the `semver` crate's precedence and
//! are tested against npm's `semver` package.

use std::cmp::Ordering;

/// Which comparison rules apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// dpkg (Debian, Ubuntu).
    Dpkg,
    /// apk-tools (Alpine).
    Apk,
    /// PEP 440 (PyPI).
    Pep440,
    /// Semantic Versioning 2.0 precedence (npm, crates.io).
    Semver,
    /// Go module versions (`v1.2.3`, pseudo-versions, `+incompatible`, `go1.22.1`).
    Go,
    /// Maven's ComparableVersion.
    Maven,
    /// Numbers compared as numbers, everything else as text.
    Generic,
}

impl Scheme {
    /// The scheme of an OSV ecosystem name (`Debian:12`, `PyPI`, `crates.io`…).
    pub fn for_ecosystem(ecosystem: &str) -> Scheme {
        let base = ecosystem.split(':').next().unwrap_or(ecosystem);
        match base {
            "Debian" | "Ubuntu" => Scheme::Dpkg,
            "Alpine" | "Wolfi" | "Chainguard" => Scheme::Apk,
            "PyPI" => Scheme::Pep440,
            "npm" | "crates.io" => Scheme::Semver,
            "Go" => Scheme::Go,
            "Maven" => Scheme::Maven,
            _ => Scheme::Generic,
        }
    }

    /// Compares two versions under this scheme. Versions the scheme cannot parse fall back to
    /// the generic order, so a range check never panics on odd data.
    pub fn compare(self, a: &str, b: &str) -> Ordering {
        match self {
            Scheme::Dpkg => kiln_debian::version::compare(a, b),
            Scheme::Apk => apk_compare(a, b),
            Scheme::Pep440 => match (Pep440::parse(a), Pep440::parse(b)) {
                (Some(x), Some(y)) => x.cmp(&y),
                _ => generic_compare(a, b),
            },
            Scheme::Semver => semver_compare(a, b),
            Scheme::Go => {
                let norm = |s: &str| {
                    let s = s.trim();
                    let s = s.strip_prefix("go").unwrap_or(s);
                    let s = s.strip_prefix('v').unwrap_or(s);
                    s.trim_end_matches("+incompatible").to_string()
                };
                semver_compare(&norm(a), &norm(b))
            }
            Scheme::Maven => maven_compare(a, b),
            Scheme::Generic => generic_compare(a, b),
        }
    }
}

/// npm-style semver precedence (build metadata ignored); a leading `v` or `=` is allowed as
/// npm allows it. Go's `1.22` (no patch) is padded.
pub fn semver_compare(a: &str, b: &str) -> Ordering {
    fn parse(s: &str) -> Option<semver::Version> {
        let s = s.trim().trim_start_matches('=').trim_start_matches('v');
        semver::Version::parse(s).ok().or_else(|| {
            // `1.22` or `1` (Go toolchains, loose data): pad the missing parts.
            let (core, rest) = match s.find(['-', '+']) {
                Some(i) => (&s[..i], &s[i..]),
                None => (s, ""),
            };
            let n = core.split('.').count();
            if n >= 3 || core.is_empty() {
                return None;
            }
            let padded = format!("{core}{}{rest}", ".0".repeat(3 - n));
            semver::Version::parse(&padded).ok()
        })
    }
    match (parse(a), parse(b)) {
        (Some(x), Some(y)) => x.cmp_precedence(&y),
        _ => generic_compare(a, b),
    }
}

/// Digit runs compared as numbers, other runs as text; a longer version wins a tie.
pub fn generic_compare(a: &str, b: &str) -> Ordering {
    let ta = tokens(a);
    let tb = tokens(b);
    for (x, y) in ta.iter().zip(tb.iter()) {
        let o = match (x, y) {
            (Tok::Num(x), Tok::Num(y)) => cmp_digits(x, y),
            (Tok::Str(x), Tok::Str(y)) => x.cmp(y),
            (Tok::Num(_), Tok::Str(_)) => Ordering::Greater,
            (Tok::Str(_), Tok::Num(_)) => Ordering::Less,
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    ta.len().cmp(&tb.len())
}

#[derive(Debug)]
enum Tok<'a> {
    Num(&'a str),
    Str(&'a str),
}

fn tokens(s: &str) -> Vec<Tok<'_>> {
    let mut out = vec![];
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_alphanumeric() {
            i += 1;
            continue;
        }
        let start = i;
        let digit = b[i].is_ascii_digit();
        while i < b.len() && b[i].is_ascii_alphanumeric() && b[i].is_ascii_digit() == digit {
            i += 1;
        }
        out.push(if digit {
            Tok::Num(&s[start..i])
        } else {
            Tok::Str(&s[start..i])
        });
    }
    out
}

/// Compares two digit strings as numbers of any length.
fn cmp_digits(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

// ── PEP 440 ─────────────────────────────────────────────────────────────

/// A PEP 440 version, parsed as `packaging.version.Version` does (normalising spellings such
/// as `1.0-RC1`, `1.0.post`, `v1.0`), with its ordering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pep440 {
    epoch: u64,
    release: Vec<u64>,
    /// (0 = a, 1 = b, 2 = rc, number).
    pre: Option<(u8, u64)>,
    post: Option<u64>,
    dev: Option<u64>,
    local: Vec<LocalPart>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum LocalPart {
    Num(u64),
    Str(String),
}

impl Pep440 {
    /// Parses a version; `None` for what pip would call an invalid version.
    pub fn parse(s: &str) -> Option<Pep440> {
        let s = s.trim().to_ascii_lowercase();
        let mut p = Cursor { b: s.as_bytes(), i: 0 };
        p.eat(b'v');
        let first = p.num()?;
        let (epoch, mut release) = if p.eat(b'!') {
            (first, vec![p.num()?])
        } else {
            (first, vec![])
        };
        let (epoch, release) = if release.is_empty() {
            release.push(epoch);
            (0, release)
        } else {
            (epoch, release)
        };
        let mut release = release;
        while p.peek() == Some(b'.') && p.peek_at(1).is_some_and(|c| c.is_ascii_digit()) {
            p.i += 1;
            release.push(p.num()?);
        }
        // Pre-release.
        let mut pre = None;
        let save = p.i;
        p.sep();
        let kinds: [(&str, u8); 8] = [
            ("preview", 2),
            ("alpha", 0),
            ("beta", 1),
            ("pre", 2),
            ("rc", 2),
            ("a", 0),
            ("b", 1),
            ("c", 2),
        ];
        if let Some(&(word, k)) = kinds.iter().find(|(w, _)| p.rest().starts_with(w.as_bytes())) {
            p.i += word.len();
            p.sep();
            // packaging's `[-_.]?[0-9]*` keeps a separator with no number after it.
            let n = p.num().unwrap_or_default();
            pre = Some((k, n));
        } else {
            p.i = save;
        }
        // Post-release: `-N`, or [sep](post|rev|r)[sep][N].
        let mut post = None;
        let save = p.i;
        if p.peek() == Some(b'-') && p.peek_at(1).is_some_and(|c| c.is_ascii_digit()) {
            p.i += 1;
            post = Some(p.num()?);
        } else {
            p.sep();
            if let Some(word) = ["post", "rev", "r"].iter().find(|w| p.rest().starts_with(w.as_bytes())) {
                p.i += word.len();
                p.sep();
                post = Some(p.num().unwrap_or_default());
            } else {
                p.i = save;
            }
        }
        // Dev release.
        let mut dev = None;
        let save = p.i;
        p.sep();
        if p.rest().starts_with(b"dev") {
            p.i += 3;
            p.sep();
            dev = Some(p.num().unwrap_or_default());
        } else {
            p.i = save;
        }
        // Local version.
        let mut local = vec![];
        if p.eat(b'+') {
            let rest = std::str::from_utf8(p.rest()).ok()?;
            for part in rest.split(['.', '-', '_']) {
                if part.is_empty() || !part.bytes().all(|c| c.is_ascii_alphanumeric()) {
                    return None;
                }
                local.push(if part.bytes().all(|c| c.is_ascii_digit()) {
                    LocalPart::Num(part.parse().ok()?)
                } else {
                    LocalPart::Str(part.to_string())
                });
            }
            p.i = p.b.len();
        }
        if p.i != p.b.len() {
            return None;
        }
        Some(Pep440 {
            epoch,
            release,
            pre,
            post,
            dev,
            local,
        })
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
    fn peek_at(&self, n: usize) -> Option<u8> {
        self.b.get(self.i + n).copied()
    }
    fn rest(&self) -> &[u8] {
        &self.b[self.i..]
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn sep(&mut self) {
        if matches!(self.peek(), Some(b'.' | b'-' | b'_')) {
            self.i += 1;
        }
    }
    fn num(&mut self) -> Option<u64> {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        if start == self.i {
            return None;
        }
        let s = std::str::from_utf8(&self.b[start..self.i]).ok()?;
        Some(s.parse().unwrap_or(u64::MAX))
    }
}

/// A sort key component with infinities, as packaging's `_cmpkey` uses.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Inf<T> {
    Neg,
    Val(T),
    Pos,
}

impl Ord for Pep440 {
    fn cmp(&self, other: &Self) -> Ordering {
        fn release(r: &[u64]) -> &[u64] {
            let mut n = r.len();
            while n > 0 && r[n - 1] == 0 {
                n -= 1;
            }
            &r[..n]
        }
        fn pre(v: &Pep440) -> Inf<(u8, u64)> {
            match (v.pre, v.post, v.dev) {
                (None, None, Some(_)) => Inf::Neg,
                (None, _, _) => Inf::Pos,
                (Some(p), _, _) => Inf::Val(p),
            }
        }
        fn post(v: &Pep440) -> Inf<u64> {
            v.post.map_or(Inf::Neg, Inf::Val)
        }
        fn dev(v: &Pep440) -> Inf<u64> {
            v.dev.map_or(Inf::Pos, Inf::Val)
        }
        fn local(v: &Pep440) -> Option<Vec<(Inf<u64>, &str)>> {
            if v.local.is_empty() {
                return None;
            }
            Some(
                v.local
                    .iter()
                    .map(|p| match p {
                        LocalPart::Num(n) => (Inf::Val(*n), ""),
                        LocalPart::Str(s) => (Inf::Neg, s.as_str()),
                    })
                    .collect(),
            )
        }
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| release(&self.release).cmp(release(&other.release)))
            .then_with(|| pre(self).cmp(&pre(other)))
            .then_with(|| post(self).cmp(&post(other)))
            .then_with(|| dev(self).cmp(&dev(other)))
            .then_with(|| local(self).cmp(&local(other)))
    }
}

impl PartialOrd for Pep440 {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

// ── apk ─────────────────────────────────────────────────────────────────

/// apk-tools' order: dotted numbers, an optional letter, `_suffix[N]` parts (`_alpha` <
/// `_beta` < `_pre` < `_rc` < none < `_cvs` < `_svn` < `_git` < `_hg` < `_p`), then `-rN`.
pub fn apk_compare(a: &str, b: &str) -> Ordering {
    struct V<'a> {
        nums: Vec<&'a str>,
        letter: Option<u8>,
        suffixes: Vec<(i32, &'a str)>,
        rev: &'a str,
    }
    fn parse(s: &str) -> Option<V<'_>> {
        let (main, rev) = match s.rsplit_once("-r") {
            Some((m, r)) if r.bytes().all(|c| c.is_ascii_digit()) && !r.is_empty() => (m, r),
            _ => (s, "0"),
        };
        let mut parts = main.split('_');
        let head = parts.next()?;
        let digits_end = head
            .char_indices()
            .rev()
            .find(|(_, c)| c.is_ascii_digit())
            .map(|(i, _)| i + 1)?;
        let (numpart, tail) = head.split_at(digits_end);
        let letter = match tail.as_bytes() {
            [] => None,
            [c] if c.is_ascii_lowercase() => Some(*c),
            _ => return None,
        };
        let nums: Vec<&str> = numpart.split('.').collect();
        if nums
            .iter()
            .any(|n| n.is_empty() || !n.bytes().all(|c| c.is_ascii_digit()))
        {
            return None;
        }
        let mut suffixes = vec![];
        for p in parts {
            let i = p.find(|c: char| c.is_ascii_digit()).unwrap_or(p.len());
            let (word, n) = p.split_at(i);
            let rank = match word {
                "alpha" => -4,
                "beta" => -3,
                "pre" => -2,
                "rc" => -1,
                "cvs" => 1,
                "svn" => 2,
                "git" => 3,
                "hg" => 4,
                "p" => 5,
                _ => return None,
            };
            suffixes.push((rank, if n.is_empty() { "0" } else { n }));
        }
        Some(V {
            nums,
            letter,
            suffixes,
            rev,
        })
    }
    let (Some(x), Some(y)) = (parse(a.trim()), parse(b.trim())) else {
        return generic_compare(a, b);
    };
    for (m, n) in x.nums.iter().zip(y.nums.iter()) {
        let o = cmp_digits(m, n);
        if o != Ordering::Equal {
            return o;
        }
    }
    let o = x.nums.len().cmp(&y.nums.len());
    if o != Ordering::Equal {
        return o;
    }
    let o = x.letter.cmp(&y.letter);
    if o != Ordering::Equal {
        return o;
    }
    let len = x.suffixes.len().max(y.suffixes.len());
    for i in 0..len {
        let sx = x.suffixes.get(i).copied().unwrap_or((0, "0"));
        let sy = y.suffixes.get(i).copied().unwrap_or((0, "0"));
        let o = sx.0.cmp(&sy.0).then_with(|| cmp_digits(sx.1, sy.1));
        if o != Ordering::Equal {
            return o;
        }
    }
    cmp_digits(x.rev, y.rev)
}

// ── Maven ───────────────────────────────────────────────────────────────

/// Maven's ComparableVersion, simplified: numbers numerically, known qualifiers in order
/// (alpha < beta < milestone < rc < snapshot < release < sp), unknown ones after them as
/// text; a missing part counts as 0 or as the release qualifier.
pub fn maven_compare(a: &str, b: &str) -> Ordering {
    #[derive(Debug)]
    enum Item {
        Num(String),
        Qual(String),
    }
    fn items(s: &str) -> Vec<Item> {
        let s = s.trim().to_ascii_lowercase();
        let mut out = vec![];
        for tok in tokens(&s) {
            match tok {
                Tok::Num(n) => out.push(Item::Num(n.to_string())),
                Tok::Str(q) => out.push(Item::Qual(q.to_string())),
            }
        }
        // Trailing zeros and release qualifiers do not count (1.0 == 1 == 1-final).
        while matches!(out.last(), Some(Item::Num(n)) if n.trim_start_matches('0').is_empty())
            || matches!(out.last(), Some(Item::Qual(q)) if qual_rank(q) == (5, ""))
        {
            out.pop();
        }
        out
    }
    fn qual_rank(q: &str) -> (u8, &str) {
        match q {
            "alpha" | "a" => (0, ""),
            "beta" | "b" => (1, ""),
            "milestone" | "m" => (2, ""),
            "rc" | "cr" => (3, ""),
            "snapshot" => (4, ""),
            "" | "ga" | "final" | "release" => (5, ""),
            "sp" => (6, ""),
            other => (7, other),
        }
    }
    let (x, y) = (items(a), items(b));
    let len = x.len().max(y.len());
    for i in 0..len {
        let o = match (x.get(i), y.get(i)) {
            (Some(Item::Num(m)), Some(Item::Num(n))) => cmp_digits(m, n),
            (Some(Item::Qual(p)), Some(Item::Qual(q))) => qual_rank(p).cmp(&qual_rank(q)),
            (Some(Item::Num(_)), Some(Item::Qual(_))) => Ordering::Greater,
            (Some(Item::Qual(_)), Some(Item::Num(_))) => Ordering::Less,
            (Some(Item::Num(n)), None) => cmp_digits(n, "0"),
            (None, Some(Item::Num(n))) => cmp_digits("0", n),
            (Some(Item::Qual(q)), None) => qual_rank(q).cmp(&(5, "")),
            (None, Some(Item::Qual(q))) => (5, "").cmp(&qual_rank(q)),
            (None, None) => Ordering::Equal,
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn pep440_order() {
        let ordered = [
            "1.0.dev1",
            "1.0a1",
            "1.0a2.dev1",
            "1.0a2",
            "1.0b1",
            "1.0rc1",
            "1.0",
            "1.0+abc",
            "1.0+5",
            "1.0.post1",
            "1.1",
            "2!0.1",
        ];
        for w in ordered.windows(2) {
            assert_eq!(Scheme::Pep440.compare(w[0], w[1]), Less, "{} < {}", w[0], w[1]);
        }
        assert_eq!(Scheme::Pep440.compare("1.0", "1.0.0"), Equal);
        assert_eq!(Scheme::Pep440.compare("1.0-RC1", "1.0rc1"), Equal);
        assert_eq!(Scheme::Pep440.compare("1.0-1", "1.0.post1"), Equal);
        assert!(Pep440::parse("1.0+").is_none());
        assert!(Pep440::parse("x1").is_none());
    }

    #[test]
    fn semver_and_go() {
        assert_eq!(Scheme::Semver.compare("1.0.0-rc.1", "1.0.0"), Less);
        assert_eq!(Scheme::Semver.compare("1.0.0-alpha.10", "1.0.0-alpha.9"), Greater);
        assert_eq!(Scheme::Semver.compare("1.0.0+b1", "1.0.0+b2"), Equal);
        assert_eq!(Scheme::Go.compare("v1.2.3", "1.2.10"), Less);
        assert_eq!(Scheme::Go.compare("go1.22", "1.21.9"), Greater);
        assert_eq!(Scheme::Go.compare("v2.0.0+incompatible", "v2.0.0"), Equal);
    }

    #[test]
    fn apk_order() {
        let ordered = [
            "1.2_alpha1",
            "1.2_rc2",
            "1.2",
            "1.2-r1",
            "1.2_p1",
            "1.2a",
            "1.2.1",
            "1.10",
        ];
        for w in ordered.windows(2) {
            assert_eq!(apk_compare(w[0], w[1]), Less, "{} < {}", w[0], w[1]);
        }
    }

    #[test]
    fn maven_order() {
        let ordered = [
            "1.0-alpha1",
            "1.0-beta",
            "1.0-rc1",
            "1.0-SNAPSHOT",
            "1.0",
            "1.0-sp1",
            "1.0.1",
            "1.1",
        ];
        for w in ordered.windows(2) {
            assert_eq!(maven_compare(w[0], w[1]), Less, "{} < {}", w[0], w[1]);
        }
        assert_eq!(maven_compare("1.0.0", "1"), Equal);
        assert_eq!(maven_compare("1.0-final", "1.0"), Equal);
    }

    #[test]
    fn dpkg_and_generic() {
        assert_eq!(Scheme::for_ecosystem("Debian:12").compare("1.0~rc1", "1.0"), Less);
        assert_eq!(generic_compare("1.10", "1.9"), Greater);
    }
}
