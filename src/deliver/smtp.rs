//! The SMTP sink: connections to one server, each owned by a small tokio
//! runtime, reused across messages and dropped after any error. tokio lives
//! here and nowhere else. What a reply means for the recipient (retry,
//! failed, ambiguous) is decided here; what to do about it (journal,
//! backoff) is the pipeline's business ([`crate::deliver::send`]).
//!
//! Three traps of lettre 0.11.23 are avoided on purpose (DESIGN.md 5): we
//! open the `TcpStream` ourselves with TCP_NODELAY (Nagle costs 40 ms per
//! message), every step has its own timeout (lettre's covers the connect
//! only), and there is no pool that could take back a connection cancelled
//! half-way: a connection goes back to our idle list only after a complete
//! transaction.

use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use lettre::transport::smtp::authentication::{Credentials, Mechanism};
#[allow(deprecated)] // the one way to run lettre's TLS over our own socket
use lettre::transport::smtp::client::{
    AsyncNetworkStream, AsyncSmtpConnection, AsyncTokioStream, Certificate, TlsParameters,
};
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Rcpt};
use lettre::transport::smtp::extension::ClientId;
use lettre::Address;

use crate::compose::build::Built;
use crate::deliver::sink::{Delivered, Envelope, Failure, Receipt, Sink};
use crate::error::{Error, Result};
use crate::secret::Secret;

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// `smtp://`: plain text, for test servers on this machine.
    Plain,
    /// `smtp://…?tls=required`: STARTTLS, refused if the server lacks it.
    StartTls,
    /// `smtps://`: TLS from the first byte.
    Implicit,
}

/// A parsed `--smtp` URL. Never holds a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// The AUTH user from the URL, if any.
    pub user: Option<String>,
}

impl Server {
    /// Parses `smtp://[user@]host[:port][?tls=required]` or
    /// `smtps://[user@]host[:port]`. A password in the URL is refused: it
    /// would end up in shell history and process lists.
    pub fn parse(s: &str) -> std::result::Result<Server, String> {
        let url = url::Url::parse(s).map_err(|e| {
            format!("--smtp `{s}` is not a URL ({e}); write smtp://host:port or smtps://host:465")
        })?;
        if url.password().is_some() {
            return Err(
                "--smtp must not hold a password; set LETTERPRESS_SMTP_PASSWORD or let \
                 letterpress ask for it"
                    .into(),
            );
        }
        let mut security = match url.scheme() {
            "smtp" => Security::Plain,
            "smtps" => Security::Implicit,
            other => {
                return Err(format!(
                    "--smtp scheme `{other}` is not supported; use smtp:// or smtps://"
                ))
            }
        };
        for (k, v) in url.query_pairs() {
            match (k.as_ref(), v.as_ref(), security) {
                ("tls", "required", Security::Plain) => security = Security::StartTls,
                ("tls", "required", Security::Implicit) => {}
                _ => {
                    return Err(format!(
                        "--smtp: unknown parameter `{k}={v}`; the only one is tls=required"
                    ))
                }
            }
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("--smtp `{s}` names no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = url.port().unwrap_or(match security {
            Security::Implicit => 465,
            _ => 25,
        });
        let user = Some(url.username())
            .filter(|u| !u.is_empty())
            .map(|u| {
                percent_decode(u)
                    .ok_or_else(|| format!("--smtp: the user name in `{s}` is not valid UTF-8"))
            })
            .transpose()?;
        Ok(Server {
            host,
            port,
            security,
            user,
        })
    }

