//! `markledger stream`: the dataflow between Kafka topics, running until stopped.
//!
//! In: the input topics' partitions, partition `i` (in topic, then partition order) read by
//! worker `i mod workers`, each a partition in the sense of DOMAIN.md §4. Out: the five
//! outputs on their topics (INTERFACE.md keys), each record with a deterministic id, both as
//! an `"id"` field (the last one) and as a `markledger-id` header: a consumer drops a record
//! whose id it has seen. The id is the xxh3-128 of the topic and the record without it,
//! and the record's copy number among identical records of one instant.
//!
//! What it guarantees (docs/ARCHITECTURE.md, "Stream mode"):
//! - **Nothing lost.** Offsets are committed only for records whose every output the
//!   dataflow has handed to the producer *and* the broker has acknowledged (a flush comes
//!   first); auto-commit is off.
//! - **Restarts rebuild state** by re-reading every input partition from its earliest
//!   retained offset (until durable checkpoints exist). After each commit the output frontier
//!   it covered is recorded on a compacted progress topic (key: the group); outputs before
//!   the group's last recorded frontier are not produced again.
//!   Outputs after it may repeat what an interrupted run already produced: the same bytes
//!   with the same `markledger-id`, and on the compacted topics (balances, periods) the
//!   same key and `rev`. A consumer of a compacted topic keeps the highest `rev` per key,
//!   not the first copy of an id: compaction may already have removed the first copy of
//!   an older record whose repeat then arrives after a newer one.
//! - **Idle partitions.** A partition caught up and silent for `idle_timeout` stops holding
//!   the watermark back; when every partition is idle the watermark goes to the largest `ts`
//!   read, which is where a file run over the same records stops. An event arriving on an
//!   idle partition behind the watermark takes effect at the watermark and is flagged late:
//!   that, and only that, makes outputs depend on timing.

use crate::checkpoint::{PartitionShare, SourceShare, Store, NAMES};
use crate::config::Config;
use crate::dataflow::{run_dataflow, worker_of, Batching, Inputs, Mode, OutputSink};
use crate::failure;
use crate::quarantine::FailureRecord;
use anyhow::{Context, Result};
use markledger_connectors::codec::json::{decode_event, render_output};
use markledger_connectors::codec::Decoded;
use markledger_connectors::file::OutputFile;
use markledger_connectors::kafka::{
    ensure_topics, output_route, partition_count, KafkaSettings, OutputProducer, OutputTopics, PartitionConsumer,
    Polled, Start, TopicSpec,
};
use markledger_connectors::partition::{Next, PartitionInput};
use markledger_operators::checkpoint::{Checkpoints, Cut};
use markledger_operators::flow::time_of;
use markledger_operators::machine::Time;
use markledger_operators::output::{Output, Rejection};
use markledger_operators::rules::Admission;
use markledger_operators::time::Ts;
use markledger_operators::Reason;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// Milliseconds since the Unix epoch now.
fn wall_clock_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.map_or(0, |d| d.as_millis() as i64)
}

/// The header carrying an output record's deterministic id.
pub const ID_HEADER: &str = "markledger-id";

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
}

/// Shared per process: the producer (every worker's outputs), counters, checkpoints.
struct Shared {
    kafka: KafkaSettings,
    progress_topic: String,
    producer: Mutex<OutputProducer>,
    produced: AtomicU64,
    suppressed: AtomicU64,
    commits: AtomicU64,
    committed_frontier: AtomicU64,
    checkpoints: Option<Checkpoints>,
    checkpoint_interval: Duration,
    /// When the last checkpoint was asked for.
    last_request: Mutex<Instant>,
    /// Complete cuts, acknowledged outputs behind them, to the writer thread.
    writer: Mutex<Option<mpsc::Sender<Cut>>>,
    written: AtomicU64,
    last_written: Mutex<Option<(Time, u64, u64)>>,
    /// Workers without partitions (more workers than partitions): worker 0 saves their
    /// (empty) source shares.
    idle_workers: Vec<usize>,
}

