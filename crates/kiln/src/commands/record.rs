//! `kiln record push` and `kiln build --record`: send an image's build record (digest,
//! name, provenance, SBOMs) to a `kiln serve`'s `POST /records`. The record is read by
//! kiln-serve's `record` module; this module finds the token and the CA.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use kiln_oci::Store;

use crate::cli::RegistryFlags;
use crate::error::CliError;

/// `kiln record`.
#[derive(Debug, Args)]
pub struct RecordArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: RecordCommand,
}

/// `kiln record` subcommands.
#[derive(Debug, Subcommand)]
pub enum RecordCommand {
    /// Send an image's build record (provenance, SBOMs) to kiln serve; idempotent by digest.
    Push(PushArgs),
}

/// `kiln record push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The kiln serve to send it to (https://HOST:PORT).
    #[arg(long, value_name = "URL")]
    pub server: String,
    /// File holding the server's bearer token (default: $KILN_RECORD_TOKEN).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// CA certificate (PEM) to trust for the server, besides the system's (default: $KILN_RECORD_CA).
    #[arg(long, value_name = "FILE")]
    pub server_ca: Option<PathBuf>,
    /// Scan the image for vulnerabilities (kiln scan's database) and send the findings as its
    /// latest scan; sent again, a record keeps its first build facts and gains the new scan.
    #[arg(long)]
    pub scan: bool,
    /// The image: a store name, or HOST/REPO:TAG read from its registry when the store lacks it.
    pub image: String,
    /// Registry settings.
    #[command(flatten)]
    pub registry: RegistryFlags,
}

/// The token: the file's first line, else `$KILN_RECORD_TOKEN`.
fn token(file: Option<&PathBuf>) -> Result<String, CliError> {
    let t = match file {
        Some(f) => {
            std::fs::read_to_string(f).map_err(|e| CliError::input(format!("--token-file {}: {e}", f.display())))?
        }
        None => std::env::var("KILN_RECORD_TOKEN")
            .map_err(|_| CliError::input("no record token (hint: --token-file FILE or KILN_RECORD_TOKEN)"))?,
    };
    Ok(t.trim().to_string())
}

/// Where a record goes and how: the server, its token and CA, and whether to scan.
pub struct Destination<'a> {
    /// The kiln serve.
    pub server: &'a str,
    /// `--token-file` (else `$KILN_RECORD_TOKEN`).
    pub token_file: Option<&'a PathBuf>,
    /// `--server-ca` (else `$KILN_RECORD_CA`).
    pub ca: Option<PathBuf>,
    /// The vulnerability database to scan with, when a scan is sent along.
    pub scan: Option<kiln_scan::db::Db>,
}

/// Sends the record of `image` (in `store`, or its registry) to `to.server`.
pub fn send(
    store: &Store,
    image: &str,
    to: Destination<'_>,
    registries: Option<&kiln_registry::RegistryAccess>,
) -> Result<String, CliError> {
    let server = to.server;
    let token = token(to.token_file)?;
    let ca = to.ca.or_else(|| std::env::var_os("KILN_RECORD_CA").map(PathBuf::from));
    let mut record = kiln_serve::record::collect(store, image, registries)
        .map_err(|e| CliError::input(format!("reading the build record of {image}: {e}")))?;
    if let Some(db) = to.scan {
        use kiln_serve::record::ScanFailure;
        record["scan"] = kiln_serve::record::scan(store, image, registries, db).map_err(|e| match e {
            ScanFailure::NoDatabase(m) => CliError::env(format!("scanning {image}: {m}")),
            ScanFailure::Image(m) => CliError::input(format!("scanning {image}: {m}")),
        })?;
    }
    let answer = kiln_serve::record::submit(server, &token, ca.as_deref(), &record)
        .map_err(|e| CliError::env(format!("sending the build record of {image}: {e}")))?;
    let digest = record["digest"].as_str().unwrap_or_default();
    Ok(format!("{answer}: {image}@{digest} at {server}"))
}

/// `kiln record …`.
pub fn record(store: &Store, args: &RecordArgs) -> Result<(), CliError> {
    match &args.command {
        RecordCommand::Push(a) => {
            let access = super::registry_access(&a.registry)?;
            let to = Destination {
                server: &a.server,
                token_file: a.token_file.as_ref(),
                ca: a.server_ca.clone(),
                scan: a.scan.then(|| kiln_scan::db::Db::at(&store.meta_dir())),
            };
            let line = send(store, &a.image, to, Some(&access))?;
            println!("{line}");
            Ok(())
        }
    }
}
