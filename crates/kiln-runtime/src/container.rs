//! One container's life: its directory, its overlay rootfs (read-only on top of the image's
//! snapshots, with a throwaway upper dir for `--writable` and mount points), the runtime run
//! in the foreground or detached, and its removal.

use std::net::TcpListener;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kiln_build::run::exec::Runtime;
use kiln_build::run::network::{self, UserNetwork};
use kiln_build::run::overlay::OverlayMount;
use kiln_oci::Store;

use crate::config::{self, SpecInputs};
use crate::error::{RuntimeError, io};
use crate::options::{Network, Proto, Publish, RunOptions};
use crate::state::{self, State};
use crate::{identity, image, proxy, signals};

/// The hidden kiln subcommand that serves a detached container's published ports.
pub const PUBLISH_COMMAND: &str = "__publish";

/// A container that exists on disk (and maybe runs). Dropping it unmounts its rootfs and
/// removes its directory, unless it was detached.
pub struct Container {
    /// Its name.
    pub name: String,
    /// The runtime's id.
    pub id: String,
    /// Its directory.
    pub dir: PathBuf,
    /// The image as named and its digest.
    pub image: (String, String),
    /// The argv.
    pub argv: Vec<String>,
    /// Where the runtime mounts something (not writes of the program).
    pub mount_points: Vec<String>,
    view: kiln_build::tree::LayeredTree,
    runtime: Runtime,
    root: PathBuf,
    listeners: Vec<(Publish, proxy::Socket)>,
    overlay: Option<OverlayMount>,
    /// `--network private`: the user-mode network (slirp4netns) giving outbound access.
    net: Option<UserNetwork>,
    keep: bool,
}

/// `--network private`'s namespace: outbound access through slirp4netns, as RUN steps have
/// (the host's loopback out of reach), with the name-service files that go with it written
/// into `names`. Returns the network, the namespace's path for the runtime to join, and
/// each name-service file with its path under /etc.
fn private_network(names: &std::path::Path) -> Result<(UserNetwork, String, NameFiles), RuntimeError> {
    let net = UserNetwork::new();
    let ns = net
        .namespace()
        .map_err(|e| {
            let hint = if e.message.contains("not installed") {
                "apt-get install slirp4netns, or run with --network none"
            } else {
                "check that slirp4netns works here, or run with --network none"
            };
            RuntimeError::env(format!("--network private: {}", e.message), hint)
        })?
        .display()
        .to_string();
    std::fs::create_dir_all(names).map_err(io(names.display()))?;
    let files = network::write_name_files(names).map_err(io(names.display()))?;
    Ok((net, ns, files))
}

