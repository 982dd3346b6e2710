//! A store transaction that carries the run events of what it changes. Lifecycle commands open
//! one ([`Store::begin`]), write through it like a connection, and end it with
//! [`Store::commit`] (in `lifecycle/events.rs`), which lets the before-commit hook react in the
//! same transaction and applies the after-commit effects.

use super::*;
use crate::runs::events::RunEvent;

/// How many events, audit entries and wake-ups a transaction had collected at a savepoint.
#[derive(Clone, Copy)]
pub(crate) struct Mark(usize, usize, usize);

/// A transaction with the run events it collected.
pub struct Tx {
    pub(crate) inner: sqlx::Transaction<'static, sqlx::Any>,
    pub(crate) events: Vec<RunEvent>,
    /// Audit entries appended just before the commit (`store/audit.rs`).
    pub(crate) audit: Vec<crate::audit::AuditEntry>,
    /// Signs the task messages this transaction queues, with the store's keys.
    pub(crate) signer: std::sync::Arc<Signer>,
    pub(crate) keys: std::sync::Arc<crypt::Keys>,
    /// Woken once the transaction has committed (a hook's loop that sends what it wrote).
    pub(crate) wakes: Vec<std::sync::Arc<tokio::sync::Notify>>,
}

impl Tx {
    /// Records a run event: it takes effect if and when the transaction commits.
    pub fn push(&mut self, e: RunEvent) {
        self.events.push(e);
    }

    /// Wakes `w` if and when the transaction commits (never before: what it would read is not
    /// visible until then).
    pub fn wake_after_commit(&mut self, w: std::sync::Arc<tokio::sync::Notify>) {
        if !self.wakes.iter().any(|x| std::sync::Arc::ptr_eq(x, &w)) {
            self.wakes.push(w);
        }
    }

    /// Where the transaction's collections stand (before a savepoint).
    pub(crate) fn mark(&self) -> Mark {
        Mark(self.events.len(), self.audit.len(), self.wakes.len())
    }

    /// Forgets what was collected since `m` (after rolling back to the savepoint taken there).
    pub(crate) fn rewind(&mut self, m: Mark) {
        self.events.truncate(m.0);
        self.audit.truncate(m.1);
        self.wakes.truncate(m.2);
    }

    /// The events collected so far.
    pub fn events(&self) -> &[RunEvent] {
        &self.events
    }
}

impl std::ops::Deref for Tx {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        &self.inner
    }
}

impl std::ops::DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.inner
    }
}

impl Store {
    /// Opens a transaction that collects run events.
    pub async fn begin(&self) -> Result<Tx> {
        Ok(Tx {
            inner: self.pool.begin().await?,
            events: Vec::new(),
            audit: Vec::new(),
            signer: self.signer.clone(),
            keys: self.keys.clone(),
            wakes: Vec::new(),
        })
    }
}
