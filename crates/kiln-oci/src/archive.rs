//! Image archives: `oci-archive` (a tar of an OCI layout) and `docker-archive` (the
//! `docker save` format), written and read without ever holding a layer in memory.
//!
//! Writing is deterministic (sorted entries, mtime 0, uid/gid 0) and atomic: the tar is built
//! in a temp file beside the destination, fsynced and renamed, so a reader never sees half an
//! archive.
//!
//! Reading makes one pass over the tar headers to learn where each entry's data lies, then
//! reads each blob straight from that offset. Nothing is unpacked to disk. Every blob is
//! verified into a private staging layout first; only when the whole archive has checked out
//! are the blobs renamed into the store (children before parents) and only then are names
//! tagged. A load that fails or is killed therefore leaves no partial blob and no name
//! pointing at something missing.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::{Algorithm, Digest, HashingWriter};
use crate::image::{self, RootFs};
use crate::layer;
use crate::media;
use crate::reference::Name;
use crate::store::{Descriptor, Index, Manifest, Platform, REF_NAME, Store, StoreError, canonical_json};

/// Annotation containerd and Docker ≥ 25 put on index.json entries with the full image name
/// (their `ref.name` then holds only the tag).
pub const CONTAINERD_IMAGE_NAME: &str = "io.containerd.image.name";

/// JSON documents (index.json, manifests, configs, manifest.json) are read whole; anything
/// bigger than this is refused rather than trusted with our memory.
const MAX_JSON: u64 = crate::store::MAX_JSON_BYTES;

/// Large enough that the tar reader and the hashers see few, big reads.
const IO_BUFFER: usize = 1 << 20;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// What went wrong with an archive. Every message names the archive file and, where there is
/// one, the entry or digest involved, and ends with a hint.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// Reading the archive or writing the output failed at the OS level.
    #[error("{archive}: {action}: {source}")]
    Io {
        /// The archive being read or written.
        archive: PathBuf,
        /// What kiln was doing.
        action: String,
        /// The OS error.
        source: io::Error,
    },
    /// The tar has neither OCI-layout nor `docker save` structure.
    #[error(
        "{archive} is not an image archive: it has neither oci-layout and index.json (an OCI archive) nor manifest.json (a docker archive) (hint: create one with `kiln save`, `docker save` or `skopeo copy`)"
    )]
    NotAnArchive {
        /// The file.
        archive: PathBuf,
    },
    /// An entry the archive's own metadata refers to is absent.
    #[error(
        "{archive}: entry {entry} is missing, though {needed_by} refers to it (hint: the archive is incomplete; export it again)"
    )]
    MissingEntry {
        /// The archive.
        archive: PathBuf,
        /// Path inside the tar.
        entry: String,
        /// Which document referred to it.
        needed_by: String,
    },
    /// An entry's data runs past the end of the file.
    #[error(
        "{archive}: entry {entry} needs {end} bytes but the file has only {len} (hint: the archive was truncated, e.g. by an interrupted copy or a full disk; export it again)"
    )]
    Truncated {
        /// The archive.
        archive: PathBuf,
        /// Path inside the tar.
        entry: String,
        /// Offset the entry's data ends at.
        end: u64,
        /// Length of the file.
        len: u64,
    },
    /// Content does not match the digest or size it is named or referenced by.
    #[error("{archive}: {entry}: {reason} (hint: the archive is corrupt or was modified; export it again)")]
    Corrupt {
        /// The archive.
        archive: PathBuf,
        /// Path inside the tar, or a digest.
        entry: String,
        /// What the check found.
        reason: String,
    },
    /// A docker-archive layer is not the layer its config says it is.
    #[error(
        "{archive}: layer {layer} (position {position}) uncompresses to {got}, but the image config lists diff_id {expected} there (hint: the archive is corrupt or was modified; export it again)"
    )]
    DiffIdMismatch {
        /// The archive.
        archive: PathBuf,
        /// Path of the layer inside the tar (or its blob digest when saving).
        layer: String,
        /// Index of the layer, base first.
        position: usize,
        /// The config's diff_id.
        expected: Digest,
        /// What the content hashes to.
        got: Digest,
    },
    /// A JSON document of the archive is malformed.
    #[error(
        "{archive}: {entry}: malformed JSON: {source} (hint: the archive is corrupt or was not written by an image tool)"
    )]
    Json {
        /// The archive.
        archive: PathBuf,
        /// Path inside the tar.
        entry: String,
        /// The parser's complaint.
        source: serde_json::Error,
    },
    /// The archive or the request is structurally wrong in some other way.
    #[error("{archive}: {reason} (hint: {hint})")]
    Invalid {
        /// The archive.
        archive: PathBuf,
        /// What is wrong.
        reason: String,
        /// What to do.
        hint: &'static str,
    },
    /// The store failed while reading the image to save or writing what was loaded.
    #[error("{archive}: {source}")]
    Store {
        /// The archive.
        archive: PathBuf,
        /// The store's error (which names the blob and layout).
        source: StoreError,
    },
}

