//! Dependency resolution for one architecture: the closure of the requested packages over
//! `Pre-Depends` and `Depends`, honouring version constraints, alternatives (first
//! satisfiable wins, as apt does), virtual packages (`Provides`), architecture `all` and
//! arch qualifiers. `Essential` packages are never added implicitly, only when requested or
//! depended on. Among candidates the highest version wins; among providers of a virtual
//! package, one already chosen wins, then the one of highest Priority (required before
//! important, standard, optional), then the first by name: `awk` gives mawk, as in Debian.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::control::{self, Dep, Op, Relation};
use crate::repo::Stanza;

/// A package that can be installed on the target architecture.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The index fields.
    pub stanza: Stanza,
    /// Which source (index into the list of fetched suites) it came from.
    pub origin: usize,
    depends: Relation,
    provides: Vec<(String, Option<String>)>,
    conflicts: Relation,
}

/// All candidates for one architecture.
#[derive(Debug, Default)]
pub struct Universe {
    arch: String,
    by_name: HashMap<String, Vec<Candidate>>,
    providers: HashMap<String, Vec<(String, Option<String>)>>,
}

/// Why the requested packages cannot be installed together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// Nothing satisfies a dependency; `chain` is the path from a requested package.
    #[error("{arch}: cannot install {chain}: {reason} (hint: {hint})")]
    Unsatisfiable {
        /// Architecture.
        arch: String,
        /// `python3-minimal → python3.11-minimal → libfoo (>= 3)`.
        chain: String,
        /// What is missing.
        reason: String,
        /// What to do.
        hint: String,
    },
    /// Two installed packages conflict.
    #[error(
        "{arch}: {a} conflicts with {b} ({relation}) (hint: drop one of them from packages, or exclude the one that is not needed)"
    )]
    Conflict {
        /// Architecture.
        arch: String,
        /// The package declaring the conflict.
        a: String,
        /// The package it conflicts with.
        b: String,
        /// The relation.
        relation: String,
    },
    /// A relation field in the index is malformed.
    #[error("{arch}: package {package}: bad relation: {message} (hint: the mirror's index is malformed)")]
    BadRelation {
        /// Architecture.
        arch: String,
        /// Package.
        package: String,
        /// Parse error.
        message: String,
    },
}

/// One resolved package.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The chosen candidate.
    pub candidate: Candidate,
    /// Names of the chosen packages that satisfy its dependencies (sorted).
    pub depends: Vec<String>,
}

impl Universe {
    /// Builds the candidate set from indexes in priority order (`(origin, stanzas)`); only
    /// packages for `arch` or `all` are kept, and a (name, version) seen earlier wins.
    pub fn new(arch: &str, indexes: Vec<(usize, Vec<Stanza>)>) -> Result<Universe, ResolveError> {
        let mut u = Universe {
            arch: arch.to_string(),
            ..Default::default()
        };
        for (origin, stanzas) in indexes {
            for s in stanzas {
                if s.architecture != arch && s.architecture != "all" {
                    continue;
                }
                let bad = |message: String| ResolveError::BadRelation {
                    arch: arch.to_string(),
                    package: s.package.clone(),
                    message,
                };
                let depends = control::parse_relation(&s.depends).map_err(bad)?;
                let conflicts = control::parse_relation(&s.conflicts).map_err(bad)?;
                let provides: Vec<(String, Option<String>)> = control::parse_relation(&s.provides)
                    .map_err(bad)?
                    .into_iter()
                    .flatten()
                    .map(|d| (d.name, d.constraint.filter(|(op, _)| *op == Op::Eq).map(|(_, v)| v)))
                    .collect();
                let list = u.by_name.entry(s.package.clone()).or_default();
                if list.iter().any(|c| c.stanza.version == s.version) {
                    continue;
                }
                for (name, ver) in &provides {
                    u.providers
                        .entry(name.clone())
                        .or_default()
                        .push((s.package.clone(), ver.clone()));
                }
                list.push(Candidate {
                    stanza: s,
                    origin,
                    depends,
                    provides,
                    conflicts,
                });
            }
        }
        for list in u.by_name.values_mut() {
            list.sort_by(|a, b| crate::version::compare(&b.stanza.version, &a.stanza.version));
        }
        let rank = |name: &str| {
            let p = u
                .by_name
                .get(name)
                .and_then(|l| l.first())
                .map_or("", |c| c.stanza.priority.as_str());
            ["required", "important", "standard", "optional", "extra"]
                .iter()
                .position(|x| *x == p)
                .unwrap_or(5)
        };
        let ranks: HashMap<String, usize> = u
            .providers
            .values()
            .flatten()
            .map(|(n, _)| (n.clone(), rank(n)))
            .collect();
        for list in u.providers.values_mut() {
            list.sort_by(|a, b| (ranks[&a.0], a).cmp(&(ranks[&b.0], b)));
            list.dedup();
        }
        Ok(u)
    }

