//! `letterpress check`: everything `render` would refuse or regret, found
//! without writing a file. Template problems, columns, and every row merged
//! in memory.

use std::path::Path;

use serde::Serialize;

use crate::compose::build::{Builder, Built};
use crate::compose::campaign::{missing_variables, Campaign, LangColumn};
use crate::compose::lint;

mod languages;
use crate::compose::recipients::{Duplicates, Limits, Recipients};
use crate::compose::stamp::Clock;
use crate::compose::suppress::Suppressions;
use crate::compose::template::{TemplateFile, Templates};
use crate::error::Error;
use crate::report::{Problem, Severity};

/// A letter `check --spam` scores.
#[derive(Debug)]
pub struct Sample {
    /// The template it was merged from.
    pub template: std::path::PathBuf,
    /// That template's language, if known.
    pub lang: Option<String>,
    /// Its data row.
    pub row: usize,
    pub eml: Vec<u8>,
}

/// All findings of one check.
#[derive(Debug, Default, Serialize)]
pub struct CheckReport {
    pub rows: usize,
    pub errors: usize,
    pub warnings: usize,
    pub notes: usize,
    /// Contacts on a `--suppress` list: each is also a note naming why.
    pub suppressed: usize,
    pub problems: Vec<Problem>,
    /// True when the template or the CSV itself is broken, as opposed to
    /// some rows.
    #[serde(skip)]
    pub fatal: bool,
    /// The first row that became a letter, of each template (the default
    /// and each language variant), as `render` would write it (with the
    /// check's fixed stamp), for `check --spam`.
    #[serde(skip)]
    pub samples: Vec<Sample>,
    /// Contacts per language, as they get their letters: `he`, or
    /// `de → default` for a language without a variant.
    pub languages: Vec<(String, usize)>,
}

impl CheckReport {
    /// Adds a finding and counts it.
    pub fn push(&mut self, p: Problem) {
        match p.severity {
            Severity::Error => self.errors += 1,
            Severity::Warning => self.warnings += 1,
            Severity::Note => self.notes += 1,
        }
        self.problems.push(p);
    }

    fn fatal(&mut self, e: &Error) {
        self.fail(problem_of(e));
    }

    /// Adds a finding that makes the whole check fail (exit 1).
    pub fn fail(&mut self, p: Problem) {
        self.fatal = true;
        self.push(p);
    }

    /// 0 when nothing is wrong (warnings and notes allowed), 1 when the
    /// template or the file is broken, 3 when some rows are.
    pub fn exit_code(&self) -> u8 {
        if self.fatal {
            crate::exit::FATAL
        } else if self.errors > 0 {
            crate::exit::ROWS_REJECTED
        } else {
            crate::exit::OK
        }
    }
}

/// A fatal [`Error`] as a located [`Problem`].
fn problem_of(e: &Error) -> Problem {
    match e {
        Error::Template {
            path,
            line,
            message,
        } => Problem::new(Severity::Error, path.display().to_string(), message.clone())
            .at_line(*line as u64),
        Error::MissingVariable {
            path,
            line,
            missing,
        } => Problem::new(
            Severity::Error,
            path.display().to_string(),
            missing.to_string(),
        )
        .at_line(*line as u64),
        Error::Recipients { path, message } => {
            Problem::new(Severity::Error, path.clone(), message.clone())
        }
        Error::Read { path, .. } | Error::Write { path, .. } => {
            Problem::new(Severity::Error, path.display().to_string(), e.to_string())
        }
        Error::MergeMismatch { path, .. } | Error::OutDirNotEmpty { path } => {
            Problem::new(Severity::Error, path.display().to_string(), e.to_string())
        }
        Error::Usage(m) => Problem::new(Severity::Error, "", m.clone()),
        // Not raised by a check; listed so a new variant must be placed here.
        Error::NoSnapshot { .. }
        | Error::SnapshotIsFile { .. }
        | Error::NotSnapshot { .. }
        | Error::Listen { .. }
        | Error::Stopped { .. }
        | Error::Unsupported { .. } => Problem::new(Severity::Error, "", e.to_string()),
        Error::Journal { path, .. }
        | Error::JournalBusy { path, .. }
        | Error::Changed { path, .. }
        | Error::Dkim { path, .. } => {
            Problem::new(Severity::Error, path.display().to_string(), e.to_string())
        }
        Error::Transport { message } => Problem::new(Severity::Error, "", message.clone()),
    }
}

