//! Language tags (BCP 47, RFC 5646) as far as a campaign needs them: which
//! are well-formed, which variant a contact's tag falls back to, and which
//! languages are written right to left. No registry is consulted: a
//! well-formed tag for a language nobody wrote a variant in simply gets the
//! default letter. This file does no I/O.

use crate::compose::bidi::Direction;

/// A well-formed language tag, kept as written (for messages) and compared
/// case-insensitively, as RFC 5646 section 2.1.1 says tags are.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tag {
    /// Lower-cased: the form compared and used in file names' lookups.
    key: String,
    /// As written, with the conventional case (`pt-BR`, `zh-Hant`).
    shown: String,
}

impl Tag {
    /// Parses `s` if it is a well-formed BCP 47 tag (RFC 5646 section 2.1
    /// syntax, with a primary language of 2 or 3 letters, grandfathered
    /// tags aside); `None` otherwise. `pt_BR`, a
    /// POSIX locale, is not a tag: [`Tag::hint`] says how to write it.
    pub fn parse(s: &str) -> Option<Tag> {
        let s = s.trim();
        if !well_formed(s) {
            return None;
        }
        let shown = s
            .split('-')
            .enumerate()
            .map(|(i, sub)| match (i, sub.len()) {
                (0, _) => sub.to_ascii_lowercase(),
                (_, 2) if sub.bytes().all(|b| b.is_ascii_alphabetic()) => sub.to_ascii_uppercase(),
                (_, 4) if sub.bytes().all(|b| b.is_ascii_alphabetic()) => {
                    let mut t = sub.to_ascii_lowercase();
                    t[..1].make_ascii_uppercase();
                    t
                }
                _ => sub.to_ascii_lowercase(),
            })
            .collect::<Vec<_>>()
            .join("-");
        Some(Tag {
            key: s.to_ascii_lowercase(),
            shown,
        })
    }

    /// What to write instead of `s`, a value that is not a tag, when the
    /// fix is evident (`pt_BR` → `pt-BR`, `fr.UTF-8` → `fr`).
    pub fn hint(s: &str) -> Option<Tag> {
        let base = s.trim().split(['.', '@']).next().unwrap_or("");
        Tag::parse(&base.replace('_', "-"))
    }

    /// The tag as conventionally written (`pt-BR`).
    pub fn as_str(&self) -> &str {
        &self.shown
    }

    /// The primary language subtag, lower-cased (`pt` of `pt-BR`).
    pub fn language(&self) -> &str {
        self.key.split('-').next().unwrap_or("")
    }

    /// The tags this one falls back to, itself first: `zh-Hant-TW`,
    /// `zh-Hant`, `zh` (RFC 4647 section 3.4 lookup, a private-use or
    /// single-letter subtag dropped with what follows it).
    pub fn fallbacks(&self) -> impl Iterator<Item = &str> {
        let key = self.key.as_str();
        let mut end = Some(key.len());
        std::iter::from_fn(move || {
            let e = end?;
            let candidate = &key[..e];
            end = candidate.rfind('-').map(|mut cut| {
                // A singleton (`x`, `u`) is dropped with the subtag after it.
                while let Some(prev) = key[..cut].rfind('-') {
                    if cut - prev == 2 {
                        cut = prev;
                    } else {
                        break;
                    }
                }
                cut
            });
            Some(candidate)
        })
    }

    /// The direction the language is written in: by its script subtag when
    /// it has one (`az-Arab` right to left, `ku-Latn` left to right), else
    /// by the language's usual script.
    pub fn direction(&self) -> Direction {
        let mut subtags = self.key.split('-');
        let language = subtags.next().unwrap_or("");
        let script = subtags
            .take_while(|s| s.len() != 1)
            .find(|s| s.len() == 4 && s.bytes().all(|b| b.is_ascii_alphabetic()));
        let rtl = match script {
            Some(s) => RTL_SCRIPTS.contains(&s),
            None => RTL_LANGUAGES.contains(&language),
        };
        if rtl {
            Direction::Rtl
        } else {
            Direction::Ltr
        }
    }
}

impl std::fmt::Display for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

/// Languages whose usual script runs right to left (CLDR's likely scripts
/// Arab, Hebr, Syrc, Thaa, Nkoo, Adlm and Rohg), old codes (`iw`, `ji`)
/// included.
const RTL_LANGUAGES: &[&str] = &[
    "ar", "arc", "ckb", "dv", "fa", "glk", "he", "iw", "ji", "khw", "ks", "lrc", "mzn", "nqo",
    "pnb", "ps", "sd", "skr", "syr", "ug", "ur", "yi",
];

