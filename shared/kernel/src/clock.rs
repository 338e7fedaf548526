//! Clocks. Decisions take "now" from a [`Clock`], so tests and replays control time.

use std::sync::Mutex;
use time::{Date, Duration, OffsetDateTime, UtcOffset};

/// A source of the current time.
/// China Standard Time (UTC+8), in which health-code days are counted.
pub const CHINA_STANDARD_TIME: UtcOffset = match UtcOffset::from_hms(8, 0, 0) {
    Ok(offset) => offset,
    Err(_) => UtcOffset::UTC,
};

/// The calendar day of `at` in China Standard Time: "14 days since
/// exposure" counts Beijing days, not UTC days.
pub fn china_date(at: OffsetDateTime) -> Date {
    at.to_offset(CHINA_STANDARD_TIME).date()
}

pub trait Clock: Send + Sync {
    /// The current instant (UTC).
    fn now(&self) -> OffsetDateTime;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that stands still until told to move (tests, audit replays).
#[derive(Debug)]
pub struct FixedClock {
    now: Mutex<OffsetDateTime>,
}

impl FixedClock {
    /// A clock fixed at `now`.
    pub fn new(now: OffsetDateTime) -> Self {
        Self {
            now: Mutex::new(now),
        }
    }

    /// Moves the clock to `now`.
    pub fn set(&self, now: OffsetDateTime) {
        match self.now.lock() {
            Ok(mut guard) => *guard = now,
            Err(poisoned) => *poisoned.into_inner() = now,
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let next = self.now() + by;
        self.set(next);
    }
}

impl Clock for FixedClock {
    fn now(&self) -> OffsetDateTime {
        match self.now.lock() {
            Ok(guard) => *guard,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }
}

impl<C: Clock + ?Sized> Clock for std::sync::Arc<C> {
    fn now(&self) -> OffsetDateTime {
        (**self).now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn fixed_clock_stands_still_until_advanced() {
        let clock = FixedClock::new(datetime!(2020-06-11 08:00 UTC));
        assert_eq!(clock.now(), datetime!(2020-06-11 08:00 UTC));
        clock.advance(Duration::days(14));
        assert_eq!(clock.now(), datetime!(2020-06-25 08:00 UTC));
    }
}

#[cfg(test)]
mod china_date_tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn an_evening_in_utc_is_already_the_next_day_in_beijing() {
        assert_eq!(
            china_date(datetime!(2020-06-11 17:30 UTC)),
            time::macros::date!(2020 - 06 - 12)
        );
        assert_eq!(
            china_date(datetime!(2020-06-11 15:59 UTC)),
            time::macros::date!(2020 - 06 - 11)
        );
    }
}
