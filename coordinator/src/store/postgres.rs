//! The PostgreSQL store: the same contract as the embedded store
//! ([`super::redb::RedbStore`]) on a database that can be replicated and
//! backed up with PostgreSQL's own tools (docs/operations.md).
//!
//! - **Schema.** Versioned migrations are embedded in the binary
//!   ([`MIGRATIONS`]) and applied by `vigil-coordinator migrate`
//!   ([`migrate`]) under an advisory lock, each in its own transaction and
//!   recorded in `vigil_schema`. [`PgStore::open`] refuses a database whose
//!   schema is behind or ahead of this binary's, naming both versions.
//! - **Durability.** A [`Commit`] is one transaction, committed with
//!   PostgreSQL's default `synchronous_commit`, and its rows of each kind go
//!   as arrays in one statement: when it returns `Ok` the
//!   batch's receipt, its disclosures, its log entries and its checkpoint
//!   are in the write-ahead log on disk (and on a synchronous standby, if
//!   the cluster has one). Acknowledgements alone are committed with
//!   `synchronous_commit = off`, as the embedded store commits them without
//!   an fsync: a crash may lose the last fraction of a second of them, and
//!   those disclosures are delivered again (nodes keep a disclosure id
//!   once).
//! - **Bulk ingest.** A batch's records arrive by binary `COPY` straight
//!   into their table, once the ones they replace are deleted; its subjects
//!   by `COPY` into a temporary table, merged from there in one statement.
//! - **Connections.** Two connections: one writer (commits, one at a
//!   time) and one reader (reads, with statements prepared once, and
//!   acknowledgements); both on a private one-thread runtime, so that the synchronous [`Store`] methods can be
//!   called from any thread. TLS to the database, verified against a
//!   configured CA, when `[store] tls_ca` is set; the password is read from
//!   a file. A lost connection fails the call that was using it with a
//!   [`StoreError`] (a batch is then refused and the engine rebuilt from
//!   the store); the next call connects again.
//!
//! - **The lease.** Several coordinators may share the database; the one
//!   holding a session advisory lock on a third connection is the active
//!   one ([`Store::take_lease`]). Taking it bumps `vigil_lease.generation`,
//!   and every commit checks that generation under a share lock in its own
//!   transaction, so a coordinator that lost the lease without noticing
//!   cannot write. The lease session's TCP keepalives let the database
//!   free the lock of a coordinator whose machine vanished within about
//!   11 s.
//!
//! # Layout
//! - `postgres/0001_initial.sql`: the first schema.
//! - `postgres/0002_lease.sql`: the lease's fencing row.
//! - [`PgSettings`]: where the database is.
//! - [`migrate`], [`schema_version`], [`check`]: the migrations, and the
//!   schema check `check-config` runs.
//! - [`PgStore`]: the store.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use tokio_postgres::{Client, NoTls};

use vigil_proto::kinds::KindSet;

use super::{
    ActiveRow, Commit, RecordRow, Ref, SenderState, Store, StoreError, StoreRead, StoredToken, SubjectRow, pack_tokens,
    unpack_tokens,
};

/// The schema versions this binary knows: (version, name, SQL).
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "initial schema", include_str!("postgres/0001_initial.sql")),
    (2, "the active coordinator's lease", include_str!("postgres/0002_lease.sql")),
];

/// The schema version this binary reads and writes.
pub fn latest_version() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// The store format (as in the embedded store) kept in `vigil_meta`.
const FORMAT_KEY: &str = "store_format";
/// Advisory-lock key of migrations ("vigilmig" as bytes).
const MIGRATION_LOCK: i64 = 0x7669_6769_6c6d_6967;
/// Advisory-lock key of the active coordinator's lease ("vigilact").
const LEASE_LOCK: i64 = 0x7669_6769_6c61_6374;
/// How long the lease check may take before the lease counts as lost.
const LEASE_CHECK_TIMEOUT: Duration = Duration::from_secs(3);
/// Rows of a batch at or above which records and subjects go by `COPY`.
const COPY_AT: usize = 64;

/// Where the database is and how to reach it (`[store]` in
/// `coordinator.toml`).
#[derive(Debug, Clone)]
pub struct PgSettings {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Database name.
    pub dbname: String,
    /// Role to connect as.
    pub user: String,
    /// File holding the role's password (first line), if it has one.
    pub password_file: Option<PathBuf>,
    /// CA certificate (PEM) that the database server's certificate must
    /// chain to; set, the connection is TLS and must verify.
    pub tls_ca: Option<PathBuf>,
    /// How long to wait for a connection.
    pub connect_timeout: Duration,
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

/// A database error with its SQLSTATE and message (never a parameter
/// value: statements carry opaque references and tokens only as binds).
fn db(what: &str) -> impl Fn(tokio_postgres::Error) -> StoreError + '_ {
    move |e| {
        let detail = match e.as_db_error() {
            Some(d) => format!("{} ({})", d.message(), d.code().code()),
            None => e.to_string(),
        };
        StoreError(format!("postgres: {what}: {detail}"))
    }
}

fn to_ref(b: &[u8]) -> Result<Ref, StoreError> {
    b.try_into().map_err(|_| err("postgres: corrupt reference"))
}

/// Runs a future to completion on this thread. Client futures only talk to
/// the connection task over channels, so they need no runtime of their own
/// here; the connection itself runs on the store's runtime.
fn block<F: Future>(f: F) -> F::Output {
    futures_executor::block_on(f)
}

/// A private runtime for the connections, and a connected client.
struct Conn {
    /// Where the connection tasks run.
    rt: tokio::runtime::Handle,
    /// The runtime itself, only ever taken by `drop`.
    owned: Option<tokio::runtime::Runtime>,
}

