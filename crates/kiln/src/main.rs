//! The `kiln` binary: argument parsing, output and exit codes. All logic lives in the
//! library crates.

mod cli;
mod commands;
mod error;
mod progress;
mod rootless;

use std::process::ExitCode;

use clap::Parser;
use kiln_oci::Store;

use crate::cli::{Cli, Commands};
use crate::error::CliError;

fn run(cli: Cli) -> Result<(), CliError> {
    if let Commands::Lint(a) = &cli.command {
        // Linting reads only the named files: no store.
        return commands::lint::lint(a);
    }
    let root = cli.root.clone().unwrap_or_else(Store::default_root);
    let store =
        Store::open(&root).map_err(|e| CliError::env(format!("opening the store at {}: {e}", root.display())))?;
    match &cli.command {
        Commands::Build(a) => commands::build::build(&store, a),
        Commands::GenerateKeyPair(a) => commands::sign::generate_key_pair(a),
        Commands::Sign(a) => commands::sign::sign(&store, a),
        Commands::Attest(a) => commands::sign::attest(&store, a),
        Commands::Verify(a) => commands::sign::verify(&store, a),
        Commands::VerifyAttestation(a) => commands::sign::verify_attestation(&store, a),
        Commands::Images(a) => commands::images::images(&store, a),
        Commands::Inspect(a) => commands::images::inspect(&store, a),
        Commands::Tag(a) => commands::images::tag(&store, a),
        Commands::Rmi(a) => commands::images::rmi(&store, a),
        Commands::Prune(a) => commands::images::prune(&store, a),
        Commands::Load(a) => commands::archive::load(&store, a),
        Commands::Save(a) => commands::archive::save(&store, a),
        Commands::Cache(a) => commands::cache::cache(&store, a),
        Commands::Lock(a) => commands::lock::lock(&store, a),
        Commands::Pull(a) => commands::registry::pull(&store, a),
        Commands::Push(a) => commands::registry::push(&store, a),
        Commands::Copy(a) => commands::registry::copy(&store, a),
        Commands::Login(a) => commands::registry::login(a),
        Commands::Logout(a) => commands::registry::logout(a),
        Commands::Referrers(a) => commands::registry::referrers(a),
        Commands::Attach(a) => commands::registry::attach(&store, a),
        Commands::Sbom(a) => commands::sbom::sbom(&store, a),
        Commands::Scan(a) => commands::scan::scan(&store, a),
        Commands::Db(a) => commands::scan::db(&store, a),
        Commands::Lint(_) => unreachable!("handled before the store is opened"),
    }
}

fn main() -> ExitCode {
    // Like other Unix tools, stop quietly when the reader of our output goes away
    // (`kiln inspect IMG | head`) instead of reporting println!'s broken-pipe panic. SIGPIPE
    // itself stays ignored, so a registry connection cut mid-upload is an error kiln
    // retries, not a signal that kills it.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if msg.contains("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default_hook(info);
    }));
    let cli = Cli::parse();
    if let Commands::Build(b) = &cli.command {
        let root = cli.root.clone().unwrap_or_else(Store::default_root);
        rootless::reexec_if_needed(&root, b.quiet || b.progress == cli::ProgressMode::Quiet);
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}
