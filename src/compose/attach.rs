//! Attachments and inline images: the template's `Attachment:` lines
//! compiled, the files they and the local `<img src>` name read and
//! base64-encoded, and the per-letter step that picks a letter's files.
//!
//! A file the campaign itself names (a literal `Attachment:` path, an image
//! in the template) is read and encoded once, when the campaign compiles,
//! and every letter shares it; a per-contact file (a path with `{{…}}`) is
//! read and encoded for its letter, unless it is one of those. Paths are
//! relative to the template's folder and may not leave it (by `..`, an
//! absolute path or a symlink). Besides the template and its includes,
//! this is the only place `compose` reads files; it writes none.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use handlebars::Handlebars;
use sha2::{Digest, Sha256};

use crate::compose::inline;
use crate::compose::recipients::{show_size, Recipient};
use crate::compose::template::{include_root, TemplateFile, ATTACHMENT};
use crate::error::Result;
use crate::report::{Problem, Severity};

/// Many relays refuse a message over 10 MB.
pub const RELAY_LIMIT: usize = 10 * 1024 * 1024;
/// Gmail refuses a message over 25 MB.
pub const GMAIL_LIMIT: usize = 25 * 1024 * 1024;
/// An inline image bigger than this slows every reader's download and is
/// likely a photo straight from a camera: `check` warns.
pub const IMAGE_WARN_BYTES: u64 = 512 * 1024;

/// What to do with a row whose per-contact attachment does not exist.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MissingAttachment {
    /// Reject the row, naming its line (the default).
    #[default]
    Reject,
    /// Send the letter without the file, with a warning in the report.
    Skip,
}

impl std::str::FromStr for MissingAttachment {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "reject" => Ok(MissingAttachment::Reject),
            "skip" => Ok(MissingAttachment::Skip),
            _ => Err(format!("`{s}`: use reject or skip")),
        }
    }
}

/// Whether local images are embedded in the letter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum InlineImages {
    /// Embed each local `<img src>` as a `multipart/related` part (the
    /// default).
    #[default]
    Auto,
    /// Embed nothing, and refuse a letter that still names a local file.
    Never,
}

impl std::str::FromStr for InlineImages {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(InlineImages::Auto),
            "never" => Ok(InlineImages::Never),
            _ => Err(format!("`{s}`: use auto or never")),
        }
    }
}

/// `--missing-attachment` and `--inline-images`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    pub missing: MissingAttachment,
    pub inline: InlineImages,
}

/// One file, read and encoded.
#[derive(Debug, PartialEq, Eq)]
pub struct Payload {
    /// The file name a reader sees (the last part of the path).
    pub name: String,
    /// The path as the template (or the row) wrote it.
    pub path: String,
    /// From the file name (`mime_guess`), `application/octet-stream` when
    /// unknown.
    pub content_type: String,
    pub bytes: Vec<u8>,
    pub sha256: [u8; 32],
    /// Base64 in lines of 76 characters, each ending in CRLF.
    pub base64: Vec<u8>,
}

impl Payload {
    /// Encodes `bytes` as the file `path` (relative to the template's
    /// folder).
    pub fn new(path: &str, bytes: Vec<u8>) -> Payload {
        let name = Path::new(path)
            .file_name()
            .map_or_else(|| path.to_string(), |n| n.to_string_lossy().into_owned());
        let content_type = mime_guess::from_path(&name)
            .first_or_octet_stream()
            .essence_str()
            .to_string();
        let sha256 = Sha256::digest(&bytes).into();
        let base64 = base64_lines(&bytes);
        Payload {
            name,
            path: path.to_string(),
            content_type,
            sha256,
            base64,
            bytes,
        }
    }

