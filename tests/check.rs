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
    // The notes: the size of the biggest letter (a Hebrew one, with the two
    // calendar files), the contacts per letter, and the two languages that
    // have no variant.
    assert!(
        r.stdout
            .contains("checked 12 rows: 0 errors, 0 warnings, 4 notes"),
        "{}",
        r.stdout
    );
    for note in [
        "recipients.example.csv:1: note: 2 contacts are in language `de`, which has no variant (weremember.de.mjml): they get the default letter",
        "recipients.example.csv:1: note: 2 contacts are in language `pl`, which has no variant (weremember.pl.mjml): they get the default letter",
        "recipients.example.csv:1: note: contacts per letter: en, the default: 3, fr: 2, he: 3, de → default: 2, pl → default: 2",
    ] {
        assert!(r.stdout.contains(note), "missing `{note}` in\n{}", r.stdout);
    }
    assert!(
        r.stdout
            .contains("recipients.example.csv: note: row 4: the biggest letter takes ")
            && r.stdout
                .contains(" bytes; all within the 10 MB many relays take and Gmail's 25 MB"),
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
        "bad.csv:1: warning: the template has variants in fr, he, but the list has no `lang` column, so every contact gets the default letter",
        "bad.csv:1: note: contacts per letter: en, the default: 7",
        "checked 9 rows: 5 errors, 3 warnings, 3 notes",
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

/// A template with what MJML's validator would report and what would reach
/// contacts as literal text or as a link that says nothing. Each finding is
/// a warning at its template line; the letters still render, so exit 0.
#[test]
fn mjml_validator_findings_foreign_placeholders_and_vague_links_have_lines() {
    let dir = tempfile::tempdir().unwrap();
    let template = "From: Sender <sender@example.org>
To: {{name}} <{{email}}>
Subject: Hello *|FNAME|*
List-Unsubscribe: <https://example.org/u?e={{email}}>

<mjml>
  <mj-body>
    <mj-section><mj-column>
      <mj-text font-size=\"12px\" color=\"#333333\" font-size=\"14px\">Dear {first_name},</mj-text>
      <mj-text>Your code is %%code%%, [name].</mj-text>
      <mj-image src=\"https://example.org/a.png\" scr=\"b.png\" width=\"300\" />
      <mj-text>To read the report <a href=\"https://example.org/r\">click here</a>.</mj-text>
      <mj-text>Click here on Monday.</mj-text>
      <mj-buton href=\"https://example.org\">Go</mj-buton>
      <mj-button href=\"https://example.org/more\" background-color=\"0b3d91\">Read more</mj-button>
    </mj-column></mj-section>
    <mj-include path=\"footer.mjml\" />
  </mj-body>
</mjml>
";
    let t = write(dir.path(), "t.mjml", template);
    write(
        dir.path(),
        "footer.mjml",
        "<mj-section><mj-column>\n  <mj-text padding=\"10\">Bye</mj-text>\n  <p>Lost</p>\n</mj-column></mj-section>\n",
    );
    let c = write(dir.path(), "r.csv", "email,name\na@example.org,Ann\n");
    let r = run(&["check".as_ref(), t.as_os_str(), c.as_os_str()], None);
    r.expect_code(0);
    let expected = [
        "t.mjml:3: warning: `*|FNAME|*` looks like a placeholder in Mailchimp's syntax; Handlebars leaves it as it is, so contacts would read it literally: write `{{FNAME}}` for a column named `FNAME`",
        "t.mjml:9: warning: `font-size` is set twice on `<mj-text>` (`12px` on line 9, `14px` here); MJML uses the first and mrml the last, so remove one",
        "t.mjml:9: warning: `{first_name}` looks like a placeholder in single braces;",
        "t.mjml:10: warning: `%%code%%` looks like a placeholder in Salesforce's syntax;",
        "t.mjml:10: warning: `[name]` looks like a placeholder in square brackets;",
        "t.mjml:11: warning: `<mj-image>` has no attribute `scr` (did you mean `src`?); MJML ignores it",
        "t.mjml:11: warning: `width=\"300\"` on `<mj-image>`: MJML accepts one value in px or % (or `0`), such as `10px`",
        "t.mjml:12: warning: the link text `click here` says nothing about where it leads",
        "t.mjml:13: warning: `Click here` tells the reader to click, but it is not a link",
        "t.mjml:14: warning: `<mj-buton>` is not an MJML tag (did you mean `<mj-button>`?)",
        "t.mjml:15: warning: `background-color=\"0b3d91\"` on `<mj-button>`: not a colour MJML accepts",
        "t.mjml:15: warning: the link text `Read more` says nothing",
        "footer.mjml:2: warning: `padding=\"10\"` on `<mj-text>`: MJML accepts 1 to 4 values in px or % (or `0`), such as `10px 25px`",
        "footer.mjml:3: warning: `<p>` is HTML where MJML expects its own tags: MJML leaves it out of the letter with all it holds (mrml, which renders here, keeps it); put it inside an mj-text, or an mj-raw",
        "checked 1 rows: 0 errors, 14 warnings, 0 notes",
    ];
    for e in expected {
        assert!(r.stdout.contains(e), "missing `{e}` in\n{}", r.stdout);
    }
}

/// `check --spam` with the real SpamAssassin (installed by `.ci/setup`),
/// offline: the example letter scores 0.
#[test]
fn the_example_letter_scores_zero_in_spamassassin() {
    let r = run(
        &[
            "check",
            "--spam",
            "templates/weremember.mjml",
            "recipients.example.csv",
        ],
        None,
    );
    assert!(
        !r.stdout.contains("spamassassin is not installed"),
        "SpamAssassin is missing: run .ci/setup (as root) to install it"
    );
    r.expect_code(0);
    // One letter of each template: English (row 1), French (row 8) and
    // Hebrew (row 4).
    for line in [
        "spamassassin: row 1's letter (en) scores 0.0 points (5.0 or more is spam)",
        "spamassassin: row 4's letter (he) scores 0.0 points (5.0 or more is spam)",
        "spamassassin: row 8's letter (fr) scores 0.0 points (5.0 or more is spam)",
    ] {
        assert!(r.stdout.contains(line), "missing `{line}` in\n{}", r.stdout);
    }
    assert!(!r.stdout.contains("SpamAssassin "), "{}", r.stdout);
    // The notes are check's own: the biggest letter, and the languages.
    assert!(
        r.stdout
            .contains("checked 12 rows: 0 errors, 0 warnings, 4 notes"),
        "{}",
        r.stdout
    );
}

/// A letter written the way spam is: capitals, money, hidden text. Each
/// rule is a warning with its points and a hint (the subject's on the
/// Subject line), and the check exits 5.
#[test]
fn a_spammy_letter_fires_rules_with_hints_and_exits_5() {
    let dir = tempfile::tempdir().unwrap();
    let template = "From: Prize Desk <winner@prizes.example.org>
Subject: FREE MONEY!!! YOU HAVE WON $1,000,000 - ACT NOW
List-Unsubscribe: <https://prizes.example.org/u?e={{email}}>

<mjml>
  <mj-body background-color=\"#ffffff\">
    <mj-section><mj-column>
      <mj-text>
        <p>Dear {{name}}, CONGRATULATIONS! You have been selected as a WINNER. 100% FREE, risk free. Act now!</p>
        <p style=\"color:#ffffff;font-size:1px;\">cheap pills online pharmacy</p>
        <p>Make money fast working from home. Lose weight now.</p>
      </mj-text>
    </mj-column></mj-section>
  </mj-body>
</mjml>
";
    let t = write(dir.path(), "t.mjml", template);
    let c = write(dir.path(), "r.csv", "email,name\nann@example.org,Ann\n");
    let args = [
        "check".as_ref(),
        "--spam".as_ref(),
        t.as_os_str(),
        c.as_os_str(),
    ];
    let r = run(&args, None);
    r.expect_code(5);
    for e in [
        "t.mjml:2: warning: SpamAssassin SUBJ_ALL_CAPS (+0.5 points): the Subject: header is in capitals",
        "t.mjml: warning: SpamAssassin HTML_FONT_LOW_CONTRAST (+0.7 points): text in (nearly) the background's colour",
        "t.mjml: warning: SpamAssassin RISK_FREE (+1.0 points): wording that spam uses",
        "t.mjml: warning: SpamAssassin ONLINE_PHARMACY (+0.8 points): BODY: Online Pharmacy",
    ] {
        assert!(r.stdout.contains(e), "missing `{e}` in\n{}", r.stdout);
    }
    let json = run(
        &[
            "check".as_ref(),
            "--spam".as_ref(),
            "--json".as_ref(),
            t.as_os_str(),
            c.as_os_str(),
        ],
        None,
    );
    json.expect_code(5);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert!(v["spam"]["points"].as_f64().unwrap() >= 5.0, "{v}");
    assert_eq!(v["spam"]["required"], 5.0);
    let rules = v["spam"]["rules"].as_array().unwrap();
    assert!(rules.iter().any(|r| r["name"] == "SUBJ_ALL_CAPS"), "{v}");
    // One template, one letter scored; no language to name.
    let letters = v["spam_letters"].as_array().unwrap();
    assert_eq!(letters.len(), 1, "{v}");
    assert_eq!(letters[0]["points"], v["spam"]["points"]);
    assert!(letters[0].get("lang").is_none(), "{v}");
}

#[test]
fn check_spam_without_spamassassin_says_so_and_exits_1() {
    let empty = tempfile::tempdir().unwrap();
    let r = run_env(
        &[
            "check",
            "--spam",
            "templates/weremember.mjml",
            "recipients.example.csv",
        ],
        &[("PATH".into(), empty.path().display().to_string())],
    );
    r.expect_code(1);
    assert!(
        r.stdout.contains(
            "spamassassin: error: spamassassin is not installed, so --spam cannot score the \
             letter; install it (Debian: `apt-get install spamassassin`) or leave out --spam"
        ),
        "{}",
        r.stdout
    );
}

/// A contact with no name gets the template's fallback greeting, which
/// must not be `Dear friend` (SpamAssassin's DEAR_FRIEND, 2.7 points).
#[test]
fn the_example_letter_to_a_nameless_contact_scores_zero_too() {
    let dir = tempfile::tempdir().unwrap();
    let c = write(
        dir.path(),
        "r.csv",
        "email,salutation,first_name,last_name,community,contact_id\nanon@example.org,,,,,c-2001\n",
    );
    let r = run(
        &[
            "check".as_ref(),
            "--spam".as_ref(),
            "templates/weremember.mjml".as_ref(),
            c.as_os_str(),
        ],
        None,
    );
    r.expect_code(0);
    assert!(
        r.stdout.contains("row 1's letter scores 0.0 points"),
        "{}",
        r.stdout
    );
}
