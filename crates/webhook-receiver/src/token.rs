//! The bearer token of the agent's endpoints: the one configured (`WEBHOOK_TOKEN` or
//! `WEBHOOK_TOKEN_FILE`), or one generated on first start and kept in the data volume, so that the
//! stack needs no token from its user and never runs on a well-known one. The agent also writes
//! the token it uses to a file Alertmanager reads (`credentials_file`, re-read per request), so
//! both sides always hold the same one.
//!
//! Blocking file I/O: call from `spawn_blocking` (or before the runtime starts).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::secret::Secret;

/// Tokens that ship in examples and READMEs (this project's own default once among them):
/// refused unless `ALLOW_WEAK_TOKEN=true`.
const WELL_KNOWN: &[&str] = &[
    "change-me",
    "changeme",
    "change_me",
    "secret",
    "token",
    "password",
    "webhook-token",
];

/// Bytes of randomness in a generated token (written as 64 hex characters).
const TOKEN_BYTES: usize = 32;

/// Where the token in use came from (said at start; never the token itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// `WEBHOOK_TOKEN` or `WEBHOOK_TOKEN_FILE`.
    Configured,
    /// Generated now or on an earlier start, kept in this file.
    Kept(PathBuf),
    /// Generated for this process only: there is nowhere to keep it.
    Ephemeral,
    /// Generated for this process only: the file it is kept in cannot be read or written (the
    /// reason). The agent runs on, as it does with an unwritable incident log, and says so.
    Unkept(String),
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("WEBHOOK_TOKEN is the well-known default {0:?}: anyone who has read an example can send this agent alerts and read its incidents. Set a long random value (openssl rand -hex 32), or leave WEBHOOK_TOKEN unset and the agent generates one (`webhook-receiver token` prints it); ALLOW_WEAK_TOKEN=true accepts it anyway")]
    WellKnown(String),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no randomness for a token: {0}")]
    Random(String),
}

/// The well-known default `token` is equal to, if any (case and surrounding blanks ignored).
pub fn well_known(token: &str) -> Option<&'static str> {
    let t = token.trim().to_ascii_lowercase();
    WELL_KNOWN.iter().copied().find(|w| *w == t)
}

/// The token to use: the configured one, else the one kept at `state` (generated and written
/// there, mode 0600, on first start), else one for this process only (no `state`, or one that
/// cannot be read or written: [`Origin::Unkept`]).
pub fn resolve(
    configured: Option<Secret>,
    state: Option<&Path>,
) -> Result<(Secret, Origin), TokenError> {
    if let Some(t) = configured {
        return Ok((t, Origin::Configured));
    }
    let Some(path) = state else {
        return Ok((generate()?, Origin::Ephemeral));
    };
    let kept = match read_kept(path) {
        Ok(kept) => kept,
        Err(e) => return Ok((generate()?, Origin::Unkept(e.to_string()))),
    };
    if let Some(t) = kept {
        return Ok((t, Origin::Kept(path.to_path_buf())));
    }
    let token = generate()?;
    match write_atomically(path, token.expose().as_bytes(), 0o600) {
        Ok(()) => Ok((token, Origin::Kept(path.to_path_buf()))),
        Err(source) => {
            let e = TokenError::Io {
                what: "cannot keep the generated token in",
                path: path.to_path_buf(),
                source,
            };
            Ok((token, Origin::Unkept(e.to_string())))
        }
    }
}

