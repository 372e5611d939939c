//! BuildKit's shell-word processor: variable expansion, quote removal and
//! word splitting for Dockerfile words.
//!
//! This is *not* a shell: there is no command substitution, arithmetic,
//! globbing or tilde expansion. It follows BuildKit's `shell.Lex` so that a
//! Dockerfile means the same under kiln as under `docker build`:
//!
//! * `$VAR`, `${VAR}`; unset variables expand to the empty string;
//! * `${VAR:-word}` / `${VAR-word}` (default), `${VAR:+word}` / `${VAR+word}`
//!   (alternative), `${VAR:?msg}` / `${VAR?msg}` (error);
//! * `${VAR#pat}`, `${VAR##pat}`, `${VAR%pat}`, `${VAR%%pat}` (remove the
//!   shortest/longest prefix/suffix matching a glob with `*` and `?`);
//! * `${VAR/pat/repl}`, `${VAR//pat/repl}` (replace first/all);
//! * `'…'` is literal; `"…"` expands `$` and honours the escape character
//!   only before `$`, `"` and the escape character itself;
//! * outside quotes the escape character makes the next character literal;
//! * [`Lexer::process_words`] splits on unquoted whitespace, including
//!   whitespace that comes from unquoted expansions.

/// An expansion failure (`${X:?}` on an unset variable, bad syntax such as
/// an unterminated quote or `${`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to process {input:?}: {message}")]
pub struct ExpandError {
    /// The word that failed.
    pub input: String,
    /// What went wrong, e.g. `VAR: is not allowed to be unset`.
    pub message: String,
}

/// Expands Dockerfile words. Cheap to create; holds only options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lexer {
    escape: char,
    raw_quotes: bool,
    raw_escapes: bool,
    skip_unset: bool,
    skip_quotes: bool,
}

impl Default for Lexer {
    fn default() -> Self {
        Lexer::new('\\')
    }
}

/// Callback giving a variable's value, `None` when unset. A closure over a
/// `HashMap` or over the stage's ordered env list both work.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

impl Lexer {
    /// A lexer for a file whose escape directive is `escape` (`\` or `` ` ``;
    /// see [`crate::Directives::escape`]).
    pub fn new(escape: char) -> Self {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_unset: false,
            skip_quotes: false,
        }
    }

    /// Keep quotes and escapes and leave unset variables as written; the
    /// parser uses this to find heredoc markers exactly as BuildKit does.
    pub(crate) fn raw(mut self, quotes: bool, escapes: bool, skip_unset: bool) -> Self {
        self.raw_quotes = quotes;
        self.raw_escapes = escapes;
        self.skip_unset = skip_unset;
        self
    }

    /// Expand `s` as one word: quotes removed, whitespace kept as written.
    /// This is what BuildKit uses for `ENV`/`ARG`/`LABEL` values, `WORKDIR`,
    /// `USER`, `COPY` sources and so on.
    pub fn process_word(&self, s: &str, env: Env<'_>) -> Result<String, ExpandError> {
        self.run(s, env).map(|(w, _)| w)
    }

    /// Expand `s` and split it into words on unquoted whitespace (used for
    /// `EXPOSE`, `VOLUME`… and by tools that want argv-like words). As in
    /// BuildKit, an empty quoted string (`""`) produces no word.
    pub fn process_words(&self, s: &str, env: Env<'_>) -> Result<Vec<String>, ExpandError> {
        self.run(s, env).map(|(_, ws)| ws)
    }

    /// Expand the body of a `COPY`/`ADD` heredoc whose delimiter was not
    /// quoted ([`crate::Heredoc::expand`]). As in BuildKit, quotes are
    /// ordinary characters here (`'$X'` expands `X` and keeps the quotes),
    /// while `$` forms and the escape character work as in a word.
    pub fn process_heredoc(&self, content: &str, env: Env<'_>) -> Result<String, ExpandError> {
        let mut lx = *self;
        lx.skip_quotes = true;
        lx.run(content, env).map(|(w, _)| w)
    }

    fn run(&self, s: &str, env: Env<'_>) -> Result<(String, Vec<String>), ExpandError> {
        let mut sw = ShellWord {
            chars: s.chars().collect(),
            pos: 0,
            lx: *self,
            env,
            depth: 0,
        };
        sw.process_stop_on(None, self.raw_escapes)
            .map_err(|message| ExpandError {
                input: s.to_string(),
                message,
            })
    }
}

