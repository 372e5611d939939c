//! Deterministic parallel gzip, in the manner of pigz.
//!
//! The input is cut into fixed-size blocks no matter how the caller's writes are split, each
//! block is deflated on its own (primed with the previous block's last 32 KiB as a
//! dictionary) and ends with a sync flush, and the pieces are concatenated behind one gzip
//! header. Each block's output depends only on its bytes and its dictionary, so the result
//! is the same for any number of worker threads, and the same on every machine: a layer's
//! digest never depends on core count or on how the tar writer chunked its writes.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::{Compress, Compression, FlushCompress, Status};

/// Uncompressed bytes per block.
pub const BLOCK: usize = 1 << 20;
const DICT: usize = 32 * 1024;

struct Job {
    seq: u64,
    dict: Vec<u8>,
    data: Vec<u8>,
    last: bool,
}

type Done = (u64, io::Result<Vec<u8>>);

struct Pool {
    jobs: Option<SyncSender<Job>>,
    results: Receiver<Done>,
    threads: Vec<JoinHandle<()>>,
}

/// A gzip encoder that compresses fixed blocks on worker threads.
pub struct ParallelGzip<W: Write> {
    inner: W,
    level: u32,
    workers: usize,
    buf: Vec<u8>,
    dict: Vec<u8>,
    crc: crc32fast::Hasher,
    total: u64,
    next_seq: u64,
    written_seq: u64,
    pending: BTreeMap<u64, Vec<u8>>,
    pool: Option<Pool>,
    header_written: bool,
}

/// Above this entropy (bits per byte) a block is stored rather than compressed: already-compressed
/// or random data gains < 0.5% from deflate, so the time goes where it pays, and the output
/// still depends only on the block's bytes.
const STORE_ABOVE_BITS: f64 = 7.99;

fn deflate_block(level: u32, dict: &[u8], data: &[u8], last: bool) -> io::Result<Vec<u8>> {
    let level = if data.len() >= 64 * 1024 && crate::entropy::bits_per_byte(data) > STORE_ABOVE_BITS {
        0
    } else {
        level
    };
    let mut c = Compress::new(Compression::new(level), false);
    if !dict.is_empty() {
        c.set_dictionary(dict).map_err(io::Error::other)?;
    }
    let mut out = Vec::with_capacity(data.len() / 2 + 1024);
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    loop {
        let consumed = c.total_in() as usize;
        if out.capacity() - out.len() < 64 * 1024 {
            out.reserve(256 * 1024);
        }
        let status = c
            .compress_vec(&data[consumed..], &mut out, flush)
            .map_err(io::Error::other)?;
        let done_input = c.total_in() as usize == data.len();
        match status {
            Status::StreamEnd => break,
            // A sync flush is complete once all input is consumed and output stopped filling.
            _ if !last && done_input && out.capacity() > out.len() => break,
            _ => {}
        }
    }
    Ok(out)
}

impl<W: Write> ParallelGzip<W> {
    /// An encoder at `level` (0-9) with up to `workers` threads (at least 1).
    pub fn new(inner: W, level: u32, workers: usize) -> Self {
        ParallelGzip {
            inner,
            level,
            workers: workers.max(1),
            buf: Vec::with_capacity(BLOCK),
            dict: Vec::new(),
            crc: crc32fast::Hasher::new(),
            total: 0,
            next_seq: 0,
            written_seq: 0,
            pending: BTreeMap::new(),
            pool: None,
            header_written: false,
        }
    }

