//! `letterpress render --check DIR`: render in memory and compare with the
//! letters in a snapshot folder made by a deterministic render. A changed
//! letter is shown as a unified diff of what a person reads (decoded
//! headers, text part, HTML part), never of quoted-printable lines. With
//! `--update` the folder is rewritten afterwards. Compares the per-letter
//! files only: `manifest.json` and the gallery hold paths and run facts, so
//! they are rewritten by `--update` but not compared. `--update` removes
//! only files that the folder's own manifest says letterpress wrote.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::compose::build::Built;
use crate::compose::campaign::Campaign;
use crate::compose::recipients::Recipients;
use crate::deliver::run;
use crate::deliver::sink::{file_stem, Delivered, Envelope, Failure, Formats, Receipt, Sink};
use crate::error::{Error, Result};

/// What a person reads of one letter, as lines to diff.
fn view(headers: Option<Vec<(String, String)>>, text: Option<&str>, html: Option<&str>) -> String {
    let mut v = String::new();
    match headers {
        Some(h) => {
            for (k, val) in h {
                v.push_str(&k);
                v.push_str(": ");
                v.push_str(&val);
                v.push('\n');
            }
        }
        None => v.push_str("(no .eml: headers not compared)\n"),
    }
    let html = html.map(block_lines);
    for (name, body) in [("text/plain", text), ("text/html", html.as_deref())] {
        v.push_str("\n==== ");
        v.push_str(name);
        v.push_str(" ====\n");
        if let Some(b) = body {
            v.push_str(&b.replace("\r\n", "\n"));
            if !b.ends_with('\n') {
                v.push('\n');
            }
        }
    }
    v
}

/// HTML with a line break before every tag that is not inline, so that a
/// paragraph (with its links and emphasis) is one line of the diff. MJML
/// writes a whole letter's body as one line, which no diff can show.
fn block_lines(html: &str) -> String {
    const INLINE: &[&str] = &[
        "a", "abbr", "b", "br", "code", "em", "font", "i", "img", "small", "span", "strong", "sub",
        "sup", "u",
    ];
    let mut out = String::with_capacity(html.len() + html.len() / 16);
    let mut rest = html;
    while let Some(i) = rest.find('<') {
        let (before, tag) = rest.split_at(i);
        out.push_str(before);
        let name: String = tag[1..]
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        if !INLINE.contains(&name.as_str()) && !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push('<');
        rest = &tag[1..];
    }
    out.push_str(rest);
    out
}

fn header_text(value: &mail_parser::HeaderValue<'_>) -> String {
    use mail_parser::{Address, HeaderValue as H};
    let addr = |a: &mail_parser::Addr<'_>| match (&a.name, &a.address) {
        (Some(n), Some(x)) => format!("{n} <{x}>"),
        (None, Some(x)) => format!("<{x}>"),
        (Some(n), None) => n.to_string(),
        (None, None) => String::new(),
    };
    let join = |l: &[mail_parser::Addr<'_>]| l.iter().map(addr).collect::<Vec<_>>().join(", ");
    match value {
        H::Address(Address::List(l)) => join(l),
        H::Address(Address::Group(g)) => g
            .iter()
            .map(|g| {
                format!(
                    "{}: {};",
                    g.name.as_deref().unwrap_or(""),
                    join(&g.addresses)
                )
            })
            .collect::<Vec<_>>()
            .join(" "),
        H::Text(t) => t.to_string(),
        H::TextList(l) => l.join(", "),
        H::DateTime(d) => d.to_rfc822(),
        H::ContentType(c) => match &c.c_subtype {
            Some(s) => format!("{}/{s}", c.c_type),
            None => c.c_type.to_string(),
        },
        H::Received(_) | H::Empty => String::new(),
    }
}

