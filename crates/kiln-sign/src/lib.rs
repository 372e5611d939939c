//! kiln's trust chain: keys in cosign's formats, image signatures (cosign simple signing
//! under `sha256-<hex>.sig`, and Sigstore bundle v0.3 referrers), in-toto attestations in
//! DSSE (`.att` and bundle referrers), SLSA v1 provenance of kiln builds, and verification
//! with a public key.
//!
//! Everything works offline with keys: keyless (Fulcio certificates, Rekor) is out of scope
//! because a build machine may have no route to Sigstore's services.

// Errors carry registry errors, which are large; every path returning them is I/O-bound.
#![allow(clippy::result_large_err)]
#![deny(missing_docs)]

pub mod envelope;
pub mod error;
pub mod keys;
pub mod place;
pub mod provenance;
pub mod sign;
pub mod verify;

pub use error::{Result, SignError};
pub use keys::{PrivateKey, PublicKey};
