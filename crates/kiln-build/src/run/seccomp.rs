//! Docker's default seccomp profile for RUN steps, as data.
//!
//! The rules below are the semantics of moby's `profiles/seccomp/default.json` (moby/moby at
//! 00f3d189e420d485e42d15fe494f96d272284e0e): an allow-list, everything else fails with
//! EPERM; calls that need a capability are allowed only when the step holds it; `clone`
//! may not create namespaces and `clone3` reports ENOSYS (so libc falls back to `clone`)
//! unless the step has CAP_SYS_ADMIN. [`profile`] resolves the conditions for the step's
//! capabilities and the host's architecture into the OCI runtime spec's `linux.seccomp`,
//! as dockerd does before it hands a spec to runc.

use serde::Serialize;

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Allow,
    /// Fail with this errno.
    Errno(u32),
}

/// A condition on one argument.
#[derive(Debug, Clone, Copy)]
struct ArgRule {
    index: u32,
    value: u64,
    op: &'static str,
}

/// When a rule applies (`includes`) or does not (`excludes`).
#[derive(Debug, Clone, Copy)]
struct Cond {
    caps: &'static [&'static str],
    arches: &'static [&'static str],
    min_kernel: Option<(u32, u32)>,
}

const ANY: Cond = Cond {
    caps: &[],
    arches: &[],
    min_kernel: None,
};

const fn caps(caps: &'static [&'static str]) -> Cond {
    Cond { caps, ..ANY }
}

const fn arches(arches: &'static [&'static str]) -> Cond {
    Cond { arches, ..ANY }
}

struct Rule {
    names: &'static [&'static str],
    action: Action,
    args: &'static [ArgRule],
    includes: Cond,
    excludes: Cond,
}

const fn allow(names: &'static [&'static str], includes: Cond) -> Rule {
    Rule {
        names,
        action: Action::Allow,
        args: &[],
        includes,
        excludes: ANY,
    }
}

/// A rule allowing `names` when argument `index` compares to `value` by `op`.
macro_rules! allow_arg {
    ($names:expr, $index:expr, $value:expr, $op:expr) => {
        Rule {
            names: $names,
            action: Action::Allow,
            args: &[ArgRule {
                index: $index,
                value: $value,
                op: $op,
            }],
            includes: ANY,
            excludes: ANY,
        }
    };
}

/// The namespace flags of clone(2) (CLONE_NEWNS | NEWUTS | NEWIPC | NEWUSER | NEWPID |
/// NEWNET | NEWCGROUP): `clone` is allowed only with none of them.
const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;

/// Calls every step may make.
const ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_time64",
    "futex_waitv",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];

/// The whole profile, in moby's order.
const RULES: &[Rule] = &[
    allow(ALLOWED, ANY),
    allow(
        &["process_vm_readv", "process_vm_writev", "ptrace"],
        Cond {
            min_kernel: Some((4, 8)),
            ..ANY
        },
    ),
    // Every socket family but AF_VSOCK (40).
    allow_arg!(&["socket"], 0, 40, "SCMP_CMP_NE"),
    // personality(2) only for PER_LINUX, PER_LINUX32, UNAME26 (and with PER_LINUX32), query.
    allow_arg!(&["personality"], 0, 0, "SCMP_CMP_EQ"),
    allow_arg!(&["personality"], 0, 8, "SCMP_CMP_EQ"),
    allow_arg!(&["personality"], 0, 131_072, "SCMP_CMP_EQ"),
    allow_arg!(&["personality"], 0, 131_080, "SCMP_CMP_EQ"),
    allow_arg!(&["personality"], 0, 4_294_967_295, "SCMP_CMP_EQ"),
    allow(&["sync_file_range2", "swapcontext"], arches(&["ppc64le"])),
    allow(
        &[
            "arm_fadvise64_64",
            "arm_sync_file_range",
            "sync_file_range2",
            "breakpoint",
            "cacheflush",
            "set_tls",
        ],
        arches(&["arm", "arm64"]),
    ),
    allow(&["arch_prctl"], arches(&["amd64", "x32"])),
    allow(&["modify_ldt"], arches(&["amd64", "x32", "x86"])),
    allow(
        &["s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"],
        arches(&["s390", "s390x"]),
    ),
    allow(&["riscv_flush_icache"], arches(&["riscv64"])),
    allow(&["open_by_handle_at"], caps(&["CAP_DAC_READ_SEARCH"])),
    allow(
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
        caps(&["CAP_SYS_ADMIN"]),
    ),
    Rule {
        names: &["clone"],
        action: Action::Allow,
        args: &[ArgRule {
            index: 0,
            value: CLONE_NAMESPACE_FLAGS,
            op: "SCMP_CMP_MASKED_EQ",
        }],
        includes: ANY,
        excludes: Cond {
            caps: &["CAP_SYS_ADMIN"],
            arches: &["s390", "s390x"],
            min_kernel: None,
        },
    },
    // s390 passes clone's flags second.
    Rule {
        names: &["clone"],
        action: Action::Allow,
        args: &[ArgRule {
            index: 1,
            value: CLONE_NAMESPACE_FLAGS,
            op: "SCMP_CMP_MASKED_EQ",
        }],
        includes: arches(&["s390", "s390x"]),
        excludes: caps(&["CAP_SYS_ADMIN"]),
    },
    // ENOSYS, so glibc falls back to clone(2), whose flags the rule above can check.
    Rule {
        names: &["clone3"],
        action: Action::Errno(38),
        args: &[],
        includes: ANY,
        excludes: caps(&["CAP_SYS_ADMIN"]),
    },
    allow(&["reboot"], caps(&["CAP_SYS_BOOT"])),
    allow(&["chroot"], caps(&["CAP_SYS_CHROOT"])),
    allow(
        &["delete_module", "init_module", "finit_module"],
        caps(&["CAP_SYS_MODULE"]),
    ),
    allow(&["acct"], caps(&["CAP_SYS_PACCT"])),
    allow(
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
        caps(&["CAP_SYS_PTRACE"]),
    ),
    allow(&["iopl", "ioperm"], caps(&["CAP_SYS_RAWIO"])),
    allow(
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
        caps(&["CAP_SYS_TIME"]),
    ),
    allow(&["vhangup"], caps(&["CAP_SYS_TTY_CONFIG"])),
    allow(
        &["get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"],
        caps(&["CAP_SYS_NICE"]),
    ),
    allow(&["syslog"], caps(&["CAP_SYSLOG"])),
    allow(&["bpf"], caps(&["CAP_BPF"])),
    allow(&["perf_event_open"], caps(&["CAP_PERFMON"])),
];

