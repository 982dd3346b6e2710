//! The coordinator restarts mid-run (SIGKILL, then start on the same database): the run still
//! completes and no task is lost, on SQLite and on PostgreSQL.

use std::collections::BTreeMap;
use std::time::Duration;
use tofuflow_e2e::{example, AgentOpts, Cluster, Db};

const T: Duration = Duration::from_secs(90);

async fn restart_mid_run(db: Db) {
    let mut c = Cluster::start(db).await;
    let slow = BTreeMap::from([(
        "TOFU_DOUBLE_SLEEP_BEFORE".to_string(),
        "plan:1.5,apply:1.5".to_string(),
    )]);
    c.agent(AgentOpts {
        env: slow,
        ..Default::default()
    })
    .await;
    let gpu = example("gpu-pool");
    let a = c.submit(&gpu, "restart/a", &["--auto-approve"]);
    c.wait_state(&a, &["planning"], T).await;
    // Submitted while the coordinator is up; lands in the outbox.
    let b = c.submit(&gpu, "restart/b", &["--auto-approve"]);
    c.restart_coordinator().await;
    let ra = c.wait_state(&a, &["applied"], T).await;
    let rb = c.wait_state(&b, &["applied"], T).await;
    for (id, r) in [(&a, &ra), (&b, &rb)] {
        assert_eq!(r.plan_attempts, 1, "{db:?}: run {id} planned once");
        assert_eq!(
            c.tofu_starts(id, "apply"),
            1,
            "{db:?}: run {id} applied once"
        );
    }
    let m = tofuflow_e2e::http_get(&format!("{}/metrics", c.http_url()))
        .unwrap()
        .1;
    assert!(
        m.contains("tofuflow_outbox_unsent 0"),
        "{db:?}: nothing stranded in the outbox:\n{m}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn coordinator_restart_mid_run_loses_nothing_on_sqlite() {
    restart_mid_run(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn coordinator_restart_mid_run_loses_nothing_on_postgres() {
    restart_mid_run(Db::Postgres).await;
}
