//! Webhooks on both databases: no secret stored without a state key, and neither the secret
//! nor the URL ever in clear; a
//! run transition writes a delivery in its own transaction for each enabled webhook whose
//! globs and events match (and wakes the delivery loop after the commit); of two
//! coordinators only one claims a delivery, only the claim holder records its attempt, and a
//! finished delivery can be sent again.

use super::*;
use crate::webhooks::Hook;
use std::sync::Arc;

const SECRET: &str = "whsec-canary-0f-the-store-suite";

fn keys() -> crypt::Keys {
    let b64 = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    crypt::Keys {
        current: Some(crypt::Key::from_base64(&b64).unwrap()),
        old: vec![],
    }
}

fn webhook(name: &str, globs: &[&str], events: &[&str]) -> Webhook {
    crate::webhooks::checked(Webhook {
        name: name.into(),
        url: "https://example.com/hook/url-canary-3b9d".into(),
        workspaces: globs.iter().map(|g| g.to_string()).collect(),
        events: events.iter().map(|e| e.to_string()).collect(),
        enabled: true,
        ..Webhook::default()
    })
    .unwrap()
}

/// Every byte of the webhooks table, as text.
async fn stored(st: &Store) -> String {
    let mut all = String::new();
    for r in sqlx::query("SELECT * FROM webhooks")
        .fetch_all(&st.pool)
        .await
        .unwrap()
    {
        for c in 0..r.len() {
            if let Ok(v) = r.try_get::<Vec<u8>, _>(c) {
                all.push_str(&String::from_utf8_lossy(&v));
            } else if let Ok(v) = r.try_get::<String, _>(c) {
                all.push_str(&v);
            }
        }
    }
    all
}

/// A test delivery `id` to webhook `h`.
fn test_delivery(id: &str) -> crate::store::NewDelivery {
    crate::store::NewDelivery {
        id: id.into(),
        webhook: "h".into(),
        event: "test".into(),
        run_id: String::new(),
        workspace: String::new(),
        body: "{\"event\":\"test\"}".into(),
    }
}

/// Submits a run of `ws` and completes its plan with changes: it waits for approval.
async fn awaiting_approval(st: &Store, ws: &str) -> String {
    let p = policy();
    let run = st.submit(new_run(ws, false), &p).await.unwrap();
    let rows = st.unsent(100).await.unwrap();
    let env = opened(&rows.last().unwrap().payload);
    let g = st
        .claim("a1", &env.task_id, 1, &env.id, &p)
        .await
        .unwrap()
        .granted()
        .unwrap();
    let done = complete(
        &g.task,
        g.epoch,
        &g.lease_token,
        v1::Outcome::Succeeded,
        true,
    );
    st.complete_task(&done, &p).await.unwrap();
    run.id
}

#[tokio::test]
async fn a_secret_needs_the_state_key_and_is_stored_sealed() {
    for (name, mut st, _g, _d) in stores().await {
        let w = webhook("h", &["**"], &[]);
        let e = st.create_webhook(&w, SECRET, "alice").await.unwrap_err();
        assert!(e.to_string().contains("--state-key"), "{name}: {e}");
        st.set_keys(keys(), 0).await.unwrap();
        let made = st.create_webhook(&w, SECRET, "alice").await.unwrap();
        assert_eq!((made.created_by.as_str(), made.enabled), ("alice", true));
        let again = st.create_webhook(&w, SECRET, "alice").await.unwrap_err();
        assert!(again.to_string().contains("exists"), "{name}: {again}");
        assert!(!stored(&st).await.contains(SECRET), "{name}: sealed");
        assert!(
            !stored(&st).await.contains("url-canary"),
            "{name}: URL sealed"
        );
        assert_eq!(st.webhook("h").await.unwrap().url, w.url, "{name}: opened");
        st.queue_delivery(&test_delivery("whd_1")).await.unwrap();
        let c = st.claim_delivery("whd_1", "me", now_ms(), 60_000).await;
        assert_eq!(c.unwrap().unwrap().secret, SECRET, "{name}: opened to send");
        st.delete_webhook("h", "alice").await.unwrap();
        assert!(st.webhooks().await.unwrap().is_empty(), "{name}");
        assert!(
            st.delivery("whd_1").await.is_err(),
            "{name}: deliveries go too"
        );
    }
}

