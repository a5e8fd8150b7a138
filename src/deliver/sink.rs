//! The delivery seam, shaped like lettre's transports: a sink takes an
//! envelope and a built letter and answers with a receipt, or with a
//! [`Failure`] that says what happened (transient, permanent with the code
//! and reply, ambiguous, fatal). Every destination is one implementation:
//! files and the null sink here, SMTP in [`crate::deliver::smtp`], the local
//! MTA in [`crate::deliver::sendmail`], and the preview's memory and
//! snapshot sinks. What to do about a failure (journal, retry, pace) is the
//! caller's business ([`crate::deliver::run`], [`crate::deliver::send`]).
//! A sink is called from several threads at once.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::compose::attach::{Payload, Role};
use crate::compose::build::Built;
use crate::error::{Error, Result};

/// Who a message is from and to, for the transport (SMTP's MAIL FROM and
/// RCPT TO, sendmail's `-f` and its argument).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    pub from: &'a str,
    pub to: &'a str,
}

impl<'a> Envelope<'a> {
    /// The letter's `Return-Path:` (else its From) and To addresses.
    pub fn of(built: &'a Built) -> Envelope<'a> {
        let parts = &built.letter.parts;
        Envelope {
            from: parts.return_path.as_deref().unwrap_or(&parts.from.address),
            to: &built.letter.parts.to.address,
        }
    }
}

/// What a sink did with one message.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The receiving end's word: the server's reply, or what the sink did.
    pub reply: String,
    /// The files written or compared, for the manifest (empty for SMTP).
    pub delivered: Delivered,
}

/// Why a message was not delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Not delivered, safe to try again: a 4xx reply, a hang-up or timeout
    /// before the body was complete, a busy server, an MTA's "try later".
    /// Without a `code` (no reply at all) it is about the destination, not
    /// the recipient: when retries run out, `send` stops the run.
    Transient { code: Option<u16>, reply: String },
    /// Refused for good (5xx, an MTA's "no such user"; `code` is the SMTP
    /// reply code when there is one): this recipient failed; the run goes
    /// on.
    Permanent { code: Option<u16>, reply: String },
    /// The message may or may not have been taken (a hang-up after the
    /// body): never retried automatically.
    Ambiguous { reason: String },
    /// The destination cannot be used at all (login refused, TLS, an
    /// unreachable server, an unwritable folder): the run stops.
    Fatal(String),
}

impl Failure {
    /// The reply or reason, one line.
    pub fn message(&self) -> &str {
        match self {
            Failure::Transient { reply, .. } | Failure::Permanent { reply, .. } => reply,
            Failure::Ambiguous { reason } => reason,
            Failure::Fatal(m) => m,
        }
    }
}

/// The delivery interface of every destination.
pub trait Sink: Sync {
    /// Delivers one built message to `envelope.to`.
    fn deliver(
        &self,
        envelope: &Envelope<'_>,
        built: &Built,
    ) -> std::result::Result<Receipt, Failure>;
}

/// Takes every message and does nothing: `send --dry-run`.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullSink;

impl Sink for NullSink {
    fn deliver(&self, _: &Envelope<'_>, _: &Built) -> std::result::Result<Receipt, Failure> {
        Ok(Receipt {
            reply: "dry run: not sent".into(),
            delivered: Delivered::default(),
        })
    }
}

/// What a sink wrote for one message, for the manifest.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct Delivered {
    /// Format -> file name, relative to the output folder.
    pub files: BTreeMap<String, String>,
    /// Format -> size in bytes.
    pub sizes: BTreeMap<String, u64>,
    /// The copies of the files the letter carries, relative to the output
    /// folder ([`copy_path`]), in the letter's order.
    pub copies: Vec<String>,
}

/// Which files [`FileSink`] writes per recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Formats {
    pub eml: bool,
    pub html: bool,
    pub txt: bool,
    /// The preview gallery: `index.html` and `manifest.js` for the whole run
    /// (not a per-recipient file; see [`crate::preview::gallery`]).
    pub index: bool,
}

impl Default for Formats {
    fn default() -> Self {
        Formats {
            eml: true,
            html: true,
            txt: true,
            index: true,
        }
    }
}

impl std::str::FromStr for Formats {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let mut f = Formats {
            eml: false,
            html: false,
            txt: false,
            index: false,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "eml" => f.eml = true,
                "html" => f.html = true,
                "txt" => f.txt = true,
                "index" => f.index = true,
                other => {
                    return Err(format!(
                        "unknown format `{other}`; use eml, html, txt, index"
                    ))
                }
            }
        }
        if f == (Formats {
            eml: false,
            html: false,
            txt: false,
            index: false,
        }) {
            return Err("name at least one format: eml, html, txt, index".into());
        }
        Ok(f)
    }
}

