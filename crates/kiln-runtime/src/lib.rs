//! Running images the immutable way, and saying how to run them so elsewhere.
//!
//! `kiln run` starts an image with runc over an overlay of the image's snapshots (the ones
//! RUN steps use), with a read-only rootfs, the image's non-root USER, no capabilities,
//! no_new_privileges and tmpfs where programs write. The OCI config comes from the one writer
//! in `kiln_build::run::spec`; this crate only lays the run-time defaults over it.
//! `--discover-writes` lists what a program wrote, and `kiln harden` turns the image and that
//! list into Kubernetes and Compose settings.

pub mod config;
pub mod container;
pub mod error;
pub mod harden;
pub mod identity;
pub mod image;
pub mod options;
pub mod proxy;
pub mod signals;
pub mod state;
pub mod writes;
pub mod yaml;

pub use error::RuntimeError;
pub use options::RunOptions;
