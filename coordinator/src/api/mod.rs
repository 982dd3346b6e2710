//! The two gRPC services (agents, users) over shared coordinator state, and the conversions
//! between stored runs and their wire form.

pub mod agent;
pub mod user;

use crate::store::{Policy, Store};
use std::sync::Arc;
use tokio::sync::Notify;

/// What every handler needs.
#[derive(Clone)]
pub struct Shared {
    pub store: Store,
    pub policy: Policy,
    pub heartbeat_interval_ms: u32,
    pub public_http_url: String,
    pub max_bundle_bytes: u64,
    /// True when no users file is configured (names are taken as declared).
    pub users_open: bool,
    /// Wakes the outbox publisher after a commit that queued a task.
    pub wake: Arc<Notify>,
    /// The dead-letter queue, for admins.
    pub dead_letters: Arc<crate::queue::dead::DeadLetters>,
}
