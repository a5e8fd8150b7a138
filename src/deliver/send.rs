//! Sending a campaign: plan against the journal, then render and hand each
//! letter to the SMTP sink from `--concurrency` threads, journalling every
//! step. The letters are exactly those of `render` ([`Campaign::render`],
//! [`message::build`], the same [`Clock`]); only Date and Message-ID differ
//! between runs.
//!
//! Two passes over the list. The plan pass merges every row (no MIME) to
//! learn its address and fingerprint: it finds duplicates, rows the journal
//! already settled, and rows whose data changed since the journal was
//! written, and it writes the new ones as `pending`, all before anything is
//! sent. The send pass streams the rows again, builds the letters on one
//! thread a little ahead of the senders (a bounded channel keeps memory
//! flat), and the sender threads journal `inflight` before MAIL FROM and the
//! outcome after the reply.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::compose::campaign::{Campaign, Letter};
use crate::compose::message;
use crate::compose::recipients::Recipients;
use crate::deliver::dkim::Signer;
use crate::deliver::journal::{Journal, NewEntry, State};
use crate::deliver::run::Clock;
use crate::deliver::smtp::{Attempt, Fatal, SetupError, SmtpSink};
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
    pub dry_run: bool,
    pub interrupted: bool,
    /// Why the run stopped early, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fatal: Option<String>,
    pub seconds: f64,
    pub journal: String,
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

/// Where letters go: the server, or nowhere (`--dry-run`).
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    Smtp(&'a SmtpSink),
    DryRun,
}

/// What the plan pass learns of a row, without merging the letter.
struct Planned {
    address: String,
    row: usize,
    line: u64,
    fingerprint: u128,
    fields: Vec<String>,
}

/// The plan: which rows to send, in row order.
struct Plan {
    send: Vec<usize>,
}

fn key(letter: &Letter) -> String {
    letter.parts.to.address.to_ascii_lowercase()
}

/// Rows merged in parallel per plan step.
const CHUNK: usize = 512;

