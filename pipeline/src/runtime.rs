//! The runtime of the dataflow: timely workers that each build the graph (dataflow.rs) over
//! their partitions, feed a sink (sink.rs), and step until the run is done, stopped, or a
//! worker has failed.
//!
//! - **Partitions to workers.** Partition `i` (files in the order given, Kafka partitions in
//!   topic, then partition order) is read by worker `i mod workers` ([`worker_of`]).
//! - **How a run ends** ([`Mode`]): a file run when every input is finished and the
//!   watermark has reached the largest `ts` read; a backfill likewise, its machines saving
//!   a checkpoint instead of finishing; a stream when asked to stop, after everything
//!   before the watermark its sources hold is done.
//! - **A failure never hangs** (crate::failure): a worker's panic is caught, its dataflow
//!   dropped (timely would otherwise step it forever, waiting for progress), and a flag
//!   raised that the other workers check between steps; the run returns the
//!   [`WorkerFailure`].

use crate::config::Config;
use crate::dataflow::{self, finality_delay_ms, GraphSettings};
use crate::failure::WorkerFailure;
use crate::sink::{self, Shared};
use crate::source::{Batching, SourceReports, SourceStats};
use markledger_connectors::codec::Decoded;
use markledger_connectors::offsets::SourceShare;
use markledger_connectors::partition::{MemoryPartition, PartitionInput};
use markledger_operators::checkpoint::Checkpoints;
use markledger_operators::driver::{Drive, InputEnd};
use markledger_operators::failure;
use markledger_operators::flow::Time;
use markledger_operators::output::{Output, Sink};
use std::cell::RefCell;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use timely::dataflow::ProbeHandle;
use timely::worker::Worker;

/// A worker's partitions.
pub type Inputs = Vec<Box<dyn PartitionInput>>;

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

/// What a run is: its configuration, workers, batching and how it ends.
#[derive(Clone, Debug)]
pub struct RunSettings<'c> {
    /// The engine's configuration.
    pub config: &'c Config,
    /// Timely worker threads.
    pub workers: usize,
    /// How sources feed the dataflow.
    pub batching: Batching,
    /// How the run ends.
    pub mode: Mode,
}

