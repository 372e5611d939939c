//! The `kiln` binary: argument parsing, output and exit codes. All logic lives in the
//! library crates.

mod cli;
mod commands;
mod error;
mod names;
mod progress;
mod rootless;
mod template;

use std::process::ExitCode;

use clap::FromArgMatches;
use kiln_oci::Store;

use crate::cli::{Cli, Commands};
use crate::error::CliError;

fn run(cli: Cli) -> Result<(), CliError> {
    // Commands that read only their arguments: no store.
    match &cli.command {
        Commands::Lint(a) => return commands::lint::lint(a),
        Commands::Version(a) => return commands::version::version(a),
        Commands::Completion(a) => return commands::version::completion(a),
        Commands::GenerateKeyPair(a) => return commands::sign::generate_key_pair(a),
        Commands::Login(a) => return commands::registry::login(a),
        Commands::Logout(a) => return commands::registry::logout(a),
        Commands::Referrers(a) => return commands::registry::referrers(a),
        _ => {}
    }
    let root = cli.root.clone().unwrap_or_else(Store::default_root);
    if let Commands::Info(a) = &cli.command {
        return commands::info::info(&root, a);
    }
    if let Commands::Serve(a) = &cli.command {
        return commands::serve::serve(&root, a);
    }
    let (store, scratch) = open_store(&root, reads_only(&cli.command))?;
    let result = match &cli.command {
        Commands::Build(a) => commands::build::build(&store, a),
        Commands::Sign(a) => commands::sign::sign(&store, a),
        Commands::Attest(a) => commands::sign::attest(&store, a),
        Commands::Verify(a) => commands::sign::verify(&store, a),
        Commands::VerifyAttestation(a) => commands::sign::verify_attestation(&store, a),
        Commands::Policy(a) => commands::policy::policy(&store, &root.join("kiln"), a),
        Commands::Record(a) => commands::record::record(&store, a),
        Commands::Images(a) => commands::images::images(&store, a),
        Commands::Inspect(a) => commands::images::inspect(&store, a),
        Commands::History(a) => commands::history::history(&store, a),
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
        Commands::Convert(a) => commands::convert::convert(&store, a),
        Commands::Attach(a) => commands::registry::attach(&store, a),
        Commands::Sbom(a) => commands::sbom::sbom(&store, a),
        // The database is the one of the store named, even when a scratch store stands in.
        Commands::Scan(a) => commands::scan::scan(&store, kiln_scan::db::Db::at(&root.join("kiln")), a),
        Commands::Db(a) => commands::scan::db(&store, a),
        Commands::Run(a) => commands::run::run(&store, a),
        Commands::Ps(a) => commands::run::ps(&store, a),
        Commands::Stop(a) => commands::run::stop(&store, a),
        Commands::Logs(a) => commands::run::logs(&store, a),
        Commands::Harden(a) => commands::harden::harden(&store, a),
        Commands::Analyze(a) => commands::analyze::analyze(&store, a),
        Commands::Diff(a) => commands::diff::diff(&store, a),
        Commands::Publish(a) => commands::run::publish(a),
        Commands::Lint(_)
        | Commands::Version(_)
        | Commands::Completion(_)
        | Commands::Info(_)
        | Commands::Serve(_)
        | Commands::GenerateKeyPair(_)
        | Commands::Login(_)
        | Commands::Logout(_)
        | Commands::Referrers(_) => unreachable!("handled before the store is opened"),
    };
    // Messages name the store the user pointed at, not the empty stand-in for it.
    match (scratch, result) {
        (Some(s), Err(mut e)) => {
            e.message = e
                .message
                .replace(&s.path().display().to_string(), &root.display().to_string());
            Err(e)
        }
        (_, r) => r,
    }
}

/// Commands that only read the store: they must not create one where none exists.
fn reads_only(command: &Commands) -> bool {
    matches!(
        command,
        Commands::Images(_)
            | Commands::Inspect(_)
            | Commands::History(_)
            | Commands::Save(_)
            | Commands::Sbom(_)
            | Commands::Scan(_)
            | Commands::Verify(_)
            | Commands::VerifyAttestation(_)
    )
}

/// Opens the store at `root`. A read-only command where no store exists gets an empty
/// scratch store instead (removed when the returned guard drops), so `kiln images --root
/// /typo` lists nothing and leaves nothing behind, and transports such as `oci-archive:`,
/// which stage through a store, still work.
fn open_store(root: &std::path::Path, read_only: bool) -> Result<(Store, Option<tempfile::TempDir>), CliError> {
    let opening = |e: &dyn std::fmt::Display, at: &std::path::Path| {
        CliError::env(format!(
            "opening the store at {}: {e} (hint: point --root or KILN_HOME at a writable directory)",
            at.display()
        ))
    };
    if read_only && !root.join("index.json").is_file() {
        let scratch = tempfile::Builder::new()
            .prefix("kiln-empty-store-")
            .tempdir()
            .map_err(|e| opening(&e, &std::env::temp_dir()))?;
        let store = Store::open(scratch.path()).map_err(|e| opening(&e, scratch.path()))?;
        return Ok((store, Some(scratch)));
    }
    Ok((Store::open(root).map_err(|e| opening(&e, root))?, None))
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
    let cli = match Cli::from_arg_matches(&cli::command().get_matches()) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    // Building, running and hardening mount overlays: a normal user does that in a user namespace.
    let root = cli.root.clone().unwrap_or_else(Store::default_root);
    match &cli.command {
        Commands::Build(b) => {
            rootless::reexec_if_needed(&root, b.quiet || b.progress == cli::ProgressMode::Quiet);
            rootless::private_mounts();
        }
        Commands::Run(_) | Commands::Harden(_) | Commands::Stop(_) => rootless::reexec_if_needed(&root, false),
        _ => {}
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}
