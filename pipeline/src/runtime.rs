//! The runtime of the dataflow: timely workers that each build the graph (dataflow.rs) over
//! their partitions, feed a sink (sink.rs), and step until the run is done, stopped, or a
//! worker has failed.
//!
//! - **Partitions to workers.** Partition `i` (files in the order given, Kafka partitions in
//!   topic, then partition order) is read by worker `i mod workers` ([`worker_of`]); on a
//!   cluster of `N` processes with `W` workers each (cluster.rs), by global worker
//!   `i mod (N × W)`, thread `(i mod (N × W)) mod W` of process `(i mod (N × W)) / W`.
//! - **On a cluster** the end of a file run, what the sources read and the outputs are agreed
//!   inside the dataflow (cluster.rs): process 0's workers get every output.
//! - **How a run ends** ([`Mode`]): a file run when every input is finished and the
//!   watermark has reached the largest `ts` read; a backfill likewise, its machines saving
//!   a checkpoint instead of finishing; a stream when asked to stop, after everything
//!   before the watermark its sources hold is done.
//! - **A failure never hangs** (crate::failure): a worker's panic is caught, its dataflow
//!   dropped (timely would otherwise step it forever, waiting for progress), and a flag
//!   raised that the other workers check between steps; the run returns the
//!   [`WorkerFailure`].

use crate::checkpoint::PartFile;
use crate::cluster::{self, Cluster, Totals};
use crate::config::Config;
use crate::control::Control;
use crate::dataflow::{self, finality_delay_ms, GraphSettings};
use crate::failure::WorkerFailure;
use crate::sink::{self, Shared};
use crate::source::{Batching, SourceFinish, SourceReports, SourceStats};
use markledger_connectors::codec::Decoded;
use markledger_connectors::offsets::SourceShare;
use markledger_connectors::partition::{MemoryPartition, PartitionInput};
use markledger_operators::checkpoint::Checkpoints;
use markledger_operators::driver::{Drive, InputEnd};
use markledger_operators::failure;
use markledger_operators::final_codes::{CodesMemory, FinalCodes};
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
    /// Timely worker threads (of this process, on a cluster).
    pub workers: usize,
    /// How sources feed the dataflow.
    pub batching: Batching,
    /// How the run ends.
    pub mode: Mode,
    /// The processes of the run (one by default).
    pub cluster: Cluster,
    /// A run on a cluster that needs the processes' control messages (control.rs): a
    /// stream, or a backfill (with `backfill_parts`).
    pub control: Option<Arc<Control>>,
    /// A backfill on a cluster: how each process writes its part of the checkpoint once
    /// the dataflow is complete, and process 0 the cut's manifest (runner.rs).
    pub backfill_parts: Option<Arc<BackfillParts>>,
}

/// A backfill's checkpoint on a cluster, written in two phases once the dataflow is
/// complete: the first worker of each process writes its process's part and tells process
/// 0 ([`Message::Written`](crate::control::Message)); process 0's, once every process's has
/// come, writes the cut's manifest. A failure panics that worker (the run fails, and the
/// other processes with it: no process waits for ever).
pub struct BackfillParts {
    /// Writes this process's part of the cut of a run whose input ended at the given
    /// instant; the message that tells process 0.
    pub write_part: Box<dyn Fn(Time) -> Result<crate::control::Message, String> + Send + Sync>,
    /// Process 0: writes the manifest of the cut at the given time from every process's
    /// part.
    pub write_manifest: Box<dyn Fn(Time, Vec<PartFile>) -> Result<(), String> + Send + Sync>,
    /// The parts process 0 has been told of (its control handler adds them).
    pub written: Mutex<Vec<PartFile>>,
}

impl std::fmt::Debug for BackfillParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BackfillParts")
    }
}

