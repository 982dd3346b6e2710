//! The tofuflow coordinator: keeps runs, plans, state and audit in a database, publishes tasks onto
//! RabbitMQ through an outbox, grants leases to agents over gRPC, reaps expired leases, and serves
//! OpenTofu's `http` state backend, health and metrics over HTTP.
//!
//! This file only wires the parts together; where each part lives: `api/` (the gRPC services),
//! `auth/` (who is calling, and what they may do), `state_backend/` (OpenTofu's `http` backend),
//! `http/` (the HTTP routes, health, metrics), `runs/` (the run state machine), `queue/`
//! (RabbitMQ), `store/` (persistence), `leases` (the reaper).

pub mod api;
pub mod audit;
pub mod auth;
pub mod config;
pub mod error;
pub mod http;
pub mod leases;
pub mod lifecycle;
pub mod metrics;
pub mod oidc;
pub mod queue;
pub mod runs;
pub mod state_backend;
pub mod store;
pub mod tls;
pub mod webhooks;
pub mod workflows;

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use tofuflow_proto::v1::agent_service_server::AgentServiceServer;
use tofuflow_proto::v1::user_service_server::UserServiceServer;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::Config;

/// Runs the coordinator until `shutdown` is cancelled: checks the configuration, opens the
/// store, listens, starts the publisher, the reaper and the webhook delivery loop, serves gRPC
/// and HTTP, then waits.
pub async fn run(cfg: Config, shutdown: CancellationToken) -> Result<(), String> {
    let auth = load_auth(&cfg)?;
    let tls = tls::Tls::load(
        cfg.tls_cert.as_deref(),
        cfg.tls_key.as_deref(),
        cfg.tls_client_ca.as_deref(),
    )?;
    let mut store = open_store(&cfg).await?;
    // Workflow runs move on in the transaction that ends one of their runs.
    let engine = lifecycle::workflow::Engine {
        policy: cfg.policy(),
    };
    store.add_hook(Arc::new(engine));
    // Failed authentications go to the audit log from now on.
    auth.failures.audit.attach(store.clone());
    if !auth.is_open() && !auth.has_users_file() {
        bootstrap_admin(&store).await?;
    }
    let (grpc, http_l) = listen(&cfg).await?;
    let grpc_addr = grpc.local_addr().map_err(|e| e.to_string())?;
    let http_addr = http_l.local_addr().map_err(|e| e.to_string())?;
    let public_http_url = cfg.public_http_url.clone().unwrap_or_else(|| {
        let scheme = if tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{http_addr}")
    });
    set_up_oidc(&cfg, &mut store, &public_http_url).await?;
    let tracker = TaskTracker::new();
    let webhooks = start_webhooks(&tracker, &cfg, &mut store, &public_http_url, &shutdown)?;
    let amqp_ready = spawn_background(&tracker, &cfg, &mut store, &webhooks, &shutdown);
    // Every hook is installed: submits from now on share transactions.
    store.start_group_commit(&tracker, shutdown.child_token());
    // Idle agents' heartbeats are written together, once a second.
    let credential_ttl_ms = cfg.agent_credential_ttl.as_millis() as i64;
    store.start_heartbeat_writes(&tracker, credential_ttl_ms, shutdown.child_token());
    let dead_letters = Arc::new(queue::dead::DeadLetters::new(
        &cfg.amqp_url,
        cfg.dead_letter_max,
    ));
    let shared = api::Shared {
        dead_letters: dead_letters.clone(),
        store: store.clone(),
        policy: cfg.policy(),
        heartbeat_interval_ms: cfg.heartbeat_interval.as_millis() as u32,
        public_http_url,
        max_bundle_bytes: cfg.max_bundle_bytes,
        open: auth.is_open(),
        failures: auth.failures.clone(),
        token_ttl_ms: cfg.token_ttl.as_millis() as i64,
        agent_credentials: Default::default(),
        webhook_wake: webhooks.wake.clone(),
    };
    let api = http::api::Api {
        user: Arc::new(api::user::UserApi {
            shared: shared.clone(),
        }),
        auth: auth.clone(),
        sessions: Arc::new(http::ui::Sessions::new(tls.is_some(), store.clone())),
    };
    serve_grpc(&tracker, grpc, shared, &auth, tls.as_ref(), &shutdown).await;
    let app = http::App {
        store,
        amqp_ready,
        auth_failures: auth.failures.clone(),
        dead_letters,
        api: Some(api),
    };
    serve_http(&tracker, (http_l, http_addr), app, tls.as_ref(), &shutdown);
    tracing::info!(grpc = %grpc_addr, http = %http_addr, tls = tls.is_some(), agent_client_certs = tls.as_ref().is_some_and(|t| t.agent_certs), database = %queue::redact(&cfg.database_url), "coordinator listening");
    let scheme = if tls.is_some() { "https" } else { "http" };
    let ui = format!("{scheme}://{http_addr}/ui/");
    tracing::info!(url = %ui, "web UI at {ui}");
    if let Some(path) = &cfg.ready_file {
        write_ready_file(path, grpc_addr, http_addr)?;
    }
    stop_when_told(tracker, shutdown).await;
    Ok(())
}

