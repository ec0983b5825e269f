//! Kafka settings and the one function that turns them into librdkafka options.
//!
//! In: [`KafkaSettings`] (brokers, group, client id, topic names with INTERFACE.md's
//! defaults) and a [`Role`]. Out: an [`rdkafka::ClientConfig`] on which every option the
//! project relies on is set explicitly, each with the reason beside it (STYLE.md, as
//! Materialize's Kafka source does), so a librdkafka upgrade that changes a default cannot
//! change the pipeline's behaviour.

use crate::file::OutputFile;
use rdkafka::ClientConfig;
use std::collections::BTreeMap;
use std::fmt;

/// The input topic INTERFACE.md names.
pub const INPUT_TOPIC_DEFAULT: &str = "codes.events";

/// The largest message (key, payload, headers) a producer sends; also librdkafka's
/// default and the broker's usual `message.max.bytes`.
pub const MESSAGE_BYTES_MAX: usize = 1_000_000;

/// Messages a producer may hold unacknowledged before `send` has to wait.
pub const PRODUCER_QUEUE_MESSAGES_MAX: usize = 100_000;

/// Kilobytes a producer may hold unacknowledged before `send` has to wait.
pub const PRODUCER_QUEUE_KBYTES_MAX: usize = 64 * 1024;

/// Kilobytes of prefetched records a consumer holds per partition.
pub const CONSUMER_QUEUE_KBYTES_MAX: usize = 16 * 1024;

/// Which kind of client a configuration is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// A [`crate::kafka::PartitionConsumer`].
    Consumer,
    /// An [`crate::kafka::OutputProducer`] (also [`crate::kafka::produce_dataset`]).
    Producer,
    /// The admin client of [`crate::kafka::ensure_topics`] and metadata look-ups.
    Admin,
}

/// The topic of each of the five outputs (INTERFACE.md "Outputs").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputTopics {
    /// Status changes, keyed by account.
    pub status: String,
    /// Ledger entries, keyed by account.
    pub ledger: String,
    /// Balances (compacted), keyed by account.
    pub balances: String,
    /// Rejections, keyed by event id.
    pub rejections: String,
    /// Period aggregates (compacted), keyed by `kind/account/period[/sub]`.
    pub periods: String,
    /// Export deliveries (DOMAIN.md §9), keyed by account.
    pub exports: String,
}

impl Default for OutputTopics {
    fn default() -> Self {
        OutputTopics {
            status: "codes.status".to_string(),
            ledger: "codes.ledger".to_string(),
            balances: "codes.balances".to_string(),
            rejections: "codes.rejections".to_string(),
            periods: "codes.periods".to_string(),
            exports: "codes.exports".to_string(),
        }
    }
}

impl OutputTopics {
    /// The topic of one output.
    pub fn topic(&self, output: OutputFile) -> &str {
        match output {
            OutputFile::Status => &self.status,
            OutputFile::Ledger => &self.ledger,
            OutputFile::Balances => &self.balances,
            OutputFile::Rejections => &self.rejections,
            OutputFile::Periods => &self.periods,
            OutputFile::Exports => &self.exports,
        }
    }

    /// Whether an output's topic is compacted (a consumer wants only the latest record per
    /// key: balances, period aggregates).
    pub fn is_compacted(output: OutputFile) -> bool {
        matches!(output, OutputFile::Balances | OutputFile::Periods)
    }
}

/// Where the pipeline's Kafka clients connect and which topics they use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaSettings {
    /// Bootstrap brokers, `host:port[,host:port…]`.
    pub brokers: String,
    /// The consumer group input offsets are committed to.
    pub group_id: String,
    /// The client id the brokers see (their logs and quotas name it).
    pub client_id: String,
    /// The input topics.
    pub input_topics: Vec<String>,
    /// The five output topics.
    pub output_topics: OutputTopics,
    /// Replicas of a topic [`crate::kafka::ensure_topics`] creates: 1 for a single
    /// development broker (tansu), 3 on a production cluster.
    pub replication_factor: i32,
    /// The user's librdkafka properties (TLS, SASL, client tuning), applied to every client
    /// after the project's own options.
    pub properties: Properties,
}

/// The prefix of environment variables naming librdkafka properties:
/// `MARKLEDGER_KAFKA_SASL_PASSWORD` sets `sasl.password` (secrets stay out of command lines
/// and config files).
pub const ENVIRONMENT_PREFIX: &str = "MARKLEDGER_KAFKA_";

