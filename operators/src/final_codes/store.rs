//! The store of one worker: memtable, epochs of run files, the filter, retention, merges,
//! checkpoints and garbage collection (the module doc of [`super`] has the contract).

use super::compaction::{self, Plan};
use super::filter::{EpochFilter, TAGS};
use super::manifest::{Manifest, RunRef, MANIFEST_FORMAT_VERSION};
use super::record::FinalRecord;
use super::run::{self, Run, RunMeta, RunWriter, Unsynced};
use super::{Compaction, Settings, StoreError};
use crate::flow::{CodeKey, CodeMap};
use crate::status::Status;
use crate::time::Ts;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Buckets of the filter [`FinalStore::advance`] sweeps per call while dead slots remain
/// (256 KiB of table: bounded work per call; a full pass over a 10⁹-slot table takes
/// about 12,000 calls, far fewer than the instants of one epoch).
const SWEEP_BUCKETS_PER_ADVANCE: usize = 4_096;
/// The filter is rebuilt larger when an insert would take its live entries past this
/// fraction of its slots (per mille).
const FILTER_LOAD_MAX_PER_MILLE: u64 = 960;
/// A rebuilt filter has room for this many times the keys it holds (per mille).
const FILTER_GROWTH_PER_MILLE: u64 = 1_250;

/// What the store holds and what it costs (for measurements and logs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Records in the memtable.
    pub memtable_records: usize,
    /// Live run files.
    pub runs: usize,
    /// Live epochs.
    pub epochs: usize,
    /// Records in live run files (a key final twice is counted once per run holding it).
    pub records_on_disk: u64,
    /// Bytes of live run files.
    pub disk_bytes: u64,
    /// Heap bytes of the filter.
    pub filter_bytes: usize,
    /// Heap bytes of the runs' sparse indexes and dictionaries.
    pub index_bytes: usize,
    /// Heap bytes of the memtable (its table's capacity) and the account names.
    pub memtable_bytes: usize,
    /// Slots of the filter and how many hold a live key.
    pub filter_slots: u64,
    /// Slots of the filter holding a live key.
    pub filter_live: u64,
    /// Blocks `get` has read from the live run files (the disk reads of lookups).
    pub lookup_block_reads: u64,
}

impl Stats {
    /// All heap bytes the store accounts for.
    pub fn heap_bytes(&self) -> usize {
        self.filter_bytes + self.index_bytes + self.memtable_bytes
    }
}

/// What [`FinalStore::collect_garbage`] deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GarbageReport {
    /// Files deleted.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
}

/// A merge under way.
struct Merging {
    plan: Plan,
    output: String,
    work: MergeWork,
}

enum MergeWork {
    Thread(JoinHandle<Result<Run, StoreError>>),
    Done(Result<Run, StoreError>),
}

/// The final codes of one worker.
pub struct FinalStore {
    dir: PathBuf,
    settings: Settings,
    /// Recent finals not yet in a run file. Looked up, never iterated into an output.
    memtable: CodeMap<FinalRecord>,
    /// Live epochs and their runs, oldest first (by `order`).
    epochs: BTreeMap<i64, Vec<Arc<Run>>>,
    /// The epoch holding each filter tag.
    tag_epoch: [Option<i64>; TAGS],
    filter: EpochFilter,
    /// Account names, shared by every record naming them.
    accounts: HashSet<Arc<str>>,
    next_sequence: u64,
    now: Ts,
    merging: Option<Merging>,
    /// Run files sealed since the last checkpoint, not yet fsynced ([`Unsynced`]).
    unsynced: Unsynced,
}

fn tag_of(epoch: i64) -> u8 {
    epoch.rem_euclid(TAGS as i64) as u8
}

fn intern(accounts: &mut HashSet<Arc<str>>, name: &str) -> Arc<str> {
    if let Some(shared) = accounts.get(name) {
        return shared.clone();
    }
    let shared: Arc<str> = Arc::from(name);
    accounts.insert(shared.clone());
    shared
}

/// The next free sequence number in `dir`: past every run file there, whatever wrote it
/// (a crashed run's files are never overwritten, so a kept checkpoint stays intact).
fn next_free_sequence(dir: &Path, at_least: u64) -> Result<u64, StoreError> {
    let mut next = at_least;
    for name in file_names(dir)? {
        if let Some(sequence) = run::sequence_of(&name) {
            next = next.max(sequence + 1);
        }
    }
    Ok(next)
}

