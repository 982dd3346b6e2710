//! Type constraints of input variables, as OpenTofu converts values to them: primitives,
//! `list`/`set`/`map`/`tuple`/`object` nested to any depth, `optional(T)` and
//! `optional(T, default)` object attributes (a missing or null attribute takes its default),
//! attributes not in the type dropped, and the type's cty JSON for outputs of a variable.

use crate::eval::{self, eval_static};
use hcl::expr::ObjectKey;
use hcl::Expression;
use serde_json::{json, Map, Value};

/// A parsed type constraint.
#[derive(Debug, Clone, PartialEq)]
pub enum Ty {
    Any,
    String,
    Number,
    Bool,
    List(Box<Ty>),
    Set(Box<Ty>),
    Map(Box<Ty>),
    Tuple(Vec<Ty>),
    Object(Vec<Attr>),
}

/// One attribute of an object type.
#[derive(Debug, Clone, PartialEq)]
pub struct Attr {
    name: String,
    ty: Ty,
    optional: bool,
    default: Option<Value>,
}

/// Parses a type constraint from its HCL text (`map(list(string))`).
pub fn parse(text: &str) -> Result<Ty, String> {
    let body = hcl::parse(&format!("t = {text}\n")).map_err(|e| e.to_string())?;
    let e = body.attributes().next().ok_or("empty type")?.expr().clone();
    from_expr(&e)
}

fn from_expr(e: &Expression) -> Result<Ty, String> {
    let bad = || format!("invalid type constraint: {}", crate::config::expr_text(e));
    match e {
        Expression::Variable(v) => match v.as_str() {
            "string" => Ok(Ty::String),
            "number" => Ok(Ty::Number),
            "bool" => Ok(Ty::Bool),
            "any" => Ok(Ty::Any),
            _ => Err(bad()),
        },
        Expression::FuncCall(f) if f.args.len() == 1 => {
            let arg = &f.args[0];
            match (f.name.name.as_str(), arg) {
                ("list", _) => Ok(Ty::List(Box::new(from_expr(arg)?))),
                ("set", _) => Ok(Ty::Set(Box::new(from_expr(arg)?))),
                ("map", _) => Ok(Ty::Map(Box::new(from_expr(arg)?))),
                ("tuple", Expression::Array(a)) => a
                    .iter()
                    .map(from_expr)
                    .collect::<Result<_, _>>()
                    .map(Ty::Tuple),
                ("object", Expression::Object(o)) => object(o),
                _ => Err(bad()),
            }
        }
        _ => Err(bad()),
    }
}

fn object(o: &hcl::Object<ObjectKey, Expression>) -> Result<Ty, String> {
    let mut attrs = Vec::new();
    for (k, v) in o {
        let name = match k {
            ObjectKey::Identifier(i) => i.to_string(),
            ObjectKey::Expression(Expression::String(s)) => s.clone(),
            ObjectKey::Expression(Expression::Variable(v)) => v.to_string(),
            other => return Err(format!("invalid object attribute name {other:?}")),
        };
        let attr = match v {
            Expression::FuncCall(f) if f.name.name.as_str() == "optional" && !f.args.is_empty() => {
                let ty = from_expr(&f.args[0])?;
                let default = match f.args.get(1) {
                    Some(d) => Some(convert(eval_static(d)?, &ty)?),
                    None => None,
                };
                Attr {
                    name,
                    ty,
                    optional: true,
                    default,
                }
            }
            _ => Attr {
                name,
                ty: from_expr(v)?,
                optional: false,
                default: None,
            },
        };
        attrs.push(attr);
    }
    Ok(Ty::Object(attrs))
}

/// Converts a value to a type, as OpenTofu does for input variables.
pub fn convert(v: Value, ty: &Ty) -> Result<Value, String> {
    if v.is_null() {
        return Ok(v);
    }
    match ty {
        Ty::Any => Ok(v),
        Ty::String | Ty::Number | Ty::Bool => primitive(v, ty),
        Ty::List(el) | Ty::Set(el) => {
            let Value::Array(a) = v else {
                return Err("list of ".to_string() + &name(el) + " required");
            };
            let items: Vec<Value> = a
                .into_iter()
                .map(|x| convert(x, el))
                .collect::<Result<_, _>>()?;
            Ok(Value::Array(if matches!(ty, Ty::Set(_)) {
                set(items)
            } else {
                items
            }))
        }
        Ty::Map(el) => {
            let Value::Object(o) = v else {
                return Err("map of ".to_string() + &name(el) + " required");
            };
            let m: Result<Map<String, Value>, String> = o
                .into_iter()
                .map(|(k, x)| Ok((k, convert(x, el)?)))
                .collect();
            m.map(Value::Object)
        }
        Ty::Tuple(els) => match v {
            Value::Array(a) if a.len() == els.len() => a
                .into_iter()
                .zip(els)
                .map(|(x, t)| convert(x, t))
                .collect::<Result<_, _>>()
                .map(Value::Array),
            _ => Err(format!("tuple required with {} elements", els.len())),
        },
        Ty::Object(attrs) => object_value(v, attrs),
    }
}

