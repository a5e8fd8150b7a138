//! Bidirectional isolation of merged values (Unicode UAX #9). A value whose
//! direction differs from the letter's must not pull the text around it
//! into its own run: in `Dear {{last_name}}, 2021 was` a Hebrew name would
//! otherwise take the comma and the year with it ("Dear 2021 ,כהן was").
//!
//! The HTML template is rewritten once, at compile time: every plain value
//! placeholder in text content is wrapped in `<bdi>…</bdi>`, so a letter
//! costs nothing more. Placeholders inside tags (attributes), comments,
//! `<head>`, `<style>`, `<script>`, `<title>` and `<textarea>` stay as they
//! are. The text part has no markup: a value is isolated there with FSI …
//! PDI (U+2068 … U+2069) by the text registry's escape function, and only
//! when it holds a strong character of the other direction than the
//! letter's (see `isolate_text`); values next to each other are isolated
//! as one unit, as in the HTML (see `isolate_text_runs`). Headers are never touched (RFC 2047
//! words carry no direction marks). This file does no I/O.

use crate::compose::pieces::{kind, tag, Kind};
use unicode_bidi::BidiClass;

/// FIRST STRONG ISOLATE and POP DIRECTIONAL ISOLATE.
pub(crate) const FSI: char = '\u{2068}';
pub(crate) const PDI: char = '\u{2069}';

/// The base direction of a letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    Ltr,
    /// A right-to-left variant's ([`crate::compose::lang::Tag::direction`]).
    Rtl,
}

/// Whether `c` is a strong right-to-left character (bidi class R or AL).
fn is_rtl(c: char) -> bool {
    matches!(unicode_bidi::bidi_class(c), BidiClass::R | BidiClass::AL)
}

/// Whether `value` holds a strong character of the direction opposite to
/// `base`, the case where the value could reorder its neighbours.
pub(crate) fn needs_isolation(value: &str, base: Direction) -> bool {
    match base {
        Direction::Ltr => value.chars().any(is_rtl),
        Direction::Rtl => value
            .chars()
            .any(|c| unicode_bidi::bidi_class(c) == BidiClass::L),
    }
}

/// A value for the text part: wrapped in FSI … PDI when it needs it.
///
/// Why only then, and not always as in the HTML: isolates are invisible
/// characters that some plain-text readers (old terminals, a few webmail
/// "show original" views) draw as boxes, and most values (a Latin name in
/// an English letter) cannot reorder anything. A value of the other
/// direction, the one case that does, gets them. A value that is all
/// neutrals (digits, punctuation) takes the letter's direction and needs
/// none.
pub(crate) fn isolate_text(value: &str, base: Direction) -> String {
    if needs_isolation(value, base) {
        let mut s = String::with_capacity(value.len() + 6);
        s.push(FSI);
        s.push_str(value);
        s.push(PDI);
        s
    } else {
        value.to_string()
    }
}

/// The block helper that isolates a run of adjacent values in the text
/// part as one unit (see [`isolate_text_runs`]). Only the rewrite writes
/// it; a CSV column of this very name would be hidden by it in the text
/// part.
pub(crate) const RUN_HELPER: &str = "letterpress-bidi-run";

