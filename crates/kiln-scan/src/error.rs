//! Why a scan could not run.

use crate::db;

/// Why a scan could not run (findings are not errors).
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// A layer could not be read, or does not match its digest.
    #[error(
        "layer {index} ({digest}): {reason} (hint: the image is damaged or was tampered with; pull, load or build it again)"
    )]
    Layer {
        /// 1-based layer number.
        index: usize,
        /// The layer's digest.
        digest: String,
        /// What went wrong.
        reason: String,
    },
    /// Cataloguing packages failed.
    #[error(transparent)]
    Sbom(#[from] kiln_sbom::SbomError),
    /// The vulnerability database failed.
    #[error(transparent)]
    Db(#[from] db::DbError),
    /// Vulnerabilities were asked for, but there is nothing to check them against: a scan
    /// that checked nothing must not look like a clean one.
    #[error(
        "no vulnerability database at {location}, so vulnerabilities cannot be checked (hint: import OSV data with `kiln db import PATH` (OSV JSON files, a directory of them, or OSV's all.zip), or scan without them: --scanners secret,misconfig)"
    )]
    NoDatabase {
        /// Where the database was looked for.
        location: String,
    },
}
