//! The local content store: a plain OCI image layout (so skopeo, umoci and oras can read it),
//! with kiln's own bookkeeping in a `kiln/` directory beside `blobs/`.
//!
//! Invariants, which every writer here keeps:
//! - a blob file exists under `blobs/ALG/HEX` only once its content has been hashed and found
//!   equal to HEX (written to a temp file, fsynced, checked, renamed);
//! - `index.json` is replaced atomically under an exclusive lock, so concurrent kiln processes
//!   never lose each other's tags;
//! - `prune` takes the garbage-collection lock exclusively while builds and loads hold it
//!   shared, so a blob written but not yet tagged is never collected.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::{Algorithm, Digest, HashingWriter, VerifyingReader};
use crate::media;

/// Annotation that names a tag in an OCI layout's index.json.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// What can go wrong in the store; every variant names the path or digest involved.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A filesystem operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Content did not hash to the digest it was stored or referenced under.
    #[error("blob {digest} in {layout}: {reason} (hint: the file is corrupt or was modified; re-pull or re-build it)")]
    Corrupt {
        /// Layout directory.
        layout: PathBuf,
        /// Expected digest.
        digest: Digest,
        /// What the check found.
        reason: String,
    },
    /// A blob is referenced but absent.
    #[error("blob {digest} is missing from {layout} (hint: the layout is incomplete; copy the image again)")]
    MissingBlob {
        /// Layout directory.
        layout: PathBuf,
        /// The missing digest.
        digest: Digest,
    },
    /// JSON that kiln must parse is malformed.
    #[error("{what}: malformed JSON: {source}")]
    Json {
        /// What was being parsed (a path or a digest).
        what: String,
        /// The parser's complaint.
        source: serde_json::Error,
    },
    /// The directory is not an OCI layout.
    #[error(
        "{0} is not an OCI image layout: no oci-layout file (hint: create one with `kiln save` or `skopeo copy … oci:DIR`)"
    )]
    NotALayout(PathBuf),
    /// A digest string inside the layout is not valid.
    #[error("{0}")]
    Digest(#[from] crate::digest::DigestError),
    /// A document kiln would read whole (manifest, index, config) is bigger than any real
    /// one: refused before it is read, so a hostile image cannot exhaust memory.
    #[error(
        "blob {digest} in {layout} is {size} bytes, more than the {limit} kiln reads for a manifest, index or config (hint: real ones are kilobytes; the image is corrupt or hostile, check where it came from)"
    )]
    TooLarge {
        /// Layout directory.
        layout: PathBuf,
        /// The blob's digest.
        digest: Digest,
        /// Its size on disk.
        size: u64,
        /// The limit, [`MAX_JSON_BYTES`].
        limit: u64,
    },
}

impl StoreError {
    /// True when the content is at fault (corrupt, malformed, oversized, not a layout):
    /// the user fixes it by choosing other input (exit 2), not by fixing the machine.
    pub fn is_input(&self) -> bool {
        matches!(
            self,
            StoreError::Corrupt { .. }
                | StoreError::NotALayout(_)
                | StoreError::Json { .. }
                | StoreError::TooLarge { .. }
        )
    }
}

/// The largest JSON document (manifest, index, config) kiln reads whole from a layout.
/// Real ones are kilobytes; the bound keeps a hostile image from claiming our memory.
pub const MAX_JSON_BYTES: u64 = 16 << 20;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A descriptor as kept in index.json and manifests. Our own type (not oci-spec's) so that
/// annotations are ordered and the JSON we write is byte-stable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    /// Media type of the referenced content.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// Content digest.
    pub digest: Digest,
    /// Content size in bytes.
    pub size: u64,
    /// Annotations (sorted).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Platform, for index entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Artifact type, for artifact manifests in an index.
    #[serde(rename = "artifactType", default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    /// A descriptor with no annotations or platform.
    pub fn new(media_type: impl Into<String>, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest,
            size,
            annotations: BTreeMap::new(),
            platform: None,
            artifact_type: None,
        }
    }

    /// The tag this index entry carries, if any.
    pub fn ref_name(&self) -> Option<&str> {
        self.annotations.get(REF_NAME).map(String::as_str)
    }
}

/// An OCI platform object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// CPU architecture, GOARCH spelling.
    pub architecture: String,
    /// Operating system, GOOS spelling.
    pub os: String,
    /// CPU variant, e.g. `v8`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An image index (also the shape of a layout's index.json).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    /// Always 2.
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    /// Media type; optional in index.json.
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The manifests.
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Default for Index {
    fn default() -> Self {
        Index {
            schema_version: 2,
            media_type: Some(media::OCI_INDEX.to_string()),
            manifests: vec![],
            annotations: BTreeMap::new(),
        }
    }
}

