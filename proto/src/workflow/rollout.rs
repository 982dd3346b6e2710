//! A `for_each` stack's rollout: its targets go in waves, a failure budget halts the rest, an
//! optional pause between waves. The arithmetic is here (pure) so the docs' rules are tested:
//!
//! - `waves` are cumulative: each entry is how many targets have started by the end of that wave,
//!   as a count (`3`) or a share of all targets (`"10%"`, rounded **up**); each wave adds at least
//!   one target; after the last entry the rest goes in one final wave. `canary = N` is a first
//!   wave of N targets.
//! - `max_failures` is a count or a share (rounded **down**) of all targets; the rollout halts
//!   when failures **exceed** it (equal is still fine); targets already running finish.
//! - `max_parallel` caps how many targets of the stack run at once (0: no cap).
//! - `pause = "approval"` waits for `tofuflow rollout resume` between waves; a duration
//!   (`"10m"`, `"30s"`, `"1h"`) waits that long.

use super::Pos;

/// A count of targets or a share of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    Count(u32),
    Percent(u32),
}

impl Size {
    fn parse(v: &hcl::Value) -> Result<Size, String> {
        match v {
            hcl::Value::Number(n) => n
                .as_u64()
                .filter(|n| *n >= 1 && *n <= 100_000)
                .map(|n| Size::Count(n as u32))
                .ok_or_else(|| format!("{n} is not a count of targets (a whole number from 1)")),
            hcl::Value::String(s) => s
                .strip_suffix('%')
                .and_then(|p| p.trim().parse::<u32>().ok())
                .filter(|p| (1..=100).contains(p))
                .map(Size::Percent)
                .ok_or_else(|| format!("{s:?} is not a share: write it as \"10%\" (1% to 100%)")),
            _ => Err(format!("{v} is neither a count nor a share like \"10%\"")),
        }
    }

    /// How many of `total` targets, rounded up (waves) or down (budgets).
    fn of(self, total: usize, up: bool) -> usize {
        match self {
            Size::Count(n) => n as usize,
            Size::Percent(p) => {
                let x = total * p as usize;
                if up {
                    x.div_ceil(100)
                } else {
                    x / 100
                }
            }
        }
    }
}

/// What happens between waves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pause {
    None,
    /// Until `tofuflow rollout resume`.
    Approval,
    /// This many milliseconds.
    For(u64),
}

/// A stack's `rollout { ... }` block.
#[derive(Clone, Debug, PartialEq)]
pub struct Rollout {
    pub canary: u32,
    pub waves: Vec<Size>,
    pub max_parallel: u32,
    pub max_failures: Size,
    pub pause: Pause,
    pub pos: Pos,
}

impl Rollout {
    /// How many targets have started by the end of each wave (the last is `total`).
    pub fn wave_ends(&self, total: usize) -> Vec<usize> {
        let mut ends = Vec::new();
        let mut last = 0;
        let sizes = (self.canary > 0).then_some(Size::Count(self.canary));
        for s in sizes.into_iter().chain(self.waves.iter().copied()) {
            let end = s.of(total, true).max(last + 1).min(total);
            if end > last {
                ends.push(end);
                last = end;
            }
        }
        if last < total {
            ends.push(total);
        }
        ends
    }

    /// How many failures the rollout tolerates (it halts when there are more).
    pub fn budget(&self, total: usize) -> usize {
        self.max_failures.of(total, false)
    }
}

