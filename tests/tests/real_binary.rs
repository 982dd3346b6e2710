//! The real binary: where Terraform or OpenTofu is installed (`TOFUFLOW_REAL_TOFU`, else
//! `/usr/local/bin/terraform`, else `tofu` or `terraform` on PATH), a run plans on one agent and
//! applies on another through the http backend, and a destroy removes what it made; a cancel
//! mid-apply interrupts it with state saved and the lock released; sensitive values stay out of
//! the logs; changed variables replace a resource whose destroy-time provisioner runs. Without a
//! real binary every test says so loudly and checks nothing.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tofuflow_e2e::{example, wait_for, AgentOpts, Cluster, Db};

const T: Duration = Duration::from_secs(120);

/// The real binary to run, if this machine has one.
fn real_binary() -> Option<PathBuf> {
    let given = std::env::var_os("TOFUFLOW_REAL_TOFU").map(PathBuf::from);
    let candidates = given
        .into_iter()
        .chain([PathBuf::from("/usr/local/bin/terraform")]);
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .flat_map(|d| [d.join("tofu"), d.join("terraform")]);
    candidates.chain(on_path).find(|p| p.is_file())
}

/// The real binary, announced; `None` (with a loud line) when this machine has none.
fn real_binary_or_skip(test: &str) -> Option<PathBuf> {
    let Some(bin) = real_binary() else {
        eprintln!("REAL-BINARY TEST SKIPPED ({test}): no Terraform or OpenTofu found (set TOFUFLOW_REAL_TOFU=/path/to/tofu)");
        return None;
    };
    eprintln!("real-binary test {test}: using {}", bin.display());
    Some(bin)
}

/// A cluster with one agent running the real binary.
async fn real_cluster(bin: &Path, agent: AgentOpts) -> Cluster {
    let mut c = Cluster::start(Db::Sqlite).await;
    c.agent(AgentOpts {
        tofu_bin: Some(bin.to_path_buf()),
        ..agent
    })
    .await;
    c
}

/// Writes `source` as the `main.tf` of a module directory of the cluster's and returns it.
fn module(c: &Cluster, name: &str, source: &str) -> PathBuf {
    let dir = c.dir.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("main.tf"), source).unwrap();
    dir
}

/// The run's log as `run logs` prints it (`raw`: tofu's JSON lines).
fn logs(c: &Cluster, id: &str, raw: bool) -> String {
    let mut args = vec!["run", "logs", id];
    if raw {
        args.push("--raw");
    }
    String::from_utf8_lossy(&c.cli(&args).stdout).to_string()
}

