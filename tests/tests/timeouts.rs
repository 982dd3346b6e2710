//! No run is stuck without an owner: a task nobody claims and a plan nobody approves both end
//! `expired`, with the reason.

use std::time::Duration;
use tofuflow_e2e::{example, AgentOpts, Cluster, Db};

#[tokio::test(flavor = "multi_thread")]
async fn unclaimed_and_unapproved_runs_expire_with_the_reason() {
    let mut c = Cluster::start_with(
        Db::Sqlite,
        &["default", "nobody"],
        &["--queue-timeout", "2s", "--approval-timeout", "2s"],
    )
    .await;
    c.agent(AgentOpts::default()).await;
    let gpu = example("gpu-pool");
    let unclaimed = c.submit(&gpu, "to/unclaimed", &["--pool", "nobody"]);
    let unapproved = c.submit(&gpu, "to/unapproved", &[]);
    let r = c
        .wait_state(&unclaimed, &["expired"], Duration::from_secs(30))
        .await;
    assert!(
        r.error
            .contains("no agent of pool \"nobody\" claimed the task"),
        "{}",
        r.error
    );
    let r = c
        .wait_state(&unapproved, &["expired"], Duration::from_secs(30))
        .await;
    assert!(r.error.contains("nobody approved the plan"), "{}", r.error);
    assert_eq!(c.tofu_starts(&unapproved, "apply"), 0);
    // The expired task's message may still be in its queue: an agent that comes later drops it.
    let late = c
        .agent(AgentOpts {
            pools: vec!["nobody".into()],
            ..Default::default()
        })
        .await;
    let other = c.submit(&gpu, "to/after", &["--pool", "nobody", "--plan-only"]);
    let r = c
        .wait_state(&other, &["planned"], Duration::from_secs(30))
        .await;
    assert_eq!(r.transitions[1].actor, c.agents[late].id);
    assert_eq!(
        c.run(&unclaimed).await.state,
        "expired",
        "the late agent did not run the expired task"
    );
    assert_eq!(c.tofu_starts(&unclaimed, "plan"), 0);
}
