//! The output side: engine outputs in, keyed Kafka records out.
//!
//! In: [`Output`]s, routed by [`output_route`] to their topic and INTERFACE.md key
//! (status, ledger, balances by account; rejections by event id; period aggregates by
//! `kind/account/period[/sub]`), payload [`render_output`]. Out: records sent by an
//! [`OutputProducer`], an idempotent producer (`acks=all`, no delivery timeout) whose
//! [`OutputProducer::send`] never drops a record when its bounded queue is full (it serves
//! delivery reports and retries), and whose [`OutputProducer::flush`] returns `Ok` only once
//! every record sent so far is acknowledged. A record that fails delivery for good is
//! counted, and from then on every flush returns [`Error::Delivery`]: the output stream has
//! a gap, so the caller must not commit the input offsets behind it.
//!
//! Keys are what Kafka's murmur2 partitioner hashes, so one account's records of an output
//! stay in order on one partition, and a replay sends each record to where it went before.
//!
//! The stream's sink, [`KafkaSink`] (one per worker, all sending through one
//! [`SharedProducer`]), gives every record a deterministic id: the xxh3-128 of the topic and
//! the record without it (`content_hash`), and the record's copy number among identical
//! records of one instant. The id travels as the record's last field (`"id"`) and as an
//! [`ID_HEADER`] header; a consumer drops a record whose id it has seen. Outputs before the
//! resume frontier (what an earlier run produced and the broker acknowledged) are counted
//! and not produced again.

use super::config::{client_config, KafkaSettings, Role};
use super::{Error, Result, TroubleLog};
use crate::codec::json::{output_file, render_output};
use markledger_operators::flow::Time;
use markledger_operators::output::{Deletion, Output};
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// The header carrying an output record's deterministic id.
pub const ID_HEADER: &str = "markledger-id";

/// How long the stream waits for the broker to acknowledge what it sent before it commits
/// offsets, records progress or hands a checkpoint to its writer.
pub const ACKNOWLEDGE_WAIT_MAX: Duration = Duration::from_secs(30);

/// How long a full send queue is served before `send` tries again.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(50);

/// Sends between two non-blocking polls that serve delivery reports.
const SENDS_PER_POLL: u32 = 1000;

/// The topic and key of an output record (INTERFACE.md "Outputs"): status, ledger and
/// balances keyed by account; rejections by event id (an empty key for a malformed input
/// without a readable id: deterministic, so a replay sends it to the same partition);
/// period aggregates by [`PeriodKey::render`], `kind/account/period[/sub]`.
///
/// [`PeriodKey::render`]: markledger_operators::output::PeriodKey::render
pub fn output_route<'a>(output: &Output, settings: &'a KafkaSettings) -> (&'a str, String) {
    let topic = settings.output_topics.topic(output_file(output));
    let key = match output {
        Output::Status(status) => status.account.clone(),
        Output::Ledger(entry) => entry.account.clone(),
        Output::Balance(balance) => balance.account.clone(),
        Output::Rejection(rejection) => rejection.event.clone().unwrap_or_default(),
        Output::Period(period) => period.key.render(),
        Output::Deleted(Deletion::Balance { account, .. }) => account.clone(),
        Output::Deleted(Deletion::Period { key, .. }) => key.render(),
        Output::Export(line) => line.account.clone(),
    };
    (topic, key)
}

/// Counts failed deliveries and keeps the first failure's description.
struct SinkContext {
    failures: AtomicU64,
    first_failure: Mutex<Option<String>>,
    trouble: TroubleLog,
}

impl ClientContext for SinkContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        super::config::log_to_tracing(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        super::health::client_error(&error, reason);
        self.trouble.report(&format!("{error}: {reason}"));
    }
}

impl ProducerContext for SinkContext {
    type DeliveryOpaque = ();

