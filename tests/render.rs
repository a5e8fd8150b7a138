//! `letterpress render`: the example campaign, reproducible output, every
//! exit code and every class of bad input.

use crate::common::*;

fn render_example(out: &std::path::Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "render".to_string(),
        example_template().display().to_string(),
        example_csv().display().to_string(),
        "--out".into(),
        out.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    run(&args, None)
}

fn example_rows() -> usize {
    std::fs::read_to_string(example_csv())
        .unwrap()
        .lines()
        .count()
        - 1
}

/// `letterpress render TEMPLATE CSV --out OUT EXTRA…`.
fn render_to(
    template: &std::path::Path,
    csv: &std::path::Path,
    out: &std::path::Path,
    extra: &[&str],
) -> Output {
    let mut args = vec![
        "render".as_ref(),
        template.as_os_str(),
        csv.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    run(&args, None)
}

#[test]
fn example_campaign_writes_three_files_per_contact_and_a_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let r = render_example(&out, &[]);
    r.expect_code(0);
    assert!(
        r.stdout.contains("rendered 12 of 12 letters"),
        "{}",
        r.stdout
    );
    let files = tree(&out);
    // ... plus manifest.json, the gallery (index.html, manifest.js) and
    // one copy of each calendar file the letters carry, for its links.
    assert_eq!(files.len(), example_rows() * 3 + 3 + 2);
    assert_eq!(
        files
            .iter()
            .filter(|(n, _)| n.starts_with("files/"))
            .count(),
        2
    );
    for ext in ["eml", "html", "txt"] {
        assert_eq!(
            files
                .iter()
                .filter(|(n, _)| n.ends_with(ext) && n != "index.html")
                .count(),
            example_rows()
        );
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let letters = manifest["letters"].as_array().unwrap();
    assert_eq!(letters.len(), example_rows());
    assert_eq!(letters[1]["name"], "Zofia Wiśniewska");
    assert_eq!(
        letters[1]["files"]["eml"],
        "0002-zofia.wisniewska_example.org.eml"
    );
    let size = letters[1]["sizes"]["html"].as_u64().unwrap();
    assert_eq!(
        size,
        std::fs::metadata(out.join("0002-zofia.wisniewska_example.org.html"))
            .unwrap()
            .len()
    );
    assert_eq!(manifest["summary"]["rendered"], 12);
}

#[test]
fn deterministic_runs_are_byte_identical_and_normal_runs_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    render_example(&a, &["--deterministic"]).expect_code(0);
    render_example(&b, &["--deterministic"]).expect_code(0);
    assert_eq!(tree(&a), tree(&b));
    let eml =
        String::from_utf8(std::fs::read(a.join("0001-david.breuer_example.org.eml")).unwrap())
            .unwrap();
    assert!(eml.starts_with("Date: Thu, 01 Jan 1970 00:00:00 +0000\r\n"));

    render_example(&c, &[]).expect_code(0);
    let first =
        |d: &std::path::Path| std::fs::read(d.join("0001-david.breuer_example.org.eml")).unwrap();
    assert_ne!(
        first(&a),
        first(&c),
        "a normal run must get fresh Message-IDs"
    );
    // ... but only the stamp differs: the letters themselves are the same.
    assert_eq!(
        std::fs::read(a.join("0001-david.breuer_example.org.html")).unwrap(),
        std::fs::read(c.join("0001-david.breuer_example.org.html")).unwrap()
    );
}

#[test]
fn source_date_epoch_fixes_the_date() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o");
    let mut cmd = letterpress();
    cmd.env("SOURCE_DATE_EPOCH", "1611100800").args([
        "render",
        "templates/weremember.mjml",
        "recipients.example.csv",
        "--format",
        "eml",
        "--out",
    ]);
    cmd.arg(&out);
    run_cmd(&mut cmd, None).expect_code(0);
    let eml = std::fs::read_to_string(out.join("0001-david.breuer_example.org.eml")).unwrap();
    assert!(
        eml.starts_with("Date: Wed, 20 Jan 2021 00:00:00 +0000\r\n"),
        "{eml}"
    );
}

/// Decoded view of a message, for comparing with what the CSV says.
struct Parsed {
    to_name: String,
    to_addr: String,
    subject: String,
    text: String,
    html: String,
    attachments: Vec<String>,
}

