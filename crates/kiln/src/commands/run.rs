//! `kiln run`, `kiln ps`, `kiln stop`, `kiln logs`: containers with immutable defaults.

use std::time::Duration;

use clap::Args;
use kiln_oci::Store;
use kiln_runtime::container;
use kiln_runtime::options::{Bind, Network, Publish, RunOptions};
use kiln_runtime::{RuntimeError, state};

use crate::error::CliError;

impl From<RuntimeError> for CliError {
    fn from(e: RuntimeError) -> Self {
        CliError {
            code: e.exit_code(),
            message: e.to_string(),
        }
    }
}

/// `kiln run` flags (docker run's names).
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Remove the container when it exits (always true in the foreground; accepted for docker compatibility).
    #[arg(long)]
    pub rm: bool,
    /// Run in the background; see `kiln ps`, `kiln logs`, `kiln stop`.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Container name.
    #[arg(long)]
    pub name: Option<String>,
    /// Environment variable KEY=VALUE (or KEY to pass kiln's own value).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Read environment variables from a file (KEY=VALUE or KEY per line, # comments);
    /// `-e` values win over the file's.
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<std::path::PathBuf>,
    /// Working directory inside the container (absolute), instead of the image's WORKDIR.
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    /// Bind mount SRC:DST[:ro].
    #[arg(short = 'v', long = "volume", value_name = "SRC:DST[:ro]")]
    pub volume: Vec<String>,
    /// An extra tmpfs mount (besides /tmp and the image's VOLUMEs).
    #[arg(long, value_name = "PATH")]
    pub tmpfs: Vec<String>,
    /// A tmpfs at each directory of a `--discover-writes` file.
    #[arg(long, value_name = "FILE")]
    pub writes: Option<std::path::PathBuf>,
    /// Publish a port: HOST:CONTAINER, TCP unless followed by /udp.
    #[arg(short = 'p', long = "publish", value_name = "HOST:CTR[/udp]")]
    pub publish: Vec<String>,
    /// Grant a capability (e.g. CHOWN), only from Docker's default set. Listening below
    /// port 1024 needs none: the container's network namespace allows it to any user.
    #[arg(long = "cap-add", value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Network: private (own namespace; -p ports reach it), none, host.
    #[arg(long, default_value = "private")]
    pub network: String,
    /// Run as this user (uid[:gid] or a name in the image); `--user 0` allows root on purpose.
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// A writable rootfs (writes are discarded when the container is removed).
    #[arg(long)]
    pub writable: bool,
    /// Run once with a writable rootfs and list every path the program wrote, with the
    /// directories to mount a tmpfs at, into FILE (or stdout); `kiln harden --writes FILE` reads it.
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "-")]
    pub discover_writes: Option<String>,
    /// Replace the image's ENTRYPOINT.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// OCI runtime: runc, crun or a path.
    #[arg(long)]
    pub runtime: Option<String>,
    /// The image (store name, oci:DIR[:REF], oci-archive:, docker-archive:, or a registry name).
    pub image: String,
    /// Command and arguments (replace CMD).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
    /// Registry settings (for an image not in the store).
    #[command(flatten)]
    pub registry: crate::cli::RegistryFlags,
}

/// `kiln ps`.
#[derive(Debug, Args)]
pub struct PsArgs {
    /// Output: table or json.
    #[arg(long, default_value = "table")]
    pub format: String,
}

/// `kiln stop`.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait after SIGTERM before SIGKILL.
    #[arg(short = 't', long, default_value_t = 10)]
    pub time: u64,
    /// Containers to stop.
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// `kiln logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The container.
    pub name: String,
}

/// The hidden port proxy of a detached container.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The container process's pid.
    pub pid: u32,
    /// FD:CONTAINER_PORT pairs.
    pub specs: Vec<String>,
}

