//! kiln's build engine.
//!
//! frontend (Dockerfile → [`plan::Plan`]) → solver (cache lookups, parallel stages) →
//! executor (file operations in-process) → image in the store. See DESIGN.md, "Data flow".

pub mod build;
pub mod copy;
pub mod error;
pub mod frontend;
pub mod plan;
pub mod platform;
pub mod run;
pub mod solver;
pub mod spec;
pub mod statcache;
pub mod tree;
