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

/// Parses one OSV document: a record, or an array of records.
pub fn parse_records(bytes: &[u8], path: &str) -> Result<Vec<Vulnerability>, DbError> {
    let bad = |reason: String| DbError::Malformed {
        path: path.to_string(),
        reason,
    };
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let items = match value {
        serde_json::Value::Array(a) => a,
        v => vec![v],
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let v: Vulnerability =
            serde_json::from_value(item).map_err(|e| bad(format!("record {i} is not an OSV record: {e}")))?;
        v.validate().map_err(|e| bad(format!("record {}: {e}", v.id)))?;
        out.push(v);
    }
    Ok(out)
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
}
