//! `kiln serve`: a Kubernetes validating and mutating admission webhook that decides every
//! pod's images with the kiln-policy engine (the same decisions as `kiln policy check`),
//! checks pod settings against each rule's `pod:` section, pins tags to the digests it
//! decided on, and records every answer in an append-only audit store (SQLite).
//!
//! ```text
//! let config = kiln_serve::Config { policy, tls_cert, tls_key, listen, database, .. };
//! kiln_serve::run(config)?;      // blocks until SIGTERM / SIGINT
//! ```
//!
//! The pieces are usable alone: [`review`] (AdmissionReview v1), [`pods`] (pod specs in
//! workloads), [`security`] (Pod Security Standards), [`admit`] (one admission),
//! [`audit`] (the store), [`tls`] (a reloading certificate).

#![deny(missing_docs)]

pub mod admit;
pub mod api;
pub mod audit;
pub mod engine;
pub mod manifests;
pub mod metrics;
pub mod pods;
pub mod postgres;
pub mod record;
pub mod release;
pub mod review;
pub mod security;
pub mod server;
pub mod tags;
pub mod tls;
pub mod web;

pub use admit::{Endpoint, Settings};
pub use server::{Config, ServeError, run};
