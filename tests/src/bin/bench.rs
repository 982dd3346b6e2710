//! `tofuflow-bench`: measures, side by side in one run on this machine,
//!
//! 1. the floor: raw RabbitMQ publish→consume latency (lapin, quorum queue, confirms, same broker);
//! 2. the stand-in `tofu`'s start-up time (`tofu-double version -json`);
//! 3. per-task cost: spawning `tofu init` + `tofu plan` directly vs the same task through an agent
//!    (lease → bundle → workdir → init → plan → report → complete);
//! 4. submit → tofu-start latency at idle (p50/p99), against the floor; claiming (signature
//!    check, then the Claim RPC, which mints the task's OIDC ID token), and minting alone;
//! 5. throughput of N no-change plan runs with 2 agents;
//! 6. the log masker's throughput against a plain copy of the same lines, and its build per task;
//! 7. plan policy evaluation: the shipped example policies on a 1,000-resource plan JSON;
//! 8. submit throughput from 16 concurrent clients on PostgreSQL: one coordinator, then two
//!    sharing the database (the clients split between them), and the ratio.
//!
//! Build everything in one profile first (the bench starts the binaries next to itself):
//! `cargo build --release --workspace --bins && target/release/tofuflow-bench [RUNS]`;
//! `tofuflow-bench policies` measures figure 7 alone (no cluster), `tofuflow-bench ha` figure
//! 8 alone (400 submits), `tofuflow-bench masker` figure 6 alone (no cluster).

use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tofuflow_e2e::{bin_dir, metric, AgentOpts, Cluster, Db};
use tofuflow_proto::v1;
use tokio_stream::StreamExt;

/// The user API client the bench submits with.
type Client = tofuflow_e2e::UserClient;

fn now_ms_f() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

const MODULE: &str =
    "# A module whose plan never has changes.\nlocals {\n  region = \"eu-west-1\"\n}\n";

/// The p50 and p99 of one measured figure, in milliseconds.
struct Spread {
    p50: f64,
    p99: f64,
    mean: f64,
}

impl Spread {
    fn of(v: &mut [f64]) -> Spread {
        Spread {
            p50: pct(v, 0.5),
            p99: pct(v, 0.99),
            mean: v.iter().sum::<f64>() / v.len().max(1) as f64,
        }
    }
}

/// Every figure of one bench run, for the table.
struct Figures {
    runs: usize,
    /// Raw publish→consume on the broker.
    floor: Spread,
    /// Raw publish→confirm (p50).
    confirm_p50: f64,
    /// The stand-in's start-up, plainly spawned.
    startup: Spread,
    /// The same through the sandbox helper, per configuration: (name, p50, p99).
    sandbox: Vec<(String, f64, f64)>,
    /// `tofu init` + `tofu plan` spawned directly (p50).
    direct_p50: f64,
    /// Submit → tofu start at idle.
    latency: Spread,
    /// The same task through an agent, claim to end (p50).
    task_p50: f64,
    /// Where submit → tofu start goes, step by step (means over the idle runs, ms).
    breakdown: Vec<(&'static str, f64)>,
    /// Submit → tofu start at idle on an agent that builds each sandbox on the task's path
    /// (`--sandbox-ahead false`).
    latency_on_path: Spread,
    /// Claiming as an agent does: verifying the signed message, then the Claim RPC (the
    /// agent's identity, the workspace and pool rules, the lease).
    verify: Spread,
    claim: Spread,
    /// Minting an ID token alone (claims, RS256 signature with the cached key).
    mint: Spread,
    /// Generating one RSA 2048 signing key (once per rotation, off the claim path).
    keygen_ms: f64,
    /// A workflow's hop: an upstream's apply ended → its dependant's tofu start (20-stack chain).
    hop: Spread,
    /// A 20- and a 200-target rollout: wall time, its ratio to waves × slowest target, the
    /// coordinator's CPU seconds and peak memory over it, the engine's time per event.
    rollouts: [RolloutFigures; 2],
    /// Time to submit all throughput runs, and for all to finish.
    submitted: Duration,
    total: Duration,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().nth(1).as_deref() == Some("policies") {
        return policy_evaluation();
    }
    if std::env::args().nth(1).as_deref() == Some("masker") {
        return masker_throughput();
    }
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100);
    std::env::set_var("TOFUFLOW_E2E_LOG", "warn");
    let bins = bin_dir();
    let profile = bins.file_name().unwrap().to_string_lossy().to_string();
    println!(
        "tofuflow-bench: {runs} runs, binaries from target/{profile}, {} CPUs",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );

    if std::env::args().nth(1).as_deref() == Some("workflows") {
        return workflow_figures().await;
    }
    if std::env::args().nth(1).as_deref() == Some("ha") {
        std::env::set_var("TOFUFLOW_E2E_LOG", "warn");
        return ha_submit_ratio(400).await;
    }
    if std::env::args().nth(1).as_deref() == Some("history") {
        return history_figures().await;
    }
    if std::env::args().nth(1).as_deref() == Some("fleet") {
        return fleet_figures().await;
    }
    if std::env::args().nth(1).as_deref() == Some("throughput") {
        return throughput_figures(1000).await;
    }
    if std::env::args().nth(1).as_deref() == Some("dispatch") {
        return dispatch_figures().await;
    }
    if std::env::args().nth(1).as_deref() == Some("submits") {
        submit_rates(1000).await;
        return;
    }
    let pools = ["default", "bench-claim", "bench-path"];
    let mut c = Cluster::start_with(Db::Sqlite, &pools, &[]).await;
    let (floor, confirm_p50) = broker_floor(&c, runs).await;
    let double = bins.join("tofu-double");
    let startup = tofu_startup(&double);
    let sandbox = sandboxed_startup(&c, &bins, &double);
    let module_dir = c.dir.join("bench-module");
    std::fs::create_dir_all(&module_dir).unwrap();
    std::fs::write(module_dir.join("main.tf"), MODULE).unwrap();
    let direct_p50 = direct_task(&c, &double, &module_dir, runs);

    // 3b/4. Through tofuflow, at idle: one run at a time on one agent.
    let (_, _, on_path) = idle_dispatch(&mut c, &module_dir, runs, ("bench-path", false)).await;
    let (mut client, bundle, idle) =
        idle_dispatch(&mut c, &module_dir, runs, ("default", true)).await;
    let Idle {
        latency,
        task_p50,
        breakdown,
    } = idle;
    let latency_on_path = on_path.latency;

    // 4b. Claiming, one task at a time, by an agent that is only a gRPC client.
    let (verify, claim) = claim_latency(&c, &mut client, &bundle, runs).await;
    let (mint, keygen_ms) = minting_alone(runs);

    // 4c. A workflow: a chain of stacks, each reading the previous one's output.
    let hop = dag_hops(&c, 20).await;

    // 5. Throughput: N runs submitted at once, 2 agents.
    c.agent(AgentOpts::default()).await;
    let rollouts = [big_rollout(&c, 20).await, big_rollout(&c, 200).await];
    let (submitted, total) = throughput(&c, &mut client, &bundle, runs).await;

    print_table(&Figures {
        runs,
        floor,
        confirm_p50,
        startup,
        sandbox,
        direct_p50,
        latency,
        latency_on_path,
        task_p50,
        breakdown,
        verify,
        claim,
        mint,
        keygen_ms,
        hop,
        rollouts,
        submitted,
        total,
    });
    masker_throughput();
    policy_evaluation();
    drop(c);
    ha_submit_ratio(runs.max(200)).await;
}

