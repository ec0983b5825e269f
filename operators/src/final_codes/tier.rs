//! "Codes: final tier" — where the national index (crate::codes) keeps the codes that can
//! never change again during a run: one [`FinalStore`] per worker, in a directory of the
//! run's [`FinalCodes`] place (docs/ARCHITECTURE.md, "Final codes on disk").
//!
//! In: from the index, each code that became final (`insert`), each lookup of a code the
//! index does not hold live (`get`), event time as it steps (`advance`), and checkpoint
//! saves and restores. Out: the final record of a code, or `None`; the store's manifest for
//! a checkpoint; the memory and disk the index's state costs ([`CodesMemory`]).
//!
//! - **Where.** Under `STATE/final-codes/worker-N` with `--state` (the files outlive the
//!   run: checkpoints name them), otherwise under a fresh temporary directory removed when
//!   the run ends ([`FinalCodes::temporary`]).
//! - **Garbage.** Files merged away or dropped by retention are deleted by
//!   [`FinalStore::collect_garbage`]: in a run without checkpoints as soon as the live runs
//!   shrink; in a run with checkpoints only once the pipeline has said which checkpoints it
//!   keeps ([`Checkpoints::keep_manifests`]), keeping every file they, or the manifests this
//!   worker saved recently (checkpoints possibly not written yet), name.
//! - **Failures.** A store error (a full disk, a torn file read back) ends the process with
//!   the store's message, which names the directory (STYLE.md "A failure ends the process"):
//!   a code the index cannot look up must never be taken for an unknown one.

use super::{
    Compaction, FinalRecord, FinalStore, Manifest, Settings, StoreError, Unsynced, WriteLimit, EPOCH_DEFAULT_MS,
};
use crate::checkpoint::Checkpoints;
use crate::flow::CodeKey;
use crate::status::Status;
use crate::time::Ts;
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The subdirectory of a state directory that holds the final-code stores.
pub const STATE_SUBDIR: &str = "final-codes";

/// Manifests this worker saved that stay protected from garbage collection until the
/// pipeline names the checkpoints it keeps (a checkpoint saved is written a little later).
const SAVED_KEPT: usize = 8;
/// Event time between two [`FinalStore::advance`] calls (or sooner after this many inserts).
const ADVANCE_EVERY_MS: i64 = 1_000;
const ADVANCE_EVERY_INSERTS: u64 = 4_096;

/// One worker's store directory under a run's root.
pub fn worker_dir(root: &Path, worker: usize) -> PathBuf {
    root.join(format!("worker-{worker}"))
}

/// What the national index's state holds and costs (the run summary's memory line).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CodesMemory {
    /// Codes not final yet, held in RAM.
    pub live_codes: u64,
    /// Final codes held (in the store's memtable and run files, within retention).
    pub final_codes: u64,
    /// Heap bytes of the index's code state, estimated: the live codes' table and the
    /// store's filter, indexes and memtable.
    pub ram_bytes: u64,
    /// Bytes of the store's live run files.
    pub disk_bytes: u64,
    /// The accounts' emission code text waiting for expiry (its own figures).
    pub emission_text: TextMemory,
}

/// What the emission code text waiting for expiry holds and costs (the accounts keep a
/// 24-byte reference per emission besides; segments.rs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TextMemory {
    /// Emissions whose code text is held.
    pub emissions: u64,
    /// Bytes in RAM: the buffer of text not sealed into a segment yet.
    pub ram_bytes: u64,
    /// Bytes of the live segment files.
    pub disk_bytes: u64,
}

impl std::ops::AddAssign for TextMemory {
    fn add_assign(&mut self, other: TextMemory) {
        self.emissions += other.emissions;
        self.ram_bytes += other.ram_bytes;
        self.disk_bytes += other.disk_bytes;
    }
}

impl std::ops::AddAssign for CodesMemory {
    fn add_assign(&mut self, other: CodesMemory) {
        self.live_codes += other.live_codes;
        self.final_codes += other.final_codes;
        self.ram_bytes += other.ram_bytes;
        self.disk_bytes += other.disk_bytes;
        self.emission_text += other.emission_text;
    }
}