fn parse_with_mail_parser(eml: &[u8]) -> Parsed {
    use mail_parser::MimeHeaders;
    let msg = mail_parser::MessageParser::default()
        .parse(eml)
        .expect("parses");
    // A letter with files is multipart/mixed around the
    // multipart/alternative (tests/attach.rs checks the whole tree).
    let attachments: Vec<String> = msg
        .attachments()
        .map(|a| a.attachment_name().unwrap_or("").to_string())
        .collect();
    let ctype = msg.root_part().content_type().unwrap();
    assert_eq!(ctype.ctype(), "multipart");
    let want = if attachments.is_empty() {
        "alternative"
    } else {
        "mixed"
    };
    assert_eq!(ctype.subtype(), Some(want));
    assert_eq!(msg.text_body.len(), 1);
    assert_eq!(msg.html_body.len(), 1);
    let to = msg.to().unwrap().first().unwrap();
    Parsed {
        to_name: to.name().unwrap_or("").to_string(),
        to_addr: to.address().unwrap().to_string(),
        subject: msg.subject().unwrap().to_string(),
        text: msg.body_text(0).unwrap().replace("\r\n", "\n"),
        html: msg.body_html(0).unwrap().replace("\r\n", "\n"),
        attachments,
    }
}

/// The language of the example letter a contact with `lang` gets, its
/// Subject, and words of its text.
fn example_language(lang: &str) -> (&'static str, &'static str, &'static str) {
    match lang {
        "he" | "he-IL" => ("he", "הצטרפו לקמפיין \u{200e}#WeRemember שלנו", "שלום"),
        "fr" | "fr-FR" => (
            "fr",
            "Rejoignez notre campagne #WeRemember",
            "Le Congrès juif mondial",
        ),
        _ => ("en", "Join our #WeRemember Campaign", "Dear "),
    }
}

#[test]
fn every_message_parses_back_to_the_csv_values() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o");
    render_example(&out, &["--deterministic"]).expect_code(0);
    let mut csv = csv::Reader::from_path(example_csv()).unwrap();
    for (i, row) in csv.records().enumerate() {
        let row = row.unwrap();
        let stem = format!("{:04}-{}", i + 1, row[0].replace('@', "_"));
        let eml = std::fs::read(out.join(format!("{stem}.eml"))).unwrap();
        assert!(eml.is_ascii(), "{stem}: a message must be 7-bit");
        assert!(eml.split(|&b| b == b'\n').all(|l| l.len() <= 998));
        let p = parse_with_mail_parser(&eml);
        assert_eq!(p.to_addr, &row[0]);
        assert_eq!(p.to_name, format!("{} {}", &row[2], &row[3]));
        // Each contact's letter is in its language where a variant exists
        // (`he-IL` falls back to `he`, `fr-FR` to `fr`), else English.
        let (lang, subject, greeting) = example_language(&row[6]);
        assert_eq!(p.subject, subject, "{stem}");
        assert!(p.text.contains(greeting), "{stem}: {}", p.text);
        // On the document and on the body's wrapper, as MJML writes them.
        let dir = if lang == "he" { "rtl" } else { "auto" };
        let root = format!("<html lang=\"{lang}\" dir=\"{dir}\" xmlns");
        assert!(p.html.contains(&root), "{stem}: {root}");
        let wrapper = format!("role=\"article\" lang=\"{lang}\" dir=\"{dir}\"");
        assert!(p.html.contains(&wrapper), "{stem}: {wrapper}");
        // The two invitations of the example letter.
        assert_eq!(
            p.attachments,
            [
                "lest-we-forget-2021-01-25.ics",
                "auschwitz-commemoration-2021-01-27.ics"
            ]
        );
        assert_eq!(
            p.html,
            std::fs::read_to_string(out.join(format!("{stem}.html"))).unwrap()
        );
        assert_eq!(
            p.text,
            std::fs::read_to_string(out.join(format!("{stem}.txt"))).unwrap()
        );
        assert!(
            p.text.contains(&row[3]),
            "{stem}: the text names the contact"
        );
    }
}

/// Python's `email` package is a second, independent parser.
#[test]
fn python_email_package_reads_the_same_headers_and_parts() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o");
    render_example(&out, &["--deterministic"]).expect_code(0);
    let script = r#"
import email, email.policy, json, pathlib, sys
out = pathlib.Path(sys.argv[1])
res = {}
for p in sorted(out.glob("*.eml")):
    m = email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
    assert m.get_content_type() == "multipart/mixed", p
    assert m.get_payload()[0].get_content_type() == "multipart/alternative", p
    to = m["To"].addresses[0]
    res[p.stem] = {
        "to_name": to.display_name, "to_addr": to.addr_spec, "subject": str(m["Subject"]),
        "text": m.get_body(("plain",)).get_content().replace("\r\n", "\n"),
        "html": m.get_body(("html",)).get_content().replace("\r\n", "\n"),
        "unsubscribe_post": str(m["List-Unsubscribe-Post"]),
    }
