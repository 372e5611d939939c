//! CLI errors: one line, a hint where we have one, and DESIGN.md's exit codes
//! (1 findings, 2 bad usage or input, 3 environment or internal failures).

use std::fmt;

/// An error ready to print.
#[derive(Debug)]
pub struct CliError {
    /// Exit code.
    pub code: u8,
    /// The message (first line is complete on its own).
    pub message: String,
}

impl CliError {
    /// Bad usage or input (exit 2).
    pub fn input(message: impl fmt::Display) -> CliError {
        CliError {
            code: 2,
            message: message.to_string(),
        }
    }

    /// Environment or internal failure (exit 3).
    pub fn env(message: impl fmt::Display) -> CliError {
        CliError {
            code: 3,
            message: message.to_string(),
        }
    }
}

impl From<kiln_oci::StoreError> for CliError {
    fn from(e: kiln_oci::StoreError) -> Self {
        if e.is_input() {
            CliError::input(e)
        } else {
            CliError::env(e)
        }
    }
}

impl From<kiln_oci::transport::TransportError> for CliError {
    fn from(e: kiln_oci::transport::TransportError) -> Self {
        if e.is_input() {
            CliError::input(e)
        } else {
            CliError::env(e)
        }
    }
}

impl From<kiln_oci::archive::ArchiveError> for CliError {
    fn from(e: kiln_oci::archive::ArchiveError) -> Self {
        CliError::input(e)
    }
}

impl From<kiln_oci::reference::ReferenceError> for CliError {
    fn from(e: kiln_oci::reference::ReferenceError) -> Self {
        CliError::input(e)
    }
}

impl From<kiln_build::error::BuildError> for CliError {
    fn from(e: kiln_build::error::BuildError) -> Self {
        CliError {
            code: e.exit_code() as u8,
            message: e.to_string(),
        }
    }
}

impl From<kiln_registry::RegistryError> for CliError {
    fn from(e: kiln_registry::RegistryError) -> Self {
        if e.is_input() {
            CliError::input(e)
        } else {
            CliError::env(e)
        }
    }
}
