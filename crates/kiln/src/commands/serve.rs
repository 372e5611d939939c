//! `kiln serve` (the admission webhook) and `kiln serve manifests`: flags to a
//! kiln-serve configuration; the server is the kiln-serve crate.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::cli::RegistryFlags;
use crate::error::CliError;

/// `kiln serve`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ServeArgs {
    /// `manifests`, or nothing to serve.
    #[command(subcommand)]
    pub command: Option<ServeCommand>,
    /// The policy file (kiln-policy.yaml), as `kiln policy check` reads it.
    #[arg(long, value_name = "FILE", required = true)]
    pub policy: Option<PathBuf>,
    /// PEM certificate chain served (reloaded when the file changes).
    #[arg(long, value_name = "FILE", required = true)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the certificate.
    #[arg(long, value_name = "FILE", required = true)]
    pub tls_key: Option<PathBuf>,
    /// Address to listen on (port 0: any free port, printed on stderr).
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// Audit store: sqlite:PATH (default: sqlite:$KILN_HOME/kiln/serve.db).
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
    /// Namespaces never checked (repeatable).
    #[arg(long = "exempt-namespace", value_name = "NAME", default_value = "kube-system")]
    pub exempt_namespaces: Vec<String>,
    /// Seconds a decision may take before the request is denied (under the API server's timeout).
    #[arg(long, value_name = "SECONDS", default_value = "8", value_parser = clap::value_parser!(u64).range(1..=29))]
    pub deadline: u64,
    /// Seconds a tag's resolution to a digest is kept (0: resolve on every request); the
    /// mutating webhook pins each tag to the digest decided on either way.
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub tag_ttl: u64,
    /// File holding the bearer token `POST /records` requires (records are refused without it).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Registry settings.
    #[command(flatten)]
    pub registry: RegistryFlags,
}

/// `kiln serve` subcommands.
#[derive(Debug, Subcommand)]
pub enum ServeCommand {
    /// Print the Deployment, Service and webhook configurations a cluster needs.
    Manifests(ManifestsArgs),
}

/// `kiln serve manifests`.
#[derive(Debug, Args)]
pub struct ManifestsArgs {
    /// Namespace the webhook runs in (left out of admission).
    #[arg(long, value_name = "NAME", default_value = "kiln-system")]
    pub namespace: String,
    /// The image that runs kiln.
    #[arg(long, value_name = "REF")]
    pub image: String,
    /// PEM CA certificate that signed the webhook's serving certificate.
    #[arg(long, value_name = "FILE")]
    pub ca_bundle: PathBuf,
    /// The API server's timeout per call, in seconds.
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = clap::value_parser!(u32).range(1..=30))]
    pub timeout: u32,
}

/// `kiln serve …`.
pub fn serve(root: &Path, args: &ServeArgs) -> Result<(), CliError> {
    if let Some(ServeCommand::Manifests(m)) = &args.command {
        return manifests(m);
    }
    let need = |p: &Option<PathBuf>, flag: &str| {
        p.clone()
            .ok_or_else(|| CliError::input(format!("kiln serve needs {flag}")))
    };
    let mut registry = super::registry::options(&args.registry)?;
    // A decision must fit in the deadline: few, quick retries; a stalled registry is cut.
    registry.retry.attempts = registry.retry.attempts.min(3);
    registry.retry.base = Duration::from_millis(100);
    registry.timeout = registry.timeout.min(Duration::from_secs(args.deadline));
    let database = match &args.database {
        Some(d) => d.clone(),
        None => format!("sqlite:{}", root.join("kiln").join("serve.db").display()),
    };
    let config = kiln_serve::Config {
        policy: need(&args.policy, "--policy")?,
        tls_cert: need(&args.tls_cert, "--tls-cert")?,
        tls_key: need(&args.tls_key, "--tls-key")?,
        listen: args.listen,
        database,
        store_root: root.to_path_buf(),
        registry,
        settings: kiln_serve::Settings {
            deadline: Duration::from_secs(args.deadline),
            exempt: args.exempt_namespaces.clone(),
            tag_ttl: Duration::from_secs(args.tag_ttl),
        },
        token_file: args.token_file.clone(),
    };
    kiln_serve::run(config).map_err(|e| match e {
        kiln_serve::ServeError::Policy(p) => CliError::from(p),
        kiln_serve::ServeError::Tls(t) => CliError::input(t),
        other => CliError::env(other),
    })
}

fn manifests(args: &ManifestsArgs) -> Result<(), CliError> {
    let ca = std::fs::read(&args.ca_bundle)
        .map_err(|e| CliError::input(format!("--ca-bundle {}: {e}", args.ca_bundle.display())))?;
    if !String::from_utf8_lossy(&ca).contains("-----BEGIN CERTIFICATE-----") {
        return Err(CliError::input(format!(
            "--ca-bundle {}: no PEM certificate in it (hint: the ca.crt that signed the serving certificate)",
            args.ca_bundle.display()
        )));
    }
    let text = kiln_serve::manifests::render(&kiln_serve::manifests::Target {
        namespace: args.namespace.clone(),
        image: args.image.clone(),
        ca_bundle: ca,
        timeout_seconds: args.timeout,
    });
    use std::io::Write as _;
    let _ = std::io::stdout().write_all(text.as_bytes());
    Ok(())
}
