//! The Dockerfile frontend: parsed Dockerfile + build args + base images → [`Plan`].
//!
//! This is where Dockerfile semantics live: ARG scoping (global ARGs usable in FROM and
//! re-declared inside a stage to be seen there), ENV's same-instruction rule, shell form and
//! SHELL, ENTRYPOINT resetting an inherited CMD, ONBUILD triggers of the base, and which
//! stages the target needs. Base images are resolved through a callback so the frontend
//! itself does no I/O.

use std::collections::{BTreeMap, BTreeSet};

use kiln_dockerfile::expand::Lexer;
use kiln_dockerfile::{Command, CommandLine, Dockerfile, Instruction};
use kiln_oci::image::{Empty, Healthcheck as ImageHealthcheck, ImageConfig, rfc3339};
use kiln_oci::{Digest, Platform};

use kiln_plan::plan::{Base, CopyFrom, CopyOp, InlineFile, MkdirOp, Op, Plan, RunOp, StagePlan, Step};
use kiln_plan::platform;

/// Linux's default PATH, added when a base image has none (as BuildKit does).
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A located frontend error: `FILE:LINE:COL: message` plus a hint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{col}: {message}{}", hint.as_ref().map(|h| format!(" (hint: {h})")).unwrap_or_default())]
pub struct FrontendError {
    /// Dockerfile name as given by the user.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

/// A base image resolved by the caller: pinned digest and config.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// Manifest digest.
    pub digest: Digest,
    /// Its config.
    pub config: ImageConfig,
}

/// An `ADD` source outside the context, for the caller to pin (and fetch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteSource<'r> {
    /// `ADD https://…`, with its `--checksum` if given.
    Url {
        /// The URL.
        url: &'r str,
        /// `--checksum=sha256:…`.
        checksum: Option<&'r Digest>,
        /// `--hermetic`: refuse it unless something pins it.
        hermetic: bool,
    },
    /// `ADD <git repository>#ref`.
    Git {
        /// The source as written (`https://host/repo.git#ref`): the lock's key.
        source: &'r str,
        /// The repository, without `#…`.
        url: &'r str,
        /// The ref after `#` (empty: the default branch).
        reference: &'r str,
        /// `--hermetic`: refuse it unless something pins it.
        hermetic: bool,
    },
}

/// What a [`RemoteSource`] was pinned to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemotePin {
    /// A URL's content, now in the store.
    Url {
        /// sha256 of the content.
        digest: Digest,
        /// The server's `Last-Modified`.
        mtime: Option<i64>,
    },
    /// A git ref's commit.
    Git {
        /// Full commit id.
        commit: String,
    },
}

/// The resolver of remote `ADD` sources; the error string is shown at the instruction.
pub type ResolveRemote<'a> = &'a dyn Fn(&RemoteSource<'_>) -> Result<RemotePin, String>;

/// A resolver for callers that have no network access to give: every remote source is refused.
pub fn no_remote(_: &RemoteSource<'_>) -> Result<RemotePin, String> {
    Err("remote sources cannot be fetched here (hint: build with `kiln build`)".into())
}

/// Everything the frontend needs besides the Dockerfile text.
pub struct FrontendInput<'a> {
    /// Name used in messages (`Dockerfile`, `docker/app.Dockerfile`).
    pub file_name: &'a str,
    /// The Dockerfile.
    pub source: &'a str,
    /// `--build-arg` values in command-line order.
    pub build_args: &'a [(String, String)],
    /// `--target`.
    pub target: Option<&'a str>,
    /// Platform to build for.
    pub platform: Platform,
    /// Platform of the machine building.
    pub build_platform: Platform,
    /// SOURCE_DATE_EPOCH.
    pub source_date_epoch: i64,
    /// `org.opencontainers.image.revision` (git commit of the context), if known.
    pub revision: Option<String>,
    /// `org.opencontainers.image.source` (git remote of the context), if known.
    pub source_url: Option<String>,
    /// Resolves an image name for a platform; the error string is shown to the user.
    pub resolve_image: &'a dyn Fn(&str, &Platform) -> Result<ResolvedImage, String>,
    /// `--hermetic`: an input that is not pinned (ADD of a URL without `--checksum` or a lock
    /// pin, a git ref that is not a commit) is an error; the remote resolver refuses it.
    pub hermetic: bool,
    /// Pins (and fetches) `ADD` sources outside the context: URLs and git repositories.
    pub resolve_remote: ResolveRemote<'a>,
}

/// The plan and what the frontend noticed on the way.
#[derive(Debug)]
pub struct FrontendOutput {
    /// The plan.
    pub plan: Plan,
    /// `--build-arg` names no ARG consumed (docker warns about these).
    pub unused_build_args: Vec<String>,
}

struct Ctx<'a> {
    input: &'a FrontendInput<'a>,
    lexer: Lexer,
    used_args: BTreeSet<String>,
}

impl Ctx<'_> {
    fn err(&self, line: usize, col: usize, message: impl Into<String>, hint: Option<&str>) -> FrontendError {
        FrontendError {
            file: self.input.file_name.to_string(),
            line,
            col,
            message: message.into(),
            hint: hint.map(Into::into),
        }
    }

    fn build_arg(&mut self, name: &str) -> Option<String> {
        let v = self
            .input
            .build_args
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone());
        if v.is_some() {
            self.used_args.insert(name.to_string());
        }
        v
    }
}

/// The mutable state of a stage while its instructions are dispatched.
struct StageState {
    config: ImageConfig,
    /// Build args visible in this stage, in declaration order.
    args: Vec<(String, String)>,
    shell: Vec<String>,
    cmd_set: bool,
    steps: Vec<Step>,
    depends_on: Vec<usize>,
}

impl StageState {
    fn set_env(&mut self, key: &str, value: &str) {
        let env = self.config.config.env.get_or_insert_with(Vec::new);
        let entry = format!("{key}={value}");
        match env
            .iter()
            .position(|kv| kv.split_once('=').map(|(k, _)| k) == Some(key))
        {
            Some(i) => env[i] = entry,
            None => env.push(entry),
        }
    }

    fn workdir(&self) -> String {
        self.config
            .config
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into())
    }
}