    pub fn sha256_hex(&self) -> String {
        self.sha256.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The `Content-ID` of this file as an inline image (without `<>`):
    /// from its content, so the same image is one part however often the
    /// letter shows it, and the same in every run.
    pub fn content_id(&self) -> String {
        format!("{}@letterpress", &self.sha256_hex()[..24])
    }
}

/// Base64 (RFC 2045 6.8) in lines of 76 characters, CRLF after each.
pub fn base64_lines(bytes: &[u8]) -> Vec<u8> {
    use base64::Engine as _;
    const CHUNK: usize = 57; // 57 bytes -> 76 characters
    let lines = bytes.len().div_ceil(CHUNK);
    let mut out = vec![0u8; lines * 78];
    let mut at = 0;
    for chunk in bytes.chunks(CHUNK) {
        let n = base64::engine::general_purpose::STANDARD
            .encode_slice(chunk, &mut out[at..])
            .expect("room for one line");
        at += n;
        out[at] = b'\r';
        out[at + 1] = b'\n';
        at += 2;
    }
    out.truncate(at);
    out
}

/// How a letter carries a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// In `multipart/mixed`, offered for download.
    Attachment,
    /// In `multipart/related`, shown where the HTML says `cid:…`.
    Inline { cid: String },
}

/// One file of one letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub role: Role,
    pub payload: Arc<Payload>,
}

/// Why a path cannot be attached.
#[derive(Debug)]
enum Refusal {
    /// `..`, an absolute path, or a symlink out of the folder.
    Leaves,
    Missing(PathBuf),
    NotAFile(PathBuf),
    Unreadable(PathBuf, std::io::Error),
    /// The template's folder itself cannot be resolved.
    NoFolder,
}

impl Refusal {
    fn message(&self, what: &str, path: &str) -> String {
        match self {
            Refusal::Leaves => format!(
                "{what} `{path}` leaves the template's folder; name a file inside it \
                 (no `..`, no absolute path, no symlink pointing out)"
            ),
            Refusal::Missing(p) => format!("{what} `{path}` does not exist ({})", p.display()),
            Refusal::NotAFile(p) => format!("{what} `{path}` is not a file ({})", p.display()),
            Refusal::Unreadable(p, e) => {
                format!("{what} `{path}` cannot be read ({}): {e}", p.display())
            }
            Refusal::NoFolder => {
                format!("{what} `{path}`: the template's folder cannot be resolved")
            }
        }
    }
}

/// `rel` inside `root`, canonical: refused by name when it could leave the
/// folder, and again after symlinks are resolved.
fn resolve(root: Option<&Path>, rel: &str) -> std::result::Result<PathBuf, Refusal> {
    let p = Path::new(rel);
    let by_name = rel.contains('\0')
        || p.components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
    if by_name {
        return Err(Refusal::Leaves);
    }
    let root = root.ok_or(Refusal::NoFolder)?;
    let joined = root.join(p);
    match joined.canonicalize() {
        Ok(c) if !c.starts_with(root) => Err(Refusal::Leaves),
        Ok(c) if !c.is_file() => Err(Refusal::NotAFile(joined)),
        Ok(c) => Ok(c),
        Err(_) => Err(Refusal::Missing(joined)),
    }
}

fn load(canonical: &Path, rel: &str) -> std::result::Result<Payload, Refusal> {
    std::fs::read(canonical)
        .map(|bytes| Payload::new(rel, bytes))
        .map_err(|e| Refusal::Unreadable(canonical.to_path_buf(), e))
}

/// One `Attachment:` line, compiled.
#[derive(Debug)]
struct Line {
    line: usize,
    value: String,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// The same file for every letter: in [`Plan::shared`].
    Shared(PathBuf),
    /// A Handlebars path, rendered per letter.
    PerContact { key: String, columns: Vec<String> },
}

