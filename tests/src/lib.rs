//! The end-to-end fixture: a `Cluster` is a RabbitMQ vhost of its own, a database of its own
//! (SQLite file or a fresh PostgreSQL database), the real `tofuflow-coordinator` binary and any
//! number of real `tofuflow-agent` processes running the stand-in `tofu`. Everything is torn
//! down when the cluster is dropped. Waits are on conditions with deadlines, never bare sleeps.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tofuflow_proto::v1::{self, user_service_client::UserServiceClient};

/// Directory holding the workspace's built binaries (`target/debug`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("deps dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    for b in [
        "tofuflow-coordinator",
        "tofuflow-agent",
        "tofuflow",
        "tofu-double",
    ] {
        assert!(
            dir.join(b).is_file(),
            "{} is missing: build the binaries first with `cargo build --workspace --bins` (the README's test command does)",
            dir.join(b).display()
        );
    }
    dir
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn example(name: &str) -> PathBuf {
    repo_root().join("examples").join(name)
}

/// Polls `f` until it returns `Some` or `timeout` passes.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn rabbitmqctl(args: &[&str]) {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl must be installed (RabbitMQ runs on this machine)");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn pg_admin_url() -> String {
    std::env::var("TOFUFLOW_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Db {
    Sqlite,
    Postgres,
}

pub struct Agent {
    pub id: String,
    pub name: String,
    child: Child,
    pub work_root: PathBuf,
}

