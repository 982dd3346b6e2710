//! The real binary: where Terraform or OpenTofu is installed (`TOFUFLOW_REAL_TOFU`, else
//! `/usr/local/bin/terraform`, else `tofu` or `terraform` on PATH), a run plans on one agent and
//! applies on another through the http backend, and a destroy removes what it made. Without one
//! the test says so loudly and checks nothing.

use std::path::PathBuf;
use std::time::Duration;
use tofuflow_e2e::{example, AgentOpts, Cluster, Db};

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

#[tokio::test(flavor = "multi_thread")]
async fn a_real_binary_plans_on_one_agent_applies_on_another_and_destroys() {
    let Some(bin) = real_binary() else {
        eprintln!("REAL-BINARY TEST SKIPPED: no Terraform or OpenTofu found (set TOFUFLOW_REAL_TOFU=/path/to/tofu)");
        return;
    };
    eprintln!("real-binary test: using {}", bin.display());
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
