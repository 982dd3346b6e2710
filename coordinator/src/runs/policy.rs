//! What a plan's policy verdicts lead to (pure): the combined gate (any error or deny fails
//! the run, any warn needs a human, an auto-approve with neither approves the apply), whether
//! the apply is approved without a human, and tofuflow's context in the policies' input.

use crate::store::{PolicyVerdict, Run};
use tofuflow_proto::policy::Outcome;

/// What the verdicts of the policies attached to a run's workspace lead to, together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyGate {
    /// No policy applies, or none has an opinion: the run goes on as submitted.
    AsSubmitted,
    /// A policy denied, or could not be evaluated (fail closed): the run fails with the reasons.
    Fail(String),
    /// A policy warned: a human approves, even a run submitted with `--auto-approve`.
    Review(String),
    /// A policy auto-approves and none warns or denies: the apply needs no human.
    AutoApprove(String),
}

/// Combines verdicts: the strongest outcome wins, its reasons joined.
pub fn gate(verdicts: &[PolicyVerdict]) -> PolicyGate {
    let Some(strongest) = verdicts.iter().map(|v| v.outcome).max() else {
        return PolicyGate::AsSubmitted;
    };
    let at = |o: Outcome| verdicts.iter().filter(move |v| v.outcome == o);
    let reasons = |o: Outcome, msgs: fn(&PolicyVerdict) -> Vec<String>| {
        at(o)
            .flat_map(|v| {
                msgs(v)
                    .into_iter()
                    .map(|m| format!("policy {}: {m}", v.policy))
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    match strongest {
        Outcome::Pass => PolicyGate::AsSubmitted,
        Outcome::Error | Outcome::Deny => {
            let errors: Vec<String> = at(Outcome::Error)
                .map(|v| format!("policy {} {}", v.policy, v.error))
                .collect();
            let denies = reasons(Outcome::Deny, |v| v.deny.clone());
            let all: Vec<String> = errors
                .into_iter()
                .chain((!denies.is_empty()).then_some(denies))
                .collect();
            PolicyGate::Fail(format!("denied by plan policy: {}", all.join("; ")))
        }
        Outcome::Warn => PolicyGate::Review(format!(
            "a plan policy asks for a human approval: {}",
            reasons(Outcome::Warn, |v| v.warn.clone())
        )),
        Outcome::AutoApprove => {
            let names: Vec<&str> = at(Outcome::AutoApprove)
                .map(|v| v.policy.as_str())
                .collect();
            PolicyGate::AutoApprove(format!("auto-approved by plan policy {}", names.join(", ")))
        }
    }
}

/// Whether the apply goes ahead without a human: a policy's auto-approve (unless a four-eyes
/// rule covers the workspace: the rule wins) or, when policies have no opinion, the
/// submitter's `--auto-approve`; never when a policy warned.
pub fn approved_without_human(submitted_auto: bool, gate: &PolicyGate, four_eyes: bool) -> bool {
    match gate {
        PolicyGate::AsSubmitted => submitted_auto,
        PolicyGate::AutoApprove(_) => !four_eyes,
        PolicyGate::Review(_) | PolicyGate::Fail(_) => false,
    }
}

/// Whether `run` is a drift check (a plan-only run that looks for changes made behind
/// tofuflow's back). Policies see it as `input.tofuflow.drift_check`.
pub fn is_drift_check(run: &Run) -> bool {
    run.kind == crate::runs::RunKind::DriftCheck
}

/// The run before this one on its workspace, as policies see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreviousRun {
    pub id: String,
    pub state: String,
    pub kind: String,
}

/// tofuflow's context, put under `input.tofuflow` next to the plan JSON.
pub fn context(run: &Run, previous: Option<&PreviousRun>) -> serde_json::Value {
    let previous =
        previous.map(|p| serde_json::json!({"id": p.id, "state": p.state, "kind": p.kind}));
    serde_json::json!({
        "workspace": run.workspace,
        "pool": run.pool,
        "actor": run.submitted_by,
        "submitted_by": run.submitted_by,
        "commit": run.commit,
        "source": run.source,
        "pipeline_id": run.pipeline_id,
        "tags": run.tags,
        "drift_check": is_drift_check(run),
        "run": {
            "id": run.id,
            "kind": run.kind.as_str(),
            "auto_approve": run.auto_approve,
            "created_ms": run.created_ms,
        },
        "previous_run": previous,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(policy: &str, outcome: Outcome) -> PolicyVerdict {
        PolicyVerdict {
            policy: policy.into(),
            version: 1,
            digest: String::new(),
            outcome,
            deny: if outcome == Outcome::Deny {
                vec![format!("{policy} says no")]
            } else {
                vec![]
            },
            warn: if outcome == Outcome::Warn {
                vec![format!("{policy} is unsure")]
            } else {
                vec![]
            },
            error: if outcome == Outcome::Error {
                "exceeded its time limit of 10 ms".into()
            } else {
                String::new()
            },
            duration_us: 1,
            evaluated_ms: 0,
        }
    }

    #[test]
    fn the_strongest_verdict_wins_with_its_reasons() {
        assert_eq!(gate(&[]), PolicyGate::AsSubmitted);
        assert_eq!(gate(&[v("a", Outcome::Pass)]), PolicyGate::AsSubmitted);
        assert_eq!(
            gate(&[v("a", Outcome::AutoApprove), v("b", Outcome::Pass)]),
            PolicyGate::AutoApprove("auto-approved by plan policy a".into())
        );
        assert_eq!(
            gate(&[v("a", Outcome::AutoApprove), v("b", Outcome::Warn)]),
            PolicyGate::Review(
                "a plan policy asks for a human approval: policy b: b is unsure".into()
            )
        );
        assert_eq!(
            gate(&[v("a", Outcome::Deny), v("b", Outcome::Warn), v("c", Outcome::Error)]),
            PolicyGate::Fail(
                "denied by plan policy: policy c exceeded its time limit of 10 ms; policy a: a says no"
                    .into()
            )
        );
    }

    #[test]
    fn four_eyes_beats_a_policy_auto_approve_and_a_warn_beats_the_submitter() {
        let auto = PolicyGate::AutoApprove(String::new());
        assert!(approved_without_human(false, &auto, false));
        assert!(!approved_without_human(true, &auto, true));
        assert!(!approved_without_human(
            true,
            &PolicyGate::Review(String::new()),
            false
        ));
        assert!(approved_without_human(
            true,
            &PolicyGate::AsSubmitted,
            false
        ));
        assert!(!approved_without_human(
            false,
            &PolicyGate::AsSubmitted,
            false
        ));
    }
}
