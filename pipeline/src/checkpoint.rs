//! Checkpoint files in `--state DIR` (docs/ARCHITECTURE.md, "Checkpoints").
//!
//! In: a complete [`Cut`] (every worker's machines and source). Out: one file per
//! checkpoint, `checkpoint-<time>.mlck`, written atomically (a temporary file, fsync,
//! rename, fsync of the directory), so a crash leaves either the whole new file or none;
//! older ones pruned to the newest [`KEEP`]. Loading takes the newest file that verifies
//! (magic, format version, length, xxh3-64 checksum of the body) and falls back to an older
//! one, saying why, when the newest is torn or corrupt.
//!
//! Layout: `MLCKPT\0\0`, format version (u32 LE), body length (u64 LE), xxh3-64 of the
//! body (u64 LE), body (bincode of the run's [`OutputSettings`] and the [`Cut`]).
//!
//! Settings travel with state (issue 19): every checkpoint records the settings that
//! change outputs (lateness, hold, period close, the calendar's content per year), and
//! [`Store::load`] refuses a checkpoint made under other ones, naming each difference.
//!
//! A stream run's checkpoints ([`StreamCheckpoints`]): worker 0 asks for one every
//! interval; each worker's source deposits its share through the offset-tracking interface
//! of its connector ([`OffsetTracker`], told each frontier by [`SourceCheckpoint`]);
//! whoever completes a cut flushes the producer and hands the cut to the writer thread.

use crate::config::OutputSettings;
use anyhow::{bail, Context, Result};
use markledger_connectors::kafka::{self, CheckpointHook, SharedProducer};
use markledger_connectors::offsets::OffsetTracker;
use markledger_operators::accounts::Accounts;
use markledger_operators::aggregates::Revisions;
use markledger_operators::checkpoint::{decode, encode, Checkpoints, Complete, Cut, RestoreError};
use markledger_operators::codes::Codes;
use markledger_operators::dedup::Dedup;
use markledger_operators::final_codes::{
    segments_dir, verify_segments, worker_dir, FinalStore, Manifest, STATE_SUBDIR,
};
use markledger_operators::flow::ts_of;
use markledger_operators::flow::Time;
use markledger_operators::gate::Gate;
use markledger_operators::machine::{distinct, Machine};
use markledger_operators::orders::Orders;
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use markledger_connectors::offsets::{PartitionShare, SourceShare, SOURCE};

/// The keys under which every worker saves a share: each stateful machine's constant
/// [`Machine::NAME`], and the source's. A checkpoint restores share by share under these
/// keys, so they are constants of the machines' types, and no two may be equal (checked when
/// this compiles).
pub const NAMES: [&str; 7] = [
    Dedup::NAME,
    Gate::NAME,
    Orders::NAME,
    Codes::NAME,
    Accounts::NAME,
    Revisions::NAME,
    SOURCE,
];

const _: () = assert!(distinct(&NAMES), "two checkpoint keys are equal");

/// Checkpoint files kept (the newest ones).
pub const KEEP: usize = 3;

const MAGIC: &[u8; 8] = b"MLCKPT\0\0";
/// Bumped whenever the body's encoding or any saved state's shape changes: a file of
/// another version is refused (with its version named), never misread. Version 2: the
/// national index saves its live codes and the manifest of its final-code store (issue 17).
/// Version 3: the body opens with the run's [`OutputSettings`] (issue 19). Version 4: the
/// gate's terminated accounts, the accounts' terminations, the aggregates' kept final
/// records and export deliveries (DOMAIN.md §9, issue 20). Version 5: the accounts keep
/// emissions' code text in segment files and save their manifest (issue 17). Version 6:
/// the cut records its number of key groups, and restores on any worker count (issue 18).
pub const FORMAT_VERSION: u32 = 6;
const HEADER: usize = 8 + 4 + 8 + 8;

/// What writing a checkpoint took.
#[derive(Clone, Debug)]
pub struct Written {
    /// The file.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// Encoding, writing and syncing.
    pub took: Duration,
}

/// The checkpoint directory, and the settings of the run that writes and reads it.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
    settings: OutputSettings,
}

