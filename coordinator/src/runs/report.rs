//! What an agent reports about a task, in the coordinator's own terms (the wire forms are
//! converted at the API's edge, `api/convert.rs`): its result, its log lines, its artifacts.

/// How a task ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskOutcome {
    Succeeded,
    Failed,
    Cancelled,
}

impl TaskOutcome {
    /// The task's stored state for this outcome.
    pub fn task_state(self) -> &'static str {
        match self {
            TaskOutcome::Succeeded => "succeeded",
            TaskOutcome::Failed => "failed",
            TaskOutcome::Cancelled => "cancelled",
        }
    }
}

/// A plan's counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChangeSummary {
    pub add: u32,
    pub change: u32,
    pub destroy: u32,
}

/// A finished task, with the lease it was run under.
#[derive(Clone, Debug)]
pub struct TaskReport {
    pub agent_id: String,
    pub task_id: String,
    pub attempt: u32,
    pub epoch: i64,
    pub lease_token: String,
    pub outcome: TaskOutcome,
    pub has_changes: bool,
    pub summary: ChangeSummary,
    pub outputs_json: String,
    pub error: String,
    pub exit_code: i32,
    /// The limit that ended it, if one did (memory, cpu, processes, file-size, timeout).
    pub limit_hit: String,
}

impl TaskReport {
    /// The lease this report claims to come from.
    pub fn lease(&self) -> crate::store::LeaseProof<'_> {
        crate::store::LeaseProof {
            task_id: &self.task_id,
            attempt: self.attempt,
            epoch: self.epoch,
            agent_id: &self.agent_id,
            token: &self.lease_token,
        }
    }
}

/// One line of a task's log.
#[derive(Clone, Debug, PartialEq)]
pub struct LogLine {
    pub seq: u64,
    pub unix_ms: i64,
    /// stdout (1), stderr (2) or the agent's own (3), as the wire's `LogStream`.
    pub stream: i64,
    pub line: String,
}

/// The artifacts a plan task uploads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Artifact {
    /// The saved plan (applied later).
    PlanFile,
    /// `tofu show -json` of it.
    PlanJson,
}
