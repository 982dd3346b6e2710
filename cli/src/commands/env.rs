//! `tofuflow env`: environments with a time to live (`run submit --ttl`): what expires when,
//! where each teardown stands, and extending a deadline.

use super::Ctx;
use crate::output;
use clap::Subcommand;
use tofuflow_proto::v1;

#[derive(Subcommand)]
pub enum EnvCmd {
    /// List environments with a TTL: state, time left, who set it, the run that applied it,
    /// failed teardown attempts and the last error.
    List {
        /// Only this state: active, tearing_down, destroyed, teardown_failed.
        #[arg(long)]
        state: Option<String>,
    },
    /// Move an active environment's deadline (operator on the workspace).
    Extend {
        #[arg(value_name = "WORKSPACE")]
        workspace: String,
        /// Later than the current deadline by this much (e.g. 2h).
        #[arg(long, value_parser = crate::args::ttl_ms, conflicts_with = "ttl", required_unless_present = "ttl")]
        by: Option<i64>,
        /// This long from now instead (e.g. 4h).
        #[arg(long, value_parser = crate::args::ttl_ms)]
        ttl: Option<i64>,
    },
}

impl EnvCmd {
    /// Runs the command; returns the exit code.
    pub async fn execute(self, ctx: &mut Ctx) -> Result<u8, String> {
        match self {
            EnvCmd::List { state } => {
                let req = v1::ListEnvironmentsRequest {
                    state: state.unwrap_or_default(),
                };
                let r = ctx.client.list_environments(req).await;
                let r = r.map_err(|s| ctx.explain(s))?.into_inner();
                print_environments(&r.environments, ctx.json);
            }
            EnvCmd::Extend { workspace, by, ttl } => {
                let req = v1::ExtendEnvironmentRequest {
                    workspace,
                    by_ms: by.unwrap_or(0),
                    ttl_ms: ttl.unwrap_or(0),
                };
                let e = ctx.client.extend_environment(req).await;
                let e = e.map_err(|s| ctx.explain(s))?.into_inner();
                if ctx.json {
                    output::print_json(&env_json(&e));
                } else {
                    println!(
                        "environment {} now expires {} (in {})",
                        e.workspace,
                        output::date(e.expires_unix_ms),
                        left(e.expires_unix_ms)
                    );
                }
            }
        }
        Ok(0)
    }
}

/// One environment as JSON.
fn env_json(e: &v1::Environment) -> serde_json::Value {
    serde_json::json!({
        "workspace": e.workspace,
        "state": e.state,
        "ttl_ms": e.ttl_ms,
        "expires_unix_ms": e.expires_unix_ms,
        "set_by": e.set_by,
        "source_run": e.source_run,
        "workflow_run": e.workflow_run,
        "destroy_run": e.destroy_run,
        "attempts": e.attempts,
        "next_attempt_unix_ms": e.next_attempt_unix_ms,
        "last_error": e.last_error,
        "reminder_sent": e.reminder_sent,
    })
}

/// Time until `ms` (unix ms), like `3h12m`, or `expired 5m ago`.
fn left(ms: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    let d = |ms: i64| {
        let secs = (ms / 1000).max(0) as u64;
        humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
    };
    if ms > now {
        d(ms - now)
    } else {
        format!("expired {} ago", d(now - ms))
    }
}

fn print_environments(all: &[v1::Environment], json: bool) {
    if json {
        output::print_json(&serde_json::json!(all
            .iter()
            .map(env_json)
            .collect::<Vec<_>>()));
        return;
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|e| {
            let source = if e.workflow_run.is_empty() {
                e.source_run.clone()
            } else {
                format!("workflow run {}", e.workflow_run)
            };
            vec![
                e.workspace.clone(),
                shown_state(&e.state),
                match e.state.as_str() {
                    "active" => left(e.expires_unix_ms),
                    _ => "-".into(),
                },
                e.set_by.clone(),
                source,
                e.destroy_run.clone(),
                e.attempts.to_string(),
                e.last_error.clone(),
            ]
        })
        .collect();
    let header = [
        "WORKSPACE",
        "STATE",
        "EXPIRES IN",
        "SET BY",
        "SOURCE",
        "DESTROY RUN",
        "ATTEMPTS",
        "LAST ERROR",
    ];
    println!("{}", output::table(&header, &rows));
}

/// A state as the table shows it: a failed teardown in capitals (it needs a person).
fn shown_state(s: &str) -> String {
    if s == "teardown_failed" {
        s.to_uppercase()
    } else {
        s.to_string()
    }
}
