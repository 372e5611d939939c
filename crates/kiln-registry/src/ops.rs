//! Whole-image operations: pull, push, copy between registries, referrers. [`Session`] is
//! the blocking front door the CLI and the build engine use; it owns a tokio runtime and
//! one [`Registry`] per host, so tokens and transport decisions are shared by everything a
//! command does.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use kiln_oci::image::choose_platform;
use kiln_oci::reference::Name;
use kiln_oci::{Descriptor, Digest, Index, Manifest, Platform, Store, canonical_json, media};
use tokio::task::JoinSet;

use crate::client::{Options, Registry};
use crate::error::{RegistryError, Result};
use crate::repo::{BlobOutcome, RawManifest, Repo};

/// Which manifests of an index to take.
#[derive(Debug, Clone)]
pub enum Select {
    /// The one for this platform (variant compared when given).
    Platform(Platform),
    /// Every manifest (`--all`).
    All,
}

/// What a pull did.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// What the tag (or digest) resolved to in the registry: an index for multi-arch images.
    /// This is what a lock file pins.
    pub resolved: Descriptor,
    /// What was stored and tagged: the platform's manifest, or the index with `--all`.
    pub image: Descriptor,
    /// Blobs downloaded (others were already in the store).
    pub fetched: usize,
    /// Bytes downloaded.
    pub bytes: u64,
}

/// What a push did.
#[derive(Debug, Clone, Default)]
pub struct Pushed {
    /// The top-level descriptor pushed (its digest is the image's registry digest).
    pub descriptor: Option<Descriptor>,
    /// Blobs uploaded.
    pub uploaded: usize,
    /// Blobs mounted from another repository.
    pub mounted: usize,
    /// Blobs the registry already had.
    pub present: usize,
    /// Bytes uploaded.
    pub bytes: u64,
}

/// The empty JSON object that artifact manifests use as their config.
pub const EMPTY_JSON: &[u8] = b"{}";
/// Its media type.
pub const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";

/// Where a registry image lives: its registry host and the path inside it. Names without a
/// host mean Docker Hub (`docker.io`, with `library/` for one-component names).
pub fn locate(name: &Name) -> (String, String) {
    match name.registry_host() {
        Some(h) => (h.to_string(), name.path_in_registry().to_string()),
        None if !name.repository.contains('/') => ("docker.io".into(), format!("library/{}", name.repository)),
        None => ("docker.io".into(), name.repository.clone()),
    }
}

/// The tag or digest to ask the registry for.
pub fn reference_of(name: &Name) -> String {
    match (&name.digest, &name.tag) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.clone(),
        (None, None) => "latest".into(),
    }
}

/// The referrers tag-schema tag for a digest: `sha256-<hex>`.
pub fn fallback_tag(d: &Digest) -> String {
    let t = format!("{}-{}", d.algorithm().as_str(), d.hex());
    t.chars().take(128).collect()
}

/// A blocking handle for registry work; see the module docs.
pub struct Session {
    rt: tokio::runtime::Runtime,
    opts: Arc<Options>,
    registries: Mutex<HashMap<String, Registry>>,
}

fn store_err(context: &str) -> impl FnOnce(kiln_oci::StoreError) -> RegistryError + '_ {
    move |source| RegistryError::Store {
        context: context.to_string(),
        source,
    }
}

const ORIGINS: &str = "registry-origins.json";

