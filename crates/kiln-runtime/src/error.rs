//! Why a container could not be run, stopped or hardened: one line with a hint, and the
//! exit code class DESIGN.md assigns (denied 1, bad input 2, environment 3).

/// The exit code class of a [`RuntimeError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Refused on purpose (a root image without `--user 0`): exit 1.
    Denied,
    /// Bad flags, a missing image or container: exit 2.
    Input,
    /// The runtime, mounts or the store failed: exit 3.
    Environment,
}

/// A runtime failure, printed as `message (hint: hint)`.
#[derive(Debug, thiserror::Error)]
#[error("{message} (hint: {hint})")]
pub struct RuntimeError {
    /// What went wrong.
    pub message: String,
    /// What to do about it.
    pub hint: String,
    /// Its exit code class.
    pub kind: ErrorKind,
}

impl RuntimeError {
    /// Bad input (exit 2).
    pub fn input(message: impl Into<String>, hint: impl Into<String>) -> RuntimeError {
        RuntimeError {
            message: message.into(),
            hint: hint.into(),
            kind: ErrorKind::Input,
        }
    }

    /// Environment failure (exit 3).
    pub fn env(message: impl Into<String>, hint: impl Into<String>) -> RuntimeError {
        RuntimeError {
            message: message.into(),
            hint: hint.into(),
            kind: ErrorKind::Environment,
        }
    }

    /// Refused on purpose (exit 1).
    pub fn denied(message: impl Into<String>, hint: impl Into<String>) -> RuntimeError {
        RuntimeError {
            message: message.into(),
            hint: hint.into(),
            kind: ErrorKind::Denied,
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self.kind {
            ErrorKind::Denied => 1,
            ErrorKind::Input => 2,
            ErrorKind::Environment => 3,
        }
    }
}

/// An I/O failure on `what`, as an environment error.
pub fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> RuntimeError {
    move |e| {
        RuntimeError::env(
            format!("{what}: {e}"),
            "check free space and permissions under $KILN_HOME",
        )
    }
}

impl From<kiln_build::error::BuildError> for RuntimeError {
    fn from(e: kiln_build::error::BuildError) -> Self {
        let kind = if e.exit_code() == 2 {
            ErrorKind::Input
        } else {
            ErrorKind::Environment
        };
        RuntimeError {
            message: e.to_string(),
            hint: "the image's layers could not be prepared; check the image with `kiln inspect`".into(),
            kind,
        }
    }
}

impl From<kiln_oci::StoreError> for RuntimeError {
    fn from(e: kiln_oci::StoreError) -> Self {
        RuntimeError::env(e.to_string(), "check the store with `kiln images`")
    }
}
