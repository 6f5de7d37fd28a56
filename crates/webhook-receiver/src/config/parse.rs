//! Value parsers for numeric and duration settings. Every one has a range, so nothing a user
//! writes can overflow the time arithmetic later (`Instant + d`, `chrono::Duration::from_std`),
//! and every refusal names the environment variable it came from.
//!
//! Durations accept humantime values (`500ms`, `30s`, `10m`, `1h 30m`), as Prometheus users write
//! them. A plain integer keeps the unit in the variable's name (`*_SECS` seconds, `*_MS`
//! milliseconds); a variable without a unit in its name takes a plain `0` only ("off").

use std::ffi::OsStr;
use std::marker::PhantomData;
use std::time::Duration;

use clap::builder::TypedValueParser;
use clap::error::ErrorKind;
use clap::{Arg, Command};

/// The unit of a plain integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BareUnit {
    Secs,
    Millis,
    /// No unit in the variable's name: a number needs one (`20s`), except `0`.
    Required,
}

/// A duration setting within `min..=max`.
#[derive(Debug, Clone, Copy)]
pub struct DurationParser {
    pub bare: BareUnit,
    pub min: Duration,
    pub max: Duration,
}

impl DurationParser {
    /// For `*_SECS` variables: humantime, or whole seconds.
    pub const fn secs(min: Duration, max: Duration) -> Self {
        DurationParser {
            bare: BareUnit::Secs,
            min,
            max,
        }
    }

    /// For `*_MS` variables: humantime, or whole milliseconds.
    pub const fn millis(min: Duration, max: Duration) -> Self {
        DurationParser {
            bare: BareUnit::Millis,
            min,
            max,
        }
    }

    /// For variables without a unit in the name (`DRAIN_TIMEOUT`): humantime only, or `0`.
    pub const fn humantime(min: Duration, max: Duration) -> Self {
        DurationParser {
            bare: BareUnit::Required,
            min,
            max,
        }
    }

    /// The parsed value, or why it is refused (without the variable's name).
    pub fn parse(&self, text: &str) -> Result<Duration, String> {
        let text = text.trim();
        let d = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            let n: u64 = text
                .parse()
                .map_err(|_| format!("{text} is too large (at most {})", show(self.max)))?;
            match self.bare {
                BareUnit::Secs => Duration::from_secs(n),
                BareUnit::Millis => Duration::from_millis(n),
                BareUnit::Required if n == 0 => Duration::ZERO,
                BareUnit::Required => {
                    return Err(format!("{text} needs a unit, e.g. {text}s or {text}ms"))
                }
            }
        } else {
            humantime::parse_duration(text).map_err(|e| {
                format!(
                    "{:?} is not a duration ({e}); write e.g. 500ms, 30s, 10m{}",
                    clip(text),
                    match self.bare {
                        BareUnit::Secs => " or whole seconds",
                        BareUnit::Millis => " or whole milliseconds",
                        BareUnit::Required => "",
                    }
                )
            })?
        };
        if d < self.min || d > self.max {
            let unit = match (text.bytes().all(|b| b.is_ascii_digit()), self.bare) {
                (true, BareUnit::Secs) => " seconds",
                (true, BareUnit::Millis) => " milliseconds",
                _ => "",
            };
            return Err(format!(
                "{}{unit} is out of range: {} to {}",
                clip(text),
                show(self.min),
                show(self.max)
            ));
        }
        Ok(d)
    }
}

/// At most 40 characters of a refused value, for the message.
fn clip(text: &str) -> String {
    text.chars().take(40).collect()
}

fn show(d: Duration) -> String {
    if d.is_zero() {
        "0s".into()
    } else {
        humantime::format_duration(d).to_string()
    }
}

impl TypedValueParser for DurationParser {
    type Value = Duration;

    fn parse_ref(
        &self,
        cmd: &Command,
        arg: Option<&Arg>,
        value: &OsStr,
    ) -> Result<Duration, clap::Error> {
        let text = utf8(cmd, arg, value)?;
        self.parse(text).map_err(|reason| refuse(cmd, arg, &reason))
    }
}

/// An integer setting within `min..=max` (of type `T`: `u32`, `u64`, `usize`).
#[derive(Debug, Clone, Copy)]
pub struct IntParser<T> {
    pub min: u64,
    pub max: u64,
    _t: PhantomData<fn() -> T>,
}

impl<T> IntParser<T> {
    pub const fn new(min: u64, max: u64) -> Self {
        IntParser {
            min,
            max,
            _t: PhantomData,
        }
    }
}

