//! `kiln scan` (vulnerabilities, secrets, misconfiguration in any image) and `kiln db`
//! (the offline OSV database it matches against). Flags follow trivy: `--scanners`,
//! `--severity`, `--exit-code`, `--ignore-file`.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use kiln_oci::Store;
use kiln_oci::docker_archive::DockerArchive;
use kiln_oci::reference::ImageRef;
use kiln_scan::db::Db;
use kiln_scan::ignore::Ignore;
use kiln_scan::{Report, Scanners, Severity};

use crate::cli::RegistryFlags;
use crate::error::CliError;

/// `kiln scan` output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScanFormat {
    /// Aligned tables per kind of finding.
    Table,
    /// Every finding as JSON.
    Json,
    /// SARIF 2.1.0 (GitHub code scanning and other SARIF viewers).
    Sarif,
}

/// `kiln scan`.
#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Image: a store name, sha256:DIGEST, oci:DIR[:REF], oci-archive:FILE[:REF], docker-archive:FILE, HOST/REPO:TAG or docker://NAME.
    pub image: String,
    /// Output format.
    #[arg(short = 'f', long, value_enum, default_value = "table")]
    pub format: ScanFormat,
    /// Scanners to run (comma-separated): vuln, secret, misconfig.
    #[arg(long, value_name = "LIST", default_value = "vuln,secret,misconfig")]
    pub scanners: String,
    /// Report only these severities (comma-separated): UNKNOWN, LOW, MEDIUM, HIGH, CRITICAL.
    #[arg(
        short = 's',
        long,
        value_name = "LIST",
        default_value = "UNKNOWN,LOW,MEDIUM,HIGH,CRITICAL"
    )]
    pub severity: String,
    /// Exit code when findings remain after filtering (trivy's default: 0).
    #[arg(long, value_name = "N", default_value = "0")]
    pub exit_code: u8,
    /// Findings to accept: one id (CVE, rule) a line, optional PATH prefix and exp:YYYY-MM-DD
    /// (default: .kilnignore, if there is one; a file named here must exist).
    #[arg(long, value_name = "FILE")]
    pub ignore_file: Option<PathBuf>,
    /// Write the report to this file instead of standard output.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Warn when the vulnerability database is older than this many days.
    #[arg(long, value_name = "DAYS", default_value = "7")]
    pub max_db_age: i64,
    /// Platform to pick from a multi-arch image (os/arch[/variant]).
    #[arg(long)]
    pub platform: Option<String>,
    /// Registry settings (for images read from a registry).
    #[command(flatten)]
    pub registry: RegistryFlags,
}

/// `kiln db`.
#[derive(Debug, Args)]
pub struct DbArgs {
    /// The subcommand.
    #[command(subcommand)]
    pub command: DbCommand,
}

/// `kiln db` subcommands.
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Import OSV records: .json files, directories of them, or OSV's per-ecosystem all.zip.
    Import {
        /// Files, directories or zips.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Show when the database was imported and what it holds.
    Status {
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: crate::cli::Format,
    },
}

impl From<kiln_scan::ScanError> for CliError {
    fn from(e: kiln_scan::ScanError) -> Self {
        match &e {
            kiln_scan::ScanError::Db(kiln_scan::db::DbError::Io { .. }) | kiln_scan::ScanError::NoDatabase { .. } => {
                CliError::env(e)
            }
            _ => CliError::input(e),
        }
    }
}

impl From<kiln_scan::db::DbError> for CliError {
    fn from(e: kiln_scan::db::DbError) -> Self {
        match &e {
            kiln_scan::db::DbError::Io { .. } => CliError::env(e),
            _ => CliError::input(e),
        }
    }
}

fn parse_scanners(s: &str) -> Result<Scanners, CliError> {
    let mut out = Scanners {
        vuln: false,
        secret: false,
        misconfig: false,
    };
    for w in s.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        match w {
            "vuln" | "vulns" | "vulnerability" => out.vuln = true,
            "secret" | "secrets" => out.secret = true,
            "misconfig" | "config" => out.misconfig = true,
            other => {
                return Err(CliError::input(format!(
                    "--scanners: unknown scanner {other:?} (hint: choose from vuln, secret, misconfig)"
                )));
            }
        }
    }
    Ok(out)
}

fn parse_severities(s: &str) -> Result<Vec<Severity>, CliError> {
    s.split(',')
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .map(|w| {
            Severity::parse(w).ok_or_else(|| {
                CliError::input(format!(
                    "--severity: unknown severity {w:?} (hint: a comma-separated list of UNKNOWN, LOW, MEDIUM, HIGH, CRITICAL)"
                ))
            })
        })
        .collect()
}

