//! A redacting wrapper for secrets (the SMTP password): defined here, below
//! both the configuration that reads it and the SMTP sink that uses it.

/// A secret (the SMTP password) that never shows in `Debug`, logs or error
/// messages: only [`Secret::expose`] gives the text, at the one place that
/// needs it (AUTH).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Secret {
        Secret(s)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}