impl Store {
    /// Opens (creates) `dir` for a run with `settings`: its checkpoints record them, and
    /// only checkpoints made under the same ones are restored.
    pub fn open(dir: &Path, settings: &OutputSettings) -> Result<Store> {
        fs::create_dir_all(dir).with_context(|| format!("creating the state directory {}", dir.display()))?;
        Ok(Store {
            dir: dir.to_path_buf(),
            settings: settings.clone(),
        })
    }

    fn path_of(&self, time: Time) -> PathBuf {
        self.dir.join(format!("checkpoint-{time:020}.mlck"))
    }

    /// Checkpoint files, newest first.
    pub fn files(&self) -> Result<Vec<(Time, PathBuf)>> {
        let mut files = Vec::new();
        for entry in fs::read_dir(&self.dir).with_context(|| format!("listing {}", self.dir.display()))? {
            let path = entry?.path();
            let time = path
                .file_name()
                .and_then(|name| name.to_str())
                .and_then(|name| name.strip_prefix("checkpoint-"))
                .and_then(|name| name.strip_suffix(".mlck"))
                .and_then(|time| time.parse::<Time>().ok());
            if let Some(time) = time {
                files.push((time, path));
            }
        }
        files.sort_by_key(|(time, _)| std::cmp::Reverse(*time));
        Ok(files)
    }

