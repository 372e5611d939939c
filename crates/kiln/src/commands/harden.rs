//! `kiln harden`: Kubernetes, Compose or JSON settings that run an image immutable.

use clap::Args;
use kiln_oci::Store;
use kiln_runtime::{harden, image, writes, yaml};

use crate::error::CliError;

/// `kiln harden` flags.
#[derive(Debug, Args)]
pub struct HardenArgs {
    /// Output: k8s (a Deployment), compose, or json.
    #[arg(long, default_value = "k8s", value_parser = ["k8s", "kubernetes", "compose", "json"])]
    pub format: String,
    /// Directories the program writes, from `kiln run --discover-writes=FILE`.
    #[arg(long, value_name = "FILE")]
    pub writes: Option<std::path::PathBuf>,
    /// Workload name (default: the image's repository name).
    #[arg(long)]
    pub name: Option<String>,
    /// The image.
    pub image: String,
    /// Registry settings (for an image not in the store).
    #[command(flatten)]
    pub registry: crate::cli::RegistryFlags,
}

/// Prints the settings; warnings (a root image) go to stderr.
pub fn harden(store: &Store, a: &HardenArgs) -> Result<(), CliError> {
    let extra = match &a.writes {
        Some(p) => writes::parse_file(p)?,
        None => vec![],
    };
    let registries = super::registry_access(&a.registry)?;
    let img = image::prepare(store, &a.image, kiln_oci::transport::Remote::Fallback(&registries))?;
    let h = harden::derive(&img, a.name.as_deref(), &extra)?;
    for w in &h.warnings {
        eprintln!("warning: {w}");
    }
    let out = match a.format.as_str() {
        "json" => serde_json::to_string_pretty(&h).expect("json") + "\n",
        "compose" => yaml::to_string(&harden::compose(&h)),
        _ => yaml::to_string(&harden::kubernetes(&h)),
    };
    print!("{out}");
    Ok(())
}
