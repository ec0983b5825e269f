//! Engine configuration: every tunable of DOMAIN.md in one place, with its default.

use markledger_operators::final_codes::{FinalCodes, WriteLimit};
use markledger_operators::rules::{Admission, TimeWindow};
use markledger_operators::time::{MILLIS_PER_DAY, MILLIS_PER_HOUR, MILLIS_PER_SECOND};
use markledger_operators::WorkingCalendar;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

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
        place
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
            quarantine: Arc::default(),
            final_codes: FinalCodesOptions::default(),
        }
    }

    /// Which events are taken in at all: `ts` within the calendar's window from the
    /// system's epoch, and not quarantined (`markledger_operators::rules::Admission`).
    pub fn admission(&self) -> Admission {
        Admission {
            window: TimeWindow::of(&self.calendar),
            quarantine: self.quarantine.clone(),
        }
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

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("5s"), Some(5_000));
        assert_eq!(parse_duration_ms("250ms"), Some(250));
        assert_eq!(parse_duration_ms("4h"), Some(14_400_000));
        assert_eq!(parse_duration_ms("7"), Some(7_000));
        assert_eq!(parse_duration_ms("5x"), None);
    }
}
