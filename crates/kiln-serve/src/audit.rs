//! The audit store: every answered admission, append-only. One small trait, with SQLite
//! as the embedded default (a file under `$KILN_HOME`, nothing to start). Migrations run
//! when the store opens; rows are never updated or deleted (triggers refuse it), and a
//! request answered twice (kube-apiserver retries keep the uid) is kept once.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

/// What the audit store keeps of one admission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRow {
    /// The request's uid.
    pub uid: String,
    /// `validate` or `mutate`.
    pub endpoint: String,
    /// When, in seconds since the epoch.
    pub at: i64,
    /// The object's namespace.
    pub namespace: String,
    /// The object's kind.
    pub kind: String,
    /// The object's name.
    pub name: String,
    /// `CREATE`, `UPDATE`…
    pub operation: String,
    /// Who asked.
    pub user: String,
    /// The answer.
    pub allowed: bool,
    /// `allowed`, `denied`, `error` (failed closed), `exempt` or `skipped`.
    pub result: String,
    /// The denial's message.
    pub message: String,
    /// The policy's hash.
    pub policy: String,
    /// Each container's image and the digest decided on.
    pub images: Vec<ImageRow>,
}

/// One container of an admission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRow {
    /// The container.
    pub container: String,
    /// Its image as written.
    pub image: String,
    /// The digest decided on (empty when the image could not be resolved).
    pub digest: String,
    /// The image's own decision.
    pub allowed: bool,
}

/// A failure of the audit store.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// SQLite failed.
    #[error("audit store (SQLite {path}): {source}")]
    Sqlite {
        /// The database file.
        path: String,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// PostgreSQL failed.
    #[error("audit store ({url}): {reason}")]
    Postgres {
        /// The database, without its password.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The database named is not one this server knows.
    #[error(
        "--database {0:?}: expected sqlite:PATH or postgres://USER@HOST:PORT/DB (hint: sqlite:/var/lib/kiln/serve.db)"
    )]
    Unknown(String),
}

/// Where admissions are kept.
pub trait AuditStore: Send + Sync {
    /// Appends one admission; `false` when a row for the same (uid, endpoint) exists.
    fn record(&self, row: &AuditRow) -> Result<bool, AuditError>;
    /// Admissions that decided `digest`, newest first.
    fn admissions_of(&self, digest: &str) -> Result<Vec<AuditRow>, AuditError>;
    /// The most recent admissions, newest first.
    fn recent(&self, limit: usize) -> Result<Vec<AuditRow>, AuditError>;
    /// Whether the store answers (`/readyz`).
    fn ping(&self) -> Result<(), AuditError>;
    /// Keeps a build record for `digest` (of `repository`, the image's name without tag)
    /// once: `false` when one exists (submitting is idempotent by digest; the first record
    /// stays).
    fn put_record(&self, digest: &str, repository: &str, at: i64, record: &str) -> Result<bool, AuditError>;
    /// Appends a vulnerability scan of `digest`: scans are facts of their day, so every
    /// one is kept and the newest is "the latest scan".
    fn put_scan(&self, digest: &str, at: i64, scan: &str) -> Result<(), AuditError>;
    /// The newest scan of `digest`, if any.
    fn latest_scan(&self, digest: &str) -> Result<Option<String>, AuditError>;
    /// The record submitted just before `digest`'s for the same repository (the previous
    /// release, for the web page's diff): its digest and record.
    fn previous_record(&self, digest: &str) -> Result<Option<(String, String)>, AuditError>;
    /// The build record of `digest`, if any.
    fn record_of(&self, digest: &str) -> Result<Option<String>, AuditError>;
    /// Digests of the most recent records, newest first.
    fn recent_records(&self, limit: usize) -> Result<Vec<(String, i64, String)>, AuditError>;
}

/// Opens `--database`: `sqlite:PATH` or `postgres://USER@HOST:PORT/DB`.
pub fn open(database: &str) -> Result<Box<dyn AuditStore>, AuditError> {
    if let Some(path) = database.strip_prefix("sqlite:") {
        return Ok(Box::new(Sqlite::open(Path::new(path))?));
    }
    if database.starts_with("postgres://") || database.starts_with("postgresql://") {
        return Ok(Box::new(crate::postgres::Postgres::open(database)?));
    }
    Err(AuditError::Unknown(database.to_string()))
}

