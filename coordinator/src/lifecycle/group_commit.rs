//! Group commit of submits: submits that arrive together share one transaction, each in a
//! savepoint of its own, so durability costs one commit (one fsync) per group, not per submit.
//! A submit is answered only after the transaction holding it has committed, so every answered
//! submit survives a crash. One submit's error (a refused value, a duplicate idempotency key)
//! rolls back only its savepoint and is its answer alone; a submit that met a deadlock or a
//! serialization failure in a group is done again alone after the group. Within a group
//! workspaces are taken in name order, so two groups never wait for each other in a cycle.
//! Started by `lib.rs` once the store's hooks are installed; without it (store tests) each
//! submit is its own transaction.

use super::submit::insert_run;
use crate::error::{Error, Result};
use crate::store::*;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Submits in one group, at most.
const GROUP: usize = 64;
/// Group committers on PostgreSQL (each holds one connection while it writes a group).
const PG_COMMITTERS: usize = 4;
/// Submits waiting for a group, at most (then a submit waits to be queued).
const WAITING: usize = 4096;

/// A submit waiting for its group.
pub(crate) struct Job {
    new: NewRun,
    policy: Policy,
    answer: oneshot::Sender<Result<Run>>,
}

/// Where submits wait for the next group.
pub(crate) type Queue = Arc<std::sync::OnceLock<mpsc::Sender<Job>>>;

impl Store {
    /// Starts the group committers: from now on every clone of this store submits through
    /// them. Call it once the before-commit hooks are installed (they commit with them). One
    /// on SQLite (one writer at a time anyway); [`PG_COMMITTERS`] on PostgreSQL, whose
    /// connections work in parallel. They stop with `stop`, once the submits already waiting
    /// are committed and answered.
    pub fn start_group_commit(&self, tracker: &TaskTracker, stop: CancellationToken) {
        let (tx, rx) = mpsc::channel(WAITING);
        if self.submits.set(tx).is_err() {
            return;
        }
        let rx = Arc::new(Mutex::new(rx));
        let committers = if self.postgres { PG_COMMITTERS } else { 1 };
        for _ in 0..committers {
            tracker.spawn(self.clone().commit_groups(rx.clone(), stop.clone()));
        }
    }

    /// A submit through the group committer when it runs; otherwise in its own transaction.
    pub(crate) async fn submit_grouped(&self, new: NewRun, policy: &Policy) -> Result<Run> {
        let Some(queue) = self.submits.get() else {
            return self.submit_alone(&new, policy).await;
        };
        let (answer, answered) = oneshot::channel();
        let job = Job {
            new,
            policy: policy.clone(),
            answer,
        };
        let stopped = || unavailable("the coordinator is stopping: retry");
        queue.send(job).await.map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())?
    }

    /// Creates a run in a transaction of its own.
    pub(crate) async fn submit_alone(&self, n: &NewRun, policy: &Policy) -> Result<Run> {
        let mut tx = self.begin().await?;
        let run = insert_run(&mut tx, n, policy).await?;
        self.commit(tx).await?;
        Ok(run)
    }

    /// Takes what is waiting (up to [`GROUP`]) as one group, commits it, answers, again.
    async fn commit_groups(self, rx: Arc<Mutex<mpsc::Receiver<Job>>>, stop: CancellationToken) {
        while let Some(group) = next_group(&rx, &stop).await {
            self.commit_group(group).await;
        }
    }

    async fn commit_group(&self, mut group: Vec<Job>) {
        group.sort_by(|a, b| a.new.workspace.cmp(&b.new.workspace));
        if group.len() == 1 {
            let job = group.remove(0);
            let r = self.submit_alone(&job.new, &job.policy).await;
            if r.is_ok() {
                crate::metrics::recorded().submit_group(1);
            }
            let _ = job.answer.send(r);
            return;
        }
        let results = match self.write_group(&group).await {
            Ok(results) => results,
            // An error before or at the commit: the group is answered with it, as a lone
            // submit would be (never done again: a commit that failed may have committed).
            Err(e) => {
                let msg = e.to_string();
                group.iter().map(|_| Err(group_error(&e, &msg))).collect()
            }
        };
        for (job, r) in group.into_iter().zip(results) {
            let r = match r {
                Err(e) if transient(&e) => self.submit_alone(&job.new, &job.policy).await,
                r => r,
            };
            let _ = job.answer.send(r);
        }
    }

    /// Writes every submit of the group in one transaction (a savepoint each) and commits;
    /// each submit's own result, or the error that lost the whole group.
    async fn write_group(&self, group: &[Job]) -> Result<Vec<Result<Run>>> {
        let mut tx = self.begin().await?;
        let mut results = Vec::with_capacity(group.len());
        for job in group {
            sqlx::query("SAVEPOINT submit").execute(&mut *tx).await?;
            let mark = tx.mark();
            match insert_run(&mut tx, &job.new, &job.policy).await {
                Ok(run) => results.push(Ok(run)),
                Err(e) => {
                    sqlx::query("ROLLBACK TO SAVEPOINT submit")
                        .execute(&mut *tx)
                        .await?;
                    tx.rewind(mark);
                    results.push(Err(e));
                }
            }
            sqlx::query("RELEASE SAVEPOINT submit")
                .execute(&mut *tx)
                .await?;
        }
        self.commit(tx).await?;
        crate::metrics::recorded().submit_group(group.len());
        Ok(results)
    }
}

/// The next group: the first submit to arrive, and up to [`GROUP`] in all of those waiting
/// with it; `None` once `stop` is cancelled and nothing waits.
async fn next_group(rx: &Mutex<mpsc::Receiver<Job>>, stop: &CancellationToken) -> Option<Vec<Job>> {
    let mut rx = rx.lock().await;
    let first = tokio::select! {
        biased;
        job = rx.recv() => job,
        _ = stop.cancelled() => None,
    }?;
    let mut group = vec![first];
    while group.len() < GROUP {
        match rx.try_recv() {
            Ok(job) => group.push(job),
            Err(_) => break,
        }
    }
    Some(group)
}

/// A deadlock or serialization failure (PostgreSQL 40P01, 40001): the submit is done again
/// alone.
fn transient(e: &Error) -> bool {
    match e {
        Error::Db(sqlx::Error::Database(d)) => {
            matches!(d.code().as_deref(), Some("40P01") | Some("40001"))
        }
        _ => false,
    }
}

/// The error that lost a whole group, for each of its submits (a database error cannot be
/// cloned: one that means the database is unreachable stays so, others become internal).
fn group_error(e: &Error, msg: &str) -> Error {
    match e {
        Error::Db(d) if crate::error::unreachable(d) => unavailable(msg),
        _ => Error::Internal(format!("the submit's group could not be committed: {msg}")),
    }
}

/// An error the caller may retry (gRPC UNAVAILABLE, HTTP 503).
fn unavailable(msg: &str) -> Error {
    Error::Db(sqlx::Error::Io(std::io::Error::other(msg.to_string())))
}
