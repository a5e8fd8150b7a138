//! The preview gallery: `index.html`, one static page (HTML, CSS and a little
//! JavaScript from `src/gallery/`, no network, works from `file://`), and
//! `manifest.js`, the run's letters as a script the page loads. Chromium
//! refuses `fetch()` of a local file, so the data is a script defining
//! `window.LETTERPRESS`, not JSON. This module writes both; it does not
//! render letters (the run hands it each [`Outcome`]).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::compose::attach::{File, Role};
use crate::compose::bidi::Direction;
use crate::compose::lang::Tag;
use crate::compose::message::{Mailbox, Parts, Stamp};
use crate::deliver::run::{Outcome, Summary};
use crate::error::{Error, Result};

/// The page's file name in the output folder.
pub const PAGE: &str = "index.html";
/// The data file's name in the output folder, next to `manifest.json`.
pub const DATA: &str = "manifest.js";

const HTML: &str = include_str!("gallery/index.html");
const CSS: &str = include_str!("gallery/gallery.css");
const JS: &str = include_str!("gallery/gallery.js");

/// The whole page: the same bytes for every campaign (the letters are in
/// [`DATA`]), CSS and JavaScript inlined so one file is all a browser needs
/// besides the data.
pub fn page() -> String {
    HTML.replace("/*CSS*/", CSS).replace("/*JS*/", JS)
}

/// Writes [`PAGE`] into `dir`.
pub fn write_page(dir: &Path) -> Result<()> {
    let path = dir.join(PAGE);
    std::fs::write(&path, page()).map_err(|source| Error::Write { path, source })
}

/// The headers of a built message, decoded, in the order
/// [`crate::compose::message::build`] writes them (without MIME-Version and
/// Content-Type, which are the same for every letter).
pub fn headers(parts: &Parts, stamp: &Stamp) -> Vec<(String, String)> {
    fn mailbox(m: &Mailbox) -> String {
        match &m.name {
            Some(n) => format!("{n} <{}>", m.address),
            None => m.address.clone(),
        }
    }
    let mut h = vec![("Date".to_string(), stamp.rfc5322_date())];
    h.push(("From".into(), mailbox(&parts.from)));
    if let Some(r) = &parts.reply_to {
        h.push(("Reply-To".into(), mailbox(r)));
    }
    h.push(("To".into(), mailbox(&parts.to)));
    h.push(("Subject".into(), parts.subject.clone()));
    h.push(("Message-ID".into(), stamp.message_id(parts.from.domain())));
    if let Some(u) = &parts.list_unsubscribe {
        h.push(("List-Unsubscribe".into(), u.clone()));
        if u.contains("<https://") {
            h.push((
                "List-Unsubscribe-Post".into(),
                "List-Unsubscribe=One-Click".into(),
            ));
        }
    }
    h.extend(parts.extra.iter().cloned());
    h
}

/// One row of the gallery: a letter, or a row that was rejected.
#[derive(Debug, Serialize)]
struct Entry<'a> {
    row: usize,
    line: u64,
    #[serde(skip_serializing_if = "str::is_empty")]
    to: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    subject: &'a str,
    /// The language of the letter's variant (`he`), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    lang: Option<&'a str>,
    /// `rtl` for a letter in a right-to-left language: the page shows its
    /// text part right to left.
    #[serde(skip_serializing_if = "Option::is_none")]
    dir: Option<&'static str>,
    /// The language the contact asked for when no variant had it.
    #[serde(skip_serializing_if = "Option::is_none")]
    fallback: Option<&'a str>,
    /// A right-to-left letter's text part, read back from its `.txt`: a
    /// page opened from `file://` cannot set the direction of the frame
    /// that shows the file, so it shows this copy instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    files: Option<&'a std::collections::BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sizes: Option<&'a std::collections::BTreeMap<String, u64>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    headers: Vec<(String, String)>,
    /// The files the letter carries, attachments and inline images.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    attachments: Vec<Attachment<'a>>,
    /// Why the row has no letter.
    #[serde(skip_serializing_if = "Option::is_none")]
    rejected: Option<String>,
}

