//! `tofuflow schedule`: cron schedules (admin to add and remove) of drift checks (each tick
//! checks every workspace matching a glob that has applied something) or of a workflow run
//! (each tick starts one from the file uploaded when the schedule was added); ticks missed
//! while no coordinator ran follow the schedule's policy; `ticks` shows how each was settled.

use super::Ctx;
use crate::output;
use clap::Subcommand;
use std::path::PathBuf;
use tofuflow_proto::v1;

#[derive(Subcommand)]
pub enum ScheduleCmd {
    /// Add a schedule of drift checks (-w GLOB) or of a workflow run (--workflow FILE) (admin).
    Add(Box<AddArgs>),
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

/// `schedule add`.
#[derive(clap::Args)]
pub struct AddArgs {
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
    #[arg(
        long,
        short = 'w',
        required_unless_present = "workflow",
        conflicts_with = "workflow"
    )]
    workspace: Option<String>,
    #[command(flatten)]
    workflow: WorkflowArgs,
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
}

/// A workflow schedule: the file (its modules are uploaded now) and how each run starts.
#[derive(clap::Args)]
pub struct WorkflowArgs {
    /// Start a workflow run of this file at every tick instead (its modules are packed and
    /// uploaded now; a tick is skipped while the previous workflow run is still going).
    #[arg(long, value_name = "FILE")]
    workflow: Option<PathBuf>,
    /// The workflow's approval mode: each, once, auto (default: the file's).
    #[arg(long, value_name = "MODE", value_parser = ["each", "once", "auto"], requires = "workflow")]
    approval: Option<String>,
    /// Pool of the stacks that name none.
    #[arg(long, value_name = "POOL", default_value = "default")]
    pool: String,
    /// A tag on every run of each workflow run (repeatable): KEY=VALUE.
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = crate::args::tag, requires = "workflow")]
    tags: Vec<(String, String)>,
    /// A time to live for what each workflow run creates (e.g. 4h): see `tofuflow env list`.
    #[arg(long, value_parser = crate::args::ttl_ms, requires = "workflow", conflicts_with = "destroy")]
    ttl: Option<i64>,
    /// Each workflow run destroys every target instead.
    #[arg(long, requires = "workflow")]
    destroy: bool,
}

impl WorkflowArgs {
    /// The start request, with the file's modules uploaded; None for a drift schedule.
    async fn request(self, ctx: &mut Ctx) -> Result<Option<v1::StartWorkflowRequest>, String> {
        let Some(file) = self.workflow else {
            return Ok(None);
        };
        let (file_name, definition, bundles) = super::workflow::pack(ctx, &file).await?;
        Ok(Some(v1::StartWorkflowRequest {
            file_name,
            definition,
            bundles,
            destroy: self.destroy,
            approval: self.approval.unwrap_or_default(),
            pool: self.pool,
            tags: self.tags.into_iter().collect(),
            actor: String::new(),
            ttl_ms: self.ttl.unwrap_or(0),
            idempotency_key: String::new(),
        }))
    }
}

impl ScheduleCmd {
    /// Runs the command; returns the exit code.
    pub async fn execute(self, ctx: &mut Ctx) -> Result<u8, String> {
        match self {
            ScheduleCmd::Add(a) => {
                let AddArgs {
                    name,
                    cron,
                    timezone,
                    workspace,
                    workflow,
                    refresh_only,
                    remediate,
                    missed,
                } = *a;
                let req = v1::AddScheduleRequest {
                    name,
                    cron,
                    timezone,
                    workspace: workspace.unwrap_or_default(),
                    refresh_only,
                    remediate,
                    missed,
                    workflow: workflow.request(ctx).await?,
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
        "workflow_file": s.workflow_file,
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
            let mut what = if s.workflow_file.is_empty() {
                format!("drift check {}", s.workspace)
            } else {
                format!("workflow {}", s.workflow_file)
            };
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