print(json.dumps(res))
"#;
    let py = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&out)
        .output()
        .expect("python3 runs");
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
    let res: serde_json::Value = serde_json::from_slice(&py.stdout).unwrap();
    let hebrew = &res["0004-yaakov.cohen_example.org"];
    assert_eq!(hebrew["to_name"], "יעקב כהן");
    assert_eq!(hebrew["to_addr"], "yaakov.cohen@example.org");
    assert_eq!(hebrew["unsubscribe_post"], "List-Unsubscribe=One-Click");
    let mut csv = csv::Reader::from_path(example_csv()).unwrap();
    let langs: Vec<String> = csv.records().map(|r| r.unwrap()[6].to_string()).collect();
    for (stem, m) in res.as_object().unwrap() {
        let row: usize = stem[..4].parse().unwrap();
        assert_eq!(m["subject"], example_language(&langs[row - 1]).1);
        assert_eq!(
            m["html"].as_str().unwrap(),
            std::fs::read_to_string(out.join(format!("{stem}.html"))).unwrap()
        );
        assert_eq!(
            m["text"].as_str().unwrap(),
            std::fs::read_to_string(out.join(format!("{stem}.txt"))).unwrap()
        );
    }
    assert_eq!(res.as_object().unwrap().len(), example_rows());
}

#[test]
fn values_are_escaped_in_html_only() {
    let dir = tempfile::tempdir().unwrap();
    let t = write(dir.path(), "t.mjml", SMALL_TEMPLATE);
    let csv = write(
        dir.path(),
        "r.csv",
        "email,name\nx@example.org,Tom & <b>Jerry</b>\n",
    );
    let out = dir.path().join("o");
    run(
        &[
            t.as_os_str(),
            csv.as_os_str(),
            "--out".as_ref(),
            out.as_os_str(),
            "--deterministic".as_ref(),
        ]
        .iter()
        .fold(vec![std::ffi::OsString::from("render")], |mut v, a| {
            v.push(a.into());
            v
        }),
        None,
    )
    .expect_code(0);
    let html = std::fs::read_to_string(out.join("0001-x_example.org.html")).unwrap();
    assert!(
        html.contains("Dear <bdi>Tom &amp; &lt;b&gt;Jerry&lt;/b&gt;</bdi>,"),
        "{html}"
    );
    let text = std::fs::read_to_string(out.join("0001-x_example.org.txt")).unwrap();
    assert!(text.contains("Dear Tom & <b>Jerry</b>,"), "{text}");
    let p = parse_with_mail_parser(&std::fs::read(out.join("0001-x_example.org.eml")).unwrap());
    assert_eq!(p.subject, "Hello Tom & <b>Jerry</b>");
    assert_eq!(p.to_name, "Tom & <b>Jerry</b>");
}

fn render_small(dir: &std::path::Path, csv: &[u8], extra: &[&str]) -> (Output, std::path::PathBuf) {
    let t = write(dir, "t.mjml", SMALL_TEMPLATE);
    let c = write(dir, "r.csv", csv);
    let out = dir.join("o");
    let mut args: Vec<String> = vec![
        "render".into(),
        t.display().to_string(),
        c.display().to_string(),
        "--out".into(),
        out.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    (run(&args, None), out)
}

#[test]
fn accepts_bom_crlf_quoted_newlines_and_other_delimiters() {
    let cases: [(&str, &[u8]); 4] = [
        (
            "bom+crlf",
            b"\xEF\xBB\xBFemail,name\r\na@example.org,Ann\r\nb@example.org,Bob\r\n",
        ),
        (
            "quoted newline",
            b"email,name,note\na@example.org,Ann,\"two\nlines\"\nb@example.org,Bob,x\n",
        ),
        (
            "semicolon",
            b"email;name\na@example.org;Ann\nb@example.org;\"Bob; Jr\"\n",
        ),
        (
            "tab",
            b"email\tname\na@example.org\tAnn\nb@example.org\tBob\n",
        ),
    ];
    for (what, csv) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (r, out) = render_small(dir.path(), csv, &["--format", "txt"]);
        r.expect_code(0);
        let ann = std::fs::read_to_string(out.join("0001-a_example.org.txt")).unwrap();
        assert!(ann.starts_with("Dear Ann"), "{what}: {ann}");
        let bob = std::fs::read_to_string(out.join("0002-b_example.org.txt")).unwrap();
        assert!(bob.starts_with("Dear Bob"), "{what}: {bob}");
    }
}

#[test]
fn explicit_delimiter_overrides_detection() {
    let dir = tempfile::tempdir().unwrap();
    // The header has more commas than pipes, but the file is pipe-separated.
    let (r, out) = render_small(
        dir.path(),
        b"email|name\na@example.org|Lee, Ann\n",
        &["--delimiter", "|"],
    );
    r.expect_code(0);
    assert!(std::fs::read_to_string(out.join("0001-a_example.org.txt"))
        .unwrap()
        .contains("Lee, Ann"));
}

