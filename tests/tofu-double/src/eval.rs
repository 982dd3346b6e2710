//! Expression evaluation: an hcl-rs `Context` with `var`, `local`, `terraform_data`, `path`,
//! `terraform`, `count`/`each`/`self`, a set of OpenTofu's built-in functions, unknown values
//! ("known after apply") and cty type names for state and outputs.

use base64::Engine;
use hcl::eval::{Context, Evaluate, FuncArgs, FuncDef, ParamType};
use hcl::{Expression, Value as HValue};
use serde_json::{json, Value};

/// Marks a value that is only known after apply. Any string containing it is unknown.
pub const UNKNOWN: &str = "\u{1b}(known after apply)\u{1b}";

/// A value known only after apply whose type is not known either (a changing resource's
/// whole `output`): unknown like `UNKNOWN`, and shown as the real binary shows such a value.
pub const UNKNOWN_DYNAMIC: &str = "\u{1b}(known after apply)\u{1b}dynamic";

pub fn to_json(v: HValue) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

pub fn to_hcl(v: &Value) -> HValue {
    hcl::to_value(v).unwrap_or(HValue::Null)
}

/// True if any part of `v` is unknown.
pub fn is_unknown(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains(UNKNOWN),
        Value::Array(a) => a.iter().any(is_unknown),
        Value::Object(o) => o.values().any(is_unknown),
        _ => false,
    }
}

/// A value of the same shape as `v` whose every leaf is unknown (so traversals like
/// `terraform_data.x.output.name` still evaluate, to an unknown).
pub fn unknown_like(v: &Value) -> Value {
    match v {
        Value::Array(a) => Value::Array(a.iter().map(unknown_like).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), unknown_like(x)))
                .collect(),
        ),
        _ => Value::String(UNKNOWN.to_string()),
    }
}

/// A reference to a changing resource's whole `output` (`terraform_data.x.output`, with an
/// instance key or not) is one unknown value while planning, as the real binary's dynamic
/// attribute is; the stand-in gives it a shape only so that deeper traversals evaluate.
pub fn whole_output_unknown(e: &Expression, v: Value) -> Value {
    let compound = matches!(v, Value::Array(_) | Value::Object(_));
    if !compound || !is_unknown(&v) || v != unknown_like(&v) {
        return v;
    }
    let Expression::Traversal(t) = e else {
        return v;
    };
    // `terraform_data.NAME.output...` or `terraform_data.NAME[KEY].output...`.
    let is_output = |op: &hcl::expr::TraversalOperator| matches!(op, hcl::expr::TraversalOperator::GetAttr(a) if a.as_str() == "output");
    let on_output = match t.operators.as_slice() {
        [_, out, ..] if is_output(out) => true,
        [_, hcl::expr::TraversalOperator::Index(_), out, ..] => is_output(out),
        [_, hcl::expr::TraversalOperator::LegacyIndex(_), out, ..] => is_output(out),
        _ => false,
    };
    let of_resource = matches!(&t.expr, Expression::Variable(r) if r.as_str() == "terraform_data");
    if on_output && of_resource {
        Value::String(UNKNOWN_DYNAMIC.to_string())
    } else {
        v
    }
}

/// Splits a planned value into its known part and the `after_unknown` mirror, as `jsonplan`
/// does: unknown object attributes are left out of the known part (unknown list elements become
/// `null`); the mirror has `true` at each unknown leaf and `false` at each known one, arrays
/// element by element, objects without their `false` entries.
pub fn split_unknown(v: &Value) -> (Value, Value) {
    fn go(v: &Value) -> (Option<Value>, Value) {
        match v {
            Value::String(s) if s.contains(UNKNOWN) => (None, Value::Bool(true)),
            Value::Array(a) => {
                let (vals, unk): (Vec<_>, Vec<_>) = a.iter().map(go).unzip();
                let vals = vals.into_iter().map(|x| x.unwrap_or(Value::Null));
                (Some(Value::Array(vals.collect())), Value::Array(unk))
            }
            Value::Object(o) => {
                let mut vals = serde_json::Map::new();
                let mut unk = serde_json::Map::new();
                for (k, x) in o {
                    let (a, b) = go(x);
                    if let Some(a) = a {
                        vals.insert(k.clone(), a);
                    }
                    if b != Value::Bool(false) {
                        unk.insert(k.clone(), b);
                    }
                }
                (Some(Value::Object(vals)), Value::Object(unk))
            }
            other => (Some(other.clone()), Value::Bool(false)),
        }
    }
    let (a, b) = go(v);
    (a.unwrap_or(Value::Null), b)
}