/// Script subtags of right-to-left scripts, lower-cased.
const RTL_SCRIPTS: &[&str] = &[
    "adlm", "arab", "armi", "avst", "hebr", "mand", "mend", "nbat", "nkoo", "orkh", "palm", "phli",
    "phnx", "rohg", "samr", "sogd", "syrc", "thaa", "yezi",
];

/// RFC 5646's `langtag` and `privateuse` productions, case-insensitive.
fn well_formed(s: &str) -> bool {
    let subtags: Vec<&str> = s.split('-').collect();
    let alpha = |t: &str| t.bytes().all(|b| b.is_ascii_alphabetic());
    let digit = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    let alnum = |t: &str| t.bytes().all(|b| b.is_ascii_alphanumeric());
    if subtags
        .iter()
        .any(|t| t.is_empty() || t.len() > 8 || !alnum(t))
    {
        return false;
    }
    // privateuse: x-1*8alphanum, on its own.
    if subtags[0].eq_ignore_ascii_case("x") {
        return subtags.len() > 1;
    }
    let mut i = 0;
    let lang = subtags[0];
    // RFC 5646 also allows 5 to 8 letters for languages registered in
    // future; none is, and `english` in a list is a mistake to report.
    if !alpha(lang) || !(2..=3).contains(&lang.len()) {
        return false;
    }
    i += 1;
    // extlang: up to three 3-letter subtags after a 2 or 3-letter language.
    if lang.len() <= 3 {
        let mut ext = 0;
        while ext < 3 && i < subtags.len() && subtags[i].len() == 3 && alpha(subtags[i]) {
            i += 1;
            ext += 1;
        }
    }
    // script
    if i < subtags.len() && subtags[i].len() == 4 && alpha(subtags[i]) {
        i += 1;
    }
    // region
    if i < subtags.len()
        && ((subtags[i].len() == 2 && alpha(subtags[i]))
            || (subtags[i].len() == 3 && digit(subtags[i])))
    {
        i += 1;
    }
    // variants
    while i < subtags.len() {
        let t = subtags[i];
        let variant =
            (5..=8).contains(&t.len()) || (t.len() == 4 && t.as_bytes()[0].is_ascii_digit());
        if !variant {
            break;
        }
        i += 1;
    }
    // extensions and private use: a singleton, then subtags of 2..=8
    // (1..=8 after `x`).
    while i < subtags.len() {
        let single = subtags[i];
        if single.len() != 1 {
            return false;
        }
        let private = single.eq_ignore_ascii_case("x");
        i += 1;
        let start = i;
        while i < subtags.len() && (subtags[i].len() >= 2 || (private && !subtags[i].is_empty())) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if private {
            return i == subtags.len();
        }
    }
    true
}

/// The languages of a campaign's variants, and which one a contact's tag
/// selects.
#[derive(Debug, Clone, Default)]
pub struct Chooser {
    /// Lower-cased tags of the variants, with their index.
    tags: Vec<(String, usize)>,
}

/// Which variant a contact's value selected, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// The variant at this index (of those given to [`Chooser::new`]).
    Variant(usize),
    /// No value: the default letter.
    Default,
    /// A well-formed tag for which there is no variant: the default letter.
    Unmatched(Tag),
    /// A value that is not a language tag: the default letter.
    Invalid,
}

impl Chooser {
    /// A chooser among variants of these languages, by index; `None` for
    /// a variant of no known language, which no tag selects. Of two with
    /// one tag, the first wins.
    pub fn new<'a>(tags: impl IntoIterator<Item = Option<&'a Tag>>) -> Chooser {
        Chooser {
            tags: tags
                .into_iter()
                .enumerate()
                .filter_map(|(i, t)| Some((t?.key.clone(), i)))
                .collect(),
        }
    }

    /// The variant for `value`, a contact's language column: its tag, then
    /// each shorter tag it falls back to (`pt-BR` → `pt`).
    pub fn choose(&self, value: &str) -> Choice {
        if value.trim().is_empty() {
            return Choice::Default;
        }
        let Some(tag) = Tag::parse(value) else {
            return Choice::Invalid;
        };
        for candidate in tag.fallbacks() {
            if let Some((_, i)) = self.tags.iter().find(|(k, _)| k == candidate) {
                return Choice::Variant(*i);
            }
        }
        Choice::Unmatched(tag)
    }
}

