//! What MJML's own validator would say about a template, and what no
//! renderer notices: unknown tags and attributes, an attribute set twice on
//! one element (MJML keeps the first, mrml the last), simple invalid values
//! (a unit or colour MJML would reject), placeholders in another mail tool's
//! syntax that would reach contacts as literal text, and link text that
//! says nothing. Findings only: this module reads text and changes nothing.
//!
//! The tag scanner ([`scan`]) is shared: it finds MJML tags with their
//! attributes and lines, skipping comments and the HTML inside tags whose
//! content MJML does not parse (`mj-text`, `mj-button`, `mj-raw` …).

/// One MJML tag as written, attributes in source order (duplicates kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tag<'a> {
    pub name: &'a str,
    pub attrs: Vec<Attr<'a>>,
    /// 1-based line of the `<` in the scanned text.
    pub line: usize,
    /// Whether the tag is inside `<mj-attributes>` (its attributes are
    /// defaults for other tags, not the tag's own).
    pub in_attributes: bool,
}

/// One attribute of a [`Tag`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attr<'a> {
    pub name: &'a str,
    pub value: &'a str,
    /// 1-based line of the attribute's name.
    pub line: usize,
}

/// A finding, at a 1-based line of the scanned text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finding {
    pub line: usize,
    pub message: String,
}

/// Tags whose content is HTML or text, not MJML: the scanner skips to their
/// closing tag.
const ENDING_TAGS: &[&str] = &[
    "mj-text",
    "mj-button",
    "mj-table",
    "mj-raw",
    "mj-navbar-link",
    "mj-accordion-title",
    "mj-accordion-text",
    "mj-social-element",
    "mj-style",
    "mj-title",
    "mj-preview",
    "mj-html-attribute",
];

/// Every tag in MJML's structure, outside the content of [`ENDING_TAGS`]
/// and outside comments: MJML tags (`mjml`, `mj-…`), and the outermost HTML
/// tags where MJML expects its own (MJML leaves those out, with all they
/// hold; see [`is_mjml`]). Closing tags are not listed.
pub(crate) fn scan(mjml: &str) -> Vec<Tag<'_>> {
    let b = mjml.as_bytes();
    let line_at = LineIndex::new(mjml);
    let mut out = Vec::new();
    let mut in_attributes = false;
    let mut i = 0;
    while let Some(k) = mjml[i..].find('<') {
        let start = i + k;
        let rest = &mjml[start + 1..];
        if rest.starts_with("!--") {
            i = mjml[start..].find("-->").map_or(b.len(), |e| start + e + 3);
            continue;
        }
        if let Some(close) = rest.strip_prefix('/') {
            if close.starts_with("mj-attributes") {
                in_attributes = false;
            }
            i = start + 1;
            continue;
        }
        let name_len = rest
            .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
            .unwrap_or(rest.len());
        let name = &rest[..name_len];
        if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
            // `< b`, `<!DOCTYPE`, `<?xml`: not an element.
            i = start + 1;
            continue;
        }
        let (attrs, end, self_closing) = attributes(mjml, start + 1 + name_len, &line_at);
        out.push(Tag {
            name,
            attrs,
            line: line_at.line(start),
            in_attributes: in_attributes && name != "mj-attributes",
        });
        i = end;
        if name == "mj-attributes" && !self_closing {
            in_attributes = true;
        }
        if !self_closing && ENDING_TAGS.contains(&name) {
            let closing = format!("</{name}");
            i = mjml[end..].find(&closing).map_or(b.len(), |e| end + e);
        } else if !self_closing && !is_mjml(name) && !VOID.contains(&name) {
            i = html_end(mjml, end, name);
        }
    }
    out
}

/// Whether a tag name is MJML's (`mjml`, `mj-…`) rather than HTML.
pub(crate) fn is_mjml(name: &str) -> bool {
    name == "mjml" || name.starts_with("mj-")
}

/// HTML elements without content.
const VOID: &[&str] = &[
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track",
    "wbr",
];

/// Where the HTML element `name` opened before `from` ends: just after its
/// matching `</name>`, counting nested elements of the same name; the end
/// of `s` when it is not closed.
fn html_end(s: &str, from: usize, name: &str) -> usize {
    let (open, close) = (format!("<{name}"), format!("</{name}"));
    let mut depth = 1;
    let mut i = from;
    while let Some(k) = s[i..].find('<') {
        let at = i + k;
        let rest = &s[at..];
        let boundary = |after: usize| {
            rest[after..]
                .chars()
                .next()
                .is_none_or(|c| c.is_whitespace() || c == '>' || c == '/')
        };
        if rest.starts_with(&close) && boundary(close.len()) {
            depth -= 1;
            if depth == 0 {
                return s[at..].find('>').map_or(s.len(), |e| at + e + 1);
            }
        } else if rest.starts_with(&open) && boundary(open.len()) {
            depth += 1;
        }
        i = at + 1;
    }
    s.len()
}

