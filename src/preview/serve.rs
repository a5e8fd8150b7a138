//! `letterpress serve`: the preview gallery over HTTP on 127.0.0.1, rendered
//! in memory and rendered again whenever the template, its `.txt` sibling or
//! the contacts change on disk. The open page long-polls and reloads. A
//! template error does not stop the server: the page shows it until the
//! file is fixed. Binds to 127.0.0.1 only; never to another address. The
//! language variants beside the template (`NAME.he.mjml`, their `.txt`)
//! are watched like the template.
//!
//! Files are watched by polling their modification time and size (no
//! platform notification crate: a few files, four checks a second). The
//! included files are found again on every check, so an include added to
//! the template is watched from then on.
//! HTTP is served here, not by a crate: `tiny_http` buffers a request head
//! of any size and starts a thread per connection. A fixed pool of
//! `WORKERS` threads each accepts and answers one connection at a time
//! (more wait in the kernel's queue), and a request head is read into at
//! most `MAX_HEAD` bytes. Only a few GETs are answered, each on a
//! connection of its own.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime};

use crate::compose::build::Built;
use crate::compose::campaign::Source;
use crate::compose::template::{included_files, variant_files};
use crate::deliver::run::{self, Clock, Summary};
use crate::deliver::sink::{
    copy_path, file_stem, preview_html, Delivered, Envelope, Failure, Receipt, Sink,
};
use crate::error::{Error, Result};
use crate::preview::gallery::{self, GalleryData};

/// How often the watched files are looked at.
const POLL: Duration = Duration::from_millis(250);
/// How long a page's wait for the next render is held before it asks again.
const WAIT: Duration = Duration::from_secs(25);
/// The path the page long-polls (`?v=VERSION`).
const WAIT_PATH: &str = "/__letterpress/wait";
/// Connections served at once. A page holds one in its long poll; the rest
/// are quick. A ninth waits in the kernel's accept queue.
const WORKERS: usize = 8;
/// The most bytes of a request line and headers; more is answered with 431
/// without being held.
const MAX_HEAD: usize = 16 * 1024;
/// How long a client may take to send its request head (or read the
/// answer) before its worker is free again.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Keeps each letter's `.html` and `.txt` in memory, under the names a
/// file render would give them.
#[derive(Default)]
struct MemorySink {
    files: Mutex<HashMap<String, Vec<u8>>>,
}

impl Sink for MemorySink {
    fn deliver(&self, _: &Envelope<'_>, out: &Built) -> std::result::Result<Receipt, Failure> {
        let stem = file_stem(out.letter.row, &out.letter.parts.to.address);
        let mut d = Delivered::default();
        let mut files = self.files.lock().expect("no panics while held");
        for (ext, body) in [
            ("html", preview_html(out)),
            ("txt", out.letter.parts.text.as_bytes().into()),
        ] {
            let name = format!("{stem}.{ext}");
            files.insert(name.clone(), body.to_vec());
            d.files.insert(ext.into(), name);
            d.sizes.insert(ext.into(), body.len() as u64);
        }
        d.sizes.insert("eml".into(), out.eml.len() as u64);
        // The attachments and images, where the gallery and the preview
        // look for them: one copy each.
        for f in &out.letter.files {
            files
                .entry(copy_path(&f.payload))
                .or_insert_with(|| f.payload.bytes.clone());
        }
        Ok(Receipt {
            reply: "kept in memory".into(),
            delivered: d,
        })
    }
}

/// One complete render.
#[derive(Default)]
struct Rendered {
    /// `manifest.js`.
    data: Vec<u8>,
    files: HashMap<String, Vec<u8>>,
}

