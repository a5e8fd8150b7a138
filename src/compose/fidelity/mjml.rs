//! The corrections made to the MJML before mrml reads it.

use super::*;

/// MJML writes a colour attribute given as `#rgb` as `#rrggbb`; mrml
/// copies it.
pub(super) fn short_hex_colours(mjml: &str) -> Cow<'_, str> {
    let mut edits = Vec::new();
    for tag in tags(mjml).iter().filter(|t| t.name.starts_with("mj-")) {
        for a in tag.attrs.iter().filter(|a| a.name.ends_with("color")) {
            let v = a.value.trim();
            if v.len() == 4 && v.starts_with('#') && v[1..].bytes().all(|b| b.is_ascii_hexdigit()) {
                let long: String = v[1..].chars().flat_map(|c| [c, c]).collect();
                edits.push((a.value_span.clone(), format!("#{long}")));
            }
        }
    }
    apply(mjml, edits)
}

/// An attribute given twice (`font-size="12px" … font-size="14px"`): MJML
/// (and every browser) keeps the first, mrml the last. The later ones go.
pub(super) fn keep_first_of_duplicate_attributes(mjml: &str) -> Cow<'_, str> {
    let mut edits = Vec::new();
    for tag in tags(mjml) {
        for (k, a) in tag.attrs.iter().enumerate() {
            if tag.attrs[..k].iter().any(|b| b.name == a.name) {
                edits.push((a.span.clone(), String::new()));
            }
        }
    }
    apply(mjml, edits)
}

/// mrml ignores a padding shorthand with a unitless `0` in it (`padding="0
/// 25px"`) when it sizes what is inside, so images and Outlook's tables come
/// out as wide as the column; MJML reads `0` as `0px`. Written `0px`, mrml
/// reads it too (the CSS it writes says `0px` where MJML's says `0`: the same
/// length).
pub(super) fn unitless_zero_in_padding(mjml: &str) -> Cow<'_, str> {
    let mut edits = Vec::new();
    for tag in tags(mjml).iter().filter(|t| t.name.starts_with("mj-")) {
        for a in &tag.attrs {
            let is_padding = a.name == "padding" || a.name.ends_with("-padding");
            let words: Vec<&str> = a.value.split_whitespace().collect();
            if is_padding && words.len() > 1 && words.contains(&"0") {
                let fixed: Vec<&str> = words
                    .iter()
                    .map(|w| if *w == "0" { "0px" } else { w })
                    .collect();
                edits.push((a.value_span.clone(), fixed.join(" ")));
            }
        }
    }
    apply(mjml, edits)
}

/// MJML writes `alt=""` on the `<img>` of an `mj-image`, `mj-carousel-image`
/// or social icon without `alt` (a mail client that blocks images then
/// shows nothing, and screen readers skip it); mrml writes no `alt`, so
/// clients draw a broken-image icon and read out the file name. Unless
/// `mj-attributes` gives an `alt` for the tag, its class or `mj-all`, the
/// tag gets `alt=""`.
pub(super) fn empty_alt_on_images(mjml: &str) -> Cow<'_, str> {
    const IMAGES: [&str; 3] = ["mj-image", "mj-carousel-image", "mj-social-element"];
    let all = tags(mjml);
    let defaults = head_defaults(mjml, &all);
    let block = attributes_block(mjml).unwrap_or(0..0);
    let has_default = |tag: &Tag| {
        defaults.iter().any(|(on, class, attrs)| {
            attrs.iter().any(|(n, _)| *n == "alt")
                && match class {
                    Some(c) => tag
                        .get("mj-class")
                        .is_some_and(|cs| cs.split_whitespace().any(|x| x == *c)),
                    None => *on == "mj-all" || *on == tag.name,
                }
        })
    };
    let edits = all
        .iter()
        .filter(|t| {
            IMAGES.contains(&t.name)
                && !block.contains(&t.start)
                && t.get("alt").is_none()
                && !has_default(t)
        })
        .map(|t| (t.after_name..t.after_name, " alt=\"\"".to_string()))
        .collect();
    apply(mjml, edits)
}

/// Where the `mj-attributes` block is, if there is one.
pub(super) fn attributes_block(mjml: &str) -> Option<std::ops::Range<usize>> {
    let start = mjml.find("<mj-attributes")?;
    let end = mjml[start..]
        .find("</mj-attributes")
        .map_or(mjml.len(), |e| start + e);
    Some(start..end)
}

/// The defaults `mj-attributes` gives: (tag, the class for `mj-class`,
/// the attributes).
#[allow(clippy::type_complexity)]
pub(super) fn head_defaults<'a>(
    mjml: &str,
    all: &[Tag<'a>],
) -> Vec<(&'a str, Option<&'a str>, Vec<(&'a str, &'a str)>)> {
    let Some(block) = attributes_block(mjml) else {
        return Vec::new();
    };
    all.iter()
        .filter(|t| block.contains(&t.start) && t.name != "mj-attributes")
        .map(|t| {
            let class = (t.name == "mj-class").then(|| t.get("name")).flatten();
            let attrs = t
                .attrs
                .iter()
                .filter(|a| class.is_none() || a.name != "name")
                .map(|a| (a.name, a.value))
                .collect();
            (t.name, class, attrs)
        })
        .collect()
}