/// A campaign's files: its `Attachment:` lines, the files every letter
/// shares (read and encoded once), and the options.
pub struct Plan {
    root: Option<PathBuf>,
    lines: Vec<Line>,
    registry: Handlebars<'static>,
    /// Keyed by canonical path.
    shared: BTreeMap<PathBuf, Arc<Payload>>,
    options: Options,
    /// The HTML has `<img>` tags with a local or templated `src`: letters
    /// are scanned for them. False for most campaigns, which skip the scan.
    images: bool,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("lines", &self.lines)
            .field("shared", &self.shared.keys().collect::<Vec<_>>())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            root: None,
            lines: Vec::new(),
            registry: Handlebars::new(),
            shared: BTreeMap::new(),
            options: Options::default(),
            images: false,
        }
    }
}

impl Plan {
    /// Compiles the `Attachment:` lines of `template` and reads the files
    /// every letter carries: the literal attachments and the local images
    /// of `html` (the HTML template, placeholders left in). A shared file
    /// that is missing or outside the folder is a template error on its
    /// line.
    pub fn compile(template: &TemplateFile, html: &str, options: Options) -> Result<Plan> {
        let root = include_root(&template.path);
        let mut plan = Plan {
            root,
            options,
            images: inline::has_local(html) || inline::has_templated(html),
            ..Plan::default()
        };
        plan.registry.set_strict_mode(true);
        plan.registry.register_escape_fn(handlebars::no_escape);
        for h in template.headers.iter().filter(|h| h.name == ATTACHMENT) {
            let value = h.value.trim().to_string();
            if value.is_empty() {
                return Err(template.error(
                    h.line,
                    "the Attachment header is empty; name a file in the template's folder".into(),
                    false,
                ));
            }
            let kind = if value.contains("{{") {
                let key = format!("a:{}", plan.lines.len());
                plan.registry
                    .register_template_string(&key, &value)
                    .map_err(|e| {
                        template.error(
                            h.line,
                            format!("Handlebars syntax error: {}", e.reason()),
                            false,
                        )
                    })?;
                let columns = crate::compose::template::variables_in(&value)
                    .map_err(|(_, m)| template.error(h.line, m, false))?
                    .into_iter()
                    .map(|v| v.name)
                    .collect();
                Kind::PerContact { key, columns }
            } else {
                let path = plan.share(&value).map_err(|r| {
                    template.error(
                        h.line,
                        format!(
                            "{}; every letter carries it: add the file, or remove this line",
                            r.message("the attachment", &value)
                        ),
                        false,
                    )
                })?;
                Kind::Shared(path)
            };
            plan.lines.push(Line {
                line: h.line,
                value,
                kind,
            });
        }
        for src in inline::local_sources(html) {
            let line = body_line(template, &src.path);
            if options.inline == InlineImages::Never {
                return Err(template.error(
                    line,
                    format!(
                        "the image `{}` is a local file, and --inline-images=never sends none; \
                         give it an https:// URL, or leave out --inline-images=never",
                        src.path
                    ),
                    false,
                ));
            }
            plan.share(&src.path).map_err(|r| {
                template.error(
                    line,
                    format!(
                        "{}; add the file, or give the image an https:// URL",
                        r.message("the image", &src.path)
                    ),
                    false,
                )
            })?;
        }
        Ok(plan)
    }

    /// Reads `rel` into the shared files, once.
    fn share(&mut self, rel: &str) -> std::result::Result<PathBuf, Refusal> {
        let path = resolve(self.root.as_deref(), rel)?;
        if !self.shared.contains_key(&path) {
            let payload = load(&path, rel)?;
            self.shared.insert(path.clone(), Arc::new(payload));
        }
        Ok(path)
    }

    /// The file `rel` for one letter: the shared copy when there is one,
    /// else read and encoded now.
    fn payload(&self, rel: &str) -> std::result::Result<Arc<Payload>, Refusal> {
        let path = resolve(self.root.as_deref(), rel)?;
        match self.shared.get(&path) {
            Some(p) => Ok(p.clone()),
            None => load(&path, rel).map(Arc::new),
        }
    }

