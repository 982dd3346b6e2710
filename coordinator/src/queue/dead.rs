//! The dead-letter queue `tofuflow.dead`: declared by the coordinator alone, with a length
//! limit (`--dead-letter-max`, oldest dropped first), and looked into by admins (`tofuflow
//! dead-letter list|purge`) and `/metrics` through a connection of its own.
//!
//! Listing takes messages with `basic.get` without acknowledging them, then closes the channel:
//! RabbitMQ puts every unacknowledged message back where it was, in order, so a listing neither
//! loses nor reorders dead messages.

use crate::error::{Error, Result};
use lapin::options::{BasicGetOptions, QueueBindOptions, QueueDeclareOptions, QueuePurgeOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection};
use std::time::Duration;
use tofuflow_proto::amqp::{dead_queue_args, DEAD_EXCHANGE, DEAD_QUEUE};
use tofuflow_proto::{signing, v1};

/// How long one broker operation of the admin connection may take.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

/// Declares the dead-letter queue with its length limit and binds it to the dead-letter
/// exchange. A queue that already exists with other arguments (no limit, another one) is kept
/// as it is: the returned warning says how to bring the limit in.
pub async fn declare(conn: &Connection, max: i64) -> Result<Option<String>> {
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let ch = conn.create_channel().await?;
    let warning = match ch
        .queue_declare(DEAD_QUEUE.into(), durable, dead_queue_args(max))
        .await
    {
        Ok(_) => None,
        Err(e) if e.to_string().contains("PRECONDITION_FAILED") => {
            // RabbitMQ closed that channel; the queue exists: check it is there and go on.
            let passive = QueueDeclareOptions {
                passive: true,
                ..Default::default()
            };
            let ch = conn.create_channel().await?;
            ch.queue_declare(DEAD_QUEUE.into(), passive, FieldTable::default())
                .await?;
            let _ = ch.close(200, "checked".into()).await;
            Some(format!(
                "the dead-letter queue {DEAD_QUEUE} exists with other arguments than --dead-letter-max {max} asks for ({e}), so its length is not limited as configured. \
                 Either delete it and restart the coordinator, which declares it again with the limit (`rabbitmqctl delete_queue -p VHOST {DEAD_QUEUE}`; the messages in it are lost, see them first with `tofuflow dead-letter list`), \
                 or, if it has no limit, give it one with a policy (a policy cannot raise a limit the queue was declared with): `rabbitmqctl set_policy -p VHOST tofuflow-dead '^tofuflow\\.dead$' '{{\"max-length\":{max},\"overflow\":\"drop-head\"}}' --apply-to queues`"
            ))
        }
        Err(e) => return Err(e.into()),
    };
    let ch = conn.create_channel().await?;
    ch.queue_bind(
        DEAD_QUEUE.into(),
        DEAD_EXCHANGE.into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    let _ = ch.close(200, "declared".into()).await;
    Ok(warning)
}

/// The coordinator's own connection for looking into the dead-letter queue, opened on first
/// use and again after it dropped (separate from the outbox publisher's).
pub struct DeadLetters {
    nodes: tofuflow_proto::amqp::Nodes,
    max: i64,
    conn: tokio::sync::Mutex<Option<Connection>>,
    /// Task messages each agent dead-lettered unclaimed (tampered, expired, replayed), as its
    /// latest heartbeat counted them.
    rejections: std::sync::Mutex<std::collections::HashMap<String, [u64; 3]>>,
}

impl DeadLetters {
    /// A handle for the broker at `urls` (nodes of one cluster); `max` is the configured
    /// `--dead-letter-max`.
    pub fn new(urls: &[String], max: i64) -> DeadLetters {
        DeadLetters {
            nodes: tofuflow_proto::amqp::Nodes::new(urls),
            max,
            conn: tokio::sync::Mutex::new(None),
            rejections: Default::default(),
        }
    }

    /// Keeps an agent's running counts of refused task messages (from its heartbeat).
    pub fn count_rejections(&self, agent_id: &str, counts: [u64; 3]) {
        if let Ok(mut m) = self.rejections.lock() {
            m.insert(agent_id.to_string(), counts);
        }
    }

    /// Refused task messages over all agents that reported here: tampered, expired, replayed.
    pub fn rejections(&self) -> [u64; 3] {
        let m = self
            .rejections
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default();
        m.values()
            .fold([0; 3], |a, c| [a[0] + c[0], a[1] + c[1], a[2] + c[2]])
    }

    /// The configured length limit.
    pub fn max(&self) -> i64 {
        self.max
    }

    async fn channel(&self) -> Result<Channel> {
        let mut g = self.conn.lock().await;
        if !g.as_ref().is_some_and(|c| c.status().connected()) {
            let (c, _) = self
                .nodes
                .connect("tofuflow-coordinator dead letters")
                .await
                .map_err(Error::Internal)?;
            *g = Some(c);
        }
        Ok(g.as_ref().expect("connected").create_channel().await?)
    }

    /// Messages in the dead-letter queue now.
    pub async fn depth(&self) -> Result<u32> {
        timed(async {
            let ch = self.channel().await?;
            let q = ch
                .queue_declare(
                    DEAD_QUEUE.into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await?;
            let _ = ch.close(200, "counted".into()).await;
            Ok(q.message_count())
        })
        .await
    }

    /// Up to `limit` dead messages, oldest first, and how many the queue holds; every message
    /// stays in the queue, in its place.
    pub async fn list(&self, limit: u32) -> Result<(Vec<v1::DeadLetter>, u32)> {
        timed(async {
            let ch = self.channel().await?;
            let mut out = Vec::new();
            let mut total = 0;
            while out.len() < limit as usize {
                // no_ack false: each message stays the queue's until the channel closes.
                let Some(m) = ch
                    .basic_get(DEAD_QUEUE.into(), BasicGetOptions { no_ack: false })
                    .await?
                else {
                    break;
                };
                total = out.len() as u32 + 1 + m.message_count;
                out.push(describe(&m.delivery));
            }
            // Closing the channel hands every message taken back to the queue, in order.
            ch.close(200, "listed".into()).await?;
            if out.is_empty() {
                total = self.depth().await?;
            }
            Ok((out, total))
        })
        .await
    }

    /// Empties the dead-letter queue; returns how many messages it dropped.
    pub async fn purge(&self) -> Result<u32> {
        timed(async {
            let ch = self.channel().await?;
            let n = ch
                .queue_purge(DEAD_QUEUE.into(), QueuePurgeOptions::default())
                .await?;
            let _ = ch.close(200, "purged".into()).await;
            Ok(n)
        })
        .await
    }
}

async fn timed<T>(f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(BROKER_TIMEOUT, f)
        .await
        .unwrap_or_else(|_| {
            Err(Error::Internal(format!(
                "RabbitMQ did not answer within {}s; check the broker and try again",
                BROKER_TIMEOUT.as_secs()
            )))
        })
}

fn text(v: &AMQPValue) -> String {
    match v {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.as_str().to_string(),
        other => format!("{other:?}"),
    }
}

/// What a dead message is and why it died: ids from its envelope (or its `message_id`), the
/// reason, queue and time from RabbitMQ's `x-death` / `x-first-death-*` headers.
fn describe(d: &lapin::message::Delivery) -> v1::DeadLetter {
    use prost::Message;
    let message_id = d
        .properties
        .message_id()
        .as_ref()
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    let mut out = v1::DeadLetter {
        message_id: message_id.clone(),
        size: d.data.len() as u64,
        ..Default::default()
    };
    let inner = v1::SignedEnvelope::decode(d.data.as_slice())
        .ok()
        .and_then(|s| v1::TaskEnvelope::decode(s.envelope.as_slice()).ok());
    match inner {
        Some(e)
            if e.protocol_version == tofuflow_proto::PROTOCOL_VERSION && !e.task_id.is_empty() =>
        {
            out.task_id = e.task_id;
            out.attempt = e.attempt;
            out.run_id = e.run_id;
            out.pool = e.pool;
        }
        _ => {
            if let Some((task, attempt)) = tofuflow_proto::parse_message_id(&message_id) {
                out.task_id = task;
                out.attempt = attempt;
            }
        }
    }
    let empty = FieldTable::default();
    let headers = d.properties.headers().as_ref().unwrap_or(&empty).inner();
    let header = |k: &str| headers.get(k).map(text).unwrap_or_default();
    out.reason = header("x-first-death-reason");
    out.queue = header("x-first-death-queue");
    // An agent that refused a signed message republished it here with the reason.
    let refused = header(signing::DEAD_REASON_HEADER);
    if !refused.is_empty() {
        out.reason = format!("{refused}: {}", header(signing::DEAD_DETAIL_HEADER));
        out.queue = header(signing::DEAD_QUEUE_HEADER);
        out.died_unix_ms = d
            .properties
            .timestamp()
            .map(|t| t as i64 * 1000)
            .unwrap_or(0);
    }
    // x-death: one entry per (queue, reason), the latest first.
    if let Some(AMQPValue::FieldArray(deaths)) = headers.get("x-death") {
        if let Some(AMQPValue::FieldTable(first)) = deaths.as_slice().last() {
            let f = first.inner();
            if out.reason.is_empty() {
                out.reason = f.get("reason").map(text).unwrap_or_default();
            }
            if out.queue.is_empty() {
                out.queue = f.get("queue").map(text).unwrap_or_default();
            }
            if let Some(AMQPValue::Timestamp(t)) = f.get("time") {
                out.died_unix_ms = (*t as i64).saturating_mul(1000);
            }
        }
    }
    if out.pool.is_empty() {
        if let Some(p) = out.queue.strip_prefix("tofuflow.pool.") {
            out.pool = p.to_string();
        }
    }
    out
}