fn object_value(v: Value, attrs: &[Attr]) -> Result<Value, String> {
    let Value::Object(mut o) = v else {
        return Err("object required".into());
    };
    let mut out = Map::new();
    for a in attrs {
        let given = o.remove(&a.name).filter(|x| !x.is_null());
        let value = match (given, &a.default) {
            (Some(x), _) => {
                convert(x, &a.ty).map_err(|e| format!("attribute {:?}: {e}", a.name))?
            }
            (None, Some(d)) => d.clone(),
            (None, None) if a.optional => Value::Null,
            (None, None) => return Err(format!("attribute {:?} is required", a.name)),
        };
        out.insert(a.name.clone(), value);
    }
    Ok(Value::Object(out))
}

fn primitive(v: Value, ty: &Ty) -> Result<Value, String> {
    let text = match ty {
        Ty::Number => "number",
        Ty::Bool => "bool",
        _ => "string",
    };
    eval::convert(v, text)
}

/// Set elements as cty keeps them: without duplicates, in order (strings lexically, numbers by
/// value; other elements as given).
pub fn set(items: Vec<Value>) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for x in items {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    if out.iter().all(Value::is_string) {
        out.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
    } else if out.iter().all(Value::is_number) {
        out.sort_by(|a, b| {
            a.as_f64()
                .unwrap_or(0.0)
                .total_cmp(&b.as_f64().unwrap_or(0.0))
        });
    }
    out
}

fn name(ty: &Ty) -> String {
    match ty {
        Ty::String => "string".into(),
        Ty::Number => "number".into(),
        Ty::Bool => "bool".into(),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// The cty type JSON of a value of this type (`any` parts take the value's own type).
pub fn cty_json(ty: &Ty, v: &Value) -> Value {
    let el = |i: usize| match v {
        Value::Array(a) => a.get(i).cloned().unwrap_or(Value::Null),
        _ => Value::Null,
    };
    match ty {
        Ty::Any => eval::cty_type(v),
        Ty::String => json!("string"),
        Ty::Number => json!("number"),
        Ty::Bool => json!("bool"),
        Ty::List(t) => json!(["list", cty_json(t, &el(0))]),
        Ty::Set(t) => json!(["set", cty_json(t, &el(0))]),
        Ty::Map(t) => {
            let first = v
                .as_object()
                .and_then(|o| o.values().next().cloned())
                .unwrap_or(Value::Null);
            json!(["map", cty_json(t, &first)])
        }
        Ty::Tuple(ts) => json!([
            "tuple",
            ts.iter()
                .enumerate()
                .map(|(i, t)| cty_json(t, &el(i)))
                .collect::<Vec<_>>()
        ]),
        Ty::Object(attrs) => {
            let m: Map<String, Value> = attrs
                .iter()
                .map(|a| {
                    (
                        a.name.clone(),
                        cty_json(&a.ty, v.get(&a.name).unwrap_or(&Value::Null)),
                    )
                })
                .collect();
            json!(["object", m])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values and types as Terraform 1.11.4 printed them for the same variables.
    #[test]
    fn converts_with_optional_defaults_and_types_as_the_real_binary() {
        let pool = parse("object({ name = string, size = optional(number, 2), tags = optional(map(string), {}), gpu = optional(string), nodes = optional(list(object({ zone = string, spot = optional(bool, false) })), []) })").unwrap();
        let given = json!({"name": "p", "extra": "dropped", "nodes": [{"zone": "a"}, {"zone": "b", "spot": true}]});
        let v = convert(given, &pool).unwrap();
        assert_eq!(
            v,
            json!({"gpu": null, "name": "p", "nodes": [{"spot": false, "zone": "a"}, {"spot": true, "zone": "b"}], "size": 2, "tags": {}})
        );
        assert_eq!(
            cty_json(&pool, &v),
            json!(["object", {"gpu": "string", "name": "string", "nodes": ["list", ["object", {"spot": "bool", "zone": "string"}]], "size": "number", "tags": ["map", "string"]}])
        );
        let counts = parse("map(number)").unwrap();
        assert_eq!(
            convert(json!({"a": "1", "b": 2}), &counts).unwrap(),
            json!({"a": 1, "b": 2})
        );
        let ids = parse("list(string)").unwrap();
        assert_eq!(
            convert(json!([1, true, "x"]), &ids).unwrap(),
            json!(["1", "true", "x"])
        );
        assert_eq!(cty_json(&ids, &json!(["1"])), json!(["list", "string"]));
        let tup = parse("tuple([string, number])").unwrap();
        assert_eq!(convert(json!(["a", "5"]), &tup).unwrap(), json!(["a", 5]));
        assert_eq!(
            cty_json(&tup, &json!(["a", 5])),
            json!(["tuple", ["string", "number"]])
        );
        let bad = parse("object({ name = string })").unwrap();
        assert_eq!(
            convert(json!({"other": 1}), &bad).unwrap_err(),
            "attribute \"name\" is required"
        );
        assert_eq!(
            convert(json!(["b", "a", "b"]), &parse("set(string)").unwrap()).unwrap(),
            json!(["a", "b"])
        );
    }
}
