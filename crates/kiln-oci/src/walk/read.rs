//! One layer's tar, read once: decompression and the digest check run on their own thread,
//! feeding the tar reader and the visitors through a small queue, so the two halves of the
//! work overlap.

use std::io::{self, Read};
use std::sync::mpsc::{Receiver, sync_channel};

use super::{Change, Content, Kind, Meta, Opener, Visitor};
use crate::layer::absolute_entry_path;

/// Bytes handed from the decoder thread at a time.
const PIPE_CHUNK: usize = 256 * 1024;

/// Above this, a visitor's kept file buffer is given back after the entry instead of reused.
const KEEP_BUFFER: usize = 4 << 20;

/// Reads one layer to its end and returns its changes in tar order.
pub(super) fn layer<V: Visitor>(open: Opener<'_>, visitor: &mut V) -> io::Result<Vec<Change>> {
    let (tx, rx) = sync_channel::<io::Result<Vec<u8>>>(4);
    std::thread::scope(|s| {
        s.spawn(move || {
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
        // Returning drops the receiver, which ends the decoder thread if we stopped early.
        read_tar(
            ChannelReader {
                rx,
                cur: Vec::new(),
                pos: 0,
            },
            visitor,
        )
    })
}

fn read_tar<V: Visitor>(stream: ChannelReader, visitor: &mut V) -> io::Result<Vec<Change>> {
    let mut archive = tar::Archive::new(stream);
    let mut changes = Vec::new();
    let mut kept = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry.map_err(|e| io::Error::new(e.kind(), format!("reading the tar: {e}")))?;
        let path = absolute_entry_path(&String::from_utf8_lossy(&entry.path_bytes()));
        let (dir, name) = match path.rsplit_once('/') {
            Some((d, n)) => (if d.is_empty() { "/" } else { d }, n),
            None => ("/", path.as_str()),
        };
        if name == ".wh..wh..opq" {
            changes.push(Change::Opaque(dir.to_string()));
            continue;
        }
        if let Some(gone) = name.strip_prefix(".wh.") {
            let target = if dir == "/" {
                format!("/{gone}")
            } else {
                format!("{dir}/{gone}")
            };
            changes.push(Change::Whiteout(target));
            continue;
        }
        let meta = meta(&entry);
        let result = if meta.kind == Kind::File {
            let mut content = Content::new(&mut entry, meta.size, &mut kept);
            visitor.entry(&path, &meta, &mut content)
        } else {
            visitor.entry(&path, &meta, &mut Content::new(&mut io::empty(), 0, &mut kept))
        };
        result.map_err(|e| io::Error::new(e.kind(), format!("reading {path}: {e}")))?;
        if kept.capacity() > KEEP_BUFFER {
            kept = Vec::new();
        }
        kept.clear();
        changes.push(Change::Put(path, meta));
    }
    // Read what the tar reader left (padding, trailing blocks) so the digest check runs.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink())?;
    Ok(changes)
}

fn meta<R: Read>(entry: &tar::Entry<'_, R>) -> Meta {
    let h = entry.header();
    let t = h.entry_type();
    let kind = if t.is_file() {
        Kind::File
    } else if t.is_dir() {
        Kind::Dir
    } else if t.is_symlink() {
        Kind::Symlink
    } else if t.is_hard_link() {
        Kind::Hardlink
    } else {
        Kind::Other
    };
    Meta {
        kind,
        mode: h.mode().unwrap_or(0),
        uid: h.uid().unwrap_or(0),
        gid: h.gid().unwrap_or(0),
        size: if kind == Kind::File { entry.size() } else { 0 },
        link: entry
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned()),
    }
}

/// Chunks from the decoder thread, read as a stream.
struct ChannelReader {
    rx: Receiver<io::Result<Vec<u8>>>,
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
