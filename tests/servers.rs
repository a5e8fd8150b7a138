//! Mail servers for the send tests, all on 127.0.0.1 with free ports, all
//! stopped when dropped: Postfix's `smtp-sink` (real server, dumps each
//! message to a file), `aiosmtpd` (AUTH, STARTTLS, implicit TLS), a small
//! scripted server that fails on cue, and a private Postfix instance as the
//! local MTA behind `--sendmail`. A missing tool fails the test with a
//! pointer to `.ci/setup`, never a silent pass.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("{what} exited ({status}) before listening: {err}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what} did not listen on 127.0.0.1:{port} within 10 s");
}

fn require(path: &str, what: &str) {
    assert!(
        Path::new(path).exists(),
        "{what} ({path}) is missing: run .ci/setup (it installs Postfix, aiosmtpd, dkimpy)"
    );
}

/// Postfix `smtp-sink`, dumping every message into `dir`.
pub struct SmtpSink {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Child,
}

impl SmtpSink {
    /// Starts `smtp-sink` with `extra` options (fault injection: `-r`, `-f`,
    /// `-q`, `-Q`, `-A` …).
    pub fn start(extra: &[&str]) -> SmtpSink {
        require("/usr/sbin/smtp-sink", "Postfix's smtp-sink");
        let dir = tempfile::tempdir().unwrap();
        // smtp-sink drops to `nobody` when run as root.
        let _ = Command::new("chmod").arg("777").arg(dir.path()).status();
        let port = free_port();
        let mut child = Command::new("/usr/sbin/smtp-sink")
            .args(["-u", "nobody", "-d"])
            .arg(format!("{}/%M.", dir.path().display()))
            .args(extra)
            .arg(format!("127.0.0.1:{port}"))
            .arg("1024")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("smtp-sink starts");
        wait_for_port(port, &mut child, "smtp-sink");
        SmtpSink { port, dir, child }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received, as (sink headers, message), LF line ends.
    pub fn messages(&self) -> Vec<Dumped> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(self.dir.path()).unwrap() {
            let p = e.unwrap().path();
            let text = String::from_utf8(std::fs::read(&p).unwrap()).unwrap();
            out.push(Dumped::parse(&text));
        }
        out
    }

    /// How many messages the sink holds (files, some perhaps still being
    /// written: parse them with [`SmtpSink::messages`] once the sender is
    /// done).
    pub fn count(&self) -> usize {
        std::fs::read_dir(self.dir.path()).unwrap().count()
    }

