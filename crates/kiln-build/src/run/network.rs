//! The network of RUN steps: its own network namespace, with outbound access through a
//! user-mode network stack (`slirp4netns`), as rootless BuildKit (through rootlesskit) and
//! podman give their build containers.
//!
//! A step sees an interface `tap0` (10.0.2.100, gateway 10.0.2.2, DNS forwarder 10.0.2.3).
//! slirp4netns opens the step's connections as ordinary sockets of kiln's own (host)
//! network namespace, so name resolution, proxies and mirrors work as for any program on the
//! host. The host's loopback is out of reach: the step's 127.0.0.1 is its own, and
//! `--disable-host-loopback` refuses the gateway's mapping to the host's 127.0.0.1. The same
//! works as root and rootless: kiln owns the namespace, and slirp4netns runs as kiln's user.
//!
//! Cost: one namespace and one slirp4netns per build, started when the first step that needs
//! outbound access runs (about 5-15 ms), shared by the build's steps (they are one build's,
//! run one after another or by the same user). Steps with `--network=none` get a fresh,
//! loopback-only namespace from the runtime and never start it.
//!
//! slirp4netns over pasta (Debian's `passt`): bookworm's pasta must run as root to join a
//! namespace kiln made, takes 60-130 ms to start, daemonises (so it outlives a killed kiln),
//! and by default forwards ports bound on the host's loopback into the namespace. slirp4netns
//! reports readiness on a pipe and exits when kiln's end of another pipe closes, even when
//! kiln is killed.

use std::fs::File;
use std::io::{Read, Seek};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};

use crate::error::StepError;

/// slirp4netns's DNS forwarder inside the namespace (its fixed address plan).
pub const DNS_FORWARDER: &str = "10.0.2.3";

/// The build's user-mode network, started on first use and stopped when dropped.
#[derive(Default)]
pub struct UserNetwork {
    active: OnceLock<Result<Active, StepError>>,
}

struct Active {
    /// Keeps the namespace alive while the build runs.
    _netns: OwnedFd,
    /// `/proc/<kiln>/fd/<n>`: how runc joins the namespace.
    path: PathBuf,
    /// slirp4netns (`None` once handed over by [`UserNetwork::detach`]); its stdin is its
    /// exit pipe.
    child: Mutex<(Option<Child>, Option<ChildStdin>)>,
}

impl Drop for Active {
    fn drop(&mut self) {
        let (child, stdin) = &mut *self.child.lock().unwrap_or_else(|e| e.into_inner());
        // Closing the exit pipe stops slirp4netns; kill it too, so dropping never waits.
        drop(stdin.take());
        let Some(child) = child.as_mut() else { return };
        let _ = child.kill();
        // Its exit tears down the tap device, which waits for the kernel's RCU grace periods
        // (15-20 ms, measured): a thread of its own reaps it, off the build's path. Should kiln
        // exit first, the killed child is reparented and reaped by init.
        let pid = rustix::process::Pid::from_child(child);
        std::thread::spawn(move || {
            let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty());
        });
    }
}

impl UserNetwork {
    /// A network that starts nothing until [`UserNetwork::namespace`] is first called.
    pub fn new() -> UserNetwork {
        UserNetwork::default()
    }

    /// The path of the network namespace a step joins, starting slirp4netns the first time.
    pub fn namespace(&self) -> Result<&Path, StepError> {
        match self.active.get_or_init(start) {
            Ok(a) => Ok(&a.path),
            Err(e) => Err(e.clone()),
        }
    }

    /// Hands the running slirp4netns over to another process, for a network that must
    /// outlive this kiln (a detached `kiln run` container): returns its exit pipe, which
    /// stops slirp4netns once every copy of it is closed, and dropping this network no
    /// longer stops it. `None` when it was never started.
    pub fn detach(self) -> Option<OwnedFd> {
        let active = self.active.into_inner()?.ok()?;
        let (child, stdin) = &mut *active.child.lock().unwrap_or_else(|e| e.into_inner());
        // Once this kiln exits, init reaps it.
        drop(child.take());
        stdin.take().map(OwnedFd::from)
    }
}

