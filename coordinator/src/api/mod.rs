//! The two gRPC services (agents in [`agent`], users in [`user`]) over shared coordinator state;
//! every conversion between their wire types and the coordinator's own is in [`convert`].

pub mod agent;
pub mod convert;
pub mod user;

use crate::store::{Policy, Store};
use std::sync::Arc;

/// Registered agents' credentials by agent id.
pub type AgentCredentials =
    Arc<std::sync::Mutex<std::collections::HashMap<String, crate::store::AgentCredential>>>;

/// What every handler needs.
#[derive(Clone)]
pub struct Shared {
    /// Runs, tasks, leases, blobs and state.
    pub store: Store,
    /// Lease and timeout settings the store's decisions use.
    pub policy: Policy,
    /// Told to agents at registration.
    pub heartbeat_interval_ms: u32,
    /// How agents reach the HTTP side (the state backend's address in their task specs).
    pub public_http_url: String,
    /// Largest bundle or artifact accepted.
    pub max_bundle_bytes: u64,
    /// `--insecure-open`: no credential is checked, names are taken as declared.
    pub open: bool,
    /// Failed authentications (the handlers' token look-ups count here too).
    pub failures: Arc<crate::auth::Failures>,
    /// Default lifetime of a created API token (`--token-ttl`).
    pub token_ttl_ms: i64,
    /// Registered agents' credentials (a cache of the store's, dropped on revocation).
    pub agent_credentials: AgentCredentials,
    /// The dead-letter queue, for admins.
    pub dead_letters: Arc<crate::queue::dead::DeadLetters>,
    /// Wakes the webhook delivery loop (after a test send or a redelivery is stored).
    pub webhook_wake: Arc<tokio::sync::Notify>,
}
