//! Environments with a TTL end to end: a run submitted with `--ttl` is destroyed after its
//! deadline by an auto-approved destroy run (same bundle and variables, tagged `ttl=expired`)
//! and nothing is left in its state; `env extend` moves the deadline; a destroy that keeps
//! failing is retried with backoff and ends `teardown_failed` (CLI, metric, log); a workflow
//! run with a TTL (also one cancelled half-way) is torn down, dependants first, and only what
//! it applied. Real coordinator, agent, RabbitMQ, both databases.

use std::path::PathBuf;
use std::time::{Duration, Instant};
use tofuflow_e2e::{metric, wait_for, AgentOpts, Cluster, Db};
use tofuflow_proto::v1;

const T: Duration = Duration::from_secs(120);

/// A module with two resources, one reading a variable (the destroy must get it too).
fn module(c: &Cluster) -> PathBuf {
    let dir = c.dir.join("env-module");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("main.tf"),
        r#"
variable "name" { type = string }
resource "terraform_data" "a" { input = "vm-${var.name}" }
resource "terraform_data" "b" { input = terraform_data.a.output }
"#,
    )
    .unwrap();
    dir
}

/// The workspace's environment, if it has one.
async fn env(c: &Cluster, ws: &str) -> Option<v1::Environment> {
    let r = c
        .client()
        .await
        .list_environments(v1::ListEnvironmentsRequest::default())
        .await
        .expect("list environments")
        .into_inner();
    r.environments.into_iter().find(|e| e.workspace == ws)
}

/// Waits until the workspace's environment is in `state`.
async fn wait_env(c: &Cluster, ws: &str, state: &str) -> v1::Environment {
    wait_for(&format!("environment {ws} to be {state}"), T, || async {
        env(c, ws).await.filter(|e| e.state == state)
    })
    .await
}

