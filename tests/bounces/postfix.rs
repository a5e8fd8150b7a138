//! Real bounces: a private Postfix hosts the members' domain (one mailbox,
//! two addresses that do not exist) and the campaign's bounce domain, so
//! Postfix itself writes the RFC 3464 DSNs and delivers them, to the VERP
//! address each letter was sent from, into a Maildir that `letterpress
//! bounces` then reads.

use std::path::Path;
use std::time::{Duration, Instant};

use super::{json, verp_template};
use crate::common::*;
use crate::servers::*;

/// Waits until `dir` holds `n` files.
fn wait_for_files(dir: &Path, n: usize, postfix: &Postfix) -> Vec<std::path::PathBuf> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let files: Vec<_> = std::fs::read_dir(dir)
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        if files.len() >= n {
            return files;
        }
        assert!(
            Instant::now() < deadline,
            "{} holds {} of {n} messages after 60 s\n--- log\n{}",
            dir.display(),
            files.len(),
            postfix.log()
        );
        postfix.flush();
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Makes `postfix` the final destination of `domains`, with a Maildir for
/// each of `mailboxes` (`address folder/`) below the returned folder; any
/// other address of those domains does not exist, and Postfix bounces it.
/// `send TEMPLATE CSV --sendmail=<the instance's> --journal JOURNAL --json`,
/// and `extra`.
fn send_through(
    postfix: &Postfix,
    template: &Path,
    csv: &Path,
    journal: &Path,
    extra: &[&str],
) -> Output {
    let mut a = vec![
        "send".to_string(),
        template.display().to_string(),
        csv.display().to_string(),
        format!("--sendmail={}", postfix.sendmail().display()),
        "--journal".into(),
        journal.display().to_string(),
        "--json".into(),
    ];
    a.extend(extra.iter().map(|s| s.to_string()));
    run_env(&a, &postfix.env())
}

fn host(postfix: &mut Postfix, domains: &str, mailboxes: &[(&str, &str)]) -> std::path::PathBuf {
    let base = postfix.dir().join("mail");
    std::fs::create_dir(&base).unwrap();
    std::os::unix::fs::chown(&base, Some(65534), Some(65534)).unwrap();
    let map: String = mailboxes
        .iter()
        .map(|(a, f)| format!("{a} {f}/\n"))
        .collect();
    let maps = write(postfix.dir(), "vmailbox", map);
    postfix.restart_with(&[
        &format!("virtual_mailbox_domains = {domains}"),
        &format!("virtual_mailbox_maps = texthash:{}", maps.display()),
        &format!("virtual_mailbox_base = {}", base.display()),
        "virtual_uid_maps = static:65534",
        "virtual_gid_maps = static:65534",
        "recipient_delimiter = +",
    ]);
    base
}

#[test]
fn postfix_bounces_are_classified_matched_and_suppressed_in_the_next_send() {
    // No letter leaves this Postfix: both domains are its own.
    let sink = SmtpSink::start(&[]);
    let mut postfix = Postfix::start(sink.port);
    let base = host(
        &mut postfix,
        "members.test, wjc.example.org",
        &[
            ("ann@members.test", "members/ann"),
            ("bounces@wjc.example.org", "wjc/bounces"),
        ],
    );

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "news.mjml", verp_template());
    write(
        d,
        "list.csv",
        "email,name,contact_id\n\
         ann@members.test,Ann,c-1\n\
         gone1@members.test,Gone One,c-2\n\
         gone2@members.test,Gone Two,c-3\n",
    );
    let journal = d.join("campaign.sqlite");
    let send = |journal: &Path, extra: &[&str]| {
        send_through(
            &postfix,
            &d.join("news.mjml"),
            &d.join("list.csv"),
            journal,
            extra,
        )
    };
    let r = send(&journal, &[]);
    r.expect_code(0);
    assert_eq!(json(&r)["accepted"], 3);

    // Ann's letter arrives, sent from her own VERP address.
    let ann = wait_for_files(&base.join("members/ann/new"), 1, &postfix);
    let letter = std::fs::read_to_string(&ann[0]).unwrap();
    assert!(
        letter.starts_with("Return-Path: <bounces+c-1@wjc.example.org>"),
        "{letter}"
    );
    // The other two come back: Postfix's DSNs to bounces+c-2 and +c-3.
    let maildir = base.join("wjc/bounces");
    let dsns = wait_for_files(&maildir.join("new"), 2, &postfix);
    for p in &dsns {
        let t = std::fs::read_to_string(p).unwrap();
        assert!(t.contains("report-type=delivery-status"), "{t}");
    }

    let out = d.join("suppressed.csv");
    let bounces = || {
        run(
            &[
                "bounces",
                &maildir.display().to_string(),
                "--journal",
                &journal.display().to_string(),
                "--suppress-out",
                &out.display().to_string(),
                "--json",
            ],
            None,
        )
    };
    let r = bounces();
    r.expect_code(0);
    let found = json(&r);
    let mut got: Vec<(String, String, String, String)> = found["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["class"].as_str().unwrap().to_string(),
                f["address"].as_str().unwrap_or_default().to_string(),
                f["status"].as_str().unwrap().to_string(),
                f["matched_by"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            (
                "hard bounce".into(),
                "gone1@members.test".into(),
                "5.1.1".into(),
                "Message-ID".into()
            ),
            (
                "hard bounce".into(),
                "gone2@members.test".into(),
                "5.1.1".into(),
                "Message-ID".into()
            ),
        ],
        "{}",
        r.stdout
    );
    // Run again: nothing counted twice.
    let again = json(&bounces());
    assert!(again["findings"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["new"] == false));
    assert_eq!(again["suppress_out_appended"], 0);
    let st = run(&["status", &journal.display().to_string()], None);
    assert!(
        st.stdout.contains("after sending: 2 hard bounces"),
        "{}",
        st.stdout
    );

    // The next campaign, with the suppression file: only Ann gets it.
    let r = send(
        &d.join("next.sqlite"),
        &["--suppress", &out.display().to_string()],
    );
    r.expect_code(0);
    let sum = json(&r);
    assert_eq!(
        (sum["accepted"].as_u64(), sum["suppressed"].as_u64()),
        (Some(1), Some(2))
    );
    assert!(
        r.stderr
            .contains("gone1@members.test is suppressed: bounced"),
        "{}",
        r.stderr
    );
    wait_for_files(&base.join("members/ann/new"), 2, &postfix);
}