/// The attributes of a tag from `from` (just after its name) to its `>`:
/// (attributes, the offset after `>`, whether it ends with `/>`). A `>`
/// inside a quoted value does not end the tag.
fn attributes<'a>(s: &'a str, from: usize, lines: &LineIndex) -> (Vec<Attr<'a>>, usize, bool) {
    let b = s.as_bytes();
    let mut attrs = Vec::new();
    let mut i = from;
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() {
            return (attrs, b.len(), false);
        }
        match b[i] {
            b'>' => return (attrs, i + 1, false),
            b'/' if b.get(i + 1) == Some(&b'>') => return (attrs, i + 2, true),
            b'/' => {
                i += 1;
                continue;
            }
            _ => {}
        }
        let name_start = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && !matches!(b[i], b'=' | b'>' | b'/') {
            i += 1;
        }
        let name = &s[name_start..i];
        let mut j = i;
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        let mut value = "";
        if b.get(j) == Some(&b'=') {
            j += 1;
            while j < b.len() && b[j].is_ascii_whitespace() {
                j += 1;
            }
            match b.get(j) {
                Some(&q) if q == b'"' || q == b'\'' => {
                    let end = s[j + 1..].find(q as char).map_or(b.len(), |e| j + 1 + e);
                    value = &s[j + 1..end];
                    i = (end + 1).min(b.len());
                }
                _ => {
                    let v = j;
                    while j < b.len() && !b[j].is_ascii_whitespace() && b[j] != b'>' {
                        j += 1;
                    }
                    value = &s[v..j];
                    i = j;
                }
            }
        }
        if name.is_empty() {
            i += 1;
            continue;
        }
        attrs.push(Attr {
            name,
            value,
            line: lines.line(name_start),
        });
    }
}

/// Byte offset to 1-based line.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(s: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(s.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    fn line(&self, offset: usize) -> usize {
        self.starts.partition_point(|&s| s <= offset)
    }
}

/// The attributes set more than once on `tag`: (the first, a later one).
pub(crate) fn duplicates<'t, 'a>(tag: &'t Tag<'a>) -> Vec<(&'t Attr<'a>, &'t Attr<'a>)> {
    let mut out = Vec::new();
    for (k, later) in tag.attrs.iter().enumerate() {
        if let Some(first) = tag.attrs[..k].iter().find(|a| a.name == later.name) {
            out.push((first, later));
        }
    }
    out
}

const PADDING: &[&str] = &[
    "padding",
    "padding-top",
    "padding-bottom",
    "padding-left",
    "padding-right",
];
const BORDERS: &[&str] = &[
    "border",
    "border-top",
    "border-bottom",
    "border-left",
    "border-right",
    "border-radius",
];
const FONT: &[&str] = &[
    "color",
    "font-family",
    "font-size",
    "font-style",
    "font-weight",
    "line-height",
    "letter-spacing",
    "text-decoration",
    "text-transform",
];
const BACKGROUND: &[&str] = &[
    "background-color",
    "background-url",
    "background-repeat",
    "background-size",
    "background-position",
    "background-position-x",
    "background-position-y",
];
const ICONS: &[&str] = &[
    "icon-align",
    "icon-width",
    "icon-height",
    "icon-wrapped-url",
    "icon-wrapped-alt",
    "icon-unwrapped-url",
    "icon-unwrapped-alt",
    "icon-position",
];

