//! The syntax tree produced by [`crate::parse`].
//!
//! The tree is deliberately *raw*: words, values and flag values are kept as
//! written (no variable expansion, quotes still in place where BuildKit keeps
//! them) because expansion depends on build arguments and on the `ENV`/`ARG`
//! state of the stage, which only the build frontend knows. Use
//! [`crate::expand::Lexer`] with [`Directives::escape`] to expand them.

use std::time::Duration;

/// A parsed Dockerfile: its parser directives and its instructions in order.
///
/// Stages are not split out so that tools (lint, formatting) see the file as
/// written; use [`Dockerfile::stages`] for the build view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// Parser directives from the top of the file.
    pub directives: Directives,
    /// All instructions, in file order (global `ARG`s first, then stages).
    pub instructions: Vec<Instruction>,
}

/// Parser directives (`# syntax=`, `# escape=`, `# check=`).
///
/// They change how the rest of the file is read (escape) or which frontend
/// and checks apply, so consumers need them next to the instructions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directives {
    /// Value of `# syntax=`, e.g. `docker/dockerfile:1`. kiln does not fetch
    /// frontends; the build may warn when this is not a `dockerfile:1` image.
    pub syntax: Option<String>,
    /// The escape character: `\` (default) or `` ` `` (Windows style). Pass it
    /// to [`crate::expand::Lexer::new`] when expanding words of this file.
    pub escape: char,
    /// Raw value of `# check=` (e.g. `skip=JSONArgsRecommended;error=true`),
    /// interpreted by the linter.
    pub check: Option<String>,
}

impl Default for Directives {
    fn default() -> Self {
        Directives {
            syntax: None,
            escape: '\\',
            check: None,
        }
    }
}

/// One instruction with its location and raw pieces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// 1-based line of the keyword.
    pub line: usize,
    /// 1-based last line of the instruction, including continuation lines
    /// and heredoc bodies (and their terminators).
    pub end_line: usize,
    /// The keyword as written (`run`, `Run`, `RUN`…), for linters that care
    /// about casing; the meaning is in [`Instruction::command`].
    pub keyword: String,
    /// The instruction as BuildKit sees it: continuation lines joined (the
    /// escape and newline removed, comment and blank lines inside the
    /// continuation dropped), leading whitespace removed. Heredoc bodies are
    /// not included.
    /// Useful for image history (`created_by`) and cache keys.
    pub original: String,
    /// Flags (`--name[=value]`) in the order written. Already validated
    /// against the instruction; values are quote-removed but not expanded.
    pub flags: Vec<Flag>,
    /// What the instruction does.
    pub command: Command,
}

impl Instruction {
    /// The last occurrence of flag `name` (without `--`), which is the one
    /// that counts for non-repeatable flags.
    pub fn flag(&self, name: &str) -> Option<&Flag> {
        self.flags.iter().rev().find(|f| f.name == name)
    }

    /// The value of a string flag such as `--from`, `--platform`, `--chown`.
    pub fn flag_value(&self, name: &str) -> Option<&str> {
        self.flag(name).and_then(|f| f.value.as_deref())
    }

    /// All values of a repeatable flag (`--mount`, `--exclude`) in order.
    pub fn flag_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.flags
            .iter()
            .filter(move |f| f.name == name)
            .filter_map(|f| f.value.as_deref())
    }

    /// Whether a boolean flag (`--link`, `--parents`, `--keep-git-dir`) is on:
    /// `--link` and `--link=true` (any case) are on, `--link=false` is off.
    pub fn flag_bool(&self, name: &str) -> bool {
        match self.flag(name) {
            None => false,
            Some(f) => f.value.as_deref().is_none_or(|v| v.eq_ignore_ascii_case("true")),
        }
    }
}

/// A `--name[=value]` flag of an instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    /// Name without the leading `--`.
    pub name: String,
    /// `None` for a bare boolean flag (`--link`). Quotes and backslash
    /// escapes are removed (as BuildKit does); variables are not expanded.
    pub value: Option<String>,
    /// 1-based line of the flag's first `-`.
    pub line: usize,
    /// 1-based column (in characters) of the flag's first `-`.
    pub col: usize,
}

/// The meaning of an instruction. All strings are raw (see module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `FROM [--platform=…] image [AS name]`.
    From {
        /// Base image reference or earlier stage name, raw (may hold `$ARG`s).
        image: String,
        /// Stage name, lowercased: stage names are case-insensitive.
        name: Option<String>,
    },
    /// `RUN`.
    Run {
        /// The command. With heredocs it is shell form and still contains
        /// the markers (`<<EOF` alone, or `python3 <<EOF`): BuildKit runs a
        /// lone heredoc as the script, else hands the shell
        /// `cmd\n<body><NAME>…` to interpret.
        cmd: CommandLine,
        /// Heredoc bodies in marker order.
        heredocs: Vec<Heredoc>,
    },
    /// `CMD`.
    Cmd(CommandLine),
    /// `ENTRYPOINT`.
    Entrypoint(CommandLine),
    /// `SHELL ["exe", "arg"…]` (always JSON form, never empty).
    Shell(Vec<String>),
    /// `COPY`.
    Copy(CopyArgs),
    /// `ADD`.
    Add(CopyArgs),
    /// `ENV` pairs.
    Env(Vec<KeyValue>),
    /// `ARG` declarations.
    Arg(Vec<ArgDecl>),
    /// `LABEL` pairs.
    Label(Vec<KeyValue>),
    /// `EXPOSE` words (`80`, `53/udp`, `$PORT`…).
    Expose(Vec<String>),
    /// `USER user[:group]`.
    User(String),
    /// `WORKDIR path`.
    Workdir(String),
    /// `VOLUME` paths (JSON or whitespace separated).
    Volume(Vec<String>),
    /// `STOPSIGNAL signal`.
    StopSignal(String),
    /// `HEALTHCHECK`.
    Healthcheck(Healthcheck),
    /// `ONBUILD` with its trigger (never `ONBUILD`, `FROM` or `MAINTAINER`).
    /// The trigger has the same `line`/`end_line` as the outer instruction.
    Onbuild(Box<Instruction>),
    /// `MAINTAINER` (deprecated; kept so the build can set the author field).
    Maintainer(String),
}

