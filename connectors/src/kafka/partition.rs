//! The stream's input: a worker's Kafka partitions as the pipeline's sources read them
//! ([`PartitionInput`]), and their offset commits.
//!
//! In: the partitions assigned to one worker (partition `i` of the run's assignment goes to
//! worker `i mod workers`; no group rebalancing), read by one [`PartitionConsumer`] from a
//! checkpoint's resume offsets or from their earliest ones. Out: per partition, each record
//! decoded ([`Next::Record`]; [`Next::Known`] for one the restored state already holds), or
//! [`Next::Pending`], or [`Next::Idle`] once the partition is caught up (librdkafka's
//! partition EOF) and silent for the idle timeout. An event whose `ts` is more than
//! `max_ahead` ahead of the wall clock is refused `TS_OUT_OF_RANGE` here, before it moves
//! the partition's high-water mark. An event in the first year the calendar does not cover
//! (issue 19) is *held*: not returned, its partition answering [`Next::Pending`] from then
//! on (so it holds the watermark before the calendar's end, and never goes idle), nothing
//! after it buffered, and its offset never committed; a restart with a calendar that covers
//! the year reads on from it.
//!
//! Offsets ([`WorkerOffsets`]) follow what the source places and what the dataflow
//! finishes. When the output frontier moves, the worker first lets its [`CheckpointHook`]
//! save where its partitions resume (while the placements at the checkpoint's time are
//! still known), then forgets what is done, and at most every `commit_interval` commits:
//! a flush makes the broker acknowledge every output handed over so far, the offsets of the
//! first records not done are committed, and the frontier is recorded on the progress topic
//! ([`ProgressTopic`]). A failed commit is reported and retried at the next interval;
//! nothing is committed past an output the broker has not acknowledged.

use super::metrics::{InputMetrics, PartitionFigures};
use super::offsets::{PartitionOffsets, WorkerOffsets};
use super::progress::ProgressTopic;
use super::sink::{SharedProducer, ACKNOWLEDGE_WAIT_MAX};
use super::source::{PartitionConsumer, Polled, Start};
use super::{chain, Error, KafkaSettings, Result};
use crate::codec::json::decode_event;
use crate::codec::Decoded;
use crate::offsets::{OffsetTracker, PartitionShare};
use crate::partition::{Next, PartitionInput};
use markledger_operators::flow::Time;
use markledger_operators::output::Rejection;
use markledger_operators::rules::{Admission, BeyondCalendar};
use markledger_operators::time::Ts;
use markledger_operators::Reason;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Records moved from librdkafka into the partitions' buffers per fill.
const FILL_RECORDS_MAX: usize = 1024;

/// Where each partition resumes, from a restored checkpoint (empty: none).
pub type ResumeAt = BTreeMap<(String, i32), PartitionShare>;

/// What every worker's Kafka input shares.
#[derive(Clone, Debug)]
pub struct InputSettings {
    /// Brokers, group, topics.
    pub kafka: KafkaSettings,
    /// A caught-up partition silent this long stops holding the watermark back.
    pub idle_timeout: Duration,
    /// How often offsets are committed.
    pub commit_interval: Duration,
    /// Which events are taken in (refused before the high-water mark moves).
    pub admission: Admission,
    /// An event whose `ts` is further than this ahead of the wall clock is refused.
    pub max_ahead: Duration,
    /// The producer whose acknowledgements every commit waits for.
    pub producer: Arc<SharedProducer>,
    /// Where each commit's frontier is recorded.
    pub progress: Arc<ProgressTopic>,
    /// Partitions held at the calendar's end (an alert metric; see the module docs).
    pub calendar_held: Arc<AtomicUsize>,
    /// The input's figures for the metrics endpoint.
    pub metrics: Arc<InputMetrics>,
}

/// What the checkpoint code does when a worker's output frontier moves: called before the
/// worker forgets the records placed before `frontier`, so `offsets` can still say where its
/// partitions resume at any time not before it ([`OffsetTracker::share`]). An error skips
/// this commit (reported; the next interval retries).
pub trait CheckpointHook: Send {
    /// Everything before `frontier` is done.
    fn frontier_reached(&mut self, frontier: Time, offsets: &dyn OffsetTracker) -> Result<()>;
}

