//! Attachments, inline images and the example's calendar invitations: each
//! letter parses back (Python's `email` and mail-parser) to
//! `multipart/mixed` ⊃ (`multipart/related` ⊃ (`multipart/alternative` ⊃
//! text, html) + images) + attachments, with real files on disk.

use std::path::{Path, PathBuf};

use crate::common::*;

const TEMPLATE: &str = "From: Sender <s@example.org>
Subject: Hello {{name}}
Attachment: files/programme.pdf
Attachment: files/Zaświadczenie o udziale w obchodach — Łódź, styczeń 2021.pdf
Attachment: receipts/{{contact_id}}.pdf

<mjml><mj-body><mj-section><mj-column>
<mj-image src=\"images/logo.png\" alt=\"Logo\" />
<mj-image src=\"https://example.org/remote.png\" alt=\"Remote\" />
<mj-text>Dear {{name}} <img src=\"images/logo.png\" alt=\"again\"> <img src=\"images/seal.gif\" alt=\"seal\"></mj-text>
</mj-column></mj-section></mj-body></mjml>
";

/// Bytes that look like nothing in particular (every byte value occurs).
fn noise(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32 * 31 + seed as u32 * 7) as u8 ^ (i >> 8) as u8)
        .collect()
}

/// A campaign folder `camp/` with the template, shared files, two images
/// and receipts for contacts c1 and c2 (c3 has none), and the list.
fn campaign(dir: &Path, rows: &str) -> (PathBuf, PathBuf) {
    let camp = dir.join("camp");
    for sub in ["files", "images", "receipts"] {
        std::fs::create_dir_all(camp.join(sub)).unwrap();
    }
    write(&camp, "files/programme.pdf", noise(1, 5000));
    write(
        &camp,
        "files/Zaświadczenie o udziale w obchodach — Łódź, styczeń 2021.pdf",
        noise(2, 300),
    );
    write(&camp, "images/logo.png", noise(3, 700));
    write(&camp, "images/seal.gif", noise(4, 90));
    write(&camp, "receipts/c1.pdf", noise(5, 1234));
    write(&camp, "receipts/c2.pdf", noise(6, 999));
    let t = write(&camp, "letter.mjml", TEMPLATE);
    let csv = write(dir, "r.csv", format!("email,name,contact_id\n{rows}"));
    (t, csv)
}

fn render(t: &Path, csv: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "render".as_ref(),
        t.as_os_str(),
        csv.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
        "--deterministic".as_ref(),
    ];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    run(&args, None)
}

const TWO: &str = "ann@example.org,Ann,c1\nbo@example.org,Bo,c2\n";

/// Python's `email`: the tree, the `cid:` references, and each part's
/// decoded bytes, as JSON.
const PY_TREE: &str = r#"
import email, email.policy, json, pathlib, re, sys
res = {}
for p in sorted(pathlib.Path(sys.argv[1]).glob("*.eml")):
    m = email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
    def shape(part):
        if part.is_multipart():
            return [part.get_content_type(), [shape(s) for s in part.iter_parts()]]
        return part.get_content_type()
    mixed = list(m.iter_parts())
    related = list(mixed[0].iter_parts())
    alt = related[0]
    html = alt.get_body(("html",)).get_content()
    images = {s["Content-ID"].strip("<>"): s.get_payload(decode=True).hex() for s in related[1:]}
    attachments = [[s.get_filename(), s.get_content_type(), s.get_content_disposition(),
                    s.get_payload(decode=True).hex()] for s in mixed[1:]]
    res[p.stem] = {
        "shape": shape(m),
        "cids": sorted(set(re.findall(r'src="cid:([^"]+)"', html))),
        "images": images,
        "image_names": [s.get_filename() for s in related[1:]],
        "inline": [s.get_content_disposition() for s in related[1:]],
        "attachments": attachments,
        "remote_kept": 'src="https://example.org/remote.png"' in html,
        "local_left": "images/" in html,
    }
print(json.dumps(res))
"#;

