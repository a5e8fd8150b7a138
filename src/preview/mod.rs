//! Previewing letters before they go out: the gallery page and its data
//! ([`gallery`]), the live preview server ([`serve`]) and the snapshot
//! comparison of `render --check` ([`snapshot`]).

pub mod gallery;
pub mod serve;
pub mod snapshot;
