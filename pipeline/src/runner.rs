//! File runs: read partitions, run an engine, write the five outputs, and tell a person
//! what happened (a progress line on long work, a summary at the end).

use crate::checkpoint::{
    keep_manifests, pauses_by_machine, ClusterManifest, ManifestCache, PartFile, SourceShare, Store, NAMES,
};
use crate::cluster::Cluster;
use crate::config::Config;
use crate::control::{Control, Message};
use crate::generated::{self, Generated};
use crate::reference;
use crate::runtime::worker_of;
use crate::runtime::BackfillParts;
use crate::summary::{Spill, Summarized, Summary};
use anyhow::{Context, Result};
use markledger_connectors::codec::Decoded;
use markledger_connectors::file::{
    list_partitions, merge_runs, OutputCounts, OutputFiles, PartitionReader, SpillDir, OUTPUT_RUN_BYTES,
};
use markledger_connectors::partition::PartitionInput;
use markledger_operators::checkpoint::Checkpoints;
use markledger_operators::final_codes::CodesMemory;
use markledger_operators::flow::{time_of, Time};
use markledger_operators::money::render;
use markledger_operators::Ts;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Prints a progress line at most once per interval, to stderr; on a terminal, with a
/// known total ([`ProgressLine::with_total`]), a progress bar with rate and ETA instead
/// (indicatif), so a long `run` or `generate` says when it will be done.
pub struct ProgressLine {
    started: Instant,
    last: Instant,
    interval: Duration,
    quiet: bool,
    bar: Option<indicatif::ProgressBar>,
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
            bar: None,
        }
    }

    /// Shows a bar of `total` `unit`s (an estimate when `estimated`) when stderr is a
    /// terminal and not `quiet`; otherwise the plain line stays.
    pub fn with_total(mut self, total: u64, unit: &str, estimated: bool) -> ProgressLine {
        use std::io::IsTerminal as _;
        if self.quiet || total == 0 || !std::io::stderr().is_terminal() {
            return self;
        }
        let about = if estimated { "~" } else { "" };
        let template = format!(
            "{{elapsed_precise}} [{{bar:40}}] {{human_pos}}/{about}{{human_len}} {unit} ({{rate}}, ETA {{eta}}) {{msg}}"
        );
        let style = indicatif::ProgressStyle::with_template(&template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .with_key(
                "rate",
                |state: &indicatif::ProgressState, out: &mut dyn std::fmt::Write| {
                    let _ = write!(out, "{:.0}/s", state.per_sec());
                },
            )
            .progress_chars("=> ");
        let bar = indicatif::ProgressBar::new(total).with_style(style);
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr_with_hz(4));
        self.bar = Some(bar);
        self
    }

    /// Prints `message()` if the interval has passed.
    pub fn tick(&mut self, message: impl FnOnce() -> String) {
        if self.quiet || self.last.elapsed() < self.interval {
            return;
        }
        self.last = Instant::now();
        match &self.bar {
            Some(bar) => bar.set_message(message()),
            None => markledger_operators::note!("[{:>6.1}s] {}", self.started.elapsed().as_secs_f64(), message()),
        }
    }

    /// At `position` of the total: moves the bar, or prints `message()` as [`Self::tick`].
    pub fn advance(&mut self, position: u64, message: impl FnOnce() -> String) {
        match &self.bar {
            Some(bar) => {
                // An estimate can be passed: grow the total rather than stick at 100 %.
                if position > bar.length().unwrap_or(0) {
                    bar.set_length(position + position / 10);
                }
                bar.set_position(position);
            }
            None => self.tick(message),
        }
    }

    /// Whether a bar is shown (a terminal and a known total).
    pub fn is_bar(&self) -> bool {
        self.bar.is_some()
    }

    /// Removes the bar (before a summary is printed).
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    /// Time since the line was created.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

