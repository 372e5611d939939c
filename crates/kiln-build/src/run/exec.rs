//! Executes one RUN step: prepares the overlay rootfs, mounts, secrets and config.json,
//! runs the OCI runtime with its output captured, and reads the step's layer back.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use kiln_oci::layer::{EntryKind, LayerEntry};

use super::network::{self, UserNetwork};
use super::overlay::{self, OverlayMount};
use super::spec::{self, Mount, NetNs, User};
use crate::error::StepError;
use crate::tree::{self, LayeredTree, Tree};
use kiln_plan::mounts::{MountFrom, RunMount, Sharing};
use kiln_plan::plan::RunOp;

/// Where a `--secret` value comes from. The value itself is read only when a step mounts it,
/// straight into a tmpfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A file on the host.
    File(PathBuf),
    /// An environment variable of the kiln process.
    Env(String),
}

/// The OCI runtime binary.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// Path of runc or crun.
    pub path: PathBuf,
    /// `runc` or `crun`, for messages.
    pub name: String,
}

impl Runtime {
    /// True for crun (by its file name), which kiln runs without a cgroup manager.
    pub fn is_crun(&self) -> bool {
        self.name.starts_with("crun")
    }

    /// Global options before the runtime's subcommand. kiln sets no resource limits on RUN
    /// steps, so crun runs with its cgroup manager disabled: crun refuses hybrid cgroup
    /// hosts otherwise, and creating a cgroup per step is time no step needs.
    pub fn global_args(&self) -> &'static [&'static str] {
        if self.is_crun() {
            &["--cgroup-manager=disabled"]
        } else {
            &[]
        }
    }

    /// The runtime for RUN steps: `--runtime runc|crun|PATH` when given; else crun where it
    /// can run steps (root outside a user namespace, on cgroup v2 or in kiln's private mount
    /// namespace, where [`super::lifetime::unified_cgroup_view`] gives it a cgroup2 view),
    /// since it starts a step in about a third of runc's time with the same digests; else
    /// [`Runtime::find`]'s choice. Rootless builds keep runc.
    pub fn for_steps(choice: Option<&str>) -> Result<Runtime, StepError> {
        if choice.is_none()
            && super::lifetime::crun_can_run_steps()
            && let Ok(crun) = Runtime::find(Some("crun"))
        {
            return Ok(crun);
        }
        Runtime::find(choice)
    }

    /// Finds the runtime: `--runtime runc|crun|PATH`, or runc (which works on every cgroup
    /// layout this project targets), else crun.
    pub fn find(choice: Option<&str>) -> Result<Runtime, StepError> {
        let on_path = |name: &str| -> Option<PathBuf> {
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .chain(
                    ["/usr/sbin", "/usr/bin", "/sbin", "/usr/local/bin"]
                        .iter()
                        .map(PathBuf::from),
                )
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        };
        let pick = |name: &str| {
            on_path(name).map(|path| Runtime {
                path,
                name: name.to_string(),
            })
        };
        match choice {
            Some(c) if c.contains('/') => {
                let p = PathBuf::from(c);
                if p.is_file() {
                    let name = p
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    Ok(Runtime { path: p, name })
                } else {
                    Err(StepError::new(
                        format!("runtime {c} does not exist"),
                        "give the path of runc or crun, or --runtime runc",
                    ))
                }
            }
            Some(c) => pick(c).ok_or_else(|| {
                StepError::new(
                    format!("runtime {c:?} was not found on PATH"),
                    "install runc (apt-get install runc) or pass --runtime PATH",
                )
            }),
            None => pick("runc").or_else(|| pick("crun")).ok_or_else(|| {
                StepError::new(
                    "no OCI runtime found (runc or crun)",
                    "install runc: apt-get install runc (scripts/setup does)",
                )
            }),
        }
    }
}

/// How steps reach the network by default (`--network`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// Outbound access as `docker build` gives RUN steps, from the step's own network
    /// namespace through the build's user-mode network (see [`super::network`]); the
    /// host's loopback services are out of reach.
    Default,
    /// No network: a fresh network namespace with only loopback.
    None,
    /// The host's network namespace: only with `--allow network.host`.
    Host,
}

impl Network {
    /// Parses `default|none|host`.
    pub fn parse(s: &str) -> Option<Network> {
        match s {
            "default" | "bridge" => Some(Network::Default),
            "none" => Some(Network::None),
            "host" => Some(Network::Host),
            _ => None,
        }
    }
}

