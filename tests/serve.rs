//! `letterpress serve`: the gallery over HTTP on 127.0.0.1 only, rendered
//! again when the files change, with a template error shown on the page and
//! the preview back once the file is fixed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::browser::Browser;
use crate::common::*;

/// A running `letterpress serve`, stopped when dropped.
struct Server {
    child: Child,
    port: u16,
    banner: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(template: &Path, csv: &Path) -> Server {
    let mut child = letterpress()
        .args(["serve", "--port", "0"])
        .arg(template)
        .arg(csv)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut banner = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut banner)
        .unwrap();
    let port = banner
        .split("http://127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no address in {banner:?}"));
    Server {
        child,
        port,
        banner,
    }
}

/// GET `path` from 127.0.0.1:`port`: (status, body).
fn get(port: u16, path: &str) -> (u16, String) {
    get_as(port, path, &format!("127.0.0.1:{port}"))
}

/// GET `path` from 127.0.0.1:`port` with this `Host` header.
fn get_as(port: u16, path: &str, host: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

/// Waits until GET `path` has a body satisfying `ok`.
fn wait_for_body(port: u16, path: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = get(port, path);
        if ok(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn campaign(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let t = write(dir, "t.mjml", SMALL_TEMPLATE);
    let csv = write(
        dir,
        "r.csv",
        "email,name\nann@example.org,Ann\nbob@example.org,Bob\n",
    );
    (t, csv)
}

#[test]
fn serve_follows_edits_and_shows_a_template_error_until_it_is_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let (t, csv) = campaign(dir.path());
    let server = serve(&t, &csv);
    let port = server.port;

    let (status, page) = get(port, "/");
    assert_eq!(status, 200);
    assert!(page.contains("<script src=\"manifest.js\"></script>"));
    let data = wait_for_body(port, "/manifest.js", "the first render", |b| {
        b.contains("Hello Ann")
    });
    assert!(data.contains("\"error\":null"), "{data}");
    let (_, letter) = get(port, "/0001-ann_example.org.html");
    assert!(letter.contains("Dear <bdi>Ann</bdi>,"), "{letter}");
    assert_eq!(get(port, "/../../etc/passwd").0, 404);

    // An edit to the template: the served letters follow.
    write(
        dir.path(),
        "t.mjml",
        SMALL_TEMPLATE.replace("Dear", "Dearest"),
    );
    wait_for_body(port, "/0001-ann_example.org.html", "the edit", |b| {
        b.contains("Dearest <bdi>Ann</bdi>,")
    });
    // An edit to the contacts, too.
    write(dir.path(), "r.csv", "email,name\nann@example.org,Annabel\n");
    wait_for_body(port, "/manifest.js", "the new contact", |b| {
        b.contains("Hello Annabel")
    });

    // A broken template: the error, with its line, instead of a dead server.
    write(
        dir.path(),
        "t.mjml",
        SMALL_TEMPLATE.replace("Dear {{name}},", "Dear {{name},"),
    );
    let data = wait_for_body(port, "/manifest.js", "the error", |b| {
        !b.contains("\"error\":null")
    });
    let line = SMALL_TEMPLATE
        .lines()
        .position(|l| l.contains("Dear"))
        .unwrap()
        + 1;
    assert!(data.contains(&format!("t.mjml:{line}:")), "{data}");
    assert_eq!(get(port, "/").0, 200);

    // Fixed: the preview is back.
    write(
        dir.path(),
        "t.mjml",
        SMALL_TEMPLATE.replace("Dear", "Dear dear"),
    );
    wait_for_body(port, "/0001-ann_example.org.html", "the fix", |b| {
        b.contains("Dear dear <bdi>Annabel</bdi>,")
    });
    assert!(get(port, "/manifest.js").1.contains("\"error\":null"));
}

#[test]
fn serve_follows_edits_to_an_included_file() {
    let dir = tempfile::tempdir().unwrap();
    let (_, csv) = campaign(dir.path());
    let footer = |word: &str| {
        format!("<mj-section><mj-column><mj-text>{word} {{{{name}}}}</mj-text></mj-column></mj-section>\n")
    };
    write(dir.path(), "footer.mjml", footer("Bye"));
    let t = write(
        dir.path(),
        "t.mjml",
        SMALL_TEMPLATE.replace(
            "  </mj-body>",
            "    <mj-include path=\"./footer.mjml\" />\n  </mj-body>",
        ),
    );
    let server = serve(&t, &csv);
    let port = server.port;
    assert!(
        server.banner.contains("and the files it includes"),
        "{}",
        server.banner
    );
    wait_for_body(
        port,
        "/0001-ann_example.org.html",
        "the first render",
        |b| b.contains("Bye <bdi>Ann</bdi>"),
    );
    // Only the included file changes: the letters follow.
    write(dir.path(), "footer.mjml", footer("Farewell"));
    wait_for_body(port, "/0001-ann_example.org.html", "the edit", |b| {
        b.contains("Farewell <bdi>Ann</bdi>")
    });
}

/// The status code of a raw HTTP answer.
fn status_of(stream: &mut TcpStream) -> Option<u16> {
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    text.strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
}

#[test]
fn serve_refuses_a_huge_request_head_and_caps_its_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (t, csv) = campaign(dir.path());
    let server = serve(&t, &csv);
    let port = server.port;

    // A 20 KB header: refused with 431, not buffered.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let big = "a".repeat(20 * 1024);
    let _ = write!(
        s,
        "GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Big: {big}\r\n\r\n"
    );
    assert_eq!(status_of(&mut s), Some(431));
    assert_eq!(get(port, "/").0, 200);

    // Eight idle connections hold every worker: a ninth request waits…
    let idle: Vec<TcpStream> = (0..8)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut ninth = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        ninth,
        "GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    ninth
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let mut first = [0u8; 1];
    let early = ninth.read(&mut first);
    assert!(
        early.is_err(),
        "a ninth connection was answered while eight were open: {early:?}"
    );
    // … until one of them goes away.
    drop(idle);
    ninth
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    assert_eq!(ninth.read(&mut first).unwrap(), 1);
    assert_eq!(first[0], b'H');
}

#[test]
fn serve_listens_on_127_0_0_1_only_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (t, csv) = campaign(dir.path());
    let server = serve(&t, &csv);
    assert!(
        server.banner.contains("127.0.0.1 only"),
        "{}",
        server.banner
    );
    assert!(TcpStream::connect(("127.0.0.1", server.port)).is_ok());
    // Another loopback address of this machine: nothing listens there.
    let other = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 2], server.port)),
        Duration::from_secs(2),
    );
    assert!(other.is_err(), "serve must not listen beyond 127.0.0.1");
    // A request for another host name (a DNS-rebinding page) is refused.
    assert_eq!(
        get_as(server.port, "/manifest.js", "evil.example:8025").0,
        403
    );
    assert_eq!(
        get_as(server.port, "/", &format!("localhost:{}", server.port)).0,
        200
    );

    // A port in use is a clear error, not a panic.
    let out = run(
        &[
            "serve",
            "--port",
            &server.port.to_string(),
            t.to_str().unwrap(),
            csv.to_str().unwrap(),
        ],
        None,
    );
    out.expect_code(1);
    assert!(
        out.stderr.contains("cannot listen on 127.0.0.1:"),
        "{}",
        out.stderr
    );
}

