//! Deciding one image the way `kiln policy check` does (the kiln-policy engine and its
//! decision cache), as a Kubernetes node would pull it: a name without a registry is on
//! Docker Hub, and a tag is resolved to its digest (kept for `--tag-ttl` seconds, see
//! [`crate::tags`]) so a moved tag is answered with the decision of what it now names.

use std::path::PathBuf;

use kiln_oci::Store;
use kiln_oci::reference::Name;
use kiln_policy::cache::DecisionCache;
use kiln_policy::{Decision, Mode, Policy, Violation};
use kiln_registry::RegistryAccess;

/// The policy and everything a decision reads.
pub struct Engine {
    /// The policy.
    pub policy: Policy,
    /// The local store (attestation caches; images come from registries).
    pub store: Store,
    /// The store's kiln directory (vulnerability database).
    pub meta: PathBuf,
    /// Registry access.
    pub access: RegistryAccess,
    /// Decisions by digest, in memory.
    pub cache: DecisionCache,
    /// Tag resolutions, for `--tag-ttl` seconds.
    pub tags: crate::tags::TagCache,
}

/// The decision for one image as a pod names it.
#[derive(Debug, Clone)]
pub struct ImageVerdict {
    /// The image as the pod names it.
    pub image: String,
    /// The reference decided on: normalised and pinned (`HOST/REPO:TAG@sha256:…`), or as
    /// given when it could not be resolved.
    pub reference: String,
    /// The digest the tag resolved to (empty when it did not).
    pub digest: String,
    /// The policy's decision.
    pub decision: Decision,
    /// Whether the decision came from the cache.
    pub cached: bool,
}

/// `image` as a node reads it: `nginx` is `docker.io/library/nginx:latest`,
/// `team/app:1` is `docker.io/team/app:1`.
pub fn normalise(image: &str) -> Result<Name, String> {
    let first = image.split('/').next().unwrap_or_default();
    let has_host = image.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let full = match (has_host, image.contains('/')) {
        (true, _) => image.to_string(),
        (false, true) => format!("docker.io/{image}"),
        (false, false) => format!("docker.io/library/{image}"),
    };
    Name::parse(&full).map_err(|e| e.to_string())
}

impl Engine {
    /// A denial that no rule made: the image could not be decided (fail closed).
    pub fn undecided(&self, image: &str, why: String) -> ImageVerdict {
        ImageVerdict {
            image: image.to_string(),
            reference: image.to_string(),
            digest: String::new(),
            decision: Decision {
                reference: image.to_string(),
                digest: String::new(),
                allowed: false,
                rules: vec![],
                violations: vec![Violation {
                    rule: "(unreadable)".into(),
                    mode: Mode::Enforce,
                    message: why,
                    fix: "make the image and its registry reachable, then try again".into(),
                }],
                warnings: vec![],
                policy: self.policy.hash.clone(),
            },
            cached: false,
        }
    }

    /// Decides `image` at `now`. Blocks on registry I/O: call it from `spawn_blocking`.
    pub fn decide(&self, image: &str, now: i64) -> ImageVerdict {
        let mut name = match normalise(image) {
            Ok(n) => n,
            Err(e) => return self.undecided(image, e),
        };
        if name.digest.is_none() {
            let tag = name.to_string();
            let resolved = match self.tags.get(&tag) {
                Some(d) => Ok(d),
                None => match self.access.session() {
                    Ok(s) => s.resolve(&name).map(|d| d.digest),
                    Err(e) => Err(e),
                },
            };
            match resolved {
                Ok(d) => {
                    self.tags.put(&tag, &d);
                    name.digest = Some(d);
                }
                Err(e) => {
                    let mut v = self.undecided(image, format!("resolving {name}: {e}"));
                    v.reference = name.to_string();
                    return v;
                }
            }
        }
        let reference = name.to_string();
        let digest = name.digest.as_ref().map(ToString::to_string).unwrap_or_default();
        let src = kiln_policy::Sources {
            store: &self.store,
            registries: Some(&self.access),
            meta: &self.meta,
        };
        match kiln_policy::check_traced(&self.policy, &src, &reference, Some(&self.cache), now) {
            Ok((decision, cached)) => ImageVerdict {
                image: image.to_string(),
                reference,
                digest,
                decision,
                cached,
            },
            Err(e) => {
                let mut v = self.undecided(image, e.to_string());
                v.reference = reference;
                v.digest = digest;
                v
            }
        }
    }

    /// Indexes of the rules whose images match the reference decided on.
    pub fn rules_for(&self, reference: &str) -> Vec<usize> {
        self.policy.matching(reference).into_iter().map(|(i, _)| i).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_read_as_a_node_reads_them() {
        let n = |s: &str| normalise(s).unwrap().to_string();
        assert_eq!(n("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(n("team/app:1"), "docker.io/team/app:1");
        assert_eq!(n("127.0.0.1:5000/prod/app:1"), "127.0.0.1:5000/prod/app:1");
        assert_eq!(n("localhost/app"), "localhost/app:latest");
        assert!(normalise("UPPER:1").is_err());
    }
}
