//! One compiled template (a campaign has one per language: [`crate::compose::campaign`]) and the per-recipient merge (DESIGN.md section 3):
//! MJML is rendered once with the `{{…}}` left in, Handlebars compiles that
//! HTML once, and each recipient costs one Handlebars render of the HTML, one
//! of the text and one per header. No I/O here beyond what
//! [`TemplateFile`] already read and the files mrml's loader reads for
//! `mj-include` (when compiling, and in the safety net's few sample rows).

use std::collections::BTreeSet;

use crate::compose::bidi;
use crate::compose::pieces::{self, Pieces};
use handlebars::{Context, Handlebars};

use crate::compose::fidelity;
use crate::compose::lang::Tag;
use crate::compose::message::{ListId, Mailbox, Parts};
use crate::compose::recipients::{Columns, Limits, Recipient};
use crate::compose::rtl;
use crate::compose::template::{include_root, TemplateFile, Variable};
use crate::compose::text;
use crate::error::{Error, Result};
use crate::report::{Problem, Severity};

/// Gmail clips an HTML body near 102 KB; warn well before.
pub const HTML_WARN_BYTES: usize = 90 * 1024;

/// One template of a campaign compiled: MJML rendered, Handlebars
/// registered, columns checked. A campaign has one per language
/// ([`crate::compose::campaign::Campaign`]).
pub struct Variant {
    template: TemplateFile,
    /// The MJML as rendered: the template's body with its language
    /// ([`rtl::prepare`]).
    body: String,
    /// The letter's language, if known.
    lang: Option<Tag>,
    /// Its base direction: the text part isolates values of the other.
    direction: bidi::Direction,
    /// Where `mj-include` reads, for both renders (see [`parser_options`]).
    include_root: Option<std::path::PathBuf>,
    html: Handlebars<'static>,
    /// The HTML template as registered in `html`: cut into pieces so that
    /// a long one compiles in linear time (see [`Pieces`]).
    html_pieces: Pieces,
    plain: Handlebars<'static>,
    /// The text part's registry: values bidi-isolated, not HTML-escaped.
    text: Handlebars<'static>,
    text_pieces: Pieces,
    /// The `List-Unsubscribe` template, whose `{{…}}` values are
    /// percent-encoded (see [`Variant::unsubscribe`]).
    uri: Handlebars<'static>,
    /// The MJML rendered once, placeholders and all.
    html_template: String,
    text_template: String,
    /// In template order.
    headers: Vec<HeaderTemplate>,
    used: BTreeSet<String>,
    hash: u128,
    /// The recipients file's name, for problems.
    csv: String,
    /// Checked by the build step ([`crate::compose::build::Builder::build`]).
    limits: Limits,
    /// The attachments and inline images, shared files already encoded.
    files: crate::compose::attach::Plan,
    /// Both renders link the same web fonts.
    fonts: fidelity::RemoteFonts,
}

impl std::fmt::Debug for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Variant")
            .field("template", &self.template.path)
            .finish_non_exhaustive()
    }
}

/// One header of the template, compiled.
#[derive(Debug)]
struct HeaderTemplate {
    name: String,
    /// Its template's name in the plain registry.
    key: String,
    /// The columns it uses.
    columns: BTreeSet<String>,
    /// Its value when it uses none: such a header skips Handlebars.
    literal: Option<String>,
    /// For `List-Unsubscribe`: how many URIs the template itself writes.
    /// A row whose value has another number gained or lost one through a
    /// value.
    uris: usize,
}

/// One recipient's merged letter, ready to be built into a message.
#[derive(Debug, Clone)]
pub struct Letter {
    pub row: usize,
    pub line: u64,
    pub parts: Parts,
    /// The recipient's fields hashed with the campaign: the seed of a
    /// deterministic [`crate::compose::message::Stamp`].
    pub fingerprint: u128,
    pub warnings: Vec<Problem>,
    /// Attachments and inline images, added by the build step (empty when
    /// just merged).
    pub files: Vec<crate::compose::attach::File>,
    /// The language of the variant it was merged from, if known.
    pub lang: Option<Tag>,
    /// The contact's language when no variant had it (a tag without a
    /// variant, or a value that is not a tag): the letter is the default.
    pub fallback: Option<String>,
}

/// The variables of `template` that are not columns, each an error naming
/// the variable and its line.
pub fn missing_variables(
    template: &TemplateFile,
    columns: &Columns,
    csv: &str,
) -> Result<Vec<Error>> {
    Ok(missing(template, &template.variables()?, columns, csv))
}

/// Those of `vars` (the template's) that are not columns.
fn missing(template: &TemplateFile, vars: &[Variable], columns: &Columns, csv: &str) -> Vec<Error> {
    let mut seen = BTreeSet::new();
    vars.iter()
        .filter(|v| columns.position(&v.name).is_none() && seen.insert(v.name.as_str()))
        .map(|v| Error::MissingVariable {
            path: match &v.included {
                Some(path) => path.clone(),
                None if v.in_text_file => template.text_path(),
                None => template.path.clone(),
            },
            line: v.line,
            missing: crate::error::MissingColumn {
                name: v.name.clone(),
                csv: csv.to_string(),
                columns: columns.names().join(", "),
            },
        })
        .collect()
}

/// The parser options of both renders, MJML once and the safety net's per
/// recipient render, so that the two read includes alike. With `merge`, the
/// included files are merged with those fields first, as the per recipient
/// render merges the template.
fn parser_options(
    include_root: Option<&std::path::Path>,
    merge: Option<&serde_json::Value>,
) -> mrml::prelude::parser::ParserOptions {
    use mrml::prelude::parser::local_loader::LocalIncludeLoader;
    let mut opts = mrml::prelude::parser::ParserOptions::default();
    if let Some(root) = include_root {
        let local = LocalIncludeLoader::new(root.to_path_buf());
        opts.include_loader = match merge {
            Some(fields) => Box::new(MergingLoader {
                local,
                fields: fields.clone(),
            }),
            None => Box::new(PreparingLoader(local)),
        };
    }
    opts
}

/// Reads an included file inside the root, prepared for mrml as the
/// template is ([`fidelity::prepare_included`]).
#[derive(Debug)]
struct PreparingLoader(mrml::prelude::parser::local_loader::LocalIncludeLoader);

