//! A regular file's bytes as they stream out of a layer, shared by every visitor of the
//! pass: what one visitor reads whole is kept for the next, so no byte is decoded twice.

use std::io::{self, Read};

/// The bytes of the entry being visited. Visitors may look at the first bytes
/// ([`head`](Content::head)), take the whole file ([`whole`](Content::whole)) or stream it
/// ([`reader`](Content::reader)); what the first two read is kept, so later visitors read it
/// from memory. Once a reader has gone past the kept bytes, the rest of the file is gone:
/// `head` and `whole` then fail.
pub struct Content<'a> {
    inner: &'a mut dyn Read,
    size: u64,
    kept: &'a mut Vec<u8>,
    streamed: bool,
}

impl<'a> Content<'a> {
    /// `size` bytes to come from `inner`, keeping what is read in `kept` (cleared first).
    pub fn new(inner: &'a mut dyn Read, size: u64, kept: &'a mut Vec<u8>) -> Content<'a> {
        kept.clear();
        Content {
            inner,
            size,
            kept,
            streamed: false,
        }
    }

    /// The file's size as its tar header says.
    pub fn size(&self) -> u64 {
        self.size
    }

    fn fresh(&self) -> io::Result<()> {
        if self.streamed {
            return Err(io::Error::other(
                "a visitor streamed this file before another asked to keep it (put the keeping visitor first)",
            ));
        }
        Ok(())
    }

    /// Up to the first `n` bytes (fewer if the file is shorter).
    pub fn head(&mut self, n: usize) -> io::Result<&[u8]> {
        self.fresh()?;
        if self.kept.len() < n {
            let want = (n - self.kept.len()) as u64;
            (&mut *self.inner).take(want).read_to_end(self.kept)?;
        }
        Ok(&self.kept[..n.min(self.kept.len())])
    }

    /// The whole file, unless it is larger than `max` bytes (then `None`, and nothing is read).
    pub fn whole(&mut self, max: u64) -> io::Result<Option<&[u8]>> {
        if self.size > max {
            return Ok(None);
        }
        self.fresh()?;
        self.kept.reserve((self.size as usize).saturating_sub(self.kept.len()));
        // Never more than the header said, nor more than `max`, whatever the stream holds.
        (&mut *self.inner)
            .take(max.saturating_sub(self.kept.len() as u64))
            .read_to_end(self.kept)?;
        Ok(Some(self.kept))
    }

    /// A reader over the file from its first byte: the kept bytes, then the rest of the entry.
    pub fn reader(&mut self) -> ContentReader<'_, 'a> {
        ContentReader { content: self, pos: 0 }
    }
}

/// Reads a [`Content`] from its start; see [`Content::reader`].
pub struct ContentReader<'c, 'a> {
    content: &'c mut Content<'a>,
    pos: usize,
}

impl Read for ContentReader<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let kept = &self.content.kept;
        if self.pos < kept.len() {
            let n = buf.len().min(kept.len() - self.pos);
            buf[..n].copy_from_slice(&kept[self.pos..self.pos + n]);
            self.pos += n;
            return Ok(n);
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let n = self.content.inner.read(buf)?;
        if n > 0 {
            self.content.streamed = true;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_one_visitor_keeps_the_next_reads_from_memory() {
        let data: Vec<u8> = (0..100u8).collect();
        let mut src = &data[..];
        let mut kept = Vec::new();
        let mut c = Content::new(&mut src, 100, &mut kept);
        assert_eq!(c.head(4).unwrap(), &[0, 1, 2, 3]);
        assert_eq!(c.whole(99).unwrap(), None, "over the limit: nothing read");
        assert_eq!(c.whole(100).unwrap().unwrap(), &data[..]);
        let mut again = Vec::new();
        c.reader().read_to_end(&mut again).unwrap();
        assert_eq!(again, data);
        assert!(src.is_empty(), "the source was read once");
    }

    #[test]
    fn a_stream_continues_after_the_head_and_ends_keeping() {
        let data = b"\x7fELF and the rest".to_vec();
        let mut src = &data[..];
        let mut kept = Vec::new();
        let mut c = Content::new(&mut src, data.len() as u64, &mut kept);
        assert_eq!(c.head(4).unwrap(), b"\x7fELF");
        let mut all = Vec::new();
        c.reader().read_to_end(&mut all).unwrap();
        assert_eq!(all, data);
        assert!(c.whole(1 << 20).is_err(), "streamed bytes are gone");
    }
}
