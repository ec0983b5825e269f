//! "Accounts: emission text" — the code text of emissions waiting for their expiry, off RAM
//! (issue 17; docs/ARCHITECTURE.md, "Final codes on disk", "Emission text").
//!
//! An emission's codes are needed again only when its expiry fires (about six weeks later)
//! or when its account is terminated first (DOMAIN.md §9): the accounts keep a [`TextRef`]
//! (segment, offset, length: 24 bytes an emission, whatever its codes) and the text goes to
//! one append-only store per worker, in the run's final-code place beside the final-code
//! stores (`ROOT/emission-text/worker-N`).
//!
//! - **Entries.** `[u32 payload length][u64 xxh3 of the payload][payload]`, the payload
//!   being the account (u16 length + bytes), the GTIN (u8 length + bytes) and the codes
//!   joined by newlines (a code never holds one: `validate::is_code`). The account is in
//!   the entry so that a key group (the cluster's checkpoint shares) is computable from a
//!   segment alone. A read verifies the entry's checksum.
//! - **Segments.** Entries are appended to an active buffer in RAM, sealed into an
//!   immutable file `seg-SEQ.mlet` at [`SEGMENT_BYTES_MAX`], at every checkpoint, or after
//!   every entry when spilling is forced ([`super::FinalCodes::spill_all`]). A sealed
//!   segment is never modified.
//! - **Checkpoints.** The accounts record a [`Manifest`] of the live segments (the
//!   final-code manifest's type: file, size, xxh3 of the whole file, entries), so a
//!   checkpoint writes only the active buffer; restoring verifies every named file and a
//!   torn or corrupt one refuses the restore by name, exactly as a final-code run file does
//!   (the checkpoint loader falls back to an older checkpoint).
//! - **Garbage.** A segment whose every entry has been read back for good (expired or
//!   terminated) is dead; its file is deleted at once in a run without checkpoints, and
//!   otherwise once no kept checkpoint and no recent save names it (the final-code tier's
//!   rule, fed by the same [`Checkpoints::kept_manifests`]).
//! - **Failures.** A write that fails (a full disk) or an entry that does not verify ends
//!   the process with the store's message, which names the directory and the file.

use super::run::{io_error, Unsynced};
use super::tier::TextMemory;
use super::{FinalCodes, Manifest, RunRef, StoreError, MANIFEST_FORMAT_VERSION};
use crate::checkpoint::Checkpoints;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use xxhash_rust::xxh3::xxh3_64;

/// The subdirectory of a final-code place that holds the emission-text stores.
pub const SEGMENTS_SUBDIR: &str = "emission-text";
/// The active buffer is sealed into a segment file at this size (4 MiB of RAM per worker
/// at most, about 48,000 codes of 86 bytes).
pub const SEGMENT_BYTES_MAX: usize = 4 << 20;
/// Bytes of an entry's header: payload length and checksum.
const ENTRY_HEADER_BYTES: usize = 12;
/// Manifests this worker saved that stay protected until the pipeline names the kept ones
/// (as the final-code tier's).
const SAVED_KEPT: usize = 8;

/// Where an emission's text is: 24 bytes in the accounts' RAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TextRef {
    /// The segment's sequence number (the active buffer's while it is not sealed).
    pub segment: u64,
    /// Where the entry starts in the segment.
    pub offset: u64,
    /// The entry's length, header included.
    pub len: u32,
}

/// One emission's text as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmissionEntry {
    /// The emitting account.
    pub account: String,
    /// The emission's GTIN.
    pub gtin: String,
    /// Its codes, in emission order.
    pub codes: Vec<String>,
}

/// A sealed segment that still holds live entries.
#[derive(Clone, Debug)]
struct Segment {
    bytes: u64,
    checksum: u64,
    entries: u64,
    live: u64,
}

/// The file name of segment `sequence`.
pub fn segment_name(sequence: u64) -> String {
    format!("seg-{sequence:020}.mlet")
}