/// A plan JSON of `n` resources shaped like `tofu show -json` output: mostly creates of
/// terraform_data, every tenth an update, every fiftieth a delete.
fn big_plan(n: usize) -> String {
    let rcs: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            let actions = match i {
                i if i % 50 == 0 => serde_json::json!(["delete"]),
                i if i % 10 == 0 => serde_json::json!(["update"]),
                _ => serde_json::json!(["create"]),
            };
            let before = serde_json::json!({"id": format!("id-{i}"), "input": {"name": format!("node-{i}")}, "output": {"name": format!("node-{i}")}, "triggers_replace": null});
            serde_json::json!({
                "address": format!("terraform_data.node[{i}]"), "mode": "managed",
                "type": "terraform_data", "name": "node", "index": i,
                "provider_name": "terraform.io/builtin/terraform",
                "change": {"actions": actions, "before": before, "after": {"input": {"name": format!("node-{i}")}, "triggers_replace": null},
                    "after_unknown": {"id": true, "output": true}, "before_sensitive": {}, "after_sensitive": {}},
            })
        })
        .collect();
    serde_json::json!({"format_version": "1.2", "terraform_version": "1.9.0", "resource_changes": rcs, "applyable": true, "complete": true, "errored": false}).to_string()
}

/// Figure 7: each shipped example policy evaluated on a 1,000-resource plan (median of 20,
/// compiling included, as the coordinator does per plan), and parsing the input once.
fn policy_evaluation() {
    use tofuflow_proto::policy::{evaluate, Input};
    let plan = big_plan(1000);
    let ctx = serde_json::json!({"workspace": "bench/ws", "tags": {}});
    let mut parse: Vec<f64> = (0..20)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(Input::new(&plan, &ctx).unwrap());
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    println!(
        "{:<58} {:>7.1} ms ({} KiB)",
        "policy input: parsing a 1,000-resource plan JSON",
        pct(&mut parse, 0.5),
        plan.len() / 1024
    );
    let input = Input::new(&plan, &ctx).unwrap();
    let dir = tofuflow_e2e::example("policies");
    for file in [
        "auto_approve_safe.rego",
        "deny_protected.rego",
        "approval_above_n.rego",
    ] {
        let source = std::fs::read_to_string(dir.join(file)).unwrap();
        let mut ms: Vec<f64> = (0..20)
            .map(|_| {
                let e = evaluate(file, &source, &input, Duration::from_secs(10));
                assert!(e.error.is_none(), "{file}: {:?}", e.error);
                e.duration.as_secs_f64() * 1000.0
            })
            .collect();
        println!(
            "{:<58} {:>7.1} ms",
            format!("policy {file}, 1,000 resources (p50)"),
            pct(&mut ms, 0.5)
        );
    }
}

/// Figure 8: `n` plan-only submits from 16 concurrent clients against one coordinator on
/// PostgreSQL, then against two on the same database (half the clients each); no agent runs
/// them (the submit path only: transaction, outbox, publish).
async fn ha_submit_ratio(n: usize) {
    let mut c = Cluster::start_with(Db::Postgres, &["default"], &[]).await;
    let module_dir = c.dir.join("bench-module");
    std::fs::create_dir_all(&module_dir).unwrap();
    std::fs::write(module_dir.join("main.tf"), MODULE).unwrap();
    let bundle = c.upload_bundle(&module_dir, "bench/ha-warmup");
    let first = c.client().await;
    let one = concurrent_submits(std::slice::from_ref(&first), &bundle, n, "one").await;
    let second = c.another_coordinator(2).await;
    let own = c.grpc_port;
    c.grpc_port = second.grpc_port;
    let other = c.client().await;
    c.grpc_port = own;
    let two = concurrent_submits(&[first, other], &bundle, n, "two").await;
    println!(
        "{:<58} {:>8.1} /s {:>12}",
        "submits, 16 clients, PostgreSQL, one coordinator", one, "1.00x"
    );
    println!(
        "{:<58} {:>8.1} /s {:>11.2}x",
        "  … two coordinators on the same database",
        two,
        two / one
    );
}

/// Figure 8b: submits/s from 16 concurrent clients to one coordinator, on SQLite and on
/// PostgreSQL (every answered submit durable: committed before it is answered).
async fn submit_rates(n: usize) -> [f64; 2] {
    let mut rates = [0.0; 2];
    for (i, db) in [Db::Sqlite, Db::Postgres].into_iter().enumerate() {
        let c = Cluster::start_with(db, &["default"], &[]).await;
        let module_dir = c.dir.join("bench-module");
        std::fs::create_dir_all(&module_dir).unwrap();
        std::fs::write(module_dir.join("main.tf"), MODULE).unwrap();
        let bundle = c.upload_bundle(&module_dir, "bench/ha-warmup");
        let client = c.client().await;
        rates[i] = concurrent_submits(std::slice::from_ref(&client), &bundle, n, "rate").await;
        println!(
            "{:<58} {:>8.1} /s",
            format!(
                "submits, 16 clients, {}, one coordinator",
                ["SQLite", "PostgreSQL"][i]
            ),
            rates[i]
        );
    }
    rates
}

/// Figure 10: reading a long history: 100,000 runs with 100 log lines each (10 million lines)
/// on SQLite; each read 20 times from one gRPC client, p50 and p99.
async fn history_figures() {
    let mut c = Cluster::start_with(Db::Sqlite, &["default"], &[]).await;
    c.agent(AgentOpts::default()).await;
    let module_dir = c.dir.join("bench-module");
    std::fs::create_dir_all(&module_dir).unwrap();
    std::fs::write(module_dir.join("main.tf"), MODULE).unwrap();
    let template = c.submit(&module_dir, "hist/template", &["--auto-approve"]);
    let ended = ["applied", "planned_no_changes"];
    c.wait_state(&template, &ended, Duration::from_secs(60))
        .await;
    let t = Instant::now();
    c.copy_history(&template, 100_000, 100).await;
    println!("\nHistory: 100,000 runs, 10,000,000 log lines (SQLite), written in {:.0} s; each read 20 times:", t.elapsed().as_secs_f64());
    let client = c.client().await;
    let list = |workspace: &str, before: &str| v1::ListRunsRequest {
        workspace: workspace.into(),
        before: before.into(),
        limit: 50,
        ..Default::default()
    };
    let reads: Vec<(&str, Read)> = vec![
        ("run list, first page of 50", Read::List(list("", ""))),
        (
            "run list, a page half-way back (cursor)",
            Read::List(list("", "hist-50000")),
        ),
        (
            "run list -w WORKSPACE (one of 1,000)",
            Read::List(list("hist/ws-7", "")),
        ),
        ("run show", Read::Show("hist-77777".into())),
        ("run logs (its 100 lines)", Read::Logs("hist-77777".into())),
        ("state list", Read::State("hist/template".into())),
    ];
    println!("{:<52} {:>10} {:>10}", "", "p50", "p99");
    for (name, read) in reads {
        let mut took = Vec::new();
        for _ in 0..20 {
            let t = now_ms_f();
            read.once(&mut client.clone()).await;
            took.push(now_ms_f() - t);
        }
        let s = Spread::of(&mut took);
        println!("{:<52} {:>7.1} ms {:>7.1} ms", name, s.p50, s.p99);
    }
}

/// One of the history's reads.
enum Read {
    List(v1::ListRunsRequest),
    Show(String),
    Logs(String),
    State(String),
}