/// A command in exec (JSON) or shell form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandLine {
    /// `["exe", "arg"]`: run without a shell; strings are JSON-decoded.
    Exec(Vec<String>),
    /// `exe arg`: run with the stage's `SHELL`. The text is the instruction
    /// rest (after flags), trimmed, continuation lines joined exactly as
    /// Docker does (escape + newline removed, nothing inserted).
    Shell(String),
}

/// Sources and destination of `COPY`/`ADD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyArgs {
    /// Raw source words, heredoc markers excluded. Expand each with
    /// [`crate::expand::Lexer::process_word`].
    pub sources: Vec<String>,
    /// Raw destination word.
    pub dest: String,
    /// Inline files (`COPY <<EOF /dst`), in the order written; each becomes
    /// a file named [`Heredoc::name`] in the destination.
    pub heredocs: Vec<Heredoc>,
}

/// A here-document (`<<EOF` … `EOF`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word with quotes removed (`EOF` for `<<"EOF"`).
    pub name: String,
    /// The body: every line up to the terminator, each ending in `\n`.
    /// For `<<-` leading tabs are already removed from each line.
    /// Variables are not expanded (see `expand`).
    pub content: String,
    /// `false` when the delimiter was quoted (`<<"EOF"`, `<<'EOF'`): the body
    /// must then be used literally. For `COPY`/`ADD` heredocs BuildKit
    /// expands the body with build args/env when this is `true`; for `RUN`
    /// the shell does it.
    pub expand: bool,
    /// `<<-`: leading tabs were stripped from body lines and terminator.
    pub strip_tabs: bool,
    /// File descriptor prefix (`3<<EOF`), `None` when absent (stdin).
    pub fd: Option<u32>,
}

/// A `KEY=value` pair of `ENV` or `LABEL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// Raw key (may contain variables or quotes).
    pub key: String,
    /// Raw value, quotes not yet removed: expand with
    /// [`crate::expand::Lexer::process_word`].
    pub value: String,
    /// `ENV key value` legacy form (one pair, value is the rest of the line);
    /// linters flag it.
    pub legacy: bool,
}

/// One `ARG name[=default]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    /// Name as written.
    pub name: String,
    /// Raw default value (quotes not yet removed), if any.
    pub default: Option<String>,
}

/// `HEALTHCHECK NONE` or `HEALTHCHECK [options] CMD …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    /// Disable any healthcheck inherited from the base image.
    None,
    /// Run `cmd`; options come from the flags, already validated.
    Cmd {
        /// The check command (shell form maps to `CMD-SHELL`).
        cmd: CommandLine,
        /// Parsed `--interval` etc.; `None` when not given (inherit/default).
        options: HealthcheckOptions,
    },
}

/// Parsed `HEALTHCHECK` flags. Zero durations mean "use the default", as in
/// Docker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthcheckOptions {
    /// `--interval`.
    pub interval: Option<Duration>,
    /// `--timeout`.
    pub timeout: Option<Duration>,
    /// `--start-period`.
    pub start_period: Option<Duration>,
    /// `--start-interval`.
    pub start_interval: Option<Duration>,
    /// `--retries`.
    pub retries: Option<u32>,
}

/// A build stage view over [`Dockerfile::instructions`].
#[derive(Debug, Clone, Copy)]
pub struct Stage<'a> {
    /// The `FROM` instruction opening the stage.
    pub from: &'a Instruction,
    /// Base image word (raw; may contain `$ARG`s or name an earlier stage).
    pub base: &'a str,
    /// Lowercased stage name (`AS name`), if any.
    pub name: Option<&'a str>,
    /// The instructions after `FROM` up to the next `FROM`.
    pub instructions: &'a [Instruction],
}

impl Dockerfile {
    /// The `ARG`s before the first `FROM`: they may be used in `FROM` lines
    /// and re-declared inside stages.
    pub fn global_args(&self) -> &[Instruction] {
        let end = self
            .instructions
            .iter()
            .position(|i| matches!(i.command, Command::From { .. }))
            .unwrap_or(self.instructions.len());
        &self.instructions[..end]
    }

    /// The build stages in order. The parser guarantees every non-`ARG`
    /// instruction belongs to a stage.
    pub fn stages(&self) -> Vec<Stage<'_>> {
        let mut out = Vec::new();
        let starts: Vec<usize> = self
            .instructions
            .iter()
            .enumerate()
            .filter(|(_, i)| matches!(i.command, Command::From { .. }))
            .map(|(n, _)| n)
            .collect();
        for (k, &s) in starts.iter().enumerate() {
            let end = starts.get(k + 1).copied().unwrap_or(self.instructions.len());
            let from = &self.instructions[s];
            if let Command::From { image, name } = &from.command {
                out.push(Stage {
                    from,
                    base: image,
                    name: name.as_deref(),
                    instructions: &self.instructions[s + 1..end],
                });
            }
        }
        out
    }
}
