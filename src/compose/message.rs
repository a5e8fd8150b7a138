//! Building the MIME message: headers encoded per RFC 5322/2047, a
//! `multipart/alternative` body (text/plain, then text/html) in
//! quoted-printable. Pure: the Date, Message-ID and boundary come in as a
//! [`Stamp`], so the same inputs give the same bytes.
//!
//! Written by hand rather than with lettre's builder: lettre's `formatted()`
//! costs about 600 µs for this letter (DESIGN.md section 4), forty times the
//! merge; this encoder is one pass over the bytes.

use std::fmt::Write as _;

pub use crate::compose::stamp::Stamp;

/// A display name and an address, as in `Zofia Wiśniewska <z@example.org>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub name: Option<String>,
    pub address: String,
}

impl Mailbox {
    /// Parses one rendered mailbox: `Name <addr>`, `"Name" <addr>` or a bare
    /// address. Everything before the last `<` is the name, so commas and
    /// quotes in a merged name cannot split it into two recipients.
    pub fn parse(value: &str) -> Result<Mailbox, String> {
        let value = value.trim();
        if value.is_empty() {
            return Err("the address is empty".into());
        }
        let (name, addr) = match (value.rfind('<'), value.ends_with('>')) {
            (Some(open), true) => {
                let name = value[..open].trim();
                let name = match name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
                    Some(q) => q.replace("\\\"", "\"").replace("\\\\", "\\"),
                    None => name.to_string(),
                };
                (
                    Some(name).filter(|n| !n.is_empty()),
                    value[open + 1..value.len() - 1].trim(),
                )
            }
            (None, false) => (None, value),
            _ => return Err(format!("`{value}` is not of the form `Name <address>`")),
        };
        validate_address(addr)?;
        Ok(Mailbox {
            name,
            address: addr.to_string(),
        })
    }

    /// The domain part of the address.
    pub fn domain(&self) -> &str {
        self.address
            .rsplit_once('@')
            .map_or("localhost", |(_, d)| d)
    }
}

/// How many addresses a mailbox header's text writes, counting the way a
/// reader of the template would: the text is cut at commas outside double
/// quotes and outside `<…>`; each `<` outside quotes is one address, and a
/// piece with no `<` but an `@` outside quotes is one bare address. So
/// `Lee, Ann <a@x.org>` and `"Lee, Ann" <a@x.org>` write one, and
/// `A <a@x.org>, B <b@y.org>` or `a@x.org, b@y.org` two.
pub fn addresses_written(value: &str) -> usize {
    let mut total = 0;
    let (mut angles, mut at) = (0, false);
    let (mut quoted, mut escaped, mut in_angle) = (false, false, false);
    let mut end_piece = |angles: &mut usize, at: &mut bool| {
        total += if *angles > 0 {
            *angles
        } else {
            usize::from(*at)
        };
        (*angles, *at) = (0, false);
    };
    for c in value.chars() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' if !in_angle => quoted = !quoted,
            _ if quoted => {}
            '<' => {
                angles += 1;
                in_angle = true;
            }
            '>' => in_angle = false,
            '@' if !in_angle => at = true,
            ',' if !in_angle => end_piece(&mut angles, &mut at),
            _ => {}
        }
    }
    end_piece(&mut angles, &mut at);
    total
}

/// Checks an address the way SMTP servers will: ASCII (non-ASCII needs
/// SMTPUTF8, which letterpress does not speak), one `@`, a valid local part
/// and a dotted domain.
pub fn validate_address(addr: &str) -> Result<(), String> {
    if addr.is_empty() {
        return Err("the address is empty".into());
    }
    if !addr.is_ascii() {
        return Err(format!(
            "`{addr}` holds non-ASCII characters; write the domain in punycode \
             (xn--…) and the local part in ASCII"
        ));
    }
    // RFC 5321 allows a quoted local part (`"a b"@example.org`); no list
    // needs one, and its spaces and quotes would go raw into the header.
    if addr.contains(|c: char| c == '"' || c == '\\' || c == ' ' || c.is_control()) {
        return Err(format!(
            "`{addr}` holds a quote, backslash, space or control character; \
             letterpress sends only to plain addresses (no quoted local part)"
        ));
    }
    let parsed: Result<lettre::Address, _> = addr.parse();
    match parsed {
        Ok(a) if a.domain().contains('.') || a.domain() == "localhost" => Ok(()),
        Ok(_) => Err(format!("`{addr}` has no dot in its domain")),
        Err(_) => Err(format!("`{addr}` is not a valid email address")),
    }
}

