//! `--suppress FILE` on check, render and send, `status`'s count of the
//! suppressed, and `Return-Path:` as the envelope sender (VERP).

use std::path::PathBuf;

use crate::common::*;
use crate::servers::*;

/// The small template with a VERP `Return-Path:`, four contacts, and a
/// suppression CSV (with reasons) and a plain list naming two of them in
/// other letter cases.
struct Camp {
    dir: tempfile::TempDir,
}

impl Camp {
    fn new() -> Camp {
        let dir = tempfile::tempdir().unwrap();
        let template = SMALL_TEMPLATE.replacen(
            "Subject:",
            "Return-Path: <bounces+{{name}}@example.org>\nSubject:",
            1,
        );
        write(dir.path(), "news.mjml", template);
        write(
            dir.path(),
            "list.csv",
            "email,name\na@example.org,ann\nb@example.org,bo\nc@example.org,cy\nd@example.org,di\n",
        );
        write(
            dir.path(),
            "optout.csv",
            "email,reason,when\nB@Example.org,unsubscribed,2026-01-02\n",
        );
        write(
            dir.path(),
            "plain.txt",
            "# from the old system\nD@EXAMPLE.ORG\n",
        );
        Camp { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn input(&self, command: &str) -> Vec<String> {
        vec![
            command.to_string(),
            self.path("news.mjml").display().to_string(),
            self.path("list.csv").display().to_string(),
            "--suppress".into(),
            self.path("optout.csv").display().to_string(),
            "--suppress".into(),
            self.path("plain.txt").display().to_string(),
        ]
    }
}

#[test]
fn check_lists_each_suppressed_contact_with_its_reason() {
    let c = Camp::new();
    let r = run(&c.input("check"), None);
    r.expect_code(0);
    assert!(
        r.stdout
            .contains("b@example.org is suppressed: unsubscribed (")
            && r.stdout.contains("optout.csv line 2)"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("d@example.org is suppressed: listed (")
            && r.stdout.contains("plain.txt line 2)"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("; 2 suppressed"), "{}", r.stdout);
    assert!(
        !r.stdout.contains("a@example.org is suppressed"),
        "{}",
        r.stdout
    );
}

#[test]
fn render_leaves_suppressed_contacts_out_unless_asked() {
    let c = Camp::new();
    let out = c.path("out");
    let mut a = c.input("render");
    a.extend([
        "--out".into(),
        out.display().to_string(),
        "--format".into(),
        "eml".into(),
    ]);
    let r = run(&a, None);
    r.expect_code(0);
    let mut names: Vec<String> = tree(&out).into_iter().map(|(n, _)| n).collect();
    names.retain(|n| n.ends_with(".eml"));
    assert_eq!(names.len(), 2, "{names:?}\n{}", r.stderr);
    assert!(
        names.iter().all(|n| !n.contains("b@") && !n.contains("d@")),
        "{names:?}"
    );
    assert!(
        r.stderr
            .contains("b@example.org is suppressed: unsubscribed"),
        "{}",
        r.stderr
    );
    a.extend(["--include-suppressed".into(), "--force".into()]);
    run(&a, None).expect_code(0);
    let n = tree(&out)
        .into_iter()
        .filter(|(n, _)| n.ends_with(".eml"))
        .count();
    assert_eq!(n, 4);
    // The letter has no Return-Path header: that is the envelope's.
    for (_, bytes) in tree(&out) {
        assert!(!String::from_utf8_lossy(&bytes).contains("Return-Path"));
    }
}

#[test]
fn send_never_sends_to_the_suppressed_and_journals_them() {
    let sink = SmtpSink::start(&[]);
    let c = Camp::new();
    let mut a = c.input("send");
    a.extend(["--smtp".into(), sink.url(), "--json".into()]);
    let r = run(&a, None);
    r.expect_code(0);
    let s: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(s["accepted"], 2);
    assert_eq!(s["suppressed"], 2);
    assert!(
        r.stderr
            .contains("b@example.org is suppressed: unsubscribed"),
        "{}",
        r.stderr
    );
    let mut got: Vec<(String, String)> = sink
        .messages()
        .into_iter()
        .map(|d| (d.rcpt, d.mail_from))
        .collect();
    got.sort();
    // Each letter's envelope sender is its own VERP address.
    assert_eq!(
        got,
        [
            (
                "a@example.org".to_string(),
                "bounces+ann@example.org".to_string()
            ),
            (
                "c@example.org".to_string(),
                "bounces+cy@example.org".to_string()
            ),
        ]
    );
    let journal = c.path("news.journal.sqlite");
    let st = run(&["status", journal.to_str().unwrap(), "--json"], None);
    st.expect_code(0);
    let counts: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    assert_eq!(counts["suppressed"], 2);
    assert_eq!(counts["accepted"], 2);
    // Without the lists, the next run sends the two that were suppressed.
    let b = vec![
        "send".to_string(),
        c.path("news.mjml").display().to_string(),
        c.path("list.csv").display().to_string(),
        "--smtp".into(),
        sink.url(),
        "--json".into(),
    ];
    let r = run(&b, None);
    r.expect_code(0);
    let s: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        (s["accepted"].as_u64(), s["already_accepted"].as_u64()),
        (Some(2), Some(2))
    );
}

#[test]
fn a_suppression_file_without_an_email_column_is_refused_by_name() {
    let c = Camp::new();
    write(c.dir.path(), "bad.csv", "address,reason\nx@y.org,bounced\n");
    let r = run(
        &[
            "check",
            c.path("news.mjml").to_str().unwrap(),
            c.path("list.csv").to_str().unwrap(),
            "--suppress",
            c.path("bad.csv").to_str().unwrap(),
        ],
        None,
    );
    r.expect_code(2);
    assert!(
        r.stderr.contains("bad.csv: line 1") && r.stderr.contains("`email` column"),
        "{}",
        r.stderr
    );
}
