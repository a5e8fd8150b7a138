//! The SQLite journal: one file per campaign, and the only place that
//! writes SQL. It must not be misused: it refuses a file that is not a
//! journal, keeps a second sender out, and lets readers create no file.
//!
//! Why SQLite (through rusqlite, SQLite compiled in): it is a real store
//! with atomic commits and crash recovery we do not have to write, it can be
//! queried (`letterpress status`, `sqlite3`), and in WAL mode a commit is one
//! append to the log. `synchronous=NORMAL` makes each commit safe against the
//! process dying (kill -9, a panic, the OOM killer): the log is in the
//! kernel's hands when the commit returns. Only a power loss or a kernel
//! crash can lose the last commits; `--journal-sync` adds an fsync per
//! commit for that. Writes of concurrent senders are committed in groups
//! (one transaction for whatever is queued), and a sender never starts
//! MAIL FROM before its `inflight` record is committed.
//!
//! **Identity.** A journal is stamped `application_id` = [`APPLICATION_ID`]
//! and `user_version` = [`SCHEMA_VERSION`] when it is made. Every open checks
//! the file before anything is written and refuses an empty file, a file
//! that is not SQLite, a database of another program, and a journal of a
//! newer letterpress. A journal made before the stamp existed (application_id
//! 0 and exactly our tables `meta` and `recipients`, with our columns) is
//! adopted: read as it is, and stamped by the next send.
//!
//! **One sender at a time.** [`Mode::Send`] holds an exclusive `flock` on the
//! database file itself for the journal's lifetime and records its owner in
//! `meta`. flock locks are apart from the POSIX (fcntl) locks SQLite takes on
//! the same file, and belong to an open file description, so a second open
//! conflicts even within one process. (On Windows the lock would be
//! mandatory and block SQLite's own reads: that needs a lock file beside the
//! journal instead.)
//!
//! **Readers create no file.** At rest a journal is in rollback mode
//! (`journal_mode=DELETE`): a sender switches it to WAL while it runs and
//! back when it is dropped, which also removes `-wal` and `-shm`. A reader
//! opens read-only: at rest it creates nothing, and when `-wal`/`-shm` are
//! there (a sender running, or one that crashed) it uses them.

use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension};

use super::{
    Dump, FailedRow, Feedback, Journal, Kind as FeedbackKind, Known, NewEntry, Record, State,
};
use crate::error::{Error, Result};

/// `PRAGMA application_id` of a letterpress journal: "LPRS".
pub const APPLICATION_ID: i64 = 0x4C50_5253;

/// `PRAGMA user_version`: the layout of the tables. A journal with a higher
/// one was written by a newer letterpress and is refused.
/// Version 2 added the `feedback` table (bounces and complaints); a send or
/// `bounces` adds it to a version 1 journal.
pub const SCHEMA_VERSION: i64 = 2;

/// How a journal is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `send`: makes the journal if it is missing, and owns it: one sender
    /// at a time. Another sender fails at once with [`Error::JournalBusy`],
    /// or with `wait` blocks until the first is done. `full_sync` adds an
    /// fsync per commit.
    Send { wait: bool, full_sync: bool },
    /// `status`: reads, and works while a sender runs. A missing journal is
    /// an error; a write is refused.
    Read,
    /// `send --dry-run`: reads like [`Mode::Read`], but a missing journal
    /// reads as an empty one (nothing sent yet), and writes are accepted and
    /// dropped.
    DryRun,
}

/// What happens to a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writes {
    Commit,
    Drop,
    Refuse,
}

/// A write of the sending phase, waiting for its commit.
enum Op {
    Begin {
        address: String,
        message_id: String,
        at: i64,
    },
    Finish {
        address: String,
        state: State,
        code: Option<u16>,
        reply: String,
        at: i64,
    },
    /// Nothing to write: makes [`Journal::flush`] commit what is queued.
    Nothing,
}

/// When a queued write is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Commit {
    /// Before the call returns.
    Now,
    /// By this thread now, or by the thread committing now right after.
    Soon,
    /// With the next write that commits.
    WithNext,
}

#[derive(Default)]
struct Queue {
    ops: Vec<Op>,
    /// Ops queued so far, and how many of them are committed.
    submitted: u64,
    committed: u64,
    /// A thread is committing a batch now.
    committing: bool,
    /// A commit failed: every later write reports it.
    error: Option<String>,
}

/// An open SQLite journal. Shared by the sending threads, which commit
/// their writes in groups (see [`Journal::finish`]).
pub struct SqliteJournal {
    path: PathBuf,
    described: String,
    conn: Mutex<Connection>,
    queue: Mutex<Queue>,
    committed: Condvar,
    writes: Writes,
    /// [`Mode::Send`]: the lock. Declared last: it is released only after
    /// the connection is closed.
    lock: Option<Lock>,
}

impl std::fmt::Debug for SqliteJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteJournal")
            .field("path", &self.path)
            .field("writes", &self.writes)
            .finish()
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS recipients (
    address     TEXT PRIMARY KEY,
    row         INTEGER NOT NULL,
    line        INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    fields      TEXT NOT NULL,
    state       TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    code        INTEGER,
    reply       TEXT,
    message_id  TEXT,
    updated     INTEGER NOT NULL
);
";

/// Version 2: bounces and complaints, once per returned message.
const FEEDBACK: &str = "
CREATE TABLE IF NOT EXISTS feedback (
    key         TEXT PRIMARY KEY,
    address     TEXT NOT NULL,
    kind        TEXT NOT NULL,
    status      TEXT NOT NULL,
    diagnostic  TEXT NOT NULL,
    at          INTEGER NOT NULL
);
";

/// Prepares only if both tables have every column this code uses.
const COLUMNS: [&str; 2] = [
    "SELECT key, value FROM meta LIMIT 0",
    "SELECT address, row, line, fingerprint, fields, state, attempts, code, reply,
       message_id, updated FROM recipients LIMIT 0",
];

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn refuse(path: &Path, message: impl Into<String>) -> Error {
    Error::Journal {
        path: path.into(),
        message: message.into(),
    }
}

fn sql(path: &Path) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| refuse(path, e.to_string())
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| refuse(path, e.to_string())
}

/// `path` with `suffix` appended to its name: SQLite's `-wal`, `-shm`.
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    s.into()
}

