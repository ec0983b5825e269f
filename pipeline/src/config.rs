//! Engine configuration: every tunable of DOMAIN.md in one place, with its default.

use markledger_operators::final_codes::{CodesMemory, FinalCodes, WriteLimit};
use markledger_operators::rules::{Admission, TimeWindow};
use markledger_operators::time::{MILLIS_PER_DAY, MILLIS_PER_HOUR, MILLIS_PER_SECOND};
use markledger_operators::WorkingCalendar;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// What every engine needs to know besides its input.
#[derive(Clone, Debug)]
pub struct Config {
    /// How far behind its partition's high-water mark an event may be and still take
    /// effect at its own `ts` (DOMAIN.md §4; default 5 s).
    pub lateness_ms: i64,
    /// How long a command on a not-yet-known code waits for its emission (default 60 s).
    pub hold_ms: i64,
    /// A period closes at the end of this day of the next month (default 7).
    pub close_after_days: u32,
    /// Working days after the emission day until unapplied codes expire (default 30).
    pub expiry_working_days: u32,
    /// Working days after the act date a defect report may arrive (default 10).
    pub defect_working_days: u32,
    /// The emission SLA (default 4 h).
    pub sla_ms: i64,
    /// How long an event id is remembered for de-duplication (default 5 years, the
    /// retention horizon: a retried payment must never be credited twice).
    pub dedup_horizon_ms: i64,
    /// How long a code in a final state is kept before it is compacted away (default 5
    /// years, 000 §4.4.8).
    pub retention_ms: i64,
    /// Working days and days off.
    pub calendar: WorkingCalendar,
    /// Where the calendar came from, for messages (a file's path, or the shipped one).
    pub calendar_name: String,
    /// Events refused `INTERNAL_ERROR` by id, with what they made fail (stream mode's
    /// poison pills; empty elsewhere).
    pub quarantine: Arc<BTreeMap<String, String>>,
    /// Where the national index keeps final codes on disk (issue 17).
    pub final_codes: FinalCodesOptions,
}

/// Where final codes go: under `STATE/final-codes` with a state directory, otherwise under
/// a temporary directory (in `spill_dir`, or the system's) removed when the run ends.
#[derive(Clone, Debug, Default)]
pub struct FinalCodesOptions {
    /// The run's state directory (`--state`): the stores live in it, with the checkpoints.
    pub state: Option<PathBuf>,
    /// Where the temporary directory of a run without state is made (`--spill-dir`).
    pub spill_dir: Option<PathBuf>,
    /// Every final code goes to disk at once (tests: the disk path on small data). Also
    /// set by the environment variable `MARKLEDGER_SPILL_ALL=1`.
    pub spill_all: bool,
    /// Fault injection: the stores' writes fail with "no space left" after this many
    /// bytes (tests of a full disk; debug builds also read `MARKLEDGER_SPILL_WRITE_LIMIT`).
    pub write_limit: Option<u64>,
    /// The place the last run with these options made, shared by their clones: the
    /// metrics endpoint reads the national index's memory report from it while the run
    /// lasts ([`FinalCodesOptions::memory`]).
    pub last_place: Arc<Mutex<Option<FinalCodes>>>,
}

impl FinalCodesOptions {
    /// The place of one run's final codes.
    pub fn place(&self) -> FinalCodes {
        let mut place = match (&self.state, &self.spill_dir) {
            (Some(state), _) => FinalCodes::in_state(state),
            (None, Some(dir)) => FinalCodes::temporary(dir),
            (None, None) => FinalCodes::temporary(&std::env::temp_dir()),
        };
        place.spill_all = self.spill_all || std::env::var("MARKLEDGER_SPILL_ALL").is_ok_and(|v| v == "1");
        let injected = cfg!(debug_assertions)
            .then(|| std::env::var("MARKLEDGER_SPILL_WRITE_LIMIT").ok())
            .flatten()
            .and_then(|bytes| bytes.parse::<u64>().ok());
        place.write_limit = self.write_limit.or(injected).map(WriteLimit::new);
        *self.last_place.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(place.clone());
        place
    }

    /// What the national index of the last run placed here reported last (codes held and
    /// live, RAM and disk: the summary's memory line); None before its first report.
    pub fn memory(&self) -> Option<CodesMemory> {
        let place = self.last_place.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        place.as_ref().and_then(FinalCodes::memory)
    }
}

/// Five years of 365.25 days.
pub const FIVE_YEARS_MS: i64 = 1_826 * MILLIS_PER_DAY + 6 * MILLIS_PER_HOUR;

