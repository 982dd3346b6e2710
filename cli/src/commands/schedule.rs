//! `tofuflow schedule`: cron schedules of drift checks (admin to add and remove): each tick
//! checks every workspace matching a glob that has applied something; ticks missed while no
//! coordinator ran follow the schedule's policy; `ticks` shows how each tick was settled.

use super::Ctx;
use crate::output;
use clap::Subcommand;
use tofuflow_proto::v1;

#[derive(Subcommand)]
pub enum ScheduleCmd {
    /// Add a schedule of drift checks (admin).
    Add {
        #[arg(value_name = "NAME")]
        name: String,
        /// Cron expression: 5 fields (minute hour day-of-month month day-of-week), 6 with
        /// seconds first, or a nickname such as @daily.
        #[arg(long)]
        cron: String,
        /// IANA time zone the expression is read in.
        #[arg(long, default_value = "UTC")]
        timezone: String,
        /// Workspace glob: every matching workspace with an applied run is checked.
        #[arg(long, short = 'w')]
        workspace: String,
        /// Plan with -refresh-only.
        #[arg(long)]
        refresh_only: bool,
        /// On drift, submit a remediation run (it waits for approval).
        #[arg(long)]
        remediate: bool,
        /// Ticks missed while no coordinator ran: once (fire the latest, however late) or
        /// skip (fire only within 60 s of its time).
        #[arg(long, default_value = "once")]
        missed: String,
    },
    /// List schedules with their next tick.
    List,
    /// Remove a schedule (admin); its settled ticks stay.
    Remove {
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// A schedule's settled ticks, newest first: fired or missed, the checks started, why.
    Ticks {
        #[arg(value_name = "NAME")]
        name: String,
    },
}

impl ScheduleCmd {
    /// Runs the command; returns the exit code.
    pub async fn execute(self, ctx: &mut Ctx) -> Result<u8, String> {
        match self {
            ScheduleCmd::Add {
                name,
                cron,
                timezone,
                workspace,
                refresh_only,
                remediate,
                missed,
            } => {
                let req = v1::AddScheduleRequest {
                    name,
                    cron,
                    timezone,
                    workspace,
                    refresh_only,
                    remediate,
                    missed,
                };
                let s = ctx.client.add_schedule(req).await;
                let s = s.map_err(|e| ctx.explain(e))?.into_inner();
                print_schedules(&[s], ctx.json);
            }
            ScheduleCmd::List => {
                let r = ctx.client.list_schedules(v1::ListSchedulesRequest {}).await;
                let r = r.map_err(|e| ctx.explain(e))?.into_inner();
                print_schedules(&r.schedules, ctx.json);
            }
            ScheduleCmd::Remove { name } => {
                let r = ctx
                    .client
                    .remove_schedule(v1::ScheduleRequest { name })
                    .await;
                let s = r.map_err(|e| ctx.explain(e))?.into_inner();
                println!("schedule {} removed", s.name);
            }
            ScheduleCmd::Ticks { name } => {
                let r = ctx
                    .client
                    .list_schedule_ticks(v1::ScheduleRequest { name })
                    .await;
                let r = r.map_err(|e| ctx.explain(e))?.into_inner();
                print_ticks(&r.ticks, ctx.json);
            }
        }
        Ok(0)
    }
}

fn schedule_json(s: &v1::Schedule) -> serde_json::Value {
    serde_json::json!({
        "name": s.name, "cron": s.cron, "timezone": s.timezone, "workspace": s.workspace,
        "refresh_only": s.refresh_only, "remediate": s.remediate, "missed": s.missed,
        "next_tick_unix_ms": s.next_tick_unix_ms, "last_tick_unix_ms": s.last_tick_unix_ms,
        "created_by": s.created_by, "created_unix_ms": s.created_unix_ms,
    })
}

fn print_schedules(all: &[v1::Schedule], json: bool) {
    if json {
        let v: Vec<_> = all.iter().map(schedule_json).collect();
        output::print_json(&serde_json::json!(v));
        return;
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|s| {
            let mut what = format!("drift check {}", s.workspace);
            if s.refresh_only {
                what.push_str(" (refresh-only)");
            }
            if s.remediate {
                what.push_str(" + remediate");
            }
            vec![
                s.name.clone(),
                format!("{} {}", s.cron, s.timezone),
                what,
                s.missed.clone(),
                output::when(s.next_tick_unix_ms, "never"),
                output::when(s.last_tick_unix_ms, "-"),
            ]
        })
        .collect();
    let header = ["NAME", "CRON", "DOES", "MISSED", "NEXT TICK", "LAST TICK"];
    println!("{}", output::table(&header, &rows));
}

fn print_ticks(all: &[v1::ScheduleTick], json: bool) {
    if json {
        let v: Vec<_> = all
            .iter()
            .map(|t| {
                serde_json::json!({
                    "tick_unix_ms": t.tick_unix_ms, "outcome": t.outcome,
                    "settled_unix_ms": t.settled_unix_ms, "runs": t.runs, "detail": t.detail,
                })
            })
            .collect();
        output::print_json(&serde_json::json!(v));
        return;
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|t| {
            vec![
                output::date(t.tick_unix_ms),
                t.outcome.clone(),
                output::date(t.settled_unix_ms),
                t.runs.join(","),
                t.detail.clone(),
            ]
        })
        .collect();
    let header = ["TICK", "OUTCOME", "SETTLED", "RUNS", "DETAIL"];
    println!("{}", output::table(&header, &rows));
}
