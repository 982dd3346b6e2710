//! The audit log: what happened, who did it, to which workspace and run, as an append-only,
//! hash-chained list (the chain itself: `tofuflow_proto::audit`; its table: `store/audit.rs`).
//!
//! An entry is built here ([`AuditEntry::new`]) and appended either inside the transaction that
//! makes the change it records (`tx.audit(entry)`, written just before that transaction
//! commits, so the entry exists exactly when the change does), or on its own
//! (`Store::audit_now`) for events that change nothing else, like a failed authentication.

mod failures;

pub use failures::FailureLog;
pub use tofuflow_proto::audit::{Broken, Record as AuditRecord};

use crate::runs::RunState;

/// What an audit entry records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuditKind {
    /// A user signed in (exchanged a credential for a session).
    Login,
    /// An API token was created.
    TokenCreated,
    /// An API token was used for the first time in a while.
    TokenUsed,
    /// An API token was revoked.
    TokenRevoked,
    /// Credentials were missing or wrong (aggregated: one entry per API and peer per minute).
    AuthFailed,
    /// A run was submitted (source, commit, pipeline, bundle digest).
    RunSubmitted,
    /// A plan was approved (by a person, or automatically at submit).
    RunApproved,
    /// A plan was rejected.
    RunRejected,
    /// Someone cancelled a run (or asked its running task to stop).
    RunCancelled,
    /// An apply was claimed by an agent (plan digest, state serial before).
    ApplyStarted,
    /// An apply ended, however it ended (state serials before and after).
    ApplyFinished,
    /// A workspace's state was locked (by a person or a task).
    StateLocked,
    /// A workspace's state lock was released by its holder.
    StateUnlocked,
    /// A workspace's state lock was released by an admin, not its holder.
    StateForceUnlocked,
    /// An older state version was made current again.
    StateRolledBack,
    /// A role was granted.
    RoleGranted,
    /// A role was revoked.
    RoleRevoked,
    /// A workspace or pool rule was set or removed.
    RuleChanged,
    /// An agent joined with a join token.
    AgentJoined,
    /// An agent's identity was revoked.
    AgentRevoked,
    /// An identity configuration (ID-token audience, cloud roles) was set or deleted.
    IdentityChanged,
    /// A connection was set, rotated or deleted (its keys, never values).
    ConnectionChanged,
    /// A task received a connection's values (at claim: which version, which agent).
    ConnectionRead,
    /// A workflow run was started (file, bundles, targets).
    WorkflowStarted,
    /// A workflow run awaiting approval was approved as a whole.
    WorkflowApproved,
    /// Someone cancelled a workflow run.
    WorkflowCancelled,
    /// A workflow run's failed, skipped and cancelled targets were started again.
    WorkflowRetried,
    /// A workflow run ended (succeeded, failed or cancelled).
    WorkflowFinished,
    /// A rollout was paused, resumed, aborted, or its failed targets retried.
    RolloutChanged,
    /// A target failed for lack of capacity: what it left is destroyed, its next candidate tried.
    WorkflowFallback,
    /// A webhook was created (its URL without query, globs, events; never its secret).
    WebhookCreated,
    /// A webhook was deleted.
    WebhookDeleted,
    /// A webhook was enabled or disabled.
    WebhookChanged,
    /// An apply started (or restarted) its workspace's TTL.
    EnvironmentTtlSet,
    /// An environment's TTL was extended.
    EnvironmentExtended,
    /// An environment's expiry is near (the `ttl_near` reminder).
    EnvironmentReminded,
    /// An environment expired: its destroy run was started (also each retry).
    EnvironmentExpired,
    /// An environment's destroy run applied: nothing of it is left.
    EnvironmentDestroyed,
    /// An environment's teardown failed every attempt.
    EnvironmentTeardownFailed,
    /// A drift check was started by hand (`tofuflow drift check`).
    DriftCheckStarted,
    /// A drift check found a workspace drifted (first found; not repeated while it stays so).
    DriftDetected,
    /// A schedule of drift checks was added.
    ScheduleAdded,
    /// A schedule was removed.
    ScheduleRemoved,
    /// A workspace's TTL was set or cleared.
    WorkspaceTtlSet,
    /// A plan policy was added, replaced (its new version and digest) or removed.
    PolicyChanged,
    /// A run's plan was evaluated by the policies attached to its workspace (each verdict
    /// with its reasons).
    PolicyEvaluated,
    /// A finished run's log was deleted under `--log-retention` (how many lines, the retention).
    LogsPruned,
}

