//! The `signing_keys` table and the signing of task messages (Ed25519, `tofuflow_proto::signing`).
//!
//! Two ways to hold the private keys, decided by `--state-key`:
//! - **Shared** (a state key is set): every key's PKCS#8 document is stored sealed with the
//!   store's encryption (`crypt.rs`, bound to the key id), and exactly one row is the active key
//!   (`active = 1`, a unique column), so every coordinator on the database signs with it.
//!   The reaper rotates it (`rotate_signing_keys`): the old key's `verify_until_ms` becomes the
//!   moment the last envelope it signed expires, and agents accept it until then (the overlap).
//! - **Per process** (no state key): a private key must never lie in a table in clear, so each
//!   coordinator keeps its own key in memory and stores only the public half; the key's
//!   `verify_until_ms` is fixed at creation (created + rotation + TTL) and envelopes are never
//!   signed past it. A restarted coordinator makes a new key; the old one lapses by itself.
//!
//! Agents fetch the public keys that still verify with `SigningKeys`.

use super::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tofuflow_proto::signing::{self, Ed25519KeyPair, KeyPair};

/// Default lifetime of a signed task message (`--envelope-ttl`).
pub const DEFAULT_ENVELOPE_TTL_MS: i64 = 3_600_000;
/// Default time a signing key is the active one (`--signing-key-rotation`).
pub const DEFAULT_KEY_ROTATION_MS: i64 = 24 * 3_600_000;

/// How this coordinator signs: the TTL and rotation period, and the keys it has opened.
pub struct Signer {
    pub ttl_ms: i64,
    pub rotation_ms: i64,
    /// Decrypted key pairs of shared keys, by key id.
    opened: Mutex<HashMap<String, Arc<Ed25519KeyPair>>>,
    /// This process's own key (per-process mode only).
    own: Mutex<Option<OwnKey>>,
}

#[derive(Clone)]
struct OwnKey {
    id: String,
    pair: Arc<Ed25519KeyPair>,
    public: Vec<u8>,
    created_ms: i64,
    verify_until_ms: i64,
}

/// The key an envelope is signed with now, and the latest expiry it may be given.
struct SigningKey {
    id: String,
    pair: Arc<Ed25519KeyPair>,
    /// 0: no limit beyond the TTL.
    verify_until_ms: i64,
}

/// A signed task message ready for the outbox.
pub struct SignedTask {
    pub payload: Vec<u8>,
    pub envelope_id: String,
    pub expires_ms: i64,
}

impl Default for Signer {
    fn default() -> Signer {
        Signer::new(DEFAULT_ENVELOPE_TTL_MS, DEFAULT_KEY_ROTATION_MS)
    }
}

impl Signer {
    pub fn new(ttl_ms: i64, rotation_ms: i64) -> Signer {
        Signer {
            ttl_ms,
            rotation_ms,
            opened: Mutex::new(HashMap::new()),
            own: Mutex::new(None),
        }
    }

    /// Signs an encoded `TaskEnvelope` with the key in force, as a fresh envelope id.
    pub(crate) async fn sign(
        &self,
        c: &mut AnyConnection,
        keys: &crypt::Keys,
        envelope: Vec<u8>,
        now: i64,
    ) -> Result<SignedTask> {
        let key = if keys.current.is_some() {
            self.shared_key(c, keys, now).await?
        } else {
            self.own_key(c, now).await?
        };
        let mut expires_ms = now + self.ttl_ms;
        if key.verify_until_ms > 0 {
            expires_ms = expires_ms.min(key.verify_until_ms);
        }
        let envelope_id = uuid::Uuid::new_v4().to_string();
        use prost::Message;
        let signed = signing::sign(&key.pair, &key.id, &envelope_id, expires_ms, envelope);
        Ok(SignedTask {
            payload: signed.encode_to_vec(),
            envelope_id,
            expires_ms,
        })
    }

