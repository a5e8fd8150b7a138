//! `mj-html-attributes`, which mrml does not parse: taken out of the
//! MJML, and set on the elements of the HTML its CSS selectors match.

use super::*;

/// mrml cannot parse `mj-html-attributes` (the whole template fails);
/// MJML sets each `mj-html-attribute` on the elements of the finished HTML
/// that its `mj-selector`'s CSS selector matches. The block is taken out
/// before mrml reads the MJML, and [`set_html_attributes`] does the rest.
pub(super) fn take_html_attributes<'a>(
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
pub(super) struct Compound {
    pub(super) tag: Option<String>,
    pub(super) classes: Vec<String>,
    pub(super) id: Option<String>,
    pub(super) attrs: Vec<(String, Option<String>)>,
}

/// An element open around the current tag: its name, classes, id and
/// attributes.
#[derive(Debug)]
pub(super) struct Open {
    pub(super) tag: String,
    pub(super) attrs: Vec<(String, String)>,
}

impl Compound {
    pub(super) fn parse(s: &str) -> Option<Compound> {
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

    pub(super) fn matches(&self, e: &Open) -> bool {
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
pub(super) fn parse_selector(s: &str) -> Option<Vec<(bool, Compound)>> {
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
pub(super) fn selector_matches(selector: &[(bool, Compound)], path: &[Open]) -> bool {
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
pub(super) fn set_html_attributes(
    html: String,
    rules: &[(String, Vec<(String, String)>)],
) -> String {
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
