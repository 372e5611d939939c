//! The audit store on PostgreSQL (`--database postgres://USER@HOST:PORT/DB`), for several
//! replicas behind one Service. The same tables as SQLite; migrations run under an
//! advisory lock so replicas starting together migrate once; each admission is one
//! statement (the row and its digests together), so a replica killed mid-request leaves
//! a whole row or none; `(uid, endpoint)` is unique, so a retried request is kept once.
//! The connection is plain TCP (`NoTls`): run the database on a trusted network or a
//! sidecar.

use std::sync::{Arc, Mutex};

use tokio_postgres::{Client, NoTls};

use crate::audit::{AuditError, AuditRow, AuditStore, ImageRow};

/// Each migration, in order; `kiln_schema` holds how many were applied.
const MIGRATIONS: [&str; 3] = [
    "
CREATE TABLE admissions (
    id BIGSERIAL PRIMARY KEY,
    uid TEXT NOT NULL, endpoint TEXT NOT NULL, at BIGINT NOT NULL,
    namespace TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL, operation TEXT NOT NULL,
    username TEXT NOT NULL, allowed BOOLEAN NOT NULL, result TEXT NOT NULL, message TEXT NOT NULL,
    policy TEXT NOT NULL, images TEXT NOT NULL,
    UNIQUE (uid, endpoint));
CREATE TABLE admission_images (
    admission BIGINT NOT NULL REFERENCES admissions(id), digest TEXT NOT NULL);
CREATE INDEX admission_images_digest ON admission_images(digest);
CREATE FUNCTION kiln_append_only() RETURNS trigger LANGUAGE plpgsql AS
    $$ BEGIN RAISE EXCEPTION 'the audit table is append-only'; END $$;
CREATE TRIGGER admissions_append_only BEFORE UPDATE OR DELETE ON admissions
    FOR EACH ROW EXECUTE FUNCTION kiln_append_only();
",
    "
CREATE TABLE records (digest TEXT PRIMARY KEY, at BIGINT NOT NULL, record TEXT NOT NULL);
CREATE TRIGGER records_append_only BEFORE UPDATE ON records
    FOR EACH ROW EXECUTE FUNCTION kiln_append_only();
",
    "
ALTER TABLE records ADD COLUMN repository TEXT;
ALTER TABLE records ADD COLUMN seq BIGSERIAL;
CREATE INDEX records_repository ON records(repository);
CREATE TABLE scans (id BIGSERIAL PRIMARY KEY, digest TEXT NOT NULL, at BIGINT NOT NULL, scan TEXT NOT NULL);
CREATE INDEX scans_digest ON scans(digest);
CREATE TRIGGER scans_append_only BEFORE UPDATE OR DELETE ON scans
    FOR EACH ROW EXECUTE FUNCTION kiln_append_only();
",
];

const COLUMNS: &str =
    "uid, endpoint, at, namespace, kind, name, operation, username, allowed, result, message, policy, images";

/// The store on PostgreSQL.
pub struct Postgres {
    url: String,
    shown: String,
    rt: tokio::runtime::Runtime,
    client: Mutex<Arc<Client>>,
}

impl Postgres {
    /// Connects to `url` and migrates.
    pub fn open(url: &str) -> Result<Postgres, AuditError> {
        // Never print a password.
        let shown = match url.split_once('@') {
            Some((_, host)) => format!("postgres://…@{host}"),
            None => url.to_string(),
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("kiln-postgres")
            .enable_all()
            .build()
            .map_err(|e| AuditError::Postgres {
                url: shown.clone(),
                reason: e.to_string(),
            })?;
        let client = rt.block_on(connect(url)).map_err(|e| AuditError::Postgres {
            url: shown.clone(),
            reason: e,
        })?;
        let pg = Postgres {
            url: url.to_string(),
            shown,
            rt,
            client: Mutex::new(Arc::new(client)),
        };
        pg.migrate()?;
        Ok(pg)
    }

    fn err(&self, e: impl std::fmt::Display) -> AuditError {
        AuditError::Postgres {
            url: self.shown.clone(),
            reason: e.to_string(),
        }
    }

    /// The client, connecting again if the connection was lost.
    fn client(&self) -> Result<Arc<Client>, AuditError> {
        let mut c = self.client.lock().unwrap_or_else(|p| p.into_inner());
        if c.is_closed() {
            *c = Arc::new(self.rt.block_on(connect(&self.url)).map_err(|e| self.err(e))?);
        }
        Ok(c.clone())
    }

    fn migrate(&self) -> Result<(), AuditError> {
        let c = self.client()?;
        self.rt
            .block_on(async {
                c.batch_execute("SELECT pg_advisory_lock(7348101)").await?;
                let r = async {
                    c.batch_execute("CREATE TABLE IF NOT EXISTS kiln_schema (version INTEGER NOT NULL)")
                        .await?;
                    let have: i32 = match c.query_opt("SELECT version FROM kiln_schema", &[]).await? {
                        Some(row) => row.get(0),
                        None => {
                            c.batch_execute("INSERT INTO kiln_schema VALUES (0)").await?;
                            0
                        }
                    };
                    for (i, m) in MIGRATIONS.iter().enumerate().skip(have.max(0) as usize) {
                        let version = i as i32 + 1;
                        let sql = format!("BEGIN; {m}; UPDATE kiln_schema SET version = {version}; COMMIT;");
                        c.batch_execute(&sql).await?;
                    }
                    Ok::<(), tokio_postgres::Error>(())
                }
                .await;
                c.batch_execute("SELECT pg_advisory_unlock(7348101)").await?;
                r
            })
            .map_err(|e| self.err(e))
    }

    fn rows(&self, sql: &str, arg: &(dyn tokio_postgres::types::ToSql + Sync)) -> Result<Vec<AuditRow>, AuditError> {
        let c = self.client()?;
        let rows = self.rt.block_on(c.query(sql, &[arg])).map_err(|e| self.err(e))?;
        Ok(rows
            .iter()
            .map(|r| {
                let images: String = r.get(12);
                AuditRow {
                    uid: r.get(0),
                    endpoint: r.get(1),
                    at: r.get(2),
                    namespace: r.get(3),
                    kind: r.get(4),
                    name: r.get(5),
                    operation: r.get(6),
                    user: r.get(7),
                    allowed: r.get(8),
                    result: r.get(9),
                    message: r.get(10),
                    policy: r.get(11),
                    images: serde_json::from_str::<Vec<ImageRow>>(&images).unwrap_or_default(),
                }
            })
            .collect())
    }
}

async fn connect(url: &str) -> Result<Client, String> {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            eprintln!("kiln serve: PostgreSQL connection: {e}");
        }
    });
    Ok(client)
}

