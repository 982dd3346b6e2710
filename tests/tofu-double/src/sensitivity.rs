//! Sensitivity of resource attributes, as the real binary marks it: a part of `input` or
//! `triggers_replace` whose configuration refers to a sensitive variable (directly or through
//! locals) is sensitive, down to the attribute or element written with it; `output`, computed
//! by the provider, carries no mark. Marks are kept as mirrors of the value (`true` where
//! sensitive) and stored in state as `sensitive_attributes` paths.

use crate::config::{expr_text, Module};
use crate::eval::sensitive_mirror;
use hcl::expr::{ObjectKey, TraversalOperator};
use hcl::Expression;
use serde_json::{json, Map, Value};

/// The mirror of `v` with `true` where its configuration `e` is sensitive.
pub fn marks_of(m: &Module, e: &Expression, v: &Value) -> Value {
    match (e, v) {
        (Expression::Parenthesis(x), _) => marks_of(m, x, v),
        (Expression::Object(o), Value::Object(vo)) => {
            let mut out = Map::new();
            for (k, x) in o {
                let key = match k {
                    ObjectKey::Identifier(i) => i.to_string(),
                    ObjectKey::Expression(Expression::String(s)) => s.clone(),
                    _ => return whole(m, e, v),
                };
                let mark = vo.get(&key).map(|xv| marks_of(m, x, xv));
                if let Some(mark) = mark.filter(|mk| mk != &Value::Bool(false)) {
                    out.insert(key, mark);
                }
            }
            Value::Object(out)
        }
        (Expression::Array(a), Value::Array(va)) if a.len() == va.len() => {
            Value::Array(a.iter().zip(va).map(|(x, xv)| marks_of(m, x, xv)).collect())
        }
        (Expression::Traversal(t), _) => match local_name(t) {
            Some(l) => match m.locals.iter().find(|(n, _)| *n == l) {
                Some((_, le)) => marks_of(m, le, v),
                None => whole(m, e, v),
            },
            None => whole(m, e, v),
        },
        _ => whole(m, e, v),
    }
}

fn whole(m: &Module, e: &Expression, v: &Value) -> Value {
    if m.refers_to_sensitive(&expr_text(e)) {
        Value::Bool(true)
    } else {
        sensitive_mirror(v)
    }
}

/// `local.NAME` with nothing after it.
fn local_name(t: &hcl::expr::Traversal) -> Option<String> {
    match (&t.expr, t.operators.as_slice()) {
        (Expression::Variable(v), [TraversalOperator::GetAttr(name)]) if v.as_str() == "local" => {
            Some(name.to_string())
        }
        _ => None,
    }
}

/// True if a mirror marks anything.
pub fn any(mark: &Value) -> bool {
    match mark {
        Value::Bool(b) => *b,
        Value::Array(a) => a.iter().any(any),
        Value::Object(o) => o.values().any(any),
        _ => false,
    }
}

/// The state's `sensitive_attributes` paths for marks on `attr`.
pub fn paths(attr: &str, mark: &Value) -> Vec<Value> {
    fn go(mark: &Value, path: &mut Vec<Value>, out: &mut Vec<Value>) {
        match mark {
            Value::Bool(true) => out.push(Value::Array(path.clone())),
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    path.push(json!({"type": "index", "value": {"value": i, "type": "number"}}));
                    go(x, path, out);
                    path.pop();
                }
            }
            Value::Object(o) => {
                for (k, x) in o {
                    path.push(json!({"type": "get_attr", "value": k}));
                    go(x, path, out);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    go(
        mark,
        &mut vec![json!({"type": "get_attr", "value": attr})],
        &mut out,
    );
    out
}

/// The marks on `attr` (whose value is `v`) that state paths record; `Null` when none.
pub fn from_paths(paths: &[Value], attr: &str, v: &Value) -> Value {
    let mut mark = sensitive_mirror(v);
    let mut found = false;
    for p in paths.iter().filter_map(Value::as_array) {
        if p.first().and_then(|s| s.get("value")) == Some(&json!(attr)) {
            set_true(&mut mark, v, &p[1..]);
            found = true;
        }
    }
    if found {
        mark
    } else {
        Value::Null
    }
}

fn set_true(mark: &mut Value, v: &Value, path: &[Value]) {
    let Some((step, rest)) = path.split_first() else {
        *mark = Value::Bool(true);
        return;
    };
    let key = &step["value"];
    match (mark, key) {
        (Value::Object(o), Value::String(k)) => {
            let sub = v.get(k).cloned().unwrap_or(Value::Null);
            let slot = o.entry(k.clone()).or_insert_with(|| sensitive_mirror(&sub));
            set_true(slot, &sub, rest);
        }
        (Value::Array(a), Value::Object(i)) => {
            let n = i.get("value").and_then(Value::as_u64).unwrap_or(0) as usize;
            let sub = v.get(n).cloned().unwrap_or(Value::Null);
            if let Some(slot) = a.get_mut(n) {
                set_true(slot, &sub, rest);
            }
        }
        (slot, _) => *slot = Value::Bool(true),
    }
}

/// Overlays marks on a mirror: where a mark exists it wins.
pub fn overlay(mirror: &mut Value, attr: &str, mark: &Value) {
    if !mark.is_null() {
        if let Some(o) = mirror.as_object_mut() {
            o.insert(attr.to_string(), mark.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(src: &str) -> Module {
        crate::config::load(
            std::path::Path::new("."),
            vec![("main.tf".into(), src.into())],
        )
        .unwrap_or_else(|_| panic!("loads"))
    }

    /// As Terraform 1.11.4 marks the same configuration.
    #[test]
    fn marks_follow_the_configuration_down_to_the_attribute() {
        let m = module("variable \"pw\" {\n  sensitive = true\n  default = \"h\"\n}\nlocals {\n  cfg = { password = var.pw, region = \"eu\" }\n}\nresource \"terraform_data\" \"db\" {\n  input = { password = var.pw, region = \"eu\", nested = { inner = var.pw, plain = 1 }, list = [var.pw, \"x\"], via = local.cfg }\n}\n");
        let e = m.resources[0].input.clone().unwrap();
        let v = json!({"password": "h", "region": "eu", "nested": {"inner": "h", "plain": 1}, "list": ["h", "x"], "via": {"password": "h", "region": "eu"}});
        let mark = marks_of(&m, &e, &v);
        assert_eq!(
            mark,
            json!({"list": [true, false], "nested": {"inner": true}, "password": true, "via": {"password": true}})
        );
        let p = paths("input", &mark);
        assert!(p.contains(&json!([{"type": "get_attr", "value": "input"}, {"type": "get_attr", "value": "list"}, {"type": "index", "value": {"value": 0, "type": "number"}}])));
        assert_eq!(from_paths(&p, "input", &v), mark);
        assert_eq!(from_paths(&p, "triggers_replace", &v), Value::Null);
    }
}
