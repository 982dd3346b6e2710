//! `tofuflow`: the user command line. Talks only gRPC to the coordinator.
//!
//! Exit codes: 0 success (or a run that ended well / waits for approval), 1 usage or connection
//! error, 2 a run that ended unsuccessfully (failed, cancelled, rejected, interrupted, expired).

mod bundle;
mod output;

use clap::{Parser, Subcommand, ValueEnum};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use tofuflow_proto::v1::{self, user_service_client::UserServiceClient};
use tokio_stream::StreamExt;
use tonic::transport::Channel;

#[derive(Parser)]
#[command(
    name = "tofuflow",
    version,
    about = "Run OpenTofu across a fleet: submit, approve, watch and inspect runs"
)]
struct Cli {
    /// gRPC URL of the coordinator.
    #[arg(
        long,
        global = true,
        env = "TOFUFLOW_COORDINATOR",
        default_value = "http://127.0.0.1:7700"
    )]
    coordinator: String,
    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum, default_value = "table")]
    output: Format,
    /// Your user token (when the coordinator has a --users-file; it then decides who you are).
    #[arg(long, global = true, env = "TOFUFLOW_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Who you are, recorded on every action (default: $USER; ignored when tokens are in use).
    #[arg(long, global = true, env = "TOFUFLOW_USER")]
    user: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Format {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// Submit, inspect and act on runs.
    #[command(subcommand)]
    Run(RunCmd),
    /// Inspect agents.
    #[command(subcommand)]
    Agent(AgentCmd),
    /// Inspect, pull, roll back and lock the state the coordinator keeps per workspace.
    #[command(subcommand)]
    State(StateCmd),
    /// See and empty the dead-letter queue: task messages no agent could use (admin).
    #[command(subcommand)]
    DeadLetter(DeadLetterCmd),
}

