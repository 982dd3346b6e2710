//! A run goes plan → approve → apply → outputs, through the CLI a user would type.

use std::time::Duration;
use tofuflow_e2e::{example, AgentOpts, Cluster, Db};

const T: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn run_goes_plan_approve_apply_and_show_prints_outputs() {
    let mut c = Cluster::start(Db::Sqlite).await;
    c.agent(AgentOpts::default()).await;
    let gpu = example("gpu-pool");

    let out = c.cli(&[
        "run",
        "submit",
        gpu.to_str().unwrap(),
        "-w",
        "ml/gpu-a100",
        "--var",
        "gpu_count=3",
        "--var",
        "region=us-east-1",
        "--wait",
        "--commit",
        "abc123",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(shown.contains("awaiting_approval"), "{shown}");
    assert!(
        shown.contains("4 to add, 0 to change, 0 to destroy"),
        "{shown}"
    );
    let id = shown
        .lines()
        .find_map(|l| l.strip_prefix("Run"))
        .unwrap()
        .trim()
        .to_string();

    let out = c.cli(&["run", "approve", &id, "--wait", "--reason", "ticket-42"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = c.cli(&["run", "show", &id]);
    let shown = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success());
    assert!(shown.contains("State      applied"), "{shown}");
    assert_eq!(
        tofuflow_e2e::metric(&c, "tofuflow_runs_ended_total{state=\"applied\"}"),
        Some(1.0),
        "the ended run is counted once, from its run event"
    );
    // The histograms an operator graphs: each claim, each task and the submit → start of the
    // run's first claim, recorded once each.
    let count = |sample: &str| tofuflow_e2e::metric(&c, sample);
    for (sample, n) in [
        (
            "tofuflow_submit_to_start_seconds_count{origin=\"user\"}",
            1.0,
        ),
        ("tofuflow_queue_wait_seconds_count{phase=\"plan\"}", 1.0),
        ("tofuflow_queue_wait_seconds_count{phase=\"apply\"}", 1.0),
        ("tofuflow_claim_seconds_count", 2.0),
        // The dispatch steps: one submit; the plan's and the apply's task each published once.
        ("tofuflow_dispatch_seconds_count{step=\"submit\"}", 1.0),
        ("tofuflow_dispatch_seconds_count{step=\"outbox\"}", 2.0),
        ("tofuflow_dispatch_seconds_count{step=\"confirm\"}", 2.0),
        (
            "tofuflow_task_seconds_count{phase=\"plan\",outcome=\"succeeded\"}",
            1.0,
        ),
        (
            "tofuflow_task_seconds_count{phase=\"apply\",outcome=\"succeeded\"}",
            1.0,
        ),
    ] {
        assert_eq!(count(sample), Some(n), "{sample}");
    }
    let plan_took = count("tofuflow_task_seconds_sum{phase=\"plan\",outcome=\"succeeded\"}");
    assert!(plan_took.is_some_and(|s| s > 0.0), "{plan_took:?}");
    assert_eq!(
        count("tofuflow_submit_to_start_seconds_bucket{le=\"+Inf\",origin=\"user\"}"),
        Some(1.0),
        "buckets are cumulative up to +Inf"
    );
    assert!(
        shown.contains("pool_name = \"gpu-a100-us-east-1\""),
        "{shown}"
    );
    assert!(shown.contains("gpu_total = 3"), "{shown}");
    assert!(
        shown.contains("tester       approved: ticket-42"),
        "the approver and reason are recorded:\n{shown}"
    );
    assert!(shown.contains("commit abc123"), "{shown}");

    let out = c.cli(&["run", "show", &id, "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["outputs"]["node_ids"]["value"].as_array().unwrap().len(),
        3
    );
    assert_eq!(v["plan_attempts"], 1);

    let out = c.cli(&["run", "logs", &id]);
    let logs = String::from_utf8_lossy(&out.stdout).to_string();
    for want in [
        "── plan (attempt 1) ──",
        "Plan: 4 to add, 0 to change, 0 to destroy.",
        "── apply (attempt 1) ──",
        "node 2 of gpu-a100-us-east-1 ready",
        "Apply complete! Resources: 4 added, 0 changed, 0 destroyed.",
    ] {
        assert!(logs.contains(want), "log lacks {want:?}:\n{logs}");
    }
    assert_eq!(c.tofu_starts(&id, "apply"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn auto_approve_skips_the_wait_and_an_unchanged_plan_ends_planned_no_changes() {
    let mut c = Cluster::start(Db::Sqlite).await;
    c.agent(AgentOpts::default()).await;
    let gpu = example("gpu-pool");
    let id = c.submit(&gpu, "fleet/eu", &["--auto-approve"]);
    let r = c.wait_state(&id, &["applied"], T).await;
    let states: Vec<&str> = r.transitions.iter().map(|t| t.to_state.as_str()).collect();
    assert_eq!(
        states,
        ["queued", "planning", "planned", "approved", "applying", "applied"]
    );

    // Same module, same variables: nothing to do.
    let out = c.cli(&[
        "run",
        "submit",
        gpu.to_str().unwrap(),
        "-w",
        "fleet/eu",
        "--auto-approve",
        "--wait",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("State      planned_no_changes"));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already stored"),
        "the identical bundle is stored once"
    );

    // A destroy run removes everything (and runs the destroy-time provisioners).
    let id = c.submit(&gpu, "fleet/eu", &["--destroy", "--auto-approve"]);
    let r = c.wait_state(&id, &["applied"], T).await;
    assert_eq!(r.summary.unwrap().destroy, 3);
    let out = c.cli(&["run", "logs", &id]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("draining node 1 of gpu-a100-eu-west-1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_only_stops_at_planned_and_reject_is_final() {
    let mut c = Cluster::start(Db::Sqlite).await;
    c.agent(AgentOpts::default()).await;
    let gpu = example("gpu-pool");
    let id = c.submit(&gpu, "w/plan-only", &["--plan-only"]);
    c.wait_state(&id, &["planned"], T).await;
    let out = c.cli(&["run", "approve", &id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not awaiting_approval"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let id = c.submit(&gpu, "w/rejected", &[]);
    c.wait_state(&id, &["awaiting_approval"], T).await;
    let out = c.cli(&["run", "reject", &id, "--reason", "wrong region"]);
    assert!(out.status.success());
    let r = c.run(&id).await;
    assert_eq!(r.state, "rejected");
    assert_eq!(
        c.tofu_starts(&id, "apply"),
        0,
        "a rejected plan is never applied"
    );
    let out = c.cli(&["run", "show", &id]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "run show exits 2 for a run that did not succeed"
    );
}
