//! The checks on `generationConfig`: the thinking level the way the API checks it, and a strict
//! refusal of the sampling parameters the agent must not send to Gemini 3 models.
//!
//! What the API does (checked against its reference, December 2026): `thinkingConfig.thinkingLevel`
//! is an enum (MINIMAL, LOW, MEDIUM, HIGH; sent in any case), a model refuses a level it does not
//! take (3.7 and 3.8 Flash take LOW, MEDIUM, HIGH; 3.5 and 3.6 Flash also MINIMAL), a level and a
//! `thinkingBudget` together are refused, and Gemini 2.x models take a budget only. The sampling
//! parameters `temperature`, `topP` and `topK` were deprecated for the 3.x models on 2026-07-21
//! (Gemini API changelog); the API still ignores them, but this fake refuses them, so that a client
//! tested against it never depends on them.

use serde_json::Value;

const KNOWN: &[&str] = &[
    "stopSequences",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "responseModalities",
    "candidateCount",
    "maxOutputTokens",
    "temperature",
    "topP",
    "topK",
    "seed",
    "presencePenalty",
    "frequencyPenalty",
    "responseLogprobs",
    "logprobs",
    "thinkingConfig",
    "mediaResolution",
    "speechConfig",
];
const DEPRECATED_FOR_3: &[&str] = &["temperature", "topP", "topK"];
const LEVELS: &[&str] = &["MINIMAL", "LOW", "MEDIUM", "HIGH"];

/// The major version in a model name (`gemini-3.8-flash` -> 3), if it has one.
fn major(model: &str) -> Option<u32> {
    let rest = model.strip_prefix("gemini-")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The levels `model` takes, as its model page lists them.
fn supported_levels(model: &str) -> &'static [&'static str] {
    if ["gemini-3.7-flash", "gemini-3.8-flash", "gemini-3.1-pro"]
        .iter()
        .any(|m| model.starts_with(m))
    {
        &["LOW", "MEDIUM", "HIGH"]
    } else if model.starts_with("gemini-3-pro") {
        &["LOW", "HIGH"]
    } else {
        LEVELS
    }
}

/// Accepts both spellings of a field, as the API's JSON parser does.
fn get<'a>(obj: &'a serde_json::Map<String, Value>, camel: &str) -> Option<&'a Value> {
    obj.get(camel).or_else(|| obj.get(&to_snake(camel)))
}

fn to_snake(camel: &str) -> String {
    let mut out = String::new();
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Checks `generationConfig` for `model`; `Err` is the message of a 400 INVALID_ARGUMENT.
pub(crate) fn check(model: &str, config: &Value) -> Result<(), String> {
    let Some(obj) = config.as_object() else {
        return Err("Invalid value at 'generation_config' (type.googleapis.com/google.ai.generativelanguage.v1beta.GenerationConfig)".into());
    };
    for key in obj.keys() {
        if !KNOWN.iter().any(|k| *k == key || to_snake(k) == *key) {
            return Err(format!(
                "Invalid JSON payload received. Unknown name \"{key}\" at 'generation_config': Cannot find field."
            ));
        }
    }
    let gemini3 = major(model).is_some_and(|m| m >= 3);
    if gemini3 {
        if let Some(p) = DEPRECATED_FOR_3.iter().find(|p| get(obj, p).is_some()) {
            return Err(format!(
                "fake-gemini (strict): {p} is deprecated for Gemini 3 models (Gemini API changelog, \
                 2026-07-21) and must not be sent; set generationConfig.thinkingConfig.thinkingLevel instead."
            ));
        }
    }
    let Some(thinking) = get(obj, "thinkingConfig") else {
        return Ok(());
    };
    let Some(thinking) = thinking.as_object() else {
        return Err("Invalid value at 'generation_config.thinking_config' (type.googleapis.com/google.ai.generativelanguage.v1beta.ThinkingConfig)".into());
    };
    for key in thinking.keys() {
        if !["thinkingLevel", "thinkingBudget", "includeThoughts"]
            .iter()
            .any(|k| *k == key || to_snake(k) == *key)
        {
            return Err(format!(
                "Invalid JSON payload received. Unknown name \"{key}\" at 'generation_config.thinking_config': Cannot find field."
            ));
        }
    }
    let Some(level) = get(thinking, "thinkingLevel") else {
        return Ok(());
    };
    let name = level
        .as_str()
        .map(str::to_ascii_uppercase)
        .unwrap_or_default();
    if !LEVELS.contains(&name.as_str()) {
        return Err(format!(
            "Invalid value at 'generation_config.thinking_config.thinking_level' \
             (type.googleapis.com/google.ai.generativelanguage.v1beta.ThinkingConfig.ThinkingLevel), {level}"
        ));
    }
    if get(thinking, "thinkingBudget").is_some() {
        return Err("You can only set one of thinking budget and thinking level.".into());
    }
    if !gemini3 {
        return Err(format!(
            "Thinking level is not supported for models/{model}; use thinking budget."
        ));
    }
    if !supported_levels(model).contains(&name.as_str()) {
        return Err(format!(
            "Thinking level {name} is not supported for models/{model}. Supported levels: {}.",
            supported_levels(model).join(", ")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn levels_are_checked_per_model() {
        let low = json!({"thinkingConfig": {"thinkingLevel": "low"}});
        check("gemini-3.8-flash", &low).unwrap();
        check(
            "gemini-3.8-flash",
            &json!({"thinking_config": {"thinking_level": "HIGH"}}),
        )
        .unwrap();
        let minimal = json!({"thinkingConfig": {"thinkingLevel": "minimal"}});
        check("gemini-3.6-flash", &minimal).unwrap();
        let e = check("gemini-3.8-flash", &minimal).unwrap_err();
        assert!(
            e.contains("not supported") && e.contains("LOW, MEDIUM, HIGH"),
            "{e}"
        );
        let e = check(
            "gemini-3.8-flash",
            &json!({"thinkingConfig": {"thinkingLevel": "extreme"}}),
        )
        .unwrap_err();
        assert!(e.contains("thinking_level"), "{e}");
        let e = check("gemini-2.5-flash", &low).unwrap_err();
        assert!(e.contains("thinking budget"), "{e}");
        let both = json!({"thinkingConfig": {"thinkingLevel": "low", "thinkingBudget": 128}});
        assert!(check("gemini-3.8-flash", &both)
            .unwrap_err()
            .contains("only set one"));
    }

    #[test]
    fn sampling_parameters_are_refused_for_gemini_3_only() {
        for p in ["temperature", "topP", "top_k"] {
            let e = check("gemini-3.8-flash", &json!({ p: 0.2 })).unwrap_err();
            assert!(e.contains("deprecated"), "{p}: {e}");
        }
        check("gemini-2.5-flash", &json!({"temperature": 0.2})).unwrap();
        let e = check("gemini-3.8-flash", &json!({"thinkingLevel": "low"})).unwrap_err();
        assert!(e.contains("Unknown name \"thinkingLevel\""), "{e}");
    }
}