/// One file of a letter, as the gallery lists it.
#[derive(Debug, Serialize)]
struct Attachment<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    content_type: &'a str,
    size: usize,
    sha256: String,
    /// Shown in the HTML rather than offered for download.
    inline: bool,
    /// The copy in the output folder ([`crate::deliver::sink::copy_path`]).
    href: String,
}

fn attachments(files: &[File]) -> Vec<Attachment<'_>> {
    files
        .iter()
        .map(|f| Attachment {
            name: &f.payload.name,
            content_type: &f.payload.content_type,
            size: f.payload.bytes.len(),
            sha256: f.payload.sha256_hex(),
            inline: matches!(f.role, Role::Inline { .. }),
            href: crate::deliver::sink::copy_path(&f.payload),
        })
        .collect()
}

/// Writes [`DATA`] as the run goes, one line per row, so a long list costs
/// no memory here (the same streaming as [`crate::deliver::run::Manifest`]). Unlike
/// `manifest.json`, rejected rows stay in row order with the letters: the
/// gallery lists every recipient. A duplicate address is among a letter's
/// warnings already ([`crate::deliver::run::run`] adds it).
pub struct GalleryData<W: Write> {
    out: W,
    path: PathBuf,
    first: bool,
    /// The folder the letters' `.txt` files were written to, when the
    /// right-to-left ones are to be copied into the data.
    texts: Option<PathBuf>,
    /// How many bytes of text parts the data carries so far.
    copied: usize,
}

/// At most this much of right-to-left text parts goes into the data (about
/// 1,300 Hebrew letters of the example): the page loads the whole data at
/// once, and a list of mostly Hebrew contacts would otherwise make it
/// hundreds of megabytes. Letters past it show the page's note (use
/// `serve`).
pub const TEXT_COPIES_MAX: usize = 8 << 20;

impl<W: Write> GalleryData<W> {
    pub fn start(mut out: W, path: PathBuf, head: &serde_json::Value) -> Result<Self> {
        let mut head = serde_json::to_string(head).expect("plain JSON");
        head.pop(); // the closing brace: letters follow
        let sep = if head.len() > 1 { "," } else { "" };
        let r = write!(
            out,
            "// letterpress gallery data: loaded by index.html.\nwindow.LETTERPRESS = {head}{sep}\"letters\": ["
        );
        let g = GalleryData {
            out,
            path,
            first: true,
            texts: None,
            copied: 0,
        };
        r.map_err(|e| g.err(e))?;
        Ok(g)
    }

    fn err(&self, source: std::io::Error) -> Error {
        Error::Write {
            path: self.path.clone(),
            source,
        }
    }

    /// Copies each right-to-left letter's text part, read back from its
    /// `.txt` in `dir`, into the data (see `Entry::text`): a page opened
    /// from disk shows it right to left. Read back rather than kept from
    /// the render, so that the run's memory does not grow; about 4 KB of
    /// data more per such letter of the example.
    pub fn with_texts(self, dir: PathBuf) -> Self {
        GalleryData {
            texts: Some(dir),
            ..self
        }
    }

    /// A right-to-left letter's `.txt`, when the data is to carry it.
    fn text(
        &mut self,
        rtl: bool,
        files: &std::collections::BTreeMap<String, String>,
    ) -> Option<String> {
        let dir = self.texts.as_ref().filter(|_| rtl)?;
        // Unreadable, or past the budget: the page says it cannot show the
        // text right to left.
        let text = std::fs::read_to_string(dir.join(files.get("txt")?)).ok()?;
        if self.copied + text.len() > TEXT_COPIES_MAX {
            return None;
        }
        self.copied += text.len();
        Some(text)
    }

