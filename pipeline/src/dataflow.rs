//! The dataflow engine: the whole graph, assembled in one place, top to bottom.
//!
//! ```text
//! partitions ─► Source (per worker: its partitions, each event at its effective time; the
//!               held capability is the watermark)
//!   ─► Dedup: by id ──┬─ tariffs: validate ─► broadcast ───────────────────────────┐
//!                     ├─ payments, compensations, refunds ──────────────────────────┤
//!                     ├─ orders, cancels, emissions ─► Orders ─┬─ pending counts ───┤
//!                     │                                       └─ codes ─┐          │
//!                     └─ commands: pre-checks ─────────── codes ──► Codes: index ──►│
//!                                                                        Accounts ◄─┘
//!   facts (Orders, Accounts) ─► Aggregates: deltas ─► consolidate by account ─► revisions
//!                               ─► period records
//! ```
//! Every stateful stage is a [`Machine`](markledger_operators::machine::Machine) stepped one
//! complete instant at a time; the aggregates consolidate their facts as a differential
//! collection first ([`aggregates`], docs/ARCHITECTURE.md).

use crate::checkpoint::SourceShare;
use crate::config::Config;
use crate::failure::WorkerFailure;
use crate::reference::Summary;
use crate::source::{self, SourceReports, SourceSettings, SourceStats, Sourced};
use markledger_connectors::codec::binary::canonical_bytes;
use markledger_connectors::codec::Decoded;
use markledger_connectors::partition::{MemoryPartition, PartitionInput};
use markledger_operators::accounts::{AccountRules, Accounts};
use markledger_operators::aggregates::aggregates;
use markledger_operators::checkpoint::Checkpoints;
use markledger_operators::codes::Codes;
use markledger_operators::dedup::Dedup;
use markledger_operators::event::{Body, Kind};
use markledger_operators::failure;
use markledger_operators::flow::{route, AccountIn, CodesIn, Fact, Flow, Header, Placed};
use markledger_operators::machine::{run_machine, InputEnd, Time};
use markledger_operators::orders::Orders;
use markledger_operators::output::{Entry, Output};
use markledger_operators::rules;
use markledger_operators::Reason;
use std::cell::RefCell;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::{Broadcast, Map, Partition};
use timely::dataflow::operators::{Concat, Concatenate, ConnectLoop, Feedback, Probe};
use timely::dataflow::{ProbeHandle, StreamVec};

/// Records a source reads per activation.
pub const SOURCE_BATCH_MAX: usize = 4_096;

/// Work a source lets run ahead of what the whole dataflow has finished, weighed as one per
/// event plus one per code it names (an application may name thousands): timely has no
/// backpressure of its own, and without this bound a file run would queue every per-code
/// record of its input at once.
pub const SOURCE_WEIGHT_IN_FLIGHT_MAX: usize = 65_536;

/// How long after a code becomes final the national index learns it, in runs without
/// checkpoints: the accounts answer for the code until then, and the index may step that
/// far ahead of the accounts instead of waiting for them at every instant.
pub const FINALITY_DELAY_MS: i64 = 60 * 60 * 1000;

/// Tariffs need no state to check: bad prices, or taking effect before their own event.
fn check_tariff(placed: Placed) -> Result<Placed, Box<Output>> {
    let Body::Tariff {
        effective_from,
        net_price,
        vat_rate,
    } = &placed.event.body
    else {
        return Ok(placed);
    };
    match rules::tariff(*effective_from, net_price, vat_rate, placed.effective) {
        Ok(_) => Ok(placed),
        Err((reason, detail)) => Err(Box::new(placed.rejection(None, reason, detail))),
    }
}

/// A command's checks that need no state (a late defect report, codes outside the
/// alphabet); its other codes go to the national index.
fn split_command(mut placed: Placed, config: &Config) -> Vec<Flow> {
    if let Body::Defect { act_date, .. } = &placed.event.body {
        let deadline = config.calendar.deadline_after(*act_date, config.defect_working_days);
        if placed.event.ts >= deadline {
            let detail = format!("defect act of {act_date} had to be reported before {deadline}");
            return vec![Flow::out(placed.rejection(None, Reason::DefectReportLate, detail))];
        }
    }
    let mut out = Vec::with_capacity(placed.event.body.codes().len());
    let header = Arc::new(Header::of(&placed, ""));
    placed.codes_to_index(header, &mut out);
    out
}