/// A worker's consumer and its partitions' progress.
struct WorkerConsumer {
    consumer: PartitionConsumer,
    shared: Arc<Shared>,
    partitions: Vec<PartitionState>,
    index: HashMap<(String, i32), usize>,
    commit_interval: Duration,
    last_commit: Instant,
    /// The output frontier last reported done.
    frontier: Time,
    /// The frontier the last commit covered.
    committed_frontier: Option<Time>,
    /// The worker's index.
    worker: usize,
    /// The last checkpoint time this worker's source share was saved for.
    checkpoint_saved: Time,
    /// Which events are taken in (applied here, before the high-water mark moves).
    admission: Admission,
    /// How far ahead of the wall clock a `ts` may be.
    max_ahead: Duration,
}

struct PartitionState {
    topic: String,
    partition: i32,
    buffered: VecDeque<(i64, Vec<u8>)>,
    /// Offsets returned to the source, the times they took effect at, and the high-water
    /// mark before each, not yet done.
    placed: VecDeque<(i64, Time, Option<Ts>)>,
    /// The largest event `ts` returned (the source's placer's high-water mark).
    high_water: Option<Ts>,
    /// The high-water mark before the record last returned.
    high_water_before: Option<Ts>,
    /// Offsets the restored state already holds (PartitionShare::known).
    known: BTreeSet<i64>,
    /// The offset of the record last returned.
    last_returned: Option<i64>,
    /// The offset the consumer started at.
    start_offset: i64,
    caught_up: bool,
    quiet_since: Instant,
    committed: Option<i64>,
}

impl PartitionState {
    /// The offset below which every record is done (the next one to read after a restart
    /// that kept state).
    fn done_offset(&self) -> i64 {
        match self.placed.front() {
            Some((offset, _, _)) => *offset,
            None => self.next_offset(),
        }
    }

    fn next_offset(&self) -> i64 {
        self.last_returned.map_or(self.start_offset, |o| o + 1)
    }

    /// Where this partition resumes after a checkpoint at `time`: the first record placed
    /// at or after it, the later ones placed before it (known), and the high-water mark
    /// before the first. Valid while nothing placed at or after `time` has been dropped
    /// from `placed`, i.e. before a frontier past `time` is applied.
    fn share(&self, time: Time) -> PartitionShare {
        let first = self.placed.iter().position(|(_, at, _)| *at >= time);
        let (resume, high_water) = match first {
            Some(i) => (self.placed[i].0, self.placed[i].2),
            None => (self.next_offset(), self.high_water),
        };
        let mut known: Vec<i64> = first.map_or_else(Vec::new, |i| {
            self.placed
                .iter()
                .skip(i + 1)
                .filter(|(_, at, _)| *at < time)
                .map(|(offset, _, _)| *offset)
                .collect()
        });
        // Restored known records not read again yet are still known.
        known.extend(self.known.iter().copied());
        known.sort_unstable();
        PartitionShare {
            topic: self.topic.clone(),
            partition: self.partition,
            resume,
            known,
            high_water,
        }
    }
}

impl WorkerConsumer {
    /// Moves what librdkafka has into the partitions' buffers, without waiting.
    fn fill(&mut self) {
        for _ in 0..1024 {
            match self.consumer.poll(Duration::ZERO) {
                Some(Polled::Record(record)) => {
                    let Some(&i) = self.index.get(&(record.topic.clone(), record.partition)) else {
                        continue;
                    };
                    let state = &mut self.partitions[i];
                    state.buffered.push_back((record.offset, record.payload));
                    state.caught_up = false;
                }
                Some(Polled::PartitionEof { topic, partition, .. }) => {
                    if let Some(&i) = self.index.get(&(topic, partition)) {
                        self.partitions[i].caught_up = true;
                    }
                }
                Some(_) => {}
                None => break,
            }
        }
    }

