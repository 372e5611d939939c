//! The Dockerfile parser.
//!
//! It follows BuildKit's two passes (line parser, then instruction parser)
//! in one go: physical lines are joined into logical instructions (parser
//! directives, comments, continuations, heredoc bodies), then each
//! instruction's flags and arguments are split and checked. Every logical
//! line keeps a map back to physical positions so errors point at the exact
//! line and column of the offending word.

use std::collections::HashSet;
use std::time::Duration;

use crate::ast::*;
use crate::error::ParseError;
use crate::expand::Lexer;

/// Parse Dockerfile source text (BuildKit `docker/dockerfile:1` syntax).
///
/// The result keeps words raw (see [`crate::ast`]); errors carry the
/// position and, where possible, a hint. Besides syntax, the structural rules
/// BuildKit enforces before building are checked too: the file is not empty,
/// only `ARG` may precede the first `FROM`, and there is at least one `FROM`.
pub fn parse(source: &str) -> Result<Dockerfile, ParseError> {
    let src = source.strip_prefix('\u{feff}').unwrap_or(source);
    let mut lines: Vec<&str> = src.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
    if src.ends_with('\n') {
        lines.pop();
    }

    let mut directives = Directives::default();
    let mut seen_directives: HashSet<String> = HashSet::new();
    let mut directives_done = false;
    let mut instructions: Vec<Instruction> = Vec::new();

    let mut i = 0;
    while i < lines.len() {
        let raw = lines[i];
        let lineno = i + 1;
        i += 1;
        let t = raw.trim_start();
        let lead = raw.len() - t.len();

        if !directives_done {
            match directive(t) {
                Some((key, value)) => {
                    apply_directive(&mut directives, &mut seen_directives, key, value, (lineno, lead + 1))?;
                    continue;
                }
                None => directives_done = true,
            }
        }
        if t.is_empty() || t.starts_with('#') {
            continue;
        }

        let escape = directives.escape;
        let lg = join_continuations(&lines, &mut i, (lineno, lead), escape);
        if lg.text.trim().is_empty() {
            continue;
        }

        let cx = Cx { lg: &lg, escape };
        let (mut inst, markers) = cx.instruction(0)?;
        // Heredoc bodies follow the instruction, in marker order.
        if let Some(docs) = heredocs_mut(&mut inst) {
            read_heredocs(&cx, docs, &markers, &lines, &mut i)?;
        }
        let end_line = i.max(lineno);
        inst.end_line = end_line;
        if let Command::Onbuild(inner) = &mut inst.command {
            inner.end_line = end_line;
        }
        instructions.push(inst);
    }
    check_stages(&instructions, &lines)?;
    Ok(Dockerfile {
        directives,
        instructions,
    })
}

/// Records one parser directive (`# escape=`, `# syntax=`, `# check=`) at `at` (line, col).
fn apply_directive(
    directives: &mut Directives,
    seen: &mut HashSet<String>,
    key: String,
    value: String,
    at: (usize, usize),
) -> Result<(), ParseError> {
    if !seen.insert(key.clone()) {
        return Err(
            ParseError::new(at.0, at.1, format!("only one {key} parser directive can be used"))
                .with_hint("remove the repeated directive"),
        );
    }
    match key.as_str() {
        "escape" => {
            let mut cs = value.chars();
            match (cs.next(), cs.next()) {
                (Some(c @ ('\\' | '`')), None) => directives.escape = c,
                _ => {
                    return Err(ParseError::new(
                        at.0,
                        at.1,
                        format!("invalid escape token '{value}' does not match ` or \\"),
                    )
                    .with_hint("use `# escape=\\` (the default) or `# escape=``"));
                }
            }
        }
        "syntax" => directives.syntax = Some(value),
        _ => directives.check = Some(value),
    }
    Ok(())
}

/// The logical line starting at physical line `start.0` (1-based, `start.1` bytes of
/// indentation): continuation lines are joined, blank and comment lines inside skipped, and
/// every piece remembers where it came from. `i` moves past what was read.
fn join_continuations<'a>(lines: &[&'a str], i: &mut usize, start: (usize, usize), escape: char) -> Logical<'a> {
    let (lineno, lead) = start;
    let raw = lines[lineno - 1];
    let (first, mut more) = trim_continuation(&raw[lead..], escape);
    let mut lg = Logical {
        text: first.to_string(),
        segs: vec![Seg {
            start: 0,
            line: lineno,
            col: raw[..lead].chars().count() + 1,
            text: first,
        }],
    };
    while more && *i < lines.len() {
        let raw = lines[*i];
        *i += 1;
        let tl = raw.trim_start();
        if tl.is_empty() || tl.starts_with('#') {
            continue;
        }
        let (part, m) = trim_continuation(raw, escape);
        lg.segs.push(Seg {
            start: lg.text.len(),
            line: *i,
            col: 1,
            text: part,
        });
        lg.text.push_str(part);
        more = m;
    }
    lg
}