/// The `sensitive_values` / `after_sensitive` mirror of a value in which nothing is sensitive:
/// `false` at each leaf, arrays element by element, objects without their `false` entries.
pub fn sensitive_mirror(v: &Value) -> Value {
    match v {
        Value::Array(a) => Value::Array(a.iter().map(sensitive_mirror).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), sensitive_mirror(x)))
                .filter(|(_, m)| m != &Value::Bool(false))
                .collect(),
        ),
        _ => Value::Bool(false),
    }
}

/// The cty type of a JSON value as OpenTofu writes it in state and outputs.
pub fn cty_type(v: &Value) -> Value {
    match v {
        Value::Null => json!("dynamic"),
        Value::Bool(_) => json!("bool"),
        Value::Number(_) => json!("number"),
        Value::String(_) => json!("string"),
        Value::Array(a) => json!(["tuple", a.iter().map(cty_type).collect::<Vec<_>>()]),
        Value::Object(o) => {
            let m: serde_json::Map<String, Value> =
                o.iter().map(|(k, x)| (k.clone(), cty_type(x))).collect();
            json!(["object", m])
        }
    }
}

/// Evaluates an expression that may not refer to anything (backend blocks).
pub fn eval_static(e: &Expression) -> Result<Value, String> {
    let ctx = Context::new();
    e.evaluate(&ctx).map(to_json).map_err(|e| e.to_string())
}

/// Builds an evaluation context from the scopes a module can see.
pub struct Scope<'a> {
    pub vars: &'a serde_json::Map<String, Value>,
    pub locals: &'a serde_json::Map<String, Value>,
    pub resources: &'a serde_json::Map<String, Value>,
    pub module_dir: &'a str,
    pub cwd: &'a str,
    pub workspace: &'a str,
}

impl Scope<'_> {
    pub fn context(&self) -> Context<'static> {
        let mut ctx = Context::new();
        ctx.declare_var("var", to_hcl(&Value::Object(self.vars.clone())));
        ctx.declare_var("local", to_hcl(&Value::Object(self.locals.clone())));
        let mut resources = self.resources.clone();
        if let Some(data) = resources.remove(crate::remote_state::DATA_KEY) {
            ctx.declare_var("data", to_hcl(&data));
        }
        ctx.declare_var("terraform_data", to_hcl(&Value::Object(resources)));
        ctx.declare_var(
            "path",
            to_hcl(&json!({"module": self.module_dir, "root": self.module_dir, "cwd": self.cwd})),
        );
        ctx.declare_var("terraform", to_hcl(&json!({"workspace": self.workspace})));
        declare_functions(&mut ctx);
        ctx
    }
}

/// Evaluates an expression, `try` and `can` resolved first (their arguments are lazy).
pub fn eval(e: &Expression, ctx: &Context) -> Result<Value, String> {
    crate::lazy::resolve(e, ctx)
        .evaluate(ctx)
        .map(to_json)
        .map_err(|e| e.to_string())
}

/// Evaluates all locals that can be evaluated (they may refer to each other in any order).
pub fn eval_locals(
    locals: &[(String, Expression)],
    scope_vars: &serde_json::Map<String, Value>,
    resources: &serde_json::Map<String, Value>,
    cwd: &str,
    workspace: &str,
) -> serde_json::Map<String, Value> {
    let mut done = serde_json::Map::new();
    loop {
        let mut progressed = false;
        for (n, e) in locals {
            if done.contains_key(n) {
                continue;
            }
            let scope = Scope {
                vars: scope_vars,
                locals: &done,
                resources,
                module_dir: ".",
                cwd,
                workspace,
            };
            if let Ok(v) = eval(e, &scope.context()) {
                done.insert(n.clone(), v);
                progressed = true;
            }
        }
        if !progressed {
            return done;
        }
    }
}

