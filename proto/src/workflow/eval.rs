//! A target's inputs, evaluated once the targets it reads from have applied: their outputs come
//! from the state tofuflow stores for them, never from a placeholder.

use super::expand::{each_context, json, target_key};
use super::graph::Index;
use super::Workflow;
use hcl::eval::{Context, Evaluate};
use std::collections::{BTreeMap, BTreeSet};

/// The root module outputs of a state: value and whether it is sensitive.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outputs(pub BTreeMap<String, (serde_json::Value, bool)>);

impl Outputs {
    /// The outputs of a state file (`{"outputs": {"name": {"value": .., "sensitive": ..}}}`).
    pub fn from_state(state: &[u8]) -> Result<Outputs, String> {
        let v: serde_json::Value = serde_json::from_slice(state)
            .map_err(|e| format!("the stored state is not JSON: {e}"))?;
        let mut out = BTreeMap::new();
        if let Some(o) = v.get("outputs").and_then(|o| o.as_object()) {
            for (k, x) in o {
                let value = x.get("value").cloned().unwrap_or(serde_json::Value::Null);
                let sensitive = x
                    .get("sensitive")
                    .and_then(|s| s.as_bool())
                    .unwrap_or(false);
                out.insert(k.clone(), (value, sensitive));
            }
        }
        Ok(Outputs(out))
    }

    fn object(&self) -> hcl::Value {
        let mut o = hcl::Map::new();
        for (k, (v, _)) in &self.0 {
            o.insert(
                k.clone(),
                serde_json::from_value(v.clone()).unwrap_or(hcl::Value::Null),
            );
        }
        hcl::Value::Object(o)
    }
}

/// The outputs of the targets a target reads from, by target key.
pub type Upstream = BTreeMap<String, Outputs>;

/// The inputs of the target of `stack` with `each`, and which of them carry a sensitive output.
#[allow(clippy::type_complexity)]
pub fn inputs(
    wf: &Workflow,
    stack: &str,
    each: &Option<(String, serde_json::Value)>,
    upstream: &Upstream,
) -> Result<(BTreeMap<String, serde_json::Value>, BTreeSet<String>), String> {
    let s = wf
        .stack(stack)
        .ok_or_else(|| format!("the workflow has no stack {stack:?}"))?;
    let mut ctx = Context::new();
    each_context(&mut ctx, each);
    ctx.declare_var("stack", stack_object(wf, upstream));
    let my_key = each.as_ref().map(|(k, _)| k.as_str());
    let mut values = BTreeMap::new();
    let mut sensitive = BTreeSet::new();
    for i in &s.inputs {
        for r in s.refs.iter().filter(|r| r.pos == i.pos) {
            let key = match &r.index {
                Index::None => target_key(&r.stack, None),
                Index::EachKey => target_key(&r.stack, my_key),
                Index::Key(k) => target_key(&r.stack, Some(k)),
            };
            let outs = upstream
                .get(&key)
                .ok_or_else(|| format!("input {}: {key} has not applied yet", i.name))?;
            match &r.output {
                Some(o) => match outs.0.get(o) {
                    Some((_, secret)) => {
                        if *secret {
                            sensitive.insert(i.name.clone());
                        }
                    }
                    None => {
                        let have: Vec<&str> = outs.0.keys().map(|k| k.as_str()).collect();
                        return Err(format!(
                            "input {}: {key} has no output {o:?} in its state (it has: {})",
                            i.name,
                            if have.is_empty() {
                                "none".to_string()
                            } else {
                                have.join(", ")
                            }
                        ));
                    }
                },
                None if outs.0.values().any(|(_, s)| *s) => {
                    sensitive.insert(i.name.clone());
                }
                None => {}
            }
        }
        let v = i
            .expr
            .evaluate(&ctx)
            .map_err(|e| format!("input {}: {e}", i.name))?;
        values.insert(i.name.clone(), json(&v));
    }
    Ok((values, sensitive))
}

/// `stack.<name>.outputs` (or `stack.<name>[key].outputs`) for every upstream known.
fn stack_object(wf: &Workflow, upstream: &Upstream) -> hcl::Value {
    let mut root = hcl::Map::new();
    for s in &wf.stacks {
        let with_outputs = |o: &Outputs| {
            let mut m = hcl::Map::new();
            m.insert("outputs".to_string(), o.object());
            hcl::Value::Object(m)
        };
        if s.for_each.is_some() {
            let prefix = format!("{}[", s.name);
            let mut by_key = hcl::Map::new();
            for (k, o) in upstream.iter().filter(|(k, _)| k.starts_with(&prefix)) {
                let each_key: String =
                    serde_json::from_str(&k[prefix.len()..k.len() - 1]).unwrap_or_default();
                by_key.insert(each_key, with_outputs(o));
            }
            root.insert(s.name.clone(), hcl::Value::Object(by_key));
        } else if let Some(o) = upstream.get(&s.name) {
            root.insert(s.name.clone(), with_outputs(o));
        }
    }
    hcl::Value::Object(root)
}
