//! `letterpress render --check DIR`: a snapshot folder compared with a fresh
//! render, a readable diff per changed letter, exit code 4, and `--update`.

use std::path::{Path, PathBuf};

use crate::common::*;

/// The example campaign copied into `dir`, so a test can edit it.
fn campaign(dir: &Path) -> (PathBuf, PathBuf) {
    let t = write(
        dir,
        "weremember.mjml",
        std::fs::read(example_template()).unwrap(),
    );
    let csv = write(dir, "r.csv", std::fs::read(example_csv()).unwrap());
    // The calendar files the letter attaches.
    std::fs::create_dir_all(dir.join("events")).unwrap();
    for e in std::fs::read_dir(root().join("templates/events")).unwrap() {
        let e = e.unwrap().path();
        std::fs::copy(&e, dir.join("events").join(e.file_name().unwrap())).unwrap();
    }
    (t, csv)
}

fn render(t: &Path, csv: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "render".to_string(),
        t.display().to_string(),
        csv.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    run(&args, None)
}

/// `render --deterministic --check SNAP`, with `--update` if `update`.
fn check(t: &Path, csv: &Path, snap: &Path, update: bool) -> Output {
    let snap = snap.to_str().unwrap();
    let mut args = vec!["--deterministic", "--check", snap];
    if update {
        args.push("--update");
    }
    render(t, csv, &args)
}

fn snapshot(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let (t, csv) = campaign(dir);
    let snap = dir.join("snap");
    render(
        &t,
        &csv,
        &["--deterministic", "--out", snap.to_str().unwrap()],
    )
    .expect_code(0);
    (t, csv, snap)
}

#[test]
fn an_unchanged_campaign_matches_its_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (t, csv, snap) = snapshot(dir.path());
    let before = tree(&snap);
    let out = check(&t, &csv, &snap, false);
    out.expect_code(0);
    assert!(
        out.stdout
            .contains("matches: 0 changed, 0 added, 0 removed, 12 unchanged"),
        "{}",
        out.stdout
    );
    assert_eq!(tree(&snap), before, "--check writes nothing");
}

#[test]
fn a_one_word_change_exits_4_with_a_decoded_diff_naming_the_word() {
    let dir = tempfile::tempdir().unwrap();
    let (t, csv, snap) = snapshot(dir.path());
    let template = std::fs::read_to_string(&t).unwrap();
    std::fs::write(&t, template.replace("horrific tragedy", "terrible tragedy")).unwrap();

    let out = check(&t, &csv, &snap, false);
    out.expect_code(4);
    let s = &out.stdout;
    assert!(
        s.contains(
            "changed  0001-david.breuer_example.org [en] (row 1, david.breuer@example.org):"
        ),
        "{s}"
    );
    // The word, in decoded text and HTML lines: no quoted-printable.
    let minus: Vec<&str> = s
        .lines()
        .filter(|l| l.starts_with('-') && l.contains("horrific"))
        .collect();
    let plus: Vec<&str> = s
        .lines()
        .filter(|l| l.starts_with('+') && l.contains("terrible"))
        .collect();
    assert!(!minus.is_empty() && !plus.is_empty(), "{s}");
    assert!(plus.iter().any(|l| l.contains("<p>")), "the HTML line: {s}");
    assert!(plus.iter().any(|l| !l.contains('<')), "the text line: {s}");
    assert!(
        !s.contains("=E2=80=99") && !s.contains("=\n"),
        "no quoted-printable: {s}"
    );
    // Every letter changed the same way: one diff, then one line each.
    assert!(s.contains("changed  0002-zofia.wisniewska_example.org [en]: the same change as 0001-david.breuer_example.org (Message-ID aside)"), "{s}");
    assert!(
        s.contains("differs: 12 changed, 0 added, 0 removed, 0 unchanged"),
        "{s}"
    );

    // --update rewrites the snapshot; then it matches.
    let out = check(&t, &csv, &snap, true);
    out.expect_code(0);
    assert!(out.stdout.contains("updated  "), "{}", out.stdout);
    let html = std::fs::read_to_string(snap.join("0001-david.breuer_example.org.html")).unwrap();
    assert!(html.contains("terrible tragedy"));
    check(&t, &csv, &snap, false).expect_code(0);
}

