//! Encryption at rest for stored state and every other stored secret (run variables and outputs,
//! log lines, plan files and bundles): AES-256-GCM with a key from the coordinator's config,
//! bound to what it belongs to (as associated data: the workspace, the run, the blob's digest).
//! Older keys can be given for reading and are rotated away at start (everything re-encrypted
//! under the current key, nothing lost).
//!
//! Stored form: `TFFENC1\0` ‖ key id (first 8 bytes of SHA-256(key)) ‖ 12-byte nonce ‖ ciphertext;
//! in text columns `tffenc1:` ‖ base64 of that.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use sha2::{Digest, Sha256};

const MAGIC: &[u8; 8] = b"TFFENC1\0";
/// Marks encrypted text in a text column.
const TEXT_SEALED: &str = "tffenc1:";
/// Marks plaintext that happens to start like a marker (stored without a key).
const TEXT_PLAIN: &str = "tffplain:";

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
            .ok_or_else(|| format!("stored data of {workspace:?} is encrypted with key {id}, which is not configured: pass it in --state-key or --old-state-keys"))?;
        key.cipher
            .decrypt(Nonce::from_slice(&stored[16..28]), Payload { msg: &stored[28..], aad: workspace.as_bytes() })
            .map_err(|_| format!("stored data of {workspace:?} does not decrypt with key {id}: corrupt or moved between owners"))
    }

    /// Text for a text column: encrypted (marked, base64) under the current key, else as it is.
    pub fn seal_text(&self, aad: &str, plain: &str) -> Result<String, String> {
        if self.current.is_none() {
            return Ok(
                if plain.starts_with(TEXT_SEALED) || plain.starts_with(TEXT_PLAIN) {
                    format!("{TEXT_PLAIN}{plain}")
                } else {
                    plain.to_string()
                },
            );
        }
        let sealed = self.encrypt(aad, plain.as_bytes())?;
        Ok(format!(
            "{TEXT_SEALED}{}",
            base64::engine::general_purpose::STANDARD.encode(sealed)
        ))
    }

    /// The text [`Keys::seal_text`] stored.
    pub fn open_text(&self, aad: &str, stored: &str) -> Result<String, String> {
        if let Some(p) = stored.strip_prefix(TEXT_PLAIN) {
            return Ok(p.to_string());
        }
        let Some(b) = stored.strip_prefix(TEXT_SEALED) else {
            return Ok(stored.to_string());
        };
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b)
            .map_err(|e| format!("encrypted text of {aad:?} is not base64: {e}"))?;
        String::from_utf8(self.decrypt(aad, &raw)?)
            .map_err(|_| format!("encrypted text of {aad:?} is not UTF-8 once decrypted"))
    }

    /// How text sealed under the current key starts (for finding what is not, in SQL): the
    /// marker and the base64 of the magic and the first 7 bytes of the key id.
    pub fn sealed_text_prefix(&self) -> Option<String> {
        let k = self.current.as_ref()?;
        let mut head = MAGIC.to_vec();
        head.extend_from_slice(&k.id[..7]);
        let b = base64::engine::general_purpose::STANDARD.encode(head);
        Some(format!("{TEXT_SEALED}{}", &b[..20]))
    }

    /// Whether stored text must be rewritten to be under the current key.
    pub fn text_needs_rotation(&self, stored: &str) -> bool {
        if self.current.is_none() || stored.is_empty() {
            return false;
        }
        match stored.strip_prefix(TEXT_SEALED) {
            None => true,
            Some(b) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .map(|raw| self.needs_rotation(&raw))
                .unwrap_or(false),
        }
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
        let t = k2.seal_text("run:1", "db_password=hunter2").unwrap();
        assert!(t.starts_with("tffenc1:") && !t.contains("hunter2"));
        assert_eq!(k2.open_text("run:1", &t).unwrap(), "db_password=hunter2");
        assert!(k2.open_text("run:2", &t).is_err(), "bound to its run");
        assert!(!k2.text_needs_rotation(&t) && k2.text_needs_rotation("plain"));
        assert!(t.starts_with(&k2.sealed_text_prefix().unwrap()));
        assert!(!k1
            .seal_text("run:1", "x")
            .unwrap()
            .starts_with(&k2.sealed_text_prefix().unwrap()));
        let none = Keys::default();
        for odd in ["tffenc1:looks sealed", "plain", ""] {
            let stored = none.seal_text("x", odd).unwrap();
            assert_eq!(
                none.open_text("x", &stored).unwrap(),
                odd,
                "{odd:?} round-trips"
            );
        }
        assert_eq!(Keys::default().decrypt("ws", b"{}").unwrap(), b"{}");
    }
}
