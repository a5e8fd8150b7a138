//! Running a campaign through a sink: rows stream from the CSV in chunks,
//! each chunk is merged, built and delivered on all cores, and the results
//! come back in row order for the report. Memory stays flat in the length of
//! the list. The clock is read here, at the edge, never in `campaign` or
//! `message`.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rayon::prelude::*;
use serde::Serialize;

use crate::compose::build::{Builder, Built};
use crate::compose::campaign::{Campaign, Letter};
use crate::compose::message::Stamp;
use crate::compose::recipients::{Duplicates, Recipient, Recipients};
pub use crate::compose::stamp::Clock;
use crate::deliver::sink::{Delivered, Envelope, Failure, Sink};
use crate::error::{Error, Result};
use crate::report::{Problem, Severity};

/// What happened to one row, in the order of the file.
#[derive(Debug)]
pub enum Outcome {
    Done {
        /// The letter's headers and warnings; its bodies went to the sink.
        letter: Box<Letter>,
        delivered: Delivered,
        eml_size: usize,
        /// The Date and Message-ID the message was built with (the gallery
        /// shows them).
        stamp: Stamp,
    },
    Rejected(Problem),
}

/// Counts for the end-of-run summary.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Summary {
    pub rows: usize,
    pub rendered: usize,
    pub rejected: usize,
    pub warnings: usize,
    /// Why the run stopped before the end of the list (a full disk): the
    /// first row not done, with the sink's reason. The letters counted in
    /// `rendered` are whole; no later row was tried.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<Problem>,
    #[serde(skip)]
    pub elapsed: Duration,
    /// Letters per language (`en`, `he`), when the campaign has variants
    /// or contacts asked for a language.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub languages: BTreeMap<String, usize>,
    /// Contacts whose language had no variant, by that language: they got
    /// the default letter.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub fallbacks: BTreeMap<String, usize>,
}

/// One row's step through the sink, before it is reported.
#[derive(Debug)]
enum Step {
    Out(Outcome),
    /// The sink failed for good ([`Failure::Fatal`]): the run stops here.
    Stopped(Problem),
    /// Not tried: an earlier fatal failure stopped the run.
    Skipped {
        row: usize,
        line: u64,
    },
}

impl Summary {
    pub fn exit_code(&self) -> u8 {
        if self.stopped.is_some() {
            crate::exit::FATAL
        } else if self.rejected > 0 {
            crate::exit::ROWS_REJECTED
        } else {
            crate::exit::OK
        }
    }
}

/// Threads per core for a run into files. A write waits for the disk
/// (the kernel throttles a writer once too much is dirty), so with one
/// thread a core that core idles while its thread waits; with two, one
/// merges while the other waits, and rendering to disk approaches what
/// bare writes of the same files take (`cargo bench --bench render`).
pub const FILE_THREADS_PER_CORE: usize = 2;

/// Runs `f` on a pool of `threads` threads (the run's parallel parts use
/// whichever pool they are called in); on the global pool if none can be
/// made.
pub fn on_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    match rayon::ThreadPoolBuilder::new().num_threads(threads).build() {
        Ok(pool) => pool.install(f),
        Err(_) => f(),
    }
}

/// The threads for a run into files on this machine.
pub fn file_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cores * FILE_THREADS_PER_CORE
}

/// Rows merged and delivered in parallel between two reports. Every chunk
/// ends when its slowest row is done, so a write stalled by the disk idles
/// the other threads: with 512 a chunk, rendering to the disk ran at about
/// 0.3-0.7x bare writes of the same files, with 4096 at 0.87-0.90x (the
/// medians of `cargo bench --bench render`), for about 13 MB more memory.
const CHUNK: usize = 4096;
/// How many rows are rendered both ways before the run starts (DESIGN.md 3).
const VERIFY_ROWS: usize = 3;

