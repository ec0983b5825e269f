//! The workload generator (issue 3): a seeded, byte-reproducible dataset shaped like a
//! country's marking traffic, written as partition files plus `manifest.json`.
//!
//! In: a [`GeneratorConfig`]. Out: in the output directory, one file per partition
//! (`p000.jsonl` … or `p000.bin` …, [`Format`]), each account's events in one partition
//! chosen by Kafka's murmur2 of the account id ([`codes::partition_of`]), in nondecreasing
//! `ts` except the deliberate out-of-order payments; and a [`Manifest`] with the counts
//! and the exact number of rejections each injected reason will cause.
//!
//! How it is built, top to bottom:
//! - [`accounts`]: the population (factories, producers, importers; products with valid
//!   GTINs; lines; funding habits), drawn once from the seed;
//! - [`sim`]: simulated time, activity by activity from a priority queue; per-account
//!   state is serial-number ranges ([`stock`]) and an exact FIFO money model
//!   ([`wallet`]), never code strings, so memory stays bounded at any size;
//! - [`codes`]: codes rendered on demand from (product key, serial number);
//! - [`writer`] and [`inject`]: streaming partition writers and the `--bad-rate`
//!   injector; [`manifest`]: what was written;
//! - [`rng`]: SplitMix64-seeded xoshiro256**, fixed here so output never changes.
//!
//! Determinism: every random draw comes from a stream of the seed; no hash map is
//! iterated; floating point is used only through basic arithmetic. The same config gives
//! the same bytes on every run and platform ([`GENERATOR_VERSION`] is bumped when the
//! output of a config changes on purpose).

pub mod accounts;
pub mod codes;
pub mod inject;
pub mod manifest;
pub mod rng;
pub mod sim;
pub mod stock;
pub mod wallet;
pub mod writer;

#[cfg(test)]
mod tests;

pub use manifest::{Manifest, ManifestFlags, INJECTED_REASONS, MANIFEST_FILE};
pub use markledger_connectors::file::Format;
use markledger_connectors::file::PartitionWriter;

use accounts::{population, Profile};
use markledger_operators::{Period, Reason};
use rng::Rng;
use sim::{Horizon, Simulation};
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;
use writer::Writers;

/// The version of the generator's output, recorded in the manifest (2: late orders).
pub const GENERATOR_VERSION: u32 = 2;

/// Code events per applied code, measured on default datasets (an applied code is also
/// emitted and usually introduced; some emitted codes are never applied): the budget of
/// codes to apply is the target divided by this.
pub const CODE_EVENTS_PER_APPLIED_CODE: f64 = 3.1;

/// Largest number of accounts (GTIN company numbers have 6 digits).
pub const ACCOUNTS_MAX: u32 = 1_000_000;
/// Largest number of partitions (file names have 3 digits).
pub const PARTITIONS_MAX: u32 = 1_000;
/// Largest number of months.
pub const MONTHS_MAX: u32 = 60;
/// Largest bad rate.
pub const BAD_RATE_MAX: f64 = 0.5;

/// What to generate.
#[derive(Clone, Debug, PartialEq)]
pub struct GeneratorConfig {
    /// Accounts (clients).
    pub accounts: u32,
    /// Target number of code events (codes named by emission, application, dropout,
    /// defect and introduction events); the dataset lands within a few percent of it.
    pub codes: u64,
    /// Seed of every random choice.
    pub seed: u64,
    /// JSON lines or binary.
    pub format: Format,
    /// Fraction of events that are deliberately bad, 0.0..=0.5.
    pub bad_rate: f64,
    /// Partition files.
    pub partitions: u32,
    /// Months of traffic; the data runs on until the last one closes.
    pub months: u32,
    /// The first month.
    pub start: Period,
    /// Fraction of accounts (never the first) that end their contract during the data
    /// (DOMAIN.md §9), 0.0..=1.0: some refused first, some with exports inside and outside
    /// the window, some with a refund after it. 0 leaves the files as before.
    pub terminate_rate: f64,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            accounts: 200,
            codes: 1_000_000,
            seed: 1,
            format: Format::Json,
            bad_rate: 0.0,
            partitions: 4,
            months: 3,
            start: Period::new(2026, 1),
            terminate_rate: 0.0,
        }
    }
}

