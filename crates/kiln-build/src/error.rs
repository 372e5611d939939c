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
            BuildError::Frontend(_) | BuildError::Step { .. } => 2,
            BuildError::RunFailed { .. } => 1,
            BuildError::Unpack { .. } => 2,
            BuildError::Store(_) | BuildError::Layer(_) | BuildError::Io { .. } => 3,
        }
    }
}
