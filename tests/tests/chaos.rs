//! The fault suite: many runs driven while faults are injected — agents SIGKILLed at any point of
//! plan or apply, the coordinator SIGKILLed and restarted, RabbitMQ restarted — then the promises
//! are checked from the store, the queues and the state versions:
//! every run ends in an explained state, no apply runs twice, no fenced write is accepted, no
//! message is stranded, the dead-letter queue holds no poison, tampered or expired message (a
//! duplicate publish of a message that ran may be there, refused as a replay).
//!
//! CI drives 24 runs; `TOFUFLOW_SOAK=200` drives more. This restarts the local broker, so it
//! lives in its own test binary (cargo runs test binaries one at a time).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
use tofuflow_e2e::{broker_ctl, example, AgentOpts, BrokerBack, Cluster, Db};
use tofuflow_proto::v1;

/// The two variants restart the broker: they take turns.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread")]
async fn runs_under_random_faults_end_explained_and_never_apply_twice_on_sqlite() {
    let _turn = ONE_AT_A_TIME.lock().await;
    chaos(Db::Sqlite, 24).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_under_random_faults_end_explained_and_never_apply_twice_on_postgres() {
    let _turn = ONE_AT_A_TIME.lock().await;
    chaos(Db::Postgres, 12).await;
}

async fn chaos(db: Db, default_runs: usize) {
    let runs: usize = std::env::var("TOFUFLOW_SOAK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_runs);
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % n as u64) as usize
    };
    let mut c = Cluster::start(db).await;
    // Plans and applies take a moment, so faults land in the middle of them.
    let slow = || AgentOpts {
        env: BTreeMap::from([(
            "TOFU_DOUBLE_SLEEP_BEFORE".to_string(),
            "plan:0.4,apply:0.4".to_string(),
        )]),
        // Runs on one workspace queue for its lock rather than fail at once.
        lock_timeout: Some("60s"),
        ..Default::default()
    };
    for _ in 0..3 {
        c.agent(slow()).await;
    }
    let _broker = BrokerBack;
    let gpu = example("gpu-pool");
    let mut ids = Vec::new();
    let mut faults: HashMap<&'static str, usize> = HashMap::new();
    let started = Instant::now();
    let mut submitted = 0;
    let mut finished_at_last_fault = 0;
    let terminal = [
        "applied",
        "planned_no_changes",
        "failed",
        "cancelled",
        "rejected",
        "interrupted",
        "expired",
    ];
    loop {
        // Keep up to 6 runs in flight, across 8 workspaces.
        let mut done = 0;
        let mut client = c.client().await;
        for id in &ids {
            if let Ok(r) = client
                .get_run(v1::GetRunRequest {
                    run_id: String::clone(id),
                    ..Default::default()
                })
                .await
            {
                if terminal.contains(&r.into_inner().state.as_str()) {
                    done += 1;
                }
            }
        }
        if done == runs {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "runs stuck: {done}/{runs} ended\n{}",
            c.logs_tail()
        );
        while submitted < runs && submitted - done < 6 {
            let ws = format!("chaos/ws{}", next(8));
            let n = (1 + next(3)).to_string();
            ids.push(c.submit(
                &gpu,
                &ws,
                &["--auto-approve", "--var", &format!("gpu_count={n}")],
            ));
            submitted += 1;
        }
        // One fault per 4 runs that end (paced by progress, not by the clock).
        while finished_at_last_fault + 4 <= done {
            finished_at_last_fault += 4;
            match next(6) {
                0..=2 => {
                    let alive: Vec<usize> = (0..c.agents.len())
                        .filter(|&i| c.agents[i].alive())
                        .collect();
                    let victim = alive[next(alive.len())];
                    c.agents[victim].kill();
                    *faults.entry("agent SIGKILL").or_default() += 1;
                    c.agent(slow()).await;
                }
                3 => {
                    c.restart_coordinator().await;
                    *faults.entry("coordinator SIGKILL + restart").or_default() += 1;
                }
                4 => {
                    broker_ctl("stop_app");
                    broker_ctl("start_app");
                    *faults.entry("RabbitMQ restart").or_default() += 1;
                }
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await; // poll interval of the driver loop
    }

    // The promises, checked from what was stored.
    let mut client = c.client().await;
    let mut outcome: BTreeMap<String, usize> = BTreeMap::new();
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for id in &ids {
        let r = client
            .get_run(v1::GetRunRequest {
                run_id: id.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        *outcome.entry(r.state.clone()).or_default() += 1;
        if ["failed", "interrupted", "expired"].contains(&r.state.as_str()) {
            assert!(
                !r.error.is_empty(),
                "run {id} ended {} without a reason",
                r.state
            );
            let logs = String::from_utf8_lossy(&c.cli(&["run", "logs", id]).stdout).to_string();
            let why = [
                "Saved plan is stale",
                "Error acquiring the state lock",
                "stopped renewing its lease",
                "agent shut down",
                "fenced",
            ]
            .into_iter()
            .find(|k| logs.contains(k) || r.error.contains(k))
            .map(str::to_string)
            .unwrap_or_else(|| {
                // Not a known cause: name it by the run's error and the last diagnostic.
                let diag = logs
                    .lines()
                    .rfind(|l| l.starts_with("Error:") || l.contains("    Error message"))
                    .unwrap_or("")
                    .trim()
                    .to_string();
                format!("{} / {diag}", r.error)
            });
            *reasons.entry(format!("{}: {why}", r.state)).or_default() += 1;
        }
        assert!(
            c.tofu_starts(id, "apply") <= 1,
            "run {id}: apply executed {} times",
            c.tofu_starts(id, "apply")
        );
    }
    c.assert_nothing_lost_or_doubled().await;
    let injected: usize = faults.values().sum();
    eprintln!("chaos ({db:?}): {runs} runs driven, {injected} faults injected {faults:?}, outcomes {outcome:?}, reasons {reasons:?}, lost 0, duplicate applies 0, in {:.0}s", started.elapsed().as_secs_f64());
    assert!(
        injected >= runs / 10,
        "enough faults were injected ({injected})"
    );
}
