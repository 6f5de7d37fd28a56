//! The page's login cookie: proof that its holder once gave the bearer token, without holding it.
//!
//! The value is `v1.<expiry>.<mac>`, the MAC an HMAC-SHA256 keyed with the token over a fixed
//! context and the expiry (Unix seconds). So the cookie never reveals the token, cannot be
//! stretched past its expiry, dies with a changed token, and survives agent restarts (no server
//! state). It is HttpOnly (no script reads it) and SameSite=Strict (no other site sends it); only
//! GET pages accept it: state-changing endpoints take the Bearer header alone, so it opens no
//! CSRF hole. No `Secure`: the agent serves plain HTTP, usually on localhost.

use aws_lc_rs::hmac;
use chrono::{DateTime, Utc};

use crate::secret::Secret;

pub const COOKIE: &str = "healstack_page";
/// How long a login lasts.
pub const LIFETIME_SECS: i64 = 12 * 3600;
/// Bounds what is parsed from a client's Cookie header.
const MAX_VALUE: usize = 128;
const CONTEXT: &[u8] = b"healstack agent page session v1|";

fn key(token: &Secret) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, token.expose().as_bytes())
}

/// What the MAC covers: the context and the expiry.
fn message(expires: i64) -> Vec<u8> {
    let mut message = CONTEXT.to_vec();
    message.extend_from_slice(expires.to_string().as_bytes());
    message
}

/// The cookie's value for a login at `now`.
pub fn value(token: &Secret, now: DateTime<Utc>) -> String {
    let expires = now.timestamp() + LIFETIME_SECS;
    let tag = hmac::sign(&key(token), &message(expires));
    format!("v1.{expires}.{}", hex(tag.as_ref()))
}

/// The `Set-Cookie` header of a login at `now`.
pub fn set_cookie(token: &Secret, now: DateTime<Utc>) -> String {
    format!(
        "{COOKIE}={}; Path=/; Max-Age={LIFETIME_SECS}; HttpOnly; SameSite=Strict",
        value(token, now)
    )
}

/// The `Set-Cookie` header that ends a login.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict")
}

/// Whether a `Cookie` header carries a login for `token` that has not expired at `now`.
pub fn valid(token: &Secret, cookie_header: Option<&str>, now: DateTime<Utc>) -> bool {
    let Some(found) = cookie_header.and_then(find) else {
        return false;
    };
    let mut parts = found.splitn(3, '.');
    let (Some("v1"), Some(expires), Some(tag)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let (Ok(expires), Some(tag)) = (expires.parse::<i64>(), unhex(tag)) else {
        return false;
    };
    if expires <= now.timestamp() {
        return false;
    }
    // Constant time, so the MAC cannot be found byte by byte from response times.
    hmac::verify(&key(token), &message(expires), &tag).is_ok()
}

/// This page's cookie in a `Cookie` header (`a=1; healstack_page=...`).
fn find(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
        .filter(|v| v.len() <= MAX_VALUE)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(t: &str) -> Secret {
        Secret::exact(t).unwrap()
    }

    #[test]
    fn a_login_is_valid_for_its_token_until_it_expires() {
        let now = Utc::now();
        let t = token("s3cret-token");
        let cookie = format!("other=1; {COOKIE}={}", value(&t, now));
        assert!(valid(&t, Some(&cookie), now));
        let later = now + chrono::Duration::seconds(LIFETIME_SECS - 1);
        assert!(valid(&t, Some(&cookie), later));
        let expired = now + chrono::Duration::seconds(LIFETIME_SECS);
        assert!(!valid(&t, Some(&cookie), expired));
        assert!(
            !valid(&token("another-token"), Some(&cookie), now),
            "a changed token ends every login"
        );
    }

    #[test]
    fn the_cookie_holds_no_token_and_cannot_be_forged_or_stretched() {
        let now = Utc::now();
        let t = token("s3cret-token");
        let v = value(&t, now);
        assert!(!v.contains("s3cret"), "{v}");
        let header = set_cookie(&t, now);
        for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(header.contains(attr), "{header}");
        }

        let (head, tag) = v.rsplit_once('.').unwrap();
        let expires: i64 = head.trim_start_matches("v1.").parse().unwrap();
        let stretched = format!("{COOKIE}=v1.{}.{tag}", expires + 86_400);
        assert!(!valid(&t, Some(&stretched), now));
        let flipped = format!("{COOKIE}={head}.{}", "0".repeat(tag.len()));
        assert!(!valid(&t, Some(&flipped), now));
        for junk in [
            "",
            "healstack_page=",
            "healstack_page=v1",
            "healstack_page=v1.x.y",
            "healstack_page=v2.1.00",
            "healstack_page=s3cret-token",
        ] {
            assert!(!valid(&t, Some(junk), now), "{junk}");
        }
        assert!(!valid(&t, None, now));
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(unhex(&hex(&[0, 15, 255])), Some(vec![0, 15, 255]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex("é1"), None);
    }
}