/// Waits for the shutdown signal, then (at most 10 s) for the coordinator's tasks to stop.
async fn stop_when_told(tracker: TaskTracker, shutdown: CancellationToken) {
    tracker.close();
    shutdown.cancelled().await;
    tracing::info!("coordinator shutting down");
    if tokio::time::timeout(Duration::from_secs(10), tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("some coordinator tasks did not stop within 10s");
    }
}

/// Checks the configured pools and loads the agent tokens and users, warning about what is
/// left open.
fn load_auth(cfg: &Config) -> Result<auth::Auth, String> {
    for p in &cfg.pools {
        queue::valid_pool(p)?;
    }
    let auth = auth::Auth::load(
        &cfg.agent_token,
        &cfg.agent_pool_token,
        cfg.users_file.as_deref(),
        cfg.insecure_open,
    )?;
    if auth.is_open() {
        tracing::warn!("--insecure-open: ANYONE WHO REACHES THESE PORTS IS AN ADMIN AND MAY ACT AS AN AGENT; no token is checked and users' names are taken as declared. For local experiments only.");
    }
    Ok(auth)
}

/// On the first start on an empty database (no API token, no role yet), creates the user
/// `admin` with the admin role on `**` and prints its token once on stdout; never again.
async fn bootstrap_admin(store: &store::Store) -> Result<(), String> {
    let token = format!("tfu_{}", store::secret());
    let created = store
        .bootstrap_admin("admin", &auth::hash(&token))
        .await
        .map_err(|e| e.to_string())?;
    if let Some(id) = created {
        tracing::warn!(token_id = %id, "created the bootstrap admin token (user admin, admin on **): it is printed once on stdout; save it with `tofuflow login`, create your own tokens and revoke it");
        println!(
            "tofuflow: bootstrap admin token (shown once; save it with 'tofuflow login'): {token}"
        );
    }
    Ok(())
}

/// Connects to the database (migrating it) and sets the state keys, re-encrypting versions
/// stored under an old key.
async fn open_store(cfg: &Config) -> Result<store::Store, String> {
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
    store.set_signing(
        cfg.envelope_ttl.as_millis() as i64,
        cfg.signing_key_rotation.as_millis() as i64,
    );
    if encrypted {
        // The shared signing key exists before the first task is queued.
        store
            .rotate_signing_keys()
            .await
            .map_err(|e| format!("cannot set up the signing key: {e}"))?;
    } else {
        tracing::warn!("without --state-key, task messages are signed with a key held only by this process (none is stored in clear): set --state-key so coordinators sharing the database sign with one rotated key");
    }
    Ok(store)
}

