//! Configuration checks on the image config and the final filesystem's metadata.
//!
//! Rule ids are `KSC###` (kiln scan config), stable for `.kilnignore`:
//!
//! | id | what |
//! |---|---|
//! | KSC001 | no USER: the container runs as root |
//! | KSC002 | USER is root (`root`, `0`, `0:0`) |
//! | KSC003 | a secret-looking Env variable has a value baked in |
//! | KSC004 | a privileged port (< 1024) is exposed |
//! | KSC005 | a world-writable file or directory in a PATH directory |
//! | KSC006 | a setuid or setgid file |
//! | KSC007 | an image labelled distroless contains a shell or package manager |

use crate::{MisconfigFinding, Severity};
use kiln_oci::image::ImageConfig;
use kiln_oci::walk::{Kind, Tree};

/// Every rule: id, severity, title (for docs and SARIF).
pub const RULES: &[(&str, Severity, &str)] = &[
    ("KSC001", Severity::High, "No USER: the image runs as root"),
    ("KSC002", Severity::High, "USER is root"),
    ("KSC003", Severity::High, "Secret baked into an environment variable"),
    ("KSC004", Severity::Low, "Privileged port exposed"),
    ("KSC005", Severity::High, "World-writable file in a PATH directory"),
    ("KSC006", Severity::Medium, "setuid or setgid file"),
    (
        "KSC007",
        Severity::High,
        "Shell or package manager in a distroless image",
    ),
];

fn sev(id: &str) -> Severity {
    RULES.iter().find(|r| r.0 == id).map_or(Severity::Unknown, |r| r.1)
}

fn finding(id: &'static str, location: impl Into<String>, message: impl Into<String>) -> MisconfigFinding {
    MisconfigFinding {
        id,
        severity: sev(id),
        message: message.into(),
        location: location.into(),
    }
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const SECRET_WORDS: &[&str] = &[
    "PASSWORD",
    "PASSWD",
    "SECRET",
    "TOKEN",
    "API_KEY",
    "APIKEY",
    "ACCESS_KEY",
    "PRIVATE_KEY",
    "CREDENTIAL",
];

const SHELLS: &[&str] = &["sh", "bash", "ash", "dash", "zsh", "ksh", "busybox"];
const PACKAGE_MANAGERS: &[&str] = &[
    "apt", "apt-get", "dpkg", "apk", "yum", "dnf", "microdnf", "rpm", "pip", "pip3", "npm", "gem",
];

/// Runs every check.
pub fn check(config: &ImageConfig, fs: &Tree) -> Vec<MisconfigFinding> {
    let mut out = vec![];
    let c = &config.config;
    let user = c.user.as_deref().unwrap_or("").trim();
    if user.is_empty() {
        out.push(finding(
            "KSC001",
            "config.User",
            "the image runs as root: no USER is set (add `USER 65532` or another non-root uid)",
        ));
    } else {
        let name = user.split(':').next().unwrap_or(user);
        if name == "root" || name == "0" {
            out.push(finding(
                "KSC002",
                "config.User",
                format!("the image runs as root: USER is {user:?} (use a non-root uid)"),
            ));
        }
    }
    for e in c.env.iter().flatten() {
        let Some((k, v)) = e.split_once('=') else { continue };
        let up = k.to_ascii_uppercase();
        if !v.is_empty()
            && SECRET_WORDS.iter().any(|w| up.contains(w))
            && !up.ends_with("_FILE")
            && !up.ends_with("_PATH")
        {
            out.push(finding(
                "KSC003",
                format!("config.Env.{k}"),
                format!(
                    "environment variable {k} holds a secret-looking value that every container and `inspect` can read (pass it at run time, or mount it as a secret file)"
                ),
            ));
        }
    }
    for p in c.exposed_ports.iter().flat_map(|m| m.keys()) {
        let num = p.split('/').next().unwrap_or(p);
        if let Ok(n) = num.parse::<u32>()
            && n < 1024
        {
            out.push(finding(
                "KSC004",
                format!("config.ExposedPorts.{p}"),
                format!("port {p} is privileged (< 1024): a non-root process cannot bind it without extra capabilities; listen on a port >= 1024"),
            ));
        }
    }
    let path_var = c
        .env
        .iter()
        .flatten()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    let path_dirs: Vec<&str> = path_var
        .split(':')
        .filter(|d| d.starts_with('/'))
        .map(|d| if d.len() > 1 { d.trim_end_matches('/') } else { d })
        .collect();
    let in_path = |p: &str| {
        p.rsplit_once('/')
            .is_some_and(|(dir, _)| path_dirs.contains(&if dir.is_empty() { "/" } else { dir }))
    };
    for (p, node) in fs.iter() {
        let f = &node.meta;
        let ww = f.mode & 0o002 != 0;
        if ww && f.kind == Kind::File && in_path(p) {
            out.push(finding(
                "KSC005",
                p,
                format!("{p} is world-writable (mode {:04o}) in a PATH directory: any user can replace a command (chmod o-w)", f.mode & 0o7777),
            ));
        }
        if ww && f.kind == Kind::Dir && f.mode & 0o1000 == 0 && path_dirs.contains(&p) {
            out.push(finding(
                "KSC005",
                p,
                format!("PATH directory {p} is world-writable without the sticky bit (mode {:04o}): any user can plant commands (chmod o-w)", f.mode & 0o7777),
            ));
        }
        if f.kind == Kind::File && f.mode & 0o6000 != 0 {
            let what = if f.mode & 0o4000 != 0 { "setuid" } else { "setgid" };
            out.push(finding(
                "KSC006",
                p,
                format!("{p} is {what} (mode {:04o}): a way to gain privileges; drop the bit unless the image needs it (chmod u-s,g-s)", f.mode & 0o7777),
            ));
        }
    }
    let distroless =
        c.labels.iter().flatten().any(|(k, v)| {
            k.to_ascii_lowercase().contains("distroless") || v.to_ascii_lowercase().contains("distroless")
        });
    if distroless {
        let mut dirs = path_dirs.clone();
        for d in ["/bin", "/sbin", "/usr/bin", "/usr/sbin", "/usr/local/bin"] {
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
        for d in dirs {
            for name in SHELLS.iter().chain(PACKAGE_MANAGERS) {
                let p = format!("{d}/{name}");
                if let Some(n) = fs.get(&p)
                    && n.meta.kind != Kind::Dir
                {
                    let what = if SHELLS.contains(name) {
                        "a shell"
                    } else {
                        "a package manager"
                    };
                    out.push(finding(
                        "KSC007",
                        p.clone(),
                        format!(
                            "the image is labelled distroless but contains {what}, {p}: remove it or drop the label"
                        ),
                    ));
                }
            }
        }
    }
    out
}
