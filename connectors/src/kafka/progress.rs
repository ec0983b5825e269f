//! The progress topic: per consumer group, the output frontier its last offset commit
//! covered (docs/ARCHITECTURE.md, "Stream mode", "Restarts").
//!
//! In: after each commit, the frontier it covered. Out: a record on a compacted topic of one
//! partition (key: the group, value: the frontier as decimal text), sent only when the
//! frontier is beyond what was recorded, by this run or an earlier one: the recorded
//! frontier never goes back. A starting run reads the group's last record
//! ([`ProgressTopic::read`]); its sinks do not produce again what lies before it.
//!
//! Commit metadata would be the natural home of the frontier, but tansu drops it.

use super::admin::{ensure_topics, TopicSpec};
use super::config::KafkaSettings;
use super::sink::OutputProducer;
use super::source::{PartitionConsumer, Polled, Start};
use super::{Error, Result};
use markledger_operators::flow::Time;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long reading the progress topic to its end may take.
pub const READ_WAIT_MAX: Duration = Duration::from_secs(30);

/// One poll of the progress topic while reading it.
const POLL_WAIT: Duration = Duration::from_millis(200);

/// A group's progress record: what it has recorded, and the commits it counted.
pub struct ProgressTopic {
    topic: String,
    group: String,
    /// The frontier recorded (0: none), by this run or an earlier one.
    recorded: AtomicU64,
    /// Offset commits of this run.
    commits: AtomicU64,
    /// On a cluster, where each commit's frontier goes instead of the topic (to process 0,
    /// which records the lowest of every process's: [`ProgressTopic::publish`]).
    relay: std::sync::OnceLock<Box<dyn Fn(Time) + Send + Sync>>,
    /// The cluster's frontier as published by process 0.
    published: AtomicU64,
}

impl std::fmt::Debug for ProgressTopic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProgressTopic")
            .field("topic", &self.topic)
            .field("group", &self.group)
            .field("recorded", &self.recorded)
            .finish_non_exhaustive()
    }
}

/// How the value of a cluster's checkpoint record starts (then the time as decimal text):
/// never read as a frontier by a reader that ignores keys.
pub const CHECKPOINT_VALUE: &str = "checkpoint ";

/// The key of a cluster's last complete checkpoint on the progress topic (its value:
/// [`CHECKPOINT_VALUE`] and the checkpoint's time), next to the group's frontier.
pub fn checkpoint_key(group: &str) -> String {
    format!("{group}/checkpoint")
}

impl ProgressTopic {
    /// Creates the progress topic when it is missing and reads the frontier the group's
    /// last commit covered (0: none).
    pub fn read(settings: &KafkaSettings, topic: &str) -> Result<Time> {
        Ok(ProgressTopic::read_with_checkpoint(settings, topic)?.0)
    }

    /// [`ProgressTopic::read`], and the time of the group's last complete cluster
    /// checkpoint (None: none recorded; [`checkpoint_key`]).
    pub fn read_with_checkpoint(settings: &KafkaSettings, topic: &str) -> Result<(Time, Option<Time>)> {
        let checkpoint_key = checkpoint_key(&settings.group_id);
        let mut checkpoint = None;
        ensure_topics(settings, &[TopicSpec::compacted(topic.to_string(), 1)])
            .map_err(|error| Error::during("creating the progress topic", error))?;
        let mut consumer = PartitionConsumer::starting(settings, &[(topic.to_string(), 0)], Start::Earliest)
            .map_err(|error| Error::during("reading the progress topic", error))?;
        let mut frontier = 0;
        let deadline = Instant::now() + READ_WAIT_MAX;
        while Instant::now() < deadline {
            match consumer.poll(POLL_WAIT) {
                Some(Polled::Record(record)) if record.key.as_deref() == Some(settings.group_id.as_bytes()) => {
                    frontier = std::str::from_utf8(&record.payload)
                        .ok()
                        .and_then(|text| text.parse().ok())
                        .unwrap_or(frontier);
                }
                Some(Polled::Record(record)) if record.key.as_deref() == Some(checkpoint_key.as_bytes()) => {
                    checkpoint = std::str::from_utf8(&record.payload)
                        .ok()
                        .and_then(|text| text.strip_prefix(CHECKPOINT_VALUE))
                        .and_then(|text| text.parse().ok())
                        .or(checkpoint);
                }
                Some(Polled::PartitionEof { .. }) => return Ok((frontier, checkpoint)),
                _ => {}
            }
        }
        Err(Error::NotCaughtUp {
            topic: topic.to_string(),
            waited: READ_WAIT_MAX,
        })
    }

