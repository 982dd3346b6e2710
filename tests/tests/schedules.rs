//! Schedules end to end: a cron schedule of drift checks (every two seconds, the six-field
//! form) fires each tick exactly once across a coordinator SIGKILL and restart: every settled
//! tick is recorded once, every check it started carries its tick, no tick started two checks
//! of a workspace, and the ticks missed while the coordinator was down are counted by the
//! `once` policy, not fired one by one. A bad cron expression, time zone or policy is refused
//! with the fix named. Real coordinator, agent, RabbitMQ, PostgreSQL and SQLite.

use std::collections::BTreeMap;
use std::time::Duration;
use tofuflow_e2e::{wait_for, AgentOpts, Cluster, Db};
use tofuflow_proto::v1;

const T: Duration = Duration::from_secs(120);

fn module(c: &Cluster) -> std::path::PathBuf {
    let dir = c.dir.join("sched-module");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("main.tf"),
        "resource \"terraform_data\" \"vm\" { input = \"vm\" }\n",
    )
    .unwrap();
    dir
}

async fn ticks(c: &Cluster, name: &str) -> Vec<v1::ScheduleTick> {
    c.client()
        .await
        .list_schedule_ticks(v1::ScheduleRequest { name: name.into() })
        .await
        .expect("ticks")
        .into_inner()
        .ticks
}

/// Waits until the schedule has fired `n` ticks settled after `after_ms`.
async fn fired_after(c: &Cluster, name: &str, after_ms: i64, n: usize) {
    wait_for(&format!("{n} ticks of {name}"), T, || async {
        let fired = ticks(c, name)
            .await
            .into_iter()
            .filter(|t| t.outcome == "fired" && t.settled_unix_ms > after_ms)
            .count();
        (fired >= n).then_some(())
    })
    .await
}

fn refused(c: &Cluster, args: &[&str], want: &[&str]) {
    let out = c.cli(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} was accepted");
    for w in want {
        assert!(err.contains(w), "{args:?}: {err}");
    }
}

