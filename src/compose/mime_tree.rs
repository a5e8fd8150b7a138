//! The MIME tree of a letter with files: `multipart/mixed` ⊃
//! (`multipart/related` ⊃ (`multipart/alternative` ⊃ text, HTML) + inline
//! images) + attachments, each level only when it has something to hold.
//! A letter without files is [`message::build`]'s `multipart/alternative`,
//! byte for byte. Pure like [`message`]: the files come in already encoded
//! (a shared file's base64 is copied, never computed here).

use crate::compose::attach::{File, Role};
use crate::compose::message::{self, Parts, Stamp, TooLong};

/// Builds the whole message with `files` (inline images first or not: the
/// roles decide where each goes, the order within a role is kept).
pub fn build(parts: &Parts, files: &[File], stamp: &Stamp) -> Result<Vec<u8>, TooLong> {
    if files.is_empty() {
        return message::build(parts, stamp);
    }
    let alt = stamp.boundary();
    // Other prefixes, not suffixes: no boundary may begin another.
    let id = alt.trim_start_matches("=_lp_");
    let related = format!("=_lp_r_{id}");
    let mixed = format!("=_lp_m_{id}");
    let inline: Vec<&File> = files
        .iter()
        .filter(|f| matches!(f.role, Role::Inline { .. }))
        .collect();
    let attached: Vec<&File> = files
        .iter()
        .filter(|f| f.role == Role::Attachment)
        .collect();

    let mut head = message::head(parts, stamp)?;
    let files_len: usize = files.iter().map(|f| f.payload.base64.len() + 400).sum();
    let mut out = Vec::with_capacity(
        head.len() + (parts.text.len() + parts.html.len()) * 11 / 10 + files_len + 1024,
    );
    if attached.is_empty() {
        head.push_str(&related_type(&related));
        out.extend_from_slice(head.as_bytes());
        related_body(parts, &inline, &related, &alt, &mut out);
        return Ok(out);
    }
    head.push_str(&format!(
        "Content-Type: multipart/mixed;\r\n boundary=\"{mixed}\"\r\n\r\n"
    ));
    out.extend_from_slice(head.as_bytes());
    delimiter(&mixed, &mut out);
    if inline.is_empty() {
        out.extend_from_slice(alternative_type(&alt).as_bytes());
        message::alternative(parts, &alt, &mut out);
    } else {
        out.extend_from_slice(related_type(&related).as_bytes());
        related_body(parts, &inline, &related, &alt, &mut out);
    }
    for f in attached {
        delimiter(&mixed, &mut out);
        file_part(f, &mut out);
    }
    close(&mixed, &mut out);
    Ok(out)
}

fn alternative_type(boundary: &str) -> String {
    format!("Content-Type: multipart/alternative;\r\n boundary=\"{boundary}\"\r\n\r\n")
}

fn related_type(boundary: &str) -> String {
    format!(
        "Content-Type: multipart/related; type=\"multipart/alternative\";\r\n \
         boundary=\"{boundary}\"\r\n\r\n"
    )
}

fn related_body(parts: &Parts, inline: &[&File], related: &str, alt: &str, out: &mut Vec<u8>) {
    delimiter(related, out);
    out.extend_from_slice(alternative_type(alt).as_bytes());
    message::alternative(parts, alt, out);
    for f in inline {
        delimiter(related, out);
        file_part(f, out);
    }
    close(related, out);
}

fn delimiter(boundary: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"--");
    out.extend_from_slice(boundary.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn close(boundary: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"--");
    out.extend_from_slice(boundary.as_bytes());
    out.extend_from_slice(b"--\r\n");
}

/// One file's headers and its base64 body.
fn file_part(f: &File, out: &mut Vec<u8>) {
    let p = &f.payload;
    let mut h = String::with_capacity(256);
    h.push_str("Content-Type: ");
    h.push_str(&p.content_type);
    if p.content_type == "text/calendar" {
        // RFC 5545 3.1.4: UTF-8 is the default; say so for mail clients.
        h.push_str("; charset=utf-8");
    }
    push_params(&mut h, "name", &p.name);
    let disposition = match &f.role {
        Role::Attachment => "attachment",
        Role::Inline { .. } => "inline",
    };
    h.push_str("Content-Disposition: ");
    h.push_str(disposition);
    push_params(&mut h, "filename", &p.name);
    if let Role::Inline { cid } = &f.role {
        h.push_str("Content-ID: <");
        h.push_str(cid);
        h.push_str(">\r\n");
    }
    h.push_str("Content-Transfer-Encoding: base64\r\n\r\n");
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(&p.base64);
}

/// The longest parameter value piece on one folded line.
const PIECE: usize = 50;

