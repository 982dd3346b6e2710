//! Environments with a TTL on both databases: a TTL run that applies starts the deadline (in
//! the ending transaction, through the hook); the sweep reminds once, then queues an
//! auto-approved destroy run with the source run's (sealed) variables, tagged `ttl=expired`; a
//! failed destroy is retried after its backoff and, after the last attempt, the environment is
//! `teardown_failed` with a webhook delivery and an audit entry; a destroy that applies marks
//! it `destroyed`; extending works only on an active one; a stale update changes nothing.

use super::*;
use crate::lifecycle::ttl::{Extend, Ttl};
use crate::runs::ttl::{EnvState, TtlPolicy};
use std::sync::Arc;

fn ttl() -> Arc<Ttl> {
    Arc::new(Ttl {
        policy: TtlPolicy {
            reminder_ms: 60_000,
            backoff_ms: 1_000,
            max_backoff_ms: 1_000,
            max_attempts: 2,
        },
        runs: policy(),
        webhook_wake: Arc::new(tokio::sync::Notify::new()),
    })
}

fn keys() -> crypt::Keys {
    let b64 = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
    crypt::Keys {
        current: Some(crypt::Key::from_base64(&b64).unwrap()),
        old: vec![],
    }
}

/// Ends run `id` (queued) as `expired`, in a transaction the hooks see.
async fn expire(st: &Store, id: &str) {
    let mut tx = st.begin().await.unwrap();
    let (from, to) = (RunState::Queued, RunState::Expired);
    end_run(&mut tx, id, from, to, "test", "nobody claimed it", now_ms())
        .await
        .unwrap();
    st.commit(tx).await.unwrap();
}

/// Moves run `id` through the states of a plan and an apply (its tasks are not the point
/// here); the last move is the one the hook sees.
async fn apply(st: &Store, id: &str) {
    use RunState::*;
    for (from, to) in [
        (Queued, Planning),
        (Planning, Planned),
        (Planned, Approved),
        (Approved, Applying),
        (Applying, Applied),
    ] {
        let mut tx = st.begin().await.unwrap();
        transition(&mut tx, id, from, to, "test", "", now_ms())
            .await
            .unwrap();
        st.commit(tx).await.unwrap();
    }
}

