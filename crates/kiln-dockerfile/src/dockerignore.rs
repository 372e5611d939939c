//! `.dockerignore` matching with Docker's exact semantics
//! (`moby/patternmatcher` + `ignorefile`, as used by BuildKit and the CLI).
//!
//! These differ from `.gitignore` in ways users notice, which is why kiln
//! does not use the `ignore`/`globset` crates:
//!
//! * patterns are anchored at the context root: `foo` excludes `foo` and
//!   everything below it, but not `a/foo`; `*.go` only matches top-level
//!   files, `**/*.go` matches at any depth;
//! * `*` and `?` never match `/`; `**` matches any number of directories
//!   (`**/` may match none); `[...]` classes and `\` escapes follow Go's
//!   `filepath.Match` syntax;
//! * the *last* matching line wins, and `!pattern` re-includes;
//! * a path is matched if the pattern matches it *or any of its parents*;
//! * each line is trimmed and cleaned like Go's `filepath.Clean` (so
//!   `foo/`, `./foo` and `/foo` all mean `foo`); only lines whose very first
//!   character is `#` are comments.

use std::fmt;
use std::path::{Path, PathBuf};

/// A malformed ignore pattern (e.g. an unclosed `[`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError {
    /// 1-based line in the ignore file, when parsed from a file.
    pub line: Option<usize>,
    /// The pattern as cleaned.
    pub pattern: String,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "line {l}: invalid pattern {:?}: {}", self.pattern, self.message),
            None => write!(f, "invalid pattern {:?}: {}", self.pattern, self.message),
        }
    }
}

impl std::error::Error for PatternError {}

/// A compiled set of ignore patterns.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone)]
struct Pattern {
    /// Cleaned pattern without the leading `!`.
    text: String,
    exclusion: bool,
    mode: Mode,
    toks: Vec<Tok>,
}

/// patternmatcher's fast paths; they are observable (see `Suffix`).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// Plain text: equality.
    Exact,
    /// `lit/**`: prefix `lit/`.
    Prefix,
    /// `**lit` with a literal rest: `ends_with(rest)`, or equality with the
    /// rest minus its leading `/`. Note `**foo` thus matches `afoo`.
    Suffix,
    /// Anything else: the token matcher (Go regexp semantics).
    Glob,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Lit(char),
    /// `*`: `[^/]*`
    Star,
    /// `?`: `[^/]`
    Any,
    /// `**` before more pattern: `(.*/)?`
    DStarDir,
    /// `**` at the end: `.*`
    DStarEnd,
    /// `[...]`, `[^...]`
    Class {
        neg: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Matcher {
    /// Parse the contents of a `.dockerignore` file.
    pub fn parse(text: &str) -> Result<Matcher, PatternError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut patterns = Vec::new();
        for (n, line) in text.split('\n').enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.starts_with('#') {
                continue;
            }
            let mut p = line.trim();
            if p.is_empty() {
                continue;
            }
            let invert = p.starts_with('!');
            if invert {
                p = p[1..].trim();
            }
            let mut cleaned = String::new();
            if !p.is_empty() {
                cleaned = clean(p);
                if cleaned.len() > 1 && cleaned.starts_with('/') {
                    cleaned.remove(0);
                }
            }
            if invert {
                cleaned.insert(0, '!');
            }
            if let Some(pat) = Pattern::new(&cleaned).map_err(|mut e| {
                e.line = Some(n + 1);
                e
            })? {
                patterns.push(pat);
            }
        }
        Ok(Matcher { patterns })
    }

    /// Build from patterns given one by one (e.g. `COPY --exclude=…`),
    /// without the file-level processing (comments, leading `/`).
    pub fn from_patterns<S: AsRef<str>>(patterns: &[S]) -> Result<Matcher, PatternError> {
        let mut out = Vec::new();
        for p in patterns {
            if let Some(pat) = Pattern::new(p.as_ref())? {
                out.push(pat);
            }
        }
        Ok(Matcher { patterns: out })
    }

    /// Whether there are no patterns at all (nothing is ever excluded).
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether any `!` exception exists; without one, an excluded directory
    /// can always be skipped whole.
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }

    /// Whether `rel_path` (relative to the context root, `/`-separated) is
    /// left out of the context. A path inside an excluded directory is
    /// excluded unless a later `!` pattern re-includes it or a parent.
    /// The context root itself (`.`, `""`) is never excluded.
    pub fn is_excluded(&self, rel_path: &str) -> bool {
        let file = normalize(rel_path);
        if file == "." {
            return false;
        }
        let parents: Vec<&str> = match file.rfind('/') {
            Some(i) => {
                let parent = &file[..i];
                parent
                    .match_indices('/')
                    .map(|(j, _)| &parent[..j])
                    .chain(std::iter::once(parent))
                    .collect()
            }
            None => Vec::new(),
        };
        let mut matched = false;
        for p in &self.patterns {
            // An exclusion only matters while excluded, an include only while
            // included.
            if p.exclusion != matched {
                continue;
            }
            if p.matches(&file) || parents.iter().any(|d| p.matches(d)) {
                matched = !p.exclusion;
            }
        }
        matched
    }

    /// Whether some `!` pattern could re-include a path strictly below the
    /// directory `rel_dir`. Conservative: `true` when unsure. When it is
    /// `false` and the directory is excluded, every path below it is
    /// excluded too, so a walker may skip the directory whole.
    pub fn dir_may_have_exceptions(&self, rel_dir: &str) -> bool {
        let dir = normalize(rel_dir);
        let comps: Vec<&str> = if dir.is_empty() || dir == "." {
            Vec::new()
        } else {
            dir.split('/').collect()
        };
        self.patterns
            .iter()
            .filter(|p| p.exclusion)
            .any(|p| p.may_match_below(&comps))
    }

    /// `is_excluded(dir) && !dir_may_have_exceptions(dir)`: the walker's
    /// question, "may I skip this whole directory?".
    pub fn can_skip_dir(&self, rel_dir: &str) -> bool {
        self.is_excluded(rel_dir) && !self.dir_may_have_exceptions(rel_dir)
    }
}

