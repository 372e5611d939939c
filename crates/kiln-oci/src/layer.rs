//! Deterministic layer writing in one streaming pass:
//! tar entries → sha256 (diff_id) → compressor → sha256 (blob digest) → temp file → store.
//!
//! The same list of entries always gives the same bytes: the caller hands entries in sorted
//! order (checked here), uid and gid are numeric with empty names, mtimes are clamped to
//! SOURCE_DATE_EPOCH, PAX records appear only for what ustar cannot hold (long names, large
//! sizes or ids, xattrs), and compression runs at a fixed level with a fixed worker count.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;

use crate::digest::{Digest, HashingWriter};
use crate::media;
use crate::store::{BlobWriter, Descriptor, Store, StoreError};

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// No compression (diff_id equals the blob digest).
    None,
    /// gzip at a fixed level (0-9).
    Gzip(u32),
    /// zstd at a fixed level, always with at least one worker so output never depends on the machine.
    Zstd(i32),
}

impl Compression {
    /// kiln's default: gzip, which every registry and runtime reads.
    pub const DEFAULT: Compression = Compression::Gzip(6);

    /// Parses the `--compression` flag value.
    pub fn parse(s: &str) -> Option<Compression> {
        match s {
            "gzip" => Some(Compression::DEFAULT),
            "zstd" => Some(Compression::Zstd(3)),
            "none" | "uncompressed" => Some(Compression::None),
            _ => None,
        }
    }

    /// The OCI layer media type for this compression.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::None => media::OCI_LAYER_TAR,
            Compression::Gzip(_) => media::OCI_LAYER_GZIP,
            Compression::Zstd(_) => media::OCI_LAYER_ZSTD,
        }
    }
}

/// Where a regular file's bytes come from.
#[derive(Debug, Clone)]
pub enum FileSource {
    /// Read from this path while the layer is written (never loaded whole).
    Path(PathBuf),
    /// Small generated content (heredocs, /etc files).
    Bytes(Vec<u8>),
}

/// What a tar entry is.
#[derive(Debug, Clone)]
pub enum EntryKind {
    /// A directory.
    Dir,
    /// A regular file of `size` bytes.
    File {
        /// Content.
        source: FileSource,
        /// Exact size; a source that yields more or fewer bytes is an error.
        size: u64,
    },
    /// A symbolic link to the target as written.
    Symlink(String),
    /// A hard link to another path of the same layer (relative to the root).
    Hardlink(String),
    /// Character device (major, minor).
    CharDevice(u32, u32),
    /// Block device (major, minor).
    BlockDevice(u32, u32),
    /// Named pipe.
    Fifo,
}

/// One entry of a layer, with all metadata explicit.
#[derive(Debug, Clone)]
pub struct LayerEntry {
    /// Path relative to the root, `/`-separated, without leading `/` or `./`.
    pub path: String,
    /// Entry type and content.
    pub kind: EntryKind,
    /// Permission bits including setuid, setgid and sticky.
    pub mode: u32,
    /// Numeric owner.
    pub uid: u64,
    /// Numeric group.
    pub gid: u64,
    /// Modification time in seconds since the epoch (clamped on write).
    pub mtime: i64,
    /// Extended attributes, sorted by name.
    pub xattrs: Vec<(String, Vec<u8>)>,
}

impl LayerEntry {
    /// A directory entry owned by root.
    pub fn dir(path: impl Into<String>, mode: u32) -> LayerEntry {
        LayerEntry {
            path: path.into(),
            kind: EntryKind::Dir,
            mode,
            uid: 0,
            gid: 0,
            mtime: 0,
            xattrs: vec![],
        }
    }

    /// A whiteout marking `path` deleted, as the OCI layer spec defines.
    pub fn whiteout(path: &str) -> LayerEntry {
        let (dir, name) = match path.rsplit_once('/') {
            Some((d, n)) => (format!("{d}/"), n),
            None => (String::new(), path),
        };
        LayerEntry::file_bytes(format!("{dir}.wh.{name}"), vec![], 0)
    }

