//! Taking tasks from RabbitMQ. Each slot (one per unit of concurrency) has its own channel with
//! prefetch 1 and consumes only while it is free, so a busy agent holds no message that an idle
//! agent could run.
//!
//! Step by step, for one delivery:
//! 1. Decode the `SignedEnvelope`. A body that is not one is poison: `basic.reject(requeue=false)`
//!    sends it to the dead-letter queue with the reason logged, and the coordinator is told
//!    (RejectTask, when the message id names a task) so the run fails instead of hanging.
//! 2. Verify it before anything else is believed (`trust.rs`): a bad signature or unknown key
//!    ("tampered") or a passed expiry ("expired") is refused: a copy goes to the dead-letter
//!    exchange with headers naming the reason (published with a confirm), then the original is
//!    acked. The run is not touched (an unverified message cannot be trusted to name it) and
//!    nothing runs. Keys not reachable: `basic.nack(requeue=true)`, back off, try again.
//! 3. Check the verified envelope (protocol version, ids, pool): a failure is poison as in 1.
//! 4. `Claim(task, attempt, envelope id)`. Granted: `basic.ack`, then run the task. Refused as
//!    replayed (the envelope was claimed before or is no longer the task's): refused as in 2,
//!    unless the broker itself redelivered it (an agent died between claim and ack): then
//!    `basic.ack` and drop it. Refused otherwise (stale attempt, cancelled run): `basic.ack` and
//!    drop it; the claim is the dedup. Coordinator unreachable: `basic.nack(requeue=true)`,
//!    back off, try again later.
//! 5. Acking at claim (not at the end) is safe because the lease, not the message, now carries
//!    the task: if this agent dies, the lease expires and the coordinator decides.
//! 6. The channel is closed before the task runs, so the broker sends this slot nothing more.

use crate::lease::Leases;
use crate::runner::{Held, Runner};
use crate::trust::Trust;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    BasicRejectOptions, ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::Connection;
use prost::Message;
use std::sync::Arc;
use std::time::Duration;
use tofuflow_proto::signing::{self, Rejection};
use tofuflow_proto::v1;
use tokio::sync::Mutex;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// One AMQP connection shared by the slots, re-established when it breaks (to the next live
/// node when several are given).
pub struct Amqp {
    nodes: tofuflow_proto::amqp::Nodes,
    pools: Vec<String>,
    conn: Mutex<Option<Connection>>,
}

impl Amqp {
    pub fn new(urls: &[String], pools: Vec<String>) -> Amqp {
        Amqp {
            nodes: tofuflow_proto::amqp::Nodes::new(urls),
            pools,
            conn: Mutex::new(None),
        }
    }

    /// A fresh channel on a live connection (connecting and declaring the topology if needed).
    pub async fn channel(&self) -> Result<lapin::Channel, String> {
        let mut g = self.conn.lock().await;
        let alive = g.as_ref().map(|c| c.status().connected()).unwrap_or(false);
        if !alive {
            let (c, node) = self.nodes.connect("tofuflow-agent").await?;
            let ch = c.create_channel().await.map_err(|e| e.to_string())?;
            tofuflow_proto::amqp::declare(&ch, &self.pools)
                .await
                .map_err(|e| format!("declaring queues failed: {e}"))?;
            let _ = ch.close(200, "declared".into()).await;
            tracing::info!(pools = ?self.pools, %node, "connected to RabbitMQ");
            *g = Some(c);
        }
        g.as_ref()
            .expect("connection")
            .create_channel()
            .await
            .map_err(|e| e.to_string())
    }

    pub async fn close(&self) {
        if let Some(c) = self.conn.lock().await.take() {
            let _ = c.close(200, "agent stopping".into()).await;
        }
    }
}

pub struct Slot {
    pub index: u32,
    pub amqp: Arc<Amqp>,
    pub runner: Runner,
    pub leases: Leases,
    pub pools: Vec<String>,
    pub free: Arc<tokio::sync::Semaphore>,
    /// The coordinator's signing keys and the count of refused messages.
    pub trust: Arc<Trust>,
    /// Stop taking new work.
    pub intake_stop: CancellationToken,
    /// Cancel running tasks (fires after the drain grace).
    pub hard_stop: CancellationToken,
}

/// A task this slot won a lease for: its spec, the lease (epoch and secret) and its pool.
struct Granted {
    spec: v1::TaskSpec,
    epoch: u64,
    lease_token: String,
    pool: String,
    granted: std::time::Instant,
}