    /// How many messages each envelope recipient got.
    pub fn deliveries(&self) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for d in self.messages() {
            *m.entry(d.rcpt.clone()).or_insert(0) += 1;
        }
        m
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One message as smtp-sink dumped it.
#[derive(Debug)]
pub struct Dumped {
    /// The envelope recipient (`X-Rcpt-Args`), without the brackets and
    /// without ESMTP parameters (Postfix adds `ORCPT=`).
    pub rcpt: String,
    /// The message as received, LF line ends, without the headers the sink
    /// adds (`X-Client-*`, `X-Helo-Args`, `X-Mail-Args`, `X-Rcpt-Args` and
    /// its own `Received: ... by smtp-sink`). Headers a relay added before
    /// it (Postfix's `Received:`) are kept.
    pub message: String,
    pub rcpt_lines: usize,
    /// The envelope sender (`X-Mail-Args`), without brackets and ESMTP
    /// parameters.
    pub mail_from: String,
}

impl Dumped {
    fn parse(text: &str) -> Dumped {
        let mut lines = text.split_inclusive('\n').peekable();
        let mut rcpt = String::new();
        let mut rcpt_lines = 0;
        let mut mail_from = String::new();
        let mut eaten = 0;
        // The sink's X- headers, one line each.
        while let Some(line) = lines.peek() {
            let sink_header = [
                "X-Client-Addr:",
                "X-Client-Proto:",
                "X-Helo-Args:",
                "X-Mail-Args:",
                "X-Rcpt-Args:",
            ]
            .iter()
            .any(|h| line.starts_with(h));
            if !sink_header {
                break;
            }
            if let Some(r) = line.strip_prefix("X-Mail-Args: ") {
                // `<a@b> SIZE=…`: the address, then ESMTP parameters.
                let first = r.split_whitespace().next().unwrap_or("");
                mail_from = first
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string();
            }
            if let Some(r) = line.strip_prefix("X-Rcpt-Args: ") {
                rcpt_lines += 1;
                let first = r.split_whitespace().next().unwrap_or("");
                rcpt = first
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string();
            }
            eaten += line.len();
            lines.next();
        }
        // Then its own Received: header, with its continuation lines.
        if lines.peek().is_some_and(|l| l.starts_with("Received: ")) {
            let mut header = lines.next().unwrap().to_string();
            while let Some(l) = lines.next_if(|l| l.starts_with([' ', '\t'])) {
                header.push_str(l);
            }
            assert!(
                header.contains("by smtp-sink (smtp-sink)"),
                "not smtp-sink's Received: header: {header}"
            );
            eaten += header.len();
        }
        let rest = &text[eaten..];
        // smtp-sink ends every dump with one newline of its own.
        let message = rest.strip_suffix('\n').unwrap_or(rest);
        Dumped {
            rcpt,
            message: message.to_string(),
            rcpt_lines,
            mail_from,
        }
    }
}

/// A private Postfix instance: the real local MTA behind `letterpress send
/// --sendmail`, relaying every letter to an smtp-sink on 127.0.0.1.
///
/// Private, not the machine's: its own configuration, queue and data
/// directories in a temporary folder, so tests never read or change
/// `/etc/postfix` (which on CI has no `main.cf`: `.ci/setup` installs Postfix
/// with "No configuration"), never meet the system queue or a running system
/// Postfix, and can run in parallel. Postfix supports this directly:
/// `postconf -c DIR`, `postfix -c DIR start|stop`, `postqueue -c DIR`, and
/// `sendmail` and `postdrop` read `MAIL_CONFIG=DIR` (see [`Postfix::env`]).
/// Non-default configuration directories need `alternate_config_directories`
/// in the default `main.cf` only for the set-gid programs run by other users;
/// the tests run as root (as `postfix start` must), so none is needed.
///
/// The configuration (`main.cf` written with `postconf -c DIR -e`):
/// `relayhost = [127.0.0.1]:PORT` and `mydestination =` (nothing is
/// delivered locally: every recipient goes to the sink), no DNS, no TLS,
/// `master_service_disable = inet` (no smtpd on port 25, so instances do not
/// collide; letters come in through `sendmail` -> maildrop -> pickup),
/// daemons not chrooted (the temporary queue has no chroot files), 1 s
/// queue timers so a deferred letter is retried at once, and the log in a
/// file ([`Postfix::log`]). `master.cf` is the installed one.
///
/// Dropping it runs `postfix -c DIR stop` and removes the folder.
pub struct Postfix {
    dir: Option<tempfile::TempDir>,
    config: PathBuf,
    log: PathBuf,
}

impl Postfix {
    pub fn start(relay_port: u16) -> Postfix {
        Postfix::start_with(relay_port, &[])
    }