impl AuditKind {
    /// Every kind, for parsing and documentation.
    pub const ALL: [AuditKind; 47] = [
        AuditKind::Login,
        AuditKind::TokenCreated,
        AuditKind::TokenUsed,
        AuditKind::TokenRevoked,
        AuditKind::AuthFailed,
        AuditKind::RunSubmitted,
        AuditKind::RunApproved,
        AuditKind::RunRejected,
        AuditKind::RunCancelled,
        AuditKind::ApplyStarted,
        AuditKind::ApplyFinished,
        AuditKind::StateLocked,
        AuditKind::StateUnlocked,
        AuditKind::StateForceUnlocked,
        AuditKind::StateRolledBack,
        AuditKind::RoleGranted,
        AuditKind::RoleRevoked,
        AuditKind::RuleChanged,
        AuditKind::AgentJoined,
        AuditKind::AgentRevoked,
        AuditKind::IdentityChanged,
        AuditKind::ConnectionChanged,
        AuditKind::ConnectionRead,
        AuditKind::WorkflowStarted,
        AuditKind::WorkflowApproved,
        AuditKind::WorkflowCancelled,
        AuditKind::WorkflowRetried,
        AuditKind::WorkflowFinished,
        AuditKind::RolloutChanged,
        AuditKind::WorkflowFallback,
        AuditKind::WebhookCreated,
        AuditKind::WebhookDeleted,
        AuditKind::WebhookChanged,
        AuditKind::EnvironmentTtlSet,
        AuditKind::EnvironmentExtended,
        AuditKind::EnvironmentReminded,
        AuditKind::EnvironmentExpired,
        AuditKind::EnvironmentDestroyed,
        AuditKind::EnvironmentTeardownFailed,
        AuditKind::DriftCheckStarted,
        AuditKind::DriftDetected,
        AuditKind::ScheduleAdded,
        AuditKind::ScheduleRemoved,
        AuditKind::WorkspaceTtlSet,
        AuditKind::PolicyChanged,
        AuditKind::PolicyEvaluated,
        AuditKind::LogsPruned,
    ];

    /// The name stored and shown (`run_submitted`).
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::Login => "login",
            AuditKind::TokenCreated => "token_created",
            AuditKind::TokenUsed => "token_used",
            AuditKind::TokenRevoked => "token_revoked",
            AuditKind::AuthFailed => "auth_failed",
            AuditKind::RunSubmitted => "run_submitted",
            AuditKind::RunApproved => "run_approved",
            AuditKind::RunRejected => "run_rejected",
            AuditKind::RunCancelled => "run_cancelled",
            AuditKind::ApplyStarted => "apply_started",
            AuditKind::ApplyFinished => "apply_finished",
            AuditKind::StateLocked => "state_locked",
            AuditKind::StateUnlocked => "state_unlocked",
            AuditKind::StateForceUnlocked => "state_force_unlocked",
            AuditKind::StateRolledBack => "state_rolled_back",
            AuditKind::RoleGranted => "role_granted",
            AuditKind::RoleRevoked => "role_revoked",
            AuditKind::RuleChanged => "rule_changed",
            AuditKind::AgentJoined => "agent_joined",
            AuditKind::AgentRevoked => "agent_revoked",
            AuditKind::IdentityChanged => "identity_changed",
            AuditKind::ConnectionChanged => "connection_changed",
            AuditKind::ConnectionRead => "connection_read",
            AuditKind::WorkflowStarted => "workflow_started",
            AuditKind::WorkflowApproved => "workflow_approved",
            AuditKind::WorkflowCancelled => "workflow_cancelled",
            AuditKind::WorkflowRetried => "workflow_retried",
            AuditKind::WorkflowFinished => "workflow_finished",
            AuditKind::RolloutChanged => "rollout_changed",
            AuditKind::WorkflowFallback => "workflow_fallback",
            AuditKind::WebhookCreated => "webhook_created",
            AuditKind::WebhookDeleted => "webhook_deleted",
            AuditKind::WebhookChanged => "webhook_changed",
            AuditKind::EnvironmentTtlSet => "environment_ttl_set",
            AuditKind::EnvironmentExtended => "environment_extended",
            AuditKind::EnvironmentReminded => "environment_reminded",
            AuditKind::EnvironmentExpired => "environment_expired",
            AuditKind::EnvironmentDestroyed => "environment_destroyed",
            AuditKind::EnvironmentTeardownFailed => "environment_teardown_failed",
            AuditKind::DriftCheckStarted => "drift_check_started",
            AuditKind::DriftDetected => "drift_detected",
            AuditKind::ScheduleAdded => "schedule_added",
            AuditKind::ScheduleRemoved => "schedule_removed",
            AuditKind::WorkspaceTtlSet => "workspace_ttl_set",
            AuditKind::PolicyChanged => "policy_changed",
            AuditKind::PolicyEvaluated => "policy_evaluated",
            AuditKind::LogsPruned => "logs_pruned",
        }
    }

    /// What a run's state change records, if anything: approvals, rejections, and the start
    /// and end of an apply. (Submitting and cancelling are recorded by their commands, which
    /// know more than the transition does.)
    pub fn of_transition(from: RunState, to: RunState) -> Option<AuditKind> {
        use RunState as S;
        match (from, to) {
            (_, S::Approved) => Some(AuditKind::RunApproved),
            (_, S::Rejected) => Some(AuditKind::RunRejected),
            (_, S::Applying) => Some(AuditKind::ApplyStarted),
            (S::Applying, _) => Some(AuditKind::ApplyFinished),
            _ => None,
        }
    }
}

