//! The top-level keys of `show -json PLAN` that depend on more than the changes themselves:
//! `relevant_attributes`, `checks`, `prior_state` (written even for a first plan, with the
//! outputs already known), `applyable` and `complete`, as the real binary writes them.

use crate::config::{expr_text, Module};
use crate::engine::{state_json, OutputChange};
use crate::eval;
use crate::state::StateFile;
use serde_json::{json, Map, Value};

/// `terraform_data.NAME.a.b` references in HCL text, as (resource address, attribute path); an
/// instance key stays in the address (`terraform_data.z["a"]`), a splat (`terraform_data.n[*].id`)
/// or a bare reference (`length(terraform_data.n)`) names the whole resource.
pub fn attribute_refs(text: &str) -> Vec<(String, Vec<Value>)> {
    let mut out = refs_after(text, "terraform_data.");
    out.extend(refs_after(text, "data.terraform_remote_state."));
    out
}

/// The references `attribute_refs` finds for one resource type's prefix.
fn refs_after(text: &str, pat: &str) -> Vec<(String, Vec<Value>)> {
    let word = |s: &str| {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '-')
            .collect::<String>()
    };
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(pat) {
        let boundary = rest[..i]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '.'));
        let mut after = &rest[i + pat.len()..];
        let mut name = word(after);
        after = &after[name.len()..];
        let mut path: Vec<Value> = Vec::new();
        let index = after
            .strip_prefix('[')
            .and_then(|r| r.find(']').map(|e| &r[..e]));
        let splat = index == Some("*");
        if let Some(i) = index.filter(|_| !splat) {
            after = &after[i.len() + 2..];
            name = format!("{name}[{i}]");
        }
        while !splat && !after.is_empty() {
            if let Some(next) = after.strip_prefix('.') {
                let w = word(next);
                if w.is_empty() {
                    break;
                }
                after = &next[w.len()..];
                path.push(json!(w));
            } else if let Some((step, len)) = index_step(after) {
                after = &after[len..];
                path.push(step);
            } else {
                break;
            }
        }
        if boundary && !name.is_empty() {
            out.push((format!("{pat}{name}"), path));
        }
        rest = &rest[i + pat.len()..];
    }
    out
}

/// A `[0]` or `["key"]` step at the start of `text`, and its length.
fn index_step(text: &str) -> Option<(Value, usize)> {
    let inner = text.strip_prefix('[')?;
    let end = inner.find(']')?;
    let key = &inner[..end];
    let step = match key.parse::<u64>() {
        Ok(n) => json!(n),
        Err(_) => json!(key.strip_prefix('"')?.strip_suffix('"')?),
    };
    Some((step, end + 2))
}

/// Attributes of resources that changing outputs and resources refer to, sorted and unique.
pub fn relevant_attributes(m: &Module, changed: &[String], outs: &[OutputChange]) -> Vec<Value> {
    let mut texts: Vec<String> = outs
        .iter()
        .filter(|o| o.1 != "no-op")
        .filter_map(|o| m.outputs.iter().find(|d| d.name == o.0))
        .map(|d| expr_text(&d.value))
        .collect();
    for r in m.resources.iter().filter(|r| changed.contains(&r.name)) {
        let exprs = [&r.input, &r.triggers_replace, &r.count, &r.for_each];
        texts.extend(exprs.into_iter().flatten().map(expr_text));
    }
    // Through locals too.
    let mut seen: Vec<String> = Vec::new();
    let mut i = 0;
    while i < texts.len() {
        for l in crate::config::refs(&texts[i], "local") {
            if let Some((_, e)) = m.locals.iter().find(|(n, _)| *n == l && !seen.contains(&l)) {
                texts.push(expr_text(e));
                seen.push(l);
            }
        }
        i += 1;
    }
    let mut refs: Vec<(String, Vec<Value>)> =
        texts.iter().flat_map(|t| attribute_refs(t)).collect();
    refs.sort_by_key(|(r, p)| (r.clone(), serde_json::to_string(p).unwrap_or_default()));
    refs.dedup();
    refs.into_iter()
        .map(|(r, a)| json!({"resource": r, "attribute": a}))
        .collect()
}

/// The `checks` of a plan: one per `check` block with its status (and the messages of failed
/// assertions), and one passing check per variable with `validation` blocks (a plan with a
/// failing one errors); by address.
pub fn checks(m: &Module, results: &[crate::engine::CheckResult]) -> Vec<Value> {
    let mut all: Vec<Value> = results
        .iter()
        .map(|c| {
            let shown = format!("check.{}", c.name);
            let mut inst = json!({"address": {"to_display": shown}, "status": c.status});
            if !c.problems.is_empty() {
                inst["problems"] = c.problems.iter().map(|p| json!({ "message": p })).collect();
            }
            json!({"address": {"kind": "check", "name": c.name, "to_display": shown}, "status": c.status, "instances": [inst]})
        })
        .collect();
    all.extend(variable_checks(m));
    all.sort_by_key(|c| {
        c["address"]["to_display"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    });
    all
}

fn variable_checks(m: &Module) -> Vec<Value> {
    let mut names: Vec<&str> = m
        .variables
        .iter()
        .filter(|v| !v.validations.is_empty())
        .map(|v| v.name.as_str())
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let shown = format!("var.{n}");
            json!({"address": {"kind": "var", "name": n, "to_display": shown}, "status": "pass",
                   "instances": [{"address": {"to_display": shown}, "status": "pass"}]})
        })
        .collect()
}

