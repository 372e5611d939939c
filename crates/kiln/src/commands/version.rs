//! `kiln version` (what was built, from which commit, with which features) and `kiln
//! completion` (shell completion scripts generated from the same CLI definition).

use crate::cli::{CompletionArgs, Format, VersionArgs};
use crate::error::CliError;

/// Cargo features this binary was built with.
fn features() -> Vec<&'static str> {
    let mut f = vec![];
    if cfg!(feature = "completion") {
        f.push("completion");
    }
    f
}

/// `kiln version`.
pub fn version(args: &VersionArgs) -> Result<(), CliError> {
    let fields = [
        ("version", env!("CARGO_PKG_VERSION").to_string()),
        ("commit", env!("KILN_GIT_COMMIT").to_string()),
        ("commit date", env!("KILN_GIT_DATE").to_string()),
        ("target", env!("KILN_TARGET").to_string()),
        ("profile", env!("KILN_PROFILE").to_string()),
        ("features", features().join(", ")),
        ("image spec", "OCI image-spec 1.1".to_string()),
    ];
    match args.format {
        Format::Json => {
            let v: serde_json::Map<String, serde_json::Value> = fields
                .iter()
                .map(|(k, v)| {
                    let value = if *k == "features" {
                        serde_json::json!(features())
                    } else {
                        serde_json::json!(v)
                    };
                    (k.replace(' ', "_"), value)
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&v).expect("json"));
        }
        Format::Table => {
            for (k, v) in fields {
                println!("{:<12} {}", format!("{k}:"), if v.is_empty() { "-" } else { &v });
            }
        }
    }
    Ok(())
}

/// `kiln completion bash|zsh|fish`: the script on standard output.
#[cfg(feature = "completion")]
pub fn completion(args: &CompletionArgs) -> Result<(), CliError> {
    use clap_complete::Shell;
    let shell = match args.shell {
        crate::cli::CompletionShell::Bash => Shell::Bash,
        crate::cli::CompletionShell::Zsh => Shell::Zsh,
        crate::cli::CompletionShell::Fish => Shell::Fish,
    };
    let mut cmd = crate::cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "kiln", &mut script);
    // print! (not a raw write) so a closed pipe ends kiln quietly, as for other output.
    print!("{}", String::from_utf8_lossy(&script));
    Ok(())
}

/// `kiln completion` in a build without the `completion` feature.
#[cfg(not(feature = "completion"))]
pub fn completion(_args: &CompletionArgs) -> Result<(), CliError> {
    Err(CliError::input(
        "this kiln was built without the `completion` feature (hint: cargo build -p kiln --features completion)",
    ))
}
