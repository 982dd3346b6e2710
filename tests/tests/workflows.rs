//! Workflow runs end to end: stacks passing real outputs (read from stored state) to each
//! other, for_each fan-out, tags, a failure skipping dependants but not siblings, retry,
//! destroy in reverse order, approval of the workflow run as a whole, and file errors with
//! positions. Real coordinator, agent, RabbitMQ, both databases.

use std::path::{Path, PathBuf};
use std::time::Duration;
use tofuflow_e2e::{wait_for, AgentOpts, Cluster, Db};
use tofuflow_proto::v1;

const T: Duration = Duration::from_secs(120);

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// A network per region, an app per region reading its network's subnet (and a sensitive
/// token), a report reading both apps' endpoints.
fn pipeline(c: &Cluster, name: &str, app_extra: &str) -> PathBuf {
    let dir = c.dir.join(name);
    write(
        &dir,
        "net/main.tf",
        r#"
variable "region" { type = string }
resource "terraform_data" "net" { input = "subnet-${var.region}" }
output "subnet_id" { value = terraform_data.net.output }
output "token" {
  value     = "tok-${var.region}-5f1e9c"
  sensitive = true
}
"#,
    );
    write(
        &dir,
        "app/main.tf",
        &format!(
            r#"
variable "subnet" {{ type = string }}
variable "token" {{ type = string }}
resource "terraform_data" "app" {{ input = "https://${{var.subnet}}.example" }}
output "endpoint" {{ value = terraform_data.app.output }}
{app_extra}
"#
        ),
    );
    write(
        &dir,
        "report/main.tf",
        r#"
variable "endpoints" { type = list(string) }
resource "terraform_data" "report" { input = join(",", var.endpoints) }
output "all" { value = terraform_data.report.output }
"#,
    );
    write(
        &dir,
        "workflow.hcl",
        &format!(
            r#"
workflow {{
  approval = "auto"
}}

stack "net" {{
  source    = "./net"
  workspace = "{name}/net-${{each.key}}"
  for_each  = ["eu", "us"]
  inputs    = {{ region = each.key }}
}}

stack "app" {{
  source    = "./app"
  workspace = "{name}/app-${{each.key}}"
  for_each  = ["eu", "us"]
  inputs = {{
    subnet = stack.net[each.key].outputs.subnet_id
    token  = stack.net[each.key].outputs.token
  }}
  tags = {{ team = "ml" }}
}}

stack "report" {{
  source    = "./report"
  workspace = "{name}/report"
  inputs    = {{ endpoints = [stack.app["eu"].outputs.endpoint, stack.app["us"].outputs.endpoint] }}
}}
"#
        ),
    );
    dir.join("workflow.hcl")
}

fn start(c: &Cluster, file: &Path, extra: &[&str]) -> String {
    let f = file.to_str().unwrap();
    let mut args = vec!["-o", "json", "workflow", "run", f];
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
    w.targets
        .iter()
        .find(|t| t.key == key)
        .unwrap_or_else(|| panic!("no target {key}"))
}

