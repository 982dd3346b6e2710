//! More of OpenTofu's built-in functions (strings, collections, numbers, encoding, files), each
//! with OpenTofu's semantics; `eval::declare_functions` declares the first ones. A function in
//! neither is `Call to unknown function` (see `eval::FUNCTIONS`).

use crate::eval::{to_hcl, to_json};
use hcl::eval::{Context, FuncArgs, FuncDef, ParamType};
use hcl::Value as HValue;
use md5::Digest;
use serde_json::{json, Value};

/// The names `declare` adds.
pub const NAMES: &[&str] = &[
    "alltrue",
    "anytrue",
    "basename",
    "chomp",
    "chunklist",
    "coalescelist",
    "compact",
    "dirname",
    "file",
    "fileexists",
    "formatlist",
    "index",
    "indent",
    "md5",
    "one",
    "parseint",
    "pow",
    "reverse",
    "setintersection",
    "setsubtract",
    "setunion",
    "signum",
    "slice",
    "sort",
    "strrev",
    "sum",
    "title",
    "trim",
    "trimprefix",
    "trimsuffix",
    "urlencode",
    "zipmap",
];

pub(crate) type F = fn(&[Value]) -> Result<Value, String>;

/// Declares each `(name, parameters, variadic, body)` as a function of JSON values (hcl-rs takes
/// plain `fn` pointers, so each body is placed inside its own non-capturing closure).
macro_rules! declare_all {
    ($ctx:expr, $(($name:expr, $params:expr, $variadic:expr, $body:expr),)*) => {
        $({
            let mut b = FuncDef::builder().params(vec![ParamType::Any; $params]);
            if $variadic {
                b = b.variadic_param(ParamType::Any);
            }
            $ctx.declare_func($name, b.build(|args: FuncArgs| call($body, args)));
        })*
    };
}
pub(crate) use declare_all;

/// Declares every function in `NAMES` (arguments as JSON values, so unknowns stay strings).
pub fn declare(ctx: &mut Context) {
    declare_first(ctx);
    declare_second(ctx);
}

/// `alltrue` to `formatlist`.
fn declare_first(ctx: &mut Context) {
    declare_all!(
        ctx,
        ("alltrue", 1, false, |a| {
            Ok(json!(items(&a[0]).iter().all(|v| v == &json!(true))))
        }),
        ("anytrue", 1, false, |a| {
            Ok(json!(items(&a[0]).iter().any(|v| v == &json!(true))))
        }),
        ("basename", 1, false, |a| Ok(json!(basename(&text(&a[0]))))),
        ("chomp", 1, false, |a| {
            Ok(json!(text(&a[0]).trim_end_matches(['\n', '\r'])))
        }),
        ("chunklist", 2, false, chunklist),
        ("coalescelist", 0, true, |a| {
            let first = a.iter().find(|l| !items(l).is_empty());
            first.cloned().ok_or_else(|| "no non-null arguments".into())
        }),
        ("compact", 1, false, |a| {
            let kept = items(&a[0])
                .into_iter()
                .filter(|v| !v.is_null() && v != &json!(""));
            Ok(Value::Array(kept.collect()))
        }),
        ("dirname", 1, false, |a| Ok(json!(dirname(&text(&a[0]))))),
        ("file", 1, false, |a| {
            std::fs::read_to_string(text(&a[0]))
                .map(Value::String)
                .map_err(|e| format!("no file exists at {:?}: {e}", text(&a[0])))
        }),
        ("fileexists", 1, false, |a| {
            Ok(json!(std::path::Path::new(&text(&a[0])).is_file()))
        }),
        ("formatlist", 1, true, formatlist),
    );
}