struct State {
    /// Goes up by one on every render, good or bad: the page reloads when
    /// it changes.
    version: u64,
    /// Why the last render failed; the page shows it over the last good one.
    error: Option<String>,
    last_good: Arc<Rendered>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

/// Renders every letter into memory.
fn render(source: &Source, clock: Clock) -> Result<(Rendered, Summary)> {
    let (campaign, recipients) = source.open()?;
    let head = serde_json::json!({
        "letterpress": env!("CARGO_PKG_VERSION"),
        "template": source.template.display().to_string(),
        "recipients": recipients.name(),
        "deterministic": matches!(clock, Clock::Fixed(_)),
    });
    let sink = MemorySink::default();
    let mut data = GalleryData::start(Vec::new(), gallery::DATA.into(), &head)?;
    let summary = run::run(
        &campaign,
        recipients,
        &sink,
        clock,
        |o| data.add(o),
        |_, _| {},
    )?;
    let data = data.finish(&summary)?;
    let files = sink.files.into_inner().expect("no panics while held");
    Ok((Rendered { data, files }, summary))
}

/// The files a render reads: the template, its `.txt` sibling, the
/// contacts, then the files the template includes, attaches and shows;
/// then each language variant (`NAME.he.mjml`), its `.txt` and the files
/// it includes, attaches and shows. The variants are looked for on every
/// check, so a new one (or one removed) changes the list and is rendered.
fn watched(source: &Source) -> Vec<PathBuf> {
    let mut files = vec![
        source.template.clone(),
        source.template.with_extension("txt"),
        PathBuf::from(&source.recipients),
    ];
    files.extend(included_files(&source.template));
    files.extend(crate::compose::attach::watched(&source.template));
    // An unreadable folder fails the render itself, which says so.
    for (_, variant) in variant_files(&source.template).unwrap_or_default() {
        files.push(variant.with_extension("txt"));
        files.extend(included_files(&variant));
        files.extend(crate::compose::attach::watched(&variant));
        files.push(variant);
    }
    files
}

/// What the watched files look like now: each with its modification time
/// and size, or nothing when it is absent (the `.txt` sibling may come and
/// go).
fn fingerprint(paths: &[PathBuf]) -> Vec<(PathBuf, Option<(SystemTime, u64)>)> {
    paths
        .iter()
        .map(|p| {
            let seen = std::fs::metadata(p)
                .ok()
                .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
            (p.clone(), seen)
        })
        .collect()
}

fn rerender(shared: &Shared, source: &Source, clock: Clock) {
    let result = render(source, clock);
    let mut st = shared.state.lock().expect("no panics while held");
    st.version += 1;
    match result {
        Ok((r, summary)) => {
            eprintln!(
                "rendered {} letters ({} rows rejected, {} warnings)",
                summary.rendered, summary.rejected, summary.warnings
            );
            st.error = None;
            st.last_good = Arc::new(r);
        }
        Err(e) => {
            eprintln!("letterpress: error: {e}\n  (shown on the page; save a fixed file to go on)");
            st.error = Some(e.to_string());
        }
    }
    shared.changed.notify_all();
}

/// `letterpress serve`. Runs until the process is stopped.
pub fn serve(source: &Source, port: u16, clock: Clock) -> Result<u8> {
    let addr = format!("127.0.0.1:{port}");
    let listener = TcpListener::bind(&addr).map_err(|source| Error::Listen {
        addr: addr.clone(),
        source: Box::new(source),
    })?;
    let bound = listener.local_addr().map_or(addr, |a| a.to_string());
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            version: 0,
            error: None,
            last_good: Arc::default(),
        }),
        changed: Condvar::new(),
    });
    let source = source.clone();
    let files = watched(&source);
    let mut seen = fingerprint(&files);
    rerender(&shared, &source, clock);
    println!(
        "serving the gallery of {} at http://{bound}/ (on 127.0.0.1 only: no other machine can \
         connect); watching {}, {}, {} and the files it includes, and its language \
         variants; Ctrl-C stops",
        source.template.display(),
        files[0].display(),
        files[1].display(),
        files[2].display(),
    );

    let watch_shared = Arc::clone(&shared);
    std::thread::spawn(move || loop {
        std::thread::sleep(POLL);
        let now = fingerprint(&watched(&source));
        if now != seen {
            // Let an editor finish writing, then take what is there.
            std::thread::sleep(POLL / 2);
            seen = fingerprint(&watched(&source));
            rerender(&watch_shared, &source, clock);
        }
    });

    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let listener = listener.try_clone().map_err(|source| Error::Listen {
                addr: bound.clone(),
                source: Box::new(source),
            })?;
            let shared = Arc::clone(&shared);
            Ok(std::thread::spawn(move || loop {
                // A failed accept (a connection reset while queued, too
                // many open files) is that connection's problem only.
                if let Ok((stream, _)) = listener.accept() {
                    connection(stream, &shared);
                }
            }))
        })
        .collect::<Result<_>>()?;
    for worker in workers {
        let _ = worker.join();
    }
    Ok(crate::exit::OK)
}

/// Whether the request names this machine in its `Host` header. A web page
/// elsewhere could otherwise point a name of its own at 127.0.0.1 (DNS
/// rebinding) and read the letters, addresses and all, through the browser.
fn local_host(host: Option<&str>) -> bool {
    let Some(host) = host else {
        return false;
    };
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    matches!(name, "127.0.0.1" | "localhost")
}

/// A request's head: what is needed to answer it.
#[derive(Debug, PartialEq)]
struct Head {
    target: String,
    host: Option<String>,
}

