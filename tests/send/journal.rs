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
    let before = std::fs::read(c.journal()).unwrap();
    let r = run(&a, None);
    r.expect_code(1);
    assert!(
        r.stderr.contains("belongs to another campaign") && r.stderr.contains("news.mjml"),
        "{}",
        r.stderr
    );
    assert_eq!(sink.messages().len(), 2, "nothing more was sent");
    assert_eq!(std::fs::read(c.journal()).unwrap(), before);
}
