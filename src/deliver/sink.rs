//! Where built messages go. One trait, several sinks: files here, SMTP in
//! its own module. A sink is called from several threads at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::compose::campaign::Letter;
use crate::error::{Error, Result};

/// A built message on its way out.
#[derive(Debug)]
pub struct Outgoing<'a> {
    pub letter: &'a Letter,
    /// The whole `.eml`, CRLF line ends.
    pub eml: &'a [u8],
}

/// What a sink did with one message, for the manifest.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct Delivered {
    /// Format -> file name, relative to the output folder.
    pub files: BTreeMap<String, String>,
    /// Format -> size in bytes.
    pub sizes: BTreeMap<String, u64>,
}

/// The delivery interface shared by the file and SMTP sinks.
pub trait Sink: Sync {
    /// Delivers one message. An error here concerns this message only.
    fn deliver(&self, out: &Outgoing<'_>) -> std::result::Result<Delivered, String>;
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
    pub fn files<'a>(&self, out: &'a Outgoing<'_>) -> Vec<(&'static str, String, &'a [u8])> {
        let stem = file_stem(out.letter.row, &out.letter.parts.to.address);
        let parts = &out.letter.parts;
        [
            ("eml", self.eml, out.eml),
            ("html", self.html, parts.html.as_bytes()),
            ("txt", self.txt, parts.text.as_bytes()),
        ]
        .into_iter()
        .filter(|(_, on, _)| *on)
        .map(|(ext, _, bytes)| (ext, format!("{stem}.{ext}"), bytes))
        .collect()
    }
}

impl Delivered {
    /// Notes that `name` holds this letter's `ext` part of `bytes`.
    pub fn record(&mut self, ext: &str, name: String, bytes: &[u8]) {
        self.files.insert(ext.to_string(), name);
        self.sizes.insert(ext.to_string(), bytes.len() as u64);
    }
}

impl Sink for FileSink {
    fn deliver(&self, out: &Outgoing<'_>) -> std::result::Result<Delivered, String> {
        let mut d = Delivered::default();
        for (ext, name, bytes) in self.formats.files(out) {
            debug_assert!(!name.contains(['/', '\\']));
            std::fs::write(self.dir.join(&name), bytes)
                .map_err(|e| format!("cannot write {}: {e}", self.dir.join(&name).display()))?;
            d.record(ext, name, bytes);
        }
        Ok(d)
    }
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
