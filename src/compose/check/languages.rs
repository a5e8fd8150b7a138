//! What `check` says about a campaign's languages: how many contacts get
//! each letter, the languages that have no variant, values that are not
//! language tags, and variants that differ from the default in more than
//! their words (placeholders, headers, attachments).

use std::collections::{BTreeMap, BTreeSet};

use crate::compose::campaign::{Campaign, LANG_COLUMN};
use crate::compose::lang::{Choice, Tag};
use crate::compose::recipients::{Columns, Recipient};
use crate::compose::template::{TemplateFile, Templates, ATTACHMENT};
use crate::report::{Problem, Severity};

/// Contacts counted by the letter they get.
#[derive(Debug, Default)]
pub struct Tally {
    /// Per variant index.
    chosen: BTreeMap<usize, usize>,
    /// Well-formed tags without a variant, by tag as written.
    unmatched: BTreeMap<String, usize>,
    invalid: usize,
}

impl Tally {
    /// Counts `r`; a value that is not a language tag is a warning on its
    /// line and column.
    pub fn count(&mut self, c: &Campaign, r: &Recipient) -> Option<Problem> {
        match c.choice(r) {
            Choice::Variant(i) => *self.chosen.entry(i).or_default() += 1,
            Choice::Default => *self.chosen.entry(0).or_default() += 1,
            Choice::Unmatched(tag) => *self.unmatched.entry(tag.to_string()).or_default() += 1,
            Choice::Invalid => {
                self.invalid += 1;
                let column = c.lang_column()?;
                let value = r.fields.get(column)?;
                let hint = match Tag::hint(value) {
                    Some(t) => format!("write `{t}`"),
                    None => "write a BCP 47 tag such as `fr`, `he` or `pt-BR`".into(),
                };
                let name = r
                    .columns
                    .names()
                    .get(column)
                    .map_or(LANG_COLUMN, String::as_str)
                    .to_string();
                return Some(
                    Problem::new(
                        Severity::Warning,
                        c.csv_name(),
                        format!(
                            "`{value}` is not a language tag; {hint}. This contact gets the \
                             default letter"
                        ),
                    )
                    .at_line(r.line)
                    .at_row(r.row)
                    .in_column(&name),
                );
            }
        }
        None
    }

    /// The contacts per letter (`he`, `de → default`), and the notes on
    /// them.
    pub fn finish(
        self,
        c: &Campaign,
        csv: &str,
        columns: &Columns,
    ) -> (Vec<(String, usize)>, Vec<Problem>) {
        let variants = c.variants();
        let default_name = variants[0]
            .lang()
            .map_or_else(|| "default".to_string(), |t| format!("{t}, the default"));
        let mut counts = Vec::new();
        for (i, n) in &self.chosen {
            let name = match i {
                0 => default_name.clone(),
                _ => variants[*i]
                    .lang()
                    .map_or_else(|| format!("variant {i}"), Tag::to_string),
            };
            counts.push((name, *n));
        }
        let mut notes = Vec::new();
        for (tag, n) in &self.unmatched {
            counts.push((format!("{tag} → default"), *n));
            let file = c
                .template()
                .path
                .file_name()
                .and_then(|f| f.to_str())
                .and_then(|f| f.rsplit_once('.'))
                .map(|(stem, ext)| format!("{stem}.{tag}.{ext}"))
                .unwrap_or_default();
            notes.push(
                Problem::new(
                    Severity::Note,
                    csv.to_string(),
                    format!(
                        "{n} contact{} in language `{tag}`, which has no variant ({file}): \
                         {} the default letter",
                        if *n == 1 { " is" } else { "s are" },
                        if *n == 1 { "it gets" } else { "they get" }
                    ),
                )
                .at_line(1),
            );
        }
        if self.invalid > 0 {
            counts.push(("not a tag → default".into(), self.invalid));
        }
        if variants.len() > 1 && c.lang_column().is_none() {
            let tags: Vec<String> = variants[1..]
                .iter()
                .filter_map(|v| v.lang().map(Tag::to_string))
                .collect();
            notes.push(
                Problem::new(
                    Severity::Warning,
                    csv.to_string(),
                    format!(
                        "the template has variants in {}, but the list has no `{LANG_COLUMN}` \
                         column, so every contact gets the default letter; add the column, or \
                         name yours with --lang-column (its columns: {})",
                        tags.join(", "),
                        columns.names().join(", ")
                    ),
                )
                .at_line(1),
            );
        }
        if variants.len() > 1 || !self.unmatched.is_empty() {
            let summary: Vec<String> = counts.iter().map(|(k, n)| format!("{k}: {n}")).collect();
            notes.push(
                Problem::new(
                    Severity::Note,
                    csv.to_string(),
                    format!("contacts per letter: {}", summary.join(", ")),
                )
                .at_line(1),
            );
        }
        (counts, notes)
    }
}