/// Writes `NNNN-<safe address>.{eml,html,txt}` into one folder.
#[derive(Debug)]
pub struct FileSink {
    dir: PathBuf,
    formats: Formats,
}

impl FileSink {
    /// Prepares `dir`: creates it, or refuses a non-empty one unless `force`.
    pub fn create(dir: &Path, formats: Formats, force: bool) -> Result<FileSink> {
        let write_err = |source| Error::Write {
            path: dir.into(),
            source,
        };
        match std::fs::read_dir(dir) {
            Ok(mut entries) => {
                if entries.next().is_some() && !force {
                    return Err(Error::OutDirNotEmpty { path: dir.into() });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // A dangling symlink reads as missing, then cannot be
                // created ("File exists"): say what it is.
                if let Ok(target) = std::fs::read_link(dir) {
                    return Err(write_err(std::io::Error::other(format!(
                        "it is a broken symbolic link (to {}, which does not exist); \
                         create its target or choose another --out",
                        target.display()
                    ))));
                }
                std::fs::create_dir_all(dir).map_err(write_err)?
            }
            Err(e) => return Err(write_err(e)),
        }
        Ok(FileSink {
            dir: dir.into(),
            formats,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The file stem for a recipient: the row number, then the address with
/// everything but `[a-z0-9._-]` replaced, so no CSV value can name a path
/// outside the output folder.
pub fn file_stem(row: usize, address: &str) -> String {
    let mut safe: String = address
        .chars()
        .take(64)
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '.' | '-') => c,
            _ => '_',
        })
        .collect();
    if safe.starts_with('.') {
        safe.replace_range(0..1, "_");
    }
    format!("{row:04}-{safe}")
}

impl Formats {
    /// The files one letter makes in this selection, as (format, file
    /// name, bytes), named by [`file_stem`].
    /// The `.html` file is the preview: its `cid:` images point to their
    /// copies in the folder ([`copy_path`]).
    pub fn files<'a>(&self, out: &'a Built) -> Vec<(&'static str, String, Cow<'a, [u8]>)> {
        let stem = file_stem(out.letter.row, &out.letter.parts.to.address);
        let parts = &out.letter.parts;
        [
            ("eml", self.eml, Cow::Borrowed(&out.eml[..])),
            ("html", self.html, preview_html(out)),
            ("txt", self.txt, Cow::Borrowed(parts.text.as_bytes())),
        ]
        .into_iter()
        .filter(|(_, on, _)| *on)
        .map(|(ext, _, bytes)| (ext, format!("{stem}.{ext}"), bytes))
        .collect()
    }
}

/// Where a file a letter carries is copied in the output folder, relative
/// to it: `files/<first 16 hex digits of its SHA-256>/<name>`, the name cut
/// down to `[A-Za-z0-9._-]`. The same content is one copy for the run.
pub fn copy_path(p: &Payload) -> String {
    let mut safe: String = p
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe.is_empty() || safe.starts_with('.') {
        safe.insert(0, '_');
    }
    format!("files/{}/{safe}", &p.sha256_hex()[..16])
}

/// The HTML with each `cid:` image pointing to its copy in the folder (the
/// letter's own HTML, borrowed, when it has no inline image).
pub fn preview_html(out: &Built) -> Cow<'_, [u8]> {
    let html = &out.letter.parts.html;
    let mut inline = out.letter.files.iter().filter_map(|f| match &f.role {
        Role::Inline { cid } => Some((cid, &f.payload)),
        Role::Attachment => None,
    });
    let Some(first) = inline.next() else {
        return Cow::Borrowed(html.as_bytes());
    };
    let mut page = html.clone();
    for (cid, payload) in std::iter::once(first).chain(inline) {
        page = page.replace(&format!("cid:{cid}"), &copy_path(payload));
    }
    Cow::Owned(page.into_bytes())
}

