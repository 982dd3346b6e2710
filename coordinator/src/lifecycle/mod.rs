//! The life of a run, one command per file. Each opens a transaction on the store, asks the pure
//! decisions (`crate::runs`), writes the tables it names in its first line, and commits.

mod approve;
mod cancel;
mod claim;
mod complete;
pub mod drift;
pub mod events;
pub(crate) mod group_commit;
mod heartbeat;
mod idempotency;

pub use claim::ClaimOutcome;
pub use heartbeat::{HeartbeatAnswer, HeldLease};
mod identity;
pub mod policy;
pub use identity::{IssuedIdentity, RenewedToken};
mod reap;
mod report;
pub mod retention;
pub mod rollout;
pub mod schedule;
pub(crate) mod seen;
mod submit;
pub mod ttl;
pub mod workflow;
mod workflow_request;
mod workflow_run;
mod workflow_step;
