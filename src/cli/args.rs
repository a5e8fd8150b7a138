//! The command line as clap sees it: flags only, no behaviour. [`crate::cli::config`]
//! turns it into a validated configuration.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "letterpress",
    version,
    about = "Personalized letters from one MJML template and a CSV of contacts: \
             preview them as files, check them, send them.",
    after_help = crate::exit::HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Render one .eml, .html and .txt per contact into a folder, with a
    /// manifest.json and a preview gallery (index.html); or, with --check,
    /// compare a fresh render with a folder of snapshots.
    #[command(after_help = crate::exit::HELP)]
    Render(RenderArgs),
    /// Find every problem in a template and its contacts without writing a
    /// file.
    #[command(after_help = crate::exit::HELP)]
    Check(CheckArgs),
    /// Serve the preview gallery on 127.0.0.1 and render again whenever the
    /// template, its .txt part or the contacts change; the open page reloads.
    #[command(after_help = crate::exit::HELP)]
    Serve(ServeArgs),
    /// Send one letter per contact over SMTP or through the local mail
    /// server (--sendmail), journalled so that a re-run
    /// resumes without sending anyone the letter twice.
    #[command(after_help = crate::exit::HELP)]
    Send(Box<SendArgs>),
    /// Print the counts of a send journal (and write the failed rows); for
    /// a PostgreSQL journal, also each worker: what it holds, how fast.
    #[command(after_help = crate::exit::HELP)]
    Status(StatusArgs),
    /// Work on journals: `journal copy FROM TO` between SQLite files and
    /// PostgreSQL databases.
    #[command(subcommand)]
    Journal(JournalCommand),
    /// Read returned mail (an mbox file or a Maildir), classify each
    /// message (hard or soft bounce, complaint, auto-reply, unclassified)
    /// and record the bounces and complaints in the send journal, once.
    #[command(after_help = crate::exit::HELP)]
    Bounces(BouncesArgs),
}

#[derive(Debug, Subcommand)]
pub enum JournalCommand {
    /// Copy a journal (an SQLite file or postgres://USER@HOST:PORT/DB) into
    /// a new one: a campaign started on one machine can be finished by
    /// several, and a finished one archived to a file.
    Copy { from: String, to: String },
}

