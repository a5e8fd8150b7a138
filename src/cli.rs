//! The command line as clap sees it: flags only, no behaviour. [`crate::config`]
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
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    #[command(flatten)]
    pub input: Input,
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
    /// Print the report as JSON on standard output.
    #[arg(long)]
    pub json: bool,
}