/// Percent-encodes `value` for a URI (RFC 3986 2.1): every byte outside the
/// unreserved characters (`A-Z a-z 0-9 - . _ ~`) becomes `%XX`, so a merged
/// value can never end a `<…>` URI, add a second one, or put a space, quote
/// or control character into the header. The escape function of the
/// `List-Unsubscribe` header's `{{…}}`.
pub fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for &b in value.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
    out
}

/// The URIs of a `List-Unsubscribe` value (RFC 2369): one or more `<uri>`,
/// separated by commas and optional spaces, nothing else. A URI may hold no
/// space, quote, `<`, `>`, control or non-ASCII character: such a character
/// is either a mistake or a value trying to add a URI of its own.
pub fn unsubscribe_uris(value: &str) -> Result<Vec<&str>, String> {
    let mut uris = Vec::new();
    let mut rest = value.trim();
    loop {
        let Some(inner) = rest.strip_prefix('<') else {
            return Err(format!(
                "`{value}` is not a list of `<URL>`s separated by commas"
            ));
        };
        let Some(end) = inner.find('>') else {
            return Err(format!("`{value}` has a `<` without its `>`"));
        };
        let uri = &inner[..end];
        if uri.is_empty() {
            return Err("List-Unsubscribe holds an empty `<>`".into());
        }
        if let Some(c) = uri
            .chars()
            .find(|&c| !c.is_ascii_graphic() || matches!(c, '"' | '<' | '>'))
        {
            return Err(format!(
                "the List-Unsubscribe URL `{uri}` holds {}; percent-encode it",
                match c {
                    ' ' => "a space".to_string(),
                    c if c.is_control() => format!("the control character {c:?}"),
                    c if !c.is_ascii() => format!("the non-ASCII character `{c}`"),
                    c => format!("`{c}`"),
                }
            ));
        }
        // `https%3A%2F%2F…` is what a whole URL merged with `{{…}}` becomes.
        let scheme = uri.split_once(':').map_or("", |(s, _)| s);
        let is_scheme = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if !is_scheme {
            return Err(format!(
                "the List-Unsubscribe URL `{uri}` does not start with a scheme such as \
                 `https:` or `mailto:`; a column that holds a whole URL goes in as \
                 `{{{{{{column}}}}}}`, which is not percent-encoded"
            ));
        }
        uris.push(uri);
        rest = inner[end + 1..].trim_start();
        if rest.is_empty() {
            return Ok(uris);
        }
        let Some(next) = rest.strip_prefix(',') else {
            return Err(format!(
                "`{value}` is not a list of `<URL>`s separated by commas"
            ));
        };
        rest = next.trim_start();
    }
}

/// A `List-Id` (RFC 2919): which list a letter belongs to, so that mail
/// clients can filter it and providers can count complaints per list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListId {
    /// The optional description before the id (`WJC Appeals`).
    pub description: String,
    /// The id itself, without brackets (`appeals.wjc.example.org`).
    pub id: String,
}

