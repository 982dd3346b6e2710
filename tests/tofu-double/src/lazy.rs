//! What hcl-rs cannot do by itself: functions whose arguments are evaluated lazily (`try`,
//! `can`), resolved by rewriting the expression before it is evaluated, and the static check that
//! every function a module calls exists, failing as OpenTofu does (`Call to unknown function`)
//! rather than evaluating to anything.

use crate::eval::{self, UNKNOWN};
use crate::ui::Diag;
use hcl::eval::Context;
use hcl::template::{Directive, Element, Template};
use hcl::{Block, Body, Expression};
use serde_json::Value;

/// Replaces every `try(...)` and `can(...)` outside `for` expressions (and in templates without
/// directives) by the value it stands for, and an operation, a condition or a (non-structural)
/// function call over a value not wholly known by an unknown value, as OpenTofu's result is. Calls that cannot be resolved here (all of `try`'s arguments fail, or the call
/// uses iteration variables) are left for the eager fallbacks in `eval::declare_functions`, which
/// fail loudly instead of choosing a wrong value.
pub fn resolve(e: &Expression, ctx: &Context) -> Expression {
    let go = |x: &Expression| resolve(x, ctx);
    match e {
        Expression::FuncCall(f) if f.name.namespace.is_empty() && !f.expand_final => {
            let args: Vec<Expression> = f.args.iter().map(go).collect();
            match f.name.name.as_str() {
                "try" => try_first(&args, ctx).unwrap_or_else(|| call_with(f, args)),
                "can" if args.len() == 1 => can(&args[0], ctx),
                n if !STRUCTURAL.contains(&n) && args.iter().any(|a| unknown(a, ctx)) => {
                    Expression::String(UNKNOWN.into())
                }
                _ => call_with(f, args),
            }
        }
        Expression::Array(a) => Expression::Array(a.iter().map(go).collect()),
        Expression::Object(o) => {
            Expression::Object(o.iter().map(|(k, v)| (k.clone(), go(v))).collect())
        }
        Expression::Parenthesis(x) => Expression::Parenthesis(Box::new(go(x))),
        Expression::Traversal(t) => {
            let mut t = t.clone();
            t.expr = go(&t.expr);
            Expression::Traversal(t)
        }
        Expression::Conditional(c) => {
            let mut c = c.clone();
            c.cond_expr = go(&c.cond_expr);
            if unknown(&c.cond_expr, ctx) {
                return Expression::String(UNKNOWN.into());
            }
            c.true_expr = go(&c.true_expr);
            c.false_expr = go(&c.false_expr);
            Expression::Conditional(c)
        }
        Expression::Operation(op) => {
            let operands: Vec<Expression> = match op.as_ref() {
                hcl::Operation::Unary(u) => vec![go(&u.expr)],
                hcl::Operation::Binary(b) => vec![go(&b.lhs_expr), go(&b.rhs_expr)],
            };
            if operands.iter().any(|x| unknown(x, ctx)) {
                return Expression::String(UNKNOWN.into());
            }
            let mut operands = operands.into_iter();
            let mut next = || operands.next().unwrap_or(Expression::Null);
            Expression::Operation(Box::new(match op.as_ref() {
                hcl::Operation::Unary(u) => {
                    hcl::Operation::Unary(hcl::UnaryOp::new(u.operator, next()))
                }
                hcl::Operation::Binary(b) => {
                    hcl::Operation::Binary(hcl::BinaryOp::new(next(), b.operator, next()))
                }
            }))
        }
        Expression::TemplateExpr(t) if calls_lazy(t) => {
            template(t, ctx).unwrap_or_else(|| e.clone())
        }
        other => other.clone(),
    }
}

fn calls_lazy(t: &hcl::expr::TemplateExpr) -> bool {
    let text = match t {
        hcl::expr::TemplateExpr::QuotedString(s) => s.as_str(),
        hcl::expr::TemplateExpr::Heredoc(h) => h.template.as_str(),
    };
    text.contains("try(") || text.contains("can(")
}

/// A template without directives or strip markers, rendered here so that `try` and `can` in its
/// interpolations are resolved; `None` leaves it to hcl-rs.
fn template(t: &hcl::expr::TemplateExpr, ctx: &Context) -> Option<Expression> {
    let parsed = Template::from_expr(t).ok()?;
    let mut out = String::new();
    for el in parsed.elements() {
        match el {
            Element::Literal(l) => out.push_str(l),
            Element::Interpolation(i) if i.strip == hcl::template::Strip::None => {
                match eval::eval(&i.expr, ctx).ok()? {
                    Value::String(s) => out.push_str(&s),
                    Value::Number(n) => out.push_str(&n.to_string()),
                    Value::Bool(b) => out.push_str(&b.to_string()),
                    _ => return None,
                }
            }
            _ => return None,
        }
    }
    Some(Expression::String(out))
}