    fn write_header(&mut self) -> io::Result<()> {
        if !self.header_written {
            // ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL=0 OS=255 (unknown): no host-dependent bytes.
            self.inner.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255])?;
            self.header_written = true;
        }
        Ok(())
    }

    fn start_pool(&mut self) {
        let (job_tx, job_rx) = sync_channel::<Job>(self.workers * 2);
        let (res_tx, res_rx) = sync_channel::<Done>(self.workers * 4);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let level = self.level;
        let threads = (0..self.workers)
            .map(|_| {
                let rx = Arc::clone(&job_rx);
                let tx = res_tx.clone();
                std::thread::spawn(move || {
                    loop {
                        let job = match rx.lock().unwrap().recv() {
                            Ok(j) => j,
                            Err(_) => break,
                        };
                        let out = deflate_block(level, &job.dict, &job.data, job.last);
                        if tx.send((job.seq, out)).is_err() {
                            break;
                        }
                    }
                })
            })
            .collect();
        self.pool = Some(Pool {
            jobs: Some(job_tx),
            results: res_rx,
            threads,
        });
    }

    /// Writes finished blocks in order; with `wait`, blocks until `upto` blocks are written.
    fn drain(&mut self, upto: u64) -> io::Result<()> {
        while self.written_seq < upto {
            if let Some(out) = self.pending.remove(&self.written_seq) {
                self.inner.write_all(&out)?;
                self.written_seq += 1;
                continue;
            }
            let pool = self.pool.as_ref().expect("blocks in flight imply a pool");
            let (seq, out) = pool
                .results
                .recv()
                .map_err(|_| io::Error::other("gzip worker exited"))?;
            self.pending.insert(seq, out?);
        }
        Ok(())
    }

    fn submit(&mut self, last: bool) -> io::Result<()> {
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(if last { 0 } else { BLOCK }));
        let dict = std::mem::take(&mut self.dict);
        if !last {
            let start = data.len().saturating_sub(DICT);
            self.dict = data[start..].to_vec();
        }
        self.write_header()?;
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.pool.is_none() && last {
            // A layer smaller than one block is compressed inline: no threads for tiny layers.
            let out = deflate_block(self.level, &dict, &data, true)?;
            self.drain(seq)?;
            self.inner.write_all(&out)?;
            self.written_seq += 1;
            return Ok(());
        }
        if self.pool.is_none() {
            self.start_pool();
        }
        // Bound the work in flight so memory stays at a few blocks per worker.
        let limit = (self.workers * 3) as u64;
        if seq >= self.written_seq + limit {
            self.drain(seq + 1 - limit)?;
        }
        let job = Job { seq, dict, data, last };
        let sender = self.pool.as_ref().and_then(|p| p.jobs.as_ref()).expect("pool started");
        sender.send(job).map_err(|_| io::Error::other("gzip worker exited"))?;
        Ok(())
    }

    /// Compresses what is left, writes the trailer and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.submit(true)?;
        let end = self.next_seq;
        self.drain(end)?;
        if let Some(mut pool) = self.pool.take() {
            pool.jobs.take();
            for t in pool.threads.drain(..) {
                let _ = t.join();
            }
        }
        let crc = std::mem::take(&mut self.crc).finalize();
        self.inner.write_all(&crc.to_le_bytes())?;
        self.inner
            .write_all(&((self.total & 0xffff_ffff) as u32).to_le_bytes())?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let n = data.len();
        self.crc.update(data);
        self.total += n as u64;
        while !data.is_empty() {
            let room = BLOCK - self.buf.len();
            let take = room.min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == BLOCK {
                self.submit(false)?;
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn compress(data: &[u8], workers: usize, chunk: usize) -> Vec<u8> {
        let mut g = ParallelGzip::new(Vec::new(), 6, workers);
        for c in data.chunks(chunk.max(1)) {
            g.write_all(c).unwrap();
        }
        g.finish().unwrap()
    }

    fn sample(n: usize) -> Vec<u8> {
        let mut x: u64 = 0x9e3779b97f4a7c15;
        (0..n)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if i % 3 == 0 {
                    (x & 0xff) as u8
                } else {
                    b"kiln layer "[i % 11]
                }
            })
            .collect()
    }

    #[test]
    fn same_bytes_for_any_workers_and_chunking() {
        let data = sample(3 * BLOCK + 12345);
        let a = compress(&data, 1, 4096);
        let b = compress(&data, 3, 999_983);
        let c = compress(&data, 2, 1);
        assert_eq!(a, b);
        assert_eq!(a, c);
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&a[..]).read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn incompressible_blocks_are_stored_and_roundtrip() {
        let mut x: u64 = 1;
        let random: Vec<u8> = (0..2 * BLOCK)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (x >> 33) as u8
            })
            .collect();
        assert!(crate::entropy::bits_per_byte(&random[..BLOCK]) > STORE_ABOVE_BITS);
        assert!(crate::entropy::bits_per_byte(&sample(BLOCK)) < STORE_ABOVE_BITS);
        let z = compress(&random, 2, 65536);
        assert!(z.len() > random.len(), "stored blocks carry a small overhead");
        assert!(z.len() < random.len() + random.len() / 100);
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&z[..]).read_to_end(&mut out).unwrap();
        assert_eq!(out, random);
    }

    #[test]
    fn small_and_empty_inputs_roundtrip() {
        for n in [0, 1, 100, BLOCK - 1, BLOCK, BLOCK + 1] {
            let data = sample(n);
            let z = compress(&data, 2, 7777);
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&z[..]).read_to_end(&mut out).unwrap();
            assert_eq!(out, data, "size {n}");
        }
    }
}
