//! The send journal: one SQLite file per campaign holding each recipient's
//! state, so that a crash, a Ctrl-C or a dropped connection can be resumed
//! without sending anyone the letter twice or skipping anyone.
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
//! States, in order: `pending` (known, never attempted) -> `inflight`
//! (written before MAIL FROM) -> `accepted` (2xx after the dot, with the
//! server's reply) / `deferred` (4xx, will be retried) / `failed` (5xx, or
//! 4xx until the retries ran out) / `ambiguous` (hang-up or timeout after
//! the body, or in flight when the process died: the server may have the
//! message). Only this module writes SQL.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde::Serialize;

use crate::error::{Error, Result};

/// A recipient's state in the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Pending,
    Inflight,
    Deferred,
    Accepted,
    Failed,
    Ambiguous,
}

impl State {
    pub const ALL: [State; 6] = [
        State::Pending,
        State::Inflight,
        State::Deferred,
        State::Accepted,
        State::Failed,
        State::Ambiguous,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Inflight => "inflight",
            State::Deferred => "deferred",
            State::Accepted => "accepted",
            State::Failed => "failed",
            State::Ambiguous => "ambiguous",
        }
    }

    fn parse(s: &str) -> State {
        State::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .unwrap_or(State::Pending)
    }
}

/// What the journal knew of a recipient when the run started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub state: State,
    pub fingerprint: u128,
    pub row: usize,
    pub reply: Option<String>,
}

/// One recipient to add (or refresh) before sending.
#[derive(Debug, Clone)]
pub struct NewEntry<'a> {
    /// The lower-cased address: the key.
    pub address: &'a str,
    pub row: usize,
    pub line: u64,
    pub fingerprint: u128,
    /// The CSV fields, for `--failed-csv`.
    pub fields: &'a [String],
}