/// Functions whose result keeps the shape of their arguments, so that an unknown element stays
/// an unknown element of a known result (`length` of a list of unknowns is known). Any other
/// function with an unknown argument has an unknown result, as in OpenTofu.
const STRUCTURAL: &[&str] = &[
    "chunklist",
    "coalescelist",
    "concat",
    "element",
    "flatten",
    "keys",
    "length",
    "lookup",
    "merge",
    "one",
    "reverse",
    "slice",
    "tolist",
    "tomap",
    "values",
    "zipmap",
];

/// True when an expression evaluates to a value that is not wholly known.
fn unknown(e: &Expression, ctx: &Context) -> bool {
    eval::eval(e, ctx).is_ok_and(|v| eval::is_unknown(&v))
}

fn call_with(f: &hcl::expr::FuncCall, args: Vec<Expression>) -> Expression {
    let mut f = f.clone();
    f.args = args;
    Expression::FuncCall(Box::new(f))
}

/// The first argument that evaluates, as a literal; `None` when none does.
fn try_first(args: &[Expression], ctx: &Context) -> Option<Expression> {
    args.iter()
        .find_map(|a| eval::eval(a, ctx).ok())
        .map(|v| Expression::from(eval::to_hcl(&v)))
}

/// `true` when the argument evaluates, `false` when it fails, unknown when it is unknown.
fn can(arg: &Expression, ctx: &Context) -> Expression {
    match eval::eval(arg, ctx) {
        Ok(v) if eval::is_unknown(&v) => Expression::String(UNKNOWN.into()),
        Ok(_) => Expression::Bool(true),
        Err(_) => Expression::Bool(false),
    }
}

/// True when any reference in `e` (a variable or traversal, in templates too) evaluates to a
/// value that is not wholly known: hcl-rs knows no unknowns, so `x == 3` with `x` unknown
/// would otherwise evaluate to `false` where OpenTofu's result is unknown.
pub fn touches_unknown(e: &Expression, ctx: &Context) -> bool {
    let go = |x: &Expression| touches_unknown(x, ctx);
    match e {
        Expression::Variable(_) | Expression::Traversal(_) => {
            eval::eval(e, ctx).is_ok_and(|v| eval::is_unknown(&v))
                || matches!(e, Expression::Traversal(t) if go(&t.expr))
        }
        Expression::FuncCall(f) => f.args.iter().any(go),
        Expression::Array(a) => a.iter().any(go),
        Expression::Object(o) => o.values().any(go),
        Expression::Parenthesis(x) => go(x),
        Expression::Conditional(c) => [&c.cond_expr, &c.true_expr, &c.false_expr]
            .into_iter()
            .any(go),
        Expression::Operation(op) => match op.as_ref() {
            hcl::Operation::Unary(u) => go(&u.expr),
            hcl::Operation::Binary(b) => go(&b.lhs_expr) || go(&b.rhs_expr),
        },
        Expression::TemplateExpr(t) => Template::from_expr(t).is_ok_and(|t| {
            t.elements()
                .iter()
                .any(|el| matches!(el, Element::Interpolation(i) if go(&i.expr)))
        }),
        _ => false,
    }
}

/// A `templatestring` call whose template is written in place (OpenTofu refuses it while
/// validating); collected with the unknown names.
const LITERAL_TEMPLATE: &str = "\0templatestring";

/// `Call to unknown function` for every call in the file's body to a function the stand-in does
/// not implement (OpenTofu reports these while loading, before anything is evaluated), and
/// `templatestring` over a literal template.
pub fn unknown_functions(body: &Body) -> Vec<Diag> {
    let mut names = Vec::new();
    walk_body(body, &mut names);
    let mut diags: Vec<Diag> = Vec::new();
    for n in names {
        let d = if n == LITERAL_TEMPLATE {
            Diag::error("Invalid function argument", "Invalid value for \"template\" parameter: invalid template expression: templatestring is only for rendering templates retrieved dynamically from elsewhere, and so does not support providing a literal template; consider using a template string expression instead.")
        } else {
            Diag::error(
                "Call to unknown function",
                format!("There is no function named \"{n}\"."),
            )
        };
        if !diags.iter().any(|x| x.detail == d.detail) {
            diags.push(d);
        }
    }
    diags
}

fn walk_body(body: &Body, names: &mut Vec<String>) {
    for a in body.attributes() {
        walk_expr(a.expr(), names);
    }
    for b in body.blocks() {
        walk_block(b, names);
    }
}

fn walk_block(b: &Block, names: &mut Vec<String>) {
    if b.identifier() != "variable" {
        return walk_body(b.body(), names);
    }
    // A variable's `type` is a type constraint (`map(string)`), not a function call.
    for a in b.body().attributes().filter(|a| a.key() != "type") {
        walk_expr(a.expr(), names);
    }
    for inner in b.body().blocks() {
        walk_block(inner, names);
    }
}