impl Session {
    /// A session with these options.
    pub fn new(opts: Options) -> Result<Session> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .map_err(|e| RegistryError::Config {
                path: "tokio".into(),
                reason: e.to_string(),
                hint: "the system refused to start threads".into(),
            })?;
        Ok(Session {
            rt,
            opts: Arc::new(opts),
            registries: Mutex::new(HashMap::new()),
        })
    }

    /// The client for `host`, created on first use.
    pub fn registry(&self, host: &str) -> Result<Registry> {
        let mut m = self.registries.lock().unwrap();
        if let Some(r) = m.get(host) {
            return Ok(r.clone());
        }
        let r = Registry::new(host, self.opts.clone())?;
        m.insert(host.to_string(), r.clone());
        Ok(r)
    }

    /// The repository a name points at.
    pub fn repo(&self, name: &Name) -> Result<Repo> {
        let (host, path) = locate(name);
        Ok(Repo::new(self.registry(&host)?, path))
    }

    /// Runs a future on the session's runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Checks that the registry accepts `creds` (for `kiln login`): pings, then asks for a
    /// token or sends Basic credentials to `/v2/`.
    pub fn check_login(&self, host: &str) -> Result<()> {
        let reg = self.registry(host)?;
        self.rt.block_on(reg.check_login())
    }

    /// What `name` resolves to in its registry (one manifest GET; nothing is stored).
    pub fn resolve(&self, name: &Name) -> Result<Descriptor> {
        let repo = self.repo(name)?;
        let reference = reference_of(name);
        self.rt
            .block_on(async { repo.get_manifest(&reference).await.map(|m| m.descriptor) })
    }

    /// Pulls `name` into `store` and, if `tag` is given, names it there. Blobs already in
    /// the store are not downloaded; the rest are fetched `jobs` at a time. The store's GC
    /// lease is held until the tag is written, so `kiln prune` cannot take half an image.
    pub fn pull(&self, store: &Store, name: &Name, select: &Select, tag: Option<&str>) -> Result<Pulled> {
        let repo = self.repo(name)?;
        let reference = reference_of(name);
        let ctx = repo.display();
        let _lease = store.lease().map_err(store_err(&ctx))?;
        let pulled = self.rt.block_on(pull_async(&repo, &reference, store, select))?;
        if let Some(t) = tag {
            store.tag(t, &pulled.image).map_err(store_err(&ctx))?;
        }
        record_origins(store, &repo, &pulled.image);
        Ok(pulled)
    }

    /// Pushes `image` (a manifest or index in `src`) to `name`: blobs first (in parallel),
    /// then child manifests, then the top manifest under the tag. Blobs whose origin (a
    /// repository they were pulled from) is on the same registry are mounted, not uploaded.
    pub fn push(&self, src: &Store, image: &Descriptor, name: &Name) -> Result<Pushed> {
        let repo = self.repo(name)?;
        let reference = reference_of(name);
        let origins = read_origins(src);
        let pushed = self.rt.block_on(push_async(&repo, src, image, &reference, &origins))?;
        if src.meta_dir().is_dir() {
            record_origins(src, &repo, image);
        }
        Ok(pushed)
    }

    /// Copies `name` to `dest` in a registry. On the same registry, blobs are mounted and
    /// never pass through this machine; otherwise they are staged in `staging` (a temp
    /// layout) on the way.
    pub fn copy_between(&self, src: &Name, dest: &Name, select: &Select, staging: &Store) -> Result<Pushed> {
        let from = self.repo(src)?;
        let to = self.repo(dest)?;
        let reference = reference_of(src);
        let dest_ref = reference_of(dest);
        self.rt.block_on(async {
            let same = from.registry.host() == to.registry.host();
            if !same {
                let pulled = pull_async(&from, &reference, staging, select).await?;
                return push_async(&to, staging, &pulled.image, &dest_ref, &HashMap::new()).await;
            }
            // Same registry: only manifests come here; blobs are mounted.
            let pulled = pull_manifests(&from, &reference, staging, select).await?;
            let mut origins = HashMap::new();
            for (d, _) in &pulled.1 {
                origins.insert(d.digest.clone(), (from.registry.host().to_string(), from.path.clone()));
            }
            push_async(&to, staging, &pulled.0.image, &dest_ref, &origins).await
        })
    }

    /// Pushes an artifact (`artifact_type`, blobs `layers` as (media type, bytes), and
    /// `annotations`) whose subject is the image `subject` names, then makes it findable:
    /// registries with the referrers API index it themselves; for the others kiln keeps the
    /// `sha256-<hex>` tag-schema index, merging with what other clients wrote.
    pub fn attach(
        &self,
        store: &Store,
        subject: &Name,
        artifact_type: &str,
        layers: &[(String, Vec<u8>)],
        annotations: BTreeMap<String, String>,
    ) -> Result<Descriptor> {
        let repo = self.repo(subject)?;
        let reference = reference_of(subject);
        let ctx = repo.display();
        let _lease = store.lease().map_err(store_err(&ctx))?;
        self.rt.block_on(async {
            let subj = repo.get_manifest(&reference).await?.descriptor;
            let (desc, _) =
                artifact_manifest(store, &subj, artifact_type, layers, annotations).map_err(store_err(&ctx))?;
            push_artifact(&repo, store, &desc, &subj.digest).await?;
            Ok(desc)
        })
    }

    /// Pushes an artifact manifest that is already in `store` (made by
    /// [`artifact_manifest`], e.g. a signature kept beside a local image) and its blobs,
    /// indexed as [`Session::attach`] does. The image `subject` names must be in the
    /// registry already.
    pub fn push_referrer(&self, store: &Store, artifact: &Descriptor, subject: &Name) -> Result<()> {
        let repo = self.repo(subject)?;
        let reference = reference_of(subject);
        self.rt.block_on(async {
            let digest = match &subject.digest {
                Some(d) => d.clone(),
                None => repo.get_manifest(&reference).await?.descriptor.digest,
            };
            push_artifact(&repo, store, artifact, &digest).await
        })
    }

    /// [`Session::push_referrer`] for many artifacts of one image, with a single update of
    /// the referrers tag (each update waits to confirm it, so batching is what keeps a
    /// push of several signatures fast on registries without the referrers API).
    pub fn push_referrers(&self, store: &Store, artifacts: &[Descriptor], subject: &Name) -> Result<()> {
        let repo = self.repo(subject)?;
        let reference = reference_of(subject);
        let ctx = repo.display();
        self.rt.block_on(async {
            let digest = match &subject.digest {
                Some(d) => d.clone(),
                None => repo.get_manifest(&reference).await?.descriptor.digest,
            };
            // The artifacts are independent: pushed side by side, like an image's blobs.
            let mut set: JoinSet<Result<Option<Descriptor>>> = JoinSet::new();
            for a in artifacts {
                let (repo, store, ctx, a) = (repo.clone(), store.clone(), ctx.clone(), a.clone());
                set.spawn(async move {
                    let manifest: Manifest = store.read_json(&a.digest).map_err(store_err(&ctx))?;
                    for d in std::iter::once(&manifest.config).chain(manifest.layers.iter()) {
                        repo.push_blob(d, &store, None).await?;
                    }
                    let bytes = Bytes::from(store.read_blob(&a.digest).map_err(store_err(&ctx))?);
                    if repo.put_manifest_with_subject(&a.digest.to_string(), &bytes).await? {
                        return Ok(None);
                    }
                    let mut entry = a;
                    entry.annotations.remove(kiln_oci::store::REF_NAME);
                    Ok(Some(entry))
                });
            }
            let mut unindexed = Vec::new();
            while let Some(r) = set.join_next().await {
                if let Some(entry) = r.expect("referrer tasks do not panic")? {
                    unindexed.push(entry);
                }
            }
            // Same order whatever finished first, so the index is the same bytes.
            unindexed.sort_by_key(|a| a.digest.to_string());
            if !unindexed.is_empty() {
                add_to_fallback_index(&repo, &digest, &unindexed).await?;
            }
            Ok(())
        })
    }

    /// Lists the referrers of the image `subject` names, optionally only those of one
    /// artifact type: the referrers API where the registry has it, else the tag schema.
    pub fn referrers(&self, subject: &Name, artifact_type: Option<&str>) -> Result<Vec<Descriptor>> {
        let repo = self.repo(subject)?;
        let reference = reference_of(subject);
        self.rt.block_on(async {
            let digest = match &subject.digest {
                Some(d) => d.clone(),
                None => repo.get_manifest(&reference).await?.descriptor.digest,
            };
            list_referrers(&repo, &digest, artifact_type).await
        })
    }
}