impl Agent {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
    /// SIGKILL: the agent vanishes as a spot node would.
    pub fn kill(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.child.wait();
    }
    pub fn terminate(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Options for one agent.
#[derive(Clone, Default)]
pub struct AgentOpts {
    pub pools: Vec<String>,
    pub concurrency: u32,
    pub env: BTreeMap<String, String>,
    pub cancel_grace: Option<&'static str>,
    pub drain_grace: Option<&'static str>,
    /// More agent flags.
    pub args: Vec<&'static str>,
    /// More agent flags, made at run time.
    pub owned_args: Vec<String>,
    /// Reach RabbitMQ through this URL instead (e.g. a `Proxy`).
    pub amqp_url: Option<String>,
    /// The agent's `--lock-timeout` (default 3s).
    pub lock_timeout: Option<&'static str>,
    /// Reach the coordinator through this URL instead (e.g. a `Proxy`).
    pub coordinator_url: Option<String>,
    /// Use this work root (e.g. a killed agent's, to restart it) instead of a new one.
    pub work_root: Option<PathBuf>,
}

pub struct Cluster {
    pub dir: PathBuf,
    pub vhost: String,
    pub amqp_url: String,
    pub db: Db,
    pub db_url: String,
    pg_name: Option<String>,
    pub grpc_port: u16,
    pub http_port: u16,
    coordinator: Option<Child>,
    pub agents: Vec<Agent>,
    bins: PathBuf,
    pub pools: Vec<String>,
    pub extra_coordinator_args: Vec<String>,
    /// Given to agents as TOFUFLOW_AGENT_TOKEN when set.
    pub agent_token: Option<String>,
}

impl Cluster {
    pub async fn start(db: Db) -> Cluster {
        Cluster::start_with(db, &["default"], &[]).await
    }

    pub async fn start_with(db: Db, pools: &[&str], extra: &[&str]) -> Cluster {
        let bins = bin_dir();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let dir = std::env::temp_dir().join(format!("tofuflow-e2e-{}", &id[..12]));
        std::fs::create_dir_all(&dir).unwrap();
        // The stand-in's invocation trace: shared by every task's run user, and visible inside
        // the sandbox (--sandbox-bind).
        {
            use std::os::unix::fs::PermissionsExt;
            let t = dir.join("trace");
            std::fs::create_dir_all(&t).unwrap();
            std::fs::set_permissions(&t, std::fs::Permissions::from_mode(0o777)).unwrap();
            std::fs::write(t.join("tofu-trace.jsonl"), b"").unwrap();
            std::fs::set_permissions(
                t.join("tofu-trace.jsonl"),
                std::fs::Permissions::from_mode(0o666),
            )
            .unwrap();
        }
        let vhost = format!("tofuflow-test-{}", &id[..12]);
        rabbitmqctl(&["add_vhost", &vhost]);
        rabbitmqctl(&["set_permissions", "-p", &vhost, "guest", ".*", ".*", ".*"]);
        let (db_url, pg_name) = match db {
            Db::Sqlite => (format!("sqlite://{}/coordinator.db", dir.display()), None),
            Db::Postgres => {
                use sqlx::Connection;
                let name = format!("tofuflow_e2e_{}", &id[..12]);
                let mut c = sqlx::PgConnection::connect(&pg_admin_url())
                    .await
                    .expect("PostgreSQL must be running for this test");
                sqlx::query(&format!("CREATE DATABASE \"{name}\""))
                    .execute(&mut c)
                    .await
                    .unwrap();
                let base = pg_admin_url();
                (
                    format!("{}/{name}", base.rsplit_once('/').unwrap().0),
                    Some(name),
                )
            }
        };
        let mut c = Cluster {
            dir,
            amqp_url: format!("amqp://guest:guest@127.0.0.1:5672/{vhost}"),
            vhost,
            db,
            db_url,
            pg_name,
            grpc_port: free_port(),
            http_port: free_port(),
            coordinator: None,
            agents: Vec::new(),
            bins,
            pools: pools.iter().map(|s| s.to_string()).collect(),
            extra_coordinator_args: extra.iter().map(|s| s.to_string()).collect(),
            agent_token: None,
        };
        c.start_coordinator().await;
        c
    }

    pub fn grpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
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
        let url = format!("{}/readyz", self.http_url());
        wait_for("/readyz", Duration::from_secs(30), || {
            let url = url.clone();
            async move {
                http_get(&url)
                    .ok()
                    .filter(|(code, _)| *code == 200)
                    .map(|_| ())
            }
        })
        .await;
    }

    /// SIGKILLs the coordinator.
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

    pub async fn agent(&mut self, opts: AgentOpts) -> usize {
        let n = self.agents.len();
        let name = format!("agent-{n}");
        let work_root = opts
            .work_root
            .clone()
            .unwrap_or_else(|| self.dir.join(&name));
        let ready = self.dir.join(format!("{name}.ready"));
        let log = std::fs::File::create(self.dir.join(format!("{name}.log"))).unwrap();
        let pools = if opts.pools.is_empty() {
            vec!["default".to_string()]
        } else {
            opts.pools.clone()
        };
        let coordinator = opts
            .coordinator_url
            .clone()
            .unwrap_or_else(|| self.grpc_url());
        let amqp = opts
            .amqp_url
            .clone()
            .unwrap_or_else(|| self.amqp_url.clone());
        let mut cmd = Command::new(self.bins.join("tofuflow-agent"));
        cmd.args(["--coordinator", &coordinator, "--amqp-url", &amqp])
            .args(["--pool", &pools.join(",")])
            .args(["--concurrency", &opts.concurrency.max(1).to_string()])
            .arg("--tofu-bin")
            .arg(self.bins.join("tofu-double"))
            .arg("--work-root")
            .arg(&work_root)
            .args(["--name", &name, "--pass-env", "TOFU_DOUBLE_*"])
            .args(["--cancel-grace", opts.cancel_grace.unwrap_or("5s")])
            .args(["--drain-grace", opts.drain_grace.unwrap_or("30s")])
            .args(["--lock-timeout", opts.lock_timeout.unwrap_or("3s")])
            .arg("--sandbox-bind")
            .arg(format!("{}:rw", self.dir.join("trace").display()))
            .args(&opts.args)
            .args(&opts.owned_args)
            .arg("--ready-file")
            .arg(&ready)
            .env(
                "TOFUFLOW_LOG",
                std::env::var("TOFUFLOW_E2E_LOG")
                    .unwrap_or_else(|_| "info,tofuflow_agent=debug".into()),
            )
            .env("TOFU_DOUBLE_TRACE", self.dir.join("trace/tofu-trace.jsonl"))
            .envs(&opts.env)
            .envs(
                self.agent_token
                    .iter()
                    .map(|t| ("TOFUFLOW_AGENT_TOKEN", t.as_str())),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let child = cmd.spawn().expect("start agent");
        let r = ready.clone();
        let id: String = wait_for("the agent to register", Duration::from_secs(30), || {
            let r = r.clone();
            async move {
                let s = std::fs::read_to_string(&r).ok()?;
                let v: serde_json::Value = serde_json::from_str(&s).ok()?;
                v.get("agent_id")
                    .and_then(|x| x.as_str())
                    .map(str::to_string)
            }
        })
        .await;
        self.agents.push(Agent {
            id,
            name,
            child,
            work_root,
        });
        n
    }

    pub async fn client(&self) -> UserServiceClient<tonic::transport::Channel> {
        UserServiceClient::new(
            tonic::transport::Endpoint::from_shared(self.grpc_url())
                .unwrap()
                .connect()
                .await
                .expect("connect to coordinator"),
        )
    }

    /// Runs the `tofuflow` CLI against this cluster.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(self.bins.join("tofuflow"))
            .args(args)
            .env("TOFUFLOW_COORDINATOR", self.grpc_url())
            .env("TOFUFLOW_USER", "tester")
            .output()
            .expect("run tofuflow")
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

    /// Opens a direct AMQP channel on this cluster's vhost.
    pub async fn amqp(&self) -> lapin::Channel {
        let c = lapin::Connection::connect(&self.amqp_url, lapin::ConnectionProperties::default())
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
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    use sqlx::Connection;
                    if let Ok(mut c) = sqlx::PgConnection::connect(&pg_admin_url()).await {
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
        if std::env::var_os("TOFUFLOW_KEEP_TEST_DIRS").is_none() && !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else if std::thread::panicking() {
            eprintln!("test files kept in {}", self.dir.display());
        }
    }
}

/// A plain HTTP GET (the fixture needs nothing fancier).
pub fn http_get(url: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut s = std::net::TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
        if path.is_empty() { "/" } else { path }
    )?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let code = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

/// Process ids whose command line contains `needle`.
pub fn pids_matching(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) && pid != std::process::id() as i32 {
                out.push(pid);
            }
        }
    }
    out
}

