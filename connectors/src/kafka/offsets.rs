//! Offset tracking of a worker's Kafka partitions: which records are placed, which are
//! done, what a commit covers and where a checkpoint resumes. No broker in here: the
//! reader ([`super::partition`]) reports what it hands out and what the dataflow finished.
//!
//! In: per partition, each record returned to the source (its offset, and its event's `ts`
//! when that moves the high-water mark), the time the source placed it at, and the
//! dataflow's output frontier. Out: the offset below which every record is done (what a
//! commit covers: [`PartitionOffsets::done_offset`]) and, for a checkpoint at time `T`,
//! each partition's [`PartitionShare`] ([`WorkerOffsets`] is the worker's
//! [`OffsetTracker`]).
//!
//! Invariants: a partition's placements are in offset order (the source reads a partition
//! in order); placements are forgotten only once the frontier has passed their time, so a
//! share at `T` is exact until a frontier past `T` is applied.

use crate::offsets::{OffsetTracker, PartitionShare, SourceShare};
use markledger_operators::flow::time_of;
use markledger_operators::flow::Time;
use markledger_operators::time::Ts;
use std::collections::{BTreeSet, VecDeque};

/// A record handed to the dataflow and not yet done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Placement {
    offset: i64,
    /// The time it takes effect at.
    time: Time,
    /// The partition's high-water mark before it.
    high_water_before: Option<Ts>,
}

/// The offsets of one input partition (see the module docs).
#[derive(Clone, Debug)]
pub struct PartitionOffsets {
    topic: String,
    partition: i32,
    /// Records returned to the source and placed, not yet done, in offset order.
    placed: VecDeque<Placement>,
    /// The largest event `ts` returned (the source's placer's high-water mark).
    high_water: Option<Ts>,
    /// The high-water mark before the record last returned.
    high_water_before: Option<Ts>,
    /// Offsets the restored state already holds ([`PartitionShare::known`]), not read yet.
    known: BTreeSet<i64>,
    /// The offset of the record last returned.
    last_returned: Option<i64>,
    /// The offset the consumer started at.
    start_offset: i64,
    /// The offset the last commit of this partition covered.
    committed: Option<i64>,
}

impl PartitionOffsets {
    /// A partition read from `start_offset`, resuming from `restored` (a checkpoint's share
    /// of it) or from nothing.
    pub fn new(topic: &str, partition: i32, start_offset: i64, restored: Option<&PartitionShare>) -> Self {
        PartitionOffsets {
            topic: topic.to_string(),
            partition,
            placed: VecDeque::new(),
            high_water: restored.and_then(|share| share.high_water),
            high_water_before: None,
            known: restored
                .map(|share| share.known.iter().copied().collect())
                .unwrap_or_default(),
            last_returned: None,
            start_offset,
            committed: None,
        }
    }

    /// The record at `offset` is returned to the source; `ts` is its event's, when the
    /// event moves the high-water mark (not for a refused or quarantined record). True when
    /// the restored state already holds its effect (it is then only re-read).
    pub fn returned(&mut self, offset: i64, ts: Option<Ts>) -> bool {
        self.last_returned = Some(offset);
        self.high_water_before = self.high_water;
        if let Some(ts) = ts {
            self.high_water = Some(self.high_water.map_or(ts, |high| high.max(ts)));
        }
        self.known.remove(&offset)
    }

    /// The record last returned takes effect at `time`.
    pub fn placed(&mut self, time: Time) {
        if let Some(offset) = self.last_returned {
            debug_assert!(
                self.placed.back().is_none_or(|last| last.offset < offset),
                "placements out of offset order"
            );
            self.placed.push_back(Placement {
                offset,
                time,
                high_water_before: self.high_water_before,
            });
        }
    }

    /// Every record placed before `frontier` is done: forgets them.
    pub fn forget_before(&mut self, frontier: Time) {
        while self.placed.front().is_some_and(|placement| placement.time < frontier) {
            self.placed.pop_front();
        }
    }

    /// The largest event `ts` returned so far (or restored).
    pub fn high_water(&self) -> Option<Ts> {
        self.high_water
    }

    /// The offset below which every record is done (the next one to read after a restart
    /// that kept state).
    pub fn done_offset(&self) -> i64 {
        match self.placed.front() {
            Some(placement) => placement.offset,
            None => self.next_offset(),
        }
    }

