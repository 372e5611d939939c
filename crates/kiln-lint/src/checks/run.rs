//! RUN rules: one pass over the script's commands (package managers in [`super::packages`],
//! everyday tools here), then the rules about the step as a whole: downloads run unchecked,
//! fragile pipelines, pipes without pipefail.

use kiln_dockerfile::{Command, CommandLine, Instruction};

use super::packages::{self, Apt};
use super::{Ctx, world_writable_mode};
use crate::shell::{self, Script, SimpleCommand, Word, basename};

pub(super) struct RunCx<'a> {
    pub ins: &'a Instruction,
    pub script: &'a Script,
    pub text: &'a str,
    pub pipefail_shell: bool,
    /// The stage's shell is a plain POSIX sh (the default `/bin/sh -c`).
    pub posix_sh: bool,
    pub pip_no_cache_env: bool,
}

/// Every RUN rule, on one parsed script.
pub(super) fn check_run(cx: &mut Ctx<'_>, r: &RunCx<'_>, copied_secrets: &[(String, usize)]) {
    let mut apt = Apt::default();
    for c in &r.script.commands {
        let argv = c.without_sudo();
        let Some(p) = argv.first().map(|w| basename(&w.text)) else {
            continue;
        };
        if packages::check(cx, r, p, &argv[1..], &mut apt).is_break() {
            continue;
        }
        check_tool(cx, r, c, p, copied_secrets);
        check_sudo_and_substitutions(cx, r.ins, c, p);
    }
    packages::apt_step(cx, r, &apt);
    check_downloads(cx, r);
    check_pipelines(cx, r);
    check_process_substitution(cx, r);
    check_pipefail(cx, r);
}

/// Rules for the everyday tools of one command whose program is `p`.
fn check_tool(cx: &mut Ctx<'_>, r: &RunCx<'_>, c: &SimpleCommand, p: &str, copied_secrets: &[(String, usize)]) {
    let ins = r.ins;
    let rest = &c.without_sudo()[1..];
    match p {
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
}

/// `sudo`, and command substitutions left unquoted, in any command.
fn check_sudo_and_substitutions(cx: &mut Ctx<'_>, ins: &Instruction, c: &SimpleCommand, p: &str) {
    if let Some(first) = c.argv().first()
        && basename(&first.text) == "sudo"
    {
        cx.word(
            "KL202",
            ins,
            "sudo",
            "`sudo` in RUN: steps run as the stage's USER already; switch with USER root for the steps that need it"
                .into(),
        );
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

/// Downloads run without being checked: `curl | sh`, `sh -c "$(curl …)"`.
fn check_downloads(cx: &mut Ctx<'_>, r: &RunCx<'_>) {
    let (ins, s) = (r.ins, r.script);
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
}

/// Pipelines that break on odd file names or on dash: `ls | grep`, `[ a == b ]`, `find | xargs`.
fn check_pipelines(cx: &mut Ctx<'_>, r: &RunCx<'_>) {
    let (ins, s) = (r.ins, r.script);
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
}

/// `bash <(curl …)` anywhere in the script.
fn check_process_substitution(cx: &mut Ctx<'_>, r: &RunCx<'_>) {
    let ins = r.ins;
    if r.text.contains("<(curl") || r.text.contains("<(wget") {
        cx.word(
            "KL013",
            ins,
            "<(",
            "a shell runs an unverified download: save it, check its sha256, then run it".into(),
        );
    }
}

/// A pipe whose earlier commands can fail unseen, without pipefail.
fn check_pipefail(cx: &mut Ctx<'_>, r: &RunCx<'_>) {
    let (ins, s) = (r.ins, r.script);
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

pub(super) fn has_flag(argv: &[Word], long: &[&str], short: char) -> bool {
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
pub(super) fn operands<'w>(argv: &'w [Word], takes_value: &[&str]) -> Vec<&'w Word> {
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

/// The cache mounts of a RUN, read with the build's own `--mount` parser (a mount that does
/// not parse is the build's error to report, not a cache).
pub(super) fn cache_mounts(ins: &Instruction) -> impl Iterator<Item = (String, String)> + '_ {
    ins.flag_values("mount")
        .filter_map(|m| match kiln_plan::mounts::parse(m) {
            Ok(kiln_plan::mounts::RunMount::Cache { target, id, .. }) => Some((target, id)),
            _ => None,
        })
}

pub(super) fn mounts_cache(ins: &Instruction, path: &str) -> bool {
    cache_mounts(ins).any(|(target, _)| target.starts_with(path))
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

fn check_unquoted(cx: &mut Ctx<'_>, ins: &Instruction, prog: &str, rest: &[Word]) {
    if let Some(w) = rest.iter().find(|w| w.unquoted_var && !w.text.starts_with('-')) {
        cx.word("KL402", ins, &w.text, format!("`{prog} … {}` uses an unquoted variable: an empty or spaced value changes the paths; quote it (\"{}\") or use ${{VAR:?}}", w.text, w.text));
    }
}
