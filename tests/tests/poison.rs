//! Messages that cannot be used go to the dead-letter queue, the agent stays healthy, and a run
//! whose task message is poison (on its own pool's queue: only an agent of that pool may reject
//! it) fails with the reason; a pool without a queue fails its run.

use lapin::options::BasicPublishOptions;
use lapin::BasicProperties;
use std::time::Duration;
use tofuflow_e2e::{example, wait_for, AgentOpts, Cluster, Db};

const T: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn undecodable_message_is_dead_lettered_and_the_agent_keeps_working() {
    let mut c = Cluster::start_with(Db::Sqlite, &["default", "parked"], &[]).await;
    // A run whose task message is replaced by garbage on its own pool's queue (before any agent
    // serves that pool): the real message is taken off, the garbage claims to be it...
    let parked = c.submit(&example("gpu-pool"), "poison/parked", &["--pool", "parked"]);
    let r = c.run(&parked).await;
    assert_eq!(r.state, "queued");
    let task_id = {
        use lapin::options::{BasicAckOptions, BasicGetOptions};
        let ch = c.amqp().await;
        let real = wait_for("the run's real message", T, || {
            let ch = ch.clone();
            async move {
                ch.basic_get("tofuflow.pool.parked".into(), BasicGetOptions::default())
                    .await
                    .ok()
                    .flatten()
            }
        })
        .await;
        real.delivery.ack(BasicAckOptions::default()).await.unwrap();
        tofuflow_e2e::open_envelope(&real.delivery.data).0.task_id
    };
    // ...plus anonymous garbage on the default queue.
    let ch = c.amqp().await;
    for (pool, mid, body) in [
        (
            "parked",
            format!("{task_id}:1"),
            b"\xff\x00garbage".to_vec(),
        ),
        (
            "default",
            "junk".to_string(),
            b"not protobuf at all \xff".to_vec(),
        ),
    ] {
        ch.basic_publish(
            "tofuflow.tasks".into(),
            pool.into(),
            BasicPublishOptions::default(),
            &body,
            BasicProperties::default().with_message_id(mid.into()),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    let a = c
        .agent(AgentOpts {
            pools: vec!["default".into(), "parked".into()],
            ..Default::default()
        })
        .await;
    let cc = &c;
    wait_for("both messages in the dead-letter queue", T, || async move {
        (cc.queue_depth("tofuflow.dead").await == 2).then_some(())
    })
    .await;
    let r = c.wait_state(&parked, &["failed"], T).await;
    assert!(
        r.error.contains("could not use the task message") && r.error.contains("undecodable"),
        "{}",
        r.error
    );
    assert!(c.agents[a].alive(), "the agent did not crash");
    let ok = c.submit(&example("gpu-pool"), "poison/after", &["--plan-only"]);
    c.wait_state(&ok, &["planned"], T).await;
    assert_eq!(
        c.queue_depth("tofuflow.dead").await,
        2,
        "the dead-letter queue holds exactly the poison messages"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pool_without_a_queue_fails_its_run_with_the_reason() {
    let c = Cluster::start(Db::Sqlite).await;
    let id = c.submit(
        &example("gpu-pool"),
        "nowhere/x",
        &["--pool", "nobody-serves-this"],
    );
    let r = c.wait_state(&id, &["failed"], T).await;
    assert!(
        r.error
            .contains("no queue is bound for pool \"nobody-serves-this\""),
        "{}",
        r.error
    );
    assert!(
        r.error.contains("--pool nobody-serves-this"),
        "the error says what to do: {}",
        r.error
    );
}
