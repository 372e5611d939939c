//! The rule implementations. One pass over the instructions, stage by stage;
//! RUN scripts are read once with [`crate::shell`] and every shell rule looks
//! at the same commands.

use std::collections::HashMap;

use kiln_dockerfile::expand::Lexer;
use kiln_dockerfile::{Command, CommandLine, CopyArgs, Dockerfile, Heredoc, Instruction, Stage};

use crate::shell::{self, basename};

mod packages;
mod run;

use run::{RunCx, check_run};

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

/// The stage-by-stage walk: what earlier stages left for later ones, and the download tools
/// seen so far.
struct Walk<'d> {
    lexer: Lexer,
    globals: HashMap<String, String>,
    facts: HashMap<String, StageFacts>,
    stage_names: Vec<String>,
    uses_curl: Option<&'d Instruction>,
    uses_wget: Option<&'d Instruction>,
}

/// What one stage's instructions have set so far.
struct StageState<'d> {
    facts: StageFacts,
    pipefail_shell: bool,
    non_posix_shell: bool,
    posix_sh: bool,
    pip_no_cache_env: bool,
    cmds: Vec<&'d Instruction>,
    entrypoints: Vec<&'d Instruction>,
    healthchecks: Vec<&'d Instruction>,
    copied_secrets: Vec<(String, usize)>,
}

impl StageState<'_> {
    fn new(facts: StageFacts) -> Self {
        StageState {
            facts,
            pipefail_shell: false,
            non_posix_shell: false,
            posix_sh: true,
            pip_no_cache_env: false,
            cmds: vec![],
            entrypoints: vec![],
            healthchecks: vec![],
            copied_secrets: vec![],
        }
    }
}

pub(crate) fn run(df: &Dockerfile, src: &Source<'_>, out: &mut Vec<Raw>) {
    let mut cx = Ctx { src, out };
    let mut walk = Walk {
        lexer: Lexer::new(df.directives.escape),
        globals: HashMap::new(),
        facts: HashMap::new(),
        stage_names: Vec::new(),
        uses_curl: None,
        uses_wget: None,
    };
    check_global_args(&mut cx, df, &mut walk);
    let stages = df.stages();
    for (idx, stage) in stages.iter().enumerate() {
        let (st, image) = check_stage(&mut cx, stage, idx, &mut walk);
        if idx + 1 == stages.len() {
            check_final(&mut cx, stage.from, &st, &image.to_ascii_lowercase(), df);
        }
    }
    check_download_tools(&mut cx, walk.uses_curl, walk.uses_wget);
}

/// The ARGs before the first FROM: their defaults (FROM lines may use them) and their rules.
fn check_global_args(cx: &mut Ctx<'_>, df: &Dockerfile, walk: &mut Walk<'_>) {
    for ins in df.global_args() {
        if let Command::Arg(decls) = &ins.command {
            for d in decls {
                if let Some(v) = &d.default {
                    let env = |k: &str| walk.globals.get(k).cloned();
                    let v = walk.lexer.process_word(v, &env).unwrap_or_else(|_| v.clone());
                    walk.globals.insert(d.name.clone(), v);
                }
            }
        }
        check_arg_env(cx, ins);
        check_secret_text(cx, ins, &ins.original);
    }
}

/// One stage: its FROM, every instruction, then the rules about the stage as a whole.
/// Returns what the stage leaves for later ones, and its base image as expanded.
fn check_stage<'d>(cx: &mut Ctx<'_>, stage: &Stage<'d>, idx: usize, walk: &mut Walk<'d>) -> (StageFacts, String) {
    let env = |k: &str| walk.globals.get(k).cloned();
    let image = walk
        .lexer
        .process_word(stage.base, &env)
        .unwrap_or_else(|_| stage.base.to_string());
    let parent = walk.facts.get(&image.to_ascii_lowercase()).cloned();
    let is_stage = parent.is_some() || walk.stage_names.contains(&image.to_ascii_lowercase());
    check_from(cx, stage.from, stage.base, &image, is_stage);
    let mut st = StageState::new(parent.unwrap_or_default());
    for ins in stage.instructions {
        check_instruction(cx, ins, stage, idx, &mut st, walk);
    }
    for (name, list) in [("CMD", &st.cmds), ("ENTRYPOINT", &st.entrypoints)] {
        for ins in list.iter().skip(1) {
            cx.whole("KL308", ins, format!("{name} is given more than once in this stage (first at line {}): only the last takes effect, so remove the others", list[0].line));
        }
    }
    for ins in st.healthchecks.iter().skip(1) {
        cx.whole("KL320", ins, format!("HEALTHCHECK is given more than once in this stage (first at line {}): only the last applies, so keep one", st.healthchecks[0].line));
    }
    if let Some(n) = stage.name {
        walk.facts.insert(n.to_string(), st.facts.clone());
        walk.stage_names.push(n.to_string());
    }
    walk.facts.insert(idx.to_string(), st.facts.clone());
    (st.facts, image)
}