#[tokio::test]
async fn a_transition_writes_deliveries_for_matching_webhooks_in_its_transaction() {
    for (name, mut st, _g, _d) in stores().await {
        st.set_keys(keys(), 0).await.unwrap();
        let wake = Arc::new(tokio::sync::Notify::new());
        st.add_hook(Arc::new(Hook {
            wake: wake.clone(),
            public_url: "https://tf.example/".into(),
        }));
        let approvals = webhook("approvals", &["hook/*"], &["needs_approval"]);
        st.create_webhook(&approvals, SECRET, "alice")
            .await
            .unwrap();
        let applied = webhook("applied", &["**"], &["applied"]);
        st.create_webhook(&applied, SECRET, "alice").await.unwrap();
        let off = webhook("off", &["**"], &[]);
        st.create_webhook(&off, SECRET, "alice").await.unwrap();
        st.set_webhook_enabled("off", false, "alice").await.unwrap();

        let id = awaiting_approval(&st, "hook/a").await;
        let ds = st.webhook_deliveries("approvals", 10).await.unwrap();
        assert_eq!(ds.len(), 1, "{name}");
        assert_eq!(
            (ds[0].event.as_str(), ds[0].state.as_str()),
            ("needs_approval", "pending")
        );
        let body: serde_json::Value = serde_json::from_str(&ds[0].body).unwrap();
        assert_eq!(body["run"]["id"], id.as_str(), "{name}");
        assert_eq!(
            body["run"]["url"],
            format!("https://tf.example/ui/#/runs/{id}")
        );
        assert_eq!(body["run"]["tags"]["dag_id"], "nightly");
        assert!(
            !ds[0].body.contains("gpus"),
            "{name}: no variables in a body"
        );
        assert!(
            tokio::time::timeout(std::time::Duration::ZERO, wake.notified())
                .await
                .is_ok(),
            "{name}: the delivery loop is woken after the commit"
        );
        awaiting_approval(&st, "other/a").await;
        assert_eq!(
            st.webhook_deliveries("approvals", 10).await.unwrap().len(),
            1,
            "{name}: glob"
        );
        assert!(
            st.webhook_deliveries("applied", 10)
                .await
                .unwrap()
                .is_empty(),
            "{name}: event"
        );
        assert!(
            st.webhook_deliveries("off", 10).await.unwrap().is_empty(),
            "{name}: disabled"
        );
    }
}

#[tokio::test]
async fn one_coordinator_claims_a_delivery_and_only_the_holder_records_its_attempt() {
    for (name, mut st, pg, _d) in stores().await {
        st.set_keys(keys(), 0).await.unwrap();
        let mut other = second_store(&st, &pg).await;
        other.set_keys(keys(), 0).await.unwrap();
        st.create_webhook(&webhook("h", &["**"], &[]), SECRET, "alice")
            .await
            .unwrap();
        st.queue_delivery(&test_delivery("whd_2")).await.unwrap();
        let now = now_ms();
        assert_eq!(
            st.due_deliveries(now, 10).await.unwrap(),
            ["whd_2"],
            "{name}"
        );
        assert!(st
            .claim_delivery("whd_2", "c1", now, 60_000)
            .await
            .unwrap()
            .is_some());
        assert!(
            other
                .claim_delivery("whd_2", "c2", now, 60_000)
                .await
                .unwrap()
                .is_none(),
            "{name}"
        );
        assert!(
            st.due_deliveries(now, 10).await.unwrap().is_empty(),
            "{name}: held"
        );
        let failed = DeliveryAttempt {
            attempt: 1,
            started_ms: now,
            duration_ms: 3,
            status_code: 500,
            answer_excerpt: "boom".into(),
            error: String::new(),
        };
        let retry = AfterAttempt::RetryAt(now - 1);
        assert!(!other
            .record_delivery_attempt("whd_2", "c2", &failed, retry)
            .await
            .unwrap());
        assert!(st
            .record_delivery_attempt("whd_2", "c1", &failed, retry)
            .await
            .unwrap());
        let c = other
            .claim_delivery("whd_2", "c2", now_ms(), 60_000)
            .await
            .unwrap();
        assert_eq!(
            c.unwrap().delivery.attempts,
            1,
            "{name}: the retry is anyone's"
        );
        let delivered = DeliveryAttempt {
            attempt: 2,
            status_code: 204,
            ..failed.clone()
        };
        assert!(other
            .record_delivery_attempt("whd_2", "c2", &delivered, AfterAttempt::Delivered)
            .await
            .unwrap());
        let shown = st.delivery("whd_2").await.unwrap();
        assert_eq!(shown.state, "delivered", "{name}");
        let codes: Vec<i64> = shown.tries.iter().map(|t| t.status_code).collect();
        assert_eq!(codes, [500, 204], "{name}");
        let again = st.redeliver("whd_2").await.unwrap();
        assert_eq!(
            (again.state.as_str(), again.give_up_after),
            ("pending", 2 + DELIVERY_ATTEMPTS)
        );
        let e = st.redeliver("whd_2").await.unwrap_err();
        assert!(e.to_string().contains("still pending"), "{name}: {e}");
    }
}