/// The language tag in a variant's file name: `he` of `letter.he.mjml`
/// beside the default `letter.mjml`. `None` when `name` is not the default
/// name's stem, a dot, a well-formed tag and the same extension.
pub fn variant_tag(default: &str, name: &str) -> Option<Tag> {
    let (stem, ext) = default.rsplit_once('.')?;
    let middle = name
        .strip_prefix(stem)?
        .strip_prefix('.')?
        .strip_suffix(ext)?
        .strip_suffix('.')?;
    Tag::parse(middle).filter(|_| middle.trim() == middle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_tags_and_not() {
        for ok in [
            "he",
            "fr",
            "pt-BR",
            "zh-Hant-TW",
            "es-419",
            "sl-rozaj-biske",
            "de-CH-1901",
            "en-US-x-twain",
            "x-whatever",
            "zh-yue-HK",
            "EN-us",
            "sr-Latn",
        ] {
            assert!(Tag::parse(ok).is_some(), "{ok}");
        }
        for bad in [
            "",
            "pt_BR",
            "english",
            "e",
            "fr-",
            "-fr",
            "fr--CA",
            "he.UTF-8",
            "a1",
            "en-a",
            "en-x",
            "toolongtag1",
            "12",
            "fr CA",
        ] {
            assert!(Tag::parse(bad).is_none(), "{bad}");
        }
        assert_eq!(Tag::parse("PT-br").unwrap().as_str(), "pt-BR");
        assert_eq!(Tag::parse("zh-hant-tw").unwrap().as_str(), "zh-Hant-TW");
        assert_eq!(Tag::hint("pt_BR").unwrap().as_str(), "pt-BR");
        assert_eq!(Tag::hint("fr_FR.UTF-8").unwrap().as_str(), "fr-FR");
        assert_eq!(Tag::hint("nonsense value"), None);
    }

    #[test]
    fn falls_back_subtag_by_subtag() {
        let t = Tag::parse("zh-Hant-TW").unwrap();
        assert_eq!(
            t.fallbacks().collect::<Vec<_>>(),
            ["zh-hant-tw", "zh-hant", "zh"]
        );
        let t = Tag::parse("en-US-x-twain").unwrap();
        assert_eq!(
            t.fallbacks().collect::<Vec<_>>(),
            ["en-us-x-twain", "en-us", "en"]
        );
    }

    #[test]
    fn chooses_the_closest_variant() {
        let tags = [Tag::parse("he").unwrap(), Tag::parse("pt").unwrap()];
        let c = Chooser::new(tags.iter().map(Some));
        assert_eq!(c.choose("pt-BR"), Choice::Variant(1));
        assert_eq!(c.choose("HE"), Choice::Variant(0));
        assert_eq!(c.choose(" he-IL "), Choice::Variant(0));
        assert_eq!(c.choose(""), Choice::Default);
        assert_eq!(c.choose("de"), Choice::Unmatched(Tag::parse("de").unwrap()));
        assert_eq!(c.choose("pt_BR"), Choice::Invalid);
    }

    #[test]
    fn knows_right_to_left_languages_and_scripts() {
        for rtl in ["he", "he-IL", "ar-EG", "fa", "ur", "yi", "az-Arab", "iw"] {
            assert_eq!(
                Tag::parse(rtl).unwrap().direction(),
                Direction::Rtl,
                "{rtl}"
            );
        }
        for ltr in ["en", "fr", "pl", "ku-Latn", "ar-Latn", "de-x-hebr"] {
            assert_eq!(
                Tag::parse(ltr).unwrap().direction(),
                Direction::Ltr,
                "{ltr}"
            );
        }
    }

    #[test]
    fn finds_the_tag_in_a_variant_file_name() {
        let tag = |n| variant_tag("weremember.mjml", n).map(|t| t.to_string());
        assert_eq!(tag("weremember.he.mjml").as_deref(), Some("he"));
        assert_eq!(tag("weremember.pt-BR.mjml").as_deref(), Some("pt-BR"));
        assert_eq!(tag("weremember.mjml"), None);
        assert_eq!(tag("weremember.he.txt"), None);
        assert_eq!(tag("weremember.old_draft.mjml"), None);
        assert_eq!(tag("other.he.mjml"), None);
        assert_eq!(tag("weremember.he.fr.mjml"), None);
    }
}
