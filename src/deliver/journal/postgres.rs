//! The PostgreSQL journal: one campaign shared by several `send` processes
//! on one or several machines, and the only place that speaks to
//! PostgreSQL. It must not let two workers send one recipient, nor lose one.
//!
//! Why tokio-postgres: it is the maintained asynchronous client of the
//! rust-postgres project, runs on the tokio already in the tree (no second
//! runtime, no C library, unlike libpq bindings), pipelines the queries of
//! several threads on one connection, and takes TLS from the rustls lettre
//! already builds (through tokio-postgres-rustls). sqlx would bring its
//! own pool, macros and a larger tree for the dozen statements here. The
//! runtime lives in this module only: one thread drives the connection, the
//! sender threads block on their queries.
//!
//! **Sharing the work.** Every process that sends registers a *worker* row
//! with a lease that a heartbeat thread renews every third of the lease.
//! A worker claims a batch of recipients (`SELECT … FOR UPDATE SKIP
//! LOCKED`: two workers never claim one row), commits `inflight` before MAIL
//! FROM (refused when its lease ran out or the row was taken from it), and
//! the outcome after the reply; acceptances and outcomes of all its sender
//! threads go in groups, one statement per group. A sender marks its next
//! letter in flight while it sends the current one, in the statement that
//! carries the outcomes so far ([`Journal::begin_ahead`]), so that MAIL
//! FROM does not wait for a round trip; it starts that letter only once
//! the mark is committed and the lease is known to be good (renewed within
//! the lease), and undoes the mark if it stops first. A worker killed
//! outright leaves at most that one recipient per connection ambiguous
//! without it ever having been sent. Any worker reaps a worker
//! whose lease ran out: the recipients it claimed go back to the pool, those
//! in flight become ambiguous (never resent automatically, as after a crash
//! with SQLite). A worker whose lease is lost stops sending.
//!
//! **Durability** follows `--journal-sync` as with SQLite: by default a
//! commit returns once PostgreSQL has it (`synchronous_commit = off` for
//! letterpress's session: safe against any sender dying, and a crash of
//! the database server may lose its last fraction of a second of commits);
//! with `--journal-sync`, once it is flushed to disk.
//!
//! **One campaign per database** (or per schema, with `options=-c
//! search_path=…` in the URL). The tables are named `letterpress_*`; the
//! schema version is in `letterpress_schema`, and a newer one is refused.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio_postgres::config::Host;
use tokio_postgres::{Client, Statement};

use super::{
    Ahead, Claim, Dump, FailedRow, Feedback, Journal, Kind, Known, Mode, NewEntry, Record, State,
    Worker,
};
use crate::error::{Error, Result};
use crate::secret::Secret;

/// The layout of the tables; a database with a higher one was written by a
/// newer letterpress and is refused.
pub const SCHEMA_VERSION: i32 = 3;

/// Taken while the schema is made or migrated, and while a plan is written.
const LOCK_KEY: i64 = 0x4C50_5253;

/// Where the journal is: the URL (no password in it), and how to log in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub url: String,
    /// `PGPASSWORD`, when set.
    pub password: Option<Secret>,
    /// The password file (`PGPASSFILE`, or `~/.pgpass`).
    pub passfile: Option<PathBuf>,
    /// `sslmode` when the URL gives none (`PGSSLMODE`).
    pub sslmode: Option<String>,
    /// The CAs to check the server's certificate against when the URL
    /// names none (`PGSSLROOTCERT`, or `~/.postgresql/root.crt`).
    pub sslrootcert: Option<PathBuf>,
    /// How long a worker's claims last without a heartbeat (`--lease`).
    pub lease: Duration,
}

/// The migrations, in order: `MIGRATIONS[v]` takes a schema from version
/// `v` to `v + 1`.
///
/// Schema 2 keeps the writes of each letter off the indexes, so that they
/// are heap-only updates (HOT): the in-flight mark and the outcome change
/// no indexed column, and the pages keep room for the new row versions
/// (fillfactor 70). Only the claim, which takes a row out of the pool,
/// touches an index. Schema 1 indexed `state` and `worker` (in partial
/// indexes), so every write of every letter added index entries, and the
/// dead ones piled up faster than they were cleaned: at 50,000 letters the
/// server spent 460–660 µs a letter against 190 µs now. The rows a worker
/// holds are found without an index, by the reaping, which is rare.
///
/// Schema 3 keeps the bounces and complaints that `letterpress bounces`
/// finds, as the SQLite journal's `feedback` table does: once per returned
/// message (`key`), in the order recorded (`seq`).
const MIGRATIONS: [&str; 3] = [
    "
CREATE TABLE letterpress_meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE letterpress_workers (
    id          serial PRIMARY KEY,
    host        text NOT NULL,
    pid         integer NOT NULL,
    started     timestamptz NOT NULL DEFAULT clock_timestamp(),
    heartbeat   timestamptz NOT NULL DEFAULT clock_timestamp(),
    lease_until timestamptz NOT NULL,
    gone        boolean NOT NULL DEFAULT false,
    sent        bigint NOT NULL DEFAULT 0
);
CREATE TABLE letterpress_recipients (
    address     text PRIMARY KEY,
    row         bigint NOT NULL,
    line        bigint NOT NULL,
    fingerprint text NOT NULL,
    fields      text NOT NULL,
    state       text NOT NULL,
    attempts    integer NOT NULL DEFAULT 0,
    code        integer,
    reply       text,
    message_id  text,
    updated     bigint NOT NULL,
    worker      integer
);
CREATE INDEX letterpress_claimable ON letterpress_recipients (row)
    WHERE worker IS NULL AND state IN ('pending', 'deferred');
CREATE INDEX letterpress_held ON letterpress_recipients (worker) WHERE worker IS NOT NULL;
CREATE TABLE letterpress_pace (id integer PRIMARY KEY, next_start timestamptz NOT NULL);
INSERT INTO letterpress_pace VALUES (1, clock_timestamp());
",
    "
ALTER TABLE letterpress_recipients SET (fillfactor = 70);
ALTER TABLE letterpress_recipients ADD COLUMN pool boolean
    GENERATED ALWAYS AS (worker IS NULL AND state IN ('pending', 'deferred')) STORED;
DROP INDEX letterpress_claimable;
DROP INDEX letterpress_held;
CREATE INDEX letterpress_pool ON letterpress_recipients (row) WHERE pool;
",
    "
CREATE TABLE letterpress_feedback (
    seq         bigserial PRIMARY KEY,
    key         text NOT NULL UNIQUE,
    address     text NOT NULL,
    kind        text NOT NULL,
    status      text NOT NULL,
    diagnostic  text NOT NULL,
    at          bigint NOT NULL
);
",
];

/// The lease of the worker `$1` is still good.
const LEASE_OK: &str = "EXISTS (SELECT 1 FROM letterpress_workers w
    WHERE w.id = $1 AND NOT w.gone AND w.lease_until > clock_timestamp())";

const REAP: &str = "
WITH dead AS (
    UPDATE letterpress_workers SET gone = true
    WHERE NOT gone AND lease_until < clock_timestamp() RETURNING id),
gone AS (SELECT id FROM dead UNION ALL SELECT id FROM letterpress_workers WHERE gone),
amb AS (
    UPDATE letterpress_recipients SET state = 'ambiguous', worker = NULL, code = NULL,
      reply = 'in flight when its worker stopped or lost its lease; the server may have it',
      updated = $1
    WHERE worker IN (SELECT id FROM gone) AND state = 'inflight' RETURNING 1),
back AS (
    UPDATE letterpress_recipients SET worker = NULL
    WHERE worker IN (SELECT id FROM gone) AND state <> 'inflight' RETURNING 1)
