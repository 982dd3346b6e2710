//! Every task message is signed by the coordinator; agents verify it before claiming. A
//! tampered copy of a real message, an expired one and a replay of one that already ran end in
//! the dead-letter queue with the reason, never run, and leave their runs' outcome alone; a task
//! whose message expired unclaimed is signed again and runs.

use lapin::options::{BasicAckOptions, BasicGetOptions, BasicPublishOptions};
use lapin::BasicProperties;
use prost::Message;
use std::collections::BTreeMap;
use std::time::Duration;
use tofuflow_e2e::{example, metric, open_envelope, wait_for, AgentOpts, Cluster, Db};

const T: Duration = Duration::from_secs(90);
/// Short enough to see a message expire in the test, long enough for a plan to run first.
const TTL: &str = "15s";
const STATE_KEY: &str = "c2lnbmVkLXRhc2tzLXN0YXRlLWtleS0zMi1ieXRlcyE=";

/// Takes the next message off a pool's queue (the test now holds it): body and message id.
async fn take(c: &Cluster, pool: &str) -> (Vec<u8>, String) {
    let ch = c.amqp().await;
    let m = wait_for("a task message", T, || {
        let ch = ch.clone();
        let q = format!("tofuflow.pool.{pool}");
        async move {
            ch.basic_get(q.as_str().into(), BasicGetOptions::default())
                .await
                .ok()
                .flatten()
        }
    })
    .await;
    m.delivery.ack(BasicAckOptions::default()).await.unwrap();
    let id = m.delivery.properties.message_id().clone().unwrap();
    (m.delivery.data.clone(), id.to_string())
}

/// Publishes a message body onto a pool's queue, as anyone with access to the broker could.
async fn publish(c: &Cluster, pool: &str, body: &[u8], message_id: &str) {
    c.amqp()
        .await
        .basic_publish(
            "tofuflow.tasks".into(),
            pool.into(),
            BasicPublishOptions::default(),
            body,
            BasicProperties::default().with_message_id(message_id.into()),
        )
        .await
        .unwrap()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_expired_and_replayed_messages_are_dead_lettered_and_never_run() {
    let mut c = Cluster::start_with(
        Db::Sqlite,
        &["default", "parked"],
        &["--envelope-ttl", TTL, "--state-key", STATE_KEY],
    )
    .await;
    // A run whose message the test takes and holds until it has expired...
    let parked = c.submit(&example("gpu-pool"), "signed/parked", &["--pool", "parked"]);
    let (stale, stale_id) = take(&c, "parked").await;
    // ...and one whose real message goes back on the queue, with a tampered copy beside it.
    let run = c.submit(&example("gpu-pool"), "signed/run", &["--plan-only"]);
    let (real, real_id) = take(&c, "default").await;
    publish(&c, "default", &real, &real_id).await;
    let (mut env, mut signed) = open_envelope(&real);
    env.workspace = "signed/someone-elses".into();
    signed.envelope = env.encode_to_vec();
    publish(&c, "default", &signed.encode_to_vec(), &real_id).await;

    let a = c
        .agent(AgentOpts {
            pools: vec!["default".into(), "parked".into()],
            ..Default::default()
        })
        .await;
    c.wait_state(&run, &["planned"], T).await;
    // A replay of the message that just ran (well within its expiry).
    publish(&c, "default", &real, &real_id).await;
    // The parked run is not lost: its message expired unclaimed, so it was signed again.
    c.wait_state(&parked, &["awaiting_approval"], T).await;
    let stale_env = open_envelope(&stale).1;
    assert!(
        stale_env.expires_unix_ms < now_ms(),
        "the held message has expired now"
    );
    publish(&c, "parked", &stale, &stale_id).await;

    let cc = &c;
    let dead = wait_for("three refused messages dead", T, || async move {
        Some(cc.dead_messages().await).filter(|d| d.len() == 3)
    })
    .await;
    let reasons: Vec<&str> = dead.iter().map(|d| d.reason.as_str()).collect();
    assert_eq!(reasons, ["expired", "replayed", "tampered"], "{dead:?}");
    for d in &dead {
        let want = if d.reason == "expired" {
            &stale_id
        } else {
            &real_id
        };
        assert_eq!(&d.message_id, want, "{d:?}: the message id is kept");
    }
    assert!(dead[0].detail.contains("expired"), "{dead:?}");
    assert!(dead[1].detail.contains("already claimed"), "{dead:?}");
    assert!(
        dead[2].detail.contains("signature does not verify"),
        "{dead:?}"
    );

    // Nothing ran for them: each run planned once, with one claim, and is as it was.
    for (id, state) in [(&run, "planned"), (&parked, "awaiting_approval")] {
        let r = c.run(id).await;
        assert_eq!(r.state, state, "{}", r.error);
        assert_eq!(c.tofu_starts(id, "plan"), 1, "tofu planned run {id} once");
        assert_eq!(c.attempts(id).await.len(), 1, "run {id} was claimed once");
    }
    assert!(c.agents[a].alive());
    let want = BTreeMap::from([("tampered", 1.0), ("expired", 1.0), ("replayed", 1.0)]);
    wait_for("the refusals counted in /metrics", T, || async {
        want.iter()
            .all(|(r, n)| {
                metric(
                    &c,
                    &format!("tofuflow_envelopes_rejected_total{{reason=\"{r}\"}}"),
                ) == Some(*n)
            })
            .then_some(())
    })
    .await;
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_key_rotation_agents_fetch_the_new_key_and_runs_go_on() {
    let mut c = Cluster::start_with(
        Db::Postgres,
        &["default"],
        &["--signing-key-rotation", "1s", "--state-key", STATE_KEY],
    )
    .await;
    c.agent(AgentOpts::default()).await;
    let first = c.submit(&example("gpu-pool"), "rotate/a", &["--plan-only"]);
    c.wait_state(&first, &["planned"], T).await;
    let log = c.dir.join("coordinator.log");
    let rotated = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches("is now the active one")
            .count()
    };
    let before = rotated();
    wait_for("a key rotation", T, || async {
        (rotated() > before).then_some(())
    })
    .await;
    let second = c.submit(&example("gpu-pool"), "rotate/b", &["--plan-only"]);
    c.wait_state(&second, &["planned"], T).await;
    let (a, b) = (c.attempts(&first).await, c.attempts(&second).await);
    assert_eq!((a.len(), b.len()), (1, 1), "each claimed once");
    let agent_log = std::fs::read_to_string(c.dir.join("agent-0.log")).unwrap();
    assert!(
        agent_log.matches("signing keys fetched").count() >= 2,
        "the agent fetched the keys again for the new key"
    );
    assert!(c.dead_messages().await.is_empty(), "nothing refused");
}
