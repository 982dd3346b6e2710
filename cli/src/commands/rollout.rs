//! `tofuflow rollout`: a workflow run's rollouts (a `for_each` stack's targets in waves): the
//! status of every target (state, wave, the bundle it is on), pause, resume, abort, and retry
//! of the failed targets.

use super::Ctx;
use crate::output;
use clap::Subcommand;
use tofuflow_proto::v1;

/// Which workflow run, and which of its rollouts.
#[derive(clap::Args)]
pub struct Which {
    /// The workflow run.
    #[arg(value_name = "WORKFLOW_RUN")]
    id: String,
    /// The for_each stack whose rollout (needed only when the workflow has several).
    #[arg(long, value_name = "STACK", default_value = "")]
    stack: String,
}

#[derive(Subcommand)]
pub enum RolloutCmd {
    /// Every target of the rollouts: state, wave, run and the bundle digest it is on.
    Status(Which),
    /// Start no more targets (running ones finish) until `rollout resume`.
    Pause(Which),
    /// Go on after a pause, a halt (failures so far are forgiven: the budget applies to new
    /// ones) or an abort (the remaining targets are planned against current state).
    Resume(Which),
    /// Cancel the targets not started yet; running ones finish.
    Abort(Which),
    /// Run the failed targets again (and what was skipped because of them).
    RetryFailed(Which),
}

impl RolloutCmd {
    pub async fn execute(self, ctx: &mut Ctx) -> Result<u8, String> {
        let (w, action) = match self {
            RolloutCmd::Status(w) => (w, ""),
            RolloutCmd::Pause(w) => (w, "pause"),
            RolloutCmd::Resume(w) => (w, "resume"),
            RolloutCmd::Abort(w) => (w, "abort"),
            RolloutCmd::RetryFailed(w) => (w, "retry-failed"),
        };
        let run = if action.is_empty() {
            ctx.client
                .get_workflow_run(v1::WorkflowRunRequest {
                    workflow_run_id: w.id.clone(),
                })
                .await
        } else {
            ctx.client
                .rollout_action(v1::RolloutRequest {
                    workflow_run_id: w.id.clone(),
                    stack: w.stack.clone(),
                    action: action.into(),
                })
                .await
        }
        .map_err(|s| ctx.explain(s))?
        .into_inner();
        if run.rollouts.is_empty() {
            return Err(format!(
                "workflow run {} has no rollout (a for_each stack with a rollout block)",
                w.id
            ));
        }
        output::print_rollouts(&run, &w.stack, ctx.json);
        Ok(0)
    }
}