#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }
    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }
    fn add_string(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }
    fn add_raw_string(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_raw_char(c));
    }
    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(std::mem::take(&mut self.word));
        }
        self.words
    }
}

struct ShellWord<'e> {
    chars: Vec<char>,
    pos: usize,
    lx: Lexer,
    env: Env<'e>,
    /// `${…}` nesting depth, bounded so hostile input cannot overflow the
    /// stack.
    depth: usize,
}

const MAX_DEPTH: usize = 64;

type R<T> = Result<T, String>;

impl ShellWord<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn process_stop_on(&mut self, stop: Option<char>, raw_escapes: bool) -> R<(String, Vec<String>)> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.next();
                return Ok((result, words.finish()));
            }
            match ch {
                '\'' | '"' if self.lx.skip_quotes => {
                    self.next();
                    words.add_raw_char(ch);
                    result.push(ch);
                }
                '\'' => {
                    let t = self.single_quote()?;
                    result.push_str(&t);
                    words.add_raw_string(&t);
                }
                '"' => {
                    let t = self.double_quote()?;
                    result.push_str(&t);
                    words.add_raw_string(&t);
                }
                '$' => {
                    let t = self.dollar()?;
                    result.push_str(&t);
                    words.add_string(&t);
                }
                _ => {
                    self.next();
                    if ch == self.lx.escape {
                        if raw_escapes {
                            words.add_raw_char(ch);
                            result.push(ch);
                        }
                        match self.next() {
                            None => break,
                            Some(c) => {
                                words.add_raw_char(c);
                                result.push(c);
                            }
                        }
                    } else {
                        words.add_char(ch);
                        result.push(ch);
                    }
                }
            }
        }
        if let Some(s) = stop {
            return Err(format!("unexpected end of statement while looking for matching {s}"));
        }
        Ok((result, words.finish()))
    }

    fn single_quote(&mut self) -> R<String> {
        let mut out = String::new();
        let q = self.next();
        if self.lx.raw_quotes {
            out.extend(q);
        }
        loop {
            match self.next() {
                None => {
                    return Err("unexpected end of statement while looking for matching single-quote".into());
                }
                Some('\'') => {
                    if self.lx.raw_quotes {
                        out.push('\'');
                    }
                    return Ok(out);
                }
                Some(c) => out.push(c),
            }
        }
    }

    fn double_quote(&mut self) -> R<String> {
        let mut out = String::new();
        let q = self.next();
        if self.lx.raw_quotes {
            out.extend(q);
        }
        loop {
            match self.peek() {
                None => {
                    return Err("unexpected end of statement while looking for matching double-quote".into());
                }
                Some('"') => {
                    self.next();
                    if self.lx.raw_quotes {
                        out.push('"');
                    }
                    return Ok(out);
                }
                Some('$') => {
                    let v = self.dollar()?;
                    out.push_str(&v);
                }
                Some(_) => {
                    let mut ch = self.next().unwrap_or_default();
                    if ch == self.lx.escape {
                        match self.peek() {
                            None => continue,
                            Some(c) if c == '"' || c == '$' || c == self.lx.escape => {
                                if self.lx.raw_escapes {
                                    out.push(ch);
                                }
                                ch = c;
                                self.next();
                            }
                            Some(_) => {}
                        }
                    }
                    out.push(ch);
                }
            }
        }
    }

    fn lookup(&self, name: &str) -> Option<String> {
        (self.env)(name)
    }

    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_ascii_digit() {
                while let Some(d) = self.peek().filter(|c| c.is_ascii_digit()) {
                    self.next();
                    name.push(d);
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return ch.to_string();
            }
            if !(ch.is_alphanumeric() || ch == '_') {
                break;
            }
            self.next();
            name.push(ch);
        }
        name
    }

    fn dollar(&mut self) -> R<String> {
        self.next(); // '$'
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(match self.lookup(&name) {
                Some(v) => v,
                None if self.lx.skip_unset => format!("${name}"),
                None => String::new(),
            });
        }
        self.next(); // '{'
        if self.depth >= MAX_DEPTH {
            return Err("substitutions nested too deeply".into());
        }
        self.depth += 1;
        let r = self.braced();
        self.depth -= 1;
        r
    }

    /// `${…}` after the `{`.
    fn braced(&mut self) -> R<String> {
        match self.peek() {
            None => return Err("syntax error: missing '}'".into()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".into()),
            _ => {}
        }
        let name = self.process_name();
        let Some(mut ch) = self.next() else {
            return Err("syntax error: missing '}'".into());
        };
        let mut chs = ch.to_string();
        let value = self.lookup(&name);
        match ch {
            '}' => Ok(match value {
                Some(v) => v,
                None if self.lx.skip_unset => format!("${{{name}}}"),
                None => String::new(),
            }),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                let null_is_unset = ch == ':';
                if null_is_unset {
                    match self.next() {
                        Some(c) => {
                            ch = c;
                            chs.push(c);
                        }
                        None => return Err("syntax error: missing '}'".into()),
                    }
                    if !matches!(ch, '+' | '-' | '?') {
                        return Err(format!("unsupported modifier ({chs}) in substitution"));
                    }
                }
                let raw = ch == '#' || ch == '%';
                let word = match self.process_stop_on(Some('}'), raw) {
                    Ok((w, _)) => w,
                    Err(e) if self.peek().is_none() => {
                        let _ = e;
                        return Err("syntax error: missing '}'".into());
                    }
                    Err(e) => return Err(e),
                };
                if value.is_none() && self.lx.skip_unset {
                    return Ok(format!("${{{name}{chs}{word}}}"));
                }
                let unset_or_null = match &value {
                    None => true,
                    Some(v) => null_is_unset && v.is_empty(),
                };
                match ch {
                    '-' => Ok(if unset_or_null { word } else { value.unwrap_or_default() }),
                    '+' => Ok(if unset_or_null { String::new() } else { word }),
                    '?' => match value {
                        None => Err(format!(
                            "{name}: {}",
                            if word.is_empty() {
                                "is not allowed to be unset"
                            } else {
                                &word
                            }
                        )),
                        Some(v) if null_is_unset && v.is_empty() => Err(format!(
                            "{name}: {}",
                            if word.is_empty() {
                                "is not allowed to be empty"
                            } else {
                                &word
                            }
                        )),
                        Some(v) => Ok(v),
                    },
                    _ => {
                        let (greedy, pat) = match word.strip_prefix(ch) {
                            Some(rest) => (true, rest),
                            None => (false, word.as_str()),
                        };
                        let toks = compile_pattern(pat)
                            .map_err(|e| format!("invalid pattern ({pat}) in substitution: {e}"))?;
                        let v: Vec<char> = value.unwrap_or_default().chars().collect();
                        Ok(if ch == '#' {
                            trim_prefix(&toks, &v, greedy)
                        } else {
                            trim_suffix(&toks, &v, greedy)
                        })
                    }
                }
            }
            '/' => {
                let all = self.peek() == Some('/');
                if all {
                    self.next();
                }
                let pattern = match self.process_stop_on(Some('/'), true) {
                    Ok((w, _)) => w,
                    Err(_) if self.peek().is_none() => return Err("syntax error: missing '/' in ${}".into()),
                    Err(e) => return Err(e),
                };
                let repl = match self.process_stop_on(Some('}'), true) {
                    Ok((w, _)) => w,
                    Err(_) if self.peek().is_none() => return Err("syntax error: missing '}'".into()),
                    Err(e) => return Err(e),
                };
                if value.is_none() && self.lx.skip_unset {
                    return Ok(format!("${{{name}/{pattern}/{repl}}}"));
                }
                let toks = compile_pattern(&pattern)
                    .map_err(|e| format!("invalid pattern ({pattern}) in substitution: {e}"))?;
                let repl = unescape(&repl, self.lx.escape);
                let v: Vec<char> = value.unwrap_or_default().chars().collect();
                Ok(replace(&toks, &v, &repl, all))
            }
            _ => Err(format!("unsupported modifier ({chs}) in substitution")),
        }
    }
}

