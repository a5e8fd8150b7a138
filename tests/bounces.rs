//! `letterpress bounces`: the fixture corpus (tests/fixtures/bounces/, see
//! its README) read from a Maildir and an mbox, recorded once in the
//! journal of a real send, appended to a suppression file that the next
//! send honours; and real DSNs from a private Postfix (in `postfix`).

use std::path::{Path, PathBuf};

use crate::common::*;
use crate::servers::*;

mod postfix;

/// What each fixture must be classified as: (file, returned message's
/// Message-ID, class, address, status).
const CORPUS: &[(&str, &str, &str, &str, &str)] = &[
    (
        "postfix-dsn-hard.eml",
        "20210125101502.8A1B2C3D4E@mx.wjc.example.org",
        "hard bounce",
        "ann@example.org",
        "5.1.1",
    ),
    (
        "dsn-delayed.eml",
        "delay-7f3a@relay.example.net",
        "soft bounce",
        "bo@example.org",
        "4.4.1",
    ),
    (
        "exim-hard.eml",
        "E1l42Xa-0003Qk-9Q@mx1.example.com",
        "hard bounce",
        "cy@example.com",
        "5.1.1",
    ),
    (
        "exim-delayed.eml",
        "E1l4Pq2-0007Aa-1B@mx1.example.com",
        "soft bounce",
        "di@example.com",
        "4.2.2",
    ),
    (
        "exchange-hard.eml",
        "a1b2c3d4-undeliverable@EX01.corp.example.net",
        "hard bounce",
        "eli@corp.example.net",
        "5.1.10",
    ),
    (
        "gmail-hard.eml",
        "5ff09a3c.gmail-bounce.6@mx.google.example",
        "hard bounce",
        "fay@gmail.example",
        "5.1.1",
    ),
    (
        "arf-abuse.eml",
        "arf-20210126-0001@feedback.hotmail.example",
        "complaint",
        "gus@hotmail.example",
        "abuse",
    ),
    (
        "auto-reply.eml",
        "oof-hana-1@example.org",
        "auto-reply",
        "",
        "",
    ),
    (
        "human-reply.eml",
        "reply-ivo-1@example.org",
        "unclassified",
        "",
        "",
    ),
    (
        "daemon-unclear.eml",
        "unclear-1@mx.example.biz",
        "unclassified",
        "",
        "",
    ),
];

/// The contacts the corpus is about, with contact ids for VERP.
const CONTACTS: &str = "email,name,contact_id\n\
    ann@example.org,Ann,c-1\nbo@example.org,Bo,c-2\ncy@example.com,Cy,c-3\n\
    di@example.com,Di,c-4\neli@corp.example.net,Eli,c-5\nfay@gmail.example,Fay,c-6\n\
    gus@hotmail.example,Gus,c-7\nhana@example.org,Hana,c-8\nivo@example.org,Ivo,c-9\n";

pub fn verp_template() -> String {
    SMALL_TEMPLATE.replacen(
        "Subject:",
        "Return-Path: <bounces+{{contact_id}}@wjc.example.org>\nSubject:",
        1,
    )
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

pub fn json(o: &Output) -> serde_json::Value {
    serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}\n{}", o.stdout, o.stderr))
}

/// A Maildir holding the corpus in `new/`.
fn corpus_maildir(dir: &Path) -> PathBuf {
    let md = dir.join("Maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(md.join(sub)).unwrap();
    }
    for (i, (file, ..)) in CORPUS.iter().enumerate() {
        let bytes = std::fs::read(fixture("bounces").join(file)).unwrap();
        std::fs::write(
            md.join("new").join(format!("16115{i:05}.M{i}P1.test")),
            bytes,
        )
        .unwrap();
    }
    md
}

/// The same corpus as one mbox file (`From ` lines, `>From` quoting).
fn corpus_mbox(dir: &Path) -> PathBuf {
    let mut mbox = String::new();
    for (file, ..) in CORPUS {
        let text = std::fs::read_to_string(fixture("bounces").join(file)).unwrap();
        mbox.push_str("From MAILER-DAEMON Mon Jan 25 10:15:02 2021\n");
        for line in text.lines() {
            if line.starts_with("From ") {
                mbox.push('>');
            }
            mbox.push_str(line);
            mbox.push('\n');
        }
        mbox.push('\n');
    }
    write(dir, "bounces.mbox", mbox)
}

fn send(dir: &Path, sink: &SmtpSink, journal: &Path, extra: &[String]) -> Output {
    let mut a = vec![
        "send".to_string(),
        s(&dir.join("news.mjml")),
        s(&dir.join("list.csv")),
        "--smtp".into(),
        sink.url(),
        "--journal".into(),
        s(journal),
        "--json".into(),
    ];
    a.extend(extra.iter().cloned());
    run(&a, None)
}

