//! Plan policies in Rego, evaluated with regorus: shared by the coordinator (when a plan
//! completes) and the CLI (`tofuflow policy test`, offline), so both give the same verdict.
//!
//! The input follows conftest: `input` is the plan JSON (`tofu show -json`) as it is, so a
//! policy written for `conftest test tfplan.json` works unchanged; tofuflow's context (the
//! workspace, who submitted, commit, tags, drift check or not, the previous run) is added
//! under `input.tofuflow`, a key the plan JSON never has (as Spacelift adds `input.spacelift`).
//!
//! The rules read from the policy's package: `deny`, `violation`, `deny_*`, `violation_*` (each
//! a set of messages: the run fails), `warn`, `warn_*` (a human must approve) and
//! `auto_approve` (true, or a non-empty set: the apply needs no human when nothing warns or
//! denies). A message is a string, or an object with `msg` (conftest's structured form).

use regorus::{Engine, Value};
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

/// The key of tofuflow's context in the input document.
pub const CONTEXT_KEY: &str = "tofuflow";

/// Work units between two looks at the clock: often enough that a loop stops within a few
/// milliseconds of its limit.
const CHECK_INTERVAL: u32 = 256;

/// The Rego dialect a policy compiled as (v1 first, as OPA 1.x; else v0, as older conftest).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syntax {
    V1,
    V0,
}

/// A policy that compiled: its package and which dialect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    /// `data.main`, `data.tofuflow.plan`, …
    pub package: String,
    pub syntax: Syntax,
}

/// What one policy said about one plan.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Evaluation {
    /// Messages of `deny`, `violation` and their `_*` variants, sorted.
    pub deny: Vec<String>,
    /// Messages of `warn` and `warn_*`, sorted.
    pub warn: Vec<String>,
    /// Whether `auto_approve` held.
    pub auto_approve: bool,
    /// Why the policy could not give a verdict (counts as a denial).
    pub error: Option<EvalError>,
    pub duration: Duration,
}

/// A policy that could not be evaluated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EvalError {
    /// It ran past its time limit and was stopped.
    TimedOut { limit: Duration },
    /// It failed (a builtin's error, a conflict between rule values, bad input).
    Failed(String),
}

/// One policy's verdict, strongest last: the order a combined verdict takes the maximum of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// No opinion.
    Pass,
    /// The apply may go ahead without a human.
    AutoApprove,
    /// A human must approve.
    Warn,
    /// The run fails.
    Deny,
    /// The policy failed or timed out: the run fails (fail closed).
    Error,
}

impl Outcome {
    /// Every outcome, for parsing.
    pub const ALL: [Outcome; 5] = [
        Outcome::Pass,
        Outcome::AutoApprove,
        Outcome::Warn,
        Outcome::Deny,
        Outcome::Error,
    ];

    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::AutoApprove => "auto_approve",
            Outcome::Warn => "warn",
            Outcome::Deny => "deny",
            Outcome::Error => "error",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Outcome {
    type Err = String;
    fn from_str(s: &str) -> Result<Outcome, String> {
        Outcome::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| format!("unknown policy outcome {s:?}"))
    }
}

impl std::fmt::Display for EvalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EvalError::TimedOut { limit } => write!(
                f,
                "exceeded its time limit of {} ms and was stopped (simplify the policy, or raise the coordinator's --policy-timeout)",
                limit.as_millis()
            ),
            EvalError::Failed(e) => write!(f, "failed: {e}"),
        }
    }
}

impl Evaluation {
    /// The verdict: an error, else deny, else warn, else auto-approve, else no opinion.
    pub fn outcome(&self) -> Outcome {
        if self.error.is_some() {
            Outcome::Error
        } else if !self.deny.is_empty() {
            Outcome::Deny
        } else if !self.warn.is_empty() {
            Outcome::Warn
        } else if self.auto_approve {
            Outcome::AutoApprove
        } else {
            Outcome::Pass
        }
    }
}