/// One instruction of a stage.
fn check_instruction<'d>(
    cx: &mut Ctx<'_>,
    ins: &'d Instruction,
    stage: &Stage<'d>,
    idx: usize,
    st: &mut StageState<'d>,
    walk: &mut Walk<'d>,
) {
    // Literal credentials and URL credentials, in any instruction.
    check_secret_text(cx, ins, &ins.original);
    match &ins.command {
        Command::Run { cmd, heredocs } => {
            let text = run_text(cmd, heredocs);
            let script = shell::parse(&text);
            let r = RunCx {
                ins,
                script: &script,
                text: &text,
                pipefail_shell: st.pipefail_shell || st.non_posix_shell,
                posix_sh: st.posix_sh && matches!(cmd, CommandLine::Shell(_)),
                pip_no_cache_env: st.pip_no_cache_env,
            };
            check_run(cx, &r, &st.copied_secrets);
            if script.find(&["curl"]).next().is_some() {
                walk.uses_curl.get_or_insert(ins);
            }
            if script.find(&["wget"]).next().is_some() {
                walk.uses_wget.get_or_insert(ins);
            }
        }
        Command::Copy(args) | Command::Add(args) => {
            let is_add = matches!(ins.command, Command::Add(_));
            let at = StageRef {
                name: stage.name,
                index: idx,
                earlier: &walk.stage_names,
            };
            check_copy(cx, ins, args, is_add, &st.facts, &at);
            track_secret_copies(ins, args, &mut st.copied_secrets);
        }
        Command::Env(_) | Command::Arg(_) => {
            check_arg_env(cx, ins);
            if let Command::Env(kvs) = &ins.command {
                st.pip_no_cache_env |= kvs.iter().any(|kv| kv.key == "PIP_NO_CACHE_DIR");
            }
        }
        Command::Onbuild(trigger) => check_onbuild(cx, ins, trigger, st.pip_no_cache_env),
        Command::User(u) => st.facts.user = Some((u.clone(), ins.line)),
        Command::Workdir(w) => {
            st.facts.workdir = true;
            check_workdir(cx, ins, w);
        }
        Command::Expose(ports) => check_expose(cx, ins, ports),
        Command::Cmd(c) => {
            st.cmds.push(ins);
            check_shell_form(cx, ins, "CMD", c);
        }
        Command::Entrypoint(c) => {
            st.entrypoints.push(ins);
            check_shell_form(cx, ins, "ENTRYPOINT", c);
        }
        Command::Healthcheck(_) => {
            st.healthchecks.push(ins);
            st.facts.healthcheck = true;
        }
        Command::Maintainer(_) => cx.whole(
            "KL307",
            ins,
            "MAINTAINER is deprecated: use LABEL org.opencontainers.image.authors=\"…\"".into(),
        ),
        Command::Shell(argv) => {
            let exe = argv.first().map(|a| basename(a)).unwrap_or("");
            st.non_posix_shell = !matches!(exe, "sh" | "bash" | "ash" | "dash" | "zsh" | "ksh");
            st.posix_sh = matches!(exe, "sh" | "ash" | "dash");
            // `-o pipefail`, or combined short options such as `-euxo pipefail`.
            st.pipefail_shell = argv
                .windows(2)
                .any(|w| w[0].starts_with('-') && !w[0].starts_with("--") && w[0].contains('o') && w[1] == "pipefail");
        }
        _ => {}
    }
}

/// The script a RUN runs: shell form with its heredocs, or `["sh", "-c", "script"]`, or an
/// exec form quoted back into one line.
fn run_text(cmd: &CommandLine, heredocs: &[Heredoc]) -> String {
    match cmd {
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
    }
}

/// ONBUILD triggers run in child images: check what they would do there.
fn check_onbuild(cx: &mut Ctx<'_>, ins: &Instruction, trigger: &Instruction, pip_no_cache_env: bool) {
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
        check_run(cx, &r, &[]);
    }
}

fn check_workdir(cx: &mut Ctx<'_>, ins: &Instruction, w: &str) {
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

/// Both curl and wget in one Dockerfile: reported where the second one appears.
fn check_download_tools(cx: &mut Ctx<'_>, uses_curl: Option<&Instruction>, uses_wget: Option<&Instruction>) {
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
