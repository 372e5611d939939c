//! Scanning images for what should stop them shipping: known vulnerabilities in their
//! packages, secrets in any layer, and risky configuration.
//!
//! [`scan_image`] works on any image kiln can open (store, layouts, archives, registries via
//! `kiln_oci::transport`). Every scanner shares one streaming pass over the layers
//! ([`layers`], on `kiln_oci::walk`), so each layer is read once: packages are catalogued by
//! `kiln-sbom`'s collector and matched against an offline OSV database ([`db`]) with each
//! ecosystem's own version order ([`version`]); secrets are searched in every file's bytes
//! ([`secrets`]), so a file deleted by a later layer is still reported (it is still in the
//! image); misconfiguration checks ([`misconfig`]) read the config and the final
//! filesystem's metadata. Nothing is unpacked to disk.

#![deny(missing_docs)]

pub mod archive;
pub mod cvss;
pub mod db;
pub mod error;
pub mod ignore;
pub mod layers;
pub mod misconfig;
pub mod model;
pub mod osv;
pub mod owned;
pub mod report;
pub mod secrets;
pub mod version;
pub mod vuln;
pub mod zip;

use kiln_oci::Store;
use kiln_oci::image::{Image, ImageConfig};
use kiln_oci::walk::LayerInput;

pub use archive::scan_docker_archive;
pub use error::ScanError;
pub use model::{
    MisconfigFinding, NotChecked, Options, Report, Scanners, SecretFinding, SecretSource, Severity, VulnFinding,
};

/// Scans `image` (blobs in `layout`).
pub fn scan_image(layout: &Store, image: &Image, name: &str, opts: &Options) -> Result<Report, ScanError> {
    let mut report = Report::new(
        name,
        image.descriptor.digest.to_string(),
        image.manifest.layers.iter().map(|d| d.digest.to_string()).collect(),
    );
    let inputs = image
        .manifest
        .layers
        .iter()
        .map(|d| LayerInput::blob(layout, d))
        .collect();
    scan_layers(&mut report, inputs, &image.config, Some(image), opts)?;
    Ok(report)
}

/// Runs every asked-for scanner over one pass of `inputs` (vulnerabilities need `image`, whose
/// layers the catalogers name packages by).
fn scan_layers(
    report: &mut Report,
    inputs: Vec<LayerInput<'_>>,
    config: &ImageConfig,
    image: Option<&Image>,
    opts: &Options,
) -> Result<(), ScanError> {
    // Refuse before reading a byte when vulnerabilities cannot be checked.
    let db = match image {
        Some(image) if opts.scanners.vuln => Some((vuln::open(opts, report)?, image)),
        _ => None,
    };
    if !(opts.scanners.secret || opts.scanners.misconfig || db.is_some()) {
        return Ok(());
    }
    let pass = layers::pass(
        inputs,
        &layers::PassOptions {
            secrets: opts.scanners.secret,
            catalog: db.is_some().then(|| kiln_sbom::Options {
                jobs: opts.jobs,
                ..Default::default()
            }),
            jobs: opts.jobs,
        },
    )?;
    if opts.scanners.secret {
        file_secrets(report, &pass);
        report.secrets.extend(config_secrets(config));
    }
    if opts.scanners.misconfig {
        report.misconfigurations = misconfig::check(config, &pass.tree);
    }
    if let (Some((db, image)), Some(fs)) = (db, &pass.fs) {
        let sbom = kiln_sbom::catalog_walked(fs, image, &report.name, None);
        vuln::scan(&db, &sbom, image, report)?;
    }
    Ok(())
}

/// The pass's secrets as findings, each with the later layer that hid its file, if any.
fn file_secrets(report: &mut Report, pass: &layers::Pass) {
    let removals = pass.removals();
    for (i, found) in pass.secrets.iter().enumerate() {
        for f in found {
            let gone = removals.after(&f.path, i);
            report.secrets.push(SecretFinding {
                rule: f.rule.id,
                title: f.rule.title,
                severity: f.rule.severity,
                source: SecretSource::File,
                location: f.path.clone(),
                line: f.line,
                offset: f.binary.then_some(f.offset),
                value: f.redacted.clone(),
                layer_index: Some(i + 1),
                layer: report.layers.get(i).cloned(),
                removed_in_layer: gone.map(|(j, _)| j + 1),
                removed: gone.map(|(_, g)| g),
            });
        }
    }
}

/// Secrets in Env, labels, history and the command fields of the config.
fn config_secrets(config: &ImageConfig) -> Vec<SecretFinding> {
    let mut texts: Vec<(SecretSource, String, String)> = vec![];
    let c = &config.config;
    for e in c.env.iter().flatten() {
        let key = e.split('=').next().unwrap_or(e).to_string();
        texts.push((SecretSource::Env, key, e.clone()));
    }
    for (k, v) in c.labels.iter().flatten() {
        texts.push((SecretSource::Label, k.clone(), format!("{k}={v}")));
    }
    for (i, h) in config.history.iter().enumerate() {
        if let Some(cb) = &h.created_by {
            texts.push((SecretSource::History, format!("history[{i}]"), cb.clone()));
        }
        if let Some(cm) = &h.comment {
            texts.push((SecretSource::History, format!("history[{i}].comment"), cm.clone()));
        }
    }
    for (field, v) in [("Cmd", &c.cmd), ("Entrypoint", &c.entrypoint)] {
        if let Some(v) = v {
            texts.push((SecretSource::Config, field.to_string(), v.join(" ")));
        }
    }
    let mut out = vec![];
    for (source, location, text) in texts {
        for h in secrets::scan(text.as_bytes()) {
            out.push(SecretFinding {
                rule: h.rule.id,
                title: h.rule.title,
                severity: h.rule.severity,
                source,
                location: location.clone(),
                line: None,
                offset: None,
                value: secrets::redact(&text.as_bytes()[h.start..h.end]),
                layer_index: None,
                layer: None,
                removed_in_layer: None,
                removed: None,
            });
        }
    }
    out
}