/// One HTTP/1.1 request as OpenTofu's `http` backend client sends it (Basic auth, JSON body with
/// `Content-MD5`); returns status and body.
pub fn http_request(
    method: &str,
    url: &str,
    auth: Option<(&str, &str)>,
    body: Option<&[u8]>,
    extra_headers: &[(&str, &str)],
) -> (u16, String) {
    use base64::Engine;
    use md5::Digest;
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut s = std::net::TcpStream::connect(host).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    if let Some((u, p)) = auth {
        req.push_str(&format!(
            "Authorization: Basic {}\r\n",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        ));
    }
    for (k, v) in extra_headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.unwrap_or_default();
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
        if !extra_headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-md5"))
        {
            req.push_str(&format!(
                "Content-MD5: {}\r\n",
                base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(body))
            ));
        }
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    // Undo chunked transfer encoding if the server used it.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.push_str(&tail[..n.min(tail.len())]);
            rest = tail.get(n + 2..).unwrap_or("");
        }
        out
    } else {
        body.to_string()
    };
    (code, body)
}

/// An agent-API client that carries an agent's identity (and the cluster's agent token).
pub type AgentClient = v1::agent_service_client::AgentServiceClient<
    tonic::service::interceptor::InterceptedService<
        tonic::transport::Channel,
        tofuflow_proto::auth::Bearer,
    >,
>;