#[test]
fn a_quoted_newline_in_a_header_value_rejects_only_that_row() {
    let dir = tempfile::tempdir().unwrap();
    let csv = b"email,name\na@example.org,\"Ann\r\nBcc: victim@example.org\"\nb@example.org,Bob\n";
    let (r, out) = render_small(dir.path(), csv, &[]);
    r.expect_code(3);
    assert!(
        r.stderr
            .contains("r.csv:2: error: row 1, column `name`: holds a line break"),
        "{}",
        r.stderr
    );
    assert!(!out.join("0001-a_example.org.eml").exists());
    let bob = std::fs::read_to_string(out.join("0002-b_example.org.eml")).unwrap();
    assert!(!bob.contains("victim"));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["rejected"][0]["line"], 2);
    assert_eq!(manifest["rejected"][0]["column"], "name");
}

#[test]
fn a_value_cannot_add_a_list_unsubscribe_url() {
    let dir = tempfile::tempdir().unwrap();
    let t = write(
        dir.path(),
        "t.mjml",
        SMALL_TEMPLATE.replace("u?e={{email}}", "u?c={{cid}}"),
    );
    let csv = write(
        dir.path(),
        "r.csv",
        "email,name,cid\na@example.org,Ann,\"c15>, <mailto:evil@attacker.example\"\n",
    );
    let out = dir.path().join("o");
    render_to(&t, &csv, &out, &["--format", "eml"]).expect_code(0);
    let eml = std::fs::read_to_string(out.join("0001-a_example.org.eml")).unwrap();
    let unsubscribe: Vec<&str> = eml
        .split("\r\n")
        .filter(|l| l.starts_with("List-Unsubscribe:"))
        .collect();
    assert_eq!(
        unsubscribe,
        ["List-Unsubscribe: <https://example.org/u?c=c15%3E%2C%20%3Cmailto%3Aevil%40attacker.example>"]
    );
    assert!(!eml.contains("<mailto:"), "{eml}");
    let msg = mail_parser::MessageParser::default()
        .parse(eml.as_bytes())
        .unwrap();
    let urls = msg.list_unsubscribe().as_address().unwrap().clone();
    assert_eq!(urls.into_list().len(), 1);
}

#[test]
fn ragged_and_non_utf8_rows_are_rejected_with_their_line_and_the_rest_rendered() {
    let dir = tempfile::tempdir().unwrap();
    let csv = b"email,name\na@example.org\nb@example.org,M\xFCller\nc@example.org,Cy\n";
    let (r, out) = render_small(dir.path(), csv, &[]);
    r.expect_code(3);
    assert!(
        r.stderr
            .contains("r.csv:2: error: row 1: has 1 fields, the header has 2"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(
            "r.csv:3: error: row 2, column `name`: is not valid UTF-8; re-save the file as UTF-8"
        ),
        "{}",
        r.stderr
    );
    assert!(out.join("0003-c_example.org.eml").exists());
    assert!(r.stdout.contains("rendered 1 of 3 letters"), "{}", r.stdout);
}

#[test]
fn an_oversized_value_rejects_its_row_unless_the_limits_are_raised() {
    let dir = tempfile::tempdir().unwrap();
    // 200 KB of words: over the 64K value limit, and once that is raised,
    // over the 64K header limit (the name is in To and Subject).
    let big = "word ".repeat(40 * 1024);
    let csv = format!("email,name\na@example.org,Al\nb@example.org,{big}\nc@example.org,Cy\n");
    let (r, out) = render_small(dir.path(), csv.as_bytes(), &[]);
    r.expect_code(3);
    assert!(
        r.stderr.contains(
            "r.csv:3: error: row 2, column `name`: holds a value of 204800 bytes, \
             more than the limit of 64K"
        ),
        "{}",
        r.stderr
    );
    assert!(out.join("0001-a_example.org.eml").exists());
    assert!(out.join("0003-c_example.org.eml").exists());
    assert!(!out.join("0002-b_example.org.eml").exists());
    assert!(r.stdout.contains("rendered 2 of 3 letters"), "{}", r.stdout);

    let dir = tempfile::tempdir().unwrap();
    let (r, _) = render_small(dir.path(), csv.as_bytes(), &["--max-value-size", "1M"]);
    r.expect_code(3);
    assert!(
        r.stderr
            .contains("r.csv:3: error: row 2: its letter's headers take"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("--max-header-size"), "{}", r.stderr);

    let dir = tempfile::tempdir().unwrap();
    let raised = ["--max-value-size", "1M", "--max-header-size", "2M"];
    let (r, out) = render_small(dir.path(), csv.as_bytes(), &raised);
    r.expect_code(0);
    assert!(out.join("0002-b_example.org.eml").exists());
}

/// A 100 MB value costs the row cap, not its size: the render of the rows
/// around it peaks at a few MB of memory more than an ordinary render (it
/// peaked at over 200 MB while csv read the whole row before the check).
/// Measured as the child's peak resident size, by Python's `getrusage`.
#[test]
fn a_huge_value_is_skipped_unread_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let huge = "x".repeat(100 << 20);
    let csv = format!("email,name\na@example.org,Al\nb@example.org,\"{huge}\"\nc@example.org,Cy\n");
    let t = write(dir.path(), "t.mjml", SMALL_TEMPLATE);
    let c = write(dir.path(), "r.csv", csv.as_bytes());
    drop((huge, csv));
    let out = dir.path().join("o");
    let peak = std::process::Command::new("python3")
        .args([
            "-c",
            "import resource, subprocess, sys\n\
             r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n\
             print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n\
             print(r.stderr, file=sys.stderr)",
            env!("CARGO_BIN_EXE_letterpress"),
            "render",
        ])
        .arg(&t)
        .arg(&c)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&peak.stdout);
    let stderr = String::from_utf8_lossy(&peak.stderr);
    let fields: Vec<&str> = stdout.split_whitespace().collect();
    assert_eq!(fields.first(), Some(&"3"), "{stdout}\n{stderr}");
    let peak_kb: u64 = fields[1].parse().unwrap();
    assert!(
        stderr.contains("r.csv:3: error: row 2: is longer than"),
        "{stderr}"
    );
    assert!(stderr.contains("skipped unread"), "{stderr}");
    assert!(out.join("0001-a_example.org.eml").exists());
    assert!(out.join("0003-c_example.org.eml").exists());
    assert!(
        peak_kb < 60 * 1024,
        "peak {peak_kb} kB for a 100 MB value: read whole?"
    );
}