/// What a RUN step needs from the solver.
pub struct RunInputs<'a> {
    /// kiln's metadata dir (`$KILN_HOME/kiln`), where step dirs and cache mounts live.
    pub meta_dir: &'a Path,
    /// The step.
    pub op: &'a RunOp,
    /// Unpacked parent layers, bottom first.
    pub lowers: Vec<PathBuf>,
    /// The same layers as a tree, for user lookup and mount-stub detection.
    pub view: &'a LayeredTree,
    /// SOURCE_DATE_EPOCH, exported to the step.
    pub source_date_epoch: i64,
    /// The runtime.
    pub runtime: &'a Runtime,
    /// `--secret`s by id.
    pub secrets: &'a BTreeMap<String, SecretSource>,
    /// `--ssh` agent sockets by id.
    pub ssh: &'a BTreeMap<String, PathBuf>,
    /// Network for steps without `--network`.
    pub network: Network,
    /// `--allow network.host`: steps may use the host's network namespace.
    pub allow_network_host: bool,
    /// The build's user-mode network, started by the first step that needs it.
    pub user_network: &'a UserNetwork,
    /// Keep files that differ on every run (off by default).
    pub keep_volatile: bool,
    /// The build context, for bind mounts.
    pub context_dir: &'a Path,
    /// Unpacked layers of a stage or image, for bind mounts `from=`.
    pub source_layers: &'a dyn Fn(&MountFrom) -> Result<Vec<PathBuf>, StepError>,
    /// Receives every output line of the step.
    pub output: &'a (dyn Fn(&str) + Sync),
}

/// A finished step: its layer entries (backed by files in the step dir, which must live
/// until the layer is written).
pub struct StepResult {
    /// Entries, sorted.
    pub entries: Vec<LayerEntry>,
    /// Keeps the upper dir alive.
    pub _dir: tempfile::TempDir,
}

/// Why a step failed: either it ran and exited non-zero, or it could not be started.
#[derive(Debug)]
pub enum RunError {
    /// The command exited with a failure.
    Failed {
        /// Exit code.
        code: i32,
        /// Last lines of its output.
        tail: Vec<String>,
    },
    /// Preparation failed (bad mount, missing secret, runtime error).
    Setup(StepError),
    /// The filesystem holding kiln's state is full: the runtime cannot even record its
    /// container (runc then says only `unable to store init state: %!w(<nil>)`).
    DiskFull {
        /// kiln's state directory.
        path: PathBuf,
        /// Bytes free there.
        free: u64,
    },
}

/// Below this much free space a step cannot start (the runtime writes its state, the step
/// its layer): kiln says the disk is full instead of passing on the runtime's confusion.
const MIN_FREE_BYTES: u64 = 1 << 20;

/// [`RunError::DiskFull`] if the filesystem holding `dir` has less than
/// [`MIN_FREE_BYTES`] free.
fn disk_full(dir: &Path) -> Option<RunError> {
    let st = rustix::fs::statvfs(dir).ok()?;
    let free = st.f_bavail.saturating_mul(st.f_frsize);
    (free < MIN_FREE_BYTES).then(|| RunError::DiskFull {
        path: dir.to_path_buf(),
        free,
    })
}

impl From<StepError> for RunError {
    fn from(e: StepError) -> Self {
        RunError::Setup(e)
    }
}

fn io(what: &str) -> impl Fn(std::io::Error) -> RunError + '_ {
    move |e| {
        RunError::Setup(StepError::new(
            format!("{what}: {e}"),
            "check free space and permissions under $KILN_HOME",
        ))
    }
}

/// A tmpfs mounted for the step's private files (config.json, secrets, scripts), so secret
/// values never touch a disk.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path) -> Result<Tmpfs, RunError> {
        fs::create_dir_all(path).map_err(io("creating the step's tmpfs dir"))?;
        rustix::mount::mount(
            "tmpfs",
            path,
            "tmpfs",
            rustix::mount::MountFlags::NOSUID | rustix::mount::MountFlags::NODEV,
            Some(c"mode=0700,size=64m"),
        )
        .map_err(|e| {
            RunError::Setup(StepError::new(
                format!("mounting a tmpfs for secrets: {e}"),
                "RUN steps need root (rootless RUN is not supported yet)",
            ))
        })?;
        Ok(Tmpfs {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.path, rustix::mount::UnmountFlags::DETACH);
    }
}

/// Keeps the last value of each variable, in first-definition order.
pub fn dedupe_env(env: &[String]) -> Vec<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out: Vec<String> = Vec::new();
    for kv in env {
        let key = kv.split_once('=').map(|(k, _)| k).unwrap_or(kv).to_string();
        match seen.get(&key) {
            Some(&i) => out[i] = kv.clone(),
            None => {
                seen.insert(key, out.len());
                out.push(kv.clone());
            }
        }
    }
    out
}

/// The home directory /etc/passwd gives `uid`, for `HOME` (RUN steps and `kiln run`).
pub fn passwd_home(view: &dyn Tree, uid: u32) -> Option<String> {
    let p = tree::resolve(view, "etc/passwd", true).ok()?;
    let n = view.lstat(&p).ok()??;
    let text = fs::read_to_string(n.real).ok()?;
    text.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 6 && f[2] == uid.to_string())
        .map(|f| f[5].to_string())
}

