//! Language variants (issue 11): a template per language beside the
//! default, chosen by each contact's `lang`, right to left laid out so.

use std::path::{Path, PathBuf};

use crate::common::*;

/// A default letter, and variants written as `(file name, language word,
/// subject)`.
fn campaign(dir: &Path, variants: &[(&str, &str, &str)], csv: &str) -> (PathBuf, PathBuf) {
    let letter = |greeting: &str, subject: &str| {
        format!(
            "From: Sender <sender@example.org>\nTo: {{{{name}}}} <{{{{email}}}}>\nSubject: {subject}\nList-Unsubscribe: <https://example.org/u?e={{{{email}}}}>\n\n<mjml>\n  <mj-body>\n    <mj-section><mj-column>\n      <mj-text padding=\"0 40px 0 8px\">{greeting} {{{{name}}}}, 2021 <a href=\"https://example.org/?n={{{{name}}}}\">our annual report</a></mj-text>\n    </mj-column></mj-section>\n  </mj-body>\n</mjml>\n"
        )
    };
    let t = write(dir, "letter.mjml", letter("Dear", "Hello"));
    for (file, greeting, subject) in variants {
        write(dir, file, letter(greeting, subject));
    }
    (t, write(dir, "r.csv", csv))
}

fn render(t: &Path, csv: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "render",
        t.to_str().unwrap(),
        csv.to_str().unwrap(),
        "--deterministic",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    run(&args, None)
}

fn parse(eml: &[u8]) -> (String, String, String) {
    let m = mail_parser::MessageParser::default().parse(eml).unwrap();
    (
        m.subject().unwrap().to_string(),
        m.body_text(0).unwrap().replace("\r\n", "\n"),
        m.body_html(0).unwrap().replace("\r\n", "\n"),
    )
}

#[test]
fn each_contact_gets_the_closest_variant_and_the_others_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let (t, csv) = campaign(
        dir.path(),
        &[
            ("letter.pt.mjml", "Prezado", "Olá"),
            ("letter.ar.mjml", "عزيزي", "مرحبا"),
        ],
        "email,name,lang\n\
         a@example.org,Ana,pt-BR\n\
         b@example.org,Bea,de\n\
         c@example.org,Cem,AR\n\
         d@example.org,Dan,\n\
         e@example.org,Eve,pt_PT\n",
    );
    let out = dir.path().join("o");
    let r = render(&t, &csv, &out, &[]);
    r.expect_code(0);
    assert!(
        r.stdout.contains(
            "letters by language: ar 1, pt 1; no variant for de 1, pt_PT 1: those contacts got the default letter"
        ),
        "{}",
        r.stdout
    );
    let eml = |stem: &str| std::fs::read(out.join(format!("{stem}.eml"))).unwrap();
    // Rows are merged grouped by variant (run.rs), and reported in file
    // order.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let rows: Vec<u64> = manifest["letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["row"].as_u64().unwrap())
        .collect();
    assert_eq!(rows, [1, 2, 3, 4, 5]);

    // pt-BR falls back to pt.
    let (subject, text, html) = parse(&eml("0001-a_example.org"));
    assert_eq!(subject, "Olá");
    assert!(text.starts_with("Prezado Ana, 2021"), "{text}");
    assert!(html.contains("<html lang=\"pt\" dir=\"auto\""), "{html}");

    // A language without a variant, no language and a value that is not a
    // tag: the default letter, which has no language of its own.
    for stem in [
        "0002-b_example.org",
        "0004-d_example.org",
        "0005-e_example.org",
    ] {
        let (subject, text, html) = parse(&eml(stem));
        assert_eq!(subject, "Hello", "{stem}");
        assert!(text.starts_with("Dear "), "{stem}: {text}");
        assert!(html.contains("<html lang=\"und\" dir=\"auto\""), "{stem}");
    }

    // Arabic, matched whatever its case, is right to left: the document and
    // the body's wrapper say so, text is right-aligned, the paddings are
    // mirrored; the Latin name is isolated in both parts, not in the link.
    let (subject, text, html) = parse(&eml("0003-c_example.org"));
    assert_eq!(subject, "مرحبا");
    assert!(html.contains("<html lang=\"ar\" dir=\"rtl\""), "{html}");
    assert!(
        html.contains("role=\"article\" lang=\"ar\" dir=\"rtl\""),
        "{html}"
    );
    assert!(html.contains("padding:0px 8px 0px 40px"), "{html}");
    assert!(html.contains("text-align:right"), "{html}");
    assert!(!html.contains("text-align:left;color"), "{html}");
    assert!(html.contains("عزيزي <bdi>Cem</bdi>, 2021"), "{html}");
    assert!(
        html.contains("href=\"https://example.org/?n=Cem\""),
        "{html}"
    );
    assert_eq!(
        text.trim_end(),
        "عزيزي \u{2068}Cem\u{2069}, 2021 our annual report <https://example.org/?n=Cem>"
    );

    // check says the same, with a hint for the value that is not a tag.
    let r = run(&["check", t.to_str().unwrap(), csv.to_str().unwrap()], None);
    r.expect_code(0);
    for line in [
        "r.csv:6: warning: row 5, column `lang`: `pt_PT` is not a language tag; write `pt-PT`. This contact gets the default letter",
        "r.csv:1: note: 1 contact is in language `de`, which has no variant (letter.de.mjml): it gets the default letter",
        "r.csv:1: note: contacts per letter: default: 1, ar: 1, pt: 1, de → default: 1, not a tag → default: 1",
    ] {
        assert!(r.stdout.contains(line), "missing `{line}` in\n{}", r.stdout);
    }
}

