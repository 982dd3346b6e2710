//! `tofuflow workspace list`: every workspace one may read, with its newest run, its last
//! apply, its last drift check and since when it has drifted, its TTL and deadline;
//! `workspace ttl`: a TTL every apply of the workspace restarts.

use super::Ctx;
use crate::output;
use clap::Subcommand;
use tofuflow_proto::v1;

#[derive(Subcommand)]
pub enum WorkspaceCmd {
    /// List workspaces: last run, last applied, last checked, drift (DRIFTED since when), the
    /// remediation run, the TTL deadline.
    List {
        /// Only drifted workspaces.
        #[arg(long)]
        drifted: bool,
    },
    /// Set a workspace's TTL (operator on it): every later apply there starts (or restarts)
    /// the deadline at which its resources are destroyed (see `tofuflow env list`).
    Ttl {
        #[arg(value_name = "WORKSPACE")]
        workspace: String,
        /// How long after each apply (e.g. 4h).
        #[arg(value_name = "DURATION", value_parser = crate::args::ttl_ms, required_unless_present = "clear")]
        ttl: Option<i64>,
        /// Remove the workspace's TTL (a deadline already running stays: `env extend` it).
        #[arg(long, conflicts_with = "ttl")]
        clear: bool,
    },
}

impl WorkspaceCmd {
    /// Runs the command; returns the exit code.
    pub async fn execute(self, ctx: &mut Ctx) -> Result<u8, String> {
        let drifted = match self {
            WorkspaceCmd::List { drifted } => drifted,
            WorkspaceCmd::Ttl { workspace, ttl, .. } => return set_ttl(ctx, workspace, ttl).await,
        };
        let req = v1::ListWorkspacesRequest {
            drifted_only: drifted,
        };
        let r = ctx.client.list_workspaces(req).await;
        let r = r.map_err(|s| ctx.explain(s))?.into_inner();
        if ctx.json {
            output::print_json(&serde_json::json!(r
                .workspaces
                .iter()
                .map(workspace_json)
                .collect::<Vec<_>>()));
        } else {
            print_workspaces(&r.workspaces);
        }
        Ok(0)
    }
}

async fn set_ttl(ctx: &mut Ctx, workspace: String, ttl: Option<i64>) -> Result<u8, String> {
    let req = v1::SetWorkspaceTtlRequest {
        workspace,
        ttl_ms: ttl.unwrap_or(0),
    };
    let r = ctx.client.set_workspace_ttl(req).await;
    let w = r.map_err(|s| ctx.explain(s))?.into_inner();
    if ctx.json {
        output::print_json(&workspace_json(&w));
    } else if w.ttl_ms > 0 {
        println!(
            "workspace {}: every apply is destroyed {} later",
            w.name,
            ttl_text(w.ttl_ms)
        );
    } else {
        println!("workspace {}: no TTL", w.name);
    }
    Ok(0)
}

fn ttl_text(ms: i64) -> String {
    humantime::format_duration(std::time::Duration::from_secs((ms / 1000).max(0) as u64))
        .to_string()
}

fn workspace_json(w: &v1::Workspace) -> serde_json::Value {
    serde_json::json!({
        "name": w.name,
        "last_run": w.last_run,
        "last_run_state": w.last_run_state,
        "last_applied_unix_ms": w.last_applied_unix_ms,
        "last_applied_run": w.last_applied_run,
        "last_checked_unix_ms": w.last_checked_unix_ms,
        "last_check_run": w.last_check_run,
        "drift": w.drift,
        "drifted_since_unix_ms": w.drifted_since_unix_ms,
        "remediation_run": w.remediation_run,
        "last_check_error": w.last_check_error,
        "expires_unix_ms": w.expires_unix_ms,
        "ttl_ms": w.ttl_ms,
    })
}

fn print_workspaces(all: &[v1::Workspace]) {
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|w| {
            let drift = match w.drift.as_str() {
                "drifted" => format!(
                    "DRIFTED since {}",
                    output::when(w.drifted_since_unix_ms, "-")
                ),
                "check_failed" => format!("check failed: {}", w.last_check_error),
                d => d.to_string(),
            };
            vec![
                w.name.clone(),
                format!("{} ({})", w.last_run_state, w.last_run),
                output::when(w.last_applied_unix_ms, "never"),
                output::when(w.last_checked_unix_ms, "never"),
                drift,
                if w.remediation_run.is_empty() {
                    "-".into()
                } else {
                    w.remediation_run.clone()
                },
                if w.ttl_ms > 0 {
                    ttl_text(w.ttl_ms)
                } else {
                    "-".into()
                },
                output::when(w.expires_unix_ms, "-"),
            ]
        })
        .collect();
    let header = [
        "WORKSPACE",
        "LAST RUN",
        "LAST APPLIED",
        "LAST CHECKED",
        "DRIFT",
        "REMEDIATION",
        "TTL",
        "EXPIRES",
    ];
    println!("{}", output::table(&header, &rows));
}
