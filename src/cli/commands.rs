//! The commands: each takes a validated configuration, runs the library and
//! prints what a person (or a script, with `--json`) needs. Results go to
//! stdout, diagnostics and progress to stderr. Returns the exit code.

use std::io::Write;

use crate::cli::args::{Cli, Command};
use crate::cli::config::{
    BouncesConfig, CheckConfig, Env, RenderConfig, SendConfig, ServeConfig, Source, StatusConfig,
    Transport,
};
use crate::compose::build::{Builder, Sign};
use crate::compose::campaign::Campaign;
use crate::compose::recipients::Recipients;
use crate::deliver::journal::{self, Journal, Mode, State};
use crate::deliver::run::{self, Clock, Manifest, Outcome};
use crate::deliver::sendmail::SendmailSink;
use crate::deliver::sink::FileSink;
use crate::deliver::sink::{NullSink, Sink};
use crate::deliver::smtp::{SmtpOptions, SmtpSink};
use crate::error::{Error, Result};
use crate::preview::gallery::GalleryData;

/// Runs a parsed command line; the result is the process exit code.
pub fn main(cli: Cli, env: &Env) -> u8 {
    // A file size limit (`ulimit -f`) would kill the process mid-write
    // with SIGXFSZ; with the signal caught the write fails with EFBIG
    // instead, and the sinks treat it like a full disk.
    #[cfg(unix)]
    let _ = signal_hook::flag::register(
        signal_hook::consts::SIGXFSZ,
        std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
    );
    let result = match cli.command {
        Command::Render(args) => RenderConfig::new(&args, env).and_then(|c| render(&c)),
        Command::Check(args) => CheckConfig::new(&args).and_then(|c| check(&c)),
        Command::Serve(args) => ServeConfig::new(&args, env)
            .and_then(|c| crate::preview::serve::serve(&c.source, c.port, c.clock)),
        Command::Send(args) => SendConfig::new(&args, env).and_then(|c| send(&c)),
        Command::Status(args) => status(&StatusConfig::new(&args, env)),
        Command::Journal(crate::cli::args::JournalCommand::Copy { from, to }) => {
            journal_copy(&from, &to, env)
        }
        Command::Bounces(args) => BouncesConfig::new(&args, env).and_then(|c| bounces(&c)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("letterpress: error: {e}");
            e.exit_code()
        }
    }
}

