//! The rule implementations. One pass over the instructions, stage by stage;
//! RUN scripts are read once with [`crate::shell`] and every shell rule looks
//! at the same commands.

use std::collections::HashMap;

use kiln_dockerfile::expand::Lexer;
use kiln_dockerfile::{Command, CommandLine, CopyArgs, Dockerfile, Instruction};

use crate::shell::{self, Script, Word, basename};

/// A finding before configuration is applied.
pub(crate) struct Raw {
    pub rule: &'static str,
    pub line: usize,
    pub col: usize,
    pub instruction_line: usize,
    pub message: String,
}

/// The source text, for columns and inline ignores.
pub(crate) struct Source<'a> {
    lines: Vec<&'a str>,
}

impl<'a> Source<'a> {
    pub fn new(text: &'a str) -> Self {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        Source {
            lines: text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).collect(),
        }
    }

    fn line(&self, n: usize) -> &str {
        self.lines.get(n.wrapping_sub(1)).copied().unwrap_or("")
    }

    /// Position of the instruction's keyword.
    fn start(&self, ins: &Instruction) -> (usize, usize) {
        let l = self.line(ins.line);
        let col = l.chars().take_while(|c| c.is_whitespace()).count() + 1;
        (ins.line, col)
    }

    /// First occurrence of `needle` within the instruction's lines, starting
    /// after the keyword; the keyword when it is not found (it was written
    /// with quotes or escapes).
    fn locate(&self, ins: &Instruction, needle: &str) -> (usize, usize) {
        let (line, col) = self.start(ins);
        self.locate_at(ins, needle, (line, col + ins.keyword.chars().count()))
    }

    /// Like [`Self::locate`], searching from `from` (line, 1-based column) on.
    fn locate_at(&self, ins: &Instruction, needle: &str, from: (usize, usize)) -> (usize, usize) {
        if needle.is_empty() {
            return self.start(ins);
        }
        for n in from.0.max(ins.line)..=ins.end_line {
            let l = self.line(n);
            let skip = if n == from.0 {
                l.char_indices().nth(from.1 - 1).map_or(l.len(), |(i, _)| i)
            } else {
                0
            };
            if let Some(i) = l.get(skip..).and_then(|rest| find_word(rest, needle)) {
                return (n, l[..skip + i].chars().count() + 1);
            }
        }
        self.start(ins)
    }

    /// Whether `# kiln:ignore[=IDS]` in the comment lines right above `line`
    /// silences `rule`. `# hadolint ignore=DL…` comments count too, for the
    /// kiln rules that cover those hadolint rules, so a project moving over
    /// keeps its reviewed exceptions.
    pub fn ignored(&self, line: usize, rule: &crate::rules::Rule) -> bool {
        let listed =
            |ids: &str, pred: &dyn Fn(&str) -> bool| ids.split(|c: char| c == ',' || c.is_whitespace()).any(pred);
        let mut n = line;
        while n > 1 {
            n -= 1;
            let l = self.line(n).trim();
            let Some(c) = l.strip_prefix('#') else { break };
            let c = c.trim();
            if let Some(rest) = c.strip_prefix("kiln:ignore") {
                let rest = rest.trim();
                if rest.is_empty() {
                    return true;
                }
                if let Some(ids) = rest.strip_prefix('=')
                    && listed(ids, &|i| i.eq_ignore_ascii_case(rule.id))
                {
                    return true;
                }
            }
            if let Some(ids) = c.strip_prefix("hadolint ignore=")
                && listed(ids, &|i| rule.hadolint.iter().any(|h| h.eq_ignore_ascii_case(i)))
            {
                return true;
            }
        }
        false
    }
}

/// Byte offset of `needle` in `hay` at a word boundary when possible.
fn find_word(hay: &str, needle: &str) -> Option<usize> {
    let mut first = None;
    for (i, _) in hay.match_indices(needle) {
        first.get_or_insert(i);
        let before = hay[..i].chars().next_back();
        let after = hay[i + needle.len()..].chars().next();
        let edge = |c: Option<char>| c.is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '-'));
        if edge(before) && edge(after) {
            return Some(i);
        }
    }
    first
}

struct Ctx<'a> {
    src: &'a Source<'a>,
    out: &'a mut Vec<Raw>,
}

impl Ctx<'_> {
    fn at(&mut self, rule: &'static str, ins: &Instruction, pos: (usize, usize), message: String) {
        self.out.push(Raw {
            rule,
            line: pos.0,
            col: pos.1,
            instruction_line: ins.line,
            message,
        });
    }
    fn word(&mut self, rule: &'static str, ins: &Instruction, needle: &str, message: String) {
        let pos = self.src.locate(ins, needle);
        self.at(rule, ins, pos, message);
    }
    /// `needle` as found after the first `anchor` (e.g. the path after `rm`).
    fn word_after(&mut self, rule: &'static str, ins: &Instruction, anchor: &str, needle: &str, message: String) {
        let a = self.src.locate(ins, anchor);
        let pos = if a == self.src.start(ins) {
            self.src.locate(ins, needle)
        } else {
            self.src.locate_at(ins, needle, a)
        };
        self.at(rule, ins, pos, message);
    }
    fn whole(&mut self, rule: &'static str, ins: &Instruction, message: String) {
        let pos = self.src.start(ins);
        self.at(rule, ins, pos, message);
    }
}

/// What a stage leaves behind for stages built on it.
#[derive(Clone, Default)]
struct StageFacts {
    user: Option<(String, usize)>,
    healthcheck: bool,
    workdir: bool,
}