/// An image manifest, our ordered-JSON model of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always 2.
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    /// OCI or Docker manifest media type.
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Artifact type, for artifacts.
    #[serde(rename = "artifactType", default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// Layers, base first.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    /// The image this artifact refers to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Serialises any value to JSON with object keys sorted, so hashes never depend on map order.
pub fn canonical_json<T: Serialize>(value: &T) -> Vec<u8> {
    // serde_json::Value keeps objects in a BTreeMap (preserve_order is never enabled), which sorts keys.
    let v = serde_json::to_value(value).expect("kiln's own types always serialise");
    serde_json::to_vec(&v).expect("a JSON value always serialises")
}

/// An OCI image layout directory: the local store, or one named with `oci:DIR`.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    /// Blobs in layouts kiln did not write are re-hashed on every read.
    trusted: bool,
}

/// A held file lock; released on drop.
#[derive(Debug)]
pub struct LockGuard {
    _file: File,
}

impl Store {
    /// The store location: `$KILN_HOME`, else `/var/lib/kiln` for root, else
    /// `$XDG_DATA_HOME/kiln` or `~/.local/share/kiln`.
    pub fn default_root() -> PathBuf {
        if let Some(h) = std::env::var_os("KILN_HOME").filter(|h| !h.is_empty()) {
            return PathBuf::from(h);
        }
        if rustix::process::geteuid().is_root() {
            return PathBuf::from("/var/lib/kiln");
        }
        if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|h| !h.is_empty()) {
            return PathBuf::from(x).join("kiln");
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/"));
        home.join(".local/share/kiln")
    }

