//! One type for every secret the agent holds (the webhook token, LLM API keys): `Debug` and
//! `Display` never show it, and only the code that sends it calls [`Secret::expose`].

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A key from configuration, trimmed; `None` when blank, so that `GEMINI_API_KEY=` is unset.
    pub fn new(key: impl Into<String>) -> Option<Self> {
        let key = key.into().trim().to_string();
        (!key.is_empty()).then_some(Secret(key))
    }

    /// Exactly as given (a bearer token is compared byte for byte); `None` when empty.
    pub fn exact(value: impl Into<String>) -> Option<Self> {
        let value = value.into();
        (!value.is_empty()).then_some(Secret(value))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Removes the secret from text that may have echoed it (an error body, a transport error).
    pub fn scrub(&self, text: &str) -> String {
        text.replace(&self.0, "[redacted]")
    }

    /// Constant-time comparison, so a token cannot be guessed byte by byte from response times.
    pub fn matches(&self, candidate: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), candidate.as_bytes());
        let mut diff = a.len() ^ b.len();
        for i in 0..a.len().max(b.len()) {
            diff |= (a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0)) as usize;
        }
        diff == 0
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
        assert_eq!(key.scrub("bad key AIzaSecret123!"), "bad key [redacted]!");
        assert!(Secret::new("  ").is_none());
    }

    #[test]
    fn tokens_compare_exactly() {
        let s = Secret::exact("hunter2").unwrap();
        assert!(
            s.matches("hunter2")
                && !s.matches("hunter")
                && !s.matches("hunter22")
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
