//! Where mrml 6.0.1 renders MJML differently from the official MJML 4, and
//! the corrections letterpress makes around it: [`prepare`] rewrites the
//! MJML before mrml reads it, [`correct`] rewrites the HTML in one pass
//! after. Each correction is a small function of its own, with a test that
//! shows what mrml writes, what MJML writes and what the correction makes
//! of it, so that each can be dropped when mrml fixes it (the README lists
//! them). Nothing here reads files; `tests/fidelity.rs` compares the result
//! with the official MJML in a browser.

use std::borrow::Cow;

mod comments;
mod html;
mod html_attributes;
mod mjml;
mod tags;
#[cfg(test)]
mod tests;

use comments::*;
use html::*;
use html_attributes::*;
use mjml::*;
use tags::*;

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
/// not counted (so none are put back when it holds any: `add_in_order`
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