impl Drop for Conn {
    /// Shuts the runtime down without waiting: the store may be dropped on
    /// an async thread (the server's last reference), where a blocking
    /// drop panics. The connections end with it.
    fn drop(&mut self) {
        if let Some(rt) = self.owned.take() {
            rt.shutdown_background();
        }
    }
}

impl Conn {
    fn new() -> Result<Conn, StoreError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("vigil-postgres")
            .enable_all()
            .build()
            .map_err(|e| err(format!("postgres: runtime: {e}")))?;
        Ok(Conn { rt: rt.handle().clone(), owned: Some(rt) })
    }

    /// Connects on the store's runtime; the connection task logs when the
    /// connection ends with an error.
    fn connect(&self, s: &PgSettings, role: &'static str) -> Result<Client, StoreError> {
        let mut cfg = tokio_postgres::Config::new();
        cfg.host(&s.host)
            .port(s.port)
            .dbname(&s.dbname)
            .user(&s.user)
            .application_name(format!("vigil-coordinator-{role}"))
            .connect_timeout(s.connect_timeout);
        if let Some(p) = &s.password_file {
            let text = std::fs::read_to_string(p)
                .map_err(|e| err(format!("postgres: cannot read password file {}: {e}", p.display())))?;
            let pw = text.lines().next().unwrap_or("").trim_end();
            if pw.is_empty() {
                return Err(err(format!("postgres: password file {} is empty", p.display())));
            }
            cfg.password(pw);
        }
        let where_ = format!("{}:{}/{}", s.host, s.port, s.dbname);
        let (tx, rx) = std::sync::mpsc::channel();
        match &s.tls_ca {
            Some(ca) => {
                cfg.ssl_mode(tokio_postgres::config::SslMode::Require);
                let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(ca)?);
                self.rt.spawn(run_connection(cfg, tls, role, tx));
            }
            None => {
                self.rt.spawn(run_connection(cfg, NoTls, role, tx));
            }
        }
        rx.recv()
            .map_err(|_| err("postgres: connection task ended"))?
            .map_err(|e| err(format!("postgres: cannot connect to {where_}: {e}")))
    }
}

/// Connects, hands the client over, then drives the connection until it
/// ends (logging why, if with an error).
async fn run_connection<T>(
    cfg: tokio_postgres::Config,
    tls: T,
    role: &'static str,
    tx: std::sync::mpsc::Sender<Result<Client, tokio_postgres::Error>>,
) where
    T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>,
    T::Stream: Send + 'static,
{
    match cfg.connect(tls).await {
        Ok((client, connection)) => {
            let _ = tx.send(Ok(client));
            if let Err(e) = connection.await {
                tracing::error!(error = %e, role, "database connection ended");
            }
        }
        Err(e) => {
            let _ = tx.send(Err(e));
        }
    }
}

fn tls_config(ca: &std::path::Path) -> Result<rustls::ClientConfig, StoreError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca)
        .map_err(|e| err(format!("postgres: cannot read tls_ca {}: {e}", ca.display())))?;
    for c in certs {
        let c = c.map_err(|e| err(format!("postgres: tls_ca {}: {e}", ca.display())))?;
        roots.add(c).map_err(|e| err(format!("postgres: tls_ca {}: {e}", ca.display())))?;
    }
    if roots.is_empty() {
        return Err(err(format!("postgres: tls_ca {} holds no certificate", ca.display())));
    }
    Ok(rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth())
}

/// The schema version of the database (0 when no migration has run).
pub fn schema_version(client: &Client) -> Result<i32, StoreError> {
    block(async {
        let exists = client
            .query_one("SELECT to_regclass('vigil_schema') IS NOT NULL", &[])
            .await
            .map_err(db("reading the schema version"))?
            .get::<_, bool>(0);
        if !exists {
            return Ok(0);
        }
        let row = client
            .query_one("SELECT coalesce(max(version), 0) FROM vigil_schema", &[])
            .await
            .map_err(db("reading the schema version"))?;
        Ok(row.get::<_, i32>(0))
    })
}

/// Applies every migration the database lacks, in order, each in its own
/// transaction under an advisory lock (two coordinators migrating at once
/// wait for each other). Returns the versions applied.
pub fn migrate(s: &PgSettings) -> Result<Vec<(i32, &'static str)>, StoreError> {
    let conn = Conn::new()?;
    let mut client = conn.connect(s, "migrate")?;
    block(async {
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS vigil_schema (
                     version    integer PRIMARY KEY,
                     name       text NOT NULL,
                     applied_at timestamptz NOT NULL DEFAULT now()
                 )",
            )
            .await
            .map_err(db("creating vigil_schema"))?;
        let mut applied = Vec::new();
        for (version, name, sql) in MIGRATIONS {
            let tx = client.transaction().await.map_err(db("starting a migration"))?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.map_err(db("migration lock"))?;
            let done = tx
                .query_opt("SELECT 1 FROM vigil_schema WHERE version = $1", &[version])
                .await
                .map_err(db("reading vigil_schema"))?
                .is_some();
            if done {
                continue;
            }
            tx.batch_execute(sql).await.map_err(db(&format!("migration {version} ({name})")))?;
            tx.execute("INSERT INTO vigil_schema (version, name) VALUES ($1, $2)", &[version, name])
                .await
                .map_err(db("recording a migration"))?;
            tx.commit().await.map_err(db(&format!("committing migration {version}")))?;
            applied.push((*version, *name));
        }
        Ok(applied)
    })
}

/// Refuses a database whose schema is not this binary's, naming both
/// versions and what to do.
fn check_schema(client: &Client, s: &PgSettings) -> Result<(), StoreError> {
    let version = schema_version(client)?;
    let latest = latest_version();
    if version < latest {
        return Err(err(format!(
            "postgres: the database {}/{} has schema version {version}; this coordinator needs {latest}: \
             run `vigil-coordinator migrate --config <file>` first",
            s.host, s.dbname
        )));
    }
    if version > latest {
        return Err(err(format!(
            "postgres: the database {}/{} has schema version {version}, newer than this coordinator's \
             {latest}: run the newer coordinator",
            s.host, s.dbname
        )));
    }
    Ok(())
}

