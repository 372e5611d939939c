//! One streaming pass over every layer: secrets in every file's bytes, and the list of what
//! each layer adds and removes (so a secret deleted later is still reported, with the layer
//! that hid it, and misconfiguration checks see the final filesystem).
//!
//! Layers are decoded in parallel and never unpacked: each tar entry is read in chunks with
//! an overlap (so a secret across a chunk edge is still whole in one of them), and the blob
//! is hashed as it streams so a layer that does not match its digest fails the scan.

use std::collections::HashSet;
use std::io::{self, Read};

use kiln_oci::Store;
use kiln_oci::decompress::open_layer_stream_for_media_type;
use kiln_oci::digest::VerifyingReader;
use kiln_oci::store::Descriptor;

use crate::ScanError;
use crate::secrets::{self, Rule};

/// What a tar entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A symbolic link.
    Symlink,
    /// A hard link to an earlier entry.
    Hardlink,
    /// A directory.
    Dir,
    /// A device, FIFO…
    Other,
}

/// A file's metadata, as the layer recorded it.
#[derive(Debug, Clone)]
pub struct Fact {
    /// Entry kind.
    pub kind: Kind,
    /// Permission bits including setuid/setgid/sticky.
    pub mode: u32,
    /// Link target for links.
    pub link: Option<String>,
}

/// A change a layer makes to the filesystem, in tar order.
#[derive(Debug, Clone)]
pub enum Event {
    /// A path is added or replaced.
    Put(String, Fact),
    /// A whiteout: the path (and everything under it) is removed.
    Whiteout(String),
    /// An opaque directory: what lower layers put under it is hidden.
    Opaque(String),
}

/// A secret found in a file of one layer.
#[derive(Debug, Clone)]
pub struct FileSecret {
    /// Absolute path.
    pub path: String,
    /// The rule.
    pub rule: Rule,
    /// 1-based line for text files.
    pub line: Option<usize>,
    /// Byte offset (binary files, where lines mean nothing).
    pub offset: u64,
    /// First four characters and a hash.
    pub redacted: String,
    /// True when the file looks binary (has NUL bytes).
    pub binary: bool,
}

/// The result for one layer.
#[derive(Debug, Default)]
pub struct LayerScan {
    /// Changes in tar order.
    pub events: Vec<Event>,
    /// Secrets found.
    pub secrets: Vec<FileSecret>,
    /// Bytes of file content scanned.
    pub bytes: u64,
}

/// Options for the pass.
#[derive(Debug, Clone)]
pub struct PassOptions {
    /// Look for secrets in file contents.
    pub secrets: bool,
    /// Threads decoding layers at once.
    pub jobs: usize,
}

const CHUNK: usize = 1 << 20;
const OVERLAP: usize = 16 * 1024;

pub use kiln_oci::layer::absolute_entry_path as normalize;

fn scan_entry(r: &mut impl Read, path: &str, buf: &mut Vec<u8>, out: &mut Vec<FileSecret>) -> io::Result<u64> {
    buf.clear();
    let mut base: u64 = 0; // absolute offset of buf[0]
    let mut lines_before: usize = 0; // newlines before buf[0]
    let mut reported_end: u64 = 0;
    let mut total = 0u64;
    let mut binary: Option<bool> = None;
    loop {
        let keep = buf.len();
        // Appends without zero-filling a chunk per file (most files are small).
        let new = r.by_ref().take(CHUNK as u64).read_to_end(buf)?;
        total += new as u64;
        let eof = new < CHUNK;
        if binary.is_none() {
            binary = Some(memchr::memchr(0, &buf[..buf.len().min(8192)]).is_some());
        }
        if new > 0 || keep == 0 {
            for h in secrets::scan(buf) {
                let abs = base + h.start as u64;
                if abs < reported_end {
                    continue;
                }
                reported_end = base + h.end as u64;
                let is_bin = binary == Some(true);
                out.push(FileSecret {
                    path: path.to_string(),
                    rule: h.rule,
                    line: (!is_bin).then(|| lines_before + memchr::memchr_iter(b'\n', &buf[..h.start]).count() + 1),
                    offset: abs,
                    redacted: secrets::redact(&buf[h.start..h.end]),
                    binary: is_bin,
                });
            }
        }
        if eof {
            return Ok(total);
        }
        // Keep the tail as the next buffer's head.
        let cut = buf.len() - OVERLAP;
        if binary != Some(true) {
            lines_before += memchr::memchr_iter(b'\n', &buf[..cut]).count();
        }
        buf.drain(..cut);
        base += cut as u64;
    }
}