/// The ignore file that applies to a build: `<Dockerfile name>.dockerignore`
/// next to the Dockerfile (e.g. `build/app.Dockerfile.dockerignore`) wins
/// over `<context>/.dockerignore`. `dockerfile` is the path the Dockerfile
/// was read from. Returns `None` when neither file exists.
pub fn ignore_file_for(context: &Path, dockerfile: &Path) -> Option<PathBuf> {
    if let Some(name) = dockerfile.file_name() {
        let mut n = name.to_os_string();
        n.push(".dockerignore");
        let specific = dockerfile.with_file_name(n);
        if specific.is_file() {
            return Some(specific);
        }
    }
    let general = context.join(".dockerignore");
    general.is_file().then_some(general)
}

/// A relative, `/`-separated, cleaned path (`./a//b/` → `a/b`).
fn normalize(p: &str) -> String {
    let c = clean(p);
    let c = c.trim_start_matches('/');
    if c.is_empty() { ".".to_string() } else { c.to_string() }
}

/// Go's `filepath.Clean` on `/`-separated paths.
pub(crate) fn clean(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let rooted = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for comp in p.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            c => out.push(c),
        }
    }
    let s = out.join("/");
    match (rooted, s.is_empty()) {
        (true, _) => format!("/{s}"),
        (false, true) => ".".into(),
        (false, false) => s,
    }
}

impl Pattern {
    /// patternmatcher's `New` for one pattern: `Ok(None)` for blank ones.
    fn new(raw: &str) -> Result<Option<Pattern>, PatternError> {
        let p = raw.trim();
        if p.is_empty() {
            return Ok(None);
        }
        let p = clean(p);
        let (exclusion, body) = match p.strip_prefix('!') {
            Some("") => {
                return Err(PatternError {
                    line: None,
                    pattern: p.clone(),
                    message: "illegal exclusion pattern: \"!\"".into(),
                });
            }
            Some(b) => (true, b),
            None => (false, p.as_str()),
        };
        check_match_syntax(body).map_err(|message| PatternError {
            line: None,
            pattern: body.to_string(),
            message,
        })?;
        let (mode, toks) = compile(body);
        Ok(Some(Pattern {
            text: body.to_string(),
            exclusion,
            mode,
            toks,
        }))
    }

    fn matches(&self, path: &str) -> bool {
        match self.mode {
            Mode::Exact => path == self.text,
            Mode::Prefix => path.starts_with(&self.text[..self.text.len() - 2]),
            Mode::Suffix => {
                let suffix = &self.text[2..];
                path.ends_with(suffix) || suffix.strip_prefix('/').is_some_and(|s| path == s)
            }
            Mode::Glob => {
                let s: Vec<char> = path.chars().collect();
                glob_match(&self.toks, &s)
            }
        }
    }

