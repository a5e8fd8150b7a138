//! What comes back after a send: reads returned mail from an mbox file or a
//! Maildir (mail-parser's readers) and classifies each message as a hard or
//! soft bounce, a complaint, an auto-reply, or unclassified. It never
//! guesses: a message is a bounce only when a delivery status notification
//! (RFC 3464) says so, or a plain-text bounce from a mailer daemon names the
//! failed address and says whether the failure is permanent; a complaint
//! only when an abuse report (RFC 5965 ARF) says `Feedback-Type: abuse`.
//! This module classifies and matches; the journal and the suppression file
//! are written by the command.

use std::collections::HashMap;
use std::path::Path;

use mail_parser::{MessageParser, MimeHeaders};

use crate::deliver::journal::Kind;
use crate::error::{Error, Result};

/// What one returned message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    /// A bounce or a complaint, recorded in the journal.
    Feedback(Kind),
    /// An automatic reply (out of office, vacation): not a bounce.
    AutoReply,
    /// A delivery report that says the letter was delivered or relayed.
    Delivered,
    /// Nothing that can be told for sure: listed, never counted.
    Unclassified,
}

impl Class {
    pub fn name(self) -> &'static str {
        match self {
            Class::Feedback(Kind::Hard) => "hard bounce",
            Class::Feedback(Kind::Soft) => "soft bounce",
            Class::Feedback(Kind::Complaint) => "complaint",
            Class::AutoReply => "auto-reply",
            Class::Delivered => "delivery report",
            Class::Unclassified => "unclassified",
        }
    }
}

/// One finding: a returned message about one recipient (a DSN may report
/// several recipients: one finding each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub class: Class,
    /// The failed recipient the report names, lower-cased.
    pub recipient: Option<String>,
    /// `5.1.1`, or the feedback type of a complaint.
    pub status: String,
    /// The remote server's words, or why it is unclassified.
    pub diagnostic: String,
    /// The Message-ID of the letter that came back, when the report quotes
    /// its headers (without `<>`).
    pub original_id: Option<String>,
    /// The returned message's own Message-ID (without `<>`), or a hash of
    /// its bytes: the key that keeps a second run from counting it twice.
    pub key: String,
    /// The envelope addresses the returned message was delivered to
    /// (`To`, `Delivered-To`, `X-Original-To`): a VERP address names the
    /// contact there.
    pub to: Vec<String>,
    /// For listing: the returned message's subject and sender.
    pub subject: String,
    pub from: String,
}

/// Every message of an mbox file, or of a Maildir (`cur` and `new`).
pub fn read_mailbox(path: &Path) -> Result<Vec<Vec<u8>>> {
    let rerr = |e: std::io::Error| Error::Read {
        path: path.into(),
        source: e,
    };
    let meta = std::fs::metadata(path).map_err(rerr)?;
    let mut out = Vec::new();
    if meta.is_dir() {
        if !path.join("cur").is_dir() && !path.join("new").is_dir() {
            return Err(Error::Usage(format!(
                "{}: a folder, but not a Maildir (no cur/ or new/ in it); give an mbox file or \
                 a Maildir",
                path.display()
            )));
        }
        // mail-parser's reader wants both.
        for sub in ["cur", "new", "tmp"] {
            let _ = std::fs::create_dir(path.join(sub));
        }
        let it = mail_parser::mailbox::maildir::MessageIterator::new(path).map_err(rerr)?;
        for m in it {
            out.push(m.map_err(rerr)?.unwrap_contents());
        }
    } else {
        let file = std::fs::File::open(path).map_err(rerr)?;
        let it = mail_parser::mailbox::mbox::MessageIterator::new(std::io::BufReader::new(file));
        for m in it {
            out.push(m.map_err(rerr)?.unwrap_contents());
        }
        if out.is_empty() && meta.len() > 0 {
            return Err(Error::Usage(format!(
                "{}: no message found; an mbox file starts each message with a `From ` line",
                path.display()
            )));
        }
    }
    Ok(out)
}