/// The attributes each MJML 4 component takes, as its documentation lists
/// them (written for letterpress from mjml.io's component pages), besides
/// `mj-class` and `css-class`, which every body component takes. Each entry
/// is a list of groups.
const COMPONENTS: &[(&str, &[&[&str]])] = &[
    ("mjml", &[&["owa", "lang", "dir"]]),
    ("mj-head", &[]),
    ("mj-body", &[&["width", "background-color"]]),
    ("mj-attributes", &[]),
    ("mj-breakpoint", &[&["width"]]),
    ("mj-font", &[&["name", "href"]]),
    ("mj-html-attributes", &[]),
    ("mj-selector", &[&["path"]]),
    ("mj-html-attribute", &[&["name"]]),
    ("mj-preview", &[]),
    ("mj-style", &[&["inline"]]),
    ("mj-title", &[]),
    ("mj-include", &[&["path", "type", "css-inline"]]),
    ("mj-raw", &[&["position"]]),
    (
        "mj-section",
        &[
            BACKGROUND,
            BORDERS,
            PADDING,
            &["direction", "full-width", "text-align", "text-padding"],
        ],
    ),
    (
        "mj-wrapper",
        &[
            BACKGROUND,
            BORDERS,
            PADDING,
            &[
                "direction",
                "full-width",
                "text-align",
                "text-padding",
                "gap",
            ],
        ],
    ),
    (
        "mj-column",
        &[
            BORDERS,
            PADDING,
            &[
                "background-color",
                "inner-background-color",
                "inner-border",
                "inner-border-top",
                "inner-border-bottom",
                "inner-border-left",
                "inner-border-right",
                "inner-border-radius",
                "direction",
                "vertical-align",
                "width",
            ],
        ],
    ),
    (
        "mj-group",
        &[&["background-color", "direction", "vertical-align", "width"]],
    ),
    (
        "mj-text",
        &[
            FONT,
            PADDING,
            &[
                "align",
                "background-color",
                "container-background-color",
                "height",
                "vertical-align",
            ],
        ],
    ),
    (
        "mj-button",
        &[
            FONT,
            PADDING,
            BORDERS,
            &[
                "align",
                "background-color",
                "container-background-color",
                "height",
                "href",
                "name",
                "title",
                "inner-padding",
                "rel",
                "target",
                "vertical-align",
                "text-align",
                "width",
            ],
        ],
    ),
    (
        "mj-image",
        &[
            PADDING,
            BORDERS,
            &[
                "alt",
                "href",
                "name",
                "src",
                "srcset",
                "sizes",
                "title",
                "rel",
                "align",
                "container-background-color",
                "fluid-on-mobile",
                "target",
                "width",
                "height",
                "max-height",
                "font-size",
                "usemap",
            ],
        ],
    ),
    (
        "mj-divider",
        &[
            PADDING,
            &[
                "border-color",
                "border-style",
                "border-width",
                "container-background-color",
                "width",
                "align",
            ],
        ],
    ),
    (
        "mj-spacer",
        &[PADDING, BORDERS, &["container-background-color", "height"]],
    ),
    (
        "mj-table",
        &[
            FONT,
            PADDING,
            &[
                "align",
                "border",
                "cellpadding",
                "cellspacing",
                "container-background-color",
                "role",
                "table-layout",
                "vertical-align",
                "width",
            ],
        ],
    ),
    (
        "mj-social",
        &[
            FONT,
            PADDING,
            &[
                "align",
                "border-radius",
                "container-background-color",
                "icon-size",
                "icon-height",
                "icon-padding",
                "inner-padding",
                "mode",
                "table-layout",
                "text-padding",
                "vertical-align",
            ],
        ],
    ),
    (
        "mj-social-element",
        &[
            FONT,
            PADDING,
            &[
                "align",
                "alt",
                "background-color",
                "border-radius",
                "href",
                "icon-size",
                "icon-height",
                "icon-padding",
                "icon-position",
                "name",
                "text-padding",
                "rel",
                "src",
                "srcset",
                "sizes",
                "target",
                "title",
                "vertical-align",
            ],
        ],
    ),
    (
        "mj-navbar",
        &[&[
            "align",
            "base-url",
            "hamburger",
            "ico-align",
            "ico-open",
            "ico-close",
            "ico-color",
            "ico-font-size",
            "ico-font-family",
            "ico-text-transform",
            "ico-padding",
            "ico-padding-top",
            "ico-padding-bottom",
            "ico-padding-left",
            "ico-padding-right",
            "ico-text-decoration",
            "ico-line-height",
        ]],
    ),
    (
        "mj-navbar-link",
        &[FONT, PADDING, &["href", "name", "target", "rel"]],
    ),
    (
        "mj-hero",
        &[
            PADDING,
            &[
                "mode",
                "height",
                "background-url",
                "background-width",
                "background-height",
                "background-position",
                "background-color",
                "border-radius",
                "container-background-color",
                "inner-background-color",
                "inner-padding",
                "inner-padding-top",
                "inner-padding-bottom",
                "inner-padding-left",
                "inner-padding-right",
                "vertical-align",
            ],
        ],
    ),
    (
        "mj-accordion",
        &[
            ICONS,
            PADDING,
            &["container-background-color", "border", "font-family"],
        ],
    ),
    (
        "mj-accordion-element",
        &[ICONS, &["background-color", "border", "font-family"]],
    ),
    (
        "mj-accordion-title",
        &[
            PADDING,
            &["background-color", "color", "font-size", "font-family"],
        ],
    ),
    (
        "mj-accordion-text",
        &[
            PADDING,
            &[
                "background-color",
                "color",
                "font-size",
                "font-family",
                "font-weight",
                "letter-spacing",
                "line-height",
            ],
        ],
    ),
    (
        "mj-carousel",
        &[
            PADDING,
            &[
                "align",
                "border-radius",
                "container-background-color",
                "icon-width",
                "left-icon",
                "right-icon",
                "thumbnails",
                "tb-border",
                "tb-border-radius",
                "tb-hover-border-color",
                "tb-selected-border-color",
                "tb-width",
            ],
        ],
    ),
    (
        "mj-carousel-image",
        &[&[
            "alt",
            "href",
            "rel",
            "target",
            "title",
            "src",
            "thumbnails-src",
            "border-radius",
            "tb-border",
            "tb-border-radius",
        ]],
    ),
    // Inside mj-attributes only: defaults for every tag, and named classes.
    ("mj-all", &[]),
    ("mj-class", &[]),
];

