//! kiln's build engine.
//!
//! frontend (Dockerfile → [`kiln_plan::plan::Plan`]) → solver (cache lookups, parallel stages) →
//! executor (file operations in-process) → image in the store. See DESIGN.md, "Data flow".

pub mod build;
pub mod cache;
pub mod copy;
pub mod error;
pub mod files;
pub mod frontend;
pub mod lockfile;
pub mod pins;
pub mod pipeline;
pub mod remote;
pub mod run;
pub mod snapshot;
pub mod solver;
pub mod spec;
pub mod statcache;
pub mod tree;
