//! The working-day calendar (DOMAIN.md §2) that expiry and defect deadlines count in.
//!
//! The calendar is a text file, one dated line per day that differs from the plain
//! "Monday–Friday work" rule, so a user can replace it with the government's own list:
//!
//! ```text
//! # comment
//! range 2020-01-01 2027-12-31
//! 2026-03-23 holiday Nauryz
//! 2026-03-24 carryover Nauryz falls on Saturday 2026-03-21
//! 2025-01-03 dayoff transfer from Saturday 2025-01-05
//! 2025-01-05 workday transfer to Friday 2025-01-03
//! ```
//!
//! `holiday`, `carryover` and `dayoff` lines make a day a day off (they differ only in why);
//! `workday` makes a weekend day a working day. Outside `range` only weekends are off.

use crate::time::{day_end, Ts};
use chrono::{Datelike, NaiveDate, Weekday};
use std::collections::BTreeMap;

/// Why a listed day differs from the weekday rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DayKind {
    /// A public holiday.
    Holiday,
    /// A day off because a fixed-date holiday fell on a weekend.
    Carryover,
    /// A day off by the government's yearly transfer.
    DayOff,
    /// A weekend day made a working day by a transfer.
    Workday,
}

impl DayKind {
    fn parse(text: &str) -> Option<DayKind> {
        match text {
            "holiday" => Some(DayKind::Holiday),
            "carryover" => Some(DayKind::Carryover),
            "dayoff" => Some(DayKind::DayOff),
            "workday" => Some(DayKind::Workday),
            _ => None,
        }
    }

    /// The word used in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            DayKind::Holiday => "holiday",
            DayKind::Carryover => "carryover",
            DayKind::DayOff => "dayoff",
            DayKind::Workday => "workday",
        }
    }
}

/// A listed day: its kind and the note after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedDay {
    /// Why it is listed.
    pub kind: DayKind,
    /// Free text (the holiday's name, the transfer's decree).
    pub note: String,
}

/// A calendar file that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("calendar line {line}: {message}")]
pub struct CalendarError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Longest span of days a deadline may search before giving up (guards a calendar that
/// lists every day off).
pub const DEADLINE_SEARCH_DAYS_MAX: u32 = 3_660;

/// Working days and days off.
#[derive(Clone, Debug)]
pub struct WorkingCalendar {
    /// The first and last day the file covers.
    pub range: (NaiveDate, NaiveDate),
    days: BTreeMap<NaiveDate, ListedDay>,
}

impl WorkingCalendar {
    /// Reads a calendar file's text.
    pub fn parse(text: &str) -> Result<WorkingCalendar, CalendarError> {
        let mut range = None;
        let mut days = BTreeMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let error = |message: String| CalendarError {
                line: index + 1,
                message,
            };
            let mut words = line.splitn(3, char::is_whitespace);
            let first = words.next().unwrap_or("");
            if first == "range" {
                let from = words.next().and_then(parse_date);
                let rest = words.next().map(str::trim).and_then(parse_date);
                match (from, rest) {
                    (Some(from), Some(to)) if from <= to => range = Some((from, to)),
                    _ => return Err(error(format!("bad range line {line:?}"))),
                }
                continue;
            }
            let date = parse_date(first).ok_or_else(|| error(format!("bad date {first:?}")))?;
            let kind_word = words.next().unwrap_or("");
            let kind = DayKind::parse(kind_word).ok_or_else(|| {
                error(format!(
                    "unknown kind {kind_word:?} (holiday, carryover, dayoff, workday)"
                ))
            })?;
            let note = words.next().unwrap_or("").trim().to_string();
            if days.insert(date, ListedDay { kind, note }).is_some() {
                return Err(error(format!("{date} is listed twice")));
            }
        }
        let range = range.ok_or(CalendarError {
            line: 0,
            message: "no `range` line".into(),
        })?;
        Ok(WorkingCalendar { range, days })
    }

    /// The listed days.
    pub fn listed(&self) -> impl Iterator<Item = (&NaiveDate, &ListedDay)> {
        self.days.iter()
    }

    /// True when people work on `date`.
    pub fn is_working_day(&self, date: NaiveDate) -> bool {
        match self.days.get(&date).map(|day| day.kind) {
            Some(DayKind::Workday) => true,
            Some(_) => false,
            None => !matches!(date.weekday(), Weekday::Sat | Weekday::Sun),
        }
    }

    /// The `n`-th working day strictly after `date` (`n` ≥ 1).
    pub fn nth_working_day_after(&self, date: NaiveDate, n: u32) -> NaiveDate {
        let mut day = date;
        let mut found = 0;
        let mut searched = 0;
        while found < n && searched < DEADLINE_SEARCH_DAYS_MAX {
            day = day.succ_opt().unwrap_or(day);
            searched += 1;
            if self.is_working_day(day) {
                found += 1;
            }
        }
        day
    }

    /// The end (24:00 local) of the `n`-th working day after `date` when that day is within
    /// the calendar's range; None when it would fall after the range's last day, where only
    /// weekends would count as days off (issue 19: such a deadline is never computed).
    pub fn deadline_within(&self, date: NaiveDate, n: u32) -> Option<Ts> {
        let last = self.range.1;
        let mut day = date;
        let mut found = 0;
        while found < n {
            if day >= last {
                return None;
            }
            day = day.succ_opt()?;
            if self.is_working_day(day) {
                found += 1;
            }
        }
        (day <= last).then(|| day_end(day))
    }

    /// The end (24:00 local) of the `n`-th working day after `date`: the expiry deadline
    /// of an emission (n = 30) and the defect-report deadline of an act (n = 10).
    pub fn deadline_after(&self, date: NaiveDate, n: u32) -> Ts {
        day_end(self.nth_working_day_after(date, n))
    }
}

fn parse_date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
range 2026-01-01 2026-12-31
2026-03-23 holiday Nauryz
2026-03-21 holiday Nauryz
2026-03-22 holiday Nauryz
2026-03-24 carryover Nauryz on Saturday
2026-03-25 carryover Nauryz on Sunday
2026-03-28 workday transfer (made up)
";

    fn date(text: &str) -> NaiveDate {
        parse_date(text).unwrap()
    }

    #[test]
    fn listed_days_override_weekdays() {
        let calendar = WorkingCalendar::parse(SAMPLE).unwrap();
        assert!(!calendar.is_working_day(date("2026-03-24")));
        assert!(calendar.is_working_day(date("2026-03-26")));
        assert!(calendar.is_working_day(date("2026-03-28")));
        assert!(!calendar.is_working_day(date("2026-03-29")));
    }

    #[test]
    fn nth_working_day_skips_days_off() {
        let calendar = WorkingCalendar::parse(SAMPLE).unwrap();
        // Friday 20 March: the next working days are Thu 26, Fri 27, Sat 28 (transfer).
        assert_eq!(
            calendar.nth_working_day_after(date("2026-03-20"), 1),
            date("2026-03-26")
        );
        assert_eq!(
            calendar.nth_working_day_after(date("2026-03-20"), 3),
            date("2026-03-28")
        );
    }

    #[test]
    fn bad_lines_are_reported_with_their_number() {
        let error = WorkingCalendar::parse("range 2026-01-01 2026-12-31\n2026-13-01 holiday x\n").unwrap_err();
        assert_eq!(error.line, 2);
        assert!(WorkingCalendar::parse("2026-01-01 holiday x\n").is_err());
    }
}