/// Appends `;` and the parameter `key` = `value`, each piece on a folded
/// line of its own, and ends the header line. A short printable ASCII
/// value is a quoted string; any other is RFC 2231-encoded
/// (`key*=utf-8''…`), cut into numbered pieces (`key*0*=`, `key*1*=` …)
/// when long, so no line passes 78 characters.
fn push_params(h: &mut String, key: &str, value: &str) {
    let printable = value.bytes().all(|b| (0x20..0x7f).contains(&b));
    if printable && value.len() <= PIECE {
        let quoted = value.replace('\\', "\\\\").replace('"', "\\\"");
        h.push_str(&format!(";\r\n {key}=\"{quoted}\"\r\n"));
        return;
    }
    // Cut between characters, never inside one: some readers (mail-parser)
    // decode each piece on its own.
    let mut pieces = vec![String::new()];
    let mut buf = [0u8; 4];
    for ch in value.chars() {
        let enc = rfc2231(ch.encode_utf8(&mut buf));
        let last = pieces.last_mut().expect("one piece at least");
        if !last.is_empty() && last.len() + enc.len() > PIECE {
            pieces.push(enc);
        } else {
            last.push_str(&enc);
        }
    }
    if pieces.len() == 1 {
        h.push_str(&format!(";\r\n {key}*=utf-8''{}\r\n", pieces[0]));
        return;
    }
    for (i, piece) in pieces.iter().enumerate() {
        let charset = if i == 0 { "utf-8''" } else { "" };
        let end = if i + 1 == pieces.len() { "\r\n" } else { "" };
        h.push_str(&format!(";\r\n {key}*{i}*={charset}{piece}{end}"));
    }
}

/// RFC 2231 4: percent-encodes every byte but the attribute characters.
fn rfc2231(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::attach::Payload;
    use crate::compose::message::Mailbox;
    use mail_parser::MimeHeaders as _;
    use std::sync::Arc;

    fn parts() -> Parts {
        Parts {
            from: Mailbox::parse("A <a@example.org>").unwrap(),
            to: Mailbox::parse("B <b@example.org>").unwrap(),
            reply_to: None,
            return_path: None,
            subject: "Hi".into(),
            list_unsubscribe: None,
            list_id: None,
            extra: vec![],
            text: "Hello\n".into(),
            html: "<p>Hello <img src=\"cid:x\"></p>\n".into(),
        }
    }

    fn file(role: Role, name: &str, bytes: &[u8]) -> File {
        File {
            role,
            payload: Arc::new(Payload::new(name, bytes.to_vec())),
        }
    }

    #[test]
    fn no_files_is_the_plain_message() {
        let stamp = Stamp { date: 0, id: 7 };
        assert_eq!(
            build(&parts(), &[], &stamp).unwrap(),
            message::build(&parts(), &stamp).unwrap()
        );
    }

    #[test]
    fn tree_parses_back_with_every_part_in_place() {
        let stamp = Stamp { date: 0, id: 7 };
        let pdf: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        let name = format!("Zaświadczenie {}.pdf", "ą".repeat(40));
        let files = [
            file(Role::Inline { cid: "x".into() }, "logo.png", b"\x89PNG..."),
            file(Role::Attachment, &name, &pdf),
        ];
        let eml = build(&parts(), &files, &stamp).unwrap();
        let s = String::from_utf8(eml.clone()).unwrap();
        assert!(s.lines().all(|l| l.len() <= 78), "{s}");
        assert!(s.contains("Content-Type: multipart/mixed;"));
        let m = mail_parser::MessageParser::default().parse(&eml).unwrap();
        assert_eq!(m.body_text(0).unwrap(), "Hello\r\n");
        let atts: Vec<_> = m.attachments().collect();
        assert_eq!(atts.len(), 2);
        assert_eq!(atts[0].contents(), b"\x89PNG...");
        assert_eq!(atts[1].contents(), &pdf[..]);
        assert_eq!(atts[1].attachment_name(), Some(name.as_str()));
    }

    #[test]
    fn long_and_odd_names_fold_and_round_trip() {
        let stamp = Stamp { date: 0, id: 7 };
        let long = "x".repeat(100);
        for name in [
            "a\"b\\c.txt",
            &long,
            "ünï cødé.pdf",
            "%41.txt",
            "tab\there.txt",
        ] {
            let eml = build(&parts(), &[file(Role::Attachment, name, b"x")], &stamp).unwrap();
            let s = String::from_utf8(eml.clone()).unwrap();
            let long: Vec<_> = s.lines().filter(|l| l.len() > 78).collect();
            assert!(long.is_empty(), "{long:?}");
            let m = mail_parser::MessageParser::default().parse(&eml).unwrap();
            let att = m.attachments().next().unwrap();
            assert_eq!(att.attachment_name(), Some(name), "{s}");
        }
    }
}
