//! The end-to-end fixture: a `Cluster` is a RabbitMQ vhost of its own, a database of its own
//! (SQLite file or a fresh PostgreSQL database), the real `tofuflow-coordinator` binary and any
//! number of real `tofuflow-agent` processes running the stand-in `tofu`. Everything is torn
//! down when the cluster is dropped. Waits are on conditions with deadlines, never bare sleeps.
//!
//! # Layout
//! - `cluster`: [`Cluster`] and [`ClusterBuilder`] (start, restart, kill the coordinator; run the
//!   CLI; wait on a run), [`Db`]
//! - `coordinators`: more coordinators on the cluster's database ([`Coordinator`])
//! - `inspect`: what only the coordinator's database can answer (task ids, epochs, attempts,
//!   stored bundles), on both databases
//! - `leaks`: looking for secrets in command lines, task messages and the whole database
//! - `agent`: real agent processes ([`Agent`], [`AgentOpts`], [`Cluster::agent`])
//! - `fake_agent`: an agent that is only a gRPC client, to claim and complete tasks by hand
//! - `rabbit_cluster`: a RabbitMQ cluster of N nodes started by the test ([`RabbitCluster`]);
//!   `pg_server`: a PostgreSQL server of its own the test may stop and start ([`PgServer`])
//! - `proxy`: a TCP link a test can cut; `broker`: stopping and starting RabbitMQ
//! - `api`: the HTTP JSON API as a client sees it (requests with a bearer token, SSE streams)
//! - `http`: plain HTTP (and HTTPS) requests and `/metrics`; `users`: `--users-file`s
//! - `wait`: [`wait_for`] a condition; `bins`: the built binaries, the examples, processes

mod agent;
mod api;
mod bins;
mod broker;
mod cluster;
mod coordinators;
mod fake_agent;
mod http;
mod inspect;
mod leaks;
mod pg_server;
mod proxy;
mod rabbit_cluster;
mod users;
mod wait;

pub use agent::{Agent, AgentOpts};
pub use api::Answer;
pub use bins::{bin_dir, example, free_port, pids_matching, repo_root};
pub use broker::{broker_ctl, BrokerBack, DeadMessage};
pub use cluster::{pg_admin_url, Cluster, ClusterBuilder, Db, TlsFiles, UserClient};
pub use coordinators::Coordinator;
pub use fake_agent::{
    claim_apply, claim_next, fake_agent, finish_plan_with_changes, next_task_message,
    open_envelope, AgentClient, Claimed,
};
pub use http::{http_get, http_request, https_get, mean_between, metric, sample_in};
pub use inspect::Attempt;
pub use leaks::{leaks, CmdlineScan};
pub use pg_server::PgServer;
pub use proxy::Proxy;
pub use rabbit_cluster::{node_ctl, RabbitCluster, RabbitNode};
pub use users::users_file;
pub use wait::wait_for;