    fn delivery(&self, delivery_result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, message)) = delivery_result {
            use rdkafka::message::Message;
            self.failures.fetch_add(1, Ordering::Relaxed);
            let description = format!("{error} (topic {}, partition {})", message.topic(), message.partition());
            self.trouble.report(&format!("delivery failed: {description}"));
            let mut first = self
                .first_failure
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            first.get_or_insert(description);
        }
    }
}

/// An idempotent producer of output records. See the module documentation for its
/// guarantees.
pub struct OutputProducer {
    producer: BaseProducer<SinkContext>,
    sends_since_poll: u32,
}

impl std::fmt::Debug for OutputProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputProducer")
            .field("in_flight", &self.producer.in_flight_count())
            .field("delivery_failures", &self.delivery_failures())
            .finish()
    }
}

impl OutputProducer {
    /// A producer with [`client_config`]'s producer settings.
    pub fn new(settings: &KafkaSettings) -> Result<Self> {
        let context = SinkContext {
            failures: AtomicU64::new(0),
            first_failure: Mutex::new(None),
            trouble: TroubleLog::new("producer"),
        };
        let producer = client_config(settings, Role::Producer)
            .create_with_context(context)
            .map_err(|error| Error::client("creating the Kafka producer", error))?;
        Ok(OutputProducer {
            producer,
            sends_since_poll: 0,
        })
    }

    /// Queues one record for `topic`, partitioned by murmur2 of `key`. When the send queue
    /// is full, serves delivery reports and retries until there is room: a record is never
    /// dropped. Fails only on a record librdkafka can never send (too large, an invalid
    /// topic name).
    pub fn send(&mut self, topic: &str, key: &[u8], payload: &[u8], headers: &[(&str, &[u8])]) -> Result<()> {
        self.send_record(topic, None, Some(key), payload, headers)
    }

    /// Routes and sends an output ([`output_route`], payload [`render_output`]; a deletion
    /// is a tombstone).
    pub fn send_output(&mut self, output: &Output, settings: &KafkaSettings) -> Result<()> {
        let (topic, key) = output_route(output, settings);
        if matches!(output, Output::Deleted(_)) {
            return self.send_tombstone(topic, key.as_bytes(), &[]);
        }
        let payload = render_output(output);
        self.send(topic, key.as_bytes(), payload.as_bytes(), &[])
    }

    /// [`OutputProducer::send`] with an explicit partition (`None`: by key) and an optional
    /// key.
    pub fn send_record(
        &mut self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: &[(&str, &[u8])],
    ) -> Result<()> {
        self.send_value(topic, partition, key, Some(payload), headers)
    }

    /// A tombstone: `key` with a null value, which a compacted topic's compaction uses to
    /// remove the key (DOMAIN.md §9's deletions).
    pub fn send_tombstone(&mut self, topic: &str, key: &[u8], headers: &[(&str, &[u8])]) -> Result<()> {
        self.send_value(topic, None, Some(key), None, headers)
    }

