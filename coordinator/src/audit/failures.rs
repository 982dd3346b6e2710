//! Failed authentications in the audit log, aggregated so a flood cannot grow the table without
//! bound: at most one `auth_failed` entry per (API, peer) per minute, carrying how many failures
//! it stands for (the first of a minute is written at once; the ones after it are counted into
//! the next entry for that peer). Past [`MAX_PEERS`] peers in a minute, new peers share one
//! entry per API (peer `*`), so the table grows by at most a few thousand entries a minute
//! whatever the attack.

use super::{AuditEntry, AuditKind};
use crate::store::{now_ms, Store};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// One entry per (API, peer) per this many milliseconds.
pub const WINDOW_MS: i64 = 60_000;

/// Peers tracked at once; more share the peer `*`.
pub const MAX_PEERS: usize = 1000;

/// A (API, peer)'s current window: when its entry was written, failures since.
#[derive(Clone, Copy, Debug)]
struct Window {
    written_ms: i64,
    since: u64,
}

/// Writes failed authentications to the audit log once a store is attached (and counts them
/// until then, writing nothing).
#[derive(Default)]
pub struct FailureLog {
    store: OnceLock<Store>,
    windows: Mutex<HashMap<(String, String), Window>>,
}

impl std::fmt::Debug for FailureLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailureLog")
            .field("attached", &self.store.get().is_some())
            .finish()
    }
}

impl FailureLog {
    /// Writes entries to `store` from now on.
    pub fn attach(&self, store: Store) {
        let _ = self.store.set(store);
    }

    /// Records one failed authentication on `api` from `peer` (an address, with or without its
    /// port); writes an entry in the background when this (API, address) has none in the last
    /// minute. Never blocks the caller.
    pub fn record(&self, api: &str, peer: &str, why: &str) {
        let Some(store) = self.store.get() else {
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // A client reconnects from a new port each time: the address is the peer.
        let peer = peer
            .parse::<std::net::SocketAddr>()
            .map_or_else(|_| peer.to_string(), |a| a.ip().to_string());
        let admitted = match self.windows.lock() {
            Ok(mut w) => admit(&mut w, api, &peer, now_ms()),
            Err(_) => None,
        };
        let Some((peer, count)) = admitted else {
            return;
        };
        let entry = AuditEntry::new(AuditKind::AuthFailed, "").detail(serde_json::json!({
            "api": api, "peer": peer, "reason": why, "count": count,
        }));
        let store = store.clone();
        rt.spawn(async move {
            if let Err(e) = store.audit_now(entry).await {
                tracing::error!(error = %e, "cannot write the audit entry of a failed authentication");
            }
        });
    }
}

/// Whether a failure on (api, peer) at `now` gets an entry: `Some((peer as recorded, failures
/// it stands for))`, or `None` when it is only counted. Pure, over the windows.
fn admit(
    windows: &mut HashMap<(String, String), Window>,
    api: &str,
    peer: &str,
    now: i64,
) -> Option<(String, u64)> {
    let mut key = (api.to_string(), peer.to_string());
    if !windows.contains_key(&key) && windows.len() >= MAX_PEERS {
        // Forget quiet peers; if still full, new peers share one window.
        windows.retain(|_, w| now - w.written_ms < WINDOW_MS || w.since > 0);
        if windows.len() >= MAX_PEERS {
            key.1 = "*".to_string();
        }
    }
    let peer = key.1.clone();
    match windows.get_mut(&key) {
        Some(w) if now - w.written_ms < WINDOW_MS => {
            w.since += 1;
            None
        }
        Some(w) => {
            let count = w.since + 1;
            *w = Window {
                written_ms: now,
                since: 0,
            };
            Some((peer, count))
        }
        None => {
            windows.insert(
                key,
                Window {
                    written_ms: now,
                    since: 0,
                },
            );
            Some((peer, 1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_entry_per_peer_per_minute_with_a_count() {
        let mut w = HashMap::new();
        assert_eq!(admit(&mut w, "user", "p1", 0), Some(("p1".into(), 1)));
        for t in 1..=99 {
            assert_eq!(admit(&mut w, "user", "p1", t * 10), None);
        }
        assert_eq!(
            admit(&mut w, "state", "p1", 5),
            Some(("p1".into(), 1)),
            "per API"
        );
        assert_eq!(
            admit(&mut w, "user", "p2", 5),
            Some(("p2".into(), 1)),
            "per peer"
        );
        assert_eq!(
            admit(&mut w, "user", "p1", WINDOW_MS),
            Some(("p1".into(), 100)),
            "the next minute's entry counts the ones in between"
        );
    }

    #[test]
    fn a_flood_from_many_peers_is_bounded() {
        let mut w = HashMap::new();
        let mut entries = 0;
        for p in 0..10 * MAX_PEERS {
            if admit(&mut w, "user", &format!("10.0.{}.{}", p / 256, p % 256), 1).is_some() {
                entries += 1;
            }
        }
        assert_eq!(entries, MAX_PEERS + 1, "new peers beyond the cap share `*`");
        assert!(w.len() <= MAX_PEERS + 1);
    }
}
