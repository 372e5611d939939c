//! Errors of the Debian path. Each prints on one line with what, where and a hint.

use std::path::Path;

/// Everything `kiln lock` and a kiln.toml build can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kiln.toml is malformed.
    #[error(transparent)]
    Spec(#[from] crate::spec::SpecError),
    /// A signature check failed: never a warning.
    #[error("{url}: {source}")]
    Signature {
        /// The InRelease URL.
        url: String,
        /// Why.
        source: crate::pgp::PgpError,
    },
    /// The keyring cannot be read.
    #[error("keyring {path}: {message} (hint: install debian-archive-keyring, or set `keyring` in [[source]])")]
    Keyring {
        /// Keyring path.
        path: String,
        /// Why.
        message: String,
    },
    /// The signature verifier (gpgv) cannot be run.
    #[error("{message}")]
    Verifier {
        /// Why, with a hint.
        message: String,
    },
    /// A download failed.
    #[error(transparent)]
    Http(#[from] crate::http::HttpError),
    /// The packages cannot be resolved.
    #[error(transparent)]
    Resolve(#[from] crate::resolve::ResolveError),
    /// A .deb is malformed or unsafe.
    #[error(transparent)]
    Deb(#[from] crate::deb::DebError),
    /// The lock is missing, malformed or disagrees with the spec.
    #[error("{path}: {message} (hint: {hint})")]
    Lock {
        /// The lock file.
        path: String,
        /// What is wrong.
        message: String,
        /// What to do.
        hint: String,
    },
    /// Bad input found on the way (mirror data, hashes, context files).
    #[error("{message} (hint: {hint})")]
    Input {
        /// What is wrong.
        message: String,
        /// What to do.
        hint: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The path.
        path: String,
        /// The OS error.
        message: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] kiln_oci::StoreError),
    /// Writing a layer failed.
    #[error(transparent)]
    Layer(#[from] kiln_oci::layer::LayerError),
}

impl Error {
    /// An I/O error at a path.
    pub fn io(path: &Path, e: std::io::Error) -> Error {
        Error::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        }
    }

    /// DESIGN.md's exit code: 2 for bad input (spec, lock, packages, signatures, .debs), 3
    /// for the environment (network, disk, store).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Spec(_)
            | Error::Signature { .. }
            | Error::Resolve(_)
            | Error::Deb(_)
            | Error::Lock { .. }
            | Error::Input { .. } => 2,
            Error::Keyring { .. }
            | Error::Verifier { .. }
            | Error::Http(_)
            | Error::Io { .. }
            | Error::Store(_)
            | Error::Layer(_) => 3,
        }
    }
}
