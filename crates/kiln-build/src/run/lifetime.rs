//! Nothing of a build outlives kiln: its mounts live in a private mount namespace that dies
//! with it, and the runtime's container is killed when kiln dies, however it dies (kill -9
//! included), as containerd's shim and BuildKit's executor guarantee.
//!
//! - [`enter_private_mount_namespace`]: called once at start, before any thread exists;
//!   every overlay and tmpfs a build mounts is then invisible to the host and goes away
//!   with the last process of the namespace, so a killed build leaves no mount behind (a
//!   leftover mount made `prune --cache` and `rm -rf` of the store fail with EBUSY).
//! - [`Reaper`]: a tiny process started beside each `runc run` that waits for kiln's end of
//!   a pipe to close and then kills and deletes the container. `runc run` itself gets
//!   `PR_SET_PDEATHSIG(SIGKILL)`; the container's init does not (runc does not pass it on),
//!   and would otherwise keep running, reparented to init.

use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Moves this process into a new mount namespace whose mounts do not propagate back to the
/// host's. Must be called while the process has a single thread (a multi-threaded process
/// can only move the calling thread).
pub fn enter_private_mount_namespace() -> io::Result<()> {
    // SAFETY: only CLONE_NEWNS is unshared (no file-descriptor table), at start-up before
    // any other thread exists.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }?;
    rustix::mount::mount_change(
        "/",
        rustix::mount::MountPropagationFlags::PRIVATE | rustix::mount::MountPropagationFlags::REC,
    )?;
    PRIVATE_MOUNTS.store(true, std::sync::atomic::Ordering::SeqCst);
    Ok(())
}

/// As root, [`enter_private_mount_namespace`]; a no-op for other users. Failing to do so
/// (no CAP_SYS_ADMIN) is not an error here: RUN steps could not mount either, and say so.
pub fn private_mounts_as_root() {
    if rustix::process::geteuid().is_root() {
        let _ = enter_private_mount_namespace();
    }
}

/// Gives kiln's private mount namespace a cgroup v2 view at /sys/fs/cgroup when the host
/// has a hybrid or legacy layout (a tmpfs of v1 hierarchies there). crun reads the layout
/// from that path and refuses hybrid hosts; with a cgroup2 filesystem mounted over it in
/// this namespace only, and its cgroup manager disabled, crun runs steps here. The host
/// never sees the mount. Once per process; failures leave crun's own error to speak.
pub fn unified_cgroup_view() {
    static DONE: std::sync::Once = std::sync::Once::new();
    DONE.call_once(|| {
        const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
        let cgroup = Path::new("/sys/fs/cgroup");
        let unified = rustix::fs::statfs(cgroup).is_ok_and(|s| s.f_type == CGROUP2_SUPER_MAGIC);
        if unified || !rustix::process::geteuid().is_root() || !in_private_mount_namespace() {
            return;
        }
        let _ = rustix::mount::mount(
            "cgroup2",
            cgroup,
            "cgroup2",
            rustix::mount::MountFlags::NOSUID | rustix::mount::MountFlags::NODEV | rustix::mount::MountFlags::NOEXEC,
            None,
        );
    });
}

/// True when crun can run RUN steps here: as root outside a user namespace, with cgroup v2
/// at /sys/fs/cgroup or a private mount namespace to mount a view there
/// ([`unified_cgroup_view`]).
pub fn crun_can_run_steps() -> bool {
    const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
    if !rustix::process::geteuid().is_root() || super::userns::in_user_namespace() {
        return false;
    }
    in_private_mount_namespace() || rustix::fs::statfs("/sys/fs/cgroup").is_ok_and(|s| s.f_type == CGROUP2_SUPER_MAGIC)
}

/// Set once [`enter_private_mount_namespace`] succeeded: mounts made after it cannot reach
/// the host.
static PRIVATE_MOUNTS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn in_private_mount_namespace() -> bool {
    PRIVATE_MOUNTS.load(std::sync::atomic::Ordering::SeqCst)
}

/// Makes `cmd` die with kiln (SIGKILL when the thread that spawns it exits) and start with
/// umask 022 (the runtime creates mount points in the rootfs with its own umask, and they
/// can end up in a layer: Docker's 022, never kiln's).
pub fn bind_to_parent(cmd: &mut Command) {
    // SAFETY: prctl and umask are async-signal-safe and touch no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
            Ok(())
        });
    }
}

/// Kills and deletes one container if kiln dies while it runs. Dropped (disarmed) once the
/// runtime has returned normally.
pub struct Reaper {
    child: Child,
}

impl Reaper {
    /// Starts the reaper for container `id` of `runtime` with state in `state`. It ignores
    /// the terminal's signals (a Ctrl-C reaches kiln, which stops the step itself) and
    /// waits on a pipe that only kiln holds open.
    pub fn start(runtime: &super::exec::Runtime, state: &Path, id: &str) -> io::Result<Reaper> {
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg(r#"trap '' INT HUP TERM QUIT; read -r _; exec "$0" "$@""#)
            .arg(&runtime.path)
            .args(runtime.global_args())
            .arg("--root")
            .arg(state)
            .args(["delete", "-f", id])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        Ok(Reaper { child })
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        // Normal end: the runtime is done with the container, nothing to reap.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
