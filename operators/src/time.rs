//! Business time: instants, local dates and billing periods in `Asia/Almaty`.
//!
//! An instant is a [`Ts`]: milliseconds since the Unix epoch, UTC. Periods are calendar
//! months in Kazakhstan local time (tz database `Asia/Almaty`: UTC+6 until 2024-03-01,
//! UTC+5 after; DOMAIN.md §4). Sub-millisecond digits of an input timestamp are dropped.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Asia::Almaty;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Milliseconds in one second.
pub const MILLIS_PER_SECOND: i64 = 1_000;
/// Milliseconds in one hour.
pub const MILLIS_PER_HOUR: i64 = 3_600 * MILLIS_PER_SECOND;
/// Milliseconds in one day of 24 hours (not a calendar day: see [`day_end`]).
pub const MILLIS_PER_DAY: i64 = 24 * MILLIS_PER_HOUR;

/// Timestamps of the dataflow: effective time in milliseconds since the epoch (the
/// non-negative [`Ts`] of an instant; `flow::time_of`).
pub type Time = u64;

/// An instant: milliseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Ts(pub i64);

impl Ts {
    /// The earliest representable instant (used as "before everything").
    pub const MIN: Ts = Ts(i64::MIN);
    /// The latest representable instant.
    pub const MAX: Ts = Ts(i64::MAX);

    /// Parses an RFC 3339 timestamp with offset (`2026-01-15T09:30:00+05:00`).
    pub fn parse_rfc3339(text: &str) -> Option<Ts> {
        let parsed = DateTime::parse_from_rfc3339(text).ok()?;
        Some(Ts(parsed.timestamp_millis()))
    }

    /// This instant plus `millis` (saturating).
    pub fn plus_millis(self, millis: i64) -> Ts {
        Ts(self.0.saturating_add(millis))
    }

    /// This instant minus `millis` (saturating).
    pub fn minus_millis(self, millis: i64) -> Ts {
        Ts(self.0.saturating_sub(millis))
    }

    fn utc(self) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp_millis(self.0).unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// The local (`Asia/Almaty`) calendar date of this instant.
    pub fn local_date(self) -> NaiveDate {
        self.utc().with_timezone(&Almaty).date_naive()
    }

    /// The billing period this instant falls in.
    pub fn period(self) -> Period {
        let date = self.local_date();
        Period::new(date.year(), date.month())
    }

    /// RFC 3339 in Almaty local time with its offset, milliseconds only when non-zero:
    /// `2026-01-15T09:30:00+05:00`. Every output timestamp is rendered this way, so the
    /// same instant always prints the same text whatever offset its input carried.
    pub fn render(self) -> String {
        let local = self.utc().with_timezone(&Almaty);
        if self.0.rem_euclid(MILLIS_PER_SECOND) == 0 {
            local.format("%Y-%m-%dT%H:%M:%S%:z").to_string()
        } else {
            local.format("%Y-%m-%dT%H:%M:%S%.3f%:z").to_string()
        }
    }

    /// The same wall-clock time one calendar year later in local time (29 February maps to
    /// 28 February). Used for the dormant-advance rule (DOMAIN.md §3).
    pub fn plus_one_local_year(self) -> Ts {
        let local = self.utc().with_timezone(&Almaty).naive_local();
        let next = local
            .checked_add_months(chrono::Months::new(12))
            .unwrap_or(NaiveDateTime::MAX);
        local_to_ts(next)
    }

    /// The same local time one calendar month later, on the month's last day when that
    /// day does not exist (Jan 31 → Feb 28/29; DOMAIN.md §9's export window).
    pub fn plus_one_local_month(self) -> Ts {
        let local = self.utc().with_timezone(&Almaty).naive_local();
        let next = local
            .checked_add_months(chrono::Months::new(1))
            .unwrap_or(NaiveDateTime::MAX);
        local_to_ts(next)
    }
}

impl fmt::Display for Ts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

/// The instant of a local wall-clock time; where a local time occurs twice (clocks set
/// back) the earlier one is taken, where it does not occur (clocks set forward) the first
/// instant after the gap.
pub fn local_to_ts(local: NaiveDateTime) -> Ts {
    match Almaty.from_local_datetime(&local).earliest() {
        Some(instant) => Ts(instant.timestamp_millis()),
        None => {
            // In a gap: step forward a minute at a time until the local time exists.
            let mut probe = local;
            loop {
                probe += chrono::Duration::minutes(1);
                if let Some(instant) = Almaty.from_local_datetime(&probe).earliest() {
                    return Ts(instant.timestamp_millis());
                }
            }
        }
    }
}

