//! RUN steps: an OCI runtime (runc or crun) over an overlay of the parent layers; the step's
//! layer is the overlay's upper directory.

pub mod cache_mounts;
pub mod exec;
pub mod lifetime;
pub mod network;
pub mod overlay;
pub mod qemu;
pub mod seccomp;
pub mod spec;
pub mod userns;