/// Where one run keeps its final codes, shared by its workers (cheap to clone).
#[derive(Clone, Debug)]
pub struct FinalCodes {
    root: PathBuf,
    temporary: bool,
    /// Every final code goes to disk at once (a memtable of one record): tests run the
    /// disk path on small data.
    pub spill_all: bool,
    /// Fault injection: the stores' writes fail once this is used up (a full disk).
    pub write_limit: Option<WriteLimit>,
    memory: Arc<Mutex<BTreeMap<usize, CodesMemory>>>,
    /// What every worker's emission text reported last.
    text_memory: Arc<Mutex<BTreeMap<usize, TextMemory>>>,
}

static TEMPORARY: AtomicU64 = AtomicU64::new(0);

impl FinalCodes {
    /// Stores under `state/final-codes`, kept after the run (checkpoints name their files).
    pub fn in_state(state: &Path) -> FinalCodes {
        FinalCodes::at(state.join(STATE_SUBDIR), false)
    }

    /// Stores under a new directory in `base`, removed when the run ends (and the ones of
    /// runs that died, by the next run: crate::spill).
    pub fn temporary(base: &Path) -> FinalCodes {
        let n = TEMPORARY.fetch_add(1, Ordering::Relaxed);
        if n == 0 {
            crate::spill::remove_stale(base, "markledger-spill-");
        }
        let name = format!("markledger-spill-{}-{n}", std::process::id());
        FinalCodes::at(base.join(name), true)
    }

    fn at(root: PathBuf, temporary: bool) -> FinalCodes {
        FinalCodes {
            root,
            temporary,
            spill_all: false,
            write_limit: None,
            memory: Arc::default(),
            text_memory: Arc::default(),
        }
    }

    /// The directory holding the workers' stores.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether the directory is removed when the run ends.
    pub fn is_temporary(&self) -> bool {
        self.temporary
    }

    /// What every worker's index and emission text reported last, summed.
    pub fn memory(&self) -> Option<CodesMemory> {
        let memory = self.memory.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut total: Option<CodesMemory> = None;
        for worker in memory.values() {
            *total.get_or_insert_with(CodesMemory::default) += *worker;
        }
        let text = self.text_memory.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for worker in text.values() {
            total.get_or_insert_with(CodesMemory::default).emission_text += *worker;
        }
        total
    }

    /// Records what `worker`'s emission text holds now (segments.rs).
    pub fn publish_text(&self, worker: usize, memory: TextMemory) {
        let mut board = self.text_memory.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        board.insert(worker, memory);
    }

    /// Removes a temporary directory (and everything in it); a kept one is left alone.
    pub fn remove_temporary(&self) {
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }

    /// The store settings for a horizon of `retention_ms`: epochs of 10 days, longer when
    /// the horizon needs more than 250 of them.
    fn settings(&self, retention_ms: i64) -> Settings {
        let retention_ms = retention_ms.max(1);
        let defaults = Settings::default();
        Settings {
            retention_ms,
            epoch_ms: EPOCH_DEFAULT_MS.max(retention_ms / 250 + 1),
            memtable_records_max: if self.spill_all {
                1
            } else {
                defaults.memtable_records_max
            },
            expected_codes: if self.spill_all { 64 } else { defaults.expected_codes },
            write_limit: self.write_limit.clone(),
            sync: !self.spill_all,
            // Every insert is a run file: merge at once, so that runs stay few.
            compaction: if self.spill_all {
                Compaction::Inline
            } else {
                Compaction::Background
            },
        }
    }
}

/// Ends the process with the store's error (it names the directory and the file).
fn fail(error: StoreError) -> ! {
    panic!("{error}")
}

