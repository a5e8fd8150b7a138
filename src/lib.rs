//! letterpress: personalized letters from one MJML template and a CSV of
//! contacts, as files to review or sent over SMTP.
//!
//! The folders are the flow, and each uses only those before it:
//! [`compose`] (CSV, template, merge, MIME: no I/O, no clock) ->
//! [`deliver`] (sinks, signing, journal, the render and send pipelines) ->
//! [`preview`] (gallery, live preview, snapshots) -> [`cli`] (flags,
//! validated configuration, commands). Shared below them all: [`error`],
//! [`exit`], [`report`] and [`secret`].

pub mod cli;
pub mod compose;
pub mod deliver;
pub mod error;
pub mod exit;
pub mod preview;
pub mod report;
pub mod secret;

pub use error::{Error, Result};