/// The input document: the plan JSON with `context` added under `input.tofuflow`. Parsed once
/// and shared by every policy evaluated against it.
pub struct Input(Value);

impl Input {
    /// Builds the input; the plan must be a JSON object (`tofu show -json` output).
    pub fn new(plan_json: &str, context: &serde_json::Value) -> Result<Input, String> {
        let mut plan = Value::from_json_str(plan_json)
            .map_err(|e| format!("the plan is not JSON (`tofu show -json` output): {e}"))?;
        let ctx = Value::from_json_str(&context.to_string())
            .map_err(|e| format!("the context is not JSON: {e}"))?;
        plan.as_object_mut()
            .map_err(|_| {
                "the plan JSON is not an object: give `tofu show -json` output".to_string()
            })?
            .insert(Value::from(CONTEXT_KEY), ctx);
        Ok(Input(plan))
    }
}

/// regorus's parse error (`\n--> FILE:L:C\n … \nerror: what`) on one line: `FILE:L:C: what`.
fn tidy(err: &str) -> String {
    let at = err.lines().find_map(|l| l.trim().strip_prefix("--> "));
    let what = err.lines().rev().find_map(|l| l.strip_prefix("error: "));
    match (at, what) {
        (Some(at), Some(what)) => format!("{at}: {what}"),
        _ => err.trim().to_string(),
    }
}

/// An engine holding `source` alone, in whichever dialect it compiles (v0 is not tried for a
/// policy that imports `rego.v1`: it is v1, and regorus would print v0 warnings about it).
fn engine(name: &str, source: &str) -> Result<(Engine, Checked), String> {
    let file = format!("{name}.rego");
    let mut first_error = None;
    let dialects: &[Syntax] = if source.contains("import rego.v1") {
        &[Syntax::V1]
    } else {
        &[Syntax::V1, Syntax::V0]
    };
    for &syntax in dialects {
        let mut e = Engine::new();
        e.set_rego_v0(syntax == Syntax::V0);
        match e.add_policy(file.clone(), source.to_string()) {
            Ok(package) => return Ok((e, Checked { package, syntax })),
            Err(err) => {
                first_error.get_or_insert_with(|| tidy(&err.to_string()));
            }
        }
    }
    Err(first_error.unwrap_or_default())
}

/// Compiles a policy alone (no evaluation): its package and dialect.
pub fn compile(name: &str, source: &str) -> Result<Checked, String> {
    engine(name, source).map(|(_, checked)| checked)
}

/// Checks that a policy compiles and that a trial evaluation (an empty plan) finds no error
/// (an unknown builtin, a conflict between rule values).
pub fn check(name: &str, source: &str) -> Result<Checked, String> {
    let (mut e, checked) = engine(name, source).map_err(|err| {
        format!("policy {name} does not compile: {err} (policies are Rego v1, as OPA 1.x; Rego v0 with `deny[msg] {{ … }}` is accepted too; check a file with `tofuflow policy test FILE.rego --plan plan.json`)")
    })?;
    let empty = Input::new("{}", &serde_json::json!({})).expect("an empty object is an input");
    e.set_input(empty.0);
    e.set_execution_timer_config(timer(Duration::from_secs(1)));
    match e.eval_query(checked.package.clone(), false) {
        Ok(_) => Ok(checked),
        Err(err) if is_timeout(&err) => Ok(checked), // loops on an empty plan: its time limit stops it at run time
        Err(err) => Err(format!(
            "policy {name} fails on an empty plan: {err} (fix the rule it names; `tofuflow policy test {name}.rego --plan plan.json` shows the verdict on a real plan)"
        )),
    }
}

fn timer(limit: Duration) -> regorus::utils::limits::ExecutionTimerConfig {
    regorus::utils::limits::ExecutionTimerConfig {
        limit,
        check_interval: NonZeroU32::new(CHECK_INTERVAL).expect("not zero"),
    }
}

