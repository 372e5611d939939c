//! An image made ready to run: its config, its layers unpacked as the build's snapshots
//! (shared with RUN steps, made once per chain of layers), and a read-only view of its
//! final filesystem for looking up users and paths.

use std::path::PathBuf;

use kiln_build::solver::{self, LayerRef};
use kiln_build::tree::LayeredTree;
use kiln_oci::image::ImageConfig;
use kiln_oci::opened::Scope;
use kiln_oci::reference::ImageRef;
use kiln_oci::transport::{self, OpenedImage, Remote};
use kiln_oci::{Descriptor, Store};

use crate::error::RuntimeError;

/// A runnable image.
pub struct Prepared {
    /// The image as the user named it.
    pub reference: String,
    /// Its manifest descriptor (the digest `kiln harden` pins).
    pub manifest: Descriptor,
    /// Its config.
    pub config: ImageConfig,
    /// Snapshot directories, bottom first: the overlay's lower dirs.
    pub lowers: Vec<PathBuf>,
    /// The final filesystem, read through the snapshots.
    pub view: LayeredTree,
}

/// Opens `reference` through kiln's one image-source interface (registries per `remote`)
/// and checks it is sane.
pub fn open(store: &Store, reference: &str, remote: Remote<'_>) -> Result<OpenedImage, RuntimeError> {
    let r = ImageRef::parse(reference)
        .map_err(|e| RuntimeError::input(e.to_string(), "name an image in the store, e.g. hello:latest"))?;
    let opened = transport::open_image(store, &r, None, remote).map_err(|e| {
        let hint = "list images with `kiln images`";
        if e.is_input() {
            RuntimeError::input(e.to_string(), hint)
        } else {
            RuntimeError::env(e.to_string(), hint)
        }
    })?;
    let img = &opened.image;
    if img.manifest.layers.len() != img.config.rootfs.diff_ids.len() {
        return Err(RuntimeError::input(
            format!(
                "image {reference} has {} layers but {} diff_ids",
                img.manifest.layers.len(),
                img.config.rootfs.diff_ids.len()
            ),
            "the image is malformed; rebuild or re-pull it",
        ));
    }
    Ok(opened)
}

/// Opens `reference` and unpacks its layers into the store's snapshots. An image from an
/// `oci:` layout, an archive or a registry is copied into the store first (this platform's
/// manifest), so its blobs are checked once and its snapshots are reused next time.
pub fn prepare(store: &Store, reference: &str, remote: Remote<'_>) -> Result<Prepared, RuntimeError> {
    let opened = open(store, reference, remote)?;
    opened
        .copy_into(store, Scope::Platform)
        .map_err(|e| RuntimeError::env(e.to_string(), "check free space under $KILN_HOME"))?;
    let img = opened.image;
    let layers: Vec<LayerRef> = solver::layer_refs(&img);
    let lowers = kiln_build::snapshot::Snapshotter::new(store).stack(&layers, reference)?;
    Ok(Prepared {
        reference: reference.to_string(),
        manifest: img.descriptor,
        config: img.config,
        view: LayeredTree::new(lowers.clone()),
        lowers,
    })
}