fn sequence_of(name: &str) -> Option<u64> {
    let stem = name.strip_prefix("seg-")?;
    let stem = stem.strip_suffix(".mlet").or_else(|| stem.strip_suffix(".mlet.tmp"))?;
    stem.parse().ok()
}

/// One worker's emission-text directory under a place's root.
pub fn segments_dir(root: &Path, worker: usize) -> PathBuf {
    root.join(SEGMENTS_SUBDIR).join(format!("worker-{worker}"))
}

/// Ends the process with the store's error (it names the directory and the file).
fn fail(error: StoreError) -> ! {
    panic!("{error}")
}

/// One worker's emission text (see the module docs). Not saved itself: the accounts record
/// its [`Manifest`] and their [`TextRef`]s.
pub struct EmissionText {
    place: FinalCodes,
    worker: usize,
    checkpoints: Option<Checkpoints>,
    created: bool,
    /// Entries not sealed yet: the segment `next_sequence` once sealed.
    active: Vec<u8>,
    active_entries: u64,
    active_live: u64,
    sealed: BTreeMap<u64, Segment>,
    next_sequence: u64,
    /// Sealed segments with no live entry whose files are not deleted yet.
    dead: BTreeSet<u64>,
    /// A segment died since the last collection.
    dead_added: bool,
    kept_generation: u64,
    kept: Vec<Manifest>,
    saved: VecDeque<Manifest>,
    reader: Option<(u64, File)>,
    /// Segments sealed since the last checkpoint, not yet fsynced ([`Unsynced`]); made
    /// with the directory.
    unsynced: Option<Unsynced>,
}

impl std::fmt::Debug for EmissionText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmissionText")
            .field("dir", &self.dir())
            .field("sealed", &self.sealed.len())
            .finish()
    }
}

impl EmissionText {
    /// Worker 0's store in `place` (the worker is set by [`EmissionText::attach`]); nothing
    /// is created on disk until the first segment is sealed.
    pub fn new(place: FinalCodes) -> EmissionText {
        EmissionText {
            place,
            worker: 0,
            checkpoints: None,
            created: false,
            active: Vec::new(),
            active_entries: 0,
            active_live: 0,
            sealed: BTreeMap::new(),
            next_sequence: 0,
            dead: BTreeSet::new(),
            dead_added: false,
            kept_generation: 0,
            kept: Vec::new(),
            saved: VecDeque::new(),
            reader: None,
            unsynced: None,
        }
    }

    /// The worker this store belongs to, and the run's checkpoints (if it takes them).
    pub fn attach(&mut self, worker: usize, checkpoints: Option<Checkpoints>) {
        self.worker = worker;
        self.checkpoints = checkpoints;
    }

    /// This worker's directory.
    pub fn dir(&self) -> PathBuf {
        segments_dir(self.place.root(), self.worker)
    }

    /// The run's place (where every worker's directory is).
    pub fn place(&self) -> &FinalCodes {
        &self.place
    }

    /// Appends an emission's text; where to read it back.
    pub fn append(&mut self, account: &str, gtin: &str, codes: &[String]) -> TextRef {
        debug_assert!(codes.iter().all(|code| !code.is_empty() && !code.contains('\n')));
        let start = self.active.len();
        self.active.extend_from_slice(&[0; ENTRY_HEADER_BYTES]);
        let account_len = u16::try_from(account.len()).expect("accounts are validated to 64 bytes");
        let gtin_len = u8::try_from(gtin.len()).expect("GTINs are validated to 14 digits");
        self.active.extend_from_slice(&account_len.to_le_bytes());
        self.active.extend_from_slice(account.as_bytes());
        self.active.push(gtin_len);
        self.active.extend_from_slice(gtin.as_bytes());
        for (i, code) in codes.iter().enumerate() {
            if i > 0 {
                self.active.push(b'\n');
            }
            self.active.extend_from_slice(code.as_bytes());
        }
        let payload = &self.active[start + ENTRY_HEADER_BYTES..];
        let payload_len = u32::try_from(payload.len()).expect("an emission's text is under 4 GiB");
        let checksum = xxh3_64(payload);
        self.active[start..start + 4].copy_from_slice(&payload_len.to_le_bytes());
        self.active[start + 4..start + ENTRY_HEADER_BYTES].copy_from_slice(&checksum.to_le_bytes());
        self.active_entries += 1;
        self.active_live += 1;
        let reference = TextRef {
            segment: self.next_sequence,
            offset: start as u64,
            len: (self.active.len() - start) as u32,
        };
        if self.place.spill_all || self.active.len() >= SEGMENT_BYTES_MAX {
            self.seal().unwrap_or_else(|error| fail(error));
        }
        reference
    }

