//! What a run did, for the closing summary a person reads, and the canonical order of a
//! dataflow file run's outputs.

use crate::cluster::Cluster;
use crate::config::Config;
use crate::control::Control;
use crate::failure::WorkerFailure;
use crate::runtime::{run_partitions, BackfillParts, Mode, RunSettings};
use crate::source::{Batching, SourceStats};
#[cfg(doc)]
use markledger_connectors::file::{merge_runs, OUTPUT_RUN_BYTES};
use markledger_connectors::file::{SortedRun, SortedRuns, SpillDir};
use markledger_connectors::partition::PartitionInput;
use markledger_operators::checkpoint::Checkpoints;
use markledger_operators::final_codes::CodesMemory;
use markledger_operators::flow::Time;
use markledger_operators::money::Money;
use markledger_operators::output::{Deletion, Entry, Output, Sink};
use markledger_operators::{Reason, Status, Ts};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What a run did, for the closing summary.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Input records read (events and refused records).
    pub records: u64,
    /// Well-formed events.
    pub events: u64,
    /// Codes named by code-bearing events.
    pub code_events: u64,
    /// Events taking effect late.
    pub late_events: u64,
    /// Rejection records by reason.
    pub rejections: BTreeMap<Reason, u64>,
    /// Codes by final status.
    pub codes_by_status: BTreeMap<Status, u64>,
    /// Sum of accepted payments.
    pub payments: Money,
    /// Sum of accepted compensations.
    pub compensations: Money,
    /// Sum of charges settled.
    pub charged: Money,
    /// Sum of accepted refunds.
    pub refunds: Money,
    /// Sum of final balances.
    pub balance: Money,
    /// Balances of accounts deleted under DOMAIN.md §9 (forgotten with them).
    pub forgotten: Money,
    /// Charges still unpaid.
    pub unpaid: Money,
    /// Output records by output.
    pub outputs: BTreeMap<&'static str, u64>,
    /// Accounts seen.
    pub accounts: u64,
    /// The earliest and latest `ts` read.
    pub first_ts: Option<Ts>,
    /// The latest `ts` read: where the watermark stops.
    pub last_ts: Option<Ts>,
    /// What the national index's code state held and cost at the end (the dataflow only).
    pub memory: Option<CodesMemory>,
}

/// What a worker's outputs add to the summary, counted as they are emitted.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    /// Codes entering (+) and leaving (−) each status.
    by_status: BTreeMap<Status, i64>,
    payments: Money,
    compensations: Money,
    charged: Money,
    refunds: Money,
    /// Each account's latest (balance, unpaid amount) from this worker.
    balances: BTreeMap<String, (Money, Money)>,
    rejections: BTreeMap<Reason, u64>,
    outputs: BTreeMap<&'static str, u64>,
    /// Balances of deleted accounts, forgotten at their deletion (DOMAIN.md §9).
    forgotten: Money,
}

impl Tally {
    /// Counts one output.
    pub fn count(&mut self, output: &Output) {
        let name = match output {
            Output::Status(change) => {
                let n = change.codes.len() as i64;
                *self.by_status.entry(change.to).or_default() += n;
                if let Some(from) = change.from {
                    *self.by_status.entry(from).or_default() -= n;
                }
                "status"
            }
            Output::Ledger(entry) => {
                let total = match entry.entry {
                    Entry::Payment => &mut self.payments,
                    Entry::Compensation => &mut self.compensations,
                    Entry::Charge => &mut self.charged,
                    Entry::Refund => &mut self.refunds,
                };
                *total += entry.amount;
                "ledger"
            }
            Output::Balance(balance) => {
                let latest = (balance.balance, balance.unpaid_amount);
                match self.balances.get_mut(balance.account.as_str()) {
                    Some(held) => *held = latest,
                    None => {
                        self.balances.insert(balance.account.clone(), latest);
                    }
                }
                "balances"
            }
            Output::Rejection(rejection) => {
                *self.rejections.entry(rejection.reason).or_default() += 1;
                "rejections"
            }
            Output::Period(_) => "periods",
            Output::Deleted(Deletion::Balance { account, .. }) => {
                // A deleted account's balance is forgotten (DOMAIN.md §9); its balance
                // records and its deletion come from the same worker (keyed by account).
                if let Some((balance, _)) = self.balances.remove(account.as_str()) {
                    self.forgotten += balance;
                }
                "balances"
            }
            Output::Deleted(Deletion::Period { .. }) => "periods",
            Output::Export(_) => "exports",
        };
        *self.outputs.entry(name).or_default() += 1;
    }

    /// Adds the workers' tallies (in worker order) to `summary`. An account's final balance
    /// is the last in canonical order: that of the highest worker that emitted one.
    fn add_to(tallies: Vec<Tally>, summary: &mut Summary) {
        let mut by_status: BTreeMap<Status, i64> = BTreeMap::new();
        let mut balances: BTreeMap<String, (Money, Money)> = BTreeMap::new();
        for tally in tallies {
            for (status, n) in tally.by_status {
                *by_status.entry(status).or_default() += n;
            }
            summary.payments += tally.payments;
            summary.compensations += tally.compensations;
            summary.charged += tally.charged;
            summary.refunds += tally.refunds;
            summary.forgotten += tally.forgotten;
            balances.extend(tally.balances);
            for (reason, n) in tally.rejections {
                *summary.rejections.entry(reason).or_default() += n;
            }
            for (name, n) in tally.outputs {
                *summary.outputs.entry(name).or_default() += n;
            }
        }
        summary.codes_by_status = by_status
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(status, n)| (status, n.unsigned_abs()))
            .collect();
        summary.balance = balances.values().map(|(balance, _)| *balance).sum();
        summary.unpaid = balances.values().map(|(_, unpaid)| *unpaid).sum();
    }
}

