//! `send` with a PostgreSQL journal: several workers share one campaign.
//! A real cluster ([`PgCluster`], one per run, a database per test) and
//! smtp-sink; the chaos test kills, restarts and pauses workers while they
//! send.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Camp;
use crate::common::*;
use crate::servers::*;

fn pg_send(camp: &Camp, url: &str, journal: &str, extra: &[&str]) -> Output {
    let mut a = camp.args(url, &["--journal", journal, "--json"]);
    a.extend(extra.iter().map(|s| s.to_string()));
    run_env(&a, &PgCluster::get().env())
}

/// `letterpress` with `args`, against the test cluster, in the background.
fn spawn_worker<S: AsRef<std::ffi::OsStr>>(args: &[S], stdout: Stdio, stderr: Stdio) -> Child {
    letterpress()
        .args(args)
        .envs(PgCluster::get().env())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .unwrap()
}

fn counts(pg: &PgCluster, db: &str) -> HashMap<String, usize> {
    pg.try_psql(
        db,
        "SELECT state, count(*) FROM letterpress_recipients GROUP BY state",
    )
    .unwrap_or_default()
    .lines()
    .filter_map(|l| l.split_once('|'))
    .map(|(s, n)| (s.to_string(), n.parse().unwrap()))
    .collect()
}

fn n(c: &HashMap<String, usize>, state: &str) -> usize {
    c.get(state).copied().unwrap_or(0)
}

#[test]
fn three_workers_share_a_campaign_and_status_shows_each() {
    let pg = PgCluster::get();
    let journal = pg.database("share");
    let camp = Camp::new(300);
    let sink = SmtpSink::start(&[]);
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let (url, journal) = (sink.url(), journal.clone());
            let args = {
                let mut a = camp.args(&url, &["--journal", &journal, "--json"]);
                a.push("--concurrency".into());
                a.push("2".into());
                a
            };
            spawn_worker(&args, Stdio::piped(), Stdio::piped())
        })
        .collect();
    let mut accepted = 0;
    for w in workers {
        let out = w.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        accepted += s["accepted"].as_u64().unwrap();
        assert!(s["journal_round_trips"].as_u64().unwrap() > 0);
        assert!(!err.contains(PG_PASSWORD));
    }
    assert_eq!(accepted, 300);
    let d = sink.deliveries();
    assert_eq!(d.len(), 300);
    assert!(d.values().all(|&n| n == 1), "a recipient got two letters");
    assert_eq!(n(&counts(pg, "share"), "accepted"), 300);

    let status = run_env(&["status", &journal], &pg.env());
    status.expect_code(0);
    assert!(
        status.stdout.contains("accepted   300"),
        "{}",
        status.stdout
    );
    assert_eq!(
        status.stdout.matches("worker ").count(),
        3,
        "{}",
        status.stdout
    );
    assert!(
        status.stdout.contains("gone, holds 0, 0 in flight"),
        "{}",
        status.stdout
    );
    let json = run_env(&["status", &journal, "--json"], &pg.env());
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["workers"].as_array().unwrap().len(), 3);

    // A second run has nothing left to send.
    let again = pg_send(&camp, &sink.url(), &journal, &[]);
    again.expect_code(0);
    assert_eq!(summary(&again)["already_accepted"], 300);
    assert_eq!(sink.count(), 300);
}

fn summary(o: &Output) -> serde_json::Value {
    serde_json::from_str(&o.stdout).unwrap_or_else(|_| panic!("{}\n{}", o.stdout, o.stderr))
}