    fn send_value(
        &mut self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        headers: &[(&str, &[u8])],
    ) -> Result<()> {
        loop {
            let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic);
            if let Some(payload) = payload {
                record = record.payload(payload);
            }
            if let Some(key) = key {
                record = record.key(key);
            }
            if let Some(partition) = partition {
                record = record.partition(partition);
            }
            if !headers.is_empty() {
                let mut owned = OwnedHeaders::new_with_capacity(headers.len());
                for (name, value) in headers {
                    owned = owned.insert(Header {
                        key: name,
                        value: Some(*value),
                    });
                }
                record = record.headers(owned);
            }
            match self.producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    // Room appears as acknowledgements arrive; serving the delivery reports
                    // is what frees it.
                    self.producer.poll(QUEUE_FULL_WAIT);
                }
                Err((error, _)) => {
                    return Err(Error::client(format!("sending a record to {topic}"), error));
                }
            }
        }
        self.sends_since_poll += 1;
        if self.sends_since_poll >= SENDS_PER_POLL {
            self.sends_since_poll = 0;
            self.producer.poll(Duration::ZERO);
        }
        Ok(())
    }

    /// Waits until every record sent so far is acknowledged by the broker, at most
    /// `timeout`. `Ok` means all of them are durable. [`Error::FlushTimeout`] means some
    /// are still queued (they stay queued and are retried; flush again), and
    /// [`Error::Delivery`] that at least one record since this producer was created failed
    /// for good.
    pub fn flush(&mut self, timeout: Duration) -> Result<()> {
        let flushed = self.producer.flush(timeout);
        // Serve whatever delivery reports remain, so the failure count is current.
        self.producer.poll(Duration::ZERO);
        self.check_failures()?;
        match flushed {
            Ok(()) => Ok(()),
            Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut)) => Err(Error::FlushTimeout {
                pending: self.producer.in_flight_count(),
                timeout,
            }),
            Err(error) => Err(Error::client("flushing the producer", error)),
        }
    }

    fn check_failures(&self) -> Result<()> {
        let context = self.producer.context();
        let failures = context.failures.load(Ordering::Relaxed);
        if failures == 0 {
            return Ok(());
        }
        let first = context
            .first_failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
            .unwrap_or_default();
        Err(Error::Delivery { failures, first })
    }

    /// Records that failed delivery for good since this producer was created.
    pub fn delivery_failures(&self) -> u64 {
        self.producer.context().failures.load(Ordering::Relaxed)
    }

    /// Records and delivery reports still outstanding.
    pub fn in_flight(&self) -> i32 {
        self.producer.in_flight_count()
    }
}

/// The stream's one producer, shared by every worker's [`KafkaSink`] and offset committer,
/// with the output settings and the counts of the run's summary.
#[derive(Debug)]
pub struct SharedProducer {
    settings: KafkaSettings,
    producer: Mutex<OutputProducer>,
    produced: AtomicU64,
    suppressed: AtomicU64,
    figures: Mutex<OutputFigures>,
}

/// What a stream produced, by topic and (rejections) by reason: the metrics endpoint's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutputFigures {
    /// Records produced per output topic.
    pub by_topic: BTreeMap<String, u64>,
    /// Rejections produced per reason code.
    pub rejections: BTreeMap<&'static str, u64>,
}

impl SharedProducer {
    /// A producer for `settings`' output topics.
    pub fn new(settings: &KafkaSettings) -> Result<Self> {
        Ok(SharedProducer {
            settings: settings.clone(),
            producer: Mutex::new(OutputProducer::new(settings)?),
            produced: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
            figures: Mutex::default(),
        })
    }