/// A stage's output split by destination, each record moved (not copied) to one part.
struct Parts<'scope> {
    outs: StreamVec<'scope, Time, Output>,
    facts: StreamVec<'scope, Time, Fact>,
    codes: StreamVec<'scope, Time, CodesIn>,
    accounts: StreamVec<'scope, Time, AccountIn>,
    finals: StreamVec<'scope, Time, CodesIn>,
}

fn split(flows: StreamVec<'_, Time, Flow>) -> Parts<'_> {
    let mut parts = flows
        .partition(5, |flow| {
            let part = match &flow {
                Flow::Out(_) => 0,
                Flow::Fact(_) => 1,
                Flow::ToCodes(_) => 2,
                Flow::ToAccounts(_) => 3,
                Flow::Final(..) => 4,
            };
            (part, flow)
        })
        .into_iter();
    let mut next = || parts.next().expect("five parts");
    Parts {
        outs: next().flat_map(|flow| {
            if let Flow::Out(output) = flow {
                Some(*output)
            } else {
                None
            }
        }),
        facts: next().flat_map(|flow| if let Flow::Fact(fact) = flow { Some(*fact) } else { None }),
        codes: next().flat_map(|flow| {
            if let Flow::ToCodes(code) = flow {
                Some(CodesIn::Code(code))
            } else {
                None
            }
        }),
        accounts: next().flat_map(|flow| {
            if let Flow::ToAccounts(input) = flow {
                Some(input)
            } else {
                None
            }
        }),
        finals: next().flat_map(|flow| {
            if let Flow::Final(key, at, status) = flow {
                Some(CodesIn::Final { key, at, status })
            } else {
                None
            }
        }),
    }
}

/// How a source feeds the dataflow. Outputs never depend on it (tests/tests/equivalence.rs).
#[derive(Clone, Copy, Debug)]
pub struct Batching {
    /// Records read per source activation.
    pub batch: usize,
    /// Weight (one per event plus one per code) allowed ahead of what the dataflow has
    /// finished.
    pub in_flight: usize,
}

impl Default for Batching {
    fn default() -> Self {
        Batching {
            batch: SOURCE_BATCH_MAX,
            in_flight: SOURCE_WEIGHT_IN_FLIGHT_MAX,
        }
    }
}

/// Where a worker's outputs go. Outputs are handed over in batches as the dataflow makes
/// them; `frontier` tells the sink which times are complete (none before its least element
/// can come any more).
pub trait OutputSink: 'static {
    /// What the sink gives back when the run ends.
    type Done: Send + 'static;
    /// Takes (drains) a batch of outputs made at `time`.
    fn emit(&mut self, time: Time, outputs: &mut Vec<Output>);
    /// Outputs at times before `frontier` are all emitted.
    fn frontier(&mut self, _frontier: &[Time]) {}
    /// The run ended.
    fn finish(self) -> Self::Done;
}

/// Keeps every output in memory (file runs sort them into canonical order; tests compare).
#[derive(Default)]
pub struct Collect(Vec<Output>);

impl OutputSink for Collect {
    type Done = Vec<Output>;

    fn emit(&mut self, _time: Time, outputs: &mut Vec<Output>) {
        self.0.append(outputs);
    }

    fn finish(self) -> Vec<Output> {
        self.0
    }
}

/// Counts outputs and drops them (long runs that measure the engine's own state).
#[derive(Default)]
pub struct Count(u64);

impl OutputSink for Count {
    type Done = u64;

    fn emit(&mut self, _time: Time, outputs: &mut Vec<Output>) {
        self.0 += outputs.len() as u64;
        outputs.clear();
    }

    fn finish(self) -> u64 {
        self.0
    }
}

/// Runs the dataflow over in-memory partitions on `workers` threads and returns every output.
pub fn run(config: &Config, partitions: Vec<Vec<Decoded>>, workers: usize) -> Vec<Output> {
    run_batched(config, partitions, workers, Batching::default())
}

