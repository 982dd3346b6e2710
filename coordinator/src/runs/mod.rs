//! Runs and tasks as plain data, and the pure decisions over them: which run transitions are
//! legal, which states are terminal, what a finished plan leads to. No I/O here.

pub mod events;
pub mod plan;
pub mod policy;
mod report;
pub mod schedule;
pub mod state;
pub mod ttl;
pub use report::{Artifact, ChangeSummary, LogLine, TaskOutcome, TaskReport};
pub mod variables;

use std::fmt;
use std::str::FromStr;

/// The state of a run (see DESIGN.md "Run states").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RunState {
    /// Waits for another run on its workspace to finish (runs that apply take turns).
    Pending,
    Queued,
    Planning,
    Planned,
    AwaitingApproval,
    Approved,
    Applying,
    Applied,
    PlannedNoChanges,
    Failed,
    Cancelled,
    Rejected,
    Interrupted,
    Expired,
}

pub const ALL_STATES: [RunState; 14] = [
    RunState::Pending,
    RunState::Queued,
    RunState::Planning,
    RunState::Planned,
    RunState::AwaitingApproval,
    RunState::Approved,
    RunState::Applying,
    RunState::Applied,
    RunState::PlannedNoChanges,
    RunState::Failed,
    RunState::Cancelled,
    RunState::Rejected,
    RunState::Interrupted,
    RunState::Expired,
];

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Pending => "pending",
            RunState::Queued => "queued",
            RunState::Planning => "planning",
            RunState::Planned => "planned",
            RunState::AwaitingApproval => "awaiting_approval",
            RunState::Approved => "approved",
            RunState::Applying => "applying",
            RunState::Applied => "applied",
            RunState::PlannedNoChanges => "planned_no_changes",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
            RunState::Rejected => "rejected",
            RunState::Interrupted => "interrupted",
            RunState::Expired => "expired",
        }
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ALL_STATES
            .iter()
            .copied()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| format!("unknown run state {s:?}"))
    }
}

/// What a run does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunKind {
    PlanAndApply,
    PlanOnly,
    Destroy,
    /// A plan against the last applied configuration, to find drift: it never takes the
    /// workspace's turn, never locks the state, and is never applied.
    DriftCheck,
}

impl RunKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::PlanAndApply => "plan_and_apply",
            RunKind::PlanOnly => "plan_only",
            RunKind::Destroy => "destroy",
            RunKind::DriftCheck => "drift_check",
        }
    }

    /// Whether runs of this kind take turns on their workspace (they may write its state).
    pub fn takes_turns(self) -> bool {
        matches!(self, RunKind::PlanAndApply | RunKind::Destroy)
    }

    /// Whether a plan is all this run does.
    pub fn plans_only(self) -> bool {
        matches!(self, RunKind::PlanOnly | RunKind::DriftCheck)
    }
}

impl FromStr for RunKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "plan_and_apply" => Ok(RunKind::PlanAndApply),
            "plan_only" => Ok(RunKind::PlanOnly),
            "destroy" => Ok(RunKind::Destroy),
            "drift_check" => Ok(RunKind::DriftCheck),
            _ => Err(format!("unknown run kind {s:?}")),
        }
    }
}

/// Whether a run in `state` is finished. `planned` is final only for plan-only runs.
pub fn is_terminal(state: RunState, kind: RunKind) -> bool {
    use RunState::*;
    match state {
        Applied | PlannedNoChanges | Failed | Cancelled | Rejected | Interrupted | Expired => true,
        Planned => kind.plans_only(),
        _ => false,
    }
}

/// The one place that says which run transitions exist. Anything else is a bug.
pub fn allowed(from: RunState, to: RunState) -> bool {
    use RunState::*;
    matches!(
        (from, to),
        (Pending, Queued | Cancelled | Expired)
            | (Queued, Planning | Cancelled | Failed | Expired)
            | (
                Planning,
                Queued | Planned | PlannedNoChanges | Failed | Cancelled
            )
            | (Planned, AwaitingApproval | Approved | Cancelled)
            | (AwaitingApproval, Approved | Rejected | Cancelled | Expired)
            | (Approved, Applying | Cancelled | Failed | Expired)
            | (Applying, Applied | Failed | Cancelled | Interrupted)
    )
}

/// The phase a task runs (in ID tokens' `run_phase` claim as `plan` / `apply`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Plan,
    Apply,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Plan => "plan",
            Phase::Apply => "apply",
        }
    }
}

impl FromStr for Phase {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "plan" => Ok(Phase::Plan),
            "apply" => Ok(Phase::Apply),
            _ => Err(format!("unknown phase {s:?}")),
        }
    }
}

/// States in which a run that may apply holds its workspace (the next one waits `pending`).
pub const HOLDS_WORKSPACE: [RunState; 6] = [
    RunState::Queued,
    RunState::Planning,
    RunState::Planned,
    RunState::AwaitingApproval,
    RunState::Approved,
    RunState::Applying,
];

/// What a successful plan leads to.
#[derive(Debug, PartialEq, Eq)]
pub enum AfterPlan {
    NoChanges,
    /// Plan-only run: stop at `planned`.
    Stop,
    AutoApprove,
    AwaitApproval,
}