    /// Whether an arch qualifier allows a package of this universe.
    fn qualifier_ok(&self, dep: &Dep) -> bool {
        match dep.arch_qualifier.as_deref() {
            None | Some("any") | Some("native") => true,
            Some(a) => a == self.arch,
        }
    }

    /// Does the chosen package `c` satisfy `dep`, directly or by a Provides?
    fn satisfies(c: &Candidate, dep: &Dep) -> bool {
        if c.stanza.package == dep.name && dep.version_ok(&c.stanza.version) {
            return true;
        }
        c.provides.iter().any(|(name, ver)| {
            name == &dep.name
                && match (&dep.constraint, ver) {
                    (None, _) => true,
                    (Some((op, want)), Some(have)) => op.holds(have, want),
                    // An unversioned Provides never satisfies a versioned dependency.
                    (Some(_), None) => false,
                }
        })
    }

    /// Resolves `requested` (`name` or `name=version`); `exclude` names count as installed.
    pub fn resolve(&self, requested: &[String], exclude: &[String]) -> Result<Vec<Resolved>, ResolveError> {
        let mut chosen: Chosen = BTreeMap::new();
        let mut queue: VecDeque<(Vec<Dep>, Vec<String>, Option<String>)> = requested
            .iter()
            .map(|r| {
                let (name, constraint) = match r.split_once('=') {
                    Some((n, v)) => (n.trim().to_string(), Some((Op::Eq, v.trim().to_string()))),
                    None => (r.trim().to_string(), None),
                };
                let dep = Dep {
                    name,
                    arch_qualifier: None,
                    constraint,
                    arches: vec![],
                };
                (vec![dep], vec![], None)
            })
            .collect();
        let mut edges: BTreeMap<String, Vec<String>> = BTreeMap::new();
        while let Some((group, chain, from)) = queue.pop_front() {
            let group: Vec<Dep> = group.into_iter().filter(|d| d.applies_to(&self.arch)).collect();
            if group.is_empty() || group.iter().any(|d| exclude.contains(&d.name)) {
                continue;
            }
            if let Some((name, _)) = chosen
                .iter()
                .find(|(_, (c, _))| group.iter().any(|d| self.qualifier_ok(d) && Self::satisfies(c, d)))
            {
                if let Some(f) = &from {
                    edges.entry(f.clone()).or_default().push(name.clone());
                }
                continue;
            }
            let c = self
                .pick(&group, &chosen)
                .map_err(|clash| self.unsatisfiable(&group, clash, &chain))?;
            let name = c.stanza.package.clone();
            if let Some(f) = &from {
                edges.entry(f.clone()).or_default().push(name.clone());
            }
            let mut next_chain = chain.clone();
            next_chain.push(format!("{name} {}", c.stanza.version));
            for g in &c.depends {
                queue.push_back((g.clone(), next_chain.clone(), Some(name.clone())));
            }
            let why = if chain.is_empty() {
                "the spec".to_string()
            } else {
                chain.join(" → ")
            };
            chosen.insert(name, (c.clone(), why));
        }
        self.check_conflicts(&chosen)?;
        Ok(chosen
            .into_iter()
            .map(|(name, (candidate, _))| {
                let mut depends = edges.remove(&name).unwrap_or_default();
                depends.retain(|d| d != &name);
                depends.sort();
                depends.dedup();
                Resolved { candidate, depends }
            })
            .collect())
    }