    /// Opens the layout at `root`, creating an empty one if the directory has none. kiln's
    /// own store and output layouts are opened this way.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store, StoreError> {
        let root = root.into();
        let store = Store { root, trusted: true };
        store.init()?;
        Ok(store)
    }

    /// Opens an existing layout written by someone else: every blob read is verified.
    pub fn open_foreign(root: impl Into<PathBuf>) -> Result<Store, StoreError> {
        let root = root.into();
        if !root.join("oci-layout").is_file() {
            return Err(StoreError::NotALayout(root));
        }
        Ok(Store { root, trusted: false })
    }

    fn init(&self) -> Result<(), StoreError> {
        fs::create_dir_all(self.root.join("blobs/sha256")).map_err(io_err(&self.root))?;
        // kiln's own state (snapshots keep setuid files and devices) is for its owner only.
        let meta = self.meta_dir();
        crate::fsutil::create_private_dir(&meta).map_err(io_err(&meta))?;
        fs::create_dir_all(self.tmp_dir()).map_err(io_err(&meta))?;
        let layout = self.root.join("oci-layout");
        if !layout.exists() {
            atomic_write(&self.tmp_dir(), &layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        let index = self.root.join("index.json");
        if !index.exists() {
            let _l = self.lock_index()?;
            if !index.exists() {
                atomic_write(&self.tmp_dir(), &index, &canonical_json(&Index::default()))?;
            }
        }
        Ok(())
    }

    /// The layout directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// True for layouts kiln wrote (its store, its outputs): their blobs were checked when
    /// they came in, and kiln may keep state beside them. False for `oci:DIR` layouts of
    /// others, which kiln only reads.
    pub fn is_trusted(&self) -> bool {
        self.trusted
    }

    /// kiln's own files (cache records, locks, temp files) live here, beside the layout.
    pub fn meta_dir(&self) -> PathBuf {
        self.root.join("kiln")
    }

    /// Same filesystem as the blobs, so a finished temp file can be renamed into place.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("kiln/tmp")
    }

    /// A fresh layout in this store's temp dir (same filesystem, so blobs can be renamed
    /// over), for blobs on their way somewhere; removed when the returned dir is dropped.
    /// Hold a [`Store::lease`] while it holds blobs destined for this store.
    pub fn temp_layout(&self, prefix: &str) -> Result<(Store, tempfile::TempDir), StoreError> {
        let tmp = self.tmp_dir();
        fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(&tmp)
            .map_err(io_err(&tmp))?;
        let layout = Store::open(dir.path())?;
        Ok((layout, dir))
    }

    /// Where a blob lives (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    /// True if the blob is present.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    fn lock(&self, name: &str, exclusive: bool) -> Result<LockGuard, StoreError> {
        let dir = self.meta_dir();
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let path = dir.join(name);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let op = if exclusive {
            rustix::fs::FlockOperation::LockExclusive
        } else {
            rustix::fs::FlockOperation::LockShared
        };
        rustix::fs::flock(&file, op).map_err(|e| StoreError::Io {
            path: path.clone(),
            source: e.into(),
        })?;
        Ok(LockGuard { _file: file })
    }

    /// Serialises read-modify-write of index.json between processes.
    pub fn lock_index(&self) -> Result<LockGuard, StoreError> {
        self.lock("index.lock", true)
    }

    /// Held (shared) by anything that writes blobs it has not yet referenced from index.json,
    /// or uses kiln's build state (snapshots, cache records), so that `prune` (which takes it
    /// exclusively) cannot collect them.
    pub fn lease(&self) -> Result<LockGuard, StoreError> {
        self.lock("gc.lock", false)
    }

    /// The garbage-collection lock, exclusively: while it is held no other kiln process
    /// holds a lease, so nothing is being written or used, and whatever temp files, staging
    /// directories and cache state exist may be removed.
    pub fn lock_gc(&self) -> Result<GcLock, StoreError> {
        Ok(GcLock {
            _guard: self.lock("gc.lock", true)?,
        })
    }

    /// [`Store::lock_gc`] without waiting: `None` when another kiln process holds a lease.
    pub fn try_lock_gc(&self) -> Result<Option<GcLock>, StoreError> {
        let dir = self.meta_dir();
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let path = dir.join("gc.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(GcLock {
                _guard: LockGuard { _file: file },
            })),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(StoreError::Io { path, source: e.into() }),
        }
    }

    /// Starts a new blob; bytes written to it are hashed on the way to a temp file.
    pub fn blob_writer(&self) -> Result<BlobWriter, StoreError> {
        let tmp = self.tmp_dir();
        fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
        let file = tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(&tmp)
            .map_err(io_err(&tmp))?;
        Ok(BlobWriter {
            store: self.clone(),
            inner: Some(HashingWriter::new(BufWriter::with_capacity(1 << 20, file))),
            keep: false,
        })
    }

    /// Starts or continues the download of `digest`: bytes go to `kiln/tmp/partial-…`, a
    /// file that outlives the process (kill -9 included), so the next pull of the same blob
    /// starts where this one stopped ([`BlobWriter::written`] tells where; the bytes
    /// already there are re-hashed, and the digest is checked at commit as always). The file
    /// is locked while written; when another process holds it, a private temp file is used
    /// instead. `prune` removes partial files (under the GC lock, so never one in use).
    pub fn partial_blob_writer(&self, digest: &Digest) -> Result<BlobWriter, StoreError> {
        let tmp = self.tmp_dir();
        fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
        let path = tmp.join(format!("partial-{}-{}", digest.algorithm().as_str(), digest.hex()));
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => return self.blob_writer(),
            Err(e) => return Err(io_err(&path)(e.into())),
        }
        use std::io::Seek;
        file.seek(io::SeekFrom::Start(0)).map_err(io_err(&path))?;
        let temp_path = tempfile::TempPath::try_from_path(&path).map_err(io_err(&path))?;
        let named = tempfile::NamedTempFile::from_parts(file, temp_path);
        // The clone shares the file offset: reading the bytes already there leaves it at the
        // end, where the download continues.
        let prefix = io::BufReader::with_capacity(1 << 20, named.as_file().try_clone().map_err(io_err(&path))?);
        let inner = HashingWriter::continuing(BufWriter::with_capacity(1 << 20, named), Algorithm::Sha256, prefix)
            .map_err(io_err(&path))?;
        Ok(BlobWriter {
            store: self.clone(),
            inner: Some(inner),
            keep: true,
        })
    }

    /// Stores a small in-memory blob (manifests, configs) and returns its digest.
    pub fn put_blob(&self, data: &[u8]) -> Result<Digest, StoreError> {
        let digest = Digest::sha256_of(data);
        if self.has_blob(&digest) {
            return Ok(digest);
        }
        let mut w = self.blob_writer()?;
        w.write_all(data).map_err(io_err(&self.tmp_dir()))?;
        w.commit(Some(&digest))?;
        Ok(digest)
    }

    /// Copies a blob from a reader, verifying it against `expected` (digest and optional size)
    /// before it becomes visible. Reading foreign data always goes through here.
    pub fn put_blob_from(
        &self,
        reader: impl Read,
        expected: Option<(&Digest, Option<u64>)>,
    ) -> Result<(Digest, u64), StoreError> {
        if let Some((d, _)) = expected
            && self.has_blob(d)
        {
            // Still drain nothing: the caller may skip reading; a present blob was verified on write.
            let size = fs::metadata(self.blob_path(d))
                .map_err(io_err(&self.blob_path(d)))?
                .len();
            return Ok((d.clone(), size));
        }
        let mut w = self.blob_writer()?;
        let mut reader = reader;
        io::copy(&mut reader, &mut w).map_err(io_err(&self.tmp_dir()))?;
        let size = w.written();
        if let Some((d, Some(want))) = expected
            && want != size
        {
            return Err(StoreError::Corrupt {
                layout: self.root.clone(),
                digest: d.clone(),
                reason: format!("size mismatch: expected {want} bytes, got {size}"),
            });
        }
        let digest = w.commit(expected.map(|(d, _)| d))?;
        Ok((digest, size))
    }

    /// Opens a blob for streaming. Blobs of foreign layouts are verified as they are read:
    /// the read that reaches EOF fails if the content does not match its name.
    pub fn open_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, StoreError> {
        let path = self.blob_path(digest);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::MissingBlob {
                    layout: self.root.clone(),
                    digest: digest.clone(),
                });
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        let file = io::BufReader::with_capacity(1 << 20, file);
        if self.trusted {
            Ok(Box::new(file))
        } else {
            Ok(Box::new(VerifyingReader::new(file, digest.clone(), None)))
        }
    }

    /// Reads a small blob whole and always checks its digest (cheap for JSON documents).
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        let path = self.blob_path(digest);
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::MissingBlob {
                    layout: self.root.clone(),
                    digest: digest.clone(),
                });
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        let mut h = crate::digest::Hasher::new(digest.algorithm());
        h.update(&data);
        let got = h.finish();
        if &got != digest {
            return Err(StoreError::Corrupt {
                layout: self.root.clone(),
                digest: digest.clone(),
                reason: format!("content hashes to {got}"),
            });
        }
        Ok(data)
    }

    /// Reads and parses a JSON blob of at most [`MAX_JSON_BYTES`] (checked before reading).
    pub fn read_json<T: for<'de> Deserialize<'de>>(&self, digest: &Digest) -> Result<T, StoreError> {
        let path = self.blob_path(digest);
        if let Ok(meta) = fs::metadata(&path)
            && meta.len() > MAX_JSON_BYTES
        {
            return Err(StoreError::TooLarge {
                layout: self.root.clone(),
                digest: digest.clone(),
                size: meta.len(),
                limit: MAX_JSON_BYTES,
            });
        }
        let data = self.read_blob(digest)?;
        serde_json::from_slice(&data).map_err(|source| StoreError::Json {
            what: digest.to_string(),
            source,
        })
    }

    /// Reads index.json.
    pub fn index(&self) -> Result<Index, StoreError> {
        let path = self.root.join("index.json");
        let data = fs::read(&path).map_err(io_err(&path))?;
        serde_json::from_slice(&data).map_err(|source| StoreError::Json {
            what: path.display().to_string(),
            source,
        })
    }

    /// Applies `f` to index.json under the index lock and writes it back atomically.
    pub fn update_index<T>(&self, f: impl FnOnce(&mut Index) -> T) -> Result<T, StoreError> {
        let _lock = self.lock_index()?;
        let mut index = self.index()?;
        let before = serde_json::to_vec_pretty(&index).unwrap();
        let out = f(&mut index);
        let after = serde_json::to_vec_pretty(&index).unwrap();
        // An update that changes nothing (a rebuild tagging the same image again) costs
        // no write and no fsync.
        if after != before {
            atomic_write(&self.tmp_dir(), &self.root.join("index.json"), &after)?;
        }
        Ok(out)
    }

    /// Points `name` at `desc`, replacing whatever it named before. An untagged entry for
    /// the same digest is dropped, since the image is now reachable by name.
    pub fn tag(&self, name: &str, desc: &Descriptor) -> Result<(), StoreError> {
        let mut entry = desc.clone();
        entry.annotations.insert(REF_NAME.to_string(), name.to_string());
        self.update_index(|idx| {
            // Already so (a rebuild): the index stays as it is, order included.
            let same = |m: &Descriptor| m.ref_name() == Some(name) && *m == entry;
            let untagged_twin = |m: &Descriptor| m.ref_name().is_none() && m.digest == desc.digest;
            if idx.manifests.iter().any(same) && !idx.manifests.iter().any(untagged_twin) {
                return;
            }
            idx.manifests
                .retain(|m| m.ref_name() != Some(name) && !(m.ref_name().is_none() && m.digest == desc.digest));
            idx.manifests.push(entry);
        })
    }

    /// Records an image without a name (like docker's `<none>`), so it survives `prune`
    /// until it is tagged or removed. Does nothing if the digest is already listed.
    pub fn add_untagged(&self, desc: &Descriptor) -> Result<(), StoreError> {
        let mut entry = desc.clone();
        entry.annotations.remove(REF_NAME);
        self.update_index(|idx| {
            if !idx.manifests.iter().any(|m| m.digest == desc.digest) {
                idx.manifests.push(entry);
            }
        })
    }

    /// Removes a name; returns the descriptor it pointed at.
    pub fn untag(&self, name: &str) -> Result<Option<Descriptor>, StoreError> {
        self.update_index(|idx| {
            let pos = idx.manifests.iter().position(|m| m.ref_name() == Some(name))?;
            Some(idx.manifests.remove(pos))
        })
    }

    /// Removes every index entry (tagged or not) for a digest; returns how many.
    pub fn remove_digest(&self, digest: &Digest) -> Result<usize, StoreError> {
        self.update_index(|idx| {
            let before = idx.manifests.len();
            idx.manifests.retain(|m| &m.digest != digest);
            before - idx.manifests.len()
        })
    }

    /// Looks up a name in index.json.
    pub fn resolve(&self, name: &str) -> Result<Option<Descriptor>, StoreError> {
        Ok(self.index()?.manifests.into_iter().find(|m| m.ref_name() == Some(name)))
    }

    /// Artifacts kept beside an image: untagged index.json entries with an `artifactType`
    /// whose manifest's `subject` is `subject` (optionally only of one artifact type). This
    /// is how SBOMs, provenance and signatures of local images are found and pushed along.
    pub fn referrers(&self, subject: &Digest, artifact_type: Option<&str>) -> Result<Vec<Descriptor>, StoreError> {
        let mut all = self.referrers_by_subject()?;
        let mut out = all.remove(subject).unwrap_or_default();
        out.retain(|m| artifact_type.is_none_or(|t| m.artifact_type.as_deref() == Some(t)));
        Ok(out)
    }

    /// Every artifact kept beside an image, grouped by the digest of its subject, read in
    /// one pass over index.json (for walking referrers of referrers).
    pub fn referrers_by_subject(&self) -> Result<BTreeMap<Digest, Vec<Descriptor>>, StoreError> {
        let mut out: BTreeMap<Digest, Vec<Descriptor>> = BTreeMap::new();
        for m in self.index()?.manifests {
            if m.artifact_type.is_none() || m.ref_name().is_some() {
                continue;
            }
            let Ok(parsed) = self.read_json::<Manifest>(&m.digest) else {
                continue;
            };
            if let Some(s) = parsed.subject {
                out.entry(s.digest).or_default().push(m);
            }
        }
        Ok(out)
    }

    /// Every blob reachable from `desc` (itself, and for manifests and indexes their
    /// children), checking as it goes that each one is present.
    pub fn reachable(&self, desc: &Descriptor, out: &mut BTreeSet<Digest>) -> Result<(), StoreError> {
        if !out.insert(desc.digest.clone()) {
            return Ok(());
        }
        if media::is_manifest(&desc.media_type) {
            let m: Manifest = self.read_json(&desc.digest)?;
            out.insert(m.config.digest.clone());
            for l in &m.layers {
                out.insert(l.digest.clone());
            }
        } else if media::is_index(&desc.media_type) {
            let i: Index = self.read_json(&desc.digest)?;
            for m in &i.manifests {
                self.reachable(m, out)?;
            }
        }
        Ok(())
    }

    /// Deletes every blob not reachable from index.json or from `extra_roots` (kiln's cache
    /// records), and leftover temp files.
    pub fn prune(&self, extra_roots: &BTreeSet<Digest>) -> Result<Pruned, StoreError> {
        let gc = self.lock_gc()?;
        self.prune_locked(&gc, extra_roots)
    }

    /// [`Store::prune`] for a caller that already holds the GC lock (and computed
    /// `extra_roots` under it).
    pub fn prune_locked(&self, _gc: &GcLock, extra_roots: &BTreeSet<Digest>) -> Result<Pruned, StoreError> {
        let _idx = self.lock_index()?;
        let mut keep = extra_roots.clone();
        for m in self.index()?.manifests {
            match self.reachable(&m, &mut keep) {
                Ok(()) | Err(StoreError::MissingBlob { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let (mut n, mut bytes) = (0, 0);
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let dir = self.root.join("blobs").join(alg.as_str());
            let Ok(entries) = fs::read_dir(&dir) else { continue };
            for e in entries {
                let e = e.map_err(io_err(&dir))?;
                let name = e.file_name().to_string_lossy().into_owned();
                let keep_it = format!("{}:{name}", alg.as_str())
                    .parse::<Digest>()
                    .is_ok_and(|d| keep.contains(&d));
                if !keep_it {
                    bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
                    fs::remove_file(e.path()).map_err(io_err(&e.path()))?;
                    n += 1;
                }
            }
        }
        // Nothing is being written while we hold the GC lock exclusively, so every temp file
        // and staging directory left here belongs to a process that died.
        let (temp_files, temp_bytes) = remove_contents(&self.tmp_dir());
        Ok(Pruned {
            blobs: n,
            blob_bytes: bytes,
            temp_files,
            temp_bytes,
        })
    }
}

/// The exclusive garbage-collection lock ([`Store::lock_gc`]); released on drop.
#[derive(Debug)]
pub struct GcLock {
    _guard: LockGuard,
}

/// What [`Store::prune`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Blobs deleted.
    pub blobs: usize,
    /// Their bytes.
    pub blob_bytes: u64,
    /// Temp files and staging directories left by interrupted commands (top-level entries
    /// of `kiln/tmp`).
    pub temp_files: usize,
    /// Their bytes (every file below them).
    pub temp_bytes: u64,
}

impl Pruned {
    /// Every byte reclaimed.
    pub fn bytes(&self) -> u64 {
        self.blob_bytes + self.temp_bytes
    }
}

/// Bytes of the files at or below `path` (not following symlinks).
pub fn disk_usage(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else { return 0 };
    if !meta.is_dir() {
        return if meta.is_file() { meta.len() } else { 0 };
    }
    fs::read_dir(path)
        .map(|entries| entries.flatten().map(|e| disk_usage(&e.path())).sum())
        .unwrap_or(0)
}

/// Removes everything inside `dir` (not `dir` itself); returns (top-level entries removed,
/// bytes they held). Entries that cannot be removed are left and not counted.
pub fn remove_contents(dir: &Path) -> (usize, u64) {
    let (mut n, mut bytes) = (0, 0);
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            let size = disk_usage(&p);
            let removed = if e.file_type().is_ok_and(|t| t.is_dir()) {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
            if removed.is_ok() {
                n += 1;
                bytes += size;
            }
        }
    }
    (n, bytes)
}

