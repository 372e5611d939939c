//! Base images of a Dockerfile build, resolved to digests: pulled per the pull policy when
//! they name a registry, recorded per platform (what `kiln lock` writes to
//! `Dockerfile.lock`), and checked against a lock under `--locked`.
//!
//! The frontend stays free of I/O: it asks [`BasePins::resolve`] for each `FROM`,
//! `COPY --from` and `RUN --mount from=` image, and this is the one place that talks to
//! registries on its behalf.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use kiln_oci::reference::{ImageRef, Name};
use kiln_oci::{Platform, Store};
use kiln_plan::lock::Lock;
use kiln_plan::platform;
use kiln_registry::ops::Select;
use kiln_registry::{Options, Session};

use crate::frontend::ResolvedImage;

/// When base images that name a registry are pulled (`--pull`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullPolicy {
    /// Always ask the registry, so a moved tag is followed.
    Always,
    /// Pull only what the store lacks.
    #[default]
    Missing,
    /// Never pull: the store must have it.
    Never,
}

/// A lock the build must match (`--locked`), with where it came from for messages.
#[derive(Debug, Clone)]
pub struct Locked {
    /// The lock file's path.
    pub path: PathBuf,
    /// Its content.
    pub lock: Lock,
}

/// A resolved image: the pin, and whether the name points at a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// Manifest digest.
    pub digest: kiln_oci::Digest,
    /// The name names a registry (it may have been pulled).
    pub remote: bool,
}

/// Resolves base images for one build and remembers what each resolved to.
pub struct BasePins<'a> {
    store: &'a Store,
    registry: Options,
    policy: PullPolicy,
    locked: Option<Locked>,
    session: Mutex<Option<Session>>,
    pins: Mutex<BTreeMap<(String, String), Pin>>,
    /// Set when a pull failed on the environment (registry unreachable, disk), not on what
    /// the Dockerfile says.
    environment_failed: std::sync::atomic::AtomicBool,
    /// The build's `ADD` URLs and git sources, pinned under the same lock.
    remote: crate::remote::RemoteInputs<'a>,
}