/// Connects and checks the schema, writing nothing (`check-config`).
pub fn check(s: &PgSettings) -> Result<(), StoreError> {
    let conn = Conn::new()?;
    check_schema(&conn.connect(s, "check")?, s)
}

/// A connection whose statements are prepared once.
struct Prepared {
    client: Client,
    cache: Mutex<std::collections::HashMap<&'static str, tokio_postgres::Statement>>,
}

impl Prepared {
    fn new(client: Client) -> Prepared {
        Prepared { client, cache: Mutex::new(std::collections::HashMap::new()) }
    }

    fn stmt(&self, sql: &'static str) -> Result<tokio_postgres::Statement, StoreError> {
        if let Some(s) = self.cache.lock().map_err(|_| err("postgres: statement cache poisoned"))?.get(sql) {
            return Ok(s.clone());
        }
        let s = block(self.client.prepare(sql)).map_err(db("preparing a statement"))?;
        self.cache.lock().map_err(|_| err("postgres: statement cache poisoned"))?.insert(sql, s.clone());
        Ok(s)
    }
}

/// The PostgreSQL-backed store.
pub struct PgStore {
    /// Where the database is, to connect again.
    settings: PgSettings,
    /// Commits, one at a time.
    write: Mutex<Client>,
    /// Reads, and acknowledgements (single statements, committed with
    /// `synchronous_commit` off for this connection only).
    read: std::sync::RwLock<std::sync::Arc<Prepared>>,
    /// The lease connection, whose session holds the advisory lock while
    /// this coordinator is the active one (kept between attempts).
    lease: Mutex<Option<std::sync::Arc<Client>>>,
    /// The lease generation this coordinator took; 0 while it holds none.
    /// Every commit checks it against `vigil_lease` in its transaction.
    generation: std::sync::atomic::AtomicI64,
    /// The connections' runtime (dropped last).
    conn: Conn,
}

/// Sets up a new writer connection: its staging table.
fn setup_writer(write: &Client) -> Result<(), StoreError> {
    block(write.batch_execute(
        "CREATE TEMPORARY TABLE subjects_in (force text, pseudonym bytea, tokens bytea) ON COMMIT DELETE ROWS",
    ))
    .map_err(db("creating staging tables"))
}

/// Sets up a new reader connection: its acknowledgements do not wait for
/// the disk.
fn setup_reader(read: Client) -> Result<Prepared, StoreError> {
    block(read.batch_execute("SET synchronous_commit TO OFF")).map_err(db("setting up the reader"))?;
    Ok(Prepared::new(read))
}

impl PgStore {
    /// Connects and checks that the schema is this binary's (run
    /// `vigil-coordinator migrate` first) and the store format is 4.
    pub fn open(s: &PgSettings) -> Result<PgStore, StoreError> {
        let conn = Conn::new()?;
        let read = conn.connect(s, "reader")?;
        check_schema(&read, s)?;
        let write = conn.connect(s, "writer")?;
        setup_writer(&write)?;
        block(async {
            let format = write
                .query_opt("SELECT value FROM vigil_meta WHERE key = $1", &[&FORMAT_KEY])
                .await
                .map_err(db("reading the store format"))?
                .map(|r| r.get::<_, Vec<u8>>(0));
            let want = super::redb::FORMAT.to_be_bytes().to_vec();
            match format {
                Some(f) if f == want => Ok(()),
                Some(_) => Err(err(format!(
                    "postgres: the database {}/{} holds another store format; this coordinator reads format {}",
                    s.host,
                    s.dbname,
                    super::redb::FORMAT
                ))),
                None => {
                    write
                        .execute(
                            "INSERT INTO vigil_meta (key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                            &[&FORMAT_KEY, &want],
                        )
                        .await
                        .map_err(db("writing the store format"))?;
                    Ok(())
                }
            }
        })?;
        Ok(PgStore {
            settings: s.clone(),
            write: Mutex::new(write),
            read: std::sync::RwLock::new(std::sync::Arc::new(setup_reader(read)?)),
            lease: Mutex::new(None),
            generation: std::sync::atomic::AtomicI64::new(0),
            conn,
        })
    }

    /// Runs `f` on the connections' runtime, waiting at most `timeout` for
    /// it (`None` when it took longer).
    fn bounded<T: Send + 'static>(&self, timeout: Duration, f: impl Future<Output = T> + Send + 'static) -> Option<T> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.conn.rt.spawn(async move {
            if let Ok(v) = tokio::time::timeout(timeout, f).await {
                let _ = tx.send(v);
            }
        });
        rx.recv().ok()
    }

    /// Forgets the lease: commits are refused from now on, and dropping
    /// the lease connection ends its session, which releases the lock.
    fn lose_lease(&self, slot: &mut Option<std::sync::Arc<Client>>) {
        self.generation.store(0, std::sync::atomic::Ordering::SeqCst);
        *slot = None;
    }

    /// The writer connection, connected again if it was lost (the database
    /// restarted, a failover): the call that saw it go failed, the next one
    /// finds a new connection.
    fn writer(&self) -> Result<std::sync::MutexGuard<'_, Client>, StoreError> {
        let mut w = self.write.lock().map_err(|_| err("postgres: writer lock poisoned"))?;
        if w.is_closed() {
            tracing::warn!(role = "writer", "the database connection was lost; connecting again");
            let c = self.conn.connect(&self.settings, "writer")?;
            setup_writer(&c)?;
            *w = c;
        }
        Ok(w)
    }

    /// The reader connection, connected again (with its statements prepared
    /// afresh) if it was lost.
    fn reader(&self) -> Result<std::sync::Arc<Prepared>, StoreError> {
        {
            let r = self.read.read().map_err(|_| err("postgres: reader lock poisoned"))?;
            if !r.client.is_closed() {
                return Ok(r.clone());
            }
        }
        let mut w = self.read.write().map_err(|_| err("postgres: reader lock poisoned"))?;
        if w.client.is_closed() {
            tracing::warn!(role = "reader", "the database connection was lost; connecting again");
            *w = std::sync::Arc::new(setup_reader(self.conn.connect(&self.settings, "reader")?)?);
        }
        Ok(w.clone())
    }
}

