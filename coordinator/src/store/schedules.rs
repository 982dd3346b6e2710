//! The `schedules` table (cron schedules of drift checks, each with its next tick) and
//! `schedule_ticks` (one row per settled tick: its primary key is what makes a tick fire at
//! most once, whichever coordinator sweeps and however often it restarts).

use super::*;
use crate::runs::schedule::Missed;
use base64::Engine;

/// A schedule as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    pub name: String,
    pub cron: String,
    pub timezone: String,
    /// A workspace glob: every matching workspace with an applied run is checked.
    pub workspace: String,
    pub options: DriftOptions,
    pub missed: Missed,
    /// The next tick (0: the expression has no more).
    pub next_tick_ms: i64,
    pub last_tick_ms: i64,
    pub created_by: String,
    pub created_ms: i64,
    /// A workflow schedule: the start request to replay (protobuf); empty for drift checks.
    pub workflow: Vec<u8>,
}

fn schedule_from_row(r: &sqlx::any::AnyRow) -> Result<Schedule> {
    Ok(Schedule {
        name: s(r, "name")?,
        cron: s(r, "cron")?,
        timezone: s(r, "timezone")?,
        workspace: s(r, "workspace")?,
        options: DriftOptions {
            refresh_only: i(r, "refresh_only")? != 0,
            remediate: i(r, "remediate")? != 0,
        },
        missed: s(r, "missed")?
            .parse()
            .map_err(|e: String| Error::Corrupt {
                table: "schedules",
                column: "missed",
                detail: e,
            })?,
        next_tick_ms: i(r, "next_tick_ms")?,
        last_tick_ms: i(r, "last_tick_ms")?,
        created_by: s(r, "created_by")?,
        created_ms: i(r, "created_ms")?,
        workflow: base64::engine::general_purpose::STANDARD
            .decode(s(r, "workflow")?)
            .map_err(|e| Error::Corrupt {
                table: "schedules",
                column: "workflow",
                detail: e.to_string(),
            })?,
    })
}

/// A settled tick.
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduleTick {
    pub schedule: String,
    pub tick_ms: i64,
    /// `fired` or `missed`.
    pub outcome: String,
    pub settled_ms: i64,
    pub runs: Vec<String>,
    pub detail: String,
}

/// Moves a schedule from tick `from_ms` to `next_ms`, if nobody moved it meanwhile
/// (compare-and-set): whether this caller owns the tick.
pub(crate) async fn advance_schedule(
    c: &mut AnyConnection,
    name: &str,
    from_ms: i64,
    tick_ms: i64,
    next_ms: i64,
) -> Result<bool> {
    let done = sqlx::query("UPDATE schedules SET next_tick_ms = $1, last_tick_ms = $2 WHERE name = $3 AND next_tick_ms = $4")
        .bind(next_ms)
        .bind(tick_ms)
        .bind(name)
        .bind(from_ms)
        .execute(&mut *c)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// The workflow run the schedule's newest fired tick started, if there is one.
pub(crate) async fn last_fired_run(c: &mut AnyConnection, name: &str) -> Result<Option<String>> {
    let row = sqlx::query("SELECT runs FROM schedule_ticks WHERE schedule = $1 AND outcome = 'fired' ORDER BY tick_ms DESC LIMIT 1")
        .bind(name)
        .fetch_optional(&mut *c)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let runs: Vec<String> = json_col(&s(&row, "runs")?, "schedule_ticks", "runs")?;
    Ok(runs.into_iter().next())
}

/// Records a settled tick (a second record of one tick is refused by the primary key).
pub(crate) async fn insert_tick(c: &mut AnyConnection, t: &ScheduleTick) -> Result<()> {
    sqlx::query("INSERT INTO schedule_ticks (schedule, tick_ms, outcome, settled_ms, runs, detail) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(&t.schedule)
        .bind(t.tick_ms)
        .bind(&t.outcome)
        .bind(t.settled_ms)
        .bind(serde_json::to_string(&t.runs).map_err(json_err)?)
        .bind(&t.detail)
        .execute(&mut *c)
        .await?;
    Ok(())
}

impl Store {
    /// Adds a schedule (its name must be new).
    pub async fn add_schedule(&self, sc: &Schedule) -> Result<()> {
        if self.schedule(&sc.name).await?.is_some() {
            return Err(Error::Conflict(format!(
                "schedule {:?} exists: remove it first or pick another name",
                sc.name
            )));
        }
        sqlx::query("INSERT INTO schedules (name, cron, timezone, workspace, refresh_only, remediate, missed, next_tick_ms, last_tick_ms, created_by, created_ms, workflow) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)")
            .bind(&sc.name)
            .bind(&sc.cron)
            .bind(&sc.timezone)
            .bind(&sc.workspace)
            .bind(sc.options.refresh_only as i64)
            .bind(sc.options.remediate as i64)
            .bind(sc.missed.as_str())
            .bind(sc.next_tick_ms)
            .bind(sc.last_tick_ms)
            .bind(&sc.created_by)
            .bind(sc.created_ms)
            .bind(base64::engine::general_purpose::STANDARD.encode(&sc.workflow))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn schedule(&self, name: &str) -> Result<Option<Schedule>> {
        let row = sqlx::query("SELECT * FROM schedules WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(schedule_from_row).transpose()
    }

    pub async fn schedules(&self) -> Result<Vec<Schedule>> {
        let rows = sqlx::query("SELECT * FROM schedules ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(schedule_from_row).collect()
    }

    /// Schedules whose next tick is at or before `now`.
    pub async fn due_schedules(&self, now: i64) -> Result<Vec<Schedule>> {
        let rows = sqlx::query("SELECT * FROM schedules WHERE next_tick_ms > 0 AND next_tick_ms <= $1 ORDER BY next_tick_ms, name")
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(schedule_from_row).collect()
    }

    /// Removes a schedule (its ticks stay, for the record).
    pub async fn remove_schedule(&self, name: &str) -> Result<Schedule> {
        let sc = self.schedule(name).await?.ok_or_else(|| {
            Error::NotFound(format!(
                "no schedule {name:?}: `tofuflow schedule list` shows them"
            ))
        })?;
        sqlx::query("DELETE FROM schedules WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(sc)
    }

    /// A schedule's settled ticks, newest first (at most `limit`).
    pub async fn schedule_ticks(&self, name: &str, limit: i64) -> Result<Vec<ScheduleTick>> {
        let rows = sqlx::query(
            "SELECT * FROM schedule_ticks WHERE schedule = $1 ORDER BY tick_ms DESC LIMIT $2",
        )
        .bind(name)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ScheduleTick {
                    schedule: s(r, "schedule")?,
                    tick_ms: i(r, "tick_ms")?,
                    outcome: s(r, "outcome")?,
                    settled_ms: i(r, "settled_ms")?,
                    runs: json_col(&s(r, "runs")?, "schedule_ticks", "runs")?,
                    detail: s(r, "detail")?,
                })
            })
            .collect()
    }
}
