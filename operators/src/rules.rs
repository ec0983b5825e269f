//! Stateless rules and their wording: checks that need no state, each a pure function both
//! engines call, so a rule and its rejection detail are written once (the decisions that
//! need state stay written twice: the reference engine must stay independent).
//!
//! - [`Admission`]: which events the pipeline takes in at all: `ts` inside the
//!   [`TimeWindow`] (`TS_OUT_OF_RANGE`), not quarantined (`INTERNAL_ERROR`).
//! - [`amount`], [`credit`]: payments, compensations and refunds (`BAD_AMOUNT`).
//! - [`tariff`]: a tariff event's price, rate and effective time (`BAD_AMOUNT`,
//!   `TARIFF_RETROACTIVE`).
//! - [`defect_report`]: a defect report within 10 working days of its act
//!   (`DEFECT_REPORT_LATE`).
//! - [`accounting_period`]: the period an event is accounted in (an adjustment when its own
//!   has closed).

use crate::calendar::WorkingCalendar;
use crate::event::{DecimalField, Event};
use crate::money::{self, Money, BALANCE_MAX};
use crate::output::Rejection;
use crate::reason::Reason;
use crate::tariff::Tariff;
use crate::time::{day_end, day_start, Period, Ts};
use chrono::{DateTime, Datelike, NaiveDate, SecondsFormat, Utc};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The first day the pipeline accepts: 2020-01-01, before the first tariff (2020-10-01) and
/// the first year of the shipped calendar.
pub fn epoch_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2020, 1, 1).unwrap_or_default()
}

/// The instants an event's `ts` may take (DOMAIN.md §4 says nothing of absurd times;
/// docs/ARCHITECTURE.md, "Decisions: plausible time"): from the later of the system's
/// epoch and the calendar's first day, to the end of the calendar's last day. Outside it,
/// working-day deadlines cannot be computed and periods before the epoch have no tariff;
/// such an event is refused `TS_OUT_OF_RANGE` and moves no high-water mark, so one absurd
/// timestamp can neither move a watermark to year 9999 nor make every later event late.
/// The window depends only on the calendar, so file runs stay deterministic; stream mode
/// adds a bound relative to the wall clock (`--max-ahead`), applied where records are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeWindow {
    /// The earliest accepted instant.
    pub earliest: Ts,
    /// The first instant no longer accepted.
    pub end: Ts,
    /// What sets `end`, for a rejection's detail.
    pub end_is: &'static str,
    /// The end of the calendar's last day (where `end` is until narrowed by `until`).
    pub calendar_end: Ts,
    /// The end of the first year the calendar does not cover (the year after its last
    /// day's): an event from `calendar_end` to here is not absurd, only beyond the
    /// calendar, so a run stops for it and a stream holds it until a calendar covers it
    /// (issue 19) rather than computing a deadline in a year it does not know.
    pub uncovered_end: Ts,
    /// The first instant whose emission's expiry deadline (the n-th working day after its
    /// date, [`TimeWindow::with_expiry`]) falls after the calendar's last day: an emission
    /// from here on is held like an event in the uncovered year, so no expiry deadline is
    /// ever counted over days the calendar does not know. `calendar_end` (no limit before
    /// the calendar's end) until `with_expiry` sets it.
    pub emission_end: Ts,
    /// The expiry's working days `emission_end` was computed for, for messages.
    pub expiry_working_days: u32,
}

/// Why an event may not be taken in yet although its `ts` is not absurd: what it needs
/// lies past the calendar's last day (issue 19). A run stops before it; a stream holds
/// its partition there until restarted with a calendar that covers `year`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BeyondCalendar {
    /// The event's own `ts` is in `year`, the first year the calendar does not cover.
    Event {
        /// The uncovered year.
        year: i32,
    },
    /// An emission whose expiry deadline would fall in `year`, past the calendar's end.
    ExpiryDeadline {
        /// The year the deadline would fall in.
        year: i32,
        /// The expiry's working days.
        working_days: u32,
    },
}

impl BeyondCalendar {
    /// The year the calendar would have to cover.
    pub fn year(&self) -> i32 {
        match self {
            BeyondCalendar::Event { year } | BeyondCalendar::ExpiryDeadline { year, .. } => *year,
        }
    }

