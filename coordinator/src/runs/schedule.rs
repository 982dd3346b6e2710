//! Schedules, pure: a cron expression in a named time zone, its ticks, and what a sweep does
//! with the ticks it finds due (the missed-tick policy). Unit-tested; the table is
//! `store/schedules.rs`, the sweep `lifecycle/schedule.rs`.

use croner::parser::{CronParser, Seconds};
use croner::Cron;
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};
use std::fmt;
use std::str::FromStr;

/// A parsed cron expression and its time zone.
#[derive(Clone, Debug)]
pub struct CronSpec {
    cron: Cron,
    tz: TimeZone,
}

impl CronSpec {
    /// Parses `expr` (5 fields, or 6 with seconds first; `@daily` and the like) in the IANA
    /// time zone `tz` (empty: UTC). Errors name the problem and the fix.
    pub fn parse(expr: &str, tz: &str) -> Result<CronSpec, String> {
        let parser = CronParser::builder().seconds(Seconds::Optional).build();
        let cron = parser.parse(expr).map_err(|e| {
            format!("cron expression {expr:?} is not valid ({e}): use 5 fields (minute hour day-of-month month day-of-week, e.g. \"0 3 * * *\") or 6 with seconds first")
        })?;
        let tz = match tz {
            "" | "UTC" => TimeZone::UTC,
            name => TimeZone::get(name).map_err(|_| {
                format!("time zone {name:?} is not known: use an IANA name such as UTC, Europe/Berlin or America/New_York")
            })?,
        };
        Ok(CronSpec { cron, tz })
    }

    /// The first tick strictly after `after_ms` (Unix milliseconds), if there is one.
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        let ts = Timestamp::from_millisecond(after_ms).ok()?;
        let z = Zoned::new(ts, self.tz.clone());
        let next = self.cron.find_next_occurrence(&z, false).ok()?;
        Some(next.timestamp().as_millisecond())
    }
}

/// What to do with ticks missed while no coordinator swept (down, restarting).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missed {
    /// Fire once for the latest missed tick, however late (the default).
    Once,
    /// Fire only a tick that is at most the grace period late; older ones are recorded as
    /// missed.
    Skip,
}

impl Missed {
    pub fn as_str(self) -> &'static str {
        match self {
            Missed::Once => "once",
            Missed::Skip => "skip",
        }
    }
}

impl FromStr for Missed {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "once" | "" => Ok(Missed::Once),
            "skip" => Ok(Missed::Skip),
            o => Err(format!("missed-tick policy {o:?}: use once or skip")),
        }
    }
}

impl fmt::Display for Missed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How late a tick may fire under [`Missed::Skip`].
pub const SKIP_GRACE_MS: i64 = 60_000;

/// At most this many ticks are walked to find the latest due one (a schedule every second
/// that slept a week is settled in one step, its older ticks counted as missed).
const MAX_WALK: usize = 100_000;

/// What one sweep does with a schedule whose next tick is due.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Due {
    /// The tick acted on (the latest due one).
    pub tick_ms: i64,
    /// Fire it (else it is recorded as missed).
    pub fire: bool,
    /// Earlier due ticks passed over.
    pub passed_over: u64,
    /// The schedule's next tick after this sweep (None: the expression has no more).
    pub next_ms: Option<i64>,
}

/// The decision for a schedule whose stored next tick is `next_ms`, at `now`; None when
/// nothing is due yet.
pub fn due(spec: &CronSpec, next_ms: i64, now: i64, missed: Missed) -> Option<Due> {
    if next_ms > now {
        return None;
    }
    let (mut latest, mut passed_over) = (next_ms, 0u64);
    let mut following = spec.next_after(latest);
    for _ in 0..MAX_WALK {
        match following {
            Some(t) if t <= now => {
                latest = t;
                passed_over += 1;
                following = spec.next_after(t);
            }
            _ => break,
        }
    }
    if following.is_some_and(|t| t <= now) {
        following = spec.next_after(now);
    }
    let fire = match missed {
        Missed::Once => true,
        Missed::Skip => now - latest <= SKIP_GRACE_MS,
    };
    Some(Due {
        tick_ms: latest,
        fire,
        passed_over,
        next_ms: following,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn five_and_six_fields_in_a_time_zone() {
        let daily = CronSpec::parse("0 3 * * *", "Europe/Berlin").unwrap();
        // 03:00 in Berlin in winter is 02:00 UTC.
        assert_eq!(
            daily.next_after(ms("2026-12-07T00:00:00Z")),
            Some(ms("2026-12-07T02:00:00Z"))
        );
        let every2s = CronSpec::parse("*/2 * * * * *", "").unwrap();
        assert_eq!(
            every2s.next_after(ms("2026-12-07T00:00:01Z")),
            Some(ms("2026-12-07T00:00:02Z"))
        );
        // Strictly after: a tick is never its own successor.
        assert_eq!(
            every2s.next_after(ms("2026-12-07T00:00:02Z")),
            Some(ms("2026-12-07T00:00:04Z"))
        );
    }

    #[test]
    fn bad_expressions_and_zones_are_refused_with_the_fix() {
        let e = CronSpec::parse("61 * * * *", "").unwrap_err();
        assert!(e.contains("not valid") && e.contains("5 fields"), "{e}");
        let e = CronSpec::parse("0 3 * *", "").unwrap_err();
        assert!(e.contains("not valid"), "{e}");
        let e = CronSpec::parse("0 3 * * *", "Mars/Olympus").unwrap_err();
        assert!(e.contains("Mars/Olympus") && e.contains("IANA"), "{e}");
        assert!("sometimes".parse::<Missed>().is_err());
    }

    #[test]
    fn a_due_tick_fires_once_and_the_next_one_is_in_the_future() {
        let s = CronSpec::parse("* * * * *", "").unwrap();
        let t = ms("2026-12-07T10:00:00Z");
        assert_eq!(due(&s, t, t - 1, Missed::Once), None);
        let d = due(&s, t, t + 5_000, Missed::Once).unwrap();
        assert_eq!(
            d,
            Due {
                tick_ms: t,
                fire: true,
                passed_over: 0,
                next_ms: Some(t + 60_000)
            }
        );
    }

    #[test]
    fn missed_ticks_fire_once_or_are_skipped_when_too_late() {
        let s = CronSpec::parse("* * * * *", "").unwrap();
        let t = ms("2026-12-07T10:00:00Z");
        let now = t + 10 * 60_000 + 90_000; // ten minutes and a half after the stored tick
        let d = due(&s, t, now, Missed::Once).unwrap();
        assert_eq!(d.tick_ms, t + 11 * 60_000);
        assert_eq!((d.fire, d.passed_over), (true, 11));
        assert!(d.next_ms.unwrap() > now);
        // Skip: the latest tick is 30 s late: within the grace, it fires.
        let d = due(&s, t, now, Missed::Skip).unwrap();
        assert!(d.fire);
        // Skip: an hourly tick 90 s late is beyond the grace: recorded as missed, and the
        // next one is the next hour's.
        let hourly = CronSpec::parse("0 * * * *", "").unwrap();
        let d = due(&hourly, t, t + 90_000, Missed::Skip).unwrap();
        assert_eq!((d.tick_ms, d.fire, d.passed_over), (t, false, 0));
        assert_eq!(d.next_ms, Some(t + 3_600_000));
    }
}