#[derive(Debug, Args)]
pub struct BouncesArgs {
    /// The returned mail: an mbox file, or a Maildir folder (cur/, new/).
    pub mailbox: PathBuf,
    /// The journal of the send the mail came back from: a file, or the
    /// postgres://USER@HOST:PORT/DB URL of a campaign sent by several
    /// workers (password from PGPASSWORD or ~/.pgpass).
    #[arg(long, value_name = "PATH|URL")]
    pub journal: PathBuf,
    /// Append hard bounces and complaints (and soft bounces, as
    /// `soft-bounce` lines) to this suppression CSV, for `--suppress`.
    #[arg(long, value_name = "FILE")]
    pub suppress_out: Option<PathBuf>,
    /// Name the addresses that soft-bounced in this many campaigns of the
    /// --suppress-out file (they are suppressed like hard bounces).
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub soft_bounce_limit: usize,
    /// When a send is using the journal, wait for it to finish.
    #[arg(long)]
    pub wait: bool,
    /// Print the findings as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Where the letters come from: shared by every command.
#[derive(Debug, Args)]
pub struct Input {
    /// The template: header lines, a blank line, then MJML (a sibling
    /// NAME.txt, if present, is the plain-text part).
    pub template: PathBuf,
    /// The contacts, a CSV file with a header line; `-` reads standard input.
    pub recipients: String,
    /// The CSV delimiter: `,` `;` `tab` or `|` (detected from the header
    /// line when not given).
    #[arg(long, value_name = "CHAR")]
    pub delimiter: Option<String>,
    /// Reject a row with a value longer than SIZE (bytes, or with K, M or G:
    /// 64K, 1M).
    #[arg(long, value_name = "SIZE", default_value = "64K", value_parser = size)]
    pub max_value_size: usize,
    /// Reject a row whose letter has a header block longer than SIZE
    /// (Postfix refuses more than 100K, relays add headers on the way).
    #[arg(long, value_name = "SIZE", default_value = "64K", value_parser = size)]
    pub max_header_size: usize,
    /// Reject a row whose whole letter is longer than SIZE (many relays
    /// refuse more than 10M).
    #[arg(long, value_name = "SIZE", default_value = "10M", value_parser = size)]
    pub max_message_size: usize,
    /// A per-contact `Attachment:` file that does not exist: `reject` the
    /// row (naming its CSV line), or `skip` the file and send the letter
    /// without it (the report says so).
    #[arg(long, value_name = "WHAT", default_value = "reject")]
    pub missing_attachment: crate::compose::attach::MissingAttachment,
    /// Local images (`mj-image`/`<img>` with a `src` that is a file in the
    /// template's folder): `auto` embeds them as `cid:` parts; `never`
    /// embeds none and refuses a letter that still shows a local file.
    #[arg(long, value_name = "WHEN", default_value = "auto")]
    pub inline_images: crate::compose::attach::InlineImages,
    /// Link none of the web fonts MJML adds by itself: by default the letter
    /// links, as the official MJML does, the Google Fonts it uses among Open
    /// Sans, Droid Sans, Lato, Roboto and Ubuntu (mj-text's default). An
    /// mj-font the template declares is linked either way.
    #[arg(long)]
    pub no_remote_fonts: bool,
    /// The column holding each contact's language, a BCP 47 tag (`he`,
    /// `pt-BR`). A contact gets the template variant of that language
    /// (TEMPLATE's sibling `NAME.he.mjml`), else of its shorter tag
    /// (`pt-BR` falls back to `pt`), else the default TEMPLATE. Default:
    /// `lang`, when the list has that column.
    #[arg(long, value_name = "COLUMN")]
    pub lang_column: Option<String>,
}

/// The suppression lists: shared by check, render and send.
#[derive(Debug, Args)]
pub struct SuppressArgs {
    /// Never send to the addresses in FILE (repeatable): a CSV with an
    /// `email` column (and `reason`: unsubscribed, bounced, complained …),
    /// or one address a line. Addresses compare lower-cased.
    #[arg(long, value_name = "FILE")]
    pub suppress: Vec<PathBuf>,
    /// In a --suppress file, an address with `soft-bounce` lines from this
    /// many campaigns is suppressed like a hard bounce.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub soft_bounce_limit: usize,
}

fn size(s: &str) -> Result<usize, String> {
    crate::compose::recipients::parse_size(s)
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    #[command(flatten)]
    pub input: Input,
    #[command(flatten)]
    pub suppressed: SuppressArgs,
    /// The output folder; it must be empty or new, unless --force.
    #[arg(long, short, default_value = "out", value_name = "DIR")]
    pub out: PathBuf,
    /// Which files to write, comma-separated: eml, html, txt (one per
    /// contact) and index (the gallery: index.html and manifest.js).
    #[arg(long, default_value = "eml,html,txt,index", value_name = "LIST")]
    pub format: String,
    /// Byte-identical output on every run: Date from SOURCE_DATE_EPOCH (0 if
    /// unset), Message-ID and MIME boundary from a hash of the template and
    /// the contact. Also on when SOURCE_DATE_EPOCH is set.
    #[arg(long)]
    pub deterministic: bool,
    /// Write into a non-empty output folder (files of the same name are
    /// replaced; others are left).
    #[arg(long)]
    pub force: bool,
    /// Print nothing but errors.
    #[arg(long, short)]
    pub quiet: bool,
    /// Write nothing: render in memory and compare with the letters in DIR
    /// (a snapshot made with --deterministic). Prints a diff of each changed
    /// letter's decoded headers, text and HTML, lists letters added and
    /// removed, and exits with 4 when anything differs. Needs
    /// --deterministic or SOURCE_DATE_EPOCH.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["out", "force"])]
    pub check: Option<PathBuf>,
    /// With --check: after the comparison, rewrite DIR with the fresh render
    /// (and remove the letters no longer rendered); exits 0.
    #[arg(long, requires = "check")]
    pub update: bool,
    /// Also render the contacts a --suppress file lists (they are left
    /// out by default, and named on stderr).
    #[arg(long)]
    pub include_suppressed: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub input: Input,
    /// The port on 127.0.0.1 (0 picks a free one). Only this machine can
    /// connect.
    #[arg(long, default_value_t = 8025)]
    pub port: u16,
    /// Date from SOURCE_DATE_EPOCH (0 if unset) and Message-IDs from a hash,
    /// as in `render --deterministic`.
    #[arg(long)]
    pub deterministic: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub input: Input,
    #[command(flatten)]
    pub suppressed: SuppressArgs,
    /// Print the report as JSON on standard output.
    #[arg(long)]
    pub json: bool,
    /// Also score the first good row's letter with SpamAssassin, offline
    /// (`spamassassin -L`), and list each rule that fired with its points
    /// and what in the template causes it. Exit 5 when it scores as spam.
    #[arg(long)]
    pub spam: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("transport").required(true).args(["smtp", "sendmail"])))]