/// One worker's final codes (see the module docs). Not saved itself: a checkpoint records
/// the store's [`Manifest`].
pub struct Tier {
    place: FinalCodes,
    worker: usize,
    retention_ms: i64,
    store: Option<FinalStore>,
    checkpoints: Option<Checkpoints>,
    /// The generation of the kept manifests last read ([`Checkpoints::kept_manifests`]).
    kept_generation: u64,
    kept: Vec<Manifest>,
    saved: VecDeque<Manifest>,
    runs_at_collect: usize,
    last_advance: Option<Ts>,
    inserts_since_advance: u64,
    advances: u64,
}

impl std::fmt::Debug for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tier")
            .field("dir", &self.dir())
            .field("open", &self.store.is_some())
            .finish()
    }
}

impl Tier {
    /// Worker 0's tier in `place` (the worker is set by [`Tier::attach`]); nothing is
    /// created on disk until the first final code.
    pub fn new(place: FinalCodes, retention_ms: i64) -> Tier {
        Tier {
            place,
            worker: 0,
            retention_ms,
            store: None,
            checkpoints: None,
            kept_generation: 0,
            kept: Vec::new(),
            saved: VecDeque::new(),
            runs_at_collect: 0,
            last_advance: None,
            inserts_since_advance: 0,
            advances: 0,
        }
    }

    /// The worker this tier belongs to, and the run's checkpoints (if it takes them).
    pub fn attach(&mut self, worker: usize, checkpoints: Option<Checkpoints>) {
        self.worker = worker;
        self.checkpoints = checkpoints;
    }

    /// The retention horizon (the index's own).
    pub fn set_retention(&mut self, retention_ms: i64) {
        self.retention_ms = retention_ms;
    }

    /// This worker's store directory.
    pub fn dir(&self) -> PathBuf {
        worker_dir(&self.place.root, self.worker)
    }

    fn store(&mut self) -> &mut FinalStore {
        if self.store.is_none() {
            let settings = self.place.settings(self.retention_ms);
            let store = FinalStore::create(&self.dir(), settings).unwrap_or_else(|error| fail(error));
            self.store = Some(store);
        }
        self.store.as_mut().expect("created")
    }

    /// The final record of `key` at `now`, if it is final here and within retention.
    pub fn get(&self, key: CodeKey, now: Ts) -> Option<FinalRecord> {
        let store = self.store.as_ref()?;
        store.get(key, now).unwrap_or_else(|error| fail(error))
    }

    /// `key` became final.
    pub fn insert(&mut self, key: CodeKey, record: FinalRecord) {
        self.insert_final(key, &record.account, record.status, record.final_at);
    }

    /// `key` became final in `status` at `final_at`, owned by the account named `account`
    /// (no record to build: the store shares its own copy of the name).
    pub fn insert_final(&mut self, key: CodeKey, account: &str, status: Status, final_at: Ts) {
        self.inserts_since_advance += 1;
        self.store()
            .insert_final(key, account, status, final_at)
            .unwrap_or_else(|error| fail(error));
        if self.place.spill_all {
            // Each insert wrote a run file: merge now, at the time of the last advance.
            let now = self.last_advance.unwrap_or(Ts::MIN);
            self.store().advance(now).unwrap_or_else(|error| fail(error));
            self.collect_garbage();
        }
    }

    /// Event time is `now`: retention, merges and garbage collection, at most once per
    /// second of event time (or per few thousand inserts). Whether it ran.
    pub fn advance(&mut self, now: Ts) -> bool {
        let Some(store) = self.store.as_mut() else { return false };
        let recent = self
            .last_advance
            .is_some_and(|last| now < last.plus_millis(ADVANCE_EVERY_MS));
        if recent && self.inserts_since_advance < ADVANCE_EVERY_INSERTS {
            return false;
        }
        self.last_advance = Some(now);
        self.inserts_since_advance = 0;
        self.advances += 1;
        store.advance(now).unwrap_or_else(|error| fail(error));
        self.collect_garbage();
        true
    }

