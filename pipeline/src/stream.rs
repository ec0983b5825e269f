//! `markledger stream`: the dataflow between Kafka topics, running until stopped. This file
//! is the orchestration of a run; what is Kafka's lives in `connectors/src/kafka/`.
//!
//! In: the input topics' partitions, partition `i` (in topic, then partition order) read by
//! worker `i mod workers`, each a partition in the sense of DOMAIN.md §4
//! ([`KafkaInput`]). Out: the five outputs on their topics (INTERFACE.md keys), each record
//! with a deterministic id ([`KafkaSink`]): a consumer drops a record whose id it has seen.
//!
//! A run, top to bottom ([`run_stream`]): the topics exist (`create_topics`); the state is
//! restored (`restore`: the progress topic's frontier, the newest valid checkpoint, where
//! each partition resumes); the shared parts start (`StreamRun::start`: the producer, the
//! checkpoints' writer thread); the dataflow runs with each worker's inputs and sink until
//! `stop` is set; then the orderly stop commits what was finished
//! (`StreamRun::stop_orderly`) and the report is made.
//!
//! What it guarantees (docs/ARCHITECTURE.md, "Stream mode", "Checkpoints"):
//! - **Nothing lost.** Offsets are committed only for records whose every output the
//!   dataflow has handed to the producer *and* the broker has acknowledged (a flush comes
//!   first); auto-commit is off.
//! - **Restarts** restore the newest checkpoint in `--state` and read on from its offsets;
//!   without one they rebuild state by re-reading every input partition from its earliest
//!   retained offset. After each commit the output frontier it covered is recorded on a
//!   compacted progress topic (key: the group); outputs before the group's last recorded
//!   frontier (or the checkpoint's time, if later) are not produced again. Outputs after it
//!   may repeat what an interrupted run already produced: the same bytes with the same
//!   `markledger-id`, and on the compacted topics (balances, periods) the same key and
//!   `rev`. A consumer of a compacted topic keeps the highest `rev` per key, not the first
//!   copy of an id: compaction may already have removed the first copy of an older record
//!   whose repeat then arrives after a newer one.
//! - **Idle partitions.** A partition caught up and silent for `idle_timeout` stops holding
//!   the watermark back; when every partition is idle the watermark goes to the largest `ts`
//!   read, which is where a file run over the same records stops. An event arriving on an
//!   idle partition behind the watermark takes effect at the watermark and is flagged late:
//!   that, and only that, makes outputs depend on timing.