pub(crate) fn run(df: &Dockerfile, src: &Source<'_>, out: &mut Vec<Raw>) {
    let mut cx = Ctx { src, out };
    let lexer = Lexer::new(df.directives.escape);
    let mut globals: HashMap<String, String> = HashMap::new();
    for ins in df.global_args() {
        if let Command::Arg(decls) = &ins.command {
            for d in decls {
                if let Some(v) = &d.default {
                    let env = |k: &str| globals.get(k).cloned();
                    let v = lexer.process_word(v, &env).unwrap_or_else(|_| v.clone());
                    globals.insert(d.name.clone(), v);
                }
            }
        }
        check_arg_env(&mut cx, ins);
        check_secret_text(&mut cx, ins, &ins.original);
    }
    let stages = df.stages();
    let mut facts: HashMap<String, StageFacts> = HashMap::new();
    let mut stage_names: Vec<String> = Vec::new();
    let mut uses_curl: Option<&Instruction> = None;
    let mut uses_wget: Option<&Instruction> = None;
    let mut last_facts = StageFacts::default();
    let mut final_from: Option<&Instruction> = None;
    let mut final_base_hint = String::new();
    for (idx, stage) in stages.iter().enumerate() {
        let from = stage.from;
        let env = |k: &str| globals.get(k).cloned();
        let image = lexer
            .process_word(stage.base, &env)
            .unwrap_or_else(|_| stage.base.to_string());
        let parent = facts.get(&image.to_ascii_lowercase()).cloned();
        check_from(
            &mut cx,
            from,
            stage.base,
            &image,
            parent.is_some() || stage_names.contains(&image.to_ascii_lowercase()),
        );
        let mut st = parent.clone().unwrap_or_default();
        let mut pipefail_shell = false;
        let mut non_posix_shell = false;
        let mut posix_sh = true;
        let mut pip_no_cache_env = false;
        let mut cmds: Vec<&Instruction> = Vec::new();
        let mut entrypoints: Vec<&Instruction> = Vec::new();
        let mut healthchecks: Vec<&Instruction> = Vec::new();
        let mut copied_secrets: Vec<(String, usize)> = Vec::new();
        for ins in stage.instructions {
            // Literal credentials and URL credentials, in any instruction.
            check_secret_text(&mut cx, ins, &ins.original);
            match &ins.command {
                Command::Run { cmd, heredocs } => {
                    let text = match cmd {
                        CommandLine::Shell(s) => {
                            let mut t = s.clone();
                            for h in heredocs {
                                t.push('\n');
                                t.push_str(&h.content);
                            }
                            t
                        }
                        CommandLine::Exec(argv) => {
                            // `["sh", "-c", "script"]` is a script too.
                            if argv.len() >= 3 && matches!(basename(&argv[0]), "sh" | "bash") && argv[1] == "-c" {
                                argv[2].clone()
                            } else {
                                argv.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" ")
                            }
                        }
                    };
                    let script = shell::parse(&text);
                    let r = RunCx {
                        ins,
                        script: &script,
                        text: &text,
                        pipefail_shell: pipefail_shell || non_posix_shell,
                        posix_sh: posix_sh && matches!(cmd, CommandLine::Shell(_)),
                        pip_no_cache_env,
                    };
                    check_run(&mut cx, &r, &copied_secrets);
                    if script.find(&["curl"]).next().is_some() {
                        uses_curl.get_or_insert(ins);
                    }
                    if script.find(&["wget"]).next().is_some() {
                        uses_wget.get_or_insert(ins);
                    }
                }
                Command::Copy(args) | Command::Add(args) => {
                    let is_add = matches!(ins.command, Command::Add(_));
                    let at = StageRef {
                        name: stage.name,
                        index: idx,
                        earlier: &stage_names,
                    };
                    check_copy(&mut cx, ins, args, is_add, &st, &at);
                    track_secret_copies(ins, args, &mut copied_secrets);
                }
                Command::Env(_) | Command::Arg(_) => {
                    check_arg_env(&mut cx, ins);
                    if let Command::Env(kvs) = &ins.command {
                        pip_no_cache_env |= kvs.iter().any(|kv| kv.key == "PIP_NO_CACHE_DIR");
                    }
                }
                Command::Onbuild(trigger) => {
                    // Triggers run in child images: check what they would do there.
                    if let Command::Run {
                        cmd: CommandLine::Shell(text),
                        ..
                    } = &trigger.command
                    {
                        let script = shell::parse(text);
                        let r = RunCx {
                            ins,
                            script: &script,
                            text,
                            pipefail_shell: true,
                            posix_sh: false,
                            pip_no_cache_env,
                        };
                        check_run(&mut cx, &r, &[]);
                    }
                }
                Command::User(u) => st.user = Some((u.clone(), ins.line)),
                Command::Workdir(w) => {
                    st.workdir = true;
                    let w = w.trim_matches('"');
                    let windows = w.len() >= 2 && w.as_bytes()[1] == b':';
                    if !w.starts_with('/') && !w.starts_with('$') && !windows {
                        cx.word(
                            "KL313",
                            ins,
                            w,
                            format!("WORKDIR `{w}` is relative: use an absolute path such as `/{w}`"),
                        );
                    }
                }
                Command::Expose(ports) => check_expose(&mut cx, ins, ports),
                Command::Cmd(c) => {
                    cmds.push(ins);
                    check_shell_form(&mut cx, ins, "CMD", c);
                }
                Command::Entrypoint(c) => {
                    entrypoints.push(ins);
                    check_shell_form(&mut cx, ins, "ENTRYPOINT", c);
                }
                Command::Healthcheck(_) => {
                    healthchecks.push(ins);
                    st.healthcheck = true;
                }
                Command::Maintainer(_) => cx.whole(
                    "KL307",
                    ins,
                    "MAINTAINER is deprecated: use LABEL org.opencontainers.image.authors=\"…\"".into(),
                ),
                Command::Shell(argv) => {
                    let exe = argv.first().map(|a| basename(a)).unwrap_or("");
                    non_posix_shell = !matches!(exe, "sh" | "bash" | "ash" | "dash" | "zsh" | "ksh");
                    posix_sh = matches!(exe, "sh" | "ash" | "dash");
                    // `-o pipefail`, or combined short options such as `-euxo pipefail`.
                    pipefail_shell = argv.windows(2).any(|w| {
                        w[0].starts_with('-') && !w[0].starts_with("--") && w[0].contains('o') && w[1] == "pipefail"
                    });
                }
                _ => {}
            }
        }
        for (name, list) in [("CMD", &cmds), ("ENTRYPOINT", &entrypoints)] {
            for ins in list.iter().skip(1) {
                cx.whole("KL308", ins, format!("{name} is given more than once in this stage (first at line {}): only the last takes effect, so remove the others", list[0].line));
            }
        }
        for ins in healthchecks.iter().skip(1) {
            cx.whole("KL320", ins, format!("HEALTHCHECK is given more than once in this stage (first at line {}): only the last applies, so keep one", healthchecks[0].line));
        }
        if let Some(n) = stage.name {
            facts.insert(n.to_string(), st.clone());
            stage_names.push(n.to_string());
        }
        facts.insert(idx.to_string(), st.clone());
        if idx + 1 == stages.len() {
            last_facts = st;
            final_from = Some(from);
            final_base_hint = image.to_ascii_lowercase();
        }
    }
    if let Some(from) = final_from {
        check_final(&mut cx, from, &last_facts, &final_base_hint, df);
    }
    if let (Some(c), Some(w)) = (uses_curl, uses_wget) {
        let later = if c.line > w.line {
            (c, "curl", "wget")
        } else {
            (w, "wget", "curl")
        };
        cx.word(
            "KL319",
            later.0,
            later.1,
            format!(
                "both curl and wget are used (`{}` here, `{}` earlier): pick one download tool",
                later.1, later.2
            ),
        );
    }
}

fn shell_quote(a: &str) -> String {
    if a.chars().any(|c| c.is_whitespace() || "'\"$`|&;<>()".contains(c)) {
        format!("'{}'", a.replace('\'', "'\\''"))
    } else {
        a.to_string()
    }
}

// ── FROM ─────────────────────────────────────────────────────────────────