    pub fn add(&mut self, outcome: &Outcome) -> Result<()> {
        let entry = match outcome {
            Outcome::Rejected(p) => Entry {
                row: p.row.unwrap_or(0),
                line: p.line.unwrap_or(0),
                to: "",
                name: "",
                subject: "",
                lang: None,
                dir: None,
                fallback: None,
                text: None,
                files: None,
                sizes: None,
                warnings: Vec::new(),
                headers: Vec::new(),
                attachments: Vec::new(),
                rejected: Some(p.to_string()),
            },
            Outcome::Done {
                letter,
                delivered,
                stamp,
                ..
            } => {
                let rtl = letter
                    .lang
                    .as_ref()
                    .is_some_and(|t| t.direction() == Direction::Rtl);
                Entry {
                    row: letter.row,
                    line: letter.line,
                    to: &letter.parts.to.address,
                    name: letter.parts.to.name.as_deref().unwrap_or(""),
                    subject: &letter.parts.subject,
                    lang: letter.lang.as_ref().map(Tag::as_str),
                    dir: rtl.then_some("rtl"),
                    fallback: letter.fallback.as_deref(),
                    text: self.text(rtl, &delivered.files),
                    files: Some(&delivered.files),
                    sizes: Some(&delivered.sizes),
                    warnings: letter.warnings.iter().map(|w| w.message.clone()).collect(),
                    headers: headers(&letter.parts, stamp),
                    attachments: attachments(&letter.files),
                    rejected: None,
                }
            }
        };
        let sep = if self.first { "\n" } else { ",\n" };
        self.first = false;
        let json = serde_json::to_string(&entry).expect("plain JSON");
        write!(self.out, "{sep}{json}").map_err(|e| self.err(e))
    }

    /// Closes the data with the run's summary; gives back the writer.
    pub fn finish(mut self, summary: &Summary) -> Result<W> {
        let summary = serde_json::to_string(summary).expect("plain JSON");
        let r =
            write!(self.out, "\n],\n\"summary\": {summary}}};\n").and_then(|()| self.out.flush());
        r.map_err(|e| self.err(e))?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_inlines_its_css_and_script_and_loads_the_data() {
        let p = page();
        assert!(!p.contains("/*CSS*/") && !p.contains("/*JS*/"));
        assert!(p.contains(&format!("<script src=\"{DATA}\"></script>")));
        // No network: nothing is loaded from another host.
        assert!(!p.contains("http://") && !p.contains("https://"), "{p}");
    }

    #[test]
    fn data_is_a_script_defining_one_global() {
        let head = serde_json::json!({"template": "t.mjml"});
        let g = GalleryData::start(Vec::new(), "m.js".into(), &head).unwrap();
        let out = g.finish(&Summary::default()).unwrap();
        let s = String::from_utf8(out).unwrap();
        let json = s
            .split_once("window.LETTERPRESS = ")
            .unwrap()
            .1
            .trim_end()
            .trim_end_matches(';');
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(v["template"], "t.mjml");
        assert_eq!(v["letters"].as_array().unwrap().len(), 0);
    }

    #[test]
    fn headers_are_decoded_and_in_message_order() {
        let parts = Parts {
            from: Mailbox::parse("Sender <s@example.org>").unwrap(),
            to: Mailbox::parse("Zofia Wiśniewska <z@example.org>").unwrap(),
            reply_to: None,
            return_path: None,
            subject: "Cześć".into(),
            list_unsubscribe: Some("<https://example.org/u>".into()),
            list_id: None,
            extra: vec![("X-Campaign".into(), "c1".into())],
            text: String::new(),
            html: String::new(),
        };
        let stamp = Stamp { date: 0, id: 1 };
        let names: Vec<_> = headers(&parts, &stamp)
            .into_iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        assert_eq!(
            names,
            [
                "Date: Thu, 01 Jan 1970 00:00:00 +0000",
                "From: Sender <s@example.org>",
                "To: Zofia Wiśniewska <z@example.org>",
                "Subject: Cześć",
                "Message-ID: <00000000000000000000000000000001@example.org>",
                "List-Unsubscribe: <https://example.org/u>",
                "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
                "X-Campaign: c1",
            ]
        );
    }

    #[test]
    fn right_to_left_text_copies_stop_at_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "שלום עולם").unwrap();
        let files: std::collections::BTreeMap<String, String> =
            [("txt".to_string(), "a.txt".to_string())].into();
        let mut g = GalleryData::start(Vec::new(), "m.js".into(), &serde_json::json!({}))
            .unwrap()
            .with_texts(dir.path().to_path_buf());
        assert_eq!(g.text(false, &files), None, "a left-to-right letter");
        assert_eq!(g.text(true, &files).as_deref(), Some("שלום עולם"));
        g.copied = TEXT_COPIES_MAX - 5;
        assert_eq!(g.text(true, &files), None, "past the budget");
        assert_eq!(g.copied, TEXT_COPIES_MAX - 5);
    }
}