/// The view of a whole `.eml`: headers decoded (RFC 2047, folding), bodies
/// decoded (quoted-printable, charset). MIME-Version and Content-Type are
/// left out: the same for every letter, but for the boundary.
pub fn eml_view(eml: &[u8]) -> String {
    let Some(m) = mail_parser::MessageParser::default().parse(eml) else {
        return format!("(not a readable message: {} bytes)\n", eml.len());
    };
    let headers = m
        .headers()
        .iter()
        .filter(|h| {
            let n = h.name.as_str();
            !n.eq_ignore_ascii_case("content-type") && !n.eq_ignore_ascii_case("mime-version")
        })
        .map(|h| (h.name.as_str().to_string(), header_text(&h.value)))
        .collect();
    let mut v = view(
        Some(headers),
        m.body_text(0).as_deref(),
        m.body_html(0).as_deref(),
    );
    v.push_str(&files_view(&m));
    v
}

/// The files of a message, one line each: name, type, size and SHA-256 of
/// the decoded content, so a changed attachment shows as one changed line,
/// not as pages of base64. Empty for a letter without files.
fn files_view(m: &mail_parser::Message<'_>) -> String {
    use mail_parser::MimeHeaders as _;
    use sha2::Digest as _;
    let mut v = String::new();
    for part in m.attachments() {
        if v.is_empty() {
            v.push_str("\n==== attachments ====\n");
        }
        let kind = part.content_type().map_or_else(
            || "text/plain".to_string(),
            |c| match &c.c_subtype {
                Some(s) => format!("{}/{s}", c.c_type),
                None => c.c_type.to_string(),
            },
        );
        let inline = if part.content_id().is_some() {
            ", inline"
        } else {
            ""
        };
        let sha: String = sha2::Sha256::digest(part.contents())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        v.push_str(&format!(
            "{} ({kind}{inline}, {} bytes, sha256 {sha})\n",
            part.attachment_name().unwrap_or("(no name)"),
            part.contents().len()
        ));
    }
    v
}

/// What became of one letter.
#[derive(Debug)]
enum Change {
    Same,
    /// No file of this letter is in the snapshot.
    Added,
    Changed {
        /// The unified diff, headed by the file names.
        diff: String,
        /// The changed lines alone: letters whose diffs share it are one
        /// change, printed once.
        key: String,
    },
}

#[derive(Debug)]
struct Checked {
    row: usize,
    stem: String,
    to: String,
    /// The language of the letter's variant, when known.
    lang: Option<String>,
    change: Change,
}

/// ` [he]` after a letter's name in the report, when its language is known.
fn lang_label(lang: Option<&str>) -> String {
    lang.map(|l| format!(" [{l}]")).unwrap_or_default()
}

/// A sink that writes nothing: it compares each message with the snapshot.
struct SnapshotSink<'a> {
    dir: &'a Path,
    formats: Formats,
    checked: Mutex<Vec<Checked>>,
}

impl SnapshotSink<'_> {
    fn read(&self, name: &str) -> std::result::Result<Option<Vec<u8>>, String> {
        let path = self.dir.join(name);
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// The view of the snapshot's letter: from its .eml when the format
    /// includes eml, else from its .txt and .html.
    fn old_view(&self, stem: &str) -> std::result::Result<String, String> {
        if self.formats.eml {
            if let Some(eml) = self.read(&format!("{stem}.eml"))? {
                return Ok(eml_view(&eml));
            }
        }
        let text = self.read(&format!("{stem}.txt"))?;
        let html = self.read(&format!("{stem}.html"))?;
        Ok(view(
            None,
            text.as_deref()
                .map(|b| String::from_utf8_lossy(b))
                .as_deref(),
            html.as_deref()
                .map(|b| String::from_utf8_lossy(b))
                .as_deref(),
        ))
    }

    fn new_view(&self, out: &Built) -> String {
        if self.formats.eml {
            return eml_view(&out.eml);
        }
        let p = &out.letter.parts;
        view(
            None,
            self.formats.txt.then_some(p.text.as_str()),
            self.formats.html.then_some(p.html.as_str()),
        )
    }
}