fn walk_expr(e: &Expression, names: &mut Vec<String>) {
    let mut go = |x: &Expression| walk_expr(x, names);
    match e {
        Expression::FuncCall(f) => {
            let name = if f.name.namespace.is_empty() {
                f.name.name.to_string()
            } else {
                f.name.to_string()
            };
            let literal = matches!(
                f.args.first(),
                Some(Expression::String(_) | Expression::TemplateExpr(_))
            );
            if name == "templatestring" && literal {
                names.push(LITERAL_TEMPLATE.into());
            } else if !eval::FUNCTIONS.contains(&name.as_str()) {
                names.push(name);
            }
            f.args.iter().for_each(|a| walk_expr(a, names));
        }
        Expression::Array(a) => a.iter().for_each(go),
        Expression::Object(o) => o.values().for_each(go),
        Expression::Parenthesis(x) => go(x),
        Expression::Traversal(t) => go(&t.expr),
        Expression::Conditional(c) => [&c.cond_expr, &c.true_expr, &c.false_expr]
            .into_iter()
            .for_each(go),
        Expression::Operation(op) => match op.as_ref() {
            hcl::Operation::Unary(u) => go(&u.expr),
            hcl::Operation::Binary(b) => {
                go(&b.lhs_expr);
                go(&b.rhs_expr);
            }
        },
        Expression::ForExpr(f) => {
            let parts = [
                Some(&f.collection_expr),
                f.key_expr.as_ref(),
                Some(&f.value_expr),
            ];
            parts
                .into_iter()
                .flatten()
                .chain(f.cond_expr.as_ref())
                .for_each(go);
        }
        Expression::TemplateExpr(t) => {
            if let Ok(t) = Template::from_expr(t) {
                walk_template(&t, names);
            }
        }
        _ => {}
    }
}

fn walk_template(t: &Template, names: &mut Vec<String>) {
    for el in t.elements() {
        match el {
            Element::Literal(_) => {}
            Element::Interpolation(i) => walk_expr(&i.expr, names),
            Element::Directive(d) => match d.as_ref() {
                Directive::If(i) => {
                    walk_expr(&i.cond_expr, names);
                    walk_template(&i.true_template, names);
                    if let Some(f) = &i.false_template {
                        walk_template(f, names);
                    }
                }
                Directive::For(f) => {
                    walk_expr(&f.collection_expr, names);
                    walk_template(&f.template, names);
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unknown_in(src: &str) -> Vec<String> {
        let body = hcl::parse(src).unwrap();
        unknown_functions(&body)
            .into_iter()
            .map(|d| format!("{}: {}", d.summary, d.detail))
            .collect()
    }

    fn ev(src: &str) -> Result<Value, String> {
        let body = hcl::parse(&format!("v = {src}\n")).unwrap();
        let e = body.attributes().next().unwrap().expr().clone();
        let mut ctx = Context::new();
        ctx.declare_var("local", eval::to_hcl(&serde_json::json!({"m": {"a": 1}})));
        eval::declare_functions(&mut ctx);
        eval::eval(&e, &ctx)
    }

    /// Expected values are what Terraform 1.11.4 printed for the same expressions.
    #[test]
    fn try_and_can_evaluate_lazily() {
        use serde_json::json;
        assert_eq!(ev(r#"try(local.m.zz, "fb")"#), Ok(json!("fb")));
        assert_eq!(ev(r#"try(local.m.a, "fb")"#), Ok(json!(1)));
        assert_eq!(ev(r#""x-${try(local.m.zz, "fb")}""#), Ok(json!("x-fb")));
        assert_eq!(ev(r#"can(local.m.zz) ? "yes" : "no""#), Ok(json!("no")));
        assert_eq!(ev(r#"can(tonumber("x"))"#), Ok(json!(false)));
        assert_eq!(ev(r#"try(tonumber("x"), "def")"#), Ok(json!("def")));
        assert_eq!(
            ev(r#"can(cidrsubnet("10.0.0.0/30", 4, 1))"#),
            Ok(json!(false))
        );
        assert!(
            ev("try(local.m.zz, local.m.yy)").is_err(),
            "no argument succeeds"
        );
        // Inside `for` the arguments use iteration variables: a loud error, never a guess.
        assert!(ev(r#"[for k, v in local.m : try(v.x, k)]"#).is_err());
    }

    #[test]
    fn unknown_functions_are_found_everywhere() {
        let src = r#"
variable "m" { type = map(list(string)) }
output "a" { value = nosuchfn(1) }
output "b" { value = "x-${upper(other_fn())}" }
locals { c = [for x in [1] : yamlencode(x)] }
output "d" { value = upper(try(cidrhost("10.0.0.0/8", 1), "")) }
"#;
        assert_eq!(
            unknown_in(src),
            vec![
                "Call to unknown function: There is no function named \"nosuchfn\".",
                "Call to unknown function: There is no function named \"other_fn\".",
                "Call to unknown function: There is no function named \"yamlencode\".",
            ]
        );
    }
}
