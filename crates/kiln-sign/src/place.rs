//! Where signatures live, for an image in the local store or in a registry.
//!
//! Two forms, as cosign reads them:
//! - cosign's tag schema: a manifest tagged `sha256-<hex>.sig` (or `.att`) in the image's
//!   repository whose layers are the signed payloads; new signatures are appended as layers
//!   and the config lists their digests (as cosign writes it);
//! - Sigstore bundles attached as OCI 1.1 referrers (artifact manifests whose `subject` is
//!   the image), through `kiln-registry`'s attach for registries.
//!
//! In the local store the same objects sit beside the image: the tagged manifests under
//! `REPOSITORY:sha256-<hex>.sig|.att` in index.json, and referrers as untagged index.json
//! entries that carry an `artifactType`. [`push_along`] sends both when the image is
//! pushed. docs/sign.md describes the convention.

use std::collections::BTreeMap;

use kiln_oci::reference::{ImageRef, Name};
use kiln_oci::store::REF_NAME;
use kiln_oci::{Descriptor, Digest, Manifest, Store, canonical_json, media};
use kiln_registry::ops::{artifact_manifest, fallback_tag};
use kiln_registry::{RegistryError, Session};

use crate::error::{Result, SignError};

/// Which cosign tag: signatures or attestations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagKind {
    /// `sha256-<hex>.sig`
    Sig,
    /// `sha256-<hex>.att`
    Att,
}

impl TagKind {
    /// The tag for `digest`.
    pub fn tag(self, digest: &Digest) -> String {
        let suffix = match self {
            TagKind::Sig => "sig",
            TagKind::Att => "att",
        };
        format!("{}.{suffix}", fallback_tag(digest))
    }
}

/// An image whose signatures kiln reads or writes.
pub struct Located<'a> {
    /// The image's top descriptor (an index for multi-arch images): what is signed.
    pub image: Descriptor,
    /// The repository, without tag or digest: the signed identity and where tags go.
    pub repository: String,
    place: Place<'a>,
}

enum Place<'a> {
    Local(&'a Store),
    Remote {
        session: &'a Session,
        /// The repository with the image's digest.
        name: Name,
        /// Blobs on their way to or from the registry.
        work: Store,
        _dir: tempfile::TempDir,
    },
}

impl std::fmt::Debug for Located<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.repository, self.image.digest)
    }
}

fn not_found(input: &str, store: &Store) -> SignError {
    SignError::Input {
        what: input.to_string(),
        reason: format!("not in the store at {} and names no registry", store.root().display()),
        hint: "sign images in the store by name (kiln images lists them) or registry images as HOST/REPO:TAG".into(),
    }
}

/// Finds `input`: a name in the local store first; else, for a host-qualified name or
/// `docker://NAME`, the registry (`session` is made only then).
pub fn locate<'a>(store: &'a Store, input: &str, session: &'a dyn Fn() -> Result<&'a Session>) -> Result<Located<'a>> {
    let r = ImageRef::parse(input).map_err(|e| SignError::Input {
        what: input.to_string(),
        reason: e.to_string(),
        hint: "name an image as NAME:TAG, NAME@sha256:<hex> or HOST/REPO:TAG".into(),
    })?;
    let remote = match &r {
        ImageRef::Registry(n) => Some(n.clone()),
        ImageRef::Store(n) => {
            let local = match &n.digest {
                Some(d) => store
                    .index()
                    .map_err(SignError::store(input))?
                    .manifests
                    .into_iter()
                    .find(|m| &m.digest == d),
                None => store.resolve(&n.store_key()).map_err(SignError::store(input))?,
            };
            if let Some(mut d) = local {
                d.annotations.remove(REF_NAME);
                return Ok(Located {
                    image: d,
                    repository: n.repository.clone(),
                    place: Place::Local(store),
                });
            }
            if n.registry_host().is_none() {
                return Err(not_found(input, store));
            }
            Some(n.clone())
        }
        ImageRef::StoreDigest(d) => {
            let index = store.index().map_err(SignError::store(input))?;
            let entry = index
                .manifests
                .iter()
                .find(|m| &m.digest == d)
                .ok_or_else(|| not_found(input, store))?;
            let repository = index
                .manifests
                .iter()
                .filter(|m| &m.digest == d)
                .filter_map(|m| m.ref_name().and_then(|n| Name::parse(n).ok()))
                .map(|n| n.repository)
                .next()
                .ok_or_else(|| SignError::Input {
                    what: input.to_string(),
                    reason: "the image has no name in the store, so its signature tags have no repository".into(),
                    hint: "tag it first (kiln tag DIGEST NAME:TAG) and sign it by that name".into(),
                })?;
            let mut image = entry.clone();
            image.annotations.remove(REF_NAME);
            return Ok(Located {
                image,
                repository,
                place: Place::Local(store),
            });
        }
        _ => None,
    };
    let Some(n) = remote else {
        return Err(SignError::Input {
            what: input.to_string(),
            reason: "signatures are kept in the store or a registry, not in layouts or archives".into(),
            hint: "load or copy the image into the store (kiln load, kiln copy) and sign it there".into(),
        });
    };
    let session = session()?;
    let image = session.resolve(&n)?;
    let name = Name {
        repository: n.repository.clone(),
        tag: None,
        digest: Some(image.digest.clone()),
    };
    let (work, dir) = work_store(store)?;
    let repository = match n.registry_host() {
        Some(_) => n.repository.clone(),
        None => {
            let (h, p) = kiln_registry::ops::locate(&n);
            format!("{h}/{p}")
        }
    };
    Ok(Located {
        image,
        repository,
        place: Place::Remote {
            session,
            name,
            work,
            _dir: dir,
        },
    })
}