/// One image found in an archive and now in the store: what `kiln load` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// The manifest (or index) descriptor, as the store's index.json now lists it (without
    /// the ref.name annotation, which differs per name).
    pub descriptor: Descriptor,
    /// The names it was tagged with; empty if the archive gave none (then it is untagged).
    pub names: Vec<String>,
}

fn io_at(archive: &Path, action: impl Into<String>) -> impl FnOnce(io::Error) -> ArchiveError {
    let archive = archive.to_path_buf();
    let action = action.into();
    move |source| ArchiveError::Io {
        archive,
        action,
        source,
    }
}

fn store_at(archive: &Path) -> impl FnOnce(StoreError) -> ArchiveError + '_ {
    move |source| ArchiveError::Store {
        archive: archive.to_path_buf(),
        source,
    }
}

/// Store errors while copying an archive entry become errors about that entry.
fn store_entry(archive: &Path, entry: &str) -> impl FnOnce(StoreError) -> ArchiveError {
    let archive = archive.to_path_buf();
    let entry = entry.to_string();
    move |source| match source {
        StoreError::Corrupt { digest, reason, .. } => ArchiveError::Corrupt {
            archive,
            entry: format!("{entry} ({digest})"),
            reason,
        },
        source => ArchiveError::Store { archive, source },
    }
}

// ---------------------------------------------------------------------------------------
// Compression sniffing (shared by save and load).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Packing {
    Plain,
    Gzip,
    Zstd,
}

/// Peeks at a buffered reader without consuming anything.
pub(crate) fn sniff(r: &mut impl BufRead) -> io::Result<Packing> {
    let head = r.fill_buf()?;
    Ok(if head.starts_with(&ZSTD_MAGIC) {
        Packing::Zstd
    } else if head.starts_with(&GZIP_MAGIC) {
        Packing::Gzip
    } else {
        Packing::Plain
    })
}

/// Wraps a (possibly compressed) layer stream in the matching decoder. Gzip uses
/// `MultiGzDecoder` because concatenated members are one valid stream.
fn decoder<'a, R: BufRead + 'a>(packing: Packing, r: R) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match packing {
        Packing::Plain => Box::new(r),
        Packing::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
        Packing::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(r)?),
    })
}

/// Copies every byte read from `inner` into `out`, so a compressed layer can be stored as-is
/// while it is decompressed for its diff_id.
struct Tee<R, W> {
    inner: R,
    out: W,
    /// A write error seen in `consume`, which cannot report it; the next read does.
    error: Option<io::Error>,
}

impl<R, W> Tee<R, W> {
    fn new(inner: R, out: W) -> Self {
        Tee {
            inner,
            out,
            error: None,
        }
    }
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let n = self.inner.read(buf)?;
        self.out.write_all(&buf[..n])?;
        Ok(n)
    }
}

impl<R: BufRead, W: Write> BufRead for Tee<R, W> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        // Only bytes actually consumed are teed; fill_buf alone copies nothing. The buffer
        // is already filled (consume follows fill_buf), so this fill_buf does no I/O.
        let amt = match self.inner.fill_buf() {
            Ok(buf) => {
                let amt = amt.min(buf.len());
                if let Err(e) = self.out.write_all(&buf[..amt]) {
                    self.error = Some(e);
                }
                amt
            }
            Err(e) => {
                self.error = Some(e);
                amt
            }
        };
        self.inner.consume(amt);
    }
}

/// Counts bytes read, so a short or overlong source is caught after it was copied.
struct Counting<R> {
    inner: R,
    read: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

// ---------------------------------------------------------------------------------------
// Writing archives.

/// A deterministic tar being written to a temp file beside its destination.
struct OutTar {
    out: PathBuf,
    tar: tar::Builder<BufWriter<tempfile::NamedTempFile>>,
}

impl OutTar {
    fn create(out: &Path) -> Result<OutTar, ArchiveError> {
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let file = tempfile::Builder::new()
            .prefix(".kiln-save-")
            .suffix(".tmp")
            .tempfile_in(parent)
            .map_err(io_at(out, format!("creating a temp file in {}", parent.display())))?;
        Ok(OutTar {
            out: out.to_path_buf(),
            tar: tar::Builder::new(BufWriter::with_capacity(IO_BUFFER, file)),
        })
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(size);
        h
    }

    fn dir(&mut self, path: &str) -> Result<(), ArchiveError> {
        let mut h = Self::header(tar::EntryType::Directory, 0o755, 0);
        self.tar
            .append_data(&mut h, path, io::empty())
            .map_err(io_at(&self.out, format!("writing {path}")))
    }

    /// Appends a regular file whose content must be exactly `size` bytes.
    fn file(&mut self, path: &str, size: u64, data: impl Read) -> Result<(), ArchiveError> {
        let mut h = Self::header(tar::EntryType::Regular, 0o644, size);
        let mut src = Counting { inner: data, read: 0 };
        self.tar
            .append_data(&mut h, path, &mut src)
            .map_err(io_at(&self.out, format!("writing {path}")))?;
        if src.read != size {
            return Err(ArchiveError::Corrupt {
                archive: self.out.clone(),
                entry: path.to_string(),
                reason: format!("expected {size} bytes but the source gave {}", src.read),
            });
        }
        Ok(())
    }

