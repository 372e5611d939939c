//! kiln's policy engine: one file decides whether an image may ship or run.
//!
//! The library API (the CLI, `kiln build --policy` and `kiln serve` call the same):
//!
//! ```text
//! let policy = Policy::load(Path::new("kiln-policy.yaml"))?;     // file:line:col errors
//! let cache = DecisionCache::in_memory();                        // or on_disk(dir)
//! let src = Sources { store: &store, registries: Some(&access), meta: &kiln_dir };
//! let decision: Decision = kiln_policy::check(&policy, &src, reference, Some(&cache), time::now())?;
//! // decision.allowed, decision.violations / warnings: Vec<Violation { rule, mode, message, fix }>
//!
//! // The same in two steps (kiln policy input, fixtures):
//! let gather = Gather { store: &store, registries: Some(&access), keys: policy.keys(),
//!                       db: Some(Db::at(..)), types: policy.types(), needs: policy.needs(reference) };
//! let input: Input = gather_input(&gather, reference)?;         // by digest
//! let decision: Decision = policy.evaluate(&input);              // no I/O
//! ```
//!
//! Everything is synchronous and `Send + Sync`: async callers (axum) run [`check`] or
//! `gather_input` in `tokio::task::spawn_blocking`; `evaluate` is pure and fast; an
//! unreachable registry is a denial from [`check`], not an error (fail closed). [`cache::DecisionCache`]
//! keeps decisions keyed by (reference, digest, policy hash, vulnerability database
//! version), in memory and optionally on disk; a digest's content cannot change, so a
//! cached decision cannot be poisoned by a moved tag. Each rule's `pod:` section
//! ([`model::PodRule`]) is parsed and exposed for the admission webhook, not evaluated here.

#![deny(missing_docs)]

pub mod cache;
pub mod check;
pub mod decision;
pub mod error;
pub mod eval;
pub mod gather;
pub mod glob;
pub mod input;
pub mod load;
pub mod model;
pub mod rego;
pub mod scan;
pub mod time;
pub mod vex;

pub use check::{Sources, check, check_traced};
pub use decision::{Decision, Violation};
pub use error::PolicyError;
pub use gather::{Gather, Needs, gather_input};
pub use input::Input;
pub use load::Policy;
pub use model::{Mode, PodRule};

impl Policy {
    /// What the rules matching `reference` need read from the layers (Rego sees what the
    /// built-in rules gathered).
    pub fn needs(&self, reference: &str) -> Needs {
        let mut n = Needs::default();
        for (i, r) in self.matching(reference) {
            n.vulns |= r.vulnerabilities.is_some();
            n.secrets |= r.config.as_ref().is_some_and(|c| c.no_secrets);
            n.sbom |= !self.rego[i].is_empty();
        }
        n
    }

    /// Predicate type URIs the rules need: their attestations, SLSA provenance for
    /// `base_images`, OpenVEX for `vulnerabilities`. Only these are read and verified.
    pub fn types(&self) -> Vec<String> {
        let mut out: Vec<String> = vec![];
        let mut add = |u: String| {
            if !out.contains(&u) {
                out.push(u);
            }
        };
        for r in &self.file.rules {
            for a in &r.attestations {
                if let Some(u) = input::predicate_uri(&a.kind) {
                    add(u);
                }
            }
            if r.base_images.is_some() {
                add(kiln_sign::provenance::SLSA_PROVENANCE_V1.to_string());
            }
            if r.vulnerabilities.is_some() {
                add(input::OPENVEX.to_string());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    /// `kiln serve` shares one policy and one cache between tokio tasks.
    #[test]
    fn shared_types_are_send_and_sync() {
        fn shared<T: Send + Sync>() {}
        shared::<crate::Policy>();
        shared::<crate::cache::DecisionCache>();
        shared::<crate::Decision>();
        shared::<crate::Input>();
    }
}