/// Each migration, in order; `PRAGMA user_version` counts those applied.
const MIGRATIONS: [&str; 3] = [
    "
CREATE TABLE admissions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    uid TEXT NOT NULL, endpoint TEXT NOT NULL, at INTEGER NOT NULL,
    namespace TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL, operation TEXT NOT NULL,
    user TEXT NOT NULL, allowed INTEGER NOT NULL, result TEXT NOT NULL, message TEXT NOT NULL,
    policy TEXT NOT NULL, images TEXT NOT NULL,
    UNIQUE (uid, endpoint));
CREATE TABLE admission_images (
    admission INTEGER NOT NULL REFERENCES admissions(id), digest TEXT NOT NULL);
CREATE INDEX admission_images_digest ON admission_images(digest);
CREATE TRIGGER admissions_no_update BEFORE UPDATE ON admissions
    BEGIN SELECT RAISE(ABORT, 'the audit table is append-only'); END;
CREATE TRIGGER admissions_no_delete BEFORE DELETE ON admissions
    BEGIN SELECT RAISE(ABORT, 'the audit table is append-only'); END;
",
    "
CREATE TABLE records (
    digest TEXT PRIMARY KEY, at INTEGER NOT NULL, record TEXT NOT NULL);
CREATE TRIGGER records_no_update BEFORE UPDATE ON records
    BEGIN SELECT RAISE(ABORT, 'build records are append-only'); END;
",
    "
ALTER TABLE records ADD COLUMN repository TEXT;
CREATE INDEX records_repository ON records(repository);
CREATE TABLE scans (
    id INTEGER PRIMARY KEY AUTOINCREMENT, digest TEXT NOT NULL, at INTEGER NOT NULL, scan TEXT NOT NULL);
CREATE INDEX scans_digest ON scans(digest);
CREATE TRIGGER scans_no_update BEFORE UPDATE ON scans
    BEGIN SELECT RAISE(ABORT, 'scans are append-only'); END;
CREATE TRIGGER scans_no_delete BEFORE DELETE ON scans
    BEGIN SELECT RAISE(ABORT, 'scans are append-only'); END;
",
];

/// Copies the write-ahead log into the database once a second, on its own connection
/// (a passive checkpoint never blocks the writer). Under steady writes a passive checkpoint
/// never catches up with the log's end, so the log (and its shared-memory index, resident in
/// the server) would grow for ever: past [`WAL_RESTART_FRAMES`] a restarting checkpoint
/// waits for the current write, finishes the few frames left and starts the log over.
/// Ends when the database cannot be opened.
fn checkpoint_in_background(path: &Path) {
    let Ok(conn) = Connection::open(path) else { return };
    let _ = conn.busy_timeout(std::time::Duration::from_secs(2));
    let spawned = std::thread::Builder::new()
        .name("kiln-audit-checkpoint".into())
        .spawn(move || {
            loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
                let frames: i64 = conn
                    .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
                    .unwrap_or(0);
                if frames > WAL_RESTART_FRAMES {
                    let _ = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()));
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("audit store: no checkpoint thread ({e}); the write-ahead log grows until restart");
    }
}

/// Log frames (4 KiB pages) past which the log is started over: 64 MiB.
const WAL_RESTART_FRAMES: i64 = 16_384;

/// The embedded default.
pub struct Sqlite {
    path: String,
    conn: Mutex<Connection>,
}