    /// Writes `cut` atomically, then prunes all but the newest [`KEEP`].
    pub fn write(&self, cut: &Cut) -> Result<Written> {
        let started = Instant::now();
        let body = encode(&(&self.settings, cut));
        let mut bytes = Vec::with_capacity(HEADER + body.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&(body.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(&body).to_le_bytes());
        bytes.extend_from_slice(&body);
        let path = self.path_of(cut.time);
        let temporary = path.with_extension("mlck.tmp");
        {
            let mut file = File::create(&temporary).with_context(|| format!("creating {}", temporary.display()))?;
            file.write_all(&bytes)
                .with_context(|| format!("writing {}", temporary.display()))?;
            file.sync_all()
                .with_context(|| format!("syncing {}", temporary.display()))?;
        }
        fs::rename(&temporary, &path).with_context(|| format!("renaming to {}", path.display()))?;
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .with_context(|| format!("syncing {}", self.dir.display()))?;
        for (_, old) in self.files()?.into_iter().skip(KEEP) {
            let _ = fs::remove_file(old);
        }
        Ok(Written {
            path,
            bytes: bytes.len() as u64,
            took: started.elapsed(),
        })
    }

    /// Reads and verifies one checkpoint file: its cut.
    pub fn read(path: &Path) -> Result<Cut> {
        Ok(Store::read_with_settings(path)?.1)
    }

    /// Reads and verifies one checkpoint file: the settings it was made under and its cut.
    pub fn read_with_settings(path: &Path) -> Result<(OutputSettings, Cut)> {
        let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        if bytes.len() < HEADER || &bytes[..8] != MAGIC {
            bail!("{} is not a markledger checkpoint (or is torn)", path.display());
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if version != FORMAT_VERSION {
            bail!(
                "{} has checkpoint format {version}, this build reads {FORMAT_VERSION}",
                path.display()
            );
        }
        let length = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
        let checksum = u64::from_le_bytes(bytes[20..28].try_into().expect("8 bytes"));
        let body = &bytes[HEADER..];
        if body.len() as u64 != length {
            bail!("{} is torn: {} body bytes of {length}", path.display(), body.len());
        }
        if xxhash_rust::xxh3::xxh3_64(body) != checksum {
            bail!("{} is corrupt: its checksum does not match", path.display());
        }
        Ok(decode::<(OutputSettings, Cut)>("the checkpoint", body)?)
    }

    /// The newest checkpoint that verifies, with every final-code run file it names,
    /// reporting every newer one that does not; an
    /// error naming each difference when it was made under other settings than this run's.
    pub fn load(&self, report: &mut dyn FnMut(String)) -> Result<Option<Cut>> {
        for (_, path) in self.files()? {
            match Store::read_with_settings(&path)
                .and_then(|(settings, cut)| self.verify_final_codes(&cut).map(|()| (settings, cut)))
            {
                Ok((settings, cut)) => {
                    let differences = settings.differences(&self.settings);
                    if !differences.is_empty() {
                        bail!(
                            "the checkpoint {} was made with other settings than this run's, which \
                             would change what its outputs mean:\n  - {}\nrun with the checkpoint's \
                             settings, or move the state directory away to rebuild from the inputs",
                            path.display(),
                            differences.join("\n  - ")
                        );
                    }
                    return Ok(Some(cut));
                }
                Err(error) => report(format!("skipping a checkpoint: {error:#}")),
            }
        }
        Ok(None)
    }

    /// The directory of the final-code stores (`DIR/final-codes`).
    pub fn final_codes_dir(&self) -> PathBuf {
        self.dir.join(STATE_SUBDIR)
    }

    /// Reads and checks every run file the cut's final-code manifests name, and every
    /// emission-text segment its accounts name (a torn or corrupt one refuses the
    /// checkpoint, naming the file).
    pub fn verify_final_codes(&self, cut: &Cut) -> Result<()> {
        let root = self.final_codes_dir();
        for (worker, manifest) in final_code_manifests(cut)? {
            FinalStore::verify(&worker_dir(&root, worker), &manifest).with_context(|| {
                format!(
                    "the checkpoint at {} names final-code files that do not verify",
                    ts_of(cut.time)
                )
            })?;
        }
        for (worker, manifest) in emission_text_manifests(cut)? {
            verify_segments(&segments_dir(&root, worker), &manifest).with_context(|| {
                format!(
                    "the checkpoint at {} names emission-text segments that do not verify",
                    ts_of(cut.time)
                )
            })?;
        }
        Ok(())
    }

    /// The final-code manifests of the checkpoints kept (the newest [`KEEP`] files), per
    /// worker: what no store may delete. `cache` holds those already read, by time (a
    /// file that does not read is left out: it cannot be restored anyway).
    pub fn kept_manifests(&self, cache: &mut ManifestCache) -> Result<BTreeMap<usize, Vec<Manifest>>> {
        let kept: Vec<(Time, PathBuf)> = self.files()?.into_iter().take(KEEP).collect();
        cache.retain(|time, _| kept.iter().any(|(kept, _)| kept == time));
        let mut by_worker: BTreeMap<usize, Vec<Manifest>> = BTreeMap::new();
        for (time, path) in kept {
            let manifests = cache.entry(time).or_insert_with(|| {
                Store::read(&path)
                    .and_then(|cut| file_manifests(&cut))
                    .unwrap_or_default()
            });
            for (worker, manifest) in manifests.iter() {
                by_worker.entry(*worker).or_default().push(manifest.clone());
            }
        }
        Ok(by_worker)
    }
}

/// Final-code and emission-text manifests of checkpoint files already read, by checkpoint
/// time: (worker, manifest), each store deleting only files none of its worker's names.
pub type ManifestCache = BTreeMap<Time, Vec<(usize, Manifest)>>;

/// Every manifest of files in `cut`, by worker: final-code runs and emission-text segments.
pub fn file_manifests(cut: &Cut) -> Result<Vec<(usize, Manifest)>> {
    let mut manifests: Vec<(usize, Manifest)> = final_code_manifests(cut)?.into_iter().collect();
    manifests.extend(emission_text_manifests(cut)?);
    Ok(manifests)
}

/// The emission-text manifest of each worker's accounts in `cut`.
pub fn emission_text_manifests(cut: &Cut) -> Result<BTreeMap<usize, Manifest>> {
    manifests_by_worker(cut, Accounts::NAME, Accounts::segments_of)
}

/// The final-code manifest of each worker's national index in `cut` (a worker with no
/// final code yet has none).
pub fn final_code_manifests(cut: &Cut) -> Result<BTreeMap<usize, Manifest>> {
    manifests_by_worker(cut, Codes::NAME, Codes::manifest_of)
}

/// The manifest of files that each worker's share of `machine` in `cut` names, read from the
/// share by `manifest_of` (a worker whose machine wrote no file yet has none).
fn manifests_by_worker(
    cut: &Cut,
    machine: &str,
    manifest_of: fn(&[u8]) -> Result<Option<Manifest>, RestoreError>,
) -> Result<BTreeMap<usize, Manifest>> {
    let mut manifests = BTreeMap::new();
    for worker in 0..cut.workers {
        let Some(share) = cut.share(worker, machine) else {
            continue;
        };
        if let Some(manifest) = manifest_of(&share.state)? {
            manifests.insert(worker, manifest);
        }
    }
    Ok(manifests)
}

/// Tells the run's stores which checkpoints are kept (see [`Store::kept_manifests`]); a
/// failure to list them is reported and leaves the stores collecting nothing new.
pub fn keep_manifests(store: &Store, checkpoints: &Checkpoints, cache: &mut ManifestCache) {
    match store.kept_manifests(cache) {
        Ok(kept) => checkpoints.keep_manifests(kept),
        Err(error) => markledger_operators::note!("markledger: listing kept checkpoints: {error:#}"),
    }
}

/// What a stream run's checkpoints need besides the store.
pub struct StreamCheckpointSettings {
    /// The run's checkpoints (the dataflow's machines deposit their shares in them too).
    pub checkpoints: Checkpoints,
    /// How often worker 0 asks for one.
    pub interval: Duration,
    /// Workers without partitions (more workers than partitions): worker 0 deposits their
    /// (empty) source shares.
    pub idle_workers: Vec<usize>,
    /// Flushed before a complete cut is written: every output before it is then
    /// acknowledged by the broker.
    pub producer: Arc<SharedProducer>,
}

/// Each machine's longest pause to save, `name 1.2 ms, …`, the longest first.
pub fn pauses_by_machine(checkpoints: &Checkpoints) -> String {
    let mut pauses: Vec<_> = checkpoints.longest_saves().into_iter().collect();
    pauses.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let pauses: Vec<String> = pauses
        .iter()
        .map(|(name, took)| format!("{name} {:.1} ms", took.as_secs_f64() * 1e3))
        .collect();
    pauses.join(", ")
}

/// What the writer thread wrote.
#[derive(Debug, Default)]
struct WriterLog {
    written: AtomicU64,
    /// The last checkpoint written: its time, size in bytes, and milliseconds to write.
    last: Mutex<Option<(Time, u64, u64)>>,
    /// When it was written (the metrics' checkpoint age).
    last_at: Mutex<Option<Instant>>,
}

/// A stream run's checkpoints (see the module docs): the requests, the workers' source
/// shares, and the writer thread.
pub struct StreamCheckpoints {
    settings: StreamCheckpointSettings,
    /// When the last checkpoint was asked for.
    last_request: Mutex<Instant>,
    /// Complete cuts, acknowledged outputs behind them, to the writer thread (which encodes
    /// the states the machines left to it).
    writer: Mutex<Option<mpsc::Sender<Complete>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    log: Arc<WriterLog>,
}

impl StreamCheckpoints {
    /// Starts the writer thread: one checkpoint file at a time, off the workers' threads.
    pub fn start(store: Store, settings: StreamCheckpointSettings) -> Arc<StreamCheckpoints> {
        let (send, receive) = mpsc::channel::<Complete>();
        let log = Arc::new(WriterLog::default());
        // The stores may delete only what no checkpoint already on disk names.
        let mut cache = ManifestCache::new();
        keep_manifests(&store, &settings.checkpoints, &mut cache);
        let thread = {
            let log = log.clone();
            let checkpoints = settings.checkpoints.clone();
            std::thread::spawn(move || {
                for complete in receive {
                    // The machines' deferred encodings (Durable::snapshot) run here, off
                    // the workers.
                    let cut = complete.encode();
                    match store.write(&cut) {
                        Ok(written) => {
                            log.written.fetch_add(1, Ordering::Relaxed);
                            *log.last.lock().expect("written lock") =
                                Some((cut.time, written.bytes, written.took.as_millis() as u64));
                            if let Ok(manifests) = file_manifests(&cut) {
                                cache.insert(cut.time, manifests);
                            }
                            keep_manifests(&store, &checkpoints, &mut cache);
                            *log.last_at.lock().expect("written lock") = Some(Instant::now());
                            // One event per checkpoint (issue 19's logs); dropped without a
                            // log subscriber.
                            tracing::info!(
                                target: "markledger",
                                bytes = written.bytes,
                                millis = written.took.as_millis() as u64,
                                "markledger stream: checkpoint written at {}",
                                markledger_operators::flow::ts_of(cut.time)
                            );
                        }
                        // Not fatal: the previous checkpoint stays the one to restore.
                        Err(error) => {
                            markledger_operators::note!("markledger stream: checkpoint not written: {error:#}")
                        }
                    }
                }
            })
        };
        Arc::new(StreamCheckpoints {
            settings,
            last_request: Mutex::new(Instant::now()),
            writer: Mutex::new(Some(send)),
            thread: Mutex::new(Some(thread)),
            log,
        })
    }

    /// The hook of `worker`'s source, in a run restored from a checkpoint at
    /// `restored_from` (0: none).
    pub fn source(self: &Arc<Self>, worker: usize, restored_from: Time) -> SourceCheckpoint {
        SourceCheckpoint {
            shared: self.clone(),
            worker,
            saved: restored_from,
        }
    }

    /// Lets the writer finish the checkpoint it has (if any), and waits for it; cuts
    /// completed after this are not written.
    pub fn finish(&self) {
        self.writer.lock().expect("writer lock").take();
        if let Some(thread) = self.thread.lock().expect("writer thread lock").take() {
            let _ = thread.join();
        }
    }

    /// Checkpoints written.
    pub fn written(&self) -> u64 {
        self.log.written.load(Ordering::Relaxed)
    }

    /// The last checkpoint written: its time, size in bytes, and milliseconds to write.
    pub fn last_written(&self) -> Option<(Time, u64, u64)> {
        *self.log.last.lock().expect("written lock")
    }

    /// How long ago the last checkpoint was written (None: none yet).
    pub fn last_written_ago(&self) -> Option<Duration> {
        self.log.last_at.lock().expect("written lock").map(|at| at.elapsed())
    }

    /// The longest a machine's save held up its worker.
    pub fn longest_save(&self) -> Duration {
        self.settings.checkpoints.longest_save()
    }

    /// Each machine's longest save, the longest first (`name 1.2 ms, …`).
    pub fn pauses(&self) -> String {
        pauses_by_machine(&self.settings.checkpoints)
    }
}

/// One worker's source in a stream run's checkpoints: told each output frontier by its
/// connector, it deposits where the worker's partitions resume ([`OffsetTracker::share`]).
pub struct SourceCheckpoint {
    shared: Arc<StreamCheckpoints>,
    worker: usize,
    /// The last checkpoint time this worker's source share was saved for.
    saved: Time,
}

impl CheckpointHook for SourceCheckpoint {
    /// Worker 0 asks for a checkpoint every interval, just past what every machine has
    /// stepped and every source has seen done ([`Checkpoints::propose`]: so each machine
    /// can still save its state as of that time, and each source still knows where its
    /// partitions resume); each worker saves its source share once the frontier reaches
    /// the time asked for; whoever completes a cut flushes the producer (the outputs before
    /// the cut are then acknowledged) and hands the cut to the writer thread.
    fn frontier_reached(&mut self, frontier: Time, offsets: &dyn OffsetTracker) -> kafka::Result<()> {
        let shared = &self.shared;
        let checkpoints = &shared.settings.checkpoints;
        if self.worker == 0 {
            let mut last = shared.last_request.lock().expect("request lock");
            if last.elapsed() >= shared.settings.interval && checkpoints.propose().is_some() {
                *last = Instant::now();
            }
        }
        if let Some(time) = checkpoints.acting_on(frontier) {
            if time > self.saved && frontier >= time {
                checkpoints.deposit(time, offsets.share(time).share(self.worker));
                if self.worker == 0 {
                    for worker in &shared.settings.idle_workers {
                        checkpoints.deposit(time, SourceShare::default().share(*worker));
                    }
                }
                self.saved = time;
            }
        }
        if let Some(cut) = checkpoints.take_complete() {
            shared
                .settings
                .producer
                .acknowledge("waiting for the broker to acknowledge outputs before a checkpoint")?;
            if let Some(writer) = shared.writer.lock().expect("writer lock").as_ref() {
                let _ = writer.send(cut);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use markledger_operators::time::Ts;
    use std::collections::BTreeMap;

    fn cut(time: Time) -> Cut {
        let mut shares = BTreeMap::new();
        let share = SourceShare {
            read_max: time,
            partitions: vec![PartitionShare {
                topic: "in".into(),
                partition: 0,
                resume: 7,
                known: vec![9],
                high_water: Some(Ts(5)),
            }],
        }
        .share(0);
        shares.insert((0, SOURCE.to_string()), share);
        Cut {
            time,
            workers: 1,
            key_groups: markledger_operators::flow::KEY_GROUPS,
            shares,
        }
    }

    fn settings() -> OutputSettings {
        crate::config::Config::with_calendar(markledger_datasets::calendars::kazakhstan()).output_settings()
    }

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("markledger-ckpt-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_written_checkpoint_reads_back_and_only_the_newest_are_kept() {
        let dir = temp("roundtrip");
        let store = Store::open(&dir, &settings()).expect("store");
        for time in 1..=5 {
            store.write(&cut(time * 1000)).expect("written");
        }
        let files = store.files().expect("files");
        assert_eq!(
            files.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
            vec![5000, 4000, 3000]
        );
        let loaded = store.load(&mut |_| {}).expect("load").expect("a checkpoint");
        assert_eq!(loaded, cut(5000));
        assert_eq!(SourceShare::of(&loaded, 0).expect("share").partitions[0].known, vec![9]);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_torn_or_corrupt_newest_checkpoint_falls_back_to_the_one_before() {
        let dir = temp("torn");
        let store = Store::open(&dir, &settings()).expect("store");
        store.write(&cut(1000)).expect("written");
        let newest = store.write(&cut(2000)).expect("written").path;
        let full = fs::read(&newest).expect("read");
        // Torn: cut short.
        fs::write(&newest, &full[..full.len() - 3]).expect("truncate");
        let mut skipped = Vec::new();
        let loaded = store.load(&mut |why| skipped.push(why)).expect("load").expect("one");
        assert_eq!(loaded.time, 1000);
        assert!(skipped[0].contains("torn"), "{skipped:?}");
        // Corrupt: one bit flipped in the body.
        let mut flipped = full.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        fs::write(&newest, &flipped).expect("corrupt");
        let mut skipped = Vec::new();
        assert_eq!(
            store
                .load(&mut |why| skipped.push(why))
                .expect("load")
                .expect("one")
                .time,
            1000
        );
        assert!(skipped[0].contains("checksum"), "{skipped:?}");
        // Another format version is refused by name.
        let mut other = full;
        other[8] = 99;
        fs::write(&newest, &other).expect("version");
        assert!(format!("{:#}", Store::read(&newest).expect_err("refused")).contains("format 99"));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_checkpoint_made_under_other_settings_is_refused_by_name() {
        // Writes a checkpoint with --close-after-days 5, then loads it as a run with the
        // default 7: refused, naming the setting; loaded with 5, it restores.
        let dir = temp("settings");
        let mut five = settings();
        five.close_after_days = 5;
        Store::open(&dir, &five)
            .expect("store")
            .write(&cut(1000))
            .expect("written");
        let refused = Store::open(&dir, &settings())
            .expect("store")
            .load(&mut |_| {})
            .expect_err("refused");
        let text = format!("{refused:#}");
        assert!(
            text.contains("--close-after-days: the checkpoint was made with 5, this run has 7"),
            "{text}"
        );
        let loaded = Store::open(&dir, &five)
            .expect("store")
            .load(&mut |_| {})
            .expect("load");
        assert_eq!(loaded.map(|cut| cut.time), Some(1000));
        let _ = fs::remove_dir_all(&dir);
    }
}