/// The token kept at `path`; `None` when there is none (or only an unusable leftover, which the
/// next [`resolve`] replaces).
pub fn read_kept(path: &Path) -> Result<Option<Secret>, TokenError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let t = text.trim();
            let usable = t.len() == TOKEN_BYTES * 2 && t.bytes().all(|b| b.is_ascii_hexdigit());
            if !usable {
                tracing::warn!(path = %path.display(), "the kept webhook token is unusable; a new one is generated");
            }
            Ok(usable.then(|| Secret::exact(t)).flatten())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(TokenError::Io {
            what: "cannot read the kept token",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Writes the token for Alertmanager (mode 0444: it runs as another user; only the agent and
/// Alertmanager mount the volume it is in).
pub fn share(token: &Secret, path: &Path) -> Result<(), TokenError> {
    write_atomically(path, token.expose().as_bytes(), 0o444).map_err(|source| TokenError::Io {
        what: "cannot write the token for Alertmanager to",
        path: path.to_path_buf(),
        source,
    })
}

fn generate() -> Result<Secret, TokenError> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| TokenError::Random(e.to_string()))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(Secret::exact(hex).expect("64 characters"))
}

/// A unique temporary file next to `path`, created with `mode`, written and synced, renamed over
/// `path`, and the directory synced: a crash leaves the old file or the new one, never half of
/// one (as Prometheus and etcd write their snapshots).
fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(
        ".{name}.tmp.{}.{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    ));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode | 0o200)
            .open(&tmp)?;
        f.write_all(bytes)?;
        // The umask may have taken bits away; the owner's write bit was only for writing.
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // Not every filesystem can sync a directory; the rename is done either way.
        let _ = std::fs::File::open(&dir).and_then(|d| d.sync_all());
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("token-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_generated_token_is_kept_private_and_survives_a_restart() {
        let d = dir("kept");
        let state = d.join("sub/webhook-token");
        let (first, origin) = resolve(None, Some(&state)).unwrap();
        assert_eq!(origin, Origin::Kept(state.clone()));
        assert_eq!(first.expose().len(), 64);
        let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (again, _) = resolve(None, Some(&state)).unwrap();
        assert_eq!(
            first.expose(),
            again.expose(),
            "the same token after a restart"
        );
        // Another state file, another token: they are random.
        let (other, _) = resolve(None, Some(&d.join("other"))).unwrap();
        assert_ne!(first.expose(), other.expose());
        // An unusable leftover is replaced.
        std::fs::write(&state, "half a tok").unwrap();
        let (fresh, _) = resolve(None, Some(&state)).unwrap();
        assert_ne!(fresh.expose(), "half a tok");
        assert_eq!(read_kept(&state).unwrap().unwrap().expose(), fresh.expose());
        // No temporary files left behind.
        let names: Vec<_> = std::fs::read_dir(d.join("sub")).unwrap().collect();
        assert_eq!(names.len(), 1, "{names:?}");
        std::fs::remove_dir_all(d).ok();
    }

    #[test]
    fn a_configured_token_wins_and_is_shared_readable() {
        let d = dir("shared");
        let configured = Secret::exact("a-configured-token-of-some-length").unwrap();
        let (t, origin) = resolve(Some(configured), Some(&d.join("kept"))).unwrap();
        assert_eq!(origin, Origin::Configured);
        assert!(!d.join("kept").exists(), "nothing generated");
        let share_path = d.join("share/webhook_token");
        share(&t, &share_path).unwrap();
        share(&t, &share_path).unwrap();
        assert_eq!(std::fs::read_to_string(&share_path).unwrap(), t.expose());
        let mode = std::fs::metadata(&share_path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o444);
        assert_eq!(resolve(None, None).unwrap().1, Origin::Ephemeral);
        std::fs::remove_dir_all(d).ok();
    }

    #[test]
    fn a_token_that_cannot_be_kept_is_generated_for_this_process_and_said() {
        let (t, origin) =
            resolve(None, Some(Path::new("/proc/self/status/webhook-token"))).unwrap();
        assert_eq!(t.expose().len(), 64);
        match origin {
            Origin::Unkept(why) => {
                assert!(why.contains("/proc/self/status/webhook-token"), "{why}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn well_known_defaults_are_recognized() {
        assert_eq!(well_known("change-me"), Some("change-me"));
        assert_eq!(well_known(" Change-Me\n"), Some("change-me"));
        assert_eq!(well_known("change-me-please-3f9a"), None);
    }
}