/// Remove escape characters from a replacement string (BuildKit keeps them
/// verbatim, which is surely unintended: `${a/x/\/}` should give `/`).
fn unescape(s: &str, escape: char) -> String {
    let mut out = String::new();
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == escape {
            if let Some(n) = it.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Tok {
    Star,
    Any,
    Lit(char),
}

/// Glob pattern of `${VAR#pat}` and friends. As in BuildKit the pattern
/// escape is always `\`, and `\}` / `\/` are plain `}` / `/`.
fn compile_pattern(p: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut it = p.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '*' => out.push(Tok::Star),
            '?' => out.push(Tok::Any),
            '\\' => match it.peek().copied() {
                Some('}' | '/') => {}
                Some(n @ ('*' | '?' | '\\')) => {
                    it.next();
                    out.push(Tok::Lit(n));
                }
                Some(n) => return Err(format!("invalid escape '\\{n}'")),
                None => return Err("invalid escape '\\' at end of pattern".into()),
            },
            c => out.push(Tok::Lit(c)),
        }
    }
    Ok(out)
}

/// Whole-string glob match (backtracking; patterns and values are short).
fn glob_full(p: &[Tok], s: &[char]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match p.get(pi) {
            Some(Tok::Star) => {
                star = Some((pi, si));
                pi += 1;
            }
            Some(Tok::Any) => {
                pi += 1;
                si += 1;
            }
            Some(Tok::Lit(c)) if *c == s[si] => {
                pi += 1;
                si += 1;
            }
            _ => match star {
                Some((sp, ss)) => {
                    pi = sp + 1;
                    si = ss + 1;
                    star = Some((sp, ss + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|t| *t == Tok::Star)
}

fn trim_prefix(p: &[Tok], v: &[char], greedy: bool) -> String {
    let mut ends: Box<dyn Iterator<Item = usize>> = if greedy {
        Box::new((0..=v.len()).rev())
    } else {
        Box::new(0..=v.len())
    };
    match ends.find(|&e| glob_full(p, &v[..e])) {
        Some(e) => v[e..].iter().collect(),
        None => v.iter().collect(),
    }
}

fn trim_suffix(p: &[Tok], v: &[char], greedy: bool) -> String {
    let mut starts: Box<dyn Iterator<Item = usize>> = if greedy {
        Box::new(0..=v.len())
    } else {
        Box::new((0..=v.len()).rev())
    };
    match starts.find(|&s| glob_full(p, &v[s..])) {
        Some(s) => v[..s].iter().collect(),
        None => v.iter().collect(),
    }
}

/// Leftmost match starting at or after `from`, longest at that start.
fn find_match(p: &[Tok], v: &[char], from: usize) -> Option<(usize, usize)> {
    (from..=v.len()).find_map(|s| (s..=v.len()).rev().find(|&e| glob_full(p, &v[s..e])).map(|e| (s, e)))
}

/// `${VAR/pat/repl}` and `${VAR//pat/repl}` with Go `Regexp.ReplaceAll`
/// semantics for empty matches (BuildKit compiles the glob to a regexp).
fn replace(p: &[Tok], v: &[char], repl: &str, all: bool) -> String {
    let mut out = String::new();
    let mut copied = 0;
    let mut search = 0;
    let mut last_end: Option<usize> = None;
    while search <= v.len() {
        let Some((s, e)) = find_match(p, v, search) else { break };
        out.extend(&v[copied..s]);
        if last_end.is_none_or(|le| e > le) || s == 0 {
            out.push_str(repl);
        }
        copied = e;
        last_end = Some(e);
        search = if e > search { e } else { search + 1 };
        if !all {
            break;
        }
    }
    out.extend(&v[copied.min(v.len())..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env() -> HashMap<&'static str, &'static str> {
        HashMap::from([
            ("A", "a"),
            ("B", "b c"),
            ("EMPTY", ""),
            ("P", "/usr/local/bin:/usr/bin"),
            ("FILE", "archive.tar.gz"),
            ("SP", "  x  "),
        ])
    }

    fn word(lx: Lexer, s: &str) -> Result<String, ExpandError> {
        let e = env();
        lx.process_word(s, &|k| e.get(k).map(|v| v.to_string()))
    }

    fn words(lx: Lexer, s: &str) -> Result<Vec<String>, ExpandError> {
        let e = env();
        lx.process_words(s, &|k| e.get(k).map(|v| v.to_string()))
    }

    #[test]
    fn process_word_table() {
        let cases: &[(&str, &str)] = &[
            ("", ""),
            ("plain", "plain"),
            ("$A", "a"),
            ("${A}", "a"),
            ("x$A", "xa"),
            ("$Ab", ""),
            ("${A}b", "ab"),
            ("$A.$A", "a.a"),
            ("$A-$A", "a-a"),
            ("$UNSET", ""),
            ("${UNSET}", ""),
            ("$", "$"),
            ("a$", "a$"),
            ("$ a", "$ a"),
            ("$1x", "x"),
            ("$$", ""),
            ("'$A'", "$A"),
            ("'a \\ b'", "a \\ b"),
            ("\"$A\"", "a"),
            ("\"${A}x\"", "ax"),
            ("\\$A", "$A"),
            ("\\\\$A", "\\a"),
            ("\"\\$A\"", "$A"),
            ("\"a\\b\"", "a\\b"),
            ("\"a\\\\b\"", "a\\b"),
            ("\"a\\\"b\"", "a\"b"),
            ("\"it's\"", "it's"),
            ("'say \"hi\"'", "say \"hi\""),
            ("a\\ b", "a b"),
            ("a  b", "a  b"),
            ("\\", ""),
            ("abc\\", "abc"),
            ("$B", "b c"),
            ("$SP", "  x  "),
            ("${UNSET:-def}", "def"),
            ("${EMPTY:-def}", "def"),
            ("${EMPTY-def}", ""),
            ("${UNSET-def}", "def"),
            ("${A:-def}", "a"),
            ("${A-def}", "a"),
            ("${UNSET:-$A}", "a"),
            ("${UNSET:-${B}}", "b c"),
            ("${UNSET:-'x y'}", "x y"),
            ("${UNSET:-\"$A b\"}", "a b"),
            ("${UNSET:-a\\}b}", "a}b"),
            ("${A:+alt}", "alt"),
            ("${A+alt}", "alt"),
            ("${EMPTY:+alt}", ""),
            ("${EMPTY+alt}", "alt"),
            ("${UNSET+alt}", ""),
            ("${UNSET:+alt}", ""),
            ("${A:?}", "a"),
            ("${A?}", "a"),
            ("${EMPTY?}", ""),
            ("${FILE#*.}", "tar.gz"),
            ("${FILE##*.}", "gz"),
            ("${FILE%.*}", "archive.tar"),
            ("${FILE%%.*}", "archive"),
            ("${FILE#archive.}", "tar.gz"),
            ("${FILE%.gz}", "archive.tar"),
            ("${FILE#nomatch}", "archive.tar.gz"),
            ("${FILE%nomatch}", "archive.tar.gz"),
            ("${FILE#?}", "rchive.tar.gz"),
            ("${FILE%?}", "archive.tar.g"),
            ("${FILE##*}", ""),
            ("${FILE#*}", "archive.tar.gz"),
            ("${UNSET#x}", ""),
            ("${P#*:}", "/usr/bin"),
            ("${P%:*}", "/usr/local/bin"),
            ("${P/usr/opt}", "/opt/local/bin:/usr/bin"),
            ("${P//usr/opt}", "/opt/local/bin:/opt/bin"),
            ("${P//\\//_}", "_usr_local_bin:_usr_bin"),
            ("${FILE/?r/X}", "Xchive.tar.gz"),
            ("${FILE//a/}", "rchive.tr.gz"),
            ("${FILE/.*/}", "archive"),
            ("${FILE/nomatch/x}", "archive.tar.gz"),
            ("${FILE/\\*/x}", "archive.tar.gz"),
            ("${UNSET/a/b}", ""),
            ("x${A}y${UNSET}z", "xayz"),
        ];
        let lx = Lexer::new('\\');
        for (input, want) in cases {
            assert_eq!(word(lx, input).as_deref(), Ok(*want), "input {input:?}");
        }
    }

    #[test]
    fn backtick_escape() {
        let lx = Lexer::new('`');
        let cases: &[(&str, &str)] = &[
            ("`$A", "$A"),
            ("\\$A", "\\a"),
            ("c:\\dir\\$A", "c:\\dir\\a"),
            ("\"`\"\"", "\""),
            ("\"a`b\"", "a`b"),
            ("a` b", "a b"),
        ];
        for (input, want) in cases {
            assert_eq!(word(lx, input).as_deref(), Ok(*want), "input {input:?}");
        }
    }

    #[test]
    fn process_words_table() {
        let cases: &[(&str, &[&str])] = &[
            ("", &[]),
            ("   ", &[]),
            ("a b  c", &["a", "b", "c"]),
            (" a\tb ", &["a", "b"]),
            ("$B", &["b", "c"]),
            ("x$B", &["xb", "c"]),
            ("\"$B\"", &["b c"]),
            ("'a b' c", &["a b", "c"]),
            ("a\\ b c", &["a b", "c"]),
            ("\"\"", &[]),
            ("a \"\" b", &["a", "b"]),
            ("a\"\"b", &["ab"]),
            ("${UNSET:-x y}", &["x", "y"]),
            ("\"${UNSET:-x y}\"", &["x y"]),
            ("$SP", &["x"]),
            ("80/tcp $A", &["80/tcp", "a"]),
        ];
        let lx = Lexer::default();
        for (input, want) in cases {
            let got = words(lx, input).unwrap();
            assert_eq!(got, *want, "input {input:?}");
        }
    }

    #[test]
    fn errors() {
        let cases: &[(&str, &str)] = &[
            ("${UNSET:?}", "UNSET: is not allowed to be unset"),
            ("${UNSET?}", "UNSET: is not allowed to be unset"),
            ("${EMPTY:?}", "EMPTY: is not allowed to be empty"),
            ("${UNSET:?set it please}", "UNSET: set it please"),
            ("${EMPTY:?must be set}", "EMPTY: must be set"),
            ("${", "missing '}'"),
            ("${A", "missing '}'"),
            ("${A:-x", "missing '}'"),
            ("${}", "bad substitution"),
            ("${:}", "bad substitution"),
            ("${{A}", "bad substitution"),
            ("${A:#x}", "unsupported modifier (:#)"),
            ("${A:x}", "unsupported modifier (:x)"),
            ("${A!}", "unsupported modifier (!)"),
            ("${A/x}", "missing '/'"),
            ("${A/x/y", "missing '}'"),
            ("'abc", "matching single-quote"),
            ("\"abc", "matching double-quote"),
            ("\"abc\\\"", "matching double-quote"),
            ("${FILE#\\a}", "invalid escape"),
        ];
        let lx = Lexer::default();
        for (input, want) in cases {
            let err = word(lx, input).expect_err(input);
            assert!(err.message.contains(want), "input {input:?}: got {:?}", err.message);
            assert!(err.to_string().starts_with("failed to process"), "{err}");
        }
    }

    #[test]
    fn heredoc_bodies() {
        let lx = Lexer::default();
        let e = env();
        let get = |k: &str| e.get(k).map(|v| v.to_string());
        let cases: &[(&str, &str)] = &[
            ("echo $A\n", "echo a\n"),
            ("'$A' \"$B\"\n", "'a' \"b c\"\n"),
            ("it's ${UNSET:-x}\n", "it's x\n"),
            ("printf \"a\\nb\"\n", "printf \"anb\"\n"),
            ("cost \\$5\n", "cost $5\n"),
        ];
        for (input, want) in cases {
            assert_eq!(lx.process_heredoc(input, &get).unwrap(), *want, "{input:?}");
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let s = "${A:-".repeat(10_000);
        assert!(word(Lexer::default(), &s).is_err());
        let s = "${A:-".repeat(50) + &"}".repeat(50);
        assert_eq!(word(Lexer::default(), &s).unwrap(), "a");
    }

    #[test]
    fn raw_mode_keeps_quotes() {
        let lx = Lexer::default().raw(true, true, true);
        assert_eq!(
            word(lx, "<<\"EOF\" 'a b' \\x $UNSET").unwrap(),
            "<<\"EOF\" 'a b' \\x $UNSET"
        );
        assert_eq!(words(lx, "cat <<'EOF' > x").unwrap(), ["cat", "<<'EOF'", ">", "x"]);
    }
}