    /// Reads an emission's text back and releases it: the entry is dead from now on.
    pub fn take(&mut self, reference: TextRef) -> EmissionEntry {
        let entry = self.read(reference).unwrap_or_else(|error| fail(error));
        self.release(reference);
        entry
    }

    /// Reads an emission's text back (verifying its checksum).
    pub fn read(&mut self, reference: TextRef) -> Result<EmissionEntry, StoreError> {
        let name = segment_name(reference.segment);
        let bytes = if reference.segment == self.next_sequence {
            let start = reference.offset as usize;
            self.active[start..start + reference.len as usize].to_vec()
        } else {
            let dir = self.dir();
            if self
                .reader
                .as_ref()
                .is_none_or(|(segment, _)| *segment != reference.segment)
            {
                let file = File::open(dir.join(&name)).map_err(|error| io_error(&dir, &name, "opening", error))?;
                self.reader = Some((reference.segment, file));
            }
            let (_, file) = self.reader.as_ref().expect("opened");
            let mut bytes = vec![0; reference.len as usize];
            file.read_exact_at(&mut bytes, reference.offset)
                .map_err(|error| io_error(&dir, &name, "reading", error))?;
            bytes
        };
        decode_entry(&bytes).map_err(|detail| StoreError::Corrupt {
            dir: self.dir(),
            file: name,
            detail: format!("the entry at {}: {detail}", reference.offset),
        })
    }

    /// The entry will not be read again: its segment's file goes once every entry has.
    pub fn release(&mut self, reference: TextRef) {
        if reference.segment == self.next_sequence {
            self.active_live -= 1;
            return;
        }
        let Some(segment) = self.sealed.get_mut(&reference.segment) else {
            debug_assert!(false, "a live entry's segment is live");
            return;
        };
        segment.live -= 1;
        if segment.live == 0 {
            self.sealed.remove(&reference.segment);
            self.dead.insert(reference.segment);
            self.dead_added = true;
            if self
                .reader
                .as_ref()
                .is_some_and(|(segment, _)| *segment == reference.segment)
            {
                self.reader = None;
            }
            self.collect_garbage();
        }
    }

    /// Writes the active buffer as a segment file (nothing when every entry in it is dead
    /// already).
    fn seal(&mut self) -> Result<(), StoreError> {
        if self.active_live == 0 {
            self.active.clear();
            self.active_entries = 0;
            return Ok(());
        }
        let dir = self.dir();
        if !self.created {
            fs::create_dir_all(&dir).map_err(|error| io_error(&dir, ".", "creating", error))?;
            self.created = true;
        }
        let sequence = self.next_sequence;
        let name = segment_name(sequence);
        let temporary = format!("{name}.tmp");
        let sync = !self.place.spill_all;
        if let Some(limit) = &self.place.write_limit {
            limit
                .take(self.active.len() as u64)
                .map_err(|error| io_error(&dir, &temporary, "writing", error))?;
        }
        let mut file =
            File::create(dir.join(&temporary)).map_err(|error| io_error(&dir, &temporary, "creating", error))?;
        file.write_all(&self.active)
            .map_err(|error| io_error(&dir, &temporary, "writing", error))?;
        fs::rename(dir.join(&temporary), dir.join(&name)).map_err(|error| io_error(&dir, &name, "renaming", error))?;
        if sync {
            // Not fsynced here: a checkpoint's writer settles it (`take_unsynced`).
            let unsynced = self.unsynced.get_or_insert_with(|| Unsynced::new(&dir));
            unsynced.push(name);
            if unsynced.is_full() {
                unsynced.take().settle()?;
            }
        }
        self.sealed.insert(
            sequence,
            Segment {
                bytes: self.active.len() as u64,
                checksum: xxh3_64(&self.active),
                entries: self.active_entries,
                live: self.active_live,
            },
        );
        self.next_sequence += 1;
        self.active.clear();
        self.active_entries = 0;
        self.active_live = 0;
        self.publish_memory();
        Ok(())
    }

