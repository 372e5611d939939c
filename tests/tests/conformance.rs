//! Semantic conformance: every case under `tests/conformance/NN-name/` is built by kiln and by
//! buildah 1.28 (Debian's, `--runtime runc --format docker --timestamp 0`) from the same base
//! image, and the two results are compared: the unpacked file tree (path, type, mode with
//! setuid/setgid/sticky bits, uid, gid, content sha256, symlink target, hard-link groups —
//! never times) and the config fields a Dockerfile can set.
//!
//! A case directory holds a `Dockerfile` and its context, and optionally:
//! - `setup.sh`: run (with `sh`, in a scratch copy of the case) before building, for what git
//!   cannot store: hard links, empty directories, special modes, owners, tarballs;
//! - `args`: one option per line: `build-arg K=V`, `target NAME`, `file PATH` (the
//!   Dockerfile, relative to the context), `prebuild NAME FILE` (build FILE first with both
//!   tools and tag it `localhost/NAME:test`, e.g. an ONBUILD base), `secret SPEC` (passed as
//!   `--secret SPEC` to both tools, relative paths from the case's context), `ssh ID` (the
//!   harness listens on a fresh unix socket, a stand-in for an SSH agent, and passes
//!   `--ssh ID=SOCKET`), `fail LINE CODE TEXT` (both tools must fail; kiln with exit 1, a
//!   first error line naming `Dockerfile:LINE` and `exit code CODE`, TEXT among the step's
//!   output lines it shows, and no tag written), `#` comments;
//! - `expected.json`: a hand-written expectation where buildah 1.28 lacks a feature or
//!   differs from the Dockerfile reference / BuildKit. It must say why (`reason`). With
//!   `"buildah": "skip"` the oracle is the base tree (or scratch, `"start": "scratch"`) plus
//!   `files`, and exactly the `config` fields given; otherwise buildah still builds the case
//!   (or `"buildah": "<file>"`, an equivalent Dockerfile without the missing feature) and
//!   `config` / `files` override what buildah produced.
//!
//! Deliberate, documented differences between kiln and buildah 1.28 (kiln follows the
//! Dockerfile reference and BuildKit; each case's `expected.json` gives the reason):
//! - labels `io.buildah.version` (buildah) and `org.opencontainers.image.*` (kiln, by design:
//!   created, revision, source, base.name, base.digest) are left out of the comparison;
//! - Env order: buildah moves a variable that ENV sets again to the end, BuildKit replaces it
//!   in place. Env is compared as a set against buildah, and in order in 07-env;
//! - stage names are case-insensitive (03-stages);
//! - SHELL applies to shell-form CMD and ENTRYPOINT (15-shell);
//! - setuid/setgid bits of context files are kept (22-chmod);
//! - ADD --chown applies to an archive's extracted entries (27-add);
//! - features buildah 1.28 lacks: newer variable modifiers (09), heredocs (29, and heredoc
//!   RUN in 41), the escape directive in words (31), COPY --link/--parents/--exclude (32-34),
//!   HEALTHCHECK --start-interval (37), tmpfs `size=` (49), RUN --network (55);
//! - RUN (38-57): buildah leaves mount-point stubs in its layers, kiln (as BuildKit) leaves
//!   none the step did not write. The fixed ones (/dev, /proc, /sys, /run, /etc/hostname,
//!   /etc/hosts, /etc/resolv.conf; empty and absent from the base) are dropped from buildah's
//!   tree by the harness, and `--mount` targets (45, 46, 47, 49, 50) in `expected.json`.
//!   Also: a hard link to a base file keeps its group (40), rw bind-mount writes are
//!   discarded (47), a tmpfs mount hides a base directory only during the step (49), and
//!   volatile files are stripped (57).
//!
//! Checked and found equal (so not normalised): WORKDIR creation and ownership by the current
//! USER, the default PATH added to an image without one, the root directory's metadata.
//!
//! Harness detail: buildah's config is read with `buildah inspect` (its Docker-format
//! config), because `buildah push oci:` drops Healthcheck, OnBuild and Shell.
//!
//! All cases run, and every failure is collected before the test fails, with a readable diff
//! per case. The base image is built once by kiln and copied into a private buildah storage
//! (vfs driver, temporary `--root`/`--runroot`), so nothing outside temp dirs is touched.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use kiln_tests::{
    Buildah, Entry, KilnStore, Tree, copy_tree, diff_trees, layout_image, layout_refs, require_tool, run_checked,
    run_ok, sha256_hex, umoci_unpack, walk_tree,
};
use serde_json::{Map, Value, json};