SELECT (SELECT count(*) FROM amb), (SELECT count(*) FROM back)";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A write of the sending phase, waiting for its commit.
enum Op {
    Begin {
        address: String,
        message_id: String,
    },
    Finish {
        address: String,
        state: State,
        code: Option<u16>,
        reply: String,
    },
    Nothing,
}

impl Op {
    fn address(&self) -> Option<&str> {
        match self {
            Op::Begin { address, .. } | Op::Finish { address, .. } => Some(address),
            Op::Nothing => None,
        }
    }
}

/// Writes waiting to ride with the next commit.
#[derive(Default)]
struct Queue {
    ops: Vec<Op>,
    /// A write failed: every later one reports it.
    error: Option<String>,
}

/// What the journal and its heartbeat thread share.
struct Conn {
    client: Client,
    handle: tokio::runtime::Handle,
    described: String,
    trips: AtomicU64,
}

impl Conn {
    fn err(&self, e: tokio_postgres::Error) -> Error {
        let message = match e.as_db_error() {
            Some(db) => db.message().to_string(),
            None if e.is_closed() => "the connection to the database was lost".into(),
            None => e.to_string(),
        };
        refuse(&self.described, message)
    }

    /// Runs one round trip.
    fn run<T>(
        &self,
        f: impl std::future::Future<Output = std::result::Result<T, tokio_postgres::Error>>,
    ) -> Result<T> {
        self.trips.fetch_add(1, Ordering::Relaxed);
        self.handle.block_on(f).map_err(|e| self.err(e))
    }
}

/// Why a worker whose lease ran out sends nothing more.
fn lost_lease(described: &str, lease: Duration) -> Error {
    refuse(
        described,
        format!(
            "this worker lost its lease (it was paused, or cut off from the database, for \
             longer than --lease {:.0}s); the recipients it held went back to the other \
             workers and those in flight are ambiguous; nothing more is sent from this \
             process. Run the same command again to rejoin",
            lease.as_secs_f64()
        ),
    )
}

fn refuse(described: &str, message: impl Into<String>) -> Error {
    Error::Journal {
        path: described.into(),
        message: message.into(),
    }
}

/// Connects (the password from `PGPASSWORD` or the password file), and
/// starts the thread that drives the connection; it ends when the client is
/// dropped.
fn connect(target: &Target, app: &str) -> Result<Arc<Conn>> {
    let described = target.url.clone();
    let bad = |m: String| refuse(&described, m);
    let tls = Tls::of(target).map_err(bad)?;
    let mut config = tokio_postgres::Config::from_str(&tls.url)
        .map_err(|e| bad(format!("is not a PostgreSQL URL: {e}")))?;
    if config.get_password().is_some() {
        return Err(bad(
            "has a password in it; put it in PGPASSWORD or ~/.pgpass instead, so that it \
             shows in no command line and no log"
                .into(),
        ));
    }
    let Some(user) = config.get_user().map(str::to_string) else {
        return Err(bad(
            "names no user; write postgres://USER@HOST:PORT/DATABASE".into(),
        ));
    };
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        _ => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().unwrap_or(&user).to_string();
    let password = target.password.clone().or_else(|| {
        target
            .passfile
            .as_deref()
            .and_then(|p| pgpass(p, &host, port, &db, &user))
    });
    if let Some(p) = &password {
        config.password(p.expose());
    }
    config.application_name(app);
    config.keepalives_idle(Duration::from_secs(10));
    config.connect_timeout(Duration::from_secs(10));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| bad(e.to_string()))?;
    let check = tls.check;
    let (client, connection) = rt
        .block_on(config.connect(tls.connector()))
        .map_err(|e| bad(format!("cannot connect: {}", connect_error(&e, check))))?;
    let handle = rt.handle().clone();
    std::thread::Builder::new()
        .name("postgres".into())
        .spawn(move || {
            let _ = rt.block_on(connection);
        })
        .map_err(|e| bad(e.to_string()))?;
    Ok(Arc::new(Conn {
        client,
        handle,
        described,
        trips: AtomicU64::new(1),
    }))
}

/// The sending worker: its id, lease and heartbeat.
struct Lease {
    id: i32,
    conn: Arc<Conn>,
    seconds: f64,
    lost: AtomicBool,
    /// Until when the lease is known to be good: the server set its end
    /// at least this late (a renewal sent at `t` sets it to `t` + the
    /// lease or later), and nobody else shortens it.
    good_until: Mutex<Instant>,
    sent: AtomicU64,
    stop: Mutex<bool>,
    wake: Condvar,
}

impl Lease {
    /// Whether the lease is known to be good now; a lease whose end may
    /// have passed is lost from now on.
    fn holds(&self) -> bool {
        let good = Instant::now()
            < *self
                .good_until
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
        if !good {
            self.lost.store(true, Ordering::Relaxed);
        }
        good && !self.lost.load(Ordering::Relaxed)
    }

    /// A renewal sent at `at` succeeded.
    fn renewed(&self, at: Instant) {
        let mut g = self
            .good_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *g = (*g).max(at + Duration::from_secs_f64(self.seconds));
    }
}

/// An open PostgreSQL journal.
pub struct PgJournal {
    conn: Arc<Conn>,
    mode: Mode,
    /// No schema yet (a dry run or `status` before any send): reads empty.
    empty: bool,
    lease: Option<Arc<Lease>>,
    heartbeat: Option<std::thread::JoinHandle<()>>,
    queue: Arc<Mutex<Queue>>,
    /// Recipients marked ahead whose letter has not been handed to the
    /// sink yet: undone if this worker leaves with them.
    unstarted: Mutex<HashSet<String>>,
    /// The write of the sending phase; prepared once the tables exist.
    commit_stmt: Option<Statement>,
    /// The claim of a batch, prepared likewise.
    claim_stmt: Option<Statement>,
    /// The transaction of a plan is open.
    planning: AtomicBool,
    target: Target,
}

impl PgJournal {
    pub fn open(target: &Target, mode: Mode) -> Result<PgJournal> {
        Self::open_as(target, mode, true)
    }

    /// Opened to write without sending (`letterpress bounces`, the target
    /// of `journal copy`): no worker is registered, so none shows in
    /// `status`; the tables are made if missing.
    /// `mode` is a [`Mode::Send`] (its `wait` does not apply).
    pub fn open_to_record(target: &Target, mode: Mode) -> Result<PgJournal> {
        Self::open_as(target, mode, false)
    }