/// Whether an evaluation error is regorus's execution timer (`LimitError::TimeLimitExceeded`).
fn is_timeout(err: &impl std::fmt::Display) -> bool {
    err.to_string().contains("exceeded time limit")
}

/// Evaluates one policy against `input`, stopped after `limit`.
pub fn evaluate(name: &str, source: &str, input: &Input, limit: Duration) -> Evaluation {
    let start = Instant::now();
    let mut out = match engine(name, source) {
        Ok((mut e, checked)) => {
            e.set_input(input.0.clone());
            e.set_execution_timer_config(timer(limit));
            match e.eval_query(checked.package, false) {
                Ok(results) => verdict(package_value(&results)),
                Err(err) if is_timeout(&err) || start.elapsed() >= limit => Evaluation {
                    error: Some(EvalError::TimedOut { limit }),
                    ..Evaluation::default()
                },
                Err(err) => failed(err.to_string()),
            }
        }
        Err(err) => failed(format!("does not compile: {err}")),
    };
    out.duration = start.elapsed();
    out
}

fn failed(e: String) -> Evaluation {
    Evaluation {
        error: Some(EvalError::Failed(e)),
        ..Evaluation::default()
    }
}

/// The package's document as JSON (an empty object when nothing is defined).
fn package_value(results: &regorus::QueryResults) -> serde_json::Value {
    results
        .result
        .first()
        .and_then(|r| r.expressions.first())
        .and_then(|e| e.value.to_json_str().ok())
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_else(|| serde_json::json!({}))
}

/// Reads the rules out of a package's document.
fn verdict(package: serde_json::Value) -> Evaluation {
    let mut out = Evaluation::default();
    let Some(rules) = package.as_object() else {
        return out;
    };
    for (rule, value) in rules {
        match rule_kind(rule) {
            Some(RuleKind::Deny) => out.deny.extend(messages(rule, value)),
            Some(RuleKind::Warn) => out.warn.extend(messages(rule, value)),
            Some(RuleKind::AutoApprove) => out.auto_approve = holds(value),
            None => {}
        }
    }
    out.deny.sort();
    out.deny.dedup();
    out.warn.sort();
    out.warn.dedup();
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RuleKind {
    Deny,
    Warn,
    AutoApprove,
}

/// Which rule a name is, by conftest's names (and prefixes) and tofuflow's `auto_approve`.
fn rule_kind(rule: &str) -> Option<RuleKind> {
    let is = |base: &str| rule == base || rule.starts_with(&format!("{base}_"));
    if rule == "auto_approve" {
        Some(RuleKind::AutoApprove)
    } else if is("deny") || is("violation") {
        Some(RuleKind::Deny)
    } else if is("warn") {
        Some(RuleKind::Warn)
    } else {
        None
    }
}

/// Whether a rule's value counts as true: `true`, or a non-empty set.
fn holds(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Bool(b) => *b,
        serde_json::Value::Array(a) => !a.is_empty(),
        serde_json::Value::Object(o) => !o.is_empty(),
        serde_json::Value::String(s) => !s.is_empty(),
        _ => false,
    }
}

/// A rule's messages: each string, each object's `msg`, a lone string; `true` names the rule.
fn messages(rule: &str, v: &serde_json::Value) -> Vec<String> {
    let one = |m: &serde_json::Value| match m {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Object(o) => match o.get("msg") {
            Some(serde_json::Value::String(s)) => s.clone(),
            _ => m.to_string(),
        },
        other => other.to_string(),
    };
    match v {
        serde_json::Value::Array(items) => items.iter().map(one).collect(),
        serde_json::Value::Bool(true) => vec![format!("{rule} is true")],
        serde_json::Value::Bool(false) | serde_json::Value::Null => Vec::new(),
        other => vec![one(other)],
    }
}

#[cfg(test)]
mod tests;
