//! Web sessions: a random id in an `HttpOnly`, `SameSite=Strict` cookie, mapped on the server
//! to the SHA-256 of the API token the user logged in with and an expiry. The token itself is
//! never stored nor sent back. Sessions live in memory: a restart of the coordinator logs
//! everyone out (they log in again with their token).

use axum::http::{header, HeaderMap, HeaderValue};
use std::collections::HashMap;
use std::sync::Mutex;

/// How long a session lasts at most (less when the token expires sooner).
pub const SESSION_TTL_MS: i64 = 12 * 3600 * 1000;

/// The cookie's name over TLS: `__Host-` makes browsers insist on `Secure`, `Path=/` and no
/// `Domain`.
pub const TLS_COOKIE: &str = "__Host-tofuflow";
/// The cookie's name over plain HTTP (a `__Host-` cookie must be `Secure`).
pub const PLAIN_COOKIE: &str = "tofuflow_session";

/// A logged-in browser: whose token, until when.
#[derive(Clone, Debug)]
struct Session {
    token_sha256: String,
    expires_ms: i64,
}

/// The sessions of this coordinator, by the SHA-256 of their id (a leaked memory dump does not
/// hand out cookies).
pub struct Sessions {
    secure: bool,
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// Sessions whose cookie is `Secure` (and `__Host-` named) when `tls`.
    pub fn new(tls: bool) -> Sessions {
        Sessions {
            secure: tls,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// The cookie's name: [`TLS_COOKIE`] over TLS, else [`PLAIN_COOKIE`].
    pub fn cookie_name(&self) -> &'static str {
        if self.secure {
            TLS_COOKIE
        } else {
            PLAIN_COOKIE
        }
    }

    /// Starts a session for the token with hash `token_sha256` (expiring no later than the
    /// token, `0` = never), answering its new id. Drops expired sessions on the way.
    pub fn create(&self, token_sha256: &str, token_expires_ms: i64, now_ms: i64) -> String {
        let mut b = [0u8; 32];
        getrandom::fill(&mut b).expect("the operating system's random generator");
        let id = hex::encode(b);
        let mut expires_ms = now_ms + SESSION_TTL_MS;
        if token_expires_ms > 0 {
            expires_ms = expires_ms.min(token_expires_ms);
        }
        let mut map = self.map.lock().expect("sessions lock");
        map.retain(|_, s| s.expires_ms > now_ms);
        map.insert(
            crate::store::sha256_hex(id.as_bytes()),
            Session {
                token_sha256: token_sha256.to_string(),
                expires_ms,
            },
        );
        id
    }

    /// The token hash of the live session whose cookie `headers` carry, if any.
    pub fn token_hash(&self, headers: &HeaderMap, now_ms: i64) -> Option<String> {
        let id = cookie_value(headers, self.cookie_name())?;
        let map = self.map.lock().expect("sessions lock");
        map.get(&crate::store::sha256_hex(id.as_bytes()))
            .filter(|s| s.expires_ms > now_ms)
            .map(|s| s.token_sha256.clone())
    }

    /// Ends the session whose cookie `headers` carry.
    pub fn remove(&self, headers: &HeaderMap) {
        if let Some(id) = cookie_value(headers, self.cookie_name()) {
            let key = crate::store::sha256_hex(id.as_bytes());
            self.map.lock().expect("sessions lock").remove(&key);
        }
    }

    /// The `Set-Cookie` value giving the browser session `id` (empty: removing the cookie).
    pub fn set_cookie(&self, id: &str) -> HeaderValue {
        let age = if id.is_empty() {
            0
        } else {
            SESSION_TTL_MS / 1000
        };
        let secure = if self.secure { "; Secure" } else { "" };
        let v = format!(
            "{}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={age}{secure}",
            self.cookie_name()
        );
        HeaderValue::from_str(&v).expect("a cookie of hex digits")
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cookie(c: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(c).unwrap());
        h
    }

    #[test]
    fn a_session_maps_its_cookie_to_the_token_hash_until_it_expires() {
        let s = Sessions::new(false);
        let id = s.create("abc", 0, 1_000);
        let h = with_cookie(&format!("other=1; tofuflow_session={id}"));
        assert_eq!(s.token_hash(&h, 2_000).as_deref(), Some("abc"));
        assert_eq!(s.token_hash(&h, 1_000 + SESSION_TTL_MS), None, "expired");
        assert_eq!(
            s.token_hash(&with_cookie("tofuflow_session=nope"), 2_000),
            None
        );
        s.remove(&h);
        assert_eq!(s.token_hash(&h, 2_000), None, "logged out");
    }

    #[test]
    fn a_session_ends_no_later_than_its_token() {
        let s = Sessions::new(true);
        let id = s.create("abc", 5_000, 1_000);
        let h = with_cookie(&format!("__Host-tofuflow={id}"));
        assert_eq!(s.token_hash(&h, 4_999).as_deref(), Some("abc"));
        assert_eq!(s.token_hash(&h, 5_000), None);
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_over_tls() {
        let tls = Sessions::new(true).set_cookie("x");
        assert_eq!(
            tls.to_str().unwrap(),
            "__Host-tofuflow=x; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200; Secure"
        );
        let plain = Sessions::new(false).set_cookie("");
        assert_eq!(
            plain.to_str().unwrap(),
            "tofuflow_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
        );
    }
}
