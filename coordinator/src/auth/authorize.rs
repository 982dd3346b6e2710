//! What a user may do: every user-API handler asks [`authorize`] once, and the role each
//! [`Action`] needs is written down in one table, [`required_role`].

use super::{Role, User};
use crate::error::{Error, Result};
use tonic::Request;

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
}

impl Action {
    /// Every action, for tests and documentation.
    pub const ALL: [Action; 15] = [
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
    ];
}

/// The least role that may perform `action` (viewer < operator < admin).
pub fn required_role(action: Action) -> Role {
    match action {
        Action::ReadRuns | Action::ListAgents | Action::ReadState => Role::Viewer,
        Action::UploadBundle
        | Action::Submit
        | Action::Approve
        | Action::Reject
        | Action::Cancel
        | Action::ShowSensitive
        | Action::LockState
        | Action::UnlockState => Role::Operator,
        Action::ForceUnlock
        | Action::Rollback
        | Action::ReadDeadLetters
        | Action::PurgeDeadLetters => Role::Admin,
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

/// Decides whether the caller of `req` may perform `action`, and who is acting.
///
/// With users configured (`open` false) the authenticated user (attached by
/// `Auth::check_user`) needs [`required_role`]`(action)`, and their name is the actor: the
/// caller's `claimed_actor` is ignored. With the API open every action is allowed and the
/// actor is the declared name; a call that names someone (`claimed_actor` is `Some`) must name
/// somebody.
///
/// `workspace` is the workspace the action touches, when it touches one. Roles are global
/// today, so it is not consulted yet: it is where per-workspace roles will be decided.
pub fn authorize<T>(
    req: &Request<T>,
    open: bool,
    action: Action,
    workspace: Option<&str>,
    claimed_actor: Option<&str>,
) -> Result<Actor> {
    let _ = workspace;
    if open {
        return match claimed_actor {
            Some(c) if c.trim().is_empty() => Err(Error::InvalidInput(
                "actor is required: who is doing this? (tofuflow sends $USER or --user)".into(),
            )),
            Some(c) => Ok(Actor {
                name: c.to_string(),
            }),
            None => Ok(Actor {
                name: String::new(),
            }),
        };
    }
    let u = req
        .extensions()
        .get::<User>()
        .ok_or_else(|| Error::Unauthenticated("no authenticated user".into()))?;
    let need = required_role(action);
    if u.role < need {
        return Err(Error::PermissionDenied(
            format!(
                "{} is a {:?}; this needs the {:?} role",
                u.name, u.role, need
            )
            .to_lowercase(),
        ));
    }
    Ok(Actor {
        name: u.name.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn as_user(role: Role) -> Request<()> {
        let mut r = Request::new(());
        r.extensions_mut().insert(User {
            name: "pat".into(),
            role,
        });
        r
    }

    #[test]
    fn each_action_needs_the_role_it_always_needed() {
        use Action::*;
        let table = [
            (ReadRuns, Role::Viewer),
            (ListAgents, Role::Viewer),
            (ReadState, Role::Viewer),
            (UploadBundle, Role::Operator),
            (Submit, Role::Operator),
            (Approve, Role::Operator),
            (Reject, Role::Operator),
            (Cancel, Role::Operator),
            (ShowSensitive, Role::Operator),
            (LockState, Role::Operator),
            (UnlockState, Role::Operator),
            (ForceUnlock, Role::Admin),
            (Rollback, Role::Admin),
            (ReadDeadLetters, Role::Admin),
            (PurgeDeadLetters, Role::Admin),
        ];
        assert_eq!(
            table.len(),
            Action::ALL.len(),
            "every action is in the table"
        );
        for (action, role) in table {
            assert_eq!(required_role(action), role, "{action:?}");
        }
    }

    #[test]
    fn a_role_may_do_what_it_needs_and_nothing_above() {
        for action in Action::ALL {
            let need = required_role(action);
            for role in [Role::Viewer, Role::Operator, Role::Admin] {
                let got = authorize(&as_user(role), false, action, None, Some("x"));
                if role >= need {
                    assert_eq!(got.unwrap().name, "pat", "{action:?} as {role:?}");
                } else {
                    let e = got.unwrap_err();
                    assert_eq!(e.grpc_code(), tonic::Code::PermissionDenied);
                    assert!(e.to_string().contains("this needs the"), "{e}");
                }
            }
        }
    }

    #[test]
    fn an_open_api_takes_the_declared_name_and_needs_one() {
        let req = Request::new(());
        let a = authorize(&req, true, Action::Rollback, Some("ws"), Some("bob")).unwrap();
        assert_eq!(a.name, "bob");
        assert_eq!(
            authorize(&req, true, Action::ReadRuns, None, None)
                .unwrap()
                .name,
            ""
        );
        let e = authorize(&req, true, Action::Submit, None, Some(" ")).unwrap_err();
        assert_eq!(e.grpc_code(), tonic::Code::InvalidArgument);
        let e = authorize(&req, false, Action::ReadRuns, None, None).unwrap_err();
        assert_eq!(e.grpc_code(), tonic::Code::Unauthenticated);
    }
}
