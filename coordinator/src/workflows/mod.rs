//! Workflow runs as plain data, and the pure decisions over them: what a run's end means for
//! its target, which targets start next, which are skipped (naming the upstream that failed),
//! and when the workflow run ends. No I/O here; `lifecycle/workflow.rs` acts on the decisions.

pub mod capacity;
pub mod rollout;

use crate::runs::RunState;
use std::collections::{BTreeMap, BTreeSet};

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($v:ident = $s:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($v),* }
        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $($name::$v => $s),* }
            }
            pub fn parse(s: &str) -> Option<$name> {
                match s { $($s => Some($name::$v),)* _ => None }
            }
        }
    };
}

string_enum!(
    /// The state of a workflow run.
    WorkflowState {
        AwaitingApproval = "awaiting_approval",
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        Cancelled = "cancelled",
    }
);

string_enum!(
    /// The state of one target (a stack, or one key of a `for_each` stack) in a workflow run.
    TargetState {
        Waiting = "waiting",
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        Skipped = "skipped",
        Cancelled = "cancelled",
    }
);

impl WorkflowState {
    pub fn is_end(self) -> bool {
        matches!(
            self,
            WorkflowState::Succeeded | WorkflowState::Failed | WorkflowState::Cancelled
        )
    }
}

impl TargetState {
    /// Done for good in this attempt (dependants can be decided).
    pub fn is_end(self) -> bool {
        !matches!(self, TargetState::Waiting | TargetState::Running)
    }
}

/// A target as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub key: String,
    pub stack: String,
    pub each: Option<(String, serde_json::Value)>,
    pub workspace: String,
    pub pool: String,
    /// The targets it reads from (the workflow file's direction, whatever the run's mode).
    pub deps: Vec<String>,
    pub tags: BTreeMap<String, String>,
    pub state: TargetState,
    /// Its current run ('' before it starts).
    pub run_id: String,
    /// Every run it had, oldest first (a retry adds one).
    pub runs: Vec<String>,
    pub reason: String,
    /// Which of its stack's `fallback` candidates it is on (0: the first).
    pub candidate: usize,
    /// Its current run cleans up a failed candidate (a destroy) before the next is tried.
    pub cleaning: bool,
}

/// What a run's end means for its target (None: the run has not ended).
pub fn outcome(run: RunState, error: &str) -> Option<(TargetState, String)> {
    let (s, why) = match run {
        RunState::Applied => (TargetState::Succeeded, "applied".to_string()),
        RunState::PlannedNoChanges => (TargetState::Succeeded, "no changes".to_string()),
        RunState::Cancelled => (TargetState::Cancelled, "its run was cancelled".to_string()),
        RunState::Rejected => (TargetState::Failed, "its plan was rejected".to_string()),
        RunState::Failed | RunState::Interrupted | RunState::Expired => {
            let mut why = format!("its run {}", run.as_str());
            if !error.is_empty() {
                why.push_str(": ");
                why.push_str(error);
            }
            (TargetState::Failed, why)
        }
        _ => return None,
    };
    Some((s, why))
}

/// Which targets each target waits for: its upstreams, or for a destroy its dependants
/// (destroy runs in reverse order).
pub fn waits_for(targets: &[Target], destroy: bool) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = targets
        .iter()
        .map(|t| (t.key.clone(), Vec::new()))
        .collect();
    for t in targets {
        for d in &t.deps {
            if destroy {
                out.entry(d.clone()).or_default().push(t.key.clone());
            } else {
                out.entry(t.key.clone()).or_default().push(d.clone());
            }
        }
    }
    out
}

/// What to do next in a workflow run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Next {
    /// Targets whose upstreams all succeeded: start them.
    pub start: Vec<String>,
    /// Targets that can no longer run, with why (the upstream that failed).
    pub skip: Vec<(String, String)>,
    /// The workflow run is over, in this state.
    pub end: Option<WorkflowState>,
}

/// Decides the next step from the targets' states (pure).
pub fn next(targets: &[Target], destroy: bool) -> Next {
    let waits = waits_for(targets, destroy);
    let mut state: BTreeMap<&str, (TargetState, String)> = targets
        .iter()
        .map(|t| (t.key.as_str(), (t.state, t.reason.clone())))
        .collect();
    let mut n = Next::default();
    // Skips cascade: repeat until nothing changes.
    loop {
        let mut changed = false;
        for t in targets {
            if state[t.key.as_str()].0 != TargetState::Waiting {
                continue;
            }
            let blocked = waits[&t.key].iter().find_map(|d| {
                let (s, why) = state.get(d.as_str())?;
                match s {
                    TargetState::Failed => Some(format!("skipped: {d} failed")),
                    TargetState::Cancelled => Some(format!("skipped: {d} was cancelled")),
                    TargetState::Skipped => Some(why.clone()),
                    _ => None,
                }
            });
            if let Some(why) = blocked {
                state.insert(&t.key, (TargetState::Skipped, why.clone()));
                n.skip.push((t.key.clone(), why));
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    for t in targets
        .iter()
        .filter(|t| state[t.key.as_str()].0 == TargetState::Waiting)
    {
        let ready = waits[&t.key]
            .iter()
            .all(|d| state.get(d.as_str()).map(|s| s.0) == Some(TargetState::Succeeded));
        if ready {
            n.start.push(t.key.clone());
        }
    }
    let open = state.values().any(|(s, _)| !s.is_end());
    if !open && n.start.is_empty() {
        let states: BTreeSet<TargetState> = state.values().map(|s| s.0).collect();
        n.end = Some(if states.iter().all(|s| *s == TargetState::Succeeded) {
            WorkflowState::Succeeded
        } else if states.contains(&TargetState::Failed) {
            WorkflowState::Failed
        } else {
            WorkflowState::Cancelled
        });
    }
    n
}

#[cfg(test)]
mod tests;
