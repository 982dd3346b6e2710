//! `tofuflow run`: submit a module, list and show runs, print their logs, approve, reject,
//! cancel, and wait for a run.

use super::{code_for, Ctx};
use crate::{bundle, output};
use clap::Subcommand;
use std::collections::HashMap;
use std::path::PathBuf;
use tofuflow_proto::v1;
use tokio_stream::StreamExt;

// Parsed once per process: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum RunCmd {
    /// Pack a module directory, upload it and start a run.
    Submit(Box<Submit>),
    /// List runs, newest first.
    List(List),
    /// Show a run: state, plan summary, outputs, history.
    Show(Show),
    /// Show a run's saved plan as a diff (sensitive values masked).
    Plan(PlanCmd),
    /// Print a run's log.
    Logs(Logs),
    /// Approve a planned run: its saved plan is applied.
    Approve(Approve),
    /// Reject a planned run.
    Reject(Reject),
    /// Cancel a run (a running tofu gets SIGINT, then SIGKILL after the agent's grace period).
    Cancel(Cancel),
    /// Wait until a run ends or waits for approval.
    Wait(Wait),
}

impl RunCmd {
    /// Runs the command; returns the exit code.
    pub async fn execute(self, ctx: &mut Ctx) -> Result<u8, String> {
        match self {
            RunCmd::Submit(cmd) => cmd.execute(ctx).await,
            RunCmd::List(cmd) => cmd.execute(ctx).await,
            RunCmd::Show(cmd) => cmd.execute(ctx).await,
            RunCmd::Logs(cmd) => cmd.execute(ctx).await,
            RunCmd::Plan(cmd) => cmd.execute(ctx).await,
            RunCmd::Approve(cmd) => cmd.execute(ctx).await,
            RunCmd::Reject(cmd) => cmd.execute(ctx).await,
            RunCmd::Cancel(cmd) => cmd.execute(ctx).await,
            RunCmd::Wait(cmd) => cmd.execute(ctx).await,
        }
    }
}

// `run submit` takes its about line from the variant above.
#[derive(clap::Args)]
pub struct Submit {
    /// The module directory.
    dir: PathBuf,
    /// Workspace (one state per workspace), e.g. ml/gpu-a100.
    #[arg(short = 'w', long)]
    workspace: String,
    /// Pool of agents to run on.
    #[arg(long, default_value = "default")]
    pool: String,
    /// A variable, NAME=VALUE (repeatable). `TF_VAR_NAME` in the environment works too (a
    /// --var wins; undeclared ones are dropped, as OpenTofu does).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    vars: Vec<String>,
    /// A variable whose value is secret, NAME=VALUE (repeatable): masked in logs and in
    /// `run show` even if the module does not declare it `sensitive`.
    #[arg(long = "sensitive-var", value_name = "NAME=VALUE")]
    sensitive_vars: Vec<String>,
    /// A .tfvars file (repeatable).
    #[arg(long = "var-file", value_name = "FILE")]
    var_files: Vec<PathBuf>,
    /// Apply without waiting for `run approve` when the plan has changes.
    #[arg(long)]
    auto_approve: bool,
    /// Only plan.
    #[arg(long, conflicts_with_all = ["destroy", "auto_approve"])]
    plan_only: bool,
    /// Plan and apply a destroy.
    #[arg(long)]
    destroy: bool,
    /// Wait until the run ends or waits for approval, showing progress.
    #[arg(long)]
    wait: bool,
    /// Commit the module comes from (audit).
    #[arg(long, env = "TOFUFLOW_COMMIT")]
    commit: Option<String>,
    /// Pipeline or DAG run id (audit).
    #[arg(long, env = "TOFUFLOW_PIPELINE_ID")]
    pipeline: Option<String>,
    /// A key=value tag (dag_id=nightly, team=ml): shown by `run show`, filtered on by
    /// `run list --tag`, in the audit trail and the trace. Repeatable.
    #[arg(long = "tag", value_name = "K=V", value_parser = crate::args::tag)]
    tags: Vec<(String, String)>,
    /// A key that makes the submit safe to retry: a second submit with the same key (and the
    /// same request) prints the run the first one started (kept 24 h, per user).
    #[arg(long, env = "TOFUFLOW_IDEMPOTENCY_KEY", value_parser = crate::args::non_empty)]
    idempotency_key: Option<String>,
    /// Where the module comes from, as `REPOSITORY_URL//PATH` (checked against the workspace
    /// rules' allowed sources). Default: the module directory's git `origin` remote and its
    /// path in the repository, when it is in a git checkout.
    #[arg(long, env = "TOFUFLOW_SOURCE")]
    source: Option<String>,
    /// A time to live for what this run applies (e.g. 4h): counted from a successful apply;
    /// at expiry the coordinator destroys the workspace with an auto-approved destroy run
    /// (same bundle and variables). See `tofuflow env list`, `tofuflow env extend`.
    #[arg(long, value_parser = crate::args::ttl_ms, conflicts_with_all = ["plan_only", "destroy"])]
    ttl: Option<i64>,
    /// Environment variables for this run's tasks only, from an env file (`KEY=VALUE` lines;
    /// `-` reads standard input; values never on the command line): sealed with the state key,
    /// given to the tasks with their lease, masked, erased when the run ends.
    #[arg(long, value_name = "PATH")]
    env_file: Option<PathBuf>,
    /// A key of --env-file that is not secret (not masked; no minimum length). Repeatable.
    #[arg(long = "env-plain", value_name = "KEY", requires = "env_file")]
    env_plain: Vec<String>,
    #[command(flatten)]
    limits: RunLimits,
}