/// Keeps the last of each key (a batch may name one twice).
fn last_of<'a, T, K: std::hash::Hash + Eq>(rows: &'a [T], key: impl Fn(&'a T) -> K) -> Vec<&'a T> {
    let mut at: std::collections::HashMap<K, usize> = std::collections::HashMap::with_capacity(rows.len());
    for (i, r) in rows.iter().enumerate() {
        at.insert(key(r), i);
    }
    let mut keep: Vec<usize> = at.into_values().collect();
    keep.sort_unstable();
    keep.into_iter().map(|i| &rows[i]).collect()
}

/// PostgreSQL's binary `COPY` stream, written here in chunks of about
/// [`COPY_CHUNK`] bytes (tokio-postgres' own writer sends a message every
/// 4 KiB, each a wake-up of the connection task).
struct CopyBuf {
    buf: Vec<u8>,
}

/// Bytes per `COPY` message sent.
const COPY_CHUNK: usize = 1 << 20;

impl CopyBuf {
    fn new() -> CopyBuf {
        let mut buf = Vec::with_capacity(COPY_CHUNK + 4096);
        buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        buf.extend_from_slice(&0i32.to_be_bytes()); // flags
        buf.extend_from_slice(&0i32.to_be_bytes()); // header extension
        CopyBuf { buf }
    }

    /// Adds a row of non-null fields in their binary form (text and bytea
    /// are their bytes).
    fn row(&mut self, fields: &[&[u8]]) -> Result<(), StoreError> {
        self.buf.extend_from_slice(&(fields.len() as i16).to_be_bytes());
        for f in fields {
            let n = i32::try_from(f.len()).map_err(|_| err("postgres: a field too large to copy"))?;
            self.buf.extend_from_slice(&n.to_be_bytes());
            self.buf.extend_from_slice(f);
        }
        Ok(())
    }

    fn full(&self) -> bool {
        self.buf.len() >= COPY_CHUNK
    }

    fn take(&mut self) -> bytes::Bytes {
        bytes::Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(COPY_CHUNK + 4096)))
    }
}

/// Copies `rows` into `sql` (a `COPY ... FROM STDIN BINARY`).
async fn copy_rows<'a>(
    tx: &tokio_postgres::Transaction<'_>,
    sql: &str,
    what: &str,
    rows: impl Iterator<Item = Vec<std::borrow::Cow<'a, [u8]>>>,
) -> Result<(), StoreError> {
    use futures_util::SinkExt;
    let sink = tx.copy_in::<_, bytes::Bytes>(sql).await.map_err(db(what))?;
    let mut sink = std::pin::pin!(sink);
    let mut b = CopyBuf::new();
    for r in rows {
        let fields: Vec<&[u8]> = r.iter().map(|f| f.as_ref()).collect();
        b.row(&fields)?;
        if b.full() {
            sink.send(b.take()).await.map_err(db(what))?;
        }
    }
    b.buf.extend_from_slice(&(-1i16).to_be_bytes());
    sink.send(b.take()).await.map_err(db(what))?;
    sink.as_mut().finish().await.map_err(db(what))?;
    Ok(())
}

/// Per table holding tokens: how to read its rows, drop one, rewrite its
/// tokens (both keyed by a code and a reference).
const SHREDDED: [(&str, &str, &str); 2] = [
    (
        "SELECT force, pseudonym, tokens FROM subjects",
        "DELETE FROM subjects WHERE force = $1 AND pseudonym = $2",
        "UPDATE subjects SET tokens = $3 WHERE force = $1 AND pseudonym = $2",
    ),
    (
        "SELECT source, record_ref, tokens FROM records",
        "DELETE FROM records WHERE source = $1 AND record_ref = $2",
        "UPDATE records SET tokens = $3 WHERE source = $1 AND record_ref = $2",
    ),
];

/// Drops every token of an epoch's parity, and the subjects and records
/// left with none. Rows are read through a portal a page at a time (a
/// national store does not fit in memory twice).
async fn shred(tx: &tokio_postgres::Transaction<'_>, parity: Option<u32>) -> Result<(), StoreError> {
    for (select, delete, update) in SHREDDED {
        let portal = tx.bind(select, &[]).await.map_err(db("reading tokens to shred"))?;
        loop {
            let page = tx.query_portal(&portal, 10_000).await.map_err(db("reading tokens to shred"))?;
            if page.is_empty() {
                break;
            }
            for r in page {
                let old = unpack_tokens(r.get::<_, &[u8]>(2))?;
                let kept = super::surviving(&old, parity);
                if kept.len() == old.len() {
                    continue;
                }
                let (code, reference): (&str, &[u8]) = (r.get(0), r.get(1));
                if kept.is_empty() {
                    tx.execute(delete, &[&code, &reference]).await
                } else {
                    tx.execute(update, &[&code, &reference, &pack_tokens(&kept)]).await
                }
                .map_err(db("shredding tokens"))?;
            }
        }
    }
    Ok(())
}

const DELETE_SUBJECTS: &str = "DELETE FROM subjects s USING unnest($1::text[], $2::bytea[]) AS d(force, pseudonym)
     WHERE s.force = d.force AND s.pseudonym = d.pseudonym";