/// Converts a value to a declared variable type (`string`, `number`, `bool`, `list(T)`,
/// `set(T)`, `map(T)`, `any`, ...), as OpenTofu's type conversion does for input variables.
pub fn convert(v: Value, ty: &str) -> Result<Value, String> {
    let ty = ty.trim();
    if v.is_null() {
        return Ok(v);
    }
    let inner = |prefix: &str| {
        ty.strip_prefix(prefix)
            .and_then(|r| r.strip_suffix(')'))
            .map(str::to_string)
    };
    match ty {
        "string" => match v {
            Value::String(_) => Ok(v),
            Value::Number(n) => Ok(Value::String(n.to_string())),
            Value::Bool(b) => Ok(Value::String(b.to_string())),
            _ => Err("string required".into()),
        },
        "number" => match &v {
            Value::Number(_) => Ok(v),
            Value::String(s) => s
                .trim()
                .parse::<f64>()
                .map_err(|_| format!("a number is required, got {s:?}"))
                .map(|f| {
                    if f.fract() == 0.0 && f.abs() < 1e15 {
                        json!(f as i64)
                    } else {
                        json!(f)
                    }
                }),
            _ => Err("number required".into()),
        },
        "bool" => match &v {
            Value::Bool(_) => Ok(v),
            Value::String(s) if s == "true" => Ok(json!(true)),
            Value::String(s) if s == "false" => Ok(json!(false)),
            _ => Err("bool required".into()),
        },
        _ => {
            if let Some(el) = inner("list(").or_else(|| inner("set(")) {
                match v {
                    Value::Array(a) => a
                        .into_iter()
                        .map(|x| convert(x, &el))
                        .collect::<Result<Vec<_>, _>>()
                        .map(Value::Array),
                    _ => Err("list of ".to_string() + &el + " required"),
                }
            } else if let Some(el) = inner("map(") {
                match v {
                    Value::Object(o) => {
                        let mut m = serde_json::Map::new();
                        for (k, x) in o {
                            m.insert(k, convert(x, &el)?);
                        }
                        Ok(Value::Object(m))
                    }
                    _ => Err("map of ".to_string() + &el + " required"),
                }
            } else if ty.starts_with("object(") {
                if v.is_object() {
                    Ok(v)
                } else {
                    Err("object required".into())
                }
            } else {
                Ok(v)
            }
        }
    }
}

/// Parses a raw CLI/env variable value: strings stay strings; other types are HCL expressions.
pub fn parse_raw_var(raw: &str, ty: Option<&str>) -> Result<Value, String> {
    match ty.map(str::trim) {
        None | Some("string") => Ok(Value::String(raw.to_string())),
        Some(t) => {
            let body = hcl::parse(&format!("v = {raw}\n")).map_err(|e| e.to_string())?;
            let expr = body
                .attributes()
                .next()
                .map(|a| a.expr().clone())
                .ok_or("empty value")?;
            let v = eval_static(&expr)?;
            crate::types::convert(v, &crate::types::parse(t)?)
        }
    }
}

fn num(v: &HValue) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

fn num_value(f: f64) -> HValue {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        HValue::from(f as i64)
    } else {
        HValue::from(f)
    }
}

fn s(v: &HValue) -> String {
    match v {
        HValue::String(s) => s.clone(),
        HValue::Number(n) => n.to_string(),
        HValue::Bool(b) => b.to_string(),
        HValue::Null => String::new(),
        other => serde_json::to_string(&to_json(other.clone())).unwrap_or_default(),
    }
}

fn go_format(args: FuncArgs) -> Result<HValue, String> {
    let rest: Vec<Value> = args.iter().skip(1).cloned().map(to_json).collect();
    crate::strfmt::format(&s(&args[0]), &rest).map(|v| to_hcl(&v))
}

fn int_arg(v: &HValue, what: &str) -> Result<i64, String> {
    let f = num(v);
    if f.fract() != 0.0 {
        return Err(format!("{what} must be a whole number"));
    }
    Ok(f as i64)
}