fn check_from(cx: &mut Ctx<'_>, ins: &Instruction, raw: &str, image: &str, is_stage: bool) {
    if let Some(p) = ins.flag_value("platform")
        && !p.contains('$')
    {
        let pos = ins
            .flag("platform")
            .map(|f| (f.line, f.col))
            .unwrap_or_else(|| cx.src.start(ins));
        cx.at(
            "KL317",
            ins,
            pos,
            format!("FROM --platform={p} fixes the platform: leave it out or use $BUILDPLATFORM/$TARGETPLATFORM"),
        );
    }
    if is_stage || image.eq_ignore_ascii_case("scratch") || image.contains('$') || image.is_empty() {
        return;
    }
    let shown = if raw != image {
        format!("`{raw}` (= `{image}`)")
    } else {
        format!("`{image}`")
    };
    let needle = raw;
    let (name, tag, digest) = split_ref(image);
    if digest.is_some() {
        // A digest pins the content, whatever the tag says.
        return;
    }
    match tag {
        None => cx.word(
            "KL001",
            ins,
            needle,
            format!(
                "base image {shown} has no tag, so it floats with `latest`: use `{name}:<version>@sha256:<digest>`"
            ),
        ),
        Some("latest") => cx.word(
            "KL002",
            ins,
            needle,
            format!("base image {shown} uses the moving `latest` tag: use `{name}:<version>@sha256:<digest>`"),
        ),
        Some(t) => cx.word(
            "KL003",
            ins,
            needle,
            format!(
                "base image {shown} is not pinned by digest: use `{name}:{t}@sha256:<digest>` or build with --locked"
            ),
        ),
    }
}

/// `name[:tag][@digest]` → parts.
fn split_ref(r: &str) -> (&str, Option<&str>, Option<&str>) {
    let (rest, digest) = match r.split_once('@') {
        Some((a, d)) => (a, Some(d)),
        None => (r, None),
    };
    let slash = rest.rfind('/').map_or(0, |i| i + 1);
    match rest[slash..].find(':') {
        Some(i) => (&rest[..slash + i], Some(&rest[slash + i + 1..]), digest),
        None => (rest, None, digest),
    }
}

// ── Final stage ──────────────────────────────────────────────────────────

fn check_final(cx: &mut Ctx<'_>, from: &Instruction, st: &StageFacts, base: &str, df: &Dockerfile) {
    let root = |u: &str| {
        let name = u.split(':').next().unwrap_or("").trim_matches('"');
        name == "root" || name == "0"
    };
    match &st.user {
        Some((u, line)) if root(u) => {
            let ins = df.instructions.iter().find(|i| i.line == *line).unwrap_or(from);
            cx.word("KL201", ins, u, format!("the image runs as root (USER {u} is the last USER of the final stage): end with USER and a non-root user, e.g. USER 65532"));
        }
        Some(_) => {}
        None => {
            // Bases such as distroless `:nonroot` set a non-root USER themselves.
            let nonroot_base = base.contains("nonroot") || base.contains("rootless");
            if !nonroot_base {
                cx.whole("KL201", from, "the image runs as root (the final stage sets no USER): add USER with a non-root user, e.g. USER 65532".into());
            }
        }
    }
    if !st.healthcheck {
        cx.whole("KL306", from, "the final stage has no HEALTHCHECK: add HEALTHCHECK CMD […] (or HEALTHCHECK NONE if the image is not a service)".into());
    }
}

// ── ENV / ARG / secrets ──────────────────────────────────────────────────

const SECRET_WORDS: &[&str] = &[
    "PASSWORD",
    "PASSWD",
    "PASSPHRASE",
    "SECRET",
    "TOKEN",
    "APIKEY",
    "API_KEY",
    "ACCESS_KEY",
    "PRIVATE_KEY",
    "AUTH_KEY",
    "CREDENTIAL",
    "AUTH_TOKEN",
    "_PWD",
    "SIGNING_KEY",
    "ENCRYPTION_KEY",
    "MASTER_KEY",
    "CLIENT_KEY",
];
const NOT_SECRET_SUFFIXES: &[&str] = &[
    "_FILE",
    "_PATH",
    "_DIR",
    "_URL",
    "_URI",
    "_ENDPOINT",
    "_LENGTH",
    "_TTL",
    "_TIMEOUT",
    "_ENABLED",
    "_TYPE",
    "_NAME",
    "_ID",
    "_HEADER",
    "_EXPIRY",
    "_EXPIRES",
    "_SIZE",
    "_MIN",
    "_MAX",
    "_POLICY",
    "_LOCATION",
];

/// A variable name that says it holds a credential.
pub(crate) fn secret_name(name: &str) -> bool {
    let n = name.to_ascii_uppercase().replace('-', "_");
    if NOT_SECRET_SUFFIXES.iter().any(|s| n.ends_with(s)) || n.contains("PUBLIC") || n.starts_with("GPG_") {
        return false;
    }
    SECRET_WORDS.iter().any(|w| n.contains(w))
}

fn check_arg_env(cx: &mut Ctx<'_>, ins: &Instruction) {
    match &ins.command {
        Command::Arg(decls) => {
            for d in decls {
                if secret_name(&d.name) {
                    cx.word("KL101", ins, &d.name, format!("ARG {} looks like a credential and build args are kept in the image history: use RUN --mount=type=secret,id={} instead", d.name, d.name.to_ascii_lowercase()));
                }
            }
        }
        Command::Env(kvs) => {
            let mut keys: Vec<&str> = Vec::new();
            for kv in kvs {
                if secret_name(&kv.key) && !kv.value.trim_matches('"').is_empty() {
                    cx.word("KL101", ins, &kv.key, format!("ENV {} looks like a credential and ENV is stored in the image config: use RUN --mount=type=secret,id={} instead", kv.key, kv.key.to_ascii_lowercase()));
                }
                if let Some(k) = keys.iter().find(|k| refers_to(&kv.value, k)) {
                    cx.word("KL315", ins, &kv.key, format!("ENV {} uses ${k}, which is set in the same ENV instruction and is not expanded yet: move {k} to its own ENV before this one", kv.key));
                }
                keys.push(&kv.key);
            }
        }
        _ => {}
    }
}

