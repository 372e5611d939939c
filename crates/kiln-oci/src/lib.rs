//! OCI building blocks for kiln: digests, the local OCI-layout store, and deterministic layers.
//!
//! This crate depends on no other kiln crate; everything above it (build, registry, SBOM,
//! signing) speaks in its types so that an image is the same thing everywhere.

pub mod archive;
pub mod attached;
pub mod decompress;
pub mod digest;
pub mod docker_archive;
pub mod entropy;
pub mod fsutil;
pub mod image;
pub mod layer;
pub mod media;
pub mod opened;
pub mod parallel;
pub mod pgzip;
pub mod reference;
pub mod source;
pub mod store;
pub mod transport;
pub mod unpack;
pub mod walk;

pub use digest::{Algorithm, Digest, DigestError};
pub use store::{Descriptor, Index, Manifest, Platform, Store, StoreError, canonical_json};