    /// Starts with extra `main.cf` settings (`name = value`) after the
    /// defaults, which they override.
    pub fn start_with(relay_port: u16, settings: &[&str]) -> Postfix {
        require("/usr/sbin/postfix", "Postfix");
        require("/usr/sbin/sendmail", "Postfix's sendmail");
        require("/etc/postfix/master.cf", "Postfix's master.cf");
        {
            use std::os::unix::fs::MetadataExt as _;
            // /proc/self belongs to the effective user.
            let uid = std::fs::metadata("/proc/self").map_or(u32::MAX, |m| m.uid());
            assert_eq!(
                uid, 0,
                "the --sendmail tests start a private Postfix, which needs root (as .ci/run \
                 has); run the tests as root"
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("letterpress-postfix.")
            .tempdir()
            .unwrap();
        let d = dir.path().to_path_buf();
        // The daemons run as `postfix` and must reach the queue below it.
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        let config = d.join("config");
        let queue = d.join("queue");
        let log = d.join("maillog");
        std::fs::create_dir(&config).unwrap();
        std::fs::create_dir(&queue).unwrap();
        std::fs::copy("/etc/postfix/master.cf", config.join("master.cf")).unwrap();
        std::fs::write(config.join("main.cf"), "").unwrap();
        // From here on, Drop stops whatever got started.
        let postfix = Postfix {
            dir: Some(dir),
            config,
            log,
        };
        let mut main_cf = vec![
            format!("queue_directory = {}", queue.display()),
            format!("data_directory = {}", d.join("data").display()),
            "compatibility_level = 3.6".into(),
            "myhostname = mta.letterpress.test".into(),
            "mydomain = letterpress.test".into(),
            "mydestination =".into(),
            format!("relayhost = [127.0.0.1]:{relay_port}"),
            "inet_interfaces = loopback-only".into(),
            "inet_protocols = ipv4".into(),
            "master_service_disable = inet".into(),
            "smtp_dns_support_level = disabled".into(),
            "smtp_tls_security_level = none".into(),
            "alias_maps =".into(),
            "alias_database =".into(),
            "biff = no".into(),
            format!("maillog_file = {}", postfix.log.display()),
            format!("maillog_file_prefixes = {}", d.display()),
            "queue_run_delay = 1s".into(),
            "minimal_backoff_time = 1s".into(),
            "maximal_backoff_time = 1s".into(),
        ];
        main_cf.extend(settings.iter().map(|s| s.to_string()));
        postfix.postconf(&["-e"], &main_cf);
        postfix.postconf(&["-F"], &["*/*/chroot = n".to_string()]);
        postfix.start_master();
        // `postfix start` returns once the master is up; pickup's door
        // (the FIFO sendmail's postdrop knocks on) is there by then.
        let pickup = queue.join("public/pickup");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !pickup.exists() {
            assert!(
                Instant::now() < deadline,
                "Postfix started but {} did not appear within 10 s\n--- log\n{}",
                pickup.display(),
                postfix.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        postfix
    }

    /// Stops, changes `main.cf` settings and starts again (not `postfix
    /// reload`: a daemon of the old generation may still take one more
    /// letter with the old settings).
    pub fn restart_with(&mut self, settings: &[&str]) {
        let out = self.command("postfix", &["stop"]);
        assert!(
            out.status.success(),
            "postfix stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let settings: Vec<String> = settings.iter().map(|s| s.to_string()).collect();
        self.postconf(&["-e"], &settings);
        self.start_master();
    }

    fn start_master(&self) {
        let out = self.command("postfix", &["start"]);
        assert!(
            out.status.success(),
            "postfix -c {} start failed ({}): {}{}\n--- log\n{}",
            self.config.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }

    /// Runs `/usr/sbin/NAME -c CONFIG ARGS`.
    fn command(&self, name: &str, args: &[&str]) -> std::process::Output {
        Command::new(Path::new("/usr/sbin").join(name))
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {name}: {e}: run .ci/setup"))
    }

    fn postconf(&self, args: &[&str], settings: &[String]) {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(settings.iter().map(String::as_str));
        let out = self.command("postconf", &all);
        assert!(
            out.status.success(),
            "postconf {all:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The program to give `--sendmail=`; it needs [`Postfix::env`].
    pub fn sendmail(&self) -> PathBuf {
        PathBuf::from("/usr/sbin/sendmail")
    }

    /// The environment that points `sendmail` (and the `postdrop` it runs)
    /// at this instance.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![("MAIL_CONFIG".into(), self.config.display().to_string())]
    }

    /// Asks the queue manager to try every queued letter now.
    pub fn flush(&self) {
        let out = self.command("postqueue", &["-f"]);
        assert!(
            out.status.success(),
            "postqueue -f: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// True when nothing is queued, including letters still in the
    /// maildrop that pickup has not taken yet.
    pub fn queue_is_empty(&self) -> bool {
        let out = self.command("postqueue", &["-p"]);
        assert!(
            out.status.success(),
            "postqueue -p: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).contains("Mail queue is empty")
    }

    /// The instance's temporary folder (its config, queue and log are in
    /// it), for files a test's settings name.
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("until dropped").path()
    }

    /// The instance's mail log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        // `postfix stop` returns once the master has exited; it has told its
        // daemons to go, and a straggler may still hold a file for a moment.
        let _ = self.command("postfix", &["stop"]);
        if let Some(dir) = self.dir.take() {
            let path = dir.path().to_path_buf();
            if dir.close().is_err() {
                std::thread::sleep(Duration::from_millis(200));
                let _ = std::fs::remove_dir_all(&path);
            }
        }
    }
}

/// A test CA and a certificate for 127.0.0.1 it signed, made with the
/// openssl command.
pub struct TestCa {
    pub dir: tempfile::TempDir,
}

impl TestCa {
    pub fn new() -> TestCa {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let sh = format!(
            "set -e; cd {d}
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=letterpress-test-ca -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout leaf.key -out leaf.csr -subj /CN=127.0.0.1 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > ext
openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out leaf.pem -days 2 -extfile ext 2>/dev/null",
            d = d.display()
        );
        let ok = Command::new("sh").arg("-c").arg(sh).status();
        assert!(
            ok.is_ok_and(|s| s.success()),
            "openssl could not make a test CA: run .ci/setup (it installs openssl)"
        );
        TestCa { dir }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
}

const AIOSMTPD: &str = r#"
import asyncio, ssl, sys
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

port, mode, cert, key, log = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]

class Handler:
    async def handle_DATA(self, server, session, envelope):
        with open(log, "a") as f:
            for r in envelope.rcpt_tos:
                f.write(r + "\n")
        return "250 OK queued"

def auth(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"mailer" and auth_data.password == b"s3cret pass"
    return AuthResult(success=ok, handled=False)

ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)
# Implicit TLS is TLS from the start, but aiosmtpd only counts STARTTLS.
kw = dict(hostname="127.0.0.1", port=int(port), authenticator=auth, auth_require_tls=(mode == "starttls"))
if mode == "starttls":
    c = Controller(Handler(), tls_context=ctx, require_starttls=True, **kw)
else:
    c = Controller(Handler(), ssl_context=ctx, **kw)
c.start()
print("READY", flush=True)
sys.stdin.read()
c.stop()
"#;

/// `aiosmtpd` with AUTH (user `mailer`, password `s3cret pass`) and either
/// STARTTLS (`starttls`) or implicit TLS (`implicit`), certificate from
/// `ca`.
pub struct AioSmtpd {
    pub port: u16,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl AioSmtpd {
    pub fn start(mode: &str, ca: &TestCa) -> AioSmtpd {
        let ok = Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .stderr(Stdio::null())
            .status();
        assert!(
            ok.is_ok_and(|s| s.success()),
            "python3 with aiosmtpd is missing: run .ci/setup"
        );
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("server.py");
        std::fs::write(&script, AIOSMTPD).unwrap();
        let log = dir.path().join("rcpts.log");
        let port = free_port();
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(port.to_string())
            .arg(mode)
            .arg(ca.dir.path().join("leaf.pem"))
            .arg(ca.dir.path().join("leaf.key"))
            .arg(&log)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "READY", "aiosmtpd did not start");
        wait_for_port(port, &mut child, "aiosmtpd");
        AioSmtpd {
            port,
            child,
            log,
            _dir: dir,
        }
    }

    /// The envelope recipients of every message received.
    pub fn received(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }
}

impl Drop for AioSmtpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where in a conversation a scripted fault strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Greeting,
    Mail,
    Rcpt,
    Data,
    Dot,
}

/// What the scripted server does at that step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Reply(Step, u16),
    /// Say nothing until the client gives up.
    Stall(Step),
    /// Close the connection without a word.
    HangUp(Step),
}

impl Fault {
    fn step(self) -> Step {
        match self {
            Fault::Reply(s, _) | Fault::Stall(s) | Fault::HangUp(s) => s,
        }
    }
}

#[derive(Default)]
struct Script {
    /// Faults for new connections, used up in order.
    greeting: Vec<Fault>,
    /// Faults per recipient, used up one per attempt.
    per_rcpt: HashMap<String, Vec<Fault>>,
    /// Recipients of the messages accepted, in order.
    accepted: Vec<String>,
    /// Every RCPT TO argument seen.
    rcpts: Vec<String>,
    /// Every message body accepted.
    bodies: Vec<String>,
    connections: usize,
    /// Offer PIPELINING (RFC 2920) in the EHLO reply.
    pipelining: bool,
    /// MAIL commands that arrived with the RCPT after them already sent.
    pipelined: usize,
}

/// A scripted SMTP server: answers like a plain server unless a fault for
/// the connection or the recipient says otherwise.
pub struct ScriptedServer {
    pub port: u16,
    script: Arc<Mutex<Script>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl ScriptedServer {
    pub fn start() -> ScriptedServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let script = Arc::new(Mutex::new(Script::default()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (s2, stop2) = (Arc::clone(&script), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let s3 = Arc::clone(&s2);
                        let stop3 = Arc::clone(&stop2);
                        std::thread::spawn(move || {
                            let _ = serve(conn, &s3, &stop3);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        ScriptedServer { port, script, stop }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Offers PIPELINING from now on.
    pub fn offer_pipelining(&self) -> &Self {
        self.script.lock().unwrap().pipelining = true;
        self
    }

    /// How many transactions the client pipelined (MAIL FROM sent together
    /// with what follows it).
    pub fn pipelined(&self) -> usize {
        self.script.lock().unwrap().pipelined
    }

    pub fn on_connect(&self, f: Fault) -> &Self {
        self.script.lock().unwrap().greeting.push(f);
        self
    }

    pub fn on_rcpt(&self, rcpt: &str, faults: &[Fault]) -> &Self {
        self.script
            .lock()
            .unwrap()
            .per_rcpt
            .insert(rcpt.to_string(), faults.to_vec());
        self
    }

    pub fn accepted(&self) -> Vec<String> {
        self.script.lock().unwrap().accepted.clone()
    }

    pub fn rcpts(&self) -> Vec<String> {
        self.script.lock().unwrap().rcpts.clone()
    }

    pub fn bodies(&self) -> Vec<String> {
        self.script.lock().unwrap().bodies.clone()
    }

    pub fn connections(&self) -> usize {
        self.script.lock().unwrap().connections
    }
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn serve(
    conn: TcpStream,
    script: &Mutex<Script>,
    stop: &std::sync::atomic::AtomicBool,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_millis(100)))?;
    let mut w = conn.try_clone()?;
    let mut r = BufReader::new(conn);
    let stall = |stop: &std::sync::atomic::AtomicBool| {
        // Long enough for any client timeout in the tests, short enough to
        // end with the test.
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until && !stop.load(std::sync::atomic::Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let greet_fault = {
        let mut s = script.lock().unwrap();
        s.connections += 1;
        if s.greeting.is_empty() {
            None
        } else {
            Some(s.greeting.remove(0))
        }
    };
    match greet_fault {
        Some(Fault::Stall(_)) => {
            stall(stop);
            return Ok(());
        }
        Some(Fault::HangUp(_)) => return Ok(()),
        Some(Fault::Reply(_, code)) => {
            write!(w, "{code} scripted greeting fault\r\n")?;
            return Ok(());
        }
        None => write!(w, "220 scripted ESMTP\r\n")?,
    }
    let mut fault: Option<Fault> = None;
    let mut rcpt = String::new();
    let read_line = |r: &mut BufReader<TcpStream>, line: &mut String| -> std::io::Result<usize> {
        loop {
            match r.read_line(line) {
                Ok(n) => return Ok(n),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        return Ok(0);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    };
    loop {
        let mut line = String::new();
        if read_line(&mut r, &mut line)? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_ascii_uppercase();
        let step = if cmd.starts_with("MAIL") {
            if r.buffer().starts_with(b"RCPT") {
                script.lock().unwrap().pipelined += 1;
            }
            Some(Step::Mail)
        } else if cmd.starts_with("RCPT") {
            rcpt = line.trim_end()[8..]
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string();
            let mut s = script.lock().unwrap();
            s.rcpts.push(line.trim_end()[8..].trim().to_string());
            fault = s.per_rcpt.get_mut(&rcpt).and_then(|v| {
                if v.is_empty() {
                    None
                } else {
                    Some(v.remove(0))
                }
            });
            Some(Step::Rcpt)
        } else if cmd.starts_with("DATA") {
            Some(Step::Data)
        } else {
            None
        };
        if let (Some(st), Some(f)) = (step, fault) {
            if f.step() == st {
                match f {
                    Fault::Stall(_) => {
                        stall(stop);
                        return Ok(());
                    }
                    Fault::HangUp(_) => return Ok(()),
                    Fault::Reply(_, code) => {
                        write!(w, "{code} scripted fault\r\n")?;
                        if code == 421 {
                            return Ok(());
                        }
                        continue;
                    }
                }
            }
        }
        match step {
            Some(Step::Data) => {
                write!(w, "354 go ahead\r\n")?;
                let mut body = String::new();
                loop {
                    let mut l = String::new();
                    if read_line(&mut r, &mut l)? == 0 {
                        return Ok(());
                    }
                    if l == ".\r\n" {
                        break;
                    }
                    body.push_str(l.strip_prefix('.').unwrap_or(&l));
                }
                match fault.filter(|f| f.step() == Step::Dot) {
                    Some(Fault::Stall(_)) => {
                        script.lock().unwrap().bodies.push(body);
                        stall(stop);
                        return Ok(());
                    }
                    Some(Fault::HangUp(_)) => {
                        script.lock().unwrap().bodies.push(body);
                        return Ok(());
                    }
                    Some(Fault::Reply(_, code)) => {
                        write!(w, "{code} scripted fault after the dot\r\n")?;
                    }
                    _ => {
                        let mut s = script.lock().unwrap();
                        s.accepted.push(rcpt.clone());
                        s.bodies.push(body);
                        write!(w, "250 2.0.0 Ok: queued as {}\r\n", s.accepted.len())?;
                    }
                }
                fault = None;
            }
            Some(_) => write!(w, "250 ok\r\n")?,
            None if cmd.starts_with("EHLO") => {
                let pipelining = script.lock().unwrap().pipelining;
                let offer = if pipelining { "250-PIPELINING\r\n" } else { "" };
                write!(w, "250-scripted\r\n{offer}250 8BITMIME\r\n")?
            }
            None if cmd.starts_with("QUIT") => {
                write!(w, "221 bye\r\n")?;
                return Ok(());
            }
            None => write!(w, "250 ok\r\n")?,
        }
        w.flush()?;
    }
}

/// A throwaway PostgreSQL cluster, one per test run, shared by the
/// PostgreSQL tests (a database each): `initdb` in a temporary folder as an
/// unprivileged user (`nobody` when the tests run as root, as in CI), the
/// server on 127.0.0.1 and a free port, password authentication over TCP
/// (the superuser `postgres`, password [`PG_PASSWORD`]). A watchdog stops
/// it and removes the folder once the test process is gone.
pub struct PgCluster {
    pub port: u16,
    pub dir: PathBuf,
    bin: PathBuf,
    root: bool,
}

pub const PG_PASSWORD: &str = "test-secret";

impl PgCluster {
    pub fn get() -> &'static PgCluster {
        static CLUSTER: std::sync::OnceLock<PgCluster> = std::sync::OnceLock::new();
        CLUSTER.get_or_init(PgCluster::start)
    }

    fn start() -> PgCluster {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                    .filter(|b| b.join("initdb").exists())
                    .max()
            })
            .expect("PostgreSQL (/usr/lib/postgresql/*/bin/initdb) is missing: run .ci/setup");
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let dir = std::env::temp_dir().join(format!("letterpress-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("pw"), PG_PASSWORD).unwrap();
        // The server offers TLS, with a certificate for 127.0.0.1 and
        // localhost signed by a test CA (`ca`).
        let ca = TestCa::new();
        for (from, to) in [
            ("leaf.pem", "server.crt"),
            ("leaf.key", "server.key"),
            ("ca.pem", "ca.pem"),
        ] {
            std::fs::copy(ca.dir.path().join(from), dir.join(to)).unwrap();
        }
        if root {
            assert!(Command::new("chown")
                .args(["-R", "nobody"])
                .arg(&dir)
                .status()
                .unwrap()
                .success());
        }
        let port = free_port();
        let c = PgCluster {
            port,
            dir: dir.clone(),
            bin,
            root,
        };
        let out = c
            .tool("initdb")
            .arg("-D")
            .arg(dir.join("data"))
            .args([
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
                "--auth-local=trust",
            ])
            .args(["--auth-host=scram-sha-256", "--pwfile"])
            .arg(dir.join("pw"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The database `tlsonly` takes TLS connections only.
        let hba = dir.join("data/pg_hba.conf");
        let rules = std::fs::read_to_string(&hba).unwrap();
        std::fs::write(
            &hba,
            format!("hostnossl tlsonly all 127.0.0.1/32 reject\n{rules}"),
        )
        .unwrap();
        // The watchdog: stops the server and removes the folder when this
        // process is gone, however it ends.
        let pg_ctl = c.bin.join("pg_ctl");
        let stop = format!(
            "{} {} -D {}/data stop -m immediate",
            if root { "runuser -u nobody --" } else { "" },
            pg_ctl.display(),
            dir.display()
        );
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "while kill -0 {} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf {}",
                std::process::id(),
                dir.display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let out = c
            .tool("pg_ctl")
            .arg("-D")
            .arg(dir.join("data"))
            .arg("-l")
            .arg(dir.join("log"))
            .arg("-o")
            .arg(format!(
                "-h 127.0.0.1 -p {port} -k {d} -F -c max_connections=300 \
                 -c synchronous_commit=off -c ssl=on -c ssl_cert_file={d}/server.crt \
                 -c ssl_key_file={d}/server.key",
                d = dir.display()
            ))
            .args(["-w", "start"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(dir.join("log")).unwrap_or_default()
        );
        c
    }

    /// A PostgreSQL program of the cluster's version, run as its owner,
    /// from its folder.
    fn tool(&self, name: &str) -> Command {
        let mut c = if self.root {
            let mut c = Command::new("runuser");
            c.args(["-u", "nobody", "--"]).arg(self.bin.join(name));
            c
        } else {
            Command::new(self.bin.join(name))
        };
        c.current_dir(&self.dir);
        c
    }

    /// A new empty database; returns its URL (no password in it).
    pub fn database(&self, name: &str) -> String {
        self.psql("postgres", &format!("DROP DATABASE IF EXISTS {name}"));
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        format!(
            "postgres://postgres@127.0.0.1:{}/{name}?sslmode=disable",
            self.port
        )
    }

    /// Runs `sql` in `db` (over the socket, no password); returns the rows,
    /// fields separated by `|`.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        self.try_psql(db, sql)
            .unwrap_or_else(|e| panic!("psql {sql}: {e}"))
    }

    /// [`PgCluster::psql`], the error as a value (a table not made yet).
    pub fn try_psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = self
            .tool("psql")
            .arg("-h")
            .arg(&self.dir)
            .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", db])
            .args(["-v", "ON_ERROR_STOP=1", "-At", "-c", sql])
            .output()
            .unwrap();
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// The environment a `letterpress` talking to the cluster gets.
    /// The password, and no CA file (whatever `~/.postgresql/root.crt`
    /// holds on this machine).
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("PGPASSWORD".into(), PG_PASSWORD.into()),
            (
                "PGSSLROOTCERT".into(),
                self.dir.join("no-such-ca.pem").display().to_string(),
            ),
        ]
    }

    /// The CA that signed the server's certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
}