impl Sqlite {
    /// Opens (creating) the database at `path` and migrates it.
    pub fn open(path: &Path) -> Result<Sqlite, AuditError> {
        let shown = path.display().to_string();
        let err = |source| AuditError::Sqlite {
            path: shown.clone(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(dir);
        }
        let mut conn = Connection::open(path).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(err)?;
        let have: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(err)?;
        for (i, m) in MIGRATIONS.iter().enumerate().skip(have.max(0) as usize) {
            let tx = conn.transaction().map_err(err)?;
            tx.execute_batch(m).map_err(err)?;
            tx.pragma_update(None, "user_version", i as i64 + 1).map_err(err)?;
            tx.commit().map_err(err)?;
        }
        // Commits in WAL mode with synchronous=NORMAL do not wait for the disk; checkpoints
        // do (an fsync). They run on a thread of their own, so no admission waits for one.
        conn.pragma_update(None, "wal_autocheckpoint", 0).map_err(err)?;
        checkpoint_in_background(path);
        Ok(Sqlite {
            path: shown,
            conn: Mutex::new(conn),
        })
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> AuditError + '_ {
        |source| AuditError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn rows(&self, sql: &str, arg: &dyn rusqlite::ToSql) -> Result<Vec<AuditRow>, AuditError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut st = conn.prepare_cached(sql).map_err(self.err())?;
        let rows = st.query_map([arg], |r| {
            let images: String = r.get(12)?;
            Ok(AuditRow {
                uid: r.get(0)?,
                endpoint: r.get(1)?,
                at: r.get(2)?,
                namespace: r.get(3)?,
                kind: r.get(4)?,
                name: r.get(5)?,
                operation: r.get(6)?,
                user: r.get(7)?,
                allowed: r.get(8)?,
                result: r.get(9)?,
                message: r.get(10)?,
                policy: r.get(11)?,
                images: serde_json::from_str::<Vec<StoredImage>>(&images)
                    .unwrap_or_default()
                    .into_iter()
                    .map(StoredImage::into_row)
                    .collect(),
            })
        });
        rows.and_then(|r| r.collect()).map_err(self.err())
    }
}

#[derive(Serialize, serde::Deserialize)]
struct StoredImage {
    container: String,
    image: String,
    digest: String,
    allowed: bool,
}

impl StoredImage {
    fn into_row(self) -> ImageRow {
        ImageRow {
            container: self.container,
            image: self.image,
            digest: self.digest,
            allowed: self.allowed,
        }
    }
}

const COLUMNS: &str =
    "uid, endpoint, at, namespace, kind, name, operation, user, allowed, result, message, policy, images";

impl AuditStore for Sqlite {
    fn record(&self, row: &AuditRow) -> Result<bool, AuditError> {
        let images: Vec<StoredImage> = row
            .images
            .iter()
            .map(|i| StoredImage {
                container: i.container.clone(),
                image: i.image.clone(),
                digest: i.digest.clone(),
                allowed: i.allowed,
            })
            .collect();
        let images = serde_json::to_string(&images).expect("rows serialise");
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn.transaction().map_err(self.err())?;
        let added = tx
            .execute(
                &format!("INSERT OR IGNORE INTO admissions ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"),
                params![
                    row.uid, row.endpoint, row.at, row.namespace, row.kind, row.name, row.operation, row.user,
                    row.allowed, row.result, row.message, row.policy, images
                ],
            )
            .map_err(self.err())?;
        if added == 1 {
            let id = tx.last_insert_rowid();
            let digests: std::collections::BTreeSet<&str> = row
                .images
                .iter()
                .map(|i| i.digest.as_str())
                .filter(|d| !d.is_empty())
                .collect();
            for d in digests {
                tx.execute(
                    "INSERT INTO admission_images (admission, digest) VALUES (?1, ?2)",
                    params![id, d],
                )
                .map_err(self.err())?;
            }
        }
        tx.commit().map_err(self.err())?;
        Ok(added == 1)
    }

