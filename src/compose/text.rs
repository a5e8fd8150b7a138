//! The plain-text part: the rendered HTML template (placeholders still in
//! it) converted once into a text template, and the merged text wrapped per
//! recipient (DESIGN.md section 3: convert once, wrap after merging).
//!
//! The conversion drops what only a screen shows (CSS, the hidden preview
//! line, images), keeps headings, paragraphs and list bullets, and writes
//! links as `text <url>`.

use crate::compose::bidi::Direction;
use html2text::render::TextDecorator;

/// The width the text part is wrapped to.
pub const WRAP: usize = 76;

/// Marks a heading line, for the blank-line pass.
const HEADING: char = '\u{1}';
/// Marks where a link starts and ends, to spot lines that are only a link
/// (buttons). Private-use characters: html2text drops control characters
/// in text, and no letter has these.
const LINK_START: char = '\u{E000}';
const LINK_END: char = '\u{E001}';

#[derive(Debug, Clone, Default)]
struct Decorator {
    links: Vec<String>,
}

impl TextDecorator for Decorator {
    type Annotation = ();

    fn decorate_link_start(&mut self, url: &str) -> (String, ()) {
        self.links.push(url.to_string());
        (LINK_START.to_string(), ())
    }

    fn decorate_link_end(&mut self) -> String {
        match self.links.pop() {
            Some(url) if url.starts_with('#') || url.is_empty() => LINK_END.to_string(),
            Some(url) => format!(" <{url}>{LINK_END}"),
            None => LINK_END.to_string(),
        }
    }

    fn decorate_em_start(&self) -> (String, ()) {
        (String::new(), ())
    }
    fn decorate_em_end(&self) -> String {
        String::new()
    }
    fn decorate_strong_start(&self) -> (String, ()) {
        (String::new(), ())
    }
    fn decorate_strong_end(&self) -> String {
        String::new()
    }
    fn decorate_strikeout_start(&self) -> (String, ()) {
        (String::new(), ())
    }
    fn decorate_strikeout_end(&self) -> String {
        String::new()
    }
    fn decorate_code_start(&self) -> (String, ()) {
        (String::new(), ())
    }
    fn decorate_code_end(&self) -> String {
        String::new()
    }
    fn decorate_preformat_first(&self) {}
    fn decorate_preformat_cont(&self) {}
    fn decorate_image(&mut self, _src: &str, _title: &str) -> (String, ()) {
        (String::new(), ())
    }
    fn header_prefix(&self, _level: usize) -> String {
        HEADING.to_string()
    }
    fn quote_prefix(&self) -> String {
        "> ".into()
    }
    fn unordered_item_prefix(&self) -> String {
        "* ".into()
    }
    fn ordered_item_prefix(&self, i: i64) -> String {
        format!("{i}. ")
    }
    fn make_subblock_decorator(&self) -> Self {
        Decorator::default()
    }
    fn finalise(&mut self, _urls: Vec<String>) -> Vec<html2text::render::TaggedLine<()>> {
        Vec::new()
    }
}

/// Converts HTML (a template, placeholders and all) to a text template.
/// Lines are not wrapped here: a merged value changes their length.
pub fn from_html(html: &str) -> Result<String, String> {
    let raw = html2text::config::with_decorator(Decorator::default())
        .use_doc_css()
        .raw_mode(true)
        .link_footnotes(false)
        .no_link_wrapping()
        .string_from_read(html.as_bytes(), 100_000)
        .map_err(|e| format!("cannot convert the HTML to text: {e}"))?;
    Ok(space_blocks(&raw))
}

#[derive(PartialEq, Clone, Copy)]
enum Kind {
    Blank,
    Heading,
    Button,
    Bullet,
    Plain,
}

fn kind(line: &str) -> Kind {
    let t = line.trim();
    if t.is_empty() {
        Kind::Blank
    } else if t.starts_with(HEADING) {
        Kind::Heading
    } else if t.starts_with(LINK_START)
        && t.ends_with(LINK_END)
        && t.matches(LINK_START).count() == 1
    {
        Kind::Button
    } else if t.starts_with("* ")
        || t.split_once(". ")
            .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    {
        Kind::Bullet
    } else {
        Kind::Plain
    }
}