/// A throwaway layout in the store's temp dir, for blobs passing to or from a registry.
fn work_store(store: &Store) -> Result<(Store, tempfile::TempDir)> {
    let tmp = store.tmp_dir();
    let io = |source| SignError::Io {
        path: tmp.clone(),
        source,
    };
    std::fs::create_dir_all(&tmp).map_err(io)?;
    let dir = tempfile::Builder::new().prefix("sign-").tempdir_in(&tmp).map_err(io)?;
    let work = Store::open(dir.path()).map_err(SignError::store("temp layout"))?;
    Ok((work, dir))
}

impl Located<'_> {
    /// True for registry images.
    pub fn is_remote(&self) -> bool {
        matches!(self.place, Place::Remote { .. })
    }

    /// `REPOSITORY@DIGEST`, for messages.
    pub fn display(&self) -> String {
        format!("{}@{}", self.repository, self.image.digest)
    }

    /// The layout that holds (or receives) blobs.
    fn blobs(&self) -> &Store {
        match &self.place {
            Place::Local(s) => s,
            Place::Remote { work, .. } => work,
        }
    }

    /// The manifest under a cosign tag, if there is one; its blobs are made readable with
    /// [`Located::blob`].
    pub fn read_tag(&self, kind: TagKind) -> Result<Option<Manifest>> {
        let tag = kind.tag(&self.image.digest);
        match &self.place {
            Place::Local(store) => {
                let key = format!("{}:{tag}", self.repository);
                let Some(d) = store.resolve(&key).map_err(SignError::store(&key))? else {
                    return Ok(None);
                };
                Ok(Some(store.read_json(&d.digest).map_err(SignError::store(&key))?))
            }
            Place::Remote {
                session, name, work, ..
            } => {
                let repo = session.repo(name)?;
                let raw = match session.block_on(repo.get_manifest(&tag)) {
                    Ok(m) => m,
                    Err(RegistryError::Http { status: 404, .. }) => return Ok(None),
                    Err(e) => return Err(e.into()),
                };
                let m: Manifest = serde_json::from_slice(&raw.bytes).map_err(|e| SignError::Input {
                    what: format!("{}:{tag}", self.repository),
                    reason: format!("malformed manifest: {e}"),
                    hint: "delete the tag and sign again".into(),
                })?;
                session.block_on(async {
                    for l in &m.layers {
                        repo.fetch_blob(l, work).await?;
                    }
                    Ok::<_, RegistryError>(())
                })?;
                Ok(Some(m))
            }
        }
    }

    /// A blob of a signature object read by [`Located::read_tag`] or [`Located::referrers`].
    pub fn blob(&self, d: &Descriptor) -> Result<Vec<u8>> {
        if let Place::Remote {
            session, name, work, ..
        } = &self.place
            && !work.has_blob(&d.digest)
        {
            let repo = session.repo(name)?;
            session.block_on(repo.fetch_blob(d, work))?;
        }
        self.blobs()
            .read_blob(&d.digest)
            .map_err(SignError::store(self.display()))
    }

    /// Appends a layer (payload bytes, media type, annotations) to the manifest under a
    /// cosign tag, creating it if needed. A layer already there (same digest and
    /// annotations) is not added twice.
    pub fn append_to_tag(
        &self,
        kind: TagKind,
        media_type: &str,
        payload: &[u8],
        annotations: BTreeMap<String, String>,
    ) -> Result<Descriptor> {
        let existing = self.read_tag(kind)?;
        let store = self.blobs();
        let ctx = self.display();
        let d = store.put_blob(payload).map_err(SignError::store(&ctx))?;
        let mut layer = Descriptor::new(media_type, d, payload.len() as u64);
        layer.annotations = annotations;
        let mut layers = existing.map(|m| m.layers).unwrap_or_default();
        if !layers.contains(&layer) {
            layers.push(layer);
        }
        let desc = write_cosign_manifest(store, layers).map_err(SignError::store(&ctx))?;
        let tag = kind.tag(&self.image.digest);
        match &self.place {
            Place::Local(s) => s
                .tag(&format!("{}:{tag}", self.repository), &desc)
                .map_err(SignError::store(&ctx))?,
            Place::Remote {
                session, name, work, ..
            } => {
                let dest = Name {
                    repository: name.repository.clone(),
                    tag: Some(tag),
                    digest: None,
                };
                session.push(work, &desc, &dest)?;
            }
        }
        Ok(desc)
    }

    /// Attaches an artifact (one blob) whose subject is the image: a referrer.
    pub fn attach(
        &self,
        artifact_type: &str,
        media_type: &str,
        data: Vec<u8>,
        annotations: BTreeMap<String, String>,
    ) -> Result<Descriptor> {
        let layers = [(media_type.to_string(), data)];
        match &self.place {
            Place::Local(store) => attach_local(store, &self.image, artifact_type, &layers, annotations),
            Place::Remote {
                session, name, work, ..
            } => Ok(session.attach(work, name, artifact_type, &layers, annotations)?),
        }
    }

    /// The image's referrers of `artifact_type`.
    pub fn referrers(&self, artifact_type: &str) -> Result<Vec<Descriptor>> {
        match &self.place {
            Place::Local(store) => local_referrers(store, &self.image.digest, Some(artifact_type)),
            Place::Remote { session, name, .. } => Ok(session.referrers(name, Some(artifact_type))?),
        }
    }

    /// A referrer's manifest.
    pub fn manifest(&self, d: &Descriptor) -> Result<Manifest> {
        let ctx = format!("{} referrer {}", self.display(), d.digest);
        if let Place::Remote {
            session, name, work, ..
        } = &self.place
            && !work.has_blob(&d.digest)
        {
            let repo = session.repo(name)?;
            let raw = session.block_on(repo.get_manifest(&d.digest.to_string()))?;
            work.put_blob(&raw.bytes).map_err(SignError::store(&ctx))?;
        }
        self.blobs().read_json(&d.digest).map_err(SignError::store(ctx))
    }
}

