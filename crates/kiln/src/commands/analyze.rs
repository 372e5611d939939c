//! `kiln analyze`: per-layer contents, dive's efficiency and wasted bytes, CI thresholds.

use std::path::PathBuf;

use clap::Args;
use kiln_analyze::{AnalyzeError, Layers, ci, report, sarif};
use kiln_oci::Store;
use kiln_oci::docker_archive::DockerArchive;
use kiln_oci::image::Image;
use kiln_oci::transport::OpenedImage;

use crate::error::CliError;

impl From<AnalyzeError> for CliError {
    fn from(e: AnalyzeError) -> Self {
        CliError {
            code: e.exit_code(),
            message: e.to_string(),
        }
    }
}

/// `kiln analyze` flags (dive's CI names, in kiln's kebab case).
#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// Output: table, json or sarif.
    #[arg(long, default_value = "table", value_parser = ["table", "json", "sarif"])]
    pub format: String,
    /// Check the CI rules (from .dive-ci in the current directory, or --ci-config, then the flags); exit 1 when one fails.
    #[arg(long)]
    pub ci: bool,
    /// A dive CI file (default: ./.dive-ci when it exists).
    #[arg(long, value_name = "FILE")]
    pub ci_config: Option<PathBuf>,
    /// Fail --ci when efficiency is below this ratio (dive's default 0.9).
    #[arg(long, value_name = "RATIO")]
    pub lowest_efficiency: Option<String>,
    /// Fail --ci when more bytes than this are wasted (e.g. 20MB; dive's default: disabled).
    #[arg(long, value_name = "BYTES")]
    pub highest_wasted_bytes: Option<String>,
    /// Fail --ci when wasted bytes over the non-base layers' bytes exceed this ratio (dive's default 0.1).
    #[arg(long, value_name = "RATIO")]
    pub highest_user_wasted_percent: Option<String>,
    /// The Dockerfile the image was built from, to tie layers and waste to its lines.
    #[arg(short = 'f', long = "file", value_name = "DOCKERFILE")]
    pub dockerfile: Option<PathBuf>,
    /// The platform to take from a multi-arch image.
    #[arg(long)]
    pub platform: Option<String>,
    /// The image.
    pub image: String,
    /// Registry settings (for an image not in the store).
    #[command(flatten)]
    pub registry: crate::cli::RegistryFlags,
}

fn rules(a: &AnalyzeArgs) -> Result<ci::Rules, CliError> {
    let file = a
        .ci_config
        .clone()
        .or_else(|| Some(PathBuf::from(".dive-ci")).filter(|p| p.is_file()));
    let mut r = match file {
        Some(f) => ci::read_file(&f)?,
        None => ci::Rules::default(),
    };
    if let Some(v) = &a.lowest_efficiency {
        r.lowest_efficiency = ci::parse_ratio(v, "--lowest-efficiency")?;
    }
    if let Some(v) = &a.highest_wasted_bytes {
        r.highest_wasted_bytes = ci::parse_bytes(v, "--highest-wasted-bytes")?;
    }
    if let Some(v) = &a.highest_user_wasted_percent {
        r.highest_user_wasted_percent = ci::parse_ratio(v, "--highest-user-wasted-percent")?;
    }
    Ok(r)
}

fn dockerfile(a: &AnalyzeArgs) -> Result<Option<(String, kiln_dockerfile::ast::Dockerfile)>, CliError> {
    let Some(p) = &a.dockerfile else { return Ok(None) };
    let text = std::fs::read_to_string(p).map_err(|e| CliError::input(format!("{}: {e}", p.display())))?;
    let df = kiln_dockerfile::parse(&text).map_err(|e| CliError::input(format!("{}: {e}", p.display())))?;
    Ok(Some((p.display().to_string(), df)))
}

fn human(n: u64) -> String {
    super::images::human_size(n)
}