/// Writes an artifact manifest (empty config, `layers` as (media type, bytes) blobs,
/// `annotations`, `subject`) and its blobs into `store`; returns its descriptor, which
/// carries the artifact type and annotations as referrers indexes list them, and its bytes.
pub fn artifact_manifest(
    store: &Store,
    subject: &Descriptor,
    artifact_type: &str,
    layers: &[(String, Vec<u8>)],
    annotations: BTreeMap<String, String>,
) -> std::result::Result<(Descriptor, Vec<u8>), kiln_oci::StoreError> {
    let cfg_digest = store.put_blob(EMPTY_JSON)?;
    let config = Descriptor::new(EMPTY_MEDIA_TYPE, cfg_digest, EMPTY_JSON.len() as u64);
    let mut descs = Vec::new();
    for (mt, data) in layers {
        let d = store.put_blob(data)?;
        descs.push(Descriptor::new(mt.clone(), d, data.len() as u64));
    }
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.into()),
        artifact_type: Some(artifact_type.to_string()),
        config,
        layers: descs,
        subject: Some(Descriptor::new(
            subject.media_type.clone(),
            subject.digest.clone(),
            subject.size,
        )),
        annotations: annotations.clone(),
    };
    let bytes = canonical_json(&manifest);
    let digest = store.put_blob(&bytes)?;
    let mut desc = Descriptor::new(media::OCI_MANIFEST, digest, bytes.len() as u64);
    desc.artifact_type = Some(artifact_type.to_string());
    desc.annotations = annotations;
    Ok((desc, bytes))
}