fn progress_bar(config: &RenderConfig) -> indicatif::ProgressBar {
    if !config.progress {
        return indicatif::ProgressBar::hidden();
    }
    let total = std::fs::metadata(&config.source.recipients).map_or(0, |m| m.len());
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} rendering [{bar:30}] {percent}% {msg} (eta {eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}

/// `letterpress render`.
pub fn render(config: &RenderConfig) -> Result<u8> {
    let (campaign, recipients) = config.source.open()?;
    let recipients = leave_out_suppressed(config, &campaign, recipients)?;
    if let Some(dir) = &config.check {
        let report = crate::preview::snapshot::check(
            &crate::preview::snapshot::Options {
                formats: config.formats,
                clock: config.clock,
                quiet: config.quiet,
                update: config.update,
            },
            dir,
            &campaign,
            recipients,
        )?;
        if !config.update {
            return Ok(report.exit_code());
        }
        // --update: render again, this time into the folder.
        let write = RenderConfig {
            check: None,
            update: false,
            out: dir.clone(),
            force: true,
            quiet: true,
            progress: false,
            ..config.clone()
        };
        let code = render(&write)?;
        crate::preview::snapshot::remove(dir, &report.written)?;
        println!("updated  {}", dir.display());
        return Ok(code);
    }
    let sink = FileSink::create(&config.out, config.formats, config.force)?;
    let manifest_path = config.out.join("manifest.json");
    let file = std::fs::File::create(&manifest_path).map_err(|source| Error::Write {
        path: manifest_path.clone(),
        source,
    })?;
    let head = serde_json::json!({
        "letterpress": env!("CARGO_PKG_VERSION"),
        "template": config.source.template.display().to_string(),
        "recipients": recipients.name(),
        "deterministic": matches!(config.clock, Clock::Fixed(_)),
    });
    let mut manifest =
        Manifest::start(std::io::BufWriter::new(file), manifest_path.clone(), &head)?;
    let mut gallery = match config.formats.index {
        true => {
            crate::preview::gallery::write_page(&config.out)?;
            let path = config.out.join(crate::preview::gallery::DATA);
            let file = std::fs::File::create(&path).map_err(|source| Error::Write {
                path: path.clone(),
                source,
            })?;
            // Read back from the .txt files just written: see with_texts.
            Some(
                GalleryData::start(std::io::BufWriter::new(file), path, &head)?
                    .with_texts(config.out.clone()),
            )
        }
        false => None,
    };
    let bar = progress_bar(config);
    let quiet = config.quiet;
    let summary = run::on_threads(run::file_threads(), || {
        run::run(
            &campaign,
            recipients,
            &sink,
            config.clock,
            |outcome| {
                match outcome {
                    Outcome::Rejected(p) => bar.suspend(|| eprintln!("{p}")),
                    Outcome::Done { letter, .. } if !quiet => {
                        for w in &letter.warnings {
                            bar.suspend(|| eprintln!("{w}"));
                        }
                    }
                    Outcome::Done { .. } => {}
                }
                if let Some(g) = gallery.as_mut() {
                    g.add(outcome)?;
                }
                manifest.add(outcome)
            },
            |bytes, so_far| {
                bar.set_position(bytes);
                bar.set_message(format!("{} letters", so_far.rendered));
            },
        )
    })?;
    bar.finish_and_clear();
    if let Some(p) = &summary.stopped {
        // The disk is full: the manifest and the gallery may not fit
        // either. One that cannot be finished is removed rather than left
        // cut short; the error below says what was written.
        if manifest.finish(&summary).is_err() {
            let _ = std::fs::remove_file(&manifest_path);
        }
        if let Some(g) = gallery {
            if g.finish(&summary).is_err() {
                let _ = std::fs::remove_file(config.out.join(crate::preview::gallery::DATA));
            }
        }
        return Err(Error::Stopped {
            row: p.row.unwrap_or(0),
            line: p.line.unwrap_or(0),
            csv: p.file.clone(),
            reason: p.message.clone(),
            written: summary.rendered,
            out: config.out.clone(),
        });
    }
    manifest.finish(&summary)?;
    if let Some(g) = gallery {
        g.finish(&summary)?;
    }
    if !config.quiet {
        let secs = summary.elapsed.as_secs_f64();
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "rendered {} of {} letters to {} in {:.2} s ({:.0}/s); {} rows rejected, {} warnings",
            summary.rendered,
            summary.rows,
            sink.dir().display(),
            secs,
            summary.rendered as f64 / secs.max(1e-9),
            summary.rejected,
            summary.warnings,
        );
        if let Some(line) = languages_line(&summary.languages, &summary.fallbacks) {
            let _ = writeln!(out, "{line}");
        }
    }
    Ok(summary.exit_code())
}