/// Streams every row of `recipients` through `campaign` into `sink`, calling
/// `report` with each outcome in row order. `progress` is told how many bytes
/// of the input have been read, and the counts so far.
pub fn run(
    campaign: &Campaign,
    mut recipients: Recipients,
    sink: &dyn Sink,
    clock: Clock,
    mut report: impl FnMut(&Outcome) -> Result<()> + Send,
    mut progress: impl FnMut(u64, &Summary) + Send,
) -> Result<Summary> {
    let started = Instant::now();
    let builder = Builder::new(campaign, clock, clock.now());
    let mut summary = Summary::default();
    let mut verified = 0;
    let mut current = read_chunk(&mut recipients)?;
    let mut done: Vec<Step> = Vec::new();
    let stop = AtomicBool::new(false);
    let mut duplicates = Duplicates::default();
    while !current.is_empty() && !stop.load(Ordering::Relaxed) {
        for r in current.iter().flatten() {
            if verified >= VERIFY_ROWS {
                break;
            }
            campaign.verify(r)?;
            verified += 1;
        }
        // While all cores merge this chunk, one of them also reports the
        // previous chunk and reads the next: the serial parts of the run
        // overlap the parallel one.
        let rows = by_variant(campaign, std::mem::take(&mut current));
        let (outcomes, serial) = rayon::join(
            || {
                let steps = rows
                    .into_par_iter()
                    .map(|(i, row)| (i, process(&builder, row, sink, &stop)))
                    .collect::<Vec<(usize, Step)>>();
                in_file_order(steps)
            },
            || -> Result<Vec<std::result::Result<Recipient, Problem>>> {
                tally(
                    &mut summary,
                    &mut duplicates,
                    campaign.csv_name(),
                    &mut done,
                    &mut report,
                )?;
                progress(recipients.bytes_read(), &summary);
                read_chunk(&mut recipients)
            },
        );
        current = serial?;
        done = outcomes;
    }
    tally(
        &mut summary,
        &mut duplicates,
        campaign.csv_name(),
        &mut done,
        &mut report,
    )?;
    progress(recipients.bytes_read(), &summary);
    if summary.rows == 0 && summary.stopped.is_none() {
        return Err(Error::Recipients {
            path: recipients.name().to_string(),
            message: "has a header line but no contacts; add one line per contact".into(),
        });
    }
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// A chunk's rows numbered in file order, those of one language variant
/// together: a thread then merges one template after another rather than
/// all of them in turn, which costs a tenth of the speed in cache misses
/// (`cargo bench --bench render`, BENCH_VARIANTS_ONLY). In one-variant
/// campaigns the order is the file's.
fn by_variant(
    campaign: &Campaign,
    rows: Vec<std::result::Result<Recipient, Problem>>,
) -> Vec<(usize, std::result::Result<Recipient, Problem>)> {
    let mut keyed: Vec<(usize, usize, std::result::Result<Recipient, Problem>)> = rows
        .into_iter()
        .enumerate()
        .map(|(i, row)| {
            let key = row.as_ref().map_or(0, |r| campaign.variant_index(r));
            (key, i, row)
        })
        .collect();
    if campaign.variants().len() > 1 {
        keyed.sort_by_key(|(key, i, _)| (*key, *i));
    }
    keyed.into_iter().map(|(_, i, row)| (i, row)).collect()
}

/// `steps`, numbered by [`by_variant`], back in file order.
fn in_file_order(steps: Vec<(usize, Step)>) -> Vec<Step> {
    let mut slots: Vec<Option<Step>> = Vec::with_capacity(steps.len());
    slots.resize_with(steps.len(), || None);
    for (i, step) in steps {
        slots[i] = Some(step);
    }
    slots.into_iter().flatten().collect()
}

/// Up to [`CHUNK`] rows; fewer only at the end of the list.
fn read_chunk(recipients: &mut Recipients) -> Result<Vec<std::result::Result<Recipient, Problem>>> {
    let mut chunk = Vec::with_capacity(CHUNK);
    while chunk.len() < CHUNK {
        match recipients.next_row()? {
            Some(row) => chunk.push(row),
            None => break,
        }
    }
    Ok(chunk)
}

/// Counts and reports `outcomes`, in order. A repeated address is a
/// warning of its letter here, where rows come in order, so the summary,
/// `manifest.json` and the gallery all count and list the same ones.
fn tally(
    summary: &mut Summary,
    duplicates: &mut Duplicates,
    csv: &str,
    steps: &mut [Step],
    report: &mut impl FnMut(&Outcome) -> Result<()>,
) -> Result<()> {
    for step in steps.iter_mut() {
        let o = match step {
            Step::Out(o) => o,
            Step::Stopped(p) => {
                match &mut summary.stopped {
                    // Rows before this one were not tried because of it
                    // (they were waiting on other threads): the run stopped
                    // at the first of them, for this reason.
                    Some(first) if first.row < p.row => {
                        first.message = because_of(p);
                    }
                    _ => summary.stopped = Some(p.clone()),
                }
                continue;
            }
            Step::Skipped { row, line } => {
                // Rows come in order: the first one not done is where the
                // run stopped.
                if summary.stopped.as_ref().is_none_or(|s| s.row > Some(*row)) {
                    let message = summary
                        .stopped
                        .as_ref()
                        .map_or_else(|| "not tried: the run had stopped".into(), because_of);
                    summary.stopped = Some(
                        Problem::new(Severity::Error, csv, message)
                            .at_line(*line)
                            .at_row(*row),
                    );
                }
                continue;
            }
        };
        summary.rows += 1;
        match o {
            Outcome::Done { letter, .. } => {
                if let Some(w) = duplicates.note(&letter.parts.to.address, letter.row, letter.line)
                {
                    letter.warnings.push(
                        Problem::new(Severity::Warning, csv, w)
                            .at_line(letter.line)
                            .at_row(letter.row),
                    );
                }
                summary.rendered += 1;
                summary.warnings += letter.warnings.len();
                if let Some(lang) = &letter.lang {
                    *summary.languages.entry(lang.to_string()).or_default() += 1;
                }
                if let Some(asked) = &letter.fallback {
                    *summary.fallbacks.entry(asked.clone()).or_default() += 1;
                }
            }
            Outcome::Rejected(_) => summary.rejected += 1,
        }
        report(o)?;
    }
    Ok(())
}

/// Why a row was not tried: the fatal failure of a later one.
fn because_of(fatal: &Problem) -> String {
    format!(
        "not tried: the run stopped when row {} (line {}) failed: {}",
        fatal.row.unwrap_or(0),
        fatal.line.unwrap_or(0),
        fatal.message
    )
}

fn process(
    builder: &Builder<'_>,
    row: std::result::Result<Recipient, Problem>,
    sink: &dyn Sink,
    stop: &AtomicBool,
) -> Step {
    if stop.load(Ordering::Relaxed) {
        let (row, line) = match &row {
            Ok(r) => (r.row, r.line),
            Err(p) => (p.row.unwrap_or(0), p.line.unwrap_or(0)),
        };
        return Step::Skipped { row, line };
    }
    let built = match row.and_then(|r| builder.build(&r)) {
        Ok(b) => b,
        Err(p) => return Step::Out(Outcome::Rejected(p)),
    };
    match sink.deliver(&Envelope::of(&built), &built) {
        Ok(receipt) => {
            // The bodies are the sink's business and are freed here, on the
            // thread that made them: freed on the reporting thread instead,
            // they fragment the heap and memory creeps up with the list.
            let Built {
                mut letter,
                stamp,
                eml,
            } = built;
            letter.parts.html = String::new();
            letter.parts.text = String::new();
            Step::Out(Outcome::Done {
                eml_size: eml.len(),
                stamp,
                letter: Box::new(letter),
                delivered: receipt.delivered,
            })
        }
        Err(failure) => {
            let problem = Problem::new(
                Severity::Error,
                builder.campaign.csv_name(),
                failure.message(),
            )
            .at_line(built.letter.line)
            .at_row(built.letter.row);
            if let Failure::Fatal(_) = failure {
                stop.store(true, Ordering::Relaxed);
                return Step::Stopped(problem);
            }
            Step::Out(Outcome::Rejected(problem))
        }
    }
}

/// One entry of `manifest.json`.
#[derive(Debug, Serialize)]
pub struct ManifestEntry<'a> {
    pub row: usize,
    pub line: u64,
    pub to: &'a str,
    pub name: &'a str,
    pub subject: &'a str,
    /// The language of the letter's variant, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lang: Option<&'a str>,
    pub files: &'a std::collections::BTreeMap<String, String>,
    pub sizes: &'a std::collections::BTreeMap<String, u64>,
    pub warnings: Vec<String>,
}