fn passwd_line(view: &dyn Tree, user: &str, uid: u32) -> Option<Vec<String>> {
    let p = tree::resolve(view, "etc/passwd", true).ok()?;
    let n = view.lstat(&p).ok()??;
    let text = fs::read_to_string(n.real).ok()?;
    let by_name = text
        .lines()
        .map(|l| l.split(':').map(str::to_string).collect::<Vec<_>>())
        .find(|f| f.len() >= 4 && f[0] == user);
    by_name.or_else(|| {
        text.lines()
            .map(|l| l.split(':').map(str::to_string).collect::<Vec<_>>())
            .find(|f| f.len() >= 4 && f[2] == uid.to_string())
    })
}

/// The step's identity for `USER spec`, as Docker and BuildKit set it: the group given, else
/// the user's primary group from /etc/passwd (also for a numeric uid the image knows), else 0
/// (`docker run --user 4242` runs with gid 0). Supplementary groups: the primary group (as
/// containerd and moby do since CVE-2023-25173) and every /etc/group entry listing the user.
pub fn identity(view: &dyn Tree, spec: &str) -> Result<(u32, u32, Vec<u32>), StepError> {
    let (uid, explicit_gid) = crate::copy::resolve_owner(spec, view)?;
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let entry = passwd_line(view, user, uid);
    let gid = match group {
        Some(_) => explicit_gid,
        None => entry.as_ref().and_then(|f| f[3].parse().ok()).unwrap_or(0),
    };
    let name = entry.map(|f| f[0].clone()).unwrap_or_else(|| user.to_string());
    let mut groups = vec![gid];
    if let Some(p) = tree::resolve(view, "etc/group", true).ok()
        && let Some(n) = view.lstat(&p).ok().flatten()
    {
        let text = fs::read_to_string(n.real).unwrap_or_default();
        let mut member: Vec<u32> = text
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .filter(|f| f.len() >= 4 && f[3].split(',').any(|m| m == name))
            .filter_map(|f| f[2].parse().ok())
            .filter(|g| *g != gid)
            .collect();
        member.sort();
        member.dedup();
        groups.extend(member);
    }
    Ok((uid, gid, groups))
}

/// Runs the step and returns its layer entries.
pub fn run_step(inp: &RunInputs<'_>) -> Result<StepResult, RunError> {
    let op = inp.op;
    if op.args.first().is_none_or(|a| a.is_empty()) {
        return Err(RunError::Setup(StepError::new(
            "RUN has an empty command",
            "give a command, e.g. RUN [\"make\"] or RUN make",
        )));
    }
    let run_root = inp.meta_dir.join("run");
    fs::create_dir_all(&run_root).map_err(io("creating the run dir"))?;
    let dir = tempfile::Builder::new()
        .prefix("step-")
        .tempdir_in(&run_root)
        .map_err(io("creating a step dir"))?;
    let (upper, work, rootfs, private) = (
        dir.path().join("upper"),
        dir.path().join("work"),
        dir.path().join("rootfs"),
        dir.path().join("private"),
    );
    // The upper dir's mode is the rootfs root's mode: exactly 0755, never the umask's.
    for d in [&upper, &work, &rootfs] {
        kiln_oci::fsutil::create_dir_all_exact(d, 0o755).map_err(io("creating step dirs"))?;
    }
    let tmp = Tmpfs::mount(&private)?;
    let overlay_mount = OverlayMount::mount_scratch(&inp.lowers, &upper, &work, &rootfs, &dir.path().join("empty"))
        .map_err(|e| {
            RunError::Setup(StepError::new(
                format!("preparing the rootfs: {e}"),
                "RUN needs overlayfs and root",
            ))
        })?;
    let (user, mut env) = step_identity(inp)?;
    let network = match op.network.as_deref() {
        Some(n) => Network::parse(n).unwrap_or(inp.network),
        None => inp.network,
    };
    let mut mounts = StepMounts::default();
    let net = step_network(inp, network, &tmp.path, &mut mounts.extra)?;
    for (n, m) in op.mounts.iter().enumerate() {
        mounts.add(inp, m, n, &tmp.path, dir.path(), &mut env)?;
    }
    mounts.add_scripts(op, &tmp.path)?;
    let stubs = mount_stubs(inp, net != NetNs::Host, &mounts.extra);
    let StepMounts { extra, redact, guards } = mounts;
    let spec = spec::build_spec(
        &rootfs.display().to_string(),
        op.args.clone(),
        dedupe_env(&env),
        op.workdir.clone(),
        user,
        extra,
        &net,
    );
    make_workdir(inp, &rootfs, &op.workdir)?;
    let bundle = tmp.path.join("bundle");
    fs::create_dir_all(&bundle).map_err(io("creating the bundle"))?;
    fs::write(
        bundle.join("config.json"),
        serde_json::to_vec(&spec).expect("spec serialises"),
    )
    .map_err(io("writing config.json"))?;

    let status = run_runtime(inp, &bundle, &redact)?;
    drop(guards);
    status?;
    drop(overlay_mount);
    let entries = step_changes(inp, &upper, &stubs)?;
    drop(tmp);
    Ok(StepResult { entries, _dir: dir })
}

