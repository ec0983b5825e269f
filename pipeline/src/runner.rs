//! File runs: read partitions, run an engine, write the five outputs, and tell a person
//! what happened (a progress line on long work, a summary at the end).

use crate::checkpoint::{SourceShare, Store, NAMES};
use crate::cluster::Cluster;
use crate::config::Config;
use crate::reference;
use crate::runtime::worker_of;
use crate::summary::Summary;
use anyhow::{Context, Result};
use markledger_connectors::codec::Decoded;
use markledger_connectors::file::{list_partitions, OutputCounts, OutputFiles, PartitionReader};
use markledger_connectors::partition::PartitionInput;
use markledger_operators::checkpoint::Checkpoints;
use markledger_operators::flow::time_of;
use markledger_operators::money::render;
use markledger_operators::Ts;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Prints a progress line at most once per interval, to stderr.
pub struct ProgressLine {
    started: Instant,
    last: Instant,
    interval: Duration,
    quiet: bool,
}

impl ProgressLine {
    /// A progress line printing at most every `interval` (nothing when `quiet`).
    pub fn new(interval: Duration, quiet: bool) -> ProgressLine {
        let now = Instant::now();
        ProgressLine {
            started: now,
            last: now,
            interval,
            quiet,
        }
    }

    /// Prints `message()` if the interval has passed.
    pub fn tick(&mut self, message: impl FnOnce() -> String) {
        if self.quiet || self.last.elapsed() < self.interval {
            return;
        }
        self.last = Instant::now();
        markledger_operators::note!("[{:>6.1}s] {}", self.started.elapsed().as_secs_f64(), message());
    }

    /// Time since the line was created.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

/// Everything a file run produced.
#[derive(Debug)]
pub struct RunReport {
    /// The engine's summary.
    pub summary: Summary,
    /// Records written per output file.
    pub written: OutputCounts,
    /// Partitions read.
    pub partitions: Vec<PathBuf>,
    /// Input bytes read.
    pub bytes: u64,
    /// Wall time reading the input before processing it (zero when reading overlapped it).
    pub read_time: Duration,
    /// Wall time of the whole run.
    pub total_time: Duration,
    /// The engine that ran.
    pub engine: Engine,
    /// Processes of the run (a cluster: more than one; process 0's report is the whole run's).
    pub processes: usize,
}

/// Reads every partition fully, in order.
pub fn read_partitions(
    paths: &[PathBuf],
    progress: &mut ProgressLine,
) -> Result<(Vec<PathBuf>, Vec<Vec<Decoded>>, u64)> {
    let partitions = list_partitions(paths).context("listing input partitions")?;
    let mut all = Vec::with_capacity(partitions.len());
    let mut bytes = 0;
    let mut records = 0u64;
    for path in &partitions {
        let mut reader = PartitionReader::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut records_of_partition = Vec::new();
        for record in reader.by_ref() {
            records_of_partition.push(record);
            records += 1;
            if records % 4096 == 0 {
                progress.tick(|| format!("reading {}: {records} records", path.display()));
            }
        }
        if let Some(error) = reader.io_error() {
            anyhow::bail!(
                "reading {}: {error} (after {} bytes)",
                path.display(),
                reader.bytes_read()
            );
        }
        bytes += reader.bytes_read();
        all.push(records_of_partition);
    }
    Ok((partitions, all, bytes))
}

/// Which engine a run uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// The single-threaded oracle.
    Reference,
    /// The timely dataflow on this many worker threads.
    Dataflow {
        /// Worker threads.
        workers: usize,
    },
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Engine::Reference => write!(f, "reference (1 thread)"),
            Engine::Dataflow { workers } => write!(f, "dataflow ({workers} workers)"),
        }
    }
}

/// What a file run reads, writes and runs with.
#[derive(Clone, Debug)]
pub struct FileRun<'a> {
    /// Input partitions: files, or directories whose files are partitions.
    pub inputs: &'a [PathBuf],
    /// The output directory.
    pub out: &'a Path,
    /// No progress lines.
    pub quiet: bool,
    /// Which engine.
    pub engine: Engine,
    /// A backfill's checkpoint directory (the dataflow only).
    pub state: Option<&'a Path>,
    /// The processes of the run (the dataflow only; one by default). Process 0 writes the
    /// outputs, the others none (cluster.rs).
    pub cluster: Cluster,
}