/// The letters per language, and the contacts whose language had no
/// variant: `None` for a campaign in one language that nobody asked
/// otherwise of.
fn languages_line(
    languages: &std::collections::BTreeMap<String, usize>,
    fallbacks: &std::collections::BTreeMap<String, usize>,
) -> Option<String> {
    if languages.len() < 2 && fallbacks.is_empty() {
        return None;
    }
    let each = |m: &std::collections::BTreeMap<String, usize>| {
        m.iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut line = format!("letters by language: {}", each(languages));
    if !fallbacks.is_empty() {
        line.push_str(&format!(
            "; no variant for {}: those contacts got the default letter",
            each(fallbacks)
        ));
    }
    Some(line)
}

/// Without `--include-suppressed`, the rows whose address a `--suppress`
/// list holds are left out of `render` (each named on stderr): the list is
/// read once to find them, and opened again.
fn leave_out_suppressed(
    config: &RenderConfig,
    campaign: &Campaign,
    mut recipients: Recipients,
) -> Result<Recipients> {
    if config.suppress.is_empty() || config.include_suppressed {
        return Ok(recipients);
    }
    if config.source.recipients == "-" {
        return Err(Error::Usage(
            "--suppress reads the contacts twice, so render needs them in a file, not `-` (or \
             pass --include-suppressed)"
                .into(),
        ));
    }
    let mut skip = std::collections::HashSet::new();
    while let Some(row) = recipients.next_row()? {
        let Ok(r) = row else { continue };
        let Ok(to) = campaign.recipient(&r) else {
            continue;
        };
        if let Some(why) = config.suppress.get(&to.address) {
            if !config.quiet {
                eprintln!(
                    "{}: line {}: row {}: {} is suppressed: {why}; not rendered \
                     (--include-suppressed renders it)",
                    recipients.name(),
                    r.line,
                    r.row,
                    to.address
                );
            }
            skip.insert(r.row);
        }
    }
    let (_, again) = config.source.open()?;
    Ok(again.skipping(skip))
}

/// `letterpress check`, and with `--spam` the sample letter's score.
pub fn check(config: &CheckConfig) -> Result<u8> {
    let source = &config.source;
    let mut report = crate::compose::check::check_with(
        &source.template,
        &source.recipients,
        source.delimiter,
        source.limits,
        source.attach,
        &config.suppress,
        &source.lang,
    );
    let spam = if config.spam {
        spam_check(&mut report, source)
    } else {
        Vec::new()
    };
    let mut out = std::io::stdout().lock();
    if config.json {
        #[derive(serde::Serialize)]
        struct Json<'a> {
            #[serde(flatten)]
            report: &'a crate::compose::check::CheckReport,
            /// The highest score of the letters scored.
            #[serde(skip_serializing_if = "Option::is_none")]
            spam: Option<&'a crate::preview::spam::Score>,
            /// Every letter scored: one per template.
            #[serde(skip_serializing_if = "<[_]>::is_empty")]
            spam_letters: &'a [crate::preview::spam::Score],
        }
        let json = Json {
            report: &report,
            spam: spam.iter().max_by(|a, b| a.points.total_cmp(&b.points)),
            spam_letters: &spam,
        };
        let _ = serde_json::to_writer_pretty(&mut out, &json);
        let _ = writeln!(out);
    } else {
        for p in &report.problems {
            let _ = writeln!(out, "{p}");
        }
        for s in &spam {
            let informational: Vec<&str> = s
                .rules
                .iter()
                .filter(|r| r.points == 0.0)
                .map(|r| r.name.as_str())
                .collect();
            let _ = writeln!(
                out,
                "spamassassin: row {}'s letter{} scores {:.1} points ({:.1} or more is spam){}",
                s.row,
                s.lang
                    .as_ref()
                    .map_or_else(String::new, |l| format!(" ({l})")),
                // SpamAssassin writes a sum of informational rules as -0.0.
                s.points + 0.0,
                s.required,
                if informational.is_empty() {
                    String::new()
                } else {
                    format!("; rules of 0 points: {}", informational.join(", "))
                }
            );
        }
        let _ = writeln!(
            out,
            "checked {} rows: {} errors, {} warnings, {} notes{}",
            report.rows,
            report.errors,
            report.warnings,
            report.notes,
            match report.suppressed {
                0 => String::new(),
                n => format!("; {n} suppressed"),
            }
        );
    }
    let code = report.exit_code();
    Ok(
        if code == crate::exit::OK && spam.iter().any(|s| s.is_spam()) {
            crate::exit::SPAM
        } else {
            code
        },
    )
}

