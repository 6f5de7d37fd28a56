//! Secrets come from the environment only (and `.env`), never from flags: a flag's value is
//! readable by every user of the host in `/proc/<pid>/cmdline`. Each may instead name a file
//! (`WEBHOOK_TOKEN_FILE`, ...), as Docker and compose secrets are mounted.

use std::ffi::OsString;
use std::io::Read;

use super::{bad, ConfigError};
use crate::secret::Secret;

/// Largest secret file read: a key is a few hundred bytes; anything bigger is the wrong file.
const MAX_SECRET_FILE: u64 = 64 * 1024;

/// The secrets of the agent. `Debug` shows only whether each is set.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    /// `WEBHOOK_TOKEN`: the Bearer token Alertmanager (and anyone reading the agent's state) must
    /// send; unset, the agent generates one ([`crate::token`]).
    pub webhook_token: Option<Secret>,
    /// `GEMINI_API_KEY`, else `GOOGLE_API_KEY`.
    pub gemini_api_key: Option<Secret>,
    /// `OPENAI_API_KEY`.
    pub openai_api_key: Option<Secret>,
}

impl Secrets {
    /// Reads the process environment (call after `dotenvy` has loaded `.env`).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var_os(name))
    }

    /// Reads through `get` (the environment, or a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<OsString>) -> Result<Self, ConfigError> {
        let token = read(&get, "WEBHOOK_TOKEN", "WEBHOOK_TOKEN_FILE")?;
        let gemini = read(&get, "GEMINI_API_KEY", "GEMINI_API_KEY_FILE")?;
        let google = read(&get, "GOOGLE_API_KEY", "GOOGLE_API_KEY_FILE")?;
        let openai = read(&get, "OPENAI_API_KEY", "OPENAI_API_KEY_FILE")?;
        Ok(Secrets {
            // A token is compared byte for byte (only a file's final newline is dropped).
            webhook_token: token.and_then(Secret::exact),
            gemini_api_key: gemini
                .and_then(Secret::new)
                .or(google.and_then(Secret::new)),
            openai_api_key: openai.and_then(Secret::new),
        })
    }
}

/// The value of `var`, or the contents of the file `file_var` names; `None` when neither is set
/// (an empty value counts as unset, as `GEMINI_API_KEY=` in `.env` means "no key").
fn read(
    get: &impl Fn(&str) -> Option<OsString>,
    var: &'static str,
    file_var: &'static str,
) -> Result<Option<String>, ConfigError> {
    let text = |name: &'static str| -> Result<Option<String>, ConfigError> {
        match get(name) {
            None => Ok(None),
            Some(v) if v.is_empty() => Ok(None),
            Some(v) => v
                .into_string()
                .map(Some)
                .map_err(|_| bad(name, "is not valid UTF-8")),
        }
    };
    let direct = text(var)?;
    let Some(path) = text(file_var)? else {
        return Ok(direct);
    };
    if direct.is_some() {
        return Err(bad(file_var, format!("set {var} or {file_var}, not both")));
    }
    let mut contents = Vec::new();
    std::fs::File::open(&path)
        .and_then(|f| f.take(MAX_SECRET_FILE + 1).read_to_end(&mut contents))
        .map_err(|e| bad(file_var, format!("cannot read {path}: {e}")))?;
    if contents.len() as u64 > MAX_SECRET_FILE {
        return Err(bad(
            file_var,
            format!("{path} is larger than {MAX_SECRET_FILE} bytes: not a secret file"),
        ));
    }
    let mut value = String::from_utf8(contents)
        .map_err(|_| bad(file_var, format!("{path} is not valid UTF-8")))?;
    // Files written by editors and `echo` end in a newline that is not part of the secret.
    while value.ends_with('\n') || value.ends_with('\r') {
        value.pop();
    }
    Ok((!value.is_empty()).then_some(value))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let map: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn secrets_come_from_variables_or_files() {
        let s = Secrets::from_lookup(lookup(&[
            ("WEBHOOK_TOKEN", " tok "),
            ("GOOGLE_API_KEY", "g-key"),
            ("OPENAI_API_KEY", ""),
        ]))
        .unwrap();
        assert_eq!(s.webhook_token.unwrap().expose(), " tok ");
        assert_eq!(s.gemini_api_key.unwrap().expose(), "g-key");
        assert!(s.openai_api_key.is_none(), "empty is unset");

        let dir = std::env::temp_dir().join(format!("secrets-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "from-file\r\n").unwrap();
        let path = file.display().to_string();
        let s = Secrets::from_lookup(lookup(&[
            ("WEBHOOK_TOKEN_FILE", &path),
            ("GEMINI_API_KEY", "g1"),
            ("GOOGLE_API_KEY", "g2"),
        ]))
        .unwrap();
        assert_eq!(s.webhook_token.unwrap().expose(), "from-file");
        assert_eq!(
            s.gemini_api_key.unwrap().expose(),
            "g1",
            "GEMINI_API_KEY wins"
        );

        let e = Secrets::from_lookup(lookup(&[
            ("WEBHOOK_TOKEN", "a"),
            ("WEBHOOK_TOKEN_FILE", &path),
        ]))
        .unwrap_err();
        assert_eq!(e.var, "WEBHOOK_TOKEN_FILE");
        let e = Secrets::from_lookup(lookup(&[("OPENAI_API_KEY_FILE", "/nonexistent/key")]))
            .unwrap_err();
        assert_eq!(e.var, "OPENAI_API_KEY_FILE");
        assert!(e.to_string().contains("/nonexistent/key"));
        std::fs::write(&file, vec![b'x'; 70_000]).unwrap();
        let e = Secrets::from_lookup(lookup(&[("GEMINI_API_KEY_FILE", &path)])).unwrap_err();
        assert!(e.to_string().contains("not a secret file"));
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn debug_shows_no_secret() {
        let s = Secrets::from_lookup(lookup(&[
            ("WEBHOOK_TOKEN", "tok-123"),
            ("GEMINI_API_KEY", "AIza-456"),
            ("OPENAI_API_KEY", "sk-789"),
        ]))
        .unwrap();
        let debug = format!("{s:?}");
        for secret in ["tok-123", "AIza-456", "sk-789"] {
            assert!(!debug.contains(secret), "{debug}");
        }
    }
}
