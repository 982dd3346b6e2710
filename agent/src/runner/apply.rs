//! The apply phase: the saved plan fetched (verified against its digest) before anything runs,
//! then `tofu apply` of exactly that plan and the outputs read back.

use super::tofu::Tofu;
use super::{Done, Held, Runner};
use crate::error::{Result, TaskError};
use std::path::Path;
use tofuflow_proto::v1;

impl Runner {
    /// Puts the run's saved plan at `plan_file` (on the host).
    pub(super) async fn fetch_plan(
        &self,
        spec: &v1::TaskSpec,
        lease: &Held,
        plan_file: &Path,
    ) -> Result<()> {
        if spec.plan_digest.is_empty() {
            return Err(TaskError::Setup("apply task without a plan digest".into()));
        }
        let plan = self.fetch_blob(spec, lease, &spec.plan_digest).await?;
        std::fs::write(plan_file, &plan)?;
        Ok(())
    }

    /// Applies the saved plan at `plan_in` (as tofu sees it) and reads the outputs.
    pub(super) async fn apply_steps(
        &self,
        tofu: &Tofu<'_>,
        spec: &v1::TaskSpec,
        plan_in: &Path,
    ) -> Result<Done> {
        tofu.rep.system(format!(
            "tofuflow: applying saved plan {} (sha256 verified)",
            spec.plan_digest
        ));
        let fin = tofu
            .run(
                vec![
                    "apply".into(),
                    format!("-lock-timeout={}s", self.cfg.lock_timeout.as_secs()),
                    "-input=false".into(),
                    "-no-color".into(),
                    "-json".into(),
                    plan_in.display().to_string(),
                ],
                false,
            )
            .await?;
        if fin.cancelled {
            return Ok(Done::cancelled(fin.code, true));
        }
        if fin.code != 0 {
            return Err(TaskError::Tofu {
                cmd: "apply".into(),
                exit: fin.code,
                signal: fin.killed_by,
            });
        }
        let out = tofu
            .run(
                vec!["output".into(), "-json".into(), "-no-color".into()],
                true,
            )
            .await?;
        if out.code != 0 {
            return Err(TaskError::TofuData {
                cmd: "output -json".into(),
                exit: out.code,
            });
        }
        Ok(Done {
            has_changes: true,
            summary: Default::default(),
            outputs_json: out.stdout,
            exit_code: 0,
            cancelled: false,
        })
    }
}