#[test]
fn letters_added_and_removed_are_listed_and_update_removes_stale_files() {
    let dir = tempfile::tempdir().unwrap();
    let (t, csv, snap) = snapshot(dir.path());
    let mut lines: Vec<String> = std::fs::read_to_string(&csv)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    lines.pop(); // row 12 goes
    lines.push("new.one@example.org,,New,One,Somewhere,c-2000,en".into()); // row 12 is someone else
    std::fs::write(&csv, lines.join("\n") + "\n").unwrap();

    let out = check(&t, &csv, &snap, false);
    out.expect_code(4);
    assert!(
        out.stdout
            .contains("added    0012-new.one_example.org [en] (row 12, new.one@example.org)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("removed  0012-tamar.ben-david_example.org [en] (in "),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("differs: 0 changed, 1 added, 1 removed, 11 unchanged"),
        "{}",
        out.stdout
    );

    check(&t, &csv, &snap, true).expect_code(0);
    assert!(!snap.join("0012-tamar.ben-david_example.org.eml").exists());
    assert!(snap.join("0012-new.one_example.org.eml").exists());
    check(&t, &csv, &snap, false).expect_code(0);
}

#[test]
fn check_needs_a_deterministic_render_and_an_existing_folder() {
    let dir = tempfile::tempdir().unwrap();
    let (t, csv) = campaign(dir.path());
    let out = render(&t, &csv, &["--check", dir.path().to_str().unwrap()]);
    out.expect_code(2);
    assert!(out.stderr.contains("--deterministic"), "{}", out.stderr);
    let missing = dir.path().join("nope");
    let out = render(
        &t,
        &csv,
        &["--deterministic", "--check", missing.to_str().unwrap()],
    );
    out.expect_code(1);
    assert!(out.stderr.contains("--update"), "{}", out.stderr);
    // --update without --check is a usage error (clap).
    render(&t, &csv, &["--deterministic", "--update"]).expect_code(2);
}

/// The file names in `dir` (not their bytes: a failing assertion prints
/// names, not vectors).
fn names(dir: &Path) -> Vec<String> {
    tree(dir).into_iter().map(|(n, _)| n).collect()
}

/// Asserts `dir` holds exactly `before`, byte for byte.
fn assert_untouched(dir: &Path, before: &[(String, Vec<u8>)]) {
    let now = tree(dir);
    let before_names: Vec<&String> = before.iter().map(|(n, _)| n).collect();
    assert!(
        now == before,
        "{} changed: {before_names:?} -> {:?}",
        dir.display(),
        names(dir)
    );
}

#[test]
fn update_refuses_a_folder_that_is_not_a_snapshot_and_keeps_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let (t, csv) = campaign(dir.path());
    let docs = dir.path().join("docs");
    std::fs::create_dir(&docs).unwrap();
    write(&docs, "2024-budget.txt", "the budget");
    write(&docs, "2023-annual-report.html", "<p>the report</p>");
    write(&docs, "0001-notes.eml", "notes");
    let before = tree(&docs);

    for update in [true, false] {
        let out = check(&t, &csv, &docs, update);
        out.expect_code(1);
        assert!(
            out.stderr.contains("is not a letterpress snapshot")
                && out.stderr.contains("no manifest.json")
                && out.stderr.contains("new or empty folder"),
            "{}",
            out.stderr
        );
        assert_untouched(&docs, &before);
    }
}

#[test]
fn update_refuses_a_manifest_that_letterpress_did_not_write() {
    let dir = tempfile::tempdir().unwrap();
    let (t, csv) = campaign(dir.path());
    let outside = write(dir.path(), "victim.txt", "keep me");
    let cases = [
        ("not JSON", "{\"letterpress\": "),
        ("someone else's", r#"{"name": "my-app", "letters": []}"#),
        (
            "a path out of the folder",
            r#"{"letterpress": "0.1.0", "letters": [{"files": {"txt": "../victim.txt"}}]}"#,
        ),
        (
            "not a letter file",
            r#"{"letterpress": "0.1.0", "letters": [{"files": {"txt": "2024-budget.ods"}}]}"#,
        ),
    ];
    for (what, manifest) in cases {
        let docs = dir.path().join("docs");
        let _ = std::fs::remove_dir_all(&docs);
        std::fs::create_dir(&docs).unwrap();
        write(&docs, "manifest.json", manifest);
        write(&docs, "0001-mine.txt", "mine");
        write(&docs, "2024-budget.ods", "the budget");
        let before = tree(&docs);
        let out = check(&t, &csv, &docs, true);
        out.expect_code(1);
        assert!(
            out.stderr.contains("is not a letterpress snapshot"),
            "{what}: {}",
            out.stderr
        );
        assert_untouched(&docs, &before);
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep me");
    }
}

#[test]
fn update_removes_only_the_files_its_manifest_lists() {
    let dir = tempfile::tempdir().unwrap();
    let (t, csv, snap) = snapshot(dir.path());
    // Files of someone else's beside the snapshot, named like letters.
    write(&snap, "2024-budget.txt", "the budget");
    write(&snap, "0013-notes.eml", "notes");
    let mut lines: Vec<String> = std::fs::read_to_string(&csv)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    lines.pop(); // row 12 goes
    std::fs::write(&csv, lines.join("\n") + "\n").unwrap();

    let out = check(&t, &csv, &snap, false);
    out.expect_code(4);
    assert!(
        out.stdout
            .contains("differs: 0 changed, 0 added, 1 removed, 11 unchanged"),
        "{}",
        out.stdout
    );
    check(&t, &csv, &snap, true).expect_code(0);
    let left = names(&snap);
    assert!(
        !left.iter().any(|n| n.starts_with("0012-")),
        "the stale letter goes: {left:?}"
    );
    assert_eq!(
        std::fs::read_to_string(snap.join("2024-budget.txt")).unwrap(),
        "the budget"
    );
    assert_eq!(
        std::fs::read_to_string(snap.join("0013-notes.eml")).unwrap(),
        "notes"
    );
    check(&t, &csv, &snap, false).expect_code(0);
}

#[test]
fn update_writes_a_new_or_empty_folder() {
    let dir = tempfile::tempdir().unwrap();
    let (t, csv) = campaign(dir.path());
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    for snap in [empty, dir.path().join("a/new/one")] {
        check(&t, &csv, &snap, true).expect_code(0);
        assert!(snap.join("manifest.json").exists());
        assert!(snap.join("0001-david.breuer_example.org.eml").exists());
        check(&t, &csv, &snap, false).expect_code(0);
    }
}

#[test]
fn check_of_a_file_says_it_is_a_file_not_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    let (t, csv) = campaign(dir.path());
    let file = write(dir.path(), "snap", "not a folder");
    for update in [false, true] {
        let out = check(&t, &csv, &file, update);
        out.expect_code(1);
        assert!(
            out.stderr.contains("is a file, not a folder")
                && !out.stderr.contains("does not exist"),
            "{}",
            out.stderr
        );
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "not a folder");
    }
}

