//! Just enough of the ZIP format to read OSV's `all.zip` exports: the central directory
//! (with Zip64), stored and deflated entries, CRC-32 checked. About 150 lines, against a
//! crate that would add its own dependency tree and compile time for features kiln never uses.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// A ZIP archive that could not be read; the message names the archive and the entry.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason} (hint: {hint})")]
pub struct ZipError {
    /// The archive.
    pub path: PathBuf,
    /// What is wrong.
    pub reason: String,
    /// What to do.
    pub hint: &'static str,
}

const DAMAGED: &str =
    "download the archive again; kiln reads stored and deflated entries of ordinary and Zip64 archives";
const TOO_BIG: &str =
    "this is not an OSV export (a ZIP bomb?); OSV's all.zip files hold one small JSON record per entry";

/// How much an archive may inflate to: it comes from outside, and a few hundred bytes of
/// deflate can claim gigabytes. Every record read is kept in memory until the import is
/// written, so these bound kiln's memory as much as its disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes one entry may hold (OSV records are kilobytes; a record listing every version of
    /// a large project is under a MiB).
    pub entry: u64,
    /// Bytes all entries read from one archive may hold together.
    pub total: u64,
    /// How many times its compressed size the archive may inflate to, over [`Limits::slack`]:
    /// JSON deflates about 5 to 10 times, a ZIP bomb a thousand.
    pub ratio: u64,
    /// Bytes the archive may inflate to whatever their compressed size (a few small,
    /// repetitive records deflate better than the rest).
    pub slack: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            entry: 16 << 20,
            total: 4 << 30,
            ratio: 100,
            slack: 4 << 20,
        }
    }
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
    name_len: u64,
    bound: u64,
}

/// An open archive.
pub struct Archive {
    path: PathBuf,
    file: File,
    limits: Limits,
    inflated: u64,
    packed: u64,
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
            hint: DAMAGED,
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
                name_len: name_len as u64,
                bound: 0,
            });
            at = end;
        }
        overlap(&mut entries, cd_offset).map_err(|reason| ZipError {
            path: path.to_path_buf(),
            reason,
            hint: TOO_BIG,
        })?;
        Ok(Archive {
            path: path.to_path_buf(),
            file,
            limits: Limits::default(),
            inflated: 0,
            packed: 0,
            entries,
        })
    }

    /// The same archive with other size limits.
    pub fn with_limits(mut self, limits: Limits) -> Archive {
        self.limits = limits;
        self
    }

    /// Reads entry `i` whole, checking its CRC-32 and the size limits: an entry that declares
    /// or inflates to more than [`Limits::entry`], or that takes the archive past
    /// [`Limits::total`], is refused before it is held in memory.
    pub fn read(&mut self, i: usize) -> Result<Vec<u8>, ZipError> {
        let e = self.entries[i].clone();
        let err = |reason: String, hint: &'static str| ZipError {
            path: self.path.clone(),
            reason: format!("entry {}: {reason}", e.name),
            hint,
        };
        let room = self.limits.entry.min(self.limits.total.saturating_sub(self.inflated));
        let too_big = |what: String| {
            let limit = if room < self.limits.entry {
                format!("the {} byte limit for one archive", self.limits.total)
            } else {
                format!("the {} byte limit for one entry", self.limits.entry)
            };
            err(format!("{what}, over {limit}; refused"), TOO_BIG)
        };
        if e.size > room {
            return Err(too_big(format!("declares {} bytes", e.size)));
        }
        let packed = self.packed.saturating_add(e.compressed);
        let allowed = self
            .limits
            .slack
            .saturating_add(self.limits.ratio.saturating_mul(packed));
        if self.inflated.saturating_add(e.size) > allowed {
            return Err(err(
                format!(
                    "declares {} bytes from {} compressed, and the archive would inflate to more than {} times its compressed size; refused",
                    e.size, e.compressed, self.limits.ratio
                ),
                TOO_BIG,
            ));
        }
        let mut h = [0u8; 30];
        self.file
            .seek(SeekFrom::Start(e.local_offset))
            .and_then(|_| self.file.read_exact(&mut h))
            .map_err(|x| err(x.to_string(), DAMAGED))?;
        if u32le(&h, 0) != 0x0403_4b50 {
            return Err(err("bad local header".into(), DAMAGED));
        }
        let skip = u16le(&h, 26) as u64 + u16le(&h, 28) as u64;
        if e.local_offset + 30 + skip + e.compressed > e.bound {
            return Err(err("overlaps the next entry; refused".into(), TOO_BIG));
        }
        self.file
            .seek(SeekFrom::Current(skip as i64))
            .map_err(|x| err(x.to_string(), DAMAGED))?;
        let raw = (&mut self.file).take(e.compressed);
        let mut out = Vec::with_capacity(e.size as usize);
        // One byte past the declared size tells a lying header from an honest one.
        let cap = e.size + 1;
        let r: io::Result<usize> = match e.method {
            0 => raw.take(cap).read_to_end(&mut out),
            8 => flate2::read::DeflateDecoder::new(raw).take(cap).read_to_end(&mut out),
            m => return Err(err(format!("compression method {m} is not supported"), DAMAGED)),
        };
        r.map_err(|x| err(x.to_string(), DAMAGED))?;
        if out.len() as u64 > e.size {
            return Err(err(
                format!("inflates to more than the {} bytes it declares; refused", e.size),
                TOO_BIG,
            ));
        }
        if out.len() as u64 != e.size || crc32fast::hash(&out) != e.crc {
            return Err(err("size or CRC-32 mismatch (the archive is damaged)".into(), DAMAGED));
        }
        self.inflated += e.size;
        self.packed = packed;
        Ok(out)
    }
}