/// Who the step runs as (USER resolved against the rootfs) and its environment: the
/// plan's, SOURCE_DATE_EPOCH, and HOME from /etc/passwd unless set.
fn step_identity(inp: &RunInputs<'_>) -> Result<(User, Vec<String>), RunError> {
    let op = inp.op;
    let (uid, gid, additional_gids) = match op.user.as_deref().filter(|u| !u.is_empty()) {
        Some(u) => identity(inp.view, u)?,
        None => identity(inp.view, "root").unwrap_or((0, 0, vec![0])),
    };
    let mut env = op.env.clone();
    env.push(format!("SOURCE_DATE_EPOCH={}", inp.source_date_epoch));
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        let home = passwd_home(inp.view, uid).unwrap_or_else(|| if uid == 0 { "/root".into() } else { "/".into() });
        env.insert(0, format!("HOME={home}"));
    }
    let user = User {
        uid,
        gid,
        additional_gids,
        umask: 0o022,
    };
    Ok((user, env))
}

/// A step's `--mount`s and heredoc scripts as runtime mounts, the secret values to redact
/// from its output, and what must stay alive while it runs (cache locks, bind sources).
#[derive(Default)]
struct StepMounts {
    extra: Vec<Mount>,
    redact: Vec<String>,
    guards: Vec<Box<dyn std::any::Any>>,
}

impl StepMounts {
    /// Adds the `n`th `--mount`; secrets and ssh may add to the step's environment.
    fn add(
        &mut self,
        inp: &RunInputs<'_>,
        m: &RunMount,
        n: usize,
        private: &Path,
        step_dir: &Path,
        env: &mut Vec<String>,
    ) -> Result<(), RunError> {
        match m {
            RunMount::Tmpfs { target, size } => {
                let mut options = vec!["nosuid".to_string(), "nodev".to_string(), "mode=1777".to_string()];
                if *size > 0 {
                    options.push(format!("size={size}"));
                }
                self.extra.push(Mount {
                    destination: target.clone(),
                    kind: "tmpfs".into(),
                    source: "tmpfs".into(),
                    options,
                });
            }
            RunMount::Secret { .. } => self.add_secret(inp, m, n, private, env)?,
            RunMount::Ssh {
                id, target, required, ..
            } => match inp.ssh.get(id) {
                Some(sock) => {
                    self.extra.push(Mount::bind(&sock.display().to_string(), target, true));
                    env.push(format!("SSH_AUTH_SOCK={target}"));
                }
                None if *required => {
                    return Err(RunError::Setup(StepError::new(
                        format!("ssh agent {id:?} is required but was not provided"),
                        format!("pass --ssh {id} (uses $SSH_AUTH_SOCK) or --ssh {id}=SOCKET"),
                    )));
                }
                None => {}
            },
            RunMount::Cache { .. } => self.add_cache(inp, m, step_dir, n)?,
            RunMount::Bind {
                target,
                source,
                from,
                rw,
            } => {
                let src = bind_source(inp, from, source, *rw, step_dir, n, &mut self.guards)?;
                self.extra.push(Mount::bind(&src.display().to_string(), target, *rw));
            }
        }
        Ok(())
    }

