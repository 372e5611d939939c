//! The offline vulnerability database: OSV records kept under `$KILN_HOME/kiln/vulndb/`.
//!
//! One JSON-lines file per ecosystem (`Debian_12.jsonl`, `PyPI.jsonl`…), so a scan reads
//! only the ecosystems its image has, and `meta.json` with the import time (`kiln db status`
//! and the scan's staleness warning read it). An import parses and validates everything
//! first and only then replaces files (each one atomically), so a malformed OSV file leaves
//! the database as it was.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::osv::Vulnerability;
use crate::zip;

/// A database problem; messages name the file (and entry) and end with a hint.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// An input file is not valid OSV.
    #[error(
        "{path}: {reason} (hint: kiln db import takes OSV JSON records, directories of them, or OSV's per-ecosystem all.zip)"
    )]
    Malformed {
        /// The file (and `!entry` inside a zip).
        path: String,
        /// What is wrong, with the line and column where serde knows them.
        reason: String,
    },
    /// A ZIP archive could not be read.
    #[error(transparent)]
    Zip(#[from] zip::ZipError),
    /// Reading or writing files failed.
    #[error("{path}: {source} (hint: check the path exists and that the kiln home is writable)")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Nothing to import.
    #[error("{path}: no OSV records found (hint: pass .json files, a directory of them, or an all.zip)")]
    Empty {
        /// What was given.
        path: PathBuf,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DbError + '_ {
    move |source| DbError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What `meta.json` records.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Meta {
    /// Seconds since the epoch of the last import.
    pub imported_unix: i64,
    /// The same, RFC 3339.
    pub imported: String,
    /// Records per ecosystem.
    pub ecosystems: BTreeMap<String, usize>,
    /// Withdrawn records kept (they never match).
    #[serde(default)]
    pub withdrawn: usize,
    /// What was imported, most recent last.
    #[serde(default)]
    pub sources: Vec<String>,
}

/// A database directory.
#[derive(Debug, Clone)]
pub struct Db {
    dir: PathBuf,
}

/// What an import did.
#[derive(Debug, Clone, Default)]
pub struct ImportReport {
    /// Records read from the input.
    pub read: usize,
    /// Records new to the database or newer than what it had.
    pub updated: usize,
    /// Ecosystems touched.
    pub ecosystems: BTreeSet<String>,
}

/// The file name of an ecosystem's records.
fn file_name(ecosystem: &str) -> String {
    let safe: String = ecosystem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{safe}.jsonl")
}

/// Now, in seconds since the epoch.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Db {
    /// The database of the store whose kiln directory is `meta_dir` (`$KILN_HOME/kiln`).
    pub fn at(meta_dir: &Path) -> Db {
        Db {
            dir: meta_dir.join("vulndb"),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The metadata, or `None` when nothing was ever imported.
    pub fn meta(&self) -> Result<Option<Meta>, DbError> {
        let p = self.dir.join("meta.json");
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| DbError::Malformed {
                path: p.display().to_string(),
                reason: format!("database metadata is damaged: {e}; import again"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&p)(e)),
        }
    }

    /// Every record for `ecosystem` (exact name, e.g. `Debian:12`).
    pub fn load(&self, ecosystem: &str) -> Result<Vec<Vulnerability>, DbError> {
        let p = self.dir.join(file_name(ecosystem));
        let text = match std::fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(io(&p)(e)),
        };
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.is_empty())
            .map(|(n, l)| {
                serde_json::from_str(l).map_err(|e| DbError::Malformed {
                    path: format!("{}:{}", p.display(), n + 1),
                    reason: format!("database file is damaged: {e}; import again"),
                })
            })
            .collect()
    }

    /// Imports `paths` (files, directories, zips) into the database.
    pub fn import(&self, paths: &[PathBuf]) -> Result<ImportReport, DbError> {
        let mut records = Vec::new();
        for p in paths {
            let before = records.len();
            read_path(p, &mut records)?;
            if records.len() == before {
                return Err(DbError::Empty { path: p.clone() });
            }
        }
        let mut report = ImportReport {
            read: records.len(),
            ..Default::default()
        };
        // Group by ecosystem (a record naming two ecosystems goes to both files).
        let mut by_eco: BTreeMap<String, Vec<Vulnerability>> = BTreeMap::new();
        for v in records {
            let ecos: BTreeSet<String> = v
                .affected
                .iter()
                .filter_map(|a| a.package.as_ref().map(|p| p.ecosystem.clone()))
                .collect();
            for e in ecos {
                by_eco.entry(e).or_default().push(v.clone());
            }
        }
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let mut meta = self.meta()?.unwrap_or_default();
        for (eco, new) in by_eco {
            let mut merged: BTreeMap<String, Vulnerability> =
                self.load(&eco)?.into_iter().map(|v| (v.id.clone(), v)).collect();
            for v in new {
                let newer = merged
                    .get(&v.id)
                    .is_none_or(|old| old.modified.as_deref().unwrap_or("") <= v.modified.as_deref().unwrap_or(""));
                if newer {
                    if merged.get(&v.id) != Some(&v) {
                        report.updated += 1;
                    }
                    merged.insert(v.id.clone(), v);
                }
            }
            let mut out = Vec::new();
            for v in merged.values() {
                serde_json::to_writer(&mut out, v).expect("OSV records serialise");
                out.push(b'\n');
            }
            self.write(&file_name(&eco), &out)?;
            meta.ecosystems.insert(eco.clone(), merged.len());
            report.ecosystems.insert(eco);
        }
        meta.withdrawn = 0;
        for eco in meta.ecosystems.keys().cloned().collect::<Vec<_>>() {
            meta.withdrawn += self.load(&eco)?.iter().filter(|v| v.withdrawn.is_some()).count();
        }
        meta.imported_unix = now_unix();
        meta.imported = kiln_oci::image::rfc3339(meta.imported_unix);
        for p in paths {
            meta.sources.push(p.display().to_string());
        }
        let keep = meta.sources.len().saturating_sub(20);
        meta.sources.drain(..keep);
        let mut b = serde_json::to_vec_pretty(&meta).expect("meta serialises");
        b.push(b'\n');
        self.write("meta.json", &b)?;
        Ok(report)
    }

    fn write(&self, name: &str, data: &[u8]) -> Result<(), DbError> {
        let dest = self.dir.join(name);
        let tmp = self.dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(data).and_then(|_| f.sync_all()).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &dest).map_err(io(&dest))
    }
}