/// The variants that differ from the default in their placeholders, their
/// headers or their attachments, or whose `<mjml lang>` is another
/// language than their file name's: a warning each, on the variant.
pub fn compare(templates: &Templates) -> Vec<Problem> {
    let default = &templates.default;
    let mut out = Vec::new();
    let names = |t: &TemplateFile| -> BTreeSet<String> {
        t.variables()
            .map(|v| v.into_iter().map(|v| v.name).collect())
            .unwrap_or_default()
    };
    let headers = |t: &TemplateFile| -> BTreeSet<String> {
        t.headers
            .iter()
            .filter(|h| h.name != ATTACHMENT)
            .map(|h| h.name.clone())
            .collect()
    };
    let attached = |t: &TemplateFile| -> BTreeSet<String> {
        t.headers
            .iter()
            .filter(|h| h.name == ATTACHMENT)
            .map(|h| h.value.trim().to_string())
            .collect()
    };
    let (vars, heads, files) = (names(default), headers(default), attached(default));
    let dname = default
        .path
        .file_name()
        .map_or_else(String::new, |f| f.to_string_lossy().into_owned());
    for (tag, t) in &templates.variants {
        let path = t.path.display().to_string();
        let warn = |line: usize, message: String| {
            Problem::new(Severity::Warning, path.clone(), message).at_line(line as u64)
        };
        let list = |s: BTreeSet<&String>, wrap: fn(&str) -> String| {
            s.into_iter()
                .map(|v| wrap(v))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let placeholder = |v: &str| format!("{{{{{v}}}}}");
        let plain = |v: &str| format!("`{v}`");
        let own = names(t);
        if own != vars {
            let added: BTreeSet<&String> = own.difference(&vars).collect();
            let lost: BTreeSet<&String> = vars.difference(&own).collect();
            let mut parts = Vec::new();
            if !added.is_empty() {
                parts.push(format!(
                    "uses {} that {dname} does not",
                    list(added, placeholder)
                ));
            }
            if !lost.is_empty() {
                parts.push(format!(
                    "does not use {} that {dname} uses",
                    list(lost, placeholder)
                ));
            }
            out.push(warn(
                1,
                format!("the {tag} variant {}", parts.join(", and ")),
            ));
        }
        let own = headers(t);
        if own != heads {
            let added: BTreeSet<&String> = own.difference(&heads).collect();
            let lost: BTreeSet<&String> = heads.difference(&own).collect();
            let mut parts = Vec::new();
            if !added.is_empty() {
                parts.push(format!(
                    "has header {} that {dname} has not",
                    list(added, plain)
                ));
            }
            if !lost.is_empty() {
                parts.push(format!(
                    "lacks header {} that {dname} has",
                    list(lost, plain)
                ));
            }
            out.push(warn(
                1,
                format!("the {tag} variant {}", parts.join(", and ")),
            ));
        }
        let own = attached(t);
        if own != files {
            let added: BTreeSet<&String> = own.difference(&files).collect();
            let lost: BTreeSet<&String> = files.difference(&own).collect();
            let mut parts = Vec::new();
            if !added.is_empty() {
                parts.push(format!(
                    "attaches {} that {dname} does not",
                    list(added, plain)
                ));
            }
            if !lost.is_empty() {
                parts.push(format!(
                    "does not attach {} that {dname} does",
                    list(lost, plain)
                ));
            }
            out.push(warn(
                1,
                format!("the {tag} variant {}", parts.join(", and ")),
            ));
        }
        if let Some(written) = crate::compose::rtl::root_attribute(&t.body, "lang") {
            let same = Tag::parse(written).is_some_and(|w| w.language() == tag.language());
            if !same {
                out.push(warn(
                    t.body_line,
                    format!(
                        "<mjml lang=\"{written}\"> in the {tag} variant: the file name says \
                         {tag}; the letter will say {written}. Make them agree"
                    ),
                ));
            }
        }
    }
    out
}