/// Writes `manifest.json` as the run goes, so its size in memory does not
/// grow with the list: the letters stream out, the rejected rows (few, one
/// hopes) are kept for the end.
pub struct Manifest<W: Write> {
    out: W,
    path: std::path::PathBuf,
    first: bool,
    rejected: Vec<Problem>,
}

impl<W: Write> Manifest<W> {
    pub fn start(mut out: W, path: std::path::PathBuf, head: &serde_json::Value) -> Result<Self> {
        let mut head = serde_json::to_string_pretty(head).expect("plain JSON");
        head.pop(); // the closing brace: letters follow
        head.truncate(head.trim_end().len());
        let r = write!(out, "{head},\n  \"letters\": [");
        let m = Manifest {
            out,
            path,
            first: true,
            rejected: Vec::new(),
        };
        r.map_err(|e| m.err(e))?;
        Ok(m)
    }

    fn err(&self, source: std::io::Error) -> Error {
        Error::Write {
            path: self.path.clone(),
            source,
        }
    }

    pub fn add(&mut self, outcome: &Outcome) -> Result<()> {
        match outcome {
            Outcome::Rejected(p) => {
                self.rejected.push(p.clone());
                Ok(())
            }
            Outcome::Done {
                letter, delivered, ..
            } => {
                let entry = ManifestEntry {
                    row: letter.row,
                    line: letter.line,
                    to: &letter.parts.to.address,
                    name: letter.parts.to.name.as_deref().unwrap_or(""),
                    subject: &letter.parts.subject,
                    lang: letter.lang.as_ref().map(|t| t.as_str()),
                    files: &delivered.files,
                    sizes: &delivered.sizes,
                    warnings: letter.warnings.iter().map(|w| w.message.clone()).collect(),
                };
                let sep = if self.first { "\n    " } else { ",\n    " };
                self.first = false;
                let json = serde_json::to_string(&entry).expect("plain JSON");
                write!(self.out, "{sep}{json}").map_err(|e| self.err(e))
            }
        }
    }

