//! The delivery loop: sends pending webhook deliveries after the transactions that wrote them
//! have committed. It is woken by those commits (`Tx::wake_after_commit`), by a test send or a
//! redelivery, and by each attempt it records; it also looks every few seconds for deliveries
//! other coordinators wrote, and for claims that ran out.
//!
//! Every coordinator runs it. Which one sends a delivery is decided per delivery, by a
//! compare-and-set claim (`Store::claim_delivery`: `UPDATE ... WHERE claimed_until_ms < now`),
//! not by the periodic-work lease: deliveries start at once on the coordinator that committed
//! the transition (no wait for the lease holder's next round, no stall while the lease moves),
//! the work spreads over the coordinators, and it works the same on SQLite and PostgreSQL
//! (which `FOR UPDATE SKIP LOCKED` would not). Step by step, for one delivery:
//!
//! 1. claim it for [`HOLD_MS`] (or twice `--webhook-timeout`, if longer: more than a request
//!    can take): only one claim succeeds;
//! 2. sign the body with the current time and POST it;
//! 3. record the attempt and what it leads to (delivered, retry at, failed) and release the
//!    claim, in one transaction, only if the claim is still ours.
//!
//! A coordinator that dies between 2 and 3 leaves the claim to run out; another then sends the
//! delivery again: delivery is at least once, and `X-Tofuflow-Delivery` lets a receiver drop
//! the duplicate.

use super::client::{Client, Failure};
use super::payload;
use super::policy;
use crate::store::{now_ms, AfterAttempt, ClaimedDelivery, DeliveryAttempt, Store};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

/// How long a claim holds a delivery at least (and at least twice a request's timeout).
pub const HOLD_MS: i64 = 60_000;
/// How often the loop looks for work nobody woke it for.
const POLL_MS: i64 = 5_000;
/// Requests in flight at once.
const CONCURRENCY: usize = 8;

/// Sends deliveries until `shutdown`.
pub async fn run_deliveries(
    store: Store,
    client: Client,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let me = format!(
        "{}-{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "coordinator".into()),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let slots = Arc::new(Semaphore::new(CONCURRENCY));
    let hold_ms = HOLD_MS.max(2 * client.timeout().as_millis() as i64);
    loop {
        send_due(&store, &client, &wake, &slots, &me, hold_ms).await;
        let wait = match store.next_delivery_due().await {
            Ok(Some(due)) => (due - now_ms()).clamp(50, POLL_MS),
            Ok(None) => POLL_MS,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the webhook deliveries; retrying");
                POLL_MS
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
        }
    }
}

/// Claims every due delivery it can and sends each in its own task (at most
/// [`CONCURRENCY`] at once); each wakes the loop when its attempt is recorded.
async fn send_due(
    store: &Store,
    client: &Client,
    wake: &Arc<Notify>,
    slots: &Arc<Semaphore>,
    me: &str,
    hold_ms: i64,
) {
    let due = match store.due_deliveries(now_ms(), 100).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the due webhook deliveries");
            return;
        }
    };
    for id in due {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let claimed = match store.claim_delivery(&id, me, now_ms(), hold_ms).await {
            Ok(Some(c)) => c,
            // Another coordinator has it, or it is no longer due.
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(delivery = %id, error = %e, "cannot claim a webhook delivery");
                continue;
            }
        };
        let (store, client, wake, me) =
            (store.clone(), client.clone(), wake.clone(), me.to_string());
        tokio::spawn(async move {
            send_one(&store, &client, &me, claimed).await;
            drop(slot);
            wake.notify_one();
        });
    }
}

/// Sends one claimed delivery and records the attempt.
async fn send_one(store: &Store, client: &Client, me: &str, c: ClaimedDelivery) {
    let d = &c.delivery;
    let attempt = d.attempts + 1;
    let started_ms = now_ms();
    let t0 = Instant::now();
    let result = if c.enabled {
        let headers = [
            (
                "x-tofuflow-signature",
                payload::signature(&c.secret, started_ms / 1000, &d.body),
            ),
            ("x-tofuflow-event", d.event.clone()),
            ("x-tofuflow-delivery", d.id.clone()),
        ];
        client
            .post(&c.url, &headers, d.body.clone(), c.allow_private)
            .await
    } else {
        Err(Failure::Refused("the webhook is disabled".into()))
    };
    let a = DeliveryAttempt {
        attempt,
        started_ms,
        duration_ms: t0.elapsed().as_millis() as i64,
        status_code: result.as_ref().map(|a| a.status as i64).unwrap_or(0),
        answer_excerpt: result
            .as_ref()
            .map(|a| a.excerpt.clone())
            .unwrap_or_default(),
        error: result
            .as_ref()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default(),
    };
    let next = match &result {
        Err(Failure::Refused(_)) => AfterAttempt::Failed,
        Err(Failure::Network(_)) => {
            policy::after_attempt(None, attempt, d.give_up_after, now_ms(), jitter())
        }
        Ok(ans) => policy::after_attempt(
            Some(ans.status),
            attempt,
            d.give_up_after,
            now_ms(),
            jitter(),
        ),
    };
    match store.record_delivery_attempt(&d.id, me, &a, next).await {
        Ok(true) => {
            tracing::info!(delivery = %d.id, webhook = %d.webhook, event = %d.event, attempt, status = a.status_code, error = %a.error, duration_ms = a.duration_ms, next = ?next, "webhook delivery attempted")
        }
        Ok(false) => {
            tracing::warn!(delivery = %d.id, attempt, "the claim on a webhook delivery ran out before its attempt was recorded; another coordinator sends it")
        }
        Err(e) => {
            tracing::warn!(delivery = %d.id, error = %e, "cannot record a webhook delivery attempt; it is sent again when its claim runs out")
        }
    }
}

/// A number in [0, 1) from the operating system's generator.
fn jitter() -> f64 {
    let mut b = [0u8; 4];
    if getrandom::fill(&mut b).is_err() {
        return 0.5;
    }
    u32::from_le_bytes(b) as f64 / (u32::MAX as f64 + 1.0)
}