    fn next_record(&mut self, i: usize, idle_timeout: Duration) -> Next {
        if self.partitions[i].buffered.is_empty() {
            self.fill();
        }
        let state = &mut self.partitions[i];
        match state.buffered.pop_front() {
            Some((offset, payload)) => {
                state.last_returned = Some(offset);
                state.quiet_since = Instant::now();
                // Refused before the high-water mark moves, as the source's placer does; a
                // quarantined event is refused by the source (which places its rejection)
                // and moves no high-water mark either.
                let decoded = match decode_event(&payload) {
                    Decoded::Event(event) => {
                        let latest = Ts(wall_clock_ms().saturating_add(self.max_ahead.as_millis() as i64));
                        let window = self.admission.window.until(latest, "the wall clock plus --max-ahead");
                        match window.check(event.ts) {
                            Ok(()) => Decoded::Event(event),
                            Err(detail) => Decoded::Refused(Rejection::of_event(
                                &event.id,
                                event.kind().as_str(),
                                &event.account,
                                None,
                                Reason::TsOutOfRange,
                                detail,
                            )),
                        }
                    }
                    refused => refused,
                };
                let state = &mut self.partitions[i];
                state.high_water_before = state.high_water;
                if let Decoded::Event(event) = &decoded {
                    if !self.admission.quarantine.contains_key(&event.id) {
                        state.high_water = Some(state.high_water.map_or(event.ts, |hw| hw.max(event.ts)));
                    }
                }
                if state.known.remove(&offset) {
                    return Next::Known(decoded);
                }
                Next::Record(decoded)
            }
            None if state.caught_up && state.quiet_since.elapsed() >= idle_timeout => Next::Idle,
            None => Next::Pending,
        }
    }