/// `linux.seccomp` of the OCI runtime spec.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Seccomp {
    /// What a call no rule allows gets.
    pub default_action: String,
    /// Its errno (EPERM).
    pub default_errno_ret: u32,
    /// The native architecture and the ones its kernel also runs (32-bit on 64-bit).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub architectures: Vec<String>,
    /// The rules.
    pub syscalls: Vec<Syscall>,
}

/// One rule in the spec.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Syscall {
    /// Calls it covers.
    pub names: Vec<String>,
    /// `SCMP_ACT_ALLOW` or `SCMP_ACT_ERRNO`.
    pub action: String,
    /// The errno for `SCMP_ACT_ERRNO`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errno_ret: Option<u32>,
    /// Argument conditions, all of which must hold.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<SyscallArg>,
}

/// One argument condition.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyscallArg {
    /// Argument position.
    pub index: u32,
    /// The value (the mask, for `SCMP_CMP_MASKED_EQ`).
    pub value: u64,
    /// The second value (what the masked argument must equal).
    pub value_two: u64,
    /// Comparison.
    pub op: String,
}

/// Go's name for the architecture kiln runs on, which moby's conditions use.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// moby's archMap: the native architecture and the compat ones its kernel also runs. x32
/// only where the kernel runs x32 programs: most kernels are built without it, and the
/// x32 half of the filter is what makes runc's compile of it slow (about 8 ms of each
/// step's 13 ms for seccomp). Without it, an x32 call hits the filter's bad-arch action,
/// on a kernel that would refuse it anyway.
fn architectures(arch: &str, x32: bool) -> Vec<String> {
    let list: &[&str] = match arch {
        "amd64" if x32 => &["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "amd64" => &["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
        "arm64" => &["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
        "s390x" => &["SCMP_ARCH_S390X", "SCMP_ARCH_S390"],
        "riscv64" => &["SCMP_ARCH_RISCV64"],
        _ => &[],
    };
    list.iter().map(|s| s.to_string()).collect()
}

/// True when the running kernel executes x32 system calls (`CONFIG_X86_X32_ABI`, not
/// disabled at boot): probed once with x32's getpid, which other kernels refuse with ENOSYS.
fn kernel_runs_x32() -> bool {
    static X32: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *X32.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            const X32_SYSCALL_BIT: libc::c_long = 0x4000_0000;
            // SAFETY: getpid takes no arguments and changes nothing.
            unsafe { libc::syscall(X32_SYSCALL_BIT | libc::SYS_getpid) >= 0 }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

/// The running kernel's (major, minor).
fn kernel_version() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse().ok());
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

fn applies(rule: &Rule, step_caps: &[&str], arch: &str, kernel: (u32, u32)) -> bool {
    let inc = &rule.includes;
    let exc = &rule.excludes;
    (inc.arches.is_empty() || inc.arches.contains(&arch))
        && inc.caps.iter().all(|c| step_caps.contains(c))
        && inc.min_kernel.is_none_or(|min| kernel >= min)
        && !exc.arches.contains(&arch)
        && !exc.caps.iter().any(|c| step_caps.contains(c))
}

/// Docker's default profile for a step holding `step_caps`, on this host.
pub fn profile(step_caps: &[&str]) -> Seccomp {
    let arch = go_arch();
    profile_for(step_caps, arch, kernel_version(), arch == "amd64" && kernel_runs_x32())
}

fn profile_for(step_caps: &[&str], arch: &str, kernel: (u32, u32), x32: bool) -> Seccomp {
    let syscalls = RULES
        .iter()
        .filter(|r| applies(r, step_caps, arch, kernel))
        .map(|r| Syscall {
            names: r.names.iter().map(|s| s.to_string()).collect(),
            action: match r.action {
                Action::Allow => "SCMP_ACT_ALLOW".into(),
                Action::Errno(_) => "SCMP_ACT_ERRNO".into(),
            },
            errno_ret: match r.action {
                Action::Allow => None,
                Action::Errno(n) => Some(n),
            },
            args: r
                .args
                .iter()
                .map(|a| SyscallArg {
                    index: a.index,
                    value: a.value,
                    value_two: 0,
                    op: a.op.into(),
                })
                .collect(),
        })
        .collect();
    Seccomp {
        default_action: "SCMP_ACT_ERRNO".into(),
        default_errno_ret: 1,
        architectures: architectures(arch, x32),
        syscalls,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::spec::DEFAULT_CAPS;

    fn names(p: &Seccomp, action: &str) -> Vec<String> {
        p.syscalls
            .iter()
            .filter(|s| s.action == action)
            .flat_map(|s| s.names.clone())
            .collect()
    }

    #[test]
    fn default_caps_on_amd64() {
        let p = profile_for(DEFAULT_CAPS, "amd64", (6, 1), true);
        let allowed = names(&p, "SCMP_ACT_ALLOW");
        for call in [
            "read",
            "execve",
            "chroot",
            "arch_prctl",
            "modify_ldt",
            "ptrace",
            "socket",
            "clone",
        ] {
            assert!(allowed.iter().any(|n| n == call), "{call} must be allowed");
        }
        for call in [
            "mount",
            "unshare",
            "setns",
            "bpf",
            "reboot",
            "init_module",
            "open_by_handle_at",
            "arm_fadvise64_64",
        ] {
            assert!(!allowed.iter().any(|n| n == call), "{call} must be refused");
        }
        // clone only without namespace flags; clone3 reports ENOSYS.
        let clone = p.syscalls.iter().find(|s| s.names == ["clone"]).expect("a clone rule");
        assert_eq!(clone.args[0].index, 0);
        assert_eq!(clone.args[0].op, "SCMP_CMP_MASKED_EQ");
        assert_eq!(names(&p, "SCMP_ACT_ERRNO"), ["clone3"]);
        assert_eq!(p.architectures, ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]);
        assert_eq!(p.default_errno_ret, 1);
    }

    #[test]
    fn conditions_follow_caps_arch_and_kernel() {
        let admin = profile_for(&["CAP_SYS_ADMIN"], "amd64", (6, 1), false);
        let allowed = names(&admin, "SCMP_ACT_ALLOW");
        assert!(allowed.iter().any(|n| n == "mount"));
        assert!(!allowed.iter().any(|n| n == "chroot"));
        assert!(names(&admin, "SCMP_ACT_ERRNO").is_empty());
        assert_eq!(admin.architectures, ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]);
        let s390 = profile_for(&[], "s390x", (6, 1), false);
        let clone: Vec<_> = s390.syscalls.iter().filter(|s| s.names == ["clone"]).collect();
        assert_eq!(clone.len(), 1);
        assert_eq!(clone[0].args[0].index, 1);
        let old = profile_for(&[], "arm64", (4, 4), false);
        let allowed = names(&old, "SCMP_ACT_ALLOW");
        assert!(!allowed.iter().any(|n| n == "ptrace"));
        assert!(allowed.iter().any(|n| n == "set_tls"));
    }

    #[test]
    fn serialises_as_the_runtime_spec_says() {
        let json = serde_json::to_value(profile_for(DEFAULT_CAPS, "amd64", (6, 1), true)).unwrap();
        assert_eq!(json["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(json["defaultErrnoRet"], 1);
        let socket = json["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["names"] == serde_json::json!(["socket"]))
            .unwrap();
        assert_eq!(
            socket["args"],
            serde_json::json!([{"index": 0, "value": 40, "valueTwo": 0, "op": "SCMP_CMP_NE"}])
        );
    }
}