impl mrml::prelude::parser::loader::IncludeLoader for PreparingLoader {
    fn resolve(
        &self,
        path: &str,
    ) -> std::result::Result<String, mrml::prelude::parser::loader::IncludeLoaderError> {
        let source = self.0.resolve(path)?;
        Ok(fidelity::prepare_included(&source).into_owned())
    }
}

/// The message of a [`MergingLoader`] error whose cause is Handlebars'.
const MERGE_FAILED: &str = "Handlebars error in the included file";

/// Reads an included file inside the root, then merges it with one
/// recipient's fields.
#[derive(Debug)]
struct MergingLoader {
    local: mrml::prelude::parser::local_loader::LocalIncludeLoader,
    fields: serde_json::Value,
}

impl mrml::prelude::parser::loader::IncludeLoader for MergingLoader {
    fn resolve(
        &self,
        path: &str,
    ) -> std::result::Result<String, mrml::prelude::parser::loader::IncludeLoaderError> {
        let source = self.local.resolve(path)?;
        // Merged, then prepared: as the template in the per-recipient render.
        let merged = pieces::render_once(&source, &self.fields).map_err(|e| {
            mrml::prelude::parser::loader::IncludeLoaderError::new(
                path,
                std::io::ErrorKind::InvalidData,
            )
            .with_message(MERGE_FAILED)
            .with_cause(std::sync::Arc::new(std::io::Error::other(e.to_string())))
        })?;
        Ok(fidelity::prepare_included(&merged).into_owned())
    }
}

/// The HTML letterpress makes of `mjml` (placeholders left in), as both
/// renders of a campaign make it: what `tests/fidelity.rs` compares with
/// the official MJML. Errors are (line in `mjml`, message).
pub fn render_html(
    mjml: &str,
    fonts: fidelity::RemoteFonts,
) -> std::result::Result<String, (usize, String)> {
    render_mjml(mjml, None, None, fonts)
}

/// Renders MJML to HTML, giving errors as (line in `mjml`, message). The
/// one place mrml renders: [`fidelity`] corrects its input and output.
fn render_mjml(
    mjml: &str,
    include_root: Option<&std::path::Path>,
    merge: Option<&serde_json::Value>,
    fonts: fidelity::RemoteFonts,
) -> std::result::Result<String, (usize, String)> {
    let opts = parser_options(include_root, merge);
    let (prepared, carried) = fidelity::prepare(mjml);
    let parsed = match mrml::parse_with_options(&prepared, &opts) {
        Ok(parsed) => parsed,
        // The prepared MJML may have fewer lines: the error is the
        // original's, where the user can find it.
        Err(e) => {
            let e = match &prepared {
                std::borrow::Cow::Owned(_) => {
                    mrml::parse_with_options(mjml, &opts).err().unwrap_or(e)
                }
                std::borrow::Cow::Borrowed(_) => e,
            };
            return Err(parse_error(mjml, include_root, e));
        }
    };
    parsed
        .element
        .render(&fidelity::render_options(fonts))
        .map(|html| fidelity::correct(html, &carried))
        // After the corrections: the preheader is letterpress's own.
        .map(|html| crate::compose::preheader::rewrite(&html))
        .map_err(|e| (1, format!("MJML render error: {e}")))
}

/// A parse error of `mjml` as (line, message).
fn parse_error(
    mjml: &str,
    include_root: Option<&std::path::Path>,
    e: mrml::prelude::parser::Error,
) -> (usize, String) {
    use mrml::prelude::parser::Error as P;
    let line_of = |pos: usize| mjml[..pos.min(mjml.len())].matches('\n').count() + 1;
    {
        let line = match &e {
            P::UnexpectedElement { position, .. }
            | P::UnexpectedToken { position, .. }
            | P::MissingAttribute { position, .. }
            | P::InvalidAttribute { position, .. }
            | P::InvalidFormat { position, .. }
            | P::IncludeLoaderError { position, .. } => line_of(position.start),
            P::ParserError { source, .. } => source.pos().row as usize,
            _ => mjml.lines().count(),
        };
        if let P::IncludeLoaderError { source, .. } = &e {
            // mrml's own message names neither the path nor the rule.
            let folder = include_root.map_or_else(
                || "(which could not be resolved)".to_string(),
                |r| r.display().to_string(),
            );
            let why = match (source.message, &source.cause) {
                (Some(MERGE_FAILED), Some(cause)) => format!("{MERGE_FAILED}: {cause}"),
                _ => format!("an included file must exist inside the template's folder {folder}"),
            };
            return (
                line,
                format!("MJML error: cannot include `{}`: {why}", source.path),
            );
        }
        let hint = match &e {
            P::EndOfStream { .. } => "; a tag is not closed",
            P::ParserError { .. } | P::InvalidFormat { .. } => {
                "; check for an unquoted attribute or an unclosed tag, and use single \
                 quotes inside a placeholder in an attribute"
            }
            _ => "",
        };
        (line, format!("MJML error: {e}{hint}"))
    }
}

impl Variant {
    /// [`Variant::compile_in`] with no language and the default options,
    /// for the tests.
    #[cfg(test)]
    pub fn compile(template: TemplateFile, columns: &Columns, csv: &str) -> Result<Variant> {
        let (attach, fonts) = (Default::default(), Default::default());
        Self::compile_in(template, None, columns, csv, attach, fonts)
    }