    /// Ends the tar, fsyncs it, renames it over the destination and fsyncs the directory.
    fn finish(self) -> Result<(), ArchiveError> {
        let out = self.out;
        let buf = self.tar.into_inner().map_err(io_at(&out, "finishing the tar"))?;
        let file = buf
            .into_inner()
            .map_err(|e| io_at(&out, "flushing the archive")(e.into_error()))?;
        file.as_file().sync_all().map_err(io_at(&out, "syncing the archive"))?;
        file.persist(&out)
            .map_err(|e| io_at(&out, "renaming the finished archive")(e.error))?;
        if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty())
            && let Ok(d) = File::open(parent)
        {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

/// Every blob an image needs, children before parents, each with its size.
pub(crate) fn collect_blobs(store: &Store, root: &Descriptor) -> Result<Vec<(Digest, u64)>, StoreError> {
    fn walk(
        store: &Store,
        desc: &Descriptor,
        seen: &mut HashSet<Digest>,
        out: &mut Vec<(Digest, u64)>,
    ) -> Result<(), StoreError> {
        if !seen.insert(desc.digest.clone()) {
            return Ok(());
        }
        if media::is_manifest(&desc.media_type) {
            let m: Manifest = store.read_json(&desc.digest)?;
            walk(store, &m.config, seen, out)?;
            for l in &m.layers {
                walk(store, l, seen, out)?;
            }
        } else if media::is_index(&desc.media_type) {
            let i: Index = store.read_json(&desc.digest)?;
            for m in &i.manifests {
                walk(store, m, seen, out)?;
            }
        } else if !store.has_blob(&desc.digest) {
            return Err(StoreError::MissingBlob {
                layout: store.root().to_path_buf(),
                digest: desc.digest.clone(),
            });
        }
        out.push((desc.digest.clone(), desc.size));
        Ok(())
    }
    let mut out = Vec::new();
    walk(store, root, &mut HashSet::new(), &mut out)?;
    // The root's descriptor may come from a caller that did not know its size; the file does.
    if let Some(last) = out.last_mut() {
        let p = store.blob_path(&last.0);
        last.1 = fs::metadata(&p)
            .map_err(|source| StoreError::Io { path: p, source })?
            .len();
    }
    Ok(out)
}

fn blob_entry(d: &Digest) -> String {
    format!("blobs/{}/{}", d.algorithm().as_str(), d.hex())
}

fn blob_dirs(digests: impl IntoIterator<Item = Algorithm>) -> Vec<String> {
    let algs: BTreeSet<&str> = digests.into_iter().map(Algorithm::as_str).collect();
    let mut dirs = vec!["blobs/".to_string()];
    dirs.extend(algs.into_iter().map(|a| format!("blobs/{a}/")));
    dirs
}

/// The image descriptor as it should appear in someone else's index: without the store's
/// own ref.name, which is replaced by the names being written.
fn plain_descriptor(image: &Descriptor, size: u64) -> Descriptor {
    let mut d = image.clone();
    d.annotations.remove(REF_NAME);
    d.size = size;
    d
}

/// Writes `image` (a manifest or an index with all its children) as an OCI-layout tar, with
/// one index.json entry per name, so `skopeo`, `podman load` and `docker load` (≥ 25) read it.
/// With no names, the single entry is untagged.
pub fn save_oci_archive(store: &Store, image: &Descriptor, names: &[String], out: &Path) -> Result<(), ArchiveError> {
    let blobs = collect_blobs(store, image).map_err(store_at(out))?;
    let root_size = blobs.last().map(|b| b.1).unwrap_or(image.size);
    let plain = plain_descriptor(image, root_size);
    let mut index = Index::default();
    if names.is_empty() {
        index.manifests.push(plain.clone());
    }
    for n in names {
        let mut d = plain.clone();
        d.annotations.insert(REF_NAME.to_string(), n.clone());
        index.manifests.push(d);
    }
    let sorted: BTreeMap<String, (Digest, u64)> = blobs.into_iter().map(|(d, s)| (blob_entry(&d), (d, s))).collect();

    let mut tar = OutTar::create(out)?;
    for dir in blob_dirs(sorted.values().map(|(d, _)| d.algorithm())) {
        tar.dir(&dir)?;
    }
    for (path, (digest, size)) in &sorted {
        let r = store.open_blob(digest).map_err(store_at(out))?;
        tar.file(path, *size, r)?;
    }
    let index_bytes = canonical_json(&index);
    tar.file("index.json", index_bytes.len() as u64, &index_bytes[..])?;
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    tar.file("oci-layout", layout.len() as u64, &layout[..])?;
    tar.finish()
}

/// One image in a `docker save` manifest.json.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct DockerManifestEntry {
    #[serde(rename = "Config")]
    pub(crate) config: String,
    #[serde(rename = "RepoTags", default)]
    pub(crate) repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    pub(crate) layers: Vec<String>,
}

/// Just the part of a config a docker archive needs: the layer diff_ids.
#[derive(Debug, Deserialize)]
struct ConfigRootFs {
    rootfs: RootFs,
}

/// The platform of the running machine, in GOARCH spelling, to pick from a multi-arch index.
pub(crate) fn host_platform() -> Platform {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    };
    Platform {
        architecture: arch.to_string(),
        os: "linux".to_string(),
        variant: None,
    }
}

/// Writes `image` in the `docker save` format (manifest.json, the config, one uncompressed
/// tar per layer named by its diff_id, and `repositories`), which `docker load` and
/// `skopeo copy docker-archive:…` read. From a multi-arch index, the host's platform is
/// taken. Compressed layers are decompressed into a temp file beside `out` (their size must
/// be known before the tar header is written) and checked against the config's diff_id.
pub fn save_docker_archive(
    store: &Store,
    image: &Descriptor,
    names: &[String],
    out: &Path,
) -> Result<(), ArchiveError> {
    let img = image::read_image(store, image, Some(&host_platform())).map_err(store_at(out))?;
    let config_digest = img.manifest.config.digest.clone();
    let config_bytes = store.read_blob(&config_digest).map_err(store_at(out))?;
    let diff_ids = img.config.rootfs.diff_ids.clone();
    if diff_ids.len() != img.manifest.layers.len() {
        return Err(ArchiveError::Invalid {
            archive: out.to_path_buf(),
            reason: format!(
                "image {} has {} layers but its config lists {} diff_ids",
                img.descriptor.digest,
                img.manifest.layers.len(),
                diff_ids.len()
            ),
            hint: "the image is malformed; rebuild it",
        });
    }

    let mut repo_tags = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let top = diff_ids.last().map(|d| d.hex().to_string()).unwrap_or_default();
    for n in names {
        let name = Name::parse(n).map_err(|e| ArchiveError::Invalid {
            archive: out.to_path_buf(),
            reason: e.to_string(),
            hint: "docker archives need names like app:1",
        })?;
        // A digest-only name has no tag for `docker load` to create.
        let Some(tag) = name.tag.clone() else { continue };
        repo_tags.push(format!("{}:{tag}", name.repository));
        repositories
            .entry(name.repository.clone())
            .or_default()
            .insert(tag, top.clone());
    }

    enum Item {
        Config,
        Layer(usize),
    }
    let config_path = blob_entry(&Digest::sha256_of(&config_bytes));
    let mut items: BTreeMap<String, Item> = BTreeMap::new();
    let mut layer_paths = Vec::new();
    for (i, d) in diff_ids.iter().enumerate() {
        let p = blob_entry(d);
        items.entry(p.clone()).or_insert(Item::Layer(i));
        layer_paths.push(p);
    }
    items.insert(config_path.clone(), Item::Config);
    let manifest = vec![DockerManifestEntry {
        config: config_path,
        repo_tags: Some(repo_tags),
        layers: layer_paths,
    }];
    let manifest_bytes = serde_json::to_vec(&manifest).expect("plain structs serialise");
    let repositories_bytes = serde_json::to_vec(&repositories).expect("plain maps serialise");

    let scratch_dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let mut tar = OutTar::create(out)?;
    let algs = diff_ids.iter().map(Digest::algorithm).chain([Algorithm::Sha256]);
    for dir in blob_dirs(algs) {
        tar.dir(&dir)?;
    }
    for (path, item) in &items {
        match item {
            Item::Config => tar.file(path, config_bytes.len() as u64, &config_bytes[..])?,
            Item::Layer(i) => {
                let desc = &img.manifest.layers[*i];
                let expected = &diff_ids[*i];
                let layer_err = |action: &str| io_at(out, format!("{action} layer {}", desc.digest));
                let blob = store.open_blob(&desc.digest).map_err(store_at(out))?;
                if matches!(
                    desc.media_type.as_str(),
                    media::OCI_LAYER_TAR | "application/vnd.docker.image.rootfs.diff.tar"
                ) {
                    // Already a tar whose digest is its diff_id: stream it straight in.
                    let size = fs::metadata(store.blob_path(&desc.digest))
                        .map_err(layer_err("sizing"))?
                        .len();
                    tar.file(path, size, blob)?;
                    continue;
                }
                let scratch = tempfile::tempfile_in(&scratch_dir).map_err(layer_err("creating scratch space for"))?;
                let mut w =
                    HashingWriter::with_algorithm(BufWriter::with_capacity(IO_BUFFER, scratch), expected.algorithm());
                let mut dec = crate::decompress::open_layer_stream(blob).map_err(layer_err("decompressing"))?;
                io::copy(&mut dec, &mut w).map_err(layer_err("decompressing"))?;
                let (buf, got, size) = w.finish();
                if &got != expected {
                    return Err(ArchiveError::DiffIdMismatch {
                        archive: out.to_path_buf(),
                        layer: desc.digest.to_string(),
                        position: *i,
                        expected: expected.clone(),
                        got,
                    });
                }
                let mut scratch = buf
                    .into_inner()
                    .map_err(|e| layer_err("decompressing")(e.into_error()))?;
                scratch.seek(SeekFrom::Start(0)).map_err(layer_err("rereading"))?;
                tar.file(path, size, BufReader::with_capacity(IO_BUFFER, scratch))?;
            }
        }
    }
    tar.file("manifest.json", manifest_bytes.len() as u64, &manifest_bytes[..])?;
    tar.file("repositories", repositories_bytes.len() as u64, &repositories_bytes[..])?;
    tar.finish()
}

// ---------------------------------------------------------------------------------------
// Reading archives.

/// Where each entry of a tar lies, learnt in one pass over the headers.
pub(crate) struct TarIndex {
    pub(crate) path: PathBuf,
    file: File,
    len: u64,
    entries: HashMap<String, TarItem>,
}

enum TarItem {
    File {
        offset: u64,
        size: u64,
    },
    /// A symlink or hardlink (old `docker save` links duplicate layers), target normalised.
    Link(String),
}

/// `./a/../b/` → `b`; `None` for a path that escapes the root or is empty.
fn normalize(p: &Path) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// A window of the archive file, read with positional reads so several can coexist.
pub(crate) struct Section<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for Section<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end - self.pos;
        if left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the archive ends inside this entry",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl TarIndex {
    pub(crate) fn open(path: &Path) -> Result<TarIndex, ArchiveError> {
        let file = File::open(path).map_err(io_at(path, "opening the archive"))?;
        let len = file
            .metadata()
            .map_err(io_at(path, "reading the archive's size"))?
            .len();
        let mut entries = HashMap::new();
        let bad = |e: io::Error| ArchiveError::Invalid {
            archive: path.to_path_buf(),
            reason: format!("not a readable tar: {e}"),
            hint: "check that the file is an image archive and was copied completely",
        };
        for e in tar::Archive::new(&file).entries_with_seek().map_err(bad)? {
            let e = e.map_err(bad)?;
            let Some(name) = normalize(&e.path().map_err(bad)?) else {
                continue;
            };
            let kind = e.header().entry_type();
            let item = if kind.is_file() || kind == tar::EntryType::Continuous {
                TarItem::File {
                    offset: e.raw_file_position(),
                    size: e.size(),
                }
            } else if kind.is_symlink() || kind.is_hard_link() {
                let Some(target) = e.link_name().map_err(bad)? else {
                    continue;
                };
                let joined = if kind.is_symlink() && !target.is_absolute() {
                    Path::new(&name).parent().unwrap_or(Path::new("")).join(&target)
                } else {
                    target.into_owned()
                };
                match normalize(&joined) {
                    Some(t) => TarItem::Link(t),
                    None => continue,
                }
            } else {
                continue;
            };
            // A cut anywhere in the data is refused up front: whatever lost its tail (often
            // a layer, and then index.json or manifest.json after it) cannot be loaded.
            if let TarItem::File { offset, size } = item
                && offset.saturating_add(size) > len
            {
                return Err(ArchiveError::Truncated {
                    archive: path.to_path_buf(),
                    entry: name,
                    end: offset.saturating_add(size),
                    len,
                });
            }
            entries.insert(name, item);
        }
        Ok(TarIndex {
            path: path.to_path_buf(),
            file,
            len,
            entries,
        })
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// Offset and size of a file entry, following links.
    pub(crate) fn locate(&self, name: &str, needed_by: &str) -> Result<(u64, u64), ArchiveError> {
        let mut cur = normalize(Path::new(name)).unwrap_or_default();
        for _ in 0..32 {
            match self.entries.get(&cur) {
                Some(TarItem::File { offset, size }) => {
                    let end = offset.saturating_add(*size);
                    if end > self.len {
                        return Err(ArchiveError::Truncated {
                            archive: self.path.clone(),
                            entry: name.to_string(),
                            end,
                            len: self.len,
                        });
                    }
                    return Ok((*offset, *size));
                }
                Some(TarItem::Link(t)) => cur = t.clone(),
                None => break,
            }
        }
        Err(ArchiveError::MissingEntry {
            archive: self.path.clone(),
            entry: name.to_string(),
            needed_by: needed_by.to_string(),
        })
    }

    pub(crate) fn section(&self, offset: u64, size: u64) -> Section<'_> {
        Section {
            file: &self.file,
            pos: offset,
            end: offset + size,
        }
    }

