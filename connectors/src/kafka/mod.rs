//! Kafka connectors: input partitions in from topics, the five outputs out to topics.
//!
//! In: the input topic (`codes.events`, INTERFACE.md), one Kafka partition = one input
//! partition exactly as one file is in a file run (DOMAIN.md §4). The pipeline places
//! partition `p` on worker `p mod workers`, so a [`PartitionConsumer`] is *assigned* an
//! explicit list of partitions (no group rebalancing) and starts from the group's committed
//! offset, or the earliest one. It yields each record's bytes in partition order, plus a
//! [`Polled::PartitionEof`] when a partition is caught up, which is how the source knows its
//! watermark may advance. Out: an engine's [`Output`]s → [`OutputProducer`], an idempotent
//! producer, to the topic and key of [`output_route`]; a failed delivery surfaces as an
//! error from [`OutputProducer::flush`], never silently.
//!
//! Exactly-once comes from offsets plus deterministic outputs, not from Kafka transactions:
//! the stream mode commits input offsets only after the outputs they caused are flushed,
//! and a replay re-emits the same records to the same keys (TOOLCHAIN.md: tansu, the broker
//! the tests run against, has no transactions).
//!
//! - [`config`]: the settings, [`KafkaSettings`], and [`client_config`], the one place every librdkafka
//!   option is set (STYLE.md).
//! - [`admin`]: topics, [`ensure_topics`] (topics are never auto-created) and [`partition_count`].
//! - [`source`]: the consumer, [`PartitionConsumer`].
//! - [`partition`]: the stream's input, [`KafkaInput`]: a worker's partitions as the
//!   pipeline's sources read them, their offset commits (after the producer's flush) and
//!   the [`CheckpointHook`] through which checkpoints ask where they resume.
//! - [`offsets`]: the offset tracking behind it, [`WorkerOffsets`] (which records are
//!   placed, which are done; the [`crate::offsets::OffsetTracker`] of a worker).
//! - [`metrics`]: the input's figures for the metrics endpoint, [`InputMetrics`].
//! - [`health`]: whether the process reaches the cluster: one log event when the brokers
//!   become unreachable and one when they are back, and their figures for the metrics.
//! - [`progress`]: the progress topic, [`ProgressTopic`]: the output frontier each commit
//!   covered, which a restart does not produce again.
//! - [`sink`]: the producer, [`OutputProducer`], and [`output_route`]; the stream's sink,
//!   [`KafkaSink`] (deterministic ids, suppression before the resume frontier), through
//!   one [`SharedProducer`].
//! - [`publish`]: datasets, [`produce_dataset`], a generated dataset directory onto a topic,
//!   partition file `i` → topic partition `i`.
//!
//! [`Output`]: markledger_operators::Output

pub mod admin;
pub mod config;
pub mod health;
pub mod metrics;
pub mod offsets;
pub mod partition;
pub mod progress;
pub mod publish;
pub mod sink;
pub mod source;

pub use admin::{check_connection, ensure_topics, partition_count, TopicSpec};
pub use config::{
    client_config, is_secret, KafkaSettings, OutputTopics, Properties, Role, ENVIRONMENT_PREFIX, REDACTED,
};
pub use metrics::{InputMetrics, PartitionSnapshot};
pub use offsets::{PartitionOffsets, WorkerOffsets};
pub use partition::{CheckpointHook, InputSettings, KafkaInput, ResumeAt};
pub use progress::{checkpoint_key, ProgressTopic};
pub use publish::{produce_dataset, ProduceReport};
pub use sink::{output_route, KafkaSink, OutputFigures, OutputProducer, SharedProducer, ID_HEADER};
pub use source::{PartitionConsumer, Polled, Record, Start};