    fn open_as(target: &Target, mode: Mode, worker: bool) -> Result<PgJournal> {
        let conn = connect(target, "letterpress")?;
        let bad = |m: &str| refuse(&target.url, m);
        let writes = matches!(mode, Mode::Send { .. });
        let version = schema(&conn, writes)?;
        if version.is_none() && mode == Mode::Read {
            return Err(bad(
                "has no letterpress journal (no campaign was sent with it)",
            ));
        }
        let commit_stmt = version
            .map(|_| {
                conn.run(conn.client.prepare(&format!(
                    "WITH fin AS (
               UPDATE letterpress_recipients r SET updated = $8,
                 state = ($5::text[])[array_position($4::text[], r.address)],
                 code = ($6::int4[])[array_position($4::text[], r.address)],
                 reply = ($7::text[])[array_position($4::text[], r.address)],
                 worker = CASE WHEN ($5::text[])[array_position($4::text[], r.address)]
                   = 'deferred' THEN r.worker END
               WHERE r.address = ANY($4::text[]) AND r.worker = $1 RETURNING 1)
             UPDATE letterpress_recipients r SET state = 'inflight',
               attempts = r.attempts + 1, updated = $8,
               message_id = ($3::text[])[array_position($2::text[], r.address)]
             WHERE r.address = ANY($2::text[]) AND r.worker = $1 AND {LEASE_OK}
             RETURNING r.address"
                )))
            })
            .transpose()?;
        let claim_stmt = version
            .map(|_| {
                conn.run(conn.client.prepare(&format!(
                    "UPDATE letterpress_recipients r SET worker = $1
                     WHERE r.address = ANY(ARRAY(
                       SELECT address FROM letterpress_recipients WHERE pool
                       ORDER BY row LIMIT $2 FOR UPDATE SKIP LOCKED)) AND {LEASE_OK}
                     RETURNING r.row, r.address"
                )))
            })
            .transpose()?;
        let mut journal = PgJournal {
            conn,
            mode,
            empty: version.is_none(),
            lease: None,
            heartbeat: None,
            queue: Arc::new(Mutex::new(Queue::default())),
            unstarted: Mutex::new(HashSet::new()),
            commit_stmt,
            claim_stmt,
            planning: AtomicBool::new(false),
            target: target.clone(),
        };
        if let Mode::Send {
            full_sync: false, ..
        } = mode
        {
            // The durability of the SQLite journal's default: a commit is
            // safe once PostgreSQL has it, whatever happens to the sender;
            // a crash of the database server may lose the last fraction of
            // a second (the WAL writer flushes every 200 ms), as a crash of
            // the machine may with SQLite. --journal-sync waits for the
            // flush of every commit.
            journal.conn.run(
                journal
                    .conn
                    .client
                    .batch_execute("SET synchronous_commit = off"),
            )?;
        }
        if writes {
            // One plan for the statements of the sending phase, made once:
            // the server would otherwise plan the write of every letter
            // anew (a custom plan for each array length), which cost more
            // than running it (about 250 µs against 180 µs a letter). The
            // generic plans are the same index lookups. PostgreSQL before
            // 12 lacks the setting and plans as before.
            let c = &journal.conn;
            let _ = c.run(
                c.client
                    .batch_execute("SET plan_cache_mode = force_generic_plan"),
            );
            if worker {
                journal.register()?;
            }
        }
        Ok(journal)
    }

    /// Registers this process as a worker and starts its heartbeat.
    fn register(&mut self) -> Result<()> {
        let c = &self.conn;
        let seconds = self.target.lease.as_secs_f64().max(0.5);
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "?".into());
        let asked = Instant::now();
        let row = c.run(c.client.query_one(
            "INSERT INTO letterpress_workers (host, pid, lease_until)
             VALUES ($1, $2, clock_timestamp() + make_interval(secs => $3)) RETURNING id",
            &[&host, &(std::process::id() as i32), &seconds],
        ))?;
        // Its own connection: a plan's transaction on the main one must not
        // hold back the renewals.
        let conn = connect(&self.target, "letterpress lease")?;
        let lease = Arc::new(Lease {
            id: row.get(0),
            conn,
            seconds,
            lost: AtomicBool::new(false),
            good_until: Mutex::new(asked + Duration::from_secs_f64(seconds)),
            sent: AtomicU64::new(0),
            stop: Mutex::new(false),
            wake: Condvar::new(),
        });
        let l = Arc::clone(&lease);
        self.heartbeat = Some(
            std::thread::Builder::new()
                .name("lease".into())
                .spawn(move || heartbeat(&l.conn, &l))
                .map_err(|e| refuse(&self.conn.described, e.to_string()))?,
        );
        self.lease = Some(lease);
        Ok(())
    }

    fn worker(&self) -> i32 {
        self.lease.as_ref().map_or(0, |l| l.id)
    }

    fn lost_lease(&self) -> Error {
        lost_lease(&self.conn.described, self.target.lease)
    }

    fn writing(&self) -> Result<bool> {
        match self.mode {
            Mode::Send { .. } => Ok(true),
            Mode::DryRun => Ok(false),
            Mode::Read => Err(refuse(
                &self.conn.described,
                "is open for reading only, and a write was attempted (a bug in letterpress)",
            )),
        }
    }

    /// Queues `op`. With `wait`, writes it now with everything queued
    /// (the acceptances of every sender thread ride along) and returns once
    /// it is committed. Unlike SQLite's, writes of several threads may be
    /// under way at once: the connection pipelines them, so a sender waits
    /// one round trip, not the others' too. A batch holds at most one begin,
    /// its own.
    fn submit(&self, op: Op, wait: bool) -> Result<()> {
        let begin = match &op {
            Op::Begin { address, .. } => Some(address.clone()),
            _ => None,
        };
        let Some(batch) = self.enqueue(op, wait)? else {
            return Ok(());
        };
        let writer = self.writer()?;
        let r = self.conn.handle.block_on(writer.commit(&batch));
        writer.settle(r, begin.as_deref())
    }

    /// Queues `op`; with `wait`, takes it back with everything queued, to
    /// be committed now. `None`: nothing to write now.
    fn enqueue(&self, op: Op, wait: bool) -> Result<Option<Vec<Op>>> {
        if !self.writing()? {
            return Ok(None);
        }
        if matches!(op, Op::Begin { .. })
            && self
                .lease
                .as_ref()
                .is_some_and(|l| l.lost.load(Ordering::Relaxed))
        {
            return Err(self.lost_lease());
        }
        let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(e) = &q.error {
            return Err(refuse(&self.conn.described, e.clone()));
        }
        q.ops.push(op);
        Ok(wait.then(|| std::mem::take(&mut q.ops)))
    }

    fn connection_lost(&self) -> Error {
        refuse(
            &self.conn.described,
            "the connection to the database was lost",
        )
    }

    /// What a commit of the sending phase needs.
    fn writer(&self) -> Result<Writer> {
        let stmt = self
            .commit_stmt
            .clone()
            .ok_or_else(|| refuse(&self.conn.described, "has no tables (a bug in letterpress)"))?;
        Ok(Writer {
            conn: Arc::clone(&self.conn),
            stmt,
            worker: self.worker(),
            lease: self.lease.clone(),
            lease_time: self.target.lease,
            queue: Arc::clone(&self.queue),
        })
    }

    /// Workers whose lease ran out (and those gone) give their recipients
    /// back: claimed ones to the pool, in-flight ones as ambiguous. Returns
    /// (ambiguous, back to the pool).
    fn reap(&self) -> Result<(usize, usize)> {
        reap(&self.conn)
    }

    /// Records `f` unless its key is there; true when it was new.
    fn insert_feedback(&self, f: &Feedback) -> Result<bool> {
        let c = &self.conn;
        let n = c.run(c.client.execute(
            "INSERT INTO letterpress_feedback (key, address, kind, status, diagnostic, at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (key) DO NOTHING",
            &[
                &f.key,
                &f.address,
                &f.kind.as_str(),
                &f.status,
                &f.diagnostic,
                &f.at,
            ],
        ))?;
        Ok(n == 1)
    }
}

/// Undoes the marks of recipients marked ahead whose letters were never
/// handed to the sink: they are claimed, not in flight, again (deferred if
/// an attempt came before). Returns how many.
fn unmark(c: &Conn, worker: i32, addresses: &[String]) -> Result<u64> {
    if addresses.is_empty() {
        return Ok(0);
    }
    c.run(c.client.execute(
        "UPDATE letterpress_recipients SET attempts = attempts - 1, updated = $3,
           state = CASE WHEN attempts > 1 THEN 'deferred' ELSE 'pending' END
         WHERE address = ANY($1) AND worker = $2 AND state = 'inflight'",
        &[&addresses, &worker, &now()],
    ))
}

fn reap(c: &Conn) -> Result<(usize, usize)> {
    let row = c.run(c.client.query_one(REAP, &[&now()]))?;
    Ok((row.get::<_, i64>(0) as usize, row.get::<_, i64>(1) as usize))
}

/// What a commit of the sending phase needs; owned, so that a commit can
/// also run as a task of its own.
#[derive(Clone)]
struct Writer {
    conn: Arc<Conn>,
    stmt: Statement,
    worker: i32,
    lease: Option<Arc<Lease>>,
    /// `--lease`, for messages.
    lease_time: Duration,
    queue: Arc<Mutex<Queue>>,
}

