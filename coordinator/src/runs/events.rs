//! Run events: what a committed transaction changed about runs, as typed values. Every state
//! change pushes one into its transaction (`store::transition`); the before-commit hook sees them
//! in the same transaction (where workflows will start dependants with no polling delay); after
//! commit, one place (`lifecycle/events.rs`) wakes the publisher and watchers and counts them.

use super::{Phase, RunState};

/// One thing that happened to a run.
#[derive(Clone, Debug, PartialEq)]
pub enum RunEvent {
    /// The run moved from one state to another (every transition).
    Moved {
        run_id: String,
        from: RunState,
        to: RunState,
    },
    /// Something was recorded in the run's history without a state change (a cancel request,
    /// sensitive values shown).
    Noted { run_id: String },
    /// A task attempt was queued for publishing.
    TaskQueued {
        run_id: String,
        task_id: String,
        attempt: u32,
        phase: Phase,
    },
    /// Log lines were stored.
    LogsAdded { run_id: String },
}

impl RunEvent {
    /// The run it concerns.
    pub fn run_id(&self) -> &str {
        match self {
            RunEvent::Moved { run_id, .. }
            | RunEvent::Noted { run_id }
            | RunEvent::TaskQueued { run_id, .. }
            | RunEvent::LogsAdded { run_id } => run_id,
        }
    }

    /// The state the run ended in, if this event ended it (for `kind`: a plan-only run ends
    /// when planned).
    pub fn ended(&self, kind: super::RunKind) -> Option<RunState> {
        match self {
            RunEvent::Moved { to, .. } if super::is_terminal(*to, kind) => Some(*to),
            _ => None,
        }
    }

    /// Whether the run itself (state or history) changed, as opposed to only its log.
    pub fn changes_run(&self) -> bool {
        !matches!(
            self,
            RunEvent::LogsAdded { .. } | RunEvent::TaskQueued { .. }
        )
    }
}