impl SqliteJournal {
    /// Opens the journal at `path` (see [`Mode`]). Whatever the mode, a
    /// file that is not a letterpress journal is refused before anything is
    /// written to it.
    pub fn open(path: &Path, mode: Mode) -> Result<SqliteJournal> {
        match mode {
            Mode::Send { wait, full_sync } => open_send(path, wait, full_sync),
            Mode::Read => open_read(path, Writes::Refuse),
            Mode::DryRun => open_read(path, Writes::Drop),
        }
    }

    fn new(path: &Path, conn: Connection, writes: Writes, lock: Option<Lock>) -> SqliteJournal {
        SqliteJournal {
            path: path.into(),
            described: path.display().to_string(),
            conn: Mutex::new(conn),
            queue: Mutex::new(Queue::default()),
            committed: Condvar::new(),
            writes,
            lock,
        }
    }

    fn err(&self, e: rusqlite::Error) -> Error {
        refuse(&self.path, e.to_string())
    }

    /// A version 1 journal opened to read has no `feedback` table.
    fn has_feedback_table(&self) -> Result<bool> {
        self.conn()
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'feedback'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(|e| self.err(e))
    }

    fn has_feedback_key(&self, key: &str) -> Result<bool> {
        if !self.has_feedback_table()? {
            return Ok(false);
        }
        self.conn()
            .query_row("SELECT count(*) FROM feedback WHERE key = ?1", [key], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n > 0)
            .map_err(|e| self.err(e))
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent: go on.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a write goes to the file: not in a dry run (it is dropped);
    /// a journal opened to read refuses it.
    fn writing(&self) -> Result<bool> {
        match self.writes {
            Writes::Commit => Ok(true),
            Writes::Drop => Ok(false),
            Writes::Refuse => Err(refuse(
                &self.path,
                "is open for reading only, and a write was attempted (a bug in letterpress)",
            )),
        }
    }

    /// Queues `op`; the first thread to find no commit under way commits
    /// everything queued in one transaction, and goes on while more
    /// arrives. With `wait`, returns only once `op` is committed.
    fn submit(&self, op: Op, wait: Commit) -> Result<()> {
        if !self.writing()? {
            return Ok(());
        }
        let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        q.ops.push(op);
        q.submitted += 1;
        if wait == Commit::WithNext {
            return Ok(());
        }
        let mine = q.submitted;
        loop {
            if let Some(e) = &q.error {
                return Err(refuse(&self.path, e.clone()));
            }
            if q.committed >= mine {
                return Ok(());
            }
            if !q.committing {
                q.committing = true;
                while !q.ops.is_empty() {
                    let batch = std::mem::take(&mut q.ops);
                    let upto = q.submitted;
                    drop(q);
                    let r = self.commit(&batch);
                    q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
                    q.committed = upto;
                    if let Err(e) = r {
                        q.error = Some(e.to_string());
                    }
                    self.committed.notify_all();
                }
                q.committing = false;
                continue;
            }
            if wait == Commit::Soon {
                // The committing thread takes it before it stops.
                return Ok(());
            }
            q = self
                .committed
                .wait(q)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn commit(&self, batch: &[Op]) -> std::result::Result<(), rusqlite::Error> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut begin = tx.prepare_cached(
                "UPDATE recipients SET state = 'inflight', attempts = attempts + 1,
                   message_id = ?2, updated = ?3 WHERE address = ?1",
            )?;
            let mut finish = tx.prepare_cached(
                "UPDATE recipients SET state = ?2, code = ?3, reply = ?4, updated = ?5
                 WHERE address = ?1",
            )?;
            for op in batch {
                match op {
                    Op::Begin {
                        address,
                        message_id,
                        at,
                    } => begin.execute(params![address, message_id, at])?,
                    Op::Finish {
                        address,
                        state,
                        code,
                        reply,
                        at,
                    } => finish.execute(params![address, state.as_str(), code, reply, at])?,
                    Op::Nothing => 0,
                };
            }
        }
        tx.commit()
    }
}

impl Drop for SqliteJournal {
    /// A sender leaves the journal at rest: no owner, rollback mode (which
    /// checkpoints the log and removes `-wal` and `-shm`). While a reader
    /// has it open the switch fails and the journal stays in WAL mode, which
    /// is still correct; the next sender tries again.
    fn drop(&mut self) {
        if self.lock.is_none() {
            return;
        }
        // Normally done by the send; here for an early return.
        let _ = self.flush();
        let conn = self.conn.get_mut().unwrap_or_else(PoisonError::into_inner);
        let _ = conn.busy_timeout(Duration::from_secs(1));
        let _ = conn.execute("DELETE FROM meta WHERE key = 'owner'", []);
        let _ = conn.query_row("PRAGMA journal_mode = DELETE", [], |_| Ok(()));
    }
}

impl Journal for SqliteJournal {
    fn describe(&self) -> &str {
        &self.described
    }

    fn meta(&self, key: &str) -> Result<Option<String>> {
        self.conn()
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        if !self.writing()? {
            return Ok(());
        }
        self.conn()
            .execute(
                "INSERT INTO meta(key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [key, value],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    fn recover(&self) -> Result<usize> {
        if !self.writing()? {
            return Ok(0);
        }
        self.conn()
            .execute(
                "UPDATE recipients SET state = 'ambiguous', code = NULL,
                   reply = 'in flight when an earlier run stopped; the server may have it',
                   updated = ?1
                 WHERE state = 'inflight'",
                [now()],
            )
            .map_err(|e| self.err(e))
    }

    fn record_feedback(&self, f: &Feedback) -> Result<bool> {
        if !self.writing()? {
            return Ok(!self.has_feedback_key(&f.key)?);
        }
        self.flush()?;
        let n = insert_feedback(&self.conn(), f).map_err(|e| self.err(e))?;
        Ok(n == 1)
    }

    fn feedback(&self) -> Result<Vec<Feedback>> {
        if !self.has_feedback_table()? {
            return Ok(Vec::new());
        }
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT key, address, kind, status, diagnostic, at FROM feedback
                 ORDER BY at, rowid",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Feedback {
                    key: r.get(0)?,
                    address: r.get(1)?,
                    kind: FeedbackKind::parse(&r.get::<_, String>(2)?)
                        .unwrap_or(FeedbackKind::Hard),
                    status: r.get(3)?,
                    diagnostic: r.get(4)?,
                    at: r.get(5)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.err(e))
    }