    /// Whether the host is this machine (plain AUTH is allowed only there).
    pub fn is_loopback(&self) -> bool {
        self.host == "localhost"
            || self
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Everything needed to open a connection.
#[derive(Debug, Clone)]
pub struct SmtpOptions {
    pub server: Server,
    pub user: Option<String>,
    pub password: Option<Secret>,
    /// Extra trusted CA (PEM), for test servers.
    pub ca: Option<Vec<u8>>,
    /// The EHLO name.
    pub helo: String,
    /// The limit on every step: connect, greeting, each command, the body.
    pub timeout: Duration,
}

/// What one attempt to hand over a message came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The server took the message after the final dot (2xx).
    Accepted { reply: String },
    /// Not delivered, safe to try again: a 4xx reply, or a hang-up or
    /// timeout before the body was complete.
    Transient { code: Option<u16>, reply: String },
    /// A 5xx reply: this recipient failed; the run goes on.
    Permanent { code: u16, reply: String },
    /// A hang-up or timeout after the body was sent: the server may have
    /// taken the message. Never retried automatically.
    Ambiguous { reason: String },
}

/// A condition that must stop the whole run: AUTH refused, TLS failed, the
/// server cannot be reached. Nobody else is attempted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fatal(pub String);

/// A connection that could not be set up, either for good ([`Fatal`]) or for
/// now (the server was busy or slow to greet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetupError {
    Fatal(Fatal),
    Transient(String),
}

struct Slot {
    rt: tokio::runtime::Runtime,
    conn: Option<Conn>,
}

/// An open connection, and whether the server offers PIPELINING.
struct Conn {
    smtp: AsyncSmtpConnection,
    pipelining: bool,
}

/// A set of connections to one server. [`SmtpSink::lease`] hands out one
/// at a time per caller; at most as many exist as callers at once.
pub struct SmtpSink {
    opts: SmtpOptions,
    tls: Option<TlsParameters>,
    client_id: ClientId,
    idle: Mutex<Vec<Slot>>,
}

impl std::fmt::Debug for SmtpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSink")
            .field("server", &self.opts.server)
            .finish_non_exhaustive()
    }
}

/// One connection, ready for a transaction, taken from the sink. It goes
/// back to the idle list only if the transaction completed.
pub struct Lease<'a> {
    sink: &'a SmtpSink,
    slot: Option<Slot>,
}

fn code_of(e: &lettre::transport::smtp::Error) -> Option<u16> {
    e.status().and_then(|c| c.to_string().parse().ok())
}

fn text_of(e: &lettre::transport::smtp::Error) -> String {
    match std::error::Error::source(e) {
        Some(s) => s.to_string(),
        None => e.to_string(),
    }
}

/// Reply text, one line, for the journal and the report.
fn reply_line(code: Option<u16>, text: &str) -> String {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match code {
        Some(c) => format!("{c} {text}"),
        None => text,
    }
}