impl<'c> RunSettings<'c> {
    /// A file run on `workers` workers with the default batching.
    pub fn files(config: &'c Config, workers: usize) -> RunSettings<'c> {
        RunSettings {
            config,
            workers,
            batching: Batching::default(),
            mode: Mode::Files,
            cluster: Cluster::single(),
            control: None,
            backfill_parts: None,
        }
    }

    /// Workers of the whole run: processes × workers per process.
    pub fn total_workers(&self) -> usize {
        self.cluster.processes() * self.workers.max(1)
    }

    /// Whether global worker `worker` runs in this process.
    pub fn is_local(&self, worker: usize) -> bool {
        self.cluster.is_local(worker, self.workers)
    }
}

/// What a run gives back.
pub struct Run<D> {
    /// What the sources read, over all workers (of the whole cluster on process 0 of a file
    /// run; of this process otherwise).
    pub stats: SourceStats,
    /// Each worker's sink, finished (on a cluster's file run, only process 0's hold outputs).
    pub sinks: Vec<D>,
    /// Where the watermark stopped.
    pub end: Time,
    /// What the national index's state held and cost at the end (or its last report).
    pub final_codes: Option<CodesMemory>,
}

/// Removes a run's temporary directory of final codes when dropped.
struct RemoveTemporary(FinalCodes);

impl Drop for RemoveTemporary {
    fn drop(&mut self) {
        self.0.remove_temporary();
    }
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
    run_partitions(settings, inputs.into_iter().enumerate().collect(), make_sink, progress)
}

/// [`run_inputs`] with each input's partition index: on a cluster a process opens only the
/// partitions its workers read ([`RunSettings::is_local`] of [`worker_of`]); the others
/// are left out, never opened.
pub fn run_partitions<S, F>(
    settings: RunSettings<'_>,
    inputs: Vec<(usize, Box<dyn PartitionInput>)>,
    make_sink: F,
    progress: &mut dyn FnMut(u64),
) -> Result<Run<S::Done>, WorkerFailure>
where
    S: Sink + 'static,
    S::Done: Send + 'static,
    F: Fn(usize) -> S + Send + Sync + 'static,
{
    let workers = settings.workers.max(1);
    let total = settings.total_workers();
    let first = settings.cluster.process * workers;
    let mut shares: Vec<Inputs> = (0..workers).map(|_| Vec::new()).collect();
    for (i, input) in inputs {
        let worker = worker_of(i, total);
        if !settings.is_local(worker) {
            return Err(WorkerFailure::here(
                &format!("partition {i} belongs to another process (global worker {worker})"),
                None,
            ));
        }
        shares[worker - first].push(input);
    }
    let shares: Vec<Mutex<Inputs>> = shares.into_iter().map(Mutex::new).collect();
    let take = move |worker: usize| std::mem::take(&mut *shares[worker - first].lock().expect("share lock"));
    run_dataflow(settings, take, make_sink, progress)
}

/// What the workers of one run share.
struct RunShared {
    graph: GraphSettings,
    /// Timely worker threads of this process.
    workers: usize,
    /// A file run on more than one process: outputs go to process 0 (cluster.rs).
    outputs_to_process_zero: bool,
    /// A run on more than one process: the sources tell each other how far they read
    /// (cluster.rs, `agree_on_end`).
    on_cluster: bool,
    /// A stream on a cluster: the control messages (the stop, checkpoints); a backfill on
    /// a cluster: the same, and how it writes its checkpoint.
    control: Option<Arc<Control>>,
    backfill_parts: Option<Arc<BackfillParts>>,
    /// Where each worker's source holds the watermark once stopped (MAX: not yet).
    stopped: Vec<Arc<AtomicU64>>,
    records_read: Arc<AtomicU64>,
    failed: OnceLock<WorkerFailure>,
}

/// Runs the dataflow on `settings.workers` threads (of each process of `settings.cluster`):
/// `make_inputs(worker)` gives each worker its partitions (built on the worker's own thread;
/// `worker` is the global index), `make_sink(worker)` its output sink.
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
    let cluster = settings.cluster.clone();
    cluster
        .check_workers(workers)
        .map_err(|why| WorkerFailure::here(&why, None))?;
    let file_run = !matches!(settings.mode, Mode::Stream { .. });
    let control = settings.control.clone();
    let backfill_parts = settings.backfill_parts.clone();
    let graph = graph_settings(settings, cluster.processes() * workers);
    let end = graph.drive.end.clone();
    let final_codes = graph.final_codes.clone();
    // A temporary directory of final codes is removed however the run ends.
    let _remove = RemoveTemporary(final_codes.clone());
    let shared = Arc::new(RunShared {
        graph,
        workers,
        outputs_to_process_zero: !cluster.is_single() && file_run,
        on_cluster: !cluster.is_single(),
        control,
        backfill_parts,
        stopped: (0..workers).map(|_| Arc::new(AtomicU64::new(u64::MAX))).collect(),
        records_read: Arc::new(AtomicU64::new(0)),
        failed: OnceLock::new(),
    });
    let worker_shared = shared.clone();
    let connected = (!cluster.is_single()).then(|| connect_watchdog(&cluster));
    let guards = timely::execute(cluster.timely_config(workers), move |worker| {
        run_worker(worker, &worker_shared, &make_inputs, &make_sink)
    })
    .map_err(|error| WorkerFailure::here(&format!("timely workers did not start: {error}"), None))?;
    drop(connected);
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
        final_codes: final_codes.memory(),
    };
    let mut everyone: Option<SourceStats> = None;
    for worker in joined {
        let Ok(Some(result)) = worker else {
            return Err(WorkerFailure::here("a worker ended without its result", None));
        };
        run.stats.merge(result.stats);
        run.sinks.push(result.done);
        // Worker 0 heard every source of the cluster (a file run): their figures, in worker order.
        let totals = result.totals;
        if file_run && totals.iter().all(Option::is_some) && !totals.is_empty() {
            let mut merged = SourceStats::default();
            totals.into_iter().flatten().for_each(|stats| merged.merge(stats));
            everyone = Some(merged);
        }
    }
    if let Some(everyone) = everyone {
        run.stats = everyone;
    }
    Ok(run)
}