#[test]
fn update_to_fewer_formats_removes_the_files_of_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let (t, csv, snap) = snapshot(dir.path());
    write(&snap, "2024-budget.txt", "the budget");
    let s = snap.to_str().unwrap();
    let args = [
        "--deterministic",
        "--format",
        "eml",
        "--check",
        s,
        "--update",
    ];
    render(&t, &csv, &args).expect_code(0);
    let left = names(&snap);
    assert!(
        left.iter()
            .any(|n| n == "0001-david.breuer_example.org.eml")
            && !left
                .iter()
                .any(|n| n.starts_with("0001-") && !n.ends_with(".eml")),
        "{left:?}"
    );
    assert!(snap.join("2024-budget.txt").exists(), "{left:?}");
}

#[test]
fn report_lines_name_each_letters_language() {
    let dir = tempfile::tempdir().unwrap();
    let (t, csv) = campaign(dir.path());
    // The Hebrew and French variants beside the template.
    for lang in ["he", "fr"] {
        let name = format!("weremember.{lang}.mjml");
        write(
            dir.path(),
            &name,
            std::fs::read(root().join("templates").join(&name)).unwrap(),
        );
    }
    let snap = dir.path().join("snap");
    render(
        &t,
        &csv,
        &["--deterministic", "--out", snap.to_str().unwrap()],
    )
    .expect_code(0);
    check(&t, &csv, &snap, false).expect_code(0);

    // A change to the Hebrew letter alone: its three letters, each named
    // with its language.
    let he = dir.path().join("weremember.he.mjml");
    let hebrew = std::fs::read_to_string(&he).unwrap();
    let closing = "אנו סומכים על";
    assert!(hebrew.contains(closing));
    std::fs::write(&he, hebrew.replace(closing, "אנו בוטחים ב")).unwrap();
    let out = check(&t, &csv, &snap, false);
    out.expect_code(4);
    let s = &out.stdout;
    // Each letter's diff differs (the community's name is in it).
    for (row, stem, to) in [
        (
            4,
            "0004-yaakov.cohen_example.org",
            "yaakov.cohen@example.org",
        ),
        (5, "0005-noa.levi_example.org", "noa.levi@example.org"),
        (
            12,
            "0012-tamar.ben-david_example.org",
            "tamar.ben-david@example.org",
        ),
    ] {
        let line = format!("changed  {stem} [he] (row {row}, {to}):");
        assert!(s.contains(&line), "{line}\n{s}");
    }
    assert!(
        s.contains("differs: 3 changed, 0 added, 0 removed, 9 unchanged"),
        "{s}"
    );
    std::fs::write(&he, hebrew).unwrap();

    // A Hebrew contact leaves (named from the snapshot's manifest), a
    // French one comes.
    let mut lines: Vec<String> = std::fs::read_to_string(&csv)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    lines.pop();
    lines.push("nouvelle@example.org,Mme,Anne,Nouvelle,Paris,c-2000,fr".into());
    std::fs::write(&csv, lines.join("\n") + "\n").unwrap();
    let out = check(&t, &csv, &snap, false);
    out.expect_code(4);
    assert!(
        out.stdout
            .contains("added    0012-nouvelle_example.org [fr] (row 12, nouvelle@example.org)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("removed  0012-tamar.ben-david_example.org [he] (in "),
        "{}",
        out.stdout
    );
}
