//! A campaign: its compiled templates ([`Variant`]) and which one each
//! recipient gets. Nothing here reads files beyond what [`TemplateFile`]
//! and [`Variant::compile_in`] read.

use handlebars::Context;

use crate::compose::fidelity;
use crate::compose::lang::{Choice, Chooser, Tag};
use crate::compose::message::Mailbox;
use crate::compose::recipients::{Columns, Limits, Recipient};
use crate::compose::template::{TemplateFile, Templates};
use crate::error::Result;
use crate::report::Problem;

pub use crate::compose::variant::{
    missing_variables, render_html, Letter, Variant, HTML_WARN_BYTES,
};

/// Where a campaign's letters come from: the input of every command.
#[derive(Debug, Clone)]
pub struct Source {
    pub template: std::path::PathBuf,
    pub recipients: String,
    pub delimiter: Option<u8>,
    /// How big a value, a header block and a message may be.
    pub limits: Limits,
    /// `--missing-attachment` and `--inline-images`.
    pub attach: crate::compose::attach::Options,
    /// Whether the letter links MJML's web fonts (`--no-remote-fonts`).
    pub fonts: fidelity::RemoteFonts,
    /// The column of the contacts' languages (`--lang-column`).
    pub lang: LangColumn,
}

impl Source {
    /// Loads the template and opens the list, and compiles the campaign
    /// against the list's columns.
    pub fn open(&self) -> Result<(Campaign, crate::compose::recipients::Recipients)> {
        let recipients =
            crate::compose::recipients::Recipients::open(&self.recipients, self.delimiter)?
                .limited(self.limits.value);
        let name = recipients.name().to_string();
        let campaign = self.compile(recipients.columns(), &name)?;
        Ok((campaign, recipients))
    }

    /// Loads the templates (the default and its language variants) and
    /// compiles them for a list with `columns`, named `csv`.
    pub fn compile(&self, columns: &Columns, csv: &str) -> Result<Campaign> {
        let templates = Templates::load(&self.template)?;
        Ok(
            Campaign::compile_all(templates, columns, csv, self.attach, self.fonts, &self.lang)?
                .limited(self.limits),
        )
    }
}

/// A campaign ready to render: every template compiled, columns checked.
#[derive(Debug)]
pub struct Campaign {
    /// The default first, then the language variants by tag.
    variants: Vec<Variant>,
    chooser: Chooser,
    /// The column holding each contact's language, when the list has it.
    lang_column: Option<usize>,
    hash: u128,
}

/// How a campaign picks a contact's variant: the column of the language
/// tags (`--lang-column`).
#[derive(Debug, Clone, Default)]
pub struct LangColumn {
    /// `None`: `lang` when the list has such a column.
    pub name: Option<String>,
}

/// The column contacts' languages are read from by default.
pub const LANG_COLUMN: &str = "lang";

impl LangColumn {
    /// The column's index in `columns`. A column named on the command line
    /// must exist; the default one may be absent (then every contact gets
    /// the default letter).
    fn find(&self, columns: &Columns, csv: &str) -> Result<Option<usize>> {
        match &self.name {
            None => Ok(columns.position(LANG_COLUMN)),
            Some(name) => columns.position(name).map(Some).ok_or_else(|| {
                crate::error::Error::Usage(format!(
                    "--lang-column `{name}`: {csv} has no such column; its columns are {}",
                    columns.names().join(", ")
                ))
            }),
        }
    }
}

impl Campaign {
    /// Compiles `template` for a list with `columns` (named `csv` in
    /// messages); see [`Variant::compile_in`].
    pub fn compile(template: TemplateFile, columns: &Columns, csv: &str) -> Result<Campaign> {
        Self::compile_with(template, columns, csv, Default::default())
    }

    /// [`Campaign::compile`] with attachment options other than the
    /// defaults.
    pub fn compile_with(
        template: TemplateFile,
        columns: &Columns,
        csv: &str,
        attach: crate::compose::attach::Options,
    ) -> Result<Campaign> {
        let fonts = fidelity::RemoteFonts::default();
        Self::compile_with_fonts(template, columns, csv, attach, fonts)
    }

    /// [`Campaign::compile_with`], with the web fonts linked as `fonts`
    /// says (`--no-remote-fonts`).
    pub fn compile_with_fonts(
        template: TemplateFile,
        columns: &Columns,
        csv: &str,
        attach: crate::compose::attach::Options,
        fonts: fidelity::RemoteFonts,
    ) -> Result<Campaign> {
        let templates = Templates::one(template);
        Self::compile_all(
            templates,
            columns,
            csv,
            attach,
            fonts,
            &LangColumn::default(),
        )
    }