impl<'c> RunSettings<'c> {
    /// A file run on `workers` workers with the default batching.
    pub fn files(config: &'c Config, workers: usize) -> RunSettings<'c> {
        RunSettings {
            config,
            workers,
            batching: Batching::default(),
            mode: Mode::Files,
        }
    }
}

/// What a run gives back.
pub struct Run<D> {
    /// What the sources read, over all workers.
    pub stats: SourceStats,
    /// Each worker's sink, finished.
    pub sinks: Vec<D>,
    /// Where the watermark stopped.
    pub end: Time,
}

/// The worker that reads partition `index`: round robin, the same for every source.
pub fn worker_of(index: usize, workers: usize) -> usize {
    index % workers.max(1)
}

/// In-memory partitions as inputs.
pub fn in_memory(partitions: Vec<Vec<Decoded>>) -> Inputs {
    partitions
        .into_iter()
        .enumerate()
        .map(|(i, records)| {
            Box::new(MemoryPartition::new(format!("partition {i}"), records)) as Box<dyn PartitionInput>
        })
        .collect()
}

/// Runs the dataflow over in-memory partitions on `workers` threads and returns every
/// output. A worker's failure panics here, with its one-line description (tests; the binary
/// goes through [`run_inputs`]).
pub fn run(config: &Config, partitions: Vec<Vec<Decoded>>, workers: usize) -> Vec<Output> {
    run_batched(config, partitions, workers, Batching::default())
}

/// [`run`] with an explicit source batching.
pub fn run_batched(config: &Config, partitions: Vec<Vec<Decoded>>, workers: usize, batching: Batching) -> Vec<Output> {
    let settings = RunSettings {
        batching,
        ..RunSettings::files(config, workers)
    };
    let run = run_inputs(settings, in_memory(partitions), |_| Vec::new(), &mut |_| {});
    run.unwrap_or_else(|failure| panic!("{failure}"))
        .sinks
        .into_iter()
        .flatten()
        .collect()
}

/// Runs the dataflow over `inputs`, partition `i` read by worker `i mod workers`; each
/// worker's outputs go to its own sink; `progress` is called now and then, from the calling
/// thread, with the records read so far.
pub fn run_inputs<S, F>(
    settings: RunSettings<'_>,
    inputs: Inputs,
    make_sink: F,
    progress: &mut dyn FnMut(u64),
) -> Result<Run<S::Done>, WorkerFailure>
where
    S: Sink + 'static,
    S::Done: Send + 'static,
    F: Fn(usize) -> S + Send + Sync + 'static,
{
    let workers = settings.workers.max(1);
    let mut shares: Vec<Inputs> = (0..workers).map(|_| Vec::new()).collect();
    for (i, input) in inputs.into_iter().enumerate() {
        shares[worker_of(i, workers)].push(input);
    }
    let shares: Vec<Mutex<Inputs>> = shares.into_iter().map(Mutex::new).collect();
    let take = move |worker: usize| std::mem::take(&mut *shares[worker].lock().expect("share lock"));
    run_dataflow(settings, take, make_sink, progress)
}

/// What the workers of one run share.
struct RunShared {
    graph: GraphSettings,
    /// Where each worker's source holds the watermark once stopped (MAX: not yet).
    stopped: Vec<Arc<AtomicU64>>,
    records_read: Arc<AtomicU64>,
    failed: OnceLock<WorkerFailure>,
}

/// Runs the dataflow on `settings.workers` threads: `make_inputs(worker)` gives each worker
/// its partitions (built on the worker's own thread), `make_sink(worker)` its output sink.
pub fn run_dataflow<S, F, I>(
    settings: RunSettings<'_>,
    make_inputs: I,
    make_sink: F,
    progress: &mut dyn FnMut(u64),
) -> Result<Run<S::Done>, WorkerFailure>
where
    S: Sink + 'static,
    S::Done: Send + 'static,
    F: Fn(usize) -> S + Send + Sync + 'static,
    I: Fn(usize) -> Inputs + Send + Sync + 'static,
{
    let workers = settings.workers.max(1);
    let graph = graph_settings(settings);
    let end = graph.drive.end.clone();
    let shared = Arc::new(RunShared {
        graph,
        stopped: (0..workers).map(|_| Arc::new(AtomicU64::new(u64::MAX))).collect(),
        records_read: Arc::new(AtomicU64::new(0)),
        failed: OnceLock::new(),
    });
    let worker_shared = shared.clone();
    let guards = timely::execute(timely::Config::process(workers), move |worker| {
        run_worker(worker, &worker_shared, &make_inputs, &make_sink)
    })
    .map_err(|error| WorkerFailure::here(&format!("timely workers did not start: {error}"), None))?;
    while !guards.guards().iter().all(|guard| guard.is_finished()) {
        progress(shared.records_read.load(Ordering::Relaxed));
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let joined = guards.join();
    if let Some(failure) = shared.failed.get() {
        return Err(failure.clone());
    }
    let mut run = Run {
        stats: SourceStats::default(),
        sinks: Vec::with_capacity(workers),
        end: end.get().unwrap_or(Time::MAX),
    };
    for worker in joined {
        let Ok(Some((stats, done))) = worker else {
            return Err(WorkerFailure::here("a worker ended without its result", None));
        };
        run.stats.merge(stats);
        run.sinks.push(done);
    }
    Ok(run)
}

/// The graph's settings for a run: where its watermark stops, its checkpoints, its finality
/// delay, and where a restored run starts (with the read position it had).
fn graph_settings(settings: RunSettings<'_>) -> GraphSettings {
    let workers = settings.workers.max(1);
    let (end, stop, checkpoints) = match settings.mode {
        Mode::Files => (InputEnd::after(workers), None, None),
        Mode::Backfill(checkpoints) => (InputEnd::after(workers), None, Some(checkpoints)),
        Mode::Stream { stop, checkpoints } => (InputEnd::never(), Some(stop), checkpoints),
    };
    let start = checkpoints.as_ref().and_then(Checkpoints::restored).map_or(0, |cut| {
        let read_max = (0..cut.workers)
            .filter_map(|worker| SourceShare::of(cut, worker).ok())
            .map(|share| share.read_max)
            .max()
            .unwrap_or(0);
        end.note_read(read_max);
        cut.time
    });
    GraphSettings {
        config: settings.config.clone(),
        batching: settings.batching.at_least_one(),
        finality_delay_ms: finality_delay_ms(settings.config, checkpoints.is_some()),
        drive: Drive { end, checkpoints },
        start,
        stop,
    }
}

/// One worker: builds its graph, steps it, and finishes its sink; a panic is caught and
/// recorded for the whole run (the module docs).
fn run_worker<S, F, I>(
    worker: &mut Worker,
    shared: &RunShared,
    make_inputs: &I,
    make_sink: &F,
) -> Option<(SourceStats, S::Done)>
where
    S: Sink + 'static,
    F: Fn(usize) -> S,
    I: Fn(usize) -> Inputs,
{
    let run = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let index = worker.index();
        let sink: Shared<S> = Rc::new(RefCell::new(Some(make_sink(index))));
        let stats: Rc<RefCell<SourceStats>> = Rc::default();
        let done = ProbeHandle::new();
        let inputs = make_inputs(index);
        worker.dataflow::<Time, _, _>(|scope| {
            let reports = SourceReports {
                done: done.clone(),
                stats: stats.clone(),
                records_read: shared.records_read.clone(),
                stopped: shared.stopped[index].clone(),
            };
            let outputs = dataflow::build(scope, inputs, &shared.graph, reports);
            sink::write_outputs(outputs, sink.clone(), &done);
        });
        step_until_done(worker, shared, &done);
        let sink = sink.borrow_mut().take().expect("sink taken once");
        (stats.take(), sink.finish())
    }));
    match run {
        Ok(result) => Some(result),
        Err(payload) => {
            let _ = shared
                .failed
                .set(WorkerFailure::here(&failure::panic_message(payload.as_ref()), None));
            drop_dataflows(worker);
            None
        }
    }
}

