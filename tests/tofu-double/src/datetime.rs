//! OpenTofu's date and time functions over RFC 3339 timestamps: `formatdate` (its own format
//! verbs), `timeadd` (Go durations) and `timecmp`; the impure `timestamp` and `uuid`, unknown
//! while planning and new values when applying, as OpenTofu evaluates them; `plantimestamp`,
//! the time the plan began (kept in a saved plan for its apply), unknown while validating.

use crate::functions::{call, declare_all, text};
use hcl::eval::{Context, FuncArgs, FuncDef, ParamType};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The names `declare` adds.
pub const NAMES: &[&str] = &[
    "formatdate",
    "plantimestamp",
    "timeadd",
    "timecmp",
    "timestamp",
    "uuid",
];

/// When the plan being made (or applied) began, for `plantimestamp`.
static PLAN_TIME: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Records when the plan began: now, or the saved plan's time.
pub fn set_plan_time(saved: Option<String>) {
    let t = saved.unwrap_or_else(|| rfc3339(&OffsetDateTime::now_utc()));
    *PLAN_TIME.lock().unwrap_or_else(|e| e.into_inner()) = Some(t);
}

/// The time recorded by `set_plan_time`, if any.
pub fn plan_time() -> Option<String> {
    PLAN_TIME.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Whether expressions are being evaluated to apply (impure functions give values) or to plan
/// or validate (they are unknown). The walk that applies sets it.
static APPLYING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn set_applying(applying: bool) {
    APPLYING.store(applying, std::sync::atomic::Ordering::SeqCst);
}

/// An impure function's value: unknown unless applying.
fn impure(value: impl FnOnce() -> String) -> Result<Value, String> {
    if APPLYING.load(std::sync::atomic::Ordering::SeqCst) {
        Ok(json!(value()))
    } else {
        Ok(json!(crate::eval::UNKNOWN))
    }
}

pub fn declare(ctx: &mut Context) {
    declare_all!(
        ctx,
        ("formatdate", 2, false, |a| {
            formatdate(&text(&a[0]), &parse(&a[1], "timestamp")?).map(Value::String)
        }),
        ("timeadd", 2, false, |a| {
            let t = parse(&a[0], "timestamp")?;
            let d = duration(&text(&a[1]))?;
            Ok(json!(rfc3339(&(t + time::Duration::nanoseconds_i128(d)))))
        }),
        ("timecmp", 2, false, |a| {
            let (x, y) = (parse(&a[0], "timestamp_a")?, parse(&a[1], "timestamp_b")?);
            Ok(json!(x.cmp(&y) as i64))
        }),
        ("timestamp", 0, false, |_| impure(|| rfc3339(
            &OffsetDateTime::now_utc()
        ))),
        ("uuid", 0, false, |_| impure(
            || uuid::Uuid::new_v4().to_string()
        )),
        ("plantimestamp", 0, false, |_| {
            Ok(json!(
                plan_time().unwrap_or_else(|| crate::eval::UNKNOWN.into())
            ))
        }),
    );
}

fn parse(v: &Value, param: &str) -> Result<OffsetDateTime, String> {
    let s = text(v);
    OffsetDateTime::parse(&s, &Rfc3339).map_err(|_| {
        format!("Invalid value for \"{param}\" parameter: not a valid RFC3339 timestamp: {s:?}")
    })
}

/// Go's `time.RFC3339` layout: whole seconds, `Z` for UTC.
fn rfc3339(t: &OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        zone(t, true, true)
    )
}

/// The offset as `Z`/`-08:00` (`z_for_utc`, `colon`) or `+0000`/`-0800`.
fn zone(t: &OffsetDateTime, z_for_utc: bool, colon: bool) -> String {
    let secs = t.offset().whole_seconds();
    if secs == 0 && z_for_utc {
        return "Z".into();
    }
    let sign = if secs < 0 { '-' } else { '+' };
    let (h, m) = (secs.abs() / 3600, secs.abs() % 3600 / 60);
    if colon {
        format!("{sign}{h:02}:{m:02}")
    } else {
        format!("{sign}{h:02}{m:02}")
    }
}

/// Go's `time.ParseDuration`, in nanoseconds.
fn duration(s: &str) -> Result<i128, String> {
    let bad = || format!("Invalid value for \"duration\" parameter: time: invalid duration {s:?}");
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(bad)?;
        let (num, tail) = rest.split_at(num_end);
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_end);
        let scale: i128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(bad()),
        };
        let (whole, frac) = num.split_once('.').unwrap_or((num, ""));
        if whole.is_empty() && frac.is_empty() {
            return Err(bad());
        }
        let w: i128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| bad())?
        };
        let f: f64 = format!("0.{frac}0").parse().map_err(|_| bad())?;
        total += w * scale + (f * scale as f64) as i128;
        rest = next;
    }
    Ok(if neg { -total } else { total })
}