/// Puts one blank line around headings, buttons and lists, collapses runs of
/// blank lines, and removes the markers.
fn space_blocks(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut prev = Kind::Blank;
    for line in raw.lines() {
        let k = kind(line);
        if k == Kind::Blank {
            if prev != Kind::Blank {
                out.push('\n');
            }
            prev = Kind::Blank;
            continue;
        }
        let separate = prev != Kind::Blank
            && (k != prev || matches!(k, Kind::Heading | Kind::Button))
            && !(prev == Kind::Bullet && k == Kind::Plain && line.starts_with("  "));
        if separate {
            out.push('\n');
        }
        out.extend(
            line.trim_end()
                .chars()
                .filter(|c| ![HEADING, LINK_START, LINK_END].contains(c)),
        );
        out.push('\n');
        prev = k;
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

/// Wraps merged text at [`WRAP`] columns, at spaces only (a URL is never
/// broken), continuing list items under their text. Each recipient's text
/// goes through here, so lines and words are found with `memchr`-backed
/// splits and ASCII words are measured by their length.
pub fn wrap(text: &str) -> String {
    wrap_in(text, Direction::Ltr)
}

/// [`wrap`] for a letter of base direction `dir`. A line never breaks
/// inside a value's isolate (FSI … PDI, bidi.rs), which would leave each
/// half unmatched on its own line. In a right-to-left letter a line breaks,
/// where it can, only before a word whose first strong character is right
/// to left: a mail client takes each line of a plain-text part for a
/// paragraph and gives it the direction of its first strong character, so
/// a line starting with `UNESCO` or a link would be laid out left to right.
/// No mark is added for that; when no such break fits, the line breaks
/// where it must.
pub fn wrap_in(text: &str, dir: Direction) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 32);
    for (k, line) in text.split('\n').enumerate() {
        if k > 0 {
            out.push('\n');
        }
        // At most WRAP bytes is at most WRAP characters.
        if line.len() <= WRAP {
            out.push_str(line);
        } else if dir == Direction::Rtl || line.contains([crate::compose::bidi::FSI]) {
            wrap_words(line, dir, &mut out);
        } else {
            wrap_line(line, &mut out);
        }
    }
    out
}

/// A word of a line: its text (an isolate and its spaces included) and
/// how many columns it takes.
struct Word<'a> {
    text: &'a str,
    columns: usize,
}

/// The words of `line`, split at spaces outside isolates.
fn words(line: &str) -> Vec<Word<'_>> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    let mut columns = 0;
    for (i, c) in line.char_indices() {
        match c {
            crate::compose::bidi::FSI => depth += 1,
            crate::compose::bidi::PDI => depth = depth.saturating_sub(1),
            ' ' if depth == 0 => {
                out.push(Word {
                    text: &line[start..i],
                    columns,
                });
                start = i + 1;
                columns = 0;
            }
            _ => columns += 1,
        }
    }
    out.push(Word {
        text: &line[start..],
        columns,
    });
    out
}

/// Whether a line starting with `words` takes the direction `dir` in a
/// client that reads it as a paragraph (UAX #9 rules P2 and P3: the first
/// strong character outside isolates; none at all is fine).
fn starts_in(words: &[Word], dir: Direction) -> bool {
    use unicode_bidi::BidiClass::{AL, L, R};
    let mut depth = 0usize;
    for w in words {
        for c in w.text.chars() {
            match c {
                crate::compose::bidi::FSI => depth += 1,
                crate::compose::bidi::PDI => depth = depth.saturating_sub(1),
                _ if depth > 0 => {}
                _ => match unicode_bidi::bidi_class(c) {
                    L => return dir == Direction::Ltr,
                    R | AL => return dir == Direction::Rtl,
                    _ => {}
                },
            }
        }
    }
    true
}

/// [`wrap_line`] by words, for lines with isolates or in a right-to-left
/// letter (see [`wrap_in`]).
fn wrap_words(line: &str, dir: Direction, out: &mut String) {
    let indent = continuation_indent(line);
    let words = words(line);
    let mut first = 0;
    while first < words.len() {
        // The words that fit, greedily, as wrap_line places them: at least
        // one, and an empty word (two spaces) never ends a line.
        let mut col = if first == 0 { 0 } else { indent };
        let mut end = first;
        while end < words.len() {
            let add = words[end].columns + usize::from(end > first);
            let previous_empty = end > first && words[end - 1].text.is_empty();
            if end > first && col + add > WRAP && col > indent && !previous_empty {
                break;
            }
            col += add;
            end += 1;
        }
        if end < words.len() && dir == Direction::Rtl && !starts_in(&words[end..], dir) {
            // Break earlier, before a word the next line can start with.
            if let Some(better) = (first + 1..end)
                .rev()
                .find(|&k| starts_in(&words[k..], dir))
            {
                end = better;
            }
        }
        if first > 0 {
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', indent));
        }
        for (k, w) in words[first..end].iter().enumerate() {
            if k > 0 {
                out.push(' ');
            }
            out.push_str(w.text);
        }
        first = end;
    }
}