    /// Compiles `template` for a list with `columns` (named `csv` in
    /// messages). Fails on the first template error or missing variable.
    ///
    /// `From`, `To` and `Reply-To` take one mailbox, and a second one in
    /// the template would silently become part of a display name (everything
    /// before the last `<` is the name). What the template itself writes is
    /// checked, not what values bring: the header is rendered with every
    /// column set to `x`, and more than one address in that text
    /// ([`crate::compose::message::addresses_written`]) is a template error.
    /// So `{{name}} <{{email}}>` with the name `Lee, Ann`, and a literal
    /// `"Lee, Ann" <a@x.org>`, keep working, and the verdict is the same for
    /// every list.
    ///
    /// The letter is in language `lang`: the variant's tag from its file
    /// name, else the `<mjml lang>` the template writes. A right-to-left
    /// language's MJML is mirrored ([`rtl::prepare`]) and its text part
    /// isolates left-to-right values. `attach` are the attachment options,
    /// `fonts` says which web fonts the letter links (`--no-remote-fonts`).
    pub fn compile_in(
        template: TemplateFile,
        lang: Option<Tag>,
        columns: &Columns,
        csv: &str,
        attach: crate::compose::attach::Options,
        fonts: fidelity::RemoteFonts,
    ) -> Result<Variant> {
        let lang =
            lang.or_else(|| rtl::root_attribute(&template.body, "lang").and_then(Tag::parse));
        let body = match &lang {
            Some(tag) => rtl::prepare(&template.body, tag).into_owned(),
            None => template.body.clone(),
        };
        let direction = lang.as_ref().map(Tag::direction).unwrap_or_default();
        let vars = template.variables()?;
        if let Some(e) = missing(&template, &vars, columns, csv).into_iter().next() {
            return Err(e);
        }
        let include_root = include_root(&template.path);
        let html_template = render_mjml(&body, include_root.as_deref(), None, fonts)
            .map_err(|(l, m)| template.error(template.body_line + l - 1, m, false))?;

        // mrml drops text where MJML allows none (between mj-columns) and
        // escapes `"` in attributes: a placeholder the HTML lost is a
        // placeholder some recipients would silently not get.
        for (line, tag) in placeholders(&template.body) {
            if !html_template.contains(tag) {
                return Err(template.error(
                    template.body_line + line - 1,
                    format!(
                        "MJML dropped or moved `{tag}`: put block helpers inside mj-text, or \
                         around whole mj-sections in mj-raw, and use single quotes inside attributes"
                    ),
                    false,
                ));
            }
        }
        let mut html = Handlebars::new();
        html.set_strict_mode(true);
        // Every merged value isolated once here, not per letter (bidi.rs).
        let isolated = bidi::isolate_html(&html_template);
        let html_pieces = Pieces::register(&mut html, "html", &isolated).map_err(|e| {
            template.error(
                template.body_line,
                format!(
                    "after MJML rendering, the Handlebars in the body no longer parses ({}); \
                     MJML dropped or moved a `{{{{…}}}}`: put block helpers inside mj-text or \
                     around whole mj-sections in mj-raw, and use single quotes inside attributes",
                    e.reason
                ),
                false,
            )
        })?;

        let (text_template, text_is_file) = match &template.text {
            Some(t) => (t.clone(), true),
            None => (
                text::from_html(&html_template)
                    .map_err(|m| template.error(template.body_line, m, false))?,
                false,
            ),
        };
        let mut plain = Handlebars::new();
        plain.set_strict_mode(true);
        plain.register_escape_fn(handlebars::no_escape);
        // The text part has a registry of its own: its values are isolated
        // (FSI … PDI) where their direction differs from the letter's, which
        // header values must never be.
        let mut text = Handlebars::new();
        text.set_strict_mode(true);
        let base = direction;
        text.register_escape_fn(move |v| bidi::isolate_text(v, base));
        // Adjacent values share one isolate, as in the HTML: rewritten once
        // here, so a letter costs one block per run, whatever the variant.
        text.register_helper(bidi::RUN_HELPER, Box::new(bidi::IsolateRun(base)));
        let runs = bidi::isolate_text_runs(&text_template);
        let text_pieces = Pieces::register(&mut text, "text", &runs).map_err(|e| {
            template.error(e.line, format!("text part: {}", e.reason), text_is_file)
        })?;

        let mut uri = Handlebars::new();
        uri.set_strict_mode(true);
        uri.register_escape_fn(crate::compose::message::percent_encode);
        let mut headers = Vec::new();
        for h in &template.headers {
            if h.name == crate::compose::template::ATTACHMENT {
                continue;
            }
            let key = format!("h:{}", h.name);
            let registry = if h.name == "List-Unsubscribe" {
                &mut uri
            } else {
                &mut plain
            };
            registry
                .register_template_string(&key, &h.value)
                .map_err(|e| {
                    template.error(
                        h.line,
                        format!("Handlebars syntax error: {}", e.reason()),
                        false,
                    )
                })?;
            let cols = crate::compose::template::variables_in(&h.value)
                .map_err(|(_, m)| template.error(h.line, m, false))?
                .into_iter()
                .map(|v| v.name)
                .collect();
            let literal = (!h.value.contains("{{")).then(|| h.value.trim().to_string());
            if matches!(h.name.as_str(), "From" | "To" | "Reply-To") {
                let text = neutral(&plain, &key, &cols, "x").unwrap_or_else(|| {
                    placeholders(&h.value)
                        .iter()
                        .fold(h.value.clone(), |v, (_, p)| v.replace(p, "x"))
                });
                let n = crate::compose::message::addresses_written(&text);
                if n > 1 {
                    return Err(template.error(
                        h.line,
                        format!(
                            "the {} header writes {n} addresses, but it takes one mailbox \
                             (`Name <address>`); keep one, and put a display name that holds \
                             `@` or `<` in double quotes",
                            h.name
                        ),
                        false,
                    ));
                }
                // With no placeholder the header is the same for every row:
                // if it is not a mailbox, every row would fail alike.
                if let Some(value) = &literal {
                    if let Err(e) = Mailbox::parse(value) {
                        let message = if value.contains(['<', '@']) {
                            format!("the {} header `{value}`: {e}", h.name)
                        } else {
                            format!(
                                "the {0} header `{value}` has no address; write it as \
                                 `{value} <address>`",
                                h.name
                            )
                        };
                        return Err(template.error(h.line, message, false));
                    }
                }
            }
            // Every row would fail alike.
            if let (Some(value), "List-Id") = (&literal, h.name.as_str()) {
                ListId::parse(value)
                    .map_err(|m| template.error(h.line, format!("List-Id: {m}"), false))?;
            }
            let mut uris = 0;
            if h.name == "List-Unsubscribe" {
                // `x:x` keeps the scheme check: `{{url}}` (percent-encoded)
                // cannot hold a whole URL, `{{{url}}}` can.
                let shape = neutral(&uri, &key, &cols, "x:x").unwrap_or_else(|| h.value.clone());
                uris = crate::compose::message::unsubscribe_uris(&bracketed(&shape))
                    .map_err(|m| template.error(h.line, m, false))?
                    .len();
            }
            headers.push(HeaderTemplate {
                name: h.name.clone(),
                key,
                columns: cols,
                literal,
                uris,
            });
        }
        let used = vars.into_iter().map(|v| v.name).collect();
        let files = crate::compose::attach::Plan::compile(&template, &html_template, attach)?;
        let mut hash = xxhash_rust::xxh3::xxh3_128(template.source.as_bytes());
        // A changed shared file is a changed letter (as a changed include).
        if files.shared().next().is_some() {
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            h.update(&hash.to_le_bytes());
            files.shared().for_each(|f| h.update(&f.sha256));
            hash = h.digest128();
        }
        Ok(Variant {
            template,
            body,
            lang,
            direction,
            include_root,
            html,
            html_pieces,
            plain,
            text,
            text_pieces,
            uri,
            html_template,
            text_template,
            headers,
            used,
            hash,
            csv: csv.to_string(),
            limits: Limits::default(),
            files,
            fonts,
        })
    }