/// Entries must not share bytes, with each other or with the central directory: the
/// overlapping ZIP bomb points thousands of entries at one compressed kernel, so the archive
/// inflates to far more than its compressed entries add up to. Sets each entry's `bound`,
/// where the next one starts, which [`Archive::read`] checks against the true header length
/// (the local extra field may differ from the central one).
fn overlap(entries: &mut [Entry], cd_offset: u64) -> Result<(), String> {
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by_key(|&i| entries[i].local_offset);
    for (k, &i) in order.iter().enumerate() {
        let e = &entries[i];
        let end = e
            .local_offset
            .saturating_add(30 + e.name_len)
            .saturating_add(e.compressed);
        let (bound, next) = match order.get(k + 1) {
            Some(&j) => (entries[j].local_offset, format!("entry {}", entries[j].name)),
            None => (cd_offset, "the central directory".to_string()),
        };
        if end > bound {
            return Err(format!("entry {} overlaps {next}; refused", e.name));
        }
        entries[i].bound = bound;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A ZIP of deflated entries whose headers declare `declared` (or the true size).
    fn zip_of(entries: &[(&str, Vec<u8>, Option<u32>)]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut central = Vec::new();
        for (name, data, declared) in entries {
            let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
            z.write_all(data).unwrap();
            let packed = z.finish().unwrap();
            let size = declared.unwrap_or(data.len() as u32);
            let crc = crc32fast::hash(data);
            let offset = out.len() as u32;
            let fields = |sig: u32| {
                let mut h = sig.to_le_bytes().to_vec();
                h.extend([20, 0, 0, 0, 8, 0, 0, 0, 0, 0]);
                h.extend(crc.to_le_bytes());
                h.extend((packed.len() as u32).to_le_bytes());
                h.extend(size.to_le_bytes());
                h.extend((name.len() as u16).to_le_bytes());
                h.extend([0, 0]);
                h
            };
            out.extend(fields(0x0403_4b50));
            out.extend(name.as_bytes());
            out.extend(&packed);
            let mut c = 0x0201_4b50u32.to_le_bytes().to_vec();
            c.extend([20, 0]);
            c.extend(&fields(0)[4..]);
            c.extend([0u8; 10]);
            c.extend(offset.to_le_bytes());
            c.extend(name.as_bytes());
            central.extend(c);
        }
        let cd_offset = out.len() as u32;
        out.extend(&central);
        out.extend(0x0605_4b50u32.to_le_bytes());
        out.extend([0, 0, 0, 0]);
        out.extend((entries.len() as u16).to_le_bytes());
        out.extend((entries.len() as u16).to_le_bytes());
        out.extend((central.len() as u32).to_le_bytes());
        out.extend(cd_offset.to_le_bytes());
        out.extend([0, 0]);
        out
    }

    fn open(bytes: &[u8], limits: Limits) -> (tempfile::NamedTempFile, Archive) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        let a = Archive::open(f.path()).unwrap().with_limits(limits);
        (f, a)
    }

    const SMALL: Limits = Limits {
        entry: 1000,
        total: 2500,
        ratio: 100,
        slack: 2500,
    };

    /// `zip` (one entry) with its central directory record repeated `n` times, every copy
    /// pointing at the one local entry: the overlapping bomb's shape.
    fn repeat_central(zip: &[u8], n: u16) -> Vec<u8> {
        let eocd = zip.len() - 22;
        let cd_offset = u32le(zip, eocd + 16) as usize;
        let record = &zip[cd_offset..eocd];
        let mut out = zip[..cd_offset].to_vec();
        for _ in 0..n {
            out.extend(record);
        }
        let mut end = zip[eocd..].to_vec();
        end[8..10].copy_from_slice(&n.to_le_bytes());
        end[10..12].copy_from_slice(&n.to_le_bytes());
        end[12..16].copy_from_slice(&(record.len() as u32 * n as u32).to_le_bytes());
        out.extend(end);
        out
    }

    #[test]
    fn honest_entries_within_the_limits_are_read() {
        let (_f, mut a) = open(&zip_of(&[("a.json", b"{}".repeat(400), None)]), SMALL);
        assert_eq!(a.read(0).unwrap().len(), 800);
    }

    #[test]
    fn an_entry_declaring_too_much_is_refused_before_reading() {
        let (_f, mut a) = open(&zip_of(&[("big.json", vec![b' '; 5000], None)]), SMALL);
        let e = a.read(0).unwrap_err().to_string();
        assert!(
            e.contains("big.json") && e.contains("declares 5000 bytes") && e.contains("1000 byte limit"),
            "{e}"
        );
    }

    #[test]
    fn an_entry_inflating_past_what_it_declares_is_refused() {
        // 100 bytes declared, 100 MiB of deflated spaces behind them.
        let (_f, mut a) = open(
            &zip_of(&[("bomb.json", vec![b' '; 100 << 20], Some(100))]),
            Limits::default(),
        );
        let e = a.read(0).unwrap_err().to_string();
        assert!(
            e.contains("inflates to more than the 100 bytes it declares") && e.contains("ZIP bomb"),
            "{e}"
        );
    }

    #[test]
    fn the_archive_total_is_bounded() {
        let entries: Vec<(&str, Vec<u8>, Option<u32>)> = ["a.json", "b.json", "c.json"]
            .iter()
            .map(|n| (*n, vec![b' '; 900], None))
            .collect();
        let (_f, mut a) = open(&zip_of(&entries), SMALL);
        a.read(0).unwrap();
        a.read(1).unwrap();
        let e = a.read(2).unwrap_err().to_string();
        assert!(
            e.contains("c.json") && e.contains("2500 byte limit for one archive"),
            "{e}"
        );
    }

    #[test]
    fn an_archive_inflating_past_its_ratio_is_refused() {
        // Ten entries of 1000 spaces each deflate to a dozen bytes: the first is within the
        // slack, the second takes the archive past ten times what it read.
        let entries: Vec<(String, Vec<u8>, Option<u32>)> =
            (0..10).map(|i| (format!("{i}.json"), vec![b' '; 1000], None)).collect();
        let refs: Vec<(&str, Vec<u8>, Option<u32>)> =
            entries.iter().map(|(n, d, s)| (n.as_str(), d.clone(), *s)).collect();
        let limits = Limits {
            entry: 1000,
            total: 1 << 20,
            ratio: 10,
            slack: 1000,
        };
        let (_f, mut a) = open(&zip_of(&refs), limits);
        a.read(0).unwrap();
        let e = a.read(1).unwrap_err().to_string();
        assert!(
            e.contains("1.json") && e.contains("more than 10 times its compressed size") && e.contains("ZIP bomb"),
            "{e}"
        );
    }

    #[test]
    fn entries_sharing_bytes_are_refused_when_opened() {
        let one = zip_of(&[("k.json", b"{}".repeat(100), None)]);
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&repeat_central(&one, 2)).unwrap();
        let e = Archive::open(f.path()).err().expect("refused").to_string();
        assert!(
            e.contains("entry k.json overlaps entry k.json") && e.contains("ZIP bomb"),
            "{e}"
        );
        // One copy is an ordinary archive.
        let (_f, mut a) = open(&repeat_central(&one, 1), SMALL);
        assert_eq!(a.read(0).unwrap(), b"{}".repeat(100));
    }

    #[test]
    fn a_local_header_reaching_into_the_next_entry_is_refused() {
        // The first local header claims an extra field that moves its data into the second
        // entry's bytes (the central directory says it has none).
        let mut zip = zip_of(&[("a.json", b"{}".repeat(100), None), ("b.json", b"[]".repeat(100), None)]);
        zip[28..30].copy_from_slice(&20u16.to_le_bytes());
        let (_f, mut a) = open(&zip, SMALL);
        let e = a.read(0).unwrap_err().to_string();
        assert!(e.contains("a.json") && e.contains("overlaps the next entry"), "{e}");
        assert_eq!(a.read(1).unwrap(), b"[]".repeat(100));
    }
}
