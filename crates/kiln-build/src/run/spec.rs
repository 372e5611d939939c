//! The OCI runtime configuration (config.json) for a RUN step.
//!
//! Our own serde model rather than a generic one: a RUN step needs a small, fixed subset,
//! and owning it keeps the JSON stable and the defaults visible in one place (Docker's
//! default capability set, masked paths, the minimal /proc, /sys and /dev).

use serde::Serialize;

/// config.json.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    /// Runtime spec version.
    pub oci_version: String,
    /// The process to run.
    pub process: Process,
    /// Root filesystem.
    pub root: Root,
    /// Hostname inside the step (fixed, so nothing host-specific leaks into files).
    pub hostname: String,
    /// Mounts in order.
    pub mounts: Vec<Mount>,
    /// Linux specifics.
    pub linux: Linux,
}

/// The step's process.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Process {
    /// Never a terminal: output is captured.
    pub terminal: bool,
    /// uid/gid.
    pub user: User,
    /// argv.
    pub args: Vec<String>,
    /// Environment.
    pub env: Vec<String>,
    /// Working directory.
    pub cwd: String,
    /// Capabilities.
    pub capabilities: Capabilities,
    /// Resource limits.
    pub rlimits: Vec<Rlimit>,
    /// `no_new_privileges`: on, so nothing a step runs (setuid binaries, file capabilities)
    /// gains privileges beyond the step's own, as `docker run --security-opt
    /// no-new-privileges` and `kiln run` set it.
    pub no_new_privileges: bool,
}

/// Process identity.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// uid.
    pub uid: u32,
    /// gid.
    pub gid: u32,
    /// Supplementary groups.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub additional_gids: Vec<u32>,
    /// The step's umask: Docker's 022, never the builder's own (runc would pass kiln's on).
    pub umask: u32,
}

/// Capability sets.
#[derive(Debug, Clone, Serialize)]
pub struct Capabilities {
    /// Bounding set.
    pub bounding: Vec<String>,
    /// Effective set.
    pub effective: Vec<String>,
    /// Permitted set.
    pub permitted: Vec<String>,
    /// Inheritable set: with the ambient set, what a non-root process keeps across
    /// `execve` (`kiln run --cap-add`); empty for RUN steps, and then left out.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inheritable: Vec<String>,
    /// Ambient set (see `inheritable`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ambient: Vec<String>,
}

/// One rlimit.
#[derive(Debug, Clone, Serialize)]
pub struct Rlimit {
    /// e.g. RLIMIT_NOFILE.
    #[serde(rename = "type")]
    pub kind: String,
    /// Hard limit.
    pub hard: u64,
    /// Soft limit.
    pub soft: u64,
}

/// Root filesystem.
#[derive(Debug, Clone, Serialize)]
pub struct Root {
    /// Absolute path of the (overlay) rootfs.
    pub path: String,
    /// Always writable: the upper dir is the step's layer.
    pub readonly: bool,
}

/// A mount.
#[derive(Debug, Clone, Serialize)]
pub struct Mount {
    /// Path in the container.
    pub destination: String,
    /// Filesystem type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Source.
    pub source: String,
    /// Options.
    pub options: Vec<String>,
}

impl Mount {
    /// A bind mount, read-only unless `rw`.
    pub fn bind(source: &str, destination: &str, rw: bool) -> Mount {
        let mut options = vec!["rbind".to_string(), "nosuid".to_string(), "nodev".to_string()];
        options.push(if rw { "rw".into() } else { "ro".into() });
        Mount {
            destination: destination.into(),
            kind: "bind".into(),
            source: source.into(),
            options,
        }
    }