impl Writer {
    /// What a commit means to the sender that waits for it: its begin
    /// refused means the lease is lost; a failed commit fails every later
    /// write too.
    fn settle(&self, r: Result<Vec<String>>, begin: Option<&str>) -> Result<()> {
        match r {
            Ok(refused) if begin.is_some_and(|a| refused.iter().any(|r| r == a)) => {
                if let Some(l) = &self.lease {
                    l.lost.store(true, Ordering::Relaxed);
                }
                Err(lost_lease(&self.conn.described, self.lease_time))
            }
            Ok(_) => Ok(()),
            Err(e) => {
                let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
                q.error.get_or_insert_with(|| e.to_string());
                Err(e)
            }
        }
    }

    /// Writes `batch`, one statement for each run of ops that names no
    /// address twice; returns the begins that were refused.
    async fn commit(&self, batch: &[Op]) -> Result<Vec<String>> {
        let mut refused = Vec::new();
        let mut start = 0;
        while start < batch.len() {
            let mut seen = HashSet::new();
            let mut end = start;
            while end < batch.len() {
                match batch[end].address() {
                    Some(a) if !seen.insert(a) => break,
                    _ => end += 1,
                }
            }
            refused.extend(self.commit_group(&batch[start..end]).await?);
            start = end;
        }
        Ok(refused)
    }

    async fn commit_group(&self, ops: &[Op]) -> Result<Vec<String>> {
        let (mut ba, mut bm) = (Vec::<&str>::new(), Vec::<&str>::new());
        let (mut fa, mut fs, mut fc, mut fr) = (
            Vec::<&str>::new(),
            Vec::<&str>::new(),
            Vec::<Option<i32>>::new(),
            Vec::<&str>::new(),
        );
        for op in ops {
            match op {
                Op::Begin {
                    address,
                    message_id,
                } => {
                    ba.push(address);
                    bm.push(message_id);
                }
                Op::Finish {
                    address,
                    state,
                    code,
                    reply,
                } => {
                    fa.push(address);
                    fs.push(state.as_str());
                    fc.push(code.map(i32::from));
                    fr.push(reply);
                }
                Op::Nothing => {}
            }
        }
        if ba.is_empty() && fa.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(l) = &self.lease {
            let done = fs.iter().filter(|s| **s != "deferred").count() as u64;
            l.sent.fetch_add(done, Ordering::Relaxed);
        }
        let c = &self.conn;
        c.trips.fetch_add(1, Ordering::Relaxed);
        let rows = c
            .client
            .query(
                &self.stmt,
                &[&self.worker, &ba, &bm, &fa, &fs, &fc, &fr, &now()],
            )
            .await
            .map_err(|e| c.err(e))?;
        let begun: HashSet<String> = rows.iter().map(|r| r.get(0)).collect();
        Ok(ba
            .into_iter()
            .filter(|a| !begun.contains(*a))
            .map(str::to_string)
            .collect())
    }
}

/// Renews the lease every third of it, and reaps the workers whose lease
/// ran out; stops when the journal is dropped or the lease is lost.
fn heartbeat(c: &Conn, l: &Lease) {
    let every = Duration::from_secs_f64(l.seconds / 3.0);
    loop {
        {
            let stop = l.stop.lock().unwrap_or_else(PoisonError::into_inner);
            let (stop, _) = l
                .wake
                .wait_timeout_while(stop, every, |s| !*s)
                .unwrap_or_else(PoisonError::into_inner);
            if *stop {
                return;
            }
        }
        let asked = Instant::now();
        let renewed = c.run(c.client.query_opt(
            "UPDATE letterpress_workers SET lease_until = clock_timestamp() + make_interval(secs => $2),
               heartbeat = clock_timestamp(), sent = $3
             WHERE id = $1 AND NOT gone AND lease_until > clock_timestamp() RETURNING id",
            &[&l.id, &l.seconds, &(l.sent.load(Ordering::Relaxed) as i64)],
        ));
        match renewed {
            Ok(Some(_)) => l.renewed(asked),
            Ok(None) => {
                l.lost.store(true, Ordering::Relaxed);
                return;
            }
            // The connection is gone: the sender threads hear of it too.
            Err(_) => return,
        }
        let _ = reap(c);
    }
}

/// Makes the schema if it is missing (`create`), migrates an older one,
/// refuses a newer one. Returns the version, `None` when there is none.
fn schema(c: &Conn, create: bool) -> Result<Option<i32>> {
    let found: Option<i32> = {
        let row = c.run(
            c.client
                .query_one("SELECT to_regclass('letterpress_schema') IS NOT NULL", &[]),
        )?;
        if row.get(0) {
            let v = c.run(
                c.client
                    .query_one("SELECT max(version) FROM letterpress_schema", &[]),
            )?;
            v.get::<_, Option<i32>>(0)
        } else {
            None
        }
    };
    if let Some(v) = found {
        if v > SCHEMA_VERSION {
            return Err(refuse(
                &c.described,
                format!(
                    "was written by a newer letterpress (schema {v}; this one knows {}); \
                     upgrade letterpress",
                    SCHEMA_VERSION
                ),
            ));
        }
        if v == SCHEMA_VERSION || !create {
            return Ok(Some(v));
        }
    } else if !create {
        return Ok(None);
    }
    // Made or migrated under a lock: workers may start together.
    let mut script = format!(
        "BEGIN; SELECT pg_advisory_xact_lock({LOCK_KEY});
         CREATE TABLE IF NOT EXISTS letterpress_schema (version integer NOT NULL);
         DO $$ DECLARE v integer; BEGIN
           SELECT coalesce(max(version), 0) INTO v FROM letterpress_schema;
           IF v > {SCHEMA_VERSION} THEN RAISE EXCEPTION 'newer schema %', v; END IF;"
    );
    for (v, m) in MIGRATIONS.iter().enumerate() {
        script.push_str(&format!(
            " IF v = {v} THEN EXECUTE $m${m}$m$; v := {}; END IF;",
            v + 1
        ));
    }
    script.push_str(
        " DELETE FROM letterpress_schema; INSERT INTO letterpress_schema VALUES (v);
         END $$; COMMIT;",
    );
    c.trips.fetch_add(1, Ordering::Relaxed);
    c.handle
        .block_on(c.client.batch_execute(&script))
        .map_err(|e| c.err(e))?;
    Ok(Some(SCHEMA_VERSION))
}

/// What is checked of the database server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Nothing: the connection is encrypted, the server not authenticated.
    Nothing,
    /// Signed by a trusted CA (`verify-ca`).
    Ca,
    /// Signed by a trusted CA and issued for the host of the URL
    /// (`verify-full`).
    Full,
}

/// TLS to the database as libpq's `sslmode` does it, on rustls.
///
/// tokio-postgres parses `disable`, `prefer` and `require` only; for
/// `verify-ca` and `verify-full` it is given `require` and the check is
/// ours. As in libpq:
/// - the trusted CAs are those of `sslrootcert` in the URL, else of
///   `PGSSLROOTCERT`, else of `~/.postgresql/root.crt`;
///   `sslrootcert=system` means the machine's own (and `verify-full`);
/// - `prefer` and `require` check the chain too (as `verify-ca`) when that
///   file exists, and nothing when it does not;
/// - `verify-ca` and `verify-full` refuse to connect without it;
/// - `sslmode` comes from `PGSSLMODE` when the URL gives none; `prefer` is
///   the default.
///
/// Not supported: `allow` (libpq's "plain first, then TLS"), client
/// certificates and revocation lists (`sslcert`, `sslkey`, `sslcrl`),
/// which tokio-postgres refuses as unknown options.
struct Tls {
    /// The URL for tokio-postgres.
    url: String,
    check: Check,
    roots: Option<rustls::RootCertStore>,
}