    /// What is beyond, to follow "event X at TS" in a message: "is in 2028", or "is an
    /// emission whose expiry deadline (30 working days later) would fall in 2028".
    pub fn what(&self) -> String {
        match self {
            BeyondCalendar::Event { year } => format!("is in {year}"),
            BeyondCalendar::ExpiryDeadline { year, working_days } => {
                format!("is an emission whose expiry deadline ({working_days} working days later) would fall in {year}")
            }
        }
    }
}

impl TimeWindow {
    /// The window of a calendar.
    pub fn of(calendar: &WorkingCalendar) -> TimeWindow {
        let (first, last) = calendar.range;
        let next_year_end = NaiveDate::from_ymd_opt(last.year() + 1, 12, 31).unwrap_or(last);
        TimeWindow {
            earliest: day_start(first.max(epoch_day())),
            end: day_end(last),
            end_is: "the end of the working-day calendar",
            calendar_end: day_end(last),
            uncovered_end: day_end(next_year_end),
            emission_end: day_end(last),
            expiry_working_days: 0,
        }
    }

    /// The window with `emission_end` set for expiry deadlines of `working_days` working
    /// days under `calendar`: the end of the last day whose n-th working day after is still
    /// within the calendar. Found by walking back from the calendar's last day (a deadline
    /// moves monotonically with its start day), at most `DEADLINE_SEARCH_DAYS_MAX` days.
    pub fn with_expiry(self, calendar: &WorkingCalendar, working_days: u32) -> TimeWindow {
        let mut day = calendar.range.1;
        let mut walked = 0;
        while calendar.deadline_within(day, working_days).is_none()
            && walked < crate::calendar::DEADLINE_SEARCH_DAYS_MAX
        {
            day = day.pred_opt().unwrap_or(day);
            walked += 1;
        }
        TimeWindow {
            emission_end: day_end(day).min(self.calendar_end),
            expiry_working_days: working_days,
            ..self
        }
    }

    /// Whether `event` must wait for a calendar covering more (see [`BeyondCalendar`]): its
    /// `ts` is in the first uncovered year, or it is an emission whose expiry deadline falls
    /// past the calendar's end. None when it may be taken in, or its `ts` is further out
    /// (absurd: refused `TS_OUT_OF_RANGE` by [`TimeWindow::check`]).
    pub fn beyond_calendar(&self, event: &Event) -> Option<BeyondCalendar> {
        if let Some(year) = self.uncovered_year(event.ts) {
            return Some(BeyondCalendar::Event { year });
        }
        let emission = matches!(event.kind(), crate::event::Kind::Emission);
        (emission && event.ts >= self.emission_end && event.ts < self.calendar_end).then(|| {
            BeyondCalendar::ExpiryDeadline {
                year: self.calendar_end.local_date().year(),
                working_days: self.expiry_working_days,
            }
        })
    }

    /// The year of `ts` when it lies in the first year the calendar does not cover (see
    /// `uncovered_end`); None when the calendar covers it, or it is further out (absurd:
    /// refused `TS_OUT_OF_RANGE` by [`TimeWindow::check`]).
    pub fn uncovered_year(&self, ts: Ts) -> Option<i32> {
        (ts >= self.calendar_end && ts < self.uncovered_end).then(|| ts.local_date().year())
    }

    /// The window, narrowed to end at `latest` (exclusive) when that is earlier; `end_is`
    /// says what `latest` is.
    pub fn until(self, latest: Ts, end_is: &'static str) -> TimeWindow {
        if latest >= self.end {
            return self;
        }
        TimeWindow {
            end: latest,
            end_is,
            ..self
        }
    }

    /// Accepts `ts`, or says why not (the detail of a `TS_OUT_OF_RANGE` rejection).
    pub fn check(&self, ts: Ts) -> Result<(), String> {
        if ts >= self.earliest && ts < self.end {
            return Ok(());
        }
        Err(format!(
            "ts {} is outside the accepted window from {} (the system's epoch or the calendar's \
             first day) to {} ({})",
            utc_text(ts),
            self.earliest,
            self.end,
            self.end_is
        ))
    }
}

