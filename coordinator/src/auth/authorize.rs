//! What a user may do: every user-API handler asks [`authorize`] once. Which role permits which
//! [`Action`] is the one table in `roles.rs`; which workspaces a grant covers is its glob.

use super::{Grant, Principal, Role};
use crate::error::{Error, Result};

/// Something a caller of the user API asks to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Show, list and watch runs, and read their logs (sensitive values masked).
    ReadRuns,
    /// Upload a module bundle.
    UploadBundle,
    /// Start a run.
    Submit,
    /// Approve a plan that waits for approval.
    Approve,
    /// Reject a plan that waits for approval.
    Reject,
    /// Cancel a run.
    Cancel,
    /// Show a run's sensitive variables and outputs (recorded in its history).
    ShowSensitive,
    /// List agents.
    ListAgents,
    /// List, show and pull state versions.
    ReadState,
    /// Lock a workspace's state by hand.
    LockState,
    /// Release one's own lock.
    UnlockState,
    /// Release anyone's lock, a run's included.
    ForceUnlock,
    /// Make an older state version the current one.
    Rollback,
    /// List the dead-letter queue.
    ReadDeadLetters,
    /// Empty the dead-letter queue.
    PurgeDeadLetters,
    /// Say who one is.
    WhoAmI,
    /// Create, list and revoke one's own API tokens.
    ManageOwnTokens,
    /// Create, list and revoke other users' API tokens.
    ManageTokens,
    /// Grant and revoke roles.
    ManageRoles,
    /// Set workspace and pool rules.
    ManageRules,
    /// Create join tokens, revoke agents.
    ManageAgents,
    /// Read and verify the audit log.
    ReadAudit,
    /// Set and delete identity configurations (the audience and cloud roles of tasks' ID
    /// tokens).
    ManageIdentities,
    /// Set, rotate, delete, list and show connections (never their secret values).
    ManageConnections,
    /// Create, list, show (with deliveries), enable, disable, test, redeliver and delete
    /// webhooks. Admin only, reading included: a webhook's URL is often a credential itself
    /// (Slack's incoming-webhook URLs are), and its deliveries hold receivers' answers.
    ManageWebhooks,
    /// Add, replace, list, show and remove plan policies (which can approve applies without
    /// a human: admin only).
    ManagePolicies,
}

impl Action {
    /// Every action, for tests and documentation.
    pub const ALL: [Action; 26] = [
        Action::ReadRuns,
        Action::UploadBundle,
        Action::Submit,
        Action::Approve,
        Action::Reject,
        Action::Cancel,
        Action::ShowSensitive,
        Action::ListAgents,
        Action::ReadState,
        Action::LockState,
        Action::UnlockState,
        Action::ForceUnlock,
        Action::Rollback,
        Action::ReadDeadLetters,
        Action::PurgeDeadLetters,
        Action::WhoAmI,
        Action::ManageOwnTokens,
        Action::ManageTokens,
        Action::ManageRoles,
        Action::ManageRules,
        Action::ManageAgents,
        Action::ReadAudit,
        Action::ManageIdentities,
        Action::ManageConnections,
        Action::ManageWebhooks,
        Action::ManagePolicies,
    ];

    /// Actions about the whole coordinator rather than one workspace: they need a grant on
    /// `**`.
    pub fn is_global(self) -> bool {
        use Action::*;
        matches!(
            self,
            ReadDeadLetters
                | PurgeDeadLetters
                | ManageTokens
                | ManageRoles
                | ManageRules
                | ManageAgents
                | ReadAudit
                | ManageIdentities
                | ManageConnections
                | ManageWebhooks
                | ManagePolicies
        )
    }

    /// Actions every authenticated user may perform, with or without grants.
    fn is_personal(self) -> bool {
        matches!(self, Action::WhoAmI | Action::ManageOwnTokens)
    }

    /// How a refusal names the action.
    fn describe(self) -> String {
        let s = format!("{self:?}");
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if c.is_uppercase() && i > 0 {
                out.push(' ');
            }
            out.push(c.to_ascii_lowercase());
        }
        out
    }
}

/// Who performs an action, as recorded in runs' histories and the state audit trail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    /// The authenticated user's name, or the declared one when the API is open; empty when the
    /// API is open and the call names nobody (reads, bundle uploads).
    pub name: String,
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

/// Who is calling the user API: nobody checked (`--insecure-open`) or an authenticated user.
#[derive(Clone, Debug)]
pub enum Caller {
    /// The coordinator runs with `--insecure-open`: every action is allowed.
    Open,
    User(Principal),
}

impl Caller {
    /// Whether the caller may perform `action` on `workspace` (without saying why not).
    pub fn may(&self, action: Action, workspace: Option<&str>) -> bool {
        match self {
            Caller::Open => true,
            Caller::User(p) => permitted(p, action, workspace),
        }
    }
}

/// Whether `p`'s grants permit `action`: on `workspace` when it names one; on `**` for global
/// actions; anywhere for other actions that name no workspace (their results are then
/// filtered to what the caller may read).
pub fn permitted(p: &Principal, action: Action, workspace: Option<&str>) -> bool {
    if action.is_personal() {
        return true;
    }
    p.grants.iter().any(|g| {
        g.role.permits(action)
            && if action.is_global() {
                g.workspaces.is_everything()
            } else {
                workspace.is_none_or(|w| g.workspaces.matches(w))
            }
    })
}

