//! Bidi isolation of merged values (issue 11): a Hebrew name merged into an
//! English sentence keeps the comma and the year after it, in the HTML
//! (checked where Chromium lays the characters out) and in the text part.

use std::path::Path;

use crate::browser::Browser;
use crate::common::*;

const TEMPLATE: &str = "From: Sender <sender@example.org>\nTo: {{last_name}} <{{email}}>\nSubject: Dear {{last_name}}\n\n<mjml>\n  <mj-body>\n    <mj-section><mj-column>\n      <mj-text><a href=\"https://example.org/?n={{last_name}}\">Dear {{last_name}}, 2021 was a hard year.</a></mj-text>\n    </mj-column></mj-section>\n  </mj-body>\n</mjml>\n";

fn render_one(dir: &Path, name: &str) -> (String, String) {
    let t = write(dir, "t.mjml", TEMPLATE);
    let csv = write(
        dir,
        "r.csv",
        format!("email,last_name\nyaakov@example.org,{name}\n"),
    );
    let out = dir.join("out");
    run(
        &[
            "render",
            t.to_str().unwrap(),
            csv.to_str().unwrap(),
            "--deterministic",
            "--format",
            "html,txt",
            "--out",
            out.to_str().unwrap(),
        ],
        None,
    )
    .expect_code(0);
    let html = out.join("0001-yaakov_example.org.html");
    (
        std::fs::read_to_string(&html).unwrap(),
        std::fs::read_to_string(out.join("0001-yaakov_example.org.txt")).unwrap(),
    )
}

#[test]
fn a_hebrew_name_is_isolated_in_both_parts_and_not_in_attributes() {
    let dir = tempfile::tempdir().unwrap();
    let (html, text) = render_one(dir.path(), "כהן");
    assert!(html.contains("Dear <bdi>כהן</bdi>, 2021 was"), "{html}");
    assert!(
        html.contains("href=\"https://example.org/?n=כהן\""),
        "{html}"
    );
    assert!(
        text.contains("Dear \u{2068}כהן\u{2069}, 2021 was"),
        "{text:?}"
    );
    // A Latin name in an English letter needs no marks in the text.
    let other = tempfile::tempdir().unwrap();
    let (html, text) = render_one(other.path(), "Breuer");
    assert!(html.contains("Dear <bdi>Breuer</bdi>, 2021 was"), "{html}");
    assert!(text.contains("Dear Breuer, 2021 was"), "{text:?}");
}

/// The left edge, in CSS pixels, of the first occurrence of each needle in
/// the page's text, as Chromium lays it out.
const LEFT_OF: &str = "(needles => needles.map(n => {
  const w = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let t = w.nextNode(); t; t = w.nextNode()) {
    const i = t.data.indexOf(n);
    if (i >= 0) {
      const r = document.createRange();
      r.setStart(t, i); r.setEnd(t, i + n.length);
      const b = r.getBoundingClientRect();
      return [b.left, b.top];
    }
  }
  return null;
}))";

#[test]
fn chromium_shows_the_comma_and_the_year_after_a_hebrew_name() {
    let dir = tempfile::tempdir().unwrap();
    render_one(dir.path(), "כהן");
    let page = dir.path().join("out/0001-yaakov_example.org.html");
    let mut b = Browser::start(800, 600);
    b.open(&format!("file://{}", page.display()));
    let at = b.eval(&format!(
        "{LEFT_OF}(['Dear', 'כהן', ', 2021', '2021', 'was'])"
    ));
    let x = |i: usize| at[i][0].as_f64().unwrap_or_else(|| panic!("{at}"));
    let y = |i: usize| at[i][1].as_f64().unwrap();
    assert!((0..5).all(|i| (y(i) - y(0)).abs() < 1.0), "one line: {at}");
    // Unisolated, Chromium draws "Dear 2021 ,כהן was": the year left of
    // the name.
    assert!(
        x(0) < x(1) && x(1) < x(2) && x(2) < x(3) && x(3) < x(4),
        "Dear, name, comma, year, was from left to right: {at}"
    );
}