/// Limits for a run's tasks; each is capped by the agents' own (`tofuflow-agent --limit-*`,
/// `--task-timeout`). 0 or unset: the agent's.
#[derive(clap::Args, Debug)]
struct RunLimits {
    /// CPU seconds per process.
    #[arg(long, default_value_t = 0)]
    limit_cpu: u64,
    /// Memory of the task in bytes.
    #[arg(long, default_value_t = 0)]
    limit_memory: u64,
    /// Processes of the task.
    #[arg(long, default_value_t = 0)]
    limit_nproc: u64,
    /// Largest file the task may write, in bytes.
    #[arg(long, default_value_t = 0)]
    limit_fsize: u64,
    /// Longest a task may run (e.g. 30m).
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<std::time::Duration>,
}

impl RunLimits {
    fn to_proto(&self) -> v1::TaskLimits {
        v1::TaskLimits {
            cpu_secs: self.limit_cpu,
            memory_bytes: self.limit_memory,
            nproc: self.limit_nproc,
            fsize_bytes: self.limit_fsize,
            timeout_secs: self.timeout.map(|d| d.as_secs().max(1)).unwrap_or(0),
        }
    }
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?} is not a duration like 30m: {e}"))
}

impl Submit {
    async fn execute(self, ctx: &mut Ctx) -> Result<u8, String> {
        // The cheap checks come first: nothing is packed or uploaded for a run the
        // coordinator would refuse anyway.
        let inputs = submit_inputs(
            &self.workspace,
            &self.pool,
            &self.vars,
            &self.sensitive_vars,
            &self.var_files,
        )?;
        let env = self.run_env()?;
        let digest = upload(ctx, &self.dir).await?;
        let mut request = self.request(ctx, digest, inputs);
        request.env = env.into_iter().collect();
        let run = ctx
            .client
            .submit_run(request)
            .await
            .map_err(|s| ctx.explain(s))?
            .into_inner();
        if self.wait {
            if !ctx.json {
                eprintln!(
                    "run {} submitted; waiting (Ctrl-C stops waiting, not the run)",
                    run.id
                );
            }
            let r = wait_for(ctx, &run.id).await?;
            output::print_run(&r, ctx.json);
            return Ok(code_for(&r.state));
        }
        if ctx.json {
            output::print_run(&run, true);
        } else {
            println!("{}", run.id);
            eprintln!(
                "run {} is {}: follow it with `tofuflow run logs -f {}`",
                run.id, run.state, run.id
            );
        }
        Ok(0)
    }

