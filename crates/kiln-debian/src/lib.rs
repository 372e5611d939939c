//! Debian packages as image inputs: `kiln.toml` → `kiln.lock` → layers.
//!
//! `kiln lock` reads the spec ([`spec`]), fetches each suite's signed InRelease ([`repo`],
//! checked by [`pgp`]) and its Packages indexes, resolves the dependency closure per
//! architecture ([`resolve`], ordering by [`version`]) and makes a [`kiln_plan::lock::Lock`]. A build
//! reads only the lock: it fetches each .deb by hash into a content-addressed cache
//! ([`fetch`]), reads it ([`deb`]) without running maintainer scripts, and writes one
//! deterministic layer per package plus one for accounts and files ([`layer`]).

#![deny(missing_docs)]

pub mod control;
pub mod deb;
pub mod error;
pub mod fetch;
pub mod http;
pub mod layer;
pub mod lock;
pub mod pgp;
pub mod repo;
pub mod resolve;
pub mod spec;
pub mod version;

pub use error::Error;
pub use spec::Spec;