#[test]
fn a_variant_has_its_own_text_part_and_lang_column() {
    let dir = tempfile::tempdir().unwrap();
    let (t, csv) = campaign(
        dir.path(),
        &[("letter.fr.mjml", "Bonjour", "Salut")],
        "email,name,langue\na@example.org,Ana,fr-CA\n",
    );
    write(dir.path(), "letter.fr.txt", "Bonjour {{name}}, en texte.\n");
    let out = dir.path().join("o");
    // Without --lang-column there is no `lang` column: the default letter,
    // and check warns that the variants are unused.
    render(&t, &csv, &out, &[]).expect_code(0);
    let (subject, _, _) = parse(&std::fs::read(out.join("0001-a_example.org.eml")).unwrap());
    assert_eq!(subject, "Hello");
    let r = run(&["check", t.to_str().unwrap(), csv.to_str().unwrap()], None);
    assert!(
        r.stdout.contains(
            "r.csv:1: warning: the template has variants in fr, but the list has no `lang` column"
        ),
        "{}",
        r.stdout
    );

    let out = dir.path().join("o2");
    render(&t, &csv, &out, &["--lang-column", "langue"]).expect_code(0);
    let (subject, text, html) = parse(&std::fs::read(out.join("0001-a_example.org.eml")).unwrap());
    assert_eq!(subject, "Salut");
    assert_eq!(text, "Bonjour Ana, en texte.\n");
    assert!(html.contains("<html lang=\"fr\""), "{html}");

    // A column that is not there is a usage error naming the columns.
    let r = render(
        &t,
        &csv,
        &dir.path().join("o3"),
        &["--lang-column", "language"],
    );
    r.expect_code(2);
    assert!(
        r.stderr.contains("--lang-column `language`: ")
            && r.stderr
                .contains("has no such column; its columns are email, name, langue"),
        "{}",
        r.stderr
    );
}

#[test]
fn check_compares_each_variant_with_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let (t, csv) = campaign(
        dir.path(),
        &[],
        "email,name,city,lang\na@example.org,Ana,Lyon,he\n",
    );
    // A variant that uses another column, lacks List-Unsubscribe and says
    // another language than its name.
    write(
        dir.path(),
        "letter.he.mjml",
        "From: Sender <sender@example.org>\nTo: {{name}} <{{email}}>\nSubject: שלום\n\n<mjml lang=\"fr\">\n  <mj-body>\n    <mj-section><mj-column>\n      <mj-text>שלום {{name}} מ{{city}}</mj-text>\n    </mj-column></mj-section>\n  </mj-body>\n</mjml>\n",
    );
    let r = run(&["check", t.to_str().unwrap(), csv.to_str().unwrap()], None);
    let he = dir.path().join("letter.he.mjml").display().to_string();
    for line in [
        format!("{he}:1: warning: the he variant uses {{{{city}}}} that letter.mjml does not"),
        format!(
            "{he}:1: warning: the he variant lacks header `List-Unsubscribe` that letter.mjml has"
        ),
        format!("{he}:5: warning: <mjml lang=\"fr\"> in the he variant: the file name says he"),
    ] {
        assert!(
            r.stdout.contains(&line),
            "missing `{line}` in\n{}",
            r.stdout
        );
    }
}