    /// The letter's language: the variant's tag, or the template's
    /// `<mjml lang>`.
    pub fn lang(&self) -> Option<&Tag> {
        self.lang.as_ref()
    }

    /// The letter's base direction.
    pub fn direction(&self) -> bidi::Direction {
        self.direction
    }

    /// The campaign with other size limits than the defaults.
    pub fn limited(self, limits: Limits) -> Variant {
        Variant { limits, ..self }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The campaign's attachments and inline images.
    pub fn files(&self) -> &crate::compose::attach::Plan {
        &self.files
    }

    /// The recipients file's name, as used in problems.
    pub fn csv_name(&self) -> &str {
        &self.csv
    }

    pub fn template(&self) -> &TemplateFile {
        &self.template
    }

    /// A hash of the template files: changes when the letter changes.
    pub fn hash(&self) -> u128 {
        self.hash
    }

    /// The HTML template (MJML rendered, placeholders left in).
    pub fn html_template(&self) -> &str {
        &self.html_template
    }

    /// The text template (generated from the HTML, or the `.txt` sibling).
    pub fn text_template(&self) -> &str {
        &self.text_template
    }

    /// The columns the template never uses.
    pub fn unused_columns<'a>(&self, columns: &'a Columns) -> Vec<&'a str> {
        columns
            .names()
            .iter()
            .filter(|c| !self.used.contains(c.as_str()))
            .map(String::as_str)
            .collect()
    }

    /// Merges one recipient. A problem with this row (a bad address, a line
    /// break in a header value) is returned, not raised: the run goes on.
    pub fn render(&self, r: &Recipient) -> std::result::Result<Letter, Problem> {
        let problem = |column: Option<&str>, message: String| self.problem(r, column, message);
        // One context for every render of this letter: `render(name, &json)`
        // would copy the fields for each header and part.
        let ctx = Context::from(r.to_json());
        let mut from = None;
        let mut to = None;
        let mut reply_to = None;
        let mut return_path = None;
        let mut subject = String::new();
        let mut list_unsubscribe = None;
        let mut list_id = None;
        let mut extra = Vec::new();
        let mut warnings = Vec::new();
        for h in &self.headers {
            let value = self.header_value(r, &ctx, h)?;
            let name = &h.name;
            match name.as_str() {
                "From" | "To" | "Reply-To" => {
                    let m = self.mailbox(r, h, &value)?;
                    match name.as_str() {
                        "From" => from = Some(m),
                        "To" => to = Some(m),
                        _ => reply_to = Some(m),
                    }
                }
                "Return-Path" => {
                    let bare = value.trim().trim_start_matches('<').trim_end_matches('>');
                    crate::compose::message::validate_address(bare).map_err(|m| {
                        problem(
                            None,
                            format!("Return-Path `{value}` is not an address: {m}"),
                        )
                    })?;
                    return_path = Some(bare.to_string());
                }
                "Subject" => {
                    if value.is_empty() {
                        warnings.push(
                            problem(None, "the subject is empty".into())
                                .with_severity(Severity::Warning),
                        );
                    }
                    subject = value;
                }
                "List-Unsubscribe" => {
                    let v = self.unsubscribe(r, h, &value)?;
                    if !v.contains("<https://") && !v.contains("<mailto:") {
                        warnings.push(problem(None, "List-Unsubscribe has no https or mailto URL; one-click unsubscribe (RFC 8058) needs https".into()).with_severity(Severity::Warning));
                    }
                    list_unsubscribe = Some(v);
                }
                "List-Id" => {
                    let l = ListId::parse(&value)
                        .map_err(|m| problem(None, format!("List-Id: {m}")))?;
                    list_id = Some(l);
                }
                _ => extra.push((name.clone(), value)),
            }
        }
        let html = self
            .merge_html(&ctx)
            .map_err(|e| problem(None, format!("cannot render the HTML: {e}")))?;
        let text = self
            .merge_text(&ctx)
            .map_err(|e| problem(None, format!("cannot render the text: {e}")))?;
        if html.len() > HTML_WARN_BYTES {
            warnings.push(
                problem(
                    None,
                    format!(
                        "the HTML is {} KB; Gmail clips messages near 102 KB",
                        html.len() / 1024
                    ),
                )
                .with_severity(Severity::Warning),
            );
        }
        let fingerprint = self.fingerprint(r);
        Ok(Letter {
            row: r.row,
            line: r.line,
            parts: Parts {
                from: from.expect("From is required by TemplateFile::parse"),
                to: to.expect("To defaults to {{email}} in TemplateFile::parse"),
                reply_to,
                return_path,
                subject,
                list_unsubscribe,
                list_id,
                extra,
                text,
                html,
            },
            fingerprint,
            warnings,
            files: Vec::new(),
            lang: self.lang.clone(),
            fallback: None,
        })
    }

    /// The HTML part for one recipient's fields (a context made from
    /// [`Recipient::to_json`]).
    pub fn merge_html(
        &self,
        ctx: &Context,
    ) -> std::result::Result<String, handlebars::RenderError> {
        self.html_pieces.render(&self.html, ctx)
    }

    /// The text part for one recipient's fields, wrapped.
    pub fn merge_text(
        &self,
        ctx: &Context,
    ) -> std::result::Result<String, handlebars::RenderError> {
        Ok(text::wrap_in(
            &self.text_pieces.render(&self.text, ctx)?,
            self.direction,
        ))
    }

    /// The recipient's fields hashed with the campaign (see
    /// [`Letter::fingerprint`]).
    pub fn fingerprint(&self, r: &Recipient) -> u128 {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(&self.hash.to_le_bytes());
        for f in &r.fields {
            h.update(&(f.len() as u64).to_le_bytes());
            h.update(f.as_bytes());
        }
        h.digest128()
    }

    /// Only the `To` mailbox of a recipient, with the checks [`Variant::render`]
    /// makes on it: what `send` needs to plan, at a fraction of the cost of
    /// a whole letter. Other problems of the row show when it is rendered.
    pub fn recipient(&self, r: &Recipient) -> std::result::Result<Mailbox, Problem> {
        let problem = |column: Option<&str>, message: String| self.problem(r, column, message);
        let Some(h) = self.headers.iter().find(|h| h.name == "To") else {
            return Err(problem(None, "the template has no To header".into()));
        };
        let ctx = Context::from(r.to_json());
        let value = self.header_value(r, &ctx, h)?;
        self.mailbox(r, h, &value)
    }

    /// A problem with row `r`, in the recipients file.
    fn problem(&self, r: &Recipient, column: Option<&str>, message: String) -> Problem {
        let p = Problem::new(Severity::Error, self.csv.clone(), message)
            .at_line(r.line)
            .at_row(r.row);
        match column {
            Some(c) => p.in_column(c),
            None => p,
        }
    }

    /// One header's value for `r`: merged (or the literal), trimmed, and
    /// refused when a value would put a line break into it.
    fn header_value(
        &self,
        r: &Recipient,
        ctx: &Context,
        h: &HeaderTemplate,
    ) -> std::result::Result<String, Problem> {
        let name = &h.name;
        // A line break in a header value is an injection attempt or a paste
        // accident; lettre would panic on it (DESIGN.md 4).
        if let Some(col) = h
            .columns
            .iter()
            .find(|c| r.get(c).is_some_and(|v| v.contains(['\r', '\n', '\0'])))
        {
            return Err(self.problem(
                r,
                Some(col),
                format!(
                    "holds a line break or NUL, which would go into the {name} header; remove it"
                ),
            ));
        }
        let registry = if name == "List-Unsubscribe" {
            &self.uri
        } else {
            &self.plain
        };
        let value = match &h.literal {
            Some(v) => v.clone(),
            None => registry
                .render_with_context(&h.key, ctx)
                .map_err(|e| {
                    self.problem(r, None, format!("cannot render the {name} header: {e}"))
                })?
                .trim()
                .to_string(),
        };
        if value.contains(['\r', '\n', '\0']) {
            return Err(self.problem(
                r,
                None,
                format!("the {name} header would hold a line break; remove it"),
            ));
        }
        Ok(value)
    }

    /// The `List-Unsubscribe` value for `r`, `<…>` brackets included.
    ///
    /// A `{{column}}` in this header is percent-encoded (RFC 3986: all but
    /// the unreserved characters), so a value such as
    /// `c15>, <mailto:evil@example.org` stays inside its URI as
    /// `c15%3E%2C%20%3Cmailto%3Aevil%40example.org`; so a whole URL cannot
    /// come from `{{column}}`, and a template where it would (the URL has no
    /// scheme of its own) is refused by [`Variant::compile_in`].
    /// `{{{column}}}` merges the value raw, for a column that holds a whole
    /// URL; such a value is
    /// checked instead: the result must be `<uri>`s separated by commas,
    /// each without space, quote, `<`, `>`, control or non-ASCII character,
    /// and as many of them as the template writes. Otherwise the row is
    /// refused, naming the column at fault.
    fn unsubscribe(
        &self,
        r: &Recipient,
        h: &HeaderTemplate,
        value: &str,
    ) -> std::result::Result<String, Problem> {
        let value = bracketed(value);
        let culprit = || {
            h.columns
                .iter()
                .find(|c| {
                    r.get(c).is_some_and(|v| {
                        v.chars()
                            .any(|ch| !ch.is_ascii_graphic() || matches!(ch, '"' | '<' | '>' | ','))
                    })
                })
                .or(h.columns.iter().next())
                .map(String::as_str)
        };
        let uris = crate::compose::message::unsubscribe_uris(&value)
            .map_err(|m| self.problem(r, culprit(), m))?;
        if uris.len() != h.uris {
            return Err(self.problem(
                r,
                culprit(),
                format!(
                    "would make List-Unsubscribe hold {} URLs where the template writes {}; \
                     a value merged with `{{{{{{…}}}}}}` must be one URL",
                    uris.len(),
                    h.uris
                ),
            ));
        }
        Ok(value)
    }

    /// Parses an address header's value, naming on failure the column that
    /// holds the address: the one whose value stands in the angle brackets.
    fn mailbox(
        &self,
        r: &Recipient,
        h: &HeaderTemplate,
        value: &str,
    ) -> std::result::Result<Mailbox, Problem> {
        Mailbox::parse(value).map_err(|e| {
            let cols = &h.columns;
            let column = cols
                .iter()
                .find(|c| {
                    r.get(c)
                        .is_some_and(|v| value == v || value.ends_with(&format!("<{v}>")))
                })
                .or(cols.iter().next());
            self.problem(r, column.map(String::as_str), format!("{}: {e}", h.name))
        })
    }

    /// The safety net of DESIGN.md section 3: renders `r` the slow way (Handlebars on
    /// the MJML, then MJML) and compares with the fast way, after decoding
    /// entities. A difference means a placeholder sits where MJML lays out.
    pub fn verify(&self, r: &Recipient) -> Result<()> {
        let ctx = r.to_json();
        let Ok(fast) = self
            .html_pieces
            .render(&self.html, &Context::from(ctx.clone()))
        else {
            return Ok(()); // reported by render()
        };
        let merged_mjml = pieces::render_once(&self.body, &ctx).map_err(|e| {
            self.template.error(
                self.template.body_line,
                format!("Handlebars error: {e}"),
                false,
            )
        })?;
        let slow = match render_mjml(
            &merged_mjml,
            self.include_root.as_deref(),
            Some(&ctx),
            self.fonts,
        ) {
            Ok(s) => s,
            Err((_, m)) => {
                return Err(Error::MergeMismatch {
                    path: self.template.path.clone(),
                    row: r.row,
                    detail: format!("the merged MJML does not parse: {m}"),
                })
            }
        };
        // The slow way never had the `<bdi>`s isolate_html adds.
        let (a, b) = (
            decode_entities(&bidi::strip_bdi(&fast)),
            decode_entities(&bidi::strip_bdi(&slow)),
        );
        if a != b {
            let at = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
            let near = |s: &str| {
                s.get(at.saturating_sub(30)..(at + 30).min(s.len()))
                    .unwrap_or("")
                    .to_string()
            };
            return Err(Error::MergeMismatch {
                path: self.template.path.clone(),
                row: r.row,
                detail: format!("once: `{}`, per recipient: `{}`", near(&a), near(&b)),
            });
        }
        Ok(())
    }
}