/// Scores the check's sample letters with SpamAssassin, one per template
/// (the default and each language variant): each rule that fired with
/// points becomes a warning on that template (on the Subject line for the
/// subject's rules). SpamAssassin missing, or no row to make a letter of,
/// fails the check.
fn spam_check(
    report: &mut crate::compose::check::CheckReport,
    source: &crate::compose::campaign::Source,
) -> Vec<crate::preview::spam::Score> {
    use crate::report::{Problem, Severity};
    let samples = std::mem::take(&mut report.samples);
    if samples.is_empty() {
        if !report.fatal {
            report.fail(Problem::new(
                Severity::Error,
                source.template.display().to_string(),
                "--spam: no row became a letter, so there is none to score; fix the rows first",
            ));
        }
        return Vec::new();
    }
    let several = samples.len() > 1;
    let mut scores = Vec::new();
    for sample in samples {
        let template = sample.template.display().to_string();
        let mut score = match crate::preview::spam::score(&sample.eml, sample.row) {
            Ok(s) => s,
            Err(e) => {
                report.fail(Problem::new(Severity::Error, "spamassassin", e.to_string()));
                return scores;
            }
        };
        if several {
            score.lang = Some(sample.lang.unwrap_or_else(|| "default".into()));
        }
        let subject_line = crate::compose::template::TemplateFile::load(&sample.template)
            .ok()
            .and_then(|t| t.header("Subject").map(|h| h.line as u64));
        for rule in score.rules.iter().filter(|r| r.points != 0.0) {
            let why = rule.hint.unwrap_or(rule.description.as_str());
            let mut p = Problem::new(
                Severity::Warning,
                template.clone(),
                format!(
                    "SpamAssassin {} ({:+.1} points): {why}",
                    rule.name, rule.points
                ),
            );
            if let (Some(line), true) = (subject_line, rule.name.contains("SUBJ")) {
                p = p.at_line(line);
            }
            report.push(p);
        }
        scores.push(score);
    }
    scores
}

/// Opens the list again for each pass of `send`; standard input is read
/// once and kept, since it cannot be read twice.
fn reopener(source: &Source) -> Result<impl Fn() -> Result<Recipients> + '_> {
    let stdin = if source.recipients == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).map_err(|e| Error::Read {
            path: "<stdin>".into(),
            source: e,
        })?;
        Some(std::sync::Arc::new(buf))
    } else {
        None
    };
    Ok(move || {
        let rows = match &stdin {
            Some(bytes) => Recipients::from_reader(
                "<stdin>".into(),
                Box::new(std::io::Cursor::new(bytes.as_ref().clone())),
                source.delimiter,
            ),
            None => Recipients::open(&source.recipients, source.delimiter),
        };
        rows.map(|r| r.limited(source.limits.value))
    })
}

