//! Group commit: submits, claims, log batches and heartbeats holding leases that arrive
//! together share one transaction, each in a savepoint of its own, so durability costs one
//! commit (one fsync) per group, not per call. A call is answered only after the transaction
//! holding it has committed, so every answered submit (every granted lease, every acknowledged
//! log line, every renewed lease) survives a crash. One job's error (a refused value, a
//! duplicate idempotency key, a fenced lease) rolls back only its savepoint and is its answer
//! alone; a job that met a deadlock or a serialization failure in a group is done again alone
//! after the group. Within a group, log batches come first in task order, heartbeats next in
//! agent order, claims in task order and submits last in workspace order, so two groups never
//! wait for each other in a cycle. Each kind's job lives beside its command (`submit.rs`,
//! `claim.rs`, `report.rs`, `heartbeat.rs`). Started by `lib.rs` once the store's hooks are
//! installed; without it (store tests) each call is its own transaction.

use crate::error::{Error, Result};
use crate::store::*;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Jobs in one group, at most.
const GROUP: usize = 64;
/// Group committers on PostgreSQL (each holds one connection while it writes a group).
const PG_COMMITTERS: usize = 4;
/// Jobs waiting for a group, at most (then a call waits to be queued).
const WAITING: usize = 4096;

/// A job's writes, borrowing the job and the group's transaction.
pub(crate) type Writing<'a> = Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;

/// What a group holds: a log batch, a heartbeat holding leases, a claim or a submit (in this
/// order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    Log,
    Heartbeat,
    Claim,
    Submit,
}

/// One call waiting for its group: written in a savepoint of the group's transaction (or in one
/// of its own), and answered once that has committed.
pub(crate) trait Job: Send {
    fn kind(&self) -> Kind;
    /// What orders the jobs of one kind in a group (the rows they lock).
    fn key(&self) -> &str;
    /// Its writes into `tx`; what it answers is kept until [`Job::answer`].
    fn write<'a>(&'a mut self, store: &'a Store, tx: &'a mut Tx) -> Writing<'a>;
    /// Answers the caller: `Ok` once committed (with what the write kept), or the error.
    fn answer(self: Box<Self>, r: Result<()>);
}

/// Where jobs wait for the next group.
pub(crate) type Queue = Arc<std::sync::OnceLock<mpsc::Sender<Box<dyn Job>>>>;

impl Store {
    /// Starts the group committers: from now on every clone of this store submits, claims,
    /// stores log batches and renews leases through them. Call it once the before-commit hooks are installed (they
    /// commit with them). One on SQLite (one writer at a time anyway); [`PG_COMMITTERS`] on
    /// PostgreSQL, whose connections work in parallel. They stop with `stop`, once the jobs
    /// already waiting are committed and answered.
    pub fn start_group_commit(&self, tracker: &TaskTracker, stop: CancellationToken) {
        let (tx, rx) = mpsc::channel(WAITING);
        if self.group_commit.set(tx).is_err() {
            return;
        }
        let rx = Arc::new(Mutex::new(rx));
        let committers = if self.postgres { PG_COMMITTERS } else { 1 };
        for _ in 0..committers {
            tracker.spawn(self.clone().commit_groups(rx.clone(), stop.clone()));
        }
    }

    /// Puts `job` in the next group when the group committer runs (otherwise writes it alone)
    /// and waits for its answer.
    pub(crate) async fn grouped<T>(
        &self,
        job: Box<dyn Job>,
        answered: oneshot::Receiver<Result<T>>,
    ) -> Result<T> {
        let stopped = || unavailable("the coordinator is stopping: retry");
        match self.group_commit.get() {
            Some(queue) => queue.send(job).await.map_err(|_| stopped())?,
            None => self.alone(job).await,
        }
        answered.await.map_err(|_| stopped())?
    }

    /// Writes `job` in a transaction of its own and answers it.
    async fn alone(&self, mut job: Box<dyn Job>) {
        let r = async {
            let mut tx = self.begin().await?;
            job.write(self, &mut tx).await?;
            self.commit(tx).await
        }
        .await;
        if r.is_ok() {
            record(&[job.kind()]);
        }
        job.answer(r);
    }

