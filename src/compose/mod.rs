//! Composing letters: the contact list ([`recipients`]), the template file
//! ([`template`]), the compiled campaign and its per-recipient merge
//! ([`campaign`], with the [`text`] part, and [`fidelity`], which corrects
//! mrml's deviations from MJML), the MIME message ([`message`]),
//! Date and Message-ID ([`stamp`]), and the checks of a whole list
//! ([`check`]); attachments and inline images ([`attach`], [`inline`]) and
//! the MIME tree that carries them ([`mime_tree`]); the suppression lists
//! ([`suppress`]). Nothing here sends,
//! writes files or reads the clock.

pub mod attach;
pub mod bidi;
pub mod build;
pub mod campaign;
pub mod check;
pub mod fidelity;
pub mod inline;
pub mod lang;
pub(crate) mod lint;
pub mod message;
pub mod mime_tree;
mod pieces;
mod preheader;
pub mod recipients;
pub mod rtl;
pub mod stamp;
pub mod suppress;
pub mod template;
pub mod text;
pub mod variant;

#[cfg(test)]
mod hostile;
