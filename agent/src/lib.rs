//! The tofuflow agent: registers with the coordinator, takes tasks of its pools from RabbitMQ,
//! runs `tofu` for them in throw-away working directories, and reports everything back.

pub mod bundle;
pub mod config;
pub mod consumer;
pub mod error;
pub mod failover;
pub mod identity;
pub mod labels;
pub mod lease;
pub mod mask;
pub mod metrics;
pub mod report;
pub mod runner;
pub mod sandbox;
pub mod tls;
pub mod trust;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use tofuflow_proto::v1::{self, agent_service_client::AgentServiceClient};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::{Channel, Endpoint};

pub use config::Config;

/// The agent's gRPC client to the coordinators (with its agent token on every call).
pub type Client = AgentServiceClient<
    tonic::service::interceptor::InterceptedService<
        failover::Failover,
        tofuflow_proto::auth::Bearer,
    >,
>;

/// One channel per `--coordinator` URL, calls failing over between them.
pub fn coordinator_channels(
    urls: &[String],
    tls: &tofuflow_proto::tls::ClientFiles,
) -> Result<failover::Failover, String> {
    let mut channels = Vec::new();
    for url in urls.iter().map(|u| u.trim()).filter(|u| !u.is_empty()) {
        channels.push((url.to_string(), coordinator_channel(url, tls)?));
    }
    if channels.is_empty() {
        return Err("--coordinator names no URL".into());
    }
    Ok(failover::Failover::new(channels))
}

/// A gRPC channel to the coordinator with deadlines and keepalive (half-open links are noticed
/// in seconds), over TLS for an https URL.
pub fn coordinator_channel(
    url: &str,
    tls: &tofuflow_proto::tls::ClientFiles,
) -> Result<Channel, String> {
    let endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|e| format!("bad coordinator URL {url:?}: {e}"))?;
    let endpoint = if url.starts_with("https://") {
        tofuflow_proto::tls::endpoint(endpoint, url, tls)?
    } else {
        if tls.ca.is_some() || tls.cert.is_some() {
            // Still of use: the state backend may be https behind a proxy that terminates TLS.
            tracing::warn!(coordinator = %url, "the coordinator URL is plain http: --tls-* apply to an https state backend only");
        }
        endpoint
    };
    Ok(endpoint
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(60))
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true)
        .connect_lazy())
}

/// Checks the configuration, makes the work root and detects the sandbox (before any thread
/// starts: the probes fork).
pub fn prepare(cfg: &Config) -> Result<sandbox::Sandbox, String> {
    let sb = detect(cfg)?;
    if let Some(e) = sb.unmet(cfg) {
        return Err(e);
    }
    if let Some(c) = &sb.cgroups {
        let n = c.sweep(&sb.cgroup_prefix);
        if n > 0 {
            eprintln!("tofuflow-agent: removed {n} task cgroup(s) an earlier run of this agent left behind");
        }
    }
    let n = runner::sweep_workdirs(&cfg.work_root, cfg.keep_workdirs);
    if n > 0 {
        eprintln!("tofuflow-agent: cleaned up {n} task working director(ies) an earlier run of this agent left behind (secrets unmounted)");
    }
    Ok(sb)
}

fn detect(cfg: &Config) -> Result<sandbox::Sandbox, String> {
    if cfg.concurrency == 0 {
        return Err("--concurrency must be at least 1".into());
    }
    for p in &cfg.pools {
        tofuflow_proto::amqp::valid_pool(p)?;
    }
    for h in &cfg.allow_hosts {
        sandbox::gateway::parse_rule(h)?;
    }
    // work/ may be traversed (not listed) by run users; the bundle cache is the agent's alone.
    for (dir, mode) in [("work", 0o711), ("cache", 0o700)] {
        use std::os::unix::fs::PermissionsExt;
        let d = cfg.work_root.join(dir);
        std::fs::create_dir_all(&d)
            .and_then(|_| std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode)))
            .map_err(|e| format!("cannot create work root {}: {e}", d.display()))?;
    }
    let mut c = cfg.clone();
    c.work_root = cfg.work_root.canonicalize().map_err(|e| e.to_string())?;
    sandbox::Sandbox::new(&c)
}

