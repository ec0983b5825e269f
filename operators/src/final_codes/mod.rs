//! "Codes: final store" — the codes that can never change again, on disk, with a filter in
//! RAM that answers for absent codes without touching the disk (issue 17;
//! docs/FINAL_CODES.md has the design, its figures and how to measure them).
//!
//! In: per worker, `insert(key, record)` for each code the accounts report final
//! (rejected, introduced, expired, annulled and paid), roughly in event-time order, and
//! `get(key, now)` for each code an emission or command names. Out: the record (owner by
//! stable account name, final status, since when), or `None` for a code never final here
//! or final for at least the retention at `now`.
//!
//! Partitioning: one store per worker, in its own directory, holding the codes routed to
//! that worker ([`crate::flow::CodesIn::route`]). Not shared between threads; merges run on
//! one background thread per store.
//!
//! Structure (an LSM tree whose levels are epochs of event time):
//! - a *memtable* of recent finals in RAM, sealed into immutable sorted *run files* when it
//!   reaches [`Settings::memtable_records_max`] or a checkpoint asks ([`run`]);
//! - runs grouped by *epoch*, the `final_at / epoch_ms` of their records, merged within an
//!   epoch ([`compaction`]) and dropped a whole epoch at a time by retention;
//! - one global fingerprint table ([`filter`]) that maps a key to the epochs that may hold
//!   it: an absent key costs two cache lines, whatever the number of runs;
//! - incremental checkpoints: a [`Manifest`] names the run files, which are never modified,
//!   so a checkpoint writes only the memtable; [`FinalStore::collect_garbage`] deletes files
//!   no live state or kept manifest names.
//!
//! Invariants: every record inserted and not past retention is found by `get`; for one key
//! the record with the latest `final_at` wins (equal: the later insert); every key of the
//! memtable and of the live runs is in the filter under its epoch's tag; a file named in a
//! manifest is never modified or deleted while that manifest is kept.

mod compaction;
mod filter;
mod manifest;
mod record;
mod run;
mod segments;
mod store;
mod tier;

pub use manifest::{Manifest, RunRef, MANIFEST_FORMAT_VERSION};
pub use record::{FinalRecord, RECORD_BYTES};
pub use run::{Unsynced, BLOCK_BYTES, RECORDS_PER_BLOCK, RUN_FORMAT_VERSION};
pub use segments::{
    segment_name, segments_dir, verify_segments, EmissionEntry, EmissionText, SegmentReader, TextRef, SEGMENTS_SUBDIR,
    SEGMENT_BYTES_MAX,
};
pub use store::{FinalStore, GarbageReport, Stats};
pub use tier::{worker_dir, CodesMemory, FinalCodes, TextMemory, Tier, STATE_SUBDIR};

use crate::time::MILLIS_PER_DAY;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Why the store could not do what it was asked. Every variant names the store's directory
/// (and the file): a caller can tell which disk is full or which checkpoint to give up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Reading, writing, syncing, renaming or deleting failed (a full disk is
    /// `ErrorKind::StorageFull`). Nothing was lost: what could not be written is still in
    /// RAM, and the next seal or checkpoint tries again.
    #[error("final-code store {}: {action} {file}: {source}", .dir.display())]
    Io {
        /// The store's directory.
        dir: PathBuf,
        /// The file (or `.` for the directory itself).
        file: String,
        /// What was being done.
        action: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A run file does not verify: torn, corrupt, or not the file the manifest names. The
    /// caller restores an older checkpoint.
    #[error("final-code store {}: run file {file} is torn or corrupt: {detail}", .dir.display())]
    Corrupt {
        /// The store's directory.
        dir: PathBuf,
        /// The file.
        file: String,
        /// What did not verify.
        detail: String,
    },
    /// The manifest cannot be restored with this build or these settings.
    #[error("final-code store {}: the manifest cannot be restored: {detail}", .dir.display())]
    Manifest {
        /// The store's directory.
        dir: PathBuf,
        /// Why.
        detail: String,
    },
    /// A record's `final_at` is 256 epochs or more away from a live epoch (its filter tag
    /// would be ambiguous): an implausible time that validation should have refused.
    #[error("final-code store: final_at {final_at} is in epoch {epoch}, 256 epochs from the live epoch {live}")]
    EpochSpan {
        /// The record's time, in ms.
        final_at: i64,
        /// Its epoch.
        epoch: i64,
        /// The live epoch holding the same tag.
        live: i64,
    },
}

/// Where merges run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compaction {
    /// On a background thread (one per store); finished merges are installed by the next
    /// [`FinalStore::advance`].
    Background,
    /// Inside [`FinalStore::advance`] (tests, and benches that want repeatable work).
    Inline,
}

/// A simulated disk that fills up: writes fail with `ErrorKind::StorageFull` once `bytes`
/// have been written through it (fault injection for tests; shared by clones).
#[derive(Clone, Debug)]
pub struct WriteLimit(Arc<AtomicU64>);

impl WriteLimit {
    /// A limit of `bytes` more bytes.
    pub fn new(bytes: u64) -> WriteLimit {
        WriteLimit(Arc::new(AtomicU64::new(bytes)))
    }

    /// Sets the bytes left (frees space, or fills the disk).
    pub fn set(&self, bytes: u64) {
        self.0.store(bytes, Ordering::SeqCst);
    }

    fn take(&self, bytes: u64) -> std::io::Result<()> {
        self.0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(bytes))
            .map(|_| ())
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::StorageFull, "no space left (write limit)"))
    }
}

/// How a store is run.
#[derive(Clone, Debug)]
pub struct Settings {
    /// A record is forgotten once final for this long (DOMAIN.md §7: 5 years).
    pub retention_ms: i64,
    /// Event time per epoch: the unit retention drops and merges stay within. At most 253
    /// epochs may be live: `retention_ms / epoch_ms + 3 ≤ 256`.
    pub epoch_ms: i64,
    /// The memtable is sealed into a run file at this many records.
    pub memtable_records_max: usize,
    /// Codes the store is expected to hold at its peak: the filter is sized for them at
    /// once (it grows by a rebuild from the run files otherwise).
    pub expected_codes: u64,
    /// Where merges run.
    pub compaction: Compaction,
    /// Fault injection: writes fail once this is used up (`None`: the real disk only).
    pub write_limit: Option<WriteLimit>,
    /// Whether run files and the directory are fsynced (tests that spill every code and
    /// throw the files away turn it off: durability is not what they check).
    pub sync: bool,
}

/// Five years and six hours, the pipeline's default retention (pipeline `FIVE_YEARS_MS`).
pub const RETENTION_DEFAULT_MS: i64 = 1_826 * MILLIS_PER_DAY + 6 * crate::time::MILLIS_PER_HOUR;
/// Ten days: 183 epochs in five years, one run file each once closed.
pub const EPOCH_DEFAULT_MS: i64 = 10 * MILLIS_PER_DAY;
/// 65,536 records (1.8 MB a run file, about 5 MB of RAM).
pub const MEMTABLE_RECORDS_DEFAULT: usize = 1 << 16;

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            retention_ms: RETENTION_DEFAULT_MS,
            epoch_ms: EPOCH_DEFAULT_MS,
            memtable_records_max: MEMTABLE_RECORDS_DEFAULT,
            expected_codes: 1 << 20,
            compaction: Compaction::Background,
            write_limit: None,
            sync: true,
        }
    }
}

#[cfg(test)]
mod tests;
