//! Suppression lists: the addresses never to send to (unsubscribed, bounced,
//! complained), read from `--suppress FILE`, and the file `bounces
//! --suppress-out` appends to. Addresses compare as `check` compares
//! duplicates: lower-cased. This module reads and writes the list files
//! only; it knows nothing of journals or mailboxes.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Why and where an address is suppressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The reason its file gives (`unsubscribed`, `bounced`, `complained`
    /// …), or `listed` when the file gives none.
    pub reason: String,
    pub file: PathBuf,
    pub line: u64,
}

impl std::fmt::Display for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({} line {})",
            self.reason,
            self.file.display(),
            self.line
        )
    }
}

/// The reason a line of a suppression file gives for a soft bounce: it
/// suppresses only once it appears for `Suppressions::soft_limit`
/// campaigns.
pub const SOFT_BOUNCE: &str = "soft-bounce";

/// Every suppressed address of the `--suppress` files, lower-cased.
#[derive(Debug, Clone, Default)]
pub struct Suppressions {
    by_address: HashMap<String, Entry>,
    /// Soft bounces seen per address: the campaigns, and the last line.
    soft: HashMap<String, (Vec<String>, Entry)>,
    /// An address soft-bounced in this many campaigns is suppressed.
    soft_limit: usize,
}

/// The comparison key of an address (the duplicate rule of `check`).
pub fn key(address: &str) -> String {
    address.trim().to_ascii_lowercase()
}

impl Suppressions {
    /// Reads `files` in order (the first reason given for an address
    /// wins). `soft_limit`: soft-bounce lines suppress an address once they
    /// name this many campaigns.
    pub fn load(files: &[PathBuf], soft_limit: usize) -> Result<Suppressions> {
        let mut s = Suppressions {
            soft_limit: soft_limit.max(1),
            ..Suppressions::default()
        };
        for f in files {
            let text = std::fs::read_to_string(f).map_err(|source| Error::Read {
                path: f.clone(),
                source,
            })?;
            s.add_text(f, &text)?;
        }
        let limit = s.soft_limit;
        for (addr, (campaigns, entry)) in std::mem::take(&mut s.soft) {
            if campaigns.len() >= limit {
                s.by_address.entry(addr).or_insert(Entry {
                    reason: format!("soft-bounced in {} campaigns", campaigns.len()),
                    ..entry
                });
            }
        }
        Ok(s)
    }

    /// One file's text: a CSV with an `email` column (and optionally
    /// `reason` and `campaign`), or one address a line (`#` comments).
    fn add_text(&mut self, file: &Path, text: &str) -> Result<()> {
        let first = text.lines().next().unwrap_or_default();
        let delimiter = [b',', b';', b'\t']
            .into_iter()
            .find(|d| first.as_bytes().contains(d));
        let header_has_email = first
            .split([',', ';', '\t'])
            .any(|c| c.trim().trim_matches('"').eq_ignore_ascii_case("email"));
        if !header_has_email {
            if delimiter.is_some() {
                return Err(Error::Usage(format!(
                    "{}: line 1: a suppression CSV needs an `email` column (and may have \
                     `reason`); or give one address a line",
                    file.display()
                )));
            }
            for (i, l) in text.lines().enumerate() {
                let l = l.trim();
                if l.is_empty() || l.starts_with('#') {
                    continue;
                }
                self.add(file, i as u64 + 1, l, "listed", None)?;
            }
            return Ok(());
        }
        let mut r = csv::ReaderBuilder::new()
            .delimiter(delimiter.unwrap_or(b','))
            .flexible(true)
            .from_reader(text.as_bytes());
        let head = r
            .headers()
            .map_err(|e| Error::Usage(format!("{}: line 1: {e}", file.display())))?
            .clone();
        let col = |name: &str| {
            head.iter()
                .position(|h| h.trim().eq_ignore_ascii_case(name))
        };
        let email = col("email").expect("checked above");
        let reason = col("reason");
        let campaign = col("campaign");
        for rec in r.records() {
            let rec = rec.map_err(|e| Error::Usage(format!("{}: {e}", file.display())))?;
            let line = rec.position().map_or(0, |p| p.line());
            let Some(addr) = rec.get(email).filter(|a| !a.trim().is_empty()) else {
                continue;
            };
            let why = reason
                .and_then(|i| rec.get(i))
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .unwrap_or("listed");
            let camp = campaign.and_then(|i| rec.get(i)).map(str::to_string);
            self.add(file, line, addr, why, camp)?;
        }
        Ok(())
    }

    fn add(
        &mut self,
        file: &Path,
        line: u64,
        address: &str,
        reason: &str,
        campaign: Option<String>,
    ) -> Result<()> {
        if !address.contains('@') || address.trim().contains(char::is_whitespace) {
            return Err(Error::Usage(format!(
                "{}: line {line}: `{address}` is not an email address; give one address a \
                 line, or a CSV with an `email` column",
                file.display()
            )));
        }
        let entry = Entry {
            reason: reason.to_string(),
            file: file.to_path_buf(),
            line,
        };
        if reason == SOFT_BOUNCE {
            let slot = self
                .soft
                .entry(key(address))
                .or_insert_with(|| (Vec::new(), entry.clone()));
            let c = campaign.unwrap_or_else(|| format!("line {line}"));
            if !slot.0.contains(&c) {
                slot.0.push(c);
            }
            slot.1 = entry;
            return Ok(());
        }
        self.by_address.entry(key(address)).or_insert(entry);
        Ok(())
    }

