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

use std::sync::Arc;

use kiln_oci::attached::MAX_REFERRER_DEPTH;
use kiln_oci::reference::{ImageRef, Name};
use kiln_oci::source::{SourceKind, read_small_blob};
use kiln_oci::transport::{OpenedImage, Remote, TransportError, open_image};
use kiln_oci::{Descriptor, Digest, Index, Manifest, Store, canonical_json, media};
use kiln_registry::ops::{artifact_manifest, fallback_tag};
use kiln_registry::{RegistryAccess, RegistryError, Session};

use crate::error::{Result, SignError};

/// Which cosign tag: signatures or attestations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagKind {
    /// `sha256-<hex>.sig`
    Sig,
    /// `sha256-<hex>.att`
    Att,
    /// `sha256-<hex>.sbom` (`cosign attach sbom`; carried along, never written by kiln)
    Sbom,
}

impl TagKind {
    /// The tag for `digest`.
    pub fn tag(self, digest: &Digest) -> String {
        let suffix = match self {
            TagKind::Sig => "sig",
            TagKind::Att => "att",
            TagKind::Sbom => "sbom",
        };
        format!("{}.{suffix}", fallback_tag(digest))
    }
}

/// Largest signature object (payload, bundle, DSSE envelope) kiln reads whole; an SBOM
/// attestation of a large image is a few MiB.
pub const MAX_SIGNATURE_BYTES: u64 = 64 << 20;

/// An image whose signatures kiln reads or writes, opened through kiln-oci's one
/// `open_image`: reads go through its image source, whatever the transport; writes go to
/// the store, and for registry images to the registry as well (the store keeps a copy).
pub struct Located<'a> {
    /// The image's top descriptor (an index for multi-arch images): what is signed.
    pub image: Descriptor,
    /// The repository, without tag or digest: the signed identity and where tags go.
    pub repository: String,
    opened: OpenedImage,
    store: &'a Store,
    /// The registry session, for registry images.
    session: Option<Arc<Session>>,
}

impl std::fmt::Debug for Located<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.repository, self.image.digest)
    }
}

/// Opens `input` for signing or verifying. With `registries`, a registry reference
/// (`HOST/REPO:TAG` or `docker://NAME`) means the image in that registry; without (`--local`,
/// and the signing step of `kiln build`), it means the store's copy. Plain names are always
/// the store's; `oci:` layouts and archives can be verified but not signed.
pub fn locate<'a>(store: &'a Store, input: &str, registries: Option<&RegistryAccess>) -> Result<Located<'a>> {
    let r = ImageRef::parse(input).map_err(|e| SignError::Input {
        what: input.to_string(),
        reason: e.to_string(),
        hint: "name an image as NAME:TAG, NAME@sha256:<hex> or HOST/REPO:TAG".into(),
    })?;
    let remote = match registries {
        Some(a) => Remote::Always(a),
        None => Remote::Never,
    };
    let opened = open_image(store, &r, None, remote).map_err(|e| explain_missing(store, &r, e))?;
    let source = opened.source();
    let repository = match (source.repository(), source.kind()) {
        (Some(repo), _) => repo,
        (None, SourceKind::Store) => {
            return Err(SignError::Input {
                what: input.to_string(),
                reason: "the image has no name in the store, so its signature tags have no repository".into(),
                hint: "tag it first (kiln tag DIGEST NAME:TAG) and sign it by that name".into(),
            });
        }
        (None, _) => source.location(),
    };
    let session = match (source.kind(), registries) {
        (SourceKind::Registry, Some(a)) => Some(a.session()?),
        _ => None,
    };
    Ok(Located {
        image: opened.descriptor.clone(),
        repository,
        opened,
        store,
        session,
    })
}

/// A registry that refuses an image the store has (not pushed yet, or another tag there)
/// gets a hint saying so; other failures (an unreachable registry) speak for themselves.
fn explain_missing(store: &Store, r: &ImageRef, e: TransportError) -> SignError {
    let in_store = match r {
        ImageRef::Store(n) => store.resolve(&n.store_key()).ok().flatten().is_some(),
        _ => false,
    };
    if in_store && matches!(e, TransportError::Remote { input: true, .. }) {
        return SignError::Input {
            what: r.to_string(),
            reason: "the store has this image, but its registry does not serve it".into(),
            hint: "push it first (kiln push NAME), or use --local to work on the store's copy".into(),
        };
    }
    e.into()
}

