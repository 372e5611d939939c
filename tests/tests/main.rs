//! kiln's integration tests, one module per area, linked into one test binary: one link
//! instead of one per file, and one pool of test threads across every area (a test that waits
//! on a timeout no longer leaves a core idle while later files queue). Each module keeps its
//! own file under tests/tests/ and its own doc comment.

mod add_remote;
mod analyze;
mod bombs;
mod cache_mounts;
mod cache_registry;
mod cli_habits;
mod conformance;
mod convert;
mod crash;
mod debian;
mod debian_network;
mod diff;
mod docs_run;
mod exit_codes;
mod failures;
mod function_length;
mod image_source;
mod lint;
mod malformed;
mod pipeline;
mod platforms;
mod platforms_network;
mod policy;
mod policy_attest;
mod policy_library;
mod policy_vulns;
mod progress;
mod registry;
mod registry_auth;
mod registry_faults;
mod registry_stall;
mod run_docs;
mod run_errors;
mod run_flags;
mod run_immutable;
mod run_network;
mod run_rootless;
mod run_sandbox;
mod run_secrets;
mod sbom;
mod scan_secrets;
mod scan_versions;
mod scan_vulns;
mod serve;
mod sign;
mod snapshots;
mod store_cli;
