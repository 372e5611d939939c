//! Where a built image goes besides the store: `--output` files and directories, and
//! `--push` to every `-t` name's registry (with the SBOMs, provenance and signatures kept
//! beside it).

use kiln_oci::reference::{ImageRef, Name};
use kiln_oci::{Descriptor, Store};
use kiln_registry::{Options, Session};

use super::PipelineError;
use crate::solver::Progress;

/// The registry a `-t` name points at, or why `--push` cannot use it.
pub fn push_target(tag: &str) -> Result<Name, PipelineError> {
    let bad = |why: String| {
        PipelineError::input(
            format!("--push -t {tag:?}: {why}"),
            "write HOST[:PORT]/REPO:TAG, e.g. 127.0.0.1:5000/app:1, or docker://NAME for Docker Hub",
        )
    };
    match ImageRef::parse(tag).map_err(|e| bad(e.to_string()))? {
        ImageRef::Registry(n) => Ok(n),
        ImageRef::Store(n) if n.registry_host().is_some() => Ok(n),
        _ => Err(bad("the name names no registry".into())),
    }
}

/// Writes the image to each `--output` destination (an OCI layout, an oci-archive or a
/// docker-archive), named with the build's tags.
pub fn export(store: &Store, image: &Descriptor, outputs: &[ImageRef], tags: &[String]) -> Result<(), PipelineError> {
    for dest in outputs {
        kiln_oci::transport::export(store, image, dest, tags)?;
    }
    Ok(())
}

/// `--push`: the image to every `-t` name, then what is kept beside it.
pub fn push(
    store: &Store,
    registry: &Options,
    image: &Descriptor,
    tags: &[String],
    progress: &dyn Progress,
) -> Result<(), PipelineError> {
    if tags.is_empty() {
        return Err(PipelineError::input(
            "--push needs a -t NAME to push to",
            "-t HOST/REPO:TAG",
        ));
    }
    let s = Session::new(registry.clone())?;
    for t in tags {
        let n = push_target(t)?;
        let pushed = s.push(store, image, &n)?;
        progress.note(&format!(
            "pushed {n}: {} blobs uploaded ({}), {} mounted, {} already there",
            pushed.uploaded,
            kiln_registry::repo::human_size(pushed.bytes),
            pushed.mounted,
            pushed.present
        ));
        kiln_sign::place::push_along(&s, store, image, &n)?;
    }
    Ok(())
}