    /// The producer, for a sequence of sends and flushes no other worker interleaves with.
    pub fn lock(&self) -> MutexGuard<'_, OutputProducer> {
        self.producer.lock().expect("producer lock")
    }

    /// Waits (at most [`ACKNOWLEDGE_WAIT_MAX`]) until the broker has acknowledged every
    /// output sent so far; on failure the error says it was `waiting for` this.
    pub fn acknowledge(&self, waiting_for: &'static str) -> Result<()> {
        self.lock()
            .flush(ACKNOWLEDGE_WAIT_MAX)
            .map_err(|error| Error::during(waiting_for, error))
    }

    /// Outputs produced by this run.
    pub fn produced(&self) -> u64 {
        self.produced.load(Ordering::Relaxed)
    }

    /// Outputs not produced again (an earlier run had).
    pub fn suppressed(&self) -> u64 {
        self.suppressed.load(Ordering::Relaxed)
    }

    /// Outputs produced so far by topic and rejections by reason.
    pub fn figures(&self) -> OutputFigures {
        self.figures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// One worker's outputs to Kafka, each with a deterministic id (see the module docs).
#[derive(Debug)]
pub struct KafkaSink {
    producer: Arc<SharedProducer>,
    /// Outputs before this were produced and acknowledged by an earlier run.
    resume: Time,
    /// Copies of identical records at one time, so each copy has its own id.
    copies: HashMap<(Time, u128), u32>,
}

/// The dataflow's sink of a stream run (the one sink interface of both engines).
impl markledger_operators::output::Sink for KafkaSink {
    type Done = ();

    fn emit(&mut self, time: Time, outputs: &mut Vec<Output>) {
        KafkaSink::emit(self, time, outputs);
    }

    fn frontier(&mut self, frontier: &[Time]) {
        KafkaSink::frontier(self, frontier);
    }

    fn finish(self) {}
}

impl KafkaSink {
    /// A sink sending through `producer` that does not produce again outputs before
    /// `resume`.
    pub fn new(producer: Arc<SharedProducer>, resume: Time) -> Self {
        KafkaSink {
            producer,
            resume,
            copies: HashMap::new(),
        }
    }

    /// Sends (drains) `outputs`, made at `time`.
    pub fn emit(&mut self, time: Time, outputs: &mut Vec<Output>) {
        if time < self.resume {
            self.producer
                .suppressed
                .fetch_add(outputs.len() as u64, Ordering::Relaxed);
            outputs.clear();
            return;
        }
        self.producer
            .produced
            .fetch_add(outputs.len() as u64, Ordering::Relaxed);
        // Rendered before the producer is locked: the other workers' sinks send meanwhile.
        let settings = &self.producer.settings;
        let mut reasons = Vec::new();
        let records: Vec<(&str, String, Option<String>, String)> = outputs
            .drain(..)
            .map(|output| {
                if let Output::Rejection(rejection) = &output {
                    reasons.push(rejection.reason.as_str());
                }
                let (topic, key) = output_route(&output, settings);
                let payload = render_output(&output);
                let hash = content_hash(topic, &payload);
                let copy = self.copies.entry((time, hash)).or_default();
                let id = format!("{hash:032x}-{copy}");
                *copy += 1;
                // A deletion is a tombstone (a null value; DOMAIN.md §9): its id is in the
                // header only. Otherwise the id travels in the record too: not every broker
                // keeps headers (tansu's storage does not).
                let value = (!matches!(output, Output::Deleted(_))).then(|| with_id(&payload, &id));
                (topic, key, value, id)
            })
            .collect();
        {
            let mut figures = self
                .producer
                .figures
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for (topic, ..) in &records {
                *figures.by_topic.entry(topic.to_string()).or_default() += 1;
            }
            for reason in reasons {
                *figures.rejections.entry(reason).or_default() += 1;
            }
        }
        let mut producer = self.producer.lock();
        for (topic, key, payload, id) in records {
            let headers: &[(&str, &[u8])] = &[(ID_HEADER, id.as_bytes())];
            let sent = match &payload {
                Some(payload) => producer.send(topic, key.as_bytes(), payload.as_bytes(), headers),
                None => producer.send_tombstone(topic, key.as_bytes(), headers),
            };
            if let Err(error) = sent {
                // The producer retries forever; an error here is a record it refused
                // outright (too large): nothing commits past it (its flush fails).
                markledger_operators::note!("markledger stream: output refused by the producer: {error:#}");
            }
        }
    }

    /// Outputs at times before `frontier` are all emitted: their copy counts are done.
    pub fn frontier(&mut self, frontier: &[Time]) {
        let low = frontier.iter().min().copied().unwrap_or(Time::MAX);
        self.copies.retain(|(time, _), _| *time >= low);
    }
}

/// The xxh3-128 of `topic`, a newline and `payload`, hashed in place (no joined copy).
pub(crate) fn content_hash(topic: &str, payload: &str) -> u128 {
    let mut hasher = xxhash_rust::xxh3::Xxh3Default::new();
    hasher.update(topic.as_bytes());
    hasher.update(b"\n");
    hasher.update(payload.as_bytes());
    hasher.digest128()
}

/// A rendered output object with an `"id"` field added last.
pub(crate) fn with_id(payload: &str, id: &str) -> String {
    let body = payload.strip_suffix('}').expect("an output renders as a JSON object");
    format!("{body},\"id\":\"{id}\"}}")
}