    /// `type=secret`: the value into a tmpfs file (and/or an environment variable); a
    /// missing secret is an error only when required.
    fn add_secret(
        &mut self,
        inp: &RunInputs<'_>,
        m: &RunMount,
        n: usize,
        private: &Path,
        env: &mut Vec<String>,
    ) -> Result<(), RunError> {
        let RunMount::Secret {
            id,
            target,
            env: env_name,
            required,
            mode,
            uid,
            gid,
        } = m
        else {
            unreachable!("called for secrets")
        };
        let value = match inp.secrets.get(id) {
            Some(SecretSource::File(p)) => Some(fs::read(p).map_err(|e| {
                RunError::Setup(StepError::new(
                    format!("secret {id:?}: cannot read {}: {e}", p.display()),
                    "check the src= path given to --secret",
                ))
            })?),
            Some(SecretSource::Env(v)) => std::env::var_os(v).map(|s| s.into_encoded_bytes()),
            None => None,
        };
        let Some(value) = value else {
            if *required {
                return Err(RunError::Setup(StepError::new(
                    format!("secret {id:?} is required but was not provided"),
                    format!("pass --secret id={id},src=FILE or --secret id={id},env=VAR"),
                )));
            }
            return Ok(());
        };
        self.redact.extend(secret_needles(&value));
        if let Some(target) = target {
            let file = private.join(format!("secret-{n}"));
            fs::write(&file, &value).map_err(io("writing a secret to tmpfs"))?;
            let _ = rustix::fs::chown(
                &file,
                Some(rustix::fs::Uid::from_raw(*uid)),
                Some(rustix::fs::Gid::from_raw(*gid)),
            );
            fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(*mode))
                .map_err(io("secret mode"))?;
            self.extra.push(Mount::bind(&file.display().to_string(), target, false));
        }
        if let Some(name) = env_name {
            env.push(format!("{name}={}", String::from_utf8_lossy(&value)));
        }
        Ok(())
    }

    /// `type=cache`: kiln's persistent cache directory for the id (and, with `from=`, for
    /// that source, as BuildKit keys it), held for the step: `sharing=locked` waits for
    /// other users, `sharing=private` takes another directory when it is in use.
    fn add_cache(&mut self, inp: &RunInputs<'_>, m: &RunMount, step_dir: &Path, n: usize) -> Result<(), RunError> {
        let RunMount::Cache {
            target,
            id,
            sharing,
            from,
            source,
            mode,
            uid,
            gid,
            readonly,
        } = m
        else {
            unreachable!("called for caches")
        };
        // A seeded cache is its own cache: the id with the source's layers and path.
        let variant = match from {
            Some(f) => {
                let layers = (inp.source_layers)(f).map_err(RunError::Setup)?;
                let mut v = format!("\0from\0{}", tree::clean_rel(source));
                for l in layers {
                    v.push('\0');
                    v.push_str(&l.display().to_string());
                }
                v
            }
            None => String::new(),
        };
        let mut seed = |dir: &Path| -> Result<(), RunError> {
            let Some(f) = from else { return Ok(()) };
            let src = bind_source(inp, f, source, false, step_dir, n, &mut self.guards)?;
            seed_cache(&src, dir)
        };
        let want = CacheDir {
            id,
            variant: &variant,
            sharing: *sharing,
            mode: *mode,
            uid: *uid,
            gid: *gid,
        };
        let (path, lock) = cache_mount_dir(inp.meta_dir, &want, &mut seed)?;
        self.guards.push(Box::new(lock));
        self.extra
            .push(Mount::bind(&path.display().to_string(), target, !readonly));
        Ok(())
    }

    /// Heredoc scripts with a shebang, read-only at `/dev/pipes/NAME`.
    fn add_scripts(&mut self, op: &RunOp, private: &Path) -> Result<(), RunError> {
        for (i, s) in op.scripts.iter().enumerate() {
            let file = private.join(format!("script-{i}"));
            fs::write(&file, &s.content).map_err(io("writing a heredoc script"))?;
            fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .map_err(io("script mode"))?;
            self.extra.push(Mount::bind(
                &file.display().to_string(),
                &format!("/dev/pipes/{}", s.name),
                false,
            ));
        }
        Ok(())
    }
}

/// Mount targets that do not exist in the rootfs are stubs the runtime creates; they are
/// not part of the step's result unless the step writes something there.
fn mount_stubs(inp: &RunInputs<'_>, new_network_namespace: bool, extra: &[Mount]) -> BTreeSet<String> {
    let mut stubs = BTreeSet::new();
    for m in spec::base_mounts(new_network_namespace).iter().chain(extra.iter()) {
        let rel = tree::clean_rel(&m.destination);
        let mut prefix = String::new();
        for c in rel.split('/').filter(|c| !c.is_empty()) {
            prefix = tree::join(&prefix, c);
            if inp
                .view
                .lstat(&tree::resolve(inp.view, &prefix, false).unwrap_or_default())
                .ok()
                .flatten()
                .is_none()
            {
                stubs.insert(prefix.clone());
            }
        }
    }
    stubs
}

/// WORKDIR must exist for the runtime to start the process there.
fn make_workdir(inp: &RunInputs<'_>, rootfs: &Path, cwd: &str) -> Result<(), RunError> {
    let cwd_rel = tree::clean_rel(cwd);
    if !cwd_rel.is_empty()
        && inp
            .view
            .lstat(&tree::resolve(inp.view, &cwd_rel, true).unwrap_or_default())
            .ok()
            .flatten()
            .is_none()
    {
        kiln_oci::fsutil::create_dir_all_exact(&rootfs.join(&cwd_rel), 0o755)
            .map_err(io("creating the working directory"))?;
    }
    Ok(())
}

/// The step's layer: its overlay upper dir, less volatile files, mount stubs and
/// directories that hold nothing of this layer.
fn step_changes(inp: &RunInputs<'_>, upper: &Path, stubs: &BTreeSet<String>) -> Result<Vec<LayerEntry>, RunError> {
    let keep_volatile = inp.keep_volatile;
    let mut entries = overlay::upper_entries(upper, &|path, meta| {
        // A volatile file the step wrote is left out (the layers below show through); its
        // deletion (a whiteout) is kept, so `rm`/`apt-get clean` still take effect.
        let whiteout = meta.file_type().is_char_device() && meta.rdev() == 0;
        if !keep_volatile && !whiteout && overlay::is_volatile(path) {
            return true;
        }
        stubs.contains(path)
            && ((meta.is_dir()
                && fs::read_dir(upper.join(path))
                    .map(|mut d| d.next().is_none())
                    .unwrap_or(false))
                || (meta.is_file() && meta.len() == 0))
    })
    .map_err(io("reading the step's changes"))?;
    // Directories that hold nothing of this layer are dropped when they were created only
    // for mount stubs, or when overlay copied them up unchanged (a mount point inside them,
    // or an mtime-only change, which the layer's mtime clamp would erase anyway).
    loop {
        let paths: Vec<String> = entries.iter().map(|e| e.path.clone()).collect();
        let has_children = |dir: &str| {
            let prefix = format!("{dir}/");
            let i = paths.partition_point(|p| p.as_str() < prefix.as_str());
            paths.get(i).is_some_and(|p| p.starts_with(&prefix))
        };
        let before = entries.len();
        entries.retain(|e| {
            if !matches!(e.kind, EntryKind::Dir) || has_children(&e.path) {
                return true;
            }
            if stubs.contains(&e.path) {
                return false;
            }
            match inp.view.lstat(&e.path) {
                Ok(Some(n)) => {
                    !(n.is_dir() && n.mode == e.mode && u64::from(n.uid) == e.uid && u64::from(n.gid) == e.gid)
                }
                _ => true,
            }
        });
        if entries.len() == before {
            break;
        }
    }
    Ok(entries)
}

