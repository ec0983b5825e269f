//! A generated dataset onto a topic: partition files in, one Kafka partition each out.
//!
//! In: a dataset directory (or file) as [`list_partitions`] lists it — `p000.jsonl`,
//! `p001.jsonl`, … (or `.bin`) sorted by name, so file `i` is input partition `i` exactly
//! as in a file run. Out: file `i`'s records, in file order, on topic partition `i`
//! (explicit partition, never the partitioner), keyed by the event's account.
//!
//! JSON files are published byte for byte: each line's payload is the line as written
//! (without its newline), malformed lines included — they must reach the pipeline and be
//! rejected there, as in a file run; a line that does not decode has no key. Blank lines
//! and a leading UTF-8 byte order mark are skipped, as [`crate::file::PartitionReader`]
//! skips them. Binary files are re-encoded event by event as JSON
//! ([`crate::codec::json::encode_event`]); a binary record that does not decode is skipped
//! and counted. A record larger than a Kafka message may be ([`MESSAGE_BYTES_MAX`]) is
//! skipped and counted too (a file run would refuse it as `MALFORMED`).
//!
//! The topic is created with one partition per file when it does not exist; an existing
//! topic with fewer partitions is an error. The function returns once every record is
//! acknowledged, printing progress to stderr every [`PROGRESS_INTERVAL`].

use super::admin::{ensure_topics, partition_count, TopicSpec};
use super::config::{KafkaSettings, MESSAGE_BYTES_MAX};
use super::sink::OutputProducer;
use super::{Error, Result};
use crate::codec::json::{decode_event, encode_event};
use crate::codec::Decoded;
use crate::file::{detect_format, list_partitions, Format, PartitionReader};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::time::{Duration, Instant};

/// How often a long publication prints its progress.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(2);

/// The read buffer of one partition file.
const READ_BUFFER_BYTES: usize = 256 * 1024;

/// Room in a message for the key and the record overhead, beside the payload.
const MESSAGE_OVERHEAD_BYTES_MAX: usize = 4 * 1024;

/// The longest payload published.
pub(crate) const PAYLOAD_BYTES_MAX: usize = MESSAGE_BYTES_MAX - MESSAGE_OVERHEAD_BYTES_MAX;

/// The UTF-8 byte order mark some editors put at the start of a text file.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// What [`produce_dataset`] published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProduceReport {
    /// Records published (all acknowledged).
    pub messages: u64,
    /// Payload bytes published.
    pub bytes: u64,
    /// Partition files published (= topic partitions written).
    pub partitions: usize,
    /// Records skipped: binary records that did not decode, records too large for a
    /// message.
    pub skipped: u64,
    /// Time from the first file opened to the last acknowledgement.
    pub elapsed: Duration,
}

