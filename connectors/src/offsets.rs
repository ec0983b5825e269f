//! Where input partitions resume after a checkpoint: the source's share of a cut, and the
//! interface through which the checkpoint code asks a connector for it.
//!
//! In: a connector that knows, per partition, which records it handed to the dataflow and
//! at which times they took effect ([`OffsetTracker`]; the Kafka input's is
//! [`crate::kafka::WorkerOffsets`]). Out: a [`SourceShare`] per worker, saved in the cut as
//! the share named [`SOURCE`] (docs/ARCHITECTURE.md, "Checkpoints", "Offsets").
//!
//! A file run has no offsets to resume from: its backfill checkpoint saves a share without
//! partitions, and the stream that goes on from it reads its topics from their start.

use markledger_operators::checkpoint::{decode, encode, Cut, RestoreError, Share};
use markledger_operators::flow::Time;
use markledger_operators::time::Ts;
use serde::{Deserialize, Serialize};

/// The name of a worker's source share in a cut.
pub const SOURCE: &str = "Source";

/// A worker's source share: where to read each of its partitions again.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceShare {
    /// The largest instant any source had read (the idle-watermark rule's position).
    pub read_max: Time,
    /// The worker's partitions.
    pub partitions: Vec<PartitionShare>,
}

/// Where one input partition resumes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionShare {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The first offset to read again.
    pub resume: i64,
    /// Offsets at or after `resume` whose effect the state already holds (they took effect
    /// before the checkpoint time): read again only to move the high-water mark.
    pub known: Vec<i64>,
    /// The high-water mark of the records before `resume`.
    pub high_water: Option<Ts>,
}

/// Why a cut's source share could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShareError {
    /// The cut has no share of the worker (written by another worker count).
    #[error("the checkpoint at {time} has no source share of worker {worker}")]
    Missing {
        /// The cut's time.
        time: Time,
        /// The worker asked for.
        worker: usize,
    },
    /// The share does not decode.
    #[error(transparent)]
    Decode(#[from] RestoreError),
}

impl SourceShare {
    /// As a [`Share`] of `worker`.
    pub fn share(&self, worker: usize) -> Share {
        Share {
            worker,
            name: SOURCE.to_string(),
            state: encode(self),
            carried: Vec::new(),
        }
    }

    /// The source share of `worker` in `cut`.
    pub fn of(cut: &Cut, worker: usize) -> Result<SourceShare, ShareError> {
        let share = cut
            .share(worker, SOURCE)
            .ok_or(ShareError::Missing { time: cut.time, worker })?;
        Ok(decode(SOURCE, &share.state)?)
    }
}

/// What a connector with offsets tells the checkpoint code: where its partitions resume
/// after a checkpoint at a given time.
///
/// Contract: `share(time)` is asked for only while the output frontier has not passed
/// `time` (the connector still knows every offset it placed at or after `time`); the
/// share's `resume` offsets are the first records placed at or after `time`, so a restore
/// neither skips a record whose effect the cut lacks nor applies one twice.
pub trait OffsetTracker {
    /// The worker's source share for a checkpoint at `time`.
    fn share(&self, time: Time) -> SourceShare;
}
