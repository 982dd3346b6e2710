//! The plan phase: `tofu plan` to a saved plan file and, when there are changes, its summary and
//! the plan file and JSON uploaded as the run's artifacts.

use super::tofu::Tofu;
use super::{Done, Held, Runner};
use crate::error::{Result, TaskError};
use std::path::Path;
use tofuflow_proto::v1;

impl Runner {
    /// Plans into `plan_in` (the plan file as tofu sees it; `plan_file` on the host).
    pub(super) async fn plan_steps(
        &self,
        tofu: &Tofu<'_>,
        spec: &v1::TaskSpec,
        lease: &Held,
        plan_file: &Path,
        plan_in: &Path,
        var_args: Vec<String>,
    ) -> Result<Done> {
        let mut args = vec![
            "plan".to_string(),
            "-input=false".into(),
            "-no-color".into(),
            "-json".into(),
            "-detailed-exitcode".into(),
            format!("-out={}", plan_in.display()),
        ];
        args.extend(lock_and_mode(spec, self.cfg.lock_timeout.as_secs()));
        args.extend(var_args);
        let fin = tofu.run(args, false).await?;
        if fin.cancelled {
            return Ok(Done::cancelled(fin.code, false));
        }
        let has_changes = match fin.code {
            0 => false,
            2 => true,
            c => {
                return Err(TaskError::Tofu {
                    cmd: "plan".into(),
                    exit: c,
                    signal: fin.killed_by,
                })
            }
        };
        let summary = if has_changes {
            self.save_plan(tofu, spec, lease, plan_file, plan_in)
                .await?
        } else {
            v1::ChangeSummary::default()
        };
        Ok(Done {
            has_changes,
            summary,
            outputs_json: String::new(),
            exit_code: fin.code,
            cancelled: false,
        })
    }

    /// Reads the plan as JSON, counts its changes and uploads the plan file and JSON.
    async fn save_plan(
        &self,
        tofu: &Tofu<'_>,
        spec: &v1::TaskSpec,
        lease: &Held,
        plan_file: &Path,
        plan_in: &Path,
    ) -> Result<v1::ChangeSummary> {
        let show = tofu
            .run(
                vec!["show".into(), "-json".into(), plan_in.display().to_string()],
                true,
            )
            .await?;
        if show.code != 0 {
            return Err(TaskError::TofuData {
                cmd: "show -json".into(),
                exit: show.code,
            });
        }
        let summary = summarize(&show.stdout)?;
        let plan = std::fs::read(plan_file).map_err(TaskError::NoPlanFile)?;
        let d = self
            .upload(spec, lease, v1::ArtifactKind::PlanFile, plan)
            .await?;
        self.upload(
            spec,
            lease,
            v1::ArtifactKind::PlanJson,
            show.stdout.into_bytes(),
        )
        .await?;
        tofu.rep.system(format!(
            "tofuflow: plan saved as {d}: {} to add, {} to change, {} to destroy",
            summary.add, summary.change, summary.destroy
        ));
        Ok(summary)
    }
}

/// Counts a plan's changes from `show -json` output.
pub fn summarize(plan_json: &str) -> Result<v1::ChangeSummary> {
    let v: serde_json::Value = serde_json::from_str(plan_json).map_err(TaskError::PlanJson)?;
    let mut s = v1::ChangeSummary::default();
    for rc in v
        .get("resource_changes")
        .and_then(|x| x.as_array())
        .into_iter()
        .flatten()
    {
        let acts: Vec<&str> = rc
            .pointer("/change/actions")
            .and_then(|a| a.as_array())
            .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
            .unwrap_or_default();
        match acts.as_slice() {
            ["create"] => s.add += 1,
            ["update"] => s.change += 1,
            ["delete"] => s.destroy += 1,
            ["delete", "create"] | ["create", "delete"] => {
                s.add += 1;
                s.destroy += 1
            }
            _ => {}
        }
    }
    Ok(s)
}

/// The plan's locking and mode: a drift check plans without the state lock (it must neither
/// wait behind nor hold up the workspace's runs) and, when asked, with `-refresh-only`.
fn lock_and_mode(spec: &v1::TaskSpec, lock_timeout_s: u64) -> Vec<String> {
    let mut args = Vec::new();
    if spec.drift_check {
        args.push("-lock=false".to_string());
        if spec.refresh_only {
            args.push("-refresh-only".into());
        }
    } else {
        args.push(format!("-lock-timeout={lock_timeout_s}s"));
    }
    if spec.destroy {
        args.push("-destroy".into());
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drift_check_plans_without_the_lock_and_refresh_only_when_asked() {
        let mut spec = v1::TaskSpec::default();
        assert_eq!(lock_and_mode(&spec, 30), ["-lock-timeout=30s"]);
        spec.drift_check = true;
        assert_eq!(lock_and_mode(&spec, 30), ["-lock=false"]);
        spec.refresh_only = true;
        assert_eq!(lock_and_mode(&spec, 30), ["-lock=false", "-refresh-only"]);
    }
}