/// How long a process of a cluster waits for every other process to connect.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Timely waits for every process of a cluster to connect, retrying for ever: a process that
/// never comes up (or failed at its start) would leave the others waiting. This watchdog
/// ends the process, with a line that says why, if the returned sender is not dropped
/// (connected) within [`CONNECT_TIMEOUT`].
fn connect_watchdog(cluster: &Cluster) -> std::sync::mpsc::Sender<()> {
    let (connected, wait) = std::sync::mpsc::channel::<()>();
    let (process, addresses) = (cluster.process, cluster.addresses.join(", "));
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(CONNECT_TIMEOUT) {
            markledger_operators::note!(
                "markledger: fatal: process {process} of the cluster could not connect to every other process \
                 within {} s ({addresses}): start them all with the same hostfile",
                CONNECT_TIMEOUT.as_secs()
            );
            std::process::exit(crate::failure::EXIT_FAILURE_CODE);
        }
    });
    connected
}

/// The graph's settings for a run: where its watermark stops, its checkpoints, its finality
/// delay, and where a restored run starts (with the read position it had).
fn graph_settings(settings: RunSettings<'_>, workers: usize) -> GraphSettings {
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
        final_codes: settings.config.final_codes.place(),
        config: settings.config.clone(),
        batching: settings.batching.at_least_one(),
        finality_delay_ms: finality_delay_ms(settings.config, checkpoints.is_some()),
        drive: Drive { end, checkpoints },
        start,
        stop,
    }
}

/// What a worker gives back.
struct WorkerResult<D> {
    /// What its source read.
    stats: SourceStats,
    /// Its sink, finished.
    done: D,
    /// Worker 0 of a file run: what every source of the cluster read, by worker.
    totals: Vec<Option<SourceStats>>,
}