    pub fn finish(mut self, summary: &Summary) -> Result<()> {
        let rejected = serde_json::to_string(&self.rejected).expect("plain JSON");
        let summary = serde_json::to_string(summary).expect("plain JSON");
        let r = write!(
            self.out,
            "\n  ],\n  \"rejected\": {rejected},\n  \"summary\": {summary}\n}}\n"
        )
        .and_then(|()| self.out.flush());
        r.map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Severity;

    #[test]
    fn the_manifest_is_valid_json_with_letters_in_order_and_rejected_rows() {
        let mut buf = Vec::new();
        let head = serde_json::json!({"template": "t.mjml"});
        let mut m = Manifest::start(&mut buf, "m.json".into(), &head).unwrap();
        m.add(&Outcome::Rejected(
            Problem::new(Severity::Error, "r.csv", "bad")
                .at_line(3)
                .at_row(2),
        ))
        .unwrap();
        m.finish(&Summary {
            rows: 1,
            rejected: 1,
            ..Summary::default()
        })
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["template"], "t.mjml");
        assert_eq!(v["letters"].as_array().unwrap().len(), 0);
        assert_eq!(v["rejected"][0]["line"], 3);
        assert_eq!(v["summary"]["rejected"], 1);
    }

    #[test]
    fn exit_code_follows_rejections() {
        assert_eq!(Summary::default().exit_code(), crate::exit::OK);
        let s = Summary {
            rejected: 1,
            ..Summary::default()
        };
        assert_eq!(s.exit_code(), crate::exit::ROWS_REJECTED);
    }
}