/// What the consumer has of one partition, not yet returned to the source.
struct Buffered {
    records: VecDeque<(i64, Vec<u8>)>,
    /// The partition is at its end (librdkafka's partition EOF after the last record).
    caught_up: bool,
    /// When a record was last returned.
    quiet_since: Instant,
    /// Held at the calendar's end: the front record is in this year, which the calendar
    /// does not cover.
    held: Option<i32>,
}

/// A worker's consumer, its partitions' offsets, and their commits.
struct WorkerConsumer {
    consumer: PartitionConsumer,
    settings: InputSettings,
    buffered: Vec<Buffered>,
    offsets: WorkerOffsets,
    index: HashMap<(String, i32), usize>,
    last_commit: Instant,
    /// The output frontier last reported done.
    frontier: Time,
    /// The frontier the last commit covered.
    committed_frontier: Option<Time>,
    checkpoint: Option<Box<dyn CheckpointHook>>,
    /// Each partition's figures (assignment order) and the worker's output frontier.
    figures: Vec<Arc<PartitionFigures>>,
    frontier_figure: Arc<AtomicU64>,
    /// Late events per partition as last logged.
    late_logged: Vec<u64>,
}

/// One worker's Kafka input: hands out its partitions and makes the final commit.
#[derive(Clone)]
pub struct KafkaInput {
    worker: Arc<Mutex<WorkerConsumer>>,
    names: Vec<String>,
    idle_timeout: Duration,
}

impl std::fmt::Debug for KafkaInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaInput").field("partitions", &self.names).finish()
    }
}

impl KafkaInput {
    /// The input of `assignment` (one worker's partitions, in assignment order): every
    /// partition from its offset in `resume_at` when that holds any (0 for one it lacks),
    /// else from its earliest retained offset; `checkpoint` is told each frontier.
    pub fn open(
        settings: &InputSettings,
        assignment: &[(String, i32)],
        resume_at: &ResumeAt,
        checkpoint: Option<Box<dyn CheckpointHook>>,
    ) -> Result<KafkaInput> {
        let start = if resume_at.is_empty() {
            Start::Earliest
        } else {
            Start::At(
                assignment
                    .iter()
                    .map(|p| resume_at.get(p).map_or(0, |share| share.resume))
                    .collect(),
            )
        };
        let consumer = PartitionConsumer::starting(&settings.kafka, assignment, start)?;
        let offsets = consumer
            .positions()
            .into_iter()
            .map(|(topic, partition, start)| {
                let restored = resume_at.get(&(topic.clone(), partition));
                PartitionOffsets::new(&topic, partition, start, restored)
            })
            .collect();
        let buffered = assignment
            .iter()
            .map(|_| Buffered {
                records: VecDeque::new(),
                caught_up: false,
                quiet_since: Instant::now(),
                held: None,
            })
            .collect();
        let worker = WorkerConsumer {
            consumer,
            settings: settings.clone(),
            buffered,
            offsets: WorkerOffsets::new(offsets),
            index: assignment.iter().cloned().enumerate().map(|(i, p)| (p, i)).collect(),
            last_commit: Instant::now(),
            frontier: 0,
            committed_frontier: None,
            checkpoint,
            figures: assignment
                .iter()
                .map(|(topic, partition)| settings.metrics.partition(topic, *partition))
                .collect(),
            frontier_figure: settings.metrics.worker(),
            late_logged: vec![0; assignment.len()],
        };
        Ok(KafkaInput {
            worker: Arc::new(Mutex::new(worker)),
            names: assignment
                .iter()
                .map(|(topic, partition)| format!("{topic}/{partition}"))
                .collect(),
            idle_timeout: settings.idle_timeout,
        })
    }

    /// The worker's partitions, in assignment order, for its source.
    pub fn partitions(&self) -> Vec<Box<dyn PartitionInput>> {
        self.names
            .iter()
            .enumerate()
            .map(|(index, name)| {
                Box::new(KafkaPartition {
                    worker: self.worker.clone(),
                    index,
                    name: name.clone(),
                    idle_timeout: self.idle_timeout,
                }) as Box<dyn PartitionInput>
            })
            .collect()
    }

    /// The orderly stop: commits what the last frontier reported covers, now, and waits
    /// for its progress record to be acknowledged.
    pub fn commit_final(&self) -> Result<()> {
        let mut worker = self.worker.lock().expect("consumer lock");
        let frontier = worker.frontier;
        worker.completed(frontier, true)
    }
}