    /// The segments sealed since the last call and not yet fsynced: settled before a
    /// checkpoint naming them is written.
    pub fn take_unsynced(&mut self) -> Option<Unsynced> {
        self.unsynced.as_mut().map(Unsynced::take)
    }

    /// Seals the active buffer and gives the manifest a checkpoint records.
    pub fn checkpoint(&mut self) -> Manifest {
        self.seal().unwrap_or_else(|error| fail(error));
        self.publish_memory();
        let manifest = self.manifest();
        self.saved.push_back(manifest.clone());
        if self.saved.len() > SAVED_KEPT {
            self.saved.pop_front();
        }
        manifest
    }

    fn manifest(&self) -> Manifest {
        let runs = self
            .sealed
            .iter()
            .map(|(&sequence, segment)| RunRef {
                file: segment_name(sequence),
                epoch: 0,
                order: sequence,
                records: segment.entries,
                bytes: segment.bytes,
                checksum: segment.checksum,
            })
            .collect();
        Manifest {
            format_version: MANIFEST_FORMAT_VERSION,
            epoch_ms: 0,
            runs,
            next_sequence: self.next_sequence,
        }
    }

    /// Opens the segments a checkpoint's manifest names, each verified, with the entries
    /// the restored accounts still reference as live. Files the manifest does not name
    /// (written after it) are garbage, deleted once no kept checkpoint names them.
    pub fn open<'a>(&mut self, manifest: &Manifest, live: impl Iterator<Item = &'a TextRef>) -> Result<(), StoreError> {
        let dir = self.dir();
        verify_segments(&dir, manifest)?;
        // A worker that never sealed a segment has no directory yet.
        self.created = dir.is_dir();
        self.active.clear();
        self.active_entries = 0;
        self.active_live = 0;
        self.reader = None;
        self.next_sequence = manifest.next_sequence;
        self.sealed = manifest
            .runs
            .iter()
            .map(|run| {
                let segment = Segment {
                    bytes: run.bytes,
                    checksum: run.checksum,
                    entries: run.records,
                    live: 0,
                };
                (run.order, segment)
            })
            .collect();
        for reference in live {
            let segment = self
                .sealed
                .get_mut(&reference.segment)
                .ok_or_else(|| StoreError::Manifest {
                    dir: dir.clone(),
                    detail: format!(
                        "an emission's text is in {}, which it does not name",
                        segment_name(reference.segment)
                    ),
                })?;
            segment.live += 1;
        }
        let dead: Vec<u64> = self
            .sealed
            .iter()
            .filter(|(_, s)| s.live == 0)
            .map(|(&q, _)| q)
            .collect();
        for sequence in dead {
            self.sealed.remove(&sequence);
            self.dead.insert(sequence);
            self.dead_added = true;
        }
        let listing = match fs::read_dir(&dir) {
            Ok(listing) => Some(listing),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound && manifest.runs.is_empty() => None,
            Err(error) => return Err(io_error(&dir, ".", "listing", error)),
        };
        for name in listing
            .into_iter()
            .flatten()
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        {
            if let Some(sequence) = sequence_of(&name) {
                // New segments are numbered past every file here: a file a crashed run
                // wrote after this checkpoint is garbage, never overwritten by a live one.
                self.next_sequence = self.next_sequence.max(sequence + 1);
                if !self.sealed.contains_key(&sequence) {
                    self.dead.insert(sequence);
                    self.dead_added = true;
                }
            }
        }
        self.saved.push_back(manifest.clone());
        Ok(())
    }

    /// Deletes the files of dead segments that no kept checkpoint and no recent save names
    /// (with checkpoints, only once the pipeline has said which it keeps).
    pub fn collect_garbage(&mut self) {
        if self.dead.is_empty() {
            return;
        }
        let mut news = false;
        if let Some(checkpoints) = &self.checkpoints {
            if let Some((generation, kept)) = checkpoints.kept_manifests(self.worker, self.kept_generation) {
                self.kept_generation = generation;
                self.kept = kept;
                news = true;
            }
            if self.kept_generation == 0 {
                return;
            }
        }
        if !news && !self.dead_added {
            return;
        }
        self.dead_added = false;
        let referenced: BTreeSet<&str> = self
            .kept
            .iter()
            .chain(&self.saved)
            .flat_map(|manifest| manifest.runs.iter().map(|run| run.file.as_str()))
            .collect();
        let dir = self.dir();
        let deletable: Vec<u64> = self
            .dead
            .iter()
            .copied()
            .filter(|&sequence| {
                debug_assert!(!self.sealed.contains_key(&sequence) && sequence < self.next_sequence);
                !referenced.contains(segment_name(sequence).as_str())
            })
            .collect();
        for sequence in deletable {
            let name = segment_name(sequence);
            for file in [name.clone(), format!("{name}.tmp")] {
                match fs::remove_file(dir.join(&file)) {
                    Ok(()) => {}
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                    Err(error) => fail(io_error(&dir, &file, "deleting", error)),
                }
            }
            self.dead.remove(&sequence);
        }
    }

    /// Bytes in RAM (the active buffer) and on disk (live sealed segments).
    pub fn bytes(&self) -> (u64, u64) {
        let disk = self.sealed.values().map(|segment| segment.bytes).sum();
        (self.active.capacity() as u64, disk)
    }

    /// Reports what this worker's text holds now to the run's memory line.
    fn publish_memory(&self) {
        let (ram_bytes, disk_bytes) = self.bytes();
        let emissions = self.active_live + self.sealed.values().map(|segment| segment.live).sum::<u64>();
        self.place.publish_text(
            self.worker,
            TextMemory {
                emissions,
                ram_bytes,
                disk_bytes,
            },
        );
    }
}

