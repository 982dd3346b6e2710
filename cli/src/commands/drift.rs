//! `tofuflow drift check`: a plan of a workspace's last applied configuration, now, without
//! waiting for the workspace's turn; with `--wait` its finding is the exit code (0 in sync, 2
//! drifted, 1 the check failed), as `tofu plan -detailed-exitcode` reports.

use super::Ctx;
use crate::output;
use clap::Subcommand;
use tofuflow_proto::v1;

#[derive(Subcommand)]
pub enum DriftCmd {
    /// Check a workspace for drift now (operator on it).
    Check {
        #[arg(value_name = "WORKSPACE")]
        workspace: String,
        /// Plan with -refresh-only: compare the state with the real infrastructure only.
        #[arg(long)]
        refresh_only: bool,
        /// On drift, submit a remediation run (plan and apply of the last applied
        /// configuration) that waits for approval.
        #[arg(long)]
        remediate: bool,
        /// Wait for the finding: exit 0 in sync, 2 drifted, 1 the check failed.
        #[arg(long)]
        wait: bool,
    },
}

impl DriftCmd {
    /// Runs the command; returns the exit code.
    pub async fn execute(self, ctx: &mut Ctx) -> Result<u8, String> {
        let DriftCmd::Check {
            workspace,
            refresh_only,
            remediate,
            wait,
        } = self;
        let req = v1::CheckDriftRequest {
            workspace,
            refresh_only,
            remediate,
        };
        let r = ctx.client.check_drift(req).await;
        let run = r.map_err(|s| ctx.explain(s))?.into_inner();
        if !wait {
            if ctx.json {
                output::print_json(&output::run_json(&run));
            } else {
                println!("drift check {} queued for {}", run.id, run.workspace);
            }
            return Ok(0);
        }
        let r = super::run::wait_for(ctx, &run.id).await?;
        let (code, finding) = match r.state.as_str() {
            "planned_no_changes" => (0, "in sync".to_string()),
            "planned" => (
                2,
                format!(
                    "DRIFTED: {} to add, {} to change, {} to destroy",
                    r.summary.as_ref().map_or(0, |s| s.add),
                    r.summary.as_ref().map_or(0, |s| s.change),
                    r.summary.as_ref().map_or(0, |s| s.destroy)
                ),
            ),
            s => (1, format!("the check ended {s}: {}", r.error)),
        };
        if ctx.json {
            output::print_json(&output::run_json(&r));
        } else {
            println!("{}: {finding} (check {})", r.workspace, r.id);
        }
        Ok(code)
    }
}