const BASE: &str = "localhost/busybox:test";

/// Files of a case directory that are instructions to the harness, not build context.
const META_FILES: &[&str] = &["args", "expected.json", "setup.sh", "buildah.Dockerfile"];

/// Config fields compared (under `config` in the image config).
const CONFIG_FIELDS: &[&str] = &[
    "Env",
    "Entrypoint",
    "Cmd",
    "WorkingDir",
    "User",
    "ExposedPorts",
    "Volumes",
    "Labels",
    "StopSignal",
    "Healthcheck",
    "OnBuild",
    "Shell",
];

fn conformance_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance")
}

#[derive(Debug, Default)]
struct CaseArgs {
    build_args: Vec<String>,
    target: Option<String>,
    file: Option<String>,
    prebuilds: Vec<(String, String)>,
    secrets: Vec<String>,
    ssh: Vec<String>,
    /// `fail LINE CODE TEXT`.
    fail: Option<(usize, i32, String)>,
}

fn read_args(dir: &Path) -> CaseArgs {
    let mut a = CaseArgs::default();
    let Ok(text) = std::fs::read_to_string(dir.join("args")) else {
        return a;
    };
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (key, rest) = line.split_once(' ').unwrap_or((line, ""));
        let rest = rest.trim().to_string();
        match key {
            "build-arg" => a.build_args.push(rest),
            "target" => a.target = Some(rest),
            "file" => a.file = Some(rest),
            "prebuild" => {
                let (n, f) = rest.split_once(' ').expect("prebuild NAME FILE");
                a.prebuilds.push((n.to_string(), f.trim().to_string()));
            }
            "secret" => a.secrets.push(rest),
            "ssh" => a.ssh.push(rest),
            "fail" => {
                let mut it = rest.splitn(3, ' ');
                let line = it.next().and_then(|l| l.parse().ok()).expect("fail LINE CODE TEXT");
                let code = it.next().and_then(|c| c.parse().ok()).expect("fail LINE CODE TEXT");
                a.fail = Some((line, code, it.next().unwrap_or_default().to_string()));
            }
            other => panic!("{}/args: unknown option {other:?}", dir.display()),
        }
    }
    a
}

/// `expected.json`.
#[derive(Debug, Default)]
struct Expected {
    reason: String,
    /// None: buildah builds the case's Dockerfile. Some("skip"): no buildah. Some(file):
    /// buildah builds that equivalent Dockerfile instead.
    buildah: Option<String>,
    /// `scratch` or `base` (default): the tree a skipped case starts from.
    start: String,
    config: Map<String, Value>,
    files: BTreeMap<String, Option<Entry>>,
}

fn read_expected(dir: &Path) -> Option<Expected> {
    let path = dir.join("expected.json");
    if !path.exists() {
        return None;
    }
    let v = kiln_tests::read_json(&path).unwrap_or_else(|e| panic!("{e}"));
    let reason = v["reason"].as_str().unwrap_or_default().to_string();
    assert!(
        !reason.is_empty(),
        "{}: say why the expectation is hand-written (\"reason\")",
        path.display()
    );
    let mut files = BTreeMap::new();
    for (p, e) in v["files"].as_object().cloned().unwrap_or_default() {
        files.insert(
            p.clone(),
            if e.is_null() {
                None
            } else {
                Some(expected_entry(&path, &p, &e))
            },
        );
    }
    Some(Expected {
        reason,
        buildah: v["buildah"].as_str().map(str::to_string),
        start: v["start"].as_str().unwrap_or("base").to_string(),
        config: v["config"].as_object().cloned().unwrap_or_default(),
        files,
    })
}