impl Drop for EmissionText {
    fn drop(&mut self) {
        self.publish_memory();
        if self.place.is_temporary() {
            self.reader = None;
            let _ = fs::remove_dir_all(self.dir());
            // The last store out removes the run's directories (empty by then).
            let _ = fs::remove_dir(self.place.root().join(SEGMENTS_SUBDIR));
            let _ = fs::remove_dir(self.place.root());
        }
    }
}

/// Reads entries from another worker's sealed segments (a restore at another worker count
/// moves each kept emission's text into its new worker's store), one file handle cached:
/// an old worker's emissions are read in their order, so mostly sequentially.
#[derive(Debug)]
pub struct SegmentReader {
    dir: PathBuf,
    file: Option<(u64, File)>,
}

impl SegmentReader {
    /// A reader of the segments in `dir`.
    pub fn new(dir: PathBuf) -> SegmentReader {
        SegmentReader { dir, file: None }
    }

    /// The entry `reference` points at, its checksum verified.
    pub fn read(&mut self, reference: TextRef) -> Result<EmissionEntry, StoreError> {
        let dir = &self.dir;
        let name = segment_name(reference.segment);
        if self
            .file
            .as_ref()
            .is_none_or(|(segment, _)| *segment != reference.segment)
        {
            let file = File::open(dir.join(&name)).map_err(|error| io_error(dir, &name, "opening", error))?;
            self.file = Some((reference.segment, file));
        }
        let (_, file) = self.file.as_ref().expect("opened");
        let mut bytes = vec![0; reference.len as usize];
        file.read_exact_at(&mut bytes, reference.offset)
            .map_err(|error| io_error(dir, &name, "reading", error))?;
        decode_entry(&bytes).map_err(|detail| StoreError::Corrupt {
            dir: dir.clone(),
            file: name,
            detail: format!("the entry at {}: {detail}", reference.offset),
        })
    }
}