    fn admissions_of(&self, digest: &str) -> Result<Vec<AuditRow>, AuditError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM admissions WHERE id IN (SELECT admission FROM admission_images WHERE digest = ?1) ORDER BY id DESC"
        );
        self.rows(&sql, &digest)
    }

    fn recent(&self, limit: usize) -> Result<Vec<AuditRow>, AuditError> {
        let sql = format!("SELECT {COLUMNS} FROM admissions ORDER BY id DESC LIMIT ?1");
        self.rows(&sql, &(limit as i64))
    }

    fn put_record(&self, digest: &str, repository: &str, at: i64, record: &str) -> Result<bool, AuditError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.execute(
            "INSERT OR IGNORE INTO records (digest, repository, at, record) VALUES (?1, ?2, ?3, ?4)",
            params![digest, repository, at, record],
        )
        .map(|n| n == 1)
        .map_err(self.err())
    }

    fn put_scan(&self, digest: &str, at: i64, scan: &str) -> Result<(), AuditError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.execute(
            "INSERT INTO scans (digest, at, scan) VALUES (?1, ?2, ?3)",
            params![digest, at, scan],
        )
        .map(|_| ())
        .map_err(self.err())
    }

    fn latest_scan(&self, digest: &str) -> Result<Option<String>, AuditError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.query_row(
            "SELECT scan FROM scans WHERE digest = ?1 ORDER BY id DESC LIMIT 1",
            [digest],
            |r| r.get(0),
        )
        .optional()
        .map_err(self.err())
    }

    fn previous_record(&self, digest: &str) -> Result<Option<(String, String)>, AuditError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.query_row(
            "SELECT p.digest, p.record FROM records r JOIN records p
               ON p.repository = r.repository AND p.rowid < r.rowid
             WHERE r.digest = ?1 ORDER BY p.rowid DESC LIMIT 1",
            [digest],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(self.err())
    }

    fn record_of(&self, digest: &str) -> Result<Option<String>, AuditError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.query_row("SELECT record FROM records WHERE digest = ?1", [digest], |r| r.get(0))
            .optional()
            .map_err(self.err())
    }

    fn recent_records(&self, limit: usize) -> Result<Vec<(String, i64, String)>, AuditError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut st = conn
            .prepare_cached("SELECT digest, at, record FROM records ORDER BY rowid DESC LIMIT ?1")
            .map_err(self.err())?;
        let rows = st.query_map([limit as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)));
        rows.and_then(|r| r.collect()).map_err(self.err())
    }

    fn ping(&self) -> Result<(), AuditError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.query_row("SELECT 1", [], |_| Ok(()))
            .optional()
            .map(|_| ())
            .map_err(self.err())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(uid: &str, digest: &str) -> AuditRow {
        AuditRow {
            uid: uid.into(),
            endpoint: "validate".into(),
            at: 1,
            namespace: "default".into(),
            kind: "Pod".into(),
            name: "web".into(),
            operation: "CREATE".into(),
            user: "admin".into(),
            allowed: false,
            result: "denied".into(),
            message: "no".into(),
            policy: "p".into(),
            images: vec![ImageRow {
                container: "app".into(),
                image: "a:1".into(),
                digest: digest.into(),
                allowed: false,
            }],
        }
    }

    #[test]
    fn append_only_once_per_request_and_found_by_digest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/serve.db");
        let s = Sqlite::open(&path).unwrap();
        assert!(s.record(&sample("u1", "sha256:aa")).unwrap());
        assert!(!s.record(&sample("u1", "sha256:aa")).unwrap(), "a retry is kept once");
        assert!(s.record(&sample("u2", "sha256:bb")).unwrap());
        let found = s.admissions_of("sha256:aa").unwrap();
        assert_eq!(found, vec![sample("u1", "sha256:aa")]);
        assert_eq!(s.recent(10).unwrap().len(), 2);
        drop(s);
        // Reopening migrates nothing twice; rows cannot be changed or removed.
        let s = Sqlite::open(&path).unwrap();
        let conn = s.conn.lock().unwrap();
        let e = conn.execute("DELETE FROM admissions", []).unwrap_err();
        assert!(e.to_string().contains("append-only"), "{e}");
        let e = conn.execute("UPDATE admissions SET allowed = 1", []).unwrap_err();
        assert!(e.to_string().contains("append-only"), "{e}");
    }

    #[test]
    fn records_scans_and_the_previous_release() {
        let dir = tempfile::tempdir().unwrap();
        let s = Sqlite::open(&dir.path().join("serve.db")).unwrap();
        assert!(s.put_record("sha256:a1", "reg/app", 1, "{\"v\":1}").unwrap());
        assert!(s.put_record("sha256:b1", "reg/other", 2, "{}").unwrap());
        assert!(s.put_record("sha256:a2", "reg/app", 2, "{\"v\":2}").unwrap());
        assert!(
            !s.put_record("sha256:a2", "reg/app", 3, "{\"v\":3}").unwrap(),
            "idempotent"
        );
        assert_eq!(
            s.previous_record("sha256:a2").unwrap(),
            Some(("sha256:a1".to_string(), "{\"v\":1}".to_string()))
        );
        assert_eq!(s.previous_record("sha256:a1").unwrap(), None);
        assert_eq!(s.latest_scan("sha256:a1").unwrap(), None);
        s.put_scan("sha256:a1", 5, "old").unwrap();
        s.put_scan("sha256:a1", 5, "new").unwrap();
        assert_eq!(s.latest_scan("sha256:a1").unwrap().as_deref(), Some("new"));
        let conn = s.conn.lock().unwrap();
        let e = conn.execute("DELETE FROM scans", []).unwrap_err();
        assert!(e.to_string().contains("append-only"), "{e}");
    }
}