/// The step's network namespace, and the name-service files it sees: the host's in the
/// host's network, loopback-only hosts and a resolv.conf that reaches DNS through the
/// user-mode network in the default one, none (the image's own) without a network.
fn step_network(
    inp: &RunInputs<'_>,
    network: Network,
    private: &Path,
    extra: &mut Vec<Mount>,
) -> Result<NetNs, RunError> {
    match network {
        Network::None => Ok(NetNs::New),
        Network::Host => {
            if !inp.allow_network_host {
                return Err(RunError::Setup(network::host_not_allowed("--network=host")));
            }
            for f in ["/etc/resolv.conf", "/etc/hosts"] {
                if Path::new(f).exists() {
                    extra.push(Mount::bind(f, f, false));
                }
            }
            Ok(NetNs::Host)
        }
        Network::Default => {
            let ns = inp.user_network.namespace()?.display().to_string();
            let files = network::write_name_files(private).map_err(io("writing the step's name-service files"))?;
            for (file, at) in files {
                extra.push(Mount::bind(&file.display().to_string(), at, false));
            }
            Ok(NetNs::Join(ns))
        }
    }
}

/// Which cache directory a step asks for.
struct CacheDir<'a> {
    id: &'a str,
    /// Empty, or what a `from=` seed adds to the key.
    variant: &'a str,
    sharing: Sharing,
    mode: u32,
    uid: u32,
    gid: u32,
}

/// The directory of a cache mount, created (and seeded) if missing, with its lock held as
/// `sharing` says: none for shared, waited for when locked; for private, the first of
/// `KEY`, `KEY-p1`, `KEY-p2`… that no other step holds, so concurrent steps never share one.
fn cache_mount_dir(
    meta: &Path,
    want: &CacheDir<'_>,
    seed: &mut dyn FnMut(&Path) -> Result<(), RunError>,
) -> Result<(PathBuf, fs::File), RunError> {
    use rustix::fs::FlockOperation;
    use sha2::Digest as _;
    let key = hex::encode(&sha2::Sha256::digest(format!("{}{}", want.id, want.variant).as_bytes())[..12]);
    let base = meta.join("cache-mounts");
    fs::create_dir_all(&base).map_err(io("creating the cache mount dir"))?;
    for instance in 0.. {
        let name = if instance == 0 {
            key.clone()
        } else {
            format!("{key}-p{instance}")
        };
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(base.join(format!("{name}.lock")))
            .map_err(io("cache lock"))?;
        let locking = |op| {
            rustix::fs::flock(&lock, op)
                .map_err(|e| RunError::Setup(StepError::new(format!("locking cache {:?}: {e}", want.id), "retry")))
        };
        match want.sharing {
            Sharing::Shared => {}
            Sharing::Locked => locking(FlockOperation::LockExclusive)?,
            Sharing::Private => match rustix::fs::flock(&lock, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {}
                Err(rustix::io::Errno::WOULDBLOCK) => continue,
                Err(e) => return Err(io("cache lock")(e.into())),
            },
        }
        let path = base.join(&name);
        if !path.exists() {
            create_cache_dir(&base, &name, want, seed)?;
        }
        return Ok((path, lock));
    }
    unreachable!("the loop returns")
}

