//! RabbitMQ: the topology (task exchange, one quorum queue per pool, dead-letter exchange and
//! queue) and the outbox publisher; `dead` looks into the dead-letter queue.
//!
//! Delivery contract, step by step:
//! 1. A task row and its outbox row are written in one database transaction (store::submit etc.).
//! 2. This publisher reads unsent rows and publishes each with `mandatory` and publisher confirms,
//!    `message_id = <task>:<attempt>`, persistent.
//! 3. Only after the broker's `basic.ack` is the row marked sent. A `basic.return` before the ack
//!    means no queue is bound for the pool: the run fails with that reason.
//! 4. If the connection drops before the confirm, the row stays unsent and is published again
//!    after reconnecting, with the same `message_id`. The duplicate is absorbed by the claim:
//!    only one claim of an attempt can ever win (store::claim).

pub mod dead;

use crate::store::{OutboxRow, Store};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::Confirmation;
use lapin::{BasicProperties, Channel};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use tofuflow_proto::amqp::{connect, declare, pool_queue, redact, valid_pool, TASK_EXCHANGE};

/// What the publisher declares on each connection: the pools' queues and the dead-letter
/// queue's length limit.
#[derive(Clone, Debug)]
pub struct Topology {
    pub pools: Vec<String>,
    pub dead_letter_max: i64,
}

/// Publishes outbox rows until `shutdown`, reconnecting by itself (to the next live node of
/// `nodes` when the connection broke).
pub async fn run_publisher(
    store: Store,
    nodes: tofuflow_proto::amqp::Nodes,
    topology: Topology,
    wake: Arc<Notify>,
    ready: Arc<std::sync::atomic::AtomicBool>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(200);
    while !shutdown.is_cancelled() {
        match publish_session(&store, &nodes, &topology, &wake, &ready, &shutdown).await {
            Ok(()) => return,
            Err(e) => {
                // A session that was connected starts the backoff over: a lost node is
                // replaced by the next one at once, not after the last outage's backoff.
                if ready.load(std::sync::atomic::Ordering::SeqCst) {
                    backoff = Duration::from_millis(200);
                }
                ready.store(false, std::sync::atomic::Ordering::SeqCst);
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "outbox publisher lost RabbitMQ; reconnecting");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn publish_session(
    store: &Store,
    nodes: &tofuflow_proto::amqp::Nodes,
    topology: &Topology,
    wake: &Notify,
    ready: &std::sync::atomic::AtomicBool,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    let (conn, node) = nodes.connect("tofuflow-coordinator publisher").await?;
    let ch = conn.create_channel().await.map_err(|e| e.to_string())?;
    declare(&ch, &topology.pools)
        .await
        .map_err(|e| format!("declaring the topology failed: {e}"))?;
    match dead::declare(&conn, topology.dead_letter_max).await {
        Ok(None) => {}
        Ok(Some(warning)) => tracing::warn!("{warning}"),
        Err(e) => return Err(format!("declaring the dead-letter queue failed: {e}")),
    }
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    ready.store(true, std::sync::atomic::Ordering::SeqCst);
    tracing::info!(url = %node, "outbox publisher connected");
    loop {
        if shutdown.is_cancelled() {
            let _ = conn.close(200, "shutdown".into()).await;
            return Ok(());
        }
        if !conn.status().connected() {
            return Err("connection closed".into());
        }
        let rows = store.unsent(200).await.map_err(|e| e.to_string())?;
        if rows.is_empty() {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
            continue;
        }
        // Publish the batch, then collect the confirms (pipelined: one fsync covers many).
        let mut pending = Vec::with_capacity(rows.len());
        for row in rows {
            let confirm = publish_one(&ch, &row)
                .await
                .map_err(|e| format!("publish failed: {e}"))?;
            pending.push((row, confirm));
        }
        for (row, confirm) in pending {
            match confirm.await {
                Ok(Confirmation::Ack(None)) => {
                    store.mark_sent(row.id).await.map_err(|e| e.to_string())?;
                    tracing::debug!(task_id = %row.task_id, attempt = row.attempt, pool = %row.pool, "task published");
                }
                Ok(Confirmation::Ack(Some(_returned))) => {
                    tracing::warn!(task_id = %row.task_id, pool = %row.pool, "task unroutable: no queue bound for its pool");
                    store.unroutable(&row).await.map_err(|e| e.to_string())?;
                }
                Ok(other) => {
                    let why = format!("broker did not confirm: {other:?}");
                    store
                        .mark_publish_failed(row.id, &why)
                        .await
                        .map_err(|e| e.to_string())?;
                    return Err(why);
                }
                Err(e) => return Err(format!("waiting for a confirm failed: {e}")),
            }
        }
    }
}

async fn publish_one(ch: &Channel, row: &OutboxRow) -> lapin::Result<lapin::PublisherConfirm> {
    let mut headers = FieldTable::default();
    if !row.traceparent.is_empty() {
        headers.insert(
            ShortString::from("traceparent"),
            AMQPValue::LongString(row.traceparent.clone().into()),
        );
    }
    let props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/x-protobuf".into())
        .with_type("tofuflow.v1.SignedEnvelope".into())
        .with_message_id(tofuflow_proto::message_id(&row.task_id, row.attempt).into())
        .with_headers(headers);
    ch.basic_publish(
        TASK_EXCHANGE.into(),
        row.pool.as_str().into(),
        BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        },
        &row.payload,
        props,
    )
    .await
}

/// The task envelope of an attempt (ids only, no secret), encoded; the outbox signs it
/// (`store::Signer`) and publishes the `SignedEnvelope`.
pub fn envelope(
    run: &crate::store::Run,
    task_id: &str,
    attempt: u32,
    phase: crate::runs::Phase,
    deadline_ms: i64,
) -> Vec<u8> {
    use prost::Message;
    tofuflow_proto::v1::TaskEnvelope {
        protocol_version: tofuflow_proto::PROTOCOL_VERSION,
        task_id: task_id.to_string(),
        attempt,
        run_id: run.id.clone(),
        phase: crate::api::convert::phase_to_pb(phase) as i32,
        pool: run.pool.clone(),
        workspace: run.workspace.clone(),
        bundle_digest: run.bundle_digest.clone(),
        deadline_unix_ms: deadline_ms,
    }
    .encode_to_vec()
}