/// Milliseconds since the Unix epoch now.
fn wall_clock_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.map_or(0, |d| d.as_millis() as i64)
}

impl WorkerConsumer {
    /// Moves what librdkafka has into the partitions' buffers, without waiting; notes each
    /// partition's consumer lag from librdkafka's statistics.
    fn fill(&mut self) {
        for ((topic, partition), i) in &self.index {
            if let Some(lag) = self.consumer.lag(topic, *partition) {
                self.figures[*i].lag.store(lag, Ordering::Relaxed);
            }
        }
        for _ in 0..FILL_RECORDS_MAX {
            match self.consumer.poll(Duration::ZERO) {
                Some(Polled::Record(record)) => {
                    let Some(&i) = self.index.get(&(record.topic.clone(), record.partition)) else {
                        continue;
                    };
                    let buffered = &mut self.buffered[i];
                    if buffered.held.is_some() {
                        // Re-read from the held record after a restart; not kept meanwhile.
                        continue;
                    }
                    buffered.records.push_back((record.offset, record.payload));
                    buffered.caught_up = false;
                }
                Some(Polled::PartitionEof { topic, partition, .. }) => {
                    if let Some(&i) = self.index.get(&(topic, partition)) {
                        self.buffered[i].caught_up = true;
                    }
                }
                Some(_) => {}
                None => break,
            }
        }
    }

    fn next_record(&mut self, i: usize, idle_timeout: Duration) -> Next {
        if self.buffered[i].records.is_empty() {
            self.fill();
        }
        let buffered = &mut self.buffered[i];
        if buffered.held.is_some() {
            return Next::Pending;
        }
        let Some((offset, payload)) = buffered.records.pop_front() else {
            if buffered.caught_up && buffered.quiet_since.elapsed() >= idle_timeout {
                return Next::Idle;
            }
            return Next::Pending;
        };
        buffered.quiet_since = Instant::now();
        let decoded = decode_event(&payload);
        if let Some(beyond) = self.beyond_calendar(&decoded) {
            self.hold(i, offset, payload, beyond);
            return Next::Pending;
        }
        let decoded = self.admit(decoded);
        let figures = &self.figures[i];
        figures.records.fetch_add(1, Ordering::Relaxed);
        if let Decoded::Event(event) = &decoded {
            figures.high_water_ms.fetch_max(event.ts.0, Ordering::Relaxed);
        }
        // Refused before the high-water mark moves, as the source's placer does; a
        // quarantined event is refused by the source (which places its rejection) and moves
        // no high-water mark either.
        let ts = match &decoded {
            Decoded::Event(event) if !self.settings.admission.quarantine.contains_key(&event.id) => Some(event.ts),
            _ => None,
        };
        if self.offsets.partition_mut(i).returned(offset, ts) {
            return Next::Known(decoded);
        }
        Next::Record(decoded)
    }

    /// Why an event must wait for a calendar covering more: it is in the first year the
    /// calendar does not cover, or an emission whose expiry deadline falls there; and not
    /// too far ahead of the wall clock (that is refused, as before).
    fn beyond_calendar(&self, decoded: &Decoded) -> Option<BeyondCalendar> {
        let Decoded::Event(event) = decoded else {
            return None;
        };
        let latest = wall_clock_ms().saturating_add(self.settings.max_ahead.as_millis() as i64);
        let beyond = self.settings.admission.window.beyond_calendar(event)?;
        (event.ts.0 < latest).then_some(beyond)
    }

    /// Holds partition `i` at its record `offset` (`beyond` the calendar): put back
    /// unreturned, nothing after it kept, said once.
    fn hold(&mut self, i: usize, offset: i64, payload: Vec<u8>, beyond: BeyondCalendar) {
        let year = beyond.year();
        let what = beyond.what();
        let buffered = &mut self.buffered[i];
        buffered.records.clear();
        buffered.records.push_front((offset, payload));
        buffered.held = Some(year);
        self.settings.calendar_held.fetch_add(1, Ordering::Relaxed);
        self.figures[i].held.store(true, Ordering::Relaxed);
        let (topic, partition) = self
            .index
            .iter()
            .find(|(_, index)| **index == i)
            .map(|(key, _)| key.clone())
            .unwrap_or_default();
        markledger_operators::note!(
            "markledger stream: {topic}/{partition} is held at offset {offset}: its record {what}, \
             a year the working-day calendar does not cover; the watermark stays before it until the \
             stream is restarted with a calendar that covers {year} (--calendar; state is kept)"
        );
    }