/// `tofuflow-agent check`: prints the isolation tasks get here; 0 when the configuration can be
/// met, 1 (with the reason) when not.
pub fn check(cfg: &Config) -> i32 {
    match detect(cfg) {
        Ok(sb) => {
            print!("{}", sb.report(cfg));
            match sb.unmet(cfg) {
                None => {
                    println!("ok: the agent can start with this configuration");
                    0
                }
                Some(e) => {
                    println!("error: {e}");
                    1
                }
            }
        }
        Err(e) => {
            println!("error: {e}");
            1
        }
    }
}

/// Runs the agent until `shutdown`; then drains: no new tasks, running ones get `drain_grace`.
pub async fn run(
    mut cfg: Config,
    sandbox: sandbox::Sandbox,
    shutdown: CancellationToken,
) -> Result<(), String> {
    cfg.work_root = cfg.work_root.canonicalize().map_err(|e| e.to_string())?;
    let labels = host_labels(&cfg, &sandbox)?;
    let cfg = Arc::new(cfg);
    let backend_tls = tls::relay_config(&cfg)?;
    let Some((client, reg)) = connect(&cfg, &labels, &shutdown).await? else {
        return Ok(());
    };
    let agent_id = reg.agent_id.clone();
    if let Some(addr) = cfg.metrics_listen {
        metrics::serve(addr, shutdown.clone()).await?;
    }

    let leases = lease::Leases::default();
    let draining = Arc::new(AtomicBool::new(false));
    let free = Arc::new(tokio::sync::Semaphore::new(cfg.concurrency as usize));
    let tracker = TaskTracker::new();
    let hb_stop = CancellationToken::new();
    let revoked = Arc::new(AtomicBool::new(false));
    let trust = Arc::new(trust::Trust::default());
    tracker.spawn(lease::heartbeat_loop(
        client.clone(),
        agent_id.clone(),
        leases.clone(),
        trust.clone(),
        Duration::from_millis(reg.heartbeat_interval_ms.max(100) as u64),
        Duration::from_millis(reg.lease_ttl_ms.max(1000) as u64),
        draining.clone(),
        free.clone(),
        hb_stop.clone(),
        lease::Revocation {
            flag: revoked.clone(),
            stop_agent: shutdown.clone(),
        },
    ));
    let amqp = Arc::new(consumer::Amqp::new(&cfg.amqp_url, cfg.pools.clone()));
    // Connect once up front so a wrong AMQP URL fails loudly at start.
    amqp.channel().await?.close(200, "probe".into()).await.ok();
    let slots = Slots {
        intake_stop: CancellationToken::new(),
        hard_stop: CancellationToken::new(),
        tracker: TaskTracker::new(),
    };
    let runner = runner::Runner::new(sandbox, &cfg, &client, &agent_id, backend_tls);
    slots.start(&cfg, &amqp, runner, &leases, &free, &trust);
    if let Some(path) = &cfg.ready_file {
        write_ready_file(path, &agent_id)?;
    }

    shutdown.cancelled().await;
    // Drain: stop intake, say so, give running tasks the grace period, then cancel them.
    draining.store(true, std::sync::atomic::Ordering::SeqCst);
    slots.drain(&cfg, &leases).await;
    hb_stop.cancel();
    tracker.close();
    tracker.wait().await;
    amqp.close().await;
    if revoked.load(std::sync::atomic::Ordering::SeqCst) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_millis() as i64);
        identity::Identity::mark_revoked(&cfg.work_root, now)?;
        return Err(format!(
            "agent {agent_id} was revoked by an admin of the coordinator: it stopped, and will not start again by itself (its identity.json is marked revoked)"
        ));
    }
    tracing::info!("agent stopped");
    Ok(())
}

