//! The start tags of an MJML file, as the corrections before mrml read
//! and edit them.

use super::*;

/// One start tag of the MJML: where it is, its name and its attributes.
pub(super) struct Tag<'a> {
    pub(super) start: usize,
    /// Just after the name: where an attribute can be added.
    pub(super) after_name: usize,
    pub(super) name: &'a str,
    pub(super) attrs: Vec<Attr<'a>>,
}

pub(super) struct Attr<'a> {
    pub(super) name: &'a str,
    pub(super) value: &'a str,
    /// The attribute with the whitespace before it.
    pub(super) span: std::ops::Range<usize>,
    /// The value, without its quotes.
    pub(super) value_span: std::ops::Range<usize>,
}

impl<'a> Tag<'a> {
    pub(super) fn get(&self, name: &str) -> Option<&'a str> {
        self.attrs.iter().find(|a| a.name == name).map(|a| a.value)
    }
}

/// The start tags of `src`, skipping comments and the insides of style
/// sheets (as [`escape_attribute_values`] does).
pub(super) fn tags(src: &str) -> Vec<Tag<'_>> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(p) = src[i..].find('<') {
        i += p;
        let rest = &src[i..];
        if rest.starts_with("<!--") {
            i += rest.find("-->").map_or(rest.len(), |e| e + 3);
            continue;
        }
        if starts_with_tag(rest, "style") || starts_with_tag(rest, "mj-style") {
            i += rest.find("</").unwrap_or(rest.len()).max(1);
            continue;
        }
        let name_len = rest[1..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == ':'))
            .unwrap_or(rest.len() - 1);
        if name_len == 0 {
            i += 1;
            continue;
        }
        let name = &src[i + 1..i + 1 + name_len];
        let mut j = i + 1 + name_len;
        let mut attrs = Vec::new();
        loop {
            let ws = j;
            while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                j += 1;
            }
            if j >= bytes.len() || bytes[j] == b'>' || bytes[j] == b'/' {
                break;
            }
            let n0 = j;
            while j < bytes.len()
                && !matches!(bytes[j], b'=' | b'>' | b'/')
                && !bytes[j].is_ascii_whitespace()
            {
                j += 1;
            }
            let an = &src[n0..j];
            if j < bytes.len()
                && bytes[j] == b'='
                && j + 1 < bytes.len()
                && matches!(bytes[j + 1], b'"' | b'\'')
            {
                let q = bytes[j + 1] as char;
                let v0 = j + 2;
                let v1 = src[v0..].find(q).map_or(bytes.len(), |e| v0 + e);
                attrs.push(Attr {
                    name: an,
                    value: &src[v0..v1],
                    span: ws..(v1 + 1).min(bytes.len()),
                    value_span: v0..v1,
                });
                j = v1 + 1;
            } else {
                if an.is_empty() {
                    j += 1;
                }
                attrs.push(Attr {
                    name: an,
                    value: "",
                    span: ws..j,
                    value_span: j..j,
                });
            }
        }
        out.push(Tag {
            start: i,
            after_name: i + 1 + name_len,
            name,
            attrs,
        });
        i = j.max(i + 1).min(bytes.len());
    }
    out
}

/// `src` with each (range, replacement) applied; ranges do not overlap.
pub(super) fn apply(src: &str, mut edits: Vec<(std::ops::Range<usize>, String)>) -> Cow<'_, str> {
    if edits.is_empty() {
        return Cow::Borrowed(src);
    }
    edits.sort_by_key(|(r, _)| (r.start, r.end));
    let mut out = String::with_capacity(src.len() + 64);
    let mut at = 0;
    for (r, text) in edits {
        if r.start < at {
            continue;
        }
        out.push_str(&src[at..r.start]);
        out.push_str(&text);
        at = r.end;
    }
    out.push_str(&src[at..]);
    Cow::Owned(out)
}

pub(super) fn starts_with_tag(s: &str, name: &str) -> bool {
    s.len() > name.len() + 1
        && s[1..].starts_with(name)
        && matches!(
            s.as_bytes()[name.len() + 1],
            b'>' | b' ' | b'\t' | b'\n' | b'\r' | b'/'
        )
}