/// Writes a cosign signature manifest for `layers`: an OCI image manifest whose config
/// lists the layers' digests as diff_ids, as cosign's signature images have.
fn write_cosign_manifest(
    store: &Store,
    layers: Vec<Descriptor>,
) -> std::result::Result<Descriptor, kiln_oci::StoreError> {
    let config = serde_json::json!({
        "architecture": "",
        "config": {},
        "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.digest.to_string()).collect::<Vec<_>>()},
    });
    let cfg = canonical_json(&config);
    let cfg_d = store.put_blob(&cfg)?;
    let m = Manifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.into()),
        artifact_type: None,
        config: Descriptor::new(media::OCI_CONFIG, cfg_d, cfg.len() as u64),
        layers,
        subject: None,
        annotations: BTreeMap::new(),
    };
    let bytes = canonical_json(&m);
    let d = store.put_blob(&bytes)?;
    Ok(Descriptor::new(media::OCI_MANIFEST, d, bytes.len() as u64))
}

/// Stores an artifact whose subject is `image` beside it in the local store: the manifest
/// is listed in index.json untagged, with its `artifactType`, so `kiln push` finds it and
/// `kiln prune` keeps it. Used for signature bundles, provenance and SBOMs alike.
pub fn attach_local(
    store: &Store,
    image: &Descriptor,
    artifact_type: &str,
    layers: &[(String, Vec<u8>)],
    annotations: BTreeMap<String, String>,
) -> Result<Descriptor> {
    let ctx = format!("attach to {}", image.digest);
    let _lease = store.lease().map_err(SignError::store(&ctx))?;
    let (desc, _) =
        artifact_manifest(store, image, artifact_type, layers, annotations).map_err(SignError::store(&ctx))?;
    store.add_untagged(&desc).map_err(SignError::store(&ctx))?;
    Ok(desc)
}

