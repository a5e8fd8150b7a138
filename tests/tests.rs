//! The command-line tests: one test binary, one module per command, shared
//! helpers in `common`. They run the real `letterpress` binary.

mod common;
mod servers;

mod attach;
mod bidi;
mod bounces;
mod browser;
mod check;
mod fidelity;
mod gallery;
mod lang;
mod render;
mod send;
mod serve;
mod snapshot;
mod suppress;