impl ListId {
    /// Parses `[description] <list-label.namespace>`: an id of at most 255
    /// characters, a dot-atom with at least one dot (a domain the sender
    /// owns, RFC 2919 2), and a description without `<`, `>`, `"` or
    /// control characters (surrounding double quotes are allowed).
    pub fn parse(value: &str) -> Result<ListId, String> {
        let value = value.trim();
        let shape = || {
            format!(
                "`{value}` is not `Description <list.example.org>`; a List-Id is an \
                 optional description and an id in angle brackets (RFC 2919)"
            )
        };
        let (Some(open), true) = (value.rfind('<'), value.ends_with('>')) else {
            return Err(shape());
        };
        let id = &value[open + 1..value.len() - 1];
        let description = value[..open].trim();
        let description = description
            .strip_prefix('"')
            .and_then(|d| d.strip_suffix('"'))
            .unwrap_or(description);
        if description.contains(['<', '>', '"']) || description.chars().any(char::is_control) {
            return Err(shape());
        }
        let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c);
        let dot_atom =
            !id.is_empty() && id.split('.').all(|p| !p.is_empty() && p.chars().all(atext));
        if !dot_atom || !id.contains('.') || id.len() > 255 {
            return Err(format!(
                "the List-Id `<{id}>` must be a name under a domain you own, such as \
                 `<appeals.example.org>`: letters, digits and dots, at most 255 characters"
            ));
        }
        Ok(ListId {
            description: description.to_string(),
            id: id.to_string(),
        })
    }

    /// The header value: the description as a phrase (quoted, or RFC 2047
    /// when not ASCII), then `<id>`.
    fn encoded(&self) -> String {
        if self.description.is_empty() {
            return format!("<{}>", self.id);
        }
        let m = Mailbox {
            name: Some(self.description.clone()),
            address: self.id.clone(),
        };
        encode_mailbox(&m)
    }
}

/// Everything that goes into one message, already merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parts {
    pub from: Mailbox,
    pub to: Mailbox,
    pub reply_to: Option<Mailbox>,
    /// The envelope sender from the template's `Return-Path:` (not a
    /// header of the letter); the From address when there is none.
    pub return_path: Option<String>,
    pub subject: String,
    /// The `List-Unsubscribe` value, `<…>` brackets included.
    pub list_unsubscribe: Option<String>,
    pub list_id: Option<ListId>,
    /// `X-` headers, in template order.
    pub extra: Vec<(String, String)>,
    pub text: String,
    pub html: String,
}

/// A header that cannot be written within the 998-octet line limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooLong {
    pub header: String,
}

impl TooLong {
    /// The row problem's text.
    pub fn message(&self) -> String {
        format!(
            "the {} header holds a word too long for one line (998 characters); shorten the value",
            self.header
        )
    }
}

/// The longest header line we write when we can fold (RFC 5322 2.1.1).
const FOLD_AT: usize = 78;
/// The longest line SMTP allows.
const MAX_LINE: usize = 998;

/// Builds the whole message (`.eml` bytes, CRLF line ends, all ASCII).
pub fn build(parts: &Parts, stamp: &Stamp) -> Result<Vec<u8>, TooLong> {
    let boundary = stamp.boundary();
    let mut head = head(parts, stamp)?;
    let _ = write!(
        head,
        "Content-Type: multipart/alternative;\r\n boundary=\"{boundary}\"\r\n\r\n"
    );
    let mut out =
        Vec::with_capacity(head.len() + (parts.text.len() + parts.html.len()) * 11 / 10 + 512);
    out.extend_from_slice(head.as_bytes());
    alternative(parts, &boundary, &mut out);
    Ok(out)
}

/// The message's header block up to and including `MIME-Version`: the
/// `Content-Type` line (and the body) are the caller's.
pub(crate) fn head(parts: &Parts, stamp: &Stamp) -> Result<String, TooLong> {
    let mut head = String::with_capacity(1024);
    header(&mut head, "Date", &stamp.rfc5322_date())?;
    header(&mut head, "From", &encode_mailbox(&parts.from))?;
    if let Some(r) = &parts.reply_to {
        header(&mut head, "Reply-To", &encode_mailbox(r))?;
    }
    header(&mut head, "To", &encode_mailbox(&parts.to))?;
    header(&mut head, "Subject", &encode_unstructured(&parts.subject))?;
    header(
        &mut head,
        "Message-ID",
        &stamp.message_id(parts.from.domain()),
    )?;
    if let Some(u) = &parts.list_unsubscribe {
        header(&mut head, "List-Unsubscribe", u)?;
        if u.contains("<https://") {
            header(
                &mut head,
                "List-Unsubscribe-Post",
                "List-Unsubscribe=One-Click",
            )?;
        }
    }
    if let Some(l) = &parts.list_id {
        header(&mut head, "List-Id", &l.encoded())?;
    }
    for (name, value) in &parts.extra {
        header(&mut head, name, &encode_unstructured(value))?;
    }
    head.push_str("MIME-Version: 1.0\r\n");
    Ok(head)
}