    fn open_entry(&self, name: &str, needed_by: &str) -> Result<(BufReader<Section<'_>>, u64), ArchiveError> {
        let (offset, size) = self.locate(name, needed_by)?;
        Ok((BufReader::with_capacity(IO_BUFFER, self.section(offset, size)), size))
    }

    pub(crate) fn read_small(&self, name: &str, needed_by: &str) -> Result<Vec<u8>, ArchiveError> {
        let (offset, size) = self.locate(name, needed_by)?;
        if size > MAX_JSON {
            return Err(ArchiveError::Invalid {
                archive: self.path.clone(),
                reason: format!("{name} is {size} bytes, more than kiln reads for a JSON document"),
                hint: "the archive is corrupt or not an image archive",
            });
        }
        let mut buf = Vec::with_capacity(size as usize);
        self.section(offset, size)
            .read_to_end(&mut buf)
            .map_err(io_at(&self.path, format!("reading {name}")))?;
        Ok(buf)
    }

    pub(crate) fn json<T: for<'de> Deserialize<'de>>(&self, name: &str, bytes: &[u8]) -> Result<T, ArchiveError> {
        serde_json::from_slice(bytes).map_err(|source| ArchiveError::Json {
            archive: self.path.clone(),
            entry: name.to_string(),
            source,
        })
    }
}