/// Parses one OSV document: a record, or an array of records. Straight into the typed
/// records, never through a `serde_json::Value` tree, which can take 30 times a hostile
/// document's size (`[{},{},…]`) before the first field is checked.
pub fn parse_records(bytes: &[u8], path: &str) -> Result<Vec<Vulnerability>, DbError> {
    let bad = |reason: String| DbError::Malformed {
        path: path.to_string(),
        reason,
    };
    let is_array = bytes.iter().find(|c| !c.is_ascii_whitespace()) == Some(&b'[');
    if let Some(i) = oversized_record(bytes, is_array, MAX_RECORD_TOKENS) {
        return Err(bad(format!(
            "record {i} holds more than {MAX_RECORD_TOKENS} JSON values; refused (OSV records hold a few thousand)"
        )));
    }
    let parsed = match is_array {
        true => serde_json::from_slice::<Vec<Vulnerability>>(bytes),
        false => serde_json::from_slice::<Vulnerability>(bytes).map(|v| vec![v]),
    };
    let records = parsed.map_err(|e| match e.classify() {
        serde_json::error::Category::Data => bad(format!("not an OSV record: {e}")),
        _ => bad(format!("invalid JSON: {e}")),
    })?;
    for v in &records {
        v.validate().map_err(|e| bad(format!("record {}: {e}", v.id)))?;
    }
    Ok(records)
}

/// JSON values one record may hold (counted as strings, keys, containers and separators):
/// parsed, each costs up to a few hundred bytes (an empty `{}` in `affected` is a whole
/// entry), so this bounds a record's memory to tens of MiB whatever its size on disk. A
/// record listing 100,000 versions stays under it.
const MAX_RECORD_TOKENS: usize = 1 << 18;

/// The index of the first record in `bytes` (one record, or an array of them) holding more
/// than `max` values, found by one pass over the bytes before anything is parsed.
fn oversized_record(bytes: &[u8], is_array: bool, max: usize) -> Option<usize> {
    // How many containers enclose a record's fields: its own, and the array around it.
    let fields = if is_array { 2 } else { 1 };
    let (mut depth, mut count, mut index) = (0usize, 0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &c in bytes {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => {
                in_string = true;
                count += usize::from(depth >= fields);
            }
            b'{' | b'[' => {
                depth += 1;
                count += usize::from(depth > fields);
            }
            b',' => count += usize::from(depth >= fields),
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                if depth + 1 == fields {
                    index += 1;
                    count = 0;
                }
            }
            _ => {}
        }
        if count > max {
            return Some(index);
        }
    }
    None
}