/// The text template with each run of two or more values separated only
/// by spaces (`{{title}} {{last_name}}`) wrapped, at compile time, in the
/// [`RUN_HELPER`] block, its values made raw (`{{{title}}}`) so that the
/// per-value escape ([`isolate_text`]) adds no marks of its own inside:
/// the block isolates the run as a whole, as one `<bdi>` does in the HTML.
/// Apart, a Hebrew title and name in an English letter would each be
/// isolated, and shown left to right ("Dear כהן הרב," read in the wrong
/// order). A single value is left to the escape function. No newline is
/// added, so line numbers in errors stay those of the template.
pub(crate) fn isolate_text_runs(text: &str) -> String {
    // A run's member: a plain value without whitespace control (`~`),
    // which could not be turned into `{{{…}}}` as it is written.
    let member = |t: &str| kind(t) == Kind::Simple && !t.contains('~');
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut copied = 0;
    while let Some(at) = text[i..].find("{{") {
        let start = i + at;
        let Some(t) = tag(&text[start..]) else {
            break;
        };
        if !member(t) {
            i = start + t.len();
            continue;
        }
        // Inside a URL a mark would break the link: the value goes raw.
        if in_url(&text[..start]) {
            if !t.starts_with("{{{") {
                out.push_str(&text[copied..start]);
                out.push('{');
                out.push_str(t);
                out.push('}');
                copied = start + t.len();
            }
            i = start + t.len();
            continue;
        }
        let mut run = vec![(start, t)];
        let mut end = start + t.len();
        loop {
            let gap = text[end..].len() - text[end..].trim_start_matches(' ').len();
            let next = &text[end + gap..];
            match next.starts_with("{{").then(|| tag(next)).flatten() {
                Some(n) if gap > 0 && member(n) => {
                    run.push((end + gap, n));
                    end += gap + n.len();
                }
                _ => break,
            }
        }
        if run.len() > 1 {
            out.push_str(&text[copied..start]);
            out.push_str("{{#");
            out.push_str(RUN_HELPER);
            out.push_str("}}");
            let mut last = start;
            for (at, t) in run {
                out.push_str(&text[last..at]);
                if t.starts_with("{{{") {
                    out.push_str(t);
                } else {
                    out.push('{');
                    out.push_str(t);
                    out.push('}');
                }
                last = at + t.len();
            }
            out.push_str("{{/");
            out.push_str(RUN_HELPER);
            out.push_str("}}");
            copied = end;
        }
        i = end;
    }
    out.push_str(&text[copied..]);
    out
}

/// Whether text ending with `before` is inside a URL: the word it ends
/// with (since the last whitespace or `<`) has a scheme.
fn in_url(before: &str) -> bool {
    let word = before
        .rsplit(|c: char| c.is_whitespace() || c == '<')
        .next()
        .unwrap_or("");
    word.contains("://") || word.starts_with("mailto:")
}

/// The [`RUN_HELPER`] block: renders its content and isolates it as one
/// unit when it needs it ([`isolate_text`]).
pub(crate) struct IsolateRun(pub Direction);

impl handlebars::HelperDef for IsolateRun {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &handlebars::Helper<'rc>,
        r: &'reg handlebars::Handlebars<'reg>,
        ctx: &'rc handlebars::Context,
        rc: &mut handlebars::RenderContext<'reg, 'rc>,
        out: &mut dyn handlebars::Output,
    ) -> handlebars::HelperResult {
        use handlebars::Renderable;
        let mut run = Run(String::new());
        if let Some(t) = h.template() {
            t.render(r, ctx, rc, &mut run)?;
        }
        if needs_isolation(&run.0, self.0) {
            out.write("\u{2068}")?; // FSI
            out.write(&run.0)?;
            out.write("\u{2069}")?; // PDI
        } else {
            out.write(&run.0)?;
        }
        Ok(())
    }
}

/// A run's rendered content (handlebars' `StringOutput` reserves 8 KiB).
struct Run(String);

impl handlebars::Output for Run {
    fn write(&mut self, seg: &str) -> std::io::Result<()> {
        self.0.push_str(seg);
        Ok(())
    }
}

/// Elements whose content is raw text (or not shown): a `<bdi>` there
/// would be text, not markup.
const RAW: [&str; 5] = ["style", "script", "title", "textarea", "head"];

