//! Schedules of drift checks: adding one (its expression, time zone and glob checked, its
//! first tick computed) and the reaper's sweep, which settles each due tick exactly once. The
//! sweep moves the schedule's next tick by compare-and-set, writes the tick's row (whose
//! primary key refuses a second) and queues its checks, all in one transaction: a coordinator
//! killed before the commit left nothing and the tick fires after the restart; after the
//! commit the tick is settled and never fires again. Ticks missed while no coordinator swept
//! follow the schedule's policy (`runs::schedule::due`).
//!
//! Touches: schedules, schedule_ticks, runs (checks: see `drift.rs`), audit_log.

use super::drift::start_check;
use crate::audit::{AuditEntry, AuditKind};
use crate::auth::glob::WorkspaceGlob;
use crate::error::{Error, Result};
use crate::runs::schedule::{due, CronSpec, Due, Missed};
use crate::store::*;
use std::collections::BTreeMap;

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
}

impl Store {
    /// Adds a schedule after checking its expression, time zone, glob and policy; its first
    /// tick is the first after now.
    pub async fn create_schedule(&self, n: NewSchedule) -> Result<Schedule> {
        valid_schedule_name(&n.name)?;
        let spec = CronSpec::parse(&n.cron, &n.timezone).map_err(Error::InvalidInput)?;
        WorkspaceGlob::parse(&n.workspace).map_err(Error::InvalidInput)?;
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
            if let Some(line) = self.settle_tick(&sc, &d, now, policy).await? {
                done.push(line);
            }
        }
        Ok(done)
    }

    /// Settles one tick in one transaction: the schedule moved on (if nobody else did), the
    /// tick's row, and when it fires, a check of every matching workspace.
    async fn settle_tick(
        &self,
        sc: &Schedule,
        d: &Due,
        now: i64,
        policy: &Policy,
    ) -> Result<Option<String>> {
        let mut tx = self.begin().await?;
        let next = d.next_ms.unwrap_or(0);
        if !advance_schedule(&mut tx, &sc.name, sc.next_tick_ms, d.tick_ms, next).await? {
            return Ok(None); // another sweep settled it
        }
        let mut detail = Vec::new();
        if d.passed_over > 0 {
            detail.push(format!("{} earlier tick(s) missed", d.passed_over));
        }
        let runs = if d.fire {
            fire(&mut tx, sc, d.tick_ms, policy, &mut detail).await?
        } else {
            detail.push(format!(
                "{} ms late, beyond the skip policy's grace",
                now - d.tick_ms
            ));
            Vec::new()
        };
        let tick = ScheduleTick {
            schedule: sc.name.clone(),
            tick_ms: d.tick_ms,
            outcome: if d.fire { "fired" } else { "missed" }.into(),
            settled_ms: now,
            runs: runs.clone(),
            detail: detail.join("; "),
        };
        insert_tick(&mut tx, &tick).await?;
        self.commit(tx).await?;
        Ok(Some(format!(
            "schedule {} tick {} {}: {} check(s) {}",
            sc.name,
            d.tick_ms,
            tick.outcome,
            runs.len(),
            tick.detail
        )))
    }
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