/// Name-service files and where each goes under /etc.
type NameFiles = [(PathBuf, &'static str); 2];

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && name.len() <= 128
}

fn random_id() -> String {
    let mut buf = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut buf);
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn check_network(opts: &RunOptions) -> Result<(), RuntimeError> {
    if !opts.publish.is_empty() && opts.network != Network::Private {
        return Err(RuntimeError::input(
            "-p publishes ports only with --network private",
            "drop --network (private is the default); with --network host the container uses the host's ports directly",
        ));
    }
    Ok(())
}

/// Prepares a container for `reference`: image snapshots, identity (refusing root unless
/// `--user` says so), rootfs overlay, config.json, and the published ports' listeners.
pub fn create(
    store: &Store,
    reference: &str,
    opts: &RunOptions,
    remote: kiln_oci::transport::Remote<'_>,
) -> Result<Container, RuntimeError> {
    check_network(opts)?;
    let runtime = Runtime::find(opts.runtime.as_deref()).map_err(|e| RuntimeError::env(e.message, e.hint))?;
    let prepared = image::prepare(store, reference, remote)?;
    let id = identity::resolve(
        &prepared.view,
        prepared.config.config.user.as_deref(),
        opts.user.as_deref(),
    )?;
    identity::refuse_root(&id, opts.user.as_deref(), reference)?;
    let argv = config::command(&prepared.config, opts, reference)?;
    let cid = format!("kiln-run-{}", random_id());
    let name = opts
        .name
        .clone()
        .unwrap_or_else(|| cid["kiln-run-".len()..][..12].to_string());
    if !valid_name(&name) {
        return Err(RuntimeError::input(
            format!("--name {name:?} is not a valid container name"),
            "use letters, digits, '_', '.' and '-', starting with a letter or digit",
        ));
    }
    let dir = state::container_dir(store, &name);
    std::fs::create_dir_all(state::containers_dir(store)).map_err(io("creating the containers dir"))?;
    if std::fs::create_dir(&dir).is_err() {
        return Err(RuntimeError::input(
            format!("a container named {name:?} already exists"),
            format!("stop it with `kiln stop {name}`, or pick another --name"),
        ));
    }
    let listeners = match proxy::bind(&opts.publish) {
        Ok(l) => l,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
    };
    let mut c = Container {
        name: name.clone(),
        id: cid,
        dir: dir.clone(),
        image: (reference.to_string(), prepared.manifest.digest.to_string()),
        argv: argv.clone(),
        mount_points: vec![],
        view: kiln_build::tree::LayeredTree::new(prepared.lowers.clone()),
        runtime,
        root: state::runtime_root(store),
        listeners,
        overlay: None,
        net: None,
        keep: false,
    };
    let (upper, work, rootfs, bundle) = (
        dir.join("upper"),
        dir.join("work"),
        dir.join("rootfs"),
        dir.join("bundle"),
    );
    // The upper dir's mode is the rootfs root's mode: exactly 0755, never the umask's.
    for d in [&upper, &work, &rootfs, &bundle, &c.root] {
        kiln_oci::fsutil::create_dir_all_exact(d, 0o755).map_err(io(d.display()))?;
    }
    c.overlay = Some(
        OverlayMount::mount(&prepared.lowers, &upper, &work, &rootfs, &dir.join("empty")).map_err(|e| {
            RuntimeError::env(
                format!("mounting the container's rootfs: {e}"),
                "kiln run needs root, or a user namespace (rootless kiln re-executes itself in one)",
            )
        })?,
    );
    let joined = match opts.network {
        Network::Private => {
            let (net, ns, files) = private_network(&dir.join("etc"))?;
            c.net = Some(net);
            Some((ns, files))
        }
        _ => None,
    };
    let spec = config::build(&SpecInputs {
        rootfs: &rootfs,
        config: &prepared.config,
        identity: &id,
        opts,
        argv,
        hostname: name.chars().take(63).collect(),
        user_network: joined.as_ref().map(|(ns, files)| (ns.as_str(), &files[..])),
    });
    c.mount_points = spec.mounts.iter().map(|m| m.destination.clone()).collect();
    std::fs::write(
        bundle.join("config.json"),
        serde_json::to_vec(&spec).expect("spec serialises"),
    )
    .map_err(io("writing config.json"))?;
    Ok(c)
}

impl Container {
    /// The overlay's upper dir: everything the container wrote to its rootfs.
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }

    /// What the program wrote to its rootfs (after it exited; needs `--writable`).
    pub fn writes(&self) -> Result<crate::writes::Writes, RuntimeError> {
        crate::writes::discover(&self.upper(), &self.mount_points, &self.view)
    }

    fn runtime_cmd(&self) -> Command {
        let mut c = Command::new(&self.runtime.path);
        c.arg("--root").arg(&self.root);
        c
    }

    /// Waits until the runtime reports the container's pid, or `child` has exited.
    fn wait_pid(&self, mut exited: impl FnMut() -> bool) -> Option<u32> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline && !exited() {
            if let (_, Some(pid)) = state::status(&self.runtime.path, &self.root, &self.id) {
                return Some(pid);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Runs in the foreground with kiln's stdio, forwarding signals, publishing ports while it
    /// runs, and returns the container's exit code (128+N when killed by signal N).
    pub fn run_foreground(&mut self) -> Result<i32, RuntimeError> {
        signals::block();
        let mut cmd = self.runtime_cmd();
        cmd.args(["run", "--bundle"]).arg(self.dir.join("bundle")).arg(&self.id);
        // SAFETY: the closure only calls sigprocmask, which is async-signal-safe.
        unsafe {
            cmd.pre_exec(signals::unblock_in_child);
        }
        let mut child = cmd.spawn().map_err(|e| {
            RuntimeError::env(
                format!("starting {}: {e}", self.runtime.path.display()),
                "check --runtime",
            )
        })?;
        signals::forward_to(child.id());
        if !self.listeners.is_empty() {
            let pid = self.wait_pid(|| matches!(child.try_wait(), Ok(Some(_))));
            if let Some(pid) = pid
                && let Ok(ns) = proxy::open_netns(pid)
            {
                proxy::serve(std::mem::take(&mut self.listeners), ns);
            }
        }
        let status = child.wait().map_err(io("waiting for the runtime"))?;
        use std::os::unix::process::ExitStatusExt;
        Ok(status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(9)))
    }

    /// Starts the container in the background with its output in `DIR/log`, starts the port
    /// proxy, records its state and leaves it running.
    pub fn detach(mut self) -> Result<State, RuntimeError> {
        let log_path = self.dir.join("log");
        let log = std::fs::File::create(&log_path).map_err(io(log_path.display()))?;
        let out = self
            .runtime_cmd()
            .args(["run", "--detach", "--bundle"])
            .arg(self.dir.join("bundle"))
            .arg(&self.id)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(io("log"))?)
            .stderr(log)
            .status()
            .map_err(io("starting the runtime"))?;
        let (_, pid) = state::status(&self.runtime.path, &self.root, &self.id);
        let Some(pid) = pid.filter(|_| out.success()) else {
            let _ = self.runtime_cmd().args(["delete", "-f", &self.id]).status();
            let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
            return Err(RuntimeError::env(
                format!(
                    "{} could not start the container: {}",
                    self.runtime.name,
                    tail.lines().last().unwrap_or("no output")
                ),
                "check the image's ENTRYPOINT with `kiln inspect`",
            ));
        };
        // The helper serves the published ports and holds the user-mode network's exit
        // pipe: both last as long as the container, after this kiln exits.
        let exit_pipe = self.net.take().and_then(UserNetwork::detach);
        let proxy_pid = if self.listeners.is_empty() && exit_pipe.is_none() {
            None
        } else {
            Some(self.spawn_proxy(pid, exit_pipe)?)
        };
        let state = State {
            name: self.name.clone(),
            id: self.id.clone(),
            image: self.image.0.clone(),
            digest: self.image.1.clone(),
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            pid,
            proxy_pid,
            ports: self.listeners.iter().map(|(p, _)| *p).collect(),
            command: self.argv.clone(),
            runtime: self.runtime.path.clone(),
        };
        state.save(&self.dir)?;
        // The rootfs stays mounted while the container runs; `kiln stop` unmounts it.
        std::mem::forget(self.overlay.take());
        self.keep = true;
        Ok(state)
    }

    /// Starts `kiln __publish` in its own session with the listening sockets inherited, so the
    /// ports stay published after this kiln exits; it inherits `exit_pipe` too, so the
    /// container's user-mode network lives until the helper ends (the container exited, or
    /// `kiln stop` killed it).
    fn spawn_proxy(&self, pid: u32, exit_pipe: Option<OwnedFd>) -> Result<u32, RuntimeError> {
        let exe = std::env::current_exe().map_err(io("locating kiln"))?;
        let mut fds: Vec<i32> = self.listeners.iter().map(|(_, l)| l.raw_fd()).collect();
        fds.extend(exit_pipe.as_ref().map(|f| f.as_raw_fd()));
        let mut cmd = Command::new(exe);
        cmd.arg(PUBLISH_COMMAND).arg(pid.to_string());
        for (p, l) in &self.listeners {
            let udp = if p.proto == Proto::Udp { "/udp" } else { "" };
            cmd.arg(format!("{}:{}{udp}", l.raw_fd(), p.container));
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        // SAFETY: setsid and fcntl are async-signal-safe; the fds are ours and stay open.
        unsafe {
            cmd.pre_exec(move || {
                libc::setsid();
                for fd in &fds {
                    libc::fcntl(*fd, libc::F_SETFD, 0);
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(io("starting the port proxy"))?;
        // The helper has its copy; ours closes here.
        drop(exit_pipe);
        Ok(child.id())
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        let _ = self
            .runtime_cmd()
            .args(["delete", "-f", &self.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        drop(self.overlay.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Serves published ports for the detached container whose process is `pid`, from sockets
/// inherited as `FD:CONTAINER_PORT` (TCP) or `FD:CONTAINER_PORT/udp`; returns when that
/// process is gone.
pub fn publish_main(pid: u32, specs: &[String]) -> Result<(), RuntimeError> {
    use std::os::fd::FromRawFd;
    let mut listeners = Vec::new();
    for s in specs {
        let (spec, proto) = match s.strip_suffix("/udp") {
            Some(spec) => (spec, Proto::Udp),
            None => (s.as_str(), Proto::Tcp),
        };
        let (fd, port) = spec
            .split_once(':')
            .and_then(|(f, p)| Some((f.parse::<i32>().ok()?, p.parse::<u16>().ok()?)))
            .ok_or_else(|| RuntimeError::input(format!("bad port spec {s:?}"), "internal use only"))?;
        // SAFETY: the parent passed us this socket's descriptor, open and ours alone.
        let socket = unsafe {
            match proto {
                Proto::Tcp => proxy::Socket::Tcp(TcpListener::from_raw_fd(fd)),
                Proto::Udp => proxy::Socket::Udp(std::net::UdpSocket::from_raw_fd(fd)),
            }
        };
        listeners.push((
            Publish {
                host: 0,
                container: port,
                proto,
            },
            socket,
        ));
    }
    let ns = proxy::open_netns(pid)?;
    let watch = ns.try_clone().map_err(io("netns"))?;
    proxy::serve(listeners, ns);
    while proxy::still_there(pid, &watch) {
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(())
}

/// Stops container `name`: SIGTERM (or its STOPSIGNAL), then SIGKILL after `timeout`, and
/// removes it with its rootfs, log and port proxy.
pub fn stop(store: &Store, name: &str, timeout: Duration) -> Result<(), RuntimeError> {
    let st = State::load(store, name)?;
    let root = state::runtime_root(store);
    let run = |args: &[&str]| {
        Command::new(&st.runtime)
            .arg("--root")
            .arg(&root)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
    };
    let _ = run(&["kill", &st.id, "TERM"]);
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline && state::status(&st.runtime, &root, &st.id).0 == "running" {
        std::thread::sleep(Duration::from_millis(50));
    }
    if state::status(&st.runtime, &root, &st.id).0 == "running" {
        let _ = run(&["kill", &st.id, "KILL"]);
    }
    let _ = run(&["delete", "-f", &st.id]);
    if let Some(p) = st.proxy_pid {
        // SAFETY: a signal to the proxy we started; at worst ESRCH.
        unsafe {
            libc::kill(p as libc::pid_t, libc::SIGTERM);
        }
    }
    let dir = state::container_dir(store, name);
    let _ = rustix::mount::unmount(dir.join("rootfs"), rustix::mount::UnmountFlags::DETACH);
    std::fs::remove_dir_all(&dir).map_err(io(dir.display()))
}

/// The log file of container `name` (its stdout and stderr).
pub fn log_path(store: &Store, name: &str) -> Result<PathBuf, RuntimeError> {
    State::load(store, name)?;
    Ok(state::container_dir(store, name).join("log"))
}