/// Classifies one returned message.
pub fn classify(raw: &[u8]) -> Vec<Finding> {
    let Some(msg) = MessageParser::default().parse(raw) else {
        return vec![base(raw, None, "not a mail message".into())];
    };
    let mut f = base(raw, Some(&msg), String::new());
    let ct = msg.content_type();
    let report = ct.filter(|c| {
        c.ctype().eq_ignore_ascii_case("multipart")
            && c.subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("report"))
    });
    let report_type = report
        .and_then(|c| c.attribute("report-type"))
        .map(str::to_ascii_lowercase);
    let part = |ctype: &str| {
        msg.parts.iter().find(|p| {
            p.content_type().is_some_and(|c| {
                format!("{}/{}", c.ctype(), c.subtype().unwrap_or_default())
                    .eq_ignore_ascii_case(ctype)
            })
        })
    };
    // The headers of the letter that came back: a text/rfc822-headers or
    // message/rfc822 part (or, in a plain bounce, the quoted text).
    let returned = ["text/rfc822-headers", "message/rfc822", "message/global"]
        .iter()
        .find_map(|t| part(t))
        .map(|p| String::from_utf8_lossy(p.contents()).into_owned());
    f.original_id = returned.as_deref().and_then(quoted_message_id);

    match report_type.as_deref() {
        Some("delivery-status") => {
            let Some(ds) =
                part("message/delivery-status").or_else(|| part("message/global-delivery-status"))
            else {
                f.diagnostic = "a delivery report without its message/delivery-status part".into();
                return vec![f];
            };
            return dsn(&f, &String::from_utf8_lossy(ds.contents()));
        }
        Some("feedback-report") => {
            let Some(fr) = part("message/feedback-report") else {
                f.diagnostic = "a feedback report without its message/feedback-report part".into();
                return vec![f];
            };
            let fields = fields(&String::from_utf8_lossy(fr.contents()));
            let get = |n: &str| fields.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
            let ftype = get("feedback-type")
                .unwrap_or_default()
                .to_ascii_lowercase();
            f.status = ftype.clone();
            f.recipient = get("original-rcpt-to")
                .or_else(|| get("removal-recipient"))
                .or_else(|| returned.as_deref().and_then(|r| header_in(r, "to")))
                .and_then(|a| address_in(&a));
            f.diagnostic = get("user-agent").map_or_else(
                || "abuse report".to_string(),
                |ua| format!("abuse report by {ua}"),
            );
            if ftype == "abuse" {
                f.class = Class::Feedback(Kind::Complaint);
            } else {
                f.diagnostic = format!("a feedback report of type `{ftype}`, not `abuse`");
            }
            if f.recipient.is_none() && f.class != Class::Unclassified {
                f.class = Class::Unclassified;
                f.diagnostic = "an abuse report that names no recipient".into();
            }
            return vec![f];
        }
        _ => {}
    }
    let text = msg.body_text(0).map(|t| t.into_owned()).unwrap_or_default();
    if is_auto_reply(&msg) && !from_mailer_daemon(&f.from) {
        f.class = Class::AutoReply;
        f.diagnostic = "an automatic reply (RFC 3834 Auto-Submitted, or an out-of-office \
                        subject); not a bounce"
            .into();
        return vec![f];
    }
    if from_mailer_daemon(&f.from) || bounce_subject(&f.subject) {
        if f.original_id.is_none() {
            f.original_id = quoted_message_id(&text);
        }
        let failed = msg.header_raw("X-Failed-Recipients").and_then(address_in);
        return vec![plain_bounce(f, &text, failed)];
    }
    f.diagnostic = "not a delivery report, a plain-text bounce from a mailer daemon, or an \
                    abuse report"
        .into();
    vec![f]
}

/// The finding's common part: key, subject, sender, envelope addresses.
fn base(raw: &[u8], msg: Option<&mail_parser::Message<'_>>, why: String) -> Finding {
    let key = msg
        .and_then(|m| m.message_id())
        .map(|id| id.trim_matches(['<', '>']).to_string())
        .unwrap_or_else(|| format!("xxh3:{:032x}", xxhash_rust::xxh3::xxh3_128(raw)));
    let mut to = Vec::new();
    if let Some(m) = msg {
        for h in ["Delivered-To", "X-Original-To", "To", "Envelope-To"] {
            for v in m.header_values(h) {
                if let Some(t) = v.as_text() {
                    to.extend(address_in(t));
                } else if let Some(a) = v.as_address() {
                    to.extend(
                        a.iter()
                            .filter_map(|a| a.address())
                            .map(|a| a.to_ascii_lowercase()),
                    );
                }
            }
        }
    }
    Finding {
        class: Class::Unclassified,
        recipient: None,
        status: String::new(),
        diagnostic: why,
        original_id: None,
        key,
        to,
        subject: msg
            .and_then(|m| m.subject())
            .unwrap_or_default()
            .to_string(),
        from: msg
            .and_then(|m| m.from())
            .and_then(|a| a.first())
            .and_then(|a| a.address())
            .unwrap_or_default()
            .to_ascii_lowercase(),
    }
}

