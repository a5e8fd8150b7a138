//! Where mrml 6.0.1 renders MJML differently from the official MJML 4, and
//! the corrections letterpress makes around it: [`prepare`] rewrites the
//! MJML before mrml reads it, [`correct`] rewrites the HTML in one pass
//! after. Each correction is a small function of its own, with a test that
//! shows what mrml writes, what MJML writes and what the correction makes
//! of it, so that each can be dropped when mrml fixes it (the README lists
//! them). Nothing here reads files; `tests/fidelity.rs` compares the result
//! with the official MJML in a browser.

use std::borrow::Cow;

/// Whether the letter links the web fonts MJML links.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RemoteFonts {
    /// As MJML: a `<link>` and an `@import` for each known web font the
    /// letter uses (Open Sans, Droid Sans, Lato, Roboto, Ubuntu, and each
    /// `mj-font`).
    #[default]
    Link,
    /// None of those MJML adds by itself (privacy, size): mail clients fall
    /// back to the next family in each stack. An `mj-font` the template
    /// declares is still linked: its author asked for it.
    Off,
}

/// mrml's render options for `fonts`: MJML's default fonts, or none.
pub fn render_options(fonts: RemoteFonts) -> mrml::prelude::render::RenderOptions {
    let defaults = mrml::prelude::render::RenderOptions::default();
    mrml::prelude::render::RenderOptions {
        // Outlook's conditional comments are layout, not comments.
        disable_comments: false,
        social_icon_origin: None,
        fonts: match fonts {
            RemoteFonts::Link => defaults.fonts,
            RemoteFonts::Off => Default::default(),
        },
    }
}

/// What [`prepare`] took out of the MJML, or read from it, for
/// [`correct`] to put back into the HTML.
#[derive(Debug, Default)]
pub struct Carried {
    /// Outlook's conditional comments, each replaced by a marker comment
    /// ([`MARK`] and its number).
    comments: Vec<String>,
    /// The `title` of each `mj-button`, in order.
    button_titles: Vec<Option<String>>,
    /// The `role` of each `mj-table`, in order.
    table_roles: Vec<Option<String>>,
    /// `mj-html-attributes`: (CSS selector, attributes to set).
    html_attributes: Vec<(String, Vec<(String, String)>)>,
}

/// The MJML as mrml must read it to render what MJML renders, and what
/// [`correct`] needs to put back.
pub fn prepare(mjml: &str) -> (Cow<'_, str>, Carried) {
    let mut carried = Carried::default();
    let mut out = hide_conditional_comments(mjml, &mut carried.comments);
    if let Cow::Owned(s) = take_html_attributes(&out, &mut carried.html_attributes) {
        out = Cow::Owned(s);
    }
    if let Cow::Owned(s) = escape_attribute_values(&out) {
        out = Cow::Owned(s);
    }
    for step in [
        escape_title_text,
        keep_first_of_duplicate_attributes,
        unitless_zero_in_padding,
        empty_alt_on_images,
        hero_fluid_height,
        body_and_accordion_defaults,
        short_hex_colours,
    ] {
        if let Cow::Owned(s) = step(&out) {
            out = Cow::Owned(s);
        }
    }
    let all = tags(&out);
    let block = attributes_block(&out).unwrap_or(0..0);
    let (all, block) = (&all, &block);
    let outside = |name: &'static str| {
        all.iter()
            .filter(move |t| t.name == name && !block.contains(&t.start))
    };
    carried.button_titles = outside("mj-button")
        .map(|t| t.get("title").map(str::to_string))
        .collect();
    carried.table_roles = outside("mj-table")
        .map(|t| t.get("role").map(str::to_string))
        .collect();
    (out, carried)
}

/// A file `mj-include` brings in, prepared as [`prepare`] prepares the
/// template, but for what needs the whole letter: its conditional comments
/// stay (mrml parses them), and its buttons' titles and tables' roles are
/// not counted (so none are put back when it holds any: [`add_in_order`]
/// finds more than it was told of).
pub fn prepare_included(mjml: &str) -> Cow<'_, str> {
    let mut out = escape_attribute_values(mjml);
    for step in [
        keep_first_of_duplicate_attributes,
        unitless_zero_in_padding,
        empty_alt_on_images,
        hero_fluid_height,
        short_hex_colours,
    ] {
        if let Cow::Owned(s) = step(&out) {
            out = Cow::Owned(s);
        }
    }
    out
}

/// The start of the comment that stands for a conditional comment while
/// mrml renders.
const MARK: &str = "<!--letterpress-conditional-comment:";

/// mrml parses what is inside Outlook's conditional comments
/// (`<!--[if mso | IE]><table><tr><td><![endif]-->`) as elements: a table
/// opened in one `mj-raw` and closed in another swallows everything between
/// as raw text, or fails to parse. MJML copies the comment. Each is replaced
/// by a plain comment mrml copies, and put back by [`correct`].
fn hide_conditional_comments<'a>(mjml: &'a str, comments: &mut Vec<String>) -> Cow<'a, str> {
    let mut edits = Vec::new();
    let mut at = 0;
    while let Some(p) = mjml[at..].find("<!--[if ") {
        let start = at + p;
        let head_end = mjml[start..].find("]>").map(|e| start + e + 2);
        let Some(head_end) = head_end else { break };
        // `<!--[if !mso]><!-->` shows its content to other clients: that is
        // markup, not a comment.
        if mjml[head_end..].starts_with("<!-->") {
            at = head_end;
            continue;
        }
        let Some(end) = mjml[head_end..]
            .find("<![endif]-->")
            .map(|e| head_end + e + 12)
        else {
            break;
        };
        edits.push((start..end, format!("{MARK}{}-->", comments.len())));
        comments.push(mjml[start..end].to_string());
        at = end;
    }
    apply(mjml, edits)
}