    fn next_offset(&self) -> i64 {
        self.last_returned.map_or(self.start_offset, |offset| offset + 1)
    }

    /// Where this partition resumes after a checkpoint at `time`: the first record placed
    /// at or after it, the later ones placed before it (known), and the high-water mark
    /// before the first. Valid while nothing placed at or after `time` has been forgotten,
    /// i.e. before a frontier past `time` is applied.
    pub fn share(&self, time: Time) -> PartitionShare {
        let first = self.placed.iter().position(|placement| placement.time >= time);
        let (resume, high_water) = match first {
            Some(i) => (self.placed[i].offset, self.placed[i].high_water_before),
            None => (self.next_offset(), self.high_water),
        };
        let mut known: Vec<i64> = first.map_or_else(Vec::new, |i| {
            self.placed
                .iter()
                .skip(i + 1)
                .filter(|placement| placement.time < time)
                .map(|placement| placement.offset)
                .collect()
        });
        // Restored known records not read again yet are still known.
        known.extend(self.known.iter().copied());
        known.sort_unstable();
        PartitionShare {
            topic: self.topic.clone(),
            partition: self.partition,
            resume,
            known,
            high_water,
        }
    }
}

/// The offsets of a worker's partitions, in assignment order: its [`OffsetTracker`], and
/// what its commits cover.
#[derive(Clone, Debug, Default)]
pub struct WorkerOffsets {
    partitions: Vec<PartitionOffsets>,
}

impl WorkerOffsets {
    /// The worker's partitions, in assignment order.
    pub fn new(partitions: Vec<PartitionOffsets>) -> Self {
        WorkerOffsets { partitions }
    }

    /// Partition `index` (assignment order).
    pub fn partition(&self, index: usize) -> &PartitionOffsets {
        &self.partitions[index]
    }

    /// Partition `index` (assignment order), to report to.
    pub fn partition_mut(&mut self, index: usize) -> &mut PartitionOffsets {
        &mut self.partitions[index]
    }

    /// Every record placed before `frontier` is done.
    pub fn forget_before(&mut self, frontier: Time) {
        for partition in &mut self.partitions {
            partition.forget_before(frontier);
        }
    }

    /// Whether some partition's done offset is not what its last commit covered.
    pub fn uncommitted(&self) -> bool {
        self.partitions
            .iter()
            .any(|partition| partition.committed != Some(partition.done_offset()))
    }

    /// What a commit now covers: `(topic, partition, done offset)` per partition.
    pub fn done(&self) -> Vec<(String, i32, i64)> {
        self.partitions
            .iter()
            .map(|partition| (partition.topic.clone(), partition.partition, partition.done_offset()))
            .collect()
    }

    /// `done` (as [`WorkerOffsets::done`] returned it) is committed.
    pub fn committed(&mut self, done: &[(String, i32, i64)]) {
        debug_assert_eq!(done.len(), self.partitions.len());
        for (partition, (_, _, offset)) in self.partitions.iter_mut().zip(done) {
            partition.committed = Some(*offset);
        }
    }
}

