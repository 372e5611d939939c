//! `kiln diff`: the release report between two images.

use clap::Args;
use kiln_analyze::{diff, render};
use kiln_oci::Store;

use super::analyze::Walkable;
use crate::error::CliError;

/// `kiln diff` flags.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// Output: human, json, markdown or html.
    #[arg(long, default_value = "human", value_parser = ["human", "json", "markdown", "html"])]
    pub format: String,
    /// Exit 1 when any of these sections changed: files, packages, vulns (introduced), config.
    #[arg(long, value_delimiter = ',', value_parser = ["files", "packages", "vulns", "config"])]
    pub fail_on: Vec<String>,
    /// Ignore timestamps (the default: kiln compares content, mode, owner and link targets, never mtimes).
    #[arg(long)]
    pub ignore_timestamps: bool,
    /// The platform to take from multi-arch images.
    #[arg(long)]
    pub platform: Option<String>,
    /// The old image.
    pub image_a: String,
    /// The new image.
    pub image_b: String,
    /// Registry settings (for images not in the store).
    #[command(flatten)]
    pub registry: crate::cli::RegistryFlags,
}

/// The offline vulnerability database, when one was imported.
fn database(store: &Store) -> Option<kiln_scan::vuln::OpenDb> {
    let opts = kiln_scan::Options {
        db: Some(kiln_scan::db::Db::at(&store.meta_dir())),
        ..Default::default()
    };
    let mut scratch = kiln_scan::Report::new("", String::new(), vec![]);
    kiln_scan::vuln::open(&opts, &mut scratch).ok()
}

/// Compares two images and prints the report; exit 1 when a `--fail-on` section changed.
pub fn diff(store: &Store, a: &DiffArgs) -> Result<(), CliError> {
    let platform = super::parse_platform(&a.platform)?;
    let registries = super::registry_access(&a.registry)?;
    let ia = Walkable::open(store, &a.image_a, platform.as_ref(), &registries)?;
    let ib = Walkable::open(store, &a.image_b, platform.as_ref(), &registries)?;
    let db = database(store);
    if db.is_none() && a.fail_on.iter().any(|s| s == "vulns") {
        return Err(CliError::env(
            "--fail-on vulns needs the vulnerability database, and none is imported (hint: kiln db import OSV-FILES)",
        ));
    }
    let jobs = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let d = diff::diff(
        &diff::Input {
            reference: &a.image_a,
            layers: ia.layers()?,
            image: ia.image(),
        },
        &diff::Input {
            reference: &a.image_b,
            layers: ib.layers()?,
            image: ib.image(),
        },
        db.as_ref(),
        jobs,
    )?;
    let out = match a.format.as_str() {
        "json" => serde_json::to_string_pretty(&d).expect("diff serialises") + "\n",
        "markdown" => render::markdown(&d),
        "html" => render::html(&d),
        _ => render::human(&d),
    };
    print!("{out}");
    let failed = diff::failing(&d, &a.fail_on);
    if !failed.is_empty() {
        return Err(CliError {
            code: 1,
            message: format!("{} changed between {} and {}", failed.join(", "), a.image_a, a.image_b),
        });
    }
    Ok(())
}