/// MJML's `mj-hero` has the modes `fixed-height` and `fluid-height`; mrml
/// looks for `fluid`, so a fluid hero gets a fixed height of its padding
/// below zero (`height="-180"`) instead of the spacer cells that keep the
/// background's proportions.
pub(super) fn hero_fluid_height(mjml: &str) -> Cow<'_, str> {
    let edits = tags(mjml)
        .iter()
        .filter(|t| t.name == "mj-hero")
        .flat_map(|t| t.attrs.iter())
        .filter(|a| a.name == "mode" && a.value == "fluid-height")
        .map(|a| (a.value_span.clone(), "fluid".to_string()))
        .collect();
    apply(mjml, edits)
}

/// mrml ignores what `mj-attributes` gives `mj-body` (its width and
/// background colour) and `mj-accordion-element`; MJML applies it. The
/// values are written on the tags themselves, where mrml reads them.
pub(super) fn body_and_accordion_defaults(mjml: &str) -> Cow<'_, str> {
    const ACCORDION_ELEMENT: [&str; 4] =
        ["background-color", "border", "font-family", "icon-position"];
    let all = tags(mjml);
    let defaults = head_defaults(mjml, &all);
    let block = attributes_block(mjml).unwrap_or(0..0);
    let mut edits = Vec::new();
    for t in all.iter().filter(|t| !block.contains(&t.start)) {
        if !matches!(t.name, "mj-body" | "mj-accordion-element") {
            continue;
        }
        let mut add = String::new();
        // The tag's own defaults first, then those of mj-all that it takes.
        let own = defaults
            .iter()
            .filter(|(on, c, _)| *on == t.name && c.is_none());
        let all = defaults
            .iter()
            .filter(|(on, c, _)| *on == "mj-all" && c.is_none());
        for (on, _, attrs) in own.chain(all) {
            for (n, v) in attrs {
                let takes = *on == t.name
                    || (t.name == "mj-accordion-element" && ACCORDION_ELEMENT.contains(n));
                if takes && t.get(n).is_none() && !add.contains(&format!(" {n}=")) {
                    add.push_str(&format!(" {n}=\"{v}\""));
                }
            }
        }
        if !add.is_empty() {
            edits.push((t.after_name..t.after_name, add));
        }
    }
    apply(mjml, edits)
}

/// mrml writes attribute values with Rust's `{:?}`: a newline becomes the
/// two characters `\n` (losing every declaration of a multi-line `style`), a
/// `"` becomes `\"` (ending the attribute early), a `\` doubles and U+FE0F
/// becomes the text `\u{fe0f}`. MJML copies the value as written. Writing
/// such characters as character references before mrml reads them gives the
/// same value once a browser or mail client reads the HTML. Placeholders
/// (`{{…}}`) are left alone: Handlebars must still find them.
pub(super) fn escape_attribute_values(mjml: &str) -> Cow<'_, str> {
    let mut edits = Vec::new();
    for tag in tags(mjml) {
        for a in tag.attrs {
            if a.value.chars().any(needs_reference) {
                let mut fixed = String::with_capacity(a.value.len() + 16);
                push_referenced(&mut fixed, a.value);
                if fixed != a.value {
                    edits.push((a.value_span, fixed));
                }
            }
        }
    }
    apply(mjml, edits)
}

/// Correction K. mrml writes the `mj-title` into the body wrapper's
/// `aria-label` with `{:?}` too: a left-to-right mark (which a Hebrew
/// title needs before `#WeRemember`) becomes the text `\u{200e}`, an emoji's
/// variation selector `\u{fe0f}`, a `"` ends the attribute. (MJML copies
/// the text, so its own `"` ends the attribute there.) The title's text as
/// character references reads the same in `<title>` and in the attribute.
pub(super) fn escape_title_text(mjml: &str) -> Cow<'_, str> {
    const OPEN: &str = "<mj-title>";
    const CLOSE: &str = "</mj-title>";
    let Some(start) = mjml.find(OPEN).map(|p| p + OPEN.len()) else {
        return Cow::Borrowed(mjml);
    };
    let Some(len) = mjml[start..].find(CLOSE) else {
        return Cow::Borrowed(mjml);
    };
    let text = &mjml[start..start + len];
    if !text.chars().any(needs_reference) {
        return Cow::Borrowed(mjml);
    }
    let mut fixed = String::with_capacity(text.len() + 16);
    push_referenced(&mut fixed, text);
    apply(mjml, vec![(start..start + len, fixed)])
}

/// A character that Rust's `{:?}` of a string would write otherwise.
pub(super) fn needs_reference(c: char) -> bool {
    c != '\'' && c.escape_debug().nth(1).is_some()
}

/// `value` with each character mrml would mis-write as a character
/// reference, except inside placeholders.
pub(super) fn push_referenced(out: &mut String, value: &str) {
    let mut rest = value;
    while !rest.is_empty() {
        let (plain, held) = match rest.find("{{") {
            Some(0) => {
                let end = rest.find("}}").map_or(rest.len(), |p| p + 2);
                out.push_str(&rest[..end]);
                rest = &rest[end..];
                continue;
            }
            Some(p) => rest.split_at(p),
            None => (rest, ""),
        };
        for c in plain.chars() {
            match c {
                '"' => out.push_str("&quot;"),
                c if needs_reference(c) => out.push_str(&format!("&#x{:X};", c as u32)),
                c => out.push(c),
            }
        }
        rest = held;
    }
}