    /// Could this pattern match some path strictly below `dir`?
    fn may_match_below(&self, dir: &[&str]) -> bool {
        if self.mode == Mode::Suffix {
            return true;
        }
        for (i, seg) in self.text.split('/').enumerate() {
            // A character class can match `/` itself (`[!-c]` spans it, as in
            // patternmatcher's regexp), and an escaped `/` is not a separator: the pattern's
            // segments then need not line up with path components, so be unsure.
            if seg.contains("**") || seg.contains('[') || seg.ends_with('\\') || i >= dir.len() {
                return true;
            }
            if check_match_syntax(seg).is_err() {
                return true;
            }
            let (_, toks) = compile(seg);
            let comp: Vec<char> = dir[i].chars().collect();
            if !glob_match(&toks, &comp) {
                return false;
            }
        }
        // The pattern only matches `dir` or an ancestor, which affects the
        // directory and everything below it alike.
        false
    }
}

/// Go `filepath.Match` syntax check (what patternmatcher validates with).
fn check_match_syntax(p: &str) -> Result<(), String> {
    let bad = |what: &str| Err(format!("syntax error in pattern: {what}"));
    let mut it = p.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '\\' if it.next().is_none() => return bad("trailing backslash"),
            '[' => {
                if it.peek() == Some(&'^') {
                    it.next();
                }
                let mut n = 0;
                loop {
                    if it.peek() == Some(&']') && n > 0 {
                        it.next();
                        break;
                    }
                    // lo
                    match it.next() {
                        None => return bad("unclosed character class"),
                        Some('-' | ']') => return bad("bad character range"),
                        Some('\\') => {
                            if it.next().is_none() {
                                return bad("trailing backslash");
                            }
                        }
                        Some(_) => {}
                    }
                    if it.peek().is_none() {
                        return bad("unclosed character class");
                    }
                    if it.peek() == Some(&'-') {
                        it.next();
                        match it.next() {
                            None => return bad("unclosed character class"),
                            Some('-' | ']') => return bad("bad character range"),
                            Some('\\') => {
                                if it.next().is_none() {
                                    return bad("trailing backslash");
                                }
                            }
                            Some(_) => {}
                        }
                        if it.peek().is_none() {
                            return bad("unclosed character class");
                        }
                    }
                    n += 1;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// patternmatcher's `compile`: tokens plus the fast-path mode.
fn compile(p: &str) -> (Mode, Vec<Tok>) {
    let chars: Vec<char> = p.chars().collect();
    let mut toks = Vec::new();
    let mut mode = Mode::Exact;
    let mut k = 0;
    let mut iter = 0;
    while k < chars.len() {
        let ch = chars[k];
        k += 1;
        match ch {
            '*' if chars.get(k) == Some(&'*') => {
                k += 1;
                if chars.get(k) == Some(&'/') {
                    k += 1;
                }
                if k >= chars.len() {
                    if mode == Mode::Exact {
                        mode = Mode::Prefix;
                    } else {
                        mode = Mode::Glob;
                    }
                    toks.push(Tok::DStarEnd);
                } else {
                    // `(.*/)?(.*/)?` is `(.*/)?`: collapsing keeps `**/**/…` cheap.
                    if toks.last() != Some(&Tok::DStarDir) {
                        toks.push(Tok::DStarDir);
                    }
                    mode = Mode::Glob;
                }
                if iter == 0 {
                    mode = Mode::Suffix;
                }
            }
            '*' => {
                toks.push(Tok::Star);
                mode = Mode::Glob;
            }
            '?' => {
                toks.push(Tok::Any);
                mode = Mode::Glob;
            }
            '\\' => {
                if let Some(&n) = chars.get(k) {
                    k += 1;
                    toks.push(Tok::Lit(n));
                    mode = Mode::Glob;
                } else {
                    toks.push(Tok::Lit('\\'));
                }
            }
            '[' => {
                mode = Mode::Glob;
                let neg = chars.get(k) == Some(&'^');
                if neg {
                    k += 1;
                }
                let mut ranges = Vec::new();
                let mut first = true;
                while k < chars.len() && (chars[k] != ']' || first) {
                    first = false;
                    let mut lo = chars[k];
                    k += 1;
                    if lo == '\\' && k < chars.len() {
                        lo = chars[k];
                        k += 1;
                    }
                    let mut hi = lo;
                    if chars.get(k) == Some(&'-') && chars.get(k + 1).is_some_and(|c| *c != ']') {
                        hi = chars[k + 1];
                        k += 2;
                        if hi == '\\' && k < chars.len() {
                            hi = chars[k];
                            k += 1;
                        }
                    }
                    ranges.push((lo, hi));
                }
                k += 1; // ']'
                toks.push(Tok::Class { neg, ranges });
            }
            c => toks.push(Tok::Lit(c)),
        }
        iter += 1;
    }
    (mode, toks)
}

/// Whole-string match of the token list, memoised so hostile patterns
/// (`**/**/**/…`) stay polynomial.
fn glob_match(toks: &[Tok], s: &[char]) -> bool {
    let w = s.len() + 1;
    let mut failed = vec![false; (toks.len() + 1) * w];
    fn go(toks: &[Tok], s: &[char], t: usize, i: usize, failed: &mut [bool], w: usize) -> bool {
        if failed[t * w + i] {
            return false;
        }
        let ok = match toks.get(t) {
            None => i == s.len(),
            Some(Tok::Lit(c)) => s.get(i) == Some(c) && go(toks, s, t + 1, i + 1, failed, w),
            Some(Tok::Any) => s.get(i).is_some_and(|c| *c != '/') && go(toks, s, t + 1, i + 1, failed, w),
            Some(Tok::Class { neg, ranges }) => {
                s.get(i)
                    .is_some_and(|c| ranges.iter().any(|(lo, hi)| lo <= c && c <= hi) != *neg)
                    && go(toks, s, t + 1, i + 1, failed, w)
            }
            Some(Tok::Star) => {
                let mut j = i;
                loop {
                    if go(toks, s, t + 1, j, failed, w) {
                        break true;
                    }
                    if j >= s.len() || s[j] == '/' {
                        break false;
                    }
                    j += 1;
                }
            }
            Some(Tok::DStarDir) => {
                go(toks, s, t + 1, i, failed, w)
                    || (i..s.len()).any(|j| s[j] == '/' && go(toks, s, t + 1, j + 1, failed, w))
            }
            Some(Tok::DStarEnd) => (i..=s.len()).any(|j| go(toks, s, t + 1, j, failed, w)),
        };
        if !ok {
            failed[t * w + i] = true;
        }
        ok
    }
    go(toks, s, 0, 0, &mut failed, w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(text: &str) -> Matcher {
        Matcher::parse(text).unwrap()
    }

    #[test]
    fn clean_like_go() {
        for (i, o) in [
            ("", "."),
            ("a/b", "a/b"),
            ("a//b/", "a/b"),
            ("./a/./b/.", "a/b"),
            ("a/../b", "b"),
            ("../a", "../a"),
            ("a/../../b", "../b"),
            ("/../a", "/a"),
            ("/", "/"),
            ("//a", "/a"),
            ("..", ".."),
            (".", "."),
        ] {
            assert_eq!(clean(i), o, "{i:?}");
        }
    }

    /// (patterns, path, excluded)
    const CASES: &[(&str, &str, bool)] = &[
        // anchoring and parent matching
        ("foo", "foo", true),
        ("foo", "foo/bar", true),
        ("foo", "foo/bar/baz.txt", true),
        ("foo", "a/foo", false),
        ("foo", "foobar", false),
        ("foo/", "foo", true),
        ("/foo", "foo/x", true),
        ("./foo", "foo", true),
        ("foo/bar", "foo/bar/x", true),
        ("foo/bar", "foo", false),
        ("a/../b", "b", true),
        // * and ?
        ("*.md", "README.md", true),
        ("*.md", "docs/README.md", false),
        ("*/*.md", "docs/README.md", true),
        ("*/*.md", "a/b/README.md", false),
        ("*", "anything", true),
        ("*", "a/b", true),
        ("fo?", "foo", true),
        ("fo?", "fo/", false),
        ("f?o", "f/o", false),
        ("temp?", "temp1/x", true),
        // ** forms
        ("**/*.go", "main.go", true),
        ("**/*.go", "a/b/c.go", true),
        ("**/*.go", "a/b/c.rs", false),
        ("**/node_modules", "node_modules", true),
        ("**/node_modules", "web/node_modules/x/y", true),
        ("**", "a/b/c", true),
        ("**", "x", true),
        ("a/**", "a/b", true),
        ("a/**", "a/b/c", true),
        ("a/**", "a", false),
        ("a/**", "ab", false),
        ("a/**/b", "a/b", true),
        ("a/**/b", "a/x/y/b", true),
        ("a/**/b", "a/xb", false),
        ("a/**/*.txt", "a/x/y.txt", true),
        ("a**b", "ab", true),
        ("a**b", "ax/b", true),
        ("a**b", "axb", false),
        // patternmatcher's suffix fast path quirk
        ("**foo", "afoo", true),
        ("**foo", "x/foo", true),
        // classes and escapes
        ("[abc].txt", "b.txt", true),
        ("[abc].txt", "d.txt", false),
        ("[a-c]x", "bx", true),
        ("[^a-c]x", "dx", true),
        ("[^a-c]x", "ax", false),
        ("\\*.txt", "*.txt", true),
        ("\\*.txt", "a.txt", false),
        ("a\\?", "a?", true),
        ("a\\?", "ab", false),
        ("file.txt", "fileXtxt", false),
        ("$HOME", "$HOME", true),
        ("a+b", "a+b", true),
        ("(x)", "(x)", true),
        // exceptions, last match wins
        ("*.md\n!README.md", "README.md", false),
        ("*.md\n!README.md", "CHANGES.md", true),
        ("!README.md\n*.md", "README.md", true),
        ("docs\n!docs/keep.txt", "docs/keep.txt", false),
        ("docs\n!docs/keep.txt", "docs/other.txt", true),
        ("docs\n!docs/keep.txt", "docs", true),
        ("docs\n!docs/sub\ndocs/sub/x", "docs/sub/x", true),
        ("docs\n!docs/sub\ndocs/sub/x", "docs/sub/y", false),
        ("**\n!src\nsrc/*.tmp", "src/a.rs", false),
        ("**\n!src\nsrc/*.tmp", "src/a.tmp", true),
        ("**\n!src\nsrc/*.tmp", "Cargo.toml", true),
        ("! foo\nfoo", "foo", true),
        // comments, blank lines, trimming
        ("# comment\n\n   foo   \n", "foo", true),
        ("#foo", "#foo", false),
        ("  #foo", "#foo", true),
        ("\u{feff}foo", "foo", true),
        ("foo\r\nbar\r\n", "bar", true),
        // paths given with ./ or trailing /
        ("foo", "./foo/", true),
        ("foo", "/foo", true),
        (".", ".", false),
        ("*", "", false),
        ("**", "./", false),
    ];

    #[test]
    fn matching_table() {
        for (pats, path, want) in CASES {
            assert_eq!(m(pats).is_excluded(path), *want, "patterns {pats:?} path {path:?}");
        }
    }

    #[test]
    fn errors() {
        for (text, line) in [
            ("ok\n[a", 2),
            ("a[", 1),
            ("[]", 1),
            ("[-a]", 1),
            ("[a-]", 1),
            ("x\\", 1),
            ("!", 1),
            ("! ", 1),
        ] {
            let e = Matcher::parse(text).unwrap_err();
            assert_eq!(e.line, Some(line), "{text:?}");
        }
        // `!/` cleans to `!` too.
        assert!(Matcher::parse("!/").is_err());
        assert!(Matcher::parse("[a-z]\n[\\]]\n[^x]").is_ok());
        assert!(Matcher::parse("!/foo").is_ok_and(|m| m.has_exceptions()));
    }

    #[test]
    fn skipping_directories() {
        let mm = m("node_modules\nbuild\n!build/keep\n**/*.log\n!logs/**/*.important");
        assert!(mm.can_skip_dir("node_modules"));
        assert!(!mm.can_skip_dir("build"));
        assert!(!mm.dir_may_have_exceptions("node_modules"));
        assert!(mm.dir_may_have_exceptions("build"));
        assert!(!mm.dir_may_have_exceptions("build/keep/deeper"));
        assert!(!mm.is_excluded("build/keep/deeper"));
        assert!(!mm.can_skip_dir("build/keep/deeper"));
        assert!(mm.dir_may_have_exceptions("logs"));
        assert!(mm.dir_may_have_exceptions("logs/a"));
        assert!(!mm.dir_may_have_exceptions("src"));
        assert!(!mm.can_skip_dir("src"));

        let mm = m("*\n!*/keep");
        assert!(mm.dir_may_have_exceptions("anydir"));
        assert!(!mm.dir_may_have_exceptions("anydir/sub"));
        assert!(mm.can_skip_dir("anydir/sub"));
        assert!(!mm.is_excluded("anydir/keep"));
        assert!(!mm.is_excluded("anydir/keep/x"));

        let mm = m("**\n!**/keep");
        assert!(mm.dir_may_have_exceptions("a/b/c"));
        let mm = m("**\n!**keep");
        assert!(mm.dir_may_have_exceptions("a"));
        assert!(m("a").can_skip_dir("a"));
        assert!(!m("a").can_skip_dir("b"));
    }

    /// The skip rule is sound: if a directory may be skipped, nothing below
    /// it (for a few sample names) is included.
    #[test]
    fn skip_is_sound() {
        let files = ["x", "keep", "a.log", "sub/x", "sub/keep", "sub/a.important", "keep/y"];
        let dirs = ["build", "logs", "node_modules", "a", "a/b", "sub", "logs/sub"];
        for pats in [
            "build\n!build/keep",
            "*\n!*/keep",
            "**\n!**/keep",
            "logs\n!logs/**/*.important",
            "a\n!a/b/x\na/b",
            "**/sub\n!a/sub/keep",
            "*\n![ab]/x",
            "*\n!**keep",
        ] {
            let mm = m(pats);
            for d in dirs {
                if mm.can_skip_dir(d) {
                    for f in files {
                        let p = format!("{d}/{f}");
                        assert!(mm.is_excluded(&p), "{pats:?}: skipped {d} but {p} is included");
                    }
                }
            }
        }
    }

    /// Found by fuzzing (dockerignore_match): a character class spanning `/` (`[!-c]`,
    /// '!' to 'c') lets `!*g[!-c]?` re-include `xdog/x` below the excluded `xdog`, so
    /// `xdog` must not be skipped; the pattern's `/`-split segments do not line up with
    /// path components.
    #[test]
    fn a_class_that_spans_the_separator_keeps_the_directory() {
        let mm = m("*\n!*g[!-c]?");
        assert!(mm.is_excluded("xdog"));
        assert!(!mm.is_excluded("xdog/x"), "the class matches '/': re-included");
        assert!(!mm.can_skip_dir("xdog"));
        let escaped = m("*\n!a\\/b");
        assert!(!escaped.can_skip_dir("a"), "an escaped / is unsure too");
    }

    #[test]
    fn from_patterns_and_empty() {
        let mm = Matcher::from_patterns(&["*.md", "", "!keep.md"]).unwrap();
        assert!(mm.is_excluded("a.md"));
        assert!(!mm.is_excluded("keep.md"));
        assert!(Matcher::parse("").unwrap().is_empty());
        assert!(!Matcher::parse("# c\n").unwrap().is_excluded("x"));
    }

    #[test]
    fn hostile_patterns_are_fast() {
        let p = "**/".repeat(30) + "x";
        let mm = m(&p);
        let path = "a/".repeat(200) + "y";
        assert!(!mm.is_excluded(&path));
        let mm = m(&("*a".repeat(20) + "b"));
        assert!(!mm.is_excluded(&"a".repeat(300)));
    }

    #[test]
    fn ignore_file_lookup() {
        let dir = std::env::temp_dir().join(format!("kiln-di-{}", std::process::id()));
        let ctx = dir.join("ctx");
        std::fs::create_dir_all(ctx.join("build")).unwrap();
        let df = ctx.join("build/app.Dockerfile");
        std::fs::write(&df, "FROM x\n").unwrap();
        assert_eq!(ignore_file_for(&ctx, &df), None);
        std::fs::write(ctx.join(".dockerignore"), "x\n").unwrap();
        assert_eq!(ignore_file_for(&ctx, &df), Some(ctx.join(".dockerignore")));
        std::fs::write(ctx.join("build/app.Dockerfile.dockerignore"), "y\n").unwrap();
        assert_eq!(
            ignore_file_for(&ctx, &df),
            Some(ctx.join("build/app.Dockerfile.dockerignore"))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