impl Sink for SnapshotSink<'_> {
    fn deliver(&self, _: &Envelope<'_>, out: &Built) -> std::result::Result<Receipt, Failure> {
        let delivered = self
            .compare(out)
            .map_err(|reply| Failure::Permanent { code: None, reply })?;
        Ok(Receipt {
            reply: "compared".into(),
            delivered,
        })
    }
}

impl SnapshotSink<'_> {
    /// Compares one letter with its files in the snapshot folder.
    fn compare(&self, out: &Built) -> std::result::Result<Delivered, String> {
        let stem = file_stem(out.letter.row, &out.letter.parts.to.address);
        let mut d = Delivered::default();
        let (mut present, mut differ) = (0, Vec::new());
        for (ext, name, bytes) in self.formats.files(out) {
            match self.read(&name)? {
                Some(old) => {
                    present += 1;
                    if old[..] != bytes[..] {
                        differ.push(name.clone());
                    }
                }
                None => differ.push(name.clone()),
            }
            d.record(ext, name, &bytes);
        }
        let change = if present == 0 {
            Change::Added
        } else if differ.is_empty() {
            Change::Same
        } else {
            let old = self.old_view(&stem)?;
            let new = self.new_view(out);
            let mut diff = similar::TextDiff::from_lines(&old, &new)
                .unified_diff()
                .context_radius(3)
                .header(
                    &format!("{}/{stem} (snapshot)", self.dir.display()),
                    &format!("{stem} (rendered now)"),
                )
                .to_string();
            if old == new {
                // Same text, other bytes: a file is missing, or the encoding
                // (not the content) changed.
                diff = format!(
                    "  the decoded letter is the same, but these files differ or are missing: {}\n",
                    differ.join(", ")
                );
            }
            // The Message-ID is a hash of the template and the contact, so
            // any template change changes it in every letter: left out of
            // the key, or no two letters would ever share a change.
            let key = diff
                .lines()
                .filter(|l| {
                    (l.starts_with('+') || l.starts_with('-') || l.starts_with("  the"))
                        && !l.starts_with("+++")
                        && !l.starts_with("---")
                        && !l[1..].starts_with("Message-ID:")
                })
                .collect::<Vec<_>>()
                .join("\n");
            Change::Changed { diff, key }
        };
        self.checked
            .lock()
            .expect("no panics while held")
            .push(Checked {
                row: out.letter.row,
                stem,
                to: out.letter.parts.to.address.clone(),
                lang: out.letter.lang.as_ref().map(|t| t.to_string()),
                change,
            });
        Ok(d)
    }
}

/// The manifest a render writes into its folder, beside the letters.
const MANIFEST: &str = "manifest.json";

/// The part of `manifest.json` that says whose folder this is.
#[derive(serde::Deserialize)]
struct OwnManifest {
    /// The version that wrote the folder: its presence is the mark, whatever
    /// the version (a snapshot made by an older letterpress is still ours).
    #[serde(rename = "letterpress")]
    _letterpress: String,
    letters: Vec<OwnLetter>,
}

#[derive(serde::Deserialize)]
struct OwnLetter {
    files: BTreeMap<String, String>,
    /// The letter's language (written since letterpress knew variants).
    #[serde(default)]
    lang: Option<String>,
}

/// The letter files letterpress wrote into a snapshot folder, by stem.
type Written = BTreeMap<String, BTreeSet<String>>;

/// The language of each letter in a snapshot folder whose manifest says,
/// by stem.
type Langs = BTreeMap<String, String>;