/// Artifacts in the local store whose subject is `digest` (optionally of one type).
pub fn local_referrers(store: &Store, digest: &Digest, artifact_type: Option<&str>) -> Result<Vec<Descriptor>> {
    store
        .referrers(digest, artifact_type)
        .map_err(SignError::store(&format!("referrers of {digest}")))
}

/// After `image` was pushed from `store` to `dest`, sends what is kept beside it: every
/// local referrer (indexed by the registry's referrers API or the tag schema) and the
/// cosign `.sig`/`.att` manifests (merged with what the registry already has). Returns how
/// many objects were sent.
pub fn push_along(session: &Session, store: &Store, image: &Descriptor, dest: &Name) -> Result<usize> {
    let subject = Name {
        repository: dest.repository.clone(),
        tag: None,
        digest: Some(image.digest.clone()),
    };
    let referrers = local_referrers(store, &image.digest, None)?;
    // The referrers (with the tag-schema update's confirmation wait) and the cosign tags do
    // not depend on each other: they go up side by side.
    std::thread::scope(|scope| {
        let refs = scope.spawn(|| -> Result<usize> {
            if !referrers.is_empty() {
                session.push_referrers(store, &referrers, &subject)?;
            }
            Ok(referrers.len())
        });
        let tags = push_cosign_tags(session, store, image, dest, &subject);
        let refs = refs.join().expect("the referrer push does not panic");
        Ok(refs? + tags?)
    })
}

/// The `.sig`/`.att` half of [`push_along`]: merges the local manifests of every repository
/// with what the registry has, and pushes the result under the cosign tags.
fn push_cosign_tags(
    session: &Session,
    store: &Store,
    image: &Descriptor,
    dest: &Name,
    subject: &Name,
) -> Result<usize> {
    let mut sent = 0;
    let index = store.index().map_err(SignError::store("index.json"))?;
    for kind in [TagKind::Sig, TagKind::Att] {
        let tag = kind.tag(&image.digest);
        let mut layers: Vec<Descriptor> = Vec::new();
        for m in &index.manifests {
            let Some(n) = m.ref_name().and_then(|r| Name::parse(r).ok()) else {
                continue;
            };
            if n.tag.as_deref() != Some(tag.as_str()) {
                continue;
            }
            let parsed: Manifest = store.read_json(&m.digest).map_err(SignError::store(&tag))?;
            for l in parsed.layers {
                if !layers.contains(&l) {
                    layers.push(l);
                }
            }
        }
        if layers.is_empty() {
            continue;
        }
        let remote = Located {
            image: image.clone(),
            repository: dest.repository.clone(),
            place: {
                let (work, dir) = work_store(store)?;
                Place::Remote {
                    session,
                    name: subject.clone(),
                    work,
                    _dir: dir,
                }
            },
        };
        if let Some(existing) = remote.read_tag(kind)? {
            for l in existing.layers {
                if !layers.contains(&l) {
                    layers.push(l);
                }
            }
        }
        let Place::Remote { work, .. } = &remote.place else {
            unreachable!()
        };
        for l in &layers {
            if !work.has_blob(&l.digest) {
                let data = store.read_blob(&l.digest).map_err(SignError::store(&tag))?;
                work.put_blob(&data).map_err(SignError::store(&tag))?;
            }
        }
        let desc = write_cosign_manifest(work, layers).map_err(SignError::store(&tag))?;
        let to = Name {
            repository: dest.repository.clone(),
            tag: Some(tag),
            digest: None,
        };
        session.push(work, &desc, &to)?;
        sent += 1;
    }
    Ok(sent)
}
