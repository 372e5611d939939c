//! One module per group of commands; each function parses nothing and prints its result.

pub mod archive;
pub mod build;
pub mod cache;
pub mod images;
pub mod lint;
pub mod lock;
pub mod registry;
pub mod sbom;
pub mod scan;
pub mod sign;

/// Parses a `--platform` flag shared by the commands that read images.
pub fn parse_platform(p: &Option<String>) -> Result<Option<kiln_oci::Platform>, crate::error::CliError> {
    p.as_ref()
        .map(|p| {
            kiln_build::platform::parse(p).ok_or_else(|| {
                crate::error::CliError::input(format!(
                    "--platform {p:?}: expected os/arch[/variant] (hint: linux/arm64/v8)"
                ))
            })
        })
        .transpose()
}