async fn pipeline_passes_real_outputs(db: Db) {
    let mut c = Cluster::start(db).await;
    c.agent(AgentOpts {
        concurrency: 2,
        ..Default::default()
    })
    .await;
    let file = pipeline(&c, "pipe", "");
    let id = start(&c, &file, &[]);
    let w = c.wait_workflow(&id, "succeeded", T).await;
    assert_eq!(w.targets.len(), 5);
    assert!(
        w.targets
            .iter()
            .all(|t| t.state == "succeeded" && t.run_state == "applied"),
        "{w:#?}"
    );
    // The report's inputs came from the apps' applied state, which came from the networks'.
    let report = c.run(&target(&w, "report").run_id).await;
    let outputs: serde_json::Value = serde_json::from_str(&report.outputs_json).unwrap();
    assert_eq!(
        outputs["all"]["value"],
        "https://subnet-eu.example,https://subnet-us.example"
    );
    // Every run carries the workflow run, its stack and key; the stack's own tags too.
    let app_us = c.run(&target(&w, "app[\"us\"]").run_id).await;
    assert_eq!(app_us.tags["workflow_run"], id);
    assert_eq!(app_us.tags["stack"], "app");
    assert_eq!(app_us.tags["each_key"], "us");
    assert_eq!(app_us.tags["team"], "ml");
    // The sensitive output arrived as a sensitive input: masked wherever the run is shown.
    assert!(
        app_us.sensitive_variables.contains(&"token".to_string()),
        "{:?}",
        app_us.sensitive_variables
    );
    let listed = c.cli(&["run", "list", "--tag", &format!("workflow_run={id}")]);
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout).lines().count(),
        6,
        "header + 5 runs"
    );
    let shown = String::from_utf8_lossy(&c.cli(&["run", "show", &app_us.id]).stdout).to_string();
    assert!(!shown.contains("tok-us-5f1e9c"), "{shown}");

    // Destroy goes dependants first: the report, then the apps, then the networks.
    let d = start(&c, &file, &["--destroy"]);
    let w = c.wait_workflow(&d, "succeeded", T).await;
    let report = times(&c, &w, "report").await;
    let app = times(&c, &w, "app[\"eu\"]").await;
    let net = times(&c, &w, "net[\"eu\"]").await;
    assert_eq!(report.2, v1::RunKind::Destroy as i32);
    assert!(
        report.1 <= app.0 && app.1 <= net.0,
        "{report:?} {app:?} {net:?}"
    );
    let pulled = c.cli(&["state", "pull", "pipe/net-eu"]);
    assert!(
        pulled.status.success(),
        "{}",
        String::from_utf8_lossy(&pulled.stderr)
    );
    let state: serde_json::Value = serde_json::from_slice(&pulled.stdout).unwrap();
    assert_eq!(state["resources"], serde_json::json!([]), "destroyed");
}

