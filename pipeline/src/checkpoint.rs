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
pub use crate::control::PartFile;
use crate::control::{Control, Message};
use anyhow::{bail, Context, Result};
use markledger_connectors::kafka::{self, CheckpointHook, ProgressTopic, SharedProducer};
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
    /// The xxh3-64 of its body.
    pub checksum: u64,
}

/// Checkpoint times whose parts a process of a cluster keeps: more than [`KEEP`], since
/// process 0 completes a cut (its manifest) only after every process has written its part.
pub const KEEP_PARTS: usize = KEEP + 2;

/// A part file of a cluster's cut in a state directory: (time, process, processes, path).
pub type Part = (Time, usize, usize, PathBuf);

/// The manifest of a cluster's cut (process 0 writes it once every process has written its
/// part; a cut without one is not restored).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClusterManifest {
    /// The checkpoint time.
    pub time: Time,
    /// Processes that wrote it.
    pub processes: usize,
    /// Workers of the whole run that wrote it.
    pub workers: usize,
    /// Each process's part.
    pub parts: Vec<PartFile>,
}

impl ClusterManifest {
    /// The manifest of the cut at `time`, written by `processes` processes of `workers` in
    /// all, from every process's part (in any order: kept in process order).
    pub fn new(time: Time, processes: usize, workers: usize, mut parts: Vec<PartFile>) -> ClusterManifest {
        parts.sort_by_key(|part| part.process);
        ClusterManifest {
            time,
            processes,
            workers,
            parts,
        }
    }
}

