//! Drift: a check is a run of kind `drift_check` that plans the configuration the workspace
//! last applied (same bundle, variables and files), without the state lock and without taking
//! the workspace's turn, so a busy workspace neither delays nor starves it. Two parts:
//! - [`Store::check_drift`] (and [`start_check`], shared with the schedule sweep) queues one;
//! - [`Drift`], a before-commit hook: when a check ends, in that transaction, the workspace's
//!   drift status is written (drifted since, in sync, check failed), a `drift_found` webhook
//!   event and a `drift_detected` audit entry record new drift, and with `remediate` a normal
//!   plan-and-apply run of the same configuration is submitted (it waits for approval and takes
//!   its turn like any run); an apply of the workspace clears its drift.
//!
//! Touches: runs (a check, a remediation: see `submit.rs`), workspace_drift, audit_log,
//! webhook_deliveries.

use super::submit::insert_run;
use crate::audit::{AuditEntry, AuditKind};
use crate::error::{Error, Result};
use crate::lifecycle::events::OnRunEvents;
use crate::runs::events::RunEvent;
use crate::runs::{RunKind, RunState};
use crate::store::*;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Who the coordinator's own drift actions are recorded as.
pub const DRIFT_ACTOR: &str = "coordinator (drift)";

/// What a finished check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    InSync,
    Drifted,
    /// The check did not finish (failed, cancelled, expired): why.
    CheckFailed(String),
}

impl Finding {
    /// What a drift check ending in `to` found, if it ended.
    pub fn of(to: RunState, error: &str) -> Option<Finding> {
        match to {
            RunState::PlannedNoChanges => Some(Finding::InSync),
            RunState::Planned => Some(Finding::Drifted),
            RunState::Failed | RunState::Cancelled | RunState::Expired | RunState::Interrupted => {
                Some(Finding::CheckFailed(if error.is_empty() {
                    format!("the check ended {}", to.as_str())
                } else {
                    error.to_string()
                }))
            }
            _ => None,
        }
    }
}

/// Queues a drift check of `ws` in `tx`: a plan of the last applied run's configuration.
/// Refused when the workspace never applied, or a check of it is still going.
pub(crate) async fn start_check(
    tx: &mut Tx,
    ws: &str,
    options: DriftOptions,
    actor: &str,
    tags: BTreeMap<String, String>,
    policy: &Policy,
) -> Result<Run> {
    let Some(source_id) = last_applied_run(tx, ws).await? else {
        return Err(Error::InvalidInput(format!(
            "workspace {ws} has no applied run: a drift check plans the configuration last applied there; apply one first"
        )));
    };
    if let Some(running) = active_drift_check(tx, ws).await? {
        return Err(Error::Conflict(format!(
            "a drift check of {ws} is already going: run {running}; wait for it (`tofuflow run show {running} --wait`)"
        )));
    }
    let keys = tx.keys.clone();
    let source = get_run_c(&keys, tx, &source_id).await?;
    let mut all_tags = tags;
    all_tags.insert("drift".into(), "check".into());
    all_tags.insert("source_run".into(), source.id.clone());
    let n = again(&source, RunKind::DriftCheck, actor, all_tags);
    let run = insert_run(tx, &n, policy).await?;
    set_drift_options(tx, &run.id, options).await?;
    Ok(Run {
        drift: options,
        ..run
    })
}

/// A new run of `source`'s configuration (bundle, variables, files, pool, limits).
fn again(source: &Run, kind: RunKind, actor: &str, tags: BTreeMap<String, String>) -> NewRun {
    NewRun {
        limits: source.limits.clone(),
        variable_decls: source.variable_decls.clone(),
        workspace: source.workspace.clone(),
        pool: source.pool.clone(),
        kind,
        bundle_digest: source.bundle_digest.clone(),
        variables: source.variables.clone(),
        var_files: source.var_files.clone(),
        auto_approve: false,
        actor: actor.to_string(),
        commit: source.commit.clone(),
        pipeline_id: source.pipeline_id.clone(),
        source: source.source.clone(),
        traceparent: String::new(),
        tags,
        idempotency: None,
        env: Default::default(),
        ttl_ms: 0,
    }
}

impl Store {
    /// `tofuflow drift check`: queues a check of `ws` now.
    pub async fn check_drift(
        &self,
        ws: &str,
        options: DriftOptions,
        actor: &str,
        policy: &Policy,
    ) -> Result<Run> {
        let mut tx = self.begin().await?;
        let run = start_check(&mut tx, ws, options, actor, BTreeMap::new(), policy).await?;
        tx.audit(
            AuditEntry::new(AuditKind::DriftCheckStarted, actor)
                .workspace(ws)
                .run(&run.id)
                .detail(serde_json::json!({"refresh_only": options.refresh_only, "remediate": options.remediate})),
        );
        self.commit(tx).await?;
        Ok(run)
    }
}

