//! `manifest.json`: what a generated dataset holds and what running it must produce.
//!
//! The counts are a recount of the files (the tests recount them). `injected` is exact:
//! the rejection records of each of the six injected reasons that an engine following
//! DOMAIN.md produces on the dataset. `intended` is the generator's own model of the
//! refusals normal traffic carries on purpose (`CODE_UNPAID`, `DEFECT_REPORT_LATE`, the
//! refund reasons); it is exact too as long as the engine follows DOMAIN.md, but it is
//! not what the `--bad-rate` mix is judged by. `late_orders` and `sla_late` are exact in the
//! same way: the orders that take effect past their own 4-hour deadline, and the sum of
//! `late` over every emission SLA record an engine reports.

use markledger_operators::Reason;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;

/// The manifest's file name inside a dataset directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// The reasons `--bad-rate` injects, whose counts `injected` predicts exactly.
pub const INJECTED_REASONS: [Reason; 6] = [
    Reason::Malformed,
    Reason::UnknownType,
    Reason::BadAmount,
    Reason::UnknownCode,
    Reason::WrongAccount,
    Reason::Duplicate,
];

/// The generator's flags as they were given, so a dataset can be regenerated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManifestFlags {
    /// Accounts.
    pub accounts: u32,
    /// Target number of code events.
    pub codes: u64,
    /// Seed.
    pub seed: u64,
    /// `json` or `bin`.
    pub format: String,
    /// Fraction of events that are deliberately bad.
    pub bad_rate: f64,
    /// Partition files.
    pub partitions: u32,
    /// Months generated (each then closes).
    pub months: u32,
    /// The first month, `YYYY-MM`.
    pub start: String,
    /// Fraction of accounts that end their contract (DOMAIN.md §9); absent in older
    /// manifests (0).
    #[serde(default)]
    pub terminate_rate: f64,
}

/// What a generated dataset holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The generator's format version: datasets of one version are byte-identical for
    /// the same flags.
    pub generator_version: u32,
    /// Seed.
    pub seed: u64,
    /// The flags.
    pub flags: ManifestFlags,
    /// Partition file names, partition 0 first.
    pub partitions: Vec<String>,
    /// Records written (events, raw bad lines, re-sent duplicates).
    pub events: u64,
    /// Codes named by emission, application, dropout, defect and introduction records.
    pub code_events: u64,
    /// Well-formed records by `type` (raw bad lines are not here).
    pub events_by_type: BTreeMap<String, u64>,
    /// Codes named, by `type`.
    pub code_events_by_type: BTreeMap<String, u64>,
    /// Exact rejection counts of the six injected reasons (all six keys present).
    pub injected: BTreeMap<String, u64>,
    /// Payments and compensations written after events with a later `ts` (out of
    /// order); informational, they are not rejected.
    pub late_written: u64,
    /// Of those, written more than the 5 s lateness behind their partition's high-water
    /// mark (they take effect late, flagged `late`).
    pub late_beyond_lateness: u64,
    /// Orders uploaded late: written more than 4 h + the 5 s lateness behind their
    /// partition's high-water mark, so they take effect after their own 4-hour emission
    /// deadline and are `late` in the emission SLA from the instant they take effect.
    pub late_orders: u64,
    /// Orders still pending when their 4-hour deadline fires (the late orders included):
    /// the sum of `late` over the latest revision of every `sla` period record a file run
    /// of the dataset produces (DOMAIN.md §6, §8).
    pub sla_late: u64,
    /// Refusals the normal traffic carries on purpose, by reason, from the generator's
    /// model (see the module doc).
    pub intended: BTreeMap<String, u64>,
    /// Accounts by kind (`factory`, `producer`, `importer`).
    pub accounts_by_profile: BTreeMap<String, u64>,
    /// Codes the generator left unapplied on purpose (they expire 30 working days after
    /// their emission day, if the data reaches that far).
    pub codes_left_to_expire: u64,
    /// Accounts whose termination is accepted (DOMAIN.md §9).
    #[serde(default)]
    pub terminated_accounts: u64,
    /// Export requests accepted (each delivered once the month of its termination has
    /// closed, if the data reaches that far).
    #[serde(default)]
    pub exports_accepted: u64,
    /// Bytes written to partition files.
    pub bytes: u64,
    /// The earliest `ts` of a well-formed record, RFC 3339.
    pub first_ts: String,
    /// The latest `ts` of a well-formed record: where a file run's watermark stops.
    pub last_ts: String,
}

impl Manifest {
    /// Reads `dir/manifest.json`.
    pub fn read(dir: &Path) -> io::Result<Manifest> {
        let text = fs::read(dir.join(MANIFEST_FILE))?;
        serde_json::from_slice(&text).map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))
    }

    /// Writes `dir/manifest.json` (pretty-printed, keys in a fixed order, newline-ended).
    pub fn write(&self, dir: &Path) -> io::Result<()> {
        let mut text = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        text.push(b'\n');
        fs::write(dir.join(MANIFEST_FILE), text)
    }

    /// The exact count predicted for one injected reason (0 for any other reason).
    pub fn injected_count(&self, reason: Reason) -> u64 {
        self.injected.get(reason.as_str()).copied().unwrap_or(0)
    }
}