fn send_bar(config: &SendConfig) -> indicatif::ProgressBar {
    if !config.progress {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} sending [{bar:30}] {pos}/{len} {msg} {per_sec} (eta {eta})",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}

/// The campaign of a send, and the From domain of its first row (the
/// default EHLO name). The safety net of render runs first: a few rows
/// merged both ways.
fn compile_for_send(
    source: &Source,
    reopen: &dyn Fn() -> Result<Recipients>,
) -> Result<(Campaign, Option<String>)> {
    let mut first = reopen()?;
    let csv_name = first.name().to_string();
    // The attachment options as before (`compile`'s defaults); the fonts
    // and languages as the command line says.
    let source = Source {
        attach: Default::default(),
        ..source.clone()
    };
    let campaign = source.compile(first.columns(), &csv_name)?;
    let mut from_domain = None;
    let mut n = 0;
    while n < 3 {
        match first.next_row()? {
            Some(Ok(row)) => {
                campaign.verify(&row)?;
                if from_domain.is_none() {
                    from_domain = campaign
                        .render(&row)
                        .ok()
                        .map(|l| l.parts.from.domain().to_string());
                }
                n += 1;
            }
            Some(Err(_)) => {}
            None => break,
        }
    }
    Ok((campaign, from_domain))
}

/// The sink of `config`: opened (for SMTP: the first connection made, so
/// that a wrong password or an unreachable server stops the run before
/// anything is journalled), or the null sink of a dry run.
fn open_sink(config: &SendConfig, from_domain: Option<String>) -> Result<Box<dyn Sink>> {
    if config.dry_run {
        return Ok(Box::new(NullSink));
    }
    Ok(match &config.transport {
        Transport::Smtp {
            server,
            user,
            password,
            ca,
            helo,
            timeout,
        } => Box::new(SmtpSink::open(SmtpOptions {
            server: server.clone(),
            user: user.clone(),
            password: password.clone(),
            ca: ca.clone(),
            helo: helo
                .clone()
                .or(from_domain)
                .unwrap_or_else(|| "localhost".into()),
            timeout: *timeout,
        })?),
        Transport::Sendmail { path, timeout } => Box::new(SendmailSink::new(path, *timeout)?),
    })
}

/// The journal of a send, owned by this process until it ends (a dry run
/// only reads it). With `--wait`, a journal another send owns is waited
/// for, saying so once.
fn open_journal(config: &SendConfig) -> Result<Box<dyn Journal>> {
    if config.dry_run {
        return journal::open(&config.journal, Mode::DryRun);
    }
    let mode = |wait| Mode::Send {
        wait,
        full_sync: config.journal_sync,
    };
    match journal::open(&config.journal, mode(false)) {
        Err(e @ Error::JournalBusy { .. }) if config.journal_wait => {
            eprintln!("letterpress: {e}; waiting for it (--wait)");
            journal::open(&config.journal, mode(true))
        }
        other => other,
    }
}

/// `letterpress send`.
pub fn send(config: &SendConfig) -> Result<u8> {
    use crate::deliver::send::{Event, Sending};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    let reopen = reopener(&config.source)?;
    let (campaign, from_domain) = compile_for_send(&config.source, &reopen)?;
    let sink = open_sink(config, from_domain)?;
    let journal = open_journal(config)?;

    // Ctrl-C (or SIGTERM): stop taking recipients, finish those in flight.
    // A second one exits at once (in-flight ones are then ambiguous).
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register_conditional_shutdown(
            sig,
            crate::exit::INTERRUPTED as i32,
            Arc::clone(&stop),
        );
        let _ = signal_hook::flag::register(sig, Arc::clone(&stop));
    }

    let bar = send_bar(config);
    let quiet = config.quiet;
    let errors = AtomicUsize::new(0);
    let on_event = |e: Event<'_>| match e {
        Event::Progress => bar.inc(1),
        Event::Problem(p) => {
            if p.severity == crate::report::Severity::Error {
                let n = errors.fetch_add(1, Ordering::Relaxed) + 1;
                bar.set_message(format!("({n} failed)"));
            } else if quiet {
                return;
            }
            bar.suspend(|| eprintln!("{p}"));
        }
    };
    let clock = config.options.clock;
    let signer = config.signer.as_ref().map(|s| s as &dyn Sign);
    let sending = Sending {
        builder: Builder::new(&campaign, clock, clock.now()).signed_by(signer),
        sink: sink.as_ref(),
        journal: journal.as_ref(),
        options: &config.options,
        stop: &stop,
        on_event: &on_event,
    };
    let result = sending.run(&reopen, &mut |plan| bar.set_length(plan.planned as u64));
    bar.finish_and_clear();
    let summary = result?;
    if let Some(path) = &config.failed_csv {
        write_failed_csv(journal.as_ref(), path)?;
    }
    print_send_summary(config, &summary);
    Ok(summary.exit_code())
}

/// The end of a send: the summary line (or JSON) on stdout, and why it
/// stopped early on stderr.
fn print_send_summary(config: &SendConfig, summary: &crate::deliver::send::Summary) {
    let mut out = std::io::stdout().lock();
    if config.json {
        let _ = serde_json::to_writer_pretty(&mut out, &summary);
        let _ = writeln!(out);
    } else if !config.quiet || summary.exit_code() != 0 {
        let verb = if summary.dry_run {
            "would send"
        } else {
            "sent"
        };
        let rate = summary.accepted as f64 / summary.seconds.max(1e-9);
        let _ = writeln!(
            out,
            "{verb} {} of {} letters in {:.2} s ({rate:.0}/s): {} failed, {} ambiguous, {} \
             deferred, {} not attempted; skipped {} already accepted, {} ambiguous, {} failed \
             earlier, {} duplicates, {} suppressed, {} rejected rows{}; journal {}",
            summary.accepted,
            summary.planned,
            summary.seconds,
            summary.failed,
            summary.ambiguous,
            summary.deferred,
            summary.not_attempted,
            summary.already_accepted,
            summary.skipped_ambiguous,
            summary.skipped_failed,
            summary.duplicates,
            summary.suppressed,
            summary.rejected,
            if summary.held_back > 0 {
                format!(", {} held back by --limit", summary.held_back)
            } else {
                String::new()
            },
            summary.journal,
        );
    }
    if summary.interrupted {
        eprintln!("letterpress: interrupted; run the same command again to resume");
    }
    if let Some(f) = &summary.fatal {
        eprintln!("letterpress: error: {f}; the journal is written: fix this and run the same command again to resume");
    }
}

