//! Registry errors. Each one is a single line naming the registry (and repository where
//! there is one), what kiln was doing, what went wrong, and a hint.

use std::path::PathBuf;

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry answered with a status kiln cannot continue from.
    #[error("{registry}/{repository}: {what}: HTTP {status}{detail} (hint: {hint})")]
    Http {
        /// Registry host.
        registry: String,
        /// Repository path inside the registry.
        repository: String,
        /// What kiln was doing, e.g. `GET manifest 1.0`.
        what: String,
        /// HTTP status.
        status: u16,
        /// The registry's own error code and message, if it sent one (starts with `: `).
        detail: String,
        /// What to do.
        hint: String,
    },
    /// The registry could not be reached, or kept failing, within the retry budget.
    #[error(
        "{registry}/{repository}: {what}: {reason}; gave up after {attempts} attempts in {secs:.1}s (hint: {hint})"
    )]
    Unreachable {
        /// Registry host.
        registry: String,
        /// Repository path (may be empty for a ping).
        repository: String,
        /// What kiln was doing.
        what: String,
        /// The last failure.
        reason: String,
        /// Attempts made.
        attempts: u32,
        /// Time spent.
        secs: f64,
        /// What to do.
        hint: String,
    },
    /// The registry stopped answering: nothing arrived for the whole `--timeout`.
    #[error("{registry}/{repository}: {what}: {registry} stalled: no progress for {secs:.0}s (hint: {hint})")]
    Stalled {
        /// Registry (or token server) host.
        registry: String,
        /// Repository path (may be empty for a ping).
        repository: String,
        /// What kiln was doing.
        what: String,
        /// How long nothing happened.
        secs: f64,
        /// What to do.
        hint: String,
    },
    /// The registry sent something kiln will not accept (wrong digest, unknown media type,
    /// no manifest for the platform, …), or the request makes no sense.
    #[error("{registry}/{repository}: {what}: {reason} (hint: {hint})")]
    Invalid {
        /// Registry host.
        registry: String,
        /// Repository path.
        repository: String,
        /// What kiln was doing.
        what: String,
        /// What is wrong.
        reason: String,
        /// What to do.
        hint: String,
    },
    /// A credentials file, credential helper or certificate could not be used.
    #[error("{path}: {reason} (hint: {hint})")]
    Config {
        /// The file or helper involved.
        path: PathBuf,
        /// What is wrong.
        reason: String,
        /// What to do.
        hint: String,
    },
    /// The local store failed while reading or writing blobs.
    #[error("{context}: {source}")]
    Store {
        /// The registry image involved.
        context: String,
        /// The store's error (names the blob and layout).
        source: kiln_oci::StoreError,
    },
}

impl RegistryError {
    /// True when the user can fix it by changing what they typed or their credentials
    /// (exit 2), false for environment failures (exit 3).
    pub fn is_input(&self) -> bool {
        match self {
            RegistryError::Http { status, .. } => matches!(status, 400..=499) && *status != 429,
            RegistryError::Invalid { .. } | RegistryError::Config { .. } => true,
            RegistryError::Unreachable { .. } | RegistryError::Stalled { .. } => false,
            RegistryError::Store { source, .. } => source.is_input(),
        }
    }
}

/// Shorthand used across the crate.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;
