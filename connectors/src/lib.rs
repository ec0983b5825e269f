//! markledger's codecs and connectors: the edges of the pipeline.
//!
//! In: bytes from input partitions (JSON lines, or the compact binary format). Out: one
//! [`codec::Decoded`] per input record — a well-formed [`markledger_operators::Event`] or
//! a `MALFORMED` / `UNKNOWN_TYPE` rejection, so bad input travels as data next to the good
//! (STYLE.md "Errors are data at the edges"). On the way out, engines' [`Output`]s are
//! rendered as JSON lines into the five output files.
//!
//! - [`codec`]: the wire formats ([`codec::json`] per INTERFACE.md, [`codec::binary`]
//!   for bulk and benchmarks).
//! - [`mod@file`]: file partitions in ([`file::PartitionReader`]), generator files out
//!   ([`file::PartitionWriter`]), and the `--out` directory ([`file::OutputFiles`]).
//! - [`partition`]: what a source reads, one record at a time, whatever the connector.
//! - [`offsets`]: where partitions resume after a checkpoint ([`offsets::SourceShare`]),
//!   and the interface the checkpoint code asks a connector through
//!   ([`offsets::OffsetTracker`]).
//! - [`kafka`]: topic partitions in ([`kafka::PartitionConsumer`]; the stream's input with
//!   its offset commits, [`kafka::KafkaInput`]), outputs out ([`kafka::OutputProducer`];
//!   the stream's sink, [`kafka::KafkaSink`]), the progress topic
//!   ([`kafka::ProgressTopic`]), topics ([`kafka::ensure_topics`]) and datasets onto a
//!   topic ([`kafka::produce_dataset`]) for the `stream` mode.
//!
//! [`Output`]: markledger_operators::Output

#![deny(missing_docs)]

pub mod codec;
pub mod file;
pub mod kafka;
pub mod offsets;
pub mod partition;
mod window;

#[cfg(test)]
mod samples;
