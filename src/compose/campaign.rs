//! A campaign: its compiled templates ([`Variant`]) and which one each
//! recipient gets. Nothing here reads files beyond what [`TemplateFile`]
//! and [`Variant::compile`] read.

use handlebars::Context;

use crate::compose::fidelity;
use crate::compose::message::Mailbox;
use crate::compose::recipients::{Columns, Limits, Recipient};
use crate::compose::template::TemplateFile;
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
}

impl Source {
    /// Loads the template and opens the list, and compiles the campaign
    /// against the list's columns.
    pub fn open(&self) -> Result<(Campaign, crate::compose::recipients::Recipients)> {
        let template = TemplateFile::load(&self.template)?;
        let recipients =
            crate::compose::recipients::Recipients::open(&self.recipients, self.delimiter)?
                .limited(self.limits.value);
        let name = recipients.name().to_string();
        let campaign = Campaign::compile_with_fonts(
            template,
            recipients.columns(),
            &name,
            self.attach,
            self.fonts,
        )?
        .limited(self.limits);
        Ok((campaign, recipients))
    }
}

/// A campaign ready to render: every template compiled, columns checked.
#[derive(Debug)]
pub struct Campaign {
    default: Variant,
}

impl Campaign {
    /// Compiles `template` for a list with `columns` (named `csv` in
    /// messages); see [`Variant::compile`].
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
        let default = Variant::compile_with_fonts(template, columns, csv, attach, fonts)?;
        Ok(Campaign { default })
    }

    /// The campaign with other size limits than the defaults.
    pub fn limited(self, limits: Limits) -> Campaign {
        Campaign {
            default: self.default.limited(limits),
        }
    }

    pub fn limits(&self) -> Limits {
        self.default.limits()
    }

    /// The recipients file's name, as used in problems.
    pub fn csv_name(&self) -> &str {
        self.default.csv_name()
    }

    /// The default template: the one named on the command line.
    pub fn template(&self) -> &TemplateFile {
        self.default.template()
    }

    /// A hash of the template files: changes when a letter changes.
    pub fn hash(&self) -> u128 {
        self.default.hash()
    }

    /// The default template, compiled.
    pub fn default_variant(&self) -> &Variant {
        &self.default
    }

    /// The template recipient `r` gets.
    pub fn variant(&self, _r: &Recipient) -> &Variant {
        &self.default
    }

    /// The columns no template uses.
    pub fn unused_columns<'a>(&self, columns: &'a Columns) -> Vec<&'a str> {
        self.default.unused_columns(columns)
    }

    /// Merges one recipient with the template it gets. A problem with this
    /// row is returned, not raised: the run goes on.
    pub fn render(&self, r: &Recipient) -> std::result::Result<Letter, Problem> {
        self.variant(r).render(r)
    }

    /// The text part of `r`'s letter, wrapped.
    pub fn merge_text(
        &self,
        r: &Recipient,
    ) -> std::result::Result<String, handlebars::RenderError> {
        self.variant(r).merge_text(&Context::from(r.to_json()))
    }

    /// The recipient's fields hashed with the campaign (see
    /// [`Letter::fingerprint`]).
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