/// [`run`] with an explicit source batching. A worker's failure panics here, with its
/// one-line description (tests; the binary goes through [`run_inputs`]).
pub fn run_batched(config: &Config, partitions: Vec<Vec<Decoded>>, workers: usize, batching: Batching) -> Vec<Output> {
    let run = run_inputs(
        config,
        in_memory(partitions),
        workers,
        batching,
        Mode::Files,
        |_| Collect::default(),
        &mut |_| {},
    )
    .unwrap_or_else(|failure| panic!("{failure}"));
    run.sinks.into_iter().flatten().collect()
}

/// In-memory partitions as inputs.
pub fn in_memory(partitions: Vec<Vec<Decoded>>) -> Vec<Box<dyn PartitionInput>> {
    partitions
        .into_iter()
        .enumerate()
        .map(|(i, records)| {
            Box::new(MemoryPartition::new(format!("partition {i}"), records)) as Box<dyn PartitionInput>
        })
        .collect()
}

/// A worker's partitions.
pub type Inputs = Vec<Box<dyn PartitionInput>>;

/// What a run gives back.
pub struct Run<D> {
    /// What the sources read, over all workers.
    pub stats: SourceStats,
    /// Each worker's sink, finished.
    pub sinks: Vec<D>,
    /// Where the watermark stopped.
    pub end: Time,
}

/// Runs the dataflow over `inputs` (partition i read by worker i mod `workers`) until every
/// input is finished and the watermark has reached the largest `ts` read; `mode` is `Files`,
/// or `Backfill` to end in a checkpoint instead. Each worker's outputs go to its own sink;
/// `progress` is called now and then, from the calling thread, with the records read so far.
pub fn run_inputs<S, F>(
    config: &Config,
    inputs: Vec<Box<dyn PartitionInput>>,
    workers: usize,
    batching: Batching,
    mode: Mode,
    make_sink: F,
    progress: &mut dyn FnMut(u64),
) -> Result<Run<S::Done>, WorkerFailure>
where
    S: OutputSink,
    F: Fn(usize) -> S + Send + Sync + 'static,
{
    let workers = workers.max(1);
    let mut shares: Vec<Inputs> = (0..workers).map(|_| Vec::new()).collect();
    for (i, input) in inputs.into_iter().enumerate() {
        shares[worker_of(i, workers)].push(input);
    }
    let shares: Vec<Mutex<Inputs>> = shares.into_iter().map(Mutex::new).collect();
    let take = move |worker: usize| std::mem::take(&mut *shares[worker].lock().expect("share lock"));
    run_dataflow(config, workers, batching, mode, take, make_sink, progress)
}

/// The worker that reads partition `index` (files in the order given, Kafka partitions in
/// topic, then partition order): round robin, the same for every source.
pub fn worker_of(index: usize, workers: usize) -> usize {
    index % workers.max(1)
}

/// How a run ends.
#[derive(Clone, Debug)]
pub enum Mode {
    /// Every input finishes; the watermark stops at the largest `ts` read (DOMAIN.md §4).
    Files,
    /// A backfill: like `Files`, but the machines do not finish at the end; they save a
    /// checkpoint at the end + 1 ms instead ([`Checkpoints::backfill`]), from which a
    /// stream goes on.
    Backfill(Checkpoints),
    /// Inputs never finish. When `stop` is set, sources read nothing more, the dataflow
    /// finishes everything before the watermark (never after it: no time-driven change is
    /// decided early), and the run returns.
    Stream {
        /// Set to stop.
        stop: Arc<AtomicBool>,
        /// Checkpoints asked for, and the cut the run starts from.
        checkpoints: Option<Checkpoints>,
    },
}

