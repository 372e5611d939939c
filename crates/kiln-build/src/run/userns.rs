//! Rootless builds: kiln re-executes itself inside a user and mount namespace where it is
//! root, so overlay, tmpfs and chown work without privileges on the host.
//!
//! With a range in /etc/subuid and /etc/subgid (and newuidmap/newgidmap), the namespace maps
//! the caller to root and the range to 1..65536, so images with other owners build as they
//! do as root. Without one, only a single id exists and steps that create files for other
//! users fail: kiln says so before building.

use std::path::{Path, PathBuf};

/// Set in the environment of the re-executed kiln, so it does not re-execute again.
pub const MARKER: &str = "KILN_IN_USERNS";

/// True when this process runs in a user namespace other than the initial one.
pub fn in_user_namespace() -> bool {
    match std::fs::read_to_string("/proc/self/uid_map") {
        Ok(map) => map.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"],
        Err(_) => false,
    }
}

fn find(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .chain(["/usr/bin", "/bin", "/usr/sbin"].iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The caller's login name: `$USER` when it is set, else the password database's entry for
/// `uid` (getpwuid, so NSS sources such as LDAP count), else the uid as a number (which
/// /etc/subuid may also use).
fn user_name(uid: u32) -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(|| passwd_name(uid))
        .unwrap_or_else(|| uid.to_string())
}

/// getpwuid_r(3): the name of `uid`, if the password database has one.
fn passwd_name(uid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: an all-zero passwd is a valid value (null pointers, zero ids); getpwuid_r only
    // writes into `pwd` and `buf` (whose length we pass), and sets `result` to either null
    // or `&mut pwd`. pw_name then points into `buf`, which outlives its use below.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result);
        if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
            return None;
        }
        let name = std::ffi::CStr::from_ptr(pwd.pw_name).to_string_lossy().into_owned();
        (!name.is_empty()).then_some(name)
    }
}

fn has_subid_range(file: &Path, user: &str, uid: u32) -> bool {
    std::fs::read_to_string(file)
        .map(|t| {
            t.lines().any(|l| {
                let f: Vec<&str> = l.split(':').collect();
                f.len() == 3
                    && (f[0] == user || f[0] == uid.to_string())
                    && f[2].parse::<u64>().is_ok_and(|n| n >= 65535)
            })
        })
        .unwrap_or(false)
}

/// How to enter the namespace, or why it cannot be done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Already root (or already inside): nothing to do.
    NotNeeded,
    /// Run `unshare` with these arguments before kiln's own; `note` explains any limit.
    Reexec {
        /// The unshare binary.
        unshare: PathBuf,
        /// Its arguments.
        args: Vec<String>,
        /// A warning to print (single-id mapping), if any.
        note: Option<String>,
    },
    /// No way to get a namespace; RUN steps will fail with this reason.
    Unavailable(String),
}

/// Decides how a non-root kiln gets a user namespace.
pub fn plan() -> Plan {
    let euid = rustix::process::geteuid();
    if euid.is_root() || std::env::var_os(MARKER).is_some() {
        return Plan::NotNeeded;
    }
    let Some(unshare) = find("unshare") else {
        return Plan::Unavailable("`unshare` (util-linux) is not installed".into());
    };
    let uid = euid.as_raw();
    let user = user_name(uid);
    let ranged = find("newuidmap").is_some()
        && find("newgidmap").is_some()
        && has_subid_range(Path::new("/etc/subuid"), &user, uid)
        && has_subid_range(Path::new("/etc/subgid"), &user, uid);
    let mut args: Vec<String> = vec![
        "--user".into(),
        "--mount".into(),
        "--propagation".into(),
        "private".into(),
    ];
    let note = if ranged {
        args.push("--map-auto".into());
        args.push("--map-root-user".into());
        None
    } else {
        args.push("--map-root-user".into());
        Some(format!(
            "no /etc/subuid and /etc/subgid range for {user} (or newuidmap is missing): RUN steps see only uid and gid 0, \
             so files for other users cannot be created (hint: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}, and apt-get install uidmap)"
        ))
    };
    Plan::Reexec { unshare, args, note }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_lookup_matches_etc_passwd() {
        assert_eq!(passwd_name(0).as_deref(), Some("root"));
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
        for line in passwd.lines().take(5) {
            let f: Vec<&str> = line.split(':').collect();
            let uid: u32 = f[2].parse().unwrap();
            let first = passwd.lines().find(|l| l.split(':').nth(2) == Some(f[2])).unwrap();
            assert_eq!(passwd_name(uid).as_deref(), first.split(':').next(), "uid {uid}");
        }
        assert_eq!(passwd_name(4_000_000_000), None);
    }
}
