//! A validated configuration, built once from the command line and the
//! environment. This is the only module that reads the environment
//! (`SOURCE_DATE_EPOCH`, `NO_COLOR`, whether stderr is a terminal, the SMTP
//! password in `LETTERPRESS_SMTP_PASSWORD`).

use std::io::IsTerminal;
use std::path::PathBuf;

use crate::cli::args::{
    BouncesArgs, CheckArgs, Input, RenderArgs, SendArgs, ServeArgs, StatusArgs, SuppressArgs,
};
use crate::compose::fidelity::RemoteFonts;
use crate::compose::recipients::Limits;
use crate::compose::suppress::Suppressions;
use crate::deliver::run::Clock;
use crate::deliver::sink::Formats;
use crate::error::{Error, Result};

pub use crate::secret::Secret;

/// The variable the SMTP password is read from.
pub const PASSWORD_VAR: &str = "LETTERPRESS_SMTP_PASSWORD";

/// What the environment says, read once.
#[derive(Debug, Clone, Default)]
pub struct Env {
    pub source_date_epoch: Option<String>,
    pub stderr_is_terminal: bool,
    pub no_color: bool,
    /// `LETTERPRESS_SMTP_PASSWORD`, when set and not empty.
    pub smtp_password: Option<Secret>,
    /// Whether a password prompt can be shown (standard input is a terminal).
    pub stdin_is_terminal: bool,
    /// `LETTERPRESS_JOURNAL`: the journal when --journal is not given.
    pub journal: Option<String>,
    /// `PGPASSWORD`, for a PostgreSQL journal.
    pub pg_password: Option<Secret>,
    /// `PGPASSFILE`, or `~/.pgpass`.
    pub pg_passfile: Option<PathBuf>,
    /// `PGSSLMODE`: the `sslmode` of a URL that gives none.
    pub pg_sslmode: Option<String>,
    /// `PGSSLROOTCERT`, or `~/.postgresql/root.crt`: the CAs that sign the
    /// database's certificate, unless the URL names them (`sslrootcert`).
    pub pg_sslrootcert: Option<PathBuf>,
}

impl Env {
    pub fn read() -> Env {
        Env {
            source_date_epoch: std::env::var("SOURCE_DATE_EPOCH").ok(),
            stderr_is_terminal: std::io::stderr().is_terminal(),
            no_color: std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
            smtp_password: std::env::var(PASSWORD_VAR)
                .ok()
                .filter(|p| !p.is_empty())
                .map(Secret::new),
            stdin_is_terminal: std::io::stdin().is_terminal(),
            journal: std::env::var("LETTERPRESS_JOURNAL")
                .ok()
                .filter(|j| !j.is_empty()),
            pg_password: std::env::var("PGPASSWORD")
                .ok()
                .filter(|p| !p.is_empty())
                .map(Secret::new),
            pg_passfile: std::env::var_os("PGPASSFILE")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pgpass"))),
            pg_sslmode: std::env::var("PGSSLMODE").ok().filter(|m| !m.is_empty()),
            pg_sslrootcert: std::env::var_os("PGSSLROOTCERT")
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .or_else(|| {
                    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".postgresql/root.crt"))
                }),
        }
    }
}

pub use crate::compose::campaign::Source;

/// `letterpress render`, validated.
#[derive(Debug, Clone)]
pub struct RenderConfig {
    pub source: Source,
    pub out: PathBuf,
    pub formats: Formats,
    pub clock: Clock,
    pub force: bool,
    pub quiet: bool,
    /// Draw a progress bar (stderr is a terminal and not --quiet).
    pub progress: bool,
    /// `--check DIR`: compare with this snapshot folder instead of writing.
    pub check: Option<PathBuf>,
    /// `--update`: rewrite the snapshot folder after comparing.
    pub update: bool,
    /// `--suppress FILE`s, loaded.
    pub suppress: std::sync::Arc<Suppressions>,
    /// `--include-suppressed`.
    pub include_suppressed: bool,
}

/// `letterpress check`, validated.
#[derive(Debug, Clone)]
pub struct CheckConfig {
    pub source: Source,
    pub json: bool,
    /// `--spam`: score a sample letter with SpamAssassin.
    pub spam: bool,
    /// `--suppress FILE`s, loaded.
    pub suppress: Suppressions,
}

impl CheckConfig {
    pub fn new(args: &CheckArgs) -> Result<CheckConfig> {
        Ok(CheckConfig {
            source: Source::from_args(&args.input)?,
            json: args.json,
            spam: args.spam,
            suppress: suppressions(&args.suppressed)?,
        })
    }
}