/// One worker: builds its graph, steps it, and finishes its sink; a panic is caught and
/// recorded for the whole run (the module docs).
fn run_worker<S, F, I>(
    worker: &mut Worker,
    shared: &RunShared,
    make_inputs: &I,
    make_sink: &F,
) -> Option<WorkerResult<S::Done>>
where
    S: Sink + 'static,
    F: Fn(usize) -> S,
    I: Fn(usize) -> Inputs,
{
    let run = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let index = worker.index();
        let local = index % shared.workers;
        let sink: Shared<S> = Rc::new(RefCell::new(Some(make_sink(index))));
        let stats: Rc<RefCell<SourceStats>> = Rc::default();
        let finish: Rc<RefCell<SourceFinish>> = Rc::default();
        let totals: Totals = Rc::default();
        let done = ProbeHandle::new();
        let inputs = make_inputs(index);
        worker.dataflow::<Time, _, _>(|scope| {
            let reports = SourceReports {
                done: done.clone(),
                stats: stats.clone(),
                records_read: shared.records_read.clone(),
                stopped: shared.stopped[local].clone(),
                finish: finish.clone(),
            };
            let mut outputs = dataflow::build(scope, inputs, &shared.graph, reports);
            // One process shares the end through memory (each source reports to it at
            // once); a cluster agrees on it in the dataflow (a stream: how far each source
            // has read, which its idle watermark goes to).
            if shared.on_cluster {
                let end = shared.graph.drive.end.clone();
                // A restored run has read up to its checkpoint's largest instant.
                finish.borrow_mut().read = end.read_max();
                cluster::agree_on_end(
                    scope,
                    shared.workers,
                    finish.clone(),
                    stats.clone(),
                    end,
                    totals.clone(),
                );
            }
            if shared.outputs_to_process_zero {
                outputs = cluster::to_process_zero(outputs, shared.workers);
            }
            sink::write_outputs(outputs, sink.clone(), &done);
        });
        // A stream's control messages flow while it runs; a backfill's once it is complete
        // (a control dataflow never completes: the file run's end would never come).
        if let (Some(control), None) = (&shared.control, &shared.backfill_parts) {
            crate::control::build(worker, control, shared.workers);
        }
        step_until_done(worker, shared, &done);
        if let (Some(control), Some(parts)) = (&shared.control, &shared.backfill_parts) {
            if shared.failed.get().is_none() {
                write_backfill_parts(worker, shared, control, parts);
            }
        }
        let sink = sink.borrow_mut().take().expect("sink taken once");
        WorkerResult {
            stats: stats.take(),
            done: sink.finish(),
            totals: totals.take(),
        }
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
        if held == u64::MAX {
            continue;
        }
        // On a cluster, the lowest of every process's: each tells the others once.
        let held = match &shared.control {
            None => Some(held),
            Some(control) => control.stopping(held),
        };
        if held.is_some_and(|held| done.with_frontier(|f| f.iter().all(|t| *t >= held))) {
            break;
        }
    }
    // Everything after the watermark stays undecided (a stream's stop), or nothing more can
    // complete (a failure): drop the dataflow instead of letting timely run it on.
    if stop.is_some() || shared.failed.get().is_some() {
        drop_dataflows(worker);
    }
}

/// A backfill on a cluster, its dataflow complete: each process's first worker writes its
/// part and tells process 0; process 0's writes the manifest once every part is written.
/// Panics (the run fails, with the reason) when a write fails.
fn write_backfill_parts(worker: &mut Worker, shared: &RunShared, control: &Arc<Control>, parts: &BackfillParts) {
    crate::control::build(worker, control, shared.workers);
    if worker.index() % shared.workers == 0 {
        let end = shared.graph.drive.end.get().unwrap_or(0);
        let written = (parts.write_part)(end).unwrap_or_else(|why| panic!("{why}"));
        control.send(0, written);
        if control.process == 0 {
            // Every process's part (a process that failed ends this one: its connection
            // goes away, and timely's threads end the process).
            while parts.written.lock().expect("parts lock").len() < control.processes {
                worker.step_or_park(Some(std::time::Duration::from_millis(10)));
            }
            let written = std::mem::take(&mut *parts.written.lock().expect("parts lock"));
            (parts.write_manifest)(end + 1, written).unwrap_or_else(|why| panic!("{why}"));
        } else {
            while !control.sent() {
                worker.step_or_park(Some(std::time::Duration::from_millis(1)));
            }
        }
    }
    drop_dataflows(worker);
}

/// Drops the worker's dataflows: timely steps a worker until its dataflows are gone once the
/// worker's closure returns.
fn drop_dataflows(worker: &mut Worker) {
    for dataflow in worker.installed_dataflows() {
        worker.drop_dataflow(dataflow);
    }
}