fn file_names(dir: &Path) -> Result<Vec<String>, StoreError> {
    let listing = |error| StoreError::Io {
        dir: dir.to_path_buf(),
        file: ".".into(),
        action: "listing",
        source: error,
    };
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(listing)? {
        let entry = entry.map_err(listing)?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    Ok(names)
}

fn check_settings(settings: &Settings) {
    assert!(
        settings.epoch_ms > 0 && settings.retention_ms > 0,
        "positive epoch and retention"
    );
    assert!(
        settings.retention_ms / settings.epoch_ms + 3 <= TAGS as i64,
        "at most 253 epochs in the retention horizon"
    );
    assert!(
        settings.memtable_records_max > 0,
        "a memtable holds at least one record"
    );
}

impl FinalStore {
    /// An empty store in `dir` (created if missing). Files already there are left alone
    /// until [`FinalStore::collect_garbage`]; new runs are numbered past them.
    pub fn create(dir: &Path, settings: Settings) -> Result<FinalStore, StoreError> {
        check_settings(&settings);
        fs::create_dir_all(dir).map_err(|error| StoreError::Io {
            dir: dir.to_path_buf(),
            file: ".".into(),
            action: "creating",
            source: error,
        })?;
        let filter = EpochFilter::with_capacity(settings.expected_codes.max(settings.memtable_records_max as u64));
        Ok(FinalStore {
            dir: dir.to_path_buf(),
            next_sequence: next_free_sequence(dir, 0)?,
            settings,
            memtable: CodeMap::default(),
            epochs: BTreeMap::new(),
            tag_epoch: [None; TAGS],
            filter,
            accounts: HashSet::new(),
            now: Ts::MIN,
            merging: None,
            unsynced: Unsynced::new(dir),
        })
    }

    /// The store `manifest` describes, from the run files in `dir`. Each file is read whole
    /// and verified (size, checksum, every block); the filter is rebuilt from their keys.
    /// A missing, torn or corrupt file is an error naming it: restore an older checkpoint.
    pub fn open(dir: &Path, settings: Settings, manifest: &Manifest) -> Result<FinalStore, StoreError> {
        check_settings(&settings);
        let refuse = |detail: String| StoreError::Manifest {
            dir: dir.to_path_buf(),
            detail,
        };
        manifest.check_format("final-code", dir)?;
        if manifest.epoch_ms != settings.epoch_ms {
            return Err(refuse(format!(
                "its runs are grouped by epochs of {} ms, the settings say {} ms",
                manifest.epoch_ms, settings.epoch_ms
            )));
        }
        let capacity = (manifest.records() * FILTER_GROWTH_PER_MILLE / 1_000)
            .max(settings.expected_codes)
            .max(settings.memtable_records_max as u64);
        let mut store = FinalStore::create(dir, FinalStore::with_capacity(settings, capacity))?;
        store.next_sequence = next_free_sequence(dir, manifest.next_sequence)?;
        let mut overflowed = false;
        for entry in &manifest.runs {
            store
                .ensure_epoch(entry.epoch)
                .map_err(|error| refuse(error.to_string()))?;
            let tag = tag_of(entry.epoch);
            let (accounts, filter) = (&mut store.accounts, &mut store.filter);
            let run = Run::open(
                dir,
                &RunMeta::from(entry),
                &mut |name| intern(accounts, name),
                &mut |key, _| overflowed |= !filter.insert(key, tag),
            )?;
            store.epochs.get_mut(&entry.epoch).expect("ensured").push(Arc::new(run));
        }
        if overflowed {
            store.rebuild_filter(None)?;
        }
        Ok(store)
    }

    /// Verifies the run files `manifest` names in `dir` without opening a store: each is
    /// read whole and checked as [`FinalStore::open`] checks it (size, trailer, every block,
    /// checksum). A checkpoint loader calls it to refuse a checkpoint whose files are torn or
    /// corrupt before any worker starts from it. Returns the records of the runs.
    pub fn verify(dir: &Path, manifest: &Manifest) -> Result<u64, StoreError> {
        manifest.check_format("final-code", dir)?;
        let mut records = 0;
        for entry in &manifest.runs {
            let run = Run::open(dir, &RunMeta::from(entry), &mut |name| Arc::from(name), &mut |_, _| {})?;
            records += run.meta.records;
        }
        Ok(records)
    }

    /// Inserts the records of the run files `manifest` names in `dir` (another store's,
    /// each file verified as [`FinalStore::open`] does) whose key `keep` accepts: a restore
    /// at another worker count builds a worker's store from the old workers' (tier.rs).
    pub fn absorb_runs(
        &mut self,
        dir: &Path,
        manifest: &Manifest,
        keep: &dyn Fn(CodeKey) -> bool,
    ) -> Result<(), StoreError> {
        manifest.check_format("final-code", dir)?;
        for entry in &manifest.runs {
            let accounts = &mut self.accounts;
            let run = Run::open(
                dir,
                &RunMeta::from(entry),
                &mut |name| intern(accounts, name),
                &mut |_, _| {},
            )?;
            let mut scan = run.scan();
            while let Some(found) = scan.next_record()? {
                if !keep(found.key) {
                    continue;
                }
                let record = FinalRecord {
                    account: found.account,
                    status: found.status,
                    final_at: found.final_at,
                };
                self.insert(found.key, record)?;
            }
        }
        Ok(())
    }

    fn with_capacity(mut settings: Settings, capacity: u64) -> Settings {
        settings.expected_codes = capacity;
        settings
    }

    /// Makes `epoch` live (with its filter tag) if it is not.
    fn ensure_epoch(&mut self, epoch: i64) -> Result<(), StoreError> {
        if self.epochs.contains_key(&epoch) {
            return Ok(());
        }
        let tag = tag_of(epoch);
        if let Some(live) = self.tag_epoch[tag as usize] {
            return Err(StoreError::EpochSpan {
                final_at: epoch.saturating_mul(self.settings.epoch_ms),
                epoch,
                live,
            });
        }
        if self.filter.stale(tag) {
            // Only when the bounded sweeps of `advance` have not reached every dead slot in
            // 256 epochs: a full pass once.
            self.filter.sweep_all();
        }
        self.tag_epoch[tag as usize] = Some(epoch);
        self.filter.set_live(tag, true);
        self.epochs.insert(epoch, Vec::new());
        Ok(())
    }

    fn epoch_of(&self, at: Ts) -> i64 {
        at.0.div_euclid(self.settings.epoch_ms)
    }

    fn expired(&self, final_at: Ts, now: Ts) -> bool {
        final_at.plus_millis(self.settings.retention_ms) <= now
    }

    /// Records that `key` became final. A record already past retention (at the `now` of
    /// the last [`FinalStore::advance`]) is not kept. For a key inserted twice, the record
    /// with the later `final_at` wins (equal: this one). Seals the memtable into a run file
    /// when it is full; an error then leaves the record in RAM (found by `get`), and the
    /// next insert or checkpoint writes it.
    pub fn insert(&mut self, key: CodeKey, record: FinalRecord) -> Result<(), StoreError> {
        self.insert_final(key, &record.account, record.status, record.final_at)
    }

    /// [`FinalStore::insert`] of the record `account`, `status`, `final_at`, the account by
    /// name: the store shares its own copy of each name, so a caller that holds names
    /// elsewhere (the index's interned accounts) allocates nothing per code.
    pub fn insert_final(
        &mut self,
        key: CodeKey,
        account: &str,
        status: Status,
        final_at: Ts,
    ) -> Result<(), StoreError> {
        if self.expired(final_at, self.now) {
            return Ok(());
        }
        let epoch = self.epoch_of(final_at);
        self.ensure_epoch(epoch)?;
        let tag = tag_of(epoch);
        let load_max = self.filter.slots() * FILTER_LOAD_MAX_PER_MILLE / 1_000;
        if self.filter.live_entries() >= load_max || !self.filter.insert(key, tag) {
            self.rebuild_filter(Some((key, tag)))?;
        }
        let account = intern(&mut self.accounts, account);
        let record = FinalRecord {
            account,
            status,
            final_at,
        };
        // One probe of the memtable: the common case is a key not there yet.
        match self.memtable.entry(key) {
            std::collections::hash_map::Entry::Occupied(kept) if kept.get().final_at > final_at => {}
            std::collections::hash_map::Entry::Occupied(mut kept) => {
                kept.insert(record);
            }
            std::collections::hash_map::Entry::Vacant(vacant) => {
                vacant.insert(record);
            }
        }
        if self.memtable.len() >= self.settings.memtable_records_max {
            self.seal()?;
        }
        Ok(())
    }

    /// Builds a larger filter from the memtable and every live run (and `extra`), and
    /// replaces the current one only once it is complete: an I/O error leaves the store
    /// as it was.
    fn rebuild_filter(&mut self, extra: Option<(CodeKey, u8)>) -> Result<(), StoreError> {
        let held = self.filter.live_entries() + 1;
        let mut capacity = held * FILTER_GROWTH_PER_MILLE / 1_000;
        loop {
            let mut filter = EpochFilter::with_capacity(capacity);
            for (tag, epoch) in self.tag_epoch.iter().enumerate() {
                filter.set_live(tag as u8, epoch.is_some());
            }
            let mut fits = extra.is_none_or(|(key, tag)| filter.insert(key, tag));
            for (key, record) in &self.memtable {
                fits &= filter.insert(*key, tag_of(self.epoch_of(record.final_at)));
            }
            for runs in self.epochs.values() {
                for run in runs {
                    let tag = tag_of(run.meta.epoch);
                    let mut scan = run.scan();
                    while let Some(found) = scan.next_record()? {
                        fits &= filter.insert(found.key, tag);
                    }
                }
            }
            if fits {
                self.filter = filter;
                return Ok(());
            }
            capacity = capacity * 3 / 2 + 21;
        }
    }

    /// The record of `key`, or `None` if it was never inserted or is final for at least
    /// the retention at `now` (`now` at or after the last [`FinalStore::advance`]'s). An
    /// absent key is answered from the filter alone in all but ~0.06 % of lookups; a
    /// present one reads one block per run of its epoch (one for a closed epoch).
    pub fn get(&self, key: CodeKey, now: Ts) -> Result<Option<FinalRecord>, StoreError> {
        let candidates = self.filter.candidates(key);
        if candidates.is_empty() {
            return Ok(None);
        }
        // (record, recency): the memtable is newer than every run.
        let mut best: Option<(FinalRecord, u64)> = self.memtable.get(&key).map(|record| (record.clone(), u64::MAX));
        let epochs: Vec<i64> = if candidates.every {
            self.epochs.keys().copied().collect()
        } else {
            candidates
                .tags()
                .iter()
                .filter_map(|tag| self.tag_epoch[*tag as usize])
                .collect()
        };
        for epoch in epochs {
            for run in self.epochs.get(&epoch).into_iter().flatten() {
                if let Some(found) = run.get(key)? {
                    let newer = best
                        .as_ref()
                        .is_none_or(|(kept, order)| (found.final_at, run.meta.order) > (kept.final_at, *order));
                    if newer {
                        let record = FinalRecord {
                            account: found.account,
                            status: found.status,
                            final_at: found.final_at,
                        };
                        best = Some((record, run.meta.order));
                    }
                }
            }
        }
        Ok(best
            .map(|(record, _)| record)
            .filter(|record| !self.expired(record.final_at, now)))
    }

    /// Moves event time to `now`: drops every epoch wholly past retention (its run files
    /// leave the live set in O(runs); their bytes go at the next garbage collection),
    /// sweeps a bounded part of the filter's dead slots, installs a finished merge and
    /// starts the next one due. An error is a merge that could not be written (nothing is
    /// lost: its inputs stay live, and a later call tries again).
    pub fn advance(&mut self, now: Ts) -> Result<(), StoreError> {
        self.now = self.now.max(now);
        self.drop_expired_epochs();
        if self.filter.dead_entries() > 0 {
            self.filter.sweep(SWEEP_BUCKETS_PER_ADVANCE);
        }
        self.install_merge(false)?;
        if self.merging.is_none() {
            self.start_merge();
            self.install_merge(false)?;
        }
        Ok(())
    }

    fn drop_expired_epochs(&mut self) {
        while let Some((&epoch, _)) = self.epochs.first_key_value() {
            let end = Ts(epoch.saturating_add(1).saturating_mul(self.settings.epoch_ms));
            if !self.expired(end, self.now) {
                break;
            }
            self.epochs.remove(&epoch);
            let tag = tag_of(epoch);
            self.tag_epoch[tag as usize] = None;
            self.filter.set_live(tag, false);
            let epoch_ms = self.settings.epoch_ms;
            self.memtable
                .retain(|_, record| record.final_at.0.div_euclid(epoch_ms) != epoch);
        }
    }

    fn start_merge(&mut self) {
        let Some(plan) = compaction::plan(&self.epochs, self.now, self.settings.epoch_ms) else {
            return;
        };
        let output = run::file_name(self.next_sequence);
        self.next_sequence += 1;
        let (dir, inputs, name, limit) = (
            self.dir.clone(),
            plan.inputs.clone(),
            output.clone(),
            self.settings.write_limit.clone(),
        );
        let sync = self.settings.sync;
        let work = match self.settings.compaction {
            Compaction::Inline => MergeWork::Done(compaction::merge(&dir, &inputs, name, limit, sync)),
            Compaction::Background => MergeWork::Thread(
                std::thread::Builder::new()
                    .name("final-codes merge".into())
                    .spawn(move || compaction::merge(&dir, &inputs, name, limit, sync))
                    .expect("a merge thread starts"),
            ),
        };
        self.merging = Some(Merging { plan, output, work });
    }

    /// Installs the merge under way if it has finished (or, with `wait`, once it has).
    fn install_merge(&mut self, wait: bool) -> Result<(), StoreError> {
        let finished = match &self.merging {
            None => return Ok(()),
            Some(Merging {
                work: MergeWork::Thread(handle),
                ..
            }) => wait || handle.is_finished(),
            Some(_) => true,
        };
        if !finished {
            return Ok(());
        }
        let Merging { plan, output, work } = self.merging.take().expect("a merge");
        let result = match work {
            MergeWork::Done(result) => result,
            MergeWork::Thread(handle) => handle.join().expect("the merge thread does not panic"),
        };
        let run = result?;
        let runs = self.epochs.get_mut(&plan.epoch);
        let current = runs
            .as_ref()
            .and_then(|runs| runs.get(plan.first..plan.first + plan.inputs.len()));
        let unchanged = current.is_some_and(|current| {
            current
                .iter()
                .zip(&plan.inputs)
                .all(|(live, input)| Arc::ptr_eq(live, input))
        });
        if unchanged {
            let runs = runs.expect("checked");
            runs.splice(plan.first..plan.first + plan.inputs.len(), [Arc::new(run)]);
        } else {
            // Retention dropped the epoch meanwhile: the output is garbage.
            let _ = fs::remove_file(self.dir.join(&output));
        }
        Ok(())
    }

    /// Waits for the merge under way, then runs every merge due at the current time until
    /// none is (on this thread).
    pub fn finish_compaction(&mut self) -> Result<(), StoreError> {
        self.install_merge(true)?;
        let mode = self.settings.compaction;
        self.settings.compaction = Compaction::Inline;
        let mut result = Ok(());
        while result.is_ok() {
            self.start_merge();
            if self.merging.is_none() {
                break;
            }
            result = self.install_merge(true);
        }
        self.settings.compaction = mode;
        result
    }

    /// Writes the memtable as one run file per epoch it holds. A failure leaves the
    /// records of the epochs not written in the memtable.
    fn seal(&mut self) -> Result<(), StoreError> {
        // Drained once into key order (no probe of the table per record written); what a
        // failed write leaves goes back into the memtable.
        let epoch_ms = self.settings.epoch_ms;
        let mut records: Vec<(i64, CodeKey, FinalRecord)> = self
            .memtable
            .drain()
            .map(|(key, record)| (record.final_at.0.div_euclid(epoch_ms), key, record))
            .collect();
        records.sort_unstable_by_key(|(epoch, key, _)| (*epoch, *key));
        let mut written = 0;
        let result = self.write_sealed(&records, &mut written);
        if result.is_err() {
            self.memtable
                .extend(records.drain(written..).map(|(_, key, record)| (key, record)));
        }
        result?;
        if self.unsynced.is_full() {
            // No checkpoint came for a while (or none will: a run without `--state`).
            self.unsynced.take().settle()?;
        }
        Ok(())
    }

    /// Writes `records` (sorted by epoch and key) as one run file per epoch, counting in
    /// `written` the records of the epochs whose file is complete.
    fn write_sealed(&mut self, records: &[(i64, CodeKey, FinalRecord)], written: &mut usize) -> Result<(), StoreError> {
        for group in records.chunk_by(|a, b| a.0 == b.0) {
            let epoch = group[0].0;
            let sequence = self.next_sequence;
            self.next_sequence += 1;
            let name = run::file_name(sequence);
            // Written without fsync: a checkpoint's writer settles it (`take_unsynced`).
            let mut writer = RunWriter::create(
                &self.dir,
                name.clone(),
                epoch,
                sequence,
                self.settings.write_limit.clone(),
                false,
            )?;
            for (_, key, record) in group {
                writer.push(*key, record.final_at, record.status, &record.account)?;
            }
            let run = writer.finish()?;
            if self.settings.sync {
                self.unsynced.push(name);
            }
            *written += group.len();
            self.epochs
                .get_mut(&epoch)
                .expect("a memtable record's epoch is live")
                .push(Arc::new(run));
        }
        Ok(())
    }

    /// Seals the memtable and returns the manifest of every live run file: what a
    /// checkpoint records. Writes only the memtable (at most
    /// [`Settings::memtable_records_max`] records); runs are never rewritten, so files of
    /// earlier checkpoints are shared, not copied. A merge under way is not waited for.
    pub fn checkpoint(&mut self) -> Result<Manifest, StoreError> {
        self.seal()?;
        Ok(self.manifest())
    }

    /// The run files sealed since the last call and not yet fsynced: what must be settled
    /// before a checkpoint naming them is written (on the writer's thread, not the
    /// worker's).
    pub fn take_unsynced(&mut self) -> Unsynced {
        self.unsynced.take()
    }

    /// The manifest of the live run files (the memtable is not in it).
    pub fn manifest(&self) -> Manifest {
        Manifest {
            format_version: MANIFEST_FORMAT_VERSION,
            epoch_ms: self.settings.epoch_ms,
            runs: self
                .epochs
                .values()
                .flatten()
                .map(|run| RunRef::from(&run.meta))
                .collect(),
            next_sequence: self.next_sequence,
        }
    }

    /// Deletes every run file (and temporary file) in the directory that neither the live
    /// state, a merge under way, nor any of `kept` names. Call it after a checkpoint is
    /// durable, with the manifests of every checkpoint still kept.
    pub fn collect_garbage(&self, kept: &[&Manifest]) -> Result<GarbageReport, StoreError> {
        let mut referenced: BTreeSet<&str> = self
            .epochs
            .values()
            .flatten()
            .map(|run| run.meta.file.as_str())
            .collect();
        referenced.extend(
            kept.iter()
                .flat_map(|manifest| manifest.runs.iter().map(|run| run.file.as_str())),
        );
        if let Some(merging) = &self.merging {
            referenced.extend(merging.plan.inputs.iter().map(|run| run.meta.file.as_str()));
            referenced.insert(merging.output.as_str());
        }
        let mut report = GarbageReport::default();
        for name in file_names(&self.dir)? {
            if run::sequence_of(&name).is_none() || referenced.contains(name.trim_end_matches(".tmp")) {
                continue;
            }
            let path = self.dir.join(&name);
            let bytes = fs::metadata(&path).map(|meta| meta.len()).unwrap_or(0);
            fs::remove_file(&path).map_err(|error| StoreError::Io {
                dir: self.dir.clone(),
                file: name.clone(),
                action: "deleting",
                source: error,
            })?;
            report.files += 1;
            report.bytes += bytes;
        }
        if report.files > 0 && self.settings.sync {
            run::sync_dir(&self.dir)?;
        }
        Ok(report)
    }

    /// What the store holds and its heap bytes.
    pub fn stats(&self) -> Stats {
        let runs = || self.epochs.values().flatten();
        let entry = std::mem::size_of::<(CodeKey, FinalRecord)>() + 1;
        let names: usize = self.accounts.iter().map(|name| name.len() + 32).sum();
        Stats {
            memtable_records: self.memtable.len(),
            runs: runs().count(),
            epochs: self.epochs.len(),
            records_on_disk: runs().map(|run| run.meta.records).sum(),
            disk_bytes: runs().map(|run| run.meta.bytes).sum(),
            filter_bytes: self.filter.heap_bytes(),
            index_bytes: runs().map(|run| run.heap_bytes() + std::mem::size_of::<Run>()).sum(),
            memtable_bytes: self.memtable.capacity() * entry + names,
            filter_slots: self.filter.slots(),
            filter_live: self.filter.live_entries(),
            lookup_block_reads: runs().map(|run| run.lookups_read()).sum(),
        }
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The paths of the live run files (tests corrupt them; tools list them).
    pub fn run_paths(&self) -> Vec<PathBuf> {
        self.epochs
            .values()
            .flatten()
            .map(|run| run.path().to_path_buf())
            .collect()
    }
}

impl Drop for FinalStore {
    fn drop(&mut self) {
        // A merge thread still running writes a file nobody will install: let it end so
        // the process does not exit in the middle of its write (the file is garbage).
        if let Some(Merging {
            work: MergeWork::Thread(handle),
            ..
        }) = self.merging.take()
        {
            let _ = handle.join();
        }
    }
}
