//! Just enough of the ZIP format to read OSV's `all.zip` exports: the central directory
//! (with Zip64), stored and deflated entries, CRC-32 checked. About 150 lines, against a
//! crate that would add its own dependency tree and compile time for features kiln never uses.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// A ZIP archive that could not be read; the message names the archive and the entry.
#[derive(Debug, thiserror::Error)]
#[error(
    "{path}: {reason} (hint: download the archive again; kiln reads stored and deflated entries of ordinary and Zip64 archives)"
)]
pub struct ZipError {
    /// The archive.
    pub path: PathBuf,
    /// What is wrong.
    pub reason: String,
}

/// One entry of the central directory.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The name inside the archive.
    pub name: String,
    method: u16,
    crc: u32,
    compressed: u64,
    size: u64,
    local_offset: u64,
}

/// An open archive.
pub struct Archive {
    path: PathBuf,
    file: File,
    /// Every entry, in central-directory order.
    pub entries: Vec<Entry>,
}

fn u16le(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32le(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn u64le(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl Archive {
    /// Opens `path` and reads its central directory.
    pub fn open(path: &Path) -> Result<Archive, ZipError> {
        let err = |reason: String| ZipError {
            path: path.to_path_buf(),
            reason,
        };
        let mut file = File::open(path).map_err(|e| err(e.to_string()))?;
        let len = file.seek(SeekFrom::End(0)).map_err(|e| err(e.to_string()))?;
        let tail_len = len.min(65_557 + 20);
        let mut tail = vec![0u8; tail_len as usize];
        file.seek(SeekFrom::Start(len - tail_len))
            .and_then(|_| file.read_exact(&mut tail))
            .map_err(|e| err(e.to_string()))?;
        let eocd = (0..tail.len().saturating_sub(21))
            .rev()
            .find(|&i| u32le(&tail, i) == 0x0605_4b50)
            .ok_or_else(|| err("not a ZIP archive (no end of central directory record)".into()))?;
        let mut count = u16le(&tail, eocd + 10) as u64;
        let mut cd_size = u32le(&tail, eocd + 12) as u64;
        let mut cd_offset = u32le(&tail, eocd + 16) as u64;
        // Zip64: a locator sits just before the classic record.
        if eocd >= 20 && u32le(&tail, eocd - 20) == 0x0706_4b50 {
            let rec = u64le(&tail, eocd - 20 + 8);
            let mut z = [0u8; 56];
            file.seek(SeekFrom::Start(rec))
                .and_then(|_| file.read_exact(&mut z))
                .map_err(|e| err(format!("reading the Zip64 record: {e}")))?;
            if u32le(&z, 0) != 0x0606_4b50 {
                return Err(err("bad Zip64 end of central directory record".into()));
            }
            count = u64le(&z, 32);
            cd_size = u64le(&z, 40);
            cd_offset = u64le(&z, 48);
        }
        if cd_offset.saturating_add(cd_size) > len {
            return Err(err(
                "the central directory lies past the end (truncated download?)".into()
            ));
        }
        let mut cd = vec![0u8; cd_size as usize];
        file.seek(SeekFrom::Start(cd_offset))
            .and_then(|_| file.read_exact(&mut cd))
            .map_err(|e| err(format!("reading the central directory: {e}")))?;
        let mut entries = Vec::with_capacity(count.min(1 << 20) as usize);
        let mut at = 0usize;
        for n in 0..count {
            if at + 46 > cd.len() || u32le(&cd, at) != 0x0201_4b50 {
                return Err(err(format!("central directory entry {n} is damaged")));
            }
            let method = u16le(&cd, at + 10);
            let crc = u32le(&cd, at + 16);
            let mut compressed = u32le(&cd, at + 20) as u64;
            let mut size = u32le(&cd, at + 24) as u64;
            let name_len = u16le(&cd, at + 28) as usize;
            let extra_len = u16le(&cd, at + 30) as usize;
            let comment_len = u16le(&cd, at + 32) as usize;
            let mut local_offset = u32le(&cd, at + 42) as u64;
            let end = at + 46 + name_len + extra_len + comment_len;
            if end > cd.len() {
                return Err(err(format!("central directory entry {n} is damaged")));
            }
            let name = String::from_utf8_lossy(&cd[at + 46..at + 46 + name_len]).into_owned();
            // Zip64 extra field: the 64-bit values, in order, for the fields that overflowed.
            let mut extra = &cd[at + 46 + name_len..at + 46 + name_len + extra_len];
            while extra.len() >= 4 {
                let id = u16le(extra, 0);
                let l = (u16le(extra, 2) as usize).min(extra.len() - 4);
                if id == 1 {
                    let mut f = &extra[4..4 + l];
                    let mut take = |v: &mut u64| {
                        if *v == 0xFFFF_FFFF && f.len() >= 8 {
                            *v = u64le(f, 0);
                            f = &f[8..];
                        }
                    };
                    take(&mut size);
                    take(&mut compressed);
                    take(&mut local_offset);
                }
                extra = &extra[4 + l..];
            }
            entries.push(Entry {
                name,
                method,
                crc,
                compressed,
                size,
                local_offset,
            });
            at = end;
        }
        Ok(Archive {
            path: path.to_path_buf(),
            file,
            entries,
        })
    }

    /// Reads entry `i` whole, checking its CRC-32.
    pub fn read(&mut self, i: usize) -> Result<Vec<u8>, ZipError> {
        let e = self.entries[i].clone();
        let err = |reason: String| ZipError {
            path: self.path.clone(),
            reason: format!("entry {}: {reason}", e.name),
        };
        let mut h = [0u8; 30];
        self.file
            .seek(SeekFrom::Start(e.local_offset))
            .and_then(|_| self.file.read_exact(&mut h))
            .map_err(|x| err(x.to_string()))?;
        if u32le(&h, 0) != 0x0403_4b50 {
            return Err(err("bad local header".into()));
        }
        let skip = u16le(&h, 26) as i64 + u16le(&h, 28) as i64;
        self.file
            .seek(SeekFrom::Current(skip))
            .map_err(|x| err(x.to_string()))?;
        let raw = (&mut self.file).take(e.compressed);
        let mut out = Vec::with_capacity(e.size.min(1 << 30) as usize);
        let r: io::Result<usize> = match e.method {
            0 => raw.take(e.size).read_to_end(&mut out),
            8 => flate2::read::DeflateDecoder::new(raw).read_to_end(&mut out),
            m => return Err(err(format!("compression method {m} is not supported"))),
        };
        r.map_err(|x| err(x.to_string()))?;
        if out.len() as u64 != e.size || crc32fast::hash(&out) != e.crc {
            return Err(err("size or CRC-32 mismatch (the archive is damaged)".into()));
        }
        Ok(out)
    }
}
