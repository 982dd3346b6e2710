//! Evaluating a finished plan against the plan policies attached to its workspace. Runs before
//! the completion's transaction opens (SQLite has one writer: no transaction waits on Rego), on
//! a blocking thread, each policy under its own time limit (regorus's execution timer); a
//! backstop timeout on the whole thread covers a builtin that never looks at the timer, so
//! completing a task never hangs. The verdicts are recorded, and acted on, by
//! `lifecycle/complete.rs` `planned`.

use crate::auth::WorkspaceGlob;
use crate::error::Result;
use crate::runs::{Phase, TaskOutcome, TaskReport};
use crate::store::*;
use std::time::Duration;
use tofuflow_proto::policy::{self, EvalError, Evaluation};

/// Time given beyond the sum of the limits before the whole evaluation is given up.
const BACKSTOP_GRACE: Duration = Duration::from_secs(1);

/// Whether policy `p` applies to `workspace`; a damaged glob applies everywhere (fail closed).
fn applies(p: &PlanPolicy, workspace: &str) -> bool {
    WorkspaceGlob::parse(&p.workspaces).map_or(true, |g| g.matches(workspace))
}

/// A plan's verdicts, and whether a four-eyes rule covers its workspace (which a policy's
/// auto-approve does not override).
#[derive(Clone, Debug, Default)]
pub struct PlanVerdicts {
    pub verdicts: Vec<PolicyVerdict>,
    pub four_eyes: bool,
}

impl Store {
    /// The verdicts on the plan `r` completes, or none when `r` is not a successful plan with
    /// changes completing for the first time, or no policy applies to its workspace.
    pub async fn evaluate_plan_policies(
        &self,
        r: &TaskReport,
        limit: Duration,
    ) -> Result<PlanVerdicts> {
        // A plan without changes has nothing to decide (and the agent keeps no plan JSON).
        if r.outcome != TaskOutcome::Succeeded || !r.has_changes {
            return Ok(PlanVerdicts::default());
        }
        let mut c = self.pool.acquire().await?;
        let task = get_task_c(&mut c, &r.task_id).await?;
        drop(c);
        // Only for the lease holder's first completion: a stale or forged one is refused by
        // the transaction anyway, and must not cost an evaluation.
        let live = |t: &Task| r.lease().check(t).is_ok() && !t.state.reported();
        let Some(task) = task.filter(|t| t.phase == Phase::Plan && live(t)) else {
            return Ok(PlanVerdicts::default());
        };
        let run = self.get_run(&task.run_id).await?;
        let attached: Vec<PlanPolicy> = self
            .plan_policies()
            .await?
            .into_iter()
            .filter(|p| applies(p, &run.workspace))
            .collect();
        if attached.is_empty() {
            return Ok(PlanVerdicts::default());
        }
        let plan = match run.plan_json_digest.as_str() {
            "" => Err("the agent uploaded no plan JSON for this run".to_string()),
            digest => String::from_utf8(self.get_blob(digest).await?)
                .map_err(|_| "the plan JSON is not UTF-8".to_string()),
        };
        let previous = self.previous_run(&run).await?;
        let context = crate::runs::policy::context(&run, previous.as_ref());
        let evaluations = match plan {
            Ok(plan) => evaluate_off_thread(&attached, plan, context, limit).await,
            Err(why) => attached.iter().map(|_| failed(&why)).collect(),
        };
        let now = now_ms();
        let rules = crate::auth::rules::Rules::load(self).await?;
        Ok(PlanVerdicts {
            verdicts: attached
                .iter()
                .zip(evaluations)
                .map(|(p, e)| verdict(p, e, now))
                .collect(),
            four_eyes: rules.four_eyes(&run.workspace).is_some(),
        })
    }
}

/// Evaluates every policy on one blocking thread (the input is parsed once); gives up when
/// the thread outlives the sum of the limits plus a grace (the thread is left to finish alone).
async fn evaluate_off_thread(
    policies: &[PlanPolicy],
    plan: String,
    context: serde_json::Value,
    limit: Duration,
) -> Vec<Evaluation> {
    let sources: Vec<(String, String)> = policies
        .iter()
        .map(|p| (p.name.clone(), p.source.clone()))
        .collect();
    let n = sources.len();
    let work = tokio::task::spawn_blocking(move || {
        let input = match policy::Input::new(&plan, &context) {
            Ok(input) => input,
            Err(why) => return sources.iter().map(|_| failed(&why)).collect(),
        };
        sources
            .iter()
            .map(|(name, source)| policy::evaluate(name, source, &input, limit))
            .collect::<Vec<_>>()
    });
    let backstop = limit * n as u32 + BACKSTOP_GRACE;
    match tokio::time::timeout(backstop, work).await {
        Ok(Ok(evaluations)) => evaluations,
        Ok(Err(e)) => (0..n)
            .map(|_| failed(&format!("the evaluation thread failed: {e}")))
            .collect(),
        Err(_) => {
            tracing::warn!(
                policies = n,
                limit_ms = limit.as_millis() as u64,
                "plan policies outlived their time limit; the run fails"
            );
            (0..n)
                .map(|_| Evaluation {
                    error: Some(EvalError::TimedOut { limit }),
                    duration: backstop,
                    ..Evaluation::default()
                })
                .collect()
        }
    }
}

fn failed(why: &str) -> Evaluation {
    Evaluation {
        error: Some(EvalError::Failed(why.to_string())),
        ..Evaluation::default()
    }
}

fn verdict(p: &PlanPolicy, e: Evaluation, now: i64) -> PolicyVerdict {
    PolicyVerdict {
        policy: p.name.clone(),
        version: p.version,
        digest: p.digest.clone(),
        outcome: e.outcome(),
        error: e
            .error
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        duration_us: e.duration.as_micros() as i64,
        deny: e.deny,
        warn: e.warn,
        evaluated_ms: now,
    }
}
