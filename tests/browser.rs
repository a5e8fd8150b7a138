//! A small client for Chromium's DevTools protocol over
//! `--remote-debugging-pipe` (file descriptors 3 and 4, messages ended by a
//! NUL byte): no WebDriver, no websocket, no async runtime. Starts headless
//! Chromium with a fresh profile and the flags that keep it off the network.
//! Without Chromium, [`Browser::start`] fails and says to run `.ci/setup`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const TIMEOUT: Duration = Duration::from_secs(30);

/// The Chromium binary on PATH.
pub fn chromium() -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "Chromium is not installed, and the gallery tests need a real browser: \
         run `.ci/setup` (as root; it installs Debian's `chromium`) and test again"
    );
}

pub struct Browser {
    child: Child,
    input: ChildStdin,
    output: Receiver<Value>,
    next_id: u64,
    /// The page's session (flattened protocol).
    session: String,
    /// Events received while waiting for replies, oldest first.
    events: Vec<Value>,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    /// Headless Chromium with a page of `width` x `height` CSS pixels.
    pub fn start(width: u32, height: u32) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        // The shell hands our stdin and stdout pipes to Chromium as fds 3
        // and 4, which is where --remote-debugging-pipe talks.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#"exec 3<&0 4>&1 1>&2 0</dev/null; exec "$0" "$@""#)
            .arg(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("--window-size={width},{height}"))
            .arg("about:blank")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("Chromium starts");
        let input = child.stdin.take().unwrap();
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || loop {
            let mut buf = Vec::new();
            match reader.read_until(0, &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    buf.pop();
                    let Ok(v) = serde_json::from_slice::<Value>(&buf) else {
                        continue;
                    };
                    if tx.send(v).is_err() {
                        return;
                    }
                }
            }
        });
        let mut b = Browser {
            child,
            input,
            output: rx,
            next_id: 0,
            session: String::new(),
            events: Vec::new(),
            _profile: profile,
        };
        let target = b.send(None, "Target.createTarget", json!({"url": "about:blank"}));
        let target_id = target["targetId"].as_str().unwrap().to_string();
        let attached = b.send(
            None,
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        );
        b.session = attached["sessionId"].as_str().unwrap().to_string();
        b.call("Page.enable", json!({}));
        b.call("Runtime.enable", json!({}));
        b.set_size(width, height);
        b
    }

    fn send(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.input.write_all(&bytes).unwrap();
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(v) if v["id"] == json!(id) => {
                    if let Some(e) = v.get("error") {
                        panic!("{method} failed: {e}");
                    }
                    return v["result"].clone();
                }
                Ok(v) => self.events.push(v),
                Err(RecvTimeoutError::Timeout) => panic!("Chromium did not answer {method}"),
                Err(RecvTimeoutError::Disconnected) => panic!("Chromium exited during {method}"),
            }
        }
    }

    /// A command in the page's session.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let s = self.session.clone();
        self.send(Some(&s), method, params)
    }

    /// The page's layout size in CSS pixels (as a phone or desktop window).
    pub fn set_size(&mut self, width: u32, height: u32) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        );
    }

    /// Opens `url` and waits for its load event.
    pub fn open(&mut self, url: &str) {
        self.events.clear();
        self.call("Page.navigate", json!({"url": url}));
        self.wait_event("Page.loadEventFired");
    }

    pub fn wait_event(&mut self, method: &str) -> Value {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(i) = self.events.iter().position(|e| e["method"] == method) {
                return self.events.remove(i);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(v) => self.events.push(v),
                Err(_) => panic!("no {method} from Chromium"),
            }
        }
    }

    /// Evaluates a JavaScript expression in the page (promises awaited) and
    /// returns its value as JSON.
    pub fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("`{expression}` threw: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Waits until `expression` is truthy; panics with `what` after the
    /// timeout.
    pub fn wait_for(&mut self, expression: &str, what: &str) {
        let deadline = Instant::now() + TIMEOUT;
        while Instant::now() < deadline {
            // A page that is reloading has no elements yet: not an error.
            let v = self.eval(&format!(
                "(() => {{ try {{ return !!({expression}); }} catch (e) {{ return false; }} }})()"
            ));
            if v == json!(true) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("timed out waiting for {what} (`{expression}`)");
    }

    /// A PNG of the page, or of the rectangle (x, y, width, height) in CSS
    /// pixels.
    pub fn screenshot(&mut self, clip: Option<(f64, f64, f64, f64)>) -> Vec<u8> {
        let mut params = json!({"format": "png"});
        if let Some((x, y, width, height)) = clip {
            params["clip"] = json!({"x": x, "y": y, "width": width, "height": height, "scale": 1});
        }
        let r = self.call("Page.captureScreenshot", params);
        base64_decode(r["data"].as_str().unwrap())
    }

    /// The bounding box of the first element matching `selector`.
    pub fn rect(&mut self, selector: &str) -> (f64, f64, f64, f64) {
        let r = self.eval(&format!(
            "(() => {{ const r = document.querySelector({}).getBoundingClientRect(); \
             return [r.x, r.y, r.width, r.height]; }})()",
            json!(selector)
        ));
        let n = |i: usize| r[i].as_f64().unwrap();
        (n(0), n(1), n(2), n(3))
    }

    /// The text of the (possibly out-of-process) frame whose URL ends with
    /// `url_end`, read in that frame's own session.
    pub fn frame_text(&mut self, url_end: &str) -> String {
        self.frame_eval(url_end, "document.body ? document.body.innerText : ''")
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// `expression` evaluated in the frame whose URL ends with `url_end`
    /// (an isolated world of it, or its own session when out of process).
    pub fn frame_eval(&mut self, url_end: &str, expression: &str) -> Value {
        self.call(
            "Target.setAutoAttach",
            json!({"autoAttach": true, "waitForDebuggerOnStart": false, "flatten": true}),
        );
        // In-process frames are in the page's frame tree.
        let tree = self.call("Page.getFrameTree", json!({}));
        let children = tree["frameTree"]["childFrames"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for c in children {
            let url = c["frame"]["url"].as_str().unwrap_or("");
            if url.ends_with(url_end) {
                let world = self.call(
                    "Page.createIsolatedWorld",
                    json!({"frameId": c["frame"]["id"], "worldName": "test"}),
                );
                let r = self.call(
                    "Runtime.evaluate",
                    json!({"expression": expression,
                           "contextId": world["executionContextId"], "returnByValue": true}),
                );
                return r["result"]["value"].clone();
            }
        }
        // Out-of-process frames come as attached targets of their own.
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let found = self.events.iter().find_map(|e| {
                let info = &e["params"]["targetInfo"];
                (e["method"] == "Target.attachedToTarget"
                    && info["url"].as_str().is_some_and(|u| u.ends_with(url_end)))
                .then(|| e["params"]["sessionId"].as_str().unwrap().to_string())
            });
            if let Some(s) = found {
                let r = self.send(
                    Some(&s),
                    "Runtime.evaluate",
                    json!({"expression": expression, "returnByValue": true}),
                );
                return r["result"]["value"].clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(v) => self.events.push(v),
                Err(_) => panic!("no frame with a URL ending in {url_end}"),
            }
        }
    }
}

/// Standard base64 (Chromium's screenshots).
pub fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let bytes: Vec<u8> = s
        .bytes()
        .filter(|&c| c != b'=' && !c.is_ascii_whitespace())
        .collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= (val(c) as u32) << (18 - 6 * i);
        }
        let b = n.to_be_bytes();
        out.extend_from_slice(&b[1..chunk.len()]);
    }
    out
}

/// Width, height and the number of distinct colours of a PNG: a blank page
/// has one or two.
pub fn png_colours(png_bytes: &[u8]) -> (u32, u32, usize) {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let mut colours = std::collections::HashSet::new();
    for px in buf[..info.buffer_size()].chunks(channels) {
        colours.insert(px[..channels.min(3)].to_vec());
    }
    (info.width, info.height, colours.len())
}