/// The HTML template with every value placeholder in text content wrapped
/// in `<bdi>…</bdi>`. Block helpers (`{{#if}}`, `{{/if}}`, `{{else}}`),
/// comments and placeholders inside tags are left alone. Why always and not
/// only where needed: the value is not known when the template compiles,
/// and `<bdi>` around a value of the letter's direction changes nothing a
/// reader sees.
pub(crate) fn isolate_html(html: &str) -> String {
    let mut out = String::with_capacity(html.len() + html.matches("{{").count() * 11);
    let b = html.as_bytes();
    let mut i = 0;
    let mut copied = 0;
    while i < b.len() {
        match b[i] {
            b'<' if html[i..].starts_with("<!--") => {
                i = html[i..].find("-->").map_or(b.len(), |e| i + e + 3);
            }
            b'<' => {
                let end = tag_end(html, i);
                let name: String = html[i + 1..end]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric())
                    .collect::<String>()
                    .to_ascii_lowercase();
                i = end;
                if RAW.contains(&name.as_str()) && !html[..end].ends_with("/>") {
                    let close = format!("</{name}");
                    let lower = html[i..].to_ascii_lowercase();
                    i = lower.find(&close).map_or(b.len(), |e| i + e);
                }
            }
            b'{' if html[i..].starts_with("{{") => {
                let Some(t) = tag(&html[i..]) else {
                    break;
                };
                if kind(t) == Kind::Simple {
                    // Values next to each other (`{{title}} {{last_name}}`)
                    // share one isolate: apart, two Hebrew words in an
                    // English sentence would be laid out left to right.
                    let mut end = i + t.len();
                    loop {
                        let gap = html[end..].len() - html[end..].trim_start_matches(' ').len();
                        let next = &html[end + gap..];
                        match next.starts_with("{{").then(|| tag(next)).flatten() {
                            Some(n) if gap > 0 && kind(n) == Kind::Simple => end += gap + n.len(),
                            _ => break,
                        }
                    }
                    out.push_str(&html[copied..i]);
                    out.push_str("<bdi>");
                    out.push_str(&html[i..end]);
                    out.push_str("</bdi>");
                    copied = end;
                    i = end;
                } else {
                    i += t.len();
                }
            }
            _ => i += 1,
        }
    }
    out.push_str(&html[copied..]);
    out
}

/// The index just past the `>` that closes the tag opening at `start`,
/// quotes and placeholders in attribute values skipped.
fn tag_end(html: &str, start: usize) -> usize {
    let b = html.as_bytes();
    let mut quote = None;
    let mut i = start + 1;
    while i < b.len() {
        let c = b[i];
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == b'"' || c == b'\'' => quote = Some(c),
            None if c == b'{' && html[i..].starts_with("{{") => {
                if let Some(t) = tag(&html[i..]) {
                    i += t.len();
                    continue;
                }
            }
            None if c == b'>' => return i + 1,
            None => {}
        }
        i += 1;
    }
    b.len()
}

