//! The `oidc_keys` table and the signing of ID tokens (RS256, RSA 2048), held the way
//! `signing_keys.rs` holds the task-message keys, decided by `--state-key`:
//! - **Shared** (a state key is set): every key's PKCS#1 document is stored sealed with the
//!   store's encryption (`crypt.rs`, bound to the key id) and exactly one row is active. The
//!   reaper rotates it every `--oidc-key-rotation`: the old key's `verify_until_ms` becomes the
//!   moment the last token it signed expires, and the JWKS lists it until then (the overlap).
//! - **Per process** (no state key): a private key never lies in a table in clear, so each
//!   coordinator keeps its own key in memory and stores only the public half, with
//!   `verify_until_ms` fixed at creation (created + rotation + token TTL); no token it signs
//!   outlives that. A restarted coordinator makes a new key; the old one lapses by itself.
//!
//! Keys are made off the async threads (RSA generation takes a while) by the reaper and at
//! start, never on a claim; a claim only signs, with the parsed key cached.

use super::*;
use crate::oidc::{IdClaims, OidcConfig, PublicKey};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How this coordinator issues ID tokens: its settings and the keys it has opened.
pub struct IdTokenSigner {
    pub config: OidcConfig,
    /// Opened shared keys, by key id.
    opened: Mutex<HashMap<String, Arc<EncodingKey>>>,
    /// This process's own key (per-process mode only).
    own: Mutex<Option<OwnKey>>,
}

#[derive(Clone)]
struct OwnKey {
    id: String,
    key: Arc<EncodingKey>,
    created_ms: i64,
    verify_until_ms: i64,
}

/// The key a token is signed with now, and the latest `exp` it may give (0: no limit).
pub(crate) struct ActiveKey {
    pub id: String,
    key: Arc<EncodingKey>,
    pub verify_until_ms: i64,
}

/// A freshly generated key pair: its id (the RFC 7638 thumbprint), the private key as PKCS#1
/// DER, and the public modulus and exponent (base64url).
struct NewKey {
    public: PublicKey,
    pkcs1_der: Vec<u8>,
}

impl Default for IdTokenSigner {
    fn default() -> IdTokenSigner {
        IdTokenSigner::new(OidcConfig::default())
    }
}

impl IdTokenSigner {
    pub fn new(config: OidcConfig) -> IdTokenSigner {
        IdTokenSigner {
            config,
            opened: Mutex::new(HashMap::new()),
            own: Mutex::new(None),
        }
    }

    /// The key in force: the shared active one (opened once), or this process's own. Made
    /// here only when the reaper has not made one yet (a claim right at start, store tests).
    pub(crate) async fn active_key(
        &self,
        c: &mut AnyConnection,
        keys: &crypt::Keys,
        now: i64,
    ) -> Result<ActiveKey> {
        if keys.current.is_none() {
            let own = self.own.lock().expect("oidc signer").clone();
            let k = match own {
                Some(k) => k,
                None => {
                    self.make_own_key(c, generate_off_thread().await?, now)
                        .await?
                }
            };
            return Ok(ActiveKey {
                id: k.id,
                key: k.key,
                verify_until_ms: k.verify_until_ms,
            });
        }
        let row = sqlx::query("SELECT id, sealed_private_key FROM oidc_keys WHERE active = 1")
            .fetch_optional(&mut *c)
            .await?;
        let (id, sealed) = match row {
            Some(r) => (s(&r, "id")?, r.try_get::<Vec<u8>, _>("sealed_private_key")?),
            None => insert_shared_key(c, keys, generate_off_thread().await?, now).await?,
        };
        if let Some(k) = self.opened.lock().expect("oidc signer").get(&id) {
            return Ok(ActiveKey {
                id,
                key: k.clone(),
                verify_until_ms: 0,
            });
        }
        let der = keys.decrypt(&aad(&id), &sealed).map_err(Error::Internal)?;
        let key = Arc::new(EncodingKey::from_rsa_der(&der));
        self.opened
            .lock()
            .expect("oidc signer")
            .insert(id.clone(), key.clone());
        Ok(ActiveKey {
            id,
            key,
            verify_until_ms: 0,
        })
    }