/// The labels this agent registers with: detected, given, the sandbox's and each pool's
/// network; warns about what makes tasks less isolated.
fn host_labels(
    cfg: &Config,
    sandbox: &sandbox::Sandbox,
) -> Result<std::collections::BTreeMap<String, String>, String> {
    let mut labels = labels::detect(&cfg.tofu_bin, &cfg.labels)?;
    for (k, v) in sandbox.features.labels() {
        labels.entry(k).or_insert(v);
    }
    for p in &cfg.pools {
        labels
            .entry(format!("network.{p}"))
            .or_insert_with(|| sandbox.network_for(cfg, p).name().to_string());
        if let Some(risk) = sandbox.host_network_risk(cfg, p) {
            tracing::warn!(pool = %p, "{risk}");
        }
    }
    if !sandbox.namespaces {
        tracing::warn!(reason = %sandbox.features.namespaces.as_ref().err().cloned().unwrap_or_default(), "tasks run without namespaces (process isolation only): see `tofuflow-agent check`");
    }
    if sandbox.run_user.is_none() && sandbox.features.root {
        tracing::warn!("tasks run as root (--run-user agent)");
    }
    Ok(labels)
}

/// Connects to the coordinator and joins it; answers a client that says, with every call, who
/// this agent is (with the secret only it was given), and the registration. `None` when
/// `shutdown` came first.
async fn connect(
    cfg: &Config,
    labels: &std::collections::BTreeMap<String, String>,
    shutdown: &CancellationToken,
) -> Result<Option<(Client, v1::RegisterResponse)>, String> {
    let bearer = tofuflow_proto::auth::Bearer::new(cfg.token.as_deref())?;
    let channel = coordinator_channels(&cfg.coordinator, &tls::files(cfg))?;
    let name = cfg.name.clone().unwrap_or_else(labels::hostname);
    let req = v1::RegisterRequest {
        protocol_version: tofuflow_proto::PROTOCOL_VERSION,
        agent_id: String::new(),
        name: name.clone(),
        pools: cfg.pools.clone(),
        labels: labels.clone().into_iter().collect(),
        capacity: cfg.concurrency,
    };
    let Some(reg) = join(&channel, &bearer, cfg, req, shutdown).await? else {
        return Ok(None);
    };
    let agent_id = &reg.agent_id;
    let client = AgentServiceClient::with_interceptor(
        channel,
        bearer.with_agent(agent_id, &reg.agent_secret)?,
    )
    .max_decoding_message_size(tofuflow_proto::MAX_MESSAGE_BYTES);
    tracing::info!(%agent_id, %name, pools = ?cfg.pools, concurrency = cfg.concurrency, tofu = %labels.get("tofu_version").cloned().unwrap_or_default(), "agent registered");
    Ok(Some((client, reg)))
}

/// Joins the coordinator: as the identity stored in the work root when there is one (a
/// refused one is forgotten), else with the join token; stores the identity it gets. `None`
/// when `shutdown` came first.
async fn join(
    channel: &failover::Failover,
    bearer: &tofuflow_proto::auth::Bearer,
    cfg: &Config,
    req: v1::RegisterRequest,
    shutdown: &CancellationToken,
) -> Result<Option<v1::RegisterResponse>, String> {
    let client = |b: tofuflow_proto::auth::Bearer| {
        AgentServiceClient::with_interceptor(channel.clone(), b)
            .max_decoding_message_size(tofuflow_proto::MAX_MESSAGE_BYTES)
    };
    let mut reg = None;
    if let Some(id) = identity::Identity::usable(&cfg.work_root)? {
        let again = v1::RegisterRequest {
            agent_id: id.agent_id.clone(),
            ..req.clone()
        };
        let as_itself = client(bearer.with_agent(&id.agent_id, &id.secret)?);
        match register(&as_itself, cfg, again, shutdown).await {
            Ok(r) => reg = Some(r),
            Err(e) => {
                tracing::warn!(agent_id = %id.agent_id, error = %e, "the stored identity was refused: joining again with the token");
                identity::Identity::forget(&cfg.work_root);
            }
        }
    }
    let reg = match reg {
        Some(r) => r,
        None => register(&client(bearer.clone()), cfg, req, shutdown).await?,
    };
    if let Some(r) = &reg {
        identity::Identity {
            agent_id: r.agent_id.clone(),
            secret: r.agent_secret.clone(),
            expires_ms: r.agent_secret_expires_ms,
            revoked_ms: 0,
        }
        .save(&cfg.work_root)?;
    }
    Ok(reg)
}