/// How many records the inputs hold: a generated dataset's `manifest.json` says exactly;
/// otherwise estimated from the files' sizes and the mean line length of their first
/// 64 KiB (the binary format: from its size alone, none). `(records, estimated)`.
pub fn expected_records(inputs: &[PathBuf]) -> Option<(u64, bool)> {
    use std::io::Read as _;
    let mut exact = 0u64;
    let mut all_exact = true;
    for input in inputs {
        let manifest = std::fs::read_to_string(input.join("manifest.json")).ok();
        let events = manifest
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .and_then(|manifest| manifest["events"].as_u64());
        match events {
            Some(events) => exact += events,
            None => all_exact = false,
        }
    }
    if all_exact {
        return Some((exact, false));
    }
    let partitions = markledger_connectors::file::list_partitions(inputs).ok()?;
    let (mut bytes, mut sampled, mut lines) = (0u64, 0u64, 0u64);
    for path in &partitions {
        bytes += std::fs::metadata(path).ok()?.len();
        let mut head = Vec::new();
        std::fs::File::open(path)
            .ok()?
            .take(64 * 1024)
            .read_to_end(&mut head)
            .ok()?;
        sampled += head.len() as u64;
        lines += head.iter().filter(|byte| **byte == b'\n').count() as u64;
    }
    (lines > 0).then(|| (bytes * lines / sampled.max(1), true))
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
    /// Where outputs waiting for their canonical order spill (a directory made inside it,
    /// removed at the end); `None`: a hidden sibling of `out` ([`SpillDir::beside`]). The
    /// same flag places final codes of a run without `--state` (`Config::final_codes`).
    pub spill_dir: Option<&'a Path>,
    /// Rendered output bytes a worker holds before spilling a sorted run
    /// ([`OUTPUT_RUN_BYTES`]; tests force tiny runs to exercise the merge).
    pub output_run_bytes: usize,
    /// Told the records read as the run goes (`run --metrics-addr`).
    pub records_read: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
    /// The processes of the run (the dataflow only; one by default). Process 0 writes the
    /// outputs, the others none (cluster.rs).
    pub cluster: Cluster,
}

impl<'a> FileRun<'a> {
    /// A run of `engine` over `inputs` into `out`: quiet, no backfill, default spilling.
    pub fn new(inputs: &'a [PathBuf], out: &'a Path, engine: Engine) -> FileRun<'a> {
        FileRun {
            inputs,
            out,
            quiet: true,
            engine,
            state: None,
            spill_dir: None,
            output_run_bytes: OUTPUT_RUN_BYTES,
            records_read: None,
            cluster: Cluster::default(),
        }
    }

    /// Where this run's outputs spill.
    pub fn spill(&self) -> Spill {
        let dir = match self.spill_dir {
            Some(parent) => SpillDir::new(parent, &format!("markledger-spill-{}", std::process::id())),
            None => SpillDir::beside(self.out),
        };
        Spill {
            dir,
            run_bytes: self.output_run_bytes,
        }
    }
}

/// A run's inputs: partition files, or the generator (`gen:…`, see [`crate::generated`]).
pub struct Inputs {
    /// This process's partitions, each with its index among all of the run's.
    pub inputs: Vec<(usize, Box<dyn PartitionInput>)>,
    /// Every partition's name, in partition order.
    pub names: Vec<PathBuf>,
    /// The generator feeding the partitions, when the input is `gen:…` (finish it after
    /// the run: [`Generated::finish`]).
    pub generator: Option<Generated>,
}

/// Opens the partitions `inputs` name that `owned` (by index) says are this process's:
/// files and directories, or one generator spec (one process only).
pub fn open_inputs(inputs: &[PathBuf], owned: &dyn Fn(usize) -> bool, single: bool) -> Result<Inputs> {
    let specs: Vec<&str> = inputs.iter().filter_map(|input| generated::spec_of(input)).collect();
    if let Some(spec) = specs.first() {
        if inputs.len() > 1 {
            anyhow::bail!(
                "--input {}{spec}: the generator is a run's only input",
                generated::PREFIX
            );
        }
        if !single {
            anyhow::bail!(
                "--input {}{spec} with --processes: the generator source runs on one process",
                generated::PREFIX
            );
        }
        let mut generator = generated::start(generated::parse(spec)?)?;
        return Ok(Inputs {
            inputs: generator.take_inputs().into_iter().enumerate().collect(),
            names: generator.names.iter().map(PathBuf::from).collect(),
            generator: Some(generator),
        });
    }
    let partitions = list_partitions(inputs).context("listing input partitions")?;
    // On a cluster every process lists the same partitions but opens only its own.
    let mut readers: Vec<(usize, Box<dyn PartitionInput>)> = Vec::with_capacity(partitions.len());
    for (i, path) in partitions.iter().enumerate() {
        if !owned(i) {
            continue;
        }
        let reader = PartitionReader::open(path).with_context(|| format!("opening {}", path.display()))?;
        readers.push((i, Box::new(reader)));
    }
    Ok(Inputs {
        inputs: readers,
        names: partitions,
        generator: None,
    })
}