fn list(v: &HValue) -> Vec<HValue> {
    match v {
        HValue::Array(a) => a.clone(),
        HValue::Object(o) => o.values().cloned().collect(),
        _ => Vec::new(),
    }
}

/// Every function `declare_functions` declares: a call to any other is `Call to unknown
/// function` when the module is loaded, as OpenTofu reports it, never a value.
pub const FUNCTIONS: &[&str] = &FUNCTION_NAMES;

const MORE: [&[&str]; 3] = [
    crate::functions::NAMES,
    crate::builtins::NAMES,
    crate::datetime::NAMES,
];
const COUNT: usize = FIRST.len() + MORE[0].len() + MORE[1].len() + MORE[2].len();

const FUNCTION_NAMES: [&str; COUNT] = {
    let mut all = [""; COUNT];
    let mut i = 0;
    while i < FIRST.len() {
        all[i] = FIRST[i];
        i += 1;
    }
    let mut list = 0;
    while list < MORE.len() {
        let mut j = 0;
        while j < MORE[list].len() {
            all[i] = MORE[list][j];
            i += 1;
            j += 1;
        }
        list += 1;
    }
    all
};

const FIRST: [&str; 41] = [
    "abs",
    "base64decode",
    "base64encode",
    "can",
    "ceil",
    "cidrhost",
    "cidrsubnet",
    "coalesce",
    "concat",
    "contains",
    "distinct",
    "element",
    "endswith",
    "flatten",
    "floor",
    "format",
    "join",
    "jsondecode",
    "jsonencode",
    "keys",
    "length",
    "lookup",
    "lower",
    "max",
    "merge",
    "min",
    "range",
    "replace",
    "split",
    "startswith",
    "substr",
    "tobool",
    "tolist",
    "tomap",
    "tonumber",
    "toset",
    "tostring",
    "trimspace",
    "try",
    "upper",
    "values",
];

/// Go's `encoding/json` escapes `<`, `>`, `&`, U+2028 and U+2029 inside strings (the only place
/// they can appear in JSON text).
fn go_json_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)))
            }
            _ => out.push(c),
        }
    }
    out
}

/// Declares the built-in functions the stand-in implements (see `FUNCTIONS`).
pub fn declare_functions(ctx: &mut Context) {
    crate::functions::declare(ctx);
    crate::builtins::declare(ctx);
    declare_strings(ctx);
    declare_collections(ctx);
    declare_conversions(ctx);
    declare_numbers_and_encodings(ctx);
}

/// Declares one function of hcl values.
fn f(
    ctx: &mut Context,
    name: &str,
    params: Vec<ParamType>,
    variadic: Option<ParamType>,
    func: hcl::eval::Func,
) {
    let mut b = FuncDef::builder().params(params);
    if let Some(v) = variadic {
        b = b.variadic_param(v);
    }
    ctx.declare_func(name, b.build(func));
}