impl Config {
    /// The defaults of DOMAIN.md with the given calendar.
    pub fn with_calendar(calendar: WorkingCalendar) -> Config {
        Config {
            lateness_ms: 5 * MILLIS_PER_SECOND,
            hold_ms: 60 * MILLIS_PER_SECOND,
            close_after_days: 7,
            expiry_working_days: 30,
            defect_working_days: 10,
            sla_ms: 4 * MILLIS_PER_HOUR,
            dedup_horizon_ms: FIVE_YEARS_MS,
            retention_ms: FIVE_YEARS_MS,
            calendar,
            calendar_name: SHIPPED_CALENDAR.to_string(),
            quarantine: Arc::default(),
            final_codes: FinalCodesOptions::default(),
        }
    }

    /// The settings of this configuration that change outputs, for a checkpoint.
    pub fn output_settings(&self) -> OutputSettings {
        OutputSettings {
            lateness_ms: self.lateness_ms,
            hold_ms: self.hold_ms,
            close_after_days: self.close_after_days,
            expiry_working_days: self.expiry_working_days,
            defect_working_days: self.defect_working_days,
            sla_ms: self.sla_ms,
            dedup_horizon_ms: self.dedup_horizon_ms,
            retention_ms: self.retention_ms,
            calendar: CalendarStamp::of(&self.calendar, &self.calendar_name),
        }
    }

    /// Which events are taken in at all: `ts` within the calendar's window from the
    /// system's epoch, and not quarantined (`markledger_operators::rules::Admission`).
    pub fn admission(&self) -> Admission {
        Admission {
            window: TimeWindow::of(&self.calendar).with_expiry(&self.calendar, self.expiry_working_days),
            quarantine: self.quarantine.clone(),
        }
    }
}

/// The name the shipped calendar goes by in messages.
pub const SHIPPED_CALENDAR: &str = "the shipped calendar (datasets/calendars/kazakhstan.cal)";

/// Every setting that changes outputs (issue 19), recorded in each checkpoint: a restore
/// under different ones is refused with each difference named
/// ([`OutputSettings::differences`]), so a backfill made with one calendar or period close
/// cannot go on live under another and silently change what its outputs mean.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OutputSettings {
    /// `--lateness`, in milliseconds.
    pub lateness_ms: i64,
    /// `--hold`, in milliseconds.
    pub hold_ms: i64,
    /// `--close-after-days`.
    pub close_after_days: u32,
    /// Working days until unapplied codes expire.
    pub expiry_working_days: u32,
    /// Working days a defect report may arrive after its act.
    pub defect_working_days: u32,
    /// The emission SLA, in milliseconds.
    pub sla_ms: i64,
    /// How long an event id is remembered, in milliseconds.
    pub dedup_horizon_ms: i64,
    /// How long a code in a final state is kept, in milliseconds.
    pub retention_ms: i64,
    /// The working-day calendar's content.
    pub calendar: CalendarStamp,
}

/// A calendar as a checkpoint records it: its name, range, a content hash, and its listed
/// days (date and kind; notes change no output). The days themselves, so a restart with the
/// same calendar extended past its end is accepted (every day the state was computed under
/// agrees) while any change inside the old range is refused and named.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CalendarStamp {
    /// Where it came from (informative; not compared).
    pub name: String,
    /// First and last day covered, `YYYY-MM-DD`.
    pub range: (String, String),
    /// xxh3-64 of the range and listed days (shown in messages).
    pub hash: u64,
    /// The listed days, `YYYY-MM-DD` and kind, in date order.
    pub days: Vec<(String, String)>,
}

impl CalendarStamp {
    /// The stamp of `calendar`.
    pub fn of(calendar: &WorkingCalendar, name: &str) -> CalendarStamp {
        let (first, last) = calendar.range;
        let days: Vec<(String, String)> = calendar
            .listed()
            .map(|(date, day)| (date.to_string(), day.kind.as_str().to_string()))
            .collect();
        let mut text = format!("range {first} {last}\n");
        for (date, kind) in &days {
            text.push_str(&format!("{date} {kind}\n"));
        }
        CalendarStamp {
            name: name.to_string(),
            range: (first.to_string(), last.to_string()),
            hash: xxhash_rust::xxh3::xxh3_64(text.as_bytes()),
            days,
        }
    }

    /// The listed days within `range` (dates compare as text: `YYYY-MM-DD`).
    fn days_within(&self, range: &(String, String)) -> Vec<&(String, String)> {
        self.days
            .iter()
            .filter(|(date, _)| *date >= range.0 && *date <= range.1)
            .collect()
    }

    /// Why a run with `now` may not go on from state computed under `self` (None: it
    /// may, `now` agrees on every day of `self`'s range).
    fn difference(&self, now: &CalendarStamp) -> Option<String> {
        let named = |what: String| {
            format!(
                "--calendar: {what} (the checkpoint's calendar: {}, {:016x}; this run's: {}, {:016x})",
                self.name, self.hash, now.name, now.hash
            )
        };
        if now.range.0 != self.range.0 || now.range.1 < self.range.1 {
            return Some(named(format!(
                "the checkpoint's covers {} to {}, this run's {} to {}",
                self.range.0, self.range.1, now.range.0, now.range.1
            )));
        }
        let (was, is) = (self.days_within(&self.range), now.days_within(&self.range));
        if was == is {
            return None;
        }
        let first = was
            .iter()
            .zip(is.iter())
            .find(|(a, b)| a != b)
            .map(|(a, b)| if a.0 <= b.0 { a.0.clone() } else { b.0.clone() })
            .unwrap_or_else(|| {
                let longer = if was.len() > is.len() { &was } else { &is };
                longer[was.len().min(is.len())].0.clone()
            });
        Some(named(format!("the calendars differ on {first}")))
    }
}