/// The files letterpress wrote into `dir`, as its own `manifest.json` lists
/// them, and the letters' languages; `None` when `dir` does not exist.
///
/// A folder is ours when it holds a `manifest.json` that is a JSON object
/// with a string `letterpress` key (the version that wrote it) and a
/// `letters` array whose `files` each name a letter file in the folder
/// itself: one plain file name (no folder, no `..`) ending `.eml`, `.html`
/// or `.txt`. Those files, and only those, are what `--update` may
/// overwrite or remove; any other file in the folder is left alone. A folder
/// without such a manifest is refused unless it is empty, and so is a
/// manifest naming any other path (it was not written by a render), so that
/// no file of someone else's is lost and no path is injected.
fn written(dir: &Path) -> Result<Option<(Written, Langs)>> {
    let refuse = |reason: String| Error::NotSnapshot {
        path: dir.into(),
        reason,
    };
    let read_err = |source| Error::Read {
        path: dir.into(),
        source,
    };
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => return Err(Error::SnapshotIsFile { path: dir.into() }),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_err(e)),
    }
    let path = dir.join(MANIFEST);
    let json = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if std::fs::read_dir(dir).map_err(read_err)?.next().is_none() {
                return Ok(Some(Default::default()));
            }
            return Err(refuse(format!("no {MANIFEST} in it")));
        }
        Err(source) => return Err(Error::Read { path, source }),
    };
    let manifest: OwnManifest = serde_json::from_slice(&json)
        .map_err(|e| refuse(format!("its {MANIFEST} is not one letterpress wrote: {e}")))?;
    let mut written = Written::new();
    let mut langs = Langs::new();
    for (file, lang) in manifest
        .letters
        .into_iter()
        .flat_map(|l| l.files.into_values().map(move |f| (f, l.lang.clone())))
    {
        let plain = Path::new(&file).file_name() == Some(std::ffi::OsStr::new(&file))
            && !file.contains(['/', '\\']);
        let stem = file
            .rsplit_once('.')
            .filter(|(_, ext)| matches!(*ext, "eml" | "html" | "txt"))
            .map(|(stem, _)| stem.to_string());
        match stem {
            Some(stem) if plain => {
                if let Some(lang) = lang {
                    langs.insert(stem.clone(), lang);
                }
                written.entry(stem).or_default().insert(file);
            }
            _ => {
                return Err(refuse(format!(
                    "its {MANIFEST} lists {file:?}, which is not a letter file in the folder"
                )))
            }
        }
    }
    Ok(Some((written, langs)))
}

/// The outcome of a comparison.
#[derive(Debug)]
pub struct Report {
    /// Something changed, was added or was removed.
    pub differs: bool,
    /// Stems in the snapshot that the render no longer makes.
    pub removed: Vec<String>,
    /// Every file the snapshot's manifest lists: all that `--update` may
    /// remove.
    pub written: BTreeSet<String>,
    /// The run's own exit code (rows rejected or not).
    pub run_code: u8,
}

impl Report {
    /// 4 when the snapshot differs, else the run's own code.
    pub fn exit_code(&self) -> u8 {
        if self.differs {
            crate::exit::SNAPSHOT_DIFFERS
        } else {
            self.run_code
        }
    }
}

/// How `render --check` runs.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub formats: Formats,
    pub clock: crate::compose::stamp::Clock,
    /// Name changed letters without their diffs.
    pub quiet: bool,
    /// `--update`: the folder may be missing (it is about to be written).
    pub update: bool,
}