/// Where one layer's bytes come from.
pub enum LayerSource<'a> {
    /// A blob of an OCI layout, checked against its descriptor's digest and size.
    Blob(&'a Store, &'a Descriptor),
    /// A layer file inside a docker-archive tar (any compression), checked against the
    /// config's diff_id once decompressed.
    ArchiveEntry {
        /// The archive.
        path: &'a std::path::Path,
        /// Byte offset of the entry's data.
        offset: u64,
        /// The entry's size.
        size: u64,
        /// The uncompressed layer's digest (the config's diff_id).
        diff_id: &'a kiln_oci::Digest,
    },
}

impl LayerSource<'_> {
    fn digest(&self) -> String {
        match self {
            LayerSource::Blob(_, d) => d.digest.to_string(),
            LayerSource::ArchiveEntry { diff_id, .. } => diff_id.to_string(),
        }
    }
}

fn layer(index: usize, source: &LayerSource<'_>, opts: &PassOptions) -> Result<LayerScan, ScanError> {
    let err = |reason: String| {
        // The verifying reader's size and digest checks surface through the decoder.
        let reason = if reason.contains("digest mismatch")
            || reason.contains("size mismatch")
            || reason.contains("larger than the expected")
        {
            format!("the blob does not match its digest ({reason})")
        } else {
            reason
        };
        ScanError::Layer {
            index: index + 1,
            digest: source.digest(),
            reason,
        }
    };
    type Opener = Box<dyn FnOnce() -> io::Result<Box<dyn Read>> + Send>;
    let open: Opener = match source {
        LayerSource::Blob(layout, desc) => {
            let blob = layout.open_blob(&desc.digest).map_err(|e| err(e.to_string()))?;
            let (digest, size, media_type) = (desc.digest.clone(), desc.size, desc.media_type.clone());
            Box::new(move || {
                let verified = VerifyingReader::new(blob, digest, Some(size));
                open_layer_stream_for_media_type(verified, &media_type)
            })
        }
        LayerSource::ArchiveEntry {
            path,
            offset,
            size,
            diff_id,
        } => {
            use std::io::Seek;
            let mut f = std::fs::File::open(path).map_err(|e| err(format!("{}: {e}", path.display())))?;
            f.seek(io::SeekFrom::Start(*offset)).map_err(|e| err(e.to_string()))?;
            let raw = io::BufReader::with_capacity(1 << 20, f).take(*size);
            let diff_id = (*diff_id).clone();
            Box::new(move || {
                let plain = kiln_oci::decompress::open_layer_stream(raw)?;
                Ok(Box::new(VerifyingReader::new(plain, diff_id, None)) as Box<dyn Read>)
            })
        }
    };
    // Decompression (and the digest check) runs on its own thread, feeding the tar reader
    // and the secret scanner through a small queue: the two halves of the work overlap.
    let (tx, rx) = std::sync::mpsc::sync_channel::<io::Result<Vec<u8>>>(4);
    let decoder = std::thread::spawn(move || {
        let mut stream = match open() {
            Ok(s) => s,
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        };
        loop {
            let mut chunk = Vec::with_capacity(PIPE_CHUNK);
            match stream.by_ref().take(PIPE_CHUNK as u64).read_to_end(&mut chunk) {
                Ok(0) => return,
                Ok(_) => {
                    if tx.send(Ok(chunk)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
    });
    let stream = ChannelReader {
        rx,
        cur: Vec::new(),
        pos: 0,
    };
    let r = read_tar(stream, opts, &err);
    decoder.join().expect("the decoder thread does not panic");
    r
}

/// Chunks from the decoder thread, read as a stream.
struct ChannelReader {
    rx: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(Ok(c)) => {
                    self.cur = c;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

const PIPE_CHUNK: usize = 256 * 1024;

fn read_tar(
    stream: ChannelReader,
    opts: &PassOptions,
    err: &dyn Fn(String) -> ScanError,
) -> Result<LayerScan, ScanError> {
    let mut archive = tar::Archive::new(stream);
    let mut out = LayerScan::default();
    let mut buf = Vec::with_capacity(CHUNK + OVERLAP);
    for entry in archive.entries().map_err(|e| err(e.to_string()))? {
        let mut entry = entry.map_err(|e| err(format!("reading the tar: {e}")))?;
        let path = normalize(&String::from_utf8_lossy(&entry.path_bytes()));
        let (dir, name) = match path.rsplit_once('/') {
            Some((d, n)) => (if d.is_empty() { "/" } else { d }, n),
            None => ("/", path.as_str()),
        };
        if name == ".wh..wh..opq" {
            out.events.push(Event::Opaque(dir.to_string()));
            continue;
        }
        if let Some(gone) = name.strip_prefix(".wh.") {
            let target = if dir == "/" {
                format!("/{gone}")
            } else {
                format!("{dir}/{gone}")
            };
            out.events.push(Event::Whiteout(target));
            continue;
        }
        let h = entry.header();
        let t = h.entry_type();
        let kind = if t.is_file() {
            Kind::File
        } else if t.is_symlink() {
            Kind::Symlink
        } else if t.is_hard_link() {
            Kind::Hardlink
        } else if t.is_dir() {
            Kind::Dir
        } else {
            Kind::Other
        };
        let mode = h.mode().unwrap_or(0);
        let link = entry
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned());
        if kind == Kind::File && opts.secrets {
            out.bytes += scan_entry(&mut entry, &path, &mut buf, &mut out.secrets)
                .map_err(|e| err(format!("reading {path}: {e}")))?;
        }
        out.events.push(Event::Put(path, Fact { kind, mode, link }));
    }
    // Read what the tar reader left (padding, trailing blocks) so the digest check runs.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| err(e.to_string()))?;
    Ok(out)
}

/// Runs the pass over `layers` (base first).
pub fn scan_layers(layout: &Store, layers: &[Descriptor], opts: &PassOptions) -> Result<Vec<LayerScan>, ScanError> {
    let sources: Vec<LayerSource<'_>> = layers.iter().map(|d| LayerSource::Blob(layout, d)).collect();
    scan_sources(&sources, opts)
}

/// Runs the pass over layers from any source (base first).
pub fn scan_sources(layers: &[LayerSource<'_>], opts: &PassOptions) -> Result<Vec<LayerScan>, ScanError> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let slots: Vec<std::sync::Mutex<Option<Result<LayerScan, ScanError>>>> =
        (0..layers.len()).map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..opts.jobs.max(1).min(layers.len()) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if i >= layers.len() {
                        break;
                    }
                    let r = layer(i, &layers[i], opts);
                    *slots[i].lock().expect("no panics while holding the slot") = Some(r);
                }
            });
        }
    });
    slots
        .into_iter()
        .map(|s| s.into_inner().expect("slot").expect("every layer was scanned"))
        .collect()
}

