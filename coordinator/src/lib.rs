//! The tofuflow coordinator: keeps runs, plans, state and audit in a database, publishes tasks onto
//! RabbitMQ through an outbox, grants leases to agents over gRPC, reaps expired leases, and serves
//! OpenTofu's `http` state backend, health and metrics over HTTP.

pub mod api;
pub mod auth;
pub mod config;
pub mod error;
pub mod http;
pub mod leases;
pub mod queue;
pub mod runs;
pub mod state_backend;
pub mod store;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use tofuflow_proto::v1::agent_service_server::AgentServiceServer;
use tofuflow_proto::v1::user_service_server::UserServiceServer;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::Config;

/// Runs the coordinator until `shutdown` is cancelled.
pub async fn run(cfg: Config, shutdown: CancellationToken) -> Result<(), String> {
    for p in &cfg.pools {
        queue::valid_pool(p)?;
    }
    let auth = auth::Auth::load(
        &cfg.agent_token,
        &cfg.agent_pool_token,
        cfg.users_file.as_deref(),
    )?;
    if auth.agents_open() {
        tracing::warn!("the agent API is open: set --agent-token (TOFUFLOW_AGENT_TOKEN) so only your agents can claim tasks and their credentials");
    }
    if auth.users_open() {
        tracing::warn!(
            "the user API is open and trusts declared names: set --users-file for tokens and roles"
        );
    }
    let keys = cfg.keys()?;
    let mut store = store::Store::connect(&cfg.database_url)
        .await
        .map_err(|e| e.to_string())?;
    let encrypted = keys.current.is_some();
    let rotated = store
        .set_keys(keys, cfg.state_versions_keep)
        .await
        .map_err(|e| e.to_string())?;
    if rotated > 0 {
        tracing::info!(
            versions = rotated,
            "state versions re-encrypted under the current --state-key"
        );
    }
    if !encrypted {
        tracing::warn!("state is stored unencrypted: set --state-key (TOFUFLOW_STATE_KEY) to encrypt it at rest");
    }
    let grpc = tokio::net::TcpListener::bind(&cfg.grpc_listen)
        .await
        .map_err(|e| format!("cannot listen on {} for gRPC: {e} (is another coordinator running? use --grpc-listen)", cfg.grpc_listen))?;
    let http_l = tokio::net::TcpListener::bind(&cfg.http_listen)
        .await
        .map_err(|e| {
            format!(
                "cannot listen on {} for HTTP: {e} (use --http-listen)",
                cfg.http_listen
            )
        })?;
    let grpc_addr = grpc.local_addr().map_err(|e| e.to_string())?;
    let http_addr = http_l.local_addr().map_err(|e| e.to_string())?;
    let public_http_url = cfg
        .public_http_url
        .clone()
        .unwrap_or_else(|| format!("http://{http_addr}"));
    let policy = cfg.policy();
    let wake = Arc::new(tokio::sync::Notify::new());
    let amqp_ready = Arc::new(AtomicBool::new(false));
    let tracker = TaskTracker::new();

    tracker.spawn(queue::run_publisher(
        store.clone(),
        cfg.amqp_url.clone(),
        queue::Topology {
            pools: cfg.pools.clone(),
            dead_letter_max: cfg.dead_letter_max,
        },
        wake.clone(),
        amqp_ready.clone(),
        shutdown.child_token(),
    ));
    tracker.spawn(leases::run_reaper(
        store.clone(),
        policy.clone(),
        cfg.reap_interval,
        wake.clone(),
        shutdown.child_token(),
    ));

    let dead_letters = Arc::new(queue::dead::DeadLetters::new(
        &cfg.amqp_url,
        cfg.dead_letter_max,
    ));
    let shared = api::Shared {
        dead_letters: dead_letters.clone(),
        store: store.clone(),
        policy,
        heartbeat_interval_ms: cfg.heartbeat_interval.as_millis() as u32,
        public_http_url,
        max_bundle_bytes: cfg.max_bundle_bytes,
        users_open: auth.users_open(),
        wake,
    };
    let (health, health_svc) = tonic_health::server::health_reporter();
    health
        .set_serving::<AgentServiceServer<api::agent::AgentApi>>()
        .await;
    health
        .set_serving::<UserServiceServer<api::user::UserApi>>()
        .await;
    let max = tofuflow_proto::MAX_MESSAGE_BYTES;
    let (a1, a2) = (auth.clone(), auth.clone());
    let agent_svc = tonic::service::interceptor::InterceptedService::new(
        AgentServiceServer::new(api::agent::AgentApi::new(shared.clone()))
            .max_decoding_message_size(max),
        move |req| a1.check_agent(req),
    );
    let user_svc = tonic::service::interceptor::InterceptedService::new(
        UserServiceServer::new(api::user::UserApi { shared }).max_decoding_message_size(max),
        move |req| a2.check_user(req),
    );
    let sd = shutdown.clone();
    tracker.spawn(async move {
        let r = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(10)))
            .http2_keepalive_timeout(Some(Duration::from_secs(5)))
            .add_service(health_svc)
            .add_service(agent_svc)
            .add_service(user_svc)
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(grpc),
                sd.cancelled_owned(),
            )
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "gRPC server stopped");
        }
    });
    let app = http::App {
        store,
        amqp_ready,
        auth_failures: auth.failures.clone(),
        dead_letters,
    };
    let sd = shutdown.clone();
    tracker.spawn(async move {
        let r = axum::serve(
            http_l,
            http::router(app).into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(sd.cancelled_owned())
        .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });
    tracing::info!(grpc = %grpc_addr, http = %http_addr, database = %queue::redact(&cfg.database_url), "coordinator listening");
    if let Some(path) = &cfg.ready_file {
        let tmp = path.with_extension("tmp");
        let body = serde_json::json!({"grpc": grpc_addr.to_string(), "http": http_addr.to_string(), "pid": std::process::id()});
        std::fs::write(&tmp, body.to_string())
            .and_then(|_| std::fs::rename(&tmp, path))
            .map_err(|e| format!("cannot write ready file {}: {e}", path.display()))?;
    }
    tracker.close();
    shutdown.cancelled().await;
    tracing::info!("coordinator shutting down");
    if tokio::time::timeout(Duration::from_secs(10), tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("some coordinator tasks did not stop within 10s");
    }
    Ok(())
}