    /// Deletes files no live state, no kept checkpoint and no recent save names: when the
    /// live runs have shrunk (a merge installed, an epoch dropped) or the pipeline has
    /// named the checkpoints it keeps.
    fn collect_garbage(&mut self) {
        let Some(store) = self.store.as_ref() else { return };
        let mut news = false;
        if let Some(checkpoints) = &self.checkpoints {
            if let Some((generation, kept)) = checkpoints.kept_manifests(self.worker, self.kept_generation) {
                self.kept_generation = generation;
                self.kept = kept;
                news = true;
            }
            if self.kept_generation == 0 {
                // The pipeline has not said which checkpoints it keeps: collect nothing.
                return;
            }
        }
        let runs = store.stats().runs;
        if runs < self.runs_at_collect || news {
            let kept: Vec<&Manifest> = self.kept.iter().chain(&self.saved).collect();
            store.collect_garbage(&kept).unwrap_or_else(|error| fail(error));
        }
        self.runs_at_collect = runs;
    }

    /// Seals the memtable and gives the manifest a checkpoint records (`None`: no final
    /// code yet).
    pub fn checkpoint(&mut self) -> Option<Manifest> {
        let store = self.store.as_mut()?;
        let manifest = store.checkpoint().unwrap_or_else(|error| fail(error));
        self.saved.push_back(manifest.clone());
        if self.saved.len() > SAVED_KEPT {
            self.saved.pop_front();
        }
        Some(manifest)
    }

    /// The run files sealed since the last call and not yet fsynced: settled before a
    /// checkpoint naming them is written.
    pub fn take_unsynced(&mut self) -> Option<Unsynced> {
        self.store.as_mut().map(FinalStore::take_unsynced)
    }

    /// Opens the store a checkpoint's manifest describes (its files verified).
    pub fn open(&mut self, manifest: &Manifest) -> Result<(), StoreError> {
        self.store = None;
        let settings = self.place.settings(self.retention_ms);
        self.store = Some(FinalStore::open(&self.dir(), settings, manifest)?);
        self.saved.push_back(manifest.clone());
        Ok(())
    }

    /// Builds this worker's store anew from the stores of a checkpoint written by another
    /// worker count (`stores`: each old worker's manifest, its files in that worker's
    /// directory), keeping the records `owned` says are this worker's (a record's key group
    /// is its code's). The new store is in this worker's directory: files already there
    /// (an old worker's of the same number, named by the restored checkpoint) are left
    /// alone, new runs are numbered past them, and they become garbage once no kept
    /// checkpoint names them. Every file read is verified as [`FinalStore::open`] does.
    pub fn rebuild(&mut self, stores: &[(usize, Manifest)], owned: &dyn Fn(CodeKey) -> bool) -> Result<(), StoreError> {
        self.store = None;
        let settings = self.place.settings(self.retention_ms);
        let mut store = FinalStore::create(&self.dir(), settings)?;
        for (old_worker, manifest) in stores {
            store.absorb_runs(&worker_dir(&self.place.root, *old_worker), manifest, owned)?;
        }
        self.store = Some(store);
        Ok(())
    }

    /// Reports what the index's state holds and costs; `live` is the index's own part.
    pub fn publish(&self, live: CodesMemory) {
        let mut memory = live;
        if let Some(store) = &self.store {
            let stats = store.stats();
            memory.final_codes += stats.memtable_records as u64 + stats.records_on_disk;
            memory.ram_bytes += stats.heap_bytes() as u64;
            memory.disk_bytes += stats.disk_bytes;
        }
        let mut board = self
            .place
            .memory
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        board.insert(self.worker, memory);
    }

    /// Whether to publish after an advance (every 64th: the summary's figures stay fresh
    /// without costing a step).
    pub fn publish_due(&self) -> bool {
        self.advances % 64 == 1
    }
}

impl Drop for Tier {
    fn drop(&mut self) {
        if self.place.temporary {
            self.store = None;
            let _ = std::fs::remove_dir_all(self.dir());
            // The last worker out removes the run's directory (it is empty by then).
            let _ = std::fs::remove_dir(&self.place.root);
        }
    }
}
