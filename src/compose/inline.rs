//! Local images in a letter's HTML: finds the `src` of each `<img>` (what
//! `mj-image` renders to) that names a file rather than a URL, and rewrites
//! those values. Text only: reading the files is
//! [`crate::compose::attach`]'s, and remote URLs, `cid:` and `data:` are
//! never touched.

use std::ops::Range;

/// One local `src` value in the HTML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSource {
    /// Where the raw attribute value stands (without its quotes).
    pub range: Range<usize>,
    /// The value decoded (HTML entities, percent escapes) and without a
    /// `?query` or `#fragment`: a path relative to the template's folder.
    pub path: String,
}

/// Every `<img … src="…">` whose `src` is a local path, in document order.
pub fn local_sources(html: &str) -> Vec<LocalSource> {
    img_sources(html)
        .into_iter()
        .filter_map(|range| {
            let raw = &html[range.clone()];
            is_local(raw).then(|| LocalSource {
                path: decode(raw),
                range,
            })
        })
        .collect()
}

/// True when some `<img>` of `html` has a `src` that is neither a URL nor a
/// placeholder: the cheap test that lets a letter without local images skip
/// the rest.
pub fn has_local(html: &str) -> bool {
    img_sources(html).into_iter().any(|r| is_local(&html[r]))
}

/// The `src` values of `<img>` tags that hold a placeholder: resolved only
/// per letter.
pub fn has_templated(html: &str) -> bool {
    img_sources(html)
        .into_iter()
        .any(|r| html[r].contains("{{"))
}

/// `html` with each range replaced, ranges in order and not overlapping.
pub fn rewrite(html: &str, replacements: &[(Range<usize>, String)]) -> String {
    let mut out = String::with_capacity(html.len() + replacements.len() * 40);
    let mut at = 0;
    for (range, with) in replacements {
        out.push_str(&html[at..range.start]);
        out.push_str(with);
        at = range.end;
    }
    out.push_str(&html[at..]);
    out
}

/// A `src` that names a file next to the template: not empty, not a
/// placeholder, no scheme (`https:`, `cid:`, `data:` …), not
/// protocol-relative (`//host/…`) and not a fragment.
pub fn is_local(src: &str) -> bool {
    let s = src.trim();
    if s.is_empty() || s.starts_with("//") || s.starts_with('#') || s.contains("{{") {
        return false;
    }
    let scheme_len = s
        .bytes()
        .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'.' | b'-')))
        .filter(|&i| i > 0 && s.as_bytes()[i] == b':' && s.as_bytes()[0].is_ascii_alphabetic());
    scheme_len.is_none()
}

/// The ranges of the `src` values of all `<img>` tags.
fn img_sources(html: &str) -> Vec<Range<usize>> {
    let b = html.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(off) = memchr::memchr(b'<', &b[i..]) {
        let start = i + off;
        i = start + 1;
        let is_img = b.len() > start + 4
            && b[start + 1..start + 4].eq_ignore_ascii_case(b"img")
            && (b[start + 4].is_ascii_whitespace() || matches!(b[start + 4], b'/' | b'>'));
        if !is_img {
            continue;
        }
        let mut j = start + 4;
        // Attributes up to the closing `>`.
        loop {
            while j < b.len() && (b[j].is_ascii_whitespace() || b[j] == b'/') {
                j += 1;
            }
            if j >= b.len() || b[j] == b'>' {
                break;
            }
            let name_start = j;
            while j < b.len() && !b[j].is_ascii_whitespace() && !matches!(b[j], b'=' | b'>') {
                j += 1;
            }
            let name = &b[name_start..j];
            while j < b.len() && b[j].is_ascii_whitespace() {
                j += 1;
            }
            if j >= b.len() || b[j] != b'=' {
                continue;
            }
            j += 1;
            while j < b.len() && b[j].is_ascii_whitespace() {
                j += 1;
            }
            let value = if j < b.len() && matches!(b[j], b'"' | b'\'') {
                let q = b[j];
                let v0 = j + 1;
                let v1 = memchr::memchr(q, &b[v0..]).map_or(b.len(), |k| v0 + k);
                j = (v1 + 1).min(b.len());
                v0..v1
            } else {
                let v0 = j;
                while j < b.len() && !b[j].is_ascii_whitespace() && b[j] != b'>' {
                    j += 1;
                }
                v0..j
            };
            if name.eq_ignore_ascii_case(b"src") {
                out.push(value);
            }
        }
        i = j.max(i);
    }
    out
}

/// The file path a `src` value names: entities and percent escapes decoded,
/// query and fragment dropped.
fn decode(raw: &str) -> String {
    let s = raw.trim();
    let s = s.split(['?', '#']).next().unwrap_or(s);
    let s = s
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_local_sources_and_leaves_urls_alone() {
        let html = r#"<p><img src="images/logo.png" alt="x"><IMG alt='a' SRC='a%20b.png?v=2'/>
            <img src="https://x.org/a.png"><img src="cid:abc@x"><img src="data:image/png;base64,AA">
            <img src="//cdn.x.org/a.png"><img src="{{photo}}"><img alt="no src">
            <image src="not-an-img.png"><img src=bare.gif></p>"#;
        let found: Vec<_> = local_sources(html).into_iter().map(|s| s.path).collect();
        assert_eq!(found, ["images/logo.png", "a b.png", "bare.gif"]);
        assert!(has_local(html) && has_templated(html));
        assert!(!has_local(r#"<img src="https://x.org/a.png">"#));
    }

    #[test]
    fn rewrites_only_the_values() {
        let html = r#"<a href="logo.png"><img src="logo.png" alt="logo.png"></a>"#;
        let s = local_sources(html);
        assert_eq!(s.len(), 1);
        let out = rewrite(html, &[(s[0].range.clone(), "cid:1@x".into())]);
        assert_eq!(
            out,
            r#"<a href="logo.png"><img src="cid:1@x" alt="logo.png"></a>"#
        );
    }

    #[test]
    fn schemes_are_not_local() {
        for url in [
            "http://a/b.png",
            "HTTPS://a",
            "cid:x",
            "data:,x",
            "file:///etc/passwd",
        ] {
            assert!(!is_local(url), "{url}");
        }
        for path in ["a.png", "./a.png", "../a.png", "/etc/passwd", "dir/a b.png"] {
            assert!(is_local(path), "{path}");
        }
    }
}