    fn message_ids(&self) -> Result<HashMap<String, String>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT message_id, address FROM recipients WHERE message_id IS NOT NULL")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                let id: String = r.get(0)?;
                Ok((
                    id.trim_matches(['<', '>']).to_string(),
                    r.get::<_, String>(1)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.err(e))
    }

    fn known(&self) -> Result<HashMap<String, Known>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT address, state, fingerprint, row, reply FROM recipients")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                let fp: String = r.get(2)?;
                Ok((
                    r.get::<_, String>(0)?,
                    Known {
                        state: State::parse(&r.get::<_, String>(1)?),
                        fingerprint: u128::from_str_radix(&fp, 16).unwrap_or(0),
                        row: r.get::<_, i64>(3)? as usize,
                        reply: r.get(4)?,
                    },
                ))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.err(e))
    }

    fn plan_start(&self) -> Result<()> {
        if !self.writing()? {
            return Ok(());
        }
        self.conn()
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| self.err(e))
    }

    fn add(&self, entries: &[NewEntry<'_>]) -> Result<()> {
        if !self.writing()? || entries.is_empty() {
            return Ok(());
        }
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "INSERT INTO recipients(address, row, line, fingerprint, fields, state, updated)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6)
                 ON CONFLICT(address) DO UPDATE SET row = excluded.row,
                   line = excluded.line, fingerprint = excluded.fingerprint,
                   fields = excluded.fields",
            )
            .map_err(|e| self.err(e))?;
        let t = now();
        for e in entries {
            let fields = serde_json::to_string(e.fields).expect("plain JSON");
            stmt.execute(params![
                e.address,
                e.row as i64,
                e.line as i64,
                format!("{:032x}", e.fingerprint),
                fields,
                t
            ])
            .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    fn plan_end(&self, commit: bool) -> Result<()> {
        if !self.writing()? {
            return Ok(());
        }
        self.conn()
            .execute_batch(if commit { "COMMIT" } else { "ROLLBACK" })
            .map_err(|e| self.err(e))
    }

    fn begin(&self, address: &str, message_id: &str) -> Result<()> {
        self.submit(
            Op::Begin {
                address: address.into(),
                message_id: message_id.into(),
                at: now(),
            },
            Commit::Now,
        )
    }

    fn accepted_later(&self, address: &str, reply: &str) -> Result<()> {
        self.submit(
            Op::Finish {
                address: address.into(),
                state: State::Accepted,
                code: None,
                reply: reply.into(),
                at: now(),
            },
            Commit::WithNext,
        )
    }

    fn flush(&self) -> Result<()> {
        let queued = {
            let q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            !q.ops.is_empty()
        };
        match queued {
            true => self.submit(Op::Nothing, Commit::Now),
            false => Ok(()),
        }
    }

    fn finish(&self, address: &str, state: State, code: Option<u16>, reply: &str) -> Result<()> {
        self.submit(
            Op::Finish {
                address: address.into(),
                state,
                code,
                reply: reply.into(),
                at: now(),
            },
            Commit::Soon,
        )
    }

    fn counts(&self) -> Result<Vec<(State, usize)>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT state, count(*) FROM recipients GROUP BY state")
            .map_err(|e| self.err(e))?;
        let found: HashMap<State, usize> = stmt
            .query_map([], |r| {
                Ok((
                    State::parse(&r.get::<_, String>(0)?),
                    r.get::<_, i64>(1)? as usize,
                ))
            })
            .map_err(|e| self.err(e))?
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| self.err(e))?;
        Ok(State::ALL
            .into_iter()
            .map(|s| (s, found.get(&s).copied().unwrap_or(0)))
            .collect())
    }

    fn dump(&self) -> Result<Dump> {
        // Before the connection is held: `feedback` takes it too.
        let feedback = self.feedback()?;
        let conn = self.conn();
        let meta = conn
            .prepare("SELECT key, value FROM meta WHERE key <> 'owner'")
            .and_then(|mut st| {
                st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<std::result::Result<Vec<_>, _>>()
            })
            .map_err(|e| self.err(e))?;
        let records = conn
            .prepare(
                "SELECT address, row, line, fingerprint, fields, state, attempts, code, reply,
                   message_id, updated FROM recipients ORDER BY row",
            )
            .and_then(|mut st| {
                st.query_map([], |r| {
                    Ok(Record {
                        address: r.get(0)?,
                        row: r.get(1)?,
                        line: r.get(2)?,
                        fingerprint: r.get(3)?,
                        fields: r.get(4)?,
                        state: State::parse(&r.get::<_, String>(5)?),
                        attempts: r.get(6)?,
                        code: r.get(7)?,
                        reply: r.get(8)?,
                        message_id: r.get(9)?,
                        updated: r.get(10)?,
                    })
                })?
                .collect::<std::result::Result<Vec<_>, _>>()
            })
            .map_err(|e| self.err(e))?;
        Ok(Dump {
            meta,
            records,
            feedback,
        })
    }

    fn load(&self, dump: &Dump) -> Result<()> {
        self.writing()?;
        let mut conn = self.conn();
        let n: i64 = conn
            .query_row("SELECT count(*) FROM recipients", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        if n > 0 {
            return Err(refuse(
                &self.path,
                format!("already holds {n} recipients; copy into a new journal"),
            ));
        }
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        {
            let mut meta = tx
                .prepare("INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)")
                .map_err(|e| self.err(e))?;
            for (k, v) in &dump.meta {
                meta.execute([k, v]).map_err(|e| self.err(e))?;
            }
            let mut ins = tx
                .prepare(
                    "INSERT INTO recipients(address, row, line, fingerprint, fields, state,
                       attempts, code, reply, message_id, updated)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )
                .map_err(|e| self.err(e))?;
            for r in &dump.records {
                let (state, reply) = match r.state {
                    State::Inflight => (
                        State::Ambiguous,
                        Some("in flight when the journal was copied; the server may have it"),
                    ),
                    s => (s, r.reply.as_deref()),
                };
                ins.execute(params![
                    r.address,
                    r.row,
                    r.line,
                    r.fingerprint,
                    r.fields,
                    state.as_str(),
                    r.attempts,
                    r.code,
                    reply,
                    r.message_id,
                    r.updated
                ])
                .map_err(|e| self.err(e))?;
            }
            for f in &dump.feedback {
                insert_feedback(&tx, f).map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    fn rows_in(&self, states: &[State]) -> Result<Vec<FailedRow>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT row, fields, state, code, coalesce(reply, '') FROM recipients
                 ORDER BY row",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                let fields: String = r.get(1)?;
                Ok(FailedRow {
                    row: r.get::<_, i64>(0)? as usize,
                    fields: serde_json::from_str(&fields).unwrap_or_default(),
                    state: State::parse(&r.get::<_, String>(2)?),
                    code: r.get::<_, Option<i64>>(3)?.map(|c| c as u16),
                    reply: r.get(4)?,
                })
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for r in rows {
            let r = r.map_err(|e| self.err(e))?;
            if states.contains(&r.state) {
                out.push(r);
            }
        }
        Ok(out)
    }
}

// Opening.
//
// A pitfall shapes this code: closing any descriptor of a file drops every
// POSIX lock this process holds on it, SQLite's included (a connection in
// WAL mode holds one for its whole life; a sender that lost it could see
// another process delete the log under it). SQLite guards its own
// descriptors against this; ours are opened only where no sender of this
// process has a connection to the file: the sender's lock descriptor is
// closed after its connection, a second sender of this process is stopped
// by `Claim` before it opens one, and a reader peeks at the header only
// when there is no `-wal` (no sender running). A reader of this process
// may still lose its lock that way; it writes nothing.

fn open_read(path: &Path, writes: Writes) -> Result<SqliteJournal> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == ErrorKind::NotFound && writes == Writes::Drop => {
            let conn = Connection::open_in_memory().map_err(sql(path))?;
            conn.execute_batch(SCHEMA).map_err(sql(path))?;
            conn.execute_batch(FEEDBACK).map_err(sql(path))?;
            return Ok(SqliteJournal::new(path, conn, writes, None));
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(refuse(
                path,
                "does not exist; check the path (`send` writes the journal next to the list, \
                 or where --journal says)",
            ))
        }
        Err(e) => return Err(io(path)(e)),
        Ok(m) if m.len() == 0 => return Err(empty(path)),
        Ok(_) => {}
    }
    let header = if beside(path, "-wal").exists() {
        None
    } else {
        Some(Header::read(&File::open(path).map_err(io(path))?, path)?)
    };
    let conn = reader(path, header.as_ref())?;
    identify(&conn, path)?;
    Ok(SqliteJournal::new(path, conn, writes, None))
}