    /// Everything before `frontier` is done: commit what that covers, at most once per
    /// interval, after the broker has acknowledged every output produced so far.
    fn completed(&mut self, frontier: Time, force: bool) -> Result<()> {
        if !force {
            self.checkpoint(frontier)?;
        }
        for state in &mut self.partitions {
            while state.placed.front().is_some_and(|(_, time, _)| *time < frontier) {
                state.placed.pop_front();
            }
        }
        self.frontier = frontier;
        if !force && self.last_commit.elapsed() < self.commit_interval {
            return Ok(());
        }
        self.last_commit = Instant::now();
        let changed = self
            .partitions
            .iter()
            .any(|state| state.committed != Some(state.done_offset()));
        if !force && !changed && self.committed_frontier == Some(frontier) {
            return Ok(());
        }
        let offsets: Vec<(&str, i32, i64)> = self
            .partitions
            .iter()
            .map(|state| (state.topic.as_str(), state.partition, state.done_offset()))
            .collect();
        // Outputs before `frontier` were handed to the producer before the probe passed
        // it; the flush waits for the broker to acknowledge them (and everything after).
        let mut producer = self.shared.producer.lock().expect("producer lock");
        producer
            .flush(Duration::from_secs(30))
            .context("waiting for the broker to acknowledge outputs before committing")?;
        self.consumer.commit(&offsets).context("committing input offsets")?;
        // Only now may a restart skip outputs before `frontier` (the next flush acks this).
        // The recorded frontier never goes back: outputs before an earlier record were
        // acknowledged too (by this run or an earlier one), and a restart that caught up
        // with less than that would otherwise produce them again for nothing.
        let recorded = self.shared.committed_frontier.fetch_max(frontier, Ordering::SeqCst);
        if frontier > recorded {
            let group = self.shared.kafka.group_id.clone();
            producer
                .send(
                    &self.shared.progress_topic,
                    group.as_bytes(),
                    frontier.to_string().as_bytes(),
                    &[],
                )
                .context("recording the committed frontier")?;
        }
        if force {
            producer
                .flush(Duration::from_secs(30))
                .context("recording the committed frontier")?;
        }
        drop(producer);
        let committed: Vec<i64> = offsets.iter().map(|(_, _, offset)| *offset).collect();
        for (state, offset) in self.partitions.iter_mut().zip(committed) {
            state.committed = Some(offset);
        }
        self.committed_frontier = Some(frontier);
        self.shared.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

impl WorkerConsumer {
    /// Checkpoints: worker 0 asks for one every interval, just past what every machine has
    /// stepped and every source has seen done ([`Checkpoints::propose`]: so each machine
    /// can still save its state as of that time, and each source still knows where its
    /// partitions resume); each worker saves its source share once the frontier reaches
    /// the time asked for; whoever completes a cut flushes the producer (the outputs before
    /// the cut are then acknowledged) and hands the cut to the writer thread.
    fn checkpoint(&mut self, frontier: Time) -> Result<()> {
        let Some(checkpoints) = self.shared.checkpoints.clone() else {
            return Ok(());
        };
        if self.worker == 0 {
            let mut last = self.shared.last_request.lock().expect("request lock");
            if last.elapsed() >= self.shared.checkpoint_interval && checkpoints.propose().is_some() {
                *last = Instant::now();
            }
        }
        if let Some(time) = checkpoints.acting_on(frontier) {
            if time > self.checkpoint_saved && frontier >= time {
                let share = SourceShare {
                    read_max: self
                        .partitions
                        .iter()
                        .filter_map(|state| state.high_water.map(time_of))
                        .max()
                        .unwrap_or(0),
                    partitions: self.partitions.iter().map(|state| state.share(time)).collect(),
                };
                checkpoints.deposit(time, share.share(self.worker));
                if self.worker == 0 {
                    for worker in &self.shared.idle_workers {
                        checkpoints.deposit(time, SourceShare::default().share(*worker));
                    }
                }
                self.checkpoint_saved = time;
            }
        }
        if let Some(cut) = checkpoints.take_complete() {
            self.shared
                .producer
                .lock()
                .expect("producer lock")
                .flush(Duration::from_secs(30))
                .context("waiting for the broker to acknowledge outputs before a checkpoint")?;
            if let Some(writer) = self.shared.writer.lock().expect("writer lock").as_ref() {
                let _ = writer.send(cut);
            }
        }
        Ok(())
    }
}

/// One Kafka partition as a [`PartitionInput`].
struct KafkaPartition {
    worker: Arc<Mutex<WorkerConsumer>>,
    index: usize,
    name: String,
    idle_timeout: Duration,
}

impl PartitionInput for KafkaPartition {
    fn next_record(&mut self) -> Next {
        self.worker
            .lock()
            .expect("consumer lock")
            .next_record(self.index, self.idle_timeout)
    }

    fn name(&self) -> String {
        self.name.clone()
    }

    fn bytes_read(&self) -> u64 {
        0
    }

    fn placed(&mut self, time: u64) {
        let mut worker = self.worker.lock().expect("consumer lock");
        let state = &mut worker.partitions[self.index];
        if let Some(offset) = state.last_returned {
            state.placed.push_back((offset, time, state.high_water_before));
        }
    }

    fn start_high_water(&self) -> Option<Ts> {
        self.worker.lock().expect("consumer lock").partitions[self.index].high_water
    }

    fn completed(&mut self, frontier: u64) {
        // One partition of the worker speaks for all of them.
        if self.index != 0 {
            return;
        }
        if let Err(error) = self.worker.lock().expect("consumer lock").completed(frontier, false) {
            // Not fatal: nothing is committed, so nothing is lost; the next interval retries.
            markledger_operators::note!("markledger stream: commit skipped: {error:#}");
        }
    }
}

/// Outputs to Kafka, each with a deterministic id (see the module docs).
struct KafkaSink {
    shared: Arc<Shared>,
    /// Outputs before this were produced and acknowledged by an earlier run.
    resume: Time,
    /// Copies of identical records at one time, so each copy has its own id.
    copies: HashMap<(Time, u128), u32>,
}

impl OutputSink for KafkaSink {
    type Done = ();

    fn emit(&mut self, time: Time, outputs: &mut Vec<Output>) {
        if time < self.resume {
            self.shared
                .suppressed
                .fetch_add(outputs.len() as u64, Ordering::Relaxed);
            outputs.clear();
            return;
        }
        self.shared.produced.fetch_add(outputs.len() as u64, Ordering::Relaxed);
        // Rendered before the producer is locked: the other workers' sinks send meanwhile.
        let records: Vec<(&str, String, String, String)> = outputs
            .drain(..)
            .map(|output| {
                let (topic, key) = output_route(&output, &self.shared.kafka);
                let payload = render_output(&output);
                let hash = content_hash(topic, &payload);
                let copy = self.copies.entry((time, hash)).or_default();
                let id = format!("{hash:032x}-{copy}");
                *copy += 1;
                // The id travels in the record too: not every broker keeps headers (tansu's
                // storage does not).
                (topic, key, with_id(&payload, &id), id)
            })
            .collect();
        let mut producer = self.shared.producer.lock().expect("producer lock");
        for (topic, key, payload, id) in records {
            if let Err(error) = producer.send(topic, key.as_bytes(), payload.as_bytes(), &[(ID_HEADER, id.as_bytes())])
            {
                // The producer retries forever; an error here is a record it refused
                // outright (too large): nothing commits past it (its flush fails).
                markledger_operators::note!("markledger stream: output refused by the producer: {error:#}");
            }
        }
    }

    fn frontier(&mut self, frontier: &[Time]) {
        let low = frontier.iter().min().copied().unwrap_or(Time::MAX);
        self.copies.retain(|(time, _), _| *time >= low);
    }

    fn finish(self) {}
}

/// The output frontier the group's last commit covered (0: none), from the progress topic.
fn read_progress(kafka: &KafkaSettings, topic: &str) -> Result<Time> {
    let mut consumer = PartitionConsumer::starting(kafka, &[(topic.to_string(), 0)], Start::Earliest)
        .context("reading the progress topic")?;
    let mut frontier = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Polled::Record(record)) if record.key.as_deref() == Some(kafka.group_id.as_bytes()) => {
                frontier = std::str::from_utf8(&record.payload)
                    .ok()
                    .and_then(|text| text.parse().ok())
                    .unwrap_or(frontier);
            }
            Some(Polled::PartitionEof { .. }) => return Ok(frontier),
            _ => {}
        }
    }
    anyhow::bail!("the progress topic {topic} did not reach its end within 30 s")
}