/// A blob being written; becomes visible in the store only through [`BlobWriter::commit`].
pub struct BlobWriter {
    store: Store,
    /// Always `Some` until commit or drop.
    inner: Option<HashingWriter<BufWriter<tempfile::NamedTempFile>>>,
    /// A partial download ([`Store::partial_blob_writer`]): kept on drop, for the next pull.
    keep: bool,
}

impl BlobWriter {
    fn inner(&mut self) -> &mut HashingWriter<BufWriter<tempfile::NamedTempFile>> {
        self.inner.as_mut().expect("a blob writer is used until commit")
    }

    /// Bytes written so far (for a resumed download, including those of earlier processes).
    pub fn written(&self) -> u64 {
        self.inner.as_ref().map_or(0, HashingWriter::written)
    }

    /// Throws away what was written and starts the blob again (a registry that ignored a
    /// `Range` request sends the whole blob).
    pub fn restart(&mut self) -> io::Result<()> {
        use std::io::Seek;
        let (buf, _, _) = self.inner.take().expect("a blob writer is used until commit").finish();
        let mut file = buf.into_inner().map_err(|e| e.into_error())?;
        file.as_file().set_len(0)?;
        file.seek(io::SeekFrom::Start(0))?;
        self.inner = Some(HashingWriter::new(BufWriter::with_capacity(1 << 20, file)));
        Ok(())
    }