fn python(script: &str, arg: &Path) -> serde_json::Value {
    let py = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(arg)
        .output()
        .expect("python3 runs");
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
    serde_json::from_slice(&py.stdout).unwrap()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn letters_parse_back_to_the_mime_tree_with_every_file_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let (t, csv) = campaign(dir.path(), TWO);
    let out = dir.path().join("o");
    render(&t, &csv, &out, &[]).expect_code(0);
    let camp = dir.path().join("camp");
    let file = |rel: &str| std::fs::read(camp.join(rel)).unwrap();

    let res = python(PY_TREE, &out);
    let letters = res.as_object().unwrap();
    assert_eq!(letters.len(), 2);
    for (stem, m) in letters {
        let receipt = if stem.contains("ann") { "c1" } else { "c2" };
        assert_eq!(
            m["shape"],
            serde_json::json!([
                "multipart/mixed",
                [
                    [
                        "multipart/related",
                        [
                            ["multipart/alternative", ["text/plain", "text/html"]],
                            "image/png",
                            "image/gif"
                        ]
                    ],
                    "application/pdf",
                    "application/pdf",
                    "application/pdf"
                ]
            ]),
            "{stem}"
        );
        // Every cid: has its part, every related part is referenced, and
        // the same image shown twice is one part.
        let images = m["images"].as_object().unwrap();
        let mut parts: Vec<&String> = images.keys().collect();
        parts.sort();
        let cids: Vec<&str> = m["cids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(cids, parts, "{stem}");
        assert_eq!(
            m["image_names"],
            serde_json::json!(["logo.png", "seal.gif"])
        );
        assert_eq!(m["inline"], serde_json::json!(["inline", "inline"]));
        let mut want_images: Vec<String> =
            vec![hex(&file("images/logo.png")), hex(&file("images/seal.gif"))];
        let mut got_images: Vec<String> = images
            .values()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        want_images.sort();
        got_images.sort();
        assert_eq!(got_images, want_images);
        assert_eq!(m["remote_kept"], true, "{stem}: a remote URL is left alone");
        assert_eq!(m["local_left"], false, "{stem}: no local path goes out");
        // The attachments decode to the bytes of their files; the receipt
        // is this contact's own.
        assert_eq!(
            m["attachments"],
            serde_json::json!([
                [
                    "programme.pdf",
                    "application/pdf",
                    "attachment",
                    hex(&file("files/programme.pdf"))
                ],
                [
                    "Zaświadczenie o udziale w obchodach — Łódź, styczeń 2021.pdf",
                    "application/pdf",
                    "attachment",
                    hex(&file(
                        "files/Zaświadczenie o udziale w obchodach — Łódź, styczeń 2021.pdf"
                    ))
                ],
                [
                    format!("{receipt}.pdf"),
                    "application/pdf",
                    "attachment",
                    hex(&file(&format!("receipts/{receipt}.pdf")))
                ],
            ]),
            "{stem}"
        );
    }

    // mail-parser, the second reader, agrees.
    use mail_parser::MimeHeaders;
    for (stem, receipt, other) in [
        ("0001-ann_example.org", "c1", "c2"),
        ("0002-bo_example.org", "c2", "c1"),
    ] {
        let eml = std::fs::read(out.join(format!("{stem}.eml"))).unwrap();
        assert!(eml.is_ascii());
        let text = String::from_utf8(eml.clone()).unwrap();
        // Base64 in lines of 76, every line within the limit.
        assert!(text.lines().all(|l| l.len() <= 78), "{stem}");
        assert!(text.lines().any(|l| l.len() == 76 && !l.contains(' ')));
        let msg = mail_parser::MessageParser::default().parse(&eml).unwrap();
        let root = msg.root_part().content_type().unwrap();
        assert_eq!((root.ctype(), root.subtype()), ("multipart", Some("mixed")));
        let html = msg.body_html(0).unwrap();
        let mut names = Vec::new();
        for part in msg.attachments() {
            let name = part.attachment_name().unwrap().to_string();
            let want = match name.as_str() {
                "logo.png" | "seal.gif" => {
                    let cid = part.content_id().unwrap();
                    assert!(html.contains(&format!("cid:{cid}")), "{stem}: {cid}");
                    file(&format!("images/{name}"))
                }
                n if n.starts_with('c') => file(&format!("receipts/{n}")),
                n => file(&format!("files/{n}")),
            };
            assert_eq!(part.contents(), &want[..], "{stem}: {name}");
            names.push(name);
        }
        assert!(names.contains(&format!("{receipt}.pdf")), "{names:?}");
        assert!(!names.contains(&format!("{other}.pdf")), "{names:?}");
        assert_eq!(names.len(), 5);
    }

    // The preview shows the images from copies beside the letters, and
    // the gallery lists every file with a link that works.
    let preview = std::fs::read_to_string(out.join("0001-ann_example.org.html")).unwrap();
    assert!(!preview.contains("cid:"), "{preview}");
    let data = std::fs::read_to_string(out.join("manifest.js")).unwrap();
    let json = data
        .split_once("window.LETTERPRESS = ")
        .unwrap()
        .1
        .trim_end()
        .trim_end_matches(';');
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    let listed = v["letters"][0]["attachments"].as_array().unwrap();
    assert_eq!(listed.len(), 5);
    for a in listed {
        let href = a["href"].as_str().unwrap();
        let copy = std::fs::read(out.join(href)).unwrap();
        assert_eq!(copy.len() as u64, a["size"].as_u64().unwrap());
        if a["inline"] == true {
            assert!(preview.contains(href), "{href}");
        }
    }
    assert_eq!(listed[2]["name"], "programme.pdf");
    assert_eq!(listed[2]["type"], "application/pdf");
}

#[test]
fn a_missing_per_contact_file_rejects_its_row_or_is_skipped_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (t, csv) = campaign(
        dir.path(),
        "ann@example.org,Ann,c1\ncy@example.org,Cy,c3\nbo@example.org,Bo,c2\n",
    );
    let out = dir.path().join("o");
    let r = render(&t, &csv, &out, &[]);
    r.expect_code(3);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(
        all.contains("r.csv:3: error: row 2, column `contact_id`: the attachment `receipts/c3.pdf` does not exist"),
        "{all}"
    );
    assert!(all.contains("--missing-attachment skip"), "{all}");
    assert!(out.join("0001-ann_example.org.eml").exists());
    assert!(!out.join("0002-cy_example.org.eml").exists());
    assert!(out.join("0003-bo_example.org.eml").exists());

    let out = dir.path().join("skip");
    let r = render(&t, &csv, &out, &["--missing-attachment", "skip"]);
    r.expect_code(0);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(
        all.contains("1 warnings") || all.contains("1 warning"),
        "{all}"
    );
    let eml = std::fs::read(out.join("0002-cy_example.org.eml")).unwrap();
    let msg = mail_parser::MessageParser::default().parse(&eml).unwrap();
    // The shared files and the images, no receipt.
    assert_eq!(msg.attachments().count(), 4);
    let manifest = std::fs::read_to_string(out.join("manifest.json")).unwrap();
    assert!(
        manifest.contains("sent without it (--missing-attachment skip)"),
        "{manifest}"
    );

    // check lists the missing file with the contacts it affects.
    let r = run(&["check".as_ref(), t.as_os_str(), csv.as_os_str()], None);
    r.expect_code(3);
    assert!(
        r.stdout.contains(
            "letter.mjml:5: warning: the attachment `receipts/{{contact_id}}.pdf` is missing \
             for 1 contact(s): row 2 (cy@example.org)"
        ),
        "{}",
        r.stdout
    );
}