    /// The group's progress on `topic`, where a restart may already skip outputs before
    /// `recorded` (the larger of the topic's frontier and a restored checkpoint's time).
    pub fn new(settings: &KafkaSettings, topic: &str, recorded: Time) -> Self {
        ProgressTopic {
            topic: topic.to_string(),
            group: settings.group_id.clone(),
            recorded: AtomicU64::new(recorded),
            commits: AtomicU64::new(0),
            relay: std::sync::OnceLock::new(),
            published: AtomicU64::new(0),
        }
    }

    /// On a cluster: each commit's frontier goes to `relay` instead of the topic (set once,
    /// before the run).
    pub fn relay_to(&self, relay: impl Fn(Time) + Send + Sync + 'static) {
        let _ = self.relay.set(Box::new(relay));
    }

    /// Records `frontier` when beyond what this run published so far (flushed by the
    /// producer's next flush): on a cluster, process 0 with the lowest frontier every
    /// process's commits cover; at the start, the frontier of a restored checkpoint.
    pub fn publish(&self, producer: &super::sink::SharedProducer, frontier: Time) -> Result<()> {
        if self.published.fetch_max(frontier, Ordering::SeqCst) >= frontier {
            return Ok(());
        }
        producer
            .lock()
            .send(&self.topic, self.group.as_bytes(), frontier.to_string().as_bytes(), &[])
            .map_err(|error| Error::during("recording the committed frontier", error))
    }

    /// Process 0 of a cluster: records that the checkpoint at `time` is complete (every
    /// process wrote its part, and the manifest is written), and waits for the broker.
    pub fn publish_checkpoint(&self, producer: &super::sink::SharedProducer, time: Time) -> Result<()> {
        let mut producer = producer.lock();
        producer
            .send(
                &self.topic,
                checkpoint_key(&self.group).as_bytes(),
                format!("{CHECKPOINT_VALUE}{time}").as_bytes(),
                &[],
            )
            .map_err(|error| Error::during("recording the cluster's checkpoint", error))?;
        producer
            .flush(Duration::from_secs(30))
            .map_err(|error| Error::during("recording the cluster's checkpoint", error))
    }

    /// A commit covered every output before `frontier`: sends it to the topic when it is
    /// beyond the frontier recorded (the sender flushes before a restart relies on it).
    pub(crate) fn record(&self, producer: &mut OutputProducer, frontier: Time) -> Result<()> {
        // The recorded frontier never goes back: outputs before an earlier record were
        // acknowledged too (by this run or an earlier one), and a restart that caught up
        // with less than that would otherwise produce them again for nothing.
        let recorded = self.recorded.fetch_max(frontier, Ordering::SeqCst);
        if frontier <= recorded {
            return Ok(());
        }
        if let Some(relay) = self.relay.get() {
            relay(frontier);
            return Ok(());
        }
        producer
            .send(&self.topic, self.group.as_bytes(), frontier.to_string().as_bytes(), &[])
            .map_err(|error| Error::during("recording the committed frontier", error))
    }

    /// One offset commit completed (offsets committed, frontier recorded and flushed).
    pub(crate) fn count_commit(&self) {
        self.commits.fetch_add(1, Ordering::Relaxed);
    }

    /// The frontier recorded (0: none yet, by this run or an earlier one of the group).
    pub fn frontier(&self) -> Time {
        self.recorded.load(Ordering::Relaxed)
    }

    /// Offset commits of this run.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }
}