/// Registers an agent that is only this client (no process), for `pools`, with `token` (or the
/// cluster's agent token): returns a client carrying its identity, and its id.
pub async fn fake_agent(
    c: &Cluster,
    pools: &[&str],
    name: &str,
    token: Option<&str>,
) -> Result<(AgentClient, String), tonic::Status> {
    let chan = tonic::transport::Endpoint::from_shared(c.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let bearer = tofuflow_proto::auth::Bearer::new(token.or(c.agent_token.as_deref())).unwrap();
    let mut a = v1::agent_service_client::AgentServiceClient::with_interceptor(
        chan.clone(),
        bearer.clone(),
    );
    let reg = a
        .register(v1::RegisterRequest {
            protocol_version: tofuflow_proto::PROTOCOL_VERSION,
            name: name.into(),
            pools: pools.iter().map(|p| p.to_string()).collect(),
            capacity: 1,
            ..Default::default()
        })
        .await?
        .into_inner();
    let me = bearer.with_agent(&reg.agent_id, &reg.agent_secret).unwrap();
    Ok((
        v1::agent_service_client::AgentServiceClient::with_interceptor(chan, me),
        reg.agent_id,
    ))
}

/// A task claimed by [`claim_next`]: its spec (with the state-backend credential), the lease,
/// and the fake agent holding it.
pub struct Claimed {
    pub spec: v1::TaskSpec,
    pub epoch: u64,
    pub lease_token: String,
    pub agent_id: String,
    pub client: AgentClient,
}

/// Takes the next task off a pool's queue and claims it, as an agent would (without running
/// anything).
pub async fn claim_next(c: &Cluster, pool: &str, agent_name: &str) -> Claimed {
    use lapin::options::{BasicAckOptions, BasicGetOptions};
    use prost::Message;
    let ch = c.amqp().await;
    let d = wait_for("a task message", Duration::from_secs(30), || {
        let ch = ch.clone();
        async move {
            ch.basic_get(
                format!("tofuflow.pool.{pool}").as_str().into(),
                BasicGetOptions::default(),
            )
            .await
            .ok()
            .flatten()
        }
    })
    .await;
    let env = v1::TaskEnvelope::decode(d.delivery.data.as_slice()).expect("envelope");
    d.delivery.ack(BasicAckOptions::default()).await.unwrap();
    let (mut a, agent_id) = fake_agent(c, &[pool], agent_name, None)
        .await
        .expect("register");
    let r = a
        .claim(v1::ClaimRequest {
            agent_id: agent_id.clone(),
            task_id: env.task_id,
            attempt: env.attempt,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.granted, "claim refused: {}", r.reason);
    Claimed {
        spec: r.spec.unwrap(),
        epoch: r.epoch,
        lease_token: r.lease_token,
        agent_id,
        client: a,
    }
}

/// Claims the plan task of a run submitted with `--auto-approve`, completes it as a plan with
/// changes (with a stand-in plan file), and claims the apply task that follows: an apply lease
/// with its state-backend credential, as an agent gets it.
pub async fn claim_apply(c: &Cluster, pool: &str, agent_name: &str) -> Claimed {
    let mut plan = claim_next(c, pool, agent_name).await;
    finish_plan_with_changes(&mut plan).await;
    claim_next(c, pool, agent_name).await
}

/// Completes a claimed plan task as a plan with changes (uploading a stand-in plan file).
pub async fn finish_plan_with_changes(plan: &mut Claimed) {
    let (task_id, attempt) = (plan.spec.task_id.clone(), plan.spec.attempt);
    plan.client
        .upload_artifact(tokio_stream::iter(vec![v1::ArtifactChunk {
            task_id: task_id.clone(),
            attempt,
            epoch: plan.epoch,
            kind: v1::ArtifactKind::PlanFile as i32,
            data: b"stand-in plan".to_vec(),
            lease_token: plan.lease_token.clone(),
        }]))
        .await
        .expect("plan upload");
    plan.client
        .complete(v1::CompleteRequest {
            agent_id: plan.agent_id.clone(),
            task_id,
            attempt,
            epoch: plan.epoch,
            outcome: v1::Outcome::Succeeded as i32,
            has_changes: true,
            lease_token: plan.lease_token.clone(),
            ..Default::default()
        })
        .await
        .expect("plan completion");
}

/// A TCP proxy the test controls, to cut and restore a link (agent ↔ coordinator, agent ↔
/// broker) without touching either end.
pub struct Proxy {
    pub port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Proxy {
    pub fn start(target: String) -> Proxy {
        use std::sync::atomic::Ordering;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let conns: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>> = Default::default();
        let (c2, k2) = (cut.clone(), conns.clone());
        std::thread::spawn(move || {
            for inbound in l.incoming() {
                let Ok(inbound) = inbound else { continue };
                if c2.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let Ok(outbound) = std::net::TcpStream::connect(&target) else {
                    continue;
                };
                k2.lock()
                    .unwrap()
                    .extend([inbound.try_clone().unwrap(), outbound.try_clone().unwrap()]);
                for (mut from, mut to) in [
                    (inbound.try_clone().unwrap(), outbound.try_clone().unwrap()),
                    (outbound, inbound),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Proxy { port, cut, conns }
    }

    /// Drops every connection and refuses new ones until `restore`.
    pub fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    pub fn restore(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Starts the local broker again however a test that stops it ends.
pub struct BrokerBack;

impl Drop for BrokerBack {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl").arg("start_app").output();
    }
}

/// Runs `rabbitmqctl ARG` (stop_app, start_app) and insists it worked.
pub fn broker_ctl(arg: &str) {
    rabbitmqctl(&[arg]);
}

/// Writes a `--users-file` into `dir` for `(name, role, token)` entries (only the tokens'
/// SHA-256 hashes go in it, as in production) and returns its path.
pub fn users_file(dir: &Path, users: &[(&str, &str, &str)]) -> PathBuf {
    let mut text = String::new();
    for (name, role, token) in users {
        let mut c = Command::new("sha256sum")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("sha256sum");
        {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(token.as_bytes()).unwrap();
        }
        let out = c.wait_with_output().unwrap();
        let hash = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string();
        text.push_str(&format!(
            "[[users]]\nname = \"{name}\"\nrole = \"{role}\"\ntoken_sha256 = \"{hash}\"\n\n"
        ));
    }
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(format!("users-{}.toml", uuid::Uuid::new_v4().simple()));
    std::fs::write(&path, text).unwrap();
    path
}

/// The value of one Prometheus sample line (`name{labels} value`) in the coordinator's
/// `/metrics`, if present.
pub fn metric(c: &Cluster, sample: &str) -> Option<f64> {
    let (code, body) = http_get(&format!("{}/metrics", c.http_url())).ok()?;
    if code != 200 {
        return None;
    }
    body.lines()
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(name, _)| *name == sample)
        .and_then(|(_, v)| v.trim().parse().ok())
}