impl GeneratorConfig {
    /// Refuses configurations outside the documented ranges.
    pub fn validate(&self) -> io::Result<()> {
        let invalid = |message: String| Err(io::Error::new(io::ErrorKind::InvalidInput, message));
        if !(1..=ACCOUNTS_MAX).contains(&self.accounts) {
            return invalid(format!("accounts must be 1..={ACCOUNTS_MAX}, got {}", self.accounts));
        }
        if !(1..=PARTITIONS_MAX).contains(&self.partitions) {
            return invalid(format!(
                "partitions must be 1..={PARTITIONS_MAX}, got {}",
                self.partitions
            ));
        }
        if !(1..=MONTHS_MAX).contains(&self.months) {
            return invalid(format!("months must be 1..={MONTHS_MAX}, got {}", self.months));
        }
        if !(0.0..=BAD_RATE_MAX).contains(&self.bad_rate) {
            return invalid(format!(
                "bad rate must be within 0..={BAD_RATE_MAX}, got {}",
                self.bad_rate
            ));
        }
        if !(0.0..=1.0).contains(&self.terminate_rate) {
            return invalid(format!(
                "terminate rate must be within 0..=1, got {}",
                self.terminate_rate
            ));
        }
        if !(1..=9_000).contains(&self.start.year) {
            return invalid(format!("start {} is out of range", self.start));
        }
        Ok(())
    }

    /// The flags as the manifest records them.
    pub fn flags(&self) -> ManifestFlags {
        ManifestFlags {
            accounts: self.accounts,
            codes: self.codes,
            seed: self.seed,
            format: self.format.as_str().to_string(),
            bad_rate: self.bad_rate,
            partitions: self.partitions,
            months: self.months,
            start: self.start.to_string(),
            terminate_rate: self.terminate_rate,
        }
    }

    /// The config a manifest's flags describe (to regenerate a dataset).
    pub fn from_flags(flags: &ManifestFlags) -> io::Result<GeneratorConfig> {
        let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("manifest flag {what}"));
        Ok(GeneratorConfig {
            accounts: flags.accounts,
            codes: flags.codes,
            seed: flags.seed,
            format: Format::parse(&flags.format).ok_or_else(|| invalid("format"))?,
            bad_rate: flags.bad_rate,
            partitions: flags.partitions,
            months: flags.months,
            start: Period::parse(&flags.start).ok_or_else(|| invalid("start"))?,
            terminate_rate: flags.terminate_rate,
        })
    }
}

/// Where generation stands, reported about every 1 % of the target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Code events written so far.
    pub code_events: u64,
    /// The target.
    pub target: u64,
    /// Records written so far.
    pub events: u64,
    /// Bytes written so far.
    pub bytes: u64,
}

/// Generates a dataset into `out` (created if needed; partition files and a manifest
/// left there by an earlier run are replaced, other files are left alone) and returns
/// its manifest, also written as `out/manifest.json`.
pub fn generate(config: &GeneratorConfig, out: &Path, progress: &mut dyn FnMut(&Progress)) -> io::Result<Manifest> {
    config.validate()?;
    fs::create_dir_all(out)?;
    remove_earlier_dataset(out)?;
    let injector = Rng::stream(config.seed, u64::MAX);
    let writers = Writers::create(out, config.partitions, config.format, config.bad_rate, injector)?;
    let manifest = simulate(config, writers, progress)?;
    manifest.write(out)?;
    Ok(manifest)
}

/// Generates the dataset `config` describes into `partitions` (partition `i` into
/// `partitions[i]`, e.g. pipes into a run: `markledger run --input gen:…`) instead of
/// files: the same records the files would hold, in the same order (the writers' format
/// is theirs; `config.format` only names the manifest's). Returns the manifest (not
/// written anywhere).
pub fn generate_into(
    config: &GeneratorConfig,
    partitions: Vec<PartitionWriter>,
    progress: &mut dyn FnMut(&Progress),
) -> io::Result<Manifest> {
    config.validate()?;
    if partitions.len() != config.partitions as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} writers for {} partitions", partitions.len(), config.partitions),
        ));
    }
    let names = (0..config.partitions)
        .map(|index| writer::partition_file_name(index, config.format))
        .collect();
    let injector = Rng::stream(config.seed, u64::MAX);
    let writers = Writers::over(partitions, names, config.bad_rate, injector);
    simulate(config, writers, progress)
}

