//! The input side: explicitly assigned topic partitions in, owned records out.
//!
//! In: a list of `(topic, partition)` this worker owns (the pipeline places partition `p`
//! on worker `p mod workers`; no group rebalancing ever moves one). Out: [`Polled`] items:
//! each partition's records in offset order, a [`Polled::PartitionEof`] whenever a
//! partition is caught up (with the offset the next record will have), and transient
//! client trouble, which is reported and otherwise waited out — librdkafka reconnects and
//! refetches on its own, so a broker outage is a pause, never a panic.
//!
//! Each assigned partition has its own librdkafka queue, and [`PartitionConsumer::poll`]
//! takes from them in turn, one record at a time: a busy partition cannot starve a quiet
//! one, whose EOF lets the watermark advance; and an EOF always names its topic (rdkafka's
//! shared queue reports only the partition number).
//!
//! Offsets: the consumer starts each partition at the group's committed offset, or at the
//! partition's earliest offset when the group has none, and commits only when asked
//! ([`PartitionConsumer::commit`], synchronous), with the offset of the next record to read.

use super::admin::METADATA_TIMEOUT;
use super::config::{client_config, KafkaSettings, Role};
use super::{Error, Result, TroubleLog};
use rdkafka::client::ClientContext;
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The longest a poll sleeps before looking at the queues again, should a wake-up be
/// missed.
const POLL_SLICE: Duration = Duration::from_millis(100);

/// Records taken from partition queues between two looks at the consumer's own queue
/// (client errors), so a constant stream of records cannot hide trouble.
const RECORDS_PER_MAIN_POLL: u32 = 1024;

/// One input record, copied out of librdkafka's buffers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Its topic.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// Its key (the account for events [`super::produce_dataset`] publishes; none for a
    /// line that did not decode).
    pub key: Option<Vec<u8>>,
    /// Its payload bytes (one JSON event line, without a newline); empty for a record
    /// without a payload.
    pub payload: Vec<u8>,
    /// Its headers, in order (outputs carry `markledger-id`).
    pub headers: Vec<(String, Vec<u8>)>,
}

/// What [`PartitionConsumer::poll`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Polled {
    /// The next record of one partition.
    Record(Record),
    /// The partition is caught up: every record before `next_offset` has been polled.
    /// Reported again each time the partition catches up after new records.
    PartitionEof {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The offset the partition's next record will have.
        next_offset: i64,
    },
    /// Client trouble (broker down, connection lost). It has been printed to stderr (rate
    /// limited); the consumer keeps retrying by itself, so the caller just polls on.
    TransientError(String),
}

/// Where a [`PartitionConsumer`] starts each partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Start {
    /// At the group's committed offset, or the earliest retained one without a commit.
    Committed,
    /// At the earliest retained offset, whatever the group committed (rebuilding state by
    /// re-reading the input).
    Earliest,
    /// At these offsets, one per assigned partition in assignment order (a checkpoint's).
    /// Fails if one of them is no longer retained: records the state needs are gone.
    At(Vec<i64>),
}

/// Consumes an explicitly assigned set of topic partitions, committing offsets to the
/// settings' consumer group.
pub struct PartitionConsumer {
    // Declared (so dropped) before `consumer`: each queue holds a reference to it.
    queues: Vec<AssignedPartition>,
    consumer: Arc<BaseConsumer<SourceContext>>,
    wake: Arc<Wakeup>,
    /// The queue the next poll looks at first (round robin).
    next_queue: usize,
    records_since_main_poll: u32,
}

struct AssignedPartition {
    topic: String,
    partition: i32,
    queue: PartitionQueue<SourceContext>,
    /// The offset of the next record to poll.
    next_offset: i64,
}

impl std::fmt::Debug for PartitionConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let positions: Vec<_> = self
            .queues
            .iter()
            .map(|assigned| (&assigned.topic, assigned.partition, assigned.next_offset))
            .collect();
        f.debug_struct("PartitionConsumer")
            .field("positions", &positions)
            .finish()
    }
}

