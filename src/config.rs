//! A validated configuration, built once from the command line and the
//! environment. This is the only module that reads the environment
//! (`SOURCE_DATE_EPOCH`, `NO_COLOR`, whether stderr is a terminal).

use std::io::IsTerminal;
use std::path::PathBuf;

use crate::cli::{Input, RenderArgs, ServeArgs};
use crate::error::{Error, Result};
use crate::run::Clock;
use crate::sink::Formats;

/// What the environment says, read once.
#[derive(Debug, Clone, Default)]
pub struct Env {
    pub source_date_epoch: Option<String>,
    pub stderr_is_terminal: bool,
    pub no_color: bool,
}

impl Env {
    pub fn read() -> Env {
        Env {
            source_date_epoch: std::env::var("SOURCE_DATE_EPOCH").ok(),
            stderr_is_terminal: std::io::stderr().is_terminal(),
            no_color: std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
        }
    }
}

/// The input of any command.
#[derive(Debug, Clone)]
pub struct Source {
    pub template: PathBuf,
    pub recipients: String,
    pub delimiter: Option<u8>,
}

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
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn render_args(argv: &[&str]) -> RenderArgs {
        match crate::cli::Cli::parse_from(argv).command {
            crate::cli::Command::Render(a) => a,
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
}
