//! How a lifecycle command ends: [`Store::commit`]. Before the commit, the hooks
//! ([`OnRunEvents`]: the workflow engine, webhook notifications), in the order they were added,
//! may react to the transaction's run events in that same transaction, so a dependant starts
//! (or a notification is queued) exactly when its upstream ends, with no polling; then the
//! transaction commits; then, in one place, the effects: the outbox publisher is woken for
//! queued tasks, the waiters a hook asked for are woken, watchers of runs and logs are told,
//! and ended runs are counted for `/metrics`.
//! The transaction's audit entries are appended last before the commit.
//! No caller has to remember any of it.

use crate::error::Result;
use crate::runs::events::RunEvent;
use crate::runs::RunState;
use crate::store::{RunChange, Store, Tx};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Reacts to run events inside the transaction that produced them (before it commits). An error
/// rolls the whole transaction back.
#[tonic::async_trait]
pub trait OnRunEvents: Send + Sync {
    async fn on_run_events(&self, store: &Store, tx: &mut Tx, events: &[RunEvent]) -> Result<()>;
}

/// What the after-commit effects need: the publisher's wake-up, and counts of ended runs.
#[derive(Clone, Default)]
pub struct Effects {
    pub wake: Arc<tokio::sync::Notify>,
    pub ended: Arc<Mutex<BTreeMap<&'static str, u64>>>,
    /// The before-commit hooks, called in the order they were added.
    pub hooks: Vec<Arc<dyn OnRunEvents>>,
}

impl Store {
    /// Commits a lifecycle command's transaction: the hooks first (same transaction; each sees
    /// the events collected before it ran), then the commit, then the effects of its run events.
    pub async fn commit(&self, mut tx: Tx) -> Result<()> {
        for hook in self.effects.hooks.clone() {
            let events = tx.events().to_vec();
            if !events.is_empty() {
                hook.on_run_events(self, &mut tx, &events).await?;
            }
        }
        let events = std::mem::take(&mut tx.events);
        // Last before the commit: on PostgreSQL the append lock is held only from here on.
        let audit = std::mem::take(&mut tx.audit);
        crate::store::append_audit(&mut tx.inner, self.is_postgres(), &audit).await?;
        let wakes = std::mem::take(&mut tx.wakes);
        tx.inner.commit().await?;
        for w in wakes {
            w.notify_one();
        }
        self.after_commit(&events);
        Ok(())
    }

    /// The effects of committed run events (never fails: they only wake and count).
    fn after_commit(&self, events: &[RunEvent]) {
        let mut told = std::collections::BTreeSet::new();
        for e in events {
            if let RunEvent::TaskQueued { .. } = e {
                self.effects.wake.notify_one();
            }
            if let RunEvent::Moved { to, .. } = e {
                if is_end(*to) {
                    if let Ok(mut m) = self.effects.ended.lock() {
                        *m.entry(to.as_str()).or_default() += 1;
                    }
                }
            }
            let state = e.changes_run();
            if told.insert((e.run_id().to_string(), state)) {
                let _ = self.changes.send(RunChange {
                    run_id: e.run_id().to_string(),
                    state,
                });
            }
        }
    }

    /// Runs ended in this process since it started, by final state (for `/metrics`).
    pub fn ended_counts(&self) -> BTreeMap<&'static str, u64> {
        self.effects
            .ended
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }

    /// The outbox publisher's wake-up: notified after every commit that queued a task.
    pub fn publisher_wake(&self) -> Arc<tokio::sync::Notify> {
        self.effects.wake.clone()
    }

    /// Adds a before-commit hook (after those already added). Clones of the store made
    /// before do not have it: add hooks before handing the store out.
    pub fn add_hook(&mut self, hook: Arc<dyn OnRunEvents>) {
        self.effects.hooks.push(hook);
    }
}

/// States that end a run whatever its kind (`planned` ends a plan-only run too, but is also a
/// step of the others, so it is not counted here).
fn is_end(s: RunState) -> bool {
    matches!(
        s,
        RunState::Applied
            | RunState::PlannedNoChanges
            | RunState::Failed
            | RunState::Cancelled
            | RunState::Rejected
            | RunState::Interrupted
            | RunState::Expired
    )
}