/// Registers (retrying while the coordinator starts); `None` when `shutdown` came first.
async fn register(
    client: &Client,
    cfg: &Config,
    req: v1::RegisterRequest,
    shutdown: &CancellationToken,
) -> Result<Option<v1::RegisterResponse>, String> {
    let started = std::time::Instant::now();
    loop {
        let mut c = client.clone();
        let s = match c.register(req.clone()).await {
            Ok(r) => return Ok(Some(r.into_inner())),
            Err(s) => s,
        };
        let retry = s.code() == tonic::Code::Unavailable
            && started.elapsed() < Duration::from_secs(60)
            && tls_failure(cfg, &s).is_none();
        if !retry {
            return Err(register_error(cfg, &s));
        }
        tracing::warn!(coordinator = %cfg.coordinator.join(","), error = %s.message(), "coordinator not reachable yet; retrying");
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Why registering failed for good, and what to do.
fn register_error(cfg: &Config, s: &tonic::Status) -> String {
    let url = &cfg.coordinator.join(",");
    if let Some(why) = tls_failure(cfg, s) {
        return why;
    }
    match s.code() {
        tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => {
            format!("the coordinator at {url} refused this agent: {}", s.message())
        }
        _ => format!(
            "cannot register with the coordinator at {url}: {} (is it running? is --coordinator right?)",
            tofuflow_proto::tls::status_text(s)
        ),
    }
}

/// A TLS failure behind a failed call, with what to do: retrying would not help.
fn tls_failure(cfg: &Config, s: &tonic::Status) -> Option<String> {
    tofuflow_proto::tls::transport_failure(s, &cfg.coordinator.join(","), cfg.tls_cert.is_some())
}

/// Writes `{"agent_id", "pid"}` to `path` (whole, by rename) once registered.
fn write_ready_file(path: &std::path::Path, agent_id: &str) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    std::fs::write(
        &tmp,
        serde_json::json!({"agent_id": agent_id, "pid": std::process::id()}).to_string(),
    )
    .and_then(|_| std::fs::rename(&tmp, path))
    .map_err(|e| format!("cannot write ready file {}: {e}", path.display()))
}

/// The task slots: one consumer per unit of concurrency, and the two stops of a drain.
struct Slots {
    /// Stops taking new tasks.
    intake_stop: CancellationToken,
    /// Cancels running tasks (after the drain grace).
    hard_stop: CancellationToken,
    tracker: TaskTracker,
}

impl Slots {
    /// Starts `cfg.concurrency` slots, each taking tasks one at a time.
    fn start(
        &self,
        cfg: &Config,
        amqp: &Arc<consumer::Amqp>,
        runner: runner::Runner,
        leases: &lease::Leases,
        free: &Arc<tokio::sync::Semaphore>,
        trust: &Arc<trust::Trust>,
    ) {
        for i in 0..cfg.concurrency {
            self.tracker.spawn(
                consumer::Slot {
                    index: i,
                    amqp: amqp.clone(),
                    runner: runner.clone(),
                    leases: leases.clone(),
                    pools: cfg.pools.clone(),
                    free: free.clone(),
                    trust: trust.clone(),
                    intake_stop: self.intake_stop.clone(),
                    hard_stop: self.hard_stop.clone(),
                }
                .run(),
            );
        }
        self.tracker.close();
    }

    /// Stops intake, lets running tasks finish within the drain grace, then cancels them and
    /// waits for every slot to end.
    async fn drain(&self, cfg: &Config, leases: &lease::Leases) {
        self.intake_stop.cancel();
        tracing::info!(
            running = leases.len(),
            grace_s = cfg.drain_grace.as_secs(),
            "draining: no new tasks; waiting for running ones"
        );
        if tokio::time::timeout(cfg.drain_grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("drain grace over: cancelling running tasks");
            self.hard_stop.cancel();
            self.tracker.wait().await;
        }
    }
}