/// Writes the copy of `p` under `dir` unless it is there already.
fn write_copy(dir: &Path, p: &Payload) -> std::io::Result<()> {
    let path = dir.join(copy_path(p));
    if path.is_file() {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    // Written aside and renamed: a letter on another thread may copy the
    // same file at the same time, and none may see half of it.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_file_name(format!(".part-{}-{n}", std::process::id()));
    std::fs::write(&tmp, &p.bytes)?;
    std::fs::rename(&tmp, &path)
}

impl Delivered {
    /// Notes that `name` holds this letter's `ext` part of `bytes`.
    pub fn record(&mut self, ext: &str, name: String, bytes: &[u8]) {
        self.files.insert(ext.to_string(), name);
        self.sizes.insert(ext.to_string(), bytes.len() as u64);
    }
}

impl Sink for FileSink {
    /// Each letter appears whole or not at all: on a failed write the
    /// partial file and the letter's earlier files are removed. The happy
    /// path is one plain write per file (no temporary name and rename).
    /// A full disk or a file size limit (`EFBIG`; SIGXFSZ is ignored by
    /// [`crate::cli::commands::main`]) is fatal: every later letter would
    /// fail the same way.
    fn deliver(&self, _: &Envelope<'_>, out: &Built) -> std::result::Result<Receipt, Failure> {
        let mut d = Delivered::default();
        let mut written: Vec<PathBuf> = Vec::new();
        for (ext, name, bytes) in self.formats.files(out) {
            debug_assert!(!name.contains(['/', '\\']));
            let path = self.dir.join(&name);
            if let Err(e) = std::fs::write(&path, &bytes) {
                // Best effort: a file that cannot be removed either is
                // still named in the message.
                let _ = std::fs::remove_file(&path);
                for p in &written {
                    let _ = std::fs::remove_file(p);
                }
                let reply = format!("cannot write {}: {e}", path.display());
                return Err(if out_of_room(&e) {
                    Failure::Fatal(reply)
                } else {
                    Failure::Permanent { code: None, reply }
                });
            }
            written.push(path);
            d.record(ext, name, &bytes);
        }
        // The gallery links the attachments and the preview shows the
        // images: copies beside the letters.
        if self.formats.html || self.formats.index {
            for f in &out.letter.files {
                d.copies.push(copy_path(&f.payload));
                if let Err(e) = write_copy(&self.dir, &f.payload) {
                    for p in &written {
                        let _ = std::fs::remove_file(p);
                    }
                    let reply = format!(
                        "cannot write {}: {e}",
                        self.dir.join(copy_path(&f.payload)).display()
                    );
                    return Err(if out_of_room(&e) {
                        Failure::Fatal(reply)
                    } else {
                        Failure::Permanent { code: None, reply }
                    });
                }
            }
        }
        Ok(Receipt {
            reply: format!("written to {}", self.dir.display()),
            delivered: d,
        })
    }
}

/// A full disk, a full quota or a file size limit: no later write will do
/// better.
fn out_of_room(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{FileTooLarge, QuotaExceeded, StorageFull};
    matches!(e.kind(), StorageFull | QuotaExceeded | FileTooLarge)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_stem_cannot_escape_the_folder() {
        assert_eq!(
            file_stem(7, "Anna.K@Example.org"),
            "0007-anna.k_example.org"
        );
        assert_eq!(
            file_stem(12345, "../../etc/passwd"),
            "12345-_._.._etc_passwd"
        );
        assert!(!file_stem(1, "a/b\\c@x").contains(['/', '\\']));
        assert_eq!(file_stem(1, &"a".repeat(200)).len(), 5 + 64);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 10_000,
            failure_persistence: None,
            ..Default::default()
        })]

        /// No address, however hostile, names a file outside the folder.
        #[test]
        fn no_address_names_a_path_outside_the_folder(
            row in 0usize..1_000_000,
            address in proptest::prelude::any::<String>(),
        ) {
            let stem = file_stem(row, &address);
            let dir = Path::new("/out");
            let path = dir.join(format!("{stem}.eml"));
            proptest::prop_assert!(!stem.contains(['/', '\\', '\0']), "{stem}");
            proptest::prop_assert!(!stem.starts_with('.'));
            proptest::prop_assert_eq!(path.parent(), Some(dir));
            proptest::prop_assert!(stem.is_ascii() && stem.len() <= 64 + 12);
        }
    }

    #[test]
    fn formats_parse() {
        let f: Formats = "eml, txt".parse().unwrap();
        assert!(f.eml && f.txt && !f.html);
        assert!("pdf".parse::<Formats>().is_err());
        let f: Formats = "index,html".parse().unwrap();
        assert!(f.index && f.html && !f.eml && !f.txt);
        assert!(Formats::default().index);
        assert!("".parse::<Formats>().is_err());
    }

    #[test]
    fn refuses_non_empty_dir_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x"), "").unwrap();
        let e = FileSink::create(dir.path(), Formats::default(), false).unwrap_err();
        assert!(e.to_string().contains("--force"));
        assert!(FileSink::create(dir.path(), Formats::default(), true).is_ok());
        assert!(FileSink::create(&dir.path().join("new/sub"), Formats::default(), false).is_ok());
    }
}
