//! Cutting the agent ↔ coordinator link (a TCP proxy the test controls): a short cut loses and
//! repeats nothing (reports are buffered and sent in order); a cut longer than the lease makes
//! the agent stop its task itself, and the coordinator re-dispatches the plan within 3 heartbeats.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tofuflow_e2e::{example, wait_for, AgentOpts, Cluster, Db, Proxy};

const T: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn a_short_cut_loses_and_repeats_nothing() {
    let mut c = Cluster::start(Db::Sqlite).await;
    let proxy = Proxy::start(format!("127.0.0.1:{}", c.grpc_port));
    let slow = BTreeMap::from([("TOFU_DOUBLE_SLEEP_BEFORE".to_string(), "plan:3".to_string())]);
    c.agent(AgentOpts {
        env: slow,
        coordinator_url: Some(format!("http://127.0.0.1:{}", proxy.port)),
        ..Default::default()
    })
    .await;
    let id = c.submit(&example("gpu-pool"), "cut/short", &[]);
    let (cc, cid) = (&c, id.clone());
    wait_for("tofu plan to start", T, || {
        let cid = cid.clone();
        async move { (cc.tofu_starts(&cid, "plan") == 1).then_some(()) }
    })
    .await;
    proxy.cut();
    // The outage itself (shorter than the 3 s lease), not a wait for anything.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    proxy.restore();
    let r = c.wait_state(&id, &["awaiting_approval"], T).await;
    assert_eq!(
        r.plan_attempts, 1,
        "the lease survived a cut shorter than its TTL"
    );
    let out = c.cli(&["run", "logs", &id, "-o", "json"]);
    let seqs: Vec<u64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert!(seqs.len() > 10, "{seqs:?}");
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "every line once, in order"
    );
    assert!(
        String::from_utf8_lossy(&c.cli(&["run", "logs", &id]).stdout)
            .contains("Plan: 3 to add, 0 to change, 0 to destroy.")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cut_longer_than_the_lease_stops_the_task_and_redispatches_within_three_heartbeats() {
    let mut c = Cluster::start(Db::Sqlite).await;
    let proxy = Proxy::start(format!("127.0.0.1:{}", c.grpc_port));
    let slow = BTreeMap::from([(
        "TOFU_DOUBLE_SLEEP_BEFORE".to_string(),
        "plan:60".to_string(),
    )]);
    let cut_off = c
        .agent(AgentOpts {
            env: slow,
            coordinator_url: Some(format!("http://127.0.0.1:{}", proxy.port)),
            ..Default::default()
        })
        .await;
    let id = c.submit(&example("gpu-pool"), "cut/long", &[]);
    {
        let (cc, cid) = (&c, id.clone());
        wait_for("tofu plan to start behind the proxy", T, || {
            let cid = cid.clone();
            async move { (cc.tofu_starts(&cid, "plan") == 1).then_some(()) }
        })
        .await;
    }
    let cut_at_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let cut_at = Instant::now();
    proxy.cut();
    c.agent(AgentOpts::default()).await;
    let r = c.wait_state(&id, &["awaiting_approval"], T).await;
    assert_eq!(r.plan_attempts, 2);
    let requeue = r
        .transitions
        .iter()
        .find(|t| t.reason.contains("re-dispatched as attempt 2"))
        .expect("re-dispatch recorded");
    let detected_ms = requeue.unix_ms - cut_at_ms;
    // 3 heartbeats of 1 s = the 3 s lease, plus one 200 ms reap interval and scheduling slack.
    assert!(
        detected_ms <= 4_000,
        "detected {detected_ms} ms after the cut"
    );
    assert!(requeue.reason.contains(&c.agents[cut_off].id));
    // The cut-off agent stopped its own tofu rather than run on unfenced.
    let cc = &c;
    wait_for("the cut-off agent to stop its tofu", T, || {
        let cid = id.clone();
        async move {
            cc.tofu_trace()
                .iter()
                .any(|e| {
                    e["event"] == "exit"
                        && e["args"][0] == "plan"
                        && e["code"] == 1
                        && e["run"] == cid.as_str()
                        && e["agent"] == "agent-0"
                })
                .then_some(())
        }
    })
    .await;
    let stopped_after = cut_at.elapsed();
    proxy.restore();
    eprintln!("partition: lease expiry detected {detected_ms} ms after the cut; the cut-off agent stopped its task within {:.1} s", stopped_after.as_secs_f64());
    assert_eq!(
        c.run(&id).await.state,
        "awaiting_approval",
        "the cut-off agent's late reports changed nothing"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cut_between_agent_and_broker_heals_by_itself() {
    let mut c = Cluster::start(Db::Sqlite).await;
    let proxy = Proxy::start("127.0.0.1:5672".to_string());
    let via_proxy = c
        .amqp_url
        .replace("127.0.0.1:5672", &format!("127.0.0.1:{}", proxy.port));
    let a = c
        .agent(AgentOpts {
            amqp_url: Some(via_proxy),
            ..Default::default()
        })
        .await;
    let gpu = example("gpu-pool");
    let before = c.submit(&gpu, "amqp/before", &["--plan-only"]);
    c.wait_state(&before, &["planned"], T).await;
    proxy.cut();
    // Submitted while the agent cannot reach the broker: it waits in its queue.
    let during = c.submit(&gpu, "amqp/during", &["--plan-only"]);
    tokio::time::sleep(Duration::from_secs(2)).await; // the outage itself
    assert_eq!(c.run(&during).await.state, "queued");
    proxy.restore();
    let r = c.wait_state(&during, &["planned"], T).await;
    assert_eq!(
        r.transitions[1].actor, c.agents[a].id,
        "the same agent, reconnected by itself"
    );
    assert_eq!(r.plan_attempts, 1);
    assert!(c.agents[a].alive());
}
