//! RUN rules about package managers: confirmations the build cannot give, caches left in
//! the layer, and packages installed without a pinned version.

use std::ops::ControlFlow;

use kiln_dockerfile::Instruction;

use super::Ctx;
use super::run::{RunCx, cache_mounts, has_flag, mounts_cache, operands};
use crate::shell::{Word, basename};

/// What one RUN did with apt, for the rules about the whole step.
#[derive(Debug, Default)]
pub(super) struct Apt {
    update: bool,
    install: bool,
}

/// The package-manager rules for one command whose program is `p`. `Break` means the command
/// is not one the other rules should look at (`python` without `-m pip`).
pub(super) fn check(cx: &mut Ctx<'_>, r: &RunCx<'_>, p: &str, rest: &[Word], apt: &mut Apt) -> ControlFlow<()> {
    match p {
        "apt-get" | "apt" => apt_get(cx, r, p, rest, apt),
        "apk" => apk(cx, r, rest),
        "yum" | "dnf" | "microdnf" | "zypper" | "tdnf" => rpm(cx, r, p, rest),
        "pip" | "pip3" | "python" | "python3" | "uv" => return pip_like(cx, r, p, rest),
        "npm" => npm(cx, r.ins, rest),
        "gem" => gem(cx, r.ins, rest),
        "go" => go(cx, r.ins, rest),
        _ => {}
    }
    ControlFlow::Continue(())
}

/// apt rules that need the whole step: an update with no install, lists left in the layer.
pub(super) fn apt_step(cx: &mut Ctx<'_>, r: &RunCx<'_>, apt: &Apt) {
    let ins = r.ins;
    if apt.update && !apt.install {
        cx.word("KL004", ins, "update", "`apt-get update` without an install in the same RUN leaves a stale index in its own layer: run update and install in one RUN".into());
    }
    if apt.install && !r.text.contains("/var/lib/apt/lists") && !mounts_cache(ins, "/var/lib/apt") {
        cx.word("KL303", ins, "install", "apt lists stay in the layer: end the RUN with `rm -rf /var/lib/apt/lists/*` (or mount a cache at /var/lib/apt)".into());
    }
}

fn apt_get(cx: &mut Ctx<'_>, r: &RunCx<'_>, p: &str, rest: &[Word], apt: &mut Apt) {
    let ins = r.ins;
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
            apt.update = true;
        }
        Some("install") => {
            apt.install = true;
            if !(has_flag(rest, &["--yes", "--assume-yes", "-qq"], 'y') || rest.iter().any(|w| w.text == "-q=2")) {
                cx.word(
                    "KL309",
                    ins,
                    "install",
                    format!("`{p} install` without -y waits for a confirmation the build cannot give: add -y"),
                );
            }
            if !has_flag(rest, &["--no-install-recommends"], '\0') && !r.text.contains("APT::Install-Recommends") {
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
            apt.install = true;
        }
        _ => {}
    }
}

fn apk(cx: &mut Ctx<'_>, r: &RunCx<'_>, rest: &[Word]) {
    let ins = r.ins;
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
            cx.word(
                "KL305",
                ins,
                "add",
                "`apk add` without --no-cache leaves the package index in the layer: use apk add --no-cache".into(),
            );
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

/// yum, dnf, microdnf, zypper and tdnf.
fn rpm(cx: &mut Ctx<'_>, r: &RunCx<'_>, p: &str, rest: &[Word]) {
    let (ins, s) = (r.ins, r.script);
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
            if !pinned && !t.contains('$') && !t.ends_with(".rpm") && !t.contains('/') && !t.starts_with('@') {
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

/// pip, `python -m pip` and `uv pip`.
fn pip_like(cx: &mut Ctx<'_>, r: &RunCx<'_>, p: &str, rest: &[Word]) -> ControlFlow<()> {
    let args: &[Word] = match p {
        "python" | "python3" => {
            let i = rest.iter().position(|w| w.text == "pip");
            match i {
                Some(i) if i > 0 && rest[i - 1].text == "-m" => &rest[i + 1..],
                _ => return ControlFlow::Break(()),
            }
        }
        "uv" => match rest.first() {
            Some(w) if w.text == "pip" => &rest[1..],
            _ => return ControlFlow::Break(()),
        },
        _ => rest,
    };
    check_pip(cx, r, args, p == "uv");
    ControlFlow::Continue(())
}

fn npm(cx: &mut Ctx<'_>, ins: &Instruction, rest: &[Word]) {
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
                cx.word(
                    "KL009",
                    ins,
                    t,
                    format!(
                        "npm package `{t}` has no version: install `{t}@<version>` or use npm ci with package-lock.json"
                    ),
                );
            }
        }
    }
}

fn gem(cx: &mut Ctx<'_>, ins: &Instruction, rest: &[Word]) {
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
    if ops.first().is_some_and(|w| w.text == "install" || w.text == "i") && !has_flag(rest, &["--version", "-v"], '\0')
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

fn go(cx: &mut Ctx<'_>, ins: &Instruction, rest: &[Word]) {
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
        && !cache_mounts(ins).any(|(target, id)| target.contains("pip") || id.contains("pip"))
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
