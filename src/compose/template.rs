//! The template file: a block of `Name: value` header lines, one blank line,
//! then the MJML body (DESIGN.md section 2). This module splits the file and
//! finds the Handlebars variables each part uses, with their lines; it does
//! no rendering.

use std::path::{Path, PathBuf};

use handlebars::template::{HelperTemplate, Parameter, Template, TemplateElement};
use handlebars::Path as HbPath;

use crate::error::{Error, Result};

/// Headers a template may set. Date, Message-ID, MIME-Version and the
/// Content-* headers are letterpress's to write; Cc and Bcc would add
/// recipients that the journal and `check` would not see.
pub const ALLOWED_HEADERS: &[&str] = &[
    "From",
    "To",
    "Reply-To",
    "Subject",
    "List-Unsubscribe",
    "List-Id",
    // Not written into the letter: the envelope sender (MAIL FROM), where
    // bounces go; a template (`bounces+{{id}}@…`, VERP) names the contact.
    "Return-Path",
];

/// The header line that names a file to attach (see
/// [`crate::compose::attach`]): not a header of the message, and the one
/// name a template may give on several lines.
pub const ATTACHMENT: &str = "Attachment";

/// The helpers `Handlebars::new()` registers (handlebars 6, without the
/// `string_helpers` feature); letterpress registers none of its own. Any
/// other name called with arguments fails every row alike, so it is a
/// template error, found before the first row.
pub const HELPERS: &[&str] = &[
    "if", "unless", "each", "with", "lookup", "raw", "log", "eq", "ne", "gt", "gte", "lt", "lte",
    "and", "or", "not", "len",
];

/// One header line of the template, its value still a Handlebars template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderLine {
    /// Canonical spelling (`Reply-To`, `X-Campaign`).
    pub name: String,
    pub value: String,
    /// 1-based line in the template file.
    pub line: usize,
}

/// A template file split into its parts.
#[derive(Debug, Clone)]
pub struct TemplateFile {
    pub path: PathBuf,
    pub headers: Vec<HeaderLine>,
    pub body: String,
    /// The line of the file on which the body starts.
    pub body_line: usize,
    /// The optional sibling `NAME.txt` that replaces the generated text part.
    pub text: Option<String>,
    /// The files the body includes, as [`included_files`] finds them, read
    /// when the template was loaded (none for [`TemplateFile::parse`]).
    pub includes: Vec<Included>,
    /// The raw bytes of both files and of the included ones, hashed for
    /// deterministic stamps and for the send journal: a changed footer is a
    /// changed letter.
    pub source: String,
}

/// A file the template includes, as read when the template was loaded.
#[derive(Debug, Clone)]
pub struct Included {
    pub path: PathBuf,
    pub text: String,
}

/// A variable a template uses, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    pub name: String,
    /// 1-based line in the file named by `in_text_file` or the template.
    pub line: usize,
    pub in_text_file: bool,
    /// The included file it is in (its line is that file's), if any.
    pub included: Option<PathBuf>,
}

/// A campaign's templates as read from disk: the one named on the command
/// line, and its language variants beside it (`letter.he.mjml`,
/// `letter.pt-BR.mjml` for `letter.mjml`, each with its optional `.txt`:
/// `letter.he.txt`), sorted by tag.
#[derive(Debug, Clone)]
pub struct Templates {
    pub default: TemplateFile,
    pub variants: Vec<(crate::compose::lang::Tag, TemplateFile)>,
}

impl Templates {
    /// Reads `path` and every variant beside it.
    pub fn load(path: &Path) -> Result<Templates> {
        let default = TemplateFile::load(path)?;
        let mut variants = Vec::new();
        for (tag, path) in variant_files(path)? {
            variants.push((tag, TemplateFile::load(&path)?));
        }
        Ok(Templates { default, variants })
    }

    /// The default template alone, as when no variant lies beside it.
    pub fn one(default: TemplateFile) -> Templates {
        Templates {
            default,
            variants: Vec::new(),
        }
    }
}