/// `markledger run`: read the partitions, run the engine, write the five outputs.
///
/// With `state` (the dataflow only), the run is a backfill: it ends in a checkpoint in
/// `state` from which `markledger stream --state` goes on (docs/ARCHITECTURE.md,
/// "Checkpoints").
pub fn run_files(config: &Config, run: &FileRun<'_>) -> Result<RunReport> {
    let mut progress = ProgressLine::new(Duration::from_secs(2), run.quiet);
    if let Some((records, estimated)) = expected_records(run.inputs) {
        progress = progress.with_total(records, "records", estimated);
    }
    let report = match run.engine {
        Engine::Dataflow { workers } => run_dataflow_files(config, run, workers, &mut progress),
        Engine::Reference if !run.cluster.is_single() => {
            anyhow::bail!("--processes (a cluster) needs the dataflow engine")
        }
        Engine::Reference if run.state.is_some() => {
            anyhow::bail!("--state (a backfill checkpoint) needs the dataflow engine")
        }
        Engine::Reference if run.inputs.iter().any(|input| generated::spec_of(input).is_some()) => {
            anyhow::bail!("the generator source (--input gen:…) needs the dataflow engine")
        }
        Engine::Reference => run_reference_files(config, run, &mut progress),
    };
    progress.finish();
    report
}

