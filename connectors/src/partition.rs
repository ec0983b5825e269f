//! Partitions as the pipeline's sources see them: one ordered sequence of records each
//! (DOMAIN.md §4: a file, or a Kafka topic-partition), read one record at a time.
//!
//! In: whatever a connector reads. Out: [`Next`] — a [`Decoded`] record, `Pending` when a
//! live partition has nothing new yet (Kafka), or `Finished` when it never will (the end of
//! a file). A source asks a partition for its next record only when it wants one, so a
//! partition that streams from disk holds one buffer, not the file.

use crate::codec::Decoded;
use crate::file::PartitionReader;
use markledger_operators::time::Ts;
use std::collections::VecDeque;

/// What a partition has next.
#[derive(Debug)]
pub enum Next {
    /// The next record, in partition order.
    Record(Decoded),
    /// The next record, whose effect the state the run started from (a checkpoint)
    /// already holds: it moves the partition's high-water mark like any record, and is
    /// otherwise skipped.
    Known(Decoded),
    /// Nothing available now; ask again later.
    Pending,
    /// Nothing available now, and nothing has come for longer than the idle timeout: the
    /// partition stops holding the watermark back until it has a record again (a live
    /// partition only; see docs/ARCHITECTURE.md on what that does to determinism).
    Idle,
    /// The partition is exhausted (or failed: see [`PartitionInput::error`]).
    Finished,
}

/// One input partition, read in order.
pub trait PartitionInput: Send {
    /// The next record, if one is available now.
    fn next_record(&mut self) -> Next;
    /// A name for progress lines and errors (a path, or `topic/partition`).
    fn name(&self) -> String;
    /// Input bytes consumed so far.
    fn bytes_read(&self) -> u64;
    /// Why the partition finished early, if it did (an I/O error mid-file).
    fn error(&self) -> Option<String> {
        None
    }
    /// The record last returned takes effect at `time` (the dataflow's timestamp).
    fn placed(&mut self, _time: u64) {}
    /// The record last returned took effect late (its figures and logs; issue 19).
    fn late(&mut self) {}
    /// Every record placed before `frontier` is fully processed and its outputs emitted.
    fn completed(&mut self, _frontier: u64) {}
    /// The high-water mark (largest event `ts`) the partition starts from: that of the
    /// records before its first one, read by an earlier run (restored from a checkpoint).
    fn start_high_water(&self) -> Option<Ts> {
        None
    }
}

impl PartitionInput for PartitionReader {
    fn next_record(&mut self) -> Next {
        match self.next() {
            Some(record) => Next::Record(record),
            None => Next::Finished,
        }
    }

    fn name(&self) -> String {
        self.path().display().to_string()
    }

    fn bytes_read(&self) -> u64 {
        PartitionReader::bytes_read(self)
    }

    fn error(&self) -> Option<String> {
        self.io_error()
            .map(|error| format!("{error} (after {} bytes)", PartitionReader::bytes_read(self)))
    }
}

/// A partition already in memory (tests, the demo).
#[derive(Debug)]
pub struct MemoryPartition {
    name: String,
    records: VecDeque<Decoded>,
}

impl MemoryPartition {
    /// The records of partition `name`, in order.
    pub fn new(name: impl Into<String>, records: Vec<Decoded>) -> MemoryPartition {
        MemoryPartition {
            name: name.into(),
            records: records.into(),
        }
    }
}

impl PartitionInput for MemoryPartition {
    fn next_record(&mut self) -> Next {
        match self.records.pop_front() {
            Some(record) => Next::Record(record),
            None => Next::Finished,
        }
    }

    fn name(&self) -> String {
        self.name.clone()
    }

    fn bytes_read(&self) -> u64 {
        0
    }
}