/// Decides whether `caller` may perform `action` (on `workspace`, when it touches one), and
/// who is acting. An authenticated user's name is the actor (the call's `claimed_actor` is
/// ignored). On an open coordinator the actor is the declared name; a call that names someone
/// (`claimed_actor` is `Some`) must name somebody.
pub fn authorize(
    caller: &Caller,
    action: Action,
    workspace: Option<&str>,
    claimed_actor: Option<&str>,
) -> Result<Actor> {
    let p = match caller {
        Caller::Open => return open_actor(claimed_actor),
        Caller::User(p) => p,
    };
    if permitted(p, action, workspace) {
        return Ok(Actor {
            name: p.name.clone(),
        });
    }
    Err(Error::PermissionDenied(refusal(p, action, workspace)))
}

/// The actor of a call on an open coordinator.
fn open_actor(claimed_actor: Option<&str>) -> Result<Actor> {
    match claimed_actor {
        Some(c) if c.trim().is_empty() => Err(Error::InvalidInput(
            "actor is required: who is doing this? (tofuflow sends $USER or --user)".into(),
        )),
        c => Ok(Actor {
            name: c.unwrap_or_default().to_string(),
        }),
    }
}

/// "pat may not approve on prod/x: that needs the approver or admin role on a glob matching
/// it; pat has operator on prod/**".
fn refusal(p: &Principal, action: Action, workspace: Option<&str>) -> String {
    let roles: Vec<&str> = Role::ALL
        .into_iter()
        .filter(|r| r.permits(action))
        .map(Role::as_str)
        .collect();
    let place = match (action.is_global(), workspace) {
        (true, _) => " (all workspaces)".to_string(),
        (false, Some(w)) => format!(" on workspace {w}"),
        (false, None) => String::new(),
    };
    let scope = if action.is_global() {
        "on `**`"
    } else if workspace.is_some() {
        "on a glob matching it"
    } else {
        "on some workspace"
    };
    let has: Vec<String> = p.grants.iter().map(Grant::to_string).collect();
    format!(
        "{} may not {}{place}: that needs the {} role {scope}; {} has {} (an admin grants roles with `tofuflow role grant`)",
        p.name,
        action.describe(),
        roles.join(" or "),
        p.name,
        if has.is_empty() { "no roles".to_string() } else { has.join(", ") }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::WorkspaceGlob;

    fn user(grants: &[(Role, &str)]) -> Caller {
        Caller::User(Principal {
            name: "pat".into(),
            grants: grants
                .iter()
                .map(|(r, g)| Grant {
                    role: *r,
                    workspaces: WorkspaceGlob::parse(g).unwrap(),
                })
                .collect(),
            token_id: None,
        })
    }

    #[test]
    fn each_role_permits_its_actions_and_nothing_else() {
        use Action::*;
        let viewer = [ReadRuns, ListAgents, ReadState, WhoAmI, ManageOwnTokens];
        let operator = [
            UploadBundle,
            Submit,
            Cancel,
            ShowSensitive,
            LockState,
            UnlockState,
        ];
        let approver = [Approve, Reject];
        for a in Action::ALL {
            let v = viewer.contains(&a);
            assert_eq!(Role::Viewer.permits(a), v, "viewer {a:?}");
            assert_eq!(
                Role::Operator.permits(a),
                v || operator.contains(&a),
                "operator {a:?}"
            );
            assert_eq!(
                Role::Approver.permits(a),
                v || approver.contains(&a),
                "approver {a:?}"
            );
            assert!(Role::Admin.permits(a), "admin {a:?}");
        }
    }

    #[test]
    fn a_grant_covers_the_workspaces_its_glob_matches() {
        let c = user(&[(Role::Operator, "ml/*"), (Role::Approver, "prod/**")]);
        assert!(c.may(Action::Submit, Some("ml/a")));
        assert!(!c.may(Action::Submit, Some("ml/a/b")));
        assert!(!c.may(Action::Submit, Some("prod/x")));
        assert!(c.may(Action::Approve, Some("prod/x/y")));
        assert!(!c.may(Action::Approve, Some("ml/a")));
        assert!(
            c.may(Action::ReadRuns, None),
            "lists are filtered, not refused"
        );
        assert!(!c.may(Action::ManageRoles, None));
        let e = authorize(&c, Action::Approve, Some("ml/a"), Some("mallory")).unwrap_err();
        assert_eq!(e.grpc_code(), tonic::Code::PermissionDenied);
        let m = e.to_string();
        assert!(
            m.contains("pat may not approve on workspace ml/a")
                && m.contains("approver or admin role")
                && m.contains("operator on ml/*"),
            "{m}"
        );
    }

    #[test]
    fn global_actions_need_a_grant_on_everything() {
        let scoped = user(&[(Role::Admin, "ml/**")]);
        assert!(scoped.may(Action::Rollback, Some("ml/x")));
        for a in Action::ALL.into_iter().filter(|a| a.is_global()) {
            assert!(!scoped.may(a, None), "{a:?}");
            assert!(user(&[(Role::Admin, "**")]).may(a, None), "{a:?}");
        }
        assert!(
            user(&[]).may(Action::WhoAmI, None),
            "anyone may ask who they are"
        );
        assert!(!user(&[]).may(Action::ReadRuns, None));
    }

    #[test]
    fn the_token_decides_who_acts_and_an_open_coordinator_takes_the_declared_name() {
        let c = user(&[(Role::Viewer, "**")]);
        let a = authorize(&c, Action::ReadRuns, None, Some("someone-else")).unwrap();
        assert_eq!(a.name, "pat");
        assert_eq!(
            authorize(&Caller::Open, Action::Rollback, None, Some("bob"))
                .unwrap()
                .name,
            "bob"
        );
        assert!(authorize(&Caller::Open, Action::Submit, None, Some(" ")).is_err());
    }
}
