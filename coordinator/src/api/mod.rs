//! The two gRPC services (agents in [`agent`], users in [`user`]) over shared coordinator state;
//! every conversion between their wire types and the coordinator's own is in [`convert`].

pub mod agent;
pub mod convert;
pub mod user;

use crate::store::{Policy, Store};
use std::sync::Arc;

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
    /// True when no users file is configured (names are taken as declared).
    pub users_open: bool,
    /// The dead-letter queue, for admins.
    pub dead_letters: Arc<crate::queue::dead::DeadLetters>,
}
