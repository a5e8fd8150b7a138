//! `check --spam`: one sample letter scored by SpamAssassin, run offline
//! on this machine (`spamassassin -L`: local rules only, no network
//! lookups), and each rule that fired explained in terms of the template.
//! Reads nothing but SpamAssassin's report; changes no letter.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use serde::Serialize;

/// SpamAssassin's verdict on one letter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Score {
    /// The data row of the letter that was scored.
    pub row: usize,
    /// The language of its template, when the campaign has variants.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    pub points: f64,
    /// The score at which SpamAssassin calls a letter spam (5.0 by default).
    pub required: f64,
    /// Every rule that fired, in SpamAssassin's order.
    pub rules: Vec<Rule>,
}

/// One rule that fired.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rule {
    pub name: String,
    pub points: f64,
    /// SpamAssassin's own description.
    pub description: String,
    /// What in a template usually causes it, when letterpress knows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<&'static str>,
}

impl Score {
    /// Whether SpamAssassin would mark the letter as spam.
    pub fn is_spam(&self) -> bool {
        self.points >= self.required
    }
}

/// Why a letter could not be scored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unscored {
    /// `spamassassin` is not on the PATH.
    Missing,
    /// It ran but failed, or its report could not be read.
    Failed(String),
}

impl std::fmt::Display for Unscored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unscored::Missing => f.write_str(
                "spamassassin is not installed, so --spam cannot score the letter; install \
                 it (Debian: `apt-get install spamassassin`) or leave out --spam",
            ),
            Unscored::Failed(why) => write!(f, "spamassassin could not score the letter: {why}"),
        }
    }
}

/// Scores `eml` (the letter of data row `row`) with the local SpamAssassin:
/// `spamassassin -x -L -t`, local tests only, no user preferences file.
pub fn score(eml: &[u8], row: usize) -> Result<Score, Unscored> {
    let mut child = Command::new("spamassassin")
        .args(["-x", "-L", "-t"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Unscored::Missing,
            _ => Unscored::Failed(e.to_string()),
        })?;
    let mut stdin = child.stdin.take().expect("piped");
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    // Written from a thread: SpamAssassin may answer before it has read
    // everything, and neither side may wait for the other.
    let (out, err) = std::thread::scope(|s| {
        s.spawn(move || {
            let _ = stdin.write_all(eml);
        });
        let err = s.spawn(move || {
            let mut err = String::new();
            let _ = stderr.read_to_string(&mut err);
            err
        });
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        (out, err.join().unwrap_or_default())
    });
    let status = child.wait().map_err(|e| Unscored::Failed(e.to_string()))?;
    let out = String::from_utf8_lossy(&out);
    match parse(&out, row) {
        Some(score) => Ok(score),
        None => Err(Unscored::Failed(format!(
            "{status}, and no report in its output{}",
            err.lines()
                .last()
                .map(|l| format!(" ({l})"))
                .unwrap_or_default()
        ))),
    }
}

/// The last "Content analysis details" table of `spamassassin -t` output
/// (a letter it calls spam carries the report twice).
fn parse(output: &str, row: usize) -> Option<Score> {
    let start = output.rfind("Content analysis details:")?;
    let mut lines = output[start..].lines();
    let head = lines.next()?;
    // `Content analysis details:   (0.7 points, 5.0 required)`
    let inner = head.split_once('(')?.1.split_once(')')?.0;
    let (points, required) = inner.split_once(',')?;
    let points = points.trim().strip_suffix("points")?.trim().parse().ok()?;
    let required = required
        .trim()
        .strip_suffix("required")?
        .trim()
        .parse()
        .ok()?;
    let mut rules: Vec<Rule> = Vec::new();
    let mut table = false;
    for line in lines {
        if line.starts_with("----") {
            table = true;
            continue;
        }
        if !table {
            continue;
        }
        if line.trim().is_empty() {
            break;
        }
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        let second = words.next().unwrap_or("");
        let is_rule = !line.starts_with("   ")
            && !second.is_empty()
            && second
                .bytes()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_');
        match (first.parse::<f64>(), is_rule) {
            (Ok(p), true) => rules.push(Rule {
                name: second.to_string(),
                points: p,
                description: words.collect::<Vec<_>>().join(" "),
                hint: hint(second),
            }),
            _ => {
                let last = rules.last_mut()?;
                last.description.push(' ');
                last.description.push_str(line.trim());
            }
        }
    }
    Some(Score {
        row,
        lang: None,
        points,
        required,
        rules,
    })
}

