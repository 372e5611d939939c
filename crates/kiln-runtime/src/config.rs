//! The OCI runtime config of a container: the same writer RUN steps use
//! (`kiln_build::run::spec`), with kiln run's immutable defaults laid over it.

use std::path::Path;

use kiln_build::run::exec::dedupe_env;
use kiln_build::run::spec::{self, Capabilities, Mount, Spec, User};
use kiln_oci::image::ImageConfig;

use crate::error::RuntimeError;
use crate::identity::Identity;
use crate::options::{Network, RunOptions};

/// Debian's default PATH, for images that set none (as docker does).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The paths a container gets a tmpfs at: /tmp, every VOLUME and every `--tmpfs`, sorted and
/// without duplicates, so nothing the program writes lands in (or fails on) the rootfs.
pub fn tmpfs_targets(config: &ImageConfig, extra: &[String]) -> Vec<String> {
    let mut out: Vec<String> = vec!["/tmp".to_string()];
    if let Some(v) = &config.config.volumes {
        out.extend(v.keys().cloned());
    }
    out.extend(extra.iter().cloned());
    let mut out: Vec<String> = out
        .into_iter()
        .map(|p| {
            let t = p.trim_end_matches('/');
            if t.is_empty() { "/".into() } else { t.to_string() }
        })
        .filter(|p| p.starts_with('/') && p != "/")
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The argv: ENTRYPOINT (or `--entrypoint`) followed by the arguments given, else CMD.
pub fn command(config: &ImageConfig, opts: &RunOptions, reference: &str) -> Result<Vec<String>, RuntimeError> {
    let entry = opts
        .entrypoint
        .clone()
        .or_else(|| config.config.entrypoint.clone())
        .unwrap_or_default();
    let args = if opts.args.is_empty() && opts.entrypoint.is_none() {
        config.config.cmd.clone().unwrap_or_default()
    } else {
        opts.args.clone()
    };
    let argv: Vec<String> = entry.into_iter().chain(args).collect();
    if argv.first().is_none_or(|a| a.is_empty()) {
        return Err(RuntimeError::input(
            format!("image {reference} has no ENTRYPOINT or CMD, and no command was given"),
            format!("give one after the image: kiln run {reference} COMMAND"),
        ));
    }
    Ok(argv)
}

/// The environment: the image's, then `-e`, with HOME and PATH filled in when missing.
pub fn environment(config: &ImageConfig, opts: &RunOptions, id: &Identity) -> Vec<String> {
    let mut env = config.config.env.clone().unwrap_or_default();
    for e in &opts.env {
        if e.contains('=') {
            env.push(e.clone());
        } else if let Ok(v) = std::env::var(e) {
            env.push(format!("{e}={v}"));
        }
    }
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, format!("PATH={DEFAULT_PATH}"));
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.insert(0, format!("HOME={}", id.home));
    }
    dedupe_env(&env)
}

/// A tmpfs mount the container's user can write to: owned by that user (runc gives a tmpfs
/// over an existing directory that directory's mode, so ownership is what makes it writable).
pub fn tmpfs(target: &str, id: &Identity) -> Mount {
    let mut options: Vec<String> = vec![
        "nosuid".into(),
        "nodev".into(),
        "mode=1777".into(),
        "size=65536k".into(),
    ];
    if target != "/tmp" {
        options.push(format!("uid={}", id.uid));
        options.push(format!("gid={}", id.gid));
    }
    Mount {
        destination: target.to_string(),
        kind: "tmpfs".into(),
        source: "tmpfs".into(),
        options,
    }
}