impl Located<'_> {
    /// The opened image, for readers of its config and layers (kiln-policy).
    pub fn opened(&self) -> &OpenedImage {
        &self.opened
    }

    /// True for registry images.
    pub fn is_remote(&self) -> bool {
        self.opened.source().kind() == SourceKind::Registry
    }

    /// `REPOSITORY@DIGEST`, for messages.
    pub fn display(&self) -> String {
        format!("{}@{}", self.repository, self.image.digest)
    }

    /// The name of the image's digest in its repository.
    fn subject(&self) -> Name {
        Name {
            repository: self.repository.clone(),
            tag: None,
            digest: Some(self.image.digest.clone()),
        }
    }

    /// The manifest under a cosign tag, if there is one; its blobs are read with
    /// [`Located::blob`].
    pub fn read_tag(&self, kind: TagKind) -> Result<Option<Manifest>> {
        let source = self.opened.source();
        match source.resolve_tag(&kind.tag(&self.image.digest))? {
            Some(d) => Ok(Some(self.manifest(&d)?)),
            None => Ok(None),
        }
    }

    /// A blob of a signature object read by [`Located::read_tag`] or [`Located::referrers`],
    /// checked against its digest and size.
    pub fn blob(&self, d: &Descriptor) -> Result<Vec<u8>> {
        Ok(read_small_blob(self.opened.source(), d, MAX_SIGNATURE_BYTES)?)
    }

    /// The image's referrers of `artifact_type`.
    pub fn referrers(&self, artifact_type: &str) -> Result<Vec<Descriptor>> {
        Ok(self.opened.referrers(Some(artifact_type))?)
    }

    /// A referrer's (or a cosign tag's) manifest.
    pub fn manifest(&self, d: &Descriptor) -> Result<Manifest> {
        let bytes = self.opened.source().read_manifest(d)?;
        serde_json::from_slice(&bytes).map_err(|e| SignError::Input {
            what: format!("{} manifest {}", self.display(), d.digest),
            reason: format!("malformed manifest: {e}"),
            hint: "delete it and sign again".into(),
        })
    }

    /// Refuses writes to layouts and archives, which are someone else's files.
    fn writable(&self) -> Result<()> {
        match self.opened.source().kind() {
            SourceKind::Layout => Err(SignError::Input {
                what: self.opened.source().location(),
                reason: "signatures are kept in the store or a registry, not in layouts or archives".into(),
                hint: "load or copy the image into the store (kiln load, kiln copy) and sign it there".into(),
            }),
            _ => Ok(()),
        }
    }

    /// Appends a layer (payload bytes, media type, annotations) to the manifest under a
    /// cosign tag, creating it if needed, in the store and, for registry images, in the
    /// registry (merged with what it has). A layer already there (same digest and
    /// annotations) is not added twice. Returns the manifest written where the image lives.
    pub fn append_to_tag(
        &self,
        kind: TagKind,
        media_type: &str,
        payload: &[u8],
        annotations: BTreeMap<String, String>,
    ) -> Result<Descriptor> {
        self.writable()?;
        let ctx = self.display();
        let store = self.store;
        let d = store.put_blob(payload).map_err(SignError::store(&ctx))?;
        let mut layer = Descriptor::new(media_type, d, payload.len() as u64);
        layer.annotations = annotations;
        let tag = kind.tag(&self.image.digest);
        let key = format!("{}:{tag}", self.repository);
        let mut layers = match store.resolve(&key).map_err(SignError::store(&key))? {
            Some(d) => {
                store
                    .read_json::<Manifest>(&d.digest)
                    .map_err(SignError::store(&key))?
                    .layers
            }
            None => vec![],
        };
        if !layers.contains(&layer) {
            layers.push(layer.clone());
        }
        let local = write_cosign_manifest(store, layers).map_err(SignError::store(&ctx))?;
        store.tag(&key, &local).map_err(SignError::store(&ctx))?;
        match &self.session {
            Some(session) => merge_into_remote_tag(session, store, &self.subject(), &tag, &[layer]),
            None => Ok(local),
        }
    }

    /// Attaches an artifact (one blob) whose subject is the image: a referrer, kept in the
    /// store and, for registry images, pushed to the registry.
    pub fn attach(
        &self,
        artifact_type: &str,
        media_type: &str,
        data: Vec<u8>,
        annotations: BTreeMap<String, String>,
    ) -> Result<Descriptor> {
        self.writable()?;
        let layers = [(media_type.to_string(), data)];
        let desc = attach_local(self.store, &self.image, artifact_type, &layers, annotations)?;
        if let Some(session) = &self.session {
            session.push_referrer(self.store, &desc, &self.subject())?;
        }
        Ok(desc)
    }
}

