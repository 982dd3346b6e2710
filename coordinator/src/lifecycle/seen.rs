//! Idle agents' heartbeats, written together: a heartbeat holding no lease is answered from
//! memory and noted; once a second every agent noted since is written in one transaction (its
//! last-seen time, state and renewed credential), so a fleet of idle agents costs one commit a
//! second, not one per heartbeat. The write also finds agents revoked meanwhile (on any
//! coordinator): their next heartbeat is answered "revoked". A heartbeat holding leases is
//! written at once (`heartbeat.rs`): its leases must be renewed before it is answered.
//! Started by `lib.rs`; without it (store tests) every heartbeat writes at once.

use crate::error::Result;
use crate::store::*;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How often noted heartbeats are written.
const EVERY: Duration = Duration::from_secs(1);
/// Agents in one UPDATE, at most.
const CHUNK: usize = 500;

/// Idle heartbeats noted since the last write, and agents that write found revoked.
#[derive(Default)]
pub(crate) struct Seen {
    running: bool,
    /// Agent → draining, as its last heartbeat said.
    noted: BTreeMap<String, bool>,
    revoked: HashSet<String>,
}

pub(crate) type SeenAgents = Arc<Mutex<Seen>>;

impl Store {
    /// Starts writing idle heartbeats together, once a second until `stop` (then once more).
    /// `credential_ttl_ms`: how long each write renews an agent's credential.
    pub fn start_heartbeat_writes(
        &self,
        tracker: &TaskTracker,
        credential_ttl_ms: i64,
        stop: CancellationToken,
    ) {
        if let Ok(mut s) = self.seen.lock() {
            s.running = true;
        }
        let store = self.clone();
        tracker.spawn(async move {
            loop {
                let stopped = tokio::select! {
                    _ = tokio::time::sleep(EVERY) => false,
                    _ = stop.cancelled() => true,
                };
                if let Err(e) = store.write_seen(credential_ttl_ms).await {
                    tracing::warn!(error = %e, "idle agents' heartbeats not written; next second again");
                }
                if stopped {
                    return;
                }
            }
        });
    }

    /// An idle heartbeat, noted for the next write: `None` when the writes do not run (write
    /// it now), `Some(revoked)` otherwise.
    pub(crate) fn note_seen(&self, agent_id: &str, draining: bool) -> Option<bool> {
        let mut s = self.seen.lock().ok()?;
        if !s.running {
            return None;
        }
        if s.revoked.contains(agent_id) {
            return Some(true);
        }
        s.noted.insert(agent_id.to_string(), draining);
        Some(false)
    }

    /// Drops what was noted for `agent_id` (a heartbeat written at once is newer).
    pub(crate) fn forget_seen(&self, agent_id: &str) {
        if let Ok(mut s) = self.seen.lock() {
            s.noted.remove(agent_id);
        }
    }

    /// Writes every agent noted since the last write, in one transaction.
    async fn write_seen(&self, credential_ttl_ms: i64) -> Result<()> {
        let noted = match self.seen.lock() {
            Ok(mut s) => std::mem::take(&mut s.noted),
            Err(_) => return Ok(()),
        };
        if noted.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        let expires = now + credential_ttl_ms;
        let mut tx = self.pool.begin().await?;
        let mut written = HashSet::new();
        for draining in [false, true] {
            let ids: Vec<&String> = noted
                .iter()
                .filter(|(_, d)| **d == draining)
                .map(|(id, _)| id)
                .collect();
            for chunk in ids.chunks(CHUNK) {
                let marks: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 4)).collect();
                let sql = format!("UPDATE agents SET last_seen_ms = $1, state = $2, credential_expires_ms = $3 WHERE id IN ({}) AND revoked_ms IS NULL RETURNING id", marks.join(", "));
                let mut q = sqlx::query_scalar::<_, String>(&sql)
                    .bind(now)
                    .bind(if draining { "draining" } else { "active" })
                    .bind(expires);
                for id in chunk {
                    q = q.bind(id.as_str());
                }
                written.extend(q.fetch_all(&mut *tx).await?);
            }
        }
        tx.commit().await?;
        if let Ok(mut s) = self.seen.lock() {
            s.revoked
                .extend(noted.into_keys().filter(|id| !written.contains(id)));
        }
        Ok(())
    }
}
