//! Schedules of drift checks or of a workflow run: adding one (its expression, time zone and
//! glob checked, its first tick computed) and the reaper's sweep, which settles each due tick
//! exactly once. The sweep moves the schedule's next tick by compare-and-set, writes the
//! tick's row (whose primary key refuses a second) and queues its checks or starts its
//! workflow run (unless the previous one is still going), all in one transaction: a coordinator
//! killed before the commit left nothing and the tick fires after the restart; after the
//! commit the tick is settled and never fires again. Ticks missed while no coordinator swept
//! follow the schedule's policy (`runs::schedule::due`).
//!
//! Touches: schedules, schedule_ticks, runs (checks: see `drift.rs`), workflow_runs (see
//! `workflow_run.rs`), audit_log.

use super::drift::start_check;
use super::workflow::NewWorkflow;
use super::workflow_run::insert_workflow_run;
use crate::audit::{AuditEntry, AuditKind};
use crate::auth::glob::WorkspaceGlob;
use crate::error::{Error, Result};
use crate::runs::schedule::{due, CronSpec, Due, Missed};
use crate::store::*;
use prost::Message;
use std::collections::BTreeMap;
use tofuflow_proto::v1;

/// Who the schedule's checks are recorded as.
pub fn schedule_actor(name: &str) -> String {
    format!("schedule:{name}")
}

/// A schedule's name: 1 to 64 letters, digits, `.`, `_` or `-`.
fn valid_schedule_name(name: &str) -> Result<()> {
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "schedule name {name:?}: use 1 to 64 letters, digits, '.', '_' or '-'"
        )))
    }
}

/// What a user asks for when adding a schedule.
#[derive(Clone, Debug)]
pub struct NewSchedule {
    pub name: String,
    pub cron: String,
    pub timezone: String,
    pub workspace: String,
    pub options: DriftOptions,
    pub missed: String,
    pub actor: String,
    /// A workflow schedule: the start request (checked by the caller) to replay at each tick.
    pub workflow: Option<v1::StartWorkflowRequest>,
}

/// What a tick does.
enum Work {
    /// Check every matching workspace.
    Drift,
    /// Start this workflow run.
    Workflow(Box<NewWorkflow>),
}

impl Store {
    /// Adds a schedule after checking its expression, time zone, glob and policy; its first
    /// tick is the first after now.
    pub async fn create_schedule(&self, n: NewSchedule) -> Result<Schedule> {
        valid_schedule_name(&n.name)?;
        let spec = CronSpec::parse(&n.cron, &n.timezone).map_err(Error::InvalidInput)?;
        match &n.workflow {
            None => drop(WorkspaceGlob::parse(&n.workspace).map_err(Error::InvalidInput)?),
            Some(_) if !n.workspace.is_empty() => {
                return Err(Error::InvalidInput(
                    "a schedule runs a workflow or checks workspaces for drift, not both: give either --workflow or -w".into(),
                ))
            }
            Some(_) => {}
        }
        let missed: Missed = n.missed.parse().map_err(Error::InvalidInput)?;
        let now = now_ms();
        let next = spec.next_after(now).ok_or_else(|| {
            Error::InvalidInput(format!(
                "cron expression {:?} has no tick after now: nothing would ever run",
                n.cron
            ))
        })?;
        let timezone = if n.timezone.is_empty() {
            "UTC".to_string()
        } else {
            n.timezone.clone()
        };
        let sc = Schedule {
            name: n.name,
            cron: n.cron,
            timezone,
            workspace: n.workspace,
            options: n.options,
            missed,
            next_tick_ms: next,
            last_tick_ms: 0,
            created_by: n.actor.clone(),
            created_ms: now,
            workflow: n.workflow.map(|w| w.encode_to_vec()).unwrap_or_default(),
        };
        self.add_schedule(&sc).await?;
        self.audit_now(
            AuditEntry::new(AuditKind::ScheduleAdded, &n.actor)
                .workspace(&sc.workspace)
                .detail(serde_json::json!({"schedule": sc.name, "cron": sc.cron, "timezone": sc.timezone, "missed": missed.as_str()})),
        )
        .await?;
        Ok(sc)
    }

