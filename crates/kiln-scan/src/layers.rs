//! One streaming pass over every layer (`kiln_oci::walk`) for everything `kiln scan` asks:
//! secrets in every file's bytes, the catalogers' files for the vulnerability scanner, and
//! the changes each layer makes (so a secret deleted later is still reported, with the layer
//! that hid it, and misconfiguration checks see the final filesystem). Each layer is read
//! once, however many scanners run.
//!
//! Layers are decoded in parallel and never unpacked: each file is scanned in chunks with an
//! overlap (so a secret across a chunk edge is still whole in one of them), and every layer
//! is checked against its digest as it streams, so a layer that does not match fails the scan.

use std::io::{self, Read};

use kiln_oci::walk::{Change, Content, Kind, LayerInput, Meta, Removals, Tree, Visitor, walk_layers};
use kiln_sbom::walk::{Collector, Fs};

use crate::ScanError;
use crate::owned::Owned;
use crate::secrets::{self, Rule};

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

/// The secret scanner's visitor for one layer.
#[derive(Debug, Default)]
pub struct SecretScanner {
    /// Secrets found, in tar order.
    pub secrets: Vec<FileSecret>,
    /// Bytes of file content scanned.
    pub bytes: u64,
    buf: Vec<u8>,
}

impl Visitor for SecretScanner {
    fn entry(&mut self, path: &str, meta: &Meta, content: &mut Content<'_>) -> io::Result<()> {
        if meta.kind == Kind::File {
            self.bytes += scan_entry(&mut content.reader(), path, &mut self.buf, &mut self.secrets)?;
        }
        Ok(())
    }
}

/// What the pass looks for.
#[derive(Debug, Clone)]
pub struct PassOptions {
    /// Look for secrets in file contents.
    pub secrets: bool,
    /// Collect the catalogers' files (for the vulnerability scanner), with these options.
    pub catalog: Option<kiln_sbom::Options>,
    /// Threads decoding layers at once.
    pub jobs: usize,
}

/// Everything one pass found.
#[derive(Debug)]
pub struct Pass {
    /// Each layer's changes, base first.
    pub changes: Vec<Vec<Change>>,
    /// Each layer's secrets, base first (none from files a package installed in that layer).
    pub secrets: Vec<Vec<FileSecret>>,
    /// The final filesystem.
    pub tree: Tree,
    /// The catalogers' view of the final filesystem, when asked for.
    pub fs: Option<Fs>,
}

impl Pass {
    /// When each path disappears after the layer that put it there.
    pub fn removals(&self) -> Removals {
        Removals::new(self.changes.iter().map(Vec::as_slice))
    }
}

impl From<kiln_oci::walk::WalkError> for ScanError {
    fn from(e: kiln_oci::walk::WalkError) -> Self {
        ScanError::Layer {
            index: e.index + 1,
            digest: e.digest.to_string(),
            reason: e.reason,
        }
    }
}

/// Runs the pass over `layers` (base first): each layer is read once, by every scanner at once.
pub fn pass(layers: Vec<LayerInput<'_>>, opts: &PassOptions) -> Result<Pass, ScanError> {
    let walks = walk_layers(layers, opts.jobs, |_| {
        // The visitors that keep whole files come first; the secret scanner then reads those
        // from memory.
        (
            opts.catalog.as_ref().map(Collector::new),
            opts.secrets.then(|| (Owned::default(), SecretScanner::default())),
        )
    })?;
    let tree = Tree::of(walks.iter().map(|w| w.changes.as_slice()));
    let fs = opts
        .catalog
        .is_some()
        .then(|| Fs::from_walk(&tree, walks.iter().filter_map(|w| w.visitor.0.as_ref())));
    let mut out = Pass {
        changes: Vec::with_capacity(walks.len()),
        secrets: Vec::with_capacity(walks.len()),
        tree,
        fs,
    };
    for w in walks {
        out.changes.push(w.changes);
        let (owned, scanner) = w.visitor.1.unwrap_or_default();
        // What a package installed is the distribution's, not the image's secret.
        out.secrets
            .push(scanner.secrets.into_iter().filter(|f| !owned.owns(&f.path)).collect());
    }
    Ok(out)
}

const CHUNK: usize = 1 << 20;
const OVERLAP: usize = 16 * 1024;

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

#[cfg(test)]
mod tests {
    use super::*;

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
