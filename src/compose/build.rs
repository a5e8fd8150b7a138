//! The one build step: from a compiled campaign and one recipient to the
//! finished letter, its stamp, the `.eml` bytes (signed when a signer is
//! given) and its warnings. `render`, `check`, `serve`, the snapshot check
//! and `send` all build through [`Builder::build`]; nothing else merges,
//! stamps or encodes a message, so they cannot disagree.
//!
//! Pure: the run's date comes in with the [`Builder`] (read once, at the
//! edge), and signing is behind the [`Sign`] trait, implemented by the DKIM
//! signer in [`crate::deliver`].

use crate::compose::campaign::{Campaign, Letter};
use crate::compose::mime_tree;
use crate::compose::recipients::{show_size, Limits, Recipient};
use crate::compose::stamp::{Clock, Stamp};
use crate::report::{Problem, Severity};

/// Something that signs a built message (DKIM): the message in, the
/// message with its signature header out. Shared by every building thread.
pub trait Sign: Send + Sync {
    fn sign(&self, eml: &[u8], date: i64) -> Vec<u8>;
}

/// One recipient's letter, built.
#[derive(Debug)]
pub struct Built {
    /// The merged headers and bodies, and the letter's warnings (HTML too
    /// big for Gmail, an empty subject …).
    pub letter: Letter,
    /// The Date and Message-ID the message carries.
    pub stamp: Stamp,
    /// The whole message, CRLF line ends, signed when the builder signs.
    pub eml: Vec<u8>,
}

impl Built {
    /// The Message-ID header's value.
    pub fn message_id(&self) -> String {
        self.stamp.message_id(self.letter.parts.from.domain())
    }
}

/// What a run builds with: the campaign, the clock and the run's date, and
/// an optional signer.
#[derive(Clone, Copy)]
pub struct Builder<'a> {
    pub campaign: &'a Campaign,
    pub clock: Clock,
    /// The run's date ([`Clock::now`], read once at the start of a run).
    pub now: i64,
    pub signer: Option<&'a dyn Sign>,
}

impl std::fmt::Debug for Builder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("clock", &self.clock)
            .field("now", &self.now)
            .field("signed", &self.signer.is_some())
            .finish_non_exhaustive()
    }
}