impl std::fmt::Display for AuditKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for AuditKind {
    type Err = String;
    fn from_str(s: &str) -> Result<AuditKind, String> {
        AuditKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                let all: Vec<&str> = AuditKind::ALL.iter().map(|k| k.as_str()).collect();
                format!("unknown audit kind {s:?}: use one of {}", all.join(", "))
            })
    }
}

/// An entry to append: built with [`AuditEntry::new`] and the setters.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditEntry {
    pub kind: AuditKind,
    pub actor: String,
    pub workspace: String,
    pub run_id: String,
    pub detail: serde_json::Value,
    pub at_ms: i64,
}

impl AuditEntry {
    /// An entry of `kind` by `actor`, now, about no workspace or run yet.
    pub fn new(kind: AuditKind, actor: &str) -> AuditEntry {
        AuditEntry {
            kind,
            actor: actor.to_string(),
            workspace: String::new(),
            run_id: String::new(),
            detail: serde_json::Value::Object(Default::default()),
            at_ms: crate::store::now_ms(),
        }
    }

    /// The workspace it concerns.
    pub fn workspace(mut self, workspace: &str) -> AuditEntry {
        self.workspace = workspace.to_string();
        self
    }

    /// The run it concerns.
    pub fn run(mut self, run_id: &str) -> AuditEntry {
        self.run_id = run_id.to_string();
        self
    }

    /// What else there is to know (a JSON object).
    pub fn detail(mut self, detail: serde_json::Value) -> AuditEntry {
        self.detail = detail;
        self
    }

    /// The entry as a record to link into the chain (seq and hashes still unset).
    pub(crate) fn to_record(&self) -> AuditRecord {
        AuditRecord {
            at_ms: self.at_ms,
            kind: self.kind.as_str().to_string(),
            actor: self.actor.clone(),
            workspace: self.workspace.clone(),
            run_id: self.run_id.clone(),
            detail: tofuflow_proto::audit::canonical_json(&self.detail),
            ..AuditRecord::default()
        }
    }
}

/// What a walk over the stored chain found.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// Entries that verified.
    pub checked: u64,
    /// The last good entry: (seq, sha256). Keep it elsewhere: a later verify whose chain no
    /// longer contains it means the log was rewritten.
    pub head: (i64, String),
    /// The first bad entry, if any.
    pub broken: Option<Broken>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_by_name() {
        for k in AuditKind::ALL {
            assert_eq!(k.as_str().parse::<AuditKind>(), Ok(k));
        }
        assert!("nope"
            .parse::<AuditKind>()
            .unwrap_err()
            .contains("run_submitted"));
    }

    #[test]
    fn transitions_map_to_kinds() {
        use RunState as S;
        let of = AuditKind::of_transition;
        assert_eq!(
            of(S::AwaitingApproval, S::Approved),
            Some(AuditKind::RunApproved)
        );
        assert_eq!(of(S::Planned, S::Approved), Some(AuditKind::RunApproved));
        assert_eq!(
            of(S::AwaitingApproval, S::Rejected),
            Some(AuditKind::RunRejected)
        );
        assert_eq!(of(S::Approved, S::Applying), Some(AuditKind::ApplyStarted));
        for end in [S::Applied, S::Failed, S::Cancelled, S::Interrupted] {
            assert_eq!(of(S::Applying, end), Some(AuditKind::ApplyFinished));
        }
        assert_eq!(of(S::Queued, S::Planning), None);
        assert_eq!(
            of(S::Queued, S::Cancelled),
            None,
            "the cancel command records it"
        );
    }

    #[test]
    fn an_entry_becomes_a_record_with_canonical_detail() {
        let e = AuditEntry::new(AuditKind::RunSubmitted, "alice")
            .workspace("ml/a")
            .run("r1")
            .detail(serde_json::json!({"z": 1, "a": 2}));
        let r = e.to_record();
        assert_eq!(
            (r.kind.as_str(), r.actor.as_str(), r.workspace.as_str()),
            ("run_submitted", "alice", "ml/a")
        );
        assert_eq!(r.detail, r#"{"a":2,"z":1}"#);
    }
}
