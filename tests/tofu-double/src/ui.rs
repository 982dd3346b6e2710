//! Output in OpenTofu's two shapes: the `-json` machine-readable UI stream (one object per line,
//! `@level`/`@message`/`@module`/`@timestamp`/`type`) and plain human text.

use serde_json::{json, Map, Value};
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// The OpenTofu version the stand-in reports and imitates.
pub const VERSION: &str = "1.9.0";
/// `JSON_UI_VERSION` of OpenTofu 1.6 to HEAD.
pub const UI_VERSION: &str = "1.2";

/// An error or warning in OpenTofu's diagnostic shape.
#[derive(Debug, Clone)]
pub struct Diag {
    pub severity: &'static str,
    pub summary: String,
    pub detail: String,
    pub address: Option<String>,
}

impl Diag {
    pub fn error(summary: impl Into<String>, detail: impl Into<String>) -> Diag {
        Diag {
            severity: "error",
            summary: summary.into(),
            detail: detail.into(),
            address: None,
        }
    }

    pub fn warning(summary: impl Into<String>, detail: impl Into<String>) -> Diag {
        Diag {
            severity: "warning",
            ..Diag::error(summary, detail)
        }
    }

    pub fn with_address(mut self, addr: impl Into<String>) -> Diag {
        self.address = Some(addr.into());
        self
    }

    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("severity".into(), json!(self.severity));
        m.insert("summary".into(), json!(self.summary));
        m.insert("detail".into(), json!(self.detail));
        if let Some(a) = &self.address {
            m.insert("address".into(), json!(a));
        }
        Value::Object(m)
    }
}

/// Formats a time as RFC 3339 with microseconds and a local offset of +00:00, like hclog does.
pub fn rfc3339_micros(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (y, mo, da, h, mi, s) = civil(d.as_secs() as i64);
    format!(
        "{y:04}-{mo:02}-{da:02}T{h:02}:{mi:02}:{s:02}.{:06}Z",
        d.subsec_micros()
    )
}

/// Formats a time as RFC 3339 with nanoseconds (LockInfo `Created`).
pub fn rfc3339_nanos(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (y, mo, da, h, mi, s) = civil(d.as_secs() as i64);
    format!(
        "{y:04}-{mo:02}-{da:02}T{h:02}:{mi:02}:{s:02}.{:09}Z",
        d.subsec_nanos()
    )
}

/// Formats a time as RFC 3339 in whole seconds (plan `timestamp`).
pub fn rfc3339_secs(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (y, mo, da, h, mi, s) = civil(d.as_secs() as i64);
    format!("{y:04}-{mo:02}-{da:02}T{h:02}:{mi:02}:{s:02}Z")
}

fn civil(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's days-from-civil inverse.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = if m <= 2 { y + 1 } else { y };
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        ((rem % 3600) / 60) as u32,
        (rem % 60) as u32,
    )
}

/// Where a command writes its user-facing output.
pub struct Ui {
    pub json: bool,
}

impl Ui {
    /// Writes one machine-readable line (only in `-json` mode).
    pub fn line(&self, level: &str, typ: &str, message: &str, extra: Value) {
        let mut m = Map::new();
        m.insert("@level".into(), json!(level));
        m.insert("@message".into(), json!(message));
        m.insert("@module".into(), json!("tofu.ui"));
        m.insert(
            "@timestamp".into(),
            json!(rfc3339_micros(SystemTime::now())),
        );
        if let Value::Object(e) = extra {
            for (k, v) in e {
                m.insert(k, v);
            }
        }
        m.insert("type".into(), json!(typ));
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", Value::Object(m));
        let _ = out.flush();
    }

    /// The `version` line every `-json` stream begins with.
    pub fn version_line(&self) {
        if self.json {
            self.line(
                "info",
                "version",
                &format!("OpenTofu {VERSION}"),
                json!({"tofu": VERSION, "ui": UI_VERSION}),
            );
        }
    }

    /// Human text on stdout (nothing in `-json` mode).
    pub fn human(&self, text: &str) {
        if !self.json {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{text}");
            let _ = out.flush();
        }
    }

    /// A `log` line in JSON mode, plain text otherwise.
    pub fn log(&self, text: &str) {
        if self.json {
            self.line("info", "log", text, json!({}));
        } else {
            self.human(text);
        }
    }

    /// Reports a diagnostic the way the selected view does.
    pub fn diag(&self, d: &Diag) {
        if self.json {
            let level = if d.severity == "error" {
                "error"
            } else {
                "warn"
            };
            let prefix = if d.severity == "error" {
                "Error"
            } else {
                "Warning"
            };
            self.line(
                level,
                "diagnostic",
                &format!("{prefix}: {}", d.summary),
                json!({"diagnostic": d.to_json()}),
            );
        } else {
            let prefix = if d.severity == "error" {
                "Error"
            } else {
                "Warning"
            };
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "╷\n│ {prefix}: {}\n│", d.summary);
            if let Some(a) = &d.address {
                let _ = writeln!(err, "│   with {a},");
            }
            for l in d.detail.lines() {
                let _ = writeln!(err, "│ {l}");
            }
            let _ = writeln!(err, "╵");
        }
    }
}

/// `TF_LOG` (TRACE, DEBUG, INFO, WARN, ERROR, JSON; `off` or unset = silent) to stderr, or appended
/// to `TF_LOG_PATH` (honoured only when `TF_LOG` is set, as in OpenTofu).
pub fn tf_log(level: &str, msg: &str) {
    let Ok(setting) = std::env::var("TF_LOG") else {
        return;
    };
    let rank = |l: &str| match l.to_ascii_uppercase().as_str() {
        "TRACE" | "JSON" => 0,
        "DEBUG" => 1,
        "INFO" => 2,
        "WARN" => 3,
        "ERROR" => 4,
        _ => 9,
    };
    if setting.is_empty() || setting.eq_ignore_ascii_case("off") || rank(level) < rank(&setting) {
        return;
    }
    let ts = rfc3339_micros(SystemTime::now());
    let line = if setting.eq_ignore_ascii_case("json") {
        format!(
            "{}\n",
            json!({"@level": level.to_ascii_lowercase(), "@message": msg, "@timestamp": ts})
        )
    } else {
        format!("{ts} [{}] {msg}\n", level.to_ascii_uppercase())
    };
    match std::env::var("TF_LOG_PATH") {
        Ok(p) if !p.is_empty() => {
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
            {
                let _ = f.write_all(line.as_bytes());
            }
        }
        _ => {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_rfc3339() {
        let t = UNIX_EPOCH + Duration::from_micros(1_716_658_361_123_456);
        assert_eq!(rfc3339_micros(t), "2024-05-25T17:32:41.123456Z");
        assert_eq!(rfc3339_secs(t), "2024-05-25T17:32:41Z");
        assert_eq!(rfc3339_micros(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339_secs(leap), "2000-02-29T00:00:00Z");
    }
}
