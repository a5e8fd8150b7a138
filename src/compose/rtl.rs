//! A variant's language on its MJML, and right-to-left layout for the
//! languages written so (see [`crate::compose::lang::Tag::direction`]).
//!
//! The MJML is rewritten before mrml reads it, keeping every line where it
//! was (template errors keep their line numbers):
//! - `<mjml>` gets the variant's `lang` when it has none (mrml writes it on
//!   `<html>` and on the body's wrapper, as MJML does);
//! - for a right-to-left language, when `<mjml>` declares no `dir` of its
//!   own, it gets `dir="rtl"` and the layout is mirrored as far as MJML
//!   attributes allow: `align` and `text-align` left and right swapped,
//!   `padding-left`/`padding-right` and `border-left`/`border-right`
//!   swapped, the right and left values of four-value `padding` and
//!   `inner-padding` swapped, sections and columns laid out right to left
//!   (`direction="rtl"`), and text right-aligned by default
//!   (`mj-attributes`, which the template's own attributes override).
//!
//! A template that writes `dir` on `<mjml>` is taken as laid out by hand
//! and only gets its `lang`. Styles inside `mj-text` HTML and included
//! files are not mirrored. This file does no I/O.

use std::borrow::Cow;

use crate::compose::bidi::Direction;
use crate::compose::lang::Tag;

/// The defaults a right-to-left letter gets, ahead of the template's own
/// `mj-attributes`.
const RTL_DEFAULTS: &str = "<mj-attributes><mj-section direction=\"rtl\" /><mj-wrapper direction=\"rtl\" /><mj-column direction=\"rtl\" /><mj-group direction=\"rtl\" /><mj-text align=\"right\" /><mj-table align=\"right\" /></mj-attributes>";

/// The value of attribute `name` on the `<mjml>` root of `mjml`.
pub fn root_attribute<'a>(mjml: &'a str, name: &str) -> Option<&'a str> {
    let (start, end) = root(mjml)?;
    attributes(&mjml[start..end])
        .find(|a| a.name.eq_ignore_ascii_case(name))
        .map(|a| &mjml[start + a.value.0..start + a.value.1])
}

/// `mjml` with the language `tag` (see the module's documentation).
pub fn prepare<'a>(mjml: &'a str, tag: &Tag) -> Cow<'a, str> {
    let Some((_, end)) = root(mjml) else {
        return Cow::Borrowed(mjml);
    };
    let has_lang = root_attribute(mjml, "lang").is_some();
    let mirror = tag.direction() == Direction::Rtl && root_attribute(mjml, "dir").is_none();
    if has_lang && !mirror {
        return Cow::Borrowed(mjml);
    }
    let mut extra = String::new();
    if !has_lang {
        extra.push_str(&format!(" lang=\"{}\"", tag.as_str()));
    }
    if mirror {
        extra.push_str(" dir=\"rtl\"");
    }
    // `<mjml` + attributes + extra + the rest of the root tag (`>`).
    let close = if mjml[..end].ends_with("/>") {
        end - 2
    } else {
        end - 1
    };
    let mut out = String::with_capacity(mjml.len() + RTL_DEFAULTS.len() + 64);
    out.push_str(&mjml[..close]);
    out.push_str(&extra);
    out.push_str(&mjml[close..end]);
    let rest = &mjml[end..];
    if !mirror {
        out.push_str(rest);
        return Cow::Owned(out);
    }
    let mirrored = mirror_tags(rest);
    match find_tag(&mirrored, "mj-head") {
        Some((_, head_end)) if !mirrored[..head_end].ends_with("/>") => {
            out.push_str(&mirrored[..head_end]);
            out.push_str(RTL_DEFAULTS);
            out.push_str(&mirrored[head_end..]);
        }
        _ => {
            out.push_str("<mj-head>");
            out.push_str(RTL_DEFAULTS);
            out.push_str("</mj-head>");
            out.push_str(&mirrored);
        }
    }
    Cow::Owned(out)
}

/// One attribute of a tag: its name, and its value's byte range in the tag.
struct Attribute<'a> {
    name: &'a str,
    value: (usize, usize),
}