/// `kiln scan IMAGE`. `db` is the vulnerability database of the store kiln was pointed at
/// (which, for a store that does not exist, is not the scratch store `store` is then).
pub fn scan(store: &Store, db: Db, args: &ScanArgs) -> Result<(), CliError> {
    let scanners = parse_scanners(&args.scanners)?;
    let severities = parse_severities(&args.severity)?;
    let ignore_file = args.ignore_file.clone().unwrap_or_else(|| PathBuf::from(".kilnignore"));
    let ignore = match std::fs::read_to_string(&ignore_file) {
        Ok(t) => Ignore::parse(&t, &ignore_file.display().to_string()).map_err(CliError::input)?,
        // Only the default file may be absent: a file the user named must be there.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && args.ignore_file.is_none() => Ignore::default(),
        Err(e) => {
            return Err(CliError::input(format!(
                "--ignore-file {}: {e} (hint: pass a readable file, or remove the flag)",
                ignore_file.display()
            )));
        }
    };
    let platform = super::parse_platform(&args.platform)?;
    let opts = kiln_scan::Options {
        scanners,
        db: Some(db),
        max_db_age_days: args.max_db_age,
        ..Default::default()
    };
    if scanners.vuln {
        // Before any pull or conversion: a vulnerability scan with no database cannot run.
        kiln_scan::vuln::available(&opts)?;
    }
    let r = crate::names::parse_image(store, &args.image)?;
    // Without vulnerability matching (which needs the catalogers' layout), a plain
    // docker-archive is scanned in place: no temp layout, no recompression of its layers.
    let in_place = match &r {
        ImageRef::DockerArchive { .. } if !scanners.vuln => DockerArchive::open(&r)?,
        _ => None,
    };
    let mut report: Report = match &in_place {
        Some(archive) => kiln_scan::scan_docker_archive(archive, &args.image, &opts)?,
        None => {
            let registries = super::registry_access(&args.registry)?;
            let opened = super::open_image(store, &args.image, platform.as_ref(), &registries)?;
            kiln_scan::scan_image(opened.layout()?, &opened.image, &args.image, &opts)?
        }
    };
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    report.retain_severities(&severities);
    ignore.apply(&mut report);
    let text = match args.format {
        ScanFormat::Table => kiln_scan::report::render_table(&report),
        ScanFormat::Json => kiln_scan::report::render_json(&report),
        ScanFormat::Sarif => kiln_scan::report::render_sarif(&report),
    };
    match &args.output {
        Some(f) => std::fs::write(f, text.as_bytes()).map_err(|e| {
            CliError::env(format!(
                "{}: {e} (hint: check the directory exists and is writable)",
                f.display()
            ))
        })?,
        None => std::io::stdout()
            .write_all(text.as_bytes())
            .map_err(|e| CliError::env(format!("writing to stdout: {e}")))?,
    }
    if report.total() > 0 && args.exit_code != 0 {
        return Err(CliError {
            code: args.exit_code,
            message: format!(
                "{} (--exit-code {})",
                kiln_scan::report::summary(&report),
                args.exit_code
            ),
        });
    }
    Ok(())
}

/// `kiln db import|status`.
pub fn db(store: &Store, args: &DbArgs) -> Result<(), CliError> {
    let db = Db::at(&store.meta_dir());
    match &args.command {
        DbCommand::Import { paths } => {
            // A missing input is the user's mistake (exit 2), not the environment's.
            if let Some(p) = paths.iter().find(|p| !p.exists()) {
                return Err(CliError::input(format!(
                    "{}: no such file or directory (hint: kiln db import takes OSV JSON files, directories of them, or OSV's all.zip)",
                    p.display()
                )));
            }
            let r = db.import(paths)?;
            println!(
                "imported {} OSV record{} ({} new or updated) for {} into {}",
                r.read,
                if r.read == 1 { "" } else { "s" },
                r.updated,
                r.ecosystems.iter().cloned().collect::<Vec<_>>().join(", "),
                db.dir().display()
            );
            Ok(())
        }
        DbCommand::Status { format } => {
            let meta = db.meta()?;
            if *format == crate::cli::Format::Json {
                let v = match &meta {
                    Some(m) => serde_json::json!({
                        "path": db.dir(),
                        "imported": m.imported,
                        "age_seconds": kiln_scan::db::now_unix() - m.imported_unix,
                        "ecosystems": m.ecosystems,
                        "withdrawn": m.withdrawn,
                        "sources": m.sources,
                    }),
                    None => serde_json::json!({ "path": db.dir(), "imported": null }),
                };
                println!("{}", serde_json::to_string_pretty(&v).expect("JSON"));
                return Ok(());
            }
            match meta {
                None => println!(
                    "no vulnerability database at {} (import one with `kiln db import PATH`: OSV JSON files, a directory, or OSV's all.zip)",
                    db.dir().display()
                ),
                Some(m) => {
                    let age = kiln_scan::db::now_unix() - m.imported_unix;
                    let age_text = if age < 3600 {
                        format!("{} minutes", age / 60)
                    } else if age < 2 * 86_400 {
                        format!("{} hours", age / 3600)
                    } else {
                        format!("{} days", age / 86_400)
                    };
                    println!("database:  {}", db.dir().display());
                    println!("imported:  {} ({age_text} ago)", m.imported);
                    let total: usize = m.ecosystems.values().sum();
                    println!("records:   {total} ({} withdrawn)", m.withdrawn);
                    for (e, n) in &m.ecosystems {
                        println!("  {e:<20} {n}");
                    }
                }
            }
            Ok(())
        }
    }
}