/// Turns the flags into [`RunOptions`].
pub fn options(a: &RunArgs) -> Result<RunOptions, CliError> {
    if let Some(w) = a.workdir.as_deref().filter(|w| !w.starts_with('/')) {
        return Err(CliError::input(format!(
            "-w {w:?}: the working directory must be absolute (hint: e.g. -w /app)"
        )));
    }
    let mut env = Vec::new();
    for f in &a.env_file {
        env.extend(kiln_runtime::options::parse_env_file(f)?);
    }
    env.extend(a.env.iter().cloned());
    Ok(RunOptions {
        name: a.name.clone(),
        env,
        binds: a.volume.iter().map(|v| Bind::parse(v)).collect::<Result<_, _>>()?,
        tmpfs: match &a.writes {
            Some(f) => a
                .tmpfs
                .iter()
                .cloned()
                .chain(kiln_runtime::writes::parse_file(f)?)
                .collect(),
            None => a.tmpfs.clone(),
        },
        publish: a.publish.iter().map(|p| Publish::parse(p)).collect::<Result<_, _>>()?,
        network: Network::parse(&a.network)?,
        user: a.user.clone(),
        writable: a.writable || a.discover_writes.is_some(),
        detach: a.detach,
        entrypoint: a.entrypoint.as_ref().map(|e| vec![e.clone()]),
        args: a.args.clone(),
        runtime: a.runtime.clone(),
        cap_add: kiln_runtime::options::parse_caps(&a.cap_add)?,
        workdir: a.workdir.clone(),
    })
}

/// Runs a container; in the foreground kiln exits with the container's exit code.
pub fn run(store: &Store, a: &RunArgs) -> Result<(), CliError> {
    let opts = options(a)?;
    if a.discover_writes.is_some() && a.detach {
        return Err(CliError::input(
            "--discover-writes runs in the foreground (hint: drop -d)",
        ));
    }
    let registries = super::registry_access(&a.registry)?;
    let remote = kiln_oci::transport::Remote::Fallback(&registries);
    let mut c = container::create(store, &a.image, &opts, remote)?;
    if opts.detach {
        let st = c.detach()?;
        println!("{}", st.name);
        return Ok(());
    }
    let code = c.run_foreground()?;
    if let Some(dest) = &a.discover_writes {
        let w = c.writes()?;
        let text = kiln_runtime::writes::to_file(&w);
        eprintln!(
            "kiln: the program wrote {} path(s); mount a tmpfs or volume at: {}",
            w.written.len(),
            if w.mounts.is_empty() {
                "nothing".to_string()
            } else {
                w.mounts.join(" ")
            }
        );
        if dest == "-" {
            print!("{text}");
        } else {
            std::fs::write(dest, text).map_err(|e| CliError::env(format!("writing {dest}: {e}")))?;
        }
    }
    drop(c);
    std::process::exit(code);
}

/// Lists the containers started with `-d`.
pub fn ps(store: &Store, a: &PsArgs) -> Result<(), CliError> {
    let root = state::runtime_root(store);
    let rows: Vec<(state::State, String)> = state::list(store)
        .into_iter()
        .map(|s| {
            let st = state::status(&s.runtime, &root, &s.id).0;
            (s, st)
        })
        .collect();
    if a.format == "json" {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|(s, st)| {
                let mut v = serde_json::to_value(s).expect("state serialises");
                v["status"] = st.clone().into();
                v
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
        return Ok(());
    }
    println!(
        "{:<20} {:<30} {:<10} {:<18} COMMAND",
        "NAME", "IMAGE", "STATUS", "PORTS"
    );
    for (s, st) in rows {
        let ports: Vec<String> = s.ports.iter().map(|p| p.to_string()).collect();
        println!(
            "{:<20} {:<30} {:<10} {:<18} {}",
            s.name,
            s.image,
            st,
            ports.join(","),
            s.command.join(" ")
        );
    }
    Ok(())
}

/// Stops and removes containers.
pub fn stop(store: &Store, a: &StopArgs) -> Result<(), CliError> {
    for n in &a.names {
        container::stop(store, n, Duration::from_secs(a.time))?;
        println!("{n}");
    }
    Ok(())
}

/// Prints a container's output so far.
pub fn logs(store: &Store, a: &LogsArgs) -> Result<(), CliError> {
    let path = container::log_path(store, &a.name)?;
    let data = std::fs::read(&path).map_err(|e| CliError::env(format!("{}: {e}", path.display())))?;
    use std::io::Write;
    std::io::stdout()
        .write_all(&data)
        .map_err(|e| CliError::env(format!("writing the log: {e}")))
}

/// Serves a detached container's ports until its process exits.
pub fn publish(a: &PublishArgs) -> Result<(), CliError> {
    Ok(container::publish_main(a.pid, &a.specs)?)
}