/// The comments [`hide_conditional_comments`] took out, back in place.
fn restore_conditional_comments(html: String, comments: &[String]) -> String {
    if comments.is_empty() {
        return html;
    }
    let mut out = String::with_capacity(html.len());
    let mut rest = html.as_str();
    while let Some(p) = rest.find(MARK) {
        out.push_str(&rest[..p]);
        let after = &rest[p + MARK.len()..];
        let restored = after.split_once("-->").and_then(|(n, tail)| {
            let c = comments.get(n.parse::<usize>().ok()?)?;
            Some((c, tail))
        });
        match restored {
            Some((c, tail)) => {
                out.push_str(c);
                rest = tail;
            }
            None => {
                out.push_str(MARK);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// mrml cannot parse `mj-html-attributes` (the whole template fails);
/// MJML sets each `mj-html-attribute` on the elements of the finished HTML
/// that its `mj-selector`'s CSS selector matches. The block is taken out
/// before mrml reads the MJML, and [`set_html_attributes`] does the rest.
fn take_html_attributes<'a>(
    mjml: &'a str,
    rules: &mut Vec<(String, Vec<(String, String)>)>,
) -> Cow<'a, str> {
    const OPEN: &str = "<mj-html-attributes";
    const CLOSE: &str = "</mj-html-attributes>";
    let mut edits = Vec::new();
    let mut at = 0;
    while let Some(p) = mjml[at..].find(OPEN) {
        let start = at + p;
        let Some(end) = mjml[start..].find(CLOSE).map(|e| start + e + CLOSE.len()) else {
            break;
        };
        let block = &mjml[start..end];
        let all = tags(block);
        for (k, t) in all.iter().enumerate() {
            if t.name != "mj-selector" {
                continue;
            }
            let Some(path) = t.get("path") else { continue };
            let attrs = all[k + 1..]
                .iter()
                .take_while(|a| a.name == "mj-html-attribute")
                .filter_map(|a| {
                    let name = a.get("name")?;
                    let open_end = block[a.start..].find('>')? + a.start + 1;
                    let value_end = block[open_end..].find("</mj-html-attribute")? + open_end;
                    Some((
                        name.to_string(),
                        block[open_end..value_end].trim().to_string(),
                    ))
                })
                .collect();
            rules.push((path.to_string(), attrs));
        }
        edits.push((start..end, String::new()));
        at = end;
    }
    apply(mjml, edits)
}

/// One compound of a selector (`div.custom#main[data-x]`).
#[derive(Debug, Default, PartialEq)]
struct Compound {
    tag: Option<String>,
    classes: Vec<String>,
    id: Option<String>,
    attrs: Vec<(String, Option<String>)>,
}

/// An element open around the current tag: its name, classes, id and
/// attributes.
#[derive(Debug)]
struct Open {
    tag: String,
    attrs: Vec<(String, String)>,
}

impl Compound {
    fn parse(s: &str) -> Option<Compound> {
        let mut c = Compound::default();
        let mut rest = s;
        let name_len = rest.find(['.', '#', '[']).unwrap_or(rest.len());
        if name_len > 0 && &rest[..name_len] != "*" {
            c.tag = Some(rest[..name_len].to_ascii_lowercase());
        }
        rest = &rest[name_len..];
        while !rest.is_empty() {
            let kind = rest.as_bytes()[0];
            if kind == b'[' {
                let end = rest.find(']')?;
                let inner = &rest[1..end];
                match inner.split_once('=') {
                    Some((n, v)) => c.attrs.push((
                        n.trim().to_string(),
                        Some(v.trim().trim_matches(['"', '\'']).to_string()),
                    )),
                    None => c.attrs.push((inner.trim().to_string(), None)),
                }
                rest = &rest[end + 1..];
                continue;
            }
            let len = rest[1..]
                .find(['.', '#', '['])
                .map_or(rest.len(), |e| e + 1);
            let word = rest[1..len].to_string();
            match kind {
                b'.' => c.classes.push(word),
                b'#' => c.id = Some(word),
                _ => return None,
            }
            rest = &rest[len..];
        }
        Some(c)
    }

    fn matches(&self, e: &Open) -> bool {
        let get = |n: &str| {
            e.attrs
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
        };
        self.tag.as_ref().is_none_or(|t| *t == e.tag)
            && self.id.as_deref().is_none_or(|id| get("id") == Some(id))
            && self
                .classes
                .iter()
                .all(|c| get("class").is_some_and(|cs| cs.split_whitespace().any(|x| x == c)))
            && self.attrs.iter().all(|(n, v)| match (get(n), v) {
                (Some(have), Some(want)) => have == want,
                (Some(_), None) => true,
                (None, _) => false,
            })
    }
}

/// A selector: compounds with, before each but the first, whether it must
/// be the parent (`>`) or any ancestor (a space) of the next.
fn parse_selector(s: &str) -> Option<Vec<(bool, Compound)>> {
    let spaced = s.replace('>', " > ");
    let mut out = Vec::new();
    let mut child = false;
    for word in spaced.split_whitespace() {
        if word == ">" {
            child = true;
            continue;
        }
        out.push((child, Compound::parse(word)?));
        child = false;
    }
    (!out.is_empty()).then_some(out)
}

/// Whether `selector` matches the element `path.last()`, `path` being it
/// and its ancestors, outermost first.
fn selector_matches(selector: &[(bool, Compound)], path: &[Open]) -> bool {
    let Some(((child, last), rest)) = selector.split_last() else {
        return true;
    };
    let Some((element, ancestors)) = path.split_last() else {
        return false;
    };
    if !last.matches(element) {
        return false;
    }
    if rest.is_empty() {
        return true;
    }
    if *child {
        return selector_matches(rest, ancestors);
    }
    (1..=ancestors.len())
        .rev()
        .any(|n| selector_matches(rest, &ancestors[..n]))
}

/// Sets the attributes of `mj-html-attributes` on the elements their
/// selectors match, as MJML does on its finished HTML (an attribute the
/// element has is replaced). Comments are not looked into.
fn set_html_attributes(html: String, rules: &[(String, Vec<(String, String)>)]) -> String {
    const VOID: [&str; 11] = [
        "img", "br", "hr", "meta", "link", "input", "col", "area", "base", "wbr", "source",
    ];
    if rules.is_empty() {
        return html;
    }
    // A list (`a, b`) matches what any of its selectors matches.
    let selectors: Vec<_> = rules
        .iter()
        .flat_map(|(s, attrs)| s.split(',').map(move |one| (one, attrs)))
        .filter_map(|(s, attrs)| Some((parse_selector(s)?, attrs)))
        .collect();
    let mut stack: Vec<Open> = Vec::new();
    let mut edits = Vec::new();
    let mut at = 0;
    while let Some(p) = html[at..].find('<') {
        let start = at + p;
        let rest = &html[start..];
        if rest.starts_with("<!--") {
            at = start + rest.find("-->").map_or(rest.len(), |e| e + 3);
            continue;
        }
        let end = rest.find('>').map_or(html.len(), |e| start + e);
        at = end.max(start + 1);
        if let Some(name) = rest.strip_prefix("</") {
            let name: String = name
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect::<String>()
                .to_ascii_lowercase();
            if let Some(k) = stack.iter().rposition(|o| o.tag == name) {
                stack.truncate(k);
            }
            continue;
        }
        let Some(tag) = tags(&html[start..=end.min(html.len() - 1)])
            .into_iter()
            .next()
        else {
            continue;
        };
        let open = Open {
            tag: tag.name.to_ascii_lowercase(),
            attrs: tag
                .attrs
                .iter()
                .map(|a| (a.name.to_ascii_lowercase(), a.value.to_string()))
                .collect(),
        };
        let is_void = VOID.contains(&open.tag.as_str()) || html[..end].ends_with('/');
        if matches!(open.tag.as_str(), "style" | "script") {
            let close = format!("</{}", open.tag);
            at = html[end..].find(&close).map_or(html.len(), |e| end + e);
            continue;
        }
        stack.push(open);
        for (selector, attrs) in &selectors {
            if !selector_matches(selector, &stack) {
                continue;
            }
            for (name, value) in attrs.iter() {
                let value = value.replace('"', "&quot;");
                let found = tag.attrs.iter().find(|a| a.name.eq_ignore_ascii_case(name));
                match found {
                    Some(a) => {
                        edits.push((start + a.value_span.start..start + a.value_span.end, value))
                    }
                    None => edits.push((
                        start + tag.after_name..start + tag.after_name,
                        format!(" {name}=\"{value}\""),
                    )),
                }
            }
        }
        if is_void {
            stack.pop();
        }
    }
    apply(&html, edits).into_owned()
}

/// mrml drops an `mj-button`'s `title` and an `mj-table`'s `role`; MJML
/// writes them on the link and the table. mrml writes one link (or `<p>`,
/// without `href`) with `mso-padding-alt` per button and one table with
/// `table-layout` per `mj-table`; when the counts differ (the same style in
/// raw HTML), nothing is added.
fn titles_and_roles(html: String, carried: &Carried) -> String {
    let html = add_in_order(
        html,
        "mso-padding-alt:",
        &["<a ", "<p "],
        "title",
        &carried.button_titles,
    );
    add_in_order(
        html,
        "table-layout:",
        &["<table "],
        "role",
        &carried.table_roles,
    )
}

fn add_in_order(
    html: String,
    mark: &str,
    opens: &[&str],
    name: &str,
    values: &[Option<String>],
) -> String {
    if values.iter().all(Option::is_none) {
        return html;
    }
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(p) = html[at..].find('<') {
        let start = at + p;
        let end = html[start..].find('>').map_or(html.len(), |e| start + e);
        let tag = &html[start..end];
        if opens.iter().any(|o| tag.starts_with(o))
            && tag.contains(mark)
            && !tag.contains(&format!(" {name}=\""))
        {
            found.push(start + tag.find(' ').unwrap_or(0));
        }
        at = end.max(start + 1);
    }
    if found.len() != values.len() {
        return html;
    }
    let edits = found
        .into_iter()
        .zip(values)
        .filter_map(|(p, v)| Some((p..p, format!(" {name}=\"{}\"", v.as_ref()?))))
        .collect();
    apply(&html, edits).into_owned()
}

/// An `mj-button` with a `width` in pixels: MJML takes its borders off the
/// width of the link inside, mrml only the inner padding.
fn button_width_minus_borders(html: String) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html.as_str();
    while let Some(p) = rest.find("<a ") {
        let end = rest[p..].find('>').map_or(rest.len(), |e| p + e);
        out.push_str(&rest[..p]);
        let link = &rest[p..end];
        // The cell just before the link holds the button's border.
        let cell_start = out.rfind("<td ").unwrap_or(0);
        let cell = &out[cell_start..];
        let border = cell
            .split_once("style=\"border:")
            .and_then(|(_, b)| b.split_whitespace().next())
            .and_then(|w| w.strip_suffix("px"))
            .and_then(|w| w.parse::<f64>().ok());
        let width = link
            .split_once("style=\"display:inline-block;width:")
            .and_then(|(_, w)| w.split_once("px;"))
            .and_then(|(w, _)| w.parse::<f64>().ok().map(|n| (w, n)));
        let just_before = !cell.contains("</td>") && cell.contains("role=\"presentation\"");
        match (border, width) {
            (Some(b), Some((text, w))) if just_before && b > 0.0 => {
                out.push_str(&link.replacen(
                    &format!("display:inline-block;width:{text}px;"),
                    &format!("display:inline-block;width:{}px;", w - 2.0 * b),
                    1,
                ));
            }
            _ => out.push_str(link),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// MJML writes a colour attribute given as `#rgb` as `#rrggbb`; mrml
/// copies it.
fn short_hex_colours(mjml: &str) -> Cow<'_, str> {
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

/// One start tag of the MJML: where it is, its name and its attributes.
struct Tag<'a> {
    start: usize,
    /// Just after the name: where an attribute can be added.
    after_name: usize,
    name: &'a str,
    attrs: Vec<Attr<'a>>,
}

struct Attr<'a> {
    name: &'a str,
    value: &'a str,
    /// The attribute with the whitespace before it.
    span: std::ops::Range<usize>,
    /// The value, without its quotes.
    value_span: std::ops::Range<usize>,
}

impl<'a> Tag<'a> {
    fn get(&self, name: &str) -> Option<&'a str> {
        self.attrs.iter().find(|a| a.name == name).map(|a| a.value)
    }
}

/// The start tags of `src`, skipping comments and the insides of style
/// sheets (as [`escape_attribute_values`] does).
fn tags(src: &str) -> Vec<Tag<'_>> {
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
fn apply(src: &str, mut edits: Vec<(std::ops::Range<usize>, String)>) -> Cow<'_, str> {
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

/// An attribute given twice (`font-size="12px" … font-size="14px"`): MJML
/// (and every browser) keeps the first, mrml the last. The later ones go.
fn keep_first_of_duplicate_attributes(mjml: &str) -> Cow<'_, str> {
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
fn unitless_zero_in_padding(mjml: &str) -> Cow<'_, str> {
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
fn empty_alt_on_images(mjml: &str) -> Cow<'_, str> {
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
fn attributes_block(mjml: &str) -> Option<std::ops::Range<usize>> {
    let start = mjml.find("<mj-attributes")?;
    let end = mjml[start..]
        .find("</mj-attributes")
        .map_or(mjml.len(), |e| start + e);
    Some(start..end)
}

/// The defaults `mj-attributes` gives: (tag, the class for `mj-class`,
/// the attributes).
#[allow(clippy::type_complexity)]
fn head_defaults<'a>(
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
fn hero_fluid_height(mjml: &str) -> Cow<'_, str> {
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
fn body_and_accordion_defaults(mjml: &str) -> Cow<'_, str> {
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
fn escape_attribute_values(mjml: &str) -> Cow<'_, str> {
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
fn escape_title_text(mjml: &str) -> Cow<'_, str> {
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

fn starts_with_tag(s: &str, name: &str) -> bool {
    s.len() > name.len() + 1
        && s[1..].starts_with(name)
        && matches!(
            s.as_bytes()[name.len() + 1],
            b'>' | b' ' | b'\t' | b'\n' | b'\r' | b'/'
        )
}

/// A character that Rust's `{:?}` of a string would write otherwise.
fn needs_reference(c: char) -> bool {
    c != '\'' && c.escape_debug().nth(1).is_some()
}

/// `value` with each character mrml would mis-write as a character
/// reference, except inside placeholders.
fn push_referenced(out: &mut String, value: &str) {
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

/// The HTML mrml wrote, corrected to what MJML writes.
pub fn correct(html: String, carried: &Carried) -> String {
    let mut html = restore_conditional_comments(html, &carried.comments);
    html = titles_and_roles(html, carried);
    html = set_html_attributes(html, &carried.html_attributes);
    for step in [
        merge_conditionals,
        carousel_media_query,
        button_vertical_align,
        button_width_minus_borders,
        fonts_in_mjml_order,
        column_widths_as_mjml,
        outlook_column_widths_as_mjml,
        group_column_widths_as_mjml,
        column_queries_in_order,
        hero_fluid_padding_percent,
        image_link_title,
        table_width_without_unit,
        gutter_border_collapse,
        truncate_image_and_divider_widths,
    ] {
        html = step(html);
    }
    html
}

/// MJML merges an Outlook conditional comment that ends right where the
/// next begins (`<![endif]--><!--[if mso | IE]>`, whitespace between) into
/// one, after rendering; mrml leaves them apart, about 0.8 KB more per
/// letter.
fn merge_conditionals(html: String) -> String {
    const END: &str = "<![endif]-->";
    const START: &str = "<!--[if mso | IE]>";
    if !html.contains(END) {
        return html;
    }
    let mut out = String::with_capacity(html.len());
    let mut rest = html.as_str();
    while let Some(p) = rest.find(END) {
        let after = &rest[p + END.len()..];
        let trimmed = after.trim_start();
        if let Some(next) = trimmed.strip_prefix(START) {
            out.push_str(&rest[..p]);
            rest = next;
        } else {
            out.push_str(&rest[..p + END.len()]);
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// MJML's carousel hides its radio buttons and shows its arrows and
/// thumbnails inside `@media screen yahoo`, a query no browser matches
/// (only Yahoo's webmail rewrites it); mrml writes `@media screen, yahoo`,
/// which every browser matches, and the arrows disappear.
fn carousel_media_query(html: String) -> String {
    if html.contains("@media screen, yahoo {") && html.contains("mj-carousel") {
        html.replace("@media screen, yahoo {", "@media screen yahoo {")
    } else {
        html
    }
}

/// mrml writes an `mj-button`'s `vertical-align` as an attribute of the
/// cell around it (`<td … vertical-align="middle">`), which MJML does not.
fn button_vertical_align(html: String) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html.as_str();
    while let Some(p) = rest.find("<td ") {
        let end = rest[p..].find('>').map_or(rest.len(), |e| p + e);
        let tag = &rest[p..end];
        out.push_str(&rest[..p]);
        match tag.find(" vertical-align=\"") {
            Some(v) if tag.contains("style=\"font-size:0px;") => {
                let close = tag[v + 17..]
                    .find('"')
                    .map_or(tag.len(), |e| v + 17 + e + 1);
                out.push_str(&tag[..v]);
                out.push_str(&tag[close..]);
            }
            _ => out.push_str(tag),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// MJML links the web fonts in the order of its font list (Open Sans,
/// Droid Sans, Lato, Roboto, Ubuntu, then each `mj-font`); mrml in the order
/// the letter first uses them.
fn fonts_in_mjml_order(html: String) -> String {
    const ORDER: [&str; 5] = ["Open+Sans", "Droid+Sans", "Lato", "Roboto", "Ubuntu"];
    let rank = |line: &str| {
        ORDER
            .iter()
            .position(|f| line.contains(&format!("family={f}:")))
            .unwrap_or(ORDER.len())
    };
    let Some(start) = html.find("<!--[if !mso]><!--><link href=") else {
        return html;
    };
    let Some(len) = html[start..].find("<!--<![endif]-->") else {
        return html;
    };
    let block = &html[start..start + len];
    let mut links: Vec<&str> = block
        .split("<link ")
        .skip(1)
        .map(|l| l.split_once("<style").map_or(l, |(a, _)| a))
        .collect();
    let mut imports: Vec<&str> = block
        .split("@import ")
        .skip(1)
        .map(|i| i.split_once(';').map_or(i, |(a, _)| a))
        .collect();
    if links.len() < 2 {
        return html;
    }
    links.sort_by_key(|l| rank(l));
    imports.sort_by_key(|l| rank(l));
    let mut fixed = String::from("<!--[if !mso]><!-->");
    for l in &links {
        fixed.push_str("<link ");
        fixed.push_str(l);
    }
    if let Some(style) = block.find("<style") {
        let open_end = block[style..]
            .find('>')
            .map_or(block.len(), |e| style + e + 1);
        fixed.push_str(&block[style..open_end]);
        for i in &imports {
            fixed.push_str("@import ");
            fixed.push_str(i);
            fixed.push(';');
        }
        let close = block.rfind("</style>").unwrap_or(block.len());
        let tail_after_imports = block[open_end..close]
            .rsplit_once(';')
            .map_or("", |(_, t)| t);
        fixed.push_str(tail_after_imports);
        fixed.push_str(&block[close..]);
    }
    let mut out = html[..start].to_string();
    out.push_str(&fixed);
    out.push_str(&html[start + len..]);
    out
}

/// A column without a width gets 100 / n percent of the section; mrml
/// computes it in single precision (`33.333332`), MJML in double
/// (`33.333333333333336`), in the class name (`mj-column-per-33-333332`) and
/// its media queries.
fn column_widths_as_mjml(html: String) -> String {
    let mut html = html;
    for n in [3u32, 6, 7, 9, 11, 12] {
        let single = format!("{}", 100f32 / n as f32);
        let double = format!("{}", 100f64 / n as f64);
        if single == double || !html.contains(&single) {
            continue;
        }
        html = html
            .replace(
                &format!("mj-column-per-{}", single.replace('.', "-")),
                &format!("mj-column-per-{}", double.replace('.', "-")),
            )
            .replace(&format!(":{single}%"), &format!(":{double}%"));
    }
    html
}

/// MJML writes the column classes' media queries in the order the columns
/// come; mrml sorts them by name.
fn column_queries_in_order(html: String) -> String {
    let first_use = |class: &str| {
        let body = html.find("<body").unwrap_or(0);
        html[body..]
            .match_indices(class)
            .find(|(p, _)| {
                let at = body + p;
                let before = html[..at].chars().next_back();
                let after = html[at + class.len()..].chars().next();
                matches!(before, Some('"' | ' ')) && matches!(after, Some('"' | ' '))
            })
            .map_or(usize::MAX, |(p, _)| p)
    };
    let mut out = html.clone();
    for (open, prefix) in [
        ("@media only screen and (min-width:", "."),
        (">.moz-text-html ", ".moz-text-html ."),
    ] {
        let Some(start) = out.find(open) else {
            continue;
        };
        let from = if prefix == "." {
            match out[start..].find('{') {
                Some(e) => start + e + 1,
                None => continue,
            }
        } else {
            start + 1
        };
        let Some(close) = out[from..].find("</style>").map(|e| from + e) else {
            continue;
        };
        // The rules end at the last `}` (inside the media query, the one
        // before the query's own).
        let mut to = out[from..close].rfind('}').map_or(from, |e| from + e + 1);
        if prefix == "." {
            to = out[from..to - 1].rfind('}').map_or(from, |e| from + e + 1);
        }
        let region = &out[from..to];
        let rules: Vec<&str> = region.split_inclusive('}').collect();
        if rules.len() < 2 || !rules.iter().all(|r| r.trim_start().starts_with(prefix)) {
            continue;
        }
        let mut sorted = rules.clone();
        sorted.sort_by_key(|r| {
            let class = r
                .trim_start()
                .trim_start_matches(prefix)
                .split([' ', '{'])
                .next()
                .unwrap_or("");
            first_use(class)
        });
        let fixed: String = sorted.concat();
        out.replace_range(from..to, &fixed);
    }
    out
}

/// The Outlook cell of a column is as wide as the column's share of the
/// section: mrml computes it in single precision (`183.31502px`), MJML in
/// double (`183.315px`). The section's width is a whole number of pixels,
/// so it is found again from mrml's width and the column's percentage.
fn outlook_column_widths_as_mjml(html: String) -> String {
    const CELL: &str = "vertical-align:top;width:";
    let mut out = String::with_capacity(html.len());
    let mut rest = html.as_str();
    while let Some(p) = rest.find(CELL) {
        let v0 = p + CELL.len();
        out.push_str(&rest[..v0]);
        rest = &rest[v0..];
        let Some(px) = rest.find("px") else { continue };
        let value = &rest[..px];
        let Ok(single) = value.parse::<f64>() else {
            continue;
        };
        let percent = rest
            .get(..400.min(rest.len()))
            .and_then(|near| near.find("mj-column-per-").map(|c| &near[c + 14..]))
            .map(|c| {
                c.split(['"', ' '])
                    .next()
                    .unwrap_or("")
                    .replacen('-', ".", 1)
            })
            .and_then(|c| c.parse::<f64>().ok());
        match percent {
            Some(percent) if value.contains('.') => {
                let section = (single * 100.0 / percent).round();
                let double = section * percent / 100.0;
                if (double - single).abs() < 0.01 {
                    out.push_str(&format!("{double}"));
                } else {
                    out.push_str(value);
                }
            }
            _ => out.push_str(value),
        }
        rest = &rest[px..];
    }
    out.push_str(rest);
    out
}

/// Inside an `mj-group`, MJML makes a column's Outlook cell its share of
/// the group (`300px` of 600 for half); mrml takes the column's padding and
/// borders off it (`284px`). The group's width is its own Outlook cell's,
/// and the share is in the column's class (`mj-column-per-50`,
/// `mj-column-px-200`).
fn group_column_widths_as_mjml(html: String) -> String {
    const GROUP: &str =
        "style=\"font-size:0;line-height:0;text-align:left;display:inline-block;width:100%;";
    const END: &str = "</tr></table><![endif]--></div>";
    const CELL: &str = "<td style=\"vertical-align:";
    if !html.contains(GROUP) {
        return html;
    }
    let px = |s: &str| -> Option<f64> {
        let at = s.find("width:")? + 6;
        s[at..].split("px").next()?.parse().ok()
    };
    let mut edits = Vec::new();
    for (g, _) in html.match_indices(GROUP) {
        let before = &html[..g];
        let Some(outer) = before.rfind("<td style=\"") else {
            continue;
        };
        let Some(group) = px(&before[outer..]) else {
            continue;
        };
        let end = html[g..].find(END).map_or(html.len(), |e| g + e);
        let mut at = g;
        while let Some(c) = html[at..end].find(CELL) {
            let cell = at + c;
            let close = html[cell..].find('>').map_or(end, |e| cell + e);
            at = close;
            let next = &html[close..end];
            let Some(class) = next
                .strip_prefix("><![endif]--><div class=\"")
                .and_then(|n| n.split('"').next())
            else {
                continue;
            };
            let share = class.split(' ').find_map(|c| {
                if let Some(p) = c.strip_prefix("mj-column-per-") {
                    let p: f64 = p.replacen('-', ".", 1).parse().ok()?;
                    Some(group * p / 100.0)
                } else {
                    c.strip_prefix("mj-column-px-")?.parse::<f64>().ok()
                }
            });
            let tag = &html[cell..close];
            let (Some(share), Some(w)) = (share, tag.find("width:")) else {
                continue;
            };
            let v0 = cell + w + 6;
            let v1 = html[v0..close].find("px").map_or(v0, |e| v0 + e);
            edits.push((v0..v1, format!("{share}")));
        }
    }
    apply(&html, edits).into_owned()
}

/// A fluid-height hero keeps its background's proportions with a cell of
/// `padding-bottom` in percent; mrml leaves out the `%`.
fn hero_fluid_padding_percent(html: String) -> String {
    const ALT: &str = "mso-padding-bottom-alt:0";
    if !html.contains(ALT) {
        return html;
    }
    let mut out = String::with_capacity(html.len());
    let mut rest = html.as_str();
    while let Some(p) = rest.find("padding-bottom:") {
        let v0 = p + "padding-bottom:".len();
        out.push_str(&rest[..v0]);
        rest = &rest[v0..];
        let len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let tag_end = rest.find('>').unwrap_or(rest.len());
        let tag_start = out.rfind('<').unwrap_or(0);
        let in_spacer = out[tag_start..].contains(ALT) || rest[..tag_end].contains(ALT);
        if len > 0 && in_spacer && rest[len..].starts_with(';') {
            out.push_str(&rest[..len]);
            out.push('%');
            rest = &rest[len..];
        }
    }
    out.push_str(rest);
    out
}

/// MJML gives an `mj-image` with a link and a `title` the title on the
/// link too; mrml only on the image.
fn image_link_title(html: String) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html.as_str();
    while let Some(p) = rest.find("<a ") {
        let end = rest[p..].find('>').map_or(rest.len(), |e| p + e);
        let link = &rest[p..end];
        let next = &rest[end + 1..];
        out.push_str(&rest[..p]);
        out.push_str(link);
        if next.starts_with("<img ") && !link.contains(" title=\"") {
            let img = &next[..next.find('>').unwrap_or(next.len())];
            let title = img
                .split_once(" title=\"")
                .and_then(|(_, t)| t.split_once('"'))
                .map(|(t, _)| t);
            // mj-image's own style, not an image in raw HTML.
            let mj_image = img.contains("outline:none;text-decoration:none;height:auto;");
            if let (Some(title), true) = (title, mj_image) {
                out.push_str(&format!(" title=\"{title}\""));
            }
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// MJML writes an `mj-table`'s `width` attribute as a number of pixels
/// without the unit (`width="300"`); mrml keeps `px`.
fn table_width_without_unit(html: String) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html.as_str();
    while let Some(p) = rest.find("<table ") {
        let end = rest[p..].find('>').map_or(rest.len(), |e| p + e);
        let tag = &rest[p..end];
        out.push_str(&rest[..p]);
        match tag.find(" width=\"") {
            Some(w)
                if tag.contains("table-layout:")
                    && tag[w + 8..].split('"').next().is_some_and(|v| {
                        v.strip_suffix("px")
                            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                    }) =>
            {
                let v_end = w + 8 + tag[w + 8..].find('"').unwrap_or(0);
                out.push_str(&tag[..v_end - 2]);
                out.push_str(&tag[v_end..]);
            }
            _ => out.push_str(tag),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// A column with padding is wrapped in a "gutter" table; MJML gives it
/// `border-collapse:separate` only when the column has a `border-radius`,
/// mrml also for an `inner-border-radius` or none.
fn gutter_border_collapse(html: String) -> String {
    const GUTTER: &str = "<table border=\"0\" cellpadding=\"0\" cellspacing=\"0\" role=\"presentation\" width=\"100%\" style=\"border-collapse:separate;\"><tbody><tr><td ";
    if !html.contains(GUTTER) {
        return html;
    }
    let mut out = String::with_capacity(html.len());
    let mut rest = html.as_str();
    while let Some(p) = rest.find(GUTTER) {
        out.push_str(&rest[..p]);
        let after = &rest[p + GUTTER.len()..];
        let td = &after[..after.find('>').unwrap_or(after.len())];
        if td.contains("border-radius:") {
            out.push_str(GUTTER);
        } else {
            out.push_str(&GUTTER.replace(" style=\"border-collapse:separate;\"", ""));
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// An image or a divider in a column of a fractional width (575 / 2 =
/// 287.5px): mrml writes the fraction (`width="287.5"`), MJML whole pixels
/// (`width="287"`), in the image's cell and `width`, and in the divider's
/// Outlook table. The Outlook cells of columns keep their fractions in both.
fn truncate_image_and_divider_widths(html: String) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html.as_str();
    while let Some(p) = rest.find('<') {
        let end = rest[p..].find('>').map_or(rest.len(), |e| p + e);
        let tag = &rest[p..end];
        out.push_str(&rest[..p]);
        // mj-image's image and cell, and mj-divider's Outlook table; not
        // what raw HTML writes.
        let fixable = (tag.starts_with("<img ")
            && tag.contains("outline:none;text-decoration:none;height:auto;"))
            || tag.starts_with("<td style=\"width:")
            || (tag.starts_with("<table ") && tag.contains("border-top:"));
        if fixable && tag.contains('.') {
            out.push_str(&truncate_widths_in(tag));
        } else {
            out.push_str(tag);
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// `width="287.5"`, `width="287.5px"` and `width:287.5px` in `tag`, whole.
fn truncate_widths_in(tag: &str) -> String {
    let mut out = String::with_capacity(tag.len());
    let mut rest = tag;
    loop {
        let next = ["width=\"", "width:"]
            .iter()
            .filter_map(|k| rest.find(k).map(|p| (p, k.len())))
            .min();
        let Some((p, len)) = next else { break };
        out.push_str(&rest[..p + len]);
        rest = &rest[p + len..];
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits > 0 && rest[digits..].starts_with('.') {
            let frac = rest[digits + 1..]
                .find(|c: char| !c.is_ascii_digit())
                .map_or(rest.len(), |e| digits + 1 + e);
            let unit_ok = rest[frac..].starts_with("px") || rest[frac..].starts_with('"');
            if frac > digits + 1 && unit_ok {
                out.push_str(&rest[..digits]);
                rest = &rest[frac..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    //! Each test shows what mrml 6.0.1 writes, what MJML 4.18 writes, and
    //! that the correction turns the first into the second.
    use super::*;

    /// mrml alone, with MJML's fonts.
    fn mrml(body: &str) -> String {
        let mjml = format!("<mjml><mj-body>{body}</mj-body></mjml>");
        let parsed = mrml::parse(&mjml).unwrap();
        parsed
            .element
            .render(&render_options(RemoteFonts::Link))
            .unwrap()
    }

    /// mrml with the corrections around it.
    fn ours(body: &str) -> String {
        let mjml = format!("<mjml><mj-body>{body}</mj-body></mjml>");
        let (prepared, carried) = prepare(&mjml);
        let parsed = mrml::parse(prepared.as_ref()).unwrap();
        let html = parsed
            .element
            .render(&render_options(RemoteFonts::Link))
            .unwrap();
        correct(html, &carried)
    }

    fn column(inner: &str) -> String {
        format!("<mj-section><mj-column>{inner}</mj-column></mj-section>")
    }

    #[test]
    fn attribute_values_mrml_would_escape_become_character_references() {
        let text = column(
            "<mj-text><p style=\"\n  color: red;\n\" title='say \"hi\" ❤\u{fe0f}'>x</p></mj-text>",
        );
        let mrml = mrml(&text);
        assert!(mrml.contains(r#"style="\n  color: red;\n""#), "{mrml}");
        assert!(mrml.contains(r#"title="say \"hi\" ❤\u{fe0f}""#), "{mrml}");
        // MJML: style="\n  color: red;\n" title='say "hi" ❤️' as written,
        // which a browser reads as the references below.
        let ours = ours(&text);
        assert!(ours.contains("style=\"&#xA;  color: red;&#xA;\""), "{ours}");
        assert!(
            ours.contains("title=\"say &quot;hi&quot; ❤&#xFE0F;\""),
            "{ours}"
        );
        // Placeholders, comments and style sheets keep their bytes.
        let kept = "<mj-image alt='{{name \"x\"}}' /><!-- a=\"\n\" --><mj-style>a { b: \"\\\" }</mj-style>";
        assert!(matches!(escape_attribute_values(kept), Cow::Borrowed(_)));
    }

    #[test]
    fn the_title_reads_the_same_in_the_aria_label() {
        let mjml = "<mjml><mj-head><mj-title>\u{200e}#We ❤\u{fe0f} \"q\" &amp; {{name}}</mj-title></mj-head><mj-body></mj-body></mjml>";
        let render = |m: &str| {
            mrml::parse(m)
                .unwrap()
                .element
                .render(&render_options(RemoteFonts::Link))
                .unwrap()
        };
        let mrml = render(mjml);
        assert!(
            mrml.contains(r#"aria-label="\u{200e}#We ❤\u{fe0f} \"q\" &amp; {{name}}""#),
            "{mrml}"
        );
        // MJML: aria-label="‎#We ❤️ " — cut at the quote.
        let (prepared, carried) = prepare(mjml);
        let ours = correct(render(&prepared), &carried);
        assert!(
            ours.contains("aria-label=\"&#x200E;#We ❤&#xFE0F; &quot;q&quot; &amp; {{name}}\""),
            "{ours}"
        );
        assert!(
            ours.contains("<title>&#x200E;#We ❤&#xFE0F; &quot;q&quot; &amp; {{name}}</title>"),
            "{ours}"
        );
    }

    #[test]
    fn the_first_of_duplicate_attributes_wins() {
        let text = column(r#"<mj-text font-size="12px" color="red" font-size="14px">x</mj-text>"#);
        assert!(mrml(&text).contains("font-size:14px"));
        // MJML: font-size:12px
        let ours = ours(&text);
        assert!(ours.contains("font-size:12px") && !ours.contains("font-size:14px"));
    }

    #[test]
    fn a_unitless_zero_in_a_padding_shorthand_counts() {
        let image = column(r#"<mj-image src="a.png" alt="" padding="0 25px" />"#);
        assert!(mrml(&image).contains(r#"width="600""#));
        // MJML: <td style="width:550px;"> … width="550"
        let ours = ours(&image);
        assert!(
            ours.contains(r#"width="550""#) && ours.contains("width:550px"),
            "{ours}"
        );
    }

    #[test]
    fn images_and_social_icons_without_alt_get_an_empty_alt() {
        let body = column(
            r#"<mj-image src="a.png" /><mj-social><mj-social-element name="facebook" href="https://f.example" /></mj-social>"#,
        );
        assert_eq!(mrml(&body).matches("alt=").count(), 0);
        // MJML: <img alt="" …> for both.
        assert_eq!(ours(&body).matches("alt=\"\"").count(), 2);
        // Unless mj-attributes gives one.
        let given = "<mjml><mj-head><mj-attributes><mj-image alt=\"Logo\" /></mj-attributes></mj-head><mj-body><mj-image src=\"a.png\" /></mj-body></mjml>";
        assert!(!empty_alt_on_images(given).contains("alt=\"\" "));
    }

    #[test]
    fn a_fluid_height_hero_keeps_its_proportions() {
        let hero = r#"<mj-hero mode="fluid-height" background-width="600px" background-height="300px" background-url="https://x.example/h.jpg" padding="40px 0"><mj-text>Hi</mj-text></mj-hero>"#;
        assert!(!mrml(hero).contains("padding-bottom:50%"));
        // MJML: <td style="width:0.01%;padding-bottom:50%;mso-padding-bottom-alt:0;"></td>
        // on both sides, no height.
        let ours = ours(hero);
        assert_eq!(ours.matches("padding-bottom:50%;").count(), 2, "{ours}");
    }

    #[test]
    fn mj_attributes_for_the_body_and_accordion_elements_apply() {
        let mjml = "<mjml><mj-head><mj-attributes><mj-all font-family=\"Georgia\" /><mj-body width=\"500px\" /></mj-attributes></mj-head><mj-body><mj-section><mj-column><mj-accordion><mj-accordion-element><mj-accordion-title>T</mj-accordion-title><mj-accordion-text>X</mj-accordion-text></mj-accordion-element></mj-accordion></mj-column></mj-section></mj-body></mjml>";
        let render = |src: &str| {
            let parsed = mrml::parse(src).unwrap();
            parsed
                .element
                .render(&render_options(RemoteFonts::Off))
                .unwrap()
        };
        let label = "<label class=\"mj-accordion-element\" style=\"font-size:13px;";
        let before = render(mjml);
        assert!(before.contains("max-width:600px") && before.contains(&format!("{label}\"")));
        // MJML: max-width:500px, and the mj-all font on the element's label.
        let after = render(&body_and_accordion_defaults(mjml));
        assert!(after.contains("max-width:500px"), "{after}");
        assert!(
            after.contains(&format!("{label}font-family:Georgia;\"")),
            "{after}"
        );
    }

    #[test]
    fn short_hex_colours_are_written_long() {
        let text = column(r##"<mj-text color="#abc">x</mj-text>"##);
        assert!(mrml(&text).contains("color:#abc"));
        // MJML: color:#aabbcc
        assert!(ours(&text).contains("color:#aabbcc"));
    }

    #[test]
    fn conditional_comments_in_mj_raw_are_copied() {
        let body = "<mj-raw><!--[if mso | IE]><table><tr><td><![endif]--></mj-raw>\
                    <mj-section><mj-column><mj-text>A</mj-text></mj-column></mj-section>\
                    <mj-raw><!--[if mso | IE]></td></tr></table><![endif]--></mj-raw>";
        // mrml: the sections between the two comments come out as raw text.
        assert!(mrml(body).contains("<mj-section>"));
        // MJML: both comments as written, the section rendered between.
        let ours = ours(body);
        assert!(!ours.contains("<mj-section>"), "{ours}");
        assert!(ours.contains("<!--[if mso | IE]><table><tr><td>"), "{ours}");
        assert!(ours.contains("</td></tr></table><![endif]-->"), "{ours}");
    }

    #[test]
    fn button_titles_and_table_roles_are_kept() {
        let body = column(
            r#"<mj-button href="https://x.example" title="Go">Go</mj-button><mj-table role="presentation"><tr><td>1</td></tr></mj-table>"#,
        );
        let mrml = mrml(&body);
        assert!(
            !mrml.contains("title=\"Go\"") && !mrml.contains("role=\"presentation\" style=\"color")
        );
        // MJML: <a href="https://x.example" … title="Go"> and <table … role="presentation">
        let ours = ours(&body);
        assert!(ours.contains("<a title=\"Go\" href="), "{ours}");
        assert!(ours.contains("<table role=\"presentation\" border=\"0\" cellpadding=\"0\" cellspacing=\"0\" width=\"100%\" style=\"color"), "{ours}");
    }

    #[test]
    fn adjacent_outlook_conditionals_are_merged() {
        let mrml = "<!--[if mso | IE]><tr><![endif]-->\n  <!--[if mso | IE]><td><![endif]-->";
        let mjml = "<!--[if mso | IE]><tr><td><![endif]-->";
        assert_eq!(merge_conditionals(mrml.to_string()), mjml);
        let apart =
            "<!--[if mso | IE]><tr><![endif]--><div></div><!--[if mso | IE]></tr><![endif]-->";
        assert_eq!(merge_conditionals(apart.to_string()), apart);
    }

    #[test]
    fn the_carousel_query_is_the_one_browsers_ignore() {
        let body = column(
            r#"<mj-carousel><mj-carousel-image src="a.png" /><mj-carousel-image src="b.png" /></mj-carousel>"#,
        );
        assert!(mrml(&body).contains("@media screen, yahoo {"));
        // MJML: @media screen yahoo {
        let ours = ours(&body);
        assert!(ours.contains("@media screen yahoo {") && !ours.contains("screen, yahoo"));
    }

    #[test]
    fn a_button_cell_has_no_vertical_align_attribute() {
        let body = column(r#"<mj-button href="https://x.example">Go</mj-button>"#);
        assert!(mrml(&body).contains(r#" vertical-align="middle""#));
        // MJML: <td align="center" style="font-size:0px;padding:10px 25px;word-break:break-word;">
        assert!(!ours(&body).contains(r#" vertical-align="middle""#));
    }

    #[test]
    fn a_button_width_leaves_room_for_its_border() {
        let body = column(
            r##"<mj-button href="https://x.example" width="200px" border="1px solid #000">Go</mj-button>"##,
        );
        assert!(mrml(&body).contains("display:inline-block;width:150px;"));
        // MJML: width:148px (200 - 2 x 25 inner padding - 2 x 1 border)
        assert!(ours(&body).contains("display:inline-block;width:148px;"));
    }

    #[test]
    fn fonts_are_linked_in_mjml_order() {
        let body =
            column(r#"<mj-text>Ubuntu</mj-text><mj-text font-family="Lato, Arial">Lato</mj-text>"#);
        let order = |html: &str| (html.find("family=Ubuntu"), html.find("family=Lato"));
        let (u, l) = order(&mrml(&body));
        assert!(u < l);
        // MJML: Lato first (its list: Open Sans, Droid Sans, Lato, Roboto, Ubuntu).
        let (u, l) = order(&ours(&body));
        assert!(l < u);
        let imports = ours(&body);
        let (u, l) = (imports.rfind("family=Ubuntu"), imports.rfind("family=Lato"));
        assert!(l < u, "{imports}");
    }

    #[test]
    fn no_remote_fonts_links_none() {
        let parsed = mrml::parse("<mjml><mj-body><mj-text>x</mj-text></mj-body></mjml>").unwrap();
        let off = parsed
            .element
            .render(&render_options(RemoteFonts::Off))
            .unwrap();
        let on = parsed
            .element
            .render(&render_options(RemoteFonts::Link))
            .unwrap();
        assert!(!off.contains("fonts.googleapis.com") && on.contains("fonts.googleapis.com"));
    }

    #[test]
    fn column_shares_are_written_in_double_precision() {
        let three = "<mj-section><mj-column></mj-column><mj-column></mj-column><mj-column></mj-column></mj-section>";
        let mrml = mrml(three);
        assert!(mrml.contains("mj-column-per-33-333332") && mrml.contains("width:33.333332%"));
        // MJML: mj-column-per-33-333333333333336, 33.333333333333336%, and
        // Outlook cells of 200px.
        let ours = ours(three);
        assert!(ours.contains("mj-column-per-33-333333333333336"), "{ours}");
        assert!(ours.contains("width:33.333333333333336%") && !ours.contains("33.333332"));
        let padded = "<mj-section padding=\"0px 10px\"><mj-column></mj-column><mj-column></mj-column><mj-column></mj-column></mj-section>";
        assert!(self::mrml(padded).contains("width:193.33331px"));
        // MJML: 580 x 33.333333333333336 / 100
        assert!(self::ours(padded).contains("width:193.33333333333337px"));
    }

    #[test]
    fn column_queries_follow_the_columns() {
        let body = "<mj-section><mj-column width=\"70%\"></mj-column><mj-column width=\"30%\"></mj-column></mj-section>";
        let at = |html: &str, class: &str| html.find(&format!(".{class} {{")).unwrap();
        let mrml = mrml(body);
        assert!(at(&mrml, "mj-column-per-30") < at(&mrml, "mj-column-per-70"));
        // MJML: .mj-column-per-70 first, as the columns come.
        let ours = ours(body);
        assert!(
            at(&ours, "mj-column-per-70") < at(&ours, "mj-column-per-30"),
            "{ours}"
        );
    }

    #[test]
    fn a_linked_image_title_is_on_the_link_too() {
        let body =
            column(r#"<mj-image src="a.png" alt="" href="https://x.example" title="Photo" />"#);
        assert!(mrml(&body).contains(r#"<a href="https://x.example" target="_blank">"#));
        // MJML: <a href="https://x.example" target="_blank" title="Photo">
        assert!(
            ours(&body).contains(r#"<a href="https://x.example" target="_blank" title="Photo">"#)
        );
    }

    #[test]
    fn a_table_width_attribute_has_no_unit() {
        let body = column(r#"<mj-table width="300px"><tr><td>1</td></tr></mj-table>"#);
        assert!(mrml(&body).contains(r#"width="300px""#));
        // MJML: width="300"
        let ours = ours(&body);
        assert!(ours.contains(r#"width="300""#) && !ours.contains(r#"width="300px""#));
    }

    #[test]
    fn only_a_rounded_gutter_separates_its_borders() {
        let body = "<mj-section><mj-column padding=\"0px 10px\" inner-border=\"1px solid #ccc\" \
                    inner-border-radius=\"6px\"><mj-text>x</mj-text></mj-column></mj-section>";
        assert!(mrml(body).contains("width=\"100%\" style=\"border-collapse:separate;\"><tbody>"));
        // MJML: <table … width="100%"> without a style, unless border-radius.
        assert!(!ours(body).contains("width=\"100%\" style=\"border-collapse:separate;\"><tbody>"));
        let round = "<mj-section><mj-column padding=\"10px\" border-radius=\"4px\"><mj-text>x</mj-text></mj-column></mj-section>";
        assert!(ours(round).contains("width=\"100%\" style=\"border-collapse:separate;\"><tbody>"));
    }

    #[test]
    fn image_and_divider_widths_are_whole_pixels() {
        let body = "<mj-section padding=\"0px 12px 0px 13px\"><mj-column>\
                    <mj-image src=\"a.png\" alt=\"\" padding=\"0px\" /><mj-divider padding=\"0px\" />\
                    </mj-column><mj-column></mj-column></mj-section>";
        let mrml = mrml(body);
        assert!(mrml.contains("width=\"287.5\"") && mrml.contains("width=\"287.5px\""));
        // MJML: <td style="width:287px;"><img … width="287"> and the
        // divider's Outlook table width="287px" … width:287px.
        let ours = ours(body);
        assert!(!ours.contains("width=\"287.5"), "{ours}");
        assert!(ours.contains("<td style=\"width:287px;\">") && ours.contains("width=\"287\""));
        assert!(ours.contains("width=\"287px\""), "{ours}");
        // The columns' Outlook cells keep their fractions.
        assert!(ours.contains("vertical-align:top;width:287.5px;"));
        let three =
            "<mj-section padding=\"0px 10px\"><mj-column></mj-column><mj-column></mj-column>\
                     <mj-column></mj-column></mj-section>";
        assert!(self::ours(three).contains("width:193.33333333333337px"));
    }

    #[test]
    fn a_padded_column_in_a_group_keeps_its_share_in_outlook() {
        let body = "<mj-section><mj-group><mj-column padding=\"0px 8px\"><mj-text>a</mj-text>\
                    </mj-column><mj-column width=\"50%\"><mj-text>b</mj-text></mj-column>\
                    </mj-group></mj-section>";
        assert!(mrml(body).contains("<td style=\"vertical-align:top;width:284px;\">"));
        // MJML: <td style="vertical-align:top;width:300px;"> for both.
        let ours = ours(body);
        assert!(!ours.contains("width:284px;\">"), "{ours}");
        assert_eq!(
            ours.matches("<td style=\"vertical-align:top;width:300px;\">")
                .count(),
            2
        );
    }

    #[test]
    fn mj_html_attributes_are_set_on_what_their_selectors_match() {
        let mjml = "<mjml><mj-head><mj-html-attributes><mj-selector path=\".custom div\">\
                    <mj-html-attribute name=\"data-id\">42</mj-html-attribute></mj-selector>\
                    </mj-html-attributes></mj-head><mj-body><mj-section><mj-column>\
                    <mj-text css-class=\"custom\">Hi</mj-text><mj-text>Other</mj-text>\
                    </mj-column></mj-section></mj-body></mjml>";
        // mrml: a parse error.
        assert!(mrml::parse(mjml).is_err());
        // MJML: <div style="…" data-id="42">Hi</div>, the other text untouched.
        let (prepared, carried) = prepare(mjml);
        let parsed = mrml::parse(prepared.as_ref()).unwrap();
        let html = parsed
            .element
            .render(&render_options(RemoteFonts::Off))
            .unwrap();
        let html = correct(html, &carried);
        assert_eq!(html.matches("data-id=\"42\"").count(), 1, "{html}");
        let at = html.find("data-id=\"42\"").unwrap();
        assert!(html[at..].starts_with("data-id=\"42\">Hi") || html[at..at + 400].contains(">Hi<"));
        assert!(parse_selector("td.a > div#b[x='1']").is_some());
        let listed = mjml.replace("path=\".custom div\"", "path=\"h1, .custom div\"");
        let (prepared, carried) = prepare(&listed);
        let parsed = mrml::parse(prepared.as_ref()).unwrap();
        let html = parsed
            .element
            .render(&render_options(RemoteFonts::Off))
            .unwrap();
        assert_eq!(correct(html, &carried).matches("data-id=\"42\"").count(), 1);
    }

    #[test]
    fn raw_html_in_mj_text_is_left_as_written() {
        let raw = "<a href=\"https://x.example\"><img src=\"a.png\" title=\"T\" width=\"287.5\" \
                   style=\"border:0;\" /></a>";
        let body = column(&format!("<mj-text>{raw}</mj-text>"));
        let ours = ours(&body);
        assert!(
            ours.contains("<a href=\"https://x.example\"><img"),
            "{ours}"
        );
        assert!(ours.contains("width=\"287.5\""), "{ours}");
    }
}
