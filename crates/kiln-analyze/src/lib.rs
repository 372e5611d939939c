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
use kiln_oci::image::Image;
use kiln_oci::walk::{self, LayerInput, LayerWalk, Visitor};

/// Walks every layer of `img` (blobs in `layout`) once, in parallel, with a visitor per layer.
pub fn walk_image<V, F>(
    reference: &str,
    layout: &Store,
    img: &Image,
    jobs: usize,
    visitor: F,
) -> Result<Vec<LayerWalk<V>>, AnalyzeError>
where
    V: Visitor + Send,
    F: Fn(usize) -> V + Sync,
{
    let inputs = img
        .manifest
        .layers
        .iter()
        .map(|d| LayerInput::blob(layout, d))
        .collect();
    walk::walk_layers(inputs, jobs, visitor).map_err(|source| AnalyzeError::Walk {
        image: reference.to_string(),
        source,
    })
}
