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

use crate::config::Config;
use crate::dataflow::{run_dataflow, worker_of, Batching, Inputs, Mode, OutputSink};
use anyhow::{Context, Result};
use markledger_connectors::codec::json::{decode_event, render_output};
use markledger_connectors::file::OutputFile;
use markledger_connectors::kafka::{
    ensure_topics, output_route, partition_count, KafkaSettings, OutputProducer, OutputTopics, PartitionConsumer,
    Polled, Start, TopicSpec,
};
use markledger_connectors::partition::{Next, PartitionInput};
use markledger_operators::machine::Time;
use markledger_operators::output::Output;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
}

/// Shared per process: the producer (every worker's outputs), counters.
struct Shared {
    kafka: KafkaSettings,
    progress_topic: String,
    producer: Mutex<OutputProducer>,
    produced: AtomicU64,
    suppressed: AtomicU64,
    commits: AtomicU64,
    committed_frontier: AtomicU64,
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
}

struct PartitionState {
    topic: String,
    partition: i32,
    buffered: VecDeque<(i64, Vec<u8>)>,
    /// Offsets returned to the source and the times they took effect at, not yet done.
    placed: VecDeque<(i64, Time)>,
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
            Some((offset, _)) => *offset,
            None => self.last_returned.map_or(self.start_offset, |o| o + 1),
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
                Next::Record(decode_event(&payload))
            }
            None if state.caught_up && state.quiet_since.elapsed() >= idle_timeout => Next::Idle,
            None => Next::Pending,
        }
    }

    /// Everything before `frontier` is done: commit what that covers, at most once per
    /// interval, after the broker has acknowledged every output produced so far.
    fn completed(&mut self, frontier: Time, force: bool) -> Result<()> {
        for state in &mut self.partitions {
            while state.placed.front().is_some_and(|(_, time)| *time < frontier) {
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
            state.placed.push_back((offset, time));
        }
    }

    fn completed(&mut self, frontier: u64) {
        // One partition of the worker speaks for all of them.
        if self.index != 0 {
            return;
        }
        if let Err(error) = self.worker.lock().expect("consumer lock").completed(frontier, false) {
            // Not fatal: nothing is committed, so nothing is lost; the next interval retries.
            eprintln!("markledger stream: commit skipped: {error:#}");
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
        let mut producer = self.shared.producer.lock().expect("producer lock");
        self.shared.produced.fetch_add(outputs.len() as u64, Ordering::Relaxed);
        for output in outputs.drain(..) {
            let (topic, key) = output_route(&output, &self.shared.kafka);
            let payload = render_output(&output);
            let hash = xxhash_rust::xxh3::xxh3_128(format!("{topic}\n{payload}").as_bytes());
            let copy = self.copies.entry((time, hash)).or_default();
            let id = format!("{hash:032x}-{copy}");
            *copy += 1;
            // The id travels in the record too: not every broker keeps headers (tansu's
            // storage does not).
            let payload = with_id(&payload, &id);
            if let Err(error) = producer.send(topic, key.as_bytes(), payload.as_bytes(), &[(ID_HEADER, id.as_bytes())])
            {
                // The producer retries forever; an error here is a record it refused
                // outright (too large): nothing commits past it (its flush fails).
                eprintln!("markledger stream: output refused by the producer: {error:#}");
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
    let resume = read_progress(kafka, &options.progress_topic)?;
    if resume > 0 {
        eprintln!(
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
    });
    let workers = options.workers.max(1);
    let consumers: Arc<Mutex<Vec<Arc<Mutex<WorkerConsumer>>>>> = Arc::default();
    let make_inputs = {
        let kafka = kafka.clone();
        let shared = shared.clone();
        let consumers = consumers.clone();
        let assignment = assignment.clone();
        let idle_timeout = options.idle_timeout;
        let commit_interval = options.commit_interval;
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
            let consumer = PartitionConsumer::starting(&kafka, &mine, Start::Earliest)
                .unwrap_or_else(|error| panic!("creating worker {worker}'s consumer: {error}"));
            let start: HashMap<(String, i32), i64> =
                consumer.positions().into_iter().map(|(t, p, o)| ((t, p), o)).collect();
            let partitions = mine
                .iter()
                .map(|(topic, partition)| PartitionState {
                    topic: topic.clone(),
                    partition: *partition,
                    buffered: VecDeque::new(),
                    placed: VecDeque::new(),
                    last_returned: None,
                    start_offset: start[&(topic.clone(), *partition)],
                    caught_up: false,
                    quiet_since: Instant::now(),
                    committed: None,
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
    };
    let run = run_dataflow(
        config,
        workers,
        Batching::default(),
        Mode::Stream { stop },
        make_inputs,
        make_sink,
        &mut |records| progress(&report(records)),
    );
    // The orderly stop: everything before the watermark is done; commit it.
    for worker in consumers.lock().expect("registry").iter() {
        let mut worker = worker.lock().expect("consumer lock");
        let frontier = worker.frontier;
        worker.completed(frontier, true)?;
    }
    Ok(report(run.stats.records))
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
    fn an_id_is_added_as_the_last_field() {
        let payload = r#"{"account":"A","balance":"1.00"}"#;
        let with = with_id(payload, "abc-0");
        assert_eq!(with, r#"{"account":"A","balance":"1.00","id":"abc-0"}"#);
        let value: serde_json::Value = serde_json::from_str(&with).expect("JSON");
        assert_eq!(value["id"], "abc-0");
    }
}