/// Reports client-level trouble through a rate-limited stderr line, and keeps the consumer
/// lag librdkafka's statistics give per partition.
struct SourceContext {
    trouble: TroubleLog,
    lags: Mutex<BTreeMap<(String, i32), i64>>,
}

impl ClientContext for SourceContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        super::config::log_to_tracing(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // librdkafka also announces a caught-up partition as a client-level error; it is
        // reported through the partition's queue as `Polled::PartitionEof`, not trouble.
        if matches!(error, KafkaError::PartitionEOF(_))
            || error.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF)
        {
            return;
        }
        super::health::client_error(&error, reason);
        self.trouble.report(&format!("{error}: {reason}"));
    }

    fn stats(&self, statistics: rdkafka::Statistics) {
        super::health::statistics(&statistics);
        let mut lags = self.lags.lock().unwrap_or_else(|p| p.into_inner());
        for (name, topic) in statistics.topics {
            for (partition, figures) in topic.partitions {
                // -1: librdkafka does not know yet (no fetch answered); the internal
                // partition -1 is not a real one.
                if partition >= 0 && figures.consumer_lag >= 0 {
                    lags.insert((name.clone(), partition), figures.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for SourceContext {}

/// Set by librdkafka's threads when a queue becomes non-empty; a poll waits on it.
#[derive(Default)]
struct Wakeup {
    ready: Mutex<bool>,
    signal: Condvar,
}

impl Wakeup {
    fn notify(&self) {
        *self.ready.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = true;
        self.signal.notify_all();
    }

    fn clear(&self) {
        *self.ready.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = false;
    }

    fn wait(&self, timeout: Duration) {
        let ready = self.ready.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let _ = self
            .signal
            .wait_timeout_while(ready, timeout, |ready| !*ready)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
    }
}

impl PartitionConsumer {
    /// A consumer of exactly `assignment` (each `(topic, partition)` at most once), each
    /// partition starting at the group's committed offset or, without one, at the
    /// partition's earliest offset. Fails when the broker cannot be reached within
    /// [`METADATA_TIMEOUT`] or a partition does not exist.
    pub fn new(settings: &KafkaSettings, assignment: &[(String, i32)]) -> Result<Self> {
        Self::starting(settings, assignment, Start::Committed)
    }

    /// A consumer of exactly `assignment`, each partition starting where `start` says.
    pub fn starting(settings: &KafkaSettings, assignment: &[(String, i32)], start: Start) -> Result<Self> {
        let mut unique = assignment.to_vec();
        unique.sort();
        unique.dedup();
        assert_eq!(
            unique.len(),
            assignment.len(),
            "a partition is assigned twice: {assignment:?}"
        );

        let context = SourceContext {
            trouble: TroubleLog::new("consumer"),
            lags: Mutex::default(),
        };
        let mut consumer: BaseConsumer<SourceContext> = client_config(settings, Role::Consumer)
            .create_with_context(context)
            .map_err(|error| Error::client("creating the Kafka consumer", error))?;

        let mut wanted = TopicPartitionList::with_capacity(assignment.len());
        for (topic, partition) in assignment {
            wanted.add_partition(topic, *partition);
        }
        let committed = consumer
            .committed_offsets(wanted, METADATA_TIMEOUT)
            .map_err(|error| Error::client("reading the group's committed offsets", error))?;
        let mut starts = Vec::with_capacity(assignment.len());
        let mut start_list = TopicPartitionList::with_capacity(assignment.len());
        for (index, (topic, partition)) in assignment.iter().enumerate() {
            if let Start::At(offsets) = &start {
                let offset = offsets[index];
                let (low, _high) = consumer
                    .fetch_watermarks(topic, *partition, METADATA_TIMEOUT)
                    .map_err(|error| Error::client(format!("reading the offsets of {topic}/{partition}"), error))?;
                if offset < low {
                    return Err(Error::NotRetained {
                        topic: topic.clone(),
                        partition: *partition,
                        offset,
                        low,
                    });
                }
                start_list
                    .add_partition_offset(topic, *partition, Offset::Offset(offset))
                    .map_err(|error| Error::client("building the assignment", error))?;
                starts.push(offset);
                continue;
            }
            let committed_offset =
                committed
                    .find_partition(topic, *partition)
                    .and_then(|element| match element.offset() {
                        Offset::Offset(offset) if offset >= 0 => Some(offset),
                        _ => None,
                    });
            let committed_offset = committed_offset.filter(|_| start == Start::Committed);
            let start = match committed_offset {
                Some(offset) => offset,
                None => {
                    let (low, _high) = consumer
                        .fetch_watermarks(topic, *partition, METADATA_TIMEOUT)
                        .map_err(|error| Error::client(format!("reading the offsets of {topic}/{partition}"), error))?;
                    low
                }
            };
            start_list
                .add_partition_offset(topic, *partition, Offset::Offset(start))
                .map_err(|error| Error::client("building the assignment", error))?;
            starts.push(start);
        }
        consumer
            .assign(&start_list)
            .map_err(|error| Error::client("assigning partitions", error))?;

        let wake = Arc::new(Wakeup::default());
        let notify = Arc::clone(&wake);
        consumer.set_nonempty_callback(move || notify.notify());
        let consumer = Arc::new(consumer);
        // Split every partition into its own queue before the first poll, so no record
        // goes to the shared queue (rdkafka's advice for split_partition_queue).
        let mut queues = Vec::with_capacity(assignment.len());
        for ((topic, partition), start) in assignment.iter().zip(starts) {
            let Some(mut queue) = consumer.split_partition_queue(topic, *partition) else {
                return Err(Error::UnknownTopic { topic: topic.clone() });
            };
            let notify = Arc::clone(&wake);
            queue.set_nonempty_callback(move || notify.notify());
            queues.push(AssignedPartition {
                topic: topic.clone(),
                partition: *partition,
                queue,
                next_offset: start,
            });
        }
        Ok(PartitionConsumer {
            queues,
            consumer,
            wake,
            next_queue: 0,
            records_since_main_poll: 0,
        })
    }

    /// The next record or partition EOF of any assigned partition, taking the partitions
    /// in turn; `None` when nothing arrived within `timeout`. Broker trouble is returned as
    /// [`Polled::TransientError`] (already printed); never panics on it.
    pub fn poll(&mut self, timeout: Duration) -> Option<Polled> {
        let deadline = Instant::now() + timeout;
        loop {
            self.wake.clear();
            if self.records_since_main_poll >= RECORDS_PER_MAIN_POLL {
                self.records_since_main_poll = 0;
                if let Some(polled) = self.poll_main() {
                    return Some(polled);
                }
            }
            if let Some(polled) = self.poll_partitions() {
                return Some(polled);
            }
            self.records_since_main_poll = 0;
            if let Some(polled) = self.poll_main() {
                return Some(polled);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            self.wake.wait((deadline - now).min(POLL_SLICE));
        }
    }

    /// One item from the partition queues, starting after the last one served.
    fn poll_partitions(&mut self) -> Option<Polled> {
        let count = self.queues.len();
        for step in 0..count {
            let index = (self.next_queue + step) % count;
            let assigned = &mut self.queues[index];
            let Some(result) = assigned.queue.poll(Duration::ZERO) else {
                continue;
            };
            let polled = match result {
                Ok(message) => {
                    let record = to_record(&message);
                    assigned.next_offset = record.offset + 1;
                    Polled::Record(record)
                }
                Err(KafkaError::PartitionEOF(_)) => Polled::PartitionEof {
                    topic: assigned.topic.clone(),
                    partition: assigned.partition,
                    next_offset: assigned.next_offset,
                },
                Err(error) => self.transient(error),
            };
            self.next_queue = (index + 1) % count;
            self.records_since_main_poll += 1;
            return Some(polled);
        }
        None
    }

    /// The consumer's own queue: client errors (every partition's records go to their
    /// own queues).
    fn poll_main(&mut self) -> Option<Polled> {
        let polled = match self.consumer.poll(Duration::ZERO)? {
            // Not expected (partitions are split off before the first poll), but a record
            // is a record.
            Ok(message) => {
                let record = to_record(&message);
                if let Some(assigned) = self
                    .queues
                    .iter_mut()
                    .find(|assigned| assigned.topic == record.topic && assigned.partition == record.partition)
                {
                    assigned.next_offset = record.offset + 1;
                }
                Polled::Record(record)
            }
            Err(KafkaError::PartitionEOF(partition)) => {
                let mut matching = self.queues.iter().filter(|assigned| assigned.partition == partition);
                match (matching.next(), matching.next()) {
                    (Some(assigned), None) => Polled::PartitionEof {
                        topic: assigned.topic.clone(),
                        partition,
                        next_offset: assigned.next_offset,
                    },
                    // Ambiguous between topics: the partition's own queue reports it too.
                    _ => return None,
                }
            }
            Err(error) => self.transient(error),
        };
        Some(polled)
    }

    fn transient(&self, error: KafkaError) -> Polled {
        let text = error.to_string();
        self.consumer.context().trouble.report(&text);
        Polled::TransientError(text)
    }

    /// Commits `offsets` — `(topic, partition, next_offset)`, the offset of the next record
    /// to read — to the group, synchronously: when this returns `Ok`, a new consumer of the
    /// group starts there.
    pub fn commit<S: AsRef<str>>(&self, offsets: &[(S, i32, i64)]) -> Result<()> {
        let mut list = TopicPartitionList::with_capacity(offsets.len());
        for (topic, partition, next_offset) in offsets {
            list.add_partition_offset(topic.as_ref(), *partition, Offset::Offset(*next_offset))
                .map_err(|error| Error::client("building the offsets to commit", error))?;
        }
        self.consumer
            .commit(&list, CommitMode::Sync)
            .map_err(|error| Error::client("committing offsets", error))
    }

    /// Commits every assigned partition's position ([`PartitionConsumer::positions`]).
    pub fn commit_positions(&self) -> Result<()> {
        self.commit(&self.positions())
    }

    /// The group's committed offset of every assigned partition (`None`: nothing
    /// committed), read from the broker.
    pub fn committed(&self) -> Result<Vec<(String, i32, Option<i64>)>> {
        let mut list = TopicPartitionList::with_capacity(self.queues.len());
        for assigned in &self.queues {
            list.add_partition(&assigned.topic, assigned.partition);
        }
        let committed = self
            .consumer
            .committed_offsets(list, METADATA_TIMEOUT)
            .map_err(|error| Error::client("reading the group's committed offsets", error))?;
        Ok(self
            .queues
            .iter()
            .map(|assigned| {
                let offset = committed
                    .find_partition(&assigned.topic, assigned.partition)
                    .and_then(|element| match element.offset() {
                        Offset::Offset(offset) if offset >= 0 => Some(offset),
                        _ => None,
                    });
                (assigned.topic.clone(), assigned.partition, offset)
            })
            .collect())
    }

    /// Every assigned partition with the offset of its next record to poll, in assignment
    /// order.
    pub fn positions(&self) -> Vec<(String, i32, i64)> {
        self.queues
            .iter()
            .map(|assigned| (assigned.topic.clone(), assigned.partition, assigned.next_offset))
            .collect()
    }

    /// The assigned partitions, in assignment order.
    pub fn assignment(&self) -> Vec<(String, i32)> {
        self.queues
            .iter()
            .map(|assigned| (assigned.topic.clone(), assigned.partition))
            .collect()
    }

    /// The consumer lag (records behind the partition's end) of an assigned partition, from
    /// librdkafka's last statistics (`statistics.interval.ms`); None before the first.
    pub fn lag(&self, topic: &str, partition: i32) -> Option<i64> {
        let lags = self.consumer.context().lags.lock().unwrap_or_else(|p| p.into_inner());
        lags.get(&(topic.to_string(), partition)).copied()
    }

    /// Client trouble reports so far (printed or suppressed).
    pub fn trouble_count(&self) -> u64 {
        self.consumer.context().trouble.total()
    }
}

fn to_record(message: &BorrowedMessage<'_>) -> Record {
    Record {
        topic: message.topic().to_string(),
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().map(<[u8]>::to_vec),
        payload: message.payload().unwrap_or_default().to_vec(),
        headers: message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|header| (header.key.to_string(), header.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default(),
    }
}
