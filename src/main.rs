//! The `letterpress` binary: parse the command line, run the library, exit
//! with its code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = letterpress::cli::args::Cli::parse();
    let env = letterpress::cli::config::Env::read();
    ExitCode::from(letterpress::cli::commands::main(cli, &env))
}