/// The drift hook: checks' findings, remediation, and applies clearing drift.
pub struct Drift {
    pub runs: Policy,
    pub webhooks: Arc<crate::webhooks::Hook>,
}

#[tonic::async_trait]
impl OnRunEvents for Drift {
    async fn on_run_events(&self, _store: &Store, tx: &mut Tx, events: &[RunEvent]) -> Result<()> {
        for e in events {
            let RunEvent::Moved { run_id, to, .. } = e else {
                continue;
            };
            if !matches!(
                to,
                RunState::Applied
                    | RunState::Planned
                    | RunState::PlannedNoChanges
                    | RunState::Failed
                    | RunState::Cancelled
                    | RunState::Expired
                    | RunState::Interrupted
            ) {
                continue;
            }
            let keys = tx.keys.clone();
            let run = get_run_c(&keys, tx, run_id).await?;
            match run.kind {
                RunKind::DriftCheck => self.on_check_end(tx, &run, *to).await?,
                k if k.takes_turns() && *to == RunState::Applied => {
                    clear_drift(tx, &run.workspace).await?
                }
                _ => {}
            }
        }
        Ok(())
    }
}

impl Drift {
    /// A check ended: the workspace's status, and for new drift the event, the audit entry
    /// and (when asked) the remediation run.
    async fn on_check_end(&self, tx: &mut Tx, run: &Run, to: RunState) -> Result<()> {
        let Some(found) = Finding::of(to, &run.error) else {
            return Ok(());
        };
        let now = now_ms();
        let before = drift_status(tx, &run.workspace).await?.unwrap_or_default();
        let mut d = DriftStatus {
            workspace: run.workspace.clone(),
            last_check_run: run.id.clone(),
            last_checked_ms: now,
            ..before.clone()
        };
        d.last_check_error.clear();
        match &found {
            Finding::InSync => {
                d.drifted_since_ms = 0;
                d.remediation_run.clear();
            }
            Finding::CheckFailed(why) => d.last_check_error = why.clone(),
            Finding::Drifted if before.drifted_since_ms == 0 => {
                d.drifted_since_ms = now;
                self.announce(tx, run).await?;
            }
            Finding::Drifted => {}
        }
        if found == Finding::Drifted && run.drift.remediate && d.remediation_run.is_empty() {
            d.remediation_run = self.remediate(tx, run).await?;
        }
        put_drift_status(tx, &d).await
    }

    /// New drift: the `drift_detected` audit entry and the `drift_found` webhook event.
    async fn announce(&self, tx: &mut Tx, run: &Run) -> Result<()> {
        tx.audit(
            AuditEntry::new(AuditKind::DriftDetected, DRIFT_ACTOR)
                .workspace(&run.workspace)
                .run(&run.id)
                .detail(serde_json::json!({"add": run.add, "change": run.change, "destroy": run.destroy, "refresh_only": run.drift.refresh_only})),
        );
        tracing::warn!(workspace = %run.workspace, check = %run.id, "drift found");
        self.webhooks
            .queue_event(tx, &run.id, "drift_found")
            .await?;
        Ok(())
    }

    /// Submits the remediation run: the last applied configuration, planned and applied
    /// again through normal approval. Its id.
    async fn remediate(&self, tx: &mut Tx, check: &Run) -> Result<String> {
        let keys = tx.keys.clone();
        let source_id = check.tags.get("source_run").cloned().unwrap_or_default();
        let source = get_run_c(&keys, tx, &source_id).await?;
        let tags = BTreeMap::from([
            ("drift".to_string(), "remediation".to_string()),
            ("drift_check".to_string(), check.id.clone()),
        ]);
        let n = again(&source, RunKind::PlanAndApply, DRIFT_ACTOR, tags);
        let run = insert_run(tx, &n, &self.runs).await?;
        tracing::info!(workspace = %check.workspace, remediation = %run.id, "drift remediation run submitted");
        Ok(run.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_check_ending_in_each_state_found() {
        assert_eq!(
            Finding::of(RunState::PlannedNoChanges, ""),
            Some(Finding::InSync)
        );
        assert_eq!(Finding::of(RunState::Planned, ""), Some(Finding::Drifted));
        assert_eq!(
            Finding::of(RunState::Failed, "plan failed: exit 1"),
            Some(Finding::CheckFailed("plan failed: exit 1".into()))
        );
        assert_eq!(
            Finding::of(RunState::Expired, ""),
            Some(Finding::CheckFailed("the check ended expired".into()))
        );
        assert_eq!(Finding::of(RunState::Planning, ""), None);
    }
}
