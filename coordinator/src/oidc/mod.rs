//! Dynamic credentials: the OIDC ID tokens every task gets, which clouds (AWS, Google, Azure,
//! Vault) exchange for short-lived credentials.
//!
//! Here: the issuer and its settings, and the two discovery documents; `claims.rs` what a
//! token says (pure); `identities.rs` the per-workspace identity configurations (pure). The
//! RSA keys and the signing: `store/oidc_keys.rs`; the configurations' table and the record of
//! issued tokens: `store/identities.rs`; minting at claim and renewal at heartbeat:
//! `lifecycle/identity.rs`; the HTTP routes: `http/oidc.rs`.

pub mod claims;
pub mod identities;

pub use claims::{IdClaims, TokenWindow};
pub use identities::{AwsRoles, Azure, Gcp, Identity, IdentityName};

/// Default lifetime of an ID token (`--oidc-token-ttl`).
pub const DEFAULT_TOKEN_TTL_MS: i64 = 15 * 60_000;
/// Default time a key signs ID tokens before a new one takes over (`--oidc-key-rotation`).
pub const DEFAULT_KEY_ROTATION_MS: i64 = 7 * 24 * 3_600_000;

/// A checked issuer URL: `http(s)://host[:port][/path]`, without a trailing slash, query,
/// fragment or user info. Clouds compare `iss` with it byte for byte.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issuer(String);

impl Issuer {
    /// Parses `text`, saying what is wrong with a bad one.
    pub fn parse(text: &str) -> Result<Issuer, String> {
        let bad = |why: &str| {
            Err(format!(
                "--oidc-issuer {text:?} is not an issuer URL ({why}): give https://HOST[:PORT][/PATH] without a trailing slash, e.g. https://tofuflow.example.com"
            ))
        };
        let Some(rest) = text
            .strip_prefix("https://")
            .or_else(|| text.strip_prefix("http://"))
        else {
            return bad("it must start with https:// (or http:// for local tests)");
        };
        let host = rest.split('/').next().unwrap_or_default();
        if host.is_empty() {
            return bad("no host");
        }
        if let Some(c) = text
            .chars()
            .find(|c| c.is_whitespace() || c.is_control() || "?#@\\".contains(*c))
        {
            return bad(&format!("the character {c:?} is not allowed"));
        }
        if text.ends_with('/') {
            return bad("a trailing slash");
        }
        if text.len() > 500 {
            return bad("longer than 500 characters");
        }
        Ok(Issuer(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether clouds can use it: they fetch the discovery document over https only.
    pub fn is_https(&self) -> bool {
        self.0.starts_with("https://")
    }

    /// Where the public keys are served.
    pub fn jwks_uri(&self) -> String {
        format!("{}/.well-known/jwks", self.0)
    }
}

impl std::fmt::Display for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// How this coordinator issues ID tokens.
#[derive(Clone, Debug)]
pub struct OidcConfig {
    /// The exact `iss` of every token, and where the discovery document is.
    pub issuer: Issuer,
    /// `aud` of tokens whose workspace has no identity configuration (or one without an
    /// audience).
    pub default_audience: String,
    /// Lifetime of a token (`exp - iat`), before the bounds in [`TokenWindow`].
    pub token_ttl_ms: i64,
    /// How long a key signs before a new one takes over.
    pub rotation_ms: i64,
}

impl Default for OidcConfig {
    fn default() -> OidcConfig {
        let issuer = Issuer("http://127.0.0.1:7701".into());
        OidcConfig {
            default_audience: issuer.as_str().to_string(),
            issuer,
            token_ttl_ms: DEFAULT_TOKEN_TTL_MS,
            rotation_ms: DEFAULT_KEY_ROTATION_MS,
        }
    }
}

/// A public key ID tokens are verified with, as the JWKS lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct PublicKey {
    pub kid: String,
    /// RSA modulus and exponent, base64url without padding (RFC 7518 §6.3.1).
    pub n: String,
    pub e: String,
}

/// `/.well-known/openid-configuration`: what relying parties (clouds) read first.
pub fn discovery_document(issuer: &Issuer) -> serde_json::Value {
    serde_json::json!({
        "issuer": issuer.as_str(),
        "jwks_uri": issuer.jwks_uri(),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid"],
        "claims_supported": claims::CLAIMS,
    })
}

/// `/.well-known/jwks`: every key whose tokens may still be valid, newest first.
pub fn jwks_document(keys: &[PublicKey]) -> serde_json::Value {
    let keys: Vec<_> = keys
        .iter()
        .map(|k| {
            serde_json::json!({
                "kty": "RSA", "use": "sig", "alg": "RS256", "kid": k.kid, "n": k.n, "e": k.e,
            })
        })
        .collect();
    serde_json::json!({ "keys": keys })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_is_an_url_without_trailing_slash_query_or_user() {
        for ok in [
            "https://tofuflow.example.com",
            "https://example.com:8443/tofuflow",
            "http://127.0.0.1:7701",
        ] {
            assert_eq!(Issuer::parse(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "",
            "tofuflow.example.com",
            "ftp://x",
            "https://",
            "https://x/",
            "https://x?a=b",
            "https://x#f",
            "https://u@x",
            "https://x y",
        ] {
            let e = Issuer::parse(bad).unwrap_err();
            assert!(e.contains("--oidc-issuer"), "{bad}: {e}");
        }
        assert!(Issuer::parse("https://x").unwrap().is_https());
        assert!(!Issuer::parse("http://x").unwrap().is_https());
    }

    #[test]
    fn discovery_names_the_issuer_and_its_jwks() {
        let i = Issuer::parse("https://ci.example.com").unwrap();
        let d = discovery_document(&i);
        assert_eq!(d["issuer"], "https://ci.example.com");
        assert_eq!(d["jwks_uri"], "https://ci.example.com/.well-known/jwks");
        assert_eq!(d["id_token_signing_alg_values_supported"][0], "RS256");
        assert!(d["claims_supported"]
            .as_array()
            .unwrap()
            .contains(&"run_phase".into()));
        let k = PublicKey {
            kid: "k1".into(),
            n: "nn".into(),
            e: "AQAB".into(),
        };
        let j = jwks_document(&[k]);
        assert_eq!(j["keys"][0]["kid"], "k1");
        assert_eq!(j["keys"][0]["kty"], "RSA");
        assert_eq!(j["keys"][0]["alg"], "RS256");
    }
}
