//! The hidden preview line (`mj-preview`, the "preheader"), rewritten after
//! mrml renders it. MJML hides it with white 1px text, which SpamAssassin
//! scores as text hidden from the reader (HTML_FONT_LOW_CONTRAST, 0.7
//! points). Here it is hidden without a colour, and padded so that the
//! first words of the body do not run on into the inbox preview. Works on
//! the HTML template only (placeholders may stand in the preview text); it
//! must not touch anything but that one `<div>`.

/// The style of the rewritten preview `<div>`: hidden in every client
/// (`mso-hide` for Outlook's Word engine, which ignores `display:none`),
/// without any colour or font size a spam filter would read as hiding.
const STYLE: &str = "display:none;max-height:0;overflow:hidden;mso-hide:all;";

/// One unit of the padding: a combining grapheme joiner, a zero-width
/// non-joiner and a no-break space. Clients that build the preview from
/// the text show these as (nearly) nothing, so the preview ends with the
/// preview text instead of continuing with the letter's first words.
const FILLER: &str = "&#847;&zwnj;&nbsp;";

/// How many [`FILLER`] units follow the preview text. Inbox previews show
/// up to about 140 characters. A fixed number, not one that depends on the
/// text's length: the text may hold placeholders, and the safety net's per
/// recipient render (with values merged) must give the same letter.
const UNITS: usize = 90;

/// `html` with mrml's preview `<div>` (the first element of `<body>`)
/// restyled and padded; `html` unchanged when it has none.
pub(crate) fn rewrite(html: &str) -> String {
    let Some((start, text_start, text_end, end)) = locate(html) else {
        return html.to_string();
    };
    let text = &html[text_start..text_end];
    let mut out = String::with_capacity(html.len() + UNITS * FILLER.len() + 64);
    out.push_str(&html[..start]);
    out.push_str("<div style=\"");
    out.push_str(STYLE);
    out.push_str("\">");
    out.push_str(text);
    for _ in 0..UNITS {
        out.push_str(FILLER);
    }
    out.push_str("</div>");
    out.push_str(&html[end..]);
    out
}

/// Where mrml's preview `<div>` lies: (start of the tag, start and end of
/// its text, end of `</div>`). mrml writes it as the first thing inside
/// `<body …>`, hidden with `display:none` and `opacity:0`, holding text
/// only (MJML allows no markup in `mj-preview`).
fn locate(html: &str) -> Option<(usize, usize, usize, usize)> {
    let body = html.find("<body")?;
    let start = body + html[body..].find('>')? + 1;
    let rest = &html[start..];
    let open = "<div style=\"display:none;";
    if !rest.starts_with(open) {
        return None;
    }
    let tag_end = rest.find('>')?;
    if !rest[..tag_end].contains("opacity:0") {
        return None;
    }
    let text_start = start + tag_end + 1;
    let close = html[text_start..].find("</div>")?;
    let text_end = text_start + close;
    if html[text_start..text_end].contains('<') {
        return None;
    }
    Some((start, text_start, text_end, text_end + "</div>".len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What mrml 6.0.1 writes for `<mj-preview>Hello {{name}}</mj-preview>`.
    const MRML: &str = "<!doctype html><html><head></head><body style=\"word-spacing:normal;\"><div style=\"display:none;font-size:1px;color:#ffffff;line-height:1px;max-height:0px;max-width:0px;opacity:0;overflow:hidden;\">Hello {{name}}</div><div aria-roledescription=\"email\" role=\"article\"><p>Body</p></div></body></html>";

    #[test]
    fn the_preview_is_hidden_without_colour_and_padded() {
        let out = rewrite(MRML);
        let expected = format!(
            "<!doctype html><html><head></head><body style=\"word-spacing:normal;\">\
             <div style=\"display:none;max-height:0;overflow:hidden;mso-hide:all;\">Hello {{{{name}}}}{}</div>\
             <div aria-roledescription=\"email\" role=\"article\"><p>Body</p></div></body></html>",
            FILLER.repeat(UNITS)
        );
        assert_eq!(out, expected);
        assert!(!out.contains("color:#ffffff"));
    }

    #[test]
    fn finds_the_preview_mrml_really_writes() {
        let mjml = "<mjml><mj-head><mj-preview>Hi {{name}}</mj-preview></mj-head>\
                    <mj-body><mj-section><mj-column><mj-text>Body</mj-text></mj-column>\
                    </mj-section></mj-body></mjml>";
        let html = mrml::parse(mjml)
            .unwrap()
            .element
            .render(&Default::default())
            .unwrap();
        assert!(html.contains("color:#ffffff"), "mrml changed: {html}");
        let out = rewrite(&html);
        assert!(
            out.contains("<div style=\"display:none;max-height:0;overflow:hidden;mso-hide:all;\">Hi {{name}}&#847;"),
            "{out}"
        );
        assert!(!out.contains("color:#ffffff"), "{out}");
    }

    #[test]
    fn a_letter_without_a_preview_is_unchanged() {
        let html = "<html><body style=\"x\"><div style=\"display:none\">not mrml's</div><p>Body</p></body></html>";
        assert_eq!(rewrite(html), html);
        let plain = "<html><body><div role=\"article\">Body</div></body></html>";
        assert_eq!(rewrite(plain), plain);
    }
}