pub struct SendArgs {
    #[command(flatten)]
    pub input: Input,
    #[command(flatten)]
    pub suppressed: SuppressArgs,
    /// The server: smtp://host:port (plain, for test servers on this
    /// machine), smtp://host:port?tls=required (STARTTLS), smtps://host:465
    /// (implicit TLS). An AUTH user may stand before the host (user@host);
    /// the password comes from LETTERPRESS_SMTP_PASSWORD or a prompt.
    #[arg(long, value_name = "URL")]
    pub smtp: Option<String>,
    /// Hand each letter to the local mail server instead of SMTP: runs
    /// `PATH -i -f FROM -- RCPT` per letter (Postfix, Exim and OpenSMTPD
    /// all ship one); the server's queue then owns retries. PATH defaults
    /// to /usr/sbin/sendmail; another is given as --sendmail=PATH.
    #[arg(
        long,
        value_name = "PATH",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "/usr/sbin/sendmail",
        conflicts_with_all = ["smtp_user", "smtp_ca", "helo"]
    )]
    pub sendmail: Option<PathBuf>,
    /// The AUTH user (instead of user@ in the URL).
    #[arg(long, value_name = "USER")]
    pub smtp_user: Option<String>,
    /// Also trust this CA certificate (PEM), e.g. a test server's.
    #[arg(long, value_name = "FILE")]
    pub smtp_ca: Option<PathBuf>,
    /// The name to give in EHLO (default: the From domain).
    #[arg(long, value_name = "NAME")]
    pub helo: Option<String>,
    /// Connections to the server at once, each reused across messages.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub concurrency: usize,
    /// At most this many messages per second or minute: 100/s, 600/m.
    #[arg(long, value_name = "R")]
    pub rate: Option<String>,
    /// How often a 4xx reply is retried (on a fresh connection, with
    /// exponential backoff and jitter) before the recipient counts as failed.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub retries: u32,
    /// The first backoff before a retry; it doubles each time: 1s, 500ms.
    #[arg(long, default_value = "1s", value_name = "DURATION")]
    pub retry_delay: String,
    /// The limit on every SMTP step (connect, greeting, each command, the
    /// message): 30s, 500ms.
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    pub timeout: String,
    /// The journal (default: next to the contact list, named after the
    /// template: TEMPLATE.journal.sqlite, or TEMPLATE.rehearsal.journal.sqlite
    /// with --redirect-to). postgres://USER@HOST:PORT/DB shares the
    /// campaign with every `send` given the same URL (password from
    /// PGPASSWORD or ~/.pgpass; TLS as libpq's `?sslmode=` says, up to
    /// `verify-full` with `&sslrootcert=CA.pem`). Also
    /// from LETTERPRESS_JOURNAL.
    #[arg(long, value_name = "PATH|URL")]
    pub journal: Option<PathBuf>,
    /// With a PostgreSQL journal: how long this process's claims last
    /// without a heartbeat (it renews them every third of that). Past it,
    /// the other workers take back what it claimed, and what it had in
    /// flight is ambiguous.
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    pub lease: String,
    /// fsync the journal on every write (safe against power loss, slower);
    /// the default is safe against the process dying.
    #[arg(long)]
    pub journal_sync: bool,
    /// When another send is using the journal, wait for it to finish
    /// instead of stopping (the letters it sent are then skipped).
    #[arg(long)]
    pub wait: bool,
    /// Also send to recipients whose earlier delivery is ambiguous (the
    /// server may already have the letter).
    #[arg(long)]
    pub resend_ambiguous: bool,
    /// Also send to recipients that failed in an earlier run.
    #[arg(long)]
    pub retry_failed: bool,
    /// Go on although the template or a recipient's data changed since the
    /// journal was written (accepted recipients are still never resent).
    #[arg(long)]
    pub force: bool,
    /// Write the rows that failed (with the SMTP code and reply) to this
    /// CSV file at the end, to fix and send again.
    #[arg(long, value_name = "FILE")]
    pub failed_csv: Option<PathBuf>,
    /// Do everything (render, sign, plan against the journal) but talk to
    /// the server; the journal is not changed.
    #[arg(long)]
    pub dry_run: bool,
    /// Send to the first N recipients not yet done (a canary).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Rehearsal: every message goes to this one address (headers
    /// unchanged, envelope recipient replaced), with its own journal.
    #[arg(long, value_name = "ADDRESS")]
    pub redirect_to: Option<String>,
    /// Sign with this DKIM private key (PEM RSA or Ed25519, or a base64
    /// Ed25519 seed); needs --dkim-selector and --dkim-domain.
    #[arg(long, value_name = "FILE", requires_all = ["dkim_selector", "dkim_domain"])]
    pub dkim_key: Option<PathBuf>,
    #[arg(long, value_name = "S", requires = "dkim_key")]
    pub dkim_selector: Option<String>,
    #[arg(long, value_name = "D", requires = "dkim_key")]
    pub dkim_domain: Option<String>,
    /// Date from SOURCE_DATE_EPOCH (0 if unset), Message-ID from a hash, as
    /// in render.
    #[arg(long)]
    pub deterministic: bool,
    /// Print nothing but errors (and failures).
    #[arg(long, short)]
    pub quiet: bool,
    /// Print the summary as JSON on standard output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The journal of a send: a file, or postgres://USER@HOST:PORT/DB.
    pub journal: PathBuf,
    /// Write the failed rows with the SMTP code and reply to this CSV file.
    #[arg(long, value_name = "FILE")]
    pub failed_csv: Option<PathBuf>,
    /// Print the counts as JSON.
    #[arg(long)]
    pub json: bool,
}