/// Reads the `--suppress` files.
fn suppressions(args: &SuppressArgs) -> Result<Suppressions> {
    if args.soft_bounce_limit == 0 {
        return Err(Error::Usage("--soft-bounce-limit takes 1 or more".into()));
    }
    Suppressions::load(&args.suppress, args.soft_bounce_limit)
}

/// `letterpress status`, validated.
#[derive(Debug, Clone)]
pub struct StatusConfig {
    pub journal: crate::deliver::journal::Location,
    /// `--failed-csv FILE`.
    pub failed_csv: Option<PathBuf>,
    pub json: bool,
}

/// A journal named on the command line: a PostgreSQL URL or a file.
pub fn location(
    given: &std::path::Path,
    env: &Env,
    lease: std::time::Duration,
) -> crate::deliver::journal::Location {
    use crate::deliver::journal::{postgres::Target, Location};
    match given.to_str() {
        Some(url) if Location::is_postgres_url(url) => Location::Postgres(Target {
            url: url.to_string(),
            password: env.pg_password.clone(),
            passfile: env.pg_passfile.clone(),
            sslmode: env.pg_sslmode.clone(),
            sslrootcert: env.pg_sslrootcert.clone(),
            lease,
        }),
        _ => Location::Sqlite(given.to_path_buf()),
    }
}

/// The lease of a worker unless `--lease` says otherwise.
pub const LEASE: std::time::Duration = std::time::Duration::from_secs(30);

impl StatusConfig {
    pub fn new(args: &StatusArgs, env: &Env) -> StatusConfig {
        StatusConfig {
            journal: location(&args.journal, env, LEASE),
            failed_csv: args.failed_csv.clone(),
            json: args.json,
        }
    }
}

/// `letterpress bounces`, validated.
#[derive(Debug, Clone)]
pub struct BouncesConfig {
    pub mailbox: PathBuf,
    pub journal: crate::deliver::journal::Location,
    pub suppress_out: Option<PathBuf>,
    pub soft_bounce_limit: usize,
    pub wait: bool,
    pub json: bool,
}

impl BouncesConfig {
    pub fn new(args: &BouncesArgs, env: &Env) -> Result<BouncesConfig> {
        if args.soft_bounce_limit == 0 {
            return Err(Error::Usage("--soft-bounce-limit takes 1 or more".into()));
        }
        Ok(BouncesConfig {
            mailbox: args.mailbox.clone(),
            journal: location(&args.journal, env, LEASE),
            suppress_out: args.suppress_out.clone(),
            soft_bounce_limit: args.soft_bounce_limit,
            wait: args.wait,
            json: args.json,
        })
    }
}

/// `letterpress serve`, validated.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub source: Source,
    pub port: u16,
    pub clock: Clock,
}

/// The clock a run uses: `SOURCE_DATE_EPOCH` wins, then `--deterministic`.
fn clock(env: &Env, deterministic: bool) -> Result<Clock> {
    Ok(match (&env.source_date_epoch, deterministic) {
        (Some(epoch), _) => Clock::Fixed(epoch.trim().parse().map_err(|_| {
            Error::Usage(format!(
                "SOURCE_DATE_EPOCH must be a whole number of seconds, not `{epoch}`"
            ))
        })?),
        (None, true) => Clock::Fixed(0),
        (None, false) => Clock::System,
    })
}

impl ServeConfig {
    pub fn new(args: &ServeArgs, env: &Env) -> Result<ServeConfig> {
        let source = Source::from_args(&args.input)?;
        if source.recipients == "-" {
            return Err(Error::Usage(
                "serve watches the contacts file for changes, so it needs a file, not `-`".into(),
            ));
        }
        Ok(ServeConfig {
            source,
            port: args.port,
            clock: clock(env, args.deterministic)?,
        })
    }
}

impl Source {
    pub fn from_args(input: &Input) -> Result<Source> {
        let delimiter = match input.delimiter.as_deref() {
            None => None,
            Some("tab" | "\\t" | "\t") => Some(b'\t'),
            Some(d) if d.len() == 1 && d.is_ascii() => Some(d.as_bytes()[0]),
            Some(d) => {
                return Err(Error::Usage(format!(
                    "--delimiter takes one ASCII character or `tab`, not `{d}`"
                )))
            }
        };
        Ok(Source {
            template: input.template.clone(),
            recipients: input.recipients.clone(),
            delimiter,
            limits: Limits {
                value: input.max_value_size,
                header: input.max_header_size,
                message: input.max_message_size,
            },
            attach: crate::compose::attach::Options {
                missing: input.missing_attachment,
                inline: input.inline_images,
            },
            fonts: if input.no_remote_fonts {
                RemoteFonts::Off
            } else {
                RemoteFonts::Link
            },
            lang: crate::compose::campaign::LangColumn {
                name: input.lang_column.clone(),
            },
        })
    }
}