#[test]
fn the_open_page_reloads_on_an_edit_and_shows_the_error_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let (t, csv) = campaign(dir.path());
    let server = serve(&t, &csv);
    wait_for_body(server.port, "/manifest.js", "the first render", |b| {
        b.contains("Hello Ann")
    });
    let mut b = Browser::start(1200, 900);
    b.open(&format!("http://127.0.0.1:{}/#row=2", server.port));
    b.wait_for(
        "document.getElementById('headers').innerText.includes('Hello Bob')",
        "Bob's letter",
    );

    write(
        dir.path(),
        "t.mjml",
        SMALL_TEMPLATE.replace("Subject: Hello", "Subject: Shalom"),
    );
    b.wait_for(
        "document.getElementById('headers').innerText.includes('Shalom Bob')",
        "the page to reload with the edit, on the same letter",
    );

    write(
        dir.path(),
        "t.mjml",
        SMALL_TEMPLATE.replace("{{name}},", "{{name},"),
    );
    let line = SMALL_TEMPLATE
        .lines()
        .position(|l| l.contains("Dear"))
        .unwrap()
        + 1;
    b.wait_for(
        &format!(
            "!document.getElementById('error').hidden && \
             document.getElementById('error').textContent.includes('t.mjml:{line}:')"
        ),
        "the template error on the page",
    );

    write(dir.path(), "t.mjml", SMALL_TEMPLATE);
    b.wait_for(
        "document.getElementById('error').hidden && \
         document.getElementById('headers').innerText.includes('Hello Bob')",
        "the preview to come back",
    );
}