/// What decides whether a well-formed event is taken in at all, before it is placed: an
/// event refused here is like a malformed record — it moves no high-water mark and
/// registers no id — so a refusal cannot change how its partition's other events are
/// placed.
#[derive(Clone, Debug)]
pub struct Admission {
    /// The accepted `ts`.
    pub window: TimeWindow,
    /// Events refused `INTERNAL_ERROR`, by id, with what they made fail (stream mode's
    /// poison pills: docs/ARCHITECTURE.md, "Decisions: failures").
    pub quarantine: Arc<BTreeMap<String, String>>,
}

impl Admission {
    /// Takes `event` in, or gives its rejection.
    pub fn check(&self, event: &Event) -> Result<(), Box<Rejection>> {
        let refusal = if let Some(failure) = self.quarantine.get(&event.id) {
            Some((
                Reason::InternalError,
                format!("quarantined: it made the pipeline fail twice in a row ({failure})"),
            ))
        } else {
            self.window
                .check(event.ts)
                .err()
                .map(|detail| (Reason::TsOutOfRange, detail))
        };
        match refusal {
            None => Ok(()),
            Some((reason, detail)) => Err(Box::new(Rejection::of_event(
                &event.id,
                event.kind().as_str(),
                &event.account,
                None,
                reason,
                detail,
            ))),
        }
    }
}

/// An instant as UTC text, whatever its year (local rendering of a year before 1924 would
/// use Almaty's local mean time, +05:08).
fn utc_text(ts: Ts) -> String {
    DateTime::<Utc>::from_timestamp_millis(ts.0).map_or_else(
        || format!("{} ms since 1970", ts.0),
        |time| time.to_rfc3339_opts(SecondsFormat::AutoSi, true),
    )
}

/// A payment's, compensation's or refund's amount (DOMAIN.md §3, §8; the bounds of
/// [`money`]), or the detail of its `BAD_AMOUNT` rejection.
pub fn amount(field: &DecimalField) -> Result<Money, String> {
    match field {
        DecimalField::Parsed(value) => money::check_amount(*value).map_err(|error| error.to_string()),
        DecimalField::Invalid(text) => Err(format!("amount \"{text}\" is not a decimal string")),
    }
}

/// The balance after crediting `amount`, or the detail of the `BAD_AMOUNT` rejection of a
/// credit that would take the balance above [`BALANCE_MAX`].
pub fn credit(balance: Money, amount: Money) -> Result<Money, String> {
    match balance.checked_add(amount) {
        Some(after) if after.value() <= BALANCE_MAX => Ok(after),
        _ => Err(format!(
            "a credit of {amount} would take the balance {balance} above the largest an account may hold, \
             1000000000000000.00"
        )),
    }
}

/// A tariff event's version, or its refusal: `BAD_AMOUNT` for a price or rate outside its
/// bounds, `TARIFF_RETROACTIVE` for taking effect before the event itself took effect.
pub fn tariff(
    effective_from: Ts,
    net_price: &DecimalField,
    vat_rate: &DecimalField,
    effective: Ts,
) -> Result<Tariff, (Reason, String)> {
    let (DecimalField::Parsed(net), DecimalField::Parsed(rate)) = (net_price, vat_rate) else {
        let detail = format!("tariff net_price {net_price} and vat_rate {vat_rate} must be decimal strings");
        return Err((Reason::BadAmount, detail));
    };
    let (net_price, vat_rate) =
        money::check_tariff(*net, *rate).map_err(|error| (Reason::BadAmount, error.to_string()))?;
    if effective_from < effective {
        let detail = format!("tariff effective from {effective_from} is before its event took effect at {effective}");
        return Err((Reason::TariffRetroactive, detail));
    }
    Ok(Tariff { net_price, vat_rate })
}

/// A defect report (DOMAIN.md §2, §8) reported at `ts` for an act of `act_date`: on time
/// before the end of the `working_days`-th working day after the act, else the detail of
/// its `DEFECT_REPORT_LATE` rejection (one record for the whole report, `code: null`).
///
/// A deadline past the calendar's last day is never computed (issue 19): the report's own
/// `ts` is within the calendar (the [`TimeWindow`] admits nothing later), so it is before
/// any such deadline and on time, whatever the uncovered days turn out to be.
pub fn defect_report(act_date: NaiveDate, ts: Ts, calendar: &WorkingCalendar, working_days: u32) -> Result<(), String> {
    let Some(deadline) = calendar.deadline_within(act_date, working_days) else {
        debug_assert!(ts < day_end(calendar.range.1), "a defect report beyond the calendar");
        return Ok(());
    };
    if ts >= deadline {
        return Err(format!("defect act of {act_date} had to be reported before {deadline}"));
    }
    Ok(())
}

