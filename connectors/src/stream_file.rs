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
/// checkpoint_interval = "10s"
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
    }
}
