//! The preview gallery: `render` writes `index.html` and `manifest.js`
//! (unless `--format` leaves them out), and headless Chromium opens the page
//! from `file://`, lists every recipient, filters, selects, and shows the
//! letter at phone and desktop width.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::browser::{png_colours, Browser};
use crate::common::*;

fn render_gallery(dir: &Path, template: &Path, csv: &Path, extra: &[&str]) -> PathBuf {
    let out = dir.join("out");
    let mut args = vec![
        "render".to_string(),
        template.display().to_string(),
        csv.display().to_string(),
        "--deterministic".into(),
        "--out".into(),
        out.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    run(&args, None).expect_code(0);
    out
}

/// The letters of the data file, as the page sees them.
fn gallery_data(out: &Path) -> serde_json::Value {
    let js = std::fs::read_to_string(out.join("manifest.js")).unwrap();
    let json = js
        .split_once("window.LETTERPRESS = ")
        .expect("defines window.LETTERPRESS")
        .1
        .trim_end()
        .trim_end_matches(';');
    serde_json::from_str(json).unwrap()
}

#[test]
fn render_writes_the_gallery_and_format_can_leave_it_out() {
    let dir = tempfile::tempdir().unwrap();
    let out = render_gallery(dir.path(), &example_template(), &example_csv(), &[]);
    let page = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(page.contains("<script src=\"manifest.js\"></script>"));
    assert!(!page.contains("https://") && !page.contains("http://"));
    let data = gallery_data(&out);
    let letters = data["letters"].as_array().unwrap();
    assert_eq!(letters.len(), 12);
    assert_eq!(letters[1]["name"], "Zofia Wiśniewska");
    assert_eq!(
        letters[1]["files"]["html"],
        "0002-zofia.wisniewska_example.org.html"
    );
    let headers = letters[1]["headers"].as_array().unwrap();
    assert!(headers.contains(&json!(["Date", "Thu, 01 Jan 1970 00:00:00 +0000"])));
    assert!(headers.contains(&json!([
        "To",
        "Zofia Wiśniewska <zofia.wisniewska@example.org>"
    ])));

    let other = tempfile::tempdir().unwrap();
    let out = render_gallery(
        other.path(),
        &example_template(),
        &example_csv(),
        &["--format", "eml,html,txt"],
    );
    assert!(!out.join("index.html").exists() && !out.join("manifest.js").exists());
    assert!(out.join("manifest.json").exists());
}

#[test]
fn rejected_rows_and_duplicates_are_listed_in_the_gallery_in_row_order() {
    let dir = tempfile::tempdir().unwrap();
    let t = write(dir.path(), "t.mjml", SMALL_TEMPLATE);
    let csv = write(
        dir.path(),
        "r.csv",
        "email,name\nann@example.org,Ann\nnot-an-address,Bob\ncy@example.org,Cy\nAnn@Example.org,Ann\n",
    );
    let out = dir.path().join("out");
    let r = run(
        &[
            "render",
            t.to_str().unwrap(),
            csv.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        None,
    );
    r.expect_code(3);
    // The summary and manifest.json count and list the duplicate too.
    assert!(
        r.stdout.contains("1 rows rejected, 1 warnings"),
        "{}",
        r.stdout
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(
        manifest["letters"][2]["warnings"],
        serde_json::json!([
            "`Ann@Example.org` is a duplicate of row 1 (line 2); it will be sent once"
        ])
    );
    let data = gallery_data(&out);
    let rows: Vec<_> = data["letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["row"].as_u64().unwrap(), l.get("rejected").is_some()))
        .collect();
    assert_eq!(rows, [(1, false), (2, true), (3, false), (4, false)]);
    // A template of no known language (no variants, no `<mjml lang>`):
    // no letter names one, and none carries its text.
    for l in data["letters"].as_array().unwrap() {
        assert!(l.get("lang").is_none() && l.get("text").is_none(), "{l}");
    }
    assert!(manifest["letters"][0].get("lang").is_none());
    // The warning `check` gives a duplicate address is beside the letter.
    assert_eq!(
        data["letters"][3]["warnings"][0],
        "`Ann@Example.org` is a duplicate of row 1 (line 2); it will be sent once"
    );
}

/// Clicks the middle of the first element matching `selector` with the
/// mouse, as a person would.
fn click(b: &mut Browser, selector: &str) {
    let (x, y, w, h) = b.rect(selector);
    let (x, y) = (x + w / 2.0, y + h / 2.0);
    for kind in ["mousePressed", "mouseReleased"] {
        b.call(
            "Input.dispatchMouseEvent",
            json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}),
        );
    }
}

#[test]
fn chromium_lists_filters_selects_and_shows_the_letter_at_375_and_600_px() {
    let dir = tempfile::tempdir().unwrap();
    let out = render_gallery(dir.path(), &example_template(), &example_csv(), &[]);
    let addresses: Vec<serde_json::Value> = gallery_data(&out)["letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["to"].clone())
        .collect();

    let mut b = Browser::start(1400, 1000);
    b.open(&format!("file://{}/index.html", out.display()));

    // Every recipient is listed (12 rows fit, so the virtual list draws all).
    b.wait_for("document.querySelectorAll('#rows .row').length > 0", "rows");
    let listed =
        b.eval("[...document.querySelectorAll('#rows .row .addr')].map(e => e.textContent)");
    assert_eq!(listed, json!(addresses));
    assert_eq!(
        b.eval("document.getElementById('count').textContent"),
        "12 letters"
    );

    // Typing in the filter narrows the list.
    b.eval("document.getElementById('filter').focus()");
    b.call("Input.insertText", json!({"text": "cohen"}));
    b.wait_for(
        "document.querySelectorAll('#rows .row').length === 1",
        "the filter",
    );
    assert_eq!(
        b.eval("document.querySelector('#rows .row .addr').textContent"),
        "yaakov.cohen@example.org"
    );
    assert_eq!(
        b.eval("document.getElementById('count').textContent"),
        "1 of 12 letters"
    );

    // Selecting the row shows that letter: headers, HTML and text parts.
    click(&mut b, "#rows .row");
    b.wait_for(
        "document.getElementById('html').dataset.loaded === '0004-yaakov.cohen_example.org.html' \
         && document.getElementById('text').dataset.loaded === '0004-yaakov.cohen_example.org.txt'",
        "the selected letter's parts",
    );
    let headers = b.eval("document.getElementById('headers').innerText");
    let headers = headers.as_str().unwrap();
    assert!(
        headers.contains("יעקב כהן <yaakov.cohen@example.org>"),
        "{headers}"
    );
    // Yaakov's `lang` is `he`: he gets the Hebrew variant.
    assert!(
        headers.contains("הצטרפו לקמפיין \u{200e}#WeRemember שלנו"),
        "{headers}"
    );
    assert!(b.eval("location.hash").as_str().unwrap().contains("row=4"));
    let text = b.frame_text("0004-yaakov.cohen_example.org.txt");
    // In the Hebrew letter the Hebrew title and name need no isolate
    // (bidi.rs); the HTML still holds them in one <bdi>.
    assert!(text.contains("שלום הרב כהן,"), "{text}");
    assert!(!text.contains('\u{2068}'), "{text}");
    let html = b.frame_text("0004-yaakov.cohen_example.org.html");
    assert!(html.contains("שלום הרב כהן,"), "{html}");

    // The letter at phone and desktop width, each screenshot non-blank.
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    for (button, width) in [("w-phone", 375.0), ("w-desktop", 600.0)] {
        click(&mut b, &format!("#{button}"));
        b.wait_for(
            &format!(
                "document.getElementById('html').getBoundingClientRect().width === {width} + 15"
            ),
            "the width switch",
        );
        // The HTML part's viewport (the frame less its scrollbar).
        let (x, y, _, h) = b.rect("#html");
        let h = h.min(1000.0 - y); // what is on screen of it
        let png = b.screenshot(Some((x, y, width, h)));
        std::fs::write(shots.join(format!("gallery-letter-{width}.png")), &png).unwrap();
        let (w, _, colours) = png_colours(&png);
        assert_eq!(w as f64, width);
        assert!(
            colours > 50,
            "the letter at {width} px looks blank: {colours} colours"
        );
    }

    // The gallery itself on a phone: list above the letter, still readable.
    b.set_size(375, 800);
    let png = b.screenshot(None);
    std::fs::write(shots.join("gallery-page-375.png"), &png).unwrap();
    let (w, _, colours) = png_colours(&png);
    assert_eq!(w, 375);
    assert!(
        colours > 50,
        "the page at 375 px looks blank: {colours} colours"
    );

    // Clearing the filter brings every letter back; the selection stays.
    b.eval("(() => { const f = document.getElementById('filter'); f.value = ''; f.dispatchEvent(new Event('input')); })()");
    b.wait_for(
        "document.getElementById('count').textContent === '12 letters'",
        "all letters",
    );
    assert_eq!(
        b.eval("document.querySelector('#rows .row.sel .addr').textContent"),
        "yaakov.cohen@example.org"
    );
}

/// A list of `n` contacts made from the example's rows.
pub fn big_csv(dir: &Path, n: usize) -> PathBuf {
    let example = std::fs::read_to_string(example_csv()).unwrap();
    let mut lines = example.lines();
    let mut csv = String::from(lines.next().unwrap());
    csv.push('\n');
    let rows: Vec<&str> = lines.collect();
    for i in 0..n {
        let row = rows[i % rows.len()];
        let (email, rest) = row.split_once(',').unwrap();
        let (user, domain) = email.split_once('@').unwrap();
        csv.push_str(&format!("{user}+{i}@{domain},{rest}\n"));
    }
    write(dir, "big.csv", csv)
}

/// The closing note's figures: the size of the gallery and how long Chromium
/// takes to open it with 10,000 recipients. Slow (it renders 10,000
/// letters), so run by hand: `cargo test gallery_10k -- --ignored --nocapture`.
#[test]
#[ignore]
fn gallery_10k_opens_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let csv = big_csv(dir.path(), 10_000);
    let started = std::time::Instant::now();
    let out = render_gallery(
        dir.path(),
        &example_template(),
        &csv,
        &["--format", "index,html,txt", "--quiet"],
    );
    eprintln!(
        "rendered 10,000 letters in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let page = std::fs::metadata(out.join("index.html")).unwrap().len();
    let data = std::fs::metadata(out.join("manifest.js")).unwrap().len();
    eprintln!("index.html: {page} bytes; manifest.js: {data} bytes");

    let mut b = Browser::start(1400, 1000);
    for round in 0..3 {
        let t = std::time::Instant::now();
        b.open(&format!("file://{}/index.html?{round}", out.display()));
        let load = t.elapsed();
        b.wait_for(
            "document.getElementById('count').textContent === '10000 letters'",
            "the list",
        );
        let listed = t.elapsed();
        let rows = b.eval("document.querySelectorAll('#rows .row').length");
        // In the page's own clock: the data script parsed and the list
        // drawn (DOMContentLoaded), then the first letter's frames loaded.
        let timing = b.eval(
            "(() => { const n = performance.getEntriesByType('navigation')[0]; \
             return [Math.round(n.domContentLoadedEventEnd), Math.round(n.loadEventEnd), \
             Math.round(performance.memory ? performance.memory.usedJSHeapSize / 1e6 : 0)]; })()",
        );
        eprintln!("round {round}: DOMContentLoaded, load (ms), JS heap (MB): {timing}");
        let filter = b.eval(
            "(() => { const t = performance.now(); const f = document.getElementById('filter'); \
             f.value = 'cohen'; f.dispatchEvent(new Event('input')); return [performance.now() - t, \
             document.getElementById('count').textContent]; })()",
        );
        let scroll = b.eval(
            "(() => { const t = performance.now(); const l = document.getElementById('list'); \
             const f = document.getElementById('filter'); f.value = ''; f.dispatchEvent(new Event('input')); \
             l.scrollTop = l.scrollHeight; l.dispatchEvent(new Event('scroll')); \
             return new Promise(r => requestAnimationFrame(() => r([performance.now() - t, \
             document.querySelector('#rows .row:last-child .n').textContent]))); })()",
        );
        eprintln!(
            "round {round}: load event {:.0} ms, list shown {:.0} ms, {rows} rows in the DOM; \
             filter `cohen` {filter}; clear + scroll to the end {scroll}",
            load.as_secs_f64() * 1000.0,
            listed.as_secs_f64() * 1000.0,
        );
        assert!(rows.as_u64().unwrap() < 60);
    }
}

#[test]
fn a_malformed_escape_in_the_address_still_lists_the_letters() {
    let dir = tempfile::tempdir().unwrap();
    let out = render_gallery(dir.path(), &example_template(), &example_csv(), &[]);
    let mut b = Browser::start(1000, 800);
    b.open(&format!("file://{}/index.html#q=%E0%A4%A", out.display()));
    // The raw text is the filter: no letter matches it, but the page runs.
    b.wait_for(
        "document.getElementById('count').textContent === '0 of 12 letters'",
        "the count with the raw filter text",
    );
    assert_eq!(
        b.eval("document.getElementById('filter').value"),
        "%E0%A4%A"
    );
}

/// A 20 x 10 PNG, one colour.
fn png_image() -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, 20, 10);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header().unwrap();
    w.write_image_data(&[200u8, 30, 30].repeat(200)).unwrap();
    drop(w);
    out
}

#[test]
fn chromium_shows_inline_images_and_lists_attachments() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("img")).unwrap();
    write(dir.path(), "img/logo.png", png_image());
    write(dir.path(), "flyer.pdf", b"%PDF-1.4 not much of a flyer");
    let t = write(
        dir.path(),
        "t.mjml",
        "From: S <s@example.org>\nSubject: Hi\nAttachment: flyer.pdf\n\n<mjml><mj-body>\
         <mj-section><mj-column><mj-image src=\"img/logo.png\" width=\"20px\" />\
         <mj-text>Hi {{name}}</mj-text></mj-column></mj-section></mj-body></mjml>\n",
    );
    let csv = write(dir.path(), "r.csv", "email,name\nann@example.org,Ann\n");
    let out = render_gallery(dir.path(), &t, &csv, &[]);

    let mut b = Browser::start(1400, 1000);
    b.open(&format!("file://{}/index.html", out.display()));
    b.wait_for("document.querySelectorAll('#rows .row').length > 0", "rows");
    click(&mut b, "#rows .row");
    b.wait_for(
        "document.getElementById('html').dataset.loaded === '0001-ann_example.org.html'",
        "the letter",
    );
    // The image is shown from its copy beside the letter (decoded: it has
    // its 20 px of width), not as a broken cid: reference.
    let widths = b.frame_eval(
        "0001-ann_example.org.html",
        "[...document.images].map(i => i.naturalWidth)",
    );
    assert_eq!(widths, json!([20]));
    let listed = b.eval("document.getElementById('attachments').innerText");
    let listed = listed.as_str().unwrap();
    assert!(listed.contains("logo.png image/png"), "{listed}");
    assert!(
        listed.contains("flyer.pdf application/pdf, 28 B"),
        "{listed}"
    );
    let links =
        b.eval("[...document.querySelectorAll('#attachments a')].map(a => a.getAttribute('href'))");
    for href in links.as_array().unwrap() {
        assert!(out.join(href.as_str().unwrap()).is_file(), "{href}");
    }
}

