//! `kiln sbom`, and the SBOM that `kiln build` attaches to every image it builds.
//!
//! Attached SBOMs are OCI artifact manifests (empty config, one layer: the document) whose
//! `subject` is the image, one per format (`application/spdx+json`,
//! `application/vnd.cyclonedx+json`). In the local store they are untagged index.json
//! entries carrying their `artifactType`, which is how OCI layouts record referrers (oras
//! does the same); `kiln push` sends them after the image through the registry session's
//! `attach` (referrers API, or the `sha256-<hex>` tag schema).

use std::collections::BTreeMap;
use std::io::Write;

use kiln_oci::image::{Image, read_image, rfc3339};
use kiln_oci::reference::ImageRef;
use kiln_oci::{Descriptor, Store};
use kiln_registry::Session;
use kiln_registry::ops::{Select, artifact_manifest};
use kiln_sbom::{Options, Sbom};

use crate::cli::{SbomArgs, SbomFormat};
use crate::error::CliError;

/// Media type (and artifactType) of an attached SPDX document.
pub const SPDX_MEDIA_TYPE: &str = "application/spdx+json";
/// Media type (and artifactType) of an attached CycloneDX document.
pub const CYCLONEDX_MEDIA_TYPE: &str = "application/vnd.cyclonedx+json";

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
    let r = ImageRef::parse(&args.image)?;
    // A registry name not in the store is read from its registry into a temp layout.
    let remote = match &r {
        ImageRef::Registry(n) => Some(n.clone()),
        ImageRef::Store(n) if n.registry_host().is_some() && store.resolve(&n.store_key())?.is_none() => {
            Some(n.clone())
        }
        _ => None,
    };
    let (sbom, _keep) = match remote {
        Some(name) => {
            let _lease = store.lease()?;
            let tmp = store.tmp_dir();
            std::fs::create_dir_all(&tmp).map_err(|e| CliError::env(format!("{}: {e}", tmp.display())))?;
            let dir = tempfile::Builder::new()
                .prefix("sbom-")
                .tempdir_in(&tmp)
                .map_err(|e| CliError::env(format!("{}: {e}", tmp.display())))?;
            let staging = Store::open(dir.path())?;
            let s = Session::new(crate::commands::registry::options(&args.registry)?)?;
            let select = Select::Platform(platform.clone().unwrap_or_else(kiln_build::platform::host));
            let pulled = s.pull(&staging, &name, &select, None)?;
            let image = read_image(&staging, &pulled.image, platform.as_ref())?;
            (catalog(&staging, &image, &args.image)?, Some(dir))
        }
        None => {
            let opened = kiln_oci::transport::open_image(store, &r, platform.as_ref())?;
            (catalog(&opened.layout, &opened.image, &args.image)?, None)
        }
    };
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

/// Stores `doc` as an artifact whose subject is `subject` and lists it in index.json
/// (untagged, with its artifactType: the local-referrer convention kiln-sign uses too).
fn store_artifact(
    store: &Store,
    subject: &Descriptor,
    artifact_type: &str,
    doc: &[u8],
) -> Result<Descriptor, CliError> {
    let _lease = store.lease()?;
    let layers = [(artifact_type.to_string(), doc.to_vec())];
    let (desc, _) = artifact_manifest(store, subject, artifact_type, &layers, BTreeMap::new())?;
    store.add_untagged(&desc)?;
    Ok(desc)
}

/// What `kiln build` asks for.
pub struct BuildSbom<'a> {
    /// The built image's manifest descriptor.
    pub image: &'a Descriptor,
    /// Builder stages' layers (for `--sbom-stages`).
    pub stages: Vec<Vec<Descriptor>>,
    /// SOURCE_DATE_EPOCH of the build.
    pub source_date_epoch: Option<i64>,
}

/// Catalogues a built image (and builder stages) and attaches SPDX and CycloneDX
/// artifacts to it in the store. Returns how many packages were found.
pub fn attach_to_build(store: &Store, b: &BuildSbom<'_>, warn: &dyn Fn(&str)) -> Result<Option<usize>, CliError> {
    // An image's SBOM depends only on its content, so an image that already has both
    // documents (a rebuild that changed nothing) is not catalogued again.
    if b.stages.is_empty()
        && !store.referrers(&b.image.digest, Some(SPDX_MEDIA_TYPE))?.is_empty()
        && !store.referrers(&b.image.digest, Some(CYCLONEDX_MEDIA_TYPE))?.is_empty()
    {
        return Ok(None);
    }
    let image = read_image(store, b.image, None)?;
    let opts = Options::default();
    let created = b.source_date_epoch.map(rfc3339).or_else(source_date_epoch);
    let mut sbom = kiln_sbom::catalog_image(store, &image, &image.descriptor.digest.to_string(), created, &opts)?;
    for layers in &b.stages {
        kiln_sbom::add_build_stage(&mut sbom, store, layers, &opts)?;
    }
    for w in &sbom.warnings {
        warn(&format!("sbom: {w}"));
    }
    store_artifact(
        store,
        &image.descriptor,
        SPDX_MEDIA_TYPE,
        &kiln_sbom::spdx::to_json(&sbom),
    )?;
    store_artifact(
        store,
        &image.descriptor,
        CYCLONEDX_MEDIA_TYPE,
        &kiln_sbom::cyclonedx::to_json(&sbom),
    )?;
    Ok(Some(sbom.packages.len()))
}

/// The builder stages of a plan (needed, not the target), each as a plan targeting it.
pub fn stage_plans(plan: &kiln_build::plan::Plan) -> Vec<kiln_build::plan::Plan> {
    let mut out = vec![];
    for st in plan.needed_stages() {
        if st.index == plan.target {
            continue;
        }
        let mut p = plan.clone();
        p.target = st.index;
        let mut keep = vec![false; p.stages.len()];
        let mut todo = vec![st.index];
        while let Some(i) = todo.pop() {
            if !keep[i] {
                keep[i] = true;
                todo.extend(plan.stages[i].depends_on.iter().copied());
            }
        }
        for (s, k) in p.stages.iter_mut().zip(keep) {
            s.needed = k;
        }
        out.push(p);
    }
    out
}