    /// Why `address` is suppressed, if it is.
    pub fn get(&self, address: &str) -> Option<&Entry> {
        if self.by_address.is_empty() {
            return None;
        }
        self.by_address.get(&key(address))
    }

    pub fn is_empty(&self) -> bool {
        self.by_address.is_empty()
    }

    pub fn len(&self) -> usize {
        self.by_address.len()
    }

    /// Adds an address (e.g. a bounce the journal knows) unless listed.
    pub fn insert(&mut self, address: &str, entry: Entry) {
        self.by_address.entry(key(address)).or_insert(entry);
    }
}

/// One line to append to a suppression file.
#[derive(Debug, Clone)]
pub struct Line<'a> {
    pub email: &'a str,
    pub reason: &'a str,
    pub campaign: &'a str,
    pub detail: &'a str,
}

/// Appends `lines` to the suppression CSV at `path` (made with its header
/// line `email,reason,campaign,detail` when new), skipping lines it
/// already holds (same address, reason and campaign). Returns how many
/// were written.
pub fn append(path: &Path, lines: &[Line<'_>]) -> Result<usize> {
    let werr = |source: std::io::Error| Error::Write {
        path: path.into(),
        source,
    };
    let existing = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(Error::Read {
                path: path.into(),
                source,
            })
        }
    };
    let mut have = std::collections::HashSet::new();
    if !existing.is_empty() {
        let first = existing.lines().next().unwrap_or_default();
        if !first
            .to_ascii_lowercase()
            .starts_with("email,reason,campaign")
        {
            return Err(Error::Usage(format!(
                "{}: --suppress-out writes a CSV with the header `email,reason,campaign,detail`, \
                 and this file has another first line; give a new file",
                path.display()
            )));
        }
        let mut r = csv::ReaderBuilder::new()
            .flexible(true)
            .from_reader(existing.as_bytes());
        for rec in r.records().flatten() {
            have.insert((
                key(rec.get(0).unwrap_or_default()),
                rec.get(1).unwrap_or_default().to_string(),
                rec.get(2).unwrap_or_default().to_string(),
            ));
        }
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(werr)?;
    let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
    if existing.is_empty() {
        w.write_record(["email", "reason", "campaign", "detail"])
            .expect("to memory");
    } else if !existing.ends_with('\n') {
        w.write_record::<_, &str>([]).ok();
    }
    let mut n = 0;
    for l in lines {
        let k = (key(l.email), l.reason.to_string(), l.campaign.to_string());
        if have.insert(k) {
            w.write_record([l.email.trim(), l.reason, l.campaign, l.detail])
                .expect("to memory");
            n += 1;
        }
    }
    let bytes = w.into_inner().expect("to memory");
    file.write_all(&bytes).map_err(werr)?;
    file.sync_all().map_err(werr)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, limit: usize) -> Suppressions {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.csv");
        std::fs::write(&p, text).unwrap();
        Suppressions::load(&[p], limit).unwrap()
    }

    #[test]
    fn a_csv_with_reasons_and_a_plain_list_compare_lower_cased() {
        let s = load(
            "name,Email,reason\nAnn,Ann@Example.org,unsubscribed\nBo,bo@x.org,\n",
            3,
        );
        assert_eq!(s.get("ann@example.ORG").unwrap().reason, "unsubscribed");
        assert_eq!(s.get("ann@example.ORG").unwrap().line, 2);
        assert_eq!(s.get("BO@x.org").unwrap().reason, "listed");
        assert!(s.get("cy@x.org").is_none());
        let s = load("# opted out\nA@B.org\n\nc@d.org\n", 3);
        assert_eq!(s.len(), 2);
        assert_eq!(s.get("a@b.org").unwrap().line, 2);
    }

    #[test]
    fn a_csv_without_an_email_column_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.csv");
        std::fs::write(&p, "mail,reason\na@b.org,x\n").unwrap();
        let e = Suppressions::load(&[p], 3).unwrap_err().to_string();
        assert!(e.contains("needs an `email` column"), "{e}");
    }

    #[test]
    fn soft_bounces_suppress_from_the_limit_of_campaigns() {
        let text = "email,reason,campaign\n\
                    a@x.org,soft-bounce,c1\na@x.org,soft-bounce,c1\na@x.org,soft-bounce,c2\n\
                    b@x.org,soft-bounce,c1\nb@x.org,soft-bounce,c2\nb@x.org,soft-bounce,c3\n";
        let s = load(text, 3);
        assert!(s.get("a@x.org").is_none());
        assert_eq!(
            s.get("b@x.org").unwrap().reason,
            "soft-bounced in 3 campaigns"
        );
        assert!(load(text, 2).get("a@x.org").is_some());
    }

    #[test]
    fn append_writes_a_header_once_and_no_line_twice() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.csv");
        let l = Line {
            email: "A@x.org",
            reason: "bounced",
            campaign: "c",
            detail: "5.1.1 no such user",
        };
        assert_eq!(append(&p, std::slice::from_ref(&l)).unwrap(), 1);
        assert_eq!(append(&p, &[l]).unwrap(), 0);
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(
            text,
            "email,reason,campaign,detail\nA@x.org,bounced,c,5.1.1 no such user\n"
        );
        assert_eq!(
            Suppressions::load(&[p], 3)
                .unwrap()
                .get("a@x.org")
                .unwrap()
                .reason,
            "bounced"
        );
    }
}