    /// The active shared key (created now if the database has none yet), opened once.
    async fn shared_key(
        &self,
        c: &mut AnyConnection,
        keys: &crypt::Keys,
        now: i64,
    ) -> Result<SigningKey> {
        let row = sqlx::query("SELECT id, sealed_private_key FROM signing_keys WHERE active = 1")
            .fetch_optional(&mut *c)
            .await?;
        let (id, sealed) = match row {
            Some(r) => (s(&r, "id")?, r.try_get::<Vec<u8>, _>("sealed_private_key")?),
            None => insert_shared_key(c, keys, now).await?,
        };
        if let Some(pair) = self.opened.lock().expect("signer").get(&id) {
            return Ok(SigningKey {
                id,
                pair: pair.clone(),
                verify_until_ms: 0,
            });
        }
        let pkcs8 = keys.decrypt(&aad(&id), &sealed).map_err(Error::Internal)?;
        let pair = Arc::new(signing::key_pair(&pkcs8).map_err(|e| Error::Corrupt {
            table: "signing_keys",
            column: "sealed_private_key",
            detail: e,
        })?);
        self.opened
            .lock()
            .expect("signer")
            .insert(id.clone(), pair.clone());
        Ok(SigningKey {
            id,
            pair,
            verify_until_ms: 0,
        })
    }

    /// This process's key, replaced once its rotation period is over; its public half is
    /// written in the same transaction as the envelope it signs (a no-op after the first), so no
    /// envelope is ever committed with a key agents cannot find.
    async fn own_key(&self, c: &mut AnyConnection, now: i64) -> Result<SigningKey> {
        let key = {
            let mut own = self.own.lock().expect("signer");
            match own.as_ref() {
                Some(k) if k.created_ms + self.rotation_ms > now => k.clone(),
                _ => {
                    let (pkcs8, public) = signing::generate_key().map_err(Error::Internal)?;
                    let pair = signing::key_pair(&pkcs8).map_err(Error::Internal)?;
                    let k = OwnKey {
                        id: signing::key_id(&public),
                        pair: Arc::new(pair),
                        public,
                        created_ms: now,
                        verify_until_ms: now + self.rotation_ms + self.ttl_ms,
                    };
                    tracing::info!(key_id = %k.id, "new signing key for task messages (held in this process only: no --state-key)");
                    *own = Some(k.clone());
                    k
                }
            }
        };
        sqlx::query("INSERT INTO signing_keys (id, public_key, sealed_private_key, created_ms, verify_until_ms) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING")
            .bind(&key.id)
            .bind(key.pair.public_key().as_ref().to_vec())
            .bind(Vec::<u8>::new())
            .bind(key.created_ms)
            .bind(key.verify_until_ms)
            .execute(&mut *c)
            .await?;
        debug_assert_eq!(key.public, key.pair.public_key().as_ref());
        Ok(SigningKey {
            id: key.id,
            pair: key.pair,
            verify_until_ms: key.verify_until_ms,
        })
    }
}

/// What a sealed private key is bound to.
fn aad(key_id: &str) -> String {
    format!("signing-key:{key_id}")
}

/// Makes a new shared key the active one; returns its id and sealed private key. Fails (the
/// unique `active` column) if another coordinator made one at the same moment.
async fn insert_shared_key(
    c: &mut AnyConnection,
    keys: &crypt::Keys,
    now: i64,
) -> Result<(String, Vec<u8>)> {
    let (pkcs8, public) = signing::generate_key().map_err(Error::Internal)?;
    let id = signing::key_id(&public);
    let sealed = keys.encrypt(&aad(&id), &pkcs8).map_err(Error::Internal)?;
    if crypt::key_id_of(&sealed).is_none() {
        return Err(Error::Internal(
            "a signing key would be stored in clear: no --state-key".into(),
        ));
    }
    sqlx::query("INSERT INTO signing_keys (id, public_key, sealed_private_key, created_ms, active, verify_until_ms) VALUES ($1, $2, $3, $4, 1, 0)")
        .bind(&id)
        .bind(public)
        .bind(sealed.clone())
        .bind(now)
        .execute(&mut *c)
        .await?;
    tracing::info!(key_id = %id, "new active signing key for task messages");
    Ok((id, sealed))
}

/// Whether the active key has been active for a whole rotation period.
pub fn rotation_due(created_ms: i64, now: i64, rotation_ms: i64) -> bool {
    created_ms + rotation_ms <= now
}