/// Writes the failed rows of `journal`: the list's columns, then
/// `smtp_code` and `smtp_reply`.
fn write_failed_csv(journal: &dyn Journal, path: &std::path::Path) -> Result<()> {
    let err = |e: csv::Error| Error::Write {
        path: path.into(),
        source: std::io::Error::other(e.to_string()),
    };
    let columns: Vec<String> = journal
        .meta("columns")?
        .and_then(|c| serde_json::from_str(&c).ok())
        .unwrap_or_default();
    let mut rows = journal.rows_in(&[State::Failed])?;
    rows.extend(bounced_rows(journal)?);
    rows.sort_by_key(|r| r.row);
    let mut w = csv::Writer::from_path(path).map_err(err)?;
    let mut head = columns.clone();
    head.extend(["smtp_code".to_string(), "smtp_reply".to_string()]);
    w.write_record(&head).map_err(err)?;
    for r in rows {
        let mut rec = r.fields.clone();
        rec.resize(columns.len(), String::new());
        rec.push(r.code.map(|c| c.to_string()).unwrap_or_default());
        rec.push(r.reply.clone());
        w.write_record(&rec).map_err(err)?;
    }
    w.flush().map_err(|source| Error::Write {
        path: path.into(),
        source,
    })
}

/// `letterpress journal copy FROM TO`.
fn journal_copy(from: &str, to: &str, env: &Env) -> Result<u8> {
    let loc = |s: &str| {
        crate::cli::config::location(std::path::Path::new(s), env, crate::cli::config::LEASE)
    };
    let n = journal::copy(&loc(from), &loc(to))?;
    println!("copied {n} recipients from {from} to {to}");
    Ok(crate::exit::OK)
}

/// The rows of the contacts that bounced or complained (after `letterpress
/// bounces`), with the status code and diagnostic as the reply (a journal
/// that keeps no bounces has none).
fn bounced_rows(journal: &dyn Journal) -> Result<Vec<crate::deliver::journal::FailedRow>> {
    let feedback = crate::deliver::journal::feedback_if_kept(journal)?;
    if feedback.is_empty() {
        return Ok(Vec::new());
    }
    let known = journal.known()?;
    let mut by_row: std::collections::HashMap<usize, crate::deliver::journal::FailedRow> = journal
        .rows_in(&State::ALL)?
        .into_iter()
        .map(|r| (r.row, r))
        .collect();
    let mut out = Vec::new();
    for f in feedback {
        let Some(k) = known.get(&f.address) else {
            continue;
        };
        if let Some(mut r) = by_row.remove(&k.row) {
            r.code = None;
            r.reply = format!("{} {}: {}", f.kind.as_str(), f.status, f.diagnostic);
            out.push(r);
        }
    }
    Ok(out)
}