/// `upper` to `cidrhost`, and `length`.
fn declare_strings(ctx: &mut Context) {
    use ParamType::{Any, Number, String as Str};
    f(ctx, "upper", vec![Str], None, |a| {
        Ok(HValue::String(s(&a[0]).to_uppercase()))
    });
    f(ctx, "lower", vec![Str], None, |a| {
        Ok(HValue::String(s(&a[0]).to_lowercase()))
    });
    f(ctx, "trimspace", vec![Str], None, |a| {
        Ok(HValue::String(s(&a[0]).trim().to_string()))
    });
    f(ctx, "format", vec![Str], Some(Any), go_format);
    f(ctx, "join", vec![Str, Any], None, |a| {
        Ok(HValue::String(
            list(&a[1])
                .iter()
                .map(s)
                .collect::<Vec<_>>()
                .join(&s(&a[0])),
        ))
    });
    f(ctx, "split", vec![Str, Str], None, |a| {
        Ok(HValue::Array(
            s(&a[1])
                .split(&s(&a[0]))
                .map(|x| HValue::String(x.into()))
                .collect(),
        ))
    });
    f(ctx, "replace", vec![Str, Str, Str], None, |a| {
        let find = s(&a[1]);
        if find.len() > 1 && find.starts_with('/') && find.ends_with('/') {
            let pattern = &find[1..find.len() - 1];
            return crate::builtins::replace_regex(&s(&a[0]), pattern, &s(&a[2]))
                .map(HValue::String);
        }
        Ok(HValue::String(s(&a[0]).replace(&find, &s(&a[2]))))
    });
    // `try` and `can` are resolved lazily by `lazy::resolve`; these eager forms only see calls it
    // could not resolve, where every argument already evaluated (or the call failed loudly).
    f(ctx, "try", vec![], Some(Any), |a| {
        a.first()
            .cloned()
            .ok_or_else(|| "at least one argument is required".into())
    });
    f(ctx, "can", vec![Any], None, |_| Ok(HValue::Bool(true)));
    f(ctx, "cidrsubnet", vec![Str, Number, Number], None, |a| {
        let (bits, net) = (int_arg(&a[1], "newbits")?, int_arg(&a[2], "netnum")?);
        crate::cidr::subnet(&s(&a[0]), bits, net).map(HValue::String)
    });
    f(ctx, "cidrhost", vec![Str, Number], None, |a| {
        crate::cidr::host(&s(&a[0]), int_arg(&a[1], "hostnum")?).map(HValue::String)
    });
    f(ctx, "length", vec![Any], None, |a| {
        Ok(HValue::from(match &a[0] {
            // A string known only after apply has a length known only then (a collection's is
            // known from its shape).
            HValue::String(x) if x.contains(UNKNOWN) => return Ok(HValue::String(UNKNOWN.into())),
            HValue::String(x) => x.chars().count(),
            HValue::Array(x) => x.len(),
            HValue::Object(x) => x.len(),
            _ => return Err("length() needs a string, list or map".into()),
        } as i64))
    });
}

/// `concat` to `tomap`.
fn declare_collections(ctx: &mut Context) {
    use ParamType::{Any, String as Str};
    f(ctx, "concat", vec![], Some(Any), |a| {
        Ok(HValue::Array(a.iter().flat_map(list).collect()))
    });
    f(ctx, "merge", vec![], Some(Any), |a| {
        let mut m = hcl::Map::new();
        for v in a.iter() {
            if let HValue::Object(o) = v {
                for (k, x) in o {
                    m.insert(k.clone(), x.clone());
                }
            }
        }
        Ok(HValue::Object(m))
    });
    f(ctx, "keys", vec![Any], None, |a| match &a[0] {
        HValue::Object(o) => {
            let mut k: Vec<_> = o.keys().cloned().collect();
            k.sort();
            Ok(HValue::Array(k.into_iter().map(HValue::String).collect()))
        }
        _ => Err("keys() needs a map".into()),
    });
    f(ctx, "values", vec![Any], None, |a| match &a[0] {
        HValue::Object(o) => {
            let mut k: Vec<_> = o.iter().collect();
            k.sort_by(|x, y| x.0.cmp(y.0));
            Ok(HValue::Array(
                k.into_iter().map(|(_, v)| v.clone()).collect(),
            ))
        }
        _ => Err("values() needs a map".into()),
    });
    f(ctx, "lookup", vec![Any, Str], Some(Any), |a| match &a[0] {
        HValue::Object(o) => o
            .get(&s(&a[1]))
            .cloned()
            .or_else(|| a.get(2).cloned())
            .ok_or_else(|| format!("the given key {:?} does not exist in the map", s(&a[1]))),
        _ => Err("lookup() needs a map".into()),
    });
    f(ctx, "contains", vec![Any, Any], None, |a| {
        Ok(HValue::Bool(list(&a[0]).contains(&a[1])))
    });
    f(ctx, "tostring", vec![Any], None, |a| {
        Ok(HValue::String(s(&a[0])))
    });
    f(ctx, "tonumber", vec![Any], None, |a| match &a[0] {
        HValue::Number(_) => Ok(a[0].clone()),
        HValue::String(x) => x
            .parse::<f64>()
            .map(num_value)
            .map_err(|_| format!("cannot convert {x:?} to number")),
        _ => Err("cannot convert to number".into()),
    });
    f(ctx, "tobool", vec![Any], None, |a| match &a[0] {
        HValue::Bool(_) => Ok(a[0].clone()),
        HValue::String(x) if x == "true" || x == "false" => Ok(HValue::Bool(x == "true")),
        _ => Err("cannot convert to bool".into()),
    });
    f(ctx, "tolist", vec![Any], None, |a| {
        Ok(HValue::Array(list(&a[0])))
    });
    f(ctx, "toset", vec![Any], None, |a| {
        let items: Vec<Value> = list(&a[0]).into_iter().map(to_json).collect();
        Ok(to_hcl(&Value::Array(crate::types::set(items))))
    });
    f(ctx, "tomap", vec![Any], None, |a| Ok(a[0].clone()));
}