impl Tls {
    fn of(target: &Target) -> std::result::Result<Tls, String> {
        let (base, query) = target
            .url
            .split_once('?')
            .unwrap_or((target.url.as_str(), ""));
        let mut mode = None;
        let mut rootcert = None;
        let mut rest = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            match &*k {
                "sslmode" => mode = Some(v.into_owned()),
                "sslrootcert" => rootcert = Some(v.into_owned()),
                _ => {
                    rest.append_pair(&k, &v);
                }
            }
        }
        let mode = mode
            .or_else(|| target.sslmode.clone())
            .unwrap_or_else(|| "prefer".into());
        let named = rootcert.is_some();
        let rootcert = rootcert.map(PathBuf::from).or(target.sslrootcert.clone());
        let system = rootcert.as_deref() == Some(std::path::Path::new("system"));
        let present = rootcert.as_deref().is_some_and(|p| p.is_file());
        let (pass, check) = match mode.as_str() {
            "disable" => ("disable", Check::Nothing),
            "prefer" | "require" if system => {
                return Err(format!(
                    "has sslrootcert=system with sslmode={mode}; the machine's CAs are for \
                     sslmode=verify-full (as with libpq)"
                ))
            }
            "prefer" | "require" if present => (mode.as_str(), Check::Ca),
            "prefer" | "require" => (mode.as_str(), Check::Nothing),
            "verify-ca" => ("require", Check::Ca),
            "verify-full" => ("require", Check::Full),
            "allow" => {
                return Err(
                    "has sslmode=allow, which letterpress does not support; use prefer, \
                     require, verify-ca or verify-full (or disable)"
                        .into(),
                )
            }
            other => {
                return Err(format!(
                    "has sslmode={other}; write disable, prefer, require, verify-ca or \
                     verify-full"
                ))
            }
        };
        let roots = match (check, rootcert) {
            (Check::Nothing, _) => None,
            _ if system => Some(system_roots()?),
            (_, Some(p)) if present => Some(roots_from(&p)?),
            (_, p) => {
                let file = p.map_or("~/.postgresql/root.crt".into(), |p| p.display().to_string());
                return Err(format!(
                    "has sslmode={mode}, which checks the server's certificate, but the CA \
                     file {file} does not exist{}; name the CAs that signed it with \
                     sslrootcert=FILE (or PGSSLROOTCERT), sslrootcert=system for the \
                     machine's own, or use sslmode=require to encrypt without checking",
                    if named {
                        ""
                    } else {
                        " (no sslrootcert in the URL)"
                    }
                ));
            }
        };
        let mut pairs = vec![format!("sslmode={pass}")];
        let rest = rest.finish();
        if !rest.is_empty() {
            pairs.push(rest);
        }
        Ok(Tls {
            url: format!("{base}?{}", pairs.join("&")),
            check,
            roots,
        })
    }

    fn connector(self) -> tokio_postgres_rustls::MakeRustlsConnect {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> = match self.roots {
            Some(roots) => {
                let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    Arc::clone(&provider),
                )
                .build()
                .expect("a store with at least one CA (checked when it was read)");
                match self.check {
                    Check::Full => webpki,
                    _ => Arc::new(Relaxed {
                        provider: Arc::clone(&provider),
                        chain: Some(webpki),
                    }),
                }
            }
            None => Arc::new(Relaxed {
                provider: Arc::clone(&provider),
                chain: None,
            }),
        };
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        tokio_postgres_rustls::MakeRustlsConnect::new(config)
    }
}

/// The CAs of a PEM file, as `sslrootcert` names it.
fn roots_from(path: &std::path::Path) -> std::result::Result<rustls::RootCertStore, String> {
    use rustls_pki_types::pem::PemObject;
    let bad = |why: String| format!("cannot use the CA file {}: {why}", path.display());
    let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    let (_, refused) = roots.add_parsable_certificates(certs);
    if roots.is_empty() {
        return Err(bad(if refused > 0 {
            "none of its certificates can be read".into()
        } else {
            "it has no certificate (PEM, -----BEGIN CERTIFICATE-----)".into()
        }));
    }
    Ok(roots)
}

/// The machine's CAs (`sslrootcert=system`).
fn system_roots() -> std::result::Result<rustls::RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        return Err("has sslrootcert=system, but this machine has no CA certificates".into());
    }
    Ok(roots)
}

/// The checks below `verify-full` (which uses rustls's WebPKI verifier as
/// it is): none for `require`, the chain to a trusted CA but not the name
/// for `verify-ca`.
#[derive(Debug)]
struct Relaxed {
    provider: Arc<rustls::crypto::CryptoProvider>,
    /// `verify-ca`: the verifier whose name check is waived.
    chain: Option<Arc<rustls::client::WebPkiServerVerifier>>,
}

impl rustls::client::danger::ServerCertVerifier for Relaxed {
    fn verify_server_cert(
        &self,
        cert: &rustls_pki_types::CertificateDer<'_>,
        chain: &[rustls_pki_types::CertificateDer<'_>],
        name: &rustls_pki_types::ServerName<'_>,
        ocsp: &[u8],
        now: rustls_pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        use rustls::CertificateError::{NotValidForName, NotValidForNameContext};
        let Some(verifier) = &self.chain else {
            return Ok(rustls::client::danger::ServerCertVerified::assertion());
        };
        // The name is checked after the chain: a name error means the
        // chain is good.
        match verifier.verify_server_cert(cert, chain, name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                NotValidForName | NotValidForNameContext { .. },
            )) => Ok(rustls::client::danger::ServerCertVerified::assertion()),
            r => r,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Why a connection failed; a refused certificate says what was checked.
fn connect_error(e: &tokio_postgres::Error, check: Check) -> String {
    if let Some(db) = e.as_db_error() {
        return db.message().to_string();
    }
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(&format!(": {inner}"));
        src = inner.source();
    }
    if s.contains("invalid peer certificate") {
        s.push_str(match check {
            Check::Full if s.contains("not valid for name") => {
                " (the server's certificate is not for the host in the URL, which \
                 sslmode=verify-full checks; connect by a name the certificate has, or use \
                 sslmode=verify-ca)"
            }
            _ => {
                " (the server's certificate is not signed by a CA of the CA file: \
                 sslrootcert, PGSSLROOTCERT or ~/.postgresql/root.crt; name the CA that \
                 signed it)"
            }
        });
    }
    s
}

/// The password for a connection from the password file, by libpq's
/// rules: lines `host:port:database:user:password`, `*` matches anything,
/// `\` escapes `:` and `\`, `#` starts a comment, the first match wins; the
/// file is ignored (with a warning) when others may read it.
pub fn pgpass(
    path: &std::path::Path,
    host: &str,
    port: u16,
    db: &str,
    user: &str,
) -> Option<Secret> {
    let text = std::fs::read_to_string(path).ok()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode();
        if mode & 0o077 != 0 {
            eprintln!(
                "letterpress: warning: password file {} has group or world access; \
                 permissions should be u=rw (0600) or less: ignored",
                path.display()
            );
            return None;
        }
    }
    pgpass_match(&text, host, port, db, user).map(Secret::new)
}

fn pgpass_match(text: &str, host: &str, port: u16, db: &str, user: &str) -> Option<String> {
    let port = port.to_string();
    let want = [host, port.as_str(), db, user];
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let mut fields = Vec::new();
        let mut cur = String::new();
        let mut chars = line.chars();
        while let Some(ch) = chars.next() {
            match ch {
                '\\' => cur.extend(chars.next()),
                ':' if fields.len() < 4 => fields.push(std::mem::take(&mut cur)),
                _ => cur.push(ch),
            }
        }
        fields.push(cur);
        if fields.len() != 5 {
            continue;
        }
        if fields[..4]
            .iter()
            .zip(want)
            .all(|(f, w)| f == "*" || f == w)
        {
            return Some(fields.swap_remove(4));
        }
    }
    None
}