/// Reads the bodies of an instruction's heredocs (`markers` are their offsets in the
/// instruction, for errors) from the lines after it; `i` moves past them.
fn read_heredocs(
    cx: &Cx<'_>,
    docs: &mut [Heredoc],
    markers: &[usize],
    lines: &[&str],
    i: &mut usize,
) -> Result<(), ParseError> {
    for (doc, &off) in docs.iter_mut().zip(markers) {
        let mut terminated = false;
        while *i < lines.len() {
            let raw = lines[*i];
            *i += 1;
            let cand = if doc.strip_tabs {
                raw.trim_start_matches('\t')
            } else {
                raw
            };
            if cand == doc.name {
                terminated = true;
                break;
            }
            doc.content.push_str(cand);
            doc.content.push('\n');
        }
        if !terminated {
            return Err(cx
                .err(off, format!("unterminated heredoc {:?}", doc.name))
                .with_hint(format!(
                    "end the heredoc with a line containing only `{}`{}",
                    doc.name,
                    if doc.strip_tabs { " (leading tabs allowed)" } else { "" }
                )));
        }
    }
    Ok(())
}

/// The structural checks BuildKit makes before building: not empty, only ARG before the
/// first FROM, and at least one FROM.
fn check_stages(instructions: &[Instruction], lines: &[&str]) -> Result<(), ParseError> {
    if instructions.is_empty() {
        return Err(ParseError::new(1, 1, "the Dockerfile cannot be empty")
            .with_hint("add a FROM instruction, e.g. `FROM debian:bookworm-slim`"));
    }
    let mut have_from = false;
    for inst in instructions {
        match inst.command {
            Command::From { .. } => have_from = true,
            Command::Arg(_) => {}
            _ if !have_from => {
                return Err(ParseError::new(
                    inst.line,
                    instruction_col(lines, inst.line),
                    "no build stage in current context",
                )
                .with_hint(format!(
                    "{} must come after a FROM; only ARG may appear before the first FROM",
                    inst.keyword.to_ascii_uppercase()
                )));
            }
            _ => {}
        }
    }
    if !have_from {
        let last = instructions.last().map(|i| i.line).unwrap_or(1);
        return Err(ParseError::new(last, 1, "dockerfile contains no stages to build")
            .with_hint("add a FROM instruction after the global ARGs"));
    }
    Ok(())
}

fn instruction_col(lines: &[&str], line: usize) -> usize {
    let l = lines.get(line - 1).copied().unwrap_or("");
    l.chars().take_while(|c| c.is_whitespace()).count() + 1
}

fn heredocs_mut(inst: &mut Instruction) -> Option<&mut Vec<Heredoc>> {
    match &mut inst.command {
        Command::Run { heredocs, .. } => Some(heredocs),
        Command::Copy(c) | Command::Add(c) => Some(&mut c.heredocs),
        Command::Onbuild(inner) => heredocs_mut(inner),
        _ => None,
    }
}

/// `# key=value` at the top of the file (`^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`)
/// with a known key. Anything else ends the directive section.
fn directive(t: &str) -> Option<(String, String)> {
    let rest = t.strip_prefix('#')?.trim_start();
    let key_len = rest.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(rest.len());
    let key = &rest[..key_len];
    if !key.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let value = rest[key_len..].trim_start().strip_prefix('=')?.trim();
    if value.is_empty() {
        return None;
    }
    let key = key.to_ascii_lowercase();
    matches!(key.as_str(), "syntax" | "escape" | "check").then(|| (key, value.to_string()))
}

/// BuildKit's continuation rule: the escape char at the end of the line
/// (trailing blanks allowed), unless it is itself escaped.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let body = line.trim_end_matches([' ', '\t']);
    if let Some(before) = body.strip_suffix(escape)
        && (before.is_empty() || !before.ends_with(escape))
    {
        return (before, true);
    }
    (line, false)
}

/// A piece of a logical line and where it came from.
struct Seg<'a> {
    start: usize,
    line: usize,
    col: usize,
    text: &'a str,
}

/// A logical (continuation-joined) line with its position map.
struct Logical<'a> {
    text: String,
    segs: Vec<Seg<'a>>,
}

impl Logical<'_> {
    /// (line, col) of byte offset `off` of the joined text.
    fn loc(&self, off: usize) -> (usize, usize) {
        let seg = self.segs.iter().rev().find(|s| s.start <= off).unwrap_or(&self.segs[0]);
        let within = (off - seg.start).min(seg.text.len());
        let within = (0..=within).rev().find(|&k| seg.text.is_char_boundary(k)).unwrap_or(0);
        (seg.line, seg.col + seg.text[..within].chars().count())
    }
}

/// Flag kinds, as in BuildKit's `BFlags`.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Bool,
    Str,
    Strings,
}

const FROM_FLAGS: &[(&str, Kind)] = &[("platform", Kind::Str)];
const RUN_FLAGS: &[(&str, Kind)] = &[
    ("mount", Kind::Strings),
    ("network", Kind::Str),
    ("security", Kind::Str),
    ("device", Kind::Strings),
];
const COPY_FLAGS: &[(&str, Kind)] = &[
    ("from", Kind::Str),
    ("chown", Kind::Str),
    ("chmod", Kind::Str),
    ("link", Kind::Bool),
    ("parents", Kind::Bool),
    ("exclude", Kind::Strings),
];
const ADD_FLAGS: &[(&str, Kind)] = &[
    ("chown", Kind::Str),
    ("chmod", Kind::Str),
    ("link", Kind::Bool),
    ("checksum", Kind::Str),
    ("keep-git-dir", Kind::Bool),
    ("unpack", Kind::Bool),
    ("exclude", Kind::Strings),
];
const HEALTH_FLAGS: &[(&str, Kind)] = &[
    ("interval", Kind::Str),
    ("timeout", Kind::Str),
    ("start-period", Kind::Str),
    ("start-interval", Kind::Str),
    ("retries", Kind::Str),
];

