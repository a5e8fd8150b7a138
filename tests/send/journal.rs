//! The journal of `send` cannot be misused: one sender at a time, and only
//! a letterpress journal of the same campaign is used; anything else is
//! refused before a letter goes out.

use super::*;

#[test]
fn another_campaigns_journal_is_refused_and_nothing_is_sent() {
    let sink = SmtpSink::start(&[]);
    let c = Camp::new(2);
    c.send(&sink.url(), &[]).expect_code(0);
    assert_eq!(sink.messages().len(), 2);
    // Another campaign (another template) pointed at this one's journal.
    write(
        c.dir.path(),
        "appeal.mjml",
        SMALL_TEMPLATE.replace("Hello", "Dear"),
    );
    let journal = c.journal().display().to_string();
    let mut a = c.args(&sink.url(), &["--journal", &journal]);
    a[1] = c.path("appeal.mjml").display().to_string();
    let before = journal_states(&c.journal());
    let r = run(&a, None);
    r.expect_code(1);
    assert!(
        r.stderr.contains("belongs to another campaign") && r.stderr.contains("news.mjml"),
        "{}",
        r.stderr
    );
    assert_eq!(sink.messages().len(), 2, "nothing more was sent");
    assert_eq!(journal_states(&c.journal()), before, "no recipient changed");
}

/// Starts `letterpress ARGS` without waiting for it.
fn spawn(args: &[String]) -> std::process::Child {
    letterpress()
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: std::process::Child) -> Output {
    let out = child.wait_with_output().unwrap();
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Each recipient's count at the sink.
fn once_each(sink: &SmtpSink, n: usize) {
    let d = sink.deliveries();
    assert_eq!(d.len(), n, "{d:?}");
    assert!(
        d.values().all(|&k| k == 1),
        "someone got two letters: {d:?}"
    );
}

#[test]
fn two_sends_on_one_journal_exactly_one_sends() {
    let sink = SmtpSink::start(&[]);
    let c = Camp::new(24);
    // Paced, so that the first is still sending when the second starts.
    let args = c.args(&sink.url(), &["--rate", "20/s", "--quiet"]);
    let first = spawn(&args);
    std::thread::sleep(Duration::from_millis(300));
    let second = finish(spawn(&args));
    let first = finish(first);
    // Whichever took the journal first sent everyone; the other stopped.
    let (sent, refused) = if first.code == 0 {
        (first, second)
    } else {
        (second, first)
    };
    sent.expect_code(0);
    refused.expect_code(1);
    assert!(
        refused
            .stderr
            .contains("is in use by letterpress send (pid")
            && refused.stderr.contains("--wait"),
        "{}",
        refused.stderr
    );
    once_each(&sink, 24);
    assert_eq!(counts(&c.status(&["--json"]))["accepted"], 24);
}

#[test]
fn with_wait_the_second_send_waits_and_sends_nobody_twice() {
    let sink = SmtpSink::start(&[]);
    let c = Camp::new(12);
    let first = spawn(&c.args(&sink.url(), &["--rate", "20/s", "--quiet"]));
    std::thread::sleep(Duration::from_millis(300));
    let second = c.send(&sink.url(), &["--wait", "--json"]);
    finish(first).expect_code(0);
    second.expect_code(0);
    assert!(
        second.stderr.contains("waiting for it (--wait)"),
        "{}",
        second.stderr
    );
    let s = summary(&second);
    assert_eq!(
        s["accepted"].as_u64().unwrap() + s["already_accepted"].as_u64().unwrap(),
        12
    );
    once_each(&sink, 12);
}

#[test]
fn a_foreign_sqlite_database_is_refused_and_left_as_it_was() {
    let sink = SmtpSink::start(&[]);
    let c = Camp::new(2);
    {
        let db = rusqlite::Connection::open(c.journal()).unwrap();
        db.execute_batch("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT); INSERT INTO notes(text) VALUES ('keep me');")
            .unwrap();
    }
    let before = std::fs::read(c.journal()).unwrap();
    let r = c.send(&sink.url(), &[]);
    r.expect_code(1);
    assert!(
        r.stderr.contains("database of another program") && r.stderr.contains("notes"),
        "{}",
        r.stderr
    );
    assert!(sink.messages().is_empty(), "nothing is sent");
    // Compared as bytes, without printing them (a database is long).
    let same = || std::fs::read(c.journal()).unwrap() == before;
    assert!(same(), "the file is untouched");
    // status refuses it the same way.
    c.status(&[]).expect_code(1);
    assert!(same(), "status left the file untouched");
}

#[test]
fn a_usage_error_leaves_no_journal() {
    let c = Camp::new(2);
    // A command line clap refuses, and one the configuration refuses (a
    // user without a password, and no terminal to ask on).
    let mut bad_flag = c.args("smtp://127.0.0.1:1", &["--no-such-flag"]);
    run(&bad_flag, None).expect_code(2);
    bad_flag.truncate(bad_flag.len() - 1);
    let r = run(
        &[bad_flag, vec!["--smtp-user".into(), "mailer".into()]].concat(),
        None,
    );
    r.expect_code(2);
    assert!(r.stderr.contains("needs a password"), "{}", r.stderr);
    let files: Vec<_> = std::fs::read_dir(c.path("")).unwrap().collect();
    assert_eq!(files.len(), 2, "only the template and the list: {files:?}");
}
