//! The corrections made to the HTML mrml writes.

use super::*;

/// mrml drops an `mj-button`'s `title` and an `mj-table`'s `role`; MJML
/// writes them on the link and the table. mrml writes one link (or `<p>`,
/// without `href`) with `mso-padding-alt` per button and one table with
/// `table-layout` per `mj-table`; when the counts differ (the same style in
/// raw HTML), nothing is added.
pub(super) fn titles_and_roles(html: String, carried: &Carried) -> String {
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

pub(super) fn add_in_order(
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
pub(super) fn button_width_minus_borders(html: String) -> String {
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

/// MJML's carousel hides its radio buttons and shows its arrows and
/// thumbnails inside `@media screen yahoo`, a query no browser matches
/// (only Yahoo's webmail rewrites it); mrml writes `@media screen, yahoo`,
/// which every browser matches, and the arrows disappear.
pub(super) fn carousel_media_query(html: String) -> String {
    if html.contains("@media screen, yahoo {") && html.contains("mj-carousel") {
        html.replace("@media screen, yahoo {", "@media screen yahoo {")
    } else {
        html
    }
}

/// mrml writes an `mj-button`'s `vertical-align` as an attribute of the
/// cell around it (`<td … vertical-align="middle">`), which MJML does not.
pub(super) fn button_vertical_align(html: String) -> String {
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
pub(super) fn fonts_in_mjml_order(html: String) -> String {
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
pub(super) fn column_widths_as_mjml(html: String) -> String {
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
pub(super) fn column_queries_in_order(html: String) -> String {
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
pub(super) fn outlook_column_widths_as_mjml(html: String) -> String {
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
pub(super) fn group_column_widths_as_mjml(html: String) -> String {
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
pub(super) fn hero_fluid_padding_percent(html: String) -> String {
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
pub(super) fn image_link_title(html: String) -> String {
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
pub(super) fn table_width_without_unit(html: String) -> String {
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
pub(super) fn gutter_border_collapse(html: String) -> String {
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
pub(super) fn truncate_image_and_divider_widths(html: String) -> String {
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
pub(super) fn truncate_widths_in(tag: &str) -> String {
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