const DELETE_RECORDS: &str = "DELETE FROM records x USING unnest($1::text[], $2::bytea[]) AS d(source, record_ref)
     WHERE x.source = d.source AND x.record_ref = d.record_ref";

/// Deletes the rows named by (code, reference) pairs, in one statement.
async fn delete_pairs<'a>(
    tx: &tokio_postgres::Transaction<'_>,
    sql: &str,
    pairs: impl Iterator<Item = (&'a str, &'a [u8])>,
    what: &str,
) -> Result<(), StoreError> {
    let (codes, refs): (Vec<&str>, Vec<&[u8]>) = pairs.unzip();
    if !codes.is_empty() {
        tx.execute(sql, &[&codes, &refs]).await.map_err(db(what))?;
    }
    Ok(())
}

async fn put_subjects(tx: &tokio_postgres::Transaction<'_>, rows: &[&SubjectRow]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let merge = "INSERT INTO subjects (force, pseudonym, tokens) SELECT force, pseudonym, tokens FROM subjects_in
                 ON CONFLICT (force, pseudonym) DO UPDATE SET tokens = EXCLUDED.tokens";
    if rows.len() >= COPY_AT {
        use std::borrow::Cow;
        copy_rows(
            tx,
            "COPY subjects_in (force, pseudonym, tokens) FROM STDIN BINARY",
            "copying subjects",
            rows.iter().map(|s| {
                vec![
                    Cow::Borrowed(s.force.as_bytes()),
                    Cow::Borrowed(s.pseudonym.as_slice()),
                    Cow::Owned(pack_tokens(&s.tokens)),
                ]
            }),
        )
        .await?;
        tx.execute(merge, &[]).await.map_err(db("merging subjects"))?;
        tx.execute("DELETE FROM subjects_in", &[]).await.map_err(db("clearing staged subjects"))?;
    } else {
        for s in rows {
            tx.execute(
                "INSERT INTO subjects (force, pseudonym, tokens) VALUES ($1, $2, $3)
                 ON CONFLICT (force, pseudonym) DO UPDATE SET tokens = EXCLUDED.tokens",
                &[&s.force, &s.pseudonym.as_slice(), &pack_tokens(&s.tokens)],
            )
            .await
            .map_err(db("writing a subject"))?;
        }
    }
    Ok(())
}

async fn put_records(tx: &tokio_postgres::Transaction<'_>, rows: &[&RecordRow]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    if rows.len() >= COPY_AT {
        // The records this batch replaces go first (a probe of the primary
        // key each); the batch then goes straight into the table by COPY,
        // with nothing left to conflict with.
        delete_pairs(
            tx,
            DELETE_RECORDS,
            rows.iter().map(|r| (r.source.as_str(), r.record_ref.as_slice())),
            "replacing records",
        )
        .await?;
        use std::borrow::Cow;
        copy_rows(
            tx,
            "COPY records (source, record_ref, tokens, sealed) FROM STDIN BINARY",
            "copying records",
            rows.iter().map(|r| {
                vec![
                    Cow::Borrowed(r.source.as_bytes()),
                    Cow::Borrowed(r.record_ref.as_slice()),
                    Cow::Owned(pack_tokens(&r.tokens)),
                    Cow::Borrowed(r.sealed.as_slice()),
                ]
            }),
        )
        .await?;
    } else {
        for r in rows {
            tx.execute(
                "INSERT INTO records (source, record_ref, tokens, sealed) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (source, record_ref) DO UPDATE SET tokens = EXCLUDED.tokens, sealed = EXCLUDED.sealed",
                &[&r.source, &r.record_ref.as_slice(), &pack_tokens(&r.tokens), &r.sealed],
            )
            .await
            .map_err(db("writing a record"))?;
        }
    }
    Ok(())
}

