//! Idle agents' heartbeats are written together once a second: an idle agent's last-seen time
//! and state (draining) still reach `agent list` within that second, and an idle agent revoked
//! meanwhile is told so at a heartbeat after the next write.

use std::time::Duration;
use tofuflow_e2e::{fake_agent, wait_for, AgentClient, Cluster, Db};
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

#[tokio::test(flavor = "multi_thread")]
async fn idle_heartbeats_are_written_together_on_sqlite() {
    idle_heartbeats_are_written_together(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_heartbeats_are_written_together_on_postgres() {
    idle_heartbeats_are_written_together(Db::Postgres).await;
}