/// Publishes the dataset at `input` to `topic` (see the module documentation).
pub fn produce_dataset(settings: &KafkaSettings, input: &Path, topic: &str) -> Result<ProduceReport> {
    let started = Instant::now();
    let files = list_partitions(&[input.to_path_buf()])?;
    if files.is_empty() {
        return Err(Error::NoPartitions {
            path: input.display().to_string(),
        });
    }
    match partition_count(settings, topic) {
        Ok(partitions) if (partitions as usize) < files.len() => {
            return Err(Error::TooFewPartitions {
                topic: topic.to_string(),
                partitions,
                needed: files.len(),
            })
        }
        Ok(_) => {}
        Err(Error::UnknownTopic { .. }) => {
            ensure_topics(settings, &[TopicSpec::new(topic, files.len() as i32)])?;
        }
        Err(error) => return Err(error),
    }

    let mut producer = OutputProducer::new(settings)?;
    let mut progress = Progress {
        report: ProduceReport {
            messages: 0,
            bytes: 0,
            partitions: files.len(),
            skipped: 0,
            elapsed: Duration::ZERO,
        },
        started,
        last_print: started,
    };
    for (index, path) in files.iter().enumerate() {
        let partition = index as i32;
        let io_error = |cause: io::Error| Error::Io {
            path: path.display().to_string(),
            cause,
        };
        let mut file = BufReader::with_capacity(READ_BUFFER_BYTES, File::open(path).map_err(io_error)?);
        let is_binary = detect_format(file.fill_buf().map_err(io_error)?).format() == Format::Binary;
        let mut publish = |payload: &[u8], key: Option<&[u8]>, progress: &mut Progress| -> Result<()> {
            if payload.len() > PAYLOAD_BYTES_MAX {
                progress.report.skipped += 1;
                return Ok(());
            }
            producer.send_record(topic, Some(partition), key, payload, &[])?;
            progress.report.messages += 1;
            progress.report.bytes += payload.len() as u64;
            progress.tick(index);
            Ok(())
        };
        if is_binary {
            drop(file);
            let mut reader = PartitionReader::open(path)?;
            for decoded in reader.by_ref() {
                match decoded {
                    Decoded::Event(event) => {
                        let line = encode_event(&event);
                        publish(line.as_bytes(), Some(event.account.as_bytes()), &mut progress)?;
                    }
                    Decoded::Refused(_) => progress.report.skipped += 1,
                }
            }
            if let Some(error) = reader.io_error() {
                return Err(io_error(io::Error::new(error.kind(), error.to_string())));
            }
        } else {
            let mut line = Vec::with_capacity(4096);
            let mut first = true;
            loop {
                line.clear();
                let complete = read_line_bounded(&mut file, &mut line).map_err(io_error)?;
                if line.is_empty() && !complete {
                    break;
                }
                let mut bytes: &[u8] = &line;
                if first {
                    bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
                    first = false;
                }
                if bytes.len() > PAYLOAD_BYTES_MAX {
                    progress.report.skipped += 1;
                    continue;
                }
                if bytes.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let key = match decode_event(bytes) {
                    Decoded::Event(event) => Some(event.account),
                    Decoded::Refused(_) => None,
                };
                publish(bytes, key.as_ref().map(String::as_bytes), &mut progress)?;
            }
        }
    }
    // Every record must be acknowledged before the report says it was published.
    loop {
        match producer.flush(PROGRESS_INTERVAL) {
            Ok(()) => break,
            Err(Error::FlushTimeout { pending, .. }) => {
                markledger_operators::note!(
                    "produce {topic}: {} messages sent, waiting for {pending} acknowledgements",
                    progress.report.messages
                );
            }
            Err(error) => return Err(error),
        }
    }
    progress.report.elapsed = started.elapsed();
    Ok(progress.report)
}

struct Progress {
    report: ProduceReport,
    started: Instant,
    last_print: Instant,
}

impl Progress {
    fn tick(&mut self, file_index: usize) {
        if self.report.messages % 1024 != 0 || self.last_print.elapsed() < PROGRESS_INTERVAL {
            return;
        }
        self.last_print = Instant::now();
        let seconds = self.started.elapsed().as_secs_f64().max(1e-3);
        markledger_operators::note!(
            "produce: partition {}/{}, {} messages, {:.1} MB, {:.0} msg/s",
            file_index + 1,
            self.report.partitions,
            self.report.messages,
            self.report.bytes as f64 / 1e6,
            self.report.messages as f64 / seconds
        );
    }
}

/// Reads one line (without its newline) into `line`, keeping at most
/// `PAYLOAD_BYTES_MAX + 1` bytes of a longer one (enough to know it is too long) and
/// skipping the rest to its newline. Returns whether a newline ended the line (`false` at
/// the end of the file).
pub(crate) fn read_line_bounded(reader: &mut impl BufRead, line: &mut Vec<u8>) -> io::Result<bool> {
    let limit = PAYLOAD_BYTES_MAX as u64 + 1;
    reader.by_ref().take(limit).read_until(b'\n', line)?;
    if line.last() == Some(&b'\n') {
        line.pop();
        return Ok(true);
    }
    if (line.len() as u64) < limit {
        return Ok(false);
    }
    // Too long: drop the rest of the line.
    let mut rest = Vec::new();
    loop {
        rest.clear();
        let read = reader
            .by_ref()
            .take(READ_BUFFER_BYTES as u64)
            .read_until(b'\n', &mut rest)?;
        if read == 0 {
            return Ok(false);
        }
        if rest.last() == Some(&b'\n') {
            return Ok(true);
        }
    }
}