#[test]
fn an_address_that_looks_like_a_path_never_leaves_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let csv =
        b"email,name\n/etc/passwd@example.org,Ann\n../../escape@example.org,Bob\n/etc/passwd,Cy\n";
    let (r, out) = render_small(dir.path(), csv, &[]);
    r.expect_code(3);
    // `/` is a valid character in a local part: rendered, safely named.
    assert!(out.join("0001-_etc_passwd_example.org.eml").exists());
    assert!(
        r.stderr
            .contains("`../../escape@example.org` is not a valid email address"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("`/etc/passwd` is not a valid email address"),
        "{}",
        r.stderr
    );
    let outside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(outside.len(), 3, "only t.mjml, r.csv and o/: {outside:?}");
}

#[test]
fn empty_file_and_header_without_rows_are_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let (r, _) = render_small(dir.path(), b"", &[]);
    r.expect_code(1);
    assert!(
        r.stderr.contains("r.csv: the file is empty"),
        "{}",
        r.stderr
    );
    let dir = tempfile::tempdir().unwrap();
    let (r, _) = render_small(dir.path(), b"email,name\n", &[]);
    r.expect_code(1);
    assert!(
        r.stderr.contains("has a header line but no contacts"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_non_empty_output_folder_needs_force() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "mine").unwrap();
    let r = render_example(&out, &[]);
    r.expect_code(1);
    assert!(
        r.stderr.contains("is not empty; pass --force"),
        "{}",
        r.stderr
    );
    assert_eq!(tree(&out).len(), 1, "nothing written");
    render_example(&out, &["--force"]).expect_code(0);
    assert_eq!(
        std::fs::read_to_string(out.join("keep.txt")).unwrap(),
        "mine"
    );
}

#[test]
fn format_picks_the_files_and_stdin_works() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o");
    let csv = std::fs::read(example_csv()).unwrap();
    let r = run(
        &[
            "render",
            "templates/weremember.mjml",
            "-",
            "--format",
            "eml",
            "--out",
            out.to_str().unwrap(),
        ],
        Some(&csv),
    );
    r.expect_code(0);
    let files = tree(&out);
    assert_eq!(files.len(), example_rows() + 1);
    assert!(files
        .iter()
        .all(|(n, _)| n.ends_with(".eml") || n == "manifest.json"));
}

