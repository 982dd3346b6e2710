//! Fanning stacks out into targets: one per `for_each` key (or one for a stack without it),
//! each with its workspace, tags and the targets it waits for.

use super::graph::Index;
use super::{Pos, Problem, Stack, Workflow};
use hcl::eval::{Context, Evaluate};
use std::collections::BTreeMap;

/// One run-to-be of a workflow: a stack, or one key of a `for_each` stack.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    /// `network`, or `network["eu"]` for a key of a `for_each` stack.
    pub key: String,
    pub stack: String,
    /// `each.key` and `each.value`, for a `for_each` stack.
    pub each: Option<(String, serde_json::Value)>,
    pub workspace: String,
    /// The pool named by the stack (empty: the workflow's default).
    pub pool: String,
    /// The keys of the targets this one waits for.
    pub deps: Vec<String>,
    pub tags: BTreeMap<String, String>,
}

/// The key of a target of `stack` (`each_key` for a `for_each` stack).
pub fn target_key(stack: &str, each_key: Option<&str>) -> String {
    match each_key {
        Some(k) => format!("{stack}[{k:?}]"),
        None => stack.to_string(),
    }
}

/// Every target of the workflow, in file order, or the problems found evaluating it.
pub fn expand(wf: &Workflow, file: &str) -> Result<Vec<Target>, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut keys: BTreeMap<&str, Option<Vec<(String, serde_json::Value)>>> = BTreeMap::new();
    for s in &wf.stacks {
        match each_of(s) {
            Ok(k) => {
                keys.insert(&s.name, k);
            }
            Err((pos, m)) => problems.push(problem(file, pos, m)),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut out = Vec::new();
    for s in &wf.stacks {
        let each: Vec<Option<(String, serde_json::Value)>> = match &keys[s.name.as_str()] {
            Some(k) => k.iter().cloned().map(Some).collect(),
            None => vec![None],
        };
        for e in each {
            match target(s, e, &keys) {
                Ok(t) => out.push(t),
                Err((pos, m)) => problems.push(problem(file, pos, m)),
            }
        }
    }
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for t in &out {
        if let Some(other) = seen.insert(&t.workspace, &t.key) {
            let pos = wf.stack(&t.stack).map(|s| s.pos).unwrap_or_default();
            problems.push(problem(file, pos, format!("targets {other} and {} both use workspace {:?}: each needs its own (template it from each.key)", t.key, t.workspace)));
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

fn problem(file: &str, pos: Pos, message: String) -> Problem {
    Problem {
        file: file.to_string(),
        pos: Some(pos),
        message,
    }
}

/// A stack's `for_each` keys and values (None: the stack has no `for_each`).
#[allow(clippy::type_complexity)]
fn each_of(s: &Stack) -> Result<Option<Vec<(String, serde_json::Value)>>, (Pos, String)> {
    let Some((expr, pos)) = &s.for_each else {
        return Ok(None);
    };
    let v = expr
        .evaluate(&Context::new())
        .map_err(|e| (*pos, format!("stack {:?}: for_each: {e}", s.name)))?;
    let pairs: Vec<(String, serde_json::Value)> = match v {
        hcl::Value::Object(o) => o.into_iter().map(|(k, v)| (k, json(&v))).collect(),
        hcl::Value::Array(items) => {
            let mut keys = Vec::new();
            for i in items {
                match i {
                    hcl::Value::String(s) => keys.push((s.clone(), serde_json::Value::String(s))),
                    _ => return Err((*pos, format!("stack {:?}: for_each over a list takes strings (a set of keys); use a map for other values", s.name))),
                }
            }
            keys.sort_by(|a, b| a.0.cmp(&b.0));
            keys.dedup_by(|a, b| a.0 == b.0);
            keys
        }
        _ => {
            return Err((
                *pos,
                format!(
                    "stack {:?}: for_each must be a map or a list of strings",
                    s.name
                ),
            ))
        }
    };
    if pairs.is_empty() {
        return Err((*pos, format!("stack {:?}: for_each is empty", s.name)));
    }
    if let Some((k, _)) = pairs.iter().find(|(k, _)| !valid_key(k)) {
        return Err((*pos, format!("stack {:?}: for_each key {k:?}: use letters, digits, '.', '_' and '-' (at most 64)", s.name)));
    }
    Ok(Some(pairs))
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 64
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

pub(super) fn json(v: &hcl::Value) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// The `each` object of a target, for evaluation.
pub(super) fn each_context(ctx: &mut Context, each: &Option<(String, serde_json::Value)>) {
    if let Some((k, v)) = each {
        let value: hcl::Value = serde_json::from_value(v.clone()).unwrap_or(hcl::Value::Null);
        let mut o = hcl::Map::new();
        o.insert("key".to_string(), hcl::Value::String(k.clone()));
        o.insert("value".to_string(), value);
        ctx.declare_var("each", hcl::Value::Object(o));
    }
}

type Keys<'a> = BTreeMap<&'a str, Option<Vec<(String, serde_json::Value)>>>;

/// One target of stack `s`.
fn target(
    s: &Stack,
    each: Option<(String, serde_json::Value)>,
    keys: &Keys,
) -> Result<Target, (Pos, String)> {
    let mut ctx = Context::new();
    each_context(&mut ctx, &each);
    let text = |e: &hcl::Expression, what: &str| -> Result<String, (Pos, String)> {
        match e.evaluate(&ctx) {
            Ok(hcl::Value::String(v)) => Ok(v),
            Ok(v) => Err((
                s.pos,
                format!("stack {:?}: {what} must be a string, not {v}", s.name),
            )),
            Err(e) => Err((s.pos, format!("stack {:?}: {what}: {e}", s.name))),
        }
    };
    let workspace = text(&s.workspace, "workspace")?;
    let mut tags = BTreeMap::new();
    for (k, e) in &s.tags {
        tags.insert(k.clone(), text(e, &format!("tag {k}"))?);
    }
    let my_key = each.as_ref().map(|(k, _)| k.clone());
    let deps = deps(s, my_key.as_deref(), keys)?;
    Ok(Target {
        key: target_key(&s.name, my_key.as_deref()),
        stack: s.name.clone(),
        each,
        workspace,
        pool: s.pool.clone().unwrap_or_default(),
        deps,
        tags,
    })
}

/// The targets one target of `s` (with key `my_key`) waits for.
fn deps(s: &Stack, my_key: Option<&str>, keys: &Keys) -> Result<Vec<String>, (Pos, String)> {
    let mut out = Vec::new();
    let all = |stack: &str| -> Vec<String> {
        match keys.get(stack) {
            Some(Some(k)) => k.iter().map(|(k, _)| target_key(stack, Some(k))).collect(),
            _ => vec![stack.to_string()],
        }
    };
    for (d, _) in &s.depends_on {
        out.extend(all(d));
    }
    for r in &s.refs {
        let key = match &r.index {
            Index::None => None,
            Index::EachKey => my_key,
            Index::Key(k) => Some(k.as_str()),
        };
        if let Some(k) = key {
            let has = keys
                .get(r.stack.as_str())
                .and_then(|x| x.as_ref())
                .is_some_and(|ks| ks.iter().any(|(x, _)| x == k));
            if !has {
                return Err((
                    r.pos,
                    format!(
                        "stack {:?} has no for_each key {k:?} (used by {})",
                        r.stack,
                        target_key(&s.name, my_key)
                    ),
                ));
            }
        }
        out.push(target_key(&r.stack, key));
    }
    out.sort();
    out.dedup();
    Ok(out)
}
