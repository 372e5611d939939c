//! What the build pipeline can fail with: each step's own error, kept whole so the message
//! and its exit code (DESIGN.md: 2 bad input, 3 environment) stay those of the step.

use crate::error::BuildError;
use crate::frontend::FrontendError;
use crate::lockfile::LockFileError;

/// A failed build, from planning to push.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The Dockerfile is wrong, or a base image could not be resolved at its line.
    /// `environment` is set when the cause was the environment (an unreachable registry).
    #[error("{error}")]
    Frontend {
        /// The located error.
        error: FrontendError,
        /// The registry or disk failed, not the Dockerfile.
        environment: bool,
    },
    /// Solving, or the kiln.toml frontend.
    #[error(transparent)]
    Build(BuildError),
    /// A lock file is missing or refused.
    #[error(transparent)]
    Lock(#[from] LockFileError),
    /// Pulling or pushing.
    #[error(transparent)]
    Registry(Box<kiln_registry::RegistryError>),
    /// Attaching provenance, signing.
    #[error(transparent)]
    Sign(#[from] kiln_sign::SignError),
    /// Cataloguing the image for its SBOM.
    #[error(transparent)]
    Sbom(#[from] kiln_sbom::SbomError),
    /// The store.
    #[error(transparent)]
    Store(#[from] kiln_oci::StoreError),
    /// Writing an `--output`.
    #[error(transparent)]
    Transport(#[from] kiln_oci::transport::TransportError),
    /// A gate (`kiln build --policy`) denied the image: exit 1.
    #[error("{message}")]
    Denied {
        /// Why, one line.
        message: String,
    },
    /// The request itself is wrong (a tag, a flag combination).
    #[error("{message} (hint: {hint})")]
    Input {
        /// What is wrong.
        message: String,
        /// What to do.
        hint: String,
    },
}

impl From<BuildError> for PipelineError {
    fn from(e: BuildError) -> Self {
        match e {
            BuildError::Frontend(error) => PipelineError::Frontend {
                error,
                environment: false,
            },
            other => PipelineError::Build(other),
        }
    }
}

impl From<kiln_registry::RegistryError> for PipelineError {
    fn from(e: kiln_registry::RegistryError) -> Self {
        PipelineError::Registry(Box::new(e))
    }
}

impl PipelineError {
    /// A bad request.
    pub fn input(message: impl Into<String>, hint: impl Into<String>) -> PipelineError {
        PipelineError::Input {
            message: message.into(),
            hint: hint.into(),
        }
    }

    /// DESIGN.md's exit code.
    pub fn exit_code(&self) -> u8 {
        let by_input = |input: bool| if input { 2 } else { 3 };
        match self {
            PipelineError::Frontend { environment, .. } => by_input(!environment),
            PipelineError::Build(e) => u8::try_from(e.exit_code()).unwrap_or(3),
            PipelineError::Lock(e) => e.exit_code(),
            PipelineError::Registry(e) => by_input(e.is_input()),
            PipelineError::Sign(e) => by_input(e.is_input()),
            PipelineError::Sbom(_) | PipelineError::Input { .. } => 2,
            PipelineError::Denied { .. } => 1,
            PipelineError::Store(e) => by_input(e.is_input()),
            PipelineError::Transport(e) => by_input(e.is_input()),
        }
    }
}