/// Runs the simulation into `writers` and tells what was written.
fn simulate(config: &GeneratorConfig, writers: Writers, progress: &mut dyn FnMut(&Progress)) -> io::Result<Manifest> {
    let calendar = crate::calendars::kazakhstan();
    let horizon = Horizon::new(config.start, config.months, &calendar);
    let applied_codes = (config.codes as f64 / CODE_EVENTS_PER_APPLIED_CODE) as u64;
    let plans = population(config.seed, config.accounts, applied_codes, config.partitions);
    let mut accounts_by_profile = BTreeMap::new();
    for plan in &plans {
        *accounts_by_profile
            .entry(plan.profile.as_str().to_string())
            .or_insert(0u64) += 1;
    }
    for profile in [Profile::Factory, Profile::Producer, Profile::Importer] {
        accounts_by_profile.entry(profile.as_str().to_string()).or_insert(0);
    }
    let simulation = Simulation::new(config.seed, plans, horizon, &calendar, writers, config.terminate_rate);

    let step = (config.codes / 100).max(1);
    let mut next_report = step;
    let mut report = |writers: &Writers| {
        let counts = writers.counts();
        if counts.code_events >= next_report {
            next_report = (counts.code_events / step + 1) * step;
            progress(&Progress {
                code_events: counts.code_events,
                target: config.codes,
                events: counts.records,
                bytes: writers.bytes(),
            });
        }
    };
    let (writers, outcome) = simulation.run(&mut report)?;
    let (partitions, counts, bytes) = writers.finish()?;
    progress(&Progress {
        code_events: counts.code_events,
        target: config.codes,
        events: counts.records,
        bytes,
    });

    let mut events_by_type = BTreeMap::new();
    let mut code_events_by_type = BTreeMap::new();
    for (rank, kind) in markledger_operators::Kind::ALL.iter().enumerate() {
        events_by_type.insert(kind.as_str().to_string(), counts.by_kind[rank]);
        if kind_has_codes(*kind) {
            code_events_by_type.insert(kind.as_str().to_string(), counts.codes_by_kind[rank]);
        }
    }
    let injected = INJECTED_REASONS
        .iter()
        .zip(counts.injected)
        .map(|(reason, count)| (reason.as_str().to_string(), count))
        .collect();
    let intended = [
        Reason::CodeUnpaid,
        Reason::DefectReportLate,
        Reason::RefundUnpaidCodes,
        Reason::RefundPendingOrder,
        Reason::RefundExceedsBalance,
        Reason::TerminationUnpaidCodes,
        Reason::TerminationPendingOrder,
        Reason::ExportNotTerminated,
        Reason::AccountTerminated,
    ]
    .into_iter()
    .map(|reason| {
        (
            reason.as_str().to_string(),
            outcome.intended.get(&reason).copied().unwrap_or(0),
        )
    })
    .collect();
    // An order never finished is late once the watermark reaches its deadline: a file run's
    // watermark stops at the largest `ts` written.
    let unfinished_late = outcome
        .unfinished_deadlines
        .iter()
        .filter(|deadline| counts.last_ts.is_some_and(|last| **deadline <= last))
        .count() as u64;
    let render = |ts: Option<markledger_operators::Ts>| ts.map(|ts| ts.render()).unwrap_or_default();
    let manifest = Manifest {
        generator_version: GENERATOR_VERSION,
        seed: config.seed,
        flags: config.flags(),
        partitions,
        events: counts.records,
        code_events: counts.code_events,
        events_by_type,
        code_events_by_type,
        injected,
        late_written: counts.late_written,
        late_beyond_lateness: counts.late_beyond_lateness,
        late_orders: counts.late_orders,
        sla_late: outcome.sla_late + unfinished_late,
        intended,
        accounts_by_profile,
        codes_left_to_expire: outcome.codes_left_to_expire,
        terminated_accounts: outcome.terminated,
        exports_accepted: outcome.exports_accepted,
        bytes,
        first_ts: render(counts.first_ts),
        last_ts: render(counts.last_ts),
    };
    Ok(manifest)
}

fn kind_has_codes(kind: markledger_operators::Kind) -> bool {
    use markledger_operators::Kind;
    matches!(
        kind,
        Kind::Emission | Kind::Application | Kind::Dropout | Kind::Defect | Kind::Introduction
    )
}

/// Removes the partition files (`p123.jsonl`, `p123.bin`) and manifest of an earlier
/// dataset in `dir`, so a smaller dataset does not leave stale partitions behind.
fn remove_earlier_dataset(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let stem = name.strip_suffix(".jsonl").or_else(|| name.strip_suffix(".bin"));
        let is_partition = stem.is_some_and(|stem| {
            stem.len() == 4 && stem.starts_with('p') && stem[1..].bytes().all(|b| b.is_ascii_digit())
        });
        if (is_partition || name == MANIFEST_FILE) && entry.file_type()?.is_file() {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}