/// The xxh3-128 of `topic`, a newline and `payload`, hashed in place (no joined copy).
fn content_hash(topic: &str, payload: &str) -> u128 {
    let mut hasher = xxhash_rust::xxh3::Xxh3Default::new();
    hasher.update(topic.as_bytes());
    hasher.update(b"\n");
    hasher.update(payload.as_bytes());
    hasher.digest128()
}

/// A rendered output object with an `"id"` field added last.
fn with_id(payload: &str, id: &str) -> String {
    let body = payload.strip_suffix('}').expect("an output renders as a JSON object");
    format!("{body},\"id\":\"{id}\"}}")
}

/// The input partitions, in assignment order.
fn input_partitions(options: &StreamOptions) -> Result<Vec<(String, i32)>> {
    let mut all = Vec::new();
    for topic in &options.kafka.input_topics {
        let count = match partition_count(&options.kafka, topic) {
            Ok(count) => count,
            Err(_) => {
                ensure_topics(
                    &options.kafka,
                    &[TopicSpec::new(topic.clone(), options.input_partitions)],
                )
                .with_context(|| format!("creating the input topic {topic}"))?;
                partition_count(&options.kafka, topic).with_context(|| format!("reading the partitions of {topic}"))?
            }
        };
        all.extend((0..count).map(|p| (topic.clone(), p)));
    }
    Ok(all)
}

