//! Taking tasks from RabbitMQ. Each slot (one per unit of concurrency) has its own channel with
//! prefetch 1 and consumes only while it is free, so a busy agent holds no message that an idle
//! agent could run.
//!
//! Step by step, for one delivery:
//! 1. Decode and check the envelope. If that fails, `basic.reject(requeue=false)`: the message
//!    goes to the dead-letter queue with the reason logged, and the coordinator is told
//!    (RejectTask) so the run fails with that reason instead of hanging.
//! 2. `Claim(task, attempt)`. Granted: `basic.ack`, then run the task. Refused (stale attempt,
//!    duplicate delivery, cancelled run): `basic.ack` and drop it; the claim is the dedup.
//!    Coordinator unreachable: `basic.nack(requeue=true)`, back off, try again later.
//! 3. Acking at claim (not at the end) is safe because the lease, not the message, now carries
//!    the task: if this agent dies, the lease expires and the coordinator decides.
//! 4. The channel is closed before the task runs, so the broker sends this slot nothing more.

use crate::lease::Leases;
use crate::runner::{Held, Runner};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, BasicRejectOptions,
};
use lapin::types::FieldTable;
use lapin::Connection;
use prost::Message;
use std::sync::Arc;
use std::time::Duration;
use tofuflow_proto::v1;
use tokio::sync::Mutex;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// One AMQP connection shared by the slots, re-established when it breaks.
pub struct Amqp {
    url: String,
    pools: Vec<String>,
    conn: Mutex<Option<Connection>>,
}

impl Amqp {
    pub fn new(url: String, pools: Vec<String>) -> Amqp {
        Amqp {
            url,
            pools,
            conn: Mutex::new(None),
        }
    }

    /// A fresh channel on a live connection (connecting and declaring the topology if needed).
    pub async fn channel(&self) -> Result<lapin::Channel, String> {
        let mut g = self.conn.lock().await;
        let alive = g.as_ref().map(|c| c.status().connected()).unwrap_or(false);
        if !alive {
            let c = tofuflow_proto::amqp::connect(&self.url, "tofuflow-agent")
                .await
                .map_err(|e| {
                    format!(
                        "cannot reach RabbitMQ at {}: {e}",
                        tofuflow_proto::amqp::redact(&self.url)
                    )
                })?;
            let ch = c.create_channel().await.map_err(|e| e.to_string())?;
            tofuflow_proto::amqp::declare(&ch, &self.pools)
                .await
                .map_err(|e| format!("declaring queues failed: {e}"))?;
            let _ = ch.close(200, "declared".into()).await;
            tracing::info!(pools = ?self.pools, "connected to RabbitMQ");
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
}

enum Got {
    Task(Box<Granted>),
    Nothing,
}

impl Slot {
    pub async fn run(self) {
        let mut backoff = Duration::from_millis(200);
        while !self.intake_stop.is_cancelled() {
            match self.take_one().await {
                Ok(Got::Task(g)) => {
                    let Granted {
                        spec,
                        epoch,
                        lease_token,
                        pool,
                    } = *g;
                    backoff = Duration::from_millis(200);
                    let permit = self.free.clone().try_acquire_owned().ok();
                    let held = Arc::new(Held {
                        attempt: spec.attempt,
                        epoch,
                        lease_token,
                        cancel: self.hard_stop.child_token(),
                        reason: Arc::new(std::sync::Mutex::new(None)),
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
                    self.runner
                        .run(spec, &held, self.index, &pool)
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
                        _ = self.intake_stop.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
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
        // Closing the channel returns any other prefetched delivery to the queue.
        let _ = ch.close(200, "slot busy".into()).await;
        result
    }

    /// Handles one delivery: a poison message is dead-lettered (and the coordinator told), a
    /// good one is claimed; the claim's answer decides whether this slot runs the task.
    async fn handle(&self, d: &lapin::message::Delivery) -> Result<Got, String> {
        let msg_id = d
            .properties
            .message_id()
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default();
        match envelope(&d.data, &self.pools) {
            Ok(env) => self.claim(d, env).await,
            Err(why) => {
                self.dead_letter(d, &msg_id, why).await?;
                Ok(Got::Nothing)
            }
        }
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
        env: v1::TaskEnvelope,
    ) -> Result<Got, String> {
        let mut c = self.runner.client.clone();
        let req = v1::ClaimRequest {
            agent_id: self.runner.agent_id.clone(),
            task_id: env.task_id.clone(),
            attempt: env.attempt,
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
        // The claim decided; the message has done its job either way.
        d.acker
            .ack(BasicAckOptions::default())
            .await
            .map_err(|e| format!("ack failed after claim: {e}"))?;
        match (r.granted, r.spec) {
            (true, Some(spec)) => {
                tracing::info!(task_id = %env.task_id, attempt = env.attempt, run_id = %env.run_id, epoch = r.epoch, "lease granted");
                Ok(Got::Task(Box::new(Granted {
                    spec,
                    epoch: r.epoch,
                    lease_token: r.lease_token,
                    pool: env.pool.clone(),
                })))
            }
            _ => {
                tracing::info!(task_id = %env.task_id, attempt = env.attempt, reason = %r.reason, redelivered = d.redelivered, "claim refused; message dropped");
                Ok(Got::Nothing)
            }
        }
    }
}

/// The task envelope of a message, or why the message is poison (undecodable, another protocol
/// version, no task id or attempt, or a pool this slot does not take).
fn envelope(data: &[u8], pools: &[String]) -> Result<v1::TaskEnvelope, String> {
    match v1::TaskEnvelope::decode(data) {
        Ok(e) if e.protocol_version != tofuflow_proto::PROTOCOL_VERSION => Err(format!(
            "protocol version {} (this agent speaks {})",
            e.protocol_version,
            tofuflow_proto::PROTOCOL_VERSION
        )),
        Ok(e) if e.task_id.is_empty() || e.attempt == 0 => {
            Err("envelope without task id or attempt".to_string())
        }
        Ok(e) if !pools.contains(&e.pool) => Err(format!(
            "task for pool {:?} arrived on a queue of pools {:?}",
            e.pool, pools
        )),
        Ok(e) => Ok(e),
        Err(e) => Err(format!(
            "undecodable TaskEnvelope ({} bytes): {e}",
            data.len()
        )),
    }
}

/// The run's trace rides in the AMQP header and goes on in the claim's gRPC metadata.
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