/// A private layout inside the store's temp dir where blobs are verified before any of them
/// is moved into the store.
struct Staging<'a> {
    store: &'a Store,
    layout: Store,
    _dir: tempfile::TempDir,
    /// Blobs to move into the store, children before parents.
    order: Vec<Digest>,
    seen: HashSet<Digest>,
}

impl<'a> Staging<'a> {
    fn new(store: &'a Store, archive: &Path) -> Result<Staging<'a>, ArchiveError> {
        let tmp = store.tmp_dir();
        fs::create_dir_all(&tmp).map_err(io_at(archive, format!("creating {}", tmp.display())))?;
        let dir = tempfile::Builder::new()
            .prefix("load-")
            .tempdir_in(&tmp)
            .map_err(io_at(
                archive,
                format!("creating a staging directory in {}", tmp.display()),
            ))?;
        let layout = Store::open(dir.path()).map_err(store_at(archive))?;
        Ok(Staging {
            store,
            layout,
            _dir: dir,
            order: vec![],
            seen: HashSet::new(),
        })
    }

    fn record(&mut self, d: Digest) {
        if self.seen.insert(d.clone()) {
            self.order.push(d);
        }
    }

    /// Renames every staged blob into the store (same filesystem), children first.
    fn promote(&self, archive: &Path) -> Result<(), ArchiveError> {
        for d in &self.order {
            let src = self.layout.blob_path(d);
            if self.store.has_blob(d) || !src.is_file() {
                continue;
            }
            let dest = self.store.blob_path(d);
            if let Some(parent) = dest.parent() {
                fs::create_dir_all(parent).map_err(io_at(archive, format!("creating {}", parent.display())))?;
            }
            fs::rename(&src, &dest).map_err(io_at(archive, format!("moving blob {d} into the store")))?;
        }
        Ok(())
    }
}

/// Reads every image in an OCI or docker archive into `store` and tags the names the archive
/// gives. The format is detected from the content (`oci-layout` + `index.json`, else
/// `manifest.json`), so Docker ≥ 25 archives, which carry both, load as OCI and keep their
/// manifest digests. Layers of docker archives are stored gzip-compressed (or as they were, if
/// already compressed); the config bytes are kept, so the config digest is unchanged.
pub fn load(store: &Store, archive: &Path) -> Result<Vec<Loaded>, ArchiveError> {
    let _lease = store.lease().map_err(store_at(archive))?;
    let tar = TarIndex::open(archive)?;
    let mut staging = Staging::new(store, archive)?;
    let loaded = if tar.has("oci-layout") && tar.has("index.json") {
        load_oci(&tar, &mut staging)?
    } else if tar.has("manifest.json") {
        load_docker(&tar, &mut staging)?
    } else {
        return Err(ArchiveError::NotAnArchive {
            archive: archive.to_path_buf(),
        });
    };
    if loaded.is_empty() {
        // Loading nothing and saying nothing hides a broken export.
        return Err(ArchiveError::Invalid {
            archive: archive.to_path_buf(),
            reason: "the archive holds no images (its index lists none)".into(),
            hint: "export the image again, e.g. `kiln save -o FILE IMAGE` or `docker save IMAGE`",
        });
    }
    staging.promote(archive)?;
    for l in &loaded {
        if l.names.is_empty() {
            store.add_untagged(&l.descriptor).map_err(store_at(archive))?;
        }
        for n in &l.names {
            store.tag(n, &l.descriptor).map_err(store_at(archive))?;
        }
    }
    Ok(loaded)
}

fn load_oci(tar: &TarIndex, staging: &mut Staging<'_>) -> Result<Vec<Loaded>, ArchiveError> {
    let layout = tar.read_small("oci-layout", "the OCI layout")?;
    let version: serde_json::Value = tar.json("oci-layout", &layout)?;
    if version.get("imageLayoutVersion").and_then(|v| v.as_str()).is_none() {
        return Err(ArchiveError::Invalid {
            archive: tar.path.clone(),
            reason: "oci-layout has no imageLayoutVersion".into(),
            hint: "the archive is not an OCI image layout",
        });
    }
    let bytes = tar.read_small("index.json", "the OCI layout")?;
    let index: Index = tar.json("index.json", &bytes)?;
    for d in &index.manifests {
        stage_tree(tar, staging, d, "index.json")?;
    }
    let mut out: Vec<Loaded> = Vec::new();
    for d in &index.manifests {
        let name = d
            .annotations
            .get(CONTAINERD_IMAGE_NAME)
            .or_else(|| d.annotations.get(REF_NAME))
            .and_then(|n| store_name(n));
        let mut desc = d.clone();
        desc.annotations.remove(REF_NAME);
        desc.annotations.remove(CONTAINERD_IMAGE_NAME);
        match out.iter_mut().find(|l| l.descriptor.digest == desc.digest) {
            Some(l) => l.names.extend(name.filter(|n| !l.names.contains(n))),
            None => out.push(Loaded {
                descriptor: desc,
                names: name.into_iter().collect(),
            }),
        }
    }
    Ok(out)
}

/// The store name for a name found in an archive, normalised as docker normalises what it
/// loads: a bare `ref.name` such as `1` (skopeo's `oci-archive:base.tar:1`) becomes `1:latest`,
/// so the printed name works in every other command. A name no command could address
/// (`My Image`) is dropped, and the image is loaded untagged under its digest.
pub(crate) fn store_name(raw: &str) -> Option<String> {
    Name::parse(raw).ok().map(|n| n.store_key())
}

/// Verifies one blob (and, for manifests and indexes, everything below it) into staging.
fn stage_tree(
    tar: &TarIndex,
    staging: &mut Staging<'_>,
    desc: &Descriptor,
    needed_by: &str,
) -> Result<(), ArchiveError> {
    if staging.seen.contains(&desc.digest) {
        return Ok(());
    }
    let entry = blob_entry(&desc.digest);
    let is_manifest = media::is_manifest(&desc.media_type);
    let is_index = media::is_index(&desc.media_type);
    if is_manifest || is_index {
        let bytes = tar.read_small(&entry, needed_by)?;
        staging
            .layout
            .put_blob_from(&bytes[..], Some((&desc.digest, Some(desc.size))))
            .map_err(store_entry(&tar.path, &entry))?;
        let parent = desc.digest.to_string();
        if is_manifest {
            let m: Manifest = tar.json(&entry, &bytes)?;
            stage_tree(tar, staging, &m.config, &parent)?;
            for l in &m.layers {
                stage_tree(tar, staging, l, &parent)?;
            }
        } else {
            let i: Index = tar.json(&entry, &bytes)?;
            for m in &i.manifests {
                stage_tree(tar, staging, m, &parent)?;
            }
        }
    } else if !staging.store.has_blob(&desc.digest) {
        let (r, _) = tar.open_entry(&entry, needed_by)?;
        staging
            .layout
            .put_blob_from(r, Some((&desc.digest, Some(desc.size))))
            .map_err(store_entry(&tar.path, &entry))?;
    }
    staging.record(desc.digest.clone());
    Ok(())
}

/// Reads a manifest.json entry's config: its bytes, their digest (checked against the digest
/// in the file name, when it has one) and its diff_ids (one per listed layer).
pub(crate) fn docker_config(
    tar: &TarIndex,
    entry: &DockerManifestEntry,
) -> Result<(Vec<u8>, Digest, Vec<Digest>), ArchiveError> {
    let config_bytes = tar.read_small(&entry.config, "manifest.json")?;
    let config_digest = Digest::sha256_of(&config_bytes);
    let stem = Path::new(&entry.config)
        .file_name()
        .map(|f| f.to_string_lossy().trim_end_matches(".json").to_string())
        .unwrap_or_default();
    if let Ok(named) = format!("sha256:{stem}").parse::<Digest>()
        && named != config_digest
    {
        return Err(ArchiveError::Corrupt {
            archive: tar.path.clone(),
            entry: entry.config.clone(),
            reason: format!("content hashes to {config_digest}, not the digest in its name"),
        });
    }
    let rootfs: ConfigRootFs = tar.json(&entry.config, &config_bytes)?;
    let diff_ids = rootfs.rootfs.diff_ids;
    if diff_ids.len() != entry.layers.len() {
        return Err(ArchiveError::Invalid {
            archive: tar.path.clone(),
            reason: format!(
                "manifest.json lists {} layers for {} but the config has {} diff_ids",
                entry.layers.len(),
                entry.config,
                diff_ids.len()
            ),
            hint: "the archive is corrupt or was modified; export it again",
        });
    }
    Ok((config_bytes, config_digest, diff_ids))
}

fn load_docker(tar: &TarIndex, staging: &mut Staging<'_>) -> Result<Vec<Loaded>, ArchiveError> {
    let bytes = tar.read_small("manifest.json", "the docker archive")?;
    let entries: Vec<DockerManifestEntry> = tar.json("manifest.json", &bytes)?;
    // Layers are verified against their diff_id, so one seen once need not be read again.
    let mut by_diff_id: HashMap<Digest, Descriptor> = HashMap::new();
    let mut out = Vec::new();
    for entry in &entries {
        let (config_bytes, config_digest, diff_ids) = docker_config(tar, entry)?;
        let mut layers = Vec::with_capacity(diff_ids.len());
        for (i, (path, diff_id)) in entry.layers.iter().zip(&diff_ids).enumerate() {
            if let Some(d) = by_diff_id.get(diff_id) {
                layers.push(d.clone());
                continue;
            }
            let d = stage_docker_layer(tar, staging, path, diff_id, i)?;
            by_diff_id.insert(diff_id.clone(), d.clone());
            layers.push(d);
        }
        staging
            .layout
            .put_blob_from(
                &config_bytes[..],
                Some((&config_digest, Some(config_bytes.len() as u64))),
            )
            .map_err(store_entry(&tar.path, &entry.config))?;
        staging.record(config_digest.clone());
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(media::OCI_MANIFEST.into()),
            artifact_type: None,
            config: Descriptor::new(media::OCI_CONFIG, config_digest, config_bytes.len() as u64),
            layers,
            subject: None,
            annotations: BTreeMap::new(),
        };
        let mbytes = canonical_json(&manifest);
        let mdigest = staging.layout.put_blob(&mbytes).map_err(store_at(&tar.path))?;
        staging.record(mdigest.clone());
        let names = entry.repo_tags.iter().flatten().filter_map(|t| store_name(t)).collect();
        out.push(Loaded {
            descriptor: Descriptor::new(media::OCI_MANIFEST, mdigest, mbytes.len() as u64),
            names,
        });
    }
    Ok(out)
}