    pub fn options(&self) -> Options {
        self.options
    }

    /// True when no letter can carry a file: the message stays
    /// `multipart/alternative` and the per-letter step is skipped.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty() && !self.images
    }

    /// The files every letter shares, in path order.
    pub fn shared(&self) -> impl Iterator<Item = &Payload> {
        self.shared.values().map(|p| &**p)
    }

    /// The files of one letter. `html` is its merged HTML: each local
    /// image `src` in it becomes `cid:…`. A file that cannot be attached
    /// rejects the row, except a missing per-contact attachment with
    /// `--missing-attachment skip`, which is a warning (the second value).
    pub fn files(
        &self,
        r: &Recipient,
        html: &mut String,
        csv: &str,
    ) -> std::result::Result<(Vec<File>, Vec<Problem>), Problem> {
        let problem = |column: Option<&str>, message: String| {
            let p = Problem::new(Severity::Error, csv, message)
                .at_line(r.line)
                .at_row(r.row);
            match column {
                Some(c) => p.in_column(c),
                None => p,
            }
        };
        let mut files: Vec<File> = Vec::new();
        let mut warnings = Vec::new();
        if self.images {
            let found = inline::local_sources(html);
            if let (Some(first), InlineImages::Never) = (found.first(), self.options.inline) {
                return Err(problem(
                    None,
                    format!(
                        "the HTML shows the local file `{}`, and --inline-images=never sends \
                         none; give it an https:// URL, or leave out --inline-images=never",
                        first.path
                    ),
                ));
            }
            let mut with = Vec::with_capacity(found.len());
            for src in found {
                let payload = self
                    .payload(&src.path)
                    .map_err(|e| problem(None, e.message("the image", &src.path)))?;
                let cid = payload.content_id();
                if !files
                    .iter()
                    .any(|f| f.role == Role::Inline { cid: cid.clone() })
                {
                    files.push(File {
                        role: Role::Inline { cid: cid.clone() },
                        payload,
                    });
                }
                with.push((src.range, format!("cid:{cid}")));
            }
            if !with.is_empty() {
                *html = inline::rewrite(html, &with);
            }
        }
        let mut fields = None;
        for line in &self.lines {
            let payload = match &line.kind {
                Kind::Shared(path) => self.shared[path].clone(),
                Kind::PerContact { key, columns } => {
                    let column = columns.first().map(String::as_str);
                    let fields = fields.get_or_insert_with(|| r.to_json());
                    let rel = self.registry.render(key, fields).map_err(|e| {
                        problem(column, format!("cannot render the attachment path: {e}"))
                    })?;
                    let rel = rel.trim();
                    // `{{#if receipt}}…{{/if}}`: no file for this contact.
                    if rel.is_empty() {
                        continue;
                    }
                    match self.payload(rel) {
                        Ok(p) => p,
                        Err(Refusal::Missing(_))
                            if self.options.missing == MissingAttachment::Skip =>
                        {
                            warnings.push(
                                problem(
                                    column,
                                    format!(
                                        "the attachment `{rel}` (template line {}) does not \
                                         exist; sent without it (--missing-attachment skip)",
                                        line.line
                                    ),
                                )
                                .with_severity(Severity::Warning),
                            );
                            continue;
                        }
                        Err(e @ Refusal::Missing(_)) => {
                            return Err(problem(
                                column,
                                format!(
                                    "{} (template line {}: `{}`); add the file, or pass \
                                     --missing-attachment skip to send the letter without it",
                                    e.message("the attachment", rel),
                                    line.line,
                                    line.value
                                ),
                            ))
                        }
                        Err(e) => {
                            return Err(problem(
                                column,
                                format!(
                                    "{} (template line {}: `{}`)",
                                    e.message("the attachment", rel),
                                    line.line,
                                    line.value
                                ),
                            ))
                        }
                    }
                }
            };
            let dup = files
                .iter()
                .any(|f| f.role == Role::Attachment && Arc::ptr_eq(&f.payload, &payload));
            if !dup {
                files.push(File {
                    role: Role::Attachment,
                    payload,
                });
            }
        }
        Ok((files, warnings))
    }

    /// The per-contact attachments of `r` that do not exist, as (template
    /// line, path): what `check` lists with the contacts affected.
    pub fn missing(&self, r: &Recipient) -> Vec<(usize, String)> {
        let mut out = Vec::new();
        for line in &self.lines {
            if let Kind::PerContact { key, .. } = &line.kind {
                let Ok(rel) = self.registry.render(key, &r.to_json()) else {
                    continue;
                };
                let rel = rel.trim();
                if !rel.is_empty() && matches!(self.payload_exists(rel), Err(Refusal::Missing(_))) {
                    out.push((line.line, rel.to_string()));
                }
            }
        }
        out
    }

    fn payload_exists(&self, rel: &str) -> std::result::Result<PathBuf, Refusal> {
        resolve(self.root.as_deref(), rel)
    }
}

