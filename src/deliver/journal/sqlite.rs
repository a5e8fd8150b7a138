//! The SQLite journal: one file per campaign, and the only place that
//! writes SQL.
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

use std::collections::HashMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use super::{FailedRow, Journal, Known, NewEntry, State};
use crate::error::{Error, Result};

/// How a journal is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `send`: makes the journal if it is missing. `full_sync` adds an
    /// fsync per commit. (`wait` is for when a sender owns it.)
    Send { wait: bool, full_sync: bool },
    /// `status`: reads. A missing journal is an error; a write is refused.
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

impl SqliteJournal {
    /// Opens the journal at `path` (see [`Mode`]).
    pub fn open(path: &Path, mode: Mode) -> Result<SqliteJournal> {
        match mode {
            Mode::Send { full_sync, .. } => open_send(path, full_sync),
            Mode::Read => open_read(path, Writes::Refuse),
            Mode::DryRun => open_read(path, Writes::Drop),
        }
    }

    fn new(path: &Path, conn: Connection, writes: Writes) -> SqliteJournal {
        SqliteJournal {
            path: path.into(),
            described: path.display().to_string(),
            conn: Mutex::new(conn),
            queue: Mutex::new(Queue::default()),
            committed: Condvar::new(),
            writes,
        }
    }

    fn err(&self, e: rusqlite::Error) -> Error {
        refuse(&self.path, e.to_string())
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
    fn submit(&self, op: Op, wait: bool) -> Result<()> {
        if !self.writing()? {
            return Ok(());
        }
        let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        q.ops.push(op);
        q.submitted += 1;
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
            if !wait {
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
                };
            }
        }
        tx.commit()
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
                at: now(),
            },
            false,
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

fn open_read(path: &Path, writes: Writes) -> Result<SqliteJournal> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == ErrorKind::NotFound && writes == Writes::Drop => {
            let conn = Connection::open_in_memory().map_err(sql(path))?;
            conn.execute_batch(SCHEMA).map_err(sql(path))?;
            return Ok(SqliteJournal::new(path, conn, writes));
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(refuse(
                path,
                "does not exist; check the path (`send` writes the journal next to the list, \
                 or where --journal says)",
            ))
        }
        Err(e) => return Err(io(path)(e)),
        Ok(_) => {}
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql(path))?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(sql(path))?;
    conn.query_row("SELECT count(*) FROM recipients", [], |_| Ok(()))
        .map_err(|_| refuse(path, "is not a letterpress journal"))?;
    Ok(SqliteJournal::new(path, conn, writes))
}

fn open_send(path: &Path, full_sync: bool) -> Result<SqliteJournal> {
    let conn = Connection::open(path).map_err(sql(path))?;
    let run = |conn: &Connection| -> rusqlite::Result<()> {
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(
            None,
            "synchronous",
            if full_sync { "FULL" } else { "NORMAL" },
        )?;
        conn.execute_batch(SCHEMA)
    };
    run(&conn).map_err(sql(path))?;
    Ok(SqliteJournal::new(path, conn, Writes::Commit))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEND: Mode = Mode::Send {
        wait: false,
        full_sync: false,
    };

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
    fn a_dry_run_of_a_first_send_reads_nothing_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.sqlite");
        let j = SqliteJournal::open(&p, Mode::DryRun).unwrap();
        assert!(j.known().unwrap().is_empty());
        plan(&j, &["a@x.org"]);
        j.set_meta("k", "v").unwrap();
        assert_eq!(j.recover().unwrap(), 0);
        drop(j);
        // `status` of a journal that does not exist.
        let e = message(SqliteJournal::open(&p, Mode::Read));
        assert!(e.contains("does not exist"), "{e}");
        assert!(!p.exists());

        drop(SqliteJournal::open(&p, SEND).unwrap());
        // A dry run drops writes; a reader refuses them.
        let j = SqliteJournal::open(&p, Mode::DryRun).unwrap();
        j.set_meta("k", "v").unwrap();
        drop(j);
        let j = SqliteJournal::open(&p, Mode::Read).unwrap();
        assert_eq!(j.meta("k").unwrap(), None);
        assert!(j.set_meta("k", "v").is_err());
        assert!(j.begin("b@x.org", "<2@x>").is_err());
    }
}