impl RenderConfig {
    pub fn new(args: &RenderArgs, env: &Env) -> Result<RenderConfig> {
        let formats = args.format.parse().map_err(Error::Usage)?;
        let clock = clock(env, args.deterministic)?;
        if args.check.is_some() && clock == Clock::System {
            return Err(Error::Usage(
                "--check needs --deterministic (or SOURCE_DATE_EPOCH): otherwise every \
                 Date and Message-ID differs from the snapshot"
                    .into(),
            ));
        }
        Ok(RenderConfig {
            source: Source::from_args(&args.input)?,
            out: args.out.clone(),
            formats,
            clock,
            force: args.force,
            quiet: args.quiet,
            progress: env.stderr_is_terminal && !args.quiet,
            check: args.check.clone(),
            update: args.update,
            suppress: std::sync::Arc::new(suppressions(&args.suppressed)?),
            include_suppressed: args.include_suppressed,
        })
    }
}

/// `letterpress send`, validated.
#[derive(Debug)]
pub struct SendConfig {
    pub source: Source,
    /// Where the letters go (not used by a dry run).
    pub transport: Transport,
    pub journal: crate::deliver::journal::Location,
    pub journal_sync: bool,
    /// `--wait`: wait for another send that owns the journal.
    pub journal_wait: bool,
    pub failed_csv: Option<PathBuf>,
    pub dry_run: bool,
    /// The DKIM key, loaded.
    pub signer: Option<crate::deliver::dkim::Signer>,
    pub options: crate::deliver::send::Options,
    pub quiet: bool,
    pub json: bool,
    /// Draw a progress bar (stderr is a terminal, not --quiet, not --json).
    pub progress: bool,
}

/// Where `send` hands the letters over, with everything loaded: the
/// password (from the environment or the prompt), the CA file.
#[derive(Debug)]
pub enum Transport {
    /// An SMTP server.
    Smtp {
        server: crate::deliver::smtp::Server,
        user: Option<String>,
        password: Option<Secret>,
        /// The extra CA, PEM.
        ca: Option<Vec<u8>>,
        /// The EHLO name (default: the From domain).
        helo: Option<String>,
        timeout: std::time::Duration,
    },
    /// The local MTA's `sendmail` program.
    Sendmail {
        path: PathBuf,
        timeout: std::time::Duration,
    },
}

/// The SMTP password: from the environment, else asked for on a terminal.
/// None without a user, or in a dry run (nothing connects).
fn password(
    user: Option<&str>,
    server: &crate::deliver::smtp::Server,
    env: &Env,
    dry_run: bool,
) -> Result<Option<Secret>> {
    match (user, &env.smtp_password) {
        (None, _) => Ok(None),
        _ if dry_run => Ok(None),
        (Some(_), Some(p)) => Ok(Some(p.clone())),
        (Some(user), None) if env.stdin_is_terminal => {
            let p = rpassword::prompt_password(format!(
                "SMTP password for {user} at {}: ",
                server.host
            ))
            .map_err(|e| Error::Usage(format!("cannot read the password: {e}")))?;
            Ok(Some(Secret::new(p)))
        }
        (Some(user), None) => Err(Error::Usage(format!(
            "the SMTP user `{user}` needs a password: set {PASSWORD_VAR} (standard input is \
             not a terminal, so letterpress cannot ask)"
        ))),
    }
}

/// Reads a file the configuration names.
fn read_file(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Read {
        path: path.into(),
        source,
    })
}

/// `30s`, `500ms`, `2m`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> std::result::Result<std::time::Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: f64 = num
        .trim()
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite() && *n >= 0.0)
        .ok_or_else(|| format!("`{s}` is not a duration; write 30s, 500ms or 2m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("`{s}`: unknown unit `{unit}`; use ms, s or m")),
    };
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// `100/s`, `600/m`, `5000/h` (or a bare number per second) as the time
/// between two messages.
pub fn parse_rate(s: &str) -> std::result::Result<std::time::Duration, String> {
    let (n, per) = s.split_once('/').unwrap_or((s, "s"));
    let n: f64 = n
        .trim()
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite() && *n > 0.0)
        .ok_or_else(|| format!("--rate `{s}`: write a positive number per s, m or h: 100/s"))?;
    let per = match per.trim() {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "--rate `{s}`: unknown unit `{other}`; use s, m or h"
            ))
        }
    };
    Ok(std::time::Duration::from_secs_f64(per / n))
}