/// The attributes of `tag` (from `<` to `>`), quoted values only (MJML
/// requires quotes).
fn attributes(tag: &str) -> impl Iterator<Item = Attribute<'_>> {
    let bytes = tag.as_bytes();
    // Skip `<name`.
    let mut i = bytes
        .iter()
        .position(|b| b.is_ascii_whitespace() || *b == b'>' || *b == b'/')
        .unwrap_or(bytes.len());
    std::iter::from_fn(move || loop {
        while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b'/') {
            i += 1;
        }
        if i >= bytes.len() || bytes[i] == b'>' {
            return None;
        }
        let name_start = i;
        while i < bytes.len()
            && !matches!(bytes[i], b'=' | b'>' | b'/')
            && !bytes[i].is_ascii_whitespace()
        {
            i += 1;
        }
        let name = &tag[name_start..i];
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= bytes.len() || bytes[i] != b'=' {
            if name.is_empty() {
                i += 1;
            }
            continue;
        }
        i += 1;
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let Some(&quote) = bytes.get(i).filter(|q| matches!(q, b'"' | b'\'')) else {
            continue;
        };
        let start = i + 1;
        let end = tag[start..]
            .find(quote as char)
            .map_or(bytes.len(), |e| start + e);
        i = end + 1;
        return Some(Attribute {
            name,
            value: (start, end),
        });
    })
}

/// The end (after `>`) of the tag starting at `start`, quotes respected.
fn tag_end(s: &str, start: usize) -> usize {
    let mut quote = None;
    for (i, b) in s.bytes().enumerate().skip(start) {
        match (quote, b) {
            (None, b'"' | b'\'') => quote = Some(b),
            (Some(q), _) if q == b => quote = None,
            (None, b'>') => return i + 1,
            _ => {}
        }
    }
    s.len()
}

/// The first `<name` tag (followed by a space, `/` or `>`) and its end.
fn find_tag(s: &str, name: &str) -> Option<(usize, usize)> {
    let open = format!("<{name}");
    let mut from = 0;
    while let Some(p) = s[from..].find(&open) {
        let at = from + p;
        let next = s.as_bytes().get(at + open.len()).copied();
        if matches!(next, Some(b) if b.is_ascii_whitespace() || b == b'>' || b == b'/') {
            return Some((at, tag_end(s, at)));
        }
        from = at + open.len();
    }
    None
}

fn root(mjml: &str) -> Option<(usize, usize)> {
    find_tag(mjml, "mjml")
}

/// Every `<mj-…>` tag of `s` with its attributes mirrored.
fn mirror_tags(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 64);
    let mut from = 0;
    while let Some(p) = s[from..].find("<mj-") {
        let at = from + p;
        let end = tag_end(s, at);
        out.push_str(&s[from..at]);
        mirror_tag(&s[at..end], &mut out);
        from = end;
    }
    out.push_str(&s[from..]);
    out
}