/// The body of the `multipart/alternative` entity: the text part, the HTML
/// part, and the closing delimiter of `boundary`.
pub(crate) fn alternative(parts: &Parts, boundary: &str, out: &mut Vec<u8>) {
    for (kind, body) in [("plain", &parts.text), ("html", &parts.html)] {
        out.extend_from_slice(b"--");
        out.extend_from_slice(boundary.as_bytes());
        out.extend_from_slice(b"\r\nContent-Type: text/");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(
            b"; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n",
        );
        quoted_printable(body.as_bytes(), out);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"--");
    out.extend_from_slice(boundary.as_bytes());
    out.extend_from_slice(b"--\r\n");
}

/// Appends `Name: value`, folded at spaces to about 78 columns.
fn header(out: &mut String, name: &str, value: &str) -> Result<(), TooLong> {
    let too_long = || TooLong {
        header: name.to_string(),
    };
    let mut col = name.len() + 1;
    out.push_str(name);
    out.push(':');
    for (i, word) in value.split(' ').enumerate() {
        if word.len() + name.len() + 2 > MAX_LINE {
            return Err(too_long());
        }
        if i > 0 && col + 1 + word.len() > FOLD_AT {
            out.push_str("\r\n");
            col = 0;
        }
        out.push(' ');
        out.push_str(word);
        col += 1 + word.len();
    }
    out.push_str("\r\n");
    Ok(())
}

fn is_atext_phrase(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b' ' || b"!#$%&'*+-/=?^_`{|}~".contains(&b))
}

fn encode_mailbox(m: &Mailbox) -> String {
    match &m.name {
        None => m.address.clone(),
        Some(name) if is_atext_phrase(name) && !name.contains("=?") => {
            format!("{name} <{}>", m.address)
        }
        // A quoted string may hold no control character (RFC 5322 3.2.4):
        // a name with one is encoded like a non-ASCII one.
        Some(name) if name.bytes().all(|b| (0x20..0x7f).contains(&b)) && !name.contains("=?") => {
            let quoted = name.replace('\\', "\\\\").replace('"', "\\\"");
            format!("\"{quoted}\" <{}>", m.address)
        }
        Some(name) => format!("{} <{}>", encode_words(name, true), m.address),
    }
}

/// Subject and `X-` values: as they are when plain ASCII, otherwise RFC 2047.
fn encode_unstructured(s: &str) -> String {
    let plain = s.bytes().all(|b| (0x20..0x7f).contains(&b)) && !s.contains("=?");
    if plain {
        s.to_string()
    } else {
        encode_words(s, false)
    }
}