/// A `List-Unsubscribe` value with its brackets: a template may write the
/// URL bare.
fn bracketed(value: &str) -> String {
    if value.trim_start().starts_with('<') {
        value.to_string()
    } else {
        format!("<{}>", value.trim())
    }
}

/// Header template `key` of `registry` rendered with every column it uses
/// set to `filler`: what the template itself writes, with values that add
/// no punctuation of their own. `None` when it does not render so (names
/// inside `{{#each}}`).
fn neutral(
    registry: &Handlebars,
    key: &str,
    columns: &BTreeSet<String>,
    filler: &str,
) -> Option<String> {
    let fields: serde_json::Map<String, serde_json::Value> = columns
        .iter()
        .map(|c| (c.clone(), serde_json::Value::String(filler.into())))
        .collect();
    registry.render(key, &fields).ok()
}

/// Every `{{…}}` (or `{{{…}}}`) in `source`, with its 1-based line.
fn placeholders(source: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut rest = source;
    // Lines are counted from the last placeholder, not from the start: a
    // template with thousands of them must not take quadratic time.
    let mut line = 1;
    while let Some(start) = rest.find("{{") {
        let triple = rest[start..].starts_with("{{{");
        let close = if triple { "}}}" } else { "}}" };
        let Some(len) = rest[start..].find(close) else {
            break;
        };
        let end = start + len + close.len();
        line += rest[..start].matches('\n').count();
        out.push((line, &rest[start..end]));
        line += rest[start..end].matches('\n').count();
        rest = &rest[end..];
    }
    out
}