async fn apply(tx: &tokio_postgres::Transaction<'_>, c: &Commit) -> Result<(), StoreError> {
    if c.shred_parity.is_some() {
        shred(tx, c.shred_parity).await?;
    }
    delete_pairs(
        tx,
        DELETE_SUBJECTS,
        c.subjects_del.iter().map(|(f, p)| (f.as_str(), p.as_slice())),
        "removing subjects",
    )
    .await?;
    put_subjects(tx, &last_of(&c.subjects_put, |s| (s.force.as_str(), s.pseudonym))).await?;
    delete_pairs(tx, DELETE_RECORDS, c.records_del.iter().map(|(s, r)| (s.as_str(), r.as_slice())), "removing records")
        .await?;
    put_records(tx, &last_of(&c.records_put, |r| (r.source.as_str(), r.record_ref))).await?;
    for b in &c.batches {
        let seq = i64::try_from(b.sequence).map_err(|_| err("postgres: batch sequence out of range"))?;
        tx.execute(
            "INSERT INTO senders (caller, sequence, commitment, receipt) VALUES ($1, $2, $3, $4)
             ON CONFLICT (caller) DO UPDATE SET sequence = EXCLUDED.sequence,
                 commitment = EXCLUDED.commitment, receipt = EXCLUDED.receipt",
            &[&b.caller, &seq, &b.commitment, &b.receipt],
        )
        .await
        .map_err(db("recording the batch"))?;
    }
    // One statement per kind of row, with the rows as arrays: a batch with
    // thousands of disclosures is still a handful of round trips.
    if !c.disclosures.is_empty() {
        let forces: Vec<&str> = c.disclosures.iter().map(|d| d.force.as_str()).collect();
        let seqs = c
            .disclosures
            .iter()
            .map(|d| i64::try_from(d.seq).map_err(|_| err("postgres: disclosure sequence out of range")))
            .collect::<Result<Vec<i64>, _>>()?;
        let messages: Vec<&[u8]> = c.disclosures.iter().map(|d| d.message.as_slice()).collect();
        tx.execute(
            "INSERT INTO disclosures (force, seq, message, pending)
             SELECT f, s, m, true FROM unnest($1::text[], $2::bigint[], $3::bytea[]) AS d(f, s, m)
             ON CONFLICT (force, seq) DO UPDATE SET message = EXCLUDED.message, pending = true",
            &[&forces, &seqs, &messages],
        )
        .await
        .map_err(db("queueing disclosures"))?;
    }
    if !c.active_del.is_empty() {
        let f: Vec<&str> = c.active_del.iter().map(|x| x.0.as_str()).collect();
        let p: Vec<&[u8]> = c.active_del.iter().map(|x| x.1.as_slice()).collect();
        let s: Vec<&str> = c.active_del.iter().map(|x| x.2.as_str()).collect();
        let r: Vec<&[u8]> = c.active_del.iter().map(|x| x.3.as_slice()).collect();
        tx.execute(
            "DELETE FROM active_cases a
             USING unnest($1::text[], $2::bytea[], $3::text[], $4::bytea[]) AS d(force, pseudonym, source, record_ref)
             WHERE a.force = d.force AND a.pseudonym = d.pseudonym AND a.source = d.source
               AND a.record_ref = d.record_ref",
            &[&f, &p, &s, &r],
        )
        .await
        .map_err(db("closing cases"))?;
    }
    let active = last_of(&c.active_put, |a| (a.force.as_str(), a.pseudonym, a.source.as_str(), a.record_ref));
    if !active.is_empty() {
        let f: Vec<&str> = active.iter().map(|a| a.force.as_str()).collect();
        let p: Vec<&[u8]> = active.iter().map(|a| a.pseudonym.as_slice()).collect();
        let s: Vec<&str> = active.iter().map(|a| a.source.as_str()).collect();
        let r: Vec<&[u8]> = active.iter().map(|a| a.record_ref.as_slice()).collect();
        let id: Vec<&str> = active.iter().map(|a| a.disclosure_id.as_str()).collect();
        let version: Vec<i64> = active.iter().map(|a| i64::from(a.version)).collect();
        let agreeing: Vec<i64> = active.iter().map(|a| i64::from(a.agreeing.0)).collect();
        let probability: Vec<f64> = active.iter().map(|a| a.probability).collect();
        tx.execute(
            "INSERT INTO active_cases
                 (force, pseudonym, source, record_ref, disclosure_id, version, agreeing, probability)
             SELECT * FROM unnest($1::text[], $2::bytea[], $3::text[], $4::bytea[], $5::text[], $6::bigint[],
                                  $7::bigint[], $8::float8[])
             ON CONFLICT (force, pseudonym, source, record_ref) DO UPDATE SET
                 disclosure_id = EXCLUDED.disclosure_id, version = EXCLUDED.version,
                 agreeing = EXCLUDED.agreeing, probability = EXCLUDED.probability",
            &[&f, &p, &s, &r, &id, &version, &agreeing, &probability],
        )
        .await
        .map_err(db("recording cases"))?;
    }
    if let Some((first, _)) = c.log.first() {
        let size: i64 = tx
            .query_one("SELECT coalesce(max(idx) + 1, 0) FROM log", &[])
            .await
            .map_err(db("reading the log's size"))?
            .get(0);
        if *first != size as u64 {
            return Err(err(format!("log entry {first} does not follow the log's size {size}")));
        }
        let mut idx = Vec::with_capacity(c.log.len());
        for (i, (index, _)) in c.log.iter().enumerate() {
            if *index != *first + i as u64 {
                return Err(err(format!("log entry {index} does not follow the log's size {}", *first + i as u64)));
            }
            idx.push(i64::try_from(*index).map_err(|_| err("postgres: log index out of range"))?);
        }
        let entries: Vec<&[u8]> = c.log.iter().map(|(_, e)| e.as_slice()).collect();
        tx.execute("INSERT INTO log (idx, entry) SELECT * FROM unnest($1::bigint[], $2::bytea[])", &[&idx, &entries])
            .await
            .map_err(db("appending to the log"))?;
    }
    if let Some((size, note)) = &c.checkpoint {
        let size = i64::try_from(*size).map_err(|_| err("postgres: checkpoint size out of range"))?;
        tx.execute(
            "INSERT INTO checkpoints (size, note) VALUES ($1, $2) ON CONFLICT (size) DO UPDATE SET note = EXCLUDED.note",
            &[&size, note],
        )
        .await
        .map_err(db("writing the checkpoint"))?;
    }
    let meta = last_of(&c.meta, |(k, _)| k.as_str());
    if !meta.is_empty() {
        let k: Vec<&str> = meta.iter().map(|(k, _)| k.as_str()).collect();
        let v: Vec<&[u8]> = meta.iter().map(|(_, v)| v.as_slice()).collect();
        tx.execute(
            "INSERT INTO vigil_meta (key, value) SELECT * FROM unnest($1::text[], $2::bytea[])
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            &[&k, &v],
        )
        .await
        .map_err(db("writing settings"))?;
    }
    Ok(())
}

fn active_of(r: &tokio_postgres::Row) -> Result<ActiveRow, StoreError> {
    let version = u32::try_from(r.get::<_, i64>(5)).map_err(|_| err("postgres: corrupt case version"))?;
    let agreeing = u32::try_from(r.get::<_, i64>(6)).map_err(|_| err("postgres: corrupt kinds of a case"))?;
    Ok(ActiveRow {
        force: r.get(0),
        pseudonym: to_ref(r.get(1))?,
        source: r.get(2),
        record_ref: to_ref(r.get(3))?,
        disclosure_id: r.get(4),
        version,
        agreeing: KindSet(agreeing),
        probability: r.get(7),
    })
}