impl Read {
    async fn once(&self, client: &mut Client) {
        match self {
            Read::List(r) => {
                let n = client
                    .list_runs(r.clone())
                    .await
                    .unwrap()
                    .into_inner()
                    .runs
                    .len();
                assert_eq!(n, 50, "a full page");
            }
            Read::Show(id) => {
                let req = v1::GetRunRequest {
                    run_id: id.clone(),
                    ..Default::default()
                };
                client.get_run(req).await.unwrap();
            }
            Read::Logs(id) => {
                let req = v1::RunLogsRequest {
                    run_id: id.clone(),
                    ..Default::default()
                };
                let mut s = client.run_logs(req).await.unwrap().into_inner();
                let mut n = 0;
                while let Some(l) = s.next().await {
                    l.unwrap();
                    n += 1;
                }
                assert!(n >= 100, "{n} lines");
            }
            Read::State(ws) => {
                let req = v1::StateRequest {
                    workspace: ws.clone(),
                    ..Default::default()
                };
                client.list_state_versions(req).await.unwrap();
            }
        }
    }
}

/// What a simulated fleet of `n` agents costs the coordinator.
struct Fleet {
    register_s: f64,
    cpu_share: f64,
    memory_mib: f64,
    heartbeat: Spread,
    claim: Spread,
}

/// Figure 9: fleets of 100 and 1,000 simulated agents.
async fn fleet_figures() {
    let fleets = [fleet(100).await, fleet(1000).await];
    println!(
        "\nFleet: simulated agents (gRPC clients only, one connection each, no tofu), SQLite,"
    );
    println!("every agent heartbeating every 5 s (the default) while idle; measured over 20 s.");
    println!("{:<52} {:>12} {:>12}", "", "N = 100", "N = 1000");
    let row = |name: &str, f: &dyn Fn(&Fleet) -> String| {
        println!("{:<52} {:>12} {:>12}", name, f(&fleets[0]), f(&fleets[1]));
    };
    row("registering all agents (s)", &|f| {
        format!("{:.1}", f.register_s)
    });
    row("coordinator CPU, idle fleet (% of one core)", &|f| {
        format!("{:.1}", f.cpu_share * 100.0)
    });
    row("coordinator memory, peak (MiB)", &|f| {
        format!("{:.0}", f.memory_mib)
    });
    row("heartbeat round trip p50 / p99 (ms)", &|f| {
        format!("{:.1} / {:.1}", f.heartbeat.p50, f.heartbeat.p99)
    });
    row("claim p50 / p99 under that load (ms)", &|f| {
        format!("{:.1} / {:.1}", f.claim.p50, f.claim.p99)
    });
}

/// `n` fake agents register and heartbeat every 5 s; the coordinator's CPU and memory over 20 s,
/// then 50 claims by one more agent while they go on.
async fn fleet(n: usize) -> Fleet {
    let args = ["--heartbeat-interval", "5s", "--lease-ttl", "15s"];
    let c = Cluster::start_with(Db::Sqlite, &["default", "bench-claim"], &args).await;
    let token = c.join_token(&["default".to_string()]).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let beats = std::sync::Arc::new(std::sync::Mutex::new(Vec::<f64>::new()));
    let t0 = Instant::now();
    let mut fleet = Vec::new();
    for i in 0..n {
        let (client, id) =
            tofuflow_e2e::fake_agent(&c, &["default"], &format!("fleet-{i}"), Some(&token))
                .await
                .expect("a simulated agent joins");
        let offset = Duration::from_millis((i as u64 * 5000) / n as u64);
        fleet.push(tokio::spawn(heartbeats(
            client,
            id,
            offset,
            stop.clone(),
            beats.clone(),
        )));
    }
    let register_s = t0.elapsed().as_secs_f64();
    // One whole interval first, so every agent is heartbeating.
    tokio::time::sleep(Duration::from_secs(5)).await;
    beats.lock().unwrap().clear();
    let (cpu0, _) = coordinator_usage(&c);
    tokio::time::sleep(Duration::from_secs(20)).await;
    let (cpu1, memory_mib) = coordinator_usage(&c);
    let module_dir = c.dir.join("bench-module");
    std::fs::create_dir_all(&module_dir).unwrap();
    std::fs::write(module_dir.join("main.tf"), MODULE).unwrap();
    let bundle = c.upload_bundle(&module_dir, "bench/ha-warmup");
    let mut client = c.client().await;
    let (_, claim) = claim_latency(&c, &mut client, &bundle, 50).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for f in fleet {
        let _ = f.await;
    }
    let heartbeat = Spread::of(&mut beats.lock().unwrap());
    Fleet {
        register_s,
        cpu_share: (cpu1 - cpu0) / 20.0,
        memory_mib,
        heartbeat,
        claim,
    }
}

/// One simulated agent's heartbeats (holding no lease), every 5 s from `offset` on.
async fn heartbeats(
    mut client: tofuflow_e2e::AgentClient,
    agent_id: String,
    offset: Duration,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    beats: std::sync::Arc<std::sync::Mutex<Vec<f64>>>,
) {
    tokio::time::sleep(offset).await;
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        tick.tick().await;
        let t = now_ms_f();
        let r = client
            .heartbeat(v1::HeartbeatRequest {
                protocol_version: tofuflow_proto::PROTOCOL_VERSION,
                agent_id: agent_id.clone(),
                free_slots: 1,
                ..Default::default()
            })
            .await;
        if r.is_ok() {
            beats.lock().unwrap().push(now_ms_f() - t);
        }
    }
}

