//! One type for every secret the agent holds (the webhook token, LLM API keys), end to end from
//! the environment to the request that sends it.
//!
//! Built on `secrecy` (the value is zeroed when dropped and only [`Secret::expose`] reads it) and
//! `subtle` (constant-time comparison). `Debug` and `Display` never show it.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    /// A key from configuration, trimmed; `None` when blank, so that `GEMINI_API_KEY=` is unset.
    pub fn new(key: impl Into<String>) -> Option<Self> {
        let key = key.into();
        let trimmed = key.trim();
        (!trimmed.is_empty()).then(|| Secret(SecretString::from(trimmed)))
    }

    /// Exactly as given (a bearer token is compared byte for byte); `None` when empty.
    pub fn exact(value: impl Into<String>) -> Option<Self> {
        let value = value.into();
        (!value.is_empty()).then(|| Secret(SecretString::from(value)))
    }

    /// The value, for the one place that sends it (a header). Never log what this returns.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// Removes the secret from text that may have echoed it (an error body, a transport error).
    pub fn scrub(&self, text: &str) -> String {
        text.replace(self.expose(), "[redacted]")
    }

    /// Constant-time comparison, so a token cannot be guessed byte by byte from response times.
    /// (`subtle` returns early on a length mismatch: the length is not secret, the bytes are.)
    pub fn matches(&self, candidate: &str) -> bool {
        self.expose().as_bytes().ct_eq(candidate.as_bytes()).into()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn secrets_are_redacted_in_debug_and_display() {
        let key = Secret::new("AIzaSecret123").unwrap();
        assert_eq!(format!("{key:?}"), "Secret([redacted])");
        assert_eq!(format!("{key}"), "[redacted]");
        assert_eq!(
            format!("{:?}", Some(key.clone())),
            "Some(Secret([redacted]))"
        );
        assert_eq!(key.scrub("bad key AIzaSecret123!"), "bad key [redacted]!");
        assert!(Secret::new("  ").is_none());
        assert_eq!(Secret::new(" k \n").unwrap().expose(), "k");
    }

    #[test]
    fn tokens_compare_exactly() {
        let s = Secret::exact("hunter2").unwrap();
        assert!(
            s.matches("hunter2")
                && !s.matches("hunter")
                && !s.matches("hunter22")
                && !s.matches("hunter3")
                && !s.matches("")
        );
        assert!(Secret::exact("").is_none());
        assert_eq!(
            Secret::exact(" t ").unwrap().expose(),
            " t ",
            "a token is not trimmed"
        );
    }
}
