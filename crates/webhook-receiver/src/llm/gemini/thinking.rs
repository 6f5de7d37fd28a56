//! Gemini's thinking level (`generationConfig.thinkingConfig.thinkingLevel`), and the one
//! `generationConfig` the agent sends.
//!
//! Gemini 3 models think before they answer; how much is a level (`minimal`, `low`, `medium`,
//! `high`; which ones a model takes and its default are on its model page, e.g. 3.8 Flash: low,
//! medium, high, default medium). A healing turn is a short tool choice over a diagnosis the agent
//! already made, so the agent asks for `low` by default: less latency and fewer billed thought
//! tokens. Gemini 2.x models take a token budget instead and refuse a level, so the level is sent
//! only to models named `gemini-3...` or later (and the moving `*-latest` aliases, which point at
//! 3.x models). The sampling parameters (`temperature`, `topP`, `topK`) were deprecated for the
//! 3.x models on 2026-07-21 (Gemini API changelog) and are never sent.

use std::fmt;
use std::str::FromStr;

use serde_json::{json, Value};

/// `GEMINI_THINKING_LEVEL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ThinkingLevel {
    /// Send no level: the model's own default (medium for the 3.x Flash models).
    ModelDefault,
    Minimal,
    #[default]
    Low,
    Medium,
    High,
}

impl ThinkingLevel {
    /// The value on the wire, or `None` for the model's default.
    pub fn wire(self) -> Option<&'static str> {
        match self {
            ThinkingLevel::ModelDefault => None,
            ThinkingLevel::Minimal => Some("minimal"),
            ThinkingLevel::Low => Some("low"),
            ThinkingLevel::Medium => Some("medium"),
            ThinkingLevel::High => Some("high"),
        }
    }
}

impl FromStr for ThinkingLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "default" => Ok(ThinkingLevel::ModelDefault),
            "minimal" => Ok(ThinkingLevel::Minimal),
            "low" => Ok(ThinkingLevel::Low),
            "medium" => Ok(ThinkingLevel::Medium),
            "high" => Ok(ThinkingLevel::High),
            other => Err(format!(
                "unknown thinking level {other:?}: use minimal, low, medium, high or default"
            )),
        }
    }
}

impl fmt::Display for ThinkingLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.wire().unwrap_or("default"))
    }
}

/// Whether `model` takes a thinking level: Gemini 3 and later, by its name.
pub fn takes_thinking_level(model: &str) -> bool {
    let name = model.trim().trim_start_matches("models/");
    let Some(rest) = name.strip_prefix("gemini-") else {
        return false;
    };
    if rest.ends_with("-latest") {
        return true;
    }
    let major: String = rest.chars().take_while(char::is_ascii_digit).collect();
    major.parse::<u32>().is_ok_and(|m| m >= 3)
}

/// The request's `generationConfig` for `model`: only the thinking level, and only where the model
/// takes one. `None`: the field is left out.
pub fn generation_config(model: &str, level: ThinkingLevel) -> Option<Value> {
    let level = level.wire()?;
    takes_thinking_level(model).then(|| json!({ "thinkingConfig": { "thinkingLevel": level } }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_case_blind_and_name_the_choices() {
        assert_eq!("LOW".parse(), Ok(ThinkingLevel::Low));
        assert_eq!(" high ".parse(), Ok(ThinkingLevel::High));
        assert_eq!("default".parse(), Ok(ThinkingLevel::ModelDefault));
        assert_eq!("".parse(), Ok(ThinkingLevel::ModelDefault));
        let err = "extreme".parse::<ThinkingLevel>().unwrap_err();
        assert!(err.contains("minimal, low, medium, high"), "{err}");
        assert_eq!(ThinkingLevel::default(), ThinkingLevel::Low);
    }

    #[test]
    fn only_gemini_3_and_later_take_a_level() {
        for m in [
            "gemini-3.8-flash",
            "models/gemini-3.6-flash",
            "gemini-3-flash-preview",
            "gemini-3.1-pro-preview",
            "gemini-4.0-flash",
            "gemini-flash-latest",
        ] {
            assert!(takes_thinking_level(m), "{m}");
        }
        for m in [
            "gemini-2.5-flash",
            "gemini-1.5-flash",
            "tunedModels/my-model",
            "gpt-4o",
            "gemini-",
        ] {
            assert!(!takes_thinking_level(m), "{m}");
        }
    }

    #[test]
    fn the_config_holds_the_level_and_no_sampling_parameters() {
        let c = generation_config("gemini-3.8-flash", ThinkingLevel::Low).unwrap();
        assert_eq!(c, json!({"thinkingConfig": {"thinkingLevel": "low"}}));
        assert_eq!(
            generation_config("gemini-3.8-flash", ThinkingLevel::ModelDefault),
            None
        );
        assert_eq!(
            generation_config("gemini-2.5-flash", ThinkingLevel::High),
            None
        );
    }
}
