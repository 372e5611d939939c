//! Errors of the trust chain. Each is one line naming the file or image involved, what went
//! wrong and what to do; none ever carries a password or key material.

use std::path::PathBuf;

/// Why signing, attesting or reading keys failed. Verification failures of individual
/// signatures are not errors: they are [`crate::verify::Rejected`] reasons.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// A key file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A key file is not in a format kiln reads.
    #[error("{path}: {reason} (hint: {hint})")]
    Key {
        /// The key file (or `COSIGN_PASSWORD`, `--key`).
        path: PathBuf,
        /// What is wrong.
        reason: String,
        /// What to do.
        hint: String,
    },
    /// The password does not open the encrypted key.
    #[error(
        "{path}: wrong password: the encrypted private key could not be opened (hint: check COSIGN_PASSWORD or the password typed; cosign keys made without a password need COSIGN_PASSWORD set to the empty string)"
    )]
    WrongPassword {
        /// The key file.
        path: PathBuf,
    },
    /// Input the user gave (a predicate file, a type, an image name) is unusable.
    #[error("{what}: {reason} (hint: {hint})")]
    Input {
        /// What was being read.
        what: String,
        /// What is wrong.
        reason: String,
        /// What to do.
        hint: String,
    },
    /// The store failed.
    #[error("{context}: {source}")]
    Store {
        /// The image involved.
        context: String,
        /// The store's error.
        source: kiln_oci::StoreError,
    },
    /// The registry failed (boxed: registry errors carry much context, and every
    /// `Result` of this crate would otherwise be as large).
    #[error("{0}")]
    Registry(Box<kiln_registry::RegistryError>),
    /// The image could not be opened or read (boxed for the same reason).
    #[error("{0}")]
    Transport(Box<kiln_oci::transport::TransportError>),
}

impl From<kiln_oci::transport::TransportError> for SignError {
    fn from(e: kiln_oci::transport::TransportError) -> Self {
        SignError::Transport(Box::new(e))
    }
}

impl From<kiln_registry::RegistryError> for SignError {
    fn from(e: kiln_registry::RegistryError) -> Self {
        SignError::Registry(Box::new(e))
    }
}

impl SignError {
    /// True when the user can fix it (exit 2) rather than the environment (exit 3).
    pub fn is_input(&self) -> bool {
        match self {
            SignError::Io { .. } => false,
            SignError::Key { .. } | SignError::WrongPassword { .. } | SignError::Input { .. } => true,
            SignError::Store { source, .. } => !matches!(source, kiln_oci::StoreError::Io { .. }),
            SignError::Registry(e) => e.is_input(),
            SignError::Transport(e) => e.is_input(),
        }
    }

    pub(crate) fn store(context: impl Into<String>) -> impl FnOnce(kiln_oci::StoreError) -> SignError {
        let context = context.into();
        move |source| SignError::Store { context, source }
    }
}

/// Shorthand used across the crate.
pub type Result<T, E = SignError> = std::result::Result<T, E>;