/// Reads a request head of at most `limit` bytes: `Ok(None)` when the
/// client went away first, `Err(status)` for a head too large (431) or
/// not HTTP (400).
fn read_head(stream: &mut impl Read, limit: usize) -> std::io::Result<Option<Result<Head, u16>>> {
    let mut buf = vec![0; limit];
    let mut len = 0;
    let end = loop {
        if let Some(i) = buf[..len].windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if len == limit {
            return Ok(Some(Err(431)));
        }
        match stream.read(&mut buf[len..])? {
            0 => return Ok(None),
            n => len += n,
        }
    };
    let Ok(head) = std::str::from_utf8(&buf[..end]) else {
        return Ok(Some(Err(400)));
    };
    let mut lines = head.split("\r\n");
    let mut request = lines.next().unwrap_or("").split(' ');
    let (Some(_method), Some(target), Some(version)) =
        (request.next(), request.next(), request.next())
    else {
        return Ok(Some(Err(400)));
    };
    if !version.starts_with("HTTP/1.") {
        return Ok(Some(Err(400)));
    }
    let host = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("host"))
        .map(|(_, value)| value.trim().to_string());
    Ok(Some(Ok(Head {
        target: target.to_string(),
        host,
    })))
}

/// Serves one connection: one request, one answer, then closed.
fn connection(mut stream: TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let (status, kind, body) = match read_head(&mut stream, MAX_HEAD) {
        Ok(Some(Ok(head))) => respond(&head, shared),
        Ok(Some(Err(431))) => (
            431,
            "text/plain; charset=utf-8",
            format!("the request's headers are over {} KB", MAX_HEAD / 1024).into_bytes(),
        ),
        Ok(Some(Err(status))) => (
            status,
            "text/plain; charset=utf-8",
            b"not an HTTP request".to_vec(),
        ),
        // Gone, or too slow: nobody to answer.
        Ok(None) | Err(_) => return,
    };
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        431 => "Request Header Fields Too Large",
        _ => "",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    // The page may be gone (reloaded, closed): nothing to do about it.
    if stream.write_all(head.as_bytes()).is_err() || stream.write_all(&body).is_err() {
        return;
    }
    // Closing with unread bytes (the rest of a refused head) would reset
    // the connection and could lose the answer: take a little of them
    // first, briefly.
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let _ = std::io::copy(
        &mut (&mut stream).take(MAX_HEAD as u64 * 4),
        &mut std::io::sink(),
    );
}

/// The answer to a request: status, content type and body.
fn respond(request: &Head, shared: &Shared) -> (u16, &'static str, Vec<u8>) {
    let url = request.target.as_str();
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let reply = |body: Vec<u8>, status: u16, kind: &'static str| (status, kind, body);
    match path {
        _ if !local_host(request.host.as_deref()) => reply(
            b"this server answers only requests addressed to 127.0.0.1 or localhost".to_vec(),
            403,
            "text/plain; charset=utf-8",
        ),
        "/" | "/index.html" => reply(
            gallery::page().into_bytes(),
            200,
            "text/html; charset=utf-8",
        ),
        "/manifest.js" => {
            let st = shared.state.lock().expect("no panics while held");
            let live = serde_json::json!({"version": st.version, "error": st.error});
            let mut body = format!("window.LETTERPRESS_LIVE = {live};\n").into_bytes();
            if !st.last_good.data.is_empty() {
                body.extend_from_slice(&st.last_good.data);
            }
            reply(body, 200, "text/javascript; charset=utf-8")
        }
        WAIT_PATH => {
            let since: Option<u64> = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("v="))
                .and_then(|v| v.parse().ok());
            let st = shared.state.lock().expect("no panics while held");
            let (st, _) = shared
                .changed
                .wait_timeout_while(st, WAIT, |s| Some(s.version) == since)
                .expect("no panics while held");
            let body = serde_json::json!({"version": st.version}).to_string();
            reply(body.into_bytes(), 200, "application/json")
        }
        _ => {
            let name = path.trim_start_matches('/');
            let last_good =
                Arc::clone(&shared.state.lock().expect("no panics while held").last_good);
            match last_good.files.get(name) {
                Some(body) if name.ends_with(".html") => {
                    reply(body.clone(), 200, "text/html; charset=utf-8")
                }
                Some(body) if name.starts_with("files/") => {
                    let kind = mime_guess::from_path(name)
                        .first_raw()
                        .unwrap_or("application/octet-stream");
                    reply(body.clone(), 200, kind)
                }
                Some(body) => reply(body.clone(), 200, "text/plain; charset=utf-8"),
                None => reply(b"not found".to_vec(), 404, "text/plain; charset=utf-8"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_head_is_read_within_its_limit() {
        let ok = b"GET /a?v=1 HTTP/1.1\r\nhost: localhost:8025\r\n\r\n";
        let head = read_head(&mut &ok[..], 64).unwrap().unwrap().unwrap();
        assert_eq!(head.target, "/a?v=1");
        assert_eq!(head.host.as_deref(), Some("localhost:8025"));
        assert!(local_host(head.host.as_deref()));
        // One byte over the limit is refused without reading on.
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(100));
        assert_eq!(
            read_head(&mut big.as_bytes(), 64).unwrap().unwrap(),
            Err(431)
        );
        assert_eq!(
            read_head(&mut &b"hello\r\n\r\n"[..], 64).unwrap().unwrap(),
            Err(400)
        );
        assert_eq!(read_head(&mut &b"GET / HT"[..], 64).unwrap(), None);
    }
}
