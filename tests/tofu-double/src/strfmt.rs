//! OpenTofu's `format` function (cty's `stdlib.Format`): the verbs `%v %#v %t %b %d %o %x %X
//! %e %E %f %g %G %s %q`, the flags `+ - space 0 #`, width, precision and explicit argument
//! indexes `%[n]v`, with Go's rounding and exponent notation. A null argument makes the result
//! null and an unknown one makes it unknown, as in OpenTofu.

use crate::decimal::{general, Decimal};
use crate::eval::{self, UNKNOWN};
use serde_json::Value;

/// One verb with its flags, width, precision and (1-based) argument index.
#[derive(Default, Debug)]
struct Spec {
    minus: bool,
    plus: bool,
    space: bool,
    zero: bool,
    sharp: bool,
    width: Option<usize>,
    prec: Option<usize>,
    index: Option<usize>,
    verb: char,
}

/// Formats `args` by `fmt`; errors read as OpenTofu's (`unsupported value for "%d" at 0: an
/// integer is required`).
pub fn format(fmt: &str, args: &[Value]) -> Result<Value, String> {
    if args.iter().any(Value::is_null) {
        return Ok(Value::Null);
    }
    if args.iter().any(eval::is_unknown) {
        return Ok(Value::String(UNKNOWN.into()));
    }
    let chars: Vec<char> = fmt.chars().collect();
    let (mut out, mut i, mut next, mut used) = (String::new(), 0, 0, 0);
    while i < chars.len() {
        if chars[i] != '%' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        if chars.get(i + 1) == Some(&'%') {
            out.push('%');
            i += 2;
            continue;
        }
        let start = i;
        let spec = parse_spec(&chars, &mut i)?;
        let text: String = chars[start..i].iter().collect();
        let at = spec.index.map(|n| n - 1).unwrap_or(next);
        let arg = args.get(at).ok_or_else(|| {
            format!(
                "not enough arguments for \"{text}\" at {start}: need index {}, but have {} total",
                at + 1,
                args.len()
            )
        })?;
        let (sign, body, numeric) = render(&spec, arg)
            .map_err(|why| format!("unsupported value for \"{text}\" at {start}: {why}"))?;
        out.push_str(&pad(&spec, sign, &body, numeric));
        next = at + 1;
        used = used.max(next);
    }
    if used < args.len() {
        return Err(format!(
            "too many arguments; only {used} used by format string"
        ));
    }
    Ok(Value::String(out))
}

/// Reads `%` flags width .precision [index] verb, leaving `i` after the verb.
fn parse_spec(chars: &[char], i: &mut usize) -> Result<Spec, String> {
    let mut s = Spec::default();
    *i += 1;
    while let Some(c) = chars.get(*i) {
        match c {
            '-' => s.minus = true,
            '+' => s.plus = true,
            ' ' => s.space = true,
            '0' => s.zero = true,
            '#' => s.sharp = true,
            _ => break,
        }
        *i += 1;
    }
    s.width = digits(chars, i);
    if chars.get(*i) == Some(&'.') {
        *i += 1;
        s.prec = Some(digits(chars, i).unwrap_or(0));
    }
    if chars.get(*i) == Some(&'[') {
        *i += 1;
        s.index = digits(chars, i).filter(|n| *n > 0);
        if chars.get(*i) != Some(&']') || s.index.is_none() {
            return Err(format!("invalid argument index at offset {i}"));
        }
        *i += 1;
    }
    match chars.get(*i) {
        Some(c) if "vtbdoxXeEfgGsq".contains(*c) => {
            s.verb = *c;
            *i += 1;
            Ok(s)
        }
        Some(c) => Err(format!("unrecognized format character '{c}' at offset {i}")),
        None => Err("unterminated format verb at end of string".into()),
    }
}

fn digits(chars: &[char], i: &mut usize) -> Option<usize> {
    let start = *i;
    while chars.get(*i).is_some_and(char::is_ascii_digit) {
        *i += 1;
    }
    let t: String = chars[start..*i].iter().collect();
    t.parse().ok()
}

