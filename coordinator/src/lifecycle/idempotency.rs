//! Idempotency keys of submits and workflow starts: a request retried with the same key (by the
//! same actor, within [`IDEMPOTENCY_KEEP_MS`]) is answered with what the first one made; the same
//! key with another request is refused. Touches: idempotency_keys, workflow_idempotency_keys.

use crate::error::{Error, Result};
use crate::store::*;
use std::future::Future;

/// How long an idempotency key is remembered.
pub const IDEMPOTENCY_KEEP_MS: i64 = 24 * 3600 * 1000;

/// What a key makes: a run (a submit) or a workflow run (a start).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Keyed {
    Run,
    WorkflowRun,
}

impl Keyed {
    const ALL: [Keyed; 2] = [Keyed::Run, Keyed::WorkflowRun];

    fn table(self) -> &'static str {
        match self {
            Keyed::Run => "idempotency_keys",
            Keyed::WorkflowRun => "workflow_idempotency_keys",
        }
    }

    fn id_column(self) -> &'static str {
        match self {
            Keyed::Run => "run_id",
            Keyed::WorkflowRun => "workflow_run_id",
        }
    }

    /// The request, and what it makes, in the user's words.
    fn words(self) -> (&'static str, &'static str) {
        match self {
            Keyed::Run => ("request", "run"),
            Keyed::WorkflowRun => ("workflow start", "workflow run"),
        }
    }
}

/// Records the request's key with what it made, in the request's transaction: a concurrent
/// request with the same key fails on the key's primary key and is answered from it.
pub(crate) async fn remember_key(
    tx: &mut Tx,
    keyed: Keyed,
    actor: &str,
    k: Option<&Idempotency>,
    id: &str,
    now: i64,
) -> Result<()> {
    let Some(k) = k else {
        return Ok(());
    };
    let sql = format!(
        "INSERT INTO {} (actor, idem_key, request_sha256, {}, created_ms) VALUES ($1, $2, $3, $4, $5)",
        keyed.table(),
        keyed.id_column()
    );
    sqlx::query(&sql)
        .bind(actor)
        .bind(&k.key)
        .bind(&k.request_sha256)
        .bind(id)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

impl Store {
    /// `make`, unless a request with the same key came first: then what it made (`load`ed by
    /// its id), or a refusal when that request differed. Two at once: one writes the key, the
    /// other is answered from it.
    pub(crate) async fn once<T, L, F>(
        &self,
        keyed: Keyed,
        actor: &str,
        k: Option<&Idempotency>,
        make: impl Future<Output = Result<T>>,
        load: L,
    ) -> Result<T>
    where
        L: Fn(String) -> F,
        F: Future<Output = Result<T>>,
    {
        let Some(k) = k else {
            return make.await;
        };
        if let Some(id) = self.made_before(keyed, actor, k).await? {
            return load(id).await;
        }
        match make.await {
            Err(Error::Db(sqlx::Error::Database(e))) if e.is_unique_violation() => {
                match self.made_before(keyed, actor, k).await? {
                    Some(id) => load(id).await,
                    None => Err(Error::Conflict(format!(
                        "a {} with this idempotency key is in flight; retry",
                        keyed.words().0
                    ))),
                }
            }
            other => other,
        }
    }

    /// The id of what an earlier request with this key made, if there was one.
    async fn made_before(
        &self,
        keyed: Keyed,
        actor: &str,
        k: &Idempotency,
    ) -> Result<Option<String>> {
        let sql = format!(
            "SELECT request_sha256, {} AS made FROM {} WHERE actor = $1 AND idem_key = $2 AND created_ms > $3",
            keyed.id_column(),
            keyed.table()
        );
        let row = sqlx::query(&sql)
            .bind(actor)
            .bind(&k.key)
            .bind(now_ms() - IDEMPOTENCY_KEEP_MS)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        if s(&row, "request_sha256")? != k.request_sha256 {
            let (request, made) = keyed.words();
            return Err(Error::Unprocessable(format!(
                "idempotency key {:?} was used for a different {request}: use a new key for a new {made}",
                k.key
            )));
        }
        Ok(Some(s(&row, "made")?))
    }

    /// Forgets idempotency keys (of submits and of workflow starts) older than
    /// [`IDEMPOTENCY_KEEP_MS`]; returns how many.
    pub(crate) async fn forget_idempotency_keys(&self, now: i64) -> Result<u64> {
        let mut n = 0;
        for keyed in Keyed::ALL {
            let sql = format!("DELETE FROM {} WHERE created_ms <= $1", keyed.table());
            let r = sqlx::query(&sql)
                .bind(now - IDEMPOTENCY_KEEP_MS)
                .execute(&self.pool)
                .await?;
            n += r.rows_affected();
        }
        Ok(n)
    }
}
