//! `kiln analyze`'s report: per layer its size, what it added, changed and removed and the
//! instruction that made it; for the image dive's efficiency and wasted bytes, each wasted
//! path tied to the layers (and, for kiln-built images, the Dockerfile lines) involved.

use kiln_oci::image::Image;
use kiln_oci::walk::{Change, Tree};
use serde::Serialize;

use crate::Layers;
use crate::efficiency;
use crate::error::AnalyzeError;

/// One layer.
#[derive(Debug, Clone, Serialize)]
pub struct LayerReport {
    /// 0-based index.
    pub index: usize,
    /// Blob digest.
    pub digest: String,
    /// Compressed size (the blob).
    pub compressed_size: u64,
    /// Sum of its files' sizes (dive's layer size).
    pub size_bytes: u64,
    /// Paths it added.
    pub added: usize,
    /// Paths it changed (replaced content or metadata).
    pub changed: usize,
    /// Paths it removed.
    pub removed: usize,
    /// The instruction from history (`created_by`), when there is one.
    pub created_by: Option<String>,
    /// `Dockerfile:LINE` of that instruction, when the Dockerfile was given and has it.
    pub source: Option<String>,
}

/// A path stored more than once.
#[derive(Debug, Clone, Serialize)]
pub struct WastedFile {
    /// The path.
    pub path: String,
    /// Layer leaves it appears in.
    pub count: usize,
    /// Bytes over all of them (dive's cumulative size).
    pub size_bytes: u64,
    /// 0-based layers involved.
    pub layers: Vec<usize>,
    /// `Dockerfile:LINE` of the layers involved, where known.
    pub sources: Vec<String>,
}

/// The whole report (`--format json`).
#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
    /// The image as named.
    pub image: String,
    /// Its manifest digest.
    pub digest: String,
    /// Layers, base first.
    pub layers: Vec<LayerReport>,
    /// Σ layer sizes.
    pub size_bytes: u64,
    /// Σ layer sizes but the first (dive's "user" bytes).
    pub user_size_bytes: u64,
    /// dive's wasted bytes.
    pub wasted_bytes: u64,
    /// wasted / user bytes (`null` with a single layer).
    pub wasted_user_percent: Option<f64>,
    /// dive's efficiency score.
    pub efficiency: f64,
    /// Paths stored more than once, largest first.
    pub wasted_files: Vec<WastedFile>,
}

/// The instructions that made each layer: history entries that are not `empty_layer`, in order.
pub fn layer_instructions(img: &Image) -> Vec<Option<String>> {
    let mut hist = img.config.history.iter().filter(|h| !h.empty_layer);
    (0..img.manifest.layers.len())
        .map(|_| hist.next().and_then(|h| h.created_by.clone()))
        .collect()
}

/// `Dockerfile:LINE` for `created_by`: the last instruction written exactly so (kiln's
/// history records the instruction as BuildKit sees it).
pub fn source_line(
    dockerfile: Option<&(String, kiln_dockerfile::ast::Dockerfile)>,
    created_by: &str,
) -> Option<String> {
    let (name, df) = dockerfile?;
    df.instructions
        .iter()
        .rev()
        .find(|i| i.original == created_by)
        .map(|i| format!("{name}:{}", i.line))
}

/// Reads every layer of `img` from `layers` once, in parallel, and builds the report.
pub fn analyze(
    reference: &str,
    layers: Layers<'_>,
    img: &Image,
    dockerfile: Option<&(String, kiln_dockerfile::ast::Dockerfile)>,
    jobs: usize,
) -> Result<Analysis, AnalyzeError> {
    let walked = crate::walk_image(reference, layers, img, jobs, |_| ())?;
    let changes: Vec<Vec<Change>> = walked.into_iter().map(|w| w.changes).collect();
    let eff = efficiency::analyze(&changes);
    let instructions = layer_instructions(img);
    let mut tree = Tree::default();
    let layers: Vec<LayerReport> = changes
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let diff = tree.apply(i, c);
            let created_by = instructions[i].clone();
            LayerReport {
                index: i,
                digest: img.manifest.layers[i].digest.to_string(),
                compressed_size: img.manifest.layers[i].size,
                size_bytes: eff.layer_sizes[i],
                added: diff.added.len(),
                changed: diff.changed.len(),
                removed: diff.removed.len(),
                source: created_by.as_deref().and_then(|c| source_line(dockerfile, c)),
                created_by,
            }
        })
        .collect();
    let size_bytes: u64 = eff.layer_sizes.iter().sum();
    let user_size_bytes = size_bytes - eff.layer_sizes.first().copied().unwrap_or(0);
    let wasted_files = eff
        .inefficiencies
        .iter()
        .map(|f| {
            let mut sources: Vec<String> = f.layers.iter().filter_map(|l| layers[*l].source.clone()).collect();
            sources.dedup();
            WastedFile {
                path: f.path.clone(),
                count: f.count,
                size_bytes: f.cumulative_size,
                layers: f.layers.clone(),
                sources,
            }
        })
        .collect();
    Ok(Analysis {
        image: reference.to_string(),
        digest: img.descriptor.digest.to_string(),
        layers,
        size_bytes,
        user_size_bytes,
        wasted_bytes: eff.wasted_bytes,
        wasted_user_percent: (user_size_bytes > 0).then(|| eff.wasted_bytes as f64 / user_size_bytes as f64),
        efficiency: eff.score,
        wasted_files,
    })
}