/// Splits a `formatdate` spec into verbs (runs of one letter), quoted literals and other text.
fn tokens(spec: &str) -> Result<Vec<(bool, String)>, String> {
    let chars: Vec<char> = spec.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_alphabetic() {
            let n = chars[i..].iter().take_while(|&&x| x == c).count();
            out.push((true, chars[i..i + n].iter().collect()));
            i += n;
        } else if c == '\'' {
            let mut lit = String::new();
            i += 1;
            loop {
                match (chars.get(i), chars.get(i + 1)) {
                    (Some('\''), Some('\'')) => (lit.push('\''), i += 2).1,
                    (Some('\''), _) => break i += 1,
                    (Some(x), _) => (lit.push(*x), i += 1).1,
                    (None, _) => return Err("unterminated literal '".into()),
                }
            }
            out.push((false, if lit.is_empty() { "'".into() } else { lit }));
        } else {
            out.push((false, c.to_string()));
            i += 1;
        }
    }
    Ok(out)
}

/// `formatdate(spec, timestamp)`.
fn formatdate(spec: &str, t: &OffsetDateTime) -> Result<String, String> {
    let mut out = String::new();
    for (verb, tok) in tokens(spec)? {
        if verb {
            out.push_str(&verb_text(&tok, t)?);
        } else {
            out.push_str(&tok);
        }
    }
    Ok(out)
}

fn verb_text(tok: &str, t: &OffsetDateTime) -> Result<String, String> {
    let hour12 = match t.hour() % 12 {
        0 => 12,
        h => h,
    };
    let month = t.month().to_string();
    let weekday = t.weekday().to_string();
    Ok(match tok {
        "YY" => format!("{:02}", t.year().rem_euclid(100)),
        "YYYY" => format!("{:04}", t.year()),
        "M" => u8::from(t.month()).to_string(),
        "MM" => format!("{:02}", u8::from(t.month())),
        "MMM" => month[..3].to_string(),
        "MMMM" => month,
        "D" => t.day().to_string(),
        "DD" => format!("{:02}", t.day()),
        "EEE" => weekday[..3].to_string(),
        "EEEE" => weekday,
        "h" => t.hour().to_string(),
        "hh" => format!("{:02}", t.hour()),
        "H" => hour12.to_string(),
        "HH" => format!("{hour12:02}"),
        "AA" => if t.hour() < 12 { "AM" } else { "PM" }.into(),
        "aa" => if t.hour() < 12 { "am" } else { "pm" }.into(),
        "m" => t.minute().to_string(),
        "mm" => format!("{:02}", t.minute()),
        "s" => t.second().to_string(),
        "ss" => format!("{:02}", t.second()),
        "Z" => zone(t, true, true),
        "ZZZ" if t.offset().is_utc() => "UTC".into(),
        "ZZZ" | "ZZZZ" => zone(t, false, false),
        "ZZZZZ" => zone(t, false, true),
        other => {
            return Err(format!(
                "Invalid value for \"format\" parameter: invalid date format verb {other:?}"
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fd(spec: &str, t: &str) -> String {
        formatdate(spec, &parse(&json!(t), "t").unwrap()).unwrap()
    }

    /// Expected values are what Terraform 1.11.4 printed for the same calls.
    #[test]
    fn formats_and_durations_as_the_real_binary() {
        assert_eq!(
            fd("EEEE, DD-MMM-YY hh:mm:ss ZZZZ", "2018-01-02T23:12:01-08:00"),
            "Tuesday, 02-Jan-18 23:12:01 -0800"
        );
        assert_eq!(
            fd(
                "h:mm AA 'o''clock' aa D M MMMM Z ZZZZZ",
                "2018-01-02T03:04:05.123+05:30"
            ),
            "3:04 AM o'clock am 2 1 January +05:30 +05:30"
        );
        assert_eq!(
            fd("HH:mm AA ZZZ Z", "2018-01-02T00:04:05Z"),
            "12:04 AM UTC Z"
        );
        assert_eq!(duration("-1h30m45.5s").unwrap(), -5_445_500_000_000);
        assert_eq!(duration("1.5s").unwrap(), 1_500_000_000);
        assert!(duration("10x").is_err());
        let t = parse(&json!("2017-11-22T00:00:00+02:00"), "t").unwrap();
        let later = t + time::Duration::nanoseconds_i128(duration("25h").unwrap());
        assert_eq!(rfc3339(&later), "2017-11-23T01:00:00+02:00");
    }
}