/// The files the template at `path` attaches or shows every letter (its
/// literal `Attachment:` paths and the local `src` values of its body),
/// for `serve` to watch. Found by scanning, not by compiling: a file too
/// many does no harm, and one outside the folder is left out.
pub fn watched(path: &Path) -> Vec<PathBuf> {
    let Ok(template) = TemplateFile::load(path) else {
        return Vec::new();
    };
    let Some(root) = include_root(path) else {
        return Vec::new();
    };
    let mut rels: Vec<String> = template
        .headers
        .iter()
        .filter(|h| h.name == ATTACHMENT && !h.value.contains("{{"))
        .map(|h| h.value.trim().to_string())
        .collect();
    let body = &template.body;
    let mut rest = body.as_str();
    while let Some(at) = rest.find("src=\"") {
        rest = &rest[at + 5..];
        let value = &rest[..rest.find('"').unwrap_or(rest.len())];
        if inline::is_local(value) {
            rels.push(value.to_string());
        }
    }
    rels.into_iter()
        .filter(|rel| {
            Path::new(rel)
                .components()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        })
        .map(|rel| root.join(rel))
        .collect()
}

/// The line of the template body where `path` is written (the first
/// line of the body when it cannot be found, say because it was escaped).
fn body_line(template: &TemplateFile, path: &str) -> usize {
    template.body.find(path).map_or(template.body_line, |at| {
        template.body_line + template.body[..at].matches('\n').count()
    })
}

/// What `check` adds up over a list: missing per-contact files with the
/// contacts they affect, the biggest letter against the common limits, and
/// big images.
#[derive(Debug, Default)]
pub struct Tally {
    /// (template line, path template) -> (row, contact) of each letter
    /// missing it.
    missing: BTreeMap<(usize, String), Vec<(usize, String)>>,
    /// (size, row) of the biggest letter.
    largest: Option<(usize, usize)>,
    over_relay: usize,
    over_gmail: usize,
    /// Some letter has a file: only then is the size worth a note.
    any_files: bool,
    big_images: BTreeMap<String, u64>,
}

impl Tally {
    /// Notes the files of row `r` (addressed to `to`) that are missing.
    pub fn missing(&mut self, plan: &Plan, r: &Recipient, to: &str) {
        for (line, path) in plan.missing(r) {
            let value = plan
                .lines
                .iter()
                .find(|l| l.line == line)
                .map_or(path, |l| l.value.clone());
            self.missing
                .entry((line, value))
                .or_default()
                .push((r.row, to.to_string()));
        }
    }