/// What [`crate::compose::lint`] finds in the template's headers, MJML body,
/// text sibling and included files, as warnings at their lines in those
/// files.
fn lint(t: &TemplateFile, columns: &[String], report: &mut CheckReport) {
    let path = t.path.display().to_string();
    let warn = |file: &str, line: usize, message: String| {
        Problem::new(Severity::Warning, file, message).at_line(line as u64)
    };
    let mut found = Vec::new();
    for h in &t.headers {
        for f in lint::foreign_placeholders(&h.value, columns) {
            found.push(warn(&path, h.line + f.line - 1, f.message));
        }
    }
    for f in lint::validate(&t.body, t.body_line) {
        found.push(warn(&path, f.line, f.message));
    }
    let body = lint::foreign_placeholders(&t.body, columns)
        .into_iter()
        .chain(lint::link_texts(&t.body));
    for f in body {
        found.push(warn(&path, t.body_line + f.line - 1, f.message));
    }
    found.sort_by_key(|p| p.line);
    if let Some(text) = &t.text {
        let text_path = t.text_path().display().to_string();
        for f in lint::foreign_placeholders(text, columns) {
            found.push(warn(&text_path, f.line, f.message));
        }
    }
    for inc in &t.includes {
        let inc_path = inc.path.display().to_string();
        // An `.html` or `.css` include is inserted as it is, not parsed as MJML.
        let mjml = inc.path.extension().is_some_and(|e| e == "mjml");
        let validated = if mjml {
            lint::validate(&inc.text, 1)
        } else {
            Vec::new()
        };
        let findings = validated
            .into_iter()
            .chain(lint::foreign_placeholders(&inc.text, columns))
            .chain(lint::link_texts(&inc.text));
        let mut in_file: Vec<Problem> = findings
            .map(|f| warn(&inc_path, f.line, f.message))
            .collect();
        in_file.sort_by_key(|p| p.line);
        found.extend(in_file);
    }
    found.into_iter().for_each(|p| report.push(p));
}

/// Checks `template` against `recipients` and reports every problem found.
pub fn check(
    template: &Path,
    recipients: &str,
    delimiter: Option<u8>,
    limits: Limits,
) -> CheckReport {
    check_with(
        template,
        recipients,
        delimiter,
        limits,
        Default::default(),
        &Suppressions::default(),
        &LangColumn::default(),
    )
}

