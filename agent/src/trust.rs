//! Whether a task message may be claimed: its signature is checked against the coordinator's
//! signing keys (fetched with `SigningKeys`, cached, and fetched again when a message names a
//! key the cache does not hold, as happens right after a rotation), then its expiry. Counts the
//! messages refused, for the heartbeat (and the coordinator's `/metrics`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};
use tofuflow_proto::signing::{self, PublicKey, Rejection};
use tofuflow_proto::v1;

/// The cached keys and the refusal counts, shared by the slots.
#[derive(Default)]
pub struct Trust {
    keys: tokio::sync::Mutex<HashMap<String, PublicKey>>,
    /// Tampered, expired, replayed.
    refused: [AtomicU64; 3],
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64
}

impl Trust {
    /// Verifies a signed message. The outer error means the coordinator could not be asked for
    /// its keys (try the message again later); the inner one why the message must not run.
    pub async fn check(
        &self,
        client: &crate::Client,
        agent_id: &str,
        signed: &v1::SignedEnvelope,
    ) -> Result<Result<v1::TaskEnvelope, Rejection>, String> {
        // One fetch at a time: slots that meet the same new key wait for the first one's.
        let mut keys = self.keys.lock().await;
        if !keys.contains_key(&signed.key_id) {
            let mut c = client.clone();
            let fetched = c
                .signing_keys(v1::SigningKeysRequest {
                    agent_id: agent_id.to_string(),
                })
                .await
                .map_err(|e| format!("cannot fetch the signing keys: {}", e.message()))?
                .into_inner();
            *keys = fetched
                .keys
                .into_iter()
                .map(|k| (k.key_id.clone(), PublicKey::from(k)))
                .collect();
            tracing::info!(keys = keys.len(), wanted = %signed.key_id, "signing keys fetched");
        }
        Ok(signing::verify(signed, keys.get(&signed.key_id), now_ms()))
    }

    /// Counts a refused message.
    pub fn count(&self, r: &Rejection) {
        let i = match r {
            Rejection::Tampered(_) => 0,
            Rejection::Expired(_) => 1,
            Rejection::Replayed(_) => 2,
        };
        self.refused[i].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts so far, as the heartbeat reports them.
    pub fn counts(&self) -> v1::EnvelopeRejections {
        let n = |i: usize| self.refused[i].load(Ordering::Relaxed);
        v1::EnvelopeRejections {
            tampered: n(0),
            expired: n(1),
            replayed: n(2),
        }
    }
}
