//! A small POSIX-shell reader for RUN scripts: enough to see which commands
//! run, with which words, and how they are joined (pipes, `&&`, `;`).
//!
//! It is not a shell parser. Rules only need the simple commands of a script
//! and a few facts about each word (was it quoted, does it hold an unquoted
//! `$VAR` or `$(…)`), so unusual syntax degrades to "some words" rather than
//! an error: a linter must never refuse a file the build accepts.

/// One word of a simple command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    /// The word with quotes and escapes removed; `$VAR` and `$(…)` are kept
    /// as written.
    pub text: String,
    /// Some part of the word was quoted.
    pub quoted: bool,
    /// The word holds a `$VAR`/`${…}` outside double quotes (it will be
    /// split and globbed by the shell).
    pub unquoted_var: bool,
    /// The word holds a `$(…)` or backtick substitution outside double quotes.
    pub unquoted_subst: bool,
}

/// A simple command: its words, and how it is connected to its neighbours.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimpleCommand {
    /// The words, redirections removed.
    pub words: Vec<Word>,
    /// The command's output goes into a pipe (`cmd | …`).
    pub pipes_out: bool,
    /// The command reads a pipe (`… | cmd`).
    pub pipes_in: bool,
    /// The command came from a `$(…)`/backtick substitution.
    pub in_subst: bool,
}

/// Words that open or close compound commands: the command is the next word.
const RESERVED: &[&str] = &[
    "if", "then", "else", "elif", "fi", "do", "done", "while", "until", "{", "}", "!", "time", "esac",
];

impl SimpleCommand {
    /// Index of the command word: leading `NAME=value` assignments and
    /// reserved words skipped.
    fn start(&self) -> usize {
        let mut i = 0;
        while let Some(w) = self.words.get(i) {
            if RESERVED.contains(&w.text.as_str()) || is_assignment(&w.text) {
                i += 1;
            } else {
                break;
            }
        }
        i
    }

    /// The program's name (basename of the command word), after assignments
    /// and wrappers that run their arguments (`env`, `nohup`, `exec`,
    /// `command`). `sudo` is *not* skipped here: see [`Self::without_sudo`].
    pub fn program(&self) -> Option<&str> {
        self.argv().first().map(|w| basename(&w.text))
    }

    /// The command and its arguments, starting at the program.
    pub fn argv(&self) -> &[Word] {
        let mut i = self.start();
        while let Some(w) = self.words.get(i) {
            match basename(&w.text) {
                "env" | "nohup" | "exec" | "command" => {
                    i += 1;
                    while self
                        .words
                        .get(i)
                        .is_some_and(|w| is_assignment(&w.text) || w.text.starts_with('-'))
                    {
                        i += 1;
                    }
                }
                _ => break,
            }
        }
        &self.words[i.min(self.words.len())..]
    }

    /// The argv after a leading `sudo [flags]`, so package rules still see
    /// `sudo apt-get install x`.
    pub fn without_sudo(&self) -> &[Word] {
        let argv = self.argv();
        if argv.first().is_some_and(|w| basename(&w.text) == "sudo") {
            let mut i = 1;
            while argv.get(i).is_some_and(|w| w.text.starts_with('-')) {
                // -u USER / -g GROUP take a value.
                let takes = matches!(argv[i].text.as_str(), "-u" | "-g" | "-C" | "-h" | "-p");
                i += if takes { 2 } else { 1 };
            }
            while argv.get(i).is_some_and(|w| is_assignment(&w.text)) {
                i += 1;
            }
            &argv[i.min(argv.len())..]
        } else {
            argv
        }
    }
}

/// `NAME=value` (a shell assignment word).
pub fn is_assignment(w: &str) -> bool {
    match w.find('=') {
        Some(0) | None => false,
        Some(i) => {
            let name = &w[..i];
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit())
        }
    }
}

/// The last `/`-separated part of a path.
pub fn basename(p: &str) -> &str {
    let t = p.trim_end_matches('/');
    t.rsplit('/').next().unwrap_or(t)
}

/// A parsed script.
#[derive(Debug, Clone, Default)]
pub struct Script {
    /// Every simple command, including those inside `$(…)`, in order.
    pub commands: Vec<SimpleCommand>,
}