    /// Takes what is waiting (up to [`GROUP`]) as one group, commits it, answers, again.
    async fn commit_groups(
        self,
        rx: Arc<Mutex<mpsc::Receiver<Box<dyn Job>>>>,
        stop: CancellationToken,
    ) {
        while let Some(group) = next_group(&rx, &stop).await {
            self.commit_group(group).await;
        }
    }

    async fn commit_group(&self, mut group: Vec<Box<dyn Job>>) {
        if group.len() == 1 {
            return self.alone(group.remove(0)).await;
        }
        group.sort_by(|a, b| (a.kind(), a.key()).cmp(&(b.kind(), b.key())));
        let results = match self.write_group(&mut group).await {
            Ok(results) => results,
            // An error before or at the commit: the group is answered with it, as a lone
            // call would be (never done again: a commit that failed may have committed).
            Err(e) => {
                let msg = e.to_string();
                group.iter().map(|_| Err(group_error(&e, &msg))).collect()
            }
        };
        for (job, r) in group.into_iter().zip(results) {
            match r {
                Err(e) if transient(&e) => self.alone(job).await,
                r => job.answer(r),
            }
        }
    }

    /// Writes every job of the group in one transaction (a savepoint each) and commits; each
    /// job's own result, or the error that lost the whole group.
    async fn write_group(&self, group: &mut [Box<dyn Job>]) -> Result<Vec<Result<()>>> {
        let mut tx = self.begin().await?;
        let mut results = Vec::with_capacity(group.len());
        for job in group.iter_mut() {
            sqlx::query("SAVEPOINT job").execute(&mut *tx).await?;
            let mark = tx.mark();
            match job.write(self, &mut tx).await {
                Ok(()) => results.push(Ok(())),
                Err(e) => {
                    sqlx::query("ROLLBACK TO SAVEPOINT job")
                        .execute(&mut *tx)
                        .await?;
                    tx.rewind(mark);
                    results.push(Err(e));
                }
            }
            sqlx::query("RELEASE SAVEPOINT job")
                .execute(&mut *tx)
                .await?;
        }
        self.commit(tx).await?;
        record(&group.iter().map(|j| j.kind()).collect::<Vec<_>>());
        Ok(results)
    }
}

/// Counts a committed group in `/metrics`: its submits, log batches, heartbeats and claims.
fn record(kinds: &[Kind]) {
    let n = |k: Kind| kinds.iter().filter(|x| **x == k).count();
    crate::metrics::recorded().group([
        n(Kind::Submit),
        n(Kind::Claim),
        n(Kind::Log),
        n(Kind::Heartbeat),
    ]);
}

/// The next group: the first job to arrive, and up to [`GROUP`] in all of those waiting with
/// it; `None` once `stop` is cancelled and nothing waits.
async fn next_group(
    rx: &Mutex<mpsc::Receiver<Box<dyn Job>>>,
    stop: &CancellationToken,
) -> Option<Vec<Box<dyn Job>>> {
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

/// A deadlock or serialization failure (PostgreSQL 40P01, 40001): the job is done again alone.
fn transient(e: &Error) -> bool {
    match e {
        Error::Db(sqlx::Error::Database(d)) => {
            matches!(d.code().as_deref(), Some("40P01") | Some("40001"))
        }
        _ => false,
    }
}

/// The error that lost a whole group, for each of its jobs (a database error cannot be
/// cloned: one that means the database is unreachable stays so, others become internal).
fn group_error(e: &Error, msg: &str) -> Error {
    match e {
        Error::Db(d) if crate::error::unreachable(d) => unavailable(msg),
        _ => Error::Internal(format!(
            "the group's transaction could not be committed: {msg}"
        )),
    }
}

/// An error the caller may retry (gRPC UNAVAILABLE, HTTP 503).
fn unavailable(msg: &str) -> Error {
    Error::Db(sqlx::Error::Io(std::io::Error::other(msg.to_string())))
}