    /// The submission for an uploaded bundle.
    fn request(
        &self,
        ctx: &Ctx,
        bundle_digest: String,
        inputs: SubmitInputs,
    ) -> v1::SubmitRunRequest {
        let kind = if self.plan_only {
            v1::RunKind::PlanOnly
        } else if self.destroy {
            v1::RunKind::Destroy
        } else {
            v1::RunKind::PlanAndApply
        };
        v1::SubmitRunRequest {
            workspace: self.workspace.clone(),
            bundle_digest,
            pool: self.pool.clone(),
            kind: kind as i32,
            variables: inputs.variables,
            var_files: inputs.files,
            sensitive_variables: inputs.sensitive,
            optional_variables: inputs.optional,
            auto_approve: self.auto_approve,
            actor: ctx.who.clone(),
            commit: self.commit.clone().unwrap_or_default(),
            pipeline_id: self.pipeline.clone().unwrap_or_default(),
            tags: self.tags.iter().cloned().collect(),
            idempotency_key: self.idempotency_key.clone().unwrap_or_default(),
            source: self
                .source
                .clone()
                .or_else(|| git_source(&self.dir))
                .unwrap_or_default(),
            traceparent: std::env::var("TRACEPARENT").unwrap_or_default(),
            limits: Some(self.limits.to_proto()),
            ttl_ms: self.ttl.unwrap_or(0),
            env: HashMap::new(),
            env_plain: self.env_plain.clone(),
        }
    }

    /// The run's own environment from --env-file, checked as the coordinator will.
    fn run_env(&self) -> Result<std::collections::BTreeMap<String, String>, String> {
        let Some(p) = &self.env_file else {
            return Ok(Default::default());
        };
        let text = if p.as_os_str() == "-" {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                .map_err(|e| format!("cannot read --env-file from standard input: {e}"))?;
            s
        } else {
            std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?
        };
        let env = tofuflow_proto::connections::parse_env_file(&text)
            .map_err(|e| format!("{}: {e}", p.display()))?;
        tofuflow_proto::connections::check_values(&env, &Default::default(), &self.env_plain)
            .map_err(|e| format!("--env-file: {}", e.replace("--plain", "--env-plain")))?;
        Ok(env)
    }
}

/// Packs the module directory and uploads it; returns the bundle's digest.
pub(super) async fn upload(ctx: &mut Ctx, dir: &std::path::Path) -> Result<String, String> {
    let data = bundle::pack(dir)?;
    let size = data.len();
    let chunks: Vec<v1::Chunk> = data
        .chunks(tofuflow_proto::CHUNK_BYTES)
        .map(|c| v1::Chunk { data: c.to_vec() })
        .collect();
    let up = ctx
        .client
        .upload_bundle(tokio_stream::iter(chunks))
        .await
        .map_err(|s| ctx.explain(s))?
        .into_inner();
    if !ctx.json {
        eprintln!(
            "bundle {} ({size} bytes{})",
            up.digest,
            if up.existed { ", already stored" } else { "" }
        );
    }
    Ok(up.digest)
}

/// A run's variables: `TF_VAR_*` from the environment (optional: dropped when the module does
/// not declare them), then `--var` and `--sensitive-var` (which win). Returns the values, the
/// names marked sensitive and the names taken only from the environment.
#[allow(clippy::type_complexity)]
fn variables(
    vars: &[String],
    sensitive_vars: &[String],
) -> Result<(HashMap<String, String>, Vec<String>, Vec<String>), String> {
    let mut values: HashMap<String, String> = std::env::vars()
        .filter_map(|(k, v)| Some((k.strip_prefix("TF_VAR_")?.to_string(), v)))
        .collect();
    let mut optional: Vec<String> = values.keys().cloned().collect();
    let mut sensitive = Vec::new();
    for (flag, list) in [("--var", vars), ("--sensitive-var", sensitive_vars)] {
        for v in list {
            let (k, val) = v.split_once('=').ok_or_else(|| {
                format!(
                    "{flag} {:?} must look like NAME=VALUE",
                    v.split('=').next().unwrap_or("")
                )
            })?;
            values.insert(k.to_string(), val.to_string());
            optional.retain(|o| o != k);
            if flag == "--sensitive-var" {
                sensitive.push(k.to_string());
            }
        }
    }
    Ok((values, sensitive, optional))
}

/// A submission's variables and files, read and checked.
struct SubmitInputs {
    variables: HashMap<String, String>,
    sensitive: Vec<String>,
    optional: Vec<String>,
    files: Vec<v1::VarFile>,
}