#[test]
fn the_password_comes_from_pgpass_never_from_the_url() {
    let pg = PgCluster::get();
    let journal = pg.database("secret");
    let camp = Camp::new(3);
    let sink = SmtpSink::start(&[]);
    // No password at all: the server refuses.
    let mut a = camp.args(&sink.url(), &["--journal", &journal]);
    let out = run(&a, None);
    out.expect_code(1);
    assert!(out.stderr.contains("password"), "{}", out.stderr);
    // From a password file (mode 0600), by libpq's rules.
    let pass = write(
        camp.path("").as_path(),
        "pgpass",
        format!(
            "# letterpress test\n127.0.0.1:{}:secret:postgres:{PG_PASSWORD}\n",
            pg.port
        ),
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let env = [("PGPASSFILE".to_string(), pass.display().to_string())];
    let out = run_env(&a, &env);
    out.expect_code(0);
    assert_eq!(sink.count(), 3);
    // A password in the URL is refused before anything is tried.
    let with = journal.replace("postgres@", "postgres:hunter2@");
    a = camp.args(&sink.url(), &["--journal", &with]);
    let out = run(&a, None);
    out.expect_code(1);
    assert!(
        out.stderr.contains("PGPASSWORD or ~/.pgpass"),
        "{}",
        out.stderr
    );
    // LETTERPRESS_JOURNAL names the journal when --journal does not.
    let out = run_env(
        &camp.args(&sink.url(), &["--json"]),
        &[
            ("LETTERPRESS_JOURNAL".into(), journal.clone()),
            ("PGPASSWORD".into(), PG_PASSWORD.into()),
        ],
    );
    out.expect_code(0);
    assert_eq!(summary(&out)["already_accepted"], 3);
    assert!(!camp.journal().exists());
}

#[test]
fn sslmode_require_encrypts_and_disable_does_not() {
    let pg = PgCluster::get();
    // The cluster refuses unencrypted connections to this database.
    let plain = pg.database("tlsonly");
    let camp = Camp::new(2);
    let sink = SmtpSink::start(&[]);
    let out = pg_send(&camp, &sink.url(), &plain, &[]);
    out.expect_code(1);
    assert!(out.stderr.contains("no encryption"), "{}", out.stderr);
    let tls = plain.replace("sslmode=disable", "sslmode=require");
    pg_send(&camp, &sink.url(), &tls, &[]).expect_code(0);
    let prefer = plain.replace("?sslmode=disable", "");
    let st = run_env(&["status", &prefer], &pg.env());
    st.expect_code(0);
    assert!(st.stdout.contains("accepted   2"), "{}", st.stdout);
}

#[test]
fn sslmode_verify_full_checks_the_ca_and_the_name_and_verify_ca_the_ca() {
    let pg = PgCluster::get();
    let base = pg.database("verified");
    let sink = SmtpSink::start(&[]);
    let with = |q: String| base.replace("sslmode=disable", &q);
    let ours = pg.ca().display().to_string();
    let other = TestCa::new();
    let theirs = other.ca().display().to_string();
    // The server's certificate is for 127.0.0.1 and localhost; `hostaddr`
    // connects to 127.0.0.1 by another name.
    let elsewhere = |q: String| {
        base.replace("sslmode=disable", &q)
            .replace("@127.0.0.1:", "@db.invalid:")
            + "&hostaddr=127.0.0.1"
    };
    let refused = |journal: &str, env: &[(&str, &str)], why: &str| {
        let camp = Camp::new(2);
        let mut e = pg.env();
        e.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let out = run_env(&camp.args(&sink.url(), &["--journal", journal]), &e);
        out.expect_code(1);
        assert!(out.stderr.contains(why), "{journal}: {}", out.stderr);
    };

    // The right CA, the right name: sent.
    let camp = Camp::new(2);
    let full = with(format!("sslmode=verify-full&sslrootcert={ours}"));
    pg_send(&camp, &sink.url(), &full, &[]).expect_code(0);
    assert_eq!(sink.count(), 2);
    // The CA from PGSSLROOTCERT, the mode from PGSSLMODE.
    let st = run_env(
        &["status", &base.replace("?sslmode=disable", "")],
        &[
            ("PGPASSWORD".into(), PG_PASSWORD.into()),
            ("PGSSLROOTCERT".into(), ours.clone()),
            ("PGSSLMODE".into(), "verify-full".into()),
        ],
    );
    st.expect_code(0);
    assert!(st.stdout.contains("accepted   2"), "{}", st.stdout);

    // Another CA: refused, whichever mode checks it.
    refused(
        &with(format!("sslmode=verify-full&sslrootcert={theirs}")),
        &[],
        "not signed by a CA of the CA file",
    );
    refused(
        &with(format!("sslmode=verify-ca&sslrootcert={theirs}")),
        &[],
        "not signed by a CA of the CA file",
    );
    // As with libpq, `require` checks the CA when there is a CA file.
    refused(
        &with("sslmode=require".into()),
        &[("PGSSLROOTCERT", &theirs)],
        "not signed by a CA of the CA file",
    );
    // Another name: verify-full refuses, verify-ca does not check it.
    refused(
        &elsewhere(format!("sslmode=verify-full&sslrootcert={ours}")),
        &[],
        "not for the host in the URL",
    );
    let camp = Camp::new(3);
    let ca_only = elsewhere(format!("sslmode=verify-ca&sslrootcert={ours}"))
        .replace("/verified?", "/verified_ca?");
    pg.database("verified_ca");
    pg_send(&camp, &sink.url(), &ca_only, &[]).expect_code(0);
    // No CA file: a mode that checks cannot, and says so.
    refused(
        &with("sslmode=verify-full".into()),
        &[],
        "no-such-ca.pem does not exist",
    );
    refused(&with("sslmode=allow".into()), &[], "does not support");
    assert_eq!(sink.count(), 2 + 3);
}

#[test]
fn workers_with_other_inputs_are_refused_naming_the_file() {
    let pg = PgCluster::get();
    let journal = pg.database("inputs");
    let camp = Camp::new(20);
    let sink = SmtpSink::start(&["-w", "1"]);
    // The first worker sends slowly (the sink waits 1 s per DATA).
    let mut first = spawn_worker(
        &camp.args(&sink.url(), &["--journal", &journal, "--concurrency", "1"]),
        Stdio::null(),
        Stdio::null(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while n(&counts(pg, "inputs"), "inflight") == 0 {
        assert!(Instant::now() < deadline, "the first worker never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Another template, on another machine.
    let other = tempfile::tempdir().unwrap();
    write(
        other.path(),
        "news.mjml",
        SMALL_TEMPLATE.replace("Dear", "Hi"),
    );
    std::fs::copy(camp.path("list.csv"), other.path().join("list.csv")).unwrap();
    let mut a = camp.args(&sink.url(), &["--journal", &journal, "--force"]);
    a[1] = other.path().join("news.mjml").display().to_string();
    a[2] = other.path().join("list.csv").display().to_string();
    let out = run_env(&a, &pg.env());
    out.expect_code(1);
    assert!(out.stderr.contains("the template"), "{}", out.stderr);
    assert!(out.stderr.contains("news.mjml"), "{}", out.stderr);
    assert!(out.stderr.contains("running workers"), "{}", out.stderr);
    // Another list.
    write(other.path(), "news.mjml", SMALL_TEMPLATE);
    let mut csv = std::fs::read_to_string(camp.path("list.csv")).unwrap();
    csv.push_str("late@example.org,Late\n");
    write(other.path(), "list.csv", csv);
    let out = run_env(&a, &pg.env());
    out.expect_code(1);
    assert!(out.stderr.contains("the contact list"), "{}", out.stderr);
    assert!(out.stderr.contains("list.csv"), "{}", out.stderr);
    let _ = first.kill();
    let _ = first.wait();
}

#[test]
fn a_dropped_database_connection_makes_in_flight_ambiguous_and_returns_the_rest() {
    let pg = PgCluster::get();
    let journal = pg.database("dropped");
    let camp = Camp::new(100);
    // 2 s per DATA: the two letters in flight are mid-transaction when
    // the connection goes.
    let sink = SmtpSink::start(&["-w", "2"]);
    let child = spawn_worker(
        &camp.args(
            &sink.url(),
            &[
                "--journal",
                &journal,
                "--concurrency",
                "2",
                "--lease",
                "60s",
            ],
        ),
        Stdio::piped(),
        Stdio::piped(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while n(&counts(pg, "dropped"), "inflight") < 2 {
        assert!(Instant::now() < deadline, "nothing in flight");
        std::thread::sleep(Duration::from_millis(20));
    }
    pg.psql(
        "dropped",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = 'dropped' AND application_name = 'letterpress'",
    );
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("connection to the database was lost"), "{err}");
    assert!(err.contains("2 in flight are now ambiguous"), "{err}");
    let c = counts(pg, "dropped");
    assert_eq!(n(&c, "ambiguous"), 2, "{c:?}");
    assert_eq!(n(&c, "inflight"), 0, "{c:?}");
    assert_eq!(n(&c, "pending"), 100 - 2, "{c:?}");
    assert_eq!(
        pg.psql(
            "dropped",
            "SELECT count(*) FROM letterpress_recipients WHERE worker IS NOT NULL"
        ),
        "0",
        "every claim went back to the pool"
    );
    // Another worker sends the rest, not the ambiguous ones.
    let fast = SmtpSink::start(&[]);
    let out = pg_send(&camp, &fast.url(), &journal, &[]);
    out.expect_code(3);
    assert_eq!(summary(&out)["accepted"], 98);
    assert_eq!(summary(&out)["skipped_ambiguous"], 2);
    assert_eq!(fast.count(), 98);
}

#[test]
fn journal_copy_moves_a_campaign_between_sqlite_and_postgres() {
    let pg = PgCluster::get();
    let journal = pg.database("copied");
    let camp = Camp::new(30);
    let sink = SmtpSink::start(&[]);
    // Started on a laptop: ten letters.
    camp.send(&sink.url(), &["--limit", "10"]).expect_code(0);
    let file = camp.journal().display().to_string();
    let out = run_env(&["journal", "copy", &file, &journal], &pg.env());
    out.expect_code(0);
    assert!(
        out.stdout.contains("copied 30 recipients"),
        "{}",
        out.stdout
    );
    // Into a journal that already has recipients: refused.
    let out = run_env(&["journal", "copy", &file, &journal], &pg.env());
    out.expect_code(1);
    assert!(
        out.stderr.contains("already holds 30 recipients"),
        "{}",
        out.stderr
    );
    // Finished by the fleet.
    let out = pg_send(&camp, &sink.url(), &journal, &[]);
    out.expect_code(0);
    assert_eq!(summary(&out)["accepted"], 20);
    assert_eq!(sink.count(), 30);
    // Archived to a file.
    let archive = camp.path("archive.sqlite").display().to_string();
    run_env(&["journal", "copy", &journal, &archive], &pg.env()).expect_code(0);
    let st = run(&["status", &archive], None);
    st.expect_code(0);
    assert!(st.stdout.contains("accepted   30"), "{}", st.stdout);
}

#[test]
fn a_schema_of_a_newer_letterpress_is_refused() {
    let pg = PgCluster::get();
    let journal = pg.database("newer");
    let camp = Camp::new(2);
    let sink = SmtpSink::start(&[]);
    pg_send(&camp, &sink.url(), &journal, &[]).expect_code(0);
    assert_eq!(
        pg.psql("newer", "SELECT version FROM letterpress_schema"),
        "3"
    );
    pg.psql("newer", "UPDATE letterpress_schema SET version = 99");
    for args in [
        camp.args(&sink.url(), &["--journal", &journal]),
        vec!["status".to_string(), journal.clone()],
    ] {
        let out = run_env(&args, &pg.env());
        out.expect_code(1);
        assert!(out.stderr.contains("newer letterpress"), "{}", out.stderr);
    }
    // Status of a database with no campaign.
    let empty = pg.database("nocampaign");
    let out = run_env(&["status", &empty], &pg.env());
    out.expect_code(1);
    assert!(
        out.stderr.contains("has no letterpress journal"),
        "{}",
        out.stderr
    );
    // A dry run reads it as an empty journal and makes no table.
    let out = pg_send(&camp, &sink.url(), &empty, &["--dry-run"]);
    out.expect_code(0);
    assert_eq!(summary(&out)["planned"], 2);
    assert_eq!(
        pg.psql(
            "nocampaign",
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'letterpress%'"
        ),
        "0"
    );
}

/// Schema 2 keeps a letter's in-flight mark and outcome off every index
/// (heap-only updates), schema 3 adds the bounces: a journal of schema 1 is
/// migrated in place, and its campaign goes on where it stopped.
#[test]
fn a_journal_of_schema_1_is_migrated_and_its_campaign_goes_on() {
    let pg = PgCluster::get();
    let journal = pg.database("schema1");
    let camp = Camp::new(40);
    let sink = SmtpSink::start(&[]);
    pg_send(&camp, &sink.url(), &journal, &["--limit", "15"]).expect_code(0);
    // The tables as schema 1 made them.
    pg.psql(
        "schema1",
        "DROP TABLE letterpress_feedback;
         ALTER TABLE letterpress_recipients DROP COLUMN pool;
         ALTER TABLE letterpress_recipients RESET (fillfactor);
         CREATE INDEX letterpress_claimable ON letterpress_recipients (row)
             WHERE worker IS NULL AND state IN ('pending', 'deferred');
         CREATE INDEX letterpress_held ON letterpress_recipients (worker)
             WHERE worker IS NOT NULL;
         UPDATE letterpress_schema SET version = 1",
    );
    pg.psql("schema1", "SELECT pg_stat_reset()");
    let indexes = "SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes
                   WHERE tablename = 'letterpress_recipients'";
    assert_eq!(
        pg.psql("schema1", indexes),
        "letterpress_claimable,letterpress_held,letterpress_recipients_pkey"
    );
    let out = pg_send(&camp, &sink.url(), &journal, &[]);
    out.expect_code(0);
    assert_eq!(summary(&out)["accepted"], 25);
    assert_eq!(summary(&out)["already_accepted"], 15);
    assert_eq!(sink.count(), 40, "nobody got a letter twice");
    assert_eq!(
        pg.psql("schema1", "SELECT version FROM letterpress_schema"),
        "3"
    );
    assert_eq!(
        pg.psql(
            "schema1",
            "SELECT to_regclass('letterpress_feedback') IS NOT NULL"
        ),
        "t"
    );
    assert_eq!(
        pg.psql("schema1", indexes),
        "letterpress_pool,letterpress_recipients_pkey"
    );
    assert_eq!(
        pg.psql(
            "schema1",
            "SELECT reloptions::text FROM pg_class WHERE relname = 'letterpress_recipients'"
        ),
        "{fillfactor=70}"
    );
    // The marks and outcomes of the 25 were heap-only updates (the server
    // publishes its counts when the workers' sessions end).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let hot: u64 = pg
            .psql(
                "schema1",
                "SELECT n_tup_hot_upd FROM pg_stat_user_tables
                 WHERE relname = 'letterpress_recipients'",
            )
            .parse()
            .unwrap();
        if hot > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no heap-only update");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_rate_is_shared_by_the_workers_and_failed_rows_are_retried_on_request() {
    let pg = PgCluster::get();
    let journal = pg.database("rate");
    let camp = Camp::new(40);
    let sink = SmtpSink::start(&[]);
    let started = Instant::now();
    let workers: Vec<Child> = (0..2)
        .map(|_| {
            spawn_worker(
                &camp.args(
                    &sink.url(),
                    &[
                        "--journal",
                        &journal,
                        "--rate",
                        "20/s",
                        "--concurrency",
                        "1",
                    ],
                ),
                Stdio::null(),
                Stdio::null(),
            )
        })
        .collect();
    for mut w in workers {
        assert!(w.wait().unwrap().success());
    }
    // 40 letters at 20/s in all: about two seconds, not one.
    assert!(
        started.elapsed() >= Duration::from_millis(1800),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(sink.count(), 40);

    // --retry-failed and --limit as with SQLite.
    pg.psql(
        "rate",
        "UPDATE letterpress_recipients SET state = 'failed' WHERE row <= 5",
    );
    let out = pg_send(&camp, &sink.url(), &journal, &[]);
    out.expect_code(3);
    assert_eq!(summary(&out)["skipped_failed"], 5);
    let csv = camp.path("failed.csv");
    let st = run_env(
        &[
            "status",
            &journal,
            "--failed-csv",
            &csv.display().to_string(),
        ],
        &pg.env(),
    );
    st.expect_code(0);
    assert_eq!(std::fs::read_to_string(&csv).unwrap().lines().count(), 6);
    let out = pg_send(
        &camp,
        &sink.url(),
        &journal,
        &["--retry-failed", "--limit", "2"],
    );
    assert_eq!(summary(&out)["accepted"], 2, "{}", out.stderr);
    let out = pg_send(&camp, &sink.url(), &journal, &["--retry-failed"]);
    assert_eq!(summary(&out)["accepted"], 3, "{}", out.stderr);
    out.expect_code(0);
    assert_eq!(sink.count(), 45);
}

/// The chaos test: three workers send 3,000 letters; every second one of
/// them is killed (SIGKILL) and started again, and one is paused
/// (SIGSTOP) past its lease and then continued. In the end every contact is
/// accepted exactly once, or recorded ambiguous (delivered at most once);
/// none is lost, and the sink holds exactly what the journal says.
#[test]
fn chaos_kill_restart_and_pause_workers_nothing_twice_nothing_lost() {
    const ROWS: usize = 3000;
    let pg = PgCluster::get();
    let journal = pg.database("chaos");
    let camp = Camp::new(ROWS);
    let sink = SmtpSink::start(&[]);
    let args = camp.args(
        &sink.url(),
        &[
            "--journal",
            &journal,
            "--concurrency",
            "2",
            "--lease",
            "2s",
            "--quiet",
        ],
    );
    let spawn = || -> Child { spawn_worker(&args, Stdio::null(), Stdio::piped()) };
    let signal = |sig: &str, c: &Child| {
        Command::new("kill")
            .args([sig, &c.id().to_string()])
            .status()
            .unwrap();
    };
    let left = || {
        pg.psql(
            "chaos",
            "SELECT count(*) FROM letterpress_recipients
             WHERE state IN ('pending', 'deferred', 'inflight')",
        )
        .parse::<usize>()
        .unwrap_or(1)
    };
    let started = Instant::now();
    let mut workers: Vec<Option<Child>> = (0..3).map(|_| Some(spawn())).collect();
    let (mut kills, mut restarts, mut lost_lease) = (0, 0, 0);
    let mut seed = started.elapsed().as_nanos() as u64 | 1;
    let mut next_kill = Duration::from_secs(1);
    // Worker 0 is paused from 1.5 s for 4 s (the lease is 2 s).
    let (pause, resume) = (Duration::from_millis(1500), Duration::from_millis(5500));
    let mut paused = false;
    let mut resumed = false;
    loop {
        let t = started.elapsed();
        assert!(
            t < Duration::from_secs(90),
            "the campaign did not finish: {:?}",
            counts(pg, "chaos")
        );
        if !paused && t >= pause {
            if let Some(c) = &workers[0] {
                signal("-STOP", c);
                paused = true;
            }
        }
        if paused && !resumed && t >= resume {
            if let Some(c) = &workers[0] {
                signal("-CONT", c);
            }
            resumed = true;
        }
        if t >= next_kill && left() > 0 {
            next_kill += Duration::from_secs(1);
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let i = (seed % 3) as usize;
            // Not the paused one while it is paused.
            if !(i == 0 && paused && !resumed) {
                if let Some(mut c) = workers[i].take() {
                    let _ = c.kill();
                    let _ = c.wait();
                    kills += 1;
                }
                workers[i] = Some(spawn());
                restarts += 1;
            }
        }
        let mut running = 0;
        for slot in workers.iter_mut() {
            if let Some(c) = slot {
                if let Some(status) = c.try_wait().unwrap() {
                    let mut err = String::new();
                    use std::io::Read;
                    let _ = c.stderr.take().unwrap().read_to_string(&mut err);
                    if err.contains("lost its lease") {
                        lost_lease += 1;
                    }
                    assert!(
                        matches!(status.code(), Some(0) | Some(1) | Some(3)),
                        "{status}: {err}"
                    );
                    *slot = None;
                } else {
                    running += 1;
                }
            }
        }
        if running == 0 {
            if left() == 0 {
                break;
            }
            // Exited early (a lost lease): start it again.
            workers[0] = Some(spawn());
            restarts += 1;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let seconds = started.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(300));

    let c = counts(pg, "chaos");
    let (accepted, ambiguous) = (n(&c, "accepted"), n(&c, "ambiguous"));
    assert_eq!(accepted + ambiguous, ROWS, "lost: {c:?}");
    let amb: Vec<String> = pg
        .psql(
            "chaos",
            "SELECT address FROM letterpress_recipients WHERE state = 'ambiguous' ORDER BY row",
        )
        .lines()
        .map(str::to_string)
        .collect();
    let d = sink.deliveries();
    let twice: Vec<_> = d.iter().filter(|(_, &n)| n > 1).collect();
    assert!(twice.is_empty(), "sent twice: {twice:?}");
    let delivered_amb = amb.iter().filter(|a| d.contains_key(*a)).count();
    assert_eq!(
        d.len(),
        accepted + delivered_amb,
        "the sink's count and the journal's differ"
    );
    let accepted_list = pg.psql(
        "chaos",
        "SELECT address FROM letterpress_recipients WHERE state = 'accepted'",
    );
    for a in accepted_list.lines() {
        assert_eq!(d.get(a), Some(&1), "{a} accepted but not delivered once");
    }
    assert!(paused && resumed);
    // Each worker has 2 connections. When it is killed, or paused past its
    // lease, each connection may leave 3 recipients ambiguous: the letter
    // whose outcome was still queued (it rides with the next write), the
    // letter in SMTP, and the next one, marked ahead (Journal::begin_ahead)
    // but never started; the last is the price of not waiting for the
    // database before MAIL FROM. At most 6 for each kill and the pause.
    assert!(
        ambiguous <= 6 * (kills + 1),
        "{ambiguous} ambiguous after {kills} kills and a pause: {amb:?}"
    );
    eprintln!(
        "chaos: {ROWS} contacts in {seconds:.1} s, {kills} kills, {restarts} restarts, \
         {lost_lease} worker(s) stopped on a lost lease; {accepted} accepted, {ambiguous} \
         ambiguous ({delivered_amb} of them delivered): {amb:?}"
    );
}
