//! One module per group of commands; each function parses nothing and prints its result.

pub mod analyze;
pub mod archive;
pub mod build;
pub mod cache;
pub mod convert;
pub mod diff;
pub mod harden;
pub mod history;
pub mod images;
pub mod info;
pub mod lint;
pub mod lock;
pub mod policy;
pub mod record;
pub mod registry;
pub mod run;
pub mod sbom;
pub mod scan;
pub mod serve;
pub mod sign;
pub mod version;

/// Parses one `--platform` value (`os/arch[/variant]`), the one way every command does.
pub fn parse_one_platform(p: &str) -> Result<kiln_oci::Platform, crate::error::CliError> {
    kiln_plan::platform::parse(p).ok_or_else(|| {
        crate::error::CliError::input(format!(
            "--platform {p:?}: expected os/arch[/variant] (hint: linux/arm64/v8)"
        ))
    })
}

/// Parses a `--platform` flag shared by the commands that read images; `None` when the
/// flag is absent.
pub fn parse_platform(p: &Option<String>) -> Result<Option<kiln_oci::Platform>, crate::error::CliError> {
    p.as_deref().map(parse_one_platform).transpose()
}

/// Registry access from the registry flags; a session starts only if a registry is read.
pub fn registry_access(
    flags: &crate::cli::RegistryFlags,
) -> Result<kiln_registry::RegistryAccess, crate::error::CliError> {
    Ok(kiln_registry::RegistryAccess::new(registry::options(flags)?))
}

/// Opens the image a read-only command names, the one way every command does: a store name
/// or file from the store or the file; a registry name (`HOST/REPO:TAG`) from the store if
/// it has it, else from its registry; `docker://NAME` from the registry.
pub fn open_image(
    store: &kiln_oci::Store,
    image: &str,
    platform: Option<&kiln_oci::Platform>,
    registries: &kiln_registry::RegistryAccess,
) -> Result<kiln_oci::transport::OpenedImage, crate::error::CliError> {
    let r = crate::names::parse_image(store, image)?;
    let remote = kiln_oci::transport::Remote::Fallback(registries);
    Ok(kiln_oci::transport::open_image(store, &r, platform, remote)?)
}