#[derive(Subcommand)]
enum DeadLetterCmd {
    /// List dead messages, oldest first: ids, pool, why and when they died (they stay queued).
    List {
        /// At most this many (up to 1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Empty the dead-letter queue (recorded with your name in the coordinator's log).
    Purge {
        #[arg(long, default_value = "")]
        reason: String,
    },
}

#[derive(Subcommand)]
enum StateCmd {
    /// List a workspace's state versions (newest first), its lock and its audit trail.
    List { workspace: String },
    /// Show one version: serial, lineage, digest, who wrote it, and what it holds.
    Show {
        workspace: String,
        #[arg(long)]
        version: Option<i64>,
    },
    /// Print one version's state file (the latest by default) to stdout.
    Pull {
        workspace: String,
        #[arg(long)]
        version: Option<i64>,
    },
    /// Make version N the current state again (a new version with N's exact content; refused
    /// while locked).
    Rollback {
        workspace: String,
        #[arg(long)]
        to: i64,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Lock a workspace by hand: runs cannot take its state until it is unlocked.
    Lock {
        workspace: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Release your lock; with --force, release anyone's (an admin action, recorded).
    Unlock {
        workspace: String,
        #[arg(long)]
        force: bool,
        #[arg(long, default_value = "")]
        reason: String,
    },
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

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?} is not a duration like 30m: {e}"))
}

#[derive(Subcommand)]
enum RunCmd {
    /// Pack a module directory, upload it and start a run.
    Submit {
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
        #[command(flatten)]
        limits: RunLimits,
    },
    /// List runs, newest first.
    List {
        #[arg(short = 'w', long)]
        workspace: Option<String>,
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Show a run: state, plan summary, outputs, history.
    Show {
        run_id: String,
        /// Show sensitive variable values and outputs (operator role; recorded in the run's
        /// history).
        #[arg(long)]
        show_sensitive: bool,
    },
    /// Print a run's log.
    Logs {
        run_id: String,
        /// Keep following until the run ends.
        #[arg(short = 'f', long)]
        follow: bool,
        /// Print tofu's raw JSON lines instead of their messages.
        #[arg(long)]
        raw: bool,
    },
    /// Approve a planned run: its saved plan is applied.
    Approve {
        run_id: String,
        #[arg(long, default_value = "")]
        reason: String,
        #[arg(long)]
        wait: bool,
    },
    /// Reject a planned run.
    Reject {
        run_id: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Cancel a run (a running tofu gets SIGINT, then SIGKILL after the agent's grace period).
    Cancel {
        run_id: String,
        #[arg(long, default_value = "")]
        reason: String,
        #[arg(long)]
        wait: bool,
    },
    /// Wait until a run ends or waits for approval.
    Wait { run_id: String },
}

#[derive(Subcommand)]
enum AgentCmd {
    /// List registered agents.
    List,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn explain(coordinator: &str, s: tonic::Status) -> String {
    match s.code() {
        tonic::Code::Unavailable => format!(
            "cannot reach the coordinator at {coordinator}: is it running? (start it with `tofuflow-coordinator`, or point --coordinator / TOFUFLOW_COORDINATOR at it): {}",
            s.message()
        ),
        _ => s.message().to_string(),
    }
}

type Client = UserServiceClient<
    tonic::service::interceptor::InterceptedService<Channel, tofuflow_proto::auth::Bearer>,
>;

async fn client(url: &str, token: Option<&str>) -> Result<Client, String> {
    let ch = tonic::transport::Endpoint::from_shared(url.to_string())
        .map_err(|e| format!("bad coordinator URL {url:?}: {e}"))?
        .connect_timeout(std::time::Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("cannot reach the coordinator at {url}: is it running? (start it with `tofuflow-coordinator`, or point --coordinator / TOFUFLOW_COORDINATOR at it): {e}"))?;
    Ok(
        UserServiceClient::with_interceptor(ch, tofuflow_proto::auth::Bearer::new(token)?)
            .max_decoding_message_size(tofuflow_proto::MAX_MESSAGE_BYTES),
    )
}

fn actor(cli_user: &Option<String>) -> String {
    cli_user
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
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

/// Exit code for a run's state.
fn code_for(state: &str) -> u8 {
    match state {
        "applied" | "planned" | "planned_no_changes" | "awaiting_approval" => 0,
        "failed" | "cancelled" | "rejected" | "interrupted" | "expired" => 2,
        _ => 0,
    }
}

async fn run(cli: Cli) -> Result<u8, String> {
    let url = cli.coordinator.clone();
    let mut c = client(&url, cli.token.as_deref()).await?;
    let ex = |s: tonic::Status| explain(&url, s);
    let json = cli.output == Format::Json;
    let who = actor(&cli.user);
    match cli.cmd {
        Cmd::Run(RunCmd::Submit {
            dir,
            workspace,
            pool,
            vars,
            sensitive_vars,
            var_files,
            auto_approve,
            plan_only,
            destroy,
            wait,
            commit,
            pipeline,
            limits,
        }) => {
            // The cheap checks come first: nothing is packed or uploaded for a run the
            // coordinator would refuse anyway.
            let SubmitInputs {
                variables,
                sensitive,
                optional,
                files,
            } = submit_inputs(&workspace, &pool, &vars, &sensitive_vars, &var_files)?;
            let data = bundle::pack(&dir)?;
            let size = data.len();
            let chunks: Vec<v1::Chunk> = data
                .chunks(tofuflow_proto::CHUNK_BYTES)
                .map(|c| v1::Chunk { data: c.to_vec() })
                .collect();
            let up = c
                .upload_bundle(tokio_stream::iter(chunks))
                .await
                .map_err(ex)?
                .into_inner();
            if !json {
                eprintln!(
                    "bundle {} ({size} bytes{})",
                    up.digest,
                    if up.existed { ", already stored" } else { "" }
                );
            }
            let kind = if plan_only {
                v1::RunKind::PlanOnly
            } else if destroy {
                v1::RunKind::Destroy
            } else {
                v1::RunKind::PlanAndApply
            };
            let run = c
                .submit_run(v1::SubmitRunRequest {
                    workspace,
                    bundle_digest: up.digest,
                    pool,
                    kind: kind as i32,
                    variables,
                    var_files: files,
                    sensitive_variables: sensitive,
                    optional_variables: optional,
                    auto_approve,
                    actor: who,
                    commit: commit.unwrap_or_default(),
                    pipeline_id: pipeline.unwrap_or_default(),
                    traceparent: std::env::var("TRACEPARENT").unwrap_or_default(),
                    limits: Some(v1::TaskLimits {
                        cpu_secs: limits.limit_cpu,
                        memory_bytes: limits.limit_memory,
                        nproc: limits.limit_nproc,
                        fsize_bytes: limits.limit_fsize,
                        timeout_secs: limits.timeout.map(|d| d.as_secs().max(1)).unwrap_or(0),
                    }),
                })
                .await
                .map_err(ex)?
                .into_inner();
            if wait {
                if !json {
                    eprintln!(
                        "run {} submitted; waiting (Ctrl-C stops waiting, not the run)",
                        run.id
                    );
                }
                let r = wait_for(&mut c, &run.id, json, &url).await?;
                output::print_run(&r, json);
                return Ok(code_for(&r.state));
            }
            if json {
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
        Cmd::Run(RunCmd::List {
            workspace,
            state,
            limit,
        }) => {
            let r = c
                .list_runs(v1::ListRunsRequest {
                    workspace: workspace.unwrap_or_default(),
                    state: state.unwrap_or_default(),
                    limit,
                })
                .await
                .map_err(ex)?
                .into_inner();
            output::print_runs(&r.runs, json);
            Ok(0)
        }
        Cmd::Run(RunCmd::Show {
            run_id,
            show_sensitive,
        }) => {
            let r = c
                .get_run(v1::GetRunRequest {
                    run_id,
                    show_sensitive,
                    actor: who,
                })
                .await
                .map_err(ex)?
                .into_inner();
            output::print_run(&r, json);
            Ok(code_for(&r.state))
        }
        Cmd::Run(RunCmd::Logs {
            run_id,
            follow,
            raw,
        }) => {
            let mut s = c
                .run_logs(v1::RunLogsRequest { run_id, follow })
                .await
                .map_err(ex)?
                .into_inner();
            let mut last: Option<(String, u32)> = None;
            while let Some(l) = s.next().await {
                let l = l.map_err(ex)?;
                if json {
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
                    if raw {
                        l.line
                    } else {
                        output::render_line(&l.line)
                    }
                );
            }
            Ok(0)
        }
        Cmd::Run(RunCmd::Approve {
            run_id,
            reason,
            wait,
        }) => {
            let r = c
                .approve_run(v1::RunActionRequest {
                    run_id: run_id.clone(),
                    actor: who,
                    reason,
                })
                .await
                .map_err(ex)?
                .into_inner();
            let r = if wait {
                wait_for(&mut c, &run_id, json, &url).await?
            } else {
                r
            };
            output::print_run(&r, json);
            Ok(code_for(&r.state))
        }
        Cmd::Run(RunCmd::Reject { run_id, reason }) => {
            let r = c
                .reject_run(v1::RunActionRequest {
                    run_id,
                    actor: who,
                    reason,
                })
                .await
                .map_err(ex)?
                .into_inner();
            output::print_run(&r, json);
            Ok(0)
        }
        Cmd::Run(RunCmd::Cancel {
            run_id,
            reason,
            wait,
        }) => {
            let r = c
                .cancel_run(v1::RunActionRequest {
                    run_id: run_id.clone(),
                    actor: who,
                    reason,
                })
                .await
                .map_err(ex)?
                .into_inner();
            let r = if wait {
                wait_for(&mut c, &run_id, json, &url).await?
            } else {
                r
            };
            output::print_run(&r, json);
            Ok(0)
        }
        Cmd::Run(RunCmd::Wait { run_id }) => {
            let r = wait_for(&mut c, &run_id, json, &url).await?;
            output::print_run(&r, json);
            Ok(code_for(&r.state))
        }
        Cmd::State(StateCmd::List { workspace }) => {
            let r = c
                .list_state_versions(v1::StateRequest {
                    workspace,
                    version: 0,
                })
                .await
                .map_err(ex)?
                .into_inner();
            output::print_state_list(&r, json);
            Ok(0)
        }
        Cmd::State(StateCmd::Show { workspace, version }) => {
            let (info, data) = pull(&mut c, &workspace, version, &url).await?;
            output::print_state(&info, &data, json);
            Ok(0)
        }
        Cmd::State(StateCmd::Pull { workspace, version }) => {
            let (_, data) = pull(&mut c, &workspace, version, &url).await?;
            use std::io::Write;
            std::io::stdout()
                .write_all(&data)
                .map_err(|e| e.to_string())?;
            Ok(0)
        }
        Cmd::State(StateCmd::Rollback {
            workspace,
            to,
            reason,
        }) => {
            let v = c
                .rollback_state(v1::RollbackStateRequest {
                    workspace: workspace.clone(),
                    to_version: to,
                    actor: who,
                    reason,
                })
                .await
                .map_err(ex)?
                .into_inner();
            if json {
                println!("{}", output::version_json(&v));
            } else {
                println!("workspace {workspace}: version {} now holds the content of version {to} (serial {})", v.version, v.serial);
            }
            Ok(0)
        }
        Cmd::State(StateCmd::Lock { workspace, reason }) => {
            let l = c
                .lock_state(v1::StateLockRequest {
                    workspace: workspace.clone(),
                    actor: who,
                    reason,
                    force: false,
                })
                .await
                .map_err(ex)?
                .into_inner();
            println!(
                "workspace {workspace} locked by {} (lock {})",
                l.owner, l.lock_id
            );
            Ok(0)
        }
        Cmd::State(StateCmd::Unlock {
            workspace,
            force,
            reason,
        }) => {
            let l = c
                .unlock_state(v1::StateLockRequest {
                    workspace: workspace.clone(),
                    actor: who,
                    reason,
                    force,
                })
                .await
                .map_err(ex)?
                .into_inner();
            println!(
                "workspace {workspace} unlocked (the lock was {}'s)",
                l.owner
            );
            Ok(0)
        }
        Cmd::DeadLetter(DeadLetterCmd::List { limit }) => {
            let r = c
                .list_dead_letters(v1::ListDeadLettersRequest { actor: who, limit })
                .await
                .map_err(ex)?
                .into_inner();
            output::print_dead_letters(&r, json);
            Ok(0)
        }
        Cmd::DeadLetter(DeadLetterCmd::Purge { reason }) => {
            let r = c
                .purge_dead_letters(v1::PurgeDeadLettersRequest { actor: who, reason })
                .await
                .map_err(ex)?
                .into_inner();
            if json {
                println!("{}", serde_json::json!({"purged": r.purged}));
            } else {
                println!("purged {} dead messages", r.purged);
            }
            Ok(0)
        }
        Cmd::Agent(AgentCmd::List) => {
            let r = c
                .list_agents(v1::ListAgentsRequest {})
                .await
                .map_err(ex)?
                .into_inner();
            output::print_agents(&r.agents, json);
            Ok(0)
        }
    }
}

/// Downloads one state version.
async fn pull(
    c: &mut Client,
    workspace: &str,
    version: Option<i64>,
    url: &str,
) -> Result<(v1::StateVersionInfo, Vec<u8>), String> {
    let mut s = c
        .get_state(v1::StateRequest {
            workspace: workspace.to_string(),
            version: version.unwrap_or(0),
        })
        .await
        .map_err(|e| explain(url, e))?
        .into_inner();
    let mut info = None;
    let mut data = Vec::new();
    while let Some(chunk) = s.next().await {
        let chunk = chunk.map_err(|e| explain(url, e))?;
        if info.is_none() {
            info = chunk.info;
        }
        data.extend_from_slice(&chunk.data);
    }
    Ok((info.unwrap_or_default(), data))
}

/// Follows a run until it ends or waits for approval, printing each transition.
async fn wait_for(c: &mut Client, run_id: &str, quiet: bool, url: &str) -> Result<v1::Run, String> {
    let mut s = c
        .watch_run(v1::GetRunRequest {
            run_id: run_id.to_string(),
            ..Default::default()
        })
        .await
        .map_err(|e| explain(url, e))?
        .into_inner();
    let mut seen = 0;
    let mut last = None;
    while let Some(r) = s.next().await {
        let r = r.map_err(|e| explain(url, e))?;
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
