//! The tofuflow coordinator: keeps runs, plans, state and audit in a database, publishes tasks onto
//! RabbitMQ through an outbox, grants leases to agents over gRPC, reaps expired leases, and serves
//! OpenTofu's `http` state backend, health and metrics over HTTP.

pub mod error;
pub mod runs;
pub mod store;