/// Runs the dataflow on `workers` threads: `make_inputs(worker)` gives each worker its
/// partitions (built on the worker's own thread), `make_sink(worker)` its output sink.
pub fn run_dataflow<S, F, I>(
    config: &Config,
    workers: usize,
    batching: Batching,
    mode: Mode,
    make_inputs: I,
    make_sink: F,
    progress: &mut dyn FnMut(u64),
) -> Result<Run<S::Done>, WorkerFailure>
where
    S: OutputSink,
    F: Fn(usize) -> S + Send + Sync + 'static,
    I: Fn(usize) -> Inputs + Send + Sync + 'static,
{
    let batching = Batching {
        batch: batching.batch.max(1),
        in_flight: batching.in_flight.max(1),
    };
    let workers = workers.max(1);
    let (end, stop, checkpoints) = match &mode {
        Mode::Files => (InputEnd::after(workers), None, None),
        Mode::Backfill(checkpoints) => (InputEnd::after(workers), None, Some(checkpoints.clone())),
        Mode::Stream { stop, checkpoints } => (InputEnd::never(), Some(stop.clone()), checkpoints.clone()),
    };
    // How far the national index may run ahead of the accounts (docs/ARCHITECTURE.md,
    // "Finality and retention"). A checkpoint carries only the finality fed back from the
    // instant before its cut, so runs that take checkpoints keep 1 ms; and the index must
    // know a code is final before retention forgets it.
    let finality_delay = if checkpoints.is_some() {
        1
    } else {
        FINALITY_DELAY_MS.min(config.retention_ms).max(1)
    };
    // A restored run starts at its checkpoint, with the read position it had.
    let start = checkpoints.as_ref().and_then(Checkpoints::restored).map_or(0, |cut| {
        let read_max = (0..cut.workers)
            .filter_map(|worker| SourceShare::of(cut, worker).ok())
            .map(|share| share.read_max)
            .max()
            .unwrap_or(0);
        end.note_read(read_max);
        cut.time
    });
    // Where each worker's source holds the watermark once stopped (MAX: not yet).
    let stopped: Arc<Vec<Arc<AtomicU64>>> =
        Arc::new((0..workers).map(|_| Arc::new(AtomicU64::new(u64::MAX))).collect());
    let records_read = Arc::new(AtomicU64::new(0));
    let config = Arc::new(config.clone());
    let worker_end = end.clone();
    let worker_records = records_read.clone();
    let failed: Arc<OnceLock<WorkerFailure>> = Arc::default();
    let worker_failed = failed.clone();
    let guards = timely::execute(timely::Config::process(workers), move |worker| {
        let failed = worker_failed.clone();
        // A worker's panic must not leave the others waiting for its progress forever:
        // it is caught here, and the others leave their loops when they see the flag.
        let run = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let index = worker.index();
            let mine = make_inputs(index);
            let stop = stop.clone();
            let stopped = stopped.clone();
            let source_stopped = stopped[index].clone();
            let stats: Rc<RefCell<SourceStats>> = Rc::default();
            let sink: Rc<RefCell<Option<S>>> = Rc::new(RefCell::new(Some(make_sink(index))));
            let config = config.clone();
            let end = worker_end.clone();
            let done = ProbeHandle::new();
            let source_done = done.clone();
            let source_stats = stats.clone();
            let outputs_sink = sink.clone();
            let records_read = worker_records.clone();
            let checkpoints = checkpoints.clone();
            worker.dataflow::<Time, _, _>(|scope| {
                let settings = SourceSettings {
                    lateness_ms: config.lateness_ms,
                    admission: config.admission(),
                    batching,
                    end: end.clone(),
                    start,
                    stop: stop.clone(),
                };
                let reports = SourceReports {
                    done: source_done,
                    stats: source_stats,
                    records_read,
                    stopped: source_stopped,
                };
                let sourced = source::partitions(scope, mine, settings, reports);
                let mut sourced = sourced
                    .partition(2, |record| match record {
                        Sourced::Event(_) => (0, record),
                        Sourced::Refused(_) => (1, record),
                    })
                    .into_iter();
                let events = sourced.next().expect("two parts").flat_map(|record| match record {
                    Sourced::Event(placed) => Some(placed),
                    Sourced::Refused(_) => None,
                });
                let refused = sourced.next().expect("two parts").flat_map(|record| match record {
                    Sourced::Refused(rejection) => Some(Output::Rejection(rejection)),
                    Sourced::Event(_) => None,
                });
                let dedup = Dedup::new(
                    config.dedup_horizon_ms,
                    Box::new(|placed: &Placed| canonical_bytes(&placed.event)),
                );
                let unique = run_machine(
                    events,
                    Exchange::new(|placed: &Placed| route(&placed.event.id)),
                    "Dedup: by id",
                    dedup,
                    end.clone(),
                    checkpoints.clone(),
                );
                // Each event moves to the one stage that takes its kind: a `clone()` of the
                // stream would copy every event, codes and all, once per consumer.
                let mut by_kind = unique
                    .partition(5, |record| {
                        let part = match &record {
                            Err(_) => 0,
                            Ok(placed) => match placed.event.kind() {
                                Kind::Tariff => 1,
                                Kind::Payment | Kind::Compensation | Kind::Refund => 2,
                                Kind::Order | Kind::OrderCancel | Kind::Emission => 3,
                                Kind::Application | Kind::Dropout | Kind::Defect | Kind::Introduction => 4,
                            },
                        };
                        (part, record)
                    })
                    .into_iter();
                let duplicates = by_kind.next().expect("five parts").flat_map(Result::err);
                let mut next = || by_kind.next().expect("five parts").flat_map(Result::ok);
                let (tariffs, credits, order_events, commands) = (next(), next(), next(), next());

                let tariffs = tariffs.map(check_tariff);
                let tariff_refusals = tariffs
                    .clone()
                    .flat_map(|checked| checked.err().map(|refusal| *refusal));
                // Every worker's accounts need every tariff: broadcast, addressed to the worker.
                let tariffs = tariffs
                    .flat_map(Result::ok)
                    .broadcast()
                    .map(move |placed| AccountIn::Tariff {
                        worker: index as u64,
                        placed: Box::new(placed),
                    });
                let credits = credits.map(|placed| AccountIn::Event(Box::new(placed)));

                let orders = split(run_machine(
                    order_events,
                    Exchange::new(|placed: &Placed| route(&placed.event.account)),
                    "Orders: emission checks",
                    Orders::new(config.sla_ms, config.close_after_days),
                    end.clone(),
                    checkpoints.clone(),
                ));

                let command_config = config.clone();
                let commands = split(commands.flat_map(move |placed| split_command(placed, &command_config)));

                // Finality flows back from the accounts to the index (retention), `finality_delay`
                // later: the index can run that far ahead of the accounts.
                let (finals_handle, finals) = scope.feedback::<Vec<CodesIn>>(finality_delay as u64);
                let codes = split(run_machine(
                    orders.codes.concat(commands.codes).concat(finals),
                    Exchange::new(CodesIn::route),
                    "Codes: national index",
                    Codes::new(config.hold_ms, config.retention_ms),
                    end.clone(),
                    checkpoints.clone(),
                ));

                let account_inputs = credits.concat(orders.accounts).concat(codes.accounts).concat(tariffs);
                let rules = AccountRules {
                    calendar: config.calendar.clone(),
                    expiry_working_days: config.expiry_working_days,
                    close_after_days: config.close_after_days,
                    finality_delay_ms: finality_delay,
                };
                let accounts = split(run_machine(
                    account_inputs,
                    Exchange::new(AccountIn::route),
                    "Accounts: lifecycle, balance, FIFO",
                    Accounts::new(rules),
                    end.clone(),
                    checkpoints.clone(),
                ));

                accounts.finals.connect_loop(finals_handle);

                let periods = aggregates(
                    orders.facts.concat(accounts.facts),
                    config.close_after_days,
                    end.clone(),
                    checkpoints.clone(),
                );

                scope
                    .concatenate([
                        refused,
                        duplicates,
                        tariff_refusals,
                        commands.outs,
                        orders.outs,
                        codes.outs,
                        accounts.outs,
                        periods,
                    ])
                    .unary_frontier::<CapacityContainerBuilder<Vec<()>>, _, _, _>(
                        Pipeline,
                        "Sink: outputs",
                        move |_, _| {
                            move |(input, frontier), _output| {
                                failure::enter_stage("Sink: outputs");
                                let mut sink = outputs_sink.borrow_mut();
                                let sink = sink.as_mut().expect("sink lives until the run ends");
                                input.for_each_stamp(|cap, data| {
                                    let time = *cap.least().expect("a stamp has a time");
                                    for batch in data {
                                        sink.emit(time, batch);
                                    }
                                });
                                sink.frontier(frontier.frontier().as_ref());
                            }
                        },
                    )
                    // After the sink: a time is done once the sink has taken all its outputs.
                    .probe_with(&done);
            });
            step_until_done(worker, stop.as_deref(), &stopped, &done, &failed);
            let sink = sink.borrow_mut().take().expect("sink taken once");
            (stats.take(), sink.finish())
        }));
        match run {
            Ok(result) => Some(result),
            Err(payload) => {
                let failure = WorkerFailure::here(&failure::panic_message(payload.as_ref()), None);
                let _ = failed.set(failure);
                // Timely steps a worker until its dataflows are gone once this closure
                // returns: drop them, or it would wait for progress that never comes.
                for dataflow in worker.installed_dataflows() {
                    worker.drop_dataflow(dataflow);
                }
                None
            }
        }
    })
    .map_err(|error| WorkerFailure::here(&format!("timely workers did not start: {error}"), None))?;
    while !guards.guards().iter().all(|guard| guard.is_finished()) {
        progress(records_read.load(Ordering::Relaxed));
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let mut run = Run {
        stats: SourceStats::default(),
        sinks: Vec::with_capacity(workers),
        end: end.get().unwrap_or(Time::MAX),
    };
    let joined = guards.join();
    if let Some(failure) = failed.get() {
        return Err(failure.clone());
    }
    for worker in joined {
        match worker {
            Ok(Some((stats, done))) => {
                run.stats.merge(stats);
                run.sinks.push(done);
            }
            Ok(None) | Err(_) => {
                let message = "a worker ended without its result";
                return Err(WorkerFailure::here(message, None));
            }
        }
    }
    Ok(run)
}

