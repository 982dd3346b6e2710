//! Roles and the one table of which role may perform which [`Action`].

use super::authorize::Action;

/// A role, granted to a user on a workspace glob. Roles are sets of actions, not a ladder:
/// an operator submits but does not approve, an approver approves but does not submit; an
/// admin does everything.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash)]
pub enum Role {
    /// Reads runs, logs, state versions and agents.
    Viewer,
    /// A viewer who also uploads, submits, cancels, locks state and sees sensitive values.
    Operator,
    /// A viewer who also approves and rejects plans.
    Approver,
    /// Everything.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Operator, Role::Approver, Role::Admin];

    /// The role's name as users type it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }

    /// Whether this role may perform `action` (on a workspace its grant covers).
    pub fn permits(self, action: Action) -> bool {
        use Action::*;
        match action {
            ReadRuns | ListAgents | ReadState | WhoAmI | ManageOwnTokens => true,
            UploadBundle | Submit | Cancel | ShowSensitive | LockState | UnlockState => {
                matches!(self, Role::Operator | Role::Admin)
            }
            Approve | Reject => matches!(self, Role::Approver | Role::Admin),
            ForceUnlock | Rollback | ReadDeadLetters | PurgeDeadLetters | ManageTokens
            | ManageRoles | ManageRules | ManageAgents | ReadAudit | ManageIdentities
            | ManageConnections | ManageWebhooks | ManagePolicies => self == Role::Admin,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?}: use viewer, operator, approver or admin"))
    }
}