/// The period an event is accounted in: its own, or the oldest open one when its own has
/// closed by `now` (an adjustment, DOMAIN.md §6).
pub fn accounting_period(ts: Ts, now: Ts, close_after_days: u32) -> Period {
    let own = ts.period();
    if own.close_instant(close_after_days) > now {
        return own;
    }
    let mut open = now.period();
    while open.prev().close_instant(close_after_days) > now {
        open = open.prev();
    }
    open
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;
    use std::str::FromStr;

    fn calendar() -> WorkingCalendar {
        WorkingCalendar::parse("range 2019-06-01 2027-12-31\n").expect("calendar")
    }

    fn ts(text: &str) -> Ts {
        Ts::parse_rfc3339(text).expect("ts")
    }

    #[test]
    fn the_window_runs_from_the_epoch_to_the_calendars_end() {
        // Both sides of both bounds; the epoch wins over an earlier calendar start.
        let window = TimeWindow::of(&calendar());
        assert!(window.check(ts("2020-01-01T00:00:00+06:00")).is_ok());
        assert!(window.check(ts("2019-12-31T23:59:59.999+06:00")).is_err());
        assert!(window.check(ts("2027-12-31T23:59:59.999+05:00")).is_ok());
        assert!(window.check(ts("2028-01-01T00:00:00+05:00")).is_err());
        let detail = window.check(ts("9999-01-01T00:00:00Z")).unwrap_err();
        assert!(detail.starts_with("ts 9999-01-01T00:00:00Z is outside"), "{detail}");
        let old = window.check(ts("1900-01-01T00:00:00Z")).unwrap_err();
        assert!(old.contains("1900-01-01T00:00:00Z") && !old.contains("+05:08"), "{old}");
        let narrowed = window.until(ts("2026-01-01T00:00:00+05:00"), "the wall clock plus --max-ahead");
        assert!(narrowed
            .check(ts("2026-06-01T00:00:00+05:00"))
            .unwrap_err()
            .contains("--max-ahead"));
        assert!(narrowed.check(ts("2026-01-01T00:00:00+05:00")).is_err());
        assert!(narrowed.check(ts("2025-12-31T23:00:00+05:00")).is_ok());
    }

    #[test]
    fn no_deadline_is_counted_past_the_calendars_end() {
        // Weekends only in `calendar()`: the 30th working day after Fri 2027-11-19 is Fri
        // 2027-12-31, the calendar's last day; after Mon 2027-11-22 it would be in 2028. So an
        // emission is held from 2027-11-20 on, a payment only from 2028; a defect act whose
        // 10th working day is past the end is on time without a deadline being counted.
        let calendar = calendar();
        let window = TimeWindow::of(&calendar).with_expiry(&calendar, 30);
        let day = |text: &str| NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap();
        assert_eq!(
            calendar.deadline_within(day("2027-11-19"), 30),
            Some(day_end(day("2027-12-31")))
        );
        assert_eq!(calendar.deadline_within(day("2027-11-22"), 30), None);
        assert_eq!(window.emission_end, day_end(day("2027-11-21")));
        let event = |kind: &str, at: &str| Event {
            id: "e".into(),
            ts: ts(at),
            account: "A".into(),
            body: if kind == "emission" {
                crate::event::Body::Emission {
                    order: "o".into(),
                    gtin: "g".into(),
                    codes: vec!["c".into()],
                }
            } else {
                crate::event::Body::Payment {
                    amount: DecimalField::Parsed(Decimal::ONE),
                    channel: "bank".into(),
                }
            },
        };
        assert_eq!(
            window.beyond_calendar(&event("emission", "2027-11-19T12:00:00+05:00")),
            None
        );
        let held = window.beyond_calendar(&event("emission", "2027-11-22T12:00:00+05:00"));
        assert_eq!(
            held,
            Some(BeyondCalendar::ExpiryDeadline {
                year: 2028,
                working_days: 30
            })
        );
        assert!(held.unwrap().what().contains("would fall in 2028"));
        assert_eq!(
            window.beyond_calendar(&event("payment", "2027-12-30T12:00:00+05:00")),
            None
        );
        assert_eq!(
            window.beyond_calendar(&event("payment", "2028-01-03T12:00:00+05:00")),
            Some(BeyondCalendar::Event { year: 2028 })
        );
        assert_eq!(
            window.beyond_calendar(&event("emission", "2999-01-03T12:00:00+05:00")),
            None
        );
        assert!(defect_report(day("2027-12-27"), ts("2027-12-31T12:00:00+05:00"), &calendar, 10).is_ok());
        assert!(defect_report(day("2027-11-01"), ts("2027-12-31T12:00:00+05:00"), &calendar, 10).is_err());
    }

    #[test]
    fn a_credit_may_not_take_a_balance_past_its_maximum() {
        // 10¹⁵ exactly is allowed, a tiyn more is refused.
        let max = Money::exact(BALANCE_MAX);
        let almost = max - Money::from_str("1").unwrap();
        assert_eq!(credit(almost, Money::from_str("1").unwrap()), Ok(max));
        assert!(credit(max, Money::from_str("0.01").unwrap()).is_err());
    }

    #[test]
    fn tariff_details_name_the_values_as_a_person_writes_them() {
        // No Rust debug text (`Parsed(…)`, `Invalid(…)`) in a detail.
        let at = ts("2026-01-01T00:00:00+05:00");
        let bad = DecimalField::Invalid("abc".into());
        let good = DecimalField::Parsed(Decimal::from_str("0.12").unwrap());
        let (reason, detail) = tariff(at, &bad, &good, at).unwrap_err();
        assert_eq!(reason, Reason::BadAmount);
        assert_eq!(
            detail,
            "tariff net_price \"abc\" and vat_rate 0.12 must be decimal strings"
        );
        let price = DecimalField::Parsed(Decimal::from_str("2.68").unwrap());
        let (reason, _) = tariff(at.minus_millis(1), &price, &good, at).unwrap_err();
        assert_eq!(reason, Reason::TariffRetroactive);
        assert!(tariff(at, &price, &good, at).is_ok());
    }
}

