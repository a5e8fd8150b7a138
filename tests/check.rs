//! `letterpress check`: finds every planted problem, writes nothing.

use crate::common::*;

#[test]
fn the_example_campaign_is_clean() {
    let r = run(
        &[
            "check",
            "templates/weremember.mjml",
            "recipients.example.csv",
        ],
        None,
    );
    r.expect_code(0);
    // The one note: the size of the biggest letter, which carries the two
    // calendar files.
    assert!(
        r.stdout
            .contains("checked 12 rows: 0 errors, 0 warnings, 1 notes"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains(
            "recipients.example.csv: note: row 4: the biggest letter takes 37086 bytes; \
             all within the 10 MB many relays take and Gmail's 25 MB"
        ),
        "{}",
        r.stdout
    );
}

#[test]
fn finds_every_problem_planted_in_a_bad_csv() {
    let r = run(
        &[
            "check",
            "templates/weremember.mjml",
            "tests/fixtures/bad.csv",
        ],
        None,
    );
    r.expect_code(3);
    let expected = [
        "bad.csv:1: note: column `notes`: is not used by the template",
        "bad.csv:3: error: row 2, column `email`: To: `not-an-address` is not a valid email address",
        "bad.csv:4: error: row 3, column `email`: To: the address is empty",
        "bad.csv:5: warning: row 4: `ANNA@example.org` is a duplicate of row 1 (line 2)",
        "bad.csv:6: error: row 5, column `first_name`: holds a line break or NUL, which would go into the To header",
        "bad.csv:8: error: row 6: has 4 fields, the header has 7",
        "bad.csv:9: error: row 7, column `first_name`: is not valid UTF-8",
        "bad.csv:10: warning: row 8: the HTML is",
        "bad.csv: note: row 8: the biggest letter takes",
        "checked 9 rows: 5 errors, 2 warnings, 2 notes",
    ];
    for e in expected {
        assert!(r.stdout.contains(e), "missing `{e}` in\n{}", r.stdout);
    }
}

#[test]
fn json_report_is_machine_readable() {
    let r = run(
        &[
            "check",
            "--json",
            "templates/weremember.mjml",
            "tests/fixtures/bad.csv",
        ],
        None,
    );
    r.expect_code(3);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["rows"], 9);
    assert_eq!(v["errors"], 5);
    let problems = v["problems"].as_array().unwrap();
    let dup = problems
        .iter()
        .find(|p| p["message"].as_str().unwrap().contains("duplicate"))
        .unwrap();
    assert_eq!(dup["severity"], "warning");
    assert_eq!(dup["line"], 5);
    assert_eq!(dup["row"], 4);
}

#[test]
fn template_problems_are_reported_with_lines_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let template = SMALL_TEMPLATE
        .replace(
            "List-Unsubscribe: <https://example.org/u?e={{email}}>\n",
            "",
        )
        .replace("Dear {{name}}", "Dear {{title}} {{name}}");
    let t = write(dir.path(), "t.mjml", template);
    let c = write(dir.path(), "r.csv", "email,name\na@example.org,Ann\n");
    let r = run(&["check".as_ref(), t.as_os_str(), c.as_os_str()], None);
    r.expect_code(1);
    assert!(
        r.stdout
            .contains("t.mjml:1: warning: no List-Unsubscribe header"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("t.mjml:8: error: the template uses `title`, but"),
        "{}",
        r.stdout
    );
    assert_eq!(tree(dir.path()).len(), 2, "check writes nothing");
}

#[test]
fn an_unknown_helper_is_one_template_error_not_one_per_row() {
    let dir = tempfile::tempdir().unwrap();
    let template = SMALL_TEMPLATE.replace("Dear {{name}}", "Dear {{shout name}}");
    let t = write(dir.path(), "t.mjml", template);
    let mut rows = String::from("email,name\n");
    for i in 0..50 {
        rows.push_str(&format!("r{i}@example.org,R{i}\n"));
    }
    let c = write(dir.path(), "r.csv", rows);
    let r = run(&["check".as_ref(), t.as_os_str(), c.as_os_str()], None);
    r.expect_code(1);
    let errors: Vec<&str> = r.stdout.lines().filter(|l| l.contains("error:")).collect();
    assert_eq!(errors.len(), 1, "{}", r.stdout);
    assert!(
        errors[0].contains("t.mjml:9: error: the template calls `shout`"),
        "{}",
        r.stdout
    );
}
