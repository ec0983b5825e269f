//! The `stream --config FILE` settings file: TOML, parsed only (what each setting means
//! is the stream command's business, pipeline/src/stream.rs). It lives here, apart from the
//! Kafka clients, so that a parser of untrusted text builds without librdkafka (the fuzz
//! target `stream_config` uses this crate with `default-features = false`).

use std::path::{Path, PathBuf};

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
/// metrics_addr = "0.0.0.0:9464"
/// checkpoint_interval = "10s"
/// input_partitions = 4
/// replication_factor = 3
/// calendar = "/etc/markledger/kazakhstan.cal"
/// hold = "60s"
/// close_after_days = 7
/// [kafka]                       # any librdkafka property, for every client
/// "security.protocol" = "sasl_ssl"
/// "sasl.mechanisms" = "SCRAM-SHA-512"
/// "sasl.username" = "markledger"
/// "ssl.ca.location" = "/etc/markledger/ca.pem"
/// # the password: MARKLEDGER_KAFKA_SASL_PASSWORD in the environment
/// [topics]
/// status = "codes.status"
/// ledger = "codes.ledger"
/// balances = "codes.balances"
/// rejections = "codes.rejections"
/// periods = "codes.periods"
/// exports = "codes.exports"
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
    pub state: Option<PathBuf>,
    /// Checkpoint interval.
    pub checkpoint_interval: Option<String>,
    /// How far ahead of the wall clock an event's `ts` may be.
    pub max_ahead: Option<String>,
    /// Output topic names.
    pub topics: Option<TopicNames>,
    /// Partitions of an input topic created when missing.
    pub input_partitions: Option<i32>,
    /// Replication factor of the topics created.
    pub replication_factor: Option<i16>,
    /// A working-day calendar file.
    pub calendar: Option<PathBuf>,
    /// How long a command on an unknown code waits for its emission.
    pub hold: Option<String>,
    /// The day of the next month a period closes.
    pub close_after_days: Option<u32>,
    /// Where to serve Prometheus metrics.
    pub metrics_addr: Option<String>,
    /// librdkafka properties for every client (`--kafka` wins over a key given in both).
    pub kafka: Option<std::collections::BTreeMap<String, String>>,
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
    /// Export deliveries (DOMAIN.md §9).
    pub exports: Option<String>,
}

impl StreamFile {
    /// Reads a config file.
    pub fn load(path: &Path) -> Result<StreamFile, StreamFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| StreamFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        StreamFile::parse(&text).map_err(|source| StreamFileError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Parses a config file's text: every key known, every value of its type.
    pub fn parse(text: &str) -> Result<StreamFile, toml::de::Error> {
        toml::from_str(text)
    }
}

/// Why a config file was not read.
#[derive(Debug, thiserror::Error)]
pub enum StreamFileError {
    /// The file could not be read.
    #[error("reading {path}: {source}", path = path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a valid config (TOML syntax, an unknown key, a value of the wrong type).
    #[error("parsing {path}: {source}", path = path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (line and column).
        source: toml::de::Error,
    },
}

#[cfg(test)]
#[cfg(feature = "kafka")]
mod tests {
    use super::*;
    use crate::kafka::OutputTopics;

    #[test]
    fn the_readme_s_plain_and_secured_configurations_parse() {
        // README.md shows two TOML files side by side, split by a `|` column: each column
        // must be a configuration this parser takes, the secured one with its [kafka]
        // properties passing the protected-property check.
        let readme = include_str!("../../README.md");
        let start = readme.find("# plain.toml").expect("README shows plain.toml");
        let block = &readme[start..start + readme[start..].find("```").expect("end of block")];
        let (mut plain, mut secured) = (String::new(), String::new());
        for line in block.lines() {
            let (left, right) = line.split_once('|').unwrap_or((line, ""));
            plain.push_str(left.trim_end());
            plain.push('\n');
            secured.push_str(right.trim());
            secured.push('\n');
        }
        let plain = StreamFile::parse(&plain).unwrap_or_else(|error| panic!("plain.toml: {error}\n{plain}"));
        assert_eq!(plain.brokers.as_deref(), Some("127.0.0.1:9092"));
        assert!(plain.kafka.is_none());
        let secured = StreamFile::parse(&secured).unwrap_or_else(|error| panic!("secured.toml: {error}\n{secured}"));
        let kafka = secured.kafka.expect("a [kafka] table");
        assert_eq!(kafka.get("security.protocol").map(String::as_str), Some("sasl_ssl"));
        assert_eq!(secured.replication_factor, Some(3));
        let mut properties = crate::kafka::Properties::default();
        for (key, value) in &kafka {
            properties.set(key, value).expect("a passable property");
        }
    }

    #[test]
    fn a_config_file_sets_what_it_names_and_refuses_unknown_keys() {
        // Parses a TOML file naming some settings: those are set, the other topics keep
        // their defaults, and an unknown key is refused.
        let file: StreamFile = StreamFile::parse(
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
        assert!(StreamFile::parse("brokerz = \"x\"").is_err());
        let secured = StreamFile::parse(
            "close_after_days = 5\n[kafka]\n\"security.protocol\" = \"ssl\"\n\"ssl.ca.location\" = \"/ca.pem\"\n",
        )
        .expect("parses");
        assert_eq!(secured.close_after_days, Some(5));
        let kafka = secured.kafka.expect("kafka table");
        assert_eq!(kafka.get("security.protocol").map(String::as_str), Some("ssl"));
    }
}
