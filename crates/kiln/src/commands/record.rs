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

/// Sends the record of `image` (in `store`, or its registry) to `server`.
pub fn send(
    store: &Store,
    image: &str,
    server: &str,
    token_file: Option<&PathBuf>,
    ca: Option<PathBuf>,
    registries: Option<&kiln_registry::RegistryAccess>,
) -> Result<String, CliError> {
    let token = token(token_file)?;
    let ca = ca.or_else(|| std::env::var_os("KILN_RECORD_CA").map(PathBuf::from));
    let record = kiln_serve::record::collect(store, image, registries)
        .map_err(|e| CliError::input(format!("reading the build record of {image}: {e}")))?;
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
            let line = send(
                store,
                &a.image,
                &a.server,
                a.token_file.as_ref(),
                a.server_ca.clone(),
                Some(&access),
            )?;
            println!("{line}");
            Ok(())
        }
    }
}