/// Plans, then sends. `reopen` gives a fresh reader of the list (it is read
/// twice). `stop` is set by Ctrl-C: no new recipient is started, the
/// messages in flight finish. `on_event` is called from several threads.
#[allow(clippy::too_many_arguments)]
pub fn send(
    campaign: &Campaign,
    reopen: &dyn Fn() -> Result<Recipients>,
    journal: &dyn Journal,
    target: Target<'_>,
    signer: Option<&Signer>,
    opts: &Options,
    stop: &AtomicBool,
    on_event: &(dyn Fn(Event<'_>) + Sync),
    on_plan: &mut dyn FnMut(&Summary),
) -> Result<Summary> {
    let started = Instant::now();
    let mut summary = Summary {
        dry_run: matches!(target, Target::DryRun),
        journal: journal.describe().to_string(),
        ..Summary::default()
    };
    let plan = plan(campaign, reopen()?, journal, opts, &mut summary, on_event)?;
    summary.planned = plan.send.len();
    on_plan(&summary);
    if !plan.send.is_empty() {
        deliver(
            campaign,
            reopen()?,
            journal,
            target,
            signer,
            opts,
            &plan,
            stop,
            on_event,
            &mut summary,
        )?;
    }
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

fn plan(
    campaign: &Campaign,
    mut recipients: Recipients,
    journal: &dyn Journal,
    opts: &Options,
    summary: &mut Summary,
    on_event: &(dyn Fn(Event<'_>) + Sync),
) -> Result<Plan> {
    use rayon::prelude::*;
    let hash = format!("{:032x}", campaign.hash());
    let redirect = opts.redirect_to.clone().unwrap_or_default();
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
    let template_changed = journal
        .meta("template_hash")?
        .is_some_and(|was| was != hash);
    if template_changed && !opts.force {
        return Err(Error::Changed {
            path: journal.describe().into(),
            message: format!(
                "the template {} changed since this journal was written; the letters sent \
                 so far differ from the rest. Pass --force to send the new version to \
                 everyone not yet accepted, or use a new --journal",
                campaign.template().path.display()
            ),
        });
    }
    let recovered = journal.recover()?;
    let mut known = journal.known()?;
    if recovered == 0 {
        // In a dry run the file is not touched: read in-flight ones as ambiguous.
        for k in known.values_mut() {
            if k.state == State::Inflight {
                k.state = State::Ambiguous;
            }
        }
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut changed: Vec<String> = Vec::new();
    let mut send = Vec::new();
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut entries: Vec<(String, Planned)> = Vec::new();
    journal.plan_start()?;
    let result = (|| -> Result<()> {
        loop {
            chunk.clear();
            while chunk.len() < CHUNK {
                match recipients.next_row()? {
                    Some(r) => chunk.push(r),
                    None => break,
                }
            }
            if chunk.is_empty() {
                return Ok(());
            }
            let rendered: Vec<_> = chunk
                .par_drain(..)
                .map(|row| {
                    row.and_then(|r| {
                        let to = campaign.recipient(&r)?;
                        Ok(Planned {
                            address: to.address,
                            row: r.row,
                            line: r.line,
                            fingerprint: campaign.fingerprint(&r),
                            fields: r.fields,
                        })
                    })
                })
                .collect();
            entries.clear();
            for item in rendered {
                summary.rows += 1;
                let letter = match item {
                    Ok(x) => x,
                    Err(p) => {
                        summary.rejected += 1;
                        on_event(Event::Problem(&p));
                        continue;
                    }
                };
                let k = letter.address.to_ascii_lowercase();
                if let Some(first) = seen.get(&k) {
                    summary.duplicates += 1;
                    let p = Problem::new(
                        Severity::Warning,
                        campaign.csv_name(),
                        format!(
                            "{} is also on row {first}; it is sent once, for row {first}",
                            letter.address
                        ),
                    )
                    .at_line(letter.line)
                    .at_row(letter.row);
                    on_event(Event::Problem(&p));
                    continue;
                }
                seen.insert(k.clone(), letter.row);
                let state = match known.get(&k) {
                    Some(was) => {
                        if was.fingerprint != letter.fingerprint && !template_changed {
                            changed.push(format!("row {} ({})", letter.row, k));
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
                        let why = known
                            .get(&k)
                            .and_then(|w| w.reply.clone())
                            .unwrap_or_default();
                        let p = Problem::new(
                            Severity::Warning,
                            campaign.csv_name(),
                            format!(
                                "{} is ambiguous from an earlier run ({why}); not resent \
                                 (check the inbox, or pass --resend-ambiguous)",
                                letter.address
                            ),
                        )
                        .at_line(letter.line)
                        .at_row(letter.row);
                        on_event(Event::Problem(&p));
                        false
                    }
                    State::Failed if !opts.retry_failed => {
                        summary.skipped_failed += 1;
                        false
                    }
                    _ => true,
                };
                if go {
                    if opts.limit.is_some_and(|n| send.len() >= n) {
                        summary.held_back += 1;
                    } else {
                        send.push(letter.row);
                    }
                }
                entries.push((k, letter));
            }
            let batch: Vec<NewEntry<'_>> = entries
                .iter()
                .map(|(k, l)| NewEntry {
                    address: k,
                    row: l.row,
                    line: l.line,
                    fingerprint: l.fingerprint,
                    fields: &l.fields,
                })
                .collect();
            journal.add(&batch)?;
        }
    })();
    if let Err(e) = result {
        journal.plan_end(false)?;
        return Err(e);
    }
    if !changed.is_empty() && !opts.force {
        journal.plan_end(false)?;
        let n = changed.len();
        let mut list = changed.into_iter().take(5).collect::<Vec<_>>().join(", ");
        if n > 5 {
            list.push_str(&format!(" and {} more", n - 5));
        }
        return Err(Error::Changed {
            path: journal.describe().into(),
            message: format!(
                "the data of {n} recipient(s) changed since this journal was written: {list}. \
                 Pass --force to send the new data to those not yet accepted (accepted ones \
                 are never sent again), or use a new --journal"
            ),
        });
    }
    if summary.rows == 0 {
        journal.plan_end(false)?;
        return Err(Error::Recipients {
            path: recipients.name().to_string(),
            message: "has a header line but no contacts; add one line per contact".into(),
        });
    }
    journal.set_meta("template_hash", &hash)?;
    journal.set_meta("template", &campaign.template().path.display().to_string())?;
    journal.set_meta("recipients", recipients.name())?;
    journal.set_meta(
        "columns",
        &serde_json::to_string(recipients.columns().names()).expect("JSON"),
    )?;
    journal.set_meta("redirect_to", &redirect)?;
    journal.plan_end(true)?;
    Ok(Plan { send })
}

/// A letter built and ready to go.
struct Job {
    key: String,
    row: usize,
    line: u64,
    from: String,
    to: String,
    message_id: String,
    eml: Vec<u8>,
}

/// The pacing of `--rate`: each sender reserves the next start time.
struct Pace {
    interval: Option<Duration>,
    next: Mutex<Instant>,
}

impl Pace {
    fn wait(&self, stop: &AtomicBool) {
        let Some(iv) = self.interval else { return };
        let at = {
            let mut next = self.next.lock().expect("pace");
            let now = Instant::now();
            let at = (*next).max(now);
            *next = at + iv;
            at
        };
        sleep_until(at, stop);
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

#[derive(Default)]
struct Counters {
    accepted: AtomicUsize,
    failed: AtomicUsize,
    ambiguous: AtomicUsize,
    deferred: AtomicUsize,
    started: AtomicUsize,
}

#[allow(clippy::too_many_arguments)]
fn deliver(
    campaign: &Campaign,
    mut recipients: Recipients,
    journal: &dyn Journal,
    target: Target<'_>,
    signer: Option<&Signer>,
    opts: &Options,
    plan: &Plan,
    stop: &AtomicBool,
    on_event: &(dyn Fn(Event<'_>) + Sync),
    summary: &mut Summary,
) -> Result<()> {
    let now = match opts.clock {
        Clock::Fixed(d) => d,
        Clock::System => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
    };
    let concurrency = opts.concurrency.max(1);
    let (tx, rx) = mpsc::sync_channel::<Job>((concurrency * 2).max(16));
    // Shared by the senders only: when the last one stops (Ctrl-C, a fatal
    // error) the receiver is dropped and the producer's send fails at once.
    let rx = std::sync::Arc::new(Mutex::new(rx));
    let counters = Counters::default();
    let fatal: Mutex<Option<String>> = Mutex::new(None);
    let journal_error: Mutex<Option<Error>> = Mutex::new(None);
    let halt = AtomicBool::new(false);
    let pace = Pace {
        interval: opts.interval,
        next: Mutex::new(Instant::now()),
    };
    let to_send: HashSet<usize> = plan.send.iter().copied().collect();
    let stopped = || stop.load(Ordering::Relaxed) || halt.load(Ordering::Relaxed);
    let mut rejected = 0usize;

    let produce_result = std::thread::scope(|s| -> Result<()> {
        for _ in 0..concurrency {
            let rx = std::sync::Arc::clone(&rx);
            let (pace, counters, fatal, journal_error, halt) =
                (&pace, &counters, &fatal, &journal_error, &halt);
            s.spawn(move || {
                sender(
                    &rx,
                    journal,
                    target,
                    opts,
                    pace,
                    counters,
                    fatal,
                    journal_error,
                    halt,
                    stop,
                    campaign,
                    on_event,
                )
            });
        }
        drop(rx);
        // Build on this thread, a little ahead of the senders.
        let mut left = to_send.len();
        let rejected = &mut rejected;
        while left > 0 && !stopped() {
            let Some(row) = recipients.next_row()? else {
                break;
            };
            let Ok(r) = row else { continue };
            if !to_send.contains(&r.row) {
                continue;
            }
            left -= 1;
            let letter = match campaign.render(&r) {
                Ok(l) => l,
                Err(p) => {
                    // The plan checked the address only: other problems of
                    // the row (a bad From, a failing helper) show here.
                    *rejected += 1;
                    on_event(Event::Problem(&p));
                    continue;
                }
            };
            let stamp = opts.clock.stamp(now, letter.fingerprint);
            let eml = match message::build(&letter.parts, &stamp) {
                Ok(e) => e,
                Err(too_long) => {
                    *rejected += 1;
                    let p = Problem::new(Severity::Error, campaign.csv_name(), too_long.message())
                        .at_line(letter.line)
                        .at_row(letter.row);
                    on_event(Event::Problem(&p));
                    continue;
                }
            };
            let eml = match signer {
                Some(sg) => sg.sign(&eml, now),
                None => eml,
            };
            let job = Job {
                key: key(&letter),
                row: letter.row,
                line: letter.line,
                from: letter.parts.from.address.clone(),
                to: opts
                    .redirect_to
                    .clone()
                    .unwrap_or_else(|| letter.parts.to.address.clone()),
                message_id: stamp.message_id(letter.parts.from.domain()),
                eml,
            };
            if tx.send(job).is_err() {
                break;
            }
        }
        drop(tx);
        Ok(())
    });
    // Channel closed: the senders have drained it (or stopped) and exited.
    let accepted = counters.accepted.load(Ordering::Relaxed);
    let failed = counters.failed.load(Ordering::Relaxed);
    let ambiguous = counters.ambiguous.load(Ordering::Relaxed);
    let deferred = counters.deferred.load(Ordering::Relaxed);
    summary.accepted = accepted;
    summary.failed = failed;
    summary.ambiguous = ambiguous;
    summary.deferred = deferred;
    summary.rejected += rejected;
    summary.not_attempted = plan
        .send
        .len()
        .saturating_sub(counters.started.load(Ordering::Relaxed) + rejected);
    summary.interrupted = stop.load(Ordering::Relaxed);
    summary.fatal = fatal.into_inner().expect("fatal");
    if let Some(e) = journal_error.into_inner().expect("journal error") {
        return Err(e);
    }
    produce_result
}

#[allow(clippy::too_many_arguments)]
fn sender(
    rx: &Mutex<mpsc::Receiver<Job>>,
    journal: &dyn Journal,
    target: Target<'_>,
    opts: &Options,
    pace: &Pace,
    counters: &Counters,
    fatal: &Mutex<Option<String>>,
    journal_error: &Mutex<Option<Error>>,
    halt: &AtomicBool,
    stop: &AtomicBool,
    campaign: &Campaign,
    on_event: &(dyn Fn(Event<'_>) + Sync),
) {
    let stopped = || stop.load(Ordering::Relaxed) || halt.load(Ordering::Relaxed);
    let problem = |job: &Job, sev: Severity, m: String| {
        Problem::new(sev, campaign.csv_name(), m)
            .at_line(job.line)
            .at_row(job.row)
    };
    let set_fatal = |m: String| {
        let mut f = fatal.lock().expect("fatal");
        if f.is_none() {
            *f = Some(m);
        }
        halt.store(true, Ordering::Relaxed);
    };
    let jr = |r: Result<()>| {
        if let Err(e) = r {
            let mut je = journal_error.lock().expect("journal error");
            if je.is_none() {
                *je = Some(e);
            }
            halt.store(true, Ordering::Relaxed);
            false
        } else {
            true
        }
    };
    loop {
        if stopped() {
            return;
        }
        let job = match rx.lock().expect("queue").recv() {
            Ok(j) => j,
            Err(_) => return,
        };
        if stopped() {
            return;
        }
        pace.wait(stop);
        if stopped() {
            return;
        }
        let sink = match target {
            Target::DryRun => {
                counters.started.fetch_add(1, Ordering::Relaxed);
                counters.accepted.fetch_add(1, Ordering::Relaxed);
                on_event(Event::Progress);
                continue;
            }
            Target::Smtp(s) => s,
        };
        let mut tries = 0u32;
        let mut begun = false;
        loop {
            let lease = match sink.lease() {
                Ok(l) => l,
                Err(SetupError::Fatal(Fatal(m))) => {
                    set_fatal(m);
                    return;
                }
                Err(SetupError::Transient(m)) => {
                    if tries >= opts.retries {
                        set_fatal(format!("{m} (after {} attempts)", tries + 1));
                        return;
                    }
                    sleep_until(Instant::now() + backoff(opts.retry_delay, tries), stop);
                    tries += 1;
                    if stopped() {
                        return;
                    }
                    continue;
                }
            };
            if !jr(journal.begin(&job.key, &job.message_id)) {
                return;
            }
            if !begun {
                begun = true;
                counters.started.fetch_add(1, Ordering::Relaxed);
            }
            let attempt = lease.transact(&job.from, &job.to, &job.eml);
            match attempt {
                Attempt::Accepted { reply } => {
                    jr(journal.finish(&job.key, State::Accepted, None, &reply));
                    counters.accepted.fetch_add(1, Ordering::Relaxed);
                }
                Attempt::Permanent { code, reply } => {
                    jr(journal.finish(&job.key, State::Failed, Some(code), &reply));
                    counters.failed.fetch_add(1, Ordering::Relaxed);
                    on_event(Event::Problem(&problem(
                        &job,
                        Severity::Error,
                        format!("{}: failed: {reply}", job.to),
                    )));
                }
                Attempt::Ambiguous { reason } => {
                    jr(journal.finish(&job.key, State::Ambiguous, None, &reason));
                    counters.ambiguous.fetch_add(1, Ordering::Relaxed);
                    on_event(Event::Problem(&problem(
                        &job,
                        Severity::Warning,
                        format!("{}: ambiguous: {reason}", job.to),
                    )));
                }
                Attempt::Transient { code, reply } if tries < opts.retries => {
                    jr(journal.finish(&job.key, State::Deferred, code, &reply));
                    sleep_until(Instant::now() + backoff(opts.retry_delay, tries), stop);
                    tries += 1;
                    if stopped() {
                        counters.deferred.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    continue;
                }
                Attempt::Transient { code, reply } => {
                    let reply = format!("{reply} (gave up after {} attempts)", tries + 1);
                    jr(journal.finish(&job.key, State::Failed, code, &reply));
                    counters.failed.fetch_add(1, Ordering::Relaxed);
                    on_event(Event::Problem(&problem(
                        &job,
                        Severity::Error,
                        format!("{}: failed: {reply}", job.to),
                    )));
                }
            }
            on_event(Event::Progress);
            break;
        }
    }
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