/// `jsonencode` to `element`.
fn declare_conversions(ctx: &mut Context) {
    use ParamType::{Any, Number, String as Str};
    f(ctx, "jsonencode", vec![Any], None, |a| {
        let text = serde_json::to_string(&to_json(a[0].clone())).unwrap_or_default();
        Ok(HValue::String(go_json_escapes(&text)))
    });
    f(ctx, "jsondecode", vec![Str], None, |a| {
        serde_json::from_str::<Value>(&s(&a[0]))
            .map(|v| to_hcl(&v))
            .map_err(|e| e.to_string())
    });
    f(ctx, "max", vec![], Some(Number), |a| {
        Ok(num_value(a.iter().map(num).fold(f64::MIN, f64::max)))
    });
    f(ctx, "min", vec![], Some(Number), |a| {
        Ok(num_value(a.iter().map(num).fold(f64::MAX, f64::min)))
    });
    f(ctx, "abs", vec![Number], None, |a| {
        Ok(num_value(num(&a[0]).abs()))
    });
    f(ctx, "ceil", vec![Number], None, |a| {
        Ok(num_value(num(&a[0]).ceil()))
    });
    f(ctx, "floor", vec![Number], None, |a| {
        Ok(num_value(num(&a[0]).floor()))
    });
    f(ctx, "coalesce", vec![], Some(Any), |a| {
        a.iter()
            .find(|v| !matches!(v, HValue::Null) && **v != HValue::String(String::new()))
            .cloned()
            .ok_or_else(|| "no non-null, non-empty-string arguments".into())
    });
    f(ctx, "range", vec![Number], Some(Number), |a| {
        let (start, end) = if a.len() == 1 {
            (0.0, num(&a[0]))
        } else {
            (num(&a[0]), num(&a[1]))
        };
        let step = a.get(2).map(num).unwrap_or(1.0);
        if step == 0.0 {
            return Err("step may not be zero".into());
        }
        let mut out = Vec::new();
        let mut i = start;
        while (step > 0.0 && i < end) || (step < 0.0 && i > end) {
            out.push(num_value(i));
            i += step;
            if out.len() > 1024 {
                return Err("more than 1024 values".into());
            }
        }
        Ok(HValue::Array(out))
    });
    f(ctx, "element", vec![Any, Number], None, |a| {
        let l = list(&a[0]);
        if l.is_empty() {
            return Err("cannot use element function with an empty list".into());
        }
        Ok(l[(num(&a[1]) as usize) % l.len()].clone())
    });
}