/// Reads and checks every segment file `manifest` names in `dir` (size and checksum): a
/// torn or corrupt one is refused by name. The bytes checked.
pub fn verify_segments(dir: &Path, manifest: &Manifest) -> Result<u64, StoreError> {
    manifest.check_format("emission-text", dir)?;
    let mut total = 0;
    for run in &manifest.runs {
        let bytes = fs::read(dir.join(&run.file)).map_err(|error| io_error(dir, &run.file, "reading", error))?;
        let corrupt = |detail: String| StoreError::Corrupt {
            dir: dir.to_path_buf(),
            file: run.file.clone(),
            detail,
        };
        if bytes.len() as u64 != run.bytes {
            return Err(corrupt(format!(
                "{} bytes, the manifest says {}",
                bytes.len(),
                run.bytes
            )));
        }
        if xxh3_64(&bytes) != run.checksum {
            return Err(corrupt("its checksum does not match the manifest's".into()));
        }
        total += run.bytes;
    }
    Ok(total)
}

fn decode_entry(bytes: &[u8]) -> Result<EmissionEntry, String> {
    if bytes.len() < ENTRY_HEADER_BYTES {
        return Err("shorter than its header".into());
    }
    let payload_len = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes")) as usize;
    let checksum = u64::from_le_bytes(bytes[4..ENTRY_HEADER_BYTES].try_into().expect("8 bytes"));
    let payload = &bytes[ENTRY_HEADER_BYTES..];
    if payload.len() != payload_len {
        return Err(format!(
            "{} payload bytes, its header says {payload_len}",
            payload.len()
        ));
    }
    if xxh3_64(payload) != checksum {
        return Err("its checksum does not match".into());
    }
    let text = |bytes: &[u8]| String::from_utf8(bytes.to_vec()).map_err(|_| "not UTF-8".to_string());
    let short = || "truncated".to_string();
    let account_len = u16::from_le_bytes(payload.get(0..2).ok_or_else(short)?.try_into().expect("2 bytes")) as usize;
    let account = text(payload.get(2..2 + account_len).ok_or_else(short)?)?;
    let rest = &payload[2 + account_len..];
    let gtin_len = *rest.first().ok_or_else(short)? as usize;
    let gtin = text(rest.get(1..1 + gtin_len).ok_or_else(short)?)?;
    let codes = text(&rest[1 + gtin_len..])?;
    let codes = codes
        .split('\n')
        .filter(|code| !code.is_empty())
        .map(str::to_string)
        .collect();
    Ok(EmissionEntry { account, gtin, codes })
}

#[cfg(test)]
mod tests {
    use super::{segment_name, EmissionText, TextRef};
    use crate::final_codes::tests::TempDir;
    use crate::final_codes::{FinalCodes, StoreError};