impl AuditStore for Postgres {
    fn record(&self, row: &AuditRow) -> Result<bool, AuditError> {
        let images = serde_json::to_string(&row.images).expect("rows serialise");
        let mut digests: Vec<&str> = row
            .images
            .iter()
            .map(|i| i.digest.as_str())
            .filter(|d| !d.is_empty())
            .collect();
        digests.sort_unstable();
        digests.dedup();
        let sql = format!(
            "WITH a AS (INSERT INTO admissions ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                        ON CONFLICT (uid, endpoint) DO NOTHING RETURNING id),
                  i AS (INSERT INTO admission_images (admission, digest) SELECT a.id, d FROM a, unnest($14::text[]) AS d)
             SELECT count(*) FROM a"
        );
        let c = self.client()?;
        let n: i64 = self
            .rt
            .block_on(c.query_one(
                &sql,
                &[
                    &row.uid,
                    &row.endpoint,
                    &row.at,
                    &row.namespace,
                    &row.kind,
                    &row.name,
                    &row.operation,
                    &row.user,
                    &row.allowed,
                    &row.result,
                    &row.message,
                    &row.policy,
                    &images,
                    &digests,
                ],
            ))
            .map_err(|e| self.err(e))?
            .get(0);
        Ok(n == 1)
    }

    fn admissions_of(&self, digest: &str) -> Result<Vec<AuditRow>, AuditError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM admissions WHERE id IN (SELECT admission FROM admission_images WHERE digest = $1) ORDER BY id DESC"
        );
        self.rows(&sql, &digest)
    }

    fn recent(&self, limit: usize) -> Result<Vec<AuditRow>, AuditError> {
        let sql = format!("SELECT {COLUMNS} FROM admissions ORDER BY id DESC LIMIT $1");
        self.rows(&sql, &(limit as i64))
    }

    fn ping(&self) -> Result<(), AuditError> {
        let c = self.client()?;
        self.rt.block_on(c.batch_execute("SELECT 1")).map_err(|e| self.err(e))
    }

    fn put_record(&self, digest: &str, repository: &str, at: i64, record: &str) -> Result<bool, AuditError> {
        let c = self.client()?;
        let n = self
            .rt
            .block_on(c.execute(
                "INSERT INTO records (digest, repository, at, record) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (digest) DO NOTHING",
                &[&digest, &repository, &at, &record],
            ))
            .map_err(|e| self.err(e))?;
        Ok(n == 1)
    }

    fn put_scan(&self, digest: &str, at: i64, scan: &str) -> Result<(), AuditError> {
        let c = self.client()?;
        self.rt
            .block_on(c.execute(
                "INSERT INTO scans (digest, at, scan) VALUES ($1, $2, $3)",
                &[&digest, &at, &scan],
            ))
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    fn latest_scan(&self, digest: &str) -> Result<Option<String>, AuditError> {
        let c = self.client()?;
        let row = self
            .rt
            .block_on(c.query_opt(
                "SELECT scan FROM scans WHERE digest = $1 ORDER BY id DESC LIMIT 1",
                &[&digest],
            ))
            .map_err(|e| self.err(e))?;
        Ok(row.map(|r| r.get(0)))
    }

    fn previous_record(&self, digest: &str) -> Result<Option<(String, String)>, AuditError> {
        let c = self.client()?;
        let row = self
            .rt
            .block_on(c.query_opt(
                "SELECT p.digest, p.record FROM records r JOIN records p
                   ON p.repository = r.repository AND p.seq < r.seq
                 WHERE r.digest = $1 ORDER BY p.seq DESC LIMIT 1",
                &[&digest],
            ))
            .map_err(|e| self.err(e))?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    fn record_of(&self, digest: &str) -> Result<Option<String>, AuditError> {
        let c = self.client()?;
        let row = self
            .rt
            .block_on(c.query_opt("SELECT record FROM records WHERE digest = $1", &[&digest]))
            .map_err(|e| self.err(e))?;
        Ok(row.map(|r| r.get(0)))
    }

    fn recent_records(&self, limit: usize) -> Result<Vec<(String, i64, String)>, AuditError> {
        let c = self.client()?;
        let rows = self
            .rt
            .block_on(c.query(
                "SELECT digest, at, record FROM records ORDER BY at DESC, digest LIMIT $1",
                &[&(limit as i64)],
            ))
            .map_err(|e| self.err(e))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
    }
}