/// Steps a worker until its dataflow is complete (file runs), or until the stream is
/// stopped and everything before the watermark its sources hold is done, or until any
/// worker has failed.
fn step_until_done(
    worker: &mut timely::worker::Worker,
    stop: Option<&AtomicBool>,
    stopped: &[Arc<AtomicU64>],
    done: &ProbeHandle<Time>,
    failed: &OnceLock<WorkerFailure>,
) {
    loop {
        let active = match stop {
            None => worker.step(),
            Some(_) => worker.step_or_park(Some(std::time::Duration::from_millis(10))),
        };
        if failed.get().is_some() || (stop.is_none() && !active) {
            break;
        }
        if !stop.is_some_and(|stop| stop.load(Ordering::SeqCst)) {
            continue;
        }
        // Stopped once every source holds still and the dataflow has finished all before
        // the lowest of them.
        let held = stopped.iter().map(|s| s.load(Ordering::SeqCst)).min().unwrap_or(0);
        if held != u64::MAX && done.with_frontier(|f| f.iter().all(|t| *t >= held)) {
            break;
        }
    }
    // Everything after the watermark stays undecided (a stream's stop), or nothing more can
    // complete (a failure): drop the dataflow instead of letting timely run it on.
    if stop.is_some() || failed.get().is_some() {
        for dataflow in worker.installed_dataflows() {
            worker.drop_dataflow(dataflow);
        }
    }
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
pub fn run_summarized(
    config: &Config,
    inputs: Vec<Box<dyn PartitionInput>>,
    workers: usize,
    backfill: Option<Checkpoints>,
    progress: &mut dyn FnMut(u64),
) -> Result<(Summary, SourceStats, Vec<Output>), WorkerFailure> {
    let mode = backfill.map_or(Mode::Files, Mode::Backfill);
    let run = run_inputs(
        config,
        inputs,
        workers,
        Batching::default(),
        mode,
        |_| Collect::default(),
        progress,
    )?;
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
    let mut by_status: std::collections::BTreeMap<markledger_operators::Status, i64> = Default::default();
    let mut balances: std::collections::BTreeMap<&str, (markledger_operators::Money, markledger_operators::Money)> =
        Default::default();
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