impl Drop for PgJournal {
    /// A worker leaves: what it still holds goes back to the pool (in-flight
    /// ones, if any, become ambiguous), and it is marked gone. When its
    /// connection was lost, a new one does that, so that the others need
    /// not wait for the lease to run out.
    fn drop(&mut self) {
        if let Some(l) = &self.lease {
            let _ = self.flush();
            *l.stop.lock().unwrap_or_else(PoisonError::into_inner) = true;
            l.wake.notify_all();
            if let Some(h) = self.heartbeat.take() {
                let _ = h.join();
            }
            let unstarted: Vec<String> = self
                .unstarted
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .drain()
                .collect();
            let leave = |c: &Conn| -> Result<(usize, usize)> {
                // Never handed to the sink: not ambiguous.
                unmark(c, l.id, &unstarted)?;
                c.run(c.client.execute(
                    "UPDATE letterpress_workers SET gone = true, heartbeat = clock_timestamp(),
                       sent = $2 WHERE id = $1",
                    &[&l.id, &(l.sent.load(Ordering::Relaxed) as i64)],
                ))?;
                reap(c)
            };
            if self.conn.client.is_closed() {
                let mut t = self.target.clone();
                t.lease = Duration::ZERO;
                if let Ok(fresh) = PgJournal::open(&t, Mode::Read) {
                    if let Ok((amb, back)) = leave(&fresh.conn) {
                        eprintln!(
                            "letterpress: the connection to {} was lost; reconnected to hand \
                             back this worker's recipients: {amb} in flight are now ambiguous, \
                             {back} went back to the other workers",
                            self.conn.described
                        );
                    }
                }
            } else {
                let _ = leave(&self.conn);
            }
        }
        // The connection's thread ends when the client is dropped, with
        // this journal's fields.
    }
}

impl Journal for PgJournal {
    fn describe(&self) -> &str {
        &self.conn.described
    }

    fn meta(&self, key: &str) -> Result<Option<String>> {
        if self.empty {
            return Ok(None);
        }
        let c = &self.conn;
        let row = c.run(
            c.client
                .query_opt("SELECT value FROM letterpress_meta WHERE key = $1", &[&key]),
        )?;
        Ok(row.map(|r| r.get(0)))
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        if !self.writing()? {
            return Ok(());
        }
        let c = &self.conn;
        c.run(c.client.execute(
            "INSERT INTO letterpress_meta (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&key, &value],
        ))
        .map(drop)
    }

    /// Reaps the workers whose lease ran out: the others' recipients are
    /// theirs until then.
    fn recover(&self) -> Result<usize> {
        if !self.writing()? {
            return Ok(0);
        }
        Ok(self.reap()?.0)
    }

    fn known(&self) -> Result<HashMap<String, Known>> {
        if self.empty {
            return Ok(HashMap::new());
        }
        let c = &self.conn;
        let rows = c.run(c.client.query(
            "SELECT address, state, fingerprint, row, reply FROM letterpress_recipients",
            &[],
        ))?;
        Ok(rows
            .iter()
            .map(|r| {
                let fp: &str = r.get(2);
                (
                    r.get::<_, String>(0),
                    Known {
                        state: State::parse(r.get(1)),
                        fingerprint: u128::from_str_radix(fp, 16).unwrap_or(0),
                        row: r.get::<_, i64>(3) as usize,
                        reply: r.get(4),
                    },
                )
            })
            .collect())
    }

    /// Plans of workers starting together are written one after the other.
    fn plan_start(&self) -> Result<()> {
        if !self.writing()? {
            return Ok(());
        }
        let c = &self.conn;
        c.run(
            c.client
                .batch_execute(&format!("BEGIN; SELECT pg_advisory_xact_lock({LOCK_KEY})")),
        )?;
        self.planning.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// New recipients are inserted; known ones are updated only when their
    /// data changed, so that a worker starting locks no row the others send.
    fn add(&self, entries: &[NewEntry<'_>]) -> Result<()> {
        if !self.writing()? || entries.is_empty() {
            return Ok(());
        }
        let address: Vec<&str> = entries.iter().map(|e| e.address).collect();
        let row: Vec<i64> = entries.iter().map(|e| e.row as i64).collect();
        let line: Vec<i64> = entries.iter().map(|e| e.line as i64).collect();
        let fp: Vec<String> = entries
            .iter()
            .map(|e| format!("{:032x}", e.fingerprint))
            .collect();
        let fields: Vec<String> = entries
            .iter()
            .map(|e| serde_json::to_string(e.fields).expect("plain JSON"))
            .collect();
        let c = &self.conn;
        c.run(c.client.execute(
            "WITH n AS (SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[], $4::text[],
                 $5::text[]) AS n(address, row, line, fingerprint, fields)),
             upd AS (
               UPDATE letterpress_recipients r SET row = n.row, line = n.line,
                 fingerprint = n.fingerprint, fields = n.fields
               FROM n WHERE r.address = n.address AND (r.row, r.line, r.fingerprint, r.fields)
                 IS DISTINCT FROM (n.row, n.line, n.fingerprint, n.fields) RETURNING 1)
             INSERT INTO letterpress_recipients (address, row, line, fingerprint, fields, state,
               updated)
             SELECT address, row, line, fingerprint, fields, 'pending', $6 FROM n
             ON CONFLICT (address) DO NOTHING",
            &[&address, &row, &line, &fp, &fields, &now()],
        ))
        .map(drop)
    }

    fn plan_end(&self, commit: bool) -> Result<()> {
        if !self.writing()? || !self.planning.swap(false, Ordering::Relaxed) {
            return Ok(());
        }
        let c = &self.conn;
        c.run(
            c.client
                .batch_execute(if commit { "COMMIT" } else { "ROLLBACK" }),
        )
    }

    fn begin(&self, address: &str, message_id: &str) -> Result<()> {
        self.submit(
            Op::Begin {
                address: address.into(),
                message_id: message_id.into(),
            },
            true,
        )
    }

    fn finish(&self, address: &str, state: State, code: Option<u16>, reply: &str) -> Result<()> {
        self.submit(
            Op::Finish {
                address: address.into(),
                state,
                code,
                reply: reply.into(),
            },
            true,
        )
    }

    fn accepted_later(&self, address: &str, reply: &str) -> Result<()> {
        self.submit(
            Op::Finish {
                address: address.into(),
                state: State::Accepted,
                code: None,
                reply: reply.into(),
            },
            false,
        )
    }

    fn finished_later(
        &self,
        address: &str,
        state: State,
        code: Option<u16>,
        reply: &str,
    ) -> Result<()> {
        self.submit(
            Op::Finish {
                address: address.into(),
                state,
                code,
                reply: reply.into(),
            },
            false,
        )
    }

    fn ahead(&self) -> bool {
        self.lease.is_some()
    }

    /// The commit runs as a task on the connection's runtime, pipelined
    /// with the other threads' writes.
    fn begin_ahead(&self, address: &str, message_id: &str) -> Result<Ahead> {
        if !self.writing()? {
            return Ok(Ahead::settled(address, Ok(())));
        }
        let writer = self.writer()?;
        let op = Op::Begin {
            address: address.into(),
            message_id: message_id.into(),
        };
        let Some(batch) = self.enqueue(op, true)? else {
            return Ok(Ahead::settled(address, Ok(())));
        };
        self.unstarted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(address.to_string());
        let (ahead, tx) = Ahead::pending(address);
        let begun = address.to_string();
        self.conn.handle.spawn(async move {
            let r = writer.commit(&batch).await;
            let _ = tx.send(writer.settle(r, Some(&begun)));
        });
        Ok(ahead)
    }