/// How a path stops being visible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Gone {
    /// A whiteout or opaque directory removed it.
    Deleted,
    /// A later layer wrote another entry at the same path.
    Overwritten,
}

/// Per-layer sets for "is this path removed later?" questions.
pub struct Later {
    puts: Vec<HashSet<String>>,
    whiteouts: Vec<HashSet<String>>,
    opaques: Vec<HashSet<String>>,
}

impl Later {
    /// Indexes the events of every layer.
    pub fn new(scans: &[LayerScan]) -> Later {
        let mut l = Later {
            puts: vec![],
            whiteouts: vec![],
            opaques: vec![],
        };
        for s in scans {
            let (mut p, mut w, mut o) = (HashSet::new(), HashSet::new(), HashSet::new());
            for e in &s.events {
                match e {
                    Event::Put(x, f) if f.kind != Kind::Dir => {
                        p.insert(x.clone());
                    }
                    Event::Put(..) => {}
                    Event::Whiteout(x) => {
                        w.insert(x.clone());
                    }
                    Event::Opaque(x) => {
                        o.insert(x.clone());
                    }
                }
            }
            l.puts.push(p);
            l.whiteouts.push(w);
            l.opaques.push(o);
        }
        l
    }

    /// The first layer after `layer` that removes or replaces `path`.
    pub fn gone(&self, path: &str, layer: usize) -> Option<(usize, Gone)> {
        for j in layer + 1..self.puts.len() {
            if self.puts[j].contains(path) {
                return Some((j, Gone::Overwritten));
            }
            let mut p = path;
            loop {
                if self.whiteouts[j].contains(p) {
                    return Some((j, Gone::Deleted));
                }
                let Some((parent, _)) = p.rsplit_once('/') else { break };
                let parent = if parent.is_empty() { "/" } else { parent };
                if self.opaques[j].contains(parent) {
                    return Some((j, Gone::Deleted));
                }
                if parent == "/" {
                    break;
                }
                p = parent;
            }
        }
        None
    }
}

