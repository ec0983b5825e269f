//! Topic administration: the topics the pipeline needs, created before anything produces.
//!
//! In: [`TopicSpec`]s (name, partitions, compacted or not). Out: the topics exist on the
//! cluster. Brokers may not create topics on their own (tansu never does, and
//! `allow.auto.create.topics` is off in [`super::client_config`]), so the stream mode and
//! [`super::produce_dataset`] call [`ensure_topics`] first; a topic that already exists is
//! success and is left as it is. [`partition_count`] reads a topic's partitions from the
//! cluster's metadata.

use super::config::{client_config, KafkaSettings, Role};
use super::{Error, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::Duration;

/// How long an admin request (create topics) may take before it fails.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a metadata request may take before it fails.
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`check_connection`] waits for the cluster's metadata: long enough for a TLS
/// handshake and a SCRAM exchange over a slow link, short enough that a refused credential
/// ends the run promptly.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(15);

/// An admin (and connection check) client's context: remembers the first error librdkafka
/// reports on its own (an authentication failure, a TLS handshake failure, all brokers
/// down), which a metadata request that merely timed out would not name.
#[derive(Default)]
pub struct AdminContext {
    first_error: Mutex<Option<String>>,
}

impl AdminContext {
    fn first_error(&self) -> Option<String> {
        self.first_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

impl ClientContext for AdminContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        super::config::log_to_tracing(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        super::health::client_error(&error, reason);
        let mut first = self.first_error.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        first.get_or_insert_with(|| format!("{error}: {reason}"));
    }
}

impl ProducerContext for AdminContext {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &DeliveryResult<'_>, _: ()) {}
}

/// Connects to the cluster and reads its metadata: the first thing `stream` and
/// `produce` do, so a wrong password, an untrusted certificate or an unreachable broker
/// is one clear error within [`CONNECTION_TIMEOUT`], naming what librdkafka saw, instead
/// of a hang or a bare timeout.
pub fn check_connection(settings: &KafkaSettings) -> Result<()> {
    // A producer, whose poll serves librdkafka's error events to the context with their
    // reason (an admin client's are not served, a consumer's lose the reason); it sends
    // nothing.
    let client: BaseProducer<AdminContext> = client_config(settings, Role::Producer)
        .create_with_context(AdminContext::default())
        .map_err(|error| Error::client("creating the connection check's client", error))?;
    let deadline = std::time::Instant::now() + CONNECTION_TIMEOUT;
    loop {
        let attempt = client.client().fetch_metadata(None, Duration::from_secs(1));
        client.poll(Duration::ZERO);
        let seen = client.context().first_error();
        match (attempt, seen) {
            (Ok(metadata), _) if !metadata.brokers().is_empty() => {
                super::health::connected();
                return Ok(());
            }
            // Authentication and TLS failures do not heal by waiting.
            (_, Some(seen)) if is_credential_failure(&seen) => {
                return Err(Error::Connection {
                    brokers: settings.brokers.clone(),
                    cause: seen,
                })
            }
            (attempt, seen) if std::time::Instant::now() >= deadline => {
                let cause = seen.unwrap_or_else(|| match attempt {
                    Err(error) => error.to_string(),
                    Ok(_) => "the cluster answered with no brokers".to_string(),
                });
                return Err(Error::Connection {
                    brokers: settings.brokers.clone(),
                    cause,
                });
            }
            _ => thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Whether librdkafka's error text is a refused credential or certificate.
fn is_credential_failure(text: &str) -> bool {
    ["Authentication", "authentication", "SASL", "SSL", "certificate"]
        .iter()
        .any(|word| text.contains(word))
}

/// A topic the pipeline needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicSpec {
    /// The topic name.
    pub name: String,
    /// Its partitions.
    pub partitions: i32,
    /// `cleanup.policy=compact`: the broker keeps the latest record per key (balances,
    /// period aggregates) instead of deleting by age.
    pub compacted: bool,
}

impl TopicSpec {
    /// A topic with the default (delete) cleanup policy.
    pub fn new(name: impl Into<String>, partitions: i32) -> Self {
        TopicSpec {
            name: name.into(),
            partitions,
            compacted: false,
        }
    }

    /// A compacted topic.
    pub fn compacted(name: impl Into<String>, partitions: i32) -> Self {
        TopicSpec {
            compacted: true,
            ..TopicSpec::new(name, partitions)
        }
    }
}

/// Creates the topics that do not exist yet; an existing topic counts as success and is not
/// changed (neither its partitions nor its policy). A compacted topic is created with
/// `cleanup.policy=compact`; should a broker refuse that configuration as invalid or
/// unsupported, the topic is created without it and a warning is printed, because the
/// pipeline's correctness does not depend on compaction (consumers keep the latest record
/// per key themselves; compaction only bounds the topic's size).
pub fn ensure_topics(settings: &KafkaSettings, topics: &[TopicSpec]) -> Result<()> {
    if topics.is_empty() {
        return Ok(());
    }
    let admin = admin_client(settings)?;
    let options = AdminOptions::new()
        .request_timeout(Some(ADMIN_TIMEOUT))
        .operation_timeout(Some(ADMIN_TIMEOUT));
    for spec in topics {
        let replication = || TopicReplication::Fixed(settings.replication_factor);
        let mut new_topic = NewTopic::new(&spec.name, spec.partitions, replication());
        if spec.compacted {
            new_topic = new_topic.set("cleanup.policy", "compact");
        }
        match create_one(&admin, &new_topic, &options)? {
            Ok(()) => {}
            Err(code) if spec.compacted && is_config_refusal(code) => {
                markledger_operators::note!(
                    "markledger kafka: the broker refused cleanup.policy=compact for {} ({code}); \
                     creating it with the broker's default policy",
                    spec.name
                );
                let plain = NewTopic::new(&spec.name, spec.partitions, replication());
                create_one(&admin, &plain, &options)?.map_err(|code| Error::CreateTopic {
                    topic: spec.name.clone(),
                    reason: code.to_string(),
                })?;
            }
            Err(code) => {
                return Err(Error::CreateTopic {
                    topic: spec.name.clone(),
                    reason: code.to_string(),
                })
            }
        }
    }
    Ok(())
}

/// Creates one topic: `Ok(Ok(()))` when created or already there, `Ok(Err(code))` when the
/// broker refused it, `Err` when the request itself failed.
fn create_one(
    admin: &AdminClient<AdminContext>,
    topic: &NewTopic<'_>,
    options: &AdminOptions,
) -> Result<Result<(), RDKafkaErrorCode>> {
    let results = block_on(admin.create_topics([topic], options))
        .map_err(|error| Error::client(format!("creating topic {}", topic.name), error))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Ok(Err(code)),
        }
    }
    Ok(Ok(()))
}

/// Broker answers meaning "that topic configuration is not accepted here".
fn is_config_refusal(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::InvalidConfig
            | RDKafkaErrorCode::PolicyViolation
            | RDKafkaErrorCode::UnsupportedVersion
            | RDKafkaErrorCode::InvalidRequest
    )
}