/// The example campaign through a Postfix that hosts example.org with nine
/// of its twelve contacts: Postfix bounces three; one more contact
/// complains. Sent again, the campaign skips those four and says why.
#[test]
fn the_example_campaign_sent_again_after_bounces_skips_the_bounced_and_the_complainer() {
    const GONE: [&str; 3] = [
        "noa.levi@example.org",
        "eli.friedman@example.org",
        "tamar.ben-david@example.org",
    ];
    let sink = SmtpSink::start(&[]);
    let mut postfix = Postfix::start(sink.port);
    let csv = std::fs::read_to_string(example_csv()).unwrap();
    let contacts: Vec<String> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().to_string())
        .collect();
    assert_eq!(contacts.len(), 12);
    let mut mailboxes: Vec<(String, String)> = contacts
        .iter()
        .filter(|a| !GONE.contains(&a.as_str()))
        .map(|a| {
            (
                a.clone(),
                format!("members/{}", a.split('@').next().unwrap()),
            )
        })
        .collect();
    // Without Return-Path, bounces go to the From address.
    mailboxes.push(("weremember@wjc.example.org".into(), "wjc/weremember".into()));
    let refs: Vec<(&str, &str)> = mailboxes
        .iter()
        .map(|(a, f)| (a.as_str(), f.as_str()))
        .collect();
    let base = host(&mut postfix, "example.org, wjc.example.org", &refs);

    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("weremember.sqlite");
    let send = |journal: &Path, extra: &[&str]| {
        send_through(
            &postfix,
            &example_template(),
            &example_csv(),
            journal,
            extra,
        )
    };
    let r = send(&journal, &[]);
    r.expect_code(0);
    assert_eq!(json(&r)["accepted"], 12);
    let maildir = base.join("wjc/weremember");
    wait_for_files(&maildir.join("new"), 3, &postfix);
    // And a complaint from a contact whose letter arrived, as an ARF
    // report (the fixture's, about this contact).
    let arf = std::fs::read_to_string(fixture("bounces/arf-abuse.eml"))
        .unwrap()
        .replace("gus@hotmail.example", "david.breuer@example.org");
    write(&maildir.join("new"), "1611600000.arf.test", arf);

    let out = dir.path().join("suppressed.csv");
    let r = run(
        &[
            "bounces",
            &maildir.display().to_string(),
            "--journal",
            &journal.display().to_string(),
            "--suppress-out",
            &out.display().to_string(),
        ],
        None,
    );
    r.expect_code(0);
    assert!(
        r.stdout
            .contains("hard bounce: 3 (3 new, 0 recorded before)"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("complaint: 1 (1 new"), "{}", r.stdout);
    assert!(r.stdout.contains("unclassified: 0"), "{}", r.stdout);
    for a in GONE {
        assert!(
            r.stdout.contains(&format!("  {a} 5.1.1 "))
                && r.stdout.contains("(matched by Message-ID)"),
            "{a}: {}",
            r.stdout
        );
    }

    // Sent again with the same journal: the four are named and skipped.
    let r = send(&journal, &[]);
    r.expect_code(0);
    let sum = json(&r);
    assert_eq!(
        (sum["suppressed"].as_u64(), sum["accepted"].as_u64()),
        (Some(4), Some(0))
    );
    for a in GONE {
        assert!(
            r.stderr
                .contains(&format!("{a} is suppressed: bounced 5.1.1")),
            "{}",
            r.stderr
        );
    }
    assert!(
        r.stderr
            .contains("david.breuer@example.org is suppressed: complained abuse"),
        "{}",
        r.stderr
    );
    // The next campaign with the suppression file: eight letters.
    let r = send(
        &dir.path().join("next.sqlite"),
        &["--suppress", &out.display().to_string()],
    );
    r.expect_code(0);
    let sum = json(&r);
    assert_eq!(
        (sum["suppressed"].as_u64(), sum["accepted"].as_u64()),
        (Some(4), Some(8))
    );
}
