//! Previewing letters before they go out: the gallery page and its data
//! ([`gallery`]), the live preview server ([`serve`]) and the snapshot
//! comparison of `render --check` ([`snapshot`]), and a sample letter's
//! SpamAssassin score for `check --spam` ([`spam`]).

pub mod gallery;
pub mod serve;
pub mod snapshot;
pub mod spam;