    /// Flushes, fsyncs, checks the digest against `expected` (if given) and renames the temp
    /// file into `blobs/`. On any failure the temp file is deleted.
    pub fn commit(mut self, expected: Option<&Digest>) -> Result<Digest, StoreError> {
        let tmp = self.store.tmp_dir();
        let (buf, digest, _size) = self.inner.take().expect("a blob writer is committed once").finish();
        let file = buf.into_inner().map_err(|e| io_err(&tmp)(e.into_error()))?;
        if let Some(want) = expected {
            // Foreign content may name a sha512 digest; re-hash the file with that algorithm.
            let got = if want.algorithm() == digest.algorithm() {
                digest.clone()
            } else {
                let f = File::open(file.path()).map_err(io_err(&tmp))?;
                VerifyingReader::unchecked(f).drain().map_err(io_err(&tmp))?.0
            };
            if want.algorithm() != Algorithm::Sha256 {
                let f = File::open(file.path()).map_err(io_err(&tmp))?;
                VerifyingReader::new(f, want.clone(), None)
                    .drain()
                    .map_err(|e| StoreError::Corrupt {
                        layout: self.store.root.clone(),
                        digest: want.clone(),
                        reason: e.to_string(),
                    })?;
            } else if &got != want {
                return Err(StoreError::Corrupt {
                    layout: self.store.root.clone(),
                    digest: want.clone(),
                    reason: format!("content hashes to {got}"),
                });
            }
        }
        let final_digest = expected.cloned().unwrap_or(digest);
        file.as_file().sync_all().map_err(io_err(&tmp))?;
        let dest = self.store.blob_path(&final_digest);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        file.persist(&dest).map_err(|e| io_err(&dest)(e.error))?;
        // The new name must survive a crash as the content does.
        if let Some(parent) = dest.parent() {
            crate::fsutil::sync_dir(parent).map_err(io_err(parent))?;
        }
        Ok(final_digest)
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner().write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner().flush()
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        // A partial download that was not committed stays on disk (flushed) for the next
        // pull; any other temp file goes.
        if self.keep
            && let Some(inner) = self.inner.take()
        {
            let (buf, _, _) = inner.finish();
            if let Ok(file) = buf.into_inner() {
                let _ = file.keep();
            }
        }
    }
}

