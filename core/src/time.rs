//! Wall-clock instants as the protocol sees them.
//!
//! The core never reads a clock: every `handle_*` call takes `now`. Time is
//! milliseconds since the Unix epoch rather than `std::time::Instant` because
//! it is what the wire carries (`last_contact_at`), it survives a restart of
//! genesis with `--state`, and a browser can produce it (`Date.now()`).

use std::fmt;
use std::ops::{Add, Sub};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The instant `ms` milliseconds after the epoch.
    pub const fn from_millis(ms: u64) -> Self {
        Self(ms)
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, rhs: Duration) -> Timestamp {
        let ms = u64::try_from(rhs.as_millis()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_add(ms))
    }
}

impl Sub<Duration> for Timestamp {
    type Output = Timestamp;
    fn sub(self, rhs: Duration) -> Timestamp {
        let ms = u64::try_from(rhs.as_millis()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_sub(ms))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// Exponential backoff with full jitter: the delay before retry number
/// `attempt` (0 for the first), uniform in `[min, min·2^attempt]` and capped
/// at `max`; `unit` is a random number in `[0, 1)` from the caller's seeded
/// generator (the core draws no randomness of its own).
pub fn backoff(min: Duration, max: Duration, attempt: u32, unit: f64) -> Duration {
    let ceiling = min
        .saturating_mul(1u32 << attempt.min(16))
        .min(max)
        .max(min);
    min + (ceiling - min).mul_f64(unit.clamp(0.0, 1.0))
}

/// Parses a human duration such as `5s`, `250ms`, `2m` or `1h`.
///
/// Used by every binary's flags so that the rule is written once.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| DurationError(text.to_owned()))?;
    let (digits, unit) = text.split_at(split);
    let value: u64 = digits.parse().map_err(|_| DurationError(text.to_owned()))?;
    let per_unit_ms = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(DurationError(text.to_owned())),
    };
    value
        .checked_mul(per_unit_ms)
        .map(Duration::from_millis)
        .ok_or_else(|| DurationError(text.to_owned()))
}

/// A duration string that is not a number followed by `ms`, `s`, `m` or `h`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {0:?}: expected a number followed by ms, s, m or h (e.g. 5s, 250ms)")]
pub struct DurationError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_human_durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["", "5", "s", "5x", "-1s", "1.5s", "99999999999999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn arithmetic_saturates() {
        let t = Timestamp(10);
        assert_eq!(t - Duration::from_millis(20), Timestamp(0));
        assert_eq!(
            Timestamp(u64::MAX) + Duration::from_millis(1),
            Timestamp(u64::MAX)
        );
        assert_eq!(Timestamp(30).saturating_since(t), Duration::from_millis(20));
        assert_eq!(t.saturating_since(Timestamp(30)), Duration::ZERO);
    }
}