/// Properties the pipeline's guarantees rest on (docs/ARCHITECTURE.md, "Stream mode"):
/// each is set in [`client_config`] for a reason written beside it, and a user's value is
/// refused rather than silently breaking "nothing lost" or per-key order. The brokers and
/// the group have their own settings (`--brokers`, `--group`).
pub const PROTECTED_PROPERTIES: [&str; 13] = [
    "bootstrap.servers",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.partition.eof",
    "auto.offset.reset",
    "enable.idempotence",
    "acks",
    "max.in.flight.requests.per.connection",
    "message.timeout.ms",
    "allow.auto.create.topics",
    "partitioner",
    "message.max.bytes",
];

/// Whether a property's value is a secret: never printed, in summaries, logs or `Debug`.
pub fn is_secret(key: &str) -> bool {
    [
        "password",
        "secret",
        "sasl.jaas.config",
        "sasl.oauthbearer.config",
        ".pem",
        "token",
    ]
    .iter()
    .any(|word| key.contains(word))
}

/// What a redacted secret is shown as.
pub const REDACTED: &str = "<redacted>";

/// librdkafka properties the user passes through: `--kafka KEY=VALUE`, the config file's
/// `[kafka]` table, `MARKLEDGER_KAFKA_*` variables. Its `Debug` and [`Properties::shown`]
/// redact secrets ([`is_secret`]).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Properties(BTreeMap<String, String>);

impl Properties {
    /// Sets `key` (a librdkafka property name, lower case with dots) to `value`; refuses
    /// one of [`PROTECTED_PROPERTIES`] and names that are not property names.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let key = key.trim();
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '_')
        {
            return Err(format!("{key:?} is not a librdkafka property name (lower case, dots)"));
        }
        if PROTECTED_PROPERTIES.contains(&key) {
            return Err(format!(
                "{key} is set by markledger itself (its delivery guarantees rely on it; \
                 connectors/src/kafka/config.rs says why) and cannot be overridden"
            ));
        }
        self.0.insert(key.to_string(), value.to_string());
        Ok(())
    }

    /// Sets a `KEY=VALUE` pair (`--kafka`).
    pub fn set_pair(&mut self, pair: &str) -> Result<(), String> {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(format!("--kafka {:?}: expected KEY=VALUE", redact_pair(pair)));
        };
        self.set(key, value)
    }

    /// Sets every `MARKLEDGER_KAFKA_*` variable of `vars`: the rest of the name lower-cased,
    /// `_` read as `.` (`MARKLEDGER_KAFKA_SASL_PASSWORD` → `sasl.password`).
    pub fn set_from_environment(&mut self, vars: impl IntoIterator<Item = (String, String)>) -> Result<(), String> {
        for (name, value) in vars {
            if let Some(rest) = name.strip_prefix(ENVIRONMENT_PREFIX) {
                let key = rest.to_ascii_lowercase().replace('_', ".");
                self.set(&key, &value).map_err(|why| format!("{name}: {why}"))?;
            }
        }
        Ok(())
    }

    /// The properties, secrets included (for librdkafka only).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(key, value)| (key.as_str(), value.as_str()))
    }

    /// The properties as they may be shown: secrets replaced by [`REDACTED`].
    pub fn shown(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .map(|(key, value)| {
                let value = if is_secret(key) {
                    REDACTED.to_string()
                } else {
                    value.clone()
                };
                (key.clone(), value)
            })
            .collect()
    }

    /// Whether none are set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Properties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.shown()).finish()
    }
}

/// `KEY=VALUE` with the value redacted when the key names a secret.
fn redact_pair(pair: &str) -> String {
    match pair.split_once('=') {
        Some((key, _)) if is_secret(key) => format!("{key}={REDACTED}"),
        _ if is_secret(pair) => REDACTED.to_string(),
        _ => pair.to_string(),
    }
}

impl Default for KafkaSettings {
    fn default() -> Self {
        KafkaSettings::new("127.0.0.1:9092")
    }
}

impl KafkaSettings {
    /// Prefixes every topic name, input and output (several pipelines on one cluster).
    pub fn apply_prefix(&mut self, prefix: &str) {
        for topic in &mut self.input_topics {
            *topic = format!("{prefix}{topic}");
        }
        let topics = &mut self.output_topics;
        for topic in [
            &mut topics.status,
            &mut topics.ledger,
            &mut topics.balances,
            &mut topics.rejections,
            &mut topics.periods,
            &mut topics.exports,
        ] {
            *topic = format!("{prefix}{topic}");
        }
    }