fn open_send(path: &Path, wait: bool, full_sync: bool) -> Result<SqliteJournal> {
    if !path.exists() {
        create(path)?;
    }
    let lock = Lock::take(path, wait)?;
    let header = Header::read(&lock.file, path)?;
    // Identified by a reader, so that nothing is written to a file that is
    // not ours: not even a recovery of its log.
    let kind = identify(&reader(path, Some(&header))?, path)?;
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql(path))?;
    let run = |conn: &Connection| -> rusqlite::Result<()> {
        conn.busy_timeout(Duration::from_secs(5))?;
        // Stamps an unstamped journal, and brings an older one up to
        // this version (the tables only ever gain: `IF NOT EXISTS`).
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if kind == Kind::Unstamped || version < SCHEMA_VERSION {
            conn.execute_batch(&format!(
                "BEGIN IMMEDIATE;
                 PRAGMA application_id = {APPLICATION_ID};
                 PRAGMA user_version = {SCHEMA_VERSION};
                 {SCHEMA}
                 {FEEDBACK}
                 COMMIT;"
            ))?;
        }
        // Where WAL is impossible (no shared memory) this stays in
        // rollback mode: slower, as safe.
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
        conn.pragma_update(
            None,
            "synchronous",
            if full_sync { "FULL" } else { "NORMAL" },
        )?;
        conn.execute(
            "INSERT INTO meta(key, value) VALUES ('owner', ?1)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [owner()],
        )?;
        Ok(())
    };
    run(&conn).map_err(sql(path))?;
    Ok(SqliteJournal::new(path, conn, Writes::Commit, Some(lock)))
}