/// `&#xHEX;` decoded: Handlebars writes `&#x27;`, `&#x60;` and `&#x3D;`,
/// [`fidelity::prepare`] such references for what mrml would mis-escape.
fn decode_hex_references(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(p) = rest.find("&#x") {
        out.push_str(&rest[..p]);
        let tail = &rest[p + 3..];
        let decoded = tail.find(';').filter(|&e| e <= 6).and_then(|e| {
            let c = char::from_u32(u32::from_str_radix(&tail[..e], 16).ok()?)?;
            Some((c, e))
        });
        match decoded {
            Some((c, e)) => {
                out.push(c);
                rest = &tail[e + 1..];
            }
            None => {
                out.push_str("&#x");
                rest = tail;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Decodes the entities Handlebars and mrml write, for comparing two HTML
/// renderings.
fn decode_entities(s: &str) -> String {
    decode_hex_references(s)
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::recipients::Recipients;
    use std::path::Path;

    const TEMPLATE: &str = "From: Sender <s@example.org>\nTo: {{name}} <{{email}}>\nSubject: Hi {{name}}\nX-Tag: fixed\n\n<mjml><mj-body><mj-section><mj-column>\n<mj-text>Dear {{name}}, <a href=\"https://x.org/?e={{email}}\">link</a></mj-text>\n</mj-column></mj-section></mj-body></mjml>\n";

    fn setup(template: &str, csv: &str) -> (Result<Variant>, Vec<Recipient>) {
        let t = TemplateFile::parse(Path::new("t.mjml"), template, None).unwrap();
        let mut r = Recipients::from_reader(
            "r.csv".into(),
            Box::new(std::io::Cursor::new(csv.as_bytes().to_vec())),
            None,
        )
        .unwrap();
        let columns = r.columns().clone();
        let mut rows = Vec::new();
        while let Some(row) = r.next_row().unwrap() {
            rows.push(row.unwrap());
        }
        (Variant::compile(t, &columns, "r.csv"), rows)
    }

    #[test]
    fn escapes_html_but_not_text_or_headers() {
        let (c, rows) = setup(TEMPLATE, "email,name\na@example.org,\"A&B <i>\"\n");
        let letter = c.unwrap().render(&rows[0]).unwrap();
        assert!(letter
            .parts
            .html
            .contains("Dear <bdi>A&amp;B &lt;i&gt;</bdi>,"));
        assert!(letter.parts.text.contains("Dear A&B <i>,"));
        assert!(letter
            .parts
            .text
            .contains("link <https://x.org/?e=a@example.org>"));
        assert_eq!(letter.parts.subject, "Hi A&B <i>");
        assert_eq!(letter.parts.to.name.as_deref(), Some("A&B <i>"));
        assert_eq!(
            letter.parts.extra,
            vec![("X-Tag".to_string(), "fixed".to_string())]
        );
    }

    /// A template whose mj-text holds `n` lines `{{name}} <i>` with, from
    /// line `from`, a `{{#if vip}}` block over a few thousand of them.
    fn long_template(n: usize, from: usize) -> String {
        let lines: Vec<String> = (0..n)
            .map(|i| match i {
                _ if i == from => format!("{{{{#if vip}}}}{{{{name}}}} {i}<br>"),
                _ if i == from + 3000 => format!("{{{{name}}}} {i}{{{{/if}}}}<br>"),
                _ => format!("{{{{name}}}} {i}<br>"),
            })
            .collect();
        TEMPLATE.replace("Dear {{name}}", &lines.join("\n"))
    }

    #[test]
    fn ten_thousand_placeholders_compile_in_linear_time_and_all_render() {
        let template = long_template(10_000, 200);
        let start = std::time::Instant::now();
        let (c, rows) = setup(&template, "email,name,vip\na@x.org,Ann,\nb@x.org,Bob,1\n");
        let c = c.unwrap();
        let took = start.elapsed();
        // One piece took 3 minutes in a release build.
        let limit = if cfg!(debug_assertions) { 20.0 } else { 1.0 };
        assert!(took.as_secs_f64() < limit, "compiling took {took:?}");
        assert!(c.html_pieces.len() > 1 && c.text_pieces.len() > 1);
        let ann = c.render(&rows[0]).unwrap().parts;
        let bob = c.render(&rows[1]).unwrap().parts;
        assert_eq!(ann.html.matches("<bdi>Ann</bdi> ").count(), 10_000 - 3001);
        assert_eq!(bob.html.matches("<bdi>Bob</bdi> ").count(), 10_000);
        for i in [0, 199, 3201, 9999] {
            assert!(
                ann.html.contains(&format!("<bdi>Ann</bdi> {i}<br")),
                "line {i}"
            );
            assert!(ann.text.contains(&format!("Ann {i}")), "line {i}");
        }
        assert!(!ann.html.contains("Ann 200<") && !ann.text.contains("Ann 3200"));
        assert!(bob.text.contains("Bob 3200") && bob.text.contains("Bob 9999"));
        c.verify(&rows[1]).unwrap();
    }

    #[test]
    fn the_example_letter_stays_one_piece() {
        // Without its calendar files, which lie beside the real template.
        let template: String = include_str!("../../templates/weremember.mjml")
            .split_inclusive('\n')
            .filter(|l| !l.starts_with("Attachment:"))
            .collect();
        let (c, _) = setup(
            &template,
            "email,salutation,first_name,last_name,community,contact_id\n",
        );
        let c = c.unwrap();
        // So its per-letter cost is one render of one template.
        assert_eq!((c.html_pieces.len(), c.text_pieces.len()), (1, 1));
    }

    #[test]
    fn an_error_late_in_a_long_template_names_its_line() {
        let template =
            long_template(10_000, 200).replace("{{name}} 9000<br>", "{{#if vip}}{{/each}}");
        let (c, _) = setup(&template, "email,name,vip\n");
        let e = c.unwrap_err().to_string();
        // The body starts on line 6, so line 0 of the mj-text is line 7.
        assert!(e.starts_with("t.mjml:9007: Handlebars syntax error"), "{e}");
    }

    #[test]
    fn missing_columns_are_named_with_their_line() {
        let (c, _) = setup(TEMPLATE, "email\na@example.org\n");
        let e = c.unwrap_err().to_string();
        assert!(e.starts_with("t.mjml:2: the template uses `name`"), "{e}");
    }

    #[test]
    fn line_breaks_and_nul_in_header_values_reject_the_row() {
        let (c, rows) = setup(
            TEMPLATE,
            "email,name\na@example.org,\"x\ny\"\nb@example.org,\"x\0y\"\n",
        );
        let c = c.unwrap();
        for r in &rows {
            let p = c.render(r).unwrap_err();
            assert_eq!(p.column.as_deref(), Some("name"));
            assert!(p.message.contains("line break or NUL"), "{}", p.message);
        }
    }

    #[test]
    fn the_fingerprint_follows_the_fields() {
        let (c, rows) = setup(
            TEMPLATE,
            "email,name\na@example.org,Ann\na@example.org,Ann\na@example.org,Anne\n",
        );
        let c = c.unwrap();
        let f: Vec<u128> = rows
            .iter()
            .map(|r| c.render(r).unwrap().fingerprint)
            .collect();
        assert_eq!(f[0], f[1]);
        assert_ne!(f[0], f[2]);
    }

    #[test]
    fn a_placeholder_mjml_drops_is_a_template_error_with_its_line() {
        let template = TEMPLATE.replace("<mj-column>", "<mj-column width=\"{{w}}\">");
        let (c, _) = setup(&template, "email,name,w\na@example.org,Ann,30%\n");
        let e = c.unwrap_err().to_string();
        assert!(
            e.starts_with("t.mjml:6: MJML dropped or moved `{{w}}`"),
            "{e}"
        );
    }

    #[test]
    fn the_safety_net_compares_both_ways_of_rendering() {
        let (c, rows) = setup(TEMPLATE, "email,name\na@example.org,A&B \"q\" 'x'\n");
        c.unwrap().verify(&rows[0]).unwrap();
        // A raw value that changes the MJML's structure renders differently
        // per recipient: the run must not start.
        let template = TEMPLATE.replace("Dear {{name}}", "Dear {{{name}}}");
        let (c, rows) = setup(
            &template,
            "email,name\na@example.org,</mj-text></mj-column>\n",
        );
        let e = c.unwrap().verify(&rows[0]).unwrap_err().to_string();
        assert!(
            e.contains("renders differently when MJML is rendered once"),
            "{e}"
        );
    }

    #[test]
    fn list_unsubscribe_values_are_percent_encoded_and_stay_one_url() {
        let template = TEMPLATE.replace(
            "X-Tag: fixed\n",
            "List-Unsubscribe: <https://example.org/u?c={{cid}}>\n",
        );
        let (c, rows) = setup(
            &template,
            "email,name,cid\na@example.org,Ann,\"c15>, <mailto:evil@attacker.example\"\n",
        );
        let letter = c.unwrap().render(&rows[0]).unwrap();
        assert_eq!(
            letter.parts.list_unsubscribe.as_deref(),
            Some("<https://example.org/u?c=c15%3E%2C%20%3Cmailto%3Aevil%40attacker.example>")
        );
    }

    #[test]
    fn a_raw_list_unsubscribe_value_must_be_one_clean_url() {
        let template = TEMPLATE.replace("X-Tag: fixed\n", "List-Unsubscribe: {{{url}}}\n");
        let (c, rows) = setup(
            &template,
            "email,name,url\n\
             a@example.org,Ann,https://example.org/u?c=1\n\
             b@example.org,Bob,\"https://example.org/u>, <mailto:evil@attacker.example\"\n\
             c@example.org,Cy,https://example.org/u?c=a b\n",
        );
        let c = c.unwrap();
        let ok = c.render(&rows[0]).unwrap();
        assert_eq!(
            ok.parts.list_unsubscribe.as_deref(),
            Some("<https://example.org/u?c=1>")
        );
        for r in &rows[1..] {
            let p = c.render(r).unwrap_err();
            assert_eq!(p.column.as_deref(), Some("url"), "{}", p.message);
        }
        assert!(c.render(&rows[1]).unwrap_err().message.contains("2 URLs"));
        assert!(c.render(&rows[2]).unwrap_err().message.contains("a space"));
        // A whole URL in `{{…}}` would be percent-encoded out of shape:
        // the template is refused rather than every link sent broken.
        let template = TEMPLATE.replace("X-Tag: fixed\n", "List-Unsubscribe: {{url}}\n");
        let (c, _) = setup(
            &template,
            "email,name,url\na@example.org,Ann,https://example.org/u?c=1\n",
        );
        let e = c.unwrap_err().to_string();
        assert!(e.starts_with("t.mjml:4: "), "{e}");
        assert!(e.contains("{{{column}}}"), "{e}");
    }

    #[test]
    fn list_id_comes_from_the_template_and_is_checked() {
        let template = TEMPLATE.replace(
            "X-Tag: fixed\n",
            "List-Id: {{list}} <appeals.example.org>\n",
        );
        let (c, rows) = setup(
            &template,
            "email,name,cid,url,list\na@x.org,A,1,u,WJC Appeals\nb@x.org,B,2,u,W<JC>\n",
        );
        let c = c.unwrap();
        let l = c.render(&rows[0]).unwrap().parts.list_id.unwrap();
        assert_eq!(
            (l.description.as_str(), l.id.as_str()),
            ("WJC Appeals", "appeals.example.org")
        );
        let e = c.render(&rows[1]).unwrap_err();
        assert!(
            e.message
                .starts_with("List-Id: `W<JC> <appeals.example.org>` is not"),
            "{e:?}"
        );
        let literal = TEMPLATE.replace("X-Tag: fixed\n", "List-Id: Appeals <appeals>\n");
        let e = setup(&literal, "email,name,cid,url\na@x.org,A,1,u\n")
            .0
            .unwrap_err();
        assert!(
            e.to_string()
                .contains(": List-Id: the List-Id `<appeals>` must be a name under a domain"),
            "{e}"
        );
    }

    #[test]
    fn a_malformed_literal_list_unsubscribe_is_a_template_error() {
        let template = TEMPLATE.replace(
            "X-Tag: fixed\n",
            "List-Unsubscribe: <https://example.org/u?c=a b>\n",
        );
        let (c, _) = setup(&template, "email,name\na@example.org,Ann\n");
        let e = c.unwrap_err().to_string();
        assert!(e.starts_with("t.mjml:4: "), "{e}");
    }

    #[test]
    fn a_mailbox_header_with_two_addresses_is_a_template_error() {
        for (from, line) in [
            ("From: A <a@example.org>, B <b@example.org>", 1),
            ("From: a@example.org, b@example.org", 1),
            ("From: {{name}} <{{email}}>, B <b@example.org>", 1),
            ("Reply-To: A <a@example.org>, B <b@example.org>", 2),
        ] {
            let template = if from.starts_with("From") {
                TEMPLATE.replace("From: Sender <s@example.org>", from)
            } else {
                TEMPLATE.replace("To: ", &format!("{from}\nTo: "))
            };
            let (c, _) = setup(&template, "email,name\na@example.org,Ann\n");
            let e = c.unwrap_err().to_string();
            assert!(e.starts_with(&format!("t.mjml:{line}: ")), "{from}: {e}");
            assert!(e.contains("2 addresses"), "{from}: {e}");
        }
        let template = TEMPLATE.replace(
            "From: Sender <s@example.org>",
            "From: {{name}} <s@example.org>",
        );
        let (c, rows) = setup(
            &template,
            "email,name\na@example.org,\"Lee, Ann <x@y.org>\"\n",
        );
        let letter = c.unwrap().render(&rows[0]).unwrap();
        assert_eq!(
            letter.parts.from.name.as_deref(),
            Some("Lee, Ann <x@y.org>")
        );
        let template = TEMPLATE.replace(
            "From: Sender <s@example.org>",
            "From: \"Lee, Ann\" <s@example.org>",
        );
        let (c, rows) = setup(&template, "email,name\na@example.org,\"Lee, Ann\"\n");
        let letter = c.unwrap().render(&rows[0]).unwrap();
        assert_eq!(letter.parts.from.name.as_deref(), Some("Lee, Ann"));
        assert_eq!(letter.parts.to.name.as_deref(), Some("Lee, Ann"));
    }

    #[test]
    fn a_double_quote_inside_an_attribute_placeholder_is_a_template_error() {
        let template = TEMPLATE.replace(
            "?e={{email}}",
            "?e={{#if email}}{{email}}{{else}}\"none\"{{/if}}",
        );
        let (c, _) = setup(&template, "email,name\na@example.org,Ann\n");
        let e = c.unwrap_err().to_string();
        assert!(e.contains("single quotes"), "{e}");
    }

    #[test]
    fn both_renders_read_includes_from_the_canonical_template_folder() {
        let cwd = std::env::current_dir().unwrap().canonicalize().unwrap();
        assert_eq!(include_root(Path::new("t.mjml")), Some(cwd.clone()));
        assert_eq!(
            include_root(Path::new("./src/t.mjml")),
            Some(cwd.join("src"))
        );

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("part.mjml"),
            "<mj-section><mj-column><mj-text>Hi {{name}}</mj-text></mj-column></mj-section>",
        )
        .unwrap();
        let template = TEMPLATE.replace(
            "</mj-body>",
            "<mj-include path=\"./part.mjml\" /></mj-body>",
        );
        let path = dir.path().join("t.mjml");
        std::fs::write(&path, template).unwrap();
        let (_, rows) = setup(TEMPLATE, "email,name\na@example.org,Ann\n");
        let r = Recipients::from_reader(
            "r.csv".into(),
            Box::new(std::io::Cursor::new(b"email,name\n".to_vec())),
            None,
        )
        .unwrap();
        let c = Variant::compile(TemplateFile::load(&path).unwrap(), r.columns(), "r.csv").unwrap();
        assert!(c.html_template().contains("Hi {{name}}"));
        c.verify(&rows[0]).unwrap();
        assert!(c
            .render(&rows[0])
            .unwrap()
            .parts
            .html
            .contains("Hi <bdi>Ann</bdi>"));
    }

    #[test]
    fn a_changed_included_file_changes_the_campaign_hash() {
        let r = Recipients::from_reader(
            "r.csv".into(),
            Box::new(std::io::Cursor::new(b"email,name\n".to_vec())),
            None,
        )
        .unwrap();
        let hash = |dir: &Path, part: &str| {
            let template = TEMPLATE.replace(
                "</mj-body>",
                "<mj-include path=\"./part.mjml\" /></mj-body>",
            );
            let path = dir.join("t.mjml");
            std::fs::write(&path, template).unwrap();
            std::fs::write(
                dir.join("part.mjml"),
                format!(
                    "<mj-section><mj-column><mj-text>{part}</mj-text></mj-column></mj-section>"
                ),
            )
            .unwrap();
            Variant::compile(TemplateFile::load(&path).unwrap(), r.columns(), "r.csv")
                .unwrap()
                .hash()
        };
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        // Not where the folder lies: the hash seeds deterministic stamps.
        assert_eq!(hash(a.path(), "one"), hash(b.path(), "one"));
        assert_ne!(hash(a.path(), "one"), hash(a.path(), "two"));
    }
}
