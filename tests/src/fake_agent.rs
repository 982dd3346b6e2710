//! An agent that is only a gRPC client: registers, claims tasks off a queue and completes them
//! by hand, to drive the agent API where a real agent would not misbehave.

use crate::{wait_for, Cluster};
use std::time::Duration;
use tofuflow_proto::v1;

/// An agent-API client that carries an agent's identity (and the cluster's agent token).
pub type AgentClient = v1::agent_service_client::AgentServiceClient<
    tonic::service::interceptor::InterceptedService<
        tonic::transport::Channel,
        tofuflow_proto::auth::Bearer,
    >,
>;

/// Registers an agent that is only this client (no process), for `pools`, with `token` (or the
/// cluster's agent token): returns a client carrying its identity, and its id.
pub async fn fake_agent(
    c: &Cluster,
    pools: &[&str],
    name: &str,
    token: Option<&str>,
) -> Result<(AgentClient, String), tonic::Status> {
    let chan = tonic::transport::Endpoint::from_shared(c.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let pool_names: Vec<String> = pools.iter().map(|p| p.to_string()).collect();
    let credential = match token {
        Some(t) => Some(t.to_string()),
        None => c.agent_credential(&pool_names).await,
    };
    let bearer = tofuflow_proto::auth::Bearer::new(credential.as_deref()).unwrap();
    let mut a = v1::agent_service_client::AgentServiceClient::with_interceptor(
        chan.clone(),
        bearer.clone(),
    );
    let reg = a
        .register(v1::RegisterRequest {
            protocol_version: tofuflow_proto::PROTOCOL_VERSION,
            name: name.into(),
            pools: pools.iter().map(|p| p.to_string()).collect(),
            capacity: 1,
            ..Default::default()
        })
        .await?
        .into_inner();
    let me = bearer.with_agent(&reg.agent_id, &reg.agent_secret).unwrap();
    Ok((
        v1::agent_service_client::AgentServiceClient::with_interceptor(chan, me),
        reg.agent_id,
    ))
}

/// The task envelope inside a task message body (a `SignedEnvelope`), and the signed envelope
/// itself (its id is what a claim presents). Does not check the signature: agents do.
pub fn open_envelope(body: &[u8]) -> (v1::TaskEnvelope, v1::SignedEnvelope) {
    use prost::Message;
    let signed = v1::SignedEnvelope::decode(body).expect("a SignedEnvelope");
    let env = v1::TaskEnvelope::decode(signed.envelope.as_slice()).expect("a TaskEnvelope");
    (env, signed)
}

/// A task claimed by [`claim_next`]: its spec (with the state-backend credential), the lease,
/// and the fake agent holding it.
pub struct Claimed {
    pub spec: v1::TaskSpec,
    pub epoch: u64,
    pub lease_token: String,
    pub agent_id: String,
    pub client: AgentClient,
}

/// Takes the next task message off a pool's queue (acked, so no agent gets it): its envelope
/// and the signed envelope.
pub async fn next_task_message(c: &Cluster, pool: &str) -> (v1::TaskEnvelope, v1::SignedEnvelope) {
    use lapin::options::{BasicAckOptions, BasicGetOptions};
    let ch = c.amqp().await;
    let d = wait_for("a task message", Duration::from_secs(30), || {
        let ch = ch.clone();
        async move {
            ch.basic_get(
                format!("tofuflow.pool.{pool}").as_str().into(),
                BasicGetOptions::default(),
            )
            .await
            .ok()
            .flatten()
        }
    })
    .await;
    let opened = open_envelope(&d.delivery.data);
    d.delivery.ack(BasicAckOptions::default()).await.unwrap();
    opened
}

/// Takes the next task off a pool's queue and claims it, as an agent would (without running
/// anything).
pub async fn claim_next(c: &Cluster, pool: &str, agent_name: &str) -> Claimed {
    let (env, signed) = next_task_message(c, pool).await;
    let (mut a, agent_id) = fake_agent(c, &[pool], agent_name, None)
        .await
        .expect("register");
    let r = a
        .claim(v1::ClaimRequest {
            agent_id: agent_id.clone(),
            task_id: env.task_id,
            attempt: env.attempt,
            envelope_id: signed.envelope_id,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.granted, "claim refused: {}", r.reason);
    Claimed {
        spec: r.spec.unwrap(),
        epoch: r.epoch,
        lease_token: r.lease_token,
        agent_id,
        client: a,
    }
}

impl Claimed {
    /// One heartbeat of the agent holding this lease, presenting `secret` as the lease's secret
    /// (its own, or another to test the refusal).
    pub async fn heartbeat_with(&self, secret: &str) -> v1::HeartbeatResponse {
        let mut client = self.client.clone();
        client
            .heartbeat(v1::HeartbeatRequest {
                protocol_version: tofuflow_proto::PROTOCOL_VERSION,
                agent_id: self.agent_id.clone(),
                leases: vec![v1::HeldLease {
                    task_id: self.spec.task_id.clone(),
                    attempt: self.spec.attempt,
                    epoch: self.epoch,
                    lease_token: secret.to_string(),
                }],
                ..Default::default()
            })
            .await
            .expect("a heartbeat is answered")
            .into_inner()
    }
}

/// Claims the plan task of a run submitted with `--auto-approve`, completes it as a plan with
/// changes (with a stand-in plan file), and claims the apply task that follows: an apply lease
/// with its state-backend credential, as an agent gets it.
pub async fn claim_apply(c: &Cluster, pool: &str, agent_name: &str) -> Claimed {
    let mut plan = claim_next(c, pool, agent_name).await;
    finish_plan_with_changes(&mut plan).await;
    claim_next(c, pool, agent_name).await
}

/// Completes a claimed plan task as a plan with changes (uploading a stand-in plan file).
pub async fn finish_plan_with_changes(plan: &mut Claimed) {
    let (task_id, attempt) = (plan.spec.task_id.clone(), plan.spec.attempt);
    plan.client
        .upload_artifact(tokio_stream::iter(vec![v1::ArtifactChunk {
            task_id: task_id.clone(),
            attempt,
            epoch: plan.epoch,
            kind: v1::ArtifactKind::PlanFile as i32,
            data: b"stand-in plan".to_vec(),
            lease_token: plan.lease_token.clone(),
        }]))
        .await
        .expect("plan upload");
    plan.client
        .complete(v1::CompleteRequest {
            agent_id: plan.agent_id.clone(),
            task_id,
            attempt,
            epoch: plan.epoch,
            outcome: v1::Outcome::Succeeded as i32,
            has_changes: true,
            lease_token: plan.lease_token.clone(),
            ..Default::default()
        })
        .await
        .expect("plan completion");
}