use crate::file::SourceError;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Why a Kafka operation failed. Transient broker trouble inside a poll loop is not an
/// error (the clients reconnect and retry on their own); these are what a caller must act
/// on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// librdkafka refused or failed an operation.
    #[error("{context}: {cause}")]
    Client {
        /// What was being done.
        context: String,
        /// librdkafka's error, printed in this error's text; not also its `source()`, so a
        /// report that prints the chain (`{:#}`) names it once.
        cause: rdkafka::error::KafkaError,
    },
    /// A checkpoint resumes a partition at an offset the broker no longer retains.
    #[error("{topic}/{partition}: the checkpoint resumes at offset {offset}, but the broker retains only from {low}")]
    NotRetained {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// Where the checkpoint resumes.
        offset: i64,
        /// The earliest retained offset.
        low: i64,
    },
    /// The cluster could not be reached or refused the client's credentials.
    #[error("cannot connect to the Kafka cluster at {brokers}: {cause} (check --brokers and the security.protocol, sasl.* and ssl.* settings)")]
    Connection {
        /// The bootstrap brokers.
        brokers: String,
        /// What librdkafka reported.
        cause: String,
    },
    /// The topic does not exist (tansu never creates topics on its own).
    #[error("topic {topic} does not exist")]
    UnknownTopic {
        /// The topic.
        topic: String,
    },
    /// The broker refused to create a topic.
    #[error("creating topic {topic}: {reason}")]
    CreateTopic {
        /// The topic.
        topic: String,
        /// The broker's answer.
        reason: String,
    },
    /// A topic exists with fewer partitions than the data needs.
    #[error("topic {topic} has {partitions} partitions, {needed} needed")]
    TooFewPartitions {
        /// The topic.
        topic: String,
        /// Its partitions.
        partitions: i32,
        /// The partitions needed.
        needed: usize,
    },
    /// Messages were not acknowledged within the flush timeout; they are still queued.
    #[error("{pending} message(s) still unacknowledged after {timeout:?}")]
    FlushTimeout {
        /// Messages and delivery reports still outstanding.
        pending: i32,
        /// The timeout that passed.
        timeout: Duration,
    },
    /// Messages failed delivery for good: the output stream has a gap.
    #[error("{failures} message(s) failed delivery; first failure: {first}")]
    Delivery {
        /// Failed messages since the producer was created.
        failures: u64,
        /// The first failure's description.
        first: String,
    },
    /// A step of the stream's offset commits or checkpoints failed (`what` names the step,
    /// as a context line: `source` is why).
    #[error("{what}")]
    During {
        /// What was being done.
        what: &'static str,
        /// Why it failed.
        #[source]
        source: Box<Error>,
    },
    /// A topic was not read to its end in time (the progress topic, at start).
    #[error("the progress topic {topic} did not reach its end within {} s", .waited.as_secs())]
    NotCaughtUp {
        /// The topic.
        topic: String,
        /// How long it was read.
        waited: Duration,
    },
    /// A dataset could not be read.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A dataset file could not be read.
    #[error("reading {path}: {cause}")]
    Io {
        /// The file.
        path: String,
        /// The cause, printed in this error's text (not also its `source()`).
        cause: std::io::Error,
    },
    /// A dataset directory holds no partition files.
    #[error("no partition files in {path}")]
    NoPartitions {
        /// The path given.
        path: String,
    },
}

/// The result of a Kafka operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    fn client(context: impl Into<String>, cause: rdkafka::error::KafkaError) -> Self {
        Error::Client {
            context: context.into(),
            cause,
        }
    }

    /// `source`, in the context of `what` was being done ([`Error::During`]).
    pub fn during(what: &'static str, source: Error) -> Self {
        Error::During {
            what,
            source: Box::new(source),
        }
    }
}

/// `error` and its causes, joined by `": "` (how the binary prints an error chain).
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(error) = cause {
        text.push_str(": ");
        text.push_str(&error.to_string());
        cause = error.source();
    }
    text
}

/// The shortest interval between two stderr lines about librdkafka trouble from one
/// client: a broker outage makes librdkafka report every failed reconnect.
const TROUBLE_LOG_INTERVAL: Duration = Duration::from_secs(5);

/// Prints client trouble (connection refused, broker down) to stderr at most once per
/// [`TROUBLE_LOG_INTERVAL`], counting what it suppressed; the clients themselves keep
/// retrying.
#[derive(Debug)]
pub(crate) struct TroubleLog {
    name: &'static str,
    state: Mutex<TroubleState>,
}

#[derive(Debug, Default)]
struct TroubleState {
    last_printed: Option<Instant>,
    suppressed: u64,
    total: u64,
}

impl TroubleLog {
    pub(crate) fn new(name: &'static str) -> Self {
        TroubleLog {
            name,
            state: Mutex::new(TroubleState::default()),
        }
    }

    pub(crate) fn report(&self, message: &str) {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.total += 1;
        let due = state
            .last_printed
            .is_none_or(|printed| printed.elapsed() >= TROUBLE_LOG_INTERVAL);
        if due {
            if state.suppressed > 0 {
                markledger_operators::note!(
                    "markledger kafka {}: {message} (and {} similar since the last report)",
                    self.name,
                    state.suppressed
                );
            } else {
                markledger_operators::note!("markledger kafka {}: {message}", self.name);
            }
            state.last_printed = Some(Instant::now());
            state.suppressed = 0;
        } else {
            state.suppressed += 1;
        }
    }

    /// Trouble reports so far.
    pub(crate) fn total(&self) -> u64 {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).total
    }
}

#[cfg(test)]
mod tests;