/// Checks a submission's names (workspace, pool, variables) as the coordinator will, and reads
/// its variables and var files; the error names the bad input.
fn submit_inputs(
    workspace: &str,
    pool: &str,
    vars: &[String],
    sensitive_vars: &[String],
    var_files: &[PathBuf],
) -> Result<SubmitInputs, String> {
    tofuflow_proto::names::valid_workspace(workspace)?;
    tofuflow_proto::names::valid_pool(pool)?;
    let (variables, sensitive, optional) = variables(vars, sensitive_vars)?;
    for k in variables.keys() {
        tofuflow_proto::names::valid_var_name(k)?;
    }
    let mut files = Vec::new();
    for f in var_files {
        let content =
            std::fs::read(f).map_err(|e| format!("cannot read --var-file {}: {e}", f.display()))?;
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "vars.tfvars".into());
        files.push(v1::VarFile { name, content });
    }
    Ok(SubmitInputs {
        variables,
        sensitive,
        optional,
        files,
    })
}

#[derive(clap::Args)]
pub struct List {
    #[arg(short = 'w', long)]
    workspace: Option<String>,
    #[arg(long)]
    state: Option<String>,
    #[arg(long, default_value_t = 20)]
    limit: u32,
    /// Only runs carrying this key=value tag. Repeatable: runs carrying all of them.
    #[arg(long = "tag", value_name = "K=V", value_parser = crate::args::tag)]
    tags: Vec<(String, String)>,
    /// The next page: runs older than this run (the last id of the previous page).
    #[arg(long, value_name = "RUN_ID")]
    before: Option<String>,
}

impl List {
    async fn execute(self, ctx: &mut Ctx) -> Result<u8, String> {
        let r = ctx
            .client
            .list_runs(v1::ListRunsRequest {
                workspace: self.workspace.unwrap_or_default(),
                state: self.state.unwrap_or_default(),
                limit: self.limit,
                tags: self.tags.into_iter().collect(),
                before: self.before.unwrap_or_default(),
            })
            .await
            .map_err(|s| ctx.explain(s))?
            .into_inner();
        output::print_runs(&r.runs, ctx.json);
        Ok(0)
    }
}

#[derive(clap::Args)]
pub struct Show {
    run_id: String,
    /// Show sensitive variable values and outputs (operator role; recorded in the run's
    /// history).
    #[arg(long)]
    show_sensitive: bool,
}

impl Show {
    async fn execute(self, ctx: &mut Ctx) -> Result<u8, String> {
        let r = ctx
            .client
            .get_run(v1::GetRunRequest {
                run_id: self.run_id,
                show_sensitive: self.show_sensitive,
                actor: ctx.who.clone(),
            })
            .await
            .map_err(|s| ctx.explain(s))?
            .into_inner();
        output::print_run(&r, ctx.json);
        Ok(code_for(&r.state))
    }
}

#[derive(clap::Args)]
pub struct PlanCmd {
    run_id: String,
}

impl PlanCmd {
    async fn execute(self, ctx: &mut Ctx) -> Result<u8, String> {
        let req = v1::GetRunRequest {
            run_id: self.run_id,
            ..Default::default()
        };
        let p = ctx.client.get_plan(req).await;
        let p = p.map_err(|s| ctx.explain(s))?.into_inner();
        output::print_plan(&p, ctx.json);
        Ok(0)
    }
}

#[derive(clap::Args)]
pub struct Logs {
    run_id: String,
    /// Keep following until the run ends.
    #[arg(short = 'f', long)]
    follow: bool,
    /// Print tofu's raw JSON lines instead of their messages.
    #[arg(long)]
    raw: bool,
}

impl Logs {
    async fn execute(self, ctx: &mut Ctx) -> Result<u8, String> {
        let mut s = ctx
            .client
            .run_logs(v1::RunLogsRequest {
                run_id: self.run_id,
                follow: self.follow,
                offset: 0,
            })
            .await
            .map_err(|s| ctx.explain(s))?
            .into_inner();
        let mut last: Option<(String, u32)> = None;
        while let Some(l) = s.next().await {
            let l = l.map_err(|s| ctx.explain(s))?;
            if ctx.json {
                println!(
                    "{}",
                    serde_json::json!({"phase": l.phase, "attempt": l.attempt, "seq": l.seq, "unix_ms": l.unix_ms, "stream": l.stream, "line": l.line})
                );
                continue;
            }
            let key = (l.phase.clone(), l.attempt);
            if last.as_ref() != Some(&key) {
                println!("── {} (attempt {}) ──", l.phase, l.attempt);
                last = Some(key);
            }
            println!(
                "{}",
                if self.raw {
                    l.line
                } else {
                    output::render_line(&l.line)
                }
            );
        }
        Ok(0)
    }
}

