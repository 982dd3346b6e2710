//! What an ID token says (pure): its claims, its `sub`, and its lifetime window.
//!
//! `sub` is `workspace:<workspace>:run_phase:<plan|apply>`: stable per workspace and phase (a
//! destroy's apply is `apply` too), so a cloud's trust policy can match it exactly and give the
//! plan a read-only role and the apply a writing one.

use crate::runs::Phase;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The claims a token carries (the discovery document's `claims_supported`).
pub const CLAIMS: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "nbf",
    "jti",
    "workspace",
    "run_id",
    "task_id",
    "run_phase",
    "actor",
    "pipeline",
    "commit",
    "bundle_digest",
    "tags",
];

/// The claims of one task's ID token.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IdClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    /// Seconds since the epoch.
    pub iat: i64,
    /// Equal to `iat`.
    pub nbf: i64,
    pub exp: i64,
    /// Unique per token (a UUID).
    pub jti: String,
    pub workspace: String,
    pub run_id: String,
    pub task_id: String,
    pub run_phase: Phase,
    /// Who submitted the run.
    pub actor: String,
    /// The pipeline or DAG id the run was submitted with (`--pipeline`), when it has one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pipeline: String,
    /// The commit the run was submitted with (`--commit`), when it has one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub commit: String,
    /// The module bundle's digest (sha256:…): what code runs with the credentials.
    pub bundle_digest: String,
    /// The run's tags (`dag_id`, `team`, …), when it has any.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// What a task's token is about (taken from its run and task).
#[derive(Clone, Copy, Debug)]
pub struct TaskFacts<'a> {
    pub workspace: &'a str,
    pub run_id: &'a str,
    pub task_id: &'a str,
    pub phase: Phase,
    pub actor: &'a str,
    pub pipeline: &'a str,
    pub commit: &'a str,
    pub bundle_digest: &'a str,
    pub tags: &'a BTreeMap<String, String>,
}

/// The `sub` of a workspace's tokens in one phase.
pub fn subject(workspace: &str, phase: Phase) -> String {
    format!("workspace:{workspace}:run_phase:{}", phase.as_str())
}

impl IdClaims {
    /// The claims of a token for `task`, valid over `window`.
    pub fn for_task(
        issuer: &super::Issuer,
        audience: &str,
        task: &TaskFacts<'_>,
        window: TokenWindow,
        jti: String,
    ) -> IdClaims {
        IdClaims {
            iss: issuer.as_str().to_string(),
            aud: audience.to_string(),
            sub: subject(task.workspace, task.phase),
            iat: window.issued_ms / 1000,
            nbf: window.issued_ms / 1000,
            exp: window.expires_ms / 1000,
            jti,
            workspace: task.workspace.to_string(),
            run_id: task.run_id.to_string(),
            task_id: task.task_id.to_string(),
            run_phase: task.phase,
            actor: task.actor.to_string(),
            pipeline: task.pipeline.to_string(),
            commit: task.commit.to_string(),
            bundle_digest: task.bundle_digest.to_string(),
            tags: task.tags.clone(),
        }
    }
}

/// When a token is valid: from `issued_ms` to `expires_ms`, whole seconds (JWT times are).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenWindow {
    pub issued_ms: i64,
    pub expires_ms: i64,
}

impl TokenWindow {
    /// From `now_ms` for `ttl_ms`, cut at each non-zero bound in `bounds` (the signing key's
    /// last valid moment, the end of the task's time budget), never shorter than one second.
    pub fn new(now_ms: i64, ttl_ms: i64, bounds: &[i64]) -> TokenWindow {
        let iat = now_ms.div_euclid(1000);
        let mut exp = (now_ms + ttl_ms).div_euclid(1000);
        for b in bounds.iter().filter(|b| **b > 0) {
            exp = exp.min(b.div_euclid(1000));
        }
        let exp = exp.max(iat + 1);
        TokenWindow {
            issued_ms: iat * 1000,
            expires_ms: exp * 1000,
        }
    }

    /// Whether a fresh token should replace this one: it has less than half its life left.
    pub fn needs_renewal(&self, now_ms: i64) -> bool {
        now_ms >= self.issued_ms + (self.expires_ms - self.issued_ms) / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static TAGS: std::sync::LazyLock<BTreeMap<String, String>> =
        std::sync::LazyLock::new(|| BTreeMap::from([("dag_id".into(), "nightly_gpu".into())]));

    fn facts(phase: Phase) -> TaskFacts<'static> {
        TaskFacts {
            workspace: "ml/gpu-a100",
            run_id: "r1",
            task_id: "t1",
            phase,
            actor: "alice",
            pipeline: "",
            commit: "abc123",
            bundle_digest: "sha256:00",
            tags: &TAGS,
        }
    }

    #[test]
    fn subject_is_stable_per_workspace_and_phase() {
        assert_eq!(
            subject("ml/gpu-a100", Phase::Plan),
            "workspace:ml/gpu-a100:run_phase:plan"
        );
        assert_eq!(
            subject("ml/gpu-a100", Phase::Apply),
            "workspace:ml/gpu-a100:run_phase:apply"
        );
    }

    #[test]
    fn claims_carry_the_task_and_leave_out_what_the_run_lacks() {
        let i = super::super::Issuer::parse("https://ci.example.com").unwrap();
        let w = TokenWindow::new(1_700_000_000_500, 900_000, &[]);
        let c = IdClaims::for_task(&i, "sts.amazonaws.com", &facts(Phase::Apply), w, "j".into());
        assert_eq!(
            (c.iat, c.nbf, c.exp),
            (1_700_000_000, 1_700_000_000, 1_700_000_900)
        );
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["run_phase"], "apply");
        assert_eq!(v["sub"], "workspace:ml/gpu-a100:run_phase:apply");
        assert_eq!(v["iss"], "https://ci.example.com");
        assert_eq!(v["aud"], "sts.amazonaws.com");
        assert_eq!(v["commit"], "abc123");
        assert!(v.get("pipeline").is_none(), "no pipeline id: no claim");
        assert_eq!(v["tags"]["dag_id"], "nightly_gpu", "the run's tags");
        for k in v.as_object().unwrap().keys() {
            assert!(CLAIMS.contains(&k.as_str()), "{k} not in claims_supported");
        }
    }

    #[test]
    fn window_is_cut_by_bounds_and_renewed_past_half_life() {
        let now = 1_000_000;
        let w = TokenWindow::new(now, 900_000, &[0]);
        assert_eq!((w.issued_ms, w.expires_ms), (1_000_000, 1_900_000));
        let cut = TokenWindow::new(now, 900_000, &[1_300_000, 0]);
        assert_eq!(cut.expires_ms, 1_300_000);
        let past = TokenWindow::new(now, 900_000, &[500_000]);
        assert_eq!(past.expires_ms, 1_001_000, "never shorter than a second");
        assert!(!w.needs_renewal(1_449_999));
        assert!(w.needs_renewal(1_450_000));
    }
}
