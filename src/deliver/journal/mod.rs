//! The send journal: each recipient's state, kept so that a crash, a Ctrl-C
//! or a dropped connection can be resumed without sending anyone the letter
//! twice or skipping anyone. This file owns the interface ([`Journal`]) and
//! the backend-neutral types; a backend owns its storage and is the only
//! place that speaks its query language ([`sqlite`]: SQL, for SQLite;
//! [`postgres`]: SQL, for PostgreSQL, where several processes share one
//! campaign).
//!
//! States, in order: `pending` (known, never attempted) -> `inflight`
//! (written before MAIL FROM) -> `accepted` (2xx after the dot, with the
//! server's reply) / `deferred` (4xx, will be retried) / `failed` (5xx, or
//! 4xx until the retries ran out) / `ambiguous` (hang-up or timeout after
//! the body, or in flight when the process died: the server may have the
//! message); `suppressed` (on a `--suppress` list: never sent).
//!
//! After the send, `letterpress bounces` adds what came back ([`Feedback`]:
//! hard and soft bounces, complaints), each once, keyed by the returned
//! message. A backend that does not keep them yet says so
//! ([`Error::Unsupported`]) through the default methods.

use std::collections::HashMap;

use serde::Serialize;

use crate::error::{Error, Result};

pub mod postgres;
pub mod sqlite;

pub use postgres::PgJournal;
pub use sqlite::{Mode, SqliteJournal};

/// Where a journal lives: an SQLite file, or a PostgreSQL database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Sqlite(std::path::PathBuf),
    Postgres(postgres::Target),
}

impl Location {
    /// For messages.
    pub fn describe(&self) -> String {
        match self {
            Location::Sqlite(p) => p.display().to_string(),
            Location::Postgres(t) => t.url.clone(),
        }
    }

    /// Whether `s` names a PostgreSQL database rather than a file.
    pub fn is_postgres_url(s: &str) -> bool {
        s.starts_with("postgres://") || s.starts_with("postgresql://")
    }
}

/// Opens the journal at `location` (see [`Mode`]; a PostgreSQL journal has
/// no owner: `wait` does not apply; `full_sync` waits for the flush of each
/// commit to the server's disk).
pub fn open(location: &Location, mode: Mode) -> Result<Box<dyn Journal>> {
    match location {
        Location::Sqlite(p) => Ok(Box::new(SqliteJournal::open(p, mode)?)),
        Location::Postgres(t) => Ok(Box::new(PgJournal::open(t, mode)?)),
    }
}

/// Opens the journal at `location` to write without sending (`mode` is a
/// [`Mode::Send`]): the target of [`copy`], and `letterpress bounces`. A
/// PostgreSQL journal registers no worker.
pub fn open_to_record(location: &Location, mode: Mode) -> Result<Box<dyn Journal>> {
    match location {
        Location::Sqlite(p) => Ok(Box::new(SqliteJournal::open(p, mode)?)),
        Location::Postgres(t) => Ok(Box::new(PgJournal::open_to_record(t, mode)?)),
    }
}

/// `letterpress journal copy`: every recipient, the campaign's details and
/// the bounces and complaints from one journal to another, which must hold
/// no recipient yet. Recipients in flight are copied as ambiguous. Returns
/// how many recipients were copied.
pub fn copy(from: &Location, to: &Location) -> Result<usize> {
    let source = open(from, Mode::Read)?;
    if source.workers()?.iter().any(|w| w.alive) {
        return Err(crate::error::Error::Journal {
            path: from.describe().into(),
            message: "has workers sending right now; copy it once they are done".into(),
        });
    }
    let dump = source.dump()?;
    let target = open_to_record(
        to,
        Mode::Send {
            wait: false,
            full_sync: true,
        },
    )?;
    target.load(&dump)?;
    Ok(dump.records.len())
}

