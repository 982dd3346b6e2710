//! A task's ID token: minted in the claim's transaction, minted again when a heartbeat renews
//! a lease whose token is past half its life. Touches: identities (read), oidc_keys (read),
//! id_tokens, task_attempts (read).
//!
//! The token's `exp` is `iat + --oidc-token-ttl`, cut at the signing key's last valid moment
//! and, when the run sets a timeout, at the end of the task's time budget (claim + timeout +
//! one minute for the cancel's grace): no token outlives the task it was made for. Renewals
//! stop with the lease (a lost lease is not renewed).

use crate::error::Result;
use crate::oidc::claims::{subject, TaskFacts};
use crate::oidc::identities::most_specific;
use crate::oidc::{Azure, Gcp, IdClaims, TokenWindow};
use crate::store::*;
use sqlx::AnyConnection;

/// Time a cancelled task is given to stop, past its timeout, during which it keeps its token.
const CANCEL_GRACE_MS: i64 = 60_000;

/// A task's ID token and what the workspace's identity configuration says to present it to.
#[derive(Clone, PartialEq)]
pub struct IssuedIdentity {
    /// The signed JWT: a secret, never logged.
    pub token: String,
    pub window: TokenWindow,
    /// The AWS role for the task's phase.
    pub aws_role_arn: Option<String>,
    pub gcp: Option<Gcp>,
    pub azure: Option<Azure>,
}

impl std::fmt::Debug for IssuedIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedIdentity")
            .field("token", &"[masked]")
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

/// A fresh token for a task whose lease a heartbeat renewed.
#[derive(Clone, PartialEq)]
pub struct RenewedToken {
    pub task_id: String,
    pub token: String,
    pub window: TokenWindow,
}

impl std::fmt::Debug for RenewedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenewedToken")
            .field("task_id", &self.task_id)
            .field("token", &"[masked]")
            .field("window", &self.window)
            .finish()
    }
}

/// The end of a task's time budget when its run sets a timeout (0: none).
fn budget_end(run: &Run, claimed_ms: i64) -> i64 {
    match run.limits.timeout_secs {
        0 => 0,
        t => claimed_ms + (t as i64) * 1000 + CANCEL_GRACE_MS,
    }
}

impl Store {
    /// Mints and records an ID token for `task` of `run` (claimed at `claimed_ms`), with the
    /// audience and cloud settings of the workspace's most specific identity configuration.
    pub(crate) async fn issue_identity(
        &self,
        c: &mut AnyConnection,
        task: &Task,
        run: &Run,
        claimed_ms: i64,
        now: i64,
    ) -> Result<IssuedIdentity> {
        let all = identities_c(c).await?;
        let conf = most_specific(&all, &run.workspace);
        let cfg = &self.oidc.config;
        let audience = conf
            .and_then(|i| i.audience.clone())
            .unwrap_or_else(|| cfg.default_audience.clone());
        let key = self.oidc.active_key(c, &self.keys, now).await?;
        let bounds = [key.verify_until_ms, budget_end(run, claimed_ms)];
        let window = TokenWindow::new(now, cfg.token_ttl_ms, &bounds);
        let facts = TaskFacts {
            workspace: &run.workspace,
            run_id: &run.id,
            task_id: &task.id,
            phase: task.phase,
            actor: &run.submitted_by,
            pipeline: &run.pipeline_id,
            commit: &run.commit,
            bundle_digest: &run.bundle_digest,
            tags: &run.tags,
        };
        let jti = uuid::Uuid::new_v4().to_string();
        let claims = IdClaims::for_task(&cfg.issuer, &audience, &facts, window, jti);
        let token = sign_id_token(&key, &claims)?;
        let record = IssuedRecord {
            jti: &claims.jti,
            task_id: &task.id,
            attempt: task.attempt,
            key_id: &key.id,
            audience: &audience,
            subject: &subject(&run.workspace, task.phase),
            window,
        };
        record_id_token(c, &record).await?;
        Ok(IssuedIdentity {
            token,
            window,
            aws_role_arn: conf
                .and_then(|i| i.aws.as_ref())
                .map(|r| r.for_phase(task.phase).to_string()),
            gcp: conf.and_then(|i| i.gcp.clone()),
            azure: conf.and_then(|i| i.azure.clone()),
        })
    }

    /// A fresh token for `task` (whose lease was just renewed) when its newest one has less
    /// than half its life left and a new one would live longer; `None` otherwise.
    pub(crate) async fn renew_id_token(
        &self,
        c: &mut AnyConnection,
        task: &Task,
        now: i64,
    ) -> Result<Option<RenewedToken>> {
        let Some(last) = latest_id_token(c, &task.id, task.attempt).await? else {
            return Ok(None);
        };
        if !last.needs_renewal(now) {
            return Ok(None);
        }
        let claimed =
            sqlx::query("SELECT claimed_ms FROM task_attempts WHERE task_id = $1 AND attempt = $2")
                .bind(&task.id)
                .bind(task.attempt as i64)
                .fetch_optional(&mut *c)
                .await?;
        let claimed_ms = match &claimed {
            Some(r) => i(r, "claimed_ms")?,
            None => return Ok(None),
        };
        let run = get_run_c(&self.keys, c, &task.run_id).await?;
        let end = budget_end(&run, claimed_ms);
        if end > 0 && end <= last.expires_ms {
            return Ok(None); // the last token already lives to the end of the budget
        }
        let issued = self.issue_identity(c, task, &run, claimed_ms, now).await?;
        Ok(Some(RenewedToken {
            task_id: task.id.clone(),
            token: issued.token,
            window: issued.window,
        }))
    }
}