/// What in a template makes a rule fire, for the rules a letter made with
/// letterpress is likely to meet. Matched by name, or by prefix for the
/// numbered families.
const HINTS: &[(&str, &str)] = &[
    ("HTML_FONT_LOW_CONTRAST", "text in (nearly) the background's colour reads as hidden text: give every `color` a contrast with the `background-color` behind it"),
    ("FONT_INVIS_", "text a reader cannot see (white on white, or 1px): remove it or make it visible"),
    ("HTML_FONT_SIZE_HUGE", "very large text: use a heading of a normal size"),
    ("SUBJ_ALL_CAPS", "the Subject: header is in capitals: write it in sentence case"),
    ("SUBJ_", "the Subject: header: rephrase it plainly"),
    ("UPPERCASE_", "much of the text is in capitals: write it in sentence case"),
    ("HTML_IMAGE_ONLY_", "the letter is mostly images with little text: add text in mj-text"),
    ("HTML_IMAGE_RATIO_", "images outweigh the text: add text or use fewer images"),
    ("HTML_SHORT_LINK_IMG_", "a short letter that is mostly a linked image: add text"),
    ("MPART_ALT_DIFF", "the text part says something else than the HTML: update the sibling .txt template, or delete it to have it generated"),
    ("NUMERIC_HTTP_ADDR", "a link goes to an IP address: link to a domain name"),
    ("NORMAL_HTTP_TO_IP", "a link goes to an IP address: link to a domain name"),
    ("HTTPS_HTTP_MISMATCH", "a link's text shows an https address but the link goes to http: make them the same"),
    ("WEIRD_PORT", "a link names a port (`:8080`): link to the plain address"),
    ("HTML_OBFUSCATE_", "text written with character entities (`&#…;`) looks like hiding words: write the characters"),
    ("HTML_TAG_BALANCE_", "unbalanced HTML tags inside mj-text: close every tag you open"),
    ("HTML_MIME_NO_HTML_TAG", "the HTML part has no <html> tag"),
    ("EMPTY_MESSAGE", "the letter has no text"),
    ("DEAR_", "a greeting such as `Dear friend`, typical of unpersonalised spam: greet by name (`Dear {{first_name}}`), with a fallback that is not `Dear friend`"),
    ("LOCALPART_IN_SUBJECT", "the Subject: holds the recipient's address: leave `{{email}}` out of it"),
    ("TO_IN_SUBJ", "the Subject: holds the recipient's address: leave `{{email}}` out of it"),
    ("FREEMAIL_", "the From: or Reply-To: is a free-mail address: send from your own domain"),
    ("HEADER_FROM_DIFFERENT_DOMAINS", "From: and the envelope sender differ in domain"),
    ("RISK_FREE", "wording that spam uses (`risk free`): rephrase"),
    ("ACT_NOW_", "wording that spam uses (`act now`): rephrase"),
    ("US_DOLLARS_", "large sums of money in the text: rephrase"),
    ("LOTS_OF_MONEY", "large sums of money in the text: rephrase"),
    ("ADVANCE_FEE_", "wording of advance-fee fraud (money, prizes, transfers): rephrase"),
    ("FILL_THIS_FORM_", "asks the reader to fill in a form: link to the form instead"),
    ("T_REMOTE_IMAGE", "the letter loads remote images"),
];