/// Steps a worker until its dataflow is complete (file runs), or until the stream is
/// stopped and everything before the watermark its sources hold is done, or until any
/// worker has failed.
fn step_until_done(worker: &mut Worker, shared: &RunShared, done: &ProbeHandle<Time>) {
    let stop = shared.graph.stop.as_deref();
    loop {
        // A file run parks for at most 1 ms when it has nothing to do (a message from
        // another worker wakes it at once): a source waiting for a generator pipe
        // (connectors/src/pipe.rs) would otherwise spin and starve the generator thread.
        let active = match stop {
            None => worker.step_or_park(Some(std::time::Duration::from_millis(1))),
            Some(_) => worker.step_or_park(Some(std::time::Duration::from_millis(10))),
        };
        if shared.failed.get().is_some() || (stop.is_none() && !active) {
            break;
        }
        if !stop.is_some_and(|stop| stop.load(Ordering::SeqCst)) {
            continue;
        }
        // Stopped once every source holds still and the dataflow has finished all before
        // the lowest of them.
        let held = shared
            .stopped
            .iter()
            .map(|s| s.load(Ordering::SeqCst))
            .min()
            .unwrap_or(0);
        if held != u64::MAX && done.with_frontier(|f| f.iter().all(|t| *t >= held)) {
            break;
        }
    }
    // Everything after the watermark stays undecided (a stream's stop), or nothing more can
    // complete (a failure): drop the dataflow instead of letting timely run it on.
    if stop.is_some() || shared.failed.get().is_some() {
        drop_dataflows(worker);
    }
}

/// Drops the worker's dataflows: timely steps a worker until its dataflows are gone once the
/// worker's closure returns.
fn drop_dataflows(worker: &mut Worker) {
    for dataflow in worker.installed_dataflows() {
        worker.drop_dataflow(dataflow);
    }
}