fn mirror_tag(tag: &str, out: &mut String) {
    let mut last = 0;
    for a in attributes(tag) {
        let value = &tag[a.value.0..a.value.1];
        let name = a.name.to_ascii_lowercase();
        let swapped_name = match name.as_str() {
            "padding-left" => Some("padding-right"),
            "padding-right" => Some("padding-left"),
            "border-left" => Some("border-right"),
            "border-right" => Some("border-left"),
            _ => None,
        };
        let new_value: Option<String> = match name.as_str() {
            "align" | "text-align" => match value.trim().to_ascii_lowercase().as_str() {
                "left" => Some("right".into()),
                "right" => Some("left".into()),
                _ => None,
            },
            "padding" | "inner-padding" => {
                let parts: Vec<&str> = value.split_whitespace().collect();
                (parts.len() == 4 && parts[1] != parts[3])
                    .then(|| format!("{} {} {} {}", parts[0], parts[3], parts[2], parts[1]))
            }
            "direction" if value.trim().eq_ignore_ascii_case("ltr") => Some("rtl".into()),
            _ => None,
        };
        if swapped_name.is_none() && new_value.is_none() {
            continue;
        }
        // The name starts where `a.name` lies inside `tag`.
        let name_start = a.name.as_ptr() as usize - tag.as_ptr() as usize;
        out.push_str(&tag[last..name_start]);
        out.push_str(swapped_name.unwrap_or(a.name));
        out.push_str(&tag[name_start + a.name.len()..a.value.0]);
        out.push_str(new_value.as_deref().unwrap_or(value));
        last = a.value.1;
    }
    out.push_str(&tag[last..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn he() -> Tag {
        Tag::parse("he").unwrap()
    }

    #[test]
    fn reads_the_root_attributes() {
        let m = "<mjml lang=\"fr\" dir='ltr'>\n<mj-body/></mjml>";
        assert_eq!(root_attribute(m, "lang"), Some("fr"));
        assert_eq!(root_attribute(m, "dir"), Some("ltr"));
        assert_eq!(root_attribute(m, "owa"), None);
        assert_eq!(root_attribute("<mjmlx lang=\"fr\">", "lang"), None);
    }

    #[test]
    fn a_left_to_right_variant_only_gets_its_lang() {
        let fr = Tag::parse("fr").unwrap();
        let m = "<mjml>\n<mj-body><mj-text align=\"left\">x</mj-text></mj-body></mjml>";
        assert_eq!(
            prepare(m, &fr),
            "<mjml lang=\"fr\">\n<mj-body><mj-text align=\"left\">x</mj-text></mj-body></mjml>"
        );
        let own = "<mjml lang=\"fr-CA\"><mj-body/></mjml>";
        assert!(matches!(prepare(own, &fr), Cow::Borrowed(_)));
    }

    #[test]
    fn a_right_to_left_variant_is_mirrored_line_for_line() {
        let m = "<mjml lang=\"he\">\n  <mj-head>\n    <mj-attributes><mj-text padding=\"8px 24px 8px 12px\" /></mj-attributes>\n  </mj-head>\n  <mj-body>\n    <mj-section direction=\"ltr\"><mj-column padding-left=\"4px\" border-right=\"1px solid #000\">\n      <mj-text align=\"left\">שלום <span style=\"text-align:left\">{{name}}</span></mj-text>\n      <mj-button align='right' inner-padding=\"1px 2px 3px 4px\">x</mj-button>\n      <mj-image align=\"center\" padding=\"0 0 8px\" src=\"a.png\" />\n    </mj-column></mj-section>\n  </mj-body>\n</mjml>";
        let out = prepare(m, &he());
        assert_eq!(out.lines().count(), m.lines().count());
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "<mjml lang=\"he\" dir=\"rtl\">");
        assert_eq!(lines[1], format!("  <mj-head>{RTL_DEFAULTS}"));
        assert_eq!(
            lines[2],
            "    <mj-attributes><mj-text padding=\"8px 12px 8px 24px\" /></mj-attributes>"
        );
        assert_eq!(
            lines[5],
            "    <mj-section direction=\"rtl\"><mj-column padding-right=\"4px\" border-left=\"1px solid #000\">"
        );
        // The HTML inside mj-text is the author's.
        assert_eq!(
            lines[6],
            "      <mj-text align=\"right\">שלום <span style=\"text-align:left\">{{name}}</span></mj-text>"
        );
        assert_eq!(
            lines[7],
            "      <mj-button align='left' inner-padding=\"1px 4px 3px 2px\">x</mj-button>"
        );
        assert_eq!(
            lines[8],
            "      <mj-image align=\"center\" padding=\"0 0 8px\" src=\"a.png\" />"
        );
    }

    #[test]
    fn a_template_without_head_gets_one_and_one_with_dir_is_left_alone() {
        let m = "<mjml><mj-body></mj-body></mjml>";
        assert_eq!(
            prepare(m, &he()),
            format!("<mjml lang=\"he\" dir=\"rtl\"><mj-head>{RTL_DEFAULTS}</mj-head><mj-body></mj-body></mjml>")
        );
        let own = "<mjml dir=\"rtl\"><mj-body><mj-text align=\"left\">x</mj-text></mj-body></mjml>";
        assert_eq!(
            prepare(own, &he()),
            "<mjml dir=\"rtl\" lang=\"he\"><mj-body><mj-text align=\"left\">x</mj-text></mj-body></mjml>"
        );
    }
}