enum Got {
    Task(Box<Granted>),
    Nothing,
}

impl Slot {
    pub async fn run(self) {
        let mut backoff = Duration::from_millis(200);
        // The sandbox for this slot's next task, built while it waits for and claims the task
        // (see runner::warm).
        let mut warm = None;
        while !self.intake_stop.is_cancelled() {
            let warming = async {
                if warm.is_none() {
                    warm = self.runner.warm(self.index).await;
                }
            };
            let ((), got) = tokio::join!(warming, self.take_one());
            match got {
                Ok(Got::Task(g)) => {
                    let Granted {
                        spec,
                        epoch,
                        lease_token,
                        pool,
                        granted,
                    } = *g;
                    backoff = Duration::from_millis(200);
                    let permit = self.free.clone().try_acquire_owned().ok();
                    let held = Arc::new(Held {
                        attempt: spec.attempt,
                        epoch,
                        lease_token,
                        cancel: self.hard_stop.child_token(),
                        reason: Arc::new(std::sync::Mutex::new(None)),
                        id_token: Default::default(),
                        granted,
                    });
                    // A drain that runs out of time stops the task with a reason.
                    let (h2, hs) = (held.clone(), self.hard_stop.clone());
                    let watcher = tokio::spawn(async move {
                        hs.cancelled().await;
                        if let Ok(mut r) = h2.reason.lock() {
                            r.get_or_insert(crate::runner::StopReason::Shutdown);
                        }
                    });
                    self.leases.insert(&spec.task_id, held.clone());
                    let task_id = spec.task_id.clone();
                    let span = tracing::info_span!("task", run_id = %spec.run_id, task_id = %spec.task_id, attempt = spec.attempt, workspace = %spec.workspace, agent_id = %self.runner.agent_id);
                    tofuflow_proto::telemetry::set_parent(&span, &spec.traceparent);
                    warm = self
                        .runner
                        .run(spec, &held, (self.index, &pool), warm.take())
                        .instrument(span)
                        .await;
                    self.leases.remove(&task_id);
                    watcher.abort();
                    drop(permit);
                }
                Ok(Got::Nothing) => {}
                Err(e) => {
                    tracing::warn!(slot = self.index, error = %e, retry_ms = backoff.as_millis() as u64, "intake problem");
                    tokio::select! {
                        _ = self.intake_stop.cancelled() => {}
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        if let Some(w) = warm {
            w.discard().await;
        }
    }

    async fn take_one(&self) -> Result<Got, String> {
        let ch = self.amqp.channel().await?;
        ch.basic_qos(1, BasicQosOptions::default())
            .await
            .map_err(|e| e.to_string())?;
        let mut consumers = Vec::new();
        for pool in &self.pools {
            let q = tofuflow_proto::amqp::pool_queue(pool);
            let tag = format!("{}-slot{}-{pool}", self.runner.agent_id, self.index);
            let c = ch
                .basic_consume(
                    q.as_str().into(),
                    tag.as_str().into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| e.to_string())?;
            consumers.push(c);
        }
        let mut merged = tokio_stream::StreamMap::new();
        for (i, c) in consumers.into_iter().enumerate() {
            merged.insert(i, c);
        }
        let delivery = tokio::select! {
            _ = self.intake_stop.cancelled() => {
                // Unacked deliveries (none, with prefetch 1 and nothing received) go back on close.
                let _ = ch.close(200, "draining".into()).await;
                return Ok(Got::Nothing);
            }
            d = merged.next() => match d {
                Some((_, Ok(d))) => d,
                Some((_, Err(e))) => return Err(format!("consumer failed: {e}")),
                None => return Err("consumer closed".into()),
            }
        };
        let result = self.handle(&delivery).await;
        // Closing the channel returns any other prefetched delivery to the queue; the task
        // does not wait for it.
        tokio::spawn(async move {
            let _ = ch.close(200, "slot busy".into()).await;
        });
        result
    }

    /// Handles one delivery: a poison message is dead-lettered (and the coordinator told), one
    /// that fails verification is refused, a good one is claimed; the claim's answer decides
    /// whether this slot runs the task.
    async fn handle(&self, d: &lapin::message::Delivery) -> Result<Got, String> {
        if let Some(took) = delivery_time(d) {
            crate::metrics::metrics().step("delivery".into(), took);
        }
        let msg_id = d
            .properties
            .message_id()
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default();
        let signed = match signed_envelope(&d.data) {
            Ok(s) => s,
            Err(why) => {
                self.dead_letter(d, &msg_id, why).await?;
                return Ok(Got::Nothing);
            }
        };
        let client = &self.runner.client;
        let verified = match self
            .trust
            .check(client, &self.runner.agent_id, &signed)
            .await
        {
            Ok(v) => v,
            Err(e) => {
                let requeue = BasicNackOptions {
                    requeue: true,
                    multiple: false,
                };
                let _ = d.acker.nack(requeue).await;
                return Err(e);
            }
        };
        let env = match verified {
            Ok(env) => env,
            Err(rejection) => {
                self.refuse(d, &msg_id, rejection).await?;
                return Ok(Got::Nothing);
            }
        };
        match check(env, &self.pools) {
            Ok(env) => self.claim(d, &msg_id, env, &signed.envelope_id).await,
            Err(why) => {
                self.dead_letter(d, &msg_id, why).await?;
                Ok(Got::Nothing)
            }
        }
    }

    /// Refuses a message that must not run (tampered, expired, replayed): a copy goes to the
    /// dead-letter exchange with the reason in its headers, confirmed by the broker, and only
    /// then is the original acked (if this agent dies in between, the message comes back and is
    /// refused again). The run is left alone: nothing in such a message can be trusted.
    async fn refuse(
        &self,
        d: &lapin::message::Delivery,
        msg_id: &str,
        r: Rejection,
    ) -> Result<(), String> {
        tracing::warn!(message_id = %msg_id, reason = r.reason(), detail = %r.detail(), "task message refused: dead-lettering it unclaimed");
        let queue = tofuflow_proto::amqp::pool_queue(d.routing_key.as_str());
        let mut headers = d.properties.headers().clone().unwrap_or_default();
        for (k, v) in [
            (signing::DEAD_REASON_HEADER, r.reason()),
            (signing::DEAD_DETAIL_HEADER, r.detail()),
            (signing::DEAD_QUEUE_HEADER, queue.as_str()),
            (signing::DEAD_AGENT_HEADER, self.runner.agent_id.as_str()),
        ] {
            headers.insert(ShortString::from(k), AMQPValue::LongString(v.into()));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let props = d
            .properties
            .clone()
            .with_headers(headers)
            .with_timestamp(now);
        let ch = self.amqp.channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| e.to_string())?;
        let confirm = ch
            .basic_publish(
                tofuflow_proto::amqp::DEAD_EXCHANGE.into(),
                d.routing_key.clone(),
                BasicPublishOptions::default(),
                &d.data,
                props,
            )
            .await
            .map_err(|e| format!("dead-lettering a refused message failed: {e}"))?
            .await
            .map_err(|e| format!("dead-lettering a refused message failed: {e}"))?;
        let _ = ch.close(200, "dead-lettered".into()).await;
        if !confirm.is_ack() {
            return Err(format!(
                "the broker did not take the refused message: {confirm:?}"
            ));
        }
        d.acker
            .ack(BasicAckOptions::default())
            .await
            .map_err(|e| format!("ack failed after dead-lettering: {e}"))?;
        self.trust.count(&r);
        Ok(())
    }

    /// Rejects a poison message without requeue (it goes to the dead-letter queue) and, when
    /// its message id names the task, tells the coordinator why.
    async fn dead_letter(
        &self,
        d: &lapin::message::Delivery,
        msg_id: &str,
        why: String,
    ) -> Result<(), String> {
        tracing::error!(message_id = %msg_id, reason = %why, "poison message: dead-lettering it");
        d.acker
            .reject(BasicRejectOptions { requeue: false })
            .await
            .map_err(|e| e.to_string())?;
        if let Some((task_id, attempt)) = tofuflow_proto::parse_message_id(msg_id) {
            let mut c = self.runner.client.clone();
            let _ = c
                .reject_task(v1::RejectTaskRequest {
                    agent_id: self.runner.agent_id.clone(),
                    task_id,
                    attempt,
                    reason: why,
                })
                .await;
        }
        Ok(())
    }

    /// Claims the task. The message is acked once the coordinator has answered (granted or
    /// refused: the claim decided, the message has done its job); if the coordinator cannot be
    /// reached it is nacked back onto the queue for another try.
    async fn claim(
        &self,
        d: &lapin::message::Delivery,
        msg_id: &str,
        env: v1::TaskEnvelope,
        envelope_id: &str,
    ) -> Result<Got, String> {
        let t0 = std::time::Instant::now();
        let mut c = self.runner.client.clone();
        let req = v1::ClaimRequest {
            agent_id: self.runner.agent_id.clone(),
            task_id: env.task_id.clone(),
            attempt: env.attempt,
            envelope_id: envelope_id.to_string(),
        };
        let claim = c
            .claim(tofuflow_proto::telemetry::with_trace(
                req,
                traceparent(d).as_deref(),
            ))
            .await;
        let r = match claim {
            Ok(r) => r.into_inner(),
            Err(e) => {
                let _ = d
                    .acker
                    .nack(BasicNackOptions {
                        requeue: true,
                        multiple: false,
                    })
                    .await;
                return Err(format!(
                    "cannot claim (coordinator unreachable?): {}",
                    e.message()
                ));
            }
        };
        if r.replayed && !d.redelivered {
            self.refuse(d, msg_id, Rejection::Replayed(r.reason))
                .await?;
            return Ok(Got::Nothing);
        }
        // The claim decided; the message has done its job either way.
        d.acker
            .ack(BasicAckOptions::default())
            .await
            .map_err(|e| format!("ack failed after claim: {e}"))?;
        let granted = std::time::Instant::now();
        crate::metrics::metrics().step("claim".into(), granted - t0);
        match (r.granted, r.spec) {
            (true, Some(spec)) => {
                tracing::info!(task_id = %env.task_id, attempt = env.attempt, run_id = %env.run_id, epoch = r.epoch, "lease granted");
                Ok(Got::Task(Box::new(Granted {
                    spec,
                    epoch: r.epoch,
                    lease_token: r.lease_token,
                    pool: env.pool.clone(),
                    granted,
                })))
            }
            _ => {
                tracing::info!(task_id = %env.task_id, attempt = env.attempt, reason = %r.reason, redelivered = d.redelivered, "claim refused; message dropped");
                Ok(Got::Nothing)
            }
        }
    }
}

/// The signed envelope of a message, or why the message is poison (not one at all).
fn signed_envelope(data: &[u8]) -> Result<v1::SignedEnvelope, String> {
    match v1::SignedEnvelope::decode(data) {
        Ok(s) if !s.signature.is_empty() || !s.key_id.is_empty() => Ok(s),
        Ok(_) => Err(format!(
            "undecodable task message ({} bytes): no signed envelope in it",
            data.len()
        )),
        Err(e) => Err(format!(
            "undecodable task message ({} bytes): {e}",
            data.len()
        )),
    }
}

/// The verified task envelope, or why it is poison (another protocol version, no task id or
/// attempt, or a pool this slot does not take).
fn check(e: v1::TaskEnvelope, pools: &[String]) -> Result<v1::TaskEnvelope, String> {
    match e {
        e if e.protocol_version != tofuflow_proto::PROTOCOL_VERSION => Err(format!(
            "protocol version {} (this agent speaks {})",
            e.protocol_version,
            tofuflow_proto::PROTOCOL_VERSION
        )),
        e if e.task_id.is_empty() || e.attempt == 0 => {
            Err("envelope without task id or attempt".to_string())
        }
        e if !pools.contains(&e.pool) => Err(format!(
            "task for pool {:?} arrived on a queue of pools {:?}",
            e.pool, pools
        )),
        e => Ok(e),
    }
}

/// The run's trace rides in the AMQP header and goes on in the claim's gRPC metadata.
/// How long the message took from the coordinator's publish to this agent (by the two hosts'
/// clocks), from its published-at header.
fn delivery_time(d: &lapin::message::Delivery) -> Option<Duration> {
    let headers = d.properties.headers().as_ref()?;
    let published = match headers
        .inner()
        .get(tofuflow_proto::amqp::PUBLISHED_HEADER)?
    {
        AMQPValue::LongLongInt(us) => *us,
        _ => return None,
    };
    let took = tofuflow_proto::amqp::now_us() - published;
    (took >= 0).then(|| Duration::from_micros(took as u64))
}

fn traceparent(d: &lapin::message::Delivery) -> Option<String> {
    d.properties.headers().as_ref().and_then(|h| {
        h.inner()
            .iter()
            .find(|(k, _)| k.as_str() == "traceparent")
            .and_then(|(_, v)| match v {
                lapin::types::AMQPValue::LongString(s) => Some(s.to_string()),
                _ => None,
            })
    })
}