/// The start (00:00 local) of a calendar day.
pub fn day_start(date: NaiveDate) -> Ts {
    local_to_ts(date.and_hms_opt(0, 0, 0).unwrap_or_default())
}

/// The end (24:00 local) of a calendar day, which is the start of the next day: the end of
/// 2024-02-29 is 2024-03-01T00:00+05:00 (DOMAIN.md §8).
pub fn day_end(date: NaiveDate) -> Ts {
    day_start(date.succ_opt().unwrap_or(date))
}

/// A billing period: one calendar month in Almaty local time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Period {
    /// Calendar year.
    pub year: i32,
    /// Month, 1–12.
    pub month: u32,
}

impl Period {
    /// The period of `year`-`month`.
    pub fn new(year: i32, month: u32) -> Period {
        debug_assert!((1..=12).contains(&month));
        Period { year, month }
    }

    /// The following month.
    pub fn next(self) -> Period {
        if self.month == 12 {
            Period::new(self.year + 1, 1)
        } else {
            Period::new(self.year, self.month + 1)
        }
    }

    /// The preceding month.
    pub fn prev(self) -> Period {
        if self.month == 1 {
            Period::new(self.year - 1, 12)
        } else {
            Period::new(self.year, self.month - 1)
        }
    }

    /// The first local day of the period.
    pub fn first_day(self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, self.month, 1).unwrap_or_default()
    }

    /// The instant the period starts (00:00 local on its first day).
    pub fn start(self) -> Ts {
        day_start(self.first_day())
    }

    /// The instant the period ends (= the start of the next one).
    pub fn end(self) -> Ts {
        self.next().start()
    }

    /// The instant the period closes: the end of day `close_after_days` of the next month
    /// (DOMAIN.md §6: the 7th day by default). With 0 it closes at its own end.
    pub fn close_instant(self, close_after_days: u32) -> Ts {
        let first_next = self.next().first_day();
        let days = chrono::Days::new(u64::from(close_after_days));
        day_start(first_next.checked_add_days(days).unwrap_or(first_next))
    }

    /// Parses `YYYY-MM`.
    pub fn parse(text: &str) -> Option<Period> {
        let (year, month) = text.split_once('-')?;
        let year: i32 = year.parse().ok()?;
        let month: u32 = month.parse().ok()?;
        (1..=12).contains(&month).then(|| Period::new(year, month))
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Ts {
        Ts::parse_rfc3339(text).unwrap()
    }

    #[test]
    fn almaty_switch_2024_ends_february_at_plus_five() {
        // DOMAIN.md §8: the end of 2024-02-29 is 2024-03-01T00:00+05:00.
        let feb29 = NaiveDate::from_ymd_opt(2024, 2, 29).unwrap();
        assert_eq!(day_end(feb29), ts("2024-03-01T00:00:00+05:00"));
        assert_eq!(Period::new(2024, 2).end(), ts("2024-02-29T19:00:00Z"));
        // An instant in the repeated local hour belongs to February.
        assert_eq!(ts("2024-02-29T18:30:00Z").period(), Period::new(2024, 2));
        assert_eq!(ts("2024-02-29T19:00:00Z").period(), Period::new(2024, 3));
        // Before the switch Almaty is UTC+6.
        assert_eq!(ts("2024-01-31T18:00:00Z").period(), Period::new(2024, 2));
        assert_eq!(ts("2024-01-31T17:59:59Z").period(), Period::new(2024, 1));
    }

    #[test]
    fn render_uses_almaty_offset() {
        assert_eq!(ts("2026-01-15T04:30:00Z").render(), "2026-01-15T09:30:00+05:00");
        assert_eq!(ts("2023-01-15T04:30:00.250Z").render(), "2023-01-15T10:30:00.250+06:00");
    }

    #[test]
    fn close_instant_is_end_of_seventh_day_of_next_month() {
        let january = Period::new(2026, 1);
        assert_eq!(january.close_instant(7), ts("2026-02-08T00:00:00+05:00"));
        assert_eq!(january.close_instant(0), january.end());
    }

    #[test]
    fn one_local_year_later() {
        assert_eq!(
            ts("2025-03-15T10:00:00+05:00").plus_one_local_year(),
            ts("2026-03-15T10:00:00+05:00")
        );
        assert_eq!(
            ts("2024-02-29T10:00:00+06:00").plus_one_local_year(),
            ts("2025-02-28T10:00:00+05:00")
        );
    }
}