fn read_path(p: &Path, out: &mut Vec<Vulnerability>) -> Result<(), DbError> {
    let md = std::fs::metadata(p).map_err(io(p))?;
    if md.is_dir() {
        let mut names: Vec<PathBuf> = std::fs::read_dir(p)
            .map_err(io(p))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        names.sort();
        for n in names {
            let is_dir = n.is_dir();
            let ext = n.extension().and_then(|e| e.to_str()).unwrap_or("");
            if is_dir || ext == "json" || ext == "zip" {
                read_path(&n, out)?;
            }
        }
        return Ok(());
    }
    let is_zip = {
        let mut magic = [0u8; 4];
        use std::io::Read;
        std::fs::File::open(p)
            .and_then(|mut f| f.read(&mut magic))
            .map_err(io(p))?;
        magic == *b"PK\x03\x04" || magic == *b"PK\x05\x06"
    };
    if is_zip {
        let mut z = zip::Archive::open(p)?;
        for i in 0..z.entries.len() {
            let name = z.entries[i].name.clone();
            if !name.ends_with(".json") {
                continue;
            }
            let data = z.read(i)?;
            out.extend(parse_records(&data, &format!("{}!{name}", p.display()))?);
        }
        return Ok(());
    }
    let data = std::fs::read(p).map_err(io(p))?;
    out.extend(parse_records(&data, &p.display().to_string())?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_merges_and_reports_bad_files() {
        let home = tempfile::tempdir().unwrap();
        let db = Db::at(home.path());
        assert!(db.meta().unwrap().is_none());
        let src = home.path().join("a.json");
        std::fs::write(
            &src,
            r#"{"id":"X-1","modified":"2024-01-01T00:00:00Z","affected":[{"package":{"ecosystem":"PyPI","name":"x"},"versions":["1.0"]}]}"#,
        )
        .unwrap();
        let r = db.import(std::slice::from_ref(&src)).unwrap();
        assert_eq!((r.read, r.updated), (1, 1));
        assert_eq!(db.load("PyPI").unwrap().len(), 1);
        assert_eq!(db.meta().unwrap().unwrap().ecosystems["PyPI"], 1);
        let bad = home.path().join("bad.json");
        std::fs::write(&bad, "{\"id\": \"X-2\", \"affected\": [}").unwrap();
        let e = db.import(&[bad]).unwrap_err().to_string();
        assert!(
            e.contains("bad.json") && e.contains("invalid JSON") && e.contains("line 1"),
            "{e}"
        );
        assert_eq!(db.load("PyPI").unwrap().len(), 1);
    }

    #[test]
    fn records_are_counted_one_by_one_before_parsing() {
        let rec = |n: usize| {
            format!(
                r#"{{"id":"X-{n}","details":"a, {{b}} [c] \" ,","affected":[{{"versions":[{}]}}]}}"#,
                vec!["\"1\""; n].join(",")
            )
        };
        // id, "X-n", details, its value, affected: 5 strings and 2 commas; `[`, `{`,
        // "versions" and `[` add 4; n versions add n strings and n - 1 commas.
        let tokens = |n: usize| 7 + 4 + 2 * n - 1;
        assert_eq!(oversized_record(rec(10).as_bytes(), false, tokens(10)), None);
        assert_eq!(oversized_record(rec(10).as_bytes(), false, tokens(10) - 1), Some(0));
        let array = format!("[{},{},{}]", rec(1), rec(10), rec(2));
        assert_eq!(oversized_record(array.as_bytes(), true, tokens(10)), None);
        assert_eq!(oversized_record(array.as_bytes(), true, tokens(10) - 1), Some(1));
        // The separators between records count for none of them.
        let many = format!("[{}]", vec![rec(1); 1000].join(","));
        assert_eq!(oversized_record(many.as_bytes(), true, tokens(1)), None);
    }

    #[test]
    fn a_record_of_a_million_empty_objects_is_refused_before_parsing() {
        let doc = format!(r#"{{"id":"X-1","affected":[{}]}}"#, vec!["{}"; 1 << 20].join(","));
        let e = parse_records(doc.as_bytes(), "bomb.json").unwrap_err().to_string();
        assert!(
            e.contains("bomb.json") && e.contains("record 0 holds more than 262144 JSON values"),
            "{e}"
        );
        // Typed parsing names where a record goes wrong.
        let e = parse_records(br#"[{"id":"X-1"},{"idx":1}]"#, "two.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not an OSV record: missing field `id` at line 1"), "{e}");
    }
}
