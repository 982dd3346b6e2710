//! What users do to a rollout (a `for_each` stack's waves in a workflow run): pause, resume
//! (also after a halt or an abort: the rest is planned against the state as it is then),
//! abort, retry the failed targets; and the periodic resume of timed pauses. Touches:
//! workflow_rollouts, workflow_targets, workflow_runs, audit_log.

use super::workflow::advance;
use crate::audit::{AuditEntry, AuditKind};
use crate::error::{Error, Result};
use crate::store::*;
use crate::workflows::rollout::{failures, Progress, RolloutState};
use crate::workflows::{Target, TargetState, WorkflowState};

/// A user's command to a rollout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RolloutVerb {
    Pause,
    Resume,
    Abort,
    RetryFailed,
}

impl RolloutVerb {
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutVerb::Pause => "pause",
            RolloutVerb::Resume => "resume",
            RolloutVerb::Abort => "abort",
            RolloutVerb::RetryFailed => "retry-failed",
        }
    }
}

/// The rollout a command means: the named stack's, or the only one.
fn pick<'a>(rollouts: &'a mut [Progress], id: &str, stack: &str) -> Result<&'a mut Progress> {
    let names: Vec<String> = rollouts.iter().map(|p| p.stack.clone()).collect();
    let found = match stack {
        "" if rollouts.len() == 1 => rollouts.first_mut(),
        "" => None,
        s => rollouts.iter_mut().find(|p| p.stack == s),
    };
    found.ok_or_else(|| match names.len() {
        0 => Error::NotFound(format!(
            "workflow run {id} has no rollout (a for_each stack with a rollout block)"
        )),
        _ => Error::InvalidInput(format!(
            "say which rollout with --stack: {}",
            names.join(", ")
        )),
    })
}

/// Applies `verb` to the rollout; answers why, for the audit log.
fn apply(
    verb: RolloutVerb,
    p: &mut Progress,
    targets: &mut [Target],
    actor: &str,
) -> Result<Vec<String>> {
    let conflict = |want: &str| {
        Error::Conflict(format!(
            "the rollout of stack {} is {}: {} needs it {want}",
            p.stack,
            p.state.as_str(),
            verb.as_str()
        ))
    };
    let mut again = Vec::new();
    let wait = |t: &mut Target, again: &mut Vec<String>| {
        t.state = TargetState::Waiting;
        t.reason = format!("{} by {actor}", verb.as_str());
        again.push(t.key.clone());
    };
    match verb {
        RolloutVerb::Pause if p.state == RolloutState::Running => p.state = RolloutState::Paused,
        RolloutVerb::Pause => return Err(conflict("running")),
        RolloutVerb::Resume => match p.state {
            RolloutState::Paused => {}
            RolloutState::Halted => {
                let mine: Vec<&Target> = targets.iter().filter(|t| t.stack == p.stack).collect();
                p.forgiven += failures(p, &mine);
            }
            RolloutState::Aborted => {
                for t in targets
                    .iter_mut()
                    .filter(|t| t.stack == p.stack && t.state == TargetState::Cancelled)
                {
                    wait(t, &mut again);
                }
            }
            _ => return Err(conflict("paused, halted or aborted")),
        },
        RolloutVerb::Abort if matches!(p.state, RolloutState::Done | RolloutState::Aborted) => {
            return Err(conflict("under way"))
        }
        RolloutVerb::Abort => {
            for t in targets
                .iter_mut()
                .filter(|t| t.stack == p.stack && t.state == TargetState::Waiting)
            {
                t.state = TargetState::Cancelled;
                t.reason = format!("rollout aborted by {actor}");
                again.push(t.key.clone());
            }
        }
        RolloutVerb::RetryFailed => {
            for t in targets
                .iter_mut()
                .filter(|t| t.stack == p.stack && t.state == TargetState::Failed)
            {
                wait(t, &mut again);
            }
            p.forgiven = 0;
        }
    }
    if verb != RolloutVerb::Pause && verb != RolloutVerb::Abort {
        // What was skipped because of them is decided again.
        for t in targets
            .iter_mut()
            .filter(|t| t.state == TargetState::Skipped)
        {
            wait(t, &mut again);
        }
        p.state = RolloutState::Running;
        p.resume_after_ms = 0;
    }
    if verb == RolloutVerb::Abort {
        p.state = RolloutState::Aborted;
    }
    p.reason = format!("{} by {actor}", verb.as_str());
    Ok(again)
}

impl Store {
    /// Pauses, resumes, aborts or retries the failed targets of a workflow run's rollout.
    pub async fn rollout_action(
        &self,
        id: &str,
        stack: &str,
        verb: RolloutVerb,
        actor: &str,
        policy: &Policy,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let mut w = lock_workflow(&mut tx, id).await?;
        let mut rollouts = rollouts_c(&mut tx, id).await?;
        let before = targets_c(&mut tx, id).await?;
        let mut targets = before.clone();
        let p = pick(&mut rollouts, id, stack)?;
        let changed = apply(verb, p, &mut targets, actor)?;
        save_rollout(&mut tx, id, p).await?;
        for (t, old) in targets
            .iter()
            .zip(&before)
            .filter(|(t, old)| t.state != old.state)
        {
            set_target(&mut tx, id, old, t.state, None, &t.reason).await?;
        }
        if w.state.is_end() && targets.iter().any(|t| !t.state.is_end()) {
            set_workflow_state(&mut tx, id, WorkflowState::Running, &p.reason).await?;
            w.state = WorkflowState::Running;
        }
        tx.audit(
            AuditEntry::new(AuditKind::RolloutChanged, actor).detail(serde_json::json!({
                "workflow_run": id, "stack": p.stack, "action": verb.as_str(), "targets": changed,
            })),
        );
        advance(&mut tx, policy, &w, targets).await?;
        self.commit(tx).await
    }

    /// Starts the next wave of rollouts whose timed pause is over (periodic work).
    pub(crate) async fn resume_due_rollouts(
        &self,
        policy: &Policy,
        now: i64,
    ) -> Result<Vec<String>> {
        let mut done = Vec::new();
        for id in self.rollouts_due(now).await? {
            let mut tx = self.begin().await?;
            let w = lock_workflow(&mut tx, &id).await?;
            let targets = targets_c(&mut tx, &id).await?;
            advance(&mut tx, policy, &w, targets).await?;
            self.commit(tx).await?;
            done.push(format!("workflow run {id}: a rollout's pause ended"));
        }
        Ok(done)
    }
}
