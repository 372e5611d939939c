//! `kiln info`: where kiln keeps things on this machine and what it will run with, so
//! scripts need not guess (`skopeo inspect oci:$(kiln info --format '{{.Store}}'):app:1`
//! works for root, whose store is /var/lib/kiln, and for everyone else).

use std::path::Path;

use kiln_build::run::userns::{self, Plan};

use crate::cli::InfoArgs;
use crate::error::CliError;

/// `kiln info`. Reads nothing but the store's index (if there is one); creates nothing.
pub fn info(root: &Path, args: &InfoArgs) -> Result<(), CliError> {
    let store_exists = root.join("index.json").is_file();
    let runtime = kiln_build::run::exec::Runtime::find(None).ok();
    let namespace = match userns::plan() {
        Plan::NotNeeded => "not needed (root, or already inside one)".to_string(),
        Plan::Reexec { note: None, .. } => "yes, with subordinate ids".to_string(),
        Plan::Reexec { note: Some(n), .. } => format!("yes, with a single id: {n}"),
        Plan::Unavailable(reason) => format!("unavailable: {reason}"),
    };
    let data = serde_json::json!({
        "Version": env!("CARGO_PKG_VERSION"),
        "Store": root,
        "StoreExists": store_exists,
        "Runtime": runtime.as_ref().map(|r| r.path.display().to_string()),
        "Rootless": !rustix::process::geteuid().is_root(),
        "UserNamespace": namespace,
        "VulnerabilityDatabase": kiln_scan::db::Db::at(&root.join("kiln")).dir(),
    });
    match args.format.as_deref() {
        Some("json") => println!("{}", serde_json::to_string_pretty(&data).expect("json")),
        Some(t) => {
            let text = crate::template::render(t, &data).map_err(|e| CliError::input(format!("--format: {e}")))?;
            println!("{text}");
        }
        None => {
            for (k, v) in data.as_object().expect("an object") {
                let v = match v {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Null => "-".into(),
                    other => other.to_string(),
                };
                println!("{:<22} {v}", format!("{k}:"));
            }
        }
    }
    Ok(())
}
