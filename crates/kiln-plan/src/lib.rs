//! kiln's build plan, as plain data.
//!
//! Both frontends (the Dockerfile and `kiln.toml`) turn what the user wrote into a
//! [`plan::Plan`]; the solver in kiln-build runs it, provenance in kiln-sign describes it, and
//! `kiln build --print-plan` prints it. Nothing here does I/O: every input is already
//! resolved to content (base images to digests, packages to sha256) by the time a plan
//! exists. See DESIGN.md, "Data flow".

#![deny(missing_docs)]

pub mod inputs;
pub mod lock;
pub mod mounts;
pub mod plan;
pub mod platform;