/// What `send` and `status` need of a journal, whatever stores it.
///
/// A journal opened for sending has one owner at a time: the backend keeps a
/// second sender out. Writes of concurrent sender threads may be committed
/// in groups, but [`Journal::begin`] returns only once its record is
/// committed (and [`Journal::ready`] only once a mark made ahead is), so
/// MAIL FROM never starts before `inflight` is stored.
pub trait Journal: Send + Sync {
    /// Where the journal is (a path, a URL without its password), for
    /// messages.
    fn describe(&self) -> &str;

    fn meta(&self, key: &str) -> Result<Option<String>>;

    fn set_meta(&self, key: &str, value: &str) -> Result<()>;

    /// After a crash, entries still in flight may or may not have reached
    /// the server: they become ambiguous. Returns how many.
    fn recover(&self) -> Result<usize>;

    /// Everyone the journal knows, by address.
    fn known(&self) -> Result<HashMap<String, Known>>;

    /// Starts the plan: [`Journal::add`] and [`Journal::set_meta`] are
    /// committed together at [`Journal::plan_end`], or not at all.
    fn plan_start(&self) -> Result<()>;

    /// Adds new recipients as pending and refreshes the row, fields and
    /// fingerprint of known ones. Call between `plan_start` and `plan_end`.
    fn add(&self, entries: &[NewEntry<'_>]) -> Result<()>;

    /// Commits (or rolls back) the plan.
    fn plan_end(&self, commit: bool) -> Result<()>;

    /// Marks a recipient in flight: called before MAIL FROM. Returns once
    /// the record is committed.
    fn begin(&self, address: &str, message_id: &str) -> Result<()>;

    /// Whether a mark in flight costs the sender a wait worth hiding (a
    /// round trip to a database server): then a sender marks its next
    /// letter with [`Journal::begin_ahead`] while it sends the current one.
    fn ahead(&self) -> bool {
        false
    }

    /// Marks a recipient in flight like [`Journal::begin`], but returns
    /// before the commit, which runs while the sender's current letter is
    /// sent (with the outcomes queued so far). The letter may be handed to
    /// the sink only once [`Journal::ready`] accepts the mark; a mark whose
    /// letter is not sent after all (the run stops) is undone with
    /// [`Journal::release`].
    ///
    /// The trade: a process killed between this commit and MAIL FROM
    /// leaves a recipient in flight whose letter was never started, so it
    /// is ambiguous on resume (never resent automatically) though nobody
    /// got it. A sender marks at most one letter ahead: at most one such
    /// recipient per SMTP connection.
    fn begin_ahead(&self, address: &str, message_id: &str) -> Result<Ahead> {
        Ok(Ahead::settled(address, self.begin(address, message_id)))
    }

    /// Waits for the commit of a mark made ahead; `Ok` when its letter may
    /// be handed to the sink now (for a shared journal: this worker's lease
    /// is known to be good, so no other worker can have taken it).
    fn ready(&self, ahead: Ahead) -> Result<()> {
        ahead.wait(|| self.unsupported("marks written ahead"))
    }

    /// Undoes a mark made ahead whose letter was not handed to the sink:
    /// the recipient is sent later as if it had never been marked.
    fn release(&self, ahead: Ahead) -> Result<()> {
        let address = ahead.address.clone();
        if self.ready(ahead).is_err() {
            return Ok(());
        }
        self.finish(&address, State::Pending, None, "")
    }

    /// Records the outcome of an attempt. It may be committed together
    /// with other threads' writes, and after this returns; a failed commit
    /// is reported by a later write.
    fn finish(&self, address: &str, state: State, code: Option<u16>, reply: &str) -> Result<()>;

    /// Records an acceptance, committed with the next write of any thread
    /// (a [`Journal::begin`], or [`Journal::flush`]) instead of a commit of
    /// its own: one commit per letter instead of two. Until then the
    /// recipient is in flight, so a crash in between leaves it ambiguous
    /// on resume (never sent twice, listed for a look), as a crash between
    /// the server's reply and any commit would.
    fn accepted_later(&self, address: &str, reply: &str) -> Result<()>;

    /// Records a final outcome that is not an acceptance (failed,
    /// ambiguous) as [`Journal::accepted_later`] records an acceptance,
    /// with the same trade, where a commit of its own would make the
    /// sender wait a round trip ([`Journal::ahead`]). By default it is
    /// committed as [`Journal::finish`] commits it.
    fn finished_later(
        &self,
        address: &str,
        state: State,
        code: Option<u16>,
        reply: &str,
    ) -> Result<()> {
        self.finish(address, state, code, reply)
    }

    /// Commits every write still queued.
    fn flush(&self) -> Result<()>;

    /// How many recipients are in each state, every state listed.
    fn counts(&self) -> Result<Vec<(State, usize)>>;

    /// The recipients in `states`, in row order.
    fn rows_in(&self, states: &[State]) -> Result<Vec<FailedRow>>;

    /// Everything, for [`copy`].
    fn dump(&self) -> Result<Dump>;

    /// Writes `dump` into a journal that holds no recipient yet; in-flight
    /// ones become ambiguous.
    fn load(&self, dump: &Dump) -> Result<()>;

    /// Several processes send this campaign together: the recipients to
    /// send are handed out by [`Journal::claim`], not taken from the plan.
    fn shared(&self) -> bool {
        false
    }

    /// Claims up to `max` pending or deferred recipients, for this process
    /// alone until its lease runs out. A shared journal only.
    fn claim(&self, _max: usize) -> Result<Claim> {
        Ok(Claim::Done)
    }

    /// Puts recipients that failed or are ambiguous back in the pool
    /// (`--retry-failed`, `--resend-ambiguous` on a shared journal). Call
    /// between `plan_start` and `plan_end`.
    fn requeue(&self, _addresses: &[String]) -> Result<()> {
        Ok(())
    }

    /// Reserves the start of the next letter under a `--rate` that every
    /// process shares: how long to wait first. `None`: the rate is this
    /// process's own.
    fn pace(&self, _interval: std::time::Duration) -> Result<Option<std::time::Duration>> {
        Ok(None)
    }

    /// The processes that sent or send this campaign (a shared journal).
    fn workers(&self) -> Result<Vec<Worker>> {
        Ok(Vec::new())
    }

    /// Database round trips so far, where they are counted.
    fn round_trips(&self) -> Option<u64> {
        None
    }

    /// Records a bounce or complaint, once per `key`: true when it is new.
    fn record_feedback(&self, _f: &Feedback) -> Result<bool> {
        Err(self.unsupported("bounces and complaints"))
    }

    /// Every bounce and complaint recorded, oldest first.
    fn feedback(&self) -> Result<Vec<Feedback>> {
        Err(self.unsupported("bounces and complaints"))
    }

    /// The Message-ID (without `<>`) of each letter sent, to its address.
    fn message_ids(&self) -> Result<HashMap<String, String>> {
        Err(self.unsupported("the Message-IDs of the letters"))
    }

    /// The error of a method this backend does not implement.
    fn unsupported(&self, what: &str) -> Error {
        Error::Unsupported {
            journal: self.describe().to_string(),
            what: what.to_string(),
        }
    }
}

/// The bounces and complaints `journal` recorded; none for a journal that
/// does not keep them.
pub fn feedback_if_kept(journal: &dyn Journal) -> Result<Vec<Feedback>> {
    match journal.feedback() {
        Err(Error::Unsupported { .. }) => Ok(Vec::new()),
        other => other,
    }
}

/// A recipient marked in flight ahead of its letter
/// ([`Journal::begin_ahead`]): the commit may still be under way.
#[derive(Debug)]
pub struct Ahead {
    /// The lower-cased address.
    pub address: String,
    committed: std::sync::mpsc::Receiver<Result<()>>,
}

impl Ahead {
    /// A mark whose commit is under way: the sender hears how it ended.
    pub(crate) fn pending(address: &str) -> (Ahead, std::sync::mpsc::Sender<Result<()>>) {
        let (tx, rx) = std::sync::mpsc::channel();
        let ahead = Ahead {
            address: address.to_string(),
            committed: rx,
        };
        (ahead, tx)
    }

    /// A mark already committed, or refused.
    pub(crate) fn settled(address: &str, result: Result<()>) -> Ahead {
        let (ahead, tx) = Ahead::pending(address);
        let _ = tx.send(result);
        ahead
    }

    /// Waits for the commit; `gone` is the error when the writer went away
    /// without a word.
    pub(crate) fn wait(self, gone: impl FnOnce() -> Error) -> Result<()> {
        self.committed.recv().unwrap_or_else(|_| Err(gone()))
    }
}

/// What [`Journal::claim`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// (row, address) of each recipient claimed, in row order.
    Rows(Vec<(usize, String)>),
    /// Nothing to claim now, but other workers hold recipients that may
    /// come back (their lease may run out): ask again shortly.
    Wait,
    /// Nothing left to send.
    Done,
}

/// One sending process of a shared journal, for `status`.
#[derive(Debug, Clone, Serialize)]
pub struct Worker {
    pub id: i32,
    pub host: String,
    pub pid: i32,
    pub started: String,
    /// Its lease is current.
    pub alive: bool,
    /// This process.
    pub me: bool,
    /// Recipients claimed and not yet attempted (or deferred, retrying).
    pub holds: usize,
    pub inflight: usize,
    /// Outcomes it recorded.
    pub sent: u64,
    /// From its start to its last heartbeat (or now).
    pub seconds: f64,
}

/// One recipient, every column, for [`copy`].
#[derive(Debug, Clone)]
pub struct Record {
    pub address: String,
    pub row: i64,
    pub line: i64,
    pub fingerprint: String,
    pub fields: String,
    pub state: State,
    pub attempts: i64,
    pub code: Option<i64>,
    pub reply: Option<String>,
    pub message_id: Option<String>,
    pub updated: i64,
}

/// A whole journal, for [`copy`].
#[derive(Debug, Clone, Default)]
pub struct Dump {
    pub meta: Vec<(String, String)>,
    pub records: Vec<Record>,
    /// The bounces and complaints recorded (`letterpress bounces`).
    pub feedback: Vec<Feedback>,
}

/// What came back after a letter was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A permanent failure (DSN status 5.x.x, or a plain-text bounce that
    /// says the address does not exist).
    Hard,
    /// A temporary failure (4.x.x): suppressed only after
    /// `--soft-bounce-limit` campaigns.
    Soft,
    /// An abuse report (RFC 5965 ARF): the recipient marked it as spam.
    Complaint,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Hard => "hard",
            Kind::Soft => "soft",
            Kind::Complaint => "complaint",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        [Kind::Hard, Kind::Soft, Kind::Complaint]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// One bounce or complaint, as the journal keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Feedback {
    /// The returned message's Message-ID, or a hash of it: recorded once.
    pub key: String,
    /// The lower-cased address it is about.
    pub address: String,
    pub kind: Kind,
    /// The status code (`5.1.1`), or the feedback type of a complaint.
    pub status: String,
    /// The remote server's words, or the report's.
    pub diagnostic: String,
    /// Seconds since the epoch when it was recorded.
    pub at: i64,
}

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
    Suppressed,
}

impl State {
    pub const ALL: [State; 7] = [
        State::Pending,
        State::Inflight,
        State::Deferred,
        State::Accepted,
        State::Failed,
        State::Ambiguous,
        State::Suppressed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Inflight => "inflight",
            State::Deferred => "deferred",
            State::Accepted => "accepted",
            State::Failed => "failed",
            State::Ambiguous => "ambiguous",
            State::Suppressed => "suppressed",
        }
    }

    /// Unknown names read as pending.
    pub(crate) fn parse(s: &str) -> State {
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