/// Who holds a journal, for the error of the next sender: `pid 1234 on
/// host, started 2026-11-30 14:05:03 UTC`.
fn owner() -> String {
    // The kernel's own file: no dependency, no unsafe; elsewhere no name.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let t = time::OffsetDateTime::from_unix_timestamp(now())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "pid {}{}, started {:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        std::process::id(),
        if host.is_empty() {
            String::new()
        } else {
            format!(" on {host}")
        },
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Makes an empty, stamped journal at `path` in one step: it is built
/// beside it under another name and linked into place, so no one sees it
/// half made, and an empty file at `path` is never one of ours. When two
/// senders race, the second finds the first one's journal and uses it.
fn create(path: &Path) -> Result<()> {
    static MADE: AtomicU64 = AtomicU64::new(0);
    let Some(name) = path.file_name() else {
        return Err(refuse(
            path,
            "is not a file name; give a file for --journal",
        ));
    };
    let mut tmp = name.to_owned();
    tmp.push(format!(
        ".new-{}-{}",
        std::process::id(),
        MADE.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = path.with_file_name(tmp);
    let _ = std::fs::remove_file(&tmp);
    let made = (|| -> rusqlite::Result<()> {
        let conn = Connection::open(&tmp)?;
        conn.execute_batch(&format!(
            "BEGIN;
             PRAGMA application_id = {APPLICATION_ID};
             PRAGMA user_version = {SCHEMA_VERSION};
             {SCHEMA}
             {FEEDBACK}
             COMMIT;"
        ))?;
        conn.close().map_err(|(_, e)| e)
    })();
    let placed = made
        .map_err(sql(path))
        .and_then(|()| match std::fs::hard_link(&tmp, path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
            Err(_) => copy_new(&tmp, path),
        });
    let _ = std::fs::remove_file(&tmp);
    placed?;
    // Best effort: the new name survives a power loss.
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Without hard links (FAT, some network file systems) the new journal is
/// copied into a new file; for a moment a reader may see it part written.
fn copy_new(from: &Path, to: &Path) -> Result<()> {
    let bytes = std::fs::read(from).map_err(io(to))?;
    match OpenOptions::new().write(true).create_new(true).open(to) {
        Ok(mut f) => f.write_all(&bytes).and_then(|()| f.sync_all()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
    .map_err(io(to))
}

/// What the first 100 bytes of the file say.
struct Header {
    /// The file is in WAL mode.
    wal: bool,
}

impl Header {
    fn read(file: &File, path: &Path) -> Result<Header> {
        let mut f = file;
        let mut b = Vec::with_capacity(100);
        f.seek(SeekFrom::Start(0))
            .and_then(|_| f.take(100).read_to_end(&mut b))
            .map_err(io(path))?;
        if b.is_empty() {
            return Err(empty(path));
        }
        if b.len() < 100 || &b[..16] != b"SQLite format 3\0" {
            return Err(not_sqlite(path));
        }
        Ok(Header { wal: b[18] == 2 })
    }
}

/// A read-only connection that creates no file. `header` is `None` when
/// the caller may not peek (see the pitfall above); the journal then is in
/// rollback mode or has its `-wal`.
fn reader(path: &Path, header: Option<&Header>) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = if header.is_some_and(|h| h.wal) && !beside(path, "-wal").exists() {
        // Left in WAL mode with no log (by a letterpress from before the
        // rest in rollback mode, or an outside tool): a plain reader would
        // make `-wal` and `-shm` and could not remove them. With no log
        // there is no sender (a sender has one), so read it as immutable.
        let abs = std::path::absolute(path).map_err(io(path))?;
        let url = url::Url::from_file_path(&abs)
            .map_err(|()| refuse(path, "cannot be named as an SQLite URI"))?;
        Connection::open_with_flags(
            format!("{url}?mode=ro&immutable=1"),
            flags | OpenFlags::SQLITE_OPEN_URI,
        )
    } else {
        Connection::open_with_flags(path, flags)
    }
    .map_err(sql(path))?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(sql(path))?;
    Ok(conn)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Stamped, of a version this letterpress reads.
    Stamped,
    /// Made before the stamp existed: our tables, application_id 0.
    Unstamped,
}

/// Whether the database on `conn` is a journal this letterpress may use.
fn identify(conn: &Connection, path: &Path) -> Result<Kind> {
    let pragma = |name: &str| {
        conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, i64>(0))
            .map_err(|e| match e.sqlite_error_code() {
                Some(ErrorCode::NotADatabase) => not_sqlite(path),
                _ => sql(path)(e),
            })
    };
    let app = pragma("application_id")?;
    let version = pragma("user_version")?;
    let tables: Vec<String> = (|| {
        conn.prepare(
            "SELECT name FROM sqlite_schema
             WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'
             ORDER BY name",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()
    })()
    .map_err(sql(path))?;
    let ours = COLUMNS.iter().all(|q| conn.prepare(q).is_ok());
    match app {
        APPLICATION_ID if version > SCHEMA_VERSION => Err(refuse(
            path,
            format!(
                "was written by a newer letterpress (journal version {version}; this one \
                 knows up to {SCHEMA_VERSION}): upgrade letterpress"
            ),
        )),
        APPLICATION_ID if ours => Ok(Kind::Stamped),
        APPLICATION_ID => Err(refuse(
            path,
            "is a letterpress journal without its tables (damaged); restore it from a backup",
        )),
        0 if ours && tables == ["meta", "recipients"] => Ok(Kind::Unstamped),
        0 if tables.is_empty() => Err(refuse(
            path,
            "is an SQLite database with no tables, not a letterpress journal; if no letter of \
             this campaign was sent, delete it, or check the journal path",
        )),
        0 => Err(refuse(
            path,
            format!(
                "is an SQLite database of another program (tables: {}), not a letterpress \
                 journal; letterpress leaves it alone: check the journal path",
                tables.join(", ")
            ),
        )),
        other => Err(refuse(
            path,
            format!(
                "is an SQLite database of another program (application_id {other:#010x}), not \
                 a letterpress journal; letterpress leaves it alone: check the journal path"
            ),
        )),
    }
}

fn empty(path: &Path) -> Error {
    refuse(
        path,
        "is empty (0 bytes): not a letterpress journal — perhaps a failed copy; restore it \
         from a backup, or, if no letter of this campaign was sent, delete it",
    )
}

fn not_sqlite(path: &Path) -> Error {
    refuse(
        path,
        "is not an SQLite database, so not a letterpress journal; check the journal path, or \
         restore the journal from a backup",
    )
}

/// The right to send with a journal: an exclusive flock on the database
/// file, and this process's claim on it.
struct Lock {
    file: File,
    /// Declared after `file`: another thread of this process may open the
    /// file only once its lock is gone.
    _claim: Claim,
}

impl Lock {
    fn take(path: &Path, wait: bool) -> Result<Lock> {
        let key = std::fs::canonicalize(path).map_err(io(path))?;
        let Some(claim) = Claim::take(key, wait) else {
            return Err(busy(path, None));
        };
        let file = File::open(path).map_err(io(path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) if wait => file.lock().map_err(io(path))?,
            Err(TryLockError::WouldBlock) => {
                // Closing `file` after this drops no lock of SQLite's: the
                // claim says this process has no connection to it.
                return Err(busy(path, Some(&file)));
            }
            Err(TryLockError::Error(e)) => return Err(io(path)(e)),
        }
        Ok(Lock {
            file,
            _claim: claim,
        })
    }
}

/// The error for a journal another sender holds, naming it when it can.
/// `file` is a descriptor that may be read from (see the pitfall above).
fn busy(path: &Path, file: Option<&File>) -> Error {
    let owner = (|| {
        let header = match file {
            Some(f) => Some(Header::read(f, path).ok()?),
            None => None,
        };
        let conn = reader(path, header.as_ref()).ok()?;
        conn.busy_timeout(Duration::from_millis(200)).ok()?;
        conn.query_row("SELECT value FROM meta WHERE key = 'owner'", [], |r| {
            r.get::<_, String>(0)
        })
        .ok()
    })();
    Error::JournalBusy {
        path: path.into(),
        owner: match owner {
            Some(o) => format!("letterpress send ({o})"),
            None => "another letterpress send".into(),
        },
    }
}

/// The journals this process holds for sending, by canonical path.
static HELD: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static RELEASED: Condvar = Condvar::new();

/// This process's claim on a journal: a second sender within the process
/// is stopped here, before it opens a descriptor (see the pitfall above).
struct Claim(PathBuf);

impl Claim {
    /// `None` if this process holds `key` and `wait` is off.
    fn take(key: PathBuf, wait: bool) -> Option<Claim> {
        let mut held = HELD.lock().unwrap_or_else(PoisonError::into_inner);
        while held.contains(&key) {
            if !wait {
                return None;
            }
            held = RELEASED.wait(held).unwrap_or_else(PoisonError::into_inner);
        }
        held.push(key.clone());
        Some(Claim(key))
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut held = HELD.lock().unwrap_or_else(PoisonError::into_inner);
        held.retain(|k| k != &self.0);
        RELEASED.notify_all();
    }
}

/// Records `f` unless its key is there: 1 row when it was new, else 0.
fn insert_feedback(conn: &Connection, f: &Feedback) -> rusqlite::Result<usize> {
    conn.prepare_cached(
        "INSERT INTO feedback(key, address, kind, status, diagnostic, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(key) DO NOTHING",
    )?
    .execute(params![
        f.key,
        f.address,
        f.kind.as_str(),
        f.status,
        f.diagnostic,
        f.at
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEND: Mode = Mode::Send {
        wait: false,
        full_sync: false,
    };

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn plan(j: &dyn Journal, addrs: &[&str]) {
        let f = vec!["x".to_string()];
        let entries: Vec<NewEntry<'_>> = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| NewEntry {
                address: a,
                row: i + 1,
                line: i as u64 + 2,
                fingerprint: 7,
                fields: &f,
            })
            .collect();
        j.plan_start().unwrap();
        j.add(&entries).unwrap();
        j.plan_end(true).unwrap();
    }

    fn accepted(j: &dyn Journal) -> usize {
        j.counts()
            .unwrap()
            .into_iter()
            .find(|(s, _)| *s == State::Accepted)
            .unwrap()
            .1
    }

    fn message(r: Result<SqliteJournal>) -> String {
        r.expect_err("must be refused").to_string()
    }

    /// (application_id, user_version, tables) read with plain rusqlite.
    fn stamp_and_tables(p: &Path) -> (i64, i64, Vec<String>) {
        let db = Connection::open_with_flags(p, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        let q = |s: &str| db.query_row(s, [], |r| r.get::<_, i64>(0)).unwrap();
        let tables = db
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        (q("PRAGMA application_id"), q("PRAGMA user_version"), tables)
    }

    #[test]
    fn states_survive_a_reopen_and_inflight_becomes_ambiguous() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.sqlite");
        {
            let j = SqliteJournal::open(&p, SEND).unwrap();
            plan(&j, &["a@x.org", "b@x.org", "c@x.org"]);
            j.begin("a@x.org", "<1@x>").unwrap();
            j.finish("a@x.org", State::Accepted, Some(250), "250 ok")
                .unwrap();
            j.begin("b@x.org", "<2@x>").unwrap();
            j.set_meta("k", "v").unwrap();
        }
        let j = SqliteJournal::open(&p, SEND).unwrap();
        assert_eq!(j.describe(), p.display().to_string());
        assert_eq!(j.meta("k").unwrap().as_deref(), Some("v"));
        assert_eq!(j.recover().unwrap(), 1);
        let known = j.known().unwrap();
        assert_eq!(known["a@x.org"].state, State::Accepted);
        assert_eq!(known["b@x.org"].state, State::Ambiguous);
        assert_eq!(known["c@x.org"].state, State::Pending);
        assert_eq!(known["c@x.org"].fingerprint, 7);
        let counts: HashMap<_, _> = j.counts().unwrap().into_iter().collect();
        assert_eq!(counts[&State::Accepted], 1);
        assert_eq!(counts[&State::Failed], 0);
        let amb = j.rows_in(&[State::Ambiguous]).unwrap();
        assert_eq!(amb.len(), 1);
        assert_eq!(amb[0].row, 2);
    }

    #[test]
    fn an_acceptance_later_rides_with_the_next_commit_or_the_flush() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.sqlite");
        let j = SqliteJournal::open(&p, SEND).unwrap();
        plan(&j, &["a@x.org", "b@x.org"]);
        // What another process (status) reads from the file.
        let state = |a: &str| {
            let r = SqliteJournal::open(&p, Mode::Read).unwrap();
            r.known().unwrap()[a].state
        };
        j.begin("a@x.org", "<1@x>").unwrap();
        j.accepted_later("a@x.org", "250 ok").unwrap();
        assert_eq!(state("a@x.org"), State::Inflight, "not committed yet");
        j.begin("b@x.org", "<2@x>").unwrap();
        assert_eq!(
            state("a@x.org"),
            State::Accepted,
            "committed with b's begin"
        );
        j.accepted_later("b@x.org", "250 ok").unwrap();
        assert_eq!(state("b@x.org"), State::Inflight);
        j.flush().unwrap();
        assert_eq!(state("b@x.org"), State::Accepted);
        j.flush().unwrap(); // nothing queued: nothing to do
    }

    #[test]
    fn group_commit_from_many_threads_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.sqlite");
        let j = SqliteJournal::open(&p, SEND).unwrap();
        let addrs: Vec<String> = (0..400).map(|i| format!("p{i}@x.org")).collect();
        plan(&j, &addrs.iter().map(String::as_str).collect::<Vec<_>>());
        std::thread::scope(|s| {
            for t in 0..8 {
                let (j, addrs) = (&j, &addrs);
                s.spawn(move || {
                    for a in addrs.iter().skip(t).step_by(8) {
                        j.begin(a, "<id>").unwrap();
                        j.finish(a, State::Accepted, Some(250), "250 ok").unwrap();
                    }
                });
            }
        });
        drop(j);
        let j = SqliteJournal::open(&p, Mode::Read).unwrap();
        assert_eq!(accepted(&j), 400);
    }

    #[test]
    fn readers_create_no_file_whether_the_journal_exists_or_not() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.sqlite");

        // A dry run of a first send: nothing known, writes dropped.
        let j = SqliteJournal::open(&p, Mode::DryRun).unwrap();
        assert!(j.known().unwrap().is_empty());
        plan(&j, &["a@x.org"]);
        j.set_meta("k", "v").unwrap();
        assert_eq!(j.recover().unwrap(), 0);
        drop(j);
        // `status` of a journal that does not exist.
        let e = message(SqliteJournal::open(&p, Mode::Read));
        assert!(e.contains("does not exist"), "{e}");
        assert_eq!(names(dir.path()), Vec::<String>::new());

        // A sender leaves the journal at rest: no -wal, no -shm.
        let j = SqliteJournal::open(&p, SEND).unwrap();
        plan(&j, &["a@x.org", "b@x.org"]);
        j.begin("a@x.org", "<1@x>").unwrap();
        j.finish("a@x.org", State::Accepted, Some(250), "250 ok")
            .unwrap();
        drop(j);
        assert_eq!(names(dir.path()), ["j.sqlite"]);
        // At rest in rollback mode (header bytes 18 and 19: 1, not WAL's 2).
        assert_eq!(std::fs::read(&p).unwrap()[18..20], [1, 1]);

        for mode in [Mode::Read, Mode::DryRun] {
            let j = SqliteJournal::open(&p, mode).unwrap();
            assert_eq!(accepted(&j), 1);
            assert_eq!(j.known().unwrap().len(), 2);
            assert_eq!(j.rows_in(&[State::Pending]).unwrap().len(), 1);
            assert_eq!(j.meta("owner").unwrap(), None);
            assert_eq!(names(dir.path()), ["j.sqlite"], "{mode:?}, open");
            drop(j);
            assert_eq!(names(dir.path()), ["j.sqlite"], "{mode:?}, closed");
        }
        // A dry run drops writes; a reader refuses them.
        let j = SqliteJournal::open(&p, Mode::DryRun).unwrap();
        j.set_meta("k", "v").unwrap();
        j.begin("b@x.org", "<2@x>").unwrap();
        drop(j);
        let j = SqliteJournal::open(&p, Mode::Read).unwrap();
        assert_eq!(j.meta("k").unwrap(), None);
        assert_eq!(j.known().unwrap()["b@x.org"].state, State::Pending);
        assert!(j.set_meta("k", "v").is_err());
        assert!(j.begin("b@x.org", "<2@x>").is_err());
        drop(j);
        assert_eq!(names(dir.path()), ["j.sqlite"]);
    }

    #[test]
    fn a_reader_works_while_a_sender_owns_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.sqlite");
        let j = SqliteJournal::open(&p, SEND).unwrap();
        plan(&j, &["a@x.org", "b@x.org"]);
        j.begin("a@x.org", "<1@x>").unwrap();
        j.finish("a@x.org", State::Accepted, Some(250), "250 ok")
            .unwrap();
        let r = SqliteJournal::open(&p, Mode::Read).unwrap();
        assert_eq!(accepted(&r), 1);
        let owner = r.meta("owner").unwrap().unwrap();
        assert!(
            owner.starts_with(&format!("pid {}", std::process::id())),
            "{owner}"
        );
        j.begin("b@x.org", "<2@x>").unwrap();
        j.finish("b@x.org", State::Accepted, Some(250), "250 ok")
            .unwrap();
        // `finish` may return before its commit; `begin` does not.
        j.begin("c@x.org", "<3@x>").unwrap();
        assert_eq!(accepted(&r), 2);
        let d = SqliteJournal::open(&p, Mode::DryRun).unwrap();
        assert_eq!(accepted(&d), 2);
        drop((r, d));
        drop(j);
        assert_eq!(names(dir.path()), ["j.sqlite"]);
    }

    #[test]
    fn a_second_sender_is_refused_and_told_who_owns_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.sqlite");
        let j = SqliteJournal::open(&p, SEND).unwrap();
        plan(&j, &["a@x.org"]);
        let e = SqliteJournal::open(&p, SEND).expect_err("second sender");
        assert!(matches!(e, Error::JournalBusy { .. }), "{e:?}");
        let e = e.to_string();
        assert!(
            e.contains(&format!(
                "is in use by letterpress send (pid {}",
                std::process::id()
            )),
            "{e}"
        );
        assert!(e.contains(", started 2"), "{e}");
        // The same file by another name is the same journal.
        let other = dir.path().join(".").join("j.sqlite");
        assert!(SqliteJournal::open(&other, SEND).is_err());
        drop(j);
        let j = SqliteJournal::open(&p, SEND).unwrap();
        assert_eq!(j.known().unwrap().len(), 1);
    }

    /// The lock is flock on the database file: held per open file
    /// description, so two opens conflict even in one process, and apart
    /// from SQLite's own (fcntl) locks.
    #[test]
    fn the_lock_is_an_flock_on_the_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.sqlite");
        drop(SqliteJournal::open(&p, SEND).unwrap());

        // Another process's sender, as far as this file is concerned.
        let other = File::open(&p).unwrap();
        other.try_lock().unwrap();
        let second = File::open(&p).unwrap();
        assert!(matches!(second.try_lock(), Err(TryLockError::WouldBlock)));
        drop(second);
        let e = message(SqliteJournal::open(&p, SEND));
        assert!(e.contains("is in use by another letterpress send"), "{e}");
        // Readers do not take it, and SQLite's locks are not hindered.
        let r = SqliteJournal::open(&p, Mode::Read).unwrap();
        assert_eq!(accepted(&r), 0);
        drop(r);
        drop(other);

        let j = SqliteJournal::open(&p, SEND).unwrap();
        plan(&j, &["a@x.org"]);
        let probe = File::open(&p).unwrap();
        assert!(matches!(probe.try_lock(), Err(TryLockError::WouldBlock)));
        // Closing `probe` drops this process's POSIX locks on the file,
        // SQLite's too (harmless here: no other process uses the file).
        drop(probe);
        j.begin("a@x.org", "<1@x>").unwrap();
    }

    #[test]
    fn a_waiting_sender_gets_the_journal_once_the_first_is_done() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.sqlite");
        let wait = Mode::Send {
            wait: true,
            full_sync: false,
        };
        let waiter = |p: PathBuf| {
            std::thread::spawn(move || {
                let t = std::time::Instant::now();
                let j = SqliteJournal::open(&p, wait).unwrap();
                plan(&j, &["late@x.org"]);
                t.elapsed()
            })
        };

        // A sender of this process.
        let first = SqliteJournal::open(&p, SEND).unwrap();
        let second = waiter(p.clone());
        std::thread::sleep(Duration::from_millis(300));
        assert!(!second.is_finished());
        drop(first);
        assert!(second.join().unwrap() >= Duration::from_millis(250));

        // A sender of another process (its flock).
        let other = File::open(&p).unwrap();
        other.try_lock().unwrap();
        let second = waiter(p.clone());
        std::thread::sleep(Duration::from_millis(300));
        assert!(!second.is_finished());
        drop(other);
        assert!(second.join().unwrap() >= Duration::from_millis(250));
        let j = SqliteJournal::open(&p, Mode::Read).unwrap();
        assert!(j.known().unwrap().contains_key("late@x.org"));
    }

    #[test]
    fn an_empty_file_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.sqlite");
        std::fs::write(&p, "").unwrap();
        for mode in [SEND, Mode::Read, Mode::DryRun] {
            let e = message(SqliteJournal::open(&p, mode));
            assert!(
                e.contains("is empty (0 bytes): not a letterpress journal"),
                "{mode:?}: {e}"
            );
            assert!(e.contains("restore it from a backup"), "{e}");
        }
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 0);
        assert_eq!(names(dir.path()), ["j.sqlite"]);
    }

    #[test]
    fn a_file_that_is_not_sqlite_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.sqlite");
        let text = "email,name\n".repeat(20);
        std::fs::write(&p, &text).unwrap();
        for mode in [SEND, Mode::Read, Mode::DryRun] {
            let e = message(SqliteJournal::open(&p, mode));
            assert!(e.contains("is not an SQLite database"), "{mode:?}: {e}");
        }
        assert_eq!(std::fs::read_to_string(&p).unwrap(), text);
        assert_eq!(names(dir.path()), ["j.sqlite"]);
    }

    #[test]
    fn another_programs_database_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("app.db");
        {
            let db = Connection::open(&p).unwrap();
            db.execute_batch("CREATE TABLE foo (x); INSERT INTO foo VALUES (1);")
                .unwrap();
        }
        let before = std::fs::read(&p).unwrap();
        for mode in [SEND, Mode::Read, Mode::DryRun] {
            let e = message(SqliteJournal::open(&p, mode));
            assert!(
                e.contains("is an SQLite database of another program (tables: foo)"),
                "{mode:?}: {e}"
            );
        }
        assert_eq!(stamp_and_tables(&p), (0, 0, vec!["foo".to_string()]));
        assert_eq!(std::fs::read(&p).unwrap(), before);
        assert_eq!(names(dir.path()), ["app.db"]);

        // Our tables, but another program's stamp.
        let q = dir.path().join("other.db");
        {
            let db = Connection::open(&q).unwrap();
            db.execute_batch(SCHEMA).unwrap();
            db.pragma_update(None, "application_id", 0x1234_5678)
                .unwrap();
        }
        let e = message(SqliteJournal::open(&q, SEND));
        assert!(e.contains("(application_id 0x12345678)"), "{e}");

        // No tables at all.
        let r = dir.path().join("bare.db");
        Connection::open(&r)
            .unwrap()
            .pragma_update(None, "user_version", 5)
            .unwrap();
        let e = message(SqliteJournal::open(&r, SEND));
        assert!(e.contains("with no tables"), "{e}");
        assert_eq!(stamp_and_tables(&r), (0, 5, vec![]));
    }

    #[test]
    fn a_version_1_journal_gains_the_feedback_table_and_records_each_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.sqlite");
        {
            let db = Connection::open(&p).unwrap();
            db.execute_batch(&format!(
                "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = 1; {SCHEMA}"
            ))
            .unwrap();
        }
        // A reader of a version 1 journal sees no feedback, and adds nothing.
        let r = SqliteJournal::open(&p, Mode::Read).unwrap();
        assert_eq!(r.feedback().unwrap(), vec![]);
        drop(r);
        assert_eq!(stamp_and_tables(&p).1, 1);
        let j = SqliteJournal::open(&p, SEND).unwrap();
        let f = Feedback {
            key: "<b1@mx>".into(),
            address: "a@x.org".into(),
            kind: FeedbackKind::Hard,
            status: "5.1.1".into(),
            diagnostic: "550 no such user".into(),
            at: 7,
        };
        assert!(j.record_feedback(&f).unwrap());
        assert!(!j.record_feedback(&f).unwrap());
        drop(j);
        assert_eq!(stamp_and_tables(&p).1, SCHEMA_VERSION);
        let r = SqliteJournal::open(&p, Mode::Read).unwrap();
        assert_eq!(r.feedback().unwrap(), vec![f]);
    }

    #[test]
    fn a_journal_of_a_newer_letterpress_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.sqlite");
        drop(SqliteJournal::open(&p, SEND).unwrap());
        assert_eq!(
            stamp_and_tables(&p),
            (
                APPLICATION_ID,
                SCHEMA_VERSION,
                vec![
                    "feedback".to_string(),
                    "meta".to_string(),
                    "recipients".to_string()
                ]
            )
        );
        Connection::open(&p)
            .unwrap()
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        for mode in [SEND, Mode::Read, Mode::DryRun] {
            let e = message(SqliteJournal::open(&p, mode));
            assert!(
                e.contains("was written by a newer letterpress") && e.contains("upgrade"),
                "{mode:?}: {e}"
            );
        }
    }

    /// A journal of the letterpress before the stamp: WAL mode at rest,
    /// application_id 0. Read as it is (creating no file), stamped by the
    /// next send.
    #[test]
    fn an_unstamped_journal_of_an_earlier_letterpress_is_adopted() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.sqlite");
        {
            let db = Connection::open(&p).unwrap();
            db.pragma_update(None, "journal_mode", "WAL").unwrap();
            db.execute_batch(SCHEMA).unwrap();
            db.execute(
                "INSERT INTO recipients(address, row, line, fingerprint, fields, state, updated)
                 VALUES ('a@x.org', 1, 2, '07', '[]', 'accepted', 0)",
                [],
            )
            .unwrap();
        }
        assert_eq!(names(dir.path()), ["j.sqlite"]);
        for mode in [Mode::Read, Mode::DryRun] {
            let j = SqliteJournal::open(&p, mode).unwrap();
            assert_eq!(accepted(&j), 1);
            drop(j);
            assert_eq!(names(dir.path()), ["j.sqlite"], "{mode:?}");
        }
        assert_eq!(stamp_and_tables(&p).0, 0);

        let j = SqliteJournal::open(&p, SEND).unwrap();
        assert_eq!(accepted(&j), 1);
        drop(j);
        assert_eq!(stamp_and_tables(&p).0, APPLICATION_ID);
        assert_eq!(stamp_and_tables(&p).1, SCHEMA_VERSION);
        assert_eq!(names(dir.path()), ["j.sqlite"]);
    }
}