/// `index` to `zipmap`.
fn declare_second(ctx: &mut Context) {
    declare_all!(
        ctx,
        ("index", 2, false, |a| {
            let at = items(&a[0]).iter().position(|v| v == &a[1]);
            at.map(|i| json!(i)).ok_or_else(|| "item not found".into())
        }),
        ("indent", 2, false, |a| {
            let pad = " ".repeat(number(&a[0]).max(0.0) as usize);
            Ok(json!(text(&a[1]).replace('\n', &format!("\n{pad}"))))
        }),
        ("md5", 1, false, |a| {
            Ok(json!(hex(&md5::Md5::digest(text(&a[0]).as_bytes()))))
        }),
        ("one", 1, false, |a| match items(&a[0]).as_slice() {
            [] => Ok(Value::Null),
            [x] => Ok(x.clone()),
            _ => Err("must be a list, set, or tuple value with either zero or one elements".into()),
        }),
        ("parseint", 2, false, parseint),
        ("pow", 2, false, |a| {
            Ok(number_value(number(&a[0]).powf(number(&a[1]))))
        }),
        ("reverse", 1, false, |a| {
            Ok(Value::Array(items(&a[0]).into_iter().rev().collect()))
        }),
        ("setintersection", 1, true, |a| {
            set_op(a, |x, rest| rest.iter().all(|l| l.contains(x)))
        }),
        ("setsubtract", 2, false, |a| {
            set_op(a, |x, rest| !rest[0].contains(x))
        }),
        ("setunion", 1, true, |a| {
            Ok(Value::Array(crate::types::set(
                a.iter().flat_map(items).collect(),
            )))
        }),
        ("signum", 1, false, |a| Ok(json!(signum(number(&a[0]))))),
        ("slice", 3, false, slice),
        ("sort", 1, false, |a| {
            let mut words: Vec<String> = items(&a[0]).iter().map(text).collect();
            words.sort();
            Ok(json!(words))
        }),
        ("strrev", 1, false, |a| {
            Ok(json!(text(&a[0]).chars().rev().collect::<String>()))
        }),
        ("sum", 1, false, |a| {
            let nums = items(&a[0]);
            if nums.is_empty() {
                return Err("cannot sum an empty list".into());
            }
            Ok(number_value(nums.iter().map(number).sum()))
        }),
        ("title", 1, false, |a| Ok(json!(title(&text(&a[0]))))),
        ("trim", 2, false, |a| {
            let cut = text(&a[1]);
            Ok(json!(text(&a[0]).trim_matches(|c| cut.contains(c))))
        }),
        ("trimprefix", 2, false, |a| {
            let (t, p) = (text(&a[0]), text(&a[1]));
            Ok(json!(t.strip_prefix(p.as_str()).unwrap_or(&t)))
        }),
        ("trimsuffix", 2, false, |a| {
            let (t, p) = (text(&a[0]), text(&a[1]));
            Ok(json!(t.strip_suffix(p.as_str()).unwrap_or(&t)))
        }),
        ("urlencode", 1, false, |a| {
            Ok(json!(urlencode(&text(&a[0]))))
        }),
        ("zipmap", 2, false, zipmap),
    );
}

pub(crate) fn call(func: F, args: FuncArgs) -> Result<HValue, String> {
    let values: Vec<Value> = args.iter().cloned().map(to_json).collect();
    if values.iter().any(crate::eval::is_unknown) {
        return Ok(HValue::String(crate::eval::UNKNOWN.into()));
    }
    func(&values).map(|v| to_hcl(&v))
}

pub(crate) fn items(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a.clone(),
        Value::Object(o) => o.values().cloned().collect(),
        _ => Vec::new(),
    }
}

pub(crate) fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

pub(crate) fn number(v: &Value) -> f64 {
    match v {
        Value::String(s) => s.trim().parse().unwrap_or(0.0),
        other => other.as_f64().unwrap_or(0.0),
    }
}

pub(crate) fn number_value(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        json!(f as i64)
    } else {
        json!(f)
    }
}