/// The rows the list shows now, by number.
fn listed_rows(b: &mut Browser) -> serde_json::Value {
    b.eval("[...document.querySelectorAll('#rows .row .n')].map(e => +e.textContent)")
}

/// Chooses `value` in the language menu, as a person would with the mouse.
fn choose_lang(b: &mut Browser, value: &str) {
    b.eval(&format!(
        "(() => {{ const s = document.getElementById('lang'); s.value = {}; \
         s.dispatchEvent(new Event('change')); }})()",
        json!(value)
    ));
}

#[test]
fn chromium_shows_each_letters_language_and_filters_by_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = render_gallery(dir.path(), &example_template(), &example_csv(), &[]);
    // manifest.json names each letter's language too.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let langs: Vec<&str> = manifest["letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["lang"].as_str().unwrap())
        .collect();
    assert_eq!(
        langs,
        ["en", "en", "en", "he", "he", "en", "en", "fr", "fr", "en", "en", "he"]
    );

    let mut b = Browser::start(1400, 1000);
    b.open(&format!("file://{}/index.html", out.display()));
    b.wait_for(
        "document.querySelectorAll('#rows .row').length === 12",
        "rows",
    );
    // A badge per letter; the default letter is English (`<mjml lang="en">`).
    assert_eq!(
        b.eval("[...document.querySelectorAll('#rows .row .lang')].map(e => e.textContent)"),
        json!(langs)
    );
    // The menu lists the languages present, with their counts.
    assert_eq!(
        b.eval("[...document.querySelectorAll('#lang option')].map(o => o.textContent)"),
        json!(["all languages", "en (7)", "fr (2)", "he (3)"])
    );
    assert_eq!(
        b.eval("document.getElementById('lang').hidden"),
        json!(false)
    );

    choose_lang(&mut b, "he");
    b.wait_for(
        "document.getElementById('count').textContent === '3 of 12 letters'",
        "the Hebrew letters",
    );
    assert_eq!(listed_rows(&mut b), json!([4, 5, 12]));
    assert!(b
        .eval("location.hash")
        .as_str()
        .unwrap()
        .contains("lang=he"));
    choose_lang(&mut b, "fr");
    b.wait_for(
        "document.getElementById('count').textContent === '2 of 12 letters'",
        "the French letters",
    );
    assert_eq!(listed_rows(&mut b), json!([8, 9]));
    // Combined with the text filter: French and Lefèvre.
    b.eval("document.getElementById('filter').focus()");
    b.call("Input.insertText", json!({"text": "lefevre"}));
    b.wait_for(
        "document.getElementById('count').textContent === '1 of 12 letters'",
        "French and the name",
    );
    assert_eq!(listed_rows(&mut b), json!([8]));

    // The state survives a reload, as the other filters' does.
    let hash = b.eval("location.hash");
    let hash = hash.as_str().unwrap();
    assert!(
        hash.contains("lang=fr") && hash.contains("q=lefevre"),
        "{hash}"
    );
    b.open(&format!("file://{}/index.html?again{hash}", out.display()));
    b.wait_for(
        "document.getElementById('count').textContent === '1 of 12 letters'",
        "the filters after the reload",
    );
    assert_eq!(b.eval("document.getElementById('lang').value"), "fr");

    // `lang:he` in the text filter does what the menu does.
    b.open(&format!("file://{}/index.html#q=lang%3Ahe", out.display()));
    b.wait_for(
        "document.getElementById('count').textContent === '3 of 12 letters'",
        "lang:he",
    );
    assert_eq!(listed_rows(&mut b), json!([4, 5, 12]));

    // A Hebrew letter's headers read in their own direction.
    click(&mut b, "#rows .row");
    b.wait_for(
        "document.getElementById('text').dataset.loaded === '0004-yaakov.cohen_example.org.txt'",
        "Yaakov's letter",
    );
    assert_eq!(
        b.eval(
            "[...document.querySelectorAll('#headers td')].filter(td => \
             td.textContent.startsWith('הצטרפו')).map(td => getComputedStyle(td).direction)"
        ),
        json!(["rtl"])
    );
    // From file:// the page cannot reach the frame of the .txt: it shows
    // the copy in manifest.js, right to left, instead.
    assert_eq!(b.eval("document.getElementById('text').dataset.dir"), "rtl");
    let copy = b.eval(
        "(() => { const c = document.getElementById('text-copy'); \
         return [c.hidden, getComputedStyle(c).direction, c.lang, c.textContent, \
         document.getElementById('text').parentNode.hidden, \
         document.getElementById('text-dir').hidden]; })()",
    );
    assert_eq!(copy[0], json!(false), "{copy}");
    assert_eq!(copy[1], "rtl", "{copy}");
    assert_eq!(copy[2], "he", "{copy}");
    let txt = std::fs::read_to_string(out.join("0004-yaakov.cohen_example.org.txt")).unwrap();
    assert_eq!(copy[3], txt.as_str(), "the .txt, as it is");
    assert!(txt.contains("שלום הרב כהן,"), "{txt}");
    assert_eq!(copy[4], json!(true), "the frame gives way: {copy}");
    assert_eq!(copy[5], json!(true), "no note: {copy}");
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    b.eval("document.getElementById('text-copy').scrollIntoView()");
    let png = b.screenshot(None);
    std::fs::write(shots.join("gallery-hebrew-text.png"), &png).unwrap();
    // An English letter's text part is the .txt in its frame again.
    b.open(&format!("file://{}/index.html?en#row=1", out.display()));
    b.wait_for(
        "document.getElementById('text').dataset.loaded === '0001-david.breuer_example.org.txt'",
        "David's letter",
    );
    assert_eq!(
        b.eval(
            "[document.getElementById('text-copy').hidden, \
             document.getElementById('text').parentNode.hidden]"
        ),
        json!([true, false])
    );
    // Only right-to-left letters carry their text in the data.
    let data = gallery_data(&out);
    let with_text: Vec<u64> = data["letters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l.get("text").is_some())
        .map(|l| l["row"].as_u64().unwrap())
        .collect();
    assert_eq!(with_text, [4, 5, 12]);
}

