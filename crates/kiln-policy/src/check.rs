//! One call from a reference to a decision, as the CLI, `kiln build --policy` and
//! `kiln serve` need it: the cache first (references pinned by digest), then the input
//! gathered by digest and evaluated; an image whose facts cannot be read for environment
//! reasons (an unreachable registry, an unreadable attestation) is denied with the reason.

use std::path::Path;

use kiln_oci::Store;
use kiln_registry::RegistryAccess;

use crate::cache::{DecisionCache, Key};
use crate::decision::{Decision, Violation};
use crate::error::PolicyError;
use crate::gather::{Gather, gather_input};
use crate::load::Policy;
use crate::model::Mode;

/// Where a check reads from.
pub struct Sources<'a> {
    /// The local store.
    pub store: &'a Store,
    /// Registry access (`None`: the store and files only).
    pub registries: Option<&'a RegistryAccess>,
    /// The store's kiln directory (`$KILN_HOME/kiln`), whose `vulndb` is the database.
    pub meta: &'a Path,
}

/// The digest a reference is pinned to (`NAME@sha256:…`), if any.
fn pinned(reference: &str) -> Option<String> {
    reference
        .rsplit_once('@')
        .map(|(_, d)| d.to_string())
        .filter(|d| d.starts_with("sha256:"))
}

/// Decides for `reference` at `now`. With a cache, a reference pinned by digest may be
/// answered from it, and every decision is recorded. Blocks on I/O: async callers run it
/// in `spawn_blocking`. `Err` only for bad input (a malformed name, an image that does not
/// exist); environment failures are denials.
pub fn check(
    policy: &Policy,
    src: &Sources,
    reference: &str,
    cache: Option<&DecisionCache>,
    now: i64,
) -> Result<Decision, PolicyError> {
    check_traced(policy, src, reference, cache, now).map(|(d, _)| d)
}

/// [`check`], also saying whether the decision came from the cache (`kiln serve` counts
/// cache hits in its metrics).
pub fn check_traced(
    policy: &Policy,
    src: &Sources,
    reference: &str,
    cache: Option<&DecisionCache>,
    now: i64,
) -> Result<(Decision, bool), PolicyError> {
    let needs = policy.needs(reference);
    let db = kiln_scan::db::Db::at(src.meta);
    let db_version = if needs.vulns {
        db.meta().ok().flatten().map(|m| m.imported).unwrap_or_default()
    } else {
        String::new()
    };
    let key = |digest: String| Key {
        reference: reference.to_string(),
        digest,
        policy: policy.hash.clone(),
        db: db_version.clone(),
    };
    if let (Some(c), Some(d)) = (cache, pinned(reference))
        && let Some(hit) = c.get(&key(d), now)
    {
        return Ok((hit, true));
    }
    let g = Gather {
        store: src.store,
        registries: src.registries,
        keys: policy.keys(),
        db: Some(db),
        types: policy.types(),
        needs,
    };
    let input = match gather_input(&g, reference) {
        Ok(i) => i,
        Err(e) if e.is_input() => return Err(e),
        Err(e) => return Ok((unreadable(policy, reference, &e), false)),
    };
    let d = policy.evaluate_at(&input, now);
    if let Some(c) = cache {
        c.put(key(input.digest.clone()), &d, now);
    }
    free_later(input);
    Ok((d, false))
}

/// Frees the gathered facts off the decision's path: those of a large image (an SBOM
/// attestation of thousands of packages) take milliseconds to free, which the answer need
/// not wait for (and a CLI process that exits first never spends).
fn free_later(input: crate::Input) {
    // If no thread can be started, the closure, and the input with it, is dropped here.
    let _ = std::thread::Builder::new()
        .name("kiln-policy-free".into())
        .spawn(move || drop(input));
}

/// The denial of an image whose facts could not be read: verification fails closed.
pub fn unreadable(policy: &Policy, reference: &str, e: &PolicyError) -> Decision {
    Decision {
        reference: reference.to_string(),
        digest: String::new(),
        allowed: false,
        rules: policy.matching(reference).iter().map(|(_, r)| r.name.clone()).collect(),
        violations: vec![Violation {
            rule: "(unreadable)".into(),
            mode: Mode::Enforce,
            message: e.to_string(),
            fix: "make the image and its registry reachable, then check again".into(),
        }],
        warnings: vec![],
        policy: policy.hash.clone(),
    }
}
