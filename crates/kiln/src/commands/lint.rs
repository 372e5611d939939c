//! `kiln lint`: checks Dockerfiles with kiln-lint's rules and prints the findings.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use kiln_lint::{Config, Finding, Severity, output};

use crate::cli::{LintArgs, LintFormat};
use crate::error::CliError;

/// Runs `kiln lint`. Exit 1 when a finding at or above the threshold exists,
/// 2 when a file cannot be read or parsed, or the configuration is wrong.
pub fn lint(args: &LintArgs) -> Result<(), CliError> {
    // A directory means its Dockerfile, as for `kiln build`; `-` is standard input.
    let files: Vec<PathBuf> = if args.files.is_empty() {
        vec![PathBuf::from("Dockerfile")]
    } else {
        args.files
            .iter()
            .map(|f| if f.is_dir() { f.join("Dockerfile") } else { f.clone() })
            .collect()
    };
    let cli_threshold = match &args.severity {
        Some(s) => Some(Severity::parse(s).ok_or_else(|| {
            CliError::input(format!(
                "--severity {s:?}: unknown severity (hint: use error, warning or info)"
            ))
        })?),
        None => None,
    };
    let explicit = match &args.config {
        Some(p) => Some(Config::load(p).map_err(CliError::input)?),
        None => None,
    };
    let mut discovered: HashMap<PathBuf, Config> = HashMap::new();
    let mut all: Vec<Finding> = Vec::new();
    let mut threshold = cli_threshold.unwrap_or(Severity::Warning);
    for file in &files {
        let stdin = file.as_os_str() == "-";
        let config = match &explicit {
            Some(c) => c.clone(),
            None => match Config::discover(if stdin { Path::new("Dockerfile") } else { file }) {
                Some(p) => match discovered.get(&p) {
                    Some(c) => c.clone(),
                    None => {
                        let c = Config::load(&p).map_err(CliError::input)?;
                        discovered.insert(p, c.clone());
                        c
                    }
                },
                None => Config::default(),
            },
        };
        if cli_threshold.is_none()
            && let Some(t) = config.threshold
        {
            threshold = t;
        }
        let text = read(file)?;
        let name = file.display().to_string();
        let found = kiln_lint::lint(&name, &text, &config).map_err(CliError::input)?;
        all.extend(found);
    }
    all.retain(|f| f.severity >= threshold);
    let report = match args.format {
        LintFormat::Human => output::human(&all, files.len()),
        LintFormat::Json => output::json(&all, files.len()) + "\n",
        LintFormat::Sarif => output::sarif(&all),
    };
    print!("{report}");
    if all.is_empty() {
        Ok(())
    } else {
        Err(CliError {
            code: 1,
            message: format!("{} at or above {threshold}", output::summary(&all, files.len())),
        })
    }
}

fn read(file: &Path) -> Result<String, CliError> {
    let bytes = if file.as_os_str() == "-" {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut b)
            .map_err(|e| CliError::env(format!("reading standard input: {e}")))?;
        Ok(b)
    } else {
        std::fs::read(file)
    }
    .map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::NotFound {
            " (hint: name the Dockerfiles to check: kiln lint path/to/Dockerfile)"
        } else {
            ""
        };
        CliError::input(format!("{}: cannot read: {e}{hint}", file.display()))
    })?;
    String::from_utf8(bytes).map_err(|e| {
        CliError::input(format!(
            "{}: not UTF-8 text (byte {}) (hint: Dockerfiles are UTF-8)",
            file.display(),
            e.utf8_error().valid_up_to()
        ))
    })
}