/// Runs `stream` until `stop` is set; then finishes what is before the watermark, commits,
/// and returns.
pub fn run_stream(
    config: &Config,
    options: &StreamOptions,
    stop: Arc<AtomicBool>,
    progress: &mut dyn FnMut(&StreamReport),
) -> Result<StreamReport> {
    let kafka = &options.kafka;
    let config = &with_quarantine(config, options.state.as_deref())?;
    let assignment = input_partitions(options)?;
    let outputs: Vec<TopicSpec> = OutputFile::ALL
        .iter()
        .map(|file| {
            let name = kafka.output_topics.topic(*file).to_string();
            let partitions = assignment.len().max(1) as i32;
            if OutputTopics::is_compacted(*file) {
                TopicSpec::compacted(name, partitions)
            } else {
                TopicSpec::new(name, partitions)
            }
        })
        .collect();
    ensure_topics(kafka, &outputs).context("creating the output topics")?;

    ensure_topics(kafka, &[TopicSpec::compacted(options.progress_topic.clone(), 1)])
        .context("creating the progress topic")?;
    // Where an earlier run of the group got to (outputs before it are acknowledged).
    let progress_frontier = read_progress(kafka, &options.progress_topic)?;
    let workers = options.workers.max(1);
    // The state a checkpoint holds, and where each partition resumes.
    let store = options.state.as_deref().map(Store::open).transpose()?;
    let restored = match &store {
        Some(store) => store.load(&mut |why| markledger_operators::note!("markledger stream: {why}"))?,
        None => None,
    };
    if let (Some(dir), None) = (&options.state, &restored) {
        markledger_operators::note!(
            "markledger stream: no checkpoint in {}: state is rebuilt from the inputs' earliest offsets",
            dir.display()
        );
    }
    let mut resume_at: HashMap<(String, i32), PartitionShare> = HashMap::new();
    if let Some(cut) = &restored {
        if cut.workers != workers {
            anyhow::bail!(
                "the checkpoint at {} was written by {} workers; run with --workers {} (state is \
                 partitioned by worker), or move the state directory away to rebuild from the inputs",
                markledger_operators::flow::ts_of(cut.time),
                cut.workers,
                cut.workers
            );
        }
        for worker in 0..workers {
            for partition in SourceShare::of(cut, worker)?.partitions {
                let mine = assignment
                    .iter()
                    .position(|p| *p == (partition.topic.clone(), partition.partition))
                    .is_some_and(|i| worker_of(i, workers) == worker);
                if !mine {
                    anyhow::bail!(
                        "the checkpoint's partition {}/{} is not worker {worker}'s in this run: the input \
                         topics or their partitions changed; move the state directory away to rebuild",
                        partition.topic,
                        partition.partition
                    );
                }
                resume_at.insert((partition.topic.clone(), partition.partition), partition);
            }
        }
        markledger_operators::note!(
            "markledger stream: restored the checkpoint at {} ({} workers)",
            markledger_operators::flow::ts_of(cut.time),
            cut.workers
        );
    }
    let resume = progress_frontier.max(restored.as_ref().map_or(0, |cut| cut.time));
    let restored_from = restored.as_ref().map(|cut| cut.time);
    let checkpoints = store.as_ref().map(|_| Checkpoints::new(workers, &NAMES, restored));
    if resume > 0 {
        markledger_operators::note!(
            "markledger stream: resuming group {}: outputs before {} were produced by an earlier run",
            kafka.group_id,
            markledger_operators::flow::ts_of(resume)
        );
    }

    let shared = Arc::new(Shared {
        kafka: kafka.clone(),
        progress_topic: options.progress_topic.clone(),
        producer: Mutex::new(OutputProducer::new(kafka).context("creating the producer")?),
        produced: AtomicU64::new(0),
        suppressed: AtomicU64::new(0),
        commits: AtomicU64::new(0),
        committed_frontier: AtomicU64::new(resume),
        checkpoints: checkpoints.clone(),
        checkpoint_interval: options.checkpoint_interval,
        last_request: Mutex::new(Instant::now()),
        writer: Mutex::new(None),
        written: AtomicU64::new(0),
        last_written: Mutex::new(None),
        idle_workers: (0..workers)
            .filter(|worker| !(0..assignment.len()).any(|i| worker_of(i, workers) == *worker))
            .collect(),
    });
    // The writer thread: one checkpoint file at a time, off the workers' threads.
    let writer = store.map(|store| {
        let (send, receive) = mpsc::channel::<Cut>();
        *shared.writer.lock().expect("writer lock") = Some(send);
        let shared = shared.clone();
        std::thread::spawn(move || {
            for cut in receive {
                match store.write(&cut) {
                    Ok(written) => {
                        shared.written.fetch_add(1, Ordering::Relaxed);
                        *shared.last_written.lock().expect("written lock") =
                            Some((cut.time, written.bytes, written.took.as_millis() as u64));
                    }
                    // Not fatal: the previous checkpoint stays the one to restore.
                    Err(error) => markledger_operators::note!("markledger stream: checkpoint not written: {error:#}"),
                }
            }
        })
    });
    let consumers: Arc<Mutex<Vec<Arc<Mutex<WorkerConsumer>>>>> = Arc::default();
    let make_inputs = {
        let kafka = kafka.clone();
        let shared = shared.clone();
        let consumers = consumers.clone();
        let assignment = assignment.clone();
        let idle_timeout = options.idle_timeout;
        let commit_interval = options.commit_interval;
        let admission = config.admission();
        let max_ahead = options.max_ahead;
        let resume_at = resume_at.clone();
        move |worker: usize| -> Inputs {
            let mine: Vec<(String, i32)> = assignment
                .iter()
                .enumerate()
                .filter(|(i, _)| worker_of(*i, workers) == worker)
                .map(|(_, p)| p.clone())
                .collect();
            if mine.is_empty() {
                return Vec::new();
            }
            let start = if resume_at.is_empty() {
                Start::Earliest
            } else {
                Start::At(
                    mine.iter()
                        .map(|p| resume_at.get(p).map_or(0, |share| share.resume))
                        .collect(),
                )
            };
            let consumer = PartitionConsumer::starting(&kafka, &mine, start)
                .unwrap_or_else(|error| panic!("creating worker {worker}'s consumer: {error}"));
            let start: HashMap<(String, i32), i64> =
                consumer.positions().into_iter().map(|(t, p, o)| ((t, p), o)).collect();
            let partitions = mine
                .iter()
                .map(|(topic, partition)| {
                    let restored = resume_at.get(&(topic.clone(), *partition));
                    PartitionState {
                        topic: topic.clone(),
                        partition: *partition,
                        buffered: VecDeque::new(),
                        placed: VecDeque::new(),
                        high_water: restored.and_then(|share| share.high_water),
                        high_water_before: None,
                        known: restored
                            .map(|share| share.known.iter().copied().collect())
                            .unwrap_or_default(),
                        last_returned: None,
                        start_offset: start[&(topic.clone(), *partition)],
                        caught_up: false,
                        quiet_since: Instant::now(),
                        committed: None,
                    }
                })
                .collect();
            let index = mine.iter().cloned().enumerate().map(|(i, p)| (p, i)).collect();
            let worker_consumer = Arc::new(Mutex::new(WorkerConsumer {
                consumer,
                shared: shared.clone(),
                partitions,
                index,
                commit_interval,
                last_commit: Instant::now(),
                frontier: 0,
                committed_frontier: None,
                worker,
                checkpoint_saved: restored_from.unwrap_or(0),
                admission: admission.clone(),
                max_ahead,
            }));
            consumers.lock().expect("registry").push(worker_consumer.clone());
            mine.iter()
                .enumerate()
                .map(|(index, (topic, partition))| {
                    Box::new(KafkaPartition {
                        worker: worker_consumer.clone(),
                        index,
                        name: format!("{topic}/{partition}"),
                        idle_timeout,
                    }) as Box<dyn PartitionInput>
                })
                .collect()
        }
    };
    let make_sink = {
        let shared = shared.clone();
        move |_worker: usize| KafkaSink {
            shared: shared.clone(),
            resume,
            copies: HashMap::new(),
        }
    };
    let report = |records: u64| StreamReport {
        records,
        produced: shared.produced.load(Ordering::Relaxed),
        suppressed: shared.suppressed.load(Ordering::Relaxed),
        commits: shared.commits.load(Ordering::Relaxed),
        // 0: no commit yet, by this run or an earlier one of the group.
        committed_frontier: Some(shared.committed_frontier.load(Ordering::Relaxed)).filter(|t| *t > 0),
        partitions: assignment.len(),
        restored_from,
        checkpoints: shared.written.load(Ordering::Relaxed),
        last_checkpoint: *shared.last_written.lock().expect("written lock"),
        longest_save: Duration::ZERO,
    };
    let run = run_dataflow(
        config,
        workers,
        Batching::default(),
        Mode::Stream { stop, checkpoints },
        make_inputs,
        make_sink,
        &mut |records| progress(&report(records)),
    )?;
    // The orderly stop: everything before the watermark is done; commit it.
    for worker in consumers.lock().expect("registry").iter() {
        let mut worker = worker.lock().expect("consumer lock");
        let frontier = worker.frontier;
        worker.completed(frontier, true)?;
    }
    // The writer finishes the checkpoint it has (if any) before the run returns.
    shared.writer.lock().expect("writer lock").take();
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    let mut report = report(run.stats.records);
    report.checkpoints = shared.written.load(Ordering::Relaxed);
    report.last_checkpoint = *shared.last_written.lock().expect("written lock");
    report.longest_save = shared
        .checkpoints
        .as_ref()
        .map_or(Duration::ZERO, Checkpoints::longest_save);
    Ok(report)
}

