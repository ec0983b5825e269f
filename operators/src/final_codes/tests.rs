//! Behaviour of the final-code store, each test against what it must hold, and a seeded
//! model test against a `BTreeMap`.

use super::*;
use crate::flow::CodeKey;
use crate::status::Status;
use crate::time::Ts;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A directory removed when the test ends (the segments' tests use it too).
pub(super) struct TempDir(PathBuf);

impl TempDir {
    pub(super) fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("markledger-final-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }

    pub(super) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const EPOCH: i64 = 1_000;
const RETENTION: i64 = 10_000;

fn settings(memtable: usize) -> Settings {
    Settings {
        retention_ms: RETENTION,
        epoch_ms: EPOCH,
        memtable_records_max: memtable,
        expected_codes: 1_000,
        compaction: Compaction::Inline,
        write_limit: None,
        sync: true,
    }
}

fn key(i: u64) -> CodeKey {
    xxhash_rust::xxh3::xxh3_128(&i.to_le_bytes())
}

fn record(account: &str, status: Status, at: i64) -> FinalRecord {
    FinalRecord {
        account: account.into(),
        status,
        final_at: Ts(at),
    }
}

fn account_of(i: u64) -> String {
    format!("KZ-{:012}", i % 37)
}

/// Inserts keys `range` with `final_at = i` (ms) and an account and status from `i`.
fn fill(store: &mut FinalStore, range: std::ops::Range<u64>) {
    for i in range {
        let status = Status::ALL[(i % 7) as usize];
        store
            .insert(key(i), record(&account_of(i), status, i as i64))
            .expect("insert");
    }
}

fn expect_all(store: &FinalStore, range: std::ops::Range<u64>, now: i64) {
    for i in range {
        let found = store
            .get(key(i), Ts(now))
            .expect("get")
            .unwrap_or_else(|| panic!("key {i} lost"));
        assert_eq!(
            found,
            record(&account_of(i), Status::ALL[(i % 7) as usize], i as i64),
            "key {i}"
        );
    }
}

#[test]
fn inserted_records_are_found_in_the_memtable_and_in_runs() {
    // Inserts 5,000 records through a 300-record memtable (so most are in run files, over 5
    // epochs) and reads each back whole; keys never inserted are absent.
    let dir = TempDir::new("insert-get");
    let mut store = FinalStore::create(dir.path(), settings(300)).expect("create");
    fill(&mut store, 0..5_000);
    store.advance(Ts(5_000)).expect("advance");
    let stats = store.stats();
    assert!(stats.runs >= 5 && stats.memtable_records < 300, "{stats:?}");
    expect_all(&store, 0..5_000, 5_000);
    for i in 5_000..6_000 {
        assert_eq!(store.get(key(i), Ts(5_000)).expect("get"), None);
    }
}

#[test]
fn absent_keys_are_answered_without_reading_the_disk() {
    // Puts 20,000 records in run files, then looks up 100,000 absent keys and counts the
    // blocks lookups read: only filter false positives (~6.4e-4 each) may read one.
    let dir = TempDir::new("negative");
    let mut store = FinalStore::create(dir.path(), settings(1_000)).expect("create");
    fill(&mut store, 0..20_000);
    store.checkpoint().expect("sealed");
    assert_eq!(store.stats().memtable_records, 0);
    let before = store.stats().lookup_block_reads;
    for i in 1_000_000..1_100_000 {
        assert_eq!(store.get(key(i), Ts(20_000)).expect("get"), None);
    }
    let reads = store.stats().lookup_block_reads - before;
    assert!(reads < 200, "{reads} block reads for 100,000 absent keys");
    // A present key (final at 15,000 ms, inside retention) does read: the counter counts.
    assert!(store.get(key(15_000), Ts(20_000)).expect("get").is_some());
    assert!(store.stats().lookup_block_reads > before + reads);
}

#[test]
fn retention_forgets_records_and_drops_whole_epochs() {
    // Records final at 0..6,000 ms (six epochs of 1 s); at now = 13,500 the records final
    // at or before 3,500 are past the 10 s retention: they are absent, epochs 0..2 have
    // left the live set whole, epoch 3 stays (half of it live) and the rest is found.
    let dir = TempDir::new("retention");
    let mut store = FinalStore::create(dir.path(), settings(250)).expect("create");
    fill(&mut store, 0..6_000);
    store.checkpoint().expect("sealed");
    let files_before = store.run_paths();
    assert_eq!(store.stats().epochs, 6);
    store.advance(Ts(13_500)).expect("advance");
    assert_eq!(store.stats().epochs, 3, "epochs 0, 1, 2 dropped");
    for i in 0..=3_500 {
        assert_eq!(
            store.get(key(i), Ts(13_500)).expect("get"),
            None,
            "key {i} is past retention"
        );
    }
    expect_all(&store, 3_501..6_000, 13_500);
    // The dropped epochs' files are no longer live; still on disk until garbage collection.
    let live = store.run_paths();
    assert!(live.len() < files_before.len());
    assert!(files_before.iter().all(|path| path.exists()));
    let report = store.collect_garbage(&[]).expect("gc");
    assert!(report.files > 0 && report.bytes > 0);
    assert!(live.iter().all(|path| path.exists()));
    // An insert already past retention is not kept.
    store
        .insert(key(99_999), record("KZ-A", Status::Expired, 100))
        .expect("insert");
    assert_eq!(store.get(key(99_999), Ts(13_500)).expect("get"), None);
}

#[test]
fn merges_keep_every_live_record_and_bound_the_runs() {
    // 40,000 records of one epoch through a 500-record memtable: 80 seals. Open-epoch merges
    // keep the run count logarithmic; once the epoch is closed it is one run; every record
    // is found unchanged throughout, and a re-insert with a later final_at wins.
    let dir = TempDir::new("merge");
    let mut store = FinalStore::create(
        dir.path(),
        Settings {
            epoch_ms: 100_000,
            retention_ms: 1_000_000,
            ..settings(500)
        },
    )
    .expect("create");
    for i in 0..40_000u64 {
        store
            .insert(key(i), record(&account_of(i), Status::Introduced, i as i64))
            .expect("insert");
        store.advance(Ts(i as i64)).expect("advance");
    }
    let open_runs = store.stats().runs;
    assert!(open_runs <= 10, "{open_runs} runs for 80 seals");
    // Key 5 final again later (retention passed and emitted again, say).
    store
        .insert(key(5), record("KZ-NEW", Status::Rejected, 50_000))
        .expect("insert");
    store.checkpoint().expect("sealed");
    store.advance(Ts(200_000)).expect("closed");
    store.finish_compaction().expect("merged");
    assert_eq!(store.stats().runs, 1, "a closed epoch is one run");
    assert_eq!(store.stats().records_on_disk, 40_000, "duplicates merged away");
    for i in (0..40_000u64).filter(|i| *i != 5) {
        let found = store.get(key(i), Ts(200_000)).expect("get").expect("found");
        assert_eq!(found, record(&account_of(i), Status::Introduced, i as i64));
    }
    assert_eq!(
        store.get(key(5), Ts(200_000)).expect("get"),
        Some(record("KZ-NEW", Status::Rejected, 50_000))
    );
}

#[test]
fn background_merges_are_installed_and_match_inline_ones() {
    // The same 20,000 inserts (50 seals) with merges on a thread and inline: after
    // finish_compaction both answer every key alike and hold few runs (the thread's merges
    // were installed; their timing may shape the runs differently).
    let mut answers = Vec::new();
    for mode in [Compaction::Background, Compaction::Inline] {
        let dir = TempDir::new(&format!("background-{mode:?}"));
        let config = Settings {
            compaction: mode,
            epoch_ms: 10_000,
            retention_ms: 1_000_000,
            ..settings(400)
        };
        let mut store = FinalStore::create(dir.path(), config).expect("create");
        for i in 0..20_000u64 {
            store
                .insert(key(i), record(&account_of(i), Status::Expired, i as i64))
                .expect("insert");
            store.advance(Ts(i as i64)).expect("advance");
        }
        store.finish_compaction().expect("merged");
        expect_all_status(&store, 0..20_000, Status::Expired);
        let runs = store.stats().runs;
        assert!(runs <= 10, "{mode:?}: {runs} runs for 50 seals");
        answers.push(
            (0..20_000u64)
                .map(|i| store.get(key(i), Ts(20_000)).expect("get"))
                .collect::<Vec<_>>(),
        );
    }
    assert!(answers[0] == answers[1], "the same answers");
}

fn expect_all_status(store: &FinalStore, range: std::ops::Range<u64>, status: Status) {
    for i in range {
        let found = store.get(key(i), Ts(i as i64)).expect("get").expect("found");
        assert_eq!((found.status, found.final_at), (status, Ts(i as i64)));
    }
}

#[test]
fn a_checkpoint_restores_and_writes_only_what_changed() {
    // Checkpoint 1, then more records, checkpoint 2: every file of checkpoint 1 is in
    // checkpoint 2 unchanged (same name, size, checksum) and the bytes written between
    // them are the new runs only; reopening either manifest restores its own records.
    let dir = TempDir::new("checkpoint");
    let mut store = FinalStore::create(dir.path(), settings(10_000)).expect("create");
    fill(&mut store, 0..3_000);
    let first = store.checkpoint().expect("checkpoint 1");
    fill(&mut store, 3_000..3_200);
    let second = store.checkpoint().expect("checkpoint 2");
    for run in &first.runs {
        assert!(second.runs.contains(run), "{} carried over unchanged", run.file);
    }
    let new: u64 = second
        .runs
        .iter()
        .filter(|run| !first.runs.contains(run))
        .map(|run| run.bytes)
        .sum();
    assert_eq!(new, second.bytes() - first.bytes());
    assert!(new < first.bytes() / 4, "{new} bytes written for 200 records");
    drop(store);
    let reopened = FinalStore::open(dir.path(), settings(10_000), &second).expect("open 2");
    expect_all(&reopened, 0..3_200, 3_200);
    assert_eq!(reopened.manifest(), second);
    drop(reopened);
    let older = FinalStore::open(dir.path(), settings(10_000), &first).expect("open 1");
    expect_all(&older, 0..3_000, 3_200);
    assert_eq!(
        older.get(key(3_100), Ts(3_200)).expect("get"),
        None,
        "not in checkpoint 1"
    );
    // New runs after restoring the older checkpoint never overwrite checkpoint 2's files.
    let mut older = older;
    fill(&mut older, 5_000..5_100);
    let third = older.checkpoint().expect("checkpoint 3");
    assert!(third
        .runs
        .iter()
        .all(|run| !second.runs.iter().any(|kept| kept.file == run.file && kept != run)));
    drop(older);
    expect_all(
        &FinalStore::open(dir.path(), settings(10_000), &second).expect("open 2 again"),
        0..3_200,
        3_200,
    );
}

#[test]
fn a_checkpoint_leaves_its_new_files_to_sync_and_settling_skips_one_merged_away() {
    // The worker seals without fsync; the files a checkpoint names that no earlier one
    // did are handed over to be synced (by the checkpoint's writer) exactly once.
    let dir = TempDir::new("unsynced");
    let mut store = FinalStore::create(dir.path(), settings(10_000)).expect("create");
    fill(&mut store, 0..3_000);
    let first = store.checkpoint().expect("checkpoint 1");
    let owed = store.take_unsynced();
    let mut named: Vec<&str> = first.runs.iter().map(|run| run.file.as_str()).collect();
    let mut listed: Vec<&str> = owed.files().iter().map(String::as_str).collect();
    named.sort_unstable();
    listed.sort_unstable();
    assert!(!listed.is_empty());
    assert_eq!(listed, named, "every new run file, and only those");
    assert!(store.take_unsynced().files().is_empty(), "handed over once");
    fill(&mut store, 3_000..3_100);
    let second = store.checkpoint().expect("checkpoint 2");
    let owed_next = store.take_unsynced();
    assert!(owed_next.files().iter().all(|file| !named.contains(&file.as_str())));
    assert_eq!(owed_next.files().len(), second.runs.len() - first.runs.len());
    // A file gone before the writer gets to it (merged or expired away) is skipped.
    std::fs::remove_file(dir.path().join(&owed.files()[0])).expect("remove");
    owed.settle().expect("the others synced");
    owed_next.settle().expect("synced");
    // Without durability (spill-only tests) nothing is owed.
    let quick = TempDir::new("unsynced-quick");
    let mut store = FinalStore::create(
        quick.path(),
        Settings {
            sync: false,
            ..settings(10_000)
        },
    )
    .expect("create");
    fill(&mut store, 0..1_000);
    store.checkpoint().expect("checkpoint");
    assert!(store.take_unsynced().files().is_empty());
}

#[test]
fn garbage_collection_keeps_exactly_what_kept_manifests_and_live_state_name() {
    // Merges replace runs; garbage collection with an old manifest kept leaves its files
    // (it still opens), without it deletes them (opening it then fails naming a file), and
    // never touches the live runs or files that are not run files.
    let dir = TempDir::new("gc");
    let mut store = FinalStore::create(
        dir.path(),
        Settings {
            epoch_ms: 100_000,
            retention_ms: 1_000_000,
            ..settings(200)
        },
    )
    .expect("create");
    fill(&mut store, 0..2_000);
    let old = store.checkpoint().expect("checkpoint");
    std::fs::write(dir.path().join("notes.txt"), "not ours").expect("write");
    store.advance(Ts(300_000)).expect("close the epoch");
    store.finish_compaction().expect("merged");
    let new = store.checkpoint().expect("checkpoint");
    assert_eq!(new.runs.len(), 1);
    assert_eq!(store.collect_garbage(&[&old, &new]).expect("gc").files, 0);
    FinalStore::open(
        dir.path(),
        Settings {
            epoch_ms: 100_000,
            retention_ms: 1_000_000,
            ..settings(200)
        },
        &old,
    )
    .expect("old still opens");
    let report = store.collect_garbage(&[&new]).expect("gc");
    assert_eq!(report.files, old.runs.len());
    assert!(dir.path().join("notes.txt").exists());
    let error = FinalStore::open(
        dir.path(),
        Settings {
            epoch_ms: 100_000,
            retention_ms: 1_000_000,
            ..settings(200)
        },
        &old,
    )
    .err()
    .expect("old is gone");
    assert!(error.to_string().contains(&old.runs[0].file), "{error}");
    drop(store);
    let reopened = FinalStore::open(
        dir.path(),
        Settings {
            epoch_ms: 100_000,
            retention_ms: 1_000_000,
            ..settings(200)
        },
        &new,
    )
    .expect("new opens");
    expect_all(&reopened, 0..2_000, 2_000);
}

#[test]
fn a_torn_or_corrupt_run_file_is_refused_by_name() {
    // Cuts a run file short, flips one bit in a block, flips one bit in its dictionary:
    // each time open refuses with an error naming the file; a bit flipped after open is
    // caught by the block checksum when a lookup reads it.
    let dir = TempDir::new("corrupt");
    let mut store = FinalStore::create(dir.path(), settings(100_000)).expect("create");
    fill(&mut store, 0..1_000);
    let manifest = store.checkpoint().expect("checkpoint");
    drop(store);
    let path = dir.path().join(&manifest.runs[0].file);
    let intact = std::fs::read(&path).expect("read");
    let refused = |bytes: &[u8]| {
        std::fs::write(&path, bytes).expect("write");
        let error = FinalStore::open(dir.path(), settings(100_000), &manifest)
            .err()
            .expect("refused");
        assert!(error.to_string().contains(&manifest.runs[0].file), "{error}");
        error.to_string()
    };
    let torn = refused(&intact[..intact.len() - 100]);
    assert!(torn.contains("torn or corrupt"), "{torn}");
    let mut flipped = intact.clone();
    flipped[5_000] ^= 0x10;
    assert!(refused(&flipped).contains("block 1"));
    let mut dictionary = intact.clone();
    let at = dictionary.len() - TRAILER_OFFSET_OF_DICTIONARY;
    dictionary[at] ^= 0x01;
    assert!(refused(&dictionary).contains("checksum"));
    std::fs::write(&path, &intact).expect("restore");
    let store = FinalStore::open(dir.path(), settings(100_000), &manifest).expect("intact opens");
    // Corrupt every block after open (same size): a lookup that reads one says so.
    let mut rotten = intact.clone();
    for block in 0..(intact.len() / BLOCK_BYTES) {
        rotten[block * BLOCK_BYTES + 20] ^= 0x01;
    }
    std::fs::write(&path, &rotten).expect("rot");
    let error = store.get(key(3), Ts(1_000)).expect_err("a bad block");
    assert!(
        matches!(error, StoreError::Corrupt { .. }) && error.to_string().contains(&manifest.runs[0].file),
        "{error}"
    );
}

/// The last dictionary byte is this far from the end of a run file (the trailer follows).
const TRAILER_OFFSET_OF_DICTIONARY: usize = 65;

#[test]
fn a_full_disk_is_an_error_naming_the_directory_and_loses_nothing() {
    // A write limit of 20 kB fills up during a seal: the insert that triggered it fails
    // with StorageFull naming the store's directory, no temporary file is left, every
    // record is still found, and once space is freed a checkpoint writes them all (they
    // reopen).
    let dir = TempDir::new("disk-full");
    let limit = WriteLimit::new(20_000);
    let config = Settings {
        write_limit: Some(limit.clone()),
        ..settings(1_000)
    };
    let mut store = FinalStore::create(dir.path(), config.clone()).expect("create");
    let mut failed = None;
    for i in 0..3_000u64 {
        let status = Status::ALL[(i % 7) as usize];
        if let Err(error) = store.insert(key(i), record(&account_of(i), status, i as i64)) {
            failed.get_or_insert(error);
        }
    }
    let error = failed.expect("the disk filled up");
    let text = error.to_string();
    assert!(text.contains(&dir.path().display().to_string()), "{text}");
    assert!(
        matches!(&error, StoreError::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull),
        "{error:?}"
    );
    expect_all(&store, 0..3_000, 3_000);
    assert!(store.checkpoint().is_err(), "still full");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("list")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    limit.set(u64::MAX);
    let manifest = store.checkpoint().expect("space freed");
    drop(store);
    expect_all(
        &FinalStore::open(dir.path(), config, &manifest).expect("open"),
        0..3_000,
        3_000,
    );
}

#[test]
fn the_filter_grows_when_more_codes_come_than_expected() {
    // A store sized for 1,000 codes takes 30,000 (the filter is rebuilt from the runs as
    // it fills) and still finds every one; its RAM stays under 6 bytes a record.
    let dir = TempDir::new("grow");
    let config = Settings {
        epoch_ms: 10_000,
        retention_ms: 1_000_000,
        ..settings(2_000)
    };
    let mut store = FinalStore::create(dir.path(), config).expect("create");
    fill(&mut store, 0..30_000);
    store.checkpoint().expect("sealed");
    expect_all(&store, 0..30_000, 30_000);
    let stats = store.stats();
    // (Fingerprint twins under one tag share a slot: a few fewer live slots than keys.)
    assert!(stats.filter_slots >= 30_000 && stats.filter_live > 29_900, "{stats:?}");
    assert!(stats.filter_bytes + stats.index_bytes < 6 * 30_000, "{stats:?}");
}

#[test]
fn a_final_time_256_epochs_from_a_live_one_is_refused() {
    // Epoch tags are 8 bits: a record 256 epochs after a live one would share its tag, so
    // the insert is refused with EpochSpan (and the store keeps working).
    let dir = TempDir::new("span");
    let mut store = FinalStore::create(dir.path(), settings(100)).expect("create");
    store
        .insert(key(1), record("KZ-A", Status::Introduced, 10))
        .expect("insert");
    let error = store
        .insert(key(2), record("KZ-A", Status::Introduced, 256 * EPOCH + 10))
        .expect_err("refused");
    assert!(
        matches!(
            error,
            StoreError::EpochSpan {
                epoch: 256,
                live: 0,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(store.get(key(1), Ts(10)).expect("get").is_some());
}

#[test]
fn a_manifest_of_other_settings_is_refused() {
    // A manifest written with 1 s epochs cannot be opened with 2 s epochs: an error says so.
    let dir = TempDir::new("settings");
    let mut store = FinalStore::create(dir.path(), settings(100)).expect("create");
    fill(&mut store, 0..10);
    let manifest = store.checkpoint().expect("checkpoint");
    let error = FinalStore::open(
        dir.path(),
        Settings {
            epoch_ms: 2 * EPOCH,
            ..settings(100)
        },
        &manifest,
    )
    .err()
    .expect("refused");
    assert!(error.to_string().contains("epochs of 1000 ms"), "{error}");
}

/// splitmix64: the model test's seeded randomness.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The model: per key the winning (record, insert sequence); absent once past retention.
#[derive(Clone, Default)]
struct Model(BTreeMap<CodeKey, (FinalRecord, u64)>);

impl Model {
    fn insert(&mut self, key: CodeKey, record: FinalRecord, sequence: u64) {
        let wins = self
            .0
            .get(&key)
            .is_none_or(|(kept, _)| record.final_at >= kept.final_at);
        if wins {
            self.0.insert(key, (record, sequence));
        }
    }

    fn get(&self, key: CodeKey, now: Ts) -> Option<FinalRecord> {
        let (record, _) = self.0.get(&key)?;
        (record.final_at.plus_millis(RETENTION) > now).then(|| record.clone())
    }
}

fn model_run(seed: u64) {
    let dir = TempDir::new(&format!("model-{seed}"));
    let mut random = Random(seed);
    let config = Settings {
        expected_codes: 50,
        ..settings(5 + random.below(60) as usize)
    };
    let mut store = FinalStore::create(dir.path(), config.clone()).expect("create");
    let mut model = Model::default();
    let mut now = 0i64;
    let mut checkpoints: Vec<(Manifest, Model, i64)> = Vec::new();
    let pool = 400;
    for step in 0..2_000u64 {
        match random.below(100) {
            0..=44 => {
                // Finality roughly in time order: up to 3 epochs late, rarely ahead.
                let at = now - random.below(3 * EPOCH as u64) as i64 + random.below(200) as i64;
                let i = random.below(pool);
                let status = Status::ALL[random.below(7) as usize];
                let record = record(&account_of(random.below(5)), status, at);
                store.insert(key(i), record.clone()).expect("insert");
                if at.saturating_add(RETENTION) > now {
                    model.insert(key(i), record, step);
                }
            }
            45..=79 => {
                let i = random.below(pool + 50);
                assert_eq!(
                    store.get(key(i), Ts(now)).expect("get"),
                    model.get(key(i), Ts(now)),
                    "seed {seed} step {step} key {i}"
                );
            }
            80..=91 => {
                now += random.below(EPOCH as u64 / 2) as i64;
                store.advance(Ts(now)).expect("advance");
            }
            92..=95 => {
                let manifest = store.checkpoint().expect("checkpoint");
                checkpoints.push((manifest, model.clone(), now));
                if checkpoints.len() > 3 {
                    checkpoints.remove(0);
                }
                let kept: Vec<&Manifest> = checkpoints.iter().map(|(manifest, _, _)| manifest).collect();
                store.collect_garbage(&kept).expect("gc");
            }
            _ => {
                // Crash and restore one of the kept checkpoints (not always the newest).
                let Some(index) = (!checkpoints.is_empty()).then(|| random.below(checkpoints.len() as u64) as usize)
                else {
                    continue;
                };
                drop(store);
                let (manifest, kept_model, at) = checkpoints[index].clone();
                store = FinalStore::open(dir.path(), config.clone(), &manifest).expect("open");
                checkpoints.truncate(index + 1);
                model = kept_model;
                now = now.max(at);
                store.advance(Ts(now)).expect("advance");
            }
        }
    }
    for i in 0..pool + 50 {
        assert_eq!(
            store.get(key(i), Ts(now)).expect("get"),
            model.get(key(i), Ts(now)),
            "seed {seed} end, key {i}"
        );
    }
}

#[test]
fn the_store_answers_as_a_btreemap_model_on_seeded_random_operations() {
    // 12 seeds (MARKLEDGER_FINAL_SEEDS=N for more; a failure names its seed) of 2,000
    // random operations each (inserts roughly in time order with repeats of 400 keys,
    // lookups, time moving on past retention, checkpoints with garbage collection, crashes
    // restoring a kept checkpoint, not always the newest): every lookup equals the model's.
    let seeds: u64 = std::env::var("MARKLEDGER_FINAL_SEEDS")
        .ok()
        .and_then(|seeds| seeds.parse().ok())
        .unwrap_or(12);
    for seed in 1..=seeds {
        model_run(seed);
    }
}

/// Issue 18: a restore at another worker count builds each new worker's store from the old
/// workers' run files, keeping exactly the records of the key groups it owns, their
/// accounts and statuses; the old files, in the same directories, are left as they were
/// (the restored checkpoint still names them).
#[test]
fn a_store_rebuilt_from_other_workers_stores_keeps_exactly_its_groups() {
    use crate::flow::{group_of_hash, worker_of_group};
    let root = TempDir::new("rebuild");
    let place = FinalCodes::in_state(root.path());
    let retention = 400 * crate::time::MILLIS_PER_DAY;
    let owner = |key: CodeKey, workers: usize| worker_of_group(group_of_hash(key as u64), workers);
    let keys: Vec<CodeKey> = (0..3_000).map(key).collect();
    let status_of = |i: usize| {
        if i % 3 == 0 {
            Status::Expired
        } else {
            Status::AppliedPaid
        }
    };
    // Two old workers, each with its groups' final codes, sealed by a checkpoint.
    let mut stores = Vec::new();
    for worker in 0..2 {
        let mut tier = Tier::new(place.clone(), retention);
        tier.attach(worker, None);
        for (i, key) in keys.iter().enumerate().filter(|(_, key)| owner(**key, 2) == worker) {
            tier.insert(*key, record(&account_of(i as u64), status_of(i), 1_000 + i as i64));
        }
        stores.push((worker, tier.checkpoint().expect("a store with codes")));
    }
    let now = Ts(5_000);
    for workers in [1usize, 3, 4] {
        for worker in 0..workers {
            let mut tier = Tier::new(place.clone(), retention);
            tier.attach(worker, None);
            tier.rebuild(&stores, &|key| owner(key, workers) == worker)
                .expect("rebuilt");
            for (i, key) in keys.iter().enumerate() {
                let found = tier.get(*key, now);
                if owner(*key, workers) == worker {
                    let found = found.unwrap_or_else(|| panic!("{workers} workers: worker {worker} lost key {i}"));
                    assert_eq!(*found.account, *account_of(i as u64));
                    assert_eq!((found.status, found.final_at), (status_of(i), Ts(1_000 + i as i64)));
                } else {
                    assert!(
                        found.is_none(),
                        "{workers} workers: worker {worker} holds another's key {i}"
                    );
                }
            }
            // A checkpoint of the rebuilt store names only new files.
            let manifest = tier.checkpoint().expect("a store");
            for (old, old_manifest) in &stores {
                if *old == worker {
                    assert!(manifest
                        .runs
                        .iter()
                        .all(|run| old_manifest.runs.iter().all(|o| o.file != run.file)));
                }
            }
        }
    }
    for (worker, manifest) in &stores {
        FinalStore::verify(&worker_dir(place.root(), *worker), manifest).expect("the old files are intact");
    }
}