/// The number of partitions of `topic`, from the cluster's metadata;
/// [`Error::UnknownTopic`] when it does not exist.
pub fn partition_count(settings: &KafkaSettings, topic: &str) -> Result<i32> {
    let admin = admin_client(settings)?;
    let metadata = admin
        .inner()
        .fetch_metadata(Some(topic), METADATA_TIMEOUT)
        .map_err(|error| Error::client(format!("reading metadata of topic {topic}"), error))?;
    let Some(found) = metadata.topics().iter().find(|found| found.name() == topic) else {
        return Err(Error::UnknownTopic {
            topic: topic.to_string(),
        });
    };
    match found.error() {
        None if !found.partitions().is_empty() => Ok(found.partitions().len() as i32),
        _ => Err(Error::UnknownTopic {
            topic: topic.to_string(),
        }),
    }
}

fn admin_client(settings: &KafkaSettings) -> Result<AdminClient<AdminContext>> {
    client_config(settings, Role::Admin)
        .create_with_context(AdminContext::default())
        .map_err(|error| Error::client("creating the Kafka admin client", error))
}

/// Runs a future to completion on this thread. rdkafka's admin futures are completed by
/// the admin client's own polling thread, so parking until woken is all it takes (no async
/// runtime in the pipeline).
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        match future.as_mut().poll(&mut context) {
            Poll::Ready(output) => return output,
            Poll::Pending => thread::park(),
        }
    }
}
