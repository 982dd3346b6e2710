//! The `plan_policies` and `policy_verdicts` tables (migration 17): Rego plan policies
//! attached to workspace globs, with a version that grows on every change, and each run's
//! verdicts. Evaluation is in `lifecycle/policy.rs`; the combined decision in `runs/policy.rs`.

use super::*;
use crate::audit::{AuditEntry, AuditKind};
use sha2::Digest;
use tofuflow_proto::policy::Outcome;

/// A plan policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlanPolicy {
    pub name: String,
    /// The workspace glob it applies to.
    pub workspaces: String,
    /// The Rego source.
    pub source: String,
    /// sha256 of the source, hex.
    pub digest: String,
    /// 1 when added, then one more at every replacement.
    pub version: i64,
    pub description: String,
    pub updated_by: String,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// One policy's verdict on one run's plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyVerdict {
    pub policy: String,
    pub version: i64,
    pub digest: String,
    pub outcome: Outcome,
    pub deny: Vec<String>,
    pub warn: Vec<String>,
    /// Why the policy gave no verdict (a time limit, a failure), or empty.
    pub error: String,
    pub duration_us: i64,
    pub evaluated_ms: i64,
}

/// The sha256 of a policy's source, hex.
pub fn policy_digest(source: &str) -> String {
    hex::encode(sha2::Sha256::digest(source.as_bytes()))
}

fn policy_from_row(r: &sqlx::any::AnyRow) -> Result<PlanPolicy> {
    Ok(PlanPolicy {
        name: s(r, "name")?,
        workspaces: s(r, "workspaces")?,
        source: s(r, "source")?,
        digest: s(r, "digest")?,
        version: i(r, "version")?,
        description: s(r, "description")?,
        updated_by: s(r, "updated_by")?,
        created_ms: i(r, "created_ms")?,
        updated_ms: i(r, "updated_ms")?,
    })
}

fn verdict_from_row(r: &sqlx::any::AnyRow) -> Result<PolicyVerdict> {
    let outcome = s(r, "outcome")?;
    Ok(PolicyVerdict {
        policy: s(r, "policy")?,
        version: i(r, "version")?,
        digest: s(r, "digest")?,
        outcome: outcome
            .parse()
            .map_err(|e| Error::Internal(format!("policy_verdicts.outcome: {e}")))?,
        deny: json_col(&s(r, "deny")?, "policy_verdicts", "deny")?,
        warn: json_col(&s(r, "warn")?, "policy_verdicts", "warn")?,
        error: s(r, "error")?,
        duration_us: i(r, "duration_us")?,
        evaluated_ms: i(r, "evaluated_ms")?,
    })
}

fn no_policy(name: &str) -> Error {
    Error::NotFound(format!(
        "no plan policy {name:?} (tofuflow policy list shows them)"
    ))
}