impl OffsetTracker for WorkerOffsets {
    fn share(&self, time: Time) -> SourceShare {
        SourceShare {
            read_max: self
                .partitions
                .iter()
                .filter_map(|partition| partition.high_water.map(time_of))
                .max()
                .unwrap_or(0),
            partitions: self.partitions.iter().map(|partition| partition.share(time)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Returns and places `records` (offset, ts in ms, time placed at) in order.
    fn read(offsets: &mut PartitionOffsets, records: &[(i64, i64, Time)]) {
        for &(offset, ts, time) in records {
            offsets.returned(offset, Some(Ts(ts)));
            offsets.placed(time);
        }
    }

    #[test]
    fn the_done_offset_is_the_first_placed_record_not_done() {
        // Places records 10..13 at increasing times and moves the frontier past them one by
        // one: the done offset is the start, then the first record still placed, then one
        // past the last record returned.
        let mut offsets = PartitionOffsets::new("in", 0, 10, None);
        assert_eq!(offsets.done_offset(), 10, "nothing read: the start offset");
        read(&mut offsets, &[(10, 100, 100), (11, 200, 200), (12, 300, 300)]);
        assert_eq!(offsets.done_offset(), 10);
        offsets.forget_before(200);
        assert_eq!(
            offsets.done_offset(),
            11,
            "the record at 100 is done, the one at 200 not"
        );
        offsets.forget_before(301);
        assert_eq!(offsets.done_offset(), 13, "everything done: the next record to read");
        // A record returned and never placed (a known one: the restored state holds its
        // effect) is done as soon as it is read.
        offsets.returned(13, Some(Ts(400)));
        assert_eq!(offsets.done_offset(), 14);
    }

    #[test]
    fn a_share_resumes_at_the_first_record_placed_at_or_after_its_time() {
        // Four records placed at 10, 30, 20, 40 (a late one at 20): a checkpoint at 25
        // resumes at the record placed at 30, with the one placed at 20 after it known, and
        // the high-water mark before the record at 30.
        let mut offsets = PartitionOffsets::new("in", 3, 0, None);
        read(&mut offsets, &[(0, 10, 10), (1, 30, 30), (2, 15, 20), (3, 40, 40)]);
        let share = offsets.share(25);
        assert_eq!(
            share,
            PartitionShare {
                topic: "in".into(),
                partition: 3,
                resume: 1,
                known: vec![2],
                high_water: Some(Ts(10)),
            }
        );
        // Past every placement: resume after the last record, with the current high water.
        let share = offsets.share(41);
        assert_eq!((share.resume, share.known, share.high_water), (4, vec![], Some(Ts(40))));
    }

    #[test]
    fn restored_known_offsets_stay_known_until_read_again() {
        // A partition restored with known offsets 5 and 7 reports them in its shares until
        // they are returned, and says which returned records are known.
        let restored = PartitionShare {
            topic: "in".into(),
            partition: 0,
            resume: 4,
            known: vec![5, 7],
            high_water: Some(Ts(50)),
        };
        let mut offsets = PartitionOffsets::new("in", 0, 4, Some(&restored));
        assert_eq!(offsets.high_water(), Some(Ts(50)));
        assert_eq!(offsets.share(60).known, vec![5, 7]);
        assert!(!offsets.returned(4, Some(Ts(60))));
        offsets.placed(60);
        assert!(offsets.returned(5, Some(Ts(40))), "5 was known");
        offsets.placed(55);
        let share = offsets.share(60);
        assert_eq!((share.resume, share.known), (4, vec![5, 7]));
        assert_eq!(share.high_water, Some(Ts(50)), "the high water before offset 4");
    }

    #[test]
    fn a_record_without_a_ts_moves_no_high_water_mark() {
        // A refused record (no event ts) is placed like any other but leaves the high-water
        // mark where it was; the share after it carries that mark.
        let mut offsets = PartitionOffsets::new("in", 0, 0, None);
        read(&mut offsets, &[(0, 100, 100)]);
        offsets.returned(1, None);
        offsets.placed(100);
        assert_eq!(offsets.high_water(), Some(Ts(100)));
        let share = offsets.share(100);
        assert_eq!((share.resume, share.high_water), (0, None));
        assert_eq!(offsets.share(101).high_water, Some(Ts(100)));
    }

    #[test]
    fn a_worker_share_reads_max_over_its_partitions_and_commits_track_done_offsets() {
        // Two partitions with high-water marks at 2 s and 5 s: the worker's share has
        // read_max 5000 and one share per partition; a commit of the done offsets clears
        // `uncommitted` until another record is done.
        let mut first = PartitionOffsets::new("a", 0, 0, None);
        read(&mut first, &[(0, 2000, 2000)]);
        let mut second = PartitionOffsets::new("b", 1, 7, None);
        read(&mut second, &[(7, 5000, 5000)]);
        let mut worker = WorkerOffsets::new(vec![first, second]);
        let share = worker.share(3000);
        assert_eq!(share.read_max, 5000);
        assert_eq!(
            share
                .partitions
                .iter()
                .map(|p| (p.topic.as_str(), p.resume))
                .collect::<Vec<_>>(),
            vec![("a", 1), ("b", 7)]
        );
        assert!(worker.uncommitted(), "nothing committed yet");
        worker.forget_before(3000);
        let done = worker.done();
        assert_eq!(done, vec![("a".to_string(), 0, 1), ("b".to_string(), 1, 7)]);
        worker.committed(&done);
        assert!(!worker.uncommitted());
        worker.forget_before(6000);
        assert!(worker.uncommitted(), "b's record is done now");
        assert_eq!(worker.partition(1).done_offset(), 8);
        assert_eq!(WorkerOffsets::default().share(1), SourceShare::default());
    }
}