#[test]
fn a_path_that_leaves_the_template_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (t, _) = campaign(dir.path(), TWO);
    write(dir.path(), "secret.txt", "not for mailing");
    let camp = dir.path().join("camp");
    let csv = write(
        dir.path(),
        "evil.csv",
        "email,name,contact_id\nann@example.org,Ann,../../secret.txt#\nbo@example.org,Bo,c2\n",
    );
    // A value that climbs out: that row is refused, the others go.
    let tpl = std::fs::read_to_string(&t)
        .unwrap()
        .replace("receipts/{{contact_id}}.pdf", "receipts/{{contact_id}}");
    write(&camp, "letter.mjml", &tpl);
    write(&camp, "receipts/c2", "bo's receipt");
    let out = dir.path().join("o");
    let r = render(&t, &csv, &out, &[]);
    r.expect_code(3);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(all.contains("leaves the template's folder"), "{all}");
    assert!(!out.join("0001-ann_example.org.eml").exists());
    assert!(out.join("0002-bo_example.org.eml").exists());

    // In the template itself: a template error on its line, nothing
    // rendered.
    for (bad, why) in [
        ("../secret.txt", "leaves the template's folder"),
        ("/etc/passwd", "leaves the template's folder"),
        ("files/nope.pdf", "does not exist"),
    ] {
        let tpl = TEMPLATE.replace("files/programme.pdf", bad);
        write(&camp, "letter.mjml", &tpl);
        let out = dir.path().join(format!("o-{}", bad.len()));
        let r = render(&t, &csv, &out, &[]);
        r.expect_code(1);
        assert!(r.stderr.contains("letter.mjml:3"), "{bad}: {}", r.stderr);
        assert!(r.stderr.contains(why), "{bad}: {}", r.stderr);
    }

    // Through a symlink that points out of the folder.
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(dir.path().join("secret.txt"), camp.join("files/link.pdf"))
            .unwrap();
        write(
            &camp,
            "letter.mjml",
            TEMPLATE.replace("files/programme.pdf", "files/link.pdf"),
        );
        let r = render(&t, &csv, &dir.path().join("o-link"), &[]);
        r.expect_code(1);
        assert!(
            r.stderr
                .contains("`files/link.pdf` leaves the template's folder"),
            "{}",
            r.stderr
        );
        // An image too.
        std::os::unix::fs::symlink(dir.path().join("secret.txt"), camp.join("images/x.png"))
            .unwrap();
        write(
            &camp,
            "letter.mjml",
            TEMPLATE.replace("images/seal.gif", "images/x.png"),
        );
        let r = render(&t, &csv, &dir.path().join("o-img"), &[]);
        r.expect_code(1);
        assert!(r.stderr.contains("`images/x.png` leaves"), "{}", r.stderr);
    }
}