    /// Settings for `brokers` with INTERFACE.md's topic names, group and client id
    /// `markledger`, replication factor 1.
    pub fn new(brokers: impl Into<String>) -> Self {
        KafkaSettings {
            brokers: brokers.into(),
            group_id: "markledger".to_string(),
            client_id: "markledger".to_string(),
            input_topics: vec![INPUT_TOPIC_DEFAULT.to_string()],
            output_topics: OutputTopics::default(),
            replication_factor: 1,
            properties: Properties::default(),
        }
    }
}

/// Routes one of librdkafka's own log lines into tracing (target `librdkafka`, its
/// facility as a field), at the matching level; every client context of the crate calls
/// it from `ClientContext::log`. A binary without a subscriber drops them, as before.
pub fn log_to_tracing(level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
    use rdkafka::config::RDKafkaLogLevel as L;
    match level {
        L::Emerg | L::Alert | L::Critical | L::Error => {
            tracing::error!(target: "librdkafka", librdkafka = facility, "{message}")
        }
        L::Warning => tracing::warn!(target: "librdkafka", librdkafka = facility, "{message}"),
        L::Notice | L::Info => tracing::info!(target: "librdkafka", librdkafka = facility, "{message}"),
        L::Debug => tracing::debug!(target: "librdkafka", librdkafka = facility, "{message}"),
    }
}

