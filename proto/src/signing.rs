//! Signed task messages: which bytes the coordinator signs (Ed25519) and how an agent checks a
//! `SignedEnvelope` before it claims the task in it. Pure functions, shared by the coordinator
//! (signing), the agent (verifying) and the tests.
//!
//! The signature covers, in this order: a domain tag, the envelope id, the key id (each
//! length-prefixed), the expiry (big-endian i64) and the encoded `TaskEnvelope`. Changing any of
//! them, or signing a message with a key the coordinator does not list, makes it "tampered".

use crate::v1;
use prost::Message;
/// The signing key pair type (re-exported so signers need no direct `ring` dependency).
pub use ring::signature::{Ed25519KeyPair, KeyPair};
use ring::signature::{UnparsedPublicKey, ED25519};

/// Header naming why an agent dead-lettered a task message: `tampered`, `expired` or `replayed`.
pub const DEAD_REASON_HEADER: &str = "x-tofuflow-dead-reason";
/// Header with the human-readable detail of [`DEAD_REASON_HEADER`].
pub const DEAD_DETAIL_HEADER: &str = "x-tofuflow-dead-detail";
/// Header naming the queue the message was taken from before it was dead-lettered.
pub const DEAD_QUEUE_HEADER: &str = "x-tofuflow-dead-queue";
/// Header naming the agent that dead-lettered it.
pub const DEAD_AGENT_HEADER: &str = "x-tofuflow-dead-agent";

const DOMAIN: &[u8] = b"tofuflow.v1.SignedEnvelope\n";

/// Why a signed task message must not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The signature does not verify, the key is unknown or retired, or the message is malformed.
    Tampered(String),
    /// Its expiry has passed.
    Expired(String),
    /// The coordinator refused the claim: already claimed, or superseded by a newer envelope.
    Replayed(String),
}

impl Rejection {
    /// The reason's one-word name (the dead-letter header and the metric label).
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::Tampered(_) => "tampered",
            Rejection::Expired(_) => "expired",
            Rejection::Replayed(_) => "replayed",
        }
    }

    /// What exactly was wrong.
    pub fn detail(&self) -> &str {
        match self {
            Rejection::Tampered(d) | Rejection::Expired(d) | Rejection::Replayed(d) => d,
        }
    }
}

/// A public key an envelope may be verified with (as `SigningKeys` lists it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub key_id: String,
    pub public_key: Vec<u8>,
    /// 0 while the key may still sign; else the time after which it verifies nothing.
    pub verify_until_ms: i64,
}

impl From<v1::SigningKey> for PublicKey {
    fn from(k: v1::SigningKey) -> PublicKey {
        PublicKey {
            key_id: k.key_id,
            public_key: k.public_key,
            verify_until_ms: k.verify_until_unix_ms,
        }
    }
}

/// The bytes a signature covers.
pub fn signed_bytes(envelope_id: &str, key_id: &str, expires_ms: i64, envelope: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(DOMAIN.len() + 16 + envelope_id.len() + key_id.len());
    out.extend_from_slice(DOMAIN);
    for part in [envelope_id.as_bytes(), key_id.as_bytes()] {
        out.extend_from_slice(&(part.len() as u32).to_be_bytes());
        out.extend_from_slice(part);
    }
    out.extend_from_slice(&expires_ms.to_be_bytes());
    out.extend_from_slice(envelope);
    out
}

/// A fresh Ed25519 key: its PKCS#8 document (the secret to keep) and its raw public key.
pub fn generate_key() -> Result<(Vec<u8>, Vec<u8>), String> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|_| "cannot generate an Ed25519 key: no randomness".to_string())?;
    let pair = key_pair(pkcs8.as_ref())?;
    Ok((pkcs8.as_ref().to_vec(), pair.public_key().as_ref().to_vec()))
}

/// The key pair of a PKCS#8 document made by [`generate_key`].
pub fn key_pair(pkcs8: &[u8]) -> Result<Ed25519KeyPair, String> {
    Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|e| format!("not an Ed25519 PKCS#8 key: {e}"))
}

/// A key's id: `ed25519-` and the first 8 bytes of the SHA-256 of its public key, in hex.
pub fn key_id(public_key: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, public_key);
    let hex: String = d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("ed25519-{hex}")
}

/// Signs an encoded `TaskEnvelope` as message `envelope_id`, valid until `expires_ms`.
pub fn sign(
    pair: &Ed25519KeyPair,
    key_id: &str,
    envelope_id: &str,
    expires_ms: i64,
    envelope: Vec<u8>,
) -> v1::SignedEnvelope {
    let sig = pair.sign(&signed_bytes(envelope_id, key_id, expires_ms, &envelope));
    v1::SignedEnvelope {
        envelope,
        key_id: key_id.to_string(),
        signature: sig.as_ref().to_vec(),
        expires_unix_ms: expires_ms,
        envelope_id: envelope_id.to_string(),
    }
}