/// Sets how tasks' ID tokens are issued and makes the first signing key (before any claim).
async fn set_up_oidc(
    cfg: &Config,
    store: &mut store::Store,
    public_http_url: &str,
) -> Result<(), String> {
    let oidc = cfg.oidc(public_http_url)?;
    if !oidc.issuer.is_https() {
        tracing::warn!(issuer = %oidc.issuer, "ID tokens name an http issuer: clouds (AWS, Google, Azure) only trust an https issuer they can reach; set --oidc-issuer https://HOST that serves this coordinator's /.well-known/ paths");
    }
    tracing::info!(issuer = %oidc.issuer, audience = %oidc.default_audience, "tasks get OIDC ID tokens");
    if cfg.state_key.as_deref().is_none_or(str::is_empty) {
        tracing::warn!("without --state-key, ID tokens are signed with a key held only by this process (none is stored in clear): a restart makes a new key, the old one stays in the JWKS until its tokens expire; set --state-key so coordinators sharing the database sign with one rotated key");
    }
    store.set_oidc(oidc);
    store
        .rotate_oidc_keys()
        .await
        .map_err(|e| format!("cannot set up the ID-token signing key: {e}"))?;
    Ok(())
}

/// Binds the gRPC and HTTP listeners, saying what to do when a port is taken.
async fn listen(cfg: &Config) -> Result<(TcpListener, TcpListener), String> {
    let grpc = TcpListener::bind(&cfg.grpc_listen).await.map_err(|e| {
        format!(
            "cannot listen on {} for gRPC: {e} (is another coordinator running? use --grpc-listen)",
            cfg.grpc_listen
        )
    })?;
    let http = TcpListener::bind(&cfg.http_listen).await.map_err(|e| {
        format!(
            "cannot listen on {} for HTTP: {e} (use --http-listen)",
            cfg.http_listen
        )
    })?;
    Ok((grpc, http))
}

/// Installs the TTL hook: environments start, end and count failed teardowns as their runs
/// end. The reaper runs its sweep.
fn install_ttl(
    cfg: &Config,
    store: &mut store::Store,
    webhook_wake: &Arc<Notify>,
) -> Arc<lifecycle::ttl::Ttl> {
    let ttl = Arc::new(lifecycle::ttl::Ttl {
        policy: cfg.ttl_policy(),
        runs: cfg.policy(),
        webhook_wake: webhook_wake.clone(),
    });
    store.add_hook(ttl.clone());
    ttl
}

/// Installs the webhook hook (deliveries are written with the transitions they report) and
/// starts the delivery loop (it sends them after commit); returns the hook (it carries the
/// loop's wake-up).
fn start_webhooks(
    tracker: &TaskTracker,
    cfg: &Config,
    store: &mut store::Store,
    public_http_url: &str,
    shutdown: &CancellationToken,
) -> Result<Arc<webhooks::Hook>, String> {
    let wake = Arc::new(Notify::new());
    let hook = Arc::new(webhooks::Hook {
        wake: wake.clone(),
        public_url: public_http_url.to_string(),
    });
    store.add_hook(hook.clone());
    let client = webhooks::client::Client::new(cfg.webhook_timeout)?;
    tracker.spawn(webhooks::deliver::run_deliveries(
        store.clone(),
        client,
        wake,
        shutdown.child_token(),
    ));
    Ok(hook)
}

/// Installs the TTL and drift hooks, then starts the outbox publisher and the lease reaper
/// (with the TTL and schedule sweeps), each stopping with `shutdown`; returns the publisher's "RabbitMQ is reachable" flag.
fn spawn_background(
    tracker: &TaskTracker,
    cfg: &Config,
    store: &mut store::Store,
    webhooks: &Arc<webhooks::Hook>,
    shutdown: &CancellationToken,
) -> Arc<AtomicBool> {
    let ttl = install_ttl(cfg, store, &webhooks.wake);
    store.add_hook(Arc::new(lifecycle::drift::Drift {
        runs: cfg.policy(),
        webhooks: webhooks.clone(),
    }));
    // Woken after every commit that queued a task (the store's run-event effects).
    let wake = store.publisher_wake();
    let amqp_ready = Arc::new(AtomicBool::new(false));
    tracker.spawn(queue::run_publisher(
        store.clone(),
        tofuflow_proto::amqp::Nodes::new(&cfg.amqp_url),
        queue::Topology {
            pools: cfg.pools.clone(),
            dead_letter_max: cfg.dead_letter_max,
        },
        wake,
        amqp_ready.clone(),
        shutdown.child_token(),
    ));
    tracker.spawn(leases::run_reaper(
        store.clone(),
        cfg.policy(),
        ttl,
        cfg.reap_interval,
        shutdown.child_token(),
    ));
    amqp_ready
}