fn expected_entry(file: &Path, path: &str, e: &Value) -> Entry {
    let s = |k: &str| e[k].as_str().map(str::to_string);
    let kind = s("type").unwrap_or_else(|| panic!("{}: {path}: type is required", file.display()));
    let sha256 = match (s("content"), s("sha256")) {
        (Some(c), _) => Some(sha256_hex(c.as_bytes())),
        (None, h) => h,
    };
    Entry {
        mode: s("mode").unwrap_or_else(|| {
            if kind == "d" {
                "0755".into()
            } else if kind == "l" {
                "0777".into()
            } else {
                "0644".into()
            }
        }),
        kind,
        uid: e["uid"].as_u64().unwrap_or(0) as u32,
        gid: e["gid"].as_u64().unwrap_or(0) as u32,
        sha256,
        link: s("link"),
        hardlink: s("hardlink"),
    }
}

/// Shared state of one test run.
struct Env {
    tmp: tempfile::TempDir,
    kiln: KilnStore,
    buildah: Buildah,
    base_tree: Tree,
    /// Manifest digest of the base (`@BASE_DIGEST@` in `args`).
    base_digest: String,
    /// Manifest digest of every image kiln built, by case (checked against the golden list).
    digests: std::cell::RefCell<BTreeMap<String, String>>,
}

impl Env {
    fn work(&self) -> &Path {
        self.tmp.path()
    }
}

/// Copies a case (or the base) to a scratch context and runs its setup.sh there.
fn prepare_context(src: &Path, dst: &Path) -> Result<(), String> {
    copy_tree(src, dst, META_FILES).map_err(|e| format!("copying {}: {e}", src.display()))?;
    let setup = src.join("setup.sh");
    if setup.exists() {
        let mut c = Command::new("sh");
        c.arg("-eu").arg(&setup).current_dir(dst);
        run_checked(&mut c)?;
    }
    Ok(())
}

fn kiln_build(
    kiln: &KilnStore,
    ctx: &Path,
    tag: &str,
    a: &CaseArgs,
    file: Option<&str>,
    out: Option<&Path>,
) -> Result<String, String> {
    let mut c = kiln.cmd(["build", "--progress", "plain", "--platform", "linux/amd64", "-t", tag]);
    if let Some(f) = file {
        c.arg("-f").arg(ctx.join(f));
    }
    for b in &a.build_args {
        c.arg("--build-arg").arg(b);
    }
    run_flags(&mut c, a);
    if let Some(t) = &a.target {
        c.arg("--target").arg(t);
    }
    if let Some(o) = out {
        c.arg("--output")
            .arg(format!("type=oci,dest={},tar=false", o.display()));
    }
    c.arg(ctx).current_dir(ctx);
    let o = run_checked(&mut c)?;
    Ok(String::from_utf8_lossy(&o.stderr).into_owned())
}

fn buildah_build(env: &Env, ctx: &Path, tag: &str, a: &CaseArgs, file: &Path) -> Result<(), String> {
    let mut c = env.buildah.cmd([
        "bud",
        "--runtime",
        "runc",
        "--format",
        "docker",
        "--timestamp",
        "0",
        "--layers=false",
    ]);
    c.args(["--platform", "linux/amd64", "-q", "-t", tag])
        .arg("-f")
        .arg(file);
    for b in &a.build_args {
        c.arg("--build-arg").arg(b);
    }
    run_flags(&mut c, a);
    if let Some(t) = &a.target {
        c.arg("--target").arg(t);
    }
    c.arg(ctx).current_dir(ctx);
    run_checked(&mut c).map(|_| ())
}