#[test]
fn inline_images_never_keeps_local_paths_out() {
    let dir = tempfile::tempdir().unwrap();
    let (t, csv) = campaign(dir.path(), TWO);
    let r = render(
        &t,
        &csv,
        &dir.path().join("o"),
        &["--inline-images", "never"],
    );
    r.expect_code(1);
    assert!(
        r.stderr
            .contains("the image `images/logo.png` is a local file"),
        "{}",
        r.stderr
    );
    // A local path that only a value makes is refused per letter.
    let camp = dir.path().join("camp");
    write(
        &camp,
        "letter.mjml",
        "From: S <s@example.org>\nSubject: Hi\n\n<mjml><mj-body><mj-section><mj-column>\
         <mj-image src=\"{{photo}}\" /></mj-column></mj-section></mj-body></mjml>\n",
    );
    let csv = write(
        dir.path(),
        "p.csv",
        "email,photo\na@example.org,https://example.org/a.png\nb@example.org,images/logo.png\n",
    );
    let out = dir.path().join("never");
    let r = render(&t, &csv, &out, &["--inline-images", "never"]);
    r.expect_code(3);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(all.contains("row 2"), "{all}");
    assert!(all.contains("--inline-images=never"), "{all}");
    let a = std::fs::read(out.join("0001-a_example.org.eml")).unwrap();
    let a = mail_parser::MessageParser::default().parse(&a).unwrap();
    assert_eq!(a.attachments().count(), 0);
    assert!(!out.join("0002-b_example.org.eml").exists());
    // Without the flag the same value is embedded.
    let out = dir.path().join("auto");
    render(&t, &csv, &out, &[]).expect_code(0);
    let b = std::fs::read(out.join("0002-b_example.org.eml")).unwrap();
    let b = mail_parser::MessageParser::default().parse(&b).unwrap();
    assert_eq!(b.attachments().count(), 1);
    assert!(b.body_html(0).unwrap().contains("src=\"cid:"));
}

#[test]
fn render_check_names_a_changed_attachment_instead_of_diffing_base64() {
    let dir = tempfile::tempdir().unwrap();
    let (t, csv) = campaign(dir.path(), TWO);
    let snap = dir.path().join("snap");
    render(&t, &csv, &snap, &[]).expect_code(0);
    let check = |extra: &[&str]| {
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "render".as_ref(),
            t.as_os_str(),
            csv.as_os_str(),
            "--deterministic".as_ref(),
            "--check".as_ref(),
            snap.as_os_str(),
        ];
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        run(&args, None)
    };
    check(&[]).expect_code(0);
    let camp = dir.path().join("camp");
    let new = noise(9, 5001);
    write(&camp, "files/programme.pdf", &new);
    let r = check(&[]);
    r.expect_code(4);
    let sha: String = {
        use sha2::Digest;
        hex(&sha2::Sha256::digest(&new))
    };
    assert!(
        r.stdout.contains(&format!(
            "+programme.pdf (application/pdf, 5001 bytes, sha256 {sha})"
        )),
        "{}",
        r.stdout
    );
    assert!(r
        .stdout
        .contains("-programme.pdf (application/pdf, 5000 bytes"));
    // No base64 in the diff.
    assert!(!r
        .stdout
        .lines()
        .any(|l| l.len() > 70 && !l.contains(' ') && l.starts_with(['+', '-'])));
}

