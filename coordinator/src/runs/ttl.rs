//! Environments with a time to live, as plain data and pure decisions: an environment's state,
//! when its reminder is due, how long a failed teardown waits before the next attempt, and
//! what a destroy run's end means for it. No I/O here (`lifecycle/ttl.rs` does the work).

use std::fmt;
use std::str::FromStr;

/// Where an environment with a TTL stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EnvState {
    /// Applied, not yet expired.
    Active,
    /// Expired: its destroy run is queued or running, or the next attempt waits its backoff.
    TearingDown,
    /// A destroy run ended `applied` (or had nothing to destroy).
    Destroyed,
    /// Every teardown attempt failed: someone has to look.
    TeardownFailed,
}

impl EnvState {
    pub const ALL: [EnvState; 4] = [
        EnvState::Active,
        EnvState::TearingDown,
        EnvState::Destroyed,
        EnvState::TeardownFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EnvState::Active => "active",
            EnvState::TearingDown => "tearing_down",
            EnvState::Destroyed => "destroyed",
            EnvState::TeardownFailed => "teardown_failed",
        }
    }
}

impl fmt::Display for EnvState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EnvState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        EnvState::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| format!("unknown environment state {s:?}"))
    }
}

/// The TTL knobs (coordinator flags `--ttl-reminder`, `--ttl-retry-backoff`,
/// `--ttl-retry-max-backoff`, `--ttl-max-attempts`).
#[derive(Clone, Debug)]
pub struct TtlPolicy {
    /// How long before expiry the reminder goes out; 0: 10% of the TTL, at most 15 minutes.
    pub reminder_ms: i64,
    /// The wait after the first failed teardown; doubled after each further failure.
    pub backoff_ms: i64,
    /// The longest wait between teardown attempts.
    pub max_backoff_ms: i64,
    /// Failed teardown attempts after which the environment is `teardown_failed`.
    pub max_attempts: i64,
}

impl Default for TtlPolicy {
    fn default() -> Self {
        TtlPolicy {
            reminder_ms: 0,
            backoff_ms: 60_000,
            max_backoff_ms: 3_600_000,
            max_attempts: 5,
        }
    }
}

/// The default reminder lead when none is configured: 10% of the TTL, capped at 15 minutes.
pub const DEFAULT_REMINDER_CAP_MS: i64 = 15 * 60 * 1000;

impl TtlPolicy {
    /// How long before expiry an environment with this TTL is reminded about.
    pub fn reminder_lead_ms(&self, ttl_ms: i64) -> i64 {
        if self.reminder_ms > 0 {
            self.reminder_ms
        } else {
            (ttl_ms / 10).min(DEFAULT_REMINDER_CAP_MS)
        }
    }

    /// How long to wait after `failed` failed attempts (1, 2, …) before the next one:
    /// backoff, 2×backoff, 4×backoff … capped.
    pub fn backoff_after_ms(&self, failed: i64) -> i64 {
        let doublings = (failed - 1).clamp(0, 30) as u32;
        self.backoff_ms
            .saturating_mul(1_i64 << doublings)
            .min(self.max_backoff_ms)
    }
}

/// What a failed teardown attempt leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterFailure {
    /// Try again at this time.
    RetryAt(i64),
    /// Give up: `teardown_failed`.
    GiveUp,
}

/// The decision after the `failed`-th failed teardown attempt ending at `now`.
pub fn after_failed_teardown(p: &TtlPolicy, failed: i64, now: i64) -> AfterFailure {
    if failed >= p.max_attempts {
        AfterFailure::GiveUp
    } else {
        AfterFailure::RetryAt(now + p.backoff_after_ms(failed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip() {
        for s in EnvState::ALL {
            assert_eq!(s.as_str().parse::<EnvState>().unwrap(), s);
        }
        assert!("gone".parse::<EnvState>().is_err());
    }

    #[test]
    fn reminder_is_ten_percent_capped_unless_configured() {
        let p = TtlPolicy::default();
        assert_eq!(p.reminder_lead_ms(3_600_000), 360_000);
        assert_eq!(p.reminder_lead_ms(4 * 3_600_000), DEFAULT_REMINDER_CAP_MS);
        let p = TtlPolicy {
            reminder_ms: 5_000,
            ..TtlPolicy::default()
        };
        assert_eq!(p.reminder_lead_ms(4 * 3_600_000), 5_000);
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let p = TtlPolicy {
            backoff_ms: 60_000,
            max_backoff_ms: 300_000,
            ..TtlPolicy::default()
        };
        let waits: Vec<i64> = (1..=5).map(|n| p.backoff_after_ms(n)).collect();
        assert_eq!(waits, [60_000, 120_000, 240_000, 300_000, 300_000]);
        assert_eq!(p.backoff_after_ms(200), 300_000);
    }

    #[test]
    fn gives_up_after_max_attempts() {
        let p = TtlPolicy {
            max_attempts: 3,
            ..TtlPolicy::default()
        };
        assert_eq!(
            after_failed_teardown(&p, 1, 1_000),
            AfterFailure::RetryAt(61_000)
        );
        assert_eq!(
            after_failed_teardown(&p, 2, 1_000),
            AfterFailure::RetryAt(121_000)
        );
        assert_eq!(after_failed_teardown(&p, 3, 1_000), AfterFailure::GiveUp);
    }
}
