//! Encryption at rest for stored state: AES-256-GCM with a key from the coordinator's config,
//! bound to the workspace (as associated data). Older keys can be given for reading and are
//! rotated away at start (every version re-encrypted under the current key, none lost).
//!
//! Stored form: `TFFENC1\0` ‖ key id (first 8 bytes of SHA-256(key)) ‖ 12-byte nonce ‖ ciphertext.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use sha2::{Digest, Sha256};

const MAGIC: &[u8; 8] = b"TFFENC1\0";

#[derive(Clone)]
pub struct Key {
    id: [u8; 8],
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for Key {
    /// Shows the key id only, never key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({})", self.id_hex())
    }
}

impl Key {
    /// Parses a base64-encoded 32-byte key.
    pub fn from_base64(b64: &str) -> Result<Key, String> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| format!("state key is not base64: {e} (make one with `head -c32 /dev/urandom | base64`)"))?;
        if raw.len() != 32 {
            return Err(format!("state key must be 32 bytes (AES-256), got {}: make one with `head -c32 /dev/urandom | base64`", raw.len()));
        }
        let digest = Sha256::digest(&raw);
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        Ok(Key {
            id,
            cipher: Aes256Gcm::new_from_slice(&raw).map_err(|e| e.to_string())?,
        })
    }

    pub fn id_hex(&self) -> String {
        hex::encode(self.id)
    }
}

/// The current key (for writing) and older ones (for reading only).
#[derive(Clone, Default)]
pub struct Keys {
    pub current: Option<Key>,
    pub old: Vec<Key>,
}

/// The key id a stored blob was encrypted with, or `None` for plaintext.
pub fn key_id_of(stored: &[u8]) -> Option<String> {
    (stored.len() > 28 && stored.starts_with(MAGIC)).then(|| hex::encode(&stored[8..16]))
}

impl Keys {
    pub fn encrypt(&self, workspace: &str, plain: &[u8]) -> Result<Vec<u8>, String> {
        let Some(k) = &self.current else {
            return Ok(plain.to_vec());
        };
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).map_err(|e| format!("no randomness for a nonce: {e}"))?;
        let ct = k
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: workspace.as_bytes(),
                },
            )
            .map_err(|_| "encryption failed".to_string())?;
        let mut out = Vec::with_capacity(8 + 8 + 12 + ct.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&k.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    pub fn decrypt(&self, workspace: &str, stored: &[u8]) -> Result<Vec<u8>, String> {
        let Some(id) = key_id_of(stored) else {
            return Ok(stored.to_vec());
        };
        let key = self
            .current
            .iter()
            .chain(self.old.iter())
            .find(|k| k.id_hex() == id)
            .ok_or_else(|| format!("state of workspace {workspace:?} is encrypted with key {id}, which is not configured: pass it in --state-key or --old-state-keys"))?;
        key.cipher
            .decrypt(Nonce::from_slice(&stored[16..28]), Payload { msg: &stored[28..], aad: workspace.as_bytes() })
            .map_err(|_| format!("state of workspace {workspace:?} does not decrypt with key {id}: corrupt or moved between workspaces"))
    }

    /// Whether a stored blob must be rewritten to be under the current key (or plaintext when
    /// no key is configured... which is never done: decrypting at rest needs an explicit choice).
    pub fn needs_rotation(&self, stored: &[u8]) -> bool {
        match (&self.current, key_id_of(stored)) {
            (Some(k), Some(id)) => id != k.id_hex(),
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> String {
        base64::engine::general_purpose::STANDARD.encode([byte; 32])
    }

    #[test]
    fn round_trip_rotation_and_binding() {
        let k1 = Keys {
            current: Some(Key::from_base64(&key(1)).unwrap()),
            old: vec![],
        };
        let ct = k1.encrypt("ws", b"{\"lineage\":\"secret\"}").unwrap();
        assert!(
            !ct.windows(6).any(|w| w == b"secret"),
            "no plaintext at rest"
        );
        assert_eq!(k1.decrypt("ws", &ct).unwrap(), b"{\"lineage\":\"secret\"}");
        assert!(
            k1.decrypt("other-ws", &ct).is_err(),
            "bound to its workspace"
        );
        let k2 = Keys {
            current: Some(Key::from_base64(&key(2)).unwrap()),
            old: vec![Key::from_base64(&key(1)).unwrap()],
        };
        assert!(k2.needs_rotation(&ct));
        assert_eq!(
            k2.decrypt("ws", &ct).unwrap(),
            b"{\"lineage\":\"secret\"}",
            "old keys still read"
        );
        let k3 = Keys {
            current: Some(Key::from_base64(&key(3)).unwrap()),
            old: vec![],
        };
        assert!(k3
            .decrypt("ws", &ct)
            .unwrap_err()
            .contains("not configured"));
        assert!(Key::from_base64("c2hvcnQ=")
            .unwrap_err()
            .contains("32 bytes"));
        assert!(!Keys::default().needs_rotation(b"{}"));
        assert_eq!(Keys::default().decrypt("ws", b"{}").unwrap(), b"{}");
    }
}
