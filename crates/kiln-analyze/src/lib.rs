//! Looking at images without running them: `kiln analyze` (per-layer contents, dive's
//! efficiency and wasted bytes, CI thresholds, SARIF tied to Dockerfile lines) and
//! `kiln diff` (two releases' config, files, packages and vulnerabilities). Layers are read
//! through kiln-oci's one streaming layer walk and never unpacked to disk.

pub mod ci;
pub mod diff;
pub mod efficiency;
pub mod error;
pub mod files;
pub mod render;
pub mod report;
pub mod sarif;

pub use error::AnalyzeError;

use kiln_oci::Store;
use kiln_oci::docker_archive::DockerArchive;
use kiln_oci::image::Image;
use kiln_oci::walk::{self, LayerInput, LayerWalk, Visitor};

/// Where an image's layers are read from.
#[derive(Clone, Copy)]
pub enum Layers<'a> {
    /// Blobs of an OCI layout: the store, an `oci:` directory, or a staging layout.
    Layout(&'a Store),
    /// The layer tars of a `docker save` archive, read where they lie.
    DockerArchive(&'a DockerArchive),
}

/// Walks every layer of `img` once, in parallel, with a visitor per layer.
pub fn walk_image<V, F>(
    reference: &str,
    layers: Layers<'_>,
    img: &Image,
    jobs: usize,
    visitor: F,
) -> Result<Vec<LayerWalk<V>>, AnalyzeError>
where
    V: Visitor + Send,
    F: Fn(usize) -> V + Sync,
{
    let inputs = match layers {
        Layers::Layout(layout) => img
            .manifest
            .layers
            .iter()
            .map(|d| LayerInput::blob(layout, d))
            .collect(),
        Layers::DockerArchive(a) => a.layer_inputs(),
    };
    walk::walk_layers(inputs, jobs, visitor).map_err(|source| AnalyzeError::Walk {
        image: reference.to_string(),
        source,
    })
}