    /// The first alternative of `group` that a package (or a provider of a virtual one)
    /// satisfies, or why none does when an alternative clashes with a chosen version.
    fn pick(&self, group: &[Dep], chosen: &Chosen) -> Result<&Candidate, Option<String>> {
        let mut clash: Option<String> = None;
        for dep in group.iter().filter(|d| self.qualifier_ok(d)) {
            if let Some((c, why)) = chosen.get(&dep.name) {
                clash.get_or_insert(format!(
                    "{} {} was chosen (for {why}) but {} is required",
                    dep.name,
                    c.stanza.version,
                    control::show_group(std::slice::from_ref(dep))
                ));
                continue;
            }
            if let Some(c) = self
                .by_name
                .get(&dep.name)
                .and_then(|l| l.iter().find(|c| dep.version_ok(&c.stanza.version)))
            {
                return Ok(c);
            }
            // A virtual package: pick a provider (one already chosen was handled before).
            if let Some(provs) = self.providers.get(&dep.name) {
                let found = provs.iter().find_map(|(pname, _)| {
                    if chosen.contains_key(pname) {
                        return None;
                    }
                    self.by_name.get(pname)?.iter().find(|c| Self::satisfies(c, dep))
                });
                if let Some(c) = found {
                    return Ok(c);
                }
            }
        }
        Err(clash)
    }