#[test]
fn template_errors_are_fatal_and_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let csv = write(dir.path(), "r.csv", "email,name\na@example.org,Ann\n");
    let cases = [
        // (template, expected message part)
        (
            SMALL_TEMPLATE.replace("Dear {{name}}", "Dear {{name}"),
            "t.mjml:9: Handlebars syntax error",
        ),
        // An unclosed block is named where it opens, not past the end.
        (
            SMALL_TEMPLATE.replace("Dear {{name}}", "Dear {{#if name}}"),
            "t.mjml:9: Handlebars syntax error: the block `{{#if}}` opened on this line is not closed",
        ),
        (
            SMALL_TEMPLATE.replace("Dear {{name}}", "Dear {{nmae}}"),
            "t.mjml:9: the template uses `nmae`, but",
        ),
        (
            SMALL_TEMPLATE.replace("<mj-text>", "<mj-text align=center>"),
            "t.mjml:9: MJML error",
        ),
        (SMALL_TEMPLATE.replace("</mj-body>", ""), "MJML error"),
        (
            SMALL_TEMPLATE.replace("Subject", "Content-Type"),
            "t.mjml:3: `Content-Type` is not a header",
        ),
        // Two senders would silently become one odd display name.
        (
            SMALL_TEMPLATE.replace(
                "From: Sender <sender@example.org>",
                "From: A <a@example.org>, B <b@example.org>",
            ),
            "t.mjml:1: the From header writes 2 addresses",
        ),
    ];
    for (template, expected) in cases {
        let t = write(dir.path(), "t.mjml", &template);
        let r = render_to(&t, &csv, &dir.path().join("o"), &[]);
        r.expect_code(1);
        assert!(
            r.stderr.contains(expected),
            "expected `{expected}` in {}",
            r.stderr
        );
        assert!(
            !dir.path().join("o").exists(),
            "nothing is written on a fatal error"
        );
    }
}

#[test]
fn unknown_helpers_and_a_from_without_an_address_are_one_template_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut rows = String::from("email,name\n");
    for i in 0..50 {
        rows.push_str(&format!("r{i}@example.org,R{i}\n"));
    }
    let csv = write(dir.path(), "r.csv", rows);
    let cases = [
        (
            SMALL_TEMPLATE.replace("Dear {{name}}", "Dear {{shout name}}"),
            "t.mjml:9: the template calls `shout`",
        ),
        (
            SMALL_TEMPLATE.replace("Dear {{name}}", "Dear {{#if (shout name)}}x{{/if}}"),
            "t.mjml:9: the template calls `shout`",
        ),
        (
            SMALL_TEMPLATE.replace("Hello {{name}}", "Hello {{shout name}}"),
            "t.mjml:3: the template calls `shout`",
        ),
        (
            SMALL_TEMPLATE.replace("Sender <sender@example.org>", "World Jewish Congress"),
            "t.mjml:1: the From header `World Jewish Congress` has no address",
        ),
    ];
    for (template, expected) in cases {
        let t = write(dir.path(), "t.mjml", &template);
        let r = render_to(&t, &csv, &dir.path().join("o"), &[]);
        r.expect_code(1);
        assert!(
            r.stderr.contains(expected),
            "expected `{expected}` in {}",
            r.stderr
        );
        assert_eq!(
            r.stderr.matches("t.mjml:").count(),
            1,
            "one error, not one per row: {}",
            r.stderr
        );
        assert!(!r.stderr.contains("row "), "{}", r.stderr);
        assert!(!dir.path().join("o").exists());
    }
}

#[test]
fn missing_files_are_fatal_and_usage_errors_are_2() {
    let r = run(&["render", "nope.mjml", "recipients.example.csv"], None);
    r.expect_code(1);
    assert!(r.stderr.contains("cannot read nope.mjml"), "{}", r.stderr);
    run(&["render", "--no-such-flag"], None).expect_code(2);
    let r = run(
        &[
            "render",
            "templates/weremember.mjml",
            "recipients.example.csv",
            "--format",
            "pdf",
        ],
        None,
    );
    r.expect_code(2);
    assert!(r.stderr.contains("unknown format `pdf`"), "{}", r.stderr);
}

#[test]
fn help_documents_the_exit_codes() {
    let r = run(&["render", "--help"], None);
    r.expect_code(0);
    for code in [
        "0  all well",
        "1  fatal",
        "2  usage",
        "3  finished, but some rows were rejected",
    ] {
        assert!(r.stdout.contains(code), "{}", r.stdout);
    }
}

/// Snapshots of three letters: plain ASCII, non-ASCII (Hebrew), and the
/// empty salutation. Review changes with `cargo insta review`.
#[test]
fn snapshots_of_one_letter_per_language() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o");
    render_example(&out, &["--deterministic"]).expect_code(0);
    for stem in [
        "0001-david.breuer_example.org",
        "0004-yaakov.cohen_example.org",
        "0005-noa.levi_example.org",
        "0008-helene.lefevre_example.org",
    ] {
        for ext in ["eml", "txt", "html"] {
            let body = std::fs::read_to_string(out.join(format!("{stem}.{ext}"))).unwrap();
            insta::assert_snapshot!(format!("{stem}.{ext}"), body);
        }
    }
}