/// The per-recipient blocks of a message/delivery-status part (RFC 3464
/// 2.3): one finding per recipient whose delivery failed or is delayed.
fn dsn(f: &Finding, body: &str) -> Vec<Finding> {
    let body = body.replace("\r\n", "\n");
    let mut out = Vec::new();
    // The first block is per message; the rest are per recipient.
    for block in body.split("\n\n").skip(1) {
        let fields = fields(block);
        let get = |n: &str| fields.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let Some(rcpt) = get("final-recipient").or_else(|| get("original-recipient")) else {
            continue;
        };
        let action = get("action").unwrap_or_default().to_ascii_lowercase();
        let status = get("status").unwrap_or_default();
        let status = status
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        let mut g = f.clone();
        // `rfc822; a@b.org`
        g.recipient = address_in(rcpt.rsplit(';').next().unwrap_or_default());
        g.status = status.clone();
        g.diagnostic = get("diagnostic-code")
            .map(|d| {
                d.split_once(';')
                    .map_or(d.clone(), |(_, t)| t.trim().to_string())
            })
            .unwrap_or_default();
        g.class = match (action.as_str(), status.chars().next()) {
            ("failed", Some('5')) => Class::Feedback(Kind::Hard),
            ("failed" | "delayed", Some('4')) | ("delayed", _) => Class::Feedback(Kind::Soft),
            ("delivered" | "relayed" | "expanded", _) => Class::Delivered,
            _ => {
                g.diagnostic = format!(
                    "a delivery report with Action `{action}` and Status `{status}`; neither \
                     failed with 5.x.x nor 4.x.x"
                );
                Class::Unclassified
            }
        };
        if g.recipient.is_none() {
            g.class = Class::Unclassified;
            g.diagnostic = format!("a delivery report whose recipient `{rcpt}` is no address");
        }
        out.push(g);
    }
    if out.is_empty() {
        let mut g = f.clone();
        g.diagnostic = "a delivery report with no recipient block".into();
        out.push(g);
    }
    out
}

/// A plain-text bounce: the failed address (X-Failed-Recipients, else the
/// address the text says failed) and a status code or a sentence that says
/// permanent or temporary. Either missing: unclassified.
fn plain_bounce(mut f: Finding, text: &str, failed: Option<String>) -> Finding {
    let lower = text.to_ascii_lowercase();
    let status = enhanced_status(text);
    let smtp = smtp_reply_line(text);
    const PERMANENT: &[&str] = &[
        "this is a permanent error",
        "permanent failure",
        "does not exist",
        "user unknown",
        "no such user",
        "address not found",
        "couldn't be found",
        "recipient not found",
        "mailbox unavailable",
        "delivery has failed",
    ];
    const TEMPORARY: &[&str] = &[
        "has not yet been delivered",
        "will continue to try",
        "will retry",
        "temporary failure",
        "delivery delayed",
        "delivery has been delayed",
    ];
    let kind = match status.as_deref().and_then(|s| s.chars().next()) {
        Some('5') => Some(Kind::Hard),
        Some('4') => Some(Kind::Soft),
        _ if TEMPORARY.iter().any(|p| lower.contains(p)) => Some(Kind::Soft),
        _ if PERMANENT.iter().any(|p| lower.contains(p)) => Some(Kind::Hard),
        _ => None,
    };
    let recipient = failed.or_else(|| failed_address_in(text, &f.from));
    f.status = status.unwrap_or_default();
    f.diagnostic = smtp.unwrap_or_default();
    match (kind, &recipient) {
        (Some(k), Some(_)) => {
            f.class = Class::Feedback(k);
            f.recipient = recipient;
        }
        (None, _) => {
            f.diagnostic = "looks like a bounce (from a mailer daemon) but says neither a \
                            status code nor whether the failure is permanent"
                .into()
        }
        (Some(_), None) => {
            f.diagnostic = "looks like a bounce but names no failed address".into();
        }
    }
    f
}

/// `Name: value` fields of a header-like block, names lower-cased,
/// continuation lines unfolded.
fn fields(block: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in block.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = out.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            out.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    out
}

