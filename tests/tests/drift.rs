//! Drift end to end: the state of a workspace is changed behind its configuration's back (an
//! older state version restored), and while another run keeps the workspace busy (its plan
//! waits for approval), `drift check` plans at once, without the state lock, finds the drift
//! (exit 2), and `workspace list` shows it; the remediation run it submitted waits its turn and
//! then for approval like any run, and once it applied the workspace is in sync again (a new
//! check exits 0). A workspace that never applied cannot be checked (a clear error), and a
//! drift check cannot be submitted as a run. New drift is a `drift_detected` audit entry and a
//! `drift_found` webhook delivery. Real coordinator, agent, RabbitMQ, both databases.

use std::path::PathBuf;
use std::time::Duration;
use tofuflow_e2e::{AgentOpts, Cluster, Db};
use tofuflow_proto::v1;

const T: Duration = Duration::from_secs(120);

fn module(c: &Cluster) -> PathBuf {
    let dir = c.dir.join("drift-module");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("main.tf"),
        r#"
variable "size" { type = string }
resource "terraform_data" "vm" { input = "vm-${var.size}" }
output "size" { value = terraform_data.vm.output }
"#,
    )
    .unwrap();
    dir
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The workspace as `workspace list -o json` shows it.
fn workspace(c: &Cluster, ws: &str) -> serde_json::Value {
    let all: serde_json::Value =
        serde_json::from_str(&ok(&c.cli(&["workspace", "list", "-o", "json"]))).unwrap();
    all.as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == ws)
        .cloned()
        .unwrap_or_else(|| panic!("{ws} not listed: {all}"))
}

/// Applies the module on `ws` with `size`.
async fn apply(c: &Cluster, ws: &str, size: &str) -> v1::Run {
    let id = c.submit(
        &module(c),
        ws,
        &["--auto-approve", "--var", &format!("size={size}")],
    );
    c.wait_state(&id, &["applied"], T).await
}

/// A state key: webhook secrets are sealed with it.
const STATE_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

