//! Agents vanish (SIGKILL, as a reclaimed spot node would): a plan is re-dispatched once and the
//! dead attempt is fenced; an apply is never repeated automatically.

use std::collections::BTreeMap;
use std::time::Duration;
use tofuflow_e2e::{example, fake_agent, wait_for, AgentOpts, Cluster, Db};
use tofuflow_proto::v1;

const T: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn killed_agent_plan_is_redispatched_once_and_late_reports_are_rejected() {
    let mut c = Cluster::start(Db::Sqlite).await;
    let slow = BTreeMap::from([(
        "TOFU_DOUBLE_SLEEP_BEFORE".to_string(),
        "plan:60".to_string(),
    )]);
    let doomed = c
        .agent(AgentOpts {
            env: slow,
            ..Default::default()
        })
        .await;
    let id = c.submit(&example("gpu-pool"), "crash/plan", &[]);
    c.wait_state(&id, &["planning"], T).await;
    // Wait until tofu plan itself runs, then pull the plug.
    let cid = id.clone();
    let cc = &c;
    wait_for("tofu plan to start", T, || {
        let cid = cid.clone();
        async move { (cc.tofu_starts(&cid, "plan") == 1).then_some(()) }
    })
    .await;
    let killed_at = std::time::Instant::now();
    c.agents[doomed].kill();
    c.agent(AgentOpts::default()).await;
    let r = c.wait_state(&id, &["awaiting_approval"], T).await;
    let detected = killed_at.elapsed();
    assert_eq!(r.plan_attempts, 2, "exactly one re-dispatch");
    let requeue = r
        .transitions
        .iter()
        .find(|t| t.from_state == "planning" && t.to_state == "queued")
        .expect("re-queue recorded");
    assert!(
        requeue.reason.contains("re-dispatched as attempt 2"),
        "{}",
        requeue.reason
    );
    assert!(
        requeue.reason.contains(&c.agents[doomed].id),
        "the reason names the lost agent: {}",
        requeue.reason
    );
    assert!(
        detected < Duration::from_secs(15),
        "lease expiry (3s TTL) was noticed in {detected:?}"
    );

    // The dead attempt's reports arrive late: all refused.
    let dead = c
        .attempts(&id)
        .await
        .into_iter()
        .find(|a| a.phase == "plan" && a.attempt == 1)
        .expect("the first plan attempt");
    let (task_id, epoch) = (dead.task_id, dead.epoch);
    // (Reported through an agent identity of their own: the dead agent's is gone with it.)
    let (mut a, _) = fake_agent(&c, &["default"], "ghost", None).await.unwrap();
    let late = v1::EventBatch {
        task_id: task_id.clone(),
        attempt: 1,
        epoch: epoch as u64,
        events: vec![v1::Event {
            seq: 999,
            unix_ms: 1,
            stream: 1,
            line: "late line from the dead".into(),
        }],
        lease_token: "the dead attempt's".into(),
    };
    let e = a
        .report_events(tokio_stream::iter(vec![late]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    let done = v1::CompleteRequest {
        task_id,
        attempt: 1,
        epoch: epoch as u64,
        outcome: v1::Outcome::Failed as i32,
        lease_token: "the dead attempt's".into(),
        ..Default::default()
    };
    assert_eq!(
        a.complete(done).await.unwrap_err().code(),
        tonic::Code::FailedPrecondition
    );
    let out = c.cli(&["run", "logs", &id]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("late line from the dead"));
    assert_eq!(
        c.run(&id).await.state,
        "awaiting_approval",
        "late reports changed nothing"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_agent_apply_ends_interrupted_and_is_not_applied_again() {
    let mut c = Cluster::start(Db::Sqlite).await;
    let slow = BTreeMap::from([(
        "TOFU_DOUBLE_SLEEP_BEFORE".to_string(),
        "apply:60".to_string(),
    )]);
    let doomed = c
        .agent(AgentOpts {
            env: slow,
            ..Default::default()
        })
        .await;
    let id = c.submit(&example("gpu-pool"), "crash/apply", &["--auto-approve"]);
    c.wait_state(&id, &["applying"], T).await;
    let cid = id.clone();
    let cc = &c;
    wait_for("tofu apply to start", T, || {
        let cid = cid.clone();
        async move { (cc.tofu_starts(&cid, "apply") == 1).then_some(()) }
    })
    .await;
    c.agents[doomed].kill();
    let survivor = c.agent(AgentOpts::default()).await;
    let r = c.wait_state(&id, &["interrupted"], T).await;
    assert!(r.error.contains("not retried"), "{}", r.error);
    // The survivor is alive and consuming: it completes another run...
    let other = c.submit(&example("gpu-pool"), "crash/other", &["--auto-approve"]);
    let o = c.wait_state(&other, &["applied"], T).await;
    assert_eq!(o.transitions[1].actor, c.agents[survivor].id);
    // ...yet never touched the interrupted apply.
    assert_eq!(c.tofu_starts(&id, "apply"), 1, "the apply ran exactly once");
    assert_eq!(c.run(&id).await.state, "interrupted");
}