/// Pushes the artifact manifest `desc` of `store` and its blobs, then makes it findable
/// from `subject` (the referrers API, else the tag schema).
async fn push_artifact(repo: &Repo, store: &Store, desc: &Descriptor, subject: &Digest) -> Result<()> {
    let ctx = repo.display();
    let manifest: Manifest = store.read_json(&desc.digest).map_err(store_err(&ctx))?;
    for d in std::iter::once(&manifest.config).chain(manifest.layers.iter()) {
        repo.push_blob(d, store, None).await?;
    }
    let bytes = Bytes::from(store.read_blob(&desc.digest).map_err(store_err(&ctx))?);
    let put = repo.put_manifest_with_subject(&desc.digest.to_string(), &bytes).await?;
    if !put {
        let mut entry = desc.clone();
        entry.annotations.remove(kiln_oci::store::REF_NAME);
        add_to_fallback_index(repo, subject, &[entry]).await?;
    }
    Ok(())
}

/// Fetches the manifests (not the blobs) `reference` needs into `store`; returns the pull
/// summary and every blob descriptor to fetch.
async fn pull_manifests(
    repo: &Repo,
    reference: &str,
    store: &Store,
    select: &Select,
) -> Result<(Pulled, Vec<(Descriptor, ())>)> {
    let top = repo.get_manifest(reference).await?;
    let ctx = repo.display();
    put_raw(store, &top, &ctx)?;
    let mut manifests: Vec<RawManifest> = Vec::new();
    let image = if media::is_index(&top.descriptor.media_type) {
        let index: Index = serde_json::from_slice(&top.bytes)
            .map_err(|e| repo.registry.invalid(&repo.path, &format!("index {reference}"), e))?;
        let children: Vec<Descriptor> = match select {
            Select::All => index.manifests.clone(),
            Select::Platform(p) => {
                let c = choose_platform(&index, p).ok_or_else(|| {
                    let have: Vec<String> = index
                        .manifests
                        .iter()
                        .filter_map(|m| m.platform.as_ref())
                        .map(|p| {
                            let mut s = format!("{}/{}", p.os, p.architecture);
                            if let Some(v) = &p.variant {
                                s.push('/');
                                s.push_str(v);
                            }
                            s
                        })
                        .collect();
                    RegistryError::Invalid {
                        registry: repo.registry.host().to_string(),
                        repository: repo.path.clone(),
                        what: format!("pull {reference}"),
                        reason: format!(
                            "no manifest for {}/{}{}",
                            p.os,
                            p.architecture,
                            p.variant.as_ref().map(|v| format!("/{v}")).unwrap_or_default()
                        ),
                        hint: format!("pick one of: {} with --platform, or --all", have.join(", ")),
                    }
                })?;
                vec![c.clone()]
            }
        };
        for c in &children {
            let m = repo.get_manifest(&c.digest.to_string()).await?;
            put_raw(store, &m, &ctx)?;
            manifests.push(m);
        }
        match select {
            Select::All => top.descriptor.clone(),
            Select::Platform(_) => {
                let mut d = children[0].clone();
                d.annotations.clear();
                d
            }
        }
    } else {
        manifests.push(top.clone());
        top.descriptor.clone()
    };
    let mut blobs = Vec::new();
    let mut seen = BTreeSet::new();
    for m in &manifests {
        if !media::is_manifest(&m.descriptor.media_type) {
            continue;
        }
        let parsed: Manifest = serde_json::from_slice(&m.bytes).map_err(|e| {
            repo.registry
                .invalid(&repo.path, &format!("manifest {}", m.descriptor.digest), e)
        })?;
        for d in std::iter::once(parsed.config).chain(parsed.layers) {
            if seen.insert(d.digest.clone()) {
                blobs.push((d, ()));
            }
        }
    }
    Ok((
        Pulled {
            resolved: top.descriptor,
            image,
            fetched: 0,
            bytes: 0,
        },
        blobs,
    ))
}