/// `stream --config FILE`: any of the command's settings, in TOML (flags win).
///
/// ```toml
/// brokers = "kafka-1:9092,kafka-2:9092"
/// group = "markledger"
/// workers = 4
/// input_topics = ["codes.events"]
/// topic_prefix = "prod."
/// lateness = "5s"
/// idle_timeout = "10s"
/// commit_interval = "1s"
/// state = "/var/lib/markledger"
/// checkpoint_interval = "10s"
/// [topics]
/// status = "codes.status"
/// ledger = "codes.ledger"
/// balances = "codes.balances"
/// rejections = "codes.rejections"
/// periods = "codes.periods"
/// ```
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamFile {
    /// Bootstrap brokers.
    pub brokers: Option<String>,
    /// Consumer group.
    pub group: Option<String>,
    /// Worker threads.
    pub workers: Option<usize>,
    /// Input topics.
    pub input_topics: Option<Vec<String>>,
    /// Prefix of every topic name.
    pub topic_prefix: Option<String>,
    /// Allowed lateness.
    pub lateness: Option<String>,
    /// Idle timeout of a partition.
    pub idle_timeout: Option<String>,
    /// Commit interval.
    pub commit_interval: Option<String>,
    /// Checkpoint directory.
    pub state: Option<std::path::PathBuf>,
    /// Checkpoint interval.
    pub checkpoint_interval: Option<String>,
    /// How far ahead of the wall clock an event's `ts` may be.
    pub max_ahead: Option<String>,
    /// Output topic names.
    pub topics: Option<TopicNames>,
}