/// `letterpress status`.
pub fn status(config: &StatusConfig) -> Result<u8> {
    let journal = journal::open(&config.journal, Mode::Read)?;
    let counts = journal.counts()?;
    let workers = journal.workers()?;
    let total: usize = counts.iter().map(|(_, n)| n).sum();
    if let Some(path) = &config.failed_csv {
        write_failed_csv(journal.as_ref(), path)?;
    }
    let mut out = std::io::stdout().lock();
    if config.json {
        let mut m = serde_json::Map::new();
        for (s, n) in &counts {
            m.insert(s.as_str().into(), (*n).into());
        }
        m.insert("total".into(), total.into());
        let feedback = crate::deliver::journal::feedback_if_kept(journal.as_ref())?;
        for kind in ["hard", "soft", "complaint"] {
            let n = feedback.iter().filter(|f| f.kind.as_str() == kind).count();
            m.insert(format!("bounces_{kind}"), n.into());
        }
        m.insert(
            "feedback".into(),
            serde_json::to_value(&feedback).expect("JSON"),
        );
        for k in ["template", "recipients", "redirect_to"] {
            if let Some(v) = journal.meta(k)? {
                m.insert(k.into(), v.into());
            }
        }
        if !workers.is_empty() {
            m.insert(
                "workers".into(),
                serde_json::to_value(&workers).expect("JSON"),
            );
        }
        let _ = serde_json::to_writer_pretty(&mut out, &m);
        let _ = writeln!(out);
    } else {
        if let (Some(t), Some(r)) = (journal.meta("template")?, journal.meta("recipients")?) {
            let _ = writeln!(out, "{t} to {r}");
        }
        if let Some(r) = journal.meta("redirect_to")?.filter(|r| !r.is_empty()) {
            let _ = writeln!(out, "rehearsal: every message went to {r}");
        }
        for (s, n) in &counts {
            let _ = writeln!(out, "{:<10} {n}", s.as_str());
        }
        let _ = writeln!(out, "{:<10} {total}", "total");
        let ambiguous = journal.rows_in(&[State::Ambiguous])?;
        for a in ambiguous.iter().take(20) {
            let _ = writeln!(out, "ambiguous: row {}: {}", a.row, a.reply);
        }
        for w in &workers {
            let _ = writeln!(
                out,
                "worker {} (pid {} on {}, since {}): {}, holds {}, {} in flight, {} sent, {:.0}/s",
                w.id,
                w.pid,
                w.host,
                w.started,
                if w.alive { "running" } else { "gone" },
                w.holds,
                w.inflight,
                w.sent,
                w.sent as f64 / w.seconds.max(1e-3)
            );
        }
        let feedback = crate::deliver::journal::feedback_if_kept(journal.as_ref())?;
        if !feedback.is_empty() {
            let n = |k: &str| feedback.iter().filter(|f| f.kind.as_str() == k).count();
            let _ = writeln!(
                out,
                "after sending: {} hard bounces, {} soft bounces, {} complaints",
                n("hard"),
                n("soft"),
                n("complaint")
            );
            for f in feedback.iter().take(50) {
                let _ = writeln!(
                    out,
                    "{}: {} {} {}",
                    f.kind.as_str(),
                    f.address,
                    f.status,
                    f.diagnostic
                );
            }
        }
    }
    Ok(crate::exit::OK)
}