fn put_raw(store: &Store, m: &RawManifest, ctx: &str) -> Result<()> {
    store
        .put_blob_from(&m.bytes[..], Some((&m.descriptor.digest, Some(m.descriptor.size))))
        .map_err(store_err(ctx))?;
    Ok(())
}

async fn pull_async(repo: &Repo, reference: &str, store: &Store, select: &Select) -> Result<Pulled> {
    let (mut pulled, blobs) = pull_manifests(repo, reference, store, select).await?;
    let blobs: Vec<Descriptor> = blobs.into_iter().map(|(d, _)| d).collect();
    (pulled.fetched, pulled.bytes) = fetch_all(repo, &blobs, store).await?;
    Ok(pulled)
}

/// Downloads the blobs `store` lacks, `jobs` at a time, largest first (so the long
/// downloads start early and overlap the short ones); each is verified before it becomes
/// visible. Returns how many were fetched and their bytes.
pub(crate) async fn fetch_all(repo: &Repo, blobs: &[Descriptor], store: &Store) -> Result<(usize, u64)> {
    let jobs = repo.registry.options().jobs.max(1);
    let mut set: JoinSet<Result<(bool, u64)>> = JoinSet::new();
    let mut queue: Vec<Descriptor> = blobs.iter().filter(|d| !store.has_blob(&d.digest)).cloned().collect();
    queue.sort_by_key(|d| std::cmp::Reverse(d.size));
    repo.registry.planned(queue.len(), queue.iter().map(|d| d.size).sum());
    let mut queue = queue.into_iter();
    let (mut fetched, mut bytes) = (0, 0);
    loop {
        while set.len() < jobs {
            let Some(d) = queue.next() else { break };
            let (repo, store) = (repo.clone(), store.clone());
            set.spawn(async move { repo.fetch_blob(&d, &store).await.map(|f| (f, d.size)) });
        }
        match set.join_next().await {
            None => break,
            Some(r) => {
                let (got, size) = r.expect("blob tasks do not panic")?;
                if got {
                    fetched += 1;
                    bytes += size;
                }
            }
        }
    }
    Ok((fetched, bytes))
}

/// Every descriptor under `image` in `src`: blobs, then manifests children-first.
fn plan_push(
    src: &Store,
    image: &Descriptor,
    ctx: &str,
    origins: &Origins,
) -> Result<(Vec<Descriptor>, Vec<Descriptor>)> {
    let mut blobs = Vec::new();
    let mut manifests = Vec::new();
    let mut seen = BTreeSet::new();
    fn walk(
        src: &Store,
        d: &Descriptor,
        blobs: &mut Vec<Descriptor>,
        manifests: &mut Vec<Descriptor>,
        seen: &mut BTreeSet<Digest>,
        ctx: &str,
        origins: &Origins,
    ) -> Result<()> {
        if !seen.insert(d.digest.clone()) {
            return Ok(());
        }
        if media::is_index(&d.media_type) {
            let i: Index = src.read_json(&d.digest).map_err(store_err(ctx))?;
            for m in &i.manifests {
                walk(src, m, blobs, manifests, seen, ctx, origins)?;
            }
            manifests.push(d.clone());
        } else if media::is_manifest(&d.media_type) {
            let m: Manifest = src.read_json(&d.digest).map_err(store_err(ctx))?;
            for b in std::iter::once(&m.config).chain(m.layers.iter()) {
                if seen.insert(b.digest.clone()) {
                    if !src.has_blob(&b.digest) && !origins.contains_key(&b.digest) {
                        return Err(store_err(ctx)(kiln_oci::StoreError::MissingBlob {
                            layout: src.root().to_path_buf(),
                            digest: b.digest.clone(),
                        }));
                    }
                    blobs.push(b.clone());
                }
            }
            manifests.push(d.clone());
        } else {
            blobs.push(d.clone());
        }
        Ok(())
    }
    walk(src, image, &mut blobs, &mut manifests, &mut seen, ctx, origins)?;
    Ok((blobs, manifests))
}