/// A header's value in quoted header text.
fn header_in(text: &str, name: &str) -> Option<String> {
    let head = text.replace("\r\n", "\n");
    let head = head.split("\n\n").next().unwrap_or_default();
    fields(head)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// The Message-ID in quoted headers, without `<>`.
fn quoted_message_id(text: &str) -> Option<String> {
    let text = text.replace("\r\n", "\n");
    for (i, line) in text.lines().enumerate() {
        let l = line.trim_start();
        if l.len() > 11 && l[..11].eq_ignore_ascii_case("message-id:") {
            let mut v = l[11..].trim().to_string();
            if v.is_empty() {
                v = text
                    .lines()
                    .nth(i + 1)
                    .unwrap_or_default()
                    .trim()
                    .to_string();
            }
            let v = v.trim_start_matches('<');
            let v = v.split('>').next().unwrap_or_default().trim();
            if !v.is_empty() {
                return Some(v.to_string());
            }
        }
    }
    None
}

/// The first `local@domain` in `s`, lower-cased.
fn address_in(s: &str) -> Option<String> {
    s.split(|c: char| c.is_whitespace() || "<>\"'(),;:[]".contains(c))
        .find(|w| {
            let w = w.trim_matches('.');
            w.split_once('@')
                .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.contains('@'))
        })
        .map(|w| w.trim_matches('.').to_ascii_lowercase())
}

/// The address a plain-text bounce says failed: the first address in the
/// text that is not its sender's and not a postmaster's.
fn failed_address_in(text: &str, from: &str) -> Option<String> {
    text.lines()
        .filter_map(address_in)
        .find(|a| a != from && !a.starts_with("mailer-daemon@") && !a.starts_with("postmaster@"))
}