/// The sign, the body and whether zero padding applies, for one argument.
fn render(s: &Spec, arg: &Value) -> Result<(&'static str, String, bool), &'static str> {
    match s.verb {
        'v' if s.sharp => Ok(("", serde_json::to_string(arg).unwrap_or_default(), false)),
        'v' => Ok(("", plain(arg).unwrap_or_else(|| arg.to_string()), false)),
        's' => {
            let t = plain(arg).ok_or("string required")?;
            Ok(("", truncate(t, s.prec), false))
        }
        'q' => Ok(("", quote(&plain(arg).ok_or("string required")?), false)),
        't' => match arg {
            Value::Bool(b) => Ok(("", b.to_string(), false)),
            Value::String(t) if t == "true" || t == "false" => Ok(("", t.clone(), false)),
            _ => Err("bool required"),
        },
        'd' | 'b' | 'o' | 'x' | 'X' => integer(s, number(arg)?),
        _ => float(s, number(arg)?),
    }
}

/// A string, number or bool as a string (numbers in decimal, never with an exponent).
fn plain(v: &Value) -> Option<String> {
    match v {
        Value::String(t) => Some(t.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        Value::Number(n) => n.as_f64().map(|f| format!("{f}")),
        _ => None,
    }
}

fn number(v: &Value) -> Result<f64, &'static str> {
    match v {
        Value::Number(n) => n.as_f64().ok_or("a number is required"),
        Value::String(t) => t.trim().parse().map_err(|_| "a number is required"),
        _ => Err("a number is required"),
    }
}

fn truncate(t: String, prec: Option<usize>) -> String {
    match prec {
        Some(p) => t.chars().take(p).collect(),
        None => t,
    }
}

fn sign(s: &Spec, negative: bool) -> &'static str {
    match (negative, s.plus, s.space) {
        (true, _, _) => "-",
        (false, true, _) => "+",
        (false, false, true) => " ",
        _ => "",
    }
}

