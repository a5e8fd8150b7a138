//! The commands: each takes a validated configuration, runs the library and
//! prints what a person (or a script, with `--json`) needs. Results go to
//! stdout, diagnostics and progress to stderr. Returns the exit code.

use std::io::Write;

use crate::campaign::Campaign;
use crate::cli::{CheckArgs, Cli, Command};
use crate::config::{Env, RenderConfig, ServeConfig, Source};
use crate::error::{Error, Result};
use crate::gallery::GalleryData;
use crate::recipients::Recipients;
use crate::run::{self, Clock, Manifest, Outcome};
use crate::sink::FileSink;
use crate::template::TemplateFile;

/// Runs a parsed command line; the result is the process exit code.
pub fn main(cli: Cli, env: &Env) -> u8 {
    let result = match cli.command {
        Command::Render(args) => RenderConfig::new(&args, env).and_then(|c| render(&c)),
        Command::Check(args) => check(&args),
        Command::Serve(args) => ServeConfig::new(&args, env).and_then(|c| crate::serve::serve(&c)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("letterpress: error: {e}");
            e.exit_code()
        }
    }
}

/// Loads the template and the recipients and compiles the campaign: the
/// common start of every command that renders.
pub fn open(source: &Source) -> Result<(Campaign, Recipients)> {
    let template = TemplateFile::load(&source.template)?;
    let recipients = Recipients::open(&source.recipients, source.delimiter)?;
    let name = recipients.name().to_string();
    let campaign = Campaign::compile(template, recipients.columns(), &name)?;
    Ok((campaign, recipients))
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
    let (campaign, recipients) = open(&config.source)?;
    if let Some(dir) = &config.check {
        let report = crate::snapshot::check(config, dir, &campaign, recipients)?;
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
        crate::snapshot::remove(dir, &report.removed)?;
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
            crate::gallery::write_page(&config.out)?;
            let path = config.out.join(crate::gallery::DATA);
            let file = std::fs::File::create(&path).map_err(|source| Error::Write {
                path: path.clone(),
                source,
            })?;
            Some(GalleryData::start(
                std::io::BufWriter::new(file),
                path,
                &head,
            )?)
        }
        false => None,
    };
    let bar = progress_bar(config);
    let quiet = config.quiet;
    let summary = run::run(
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
    )?;
    bar.finish_and_clear();
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
    }
    Ok(summary.exit_code())
}

/// `letterpress check`.
pub fn check(args: &CheckArgs) -> Result<u8> {
    let source = Source::from_args(&args.input)?;
    let report = crate::check::check(&source.template, &source.recipients, source.delimiter);
    let mut out = std::io::stdout().lock();
    if args.json {
        let _ = serde_json::to_writer_pretty(&mut out, &report);
        let _ = writeln!(out);
    } else {
        for p in &report.problems {
            let _ = writeln!(out, "{p}");
        }
        let _ = writeln!(
            out,
            "checked {} rows: {} errors, {} warnings, {} notes",
            report.rows, report.errors, report.warnings, report.notes
        );
    }
    Ok(report.exit_code())
}
