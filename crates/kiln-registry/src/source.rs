//! Registries as kiln-oci image sources: [`RegistryAccess`] is the [`Registries`] the
//! commands hand to `kiln_oci::transport::open_image`, and [`RegistrySource`] reads one
//! repository through it.
//!
//! The session (and its tokio runtime) is made on first use, so commands that end up
//! reading only the store never start one. Manifests fetched once (a tag resolved, a
//! child of an index) are kept in memory for the life of the source and re-checked against
//! their digest on every read; blobs are fetched into a temp layout in the store's temp dir
//! and verified before they are read.

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use kiln_oci::reference::Name;
use kiln_oci::source::{ImageSource, Registries, SourceKind, check_manifest};
use kiln_oci::transport::TransportError;
use kiln_oci::{Descriptor, Digest, Store, StoreError};

use crate::client::Options;
use crate::error::{RegistryError, Result};
use crate::ops::{Session, fetch_all, list_referrers, locate, reference_of};
use crate::repo::Repo;

impl From<RegistryError> for TransportError {
    fn from(e: RegistryError) -> Self {
        let input = e.is_input();
        TransportError::Remote {
            source: Box::new(e),
            input,
        }
    }
}

/// Registry access for a command: the options it was given and, once something needs a
/// registry, the session.
pub struct RegistryAccess {
    opts: Options,
    session: OnceLock<Arc<Session>>,
}

impl RegistryAccess {
    /// Access with these options; nothing starts until a registry is needed.
    pub fn new(opts: Options) -> RegistryAccess {
        RegistryAccess {
            opts,
            session: OnceLock::new(),
        }
    }

    /// The session, started on first use.
    pub fn session(&self) -> Result<Arc<Session>> {
        if let Some(s) = self.session.get() {
            return Ok(s.clone());
        }
        let s = Arc::new(Session::new(self.opts.clone())?);
        Ok(self.session.get_or_init(|| s).clone())
    }
}

impl Registries for RegistryAccess {
    fn open(
        &self,
        store: &Store,
        name: &Name,
    ) -> std::result::Result<(Box<dyn ImageSource>, Descriptor), TransportError> {
        let source = RegistrySource::new(self.session()?, store, name)?;
        let raw = source.session.block_on(source.repo.get_manifest(&reference_of(name)))?;
        check_manifest(&source.location(), &raw.descriptor, &raw.bytes)?;
        let desc = raw.descriptor.clone();
        source.remember(&desc.digest, raw.bytes);
        Ok((Box::new(source), desc))
    }
}

/// Blobs up to this size are read in memory rather than through a temp file.
const SMALL_BLOB_BYTES: u64 = 1 << 20;

/// One repository of a registry, read as an image source.
pub struct RegistrySource {
    session: Arc<Session>,
    repo: Repo,
    name: Name,
    store: Store,
    manifests: Mutex<HashMap<Digest, Bytes>>,
    blobs: OnceLock<(Store, tempfile::TempDir)>,
}

impl RegistrySource {
    /// A source for the repository `name` is in; temp files go under `store`'s temp dir.
    pub fn new(session: Arc<Session>, store: &Store, name: &Name) -> Result<RegistrySource> {
        let repo = session.repo(name)?;
        Ok(RegistrySource {
            session,
            repo,
            name: name.clone(),
            store: store.clone(),
            manifests: Mutex::new(HashMap::new()),
            blobs: OnceLock::new(),
        })
    }

    fn remember(&self, digest: &Digest, bytes: Bytes) {
        self.manifests
            .lock()
            .expect("not poisoned")
            .insert(digest.clone(), bytes);
    }

    fn store_err(&self) -> impl FnOnce(StoreError) -> TransportError + '_ {
        move |source| TransportError::Store {
            image: self.location(),
            source,
        }
    }

    /// The temp layout blobs are fetched into before they are read.
    fn blob_layout(&self) -> std::result::Result<&Store, TransportError> {
        if let Some((s, _)) = self.blobs.get() {
            return Ok(s);
        }
        let (layout, dir) = self.store.temp_layout("registry-").map_err(self.store_err())?;
        Ok(&self.blobs.get_or_init(|| (layout, dir)).0)
    }
}

impl ImageSource for RegistrySource {
    fn kind(&self) -> SourceKind {
        SourceKind::Registry
    }

    fn location(&self) -> String {
        self.repo.display()
    }

    fn repository(&self) -> Option<String> {
        Some(match self.name.registry_host() {
            Some(_) => self.name.repository.clone(),
            None => {
                let (h, p) = locate(&self.name);
                format!("{h}/{p}")
            }
        })
    }

    fn read_manifest(&self, desc: &Descriptor) -> std::result::Result<Vec<u8>, TransportError> {
        let cached = self.manifests.lock().expect("not poisoned").get(&desc.digest).cloned();
        let bytes = match cached {
            Some(b) => b,
            None => {
                let raw = self
                    .session
                    .block_on(self.repo.get_manifest(&desc.digest.to_string()))?;
                self.remember(&desc.digest, raw.bytes.clone());
                raw.bytes
            }
        };
        check_manifest(&self.location(), desc, &bytes)?;
        Ok(bytes.to_vec())
    }

    fn open_blob(&self, desc: &Descriptor) -> std::result::Result<Box<dyn Read + Send + '_>, TransportError> {
        // Configs and signature payloads are read whole, in memory; layers are fetched into
        // a temp layout (resumable, verified before they are visible) and read from there.
        if desc.size <= SMALL_BLOB_BYTES {
            let bytes = self
                .session
                .block_on(self.repo.get_small_blob(desc, SMALL_BLOB_BYTES))?;
            return Ok(Box::new(std::io::Cursor::new(bytes)));
        }
        let layout = self.blob_layout()?;
        self.session.block_on(self.repo.fetch_blob(desc, layout))?;
        layout.open_blob(&desc.digest).map_err(self.store_err())
    }

    fn resolve_tag(&self, tag: &str) -> std::result::Result<Option<Descriptor>, TransportError> {
        match self.session.block_on(self.repo.get_manifest(tag)) {
            Ok(raw) => {
                check_manifest(&self.location(), &raw.descriptor, &raw.bytes)?;
                self.remember(&raw.descriptor.digest, raw.bytes);
                Ok(Some(raw.descriptor))
            }
            Err(RegistryError::Http { status: 404, .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn referrers(
        &self,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> std::result::Result<Vec<Descriptor>, TransportError> {
        Ok(self
            .session
            .block_on(list_referrers(&self.repo, subject, artifact_type))?)
    }

    fn fetch_blobs(&self, blobs: &[Descriptor], to: &Store) -> std::result::Result<(), TransportError> {
        self.session.block_on(fetch_all(&self.repo, blobs, to))?;
        Ok(())
    }
}