/// Whether `bytes[i..]` starts with U+2068 or U+2069 (E2 81 A8/A9).
fn isolate_mark(bytes: &[u8], i: usize) -> bool {
    bytes[i] == 0xE2
        && bytes.get(i + 1) == Some(&0x81)
        && matches!(bytes.get(i + 2), Some(0xA8 | 0xA9))
}

fn wrap_line(line: &str, out: &mut String) {
    let indent = continuation_indent(line);
    let bytes = line.as_bytes();
    let mut col = 0;
    let mut previous_empty = true;
    let mut word_start = 0;
    let mut word_chars = 0;
    // One pass: count the characters of each word (bytes that do not
    // continue a UTF-8 sequence) and place it when its space is reached.
    for i in 0..=bytes.len() {
        if i < bytes.len() && bytes[i] != b' ' {
            // FSI and PDI (bidi.rs) are invisible: they take no column.
            word_chars += usize::from(bytes[i] & 0xC0 != 0x80 && !isolate_mark(bytes, i));
            continue;
        }
        if word_start > 0 {
            if col + 1 + word_chars > WRAP && col > indent && !previous_empty {
                out.push('\n');
                out.extend(std::iter::repeat_n(' ', indent));
                col = indent;
            } else {
                out.push(' ');
                col += 1;
            }
        }
        out.push_str(&line[word_start..i]);
        col += word_chars;
        previous_empty = i == word_start;
        word_start = i + 1;
        word_chars = 0;
    }
}

