//! A saved plan as users may see it: the changes of `tofu show -json PLANFILE` (resource
//! changes, drift, output changes) with every value the plan marks sensitive replaced by
//! `(sensitive)`. The rest of the plan JSON (variables, prior state, planned values,
//! configuration) carries sensitive values in clear and is not shown. As a second guard,
//! any string holding a value the run was given as sensitive is masked too, whether or not the
//! binary marked it (an older or different `tofu` may not propagate sensitivity).

use serde_json::{Map, Value};

/// What stands in for a sensitive value.
pub const SENSITIVE: &str = "(sensitive)";

/// `value` with every leaf `mask` marks `true` replaced (the shape of `*_sensitive`: `true` for
/// a whole value, or an object/array of the same shape as the value).
fn masked(value: &Value, mask: &Value) -> Value {
    match (value, mask) {
        (_, Value::Bool(true)) => Value::String(SENSITIVE.into()),
        (Value::Object(v), Value::Object(m)) => Value::Object(
            v.iter()
                .map(|(k, x)| {
                    (
                        k.clone(),
                        m.get(k).map_or_else(|| x.clone(), |mk| masked(x, mk)),
                    )
                })
                .collect(),
        ),
        (Value::Array(v), Value::Array(m)) => Value::Array(
            v.iter()
                .enumerate()
                .map(|(i, x)| m.get(i).map_or_else(|| x.clone(), |mk| masked(x, mk)))
                .collect(),
        ),
        _ => value.clone(),
    }
}

/// One change (`change` of a resource or output change) with `before`/`after` masked by
/// `before_sensitive`/`after_sensitive`; a sensitive output change (`"sensitive": true` on a
/// whole output) is masked whole.
fn mask_change(change: &Value) -> Value {
    let Some(obj) = change.as_object() else {
        return change.clone();
    };
    let mut out = obj.clone();
    for (side, mask) in [("before", "before_sensitive"), ("after", "after_sensitive")] {
        if let Some(v) = obj.get(side) {
            let m = obj.get(mask).cloned().unwrap_or(Value::Bool(false));
            out.insert(side.into(), masked(v, &m));
        }
    }
    Value::Object(out)
}

fn mask_resources(list: Option<&Value>) -> Value {
    let items = list.and_then(Value::as_array).cloned().unwrap_or_default();
    Value::Array(
        items
            .into_iter()
            .map(|mut rc| {
                if let Some(c) = rc.get("change").map(mask_change) {
                    rc["change"] = c;
                }
                rc
            })
            .collect(),
    )
}

/// `v` with every string that contains one of `secrets` replaced.
fn scrubbed(v: Value, secrets: &[String]) -> Value {
    match v {
        Value::String(s) if secrets.iter().any(|x| s.contains(x.as_str())) => {
            Value::String(SENSITIVE.into())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(|x| scrubbed(x, secrets)).collect()),
        Value::Object(o) => Value::Object(
            o.into_iter()
                .map(|(k, x)| (k, scrubbed(x, secrets)))
                .collect(),
        ),
        other => other,
    }
}

/// The changes of a plan (`tofu show -json` output), masked; `secrets` are the run's sensitive
/// values (too short ones, under 4 characters, are not matched).
pub fn masked_changes(plan: &Value, secrets: &[String]) -> Value {
    let secrets: Vec<String> = secrets.iter().filter(|s| s.len() >= 4).cloned().collect();
    scrubbed(changes(plan), &secrets)
}

fn changes(plan: &Value) -> Value {
    let mut out = Map::new();
    for k in [
        "format_version",
        "terraform_version",
        "errored",
        "applyable",
        "complete",
    ] {
        if let Some(v) = plan.get(k) {
            out.insert(k.into(), v.clone());
        }
    }
    out.insert(
        "resource_changes".into(),
        mask_resources(plan.get("resource_changes")),
    );
    out.insert(
        "resource_drift".into(),
        mask_resources(plan.get("resource_drift")),
    );
    let outputs = plan
        .get("output_changes")
        .and_then(Value::as_object)
        .map(|o| o.iter().map(|(k, c)| (k.clone(), mask_change(c))).collect())
        .unwrap_or_default();
    out.insert("output_changes".into(), Value::Object(outputs));
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sensitive_values_are_masked_and_the_rest_is_left_out() {
        let plan = json!({
            "format_version": "1.2",
            "variables": {"password": {"value": "hunter2-secret"}},
            "prior_state": {"values": {"x": "hunter2-secret"}},
            "resource_changes": [{
                "address": "terraform_data.db",
                "change": {
                    "actions": ["create"],
                    "before": null,
                    "after": {"input": {"password": "hunter2-secret", "region": "eu"}, "tags": ["a", "hunter2-secret"]},
                    "after_unknown": {"id": true},
                    "after_sensitive": {"input": {"password": true}, "tags": [false, true]},
                    "before_sensitive": false
                }
            }],
            "output_changes": {
                "pw": {"actions": ["create"], "before": null, "after": "hunter2-secret", "after_sensitive": true},
                "region": {"actions": ["create"], "before": null, "after": "eu", "after_sensitive": false},
                "unmarked": {"actions": ["create"], "before": null, "after": "x-also-s3cret-y", "after_sensitive": false}
            }
        });
        let m = masked_changes(&plan, &["also-s3cret".to_string()]);
        let text = m.to_string();
        assert!(!text.contains("hunter2-secret"), "{text}");
        let after = &m["resource_changes"][0]["change"]["after"];
        assert_eq!(after["input"]["password"], SENSITIVE);
        assert_eq!(after["input"]["region"], "eu");
        assert_eq!(after["tags"], json!(["a", SENSITIVE]));
        assert_eq!(
            m["resource_changes"][0]["change"]["after_unknown"]["id"],
            true
        );
        assert_eq!(m["output_changes"]["pw"]["after"], SENSITIVE);
        assert_eq!(m["output_changes"]["region"]["after"], "eu");
        assert_eq!(
            m["output_changes"]["unmarked"]["after"], SENSITIVE,
            "a run's secret, unmarked"
        );
        assert!(m.get("variables").is_none() && m.get("prior_state").is_none());
    }
}