    /// Notes one built letter: its size in bytes and its files.
    pub fn letter(&mut self, row: usize, size: usize, files: &[File]) {
        if self.largest.is_none_or(|(s, _)| size > s) {
            self.largest = Some((size, row));
        }
        self.over_relay += usize::from(size > RELAY_LIMIT);
        self.over_gmail += usize::from(size > GMAIL_LIMIT);
        self.any_files |= !files.is_empty();
        for f in files {
            if matches!(f.role, Role::Inline { .. })
                && f.payload.bytes.len() as u64 > IMAGE_WARN_BYTES
            {
                self.big_images
                    .insert(f.payload.path.clone(), f.payload.bytes.len() as u64);
            }
        }
    }

    /// The findings, located in `template` (files) and `csv` (letters).
    pub fn finish(self, template: &Path, csv: &str) -> Vec<Problem> {
        let t = template.display().to_string();
        let mut out = Vec::new();
        for ((line, value), who) in self.missing {
            let shown: Vec<String> = who
                .iter()
                .take(10)
                .map(|(row, to)| format!("row {row} ({to})"))
                .collect();
            let more = who.len().saturating_sub(10);
            let more = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            out.push(
                Problem::new(
                    Severity::Warning,
                    t.clone(),
                    format!(
                        "the attachment `{value}` is missing for {} contact(s): {}{more}",
                        who.len(),
                        shown.join(", ")
                    ),
                )
                .at_line(line as u64),
            );
        }
        for (path, size) in self.big_images {
            out.push(Problem::new(
                Severity::Warning,
                t.clone(),
                format!(
                    "the inline image `{path}` takes {}; every reader downloads it with the \
                     letter: keep images under {}",
                    show_size(size as usize),
                    show_size(IMAGE_WARN_BYTES as usize)
                ),
            ));
        }
        if let Some((size, row)) = self
            .largest
            .filter(|_| self.any_files || self.over_relay > 0)
        {
            let (severity, verdict) = if self.over_gmail > 0 {
                (
                    Severity::Warning,
                    format!(
                        "{} letter(s) are over Gmail's 25 MB and {} over the 10 MB many relays take",
                        self.over_gmail, self.over_relay
                    ),
                )
            } else if self.over_relay > 0 {
                (
                    Severity::Warning,
                    format!(
                        "{} letter(s) are over the 10 MB many relays take (Gmail takes 25 MB)",
                        self.over_relay
                    ),
                )
            } else {
                (
                    Severity::Note,
                    "all within the 10 MB many relays take and Gmail's 25 MB".to_string(),
                )
            };
            out.push(
                Problem::new(
                    severity,
                    csv,
                    format!("the biggest letter takes {}; {verdict}", show_size(size)),
                )
                .at_row(row),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two rows through a plan: (letter files, html) for each.
    fn two_letters(dir: &Path, header: &str, html: &str) -> Vec<(Vec<File>, String)> {
        let source = format!("From: S <s@example.org>\nSubject: Hi\n{header}\n\n<mjml></mjml>\n");
        let t = TemplateFile::parse(&dir.join("t.mjml"), &source, None).unwrap();
        let plan = Plan::compile(&t, html, Options::default()).unwrap();
        let mut r = crate::compose::recipients::Recipients::from_reader(
            "r.csv".into(),
            Box::new(std::io::Cursor::new(
                b"email,f\na@x.org,a.pdf\nb@x.org,a.pdf\n".to_vec(),
            )),
            None,
        )
        .unwrap();
        let mut out = Vec::new();
        while let Some(row) = r.next_row().unwrap() {
            let mut h = html.to_string();
            let (files, _) = plan.files(&row.unwrap(), &mut h, "r.csv").unwrap();
            out.push((files, h));
        }
        out
    }

    #[test]
    fn a_shared_file_is_encoded_once_and_a_per_contact_one_per_letter() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.pdf"), b"%PDF").unwrap();
        std::fs::write(dir.path().join("i.png"), b"png").unwrap();
        let html = r#"<img src="i.png"><img src="i.png"><img src="https://x.org/r.png">"#;
        let l = two_letters(dir.path(), "Attachment: a.pdf", html);
        // The very same encoded bytes in both letters: read once.
        assert!(Arc::ptr_eq(&l[0].0[1].payload, &l[1].0[1].payload));
        assert!(Arc::ptr_eq(&l[0].0[0].payload, &l[1].0[0].payload));
        // One part for the image shown twice, both references rewritten.
        assert_eq!(l[0].0.len(), 2);
        let Role::Inline { cid } = &l[0].0[0].role else {
            panic!("{:?}", l[0].0[0].role)
        };
        assert_eq!(l[0].1.matches(&format!("src=\"cid:{cid}\"")).count(), 2);
        assert!(l[0].1.contains("https://x.org/r.png"));
        // The same file through a placeholder: read for each letter, but
        // the shared copy when the template also names it.
        let l = two_letters(dir.path(), "Attachment: {{f}}", "");
        assert!(!Arc::ptr_eq(&l[0].0[0].payload, &l[1].0[0].payload));
        assert_eq!(l[0].0[0].payload, l[1].0[0].payload);
        let l = two_letters(dir.path(), "Attachment: a.pdf\nAttachment: {{f}}", "");
        assert!(Arc::ptr_eq(&l[0].0[0].payload, &l[1].0[0].payload));
        // ... and it is not attached twice.
        assert_eq!(l[0].0.len(), 1);
    }

    #[test]
    fn base64_lines_are_76_and_decode() {
        use base64::Engine as _;
        for n in [0, 1, 56, 57, 58, 114, 1000] {
            let bytes: Vec<u8> = (0..n).map(|i| (i * 7 % 256) as u8).collect();
            let enc = base64_lines(&bytes);
            let text = String::from_utf8(enc).unwrap();
            let lines: Vec<&str> = text.split_terminator("\r\n").collect();
            assert!(lines.iter().all(|l| l.len() <= 76));
            assert!(lines.iter().rev().skip(1).all(|l| l.len() == 76));
            let back = base64::engine::general_purpose::STANDARD
                .decode(lines.concat())
                .unwrap();
            assert_eq!(back, bytes);
        }
    }

    #[test]
    fn content_types_come_from_the_name() {
        assert_eq!(
            Payload::new("a/b.pdf", vec![]).content_type,
            "application/pdf"
        );
        assert_eq!(Payload::new("x.ics", vec![]).content_type, "text/calendar");
        assert_eq!(Payload::new("x.png", vec![]).content_type, "image/png");
        assert_eq!(
            Payload::new("x.unknown-ext", vec![]).content_type,
            "application/octet-stream"
        );
        assert_eq!(Payload::new("dir/Łódź.pdf", vec![]).name, "Łódź.pdf");
    }

    #[test]
    fn paths_may_not_leave_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("in")).unwrap();
        std::fs::write(root.join("in/a.pdf"), b"a").unwrap();
        assert!(resolve(Some(&root), "in/a.pdf").is_ok());
        assert!(resolve(Some(&root), "./in/a.pdf").is_ok());
        for bad in [
            "../a.pdf",
            "in/../../a.pdf",
            "/etc/passwd",
            "in/../in/a.pdf",
        ] {
            assert!(
                matches!(resolve(Some(&root), bad), Err(Refusal::Leaves)),
                "{bad}"
            );
        }
        #[cfg(unix)]
        {
            let other = tempfile::tempdir().unwrap();
            std::fs::write(other.path().join("secret"), b"s").unwrap();
            std::os::unix::fs::symlink(other.path().join("secret"), root.join("in/link")).unwrap();
            assert!(matches!(
                resolve(Some(&root), "in/link"),
                Err(Refusal::Leaves)
            ));
        }
        assert!(matches!(
            resolve(Some(&root), "in/nope.pdf"),
            Err(Refusal::Missing(_))
        ));
        assert!(matches!(
            resolve(Some(&root), "in"),
            Err(Refusal::NotAFile(_))
        ));
    }
}