const INSTRUCTIONS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// Per-logical-line parsing context.
/// An instruction's keyword and arguments, located in its logical line.
struct Head<'t> {
    /// Offset of the keyword.
    kw_start: usize,
    /// The keyword in upper case, for messages.
    upper: String,
    /// The keyword in lower case.
    kind: String,
    /// The arguments after the flags, trimmed.
    args: &'t str,
    /// Offset of the arguments.
    a_start: usize,
}

struct Cx<'a> {
    lg: &'a Logical<'a>,
    escape: char,
}

enum Json {
    Strings(Vec<String>),
    NotStrings,
    Invalid,
}

/// BuildKit's `[\t\v\f\r ]+` separator.
fn is_sep(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\x0b' | '\x0c' | '\r')
}

impl Cx<'_> {
    fn err(&self, off: usize, msg: impl Into<String>) -> ParseError {
        let (line, col) = self.lg.loc(off);
        ParseError::new(line, col, msg)
    }

    /// Parse the instruction starting at byte `start` of the logical line.
    /// Returns it with empty heredoc bodies and the offsets of the heredoc
    /// markers (for errors); the caller reads the bodies.
    fn instruction(&self, start: usize) -> Result<(Instruction, Vec<usize>), ParseError> {
        let text = self.lg.text.as_str();
        let kw_start = start + (text[start..].len() - text[start..].trim_start().len());
        let kw_end = text[kw_start..]
            .find(char::is_whitespace)
            .map_or(text.len(), |p| kw_start + p);
        let keyword = &text[kw_start..kw_end];
        let rest_start = kw_end + (text[kw_end..].len() - text[kw_end..].trim_start().len());
        let (raw_flags, args_start) = extract_flags(text, rest_start);
        let a_start = args_start + (text[args_start..].len() - text[args_start..].trim_start().len());
        let args = text[a_start..].trim_end();
        let (line, _) = self.lg.loc(kw_start);
        let kind = keyword.to_ascii_lowercase();
        let upper = keyword.to_ascii_uppercase();

        let spec: &[(&str, Kind)] = match kind.as_str() {
            "from" => FROM_FLAGS,
            "run" => RUN_FLAGS,
            "copy" => COPY_FLAGS,
            "add" => ADD_FLAGS,
            "healthcheck" => HEALTH_FLAGS,
            k if INSTRUCTIONS.iter().any(|i| i.eq_ignore_ascii_case(k)) => &[],
            _ => {
                let mut e = self.err(kw_start, format!("unknown instruction: {keyword}"));
                e.hint = Some(match suggest(&upper, INSTRUCTIONS.iter().copied()) {
                    Some(s) => format!("did you mean {s}?"),
                    None => "instructions are ADD, ARG, CMD, COPY, ENTRYPOINT, ENV, EXPOSE, FROM, HEALTHCHECK, LABEL, \
                             MAINTAINER, ONBUILD, RUN, SHELL, STOPSIGNAL, USER, VOLUME and WORKDIR; a line \
                             continuation may be missing on the previous line"
                        .into(),
                });
                return Err(e);
            }
        };
        let flags = self.check_flags(&upper, spec, raw_flags)?;
        let mut markers = Vec::new();
        let h = Head {
            kw_start,
            upper: upper.clone(),
            kind: kind.clone(),
            args,
            a_start,
        };

        let command = match kind.as_str() {
            "from" => self.from(&h)?,
            "run" => self.run(&h, &mut markers)?,
            "cmd" | "entrypoint" => self.cmd(&h)?,
            "shell" => self.shell(&h)?,
            "copy" | "add" => self.copy(&h, &mut markers)?,
            "env" | "label" => Command::from_kv(&kind, self.name_vals(&upper, args, a_start, kw_start)?),
            "arg" => self.arg(&h)?,
            "expose" => self.expose(&h)?,
            "volume" => self.volume(&h)?,
            "user" | "workdir" | "maintainer" | "stopsignal" => self.single(&h)?,
            "healthcheck" => Command::Healthcheck(self.healthcheck(&flags, args, a_start, kw_start)?),
            "onbuild" => self.onbuild(&h, &mut markers)?,
            _ => unreachable!("keyword checked above"),
        };

        Ok((
            Instruction {
                line,
                end_line: self.lg.loc(text.len()).0,
                keyword: keyword.to_string(),
                original: text[kw_start..].trim_end().to_string(),
                flags,
                command,
            },
            markers,
        ))
    }

    /// `{KEYWORD} requires {what}`, at the keyword.
    fn need(&self, h: &Head<'_>, what: &str) -> ParseError {
        self.err(h.kw_start, format!("{} requires {what}", h.upper))
    }

    /// `FROM image [AS name]`.
    fn from(&self, h: &Head<'_>) -> Result<Command, ParseError> {
        let (args, a_start) = (h.args, h.a_start);
        let need = |what: &str| self.need(h, what);
        let w = split_sep(args, a_start);
        Ok(match w.as_slice() {
            [(img, _)] => Command::From {
                image: img.to_string(),
                name: None,
            },
            [(img, _), (as_, _), (name, noff)] if as_.eq_ignore_ascii_case("as") => {
                let lower = name.to_ascii_lowercase();
                if !valid_stage_name(&lower) {
                    return Err(self
                        .err(
                            *noff,
                            format!(
                                "invalid name for build stage: {name:?}, name can't start with a number or contain symbols"
                            ),
                        )
                        .with_hint("stage names match [a-z][a-z0-9-_.]*"));
                }
                Command::From {
                    image: img.to_string(),
                    name: Some(lower),
                }
            }
            [] => {
                return Err(need("either one or three arguments")
                    .with_hint("name the base image, e.g. `FROM debian:bookworm-slim` or `FROM scratch`"));
            }
            [_, (as_, off)] if as_.eq_ignore_ascii_case("as") => {
                return Err(self
                    .err(off + as_.len(), "FROM requires either one or three arguments")
                    .with_hint("name the stage after AS, e.g. `FROM golang:1.22 AS build`"));
            }
            [_, (_, off), ..] => {
                return Err(self
                    .err(*off, "FROM requires either one or three arguments")
                    .with_hint("the form is `FROM [--platform=…] image [AS name]`"));
            }
        })
    }

    /// `RUN` in shell or exec form, with the heredoc markers it names.
    fn run(&self, h: &Head<'_>, markers: &mut Vec<usize>) -> Result<Command, ParseError> {
        let (args, a_start) = (h.args, h.a_start);
        let need = |what: &str| self.need(h, what);
        if args.is_empty() {
            return Err(need("at least one argument").with_hint("give a command, e.g. `RUN make`"));
        }
        let cmd = self.maybe_json(args, a_start)?;
        let mut heredocs = Vec::new();
        if let CommandLine::Shell(s) = &cmd
            && s.contains("<<")
        {
            let words = Lexer::new('\\')
                .raw(true, true, false)
                .process_words(s, &|_| None)
                .unwrap_or_default();
            let mut cursor = 0;
            for w in words {
                let off = match s[cursor..].find(&w) {
                    Some(p) => {
                        cursor += p + w.len();
                        a_start + cursor - w.len()
                    }
                    None => a_start,
                };
                if let Some(h) = self.heredoc_marker(&w, off)? {
                    heredocs.push(h);
                    markers.push(off);
                }
            }
        }
        Ok(Command::Run { cmd, heredocs })
    }

    /// `CMD` and `ENTRYPOINT`.
    fn cmd(&self, h: &Head<'_>) -> Result<Command, ParseError> {
        let (upper, args, a_start, kind) = (h.upper.as_str(), h.args, h.a_start, h.kind.as_str());
        let need = |what: &str| self.need(h, what);
        if args.is_empty() {
            return Err(need("at least one argument").with_hint(format!(
                "use `{upper} [\"executable\", \"arg\"]`; `{upper} []` clears an inherited value"
            )));
        }
        let c = self.maybe_json(args, a_start)?;
        Ok(if kind == "cmd" {
            Command::Cmd(c)
        } else {
            Command::Entrypoint(c)
        })
    }

    /// `SHELL ["executable", …]` (JSON only).
    fn shell(&self, h: &Head<'_>) -> Result<Command, ParseError> {
        let (args, a_start) = (h.args, h.a_start);
        let need = |what: &str| self.need(h, what);
        let hint = "write it as a JSON array, e.g. `SHELL [\"/bin/bash\", \"-eo\", \"pipefail\", \"-c\"]`";
        if args.is_empty() {
            return Err(need("at least one argument").with_hint(hint));
        }
        Ok(match json_array(args) {
            Json::Strings(v) if !v.is_empty() => Command::Shell(v),
            Json::Strings(_) => return Err(need("at least one argument").with_hint(hint)),
            Json::NotStrings => return Err(self.not_strings(a_start)),
            Json::Invalid => {
                return Err(self
                    .err(a_start, "SHELL requires the arguments to be in JSON form")
                    .with_hint(hint));
            }
        })
    }

    /// `COPY` and `ADD`: sources (or heredocs) and the destination.
    fn copy(&self, h: &Head<'_>, markers: &mut Vec<usize>) -> Result<Command, ParseError> {
        let (kw_start, upper, args, a_start, kind) = (h.kw_start, h.upper.as_str(), h.args, h.a_start, h.kind.as_str());
        let (words, json): (Vec<(String, usize)>, bool) = match json_array(args) {
            Json::Strings(v) => (v.into_iter().map(|s| (s, a_start)).collect(), true),
            Json::NotStrings => return Err(self.not_strings(a_start)),
            Json::Invalid => (
                split_sep(args, a_start)
                    .into_iter()
                    .map(|(s, o)| (s.to_string(), o))
                    .collect(),
                false,
            ),
        };
        if words.len() < 2 {
            let msg = if words.is_empty() {
                format!("{upper} requires at least two arguments")
            } else {
                format!(
                    "{upper} requires at least two arguments, but only one was provided. Destination could not be determined"
                )
            };
            return Err(self.err(kw_start, msg).with_hint(format!(
                "the last argument is the destination, e.g. `{upper} src/ /app/`"
            )));
        }
        let (dest, doff) = words.last().cloned().unwrap_or_default();
        if !json && self.heredoc_marker(&dest, doff)?.is_some() {
            return Err(self
                .err(doff, format!("{upper} cannot accept a heredoc as a destination"))
                .with_hint("put the destination path last, e.g. `COPY <<EOF /etc/app.conf`"));
        }
        let mut sources = Vec::new();
        let mut heredocs = Vec::new();
        for (w, off) in &words[..words.len() - 1] {
            match if json { None } else { self.heredoc_marker(w, *off)? } {
                Some(h) => {
                    heredocs.push(h);
                    markers.push(*off);
                }
                None => sources.push(w.clone()),
            }
        }
        let c = CopyArgs {
            sources,
            dest,
            heredocs,
        };
        Ok(if kind == "copy" {
            Command::Copy(c)
        } else {
            Command::Add(c)
        })
    }

    /// `ARG name[=default] …`.
    fn arg(&self, h: &Head<'_>) -> Result<Command, ParseError> {
        let (args, a_start) = (h.args, h.a_start);
        let need = |what: &str| self.need(h, what);
        let words = parse_words(args, a_start, self.escape);
        if words.is_empty() {
            return Err(need("at least one argument").with_hint("declare a build argument, e.g. `ARG VERSION=1.0`"));
        }
        let mut decls = Vec::new();
        for (w, off) in words {
            let decl = match w.split_once('=') {
                Some(("", _)) => return Err(self.err(off, "ARG names can not be blank")),
                Some((n, v)) => ArgDecl {
                    name: n.to_string(),
                    default: Some(v.to_string()),
                },
                None => ArgDecl { name: w, default: None },
            };
            decls.push(decl);
        }
        Ok(Command::Arg(decls))
    }

    /// `EXPOSE port[/proto] …`.
    fn expose(&self, h: &Head<'_>) -> Result<Command, ParseError> {
        let (args, a_start) = (h.args, h.a_start);
        let need = |what: &str| self.need(h, what);
        let w = split_sep(args, a_start);
        if w.is_empty() {
            return Err(need("at least one argument").with_hint("e.g. `EXPOSE 8080/tcp`"));
        }
        Ok(Command::Expose(w.into_iter().map(|(s, _)| s.to_string()).collect()))
    }

    /// `VOLUME` in JSON or plain form.
    fn volume(&self, h: &Head<'_>) -> Result<Command, ParseError> {
        let (args, a_start) = (h.args, h.a_start);
        let need = |what: &str| self.need(h, what);
        let v: Vec<String> = match json_array(args) {
            Json::Strings(v) => v,
            Json::NotStrings => return Err(self.not_strings(a_start)),
            Json::Invalid => split_sep(args, a_start)
                .into_iter()
                .map(|(s, _)| s.to_string())
                .collect(),
        };
        if v.is_empty() {
            return Err(need("at least one argument").with_hint("e.g. `VOLUME /data`"));
        }
        if v.iter().any(|s| s.trim().is_empty()) {
            return Err(self.err(a_start, "VOLUME specified can not be an empty string"));
        }
        Ok(Command::Volume(v))
    }

    /// `USER`, `WORKDIR`, `MAINTAINER` and `STOPSIGNAL`: exactly one argument.
    fn single(&self, h: &Head<'_>) -> Result<Command, ParseError> {
        let (args, a_start, kind) = (h.args, h.a_start, h.kind.as_str());
        let need = |what: &str| self.need(h, what);
        if args.is_empty() {
            let hint = match kind {
                "user" => "e.g. `USER app` or `USER 1000:1000`",
                "workdir" => "e.g. `WORKDIR /app`",
                "stopsignal" => "e.g. `STOPSIGNAL SIGTERM`",
                _ => "MAINTAINER is deprecated; prefer `LABEL org.opencontainers.image.authors=…`",
            };
            return Err(need("exactly one argument").with_hint(hint));
        }
        if kind == "stopsignal"
            && let Some(p) = args.find(char::is_whitespace)
        {
            let off = a_start + p + (args[p..].len() - args[p..].trim_start().len());
            return Err(self
                .err(off, "STOPSIGNAL requires exactly one argument")
                .with_hint("give one signal name or number, e.g. `STOPSIGNAL SIGINT`"));
        }
        let s = args.to_string();
        Ok(match kind {
            "user" => Command::User(s),
            "workdir" => Command::Workdir(s),
            "stopsignal" => Command::StopSignal(s),
            _ => Command::Maintainer(s),
        })
    }

    /// `ONBUILD instruction`: the trigger, parsed as an instruction of its own.
    fn onbuild(&self, h: &Head<'_>, markers: &mut Vec<usize>) -> Result<Command, ParseError> {
        let (args, a_start) = (h.args, h.a_start);
        let need = |what: &str| self.need(h, what);
        if args.is_empty() {
            return Err(need("at least one argument").with_hint("e.g. `ONBUILD COPY . /src`"));
        }
        let trig = args
            .split(char::is_whitespace)
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        match trig.as_str() {
            "ONBUILD" => {
                return Err(self
                    .err(a_start, "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
                    .with_hint("write the trigger once: ONBUILD <instruction>"));
            }
            "FROM" | "MAINTAINER" => {
                return Err(self
                    .err(a_start, format!("{trig} isn't allowed as an ONBUILD trigger"))
                    .with_hint("an image built FROM this one names its own base; drop this trigger"));
            }
            _ => {}
        }
        let (inner, m) = self.instruction(a_start)?;
        *markers = m;
        Ok(Command::Onbuild(Box::new(inner)))
    }

    fn not_strings(&self, off: usize) -> ParseError {
        self.err(
            off,
            "when using JSON array syntax, arrays must be comprised of strings only",
        )
        .with_hint("quote every element, e.g. `[\"sleep\", \"10\"]`")
    }

    /// Exec form if the text is a JSON array of strings, else shell form
    /// (BuildKit silently falls back on any JSON syntax error).
    fn maybe_json(&self, args: &str, off: usize) -> Result<CommandLine, ParseError> {
        match json_array(args) {
            Json::Strings(v) => Ok(CommandLine::Exec(v)),
            Json::NotStrings => Err(self.not_strings(off)),
            Json::Invalid => Ok(CommandLine::Shell(args.to_string())),
        }
    }

    fn check_flags(
        &self,
        upper: &str,
        spec: &[(&str, Kind)],
        raw: Vec<(String, usize)>,
    ) -> Result<Vec<Flag>, ParseError> {
        let mut out: Vec<Flag> = Vec::new();
        for (word, off) in raw {
            let body = word.strip_prefix("--").unwrap_or(&word);
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let Some(&(_, kind)) = spec.iter().find(|(n, _)| *n == name) else {
                let mut e = self.err(off, format!("unknown flag: --{name}"));
                e.hint = Some(match suggest(name, spec.iter().map(|(n, _)| *n)) {
                    Some(s) => format!("did you mean --{s}?"),
                    None if spec.is_empty() => format!("{upper} takes no flags"),
                    None => format!(
                        "{upper} accepts {}",
                        spec.iter()
                            .map(|(n, _)| format!("--{n}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
                return Err(e);
            };
            if kind != Kind::Strings && out.iter().any(|f| f.name == name) {
                return Err(self.err(off, format!("duplicate flag specified: --{name}")));
            }
            match (kind, value) {
                (Kind::Bool, Some("")) | (Kind::Str | Kind::Strings, None) => {
                    return Err(self
                        .err(off, format!("missing a value on flag: --{name}"))
                        .with_hint(format!("write it as --{name}=value")));
                }
                (Kind::Bool, Some(v)) if !v.eq_ignore_ascii_case("true") && !v.eq_ignore_ascii_case("false") => {
                    return Err(self.err(off, format!("expecting boolean value for flag {name}, not: {v}")));
                }
                _ => {}
            }
            if upper == "RUN" {
                let allowed: &[&str] = match name {
                    "network" => &["default", "none", "host"],
                    "security" => &["sandbox", "insecure"],
                    _ => &[],
                };
                if let Some(v) = value
                    && !allowed.is_empty()
                    && !allowed.contains(&v)
                {
                    return Err(self
                        .err(off, format!("{name} mode {v:?} not supported"))
                        .with_hint(format!("use one of: {}", allowed.join(", "))));
                }
            }
            let (line, col) = self.lg.loc(off);
            out.push(Flag {
                name: name.to_string(),
                value: value.map(str::to_string),
                line,
                col,
            });
        }
        Ok(out)
    }

    /// `ENV`/`LABEL` arguments: `k=v …` or the legacy `k rest of line`.
    fn name_vals(&self, upper: &str, args: &str, a_start: usize, kw: usize) -> Result<Vec<KeyValue>, ParseError> {
        let words = parse_words(args, a_start, self.escape);
        let Some((first, _)) = words.first() else {
            return Err(self
                .err(kw, format!("{upper} requires at least one argument"))
                .with_hint(format!("e.g. `{upper} KEY=value`")));
        };
        if !first.contains('=') {
            let (k, v) = match args.find(is_sep) {
                Some(p) => (&args[..p], args[p..].trim_start_matches(is_sep)),
                None => (args, ""),
            };
            if v.is_empty() {
                return Err(self
                    .err(a_start + k.len(), format!("{upper} must have two arguments"))
                    .with_hint(format!(
                        "use `{upper} {k}=value` (or `{upper} {k}=` for an empty value)"
                    )));
            }
            return Ok(vec![KeyValue {
                key: k.to_string(),
                value: v.to_string(),
                legacy: true,
            }]);
        }
        let mut out = Vec::new();
        for (w, off) in words {
            let Some((k, v)) = w.split_once('=') else {
                return Err(self
                    .err(
                        off,
                        format!("Syntax error - can't find = in {w:?}. Must be of the form: name=value"),
                    )
                    .with_hint("quote values that contain spaces, e.g. KEY=\"a b\""));
            };
            if k.is_empty() {
                return Err(self.err(off, format!("{upper} names can not be blank")));
            }
            out.push(KeyValue {
                key: k.to_string(),
                value: v.to_string(),
                legacy: false,
            });
        }
        Ok(out)
    }

    fn healthcheck(&self, flags: &[Flag], args: &str, a_start: usize, kw: usize) -> Result<Healthcheck, ParseError> {
        if args.is_empty() {
            return Err(self
                .err(kw, "HEALTHCHECK requires at least one argument")
                .with_hint("e.g. `HEALTHCHECK CMD curl -f http://localhost/ || exit 1`, or `HEALTHCHECK NONE`"));
        }
        let typ_end = args.find(char::is_whitespace).unwrap_or(args.len());
        let typ = args[..typ_end].to_ascii_uppercase();
        let rest_off = typ_end + (args[typ_end..].len() - args[typ_end..].trim_start().len());
        let rest = &args[rest_off..];
        match typ.as_str() {
            "NONE" => {
                if !rest.is_empty() {
                    return Err(self.err(a_start + rest_off, "HEALTHCHECK NONE takes no arguments"));
                }
                Ok(Healthcheck::None)
            }
            "CMD" => {
                let cmd = self.maybe_json(rest, a_start + rest_off)?;
                if matches!(&cmd, CommandLine::Exec(v) if v.is_empty()) || rest.is_empty() {
                    return Err(self
                        .err(a_start + rest_off, "missing command after HEALTHCHECK CMD")
                        .with_hint("e.g. `HEALTHCHECK CMD [\"/healthcheck\"]`"));
                }
                let mut o = HealthcheckOptions::default();
                for f in flags {
                    let v = f.value.as_deref().unwrap_or("");
                    let ferr = |msg: String| ParseError::new(f.line, f.col, msg);
                    if f.name == "retries" {
                        let n: i64 = v
                            .parse()
                            .map_err(|_| ferr(format!("invalid value for --retries: {v:?} is not an integer")))?;
                        if n < 0 {
                            return Err(ferr(format!("--retries cannot be negative ({n})")));
                        }
                        o.retries = Some(u32::try_from(n).map_err(|_| ferr(format!("--retries is too large ({n})")))?);
                        continue;
                    }
                    let d = parse_go_duration(v).map_err(|e| {
                        ferr(format!("invalid duration for --{}: {e}", f.name))
                            .with_hint("use Go duration syntax, e.g. 30s, 1m30s, 500ms")
                    })?;
                    if d != Duration::ZERO && d < Duration::from_millis(1) {
                        return Err(ferr(format!("Interval \"{}\" cannot be less than 1ms", f.name)));
                    }
                    let slot = match f.name.as_str() {
                        "interval" => &mut o.interval,
                        "timeout" => &mut o.timeout,
                        "start-period" => &mut o.start_period,
                        _ => &mut o.start_interval,
                    };
                    *slot = Some(d);
                }
                Ok(Healthcheck::Cmd { cmd, options: o })
            }
            _ => Err(self
                .err(
                    a_start,
                    format!("Unknown type {:?} in HEALTHCHECK (try CMD)", &args[..typ_end]),
                )
                .with_hint("the forms are `HEALTHCHECK [options] CMD command` and `HEALTHCHECK NONE`")),
        }
    }

    /// A heredoc marker word (`<<EOF`, `<<-"EOF"`, `3<<EOF`), as BuildKit's
    /// `^(\d*)<<(-?)\s*([^<]*)$` plus its quoting rules.
    fn heredoc_marker(&self, word: &str, off: usize) -> Result<Option<Heredoc>, ParseError> {
        let digits = word.len() - word.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let Some(rest) = word[digits..].strip_prefix("<<") else {
            return Ok(None);
        };
        let (strip_tabs, rest) = match rest.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, rest),
        };
        let rest = rest.trim_start();
        if rest.is_empty() || rest.contains('<') {
            return Ok(None);
        }
        let env = |_: &str| None;
        let bad = |e: crate::expand::ExpandError| self.err(off, format!("invalid heredoc delimiter: {}", e.message));
        let words = Lexer::new('\\')
            .raw(false, false, true)
            .process_words(rest, &env)
            .map_err(bad)?;
        let [name] = words.as_slice() else {
            return Ok(None);
        };
        let raw = Lexer::new('\\')
            .raw(true, false, true)
            .process_words(rest, &env)
            .map_err(bad)?;
        let quotes = |s: &str| s.chars().filter(|c| *c == '\'' || *c == '"').count();
        let expand = raw.len() == 1 && quotes(name) == quotes(&raw[0]);
        let fd = if digits == 0 { None } else { word[..digits].parse().ok() };
        Ok(Some(Heredoc {
            name: name.clone(),
            content: String::new(),
            expand,
            strip_tabs,
            fd,
        }))
    }
}

impl Command {
    fn from_kv(kind: &str, kv: Vec<KeyValue>) -> Command {
        if kind == "env" {
            Command::Env(kv)
        } else {
            Command::Label(kv)
        }
    }
}

fn valid_stage_name(s: &str) -> bool {
    let mut cs = s.chars();
    cs.next().is_some_and(|c| c.is_ascii_lowercase())
        && cs.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

fn json_array(s: &str) -> Json {
    if !s.starts_with('[') {
        return Json::Invalid;
    }
    match serde_json::from_str::<serde_json::Value>(s) {
        Ok(serde_json::Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for it in items {
                match it {
                    serde_json::Value::String(s) => out.push(s),
                    _ => return Json::NotStrings,
                }
            }
            Json::Strings(out)
        }
        _ => Json::Invalid,
    }
}

/// Split on BuildKit's `[\t\v\f\r ]+` (no quote handling), with offsets.
fn split_sep(s: &str, base: usize) -> Vec<(&str, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in s.char_indices() {
        match (is_sep(c), start) {
            (true, Some(st)) => {
                out.push((&s[st..i], base + st));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(st) = start {
        out.push((&s[st..], base + st));
    }
    out
}

/// BuildKit's `extractBuilderFlags`: leading `--words` (quotes and `\`
/// escapes processed, `--` ends the flags). Returns the flag words with
/// their offsets and where the arguments start.
fn extract_flags(line: &str, start: usize) -> (Vec<(String, usize)>, usize) {
    #[derive(PartialEq)]
    enum Ph {
        Spaces,
        Word,
        Quote,
    }
    let chars: Vec<(usize, char)> = line[start..].char_indices().map(|(i, c)| (start + i, c)).collect();
    let mut words = Vec::new();
    let mut ph = Ph::Spaces;
    let mut word = String::new();
    let mut wstart = start;
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut k = 0;
    loop {
        let at_end = k >= chars.len();
        let (pos, mut ch) = if at_end { (line.len(), '\0') } else { chars[k] };
        k += 1;
        if ph == Ph::Spaces {
            if at_end {
                break;
            }
            if ch.is_whitespace() {
                continue;
            }
            if ch != '-' || chars.get(k).map(|c| c.1) != Some('-') {
                return (words, pos);
            }
            ph = Ph::Word;
            wstart = pos;
        }
        if at_end {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push((word, wstart));
            }
            break;
        }
        if ph == Ph::Word {
            if ch.is_whitespace() {
                ph = Ph::Spaces;
                if word == "--" {
                    return (words, pos);
                }
                if blank_ok || !word.is_empty() {
                    words.push((std::mem::take(&mut word), wstart));
                }
                blank_ok = false;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                ph = Ph::Quote;
                continue;
            }
            if ch == '\\' {
                if k == chars.len() {
                    continue;
                }
                ch = chars[k].1;
                k += 1;
            }
            word.push(ch);
            continue;
        }
        // Quote
        if ch == quote {
            ph = Ph::Word;
            continue;
        }
        if ch == '\\' {
            if k == chars.len() {
                ph = Ph::Word;
                continue;
            }
            ch = chars[k].1;
            k += 1;
        }
        word.push(ch);
    }
    (words, line.len())
}

/// BuildKit's `parseWords`: split on whitespace, keeping quotes and escapes
/// in the words (they are removed later by expansion).
fn parse_words(rest: &str, base: usize, esc: char) -> Vec<(String, usize)> {
    #[derive(PartialEq)]
    enum Ph {
        Spaces,
        Word,
        Quote,
    }
    let chars: Vec<(usize, char)> = rest.char_indices().collect();
    let mut words = Vec::new();
    let mut ph = Ph::Spaces;
    let mut word = String::new();
    let mut wstart = 0;
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut k = 0;
    loop {
        let at_end = k >= chars.len();
        let (pos, mut ch) = if at_end { (rest.len(), '\0') } else { chars[k] };
        k += 1;
        if ph == Ph::Spaces {
            if at_end {
                break;
            }
            if ch.is_whitespace() {
                continue;
            }
            ph = Ph::Word;
            wstart = pos;
        }
        if at_end {
            if blank_ok || !word.is_empty() {
                words.push((word, base + wstart));
            }
            break;
        }
        if ph == Ph::Word {
            if ch.is_whitespace() {
                ph = Ph::Spaces;
                if blank_ok || !word.is_empty() {
                    words.push((std::mem::take(&mut word), base + wstart));
                }
                blank_ok = false;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                ph = Ph::Quote;
            }
            if ch == esc {
                if k == chars.len() {
                    continue;
                }
                word.push(ch);
                ch = chars[k].1;
                k += 1;
            }
            word.push(ch);
            continue;
        }
        // Quote
        if ch == quote {
            ph = Ph::Word;
        }
        if ch == esc && quote != '\'' {
            if k == chars.len() {
                ph = Ph::Word;
                continue;
            }
            word.push(ch);
            ch = chars[k].1;
            k += 1;
        }
        word.push(ch);
    }
    words
}

/// Closest candidate within Levenshtein distance 2 (case-insensitive).
fn suggest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let w = word.to_ascii_lowercase();
    candidates
        .map(|c| (strsim::levenshtein(&w, &c.to_ascii_lowercase()), c))
        .filter(|(d, _)| *d <= 2 && *d < w.chars().count().max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Go's `time.ParseDuration` for non-negative values ("1m30s", "1.5h",
/// "500ms", "0"), exact to the nanosecond. Negative values are rejected.
fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?}");
    let body = s.strip_prefix('+').unwrap_or(s);
    if body.starts_with('-') {
        return Err(format!("{s:?} is negative"));
    }
    if body == "0" {
        return Ok(Duration::ZERO);
    }
    if body.is_empty() {
        return Err(bad());
    }
    let mut total: u128 = 0;
    let mut rest = body;
    while !rest.is_empty() {
        let int_len = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let int = &rest[..int_len];
        rest = &rest[int_len..];
        let mut frac = "";
        if let Some(r) = rest.strip_prefix('.') {
            let l = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
            frac = &r[..l];
            rest = &r[l..];
        }
        if int.is_empty() && frac.is_empty() {
            return Err(bad());
        }
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale: u128 = match &rest[..unit_len] {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(format!("missing unit in duration {s:?}")),
            u => return Err(format!("unknown unit {u:?} in duration {s:?}")),
        };
        rest = &rest[unit_len..];
        let i: u128 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| bad())?
        };
        let mut f: u128 = 0;
        let mut div: u128 = 1;
        for d in frac.bytes().take(18) {
            f = f * 10 + u128::from(d - b'0');
            div *= 10;
        }
        total = i
            .checked_mul(scale)
            .and_then(|v| v.checked_add(f * scale / div))
            .and_then(|v| v.checked_add(total))
            .filter(|v| *v <= i64::MAX as u128)
            .ok_or_else(bad)?;
    }
    Ok(Duration::from_nanos(total as u64))
}

#[cfg(test)]
mod tests;