/// The attributes `tag` takes, or `None` for an unknown tag.
fn allowed(tag: &str) -> Option<impl Iterator<Item = &'static str>> {
    let (_, groups) = COMPONENTS.iter().find(|(name, _)| *name == tag)?;
    Some(
        groups
            .iter()
            .flat_map(|g| g.iter().copied())
            .chain(["mj-class", "css-class"]),
    )
}

/// MJML's validator findings for the MJML `body`, whose first line is line
/// `first_line` of its file: unknown tags, unknown attributes, attributes
/// set twice, and values MJML would reject (see [`invalid_value`]).
pub(crate) fn validate(body: &str, first_line: usize) -> Vec<Finding> {
    let mut out = Vec::new();
    let at = |line: usize| first_line + line - 1;
    for tag in scan(body) {
        if !is_mjml(tag.name) {
            out.push(Finding {
                line: at(tag.line),
                message: format!(
                    "`<{}>` is HTML where MJML expects its own tags: MJML leaves it out of the \
                     letter with all it holds (mrml, which renders here, keeps it); put it \
                     inside an mj-text, or an mj-raw",
                    tag.name
                ),
            });
            continue;
        }
        let Some(known) = allowed(tag.name).map(|a| a.collect::<Vec<_>>()) else {
            let hint = closest(tag.name, COMPONENTS.iter().map(|(n, _)| *n))
                .map(|n| format!(" (did you mean `<{n}>`?)"))
                .unwrap_or_default();
            out.push(Finding {
                line: at(tag.line),
                message: format!(
                    "`<{}>` is not an MJML tag{hint}; MJML skips it with everything inside, \
                     so fix its name or remove it",
                    tag.name
                ),
            });
            continue;
        };
        for (first, later) in duplicates(&tag) {
            out.push(Finding {
                line: at(later.line),
                message: format!(
                    "`{}` is set twice on `<{}>` (`{}` on line {}, `{}` here); MJML uses the \
                     first and mrml the last, so remove one",
                    later.name,
                    tag.name,
                    first.value,
                    at(first.line),
                    later.value
                ),
            });
        }
        // Inside mj-attributes a tag's attributes are defaults, checked
        // where they apply; mj-all and mj-class take any.
        let free = tag.in_attributes || matches!(tag.name, "mj-all" | "mj-class");
        for attr in &tag.attrs {
            if !free && !known.contains(&attr.name) {
                let hint = closest(attr.name, known.iter().copied())
                    .map(|n| format!(" (did you mean `{n}`?)"))
                    .unwrap_or_default();
                out.push(Finding {
                    line: at(attr.line),
                    message: format!(
                        "`<{}>` has no attribute `{}`{hint}; MJML ignores it",
                        tag.name, attr.name
                    ),
                });
                continue;
            }
            if let Some(why) = invalid_value(attr.name, attr.value) {
                out.push(Finding {
                    line: at(attr.line),
                    message: format!(
                        "`{}=\"{}\"` on `<{}>`: {why}",
                        attr.name, attr.value, tag.name
                    ),
                });
            }
        }
    }
    out
}

