//! `kiln sbom`, and the SBOM that `kiln build` attaches to every image it builds.
//!
//! Attached SBOMs are OCI artifact manifests (empty config, one layer: the document) whose
//! `subject` is the image, one per format (`application/spdx+json`,
//! `application/vnd.cyclonedx+json`). In the local store they are untagged index.json
//! entries carrying their `artifactType`, which is how OCI layouts record referrers (oras
//! does the same); `kiln push` sends them after the image through the registry session's
//! `attach` (referrers API, or the `sha256-<hex>` tag schema).

use std::io::Write;

use kiln_oci::Store;
use kiln_oci::image::{Image, rfc3339};
use kiln_sbom::{Options, Sbom};

use crate::cli::{SbomArgs, SbomFormat};
use crate::error::CliError;

impl From<kiln_sbom::SbomError> for CliError {
    fn from(e: kiln_sbom::SbomError) -> Self {
        CliError::input(e)
    }
}

/// SOURCE_DATE_EPOCH as RFC 3339, when set and valid.
fn source_date_epoch() -> Option<String> {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .map(rfc3339)
}

fn render(sbom: &Sbom, format: SbomFormat) -> Vec<u8> {
    match format {
        SbomFormat::SpdxJson => kiln_sbom::spdx::to_json(sbom),
        SbomFormat::CyclonedxJson => kiln_sbom::cyclonedx::to_json(sbom),
        SbomFormat::Table => kiln_sbom::table::render(sbom).into_bytes(),
        SbomFormat::Json => {
            let mut v = serde_json::to_vec_pretty(sbom).expect("the SBOM model serialises");
            v.push(b'\n');
            v
        }
    }
}

/// `kiln sbom IMAGE`.
pub fn sbom(store: &Store, args: &SbomArgs) -> Result<(), CliError> {
    let platform = super::parse_platform(&args.platform)?;
    let registries = super::registry_access(&args.registry)?;
    let opened = super::open_image(store, &args.image, platform.as_ref(), &registries)?;
    let sbom = catalog(opened.layout()?, &opened.image, &args.image)?;
    for w in &sbom.warnings {
        eprintln!("warning: {w}");
    }
    let bytes = render(&sbom, args.output);
    match &args.file {
        Some(f) => std::fs::write(f, &bytes).map_err(|e| {
            CliError::env(format!(
                "{}: {e} (hint: check the directory exists and is writable)",
                f.display()
            ))
        })?,
        None => match std::io::stdout().write_all(&bytes) {
            // `kiln sbom IMAGE | head` is not an error.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            r => r.map_err(|e| CliError::env(format!("writing to stdout: {e}")))?,
        },
    }
    Ok(())
}

fn catalog(layout: &Store, image: &Image, name: &str) -> Result<Sbom, CliError> {
    Ok(kiln_sbom::catalog_image(
        layout,
        image,
        name,
        source_date_epoch(),
        &Options::default(),
    )?)
}