impl SmtpSink {
    /// Prepares the sink and opens the first connection, so that a wrong
    /// password, a TLS problem or an unreachable server stops the run before
    /// anyone is attempted.
    pub fn open(opts: SmtpOptions) -> Result<SmtpSink> {
        let tls = match opts.server.security {
            Security::Plain => None,
            Security::StartTls | Security::Implicit => {
                let mut b = TlsParameters::builder(opts.server.host.clone());
                if let Some(pem) = &opts.ca {
                    let cert = Certificate::from_pem(pem).map_err(|e| Error::Transport {
                        message: format!("--smtp-ca holds no usable PEM certificate: {e}"),
                    })?;
                    b = b.add_root_certificate(cert);
                }
                Some(b.build_rustls().map_err(|e| Error::Transport {
                    message: format!("cannot set up TLS: {e}"),
                })?)
            }
        };
        if opts.password.is_some()
            && opts.server.security == Security::Plain
            && !opts.server.is_loopback()
        {
            return Err(Error::Usage(
                "refusing to send a password over an unencrypted connection; use \
                 smtps:// or smtp://…?tls=required"
                    .into(),
            ));
        }
        let client_id = ClientId::Domain(opts.helo.clone());
        let sink = SmtpSink {
            opts,
            tls,
            client_id,
            idle: Mutex::new(Vec::new()),
        };
        let mut tries = 0;
        loop {
            let first = sink.lease().map(drop);
            match first {
                Ok(()) => return Ok(sink),
                Err(SetupError::Fatal(Fatal(m))) => return Err(Error::Transport { message: m }),
                Err(SetupError::Transient(m)) if tries >= 2 => {
                    return Err(Error::Transport { message: m })
                }
                Err(SetupError::Transient(_)) => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
    }

    pub fn server(&self) -> &Server {
        &self.opts.server
    }

    /// A connection ready for MAIL FROM: an idle one, or a new one.
    pub fn lease(&self) -> std::result::Result<Lease<'_>, SetupError> {
        let idle = self.idle.lock().expect("idle list").pop();
        let mut slot = match idle {
            Some(s) => s,
            None => Slot {
                rt: tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .enable_time()
                    .build()
                    .map_err(|e| {
                        SetupError::Fatal(Fatal(format!("cannot start the network runtime: {e}")))
                    })?,
                conn: None,
            },
        };
        if slot.conn.is_none() {
            let conn = slot.rt.block_on(self.connect());
            match conn {
                Ok(c) => slot.conn = Some(c),
                Err(e) => {
                    // The runtime is still good: keep it for the next lease.
                    self.idle.lock().expect("idle list").push(slot);
                    return Err(e);
                }
            }
        }
        Ok(Lease {
            sink: self,
            slot: Some(slot),
        })
    }

    /// Connect, greeting, EHLO, STARTTLS, AUTH, each within the timeout.
    async fn connect(&self) -> std::result::Result<Conn, SetupError> {
        let s = &self.opts.server;
        let t = self.opts.timeout;
        let whom = format!("{}:{}", s.host, s.port);
        let fatal = |m: String| SetupError::Fatal(Fatal(m));
        let tcp = match tokio::time::timeout(
            t,
            tokio::net::TcpStream::connect((s.host.as_str(), s.port)),
        )
        .await
        {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => {
                return Err(fatal(format!(
                    "cannot reach the SMTP server {whom}: {e}; check --smtp and that the \
                     server is running"
                )))
            }
            Err(_) => {
                return Err(fatal(format!(
                    "cannot reach the SMTP server {whom}: no answer within {t:?}"
                )))
            }
        };
        // lettre leaves Nagle on: 40 ms per message waiting for delayed ACKs.
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn AsyncTokioStream> = match (&self.tls, s.security) {
            (Some(tls), Security::Implicit) => {
                #[allow(deprecated)]
                let mut ns = AsyncNetworkStream::use_existing_tokio1(Box::new(tcp));
                match tokio::time::timeout(t, ns.upgrade_tls(tls.clone())).await {
                    Ok(Ok(())) => Box::new(Compat(ns)),
                    Ok(Err(e)) => return Err(fatal(tls_message(&whom, &e))),
                    Err(_) => {
                        return Err(fatal(format!(
                            "TLS handshake with {whom} did not finish within {t:?}"
                        )))
                    }
                }
            }
            _ => Box::new(tcp),
        };
        let setup = |e: lettre::transport::smtp::Error, what: &str| {
            let code = code_of(&e);
            let m = format!(
                "the SMTP server {whom} refused {what}: {}",
                reply_line(code, &text_of(&e))
            );
            if e.is_transient() || code.is_none() {
                SetupError::Transient(m)
            } else {
                SetupError::Fatal(Fatal(m))
            }
        };
        let mut conn = match tokio::time::timeout(
            t,
            AsyncSmtpConnection::connect_with_transport(stream, &self.client_id),
        )
        .await
        {
            Ok(Ok(c)) => c,
            Ok(Err(e)) if e.is_tls() => return Err(fatal(tls_message(&whom, &e))),
            Ok(Err(e)) => return Err(setup(e, "the connection (greeting or EHLO)")),
            Err(_) => {
                return Err(SetupError::Transient(format!(
                    "the SMTP server {whom} sent no greeting within {t:?}"
                )))
            }
        };
        if s.security == Security::StartTls {
            if !conn.can_starttls() {
                return Err(fatal(format!(
                    "the SMTP server {whom} does not offer STARTTLS, but the URL says \
                     tls=required"
                )));
            }
            let tls = self.tls.clone().expect("TLS parameters for STARTTLS");
            match tokio::time::timeout(t, conn.starttls(tls, &self.client_id)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(fatal(tls_message(&whom, &e))),
                Err(_) => {
                    return Err(fatal(format!(
                        "STARTTLS with {whom} did not finish within {t:?}"
                    )))
                }
            }
        }
        if let (Some(user), Some(pw)) = (&self.opts.user, &self.opts.password) {
            let creds = Credentials::new(user.clone(), pw.expose().to_string());
            match tokio::time::timeout(t, conn.auth(&[Mechanism::Plain, Mechanism::Login], &creds))
                .await
            {
                Ok(Ok(_)) => {}
                Ok(Err(e)) if e.is_transient() => return Err(setup(e, "AUTH for now")),
                Ok(Err(e)) => {
                    return Err(fatal(format!(
                        "the SMTP server {whom} refused the login of `{user}`: {}; check the \
                         user and LETTERPRESS_SMTP_PASSWORD",
                        reply_line(code_of(&e), &text_of(&e))
                    )))
                }
                Err(_) => {
                    return Err(SetupError::Transient(format!(
                        "AUTH with {whom} got no answer within {t:?}"
                    )))
                }
            }
        }
        // lettre keeps only the EHLO keywords it knows, and PIPELINING is
        // not one of them: ask again (once per connection) and look.
        let pipelining =
            match tokio::time::timeout(t, conn.command(Ehlo::new(self.client_id.clone()))).await {
                Ok(Ok(r)) => r
                    .message()
                    .any(|l| l.trim().eq_ignore_ascii_case("PIPELINING")),
                Ok(Err(e)) => return Err(setup(e, "EHLO")),
                Err(_) => {
                    return Err(SetupError::Transient(format!(
                        "EHLO to {whom} got no answer within {t:?}"
                    )))
                }
            };
        Ok(Conn {
            smtp: conn,
            pipelining,
        })
    }
}

fn tls_message(whom: &str, e: &lettre::transport::smtp::Error) -> String {
    let mut m = format!("TLS with the SMTP server {whom} failed: {e}");
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        let t = s.to_string();
        if !m.contains(&t) {
            m.push_str(&format!(": {t}"));
        }
        src = s.source();
    }
    m.push_str("; if the server uses a private CA (a test server), name it with --smtp-ca FILE");
    m
}