/// `--secret` and `--ssh` (the same spelling for kiln and buildah). `ssh` holds `ID=SOCKET`
/// by the time a build runs.
fn run_flags(c: &mut Command, a: &CaseArgs) {
    for s in &a.secrets {
        c.arg("--secret").arg(s);
    }
    for s in &a.ssh {
        c.arg("--ssh").arg(s);
    }
}

/// A case whose build must fail (`fail LINE CODE TEXT`): kiln exits 1 with a located first
/// error line that gives the exit code, shows TEXT from the step's output, and tags nothing;
/// buildah fails too.
fn run_failing_case(env: &Env, ctx: &Path, name: &str, args: &CaseArgs, file: &Path) -> Result<String, String> {
    let (line, code, text) = args.fail.clone().expect("a failing case");
    let tag = format!("localhost/conf-{name}:kiln");
    let mut c = env
        .kiln
        .cmd(["build", "--progress", "plain", "--platform", "linux/amd64", "-t", &tag]);
    c.arg("-f").arg(file);
    run_flags(&mut c, args);
    c.arg(ctx).current_dir(ctx);
    let out = c.output().map_err(|e| format!("cannot start kiln: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let mut problems = Vec::new();
    if out.status.code() != Some(1) {
        problems.push(format!("kiln exited with {:?}, expected 1", out.status.code()));
    }
    let first = stderr.lines().find(|l| l.starts_with("error:")).unwrap_or_default();
    let file_line = format!("Dockerfile:{line}");
    let code_text = format!("exit code {code}");
    if !first.contains(&file_line) || !first.contains(&code_text) {
        problems.push(format!(
            "the first error line {first:?} should name {file_line} and {code_text}"
        ));
    }
    let after: Vec<&str> = stderr
        .lines()
        .skip_while(|l| !l.starts_with("error:"))
        .skip(1)
        .collect();
    if !text.is_empty() && !after.iter().any(|l| l.contains(&text)) {
        problems.push(format!("the error does not show the step's output line {text:?}"));
    }
    if layout_refs(env.kiln.path())
        .unwrap_or_default()
        .iter()
        .any(|r| r.contains(&format!("conf-{name}")))
    {
        problems.push(format!("a failed build tagged {tag}"));
    }
    let buildah_tag = format!("localhost/conf-{name}:buildah");
    if buildah_build(env, ctx, &buildah_tag, args, file).is_ok() {
        problems.push("buildah built a case that must fail".into());
    }
    if problems.is_empty() {
        Ok("ok (fails as expected)".into())
    } else {
        Err(format!(
            "  {}
  --- kiln stderr\n{}",
            problems.join("\n  "),
            indent(&stderr)
        ))
    }
}

/// An image's comparable parts.
struct Image {
    tree: Tree,
    config: BTreeMap<String, Value>,
}

fn unpack(layout: &Path, reference: &str, bundle: &Path) -> Result<Image, String> {
    let (_, config) = layout_image(layout, Some(reference))?;
    let rootfs = umoci_unpack(layout, reference, bundle)?;
    Ok(Image {
        tree: walk_tree(&rootfs)?,
        config: normalise_config(&config),
    })
}

/// Is this value "nothing": null, "", [], {}, or 0? Images leave such fields out or write
/// them empty interchangeably, and both mean "not set".
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Number(n) => n.as_i64() == Some(0),
        Value::Bool(_) => false,
    }
}

