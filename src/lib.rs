//! letterpress: personalized letters from one MJML template and a CSV of
//! contacts, as files to review or (later) sent over SMTP.
//!
//! Data flows one way, and a module uses only those before it:
//! [`recipients`] (CSV) and [`template`] -> [`campaign`] (render: MJML once,
//! Handlebars per recipient, [`text`] part) -> [`message`] (MIME) ->
//! [`sink`] (files) -> [`run`] (the pipeline) -> [`check`] and
//! [`commands`]. `campaign` and `message` do no I/O and never read the
//! clock. After `run`: [`gallery`] (the preview page and its data),
//! [`snapshot`] (`render --check`) and [`serve`] (the live preview).
//! Sending: [`message`] -> [`dkim`] (signing) -> [`smtp`] (the SMTP
//! sink, the only home of tokio) with [`journal`] (SQLite) -> [`send`]
//! (plan, then deliver).

pub mod campaign;
pub mod check;
pub mod cli;
pub mod commands;
pub mod config;
pub mod dkim;
pub mod error;
pub mod exit;
pub mod gallery;
pub mod journal;
pub mod message;
pub mod recipients;
pub mod report;
pub mod run;
pub mod send;
pub mod serve;
pub mod sink;
pub mod smtp;
pub mod snapshot;
pub mod template;
pub mod text;

pub use error::{Error, Result};