impl Lease<'_> {
    /// One transaction: MAIL FROM, RCPT TO, DATA, the body and the final
    /// dot, each within the timeout. On anything but success the connection
    /// is dropped.
    pub fn transact(mut self, from: &str, to: &str, eml: &[u8]) -> Attempt {
        let mut slot = self.slot.take().expect("a leased slot");
        let mut conn = slot.conn.take().expect("a leased connection");
        let t = self.sink.opts.timeout;
        let attempt = slot.rt.block_on(transact(&mut conn, from, to, eml, t));
        if matches!(attempt, Attempt::Accepted { .. }) {
            slot.conn = Some(conn);
        }
        // Else the connection is dropped here: never reused half-done.
        self.sink.idle.lock().expect("idle list").push(slot);
        attempt
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            self.sink.idle.lock().expect("idle list").push(slot);
        }
    }
}

async fn transact(conn: &mut Conn, from: &str, to: &str, eml: &[u8], t: Duration) -> Attempt {
    let parse = |a: &str| -> std::result::Result<Address, Attempt> {
        a.parse().map_err(|_| Attempt::Permanent {
            code: 553,
            reply: format!("`{a}` is not an address letterpress can send to"),
        })
    };
    let (from, to) = match (parse(from), parse(to)) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(a), _) | (_, Err(a)) => return a,
    };
    // Before the body: any failure is safe to retry.
    let before = |e: Option<lettre::transport::smtp::Error>, step: &str| match e {
        Some(e) => {
            let code = code_of(&e);
            let reply = reply_line(code, &text_of(&e));
            match code {
                Some(c) if e.is_permanent() => Attempt::Permanent {
                    code: c,
                    reply: format!("{step}: {reply}"),
                },
                _ => Attempt::Transient {
                    code,
                    reply: format!("{step}: {reply}"),
                },
            }
        }
        None => Attempt::Transient {
            code: None,
            reply: format!("{step}: no answer within {t:?}"),
        },
    };
    macro_rules! step {
        ($fut:expr, $name:expr) => {
            match tokio::time::timeout(t, $fut).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return before(Some(e), $name),
                Err(_) => return before(None, $name),
            }
        };
    }
    let mail = Mail::new(Some(from), vec![]);
    let rcpt = Rcpt::new(to, vec![]);
    if conn.pipelining {
        // RFC 2920: the three commands in one write, then their replies in
        // order: one round trip instead of three. The first failure ends
        // the attempt, and the connection is dropped with the replies still
        // unread, so it is never out of step.
        step!(
            conn.smtp.command(format!("{mail}{rcpt}{Data}")),
            "MAIL FROM"
        );
        step!(conn.smtp.read_response(), "RCPT TO");
        step!(conn.smtp.read_response(), "DATA");
    } else {
        step!(conn.smtp.command(mail), "MAIL FROM");
        step!(conn.smtp.command(rcpt), "RCPT TO");
        step!(conn.smtp.command(Data), "DATA");
    }
    // The body goes out through `command()`, which writes bytes as they
    // are: lettre's `message()` dot-stuffs byte by byte, 15% of a send's
    // CPU time. Our messages are ASCII (message.rs); anything else takes
    // lettre's path. Either way the message arrives byte for byte as
    // rendered (the body's last CRLF is the first of CRLF . CRLF).
    let sent = match std::str::from_utf8(eml) {
        Ok(text) => tokio::time::timeout(t, conn.smtp.command(Payload(text))).await,
        Err(_) => {
            let body = eml.strip_suffix(b"\r\n").unwrap_or(eml);
            tokio::time::timeout(t, conn.smtp.message(body)).await
        }
    };
    match sent {
        Ok(Ok(r)) => Attempt::Accepted {
            reply: reply_line(
                Some(r.code().to_string().parse().unwrap_or(250)),
                &r.message().collect::<Vec<_>>().join(" "),
            ),
        },
        Ok(Err(e)) => match code_of(&e) {
            Some(c) if e.is_permanent() => Attempt::Permanent {
                code: c,
                reply: format!("after the message: {}", reply_line(Some(c), &text_of(&e))),
            },
            Some(c) => Attempt::Transient {
                code: Some(c),
                reply: format!("after the message: {}", reply_line(Some(c), &text_of(&e))),
            },
            None => Attempt::Ambiguous {
                reason: format!(
                    "the connection failed after the message was sent ({}); the server may \
                     have accepted it",
                    text_of(&e)
                ),
            },
        },
        Err(_) => Attempt::Ambiguous {
            reason: format!(
                "no reply within {t:?} after the message was sent; the server may have \
                 accepted it"
            ),
        },
    }
}