    /// Compiles every template of `templates`: the default, and one variant
    /// per language, each chosen by the contacts' `lang` column.
    pub fn compile_all(
        templates: Templates,
        columns: &Columns,
        csv: &str,
        attach: crate::compose::attach::Options,
        fonts: fidelity::RemoteFonts,
        lang: &LangColumn,
    ) -> Result<Campaign> {
        let lang_column = lang.find(columns, csv)?;
        let mut variants = Vec::with_capacity(1 + templates.variants.len());
        variants.push(Variant::compile_in(
            templates.default,
            None,
            columns,
            csv,
            attach,
            fonts,
        )?);
        for (tag, template) in templates.variants {
            variants.push(Variant::compile_in(
                template,
                Some(tag),
                columns,
                csv,
                attach,
                fonts,
            )?);
        }
        // The default's own language selects it too (`en` for an English
        // default), ahead of a variant of the same tag.
        let chooser = Chooser::new(variants.iter().map(Variant::lang));
        let hash = match variants.as_slice() {
            [one] => one.hash(),
            all => {
                let mut h = xxhash_rust::xxh3::Xxh3::new();
                for v in all {
                    h.update(v.lang().map_or("", Tag::as_str).as_bytes());
                    h.update(&v.hash().to_le_bytes());
                }
                h.digest128()
            }
        };
        Ok(Campaign {
            variants,
            chooser,
            lang_column,
            hash,
        })
    }

    /// The campaign with other size limits than the defaults.
    pub fn limited(self, limits: Limits) -> Campaign {
        Campaign {
            variants: self
                .variants
                .into_iter()
                .map(|v| v.limited(limits))
                .collect(),
            ..self
        }
    }

    pub fn limits(&self) -> Limits {
        self.variants[0].limits()
    }

    /// The recipients file's name, as used in problems.
    pub fn csv_name(&self) -> &str {
        self.variants[0].csv_name()
    }

    /// The default template: the one named on the command line.
    pub fn template(&self) -> &TemplateFile {
        self.variants[0].template()
    }

    /// The default template's path, and the languages of its variants:
    /// `templates/weremember.mjml (with its he and fr variants)`.
    pub fn describe(&self) -> String {
        let path = self.template().path.display();
        let tags: Vec<String> = self.variants[1..]
            .iter()
            .filter_map(|v| v.lang().map(Tag::to_string))
            .collect();
        match tags.as_slice() {
            [] => path.to_string(),
            [one] => format!("{path} (with its {one} variant)"),
            [first @ .., last] => {
                format!("{path} (with its {} and {last} variants)", first.join(", "))
            }
        }
    }

    /// A hash of every template's files: changes when a letter changes.
    /// With one template, that template's hash.
    pub fn hash(&self) -> u128 {
        self.hash
    }

    /// Every template: the default first, then the variants by tag.
    pub fn variants(&self) -> &[Variant] {
        &self.variants
    }

    /// The index of the column contacts' languages are read from.
    pub fn lang_column(&self) -> Option<usize> {
        self.lang_column
    }

    /// Which template recipient `r` gets, and why.
    pub fn choice(&self, r: &Recipient) -> Choice {
        match self.lang_column.and_then(|i| r.fields.get(i)) {
            Some(value) => self.chooser.choose(value),
            None => Choice::Default,
        }
    }

    /// The template recipient `r` gets.
    pub fn variant(&self, r: &Recipient) -> &Variant {
        &self.variants[self.variant_index(r)]
    }

    /// The index in [`Campaign::variants`] of the template `r` gets.
    pub fn variant_index(&self, r: &Recipient) -> usize {
        if self.variants.len() == 1 {
            return 0;
        }
        self.index(&self.choice(r))
    }

    fn index(&self, choice: &Choice) -> usize {
        match choice {
            Choice::Variant(i) => *i,
            _ => 0,
        }
    }

    /// The columns no template uses (the language column is used by the
    /// choice of template, and by the notes on languages without one).
    pub fn unused_columns<'a>(&self, columns: &'a Columns) -> Vec<&'a str> {
        let lang = self.lang_column.and_then(|i| columns.names().get(i));
        let mut unused = self.variants[0].unused_columns(columns);
        unused.retain(|c| {
            Some(*c) != lang.map(String::as_str)
                && self.variants[1..]
                    .iter()
                    .all(|v| v.unused_columns(columns).contains(c))
        });
        unused
    }

    /// Merges one recipient with the template it gets. A problem with this
    /// row is returned, not raised: the run goes on.
    pub fn render(&self, r: &Recipient) -> std::result::Result<Letter, Problem> {
        let choice = self.choice(r);
        let mut letter = self.variants[self.index(&choice)].render(r)?;
        letter.fallback = match choice {
            Choice::Unmatched(tag) => Some(tag.to_string()),
            Choice::Invalid => self
                .lang_column
                .and_then(|i| r.fields.get(i))
                .map(|v| v.trim().to_string()),
            Choice::Variant(_) | Choice::Default => None,
        };
        Ok(letter)
    }

    /// The text part of `r`'s letter, wrapped.
    pub fn merge_text(
        &self,
        r: &Recipient,
    ) -> std::result::Result<String, handlebars::RenderError> {
        self.variant(r).merge_text(&Context::from(r.to_json()))
    }

    /// The recipient's fields hashed with their template (see
    /// [`Letter::fingerprint`]): a contact's seed does not change when a
    /// variant for another language is added.
    pub fn fingerprint(&self, r: &Recipient) -> u128 {
        self.variant(r).fingerprint(r)
    }

    /// Only the `To` mailbox of `r` (see [`Variant::recipient`]).
    pub fn recipient(&self, r: &Recipient) -> std::result::Result<Mailbox, Problem> {
        self.variant(r).recipient(r)
    }

    /// The safety net of DESIGN.md section 3 for `r`'s template (see
    /// [`Variant::verify`]).
    pub fn verify(&self, r: &Recipient) -> Result<()> {
        self.variant(r).verify(r)
    }
}