    /// A regular file with in-memory content.
    pub fn file_bytes(path: impl Into<String>, data: Vec<u8>, mode: u32) -> LayerEntry {
        let size = data.len() as u64;
        LayerEntry {
            path: path.into(),
            kind: EntryKind::File {
                source: FileSource::Bytes(data),
                size,
            },
            mode,
            uid: 0,
            gid: 0,
            mtime: 0,
            xattrs: vec![],
        }
    }
}

/// The result of writing a layer: what goes into the manifest and the config's rootfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    /// sha256 of the uncompressed tar.
    pub diff_id: Digest,
    /// The blob descriptor (compressed).
    pub descriptor: Descriptor,
    /// Uncompressed size.
    pub tar_size: u64,
}

/// Why a layer could not be written.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// Reading a source file or writing the blob failed.
    #[error("layer entry {path:?}: {source}")]
    Io {
        /// The entry being written.
        path: String,
        /// The I/O error.
        source: io::Error,
    },
    /// Entries were not given in sorted order (a determinism bug in the caller).
    #[error("layer entries out of order: {prev:?} then {next:?}")]
    Unsorted {
        /// Previous entry.
        prev: String,
        /// Offending entry.
        next: String,
    },
    /// A file changed size while it was being read.
    #[error(
        "layer entry {path:?}: file changed while being read (expected {expected} bytes) (hint: do not modify the build context during a build)"
    )]
    SizeChanged {
        /// The entry.
        path: String,
        /// Size recorded when the entry was planned.
        expected: u64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

enum Encoder {
    Plain(BlobWriter),
    Gzip(crate::pgzip::ParallelGzip<BlobWriter>),
    Zstd(FixedChunks<zstd::stream::write::Encoder<'static, BlobWriter>>),
}

impl Write for Encoder {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Plain(w) => w.write(buf),
            Encoder::Gzip(w) => w.write(buf),
            Encoder::Zstd(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Plain(w) => w.flush(),
            Encoder::Gzip(w) => w.flush(),
            Encoder::Zstd(w) => w.flush(),
        }
    }
}

impl Encoder {
    fn finish(self) -> io::Result<BlobWriter> {
        match self {
            Encoder::Plain(w) => Ok(w),
            Encoder::Gzip(w) => w.finish(),
            Encoder::Zstd(w) => w.into_inner()?.finish(),
        }
    }
}

/// Passes bytes on in blocks of exactly [`crate::pgzip::BLOCK`] (the last one shorter), so a
/// compressor sees the same writes however the tar writer split its output.
struct FixedChunks<W: Write> {
    inner: W,
    buf: Vec<u8>,
}

impl<W: Write> FixedChunks<W> {
    fn into_inner(mut self) -> io::Result<W> {
        if !self.buf.is_empty() {
            self.inner.write_all(&self.buf)?;
        }
        Ok(self.inner)
    }
}

impl<W: Write> Write for FixedChunks<W> {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let n = data.len();
        while !data.is_empty() {
            let take = (crate::pgzip::BLOCK - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == crate::pgzip::BLOCK {
                self.inner.write_all(&self.buf)?;
                self.buf.clear();
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A new blob in the store, compressed as asked (the same encoder for built and converted
/// layers, so both give the same bytes for the same tar).
fn encoder(store: &Store, compression: Compression) -> Result<Encoder, LayerError> {
    let blob = store.blob_writer()?;
    let io_e = |source| LayerError::Io {
        path: String::new(),
        source,
    };
    Ok(match compression {
        Compression::None => Encoder::Plain(blob),
        Compression::Gzip(level) => {
            // Parallel and deterministic: the output never depends on the worker count.
            let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
            Encoder::Gzip(crate::pgzip::ParallelGzip::new(blob, level, workers))
        }
        Compression::Zstd(level) => {
            let mut z = zstd::stream::write::Encoder::new(blob, level).map_err(io_e)?;
            z.multithread(2).map_err(io_e)?;
            // Fixed 1 MiB writes, so the frame never depends on how tar split its writes.
            Encoder::Zstd(FixedChunks {
                inner: z,
                buf: Vec::with_capacity(crate::pgzip::BLOCK),
            })
        }
    })
}

/// Re-encodes an uncompressed layer tar (`kiln convert`) as `compression` into a new blob.
/// The returned diff_id is the digest of the bytes read; the caller compares it with the
/// image's, since `tar` comes from outside.
pub fn recompress(store: &Store, tar: &mut dyn io::Read, compression: Compression) -> Result<LayerInfo, LayerError> {
    let e = |source| LayerError::Io {
        path: "<layer>".into(),
        source,
    };
    let mut w = HashingWriter::new(FixedChunks {
        inner: encoder(store, compression)?,
        buf: Vec::with_capacity(crate::pgzip::BLOCK),
    });
    io::copy(tar, &mut w).map_err(e)?;
    let (chunks, diff_id, tar_size) = w.finish();
    let blob = chunks.into_inner().map_err(e)?.finish().map_err(e)?;
    let size = blob.written();
    let digest = blob.commit(None)?;
    Ok(LayerInfo {
        diff_id,
        descriptor: Descriptor::new(compression.media_type(), digest, size),
        tar_size,
    })
}

/// Streams entries into a new layer blob in the store.
pub struct LayerWriter {
    tar: tar::Builder<HashingWriter<Encoder>>,
    compression: Compression,
    source_date_epoch: Option<i64>,
    last: Option<String>,
}

impl LayerWriter {
    /// Starts a layer. `source_date_epoch` clamps every mtime when set.
    pub fn new(store: &Store, compression: Compression, source_date_epoch: Option<i64>) -> Result<Self, LayerError> {
        let enc = encoder(store, compression)?;
        let mut tar = tar::Builder::new(HashingWriter::new(enc));
        tar.mode(tar::HeaderMode::Deterministic);
        Ok(LayerWriter {
            tar,
            compression,
            source_date_epoch,
            last: None,
        })
    }

    /// Appends one entry. Entries must arrive sorted by path (byte order).
    pub fn append(&mut self, entry: &LayerEntry) -> Result<(), LayerError> {
        self.append_reporting(entry, &mut |_| {})
    }

    /// Appends one entry and tells `on_bytes` of its file content as it is written, so a
    /// display can show one multi-gigabyte file growing instead of jumping when it ends.
    pub fn append_reporting(&mut self, entry: &LayerEntry, on_bytes: &mut dyn FnMut(u64)) -> Result<(), LayerError> {
        if let Some(prev) = &self.last
            && prev.as_str() >= entry.path.as_str()
        {
            return Err(LayerError::Unsorted {
                prev: prev.clone(),
                next: entry.path.clone(),
            });
        }
        self.last = Some(entry.path.clone());
        let e = |source| LayerError::Io {
            path: entry.path.clone(),
            source,
        };
        let mut header = tar::Header::new_ustar();
        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        let (etype, size) = match &entry.kind {
            EntryKind::Dir => (tar::EntryType::Directory, 0),
            EntryKind::File { size, .. } => (tar::EntryType::Regular, *size),
            EntryKind::Symlink(_) => (tar::EntryType::Symlink, 0),
            EntryKind::Hardlink(_) => (tar::EntryType::Link, 0),
            EntryKind::CharDevice(..) => (tar::EntryType::Char, 0),
            EntryKind::BlockDevice(..) => (tar::EntryType::Block, 0),
            EntryKind::Fifo => (tar::EntryType::Fifo, 0),
        };
        header.set_entry_type(etype);
        let name = if matches!(entry.kind, EntryKind::Dir) {
            format!("{}/", entry.path)
        } else {
            entry.path.clone()
        };
        if name.len() > 100 && header.set_path(&name).is_err() {
            pax.push(("path".into(), name.clone().into_bytes()));
            header.set_path(truncated_name(&name)).map_err(e)?;
        } else {
            header.set_path(&name).map_err(e)?;
        }
        match &entry.kind {
            EntryKind::Symlink(t) | EntryKind::Hardlink(t)
                if t.len() > 100 || header.set_link_name_literal(t.as_bytes()).is_err() =>
            {
                pax.push(("linkpath".into(), t.clone().into_bytes()));
                header
                    .set_link_name_literal(&t.as_bytes()[..t.len().min(100)])
                    .map_err(e)?;
            }
            EntryKind::CharDevice(maj, min) | EntryKind::BlockDevice(maj, min) => {
                header.set_device_major(*maj).map_err(e)?;
                header.set_device_minor(*min).map_err(e)?;
            }
            _ => {}
        }
        const USTAR_MAX_SIZE: u64 = 0o77777777777;
        const USTAR_MAX_ID: u64 = 0o7777777;
        if size > USTAR_MAX_SIZE {
            pax.push(("size".into(), size.to_string().into_bytes()));
            header.set_size(0);
        } else {
            header.set_size(size);
        }
        for (key, id) in [("uid", entry.uid), ("gid", entry.gid)] {
            if id > USTAR_MAX_ID {
                pax.push((key.into(), id.to_string().into_bytes()));
            }
        }
        header.set_uid(entry.uid.min(USTAR_MAX_ID));
        header.set_gid(entry.gid.min(USTAR_MAX_ID));
        header.set_mode(entry.mode & 0o7777);
        let mtime = match self.source_date_epoch {
            Some(sde) => entry.mtime.min(sde),
            None => entry.mtime,
        };
        header.set_mtime(mtime.max(0) as u64);
        for (k, v) in &entry.xattrs {
            pax.push((format!("SCHILY.xattr.{k}"), v.clone()));
        }
        if !pax.is_empty() {
            self.write_pax(&pax).map_err(e)?;
        }
        header.set_cksum();
        match &entry.kind {
            EntryKind::File {
                source: FileSource::Path(p),
                size,
            } => {
                let f = File::open(p).map_err(e)?;
                let mut limited = ExactReader {
                    inner: f.take(*size),
                    remaining: *size,
                    on_read: on_bytes,
                };
                self.tar.append(&header, &mut limited).map_err(|source| {
                    if source.kind() == io::ErrorKind::UnexpectedEof {
                        LayerError::SizeChanged {
                            path: entry.path.clone(),
                            expected: *size,
                        }
                    } else {
                        LayerError::Io {
                            path: entry.path.clone(),
                            source,
                        }
                    }
                })?;
            }
            EntryKind::File {
                source: FileSource::Bytes(b),
                ..
            } => {
                self.tar.append(&header, &b[..]).map_err(e)?;
                on_bytes(b.len() as u64);
            }
            _ => self.tar.append(&header, io::empty()).map_err(e)?,
        }
        Ok(())
    }

    fn write_pax(&mut self, records: &[(String, Vec<u8>)]) -> io::Result<()> {
        let mut data = Vec::new();
        for (k, v) in records {
            // Each record is "LEN KEY=VALUE\n" where LEN counts the whole record, itself included.
            let body = k.len() + v.len() + 3; // ' ', '=', '\n'
            let mut len = body + 1;
            while len != body + len.to_string().len() {
                len = body + len.to_string().len();
            }
            data.extend_from_slice(format!("{len} {k}=").as_bytes());
            data.extend_from_slice(v);
            data.push(b'\n');
        }
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_path("PaxHeader")?;
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_cksum();
        self.tar.append(&h, &data[..])
    }

    /// Ends the archive, finishes compression, commits the blob and returns its identity.
    pub fn finish(self) -> Result<LayerInfo, LayerError> {
        let e = |source| LayerError::Io {
            path: "<end of layer>".into(),
            source,
        };
        let hashing = self.tar.into_inner().map_err(e)?;
        let (enc, diff_id, tar_size) = hashing.finish();
        let blob = enc.finish().map_err(e)?;
        let size = blob.written();
        let digest = blob.commit(None)?;
        Ok(LayerInfo {
            diff_id,
            descriptor: Descriptor::new(self.compression.media_type(), digest, size),
            tar_size,
        })
    }
}

/// A tar entry's path as an absolute, `/`-separated path without empty or `.` parts
/// (`./usr//lib/` → `/usr/lib`), the form catalogers and scanners key files by. `..` is
/// kept: these readers never touch the filesystem with it.
pub fn absolute_entry_path(p: &str) -> String {
    let mut out = String::with_capacity(p.len() + 1);
    for part in p.split('/') {
        if part.is_empty() || part == "." {
            continue;
        }
        out.push('/');
        out.push_str(part);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// ustar can keep at most 100 bytes of name; the PAX `path` record carries the real one.
fn truncated_name(name: &str) -> String {
    let mut end = 100.min(name.len());
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].trim_end_matches('/').replace("..", "__")
}

/// Yields exactly `remaining` bytes or fails with UnexpectedEof, so a file that shrinks while
/// being read cannot produce a tar whose header lies about its size.
struct ExactReader<'a, R> {
    inner: R,
    remaining: u64,
    on_read: &'a mut dyn FnMut(u64),
}

impl<R: Read> Read for ExactReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank"));
        }
        self.remaining -= n as u64;
        (self.on_read)(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(store: &Store, entries: &[LayerEntry], c: Compression) -> LayerInfo {
        let mut w = LayerWriter::new(store, c, Some(1000)).unwrap();
        for e in entries {
            w.append(e).unwrap();
        }
        w.finish().unwrap()
    }

    fn sample() -> Vec<LayerEntry> {
        let long = format!("d/{}", "x".repeat(150));
        let mut f = LayerEntry::file_bytes("d/file", b"hello".to_vec(), 0o4755);
        f.mtime = 5_000_000_000;
        f.uid = 3_000_000;
        f.xattrs = vec![("user.k".into(), b"v".to_vec())];
        vec![
            LayerEntry::dir("d", 0o755),
            f,
            LayerEntry {
                kind: EntryKind::Hardlink("d/file".into()),
                ..LayerEntry::file_bytes("d/hl", vec![], 0o644)
            },
            LayerEntry {
                kind: EntryKind::Symlink("/".repeat(120)),
                ..LayerEntry::file_bytes("d/sl", vec![], 0o777)
            },
            LayerEntry::file_bytes(long, b"long".to_vec(), 0o644),
        ]
    }

    #[test]
    fn deterministic_and_readable() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for c in [Compression::None, Compression::DEFAULT, Compression::Zstd(3)] {
            let a = write(&store, &sample(), c);
            let b = write(&store, &sample(), c);
            assert_eq!(a, b);
        }
        let info = write(&store, &sample(), Compression::None);
        assert_eq!(info.diff_id, info.descriptor.digest);
        let data = store.read_blob(&info.descriptor.digest).unwrap();
        let mut ar = tar::Archive::new(&data[..]);
        let mut seen = vec![];
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            if path == "d/file" {
                assert_eq!(e.header().mtime().unwrap(), 1000, "mtime clamped");
                assert_eq!(e.header().mode().unwrap(), 0o4755);
                let ext: Vec<_> = e
                    .pax_extensions()
                    .unwrap()
                    .unwrap()
                    .map(|x| x.unwrap().key().unwrap().to_string())
                    .collect();
                assert!(
                    ext.contains(&"uid".to_string()) && ext.contains(&"SCHILY.xattr.user.k".to_string()),
                    "{ext:?}"
                );
            }
            if path == "d/sl" {
                assert_eq!(e.link_name().unwrap().unwrap().to_string_lossy().len(), 120);
            }
            seen.push(path);
        }
        assert_eq!(seen[0], "d/");
        assert!(seen.iter().any(|p| p.len() == 152), "{seen:?}");
    }

    #[test]
    fn rejects_unsorted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut w = LayerWriter::new(&store, Compression::None, None).unwrap();
        w.append(&LayerEntry::dir("b", 0o755)).unwrap();
        assert!(matches!(
            w.append(&LayerEntry::dir("a", 0o755)),
            Err(LayerError::Unsorted { .. })
        ));
    }

    #[test]
    fn whiteout_names() {
        assert_eq!(LayerEntry::whiteout("a/b/c").path, "a/b/.wh.c");
        assert_eq!(LayerEntry::whiteout("c").path, ".wh.c");
    }
}
