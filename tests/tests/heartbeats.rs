//! Idle agents' heartbeats are written together once a second: an idle agent's last-seen time
//! and state (draining) still reach `agent list` within that second, and an idle agent revoked
//! meanwhile is told so at a heartbeat after the next write. Heartbeats holding leases share
//! transactions with those that arrive with them (the group commit): each renews its own lease,
//! and one presenting a wrong lease secret is told its lease is lost without costing the others
//! of its group theirs.

use std::time::Duration;
use tofuflow_e2e::{claim_next, fake_agent, wait_for, AgentClient, Claimed, Cluster, Db};
use tofuflow_proto::v1;

async fn beat(a: &mut AgentClient, id: &str, draining: bool) -> v1::HeartbeatResponse {
    a.heartbeat(v1::HeartbeatRequest {
        protocol_version: tofuflow_proto::PROTOCOL_VERSION,
        agent_id: id.to_string(),
        draining,
        free_slots: 1,
        ..Default::default()
    })
    .await
    .expect("a heartbeat is answered")
    .into_inner()
}

async fn listed(c: &Cluster, id: &str) -> v1::Agent {
    let mut client = c.client().await;
    let agents = client
        .list_agents(v1::ListAgentsRequest {})
        .await
        .unwrap()
        .into_inner()
        .agents;
    agents
        .into_iter()
        .find(|a| a.id == id)
        .expect("the agent is listed")
}

async fn idle_heartbeats_are_written_together(db: Db) {
    let c = Cluster::start(db).await;
    let (mut a, id) = fake_agent(&c, &["default"], "idle", None).await.unwrap();
    let registered = listed(&c, &id).await;
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let answer = beat(&mut a, &id, true).await;
    assert!(!answer.revoked);
    let seen = wait_for(
        "the idle heartbeat written",
        Duration::from_secs(5),
        || async {
            let now = listed(&c, &id).await;
            (now.last_seen_unix_ms >= t0 && now.state == "draining").then_some(now)
        },
    )
    .await;
    assert!(
        seen.last_seen_unix_ms > registered.last_seen_unix_ms,
        "{db:?}"
    );

    let mut admin = c.client().await;
    admin
        .revoke_agent(v1::RevokeAgentRequest {
            agent_id: id.clone(),
        })
        .await
        .unwrap();
    let told = wait_for(
        "the revoked idle agent told so",
        Duration::from_secs(10),
        || {
            let (mut a, id) = (a.clone(), id.clone());
            async move { beat(&mut a, &id, false).await.revoked.then_some(()) }
        },
    );
    told.await;
    assert_eq!(
        listed(&c, &id).await.state,
        "revoked",
        "{db:?}: not written back as active"
    );
}

async fn leased_heartbeats_are_grouped_and_a_wrong_lease_is_lost_alone(db: Db) {
    let c = Cluster::start(db).await;
    let bundle = c.upload_bundle(&tofuflow_e2e::example("gpu-pool"), "hb/warm-up");
    let mut client = c.client().await;
    for k in 0..16 {
        client
            .submit_run(v1::SubmitRunRequest {
                workspace: format!("hb/lease-{k}"),
                bundle_digest: bundle.clone(),
                pool: "default".into(),
                kind: v1::RunKind::PlanOnly as i32,
                variables: [("region".to_string(), "eu-west-1".to_string())].into(),
                ..Default::default()
            })
            .await
            .expect("submit");
    }
    // Each round, all 16 agents beat at once: their heartbeats arrive together.
    let together = std::sync::Arc::new(tokio::sync::Barrier::new(16));
    let mut beats = Vec::new();
    for k in 0..16 {
        let task = claim_next(&c, "default", &format!("hb-agent-{k}")).await;
        let together = together.clone();
        beats.push(tokio::spawn(async move {
            // Agent 0 presents a wrong secret: its lease is lost, every time.
            let secret = match k {
                0 => "not this lease's secret".to_string(),
                _ => task.lease_token.clone(),
            };
            let lost: Vec<bool> = beats_lost(&task, &secret, &together).await;
            (k, lost)
        }));
    }
    for b in beats {
        let (k, lost) = b.await.unwrap();
        let expected = k == 0;
        assert!(
            lost.iter().all(|l| *l == expected),
            "{db:?}: agent {k}'s lease lost {lost:?} (wrong secret: {expected})"
        );
    }
    let beats = tofuflow_e2e::metric(&c, "tofuflow_heartbeat_group_sum").unwrap_or(0.0);
    let groups = tofuflow_e2e::metric(&c, "tofuflow_heartbeat_group_count").unwrap_or(0.0);
    assert!(
        beats > groups,
        "{db:?}: no group held more than one heartbeat ({beats} in {groups} groups)"
    );
}

/// 20 heartbeats holding the lease, each when every agent is ready for its next: whether each
/// was told it is lost.
async fn beats_lost(task: &Claimed, secret: &str, together: &tokio::sync::Barrier) -> Vec<bool> {
    let mut lost = Vec::new();
    for _ in 0..20 {
        together.wait().await;
        let r = task.heartbeat_with(secret).await;
        lost.push(r.lost_task_ids.contains(&task.spec.task_id));
    }
    lost
}

#[tokio::test(flavor = "multi_thread")]
async fn leased_heartbeats_are_grouped_and_a_wrong_lease_is_lost_alone_on_sqlite() {
    leased_heartbeats_are_grouped_and_a_wrong_lease_is_lost_alone(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn leased_heartbeats_are_grouped_and_a_wrong_lease_is_lost_alone_on_postgres() {
    leased_heartbeats_are_grouped_and_a_wrong_lease_is_lost_alone(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_heartbeats_are_written_together_on_sqlite() {
    idle_heartbeats_are_written_together(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_heartbeats_are_written_together_on_postgres() {
    idle_heartbeats_are_written_together(Db::Postgres).await;
}