/// Streams the rows of `sql`, calling `f` on each.
fn stream(
    client: &Client,
    sql: &str,
    what: &str,
    mut f: impl FnMut(&tokio_postgres::Row) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    use futures_util::TryStreamExt;
    block(async {
        let rows = client.query_raw(sql, std::iter::empty::<i32>()).await.map_err(db(what))?;
        let mut rows = std::pin::pin!(rows);
        while let Some(r) = rows.try_next().await.map_err(db(what))? {
            f(&r)?;
        }
        Ok(())
    })
}

impl StoreRead for PgStore {
    fn for_each_subject(&self, f: &mut dyn FnMut(SubjectRow)) -> Result<(), StoreError> {
        let r = self.reader()?;
        stream(&r.client, "SELECT force, pseudonym, tokens FROM subjects", "reading subjects", |r| {
            f(SubjectRow { force: r.get(0), pseudonym: to_ref(r.get(1))?, tokens: unpack_tokens(r.get(2))? });
            Ok(())
        })
    }

    fn for_each_record(&self, f: &mut dyn FnMut(RecordRow)) -> Result<(), StoreError> {
        let r = self.reader()?;
        stream(&r.client, "SELECT source, record_ref, tokens FROM records", "reading records", |r| {
            f(RecordRow {
                source: r.get(0),
                record_ref: to_ref(r.get(1))?,
                tokens: unpack_tokens(r.get(2))?,
                sealed: Vec::new(),
            });
            Ok(())
        })
    }

    fn for_each_active(&self, f: &mut dyn FnMut(ActiveRow)) -> Result<(), StoreError> {
        let r = self.reader()?;
        stream(
            &r.client,
            "SELECT force, pseudonym, source, record_ref, disclosure_id, version, agreeing, probability
             FROM active_cases ORDER BY force, pseudonym, source, record_ref",
            "reading cases",
            |r| {
                f(active_of(r)?);
                Ok(())
            },
        )
    }

    fn for_each_log_entry(&self, f: &mut dyn FnMut(u64, &[u8])) -> Result<(), StoreError> {
        let r = self.reader()?;
        stream(&r.client, "SELECT idx, entry FROM log ORDER BY idx", "reading the log", |r| {
            f(r.get::<_, i64>(0) as u64, r.get(1));
            Ok(())
        })
    }

    fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, StoreError> {
        let r = self.reader()?;
        block(r.client.query_opt(&r.stmt("SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1")?, &[]))
            .map_err(db("reading the checkpoint"))
            .map(|r| r.map(|r| (r.get::<_, i64>(0) as u64, r.get(1))))
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let r = self.reader()?;
        block(r.client.query_opt(&r.stmt("SELECT value FROM vigil_meta WHERE key = $1")?, &[&key]))
            .map_err(db("reading a setting"))
            .map(|r| r.map(|r| r.get(0)))
    }

    fn sender(&self, caller: &str) -> Result<Option<SenderState>, StoreError> {
        let r = self.reader()?;
        let row = block(
            r.client
                .query_opt(&r.stmt("SELECT sequence, commitment, receipt FROM senders WHERE caller = $1")?, &[&caller]),
        )
        .map_err(db("reading a sender"))?;
        Ok(row.map(|r| SenderState {
            caller: caller.to_string(),
            sequence: r.get::<_, i64>(0) as u64,
            commitment: r.get(1),
            receipt: r.get(2),
        }))
    }

    fn subject(&self, force: &str, pseudonym: &Ref) -> Result<Option<Vec<StoredToken>>, StoreError> {
        let r = self.reader()?;
        let row = block(r.client.query_opt(
            &r.stmt("SELECT tokens FROM subjects WHERE force = $1 AND pseudonym = $2")?,
            &[&force, &pseudonym.as_slice()],
        ))
        .map_err(db("reading a subject"))?;
        row.map(|r| unpack_tokens(r.get(0))).transpose()
    }

    fn record(&self, source: &str, record_ref: &Ref) -> Result<Option<RecordRow>, StoreError> {
        let r = self.reader()?;
        let row = block(r.client.query_opt(
            &r.stmt("SELECT tokens, sealed FROM records WHERE source = $1 AND record_ref = $2")?,
            &[&source, &record_ref.as_slice()],
        ))
        .map_err(db("reading a record"))?;
        row.map(|r| {
            Ok(RecordRow {
                source: source.to_string(),
                record_ref: *record_ref,
                tokens: unpack_tokens(r.get(0))?,
                sealed: r.get(1),
            })
        })
        .transpose()
    }

    fn last_sequences(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let r = self.reader()?;
        let rows = block(
            r.client.query(&r.stmt("SELECT force, max(seq) FROM disclosures GROUP BY force ORDER BY force")?, &[]),
        )
        .map_err(db("reading sequences"))?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get::<_, i64>(1) as u64)).collect())
    }
}