/// `letterpress bounces`.
pub fn bounces(config: &BouncesConfig) -> Result<u8> {
    use crate::deliver::bounces::{classify, read_mailbox, Class, Matcher};
    use crate::deliver::journal::{Feedback, Kind};

    let messages = read_mailbox(&config.mailbox)?;
    let missing = |path: std::path::PathBuf, what: &str| Error::Journal {
        path,
        message: format!(
            "{what}; give the journal of the send the mail came back from (`send` writes \
             it next to the list, or where --journal said)"
        ),
    };
    if let crate::deliver::journal::Location::Sqlite(p) = &config.journal {
        if !p.exists() {
            return Err(missing(p.clone(), "does not exist"));
        }
    }
    let journal = crate::deliver::journal::open_to_record(
        &config.journal,
        Mode::Send {
            wait: config.wait,
            full_sync: false,
        },
    )?;
    // A database no campaign was sent with (its tables were just made).
    let Some(template) = journal.meta("template")? else {
        return Err(missing(
            config.journal.describe().into(),
            "holds no campaign",
        ));
    };
    let journal = &*journal;
    let matcher = Matcher::new(journal)?;
    let campaign = std::path::Path::new(&template)
        .file_name()
        .map_or(template.clone(), |n| n.to_string_lossy().into_owned());
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    #[derive(serde::Serialize)]
    struct Row {
        class: &'static str,
        address: Option<String>,
        matched_by: Option<&'static str>,
        status: String,
        diagnostic: String,
        new: bool,
        message: String,
        subject: String,
        from: String,
    }
    let mut rows = Vec::new();
    let mut suppress_lines = Vec::new();
    for raw in &messages {
        for f in classify(raw) {
            let mut row = Row {
                class: f.class.name(),
                address: None,
                matched_by: None,
                status: f.status.clone(),
                diagnostic: f.diagnostic.clone(),
                new: false,
                message: f.key.clone(),
                subject: f.subject.clone(),
                from: f.from.clone(),
            };
            if let Class::Feedback(kind) = f.class {
                let (address, how) = match matcher.address(&f) {
                    Some((a, how)) => (a, how),
                    None => (
                        f.recipient.clone().unwrap_or_default(),
                        "recipient (not in this journal)",
                    ),
                };
                row.new = journal.record_feedback(&Feedback {
                    key: format!("{} {address}", f.key),
                    address: address.clone(),
                    kind,
                    status: f.status.clone(),
                    diagnostic: f.diagnostic.clone(),
                    at,
                })?;
                let reason = match kind {
                    Kind::Hard => "bounced",
                    Kind::Complaint => "complained",
                    Kind::Soft => crate::compose::suppress::SOFT_BOUNCE,
                };
                suppress_lines.push((
                    address.clone(),
                    reason,
                    f.status.clone(),
                    f.diagnostic.clone(),
                ));
                row.address = Some(address);
                row.matched_by = Some(how);
            } else {
                row.address = f.recipient.clone();
            }
            rows.push(row);
        }
    }
    journal.flush()?;
    let mut appended = 0;
    let mut soft_suppressed = Vec::new();
    if let Some(path) = &config.suppress_out {
        let details: Vec<String> = suppress_lines
            .iter()
            .map(|(_, _, st, d)| format!("{st} {d}").trim().to_string())
            .collect();
        let lines: Vec<crate::compose::suppress::Line<'_>> = suppress_lines
            .iter()
            .zip(&details)
            .map(|((a, r, _, _), d)| crate::compose::suppress::Line {
                email: a,
                reason: r,
                campaign: &campaign,
                detail: d,
            })
            .collect();
        appended = crate::compose::suppress::append(path, &lines)?;
        let s = crate::compose::suppress::Suppressions::load(
            std::slice::from_ref(path),
            config.soft_bounce_limit,
        )?;
        for (a, r, _, _) in &suppress_lines {
            if *r == crate::compose::suppress::SOFT_BOUNCE {
                if let Some(e) = s.get(a).filter(|e| e.reason.starts_with("soft-bounced in")) {
                    soft_suppressed.push(format!("{a}: {}", e.reason));
                }
            }
        }
        soft_suppressed.sort();
        soft_suppressed.dedup();
    }
    let mut out = std::io::stdout().lock();
    if config.json {
        let json = serde_json::json!({
            "messages": messages.len(),
            "findings": rows,
            "suppress_out_appended": appended,
            "soft_bounce_suppressed": soft_suppressed,
        });
        let _ = serde_json::to_writer_pretty(&mut out, &json);
        let _ = writeln!(out);
        return Ok(crate::exit::OK);
    }
    let _ = writeln!(
        out,
        "{} messages in {}",
        messages.len(),
        config.mailbox.display()
    );
    for class in [
        Class::Feedback(Kind::Hard),
        Class::Feedback(Kind::Soft),
        Class::Feedback(Kind::Complaint),
        Class::AutoReply,
        Class::Delivered,
        Class::Unclassified,
    ] {
        let these: Vec<&Row> = rows.iter().filter(|r| r.class == class.name()).collect();
        let new = these.iter().filter(|r| r.new).count();
        match class {
            Class::Feedback(_) => {
                let _ = writeln!(
                    out,
                    "{}: {} ({new} new, {} recorded before)",
                    class.name(),
                    these.len(),
                    these.len() - new
                );
            }
            _ => {
                let _ = writeln!(out, "{}: {}", class.name(), these.len());
            }
        }
        for r in these {
            match class {
                Class::Feedback(_) => {
                    let _ = writeln!(
                        out,
                        "  {} {} {} (matched by {})",
                        r.address.as_deref().unwrap_or("?"),
                        r.status,
                        r.diagnostic,
                        r.matched_by.unwrap_or("?")
                    );
                }
                _ => {
                    let _ = writeln!(
                        out,
                        "  message {} from {} \"{}\": {}",
                        r.message, r.from, r.subject, r.diagnostic
                    );
                }
            }
        }
    }
    if let Some(p) = &config.suppress_out {
        let _ = writeln!(out, "appended {appended} lines to {}", p.display());
    }
    for s in &soft_suppressed {
        let _ = writeln!(out, "suppressed by the soft-bounce rule: {s}");
    }
    Ok(crate::exit::OK)
}
