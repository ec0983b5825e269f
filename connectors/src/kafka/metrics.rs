//! Figures of a stream's Kafka input for its metrics endpoint (issue 19), kept as atomics
//! the workers' consumers update and a scrape reads; no lock on a record's path.
//!
//! Per input partition: records read, the high-water mark (largest event `ts` read), the
//! consumer lag (librdkafka's statistics: records between the consumer's position and the
//! partition's end), late events, and whether it is held at the calendar's end. Per
//! worker: the output frontier its source last reported done. The pipeline's
//! `pipeline/src/metrics.rs` turns a [`InputMetrics::partitions`] snapshot into Prometheus
//! text.

use markledger_operators::flow::Time;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One partition's figures.
#[derive(Debug, Default)]
pub struct PartitionFigures {
    /// Records read.
    pub records: AtomicU64,
    /// The largest event `ts` read, in milliseconds since the Unix epoch (0: none yet).
    pub high_water_ms: AtomicI64,
    /// Records behind the partition's end, from librdkafka's last statistics (-1: none
    /// yet).
    pub lag: AtomicI64,
    /// Held at the calendar's end.
    pub held: AtomicBool,
    /// Events that took effect late.
    pub late: AtomicU64,
}

/// A snapshot of one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionSnapshot {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// Records read.
    pub records: u64,
    /// The largest event `ts` read, milliseconds (0: none yet).
    pub high_water_ms: i64,
    /// Records behind the partition's end (None: its end is not known yet).
    pub lag: Option<i64>,
    /// Held at the calendar's end.
    pub held: bool,
    /// Events that took effect late.
    pub late: u64,
}

/// A partition (topic, number) and its figures.
type Registered = ((String, i32), Arc<PartitionFigures>);

/// The figures of every partition and worker of a run.
#[derive(Debug, Default)]
pub struct InputMetrics {
    partitions: Mutex<Vec<Registered>>,
    frontiers: Mutex<Vec<Arc<AtomicU64>>>,
}

impl InputMetrics {
    /// Registers a partition (when a worker opens it); its figures, to update.
    pub fn partition(&self, topic: &str, partition: i32) -> Arc<PartitionFigures> {
        let figures = Arc::new(PartitionFigures {
            lag: AtomicI64::new(-1),
            ..PartitionFigures::default()
        });
        let mut partitions = self.partitions.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        partitions.push(((topic.to_string(), partition), figures.clone()));
        partitions.sort_by(|a, b| a.0.cmp(&b.0));
        figures
    }

    /// Registers a worker's source; its output frontier, to update.
    pub fn worker(&self) -> Arc<AtomicU64> {
        let frontier = Arc::new(AtomicU64::new(0));
        self.frontiers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(frontier.clone());
        frontier
    }

    /// Every partition's figures now, in topic and partition order.
    pub fn partitions(&self) -> Vec<PartitionSnapshot> {
        let partitions = self.partitions.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        partitions
            .iter()
            .map(|((topic, partition), figures)| {
                let lag = figures.lag.load(Ordering::Relaxed);
                PartitionSnapshot {
                    topic: topic.clone(),
                    partition: *partition,
                    records: figures.records.load(Ordering::Relaxed),
                    high_water_ms: figures.high_water_ms.load(Ordering::Relaxed),
                    lag: (lag >= 0).then_some(lag),
                    held: figures.held.load(Ordering::Relaxed),
                    late: figures.late.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// The run's output frontier: the least any worker has reported done (0: none yet).
    pub fn output_frontier(&self) -> Time {
        let frontiers = self.frontiers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        frontiers
            .iter()
            .map(|frontier| frontier.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0)
    }
}