/// `value` mentions `$k` or `${k…}`.
fn refers_to(value: &str, k: &str) -> bool {
    value.match_indices('$').any(|(i, _)| {
        let rest = &value[i + 1..];
        let rest = rest.strip_prefix('{').unwrap_or(rest);
        rest.starts_with(k) && !rest[k.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// Literal credentials and URL credentials anywhere in an instruction.
fn check_secret_text(cx: &mut Ctx<'_>, ins: &Instruction, text: &str) {
    if let Some((kind, at)) = secret_value(text) {
        let shown: String = text[at..].chars().take(4).collect();
        cx.word("KL102", ins, &shown, format!("{kind} written in the Dockerfile ({shown}…): revoke it and pass it with RUN --mount=type=secret instead"));
    }
    if let Some(user) = url_credentials(text) {
        cx.word("KL104", ins, &format!("{user}:"), format!("a URL carries the password of `{user}`, which stays in the image history: use a secret mount (e.g. a .netrc with RUN --mount=type=secret) instead"));
    }
}

fn is_tok(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// Recognises well-known credential formats; returns a description and the
/// byte offset.
pub(crate) fn secret_value(text: &str) -> Option<(&'static str, usize)> {
    let prefixed: &[(&str, usize, &str)] = &[
        ("AKIA", 16, "an AWS access key id"),
        ("ASIA", 16, "an AWS access key id"),
        ("ghp_", 36, "a GitHub token"),
        ("gho_", 36, "a GitHub token"),
        ("ghs_", 36, "a GitHub token"),
        ("ghu_", 36, "a GitHub token"),
        ("github_pat_", 40, "a GitHub token"),
        ("glpat-", 20, "a GitLab token"),
        ("xoxb-", 20, "a Slack token"),
        ("xoxp-", 20, "a Slack token"),
        ("sk_live_", 20, "a Stripe secret key"),
        ("rk_live_", 20, "a Stripe key"),
        ("npm_", 36, "an npm token"),
        ("pypi-AgEIcHlwaS5vcmc", 20, "a PyPI token"),
        ("AIza", 35, "a Google API key"),
    ];
    for (p, min, kind) in prefixed {
        for (i, _) in text.match_indices(p) {
            if text[..i].chars().next_back().is_some_and(is_tok) {
                continue;
            }
            let body: usize = text[i + p.len()..].chars().take_while(|&c| is_tok(c)).count();
            let upper = p.starts_with("AKIA") || p.starts_with("ASIA");
            if body >= *min
                && (!upper
                    || text[i + p.len()..]
                        .chars()
                        .take(16)
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()))
            {
                return Some((kind, i));
            }
        }
    }
    if let Some(i) = text.find("-----BEGIN ")
        && text[i..].lines().next().is_some_and(|l| l.contains("PRIVATE KEY"))
    {
        return Some(("a private key", i));
    }
    // JWT: three base64url parts, the first starting with {"  (eyJ).
    for (i, _) in text.match_indices("eyJ") {
        let tok: &str = &text[i..];
        let end = tok.find(|c: char| !(is_tok(c) || c == '.')).unwrap_or(tok.len());
        let parts: Vec<&str> = tok[..end].split('.').collect();
        if parts.len() == 3 && parts.iter().all(|p| p.len() >= 10) {
            return Some(("a JSON web token", i));
        }
    }
    for key in ["_authToken=", "_auth=", "_password="] {
        if let Some(i) = text.find(key) {
            let v = &text[i + key.len()..];
            if v.chars().next().is_some_and(|c| c.is_ascii_alphanumeric()) {
                return Some(("a registry credential", i + key.len()));
            }
        }
    }
    None
}

/// `scheme://user:password@host` → the user.
pub(crate) fn url_credentials(text: &str) -> Option<String> {
    for (i, _) in text.match_indices("://") {
        let rest = &text[i + 3..];
        let end = rest
            .find(|c: char| c.is_whitespace() || matches!(c, '/' | '"' | '\'' | '`' | '?' | '#'))
            .unwrap_or(rest.len());
        let auth = &rest[..end];
        if let Some(at) = auth.rfind('@')
            && let Some((user, pass)) = auth[..at].split_once(':')
            && !user.is_empty()
            && !pass.is_empty()
        {
            return Some(user.to_string());
        }
    }
    None
}

const SECRET_FILES: &[&str] = &[
    ".env",
    ".npmrc",
    ".pypirc",
    ".netrc",
    ".git-credentials",
    "id_rsa",
    "id_dsa",
    "id_ecdsa",
    "id_ed25519",
    ".htpasswd",
    "credentials",
    "credentials.json",
    ".dockercfg",
    "secrets.yml",
    "secrets.yaml",
    "secrets.json",
];

/// A file name that usually holds credentials.
pub(crate) fn secret_file(path: &str) -> bool {
    let b = basename(path.trim_matches('"'));
    let lower = b.to_ascii_lowercase();
    if SECRET_FILES.contains(&lower.as_str()) {
        return true;
    }
    if let Some(suffix) = lower.strip_prefix(".env.") {
        return !matches!(suffix, "example" | "sample" | "template" | "dist" | "defaults");
    }
    if lower.ends_with(".key") || lower.ends_with(".p12") || lower.ends_with(".pfx") || lower.ends_with(".jks") {
        return !lower.contains("pub");
    }
    if lower.ends_with(".pem") {
        return ["key", "private", "priv", "secret"].iter().any(|w| lower.contains(w));
    }
    false
}

fn track_secret_copies(ins: &Instruction, args: &CopyArgs, out: &mut Vec<(String, usize)>) {
    for s in &args.sources {
        let s = s.trim_matches('"');
        if secret_file(s)
            || ["secret", "token", "password", "credential"]
                .iter()
                .any(|w| basename(s).to_ascii_lowercase().contains(w))
        {
            let dest = args.dest.trim_matches('"');
            let name = if dest.ends_with('/') || args.sources.len() > 1 || dest == "." {
                basename(s)
            } else {
                basename(dest)
            };
            out.push((name.to_string(), ins.line));
        }
    }
}

// ── COPY / ADD ───────────────────────────────────────────────────────────

const ARCHIVES: &[&str] = &[
    ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tbz", ".tar.xz", ".txz", ".tar.zst", ".tzst", ".gz", ".bz2",
    ".xz",
];

fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://") || s.starts_with("git@") || s.starts_with("git://")
}

/// Where a COPY/ADD sits: its stage's name and index, and the names of earlier stages.
struct StageRef<'a> {
    name: Option<&'a str>,
    index: usize,
    earlier: &'a [String],
}

fn check_copy(cx: &mut Ctx<'_>, ins: &Instruction, args: &CopyArgs, is_add: bool, st: &StageFacts, at: &StageRef<'_>) {
    let kw = if is_add { "ADD" } else { "COPY" };
    let from = ins.flag_value("from");
    if let Some(f) = from
        && !f.contains('$')
    {
        let lower = f.to_ascii_lowercase();
        let earlier_stage = at.earlier.contains(&lower) || f.parse::<usize>().is_ok_and(|i| i < at.index);
        if at.name == Some(lower.as_str()) && !earlier_stage {
            cx.word(
                "KL314",
                ins,
                f,
                format!("{kw} --from={f} names the stage it is in: copy from an earlier stage or an image"),
            );
        } else if !earlier_stage && !f.contains('@') {
            let message = if f.contains([':', '/', '.']) {
                format!("{kw} --from={f} copies from an image that is not pinned by digest: use `{f}@sha256:<digest>`")
            } else {
                format!(
                    "{kw} --from={f} names no earlier stage, so the image `{f}:latest` is pulled: fix the stage name, or pin the image by digest"
                )
            };
            cx.word("KL015", ins, f, message);
        }
    }
    for s in &args.sources {
        let s = s.trim_matches('"');
        if secret_file(s) {
            cx.word("KL103", ins, s, format!("{kw} of `{s}` puts a credential file into a layer: use RUN --mount=type=secret,id={},target=… for the step that needs it", basename(s).trim_start_matches('.')));
        }
    }
    if let Some(mode) = ins.flag_value("chmod")
        && world_writable_mode(mode)
    {
        let pos = ins
            .flag("chmod")
            .map(|f| (f.line, f.col))
            .unwrap_or_else(|| cx.src.start(ins));
        cx.at(
            "KL203",
            ins,
            pos,
            format!(
                "{kw} --chmod={mode} makes files world-writable: give write access to the owner only, e.g. --chmod=755"
            ),
        );
    }
    let n = args.sources.len() + args.heredocs.len();
    let dest = args.dest.trim_matches('"');
    if n > 1 && !dest.ends_with('/') && !dest.ends_with('\\') {
        cx.word(
            "KL316",
            ins,
            dest,
            format!("{kw} has {n} sources, so its destination `{dest}` must end with `/`: write `{dest}/`"),
        );
    }
    let windows_abs = dest.len() >= 2 && dest.as_bytes()[1] == b':';
    if !(st.workdir || dest.starts_with('/') || dest.starts_with('$') || windows_abs) {
        cx.word(
            "KL321",
            ins,
            dest,
            format!("{kw} to the relative path `{dest}` before any WORKDIR: set WORKDIR first or use an absolute path"),
        );
    }
    if !is_add {
        return;
    }
    let urls: Vec<&str> = args
        .sources
        .iter()
        .map(|s| s.trim_matches('"'))
        .filter(|s| is_url(s))
        .collect();
    let checksum = ins.flag_value("checksum").is_some();
    for u in &urls {
        let pinned_git = u.contains(".git")
            && u.rsplit_once('#')
                .is_some_and(|(_, r)| r.len() == 40 && r.chars().all(|c| c.is_ascii_hexdigit()));
        if !checksum && !pinned_git {
            cx.word("KL012", ins, u, format!("ADD of `{u}` downloads whatever the server has at build time: add --checksum=sha256:<digest> (or pin a commit for git)"));
        }
    }
    if urls.is_empty() && ins.flag_value("from").is_none() {
        let local_archive = args.sources.iter().any(|s| {
            let l = s.trim_matches('"').to_ascii_lowercase();
            ARCHIVES.iter().any(|a| l.ends_with(a)) || l.contains('$') || l.contains('*')
        });
        if !local_archive && args.heredocs.is_empty() {
            cx.whole(
                "KL014",
                ins,
                "ADD of local files: use COPY (ADD is for URLs with --checksum and local archives to unpack)".into(),
            );
        }
    }
}

// ── EXPOSE ───────────────────────────────────────────────────────────────

fn check_expose(cx: &mut Ctx<'_>, ins: &Instruction, ports: &[String]) {
    for p in ports {
        let num = p.split('/').next().unwrap_or("");
        if num.contains('$') {
            continue;
        }
        let (lo, hi) = match num.split_once('-') {
            Some((a, b)) => (a, b),
            None => (num, num),
        };
        let (Ok(lo), Ok(hi)) = (lo.parse::<u64>(), hi.parse::<u64>()) else {
            continue;
        };
        if hi > 65535 {
            cx.word(
                "KL206",
                ins,
                p,
                format!("EXPOSE {p}: ports go from 0 to 65535; fix the number"),
            );
            continue;
        }
        let admin: &[(u64, &str)] = &[
            (22, "SSH"),
            (23, "telnet"),
            (2375, "the Docker API"),
            (2376, "the Docker API"),
            (3389, "RDP"),
            (5900, "VNC"),
            (5985, "WinRM"),
            (5986, "WinRM"),
        ];
        if let Some((port, what)) = admin.iter().find(|(a, _)| (lo..=hi).contains(a)) {
            cx.word(
                "KL205",
                ins,
                p,
                format!("EXPOSE {port} opens {what} in a container: remove it and use exec access instead"),
            );
        } else if lo < 1024 {
            cx.word("KL204", ins, p, format!("EXPOSE {p} is a privileged port that needs root to bind: listen on a port ≥ 1024 (e.g. 8080) and map it when publishing"));
        }
    }
}

fn check_shell_form(cx: &mut Ctx<'_>, ins: &Instruction, kw: &str, c: &CommandLine) {
    if let CommandLine::Shell(s) = c {
        let ex: Vec<String> = s
            .split_whitespace()
            .map(|w| format!("\"{}\"", w.trim_matches('"')))
            .collect();
        cx.whole(
            "KL302",
            ins,
            format!(
                "shell-form {kw} runs under /bin/sh -c and gets no signals: use the JSON form {kw} [{}]",
                ex.join(", ")
            ),
        );
    }
}

// ── RUN ──────────────────────────────────────────────────────────────────

struct RunCx<'a> {
    ins: &'a Instruction,
    script: &'a Script,
    text: &'a str,
    pipefail_shell: bool,
    /// The stage's shell is a plain POSIX sh (the default `/bin/sh -c`).
    posix_sh: bool,
    pip_no_cache_env: bool,
}

fn has_flag(argv: &[Word], long: &[&str], short: char) -> bool {
    argv.iter().any(|w| {
        let t = w.text.as_str();
        long.iter().any(|l| t == *l || t.starts_with(&format!("{l}=")))
            || (short != '\0'
                && t.starts_with('-')
                && !t.starts_with("--")
                && t[1..].chars().all(|c| c.is_ascii_alphanumeric())
                && t.contains(short))
    })
}

/// Non-option words after the subcommand, skipping the values of options
/// that take one.
fn operands<'w>(argv: &'w [Word], takes_value: &[&str]) -> Vec<&'w Word> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < argv.len() {
        let t = argv[i].text.as_str();
        if t.starts_with('-') {
            if takes_value.contains(&t) {
                i += 1;
            }
        } else {
            out.push(&argv[i]);
        }
        i += 1;
    }
    out
}