fn strip_empty(v: &Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(_, v)| !is_empty(v))
                .map(|(k, v)| (k.clone(), strip_empty(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The compared fields of an image config, with empty values dropped. Labels that the tools
/// add by design are dropped too: `io.buildah.version` (buildah) and `org.opencontainers.
/// image.*` (kiln adds created/revision/source/base.* as DESIGN.md asks; buildah adds
/// created).
fn normalise_config(config: &Value) -> BTreeMap<String, Value> {
    let c = &config["config"];
    let mut out = BTreeMap::new();
    for f in CONFIG_FIELDS {
        let mut v = strip_empty(&c[*f]);
        if *f == "Labels"
            && let Value::Object(m) = &mut v
        {
            m.retain(|k, _| k != "io.buildah.version" && !k.starts_with("org.opencontainers.image."));
        }
        if !is_empty(&v) {
            out.insert((*f).to_string(), v);
        }
    }
    if let Some(a) = config["author"].as_str().filter(|a| !a.is_empty()) {
        out.insert("Author".into(), json!(a));
    }
    out
}

/// Compares configs; returns readable differences.
fn compare_config(kiln: &BTreeMap<String, Value>, oracle: &BTreeMap<String, Value>, oracle_name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let keys: std::collections::BTreeSet<_> = kiln.keys().chain(oracle.keys()).collect();
    for k in keys {
        let (a, b) = (kiln.get(k), oracle.get(k));
        if a == b {
            continue;
        }
        match (a, b) {
            // Long lists (Env): show only the entries that differ.
            (Some(Value::Array(x)), Some(Value::Array(y))) if x.len() == y.len() && x.len() > 3 => {
                out.push(format!("  config {k}"));
                for (i, (p, q)) in x.iter().zip(y).enumerate().filter(|(_, (p, q))| p != q) {
                    out.push(format!("      [{i}] kiln: {p}\n      [{i}] {oracle_name}: {q}"));
                }
            }
            _ => {
                let show = |v: Option<&Value>| v.map(Value::to_string).unwrap_or_else(|| "(unset)".into());
                out.push(format!(
                    "  config {k}\n      kiln: {}\n      {oracle_name}: {}",
                    show(a),
                    show(b)
                ));
            }
        }
    }
    out
}

/// Runs one case; Err is the readable report of what differs or failed.
/// A case ready to build: its scratch context and args, with stand-in SSH agents listening.
struct Prepared {
    name: String,
    work: PathBuf,
    ctx: PathBuf,
    args: CaseArgs,
    _agents: Vec<std::os::unix::net::UnixListener>,
}

fn prepare_case(work_root: &Path, dir: &Path, base_digest: &str) -> Result<Prepared, String> {
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let work = work_root.join(&name);
    let ctx = work.join("ctx");
    prepare_context(dir, &ctx)?;
    let mut args = read_args(dir);
    for b in &mut args.build_args {
        *b = b.replace("@BASE_DIGEST@", base_digest);
    }
    // A stand-in SSH agent: a unix socket that accepts nothing (the steps only see it).
    let mut agents = Vec::new();
    for (i, id) in args.ssh.iter_mut().enumerate() {
        let sock = work.join(format!("agent-{i}.sock"));
        agents.push(std::os::unix::net::UnixListener::bind(&sock).map_err(|e| format!("{}: {e}", sock.display()))?);
        *id = format!("{id}={}", sock.display());
    }
    Ok(Prepared {
        name,
        work,
        ctx,
        args,
        _agents: agents,
    })
}

fn run_case(env: &Env, dir: &Path) -> Result<String, String> {
    let p = prepare_case(env.work(), dir, &env.base_digest)?;
    let (name, work, ctx, args) = (p.name.clone(), &p.work, &p.ctx, &p.args);
    let expected = read_expected(dir);
    let buildah_mode = expected.as_ref().and_then(|e| e.buildah.clone());
    let use_buildah = buildah_mode.as_deref() != Some("skip");
    let dockerfile = args.file.clone().unwrap_or_else(|| "Dockerfile".into());
    if args.fail.is_some() {
        return run_failing_case(env, ctx, &name, args, &ctx.join(&dockerfile));
    }

    for (pname, pfile) in &args.prebuilds {
        let tag = format!("localhost/{pname}:test");
        let no_args = CaseArgs::default();
        kiln_build(&env.kiln, ctx, &tag, &no_args, Some(pfile), None)
            .map_err(|e| format!("kiln prebuild {pname}: {e}"))?;
        if use_buildah {
            buildah_build(env, ctx, &tag, &no_args, &ctx.join(pfile))
                .map_err(|e| format!("buildah prebuild {pname}: {e}"))?;
        }
    }

    let kiln_layout = work.join("kiln-oci");
    let kiln_tag = format!("localhost/conf-{name}:kiln");
    let log = kiln_build(
        &env.kiln,
        ctx,
        &kiln_tag,
        args,
        args.file.as_deref(),
        Some(&kiln_layout),
    )
    .map_err(|e| format!("kiln build failed:\n{e}"))?;
    let kiln_ref = layout_refs(&kiln_layout)?
        .into_iter()
        .next()
        .ok_or_else(|| format!("kiln's --output layout {} names no image", kiln_layout.display()))?;
    let index = kiln_tests::read_json(&kiln_layout.join("index.json"))?;
    let digest = index["manifests"][0]["digest"].as_str().unwrap_or_default().to_string();
    env.digests.borrow_mut().insert(name.clone(), digest);
    let kiln = unpack(&kiln_layout, &kiln_ref, &work.join("kiln-bundle"))?;

    let (oracle_name, mut oracle) = if use_buildah {
        let file = match &buildah_mode {
            Some(f) => dir.join(f),
            None => ctx.join(&dockerfile),
        };
        let tag = format!("localhost/conf-{name}:buildah");
        buildah_build(env, ctx, &tag, args, &file).map_err(|e| format!("buildah build failed:\n{e}"))?;
        let layout = work.join("buildah-oci");
        let mut push = env.buildah.cmd(["push", "-q", &tag]);
        push.arg(format!("oci:{}:img", layout.display()));
        run_checked(&mut push)?;
        let mut img = unpack(&layout, "img", &work.join("buildah-bundle"))?;
        // The OCI config that `buildah push oci:` writes drops the Docker-only fields
        // (Healthcheck, OnBuild, Shell); buildah keeps them in its Docker-format config.
        let inspect = run_checked(&mut env.buildah.cmd(["inspect", "--type", "image", &tag]))?;
        let inspect: Value = serde_json::from_slice(&inspect.stdout).map_err(|e| format!("buildah inspect: {e}"))?;
        img.config = normalise_config(&inspect["Docker"]);
        let _ = env.buildah.cmd(["rmi", "-f", &tag]).output();
        (
            if expected.is_some() {
                "buildah+expected"
            } else {
                "buildah"
            },
            img,
        )
    } else {
        let e = expected.as_ref().unwrap();
        let tree = match e.start.as_str() {
            "scratch" => {
                let mut t = Tree::new();
                t.insert("/".into(), env.base_tree["/"].clone());
                t
            }
            _ => env.base_tree.clone(),
        };
        (
            "expected",
            Image {
                tree,
                config: BTreeMap::new(),
            },
        )
    };
    // 2. Env order: buildah 1.28 removes a variable and appends it when ENV sets it again;
    //    BuildKit (and kiln) replace it in place (dockerfile2llb addEnv). The set of variables
    //    is compared against buildah; the order is asserted by hand in 07-env.
    let mut env_unordered = use_buildah;
    if let Some(e) = &expected {
        env_unordered &= !e.config.contains_key("Env");
        for (k, v) in &e.config {
            let v = strip_empty(v);
            if is_empty(&v) {
                oracle.config.remove(k);
            } else {
                oracle.config.insert(k.clone(), v);
            }
        }
        for (p, entry) in &e.files {
            match entry {
                Some(en) => {
                    oracle.tree.insert(p.clone(), en.clone());
                }
                None => {
                    oracle.tree.remove(p);
                }
            }
        }
    }
    if use_buildah {
        drop_buildah_stubs(&mut oracle.tree, &env.base_tree);
    }
    let mut kiln = kiln;
    if env_unordered {
        for img in [&mut kiln, &mut oracle] {
            if let Some(Value::Array(a)) = img.config.get_mut("Env") {
                a.sort_by_key(|v| v.to_string());
            }
        }
    }

    let mut diffs = compare_config(&kiln.config, &oracle.config, oracle_name);
    diffs.extend(diff_trees("kiln", &kiln.tree, oracle_name, &oracle.tree));
    if diffs.is_empty() {
        Ok(match &expected {
            Some(_) => "ok (with expected.json)".into(),
            None => "ok".into(),
        })
    } else {
        let why = match &expected {
            Some(e) => format!("  (expected.json: {})\n", e.reason),
            None => String::new(),
        };
        Err(format!(
            "{why}{}\n  --- kiln build log\n{}",
            diffs.join("\n"),
            indent(&log)
        ))
    }
}

/// The mount points buildah 1.28 leaves in a RUN layer (empty directories and files it made
/// to mount over). kiln leaves none, as BuildKit does, so they are dropped from buildah's tree
/// when the base does not have them and they are still empty. Mount targets of `--mount`
/// that buildah leaves are listed per case in `expected.json` (`null`).
const BUILDAH_STUBS: &[&str] = &[
    "/dev",
    "/proc",
    "/sys",
    "/run",
    "/etc/hostname",
    "/etc/hosts",
    "/etc/resolv.conf",
];

fn drop_buildah_stubs(tree: &mut Tree, base: &Tree) {
    for stub in BUILDAH_STUBS {
        if base.contains_key(*stub) {
            continue;
        }
        let prefix = format!("{stub}/");
        let has_children = tree.keys().any(|p| p.starts_with(&prefix));
        let empty = match tree.get(*stub) {
            Some(e) if e.kind == "d" => !has_children,
            Some(e) if e.kind == "f" => e.sha256.as_deref() == Some(&sha256_hex(b"")),
            _ => false,
        };
        if empty {
            tree.remove(*stub);
        }
    }
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("    {l}\n")).collect()
}

/// Builds the base with kiln, copies it into buildah's storage, and returns its tree and
/// manifest digest.
fn build_base(env_tmp: &Path, kiln: &KilnStore, buildah: &Buildah) -> (Tree, String) {
    let (layout, digest) = build_base_kiln(env_tmp, kiln);
    let mut copy = Command::new(require_tool("skopeo"));
    copy.args(["copy", "-q"])
        .arg(format!("oci:{}:{BASE}", kiln.path().display()))
        .arg(buildah.storage_ref(BASE));
    run_ok(&mut copy);
    let refs = layout_refs(&layout).unwrap();
    let rootfs = umoci_unpack(&layout, &refs[0], &env_tmp.join("base-bundle")).unwrap_or_else(|e| panic!("{e}"));
    (walk_tree(&rootfs).unwrap(), digest)
}

/// Builds the base with kiln alone; returns its `--output` layout and manifest digest.
fn build_base_kiln(env_tmp: &Path, kiln: &KilnStore) -> (PathBuf, String) {
    assert!(
        Path::new("/bin/busybox").is_file(),
        "/bin/busybox is missing (hint: run scripts/setup, which installs busybox-static)"
    );
    let ctx = env_tmp.join("base-ctx");
    prepare_context(&conformance_dir().join("base"), &ctx).unwrap_or_else(|e| panic!("base setup: {e}"));
    let layout = env_tmp.join("base-oci");
    let iid = env_tmp.join("base.iid");
    let mut c = kiln.cmd(["build", "--progress", "plain", "-t", BASE]);
    c.arg("--iidfile")
        .arg(&iid)
        .arg("--output")
        .arg(format!("type=oci,dest={},tar=false", layout.display()))
        .arg(&ctx);
    run_ok(&mut c);
    let digest = std::fs::read_to_string(&iid).unwrap().trim().to_string();
    (layout, digest)
}

/// The case directories (`NN-name`), sorted, filtered by `KILN_CONFORMANCE_ONLY`.
fn case_dirs() -> Vec<PathBuf> {
    let only = std::env::var("KILN_CONFORMANCE_ONLY").ok();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(conformance_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            p.is_dir()
                && name.chars().take(2).all(|c| c.is_ascii_digit())
                && only.as_ref().is_none_or(|o| name.contains(o.as_str()))
        })
        .collect();
    cases.sort();
    cases
}

/// kiln's umask never reaches an image (issue 12.3): the base and every case are built by
/// kiln alone with its process umask 077 (contexts are prepared under the test's own umask,
/// since their modes are input), and every digest must be the golden one, which was
/// recorded under 022. A leaked umask shows up as a different digest, or as a RUN step of a
/// non-root USER that cannot write where it could (`can't create /tmp/…: Permission
/// denied`, case 43). Failing cases (`fail …`) are skipped: they make no image.
#[test]
fn digests_do_not_depend_on_the_umask() {
    require_tool("runc");
    let tmp = tempfile::tempdir().unwrap();
    let mut kiln = KilnStore::new();
    kiln.umask = Some(0o077);
    let (_, base_digest) = build_base_kiln(tmp.path(), &kiln);
    let mut digests = BTreeMap::from([("base".to_string(), base_digest.clone())]);
    let mut failures = Vec::new();
    for dir in case_dirs() {
        let p = prepare_case(tmp.path(), &dir, &base_digest).unwrap_or_else(|e| panic!("{e}"));
        if p.args.fail.is_some() {
            continue;
        }
        let built = (|| {
            for (pname, pfile) in &p.args.prebuilds {
                let tag = format!("localhost/{pname}:test");
                kiln_build(&kiln, &p.ctx, &tag, &CaseArgs::default(), Some(pfile), None)?;
            }
            let layout = p.work.join("kiln-oci");
            let tag = format!("localhost/conf-{}:kiln", p.name);
            kiln_build(&kiln, &p.ctx, &tag, &p.args, p.args.file.as_deref(), Some(&layout))?;
            let index = kiln_tests::read_json(&layout.join("index.json"))?;
            Ok::<_, String>(index["manifests"][0]["digest"].as_str().unwrap_or_default().to_string())
        })();
        match built {
            Ok(d) => {
                digests.insert(p.name.clone(), d);
            }
            Err(e) => failures.push(format!("=== case {}\n{e}", p.name)),
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases failed to build under umask 077:\n{}",
        failures.len(),
        failures.join("\n")
    );
    kiln_tests::golden::check("conformance", &digests);
}

#[test]
fn conformance_with_buildah() {
    require_tool("skopeo");
    require_tool("umoci");
    require_tool("runc");
    let tmp = tempfile::tempdir().unwrap();
    let kiln = KilnStore::new();
    let buildah = Buildah::new();
    let (base_tree, base_digest) = build_base(tmp.path(), &kiln, &buildah);
    let env = Env {
        tmp,
        kiln,
        buildah,
        base_tree,
        base_digest: base_digest.clone(),
        digests: std::cell::RefCell::new(BTreeMap::from([("base".to_string(), base_digest)])),
    };

    let only = std::env::var("KILN_CONFORMANCE_ONLY").ok();
    let cases = case_dirs();
    let mut failures = Vec::new();
    let mut ran = 0;
    for dir in &cases {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        ran += 1;
        let t = Instant::now();
        match run_case(&env, dir) {
            Ok(msg) => eprintln!("case {name}: {msg} ({:.1}s)", t.elapsed().as_secs_f64()),
            Err(msg) => {
                eprintln!("case {name}: FAILED ({:.1}s)", t.elapsed().as_secs_f64());
                failures.push(format!("=== case {name}\n{msg}"));
            }
        }
    }
    kiln_tests::golden::check("conformance", &env.digests.borrow());
    if std::env::var_os("KILN_CONFORMANCE_KEEP").is_some() {
        eprintln!("keeping {}", env.work().display());
        std::mem::forget(env.tmp);
    }
    assert!(
        failures.is_empty(),
        "{} of {ran} conformance cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    if only.is_none() {
        assert!(
            cases.len() >= 25,
            "the suite needs at least 25 cases, found {}",
            cases.len()
        );
    }
}
