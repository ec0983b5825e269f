//! What a run did, for the closing summary a person reads, and the canonical order of a
//! dataflow file run's outputs.

use crate::cluster::Cluster;
use crate::config::Config;
use crate::failure::WorkerFailure;
use crate::runtime::{run_partitions, Mode, RunSettings};
use crate::source::{Batching, SourceStats};
use markledger_connectors::partition::PartitionInput;
use markledger_operators::checkpoint::Checkpoints;
use markledger_operators::money::Money;
use markledger_operators::output::{Entry, Output};
use markledger_operators::{Reason, Status, Ts};
use std::collections::BTreeMap;

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
}

/// Runs the dataflow and returns its outputs in a canonical order, with the run's summary
/// and what the sources read.
///
/// The order makes output files identical whatever the worker count: records are grouped
/// by output and by account (or period key), and within an account keep the order its
/// worker produced them in, which is account order; rejections are sorted.
///
/// With `backfill`, the run is a backfill ([`Mode::Backfill`]): its machines save their
/// shares of a checkpoint at the end + 1 ms into `backfill` instead of finishing.
///
/// On a cluster (`cluster`), `inputs` are this process's partitions with their indexes,
/// and process 0 gets every output and the figures of every source (cluster.rs): its
/// summary and outputs are the whole run's; the other processes' have no outputs.
pub fn run_summarized(
    config: &Config,
    inputs: Vec<(usize, Box<dyn PartitionInput>)>,
    workers: usize,
    cluster: Cluster,
    backfill: Option<Checkpoints>,
    progress: &mut dyn FnMut(u64),
) -> Result<(Summary, SourceStats, Vec<Output>), WorkerFailure> {
    let mode = backfill.map_or(Mode::Files, Mode::Backfill);
    let settings = RunSettings {
        config,
        workers,
        batching: Batching::default(),
        mode,
        cluster,
    };
    let run = run_partitions(settings, inputs, |_| Vec::new(), progress)?;
    let stats = run.stats;
    let mut summary = Summary {
        records: stats.records,
        events: stats.events,
        late_events: stats.late_events,
        code_events: stats.code_events,
        first_ts: stats.first_ts,
        last_ts: stats.last_ts,
        accounts: stats.accounts.len() as u64,
        ..Summary::default()
    };
    let mut outputs: Vec<Output> = run.sinks.into_iter().flatten().collect();
    canonical_order(&mut outputs);
    let mut by_status: BTreeMap<Status, i64> = Default::default();
    let mut balances: BTreeMap<&str, (Money, Money)> = Default::default();
    for output in &outputs {
        let name = match output {
            Output::Status(change) => {
                let n = change.codes.len() as i64;
                *by_status.entry(change.to).or_default() += n;
                if let Some(from) = change.from {
                    *by_status.entry(from).or_default() -= n;
                }
                "status"
            }
            Output::Ledger(entry) => {
                let total = match entry.entry {
                    Entry::Payment => &mut summary.payments,
                    Entry::Compensation => &mut summary.compensations,
                    Entry::Charge => &mut summary.charged,
                    Entry::Refund => &mut summary.refunds,
                };
                *total += entry.amount;
                "ledger"
            }
            Output::Balance(balance) => {
                balances.insert(&balance.account, (balance.balance, balance.unpaid_amount));
                "balances"
            }
            Output::Rejection(rejection) => {
                *summary.rejections.entry(rejection.reason).or_default() += 1;
                "rejections"
            }
            Output::Period(_) => "periods",
        };
        *summary.outputs.entry(name).or_default() += 1;
    }
    summary.codes_by_status = by_status
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(status, n)| (status, n.unsigned_abs()))
        .collect();
    summary.balance = balances.values().map(|(balance, _)| *balance).sum();
    summary.unpaid = balances.values().map(|(_, unpaid)| *unpaid).sum();
    Ok((summary, stats, outputs))
}

fn canonical_order(outputs: &mut [Output]) {
    fn group(output: &Output) -> (u8, String) {
        match output {
            Output::Status(s) => (0, s.account.clone()),
            Output::Ledger(l) => (1, l.account.clone()),
            Output::Balance(b) => (2, b.account.clone()),
            Output::Rejection(_) => (3, String::new()),
            Output::Period(p) => (4, p.key.render()),
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