fn mounts_cache(ins: &Instruction, path: &str) -> bool {
    ins.flag_values("mount").any(|m| {
        m.contains("type=cache")
            && m.split(',').any(|kv| {
                kv.split_once('=')
                    .is_some_and(|(k, v)| matches!(k, "target" | "dst" | "destination") && v.starts_with(path))
            })
    })
}

fn check_run(cx: &mut Ctx<'_>, r: &RunCx<'_>, copied_secrets: &[(String, usize)]) {
    let ins = r.ins;
    let s = r.script;
    // Package managers.
    let mut apt_update = None;
    let mut apt_install = false;
    for c in &s.commands {
        let argv = c.without_sudo();
        let Some(p) = argv.first().map(|w| basename(&w.text)) else {
            continue;
        };
        let rest = &argv[1..];
        match p {
            "apt-get" | "apt" => {
                if p == "apt" {
                    cx.word(
                        "KL310",
                        ins,
                        "apt",
                        "`apt` is meant for terminals: use apt-get (or apt-cache) in scripts".into(),
                    );
                }
                let ops = operands(rest, &["-o", "-t", "--target-release", "-c", "--config-file"]);
                match ops.first().map(|w| w.text.as_str()) {
                    Some("update") => {
                        apt_update.get_or_insert(());
                    }
                    Some("install") => {
                        apt_install = true;
                        if !(has_flag(rest, &["--yes", "--assume-yes", "-qq"], 'y')
                            || rest.iter().any(|w| w.text == "-q=2"))
                        {
                            cx.word(
                                "KL309",
                                ins,
                                "install",
                                format!(
                                    "`{p} install` without -y waits for a confirmation the build cannot give: add -y"
                                ),
                            );
                        }
                        if !has_flag(rest, &["--no-install-recommends"], '\0')
                            && !r.text.contains("APT::Install-Recommends")
                        {
                            cx.word("KL304", ins, "install", format!("`{p} install` without --no-install-recommends also installs recommended packages: add --no-install-recommends"));
                        }
                        for w in &ops[1..] {
                            let t = w.text.as_str();
                            if !t.contains('=') && !t.ends_with(".deb") && !t.contains('$') && !t.contains('/') {
                                cx.word("KL005", ins, t, format!("package `{t}` is not pinned: install `{t}=<version>` (or build from a kiln.toml with kiln.lock)"));
                            }
                        }
                    }
                    Some("upgrade" | "dist-upgrade" | "full-upgrade") => {
                        apt_install = true;
                    }
                    _ => {}
                }
            }
            "apk" => {
                let ops = operands(
                    rest,
                    &[
                        "-t",
                        "--virtual",
                        "-X",
                        "--repository",
                        "--root",
                        "-p",
                        "--arch",
                        "--cache-dir",
                        "--repositories-file",
                        "--keys-dir",
                    ],
                );
                if ops.first().is_some_and(|w| w.text == "add") {
                    if !has_flag(rest, &["--no-cache"], '\0')
                        && !mounts_cache(ins, "/var/cache/apk")
                        && !r.text.contains("/var/cache/apk")
                    {
                        cx.word("KL305", ins, "add", "`apk add` without --no-cache leaves the package index in the layer: use apk add --no-cache".into());
                    }
                    for w in &ops[1..] {
                        let t = w.text.as_str();
                        if !t.contains(['=', '~', '<', '>', '$', '/']) && !t.ends_with(".apk") {
                            cx.word(
                                "KL006",
                                ins,
                                t,
                                format!("package `{t}` is not pinned: use `{t}=<version>` (or `{t}~<major.minor>`)"),
                            );
                        }
                    }
                }
            }
            "yum" | "dnf" | "microdnf" | "zypper" | "tdnf" => {
                let ops = operands(
                    rest,
                    &[
                        "-c",
                        "--config",
                        "--setopt",
                        "--enablerepo",
                        "--disablerepo",
                        "--releasever",
                        "--installroot",
                        "-r",
                        "--repo",
                        "-x",
                        "--exclude",
                    ],
                );
                let sub = ops.first().map(|w| w.text.as_str());
                if matches!(sub, Some("install" | "in" | "reinstall")) {
                    let yes = if p == "zypper" {
                        has_flag(rest, &["--non-interactive", "--no-confirm", "-y"], 'n') || has_flag(rest, &[], 'y')
                    } else {
                        p == "microdnf" || has_flag(rest, &["--assumeyes", "--yes", "--assume-yes"], 'y')
                    };
                    if !yes {
                        cx.word(
                            "KL309",
                            ins,
                            ops[0].text.as_str(),
                            format!(
                                "`{p} install` without {} waits for a confirmation the build cannot give: add it",
                                if p == "zypper" { "-n" } else { "-y" }
                            ),
                        );
                    }
                    let cleaned = s.commands.iter().any(|c| {
                        let a = c.without_sudo();
                        a.first().is_some_and(|w| basename(&w.text) == p) && a.iter().any(|w| w.text == "clean")
                    }) || r.text.contains("/var/cache/yum")
                        || r.text.contains("/var/cache/dnf")
                        || r.text.contains("/var/cache/zypp")
                        || mounts_cache(ins, "/var/cache/");
                    if !cleaned {
                        let fix = if p == "zypper" {
                            "zypper clean".to_string()
                        } else {
                            format!("{p} clean all")
                        };
                        cx.word(
                            "KL312",
                            ins,
                            ops[0].text.as_str(),
                            format!("`{p} install` leaves its cache in the layer: end the RUN with `{fix}`"),
                        );
                    }
                    for w in &ops[1..] {
                        let t = w.text.as_str();
                        let pinned = if p == "zypper" {
                            t.contains(['=', '<', '>'])
                        } else {
                            t.split('-')
                                .skip(1)
                                .any(|part| part.starts_with(|c: char| c.is_ascii_digit()))
                                || t.contains(['=', '<', '>'])
                        };
                        if !pinned
                            && !t.contains('$')
                            && !t.ends_with(".rpm")
                            && !t.contains('/')
                            && !t.starts_with('@')
                        {
                            let hint = if p == "zypper" {
                                format!("{t}=<version>")
                            } else {
                                format!("{t}-<version>")
                            };
                            cx.word(
                                "KL007",
                                ins,
                                t,
                                format!("package `{t}` is not pinned: install `{hint}`"),
                            );
                        }
                    }
                }
            }
            "pip" | "pip3" | "python" | "python3" | "uv" => {
                let args: &[Word] = match p {
                    "python" | "python3" => {
                        let i = rest.iter().position(|w| w.text == "pip");
                        match i {
                            Some(i) if i > 0 && rest[i - 1].text == "-m" => &rest[i + 1..],
                            _ => continue,
                        }
                    }
                    "uv" => match rest.first() {
                        Some(w) if w.text == "pip" => &rest[1..],
                        _ => continue,
                    },
                    _ => rest,
                };
                check_pip(cx, r, args, p == "uv");
            }
            "npm" => {
                let ops = operands(rest, &["--prefix", "--registry", "-w", "--workspace", "--cache"]);
                if matches!(
                    ops.first().map(|w| w.text.as_str()),
                    Some("install" | "i" | "add" | "isntall")
                ) {
                    for w in &ops[1..] {
                        let t = w.text.as_str();
                        let at = t.strip_prefix('@').unwrap_or(t);
                        let local = t.starts_with('.')
                            || t.starts_with('/')
                            || t.ends_with(".tgz")
                            || t.contains("://")
                            || t.contains('$')
                            || t.starts_with("git+");
                        let pinned = at
                            .split_once('@')
                            .is_some_and(|(_, v)| !v.is_empty() && v != "latest" && v != "next");
                        if !pinned && !local {
                            cx.word("KL009", ins, t, format!("npm package `{t}` has no version: install `{t}@<version>` or use npm ci with package-lock.json"));
                        }
                    }
                }
            }
            "gem" => {
                let ops = operands(
                    rest,
                    &[
                        "-v",
                        "--version",
                        "-i",
                        "--install-dir",
                        "-n",
                        "--bindir",
                        "-s",
                        "--source",
                        "--platform",
                    ],
                );
                if ops.first().is_some_and(|w| w.text == "install" || w.text == "i")
                    && !has_flag(rest, &["--version", "-v"], '\0')
                {
                    for w in &ops[1..] {
                        let t = w.text.as_str();
                        if !t.contains(':') && !t.contains('$') && !t.ends_with(".gem") {
                            cx.word(
                                "KL010",
                                ins,
                                t,
                                format!("gem `{t}` has no version: install `{t}:<version>` (or -v <version>)"),
                            );
                        }
                    }
                }
            }
            "go" => {
                let ops = operands(
                    rest,
                    &["-o", "-tags", "-ldflags", "-gcflags", "-C", "-mod", "-modfile", "-p"],
                );
                if ops.first().is_some_and(|w| w.text == "install") {
                    for w in &ops[1..] {
                        let t = w.text.as_str();
                        let v = t.rsplit_once('@').map(|(_, v)| v);
                        let local = t.starts_with('.') || t.contains('$') || !t.contains('.') && v.is_none();
                        if !local && (v.is_none() || matches!(v, Some("latest" | "master" | "main" | "HEAD"))) {
                            let name = t.split('@').next().unwrap_or(t);
                            cx.word(
                                "KL011",
                                ins,
                                t,
                                format!("`go install {t}` resolves at build time: use `{name}@v<version>`"),
                            );
                        }
                    }
                }
            }
            "sudo" => {}
            "cd" if !c.in_subst => {
                cx.word(
                    "KL301",
                    ins,
                    "cd",
                    "`cd` lasts for this RUN only: use WORKDIR to change directory".into(),
                );
            }
            "chmod" => {
                for w in rest {
                    if !w.text.starts_with('-') || w.text.starts_with("-w") {
                        if world_writable_mode(&w.text) {
                            cx.word("KL203", ins, &w.text, format!("chmod {} makes files world-writable: give write access to the owner only (e.g. 755 or u+w)", w.text));
                        }
                        break;
                    }
                }
                check_unquoted(cx, ins, p, rest);
            }
            "rm" | "chown" | "mv" | "cp" => {
                check_unquoted(cx, ins, p, rest);
                if p == "rm" {
                    for w in rest.iter().filter(|w| !w.text.starts_with('-')) {
                        let b = basename(&w.text);
                        if let Some((name, line)) = copied_secrets.iter().find(|(n, _)| n == b) {
                            cx.word_after("KL105", ins, "rm", &w.text, format!("`{name}` was copied in at line {line} and is only hidden here: it stays in that layer; use RUN --mount=type=secret instead of COPY"));
                        }
                    }
                }
            }
            "useradd" | "adduser" => {
                let uid = rest
                    .iter()
                    .position(|w| w.text == "-u" || w.text == "--uid")
                    .and_then(|i| rest.get(i + 1));
                if p == "useradd"
                    && let Some(uid) = uid
                    && (uid.text.contains('$') || uid.text.parse::<u64>().is_ok_and(|u| u > 99_999))
                    && !has_flag(rest, &["--no-log-init"], 'l')
                {
                    cx.word(
                        "KL318",
                        ins,
                        "useradd",
                        format!(
                            "useradd -u {} without -l writes a sparse /var/log/lastlog as large as the uid into the layer: add -l",
                            uid.text
                        ),
                    );
                }
            }
            "ln" => {
                let ops = operands(rest, &[]);
                if has_flag(rest, &[], 's') && ops.last().is_some_and(|w| w.text == "/bin/sh") {
                    cx.word("KL322", ins, "ln", "relinking /bin/sh changes the shell for everything in the image: use SHELL [\"/bin/bash\", \"-c\"] instead".into());
                }
            }
            _ => {}
        }
        if let Some(first) = c.argv().first()
            && basename(&first.text) == "sudo"
        {
            cx.word("KL202", ins, "sudo", "`sudo` in RUN: steps run as the stage's USER already; switch with USER root for the steps that need it".into());
        }
        for w in c.argv().iter().skip(1) {
            if w.unquoted_subst
                && !is_assignment_word(&w.text)
                && !matches!(p, "for" | "echo" | "export" | "local" | "[" | "test" | "eval")
            {
                cx.word(
                    "KL403",
                    ins,
                    &w.text,
                    format!(
                        "`{}` is unquoted, so its output is split on spaces and globbed: quote it as \"{}\"",
                        short(&w.text),
                        short(&w.text)
                    ),
                );
                break;
            }
        }
    }
    if apt_update.is_some() && !apt_install {
        cx.word("KL004", ins, "update", "`apt-get update` without an install in the same RUN leaves a stale index in its own layer: run update and install in one RUN".into());
    }
    if apt_install && !r.text.contains("/var/lib/apt/lists") && !mounts_cache(ins, "/var/lib/apt") {
        cx.word("KL303", ins, "install", "apt lists stay in the layer: end the RUN with `rm -rf /var/lib/apt/lists/*` (or mount a cache at /var/lib/apt)".into());
    }
    // curl | sh, sh -c "$(curl …)", bash <(curl …)
    let shells = [
        "sh", "bash", "zsh", "ash", "dash", "ksh", "python", "python3", "perl", "ruby", "node",
    ];
    for (i, c) in s.commands.iter().enumerate() {
        let argv = c.without_sudo();
        let Some(p) = argv.first().map(|w| basename(&w.text)) else {
            continue;
        };
        if matches!(p, "curl" | "wget") && c.pipes_out {
            let next = s.commands[i + 1..]
                .iter()
                .find(|n| n.pipes_in && (!n.in_subst || c.in_subst));
            if let Some(n) = next
                && n.without_sudo()
                    .first()
                    .is_some_and(|w| shells.contains(&basename(&w.text)))
            {
                let sh = basename(&n.without_sudo()[0].text).to_string();
                cx.word(
                    "KL013",
                    ins,
                    p,
                    format!("`{p} … | {sh}` runs an unverified download: save it, check its sha256, then run it"),
                );
            }
        }
        if shells.contains(&p)
            && argv.iter().any(|w| {
                w.text.contains("$(curl")
                    || w.text.contains("$(wget")
                    || w.text.contains("`curl")
                    || w.text.contains("`wget")
            })
        {
            cx.word(
                "KL013",
                ins,
                p,
                format!("`{p}` runs an unverified download: save it, check its sha256, then run it"),
            );
        }
    }
    for (i, c) in s.commands.iter().enumerate() {
        let argv = c.without_sudo();
        if c.pipes_out
            && argv.first().is_some_and(|w| w.text == "ls")
            && s.commands.get(i + 1).is_some_and(|n| {
                n.pipes_in
                    && n.without_sudo()
                        .first()
                        .is_some_and(|w| matches!(basename(&w.text), "grep" | "egrep"))
            })
        {
            cx.word_after("KL405", ins, "ls", "grep", "`ls | grep` breaks on file names with spaces or newlines: use a glob (`for f in /dir/*.conf`) or find -name".into());
        }
        if r.posix_sh
            && argv.first().is_some_and(|w| w.text == "[" || w.text == "test")
            && argv.iter().any(|w| w.text == "==" && !w.quoted)
        {
            cx.word("KL406", ins, "==", "`==` in [ ] is not POSIX: /bin/sh (dash on Debian) fails with `unexpected operator`; use `=`, or set SHELL to bash".into());
        }
        if c.pipes_out
            && argv.first().is_some_and(|w| basename(&w.text) == "find")
            && !argv.iter().any(|w| w.text == "-print0")
            && let Some(next) = s.commands.get(i + 1)
            && next.pipes_in
            && next
                .without_sudo()
                .first()
                .is_some_and(|w| basename(&w.text) == "xargs")
            && !has_flag(next.without_sudo(), &["--null", "-0"], '0')
        {
            cx.word("KL404", ins, "xargs", "`find | xargs` breaks file names with spaces or quotes: use find … -print0 | xargs -0 …, or find … -exec … +".into());
        }
    }
    if r.text.contains("<(curl") || r.text.contains("<(wget") {
        cx.word(
            "KL013",
            ins,
            "<(",
            "a shell runs an unverified download: save it, check its sha256, then run it".into(),
        );
    }
    // Pipes without pipefail.
    if !r.pipefail_shell
        && matches!(
            ins.command,
            Command::Run {
                cmd: CommandLine::Shell(_),
                ..
            }
        )
    {
        let first_pipe = s.commands.iter().position(|c| c.pipes_out && !c.in_subst);
        if let Some(i) = first_pipe {
            let set_before = s.commands[..i].iter().any(|c| {
                let a = c.argv();
                a.first().is_some_and(|w| w.text == "set")
                    && (a
                        .windows(2)
                        .any(|p| p[0].text.contains('o') && p[0].text.starts_with('-') && p[1].text == "pipefail"))
            });
            if !set_before {
                let prog = s.commands[i].program().unwrap_or("|").to_string();
                let pos = cx.src.locate(ins, "|");
                let pos = if pos == cx.src.start(ins) {
                    cx.src.locate(ins, &prog)
                } else {
                    pos
                };
                cx.at("KL401", ins, pos, format!("a failure of `{prog}` before the pipe is ignored: use SHELL [\"/bin/bash\", \"-o\", \"pipefail\", \"-c\"] or start with `set -o pipefail &&`"));
            }
        }
    }
}