/// The language variants of the template at `path`, by tag: the files of
/// its folder named as [`crate::compose::lang::variant_tag`] says.
pub fn variant_files(path: &Path) -> Result<Vec<(crate::compose::lang::Tag, PathBuf)>> {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(Vec::new());
    };
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let entries = std::fs::read_dir(&folder).map_err(|source| Error::Read {
        path: folder.clone(),
        source,
    })?;
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(tag) = file
            .to_str()
            .and_then(|f| crate::compose::lang::variant_tag(name, f))
        else {
            continue;
        };
        if entry.path().is_file() {
            out.push((tag, path.with_file_name(&file)));
        }
    }
    out.sort();
    // `letter.HE.mjml` and `letter.he.mjml` name one language twice.
    if let Some(w) = out.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(Error::Template {
            path: w[1].1.clone(),
            line: 1,
            message: format!(
                "{} and {} are variants of the same language {}; keep one",
                w[0].1.display(),
                w[1].1.display(),
                w[0].0
            ),
        });
    }
    Ok(out)
}

impl TemplateFile {
    /// Reads `path` and its optional sibling `.txt`.
    pub fn load(path: &Path) -> Result<Self> {
        let source = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.into(),
            source,
        })?;
        let text_path = path.with_extension("txt");
        let text = if text_path != path && text_path.is_file() {
            Some(
                std::fs::read_to_string(&text_path).map_err(|source| Error::Read {
                    path: text_path.clone(),
                    source,
                })?,
            )
        } else {
            None
        };
        let mut template = Self::parse(path, &source, text)?;
        let root = include_root(path);
        for path in included_files(path) {
            // One that cannot be read is the renders' to report, naming it.
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            check_nesting(&text).map_err(|(line, message)| Error::Template {
                path: path.clone(),
                line,
                message,
            })?;
            template.source.push('\0');
            // Relative, so that the hash, the seed of deterministic
            // stamps, does not depend on where the folder lies.
            let name = root
                .as_deref()
                .and_then(|r| path.strip_prefix(r).ok())
                .unwrap_or(&path);
            template.source.push_str(&name.display().to_string());
            template.source.push('\0');
            template.source.push_str(&text);
            template.includes.push(Included { path, text });
        }
        Ok(template)
    }

    /// Splits template text into headers and body.
    pub fn parse(path: &Path, source: &str, text: Option<String>) -> Result<Self> {
        let fail = |line: usize, message: String| Error::Template {
            path: path.into(),
            line,
            message,
        };
        let source_nobom = source.strip_prefix('\u{feff}').unwrap_or(source);
        let mut headers: Vec<HeaderLine> = Vec::new();
        let mut offset = 0;
        let mut line_no = 0;
        let mut body_start = None;
        for raw in source_nobom.split_inclusive('\n') {
            line_no += 1;
            offset += raw.len();
            let line = raw.trim_end_matches(['\n', '\r']);
            if line.trim().is_empty() {
                body_start = Some(offset);
                break;
            }
            if line.starts_with([' ', '\t']) {
                // A folded continuation of the previous header.
                let Some(last) = headers.last_mut() else {
                    return Err(fail(line_no, "the file starts with an indented line; it must start with header lines such as `Subject: ...`".into()));
                };
                last.value.push(' ');
                last.value.push_str(line.trim());
                continue;
            }
            if line_no == 1 && line.trim_start().starts_with('<') {
                return Err(fail(
                    1,
                    "the template starts with MJML, but it needs header lines first \
                     (`From:`, `To:`, `Subject:`), then a blank line, then the MJML"
                        .into(),
                ));
            }
            let Some((name, value)) = line.split_once(':') else {
                return Err(fail(
                    line_no,
                    format!(
                        "`{}` is not a header line (`Name: value`); put one blank line \
                         between the headers and the MJML",
                        truncate(line, 40)
                    ),
                ));
            };
            let name = canonical_header(name.trim()).map_err(|m| fail(line_no, m))?;
            if name != ATTACHMENT && headers.iter().any(|h| h.name.eq_ignore_ascii_case(&name)) {
                return Err(fail(line_no, format!("the `{name}` header is set twice")));
            }
            headers.push(HeaderLine {
                name,
                value: value.trim().to_string(),
                line: line_no,
            });
        }
        let Some(body_start) = body_start else {
            return Err(fail(
                line_no.max(1),
                "no blank line after the headers, so there is no MJML body".into(),
            ));
        };
        for required in ["From", "Subject"] {
            if !headers.iter().any(|h| h.name == required) {
                return Err(fail(
                    1,
                    format!(
                        "the template has no `{required}:` header; add one before the blank line"
                    ),
                ));
            }
        }
        if !headers.iter().any(|h| h.name == "To") {
            headers.push(HeaderLine {
                name: "To".into(),
                value: "{{email}}".into(),
                line: 1,
            });
        }
        let body = source_nobom[body_start..].to_string();
        if body.trim().is_empty() {
            return Err(fail(line_no + 1, "the MJML body is empty".into()));
        }
        for h in &headers {
            check_nesting(&h.value).map_err(|(_, m)| fail(h.line, m))?;
        }
        check_nesting(&body).map_err(|(l, m)| fail(line_no + l, m))?;
        if let Some(t) = &text {
            check_nesting(t).map_err(|(line, message)| Error::Template {
                path: path.with_extension("txt"),
                line,
                message,
            })?;
        }
        let mut all = source.to_string();
        if let Some(t) = &text {
            all.push('\0');
            all.push_str(t);
        }
        Ok(TemplateFile {
            path: path.into(),
            headers,
            body,
            body_line: line_no + 1,
            text,
            includes: Vec::new(),
            source: all,
        })
    }

    pub fn header(&self, name: &str) -> Option<&HeaderLine> {
        self.headers.iter().find(|h| h.name == name)
    }

    /// The path of the sibling text template, for messages.
    pub fn text_path(&self) -> PathBuf {
        self.path.with_extension("txt")
    }

    /// Every variable used by the headers, the body, the text template and
    /// the included files, or the first Handlebars syntax error, with its
    /// line in the file. A call of a helper Handlebars does not have is an
    /// error too.
    pub fn variables(&self) -> Result<Vec<Variable>> {
        let mut out = Vec::new();
        let not_a_helper = |name: &str| {
            format!(
                "the template calls `{name}`, which is not a helper; the helpers are {} \
                 (write `{{{{{name}}}}}` alone for a column named `{name}`)",
                HELPERS.join(", ")
            )
        };
        let unknown = |pieces: &[(usize, Template)], line_offset: usize, in_text_file: bool| {
            match unknown_helper_in(pieces, line_offset) {
                Some((name, line)) => Err(self.error(line, not_a_helper(&name), in_text_file)),
                None => Ok(()),
            }
        };
        for h in &self.headers {
            let t = compile(&h.value).map_err(|(l, m)| self.error(h.line + l - 1, m, false))?;
            unknown(&t, h.line.saturating_sub(1), false)?;
            collect_all(&t, h.line.saturating_sub(1), &mut out);
        }
        let t =
            compile(&self.body).map_err(|(l, m)| self.error(self.body_line + l - 1, m, false))?;
        unknown(&t, self.body_line - 1, false)?;
        collect_all(&t, self.body_line - 1, &mut out);
        if let Some(text) = &self.text {
            let t = compile(text).map_err(|(l, m)| self.error(l, m, true))?;
            unknown(&t, 0, true)?;
            let start = out.len();
            collect_all(&t, 0, &mut out);
            for v in &mut out[start..] {
                v.in_text_file = true;
            }
        }
        for inc in &self.includes {
            let t = compile(&inc.text).map_err(|(line, message)| Error::Template {
                path: inc.path.clone(),
                line,
                message,
            })?;
            if let Some((name, line)) = unknown_helper_in(&t, 0) {
                return Err(Error::Template {
                    path: inc.path.clone(),
                    line,
                    message: not_a_helper(&name),
                });
            }
            let start = out.len();
            collect_all(&t, 0, &mut out);
            for v in &mut out[start..] {
                v.included = Some(inc.path.clone());
            }
        }
        Ok(out)
    }

    /// A template error at `line` of the template (or of its text sibling).
    pub fn error(&self, line: usize, message: String, in_text_file: bool) -> Error {
        Error::Template {
            path: if in_text_file {
                self.text_path()
            } else {
                self.path.clone()
            },
            line,
            message,
        }
    }
}

