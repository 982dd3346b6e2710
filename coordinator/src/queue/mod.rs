//! RabbitMQ: the topology (task exchange, one quorum queue per pool, dead-letter exchange and
//! queue) and the outbox publisher; `dead` looks into the dead-letter queue.
//!
//! Delivery contract, step by step:
//! 1. A task row and its outbox row are written in one database transaction (store::submit etc.).
//! 2. This publisher reads unsent rows and publishes each with `mandatory` and publisher confirms,
//!    `message_id = <task>:<attempt>`, persistent.
//! 3. Only after the broker's `basic.ack` is the row marked sent: confirmed rows are marked
//!    together up to 20 ms later (`Confirmed`), off the path of the claim that follows. A
//!    `basic.return` before the ack means no queue is bound for the pool: the run fails with
//!    that reason.
//! 4. If the connection drops before the confirm, the row stays unsent and is published again
//!    after reconnecting, with the same `message_id`. The duplicate is absorbed by the claim:
//!    only one claim of an attempt can ever win (store::claim).

pub mod dead;

use crate::store::{OutboxRow, Store};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::Confirmation;
use lapin::{BasicProperties, Channel};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tofuflow_proto::amqp::Nodes;
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
    let mut confirmed = Confirmed::default();
    while !shutdown.is_cancelled() {
        let link = (&nodes, &topology, &*wake, &*ready);
        let ended = publish_session(&store, link, &shutdown, &mut confirmed).await;
        // What the broker confirmed before the session ended is marked all the same.
        if let Err(e) = confirmed.mark(&store).await {
            tracing::warn!(error = %e, "confirmed tasks not yet marked sent: tried again with the next batch");
        }
        match ended {
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
    (nodes, topology, wake, ready): (&Nodes, &Topology, &Notify, &AtomicBool),
    shutdown: &CancellationToken,
    confirmed: &mut Confirmed,
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
            confirmed.mark(store).await?;
            let _ = conn.close(200, "shutdown".into()).await;
            return Ok(());
        }
        if !conn.status().connected() {
            return Err("connection closed".into());
        }
        if confirmed.due() {
            confirmed.mark(store).await?;
        }
        let woken = Instant::now();
        let mut rows = store.unsent(200).await.map_err(|e| e.to_string())?;
        rows.retain(|r| !confirmed.holds(r.id));
        if rows.is_empty() {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = wake.notified() => {}
                _ = tokio::time::sleep(confirmed.wait()) => {}
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
        let published = Instant::now();
        let m = crate::metrics::recorded();
        for _ in &pending {
            m.dispatch("outbox", published - woken);
        }
        settle(store, pending, published, confirmed).await?;
    }
}

/// Waits for the broker's answer to each published row: confirmed rows are kept to be marked
/// sent, an unroutable one fails its run, any other answer ends the session.
async fn settle(
    store: &Store,
    pending: Vec<(OutboxRow, lapin::PublisherConfirm)>,
    published: Instant,
    confirmed: &mut Confirmed,
) -> Result<(), String> {
    for (row, confirm) in pending {
        let answer = confirm.await;
        crate::metrics::recorded().dispatch("confirm", published.elapsed());
        match answer {
            Ok(Confirmation::Ack(None)) => {
                confirmed.add(row.id);
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
                    .map_err(|e| format!("{why}; recording it failed: {e}"))?;
                return Err(why);
            }
            Err(e) => return Err(format!("waiting for a confirm failed: {e}")),
        }
    }
    Ok(())
}

/// Rows the broker confirmed and not yet marked sent. They are marked together, a little after
/// their publish, so the claims that follow a publish at once do not queue behind that write
/// (and one commit covers a batch). A row confirmed and not marked when the coordinator dies is
/// published again; the claim absorbs the duplicate (step 4 above).
#[derive(Default)]
pub(crate) struct Confirmed {
    ids: Vec<i64>,
    since: Option<Instant>,
}

/// How long a confirmed row waits to be marked sent, at most.
const MARK_AFTER: Duration = Duration::from_millis(20);
/// Confirmed rows marked in one transaction, at most.
const MARK_BATCH: usize = 100;
/// How long an idle publisher waits for a wake before looking at the outbox again.
const IDLE_LOOK: Duration = Duration::from_millis(500);

impl Confirmed {
    fn add(&mut self, id: i64) {
        self.since.get_or_insert_with(Instant::now);
        self.ids.push(id);
    }

    fn holds(&self, id: i64) -> bool {
        self.ids.contains(&id)
    }

    fn due(&self) -> bool {
        self.ids.len() >= MARK_BATCH || self.since.is_some_and(|t| t.elapsed() >= MARK_AFTER)
    }

    /// How long the publisher may wait idle before marking is due.
    fn wait(&self) -> Duration {
        match self.since {
            Some(t) => MARK_AFTER.saturating_sub(t.elapsed()),
            None => IDLE_LOOK,
        }
    }

    /// Marks every held row sent.
    pub(crate) async fn mark(&mut self, store: &Store) -> Result<(), String> {
        if self.ids.is_empty() {
            return Ok(());
        }
        store
            .mark_all_sent(&self.ids)
            .await
            .map_err(|e| format!("marking published tasks sent failed: {e}"))?;
        self.ids.clear();
        self.since = None;
        Ok(())
    }
}

async fn publish_one(ch: &Channel, row: &OutboxRow) -> lapin::Result<lapin::PublisherConfirm> {
    let mut headers = FieldTable::default();
    // When it was handed to the broker (for the agent's delivery time; never trusted).
    headers.insert(
        ShortString::from(tofuflow_proto::amqp::PUBLISHED_HEADER),
        AMQPValue::LongLongInt(tofuflow_proto::amqp::now_us()),
    );
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