/// Output topic names of a [`StreamFile`].
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicNames {
    /// Status changes.
    pub status: Option<String>,
    /// Ledger entries.
    pub ledger: Option<String>,
    /// Balances.
    pub balances: Option<String>,
    /// Rejections.
    pub rejections: Option<String>,
    /// Period aggregates.
    pub periods: Option<String>,
}

impl TopicNames {
    /// Sets the names given.
    pub fn apply(&self, topics: &mut OutputTopics) {
        for (name, slot) in [
            (&self.status, &mut topics.status),
            (&self.ledger, &mut topics.ledger),
            (&self.balances, &mut topics.balances),
            (&self.rejections, &mut topics.rejections),
            (&self.periods, &mut topics.periods),
        ] {
            if let Some(name) = name {
                *slot = name.clone();
            }
        }
    }
}

impl StreamFile {
    /// Reads a config file.
    pub fn load(path: &std::path::Path) -> Result<StreamFile> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_file_sets_what_it_names_and_refuses_unknown_keys() {
        let file: StreamFile = toml::from_str(
            "brokers = \"k1:9092,k2:9092\"\nworkers = 4\ninput_topics = [\"in\"]\nidle_timeout = \"3s\"\n\
             [topics]\nperiods = \"billing.periods\"\n",
        )
        .expect("parses");
        assert_eq!(file.brokers.as_deref(), Some("k1:9092,k2:9092"));
        assert_eq!(file.workers, Some(4));
        assert_eq!(file.input_topics, Some(vec!["in".to_string()]));
        assert_eq!(file.idle_timeout.as_deref(), Some("3s"));
        let mut topics = OutputTopics::default();
        file.topics.expect("topics").apply(&mut topics);
        assert_eq!(topics.periods, "billing.periods");
        assert_eq!(topics.status, "codes.status");
        assert!(toml::from_str::<StreamFile>("brokerz = \"x\"").is_err());
    }

    #[test]
    fn the_content_hash_is_the_xxh3_128_of_topic_newline_payload() {
        // Ids must not change between releases: consumers drop repeats by them.
        for (topic, payload) in [
            ("codes.ledger", r#"{"account":"A"}"#),
            ("", ""),
            ("t", &"x".repeat(5000)),
        ] {
            let joined = format!("{topic}\n{payload}");
            assert_eq!(
                content_hash(topic, payload),
                xxhash_rust::xxh3::xxh3_128(joined.as_bytes())
            );
        }
    }

    #[test]
    fn an_id_is_added_as_the_last_field() {
        let payload = r#"{"account":"A","balance":"1.00"}"#;
        let with = with_id(payload, "abc-0");
        assert_eq!(with, r#"{"account":"A","balance":"1.00","id":"abc-0"}"#);
        let value: serde_json::Value = serde_json::from_str(&with).expect("JSON");
        assert_eq!(value["id"], "abc-0");
    }
}
