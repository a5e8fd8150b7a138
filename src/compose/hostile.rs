//! Property tests: hostile contact lists, values, header blocks and
//! templates through the compose flow, 10,000 cases per target (they run in
//! `cargo test`, so in `.ci/run`). The invariants: no panic; every row is
//! either a letter or a problem with its line; every letter parses back
//! with the row's own To address and Subject; no header line is longer than
//! 998 bytes. (That no file name leaves the output folder is checked beside
//! `file_stem`, in `deliver::sink`.)

use std::io::Cursor;
use std::path::Path;

use proptest::prelude::*;

use crate::compose::build::Builder;
use crate::compose::campaign::Campaign;
use crate::compose::recipients::{Recipient, Recipients};
use crate::compose::stamp::Clock;
use crate::compose::template::TemplateFile;

const CASES: u32 = 10_000;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        // A crasher found here is kept as a test of its own, not a file.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Values an attacker or a careless export might put in a cell: control
/// characters, line breaks, quotes, angle brackets, encoded-word markers,
/// any Unicode, and words too long for a header line.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ -~\r\n\t\u{0}\u{7f}<>\",;:@=?%{}]{0,40}",
        "[a-zA-Z\u{5d0}-\u{5ea}\u{1f600} ]{0,30}",
        "[a-z]{990,1100}",
    ]
}

fn addresses() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9._-]{1,20}@[a-z0-9-]{1,12}\\.(org|example)",
        hostile(),
    ]
}

/// The list's rows read back, as the runs read them.
fn rows(csv: Vec<u8>) -> crate::Result<Recipients> {
    Recipients::from_reader("hostile.csv".into(), Box::new(Cursor::new(csv)), None)
}

fn one_row(columns: &[&str], values: &[String]) -> Recipient {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(columns).unwrap();
    w.write_record(values).unwrap();
    let mut r = rows(w.into_inner().unwrap()).unwrap();
    match r.next_row().unwrap() {
        Some(Ok(row)) => row,
        other => panic!("a CSV written by the csv crate reads back: {other:?}"),
    }
}

const TEMPLATE: &str = "From: Sender <sender@example.org>\n\
To: {{name}} <{{email}}>\n\
Reply-To: {{name}} <reply@example.org>\n\
Subject: Hello {{name}}\n\
List-Unsubscribe: <https://example.org/u?c={{cid}}>\n\
X-Tag: {{cid}}\n\
\n\
<mjml><mj-body><mj-section><mj-column><mj-text>Dear {{name}}, <a href=\"https://example.org/?c={{cid}}\">{{cid}}</a></mj-text></mj-column></mj-section></mj-body></mjml>\n";

thread_local! {
    /// The campaign is compiled once per test thread: MJML is the slow part.
    static CAMPAIGN: Campaign = {
        let t = TemplateFile::parse(Path::new("hostile.mjml"), TEMPLATE, None).unwrap();
        let r = one_row(&["email", "name", "cid"], &["a@x.org".into(), "A".into(), "1".into()]);
        Campaign::compile(t, &r.columns, "hostile.csv").unwrap()
    };
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_bytes_after_a_header_line_are_rows_or_located_problems(
        body in proptest::collection::vec(any::<u8>(), 0..300)
    ) {
        let mut csv = b"email,name\n".to_vec();
        csv.extend(body);
        if let Ok(mut r) = rows(csv) {
            while let Ok(Some(row)) = r.next_row() {
                match row {
                    Ok(row) => prop_assert!(row.line >= 2 && row.row >= 1),
                    Err(p) => prop_assert!(p.line.is_some(), "{p}"),
                }
            }
        }
    }

    #[test]
    fn hostile_values_make_a_whole_letter_or_a_problem_with_the_row(
        name in hostile(), email in addresses(), cid in hostile()
    ) {
        let r = one_row(&["email", "name", "cid"], &[email.clone(), name.clone(), cid]);
        CAMPAIGN.with(|c| -> Result<(), TestCaseError> {
            match Builder::new(c, Clock::Fixed(0), 0).build(&r) {
                Err(p) => {
                    prop_assert_eq!(p.row, Some(1));
                    prop_assert!(p.line.is_some());
                }
                Ok(built) => {
                    let eml = &built.eml;
                    let head_end = eml.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
                    for line in eml[..head_end].split(|&b| b == b'\n') {
                        prop_assert!(line.len() <= 998 + 1, "a header line of {} bytes", line.len());
                    }
                    let m = mail_parser::MessageParser::default().parse(eml).unwrap();
                    let to = m.to().and_then(|a| a.first()).and_then(|a| a.address());
                    prop_assert_eq!(to, Some(email.trim()));
                    prop_assert_eq!(m.to().map(|a| a.iter().count()), Some(1));
                    let want = format!("Hello {name}");
                    prop_assert_eq!(m.subject().unwrap_or_default(), want.trim());
                }
            }
            Ok(())
        })?;
    }

    #[test]
    fn hostile_header_blocks_compile_or_fail_with_an_error(
        headers in proptest::collection::vec(("[A-Za-z-]{1,12}", hostile()), 0..6),
        body in prop_oneof![
            Just("<mjml><mj-body></mj-body></mjml>".to_string()),
            "[ -~\n]{0,80}",
        ],
    ) {
        let mut source = String::new();
        for (name, value) in &headers {
            source.push_str(&format!("{name}: {value}\n"));
        }
        source.push('\n');
        source.push_str(&body);
        if let Ok(t) = TemplateFile::parse(Path::new("hostile.mjml"), &source, None) {
            let r = one_row(&["email"], &["a@x.org".into()]);
            // An error is the expected answer to most of these; a panic is
            // the defect.
            let _ = Campaign::compile(t, &r.columns, "hostile.csv");
        }
    }
}