/// How far continuation lines of `line` are indented: under the text of a
/// list item, else as far as the line itself.
fn continuation_indent(line: &str) -> usize {
    let lead = line.len() - line.trim_start().len();
    let rest = &line.as_bytes()[lead..];
    if rest.starts_with(b"* ") || rest.starts_with(b"> ") {
        return lead + 2;
    }
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits > 0 && rest[digits..].starts_with(b". ") {
        return lead + digits + 2;
    }
    lead
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_structure_and_links() {
        let html = r#"<html><head><style>p{color:red}</style></head><body>
<div style="display:none">hidden preview</div>
<h2>Why it matters</h2><p>First {{name}}.</p><p>Second, see <a href="https://x.org/a?c={{id}}">the site</a>.</p>
<ul><li>one</li><li>two</li></ul>
<p><a href="https://x.org/join">Join</a></p><img src="logo.png" alt="Logo"></body></html>"#;
        let t = from_html(html).unwrap();
        assert_eq!(
            t,
            "Why it matters\n\nFirst {{name}}.\n\nSecond, see the site <https://x.org/a?c={{id}}>.\n\n* one\n* two\n\nJoin <https://x.org/join>\n"
        );
    }

    #[test]
    fn wraps_at_spaces_and_indents_bullets() {
        let long = format!(
            "* {} {}",
            "word ".repeat(20).trim(),
            "https://example.org/a-very-long-url-that-must-not-break-anywhere/at-all"
        );
        let w = wrap(&long);
        for l in w.lines() {
            assert!(
                l.chars().count() <= WRAP || !l.trim().contains(' '),
                "{l:?}"
            );
        }
        assert!(w.lines().skip(1).all(|l| l.starts_with("  ")), "{w}");
        assert!(
            w.contains("https://example.org/a-very-long-url-that-must-not-break-anywhere/at-all")
        );
        assert_eq!(wrap("short\n\nlines"), "short\n\nlines");
        assert_eq!(wrap("trailing\n"), "trailing\n");
    }

    /// Properties on many generated lines: nothing but the breaks is
    /// changed, no row is too long unless it is one word, and each break is
    /// needed (the next word would not have fit).
    #[test]
    fn wrap_is_lossless_short_and_greedy() {
        let words = [
            "a",
            "Łódź",
            "https://example.org/a-long-url/that/is/long-enough-to-be-alone-on-its-row-really",
            "sixteen-letters!",
            "x",
            "Cywiński,",
        ];
        let mut seed = 3u64;
        for n in 0..2000 {
            let mut line = String::from(["", "* ", "  ", "12. "][n % 4]);
            for k in 0..(n % 40) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                if k > 0 {
                    line.push(' ');
                }
                line.push_str(words[(seed % words.len() as u64) as usize]);
            }
            let wrapped = wrap(&line);
            let indent = continuation_indent(&line);
            let rows: Vec<&str> = wrapped.split('\n').collect();
            let rejoined = rows
                .iter()
                .enumerate()
                .map(|(i, r)| if i == 0 { *r } else { &r[indent..] })
                .collect::<Vec<_>>()
                .join(" ");
            assert_eq!(rejoined, line, "lossless");
            for (i, row) in rows.iter().enumerate() {
                let width = row.chars().count();
                assert!(
                    width <= WRAP || !row[indent..].contains(' '),
                    "too long: {row:?}"
                );
                if i > 0 {
                    assert!(row[..indent].bytes().all(|b| b == b' '));
                    let next_word = row[indent..].split(' ').next().unwrap();
                    let prev = rows[i - 1].chars().count();
                    assert!(
                        prev + 1 + next_word.chars().count() > WRAP,
                        "needless break before {next_word:?} in {wrapped:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn wrap_counts_characters_not_bytes() {
        let line = "ż".repeat(70) + " x";
        assert_eq!(wrap(&line), line);
    }

    #[test]
    fn wrap_gives_the_bidi_isolate_marks_no_column() {
        // 76 visible characters and two marks: one line, as without them.
        let line = "a".repeat(65) + " \u{2068}הרב כהן\u{2069} xy";
        assert_eq!(line.chars().count(), 78);
        assert_eq!(wrap(&line), line);
        // One visible character more and the last word wraps.
        let long = line + "z";
        assert_eq!(wrap(&long), long.replacen(" xyz", "\nxyz", 1));
    }

    #[test]
    fn wrap_never_breaks_inside_an_isolate() {
        let value = "\u{2068}Kehilat Kol Haneshama, Jerusalem\u{2069}";
        let line = format!("{} {value} end", "a".repeat(60));
        let wrapped = wrap(&line);
        assert_eq!(wrapped, format!("{}\n{value} end", "a".repeat(60)));
        assert_eq!(wrapped.replace('\n', " "), line);
    }

    #[test]
    fn a_right_to_left_line_starts_with_a_right_to_left_word() {
        // A greedy break would start the second line with `UNESCO,`, which a
        // client would lay out left to right.
        let he = "מילה ".repeat(14);
        let line = format!("{he}ועם UNESCO, כדי לשתף עובדות");
        let greedy = wrap(&line);
        assert!(
            greedy.lines().nth(1).unwrap().starts_with("UNESCO"),
            "{greedy}"
        );
        let rtl = wrap_in(&line, Direction::Rtl);
        let second = rtl.lines().nth(1).unwrap();
        assert!(second.starts_with("ועם UNESCO"), "{rtl}");
        assert!(rtl.lines().all(|l| l.chars().count() <= WRAP));
        assert_eq!(rtl.replace('\n', " "), line);
        // A link alone cannot be helped: it stays whole.
        let url = format!(
            "{} <https://example.org/{}>",
            "מילה".repeat(3),
            "x".repeat(80)
        );
        assert_eq!(wrap_in(&url, Direction::Rtl).replace('\n', " "), url);
    }

    #[test]
    fn wrap_in_is_lossless_for_either_direction() {
        let samples = [
            "שלום \u{2068}Noa Levi\u{2069}, ".repeat(9),
            "* ".to_string() + &"פריט ארוך ".repeat(12),
            "Dear \u{2068}הרב כהן\u{2069}, ".repeat(8),
        ];
        for line in samples {
            for dir in [Direction::Ltr, Direction::Rtl] {
                let w = wrap_in(&line, dir);
                let indent = continuation_indent(&line);
                let joined = w.replace(&format!("\n{}", " ".repeat(indent)), " ");
                assert_eq!(joined, line, "{dir:?}");
                for l in w.lines() {
                    let marks = l.matches(['\u{2068}', '\u{2069}']).count();
                    assert!(
                        l.chars().count() - marks <= WRAP || !l.contains(' '),
                        "{l:?}"
                    );
                    assert_eq!(l.matches('\u{2068}').count(), l.matches('\u{2069}').count());
                }
            }
        }
    }
}