impl Store {
    /// Sets the envelope TTL and the key rotation period (`--envelope-ttl`,
    /// `--signing-key-rotation`).
    pub fn set_signing(&mut self, ttl_ms: i64, rotation_ms: i64) {
        self.signer = Arc::new(Signer::new(ttl_ms, rotation_ms));
    }

    /// The envelope TTL in force.
    pub fn envelope_ttl_ms(&self) -> i64 {
        self.signer.ttl_ms
    }

    /// Rotates the shared active key once it is due (or makes the first one), retiring the old
    /// one with an overlap until its last envelope expires, and forgets keys that verify nothing
    /// any more. Returns the new key's id. Two coordinators doing it at once: one wins, the other
    /// changes nothing.
    pub async fn rotate_signing_keys(&self) -> Result<Option<String>> {
        let now = now_ms();
        sqlx::query("DELETE FROM signing_keys WHERE verify_until_ms > 0 AND verify_until_ms < $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        if self.keys.current.is_none() {
            return Ok(None);
        }
        let mut tx = self.pool.begin().await?;
        let active = sqlx::query("SELECT id, created_ms FROM signing_keys WHERE active = 1")
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(r) = &active {
            if !rotation_due(i(r, "created_ms")?, now, self.signer.rotation_ms) {
                return Ok(None);
            }
            let retired = sqlx::query("UPDATE signing_keys SET active = NULL, verify_until_ms = $1 WHERE id = $2 AND active = 1")
                .bind(now + self.signer.ttl_ms)
                .bind(s(r, "id")?)
                .execute(&mut *tx)
                .await?;
            if retired.rows_affected() != 1 {
                return Ok(None); // another coordinator rotated it
            }
        }
        let (id, _) = match insert_shared_key(&mut tx, &self.keys, now).await {
            Ok(k) => k,
            Err(Error::Db(_)) => return Ok(None), // another coordinator made one first
            Err(e) => return Err(e),
        };
        tx.commit().await?;
        Ok(Some(id))
    }

    /// Seals every stored private key again under the current state key (a state-key rotation,
    /// like the state versions'); keys held by a process only have nothing stored to seal.
    pub(crate) async fn rotate_signing_seals(&self) -> Result<u64> {
        self.reseal_private_keys("signing_keys", aad).await
    }

    /// Re-seals the `sealed_private_key` of every row of `table` (`signing_keys`, `oidc_keys`)
    /// not under the current state key, each bound to `aad(id)`; returns how many.
    pub(crate) async fn reseal_private_keys(
        &self,
        table: &'static str,
        aad: fn(&str) -> String,
    ) -> Result<u64> {
        let rows = sqlx::query(&format!("SELECT id, sealed_private_key FROM {table}"))
            .fetch_all(&self.pool)
            .await?;
        let mut n = 0;
        for r in rows {
            let (id, sealed) = (s(&r, "id")?, r.try_get::<Vec<u8>, _>("sealed_private_key")?);
            if sealed.is_empty() || !self.keys.needs_rotation(&sealed) {
                continue;
            }
            let plain = self
                .keys
                .decrypt(&aad(&id), &sealed)
                .map_err(Error::Internal)?;
            let fresh = self
                .keys
                .encrypt(&aad(&id), &plain)
                .map_err(Error::Internal)?;
            sqlx::query(&format!(
                "UPDATE {table} SET sealed_private_key = $1 WHERE id = $2"
            ))
            .bind(fresh)
            .bind(&id)
            .execute(&self.pool)
            .await?;
            n += 1;
        }
        Ok(n)
    }

    /// The public keys agents may verify envelopes with now, newest first.
    pub async fn signing_public_keys(&self) -> Result<Vec<signing::PublicKey>> {
        let rows = sqlx::query("SELECT id, public_key, verify_until_ms FROM signing_keys WHERE verify_until_ms = 0 OR verify_until_ms >= $1 ORDER BY created_ms DESC, id")
            .bind(now_ms())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(signing::PublicKey {
                    key_id: s(r, "id")?,
                    public_key: r.try_get::<Vec<u8>, _>("public_key")?,
                    verify_until_ms: i(r, "verify_until_ms")?,
                })
            })
            .collect()
    }
}