/// `html` without the `<bdi>` and `</bdi>` tags, for comparing a render
/// with one that never had them (the safety net's per-recipient MJML).
pub(crate) fn strip_bdi(html: &str) -> String {
    html.replace("<bdi>", "").replace("</bdi>", "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_in_text_are_isolated_and_attributes_headers_and_blocks_are_not() {
        let html = "<html><head><title>{{subject}}</title><style>a{color:red}</style></head>\
                    <body><!-- {{c}} --><a href=\"{{url}}\" title='{{t}}'>Dear {{last_name}}, \
                    {{#if x}}{{{raw}}}{{else}}{{a.b}}{{/if}}</a><img alt={{alt}}></body></html>";
        let out = isolate_html(html);
        assert_eq!(
            out,
            "<html><head><title>{{subject}}</title><style>a{color:red}</style></head>\
             <body><!-- {{c}} --><a href=\"{{url}}\" title='{{t}}'>Dear <bdi>{{last_name}}</bdi>, \
             {{#if x}}<bdi>{{{raw}}}</bdi>{{else}}<bdi>{{a.b}}</bdi>{{/if}}</a><img alt={{alt}}></body></html>"
        );
        assert_eq!(strip_bdi(&out), html);
    }

    #[test]
    fn values_next_to_each_other_share_one_isolate() {
        assert_eq!(
            isolate_html("<p>Dear {{title}} {{last_name}}, {{a}}{{b}}</p>"),
            "<p>Dear <bdi>{{title}} {{last_name}}</bdi>, <bdi>{{a}}</bdi><bdi>{{b}}</bdi></p>"
        );
    }

    #[test]
    fn a_placeholder_holding_a_gt_inside_a_tag_does_not_end_it() {
        let html = "<p><a href=\"x\" {{#if a}}class='b'{{/if}}>{{n}}</a></p>";
        assert_eq!(
            isolate_html(html),
            "<p><a href=\"x\" {{#if a}}class='b'{{/if}}><bdi>{{n}}</bdi></a></p>"
        );
    }

    /// The text registry as campaign.rs builds it, for a letter of `base`.
    fn text_registry(base: Direction, template: &str) -> handlebars::Handlebars<'static> {
        let mut r = handlebars::Handlebars::new();
        r.set_strict_mode(true);
        r.register_escape_fn(move |v| isolate_text(v, base));
        r.register_helper(RUN_HELPER, Box::new(IsolateRun(base)));
        r.register_template_string("t", isolate_text_runs(template))
            .unwrap();
        r
    }

    #[test]
    fn adjacent_values_in_the_text_part_are_rewritten_into_one_run() {
        assert_eq!(
            isolate_text_runs("Dear {{title}} {{last_name}}, {{a}}{{b}} {{{c}}}  {{d.e}}\n{{f}}"),
            "Dear {{#letterpress-bidi-run}}{{{title}}} {{{last_name}}}{{/letterpress-bidi-run}}, \
             {{a}}{{#letterpress-bidi-run}}{{{b}}} {{{c}}}  {{{d.e}}}{{/letterpress-bidi-run}}\n{{f}}"
        );
        // Blocks, whitespace control and a lone value are left alone.
        let t = "{{#if a}}{{a}} {{/if}} {{~b}} {{c}} {{! x }} {{d}}";
        assert_eq!(isolate_text_runs(t), t);
    }

    #[test]
    fn a_value_inside_a_url_of_the_text_part_is_never_isolated() {
        let t =
            "Join <https://x.org/j?c={{id}}&n={{name}}> or <mailto:a@x.org?subject={{id}}>, {{id}}";
        assert_eq!(
            isolate_text_runs(t),
            "Join <https://x.org/j?c={{{id}}}&n={{{name}}}> or <mailto:a@x.org?subject={{{id}}}>, {{id}}"
        );
        let r = text_registry(Direction::Rtl, t);
        let v = serde_json::json!({"id": "c-1004", "name": "Noa"});
        assert_eq!(
            r.render("t", &v).unwrap(),
            "Join <https://x.org/j?c=c-1004&n=Noa> or <mailto:a@x.org?subject=c-1004>, \u{2068}c-1004\u{2069}"
        );
    }

    #[test]
    fn a_hebrew_title_and_name_in_the_text_part_share_one_isolate() {
        let r = text_registry(Direction::Ltr, "Dear {{title}} {{last_name}}, 2021 was");
        let he = serde_json::json!({"title": "הרב", "last_name": "כהן"});
        assert_eq!(
            r.render("t", &he).unwrap(),
            "Dear \u{2068}הרב כהן\u{2069}, 2021 was"
        );
        // One Hebrew value in the run isolates the run; none, nothing.
        let mixed = serde_json::json!({"title": "Dr.", "last_name": "כהן"});
        assert_eq!(
            r.render("t", &mixed).unwrap(),
            "Dear \u{2068}Dr. כהן\u{2069}, 2021 was"
        );
        let en = serde_json::json!({"title": "Dr.", "last_name": "Breuer"});
        assert_eq!(r.render("t", &en).unwrap(), "Dear Dr. Breuer, 2021 was");
        // A lone value keeps its own isolate, and a right-to-left letter
        // isolates a Latin run.
        let r = text_registry(Direction::Ltr, "Dear {{last_name}}, 2021");
        assert_eq!(
            r.render("t", &he).unwrap(),
            "Dear \u{2068}כהן\u{2069}, 2021"
        );
        let r = text_registry(Direction::Rtl, "{{title}} {{last_name}}");
        assert_eq!(r.render("t", &he).unwrap(), "הרב כהן");
        assert_eq!(r.render("t", &en).unwrap(), "\u{2068}Dr. Breuer\u{2069}");
        // Strict mode still names a missing value inside a run.
        let e = r
            .render("t", &serde_json::json!({"title": "x"}))
            .unwrap_err();
        assert!(e.to_string().contains("last_name"), "{e}");
    }

    #[test]
    fn text_values_are_isolated_only_against_the_letters_direction() {
        assert_eq!(isolate_text("כהן", Direction::Ltr), "\u{2068}כהן\u{2069}");
        assert_eq!(isolate_text("عباس", Direction::Ltr), "\u{2068}عباس\u{2069}");
        assert_eq!(isolate_text("Breuer", Direction::Ltr), "Breuer");
        assert_eq!(isolate_text("2021", Direction::Ltr), "2021");
        assert_eq!(isolate_text("2021", Direction::Rtl), "2021");
        assert_eq!(isolate_text("כהן", Direction::Rtl), "כהן");
        assert_eq!(
            isolate_text("Smith", Direction::Rtl),
            "\u{2068}Smith\u{2069}"
        );
        assert_eq!(isolate_text("", Direction::Ltr), "");
    }
}