/// The instants DOMAIN.md §9 derives from a termination at `terminated` (T): each engine
/// keeps its own state, but both compute these the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Termination {
    /// T, the `terminate` event's effective time.
    pub at: Ts,
    /// T + 1 calendar month: the end (exclusive) of the export window.
    pub window_end: Ts,
    /// The close of T's period: no export is delivered before it.
    pub period_close: Ts,
    /// D = the later of `window_end` and `period_close`: the account is deleted.
    pub deletion: Ts,
}

/// How many months before T's own an export reaches back (DOMAIN.md §9: T's month and the
/// 36 before it).
pub const EXPORT_MONTHS_BEFORE: u32 = 36;

impl Termination {
    /// The instants of a termination at `at`.
    pub fn at(at: Ts, close_after_days: u32) -> Termination {
        let window_end = at.plus_one_local_month();
        let period_close = at.period().close_instant(close_after_days);
        Termination {
            at,
            window_end,
            period_close,
            deletion: window_end.max(period_close),
        }
    }

    /// `Ok(delivery instant)` for an export taking effect at `now`, or the refusal's detail
    /// (`EXPORT_OUT_OF_WINDOW`): the window is `[T, T + 1 month)`.
    pub fn export(&self, now: Ts) -> Result<Ts, String> {
        if now < self.at || now >= self.window_end {
            return Err(crate::wording::export_out_of_window(self.at, self.window_end));
        }
        Ok(now.max(self.period_close))
    }

    /// The periods an export covers: T's and the 36 before it, oldest first.
    pub fn export_periods(&self) -> (Period, Period) {
        let last = self.at.period();
        let mut first = last;
        for _ in 0..EXPORT_MONTHS_BEFORE {
            first = first.prev();
        }
        (first, last)
    }
}

/// The order of records in an export (DOMAIN.md §9): period, kind by its name, sub with
/// null first.
pub fn export_order(a: &crate::output::PeriodKey, b: &crate::output::PeriodKey) -> std::cmp::Ordering {
    (a.period, a.kind.as_str(), &a.sub).cmp(&(b.period, b.kind.as_str(), &b.sub))
}