fn table(a: &report::Analysis, results: &[ci::RuleResult]) {
    println!(
        "{:<6} {:>10} {:>7} {:>8} {:>8}  INSTRUCTION",
        "LAYER", "SIZE", "ADDED", "CHANGED", "REMOVED"
    );
    for l in &a.layers {
        let mut by: String = l.created_by.clone().unwrap_or_else(|| "(no history)".into());
        if by.chars().count() > 70 {
            by = by.chars().take(69).collect::<String>() + "…";
        }
        let src = l.source.as_ref().map(|s| format!("  ({s})")).unwrap_or_default();
        println!(
            "{:<6} {:>10} {:>7} {:>8} {:>8}  {by}{src}",
            l.index + 1,
            human(l.size_bytes),
            l.added,
            l.changed,
            l.removed
        );
    }
    println!();
    println!("image size:        {} ({} bytes)", human(a.size_bytes), a.size_bytes);
    println!(
        "wasted bytes:      {} ({} bytes)",
        human(a.wasted_bytes),
        a.wasted_bytes
    );
    match a.wasted_user_percent {
        Some(p) => println!("user wasted:       {:.4} %", p * 100.0),
        None => println!("user wasted:       n/a (one layer)"),
    }
    println!("efficiency:        {:.4} %", a.efficiency * 100.0);
    if !a.wasted_files.is_empty() {
        println!();
        println!("{:>5} {:>12}  PATH", "COUNT", "WASTED");
        for f in a.wasted_files.iter().take(50) {
            let src = if f.sources.is_empty() {
                String::new()
            } else {
                format!("  ({})", f.sources.join(", "))
            };
            println!("{:>5} {:>12}  {}{src}", f.count, human(f.size_bytes), f.path);
        }
    }
    if !results.is_empty() {
        println!();
        for r in results {
            let msg = if r.message.is_empty() {
                String::new()
            } else {
                format!(": {}", r.message)
            };
            println!("{}: {}{msg}", r.status.to_uppercase(), r.rule);
        }
    }
}

/// An image opened for the commands that only walk its layers (`analyze`, `diff`): a plain
/// docker archive is read in place (no temp layout, no recompression of its layers);
/// anything else is opened as every command opens it.
pub(crate) enum Walkable {
    /// A `docker save` tar, read where it lies.
    Archive(Box<DockerArchive>),
    /// Any other image.
    Opened(Box<OpenedImage>),
}

impl Walkable {
    pub(crate) fn open(
        store: &Store,
        image: &str,
        platform: Option<&kiln_oci::Platform>,
        registries: &kiln_registry::RegistryAccess,
    ) -> Result<Walkable, CliError> {
        let r = crate::names::parse_image(store, image)?;
        if let Some(a) = DockerArchive::open(&r)? {
            return Ok(Walkable::Archive(Box::new(a)));
        }
        Ok(Walkable::Opened(Box::new(super::open_image(
            store, image, platform, registries,
        )?)))
    }

    pub(crate) fn image(&self) -> &Image {
        match self {
            Walkable::Archive(a) => &a.image,
            Walkable::Opened(o) => &o.image,
        }
    }

    pub(crate) fn layers(&self) -> Result<Layers<'_>, CliError> {
        Ok(match self {
            Walkable::Archive(a) => Layers::DockerArchive(a),
            Walkable::Opened(o) => Layers::Layout(o.layout()?),
        })
    }
}

/// Analyzes an image; with `--ci`, exit 1 when a rule fails.
pub fn analyze(store: &Store, a: &AnalyzeArgs) -> Result<(), CliError> {
    let ci_rules = if a.ci { Some(rules(a)?) } else { None };
    let df = dockerfile(a)?;
    let platform = super::parse_platform(&a.platform)?;
    let registries = super::registry_access(&a.registry)?;
    let opened = Walkable::open(store, &a.image, platform.as_ref(), &registries)?;
    let jobs = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let analysis = report::analyze(&a.image, opened.layers()?, opened.image(), df.as_ref(), jobs)?;
    let results = ci_rules
        .as_ref()
        .map(|r| ci::evaluate(r, &analysis))
        .unwrap_or_default();
    match a.format.as_str() {
        "json" => {
            let mut v = serde_json::to_value(&analysis).expect("analysis serialises");
            if a.ci {
                v["ci"] = serde_json::to_value(&results).expect("results serialise");
            }
            println!("{}", serde_json::to_string_pretty(&v).expect("json"));
        }
        "sarif" => println!("{}", sarif::to_sarif(&analysis, &results).to_json()),
        _ => table(&analysis, &results),
    }
    if results.iter().any(|r| r.status == "fail") {
        return Err(CliError {
            code: 1,
            message: format!(
                "{} CI rule(s) failed for {}",
                results.iter().filter(|r| r.status == "fail").count(),
                a.image
            ),
        });
    }
    Ok(())
}
