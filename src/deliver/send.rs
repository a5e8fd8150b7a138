//! Sending a campaign: plan against the journal, then build and deliver
//! each letter from `--concurrency` sender threads, journalling every step.
//! The letters are exactly those of `render` (the one build step,
//! [`Builder::build`]); only Date and Message-ID differ between runs. The
//! destination is any [`Sink`] (SMTP, the local MTA, the null sink of a dry
//! run): the plan, the journal, retries and pacing are written once, here.
//!
//! Two passes over the list. The plan pass merges every row's address (no
//! MIME) to learn it and its fingerprint: it finds duplicates, rows the
//! journal already settled, and rows whose data changed since the journal
//! was written, and it writes the new ones as `pending`, all before anything
//! is sent. The send pass streams the rows again: each sender takes the
//! next planned row from the shared reader, builds and signs its letter on
//! its own core, journals `inflight` before handing it to the sink and the
//! outcome after the reply. No thread sits on the path of every message but
//! the CSV reader, which is held for one row at a time.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::compose::build::{Builder, Built};
use crate::compose::campaign::Campaign;
use crate::compose::recipients::{Recipient, Recipients};
use crate::compose::stamp::Clock;
use crate::deliver::journal::{Ahead, Claim, Journal, Known, NewEntry, State};
use crate::deliver::sink::{Envelope, Failure, Sink};
use crate::error::{Error, Result};
use crate::report::{Problem, Severity};

/// How a send runs, validated (see [`crate::cli::config::SendConfig`]).
#[derive(Debug, Clone)]
pub struct Options {
    pub concurrency: usize,
    /// The least time between two messages starting (`--rate`).
    pub interval: Option<Duration>,
    pub retries: u32,
    /// The first backoff; it doubles per retry, with jitter.
    pub retry_delay: Duration,
    pub resend_ambiguous: bool,
    pub retry_failed: bool,
    pub force: bool,
    pub limit: Option<usize>,
    pub redirect_to: Option<String>,
    pub clock: Clock,
    /// `--dry-run`: build every letter, journal and send none.
    pub dry_run: bool,
    /// `--suppress FILE`s: never sent, journalled as `suppressed`.
    pub suppress: std::sync::Arc<crate::compose::suppress::Suppressions>,
}

/// Something worth telling the user as it happens.
#[derive(Debug)]
pub enum Event<'a> {
    /// A row that is not sent, or a recipient that failed, with its reason.
    Problem(&'a Problem),
    /// A letter was handed over (or, in a dry run, would have been).
    Progress,
}

/// The counts of a send, for the summary line and `--json`.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Summary {
    /// Rows in the list.
    pub rows: usize,
    /// Letters this run set out to send.
    pub planned: usize,
    /// Accepted by the server in this run.
    pub accepted: usize,
    /// Rejected for good (5xx, or 4xx after every retry) in this run.
    pub failed: usize,
    /// Hang-up or timeout after the body in this run: maybe delivered.
    pub ambiguous: usize,
    /// Still deferred (4xx) when the run stopped.
    pub deferred: usize,
    /// Planned but not attempted because the run stopped early.
    pub not_attempted: usize,
    /// Accepted in an earlier run: skipped.
    pub already_accepted: usize,
    /// Ambiguous in an earlier run: skipped (see `--resend-ambiguous`).
    pub skipped_ambiguous: usize,
    /// Failed in an earlier run: skipped (see `--retry-failed`).
    pub skipped_failed: usize,
    /// Rows whose address an earlier row already has: sent once.
    pub duplicates: usize,
    /// Rows that cannot be rendered (bad address, header injection …).
    pub rejected: usize,
    /// Rows held back by `--limit`.
    pub held_back: usize,
    /// Rows on a `--suppress` list, or that bounced hard or complained
    /// (as the journal's bounces say): never sent.
    pub suppressed: usize,
    pub dry_run: bool,
    pub interrupted: bool,
    /// Why the run stopped early, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fatal: Option<String>,
    pub seconds: f64,
    pub journal: String,
    /// Database round trips of the journal, where it counts them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal_round_trips: Option<u64>,
}

impl Summary {
    /// 130 interrupted, 1 stopped by a fatal error, 3 when any recipient of
    /// the list is failed, ambiguous or rejected (this run or an earlier
    /// one), else 0.
    pub fn exit_code(&self) -> u8 {
        if self.interrupted {
            crate::exit::INTERRUPTED
        } else if self.fatal.is_some() {
            crate::exit::FATAL
        } else if self.failed
            + self.ambiguous
            + self.rejected
            + self.skipped_ambiguous
            + self.skipped_failed
            + self.deferred
            > 0
        {
            crate::exit::ROWS_REJECTED
        } else {
            crate::exit::OK
        }
    }
}

/// One send: what it builds with, where it delivers, what it journals in,
/// and how the caller hears of it.
pub struct Sending<'a> {
    /// The campaign, the clock and the run's date, and the DKIM signer.
    pub builder: Builder<'a>,
    /// SMTP, the local MTA, or the null sink of a dry run.
    pub sink: &'a dyn Sink,
    pub journal: &'a dyn Journal,
    pub options: &'a Options,
    /// Set by Ctrl-C: no new recipient is started, the messages in flight
    /// finish.
    pub stop: &'a AtomicBool,
    /// Called from several threads.
    pub on_event: &'a (dyn Fn(Event<'_>) + Sync),
}