#[test]
fn the_corpus_is_classified_recorded_once_and_suppressed_in_the_next_send() {
    let sink = SmtpSink::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "news.mjml", verp_template());
    write(d, "list.csv", CONTACTS);
    let journal = d.join("first.sqlite");
    send(d, &sink, &journal, &[]).expect_code(0);
    assert_eq!(sink.count(), 9);

    let out = d.join("suppressed.csv");
    let bounces = |mailbox: &Path| {
        run(
            &[
                "bounces",
                &s(mailbox),
                "--journal",
                &s(&journal),
                "--suppress-out",
                &s(&out),
                "--json",
            ],
            None,
        )
    };
    let r = bounces(&corpus_maildir(d));
    r.expect_code(0);
    let found = json(&r);
    assert_eq!(found["messages"], CORPUS.len());
    let findings = found["findings"].as_array().unwrap();
    assert_eq!(findings.len(), CORPUS.len(), "{findings:#?}");
    for (file, id, class, address, status) in CORPUS {
        let f = findings
            .iter()
            .find(|f| f["message"] == *id)
            .unwrap_or_else(|| panic!("{file}: no finding for {id}: {findings:#?}"));
        assert_eq!(f["class"], *class, "{file}: {f:#}");
        if !address.is_empty() {
            assert_eq!(f["address"], *address, "{file}: {f:#}");
            assert_eq!(f["status"], *status, "{file}: {f:#}");
            assert_eq!(f["new"], true, "{file}");
        }
    }
    // Matched to the contact by the VERP address the bounce came back to.
    let ann = findings.iter().find(|f| f["address"] == "ann@example.org");
    assert_eq!(ann.unwrap()["matched_by"], "VERP");
    // No auto-reply or unclear message is ever a hard bounce.
    assert_eq!(
        findings
            .iter()
            .filter(|f| f["class"] == "hard bounce")
            .count(),
        4
    );

    // The same mail again, as an mbox: nothing is new, nothing appended.
    let r = bounces(&corpus_mbox(d));
    r.expect_code(0);
    let again = json(&r);
    let findings = again["findings"].as_array().unwrap();
    assert_eq!(findings.len(), CORPUS.len(), "{findings:#?}");
    assert!(findings.iter().all(|f| f["new"] == false), "{findings:#?}");
    assert_eq!(again["suppress_out_appended"], 0);

    // status counts them and shows code and diagnostic; --failed-csv lists them.
    let failed = d.join("failed.csv");
    let st = run(&["status", &s(&journal), "--failed-csv", &s(&failed)], None);
    st.expect_code(0);
    assert!(
        st.stdout
            .contains("after sending: 4 hard bounces, 2 soft bounces, 1 complaints"),
        "{}",
        st.stdout
    );
    assert!(
        st.stdout.contains("hard: cy@example.com 5.1.1 550 5.1.1"),
        "{}",
        st.stdout
    );
    let csv = std::fs::read_to_string(&failed).unwrap();
    assert!(csv.contains("Ann,c-1,,hard 5.1.1: "), "{csv}");
    assert!(csv.contains("Gus,c-7,,complaint abuse: "), "{csv}");

    // The next campaign (its own journal) with the suppression file skips
    // the hard bounces and the complaint, and says so; soft bounces (one
    // campaign, under the limit of 3) are sent.
    let before = sink.count();
    let r = send(
        d,
        &sink,
        &d.join("second.sqlite"),
        &["--suppress".into(), s(&out)],
    );
    r.expect_code(0);
    let sum = json(&r);
    assert_eq!(sum["suppressed"], 5, "{}", r.stderr);
    assert_eq!(sum["accepted"], 4);
    assert_eq!(sink.count(), before + 4);
    for a in [
        "ann@example.org",
        "cy@example.com",
        "eli@corp.example.net",
        "fay@gmail.example",
    ] {
        assert!(
            r.stderr.contains(&format!("{a} is suppressed: bounced")),
            "{a}: {}",
            r.stderr
        );
    }
    assert!(
        r.stderr
            .contains("gus@hotmail.example is suppressed: complained"),
        "{}",
        r.stderr
    );

    // The first campaign's journal itself knows them too: a re-run says so.
    let r = send(d, &sink, &journal, &[]);
    r.expect_code(0);
    let sum = json(&r);
    assert_eq!(
        (sum["suppressed"].as_u64(), sum["accepted"].as_u64()),
        (Some(5), Some(0))
    );
    assert!(
        r.stderr
            .contains("ann@example.org is suppressed: bounced 5.1.1"),
        "{}",
        r.stderr
    );
}

