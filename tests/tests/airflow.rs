//! The Airflow provider (`integrations/airflow`) against a real cluster: starts RabbitMQ's
//! vhost, SQLite, the coordinator and one agent (the stand-in `tofu`), makes the Airflow
//! connection's user (operator and approver), then runs the provider's integration suite
//! (`integrations/airflow/tests/integration`) with a real Airflow: the example DAGs and the
//! test DAGs run with `airflow dags test`. It checks plan and apply as two tasks, the
//! deferrable path through the trigger, a failing run failing its task with tofuflow's reason,
//! a timed-out or killed task cancelling its run, the DAG tags on every run (through the API),
//! that a credential taken from an Airflow connection shows in no log and no XCom, and
//! `TofuflowWorkflowOperator`: a workflow passing an output between two stacks (the targets in
//! XCom), a failing workflow failing its task with the reason and the failed target, a
//! timed-out workflow task cancelling its workflow run, and a retry after a dead worker
//! following the same workflow run.
//!
//! The suite needs a Python with Airflow: `TOFUFLOW_AIRFLOW_PYTHON` names it (`scripts/test`
//! makes the virtualenv and sets it). Without it the test fails, saying how to get one;
//! `TOFUFLOW_SKIP_AIRFLOW=1` skips it on purpose, loudly.

use std::time::Instant;
use tofuflow_e2e::{repo_root, AgentOpts, Cluster, Db};

#[tokio::test(flavor = "multi_thread")]
async fn airflow_dags_plan_apply_fail_cancel_and_keep_secrets_through_the_provider() {
    if std::env::var("TOFUFLOW_SKIP_AIRFLOW").as_deref() == Ok("1") {
        eprintln!("\n=== AIRFLOW TESTS SKIPPED ON PURPOSE (TOFUFLOW_SKIP_AIRFLOW=1) ===\n");
        return;
    }
    let python = std::env::var_os("TOFUFLOW_AIRFLOW_PYTHON").unwrap_or_else(|| {
        panic!(
            "TOFUFLOW_AIRFLOW_PYTHON is not set: the Airflow provider's tests cannot run. \
             scripts/test makes the virtualenv (~/.cache/tofuflow/airflow-venv) and sets it; \
             or set it to a python with integrations/airflow/requirements-test.txt installed; \
             or skip on purpose with TOFUFLOW_SKIP_AIRFLOW=1"
        )
    });
    // With a state key: a run's own environment (env_from_connections) is sealed with it.
    let mut c = Cluster::builder(Db::Sqlite)
        .coordinator_args(&[
            "--state-key",
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        ])
        .start()
        .await;
    c.agent(AgentOpts::default()).await;
    c.user_token("airflow", "operator").await;
    let token = c.user_token("airflow", "approver").await;
    let suite = repo_root().join("integrations/airflow/tests/integration");
    // A pytest `-k` expression (`"gpu_env or killed"`) for working on some cases only.
    let only = std::env::var("TOFUFLOW_AIRFLOW_ONLY").unwrap_or_default();
    let started = Instant::now();
    let status = std::process::Command::new(python)
        .args(["-m", "pytest", "-p", "no:cacheprovider", "-v", "-s"])
        .args(["-k", &only])
        .arg(&suite)
        .env("TOFUFLOW_URL", c.http_url())
        .env("TOFUFLOW_AIRFLOW_TOKEN", &token)
        .env("TOFUFLOW_ADMIN_TOKEN", c.token.as_deref().unwrap())
        .status()
        .expect("start pytest");
    eprintln!(
        "airflow suite: {status} in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        status.success(),
        "the Airflow provider's suite failed: see above"
    );
}
