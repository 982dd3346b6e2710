//! The store: runs, tasks, leases, outbox, transitions, events, blobs, agents and state versions,
//! on SQLite (one file, WAL, the default) or PostgreSQL (by URL), through one set of SQL.
//!
//! Every multi-row change is one transaction, and every state change is a compare-and-set
//! (`UPDATE ... WHERE state = <expected>`), so two coordinators on one PostgreSQL, or a late
//! report racing the lease reaper, can never both win.

pub mod crypt;
pub mod schema;
mod sqlite_file;

mod access;
mod agents;
mod audit;
mod blobs;
mod connections;
mod drift;
mod environments;
mod identities;
mod join_tokens;
mod leader;
mod logs;
mod oidc_keys;
mod outbox;
mod policies;
mod rows;
mod rules;
mod runs;
mod schedules;
mod signing_keys;
mod state_locks;
mod state_versions;
mod tasks;
mod transitions;
mod tx;
mod web_sessions;
mod webhooks;
mod workflows;

pub use access::*;
pub use agents::*;
pub use audit::AuditFilter;
pub(crate) use audit::{append_audit, transition_entry};
pub use connections::*;
pub use drift::*;
pub use environments::*;
pub use identities::*;
pub use join_tokens::*;
pub use leader::*;
pub use logs::*;
pub use oidc_keys::*;
pub use outbox::*;
pub use policies::*;
pub(crate) use rows::*;
pub use rules::*;
pub use runs::*;
pub use schedules::*;
pub use signing_keys::*;
pub use state_locks::*;
pub use state_versions::*;
pub use tasks::*;
pub use transitions::*;
pub use tx::*;
pub use webhooks::*;
pub use workflows::*;

use crate::error::{Error, Result};
use crate::runs::variables::Declared;
use crate::runs::{Phase, RunKind, RunState};
use base64::Engine;
use sha2::{Digest, Sha256};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyConnection, AnyPool, Row};
use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64
}

pub fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// What changed about a run (for watchers in this process).
#[derive(Clone, Debug)]
pub struct RunChange {
    pub run_id: String,
    /// The run itself (state, transitions); false when only log lines were added.
    pub state: bool,
}

/// Knobs the store's decisions depend on.
#[derive(Clone, Debug)]
pub struct Policy {
    pub lease_ttl_ms: i64,
    /// How long an agent's credential lives without a heartbeat renewing it.
    pub agent_credential_ttl_ms: i64,
    pub max_plan_attempts: u32,
    pub queue_timeout_ms: i64,
    pub approval_timeout_ms: i64,
    /// How long one plan policy's evaluation may take (`--policy-timeout`).
    pub plan_policy_timeout_ms: i64,
    /// How long a finished run's log is kept (`--log-retention`; 0: forever).
    pub log_retention_ms: i64,
}

#[derive(Clone)]
pub struct Store {
    pub(crate) pool: AnyPool,
    pub(crate) postgres: bool,
    pub(crate) changes: tokio::sync::broadcast::Sender<RunChange>,
    pub(crate) keys: std::sync::Arc<crypt::Keys>,
    /// State versions kept per workspace (the newest N; 0 keeps all).
    pub(crate) keep_versions: i64,
    /// What happens around a lifecycle commit (`lifecycle/events.rs`).
    pub(crate) effects: crate::lifecycle::events::Effects,
    /// Signs task messages (`signing_keys.rs`).
    pub(crate) signer: std::sync::Arc<Signer>,
    /// Signs ID tokens (`oidc_keys.rs`).
    pub(crate) oidc: std::sync::Arc<IdTokenSigner>,
    /// Where calls wait for their group commit, once it runs (`lifecycle/group_commit.rs`).
    pub(crate) group_commit: crate::lifecycle::group_commit::Queue,
    /// Idle heartbeats waiting to be written together (`lifecycle/seen.rs`).
    pub(crate) seen: crate::lifecycle::seen::SeenAgents,
}

pub(crate) fn s(row: &sqlx::any::AnyRow, c: &str) -> Result<String> {
    Ok(row.try_get::<String, _>(c)?)
}

pub(crate) fn i(row: &sqlx::any::AnyRow, c: &str) -> Result<i64> {
    Ok(row.try_get::<i64, _>(c)?)
}

/// A nullable integer column; NULL reads as 0 (the "never" of times).
pub(crate) fn i0(row: &sqlx::any::AnyRow, c: &str) -> Result<i64> {
    Ok(row.try_get::<Option<i64>, _>(c)?.unwrap_or(0))
}

/// A JSON column, decoded; a damaged one is an error naming table and column (never defaults:
/// a run must not plan with default variables because its row was damaged).
pub(crate) fn json_col<T: serde::de::DeserializeOwned>(
    text: &str,
    table: &str,
    col: &str,
) -> Result<T> {
    serde_json::from_str(text)
        .map_err(|e| Error::Internal(format!("{table}.{col} holds damaged JSON: {e}")))
}