/// When a target's run was created and last changed, and its kind.
async fn times(c: &Cluster, w: &v1::WorkflowRun, key: &str) -> (i64, i64, i32) {
    let r = c.run(&target(w, key).run_id).await;
    (r.created_unix_ms, r.updated_unix_ms, r.kind)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pipeline_passes_real_outputs_and_destroys_in_reverse_sqlite() {
    pipeline_passes_real_outputs(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pipeline_passes_real_outputs_and_destroys_in_reverse_postgres() {
    pipeline_passes_real_outputs(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failure_skips_its_dependants_leaves_siblings_alone_and_retry_finishes() {
    let mut c = Cluster::start(Db::Sqlite).await;
    // The first agent fails every apply of the app stack's resource.
    let failing = c
        .agent(AgentOpts {
            concurrency: 2,
            env: [(
                "TOFU_DOUBLE_FAIL_AT".to_string(),
                "terraform_data.app".to_string(),
            )]
            .into(),
            ..Default::default()
        })
        .await;
    let file = pipeline(&c, "skip", "");
    let id = start(&c, &file, &[]);
    let w = c.wait_workflow(&id, "failed", T).await;
    for k in ["app[\"eu\"]", "app[\"us\"]"] {
        assert_eq!(target(&w, k).state, "failed", "{w:#?}");
        assert!(
            target(&w, k).reason.starts_with("its run failed"),
            "{}",
            target(&w, k).reason
        );
    }
    // Siblings and upstreams applied; the report was skipped naming the failure.
    assert_eq!(target(&w, "net[\"us\"]").state, "succeeded");
    let report = target(&w, "report");
    assert_eq!(report.state, "skipped");
    assert!(report.run_id.is_empty());
    assert!(
        report.reason.starts_with("skipped: app[\""),
        "{}",
        report.reason
    );
    assert!(
        w.reason.contains("2 succeeded, 2 failed, 1 skipped"),
        "{}",
        w.reason
    );

    // Retry on a healthy agent: only what failed and was skipped runs again.
    c.agents[failing].kill();
    c.agent(AgentOpts::default()).await;
    let net_runs = target(&w, "net[\"eu\"]").runs.clone();
    let out = c.cli(&["workflow", "retry", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let w = c.wait_workflow(&id, "succeeded", T).await;
    assert_eq!(target(&w, "net[\"eu\"]").runs, net_runs, "not run again");
    assert_eq!(target(&w, "app[\"eu\"]").runs.len(), 2);
    assert_eq!(target(&w, "report").runs.len(), 1);
    // A succeeded workflow run cannot be retried.
    let out = c.cli(&["workflow", "retry", &id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("only a failed or cancelled workflow run can be retried"));
}

#[tokio::test(flavor = "multi_thread")]
async fn approval_once_waits_for_the_workflow_approval_and_cancel_stops_it() {
    let mut c = Cluster::start(Db::Sqlite).await;
    c.agent(AgentOpts::default()).await;
    let file = pipeline(&c, "once", "");
    let id = start(&c, &file, &["--approval", "once"]);
    let w = c.workflow_run(&id).await;
    assert_eq!(w.state, "awaiting_approval");
    assert!(w
        .targets
        .iter()
        .all(|t| t.state == "waiting" && t.run_id.is_empty()));
    let out = c.cli(&["workflow", "approve", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.wait_workflow(&id, "succeeded", T).await;
    let audit =
        String::from_utf8_lossy(&c.cli(&["audit", "list", "--limit", "200"]).stdout).to_string();
    for kind in ["workflow_started", "workflow_approved", "workflow_finished"] {
        assert!(audit.contains(kind), "{kind} missing from\n{audit}");
    }

    // Each-plan approval: the first plans wait; cancelling the workflow run stops them and
    // cancels what has not started.
    let file = pipeline(&c, "each", "");
    let id = start(&c, &file, &["--approval", "each"]);
    let w = wait_for("two plans waiting for approval", T, || async {
        let w = c.workflow_run(&id).await;
        let waiting = w
            .targets
            .iter()
            .filter(|t| t.run_state == "awaiting_approval")
            .count();
        (waiting == 2).then_some(w)
    })
    .await;
    assert_eq!(target(&w, "report").state, "waiting");
    let out = c.cli(&["workflow", "cancel", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let w = c.wait_workflow(&id, "cancelled", T).await;
    assert_eq!(target(&w, "net[\"eu\"]").state, "cancelled");
    assert_eq!(target(&w, "app[\"eu\"]").state, "cancelled");
    assert!(
        target(&w, "app[\"eu\"]")
            .reason
            .starts_with("cancelled by tester"),
        "{}",
        target(&w, "app[\"eu\"]").reason
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn workflow_files_with_mistakes_get_errors_with_positions() {
    let c = Cluster::start(Db::Sqlite).await;
    let dir = c.dir.join("bad");
    write(&dir, "a/main.tf", "variable \"x\" {}\n");
    let cases = [
        (
            "stack \"a\" {\n  source = \"./a\"\n  workspace = \"a\"\n  inputs = { x = stack.b.outputs.y }\n}\nstack \"b\" {\n  source = \"./a\"\n  workspace = \"b\"\n  inputs = { x = stack.a.outputs.y }\n}\n",
            "cycle.hcl:1:1: dependency cycle: a -> b -> a",
        ),
        (
            "stack \"a\" {\n  source = \"./a\"\n  workspace = \"a\"\n  inputs = {\n    x = stack.nope.outputs.y\n  }\n}\n",
            "unknown.hcl:5:5: no stack named \"nope\" (stacks: a)",
        ),
        (
            "stack \"a\" {\n  source = \"./a\"\n  workspace = \"a\"\n  inputs = { x = 1 \n}\n",
            "syntax.hcl:",
        ),
    ];
    for (text, want) in cases {
        let name = want.split(':').next().unwrap();
        write(&dir, name, text);
        let f = dir.join(name);
        // Offline, and at the coordinator (which checks again).
        let out = c.cli(&["workflow", "validate", f.to_str().unwrap()]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(err.contains(want), "{err}");
    }
    // An input the module does not declare is refused by the coordinator before anything runs.
    write(
        &dir,
        "undeclared.hcl",
        "stack \"a\" {\n  source = \"./a\"\n  workspace = \"a\"\n  inputs = { y = 1 }\n}\n",
    );
    let out = c.cli(&[
        "workflow",
        "run",
        dir.join("undeclared.hcl").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(err.contains("undeclared.hcl:4:14: stack \"a\": input \"y\" is not a variable of module ./a (it declares: x)"), "{err}");
    let listed = c.cli(&["-o", "json", "workflow", "list"]);
    assert_eq!(String::from_utf8_lossy(&listed.stdout).trim(), "[]");
    // A valid file lists its targets in order.
    write(&dir, "ok.hcl", "stack \"a\" {\n  source = \"./a\"\n  workspace = \"w-${each.key}\"\n  for_each = [\"p\", \"q\"]\n  inputs = { x = each.key }\n}\n");
    let out = c.cli(&["workflow", "validate", dir.join("ok.hcl").to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("a[\"q\"]"));
}

/// Ten regions, three of which (r03, r05, r07) fail their apply.
fn fleet(c: &Cluster, name: &str, rollout: &str) -> PathBuf {
    let dir = c.dir.join(name);
    write(
        &dir,
        "region/main.tf",
        r#"
variable "code" { type = number }
resource "terraform_data" "node" {
  provisioner "local-exec" { command = "exit ${var.code}" }
}
"#,
    );
    let regions: Vec<String> = (0..10)
        .map(|i| format!("r{i:02} = {}", u8::from([3, 5, 7].contains(&i))))
        .collect();
    write(
        &dir,
        "fleet.hcl",
        &format!(
            r#"
workflow {{
  approval = "auto"
}}
stack "region" {{
  source    = "./region"
  workspace = "{name}/${{each.key}}"
  for_each  = {{ {} }}
  inputs    = {{ code = each.value }}
  rollout {{
    {rollout}
  }}
}}
"#,
            regions.join(", ")
        ),
    );
    dir.join("fleet.hcl")
}

async fn rollout_status(c: &Cluster, id: &str) -> serde_json::Value {
    let out = c.cli(&["-o", "json", "rollout", "status", id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["rollouts"][0].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollout_goes_in_waves_halts_when_its_budget_is_exceeded_and_resumes() {
    let mut c = Cluster::start(Db::Sqlite).await;
    c.agent(AgentOpts {
        concurrency: 2,
        ..Default::default()
    })
    .await;
    // One at a time, so the order is exact: r03 fails (1 failure = the budget: it goes on),
    // r04 applies, r05 fails (2 > 1: it halts before r06).
    let file = fleet(
        &c,
        "fleet",
        r#"canary = 1
    waves = ["30%", "60%", "100%"]
    max_parallel = 1
    max_failures = 1"#,
    );
    let id = start(&c, &file, &[]);
    let r = wait_for("the rollout to halt", T, || async {
        let r = rollout_status(&c, &id).await;
        (r["state"] == "halted").then_some(r)
    })
    .await;
    assert_eq!(
        (r["wave"].as_u64(), r["waves"].as_u64()),
        (Some(3), Some(4)),
        "{r:#}"
    );
    assert_eq!(
        (r["failures"].as_u64(), r["max_failures"].as_u64()),
        (Some(2), Some(1))
    );
    let targets = r["targets"].as_array().unwrap();
    let state = |k: &str| {
        targets
            .iter()
            .find(|t| t["key"] == format!("region[\"{k}\"]"))
            .unwrap()
            .clone()
    };
    assert_eq!(state("r00")["wave"], 1);
    assert_eq!(state("r02")["wave"], 2);
    assert_eq!(state("r03")["state"], "failed");
    assert_eq!(
        state("r04")["state"],
        "succeeded",
        "a budget only equalled does not halt"
    );
    assert_eq!(state("r05")["state"], "failed");
    assert_eq!(state("r06")["state"], "waiting");
    assert_eq!(state("r06")["run_id"], "");
    // Which version each region is on: the bundle of its run.
    let digest = state("r00")["bundle_digest"].as_str().unwrap().to_string();
    assert!(digest.starts_with("sha256:"), "{digest}");
    assert_eq!(
        c.workflow_run(&id).await.state,
        "running",
        "a halted rollout keeps its workflow run open"
    );

    // Resumed: the old failures are forgiven; r07 fails (1, equal), the rest applies.
    let out = c.cli(&["rollout", "resume", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let w = c.wait_workflow(&id, "failed", T).await;
    let r = rollout_status(&c, &id).await;
    assert_eq!(r["state"], "done", "{r:#}");
    assert_eq!(target(&w, "region[\"r07\"]").state, "failed");
    assert_eq!(target(&w, "region[\"r09\"]").state, "succeeded");
    assert!(
        w.reason.starts_with("7 succeeded, 3 failed"),
        "{}",
        w.reason
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollout_pauses_for_approval_between_waves_and_abort_cancels_the_rest() {
    let mut c = Cluster::start(Db::Sqlite).await;
    c.agent(AgentOpts {
        concurrency: 2,
        ..Default::default()
    })
    .await;
    let file = fleet(
        &c,
        "paused",
        r#"canary = 2
    pause = "approval"
    max_failures = "50%""#,
    );
    let id = start(&c, &file, &[]);
    let r = wait_for("the canary wave to finish and pause", T, || async {
        let r = rollout_status(&c, &id).await;
        (r["state"] == "paused").then_some(r)
    })
    .await;
    assert!(
        r["reason"]
            .as_str()
            .unwrap()
            .starts_with("wave 1 of 2 done"),
        "{r:#}"
    );
    let started = r["targets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["run_id"] != "")
        .count();
    assert_eq!(started, 2, "only the canaries ran: {r:#}");
    // Pausing a paused rollout is refused with what it needs.
    let out = c.cli(&["rollout", "pause", &id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is paused: pause needs it running"));
    let out = c.cli(&["rollout", "abort", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let w = c.wait_workflow(&id, "cancelled", T).await;
    assert_eq!(
        w.targets.iter().filter(|t| t.state == "cancelled").count(),
        8
    );
    assert!(target(&w, "region[\"r09\"]")
        .reason
        .starts_with("rollout aborted by tester"));
    let audit =
        String::from_utf8_lossy(&c.cli(&["audit", "list", "--limit", "200"]).stdout).to_string();
    assert!(audit.contains("rollout_changed"), "{audit}");
}

/// A one-stack workflow whose module says which version it is.
fn service(dir: &Path, version: &str) -> PathBuf {
    write(
        dir,
        "svc/main.tf",
        &format!(
            r#"
resource "terraform_data" "svc" {{ input = "{version}" }}
output "version" {{ value = terraform_data.svc.output }}
"#
        ),
    );
    write(dir, "svc.hcl", "workflow {\n  approval = \"auto\"\n}\nstack \"svc\" {\n  source = \"./svc\"\n  workspace = \"svc/prod\"\n}\n");
    dir.join("svc.hcl")
}

/// The `version` output the svc target's run applied.
async fn version(c: &Cluster, w: &v1::WorkflowRun) -> serde_json::Value {
    let r = c.run(&target(w, "svc").run_id).await;
    serde_json::from_str::<serde_json::Value>(&r.outputs_json).unwrap()["version"]["value"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollback_reapplies_the_last_good_bundles_and_the_api_shows_workflow_runs() {
    let mut c = Cluster::start(Db::Postgres).await;
    c.agent(AgentOpts::default()).await;
    let dir = c.dir.join("svc");
    let good = start(&c, &service(&dir, "v1"), &[]);
    c.wait_workflow(&good, "succeeded", T).await;
    let bad = start(&c, &service(&dir, "v2"), &[]);
    let w = c.wait_workflow(&bad, "succeeded", T).await;
    assert_eq!(version(&c, &w).await, "v2");
    let out = c.cli(&["-o", "json", "workflow", "rollback", &bad]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let back: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = back["id"].as_str().unwrap().to_string();
    assert_eq!(back["tags"]["rollback_of"], bad.as_str());
    assert_eq!(back["tags"]["rollback_to"], good.as_str());
    let w = c.wait_workflow(&id, "succeeded", T).await;
    assert_eq!(
        version(&c, &w).await,
        "v1",
        "the good bundle is applied again"
    );

    // Through the JSON API: a viewer reads workflow runs but may not start or roll back.
    let viewer = c.user_token("vera", "viewer").await;
    let a = c.api(
        "GET",
        &format!("/api/v1/workflow-runs/{id}"),
        Some(&viewer),
        None,
        &[],
    );
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.json()["targets"][0]["workspace"], "svc/prod");
    let a = c.api(
        "GET",
        "/api/v1/workflow-runs?limit=2",
        Some(&viewer),
        None,
        &[],
    );
    assert_eq!(a.json().as_array().unwrap().len(), 2);
    let a = c.api(
        "POST",
        &format!("/api/v1/workflow-runs/{id}/rollback"),
        Some(&viewer),
        None,
        &[],
    );
    assert_eq!(a.status, 403, "{}", String::from_utf8_lossy(&a.body));
    assert!(a
        .header("content-type")
        .unwrap()
        .starts_with("application/problem+json"));
    let body = serde_json::json!({"definition": "stack \"x\" {\n  source = \"./x\"\n  workspace = \"x\"\n  inputs = { a = stack.y.outputs.b }\n}\n", "file_name": "api.hcl", "bundles": {}});
    let admin = c.token.clone();
    let a = c.api(
        "POST",
        "/api/v1/workflow-runs",
        admin.as_deref(),
        Some(("application/json", body.to_string().as_bytes())),
        &[],
    );
    assert_eq!(a.status, 400, "{}", String::from_utf8_lossy(&a.body));
    assert!(
        a.json()["detail"]
            .as_str()
            .unwrap()
            .contains("api.hcl:4:14: no stack named \"y\""),
        "{}",
        a.json()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_capacity_error_moves_the_stack_to_its_next_candidate_after_cleaning_up() {
    let mut c = Cluster::start(Db::Sqlite).await;
    c.agent(AgentOpts::default()).await;
    let dir = c.dir.join("cap");
    write(
        &dir,
        "gpu/main.tf",
        r#"
variable "zone" { type = string }
resource "terraform_data" "disk" { input = "disk-${var.zone}" }
resource "terraform_data" "gpu" {
  depends_on = [terraform_data.disk]
  input      = var.zone
  provisioner "local-exec" {
    command = "case ${var.zone} in full-*) echo 'api error Insufficient''InstanceCapacity: no p4d capacity in ${var.zone}'; exit 1;; bad-*) echo 'permission denied'; exit 1;; esac"
  }
}
output "zone" { value = terraform_data.gpu.output }
"#,
    );
    write(
        &dir,
        "cap.hcl",
        r#"
workflow {
  approval = "auto"
}
stack "gpu" {
  source    = "./gpu"
  workspace = "cap/gpu"
  fallback {
    variable = "zone"
    values   = ["full-1", "ok-2", "ok-3"]
  }
}
stack "broken" {
  source    = "./gpu"
  workspace = "cap/broken"
  fallback {
    variable = "zone"
    values   = ["bad-1", "ok-2"]
  }
}
"#,
    );
    let id = start(&c, &dir.join("cap.hcl"), &[]);
    let w = c.wait_workflow(&id, "failed", T).await;
    // The capacity error: cleaned up (a destroy of what the try left), then the next zone.
    let gpu = target(&w, "gpu");
    assert_eq!(gpu.state, "succeeded", "{w:#?}");
    assert_eq!(gpu.runs.len(), 3, "{gpu:?}");
    let first = c.run(&gpu.runs[0]).await;
    assert_eq!(first.state, "failed");
    let cleanup = c.run(&gpu.runs[1]).await;
    assert_eq!(
        (cleanup.kind, cleanup.state.as_str()),
        (v1::RunKind::Destroy as i32, "applied")
    );
    let last = c.run(&gpu.runs[2]).await;
    let outputs: serde_json::Value = serde_json::from_str(&last.outputs_json).unwrap();
    assert_eq!(outputs["zone"]["value"], "ok-2");
    let pulled = c.cli(&["state", "pull", "cap/gpu"]);
    let state = String::from_utf8_lossy(&pulled.stdout).to_string();
    assert!(
        state.contains("disk-ok-2") && !state.contains("disk-full-1"),
        "{state}"
    );
    // Any other failure is a failure: no fallback.
    let broken = target(&w, "broken");
    assert_eq!(
        (broken.state.as_str(), broken.runs.len()),
        ("failed", 1),
        "{broken:?}"
    );
    let audit = String::from_utf8_lossy(
        &c.cli(&["audit", "list", "--kind", "workflow_fallback"])
            .stdout,
    )
    .to_string();
    assert!(
        audit.contains("InsufficientInstanceCapacity") && audit.contains("ok-2"),
        "{audit}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retried_start_with_its_idempotency_key_starts_one_workflow_run_and_lists_filter_by_tag()
{
    let c = Cluster::start(Db::Postgres).await;
    let dir = c.dir.join("idem");
    let file = service(&dir, "v1");
    let f = file.to_str().unwrap();
    let args = [
        "-o",
        "json",
        "workflow",
        "run",
        f,
        "--tag",
        "dag_id=nightly",
        "--idempotency-key",
        "nightly-1",
    ];
    // The same start twice at once (an Airflow retry racing a slow first try): one workflow run.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| c.cli(&args));
        let b = s.spawn(|| c.cli(&args));
        (a.join().unwrap(), b.join().unwrap())
    });
    let id = |o: &std::process::Output| {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["id"].as_str().unwrap().to_string()
    };
    let first = id(&a);
    assert_eq!(first, id(&b), "both starts answer the same workflow run");
    assert_eq!(id(&c.cli(&args)), first, "a later retry too");

    // The same key for another start is refused, naming the key; nothing new starts.
    let mut other = args.to_vec();
    other[6] = "dag_id=weekly";
    let out = c.cli(&other);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"nightly-1\" was used for a different workflow start"),
        "{err}"
    );
    let untagged = start(&c, &file, &["--tag", "dag_id=weekly"]);

    // The list filters by tag, in the CLI and the API; a malformed filter is a clear 400.
    let listed = |tag: &str| -> Vec<String> {
        let out = c.cli(&["-o", "json", "workflow", "list", "--tag", tag]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|w| w["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(listed("dag_id=nightly"), vec![first.clone()]);
    assert_eq!(listed("dag_id=weekly"), vec![untagged.clone()]);
    assert!(listed("dag_id=monthly").is_empty());
    let token = c.token.clone();
    let a = c.api(
        "GET",
        "/api/v1/workflow-runs?tag=dag_id%3Dweekly",
        token.as_deref(),
        None,
        &[],
    );
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.json()[0]["id"], untagged.as_str());
    assert_eq!(a.json().as_array().unwrap().len(), 1);
    let a = c.api(
        "GET",
        "/api/v1/workflow-runs?tag=dag_id",
        token.as_deref(),
        None,
        &[],
    );
    assert_eq!(a.status, 400, "{}", String::from_utf8_lossy(&a.body));
    assert!(a.json()["detail"]
        .as_str()
        .unwrap()
        .contains("expected key=value"));

    // Through the API: the same body with the same Idempotency-Key answers the same run.
    let shown = c.api(
        "GET",
        &format!("/api/v1/workflow-runs/{first}"),
        token.as_deref(),
        None,
        &[],
    );
    let w = shown.json();
    let body = serde_json::json!({
        "definition": std::fs::read_to_string(&file).unwrap(),
        "file_name": "svc.hcl",
        "bundles": w["bundles"],
        "tags": {"dag_id": "api"},
        "ttl_ms": 3_600_000,
    })
    .to_string();
    let post = || {
        c.api(
            "POST",
            "/api/v1/workflow-runs",
            token.as_deref(),
            Some(("application/json", body.as_bytes())),
            &[("Idempotency-Key", "api-1")],
        )
    };
    let (p1, p2) = (post(), post());
    assert_eq!(p1.status, 200, "{}", String::from_utf8_lossy(&p1.body));
    assert_eq!(p1.json()["id"], p2.json()["id"]);
    assert_eq!(listed("dag_id=api").len(), 1);
    // Its TTL made the workflow run's environment, as `workflow run --ttl` does.
    let envs = c.api("GET", "/api/v1/environments", token.as_deref(), None, &[]);
    let env = envs
        .json()
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["workflow_run"] == p1.json()["id"])
        .cloned()
        .unwrap_or_else(|| panic!("no environment for the workflow run: {}", envs.json()));
    assert_eq!(env["ttl_ms"], 3_600_000);
}