pub fn after_plan(kind: RunKind, has_changes: bool, auto_approve: bool) -> AfterPlan {
    if !has_changes {
        AfterPlan::NoChanges
    } else if kind.plans_only() {
        AfterPlan::Stop
    } else if auto_approve {
        AfterPlan::AutoApprove
    } else {
        AfterPlan::AwaitApproval
    }
}

/// What to do with a task whose lease expired.
#[derive(Debug, PartialEq, Eq)]
pub enum LeaseExpiry {
    /// Plans are safe to repeat: dispatch attempt + 1.
    Redispatch { next_attempt: u32 },
    /// Too many lost attempts: the run fails.
    GiveUp,
    /// Applies are never repeated blindly: the run is interrupted.
    Interrupt,
}

pub fn on_lease_expiry(phase: Phase, attempt: u32, max_attempts: u32) -> LeaseExpiry {
    match phase {
        Phase::Apply => LeaseExpiry::Interrupt,
        Phase::Plan if attempt < max_attempts => LeaseExpiry::Redispatch {
            next_attempt: attempt + 1,
        },
        Phase::Plan => LeaseExpiry::GiveUp,
    }
}

/// Whether a claim for (`attempt`) of a task currently at (`current_attempt`, `task_state`) is
/// granted, and if not, why.
/// The state of a task attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskState {
    /// Waiting in its pool's queue for a claim.
    Queued,
    /// Leased to an agent.
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// Its lease expired and it is not re-dispatched (given up, or an apply).
    Lost,
    /// Nobody claimed it before its run's deadline.
    Expired,
}

impl TaskState {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Running => "running",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::Cancelled => "cancelled",
            TaskState::Lost => "lost",
            TaskState::Expired => "expired",
        }
    }

    /// The agent reported how it ended (late log lines of such an attempt are still welcome).
    pub fn reported(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded | TaskState::Failed | TaskState::Cancelled
        )
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskState {
    type Err = String;
    fn from_str(s: &str) -> Result<TaskState, String> {
        Ok(match s {
            "queued" => TaskState::Queued,
            "running" => TaskState::Running,
            "succeeded" => TaskState::Succeeded,
            "failed" => TaskState::Failed,
            "cancelled" => TaskState::Cancelled,
            "lost" => TaskState::Lost,
            "expired" => TaskState::Expired,
            other => return Err(format!("unknown task state {other:?}")),
        })
    }
}

pub fn claim_decision(
    attempt: u32,
    current_attempt: u32,
    task_state: TaskState,
) -> Result<(), String> {
    if attempt != current_attempt {
        return Err(format!(
            "stale attempt {attempt}: the task is at attempt {current_attempt}"
        ));
    }
    if task_state != TaskState::Queued {
        return Err(format!("task attempt {attempt} is already {task_state}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_states_have_no_way_out() {
        for from in ALL_STATES {
            if is_terminal(from, RunKind::PlanAndApply) {
                for to in ALL_STATES {
                    assert!(!allowed(from, to), "{from} -> {to} must not be allowed");
                }
            }
        }
    }

    #[test]
    fn every_non_terminal_state_can_end() {
        // No state is a trap: each non-terminal state reaches a terminal one.
        for from in ALL_STATES {
            if is_terminal(from, RunKind::PlanAndApply) {
                continue;
            }
            let mut seen = vec![from];
            let mut frontier = vec![from];
            let mut ends = false;
            while let Some(s) = frontier.pop() {
                for to in ALL_STATES {
                    if allowed(s, to) && !seen.contains(&to) {
                        ends |= is_terminal(to, RunKind::PlanAndApply);
                        seen.push(to);
                        frontier.push(to);
                    }
                }
            }
            assert!(ends, "{from} cannot reach a terminal state");
        }
    }

    #[test]
    fn happy_path_is_legal() {
        use RunState::*;
        for w in [
            Queued,
            Planning,
            Planned,
            AwaitingApproval,
            Approved,
            Applying,
            Applied,
        ]
        .windows(2)
        {
            assert!(allowed(w[0], w[1]), "{} -> {}", w[0], w[1]);
        }
        assert!(!allowed(Applying, Queued), "an apply is never re-queued");
        assert!(!allowed(Applied, Applying));
    }

    #[test]
    fn decisions() {
        assert_eq!(
            after_plan(RunKind::PlanAndApply, false, true),
            AfterPlan::NoChanges
        );
        assert_eq!(after_plan(RunKind::PlanOnly, true, true), AfterPlan::Stop);
        assert_eq!(
            after_plan(RunKind::Destroy, true, true),
            AfterPlan::AutoApprove
        );
        assert_eq!(
            after_plan(RunKind::PlanAndApply, true, false),
            AfterPlan::AwaitApproval
        );
        assert_eq!(
            on_lease_expiry(Phase::Plan, 1, 3),
            LeaseExpiry::Redispatch { next_attempt: 2 }
        );
        assert_eq!(on_lease_expiry(Phase::Plan, 3, 3), LeaseExpiry::GiveUp);
        assert_eq!(on_lease_expiry(Phase::Apply, 1, 3), LeaseExpiry::Interrupt);
        assert!(claim_decision(1, 1, TaskState::Queued).is_ok());
        assert!(claim_decision(1, 2, TaskState::Queued)
            .unwrap_err()
            .contains("stale"));
        assert!(claim_decision(2, 2, TaskState::Running)
            .unwrap_err()
            .contains("already running"));
        for s in ALL_STATES {
            assert_eq!(s.as_str().parse::<RunState>().unwrap(), s);
        }
    }
}