pub(crate) fn json_err(e: serde_json::Error) -> Error {
    Error::Internal(format!("cannot encode JSON: {e}"))
}

/// A fresh unguessable secret (256 bits from the OS's generator, hex).
pub fn secret() -> String {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("the operating system's random generator");
    hex::encode(b)
}

impl Store {
    /// Connects (creating a SQLite file on first start) and applies migrations.
    pub async fn connect(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let postgres = url.starts_with("postgres");
        if let Some(file) = sqlite_file::path_of(url) {
            // Before sqlx opens it with mode=rwc, which would create it world-readable.
            sqlite_file::prepare(&file)?;
        }
        let url = if let Some(path) = url.strip_prefix("sqlite://") {
            if path.contains('?') {
                url.to_string()
            } else {
                format!("sqlite://{path}?mode=rwc")
            }
        } else {
            url.to_string()
        };
        let opts = AnyConnectOptions::from_str(&url).map_err(|e| {
            Error::InvalidInput(format!(
                "bad database URL {url:?}: {e} (use sqlite://PATH or postgres://USER@HOST/DB)"
            ))
        })?;
        // SQLite takes one writer at a time: one connection avoids SQLITE_BUSY on upgrades (its
        // callers queue for it, hence the long wait). A PostgreSQL that is down or restarting
        // is reported after 10 s as unavailable, instead of holding every caller for 30 s.
        let pool = AnyPoolOptions::new()
            .max_connections(if postgres { 10 } else { 1 })
            .acquire_timeout(std::time::Duration::from_secs(if postgres { 10 } else { 30 }))
            .connect_with(opts)
            .await
            .map_err(|e| {
                Error::Internal(format!(
                    "cannot open the database at {url}: {e}; for PostgreSQL check that it is running and the database exists"
                ))
            })?;
        if !postgres {
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await?;
            sqlx::query("PRAGMA busy_timeout = 10000")
                .execute(&pool)
                .await?;
        }
        let store = Store {
            pool,
            postgres,
            changes: tokio::sync::broadcast::channel(1024).0,
            keys: Default::default(),
            keep_versions: 0,
            effects: Default::default(),
            signer: Default::default(),
            oidc: Default::default(),
            group_commit: Default::default(),
            seen: Default::default(),
        };
        store.migrate().await?;
        Ok(store)
    }

    pub(crate) async fn migrate(&self) -> Result<()> {
        let mut c = self.pool.acquire().await?;
        sqlx::query("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_ms BIGINT NOT NULL)")
            .execute(&mut *c)
            .await?;
        if self.postgres {
            // Two coordinators starting together must not both migrate.
            sqlx::query("SELECT pg_advisory_lock(7700)")
                .execute(&mut *c)
                .await?;
        }
        let result = async {
            for (version, sql) in schema::MIGRATIONS {
                let done = sqlx::query("SELECT version FROM schema_migrations WHERE version = $1")
                    .bind(*version)
                    .fetch_optional(&mut *c)
                    .await?;
                if done.is_some() {
                    continue;
                }
                let mut tx = sqlx::Connection::begin(&mut *c).await?;
                for stmt in schema::render(sql, self.postgres).split(';') {
                    if !stmt.trim().is_empty() {
                        sqlx::query(stmt).execute(&mut *tx).await?;
                    }
                }
                sqlx::query("INSERT INTO schema_migrations (version, applied_ms) VALUES ($1, $2)")
                    .bind(*version)
                    .bind(now_ms())
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
            }
            Ok::<_, Error>(())
        }
        .await;
        if self.postgres {
            sqlx::query("SELECT pg_advisory_unlock(7700)")
                .execute(&mut *c)
                .await?;
        }
        result
    }

    pub fn is_postgres(&self) -> bool {
        self.postgres
    }

    /// A receiver of run ids whose state or logs changed (in this process).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<RunChange> {
        self.changes.subscribe()
    }

    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// [`Store::ping`] within `limit` (a readiness probe must answer, not wait for the pool).
    pub async fn ping_within(&self, limit: std::time::Duration) -> Result<()> {
        match tokio::time::timeout(limit, self.ping()).await {
            Ok(r) => r,
            Err(_) => Err(Error::Internal(format!(
                "no answer within {} ms",
                limit.as_millis()
            ))),
        }
    }

    /// Sets the encryption keys and rotates every stored state version under the current key
    /// (plaintext or an old key → current). Returns how many versions were rewritten.
    pub async fn set_keys(&mut self, keys: crypt::Keys, keep_versions: i64) -> Result<u64> {
        self.keys = std::sync::Arc::new(keys);
        self.keep_versions = keep_versions;
        if self.keys.current.is_none() {
            return Ok(0);
        }
        let n = self.rotate_state().await?
            + self.rotate_blobs().await?
            + self.rotate_runs().await?
            + self.rotate_events().await?
            + self.rotate_signing_seals().await?
            + self.rotate_oidc_seals().await?
            + self.rotate_connection_seals().await?
            + self.rotate_webhook_seals().await?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