    fn codes(prefix: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}\u{1d}21{i:05}")).collect()
    }

    /// A place for segments under a directory removed when the test ends (hold the guard).
    fn place(name: &str, spill_all: bool) -> (TempDir, FinalCodes) {
        let base = TempDir::new(&format!("segments-{name}"));
        std::fs::create_dir_all(base.path()).expect("test dir");
        let mut place = FinalCodes::temporary(base.path());
        place.spill_all = spill_all;
        (base, place)
    }

    #[test]
    fn text_reads_back_from_the_buffer_and_from_sealed_segments() {
        // Entries read back equal what was appended, before and after their segment is
        // sealed; a dead segment's file is deleted at once unless a save names it.
        let (_dir, place_a) = place("roundtrip", false);
        let mut text = EmissionText::new(place_a);
        let a = text.append("KZ-1", "04601234567893", &codes("a", 3));
        let b = text.append("KZ-2", "04601234567894", &codes("b", 1));
        let entry = text.read(a).expect("from the buffer");
        assert_eq!(
            (entry.account.as_str(), entry.gtin.as_str()),
            ("KZ-1", "04601234567893")
        );
        assert_eq!(entry.codes, codes("a", 3));
        let manifest = text.checkpoint();
        assert_eq!(manifest.runs.len(), 1);
        let file = text.dir().join(&manifest.runs[0].file);
        assert!(file.exists());
        // Sealed without fsync: the checkpoint's writer is handed the file, once.
        let owed = text.take_unsynced().expect("a segment was sealed");
        assert_eq!(owed.files(), [manifest.runs[0].file.clone()]);
        owed.settle().expect("synced");
        assert!(text.take_unsynced().expect("the list").files().is_empty());
        assert_eq!(text.take(b).codes, codes("b", 1));
        assert_eq!(text.take(a).codes, codes("a", 3));
        assert!(file.exists(), "a saved manifest names it: kept");
        assert_eq!(text.bytes().1, 0);
        let (_spilled_dir, place_b) = place("spilled", true);
        let mut spilled = EmissionText::new(place_b);
        let c = spilled.append("KZ-3", "04601234567893", &codes("c", 2));
        let file = spilled.dir().join(segment_name(c.segment));
        assert!(file.exists(), "spilling seals at once");
        assert!(spilled.take_unsynced().is_none(), "a spill-only store owes no fsync");
        assert_eq!(spilled.take(c).codes, codes("c", 2));
        assert!(!file.exists(), "every entry released, no checkpoint names it: deleted");
    }

    #[test]
    fn a_worker_that_never_sealed_a_segment_restores() {
        // Its checkpoint names no segment and it has no directory: nothing to verify.
        let (_dir, place) = place("empty", false);
        let mut text = EmissionText::new(place.clone());
        let manifest = text.checkpoint();
        assert!(manifest.runs.is_empty() && !text.dir().exists());
        let mut reopened = EmissionText::new(place);
        reopened.open(&manifest, std::iter::empty()).expect("restores");
        let reference = reopened.append("KZ-1", "04601234567893", &codes("a", 1));
        assert_eq!(reopened.take(reference).codes, codes("a", 1));
    }

    #[test]
    fn a_restore_verifies_segments_and_counts_live_entries() {
        // A checkpoint's segments reopen with the live references; a corrupt segment is
        // refused by name, and a corrupt entry is caught by its own checksum on read.
        let (_dir, place) = place("restore", true);
        let mut text = EmissionText::new(place.clone());
        let refs: Vec<TextRef> = (0..3)
            .map(|i| text.append("KZ-1", "04601234567893", &codes(&format!("c{i}"), 2)))
            .collect();
        let manifest = text.checkpoint();
        assert_eq!(manifest.runs.len(), 3, "spilling seals every entry");
        // A file written after the checkpoint (a crashed run's) is garbage and numbered past.
        let orphan = text.append("KZ-9", "04601234567893", &codes("late", 1));
        let mut reopened = EmissionText::new(place.clone());
        reopened.open(&manifest, refs[1..].iter()).expect("verifies");
        let fresh = reopened.append("KZ-1", "04601234567893", &codes("new", 1));
        assert!(
            fresh.segment > orphan.segment,
            "a restored store never reuses a file's number"
        );
        assert_eq!(reopened.take(fresh).codes, codes("new", 1));
        assert_eq!(reopened.read(refs[2]).expect("reads").codes, codes("c2", 2));
        let path = reopened.dir().join(segment_name(refs[1].segment));
        let mut bytes = std::fs::read(&path).expect("segment");
        let last = bytes.len() - 1;
        bytes[last] ^= 0x20;
        std::fs::write(&path, &bytes).expect("corrupted");
        match reopened.read(refs[1]) {
            Err(StoreError::Corrupt { file, .. }) => assert_eq!(file, segment_name(refs[1].segment)),
            other => panic!("expected a corrupt entry, got {other:?}"),
        }
        let mut again = EmissionText::new(place);
        match again.open(&manifest, refs.iter()) {
            Err(StoreError::Corrupt { file, detail, .. }) => {
                assert_eq!(file, segment_name(refs[1].segment));
                assert!(detail.contains("checksum"), "{detail}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
}