/// Stores one docker-archive layer: a plain tar is gzip-compressed at kiln's default level
/// in fixed-size chunks (so the same archive always loads to the same digests); an already
/// compressed one is kept as it is. Either way the uncompressed bytes must hash to the config's diff_id.
fn stage_docker_layer(
    tar: &TarIndex,
    staging: &mut Staging<'_>,
    path: &str,
    diff_id: &Digest,
    position: usize,
) -> Result<Descriptor, ArchiveError> {
    let archive = &tar.path;
    let (mut r, size) = tar.open_entry(path, "manifest.json")?;
    let read_err = |e: io::Error| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            ArchiveError::Corrupt {
                archive: archive.clone(),
                entry: path.to_string(),
                reason: format!("the layer data ends early: {e}"),
            }
        } else {
            ArchiveError::Corrupt {
                archive: archive.clone(),
                entry: path.to_string(),
                reason: format!("cannot read the layer: {e}"),
            }
        }
    };
    let packing = sniff(&mut r).map_err(read_err)?;
    let blob = staging.layout.blob_writer().map_err(store_at(archive))?;
    let (blob, got, media_type) = match packing {
        Packing::Plain => {
            let level = match layer::Compression::DEFAULT {
                layer::Compression::Gzip(l) => l,
                _ => 6,
            };
            // The same deterministic parallel gzip as builds use, so a layer loaded from a
            // docker archive compresses to the bytes a build of the same tree would write.
            let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
            let gz = crate::pgzip::ParallelGzip::new(blob, level, workers);
            let mut w = HashingWriter::with_algorithm(gz, diff_id.algorithm());
            io::copy(&mut r, &mut w).map_err(read_err)?;
            let (gz, got, n) = w.finish();
            if n != size {
                return Err(read_err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("read {n} of {size} bytes"),
                )));
            }
            let blob = gz.finish().map_err(io_at(archive, format!("compressing {path}")))?;
            (blob, got, media::OCI_LAYER_GZIP)
        }
        Packing::Gzip | Packing::Zstd => {
            let mut tee = Tee::new(r, blob);
            let mut w = HashingWriter::with_algorithm(io::sink(), diff_id.algorithm());
            {
                let mut dec = decoder(packing, &mut tee).map_err(read_err)?;
                io::copy(&mut dec, &mut w).map_err(read_err)?;
            }
            // Whatever the decoder left unread still belongs to the blob.
            io::copy(&mut tee, &mut io::sink()).map_err(read_err)?;
            if let Some(e) = tee.error.take() {
                return Err(io_at(archive, format!("storing {path}"))(e));
            }
            let (_, got, _) = w.finish();
            let media_type = if packing == Packing::Gzip {
                media::OCI_LAYER_GZIP
            } else {
                media::OCI_LAYER_ZSTD
            };
            (tee.out, got, media_type)
        }
    };
    if packing != Packing::Plain && blob.written() != size {
        return Err(read_err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("read {} of {size} bytes", blob.written()),
        )));
    }
    if &got != diff_id {
        return Err(ArchiveError::DiffIdMismatch {
            archive: archive.clone(),
            layer: path.to_string(),
            position,
            expected: diff_id.clone(),
            got,
        });
    }
    let compressed = blob.written();
    let digest = blob.commit(None).map_err(store_at(archive))?;
    staging.record(digest.clone());
    Ok(Descriptor::new(media_type, digest, compressed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_tar_paths() {
        assert_eq!(normalize(Path::new("./a/b")).as_deref(), Some("a/b"));
        assert_eq!(normalize(Path::new("a/../b/")).as_deref(), Some("b"));
        assert_eq!(normalize(Path::new("/x")).as_deref(), Some("x"));
        assert_eq!(normalize(Path::new("../x")), None);
        assert_eq!(normalize(Path::new("./")), None);
    }

    #[test]
    fn tee_copies_only_consumed_bytes() {
        let mut tee = Tee::new(BufReader::new(&b"hello world"[..]), Vec::new());
        assert_eq!(tee.fill_buf().unwrap(), b"hello world");
        assert!(tee.out.is_empty());
        tee.consume(5);
        let mut rest = String::new();
        tee.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, " world");
        assert_eq!(tee.out, b"hello world");
    }
}