/// The final filesystem's metadata (path → fact), replaying every layer's events.
pub fn final_fs(scans: &[LayerScan]) -> std::collections::BTreeMap<String, Fact> {
    let mut fs: std::collections::BTreeMap<String, Fact> = Default::default();
    fn remove_under(fs: &mut std::collections::BTreeMap<String, Fact>, dir: &str, keep: &HashSet<String>) {
        let prefix = if dir == "/" { "/".to_string() } else { format!("{dir}/") };
        let doomed: Vec<String> = fs
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| !keep.contains(*k))
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            fs.remove(&k);
        }
    }
    let none = HashSet::new();
    for s in scans {
        // Opaque directories hide lower layers only, so apply them before this layer's puts.
        let mut this_layer: HashSet<String> = HashSet::new();
        for e in &s.events {
            if let Event::Opaque(d) = e {
                remove_under(&mut fs, d, &this_layer);
            }
            if let Event::Put(p, _) = e {
                this_layer.insert(p.clone());
            }
        }
        for e in &s.events {
            match e {
                Event::Put(p, f) => {
                    if f.kind != Kind::Dir {
                        remove_under(&mut fs, p, &none);
                    }
                    fs.insert(p.clone(), f.clone());
                }
                Event::Whiteout(p) => {
                    fs.remove(p);
                    remove_under(&mut fs, p, &none);
                }
                Event::Opaque(_) => {}
            }
        }
    }
    fs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(p: &str, kind: Kind) -> Event {
        Event::Put(
            p.into(),
            Fact {
                kind,
                mode: 0o644,
                link: None,
            },
        )
    }

    fn layer(events: Vec<Event>) -> LayerScan {
        LayerScan {
            events,
            ..Default::default()
        }
    }

    #[test]
    fn deletions_overwrites_and_opaque_directories() {
        let scans = vec![
            layer(vec![
                put("/app", Kind::Dir),
                put("/app/a", Kind::File),
                put("/app/b", Kind::File),
                put("/etc/c", Kind::File),
                put("/etc/d", Kind::File),
            ]),
            layer(vec![Event::Whiteout("/app/a".into()), put("/etc/c", Kind::File)]),
            layer(vec![Event::Opaque("/app".into()), put("/app/new", Kind::File)]),
            layer(vec![Event::Whiteout("/etc".into())]),
        ];
        let later = Later::new(&scans);
        assert_eq!(later.gone("/app/a", 0), Some((1, Gone::Deleted)));
        assert_eq!(later.gone("/etc/c", 0), Some((1, Gone::Overwritten)));
        assert_eq!(later.gone("/app/b", 0), Some((2, Gone::Deleted)));
        assert_eq!(later.gone("/app/new", 2), None);
        assert_eq!(later.gone("/etc/d", 0), Some((3, Gone::Deleted)));
        let fs = final_fs(&scans);
        let paths: Vec<&str> = fs.keys().map(String::as_str).collect();
        assert_eq!(paths, ["/app", "/app/new"]);
    }

    #[test]
    fn chunked_scan_finds_secret_across_edge_once() {
        let mut data = vec![b'a'; CHUNK - 10];
        data.extend_from_slice(b"\nghp_aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5\n");
        data.extend(std::iter::repeat_n(b'b', CHUNK));
        let mut out = vec![];
        let mut buf = vec![];
        let n = scan_entry(&mut &data[..], "/f", &mut buf, &mut out).unwrap();
        assert_eq!(n, data.len() as u64);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].line, Some(2));
        assert_eq!(out[0].offset, (CHUNK - 9) as u64);
    }
}
