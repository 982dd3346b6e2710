//! `tofuflow workflow`: workflow files (stacks passing outputs to each other, fanned out with
//! `for_each`) checked offline, run (every module packed and uploaded), listed, shown,
//! approved as a whole, cancelled and retried.

use super::run::upload;
use super::Ctx;
use crate::{args, output};
use clap::Subcommand;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tofuflow_proto::v1;
use tofuflow_proto::workflow as wf;

#[derive(Subcommand)]
pub enum WorkflowCmd {
    /// Check a workflow file without running it (no coordinator needed): syntax, references
    /// between stacks, cycles, for_each; prints its targets in order.
    Validate {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Start a workflow run: pack and upload every module the file uses, then start it.
    Run(Run),
    /// List workflow runs, newest first.
    List {
        /// Only workflow runs carrying this key=value tag. Repeatable: those carrying all.
        #[arg(long = "tag", value_name = "K=V", value_parser = args::tag)]
        tags: Vec<(String, String)>,
        /// Only workflow runs older than this one (paging).
        #[arg(long, value_name = "ID", default_value = "")]
        before: String,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Show a workflow run: every target with its state, run and why.
    Show {
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Approve a workflow run that waits for approval as a whole (`approval = "once"`).
    Approve {
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Cancel a workflow run: targets not started are cancelled, running runs are stopped.
    Cancel {
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Start again what failed, was skipped or cancelled in a workflow run (what succeeded is
    /// kept and its outputs are used).
    Retry {
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Re-apply what an earlier, succeeded workflow run applied (its file and module bundles),
    /// as a new workflow run in dependency order, tagged rollback_of / rollback_to.
    Rollback {
        /// The workflow run to roll back (e.g. the one that applied a bad change).
        #[arg(value_name = "ID")]
        id: String,
        /// The succeeded workflow run to go back to (default: the newest one before ID with the
        /// same file name and workspaces).
        #[arg(long, value_name = "ID", default_value = "")]
        to: String,
        /// Override its approval mode: each, once, auto.
        #[arg(long, value_name = "MODE", value_parser = ["each", "once", "auto"])]
        approval: Option<String>,
    },
}

#[derive(clap::Args)]
pub struct Run {
    /// The workflow file (HCL); stack sources are relative to it.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// A time to live for what this workflow run creates (e.g. 4h), counted from its start:
    /// at expiry (once it has ended, even failed or cancelled half-way) the targets that
    /// applied something are destroyed, dependants first. See `tofuflow env list`.
    #[arg(long, value_parser = crate::args::ttl_ms, conflicts_with = "destroy")]
    ttl: Option<i64>,
    /// Destroy every target instead, dependants first.
    #[arg(long)]
    destroy: bool,
    /// Override the file's approval mode: each (every plan is approved with `run approve`),
    /// once (`workflow approve` once, then plans apply), auto.
    #[arg(long, value_name = "MODE", value_parser = ["each", "once", "auto"])]
    approval: Option<String>,
    /// Pool of the stacks that name none.
    #[arg(long, value_name = "POOL", default_value = "default")]
    pool: String,
    /// A tag on every run of the workflow run (repeatable): KEY=VALUE.
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = args::tag)]
    tags: Vec<(String, String)>,
    /// Wait until the workflow run ends, showing its targets as they move.
    #[arg(long)]
    wait: bool,
    /// A key that makes the start safe to retry: a second start with the same key (and the
    /// same file, modules and options) prints the workflow run the first one began (kept
    /// 24 h, per user).
    #[arg(long, env = "TOFUFLOW_IDEMPOTENCY_KEY", value_parser = crate::args::non_empty)]
    idempotency_key: Option<String>,
}

impl WorkflowCmd {
    pub async fn execute(self, ctx: &mut Ctx) -> Result<u8, String> {
        let call = |r: Result<tonic::Response<v1::WorkflowRun>, tonic::Status>, ctx: &Ctx| {
            r.map(|r| r.into_inner()).map_err(|s| ctx.explain(s))
        };
        let req = |id: String| v1::WorkflowRunRequest {
            workflow_run_id: id,
        };
        let w = match self {
            WorkflowCmd::Validate { file } => return validate(&file, ctx.json),
            WorkflowCmd::Run(r) => return r.execute(ctx).await,
            WorkflowCmd::List {
                tags,
                before,
                limit,
            } => {
                let tags = tags.into_iter().collect();
                let l = ctx
                    .client
                    .list_workflow_runs(v1::ListWorkflowRunsRequest {
                        before,
                        limit,
                        tags,
                    })
                    .await
                    .map_err(|s| ctx.explain(s))?;
                output::print_workflow_runs(&l.into_inner().workflow_runs, ctx.json);
                return Ok(0);
            }
            WorkflowCmd::Show { id } => call(ctx.client.get_workflow_run(req(id)).await, ctx)?,
            WorkflowCmd::Approve { id } => call(ctx.client.approve_workflow(req(id)).await, ctx)?,
            WorkflowCmd::Retry { id } => call(ctx.client.retry_workflow(req(id)).await, ctx)?,
            WorkflowCmd::Rollback { id, to, approval } => {
                let r = v1::RollbackWorkflowRequest {
                    workflow_run_id: id,
                    to,
                    approval: approval.unwrap_or_default(),
                };
                call(ctx.client.rollback_workflow(r).await, ctx)?
            }
            WorkflowCmd::Cancel { id } => {
                let c = ctx
                    .client
                    .cancel_workflow(req(id))
                    .await
                    .map_err(|s| ctx.explain(s))?
                    .into_inner();
                c.workflow_run.unwrap_or_default()
            }
        };
        output::print_workflow_run(&w, ctx.json);
        Ok(0)
    }
}

/// Reads and checks a workflow file; answers the checked workflow and its targets.
fn read(file: &Path) -> Result<(String, String, wf::Workflow, Vec<wf::Target>), String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let w = wf::parse(&name, &text).map_err(|p| wf::describe(&p))?;
    let t = wf::expand(&w, &name).map_err(|p| wf::describe(&p))?;
    Ok((name, text, w, t))
}

pub fn validate(file: &Path, json: bool) -> Result<u8, String> {
    let (_, _, w, targets) = read(file)?;
    let dir = file.parent().unwrap_or(Path::new("."));
    for src in w.sources() {
        if !dir.join(&src).is_dir() {
            return Err(format!(
                "{}: source {src:?} is not a directory (sources are relative to the workflow file)",
                file.display()
            ));
        }
    }
    output::print_workflow_targets(&targets, json);
    Ok(0)
}

impl Run {
    async fn execute(self, ctx: &mut Ctx) -> Result<u8, String> {
        let (name, text, bundles) = pack(ctx, &self.file).await?;
        let started = ctx
            .client
            .start_workflow(v1::StartWorkflowRequest {
                file_name: name,
                definition: text,
                bundles,
                destroy: self.destroy,
                approval: self.approval.unwrap_or_default(),
                pool: self.pool,
                tags: self.tags.into_iter().collect(),
                actor: ctx.who.clone(),
                ttl_ms: self.ttl.unwrap_or(0),
                idempotency_key: self.idempotency_key.unwrap_or_default(),
            })
            .await
            .map_err(|s| ctx.explain(s))?
            .into_inner();
        if !self.wait {
            output::print_workflow_run(&started, ctx.json);
            return Ok(0);
        }
        let w = wait(ctx, &started.id).await?;
        output::print_workflow_run(&w, ctx.json);
        Ok(if w.state == "succeeded" { 0 } else { 1 })
    }
}

/// Reads a workflow file and uploads the module of every source it names: the file's name,
/// its text and each source's bundle digest (a start request's parts).
pub(crate) async fn pack(
    ctx: &mut Ctx,
    file: &Path,
) -> Result<(String, String, HashMap<String, String>), String> {
    let (name, text, w, _) = read(file)?;
    let dir = file.parent().unwrap_or(Path::new(".")).to_path_buf();
    let mut bundles = HashMap::new();
    for src in w.sources() {
        let path = dir.join(&src);
        if !path.is_dir() {
            return Err(format!(
                "{}: source {src:?} is not a directory ({})",
                file.display(),
                path.display()
            ));
        }
        bundles.insert(src, upload(ctx, &path).await?);
    }
    Ok((name, text, bundles))
}

/// Follows a workflow run until it ends, printing each target's moves.
async fn wait(ctx: &mut Ctx, id: &str) -> Result<v1::WorkflowRun, String> {
    let mut seen: HashMap<String, String> = HashMap::new();
    loop {
        let w = ctx
            .client
            .get_workflow_run(v1::WorkflowRunRequest {
                workflow_run_id: id.to_string(),
            })
            .await
            .map_err(|s| ctx.explain(s))?
            .into_inner();
        for t in &w.targets {
            let now = format!("{} {}", t.state, t.run_state);
            if seen.get(&t.key) != Some(&now) && !ctx.json {
                eprintln!("{:<28} {:<10} {} {}", t.key, t.state, t.run_state, t.reason);
            }
            seen.insert(t.key.clone(), now);
        }
        if matches!(w.state.as_str(), "succeeded" | "failed" | "cancelled") {
            return Ok(w);
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}