impl OutputSettings {
    /// What differs between the settings a checkpoint was made with (`self`) and a run's
    /// (`now`), one sentence each; empty when the run may go on from it. A calendar that
    /// agrees on every day the checkpoint's covered and extends past it is no difference.
    pub fn differences(&self, now: &OutputSettings) -> Vec<String> {
        let mut found = Vec::new();
        let mut compare = |name: &str, was: String, is: String| {
            if was != is {
                found.push(format!("{name}: the checkpoint was made with {was}, this run has {is}"));
            }
        };
        let duration = |ms: i64| format!("{ms} ms");
        compare("--lateness", duration(self.lateness_ms), duration(now.lateness_ms));
        compare("--hold", duration(self.hold_ms), duration(now.hold_ms));
        compare(
            "--close-after-days",
            self.close_after_days.to_string(),
            now.close_after_days.to_string(),
        );
        compare(
            "expiry working days",
            self.expiry_working_days.to_string(),
            now.expiry_working_days.to_string(),
        );
        compare(
            "defect working days",
            self.defect_working_days.to_string(),
            now.defect_working_days.to_string(),
        );
        compare("the emission SLA", duration(self.sla_ms), duration(now.sla_ms));
        compare(
            "the de-duplication horizon",
            duration(self.dedup_horizon_ms),
            duration(now.dedup_horizon_ms),
        );
        compare("the retention", duration(self.retention_ms), duration(now.retention_ms));
        found.extend(self.calendar.difference(&now.calendar));
        found
    }
}

/// Parses a duration such as `5s`, `250ms`, `2m`, `4h`, `7d` (a bare number is seconds).
pub fn parse_duration_ms(text: &str) -> Option<i64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: i64 = number.parse().ok()?;
    let scale = match unit {
        "" | "s" => MILLIS_PER_SECOND,
        "ms" => 1,
        "m" | "min" => 60 * MILLIS_PER_SECOND,
        "h" => MILLIS_PER_HOUR,
        "d" => MILLIS_PER_DAY,
        _ => return None,
    };
    number.checked_mul(scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings_with(calendar: &str) -> OutputSettings {
        let mut config = Config::with_calendar(WorkingCalendar::parse(calendar).unwrap());
        config.calendar_name = "test.cal".into();
        config.output_settings()
    }

    #[test]
    fn a_restore_with_other_settings_names_each_difference_and_accepts_an_extended_calendar() {
        // Compares the settings of a checkpoint with a run's: equal ones pass; a changed
        // period close, hold and a changed calendar day are each named; the same calendar
        // extended past its end passes (every day the state saw agrees), a shortened one or
        // one that changes a day inside the old range does not.
        let days = "2026-03-23 holiday Nauryz (a note)\n";
        let was = settings_with(&format!("range 2026-01-01 2026-06-30\n{days}"));
        assert!(was.differences(&was).is_empty());
        // A note is not content.
        assert!(was
            .differences(&settings_with(
                "range 2026-01-01 2026-06-30\n2026-03-23 holiday other words\n"
            ))
            .is_empty());
        let extended = settings_with(&format!(
            "range 2026-01-01 2027-12-31\n{days}2026-12-16 holiday Independence\n"
        ));
        assert!(
            was.differences(&extended).is_empty(),
            "{:?}",
            was.differences(&extended)
        );
        let mut now = settings_with("range 2026-01-01 2026-06-30\n2026-03-24 holiday Nauryz\n");
        now.close_after_days = 5;
        now.hold_ms = 1_000;
        let found = was.differences(&now);
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found[0].contains("--hold"), "{found:?}");
        assert!(found[1].contains("--close-after-days: the checkpoint was made with 7, this run has 5"));
        assert!(found[2].contains("the calendars differ on 2026-03-23"), "{found:?}");
        // Going back from the extended calendar drops days the state was computed under.
        let back = extended.differences(&was);
        assert!(
            back.len() == 1 && back[0].contains("covers 2026-01-01 to 2027-12-31"),
            "{back:?}"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("5s"), Some(5_000));
        assert_eq!(parse_duration_ms("250ms"), Some(250));
        assert_eq!(parse_duration_ms("4h"), Some(14_400_000));
        assert_eq!(parse_duration_ms("7"), Some(7_000));
        assert_eq!(parse_duration_ms("5x"), None);
    }
}