impl Store {
    /// Adds policy `p.name`, or replaces it (its version grows by one); audited.
    pub async fn put_plan_policy(&self, p: &PlanPolicy, by: &str) -> Result<PlanPolicy> {
        let now = now_ms();
        let digest = policy_digest(&p.source);
        let mut tx = self.begin().await?;
        let old = sqlx::query("SELECT version, created_ms FROM plan_policies WHERE name = $1")
            .bind(&p.name)
            .fetch_optional(&mut *tx)
            .await?;
        let (version, created) = match &old {
            Some(r) => (i(r, "version")? + 1, i(r, "created_ms")?),
            None => (1, now),
        };
        sqlx::query("DELETE FROM plan_policies WHERE name = $1")
            .bind(&p.name)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO plan_policies (name, workspaces, source, digest, version, description, updated_by, created_ms, updated_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
            .bind(&p.name)
            .bind(&p.workspaces)
            .bind(&p.source)
            .bind(&digest)
            .bind(version)
            .bind(&p.description)
            .bind(by)
            .bind(created)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let detail = serde_json::json!({"policy": p.name, "workspaces": p.workspaces, "version": version, "digest": digest, "replaced": old.is_some()});
        tx.audit(AuditEntry::new(AuditKind::PolicyChanged, by).detail(detail));
        self.commit(tx).await?;
        self.plan_policy(&p.name).await
    }

    /// Policy `name`.
    pub async fn plan_policy(&self, name: &str) -> Result<PlanPolicy> {
        let row = sqlx::query("SELECT * FROM plan_policies WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| no_policy(name))?;
        policy_from_row(&row)
    }

    /// Every policy, by name.
    pub async fn plan_policies(&self) -> Result<Vec<PlanPolicy>> {
        let rows = sqlx::query("SELECT * FROM plan_policies ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(policy_from_row).collect()
    }

    /// Removes policy `name` (its past verdicts stay with their runs); audited.
    pub async fn delete_plan_policy(&self, name: &str, by: &str) -> Result<PlanPolicy> {
        let gone = self.plan_policy(name).await?;
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM plan_policies WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        let detail = serde_json::json!({"policy": name, "version": gone.version, "deleted": true});
        tx.audit(AuditEntry::new(AuditKind::PolicyChanged, by).detail(detail));
        self.commit(tx).await?;
        Ok(gone)
    }

    /// The verdicts recorded for run `run_id`, by policy name.
    pub async fn policy_verdicts(&self, run_id: &str) -> Result<Vec<PolicyVerdict>> {
        let rows = sqlx::query("SELECT * FROM policy_verdicts WHERE run_id = $1 ORDER BY policy")
            .bind(run_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(verdict_from_row).collect()
    }
}

/// Records a run's verdicts (replacing those of an earlier completion of the same plan) and
/// audits them as one `policy_evaluated` entry, in the transaction that moves the run on.
pub(crate) async fn record_verdicts(
    tx: &mut Tx,
    run: &Run,
    verdicts: &[PolicyVerdict],
) -> Result<()> {
    if verdicts.is_empty() {
        return Ok(());
    }
    sqlx::query("DELETE FROM policy_verdicts WHERE run_id = $1")
        .bind(&run.id)
        .execute(&mut **tx)
        .await?;
    let j = |v: &Vec<String>| serde_json::to_string(v).map_err(json_err);
    for v in verdicts {
        sqlx::query("INSERT INTO policy_verdicts (run_id, policy, version, digest, outcome, deny, warn, error, duration_us, evaluated_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
            .bind(&run.id)
            .bind(&v.policy)
            .bind(v.version)
            .bind(&v.digest)
            .bind(v.outcome.as_str())
            .bind(j(&v.deny)?)
            .bind(j(&v.warn)?)
            .bind(&v.error)
            .bind(v.duration_us)
            .bind(v.evaluated_ms)
            .execute(&mut **tx)
            .await?;
    }
    let shown: Vec<_> = verdicts
        .iter()
        .map(|v| serde_json::json!({"policy": v.policy, "version": v.version, "digest": v.digest, "outcome": v.outcome.as_str(), "deny": v.deny, "warn": v.warn, "error": v.error, "duration_us": v.duration_us}))
        .collect();
    tx.audit(
        AuditEntry::new(AuditKind::PolicyEvaluated, "coordinator")
            .workspace(&run.workspace)
            .run(&run.id)
            .detail(serde_json::json!({ "verdicts": shown })),
    );
    Ok(())
}

impl Store {
    /// The newest other run created on `run`'s workspace before it, as policies see it.
    pub async fn previous_run(
        &self,
        run: &Run,
    ) -> Result<Option<crate::runs::policy::PreviousRun>> {
        let row = sqlx::query("SELECT id, state, kind FROM runs WHERE workspace = $1 AND id <> $2 AND created_ms <= $3 ORDER BY created_ms DESC, id DESC LIMIT 1")
            .bind(&run.workspace)
            .bind(&run.id)
            .bind(run.created_ms)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(crate::runs::policy::PreviousRun {
                id: s(&r, "id")?,
                state: s(&r, "state")?,
                kind: s(&r, "kind")?,
            })
        })
        .transpose()
    }
}