async fn drift_found_while_busy_and_remediated(db: Db) {
    let mut c = Cluster::builder(db)
        .coordinator_args(&["--state-key", STATE_KEY])
        .start()
        .await;
    c.agent(AgentOpts::default()).await;
    let ws = "drift/app";
    apply(&c, ws, "small").await;
    let last = apply(&c, ws, "large").await;
    assert_eq!(workspace(&c, ws)["drift"], "unchecked");

    // Behind the configuration's back: the state of the first apply is restored.
    ok(&c.cli(&["state", "rollback", ws, "--to", "1", "--reason", "test"]));
    // Another run holds the workspace: its plan waits for approval.
    let busy = c.submit(&module(&c), ws, &["--var", "size=large"]);
    c.wait_state(&busy, &["awaiting_approval"], T).await;

    ok(&c.cli(&[
        "webhook",
        "create",
        "drift-hook",
        "--url",
        "http://127.0.0.1:9/hook",
        "-w",
        "drift/**",
        "-e",
        "drift_found",
        "--allow-private",
    ]));
    // A policy that denies every plan does not fail a drift check: its verdict is recorded.
    let deny_all = c.dir.join("deny-all.rego");
    std::fs::write(
        &deny_all,
        "package main\nimport rego.v1\ndeny contains \"no change may apply\" if { true }\n",
    )
    .unwrap();
    ok(&c.cli(&[
        "policy",
        "add",
        "deny-all",
        "--workspace",
        "drift/**",
        "--file",
        deny_all.to_str().unwrap(),
    ]));
    let out = c.cli(&["drift", "check", ws, "--remediate", "--wait"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(2), "exit 2 on drift: {text}");
    assert!(text.contains("DRIFTED"), "{text}");
    let w = workspace(&c, ws);
    assert_eq!(w["drift"], "drifted", "{w}");
    assert!(w["drifted_since_unix_ms"].as_i64().unwrap() > 0, "{w}");
    assert!(w["last_checked_unix_ms"].as_i64().unwrap() > 0, "{w}");
    assert_eq!(w["last_applied_run"], last.id.as_str(), "{w}");
    let check = c.run(w["last_check_run"].as_str().unwrap()).await;
    assert_eq!(check.kind, v1::RunKind::DriftCheck as i32);
    assert_eq!(
        check.bundle_digest, last.bundle_digest,
        "the last applied module"
    );
    assert_eq!(
        check.tags.get("source_run").map(String::as_str),
        Some(last.id.as_str())
    );
    let plan_args = plan_args(&c, &check.id);
    assert!(
        plan_args.iter().any(|a| a == "-lock=false"),
        "no state lock: {plan_args:?}"
    );
    assert_eq!(
        c.run(&busy).await.state,
        "awaiting_approval",
        "the busy run is untouched"
    );
    let text = ok(&c.cli(&["workspace", "list"]));
    assert!(text.contains("DRIFTED since"), "{text}");
    let audit = ok(&c.cli(&["audit", "list", "--kind", "drift_detected"]));
    assert!(audit.contains(ws), "{audit}");
    let shown = ok(&c.cli(&["run", "show", &check.id, "-o", "json"]));
    assert!(
        shown.contains("no change may apply"),
        "the check's verdict is recorded: {shown}"
    );
    ok(&c.cli(&["policy", "remove", "deny-all"]));
    let hook = ok(&c.cli(&["webhook", "show", "drift-hook"]));
    assert!(
        hook.contains("drift_found"),
        "a drift_found delivery: {hook}"
    );

    // The remediation run waits for the busy run, then for approval.
    let fix = w["remediation_run"].as_str().unwrap().to_string();
    let r = c.run(&fix).await;
    assert_eq!(r.state, "pending", "it waits its turn: {r:?}");
    assert_eq!(r.tags.get("drift").map(String::as_str), Some("remediation"));
    ok(&c.cli(&["run", "reject", &busy, "--reason", "superseded"]));
    c.wait_state(&fix, &["awaiting_approval"], T).await;
    ok(&c.cli(&["run", "approve", &fix, "--wait"]));
    c.wait_state(&fix, &["applied"], T).await;
    let w = workspace(&c, ws);
    assert_eq!(w["drift"], "in_sync", "an apply clears the drift: {w}");
    assert_eq!(w["drifted_since_unix_ms"], 0);

    let out = c.cli(&["drift", "check", ws, "--wait"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "in sync: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    c.kill_coordinator();
}

/// The arguments of the drift check's `tofu plan`.
fn plan_args(c: &Cluster, run: &str) -> Vec<String> {
    c.tofu_trace()
        .into_iter()
        .find(|e| e["event"] == "start" && e["args"][0] == "plan" && e["run"] == run)
        .map(|e| {
            e["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_else(|| panic!("no plan of {run} in the trace"))
}

#[tokio::test(flavor = "multi_thread")]
async fn drift_is_found_while_the_workspace_is_busy_and_remediated_through_approval_sqlite() {
    drift_found_while_busy_and_remediated(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn drift_is_found_while_the_workspace_is_busy_and_remediated_through_approval_postgres() {
    drift_found_while_busy_and_remediated(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workspace_that_never_applied_is_not_checked_and_refresh_only_reaches_tofu() {
    let mut c = Cluster::start(Db::Sqlite).await;
    c.agent(AgentOpts::default()).await;
    let out = c.cli(&["drift", "check", "drift/new"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("no applied run") && err.contains("apply one first"),
        "{err}"
    );
    // A drift check is not something to submit.
    let e = c
        .client()
        .await
        .submit_run(v1::SubmitRunRequest {
            workspace: "drift/new".into(),
            kind: v1::RunKind::DriftCheck as i32,
            ..Default::default()
        })
        .await
        .expect_err("refused");
    assert!(e.message().contains("tofuflow drift check"), "{e:?}");

    apply(&c, "drift/ro", "small").await;
    let out = c.cli(&["drift", "check", "drift/ro", "--refresh-only", "--wait"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let w = workspace(&c, "drift/ro");
    assert_eq!(w["drift"], "in_sync", "{w}");
    let args = plan_args(&c, w["last_check_run"].as_str().unwrap());
    assert!(
        args.iter().any(|a| a == "-refresh-only") && args.iter().any(|a| a == "-lock=false"),
        "{args:?}"
    );
    c.kill_coordinator();
}