#[tokio::test]
async fn a_ttl_run_is_reminded_torn_down_retried_and_reported_failed() {
    for (name, mut st, _g, _d) in stores().await {
        st.set_keys(keys(), 0).await.unwrap();
        let ttl = ttl();
        st.add_hook(ttl.clone());
        let hook = crate::store::Webhook {
            name: "h".into(),
            url: "https://example.com/x".into(),
            workspaces: vec!["**".into()],
            events: vec!["ttl_near".into(), "teardown_failed".into()],
            enabled: true,
            ..Default::default()
        };
        let hook = crate::webhooks::checked(hook).unwrap();
        st.create_webhook(&hook, "a-secret-of-16-chars", "alice")
            .await
            .unwrap();
        let mut n = new_run("env/a", true);
        n.ttl_ms = 3_600_000;
        let run = st.submit(n, &policy()).await.unwrap();
        apply(&st, &run.id).await;
        let e = st.environment("env/a").await.unwrap();
        assert_eq!(
            (e.state, e.source_run.as_str()),
            (EnvState::Active, run.id.as_str()),
            "{name}"
        );
        assert!(e.expires_ms > now_ms() + 3_500_000, "{name}");

        // Not due: nothing. A minute before: the reminder, once.
        assert!(
            ttl.sweep_at(&st, now_ms()).await.unwrap().is_empty(),
            "{name}"
        );
        let soon = e.expires_ms - 30_000;
        assert_eq!(ttl.sweep_at(&st, soon).await.unwrap().len(), 1, "{name}");
        assert!(
            ttl.sweep_at(&st, soon).await.unwrap().is_empty(),
            "{name}: once"
        );
        assert!(st.environment("env/a").await.unwrap().reminder_sent);

        // Expired: a destroy run like the apply, auto-approved and tagged.
        let at = e.expires_ms + 10;
        assert_eq!(ttl.sweep_at(&st, at).await.unwrap().len(), 1, "{name}");
        let e = st.environment("env/a").await.unwrap();
        assert_eq!(e.state, EnvState::TearingDown, "{name}");
        let d = st.get_run(&e.destroy_run).await.unwrap();
        assert_eq!((d.kind, d.auto_approve), (RunKind::Destroy, true), "{name}");
        assert_eq!(d.variables, run.variables, "{name}: the apply's variables");
        assert_eq!(d.var_files, run.var_files, "{name}");
        assert_eq!(d.tags.get("ttl").map(String::as_str), Some("expired"));
        assert!(
            ttl.sweep_at(&st, at).await.unwrap().is_empty(),
            "{name}: one at a time"
        );

        // It fails: a retry after the backoff, then teardown_failed.
        expire(&st, &d.id).await;
        let e = st.environment("env/a").await.unwrap();
        assert_eq!((e.state, e.attempts), (EnvState::TearingDown, 1), "{name}");
        assert!(e.destroy_run.is_empty() && e.last_error.contains("ended expired"));
        assert!(ttl
            .sweep_at(&st, e.next_attempt_ms - 1)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(ttl.sweep_at(&st, e.next_attempt_ms).await.unwrap().len(), 1);
        let e = st.environment("env/a").await.unwrap();
        expire(&st, &e.destroy_run).await;
        let e = st.environment("env/a").await.unwrap();
        assert_eq!(
            (e.state, e.attempts),
            (EnvState::TeardownFailed, 2),
            "{name}"
        );
        assert!(ttl
            .sweep_at(&st, now_ms() + 10_000_000)
            .await
            .unwrap()
            .is_empty());
        let sent: Vec<String> = st
            .webhook_deliveries("h", 10)
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.event)
            .collect();
        assert!(sent.contains(&"ttl_near".to_string()), "{name}: {sent:?}");
        assert!(
            sent.contains(&"teardown_failed".to_string()),
            "{name}: {sent:?}"
        );
        let f = AuditFilter {
            workspace: "env/a".into(),
            kind: Some(crate::audit::AuditKind::EnvironmentTeardownFailed),
            limit: 10,
            ..Default::default()
        };
        assert_eq!(st.audit_entries(&f).await.unwrap().len(), 1, "{name}");
        let counts = st.environment_counts().await.unwrap();
        assert!(
            counts.contains(&(EnvState::TeardownFailed, 1)),
            "{name}: {counts:?}"
        );
        // A failed one cannot be extended.
        let err = st
            .extend_environment("env/a", Extend::By(1_000), "bob")
            .await;
        assert!(err.unwrap_err().to_string().contains("only an active one"));
    }
}

#[tokio::test]
async fn an_applied_destroy_marks_it_destroyed_and_extend_moves_the_deadline() {
    for (name, mut st, _g, _d) in stores().await {
        st.set_keys(keys(), 0).await.unwrap();
        let ttl = ttl();
        st.add_hook(ttl.clone());
        let mut n = new_run("env/b", true);
        n.ttl_ms = 60_000;
        let run = st.submit(n, &policy()).await.unwrap();
        apply(&st, &run.id).await;
        let e = st.environment("env/b").await.unwrap();
        let x = st
            .extend_environment("env/b", Extend::By(5_000), "bob")
            .await
            .unwrap();
        assert_eq!(x.expires_ms, e.expires_ms + 5_000, "{name}");
        let before = now_ms();
        let x = st
            .extend_environment("env/b", Extend::Ttl(1_000), "bob")
            .await
            .unwrap();
        assert!(x.expires_ms >= before + 1_000 && x.expires_ms <= now_ms() + 1_000);
        // A stale copy changes nothing.
        let mut u = EnvUpdate::of(&e);
        u.state = EnvState::Destroyed;
        let mut c = st.pool.acquire().await.unwrap();
        assert!(
            !update_environment(&mut c, &e, &u, now_ms()).await.unwrap(),
            "{name}"
        );
        drop(c);

        assert_eq!(
            ttl.sweep_at(&st, x.expires_ms).await.unwrap().len(),
            1,
            "{name}"
        );
        let e = st.environment("env/b").await.unwrap();
        apply(&st, &e.destroy_run).await;
        let e = st.environment("env/b").await.unwrap();
        assert_eq!(e.state, EnvState::Destroyed, "{name}");
        assert!(ttl
            .sweep_at(&st, now_ms() + 10_000_000)
            .await
            .unwrap()
            .is_empty());
        let missing = st.environment("env/none").await.unwrap_err();
        assert!(missing.to_string().contains("has no TTL"), "{name}");
    }
}