/// Submits/s of `n` plan-only runs from 16 concurrent clients spread over `clients`.
async fn concurrent_submits(clients: &[Client], bundle: &str, n: usize, tag: &str) -> f64 {
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..16 {
        let mut client = clients[k % clients.len()].clone();
        let (bundle, tag) = (bundle.to_string(), tag.to_string());
        let share = n / 16 + usize::from(k < n % 16);
        tasks.push(tokio::spawn(async move {
            for i in 0..share {
                let ws = format!("bench/ha-{tag}-{k}-{i}");
                client
                    .submit_run(submit_request(&bundle, ws))
                    .await
                    .expect("submit");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    n as f64 / t0.elapsed().as_secs_f64()
}

/// Figure 6: masking 16 MiB of log lines (a few secrets in them) in the reporter's batches of
/// 500, with the secrets of a busy task (connection values, a token, a password: every form of
/// each), against copying the same lines.
fn masker_throughput() {
    use tofuflow_agent::mask::Masker;
    let secrets: Vec<String> = (0..8)
        .map(|i| format!("secret-value-{i}-{}", uuid::Uuid::new_v4().simple()))
        .collect();
    let masker = Masker::new(&secrets);
    let mut lines = Vec::new();
    let mut bytes = 0;
    while bytes < 16 << 20 {
        let n = lines.len();
        let line = if n % 1000 == 0 {
            format!(
                "aws_instance.gpu[{n}]: Still creating... token={}",
                secrets[n % 8]
            )
        } else {
            format!("aws_instance.gpu[{n}]: Still creating... [{n}s elapsed] (id=i-0abc{n:08})")
        };
        bytes += line.len();
        lines.push(line);
    }
    let mb = bytes as f64 / (1 << 20) as f64;
    let timed = |f: &dyn Fn(&mut Vec<String>)| {
        let t = Instant::now();
        for chunk in lines.chunks(500) {
            let mut batch = chunk.to_vec();
            f(&mut batch);
            std::hint::black_box(&batch);
        }
        mb / t.elapsed().as_secs_f64()
    };
    let copy = timed(&|_| {});
    let masked = timed(&|b| {
        masker.mask_stream(b, false);
    });
    println!(
        "{:<58} {:>7.0} MB/s {:>11.1}x",
        "log masker (8 secrets, every encoded form), batches of 500",
        masked,
        copy / masked
    );
    println!(
        "{:<58} {:>7.0} MB/s",
        "  … floor: copying the same lines", copy
    );
    masker_build(&secrets);
}

/// Figure 6b: building a task's masker before its first command (the run's secrets, the
/// backend password and an ID token of 900 characters, every form of each), p50 of 50.
fn masker_build(secrets: &[String]) {
    use tofuflow_agent::mask::Masker;
    let token: String = (0..9)
        .map(|_| uuid::Uuid::new_v4().simple().to_string())
        .collect::<Vec<_>>()
        .join(".")
        .repeat(3);
    let mut times: Vec<f64> = (0..50)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(Masker::new(secrets.iter().chain([&token])));
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    println!(
        "{:<58} {:>7.2} ms",
        "  a task's masker built (8 secrets + a 900-char token)",
        pct(&mut times, 0.5)
    );
}

/// Figure 4b: for each of `runs` plan-only runs on pool `bench-claim`, the time to verify its
/// signed message against the coordinator's keys, and the Claim RPC's round trip; the task
/// is then failed by hand so nothing re-dispatches it.
async fn claim_latency(
    c: &Cluster,
    client: &mut Client,
    bundle: &str,
    runs: usize,
) -> (Spread, Spread) {
    use lapin::options::{BasicAckOptions, BasicGetOptions};
    let (mut agent, agent_id) =
        tofuflow_e2e::fake_agent(c, &["bench-claim"], "bench-claimer", None)
            .await
            .expect("the fake agent joins");
    let keys: Vec<tofuflow_proto::signing::PublicKey> = agent
        .signing_keys(v1::SigningKeysRequest {
            agent_id: agent_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .keys
        .into_iter()
        .map(Into::into)
        .collect();
    let ch = c.amqp().await;
    let (mut verify, mut claim) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let mut req = submit_request(bundle, format!("bench/claim-{i}"));
        req.pool = "bench-claim".into();
        client.submit_run(req).await.unwrap();
        let d = tofuflow_e2e::wait_for("a task message", Duration::from_secs(30), || {
            let ch = ch.clone();
            async move {
                ch.basic_get(
                    "tofuflow.pool.bench-claim".into(),
                    BasicGetOptions::default(),
                )
                .await
                .ok()
                .flatten()
            }
        })
        .await;
        let t0 = now_ms_f();
        let signed =
            <v1::SignedEnvelope as prost::Message>::decode(d.delivery.data.as_slice()).unwrap();
        let key = keys.iter().find(|k| k.key_id == signed.key_id);
        let env = tofuflow_proto::signing::verify(&signed, key, now_ms_f() as i64)
            .expect("a good signature");
        let t1 = now_ms_f();
        let r = agent
            .claim(v1::ClaimRequest {
                agent_id: agent_id.clone(),
                task_id: env.task_id.clone(),
                attempt: env.attempt,
                envelope_id: signed.envelope_id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        let t2 = now_ms_f();
        assert!(r.granted, "claim refused: {}", r.reason);
        d.delivery.ack(BasicAckOptions::default()).await.unwrap();
        verify.push(t1 - t0);
        claim.push(t2 - t1);
        agent
            .complete(v1::CompleteRequest {
                agent_id: agent_id.clone(),
                task_id: env.task_id,
                attempt: env.attempt,
                epoch: r.epoch,
                outcome: v1::Outcome::Failed as i32,
                error: "bench: claimed only".into(),
                lease_token: r.lease_token,
                ..Default::default()
            })
            .await
            .unwrap();
    }
    (Spread::of(&mut verify), Spread::of(&mut claim))
}

/// Figure 4c: minting a task's ID token alone, as a claim does it (the coordinator's own
/// code, a key of its own): `runs` times; and the one-off generation of that key.
fn minting_alone(runs: usize) -> (Spread, f64) {
    use tofuflow_coordinator::oidc::{claims::TaskFacts, IdClaims, Issuer, TokenWindow};
    let t = Instant::now();
    let key = tofuflow_coordinator::store::DetachedKey::generate().expect("an RSA key");
    let keygen_ms = t.elapsed().as_secs_f64() * 1000.0;
    let issuer = Issuer::parse("https://tofuflow.example.com").unwrap();
    let mut mint = Vec::with_capacity(runs);
    let tags = std::collections::BTreeMap::from([("dag_id".to_string(), "bench".to_string())]);
    for i in 0..runs.max(1) * 10 {
        let run_id = uuid::Uuid::new_v4().to_string();
        let t0 = now_ms_f();
        let facts = TaskFacts {
            workspace: "bench/mint",
            run_id: &run_id,
            task_id: &run_id,
            phase: tofuflow_coordinator::runs::Phase::Apply,
            actor: "bench",
            pipeline: "dag-1",
            commit: "0123456789abcdef",
            bundle_digest: "sha256:00",
            tags: &tags,
        };
        let window = TokenWindow::new(now_ms_f() as i64, 900_000, &[]);
        let claims =
            IdClaims::for_task(&issuer, "sts.amazonaws.com", &facts, window, format!("{i}"));
        let token = key.sign(&claims).expect("a token");
        mint.push(now_ms_f() - t0);
        assert!(token.len() > 100);
    }
    (Spread::of(&mut mint), keygen_ms)
}

/// Figure 1, the floor: raw publish → consume on the same broker, one message at a time;
/// returns the consume spread and the confirm p50.
async fn broker_floor(c: &Cluster, runs: usize) -> (Spread, f64) {
    let ch = c.amqp().await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let mut args = FieldTable::default();
    args.insert(
        ShortString::from("x-queue-type"),
        AMQPValue::LongString("quorum".into()),
    );
    ch.queue_declare(
        "bench.floor".into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        args,
    )
    .await
    .unwrap();
    let ch2 = c.amqp().await;
    let mut consumer = ch2
        .basic_consume(
            "bench.floor".into(),
            "bench".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut floor = Vec::new();
    let mut confirm = Vec::new();
    for _ in 0..runs.max(50) {
        let t0 = Instant::now();
        let pc = ch
            .basic_publish(
                "".into(),
                "bench.floor".into(),
                BasicPublishOptions::default(),
                b"12 bytes....",
                lapin::BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .unwrap();
        let d = consumer.next().await.unwrap().unwrap();
        floor.push(t0.elapsed().as_secs_f64() * 1000.0);
        d.ack(BasicAckOptions::default()).await.unwrap();
        pc.await.unwrap();
        confirm.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    (Spread::of(&mut floor), pct(&mut confirm, 0.5))
}

/// Figure 2: the stand-in's start-up (`version -json`), plainly spawned.
fn tofu_startup(double: &Path) -> Spread {
    let mut startup = Vec::new();
    for _ in 0..200 {
        let t0 = Instant::now();
        let o = std::process::Command::new(double)
            .args(["version", "-json"])
            .output()
            .unwrap();
        assert!(o.status.success());
        startup.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    Spread::of(&mut startup)
}

/// One sandbox configuration to time: (name, namespaces, network namespace, task cgroup).
type Variant = (&'static str, bool, bool, bool);

/// Figure 2b: the same command through the sandbox helper, as the agent starts every tofu
/// command, in each configuration this machine supports: (name, p50, p99) rows.
fn sandboxed_startup(c: &Cluster, bins: &Path, double: &Path) -> Vec<(String, f64, f64)> {
    let sb_root = c.dir.join("bench-sandbox");
    let cfg = <tofuflow_agent::Config as clap::Parser>::parse_from([
        "tofuflow-agent".as_ref(),
        "--tofu-bin".as_ref(),
        double.as_os_str(),
        "--work-root".as_ref(),
        sb_root.as_os_str(),
    ]);
    std::fs::create_dir_all(&sb_root).unwrap();
    match tofuflow_agent::sandbox::Sandbox::with_helper(&cfg, bins.join("tofuflow-agent")) {
        Err(e) => {
            println!("sandbox not measured: {e}");
            vec![]
        }
        Ok(sb) => {
            let wd = sb_root.join("work").join("bench");
            std::fs::create_dir_all(&wd).unwrap();
            let mut rows: Vec<(String, f64, f64)> = sandbox_variants(&sb)
                .into_iter()
                .map(|variant| {
                    let mut t = time_sandboxed(&sb, variant, &wd, bins);
                    (variant.0.to_string(), pct(&mut t, 0.5), pct(&mut t, 0.99))
                })
                .collect();
            if sb.namespaces {
                let mut t = time_in_session(&sb, &wd, bins);
                rows.push((
                    "sandbox: a command entering the task's session (namespaces built once per task)".into(),
                    pct(&mut t, 0.5),
                    pct(&mut t, 0.99),
                ));
            }
            rows
        }
    }
}

/// The sandbox configurations this machine supports, from the least to the most isolated.
fn sandbox_variants(sb: &tofuflow_agent::sandbox::Sandbox) -> Vec<Variant> {
    let mut variants = vec![(
        "sandbox helper, run user, no namespaces",
        false,
        false,
        false,
    )];
    if sb.namespaces {
        variants.push((
            "sandbox: + mount/PID/IPC/UTS namespaces",
            true,
            false,
            false,
        ));
    }
    if sb.features.network_namespace.is_ok() {
        variants.push((
            "sandbox: + network namespace (egress / none / allow-list)",
            true,
            true,
            false,
        ));
    }
    if sb.namespaces && sb.cgroups.is_some() {
        variants.push((
            "sandbox: namespaces + task cgroup (memory, pids limits)",
            true,
            false,
            true,
        ));
    }
    variants
}

/// 100 runs of `tofu version -json` through the sandbox helper in one configuration (ms each).
fn time_sandboxed(
    sb: &tofuflow_agent::sandbox::Sandbox,
    (_, ns, net, cg): Variant,
    wd: &Path,
    bins: &Path,
) -> Vec<f64> {
    let mut v = sb.clone();
    v.namespaces = ns;
    let mut spec = v.spec(wd, None, net, v.run_user, Default::default(), vec![]);
    if let Some((u, g)) = v.run_user {
        nix::unistd::chown(
            wd,
            Some(nix::unistd::Uid::from_raw(u)),
            Some(nix::unistd::Gid::from_raw(g)),
        )
        .unwrap();
    }
    spec.cwd = if ns {
        tofuflow_agent::sandbox::WORKDIR.into()
    } else {
        wd.to_path_buf()
    };
    spec.argv = vec![
        if ns {
            tofuflow_agent::sandbox::TOFU.to_string()
        } else {
            v.tofu.display().to_string()
        },
        "version".into(),
        "-json".into(),
    ];
    let mut t = Vec::new();
    for i in 0..100 {
        let t0 = Instant::now();
        // As in a task with limits: a fresh cgroup, joined by the helper.
        let cgroup = cg.then(|| {
            v.cgroups
                .as_ref()
                .unwrap()
                .create(&format!("tofuflow-bench-{i}"), 1 << 30, 1000)
                .unwrap()
        });
        let mut spec = spec.clone();
        spec.cgroup_procs = cgroup.as_ref().map(|c| c.procs_files()).unwrap_or_default();
        let o = tofuflow_agent::sandbox::run_helper(
            &bins.join("tofuflow-agent"),
            &spec,
            &[("PATH", "/usr/bin:/bin")],
        )
        .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        if let Some(c) = cgroup {
            c.destroy();
        }
        t.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    t
}

/// 100 runs of `tofu version -json` entering one sandbox session with the default namespaces, as
/// a task's commands do (ms each; the session's start is the task's, not the command's).
fn time_in_session(sb: &tofuflow_agent::sandbox::Sandbox, wd: &Path, bins: &Path) -> Vec<f64> {
    use tofuflow_agent::sandbox::session;
    let mut spec = sb.spec(wd, None, false, sb.run_user, Default::default(), vec![]);
    spec.cwd = tofuflow_agent::sandbox::WORKDIR.into();
    let helper = bins.join("tofuflow-agent");
    let held = session::start_blocking(&helper, &spec).unwrap();
    spec.argv = vec![
        tofuflow_agent::sandbox::TOFU.to_string(),
        "version".into(),
        "-json".into(),
    ];
    let mut t = Vec::new();
    for _ in 0..100 {
        let t0 = Instant::now();
        let o = held.run(&spec, &[("PATH", "/usr/bin:/bin")]).unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        t.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    held.end().unwrap();
    t
}

/// Figure 3a: the same tofu commands spawned directly (local backend, fresh directory each time): p50.
fn direct_task(c: &Cluster, double: &Path, module_dir: &Path, runs: usize) -> f64 {
    let mut direct = Vec::new();
    for i in 0..runs.min(50) {
        let wd = c.dir.join(format!("direct-{i}"));
        std::fs::create_dir_all(&wd).unwrap();
        std::fs::copy(module_dir.join("main.tf"), wd.join("main.tf")).unwrap();
        let t0 = Instant::now();
        for args in [
            vec!["init", "-input=false", "-no-color"],
            vec![
                "plan",
                "-input=false",
                "-no-color",
                "-json",
                "-detailed-exitcode",
                "-out=tfplan",
            ],
        ] {
            let o = std::process::Command::new(double)
                .args(&args)
                .current_dir(&wd)
                .env("TF_IN_AUTOMATION", "1")
                .output()
                .unwrap();
            assert_eq!(
                o.status.code(),
                Some(0),
                "{}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        direct.push(t0.elapsed().as_secs_f64() * 1000.0);
        std::fs::remove_dir_all(&wd).ok();
    }
    pct(&mut direct, 0.5)
}

/// Submits the module once through the CLI and waits for it (warming the agent up); returns the
/// bundle digest the measured runs reuse.
fn warm_up(c: &Cluster, module_dir: &Path, pool: &str) -> String {
    let o = c.cli(&[
        "run",
        "submit",
        module_dir.to_str().unwrap(),
        "--pool",
        pool,
        "-w",
        &format!("bench/warmup-{pool}"),
        "--plan-only",
        "--wait",
        "-o",
        "json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["bundle_digest"].as_str().unwrap().to_string()
}

/// A plan-only run of the bench's bundle in workspace `ws`.
fn submit_request(bundle: &str, ws: String) -> v1::SubmitRunRequest {
    submit_to(bundle, ws, "default")
}

/// The same to pool `pool`.
fn submit_to(bundle: &str, ws: String, pool: &str) -> v1::SubmitRunRequest {
    v1::SubmitRunRequest {
        workspace: ws,
        bundle_digest: bundle.to_string(),
        pool: pool.into(),
        kind: v1::RunKind::PlanOnly as i32,
        actor: "bench".into(),
        ..Default::default()
    }
}

/// Figures 3b and 4, one run at a time: submit → tofu start latency, and the task's time
/// through the agent (claim to end, p50).
async fn idle_runs(
    c: &Cluster,
    client: &mut Client,
    (bundle, agent_metrics, pool): (&str, &str, &str),
    runs: usize,
) -> (Spread, f64) {
    let mut latency = Vec::new();
    let mut task_time = Vec::new();
    let idle_runs = runs.min(50);
    let mut warming = true;
    for i in 0..idle_runs {
        // The warm-up run was the first to leave a sandbox built ahead.
        if warming {
            warming = agent_idle(agent_metrics, i + 1).await > 0.0;
        }
        let t0 = now_ms_f();
        let r = client
            .submit_run(submit_to(bundle, format!("bench/idle-{pool}-{i}"), pool))
            .await
            .unwrap()
            .into_inner();
        let done = c
            .wait_state(&r.id, &["planned_no_changes"], Duration::from_secs(60))
            .await;
        let start = c
            .tofu_trace()
            .into_iter()
            .find(|e| e["event"] == "start" && e["args"][0] == "init" && e["run"] == r.id.as_str())
            .and_then(|e| e["ms"].as_f64())
            .expect("tofu init traced");
        latency.push(start - t0);
        let claimed = done
            .transitions
            .iter()
            .find(|t| t.to_state == "planning")
            .unwrap()
            .unix_ms;
        let ended = done.transitions.last().unwrap().unix_ms;
        task_time.push((ended - claimed) as f64);
    }
    (Spread::of(&mut latency), pct(&mut task_time, 0.5))
}

/// `tofuflow-bench dispatch`: the broker floor and submit → tofu start at idle, step by step
/// (figures 1, 3b and 3c alone).
async fn dispatch_figures() {
    let mut c = Cluster::start_with(Db::Sqlite, &["default", "bench-path"], &[]).await;
    let (floor, _) = broker_floor(&c, 100).await;
    let module_dir = c.dir.join("bench-module");
    std::fs::create_dir_all(&module_dir).unwrap();
    std::fs::write(module_dir.join("main.tf"), MODULE).unwrap();
    let (_, _, on_path) = idle_dispatch(&mut c, &module_dir, 50, ("bench-path", false)).await;
    let (_, _, idle) = idle_dispatch(&mut c, &module_dir, 50, ("default", true)).await;
    let row = |name: &str, ms: f64, extra: String| println!("{name:<58} {ms:>9.2} ms {extra:>12}");
    row(
        "raw RabbitMQ publish→consume (p50)",
        floor.p50,
        String::new(),
    );
    row(
        "submit → tofu start, idle, p50 (p99)",
        idle.latency.p50,
        format!("{:.2} ms", idle.latency.p99),
    );
    row(
        "  … the sandbox built on the task's path, p50 (p99)",
        on_path.latency.p50,
        format!("{:.2} ms", on_path.latency.p99),
    );
    let ratio = idle.latency.p50 / floor.p50;
    row(
        "  … where it goes (means; the mean of the whole)",
        idle.latency.mean,
        format!("{ratio:.1}x floor"),
    );
    for (step, ms) in &idle.breakdown {
        row(&format!("    {step}"), *ms, String::new());
    }
    row(
        "agent: lease → … → complete, p50",
        idle.task_p50,
        String::new(),
    );
    row(
        "  … the sandbox built on the task's path",
        on_path.task_p50,
        String::new(),
    );
}

/// Submit → tofu start at idle and the task's time through the agent (figures 3b, 3c, 4).
struct Idle {
    latency: Spread,
    task_p50: f64,
    breakdown: Vec<(&'static str, f64)>,
}

/// Starts the idle agent (with its `/metrics`) and runs the idle runs one at a time, the
/// agent's and the coordinator's steps read from both `/metrics` before and after; the client
/// and the bundle go on to the next figures.
async fn idle_dispatch(
    c: &mut Cluster,
    module_dir: &Path,
    runs: usize,
    (pool, ahead): (&str, bool),
) -> (Client, String, Idle) {
    let agent_metrics = tofuflow_e2e::free_port();
    c.agent(AgentOpts {
        pools: vec![pool.to_string()],
        owned_args: vec![
            "--metrics-listen".into(),
            format!("127.0.0.1:{agent_metrics}"),
            format!("--sandbox-ahead={ahead}"),
        ],
        ..Default::default()
    })
    .await;
    let agent_metrics = format!("http://127.0.0.1:{agent_metrics}/metrics");
    let mut client = c.client().await;
    let bundle = warm_up(c, module_dir, pool);
    let c = &*c;
    let scrape = || {
        let coordinator = c.get("/metrics").map(|r| r.1).unwrap_or_default();
        let agent = tofuflow_e2e::http_get(&agent_metrics)
            .map(|r| r.1)
            .unwrap_or_default();
        (coordinator, agent)
    };
    let before = scrape();
    let (latency, task_p50) =
        idle_runs(c, &mut client, (&bundle, &agent_metrics, pool), runs).await;
    let breakdown = dispatch_steps(&before, &scrape(), latency.mean);
    let idle = Idle {
        latency,
        task_p50,
        breakdown,
    };
    (client, bundle, idle)
}

/// Figure 3c: the steps of submit → tofu start, each one's mean over the idle runs (ms), from
/// the coordinator's and the agent's `/metrics` scraped before and after them (`(coordinator,
/// agent)` text each); the rest of `total` (ms, the measured mean) is what no step covers: the
/// first command's helper and tofu's own start-up, and the hand-overs between steps.
fn dispatch_steps(
    before: &(String, String),
    after: &(String, String),
    total: f64,
) -> Vec<(&'static str, f64)> {
    use tofuflow_e2e::mean_between;
    let coordinator = |step: &str| {
        let labels = format!("step=\"{step}\"");
        mean_between(&before.0, &after.0, "tofuflow_dispatch_seconds", &labels)
    };
    let agent = |step: &str| {
        let labels = format!("step=\"{step}\"");
        mean_between(&before.1, &after.1, "tofuflow_agent_step_seconds", &labels)
    };
    let mut steps: Vec<(&'static str, f64)> = [
        (
            "SubmitRun: checks, group commit (fsync)",
            coordinator("submit"),
        ),
        ("outbox: woken → handed to RabbitMQ", coordinator("outbox")),
        ("RabbitMQ: publish → the agent has it", agent("delivery")),
        ("claim: verify, Claim RPC (lease, token)", agent("claim")),
        (
            "setup: the task's log, watchdog, cgroup, dir",
            agent("setup"),
        ),
        (
            "bundle: cached or fetched, verified, unpacked",
            agent("bundle"),
        ),
        ("prepare: variables, secrets, backend", agent("prepare")),
        ("sandbox: built on the task's path", agent("sandbox")),
    ]
    .into_iter()
    .map(|(name, secs)| (name, secs.unwrap_or(0.0) * 1000.0))
    .collect();
    let covered: f64 = steps.iter().map(|s| s.1).sum();
    steps.push(("rest: helper, tofu's start-up, hand-overs", total - covered));
    let ahead = agent("sandbox_ahead").unwrap_or(0.0) * 1000.0;
    steps.push(("(a sandbox built ahead, off the path: its build)", ahead));
    let granting = mean_between(&before.0, &after.0, "tofuflow_claim_seconds", "");
    steps.insert(
        4,
        (
            "  of which the coordinator grants it",
            granting.unwrap_or(f64::NAN) * 1000.0,
        ),
    );
    steps
}

/// Waits (up to a second) until the agent is idle after `done` runs: it has built the sandbox
/// for its next task. Answers how many it built (none: an agent without namespaces builds none,
/// and there is nothing to wait for).
async fn agent_idle(agent_metrics: &str, done: usize) -> f64 {
    let built = || {
        let text = tofuflow_e2e::http_get(agent_metrics)
            .map(|r| r.1)
            .unwrap_or_default();
        tofuflow_e2e::sample_in(
            &text,
            "tofuflow_agent_step_seconds_count{step=\"sandbox_ahead\"}",
        )
        .unwrap_or(0.0)
    };
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let n = built();
        if n >= done as f64 || Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Figure 4c: a chain of `stacks` stacks, each reading the previous one's output: from each
/// upstream's apply ending (its last transition) to its dependant's `tofu init` starting.
async fn dag_hops(c: &Cluster, stacks: usize) -> Spread {
    let dir = c.dir.join("bench-chain");
    std::fs::create_dir_all(dir.join("link")).unwrap();
    let module =
        "variable \"prev\" {\n  type = string\n}\noutput \"v\" {\n  value = \"${var.prev}+\"\n}\n";
    std::fs::write(dir.join("link/main.tf"), module).unwrap();
    let mut file = String::from("workflow {\n  approval = \"auto\"\n}\n");
    for i in 0..stacks {
        let prev = if i == 0 {
            "\"start\"".to_string()
        } else {
            format!("stack.s{:02}.outputs.v", i - 1)
        };
        file.push_str(&format!("stack \"s{i:02}\" {{\n  source = \"./link\"\n  workspace = \"bench/chain-{i:02}\"\n  inputs = {{ prev = {prev} }}\n}}\n"));
    }
    std::fs::write(dir.join("chain.hcl"), file).unwrap();
    let out = c.cli(&[
        "-o",
        "json",
        "workflow",
        "run",
        dir.join("chain.hcl").to_str().unwrap(),
        "--wait",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let w: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let targets = w["targets"].as_array().unwrap();
    let trace = c.tofu_trace();
    let mut hops = Vec::new();
    for pair in targets.windows(2) {
        let up = c.run(pair[0]["run_id"].as_str().unwrap()).await;
        let ended = up.transitions.last().unwrap().unix_ms as f64;
        let next = pair[1]["run_id"].as_str().unwrap();
        let start = trace
            .iter()
            .find(|e| e["event"] == "start" && e["args"][0] == "init" && e["run"] == next)
            .and_then(|e| e["ms"].as_f64())
            .expect("tofu init traced");
        hops.push(start - ended);
    }
    Spread::of(&mut hops)
}

/// What a big rollout cost.
struct RolloutFigures {
    targets: usize,
    wall: Duration,
    /// Wall time ÷ (waves × the slowest target's run).
    ratio: f64,
    cpu_secs: f64,
    peak_rss_mb: f64,
    /// The workflow engine's mean time per event (a target's run ending), µs.
    step_us: f64,
}

/// The coordinator's CPU seconds (user + system) and peak resident memory (MiB) so far.
fn coordinator_usage(c: &Cluster) -> (f64, f64) {
    let pid = c.coordinator_pid().expect("coordinator running");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .unwrap_or(0.0);
    (cpu, hwm / 1024.0)
}

/// Figures 4c and 4d: a workflow's hop and two rollouts (with the engine's time per event).
fn print_workflows(hop: &Spread, floor: &Spread, rollouts: &[RolloutFigures; 2]) {
    println!(
        "{:<58} {:>9.2} ms {:>9.2} ms",
        "workflow hop: upstream applied → dependant's tofu start", hop.p50, hop.p99
    );
    println!(
        "{:<58} {:>12} {:>11.1}x",
        "  … as a multiple of the broker floor (p50)",
        "",
        hop.p50 / floor.p50
    );
    for r in rollouts {
        println!(
            "{:<58} {:>10.1} s {:>11.1}x",
            &format!(
                "rollout of {} targets in 4 waves, 2 agents (÷ waves × slowest)",
                r.targets
            ),
            r.wall.as_secs_f64(),
            r.ratio
        );
        println!(
            "{:<58} {:>10.1} s {:>9.0} MiB",
            "  coordinator CPU over it, and its peak memory", r.cpu_secs, r.peak_rss_mb
        );
    }
    let [small, big] = rollouts;
    println!(
        "{:<58} {:>9.0} µs {:>12}",
        &format!(
            "workflow engine per event (a run's end), {} targets",
            small.targets
        ),
        small.step_us,
        ""
    );
    println!(
        "{:<58} {:>9.0} µs {:>11.2}x",
        &format!(
            "  the same, {} targets (× the {})",
            big.targets, small.targets
        ),
        big.step_us,
        big.step_us / small.step_us.max(1e-3)
    );
}

/// Figures 4c and 4d alone (`tofuflow-bench workflows`): the broker floor, a 20-stack chain's
/// hops, and rollouts of 20 and 200 targets through 2 agents.
async fn workflow_figures() {
    let mut c = Cluster::start_with(Db::Sqlite, &["default"], &[]).await;
    let (floor, _) = broker_floor(&c, 50).await;
    c.agent(AgentOpts::default()).await;
    let hop = dag_hops(&c, 20).await;
    c.agent(AgentOpts::default()).await;
    let rollouts = [big_rollout(&c, 20).await, big_rollout(&c, 200).await];
    print_workflows(&hop, &floor, &rollouts);
}

/// Figure 4d: a rollout of `n` targets (a no-change module) in 4 waves, 2 agents.
async fn big_rollout(c: &Cluster, n: usize) -> RolloutFigures {
    let dir = c.dir.join(format!("bench-rollout-{n}"));
    std::fs::create_dir_all(dir.join("m")).unwrap();
    std::fs::write(dir.join("m/main.tf"), MODULE).unwrap();
    let keys: Vec<String> = (0..n).map(|i| format!("\"t{i:03}\"")).collect();
    let file = format!("workflow {{\n  approval = \"auto\"\n}}\nstack \"fleet\" {{\n  source = \"./m\"\n  workspace = \"bench/fleet{n}-${{each.key}}\"\n  for_each = [{}]\n  rollout {{\n    canary = 1\n    waves = [\"10%\", \"50%\", \"100%\"]\n  }}\n}}\n", keys.join(", "));
    std::fs::write(dir.join("fleet.hcl"), file).unwrap();
    let (cpu0, _) = coordinator_usage(c);
    let steps = |what: &str| metric(c, &format!("tofuflow_workflow_step_seconds_{what}"));
    let (sum0, n0) = (steps("sum").unwrap_or(0.0), steps("count").unwrap_or(0.0));
    let t0 = Instant::now();
    let out = c.cli(&[
        "-o",
        "json",
        "workflow",
        "run",
        dir.join("fleet.hcl").to_str().unwrap(),
        "--wait",
    ]);
    let wall = t0.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (cpu1, peak) = coordinator_usage(c);
    let (sum1, n1) = (steps("sum").unwrap_or(0.0), steps("count").unwrap_or(0.0));
    let w: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut slowest = 0i64;
    for t in w["targets"].as_array().unwrap() {
        let r = c.run(t["run_id"].as_str().unwrap()).await;
        slowest = slowest.max(r.updated_unix_ms - r.created_unix_ms);
    }
    RolloutFigures {
        targets: n,
        wall,
        ratio: wall.as_millis() as f64 / (4.0 * slowest as f64),
        cpu_secs: cpu1 - cpu0,
        peak_rss_mb: peak,
        step_us: (sum1 - sum0) / (n1 - n0).max(1.0) * 1e6,
    }
}

/// Figure 5: N runs submitted at once: how long submitting took, and until all ended.
async fn throughput(
    c: &Cluster,
    client: &mut Client,
    bundle: &str,
    runs: usize,
) -> (Duration, Duration) {
    let t0 = Instant::now();
    let mut ids = Vec::new();
    for i in 0..runs {
        ids.push(
            client
                .submit_run(submit_request(bundle, format!("bench/tp-{i}")))
                .await
                .unwrap()
                .into_inner()
                .id,
        );
    }
    let submitted = t0.elapsed();
    for id in &ids {
        c.wait_state(id, &["planned_no_changes"], Duration::from_secs(600))
            .await;
    }
    (submitted, t0.elapsed())
}

/// `tofuflow-bench throughput` (figure 5b): `runs` no-change plan-only runs through 2 agents,
/// against the direct-spawn ceiling measured in the same run: the same `init`, `plan` and
/// `show -json` spawned directly in a fresh directory each, two at a time (the two agents'
/// capacity).
async fn throughput_figures(runs: usize) {
    let mut c = Cluster::start_with(Db::Sqlite, &["default"], &[]).await;
    let module_dir = c.dir.join("bench-module");
    std::fs::create_dir_all(&module_dir).unwrap();
    std::fs::write(module_dir.join("main.tf"), MODULE).unwrap();
    let double = bin_dir().join("tofu-double");
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for worker in 0..2 {
            let (c, double, module_dir) = (&c, &double, &module_dir);
            s.spawn(move || {
                for i in (worker..runs).step_by(2) {
                    direct_plan(c, double, module_dir, i);
                }
            });
        }
    });
    let ceiling = runs as f64 / t0.elapsed().as_secs_f64();
    c.agent(AgentOpts::default()).await;
    c.agent(AgentOpts::default()).await;
    let mut client = c.client().await;
    let bundle = warm_up(&c, &module_dir, "default");
    let (submitted, total) = throughput(&c, &mut client, &bundle, runs).await;
    let through = runs as f64 / total.as_secs_f64();
    let row = |name: &str, v: f64, extra: String| println!("{name:<58} {v:>8.1} /s {extra:>12}");
    row(
        &format!("direct: {runs} × init + plan + show, 2 at a time (the ceiling)"),
        ceiling,
        "1.00x".into(),
    );
    row(
        &format!("through tofuflow: {runs} no-change plan runs, 2 agents"),
        through,
        format!("{:.2}x", through / ceiling),
    );
    row(
        "  … submitted by one gRPC client at",
        runs as f64 / submitted.as_secs_f64(),
        format!("{:.1}s total", total.as_secs_f64()),
    );
}

/// One no-change plan as an agent runs it (`init`, `plan -out`, `show -json`), spawned
/// directly in a fresh directory under the cluster's.
fn direct_plan(c: &Cluster, double: &Path, module_dir: &Path, i: usize) {
    let wd = c.dir.join(format!("ceiling-{i}"));
    std::fs::create_dir_all(&wd).unwrap();
    std::fs::copy(module_dir.join("main.tf"), wd.join("main.tf")).unwrap();
    let plan = ["plan", "-input=false", "-no-color", "-json", "-out=tfplan"];
    for args in [
        &["init", "-input=false", "-no-color"][..],
        &plan,
        &["show", "-json", "tfplan"],
    ] {
        let o = std::process::Command::new(double)
            .args(args)
            .current_dir(&wd)
            .env("TF_IN_AUTOMATION", "1")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    std::fs::remove_dir_all(&wd).ok();
}

/// Prints every figure side by side.
fn print_table(f: &Figures) {
    let runs = f.runs;
    let tput = runs as f64 / f.total.as_secs_f64();
    println!();
    println!("{:<58} {:>12} {:>12}", "measure", "p50", "p99 / ratio");
    println!(
        "{:<58} {:>9.2} ms {:>9.2} ms",
        "raw RabbitMQ publish→consume (quorum, persistent)", f.floor.p50, f.floor.p99
    );
    println!(
        "{:<58} {:>9.2} ms {:>12}",
        "raw RabbitMQ publish→confirm", f.confirm_p50, ""
    );
    println!(
        "{:<58} {:>9.2} ms {:>9.2} ms",
        "stand-in tofu start-up (version -json)", f.startup.p50, f.startup.p99
    );
    for (name, p50, p99) in &f.sandbox {
        println!(
            "{:<58} {:>9.2} ms {:>9.2} ms  (+{:.2} ms, {:.2}x a plain spawn)",
            name,
            p50,
            p99,
            p50 - f.startup.p50,
            p50 / f.startup.p50
        );
    }
    println!(
        "{:<58} {:>9.2} ms {:>12}",
        "direct: tofu init + tofu plan in a fresh dir", f.direct_p50, "1.00x"
    );
    println!(
        "{:<58} {:>9.2} ms {:>11.2}x",
        "agent: lease → … → complete (same commands)",
        f.task_p50,
        f.task_p50 / f.direct_p50
    );
    println!(
        "{:<58} {:>9.2} ms {:>12}",
        "agent overhead per task (agent − direct)",
        f.task_p50 - f.direct_p50,
        ""
    );
    println!(
        "{:<58} {:>9.2} ms {:>9.2} ms",
        "verify a signed task message (Ed25519)", f.verify.p50, f.verify.p99
    );
    println!(
        "{:<58} {:>9.2} ms {:>9.2} ms",
        "Claim RPC (identity, rules, lease, ID token), one at a time", f.claim.p50, f.claim.p99
    );
    println!(
        "{:<58} {:>9.2} ms {:>9.2} ms",
        "  ID-token minting alone (claims + RS256, cached key)", f.mint.p50, f.mint.p99
    );
    println!(
        "{:<58} {:>12} {:>10.1} %",
        "  … minting's share of a claim (p50)",
        "",
        100.0 * f.mint.p50 / f.claim.p50
    );
    println!(
        "{:<58} {:>9.2} ms {:>12}",
        "RSA 2048 key generation (once per rotation, reaper)", f.keygen_ms, ""
    );
    println!(
        "{:<58} {:>9.2} ms {:>9.2} ms",
        "submit → tofu start, idle", f.latency.p50, f.latency.p99
    );
    println!(
        "{:<58} {:>12} {:>11.1}x",
        "  … as a multiple of the broker floor (p50)",
        "",
        f.latency.p50 / f.floor.p50
    );
    println!(
        "{:<58} {:>9.2} ms {:>9.2} ms",
        "  … the sandbox built on the task's path (--sandbox-ahead false)",
        f.latency_on_path.p50,
        f.latency_on_path.p99
    );
    println!(
        "{:<58} {:>9.2} ms {:>12}",
        "  … where it goes (means; the mean of the whole)", f.latency.mean, ""
    );
    for (step, ms) in &f.breakdown {
        println!("{:<58} {:>9.2} ms {:>12}", format!("    {step}"), ms, "");
    }
    print_workflows(&f.hop, &f.floor, &f.rollouts);
    println!(
        "{:<58} {:>8.1} /s {:>12}",
        &format!("throughput: {runs} no-change plan runs, 2 agents"),
        tput,
        format!("{:.1}s total", f.total.as_secs_f64())
    );
    println!(
        "{:<58} {:>8.1} /s {:>12}",
        "  submission rate (gRPC, one client)",
        runs as f64 / f.submitted.as_secs_f64(),
        ""
    );
}
