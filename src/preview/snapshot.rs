//! `letterpress render --check DIR`: render in memory and compare with the
//! letters in a snapshot folder made by a deterministic render. A changed
//! letter is shown as a unified diff of what a person reads (decoded
//! headers, text part, HTML part), never of quoted-printable lines. With
//! `--update` the folder is rewritten afterwards. Compares the per-letter
//! files only: `manifest.json` and the gallery hold paths and run facts, so
//! they are rewritten by `--update` but not compared.

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
    view(
        Some(headers),
        m.body_text(0).as_deref(),
        m.body_html(0).as_deref(),
    )
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
    change: Change,
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
                    if old != bytes {
                        differ.push(name.clone());
                    }
                }
                None => differ.push(name.clone()),
            }
            d.record(ext, name, bytes);
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
                change,
            });
        Ok(d)
    }
}

/// The letter stems in a snapshot folder: files named `NNNN-….eml|html|txt`.
fn stems_in(dir: &Path, formats: Formats) -> Result<BTreeSet<String>> {
    let err = |source| Error::Read {
        path: dir.into(),
        source,
    };
    let mut stems = BTreeSet::new();
    for entry in std::fs::read_dir(dir).map_err(err)? {
        let name = entry.map_err(err)?.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some((stem, ext)) = name.rsplit_once('.') else {
            continue;
        };
        let ours = match ext {
            "eml" => formats.eml,
            "html" => formats.html,
            "txt" => formats.txt,
            _ => false,
        };
        let numbered = stem
            .split_once('-')
            .is_some_and(|(n, _)| n.len() >= 4 && n.bytes().all(|b| b.is_ascii_digit()));
        if ours && numbered {
            stems.insert(stem.to_string());
        }
    }
    Ok(stems)
}

/// The outcome of a comparison.
#[derive(Debug)]
pub struct Report {
    /// Something changed, was added or was removed.
    pub differs: bool,
    /// Stems in the snapshot that the render no longer makes.
    pub removed: Vec<String>,
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
    if dir.exists() && !dir.is_dir() {
        return Err(Error::SnapshotIsFile { path: dir.into() });
    }
    if !dir.is_dir() && !config.update {
        return Err(Error::NoSnapshot { path: dir.into() });
    }
    let before = if dir.is_dir() {
        stems_in(dir, config.formats)?
    } else {
        BTreeSet::new()
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
        .iter()
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
                let _ = writeln!(out, "added    {} (row {}, {})", c.stem, c.row, c.to);
            }
            Change::Changed { diff, key } => {
                changed += 1;
                if let Some(first) = first_with.get(key.as_str()) {
                    let _ = writeln!(
                        out,
                        "changed  {}: the same change as {first} (Message-ID aside)",
                        c.stem
                    );
                } else {
                    let _ = writeln!(out, "changed  {} (row {}, {}):", c.stem, c.row, c.to);
                    if !quiet {
                        let _ = write!(out, "{diff}");
                    }
                    first_with.insert(key, &c.stem);
                }
            }
        }
    }
    for r in &removed {
        let _ = writeln!(out, "removed  {r} (in {}, not rendered now)", dir.display());
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
        run_code: summary.exit_code(),
    })
}

/// After `--update` rendered into `dir`: removes the files of the letters
/// no longer rendered.
pub fn remove(dir: &Path, removed: &[String]) -> Result<()> {
    for stem in removed {
        for ext in ["eml", "html", "txt"] {
            let path: PathBuf = dir.join(format!("{stem}.{ext}"));
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(Error::Write { path, source }),
            }
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