/// `letterpress render --check DIR`: renders `campaign` for `recipients`
/// in memory and compares it with `dir`, printing the report on stdout
/// (with `quiet`, the names of changed letters without their diffs).
pub fn check(
    config: &Options,
    dir: &Path,
    campaign: &Campaign,
    recipients: Recipients,
) -> Result<Report> {
    let (before, langs) = match written(dir)? {
        Some(w) => w,
        None if config.update => Default::default(),
        None => return Err(Error::NoSnapshot { path: dir.into() }),
    };
    let sink = SnapshotSink {
        dir,
        formats: config.formats,
        checked: Mutex::new(Vec::new()),
    };
    let quiet = config.quiet;
    let summary = run::run(
        campaign,
        recipients,
        &sink,
        config.clock,
        |outcome| {
            if let run::Outcome::Rejected(p) = outcome {
                eprintln!("{p}");
            }
            Ok(())
        },
        |_, _| {},
    )?;
    let mut checked = sink.checked.into_inner().expect("no panics while held");
    checked.sort_by_key(|c| c.row);
    let now: BTreeSet<&str> = checked.iter().map(|c| c.stem.as_str()).collect();
    let removed: Vec<String> = before
        .keys()
        .filter(|s| !now.contains(s.as_str()))
        .cloned()
        .collect();

    let mut out = std::io::stdout().lock();
    let (mut changed, mut added, mut same) = (0, 0, 0);
    let mut first_with: BTreeMap<&str, &str> = BTreeMap::new();
    for c in &checked {
        match &c.change {
            Change::Same => same += 1,
            Change::Added => {
                added += 1;
                let _ = writeln!(
                    out,
                    "added    {}{} (row {}, {})",
                    c.stem,
                    lang_label(c.lang.as_deref()),
                    c.row,
                    c.to
                );
            }
            Change::Changed { diff, key } => {
                changed += 1;
                if let Some(first) = first_with.get(key.as_str()) {
                    let _ = writeln!(
                        out,
                        "changed  {}{}: the same change as {first} (Message-ID aside)",
                        c.stem,
                        lang_label(c.lang.as_deref())
                    );
                } else {
                    let _ = writeln!(
                        out,
                        "changed  {}{} (row {}, {}):",
                        c.stem,
                        lang_label(c.lang.as_deref()),
                        c.row,
                        c.to
                    );
                    if !quiet {
                        let _ = write!(out, "{diff}");
                    }
                    first_with.insert(key, &c.stem);
                }
            }
        }
    }
    for r in &removed {
        let _ = writeln!(
            out,
            "removed  {r}{} (in {}, not rendered now)",
            lang_label(langs.get(r).map(String::as_str)),
            dir.display()
        );
    }
    let differs = changed + added + removed.len() > 0;
    let _ = writeln!(
        out,
        "snapshot {} {}: {changed} changed, {added} added, {} removed, {same} unchanged",
        dir.display(),
        if differs { "differs" } else { "matches" },
        removed.len()
    );
    Ok(Report {
        differs,
        removed,
        written: before.into_values().flatten().collect(),
        run_code: summary.exit_code(),
    })
}

/// After `--update` rendered into `dir`: removes the files the old
/// manifest listed (`before`, see [`Report::written`]) that the new one does
/// not, and nothing else.
pub fn remove(dir: &Path, before: &BTreeSet<String>) -> Result<()> {
    let now: BTreeSet<String> = written(dir)?
        .unwrap_or_default()
        .0
        .into_values()
        .flatten()
        .collect();
    for name in before.difference(&now) {
        let path: PathBuf = dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(Error::Write { path, source }),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eml_view_decodes_headers_and_quoted_printable() {
        let eml = b"From: =?utf-8?q?Zofia_Wi=C5=9Bniewska?= <z@example.org>\r\n\
Subject: =?utf-8?q?Cze=C5=9B=C4=87?=\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/alternative; boundary=\"b\"\r\n\r\n\
--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
we=E2=80=99ll be=\r\n there\r\n--b\r\nContent-Type: text/html; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\r\n<p>hi</p>\r\n--b--\r\n";
        let v = eml_view(eml);
        assert!(
            v.contains("From: Zofia Wiśniewska <z@example.org>\n"),
            "{v}"
        );
        assert!(v.contains("Subject: Cześć\n"), "{v}");
        assert!(v.contains("we’ll be there"), "{v}");
        assert!(v.contains("<p>hi\n</p>"), "{v}");
        assert!(!v.contains("Content-Type"), "{v}");
    }

    #[test]
    fn html_is_diffed_one_block_per_line() {
        assert_eq!(
            block_lines("<div><p>Dear <b>Ann</b>, <a href=x>hi</a></p><p>Bye</p></div>"),
            "<div>\n<p>Dear <b>Ann</b>, <a href=x>hi</a>\n</p>\n<p>Bye\n</p>\n</div>"
        );
    }
}