    /// The reaper's schedule sweep: every due schedule's tick settled; one line per tick.
    pub async fn sweep_schedules(&self, policy: &Policy) -> Result<Vec<String>> {
        let now = now_ms();
        let mut done = Vec::new();
        for sc in self.due_schedules(now).await? {
            let spec = match CronSpec::parse(&sc.cron, &sc.timezone) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(schedule = %sc.name, error = %e, "schedule cannot be evaluated here (time zone database?): skipped");
                    continue;
                }
            };
            let Some(d) = due(&spec, sc.next_tick_ms, now, sc.missed) else {
                continue;
            };
            let work = self.work_of(&sc).await;
            if let Some(line) = self.settle_tick(&sc, &d, work, policy).await? {
                done.push(line);
            }
        }
        Ok(done)
    }

    /// What a schedule's tick does; for a workflow, the run its stored request asks for,
    /// checked again now (the file, its bundles, the modules' declarations).
    async fn work_of(&self, sc: &Schedule) -> Result<Work, String> {
        if sc.workflow.is_empty() {
            return Ok(Work::Drift);
        }
        let r = v1::StartWorkflowRequest::decode(sc.workflow.as_slice())
            .map_err(|e| format!("the stored workflow request cannot be read: {e}"))?;
        let mut n = self
            .workflow_from_request(&r, &schedule_actor(&sc.name))
            .await
            .map_err(|e| e.to_string())?;
        n.tags.insert("schedule".into(), sc.name.clone());
        // Every tick starts a workflow run of its own: a key stored with the request is not one.
        n.idempotency = None;
        Ok(Work::Workflow(Box::new(n)))
    }

    /// Settles one tick in one transaction: the schedule moved on (if nobody else did), the
    /// tick's row (`fired`, `missed`, or `failed` with why), and when it fires its work.
    async fn settle_tick(
        &self,
        sc: &Schedule,
        d: &Due,
        work: Result<Work, String>,
        policy: &Policy,
    ) -> Result<Option<String>> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        let next = d.next_ms.unwrap_or(0);
        if !advance_schedule(&mut tx, &sc.name, sc.next_tick_ms, d.tick_ms, next).await? {
            return Ok(None); // another sweep settled it
        }
        let mut detail = Vec::new();
        if d.passed_over > 0 {
            detail.push(format!("{} earlier tick(s) missed", d.passed_over));
        }
        let (outcome, runs) = match work {
            _ if !d.fire => {
                detail.push(format!(
                    "{} ms late, beyond the skip policy's grace",
                    now - d.tick_ms
                ));
                ("missed", Vec::new())
            }
            Err(why) => {
                tracing::warn!(schedule = %sc.name, error = %why, "schedule tick failed");
                detail.push(why);
                ("failed", Vec::new())
            }
            Ok(Work::Drift) => (
                "fired",
                fire(&mut tx, sc, d.tick_ms, policy, &mut detail).await?,
            ),
            Ok(Work::Workflow(n)) => {
                let runs = fire_workflow(&mut tx, sc, *n, d.tick_ms, policy, &mut detail).await?;
                ("fired", runs)
            }
        };
        let tick = ScheduleTick {
            schedule: sc.name.clone(),
            tick_ms: d.tick_ms,
            outcome: outcome.into(),
            settled_ms: now,
            runs: runs.clone(),
            detail: detail.join("; "),
        };
        insert_tick(&mut tx, &tick).await?;
        self.commit(tx).await?;
        Ok(Some(format!(
            "schedule {} tick {} {outcome}: {} started {}",
            sc.name,
            d.tick_ms,
            runs.len(),
            tick.detail
        )))
    }
}

/// Starts the schedule's workflow run, unless the one its last tick started is still going.
async fn fire_workflow(
    tx: &mut Tx,
    sc: &Schedule,
    mut n: NewWorkflow,
    tick_ms: i64,
    policy: &Policy,
    detail: &mut Vec<String>,
) -> Result<Vec<String>> {
    if let Some(prev) = last_fired_run(tx, &sc.name).await? {
        let w = workflow_c(tx, &prev).await?;
        if !w.state.is_end() {
            detail.push(format!("workflow run {prev} is still {}", w.state.as_str()));
            return Ok(Vec::new());
        }
    }
    n.tags.insert("schedule_tick".into(), tick_ms.to_string());
    let id = insert_workflow_run(tx, n, policy).await?;
    Ok(vec![id])
}

/// Queues a check of every workspace matching the schedule's glob that has an applied run;
/// workspaces with no apply yet, or a check still going, are noted in `detail`.
async fn fire(
    tx: &mut Tx,
    sc: &Schedule,
    tick_ms: i64,
    policy: &Policy,
    detail: &mut Vec<String>,
) -> Result<Vec<String>> {
    let glob = WorkspaceGlob::parse(&sc.workspace).map_err(Error::Internal)?;
    let actor = schedule_actor(&sc.name);
    let mut runs = Vec::new();
    for ws in applied_workspaces(tx).await? {
        if !glob.matches(&ws) {
            continue;
        }
        let tags = BTreeMap::from([
            ("schedule".to_string(), sc.name.clone()),
            ("schedule_tick".to_string(), tick_ms.to_string()),
        ]);
        match start_check(tx, &ws, sc.options, &actor, tags, policy).await {
            Ok(run) => runs.push(run.id),
            Err(Error::Conflict(_)) => detail.push(format!("{ws}: a check is still going")),
            Err(e) => return Err(e),
        }
    }
    if runs.is_empty() && detail.is_empty() {
        detail.push(format!(
            "no workspace matching {} has an applied run",
            sc.workspace
        ));
    }
    Ok(runs)
}

/// Workspaces with at least one applied plan-and-apply run.
async fn applied_workspaces(tx: &mut Tx) -> Result<Vec<String>> {
    let rows = sqlx::query("SELECT DISTINCT workspace FROM runs WHERE kind = 'plan_and_apply' AND state = 'applied' ORDER BY workspace")
        .fetch_all(&mut **tx)
        .await?;
    rows.iter().map(|r| s(r, "workspace")).collect()
}