/// Serves the agent and user services (each behind its credential check) and gRPC health on
/// `listener` until `shutdown`, over TLS when configured.
async fn serve_grpc(
    tracker: &TaskTracker,
    listener: TcpListener,
    shared: api::Shared,
    auth: &auth::Auth,
    tls: Option<&tls::Tls>,
    shutdown: &CancellationToken,
) {
    let (health, health_svc) = tonic_health::server::health_reporter();
    health
        .set_serving::<AgentServiceServer<api::agent::AgentApi>>()
        .await;
    health
        .set_serving::<UserServiceServer<api::user::UserApi>>()
        .await;
    let max = tofuflow_proto::MAX_MESSAGE_BYTES;
    let (a1, a2) = (auth.clone(), auth.clone());
    let agent_certs = tls.is_some_and(|t| t.agent_certs);
    let agent_svc = tonic::service::interceptor::InterceptedService::new(
        AgentServiceServer::new(api::agent::AgentApi::new(shared.clone()))
            .max_decoding_message_size(max),
        move |req: tonic::Request<()>| {
            if agent_certs {
                tls::require_client_cert(&req, &a1.failures)?;
            }
            a1.check_agent(req)
        },
    );
    let user_svc = tonic::service::interceptor::InterceptedService::new(
        UserServiceServer::new(api::user::UserApi { shared }).max_decoding_message_size(max),
        move |req| a2.check_user(req),
    );
    let router = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(5)))
        .add_service(health_svc)
        .add_service(agent_svc)
        .add_service(user_svc);
    let sd = shutdown.clone();
    let acceptor = tls.map(|t| t.grpc.clone());
    tracker.spawn(async move {
        let r = match acceptor {
            None => {
                // Small answers go out at once (no Nagle delay waiting on a delayed ACK).
                let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(|r| {
                    if let Ok(s) = &r {
                        let _ = s.set_nodelay(true);
                    }
                    r
                });
                router
                    .serve_with_incoming_shutdown(incoming, sd.cancelled_owned())
                    .await
            }
            Some(a) => {
                let rx = tls::accept(listener, a, "grpc", sd.clone());
                let incoming = tokio_stream::wrappers::ReceiverStream::new(rx)
                    .map(|(s, _)| Ok::<_, std::io::Error>(s));
                router
                    .serve_with_incoming_shutdown(incoming, sd.cancelled_owned())
                    .await
            }
        };
        if let Err(e) = r {
            tracing::error!(error = %e, "gRPC server stopped");
        }
    });
}

/// Serves the HTTP side (state backend, health, metrics) on `listener` until `shutdown`, over
/// TLS when configured.
fn serve_http(
    tracker: &TaskTracker,
    (listener, local): (TcpListener, SocketAddr),
    app: http::App,
    tls: Option<&tls::Tls>,
    shutdown: &CancellationToken,
) {
    use axum::serve::ListenerExt;
    let sd = shutdown.clone();
    let service = http::router(app).into_make_service_with_connect_info::<SocketAddr>();
    let acceptor = tls.map(|t| t.http.clone());
    tracker.spawn(async move {
        let r = match acceptor {
            None => {
                let listener = listener.tap_io(|s| {
                    let _ = s.set_nodelay(true);
                });
                axum::serve(listener, service)
                    .with_graceful_shutdown(sd.cancelled_owned())
                    .await
            }
            Some(a) => {
                let incoming = tls::accept(listener, a, "http", sd.clone());
                // tap_io: axum gives the peer address (ConnectInfo) of any such listener.
                let l = tls::HttpListener { incoming, local }.tap_io(|_| {});
                axum::serve(l, service)
                    .with_graceful_shutdown(sd.cancelled_owned())
                    .await
            }
        };
        if let Err(e) = r {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });
}

/// Writes `{"grpc": ADDR, "http": ADDR, "pid": N}` to `path` atomically (a temporary file, then
/// a rename), so a reader never sees half of it.
fn write_ready_file(
    path: &std::path::Path,
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    let body = serde_json::json!({"grpc": grpc_addr.to_string(), "http": http_addr.to_string(), "pid": std::process::id()});
    std::fs::write(&tmp, body.to_string())
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| format!("cannot write ready file {}: {e}", path.display()))
}