    /// A new own key (per-process mode), its public half stored before it signs anything.
    async fn make_own_key(&self, c: &mut AnyConnection, new: NewKey, now: i64) -> Result<OwnKey> {
        let verify_until_ms = now + self.config.rotation_ms + self.config.token_ttl_ms;
        insert_key(c, &new.public, Vec::new(), now, None, verify_until_ms).await?;
        let own = OwnKey {
            id: new.public.kid.clone(),
            key: Arc::new(EncodingKey::from_rsa_der(&new.pkcs1_der)),
            created_ms: now,
            verify_until_ms,
        };
        *self.own.lock().expect("oidc signer") = Some(own.clone());
        tracing::info!(key_id = %own.id, "new ID-token signing key (held in this process only: no --state-key)");
        Ok(own)
    }
}

/// Makes a new shared key the active one; returns its id and sealed private key. Fails (the
/// unique `active` column) if another coordinator made one at the same moment.
async fn insert_shared_key(
    c: &mut AnyConnection,
    keys: &crypt::Keys,
    new: NewKey,
    now: i64,
) -> Result<(String, Vec<u8>)> {
    let sealed = keys
        .encrypt(&aad(&new.public.kid), &new.pkcs1_der)
        .map_err(Error::Internal)?;
    if crypt::key_id_of(&sealed).is_none() {
        return Err(Error::Internal(
            "an ID-token signing key would be stored in clear: no --state-key".into(),
        ));
    }
    insert_key(c, &new.public, sealed.clone(), now, Some(1), 0).await?;
    tracing::info!(key_id = %new.public.kid, "new active ID-token signing key");
    Ok((new.public.kid, sealed))
}

/// Signs `claims` with `key`: header `{"typ":"JWT","alg":"RS256","kid":…}`.
pub(crate) fn sign_id_token(key: &ActiveKey, claims: &IdClaims) -> Result<String> {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(key.id.clone());
    jsonwebtoken::encode(&header, claims, &key.key)
        .map_err(|e| Error::Internal(format!("cannot sign an ID token: {e}")))
}

/// A key of its own, outside any store: mints exactly as a claim does (claims, header with
/// `kid`, RS256 with the parsed key cached), for the benchmark's "minting alone" figure.
pub struct DetachedKey(ActiveKey);

impl DetachedKey {
    /// A fresh RSA 2048 key (seconds in a debug build: call it once).
    pub fn generate() -> Result<DetachedKey> {
        let k = generate()?;
        Ok(DetachedKey(ActiveKey {
            id: k.public.kid,
            key: Arc::new(EncodingKey::from_rsa_der(&k.pkcs1_der)),
            verify_until_ms: 0,
        }))
    }

    /// The signed token of `claims`.
    pub fn sign(&self, claims: &IdClaims) -> Result<String> {
        sign_id_token(&self.0, claims)
    }
}

/// What a sealed private key is bound to.
fn aad(key_id: &str) -> String {
    format!("oidc-key:{key_id}")
}

/// Makes an RSA 2048 key pair (CPU-heavy: call it off the async threads).
fn generate() -> Result<NewKey> {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::traits::PublicKeyParts;
    let private = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048)
        .map_err(|e| Error::Internal(format!("cannot generate an RSA key: {e}")))?;
    let der = private
        .to_pkcs1_der()
        .map_err(|e| Error::Internal(format!("cannot encode an RSA key: {e}")))?;
    let b64 = |b: Vec<u8>| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let n = b64(private.n().to_bytes_be());
    let e = b64(private.e().to_bytes_be());
    // RFC 7638: the SHA-256 of the required members, in lexicographic order, no spaces.
    let thumbprint = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
    use sha2::Digest;
    let kid = b64(sha2::Sha256::digest(thumbprint.as_bytes()).to_vec());
    Ok(NewKey {
        public: PublicKey { kid, n, e },
        pkcs1_der: der.as_bytes().to_vec(),
    })
}

/// [`generate`] on a blocking thread.
async fn generate_off_thread() -> Result<NewKey> {
    tokio::task::spawn_blocking(generate)
        .await
        .map_err(|e| Error::Internal(format!("RSA key generation stopped: {e}")))?
}