impl<'a> BasePins<'a> {
    /// A resolver over `store`, pulling with `registry` options per `policy`, checking every
    /// pin against `locked` when given.
    pub fn new(store: &'a Store, registry: Options, policy: PullPolicy, locked: Option<Locked>) -> BasePins<'a> {
        BasePins {
            store,
            remote: crate::remote::RemoteInputs::new(store, registry.clone(), locked.clone()),
            registry,
            policy,
            locked,
            session: Mutex::new(None),
            pins: Mutex::new(BTreeMap::new()),
            environment_failed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// True when resolving failed because of the environment (an unreachable registry, a
    /// full disk) rather than the Dockerfile, so the build exits 3 as `kiln pull` would,
    /// although the error is reported at the FROM line.
    pub fn environment_failed(&self) -> bool {
        self.environment_failed.load(std::sync::atomic::Ordering::Relaxed) || self.remote.environment_failed()
    }

    /// The resolver of the build's `ADD` URLs and git sources (same store, registry
    /// settings and lock).
    pub fn remote(&self) -> &crate::remote::RemoteInputs<'a> {
        &self.remote
    }

    fn note(&self, e: &kiln_registry::RegistryError) -> String {
        if !e.is_input() {
            self.environment_failed
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        e.to_string()
    }

    /// The resolver handed to the frontend: the error string is shown at the Dockerfile line.
    pub fn resolve(&self, name: &str, platform: &Platform) -> Result<ResolvedImage, String> {
        let plat = platform::format(platform);
        let remote = registry_name(name)?;
        let local_name = match &remote {
            Some(n) => {
                self.pull_if_needed(name, n, platform)?;
                n.store_key()
            }
            None => name.to_string(),
        };
        let resolved = crate::build::resolve_in_store(self.store, &local_name, platform)?;
        if let Some(l) = &self.locked {
            check_pin(l, name, &plat, &resolved.digest)?;
        }
        self.pins.lock().expect("pins lock").insert(
            (name.to_string(), plat),
            Pin {
                digest: resolved.digest.clone(),
                remote: remote.is_some(),
            },
        );
        Ok(resolved)
    }

    fn pull_if_needed(&self, written: &str, n: &Name, platform: &Platform) -> Result<(), String> {
        let in_store = match &n.digest {
            Some(d) => self.store.has_blob(d),
            None => self.store.resolve(&n.store_key()).ok().flatten().is_some(),
        };
        let pull = match self.policy {
            PullPolicy::Always => true,
            PullPolicy::Missing => !in_store,
            PullPolicy::Never => false,
        };
        if pull {
            let mut guard = self.session.lock().expect("session lock");
            if guard.is_none() {
                *guard = Some(Session::new(self.registry.clone()).map_err(|e| self.note(&e))?);
            }
            let s = guard.as_ref().expect("just set");
            s.pull(self.store, n, &Select::Platform(platform.clone()), Some(&n.store_key()))
                .map_err(|e| self.note(&e))?;
        } else if !in_store {
            return Err(format!(
                "{written} is not in the store and --pull=never forbids pulling it (hint: pull it first, or use --pull=missing)"
            ));
        }
        Ok(())
    }

    /// Every image resolved so far: (name, platform) → pin.
    pub fn pins(&self) -> BTreeMap<(String, String), Pin> {
        self.pins.lock().expect("pins lock").clone()
    }

    /// The pins as a lock (what `kiln lock` writes for a Dockerfile), `ADD` sources included.
    pub fn to_lock(&self) -> Lock {
        let mut lock = Lock::new();
        for ((name, plat), pin) in self.pins() {
            lock.pin_image(&name, &plat, pin.digest);
        }
        self.remote.add_to_lock(&mut lock);
        lock
    }
}

/// The registry a name points at: `docker://NAME`, or a plain name whose first component
/// is a host. Other names are looked up in the store only.
fn registry_name(name: &str) -> Result<Option<Name>, String> {
    Ok(match ImageRef::parse(name).map_err(|e| e.to_string())? {
        ImageRef::Registry(n) => Some(n),
        ImageRef::Store(n) if n.registry_host().is_some() => Some(n),
        _ => None,
    })
}

/// Under `--locked`: the image must be pinned, to the digest it resolved to.
fn check_pin(l: &Locked, name: &str, plat: &str, got: &kiln_oci::Digest) -> Result<(), String> {
    let file = l.path.display();
    match l.lock.image(name, plat) {
        Some(want) if want == got => Ok(()),
        Some(want) => Err(format!(
            "base image {name} ({plat}) resolves to {got}, but {file} pins {want} (hint: the tag has moved; run `kiln lock` to accept the new digest, or pin FROM {name}@{want})"
        )),
        None => Err(format!(
            "base image {name} ({plat}) is not pinned in {file} (hint: run `kiln lock` on the Dockerfile to pin it)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locked_pins_are_checked() {
        let d = |b: &[u8]| kiln_oci::Digest::sha256_of(b);
        let mut lock = Lock::new();
        lock.pin_image("reg:5000/base:1", "linux/amd64", d(b"one"));
        let l = Locked {
            path: "Dockerfile.lock".into(),
            lock,
        };
        assert!(check_pin(&l, "reg:5000/base:1", "linux/amd64", &d(b"one")).is_ok());
        let e = check_pin(&l, "reg:5000/base:1", "linux/amd64", &d(b"two")).unwrap_err();
        assert!(
            e.contains("moved") && e.contains("Dockerfile.lock") && e.contains(&d(b"two").to_string()),
            "{e}"
        );
        let e = check_pin(&l, "reg:5000/base:1", "linux/arm64", &d(b"one")).unwrap_err();
        assert!(e.contains("not pinned"), "{e}");
        assert_eq!(registry_name("base:1").unwrap(), None);
        assert!(registry_name("127.0.0.1:5000/base:1").unwrap().is_some());
    }
}