fn integer(s: &Spec, x: f64) -> Result<(&'static str, String, bool), &'static str> {
    if x.fract() != 0.0 || !x.is_finite() {
        return Err("an integer is required");
    }
    let n = x.abs() as u128;
    let (body, prefix) = match s.verb {
        'b' => (format!("{n:b}"), "0b"),
        'o' => (format!("{n:o}"), "0"),
        'x' => (format!("{n:x}"), "0x"),
        'X' => (format!("{n:X}"), "0X"),
        _ => (n.to_string(), ""),
    };
    let body = if s.sharp {
        format!("{prefix}{body}")
    } else {
        body
    };
    Ok((sign(s, x < 0.0), body, true))
}

fn float(s: &Spec, x: f64) -> Result<(&'static str, String, bool), &'static str> {
    let neg = x.is_sign_negative() && x != 0.0;
    let d = Decimal::of(x);
    let body = match s.verb {
        'f' => d.fixed(s.prec.unwrap_or(6)),
        'e' => d.scientific(s.prec.unwrap_or(6)),
        'E' => d.scientific(s.prec.unwrap_or(6)).to_uppercase(),
        'g' => general(x, s.prec),
        _ => general(x, s.prec).to_uppercase(),
    };
    Ok((sign(s, neg), body, true))
}

/// Go's `strconv.Quote`.
pub fn quote(t: &str) -> String {
    let mut out = String::from("\"");
    for c in t.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Pads to the width (in characters): left with spaces, right with `-`, with zeros after the
/// sign with `0` for numbers.
fn pad(s: &Spec, sign: &str, body: &str, numeric: bool) -> String {
    let len = sign.chars().count() + body.chars().count();
    let fill = s.width.unwrap_or(0).saturating_sub(len);
    if s.minus {
        format!("{sign}{body}{}", " ".repeat(fill))
    } else if s.zero && numeric {
        format!("{sign}{}{body}", "0".repeat(fill))
    } else {
        format!("{}{sign}{body}", " ".repeat(fill))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(fmt: &str, args: Value) -> String {
        match format(fmt, args.as_array().unwrap()).unwrap() {
            Value::String(s) => s,
            other => format!("<{other}>"),
        }
    }

    /// Each expected string is what Terraform 1.11.4 (cty's format) printed for the same call.
    #[test]
    fn verbs_flags_width_and_precision_as_the_real_binary() {
        let a = json!([42, "ab", 3.14158, "q\"x", true, "v", 255, 1.5, [1, "a"]]);
        assert_eq!(
            f("%5d|%-8s|%05.2f|%q|%t|%v|%x|%v|%v", a),
            "   42|ab      |03.14|\"q\\\"x\"|true|v|ff|1.5|[1,\"a\"]"
        );
        let b = json!([255, 8, 5, 12345.678, 2.5, 3, 4, 7, 12]);
        assert_eq!(
            f("%X|%o|%b|%e|%8.3f|%+d|% d|%s|%q", b),
            "FF|10|101|1.234568e+04|   2.500|+3| 4|7|\"12\""
        );
        assert_eq!(f("%v|%v|%s", json!([true, 12.0, false])), "true|12|false");
        assert_eq!(
            f("%.3s|%6.2f|%-6d|", json!(["abcdef", 3.14158, 42])),
            "abc|  3.14|42    |"
        );
        assert_eq!(f("%v|%#v", json!([{"a": 1}, "s"])), "{\"a\":1}|\"s\"");
        let o = json!(["a", "b", "c", -2.25, false, -3.14158, 4096, "tab\there"]);
        assert_eq!(
            f("%[2]s-%[1]s|%[3]v|%5.1f|%-5t|%08.3f|%x|%q", o),
            "b-a|c| -2.2|false|-003.142|1000|\"tab\\there\""
        );
        let r = json!([1.25, 100000000000000000000.0, 0.1, true]);
        assert_eq!(f("%s|%s|%v|%s", r), "1.25|100000000000000000000|0.1|true");
        assert_eq!(
            f("%d|%5.1f|%.0f|%.1f", json!(["5", 0.25, 2.5, 0.05])),
            "5|  0.2|2|0.1"
        );
        assert_eq!(
            f("%.2f|%5.1f|%.2f%%", json!([12.345, -0.05, 12.345])),
            "12.34| -0.1|12.34%"
        );
        assert_eq!(
            f("%%|%-4q|%6.2e", json!(["a", 1234.5])),
            "%|\"a\" |1.23e+03"
        );
        assert_eq!(
            f("%10.4v|%-10v|", json!(["abcdefgh", 7])),
            "  abcdefgh|7         |"
        );
        assert_eq!(
            f(
                "%3s|%-3s|%03d|%+.1f|%e",
                json!(["abcd", "x", -5, 2.0, 0.00012])
            ),
            "abcd|x  |-05|+2.0|1.200000e-04"
        );
    }

    #[test]
    fn nulls_unknowns_and_errors() {
        assert_eq!(f("%v|%s", json!(["x", null])), "<null>");
        assert_eq!(f("%s", json!([UNKNOWN])), UNKNOWN);
        let err = |fmt: &str, args: Value| format(fmt, args.as_array().unwrap()).unwrap_err();
        assert_eq!(
            err("%d", json!([3.5])),
            "unsupported value for \"%d\" at 0: an integer is required"
        );
        assert_eq!(
            err("%x", json!(["hi"])),
            "unsupported value for \"%x\" at 0: a number is required"
        );
        assert_eq!(
            err("%s", json!([[1]])),
            "unsupported value for \"%s\" at 0: string required"
        );
        assert!(err("%c", json!([1])).contains("unrecognized format character 'c'"));
        assert!(err("%s %s", json!(["a"])).contains("not enough arguments"));
        assert!(err("%s", json!(["a", "b"])).contains("too many arguments"));
    }
}