/// Makes a cache directory beside its final name and renames it there, so a concurrent
/// step never sees it half seeded (the loser of a race keeps the winner's).
fn create_cache_dir(
    base: &Path,
    name: &str,
    want: &CacheDir<'_>,
    seed: &mut dyn FnMut(&Path) -> Result<(), RunError>,
) -> Result<(), RunError> {
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}-new-"))
        .tempdir_in(base)
        .map_err(io("creating a cache mount"))?;
    seed(tmp.path())?;
    let _ = rustix::fs::chown(
        tmp.path(),
        Some(rustix::fs::Uid::from_raw(want.uid)),
        Some(rustix::fs::Gid::from_raw(want.gid)),
    );
    fs::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(want.mode))
        .map_err(io("cache mount mode"))?;
    fs::write(base.join(format!("{name}.id")), want.id).map_err(io("naming a cache mount"))?;
    let dir = tmp.keep();
    if fs::rename(&dir, base.join(name)).is_err() {
        let _ = fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// Copies a `from=` source (a directory or a file of the mounted stage or image) into a new
/// cache directory, keeping modes, owners, links and times (`cp -a`).
fn seed_cache(src: &Path, dir: &Path) -> Result<(), RunError> {
    let from = if src.is_dir() { src.join(".") } else { src.to_path_buf() };
    let out = std::process::Command::new("cp")
        .arg("-a")
        .arg("--")
        .arg(&from)
        .arg(dir)
        .output()
        .map_err(io("running cp to seed a cache mount"))?;
    if !out.status.success() {
        return Err(RunError::Setup(StepError::new(
            format!(
                "seeding the cache mount from {}: {}",
                src.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            "check the mount's from= and source=",
        )));
    }
    Ok(())
}

fn bind_source(
    inp: &RunInputs<'_>,
    from: &MountFrom,
    source: &str,
    rw: bool,
    step_dir: &Path,
    n: usize,
    guards: &mut Vec<Box<dyn std::any::Any>>,
) -> Result<PathBuf, RunError> {
    let rel = tree::clean_rel(source);
    let base: PathBuf = match from {
        MountFrom::Context => {
            let ctx = tree::ContextTree::new(inp.context_dir.to_path_buf(), None);
            let real = tree::resolve(&ctx, &rel, true).map_err(io("resolving a bind source"))?;
            let p = inp.context_dir.join(&real);
            if !p.exists() {
                return Err(RunError::Setup(StepError::new(
                    format!("bind mount source {source:?} does not exist in the build context"),
                    "give a path relative to the context root",
                )));
            }
            p
        }
        other => {
            let layers = (inp.source_layers)(other)?;
            let merged = step_dir.join(format!("bind-{n}"));
            let up = step_dir.join(format!("bind-{n}-upper"));
            let wk = step_dir.join(format!("bind-{n}-work"));
            for d in [&merged, &up, &wk] {
                kiln_oci::fsutil::create_dir_all_exact(d, 0o755).map_err(io("bind mount dir"))?;
            }
            let m = OverlayMount::mount_scratch(&layers, &up, &wk, &merged, &step_dir.join("empty")).map_err(|e| {
                RunError::Setup(StepError::new(
                    format!("mounting the bind source: {e}"),
                    "check the from= stage",
                ))
            })?;
            guards.push(Box::new(m));
            let view = LayeredTree::new(layers);
            let real = tree::resolve(&view, &rel, true).map_err(io("resolving a bind source"))?;
            let p = merged.join(&real);
            if !p.exists() {
                return Err(RunError::Setup(StepError::new(
                    format!("bind mount source {source:?} does not exist in the source stage"),
                    "check source=",
                )));
            }
            return Ok(p);
        }
    };
    if !rw {
        return Ok(base);
    }
    // rw on the context: writes land in a throwaway upper dir, never in the user's files.
    if base.is_dir() {
        let merged = step_dir.join(format!("bind-{n}"));
        let up = step_dir.join(format!("bind-{n}-upper"));
        let wk = step_dir.join(format!("bind-{n}-work"));
        for d in [&merged, &up, &wk] {
            kiln_oci::fsutil::create_dir_all_exact(d, 0o755).map_err(io("bind mount dir"))?;
        }
        let m = OverlayMount::mount_scratch(std::slice::from_ref(&base), &up, &wk, &merged, &step_dir.join("empty"))
            .map_err(|e| {
                RunError::Setup(StepError::new(
                    format!("mounting the bind source: {e}"),
                    "check source=",
                ))
            })?;
        guards.push(Box::new(m));
        Ok(merged)
    } else {
        let copy = step_dir.join(format!("bind-{n}-file"));
        fs::copy(&base, &copy).map_err(io("copying a bind source"))?;
        Ok(copy)
    }
}

/// The strings to mask in a step's output for one secret value: the whole value and each of
/// its lines, when long enough that masking them cannot hide ordinary output.
fn secret_needles(value: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(value);
    let mut out: Vec<String> = std::iter::once(text.trim().to_string())
        .chain(text.lines().map(|l| l.trim().to_string()))
        .filter(|s| s.chars().count() >= 4)
        .collect();
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

/// Masks every secret value in a line of output, so a step that prints a secret does not
/// put it into kiln's logs or error messages.
fn redact_line(line: &str, needles: &[String]) -> String {
    let mut line = line.to_string();
    for n in needles {
        if line.contains(n.as_str()) {
            line = line.replace(n.as_str(), "****");
        }
    }
    line
}

fn run_runtime(inp: &RunInputs<'_>, bundle: &Path, redact: &[String]) -> Result<Result<(), RunError>, RunError> {
    if let Some(full) = disk_full(inp.meta_dir) {
        return Err(full);
    }
    let state = inp.meta_dir.join("runtime-state");
    fs::create_dir_all(&state).map_err(io("creating the runtime state dir"))?;
    let id = format!(
        "kiln-{}",
        bundle
            .parent()
            .and_then(|p| p.parent())
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
            .trim_start_matches("step-")
    );
    if inp.runtime.is_crun() {
        super::lifetime::unified_cgroup_view();
    }
    let mut cmd = Command::new(&inp.runtime.path);
    super::lifetime::bind_to_parent(&mut cmd);
    // If kiln dies (even by kill -9), the reaper kills and deletes the container.
    let _reaper = super::lifetime::Reaper::start(inp.runtime, &state, &id).map_err(|e| {
        RunError::Setup(StepError::new(
            format!("starting the container reaper (/bin/sh): {e}"),
            "RUN steps need /bin/sh on the host",
        ))
    })?;
    // crun writes why it could not start a step to this file (and to the step's stderr,
    // where it cannot be told from the step's own output); runc logs to stderr only.
    let runtime_log = bundle.with_file_name("runtime.log");
    if inp.runtime.is_crun() {
        let mut arg = std::ffi::OsString::from("--log=file:");
        arg.push(&runtime_log);
        cmd.arg(arg);
    }
    let mut child = cmd
        .args(inp.runtime.global_args())
        .arg("--root")
        .arg(&state)
        .args(["run", "--bundle"])
        .arg(bundle)
        .arg(&id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            RunError::Setup(StepError::new(
                format!("starting {}: {e}", inp.runtime.path.display()),
                "check --runtime",
            ))
        })?;
    let tail: Arc<Mutex<VecDeque<String>>> = Arc::new(Mutex::new(VecDeque::new()));
    let pump = |r: Box<dyn Read + Send>| {
        let tail = Arc::clone(&tail);
        let out = inp.output;
        move || {
            for line in BufReader::new(r).lines() {
                let Ok(line) = line else { break };
                let line = redact_line(&line, redact);
                out(&line);
                let mut t = tail.lock().unwrap();
                t.push_back(line);
                if t.len() > 20 {
                    t.pop_front();
                }
            }
        }
    };
    let stdout: Box<dyn Read + Send> = Box::new(child.stdout.take().expect("piped"));
    let stderr: Box<dyn Read + Send> = Box::new(child.stderr.take().expect("piped"));
    let status = std::thread::scope(|s| {
        s.spawn(pump(stdout));
        s.spawn(pump(stderr));
        child.wait()
    })
    .map_err(|e| RunError::Setup(StepError::new(format!("waiting for the runtime: {e}"), "retry")))?;
    if status.success() {
        // `run` removes the container when its process exits; nothing to delete.
        return Ok(Ok(()));
    }
    // After a failure the container may be left behind (e.g. it never started).
    let _ = Command::new(&inp.runtime.path)
        .args(inp.runtime.global_args())
        .arg("--root")
        .arg(&state)
        .args(["delete", "-f", &id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if let Some(full) = disk_full(inp.meta_dir) {
        return Err(full);
    }
    let tail: Vec<String> = tail.lock().unwrap().iter().cloned().collect();
    let crun_log = fs::read_to_string(&runtime_log).unwrap_or_default();
    let joined = format!("{}\n{crun_log}", tail.join("\n"));
    if joined.contains("cgroups in hybrid mode not supported") {
        return Err(RunError::Setup(StepError::new(
            format!(
                "{} cannot run steps on this host: it does not support hybrid cgroups",
                inp.runtime.name
            ),
            "use --runtime runc",
        )));
    }
    let crun_reason = crun_log.lines().rev().map(str::trim).find(|l| !l.is_empty());
    if crun_reason.is_some()
        || joined.contains("unable to start container process")
        || joined.contains("runc run failed")
    {
        let line = match crun_reason {
            Some(r) => r.to_string(),
            None => tail
                .iter()
                .rev()
                .find(|l| l.contains("unable to start") || l.contains("failed"))
                .cloned()
                .unwrap_or_default(),
        };
        // runc logs `time="…" level=error msg="…"`: show the message alone.
        let reason = match line.split_once("msg=\"") {
            Some((_, m)) => m.strip_suffix('"').unwrap_or(m).replace("\\\"", "\""),
            None => line,
        };
        let lower = reason.to_lowercase();
        let hint = if lower.contains("executable file not found")
            || lower.contains("not found in $path")
            || lower.contains("no such file or directory")
        {
            "the command (or the SHELL) does not exist in the image"
        } else {
            "the runtime could not start the step; check the image and --runtime"
        };
        return Err(RunError::Setup(StepError::new(
            format!("{} could not start the step: {reason}", inp.runtime.name),
            hint,
        )));
    }
    Ok(Err(RunError::Failed {
        code: status.code().unwrap_or(128 + 9),
        tail,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_in_output() {
        let needles = secret_needles(b"s3cr3t-value\nline-two\nab\n");
        assert_eq!(redact_line("token=s3cr3t-value ok", &needles), "token=**** ok");
        assert_eq!(redact_line("got line-two", &needles), "got ****");
        assert_eq!(
            redact_line("ab stays (too short to mask safely)", &needles),
            "ab stays (too short to mask safely)"
        );
    }
}
