//! Web sessions: a random id in an `HttpOnly`, `SameSite=Strict` cookie, mapped on the server
//! to the SHA-256 of the API token the user logged in with and an expiry. The token itself is
//! never stored nor sent back. Sessions are kept in the database (`store/web_sessions.rs`):
//! every coordinator behind one address knows them, and a restart logs nobody out.

use crate::store::Store;
use axum::http::{header, HeaderMap, HeaderValue};

/// How long a session lasts at most (less when the token expires sooner).
pub const SESSION_TTL_MS: i64 = 12 * 3600 * 1000;

/// The cookie's name over TLS: `__Host-` makes browsers insist on `Secure`, `Path=/` and no
/// `Domain`.
pub const TLS_COOKIE: &str = "__Host-tofuflow";
/// The cookie's name over plain HTTP (a `__Host-` cookie must be `Secure`).
pub const PLAIN_COOKIE: &str = "tofuflow_session";

/// The sessions, stored by the SHA-256 of their id (a leaked database does not hand out
/// cookies).
pub struct Sessions {
    secure: bool,
    store: Store,
}

impl Sessions {
    /// Sessions whose cookie is `Secure` (and `__Host-` named) when `tls`.
    pub fn new(tls: bool, store: Store) -> Sessions {
        Sessions { secure: tls, store }
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
    pub async fn create(
        &self,
        token_sha256: &str,
        token_expires_ms: i64,
        now_ms: i64,
    ) -> crate::error::Result<String> {
        let mut b = [0u8; 32];
        getrandom::fill(&mut b).expect("the operating system's random generator");
        let id = hex::encode(b);
        let mut expires_ms = now_ms + SESSION_TTL_MS;
        if token_expires_ms > 0 {
            expires_ms = expires_ms.min(token_expires_ms);
        }
        let key = crate::store::sha256_hex(id.as_bytes());
        self.store
            .insert_web_session(&key, token_sha256, expires_ms, now_ms)
            .await?;
        Ok(id)
    }

    /// The token hash of the live session whose cookie `headers` carry, if any (a database
    /// that cannot answer counts as no session).
    pub async fn token_hash(&self, headers: &HeaderMap, now_ms: i64) -> Option<String> {
        let id = cookie_value(headers, self.cookie_name())?;
        let key = crate::store::sha256_hex(id.as_bytes());
        match self.store.web_session_token(&key, now_ms).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read web sessions");
                None
            }
        }
    }

    /// Ends the session whose cookie `headers` carry.
    pub async fn remove(&self, headers: &HeaderMap) {
        if let Some(id) = cookie_value(headers, self.cookie_name()) {
            let key = crate::store::sha256_hex(id.as_bytes());
            if let Err(e) = self.store.delete_web_session(&key).await {
                tracing::warn!(error = %e, "cannot end a web session");
            }
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

    /// Sessions on a fresh SQLite database of their own.
    async fn sessions(tls: bool) -> (Sessions, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("tofuflow-sessions-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}/s.db", dir.display());
        let store = Store::connect(&url).await.unwrap();
        (Sessions::new(tls, store), dir)
    }

    #[tokio::test]
    async fn a_session_maps_its_cookie_to_the_token_hash_until_it_expires() {
        let (s, dir) = sessions(false).await;
        let id = s.create("abc", 0, 1_000).await.unwrap();
        let h = with_cookie(&format!("other=1; tofuflow_session={id}"));
        assert_eq!(s.token_hash(&h, 2_000).await.as_deref(), Some("abc"));
        assert_eq!(
            s.token_hash(&h, 1_000 + SESSION_TTL_MS).await,
            None,
            "expired"
        );
        let nope = with_cookie("tofuflow_session=nope");
        assert_eq!(s.token_hash(&nope, 2_000).await, None);
        s.remove(&h).await;
        assert_eq!(s.token_hash(&h, 2_000).await, None, "logged out");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_session_ends_no_later_than_its_token() {
        let (s, dir) = sessions(true).await;
        let id = s.create("abc", 5_000, 1_000).await.unwrap();
        let h = with_cookie(&format!("__Host-tofuflow={id}"));
        assert_eq!(s.token_hash(&h, 4_999).await.as_deref(), Some("abc"));
        assert_eq!(s.token_hash(&h, 5_000).await, None);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn the_cookie_is_http_only_strict_and_secure_over_tls() {
        let (tls, d1) = sessions(true).await;
        assert_eq!(
            tls.set_cookie("x").to_str().unwrap(),
            "__Host-tofuflow=x; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200; Secure"
        );
        let (plain, d2) = sessions(false).await;
        assert_eq!(
            plain.set_cookie("").to_str().unwrap(),
            "tofuflow_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
        );
        let _ = (std::fs::remove_dir_all(d1), std::fs::remove_dir_all(d2));
    }
}