/// The first enhanced status code (RFC 3463) `X.Y.Z` with X 4 or 5.
fn enhanced_status(text: &str) -> Option<String> {
    text.split(|c: char| c.is_whitespace() || "()[]<>;,'\"".contains(c))
        .map(|w| w.trim_end_matches(['.', ':']))
        .find(|w| {
            let parts: Vec<&str> = w.split('.').collect();
            parts.len() == 3
                && (parts[0] == "4" || parts[0] == "5")
                && parts[1..]
                    .iter()
                    .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(str::to_string)
}

/// The line holding the remote server's reply (`550 5.1.1 …`).
fn smtp_reply_line(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .find(|l| {
            let b = l.as_bytes();
            b.len() > 4
                && (b[0] == b'4' || b[0] == b'5')
                && b[1].is_ascii_digit()
                && b[2].is_ascii_digit()
                && (b[3] == b' ' || b[3] == b'-')
        })
        .or_else(|| {
            text.lines()
                .map(str::trim)
                .find(|l| l.contains(" said: ") || l.contains("Remote Server returned"))
        })
        .map(|l| l.chars().take(300).collect())
}

fn from_mailer_daemon(from: &str) -> bool {
    let local = from.split('@').next().unwrap_or_default();
    matches!(local, "mailer-daemon" | "postmaster" | "mail-daemon")
}

fn bounce_subject(subject: &str) -> bool {
    let s = subject.to_ascii_lowercase();
    [
        "undeliverable",
        "undelivered mail",
        "mail delivery failed",
        "delivery status notification",
        "failure notice",
        "returned mail",
        "delivery failure",
        "warning: message",
    ]
    .iter()
    .any(|p| s.contains(p))
}

/// RFC 3834 `Auto-Submitted` (anything but `no`), the usual vacation
/// headers, or an out-of-office subject.
fn is_auto_reply(msg: &mail_parser::Message<'_>) -> bool {
    let h = |n: &str| msg.header_raw(n).map(|v| v.trim().to_ascii_lowercase());
    if h("Auto-Submitted").is_some_and(|v| !v.starts_with("no")) {
        return true;
    }
    if h("X-Autoreply").is_some()
        || h("X-Autorespond").is_some()
        || h("X-Auto-Response-Suppress").is_some_and(|v| v.contains("oof"))
        || h("Precedence").is_some_and(|v| v == "auto_reply")
    {
        return true;
    }
    let s = msg.subject().unwrap_or_default().to_ascii_lowercase();
    [
        "out of office",
        "automatic reply",
        "auto:",
        "autoreply",
        "abwesenheit",
        "vacation",
    ]
    .iter()
    .any(|p| s.contains(p))
}

/// Who a finding is about, in the journal: the letter's Message-ID, then a
/// VERP address (`local+TOKEN@…`) whose token is a value of the contact's
/// row, then the recipient the report names.
pub struct Matcher {
    by_message_id: HashMap<String, String>,
    /// A row's field values -> its address (values that name one row only).
    by_value: HashMap<String, Option<String>>,
    known: std::collections::HashSet<String>,
}

impl Matcher {
    pub fn new(journal: &dyn crate::deliver::journal::Journal) -> Result<Matcher> {
        let known = journal.known()?;
        let by_row: HashMap<usize, String> =
            known.iter().map(|(a, k)| (k.row, a.clone())).collect();
        let mut by_value: HashMap<String, Option<String>> = HashMap::new();
        for r in journal.rows_in(&crate::deliver::journal::State::ALL)? {
            let Some(addr) = by_row.get(&r.row) else {
                continue;
            };
            for v in r.fields {
                let v = v.trim().to_ascii_lowercase();
                if v.is_empty() {
                    continue;
                }
                by_value
                    .entry(v)
                    .and_modify(|a| {
                        if a.as_ref() != Some(addr) {
                            *a = None
                        }
                    })
                    .or_insert_with(|| Some(addr.clone()));
            }
        }
        Ok(Matcher {
            by_message_id: journal.message_ids()?,
            by_value,
            known: known.into_keys().collect(),
        })
    }

    /// The journal's address for `f`, and how it was found.
    pub fn address(&self, f: &Finding) -> Option<(String, &'static str)> {
        if let Some(a) = f
            .original_id
            .as_ref()
            .and_then(|id| self.by_message_id.get(id))
        {
            return Some((a.clone(), "Message-ID"));
        }
        for to in &f.to {
            let local = to.split('@').next().unwrap_or_default();
            if let Some((_, token)) = local.split_once('+') {
                if let Some(Some(a)) = self.by_value.get(token) {
                    return Some((a.clone(), "VERP"));
                }
            }
        }
        f.recipient
            .as_ref()
            .filter(|r| self.known.contains(*r))
            .map(|r| (r.clone(), "recipient"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enhanced_status_codes_and_addresses_are_found_in_text() {
        assert_eq!(
            enhanced_status("said: 550 5.1.1 <a@b.org>: unknown").as_deref(),
            Some("5.1.1")
        );
        assert_eq!(enhanced_status("version 1.2.3 of 4.5"), None);
        assert_eq!(
            address_in("  <Ann@Example.org>:").as_deref(),
            Some("ann@example.org")
        );
        assert_eq!(address_in("no address here"), None);
    }

    fn report(blocks: &str) -> Vec<u8> {
        format!(
            "From: MAILER-DAEMON@mx.example.net\r\nTo: b@x.org\r\nMessage-ID: <r1@mx>\r\n\
             Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\
             \r\n--B\r\nContent-Type: text/plain\r\n\r\nreport\r\n\
             --B\r\nContent-Type: message/delivery-status\r\n\r\n\
             Reporting-MTA: dns; mx.example.net\r\n\r\n{blocks}\r\n--B--\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn a_dsn_gives_one_finding_per_recipient_by_action_and_status() {
        let f = classify(&report(
            "Final-Recipient: rfc822; A@x.org\r\nAction: failed\r\nStatus: 5.2.1\r\n\
             Diagnostic-Code: smtp; 550 5.2.1 disabled\r\n\r\n\
             Final-Recipient: rfc822; b@x.org\r\nAction: delivered\r\nStatus: 2.0.0\r\n\r\n\
             Final-Recipient: rfc822; c@x.org\r\nAction: failed\r\nStatus: 4.4.7\r\n\r\n\
             Final-Recipient: rfc822; d@x.org\r\nAction: failed\r\n",
        ));
        let got: Vec<(Class, Option<&str>, &str)> = f
            .iter()
            .map(|f| (f.class, f.recipient.as_deref(), f.diagnostic.as_str()))
            .collect();
        assert_eq!(
            got[0],
            (
                Class::Feedback(Kind::Hard),
                Some("a@x.org"),
                "550 5.2.1 disabled"
            )
        );
        assert_eq!(got[1].0, Class::Delivered);
        assert_eq!(got[2].0, Class::Feedback(Kind::Soft));
        // Failed without a status: not guessed.
        assert_eq!(got[3].0, Class::Unclassified);
        assert_eq!(f.len(), 4);
    }

    #[test]
    fn a_message_that_is_no_bounce_is_unclassified() {
        let f =
            classify(b"From: a@b.org\r\nSubject: hello\r\nMessage-ID: <x@y>\r\n\r\nHi there\r\n");
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].class, Class::Unclassified);
        assert_eq!(f[0].key, "x@y");
    }
}
