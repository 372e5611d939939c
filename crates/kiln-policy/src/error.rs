//! Errors of the policy engine. Each is one line: the file with line:column (or the image),
//! what is wrong and what to do. A policy that cannot be loaded is bad input (exit 2); an
//! image whose facts cannot be gathered is denied by the caller, with this error as reason.

use std::path::PathBuf;

/// Why a policy could not be loaded, or an image's input document not gathered.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The policy file (or a file it names) is malformed at a place.
    #[error("{file}:{line}:{col}: {reason} (hint: {hint})")]
    Parse {
        /// The file.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        col: usize,
        /// What is wrong.
        reason: String,
        /// What to do.
        hint: String,
    },
    /// A file the policy needs cannot be read.
    #[error("{path}: {reason} (hint: {hint})")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
        /// What to do.
        hint: String,
    },
    /// The image, or what is attached to it, cannot be read.
    #[error("{image}: {reason}")]
    Gather {
        /// The image as named.
        image: String,
        /// Why (the underlying error, one line).
        reason: String,
        /// True when the user can fix it by naming another image (exit 2).
        input: bool,
    },
    /// A Rego policy failed while evaluating.
    #[error("{file}: {reason}")]
    Rego {
        /// The Rego file.
        file: String,
        /// regorus's message.
        reason: String,
    },
}

impl PolicyError {
    /// True when the user can fix it (exit 2) rather than the environment (exit 3).
    pub fn is_input(&self) -> bool {
        match self {
            PolicyError::Parse { .. } | PolicyError::File { .. } | PolicyError::Rego { .. } => true,
            PolicyError::Gather { input, .. } => *input,
        }
    }

    /// A gather error from any displayable cause.
    pub fn gather(image: &str, reason: impl std::fmt::Display, input: bool) -> PolicyError {
        PolicyError::Gather {
            image: image.to_string(),
            reason: reason.to_string(),
            input,
        }
    }
}

impl From<kiln_sign::SignError> for PolicyError {
    fn from(e: kiln_sign::SignError) -> Self {
        let input = e.is_input();
        PolicyError::Gather {
            image: String::new(),
            reason: e.to_string(),
            input,
        }
    }
}