/// Writes a small file atomically: temp file in `tmp_dir`, fsync, rename.
pub fn atomic_write(tmp_dir: &Path, dest: &Path, data: &[u8]) -> Result<(), StoreError> {
    write_then_rename(tmp_dir, dest, data)?;
    if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
        crate::fsutil::sync_dir(parent).map_err(io_err(parent))?;
    }
    Ok(())
}

/// [`atomic_write`] without the directory's fsync: `data` is on disk (fsynced) before it
/// gets the name `dest`, so the name never shows a partial file, even after a crash; the
/// name itself is durable only once the caller syncs `dest`'s directory (a crash before
/// that may lose it, never half of it). For many writes into one directory, synced once.
pub fn write_then_rename(tmp_dir: &Path, dest: &Path, data: &[u8]) -> Result<(), StoreError> {
    fs::create_dir_all(tmp_dir).map_err(io_err(tmp_dir))?;
    let mut f = tempfile::Builder::new()
        .prefix("write-")
        .tempfile_in(tmp_dir)
        .map_err(io_err(tmp_dir))?;
    f.write_all(data).map_err(io_err(dest))?;
    f.as_file().sync_all().map_err(io_err(dest))?;
    f.persist(dest).map_err(|e| io_err(dest)(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagging_again_leaves_index_json_alone() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let d = s.put_blob(b"{}").unwrap();
        let desc = Descriptor::new(crate::media::OCI_MANIFEST, d, 2);
        s.tag("app:1", &desc).unwrap();
        let ino = || fs::metadata(dir.path().join("index.json")).unwrap().ino();
        let before = ino();
        s.tag("app:1", &desc).unwrap();
        s.add_untagged(&desc).unwrap();
        assert_eq!(ino(), before, "an unchanged index was rewritten");
        s.tag("app:2", &desc).unwrap();
        assert_ne!(ino(), before, "a new tag must be written");
        assert_eq!(s.resolve("app:2").unwrap().unwrap().digest, desc.digest);
    }

    #[test]
    fn blobs_are_verified_and_atomic() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let d = s.put_blob(b"hello").unwrap();
        assert_eq!(s.read_blob(&d).unwrap(), b"hello");
        let wrong = Digest::sha256_of(b"other");
        let e = s.put_blob_from(&b"hello"[..], Some((&wrong, None))).unwrap_err();
        assert!(e.to_string().contains("hashes to"), "{e}");
        assert!(!s.has_blob(&wrong));
        assert_eq!(fs::read_dir(s.tmp_dir()).unwrap().count(), 0, "temp file left behind");
        fs::write(s.blob_path(&d), b"tampered").unwrap();
        assert!(matches!(s.read_blob(&d), Err(StoreError::Corrupt { .. })));
    }

    #[test]
    fn json_documents_are_bounded_before_they_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let d = Digest::sha256_of(b"a huge config");
        // Sparse: refused by its size, no byte is read.
        fs::File::create(s.blob_path(&d)).unwrap().set_len(1 << 30).unwrap();
        let e = s.read_json::<serde_json::Value>(&d).unwrap_err();
        assert!(matches!(e, StoreError::TooLarge { size, .. } if size == 1 << 30), "{e}");
        assert!(e.is_input() && e.to_string().contains("more than the 16777216"), "{e}");
    }

    #[test]
    fn foreign_reads_are_verified() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let d = s.put_blob(b"layer").unwrap();
        fs::write(s.blob_path(&d), b"layeR").unwrap();
        let f = Store::open_foreign(dir.path()).unwrap();
        let mut r = f.open_blob(&d).unwrap();
        assert!(io::copy(&mut r, &mut io::sink()).is_err());
    }

    #[test]
    fn tags_and_prune() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let cfg = s.put_blob(b"{}").unwrap();
        let layer = s.put_blob(b"layer").unwrap();
        let orphan = s.put_blob(b"orphan").unwrap();
        let m = Manifest {
            schema_version: 2,
            media_type: Some(media::OCI_MANIFEST.into()),
            artifact_type: None,
            config: Descriptor::new(media::OCI_CONFIG, cfg.clone(), 2),
            layers: vec![Descriptor::new(media::OCI_LAYER_GZIP, layer.clone(), 5)],
            subject: None,
            annotations: BTreeMap::new(),
        };
        let md = s.put_blob(&canonical_json(&m)).unwrap();
        let desc = Descriptor::new(media::OCI_MANIFEST, md.clone(), 0);
        s.tag("app:1", &desc).unwrap();
        s.tag("app:2", &desc).unwrap();
        assert_eq!(s.resolve("app:1").unwrap().unwrap().digest, md);
        let pruned = s.prune(&BTreeSet::new()).unwrap();
        assert_eq!(pruned.blobs, 1);
        assert!(!s.has_blob(&orphan) && s.has_blob(&layer) && s.has_blob(&cfg));
        s.untag("app:1").unwrap();
        s.untag("app:2").unwrap();
        s.prune(&BTreeSet::new()).unwrap();
        assert!(!s.has_blob(&layer));
    }

    /// A partial download left by one writer is continued by the next: the bytes already
    /// there count, the digest covers them, and a second writer while the first holds the
    /// file gets a private temp file.
    #[test]
    fn partial_downloads_resume() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let d = Digest::sha256_of(&data);
        let mut w = s.partial_blob_writer(&d).unwrap();
        w.write_all(&data[..100_000]).unwrap();
        let other = s.partial_blob_writer(&d).unwrap();
        assert_eq!(other.written(), 0, "a locked partial must not be shared");
        drop(other);
        drop(w);
        let mut w = s.partial_blob_writer(&d).unwrap();
        assert_eq!(w.written(), 100_000);
        w.write_all(&data[100_000..]).unwrap();
        assert_eq!(w.commit(Some(&d)).unwrap(), d);
        assert_eq!(s.read_blob(&d).unwrap(), data);
        assert_eq!(fs::read_dir(s.tmp_dir()).unwrap().count(), 0);
        // A registry that ignores Range: start again from zero.
        let d2 = Digest::sha256_of(b"fresh");
        let mut w = s.partial_blob_writer(&d2).unwrap();
        w.write_all(b"junk").unwrap();
        w.restart().unwrap();
        w.write_all(b"fresh").unwrap();
        assert_eq!(w.commit(Some(&d2)).unwrap(), d2);
    }

    /// What an interrupted pull leaves in kiln/tmp is removed and counted (issue 18.6).
    #[test]
    fn prune_counts_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        fs::write(s.tmp_dir().join("blob-partial"), vec![7u8; 3000]).unwrap();
        fs::create_dir_all(s.tmp_dir().join("staging/sub")).unwrap();
        fs::write(s.tmp_dir().join("staging/sub/f"), vec![1u8; 1000]).unwrap();
        let p = s.prune(&BTreeSet::new()).unwrap();
        assert_eq!((p.temp_files, p.temp_bytes, p.bytes()), (2, 4000, 4000));
        assert_eq!(fs::read_dir(s.tmp_dir()).unwrap().count(), 0);
    }

    /// kiln's own state directory is its owner's alone (issue 12.2), also in a store made
    /// before that rule.
    #[test]
    fn state_dir_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&s.meta_dir()), 0o700);
        fs::set_permissions(s.meta_dir(), fs::Permissions::from_mode(0o755)).unwrap();
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(mode(&s.meta_dir()), 0o700);
    }

    #[test]
    fn gc_lock_excludes_leases() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let lease = s.lease().unwrap();
        assert!(s.try_lock_gc().unwrap().is_none());
        drop(lease);
        let gc = s.try_lock_gc().unwrap().expect("no lease is held");
        drop(gc);
    }
}