impl<T> IntParser<T>
where
    T: TryFrom<u64>,
{
    pub fn parse(&self, text: &str) -> Result<T, String> {
        let text = text.trim();
        let range = || format!("{} to {}", self.min, self.max);
        let n: u64 = if text.bytes().all(|b| b.is_ascii_digit()) && !text.is_empty() {
            text.parse()
                .map_err(|_| format!("{text} is out of range: {}", range()))?
        } else {
            return Err(format!(
                "{:?} is not a whole number ({})",
                clip(text),
                range()
            ));
        };
        if n < self.min || n > self.max {
            return Err(format!("{n} is out of range: {}", range()));
        }
        T::try_from(n).map_err(|_| format!("{n} is out of range: {}", range()))
    }
}

impl<T> TypedValueParser for IntParser<T>
where
    T: TryFrom<u64> + Clone + Send + Sync + 'static,
{
    type Value = T;

    fn parse_ref(&self, cmd: &Command, arg: Option<&Arg>, value: &OsStr) -> Result<T, clap::Error> {
        let text = utf8(cmd, arg, value)?;
        self.parse(text).map_err(|reason| refuse(cmd, arg, &reason))
    }
}

/// The environment variable behind `arg` (what users set), else its flag.
pub(crate) fn var_name(arg: Option<&Arg>) -> String {
    match arg {
        Some(a) => match a.get_env() {
            Some(env) => env.to_string_lossy().into_owned(),
            None => format!("--{}", a.get_long().unwrap_or(a.get_id().as_str())),
        },
        None => "a setting".into(),
    }
}

fn utf8<'a>(cmd: &Command, arg: Option<&Arg>, value: &'a OsStr) -> Result<&'a str, clap::Error> {
    value
        .to_str()
        .ok_or_else(|| refuse(cmd, arg, "is not valid UTF-8"))
}

fn refuse(cmd: &Command, arg: Option<&Arg>, reason: &str) -> clap::Error {
    clap::Error::raw(
        ErrorKind::ValueValidation,
        format!("invalid configuration: {}: {reason}\n", var_name(arg)),
    )
    .with_cmd(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn durations_take_humantime_or_the_unit_of_the_name() {
        let secs = DurationParser::secs(S, Duration::from_secs(3600));
        assert_eq!(secs.parse("30"), Ok(Duration::from_secs(30)));
        assert_eq!(secs.parse(" 10m "), Ok(Duration::from_secs(600)));
        assert_eq!(secs.parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(secs.parse("1500ms"), Ok(Duration::from_millis(1500)));
        let ms = DurationParser::millis(Duration::ZERO, Duration::from_secs(60));
        assert_eq!(ms.parse("500"), Ok(Duration::from_millis(500)));
        assert_eq!(ms.parse("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(ms.parse("0"), Ok(Duration::ZERO));
        let bare = DurationParser::humantime(Duration::ZERO, Duration::from_secs(60));
        assert_eq!(bare.parse("0"), Ok(Duration::ZERO));
        assert_eq!(bare.parse("20s"), Ok(Duration::from_secs(20)));
        assert!(bare.parse("20").unwrap_err().contains("needs a unit"));
    }

    #[test]
    fn durations_out_of_range_or_malformed_are_refused() {
        let secs = DurationParser::secs(S, Duration::from_secs(3600));
        for bad in [
            "0",
            "18446744073709551615",
            "99999999999999999999999",
            "2h",
            "999999999999999999999h",
            "-5",
            "-5s",
            "5 parsecs",
            "",
            "1.5",
            "NaN",
            "inf",
            "\u{0}",
        ] {
            let e = secs.parse(bad);
            assert!(e.is_err(), "{bad:?} was accepted as {e:?}");
        }
        assert!(secs
            .parse("2h")
            .unwrap_err()
            .contains("out of range: 1s to 1h"));
    }

    #[test]
    fn integers_have_ranges() {
        let p = IntParser::<u32>::new(1, 1000);
        assert_eq!(p.parse("5"), Ok(5));
        assert!(p
            .parse("0")
            .unwrap_err()
            .contains("out of range: 1 to 1000"));
        assert!(p.parse("4294967296").is_err());
        assert!(p.parse("-1").unwrap_err().contains("not a whole number"));
        assert!(p.parse("1e3").is_err());
        let big = IntParser::<u64>::new(0, u64::MAX);
        assert_eq!(big.parse("18446744073709551615"), Ok(u64::MAX));
        assert!(big.parse("18446744073709551616").is_err());
    }
}