impl Script {
    /// Commands whose program (after `sudo`) is `name`, with their argv.
    pub fn find<'a>(&'a self, names: &'a [&'a str]) -> impl Iterator<Item = &'a [Word]> + 'a {
        self.commands.iter().filter_map(move |c| {
            let argv = c.without_sudo();
            let p = argv.first().map(|w| basename(&w.text))?;
            names.contains(&p).then_some(argv)
        })
    }
}

/// Reads `src` as a shell script.
pub fn parse(src: &str) -> Script {
    let mut out = Vec::new();
    Reader {
        chars: src.chars().collect(),
        pos: 0,
    }
    .commands(&mut out, false, None);
    Script { commands: out }
}

struct Reader {
    chars: Vec<char>,
    pos: usize,
}

impl Reader {
    fn peek(&self, off: usize) -> Option<char> {
        self.chars.get(self.pos + off).copied()
    }

    /// Reads commands until the end or until `close` (`)` of a substitution
    /// or a backtick) at depth 0.
    fn commands(&mut self, out: &mut Vec<SimpleCommand>, in_subst: bool, close: Option<char>) {
        let mut cur = SimpleCommand {
            in_subst,
            ..Default::default()
        };
        let flush = |cur: &mut SimpleCommand, out: &mut Vec<SimpleCommand>| {
            let done = std::mem::replace(
                cur,
                SimpleCommand {
                    in_subst,
                    ..Default::default()
                },
            );
            if !done.words.is_empty() {
                out.push(done);
            }
        };
        // Commands found inside substitutions of the current command are
        // pushed after it so the order stays readable.
        let mut inner: Vec<SimpleCommand> = Vec::new();
        while let Some(c) = self.peek(0) {
            if Some(c) == close {
                self.pos += 1;
                break;
            }
            match c {
                ' ' | '\t' | '\r' => self.pos += 1,
                '\\' if self.peek(1) == Some('\n') => self.pos += 2,
                '#' => {
                    while self.peek(0).is_some_and(|c| c != '\n') {
                        self.pos += 1;
                    }
                }
                '\n' | ';' | '&' | '(' | ')' => {
                    // `&&`, `;;`, `&`, subshell parentheses: all end the command.
                    self.pos += 1;
                    if c == '&' && self.peek(0) == Some('>') {
                        // `&>file`
                        self.pos += 1;
                        self.skip_redirect_target();
                        continue;
                    }
                    flush(&mut cur, out);
                    out.append(&mut inner);
                }
                '|' => {
                    self.pos += 1;
                    let pipe = self.peek(0) != Some('|');
                    // `||` or `|&`: one more character.
                    if !pipe || self.peek(0) == Some('&') {
                        self.pos += 1;
                    }
                    cur.pipes_out = pipe;
                    flush(&mut cur, out);
                    out.append(&mut inner);
                    cur.pipes_in = pipe;
                }
                '<' | '>' => {
                    self.pos += 1;
                    // `<<EOF`, `<<-EOF`, `<<<word`, `>>`, `>&2`, `<>`.
                    while self.peek(0).is_some_and(|c| matches!(c, '<' | '>' | '-' | '&')) {
                        self.pos += 1;
                    }
                    self.skip_redirect_target();
                }
                _ => {
                    let w = self.word(&mut inner, close);
                    // A word of digits right before a redirection is its fd.
                    if matches!(self.peek(0), Some('<' | '>'))
                        && !w.quoted
                        && w.text.chars().all(|c| c.is_ascii_digit())
                    {
                        continue;
                    }
                    if !w.text.is_empty() || w.quoted {
                        cur.words.push(w);
                    }
                }
            }
        }
        flush(&mut cur, out);
        out.append(&mut inner);
    }

    fn skip_redirect_target(&mut self) {
        while self.peek(0).is_some_and(|c| c == ' ' || c == '\t') {
            self.pos += 1;
        }
        let mut sink = Vec::new();
        self.word(&mut sink, None);
    }