    /// The event, or its `TS_OUT_OF_RANGE` refusal when its `ts` is beyond the calendar's
    /// window or too far ahead of the wall clock.
    fn admit(&self, decoded: Decoded) -> Decoded {
        let Decoded::Event(event) = decoded else {
            return decoded;
        };
        let admission = &self.settings.admission;
        let latest = Ts(wall_clock_ms().saturating_add(self.settings.max_ahead.as_millis() as i64));
        let window = admission.window.until(latest, "the wall clock plus --max-ahead");
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

    /// Everything before `frontier` is done: lets the checkpoint hook act on it (unless
    /// `force`d: the final commit), then commits what that covers, at most once per
    /// interval (`force`: now).
    fn completed(&mut self, frontier: Time, force: bool) -> Result<()> {
        if !force {
            if let Some(checkpoint) = self.checkpoint.as_mut() {
                checkpoint.frontier_reached(frontier, &self.offsets)?;
            }
        }
        self.offsets.forget_before(frontier);
        self.frontier = frontier;
        self.frontier_figure.store(frontier, Ordering::Relaxed);
        if !force && self.last_commit.elapsed() < self.settings.commit_interval {
            return Ok(());
        }
        self.last_commit = Instant::now();
        self.log_late_events();
        if !force && !self.offsets.uncommitted() && self.committed_frontier == Some(frontier) {
            return Ok(());
        }
        self.commit(frontier, force)
    }

    /// One line per commit interval naming the partitions whose events took effect late in
    /// it, with how many (issue 19: per interval, never per record).
    fn log_late_events(&mut self) {
        let mut lines = Vec::new();
        for ((topic, partition), i) in &self.index {
            let late = self.figures[*i].late.load(Ordering::Relaxed);
            let logged = &mut self.late_logged[*i];
            if late > *logged {
                lines.push(format!("{topic}/{partition}: {}", late - *logged));
                *logged = late;
            }
        }
        if !lines.is_empty() {
            lines.sort();
            markledger_operators::note!(
                "markledger stream: events taken in late (behind the watermark) since the last commit: {}",
                lines.join(", ")
            );
        }
    }

    /// Commits the done offsets once the broker has acknowledged every output so far, then
    /// records `frontier` on the progress topic (and, when `force`d, waits for that too).
    fn commit(&mut self, frontier: Time, force: bool) -> Result<()> {
        let done = self.offsets.done();
        // Outputs before `frontier` were handed to the producer before the probe passed
        // it; the flush waits for the broker to acknowledge them (and everything after).
        let mut producer = self.settings.producer.lock();
        producer
            .flush(ACKNOWLEDGE_WAIT_MAX)
            .map_err(|error| Error::during("waiting for the broker to acknowledge outputs before committing", error))?;
        self.consumer
            .commit(&done)
            .map_err(|error| Error::during("committing input offsets", error))?;
        // Only now may a restart skip outputs before `frontier` (the next flush acks this).
        self.settings.progress.record(&mut producer, frontier)?;
        if force {
            producer
                .flush(ACKNOWLEDGE_WAIT_MAX)
                .map_err(|error| Error::during("recording the committed frontier", error))?;
        }
        drop(producer);
        self.offsets.committed(&done);
        self.committed_frontier = Some(frontier);
        self.settings.progress.count_commit();
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
        worker.offsets.partition_mut(self.index).placed(time);
    }

    fn late(&mut self) {
        let worker = self.worker.lock().expect("consumer lock");
        worker.figures[self.index].late.fetch_add(1, Ordering::Relaxed);
    }

    fn start_high_water(&self) -> Option<Ts> {
        let worker = self.worker.lock().expect("consumer lock");
        worker.offsets.partition(self.index).high_water()
    }

    fn completed(&mut self, frontier: u64) {
        // One partition of the worker speaks for all of them.
        if self.index != 0 {
            return;
        }
        if let Err(error) = self.worker.lock().expect("consumer lock").completed(frontier, false) {
            // Not fatal: nothing is committed, so nothing is lost; the next interval retries.
            markledger_operators::note!("markledger stream: commit skipped: {}", chain(&error));
        }
    }
}