/// Checks a signed message with `key` (the listed key of its key id, if any) at `now_ms`:
/// the signature first (nothing else of an unsigned message is believed), then the key's
/// validity and the expiry; returns the task envelope inside.
pub fn verify(
    signed: &v1::SignedEnvelope,
    key: Option<&PublicKey>,
    now_ms: i64,
) -> Result<v1::TaskEnvelope, Rejection> {
    let Some(key) = key else {
        return Err(Rejection::Tampered(format!(
            "signed with key {:?}, which the coordinator does not list",
            signed.key_id
        )));
    };
    let bytes = signed_bytes(
        &signed.envelope_id,
        &signed.key_id,
        signed.expires_unix_ms,
        &signed.envelope,
    );
    if key.key_id != signed.key_id
        || UnparsedPublicKey::new(&ED25519, &key.public_key)
            .verify(&bytes, &signed.signature)
            .is_err()
    {
        return Err(Rejection::Tampered(format!(
            "signature does not verify with key {}",
            signed.key_id
        )));
    }
    if signed.envelope_id.is_empty() {
        return Err(Rejection::Tampered("signed envelope without an id".into()));
    }
    if signed.expires_unix_ms <= now_ms {
        return Err(Rejection::Expired(format!(
            "envelope {} expired {} ms ago",
            signed.envelope_id,
            now_ms - signed.expires_unix_ms
        )));
    }
    if key.verify_until_ms != 0 && key.verify_until_ms < now_ms {
        return Err(Rejection::Tampered(format!(
            "key {} was retired and verifies nothing after {}",
            key.key_id, key.verify_until_ms
        )));
    }
    v1::TaskEnvelope::decode(signed.envelope.as_slice())
        .map_err(|e| Rejection::Tampered(format!("signed bytes are not a TaskEnvelope: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> (Ed25519KeyPair, PublicKey) {
        let (pkcs8, public) = generate_key().unwrap();
        let id = key_id(&public);
        (
            key_pair(&pkcs8).unwrap(),
            PublicKey {
                key_id: id,
                public_key: public,
                verify_until_ms: 0,
            },
        )
    }

    fn envelope() -> Vec<u8> {
        v1::TaskEnvelope {
            protocol_version: crate::PROTOCOL_VERSION,
            task_id: "t".into(),
            attempt: 1,
            pool: "default".into(),
            ..Default::default()
        }
        .encode_to_vec()
    }

    #[test]
    fn a_signed_envelope_verifies_until_it_expires() {
        let (pair, public) = key();
        let s = sign(&pair, &public.key_id, "e1", 2_000, envelope());
        let got = verify(&s, Some(&public), 1_000).unwrap();
        assert_eq!(got.task_id, "t");
        let e = verify(&s, Some(&public), 2_000).unwrap_err();
        assert_eq!(e.reason(), "expired", "{e:?}");
    }

    #[test]
    fn any_change_to_a_signed_field_is_tampering() {
        let (pair, public) = key();
        let s = sign(&pair, &public.key_id, "e1", 2_000, envelope());
        let mut body = s.clone();
        let last = body.envelope.len() - 1;
        body.envelope[last] ^= 1;
        let mut later = s.clone();
        later.expires_unix_ms += 3_600_000;
        let mut other_id = s.clone();
        other_id.envelope_id = "e2".into();
        let mut sig = s.clone();
        sig.signature[0] ^= 0x80;
        for bad in [body, later, other_id, sig] {
            let e = verify(&bad, Some(&public), 1_000).unwrap_err();
            assert_eq!(e.reason(), "tampered", "{e:?}");
        }
    }

    #[test]
    fn unknown_other_and_retired_keys_are_refused() {
        let (pair, public) = key();
        let (_, other) = key();
        let s = sign(&pair, &public.key_id, "e1", 2_000, envelope());
        assert_eq!(verify(&s, None, 1_000).unwrap_err().reason(), "tampered");
        let impostor = PublicKey {
            key_id: public.key_id.clone(),
            ..other
        };
        assert_eq!(
            verify(&s, Some(&impostor), 1_000).unwrap_err().reason(),
            "tampered"
        );
        let retired = PublicKey {
            verify_until_ms: 900,
            ..public.clone()
        };
        assert_eq!(
            verify(&s, Some(&retired), 1_000).unwrap_err().reason(),
            "tampered"
        );
        let overlapping = PublicKey {
            verify_until_ms: 2_000,
            ..public
        };
        assert!(verify(&s, Some(&overlapping), 1_000).is_ok());
    }

    #[test]
    fn key_ids_name_the_public_key() {
        let (_, a) = key();
        let (_, b) = key();
        assert!(a.key_id.starts_with("ed25519-") && a.key_id.len() == 24);
        assert_ne!(a.key_id, b.key_id);
        assert_eq!(key_id(&a.public_key), a.key_id);
    }
}
