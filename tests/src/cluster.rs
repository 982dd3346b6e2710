//! The cluster under test: a RabbitMQ vhost, a database (SQLite file or a fresh PostgreSQL
//! database) and the real coordinator, built with [`ClusterBuilder`]; running the CLI against it,
//! waiting on runs, and tearing it all down on drop.

use crate::bins::free_port;
use crate::broker::rabbitmqctl;
use crate::{bin_dir, http_get, wait_for, Agent};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tofuflow_proto::v1::{self, user_service_client::UserServiceClient};

/// The PostgreSQL server's admin URL (`TOFUFLOW_TEST_PG`, default local trust auth).
pub fn pg_admin_url() -> String {
    std::env::var("TOFUFLOW_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Which database the coordinator keeps its tables in.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// A running coordinator with its vhost, database, scratch directory and agents.
pub struct Cluster {
    pub dir: PathBuf,
    pub vhost: String,
    pub amqp_url: String,
    pub db: Db,
    pub db_url: String,
    pg_name: Option<String>,
    /// The admin URL of the PostgreSQL server the database is on.
    pg_admin: String,
    pub grpc_port: u16,
    pub http_port: u16,
    coordinator: Option<Child>,
    pub agents: Vec<Agent>,
    pub(crate) bins: PathBuf,
    pub pools: Vec<String>,
    pub extra_coordinator_args: Vec<String>,
    /// Given to agents as TOFUFLOW_AGENT_TOKEN when set; otherwise each agent gets a join
    /// token of its own pools.
    pub agent_token: Option<String>,
    /// The API token the CLI and [`Cluster::client`] present: user `tester`'s, an admin on
    /// `**` set up with the bootstrap token the coordinator printed on its first start (none
    /// when the test configures users itself).
    pub token: Option<String>,
    /// The bootstrap admin token the coordinator printed on its first start.
    pub bootstrap_token: Option<String>,
    /// The coordinator serves TLS with these files; clients and agents trust its CA.
    pub tls: Option<TlsFiles>,
    /// The coordinator URLs [`Cluster::cli`] gives the CLI (comma-separated; default: this
    /// cluster's own).
    pub cli_coordinators: Option<String>,
}

/// PEM files of a TLS cluster: the CA that signed the coordinator's certificate (clients and
/// agents are given it as TOFUFLOW_TLS_CA), that certificate and its key, and the CA agents'
/// client certificates must be signed by (`--tls-client-ca`), if any.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// A user-API client carrying the cluster's token.
pub type UserClient = UserServiceClient<
    tonic::service::interceptor::InterceptedService<
        tonic::transport::Channel,
        tofuflow_proto::auth::Bearer,
    >,
>;

/// A cluster to be started: pools, coordinator flags and the agent token, then [`start`].
///
/// [`start`]: ClusterBuilder::start
pub struct ClusterBuilder {
    db: Db,
    pools: Vec<String>,
    coordinator_args: Vec<String>,
    agent_token: Option<String>,
    tls: Option<TlsFiles>,
    amqp_url: Option<String>,
    pg_admin: Option<String>,
}

impl ClusterBuilder {
    /// With [`Db::Postgres`], the database is made on this server (its admin URL, e.g. a
    /// [`crate::PgServer`]'s) instead of the machine's.
    pub fn pg_admin(mut self, url: &str) -> Self {
        self.pg_admin = Some(url.to_string());
        self
    }

    /// The coordinator and agents use this RabbitMQ (a comma-separated list of a cluster's
    /// nodes, e.g. [`crate::RabbitCluster::amqp_urls`]) instead of a vhost of the local broker.
    pub fn amqp_url(mut self, urls: &str) -> Self {
        self.amqp_url = Some(urls.to_string());
        self
    }

    /// Serves gRPC and HTTP over TLS (and requires agents' client certificates when
    /// `files.client_ca` is set); the fixture's clients, CLI and agents use https and the CA.
    pub fn tls(mut self, files: TlsFiles) -> Self {
        let path = |p: &Path| p.display().to_string();
        self.coordinator_args
            .extend(["--tls-cert".into(), path(&files.cert)]);
        self.coordinator_args
            .extend(["--tls-key".into(), path(&files.key)]);
        if let Some(ca) = &files.client_ca {
            self.coordinator_args
                .extend(["--tls-client-ca".into(), path(ca)]);
        }
        self.tls = Some(files);
        self
    }

    /// The pools the coordinator serves (default: `default`).
    pub fn pools(mut self, pools: &[&str]) -> Self {
        self.pools = pools.iter().map(|s| s.to_string()).collect();
        self
    }

    /// More coordinator flags (kept for restarts in [`Cluster::extra_coordinator_args`]).
    pub fn coordinator_args(mut self, args: &[&str]) -> Self {
        self.coordinator_args
            .extend(args.iter().map(|s| s.to_string()));
        self
    }

    /// The shared agent token: the coordinator requires it (`--agent-token`), and agents and
    /// fake agents of this cluster present it.
    pub fn agent_token(mut self, token: &str) -> Self {
        self.coordinator_args
            .extend(["--agent-token".to_string(), token.to_string()]);
        self.agent_token = Some(token.to_string());
        self
    }

    /// Makes the vhost, the database and the scratch directory, and starts the coordinator.
    pub async fn start(self) -> Cluster {
        let bins = bin_dir();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let id = &id[..12];
        let dir = scratch_dir(id);
        let vhost = format!("tofuflow-test-{id}");
        rabbitmqctl(&["add_vhost", &vhost]);
        rabbitmqctl(&["set_permissions", "-p", &vhost, "guest", ".*", ".*", ".*"]);
        let pg_admin = self.pg_admin.clone().unwrap_or_else(pg_admin_url);
        let (db_url, pg_name) = match self.db {
            Db::Sqlite => (format!("sqlite://{}/coordinator.db", dir.display()), None),
            Db::Postgres => create_pg_database(id, &pg_admin).await,
        };
        let mut c = Cluster {
            dir,
            amqp_url: self
                .amqp_url
                .unwrap_or_else(|| format!("amqp://guest:guest@127.0.0.1:5672/{vhost}")),
            vhost,
            db: self.db,
            db_url,
            pg_name,
            pg_admin,
            grpc_port: free_port(),
            http_port: free_port(),
            coordinator: None,
            agents: Vec::new(),
            bins,
            pools: self.pools,
            extra_coordinator_args: self.coordinator_args,
            agent_token: self.agent_token,
            token: None,
            bootstrap_token: None,
            tls: self.tls,
            cli_coordinators: None,
        };
        c.start_coordinator().await;
        c.bootstrap_token = c.printed_bootstrap_token();
        if c.bootstrap_token.is_some() {
            c.set_up_tester().await;
        }
        c
    }
}

/// The cluster's scratch directory, with the stand-in's invocation trace: shared by every
/// task's run user, and visible inside the sandbox (--sandbox-bind).
fn scratch_dir(id: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("tofuflow-e2e-{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    let t = dir.join("trace");
    std::fs::create_dir_all(&t).unwrap();
    std::fs::set_permissions(&t, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::write(t.join("tofu-trace.jsonl"), b"").unwrap();
    std::fs::set_permissions(
        t.join("tofu-trace.jsonl"),
        std::fs::Permissions::from_mode(0o666),
    )
    .unwrap();
    dir
}

/// Creates a fresh PostgreSQL database for the cluster: returns its URL and name.
async fn create_pg_database(id: &str, admin: &str) -> (String, Option<String>) {
    use sqlx::Connection;
    let name = format!("tofuflow_e2e_{id}");
    let mut c = sqlx::PgConnection::connect(admin)
        .await
        .expect("PostgreSQL must be running for this test");
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut c)
        .await
        .unwrap();
    let base = admin;
    (
        format!("{}/{name}", base.rsplit_once('/').unwrap().0),
        Some(name),
    )
}

impl Cluster {
    /// Starts a cluster on `db` serving the `default` pool.
    pub async fn start(db: Db) -> Cluster {
        Cluster::builder(db).start().await
    }

    /// Starts a cluster on `db` serving `pools`, with more coordinator flags.
    pub async fn start_with(db: Db, pools: &[&str], extra: &[&str]) -> Cluster {
        Cluster::builder(db)
            .pools(pools)
            .coordinator_args(extra)
            .start()
            .await
    }

    /// A cluster to configure before it starts: `Cluster::builder(db).pools(&[..]).start().await`.
    pub fn builder(db: Db) -> ClusterBuilder {
        ClusterBuilder {
            db,
            pools: vec!["default".into()],
            coordinator_args: Vec::new(),
            agent_token: None,
            tls: None,
            amqp_url: None,
            pg_admin: None,
        }
    }

    /// `http`, or `https` when the coordinator serves TLS.
    fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    pub fn grpc_url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme(), self.grpc_port)
    }

    pub fn http_url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme(), self.http_port)
    }

    /// A GET on the coordinator's HTTP side (over TLS, trusting the cluster's CA, when on).
    pub fn get(&self, path: &str) -> std::io::Result<(u16, String)> {
        let url = format!("{}{path}", self.http_url());
        match &self.tls {
            Some(t) => crate::http::https_get(&url, &t.ca),
            None => http_get(&url),
        }
    }

    pub async fn start_coordinator(&mut self) {
        let ready = self.dir.join("coordinator.ready");
        let _ = std::fs::remove_file(&ready);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("coordinator.log"))
            .unwrap();
        let child = Command::new(self.bins.join("tofuflow-coordinator"))
            .args(["--grpc-listen", &format!("127.0.0.1:{}", self.grpc_port)])
            .args(["--http-listen", &format!("127.0.0.1:{}", self.http_port)])
            .args(["--database-url", &self.db_url, "--amqp-url", &self.amqp_url])
            .args(["--pools", &self.pools.join(",")])
            .args([
                "--lease-ttl",
                "3s",
                "--heartbeat-interval",
                "1s",
                "--reap-interval",
                "200ms",
            ])
            .args(&self.extra_coordinator_args)
            .arg("--ready-file")
            .arg(&ready)
            .env(
                "TOFUFLOW_LOG",
                std::env::var("TOFUFLOW_E2E_LOG")
                    .unwrap_or_else(|_| "info,tofuflow_coordinator=debug".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start coordinator");
        self.coordinator = Some(child);
        let r = ready.clone();
        wait_for(
            "the coordinator to be ready",
            Duration::from_secs(30),
            || {
                let r = r.clone();
                async move { r.exists().then_some(()) }
            },
        )
        .await;
        wait_for("/readyz", Duration::from_secs(30), || {
            let ok = self.get("/readyz").is_ok_and(|(code, _)| code == 200);
            async move { ok.then_some(()) }
        })
        .await;
    }

    /// SIGKILLs the coordinator.
    /// The coordinator's process id, while it runs.
    pub fn coordinator_pid(&self) -> Option<u32> {
        self.coordinator.as_ref().map(|c| c.id())
    }

    pub fn kill_coordinator(&mut self) {
        if let Some(mut c) = self.coordinator.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub async fn restart_coordinator(&mut self) {
        self.kill_coordinator();
        self.start_coordinator().await;
    }

    /// A user-API client presenting `token`.
    pub async fn client_as(&self, token: Option<&str>) -> UserClient {
        let files = tofuflow_proto::tls::ClientFiles {
            ca: self.tls.as_ref().map(|t| t.ca.as_path()),
            ..Default::default()
        };
        let endpoint = tonic::transport::Endpoint::from_shared(self.grpc_url()).unwrap();
        UserServiceClient::with_interceptor(
            tofuflow_proto::tls::endpoint(endpoint, &self.grpc_url(), &files)
                .unwrap()
                .connect()
                .await
                .expect("connect to coordinator"),
            tofuflow_proto::auth::Bearer::new(token).unwrap(),
        )
    }

    /// A user-API client presenting the cluster's token (user `tester`, an admin).
    pub async fn client(&self) -> UserClient {
        self.client_as(self.token.as_deref()).await
    }

    /// The bootstrap admin token the coordinator printed on its first start, if it did.
    pub fn printed_bootstrap_token(&self) -> Option<String> {
        let log = std::fs::read_to_string(self.dir.join("coordinator.log")).ok()?;
        let mut found = log
            .lines()
            .filter_map(|l| {
                l.strip_prefix(
                    "tofuflow: bootstrap admin token (shown once; save it with 'tofuflow login'): ",
                )
            })
            .map(|t| t.trim().to_string());
        let first = found.next();
        assert!(
            found.next().is_none(),
            "the bootstrap token is printed once only:\n{log}"
        );
        first
    }

    /// With the bootstrap token, makes user `tester` an admin on `**` and takes a token of
    /// theirs as the cluster's.
    async fn set_up_tester(&mut self) {
        let mut admin = self.client_as(self.bootstrap_token.as_deref()).await;
        admin
            .grant_role(v1::RoleGrantRequest {
                user: "tester".into(),
                role: "admin".into(),
                workspaces: "**".into(),
            })
            .await
            .expect("grant tester the admin role");
        let t = admin
            .create_token(v1::CreateTokenRequest {
                user: "tester".into(),
                ttl_ms: 0,
                description: "the test fixture".into(),
            })
            .await
            .expect("create tester's token")
            .into_inner();
        self.token = Some(t.token);
    }

    /// A join token for `pools`, created with the cluster's token.
    pub async fn join_token(&self, pools: &[String]) -> String {
        self.client()
            .await
            .create_join_token(v1::CreateJoinTokenRequest {
                pools: pools.to_vec(),
                ttl_ms: 0,
            })
            .await
            .expect("create a join token")
            .into_inner()
            .token
    }

    /// The credential an agent of `pools` starts with: the cluster's static agent token, or a
    /// join token of its own.
    pub async fn agent_credential(&self, pools: &[String]) -> Option<String> {
        match (&self.agent_token, &self.token) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(_)) => Some(self.join_token(pools).await),
            (None, None) => None,
        }
    }

    /// A new API token for `user`, granted `role` on every workspace (by the cluster's admin).
    pub async fn user_token(&self, user: &str, role: &str) -> String {
        let mut client = self.client().await;
        client
            .grant_role(v1::RoleGrantRequest {
                user: user.into(),
                role: role.into(),
                workspaces: "**".into(),
            })
            .await
            .expect("grant a role");
        client
            .create_token(v1::CreateTokenRequest {
                user: user.into(),
                ttl_ms: 3_600_000,
                description: format!("{role} for a test"),
            })
            .await
            .expect("create a token")
            .into_inner()
            .token
    }

    /// Runs the `tofuflow` CLI against this cluster, with the cluster's token.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(self.bins.join("tofuflow"));
        cmd.args(args)
            .env(
                "TOFUFLOW_COORDINATOR",
                self.cli_coordinators
                    .clone()
                    .unwrap_or_else(|| self.grpc_url()),
            )
            .env("TOFUFLOW_USER", "tester")
            .env("TOFUFLOW_CONFIG_FILE", self.dir.join("cli-config.toml"))
            .envs(self.tls.iter().map(|t| ("TOFUFLOW_TLS_CA", &t.ca)));
        if let Some(t) = &self.token {
            cmd.env("TOFUFLOW_TOKEN", t);
        }
        cmd.output().expect("run tofuflow")
    }

    pub async fn run(&self, id: &str) -> v1::Run {
        self.client()
            .await
            .get_run(v1::GetRunRequest {
                run_id: id.into(),
                ..Default::default()
            })
            .await
            .expect("get run")
            .into_inner()
    }

    /// A workflow run as the API shows it.
    pub async fn workflow_run(&self, id: &str) -> v1::WorkflowRun {
        self.client()
            .await
            .get_workflow_run(v1::WorkflowRunRequest {
                workflow_run_id: id.into(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    /// Waits until the workflow run is in `state`; panics (with it and the coordinator's log)
    /// if it ends in another.
    pub async fn wait_workflow(&self, id: &str, state: &str, timeout: Duration) -> v1::WorkflowRun {
        wait_for(&format!("workflow run {id} {state}"), timeout, || async {
            let w = self.workflow_run(id).await;
            if w.state == state {
                return Some(w);
            }
            let ended = matches!(w.state.as_str(), "succeeded" | "failed" | "cancelled");
            assert!(
                !ended,
                "workflow run ended {} while waiting for {state}: {w:#?}\n{}",
                w.state,
                self.logs_tail()
            );
            None
        })
        .await
    }

    /// Waits until the run is in one of `states`; panics (with the run) if it ends elsewhere.
    pub async fn wait_state(&self, id: &str, states: &[&str], timeout: Duration) -> v1::Run {
        let terminal = [
            "applied",
            "planned_no_changes",
            "failed",
            "cancelled",
            "rejected",
            "interrupted",
            "expired",
        ];
        let end = Instant::now() + timeout;
        loop {
            let r = self
                .client()
                .await
                .get_run(v1::GetRunRequest {
                    run_id: id.into(),
                    ..Default::default()
                })
                .await
                .map(|r| r.into_inner());
            if let Ok(r) = r {
                if states.contains(&r.state.as_str()) {
                    return r;
                }
                if terminal.contains(&r.state.as_str()) {
                    panic!(
                        "run {id} ended {} (error: {:?}) while waiting for {states:?}\n{}",
                        r.state,
                        r.error,
                        self.logs_tail()
                    );
                }
            }
            assert!(
                Instant::now() < end,
                "timed out waiting for run {id} to be {states:?}\n{}",
                self.logs_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Submits a module via the CLI and returns the run id.
    /// Uploads `module` as the CLI does, through one plan-only submit to `workspace` (nothing
    /// need run it); the bundle's digest, for submits through the API.
    pub fn upload_bundle(&self, module: &Path, workspace: &str) -> String {
        let args = ["run", "submit", module.to_str().unwrap(), "-w", workspace];
        let o = self.cli(&[&args[..], &["--plan-only", "-o", "json"]].concat());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["bundle_digest"].as_str().unwrap().to_string()
    }

    pub fn submit(&self, module: &Path, workspace: &str, extra: &[&str]) -> String {
        let mut args = vec!["run", "submit", module.to_str().unwrap(), "-w", workspace];
        args.extend_from_slice(extra);
        let out = self.cli(&args);
        assert!(
            out.status.success(),
            "submit failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Lines of the stand-in's trace (one JSON object per tofu invocation start/exit).
    pub fn tofu_trace(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.join("trace/tofu-trace.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// How many times `tofu <cmd>` started in a working directory of this run.
    pub fn tofu_starts(&self, run_id: &str, cmd: &str) -> usize {
        self.tofu_trace()
            .iter()
            .filter(|e| e["event"] == "start" && e["args"][0] == cmd && e["run"] == run_id)
            .count()
    }

    pub fn logs_tail(&self) -> String {
        let mut s = String::new();
        for f in [
            "coordinator.log",
            "agent-0.log",
            "agent-1.log",
            "agent-2.log",
        ] {
            if let Ok(t) = std::fs::read_to_string(self.dir.join(f)) {
                let lines: Vec<&str> = t.lines().collect();
                s.push_str(&format!(
                    "--- {f} (last 25 lines)\n{}\n",
                    lines[lines.len().saturating_sub(25)..].join("\n")
                ));
            }
        }
        s
    }

    /// Opens a direct AMQP channel on this cluster's vhost (on the first node when several).
    pub async fn amqp(&self) -> lapin::Channel {
        let first = self.amqp_url.split(',').next().unwrap_or_default();
        let c = lapin::Connection::connect(first, lapin::ConnectionProperties::default())
            .await
            .expect("amqp");
        c.create_channel().await.expect("channel")
    }

    /// Messages ready in a queue (passive declare).
    pub async fn queue_depth(&self, queue: &str) -> u32 {
        let ch = self.amqp().await;
        let q = ch
            .queue_declare(
                queue.into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                lapin::types::FieldTable::default(),
            )
            .await
            .expect("queue exists");
        q.message_count()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.agents.clear();
        self.kill_coordinator();
        // Stray tofu processes of this cluster (their working dirs are under self.dir).
        let _ = Command::new("pkill")
            .args(["-KILL", "-f", &self.dir.display().to_string()])
            .status();
        let _ = Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.vhost])
            .output();
        if let Some(name) = self.pg_name.take() {
            let admin = self.pg_admin.clone();
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    use sqlx::Connection;
                    if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                        let _ = sqlx::query(&format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        ))
                        .execute(&mut c)
                        .await;
                    }
                })
            })
            .join();
        }
        // A killed agent leaves its secrets tmpfs mounted (its next start would sweep them):
        // the sandbox built ahead for an idle slot's next task, or a task's that was running.
        unmount_under(&self.dir);
        if std::env::var_os("TOFUFLOW_KEEP_TEST_DIRS").is_none() && !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else if std::thread::panicking() {
            eprintln!("test files kept in {}", self.dir.display());
        }
    }
}

/// Unmounts every mount under `dir` (deepest first).
fn unmount_under(dir: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut under: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|m| Path::new(m).starts_with(dir))
        .collect();
    under.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in under {
        let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
    }
}