/// Merges `layers` (whose blobs are in `store`) into the registry's manifest under the
/// cosign tag `tag` of `subject`'s repository, and pushes the result.
fn merge_into_remote_tag(
    session: &Session,
    store: &Store,
    subject: &Name,
    tag: &str,
    layers: &[Descriptor],
) -> Result<Descriptor> {
    let repo = session.repo(subject)?;
    let (work, _dir) = store.temp_layout("sign-").map_err(SignError::store("temp layout"))?;
    let mut merged: Vec<Descriptor> = match session.block_on(repo.get_manifest(tag)) {
        Ok(raw) => {
            let m: Manifest = serde_json::from_slice(&raw.bytes).map_err(|e| SignError::Input {
                what: format!("{}:{tag}", subject.repository),
                reason: format!("malformed manifest: {e}"),
                hint: "delete the tag and sign again".into(),
            })?;
            session.block_on(async {
                for l in &m.layers {
                    repo.fetch_blob(l, &work).await?;
                }
                Ok::<_, RegistryError>(())
            })?;
            m.layers
        }
        Err(RegistryError::Http { status: 404, .. }) => vec![],
        Err(e) => return Err(e.into()),
    };
    for l in layers {
        if !work.has_blob(&l.digest) {
            let data = store.read_blob(&l.digest).map_err(SignError::store(tag))?;
            work.put_blob(&data).map_err(SignError::store(tag))?;
        }
        if !merged.contains(l) {
            merged.push(l.clone());
        }
    }
    let desc = write_cosign_manifest(&work, merged).map_err(SignError::store(tag))?;
    let to = Name {
        repository: subject.repository.clone(),
        tag: Some(tag.to_string()),
        digest: None,
    };
    session.push(&work, &desc, &to)?;
    Ok(desc)
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
/// cosign `.sig`/`.att`/`.sbom` manifests (merged with what the registry already has), for
/// the image and, if it is an index in the store, each of its platforms. Returns how many
/// objects were sent.
pub fn push_along(session: &Session, store: &Store, image: &Descriptor, dest: &Name) -> Result<usize> {
    let mut subjects = vec![image.digest.clone()];
    if media::is_index(&image.media_type) && store.has_blob(&image.digest) {
        let index: Index = store
            .read_json(&image.digest)
            .map_err(SignError::store(dest.to_string()))?;
        subjects.extend(index.manifests.into_iter().map(|m| m.digest));
    }
    push_attached(session, store, &subjects, &dest.repository)
}

/// Sends what `store` keeps beside each of `subjects`, and beside those artifacts in turn
/// (a signature of an SBOM), to `repository` in its registry: referrers and cosign tags, as
/// [`push_along`] describes. The subjects must be in the registry already. Returns how many
/// objects were sent.
pub fn push_attached(session: &Session, store: &Store, subjects: &[Digest], repository: &str) -> Result<usize> {
    let by_subject = store.referrers_by_subject().map_err(SignError::store("index.json"))?;
    let index = store.index().map_err(SignError::store("index.json"))?;
    let mut todo: Vec<(Digest, usize)> = subjects.iter().map(|d| (d.clone(), 0)).collect();
    let mut seen = std::collections::BTreeSet::new();
    let mut sent = 0;
    while let Some((digest, depth)) = todo.pop() {
        if depth > MAX_REFERRER_DEPTH || !seen.insert(digest.clone()) {
            continue;
        }
        let subject = Name {
            repository: repository.to_string(),
            tag: None,
            digest: Some(digest.clone()),
        };
        let referrers = by_subject.get(&digest).cloned().unwrap_or_default();
        // The referrers (with the tag-schema update's confirmation wait) and the cosign tags
        // do not depend on each other: they go up side by side.
        sent += std::thread::scope(|scope| {
            let refs = scope.spawn(|| -> Result<usize> {
                if !referrers.is_empty() {
                    session.push_referrers(store, &referrers, &subject)?;
                }
                Ok(referrers.len())
            });
            let tags = push_cosign_tags(session, store, &index, &subject);
            let refs = refs.join().expect("the referrer push does not panic");
            Ok::<_, SignError>(refs? + tags?)
        })?;
        todo.extend(referrers.into_iter().map(|r| (r.digest, depth + 1)));
    }
    Ok(sent)
}

/// The cosign-tag half of [`push_attached`]: merges the local manifests of every repository
/// with what the registry has, and pushes the result under the cosign tags.
fn push_cosign_tags(session: &Session, store: &Store, index: &Index, subject: &Name) -> Result<usize> {
    let digest = subject.digest.as_ref().expect("subjects are named by digest");
    let mut sent = 0;
    for kind in [TagKind::Sig, TagKind::Att, TagKind::Sbom] {
        let tag = kind.tag(digest);
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
        merge_into_remote_tag(session, store, subject, &tag, &layers)?;
        sent += 1;
    }
    Ok(sent)
}