/// A worker's sink in a file run: tallies each output for the summary and holds it,
/// rendered, in sorted runs that spill to disk ([`SortedRuns`]).
pub struct FileRunSink {
    tally: Tally,
    runs: SortedRuns,
}

impl Sink for FileRunSink {
    type Done = (Tally, std::io::Result<Vec<SortedRun>>);

    fn emit(&mut self, _time: Time, outputs: &mut Vec<Output>) {
        for output in outputs.drain(..) {
            self.tally.count(&output);
            self.runs.push(&output);
        }
    }

    fn finish(self) -> Self::Done {
        (self.tally, self.runs.finish())
    }
}

/// Where a file run's outputs wait for their canonical order.
#[derive(Clone, Debug)]
pub struct Spill {
    /// The spill directory (created at the first spill, removed when the last holder drops it).
    pub dir: Arc<SpillDir>,
    /// Rendered bytes a worker holds before spilling a sorted run ([`OUTPUT_RUN_BYTES`]).
    pub run_bytes: usize,
}

/// What a summarized file run gives back.
pub struct Summarized {
    /// The run's summary.
    pub summary: Summary,
    /// What the sources read.
    pub stats: SourceStats,
    /// Each worker's sorted runs (worker order), or the first I/O error of a spill.
    pub runs: std::io::Result<Vec<Vec<SortedRun>>>,
}

/// A backfill's checkpoints, and on a cluster how its parts are written.
pub struct Backfill {
    /// Where the machines save their shares.
    pub checkpoints: Checkpoints,
    /// On a cluster: the processes' control messages and the parts' writers.
    pub parts: Option<(Arc<Control>, Arc<BackfillParts>)>,
}

/// Runs the dataflow and returns its outputs as each worker's sorted runs (merge them with
/// [`merge_runs`] for the canonical order), with the run's summary and what the sources read.
///
/// The canonical order makes output files identical whatever the worker count: records
/// are grouped by output and by account (or period key), and within an account keep the
/// order its worker produced them in, which is account order; rejections are sorted
/// ([`canonical_order`] is the same order in memory). A worker holds at most
/// `spill.run_bytes` of rendered outputs; the rest waits on disk.
///
/// With `backfill`, the run is a backfill ([`Mode::Backfill`]): its machines save their
/// shares of a checkpoint at the end + 1 ms into its checkpoints instead of finishing; on a
/// cluster, its parts (with the processes' control messages) write each process's part of
/// it and process 0 its manifest (runtime.rs, [`BackfillParts`]).
///
/// On a cluster (`cluster`), `inputs` are this process's partitions with their indexes,
/// and process 0 gets every output and the figures of every source (cluster.rs): its
/// summary and outputs are the whole run's; the other processes' have no outputs.
pub fn run_summarized(
    config: &Config,
    inputs: Vec<(usize, Box<dyn PartitionInput>)>,
    workers: usize,
    cluster: Cluster,
    backfill: Option<Backfill>,
    spill: &Spill,
    progress: &mut dyn FnMut(u64),
) -> Result<Summarized, WorkerFailure> {
    let (mode, parts) = match backfill {
        None => (Mode::Files, None),
        Some(Backfill { checkpoints, parts }) => (Mode::Backfill(checkpoints), parts),
    };
    let (control, backfill_parts) = parts.unzip();
    let settings = RunSettings {
        config,
        workers,
        batching: Batching::default(),
        mode,
        cluster,
        control,
        backfill_parts,
    };
    let (dir, run_bytes) = (spill.dir.clone(), spill.run_bytes);
    let make_sink = move |worker| FileRunSink {
        tally: Tally::default(),
        runs: SortedRuns::new(worker, run_bytes, dir.clone()),
    };
    let run = run_partitions(settings, inputs, make_sink, progress)?;
    let stats = run.stats;
    let mut summary = Summary {
        records: stats.records,
        events: stats.events,
        late_events: stats.late_events,
        code_events: stats.code_events,
        first_ts: stats.first_ts,
        last_ts: stats.last_ts,
        accounts: stats.accounts.len() as u64,
        memory: run.final_codes,
        ..Summary::default()
    };
    let (tallies, runs): (Vec<Tally>, Vec<_>) = run.sinks.into_iter().unzip();
    Tally::add_to(tallies, &mut summary);
    let runs = runs.into_iter().collect::<std::io::Result<Vec<_>>>();
    Ok(Summarized { summary, stats, runs })
}

/// Sorts outputs (worker 0's, then worker 1's, …, each in emission order) into the
/// canonical order in memory: the definition [`merge_runs`] reproduces with bounded memory
/// (tests compare the two).
pub fn canonical_order(outputs: &mut [Output]) {
    fn group(output: &Output) -> (u8, String) {
        match output {
            Output::Status(s) => (0, s.account.clone()),
            Output::Ledger(l) => (1, l.account.clone()),
            Output::Balance(b) => (2, b.account.clone()),
            Output::Rejection(_) => (3, String::new()),
            Output::Period(p) => (4, p.key.render()),
            Output::Deleted(Deletion::Balance { account, .. }) => (2, account.clone()),
            Output::Deleted(Deletion::Period { key, .. }) => (4, key.render()),
            Output::Export(e) => (5, e.account.clone()),
        }
    }
    // Stable: records of one account keep their account order.
    outputs.sort_by_cached_key(group);
    let start = outputs.partition_point(|o| group(o).0 < 3);
    let end = outputs.partition_point(|o| group(o).0 < 4);
    outputs[start..end].sort_by(|a, b| match (a, b) {
        (Output::Rejection(a), Output::Rejection(b)) => a.cmp(b),
        _ => std::cmp::Ordering::Equal,
    });
}