impl SendConfig {
    pub fn new(args: &SendArgs, env: &Env) -> Result<SendConfig> {
        let usage = Error::Usage;
        let source = Source::from_args(&args.input)?;
        if args.concurrency == 0 || args.concurrency > 256 {
            return Err(usage("--concurrency takes 1 to 256".into()));
        }
        if args.limit == Some(0) {
            return Err(usage("--limit takes 1 or more".into()));
        }
        let interval = args
            .rate
            .as_deref()
            .map(parse_rate)
            .transpose()
            .map_err(usage)?;
        let timeout = parse_duration(&args.timeout).map_err(|m| usage(format!("--timeout {m}")))?;
        if timeout.is_zero() {
            return Err(usage("--timeout must be more than 0".into()));
        }
        let retry_delay =
            parse_duration(&args.retry_delay).map_err(|m| usage(format!("--retry-delay {m}")))?;
        if let Some(r) = &args.redirect_to {
            crate::compose::message::validate_address(r)
                .map_err(|m| usage(format!("--redirect-to: {m}")))?;
        }
        let lease = parse_duration(&args.lease).map_err(|m| usage(format!("--lease {m}")))?;
        if lease < std::time::Duration::from_millis(500) {
            return Err(usage("--lease takes at least 500ms".into()));
        }
        let given = args
            .journal
            .clone()
            .or_else(|| env.journal.as_ref().map(PathBuf::from));
        let journal = match given {
            Some(p) => p,
            None => {
                let stem = source
                    .template
                    .file_stem()
                    .map_or("campaign".into(), |s| s.to_string_lossy().into_owned());
                let dir = if source.recipients == "-" {
                    PathBuf::from(".")
                } else {
                    std::path::Path::new(&source.recipients)
                        .parent()
                        .map(PathBuf::from)
                        .unwrap_or_default()
                };
                let kind = if args.redirect_to.is_some() {
                    "rehearsal.journal"
                } else {
                    "journal"
                };
                dir.join(format!("{stem}.{kind}.sqlite"))
            }
        };
        let journal = location(&journal, env, lease);
        let transport = match (&args.smtp, &args.sendmail) {
            (Some(url), None) => {
                let server = crate::deliver::smtp::Server::parse(url).map_err(usage)?;
                let user = match (&args.smtp_user, &server.user) {
                    (Some(a), Some(b)) if a != b => {
                        return Err(usage(format!(
                            "--smtp-user `{a}` and the user `{b}` in --smtp disagree; give one"
                        )))
                    }
                    (Some(u), _) | (None, Some(u)) => Some(u.clone()),
                    (None, None) => None,
                };
                let password = password(user.as_deref(), &server, env, args.dry_run)?;
                let ca = match &args.smtp_ca {
                    Some(p) if !args.dry_run => Some(read_file(p)?),
                    _ => None,
                };
                Transport::Smtp {
                    server,
                    user,
                    password,
                    ca,
                    helo: args.helo.clone(),
                    timeout,
                }
            }
            (None, Some(path)) => Transport::Sendmail {
                path: path.clone(),
                timeout,
            },
            _ => return Err(usage("give one of --smtp URL and --sendmail [PATH]".into())),
        };
        let signer = match (&args.dkim_key, &args.dkim_selector, &args.dkim_domain) {
            (Some(path), Some(selector), Some(domain)) => {
                let text = String::from_utf8_lossy(&read_file(path)?).into_owned();
                Some(
                    crate::deliver::dkim::Signer::new(&text, selector, domain).map_err(
                        |message| Error::Dkim {
                            path: path.clone(),
                            message,
                        },
                    )?,
                )
            }
            _ => None,
        };
        Ok(SendConfig {
            source,
            transport,
            journal,
            journal_sync: args.journal_sync,
            journal_wait: args.wait,
            failed_csv: args.failed_csv.clone(),
            dry_run: args.dry_run,
            signer,
            options: crate::deliver::send::Options {
                concurrency: args.concurrency,
                interval,
                retries: args.retries,
                retry_delay,
                resend_ambiguous: args.resend_ambiguous,
                retry_failed: args.retry_failed,
                force: args.force,
                limit: args.limit,
                redirect_to: args.redirect_to.clone(),
                clock: clock(env, args.deterministic)?,
                dry_run: args.dry_run,
                suppress: std::sync::Arc::new(suppressions(&args.suppressed)?),
            },
            quiet: args.quiet,
            json: args.json,
            progress: env.stderr_is_terminal && !args.quiet && !args.json,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::journal::Location;
    use clap::Parser;

    fn render_args(argv: &[&str]) -> RenderArgs {
        match crate::cli::args::Cli::parse_from(argv).command {
            crate::cli::args::Command::Render(a) => a,
            _ => unreachable!(),
        }
    }

    #[test]
    fn source_date_epoch_makes_the_run_deterministic() {
        let a = render_args(&["lp", "render", "t.mjml", "r.csv"]);
        let env = Env {
            source_date_epoch: Some("1611100800".into()),
            ..Env::default()
        };
        assert_eq!(
            RenderConfig::new(&a, &env).unwrap().clock,
            Clock::Fixed(1611100800)
        );
        assert_eq!(
            RenderConfig::new(&a, &Env::default()).unwrap().clock,
            Clock::System
        );
        let d = render_args(&["lp", "render", "--deterministic", "t.mjml", "r.csv"]);
        assert_eq!(
            RenderConfig::new(&d, &Env::default()).unwrap().clock,
            Clock::Fixed(0)
        );
        let bad = Env {
            source_date_epoch: Some("yesterday".into()),
            ..Env::default()
        };
        assert!(RenderConfig::new(&a, &bad).is_err());
    }

    #[test]
    fn check_needs_a_fixed_clock() {
        let a = render_args(&["lp", "render", "--check", "snap", "t", "r"]);
        let e = RenderConfig::new(&a, &Env::default()).unwrap_err();
        assert!(e.to_string().contains("--deterministic"), "{e}");
        let d = render_args(&["lp", "render", "--deterministic", "--check", "s", "t", "r"]);
        let c = RenderConfig::new(&d, &Env::default()).unwrap();
        assert_eq!(c.check.as_deref(), Some(std::path::Path::new("s")));
    }

    #[test]
    fn delimiter_names() {
        let a = render_args(&["lp", "render", "--delimiter", "tab", "t", "r"]);
        assert_eq!(Source::from_args(&a.input).unwrap().delimiter, Some(b'\t'));
        let a = render_args(&["lp", "render", "--delimiter", ";;", "t", "r"]);
        assert!(Source::from_args(&a.input).is_err());
    }

    fn send_args(argv: &[&str]) -> SendArgs {
        match crate::cli::args::Cli::parse_from(argv).command {
            crate::cli::args::Command::Send(a) => *a,
            _ => unreachable!(),
        }
    }

    #[test]
    fn send_config_defaults_and_password() {
        let a = send_args(&[
            "lp",
            "send",
            "t/news.mjml",
            "lists/r.csv",
            "--smtp",
            "smtp://127.0.0.1:2525",
        ]);
        let env = Env {
            smtp_password: Some(Secret::new("hunter2".into())),
            ..Env::default()
        };
        let c = SendConfig::new(&a, &env).unwrap();
        assert_eq!(
            c.journal,
            Location::Sqlite(PathBuf::from("lists/news.journal.sqlite"))
        );
        assert_eq!(c.options.concurrency, 4);
        assert_eq!(c.options.retries, 5);
        assert!(!format!("{c:?}").contains("hunter2"));
        let a = send_args(&[
            "lp",
            "send",
            "t.mjml",
            "r.csv",
            "--smtp",
            "smtp://h",
            "--redirect-to",
            "me@x.org",
        ]);
        assert_eq!(
            SendConfig::new(&a, &Env::default()).unwrap().journal,
            Location::Sqlite(PathBuf::from("t.rehearsal.journal.sqlite"))
        );
    }

    #[test]
    fn durations_and_rates() {
        assert_eq!(parse_duration("500ms").unwrap().as_millis(), 500);
        assert_eq!(parse_duration("2").unwrap().as_secs(), 2);
        assert_eq!(parse_duration("1m").unwrap().as_secs(), 60);
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_rate("100/s").unwrap().as_millis(), 10);
        assert_eq!(parse_rate("600/m").unwrap().as_millis(), 100);
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("5/d").is_err());
    }
}