/// Where `mj-include` may read: the template's folder, canonicalized
/// (mrml's `LocalIncludeLoader` compares canonical paths against its root,
/// so a relative root would refuse every include). `None` when the folder
/// cannot be resolved.
pub fn include_root(template: &Path) -> Option<PathBuf> {
    let folder = match template.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    folder.canonicalize().ok()
}

/// How many files [`included_files`] follows at most: includes of includes
/// could otherwise go round.
const MAX_INCLUDES: usize = 100;

/// The files the template at `path` pulls in with `mj-include`, and the
/// files those pull in, as far as they lie inside the template's folder
/// (the only place the renders read them from). Found by scanning the text
/// for `path` attributes, not by parsing: for watching the files, a file
/// too many does no harm. A file that does not exist yet is listed too.
pub fn included_files(path: &Path) -> Vec<PathBuf> {
    let Some(root) = include_root(path) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = Vec::new();
    let mut pending = vec![path.to_path_buf()];
    while let Some(file) = pending.pop() {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        for target in include_paths(&text) {
            let target = target.trim_start_matches("file:///");
            let joined = root.join(target);
            let resolved = match joined.canonicalize() {
                Ok(p) if p.starts_with(&root) => p,
                Ok(_) => continue,
                // Not there yet: watch where it would be, unless it would be
                // outside the folder.
                Err(_)
                    if Path::new(target).components().all(|c| {
                        matches!(
                            c,
                            std::path::Component::Normal(_) | std::path::Component::CurDir
                        )
                    }) =>
                {
                    joined
                }
                Err(_) => continue,
            };
            if !found.contains(&resolved) && found.len() < MAX_INCLUDES {
                found.push(resolved.clone());
                pending.push(resolved);
            }
        }
    }
    found
}

