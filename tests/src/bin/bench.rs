//! `tofuflow-bench`: measures, side by side in one run on this machine,
//!
//! 1. the floor: raw RabbitMQ publish→consume latency (lapin, quorum queue, confirms, same broker);
//! 2. the stand-in `tofu`'s start-up time (`tofu-double version -json`);
//! 3. per-task cost: spawning `tofu init` + `tofu plan` directly vs the same task through an agent
//!    (lease → bundle → workdir → init → plan → report → complete);
//! 4. submit → tofu-start latency at idle (p50/p99), against the floor;
//! 5. throughput of N no-change plan runs with 2 agents.
//!
//! Build everything in one profile first (the bench starts the binaries next to itself):
//! `cargo build --release --workspace --bins && target/release/tofuflow-bench [RUNS]`.

use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tofuflow_e2e::{bin_dir, AgentOpts, Cluster, Db};
use tofuflow_proto::v1;
use tokio_stream::StreamExt;

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

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
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

    let mut c = Cluster::start(Db::Sqlite).await;

    // 1. Floor: raw publish → consume on the same broker, one message at a time.
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
    let floor_p50 = pct(&mut floor, 0.5);
    let floor_p99 = pct(&mut floor, 0.99);
    let confirm_p50 = pct(&mut confirm, 0.5);

    // 2. Stand-in start-up.
    let double = bins.join("tofu-double");
    let mut startup = Vec::new();
    for _ in 0..200 {
        let t0 = Instant::now();
        let o = std::process::Command::new(&double)
            .args(["version", "-json"])
            .output()
            .unwrap();
        assert!(o.status.success());
        startup.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    let startup_p50 = pct(&mut startup, 0.5);
    let startup_p99 = pct(&mut startup, 0.99);

    // 2b. The same command through the sandbox helper, as the agent starts every tofu command.
    let sb_root = c.dir.join("bench-sandbox");
    let cfg = <tofuflow_agent::Config as clap::Parser>::parse_from([
        "tofuflow-agent".as_ref(),
        "--tofu-bin".as_ref(),
        double.as_os_str(),
        "--work-root".as_ref(),
        sb_root.as_os_str(),
    ]);
    std::fs::create_dir_all(&sb_root).unwrap();
    let sandbox_rows: Vec<(String, f64, f64)> =
        match tofuflow_agent::sandbox::Sandbox::with_helper(&cfg, bins.join("tofuflow-agent")) {
            Err(e) => {
                println!("sandbox not measured: {e}");
                vec![]
            }
            Ok(sb) => {
                let wd = sb_root.join("work").join("bench");
                std::fs::create_dir_all(&wd).unwrap();
                let mut rows = Vec::new();
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
                for (name, ns, net, cg) in variants {
                    let mut v = sb.clone();
                    v.namespaces = ns;
                    let mut spec = v.spec(&wd, None, net, v.run_user, Default::default(), vec![]);
                    if let Some((u, g)) = v.run_user {
                        nix::unistd::chown(
                            &wd,
                            Some(nix::unistd::Uid::from_raw(u)),
                            Some(nix::unistd::Gid::from_raw(g)),
                        )
                        .unwrap();
                    }
                    spec.cwd = if ns {
                        tofuflow_agent::sandbox::WORKDIR.into()
                    } else {
                        wd.clone()
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
                        spec.cgroup_procs =
                            cgroup.as_ref().map(|c| c.procs_files()).unwrap_or_default();
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
                    rows.push((name.to_string(), pct(&mut t, 0.5), pct(&mut t, 0.99)));
                }
                rows
            }
        };

    // 3a. The same tofu commands spawned directly (local backend, fresh directory each time).
    let module_dir = c.dir.join("bench-module");
    std::fs::create_dir_all(&module_dir).unwrap();
    std::fs::write(module_dir.join("main.tf"), MODULE).unwrap();
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
            let o = std::process::Command::new(&double)
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
    let direct_p50 = pct(&mut direct, 0.5);

    // 3b/4. Through tofuflow, at idle: one run at a time on one agent.
    c.agent(AgentOpts::default()).await;
    let mut client = c.client().await;
    let bundle = {
        let o = std::process::Command::new(bins.join("tofuflow"))
            .args([
                "run",
                "submit",
                module_dir.to_str().unwrap(),
                "-w",
                "bench/warmup",
                "--plan-only",
                "--wait",
                "-o",
                "json",
            ])
            .env("TOFUFLOW_COORDINATOR", c.grpc_url())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["bundle_digest"].as_str().unwrap().to_string()
    };
    let submit = |ws: String| v1::SubmitRunRequest {
        workspace: ws,
        bundle_digest: bundle.clone(),
        pool: "default".into(),
        kind: v1::RunKind::PlanOnly as i32,
        actor: "bench".into(),
        ..Default::default()
    };
    let mut latency = Vec::new();
    let mut task_time = Vec::new();
    let idle_runs = runs.min(50);
    for i in 0..idle_runs {
        let t0 = now_ms_f();
        let r = client
            .submit_run(submit(format!("bench/idle-{i}")))
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
    let lat_p50 = pct(&mut latency, 0.5);
    let lat_p99 = pct(&mut latency, 0.99);
    let task_p50 = pct(&mut task_time, 0.5);

    // 5. Throughput: N runs submitted at once, 2 agents.
    c.agent(AgentOpts::default()).await;
    let t0 = Instant::now();
    let mut ids = Vec::new();
    for i in 0..runs {
        ids.push(
            client
                .submit_run(submit(format!("bench/tp-{i}")))
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
    let total = t0.elapsed();
    let tput = runs as f64 / total.as_secs_f64();

    println!();
    println!("{:<58} {:>12} {:>12}", "measure", "p50", "p99 / ratio");
    println!(
        "{:<58} {:>9.2} ms {:>9.2} ms",
        "raw RabbitMQ publish→consume (quorum, persistent)", floor_p50, floor_p99
    );
    println!(
        "{:<58} {:>9.2} ms {:>12}",
        "raw RabbitMQ publish→confirm", confirm_p50, ""
    );
    println!(
        "{:<58} {:>9.2} ms {:>9.2} ms",
        "stand-in tofu start-up (version -json)", startup_p50, startup_p99
    );
    for (name, p50, p99) in &sandbox_rows {
        println!(
            "{:<58} {:>9.2} ms {:>9.2} ms  (+{:.2} ms, {:.2}x a plain spawn)",
            name,
            p50,
            p99,
            p50 - startup_p50,
            p50 / startup_p50
        );
    }
    println!(
        "{:<58} {:>9.2} ms {:>12}",
        "direct: tofu init + tofu plan in a fresh dir", direct_p50, "1.00x"
    );
    println!(
        "{:<58} {:>9.2} ms {:>11.2}x",
        "agent: lease → … → complete (same commands)",
        task_p50,
        task_p50 / direct_p50
    );
    println!(
        "{:<58} {:>9.2} ms {:>12}",
        "agent overhead per task (agent − direct)",
        task_p50 - direct_p50,
        ""
    );
    println!(
        "{:<58} {:>9.2} ms {:>9.2} ms",
        "submit → tofu start, idle", lat_p50, lat_p99
    );
    println!(
        "{:<58} {:>12} {:>11.1}x",
        "  … as a multiple of the broker floor (p50)",
        "",
        lat_p50 / floor_p50
    );
    println!(
        "{:<58} {:>8.1} /s {:>12}",
        &format!("throughput: {runs} no-change plan runs, 2 agents"),
        tput,
        format!("{:.1}s total", total.as_secs_f64())
    );
    println!(
        "{:<58} {:>8.1} /s {:>12}",
        "  submission rate (gRPC, one client)",
        runs as f64 / submitted.as_secs_f64(),
        ""
    );
}