/// One row of `--failed-csv`.
#[derive(Debug, Clone)]
pub struct FailedRow {
    pub row: usize,
    pub fields: Vec<String>,
    pub state: State,
    pub code: Option<u16>,
    pub reply: String,
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

/// An open journal. Shared by the sending threads, which commit their
/// writes in groups (see [`Journal::finish`]).
pub struct Journal {
    path: PathBuf,
    conn: Mutex<Connection>,
    queue: Mutex<Queue>,
    committed: std::sync::Condvar,
    /// `--dry-run`: read, never write.
    read_only: bool,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("path", &self.path).finish()
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

impl Journal {
    /// Opens (creating if needed) the journal at `path`. `read_only` (dry
    /// runs) never creates or changes the file. `full_sync` adds an fsync
    /// per commit.
    pub fn open(path: &Path, read_only: bool, full_sync: bool) -> Result<Journal> {
        let err = |e: rusqlite::Error| Error::Journal {
            path: path.into(),
            message: e.to_string(),
        };
        let conn = if read_only {
            if path.exists() {
                Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            } else {
                Connection::open_in_memory()
            }
        } else {
            Connection::open(path)
        }
        .map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        if !read_only || !path.exists() {
            conn.pragma_update(None, "journal_mode", "WAL")
                .map_err(err)?;
            conn.pragma_update(
                None,
                "synchronous",
                if full_sync { "FULL" } else { "NORMAL" },
            )
            .map_err(err)?;
            conn.execute_batch(SCHEMA).map_err(err)?;
        } else {
            // An old file opened read-only must still be a journal.
            conn.query_row("SELECT count(*) FROM recipients", [], |_| Ok(()))
                .map_err(|_| Error::Journal {
                    path: path.into(),
                    message: "is not a letterpress journal".into(),
                })?;
        }
        Ok(Journal {
            path: path.into(),
            conn: Mutex::new(conn),
            queue: Mutex::new(Queue::default()),
            committed: std::sync::Condvar::new(),
            read_only,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, e: rusqlite::Error) -> Error {
        Error::Journal {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent: go on.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        self.conn()
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        if self.read_only {
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

    /// After a crash, entries still in flight may or may not have reached
    /// the server: they become ambiguous. Returns how many.
    pub fn recover(&self) -> Result<usize> {
        if self.read_only {
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

    /// Everyone the journal knows, by address.
    pub fn known(&self) -> Result<HashMap<String, Known>> {
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

    /// Adds new recipients as pending and refreshes the row, fields and
    /// fingerprint of known ones. Call between `plan_start` and `plan_end`.
    pub fn add(&self, entries: &[NewEntry<'_>]) -> Result<()> {
        if self.read_only || entries.is_empty() {
            return Ok(());
        }
        let conn = self.conn();
        {
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
        }
        Ok(())
    }

    /// Starts the plan's transaction: [`Journal::add`] and the metadata are
    /// committed together at [`Journal::plan_end`], or not at all.
    pub fn plan_start(&self) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        self.conn()
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| self.err(e))
    }

    /// Commits (or rolls back) the plan.
    pub fn plan_end(&self, commit: bool) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        self.conn()
            .execute_batch(if commit { "COMMIT" } else { "ROLLBACK" })
            .map_err(|e| self.err(e))
    }

    /// Marks a recipient in flight: called before MAIL FROM. Returns once
    /// the record is committed.
    pub fn begin(&self, address: &str, message_id: &str) -> Result<()> {
        self.submit(
            Op::Begin {
                address: address.into(),
                message_id: message_id.into(),
                at: now(),
            },
            true,
        )
    }

    /// Records the outcome of an attempt. Committed at once, by this
    /// thread or, when another is committing, by that one right after:
    /// group commit, so that many senders share one commit.
    pub fn finish(
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
                at: now(),
            },
            false,
        )
    }

    /// Queues `op`; the first thread to find no commit under way commits
    /// everything queued in one transaction, and goes on while more
    /// arrives. With `wait`, returns only once `op` is committed.
    fn submit(&self, op: Op, wait: bool) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        q.ops.push(op);
        q.submitted += 1;
        let mine = q.submitted;
        loop {
            if let Some(e) = &q.error {
                return Err(Error::Journal {
                    path: self.path.clone(),
                    message: e.clone(),
                });
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
                    q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
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
            q = self.committed.wait(q).unwrap_or_else(|p| p.into_inner());
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

    /// How many recipients are in each state.
    pub fn counts(&self) -> Result<Vec<(State, usize)>> {
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

    /// The recipients in `states`, in row order.
    pub fn rows_in(&self, states: &[State]) -> Result<Vec<FailedRow>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_survive_a_reopen_and_inflight_becomes_ambiguous() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.sqlite");
        {
            let j = Journal::open(&p, false, false).unwrap();
            let f = vec!["a@x.org".to_string()];
            let e = |a, row| NewEntry {
                address: a,
                row,
                line: row as u64 + 1,
                fingerprint: 7,
                fields: &f,
            };
            j.plan_start().unwrap();
            j.add(&[e("a@x.org", 1), e("b@x.org", 2), e("c@x.org", 3)])
                .unwrap();
            j.plan_end(true).unwrap();
            j.begin("a@x.org", "<1@x>").unwrap();
            j.finish("a@x.org", State::Accepted, Some(250), "250 ok")
                .unwrap();
            j.begin("b@x.org", "<2@x>").unwrap();
            j.set_meta("k", "v").unwrap();
        }
        let j = Journal::open(&p, false, false).unwrap();
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
        let j = Journal::open(&p, false, false).unwrap();
        let f: Vec<String> = vec![];
        let addrs: Vec<String> = (0..400).map(|i| format!("p{i}@x.org")).collect();
        let entries: Vec<NewEntry<'_>> = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| NewEntry {
                address: a,
                row: i + 1,
                line: i as u64 + 2,
                fingerprint: 1,
                fields: &f,
            })
            .collect();
        j.plan_start().unwrap();
        j.add(&entries).unwrap();
        j.plan_end(true).unwrap();
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
        let j = Journal::open(&p, true, false).unwrap();
        let counts: HashMap<_, _> = j.counts().unwrap().into_iter().collect();
        assert_eq!(counts[&State::Accepted], 400);
    }

    #[test]
    fn read_only_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j.sqlite");
        let j = Journal::open(&p, true, false).unwrap();
        j.set_meta("k", "v").unwrap();
        assert!(!p.exists());
    }
}