#[derive(clap::Args)]
pub struct Approve {
    run_id: String,
    #[arg(long, default_value = "")]
    reason: String,
    #[arg(long)]
    wait: bool,
}

impl Approve {
    async fn execute(self, ctx: &mut Ctx) -> Result<u8, String> {
        let r = ctx
            .client
            .approve_run(v1::RunActionRequest {
                run_id: self.run_id.clone(),
                actor: ctx.who.clone(),
                reason: self.reason,
            })
            .await
            .map_err(|s| ctx.explain(s))?
            .into_inner();
        let r = if self.wait {
            wait_for(ctx, &self.run_id).await?
        } else {
            r
        };
        output::print_run(&r, ctx.json);
        Ok(code_for(&r.state))
    }
}

#[derive(clap::Args)]
pub struct Reject {
    run_id: String,
    #[arg(long, default_value = "")]
    reason: String,
}

impl Reject {
    async fn execute(self, ctx: &mut Ctx) -> Result<u8, String> {
        let r = ctx
            .client
            .reject_run(v1::RunActionRequest {
                run_id: self.run_id,
                actor: ctx.who.clone(),
                reason: self.reason,
            })
            .await
            .map_err(|s| ctx.explain(s))?
            .into_inner();
        output::print_run(&r, ctx.json);
        Ok(0)
    }
}

#[derive(clap::Args)]
pub struct Cancel {
    run_id: String,
    #[arg(long, default_value = "")]
    reason: String,
    #[arg(long)]
    wait: bool,
}

impl Cancel {
    async fn execute(self, ctx: &mut Ctx) -> Result<u8, String> {
        let r = ctx
            .client
            .cancel_run(v1::RunActionRequest {
                run_id: self.run_id.clone(),
                actor: ctx.who.clone(),
                reason: self.reason,
            })
            .await
            .map_err(|s| ctx.explain(s))?
            .into_inner();
        let r = if self.wait {
            wait_for(ctx, &self.run_id).await?
        } else {
            r
        };
        output::print_run(&r, ctx.json);
        Ok(0)
    }
}

#[derive(clap::Args)]
pub struct Wait {
    run_id: String,
}

impl Wait {
    async fn execute(self, ctx: &mut Ctx) -> Result<u8, String> {
        let r = wait_for(ctx, &self.run_id).await?;
        output::print_run(&r, ctx.json);
        Ok(code_for(&r.state))
    }
}

/// Follows a run until it ends or waits for approval, printing each transition (unless the
/// output is JSON).
pub(crate) async fn wait_for(ctx: &mut Ctx, run_id: &str) -> Result<v1::Run, String> {
    let quiet = ctx.json;
    let mut s = ctx
        .client
        .watch_run(v1::GetRunRequest {
            run_id: run_id.to_string(),
            ..Default::default()
        })
        .await
        .map_err(|e| ctx.explain(e))?
        .into_inner();
    let mut seen = 0;
    let mut last = None;
    while let Some(r) = s.next().await {
        let r = r.map_err(|e| ctx.explain(e))?;
        if !quiet {
            for t in r.transitions.iter().skip(seen) {
                eprintln!(
                    "  {}  {:>18} → {:<18} {}",
                    output::hms(t.unix_ms),
                    if t.from_state.is_empty() {
                        "·"
                    } else {
                        &t.from_state
                    },
                    t.to_state,
                    t.reason
                );
            }
        }
        seen = r.transitions.len();
        let waiting = r.state == "awaiting_approval";
        last = Some(r);
        if waiting {
            if !quiet {
                eprintln!("plan waits for approval: `tofuflow run approve {run_id}` (or reject)");
            }
            break;
        }
    }
    last.ok_or_else(|| "the coordinator closed the watch without an answer".into())
}

/// `ORIGIN_URL//PATH` for a module directory inside a git checkout with an `origin` remote.
fn git_source(dir: &std::path::Path) -> Option<String> {
    let git = |args: &[&str]| -> Option<String> {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .stderr(std::process::Stdio::null())
            .output()
            .ok()?;
        let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
        (out.status.success() && !text.is_empty()).then_some(text)
    };
    let url = git(&["remote", "get-url", "origin"])?;
    let prefix = git(&["rev-parse", "--show-prefix"]).unwrap_or_default();
    Some(format!("{url}//{}", prefix.trim_end_matches('/')))
}