    /// Besides the commit: the connection is up and no later write failed
    /// (else the outcome could not be recorded), and the lease is known to
    /// be good: a worker paused past its lease starts none of the letters
    /// it marked before, though their marks were accepted.
    fn ready(&self, ahead: Ahead) -> Result<()> {
        let address = ahead.address.clone();
        ahead.wait(|| self.connection_lost())?;
        if self.conn.client.is_closed() {
            return Err(self.connection_lost());
        }
        if let Some(e) = &self
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .error
        {
            return Err(refuse(&self.conn.described, e.clone()));
        }
        if self.lease.as_ref().is_some_and(|l| !l.holds()) {
            return Err(self.lost_lease());
        }
        self.unstarted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&address);
        Ok(())
    }

    /// A mark whose commit failed is left to the worker's leaving (on a
    /// new connection if need be), which undoes it if it was written.
    fn release(&self, ahead: Ahead) -> Result<()> {
        let address = ahead.address.clone();
        if ahead.wait(|| self.connection_lost()).is_err() || !self.writing()? {
            return Ok(());
        }
        unmark(&self.conn, self.worker(), std::slice::from_ref(&address))?;
        self.unstarted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&address);
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        let queued = !self
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .ops
            .is_empty();
        match queued {
            true => self.submit(Op::Nothing, true),
            false => Ok(()),
        }
    }

    fn counts(&self) -> Result<Vec<(State, usize)>> {
        let found: HashMap<State, usize> = if self.empty {
            HashMap::new()
        } else {
            let c = &self.conn;
            c.run(c.client.query(
                "SELECT state, count(*) FROM letterpress_recipients GROUP BY state",
                &[],
            ))?
            .iter()
            .map(|r| (State::parse(r.get(0)), r.get::<_, i64>(1) as usize))
            .collect()
        };
        Ok(State::ALL
            .into_iter()
            .map(|s| (s, found.get(&s).copied().unwrap_or(0)))
            .collect())
    }

    fn rows_in(&self, states: &[State]) -> Result<Vec<FailedRow>> {
        if self.empty {
            return Ok(Vec::new());
        }
        let names: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
        let c = &self.conn;
        let rows = c.run(c.client.query(
            "SELECT row, fields, state, code, coalesce(reply, '') FROM letterpress_recipients
             WHERE state = ANY($1) ORDER BY row",
            &[&names],
        ))?;
        Ok(rows
            .iter()
            .map(|r| FailedRow {
                row: r.get::<_, i64>(0) as usize,
                fields: serde_json::from_str(r.get(1)).unwrap_or_default(),
                state: State::parse(r.get(2)),
                code: r.get::<_, Option<i32>>(3).map(|c| c as u16),
                reply: r.get(4),
            })
            .collect())
    }

    fn dump(&self) -> Result<Dump> {
        if self.empty {
            return Ok(Dump::default());
        }
        let c = &self.conn;
        let meta = c
            .run(
                c.client
                    .query("SELECT key, value FROM letterpress_meta", &[]),
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let records = c
            .run(c.client.query(
                "SELECT address, row, line, fingerprint, fields, state, attempts, code, reply,
                   message_id, updated FROM letterpress_recipients ORDER BY row",
                &[],
            ))?
            .iter()
            .map(|r| Record {
                address: r.get(0),
                row: r.get(1),
                line: r.get(2),
                fingerprint: r.get(3),
                fields: r.get(4),
                state: State::parse(r.get(5)),
                attempts: r.get::<_, i32>(6).into(),
                code: r.get::<_, Option<i32>>(7).map(i64::from),
                reply: r.get(8),
                message_id: r.get(9),
                updated: r.get(10),
            })
            .collect();
        Ok(Dump {
            meta,
            records,
            feedback: self.feedback()?,
        })
    }

    fn load(&self, dump: &Dump) -> Result<()> {
        self.writing()?;
        let c = &self.conn;
        let n: i64 = c
            .run(
                c.client
                    .query_one("SELECT count(*) FROM letterpress_recipients", &[]),
            )?
            .get(0);
        if n > 0 {
            return Err(refuse(
                &c.described,
                format!("already holds {n} recipients; copy into a new journal"),
            ));
        }
        self.plan_start()?;
        let r = (|| {
            for (k, v) in &dump.meta {
                self.set_meta(k, v)?;
            }
            for chunk in dump.records.chunks(1000) {
                let col = |f: &dyn Fn(&Record) -> String| chunk.iter().map(f).collect::<Vec<_>>();
                let ints = |f: &dyn Fn(&Record) -> i64| chunk.iter().map(f).collect::<Vec<_>>();
                let state = |r: &Record| match r.state {
                    State::Inflight => State::Ambiguous,
                    s => s,
                };
                c.run(c.client.execute(
                    "INSERT INTO letterpress_recipients (address, row, line, fingerprint, fields,
                       state, attempts, code, reply, message_id, updated)
                     SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[], $4::text[],
                       $5::text[], $6::text[], $7::int4[], $8::int4[], $9::text[], $10::text[],
                       $11::int8[])",
                    &[
                        &col(&|r| r.address.clone()),
                        &ints(&|r| r.row),
                        &ints(&|r| r.line),
                        &col(&|r| r.fingerprint.clone()),
                        &col(&|r| r.fields.clone()),
                        &col(&|r| state(r).as_str().to_string()),
                        &chunk.iter().map(|r| r.attempts as i32).collect::<Vec<_>>(),
                        &chunk
                            .iter()
                            .map(|r| r.code.map(|c| c as i32))
                            .collect::<Vec<_>>(),
                        &chunk
                            .iter()
                            .map(|r| match r.state {
                                State::Inflight => Some(
                                    "in flight when the journal was copied; the server may \
                                     have it"
                                        .to_string(),
                                ),
                                _ => r.reply.clone(),
                            })
                            .collect::<Vec<_>>(),
                        &chunk
                            .iter()
                            .map(|r| r.message_id.clone())
                            .collect::<Vec<_>>(),
                        &ints(&|r| r.updated),
                    ],
                ))?;
            }
            for f in &dump.feedback {
                self.insert_feedback(f)?;
            }
            Ok(())
        })();
        self.plan_end(r.is_ok())?;
        r
    }

    fn record_feedback(&self, f: &Feedback) -> Result<bool> {
        if !self.writing()? {
            let known = self.feedback()?.iter().any(|k| k.key == f.key);
            return Ok(!known);
        }
        self.insert_feedback(f)
    }

    fn feedback(&self) -> Result<Vec<Feedback>> {
        if self.empty {
            return Ok(Vec::new());
        }
        let c = &self.conn;
        let rows = c.run(c.client.query(
            "SELECT key, address, kind, status, diagnostic, at FROM letterpress_feedback
             ORDER BY at, seq",
            &[],
        ))?;
        Ok(rows
            .iter()
            .map(|r| Feedback {
                key: r.get(0),
                address: r.get(1),
                kind: Kind::parse(r.get(2)).unwrap_or(Kind::Hard),
                status: r.get(3),
                diagnostic: r.get(4),
                at: r.get(5),
            })
            .collect())
    }

    fn message_ids(&self) -> Result<HashMap<String, String>> {
        if self.empty {
            return Ok(HashMap::new());
        }
        let c = &self.conn;
        let rows = c.run(c.client.query(
            "SELECT message_id, address FROM letterpress_recipients
             WHERE message_id IS NOT NULL",
            &[],
        ))?;
        Ok(rows
            .iter()
            .map(|r| {
                let id: &str = r.get(0);
                (id.trim_matches(['<', '>']).to_string(), r.get(1))
            })
            .collect())
    }

    fn shared(&self) -> bool {
        self.lease.is_some()
    }

    fn claim(&self, max: usize) -> Result<Claim> {
        let me = self.worker();
        let c = &self.conn;
        for _ in 0..2 {
            if self
                .lease
                .as_ref()
                .is_some_and(|l| l.lost.load(Ordering::Relaxed))
            {
                return Err(self.lost_lease());
            }
            let stmt = self
                .claim_stmt
                .as_ref()
                .ok_or_else(|| refuse(&c.described, "has no tables (a bug in letterpress)"))?;
            let rows = c.run(c.client.query(stmt, &[&me, &(max as i64)]))?;
            if !rows.is_empty() {
                let mut got: Vec<(usize, String)> = rows
                    .iter()
                    .map(|r| (r.get::<_, i64>(0) as usize, r.get(1)))
                    .collect();
                got.sort();
                return Ok(Claim::Rows(got));
            }
            self.reap()?;
            let r = c.run(c.client.query_one(
                "SELECT (SELECT NOT gone AND lease_until > clock_timestamp()
                         FROM letterpress_workers WHERE id = $1),
                   (SELECT count(*) FROM letterpress_recipients r
                    JOIN letterpress_workers w ON w.id = r.worker
                    WHERE r.worker <> $1 AND NOT w.gone),
                   (SELECT count(*) FROM letterpress_recipients WHERE pool)",
                &[&me],
            ))?;
            if r.get::<_, Option<bool>>(0) != Some(true) {
                if let Some(l) = &self.lease {
                    l.lost.store(true, Ordering::Relaxed);
                }
                return Err(self.lost_lease());
            }
            if r.get::<_, i64>(2) > 0 {
                continue;
            }
            if r.get::<_, i64>(1) > 0 {
                // The others may wait for this worker's last acceptances,
                // queued to ride with a commit that no letter brings now.
                self.flush()?;
                return Ok(Claim::Wait);
            }
            return Ok(Claim::Done);
        }
        Ok(Claim::Wait)
    }

    fn requeue(&self, addresses: &[String]) -> Result<()> {
        if !self.writing()? || addresses.is_empty() {
            return Ok(());
        }
        let c = &self.conn;
        c.run(c.client.execute(
            "UPDATE letterpress_recipients SET state = 'pending'
             WHERE address = ANY($1) AND state IN ('failed', 'ambiguous') AND worker IS NULL",
            &[&addresses],
        ))
        .map(drop)
    }

    /// A token bucket of one token: the campaign's next start time, moved
    /// on by `interval` by each letter that takes it.
    fn pace(&self, interval: Duration) -> Result<Option<Duration>> {
        if !self.shared() {
            return Ok(None);
        }
        let c = &self.conn;
        let secs = interval.as_secs_f64();
        let r = c.run(c.client.query_one(
            "UPDATE letterpress_pace
             SET next_start = greatest(next_start, clock_timestamp()) + make_interval(secs => $1)
             WHERE id = 1
             RETURNING extract(epoch FROM next_start - clock_timestamp())::float8 - $1",
            &[&secs],
        ))?;
        Ok(Some(Duration::from_secs_f64(r.get::<_, f64>(0).max(0.0))))
    }

    fn workers(&self) -> Result<Vec<Worker>> {
        if self.empty {
            return Ok(Vec::new());
        }
        let c = &self.conn;
        let rows = c.run(c.client.query(
            "SELECT w.id, w.host, w.pid, to_char(w.started, 'YYYY-MM-DD HH24:MI:SS TZ'),
               NOT w.gone AND w.lease_until > clock_timestamp(),
               count(r.address) FILTER (WHERE r.state <> 'inflight'),
               count(r.address) FILTER (WHERE r.state = 'inflight'), w.sent,
               extract(epoch FROM (CASE WHEN w.gone THEN w.heartbeat
                 ELSE clock_timestamp() END) - w.started)::float8, w.id = $1
             FROM letterpress_workers w LEFT JOIN letterpress_recipients r ON r.worker = w.id
             GROUP BY w.id ORDER BY w.id",
            &[&self.worker()],
        ))?;
        Ok(rows
            .iter()
            .map(|r| Worker {
                id: r.get(0),
                host: r.get(1),
                pid: r.get(2),
                started: r.get(3),
                alive: r.get(4),
                holds: r.get::<_, i64>(5) as usize,
                inflight: r.get::<_, i64>(6) as usize,
                sent: r.get::<_, i64>(7) as u64,
                seconds: r.get(8),
                me: r.get(9),
            })
            .collect())
    }

    fn round_trips(&self) -> Option<u64> {
        let lease = self
            .lease
            .as_ref()
            .map_or(0, |l| l.conn.trips.load(Ordering::Relaxed));
        Some(self.conn.trips.load(Ordering::Relaxed) + lease)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_follows_libpqs_sslmode() {
        let dir = tempfile::tempdir().unwrap();
        let target = |url: &str, mode: Option<&str>, root: Option<&std::path::Path>| Target {
            url: url.into(),
            password: None,
            passfile: None,
            sslmode: mode.map(str::to_string),
            sslrootcert: root.map(|p| p.to_path_buf()),
            lease: Duration::from_secs(30),
        };
        let of = |t: Target| Tls::of(&t).map(|t| (t.url, t.check));
        let u = "postgres://me@db.example.org:5432/news";
        // tokio-postgres gets the modes it knows, and the other options.
        assert_eq!(
            of(target(&format!("{u}?application_name=x"), None, None)),
            Ok((
                format!("{u}?sslmode=prefer&application_name=x"),
                Check::Nothing
            ))
        );
        // The URL's mode before PGSSLMODE's.
        assert_eq!(
            of(target(
                &format!("{u}?sslmode=disable"),
                Some("require"),
                None
            )),
            Ok((format!("{u}?sslmode=disable"), Check::Nothing))
        );
        assert_eq!(
            of(target(u, Some("require"), None)),
            Ok((format!("{u}?sslmode=require"), Check::Nothing))
        );
        // A mode that checks needs a CA file, and says which one is missing.
        let missing = dir.path().join("root.crt");
        let e = of(target(
            &format!("{u}?sslmode=verify-full"),
            None,
            Some(&missing),
        ))
        .unwrap_err();
        assert!(e.contains("root.crt does not exist"), "{e}");
        // A CA file that holds no certificate is refused, not ignored.
        std::fs::write(&missing, "not a certificate\n").unwrap();
        for mode in ["verify-ca", "require"] {
            let e = of(target(&format!("{u}?sslmode={mode}"), None, Some(&missing))).unwrap_err();
            assert!(e.contains("has no certificate"), "{mode}: {e}");
        }
        for (mode, why) in [
            ("allow", "does not support"),
            ("verify", "write disable, prefer"),
        ] {
            let e = of(target(&format!("{u}?sslmode={mode}"), None, None)).unwrap_err();
            assert!(e.contains(why), "{mode}: {e}");
        }
        let e = of(target(
            &format!("{u}?sslmode=require&sslrootcert=system"),
            None,
            None,
        ))
        .unwrap_err();
        assert!(e.contains("verify-full"), "{e}");
    }

    #[test]
    fn pgpass_follows_libpq() {
        let text = "# comment\n\
                    other:5432:*:me:wrong\n\
                    db.example.org:*:news:me:s\\:e\\\\cret\n\
                    *:*:*:*:fallback\n";
        assert_eq!(
            pgpass_match(text, "db.example.org", 5433, "news", "me").as_deref(),
            Some("s:e\\cret")
        );
        assert_eq!(
            pgpass_match(text, "other", 5432, "x", "me").as_deref(),
            Some("wrong")
        );
        assert_eq!(
            pgpass_match(text, "elsewhere", 1, "x", "y").as_deref(),
            Some("fallback")
        );
        assert_eq!(pgpass_match("a:b:c\n", "a", 1, "c", "d"), None);
    }

    #[test]
    fn a_readable_password_file_is_ignored() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pgpass");
        std::fs::write(&p, "*:*:*:*:pw\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(pgpass(&p, "h", 1, "d", "u").is_none());
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(pgpass(&p, "h", 1, "d", "u").unwrap().expose(), "pw");
    }
}