#[test]
fn mj_include_merges_the_included_file_and_stays_in_the_template_folder() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("campaign");
    std::fs::create_dir(&folder).unwrap();
    let csv = write(
        &folder,
        "r.csv",
        "email,name\na@example.org,Ann\nb@example.org,Bob\n",
    );
    write(
        &folder,
        "footer.mjml",
        "<mj-section><mj-column><mj-text>Bye {{name}}, from the footer</mj-text></mj-column></mj-section>\n",
    );
    let template = SMALL_TEMPLATE.replace(
        "  </mj-body>",
        "    <mj-include path=\"./footer.mjml\" />\n  </mj-body>",
    );
    let t = write(&folder, "t.mjml", &template);
    let render = |out: &std::path::Path| render_to(&t, &csv, out, &[]);
    let out = dir.path().join("o");
    render(&out).expect_code(0);
    for (file, name) in [
        ("0001-a_example.org.html", "Ann"),
        ("0002-b_example.org.html", "Bob"),
    ] {
        let html = std::fs::read_to_string(out.join(file)).unwrap();
        assert!(
            html.contains(&format!("Bye <bdi>{name}</bdi>, from the footer")),
            "{file}: {html}"
        );
    }

    // A path out of the template's folder is refused, and named.
    write(dir.path(), "secret.mjml", "<mj-text>secret</mj-text>\n");
    let template = template.replace("./footer.mjml", "../secret.mjml");
    write(&folder, "t.mjml", &template);
    let out = dir.path().join("o2");
    let r = render(&out);
    r.expect_code(1);
    assert!(r.stderr.contains("../secret.mjml"), "{}", r.stderr);
    assert!(
        r.stderr.contains("inside the template's folder"),
        "{}",
        r.stderr
    );
    assert!(!out.exists());
}

#[test]
fn a_variable_of_an_included_file_must_be_a_column_too() {
    let dir = tempfile::tempdir().unwrap();
    let csv = write(dir.path(), "r.csv", "email,name\na@example.org,Ann\n");
    write(
        dir.path(),
        "footer.mjml",
        "<mj-section><mj-column>\n<mj-text>Bye {{nmae}}</mj-text>\n</mj-column></mj-section>\n",
    );
    let t = write(
        dir.path(),
        "t.mjml",
        SMALL_TEMPLATE.replace(
            "  </mj-body>",
            "    <mj-include path=\"footer.mjml\" />\n  </mj-body>",
        ),
    );
    let out = dir.path().join("o");
    let r = render_to(&t, &csv, &out, &[]);
    r.expect_code(1);
    assert!(
        r.stderr.contains("footer.mjml:2: the template uses `nmae`"),
        "{}",
        r.stderr
    );
    assert!(!out.exists());
}

/// `SMALL_TEMPLATE` with `inner` in place of `Dear {{name}},` (in mj-text).
fn small_with_text(inner: &str) -> String {
    SMALL_TEMPLATE.replace("Dear {{name}},", inner)
}

fn render_template(dir: &std::path::Path, template: &str) -> Output {
    let t = write(dir, "t.mjml", template);
    let csv = write(dir, "r.csv", "email,name\na@example.org,Ann\n");
    render_to(&t, &csv, &dir.join("o"), &[])
}

#[test]
fn deep_nesting_is_a_template_error_not_an_abort() {
    let dir = tempfile::tempdir().unwrap();
    let n = 100_000;
    let divs = format!("{}x{}", "<div>".repeat(n), "</div>".repeat(n));
    let n = 20_000;
    let wrappers = SMALL_TEMPLATE.replace(
        "<mj-section>",
        &format!("{}<mj-section>", "<mj-wrapper>\n".repeat(n)),
    );
    let wrappers = wrappers.replace(
        "</mj-section>",
        &format!("</mj-section>{}", "</mj-wrapper>".repeat(n)),
    );
    let n = 5_000;
    let ifs = format!("{}x{}", "{{#if name}}\n".repeat(n), "{{/if}}".repeat(n));
    let cases = [
        (
            small_with_text(&divs),
            "t.mjml:9: elements nest more than 500",
        ),
        // mjml and mj-body, then wrapper k on line 7 + k: the 501st level is on 506.
        (wrappers, "t.mjml:506: elements nest more than 500"),
        (
            small_with_text(&ifs),
            "t.mjml:209: Handlebars blocks nest more than 200",
        ),
    ];
    for (template, expected) in cases {
        let r = render_template(dir.path(), &template);
        r.expect_code(1);
        assert!(
            r.stderr.contains(expected),
            "expected `{expected}` in {}",
            r.stderr
        );
    }
}