/// `state list -o json` for a workspace: its versions and its lock.
fn state_list(c: &Cluster, workspace: &str) -> Value {
    serde_json::from_slice(&c.cli(&["state", "list", workspace, "-o", "json"]).stdout)
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_binary_plans_on_one_agent_applies_on_another_and_destroys() {
    let Some(bin) = real_binary_or_skip("plan/apply/destroy") else {
        return;
    };
    let name = bin.file_name().unwrap().to_string_lossy().to_string();
    let mut c = Cluster::start(Db::Sqlite).await;
    let planner = c
        .agent(AgentOpts {
            tofu_bin: Some(bin.clone()),
            ..Default::default()
        })
        .await;
    let id = c.submit(&example("gpu-pool"), "real/gpu", &["--var", "gpu_count=2"]);
    let r = c.wait_state(&id, &["awaiting_approval"], T).await;
    assert_eq!(
        r.summary.as_ref().map(|s| s.add),
        Some(3),
        "the real plan: {r:?}"
    );
    c.agents[planner].terminate();
    c.agents[planner]
        .wait_exit(T)
        .expect("the planner drains and stops");
    let applier = c
        .agent(AgentOpts {
            tofu_bin: Some(bin.clone()),
            ..Default::default()
        })
        .await;
    let out = c.cli(&["run", "approve", &id, "--wait"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = c.wait_state(&id, &["applied"], T).await;
    let claimed_by = |phase: &str| {
        r.transitions
            .iter()
            .find(|t| t.reason.starts_with(&format!("{phase} attempt")))
            .map(|t| t.actor.clone())
            .unwrap_or_default()
    };
    assert_eq!(claimed_by("plan"), c.agents[planner].id);
    assert_eq!(claimed_by("apply"), c.agents[applier].id);
    let logs = String::from_utf8_lossy(&c.cli(&["run", "logs", &id]).stdout).to_string();
    assert!(
        logs.contains(&format!("$ {name} apply")),
        "the log names the real binary:\n{logs}"
    );
    let state = String::from_utf8_lossy(&c.cli(&["state", "pull", "real/gpu"]).stdout).to_string();
    assert!(
        state.contains("\"lineage\"") && state.contains("terraform_data"),
        "{state}"
    );

    let gone = c.submit(
        &example("gpu-pool"),
        "real/gpu",
        &["--destroy", "--var", "gpu_count=2"],
    );
    c.wait_state(&gone, &["awaiting_approval"], T).await;
    let out = c.cli(&["run", "approve", &gone, "--wait"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = c.wait_state(&gone, &["applied"], T).await;
    assert_eq!(r.summary.as_ref().map(|s| s.destroy), Some(3), "{r:?}");
    let state = String::from_utf8_lossy(&c.cli(&["state", "pull", "real/gpu"]).stdout).to_string();
    assert!(!state.contains("terraform_data"), "nothing left: {state}");
}

/// An apply that prints a marker and then waits a long time.
const SLOW: &str = r#"
resource "terraform_data" "slow" {
  input = "slow"

  provisioner "local-exec" {
    command = "echo REAL-CANCEL-MARKER; sleep 30; echo finished"
  }
}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_real_apply_cancelled_mid_way_ends_cancelled_with_state_saved_and_lock_released() {
    let Some(bin) = real_binary_or_skip("cancel mid-apply") else {
        return;
    };
    let c = real_cluster(
        &bin,
        AgentOpts {
            cancel_grace: Some("20s"),
            ..Default::default()
        },
    )
    .await;
    let dir = module(&c, "slow", SLOW);
    let id = c.submit(&dir, "real/cancel", &["--auto-approve"]);
    c.wait_state(&id, &["applying"], T).await;
    let (cc, cid) = (&c, id.clone());
    wait_for("the marker of the long local-exec", T, || {
        let cid = cid.clone();
        async move {
            logs(cc, &cid, false)
                .contains("(local-exec): REAL-CANCEL-MARKER")
                .then_some(())
        }
    })
    .await;
    let out = c.cli(&["run", "cancel", &id, "--reason", "real cancel", "--wait"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.wait_state(&id, &["cancelled"], T).await;

    let listed = state_list(&c, "real/cancel");
    let versions = listed["versions"].as_array().cloned().unwrap_or_default();
    assert!(
        !versions.is_empty(),
        "the interrupted apply saved state: {listed}"
    );
    assert!(listed["lock"].is_null(), "the lock is released: {listed}");
    let state =
        String::from_utf8_lossy(&c.cli(&["state", "pull", "real/cancel"]).stdout).to_string();
    assert!(state.contains("terraform_data"), "{state}");
    let text = logs(&c, &id, false);
    assert!(
        text.contains("Interrupt received"),
        "the log shows the interrupt:\n{text}"
    );
    assert!(
        !text.contains("(local-exec): finished"),
        "the command was stopped:\n{text}"
    );
}

const CANARY_DECLARED: &str = "real-canary-declared-5e1c9b";
const CANARY_MARKED: &str = "real-canary-marked-8a3f27";

/// A sensitive variable and one tofuflow marks sensitive, both echoed by `local-exec` through its
/// environment, and a sensitive output.
const SECRETS: &str = r#"
variable "declared" {
  type      = string
  sensitive = true
}

variable "marked" {
  type = string
}

resource "terraform_data" "echo" {
  input = "x"

  provisioner "local-exec" {
    command     = "echo DECLARED-IS $DECLARED"
    environment = { DECLARED = var.declared }
  }

  provisioner "local-exec" {
    command     = "echo MARKED-IS $MARKED"
    environment = { MARKED = var.marked }
  }
}

output "declared" {
  value     = var.declared
  sensitive = true
}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn real_binary_sensitive_variables_and_outputs_stay_out_of_logs() {
    let Some(bin) = real_binary_or_skip("sensitive values") else {
        return;
    };
    let c = real_cluster(&bin, AgentOpts::default()).await;
    let dir = module(&c, "secrets", SECRETS);
    let declared = format!("declared={CANARY_DECLARED}");
    let marked = format!("marked={CANARY_MARKED}");
    let id = c.submit(
        &dir,
        "real/secrets",
        &[
            "--auto-approve",
            "--var",
            &declared,
            "--sensitive-var",
            &marked,
        ],
    );
    c.wait_state(&id, &["applied"], T).await;

    let (text, raw) = (logs(&c, &id, false), logs(&c, &id, true));
    // The binary itself hides the output of a provisioner whose config is sensitive; the
    // value tofuflow marks sensitive is printed by the module and masked by the agent.
    assert!(
        text.contains("output suppressed due to sensitive value") && text.contains("MARKED-IS"),
        "the provisioners ran:\n{text}"
    );
    for (what, body) in [("run logs", &text), ("run logs --raw", &raw)] {
        for canary in [CANARY_DECLARED, CANARY_MARKED] {
            let hits: Vec<&str> = body.lines().filter(|l| l.contains(canary)).collect();
            assert!(hits.is_empty(), "{what} shows a sensitive value: {hits:?}");
        }
    }
    let show = String::from_utf8_lossy(&c.cli(&["run", "show", &id]).stdout).to_string();
    assert!(show.contains("declared = (sensitive)"), "{show}");
    assert!(
        !show.contains(CANARY_DECLARED) && !show.contains(CANARY_MARKED),
        "{show}"
    );
}

/// A resource replaced when `release` changes, whose destroy-time provisioner names the release
/// it tears down.
const RELEASE: &str = r#"
variable "release" {
  type = string
}

resource "terraform_data" "app" {
  input            = var.release
  triggers_replace = var.release

  provisioner "local-exec" {
    when    = destroy
    command = "echo TEARDOWN-OF-${self.output}"
  }
}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn real_binary_changed_variables_replace_and_run_the_destroy_provisioner() {
    let Some(bin) = real_binary_or_skip("destroy-time provisioner") else {
        return;
    };
    let c = real_cluster(&bin, AgentOpts::default()).await;
    let dir = module(&c, "release", RELEASE);
    let first = c.submit(
        &dir,
        "real/release",
        &["--auto-approve", "--var", "release=v1"],
    );
    c.wait_state(&first, &["applied"], T).await;
    assert!(!logs(&c, &first, false).contains("(local-exec): TEARDOWN-OF"));

    let second = c.submit(
        &dir,
        "real/release",
        &["--auto-approve", "--var", "release=v2"],
    );
    let r = c.wait_state(&second, &["applied"], T).await;
    let s = r.summary.as_ref().expect("a summary");
    assert_eq!((s.add, s.destroy), (1, 1), "a replacement: {r:?}");
    let text = logs(&c, &second, false);
    assert!(
        text.contains("(local-exec): TEARDOWN-OF-v1"),
        "the destroy provisioner's output is in the apply log:\n{text}"
    );
}
