//! The exit codes: a documented contract (README, `--help`), tested in
//! `tests/`.

/// Everything went well.
pub const OK: u8 = 0;
/// The run could not start or had to stop: a template error, an unreadable
/// file, an output folder in the way.
pub const FATAL: u8 = 1;
/// The command line was wrong (clap uses the same code).
pub const USAGE: u8 = 2;
/// The run finished, but some rows were rejected; every other row was done.
pub const ROWS_REJECTED: u8 = 3;
/// `render --check`: the fresh render differs from the snapshot folder.
pub const SNAPSHOT_DIFFERS: u8 = 4;
/// `check --spam`: SpamAssassin scores the sample letter as spam (at or
/// above its threshold, 5 points by default), and nothing else is wrong.
pub const SPAM: u8 = 5;

/// `send` was interrupted (Ctrl-C): the messages in flight were finished
/// and the journal written; run the same command again to resume.
pub const INTERRUPTED: u8 = 130;

/// The text for `--help`.
pub const HELP: &str = "\
Exit codes:
  0  all well
  1  fatal: nothing was done (template error, unreadable file, output folder in the way);
     for render also: the disk filled (or a file size limit was hit) part-way; the
     letters before are whole and listed in manifest.json, the message says where it stopped
     for send also: the server cannot be used, another send owns the journal,
     or the journal is not this campaign's;
     for bounces also: the journal does not exist or another send owns it
     (unclassified messages are listed, not an error: bounces exits 0)
  2  usage: the command line is wrong
  3  finished, but some rows were rejected (each is reported with its CSV line);
     for send: some recipients failed, are ambiguous or were rejected
     (see `letterpress status JOURNAL`)
  4  render --check: some letter differs from the snapshot folder (or was added or removed)
  5  check --spam: SpamAssassin scores the sample letter as spam (1 if it is not installed)
  130  send was interrupted (Ctrl-C); run the same command again to resume";
