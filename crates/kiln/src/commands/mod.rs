//! One module per group of commands; each function parses nothing and prints its result.

pub mod archive;
pub mod build;
pub mod cache;
pub mod images;
pub mod lint;
pub mod lock;
pub mod registry;
pub mod sbom;
pub mod scan;
pub mod sign;