#[test]
fn nesting_up_to_the_limits_renders() {
    let dir = tempfile::tempdir().unwrap();
    // mjml, mj-body, mj-section, mj-column, mj-text: 5 levels around it.
    let n = 495;
    let divs = format!("{}x{}", "<div>".repeat(n), "</div>".repeat(n));
    let n = 200;
    let ifs = format!("{}Dear{}", "{{#if name}}".repeat(n), "{{/if}}".repeat(n));
    for template in [small_with_text(&divs), small_with_text(&ifs)] {
        let out = render_template(dir.path(), &template);
        out.expect_code(0);
        std::fs::remove_dir_all(dir.path().join("o")).unwrap();
    }
}

#[cfg(unix)]
#[test]
fn a_dangling_out_symlink_is_named_a_broken_link() {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(dir.path().join("nowhere"), dir.path().join("o")).unwrap();
    let (r, _) = render_small(dir.path(), b"email,name\na@example.org,Ann\n", &[]);
    r.expect_code(1);
    assert!(
        r.stderr.contains("o: it is a broken symbolic link (to ")
            && !r.stderr.contains("File exists"),
        "{}",
        r.stderr
    );
}

/// A file size limit (`ulimit -f`, SIGXFSZ) stands in for a full disk:
/// just enough blocks of 512 bytes for every file but row 4's `.eml` (the
/// largest). The run stops with exit 1, says how far it got, and leaves
/// only whole files that `manifest.json` lists. Row 4's community is
/// made longer than in the example, so that its letter stays the largest
/// by more than a block whatever the template's markup adds to every
/// letter (`<bdi>`s, fonts).
#[test]
fn a_write_that_runs_out_of_room_leaves_only_whole_files_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let (full, cut) = (dir.path().join("full"), dir.path().join("cut"));
    let example = std::fs::read_to_string(example_csv()).unwrap();
    let community = "קהילת אהבת ציון,";
    assert!(example.contains(community));
    let csv = dir.path().join("recipients.csv");
    std::fs::write(
        &csv,
        example.replacen(community, "קהילת אהבת ציון ירושלים עיר הקודש,", 1),
    )
    .unwrap();
    let r = run(
        &[
            "render",
            example_template().to_str().unwrap(),
            csv.to_str().unwrap(),
            "--out",
            full.to_str().unwrap(),
            "--deterministic",
        ],
        None,
    );
    r.expect_code(0);
    let whole: std::collections::BTreeMap<_, _> = tree(&full).into_iter().collect();
    let largest = "0004-yaakov.cohen_example.org.eml";
    let next = whole
        .iter()
        .filter(|(n, _)| *n != largest)
        .map(|(_, b)| b.len())
        .max()
        .unwrap();
    let blocks = next.div_ceil(512);
    assert!(
        whole[largest].len() > blocks * 512,
        "{largest} must be the only file above {blocks} blocks"
    );
    let script = format!(
        "ulimit -f {blocks}; exec {} render {} {} --out {} --deterministic",
        env!("CARGO_BIN_EXE_letterpress"),
        example_template().display(),
        csv.display(),
        cut.display()
    );
    let r = run_cmd(std::process::Command::new("sh").args(["-c", &script]), None);
    r.expect_code(1);
    assert!(r.stderr.contains("written whole"), "{}", r.stderr);
    assert!(
        r.stderr.contains("0004-yaakov.cohen_example.org.eml"),
        "{}",
        r.stderr
    );
    let left = tree(&cut);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cut.join("manifest.json")).unwrap()).unwrap();
    let listed: Vec<String> = manifest["letters"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|l| l["files"].as_object().unwrap().values())
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    assert!(!listed.iter().any(|f| f.starts_with("0004-")), "{listed:?}");
    // Rows run on several threads: the run stops at the first row not
    // done, which may come before row 4 (it was waiting its turn).
    let first_missing = (1..=12)
        .find(|row| !listed.iter().any(|f| f.starts_with(&format!("{row:04}-"))))
        .unwrap();
    assert!(
        r.stderr
            .contains(&format!("stopped at row {first_missing} ")),
        "{}",
        r.stderr
    );
    if first_missing != 4 {
        assert!(
            r.stderr
                .contains("not tried: the run stopped when row 4 (line 5) failed"),
            "{}",
            r.stderr
        );
    }
    for (name, bytes) in &left {
        if name.ends_with(".eml") || name.ends_with(".txt") || name.ends_with(".html") {
            if name == "index.html" {
                continue;
            }
            assert_eq!(bytes, &whole[name], "{name} is not whole");
            assert!(listed.contains(name), "{name} is not in manifest.json");
        }
    }
    assert!(!left.iter().any(|(n, _)| n.starts_with("0004-")));
    let written = listed.iter().filter(|f| f.ends_with(".eml")).count();
    assert!(
        r.stderr.contains(&format!("{written} letters")),
        "{}",
        r.stderr
    );
}
