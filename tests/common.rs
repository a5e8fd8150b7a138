//! Helpers shared by the command-line tests.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The repository root: the example campaign lives there.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn example_template() -> PathBuf {
    root().join("templates/weremember.mjml")
}

pub fn example_csv() -> PathBuf {
    root().join("recipients.example.csv")
}

pub fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures").join(name)
}

/// What a run of the binary left behind.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Asserts the exit code, showing everything the run printed if it is
    /// not the one expected.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "exit code {} (expected {code})\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }
}

/// A `letterpress` command in the repository root with a clean environment
/// (no SOURCE_DATE_EPOCH, NO_COLOR set).
pub fn letterpress() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_letterpress"));
    c.current_dir(root())
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("LETTERPRESS_SMTP_PASSWORD")
        .env("NO_COLOR", "1");
    c
}

/// Runs `letterpress ARGS`, feeding `stdin` if given.
pub fn run<S: AsRef<std::ffi::OsStr>>(args: &[S], stdin: Option<&[u8]>) -> Output {
    run_cmd(letterpress().args(args), stdin)
}

/// Runs `letterpress ARGS` with extra environment variables (such as
/// `MAIL_CONFIG` for a private Postfix's `sendmail`).
pub fn run_env<S: AsRef<std::ffi::OsStr>>(args: &[S], env: &[(String, String)]) -> Output {
    run_cmd(letterpress().args(args).envs(env.iter().cloned()), None)
}

pub fn run_cmd(cmd: &mut Command, stdin: Option<&[u8]>) -> Output {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("the letterpress binary runs");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Writes `contents` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, contents).unwrap();
    p
}

/// Every file below `dir` with its bytes, sorted by path.
pub fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// A small valid template using the columns `email`, `name`.
pub const SMALL_TEMPLATE: &str = "From: Sender <sender@example.org>\nTo: {{name}} <{{email}}>\nSubject: Hello {{name}}\nList-Unsubscribe: <https://example.org/u?e={{email}}>\n\n<mjml>\n  <mj-body>\n    <mj-section><mj-column>\n      <mj-text>Dear {{name}},</mj-text>\n    </mj-column></mj-section>\n  </mj-body>\n</mjml>\n";
