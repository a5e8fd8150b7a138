//! The command line: clap's flags ([`args`]), one validated configuration
//! per command ([`config`], the only reader of the environment), and the
//! commands that run the library ([`commands`]).

pub mod args;
pub mod commands;
pub mod config;
