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
    let kept =
        "<mj-image alt='{{name \"x\"}}' /><!-- a=\"\n\" --><mj-style>a { b: \"\\\" }</mj-style>";
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
    let apart = "<!--[if mso | IE]><tr><![endif]--><div></div><!--[if mso | IE]></tr><![endif]-->";
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
    let body = column(r#"<mj-image src="a.png" alt="" href="https://x.example" title="Photo" />"#);
    assert!(mrml(&body).contains(r#"<a href="https://x.example" target="_blank">"#));
    // MJML: <a href="https://x.example" target="_blank" title="Photo">
    assert!(ours(&body).contains(r#"<a href="https://x.example" target="_blank" title="Photo">"#));
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
    let three = "<mj-section padding=\"0px 10px\"><mj-column></mj-column><mj-column></mj-column>\
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
