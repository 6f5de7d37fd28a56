//! The one parser of "retry after this long" hints: HTTP `Retry-After` headers (notification
//! receivers, LLM providers), Gemini's `RetryInfo.retryDelay` and OpenAI's "try again in 1.5s".
//! Every such hint comes from outside and is clamped here: `Retry-After: 1e20` once panicked
//! `Duration::from_secs_f64` in the notifier; a hint is now at most [`MAX`] and never panics.

use std::time::Duration;

/// The longest wait any hint can ask for. Callers have their own, shorter, limits; this only
/// keeps the arithmetic sound.
pub const MAX: Duration = Duration::from_secs(86_400);

/// Seconds (fractions allowed) as a duration: negative, NaN and infinite values are refused,
/// anything above [`MAX`] is [`MAX`].
pub fn from_secs(secs: f64) -> Option<Duration> {
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    Some(Duration::from_secs_f64(secs.min(MAX.as_secs_f64())))
}

/// An HTTP `Retry-After` value in seconds ("120", "1.5"). The HTTP-date form is not used by the
/// services the agent talks to and is refused (`None`), as is anything else that is not a number.
pub fn parse(header: &str) -> Option<Duration> {
    from_secs(header.trim().parse().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_are_clamped_and_never_panic() {
        assert_eq!(parse("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(parse("1e20"), Some(MAX));
        assert_eq!(parse("1e400"), None, "not a finite number");
        for bad in [
            "-1",
            "NaN",
            "inf",
            "",
            "soon",
            "Wed, 21 Oct 2015 07:28:00 GMT",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        assert_eq!(from_secs(f64::MAX), Some(MAX));
        assert_eq!(from_secs(-0.0), Some(Duration::ZERO));
    }
}