#[test]
fn chromium_shows_the_hebrew_letter_right_aligned_at_375_px() {
    let dir = tempfile::tempdir().unwrap();
    let out = render_gallery(dir.path(), &example_template(), &example_csv(), &[]);
    let mut b = Browser::start(375, 900);
    b.open(&format!(
        "file://{}/0004-yaakov.cohen_example.org.html",
        out.display()
    ));
    let facts = b.eval(
        "(() => { \
           const p = [...document.querySelectorAll('p')].find(p => p.textContent.startsWith('שלום')); \
           const body = [...document.querySelectorAll('p')].find(p => p.textContent.length > 200); \
           const r = document.createRange(); r.selectNodeContents(p); \
           const text = r.getBoundingClientRect(), box = p.getBoundingClientRect(); \
           const pad = parseFloat(getComputedStyle(p).paddingRight); \
           return { html: getComputedStyle(document.documentElement).direction, \
                    p: getComputedStyle(p).direction, body: getComputedStyle(body).direction, \
                    align: getComputedStyle(body).textAlign, \
                    right: box.right - pad - text.right, left: text.left - box.left, \
                    width: document.documentElement.clientWidth, \
                    salutation: p.textContent.trim() }; })()",
    );
    assert_eq!(facts["salutation"], "שלום הרב כהן,", "{facts}");
    assert_eq!(facts["html"], "rtl", "{facts}");
    assert_eq!(facts["p"], "rtl", "{facts}");
    assert_eq!(facts["body"], "rtl", "{facts}");
    let align = facts["align"].as_str().unwrap();
    assert!(
        align == "right" || align == "start" || align == "-webkit-right",
        "{facts}"
    );
    assert_eq!(facts["width"], 375, "{facts}");
    // The salutation hugs the right edge of its paragraph, far from the left.
    let (right, left) = (
        facts["right"].as_f64().unwrap(),
        facts["left"].as_f64().unwrap(),
    );
    assert!(right.abs() < 2.0, "not at the right edge: {facts}");
    assert!(left > 100.0, "not right-aligned: {facts}");

    let png = b.screenshot(None);
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::write(shots.join("hebrew-letter-375.png"), &png).unwrap();
    let (w, _, colours) = png_colours(&png);
    assert_eq!(w, 375);
    assert!(
        colours > 50,
        "the Hebrew letter looks blank: {colours} colours"
    );
}