#[test]
fn serve_shows_inline_images_and_links_attachments() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("img")).unwrap();
    write(dir.path(), "img/logo.png", "not really a PNG");
    write(dir.path(), "flyer.txt", "the flyer");
    let t = write(
        dir.path(),
        "t.mjml",
        "From: S <s@example.org>\nSubject: Hi\nAttachment: flyer.txt\n\n<mjml><mj-body>\
         <mj-section><mj-column><mj-image src=\"img/logo.png\" /><mj-text>Hi {{name}}\
         </mj-text></mj-column></mj-section></mj-body></mjml>\n",
    );
    let csv = write(dir.path(), "r.csv", "email,name\nann@example.org,Ann\n");
    let s = serve(&t, &csv);
    let data = wait_for_body(s.port, "/manifest.js", "the letter's files", |b| {
        b.contains("\"attachments\"")
    });
    let href = |name: &str| {
        let at = data.find(&format!("\"name\":\"{name}\"")).unwrap();
        let rest = &data[at..];
        let h = rest.split("\"href\":\"").nth(1).unwrap();
        h[..h.find('"').unwrap()].to_string()
    };
    let (logo, flyer) = (href("logo.png"), href("flyer.txt"));
    assert_eq!(
        get(s.port, &format!("/{logo}")),
        (200, "not really a PNG".into())
    );
    assert_eq!(get(s.port, &format!("/{flyer}")), (200, "the flyer".into()));
    let (code, html) = get(s.port, "/0001-ann_example.org.html");
    assert_eq!(code, 200);
    assert!(html.contains(&format!("src=\"{logo}\"")), "{html}");
    assert!(!html.contains("cid:"), "{html}");

    // An edited attachment is picked up like an edited template.
    write(dir.path(), "flyer.txt", "the new flyer");
    let data = wait_for_body(s.port, "/manifest.js", "the new flyer", |b| {
        !b.contains(&flyer)
    });
    let at = data.find("\"name\":\"flyer.txt\"").unwrap();
    let h = data[at..].split("\"href\":\"").nth(1).unwrap();
    let new = &h[..h.find('"').unwrap()];
    assert_eq!(
        get(s.port, &format!("/{new}")),
        (200, "the new flyer".into())
    );
}

/// The example campaign, its language variants included, copied into `dir`
/// so a test can edit it.
fn example_campaign(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    for e in std::fs::read_dir(root().join("templates")).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
        }
    }
    std::fs::create_dir_all(dir.join("events")).unwrap();
    for e in std::fs::read_dir(root().join("templates/events")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dir.join("events").join(p.file_name().unwrap())).unwrap();
    }
    let csv = write(dir, "r.csv", std::fs::read(example_csv()).unwrap());
    (dir.join("weremember.mjml"), csv)
}

#[test]
fn serve_follows_edits_to_a_language_variant_and_picks_up_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let (t, csv) = example_campaign(dir.path());
    let he = dir.path().join("weremember.he.mjml");
    let hebrew = std::fs::read_to_string(&he).unwrap();
    let salutation = "{{#if salutation}}שלום {{salutation}}";
    assert!(hebrew.contains(salutation), "the Hebrew salutation");
    let server = serve(&t, &csv);
    let port = server.port;
    assert!(
        server.banner.contains("its language variants"),
        "{}",
        server.banner
    );
    let yaakov = "/0004-yaakov.cohen_example.org.html";
    wait_for_body(port, yaakov, "the first render", |b| b.contains("<p>שלום "));

    // Only the Hebrew variant changes: its letters follow.
    let edited = hebrew.replace(salutation, "{{#if salutation}}שלום וברכה {{salutation}}");
    std::fs::write(&he, edited).unwrap();
    wait_for_body(port, yaakov, "the edit of the variant", |b| {
        b.contains("<p>שלום וברכה ")
    });
    // Its own text part, added beside it, is picked up too.
    write(dir.path(), "weremember.he.txt", "שלום {{first_name}}\n");
    wait_for_body(
        port,
        "/0004-yaakov.cohen_example.org.txt",
        "the variant's .txt",
        |b| b == "שלום יעקב\n",
    );

    // A variant that did not exist: the German contacts (rows 6 and 7)
    // get it from the next render on.
    let data = get(port, "/manifest.js").1;
    assert!(!data.contains("\"lang\":\"de\""), "{data}");
    let french = std::fs::read_to_string(dir.path().join("weremember.fr.mjml")).unwrap();
    write(dir.path(), "weremember.de.mjml", french);
    let data = wait_for_body(port, "/manifest.js", "the new variant", |b| {
        b.contains("\"lang\":\"de\"")
    });
    assert_eq!(data.matches("\"lang\":\"de\"").count(), 2, "{data}");
}

#[test]
fn served_gallery_shows_a_hebrew_text_part_right_to_left() {
    let server = serve(&example_template(), &example_csv());
    wait_for_body(server.port, "/manifest.js", "the first render", |b| {
        b.contains("\"lang\":\"he\"")
    });
    let mut b = Browser::start(1400, 1000);
    for (row, stem, dir) in [
        (4, "0004-yaakov.cohen_example.org", "rtl"),
        (1, "0001-david.breuer_example.org", "ltr"),
    ] {
        b.open(&format!(
            "http://127.0.0.1:{}/?{row}#row={row}",
            server.port
        ));
        b.wait_for(
            &format!("document.getElementById('text').dataset.loaded === '{stem}.txt'"),
            "the text part",
        );
        assert_eq!(b.eval("document.getElementById('text').dataset.dir"), dir);
        let seen = b.frame_eval(
            &format!("{stem}.txt"),
            "[getComputedStyle(document.querySelector('pre')).direction, \
              document.documentElement.lang]",
        );
        let lang = if dir == "rtl" { "he" } else { "en" };
        assert_eq!(seen, serde_json::json!([dir, lang]), "row {row}");
        // No note: the page could set the direction.
        assert_eq!(
            b.eval("document.getElementById('text-dir').hidden"),
            serde_json::json!(true)
        );
    }
}