use crate::checkpoint::{SourceShare, Store, StreamCheckpointSettings, StreamCheckpoints, NAMES};
use crate::cluster::Cluster;
use crate::config::Config;
use crate::control::{Control, Message};
use crate::failure;
use crate::metrics::{MetricsServer, Snapshot};
use crate::quarantine::FailureRecord;
use crate::runtime::{run_dataflow, worker_of, Inputs, Mode, RunSettings};
use crate::source::Batching;
use anyhow::{Context, Result};
use markledger_connectors::file::OutputFile;
use markledger_connectors::kafka::{
    check_connection, ensure_topics, partition_count, CheckpointHook, InputSettings, KafkaInput, KafkaSettings,
    KafkaSink, OutputTopics, ProgressTopic, ResumeAt, SharedProducer, TopicSpec,
};
use markledger_operators::checkpoint::{Checkpoints, Cut};
use markledger_operators::final_codes::CodesMemory;
use markledger_operators::flow::Time;
use markledger_operators::flow::{ts_of, KEY_GROUPS};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub use markledger_connectors::stream_file::{StreamFile, TopicNames};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The run's configuration with the events its state directory quarantined (poison pills,
/// crate::quarantine); with a state directory, a failure is counted there before the process
/// exits.
fn with_quarantine(config: &Config, state: Option<&Path>) -> Result<Config> {
    let Some(dir) = state else {
        return Ok(config.clone());
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating the state directory {}", dir.display()))?;
    let record = FailureRecord::load(dir)?;
    for (event, failure) in &record.quarantine {
        markledger_operators::note!("markledger stream: event {event:?} is quarantined (INTERNAL_ERROR): {failure}");
    }
    let owned = dir.to_path_buf();
    failure::on_failure(move |failure| {
        if let Err(error) = FailureRecord::note(&owned, failure) {
            markledger_operators::note!("markledger stream: the failure was not recorded: {error:#}");
        }
    });
    let mut config = config.clone();
    config.quarantine = std::sync::Arc::new(record.quarantine);
    Ok(config)
}

/// How `stream` runs.
#[derive(Clone, Debug)]
pub struct StreamOptions {
    /// Brokers, group, topics.
    pub kafka: KafkaSettings,
    /// Timely worker threads.
    pub workers: usize,
    /// A caught-up partition silent this long stops holding the watermark back.
    pub idle_timeout: Duration,
    /// How often offsets are committed.
    pub commit_interval: Duration,
    /// Partitions of an input topic `stream` creates when it is missing.
    pub input_partitions: i32,
    /// A compacted topic recording, per group, the output frontier its last commit covered.
    pub progress_topic: String,
    /// Where checkpoints are written and restored from (None: a restart re-reads the
    /// inputs from their earliest offsets).
    pub state: Option<PathBuf>,
    /// How often a checkpoint is asked for.
    pub checkpoint_interval: Duration,
    /// An event whose `ts` is further than this ahead of the wall clock is refused
    /// `TS_OUT_OF_RANGE` (besides the calendar's window: `rules::TimeWindow`).
    pub max_ahead: Duration,
    /// Where to serve Prometheus metrics (`HOST:PORT`; crate::metrics).
    pub metrics_addr: Option<String>,
    /// The processes of the run (one by default; cluster.rs, control.rs).
    pub cluster: Cluster,
}

/// What a stream run did, for its summary.
#[derive(Clone, Debug, Default)]
pub struct StreamReport {
    /// Input records read.
    pub records: u64,
    /// Output records produced.
    pub produced: u64,
    /// Outputs not produced again after a restart (before the committed frontier).
    pub suppressed: u64,
    /// Offset commits.
    pub commits: u64,
    /// The output frontier the last commit covered.
    pub committed_frontier: Option<Time>,
    /// Partitions read.
    pub partitions: usize,
    /// The checkpoint the run started from (its time).
    pub restored_from: Option<Time>,
    /// Checkpoints written.
    pub checkpoints: u64,
    /// The last checkpoint written: its time, size in bytes, and milliseconds to write.
    pub last_checkpoint: Option<(Time, u64, u64)>,
    /// The longest a machine's save held up its worker.
    pub longest_save: Duration,
    /// What the national index's state held and cost at the end (the memory line).
    pub memory: Option<CodesMemory>,
    /// Each machine's longest save, the longest first (`name 1.2 ms, …`).
    pub pauses: String,
}

/// Runs `stream` until `stop` is set; then finishes what is before the watermark, commits,
/// and returns.
pub fn run_stream(
    config: &Config,
    options: &StreamOptions,
    stop: Arc<AtomicBool>,
    progress: &mut dyn FnMut(&StreamReport),
) -> Result<StreamReport> {
    let mut config = with_quarantine(config, options.state.as_deref())?;
    // With a state directory, final codes live in it (its checkpoints name their files).
    config.final_codes.state = options.state.clone();
    let config = &config;
    let cluster = options.cluster.clone();
    // A cluster's processes tell each other of checkpoints and the stop (control.rs).
    let control = (!cluster.is_single()).then(|| Control::new(cluster.process, cluster.processes(), stop.clone()));
    let assignment = create_topics(options)?;
    let restored = restore(config, options, &assignment)?;
    let run = Arc::new(StreamRun::start(
        config,
        options,
        assignment,
        restored,
        control.clone(),
    )?);
    let metrics = match &options.metrics_addr {
        Some(address) => {
            let (run, lateness_ms, codes) = (run.clone(), config.lateness_ms, config.final_codes.clone());
            let snapshot = move || Snapshot {
                codes: codes.memory(),
                ..run.snapshot(lateness_ms)
            };
            let server = MetricsServer::start(address, Box::new(snapshot))?;
            markledger_operators::note!("markledger stream: metrics at http://{address}/metrics");
            Some(server)
        }
        None => None,
    };
    let make_inputs = {
        let run = run.clone();
        move |worker: usize| run.inputs_of(worker)
    };
    let make_sink = {
        let run = run.clone();
        move |_worker: usize| KafkaSink::new(run.producer.clone(), run.resume)
    };
    let mode = Mode::Stream {
        stop,
        checkpoints: run.checkpoints.clone(),
    };
    let settings = RunSettings {
        config,
        workers: run.workers,
        batching: Batching::default(),
        mode,
        cluster,
        control,
        backfill_parts: None,
    };
    let finished = run_dataflow(settings, make_inputs, make_sink, &mut |records| {
        run.records.store(records, Ordering::Relaxed);
        progress(&run.report(records))
    })?;
    run.stop_orderly()?;
    if let Some(server) = metrics {
        server.stop();
    }
    let mut report = run.report(finished.stats.records);
    report.longest_save = run
        .checkpointing
        .as_ref()
        .map_or(Duration::ZERO, |checkpointing| checkpointing.longest_save());
    report.memory = finished.final_codes;
    report.pauses = run
        .checkpointing
        .as_ref()
        .map_or_else(String::new, |checkpointing| checkpointing.pauses());
    Ok(report)
}

/// The topics a run needs, created when missing: the input topics (with
/// `options.input_partitions` each), the five outputs (as many partitions as the inputs
/// have in all; balances and periods compacted). Returns the input partitions in
/// assignment order (topic order, then partition number).
fn create_topics(options: &StreamOptions) -> Result<Vec<(String, i32)>> {
    let kafka = &options.kafka;
    // A wrong password or an untrusted certificate ends the run here, named, within
    // seconds (not a hang in the first metadata request).
    check_connection(kafka)?;
    let mut assignment = Vec::new();
    for topic in &kafka.input_topics {
        let count = match partition_count(kafka, topic) {
            Ok(count) => count,
            Err(_) => {
                ensure_topics(kafka, &[TopicSpec::new(topic.clone(), options.input_partitions)])
                    .with_context(|| format!("creating the input topic {topic}"))?;
                partition_count(kafka, topic).with_context(|| format!("reading the partitions of {topic}"))?
            }
        };
        assignment.extend((0..count).map(|p| (topic.clone(), p)));
    }
    let partitions = assignment.len().max(1) as i32;
    let outputs: Vec<TopicSpec> = OutputFile::ALL
        .iter()
        .map(|file| {
            let name = kafka.output_topics.topic(*file).to_string();
            if OutputTopics::is_compacted(*file) {
                TopicSpec::compacted(name, partitions)
            } else {
                TopicSpec::new(name, partitions)
            }
        })
        .collect();
    ensure_topics(kafka, &outputs).context("creating the output topics")?;
    Ok(assignment)
}

/// Where a run starts from.
struct Restored {
    /// The checkpoint directory (with `--state`).
    store: Option<Store>,
    /// The newest valid checkpoint in it.
    cut: Option<Cut>,
    /// Where each partition resumes (empty without a checkpoint).
    resume_at: ResumeAt,
    /// Outputs before this were produced and acknowledged by an earlier run: the larger of
    /// the progress topic's frontier and the checkpoint's time.
    resume: Time,
    /// The progress topic's frontier.
    on_topic: Time,
}

/// Reads where an earlier run got to: the group's frontier on the progress topic, and the
/// newest checkpoint that verifies with the offsets its partitions resume at.
fn restore(config: &Config, options: &StreamOptions, assignment: &[(String, i32)]) -> Result<Restored> {
    // Where an earlier run of the group got to (outputs before it are acknowledged), and
    // its cluster's last complete checkpoint.
    let (progress_frontier, cluster_checkpoint) =
        ProgressTopic::read_with_checkpoint(&options.kafka, &options.progress_topic)?;
    let settings = config.output_settings();
    let store = options
        .state
        .as_deref()
        .map(|dir| Store::open(dir, &settings))
        .transpose()?;
    let cluster = &options.cluster;
    let cut = match &store {
        // Every process of a cluster restores the same cut: the last one process 0
        // recorded complete; without one, the newest in its directory (a backfill's,
        // copied to each).
        Some(store) if !cluster.is_single() => match cluster_checkpoint {
            Some(time) => Some(cluster_cut(store, time, cluster, options.workers.max(1))?),
            None => newest_cluster_cut(store, cluster, options.workers.max(1))?,
        },
        Some(store) => store.load(&mut |why| markledger_operators::note!("markledger stream: {why}"))?,
        None => None,
    };
    if let (Some(dir), None) = (&options.state, &cut) {
        markledger_operators::note!(
            "markledger stream: no checkpoint in {}: state is rebuilt from the inputs' earliest offsets",
            dir.display()
        );
    }
    let resume_at = match &cut {
        Some(cut) => resume_offsets(cut, assignment, cluster.processes() * options.workers.max(1))?,
        None => ResumeAt::new(),
    };
    let resume = progress_frontier.max(cut.as_ref().map_or(0, |cut| cut.time));
    if resume > 0 {
        markledger_operators::note!(
            "markledger stream: resuming group {}: outputs before {} were produced by an earlier run",
            options.kafka.group_id,
            ts_of(resume)
        );
    }
    Ok(Restored {
        store,
        cut,
        resume_at,
        resume,
        on_topic: progress_frontier,
    })
}

/// A cluster's cut at `time` (recorded complete by process 0) as this process restores it:
/// its own workers' shares when the worker count is the one that wrote it, every share
/// otherwise; refused, saying what to do, when the state directory lacks what is needed.
fn cluster_cut(store: &Store, time: Time, cluster: &Cluster, workers: usize) -> Result<Cut> {
    let missing = |what: String| {
        anyhow::anyhow!(
            "the cluster's checkpoint at {} is complete, but {} lacks {what}: \
             give each process its state directory (or, restoring on another worker count, a shared \
             one or copies of every process's), or start with a new --group to rebuild from the inputs",
            ts_of(time),
            store.dir().display()
        )
    };
    let Some((settings, cut)) = store.read_at(time)? else {
        return Err(missing("every file of it".into()));
    };
    store.check_settings(&settings, store.dir())?;
    let total = cluster.processes() * workers;
    let needed: Vec<usize> = if cut.workers == total {
        (0..total).filter(|worker| cluster.is_local(*worker, workers)).collect()
    } else {
        (0..cut.workers).collect()
    };
    let absent: Vec<String> = needed
        .iter()
        .filter(|worker| cut.share(**worker, crate::checkpoint::SOURCE).is_none())
        .map(|worker| worker.to_string())
        .collect();
    if !absent.is_empty() {
        return Err(missing(format!("the shares of workers {}", absent.join(", "))));
    }
    store
        .verify_final_codes(&cut)
        .with_context(|| format!("restoring the cluster's checkpoint at {}", ts_of(time)))?;
    Ok(cut)
}

/// Without a cut recorded on the progress topic (a backfill's, say): the newest complete
/// cut in this process's directory (a one-process checkpoint file, or one a manifest names)
/// whose shares this process needs are there. The processes check they agree at the start
/// (`Message::Restored`).
fn newest_cluster_cut(store: &Store, cluster: &Cluster, workers: usize) -> Result<Option<Cut>> {
    let mut times: Vec<Time> = store.files()?.into_iter().map(|(time, _)| time).collect();
    times.extend(store.manifests()?.into_iter().map(|(time, _)| time));
    times.sort_by_key(|time| std::cmp::Reverse(*time));
    times.dedup();
    for time in times {
        match cluster_cut(store, time, cluster, workers) {
            Ok(cut) => return Ok(Some(cut)),
            Err(error) => markledger_operators::note!("markledger stream: skipping a checkpoint: {error:#}"),
        }
    }
    Ok(None)
}

/// Where each partition resumes after `cut`, whatever worker count wrote it: machine state
/// is split by key group (on another count each worker keeps the groups it owns,
/// `Durable::restore_rescaled`), and a partition's offsets go with the partition to the
/// worker that reads it now. Refused, with what to do: a checkpoint of another number of key
/// groups, or of other input partitions than this run's.
fn resume_offsets(cut: &Cut, assignment: &[(String, i32)], workers: usize) -> Result<ResumeAt> {
    if cut.key_groups != KEY_GROUPS {
        anyhow::bail!(
            "the checkpoint at {} splits state into {} key groups, this build into {KEY_GROUPS}: \
             restore it with a build of the same number, or move the state directory away to \
             rebuild from the inputs",
            ts_of(cut.time),
            cut.key_groups
        );
    }
    let mut resume_at = ResumeAt::new();
    // A cluster's process may hold only its own workers' shares (cluster_cut).
    for worker in (0..cut.workers).filter(|worker| cut.share(*worker, crate::checkpoint::SOURCE).is_some()) {
        for partition in SourceShare::of(cut, worker)?.partitions {
            resume_at.insert((partition.topic.clone(), partition.partition), partition);
        }
    }
    // A backfill's checkpoint read files, not these topics: it names no partition.
    if !resume_at.is_empty() {
        let saved: Vec<&(String, i32)> = resume_at.keys().collect();
        let mut now: Vec<&(String, i32)> = assignment.iter().collect();
        now.sort();
        if saved.iter().any(|partition| !now.contains(partition)) {
            let name = |parts: &[&(String, i32)]| {
                parts
                    .iter()
                    .map(|(topic, partition)| format!("{topic}/{partition}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            anyhow::bail!(
                "the checkpoint at {} read the input partitions [{}], this run has [{}]: the input \
                 topics or their partitions changed; run on the same partitions, or move the state \
                 directory away to rebuild from the inputs",
                ts_of(cut.time),
                name(&saved),
                name(&now)
            );
        }
    }
    markledger_operators::note!(
        "markledger stream: restored the checkpoint at {} (written by {} workers, restored on {workers})",
        ts_of(cut.time),
        cut.workers
    );
    Ok(resume_at)
}

/// What a process tells the others it restored ([`Message::Restored`]): the cut's time, 0
/// for none, [`NO_STATE`] without `--state`.
fn restored_time(checkpoints: Option<&Checkpoints>) -> Time {
    checkpoints.map_or(NO_STATE, |checkpoints| checkpoints.restored().map_or(0, |cut| cut.time))
}

/// [`restored_time`] of a process without `--state`.
const NO_STATE: Time = Time::MAX;

/// What a process of a cluster does with the control messages for it (control.rs):
/// takes in process 0's checkpoint requests and answers; on process 0, counts the answers
/// (releasing its sources), the parts written (completing the cut), and each process's
/// committed frontier (recording the lowest, the cluster's, on the progress topic).
fn handle_control(
    control: &Arc<Control>,
    progress: &Arc<ProgressTopic>,
    producer: &Arc<SharedProducer>,
    checkpoints: Option<Checkpoints>,
    checkpointing: Option<Arc<StreamCheckpoints>>,
) {
    let process = control.process;
    let processes = control.processes;
    {
        let control = Arc::downgrade(control);
        progress.relay_to(move |frontier| {
            if let Some(control) = control.upgrade() {
                control.send(0, Message::Covered { process, frontier });
            }
        });
    }
    let covered = Mutex::new(vec![0 as Time; processes]);
    let agreed = Mutex::new(0usize);
    let checkpoints_now = checkpoints.clone();
    let (weak, progress, producer) = (Arc::downgrade(control), progress.clone(), producer.clone());
    control.handle_with(move |message| match message {
        Message::Request(time) => {
            if let Some(checkpoints) = &checkpoints {
                checkpoints.request(time);
            }
            if let Some(control) = weak.upgrade() {
                control.send(0, Message::Registered { process, time });
            }
        }
        Message::Registered { time, .. } => {
            if let Some(checkpointing) = &checkpointing {
                checkpointing.registered(time);
            }
        }
        Message::Written { time, part } => {
            if let Some(checkpointing) = &checkpointing {
                checkpointing.part_written(time, part);
            }
        }
        Message::Covered { process, frontier } => {
            let lowest = {
                let mut covered = covered.lock().expect("covered lock");
                covered[process] = covered[process].max(frontier);
                covered.iter().copied().min().unwrap_or(0)
            };
            if lowest > 0 {
                if let Err(error) = progress.publish(&producer, lowest) {
                    markledger_operators::note!("markledger stream: {error}");
                }
            }
        }
        Message::Restored { process: other, time } => {
            let own = restored_time(checkpoints.as_ref());
            if time != own {
                let name = |time: Time| match time {
                    NO_STATE => "nothing (it runs without --state)".to_string(),
                    0 => "no checkpoint".to_string(),
                    time => format!("the checkpoint at {}", ts_of(time)),
                };
                markledger_operators::note!(
                    "markledger: fatal: process {other} of the cluster restored {}, this process (process {process}) {}: \
                     every process must restore the same cut. Give every process --state (or none); give each \
                     one's directory the cut's manifest (checkpoint-T.cluster.json, written by process 0) and its \
                     part, or share one directory; then restart every process",
                    name(time),
                    name(own)
                );
                std::process::exit(crate::failure::EXIT_FAILURE_CODE);
            }
            let mut agreed = agreed.lock().expect("agreed lock");
            *agreed += 1;
            if let (Some(checkpoints), true) = (&checkpoints, *agreed + 1 == processes) {
                // Every process restored the same cut: the sources may go on.
                checkpoints.release_hold();
            }
        }
        Message::Stop | Message::Held { .. } => {}
    });
    // With --state the sources hold at the start until every process has said it restored
    // the same cut; every process says what it restored (a process without --state too).
    if let Some(checkpoints) = &checkpoints_now {
        checkpoints.hold_at(restored_time(Some(checkpoints)));
    }
    control.to_others(Message::Restored {
        process,
        time: restored_time(checkpoints_now.as_ref()),
    });
}

/// What every worker of a run shares: the producer, the progress topic, the checkpoints,
/// and each worker's input (for the final commit).
struct StreamRun {
    /// Workers of this process, of the whole run, and the global index of its first.
    workers: usize,
    total: usize,
    first: usize,
    assignment: Vec<(String, i32)>,
    input: InputSettings,
    producer: Arc<SharedProducer>,
    progress: Arc<ProgressTopic>,
    resume_at: ResumeAt,
    /// Outputs before this are not produced again.
    resume: Time,
    restored_from: Option<Time>,
    /// The run's checkpoints (with `--state`), for the dataflow's machines.
    checkpoints: Option<Checkpoints>,
    /// Their sources' side and the writer thread.
    checkpointing: Option<Arc<StreamCheckpoints>>,
    /// Each worker's input, as made.
    inputs: Mutex<Vec<KafkaInput>>,
    /// Input records read so far (the progress line's and metrics' figure).
    records: AtomicU64,
}

impl StreamRun {
    /// Creates the producer and, with a checkpoint directory, starts the checkpoints'
    /// writer thread.
    fn start(
        config: &Config,
        options: &StreamOptions,
        assignment: Vec<(String, i32)>,
        restored: Restored,
        control: Option<Arc<Control>>,
    ) -> Result<Self> {
        let workers = options.workers.max(1);
        let cluster = &options.cluster;
        let total = cluster.processes() * workers;
        let first = cluster.process * workers;
        if assignment.len() <= first {
            anyhow::bail!(
                "process {} of {} has no input partition to read ({} partitions for {total} workers): \
                 run fewer processes or workers, or give the input topics more partitions",
                cluster.process,
                cluster.processes(),
                assignment.len()
            );
        }
        let producer = Arc::new(SharedProducer::new(&options.kafka).context("creating the producer")?);
        let progress = Arc::new(ProgressTopic::new(
            &options.kafka,
            &options.progress_topic,
            restored.resume,
        ));
        // A checkpoint beyond the topic's frontier: its outputs were all acknowledged (a
        // cluster's cut is complete only then), so the group's frontier is at least its time;
        // recorded now, so a reader of the topic knows it even if nothing comes after it.
        if restored.resume > restored.on_topic && cluster.process == 0 {
            progress
                .publish(&producer, restored.resume)
                .context("recording the restored checkpoint's frontier")?;
        }
        let restored_from = restored.cut.as_ref().map(|cut| cut.time);
        let checkpoints = restored
            .store
            .as_ref()
            .map(|_| Checkpoints::in_cluster(first, workers, total, &NAMES, restored.cut));
        let checkpointing = restored.store.zip(checkpoints.clone()).map(|(store, checkpoints)| {
            let settings = StreamCheckpointSettings {
                checkpoints,
                interval: options.checkpoint_interval,
                idle_workers: (first..first + workers)
                    .filter(|worker| !(0..assignment.len()).any(|i| worker_of(i, total) == *worker))
                    .collect(),
                producer: producer.clone(),
                cluster: control.clone().map(|control| (control, progress.clone())),
            };
            StreamCheckpoints::start(store, settings)
        });
        if let Some(control) = &control {
            handle_control(
                control,
                &progress,
                &producer,
                checkpoints.clone(),
                checkpointing.clone(),
            );
        }
        let input = InputSettings {
            kafka: options.kafka.clone(),
            idle_timeout: options.idle_timeout,
            commit_interval: options.commit_interval,
            admission: config.admission(),
            max_ahead: options.max_ahead,
            producer: producer.clone(),
            progress: progress.clone(),
            calendar_held: Arc::default(),
            metrics: Arc::default(),
        };
        Ok(StreamRun {
            workers,
            total,
            first,
            assignment,
            input,
            producer,
            progress,
            resume_at: restored.resume_at,
            resume: restored.resume,
            restored_from,
            checkpoints,
            checkpointing,
            inputs: Mutex::default(),
            records: AtomicU64::new(0),
        })
    }

    /// Worker `worker`'s partitions (none when it has none: more workers than partitions).
    fn inputs_of(&self, worker: usize) -> Inputs {
        let mine: Vec<(String, i32)> = self
            .assignment
            .iter()
            .enumerate()
            .filter(|(i, _)| worker_of(*i, self.total) == worker)
            .map(|(_, p)| p.clone())
            .collect();
        if mine.is_empty() {
            return Vec::new();
        }
        let checkpoint = self
            .checkpointing
            .as_ref()
            .map(|shared| Box::new(shared.source(worker, self.restored_from.unwrap_or(0))) as Box<dyn CheckpointHook>);
        let input = KafkaInput::open(&self.input, &mine, &self.resume_at, checkpoint)
            .unwrap_or_else(|error| panic!("creating worker {worker}'s consumer: {error}"));
        self.inputs.lock().expect("registry").push(input.clone());
        input.partitions()
    }

    /// The orderly stop, once the dataflow has finished everything before the watermark:
    /// every worker commits it, then the writer finishes the checkpoint it has (if any).
    fn stop_orderly(&self) -> Result<()> {
        for input in self.inputs.lock().expect("registry").iter() {
            input.commit_final()?;
        }
        if let Some(checkpointing) = &self.checkpointing {
            checkpointing.finish();
        }
        Ok(())
    }

    /// The figures a metrics scrape shows now.
    fn snapshot(&self, lateness_ms: i64) -> Snapshot {
        let checkpointing = self.checkpointing.as_ref();
        Snapshot {
            partitions: self.input.metrics.partitions(),
            lateness_ms,
            records: self.records.load(Ordering::Relaxed),
            outputs: self.producer.figures(),
            suppressed: self.producer.suppressed(),
            output_frontier_ms: self.input.metrics.output_frontier(),
            committed_frontier_ms: self.progress.frontier(),
            commits: self.progress.commits(),
            checkpoints: checkpointing.map_or(0, |c| c.written()),
            last_checkpoint: checkpointing.and_then(|c| {
                let (_, bytes, millis) = c.last_written()?;
                Some((bytes, Duration::from_millis(millis), c.last_written_ago()?))
            }),
            longest_pause: checkpointing.map_or(Duration::ZERO, |c| c.longest_save()),
            calendar_held: self.input.calendar_held.load(Ordering::Relaxed),
            codes: None,
            kafka: Some(markledger_connectors::kafka::health::snapshot()),
        }
    }

    /// The run's figures after `records` input records.
    fn report(&self, records: u64) -> StreamReport {
        StreamReport {
            records,
            produced: self.producer.produced(),
            suppressed: self.producer.suppressed(),
            commits: self.progress.commits(),
            // 0: no commit yet, by this run or an earlier one of the group.
            committed_frontier: Some(self.progress.frontier()).filter(|t| *t > 0),
            // This process's (all of them on one process).
            partitions: (0..self.assignment.len())
                .filter(|i| (self.first..self.first + self.workers).contains(&worker_of(*i, self.total)))
                .count(),
            restored_from: self.restored_from,
            checkpoints: self
                .checkpointing
                .as_ref()
                .map_or(0, |checkpointing| checkpointing.written()),
            last_checkpoint: self
                .checkpointing
                .as_ref()
                .and_then(|checkpointing| checkpointing.last_written()),
            longest_save: Duration::ZERO,
            memory: None,
            pauses: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::SOURCE;
    use markledger_connectors::offsets::PartitionShare;
    use std::collections::BTreeMap;

    /// A cut of `workers` workers whose sources read `partitions` (partition i on worker
    /// i mod workers), split into `key_groups` groups.
    fn cut(workers: usize, partitions: &[(&str, i32)], key_groups: u64) -> Cut {
        let mut shares = BTreeMap::new();
        for worker in 0..workers {
            let share = SourceShare {
                read_max: 0,
                partitions: partitions
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| worker_of(*i, workers) == worker)
                    .map(|(i, (topic, partition))| PartitionShare {
                        topic: topic.to_string(),
                        partition: *partition,
                        resume: 10 + i as i64,
                        known: Vec::new(),
                        high_water: None,
                    })
                    .collect(),
            };
            shares.insert((worker, SOURCE.to_string()), share.share(worker));
        }
        Cut {
            time: 1_000,
            workers,
            key_groups,
            shares,
        }
    }

    fn assignment(partitions: &[(&str, i32)]) -> Vec<(String, i32)> {
        partitions.iter().map(|(t, p)| (t.to_string(), *p)).collect()
    }

    #[test]
    fn offsets_go_with_their_partitions_on_any_worker_count() {
        // Written by 2 workers, restored on 1, 3 and 4: every partition resumes where it
        // was, whichever worker read it.
        let partitions = [("in", 0), ("in", 1), ("in", 2), ("in", 3)];
        let saved = cut(2, &partitions, KEY_GROUPS);
        for workers in [1, 2, 3, 4] {
            let resume = resume_offsets(&saved, &assignment(&partitions), workers).expect("restored");
            let offsets: Vec<i64> = resume.values().map(|share| share.resume).collect();
            assert_eq!(offsets, [10, 11, 12, 13], "{workers} workers");
        }
    }

    #[test]
    fn another_number_of_key_groups_or_lost_partitions_are_refused_saying_what_to_do() {
        let partitions = [("in", 0), ("in", 1)];
        let refused = resume_offsets(&cut(2, &partitions, 128), &assignment(&partitions), 3).expect_err("refused");
        let text = format!("{refused:#}");
        assert!(
            text.contains("128 key groups") && text.contains("move the state directory away"),
            "{text}"
        );
        let refused =
            resume_offsets(&cut(2, &partitions, KEY_GROUPS), &assignment(&partitions[..1]), 2).expect_err("refused");
        let text = format!("{refused:#}");
        assert!(
            text.contains("[in/0, in/1]")
                && text.contains("this run has [in/0]")
                && text.contains("run on the same partitions"),
            "{text}"
        );
    }
}