/// Everything the spec is made from.
pub struct SpecInputs<'a> {
    /// The mounted rootfs.
    pub rootfs: &'a Path,
    /// The image config.
    pub config: &'a ImageConfig,
    /// The process identity.
    pub identity: &'a Identity,
    /// The flags.
    pub opts: &'a RunOptions,
    /// argv.
    pub argv: Vec<String>,
    /// The hostname (the container's name).
    pub hostname: String,
    /// For `--network private`: the user-mode network namespace to join, and the
    /// name-service files that go with it, each with its path under /etc.
    pub user_network: Option<(&'a str, &'a [(std::path::PathBuf, &'static str)])>,
}

/// The container's config.json: read-only rootfs (unless `--writable`), the image's user, no
/// capabilities, no_new_privileges, tmpfs at /tmp and every VOLUME, binds from `-v`.
pub fn build(inp: &SpecInputs<'_>) -> Spec {
    let opts = inp.opts;
    let mut mounts: Vec<Mount> = Vec::new();
    if opts.network == Network::Host {
        for f in ["/etc/resolv.conf", "/etc/hosts"] {
            if Path::new(f).exists() {
                mounts.push(Mount::bind(f, f, false));
            }
        }
    }
    for (file, at) in inp.user_network.map(|(_, files)| files).unwrap_or_default() {
        mounts.push(Mount::bind(&file.display().to_string(), at, false));
    }
    mounts.extend(
        tmpfs_targets(inp.config, &opts.tmpfs)
            .iter()
            .map(|t| tmpfs(t, inp.identity)),
    );
    for b in &opts.binds {
        mounts.push(Mount::bind(&b.source.display().to_string(), &b.target, !b.readonly));
    }
    let cwd = opts
        .workdir
        .clone()
        .or_else(|| inp.config.config.working_dir.clone())
        .filter(|w| w.starts_with('/'))
        .unwrap_or_else(|| "/".into());
    let mut spec = spec::build_spec(
        &inp.rootfs.display().to_string(),
        inp.argv.clone(),
        environment(inp.config, opts, inp.identity),
        cwd,
        User {
            uid: inp.identity.uid,
            gid: inp.identity.gid,
            additional_gids: inp.identity.groups.clone(),
            umask: 0o022,
        },
        mounts,
        &match (opts.network, inp.user_network) {
            (Network::Host, _) => spec::NetNs::Host,
            (_, Some((ns, _))) => spec::NetNs::Join(ns.to_string()),
            _ => spec::NetNs::New,
        },
    );
    spec.hostname = inp.hostname.clone();
    spec.root.readonly = !opts.writable;
    // None by default; `--cap-add` ones in every set, ambient included, so a non-root
    // process keeps them across execve (no_new_privileges forbids gaining any other way).
    let caps = opts.cap_add.clone();
    spec.process.capabilities = Capabilities {
        bounding: caps.clone(),
        effective: caps.clone(),
        permitted: caps.clone(),
        inheritable: caps.clone(),
        ambient: caps.clone(),
    };
    spec.process.no_new_privileges = true;
    // Docker's profile for what the container holds: only the granted capabilities' calls.
    let held: Vec<&str> = caps.iter().map(String::as_str).collect();
    spec.linux.seccomp = kiln_build::run::seccomp::profile(&held);
    // In a network namespace of its own, any user may listen on any port, as Docker (20.10
    // and later) and Podman set it: the container's port 80 is not the host's, and a
    // non-root server needs no capability for it.
    if opts.network != Network::Host {
        spec.linux
            .sysctl
            .insert("net.ipv4.ip_unprivileged_port_start".into(), "0".into());
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_oci::image::Empty;

    #[test]
    fn tmpfs_at_tmp_and_volumes() {
        let mut c = ImageConfig::default();
        c.config.volumes = Some([("/data/".to_string(), Empty {}), ("/tmp".to_string(), Empty {})].into());
        assert_eq!(
            tmpfs_targets(&c, &["/run".into(), "rel".into()]),
            vec!["/data", "/run", "/tmp"]
        );
    }

    #[test]
    fn args_replace_cmd_and_keep_entrypoint() {
        let mut c = ImageConfig::default();
        c.config.entrypoint = Some(vec!["/bin/app".into()]);
        c.config.cmd = Some(vec!["--serve".into()]);
        let mut o = RunOptions::default();
        assert_eq!(command(&c, &o, "x").unwrap(), vec!["/bin/app", "--serve"]);
        o.args = vec!["--version".into()];
        assert_eq!(command(&c, &o, "x").unwrap(), vec!["/bin/app", "--version"]);
        assert!(command(&ImageConfig::default(), &RunOptions::default(), "x").is_err());
    }
}