type Origins = HashMap<Digest, (String, String)>;

async fn push_async(
    repo: &Repo,
    src: &Store,
    image: &Descriptor,
    reference: &str,
    origins: &Origins,
) -> Result<Pushed> {
    let ctx = repo.display();
    let (blobs, manifests) = plan_push(src, image, &ctx, origins)?;
    let mut out = Pushed::default();
    let jobs = repo.registry.options().jobs.max(1);
    let mut set: JoinSet<Result<(BlobOutcome, u64)>> = JoinSet::new();
    let mut queue = blobs.into_iter();
    loop {
        while set.len() < jobs {
            let Some(d) = queue.next() else { break };
            let (repo, src) = (repo.clone(), src.clone());
            let mount = origins
                .get(&d.digest)
                .filter(|(h, p)| h == repo.registry.host() && *p != repo.path)
                .map(|(_, p)| p.clone());
            set.spawn(async move { repo.push_blob(&d, &src, mount.as_deref()).await.map(|o| (o, d.size)) });
        }
        match set.join_next().await {
            None => break,
            Some(r) => match r.expect("blob tasks do not panic")? {
                (BlobOutcome::Present, _) => out.present += 1,
                (BlobOutcome::Mounted, _) => out.mounted += 1,
                (BlobOutcome::Uploaded, n) => {
                    out.uploaded += 1;
                    out.bytes += n;
                }
            },
        }
    }
    // Only now, with every blob in place, do manifests go up: children by digest, the top
    // one by the tag last, so the tag never points at something incomplete.
    let n = manifests.len();
    for (i, m) in manifests.iter().enumerate() {
        let bytes = Bytes::from(src.read_blob(&m.digest).map_err(store_err(&ctx))?);
        let r = if i + 1 == n {
            reference.to_string()
        } else {
            m.digest.to_string()
        };
        repo.put_manifest(&r, &bytes, &m.media_type).await?;
    }
    let mut top = image.clone();
    top.annotations.remove(kiln_oci::store::REF_NAME);
    out.descriptor = Some(top);
    Ok(out)
}

/// Adds `descs` to the `sha256-<hex>` index (one update for all of them). The registry has
/// no compare-and-swap, so two clients can overwrite each other: after writing, kiln waits
/// a random moment and reads back, re-merging until its entries have been seen twice in a
/// row. Nothing is written (and nobody waits) when every entry is there already.
async fn add_to_fallback_index(repo: &Repo, subject: &Digest, descs: &[Descriptor]) -> Result<()> {
    let tag = fallback_tag(subject);
    let mut confirmations = 0;
    for round in 0..12u32 {
        let current = read_fallback(repo, &tag).await?;
        let missing: Vec<&Descriptor> = descs
            .iter()
            .filter(|d| !current.manifests.iter().any(|m| m.digest == d.digest))
            .collect();
        if missing.is_empty() {
            confirmations += 1;
            if confirmations >= 2 || round == 0 {
                return Ok(());
            }
        } else {
            confirmations = 0;
            let mut merged = current;
            merged.manifests.extend(missing.into_iter().cloned());
            let bytes = Bytes::from(canonical_json(&merged));
            repo.put_manifest(&tag, &bytes, media::OCI_INDEX).await?;
        }
        let pause = 50 + (crate::client::Retry::default().backoff(round.min(3)).as_millis() as u64 % 200);
        tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
    }
    Err(RegistryError::Invalid {
        registry: repo.registry.host().to_string(),
        repository: repo.path.clone(),
        what: format!("update referrers tag {tag}"),
        reason: "other clients kept overwriting the index".into(),
        hint: "try again when fewer clients are attaching at once".into(),
    })
}

