//! Build errors. Each one says where (Dockerfile line, image, layer) and what to do.

use crate::frontend::FrontendError;

/// A step failed for a reason the user can fix; the solver adds the location.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (hint: {hint})")]
pub struct StepError {
    /// What went wrong.
    pub message: String,
    /// What to do about it.
    pub hint: String,
}

impl StepError {
    /// A step error with a hint.
    pub fn new(message: impl Into<String>, hint: impl Into<String>) -> StepError {
        StepError {
            message: message.into(),
            hint: hint.into(),
        }
    }
}

/// Everything `build` can fail with.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The Dockerfile is malformed or refers to something that does not exist.
    #[error(transparent)]
    Frontend(#[from] FrontendError),
    /// A step failed on its input.
    #[error("{file}:{line}: {error}")]
    Step {
        /// Dockerfile name.
        file: String,
        /// Line of the instruction.
        line: usize,
        /// The failure.
        error: StepError,
    },
    /// A step cannot run on this host as it is set up (a foreign architecture without QEMU
    /// emulation): the environment's fault, exit 3.
    #[error("{file}:{line}: {error}")]
    Environment {
        /// Dockerfile name.
        file: String,
        /// Line of the instruction.
        line: usize,
        /// What is missing and how to add it.
        error: StepError,
    },
    /// A RUN step ran and exited with a failure.
    #[error("{file}:{line}: `{instruction}` failed with exit code {code}{}", if tail.is_empty() { String::new() } else { format!("; its last output:\n  {}", tail.join("\n  ")) })]
    RunFailed {
        /// Dockerfile name.
        file: String,
        /// Line of the instruction.
        line: usize,
        /// The instruction as written.
        instruction: String,
        /// Exit code.
        code: i32,
        /// Up to the last 20 lines of output.
        tail: Vec<String>,
    },
    /// The store failed (disk, corruption).
    #[error(transparent)]
    Store(#[from] kiln_oci::StoreError),
    /// Writing a layer failed.
    #[error(transparent)]
    Layer(#[from] kiln_oci::layer::LayerError),
    /// Unpacking a base layer failed.
    #[error("image {image}, layer {layer}: {source}")]
    Unpack {
        /// Image being unpacked.
        image: String,
        /// Layer digest.
        layer: String,
        /// The unpack failure (names the entry).
        source: kiln_oci::unpack::UnpackError,
    },
    /// A layer's content does not hash to the diff_id its image's config claims: the image
    /// is corrupt or forged (it could claim another image's diff_ids to poison the snapshots
    /// kept by chain ID). Nothing of it was used.
    #[error(
        "image {image}, layer {layer}: its content hashes to {actual}, but the image's config claims diff_id {claimed} (hint: the image is corrupt or forged and was not used; get it again from a source you trust)"
    )]
    DiffIdMismatch {
        /// Image the layer belongs to.
        image: String,
        /// The layer's blob digest.
        layer: String,
        /// The diff_id the config claims.
        claimed: String,
        /// What the uncompressed content hashes to.
        actual: String,
    },
    /// The build was asked for something that is not there (a context, a Dockerfile).
    #[error("{message} (hint: {hint})")]
    Input {
        /// What is wrong.
        message: String,
        /// What to do.
        hint: String,
    },
    /// A Debian input (kiln.lock, a .deb, the archive) was refused or could not be fetched.
    #[error(transparent)]
    Debian(#[from] kiln_debian::Error),
    /// The filesystem holding kiln's state has no room left (for a step, or an unpack).
    #[error(
        "{at}: the disk holding {path} is full ({free} bytes free) (hint: free some space (`kiln prune --cache` drops the build cache) or point KILN_HOME at a bigger filesystem)"
    )]
    DiskFull {
        /// Where: `Dockerfile:LINE`, or the image and layer being unpacked.
        at: String,
        /// kiln's state directory.
        path: String,
        /// Bytes free there.
        free: u64,
    },
    /// A layer named by `--cache-from` could not be fetched or is not what the cache says;
    /// the pipeline then builds again without the remote cache.
    #[error("{message}")]
    CacheImport {
        /// What failed.
        message: String,
    },
    /// Reading the Dockerfile or context failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

impl BuildError {
    /// The process exit code per DESIGN.md: 2 for bad input, 3 for environment failures.
    pub fn exit_code(&self) -> i32 {
        match self {
            BuildError::Frontend(_) | BuildError::Step { .. } | BuildError::Input { .. } => 2,
            BuildError::RunFailed { .. } => 1,
            BuildError::Unpack { .. } | BuildError::DiffIdMismatch { .. } => 2,
            BuildError::Debian(e) => e.exit_code().into(),
            BuildError::Store(e) if e.is_input() => 2,
            BuildError::Store(_) | BuildError::Layer(_) | BuildError::Io { .. } | BuildError::DiskFull { .. } => 3,
            BuildError::Environment { .. } | BuildError::CacheImport { .. } => 3,
        }
    }
}