fn is_assignment_word(t: &str) -> bool {
    shell::is_assignment(t)
}

fn short(t: &str) -> String {
    if t.chars().count() > 40 {
        format!("{}…", t.chars().take(39).collect::<String>())
    } else {
        t.to_string()
    }
}

fn check_pip(cx: &mut Ctx<'_>, r: &RunCx<'_>, args: &[Word], uv: bool) {
    let ins = r.ins;
    let ops = operands(
        args,
        &[
            "-r",
            "--requirement",
            "-c",
            "--constraint",
            "-e",
            "--editable",
            "-i",
            "--index-url",
            "--extra-index-url",
            "-t",
            "--target",
            "--prefix",
            "--root",
            "-f",
            "--find-links",
            "--trusted-host",
            "--platform",
            "--python-version",
            "--implementation",
            "--abi",
            "--src",
            "--upgrade-strategy",
            "--progress-bar",
            "--cache-dir",
            "--log",
            "--python",
            "-p",
            "--only-binary",
            "--no-binary",
        ],
    );
    if ops.first().is_none_or(|w| w.text != "install") {
        return;
    }
    if !uv
        && !has_flag(args, &["--no-cache-dir"], '\0')
        && !r.pip_no_cache_env
        && !r.text.contains("PIP_NO_CACHE_DIR")
        && !mounts_cache(ins, "/root/.cache")
        && !ins
            .flag_values("mount")
            .any(|m| m.contains("type=cache") && m.contains("pip"))
    {
        cx.word(
            "KL311",
            ins,
            "install",
            "`pip install` keeps its download cache in the layer: add --no-cache-dir".into(),
        );
    }
    for w in &ops[1..] {
        let t = w.text.as_str();
        let local = t.starts_with('.')
            || t.starts_with('/')
            || t.ends_with(".whl")
            || t.ends_with(".tar.gz")
            || t.ends_with(".zip")
            || t.contains("://")
            || t.contains('$')
            || t.contains(" @ ");
        let pinned = t.contains("==") || t.contains('@');
        if !local && !pinned {
            let name = t.split(['<', '>', '~', '!', '[']).next().unwrap_or(t);
            cx.word("KL008", ins, t, format!("`pip install {t}` is not pinned: use `{name}==<version>` or -r requirements.txt with --require-hashes"));
        }
    }
}

