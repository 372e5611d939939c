//! Making `kiln.lock`: resolving a kiln.toml against its archives into a
//! [`kiln_plan::lock::Lock`] (the typed lock both frontends share), and telling whether a lock
//! still fits its spec. A build reads only the lock (and the .debs it names by sha256), so the
//! same lock gives the same image anywhere.

use std::path::Path;

use kiln_plan::lock::{LOCK_VERSION, Lock, LockedPackage, Snapshot};

use crate::error::Error;
use crate::repo::{self, Release};
use crate::resolve::Universe;
use crate::spec::Spec;

/// Why `lock` cannot build `spec`, if it cannot.
pub fn disagreement(lock: &Lock, spec: &Spec) -> Option<String> {
    if lock.spec_hash != spec.resolution_hash() {
        return Some("kiln.toml's sources, architectures, packages or exclude changed since the lock was made".into());
    }
    for arch in &spec.architectures {
        for p in &spec.packages {
            let name = p.split('=').next().unwrap_or(p).trim();
            if !lock.package.iter().any(|l| &l.arch == arch && l.name == name) {
                return Some(format!("package {name} for {arch} is not in the lock"));
            }
        }
    }
    None
}

/// Resolves `spec` against the archives and returns a new lock. `progress` gets one line per
/// download. Nothing is written here.
/// `previous` is the lock being replaced, if any: a suite's InRelease may not be older than
/// the one it recorded (see [`repo::fetch_release`]).
pub fn lock(spec: &Spec, cache: &Path, previous: Option<&Lock>, progress: &dyn Fn(&str)) -> Result<Lock, Error> {
    let mut releases: Vec<(Release, Vec<String>)> = Vec::new();
    for src in &spec.source {
        for suite in &src.suites {
            progress(&format!("verifying {}/dists/{suite}/InRelease", src.url));
            let url = src.url.trim_end_matches('/');
            let recorded = previous.and_then(|l| l.snapshot.iter().find(|s| s.url == url && &s.suite == suite));
            let r = repo::fetch_release(&src.url, suite, &src.keyring, recorded)?;
            releases.push((r, src.components.clone()));
        }
    }
    let mut package = Vec::new();
    for arch in &spec.architectures {
        let mut indexes = Vec::new();
        for (i, (r, comps)) in releases.iter().enumerate() {
            for comp in comps {
                progress(&format!("reading {}/dists/{} {comp}/binary-{arch}", r.url, r.suite));
                indexes.push((i, repo::fetch_packages(r, comp, arch, cache)?));
            }
        }
        let universe = Universe::new(arch, indexes)?;
        for p in universe.resolve(&spec.packages, &spec.exclude)? {
            let s = &p.candidate.stanza;
            if s.sha256.len() != 64 || s.filename.is_empty() {
                return Err(Error::Input {
                    message: format!(
                        "{}: package {} {} has no SHA256 or Filename in the index",
                        releases[p.candidate.origin].0.url, s.package, s.version
                    ),
                    hint: "kiln only installs packages the archive pins by sha256".into(),
                });
            }
            package.push(LockedPackage {
                name: s.package.clone(),
                version: s.version.clone(),
                arch: arch.clone(),
                package_arch: s.architecture.clone(),
                source: s.source.clone(),
                source_version: s.source_version.clone(),
                url: releases[p.candidate.origin].0.url.clone(),
                path: s.filename.clone(),
                size: s.size,
                sha256: s.sha256.clone(),
                depends: p.depends,
            });
        }
    }
    package.sort_by(|a, b| (&a.arch, &a.name).cmp(&(&b.arch, &b.name)));
    let snapshot = releases
        .into_iter()
        .map(|(r, _)| Snapshot {
            url: r.url,
            suite: r.suite,
            codename: r.codename,
            release: r.version,
            date: r.date,
            valid_until: r.valid_until_text,
            inrelease_sha256: r.inrelease_sha256,
        })
        .collect();
    Ok(Lock {
        version: LOCK_VERSION,
        spec_hash: spec.resolution_hash(),
        image: vec![],
        snapshot,
        package,
        url: vec![],
        git: vec![],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disagreement_with_the_spec() {
        let spec = Spec::parse(
            "k",
            "architectures = [\"amd64\"]\npackages = [\"a\"]\n[[source]]\nsuites = [\"bookworm\"]\n",
        )
        .unwrap();
        let mut lock = Lock::new();
        lock.spec_hash = spec.resolution_hash();
        lock.package.push(LockedPackage {
            name: "a".into(),
            version: "1".into(),
            arch: "amd64".into(),
            package_arch: "all".into(),
            source: "a".into(),
            source_version: "1".into(),
            url: "http://x/debian".into(),
            path: "pool/a.deb".into(),
            size: 3,
            sha256: "00".repeat(32),
            depends: vec![],
        });
        assert!(disagreement(&lock, &spec).is_none());
        let spec2 = Spec::parse(
            "k",
            "architectures = [\"amd64\"]\npackages = [\"a\", \"b\"]\n[[source]]\nsuites = [\"bookworm\"]\n",
        )
        .unwrap();
        assert!(disagreement(&lock, &spec2).unwrap().contains("changed"));
    }
}