impl Written {
    /// This file as process `process`'s part of a cluster's cut.
    pub fn part(&self, process: usize) -> PartFile {
        PartFile {
            process,
            file: self
                .path
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default(),
            bytes: self.bytes,
            checksum: self.checksum,
        }
    }
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
        self.named("checkpoint-", ".mlck")
    }

    /// Files of this directory named `PREFIX<time>SUFFIX`, newest first.
    fn named(&self, prefix: &str, suffix: &str) -> Result<Vec<(Time, PathBuf)>> {
        let mut files = self.listed(|name| name.strip_prefix(prefix)?.strip_suffix(suffix)?.parse().ok())?;
        files.sort_by_key(|(time, _)| std::cmp::Reverse(*time));
        Ok(files)
    }

    /// Files of this directory whose name `parse` reads, with what it read.
    fn listed<T>(&self, parse: impl Fn(&str) -> Option<T>) -> Result<Vec<(T, PathBuf)>> {
        let mut files = Vec::new();
        for entry in fs::read_dir(&self.dir).with_context(|| format!("listing {}", self.dir.display()))? {
            let path = entry?.path();
            if let Some(parsed) = path.file_name().and_then(|name| name.to_str()).and_then(&parse) {
                files.push((parsed, path));
            }
        }
        Ok(files)
    }

    /// Writes `cut` atomically, then prunes all but the newest [`KEEP`].
    pub fn write(&self, cut: &Cut) -> Result<Written> {
        let written = self.write_file(&self.path_of(cut.time), cut)?;
        for (_, old) in self.files()?.into_iter().skip(KEEP) {
            let _ = fs::remove_file(old);
        }
        Ok(written)
    }

    /// Writes `cut` to `path` atomically (a temporary file, fsync, rename, fsync of the
    /// directory).
    fn write_file(&self, path: &Path, cut: &Cut) -> Result<Written> {
        let started = Instant::now();
        let body = encode(&(&self.settings, cut));
        let checksum = xxhash_rust::xxh3::xxh3_64(&body);
        let mut bytes = Vec::with_capacity(HEADER + body.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&(body.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&checksum.to_le_bytes());
        bytes.extend_from_slice(&body);
        self.write_atomically(path, &bytes)?;
        Ok(Written {
            path: path.to_path_buf(),
            bytes: bytes.len() as u64,
            took: started.elapsed(),
            checksum,
        })
    }

    /// Writes `bytes` to `path` so that a crash leaves the whole file or none: a temporary
    /// file beside it, fsync, rename, fsync of the directory.
    fn write_atomically(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let mut temporary = path.as_os_str().to_owned();
        temporary.push(".tmp");
        let temporary = PathBuf::from(temporary);
        {
            let mut file = File::create(&temporary).with_context(|| format!("creating {}", temporary.display()))?;
            file.write_all(bytes)
                .with_context(|| format!("writing {}", temporary.display()))?;
            file.sync_all()
                .with_context(|| format!("syncing {}", temporary.display()))?;
        }
        fs::rename(&temporary, path).with_context(|| format!("renaming to {}", path.display()))?;
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .with_context(|| format!("syncing {}", self.dir.display()))
    }

    /// On a cluster: writes process `process`'s part of the cut (its workers' shares) as
    /// `checkpoint-<time>.part-<process>-of-<processes>.mlck`, then prunes this process's
    /// parts to the newest [`KEEP_PARTS`] times.
    pub fn write_part(&self, cut: &Cut, process: usize, processes: usize) -> Result<Written> {
        let path = self.dir.join(format!(
            "checkpoint-{:020}.part-{process}-of-{processes}.mlck",
            cut.time
        ));
        let written = self.write_file(&path, cut)?;
        let (_, pruned) = Store::kept_parts(self.parts()?);
        for (_, part_process, _, path) in pruned {
            if part_process == process {
                let _ = fs::remove_file(path);
            }
        }
        Ok(written)
    }

    /// Parts of cluster cuts in this directory, newest first: (time, process, processes,
    /// file).
    pub fn parts(&self) -> Result<Vec<Part>> {
        let listed = self.listed(|name| {
            let rest = name.strip_prefix("checkpoint-")?.strip_suffix(".mlck")?;
            let (time, part) = rest.split_once(".part-")?;
            let (process, processes) = part.split_once("-of-")?;
            Some((time.parse().ok()?, process.parse().ok()?, processes.parse().ok()?))
        })?;
        let mut parts: Vec<_> = listed
            .into_iter()
            .map(|((time, process, processes), path)| (time, process, processes, path))
            .collect();
        parts.sort_by_key(|(time, process, _, _)| (std::cmp::Reverse(*time), *process));
        Ok(parts)
    }

    /// `parts` (newest first, as [`Store::parts`] gives them) split into those kept, of the
    /// newest [`KEEP_PARTS`] times, and the older ones.
    fn kept_parts(parts: Vec<Part>) -> (Vec<Part>, Vec<Part>) {
        let mut times: Vec<Time> = parts.iter().map(|part| part.0).collect();
        times.dedup();
        times.truncate(KEEP_PARTS);
        parts.into_iter().partition(|part| times.contains(&part.0))
    }

    /// Process 0 of a cluster: every process has written its part of the cut at
    /// `manifest.time`; writes the cut's manifest (`checkpoint-<time>.cluster.json`,
    /// atomically), which makes it complete, and prunes manifests to the newest [`KEEP`].
    pub fn write_manifest(&self, manifest: &ClusterManifest) -> Result<PathBuf> {
        let path = self.dir.join(format!("checkpoint-{:020}.cluster.json", manifest.time));
        let text = serde_json::to_string_pretty(manifest).context("encoding the cluster manifest")?;
        self.write_atomically(&path, text.as_bytes())?;
        for (_, old) in self.manifests()?.into_iter().skip(KEEP) {
            let _ = fs::remove_file(old);
        }
        Ok(path)
    }

    /// Cluster manifests in this directory, newest first.
    pub fn manifests(&self) -> Result<Vec<(Time, PathBuf)>> {
        self.named("checkpoint-", ".cluster.json")
    }

    /// The cut at `time` as far as this directory has it: its one-process checkpoint file,
    /// or every part of it found here merged (all of them when the directory is shared or
    /// holds copies of every process's; only this process's otherwise). None: no file of
    /// that time. The caller checks the shares it needs are there.
    pub fn read_at(&self, time: Time) -> Result<Option<(OutputSettings, Cut)>> {
        let single = self.path_of(time);
        if single.exists() {
            return Ok(Some(Store::read_with_settings(&single)?));
        }
        let parts: Vec<PathBuf> = self
            .parts()?
            .into_iter()
            .filter(|part| part.0 == time)
            .map(|(_, _, _, path)| path)
            .collect();
        Store::merge_parts(&parts)
    }

    /// The cut a cluster manifest names, every part read and checked against it.
    fn read_manifest(path: &Path) -> Result<(OutputSettings, Cut)> {
        let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let manifest: ClusterManifest =
            serde_json::from_str(&text).with_context(|| format!("{} is not a cluster manifest", path.display()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut files = Vec::with_capacity(manifest.parts.len());
        for part in &manifest.parts {
            let file = dir.join(&part.file);
            if !file.exists() {
                bail!(
                    "{} names {}, not in {}: restoring a cluster's checkpoint on other processes needs \
                     every process's part (a shared state directory, or copies of each)",
                    path.display(),
                    part.file,
                    dir.display()
                );
            }
            files.push(file);
        }
        Store::merge_parts(&files)?.with_context(|| format!("{} names no part", path.display()))
    }

    /// The parts of one cut read (each verified) and their shares merged into one cut, with
    /// the settings it was made under (None: no part).
    fn merge_parts(parts: &[PathBuf]) -> Result<Option<(OutputSettings, Cut)>> {
        let mut merged: Option<(OutputSettings, Cut)> = None;
        for path in parts {
            let (settings, part) = Store::read_with_settings(path)?;
            match &mut merged {
                None => merged = Some((settings, part)),
                Some((_, cut)) => cut.shares.extend(part.shares),
            }
        }
        Ok(merged)
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
        // One-process checkpoints and cluster manifests (every part read), newest first.
        let mut candidates: Vec<(Time, PathBuf, bool)> = self
            .files()?
            .into_iter()
            .map(|(time, path)| (time, path, false))
            .collect();
        candidates.extend(self.manifests()?.into_iter().map(|(time, path)| (time, path, true)));
        candidates.sort_by_key(|(time, _, _)| std::cmp::Reverse(*time));
        for (_, path, manifest) in candidates {
            let read = if manifest {
                Store::read_manifest(&path)
            } else {
                Store::read_with_settings(&path)
            };
            match read.and_then(|(settings, cut)| self.verify_final_codes(&cut).map(|()| (settings, cut))) {
                Ok((settings, cut)) => {
                    self.check_settings(&settings, &path)?;
                    return Ok(Some(cut));
                }
                Err(error) => report(format!("skipping a checkpoint: {error:#}")),
            }
        }
        Ok(None)
    }

    /// Refuses a checkpoint (`path`) made under other settings than this run's, naming each
    /// difference.
    pub fn check_settings(&self, settings: &OutputSettings, path: &Path) -> Result<()> {
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
        Ok(())
    }

    /// The directory holding the checkpoint files.
    pub fn dir(&self) -> &Path {
        &self.dir
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
        let mut kept: Vec<(Time, PathBuf)> = self.files()?.into_iter().take(KEEP).collect();
        // A cluster's parts: this process's, and with a shared directory the others' too
        // (each store only looks at its own worker's manifests).
        let (kept_parts, _) = Store::kept_parts(self.parts()?);
        kept.extend(kept_parts.into_iter().map(|(time, _, _, path)| (time, path)));
        cache.retain(|path, _| kept.iter().any(|(_, kept)| kept == path));
        let mut by_worker: BTreeMap<usize, Vec<Manifest>> = BTreeMap::new();
        for (_, path) in kept {
            let manifests = cache.entry(path.clone()).or_insert_with(|| {
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

/// Final-code and emission-text manifests of checkpoint files already read, by file:
/// (worker, manifest), each store deleting only files none of its worker's names.
pub type ManifestCache = BTreeMap<PathBuf, Vec<(usize, Manifest)>>;

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
    /// A stream on a cluster: the control messages, and the progress topic on which
    /// process 0 records each complete cut.
    pub cluster: Option<(Arc<Control>, Arc<ProgressTopic>)>,
}

/// What the writer thread writes.
enum Job {
    /// A complete cut (of this process's workers, on a cluster: its part).
    Cut(Complete),
    /// Process 0 of a cluster: every process has written its part of a cut.
    Manifest(ClusterManifest),
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
    /// the states the machines left to it), and a cluster's manifests.
    writer: Mutex<Option<mpsc::Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    log: Arc<WriterLog>,
    /// Process 0 of a cluster: which processes have taken in each request, and the parts
    /// written of each cut.
    registered: Mutex<BTreeMap<Time, usize>>,
    parts: Mutex<BTreeMap<Time, Vec<PartFile>>>,
}

impl StreamCheckpoints {
    /// Starts the writer thread: one checkpoint file at a time, off the workers' threads.
    pub fn start(store: Store, settings: StreamCheckpointSettings) -> Arc<StreamCheckpoints> {
        let (send, receive) = mpsc::channel::<Job>();
        let log = Arc::new(WriterLog::default());
        // The stores may delete only what no checkpoint already on disk names.
        let mut cache = ManifestCache::new();
        keep_manifests(&store, &settings.checkpoints, &mut cache);
        let thread = {
            let log = log.clone();
            let checkpoints = settings.checkpoints.clone();
            let cluster = settings.cluster.clone();
            let producer = settings.producer.clone();
            std::thread::spawn(move || {
                for job in receive {
                    match job {
                        Job::Cut(complete) => {
                            write_cut(&store, complete, cluster.as_ref().map(|c| &*c.0), &log, &mut cache);
                            keep_manifests(&store, &checkpoints, &mut cache);
                        }
                        Job::Manifest(manifest) => {
                            let Some((_, progress)) = &cluster else { continue };
                            let recorded = store
                                .write_manifest(&manifest)
                                .and_then(|_| Ok(progress.publish_checkpoint(&producer, manifest.time)?));
                            match recorded {
                                Ok(()) => tracing::info!(
                                    target: "markledger",
                                    "markledger stream: the cluster's checkpoint at {} is complete ({} parts)",
                                    ts_of(manifest.time),
                                    manifest.parts.len()
                                ),
                                Err(error) => markledger_operators::note!(
                                    "markledger stream: the cluster's checkpoint at {} not completed: {error:#}",
                                    ts_of(manifest.time)
                                ),
                            }
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
            registered: Mutex::default(),
            parts: Mutex::default(),
        })
    }

    /// Process 0 of a cluster: `process` has taken in the request for a checkpoint at
    /// `time`; once every other process has, process 0's sources are released.
    pub fn registered(&self, time: Time) {
        let Some((control, _)) = &self.settings.cluster else {
            return;
        };
        let mut registered = self.registered.lock().expect("registered lock");
        let count = registered.entry(time).or_default();
        *count += 1;
        if *count + 1 >= control.processes {
            registered.retain(|t, _| *t > time);
            if self.settings.checkpoints.hold() == time {
                self.settings.checkpoints.release_hold();
            }
        }
    }

    /// Process 0 of a cluster: `part` of the cut at `time` is written; once every process's
    /// is, the writer writes the cut's manifest.
    pub fn part_written(&self, time: Time, part: PartFile) {
        let Some((control, _)) = &self.settings.cluster else {
            return;
        };
        let mut parts = self.parts.lock().expect("parts lock");
        let written = parts.entry(time).or_default();
        written.push(part);
        if written.len() < control.processes {
            return;
        }
        let written = parts.remove(&time).unwrap_or_default();
        // Older cuts some process skipped never complete.
        parts.retain(|t, _| *t > time);
        let manifest = ClusterManifest::new(
            time,
            control.processes,
            self.settings.checkpoints.total_workers(),
            written,
        );
        if let Some(writer) = self.writer.lock().expect("writer lock").as_ref() {
            let _ = writer.send(Job::Manifest(manifest));
        }
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

/// The writer thread's part of a complete cut: encodes it (the machines' deferred states)
/// and writes it, on a cluster as this process's part, then tells process 0.
fn write_cut(store: &Store, complete: Complete, control: Option<&Control>, log: &WriterLog, cache: &mut ManifestCache) {
    let cut = complete.encode();
    let written = match control {
        None => store.write(&cut),
        Some(control) => store.write_part(&cut, control.process, control.processes),
    };
    match written {
        Ok(written) => {
            log.written.fetch_add(1, Ordering::Relaxed);
            *log.last.lock().expect("written lock") = Some((cut.time, written.bytes, written.took.as_millis() as u64));
            if let Ok(manifests) = file_manifests(&cut) {
                cache.insert(written.path.clone(), manifests);
            }
            *log.last_at.lock().expect("written lock") = Some(Instant::now());
            if let Some(control) = control {
                control.send(
                    0,
                    Message::Written {
                        time: cut.time,
                        part: written.part(control.process),
                    },
                );
            }
            // One event per checkpoint (issue 19's logs); dropped without a log subscriber.
            tracing::info!(
                target: "markledger",
                bytes = written.bytes,
                millis = written.took.as_millis() as u64,
                "markledger stream: checkpoint written at {}",
                ts_of(cut.time)
            );
        }
        // Not fatal: the previous checkpoint stays the one to restore.
        Err(error) => markledger_operators::note!("markledger stream: checkpoint not written: {error:#}"),
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
            if last.elapsed() >= shared.settings.interval {
                match &shared.settings.cluster {
                    None => {
                        if checkpoints.propose().is_some() {
                            *last = Instant::now();
                        }
                    }
                    // At least this source's watermark, which it holds there until every
                    // process has the request (Checkpoints::propose_at_least).
                    // Not while a hold is in place (the start, until every process has
                    // restored the same cut; or a request on its way).
                    Some((control, _)) if checkpoints.hold() == Time::MAX => {
                        if let Some(time) = checkpoints.propose_at_least(checkpoints.source_at()) {
                            checkpoints.hold_at(time);
                            control.to_others(Message::Request(time));
                            *last = Instant::now();
                        }
                    }
                    Some(_) => {}
                }
            }
        }
        if let Some(time) = checkpoints.acting_on(frontier) {
            if time > self.saved && frontier >= time {
                checkpoints.deposit(time, offsets.share(time).share(self.worker));
                if self.worker == checkpoints.first_worker() {
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
                let _ = writer.send(Job::Cut(cut));
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