fn find(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .chain(["/usr/bin", "/bin", "/usr/sbin"].iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A new network namespace, made on a short-lived thread (unsharing the network namespace
/// is per thread, so kiln's own threads stay in the host's).
fn new_netns() -> std::io::Result<OwnedFd> {
    std::thread::spawn(|| {
        // SAFETY: only the network namespace is unshared, on a thread of our own that ends
        // right after; the file descriptor table (the hazard `unshare_unsafe` warns about)
        // stays shared.
        unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }?;
        Ok(OwnedFd::from(File::open("/proc/thread-self/ns/net")?))
    })
    .join()
    .unwrap_or_else(|_| Err(std::io::Error::other("the namespace thread panicked")))
}

fn start() -> Result<Active, StepError> {
    let slirp = find("slirp4netns").ok_or_else(|| {
        StepError::new(
            "RUN steps need slirp4netns for network access, and it is not installed",
            "apt-get install slirp4netns (scripts/setup does), or build with --network=none",
        )
    })?;
    let netns = new_netns().map_err(|e| {
        StepError::new(
            format!("cannot create a network namespace for RUN steps: {e}"),
            "RUN needs root or a user namespace (rootless kiln re-executes itself in one)",
        )
    })?;
    let path = PathBuf::from(format!("/proc/{}/fd/{}", std::process::id(), netns.as_raw_fd()));
    let mut log = tempfile::tempfile().map_err(|e| StepError::new(format!("slirp4netns log: {e}"), "check TMPDIR"))?;
    let mut child = Command::new(&slirp)
        .args([
            "--configure",
            "--mtu=65520",
            "--disable-host-loopback",
            "--enable-sandbox",
            "--ready-fd=1",
            "--exit-fd=0",
            "--netns-type=path",
        ])
        .arg(&path)
        .arg("tap0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log.try_clone().map(Stdio::from).unwrap_or_else(|_| Stdio::null()))
        .spawn()
        .map_err(|e| {
            StepError::new(
                format!("cannot start {}: {e}", slirp.display()),
                "check the slirp4netns installation",
            )
        })?;
    let stdin = child.stdin.take();
    let mut ready = [0u8; 1];
    let got = child.stdout.take().map(|mut out| out.read(&mut ready));
    if !matches!(got, Some(Ok(1))) || ready[0] != b'1' {
        let _ = child.kill();
        let _ = child.wait();
        let mut text = String::new();
        let _ = log.rewind().and_then(|_| log.read_to_string(&mut text));
        let why = text
            .lines()
            .find(|l| l.contains("/dev/net/tun"))
            .or_else(|| text.lines().rfind(|l| !l.trim().is_empty()))
            .unwrap_or("no output");
        let hint = if why.contains("/dev/net/tun") {
            "slirp4netns opens /dev/net/tun, which must be readable and writable by the user running kiln (Debian's udev makes it 0666; as root: chmod 0666 /dev/net/tun), or build with --network=none"
        } else {
            "check that slirp4netns works here, or build with --network=none"
        };
        return Err(StepError::new(
            format!("slirp4netns could not connect the RUN network: {}", why.trim()),
            hint,
        ));
    }
    Ok(Active {
        _netns: netns,
        path,
        child: Mutex::new((Some(child), stdin)),
    })
}

/// `/etc/resolv.conf` for a step on the user-mode network: the host's, with nameservers on
/// the host's loopback (systemd-resolved, dnsmasq), which the step cannot reach, replaced by
/// slirp4netns's forwarder. Docker filters loopback nameservers out the same way.
pub fn resolv_conf(host: &str) -> String {
    let mut out = String::new();
    let mut forwarder = false;
    let mut servers = 0;
    for line in host.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some("nameserver") {
            let addr = words.next().unwrap_or_default();
            let ip = addr.split('%').next().unwrap_or_default().parse::<std::net::IpAddr>();
            let reachable = matches!(ip, Ok(ip) if !ip.is_loopback());
            if !reachable {
                if !forwarder {
                    out.push_str(&format!("nameserver {DNS_FORWARDER}\n"));
                    forwarder = true;
                    servers += 1;
                }
                continue;
            }
            servers += 1;
        }
        out.push_str(line);
        out.push('\n');
    }
    if servers == 0 {
        out.push_str(&format!("nameserver {DNS_FORWARDER}\n"));
    }
    out
}

/// Why a step may not use the host's network, and how to allow it.
pub fn host_not_allowed(what: &str) -> StepError {
    StepError::new(
        format!("{what} needs the network.host entitlement"),
        "pass --allow network.host to kiln build, as with docker buildx build, if this build may reach the host's services",
    )
}

/// `/etc/hosts` for a step in its own network namespace: loopback names only, as Docker
/// writes for a container (the host's own file would tell the step about the host).
pub const HOSTS: &str = "127.0.0.1\tlocalhost kiln\n::1\tlocalhost ip6-localhost ip6-loopback kiln\n";

/// Writes `resolv.conf` ([`resolv_conf`] of the host's) and `hosts` ([`HOSTS`]) into `dir`,
/// mode 0644, for a process on the user-mode network (a RUN step, a `kiln run` container)
/// to see as /etc/resolv.conf and /etc/hosts. Returns (file, its path under /etc) pairs.
pub fn write_name_files(dir: &Path) -> std::io::Result<[(PathBuf, &'static str); 2]> {
    use std::os::unix::fs::PermissionsExt;
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let files = [
        (dir.join("resolv.conf"), "/etc/resolv.conf", resolv_conf(&host)),
        (dir.join("hosts"), "/etc/hosts", HOSTS.to_string()),
    ];
    for (file, _, text) in &files {
        std::fs::write(file, text)?;
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644))?;
    }
    Ok(files.map(|(file, at, _)| (file, at)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_nameservers_become_the_forwarder() {
        assert_eq!(
            resolv_conf("# generated\nnameserver 127.0.0.53\noptions edns0\nsearch example.org\n"),
            "# generated\nnameserver 10.0.2.3\noptions edns0\nsearch example.org\n"
        );
        assert_eq!(
            resolv_conf("nameserver ::1\nnameserver 192.0.2.53\nnameserver 127.0.0.1\n"),
            "nameserver 10.0.2.3\nnameserver 192.0.2.53\n"
        );
        assert_eq!(resolv_conf("nameserver 192.0.2.53\n"), "nameserver 192.0.2.53\n");
        assert_eq!(resolv_conf(""), "nameserver 10.0.2.3\n");
    }
}