fn hint(rule: &str) -> Option<&'static str> {
    HINTS
        .iter()
        .find(|(name, _)| {
            if name.ends_with('_') {
                rule.starts_with(name)
            } else {
                rule == *name
            }
        })
        .map(|(_, hint)| *hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tail of `spamassassin -L -t` 4.0.1 for a spammy letter: the
    /// report comes twice, the last is read; a long rule name pushes its
    /// description out of the column; descriptions continue on the next line.
    const REPORT: &str = "Content analysis details:   (9.9 points, 5.0 required)\n\n garbage\n\n--=_x\n\nContent preview:  Dear Ann\n\nContent analysis details:   (3.2 points, 5.0 required)

 pts rule name              description
---- ---------------------- --------------------------------------------------
-0.0 NO_RECEIVED            Informational: message has no Received headers
 0.5 SUBJ_ALL_CAPS          Subject is all capitals
 0.7 HTML_FONT_LOW_CONTRAST BODY: HTML font color similar or identical to
                            background
 1.0 ADVANCE_FEE_3_NEW_MONEY Advance Fee fraud and lots of money
 1.0 SOME_NEW_RULE          Something else

";

    /// Every name in [`HINTS`] is a rule (or, ending in `_`, the prefix of
    /// rules) of the SpamAssassin that `.ci/setup` installs.
    #[test]
    fn hints_name_real_spamassassin_rules() {
        let dir = std::path::Path::new("/usr/share/spamassassin");
        let files = std::fs::read_dir(dir).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run .ci/setup (as root) to install SpamAssassin",
                dir.display()
            )
        });
        let mut rules = std::collections::BTreeSet::new();
        for f in files {
            let path = f.unwrap().path();
            if path.extension().is_some_and(|x| x == "cf") {
                let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
                for line in text.lines() {
                    let mut words = line.split_whitespace();
                    if let (
                        Some(
                            "describe" | "score" | "body" | "header" | "meta" | "rawbody" | "uri"
                            | "full" | "mimeheader",
                        ),
                        Some(name),
                    ) = (words.next(), words.next())
                    {
                        rules.insert(name.to_string());
                    }
                }
            }
        }
        assert!(
            rules.contains("HTML_FONT_LOW_CONTRAST"),
            "{} rules",
            rules.len()
        );
        for (name, _) in HINTS {
            let known = if name.ends_with('_') {
                rules.iter().any(|r| r.starts_with(name))
            } else {
                rules.contains(*name)
            };
            assert!(known, "{name} is not a SpamAssassin rule");
        }
    }

    #[test]
    fn reads_the_last_report_with_continued_descriptions() {
        let s = parse(REPORT, 1).unwrap();
        assert_eq!((s.points, s.required, s.row), (3.2, 5.0, 1));
        let rules: Vec<_> = s
            .rules
            .iter()
            .map(|r| (r.name.as_str(), r.points, r.description.as_str()))
            .collect();
        assert_eq!(
            rules,
            [
                (
                    "NO_RECEIVED",
                    -0.0,
                    "Informational: message has no Received headers"
                ),
                ("SUBJ_ALL_CAPS", 0.5, "Subject is all capitals"),
                (
                    "HTML_FONT_LOW_CONTRAST",
                    0.7,
                    "BODY: HTML font color similar or identical to background"
                ),
                (
                    "ADVANCE_FEE_3_NEW_MONEY",
                    1.0,
                    "Advance Fee fraud and lots of money"
                ),
                ("SOME_NEW_RULE", 1.0, "Something else"),
            ]
        );
        assert!(s.rules[1].hint.unwrap().contains("sentence case"));
        assert!(s.rules[3].hint.unwrap().contains("advance-fee"));
        assert_eq!(s.rules[4].hint, None);
        assert!(!s.is_spam());
        assert_eq!(parse("no report here", 1), None);
    }
}