/// Stores a key's public half (and its sealed private half, empty in per-process mode).
async fn insert_key(
    c: &mut AnyConnection,
    k: &PublicKey,
    sealed: Vec<u8>,
    now: i64,
    active: Option<i64>,
    verify_until_ms: i64,
) -> Result<()> {
    sqlx::query("INSERT INTO oidc_keys (id, modulus, exponent, sealed_private_key, created_ms, active, verify_until_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)")
        .bind(&k.kid)
        .bind(&k.n)
        .bind(&k.e)
        .bind(sealed)
        .bind(now)
        .bind(active)
        .bind(verify_until_ms)
        .execute(&mut *c)
        .await?;
    Ok(())
}

impl Store {
    /// Sets how ID tokens are issued (`--oidc-*`).
    pub fn set_oidc(&mut self, config: OidcConfig) {
        self.oidc = Arc::new(IdTokenSigner::new(config));
    }

    /// How ID tokens are issued.
    pub fn oidc(&self) -> &OidcConfig {
        &self.oidc.config
    }

    /// Makes a new signing key once the one in force is due (or there is none yet), retiring
    /// the old one with an overlap until its last token expires, and forgets keys that verify
    /// nothing any more. Returns the new key's id. Shared mode: two coordinators doing it at
    /// once, one wins and the other changes nothing.
    pub async fn rotate_oidc_keys(&self) -> Result<Option<String>> {
        let now = now_ms();
        sqlx::query("DELETE FROM oidc_keys WHERE verify_until_ms > 0 AND verify_until_ms < $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        if self.keys.current.is_none() {
            return self.rotate_own_oidc_key(now).await;
        }
        let due = sqlx::query("SELECT id, created_ms FROM oidc_keys WHERE active = 1")
            .fetch_optional(&self.pool)
            .await?;
        let cfg = &self.oidc.config;
        if let Some(r) = &due {
            if i(r, "created_ms")? + cfg.rotation_ms > now {
                return Ok(None);
            }
        }
        // Made before the transaction: the (single, on SQLite) connection is not held meanwhile.
        let new = generate_off_thread().await?;
        // The old key retires now, not when generation began: its last token expires a TTL on.
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        if let Some(r) = &due {
            let retired = sqlx::query("UPDATE oidc_keys SET active = NULL, verify_until_ms = $1 WHERE id = $2 AND active = 1")
                .bind(now + cfg.token_ttl_ms)
                .bind(s(r, "id")?)
                .execute(&mut *tx)
                .await?;
            if retired.rows_affected() != 1 {
                return Ok(None); // another coordinator rotated it
            }
        }
        let (id, _) = match insert_shared_key(&mut tx, &self.keys, new, now).await {
            Ok(k) => k,
            Err(Error::Db(_)) => return Ok(None), // another coordinator made one first
            Err(e) => return Err(e),
        };
        tx.commit().await?;
        Ok(Some(id))
    }

    /// Per-process mode: a new own key when there is none or it is due; its public half is
    /// stored before it signs anything.
    async fn rotate_own_oidc_key(&self, now: i64) -> Result<Option<String>> {
        let cfg = &self.oidc.config;
        let due = match self.oidc.own.lock().expect("oidc signer").as_ref() {
            Some(k) => k.created_ms + cfg.rotation_ms <= now,
            None => true,
        };
        if !due {
            return Ok(None);
        }
        let new = generate_off_thread().await?;
        let mut c = self.pool.acquire().await?;
        let own = self.oidc.make_own_key(&mut c, new, now_ms()).await?;
        Ok(Some(own.id))
    }

    /// Seals every stored private key again under the current state key.
    pub(crate) async fn rotate_oidc_seals(&self) -> Result<u64> {
        self.reseal_private_keys("oidc_keys", aad).await
    }

    /// The public keys tokens may be verified with now (the JWKS), newest first.
    pub async fn oidc_public_keys(&self) -> Result<Vec<PublicKey>> {
        let rows = sqlx::query("SELECT id, modulus, exponent FROM oidc_keys WHERE verify_until_ms = 0 OR verify_until_ms >= $1 ORDER BY created_ms DESC, id")
            .bind(now_ms())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(PublicKey {
                    kid: s(r, "id")?,
                    n: s(r, "modulus")?,
                    e: s(r, "exponent")?,
                })
            })
            .collect()
    }
}
