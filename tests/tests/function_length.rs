//! No function in `crates/` is longer than 150 lines (the project guide's rule; issue 11.8): a
//! reader should be able to hold one in their head. Lines are counted from the `fn` keyword to
//! the closing brace, with a small lexer that knows Rust's comments, strings, raw strings and
//! character literals, so braces inside them do not count.
//!
//! `PENDING` lists the functions another piece of work is splitting right now; they are printed
//! on every run, and an entry that is no longer too long fails the test until it is removed, so
//! the list only shrinks.

use std::path::{Path, PathBuf};

/// The longest a function may be, in lines.
const MAX_LINES: usize = 150;

/// Functions still over the limit while their split is under way: (file, function, who).
const PENDING: &[(&str, &str, &str)] = &[];

/// A function and its length.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Function {
    name: String,
    line: usize,
    lines: usize,
}

/// `src` with comments, strings and character literals blanked (newlines kept), so only code
/// braces remain.
fn code_only(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    // Blank c[from..to], keeping newlines so line numbers stay.
    let blank = |out: &mut String, from: usize, to: usize| {
        for &ch in &c[from..to.min(c.len())] {
            out.push(if ch == '\n' { '\n' } else { ' ' });
        }
    };
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    while i < c.len() {
        let next = c.get(i + 1).copied();
        if c[i] == '/' && next == Some('/') {
            let end = c[i..].iter().position(|&ch| ch == '\n').map_or(c.len(), |p| i + p);
            blank(&mut out, i, end);
            i = end;
        } else if c[i] == '/' && next == Some('*') {
            let (mut depth, mut j) = (0, i);
            while j < c.len() {
                if c[j] == '/' && c.get(j + 1) == Some(&'*') {
                    depth += 1;
                    j += 2;
                } else if c[j] == '*' && c.get(j + 1) == Some(&'/') {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&mut out, i, j);
            i = j;
        } else if (c[i] == 'r' || (c[i] == 'b' && next == Some('r'))) && (i == 0 || !ident(c[i - 1])) && {
            let start = if c[i] == 'b' { i + 2 } else { i + 1 };
            let hashes = c[start..].iter().take_while(|&&ch| ch == '#').count();
            c.get(start + hashes) == Some(&'"')
        } {
            let start = if c[i] == 'b' { i + 2 } else { i + 1 };
            let hashes = c[start..].iter().take_while(|&&ch| ch == '#').count();
            let mut j = start + hashes + 1;
            while j < c.len()
                && !(c[j] == '"' && c[j + 1..].iter().take(hashes).filter(|&&ch| ch == '#').count() == hashes)
            {
                j += 1;
            }
            let end = (j + 1 + hashes).min(c.len());
            blank(&mut out, i, end);
            i = end;
        } else if c[i] == '"' {
            let mut j = i + 1;
            while j < c.len() && c[j] != '"' {
                j += if c[j] == '\\' { 2 } else { 1 };
            }
            blank(&mut out, i, j + 1);
            i = j + 1;
        } else if c[i] == '\'' {
            // A character literal ('x', '\n', '\u{1F600}', '\''), or a lifetime ('a, 'static).
            let end = if next == Some('\\') {
                c[i + 2..].iter().position(|&ch| ch == '\'').map(|p| i + 2 + p + 1)
            } else if c.get(i + 2) == Some(&'\'') {
                Some(i + 3)
            } else {
                None
            };
            match end {
                Some(e) => {
                    blank(&mut out, i, e);
                    i = e;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// Every function with a body in `src`, with its length in lines.
fn functions(src: &str) -> Vec<Function> {
    let code = code_only(src);
    let b = code.as_bytes();
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(p) = code[at..].find("fn ") {
        let start = at + p;
        at = start + 3;
        if start > 0 && (b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_') {
            continue;
        }
        let name: String = code[at..]
            .trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() {
            continue;
        }
        // The body opens at the first `{` outside parentheses; a `;` first means no body.
        let mut depth = 0i32;
        let mut open = None;
        for (k, &ch) in b.iter().enumerate().skip(at) {
            match ch {
                b'(' | b'[' => depth += 1,
                b')' | b']' => depth -= 1,
                b';' if depth == 0 => break,
                b'{' if depth == 0 => {
                    open = Some(k);
                    break;
                }
                _ => {}
            }
        }
        let Some(open) = open else { continue };
        let mut braces = 0i32;
        let mut close = b.len() - 1;
        for (k, &ch) in b.iter().enumerate().skip(open) {
            match ch {
                b'{' => braces += 1,
                b'}' => {
                    braces -= 1;
                    if braces == 0 {
                        close = k;
                        break;
                    }
                }
                _ => {}
            }
        }
        let line = line_of(start);
        out.push(Function {
            name,
            line,
            lines: line_of(close) - line + 1,
        });
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn the_lexer_sees_only_code_braces() {
    let src = r##"
fn a() {
    let s = "}"; let c = '}'; let e = '\''; let r = r#"{"#;
    // }
    /* { /* } */ */
    let l: &'static str = "x";
}
fn decl();
fn b<'a>(x: &'a str) -> impl Fn() -> u8 + 'a {
    move || { 1 }
}
"##;
    let f = functions(src);
    let got: Vec<(&str, usize, usize)> = f.iter().map(|f| (f.name.as_str(), f.line, f.lines)).collect();
    assert_eq!(got, [("a", 2, 6), ("b", 9, 3)]);
}

#[test]
fn no_function_in_crates_is_longer_than_150_lines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    rust_files(&root.join("crates"), &mut files);
    assert!(files.len() > 100, "only {} files under crates/", files.len());
    let mut long = Vec::new();
    let mut pending_seen = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&root).unwrap().to_string_lossy().into_owned();
        let src = std::fs::read_to_string(f).unwrap();
        for func in functions(&src).into_iter().filter(|x| x.lines > MAX_LINES) {
            match PENDING
                .iter()
                .find(|(file, name, _)| *file == rel && *name == func.name)
            {
                Some((_, _, who)) => {
                    eprintln!(
                        "pending: {rel}:{} {} is {} lines (over {MAX_LINES}): {who}",
                        func.line, func.name, func.lines
                    );
                    pending_seen.push((rel.clone(), func.name.clone()));
                }
                None => long.push(format!("{rel}:{} {} is {} lines", func.line, func.name, func.lines)),
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions over {MAX_LINES} lines (split them into named steps):\n{}",
        long.join("\n")
    );
    let done: Vec<String> = PENDING
        .iter()
        .filter(|(file, name, _)| !pending_seen.iter().any(|(f, n)| f == file && n == name))
        .map(|(file, name, _)| format!("{file} {name}"))
        .collect();
    assert!(
        done.is_empty(),
        "no longer over {MAX_LINES} lines, remove from PENDING in tests/tests/function_length.rs: {}",
        done.join(", ")
    );
}