/// What the plan pass learns of a row, without building the letter.
struct Planned {
    address: String,
    row: usize,
    line: u64,
    fingerprint: u128,
    fields: Vec<String>,
}

/// Rows merged in parallel per plan step.
const CHUNK: usize = 512;

/// What the plan pass decided.
struct Plan {
    /// The rows to send (a shared journal: that this process may claim).
    send: Vec<usize>,
    /// A shared journal: those rows, kept from the plan's reading (the
    /// journal hands them out in any order).
    rows: Option<HashMap<usize, Recipient>>,
}

impl Sending<'_> {
    fn campaign(&self) -> &Campaign {
        self.builder.campaign
    }

    fn problem(&self, severity: Severity, row: usize, line: u64, message: String) -> Problem {
        Problem::new(severity, self.campaign().csv_name(), message)
            .at_line(line)
            .at_row(row)
    }

    /// Plans, then sends. `reopen` gives a fresh reader of the list (it is
    /// read twice, once with a shared journal); `on_plan` hears the counts
    /// once the plan is made.
    pub fn run(
        &self,
        reopen: &dyn Fn() -> Result<Recipients>,
        on_plan: &mut dyn FnMut(&Summary),
    ) -> Result<Summary> {
        let started = Instant::now();
        let mut summary = Summary {
            dry_run: self.options.dry_run,
            journal: self.journal.describe().to_string(),
            ..Summary::default()
        };
        let plan = self.plan(reopen()?, &mut summary)?;
        summary.planned = plan.send.len();
        on_plan(&summary);
        if !plan.send.is_empty() {
            // A shared journal's rows were kept from the plan.
            let recipients = match plan.rows {
                Some(_) => None,
                None => Some(reopen()?),
            };
            self.deliver_all(recipients, plan, &mut summary)?;
        }
        summary.seconds = started.elapsed().as_secs_f64();
        summary.journal_round_trips = self.journal.round_trips();
        Ok(summary)
    }

    /// Refuses a journal written for another campaign, another purpose or
    /// an older template; says whether the template changed (allowed with
    /// `--force`).
    fn check_journal(&self) -> Result<bool> {
        let journal = self.journal;
        // A campaign is known by its template's file name: the path may be
        // given relative to another folder, but two campaigns never share
        // a journal (the default journal is named after the template).
        let name = |p: &str| {
            std::path::Path::new(p)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        };
        let ours = self.campaign().template().path.display().to_string();
        if let Some(theirs) = journal.meta("template")? {
            if name(&theirs) != name(&ours) {
                let list = journal.meta("recipients")?.unwrap_or_default();
                return Err(Error::Journal {
                    path: journal.describe().into(),
                    message: format!(
                        "belongs to another campaign: {theirs} to {list}, not {ours}; nothing \
                         was sent. Give this campaign its own --journal (or leave --journal \
                         out for the default), or, if the template was renamed, rename it back"
                    ),
                });
            }
        }
        let redirect = self.options.redirect_to.clone().unwrap_or_default();
        if let Some(was) = journal.meta("redirect_to")? {
            if was != redirect {
                let what = |r: &str| {
                    if r.is_empty() {
                        "a real send".to_string()
                    } else {
                        format!("a rehearsal to {r}")
                    }
                };
                return Err(Error::Journal {
                    path: journal.describe().into(),
                    message: format!(
                        "was written by {}, and this is {}; use another --journal",
                        what(&was),
                        what(&redirect)
                    ),
                });
            }
        }
        let hash = format!("{:032x}", self.campaign().hash());
        let template_changed = journal
            .meta("template_hash")?
            .is_some_and(|was| was != hash);
        let others = if template_changed && self.shared() {
            self.others()?
        } else {
            Vec::new()
        };
        if template_changed && !others.is_empty() {
            return Err(Error::Changed {
                path: journal.describe().into(),
                message: format!(
                    "the template {} differs from the one the running workers send ({}); \
                     nothing was sent. Start every worker with the same template files",
                    self.campaign().describe(),
                    others.join(", ")
                ),
            });
        }
        if template_changed && !self.options.force {
            return Err(Error::Changed {
                path: journal.describe().into(),
                message: format!(
                    "the template {} changed since this journal was written; the letters sent \
                     so far differ from the rest. Pass --force to send the new version to \
                     everyone not yet accepted, or use a new --journal",
                    self.campaign().describe()
                ),
            });
        }
        Ok(template_changed)
    }

    /// The first pass: every row's address and fingerprint against the
    /// journal. Returns the rows to send, in row order; new recipients are
    /// journalled as pending, all in one transaction, before anything is
    /// sent.
    fn plan(&self, mut recipients: Recipients, summary: &mut Summary) -> Result<Plan> {
        let journal = self.journal;
        let template_changed = self.check_journal()?;
        let recovered = journal.recover()?;
        // A shared journal: the whole list is read and fingerprinted first,
        // then the plan's lock is taken before the journal is read, so
        // that a worker starting together with others reads what the first
        // one wrote, and need not write it again; the workers starting
        // together wait for each other only for that.
        let mut pre = None;
        let mut kept = None;
        if self.shared() {
            let mut chunks = Vec::new();
            while let Some(chunk) = self.read_chunk(&mut recipients)? {
                chunks.push(chunk);
            }
            pre = Some(chunks.into_iter());
            kept = Some(HashMap::new());
            journal.plan_start()?;
        }
        let read = journal
            .known()
            .and_then(|known| Ok((known, self.suppressions()?)));
        let (mut known, suppress) = match read {
            Ok(read) => read,
            Err(e) => {
                if self.shared() {
                    journal.plan_end(false)?;
                }
                return Err(e);
            }
        };
        // A shared journal's in-flight recipients belong to running workers
        // (recover made those of stopped ones ambiguous).
        if recovered == 0 && !self.shared() {
            // In a dry run the file is not touched: read in-flight ones as
            // ambiguous.
            for k in known.values_mut() {
                if k.state == State::Inflight {
                    k.state = State::Ambiguous;
                }
            }
        }
        let mut planner = Planner {
            sending: self,
            known,
            template_changed,
            seen: HashMap::new(),
            changed: Vec::new(),
            send: Vec::new(),
            claimable: HashSet::new(),
            requeue: Vec::new(),
            list_hash: xxhash_rust::xxh3::Xxh3::new(),
            suppress,
            suppressed: Vec::new(),
        };
        if !self.shared() {
            journal.plan_start()?;
        }
        let result = (|| -> Result<()> {
            loop {
                let chunk = match pre.as_mut() {
                    Some(pre) => match pre.next() {
                        Some(chunk) => chunk,
                        None => return Ok(()),
                    },
                    None => match self.read_chunk(&mut recipients)? {
                        Some(chunk) => chunk,
                        None => return Ok(()),
                    },
                };
                let mut keys = Vec::with_capacity(chunk.len());
                let mut rows = Vec::with_capacity(chunk.len());
                for item in chunk {
                    summary.rows += 1;
                    match item {
                        Ok(p) => {
                            keys.push(planner.consider(&p, summary));
                            rows.push(p);
                        }
                        Err(p) => {
                            summary.rejected += 1;
                            (self.on_event)(Event::Problem(&p));
                        }
                    }
                }
                let batch: Vec<NewEntry<'_>> = keys
                    .iter()
                    .zip(&rows)
                    .filter_map(|(k, p)| {
                        Some(NewEntry {
                            address: k.as_deref()?,
                            row: p.row,
                            line: p.line,
                            fingerprint: p.fingerprint,
                            fields: &p.fields,
                        })
                    })
                    .collect();
                journal.add(&batch)?;
                // A shared journal hands out rows in any order: this
                // process keeps those it may send.
                if let Some(kept) = kept.as_mut() {
                    let columns = recipients.columns();
                    kept.extend(
                        rows.into_iter()
                            .filter(|p| planner.claimable.contains(&p.row))
                            .map(|p| {
                                (
                                    p.row,
                                    Recipient {
                                        row: p.row,
                                        line: p.line,
                                        columns: columns.clone(),
                                        fields: p.fields,
                                    },
                                )
                            }),
                    );
                }
            }
        })()
        .and_then(|()| planner.refuse_changed())
        .and_then(|()| self.check_list(&planner, recipients.name()))
        .and_then(|()| match summary.rows {
            0 => Err(Error::Recipients {
                path: recipients.name().to_string(),
                message: "has a header line but no contacts; add one line per contact".into(),
            }),
            _ => Ok(()),
        });
        if let Err(e) = result {
            journal.plan_end(false)?;
            return Err(e);
        }
        let hash = format!("{:032x}", self.campaign().hash());
        journal.set_meta("template_hash", &hash)?;
        journal.set_meta(
            "template",
            &self.campaign().template().path.display().to_string(),
        )?;
        journal.set_meta("recipients", recipients.name())?;
        if self.shared() {
            journal.requeue(&planner.requeue)?;
            journal.set_meta(
                "list_hash",
                &format!("{:032x}", planner.list_hash.digest128()),
            )?;
        }
        journal.set_meta(
            "columns",
            &serde_json::to_string(recipients.columns().names()).expect("JSON"),
        )?;
        journal.set_meta(
            "redirect_to",
            self.options.redirect_to.as_deref().unwrap_or_default(),
        )?;
        journal.plan_end(true)?;
        for (k, why) in &planner.suppressed {
            journal.finish(k, State::Suppressed, None, why)?;
        }
        journal.flush()?;
        if let Some(rows) = kept {
            return Ok(Plan {
                send: planner.claimable.into_iter().collect(),
                rows: Some(rows),
            });
        }
        Ok(Plan {
            send: planner.send,
            rows: None,
        })
    }

    /// The next rows of the list (up to [`CHUNK`]), with what the plan
    /// needs of each, worked out in parallel; `None` at the end.
    fn read_chunk(
        &self,
        recipients: &mut Recipients,
    ) -> Result<Option<Vec<std::result::Result<Planned, Problem>>>> {
        use rayon::prelude::*;
        let mut chunk = Vec::with_capacity(CHUNK);
        while chunk.len() < CHUNK {
            match recipients.next_row()? {
                Some(r) => chunk.push(r),
                None => break,
            }
        }
        if chunk.is_empty() {
            return Ok(None);
        }
        let campaign = self.campaign();
        Ok(Some(
            chunk
                .into_par_iter()
                .map(|row| {
                    row.and_then(|r| {
                        Ok(Planned {
                            address: campaign.recipient(&r)?.address,
                            row: r.row,
                            line: r.line,
                            fingerprint: campaign.fingerprint(&r),
                            fields: r.fields,
                        })
                    })
                })
                .collect(),
        ))
    }

    /// The `--suppress` lists, and the hard bounces and complaints this
    /// journal recorded (`letterpress bounces`), which a journal that does
    /// not keep them yet has none of.
    fn suppressions(&self) -> Result<crate::compose::suppress::Suppressions> {
        let mut s = (*self.options.suppress).clone();
        let feedback = crate::deliver::journal::feedback_if_kept(self.journal)?;
        for f in feedback {
            let reason = match f.kind {
                crate::deliver::journal::Kind::Hard => "bounced",
                crate::deliver::journal::Kind::Complaint => "complained",
                crate::deliver::journal::Kind::Soft => continue,
            };
            s.insert(
                &f.address,
                crate::compose::suppress::Entry {
                    reason: format!("{reason} {}: {}", f.status, f.diagnostic),
                    file: self.journal.describe().into(),
                    line: 0,
                },
            );
        }
        Ok(s)
    }

    /// Whether this process shares the campaign with others: then the
    /// journal hands out the recipients.
    fn shared(&self) -> bool {
        self.journal.shared() && !self.options.dry_run
    }

    /// The other running workers of a shared journal, for messages.
    fn others(&self) -> Result<Vec<String>> {
        Ok(self
            .journal
            .workers()?
            .into_iter()
            .filter(|w| w.alive && !w.me)
            .map(|w| format!("worker {} (pid {} on {})", w.id, w.pid, w.host))
            .collect())
    }

    /// A shared campaign: every worker sends the same list. A different
    /// one is refused, naming it; with --force only when no other worker
    /// runs.
    fn check_list(&self, planner: &Planner<'_, '_>, name: &str) -> Result<()> {
        if !self.shared() {
            return Ok(());
        }
        let ours = format!("{:032x}", planner.list_hash.digest128());
        let Some(theirs) = self.journal.meta("list_hash")? else {
            return Ok(());
        };
        if theirs == ours {
            return Ok(());
        }
        let others = self.others()?;
        if self.options.force && others.is_empty() {
            return Ok(());
        }
        Err(Error::Changed {
            path: self.journal.describe().into(),
            message: format!(
                "the contact list {name} differs from the one this campaign was started \
                 with{}; nothing was sent. Start every worker with the same files{}",
                if others.is_empty() {
                    String::new()
                } else {
                    format!(" (sending now: {})", others.join(", "))
                },
                if others.is_empty() {
                    ", or pass --force to send the new list"
                } else {
                    ""
                }
            ),
        })
    }

    /// The second pass: the senders share the reader and each builds,
    /// journals and delivers its own letters.
    fn deliver_all(
        &self,
        recipients: Option<Recipients>,
        plan: Plan,
        summary: &mut Summary,
    ) -> Result<()> {
        let to_send = plan.send;
        let mut feed = Feed {
            left: to_send.len(),
            to_send: to_send.iter().copied().collect(),
            recipients,
            error: None,
            shared: None,
        };
        if let Some(rows) = plan.rows {
            feed.left = 0;
            feed.shared = Some(Claims {
                rows,
                queue: VecDeque::new(),
                claimed: 0,
                limit: self.options.limit,
                // Each claim is a round trip and a scan: a few dozen
                // letters per connection at a time, so that the claims
                // cost little per letter and the last ones still spread.
                batch: (self.options.concurrency * 32).clamp(32, 256),
            });
        }
        let feed = Mutex::new(feed);
        let senders = Senders {
            sending: self,
            feed,
            pace: Pace {
                interval: self.options.interval,
                next: Mutex::new(Instant::now()),
            },
            counters: Counters::default(),
            fatal: Mutex::new(None),
            journal_error: Mutex::new(None),
            halt: AtomicBool::new(false),
            build_ahead: self.options.concurrency
                < std::thread::available_parallelism().map_or(1, |n| n.get()),
            // Not with --rate: the letters wait anyway, and a mark would
            // only wait longer.
            ahead: self.journal.ahead() && self.options.interval.is_none() && !self.options.dry_run,
        };
        std::thread::scope(|s| {
            for _ in 0..self.options.concurrency.max(1) {
                s.spawn(|| senders.sender());
            }
        });
        // The last acceptances wait for a commit that no letter brings.
        let flushed = self.journal.flush();
        let c = &senders.counters;
        summary.accepted = c.accepted.load(Ordering::Relaxed);
        summary.failed = c.failed.load(Ordering::Relaxed);
        summary.ambiguous = c.ambiguous.load(Ordering::Relaxed);
        summary.deferred = c.deferred.load(Ordering::Relaxed);
        let rejected = c.rejected.load(Ordering::Relaxed);
        summary.rejected += rejected;
        let feed = senders.feed.into_inner().expect("feed");
        // With a shared journal, this process set out to send what it
        // claimed; the rest was the other workers'.
        let planned = match &feed.shared {
            Some(c) => c.claimed,
            None => to_send.len(),
        };
        if feed.shared.is_some() {
            summary.planned = planned;
        }
        summary.not_attempted =
            planned.saturating_sub(c.started.load(Ordering::Relaxed) + rejected);
        summary.interrupted = self.stop.load(Ordering::Relaxed);
        summary.fatal = senders.fatal.into_inner().expect("fatal");
        if let Some(e) = senders.journal_error.into_inner().expect("journal error") {
            return Err(e);
        }
        flushed?;
        match feed.error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// The plan's decisions, row by row.
struct Planner<'s, 'a> {
    sending: &'s Sending<'a>,
    known: HashMap<String, Known>,
    template_changed: bool,
    /// Lower-cased address -> the first row that has it.
    seen: HashMap<String, usize>,
    /// Recipients whose data changed since the journal was written.
    changed: Vec<String>,
    /// The rows to send.
    send: Vec<usize>,
    /// A shared journal: every row that may be sent, whatever --limit
    /// says (the journal hands them out).
    claimable: HashSet<usize>,
    /// A shared journal: failed or ambiguous recipients to send again.
    requeue: Vec<String>,
    /// The list's rows, hashed: every worker of a campaign sends the same.
    list_hash: xxhash_rust::xxh3::Xxh3,
    /// The `--suppress` lists and the journal's bounces.
    suppress: crate::compose::suppress::Suppressions,
    /// Suppressed recipients to journal as such, with the reason.
    suppressed: Vec<(String, String)>,
}

impl Planner<'_, '_> {
    /// Decides what to do with one row; returns its journal entry unless it
    /// is a duplicate (or, with a shared journal, there already, unchanged).
    fn consider(&mut self, p: &Planned, summary: &mut Summary) -> Option<String> {
        let s = self.sending;
        let opts = s.options;
        let k = p.address.to_ascii_lowercase();
        for f in &p.fields {
            self.list_hash.update(f.as_bytes());
            self.list_hash.update(b"\x1f");
        }
        self.list_hash.update(b"\x1e");
        if let Some(first) = self.seen.get(&k) {
            summary.duplicates += 1;
            (s.on_event)(Event::Problem(&s.problem(
                Severity::Warning,
                p.row,
                p.line,
                format!(
                    "{} is also on row {first}; it is sent once, for row {first}",
                    p.address
                ),
            )));
            return None;
        }
        self.seen.insert(k.clone(), p.row);
        if let Some(why) = self.suppress.get(&k) {
            summary.suppressed += 1;
            let why = match why.line {
                0 => why.reason.clone(),
                _ => why.to_string(),
            };
            (s.on_event)(Event::Problem(&s.problem(
                Severity::Warning,
                p.row,
                p.line,
                format!("{} is suppressed: {why}; not sent", p.address),
            )));
            // An acceptance stays on record (the letter did go out), and so
            // does an ambiguous one (it may have).
            let was = self.known.get(&k).map(|w| w.state);
            if !matches!(
                was,
                Some(State::Accepted | State::Ambiguous | State::Inflight)
            ) {
                self.suppressed.push((k.clone(), why));
            }
            return Some(k);
        }
        let state = match self.known.get(&k) {
            Some(was) => {
                if was.fingerprint != p.fingerprint && !self.template_changed {
                    self.changed.push(format!("row {} ({})", p.row, k));
                }
                was.state
            }
            None => State::Pending,
        };
        let go = match state {
            State::Accepted => {
                summary.already_accepted += 1;
                false
            }
            State::Ambiguous if !opts.resend_ambiguous => {
                summary.skipped_ambiguous += 1;
                let why = self
                    .known
                    .get(&k)
                    .and_then(|w| w.reply.clone())
                    .unwrap_or_default();
                (s.on_event)(Event::Problem(&s.problem(
                    Severity::Warning,
                    p.row,
                    p.line,
                    format!(
                        "{} is ambiguous from an earlier run ({why}); not resent \
                         (check the inbox, or pass --resend-ambiguous)",
                        p.address
                    ),
                )));
                false
            }
            State::Failed if !opts.retry_failed => {
                summary.skipped_failed += 1;
                false
            }
            // Another worker sends it now.
            State::Inflight if s.shared() => false,
            _ => true,
        };
        if go && s.shared() {
            self.claimable.insert(p.row);
        }
        if go {
            if opts.limit.is_some_and(|n| self.send.len() >= n) {
                summary.held_back += 1;
            } else {
                self.send.push(p.row);
                if s.shared() && matches!(state, State::Failed | State::Ambiguous) {
                    self.requeue.push(k.clone());
                }
            }
        }
        // Workers of a shared campaign start with the same list: the
        // second and later ones have nothing to write for a row the
        // journal holds unchanged, and hold the plan's lock (which keeps
        // the others from starting) for less time.
        let unchanged = self
            .known
            .get(&k)
            .is_some_and(|was| was.fingerprint == p.fingerprint && was.row == p.row);
        if unchanged && s.shared() {
            return None;
        }
        Some(k)
    }

    /// Stops the send when recipients' data changed, unless `--force`.
    fn refuse_changed(&self) -> Result<()> {
        if self.changed.is_empty() || self.sending.options.force {
            return Ok(());
        }
        let n = self.changed.len();
        let mut list = self
            .changed
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if n > 5 {
            list.push_str(&format!(" and {} more", n - 5));
        }
        Err(Error::Changed {
            path: self.sending.journal.describe().into(),
            message: format!(
                "the data of {n} recipient(s) changed since this journal was written: {list}. \
                 Pass --force to send the new data to those not yet accepted (accepted ones \
                 are never sent again), or use a new --journal"
            ),
        })
    }
}

/// The list, read once more by the senders in turn (not with a shared
/// journal: the plan kept its rows).
struct Feed {
    recipients: Option<Recipients>,
    to_send: HashSet<usize>,
    /// Planned rows not yet handed out.
    left: usize,
    /// The list could not be read to the end.
    error: Option<Error>,
    /// A shared journal hands out the rows instead.
    shared: Option<Claims>,
}

/// The rows a shared journal may hand out, and those it handed to this
/// process.
struct Claims {
    /// The list's rows that may be claimed, read in advance: claims come
    /// in any order.
    rows: HashMap<usize, Recipient>,
    /// Claimed, not yet handed to a sender: (row, address).
    queue: VecDeque<(usize, String)>,
    claimed: usize,
    /// `--limit`: claim no more.
    limit: Option<usize>,
    batch: usize,
}

impl Feed {
    /// The next row to send, with its address when a shared journal handed
    /// it out; `None` when all are handed out or the run stops.
    /// Without `wait`, `None` also when the journal has nothing to hand
    /// out now but may have later.
    fn next(
        &mut self,
        journal: &dyn Journal,
        stop: &AtomicBool,
        wait: bool,
    ) -> Option<(Recipient, Option<String>)> {
        if let Some(c) = &mut self.shared {
            loop {
                if let Some((row, address)) = c.queue.pop_front() {
                    // A row not in this process's plan stays claimed until
                    // it leaves, then goes back to the pool.
                    if let Some(r) = c.rows.remove(&row) {
                        return Some((r, Some(address)));
                    }
                    continue;
                }
                if stop.load(Ordering::Relaxed) || self.error.is_some() {
                    return None;
                }
                let want = match c.limit {
                    Some(n) => n.saturating_sub(c.claimed).min(c.batch),
                    None => c.batch,
                };
                if want == 0 {
                    return None;
                }
                match journal.claim(want) {
                    Ok(Claim::Rows(rows)) => {
                        c.claimed += rows.len();
                        c.queue.extend(rows);
                    }
                    // Other workers hold recipients that come back if
                    // their lease runs out.
                    Ok(Claim::Wait) if !wait => return None,
                    Ok(Claim::Wait) => {
                        sleep_until(Instant::now() + Duration::from_millis(200), stop)
                    }
                    Ok(Claim::Done) => return None,
                    Err(e) => {
                        self.error = Some(e);
                        return None;
                    }
                }
            }
        }
        self.next_row().map(|r| (r, None))
    }

    fn next_row(&mut self) -> Option<Recipient> {
        let recipients = self.recipients.as_mut()?;
        while self.left > 0 && self.error.is_none() {
            match recipients.next_row() {
                Ok(Some(Ok(r))) if self.to_send.contains(&r.row) => {
                    self.left -= 1;
                    return Some(r);
                }
                Ok(Some(_)) => {}
                Ok(None) => return None,
                Err(e) => self.error = Some(e),
            }
        }
        None
    }
}

#[derive(Default)]
struct Counters {
    accepted: AtomicUsize,
    failed: AtomicUsize,
    ambiguous: AtomicUsize,
    deferred: AtomicUsize,
    started: AtomicUsize,
    /// Rows the plan took that could not be built.
    rejected: AtomicUsize,
}

/// What the sender threads share.
struct Senders<'s, 'a> {
    sending: &'s Sending<'a>,
    feed: Mutex<Feed>,
    pace: Pace,
    counters: Counters,
    fatal: Mutex<Option<String>>,
    journal_error: Mutex<Option<Error>>,
    /// A fatal or journal error: every sender stops.
    halt: AtomicBool,
    /// Each sender has a helper thread that builds its next letter.
    build_ahead: bool,
    /// Each sender marks its next letter in flight while it sends the
    /// current one ([`Journal::ahead`]).
    ahead: bool,
}

impl Senders<'_, '_> {
    fn stopped(&self) -> bool {
        self.sending.stop.load(Ordering::Relaxed) || self.halt.load(Ordering::Relaxed)
    }

    fn set_fatal(&self, m: String) {
        let mut f = self.fatal.lock().expect("fatal");
        if f.is_none() {
            *f = Some(m);
        }
        self.halt.store(true, Ordering::Relaxed);
    }

    /// Notes a journal error (and stops everyone); false when there was one.
    fn journalled(&self, r: Result<()>) -> bool {
        match r {
            Ok(()) => true,
            Err(e) => {
                let mut je = self.journal_error.lock().expect("journal error");
                if je.is_none() {
                    *je = Some(e);
                }
                self.halt.store(true, Ordering::Relaxed);
                false
            }
        }
    }

    /// One sender thread: take a row, build its letter, deliver it; until
    /// the list is done or the run stops.
    ///
    /// With fewer senders than cores, a sender would leave a core idle
    /// while it waits for the server: then a helper thread builds its next
    /// letter meanwhile (one ahead, no more). With as many senders as cores
    /// or more, the other senders fill that time, and a handoff would only
    /// add context switches, so each builds its own. Whoever builds the
    /// next letter also marks it in flight ahead, when the journal wants
    /// that ([`Senders::mark`]).
    fn sender(&self) {
        if !self.build_ahead {
            // The sender builds (and marks) its next letter itself before
            // it sends the current one, but does not wait for one: the
            // other workers may hold the rest of the list.
            let mut marked: Option<(Built, Ahead)> = None;
            loop {
                let (built, mark) = match marked.take() {
                    Some((b, a)) => (b, Some(a)),
                    None => match self.take(true) {
                        Some(b) => (b, None),
                        None => return,
                    },
                };
                if self.ahead && !self.stopped() {
                    marked = self.take(false).and_then(|b| self.mark(b));
                }
                if !self.send_one(&built, mark) {
                    if let Some((_, a)) = marked {
                        self.release(a);
                    }
                    return;
                }
            }
        }
        std::thread::scope(|s| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<(Built, Option<Ahead>)>(0);
            s.spawn(move || {
                while let Some(b) = self.take(true) {
                    let next = match self.ahead && !self.stopped() {
                        true => match self.mark(b) {
                            Some((b, a)) => (b, Some(a)),
                            None => return,
                        },
                        false => (b, None),
                    };
                    // The sender stopped: the letter stays unsent (not
                    // attempted), as when the run stops before its row.
                    if let Err(std::sync::mpsc::SendError((_, mark))) = tx.send(next) {
                        if let Some(a) = mark {
                            self.release(a);
                        }
                        return;
                    }
                }
            });
            for (built, mark) in rx {
                if !self.send_one(&built, mark) {
                    // Dropping the receiver stops the helper.
                    return;
                }
            }
        });
    }

    /// Marks `built` in flight ahead of its turn (see [`Journal::ahead`]):
    /// the commit runs while the sender sends its current letter, so that
    /// this one's MAIL FROM need not wait for the database. One letter
    /// ahead per sender, never more: a crash leaves at most one recipient
    /// per connection in flight that was never started (ambiguous on
    /// resume, see [`Journal::begin_ahead`]); a mark left over when the
    /// sender stops is undone. `None` on a journal error (the run stops).
    fn mark(&self, built: Built) -> Option<(Built, Ahead)> {
        let journal = self.sending.journal;
        match journal.begin_ahead(&key_of(&built), &built.message_id()) {
            Ok(a) => Some((built, a)),
            Err(e) => {
                self.journalled(Err(e));
                None
            }
        }
    }

    /// Paces, then delivers one letter; false when this sender must stop
    /// (a mark made ahead for it is then undone).
    fn send_one(&self, built: &Built, mark: Option<Ahead>) -> bool {
        let s = self.sending;
        if !self.journalled(self.pace.wait(s.journal, s.stop)) || self.stopped() {
            if let Some(a) = mark {
                self.release(a);
            }
            return false;
        }
        self.deliver(built, mark)
    }

    /// Undoes a mark made ahead whose letter is not sent.
    fn release(&self, a: Ahead) {
        self.journalled(self.sending.journal.release(a));
    }

    /// The next letter to deliver; rows that cannot be built are reported
    /// (the plan checked the address only: other problems of the row, a
    /// bad From or a failing helper, show here), and a dry run only counts
    /// them. `None` when there are none or the run stops.
    /// With `wait` false, a shared journal's claim that would have to
    /// wait for other workers gives `None` instead.
    fn take(&self, wait: bool) -> Option<Built> {
        let s = self.sending;
        loop {
            let built = match self.next_letter(wait)? {
                Ok(b) => b,
                Err(p) => {
                    self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                    (s.on_event)(Event::Problem(&p));
                    continue;
                }
            };
            for w in &built.letter.warnings {
                (s.on_event)(Event::Problem(w));
            }
            if s.options.dry_run {
                self.counters.started.fetch_add(1, Ordering::Relaxed);
                self.counters.accepted.fetch_add(1, Ordering::Relaxed);
                (s.on_event)(Event::Progress);
                continue;
            }
            return Some(built);
        }
    }

    /// The next planned row, built; `None` when the list is done or the
    /// run stops.
    fn next_letter(&self, wait: bool) -> Option<std::result::Result<Built, Problem>> {
        if self.stopped() {
            return None;
        }
        let s = self.sending;
        let (r, claimed) = self
            .feed
            .lock()
            .expect("feed")
            .next(s.journal, s.stop, wait)?;
        let built = s.builder.build(&r);
        if let (Err(p), Some(address)) = (&built, claimed) {
            // Left pending, another worker would claim it again: with a
            // shared journal a row that cannot be built fails.
            self.journalled(s.journal.finish(&address, State::Failed, None, &p.message));
        }
        Some(built)
    }

    /// Stops the run because the destination cannot be used; the letter
    /// was not handed over, so it is journalled as deferred and the next
    /// run sends it. Returns false: this sender stops.
    fn stop_for(&self, key: &str, why: String) -> bool {
        self.counters.deferred.fetch_add(1, Ordering::Relaxed);
        self.journalled(
            self.sending
                .journal
                .finish(key, State::Deferred, None, &why),
        );
        self.set_fatal(why);
        false
    }

    /// Delivers one letter, retrying transient failures; journals each
    /// attempt (the first one's mark in flight may have been made ahead).
    /// False when this sender must stop.
    fn deliver(&self, built: &Built, mut mark: Option<Ahead>) -> bool {
        let s = self.sending;
        let (opts, journal, c) = (s.options, s.journal, &self.counters);
        let key = key_of(built);
        let envelope = Envelope {
            to: opts
                .redirect_to
                .as_deref()
                .unwrap_or(&built.letter.parts.to.address),
            ..Envelope::of(built)
        };
        let (row, line) = (built.letter.row, built.letter.line);
        let report = |sev, m: String| (s.on_event)(Event::Problem(&s.problem(sev, row, line, m)));
        let message_id = built.message_id();
        let mut tries = 0u32;
        loop {
            let marked = match mark.take() {
                Some(a) => journal.ready(a),
                None => journal.begin(&key, &message_id),
            };
            if !self.journalled(marked) {
                return false;
            }
            if tries == 0 {
                c.started.fetch_add(1, Ordering::Relaxed);
            }
            let (state, code, reply) = match s.sink.deliver(&envelope, built) {
                Ok(receipt) => {
                    c.accepted.fetch_add(1, Ordering::Relaxed);
                    (State::Accepted, None, receipt.reply)
                }
                Err(Failure::Permanent { code, reply }) => {
                    c.failed.fetch_add(1, Ordering::Relaxed);
                    report(Severity::Error, format!("{}: failed: {reply}", envelope.to));
                    (State::Failed, code, reply)
                }
                Err(Failure::Ambiguous { reason }) => {
                    c.ambiguous.fetch_add(1, Ordering::Relaxed);
                    report(
                        Severity::Warning,
                        format!("{}: ambiguous: {reason}", envelope.to),
                    );
                    (State::Ambiguous, None, reason)
                }
                Err(Failure::Fatal(m)) => return self.stop_for(&key, m),
                // No reply at all, every time (the server is down or does
                // not greet, the MTA cannot queue): the destination, not
                // this recipient, is the trouble; stop rather than fail
                // everyone in turn.
                Err(Failure::Transient { code: None, reply }) if tries >= opts.retries => {
                    return self.stop_for(&key, format!("{reply} (after {} attempts)", tries + 1))
                }
                Err(Failure::Transient { code, reply }) if tries < opts.retries => {
                    if !self.journalled(journal.finish(&key, State::Deferred, code, &reply)) {
                        return false;
                    }
                    sleep_until(Instant::now() + backoff(opts.retry_delay, tries), s.stop);
                    tries += 1;
                    if self.stopped() {
                        c.deferred.fetch_add(1, Ordering::Relaxed);
                        return false;
                    }
                    continue;
                }
                Err(Failure::Transient { code, reply }) => {
                    let reply = format!("{reply} (gave up after {} attempts)", tries + 1);
                    c.failed.fetch_add(1, Ordering::Relaxed);
                    report(Severity::Error, format!("{}: failed: {reply}", envelope.to));
                    (State::Failed, code, reply)
                }
            };
            // An outcome rides with the next letter's in-flight commit (one
            // commit per letter), unless --rate spaces the letters out: then
            // it would wait long, and is committed now. A failure waits for
            // its own commit where that costs little (SQLite).
            let written = match state {
                State::Accepted if opts.interval.is_none() => journal.accepted_later(&key, &reply),
                State::Failed | State::Ambiguous if opts.interval.is_none() => {
                    journal.finished_later(&key, state, code, &reply)
                }
                _ => journal.finish(&key, state, code, &reply),
            };
            let ok = self.journalled(written);
            (s.on_event)(Event::Progress);
            return ok;
        }
    }
}