/// The DATA payload: the message dot-stuffed (RFC 5321 4.5.2), then the
/// final `.` line.
struct Payload<'a>(&'a str);

impl std::fmt::Display for Payload<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let body = self.0.strip_suffix("\r\n").unwrap_or(self.0);
        let mut start = 0;
        if body.starts_with('.') {
            f.write_str(".")?;
        }
        for at in memchr::memmem::find_iter(body.as_bytes(), b"\n.") {
            f.write_str(&body[start..=at])?;
            f.write_str(".")?;
            start = at + 1;
        }
        f.write_str(&body[start..])?;
        f.write_str("\r\n.\r\n")
    }
}

/// The SMTP sink behind the delivery seam: a connection is leased (an idle
/// one, or a new one) for each message and goes back only after a complete
/// transaction.
impl Sink for SmtpSink {
    fn deliver(
        &self,
        envelope: &Envelope<'_>,
        built: &Built,
    ) -> std::result::Result<Receipt, Failure> {
        let lease = self.lease().map_err(|e| match e {
            SetupError::Fatal(Fatal(m)) => Failure::Fatal(m),
            SetupError::Transient(reply) => Failure::Transient { code: None, reply },
        })?;
        match lease.transact(envelope.from, envelope.to, &built.eml) {
            Attempt::Accepted { reply } => Ok(Receipt {
                reply,
                delivered: Delivered::default(),
            }),
            Attempt::Transient { code, reply } => Err(Failure::Transient { code, reply }),
            Attempt::Permanent { code, reply } => Err(Failure::Permanent {
                code: Some(code),
                reply,
            }),
            Attempt::Ambiguous { reason } => Err(Failure::Ambiguous { reason }),
        }
    }
}