    /// Reads one word starting at the current position.
    fn word(&mut self, inner: &mut Vec<SimpleCommand>, close: Option<char>) -> Word {
        let mut w = Word {
            text: String::new(),
            quoted: false,
            unquoted_var: false,
            unquoted_subst: false,
        };
        let mut dq = false;
        while let Some(c) = self.peek(0) {
            // `(` inside a word such as `$(` is handled below.
            if !dq
                && (Some(c) == close || matches!(c, ' ' | '\t' | '\r' | '\n' | ';' | '&' | '|' | '<' | '>' | ')' | '('))
            {
                break;
            }
            match c {
                '"' => {
                    dq = !dq;
                    w.quoted = true;
                    self.pos += 1;
                }
                '\'' if !dq => {
                    w.quoted = true;
                    self.pos += 1;
                    while let Some(c) = self.peek(0) {
                        self.pos += 1;
                        if c == '\'' {
                            break;
                        }
                        w.text.push(c);
                    }
                }
                '\\' => {
                    self.pos += 1;
                    match self.peek(0) {
                        Some('\n') => self.pos += 1,
                        Some(n) => {
                            if dq && !matches!(n, '$' | '`' | '"' | '\\') {
                                w.text.push('\\');
                            }
                            w.text.push(n);
                            self.pos += 1;
                        }
                        None => w.text.push('\\'),
                    }
                }
                '$' if self.peek(1) == Some('(') => {
                    let start = self.pos;
                    self.pos += 2;
                    if self.peek(0) == Some('(') {
                        // $(( arithmetic )): skip to the matching `))`.
                        let mut depth = 0;
                        while let Some(c) = self.peek(0) {
                            self.pos += 1;
                            if c == '(' {
                                depth += 1;
                            } else if c == ')' {
                                if depth == 0 {
                                    break;
                                }
                                depth -= 1;
                            }
                        }
                    } else {
                        self.commands(inner, true, Some(')'));
                        if !dq {
                            w.unquoted_subst = true;
                        }
                    }
                    w.text.extend(&self.chars[start..self.pos]);
                }
                '`' => {
                    let start = self.pos;
                    self.pos += 1;
                    self.commands(inner, true, Some('`'));
                    if !dq {
                        w.unquoted_subst = true;
                    }
                    w.text.extend(&self.chars[start..self.pos]);
                }
                '$' => {
                    let next = self.peek(1);
                    if next.is_some_and(|n| n == '{' || n.is_ascii_alphabetic() || n == '_' || n == '@' || n == '*')
                        && !dq
                    {
                        w.unquoted_var = true;
                    }
                    if next == Some('{') {
                        let start = self.pos;
                        while let Some(c) = self.peek(0) {
                            self.pos += 1;
                            if c == '}' {
                                break;
                            }
                        }
                        w.text.extend(&self.chars[start..self.pos]);
                    } else {
                        w.text.push('$');
                        self.pos += 1;
                    }
                }
                _ => {
                    w.text.push(c);
                    self.pos += 1;
                }
            }
        }
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progs(s: &str) -> Vec<String> {
        parse(s)
            .commands
            .iter()
            .filter_map(|c| c.program().map(str::to_string))
            .collect()
    }

    #[test]
    fn splits_on_operators() {
        assert_eq!(
            progs("apt-get update && apt-get install -y x; rm -rf /a || true"),
            ["apt-get", "apt-get", "rm", "true"]
        );
        assert_eq!(progs("FOO=1 env BAR=2 make -j2 >/dev/null 2>&1"), ["make"]);
        assert_eq!(progs("if [ -f x ]; then cd /a; fi"), ["[", "cd"]);
    }

    #[test]
    fn pipes_and_substitutions() {
        let s = parse("curl -fsSL https://x | sh");
        assert!(s.commands[0].pipes_out && s.commands[1].pipes_in);
        let s = parse("echo $(curl -s x | bash) \"$(id -u)\" `date`");
        let p: Vec<_> = s.commands.iter().map(|c| c.program().unwrap()).collect();
        assert_eq!(p, ["echo", "curl", "bash", "id", "date"]);
        let echo = &s.commands[0];
        assert!(echo.words[1].unquoted_subst && !echo.words[2].unquoted_subst);
        assert!(!s.commands[0].pipes_out);
    }

    #[test]
    fn words_and_quotes() {
        let s = parse(r#"rm -rf $DIR "$OTHER" '$lit' a\ b"#);
        let w = &s.commands[0].words;
        assert_eq!(w[2].text, "$DIR");
        assert!(w[2].unquoted_var && !w[3].unquoted_var && !w[4].unquoted_var);
        assert_eq!(w[5].text, "a b");
        assert_eq!(
            parse("sudo -u x apt-get install y").commands[0].without_sudo()[0].text,
            "apt-get"
        );
    }
}
