//! kiln's client for OCI distribution registries (and Docker registry v2).
//!
//! Layers, top down: [`ops::Session`] does whole-image work (pull, push, copy, referrers)
//! and is what the CLI and the build engine call; [`repo::Repo`] moves single manifests and
//! blobs with verification and resumption; [`source::RegistryAccess`] lets kiln-oci's
//! `open_image` read registry images like any other; [`client::Registry`] owns one host's transport,
//! authentication and retry loop; [`auth`] reads and writes Docker's `config.json`.
//!
//! Invariants: a blob becomes visible in the store only after its digest and size were
//! checked; a manifest is pushed only after every blob it names is in the registry, and a
//! tag only after its children; every failure is one line naming registry, repository and
//! (for HTTP failures) the status, with a hint.

// Errors carry registry, repository, status and hint strings; they are rare and every path
// returning them is I/O-bound, so boxing them would only add noise.
#![allow(clippy::result_large_err)]
#![deny(missing_docs)]

pub mod auth;
pub mod client;
pub mod download;
pub mod error;
pub mod ops;
pub mod repo;
pub mod source;
pub mod stall;
pub mod token;
pub mod transfer;

pub use auth::Credentials;
pub use client::{Options, Registry, Retry};
pub use error::RegistryError;
pub use ops::{Pulled, Pushed, Select, Session};
pub use source::RegistryAccess;
