//! `letterpress send` and `letterpress status` against real SMTP servers on
//! 127.0.0.1 (smtp-sink, aiosmtpd) and a scripted one for faults on cue, and
//! `send --sendmail` through a private Postfix relaying to smtp-sink.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::servers::*;

mod journal;
mod postgres;

/// A campaign in a temporary folder: the small template and `rows`
/// contacts `person{i}@example.org`. The journal lands next to the list.
struct Camp {
    dir: tempfile::TempDir,
}

impl Camp {
    fn new(rows: usize) -> Camp {
        let mut csv = String::from("email,name\n");
        for i in 1..=rows {
            csv.push_str(&format!("person{i}@example.org,Person {i}\n"));
        }
        Camp::with_csv(&csv)
    }

    fn with_csv(csv: &str) -> Camp {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "news.mjml", SMALL_TEMPLATE);
        write(dir.path(), "list.csv", csv);
        Camp { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn journal(&self) -> PathBuf {
        self.path("news.journal.sqlite")
    }

    fn args(&self, url: &str, extra: &[&str]) -> Vec<String> {
        let mut a = vec![
            "send".to_string(),
            self.path("news.mjml").display().to_string(),
            self.path("list.csv").display().to_string(),
            "--smtp".into(),
            url.into(),
            "--retry-delay".into(),
            "10ms".into(),
            "--timeout".into(),
            "2s".into(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    }

    fn send(&self, url: &str, extra: &[&str]) -> Output {
        run(&self.args(url, extra), None)
    }

    /// `send --sendmail=PROGRAM` (no --smtp), with `env` for the program.
    fn sendmail(&self, program: &Path, env: &[(String, String)], extra: &[&str]) -> Output {
        let mut a = vec![
            "send".to_string(),
            self.path("news.mjml").display().to_string(),
            self.path("list.csv").display().to_string(),
            format!("--sendmail={}", program.display()),
            "--retry-delay".into(),
            "10ms".into(),
            "--timeout".into(),
            "10s".into(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        run_env(&a, env)
    }

    fn status(&self, extra: &[&str]) -> Output {
        let mut a = vec!["status".to_string(), self.journal().display().to_string()];
        a.extend(extra.iter().map(|s| s.to_string()));
        run(&a, None)
    }
}

/// The counts from `status --json`.
/// What `send` must put on the wire: `render --format eml --deterministic`.
fn render_eml(template: &Path, csv: &Path, out: &Path) {
    run(
        &[
            "render".as_ref(),
            template.as_os_str(),
            csv.as_os_str(),
            "--out".as_ref(),
            out.as_os_str(),
            "--format".as_ref(),
            "eml".as_ref(),
            "--deterministic".as_ref(),
        ],
        None,
    )
    .expect_code(0);
}

fn counts(o: &Output) -> serde_json::Value {
    serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", o.stdout))
}

fn summary(o: &Output) -> serde_json::Value {
    serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}\n{}", o.stdout, o.stderr))
}

#[test]
fn example_campaign_arrives_once_byte_equal_to_render() {
    let sink = SmtpSink::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    render_eml(&example_template(), &example_csv(), &out);
    let tpl = example_template().display().to_string();
    let csv = example_csv().display().to_string();
    let journal = dir.path().join("j.sqlite");
    let r = run(
        &[
            "send",
            &tpl,
            &csv,
            "--smtp",
            &sink.url(),
            "--deterministic",
            "--journal",
            journal.to_str().unwrap(),
        ],
        None,
    );
    r.expect_code(0);
    assert!(r.stdout.contains("sent 12 of 12 letters"), "{}", r.stdout);
    let got = sink.messages();
    assert_eq!(got.len(), 12);
    let rendered: Vec<(String, Vec<u8>)> = tree(&out);
    for (name, eml) in rendered.iter().filter(|(n, _)| n.ends_with(".eml")) {
        let eml = String::from_utf8(eml.clone())
            .unwrap()
            .replace("\r\n", "\n");
        let matches = got.iter().filter(|d| d.message == eml).count();
        assert_eq!(matches, 1, "{name} arrived {matches} times byte-equal");
    }
    let mut rcpts: Vec<_> = got.iter().map(|d| d.rcpt.clone()).collect();
    rcpts.sort();
    rcpts.dedup();
    assert_eq!(rcpts.len(), 12);

    // The same command again resumes: everyone is accepted, nobody is sent twice.
    let again = run(
        &[
            "send",
            &tpl,
            &csv,
            "--smtp",
            &sink.url(),
            "--deterministic",
            "--journal",
            journal.to_str().unwrap(),
            "--json",
        ],
        None,
    );
    again.expect_code(0);
    let s = summary(&again);
    assert_eq!(s["already_accepted"], 12);
    assert_eq!(s["accepted"], 0);
    assert_eq!(sink.messages().len(), 12);
    let st = run(&["status", journal.to_str().unwrap(), "--json"], None);
    st.expect_code(0);
    assert_eq!(counts(&st)["accepted"], 12);
}

#[test]
fn the_bytes_on_the_wire_are_the_rendered_bytes() {
    let server = ScriptedServer::start();
    let c = Camp::new(2);
    let out = c.path("out");
    render_eml(&c.path("news.mjml"), &c.path("list.csv"), &out);
    c.send(&server.url(), &["--deterministic", "--concurrency", "1"])
        .expect_code(0);
    let rendered: Vec<String> = tree(&out)
        .into_iter()
        .filter(|(n, _)| n.ends_with(".eml"))
        .map(|(_, b)| String::from_utf8(b).unwrap())
        .collect();
    assert_eq!(server.bodies(), rendered);
}

#[test]
fn status_prints_counts_in_text() {
    let sink = SmtpSink::start(&[]);
    let c = Camp::new(3);
    c.send(&sink.url(), &["--quiet"]).expect_code(0);
    let st = c.status(&[]);
    st.expect_code(0);
    assert!(st.stdout.contains("accepted   3"), "{}", st.stdout);
    assert!(st.stdout.contains("total      3"), "{}", st.stdout);
    run(&["status", "/nonexistent/j.sqlite"], None).expect_code(1);
}

#[test]
fn dry_run_talks_to_no_server_and_writes_no_journal() {
    let c = Camp::new(5);
    let url = format!("smtp://127.0.0.1:{}", free_port());
    let r = c.send(&url, &["--dry-run"]);
    r.expect_code(0);
    assert!(r.stdout.contains("would send 5 of 5"), "{}", r.stdout);
    assert!(!c.journal().exists());
}

/// The user reports behind the journal's checks: two sends on one journal
/// both sent, an empty journal was taken for a new one, and a dry run left
/// `-wal` and `-shm` beside the journal.
#[test]
fn a_journal_has_one_sender_refuses_an_empty_file_and_a_dry_run_leaves_no_file() {
    let sink = SmtpSink::start(&[]);
    let c = Camp::new(3);
    c.send(&sink.url(), &["--quiet", "--limit", "1"])
        .expect_code(0);
    let files = || {
        let mut v: Vec<String> = std::fs::read_dir(c.path(""))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(files(), ["list.csv", "news.journal.sqlite", "news.mjml"]);
    let r = c.send(&sink.url(), &["--dry-run"]);
    r.expect_code(0);
    assert!(r.stdout.contains("would send 2 of 2"), "{}", r.stdout);
    assert_eq!(files(), ["list.csv", "news.journal.sqlite", "news.mjml"]);

    // Another sender holds the journal (its lock, taken here).
    let other = std::fs::File::open(c.journal()).unwrap();
    other.try_lock().unwrap();
    let r = c.send(&sink.url(), &[]);
    r.expect_code(1);
    assert!(r.stderr.contains("is in use by"), "{}", r.stderr);
    assert_eq!(sink.messages().len(), 1);
    c.status(&[]).expect_code(0);
    c.send(&sink.url(), &["--dry-run"]).expect_code(0);
    drop(other);

    std::fs::write(c.journal(), "").unwrap();
    let r = c.send(&sink.url(), &[]);
    r.expect_code(1);
    assert!(r.stderr.contains("is empty (0 bytes)"), "{}", r.stderr);
    assert_eq!(sink.messages().len(), 1);
    assert_eq!(std::fs::metadata(c.journal()).unwrap().len(), 0);
}

#[test]
fn unreachable_server_stops_before_anyone_is_attempted() {
    let c = Camp::new(5);
    let url = format!("smtp://127.0.0.1:{}", free_port());
    let r = c.send(&url, &[]);
    r.expect_code(1);
    assert!(
        r.stderr.contains("cannot reach the SMTP server"),
        "{}",
        r.stderr
    );
    if c.journal().exists() {
        let st = counts(&c.status(&["--json"]));
        assert_eq!(st["inflight"], 0);
        assert_eq!(st["accepted"], 0);
    }
}

#[test]
fn limit_sends_a_canary_and_redirect_replaces_only_the_envelope() {
    let sink = SmtpSink::start(&[]);
    let c = Camp::new(6);
    let r = c.send(&sink.url(), &["--limit", "2", "--json"]);
    r.expect_code(0);
    let s = summary(&r);
    assert_eq!(s["accepted"], 2);
    assert_eq!(s["held_back"], 4);
    assert_eq!(sink.messages().len(), 2);
    // The rest follows on the next run.
    let r = c.send(&sink.url(), &["--json"]);
    r.expect_code(0);
    assert_eq!(summary(&r)["accepted"], 4);
    assert_eq!(sink.messages().len(), 6);

    // A rehearsal has its own journal: it neither skips nor marks the real send.
    let rehearsal = SmtpSink::start(&[]);
    let r = c.send(
        &rehearsal.url(),
        &["--redirect-to", "me@example.org", "--json"],
    );
    r.expect_code(0);
    assert_eq!(summary(&r)["accepted"], 6);
    assert!(c.path("news.rehearsal.journal.sqlite").exists());
    for d in rehearsal.messages() {
        assert_eq!(d.rcpt, "me@example.org");
        assert!(d.message.contains("\nTo: Person "), "{}", d.message);
        assert!(!d.message.contains("me@example.org"));
    }
    // Mixing a rehearsal journal with a real send is refused.
    let r = c.send(
        &sink.url(),
        &[
            "--journal",
            c.path("news.rehearsal.journal.sqlite").to_str().unwrap(),
        ],
    );
    r.expect_code(1);
    assert!(r.stderr.contains("rehearsal"), "{}", r.stderr);
}

#[test]
fn duplicate_addresses_are_sent_once() {
    let sink = SmtpSink::start(&[]);
    let c = Camp::with_csv("email,name\na@example.org,A\nb@example.org,B\nA@Example.org,A again\n");
    let r = c.send(&sink.url(), &["--json"]);
    r.expect_code(0);
    let s = summary(&r);
    assert_eq!(s["duplicates"], 1);
    assert_eq!(s["accepted"], 2);
    assert!(r.stderr.contains("is also on row 1"), "{}", r.stderr);
    assert_eq!(sink.messages().len(), 2);
}

#[test]
fn header_injection_adds_no_header_and_no_recipient() {
    let server = ScriptedServer::start();
    let c = Camp::with_csv(
        "email,name\n\
         a@example.org,\"Ann\r\nBcc: evil@example.org\"\n\
         \"b@example.org\r\nRCPT TO:<evil@example.org>\",Bob\n\
         c@example.org,Cy\n",
    );
    let r = c.send(&server.url(), &["--json"]);
    r.expect_code(3);
    let s = summary(&r);
    assert_eq!(s["rejected"], 2);
    assert_eq!(s["accepted"], 1);
    assert_eq!(server.rcpts(), vec!["<c@example.org>"]);
    for b in server.bodies() {
        assert!(!b.to_ascii_lowercase().contains("evil"), "{b}");
    }
    // A line break in a value that goes only into the body stays in the body.
    let c = Camp::with_csv("email,name,note\nd@example.org,Dee,\"x\r\nBcc: evil@example.org\"\n");
    std::fs::write(
        c.path("news.mjml"),
        SMALL_TEMPLATE.replace("Dear {{name}},", "Dear {{name}}, {{note}}"),
    )
    .unwrap();
    c.send(&server.url(), &[]).expect_code(0);
    assert_eq!(server.rcpts().last().unwrap(), "<d@example.org>");
    assert_eq!(server.rcpts().len(), 2);
    let body = server.bodies().last().unwrap().clone();
    let head = body.split("\r\n\r\n").next().unwrap();
    assert!(!head.contains("Bcc"), "{head}");
    assert!(
        body.contains("Bcc: evil@example.org"),
        "the value is in the body"
    );
}

#[test]
fn transient_replies_are_retried_until_accepted() {
    let server = ScriptedServer::start();
    server
        .on_rcpt("person1@example.org", &[Fault::Reply(Step::Rcpt, 451)])
        .on_rcpt(
            "person2@example.org",
            &[Fault::Reply(Step::Data, 452), Fault::Reply(Step::Mail, 421)],
        )
        .on_rcpt(
            "person3@example.org",
            &[Fault::Reply(Step::Dot, 451), Fault::Reply(Step::Dot, 451)],
        );
    let c = Camp::new(4);
    let r = c.send(&server.url(), &["--json", "--concurrency", "2"]);
    r.expect_code(0);
    assert_eq!(summary(&r)["accepted"], 4);
    let mut acc = server.accepted();
    acc.sort();
    assert_eq!(
        acc,
        vec![
            "person1@example.org",
            "person2@example.org",
            "person3@example.org",
            "person4@example.org"
        ]
    );
    // 4 xx gave up after --retries: failed, recorded, the run went on.
    let server = ScriptedServer::start();
    server.on_rcpt("person2@example.org", &[Fault::Reply(Step::Rcpt, 450); 3]);
    let c = Camp::new(3);
    let r = c.send(&server.url(), &["--json", "--retries", "2"]);
    r.expect_code(3);
    assert_eq!(summary(&r)["failed"], 1);
    assert_eq!(server.accepted().len(), 2);
}

#[test]
fn pipelining_is_used_when_offered_and_a_failure_mid_batch_sends_nothing() {
    let server = ScriptedServer::start();
    server
        .offer_pipelining()
        .on_rcpt("person1@example.org", &[Fault::Reply(Step::Rcpt, 451)])
        .on_rcpt("person2@example.org", &[Fault::Reply(Step::Data, 452)])
        .on_rcpt("person3@example.org", &[Fault::Reply(Step::Rcpt, 550)]);
    let c = Camp::new(5);
    let r = c.send(&server.url(), &["--json"]);
    r.expect_code(3);
    let s = summary(&r);
    assert_eq!(
        (s["accepted"].as_u64(), s["failed"].as_u64()),
        (Some(4), Some(1)),
        "{s}"
    );
    let mut acc = server.accepted();
    acc.sort();
    assert_eq!(
        acc,
        [
            "person1@example.org",
            "person2@example.org",
            "person4@example.org",
            "person5@example.org"
        ]
    );
    // Every attempt (5 recipients, 2 retried) went out as one batch, and the
    // DATA sent behind a refused RCPT delivered nothing.
    assert_eq!(server.pipelined(), 7);
    assert_eq!(server.bodies().len(), 4);
    // A server that does not offer it gets one command at a time.
    let plain = ScriptedServer::start();
    Camp::new(2).send(&plain.url(), &[]).expect_code(0);
    assert_eq!((plain.pipelined(), plain.accepted().len()), (0, 2));
}

#[test]
fn permanent_replies_are_recorded_and_the_run_goes_on() {
    let server = ScriptedServer::start();
    server
        .on_rcpt("person2@example.org", &[Fault::Reply(Step::Rcpt, 550)])
        .on_rcpt("person4@example.org", &[Fault::Reply(Step::Dot, 554)]);
    let c = Camp::new(5);
    let failed = c.path("failed.csv");
    let r = c.send(
        &server.url(),
        &["--json", "--failed-csv", failed.to_str().unwrap()],
    );
    r.expect_code(3);
    let s = summary(&r);
    assert_eq!(
        (s["accepted"].as_u64(), s["failed"].as_u64()),
        (Some(3), Some(2))
    );
    assert!(r.stderr.contains("550"), "{}", r.stderr);
    let csv = std::fs::read_to_string(&failed).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "email,name,smtp_code,smtp_reply");
    assert!(
        lines[1].starts_with("person2@example.org,Person 2,550,"),
        "{csv}"
    );
    assert!(
        lines[2].starts_with("person4@example.org,Person 4,554,"),
        "{csv}"
    );
    assert_eq!(counts(&c.status(&["--json"]))["failed"], 2);
    // status writes the same file.
    let again = c.path("again.csv");
    c.status(&["--failed-csv", again.to_str().unwrap()])
        .expect_code(0);
    assert_eq!(std::fs::read_to_string(&again).unwrap(), csv);

    // A re-run skips them; --retry-failed tries them again.
    let r = c.send(&server.url(), &["--json"]);
    r.expect_code(3);
    assert_eq!(summary(&r)["skipped_failed"], 2);
    assert_eq!(server.accepted().len(), 3);
    let r = c.send(&server.url(), &["--json", "--retry-failed"]);
    r.expect_code(0);
    assert_eq!(summary(&r)["accepted"], 2);
    assert_eq!(server.accepted().len(), 5);
}

#[test]
fn stalls_are_cut_off_by_the_step_timeouts() {
    let server = ScriptedServer::start();
    server
        .on_connect(Fault::Stall(Step::Greeting))
        .on_rcpt("person2@example.org", &[Fault::Stall(Step::Data)])
        .on_rcpt("person3@example.org", &[Fault::Stall(Step::Dot)]);
    let c = Camp::new(3);
    let started = Instant::now();
    let mut a = c.args(&server.url(), &["--json", "--concurrency", "1"]);
    let t = a.iter().position(|x| x == "2s").unwrap();
    a[t] = "300ms".into();
    let r = run(&a, None);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    r.expect_code(3);
    let s = summary(&r);
    assert_eq!(s["accepted"], 2, "{s}");
    assert_eq!(s["ambiguous"], 1, "{s}");
    let mut acc = server.accepted();
    acc.sort();
    assert_eq!(acc, vec!["person1@example.org", "person2@example.org"]);
}

#[test]
fn a_hang_up_after_the_dot_is_ambiguous_and_not_resent_by_default() {
    let server = ScriptedServer::start();
    server.on_rcpt("person2@example.org", &[Fault::HangUp(Step::Dot)]);
    let c = Camp::new(3);
    let r = c.send(&server.url(), &["--json"]);
    r.expect_code(3);
    assert_eq!(summary(&r)["ambiguous"], 1);
    assert!(r.stderr.contains("ambiguous"), "{}", r.stderr);
    assert_eq!(counts(&c.status(&["--json"]))["ambiguous"], 1);
    let bodies = server.bodies().len();
    // Not resent by default: listed, exit 3.
    let r = c.send(&server.url(), &["--json"]);
    r.expect_code(3);
    assert_eq!(summary(&r)["skipped_ambiguous"], 1);
    assert!(
        r.stderr.contains("person2@example.org is ambiguous"),
        "{}",
        r.stderr
    );
    assert_eq!(server.bodies().len(), bodies);
    // Unless asked.
    let r = c.send(&server.url(), &["--json", "--resend-ambiguous"]);
    r.expect_code(0);
    assert_eq!(
        server
            .accepted()
            .iter()
            .filter(|a| *a == "person2@example.org")
            .count(),
        1
    );
}

#[test]
fn smtp_sink_faults_soft_hard_and_hangup() {
    // smtp-sink: -r soft error on every RCPT: retried, then failed.
    let sink = SmtpSink::start(&["-r", "rcpt"]);
    let c = Camp::new(2);
    let r = c.send(&sink.url(), &["--json", "--retries", "1"]);
    r.expect_code(3);
    assert_eq!(summary(&r)["failed"], 2);
    assert!(
        r.stderr.contains("gave up after 2 attempts"),
        "{}",
        r.stderr
    );
    // -f hard error at DATA: failed at once, the run goes on.
    let sink = SmtpSink::start(&["-f", "data"]);
    let c = Camp::new(3);
    let r = c.send(&sink.url(), &["--json"]);
    r.expect_code(3);
    assert_eq!(summary(&r)["failed"], 3);
    // -q .: hang up after the final dot, without a reply: ambiguous.
    let sink = SmtpSink::start(&["-q", "."]);
    let c = Camp::new(2);
    let r = c.send(&sink.url(), &["--json"]);
    r.expect_code(3);
    assert_eq!(summary(&r)["ambiguous"], 2);
    // -Q rcpt: 421 and hang up at RCPT: retried on a fresh connection.
    let sink = SmtpSink::start(&["-Q", "rcpt"]);
    let c = Camp::new(1);
    let r = c.send(&sink.url(), &["--json", "--retries", "2"]);
    r.expect_code(3);
    assert!(
        r.stderr.contains("421") && r.stderr.contains("gave up after 3 attempts"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_changed_template_or_row_stops_unless_forced() {
    let sink = SmtpSink::start(&[]);
    let c = Camp::new(3);
    c.send(&sink.url(), &["--limit", "1"]).expect_code(0);
    std::fs::write(c.path("list.csv"), "email,name\nperson1@example.org,Changed\nperson2@example.org,Person 2\nperson3@example.org,Person 3\n").unwrap();
    let r = c.send(&sink.url(), &[]);
    r.expect_code(1);
    assert!(r.stderr.contains("changed"), "{}", r.stderr);
    assert!(
        r.stderr.contains("row 1 (person1@example.org)"),
        "{}",
        r.stderr
    );
    assert_eq!(sink.messages().len(), 1);
    std::fs::write(c.path("news.mjml"), SMALL_TEMPLATE.replace("Dear", "Hi")).unwrap();
    let r = c.send(&sink.url(), &[]);
    r.expect_code(1);
    assert!(r.stderr.contains("template"), "{}", r.stderr);
    let r = c.send(&sink.url(), &["--force", "--json"]);
    r.expect_code(0);
    let s = summary(&r);
    assert_eq!(
        (s["accepted"].as_u64(), s["already_accepted"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(sink.messages().len(), 3);
    // A language variant added later changes the campaign too, and says so.
    std::fs::write(
        c.path("news.fr.mjml"),
        SMALL_TEMPLATE.replace("Dear", "Cher"),
    )
    .unwrap();
    let r = c.send(&sink.url(), &[]);
    r.expect_code(1);
    assert!(
        r.stderr
            .contains("news.mjml (with its fr variant) changed since this journal was written"),
        "{}",
        r.stderr
    );
    assert_eq!(sink.messages().len(), 3);
}

#[test]
fn auth_and_starttls_with_a_test_ca() {
    let ca = TestCa::new();
    let server = AioSmtpd::start("starttls", &ca);
    let c = Camp::new(2);
    let url = format!("smtp://mailer@127.0.0.1:{}?tls=required", server.port);
    let ca_path = ca.ca().display().to_string();
    let env_run = |args: Vec<String>, pw: &str| {
        run_cmd(
            letterpress()
                .args(&args)
                .env("LETTERPRESS_SMTP_PASSWORD", pw),
            None,
        )
    };
    // Untrusted certificate: stops before anyone.
    let r = env_run(c.args(&url, &[]), "s3cret pass");
    r.expect_code(1);
    assert!(r.stderr.contains("TLS"), "{}", r.stderr);
    assert!(r.stderr.contains("--smtp-ca"), "{}", r.stderr);
    // Wrong password: stops, says so, never shows a password.
    let r = env_run(c.args(&url, &["--smtp-ca", &ca_path]), "wrong horse");
    r.expect_code(1);
    assert!(
        r.stderr.contains("refused the login of `mailer`"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("wrong horse") && !r.stdout.contains("wrong horse"));
    assert!(server.received().is_empty());
    // No password and no terminal: a usage error naming the variable.
    let r = run(&c.args(&url, &["--smtp-ca", &ca_path]), None);
    r.expect_code(2);
    assert!(
        r.stderr.contains("LETTERPRESS_SMTP_PASSWORD"),
        "{}",
        r.stderr
    );
    // The right one.
    let r = env_run(
        c.args(&url, &["--smtp-ca", &ca_path, "--json"]),
        "s3cret pass",
    );
    r.expect_code(0);
    assert_eq!(summary(&r)["accepted"], 2);
    assert_eq!(server.received().len(), 2);
    let journal = std::fs::read(c.journal()).unwrap();
    assert!(!String::from_utf8_lossy(&journal).contains("s3cret"));
}

#[test]
fn implicit_tls_with_a_test_ca() {
    let ca = TestCa::new();
    let server = AioSmtpd::start("implicit", &ca);
    let c = Camp::new(2);
    let url = format!("smtps://127.0.0.1:{}", server.port);
    let ca_path = ca.ca().display().to_string();
    let with_pw = |args: Vec<String>| {
        run_cmd(
            letterpress()
                .args(&args)
                .env("LETTERPRESS_SMTP_PASSWORD", "s3cret pass"),
            None,
        )
    };
    let r = with_pw(c.args(&url, &["--smtp-user", "mailer"]));
    r.expect_code(1);
    assert!(r.stderr.contains("TLS"), "{}", r.stderr);
    let r = with_pw(c.args(
        &url,
        &["--smtp-user", "mailer", "--smtp-ca", &ca_path, "--json"],
    ));
    r.expect_code(0);
    assert_eq!(summary(&r)["accepted"], 2);
    assert_eq!(server.received().len(), 2);
}

fn dkim_verifies(message: &str, dns_record: &str) -> bool {
    let script = r#"
import sys, dkim
msg = open(sys.argv[1], "rb").read()
rec = open(sys.argv[2], "rb").read()
def dns(name, timeout=5):
    return rec if name.startswith(b"sel._domainkey.example.org") else None
d = dkim.DKIM(msg)
ok = d.verify(dnsfunc=dns)
sys.exit(0 if ok else 1)
"#;
    let dir = tempfile::tempdir().unwrap();
    let m = write(dir.path(), "m.eml", message.replace('\n', "\r\n"));
    let r = write(dir.path(), "r.txt", dns_record);
    let s = write(dir.path(), "v.py", script);
    let st = std::process::Command::new("python3")
        .arg(s)
        .arg(m)
        .arg(r)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    st.success()
}

#[test]
fn dkim_signatures_verify_with_dkimpy() {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import dkim, nacl"])
        .status();
    assert!(
        ok.is_ok_and(|s| s.success()),
        "dkimpy (with pynacl) is missing: run .ci/setup"
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let sh = format!(
        "set -e; cd {d}
openssl genpkey -algorithm ed25519 -out ed.pem 2>/dev/null
openssl pkey -in ed.pem -pubout -outform DER | tail -c 32 | base64 -w0 > ed.pub
openssl genrsa -traditional -out rsa.pem 2048 2>/dev/null || openssl genrsa -out rsa.pem 2048 2>/dev/null
openssl rsa -in rsa.pem -pubout -outform DER 2>/dev/null | base64 -w0 > rsa.pub
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa8.pem 2>/dev/null
openssl pkey -in rsa8.pem -pubout -outform DER | base64 -w0 > rsa8.pub"
    );
    assert!(std::process::Command::new("sh")
        .arg("-c")
        .arg(sh)
        .status()
        .unwrap()
        .success());
    // Ed25519 (PKCS#8), RSA as PKCS#1 (`RSA PRIVATE KEY`) and as PKCS#8.
    for (key, k) in [
        ("ed.pem", "ed25519"),
        ("rsa.pem", "rsa"),
        ("rsa8.pem", "rsa"),
    ] {
        let sink = SmtpSink::start(&[]);
        let c = Camp::new(1);
        let key_path = dir.path().join(key).display().to_string();
        let r = c.send(
            &sink.url(),
            &[
                "--dkim-key",
                &key_path,
                "--dkim-selector",
                "sel",
                "--dkim-domain",
                "example.org",
            ],
        );
        r.expect_code(0);
        let msg = &sink.messages()[0].message;
        let sig = msg.split("\n\n").next().unwrap();
        assert!(sig.starts_with("DKIM-Signature: v=1; a="), "{sig}");
        assert!(sig.contains("c=relaxed/relaxed"), "{sig}");
        // Folding whitespace may fall anywhere in the list.
        let h: String = sig
            .split("h=")
            .nth(1)
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        assert!(h.contains("list-unsubscribe:list-unsubscribe-post"), "{h}");
        assert!(!h.contains("content-type"), "{h}");
        let public = std::fs::read_to_string(
            dir.path()
                .join(format!("{}.pub", key.trim_end_matches(".pem"))),
        )
        .unwrap();
        let record = format!("v=DKIM1; k={k}; p={}", public.trim());
        assert!(
            dkim_verifies(msg, &record),
            "{k} signature does not verify:\n{msg}"
        );
        // A tampered body fails, so the check checks something.
        assert!(!dkim_verifies(&msg.replace("Dear", "Dear evil"), &record));
    }
}

#[test]
fn ctrl_c_finishes_in_flight_writes_the_journal_and_exits_130() {
    let sink = SmtpSink::start(&[]);
    let c = Camp::new(200);
    let child = letterpress()
        .args(c.args(&sink.url(), &["--rate", "40/s", "--json"]))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let _ = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["interrupted"], true);
    let st = counts(&c.status(&["--json"]));
    assert_eq!(st["inflight"], 0);
    assert_eq!(st["ambiguous"], 0);
    let accepted = st["accepted"].as_u64().unwrap() as usize;
    assert!(accepted > 0 && accepted < 200, "{accepted}");
    assert_eq!(sink.messages().len(), accepted);
    // Resume: the rest, nobody twice.
    let r = c.send(&sink.url(), &["--json"]);
    r.expect_code(0);
    assert_eq!(sink.messages().len(), 200);
    assert_eq!(sink.deliveries().values().max(), Some(&1));
}

/// Crash test: 2,000 letters, kill -9 at random moments, resume each time.
/// In the end every recipient was accepted exactly once, except those the
/// journal records as ambiguous (at most once), and none is missing.
#[test]
fn crash_test_kill_9_and_resume_sends_nobody_twice_and_misses_nobody() {
    const N: usize = 2000;
    let sink = SmtpSink::start(&[]);
    let c = Camp::new(N);
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut rand = move |lo: u64, hi: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        lo + seed % (hi - lo)
    };
    let mut kills = 0;
    let started = Instant::now();
    loop {
        let mut child = letterpress()
            .args(c.args(&sink.url(), &["--quiet", "--concurrency", "4"]))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let delay = Duration::from_millis(rand(100, 700));
        let deadline = Instant::now() + delay;
        let mut done = None;
        while Instant::now() < deadline {
            if let Some(st) = child.try_wait().unwrap() {
                done = Some(st);
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        match done {
            Some(st) => {
                // Finished: 0, or 3 when earlier kills left ambiguous ones.
                assert!(matches!(st.code(), Some(0) | Some(3)), "exit {st}");
                break;
            }
            None if kills < 6 => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
            }
            None => {
                let st = child.wait().unwrap();
                assert!(matches!(st.code(), Some(0) | Some(3)), "exit {st}");
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "crash test too slow"
        );
    }
    let st = counts(&c.status(&["--json"]));
    let accepted = st["accepted"].as_u64().unwrap() as usize;
    let ambiguous = st["ambiguous"].as_u64().unwrap() as usize;
    assert_eq!(accepted + ambiguous, N, "{st}");
    assert_eq!(st["inflight"], 0);
    let deliveries = sink.deliveries();
    let journal = journal_states(&c.journal());
    let mut dupes = 0;
    let mut missing = 0;
    for (addr, state) in &journal {
        let n = deliveries.get(addr).copied().unwrap_or(0);
        match state.as_str() {
            "accepted" if n == 1 => {}
            "accepted" if n == 0 => missing += 1,
            "accepted" => dupes += 1,
            "ambiguous" => assert!(n <= 1, "{addr} ambiguous but delivered {n} times"),
            other => panic!("{addr} is {other}"),
        }
    }
    assert_eq!((dupes, missing), (0, 0), "kills: {kills}");
    assert!(
        kills >= 1,
        "the run finished before any kill; nothing was tested"
    );
    assert_eq!(deliveries.values().filter(|&&n| n > 1).count(), 0);
    eprintln!(
        "crash test: {kills} kills, {ambiguous} ambiguous, {:?}",
        started.elapsed()
    );
}

/// (address, state) for every recipient in the journal.
fn journal_states(journal: &Path) -> Vec<(String, String)> {
    let db = rusqlite::Connection::open(journal).unwrap();
    let mut stmt = db.prepare("SELECT address, state FROM recipients").unwrap();
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    rows
}

/// Waits (at most 20 s, flushing the queue now and then) until `sink` holds
/// `n` messages and Postfix's queue is empty, so every dump is complete.
fn wait_for_relay(postfix: &Postfix, sink: &SmtpSink, n: usize) {
    let started = Instant::now();
    let mut flushed = Instant::now();
    loop {
        if sink.count() >= n && postfix.queue_is_empty() {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "after 20 s the sink holds {} of {n} messages\n--- postfix log\n{}",
            sink.count(),
            postfix.log()
        );
        if flushed.elapsed() > Duration::from_secs(1) {
            postfix.flush();
            flushed = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Splits off the one header Postfix adds to a letter it relays and
/// returns the rest. Submitted with `sendmail` and relayed over SMTP, a
/// letter gains exactly one trace header at the top,
///
/// ```text
/// Received: by mta.letterpress.test (Postfix, from userid 0)
/// <TAB>id 4ABCDEF0123; Mon, 30 Nov 2026 14:37:24 +0000 (UTC)
/// ```
///
/// and nothing else: `Return-Path:`, `Delivered-To:` and `X-Original-To:`
/// come only with local delivery (there is none here), and Postfix adds
/// `Date:`, `Message-ID:` or `From:` only when they are missing.
fn strip_postfix_received(message: &str) -> &str {
    let (first, rest) = message.split_once('\n').expect("a header line");
    assert_eq!(
        first, "Received: by mta.letterpress.test (Postfix, from userid 0)",
        "not Postfix's pickup Received: header:\n{message}"
    );
    let (second, rest) = rest.split_once('\n').expect("a second line");
    assert!(
        second.starts_with("\tid ") && second.contains("; "),
        "not the id line of Postfix's Received: header: {second:?}"
    );
    rest
}

#[test]
fn sendmail_through_a_real_postfix_delivers_each_letter_once_as_rendered() {
    let sink = SmtpSink::start(&[]);
    let postfix = Postfix::start(sink.port);
    let c = Camp::with_csv(
        "email,name\n\
         person1@example.org,Person 1\n\
         zoe@example.org,Zoë Ærøskøbing\n\
         person3@example.org,\"Comma, In Name\"\n\
         person4@example.org,Person 4\n\
         person5@example.org,Person 5\n",
    );
    let out = c.path("out");
    render_eml(&c.path("news.mjml"), &c.path("list.csv"), &out);
    let rendered: Vec<(String, Vec<u8>)> = tree(&out)
        .into_iter()
        .filter(|(n, _)| n.ends_with(".eml"))
        .collect();
    assert_eq!(rendered.len(), 5);

    let r = c.sendmail(
        &postfix.sendmail(),
        &postfix.env(),
        &["--deterministic", "--json"],
    );
    r.expect_code(0);
    let s = summary(&r);
    assert_eq!(s["accepted"], 5, "{s}");
    assert!(c.journal().exists());
    wait_for_relay(&postfix, &sink, 5);

    let got = sink.messages();
    assert_eq!(got.len(), 5);
    let mut rcpts: Vec<&str> = got.iter().map(|d| d.rcpt.as_str()).collect();
    rcpts.sort();
    assert_eq!(
        rcpts,
        [
            "person1@example.org",
            "person3@example.org",
            "person4@example.org",
            "person5@example.org",
            "zoe@example.org"
        ]
    );
    for d in &got {
        let (name, eml) = rendered
            .iter()
            .find(|(n, _)| n.ends_with(&format!("-{}.eml", d.rcpt.replace('@', "_"))))
            .unwrap_or_else(|| panic!("no rendered letter for {}", d.rcpt));
        // On the wire the letter has CRLF line ends; the sink dumps LF.
        let wire = strip_postfix_received(&d.message).replace('\n', "\r\n");
        assert!(
            wire.as_bytes() == eml.as_slice(),
            "{name} arrived changed:\n--- rendered\n{}\n--- arrived\n{wire}",
            String::from_utf8_lossy(eml)
        );
    }

    // The same command again: everyone is already accepted, nothing is
    // handed to Postfix.
    let again = c.sendmail(
        &postfix.sendmail(),
        &postfix.env(),
        &["--deterministic", "--json"],
    );
    again.expect_code(0);
    let s = summary(&again);
    assert_eq!(
        (s["accepted"].as_u64(), s["already_accepted"].as_u64()),
        (Some(0), Some(5)),
        "{s}"
    );
    postfix.flush();
    std::thread::sleep(Duration::from_millis(500));
    assert!(postfix.queue_is_empty(), "{}", postfix.log());
    assert_eq!(sink.count(), 5);
    assert_eq!(counts(&c.status(&["--json"]))["accepted"], 5);
}

#[test]
fn sendmail_that_is_not_a_program_stops_before_anything_is_journalled() {
    let c = Camp::new(3);
    let r = c.sendmail(Path::new("/no/such/program"), &[], &[]);
    r.expect_code(1);
    assert!(
        r.stderr
            .contains("/no/such/program is not an executable program"),
        "{}",
        r.stderr
    );
    assert!(!c.journal().exists());
    // A folder is not a program either.
    let r = c.sendmail(c.dir.path(), &[], &[]);
    r.expect_code(1);
    assert!(!c.journal().exists());
}

/// Postfix's `sendmail` only drops a letter into the queue, so what the
/// MTA refuses for good (a header check, an unknown recipient) it refuses
/// later, with a bounce to the envelope sender, after `sendmail` exited 0:
/// it never exits 65, 67 or 68 for a recipient. The one refusal on cue for
/// a single letter is its size: over `message_size_limit`, `postdrop`
/// cannot write it and `sendmail` exits 75 (EX_TEMPFAIL, "message file too
/// big"). A temporary failure without a reply that outlasts the retries
/// means the MTA cannot queue: the run stops with that letter deferred, and
/// once the MTA is fixed the same command resumes.
#[test]
fn sendmail_letter_postfix_cannot_queue_stops_the_run_and_a_rerun_resumes() {
    let sink = SmtpSink::start(&[]);
    let mut postfix = Postfix::start_with(sink.port, &["message_size_limit = 60000"]);
    let big = "x".repeat(100_000);
    let c = Camp::with_csv(&format!(
        "email,name,note\n\
         person1@example.org,Person 1,short\n\
         person2@example.org,Person 2,{big}\n\
         person3@example.org,Person 3,short\n"
    ));
    std::fs::write(
        c.path("news.mjml"),
        SMALL_TEMPLATE.replace("Dear {{name}},", "Dear {{name}}, {{note}}"),
    )
    .unwrap();
    // The note is over letterpress's own 64K value limit: raised, so that
    // Postfix is the one to refuse the letter.
    let args = [
        "--json",
        "--retries",
        "1",
        "--concurrency",
        "1",
        "--max-value-size",
        "1M",
    ];
    let r = c.sendmail(&postfix.sendmail(), &postfix.env(), &args);
    r.expect_code(1);
    let s = summary(&r);
    assert_eq!(
        (
            s["accepted"].as_u64(),
            s["deferred"].as_u64(),
            s["not_attempted"].as_u64(),
            s["failed"].as_u64()
        ),
        (Some(1), Some(1), Some(1), Some(0)),
        "{s}"
    );
    assert!(
        r.stderr.contains("/usr/sbin/sendmail exited 75")
            && r.stderr.contains("message file too big")
            && r.stderr.contains("(after 2 attempts)")
            && r.stderr.contains("run the same command again to resume"),
        "{}",
        r.stderr
    );
    let st = counts(&c.status(&["--json"]));
    assert_eq!(
        (st["accepted"].as_u64(), st["deferred"].as_u64()),
        (Some(1), Some(1)),
        "{st}"
    );

    // Room for the big letter, and the same command again.
    postfix.restart_with(&["message_size_limit = 10240000"]);
    let r = c.sendmail(&postfix.sendmail(), &postfix.env(), &args);
    r.expect_code(0);
    let s = summary(&r);
    assert_eq!(
        (s["accepted"].as_u64(), s["already_accepted"].as_u64()),
        (Some(2), Some(1)),
        "{s}"
    );
    wait_for_relay(&postfix, &sink, 3);
    let mut got: Vec<String> = sink.messages().into_iter().map(|d| d.rcpt).collect();
    got.sort();
    assert_eq!(
        got,
        [
            "person1@example.org",
            "person2@example.org",
            "person3@example.org"
        ]
    );
}