#[test]
fn the_example_invitations_are_valid_calendars() {
    let script = r#"
import icalendar, json, pathlib, sys
out = {}
for p in sorted(pathlib.Path(sys.argv[1]).glob("*.ics")):
    raw = p.read_bytes()
    lines = raw.split(b"\r\n")
    assert lines[-1] == b"", p
    assert all(len(l) <= 75 for l in lines), p          # folded (RFC 5545 3.1)
    assert b"\n" not in raw.replace(b"\r\n", b""), p    # CRLF only
    cal = icalendar.Calendar.from_ical(raw)
    tz = [str(t["TZID"]) for t in cal.walk("VTIMEZONE")]
    for e in cal.walk("VEVENT"):
        start, end = e["DTSTART"].dt, e["DTEND"].dt
        out[p.name] = {
            "tzids": tz, "uid": str(e["UID"]), "stamp": e["DTSTAMP"].dt.isoformat(),
            "start": start.isoformat(), "end": end.isoformat(),
            "tzid": e["DTSTART"].params.get("TZID"),
            "utc": start.astimezone(__import__("datetime").timezone.utc).isoformat(),
            "summary": str(e["SUMMARY"]), "url": str(e.get("URL")),
        }
print(json.dumps(out))
"#;
    let v = python(script, &root().join("templates/events"));
    let lwf = &v["lest-we-forget-2021-01-25.ics"];
    assert_eq!(lwf["start"], "2021-01-25T10:00:00-05:00");
    assert_eq!(lwf["utc"], "2021-01-25T15:00:00+00:00");
    assert_eq!(lwf["tzid"], "America/New_York");
    assert_eq!(lwf["tzids"], serde_json::json!(["America/New_York"]));
    assert_eq!(lwf["url"], "https://wjc.example.org/events/lest-we-forget");
    let ausch = &v["auschwitz-commemoration-2021-01-27.ics"];
    assert_eq!(ausch["start"], "2021-01-27T09:00:00-05:00");
    assert_eq!(ausch["utc"], "2021-01-27T14:00:00+00:00");
    assert_eq!(ausch["tzid"], "America/New_York");
    assert_ne!(lwf["uid"], ausch["uid"]);
    // Fixed, so every render of the example is the same.
    assert_eq!(lwf["stamp"], "2021-01-15T12:00:00+00:00");
    assert_eq!(v.as_object().unwrap().len(), 2);

    // And the example letter carries both, as text/calendar.
    let eml = {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("o");
        run(
            &[
                "render".as_ref(),
                example_template().as_os_str(),
                example_csv().as_os_str(),
                "--out".as_ref(),
                out.as_os_str(),
                "--deterministic".as_ref(),
                "--format".as_ref(),
                "eml".as_ref(),
            ],
            None,
        )
        .expect_code(0);
        std::fs::read(out.join("0001-david.breuer_example.org.eml")).unwrap()
    };
    use mail_parser::MimeHeaders;
    let msg = mail_parser::MessageParser::default().parse(&eml).unwrap();
    let ics: Vec<_> = msg.attachments().collect();
    assert_eq!(ics.len(), 2);
    for part in ics {
        let ct = part.content_type().unwrap();
        assert_eq!((ct.ctype(), ct.subtype()), ("text", Some("calendar")));
        let name = part.attachment_name().unwrap();
        assert_eq!(
            part.contents(),
            &std::fs::read(root().join("templates/events").join(name)).unwrap()[..]
        );
    }
}

#[test]
fn check_weighs_letters_against_common_limits_and_flags_big_images() {
    let dir = tempfile::tempdir().unwrap();
    let (t, csv) = campaign(dir.path(), TWO);
    let camp = dir.path().join("camp");
    write(&camp, "images/logo.png", noise(3, 600 * 1024));
    write(&camp, "files/programme.pdf", noise(1, 8 * 1024 * 1024));
    let check = |extra: &[&str]| {
        let mut args: Vec<&std::ffi::OsStr> =
            vec!["check".as_ref(), t.as_os_str(), csv.as_os_str()];
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        run(&args, None)
    };
    // Base64 makes the 8.6 MB of files 11.5 MB of letter: over the 10 MB
    // default of --max-message-size, so every row is an error ...
    let r = check(&[]);
    r.expect_code(3);
    assert!(r.stdout.contains("--max-message-size"), "{}", r.stdout);
    // ... and with the limit raised, a warning about relays.
    let r = check(&["--max-message-size", "30M"]);
    r.expect_code(0);
    assert!(
        r.stdout
            .contains("letter.mjml: warning: the inline image `images/logo.png` takes"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("2 letter(s) are over the 10 MB many relays take (Gmail takes 25 MB)"),
        "{}",
        r.stdout
    );
}
