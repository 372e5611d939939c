//! `kiln cache ls|rm`: the directories behind `RUN --mount=type=cache`.

use kiln_build::run::cache_mounts;
use kiln_oci::Store;

use crate::cli::{CacheArgs, CacheCommand, Format};
use crate::error::CliError;

/// Runs `kiln cache`.
pub fn cache(store: &Store, args: &CacheArgs) -> Result<(), CliError> {
    let meta = store.meta_dir();
    let env = |e: std::io::Error| CliError::env(format!("cache mounts in {}: {e}", meta.display()));
    match &args.command {
        CacheCommand::Ls { format } => {
            let all = cache_mounts::list(&meta).map_err(env)?;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&all).expect("json")),
                Format::Table => {
                    println!("{:<40} {:>12}  PATH", "ID", "SIZE");
                    for m in all {
                        println!("{:<40} {:>12}  {}", m.id, m.size, m.path.display());
                    }
                }
            }
        }
        CacheCommand::Rm { ids, all } => {
            // `list` is sorted by id; one id may have several directories (private, from=).
            let mut targets: Vec<String> = if *all {
                cache_mounts::list(&meta)
                    .map_err(env)?
                    .into_iter()
                    .map(|m| m.id)
                    .collect()
            } else {
                ids.clone()
            };
            targets.dedup();
            if targets.is_empty() && !*all {
                return Err(CliError::input(
                    "kiln cache rm: name the cache ids to remove, or --all (hint: kiln cache ls)",
                ));
            }
            let mut missing = Vec::new();
            for id in &targets {
                if cache_mounts::remove(&meta, id).map_err(env)? {
                    println!("Removed cache {id}");
                } else {
                    missing.push(id.clone());
                }
            }
            if !missing.is_empty() {
                return Err(CliError::input(format!(
                    "no cache mount with id {} (hint: kiln cache ls)",
                    missing.join(", ")
                )));
            }
        }
    }
    Ok(())
}