fn check_unquoted(cx: &mut Ctx<'_>, ins: &Instruction, prog: &str, rest: &[Word]) {
    if let Some(w) = rest.iter().find(|w| w.unquoted_var && !w.text.starts_with('-')) {
        cx.word("KL402", ins, &w.text, format!("`{prog} … {}` uses an unquoted variable: an empty or spaced value changes the paths; quote it (\"{}\") or use ${{VAR:?}}", w.text, w.text));
    }
}

/// A chmod mode that gives write access to others.
pub(crate) fn world_writable_mode(m: &str) -> bool {
    if !m.is_empty() && m.chars().all(|c| c.is_ascii_digit() && c < '8') {
        let digits: Vec<u32> = m.chars().map(|c| c.to_digit(8).unwrap_or(0)).collect();
        let others = *digits.last().unwrap_or(&0);
        let sticky = digits.len() == 4 && digits[0] & 1 == 1;
        return others & 2 == 2 && !sticky;
    }
    m.split(',').any(|clause| {
        let who: String = clause.chars().take_while(|c| "ugoa".contains(*c)).collect();
        let rest = &clause[who.len()..];
        (who.contains('o') || who.contains('a'))
            && (rest.starts_with('+') || rest.starts_with('='))
            && rest.contains('w')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names() {
        for n in [
            "DB_PASSWORD",
            "NPM_TOKEN",
            "AWS_SECRET_ACCESS_KEY",
            "api-key",
            "GITHUB_TOKEN",
            "MYSQL_ROOT_PASSWORD",
        ] {
            assert!(secret_name(n), "{n}");
        }
        for n in [
            "PASSWORD_FILE",
            "GPG_KEY",
            "PWD",
            "PATH",
            "KEYRING",
            "TOKEN_URL",
            "PUBLIC_KEY",
        ] {
            assert!(!secret_name(n), "{n}");
        }
    }

    #[test]
    fn secret_values() {
        assert!(secret_value("ENV K=AKIAIOSFODNN7EXAMPLE").is_some());
        assert!(secret_value("x glpat-abcdefghij0123456789").is_some());
        assert!(secret_value("-----BEGIN OPENSSH PRIVATE KEY-----").is_some());
        assert!(secret_value("-----BEGIN CERTIFICATE-----").is_none());
        assert!(secret_value("npm_config_loglevel=warn").is_none());
        assert!(secret_value("//registry/:_authToken=${NPM_TOKEN}").is_none());
        assert!(secret_value("echo AKIAFOO").is_none());
    }

    #[test]
    fn url_creds() {
        assert_eq!(url_credentials("https://u:p@h/x").as_deref(), Some("u"));
        assert_eq!(url_credentials("https://u@h/x"), None);
        assert_eq!(url_credentials("git@github.com:a/b"), None);
        assert_eq!(url_credentials("https://h/x?a=b:c@d"), None);
    }

    #[test]
    fn secret_files() {
        for f in [
            ".env",
            "config/.env.production",
            "id_rsa",
            "server.key",
            ".npmrc",
            "/root/.git-credentials",
            "private-key.pem",
        ] {
            assert!(secret_file(f), "{f}");
        }
        for f in [".env.example", "id_rsa.pub", "ca-cert.pem", "keys.txt", "app.py"] {
            assert!(!secret_file(f), "{f}");
        }
    }

    #[test]
    fn modes() {
        for m in ["777", "0777", "666", "o+w", "a+rwx", "u+x,o+w", "ugo=rwx"] {
            assert!(world_writable_mode(m), "{m}");
        }
        for m in ["755", "1777", "644", "u+w", "+x", "g+w"] {
            assert!(!world_writable_mode(m), "{m}");
        }
    }

    #[test]
    fn refs() {
        assert_eq!(
            split_ref("localhost:5000/a/b:1@sha256:x"),
            ("localhost:5000/a/b", Some("1"), Some("sha256:x"))
        );
        assert_eq!(split_ref("localhost:5000/a"), ("localhost:5000/a", None, None));
    }
}