/// `markledger run`: read the partitions, run the engine, write the five outputs.
///
/// With `state` (the dataflow only), the run is a backfill: it ends in a checkpoint in
/// `state` from which `markledger stream --state` goes on (docs/ARCHITECTURE.md,
/// "Checkpoints").
pub fn run_files(config: &Config, run: &FileRun<'_>) -> Result<RunReport> {
    let mut progress = ProgressLine::new(Duration::from_secs(2), run.quiet);
    match run.engine {
        Engine::Dataflow { workers } => run_dataflow_files(config, run, workers, &mut progress),
        Engine::Reference if !run.cluster.is_single() => {
            anyhow::bail!("--processes (a cluster) needs the dataflow engine")
        }
        Engine::Reference if run.state.is_some() => {
            anyhow::bail!("--state (a backfill checkpoint) needs the dataflow engine")
        }
        Engine::Reference => run_reference_files(config, run, &mut progress),
    }
}

/// The dataflow streams every partition from disk as it goes, then writes its outputs in
/// their canonical order (and a backfill's checkpoint).
fn run_dataflow_files(
    config: &Config,
    run: &FileRun<'_>,
    workers: usize,
    progress: &mut ProgressLine,
) -> Result<RunReport> {
    let cluster = &run.cluster;
    if !cluster.is_single() && run.state.is_some() {
        anyhow::bail!("--state with --processes: checkpoints on a cluster: not yet (run the backfill on one process)");
    }
    let partitions = list_partitions(run.inputs).context("listing input partitions")?;
    // On a cluster every process lists the same partitions but opens only its own.
    let total = cluster.processes() * workers.max(1);
    let mut readers: Vec<(usize, Box<dyn PartitionInput>)> = Vec::with_capacity(partitions.len());
    for (i, path) in partitions.iter().enumerate() {
        if worker_of(i, total) / workers.max(1) != cluster.process {
            continue;
        }
        let reader = PartitionReader::open(path).with_context(|| format!("opening {}", path.display()))?;
        readers.push((i, Box::new(reader)));
    }
    let store = run.state.map(Store::open).transpose()?;
    let backfill = store.as_ref().map(|_| Checkpoints::backfill(workers, &NAMES));
    let (summary, stats, outputs) = crate::summary::run_summarized(
        config,
        readers,
        workers,
        cluster.clone(),
        backfill.clone(),
        &mut |records| {
            progress.tick(|| format!("read {records} records"));
        },
    )?;
    if !stats.errors.is_empty() {
        anyhow::bail!("reading input: {}", stats.errors.join("; "));
    }
    if let (Some(store), Some(checkpoints)) = (&store, &backfill) {
        write_backfill_checkpoint(store, checkpoints, workers, summary.last_ts)?;
    }
    // Process 0 writes the outputs (it has all of them); the others write none.
    let written = if cluster.process == 0 {
        let mut sink =
            OutputFiles::create(run.out).with_context(|| format!("creating outputs in {}", run.out.display()))?;
        for output in &outputs {
            sink.write(output);
        }
        sink.finish()
            .with_context(|| format!("writing outputs in {}", run.out.display()))?
    } else {
        OutputCounts::default()
    };
    Ok(RunReport {
        summary,
        written,
        partitions,
        bytes: stats.bytes,
        // Reading and processing overlap: the dataflow reads as it goes.
        read_time: Duration::ZERO,
        total_time: progress.elapsed(),
        engine: run.engine,
        processes: cluster.processes(),
    })
}

/// A backfill's checkpoint: the machines' shares (saved at the end + 1 ms) and the sources'.
/// Files are not Kafka partitions: the stream reads its topics from their start, placing
/// what is older than the checkpoint at it (late).
fn write_backfill_checkpoint(
    store: &Store,
    checkpoints: &Checkpoints,
    workers: usize,
    last_ts: Option<Ts>,
) -> Result<()> {
    let read_max = last_ts.map_or(0, time_of);
    for worker in 0..workers {
        let share = SourceShare {
            read_max,
            partitions: Vec::new(),
        };
        checkpoints.deposit(read_max + 1, share.share(worker));
    }
    let cut = checkpoints
        .take_complete()
        .context("the backfill's checkpoint is incomplete (a machine did not save its share)")?;
    let written = store.write(&cut).context("writing the backfill's checkpoint")?;
    markledger_operators::note!(
        "markledger run: backfill checkpoint {} ({:.1} MB, {} ms)",
        written.path.display(),
        written.bytes as f64 / 1e6,
        written.took.as_millis()
    );
    Ok(())
}

