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