/// The `path` attribute of every `<mj-include` tag in `mjml`.
fn include_paths(mjml: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for tag in mjml.split("<mj-include").skip(1) {
        let tag = &tag[..tag.find('>').unwrap_or(tag.len())];
        let mut rest = tag;
        while let Some(at) = rest.find("path") {
            let before_ok = at == 0 || rest.as_bytes()[at - 1].is_ascii_whitespace();
            rest = &rest[at + 4..];
            let after = rest.trim_start();
            let Some(value) = after.strip_prefix('=') else {
                continue;
            };
            let value = value.trim_start();
            let Some(quote) = value.chars().next().filter(|c| matches!(c, '"' | '\'')) else {
                continue;
            };
            if let Some(end) = value[1..].find(quote) {
                if before_ok {
                    out.push(&value[1..1 + end]);
                }
                rest = &value[1 + end..];
            }
        }
    }
    out
}

/// The variables one Handlebars snippet uses (lines relative to it).
pub fn variables_in(source: &str) -> std::result::Result<Vec<Variable>, (usize, String)> {
    let t = compile(source)?;
    let mut out = Vec::new();
    collect_all(&t, 0, &mut out);
    Ok(out)
}

/// How deep elements may nest in the MJML (and its included files). mrml,
/// html2text and the browser all recurse once per level; 500 is far beyond
/// any real letter (a deep layout is some 30) and well inside their stacks.
pub const MAX_ELEMENT_DEPTH: usize = 500;