/// The reference engine reads every partition first, then applies the events in account
/// order, writing outputs as it goes.
fn run_reference_files(config: &Config, run: &FileRun<'_>, progress: &mut ProgressLine) -> Result<RunReport> {
    let (partitions, records, bytes) = read_partitions(run.inputs, progress)?;
    let read_time = progress.elapsed();
    let sink = OutputFiles::create(run.out).with_context(|| format!("creating outputs in {}", run.out.display()))?;
    let (summary, sink) = reference::run(config, records, sink, &mut |done, total| {
        progress.tick(|| {
            format!(
                "applied {done} of {total} events ({:.0}%)",
                100.0 * done as f64 / total.max(1) as f64
            )
        });
    });
    let written = sink
        .finish()
        .with_context(|| format!("writing outputs in {}", run.out.display()))?;
    Ok(RunReport {
        engine: run.engine,
        summary,
        written,
        partitions,
        bytes,
        read_time,
        total_time: progress.elapsed(),
        processes: 1,
    })
}

/// A summary a person can read.
pub fn render_summary(report: &RunReport, out: &Path) -> String {
    let s = &report.summary;
    let seconds = report.total_time.as_secs_f64().max(1e-9);
    let mut text = String::new();
    let mut line = |l: String| {
        text.push_str(&l);
        text.push('\n');
    };
    line("markledger run: summary".to_string());
    line(format!(
        "  input       {} partitions, {} records, {:.1} MB; {} events naming {} codes ({} late)",
        report.partitions.len(),
        s.records,
        report.bytes as f64 / 1e6,
        s.events,
        s.code_events,
        s.late_events
    ));
    if let (Some(first), Some(last)) = (s.first_ts, s.last_ts) {
        line(format!(
            "  time span   {first} .. {last} (the watermark stopped at the last)"
        ));
    }
    match report.engine {
        Engine::Dataflow { workers } if report.processes > 1 => line(format!(
            "  engine      dataflow ({} processes × {workers} workers)",
            report.processes
        )),
        engine => line(format!("  engine      {engine}")),
    }
    line(format!(
        "  speed       {:.2} s in all{}; {:.0} code events/s",
        seconds,
        if report.read_time.is_zero() {
            " (reading as it went)".to_string()
        } else {
            format!(" ({:.2} s reading first)", report.read_time.as_secs_f64())
        },
        s.code_events as f64 / seconds
    ));
    let statuses = counts(s.codes_by_status.iter().map(|(status, n)| (status.as_str(), *n)));
    line(format!(
        "  codes       {}",
        if statuses.is_empty() { "none".into() } else { statuses }
    ));
    line(format!(
        "  money       payments {} + compensations {} − charged {} − refunds {} = balances {} (still owed {})",
        render(s.payments),
        render(s.compensations),
        render(s.charged),
        render(s.refunds),
        render(s.balance),
        render(s.unpaid)
    ));
    debug_assert_eq!(s.payments + s.compensations - s.charged - s.refunds, s.balance);
    let rejected: u64 = s.rejections.values().sum();
    let reasons = counts(s.rejections.iter().map(|(reason, n)| (reason.as_str(), *n)));
    line(format!(
        "  rejections  {rejected}{}",
        if reasons.is_empty() {
            String::new()
        } else {
            format!(": {reasons}")
        }
    ));
    let w = &report.written;
    line(format!(
        "  outputs     {}: status {}, ledger {}, balances {}, rejections {}, periods {}",
        out.display(),
        w.status,
        w.ledger,
        w.balances,
        w.rejections,
        w.periods
    ));
    line(format!("  accounts    {}", s.accounts));
    text
}

/// `NAME n, NAME n, …` of named counts.
fn counts<'a>(items: impl Iterator<Item = (&'a str, u64)>) -> String {
    items
        .map(|(name, n)| format!("{name} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}