    /// The error for a group nothing satisfies, with the chain of packages that asked for it.
    fn unsatisfiable(&self, group: &[Dep], clash: Option<String>, chain: &[String]) -> ResolveError {
        let arch = &self.arch;
        let reason = clash.unwrap_or_else(|| {
            let names: Vec<String> = group
                .iter()
                .map(|d| match self.by_name.get(&d.name) {
                    Some(l) => format!(
                        "{} has only {}",
                        d.name,
                        l.iter()
                            .map(|c| c.stanza.version.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    None if self.providers.contains_key(&d.name) => format!("no provider of {} matches", d.name),
                    None => format!("no package {} for {arch}", d.name),
                })
                .collect();
            names.join("; ")
        });
        let hint = if chain.is_empty() {
            "check the name (apt-cache search) and the suites and components in [[source]]".to_string()
        } else {
            "add the suite that has it to [[source]], or list the dependency in `exclude` if the image does not need it"
                .to_string()
        };
        let mut parts = chain.to_vec();
        parts.push(control::show_group(group));
        ResolveError::Unsatisfiable {
            arch: arch.clone(),
            chain: parts.join(" → "),
            reason,
            hint,
        }
    }

    /// Conflicts and Breaks among the chosen set.
    fn check_conflicts(&self, chosen: &Chosen) -> Result<(), ResolveError> {
        for (name, (c, _)) in chosen {
            for d in c.conflicts.iter().flatten() {
                for (other, (oc, _)) in chosen {
                    if other != name && Self::satisfies(oc, d) {
                        return Err(ResolveError::Conflict {
                            arch: self.arch.clone(),
                            a: format!("{name} {}", c.stanza.version),
                            b: format!("{other} {}", oc.stanza.version),
                            relation: d.to_string(),
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

/// Chosen packages by name, with why each was chosen (for messages).
type Chosen = BTreeMap<String, (Candidate, String)>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::parse_packages;

    const INDEX: &str = "\
Package: app
Version: 1.0
Architecture: amd64
Depends: libc6 (>= 2.30), mail-transport-agent, awk | gawk, helper:any, libssl3 | libssl1.1
Filename: pool/a/app.deb
Size: 1
SHA256: 00

Package: libc6
Version: 2.36-9
Architecture: amd64
Filename: pool/l/libc6_2.36.deb
Size: 1
SHA256: 00

Package: libc6
Version: 2.28-10
Architecture: amd64
Filename: pool/l/libc6_2.28.deb
Size: 1
SHA256: 00

Package: exim4
Version: 4.96
Architecture: amd64
Provides: mail-transport-agent
Filename: pool/e/exim4.deb
Size: 1
SHA256: 00

Package: postfix
Version: 3.7
Architecture: amd64
Provides: mail-transport-agent
Filename: pool/p/postfix.deb
Size: 1
SHA256: 00

Package: mawk
Version: 1.3.4
Architecture: amd64
Priority: required
Provides: awk

Package: gawk
Version: 5.2
Architecture: amd64
Priority: optional
Provides: awk
Filename: pool/m/mawk.deb
Size: 1
SHA256: 00

Package: helper
Version: 1
Architecture: all
Multi-Arch: foreign
Filename: pool/h/helper.deb
Size: 1
SHA256: 00

Package: libssl1.1
Version: 1.1.1
Architecture: amd64
Filename: pool/l/libssl1.1.deb
Size: 1
SHA256: 00

Package: bash
Version: 5.2
Architecture: amd64
Essential: yes
Filename: pool/b/bash.deb
Size: 1
SHA256: 00

Package: armonly
Version: 1
Architecture: arm64
Filename: pool/a/armonly.deb
Size: 1
SHA256: 00

Package: old-needer
Version: 1
Architecture: amd64
Depends: libc6 (<< 2.30)
Filename: pool/o/old.deb
Size: 1
SHA256: 00

Package: chain-top
Version: 1
Architecture: amd64
Depends: chain-mid
Filename: pool/c/top.deb
Size: 1
SHA256: 00

Package: chain-mid
Version: 2
Architecture: amd64
Depends: libmissing (>= 3)
Filename: pool/c/mid.deb
Size: 1
SHA256: 00

Package: fighter
Version: 1
Architecture: amd64
Conflicts: exim4
Filename: pool/f/fighter.deb
Size: 1
SHA256: 00
";

    fn universe() -> Universe {
        Universe::new("amd64", vec![(0, parse_packages(INDEX))]).unwrap()
    }

    fn names(r: &[Resolved]) -> Vec<String> {
        r.iter()
            .map(|p| format!("{}={}", p.candidate.stanza.package, p.candidate.stanza.version))
            .collect()
    }

    #[test]
    fn closure_with_alternatives_virtuals_and_constraints() {
        let r = universe().resolve(&["app".into()], &[]).unwrap();
        // libc6: the highest version meeting >= 2.30; mail-transport-agent: first provider by
        // name (exim4); awk | gawk: mawk (required) before gawk (optional); libssl3 missing, libssl1.1 taken;
        // no Essential package (bash) pulled in.
        assert_eq!(
            names(&r),
            [
                "app=1.0",
                "exim4=4.96",
                "helper=1",
                "libc6=2.36-9",
                "libssl1.1=1.1.1",
                "mawk=1.3.4"
            ]
        );
        let app = r.iter().find(|p| p.candidate.stanza.package == "app").unwrap();
        assert_eq!(app.depends, ["exim4", "helper", "libc6", "libssl1.1", "mawk"]);
    }

    #[test]
    fn version_pins_and_chosen_providers() {
        let u = universe();
        let r = u.resolve(&["libc6=2.28-10".into()], &[]).unwrap();
        assert_eq!(names(&r), ["libc6=2.28-10"]);
        // postfix already chosen: it satisfies mail-transport-agent, exim4 is not added.
        let r = u.resolve(&["postfix".into(), "app".into()], &[]).unwrap();
        assert!(names(&r).contains(&"postfix=3.7".to_string()) && !names(&r).iter().any(|n| n.starts_with("exim4")));
        // An excluded dependency counts as present.
        let r = u.resolve(&["app".into()], &["mail-transport-agent".into()]).unwrap();
        assert!(!names(&r).iter().any(|n| n.starts_with("exim4")));
    }

    #[test]
    fn conflicting_constraints_name_both_sides() {
        let e = universe()
            .resolve(&["app".into(), "old-needer".into()], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("old-needer 1 → libc6 (<< 2.30)"), "{e}");
        assert!(e.contains("libc6 2.36-9 was chosen (for app 1.0)"), "{e}");
    }

    #[test]
    fn missing_dependency_names_the_chain() {
        let e = universe().resolve(&["chain-top".into()], &[]).unwrap_err().to_string();
        assert!(e.contains("chain-top 1 → chain-mid 2 → libmissing (>= 3)"), "{e}");
        assert!(e.contains("no package libmissing for amd64"), "{e}");
        let e = universe().resolve(&["nosuch".into()], &[]).unwrap_err().to_string();
        assert!(e.contains("cannot install nosuch") && e.contains("hint"), "{e}");
        let e = universe().resolve(&["armonly".into()], &[]).unwrap_err().to_string();
        assert!(e.contains("no package armonly for amd64"), "{e}");
        let e = universe().resolve(&["libc6=9".into()], &[]).unwrap_err().to_string();
        assert!(e.contains("libc6 has only 2.36-9, 2.28-10"), "{e}");
    }

    #[test]
    fn declared_conflicts_fail() {
        let e = universe().resolve(&["app".into(), "fighter".into()], &[]).unwrap_err();
        assert!(matches!(e, ResolveError::Conflict { .. }), "{e}");
    }
}