fn signum(f: f64) -> i64 {
    if f > 0.0 {
        1
    } else if f < 0.0 {
        -1
    } else {
        0
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Go's `filepath.Base`.
fn basename(p: &str) -> String {
    let t = p.trim_end_matches('/');
    match (p.is_empty(), t.is_empty()) {
        (true, _) => ".".into(),
        (false, true) => "/".into(),
        _ => t.rsplit('/').next().unwrap_or(t).to_string(),
    }
}

/// Go's `filepath.Dir`.
fn dirname(p: &str) -> String {
    let dir = match p.rfind('/') {
        Some(0) => "/",
        Some(i) => &p[..i],
        None => ".",
    };
    let cleaned = dir.trim_end_matches('/');
    if cleaned.is_empty() && dir.starts_with('/') {
        "/".into()
    } else {
        cleaned.to_string()
    }
}

/// Go's `strings.Title`: a letter after a non-letter is upper-cased.
fn title(s: &str) -> String {
    let mut prev_letter = false;
    s.chars()
        .map(|c| {
            let out = if prev_letter {
                c
            } else {
                c.to_uppercase().next().unwrap_or(c)
            };
            prev_letter = c.is_alphanumeric() || c == '_' || c == '\'';
            out
        })
        .collect()
}

/// Go's `url.QueryEscape`.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn chunklist(a: &[Value]) -> Result<Value, String> {
    let size = number(&a[1]);
    if size < 0.0 {
        return Err("the size argument must be positive".into());
    }
    let list = items(&a[0]);
    if size == 0.0 {
        return Ok(json!([list]));
    }
    Ok(Value::Array(
        list.chunks(size as usize)
            .map(|c| Value::Array(c.to_vec()))
            .collect(),
    ))
}

fn formatlist(a: &[Value]) -> Result<Value, String> {
    let lists: Vec<Option<Vec<Value>>> = a[1..]
        .iter()
        .map(|v| v.is_array().then(|| items(v)))
        .collect();
    let n = lists.iter().flatten().map(Vec::len).max().unwrap_or(1);
    if lists.iter().flatten().any(|l| l.len() != n) {
        return Err("all arguments must be lists of the same length".into());
    }
    let fmt = text(&a[0]);
    (0..n)
        .map(|i| {
            let args: Vec<Value> = lists
                .iter()
                .zip(&a[1..])
                .map(|(l, v)| {
                    l.as_ref()
                        .map(|l| l[i].clone())
                        .unwrap_or_else(|| v.clone())
                })
                .collect();
            crate::strfmt::format(&fmt, &args)
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

fn parseint(a: &[Value]) -> Result<Value, String> {
    let base = number(&a[1]) as u32;
    if !(2..=62).contains(&base) {
        return Err("base must be a whole number between 2 and 62 inclusive".into());
    }
    let t = text(&a[0]);
    let (neg, digits) = match t.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, t.strip_prefix('+').unwrap_or(&t)),
    };
    let n = i64::from_str_radix(digits, base)
        .map_err(|_| format!("cannot parse {t:?} as a base {base} integer"))?;
    Ok(json!(if neg { -n } else { n }))
}

fn set_op(a: &[Value], keep: fn(&Value, &[Vec<Value>]) -> bool) -> Result<Value, String> {
    let first = items(&a[0]);
    let rest: Vec<Vec<Value>> = a[1..].iter().map(items).collect();
    let kept: Vec<Value> = first.into_iter().filter(|x| keep(x, &rest)).collect();
    Ok(Value::Array(crate::types::set(kept)))
}

fn slice(a: &[Value]) -> Result<Value, String> {
    let list = items(&a[0]);
    let (start, end) = (number(&a[1]), number(&a[2]));
    if start < 0.0 || end > list.len() as f64 || start > end {
        return Err(format!(
            "the start index must be between 0 and the end index, and the end index at most {}",
            list.len()
        ));
    }
    Ok(Value::Array(list[start as usize..end as usize].to_vec()))
}

fn zipmap(a: &[Value]) -> Result<Value, String> {
    let (keys, values) = (items(&a[0]), items(&a[1]));
    if keys.len() != values.len() {
        return Err(format!(
            "number of keys ({}) does not match number of values ({})",
            keys.len(),
            values.len()
        ));
    }
    let m = keys.iter().map(text).zip(values).collect();
    Ok(Value::Object(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_titles_and_escapes_as_go_writes_them() {
        assert_eq!(basename("/a/b/c.txt"), "c.txt");
        assert_eq!(basename("a/b/"), "b");
        assert_eq!(dirname("/a/b/c.txt"), "/a/b");
        assert_eq!(dirname("c.txt"), ".");
        assert_eq!(dirname("/c"), "/");
        assert_eq!(title("hello wide world-x"), "Hello Wide World-X");
        assert_eq!(urlencode("a b&c=d/é"), "a+b%26c%3Dd%2F%C3%A9");
        assert_eq!(
            hex(&md5::Md5::digest(b"hello")),
            "5d41402abc4b2a76b9719d911017c592"
        );
    }
}