/// lettre's TLS stream speaks `futures` I/O; `connect_with_transport` wants
/// tokio I/O. This adapter lets implicit TLS run over our own socket.
#[derive(Debug)]
#[allow(deprecated)]
struct Compat(AsyncNetworkStream);

impl tokio::io::AsyncRead for Compat {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let unfilled = buf.initialize_unfilled();
        match futures_util::io::AsyncRead::poll_read(Pin::new(&mut self.0), cx, unfilled) {
            Poll::Ready(Ok(n)) => {
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl tokio::io::AsyncWrite for Compat {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        futures_util::io::AsyncWrite::poll_write(Pin::new(&mut self.0), cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        futures_util::io::AsyncWrite::poll_flush(Pin::new(&mut self.0), cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        futures_util::io::AsyncWrite::poll_close(Pin::new(&mut self.0), cx)
    }
}

impl AsyncTokioStream for Compat {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.peer_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let s = Server::parse("smtp://127.0.0.1:2525").unwrap();
        assert_eq!((s.port, s.security, s.user), (2525, Security::Plain, None));
        let s = Server::parse("smtp://ann%40x.org@mail.example.org?tls=required").unwrap();
        assert_eq!(s.port, 25);
        assert_eq!(s.security, Security::StartTls);
        assert_eq!(s.user.as_deref(), Some("ann@x.org"));
        let s = Server::parse("smtps://mail.example.org").unwrap();
        assert_eq!((s.port, s.security), (465, Security::Implicit));
        assert!(Server::parse("smtp://u:pw@host")
            .unwrap_err()
            .contains("password"));
        assert!(Server::parse("http://host").is_err());
        assert!(Server::parse("smtp://host?tls=maybe").is_err());
        assert!(Server::parse("smtp://[::1]:25").unwrap().is_loopback());
        assert!(!Server::parse("smtp://mail.example.org")
            .unwrap()
            .is_loopback());
    }

    #[test]
    fn payload_is_dot_stuffed_and_ends_with_the_dot_line() {
        assert_eq!(
            Payload("a\r\n.b\r\n..c\r\n").to_string(),
            "a\r\n..b\r\n...c\r\n.\r\n"
        );
        assert_eq!(Payload(".x\r\n").to_string(), "..x\r\n.\r\n");
        assert_eq!(Payload("x").to_string(), "x\r\n.\r\n");
    }

    #[test]
    fn replies_are_one_line() {
        assert_eq!(
            reply_line(Some(250), "2.0.0 Ok:\n queued"),
            "250 2.0.0 Ok: queued"
        );
    }
}