/// The dataflow streams every partition from disk (or the generator) as it goes, holding
/// its outputs in sorted runs that spill to disk, then merges them into the output files in
/// their canonical order (and writes a backfill's checkpoint).
fn run_dataflow_files(
    config: &Config,
    run: &FileRun<'_>,
    workers: usize,
    progress: &mut ProgressLine,
) -> Result<RunReport> {
    let cluster = &run.cluster;
    let total = cluster.processes() * workers.max(1);
    let owned = |i: usize| cluster.is_local(worker_of(i, total), workers);
    let Inputs {
        inputs,
        names: partitions,
        generator,
    } = open_inputs(run.inputs, &owned, cluster.is_single())?;
    let settings = config.output_settings();
    let store = run.state.map(|dir| Store::open(dir, &settings)).transpose()?;
    // On a cluster each process assembles its workers' shares, and writes them as its part
    // of the checkpoint; process 0 completes it with the manifest (runtime.rs, BackfillParts).
    let backfill = store
        .as_ref()
        .map(|_| Checkpoints::backfill_in_cluster(cluster.process * workers.max(1), workers.max(1), total, &NAMES));
    let parts = match (&store, &backfill) {
        (Some(store), Some(checkpoints)) if !cluster.is_single() => {
            Some(backfill_parts(store, checkpoints, cluster, workers.max(1)))
        }
        _ => None,
    };
    if let (Some(store), Some(checkpoints)) = (&store, &backfill) {
        // Final codes under the state directory: its kept checkpoints' files stay.
        keep_manifests(store, checkpoints, &mut ManifestCache::new());
    }
    let mut config = config.clone();
    config.final_codes.state = run.state.map(Path::to_path_buf);
    let spill = run.spill();
    let Summarized { summary, stats, runs } = crate::summary::run_summarized(
        &config,
        inputs,
        workers,
        cluster.clone(),
        backfill
            .clone()
            .map(|checkpoints| crate::summary::Backfill { checkpoints, parts }),
        &spill,
        &mut |records| {
            if let Some(read) = &run.records_read {
                read.store(records, std::sync::atomic::Ordering::Relaxed);
            }
            progress.advance(records, || format!("read {records} records"));
        },
    )?;
    if !stats.errors.is_empty() {
        // Said before joining the generator: a run that stopped early (the calendar's end)
        // dropped its pipes, so the generator stops on a broken pipe, a consequence only.
        anyhow::bail!("reading input: {}", stats.errors.join("; "));
    }
    if let Some(generator) = generator {
        generator.finish()?;
    }
    let runs = runs.with_context(|| format!("spilling outputs under {}", spill.dir.path().display()))?;
    if let (Some(store), Some(checkpoints), true) = (&store, &backfill, cluster.is_single()) {
        write_backfill_checkpoint(store, checkpoints, workers, summary.last_ts)?;
    }
    // Process 0 writes the outputs (its workers hold all of them); the others write none.
    let written = if cluster.process == 0 {
        let mut sink =
            OutputFiles::create(run.out).with_context(|| format!("creating outputs in {}", run.out.display()))?;
        let mut merged = 0u64;
        merge_runs(runs, &mut |file, line| {
            sink.write_line(file, line);
            merged += 1;
            if merged % 4096 == 0 {
                progress.tick(|| format!("writing outputs in canonical order: {merged} records"));
            }
        })
        .with_context(|| format!("merging spilled outputs from {}", spill.dir.path().display()))?;
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
    let (written, encoded_ms) = backfill_cut(store, checkpoints, 0..workers, last_ts.map_or(0, time_of), None)?;
    markledger_operators::note!(
        "markledger run: backfill checkpoint {} ({:.1} MB, {} ms to encode deferred states and {} ms to write, off the workers; a worker paused at most {:.1} ms to save a machine: {})",
        written.path.display(),
        written.bytes as f64 / 1e6,
        encoded_ms,
        written.took.as_millis(),
        checkpoints.longest_save().as_secs_f64() * 1e3,
        pauses_by_machine(checkpoints)
    );
    Ok(())
}

/// Completes a backfill's cut (the sources' shares of `workers`: files are not Kafka
/// partitions, only how far they read, `read_max`) and writes it, or on a cluster this
/// process's part of it (`part`: process, processes). The file written, and the
/// milliseconds taken to encode the machines' deferred states.
fn backfill_cut(
    store: &Store,
    checkpoints: &Checkpoints,
    workers: std::ops::Range<usize>,
    read_max: Time,
    part: Option<(usize, usize)>,
) -> Result<(crate::checkpoint::Written, u128)> {
    for worker in workers {
        let share = SourceShare {
            read_max,
            partitions: Vec::new(),
        };
        checkpoints.deposit(read_max + 1, share.share(worker));
    }
    let complete = checkpoints
        .take_complete()
        .context("the backfill's checkpoint is incomplete (a machine did not save its share)")?;
    // The states the machines left to the writer (Durable::snapshot) are encoded here.
    let encoding = std::time::Instant::now();
    let cut = complete.encode();
    let encoded_ms = encoding.elapsed().as_millis();
    let written = match part {
        None => store.write(&cut),
        Some((process, processes)) => store.write_part(&cut, process, processes),
    }
    .context("writing the backfill's checkpoint")?;
    Ok((written, encoded_ms))
}

/// A backfill on a cluster: each process writes its part of the cut once the dataflow is
/// complete, and process 0 the manifest once every part is written (runtime.rs,
/// [`BackfillParts`]).
fn backfill_parts(
    store: &Store,
    checkpoints: &Checkpoints,
    cluster: &Cluster,
    workers: usize,
) -> (Arc<Control>, Arc<BackfillParts>) {
    let (process, processes) = (cluster.process, cluster.processes());
    let first = process * workers;
    let control = Control::new(process, processes, Arc::default());
    let write_part = {
        let (store, checkpoints) = (store.clone(), checkpoints.clone());
        move |end: Time| -> std::result::Result<Message, String> {
            let (written, _) = backfill_cut(
                &store,
                &checkpoints,
                first..first + workers,
                end,
                Some((process, processes)),
            )
            .map_err(|error| format!("{error:#}"))?;
            Ok(Message::Written {
                time: end + 1,
                part: written.part(process),
            })
        }
    };
    let write_manifest = {
        let store = store.clone();
        let total = processes * workers;
        move |time: Time, parts: Vec<PartFile>| -> std::result::Result<(), String> {
            let manifest = ClusterManifest::new(time, processes, total, parts);
            let path = store.write_manifest(&manifest).map_err(|error| format!("{error:#}"))?;
            markledger_operators::note!(
                "markledger run: backfill checkpoint of {processes} processes complete: {} (each process's part in its state directory)",
                path.display()
            );
            Ok(())
        }
    };
    let parts = Arc::new(BackfillParts {
        write_part: Box::new(write_part),
        write_manifest: Box::new(write_manifest),
        written: Mutex::default(),
    });
    let collected = Arc::downgrade(&parts);
    control.handle_with(move |message| {
        if let (Message::Written { part, .. }, Some(parts)) = (message, collected.upgrade()) {
            parts.written.lock().expect("parts lock").push(part);
        }
    });
    (control, parts)
}

/// The reference engine reads every partition first, then applies the events in account
/// order, writing outputs as it goes.
fn run_reference_files(config: &Config, run: &FileRun<'_>, progress: &mut ProgressLine) -> Result<RunReport> {
    let (partitions, records, bytes) = read_partitions(run.inputs, progress)?;
    let read_time = progress.elapsed();
    // As the dataflow's source: no run past the calendar's end (issue 19).
    let window = config.admission().window;
    for (path, partition) in partitions.iter().zip(&records) {
        let beyond = partition.iter().find_map(|record| match record {
            Decoded::Event(event) => window.beyond_calendar(event).map(|beyond| (event, beyond)),
            _ => None,
        });
        if let Some((event, beyond)) = beyond {
            anyhow::bail!(
                "reading input: {}: event {:?} at {} {}, a year {} does not cover: no \
                 working-day deadline can be computed there, so the run stops before it",
                path.display(),
                event.id,
                event.ts,
                beyond.what(),
                config.calendar_name
            );
        }
    }
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
    if !s.forgotten.is_zero() {
        line(format!(
            "              (and {} held by accounts deleted under DOMAIN.md §9)",
            render(s.forgotten)
        ));
    }
    debug_assert_eq!(
        s.payments + s.compensations - s.charged - s.refunds,
        s.balance + s.forgotten
    );
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
        "  outputs     {}: status {}, ledger {}, balances {}, rejections {}, periods {}, exports {}",
        out.display(),
        w.status,
        w.ledger,
        w.balances,
        w.rejections,
        w.periods,
        w.exports
    ));
    line(format!("  accounts    {}", s.accounts));
    if let Some(memory) = &s.memory {
        line(format!("  memory      {}", render_memory(memory)));
    }
    text
}

/// The national index's state: codes held (live in RAM, final on disk), the RAM it takes
/// (an estimate from its tables' sizes) and its files on disk.
pub fn render_memory(memory: &CodesMemory) -> String {
    let held = memory.live_codes + memory.final_codes;
    let text = &memory.emission_text;
    format!(
        "codes held {held} ({} live in RAM, {} final on disk); code state ~{:.1} MB of RAM ({:.1} B per code held), {:.1} MB on disk; emission text of {} emissions ~{:.1} MB of RAM, {:.1} MB on disk",
        memory.live_codes,
        memory.final_codes,
        memory.ram_bytes as f64 / 1e6,
        memory.ram_bytes as f64 / held.max(1) as f64,
        memory.disk_bytes as f64 / 1e6,
        text.emissions,
        text.ram_bytes as f64 / 1e6,
        text.disk_bytes as f64 / 1e6
    )
}

/// `NAME n, NAME n, …` of named counts.
fn counts<'a>(items: impl Iterator<Item = (&'a str, u64)>) -> String {
    items
        .map(|(name, n)| format!("{name} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}
