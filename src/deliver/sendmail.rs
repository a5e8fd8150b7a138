//! The local MTA as a sink: each letter is handed to `sendmail -i -f FROM
//! -- RCPT` (Postfix, Exim and OpenSMTPD all ship this program), which is
//! how many organisations' servers send. Once it exits 0 the letter is in
//! the MTA's queue, and the queue owns retries and bounces.
//!
//! What the exit status means follows `sysexits.h`, which those MTAs use:
//! a temporary failure (75, and the I/O errors 71, 73, 74) is retried like
//! an SMTP 4xx; "no such user or host" and a malformed message (67, 68, 65)
//! fail that recipient; anything else (usage, configuration, permission, an
//! unknown code) means the MTA cannot be used and stops the run. A program
//! killed by a signal, or cut off at the timeout, after it read the whole
//! letter may have queued it: ambiguous, never resent automatically.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::compose::build::Built;
use crate::deliver::sink::{Delivered, Envelope, Failure, Receipt, Sink};
use crate::error::{Error, Result};

/// Hands letters to the local `sendmail` program.
#[derive(Debug, Clone)]
pub struct SendmailSink {
    path: PathBuf,
    timeout: Duration,
}

impl SendmailSink {
    /// A sink running `path`, which must be an executable file.
    pub fn new(path: &Path, timeout: Duration) -> Result<SendmailSink> {
        use std::os::unix::fs::PermissionsExt as _;
        let usable = std::fs::metadata(path)
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
        if !usable {
            return Err(Error::Transport {
                message: format!(
                    "--sendmail: {} is not an executable program; install a mail server \
                     (Postfix, Exim, OpenSMTPD) or give the path of its sendmail",
                    path.display()
                ),
            });
        }
        Ok(SendmailSink {
            path: path.into(),
            timeout,
        })
    }
}

/// The message with LF line ends: the local submission format (`sendmail`
/// reads text lines; the MTA writes CRLF on the wire).
fn unix_lines(eml: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(eml.len());
    let mut start = 0;
    for at in memchr::memmem::find_iter(eml, b"\r\n") {
        out.extend_from_slice(&eml[start..at]);
        out.push(b'\n');
        start = at + 2;
    }
    out.extend_from_slice(&eml[start..]);
    out
}

/// What a `sendmail` exit status means for the letter (sysexits.h).
fn failure_of(code: i32, what: String) -> Failure {
    match code {
        65 | 67 | 68 => Failure::Permanent {
            code: None,
            reply: what,
        },
        71 | 73 | 74 | 75 => Failure::Transient {
            code: None,
            reply: what,
        },
        _ => Failure::Fatal(format!(
            "{what}; the mail server cannot take letters: check its configuration and logs"
        )),
    }
}

impl Sink for SendmailSink {
    fn deliver(
        &self,
        envelope: &Envelope<'_>,
        built: &Built,
    ) -> std::result::Result<Receipt, Failure> {
        let program = self.path.display();
        let mut child = Command::new(&self.path)
            .args(["-i", "-f", envelope.from, "--", envelope.to])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Failure::Fatal(format!("cannot run {program}: {e}")))?;
        let mut stdin = child.stdin.take().expect("piped stdin");
        // A write error means the program exited early: its status says why.
        let written = stdin.write_all(&unix_lines(&built.eml)).is_ok();
        drop(stdin);
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(Failure::Ambiguous {
                        reason: format!(
                            "{program} did not finish within {:?} and was stopped; it may \
                             have queued the letter",
                            self.timeout
                        ),
                    });
                }
                Err(e) => return Err(Failure::Fatal(format!("cannot wait for {program}: {e}"))),
            }
        };
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
        }
        let said = stderr.split_whitespace().collect::<Vec<_>>().join(" ");
        match status.code() {
            Some(0) if written => Ok(Receipt {
                reply: format!("queued by {program}"),
                delivered: Delivered::default(),
            }),
            Some(0) => Err(Failure::Transient {
                code: None,
                reply: format!("{program} exited before reading the whole letter: {said}"),
            }),
            Some(code) => Err(failure_of(code, format!("{program} exited {code}: {said}"))),
            None if written => Err(Failure::Ambiguous {
                reason: format!("{program} was killed after reading the letter ({said})"),
            }),
            None => Err(Failure::Transient {
                code: None,
                reply: format!("{program} was killed before reading the letter ({said})"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_end_in_lf_for_local_submission() {
        assert_eq!(unix_lines(b"A: b\r\n\r\nx\ry\r\n"), b"A: b\n\nx\ry\n");
        assert_eq!(unix_lines(b"no end"), b"no end");
    }

    #[test]
    fn exit_codes_follow_sysexits() {
        let w = || "x".to_string();
        assert!(matches!(failure_of(75, w()), Failure::Transient { .. }));
        assert!(matches!(failure_of(67, w()), Failure::Permanent { .. }));
        assert!(matches!(failure_of(78, w()), Failure::Fatal(_)));
        assert!(matches!(failure_of(1, w()), Failure::Fatal(_)));
    }

    #[test]
    fn a_missing_program_is_refused_up_front() {
        let e =
            SendmailSink::new(Path::new("/no/such/sendmail"), Duration::from_secs(1)).unwrap_err();
        assert!(e.to_string().contains("not an executable"), "{e}");
    }
}
