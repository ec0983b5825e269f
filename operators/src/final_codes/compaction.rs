//! Which runs to merge, and the merge (docs/FINAL_CODES.md, "Compaction and retention").
//!
//! Runs are grouped by *epoch* (the `final_at / epoch_ms` of their records) and merged only
//! within an epoch, newest runs first, so an epoch stays a contiguous stretch of event time
//! that retention drops whole, and the filter's entries (which name epochs, not runs) never
//! change. Two rules, the first that applies to the oldest epoch wins:
//!
//! - A *closed* epoch (event time is a whole epoch past its end: finality comes roughly in
//!   event-time order, so little more will arrive) with more than one run is merged into
//!   one: each closed epoch is then one file, read with one block per lookup.
//! - In an open epoch, the newest runs are merged while the run before them holds at most
//!   twice as many records as they do together: sizes grow geometrically, so an epoch has
//!   O(log(records / memtable)) runs and each record is rewritten O(log) times.
//!
//! A merge keeps, per key, the record with the latest `final_at` (a tie: the newer run's).

use super::run::{Found, Run, RunWriter};
use super::{StoreError, WriteLimit};
use crate::time::Ts;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// A merge to do: the runs `first..first + inputs.len()` of `epoch`.
pub(crate) struct Plan {
    pub epoch: i64,
    pub first: usize,
    pub inputs: Vec<Arc<Run>>,
}

/// The merge due first, if any.
pub(crate) fn plan(epochs: &BTreeMap<i64, Vec<Arc<Run>>>, now: Ts, epoch_ms: i64) -> Option<Plan> {
    for (epoch, runs) in epochs {
        if runs.len() < 2 {
            continue;
        }
        let closed = now.0 >= epoch.saturating_add(2).saturating_mul(epoch_ms);
        let first = if closed {
            0
        } else {
            let mut first = runs.len() - 1;
            let mut tail = runs[first].meta.records;
            while first > 0 && runs[first - 1].meta.records <= 2 * tail {
                first -= 1;
                tail += runs[first].meta.records;
            }
            first
        };
        if first < runs.len() - 1 {
            return Some(Plan {
                epoch: *epoch,
                first,
                inputs: runs[first..].to_vec(),
            });
        }
    }
    None
}

/// Merges `inputs` (runs of one epoch, oldest first) into the run file `name` in `dir`.
pub(crate) fn merge(
    dir: &Path,
    inputs: &[Arc<Run>],
    name: String,
    limit: Option<WriteLimit>,
    sync: bool,
) -> Result<Run, StoreError> {
    let epoch = inputs[0].meta.epoch;
    let order = inputs.iter().map(|run| run.meta.order).max().unwrap_or(0);
    let mut writer = RunWriter::create(dir, name, epoch, order, limit, sync)?;
    let mut scans: Vec<_> = inputs.iter().map(|run| run.scan()).collect();
    let mut heads: Vec<Option<Found>> = Vec::with_capacity(scans.len());
    for scan in &mut scans {
        heads.push(scan.next_record()?);
    }
    // A handful of inputs: a linear scan for the least key beats a heap.
    while let Some(key) = heads.iter().flatten().map(|found| found.key).min() {
        let mut best: Option<Found> = None;
        for (index, head) in heads.iter_mut().enumerate() {
            if head.as_ref().is_some_and(|found| found.key == key) {
                let found = head.take().expect("a head");
                // Later inputs are newer: on equal final_at the later one wins.
                if best.as_ref().is_none_or(|kept| found.final_at >= kept.final_at) {
                    best = Some(found);
                }
                *head = scans[index].next_record()?;
            }
        }
        let best = best.expect("the least key has a record");
        writer.push(best.key, best.final_at, best.status, &best.account)?;
    }
    writer.finish()
}