/// A letter's key in the journal: its lower-cased address.
fn key_of(built: &Built) -> String {
    built.letter.parts.to.address.to_ascii_lowercase()
}

/// The pacing of `--rate`: each sender reserves the next start time.
struct Pace {
    interval: Option<Duration>,
    next: Mutex<Instant>,
}

impl Pace {
    /// Waits for this letter's turn; a shared journal keeps the pace of
    /// every process of the campaign.
    fn wait(&self, journal: &dyn Journal, stop: &AtomicBool) -> Result<()> {
        let Some(iv) = self.interval else {
            return Ok(());
        };
        if let Some(d) = journal.pace(iv)? {
            sleep_until(Instant::now() + d, stop);
            return Ok(());
        }
        let at = {
            let mut next = self.next.lock().expect("pace");
            let now = Instant::now();
            let at = (*next).max(now);
            *next = at + iv;
            at
        };
        sleep_until(at, stop);
        Ok(())
    }
}

/// Sleeps until `at`, waking early when `stop` is set.
fn sleep_until(at: Instant, stop: &AtomicBool) {
    loop {
        let now = Instant::now();
        if now >= at || stop.load(Ordering::Relaxed) {
            return;
        }
        std::thread::sleep((at - now).min(Duration::from_millis(50)));
    }
}

