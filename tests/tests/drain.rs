//! SIGTERM on an agent: it stops taking tasks, finishes the one it runs within the grace
//! period, exits cleanly, and tasks it never started stay queued for another agent.

use std::collections::BTreeMap;
use std::time::Duration;
use tofuflow_e2e::{example, wait_for, AgentOpts, Cluster, Db};

const T: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_finishes_the_running_task_and_leaves_the_rest_queued() {
    let mut c = Cluster::start(Db::Sqlite).await;
    let slow = BTreeMap::from([("TOFU_DOUBLE_SLEEP_BEFORE".to_string(), "plan:2".to_string())]);
    let a = c
        .agent(AgentOpts {
            env: slow,
            drain_grace: Some("30s"),
            ..Default::default()
        })
        .await;
    let gpu = example("gpu-pool");
    let first = c.submit(&gpu, "drain/first", &["--plan-only"]);
    c.wait_state(&first, &["planning"], T).await;
    let second = c.submit(&gpu, "drain/second", &["--plan-only"]);
    let cc = &c;
    let fid = first.clone();
    wait_for("tofu plan of the first run", T, || {
        let fid = fid.clone();
        async move { (cc.tofu_starts(&fid, "plan") == 1).then_some(()) }
    })
    .await;
    c.agents[a].terminate();
    let status = c.agents[a]
        .wait_exit(Duration::from_secs(30))
        .expect("the agent exits within its drain grace");
    assert!(status.success(), "clean exit: {status:?}");
    assert_eq!(
        c.run(&first).await.state,
        "planned",
        "the running task was finished, not abandoned"
    );
    assert_eq!(
        c.run(&second).await.state,
        "queued",
        "the unstarted task was not taken"
    );
    assert_eq!(
        c.queue_depth("tofuflow.pool.default").await,
        1,
        "its message is back in the queue"
    );
    let b = c.agent(AgentOpts::default()).await;
    let r = c.wait_state(&second, &["planned"], T).await;
    assert_eq!(r.transitions[1].actor, c.agents[b].id);
    assert_eq!(r.plan_attempts, 1);
}