/// The known name within two edits of `name`, if one is.
fn closest<'k>(name: &str, known: impl Iterator<Item = &'k str>) -> Option<&'k str> {
    known
        .map(|k| (distance(name, k), k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance over bytes (names are ASCII).
fn distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == cb {
                prev
            } else {
                1 + prev.min(row[j]).min(row[j + 1])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

/// Why MJML's type check would reject `value` for the attribute `name`, for
/// the simple types: lengths (`14px`, not `14`), colours (`#1f2a36`, not
/// `1f2a36`) and a few keyword lists. Values holding a placeholder are not
/// judged.
fn invalid_value(name: &str, value: &str) -> Option<String> {
    if value.contains("{{") {
        return None;
    }
    let v = value.trim();
    if name.ends_with("color") {
        return (!is_colour(v)).then(|| {
            "not a colour MJML accepts; write `#rgb`, `#rrggbb`, `rgb(…)`, `rgba(…)` or a \
             colour name"
                .into()
        });
    }
    let keywords: &[&str] = match name {
        "align" | "text-align" => &["left", "center", "right", "justify"],
        "vertical-align" => &["top", "middle", "bottom"],
        "direction" => &["ltr", "rtl"],
        _ => &[],
    };
    if !keywords.is_empty() {
        return (!keywords.contains(&v)).then(|| format!("MJML accepts {}", keywords.join(", ")));
    }
    // (units, how many values at most)
    let (units, max): (&[&str], usize) = match name {
        "padding" | "inner-padding" | "text-padding" | "icon-padding" | "ico-padding" => {
            (&["px", "%"], 4)
        }
        n if n.starts_with("padding-") || n.starts_with("inner-padding-") => (&["px", "%"], 1),
        "border-radius" | "inner-border-radius" => (&["px", "%"], 4),
        "font-size" | "icon-size" | "icon-height" | "border-width" | "ico-font-size" => {
            (&["px"], 1)
        }
        "width" | "height" | "max-height" => (&["px", "%"], 1),
        _ => return None,
    };
    let parts: Vec<&str> = v.split_whitespace().collect();
    let ok_part = |p: &str| {
        p == "0"
            || (matches!(name, "height" | "width") && p == "auto")
            || units.iter().any(|u| {
                p.strip_suffix(u).is_some_and(|n| {
                    !n.is_empty()
                        && n.bytes().all(|c| c.is_ascii_digit() || c == b'.')
                        && n.bytes().any(|c| c.is_ascii_digit())
                })
            })
    };
    if parts.is_empty() || parts.len() > max || !parts.iter().all(|p| ok_part(p)) {
        let count = if max == 1 {
            "one value".to_string()
        } else {
            format!("1 to {max} values")
        };
        return Some(format!(
            "MJML accepts {count} in {} (or `0`), such as `{}`",
            units.join(" or "),
            if max == 1 { "10px" } else { "10px 25px" }
        ));
    }
    None
}

fn is_colour(v: &str) -> bool {
    if let Some(hex) = v.strip_prefix('#') {
        return matches!(hex.len(), 3 | 4 | 6 | 8) && hex.bytes().all(|c| c.is_ascii_hexdigit());
    }
    let lower = v.to_ascii_lowercase();
    if ["rgb(", "rgba(", "hsl(", "hsla("]
        .iter()
        .any(|f| lower.starts_with(f))
    {
        return lower.ends_with(')');
    }
    // A colour name (`white`, `transparent`): letters only, and not a hex
    // colour that lost its `#` (`fff`, `bada55`).
    !v.is_empty()
        && v.bytes().all(|c| c.is_ascii_alphabetic())
        && !(matches!(v.len(), 3 | 6) && v.bytes().all(|c| c.is_ascii_hexdigit()))
}

/// Placeholders in another mail tool's syntax in `text`, which Handlebars
/// leaves as they are: Mailchimp's `*|FNAME|*`, Salesforce's `%%name%%`,
/// single braces `{first_name}` or `${first_name}`, and `[FirstName]` when
/// the name inside the brackets is one of `columns` or a usual name field.
/// Lines counted in `text`; `{{…}}` placeholders are skipped.
pub(crate) fn foreign_placeholders(text: &str, columns: &[String]) -> Vec<Finding> {
    let blanked = blank_handlebars(text);
    let lines = LineIndex::new(&blanked);
    let b = blanked.as_bytes();
    let mut out = Vec::new();
    let ident = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
            && s.bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
    };
    let mut push = |at: usize, written: &str, name: &str, tool: &str| {
        let name = name.trim_start_matches('$');
        out.push(Finding {
            line: lines.line(at),
            message: format!(
                "`{written}` looks like a placeholder in {tool}; Handlebars leaves it as it is, \
                 so contacts would read it literally: write `{{{{{name}}}}}` for a column named \
                 `{name}`"
            ),
        });
    };
    let mut i = 0;
    while i < b.len() {
        // A name is short: looking no further keeps a long text without
        // closing delimiters linear.
        let rest = prefix(&blanked[i..], MAX_NAME + 4);
        let found = if let Some(after) = rest.strip_prefix("*|") {
            after
                .find("|*")
                .map(|e| (e + 4, &after[..e], "Mailchimp's syntax"))
        } else if let Some(after) = rest.strip_prefix("%%") {
            after
                .find("%%")
                .map(|e| (e + 4, &after[..e], "Salesforce's syntax"))
        } else if b[i] == b'{' && (i == 0 || b[i - 1] != b'{') && !rest.starts_with("{{") {
            rest.find('}')
                .filter(|&e| b.get(i + e + 1) != Some(&b'}'))
                .map(|e| (e + 1, &rest[1..e], "single braces"))
        } else if let Some(after) = rest.strip_prefix("[[") {
            after
                .find("]]")
                .map(|e| (e + 4, &after[..e], "double square brackets"))
                .filter(|(_, inner, _)| is_name_field(inner, columns))
        } else if b[i] == b'[' && (i == 0 || !matches!(b[i - 1], b'!' | b'[')) {
            rest.find(']').and_then(|e| {
                // Campaign Monitor writes `[firstname,fallback=friend]`.
                let inner = &rest[1..e];
                let name = match inner.split_once(',') {
                    Some((name, f)) if f.trim_start().starts_with("fallback=") => name,
                    _ => inner,
                };
                is_name_field(name, columns).then_some((e + 1, name, "square brackets"))
            })
        } else {
            None
        };
        match found {
            Some((len, inner, tool)) if ident(inner.trim_start_matches('$').trim()) => {
                let inner = inner.trim();
                push(i, &rest[..len], inner, tool);
                i += len;
            }
            _ => i += rest.chars().next().map_or(1, char::len_utf8),
        }
    }
    out
}

/// The longest placeholder name [`foreign_placeholders`] looks for.
const MAX_NAME: usize = 64;

/// The first `n` bytes of `s`, or fewer to end on a character boundary.
fn prefix(s: &str, n: usize) -> &str {
    let mut end = n.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Whether `[inner]` names a contact field: a column, or a usual merge
/// field name. Other bracketed words (`[PDF]`, `[endif]`) are left alone.
fn is_name_field(inner: &str, columns: &[String]) -> bool {
    let norm = |s: &str| {
        s.chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase()
    };
    let n = norm(inner);
    if n.is_empty() || inner.contains(char::is_whitespace) {
        return false;
    }
    const FIELDS: &[&str] = &[
        "firstname",
        "lastname",
        "fullname",
        "fname",
        "lname",
        "email",
        "emailaddress",
        "salutation",
        "company",
        "organisation",
        "organization",
    ];
    FIELDS.contains(&n.as_str()) || columns.iter().any(|c| norm(c) == n)
}

/// `text` with every `{{…}}` (and `{{{…}}}`) replaced by spaces, line
/// breaks kept, so offsets and lines stay where they were.
fn blank_handlebars(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        let end = match after.find("}}") {
            Some(e) => {
                let mut e = e + 2;
                while after[e..].starts_with('}') {
                    e += 1;
                }
                e
            }
            None => after.len(),
        };
        for c in after[..end].chars() {
            if c == '\n' {
                out.push('\n');
            } else {
                // As many spaces as bytes, so that offsets stay put.
                out.extend(std::iter::repeat_n(' ', c.len_utf8()));
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Link texts that say nothing about where they lead.
const VAGUE: &[&str] = &[
    "click here",
    "click",
    "here",
    "more",
    "read more",
    "link",
    "this",
    "this link",
    "click this link",
];

/// Links in the MJML `body` whose text says nothing (`click here`,
/// `more`), in `<a>` inside the HTML and in `mj-button`; and text that
/// tells the reader to click where there is no link. Lines counted in
/// `body`.
pub(crate) fn link_texts(body: &str) -> Vec<Finding> {
    let lines = LineIndex::new(body);
    let mut out = Vec::new();
    for (open, close) in [("<a", "</a>"), ("<mj-button", "</mj-button>")] {
        let mut from = 0;
        while let Some(k) = body[from..].find(open) {
            let start = from + k;
            from = start + open.len();
            let next = body[from..].chars().next();
            if !next.is_some_and(|c| c.is_whitespace() || c == '>') {
                continue;
            }
            let Some(gt) = body[from..].find('>') else {
                break;
            };
            let content_start = from + gt + 1;
            // No closing tag after this one means none after any later one.
            let Some(end) = body[content_start..].find(close) else {
                break;
            };
            let text = visible_text(&body[content_start..content_start + end]);
            let said = text
                .trim_matches(|c: char| c.is_whitespace() || c.is_ascii_punctuation() || c == '…')
                .to_lowercase();
            if VAGUE.contains(&said.as_str()) {
                out.push(Finding {
                    line: lines.line(start),
                    message: format!(
                        "the link text `{}` says nothing about where it leads (screen readers \
                         list links by their text, and readers skim them): name the destination, \
                         such as `Read the annual report`",
                        text.trim()
                    ),
                });
            }
        }
    }
    out.extend(click_without_link(body, &lines));
    out.sort_by_key(|f| f.line);
    out
}

/// "Click here" written outside any link: the reader is told to click
/// something that is not there.
fn click_without_link(body: &str, lines: &LineIndex) -> Vec<Finding> {
    // ASCII lowercasing keeps byte offsets.
    let lower = body.to_ascii_lowercase();
    let mut links = Vec::new();
    for (open, close) in [("<a", "</a>"), ("<mj-button", "</mj-button>")] {
        let mut from = 0;
        while let Some(k) = lower[from..].find(open) {
            let start = from + k;
            let after = lower[start + open.len()..].chars().next();
            if !after.is_some_and(|c| c.is_whitespace() || c == '>') {
                // `<abbr>`, `<mj-button-x>`: not a link.
                from = start + open.len();
                continue;
            }
            let Some(e) = lower[start..].find(close) else {
                links.push(start..lower.len());
                break;
            };
            let end = start + e + close.len();
            links.push(start..end);
            from = end;
        }
    }
    links.sort_by_key(|l| l.start);
    let in_link = |at: usize| {
        // Links do not overlap (`<a>` inside an `mj-button` lies within it):
        // the one that starts last before `at` is the only candidate, or
        // the one before it when it is nested.
        let k = links.partition_point(|l| l.start <= at);
        links[..k].iter().rev().take(2).any(|l| l.contains(&at))
    };
    lower
        .match_indices("click here")
        .filter(|(at, _)| !in_link(*at))
        .map(|(at, _)| Finding {
            line: lines.line(at),
            message: format!(
                "`{}` tells the reader to click, but it is not a link: make it a link whose \
                 text names the destination, or reword it",
                &body[at..at + "click here".len()]
            ),
        })
        .collect()
}

/// The text of an HTML fragment: tags dropped, whitespace collapsed.
fn visible_text(html: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                text.push(' ');
            }
            _ if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.replace("&nbsp;", " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_tags_attributes_and_lines_but_not_html_content() {
        let mjml = "<mjml>\n<mj-body>\n<!-- <mj-nope> -->\n<mj-text font-size=\"12px\"\n  color='red'>\n<p a=\"1\">x > y <mj-fake></p>\n</mj-text>\n<mj-image src=\"a.png\" />\n</mj-body></mjml>";
        let tags = scan(mjml);
        let names: Vec<_> = tags.iter().map(|t| (t.name, t.line)).collect();
        assert_eq!(
            names,
            [("mjml", 1), ("mj-body", 2), ("mj-text", 4), ("mj-image", 8)]
        );
        assert_eq!(
            tags[2].attrs,
            [
                Attr {
                    name: "font-size",
                    value: "12px",
                    line: 4
                },
                Attr {
                    name: "color",
                    value: "red",
                    line: 5
                }
            ]
        );
    }

    #[test]
    fn a_duplicate_attribute_names_both_values_and_lines() {
        let mjml = "<mjml><mj-body><mj-section><mj-column>\n<mj-text font-size=\"12px\" color=\"#000\"\n font-size=\"14px\">x</mj-text>\n</mj-column></mj-section></mj-body></mjml>";
        let f = validate(mjml, 1);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].line, 3);
        assert_eq!(
            f[0].message,
            "`font-size` is set twice on `<mj-text>` (`12px` on line 2, `14px` here); MJML uses \
             the first and mrml the last, so remove one"
        );
        let tags = scan(mjml);
        assert_eq!(duplicates(&tags[4]).len(), 1);
    }

    #[test]
    fn html_where_mjml_expects_its_own_tags_is_reported_once_per_element() {
        let mjml = "<mjml><mj-body><mj-section><mj-column>\n<div class=\"a\"><div><b>x</b></div>\n<p>y</p></div>\n<br/>\n<mj-text><p>fine</p></mj-text>\n</mj-column></mj-section></mj-body></mjml>";
        let f = validate(mjml, 10);
        let got: Vec<_> = f
            .iter()
            .map(|f| (f.line, f.message.split(':').next().unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                (11, "`<div>` is HTML where MJML expects its own tags"),
                (13, "`<br>` is HTML where MJML expects its own tags")
            ]
        );
    }

    #[test]
    fn unknown_tags_and_attributes_get_a_suggestion() {
        let mjml = "<mjml><mj-body>\n<mj-secton>\n<mj-column>\n<mj-image scr=\"a.png\" css-class=\"x\" mj-class=\"y\" />\n</mj-column></mj-secton></mj-body></mjml>";
        let f = validate(mjml, 1);
        let got: Vec<_> = f.iter().map(|f| (f.line, f.message.as_str())).collect();
        assert_eq!(
            got,
            [
                (2, "`<mj-secton>` is not an MJML tag (did you mean `<mj-section>`?); MJML skips it with everything inside, so fix its name or remove it"),
                (4, "`<mj-image>` has no attribute `scr` (did you mean `src`?); MJML ignores it"),
            ]
        );
    }

    #[test]
    fn invalid_units_colours_and_keywords() {
        assert!(invalid_value("font-size", "14px").is_none());
        assert!(invalid_value("font-size", "14").is_some());
        assert!(invalid_value("padding", "0 25px").is_none());
        assert!(invalid_value("padding", "10px 25px 0 5%").is_none());
        assert!(invalid_value("padding", "1px 2px 3px 4px 5px").is_some());
        assert!(invalid_value("padding", "10 px").is_some());
        assert!(invalid_value("width", "600px").is_none());
        assert!(invalid_value("width", "600").is_some());
        assert!(invalid_value("height", "auto").is_none());
        assert!(invalid_value("color", "#1f2a36").is_none());
        assert!(invalid_value("color", "1f2a36").is_some());
        assert!(invalid_value("background-color", "#12345").is_some());
        assert!(invalid_value("color", "white").is_none());
        assert!(invalid_value("color", "rgba(0,0,0,0.5)").is_none());
        assert!(invalid_value("color", "{{brand}}").is_none());
        assert!(invalid_value("align", "centre").is_some());
        assert!(invalid_value("line-height", "1.55").is_none());
        assert!(invalid_value("href", "anything").is_none());
    }

    #[test]
    fn mj_attributes_take_defaults_for_any_tag_but_still_no_duplicates() {
        let mjml = "<mjml><mj-head><mj-attributes>\n<mj-all font-family=\"x\" />\n<mj-class name=\"big\" font-size=\"20px\" />\n<mj-text color=\"#000\" color=\"#111\" />\n</mj-attributes></mj-head><mj-body /></mjml>";
        let f = validate(mjml, 1);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].line, 4);
    }

    #[test]
    fn the_example_template_is_clean() {
        let t = include_str!("../../templates/weremember.mjml");
        let body = &t[t.find("<mjml").unwrap()..];
        assert_eq!(validate(body, 1), []);
        assert_eq!(foreign_placeholders(t, &[]), []);
        assert_eq!(link_texts(body), []);
    }

    #[test]
    fn foreign_placeholders_with_lines() {
        let text = "Subject: Hi *|FNAME|*\n\n<p>Dear {first_name} {{last}},</p>\n<p>%%Company%% and [FirstName] and ${city}</p>\n<style>a { color: red }</style><!--[if mso]><![endif]--> {{{raw}}} [PDF] [1]";
        let f = foreign_placeholders(text, &["city".into()]);
        let got: Vec<_> = f.iter().map(|f| f.line).collect();
        assert_eq!(got, [1, 3, 4, 4, 4], "{f:#?}");
        assert!(f[0].message.starts_with(
            "`*|FNAME|*` looks like a placeholder in Mailchimp's syntax; Handlebars leaves it"
        ));
        assert!(f[0]
            .message
            .ends_with("write `{{FNAME}}` for a column named `FNAME`"));
        assert!(f[1].message.starts_with("`{first_name}` looks like"));
        assert!(f[4].message.contains("`{{city}}`"), "{}", f[4].message);
        let more = foreign_placeholders("Hi [[FIRSTNAME]] and [firstname,fallback=friend]!", &[]);
        let written: Vec<_> = more
            .iter()
            .map(|f| f.message.split('`').nth(1).unwrap())
            .collect();
        assert_eq!(written, ["[[FIRSTNAME]]", "[firstname,fallback=friend]"]);
        // A CSV column in brackets is one too.
        assert_eq!(
            foreign_placeholders("[community]", &["community".into()]).len(),
            1
        );
        assert_eq!(foreign_placeholders("[community]", &[]).len(), 0);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 2_000,
            failure_persistence: None,
            ..Default::default()
        })]

        /// Any text, and text made of the pieces the scanners look for,
        /// never panics (every slice is on a character boundary).
        #[test]
        fn no_text_makes_a_scanner_panic(
            text in proptest::prop_oneof![
                proptest::prelude::any::<String>(),
                "(<mj-[a-z]{0,6}|<a|</a>|</mj-text>|<mj-text|<!--|-->|[ =\"'>/{}\\[\\]*|%$]|click here|\\{\\{|\\}\\}|é|\n){0,60}",
            ]
        ) {
            let _ = validate(&text, 1);
            let _ = foreign_placeholders(&text, &["name".into()]);
            let _ = link_texts(&text);
        }
    }

    #[test]
    fn long_texts_without_closing_delimiters_stay_fast() {
        for piece in [
            "[",
            "{",
            "*|",
            "%%",
            "<a href=\"x\">",
            "<mj-text>",
            "click here ",
        ] {
            let text = piece.repeat(200_000 / piece.len());
            let t = std::time::Instant::now();
            let _ = validate(&text, 1);
            let _ = foreign_placeholders(&text, &[]);
            let _ = link_texts(&text);
            assert!(
                t.elapsed() < std::time::Duration::from_secs(5),
                "{piece}: {:?}",
                t.elapsed()
            );
        }
    }

    #[test]
    fn vague_link_texts_with_lines() {
        let body = "<mj-text>\n<p>Read <a href=\"x\">the report</a>.</p>\n<p><a href=\"y\" style=\"c\"><b>Click here</b></a> or <a href=\"z\">more…</a></p>\n</mj-text>\n<mj-button href=\"w\">\n  Read more\n</mj-button><abbr>x</abbr>";
        let f = link_texts(body);
        let got: Vec<_> = f.iter().map(|f| f.line).collect();
        assert_eq!(got, [3, 3, 5], "{f:#?}");
        assert!(
            f[0].message
                .starts_with("the link text `Click here` says nothing"),
            "{f:#?}"
        );
        assert!(f[2].message.starts_with("the link text `Read more` says"));
        let plain = "<mj-text>\n<p><abbr>x</abbr>Click here on January 25.</a></p>\n</mj-text>";
        let f = link_texts(plain);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].line, 2);
        assert!(f[0]
            .message
            .starts_with("`Click here` tells the reader to click, but it is not a link"));
    }
}