async fn fires_once_per_tick_across_a_restart(db: Db) {
    let mut c = Cluster::start_with(db, &["default"], &["--reap-interval", "200ms"]).await;
    c.agent(AgentOpts::default()).await;
    for ws in ["sched/a", "sched/b"] {
        let id = c.submit(&module(&c), ws, &["--auto-approve"]);
        c.wait_state(&id, &["applied"], T).await;
    }
    let add = |cron: &str, tz: &str, missed: &str| {
        c.cli(&[
            "schedule",
            "add",
            "nightly",
            "--cron",
            cron,
            "--timezone",
            tz,
            "-w",
            "sched/*",
            "--missed",
            missed,
        ])
    };
    refused(
        &c,
        &[
            "schedule",
            "add",
            "x",
            "--cron",
            "61 * * * *",
            "-w",
            "sched/*",
        ],
        &["not valid", "5 fields"],
    );
    refused(
        &c,
        &[
            "schedule",
            "add",
            "x",
            "--cron",
            "0 3 * * *",
            "--timezone",
            "Mars/Olympus",
            "-w",
            "sched/*",
        ],
        &["Mars/Olympus", "IANA"],
    );
    refused(
        &c,
        &[
            "schedule",
            "add",
            "x",
            "--cron",
            "0 3 * * *",
            "-w",
            "sched/*",
            "--missed",
            "sometimes",
        ],
        &["once or skip"],
    );
    let out = add("*/2 * * * * *", "Europe/Berlin", "once");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    fired_after(&c, "nightly", 0, 2).await;
    c.kill_coordinator();
    let down_at = now_ms();
    c.restart_coordinator().await;
    fired_after(&c, "nightly", down_at, 2).await;
    let out = c.cli(&["schedule", "remove", "nightly"]);
    assert!(out.status.success());

    let all = ticks(&c, "nightly").await;
    check_each_tick_once(&c, &all).await;
    c.kill_coordinator();
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Every tick settled once, 2 s apart, gaps counted as missed; every check belongs to exactly
/// one fired tick, and no tick checked a workspace twice.
async fn check_each_tick_once(c: &Cluster, all: &[v1::ScheduleTick]) {
    let mut by_tick: BTreeMap<i64, &v1::ScheduleTick> = BTreeMap::new();
    for t in all {
        assert!(
            by_tick.insert(t.tick_unix_ms, t).is_none(),
            "tick {} twice",
            t.tick_unix_ms
        );
        assert_eq!(t.tick_unix_ms % 2_000, 0, "on the cron's seconds: {t:?}");
    }
    let ticks: Vec<&v1::ScheduleTick> = by_tick.values().copied().collect();
    for pair in ticks.windows(2) {
        let gap = (pair[1].tick_unix_ms - pair[0].tick_unix_ms) / 2_000 - 1;
        let said = pair[1]
            .detail
            .split(" earlier tick(s) missed")
            .next()
            .filter(|_| pair[1].detail.contains("missed"))
            .and_then(|n| n.parse::<i64>().ok())
            .unwrap_or(0);
        assert_eq!(gap, said, "missed ticks are counted: {:?}", pair[1]);
    }
    let runs = c
        .client()
        .await
        .list_runs(v1::ListRunsRequest {
            tags: [("schedule".to_string(), "nightly".to_string())].into(),
            limit: 1000,
            ..Default::default()
        })
        .await
        .expect("runs")
        .into_inner()
        .runs;
    let listed: usize = ticks.iter().map(|t| t.runs.len()).sum();
    assert_eq!(runs.len(), listed, "every check belongs to one tick");
    let mut seen = std::collections::BTreeSet::new();
    for r in &runs {
        assert_eq!(r.kind, v1::RunKind::DriftCheck as i32);
        let tick: i64 = r.tags["schedule_tick"].parse().unwrap();
        assert!(by_tick[&tick].runs.contains(&r.id), "{r:?}");
        assert!(
            seen.insert((tick, r.workspace.clone())),
            "tick {tick} checked {} twice",
            r.workspace
        );
    }
    eprintln!("{} ticks settled, {} checks", ticks.len(), runs.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_schedule_fires_each_tick_once_across_a_coordinator_kill_postgres() {
    fires_once_per_tick_across_a_restart(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_schedule_fires_each_tick_once_across_a_coordinator_kill_sqlite() {
    fires_once_per_tick_across_a_restart(Db::Sqlite).await;
}

/// A one-stack workflow (auto-approved) whose apply runs for a while.
fn workflow_file(c: &Cluster) -> std::path::PathBuf {
    let dir = c.dir.join("sched-wf");
    std::fs::create_dir_all(dir.join("vm")).unwrap();
    std::fs::write(
        dir.join("vm/main.tf"),
        "variable \"n\" { type = string }\nresource \"terraform_data\" \"vm\" { input = var.n }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("workflow.hcl"),
        "workflow {\n  approval = \"auto\"\n}\n\nstack \"vm\" {\n  source    = \"./vm\"\n  workspace = \"sched-wf/vm\"\n  inputs    = { n = \"1\" }\n}\n",
    )
    .unwrap();
    dir.join("workflow.hcl")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workflow_schedule_starts_one_workflow_run_per_tick_never_two_at_once() {
    let mut c = Cluster::start_with(Db::Sqlite, &["default"], &["--reap-interval", "200ms"]).await;
    c.agent(AgentOpts::default()).await;
    let file = workflow_file(&c);
    let out = c.cli(&[
        "schedule",
        "add",
        "wf",
        "--cron",
        "* * * * * *",
        "--workflow",
        file.to_str().unwrap(),
        "--tag",
        "team=ml",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8_lossy(&c.cli(&["schedule", "list"]).stdout).to_string();
    assert!(listed.contains("workflow workflow.hcl"), "{listed}");
    refused(
        &c,
        &[
            "schedule",
            "add",
            "both",
            "--cron",
            "* * * * *",
            "-w",
            "x/*",
            "--workflow",
            file.to_str().unwrap(),
        ],
        &["cannot be used with"],
    );
    fired_after(&c, "wf", 0, 2).await;
    assert!(c.cli(&["schedule", "remove", "wf"]).status.success());

    let all = ticks(&c, "wf").await;
    let mut started = Vec::new();
    for t in all.iter().filter(|t| t.outcome == "fired") {
        assert!(t.runs.len() <= 1, "{t:?}");
        if t.runs.is_empty() {
            assert!(
                t.detail.contains("is still"),
                "skipped while one runs: {t:?}"
            );
        }
        started.extend(t.runs.iter().map(|id| (t.tick_unix_ms, id.clone())));
    }
    assert!(!started.is_empty(), "{all:?}");
    let mut ends: Vec<(i64, i64)> = Vec::new();
    for (tick, id) in &started {
        let w = c.workflow_run(id).await;
        assert_eq!(w.tags.get("schedule").map(String::as_str), Some("wf"));
        assert_eq!(w.tags.get("schedule_tick"), Some(&tick.to_string()));
        assert_eq!(w.tags.get("team").map(String::as_str), Some("ml"));
        ends.push((w.created_unix_ms, w.updated_unix_ms));
    }
    // Never two at once: each started after the previous one ended.
    ends.sort();
    for pair in ends.windows(2) {
        assert!(pair[1].0 >= pair[0].1, "overlap: {ends:?}");
    }
    c.kill_coordinator();
}
