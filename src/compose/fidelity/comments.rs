//! Outlook's conditional comments: kept away from mrml's parser, put
//! back after, and merged where MJML merges them.

use super::*;

/// The start of the comment that stands for a conditional comment while
/// mrml renders.
pub(super) const MARK: &str = "<!--letterpress-conditional-comment:";

/// mrml parses what is inside Outlook's conditional comments
/// (`<!--[if mso | IE]><table><tr><td><![endif]-->`) as elements: a table
/// opened in one `mj-raw` and closed in another swallows everything between
/// as raw text, or fails to parse. MJML copies the comment. Each is replaced
/// by a plain comment mrml copies, and put back by [`correct`].
pub(super) fn hide_conditional_comments<'a>(
    mjml: &'a str,
    comments: &mut Vec<String>,
) -> Cow<'a, str> {
    let mut edits = Vec::new();
    let mut at = 0;
    while let Some(p) = mjml[at..].find("<!--[if ") {
        let start = at + p;
        let head_end = mjml[start..].find("]>").map(|e| start + e + 2);
        let Some(head_end) = head_end else { break };
        // `<!--[if !mso]><!-->` shows its content to other clients: that is
        // markup, not a comment.
        if mjml[head_end..].starts_with("<!-->") {
            at = head_end;
            continue;
        }
        let Some(end) = mjml[head_end..]
            .find("<![endif]-->")
            .map(|e| head_end + e + 12)
        else {
            break;
        };
        edits.push((start..end, format!("{MARK}{}-->", comments.len())));
        comments.push(mjml[start..end].to_string());
        at = end;
    }
    apply(mjml, edits)
}

/// The comments [`hide_conditional_comments`] took out, back in place.
pub(super) fn restore_conditional_comments(html: String, comments: &[String]) -> String {
    if comments.is_empty() {
        return html;
    }
    let mut out = String::with_capacity(html.len());
    let mut rest = html.as_str();
    while let Some(p) = rest.find(MARK) {
        out.push_str(&rest[..p]);
        let after = &rest[p + MARK.len()..];
        let restored = after.split_once("-->").and_then(|(n, tail)| {
            let c = comments.get(n.parse::<usize>().ok()?)?;
            Some((c, tail))
        });
        match restored {
            Some((c, tail)) => {
                out.push_str(c);
                rest = tail;
            }
            None => {
                out.push_str(MARK);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// MJML merges an Outlook conditional comment that ends right where the
/// next begins (`<![endif]--><!--[if mso | IE]>`, whitespace between) into
/// one, after rendering; mrml leaves them apart, about 0.8 KB more per
/// letter.
pub(super) fn merge_conditionals(html: String) -> String {
    const END: &str = "<![endif]-->";
    const START: &str = "<!--[if mso | IE]>";
    if !html.contains(END) {
        return html;
    }
    let mut out = String::with_capacity(html.len());
    let mut rest = html.as_str();
    while let Some(p) = rest.find(END) {
        let after = &rest[p + END.len()..];
        let trimmed = after.trim_start();
        if let Some(next) = trimmed.strip_prefix(START) {
            out.push_str(&rest[..p]);
            rest = next;
        } else {
            out.push_str(&rest[..p + END.len()]);
            rest = after;
        }
    }
    out.push_str(rest);
    out
}