impl Store for PgStore {
    fn commit(&self, c: &Commit) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering;
        let held = self.generation.load(Ordering::SeqCst);
        if held == 0 {
            return Err(err("postgres: this coordinator does not hold the lease (it is a standby, or stepped down); \
                 nothing was written"));
        }
        let mut w = self.writer()?;
        block(async {
            let tx = w.transaction().await.map_err(db("starting a commit"))?;
            // The fencing check: a share lock on the lease row, so that a
            // coordinator taking over (which bumps the generation) waits
            // for this commit, and this commit fails if it came first.
            let now: i64 = tx
                .query_one("SELECT generation FROM vigil_lease WHERE id = 1 FOR SHARE", &[])
                .await
                .map_err(db("checking the lease"))?
                .get(0);
            if now != held {
                self.generation.store(0, Ordering::SeqCst);
                return Err(err(format!(
                    "postgres: another coordinator took the lease (generation {now}; this one held {held}); \
                     nothing was written"
                )));
            }
            apply(&tx, c).await?;
            tx.commit().await.map_err(db("committing"))
        })
    }

    fn take_lease(&self, holder: &str) -> Result<super::Lease, StoreError> {
        use std::sync::atomic::Ordering;
        let mut slot = self.lease.lock().map_err(|_| err("postgres: lease lock poisoned"))?;
        let held = self.generation.load(Ordering::SeqCst);
        if held > 0 && slot.as_ref().is_some_and(|c| !c.is_closed()) {
            return Ok(super::Lease::Held(held as u64));
        }
        let client = match slot.take() {
            Some(c) if !c.is_closed() => c,
            _ => {
                let c = self.conn.connect(&self.settings, "lease")?;
                // The database notices a coordinator whose machine vanished
                // (no FIN) within about 11 s, and frees the lock.
                block(c.batch_execute(
                    "SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; SET tcp_keepalives_count = 3",
                ))
                .map_err(db("setting up the lease connection"))?;
                std::sync::Arc::new(c)
            }
        };
        let got: bool = block(client.query_one("SELECT pg_try_advisory_lock($1)", &[&LEASE_LOCK]))
            .map_err(db("trying the lease"))?
            .get(0);
        if !got {
            let by: String = block(client.query_one("SELECT holder FROM vigil_lease WHERE id = 1", &[]))
                .map_err(db("reading the lease"))?
                .get(0);
            *slot = Some(client);
            return Ok(super::Lease::Elsewhere(by));
        }
        // Waits for a commit in flight under the previous generation.
        let taken = block(client.query_one(
            "UPDATE vigil_lease SET generation = generation + 1, holder = $1, taken_at = now() WHERE id = 1 \
             RETURNING generation",
            &[&holder],
        ));
        match taken {
            Ok(row) => {
                let g: i64 = row.get(0);
                self.generation.store(g, Ordering::SeqCst);
                *slot = Some(client);
                Ok(super::Lease::Held(g as u64))
            }
            Err(e) => {
                self.lose_lease(&mut slot);
                Err(db("taking the lease")(e))
            }
        }
    }

    fn holds_lease(&self) -> bool {
        use std::sync::atomic::Ordering;
        let Ok(mut slot) = self.lease.lock() else { return false };
        let held = self.generation.load(Ordering::SeqCst);
        let Some(client) = slot.clone().filter(|_| held > 0) else {
            self.lose_lease(&mut slot);
            return false;
        };
        let now = self.bounded(LEASE_CHECK_TIMEOUT, async move {
            client.query_one("SELECT generation FROM vigil_lease WHERE id = 1", &[]).await.map(|r| r.get::<_, i64>(0))
        });
        match now {
            Some(Ok(g)) if g == held => true,
            other => {
                let why = match other {
                    Some(Ok(g)) => format!("the generation is now {g}"),
                    Some(Err(e)) => db("checking the lease")(e).to_string(),
                    None => format!("no answer within {} s", LEASE_CHECK_TIMEOUT.as_secs()),
                };
                tracing::error!(reason = %why, "the lease is lost");
                self.lose_lease(&mut slot);
                false
            }
        }
    }

    fn release_lease(&self) {
        let Ok(mut slot) = self.lease.lock() else { return };
        if let Some(c) = slot.as_ref().filter(|_| self.generation.load(std::sync::atomic::Ordering::SeqCst) > 0) {
            let c = c.clone();
            let _ = self
                .bounded(LEASE_CHECK_TIMEOUT, async move { c.execute("SELECT pg_advisory_unlock_all()", &[]).await });
        }
        self.lose_lease(&mut slot);
    }

    fn log_entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        let r = self.reader()?;
        let (s, e) = (i64::try_from(start).unwrap_or(i64::MAX), i64::try_from(end).unwrap_or(i64::MAX));
        let rows = block(
            r.client.query(&r.stmt("SELECT entry FROM log WHERE idx >= $1 AND idx < $2 ORDER BY idx")?, &[&s, &e]),
        )
        .map_err(db("reading log entries"))?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }

    fn pending(&self, force: &str, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let r = self.reader()?;
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = block(r.client.query(
            &r.stmt(
                "SELECT seq, message FROM disclosures WHERE force = $1 AND pending AND seq > $2 ORDER BY seq LIMIT $3",
            )?,
            &[&force, &after, &limit],
        ))
        .map_err(db("reading pending disclosures"))?;
        Ok(rows.into_iter().map(|r| (r.get::<_, i64>(0) as u64, r.get(1))).collect())
    }

    fn acknowledge(&self, force: &str, seqs: &[u64]) -> Result<u64, StoreError> {
        let r = self.reader()?;
        let seqs: Vec<i64> = seqs.iter().filter_map(|s| i64::try_from(*s).ok()).collect();
        // One statement on the reader's connection, whose commits do not
        // wait for the disk (as the embedded store's acknowledgements): a
        // lost one is delivered again.
        let st = r.stmt("UPDATE disclosures SET pending = false WHERE force = $1 AND seq = ANY($2) AND pending")?;
        block(r.client.execute(&st, &[&force, &seqs])).map_err(db("acknowledging"))
    }

    fn flush(&self) -> Result<(), StoreError> {
        // PostgreSQL's WAL writer flushes asynchronous commits within
        // `wal_writer_delay` (200 ms by default); nothing to do here.
        Ok(())
    }

    fn pending_count(&self, force: &str) -> Result<u64, StoreError> {
        let r = self.reader()?;
        let row = block(
            r.client.query_one(&r.stmt("SELECT count(*) FROM disclosures WHERE force = $1 AND pending")?, &[&force]),
        )
        .map_err(db("counting pending disclosures"))?;
        Ok(row.get::<_, i64>(0) as u64)
    }
}
