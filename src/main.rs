//! The `letterpress` binary: parse the command line, run the library, exit
//! with its code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = letterpress::cli::Cli::parse();
    let env = letterpress::config::Env::read();
    ExitCode::from(letterpress::commands::main(cli, &env))
}