/// The resources in the workspace's current state.
fn resources(c: &Cluster, ws: &str) -> serde_json::Value {
    let out = c.cli(&["state", "pull", ws]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let state: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    state["resources"].clone()
}

/// Runs of the workspace tagged `ttl=expired`, newest first.
async fn ttl_runs(c: &Cluster, ws: &str) -> Vec<v1::Run> {
    c.client()
        .await
        .list_runs(v1::ListRunsRequest {
            workspace: ws.into(),
            tags: [("ttl".to_string(), "expired".to_string())].into(),
            ..Default::default()
        })
        .await
        .expect("list runs")
        .into_inner()
        .runs
}

/// Applies the module on `ws` with `--ttl ttl`; returns the run.
async fn apply_with_ttl(c: &Cluster, ws: &str, ttl: &str) -> v1::Run {
    let dir = module(c);
    let id = c.submit(
        &dir,
        ws,
        &["--auto-approve", "--var", "name=x", "--ttl", ttl],
    );
    c.wait_state(&id, &["applied"], T).await
}

async fn expired_environment_is_destroyed(db: Db, reap_interval: &str) {
    let mut c = Cluster::start_with(db, &["default"], &["--reap-interval", reap_interval]).await;
    c.agent(AgentOpts::default()).await;
    let applied = apply_with_ttl(&c, "ephemeral/pr-1", "3s").await;
    assert_eq!(resources(&c, "ephemeral/pr-1").as_array().unwrap().len(), 2);
    let e = env(&c, "ephemeral/pr-1").await.expect("an environment");
    assert_eq!(e.state, "active");
    assert_eq!(e.source_run, applied.id);
    assert_eq!(e.set_by, "tester");
    assert!(
        e.expires_unix_ms >= applied.updated_unix_ms + 3_000 - 50,
        "{e:?}"
    );

    let e = wait_env(&c, "ephemeral/pr-1", "destroyed").await;
    let destroy = c.run(&e.destroy_run).await;
    assert_eq!(destroy.kind, v1::RunKind::Destroy as i32);
    assert_eq!(destroy.state, "applied");
    assert!(destroy.auto_approve);
    assert_eq!(destroy.tags.get("ttl").map(String::as_str), Some("expired"));
    assert_eq!(destroy.bundle_digest, applied.bundle_digest);
    assert!(
        destroy.created_unix_ms >= e.expires_unix_ms,
        "not before the deadline"
    );
    assert_eq!(
        resources(&c, "ephemeral/pr-1"),
        serde_json::json!([]),
        "nothing left"
    );
    assert_eq!(
        metric(&c, "tofuflow_environments{state=\"destroyed\"}"),
        Some(1.0)
    );
    let late = destroy.created_unix_ms - e.expires_unix_ms;
    eprintln!("TTL expiry to destroy run start: {late} ms (reap interval {reap_interval})");
    let out = c.cli(&["env", "list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ephemeral/pr-1") && text.contains("destroyed"),
        "{text}"
    );
    c.kill_coordinator();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_run_is_destroyed_by_a_tagged_auto_approved_run_sqlite() {
    expired_environment_is_destroyed(Db::Sqlite, "200ms").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_run_is_destroyed_by_a_tagged_auto_approved_run_postgres() {
    expired_environment_is_destroyed(Db::Postgres, "200ms").await;
}

/// With the default reap interval (1s): the figure for the note.
#[tokio::test(flavor = "multi_thread")]
async fn an_expired_run_is_destroyed_within_the_default_reap_interval() {
    expired_environment_is_destroyed(Db::Sqlite, "1s").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn extend_moves_the_deadline_and_nothing_is_destroyed_before_it() {
    let mut c = Cluster::start(Db::Sqlite).await;
    c.agent(AgentOpts::default()).await;
    apply_with_ttl(&c, "ephemeral/pr-2", "3s").await;
    let before = env(&c, "ephemeral/pr-2").await.unwrap();
    let out = c.cli(&["env", "extend", "ephemeral/pr-2", "--by", "4s"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The JSON API sees it and moves it too.
    let token = c.token.clone();
    let listed = c.api("GET", "/api/v1/environments", token.as_deref(), None, &[]);
    assert_eq!(listed.status, 200);
    assert_eq!(listed.json()[0]["workspace"], "ephemeral/pr-2");
    let body = br#"{"by_ms": 1000}"#.as_slice();
    let path = "/api/v1/environments/ephemeral%2Fpr-2/extend";
    let moved = c.api(
        "POST",
        path,
        token.as_deref(),
        Some(("application/json", body)),
        &[],
    );
    assert_eq!(
        moved.status,
        200,
        "{}",
        String::from_utf8_lossy(&moved.body)
    );
    let after = env(&c, "ephemeral/pr-2").await.unwrap();
    assert_eq!(after.expires_unix_ms, before.expires_unix_ms + 5_000);
    assert_eq!(after.state, "active");

    let e = wait_env(&c, "ephemeral/pr-2", "destroyed").await;
    let destroy = c.run(&e.destroy_run).await;
    assert!(
        destroy.created_unix_ms >= after.expires_unix_ms,
        "destroyed at {} before the new deadline {}",
        destroy.created_unix_ms,
        after.expires_unix_ms
    );
    assert_eq!(
        ttl_runs(&c, "ephemeral/pr-2").await.len(),
        1,
        "one destroy run"
    );
    // A destroyed environment cannot be extended; a missing one is not found.
    let out = c.cli(&["env", "extend", "ephemeral/pr-2", "--ttl", "1h"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("only an active one can be extended"));
    let out = c.cli(&["env", "extend", "ephemeral/none", "--by", "1h"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no TTL"));
    c.kill_coordinator();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_destroy_that_keeps_failing_is_retried_then_teardown_failed() {
    let args = [
        "--ttl-retry-backoff",
        "300ms",
        "--ttl-retry-max-backoff",
        "1s",
        "--ttl-max-attempts",
        "3",
    ];
    let mut c = Cluster::start_with(Db::Sqlite, &["default"], &args).await;
    let healthy = c.agent(AgentOpts::default()).await;
    apply_with_ttl(&c, "ephemeral/pr-3", "2s").await;
    // From now on every destroy fails at the first resource it deletes.
    c.agents[healthy].kill();
    c.agent(AgentOpts {
        env: [(
            "TOFU_DOUBLE_FAIL_AT".to_string(),
            "terraform_data.b".to_string(),
        )]
        .into(),
        ..Default::default()
    })
    .await;
    let started = Instant::now();
    let e = wait_env(&c, "ephemeral/pr-3", "teardown_failed").await;
    assert_eq!(e.attempts, 3, "{e:?}");
    assert!(e.last_error.contains("ended failed"), "{}", e.last_error);
    let runs = ttl_runs(&c, "ephemeral/pr-3").await;
    assert_eq!(runs.len(), 3, "one destroy run per attempt");
    assert!(runs.iter().all(|r| r.state == "failed" && r.auto_approve));
    // Backoff: 300ms then 600ms between the attempts' runs.
    let mut created: Vec<i64> = runs.iter().map(|r| r.created_unix_ms).collect();
    created.sort();
    assert!(created[1] - created[0] >= 300, "{created:?}");
    assert!(created[2] - created[1] >= 600, "{created:?}");
    eprintln!("teardown_failed after {:?}", started.elapsed());
    // Loud: the CLI, the metric and the log.
    let out = c.cli(&["env", "list", "--state", "teardown_failed"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("TEARDOWN_FAILED") && text.contains("ephemeral/pr-3"),
        "{text}"
    );
    assert_eq!(
        metric(&c, "tofuflow_environments{state=\"teardown_failed\"}"),
        Some(1.0)
    );
    let log = std::fs::read_to_string(c.dir.join("coordinator.log")).unwrap();
    assert!(log.contains("TEARDOWN FAILED"), "no warn line");
    // The resources are still there: nothing pretends otherwise.
    assert_eq!(resources(&c, "ephemeral/pr-3").as_array().unwrap().len(), 2);
    c.kill_coordinator();
}

/// A network stack and an app stack reading the network's output.
fn pipeline(c: &Cluster, name: &str) -> PathBuf {
    let dir = c.dir.join(name);
    let write = |rel: &str, text: &str| {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write(
        "net/main.tf",
        r#"
resource "terraform_data" "net" { input = "subnet-1" }
output "subnet_id" { value = terraform_data.net.output }
"#,
    );
    write(
        "app/main.tf",
        r#"
variable "subnet" { type = string }
resource "terraform_data" "app" { input = "app-in-${var.subnet}" }
"#,
    );
    write(
        "workflow.hcl",
        &format!(
            r#"
stack "net" {{
  source    = "./net"
  workspace = "{name}/net"
}}

stack "app" {{
  source    = "./app"
  workspace = "{name}/app"
  inputs    = {{ subnet = stack.net.outputs.subnet_id }}
}}
"#
        ),
    );
    dir.join("workflow.hcl")
}

/// Starts a workflow run from the CLI; its id.
fn start(c: &Cluster, file: &std::path::Path, extra: &[&str]) -> String {
    let mut args = vec!["-o", "json", "workflow", "run", file.to_str().unwrap()];
    args.extend(extra);
    let out = c.cli(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["id"].as_str().unwrap().to_string()
}

fn target<'a>(w: &'a v1::WorkflowRun, key: &str) -> &'a v1::WorkflowTarget {
    w.targets.iter().find(|t| t.key == key).expect("target")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workflow_run_with_a_ttl_is_torn_down_dependants_first() {
    let mut c = Cluster::start(Db::Sqlite).await;
    c.agent(AgentOpts::default()).await;
    let file = pipeline(&c, "wf-ttl");
    let id = start(&c, &file, &["--ttl", "3s", "--approval", "auto"]);
    c.wait_workflow(&id, "succeeded", T).await;
    let name = format!("workflow-run:{id}");
    let e = wait_env(&c, &name, "destroyed").await;
    let d = c.workflow_run(&e.destroy_run).await;
    assert!(d.destroy && d.state == "succeeded", "{d:#?}");
    assert_eq!(d.tags.get("ttl").map(String::as_str), Some("expired"));
    let (app, net) = (
        c.run(&target(&d, "app").run_id).await,
        c.run(&target(&d, "net").run_id).await,
    );
    assert!(app.auto_approve && net.auto_approve);
    assert!(
        app.updated_unix_ms <= net.created_unix_ms,
        "the app goes first"
    );
    assert_eq!(resources(&c, "wf-ttl/net"), serde_json::json!([]));
    assert_eq!(resources(&c, "wf-ttl/app"), serde_json::json!([]));
    c.kill_coordinator();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workflow_cancelled_half_way_still_tears_down_what_it_applied() {
    let mut c = Cluster::start(Db::Postgres).await;
    c.agent(AgentOpts::default()).await;
    let file = pipeline(&c, "wf-cut");
    let id = start(&c, &file, &["--ttl", "2s", "--approval", "each"]);
    // The network applies; the app's plan waits for an approval nobody gives: cancel.
    let w = wait_for("the net run to wait for approval", T, || async {
        let w = c.workflow_run(&id).await;
        (target(&w, "net").run_state == "awaiting_approval").then_some(w)
    })
    .await;
    let out = c.cli(&["run", "approve", &target(&w, "net").run_id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("the app run to wait for approval", T, || async {
        let w = c.workflow_run(&id).await;
        (target(&w, "app").run_state == "awaiting_approval").then_some(())
    })
    .await;
    let out = c.cli(&["workflow", "cancel", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.wait_workflow(&id, "cancelled", T).await;

    let e = wait_env(&c, &format!("workflow-run:{id}"), "destroyed").await;
    let d = c.workflow_run(&e.destroy_run).await;
    assert_eq!(d.state, "succeeded", "{d:#?}");
    let keys: Vec<&str> = d.targets.iter().map(|t| t.key.as_str()).collect();
    assert_eq!(keys, ["net"], "only what applied is destroyed");
    assert_eq!(resources(&c, "wf-cut/net"), serde_json::json!([]));
    c.kill_coordinator();
}

/// A workspace's own TTL: an apply without `--ttl` starts its deadline, a second apply
/// restarts it, and at expiry the workspace is destroyed; clearing it leaves later applies
/// alone.
async fn workspace_ttl_destroys(db: Db) {
    let mut c = Cluster::start_with(db, &["default"], &["--reap-interval", "200ms"]).await;
    c.agent(AgentOpts::default()).await;
    let ws = "preview/ws-ttl";
    let out = c.cli(&["workspace", "ttl", ws, "4s"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed =
        String::from_utf8_lossy(&c.cli(&["workspace", "list", "-o", "json"]).stdout).to_string();
    assert!(listed.contains("\"ttl_ms\": 4000"), "{listed}");
    let first = c.submit(&module(&c), ws, &["--auto-approve", "--var", "name=a"]);
    c.wait_state(&first, &["applied"], T).await;
    let e1 = env(&c, ws)
        .await
        .expect("an environment from the workspace's TTL");
    assert_eq!((e1.state.as_str(), e1.ttl_ms), ("active", 4000));
    let second = c.submit(&module(&c), ws, &["--auto-approve", "--var", "name=b"]);
    c.wait_state(&second, &["applied"], T).await;
    let e2 = env(&c, ws).await.unwrap();
    assert!(
        e2.expires_unix_ms > e1.expires_unix_ms,
        "the apply restarted it: {e1:?} {e2:?}"
    );
    assert_eq!(e2.source_run, second);
    let e = wait_env(&c, ws, "destroyed").await;
    assert!(c.run(&e.destroy_run).await.created_unix_ms >= e2.expires_unix_ms);
    assert_eq!(resources(&c, ws), serde_json::json!([]), "nothing left");
    let audit = String::from_utf8_lossy(
        &c.cli(&["audit", "list", "--kind", "workspace_ttl_set"])
            .stdout,
    )
    .to_string();
    assert!(audit.contains(ws), "{audit}");

    assert!(c.cli(&["workspace", "ttl", ws, "--clear"]).status.success());
    let third = c.submit(&module(&c), ws, &["--auto-approve", "--var", "name=c"]);
    c.wait_state(&third, &["applied"], T).await;
    let e = env(&c, ws).await.unwrap();
    assert_eq!(e.state, "destroyed", "no new deadline once cleared: {e:?}");
    c.kill_coordinator();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workspace_ttl_restarts_with_every_apply_and_destroys_at_expiry_sqlite() {
    workspace_ttl_destroys(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workspace_ttl_restarts_with_every_apply_and_destroys_at_expiry_postgres() {
    workspace_ttl_destroys(Db::Postgres).await;
}