/// `substr` to `flatten`.
fn declare_numbers_and_encodings(ctx: &mut Context) {
    use ParamType::{Any, Number, String as Str};
    f(ctx, "substr", vec![Str, Number, Number], None, |a| {
        let c: Vec<char> = s(&a[0]).chars().collect();
        let off = (num(&a[1]) as usize).min(c.len());
        let len = num(&a[2]);
        let end = if len < 0.0 {
            c.len()
        } else {
            (off + len as usize).min(c.len())
        };
        Ok(HValue::String(c[off..end].iter().collect()))
    });
    f(ctx, "startswith", vec![Str, Str], None, |a| {
        Ok(HValue::Bool(s(&a[0]).starts_with(&s(&a[1]))))
    });
    f(ctx, "endswith", vec![Str, Str], None, |a| {
        Ok(HValue::Bool(s(&a[0]).ends_with(&s(&a[1]))))
    });
    f(ctx, "base64encode", vec![Str], None, |a| {
        Ok(HValue::String(
            base64::engine::general_purpose::STANDARD.encode(s(&a[0])),
        ))
    });
    f(ctx, "base64decode", vec![Str], None, |a| {
        base64::engine::general_purpose::STANDARD
            .decode(s(&a[0]))
            .map_err(|e| e.to_string())
            .and_then(|b| String::from_utf8(b).map_err(|e| e.to_string()))
            .map(HValue::String)
    });
    f(ctx, "distinct", vec![Any], None, |a| {
        let mut out: Vec<HValue> = Vec::new();
        for v in list(&a[0]) {
            if !out.contains(&v) {
                out.push(v);
            }
        }
        Ok(HValue::Array(out))
    });
    f(ctx, "flatten", vec![Any], None, |a| {
        fn flat(v: &HValue, out: &mut Vec<HValue>) {
            match v {
                HValue::Array(x) => x.iter().for_each(|i| flat(i, out)),
                other => out.push(other.clone()),
            }
        }
        let mut out = Vec::new();
        flat(&a[0], &mut out);
        Ok(HValue::Array(out))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(src: &str) -> Value {
        let body = hcl::parse(&format!("v = {src}\n")).unwrap();
        let e = body.attributes().next().unwrap().expr().clone();
        let vars = serde_json::Map::from_iter([("region".to_string(), json!("eu-west-1"))]);
        let empty = serde_json::Map::new();
        let scope = Scope {
            vars: &vars,
            locals: &empty,
            resources: &empty,
            module_dir: ".",
            cwd: ".",
            workspace: "default",
        };
        eval(&e, &scope.context()).unwrap()
    }

    #[test]
    fn functions_and_scopes() {
        assert_eq!(ev("upper(var.region)"), json!("EU-WEST-1"));
        assert_eq!(ev("format(\"%s-%d\", \"gpu\", 4)"), json!("gpu-4"));
        assert_eq!(ev("join(\",\", [\"a\", \"b\"])"), json!("a,b"));
        assert_eq!(ev("length(concat([1], [2, 3]))"), json!(3));
        let unknown = format!("length(\"{UNKNOWN}\")");
        assert_eq!(ev(&unknown), json!(UNKNOWN));
        assert_eq!(ev("merge({a = 1}, {b = 2})"), json!({"a": 1, "b": 2}));
        assert_eq!(ev("max(1, 5, 3)"), json!(5));
        assert_eq!(ev("terraform.workspace"), json!("default"));
        assert_eq!(ev("\"${var.region}-x\""), json!("eu-west-1-x"));
        // As Go's encoding/json writes them (Terraform 1.11.4 printed the same).
        assert_eq!(
            ev("jsonencode({ a = \"<b>&\" })"),
            json!("{\"a\":\"\\u003cb\\u003e\\u0026\"}")
        );
    }

    #[test]
    fn variable_conversion() {
        assert_eq!(parse_raw_var("4", Some("number")).unwrap(), json!(4));
        assert_eq!(
            parse_raw_var("[\"a\"]", Some("list(string)")).unwrap(),
            json!(["a"])
        );
        assert_eq!(parse_raw_var("x y", None).unwrap(), json!("x y"));
        assert!(parse_raw_var("four", Some("number")).is_err());
    }

    #[test]
    fn unknowns_split_into_after_unknown() {
        let v = json!({"id": UNKNOWN, "input": "a"});
        assert!(is_unknown(&v));
        let (after, unk) = split_unknown(&v);
        assert_eq!(
            after,
            json!({"input": "a"}),
            "unknown attributes are left out"
        );
        assert_eq!(unk, json!({"id": true}));
        let (after, unk) = split_unknown(&json!({"input": {"pool": UNKNOWN, "gpu": "a100"}}));
        assert_eq!(after, json!({"input": {"gpu": "a100"}}));
        assert_eq!(unk, json!({"input": {"pool": true}}));
        assert_eq!(
            cty_type(&json!({"a": [1, "x"]})),
            json!(["object", {"a": ["tuple", ["number", "string"]]}])
        );
    }
}