async fn read_fallback(repo: &Repo, tag: &str) -> Result<Index> {
    match repo.get_manifest(tag).await {
        Ok(m) if media::is_index(&m.descriptor.media_type) => serde_json::from_slice(&m.bytes)
            .map_err(|e| repo.registry.invalid(&repo.path, &format!("referrers tag {tag}"), e)),
        Ok(_) => Err(repo.registry.invalid(
            &repo.path,
            &format!("referrers tag {tag}"),
            "the tag holds a manifest, not an index",
        )),
        Err(RegistryError::Http { status: 404, .. }) => Ok(Index {
            media_type: Some(media::OCI_INDEX.into()),
            ..Index::default()
        }),
        Err(e) => Err(e),
    }
}

pub(crate) async fn list_referrers(
    repo: &Repo,
    digest: &Digest,
    artifact_type: Option<&str>,
) -> Result<Vec<Descriptor>> {
    let index = match repo.referrers(digest, artifact_type).await? {
        Some(index) => index,
        // No referrers API: the tag schema.
        None => read_fallback(repo, &fallback_tag(digest)).await?,
    };
    let mut out = Vec::new();
    for mut m in index.manifests {
        if m.artifact_type.is_none() {
            // Older tools drop artifactType from index entries; the manifest still has it
            // (or, per the spec, its config media type stands in for it).
            if let Ok(raw) = repo.get_manifest(&m.digest.to_string()).await
                && let Ok(parsed) = serde_json::from_slice::<Manifest>(&raw.bytes)
            {
                m.artifact_type = parsed.artifact_type.or(Some(parsed.config.media_type));
                if m.annotations.is_empty() {
                    m.annotations = parsed.annotations;
                }
            }
        }
        if artifact_type.is_none_or(|t| m.artifact_type.as_deref() == Some(t)) {
            out.push(m);
        }
    }
    Ok(out)
}

/// Remembers which registry repository each blob of a pulled image came from, so a later
/// push to another repository of that registry can mount instead of upload. Best effort:
/// a failure here only costs a mount.
fn record_origins(store: &Store, repo: &Repo, image: &Descriptor) {
    let Ok(_lock) = store.lock_index() else { return };
    let path = store.meta_dir().join(ORIGINS);
    let mut map: BTreeMap<String, String> = std::fs::read(&path)
        .ok()
        .and_then(|d| serde_json::from_slice(&d).ok())
        .unwrap_or_default();
    let mut all = BTreeSet::new();
    if store.reachable(image, &mut all).is_err() {
        return;
    }
    let origin = repo.display();
    for d in all {
        map.insert(d.to_string(), origin.clone());
    }
    // Keep the file small: drop blobs the store no longer has.
    map.retain(|d, _| d.parse::<Digest>().is_ok_and(|d| store.has_blob(&d)));
    let _ = kiln_oci::store::atomic_write(&store.tmp_dir(), &path, &canonical_json(&map));
}

fn read_origins(store: &Store) -> Origins {
    let path = store.meta_dir().join(ORIGINS);
    let map: BTreeMap<String, String> = std::fs::read(&path)
        .ok()
        .and_then(|d| serde_json::from_slice(&d).ok())
        .unwrap_or_default();
    map.into_iter()
        .filter_map(|(d, o)| {
            let d = d.parse::<Digest>().ok()?;
            let (h, p) = o.split_once('/')?;
            Some((d, (h.to_string(), p.to_string())))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_locate_registries() {
        let n = Name::parse("127.0.0.1:5000/team/app:1").unwrap();
        assert_eq!(locate(&n), ("127.0.0.1:5000".into(), "team/app".into()));
        assert_eq!(
            locate(&Name::parse("alpine").unwrap()),
            ("docker.io".into(), "library/alpine".into())
        );
        let d = Digest::sha256_of(b"x");
        assert_eq!(fallback_tag(&d), format!("sha256-{}", d.hex()));
    }
}