/// How deep `{{#…}}` blocks may nest. Handlebars recurses per block when it
/// compiles and again per recipient when it renders; real letters use 3 or 4.
pub const MAX_BLOCK_DEPTH: usize = 200;

/// What one linear pass over a template found: where nesting first got too
/// deep, and the innermost block still open at the end.
#[derive(Debug, Default)]
struct Nesting {
    too_deep: Option<(usize, String)>,
    unclosed: Option<(usize, String)>,
}

/// Refuses a template nested deeper than [`MAX_ELEMENT_DEPTH`] elements or
/// [`MAX_BLOCK_DEPTH`] blocks, as (line, message), before anything recursive
/// (mrml, Handlebars) sees it: a deep enough input would overflow their
/// stacks and abort the process instead of giving an error.
pub(crate) fn check_nesting(source: &str) -> std::result::Result<(), (usize, String)> {
    match scan_nesting(source).too_deep {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Elements that never have a closing tag in HTML.
const VOID_ELEMENTS: &[&str] = &[
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
    "track", "wbr",
];

/// A cheap approximation of the nesting: counts open and close tags and
/// `{{#…}}`/`{{/…}}` blocks, skipping comments. It only has to be right
/// about depth, not about validity: the parsers judge that.
fn scan_nesting(source: &str) -> Nesting {
    let b = source.as_bytes();
    let find = |from: usize, pat: &str| {
        source
            .get(from..)
            .and_then(|r| r.find(pat))
            .map_or(b.len(), |k| from + k + pat.len())
    };
    let mut out = Nesting::default();
    let mut blocks: Vec<(usize, String)> = Vec::new();
    let mut elements = 0usize;
    let (mut i, mut line) = (0usize, 1usize);
    while i < b.len() {
        let next = if b[i] == b'\n' {
            line += 1;
            i + 1
        } else if b[i..].starts_with(b"{{") {
            let mut j = i + 2;
            while j < b.len() && (b[j] == b'{' || b[j] == b'~') {
                j += 1;
            }
            let end = if b[j..].starts_with(b"!--") {
                find(j, "--}}")
            } else {
                find(j, "}}")
            };
            let inner = source.get(j..end).unwrap_or("");
            let name = |s: &str| {
                s.trim_start_matches(['>', '*'])
                    .split(|c: char| c.is_whitespace() || c == '}' || c == '~')
                    .find(|w| !w.is_empty())
                    .unwrap_or("")
                    .to_string()
            };
            match inner.as_bytes().first() {
                Some(b'#') => blocks.push((line, name(&inner[1..]))),
                Some(b'^') if !name(&inner[1..]).is_empty() => {
                    blocks.push((line, name(&inner[1..])))
                }
                Some(b'/') => {
                    blocks.pop();
                }
                _ => {}
            }
            if blocks.len() > MAX_BLOCK_DEPTH {
                out.too_deep = Some((
                    line,
                    format!(
                        "Handlebars blocks nest more than {MAX_BLOCK_DEPTH} deep here; \
                         flatten the `{{{{#…}}}}` blocks"
                    ),
                ));
                return out;
            }
            end
        } else if b[i] == b'<' {
            let rest = &b[i + 1..];
            if rest.starts_with(b"!--") {
                find(i, "-->")
            } else if rest.first() == Some(&b'/') {
                elements = elements.saturating_sub(1);
                find(i, ">")
            } else if rest.first().is_some_and(u8::is_ascii_alphabetic) {
                let end = find(i, ">");
                let tag = &source[i + 1..end];
                let name = tag
                    .split(|c: char| c.is_whitespace() || c == '>' || c == '/')
                    .next()
                    .unwrap_or("");
                let self_closing = tag.trim_end_matches('>').ends_with('/');
                if !self_closing && !VOID_ELEMENTS.iter().any(|v| v.eq_ignore_ascii_case(name)) {
                    elements += 1;
                }
                if elements > MAX_ELEMENT_DEPTH {
                    out.too_deep = Some((
                        line,
                        format!(
                            "elements nest more than {MAX_ELEMENT_DEPTH} deep here; \
                             letterpress refuses deeper nesting (no letter needs it): \
                             flatten the markup"
                        ),
                    ));
                    return out;
                }
                end
            } else if rest.first().is_some_and(|c| *c == b'!' || *c == b'?') {
                find(i, ">")
            } else {
                i + 1
            }
        } else {
            i + 1
        };
        // Newlines inside a skipped tag or comment still count.
        if next > i + 1 {
            line += b[i + 1..next].iter().filter(|&&c| c == b'\n').count();
        }
        i = next;
    }
    out.unclosed = blocks.pop();
    out
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

fn canonical_header(name: &str) -> std::result::Result<String, String> {
    if name.eq_ignore_ascii_case(ATTACHMENT) {
        return Ok(ATTACHMENT.to_string());
    }
    if let Some(known) = ALLOWED_HEADERS
        .iter()
        .find(|h| h.eq_ignore_ascii_case(name))
    {
        return Ok(known.to_string());
    }
    let valid_token =
        !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if valid_token && name.len() > 2 && name[..2].eq_ignore_ascii_case("x-") {
        return Ok(format!("X-{}", &name[2..]));
    }
    Err(format!(
        "`{name}` is not a header a template may set; use {} or an `X-` header \
         (letterpress writes Date, Message-ID and the MIME headers itself)",
        ALLOWED_HEADERS.join(", ")
    ))
}

/// Parses a Handlebars template in pieces (see [`crate::compose::pieces`]),
/// each with its line offset, giving a syntax error as (line, message).
pub(crate) fn compile(
    source: &str,
) -> std::result::Result<Vec<(usize, Template)>, (usize, String)> {
    crate::compose::pieces::compile(source).map_err(|e| {
        // Handlebars reports an unclosed block as a raw parser dump at the
        // end of the input, past the last line: name where it opens instead.
        if let Some((line, name)) = scan_nesting(source).unclosed {
            return (
                line,
                format!(
                    "Handlebars syntax error: the block `{{{{#{name}}}}}` opened on this line \
                     is not closed; add `{{{{/{name}}}}}` where it ends"
                ),
            );
        }
        (e.line, format!("Handlebars syntax error: {}", e.reason))
    })
}

/// [`unknown_helper`] in every piece of a template.
fn unknown_helper_in(pieces: &[(usize, Template)], line_offset: usize) -> Option<(String, usize)> {
    pieces
        .iter()
        .find_map(|(offset, t)| unknown_helper(t, line_offset + offset))
}

/// [`collect`] for every piece of a template, lines offset by `line_offset`.
fn collect_all(pieces: &[(usize, Template)], line_offset: usize, out: &mut Vec<Variable>) {
    for (offset, t) in pieces {
        collect(t, line_offset + offset, out);
    }
}

fn collect(t: &Template, line_offset: usize, out: &mut Vec<Variable>) {
    for (i, el) in t.elements.iter().enumerate() {
        let line = line_offset + t.mapping.get(i).map_or(1, |m| m.0);
        match el {
            TemplateElement::Expression(h) | TemplateElement::HtmlExpression(h) => {
                if h.params.is_empty() && h.hash.is_empty() {
                    param(&h.name, line, line_offset, out);
                } else {
                    helper(h, line, line_offset, out);
                }
            }
            TemplateElement::HelperBlock(h) => helper(h, line, line_offset, out),
            _ => {}
        }
    }
}

/// The first call in `t` of a helper that is not in [`HELPERS`], with its
/// line. A name without arguments is a column (or, as a block, a section),
/// not a call.
fn unknown_helper(t: &Template, line_offset: usize) -> Option<(String, usize)> {
    t.elements.iter().enumerate().find_map(|(i, el)| {
        let line = line_offset + t.mapping.get(i).map_or(1, |m| m.0);
        match el {
            TemplateElement::Expression(h)
            | TemplateElement::HtmlExpression(h)
            | TemplateElement::HelperBlock(h) => unknown_in_call(h, line, line_offset),
            _ => None,
        }
    })
}

fn unknown_in_call(h: &HelperTemplate, line: usize, line_offset: usize) -> Option<(String, usize)> {
    let calls = !h.params.is_empty() || !h.hash.is_empty();
    if let Some(name) = h.name.as_name() {
        if calls && !HELPERS.contains(&name) {
            return Some((name.to_string(), line));
        }
    }
    h.params
        .iter()
        .chain(h.hash.values())
        .find_map(|p| match p {
            Parameter::Subexpression(s) => match s.as_element() {
                TemplateElement::Expression(inner) => unknown_in_call(inner, line, line_offset),
                _ => None,
            },
            _ => None,
        })
        .or_else(|| {
            h.template
                .iter()
                .chain(h.inverse.iter())
                .find_map(|t| unknown_helper(t, line_offset))
        })
}

fn helper(h: &HelperTemplate, line: usize, line_offset: usize, out: &mut Vec<Variable>) {
    for p in h.params.iter().chain(h.hash.values()) {
        param(p, line, line_offset, out);
    }
    // Inside `each` and `with` the context is no longer the row, so names
    // there are not columns.
    let changes_context = matches!(h.name.as_name(), Some("each" | "with"));
    if !changes_context {
        for t in h.template.iter().chain(h.inverse.iter()) {
            collect(t, line_offset, out);
        }
    }
}

fn param(p: &Parameter, line: usize, line_offset: usize, out: &mut Vec<Variable>) {
    match p {
        Parameter::Path(HbPath::Relative((_, raw))) => {
            let first = raw.split(['.', '/']).next().unwrap_or(raw);
            let first = first.trim_start_matches('[').trim_end_matches(']');
            if !first.is_empty() && first != "this" && !raw.starts_with("..") {
                out.push(Variable {
                    name: first.to_string(),
                    line,
                    in_text_file: false,
                    included: None,
                });
            }
        }
        Parameter::Name(n) => out.push(Variable {
            name: n.clone(),
            line,
            in_text_file: false,
            included: None,
        }),
        Parameter::Subexpression(s) => {
            if let TemplateElement::Expression(h) = s.as_element() {
                helper(h, line, line_offset, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> Result<TemplateFile> {
        TemplateFile::parse(Path::new("t.mjml"), src, None)
    }

    const OK: &str = "From: A <a@x.org>\nSubject: Hi {{first}}\n\n<mjml><mj-body>\n<mj-text>{{#if salutation}}{{salutation}}{{/if}} {{last}}</mj-text>\n</mj-body></mjml>\n";

    #[test]
    fn splits_headers_and_body_with_lines() {
        let t = parse(OK).unwrap();
        assert_eq!(t.header("Subject").unwrap().line, 2);
        assert_eq!(t.header("To").unwrap().value, "{{email}}");
        assert_eq!(t.body_line, 4);
        assert!(t.body.starts_with("<mjml>"));
    }

    #[test]
    fn finds_variables_with_their_lines() {
        let t = parse(OK).unwrap();
        let vars: Vec<(String, usize)> = t
            .variables()
            .unwrap()
            .into_iter()
            .map(|v| (v.name, v.line))
            .collect();
        assert!(vars.contains(&("first".into(), 2)));
        assert!(vars.contains(&("salutation".into(), 5)));
        assert!(vars.contains(&("last".into(), 5)));
        assert!(vars.contains(&("email".into(), 1)));
    }

    #[test]
    fn syntax_error_names_the_file_line() {
        let t =
            parse("From: a@x.org\nSubject: x\n\n<mjml>\n<mj-body>\n{{#if x}}\n</mj-body></mjml>\n")
                .unwrap();
        let e = t.variables().unwrap_err().to_string();
        assert!(e.starts_with("t.mjml:6: Handlebars syntax error"), "{e}");
        assert!(
            e.contains("`{{#if}}` opened on this line is not closed"),
            "{e}"
        );
    }

    #[test]
    fn rejects_headers_letterpress_owns_and_missing_required() {
        let e = parse("From: a@x.org\nSubject: x\nBcc: b@x.org\n\n<mjml/>").unwrap_err();
        assert!(
            e.to_string().contains("t.mjml:3: `Bcc` is not a header"),
            "{e}"
        );
        assert!(parse("Subject: x\n\n<mjml/>")
            .unwrap_err()
            .to_string()
            .contains("no `From:`"));
        assert!(parse("<mjml></mjml>")
            .unwrap_err()
            .to_string()
            .contains("header lines first"));
    }

    #[test]
    fn x_headers_and_folding() {
        let t = parse("From: a@x.org\nsubject: one\n  two\nx-tag: {{t}}\n\n<mjml/>").unwrap();
        assert_eq!(t.header("Subject").unwrap().value, "one two");
        assert_eq!(t.header("X-tag").unwrap().value, "{{t}}");
    }

    #[test]
    fn finds_included_files_inside_the_folder_only() {
        assert_eq!(
            include_paths("<mj-include path=\"./a.mjml\"/>\n<mj-include type='css' path = 'b.css' /><mj-text>path=\"no\"</mj-text>"),
            vec!["./a.mjml", "b.css"]
        );
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("c");
        std::fs::create_dir(&folder).unwrap();
        std::fs::write(dir.path().join("secret.mjml"), "x").unwrap();
        std::fs::write(
            folder.join("t.mjml"),
            "<mj-include path=\"./a.mjml\" /><mj-include path=\"../secret.mjml\" /><mj-include path=\"later.mjml\" />",
        )
        .unwrap();
        std::fs::write(
            folder.join("a.mjml"),
            "<mj-include path=\"b.mjml\" /><mj-include path=\"./t.mjml\" />",
        )
        .unwrap();
        std::fs::write(folder.join("b.mjml"), "").unwrap();
        let root = folder.canonicalize().unwrap();
        let mut files = included_files(&folder.join("t.mjml"));
        files.sort();
        assert_eq!(
            files,
            vec![
                root.join("a.mjml"),
                root.join("b.mjml"),
                root.join("later.mjml"),
                root.join("t.mjml"),
            ]
        );
    }

    #[test]
    fn helpers_are_the_ones_handlebars_registers() {
        let hb = handlebars::Handlebars::new();
        let not_found = |name: &str| {
            let e = hb.render_template(&format!("{{{{{name} 1 1}}}}"), &());
            e.is_err_and(|e| matches!(e.reason(), handlebars::RenderErrorReason::HelperNotFound(_)))
        };
        for name in HELPERS {
            assert!(!not_found(name), "`{name}` is not registered");
        }
        assert!(not_found("shout"));
    }

    #[test]
    fn unknown_helpers_are_errors_with_their_line() {
        let e = parse("From: a@x.org\nSubject: {{shout x}}\n\n<mjml/>")
            .unwrap()
            .variables()
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("t.mjml:2: the template calls `shout`"), "{e}");
        let body = "From: a@x.org\nSubject: x\n\n<mjml>\n{{#each xs}}\n{{#if (loud y)}}{{/if}}{{/each}}\n</mjml>";
        let e = parse(body).unwrap().variables().unwrap_err().to_string();
        assert!(e.starts_with("t.mjml:6: the template calls `loud`"), "{e}");
        // Names alone, and built-in helpers, are fine.
        let ok = "From: a@x.org\nSubject: {{x}}\n\n<mjml>{{#if (eq x 1)}}{{lookup y 0}}{{/if}}{{#sec}}a{{/sec}}</mjml>";
        assert!(parse(ok).unwrap().variables().is_ok());
    }
}
