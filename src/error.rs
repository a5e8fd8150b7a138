//! The one error type of letterpress: every fatal condition, each variant
//! carrying the file, line or column it is about. Row-level problems are not
//! errors: they are [`crate::report::Problem`]s in the run's report.

use std::path::PathBuf;

/// A condition that stops a run before (or instead of) rendering anything.
///
/// Messages are lowercase, name the thing that is wrong and say what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The run began but could not go on (a full disk, a file size
    /// limit): the letters before it are whole and listed in the manifest.
    #[error(
        "stopped at row {row} (line {line} of {csv}): {reason}; {written} letters were \
         written whole to {out} (listed in its manifest.json); \
         free some space and run again"
    )]
    Stopped {
        row: usize,
        line: u64,
        csv: String,
        reason: String,
        written: usize,
        out: PathBuf,
    },

    #[error("{path}:{line}: {message}")]
    Template {
        path: PathBuf,
        line: usize,
        message: String,
    },

    #[error("{path}:{line}: {missing}")]
    MissingVariable {
        path: PathBuf,
        line: usize,
        missing: MissingColumn,
    },

    #[error("{path}: {message}")]
    Recipients { path: String, message: String },

    #[error(
        "{path}: row {row} renders differently when MJML is rendered once than when it is \
         rendered per recipient ({detail}); a placeholder sits where MJML computes layout \
         (a width, or a block helper between mj-columns): move it into mj-text or mj-raw"
    )]
    MergeMismatch {
        path: PathBuf,
        row: usize,
        detail: String,
    },

    #[error(
        "output folder {path} is not empty; pass --force to write into it anyway, \
         or choose another --out"
    )]
    OutDirNotEmpty { path: PathBuf },

    #[error(
        "snapshot folder {path} does not exist; make it with \
         `letterpress render --deterministic --check {path} --update`"
    )]
    NoSnapshot { path: PathBuf },

    #[error(
        "{path} is a file, not a folder; --check needs the snapshot folder \
         (make one with `letterpress render --deterministic --check DIR --update`)"
    )]
    SnapshotIsFile { path: PathBuf },

    /// `--check` refuses a folder whose files letterpress cannot prove it
    /// wrote: `--update` would overwrite and remove them.
    #[error(
        "{path} is not a letterpress snapshot ({reason}), so --check leaves it alone; \
         give --check a new or empty folder, or one that `letterpress render` wrote \
         (with its manifest.json)"
    )]
    NotSnapshot { path: PathBuf, reason: String },

    #[error("cannot listen on {addr}: {source}; choose another --port")]
    Listen {
        addr: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    #[error("{0}")]
    Usage(String),

    #[error("journal {path}: {message}")]
    Journal { path: PathBuf, message: String },

    /// A journal backend that does not implement a method of the trait.
    #[error(
        "journal {journal}: this kind of journal does not keep {what} (not supported by this \
         journal yet); use an SQLite journal (--journal FILE.sqlite)"
    )]
    Unsupported { journal: String, what: String },

    /// Another `send` owns the journal. `owner` names it when it said who
    /// it is: `letterpress send (pid 1234 on host, started …)`.
    #[error(
        "journal {path} is in use by {owner}; nothing was sent. Wait for it to finish and run \
         the command again, or pass --wait to wait for it"
    )]
    JournalBusy { path: PathBuf, owner: String },

    #[error("journal {path}: {message}")]
    Changed { path: PathBuf, message: String },

    /// The destination cannot be used: the SMTP server is unreachable, TLS
    /// or AUTH failed, the sendmail program is missing. Never holds the
    /// password.
    #[error("{message}")]
    Transport { message: String },

    #[error("DKIM key {path}: {message}")]
    Dkim { path: PathBuf, message: String },
}

impl Error {
    /// The process exit code for this error: 2 for a usage mistake, 1 for
    /// everything that stops a run from starting.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => crate::exit::USAGE,
            _ => crate::exit::FATAL,
        }
    }
}

/// A variable of the template that the list has no column for: the text of
/// [`Error::MissingVariable`] after its location, so that `check` can place
/// it at its line without taking the message apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the template uses `{name}`, but {csv} has no column `{name}` (its columns: {columns}); \
     add the column or fix the name"
)]
pub struct MissingColumn {
    pub name: String,
    pub csv: String,
    pub columns: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