/// [`check`] with the attachment options of the run to check
/// (`--missing-attachment`, `--inline-images`) and its language column.
pub fn check_with(
    template: &Path,
    recipients: &str,
    delimiter: Option<u8>,
    limits: Limits,
    attach: crate::compose::attach::Options,
    suppress: &Suppressions,
    lang: &LangColumn,
) -> CheckReport {
    let template_path = template.to_path_buf();
    let mut files = crate::compose::attach::Tally::default();
    let mut report = CheckReport::default();
    let templates = match Templates::load(template) {
        Ok(t) => Some(t),
        Err(e) => {
            report.fatal(&e);
            None
        }
    };
    let mut rows = match Recipients::open(recipients, delimiter) {
        Ok(r) => r.limited(limits.value),
        Err(e) => {
            report.fatal(&e);
            return report;
        }
    };
    let csv = rows.name().to_string();
    let columns = rows.columns().clone();

    let mut campaign = None;
    if let Some(templates) = templates {
        let all =
            std::iter::once(&templates.default).chain(templates.variants.iter().map(|(_, t)| t));
        let mut complete = true;
        for t in all {
            if t.header("List-Unsubscribe").is_none() {
                report.push(
                    Problem::new(
                        Severity::Warning,
                        t.path.display().to_string(),
                        "no List-Unsubscribe header; bulk senders must offer one-click unsubscribe \
                         (RFC 8058): add `List-Unsubscribe: <https://…>`",
                    )
                    .at_line(1),
                );
            }
            lint(t, columns.names(), &mut report);
            match missing_variables(t, &columns, &csv) {
                Ok(missing) if !missing.is_empty() => {
                    missing.iter().for_each(|e| report.fatal(e));
                    complete = false;
                }
                Ok(_) => {}
                Err(e) => {
                    report.fatal(&e);
                    complete = false;
                }
            }
        }
        for p in languages::compare(&templates) {
            report.push(p);
        }
        if complete {
            match Campaign::compile_all(templates, &columns, &csv, attach, Default::default(), lang)
            {
                Ok(c) => {
                    let c = c.limited(limits);
                    for col in c.unused_columns(&columns) {
                        report.push(
                            Problem::new(
                                Severity::Note,
                                csv.clone(),
                                "is not used by the template",
                            )
                            .at_line(1)
                            .in_column(col),
                        );
                    }
                    campaign = Some(c);
                }
                Err(e) => report.fatal(&e),
            }
        }
    }

    let mut tongues = languages::Tally::default();
    let mut duplicates = Duplicates::default();
    let mut verified = false;
    loop {
        let row = match rows.next_row() {
            Ok(Some(row)) => row,
            Ok(None) => break,
            Err(e) => {
                report.fatal(&e);
                break;
            }
        };
        report.rows += 1;
        let r = match row {
            Ok(r) => r,
            Err(p) => {
                report.push(p);
                continue;
            }
        };
        let Some(c) = &campaign else { continue };
        if let Some(p) = tongues.count(c, &r) {
            report.push(p);
        }
        if !verified {
            verified = true;
            if let Err(e) = c.verify(&r) {
                report.fatal(&e);
            }
        }
        // Built as render and send build it: a header word too long for a
        // line is only found there.
        if !c.variant(&r).files().is_empty() {
            let to = c.recipient(&r).map(|m| m.address).unwrap_or_default();
            files.missing(c.variant(&r).files(), &r, &to);
        }
        match Builder::new(c, Clock::Fixed(0), 0).build(&r) {
            Ok(Built { letter, eml, .. }) => {
                files.letter(r.row, eml.len(), &letter.files);
                let v = c.variant(&r);
                if !report
                    .samples
                    .iter()
                    .any(|s| s.template == v.template().path)
                {
                    report.samples.push(Sample {
                        template: v.template().path.clone(),
                        lang: v.lang().map(ToString::to_string),
                        row: r.row,
                        eml,
                    });
                }
                if let Some(warning) = duplicates.note(&letter.parts.to.address, r.row, r.line) {
                    report.push(
                        Problem::new(Severity::Warning, csv.clone(), warning)
                            .at_line(r.line)
                            .at_row(r.row),
                    );
                }
                if let Some(why) = suppress.get(&letter.parts.to.address) {
                    report.suppressed += 1;
                    report.push(
                        Problem::new(
                            Severity::Note,
                            csv.clone(),
                            format!(
                                "{} is suppressed: {why}; it will not be sent",
                                letter.parts.to.address
                            ),
                        )
                        .at_line(r.line)
                        .at_row(r.row),
                    );
                }
                letter.warnings.into_iter().for_each(|w| report.push(w));
            }
            Err(p) => report.push(p),
        }
    }
    if let Some(c) = &campaign {
        for p in files.finish(&template_path, &csv) {
            report.push(p);
        }
        let (counts, notes) = tongues.finish(c, &csv, &columns);
        report.languages = counts;
        notes.into_iter().for_each(|p| report.push(p));
    }
    if report.rows == 0 && !report.fatal {
        report.fatal(&Error::Recipients {
            path: csv,
            message: "has a header line but no contacts; add one line per contact".into(),
        });
    }
    report
}