/// RFC 2047 Q-encoded words of at most 75 characters, split on character
/// boundaries, joined by spaces (where the header folds). In a phrase
/// (`phrase`), only the characters RFC 2047 5(3) allows stay literal.
fn encode_words(s: &str, phrase: bool) -> String {
    const PREFIX: &str = "=?utf-8?q?";
    const MAX_WORD: usize = 75;
    let budget = MAX_WORD - PREFIX.len() - 2;
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut buf = [0u8; 4];
    for ch in s.chars() {
        let mut enc = String::new();
        for &b in ch.encode_utf8(&mut buf).as_bytes() {
            let literal = b.is_ascii_alphanumeric()
                || b"!*+-/".contains(&b)
                || (!phrase && b.is_ascii_graphic() && !b"=?_\"()<>@,;:.[]\\".contains(&b));
            if b == b' ' {
                enc.push('_');
            } else if literal {
                enc.push(b as char);
            } else {
                let _ = write!(enc, "={b:02X}");
            }
        }
        if cur.len() + enc.len() > budget {
            words.push(std::mem::take(&mut cur));
        }
        cur.push_str(&enc);
    }
    if !cur.is_empty() || words.is_empty() {
        words.push(cur);
    }
    words
        .iter()
        .map(|w| format!("{PREFIX}{w}?="))
        .collect::<Vec<_>>()
        .join(" ")
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Bytes that quoted-printable writes as they are (space and tab too, except
/// before a line end).
const LITERAL: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 33;
    while b <= 126 {
        t[b] = b != b'=' as usize;
        b += 1;
    }
    t[b' ' as usize] = true;
    t[b'\t' as usize] = true;
    t
};

/// True when all 8 bytes are printable ASCII or space and none is `=`: one
/// word-sized test instead of eight table looks (exact "has a byte less
/// than / more than / equal to" tests on a u64).
#[inline]
fn plain8(chunk: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let w = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    let above_tilde = (w.wrapping_add(ONES) | w) & HIGH;
    let x = w ^ (ONES * u64::from(b'='));
    let equals = x.wrapping_sub(ONES) & !x & HIGH;
    below_space | above_tilde | equals == 0
}

/// The longest run of characters on one encoded line; the soft break `=`
/// takes column 76.
const QP_LINE: usize = 75;

/// Quoted-printable (RFC 2045 6.7) with CRLF line ends: `\n` and `\r\n` in
/// the input become hard breaks, lines are soft-broken before 76 columns,
/// and a space or tab before a break is encoded. Runs of plain bytes are
/// copied whole: this is the hot loop of rendering.
pub fn quoted_printable(input: &[u8], out: &mut Vec<u8>) {
    let n = input.len();
    let mut col = 0usize;
    let mut i = 0;
    while i < n {
        let b = input[i];
        if LITERAL[b as usize] {
            // The run of literal bytes that fits on this line.
            let limit = n.min(i + (QP_LINE - col));
            let mut j = i;
            while j + 8 <= limit && plain8(&input[j..j + 8]) {
                j += 8;
            }
            while j < limit && LITERAL[input[j] as usize] {
                j += 1;
            }
            // A space or tab right before a line end must be encoded.
            let at_line_end = j == n
                || input[j] == b'\n'
                || (input[j] == b'\r' && input.get(j + 1) == Some(&b'\n'));
            let trailing_blank = at_line_end && j > i && matches!(input[j - 1], b' ' | b'\t');
            let end = if trailing_blank { j - 1 } else { j };
            out.extend_from_slice(&input[i..end]);
            col += end - i;
            i = end;
            if !trailing_blank {
                if i < n && !at_line_end && LITERAL[input[i] as usize] {
                    // The line is full and more plain text follows.
                    out.extend_from_slice(b"=\r\n");
                    col = 0;
                }
                continue;
            }
            // Only the trailing blank is left: it is encoded below.
        }
        let b = input[i];
        if b == b'\r' && input.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        if b == b'\n' {
            out.extend_from_slice(b"\r\n");
            col = 0;
            i += 1;
            continue;
        }
        if col + 3 > QP_LINE {
            out.extend_from_slice(b"=\r\n");
            col = 0;
        }
        out.extend_from_slice(&[b'=', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
        col += 3;
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts() -> Parts {
        Parts {
            from: Mailbox::parse("World Jewish Congress <weremember@wjc.example.org>").unwrap(),
            to: Mailbox::parse("Zofia Wiśniewska <zofia@example.org>").unwrap(),
            reply_to: None,
            return_path: None,
            subject: "Zaproszenie dla Łukasza — #WeRemember".into(),
            list_unsubscribe: Some("<https://wjc.example.org/u?c=1>".into()),
            list_id: None,
            extra: vec![("X-Campaign".into(), "weremember".into())],
            text: "Dear Zofia,\n\nline two\n".into(),
            html: "<p>Dear Zofia,</p>\n".into(),
        }
    }

    fn stamp() -> Stamp {
        Stamp { date: 0, id: 0xabc }
    }

    #[test]
    fn mailbox_parse_keeps_commas_and_quotes_in_the_name() {
        let m = Mailbox::parse("Cohen, David <d@example.org>").unwrap();
        assert_eq!(m.name.as_deref(), Some("Cohen, David"));
        assert_eq!(m.address, "d@example.org");
        let m = Mailbox::parse("\"Ann \\\"Q\\\" Lee\" <a@example.org>").unwrap();
        assert_eq!(m.name.as_deref(), Some("Ann \"Q\" Lee"));
        assert_eq!(Mailbox::parse("a@example.org").unwrap().name, None);
        assert_eq!(Mailbox::parse(" <a@example.org>").unwrap().name, None);
        assert!(Mailbox::parse("Ann <>").is_err());
        assert!(Mailbox::parse("not an address").is_err());
        assert!(Mailbox::parse("a@b@example.org").is_err());
        assert!(Mailbox::parse("../../etc/passwd").is_err());
        assert!(Mailbox::parse("zoë@example.org").is_err());
    }

    #[test]
    fn list_id_is_a_description_and_a_dot_atom_in_brackets() {
        let l = ListId::parse(" WJC Appeals <appeals.wjc.example.org> ").unwrap();
        assert_eq!(l.description, "WJC Appeals");
        assert_eq!(l.id, "appeals.wjc.example.org");
        assert_eq!(l.encoded(), "WJC Appeals <appeals.wjc.example.org>");
        assert_eq!(
            ListId::parse("<a.example.org>").unwrap().encoded(),
            "<a.example.org>"
        );
        let q = ListId::parse("\"Appeals, WJC\" <a.example.org>").unwrap();
        assert_eq!(q.encoded(), "\"Appeals, WJC\" <a.example.org>");
        let u = ListId::parse("Żydowski Kongres <a.example.org>").unwrap();
        assert_eq!(
            u.encoded(),
            "=?utf-8?q?=C5=BBydowski_Kongres?= <a.example.org>"
        );
        for bad in [
            "appeals.example.org",
            "WJC <appeals>",
            "WJC <appeals..example.org>",
            "WJC <.appeals.example.org>",
            "WJC <a b.example.org>",
            "WJC <a.example.org> x",
            "W<J>C <a.example.org>",
            "WJC <>",
        ] {
            assert!(ListId::parse(bad).is_err(), "{bad}");
        }
        let long = format!("<{}.org>", "a".repeat(260));
        assert!(ListId::parse(&long).is_err());
        let mut p = parts();
        p.list_id = Some(ListId::parse("WJC Appeals <appeals.wjc.example.org>").unwrap());
        let s = String::from_utf8(build(&p, &stamp()).unwrap()).unwrap();
        assert!(
            s.contains("\r\nList-Id: WJC Appeals <appeals.wjc.example.org>\r\n"),
            "{s}"
        );
    }

    #[test]
    fn message_is_ascii_with_short_lines_and_right_headers() {
        let eml = build(&parts(), &stamp()).unwrap();
        let s = String::from_utf8(eml).unwrap();
        assert!(s.is_ascii());
        assert!(s.lines().all(|l| l.len() <= 78), "{s}");
        assert!(s.starts_with("Date: Thu, 01 Jan 1970 00:00:00 +0000\r\n"));
        assert!(s.contains("To: =?utf-8?q?Zofia_Wi=C5=9Bniewska?= <zofia@example.org>\r\n"));
        assert!(s.contains("Message-ID: <00000000000000000000000000000abc@wjc.example.org>\r\n"));
        assert!(s.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"));
        assert!(s.contains("X-Campaign: weremember\r\n"));
        assert!(s.ends_with("--=_lp_00000000000000000000000000000abc--\r\n"));
        assert!(!s.replace("\r\n", "").contains('\n'), "bare LF in {s}");
    }

    #[test]
    fn parses_back_with_an_independent_parser() {
        let eml = build(&parts(), &stamp()).unwrap();
        let msg = mail_parser::MessageParser::default().parse(&eml).unwrap();
        assert_eq!(msg.subject(), Some("Zaproszenie dla Łukasza — #WeRemember"));
        let to = msg.to().unwrap().first().unwrap();
        assert_eq!(to.name(), Some("Zofia Wiśniewska"));
        assert_eq!(to.address(), Some("zofia@example.org"));
        // Text bodies travel with CRLF line ends.
        assert_eq!(msg.body_text(0).unwrap(), "Dear Zofia,\r\n\r\nline two\r\n");
        assert_eq!(msg.body_html(0).unwrap(), "<p>Dear Zofia,</p>\r\n");
    }

    #[test]
    fn specials_in_ascii_names_are_quoted() {
        let m = Mailbox {
            name: Some("Cohen, \"Dave\"".into()),
            address: "d@example.org".into(),
        };
        assert_eq!(
            encode_mailbox(&m),
            "\"Cohen, \\\"Dave\\\"\" <d@example.org>"
        );
    }

    #[test]
    fn unsubscribe_uris_are_a_clean_list() {
        assert_eq!(
            unsubscribe_uris("<https://a.example/u?c=1>, <mailto:u@a.example>").unwrap(),
            ["https://a.example/u?c=1", "mailto:u@a.example"]
        );
        for bad in [
            "https://a.example/u",
            "<https://a.example/u?c=a b>",
            "<https://a.example/u?c=\"x\">",
            "<https://a.example/u?c=<x>",
            "<https://a.example/u?c=\tx>",
            "<https://a.example/u?c=é>",
            "<https://a.example/u> <mailto:u@a.example>",
            "<https://a.example/u>, ",
            "<>",
            "<https://a.example/u",
            "<https%3A%2F%2Fa.example%2Fu>",
            "<a.example/u>",
        ] {
            assert!(unsubscribe_uris(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            percent_encode("c15>, <mailto:ü"),
            "c15%3E%2C%20%3Cmailto%3A%C3%BC"
        );
        assert_eq!(percent_encode("A-z_0.9~"), "A-z_0.9~");
    }

    #[test]
    fn control_characters_in_names_are_encoded_not_written_raw() {
        for name in ["Ann\tLee", "Ann\x01Lee", "Ann\x7fLee"] {
            let m = Mailbox {
                name: Some(name.into()),
                address: "a@example.org".into(),
            };
            let enc = encode_mailbox(&m);
            assert!(
                enc.bytes().all(|b| (0x20..0x7f).contains(&b)),
                "{name:?} -> {enc:?}"
            );
            let mut p = parts();
            p.to = m;
            let eml = build(&p, &stamp()).unwrap();
            let msg = mail_parser::MessageParser::default().parse(&eml).unwrap();
            assert_eq!(msg.to().unwrap().first().unwrap().name(), Some(name));
        }
        for addr in [
            "\"a b\"@example.org",
            "a\"b@example.org",
            "a b@example.org",
            "a\t@example.org",
        ] {
            assert!(validate_address(addr).is_err(), "{addr:?}");
        }
    }

    #[test]
    fn addresses_written_counts_mailboxes_not_commas_in_names() {
        for (value, n) in [
            ("Sender <s@example.org>", 1),
            ("Lee, Ann <a@example.org>", 1),
            ("\"Lee, Ann\" <a@example.org>", 1),
            ("\"A <a@x.org>, b@y.org\" <a@example.org>", 1),
            ("x <x>", 1),
            ("x", 0),
            ("a@example.org", 1),
            ("A <a@x.org>, B <b@y.org>", 2),
            ("A <a@x.org> B <b@y.org>", 2),
            ("a@x.org, b@y.org", 2),
            ("b@y.org, A <a@x.org>", 2),
        ] {
            assert_eq!(addresses_written(value), n, "{value}");
        }
    }

    #[test]
    fn crlf_in_subject_is_encoded_not_injected() {
        let mut p = parts();
        p.subject = "Hi\r\nBcc: evil@example.org".into();
        let s = String::from_utf8(build(&p, &stamp()).unwrap()).unwrap();
        assert!(!s.contains("\r\nBcc:"), "{s}");
    }

    #[test]
    fn long_words_split_on_char_boundaries() {
        let long = "Ł".repeat(100);
        let enc = encode_words(&long, false);
        assert!(enc.split(' ').all(|w| w.len() <= 75));
        let p = Parts {
            subject: long.clone(),
            ..parts()
        };
        let msg = build(&p, &stamp()).unwrap();
        let parsed = mail_parser::MessageParser::default().parse(&msg).unwrap();
        assert_eq!(parsed.subject(), Some(long.as_str()));
    }

    #[test]
    fn unbreakable_header_over_998_is_refused() {
        let mut p = parts();
        p.list_unsubscribe = Some(format!("<https://x.org/{}>", "a".repeat(1000)));
        assert_eq!(build(&p, &stamp()).unwrap_err().header, "List-Unsubscribe");
    }

    #[test]
    fn qp_round_trips_and_keeps_lines_short() {
        let input = "é=x ".repeat(40) + "\ntrailing space \nend\t\n.\n";
        let mut out = Vec::new();
        quoted_printable(input.as_bytes(), &mut out);
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.split("\r\n").all(|l| l.len() <= 76), "{text}");
        assert!(text.contains("space=20\r\n"));
        assert!(text.contains("end=09\r\n"));
        let eml = format!("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n{text}");
        let msg = mail_parser::MessageParser::default()
            .parse(eml.as_bytes())
            .unwrap();
        assert_eq!(msg.body_text(0).unwrap(), input.replace('\n', "\r\n"));
    }

    /// The fast encoder against the rules, on many awkward inputs: every
    /// line at most 76 characters, only legal characters, no blank before a
    /// break, and the decoder gives the input back.
    #[test]
    fn qp_rules_hold_on_awkward_inputs() {
        let pieces = [
            "a",
            " ",
            "\t",
            "=",
            "é",
            "\n",
            "\r\n",
            "x".repeat(74).leak(),
            "y".repeat(75).leak(),
            "z".repeat(76).leak(),
            "<td style=\"a\">",
            "  \n",
            "ł ",
        ];
        let mut seed = 7u64;
        for _ in 0..3000 {
            let mut input = String::new();
            for _ in 0..(seed % 12) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                input.push_str(pieces[(seed % pieces.len() as u64) as usize]);
            }
            seed = seed.wrapping_add(1);
            let mut out = Vec::new();
            quoted_printable(input.as_bytes(), &mut out);
            let text = String::from_utf8(out).unwrap();
            for line in text.split("\r\n") {
                assert!(line.len() <= 76, "{line:?} from {input:?}");
                assert!(
                    !line.ends_with([' ', '\t']),
                    "blank at the end of {line:?} from {input:?}"
                );
                assert!(line
                    .bytes()
                    .all(|b| (33..=126).contains(&b) || b == b' ' || b == b'\t'));
            }
            let eml = format!("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n{text}");
            let msg = mail_parser::MessageParser::default()
                .parse(eml.as_bytes())
                .unwrap();
            let want = input.replace("\r\n", "\n").replace('\n', "\r\n");
            assert_eq!(
                msg.body_text(0).unwrap_or_default(),
                want,
                "from {input:?}: {text:?}"
            );
        }
    }

    #[test]
    fn plain8_agrees_with_the_table() {
        for b in 0..=255u8 {
            for pos in 0..8 {
                let mut chunk = *b"abcdefgh";
                chunk[pos] = b;
                let want = chunk.iter().all(|&c| LITERAL[c as usize] && c != b'\t');
                assert_eq!(plain8(&chunk), want, "byte {b:#x} at {pos}");
            }
        }
    }

    #[test]
    fn date_is_rfc5322() {
        let s = Stamp {
            date: 1_611_100_800,
            id: 1,
        };
        assert_eq!(s.rfc5322_date(), "Wed, 20 Jan 2021 00:00:00 +0000");
    }
}