/// Reads a `rollout` block's attributes (evaluated: they are literals).
pub fn read(attrs: &[(String, hcl::Value)], pos: Pos) -> Result<Rollout, String> {
    let mut r = Rollout {
        canary: 0,
        waves: Vec::new(),
        max_parallel: 0,
        max_failures: Size::Count(0),
        pause: Pause::None,
        pos,
    };
    for (k, v) in attrs {
        let whole = |v: &hcl::Value| {
            v.as_u64()
                .filter(|n| *n <= 100_000)
                .map(|n| n as u32)
                .ok_or_else(|| format!("rollout {k}: {v} is not a whole number"))
        };
        match k.as_str() {
            "canary" => r.canary = whole(v)?,
            "max_parallel" => r.max_parallel = whole(v)?,
            "max_failures" => {
                r.max_failures = match v {
                    hcl::Value::Number(n) if n.as_u64() == Some(0) => Size::Count(0),
                    _ => Size::parse(v).map_err(|e| format!("rollout max_failures: {e}"))?,
                }
            }
            "waves" => {
                let items = v.as_array().ok_or("rollout waves: a list, e.g. [1, \"10%\", \"50%\", \"100%\"]")?;
                r.waves = items.iter().map(Size::parse).collect::<Result<_, _>>().map_err(|e| format!("rollout waves: {e}"))?;
            }
            "pause" => r.pause = pause(v)?,
            other => return Err(format!("unknown attribute `{other}` in rollout: it takes canary, waves, max_parallel, max_failures, pause")),
        }
    }
    Ok(r)
}

fn pause(v: &hcl::Value) -> Result<Pause, String> {
    let s = v
        .as_str()
        .ok_or("rollout pause: \"approval\" or a duration like \"10m\"")?;
    if s == "approval" {
        return Ok(Pause::Approval);
    }
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n.parse().map_err(|_| {
        format!("rollout pause {s:?}: \"approval\" or a duration like \"30s\", \"10m\", \"1h\"")
    })?;
    let ms = match unit {
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => {
            return Err(format!(
                "rollout pause {s:?}: \"approval\" or a duration like \"30s\", \"10m\", \"1h\""
            ))
        }
    };
    Ok(Pause::For(n * ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(canary: u32, waves: &[Size]) -> Rollout {
        Rollout {
            canary,
            waves: waves.to_vec(),
            max_parallel: 0,
            max_failures: Size::Count(0),
            pause: Pause::None,
            pos: Pos::default(),
        }
    }

    #[test]
    fn waves_are_cumulative_shares_rounded_up() {
        use Size::*;
        let x = r(1, &[Percent(10), Percent(50), Percent(100)]);
        assert_eq!(x.wave_ends(10), [1, 2, 5, 10]);
        assert_eq!(x.wave_ends(200), [1, 20, 100, 200]);
        // 10% of 3 rounds up to 1, which the canary already covers: each wave adds one.
        assert_eq!(x.wave_ends(3), [1, 2, 3]);
        // Entries that end early leave the rest for one last wave.
        assert_eq!(r(0, &[Count(2)]).wave_ends(5), [2, 5]);
        assert_eq!(r(0, &[]).wave_ends(4), [4]);
    }

    #[test]
    fn the_budget_is_rounded_down_and_must_be_exceeded() {
        let mut x = r(0, &[]);
        x.max_failures = Size::Percent(10);
        assert_eq!(x.budget(50), 5);
        assert_eq!(x.budget(9), 0);
        x.max_failures = Size::Count(2);
        assert_eq!(x.budget(10), 2);
    }

    #[test]
    fn blocks_are_read_with_clear_errors() {
        let v = |s: &str| -> hcl::Value {
            let body: hcl::Map<String, hcl::Value> = hcl::from_str(&format!("x = {s}")).unwrap();
            body["x"].clone()
        };
        let a = [
            ("canary".to_string(), v("1")),
            ("waves".to_string(), v("[1, \"10%\", \"100%\"]")),
            ("max_failures".to_string(), v("\"10%\"")),
            ("pause".to_string(), v("\"10m\"")),
        ];
        let x = read(&a, Pos::default()).unwrap();
        assert_eq!(x.pause, Pause::For(600_000));
        assert_eq!(x.max_failures, Size::Percent(10));
        let bad = [("waves".to_string(), v("[\"ten\"]"))];
        assert!(read(&bad, Pos::default())
            .unwrap_err()
            .contains("write it as \"10%\""));
        let bad = [("pause".to_string(), v("\"soon\""))];
        assert!(read(&bad, Pos::default()).is_err());
    }
}