/// Builds the plan.
pub fn plan(input: &FrontendInput<'_>) -> Result<FrontendOutput, FrontendError> {
    let df = kiln_dockerfile::parse(input.source).map_err(|e| FrontendError {
        file: input.file_name.to_string(),
        line: e.line,
        col: e.col,
        message: e.message.clone(),
        hint: e.hint.clone(),
    })?;
    let mut ctx = Ctx {
        input,
        lexer: Lexer::new(df.directives.escape),
        used_args: BTreeSet::new(),
    };
    let globals = global_args(&mut ctx, &df)?;
    let mut stages: Vec<StagePlan> = Vec::new();
    for st in df.stages() {
        if let Some(name) = st.name
            && stages.iter().any(|s| s.name.as_deref() == Some(name))
        {
            return Err(ctx.err(
                st.from.line,
                1,
                format!("duplicate stage name {name:?}"),
                Some("give each FROM … AS a different name"),
            ));
        }
        let plan = plan_stage(&mut ctx, &globals, &stages, st)?;
        stages.push(plan);
    }
    if stages.is_empty() {
        return Err(ctx.err(
            1,
            1,
            "the Dockerfile has no FROM instruction",
            Some("start the file with FROM <image> or FROM scratch"),
        ));
    }
    let target = match input.target {
        None => stages.len() - 1,
        Some(t) => {
            let t = t.to_lowercase();
            stages
                .iter()
                .position(|s| s.name.as_deref() == Some(t.as_str()))
                .ok_or_else(|| {
                    let names: Vec<_> = stages.iter().filter_map(|s| s.name.clone()).collect();
                    FrontendError {
                        file: input.file_name.to_string(),
                        line: 1,
                        col: 1,
                        message: format!("target stage {t:?} could not be found"),
                        hint: Some(format!("stages named in this Dockerfile: {}", names.join(", "))),
                    }
                })?
        }
    };
    mark_needed(&mut stages, target);
    add_oci_labels(input, &mut stages, target);
    let unused_build_args = input
        .build_args
        .iter()
        .map(|(k, _)| k.clone())
        .filter(|k| !ctx.used_args.contains(k) && !is_predefined_arg(k))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    Ok(FrontendOutput {
        plan: Plan {
            platform: input.platform.clone(),
            source_date_epoch: input.source_date_epoch,
            history_comment: Some("kiln".into()),
            stages,
            target,
        },
        unused_build_args,
    })
}

/// Proxy variables are usable without an ARG, as in Docker.
fn is_predefined_arg(name: &str) -> bool {
    matches!(
        name.to_ascii_uppercase().as_str(),
        "HTTP_PROXY" | "HTTPS_PROXY" | "FTP_PROXY" | "NO_PROXY" | "ALL_PROXY" | "SOURCE_DATE_EPOCH"
    )
}

fn global_args(ctx: &mut Ctx<'_>, df: &Dockerfile) -> Result<Vec<(String, String)>, FrontendError> {
    let mut globals = platform::automatic_args(&ctx.input.build_platform, &ctx.input.platform);
    for instr in df.global_args() {
        let Command::Arg(decls) = &instr.command else { continue };
        for d in decls {
            let value = match ctx.build_arg(&d.name) {
                Some(v) => Some(v),
                None => match &d.default {
                    Some(def) => Some(expand(ctx, instr, def, &|n| lookup(&globals, n))?),
                    None => None,
                },
            };
            globals.retain(|(k, _)| k != &d.name);
            if let Some(v) = value {
                globals.push((d.name.clone(), v));
            }
        }
    }
    Ok(globals)
}