impl<'a> Builder<'a> {
    /// A builder that does not sign.
    pub fn new(campaign: &'a Campaign, clock: Clock, now: i64) -> Builder<'a> {
        Builder {
            campaign,
            clock,
            now,
            signer: None,
        }
    }

    pub fn signed_by(self, signer: Option<&'a dyn Sign>) -> Builder<'a> {
        Builder { signer, ..self }
    }

    /// Merges, stamps, encodes and (when a signer is set) signs the letter
    /// of `r`. A row that cannot become a message (a bad address, a header
    /// injection, a header word too long for a line) is a located
    /// [`Problem`], never a panic.
    pub fn build(&self, r: &Recipient) -> Result<Built, Problem> {
        let mut letter = self.campaign.render(r)?;
        let plan = self.campaign.variant(r).files();
        if !plan.is_empty() {
            let (files, warnings) =
                plan.files(r, &mut letter.parts.html, self.campaign.csv_name())?;
            letter.files = files;
            letter.warnings.extend(warnings);
        }
        self.build_letter(letter)
    }

    /// [`Builder::build`] for a letter already merged (and given its files).
    pub fn build_letter(&self, letter: Letter) -> Result<Built, Problem> {
        let stamp = self.clock.stamp(self.now, letter.fingerprint);
        let eml = mime_tree::build(&letter.parts, &letter.files, &stamp).map_err(|too_long| {
            Problem::new(
                Severity::Error,
                self.campaign.csv_name(),
                too_long.message(),
            )
            .at_line(letter.line)
            .at_row(letter.row)
        })?;
        let eml = match self.signer {
            Some(s) => s.sign(&eml, self.now),
            None => eml,
        };
        if let Some(message) = oversized(&eml, self.campaign.limits()) {
            return Err(
                Problem::new(Severity::Error, self.campaign.csv_name(), message)
                    .at_line(letter.line)
                    .at_row(letter.row),
            );
        }
        Ok(Built { letter, stamp, eml })
    }
}

/// Why `eml` is too big to hand to a mail server, if it is: relays refuse
/// a header block or a message over their limits, often only after the
/// whole letter was sent to them.
fn oversized(eml: &[u8], limits: Limits) -> Option<String> {
    let header = eml
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(eml.len(), |i| i + 2);
    if header > limits.header {
        return Some(format!(
            "its letter's headers take {header} bytes, more than the limit of {}; \
             shorten the values merged into the headers, or raise the limit with \
             --max-header-size",
            show_size(limits.header)
        ));
    }
    if eml.len() > limits.message {
        return Some(format!(
            "its letter takes {} bytes, more than the limit of {}; shorten the values \
             merged into it, or raise the limit with --max-message-size",
            eml.len(),
            show_size(limits.message)
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::recipients::Recipients;
    use crate::compose::template::TemplateFile;

    fn campaign(dir: &std::path::Path, csv: &str) -> (Campaign, Recipients) {
        let t = dir.join("t.mjml");
        std::fs::write(
            &t,
            "From: A <a@x.org>\nSubject: Hi {{name}}\n\n<mjml><mj-body><mj-section><mj-column>\
             <mj-text>Dear {{name}}</mj-text></mj-column></mj-section></mj-body></mjml>\n",
        )
        .unwrap();
        let c = dir.join("r.csv");
        std::fs::write(&c, csv).unwrap();
        let r = Recipients::open(c.to_str().unwrap(), None).unwrap();
        let name = r.name().to_string();
        let campaign =
            Campaign::compile(TemplateFile::load(&t).unwrap(), r.columns(), &name).unwrap();
        (campaign, r)
    }

    struct Mark;
    impl Sign for Mark {
        fn sign(&self, eml: &[u8], date: i64) -> Vec<u8> {
            let mut out = format!("X-Signed: {date}\r\n").into_bytes();
            out.extend_from_slice(eml);
            out
        }
    }

    #[test]
    fn builds_stamps_and_signs_through_one_step() {
        let dir = tempfile::tempdir().unwrap();
        let (c, mut rows) = campaign(dir.path(), "email,name\nann@x.org,Ann\n");
        let r = rows.next_row().unwrap().unwrap().unwrap();
        let b = Builder::new(&c, Clock::Fixed(86400), 86400);
        let built = b.build(&r).unwrap();
        let eml = String::from_utf8(built.eml.clone()).unwrap();
        assert!(eml.contains("Subject: Hi Ann\r\n"), "{eml}");
        assert!(eml.contains("Date: Fri, 02 Jan 1970 00:00:00 +0000\r\n"));
        assert!(eml.contains(&format!("Message-ID: {}\r\n", built.message_id())));
        assert_eq!(built.stamp.id, built.letter.fingerprint);
        // The same inputs give the same bytes; a signer only adds its header.
        let signed = b.signed_by(Some(&Mark)).build(&r).unwrap();
        assert_eq!(
            signed.eml[..].strip_prefix(b"X-Signed: 86400\r\n"),
            Some(&built.eml[..])
        );
    }

    #[test]
    fn a_row_that_cannot_be_built_is_a_located_problem() {
        let dir = tempfile::tempdir().unwrap();
        let long = "w".repeat(1200);
        let (c, mut rows) = campaign(dir.path(), &format!("email,name\nann@x.org,{long}\n"));
        let r = rows.next_row().unwrap().unwrap().unwrap();
        let p = Builder::new(&c, Clock::Fixed(0), 0).build(&r).unwrap_err();
        assert_eq!((p.row, p.line), (Some(1), Some(2)));
        assert!(p.message.contains("Subject header"), "{}", p.message);
    }

    #[test]
    fn a_letter_over_the_header_or_message_limit_is_a_located_problem() {
        let dir = tempfile::tempdir().unwrap();
        // Folded words: a long name the Subject header can carry.
        let name = "word ".repeat(400);
        let csv = format!("email,name\nann@x.org,{name}\nbo@x.org,Bo\n");
        let (c, mut rows) = campaign(dir.path(), &csv);
        let big = rows.next_row().unwrap().unwrap().unwrap();
        let small = rows.next_row().unwrap().unwrap().unwrap();
        let limits = Limits {
            header: 1024,
            ..Limits::default()
        };
        let c = c.limited(limits);
        let b = Builder::new(&c, Clock::Fixed(0), 0);
        let p = b.build(&big).unwrap_err();
        assert_eq!((p.row, p.line), (Some(1), Some(2)));
        assert!(p.message.contains("--max-header-size"), "{}", p.message);
        assert!(b.build(&small).is_ok());

        let c = c.limited(Limits {
            message: 2048,
            ..limits
        });
        let p = Builder::new(&c, Clock::Fixed(0), 0)
            .build(&small)
            .unwrap_err();
        assert_eq!(p.row, Some(2));
        assert!(p.message.contains("--max-message-size"), "{}", p.message);
    }
}