/// Exponential backoff with jitter: `base * 2^n`, times 0.5-1.5, at most
/// 10 minutes.
fn backoff(base: Duration, n: u32) -> Duration {
    let mut b = [0u8; 2];
    let r = getrandom::fill(&mut b).map_or(0.5, |()| u16::from_le_bytes(b) as f64 / 65535.0);
    let d = base.as_secs_f64() * 2f64.powi(n.min(16) as i32) * (0.5 + r);
    Duration::from_secs_f64(d.min(600.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter() {
        for n in 0..5 {
            let d = backoff(Duration::from_millis(100), n).as_secs_f64();
            let mid = 0.1 * 2f64.powi(n as i32);
            assert!(d >= mid * 0.5 - 1e-9 && d <= mid * 1.5 + 1e-9, "{n}: {d}");
        }
        assert!(backoff(Duration::from_secs(100), 30) <= Duration::from_secs(600));
    }

    #[test]
    fn exit_codes() {
        let mut s = Summary::default();
        assert_eq!(s.exit_code(), 0);
        s.skipped_ambiguous = 1;
        assert_eq!(s.exit_code(), 3);
        s.fatal = Some("x".into());
        assert_eq!(s.exit_code(), 1);
        s.interrupted = true;
        assert_eq!(s.exit_code(), 130);
    }
}
