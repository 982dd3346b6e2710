//! A three-node RabbitMQ cluster started by the test (quorum queues replicated on all three); the
//! coordinator and the agent are given every node's URL. The node leading the pool's queue is
//! stopped while a run plans: the run still ends applied (one plan, one apply), and a run
//! submitted after the stop is dispatched once the publisher and the agent have moved to live
//! nodes and the queue has a new leader. Prints how long dispatch took to resume.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tofuflow_e2e::{example, wait_for, AgentOpts, Cluster, Db, RabbitCluster};

const T: Duration = Duration::from_secs(120);
const QUEUE: &str = "tofuflow.pool.default";

async fn plan_started(c: &Cluster, run: &str) {
    wait_for(&format!("tofu plan of {run} to start"), T, || {
        let n = c.tofu_starts(run, "plan");
        async move { (n >= 1).then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_completes_when_the_node_leading_its_pool_queue_stops() {
    let mut rmq = RabbitCluster::start(3);
    let mut c = Cluster::builder(Db::Postgres)
        .amqp_url(&rmq.amqp_urls("%2f"))
        .start()
        .await;
    // Two slots: the run submitted after the stop does not wait for the first one's plan.
    c.agent(AgentOpts {
        concurrency: 2,
        env: BTreeMap::from([("TOFU_DOUBLE_SLEEP_BEFORE".into(), "plan:3".into())]),
        ..Default::default()
    })
    .await;
    let leader = wait_for("the pool queue to have a leader", T, || {
        let l = rmq.leader_of(QUEUE);
        async move { l }
    })
    .await;
    // Both clients connect to the first node of their list, and a quorum queue's first leader
    // is the node it was declared through: stopping it cuts the publisher's and the agent's
    // connections too, so they must move to another node.
    assert_eq!(
        leader, rmq.nodes[0].name,
        "the queue was declared on node 1"
    );
    let a = c.submit(&example("gpu-pool"), "rmq/a", &["--auto-approve"]);
    plan_started(&c, &a).await;

    let stop_issued = Instant::now();
    rmq.stop_node(&leader);
    let stopped = Instant::now();
    let b = c.submit(&example("gpu-pool"), "rmq/b", &["--auto-approve"]);
    plan_started(&c, &b).await;
    let resumed = (stop_issued.elapsed(), stopped.elapsed());
    let log = std::fs::read_to_string(c.dir.join("coordinator.log")).unwrap();
    assert!(
        log.matches("outbox publisher connected").count() >= 2,
        "the publisher reconnected to another node"
    );
    let agent_log = std::fs::read_to_string(c.dir.join("agent-0.log")).unwrap();
    assert!(
        agent_log.matches("connected to RabbitMQ").count() >= 2,
        "the agent reconnected to another node"
    );
    let new_leader = rmq.leader_of(QUEUE).unwrap_or_default();
    assert_ne!(new_leader, leader, "the queue has a new leader");

    for run in [&a, &b] {
        let r = c.wait_state(run, &["applied"], T).await;
        assert_eq!(r.state, "applied");
        assert_eq!(c.tofu_starts(run, "plan"), 1, "{run} planned once");
        assert_eq!(c.tofu_starts(run, "apply"), 1, "{run} applied once");
    }
    eprintln!(
        "RabbitMQ leader {leader} stopped (took {:.2}s); new leader {new_leader}; dispatch resumed \
         {:.2}s after the stop was issued, {:.2}s after the node was down",
        (stopped - stop_issued).as_secs_f64(),
        resumed.0.as_secs_f64(),
        resumed.1.as_secs_f64()
    );
}
