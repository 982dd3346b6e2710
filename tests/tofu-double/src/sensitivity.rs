//! Sensitivity of resource attributes, as the real binary marks it: a part of `input` or
//! `triggers_replace` whose configuration refers to a sensitive variable (directly or through
//! locals) is sensitive, down to the attribute or element written with it; `output`, computed
//! by the provider, carries no mark. Marks are kept as mirrors of the value (`true` where
//! sensitive) and stored in state as `sensitive_attributes` paths. `sensitive(x)` marks what it
//! wraps, `nonsensitive(x)` removes the mark, and `issensitive(x)` is answered from the
//! configuration before anything is evaluated.

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

/// True if `text` (with its `nonsensitive(...)` parts removed) calls `sensitive(...)`.
pub fn calls_sensitive(text: &str) -> bool {
    !call_starts(text, "sensitive").is_empty()
}

/// Where each call to the function `name` starts (the name not part of a longer identifier).
fn call_starts(text: &str, name: &str) -> Vec<usize> {
    let pat = format!("{name}(");
    let starts = text.match_indices(&pat).map(|(i, _)| i);
    starts
        .filter(|&i| {
            let before = text[..i].chars().next_back();
            !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.')
        })
        .collect()
}

/// `text` without its `nonsensitive(...)` calls: what they return carries no mark.
pub fn without_nonsensitive(text: &str) -> String {
    let mut out = text.to_string();
    while let Some(&start) = call_starts(&out, "nonsensitive").first() {
        let open = start + "nonsensitive".len();
        let mut depth = 0;
        let mut end = out.len();
        for (i, c) in out[open..].char_indices() {
            depth += match c {
                '(' => 1,
                ')' => -1,
                _ => 0,
            };
            if depth == 0 {
                end = open + i + 1;
                break;
            }
        }
        out.replace_range(start..end, "null");
    }
    out
}

/// The name `issensitive` calls are given once answered from the configuration: a call the
/// stand-in could not reach (inside a string template, a variable validation) stays
/// `issensitive` and fails loudly.
pub const ISSENSITIVE_PLAIN: &str = "issensitive_plain";

/// Replaces every `issensitive(x)` whose argument is sensitive by `true`, and the others by a
/// call that is false for a known value and unknown for an unknown one, as OpenTofu answers.
pub fn answer_issensitive(m: &mut Module) {
    let answer = |e: &mut Expression, m: &Module| {
        let Expression::FuncCall(f) = e else { return };
        if f.name.namespace.is_empty() && f.name.name.as_str() == "issensitive" && f.args.len() == 1
        {
            if m.refers_to_sensitive(&expr_text(&f.args[0])) {
                *e = Expression::Bool(true);
            } else {
                f.name = hcl::expr::FuncName::new(hcl::Identifier::unchecked(ISSENSITIVE_PLAIN));
            }
        }
    };
    let mut locals = std::mem::take(&mut m.locals);
    m.locals = locals.clone();
    for (_, e) in locals.iter_mut() {
        visit(e, &mut |x| answer(x, m));
    }
    m.locals = locals;
    let mut outputs = std::mem::take(&mut m.outputs);
    for o in outputs.iter_mut() {
        visit(&mut o.value, &mut |x| answer(x, m));
    }
    m.outputs = outputs;
    let mut resources = std::mem::take(&mut m.resources);
    for r in resources.iter_mut() {
        let exprs = [
            &mut r.input,
            &mut r.triggers_replace,
            &mut r.count,
            &mut r.for_each,
        ];
        let provisioners = r.provisioners.iter_mut().flat_map(|p| {
            let optional = [&mut p.environment, &mut p.working_dir, &mut p.interpreter];
            std::iter::once(&mut p.command).chain(optional.into_iter().flatten())
        });
        for e in exprs.into_iter().flatten().chain(provisioners) {
            visit(e, &mut |x| answer(x, m));
        }
    }
    m.resources = resources;
    let mut checks = std::mem::take(&mut m.checks);
    for (cond, message) in checks.iter_mut().flat_map(|(_, a)| a.iter_mut()) {
        visit(cond, &mut |x| answer(x, m));
        visit(message, &mut |x| answer(x, m));
    }
    m.checks = checks;
}

/// Calls `f` on every expression inside `e`, innermost first.
fn visit(e: &mut Expression, f: &mut dyn FnMut(&mut Expression)) {
    match e {
        Expression::Array(a) => a.iter_mut().for_each(|x| visit(x, f)),
        Expression::Object(o) => o.values_mut().for_each(|x| visit(x, f)),
        Expression::Parenthesis(x) => visit(x, f),
        Expression::FuncCall(c) => c.args.iter_mut().for_each(|x| visit(x, f)),
        Expression::Traversal(t) => visit(&mut t.expr, f),
        Expression::Conditional(c) => {
            visit(&mut c.cond_expr, f);
            visit(&mut c.true_expr, f);
            visit(&mut c.false_expr, f);
        }
        Expression::Operation(op) => match op.as_mut() {
            hcl::Operation::Unary(u) => visit(&mut u.expr, f),
            hcl::Operation::Binary(b) => {
                visit(&mut b.lhs_expr, f);
                visit(&mut b.rhs_expr, f);
            }
        },
        Expression::ForExpr(x) => {
            visit(&mut x.collection_expr, f);
            visit(&mut x.value_expr, f);
            if let Some(k) = x.key_expr.as_mut() {
                visit(k, f);
            }
            if let Some(c) = x.cond_expr.as_mut() {
                visit(c, f);
            }
        }
        _ => {}
    }
    f(e);
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

    #[test]
    fn sensitive_calls_mark_and_nonsensitive_calls_unmark() {
        assert!(calls_sensitive("upper(sensitive(\"x\"))"));
        assert!(!calls_sensitive("issensitive(x) && nonsensitive(y)"));
        assert_eq!(
            without_nonsensitive("[nonsensitive(f(var.a)), var.b, nonsensitive(var.c)]"),
            "[null, var.b, null]"
        );
        let mut m = module("variable \"pw\" {\n  sensitive = true\n  default = \"h\"\n}\noutput \"o\" {\n  value = [issensitive(var.pw), issensitive(nonsensitive(var.pw))]\n}\n");
        answer_issensitive(&mut m);
        let text: String = expr_text(&m.outputs[0].value).split_whitespace().collect();
        assert_eq!(text, "[true,issensitive_plain(nonsensitive(var.pw))]");
    }
}