/// The librdkafka configuration of a client in `role`. Every option the project relies on
/// is set here, explicitly, with its reason; nothing else in the crate sets one.
pub fn client_config(settings: &KafkaSettings, role: Role) -> ClientConfig {
    let mut config = ClientConfig::new();
    let mut set = |key: &str, value: &str| {
        config.set(key, value);
    };

    // --- Every client ---------------------------------------------------------------
    set("bootstrap.servers", &settings.brokers);
    // Names the client in the broker's logs and quotas.
    set("client.id", &settings.client_id);
    // A broker outage is waited out, not fatal: reconnect after 100 ms, backing off
    // exponentially to 10 s, so a restarted broker is found again within seconds without
    // hammering it while it is down.
    set("reconnect.backoff.ms", "100");
    set("reconnect.backoff.max.ms", "10000");
    // TCP keepalive notices a connection a firewall or NAT silently dropped during a quiet
    // spell (a stream can be idle for hours at night).
    set("socket.keepalive.enable", "true");
    // A request the broker has not answered in 30 s is retried on a new connection.
    set("socket.timeout.ms", "30000");
    // Topics are created only by `ensure_topics`, with the partitions and cleanup policy
    // the pipeline needs; never implicitly with a broker's defaults (a typo'd topic name
    // must be an error). tansu cannot auto-create anyway (TOOLCHAIN.md).
    set("allow.auto.create.topics", "false");
    // Idle connections closed by the broker are normal; real trouble surfaces as errors.
    set("log.connection.close", "false");
    // Learn about new partitions and leader moves within a minute.
    set("topic.metadata.refresh.interval.ms", "60000");
    // Must agree with MESSAGE_BYTES_MAX, which `produce_dataset` checks before sending.
    set("message.max.bytes", &MESSAGE_BYTES_MAX.to_string());

    match role {
        Role::Consumer => {
            // Offsets are committed to this group (manual assignment: the group is only
            // an offset store; no rebalancing, the pipeline places partitions itself).
            set("group.id", &settings.group_id);
            // The pipeline commits an input offset only once the outputs it caused are
            // acknowledged, so a crash replays rather than loses; librdkafka must never
            // commit or store offsets on its own.
            set("enable.auto.commit", "false");
            set("enable.auto.offset.store", "false");
            // A group without committed offsets starts at the beginning: the ledger must
            // see every event ever published, not only new ones.
            set("auto.offset.reset", "earliest");
            // Never read records of aborted transactions. The pipeline's producers are not
            // transactional and tansu has no transactions (records of a failed transaction
            // stay visible even to read_committed consumers there), so this is only the
            // safe choice against a real Kafka with transactional upstream producers.
            set("isolation.level", "read_committed");
            // The source must know when a partition is caught up to let its watermark
            // advance while the partition is quiet.
            set("enable.partition.eof", "true");
            // A caught-up partition's fetch waits at most 100 ms on the broker, so new
            // records and EOF reach the pipeline promptly.
            set("fetch.wait.max.ms", "100");
            // Bounded prefetch (STYLE.md: bound every queue): per partition, at most
            // CONSUMER_QUEUE_KBYTES_MAX of records wait in memory, 1 MiB per fetch.
            set("queued.max.messages.kbytes", &CONSUMER_QUEUE_KBYTES_MAX.to_string());
            set("max.partition.fetch.bytes", "1048576");
            // Records are checked for corruption on the way in; cheap next to decoding.
            set("check.crcs", "true");
            // Statistics every 5 s give each partition's consumer lag for the metrics
            // endpoint (issue 19); parsing one JSON document per 5 s costs nothing.
            set("statistics.interval.ms", "5000");
        }
        Role::Producer => {
            // No duplicates or reordering from the producer's own retries: the broker
            // de-duplicates by producer id and sequence number (tansu supports it).
            set("enable.idempotence", "true");
            // Acknowledged means written to every in-sync replica: an acknowledged output
            // survives a broker loss, so input offsets may be committed behind it.
            set("acks", "all");
            // One request in flight: per-key order must hold even across a broker restart
            // (balances and periods are compacted topics: a consumer keeps the last record
            // per key). Idempotence keeps up to 5 in order only where the broker keeps the
            // producer's sequence state across restarts; tansu does not, and its restart
            // reordered a balance behind an older one in tests/tests/stream.rs.
            set("max.in.flight.requests.per.connection", "1");
            // Java-compatible partitioning: murmur2 of the key (random for a null key), the
            // partitioner the dataset generator assumes (datasets/src/generator/codes.rs),
            // so an account lands on the same partition whoever produced it.
            set("partitioner", "murmur2_random");
            // Wait up to 5 ms to fill batches: a stream emits bursts per instant, and
            // batching them costs little latency and saves most of the requests.
            set("linger.ms", "5");
            set("batch.num.messages", "10000");
            // lz4: fast, built into librdkafka without extra system libraries (unlike
            // zstd), and JSON lines compress well. tansu accepts lz4 batches
            // (tests/tests/kafka_connectors.rs round-trips them).
            set("compression.type", "lz4");
            // 0 = no delivery timeout. A broker outage means waiting and retrying, never
            // dropping an output: a timed-out message would leave a gap in the output
            // stream behind offsets that may already be committable. How long to wait is
            // the caller's choice, through `OutputProducer::flush`'s timeout, and the
            // stream mode does not commit input offsets until flush succeeds.
            set("message.timeout.ms", "0");
            // Retry a failed request indefinitely, backing off from 100 ms to 1 s.
            set("retries", "2147483647");
            set("retry.backoff.ms", "100");
            set("retry.backoff.max.ms", "1000");
            // A produce request unanswered for 30 s is retried (idempotence makes a retry
            // of a request that did land harmless).
            set("request.timeout.ms", "30000");
            // Bounded send queue (STYLE.md): when it is full, `send` serves delivery
            // reports and waits instead of growing memory or dropping.
            set("queue.buffering.max.messages", &PRODUCER_QUEUE_MESSAGES_MAX.to_string());
            set("queue.buffering.max.kbytes", &PRODUCER_QUEUE_KBYTES_MAX.to_string());
        }
        Role::Admin => {
            // Admin requests (create topics, metadata) time out after 30 s rather than
            // hanging; callers retry or report.
            set("request.timeout.ms", "30000");
        }
    }

    // --- The user's properties (issue 19) ------------------------------------------
    // Last, so TLS, SASL and tuning the deployment needs win over the defaults above;
    // `Properties::set` has already refused the ones the guarantees rest on. The same set
    // goes to every role: librdkafka ignores (with a log line) a consumer-only property on
    // a producer, and a secured cluster needs the same credentials on all three.
    for (key, value) in settings.properties.iter() {
        set(key, value);
    }
    config
}

impl crate::stream_file::TopicNames {
    /// Sets the names given.
    pub fn apply(&self, topics: &mut OutputTopics) {
        for (name, slot) in [
            (&self.status, &mut topics.status),
            (&self.ledger, &mut topics.ledger),
            (&self.balances, &mut topics.balances),
            (&self.rejections, &mut topics.rejections),
            (&self.periods, &mut topics.periods),
            (&self.exports, &mut topics.exports),
        ] {
            if let Some(name) = name {
                *slot = name.clone();
            }
        }
    }
}
