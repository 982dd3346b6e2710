//! The run-event seam: the before-commit hook writes in the same transaction and can roll it back; effects after commit.

use super::*;

/// A hook that records, in the same transaction, every run it sees rejected.
struct NoteRejected;

#[tonic::async_trait]
impl crate::lifecycle::events::OnRunEvents for NoteRejected {
    async fn on_run_events(
        &self,
        _store: &Store,
        tx: &mut Tx,
        events: &[crate::runs::events::RunEvent],
    ) -> Result<()> {
        for e in events {
            if let crate::runs::events::RunEvent::Moved {
                run_id,
                to: RunState::Rejected,
                ..
            } = e
            {
                note(
                    tx,
                    run_id,
                    RunState::Rejected,
                    "hook",
                    "seen in the same transaction",
                    now_ms(),
                )
                .await?;
            }
            if let crate::runs::events::RunEvent::Moved {
                to: RunState::Cancelled,
                ..
            } = e
            {
                return Err(Error::Conflict("the hook refuses cancels".into()));
            }
        }
        Ok(())
    }
}

#[tokio::test]
async fn the_before_commit_hook_reacts_in_the_same_transaction_and_can_roll_it_back() {
    for (name, mut st, _g, _d) in stores().await {
        st.add_hook(std::sync::Arc::new(NoteRejected));
        let p = policy();
        let mut watch = st.subscribe();
        let run = st.submit(new_run("hook/a", false), &p).await.unwrap();
        assert_eq!(
            watch.recv().await.unwrap().run_id,
            run.id,
            "{name}: watchers told after commit"
        );
        let env = opened(&st.unsent(1).await.unwrap()[0].payload);
        let g = st
            .claim("a1", &env.task_id, 1, &env.id, &p)
            .await
            .unwrap()
            .granted()
            .unwrap();
        st.complete_task(
            &complete(
                &g.task,
                g.epoch,
                &g.lease_token,
                v1::Outcome::Succeeded,
                true,
            ),
            &p,
        )
        .await
        .unwrap();
        st.reject(&run.id, "bob", "no").await.unwrap();
        let t = st.transitions(&run.id).await.unwrap();
        let last = t.last().unwrap();
        assert_eq!(
            (last.actor.as_str(), last.reason.as_str()),
            ("hook", "seen in the same transaction"),
            "{name}: the hook wrote in the rejecting transaction"
        );
        // A hook error rolls the whole command back.
        let other = st.submit(new_run("hook/b", false), &p).await.unwrap();
        assert!(st.cancel(&other.id, "carol", "").await.is_err(), "{name}");
        assert_eq!(
            st.get_run(&other.id).await.unwrap().state,
            RunState::Queued,
            "{name}: nothing of the cancel was committed"
        );
        assert_eq!(
            st.ended_counts().get("rejected"),
            Some(&1),
            "{name}: ended runs are counted after commit"
        );
        assert_eq!(
            st.ended_counts().get("cancelled"),
            None,
            "{name}: a rolled-back end is not counted"
        );
    }
}

/// A hook that records that it ran, asks for a wake-up after the commit, and fails when told.
struct Record {
    label: &'static str,
    calls: std::sync::Arc<std::sync::Mutex<Vec<&'static str>>>,
    wake: std::sync::Arc<tokio::sync::Notify>,
    fail_on: String,
}

#[tonic::async_trait]
impl crate::lifecycle::events::OnRunEvents for Record {
    async fn on_run_events(
        &self,
        _store: &Store,
        tx: &mut Tx,
        events: &[crate::runs::events::RunEvent],
    ) -> Result<()> {
        self.calls.lock().unwrap().push(self.label);
        tx.wake_after_commit(self.wake.clone());
        if events.iter().any(|e| e.run_id() == self.fail_on) {
            return Err(Error::Conflict("refused by the hook".into()));
        }
        Ok(())
    }
}

#[tokio::test]
async fn hooks_run_in_the_order_added_and_wake_only_after_a_commit() {
    for (name, mut st, _g, _d) in stores().await {
        let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let wake = std::sync::Arc::new(tokio::sync::Notify::new());
        for label in ["first", "second"] {
            st.add_hook(std::sync::Arc::new(Record {
                label,
                calls: calls.clone(),
                wake: wake.clone(),
                fail_on: String::new(),
            }));
        }
        let p = policy();
        st.submit(new_run("hooks/a", false), &p).await.unwrap();
        assert_eq!(*calls.lock().unwrap(), ["first", "second"], "{name}");
        let woken = tokio::time::timeout(std::time::Duration::ZERO, wake.notified());
        // A notify_one before anyone waits leaves a permit: the wait ends at its first poll.
        assert!(woken.await.is_ok(), "{name}: woken after the commit");

        let run = st.submit(new_run("hooks/b", false), &p).await.unwrap();
        let refusing = std::sync::Arc::new(tokio::sync::Notify::new());
        st.add_hook(std::sync::Arc::new(Record {
            label: "third",
            calls: calls.clone(),
            wake: refusing.clone(),
            fail_on: run.id.clone(),
        }));
        assert!(st.cancel(&run.id, "carol", "").await.is_err(), "{name}");
        let woken = tokio::time::timeout(std::time::Duration::ZERO, refusing.notified());
        assert!(
            woken.await.is_err(),
            "{name}: no wake-up for a rolled-back transaction"
        );
    }
}