fn lookup(vars: &[(String, String)], name: &str) -> Option<String> {
    vars.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

/// Hint for a variable expansion that failed (`${x:?msg}`, an unclosed `${`, a bad modifier).
const EXPAND_HINT: &str =
    "define the variable with ARG, ENV or --build-arg, and check the ${...} syntax (write a literal $ as \\$)";

fn expand(
    ctx: &Ctx<'_>,
    instr: &Instruction,
    word: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, FrontendError> {
    ctx.lexer
        .process_word(word, env)
        .map_err(|e| ctx.err(instr.line, 1, e.to_string(), Some(EXPAND_HINT)))
}

fn expand_words(
    ctx: &Ctx<'_>,
    instr: &Instruction,
    word: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>, FrontendError> {
    ctx.lexer
        .process_words(word, env)
        .map_err(|e| ctx.err(instr.line, 1, e.to_string(), Some(EXPAND_HINT)))
}

fn plan_stage(
    ctx: &mut Ctx<'_>,
    globals: &[(String, String)],
    earlier: &[StagePlan],
    st: kiln_dockerfile::Stage<'_>,
) -> Result<StagePlan, FrontendError> {
    let index = earlier.len();
    let from = st.from;
    let genv = |n: &str| lookup(globals, n);
    let image = expand(ctx, from, st.base, &genv)?;
    let stage_platform = match from.flag("platform") {
        Some(f) => {
            let v = expand(ctx, from, f.value.as_deref().unwrap_or_default(), &genv)?;
            platform::parse(&v).ok_or_else(|| {
                ctx.err(
                    f.line,
                    f.col,
                    format!("invalid platform {v:?}"),
                    Some("write it as os/arch[/variant], e.g. linux/arm64"),
                )
            })?
        }
        None => ctx.input.platform.clone(),
    };
    if image.is_empty() {
        return Err(ctx.err(
            from.line,
            1,
            "FROM names an empty image (a build arg expanded to nothing?)",
            Some("pass --build-arg or give the ARG a default"),
        ));
    }
    let lower = image.to_lowercase();
    let mut depends_on = Vec::new();
    let (base, mut config) = if lower == "scratch" {
        (Base::Scratch, scratch_config(&stage_platform))
    } else if let Some(s) = earlier.iter().find(|s| s.name.as_deref() == Some(lower.as_str())) {
        depends_on.push(s.index);
        (Base::Stage { index: s.index }, s.config.clone())
    } else {
        let r = (ctx.input.resolve_image)(&image, &stage_platform).map_err(|e| {
            ctx.err(
                from.line,
                1,
                format!("base image {image:?}: {e}"),
                (!e.contains("(hint:"))
                    .then_some("build or load the base image first (kiln images lists what the store has)"),
            )
        })?;
        (
            Base::Image {
                reference: image.clone(),
                digest: r.digest,
            },
            r.config,
        )
    };
    if !config
        .config
        .env
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|e| e.starts_with("PATH="))
        && config.os == "linux"
    {
        config
            .config
            .env
            .get_or_insert_with(Vec::new)
            .insert(0, DEFAULT_PATH.to_string());
    }
    let triggers = config.config.on_build.take().unwrap_or_default();
    let mut state = StageState {
        config,
        args: Vec::new(),
        shell: vec!["/bin/sh".into(), "-c".into()],
        cmd_set: false,
        steps: Vec::new(),
        depends_on,
    };
    if let Some(sh) = state.config.config.shell.clone() {
        state.shell = sh;
    }
    // The base's ONBUILD triggers run first, as if written right after FROM.
    for trigger in &triggers {
        // A trigger alone is not a Dockerfile (the parser wants a FROM first), so parse it
        // inside a stage and drop that FROM.
        let parsed = kiln_dockerfile::parse(&format!("FROM scratch\n{trigger}\n")).map_err(|e| {
            ctx.err(
                from.line,
                1,
                format!("ONBUILD trigger {trigger:?} of the base image: {}", e.message),
                None,
            )
        })?;
        for mut instr in parsed.instructions.into_iter().skip(1) {
            instr.line = from.line;
            instr.end_line = from.line;
            dispatch(ctx, globals, earlier, &mut state, &instr)?;
        }
    }
    for instr in st.instructions {
        dispatch(ctx, globals, earlier, &mut state, instr)?;
    }
    let sde = ctx.input.source_date_epoch;
    state.config.created = Some(rfc3339(sde));
    state.config.architecture = stage_platform.architecture.clone();
    state.config.os = stage_platform.os.clone();
    state.config.variant = stage_platform.variant.clone();
    Ok(StagePlan {
        index,
        name: st.name.map(str::to_string),
        line: from.line,
        base,
        steps: state.steps,
        config: state.config,
        needed: false,
        depends_on: state.depends_on,
    })
}

fn scratch_config(p: &Platform) -> ImageConfig {
    ImageConfig {
        architecture: p.architecture.clone(),
        os: p.os.clone(),
        variant: p.variant.clone(),
        ..Default::default()
    }
}

/// The variables an instruction sees: the stage's build args, then its ENV (which wins).
/// Taken before the instruction, so `ENV a=1 b=$a` sees the old `a` (ENV's same-instruction
/// rule).
fn visible_env(state: &StageState) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = state.args.clone();
    for kv in state.config.config.env.as_deref().unwrap_or_default() {
        if let Some((k, val)) = kv.split_once('=') {
            v.push((k.to_string(), val.to_string()));
        }
    }
    v
}

/// One instruction: its effect on the stage's config and, for those that make a layer,
/// its step.
fn dispatch(
    ctx: &mut Ctx<'_>,
    globals: &[(String, String)],
    earlier: &[StagePlan],
    state: &mut StageState,
    instr: &Instruction,
) -> Result<(), FrontendError> {
    let snapshot_env = visible_env(state);
    let env = |n: &str| lookup(&snapshot_env, n);
    let op = match &instr.command {
        Command::From { .. } => unreachable!("stages never contain FROM"),
        Command::Arg(decls) => {
            declare_args(ctx, globals, state, instr, decls, &env)?;
            return Ok(()); // ARG leaves no history, as in BuildKit.
        }
        Command::Env(kvs) => {
            set_env(ctx, state, instr, kvs, &env)?;
            Op::Metadata
        }
        Command::Workdir(w) => {
            let w = expand(ctx, instr, w, &env)?;
            let path = clean_abs(&join_path(&state.workdir(), &w));
            state.config.config.working_dir = Some(path.clone());
            Op::Mkdir(MkdirOp {
                path,
                user: state.config.config.user.clone(),
            })
        }
        Command::Copy(args) | Command::Add(args) => {
            let is_add = matches!(instr.command, Command::Add(_));
            Op::Copy(plan_copy(ctx, earlier, state, instr, args, is_add, &env)?)
        }
        Command::Run { cmd, heredocs } => Op::Run(plan_run(ctx, earlier, state, instr, cmd, heredocs, &env)?),
        other => {
            set_config(ctx, state, instr, other, &env)?;
            Op::Metadata
        }
    };
    state.steps.push(Step {
        line: instr.line,
        created_by: instr.original.clone(),
        op,
    });
    Ok(())
}

/// `ARG`: a declaration takes the `--build-arg`, else its default, else the global ARG of
/// that name.
fn declare_args(
    ctx: &mut Ctx<'_>,
    globals: &[(String, String)],
    state: &mut StageState,
    instr: &Instruction,
    decls: &[kiln_dockerfile::ArgDecl],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), FrontendError> {
    for d in decls {
        let value = match ctx.build_arg(&d.name) {
            Some(v) => Some(v),
            None => match &d.default {
                Some(def) => Some(expand(ctx, instr, def, env)?),
                None => lookup(globals, &d.name),
            },
        };
        state.args.retain(|(k, _)| k != &d.name);
        if let Some(v) = value {
            state.args.push((d.name.clone(), v));
        }
    }
    Ok(())
}

/// `ENV`: every pair is expanded against the environment before the instruction, then set.
fn set_env(
    ctx: &mut Ctx<'_>,
    state: &mut StageState,
    instr: &Instruction,
    kvs: &[kiln_dockerfile::KeyValue],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), FrontendError> {
    let mut pairs = Vec::new();
    for kv in kvs {
        let k = expand(ctx, instr, &kv.key, env)?;
        let v = expand(ctx, instr, &kv.value, env)?;
        if k.is_empty() {
            return Err(ctx.err(
                instr.line,
                1,
                "ENV names an empty variable",
                Some("write ENV NAME=value"),
            ));
        }
        pairs.push((k, v));
    }
    for (k, v) in pairs {
        state.set_env(&k, &v);
    }
    Ok(())
}

/// The instructions that only change the image config.
fn set_config(
    ctx: &mut Ctx<'_>,
    state: &mut StageState,
    instr: &Instruction,
    command: &Command,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), FrontendError> {
    let rc = &mut state.config.config;
    match command {
        Command::Label(kvs) => {
            let mut labels = Vec::new();
            for kv in kvs {
                labels.push((expand(ctx, instr, &kv.key, env)?, expand(ctx, instr, &kv.value, env)?));
            }
            rc.labels.get_or_insert_with(BTreeMap::new).extend(labels);
        }
        Command::Expose(words) => {
            let ports = expose_ports(ctx, instr, words, env)?;
            let map = rc.exposed_ports.get_or_insert_with(BTreeMap::new);
            for p in ports {
                map.insert(p, Empty {});
            }
        }
        Command::User(u) => rc.user = Some(expand(ctx, instr, u, env)?),
        Command::Volume(words) => {
            let mut vols = Vec::new();
            for w in words {
                let v = expand(ctx, instr, w, env)?;
                if v.is_empty() {
                    return Err(ctx.err(
                        instr.line,
                        1,
                        "VOLUME specified can not be an empty string",
                        Some("name a path, e.g. VOLUME /data"),
                    ));
                }
                vols.push(v);
            }
            let map = rc.volumes.get_or_insert_with(BTreeMap::new);
            for v in vols {
                map.insert(v, Empty {});
            }
        }
        Command::StopSignal(s) => rc.stop_signal = Some(expand(ctx, instr, s, env)?),
        Command::Healthcheck(h) => rc.healthcheck = Some(healthcheck(h)),
        Command::Onbuild(trigger) => {
            rc.on_build.get_or_insert_with(Vec::new).push(trigger.original.clone());
        }
        Command::Maintainer(m) => state.config.author = Some(m.clone()),
        Command::Shell(sh) => {
            state.shell = sh.clone();
            rc.shell = Some(sh.clone());
        }
        Command::Cmd(cl) => {
            rc.cmd = Some(command_args(cl, &state.shell));
            state.cmd_set = true;
        }
        Command::Entrypoint(cl) => {
            rc.entrypoint = Some(command_args(cl, &state.shell));
            if !state.cmd_set {
                rc.cmd = None;
            }
        }
        other => unreachable!("{other:?} is dispatched elsewhere"),
    }
    Ok(())
}

/// `EXPOSE` words as `PORT/proto` keys.
fn expose_ports(
    ctx: &Ctx<'_>,
    instr: &Instruction,
    words: &[String],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>, FrontendError> {
    let mut ports = Vec::new();
    for w in words {
        for word in expand_words(ctx, instr, w, env)? {
            ports.extend(parse_ports(&word).ok_or_else(|| {
                ctx.err(
                    instr.line,
                    1,
                    format!("invalid port {word:?}"),
                    Some("use PORT, PORT/tcp, PORT/udp or a range like 8000-8010/tcp"),
                )
            })?);
        }
    }
    Ok(ports)
}

/// `HEALTHCHECK` as the image config records it (durations in nanoseconds).
fn healthcheck(h: &kiln_dockerfile::Healthcheck) -> ImageHealthcheck {
    match h {
        kiln_dockerfile::Healthcheck::None => ImageHealthcheck {
            test: vec!["NONE".into()],
            ..Default::default()
        },
        kiln_dockerfile::Healthcheck::Cmd { cmd, options } => {
            let test = match cmd {
                CommandLine::Exec(v) => std::iter::once("CMD".to_string()).chain(v.iter().cloned()).collect(),
                CommandLine::Shell(s) => vec!["CMD-SHELL".into(), s.clone()],
            };
            let ns = |d: Option<std::time::Duration>| d.map(|d| d.as_nanos() as i64).unwrap_or(0);
            ImageHealthcheck {
                test,
                interval: ns(options.interval),
                timeout: ns(options.timeout),
                start_period: ns(options.start_period),
                start_interval: ns(options.start_interval),
                retries: options.retries.map(i64::from).unwrap_or(0),
            }
        }
    }
}

/// `RUN`: argv, environment, mounts (with `from=` resolved) and network.
fn plan_run(
    ctx: &mut Ctx<'_>,
    earlier: &[StagePlan],
    state: &mut StageState,
    instr: &Instruction,
    cmd: &CommandLine,
    heredocs: &[kiln_dockerfile::Heredoc],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<RunOp, FrontendError> {
    // Proxy args reach RUN steps without an ARG, as in Docker (and, like other build
    // args, never the image's config).
    let mut run_env: Vec<String> = ctx
        .input
        .build_args
        .iter()
        .filter(|(k, _)| is_predefined_arg(k) && k != "SOURCE_DATE_EPOCH" && !state.args.iter().any(|(a, _)| a == k))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    run_env.extend(state.args.iter().map(|(k, v)| format!("{k}={v}")));
    run_env.extend(state.config.config.env.clone().unwrap_or_default());
    let (args, scripts) = run_args(cmd, heredocs, &state.shell);
    let mut mounts = Vec::new();
    for f in instr.flags.iter().filter(|f| f.name == "mount") {
        let raw = f.value.as_deref().unwrap_or_default();
        let expanded = expand(ctx, instr, raw, env)?;
        let mut m = kiln_plan::mounts::parse(&expanded)
            .map_err(|e| ctx.err(f.line, f.col, e.to_string(), Some("see docs/build.md, RUN --mount")))?;
        if let Some(from) = m.from_mut()
            && let kiln_plan::mounts::MountFrom::Named { name } = from.clone()
        {
            *from = resolve_mount_from(ctx, earlier, state, instr, f, &name)?;
        }
        mounts.push(m);
    }
    let network = match instr.flag_value("network") {
        None => None,
        Some(n @ ("default" | "none" | "host")) => Some(n.to_string()),
        Some(other) => {
            let f = instr.flag("network").expect("flag present");
            return Err(ctx.err(
                f.line,
                f.col,
                format!("invalid --network={other}"),
                Some("use default, none or host"),
            ));
        }
    };
    if let Some(sec) = instr.flag("security")
        && sec.value.as_deref() != Some("sandbox")
    {
        return Err(ctx.err(
            sec.line,
            sec.col,
            "RUN --security=insecure is not allowed",
            Some("kiln runs every step sandboxed; remove the flag"),
        ));
    }
    Ok(RunOp {
        args,
        env: run_env,
        workdir: state.workdir(),
        user: state.config.config.user.clone(),
        mounts,
        network,
        scripts,
    })
}

/// Where a COPY reads from: `--from` as an earlier stage (by name or index) or an image.
fn copy_from(
    ctx: &mut Ctx<'_>,
    earlier: &[StagePlan],
    state: &mut StageState,
    instr: &Instruction,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<CopyFrom, FrontendError> {
    let flag_err = |name: &str, msg: String, hint: &str| {
        let f = instr.flag(name);
        ctx.err(instr.line, f.map(|f| f.col).unwrap_or(1), msg, Some(hint))
    };
    Ok(match instr.flag_value("from") {
        None => CopyFrom::Context,
        Some(raw) => {
            let v = expand(ctx, instr, raw, env)?;
            let lower = v.to_lowercase();
            if let Some(s) = earlier.iter().find(|s| s.name.as_deref() == Some(lower.as_str())) {
                state.depends_on.push(s.index);
                CopyFrom::Stage { index: s.index }
            } else if let Ok(n) = v.parse::<usize>() {
                if n >= earlier.len() {
                    return Err(flag_err(
                        "from",
                        format!("--from={n} names stage {n}, which does not come before this one"),
                        "COPY --from can only name earlier stages",
                    ));
                }
                state.depends_on.push(n);
                CopyFrom::Stage { index: n }
            } else {
                let platform = ctx.input.platform.clone();
                let r = (ctx.input.resolve_image)(&v, &platform).map_err(|e| {
                    flag_err(
                        "from",
                        format!("--from={v}: not an earlier stage, and as an image: {e}"),
                        "name an earlier stage (FROM … AS name) or an image in the store",
                    )
                })?;
                CopyFrom::Image {
                    reference: v,
                    digest: r.digest,
                }
            }
        }
    })
}

fn plan_copy(
    ctx: &mut Ctx<'_>,
    earlier: &[StagePlan],
    state: &mut StageState,
    instr: &Instruction,
    args: &kiln_dockerfile::CopyArgs,
    is_add: bool,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<CopyOp, FrontendError> {
    let from = copy_from(ctx, earlier, state, instr, env)?;
    let flag_err = |name: &str, msg: String, hint: &str| {
        let f = instr.flag(name);
        ctx.err(instr.line, f.map(|f| f.col).unwrap_or(1), msg, Some(hint))
    };
    let chown = instr
        .flag_value("chown")
        .map(|v| expand(ctx, instr, v, env))
        .transpose()?
        .filter(|s| !s.is_empty());
    let chmod = match instr.flag_value("chmod") {
        None => None,
        Some(raw) => {
            let v = expand(ctx, instr, raw, env)?;
            Some(
                u32::from_str_radix(&v, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| {
                        flag_err(
                            "chmod",
                            format!("invalid --chmod value {v:?}"),
                            "give octal permission bits such as 0755 or 644",
                        )
                    })?,
            )
        }
    };
    let mut sources = Vec::new();
    for s in &args.sources {
        sources.push(expand(ctx, instr, s, env)?);
    }
    let remote = match sources.iter().find(|s| is_add && remote_kind(s).is_some()) {
        Some(src) if sources.len() > 1 || !args.heredocs.is_empty() || from != CopyFrom::Context => {
            return Err(ctx.err(
                instr.line,
                1,
                format!("ADD {src:?}: a URL or git source must be the instruction's only source"),
                Some("write one ADD per remote source (and no --from)"),
            ));
        }
        Some(src) => Some(plan_remote(ctx, instr, src, env)?),
        None => None,
    };
    let checksum_ok = matches!(remote, Some(CopyFrom::Url { .. }));
    if is_add && instr.flag("checksum").is_some() && !checksum_ok {
        return Err(flag_err(
            "checksum",
            "--checksum is only valid for ADD of an HTTP(S) URL".into(),
            "remove --checksum, or ADD a URL",
        ));
    }
    let keep_ok = matches!(remote, Some(CopyFrom::Git { .. }));
    if is_add && instr.flag("keep-git-dir").is_some() && !keep_ok {
        return Err(flag_err(
            "keep-git-dir",
            "--keep-git-dir is only valid for ADD of a Git repository".into(),
            "remove --keep-git-dir",
        ));
    }
    let from = match remote {
        Some(r) => {
            sources = vec![remote_copy_source(&r, &sources[0])];
            r
        }
        None => from,
    };
    let mut inline = Vec::new();
    for h in &args.heredocs {
        // BuildKit expands unquoted heredoc bodies of COPY/ADD with the build's variables,
        // leaving quotes and escapes in the text as written.
        let content = if h.expand {
            ctx.lexer
                .process_heredoc(&h.content, env)
                .map_err(|e| ctx.err(instr.line, 1, e.to_string(), Some(EXPAND_HINT)))?
        } else {
            h.content.clone()
        };
        inline.push(InlineFile {
            name: h.name.clone(),
            content,
        });
    }
    let raw_dest = expand(ctx, instr, &args.dest, env)?;
    if raw_dest.is_empty() {
        return Err(ctx.err(
            instr.line,
            1,
            "COPY/ADD destination is empty",
            Some("give a destination path, e.g. /app/"),
        ));
    }
    let dir_hint =
        raw_dest.ends_with('/') || raw_dest == "." || raw_dest.ends_with("/.") || sources.len() + inline.len() > 1;
    let mut dest = clean_abs(&join_path(&state.workdir(), &raw_dest));
    if dir_hint && !dest.ends_with('/') {
        dest.push('/');
    }
    let excludes = instr
        .flag_values("exclude")
        .map(|e| expand(ctx, instr, e, env))
        .collect::<Result<Vec<_>, _>>()?;
    // Remote archives are never extracted (BuildKit's rule); a git checkout is a tree.
    let extract_archives = is_add && !matches!(from, CopyFrom::Url { .. } | CopyFrom::Git { .. });
    Ok(CopyOp {
        from,
        sources,
        inline,
        dest,
        chown,
        chmod,
        extract_archives,
        parents: instr.flag_bool("parents"),
        excludes,
        link: instr.flag_bool("link"),
    })
}

/// Which kind of remote source `ADD` was given, if any: `Some(true)` for a git repository,
/// `Some(false)` for a URL to download. Git is what BuildKit takes for one: `git@…`,
/// `git://…`, `ssh://…`, `file://…`, or an http(s) URL whose path ends in `.git`.
fn remote_kind(src: &str) -> Option<bool> {
    let repo = src.split('#').next().unwrap_or(src);
    if ["git@", "git://", "ssh://", "file://"]
        .iter()
        .any(|p| src.starts_with(p))
    {
        return Some(true);
    }
    if src.starts_with("http://") || src.starts_with("https://") {
        return Some(repo.trim_end_matches('/').ends_with(".git"));
    }
    None
}

/// An `ADD` of a URL or git repository, pinned through the caller's resolver.
fn plan_remote(
    ctx: &Ctx<'_>,
    instr: &Instruction,
    src: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<CopyFrom, FrontendError> {
    let located = |e: String| {
        let (message, hint) = match e.split_once(" (hint: ") {
            Some((m, h)) => (m.to_string(), Some(h.trim_end_matches(')').to_string())),
            None => (e, None),
        };
        FrontendError {
            file: ctx.input.file_name.to_string(),
            line: instr.line,
            col: 1,
            message: format!("ADD {src}: {message}"),
            hint,
        }
    };
    let is_git = remote_kind(src) == Some(true);
    let misplaced = match (is_git, instr.flag("checksum"), instr.flag("keep-git-dir")) {
        (true, Some(f), _) => Some((f, "--checksum is only valid for ADD of an HTTP(S) URL")),
        (false, _, Some(f)) => Some((f, "--keep-git-dir is only valid for ADD of a Git repository")),
        _ => None,
    };
    if let Some((f, message)) = misplaced {
        return Err(ctx.err(f.line, f.col, message, Some("remove the flag")));
    }
    if is_git {
        let (url, fragment) = src.split_once('#').unwrap_or((src, ""));
        let reference = fragment.split_once(':').map_or(fragment, |(r, _)| r);
        if url.starts_with('-') || url.is_empty() {
            return Err(located("not a repository URL".into()));
        }
        let pin = (ctx.input.resolve_remote)(&RemoteSource::Git {
            source: src,
            url,
            reference,
            hermetic: ctx.input.hermetic,
        })
        .map_err(located)?;
        let RemotePin::Git { commit } = pin else {
            return Err(located("the resolver answered for a URL".into()));
        };
        return Ok(CopyFrom::Git {
            url: url.to_string(),
            reference: reference.to_string(),
            commit,
            keep_git_dir: instr
                .flag("keep-git-dir")
                .is_some_and(|f| f.value.as_deref() != Some("false")),
        });
    }
    let checksum = match instr.flag_value("checksum") {
        None => None,
        Some(raw) => {
            let v = expand(ctx, instr, raw, env)?;
            let f = instr.flag("checksum").expect("flag present");
            let d = v
                .strip_prefix("sha256:")
                .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
                .and_then(|h| format!("sha256:{}", h.to_ascii_lowercase()).parse::<Digest>().ok());
            Some(d.ok_or_else(|| {
                ctx.err(
                    f.line,
                    f.col,
                    format!("invalid --checksum {v:?}"),
                    Some("give sha256:<64 hex digits>, e.g. from `sha256sum FILE`"),
                )
            })?)
        }
    };
    let pin = (ctx.input.resolve_remote)(&RemoteSource::Url {
        url: src,
        checksum: checksum.as_ref(),
        hermetic: ctx.input.hermetic,
    })
    .map_err(located)?;
    let RemotePin::Url { digest, mtime } = pin else {
        return Err(located("the resolver answered for a git repository".into()));
    };
    Ok(CopyFrom::Url {
        url: src.to_string(),
        digest,
        file_name: url_file_name(src),
        mtime,
    })
}

/// The file name BuildKit gives an `ADD URL`: the last component of the URL's path, or
/// `__unnamed__`.
pub fn url_file_name(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = rest.split(['?', '#']).next().unwrap_or("");
    let path = path.split_once('/').map_or("", |(_, p)| p).trim_end_matches('/');
    match path.rsplit('/').next() {
        Some(base) if !base.is_empty() && base != "." && base != ".." => base.to_string(),
        _ => "__unnamed__".to_string(),
    }
}

/// The copy's one source inside a remote tree: the URL's file, or the git checkout's
/// subdirectory (`#ref:dir`) or root.
fn remote_copy_source(from: &CopyFrom, written: &str) -> String {
    match from {
        CopyFrom::Url { file_name, .. } => file_name.clone(),
        _ => {
            let fragment = written.split_once('#').map_or("", |(_, f)| f);
            match fragment.split_once(':') {
                Some((_, dir)) if !dir.is_empty() => dir.to_string(),
                _ => "/".to_string(),
            }
        }
    }
}

/// The argv of a RUN: BuildKit runs a lone heredoc as the script (a file when it has a
/// shebang), and otherwise hands the command with its heredoc bodies to the shell.
fn run_args(
    cmd: &CommandLine,
    heredocs: &[kiln_dockerfile::Heredoc],
    shell: &[String],
) -> (Vec<String>, Vec<InlineFile>) {
    let CommandLine::Shell(text) = cmd else {
        return (command_args(cmd, shell), vec![]);
    };
    if heredocs.is_empty() {
        return (command_args(cmd, shell), vec![]);
    }
    let marker = text.trim().trim_start_matches(|c: char| c.is_ascii_digit());
    let lone = heredocs.len() == 1
        && marker.starts_with("<<")
        && marker
            .trim_start_matches("<<")
            .trim_start_matches('-')
            .trim_matches(['"', '\''])
            == heredocs[0].name;
    if lone {
        let h = &heredocs[0];
        if h.content.starts_with("#!") {
            let script = InlineFile {
                name: h.name.clone(),
                content: h.content.clone(),
            };
            return (vec![format!("/dev/pipes/{}", h.name)], vec![script]);
        }
        return (
            shell
                .iter()
                .cloned()
                .chain(std::iter::once(h.content.clone()))
                .collect(),
            vec![],
        );
    }
    let mut full = text.clone();
    for h in heredocs {
        full.push('\n');
        full.push_str(&h.content);
        full.push_str(&h.name);
    }
    (shell.iter().cloned().chain(std::iter::once(full)).collect(), vec![])
}

fn resolve_mount_from(
    ctx: &mut Ctx<'_>,
    earlier: &[StagePlan],
    state: &mut StageState,
    instr: &Instruction,
    flag: &kiln_dockerfile::Flag,
    name: &str,
) -> Result<kiln_plan::mounts::MountFrom, FrontendError> {
    use kiln_plan::mounts::MountFrom;
    let lower = name.to_lowercase();
    if let Some(s) = earlier.iter().find(|s| s.name.as_deref() == Some(lower.as_str())) {
        state.depends_on.push(s.index);
        return Ok(MountFrom::Stage { index: s.index });
    }
    if let Ok(n) = name.parse::<usize>() {
        if n >= earlier.len() {
            return Err(ctx.err(
                flag.line,
                flag.col,
                format!("--mount from={n} names a stage that does not come before this one"),
                Some("mounts can only name earlier stages"),
            ));
        }
        state.depends_on.push(n);
        return Ok(MountFrom::Stage { index: n });
    }
    let platform = ctx.input.platform.clone();
    let _ = instr;
    let r = (ctx.input.resolve_image)(name, &platform).map_err(|e| {
        ctx.err(
            flag.line,
            flag.col,
            format!("--mount from={name}: not an earlier stage, and as an image: {e}"),
            None,
        )
    })?;
    Ok(MountFrom::Image {
        reference: name.to_string(),
        digest: r.digest,
    })
}

fn command_args(cl: &CommandLine, shell: &[String]) -> Vec<String> {
    match cl {
        CommandLine::Exec(v) => v.clone(),
        CommandLine::Shell(s) => shell.iter().cloned().chain(std::iter::once(s.clone())).collect(),
    }
}

/// `80` → `80/tcp`; `8000-8002/udp` → three entries.
fn parse_ports(word: &str) -> Option<Vec<String>> {
    let (ports, proto) = match word.split_once('/') {
        Some((p, proto)) => (p, proto.to_lowercase()),
        None => (word, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return None;
    }
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (a.parse::<u16>().ok()?, b.parse::<u16>().ok()?),
        None => {
            let p = ports.parse::<u16>().ok()?;
            (p, p)
        }
    };
    if lo > hi {
        return None;
    }
    Some((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
}

/// Joins a possibly relative path onto a base directory.
pub fn join_path(base: &str, path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{}/{}", base.trim_end_matches('/'), path)
    }
}

/// Cleans an absolute path like Go's `path.Clean` (`..` never climbs above `/`), keeping a
/// trailing slash if there was one.
pub fn clean_abs(path: &str) -> String {
    let trailing = path.ends_with('/') || path.ends_with("/.");
    let mut out = format!("/{}", crate::tree::clean_rel(path));
    if trailing && out != "/" {
        out.push('/');
    }
    out
}

fn mark_needed(stages: &mut [StagePlan], target: usize) {
    let mut todo = vec![target];
    while let Some(i) = todo.pop() {
        if stages[i].needed {
            continue;
        }
        stages[i].needed = true;
        todo.extend(stages[i].depends_on.iter().copied());
    }
}

/// Labels that make the image self-describing and reproducible (OCI annotations spec).
fn add_oci_labels(input: &FrontendInput<'_>, stages: &mut [StagePlan], target: usize) {
    let mut base = None;
    let mut i = target;
    loop {
        match &stages[i].base {
            Base::Stage { index } => i = *index,
            Base::Image { reference, digest } => {
                base = Some((reference.clone(), digest.to_string()));
                break;
            }
            Base::Scratch => break,
        }
    }
    let labels = stages[target].config.config.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(
        "org.opencontainers.image.created".into(),
        rfc3339(input.source_date_epoch),
    );
    if let Some(r) = &input.revision {
        labels.insert("org.opencontainers.image.revision".into(), r.clone());
    }
    if let Some(s) = &input.source_url {
        labels.insert("org.opencontainers.image.source".into(), s.clone());
    }
    if let Some((name, digest)) = base {
        labels.insert("org.opencontainers.image.base.name".into(), name);
        labels.insert("org.opencontainers.image.base.digest".into(), digest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(src: &str, args: &[(&str, &str)]) -> Result<FrontendOutput, FrontendError> {
        let args: Vec<(String, String)> = args.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        let resolve = |name: &str, _p: &Platform| -> Result<ResolvedImage, String> {
            if name.starts_with("base") {
                let mut config = ImageConfig {
                    architecture: "amd64".into(),
                    os: "linux".into(),
                    ..Default::default()
                };
                config.config.env = Some(vec!["PATH=/bin".into(), "A=base".into()]);
                config.config.cmd = Some(vec!["base-cmd".into()]);
                config.config.on_build = Some(vec!["ENV TRIGGERED=1".into()]);
                Ok(ResolvedImage {
                    digest: Digest::sha256_of(name.as_bytes()),
                    config,
                })
            } else {
                Err("not found".into())
            }
        };
        let input = FrontendInput {
            file_name: "Dockerfile",
            source: src,
            build_args: &args,
            target: None,
            platform: platform::parse("linux/amd64").unwrap(),
            build_platform: platform::parse("linux/amd64").unwrap(),
            source_date_epoch: 0,
            revision: None,
            source_url: None,
            resolve_image: &resolve,
            hermetic: false,
            resolve_remote: &no_remote,
        };
        plan(&input)
    }

    fn env_of(p: &Plan) -> Vec<String> {
        p.stages[p.target].config.config.env.clone().unwrap_or_default()
    }

    #[test]
    fn env_same_instruction_rule() {
        let out = plan_of("FROM scratch\nENV a=hi\nENV a=bye b=$a\n", &[]).unwrap();
        assert!(
            env_of(&out.plan).contains(&"b=hi".to_string()),
            "{:?}",
            env_of(&out.plan)
        );
    }

    #[test]
    fn arg_scoping() {
        let src = "ARG V=global\nARG IMG=base\nFROM ${IMG}:1\nENV a=$V\nARG V\nENV b=$V\nARG W=w\nENV c=$W\n";
        let out = plan_of(src, &[]).unwrap();
        let env = env_of(&out.plan);
        assert!(
            env.contains(&"a=".to_string())
                && env.contains(&"b=global".to_string())
                && env.contains(&"c=w".to_string()),
            "{env:?}"
        );
        let out = plan_of(src, &[("V", "cli"), ("UNUSED", "x")]).unwrap();
        assert!(env_of(&out.plan).contains(&"b=cli".to_string()));
        assert_eq!(out.unused_build_args, vec!["UNUSED".to_string()]);
    }

    #[test]
    fn env_overrides_arg() {
        let out = plan_of("FROM scratch\nARG X=arg\nENV X=env\nENV Y=$X\n", &[]).unwrap();
        assert!(env_of(&out.plan).contains(&"Y=env".to_string()));
    }

    #[test]
    fn entrypoint_resets_inherited_cmd_and_onbuild_runs() {
        let out = plan_of("FROM base\nENTRYPOINT [\"/e\"]\n", &[]).unwrap();
        let c = &out.plan.stages[0].config.config;
        assert_eq!(c.cmd, None);
        assert!(env_of(&out.plan).contains(&"TRIGGERED=1".to_string()));
        assert_eq!(c.on_build, None);
        let out = plan_of("FROM base\nCMD [\"c\"]\nENTRYPOINT [\"/e\"]\n", &[]).unwrap();
        assert_eq!(out.plan.stages[0].config.config.cmd, Some(vec!["c".into()]));
    }

    #[test]
    fn shell_applies_to_shell_form() {
        let out = plan_of("FROM scratch\nSHELL [\"/bin/bash\", \"-ec\"]\nCMD echo hi\n", &[]).unwrap();
        let c = &out.plan.stages[0].config.config;
        assert_eq!(c.cmd.as_deref().unwrap(), ["/bin/bash", "-ec", "echo hi"]);
        assert_eq!(c.shell.as_deref().unwrap(), ["/bin/bash", "-ec"]);
    }

    #[test]
    fn stages_and_target() {
        let src = "FROM scratch AS a\nFROM scratch AS unused\nFROM a AS b\nCOPY --from=a /x /y\n";
        let out = plan_of(src, &[]).unwrap();
        let needed: Vec<bool> = out.plan.stages.iter().map(|s| s.needed).collect();
        assert_eq!(needed, vec![true, false, true]);
        assert!(plan_of("FROM scratch\nCOPY --from=5 /x /y\n", &[]).is_err());
    }

    #[test]
    fn workdir_and_copy_dest() {
        let out = plan_of("FROM scratch\nWORKDIR /a\nWORKDIR b/../c\nCOPY x y .\n", &[]).unwrap();
        let st = &out.plan.stages[0];
        assert_eq!(st.config.config.working_dir.as_deref(), Some("/a/c"));
        match &st.steps[2].op {
            Op::Copy(c) => assert_eq!(c.dest, "/a/c/"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ports_and_labels() {
        let out = plan_of(
            "FROM scratch\nARG P=80\nEXPOSE $P 53/UDP 8000-8001\nLABEL \"a b\"=\"c d\"\n",
            &[],
        )
        .unwrap();
        let c = &out.plan.stages[0].config.config;
        let ports: Vec<_> = c.exposed_ports.as_ref().unwrap().keys().cloned().collect();
        assert_eq!(ports, ["53/udp", "80/tcp", "8000/tcp", "8001/tcp"]);
        assert_eq!(c.labels.as_ref().unwrap().get("a b").map(String::as_str), Some("c d"));
    }

    #[test]
    fn located_errors() {
        let e = plan_of("FROM scratch\nCOPY --chmod=999 a /b\n", &[]).unwrap_err();
        assert_eq!((e.line, e.col), (2, 6));
        assert!(e.to_string().starts_with("Dockerfile:2:6: invalid --chmod"), "{e}");
        let e = plan_of("FROM missing:1\n", &[]).unwrap_err();
        assert!(e.to_string().contains("not found"), "{e}");
    }

    #[test]
    fn copy_heredoc_expands_unquoted_only() {
        let out = plan_of(
            "FROM scratch\nARG X=1\nCOPY <<EOF /a\nv=\"$X\"\nEOF\nCOPY <<'EOF' /b\nv=$X\nEOF\n",
            &[],
        )
        .unwrap();
        let contents: Vec<String> = out.plan.stages[0]
            .steps
            .iter()
            .filter_map(|s| match &s.op {
                Op::Copy(c) => Some(c.inline[0].content.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(contents, ["v=\"1\"\n", "v=$X\n"]);
    }

    #[test]
    fn proxy_args_reach_run_without_arg() {
        let out = plan_of(
            "FROM scratch\nRUN true\n",
            &[("http_proxy", "http://p:3128"), ("OTHER", "x")],
        )
        .unwrap();
        let Op::Run(r) = &out.plan.stages[0].steps[0].op else {
            panic!("not a RUN")
        };
        assert!(r.env.contains(&"http_proxy=http://p:3128".to_string()), "{:?}", r.env);
        assert!(
            !r.env.iter().any(|e| e.starts_with("OTHER=")),
            "undeclared args stay out"
        );
        assert_eq!(
            out.plan.stages[0]
                .config
                .config
                .env
                .as_ref()
                .map(|e| e.iter().any(|e| e.contains("proxy"))),
            Some(false)
        );
    }

    #[test]
    fn remote_add_sources() {
        assert_eq!(url_file_name("https://h/a/b.tar.gz?x=1"), "b.tar.gz");
        assert_eq!(url_file_name("https://h/"), "__unnamed__");
        assert_eq!(url_file_name("https://h"), "__unnamed__");
        assert_eq!(url_file_name("http://127.0.0.1:8/dir/"), "dir");
        assert_eq!(remote_kind("https://h/r.git#main"), Some(true));
        assert_eq!(remote_kind("git@github.com:o/r.git"), Some(true));
        assert_eq!(remote_kind("file:///srv/r#v1"), Some(true));
        assert_eq!(remote_kind("https://h/f.tar.gz"), Some(false));
        assert_eq!(remote_kind("./local.git"), None);
        // Without a resolver (plain `prepare`), a remote ADD is refused at its line.
        let e = plan_of("FROM scratch\nADD https://h/f /f\n", &[]).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("cannot be fetched here"), "{e}");
        let e = plan_of("FROM scratch\nADD --checksum=sha256:00 https://h/f /f\n", &[]).unwrap_err();
        assert!(e.message.contains("invalid --checksum"), "{e}");
        let e = plan_of("FROM scratch\nADD https://h/f local /d/\n", &[]).unwrap_err();
        assert!(e.message.contains("only source"), "{e}");
        let e = plan_of("FROM scratch\nADD --keep-git-dir https://h/f /f\n", &[]).unwrap_err();
        assert!(e.message.contains("--keep-git-dir"), "{e}");
    }

    #[test]
    fn clean_paths() {
        assert_eq!(clean_abs("/a/../../b/./c/"), "/b/c/");
        assert_eq!(clean_abs("/."), "/");
        assert_eq!(join_path("/w", "x"), "/w/x");
    }
}