/// The state the plan started from, as the real binary's refresh leaves it: the state's outputs
/// with those the plan already knows evaluated anew (with no state yet, only those), or none at
/// all when that is empty.
pub fn prior_state(
    m: &Module,
    prior: &Option<StateFile>,
    outs: &[OutputChange],
    data: &[crate::remote_state::Read],
) -> Option<Value> {
    let known: Map<String, Value> = outs
        .iter()
        .filter_map(|(n, _, _, a, sens)| {
            let a = a.as_ref().filter(|v| !eval::is_unknown(v))?;
            // Evaluated anew, so marked as the configuration now declares it.
            let declared = m.outputs.iter().find(|o| &o.name == n).map(|o| o.sensitive);
            let sens = declared.unwrap_or(*sens);
            Some((
                n.clone(),
                json!({"sensitive": sens, "value": a, "type": crate::engine::output_type(m, n, a)}),
            ))
        })
        .collect();
    if prior.is_none() && known.is_empty() && data.is_empty() {
        return None;
    }
    let mut doc = match prior {
        Some(_) => state_json(prior),
        None => {
            json!({"format_version": "1.0", "terraform_version": crate::ui::VERSION, "values": {"root_module": {}}})
        }
    };
    with_data(&mut doc, data);
    if !known.is_empty() {
        let outputs = &mut doc["values"]["outputs"];
        if !outputs.is_object() {
            *outputs = json!({});
        }
        if let Some(o) = outputs.as_object_mut() {
            o.extend(known);
        }
    }
    Some(doc)
}

/// The data sources as the plan read them, in place of those state recorded (first, as the real
/// binary orders them).
fn with_data(doc: &mut Value, data: &[crate::remote_state::Read]) {
    let fresh = crate::engine::state_json(&Some(crate::state::StateFile {
        resources: crate::remote_state::state_resources(data),
        ..crate::state::StateFile::empty()
    }));
    let fresh = fresh["values"]["root_module"]["resources"]
        .as_array()
        .cloned();
    let root = &mut doc["values"]["root_module"];
    let kept = root["resources"].as_array().cloned().unwrap_or_default();
    let managed = kept.into_iter().filter(|r| r["mode"] != "data");
    let all: Vec<Value> = fresh
        .unwrap_or_default()
        .into_iter()
        .chain(managed)
        .collect();
    if !all.is_empty() {
        root["resources"] = Value::Array(all);
    }
}

/// Adds the keys above and `applyable`/`complete` to a plan document.
pub fn complete_doc(
    doc: &mut Map<String, Value>,
    m: &Module,
    prior: &Option<StateFile>,
    out: &crate::engine::Outcome,
    changed: &[String],
    outs: &[OutputChange],
    applyable: bool,
) {
    let results = &out.checks;
    if let Some(p) = prior_state(m, prior, outs, &out.data) {
        doc.insert("prior_state".into(), p);
    }
    let relevant = relevant_attributes(m, changed, outs);
    if !relevant.is_empty() {
        doc.insert("relevant_attributes".into(), Value::Array(relevant));
    }
    let checks = checks(m, results);
    if !checks.is_empty() {
        doc.insert("checks".into(), Value::Array(checks));
    }
    doc.insert("applyable".into(), json!(applyable));
    doc.insert("complete".into(), json!(true));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_attribute_references() {
        let refs = attribute_refs(
            "\"${terraform_data.a.id}-${terraform_data.b_2.output.x}\" + terraform_data.c + xterraform_data.d.id + terraform_data.n[*].id + terraform_data.z[\"k\"].input",
        );
        let path = |p: &[&str]| p.iter().map(|s| json!(s)).collect::<Vec<_>>();
        assert_eq!(
            refs,
            vec![
                ("terraform_data.a".to_string(), path(&["id"])),
                ("terraform_data.b_2".to_string(), path(&["output", "x"])),
                ("terraform_data.c".to_string(), path(&[])),
                ("terraform_data.n".to_string(), path(&[])),
                ("terraform_data.z[\"k\"]".to_string(), path(&["input"])),
            ]
        );
        let refs = attribute_refs("terraform_data.n.output.pools[0].name");
        assert_eq!(
            refs[0].1,
            vec![json!("output"), json!("pools"), json!(0), json!("name")]
        );
    }
}