/// A campaign sent by workers sharing a PostgreSQL journal: `bounces`
/// records there (registering no worker), `status` counts them, and
/// `journal copy` carries them both ways.
#[test]
fn a_postgresql_journal_keeps_the_bounces_and_a_copy_carries_them() {
    let pg = PgCluster::get();
    let url = pg.database("bounced");
    let sink = SmtpSink::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "news.mjml", verp_template());
    write(d, "list.csv", CONTACTS);
    let sent = run_env(
        &[
            "send",
            &s(&d.join("news.mjml")),
            &s(&d.join("list.csv")),
            "--smtp",
            &sink.url(),
            "--journal",
            &url,
        ],
        &pg.env(),
    );
    sent.expect_code(0);
    assert_eq!(sink.count(), 9);
    let bounces = |journal: &str| {
        run_env(
            &[
                "bounces",
                &s(&corpus_maildir(d)),
                "--journal",
                journal,
                "--json",
            ],
            &pg.env(),
        )
    };
    let r = bounces(&url);
    r.expect_code(0);
    let findings = json(&r)["findings"].as_array().unwrap().clone();
    let new_hard = findings
        .iter()
        .filter(|f| f["class"] == "hard bounce" && f["new"] == true)
        .count();
    assert_eq!(new_hard, 4, "{findings:#?}");
    let ann = findings.iter().find(|f| f["address"] == "ann@example.org");
    assert_eq!(ann.unwrap()["matched_by"], "VERP");
    // Recorded once.
    let again = json(&bounces(&url));
    let findings = again["findings"].as_array().unwrap();
    assert!(findings.iter().all(|f| f["new"] == false), "{findings:#?}");
    assert_eq!(
        pg.psql("bounced", "SELECT count(*) FROM letterpress_feedback"),
        "7"
    );
    // The send's worker is the only one.
    assert_eq!(
        pg.psql("bounced", "SELECT count(*) FROM letterpress_workers"),
        "1"
    );
    let counted = "after sending: 4 hard bounces, 2 soft bounces, 1 complaints";
    let status = |journal: &str| {
        let st = run_env(&["status", journal], &pg.env());
        st.expect_code(0);
        assert!(st.stdout.contains(counted), "{journal}: {}", st.stdout);
    };
    status(&url);
    // To a file and back to another database: the bounces go along.
    let file = s(&d.join("archive.sqlite"));
    run_env(&["journal", "copy", &url, &file], &pg.env()).expect_code(0);
    status(&file);
    let back = pg.database("bounced_back");
    run_env(&["journal", "copy", &file, &back], &pg.env()).expect_code(0);
    status(&back);
    // A database no campaign was sent with is refused.
    let empty = pg.database("bounced_none");
    let r = bounces(&empty);
    r.expect_code(1);
    assert!(r.stderr.contains("holds no campaign"), "{}", r.stderr);
}

#[test]
fn a_soft_bounce_in_the_third_campaign_suppresses_the_address() {
    let sink = SmtpSink::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "news.mjml", verp_template());
    write(d, "list.csv", CONTACTS);
    let journal = d.join("j.sqlite");
    send(d, &sink, &journal, &[]).expect_code(0);
    // bo@ soft-bounced in two earlier campaigns, di@ in one.
    let out = write(
        d,
        "suppressed.csv",
        "email,reason,campaign,detail\n\
         bo@example.org,soft-bounce,spring.mjml,4.2.2 full\n\
         bo@example.org,soft-bounce,summer.mjml,4.2.2 full\n\
         di@example.com,soft-bounce,summer.mjml,4.4.1 timeout\n",
    );
    let r = run(
        &[
            "bounces",
            &s(&corpus_maildir(d)),
            "--journal",
            &s(&journal),
            "--suppress-out",
            &s(&out),
        ],
        None,
    );
    r.expect_code(0);
    assert!(
        r.stdout.contains(
            "suppressed by the soft-bounce rule: bo@example.org: soft-bounced in 3 campaigns"
        ),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("rule: di@"), "{}", r.stdout);
    let r = send(
        d,
        &sink,
        &d.join("next.sqlite"),
        &["--suppress".into(), s(&out)],
    );
    r.expect_code(0);
    assert_eq!(json(&r)["suppressed"], 6, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("bo@example.org is suppressed: soft-bounced in 3 campaigns"),
        "{}",
        r.stderr
    );
    // With a higher limit, bo@ is sent again.
    let r = send(
        d,
        &sink,
        &d.join("third.sqlite"),
        &[
            "--suppress".into(),
            s(&out),
            "--soft-bounce-limit".into(),
            "4".into(),
        ],
    );
    assert_eq!(json(&r)["suppressed"], 5, "{}", r.stderr);
}

#[test]
fn a_journal_that_does_not_exist_is_refused_not_made() {
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("j.sqlite");
    let r = run(
        &[
            "bounces",
            &s(&corpus_maildir(dir.path())),
            "--journal",
            &s(&j),
        ],
        None,
    );
    r.expect_code(1);
    assert!(r.stderr.contains("does not exist"), "{}", r.stderr);
    assert!(!j.exists());
}

#[test]
fn a_folder_that_is_no_maildir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("j.sqlite");
    let r = run(&["bounces", &s(dir.path()), "--journal", &s(&j)], None);
    r.expect_code(2);
    assert!(r.stderr.contains("not a Maildir"), "{}", r.stderr);
}