    fn fs(destination: &str, kind: &str, source: &str, options: &[&str]) -> Mount {
        Mount {
            destination: destination.into(),
            kind: kind.into(),
            source: source.into(),
            options: options.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// Linux section.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Linux {
    /// Namespaces to create.
    pub namespaces: Vec<Namespace>,
    /// Paths hidden from the step.
    pub masked_paths: Vec<String>,
    /// Paths made read-only.
    pub readonly_paths: Vec<String>,
    /// Docker's default seccomp profile.
    pub seccomp: super::seccomp::Seccomp,
    /// Namespaced sysctls to set (`kiln run`'s own network namespace); none for RUN steps,
    /// and then left out.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub sysctl: std::collections::BTreeMap<String, String>,
}

/// A namespace.
#[derive(Debug, Clone, Serialize)]
pub struct Namespace {
    /// Namespace type.
    #[serde(rename = "type")]
    pub kind: String,
    /// An existing namespace to join instead of creating one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// The network namespace of a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetNs {
    /// The host's (`--network=host`).
    Host,
    /// A new one with only loopback (`--network=none`).
    New,
    /// The build's user-mode network namespace at this path.
    Join(String),
}

/// runc's default masked paths (`runc spec`), plus the two moby added since
/// (`/proc/interrupts`, `/sys/devices/virtual/powercap`): bound to /dev/null or an empty
/// read-only tmpfs, so the step cannot read kernel memory, keys, timers or power readings.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// runc's default read-only paths: the kernel's /proc control files.
pub const READONLY_PATHS: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// Docker's default capability set for containers, which `docker build` RUN steps get.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The fixed mounts every step gets: a minimal /proc, /dev, /sys.
pub fn base_mounts(own_network_namespace: bool) -> Vec<Mount> {
    vec![
        Mount::fs("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        Mount::fs(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        Mount::fs(
            "/dev/pts",
            "devpts",
            "devpts",
            &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
        ),
        Mount::fs(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        Mount::fs("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"]),
        // sysfs can only be mounted by the owner of the network namespace; in a user
        // namespace sharing the host's network, the host's /sys is bound read-only instead,
        // as rootless runtimes do.
        if super::userns::in_user_namespace() && !own_network_namespace {
            Mount::bind("/sys", "/sys", false)
        } else {
            Mount::fs("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", "ro"])
        },
    ]
}

/// Builds the spec for a step.
#[allow(clippy::too_many_arguments)]
pub fn build_spec(
    rootfs: &str,
    args: Vec<String>,
    env: Vec<String>,
    cwd: String,
    user: User,
    extra_mounts: Vec<Mount>,
    net: &NetNs,
) -> Spec {
    let caps: Vec<String> = DEFAULT_CAPS.iter().map(|s| s.to_string()).collect();
    let mut mounts = base_mounts(*net != NetNs::Host);
    mounts.extend(extra_mounts);
    let mut namespaces: Vec<Namespace> = ["pid", "ipc", "uts", "mount"]
        .iter()
        .map(|k| Namespace {
            kind: (*k).into(),
            path: None,
        })
        .collect();
    match net {
        NetNs::Host => {}
        NetNs::New => namespaces.push(Namespace {
            kind: "network".into(),
            path: None,
        }),
        NetNs::Join(path) => namespaces.push(Namespace {
            kind: "network".into(),
            path: Some(path.clone()),
        }),
    }
    Spec {
        oci_version: "1.0.2".into(),
        process: Process {
            terminal: false,
            user,
            args,
            env,
            cwd,
            capabilities: Capabilities {
                bounding: caps.clone(),
                effective: caps.clone(),
                permitted: caps,
                inheritable: vec![],
                ambient: vec![],
            },
            // Inherited from kiln: raising limits may not be permitted where kiln runs.
            rlimits: vec![],
            no_new_privileges: true,
        },
        root: Root {
            path: rootfs.into(),
            readonly: false,
        },
        hostname: "kiln".into(),
        mounts,
        linux: Linux {
            namespaces,
            masked_paths: MASKED_PATHS.iter().map(|s| s.to_string()).collect(),
            readonly_paths: READONLY_PATHS.iter().map(|s| s.to_string()).collect(),
            seccomp: super::seccomp::profile(DEFAULT_CAPS),
            sysctl: Default::default(),
        },
    }
}
