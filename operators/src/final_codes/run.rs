//! Run files: immutable sorted runs of final-code records (docs/FINAL_CODES.md, "Run file
//! format").
//!
//! Layout, version [`RUN_FORMAT_VERSION`], all integers little-endian:
//!
//! ```text
//! block 0 .. block B-1   BLOCK_BYTES (4096) each: RECORDS_PER_BLOCK (146) records of 28 bytes
//!                        sorted by key (the last block zero-padded), then the xxh3-64 of
//!                        those 4088 bytes
//! dictionary             per account, in index order: u16 length, UTF-8 name
//! trailer (64 bytes)     magic "MLFCRUN\0", version u32, record bytes u32 (28), records u64,
//!                        epoch i64, earliest final_at i64, latest final_at i64,
//!                        dictionary bytes u64, xxh3-64 of every byte before this field
//! ```
//!
//! In RAM a run keeps its sparse index (the first key of each block: 16 bytes per 146
//! records) and its dictionary. A lookup binary-searches the index, reads one block with
//! `read_at` and checks that block's checksum. Opening a run reads it whole once: it checks
//! the file's checksum against the trailer and the manifest, every block's checksum, and
//! feeds each key to the store's filter.

use super::record::{Packed, ACCOUNTS_PER_RUN_MAX, RECORD_BYTES};
use super::{StoreError, WriteLimit};
use crate::flow::CodeKey;
use crate::status::Status;
use crate::time::Ts;
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use xxhash_rust::xxh3::{xxh3_64, Xxh3};

/// The run file format this build writes and reads.
pub const RUN_FORMAT_VERSION: u32 = 1;
/// Bytes of a block: one page, read with one `read_at`.
pub const BLOCK_BYTES: usize = 4096;
/// Records in a block: as many as fit before its 8-byte checksum.
pub const RECORDS_PER_BLOCK: usize = (BLOCK_BYTES - 8) / RECORD_BYTES;
/// Bytes of the records of a block (what its checksum covers).
const BLOCK_BODY_BYTES: usize = RECORDS_PER_BLOCK * RECORD_BYTES;
/// Bytes of the trailer.
pub const TRAILER_BYTES: usize = 64;
const MAGIC: &[u8; 8] = b"MLFCRUN\0";
/// Blocks read at once when a run is scanned whole.
const SCAN_BLOCKS: usize = 64;

/// A record read from a run, with its account resolved to the run's dictionary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Found {
    pub key: CodeKey,
    pub final_at: Ts,
    pub status: Status,
    pub account: Arc<str>,
}

/// What describes a run file (the manifest's entry for it, [`super::RunRef`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RunMeta {
    pub file: String,
    pub epoch: i64,
    /// Recency among the runs of an epoch (the sequence number of its newest insert batch).
    pub order: u64,
    pub records: u64,
    pub bytes: u64,
    pub checksum: u64,
}

/// An open run file.
pub(crate) struct Run {
    pub meta: RunMeta,
    file: File,
    path: PathBuf,
    first_keys: Vec<CodeKey>,
    accounts: Vec<Arc<str>>,
    /// Blocks read by lookups (not scans): how often the disk was asked.
    lookups_read: AtomicU64,
}

pub(super) fn io_error(dir: &Path, file: &str, action: &'static str, source: std::io::Error) -> StoreError {
    StoreError::Io {
        dir: dir.to_path_buf(),
        file: file.to_string(),
        action,
        source,
    }
}

fn corrupt(dir: &Path, file: &str, detail: String) -> StoreError {
    StoreError::Corrupt {
        dir: dir.to_path_buf(),
        file: file.to_string(),
        detail,
    }
}

/// The file name of the run with sequence number `sequence`.
pub(crate) fn file_name(sequence: u64) -> String {
    format!("run-{sequence:020}.mlfc")
}

/// The sequence number in a run file's name (also of its temporary file).
pub(crate) fn sequence_of(name: &str) -> Option<u64> {
    let stem = name.strip_prefix("run-")?;
    let stem = stem.strip_suffix(".mlfc").or_else(|| stem.strip_suffix(".mlfc.tmp"))?;
    stem.parse().ok()
}

/// Writes one run: records pushed in increasing key order, then [`RunWriter::finish`].
pub(crate) struct RunWriter {
    dir: PathBuf,
    name: String,
    temporary: PathBuf,
    out: std::io::BufWriter<LimitedFile>,
    hasher: Xxh3,
    block: Vec<u8>,
    in_block: usize,
    records: u64,
    epoch: i64,
    order: u64,
    earliest: Ts,
    latest: Ts,
    last_key: Option<CodeKey>,
    dictionary: HashMap<Arc<str>, u32>,
    accounts: Vec<Arc<str>>,
    first_keys: Vec<CodeKey>,
    /// fsync the file and the directory (off only in tests that throw the files away).
    sync: bool,
}

/// A file whose writes fail once a [`WriteLimit`] is used up (a disk that fills up).
struct LimitedFile {
    file: File,
    limit: Option<WriteLimit>,
}

impl Write for LimitedFile {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if let Some(limit) = &self.limit {
            limit.take(bytes.len() as u64)?;
        }
        self.file.write(bytes)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl RunWriter {
    /// Starts `name` (as `name.tmp`) in `dir`.
    pub fn create(
        dir: &Path,
        name: String,
        epoch: i64,
        order: u64,
        limit: Option<WriteLimit>,
        sync: bool,
    ) -> Result<RunWriter, StoreError> {
        let temporary = dir.join(format!("{name}.tmp"));
        let file = File::create(&temporary).map_err(|error| io_error(dir, &name, "creating", error))?;
        Ok(RunWriter {
            dir: dir.to_path_buf(),
            name,
            temporary,
            out: std::io::BufWriter::with_capacity(1 << 16, LimitedFile { file, limit }),
            hasher: Xxh3::new(),
            block: vec![0; BLOCK_BYTES],
            in_block: 0,
            records: 0,
            epoch,
            order,
            earliest: Ts::MAX,
            latest: Ts::MIN,
            last_key: None,
            dictionary: HashMap::new(),
            accounts: Vec::new(),
            first_keys: Vec::new(),
            sync,
        })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.hasher.update(bytes);
        self.out
            .write_all(bytes)
            .map_err(|error| io_error(&self.dir, &self.name, "writing", error))
    }

    /// Appends a record; keys must increase strictly.
    pub fn push(&mut self, key: CodeKey, final_at: Ts, status: Status, account: &Arc<str>) -> Result<(), StoreError> {
        assert!(self.last_key.is_none_or(|last| last < key), "run records in key order");
        self.last_key = Some(key);
        let next = self.accounts.len();
        let index = *self.dictionary.entry(account.clone()).or_insert_with(|| {
            assert!(next < ACCOUNTS_PER_RUN_MAX, "fewer than 2^24 accounts per run");
            next as u32
        });
        if index as usize == next {
            assert!(account.len() <= usize::from(u16::MAX), "account names under 64 KiB");
            self.accounts.push(account.clone());
        }
        if self.in_block == 0 {
            self.first_keys.push(key);
        }
        let at = self.in_block * RECORD_BYTES;
        Packed {
            key,
            final_at,
            account: index,
            status,
        }
        .encode(&mut self.block[at..at + RECORD_BYTES]);
        self.in_block += 1;
        self.records += 1;
        self.earliest = self.earliest.min(final_at);
        self.latest = self.latest.max(final_at);
        if self.in_block == RECORDS_PER_BLOCK {
            self.end_block()?;
        }
        Ok(())
    }

    fn end_block(&mut self) -> Result<(), StoreError> {
        let checksum = xxh3_64(&self.block[..BLOCK_BODY_BYTES]);
        self.block[BLOCK_BODY_BYTES..].copy_from_slice(&checksum.to_le_bytes());
        let block = std::mem::take(&mut self.block);
        let written = self.write(&block);
        self.block = block;
        self.block.fill(0);
        self.in_block = 0;
        written
    }

    /// Writes the dictionary and trailer, syncs, renames into place and syncs the
    /// directory; returns the open run. On any error the temporary file is removed.
    pub fn finish(mut self) -> Result<Run, StoreError> {
        let result = self.finish_inner();
        if result.is_err() {
            let _ = fs::remove_file(&self.temporary);
        }
        result
    }

    fn finish_inner(&mut self) -> Result<Run, StoreError> {
        if self.in_block > 0 {
            self.end_block()?;
        }
        let mut dictionary = Vec::new();
        for account in &self.accounts {
            dictionary.extend_from_slice(&(account.len() as u16).to_le_bytes());
            dictionary.extend_from_slice(account.as_bytes());
        }
        self.write(&dictionary.clone())?;
        let mut trailer = Vec::with_capacity(TRAILER_BYTES);
        trailer.extend_from_slice(MAGIC);
        trailer.extend_from_slice(&RUN_FORMAT_VERSION.to_le_bytes());
        trailer.extend_from_slice(&(RECORD_BYTES as u32).to_le_bytes());
        trailer.extend_from_slice(&self.records.to_le_bytes());
        trailer.extend_from_slice(&self.epoch.to_le_bytes());
        trailer.extend_from_slice(&self.earliest.0.to_le_bytes());
        trailer.extend_from_slice(&self.latest.0.to_le_bytes());
        trailer.extend_from_slice(&(dictionary.len() as u64).to_le_bytes());
        self.write(&trailer)?;
        let checksum = self.hasher.digest();
        self.out
            .write_all(&checksum.to_le_bytes())
            .and_then(|()| self.out.flush())
            .and_then(|()| match self.sync {
                true => self.out.get_ref().file.sync_all(),
                false => Ok(()),
            })
            .map_err(|error| io_error(&self.dir, &self.name, "writing", error))?;
        let path = self.dir.join(&self.name);
        fs::rename(&self.temporary, &path).map_err(|error| io_error(&self.dir, &self.name, "renaming", error))?;
        if self.sync {
            sync_dir(&self.dir)?;
        }
        let file = File::open(&path).map_err(|error| io_error(&self.dir, &self.name, "opening", error))?;
        let blocks = self.records.div_ceil(RECORDS_PER_BLOCK as u64);
        Ok(Run {
            meta: RunMeta {
                file: self.name.clone(),
                epoch: self.epoch,
                order: self.order,
                records: self.records,
                bytes: blocks * BLOCK_BYTES as u64 + dictionary.len() as u64 + TRAILER_BYTES as u64,
                checksum,
            },
            file,
            path,
            first_keys: std::mem::take(&mut self.first_keys),
            accounts: std::mem::take(&mut self.accounts),
            lookups_read: AtomicU64::new(0),
        })
    }
}

/// Files a worker wrote and renamed into place without fsync, whose durability is owed
/// before a checkpoint names them. The store hands them to the checkpoint
/// ([`crate::checkpoint::Snapshot::after`]), whose writer thread settles them before it
/// writes the cut: the worker never waits for the disk at a checkpoint, and a crash before
/// the cut is durable loses only files no durable cut names (a later run writes past their
/// sequence numbers, and garbage collection deletes them).
#[derive(Debug)]
pub struct Unsynced {
    dir: PathBuf,
    files: Vec<String>,
}

impl Unsynced {
    /// More files than this are settled on the worker at once, so a run without
    /// checkpoints keeps a bounded list (and pays the fsyncs it paid before, in batches).
    pub const MAX_FILES: usize = 64;

    /// None owed yet, in `dir`.
    pub fn new(dir: &Path) -> Unsynced {
        Unsynced {
            dir: dir.to_path_buf(),
            files: Vec::new(),
        }
    }

    /// `name` was written and renamed into place without fsync.
    pub fn push(&mut self, name: String) {
        self.files.push(name);
    }

    /// The files owed, oldest first.
    pub fn files(&self) -> &[String] {
        &self.files
    }

    /// Whether the list is long enough to settle now.
    pub fn is_full(&self) -> bool {
        self.files.len() >= Unsynced::MAX_FILES
    }

    /// Takes the list, leaving an empty one for the same directory.
    pub fn take(&mut self) -> Unsynced {
        Unsynced {
            dir: self.dir.clone(),
            files: std::mem::take(&mut self.files),
        }
    }

    /// fsyncs every file, then the directory (their renames). A file gone meanwhile was
    /// merged or expired away after it was written: no checkpoint names it, so it is
    /// skipped.
    pub fn settle(self) -> Result<(), StoreError> {
        if self.files.is_empty() {
            return Ok(());
        }
        for name in &self.files {
            match File::open(self.dir.join(name)) {
                Ok(file) => file
                    .sync_all()
                    .map_err(|error| io_error(&self.dir, name, "syncing", error))?,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(io_error(&self.dir, name, "opening to sync", error)),
            }
        }
        sync_dir(&self.dir)
    }

    /// [`Unsynced::settle`], ending the process with the error (it names the directory
    /// and the file) as every other store failure does: a checkpoint is never written
    /// over files that did not reach the disk.
    pub fn settle_or_end(self) {
        if let Err(error) = self.settle() {
            panic!("{error}")
        }
    }
}

/// Syncs a directory (a rename or removal in it is then durable).
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(|error| io_error(dir, ".", "syncing the directory", error))
}

/// The trailer's fields.
struct Trailer {
    records: u64,
    epoch: i64,
    dictionary_bytes: u64,
    checksum: u64,
}

fn parse_trailer(bytes: &[u8]) -> Result<Trailer, String> {
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    if &bytes[..8] != MAGIC {
        return Err("no run trailer at its end (torn, or not a run file)".into());
    }
    if u32_at(8) != RUN_FORMAT_VERSION {
        return Err(format!(
            "run format {}, this build reads {RUN_FORMAT_VERSION}",
            u32_at(8)
        ));
    }
    if u32_at(12) as usize != RECORD_BYTES {
        return Err(format!("records of {} bytes, expected {RECORD_BYTES}", u32_at(12)));
    }
    Ok(Trailer {
        records: u64_at(16),
        epoch: u64_at(24) as i64,
        dictionary_bytes: u64_at(48),
        checksum: u64_at(56),
    })
}

impl Run {
    /// Opens and verifies the run `expected` names in `dir`, reading it whole: its size
    /// and checksum must be the manifest's, its trailer and every block must verify.
    /// `visit` sees every record's key and `final_at`. `intern` shares account names.
    pub fn open(
        dir: &Path,
        expected: &RunMeta,
        intern: &mut dyn FnMut(&str) -> Arc<str>,
        visit: &mut dyn FnMut(CodeKey, Ts),
    ) -> Result<Run, StoreError> {
        let name = &expected.file;
        let path = dir.join(name);
        let mut file = File::open(&path).map_err(|error| io_error(dir, name, "opening", error))?;
        let length = file
            .metadata()
            .map_err(|error| io_error(dir, name, "reading the size of", error))?
            .len();
        if length != expected.bytes {
            return Err(corrupt(
                dir,
                name,
                format!("{length} bytes, the manifest says {}", expected.bytes),
            ));
        }
        if length < TRAILER_BYTES as u64 {
            return Err(corrupt(dir, name, "shorter than its trailer".into()));
        }
        let mut trailer = [0u8; TRAILER_BYTES];
        file.read_exact_at(&mut trailer, length - TRAILER_BYTES as u64)
            .map_err(|error| io_error(dir, name, "reading", error))?;
        let parsed = parse_trailer(&trailer).map_err(|detail| corrupt(dir, name, detail))?;
        let blocks = parsed.records.div_ceil(RECORDS_PER_BLOCK as u64);
        let body = blocks * BLOCK_BYTES as u64;
        if body + parsed.dictionary_bytes + TRAILER_BYTES as u64 != length
            || parsed.records != expected.records
            || parsed.epoch != expected.epoch
            || parsed.checksum != expected.checksum
        {
            return Err(corrupt(
                dir,
                name,
                "its trailer disagrees with its size or the manifest".into(),
            ));
        }
        let mut hasher = Xxh3::new();
        let mut first_keys = Vec::with_capacity(blocks as usize);
        let mut chunk = vec![0u8; SCAN_BLOCKS * BLOCK_BYTES];
        let mut remaining = parsed.records;
        let mut block_index = 0u64;
        while block_index < blocks {
            let count = (blocks - block_index).min(SCAN_BLOCKS as u64) as usize;
            let bytes = &mut chunk[..count * BLOCK_BYTES];
            file.read_exact(bytes)
                .map_err(|error| io_error(dir, name, "reading", error))?;
            hasher.update(bytes);
            for block in bytes.chunks_exact(BLOCK_BYTES) {
                check_block(block).map_err(|detail| corrupt(dir, name, format!("block {block_index}: {detail}")))?;
                let in_block = remaining.min(RECORDS_PER_BLOCK as u64) as usize;
                for record in block[..in_block * RECORD_BYTES].chunks_exact(RECORD_BYTES) {
                    let packed = Packed::decode(record)
                        .ok_or_else(|| corrupt(dir, name, format!("block {block_index}: a bad status byte")))?;
                    visit(packed.key, packed.final_at);
                }
                first_keys.push(Packed::key_of(block));
                remaining -= in_block as u64;
                block_index += 1;
            }
        }
        let mut tail = vec![0u8; parsed.dictionary_bytes as usize + TRAILER_BYTES - 8];
        file.read_exact(&mut tail)
            .map_err(|error| io_error(dir, name, "reading", error))?;
        hasher.update(&tail);
        if hasher.digest() != parsed.checksum {
            return Err(corrupt(dir, name, "its checksum does not match its bytes".into()));
        }
        let accounts = parse_dictionary(&tail[..parsed.dictionary_bytes as usize], intern)
            .map_err(|detail| corrupt(dir, name, detail))?;
        Ok(Run {
            meta: expected.clone(),
            file,
            path,
            first_keys,
            accounts,
            lookups_read: AtomicU64::new(0),
        })
    }

    /// The record of `key` in this run, reading at most one block.
    pub fn get(&self, key: CodeKey) -> Result<Option<Found>, StoreError> {
        let block = self.first_keys.partition_point(|first| *first <= key);
        if block == 0 {
            return Ok(None);
        }
        let block = block - 1;
        let mut bytes = [0u8; BLOCK_BYTES];
        self.lookups_read.fetch_add(1, Ordering::Relaxed);
        self.read_blocks(block, &mut bytes)?;
        let records = self.records_in(block);
        let body = &bytes[..records * RECORD_BYTES];
        let (mut low, mut high) = (0, records);
        while low < high {
            let middle = (low + high) / 2;
            let probe = Packed::key_of(&body[middle * RECORD_BYTES..]);
            if probe == key {
                return self
                    .found(&body[middle * RECORD_BYTES..(middle + 1) * RECORD_BYTES], block)
                    .map(Some);
            }
            if probe < key {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        Ok(None)
    }

    fn records_in(&self, block: usize) -> usize {
        let before = block as u64 * RECORDS_PER_BLOCK as u64;
        (self.meta.records - before).min(RECORDS_PER_BLOCK as u64) as usize
    }

    fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// Blocks lookups have read from this run.
    pub fn lookups_read(&self) -> u64 {
        self.lookups_read.load(Ordering::Relaxed)
    }

    /// Reads whole blocks from `first` on into `bytes` and checks each one's checksum.
    fn read_blocks(&self, first: usize, bytes: &mut [u8]) -> Result<(), StoreError> {
        let name = &self.meta.file;
        self.file
            .read_exact_at(bytes, (first * BLOCK_BYTES) as u64)
            .map_err(|error| io_error(self.dir(), name, "reading", error))?;
        for (index, block) in bytes.chunks_exact(BLOCK_BYTES).enumerate() {
            check_block(block)
                .map_err(|detail| corrupt(self.dir(), name, format!("block {}: {detail}", first + index)))?;
        }
        Ok(())
    }

    fn found(&self, record: &[u8], block: usize) -> Result<Found, StoreError> {
        let bad = || corrupt(self.dir(), &self.meta.file, format!("block {block}: a bad record"));
        let packed = Packed::decode(record).ok_or_else(bad)?;
        let account = self.accounts.get(packed.account as usize).ok_or_else(bad)?;
        Ok(Found {
            key: packed.key,
            final_at: packed.final_at,
            status: packed.status,
            account: account.clone(),
        })
    }

    /// Every record in key order, read `SCAN_BLOCKS` blocks at a time.
    pub fn scan(&self) -> Scan<'_> {
        Scan {
            run: self,
            chunk: Vec::new(),
            block: 0,
            loaded: 0,
            position: 0,
        }
    }

    /// Heap bytes of the run's sparse index and dictionary.
    pub fn heap_bytes(&self) -> usize {
        self.first_keys.capacity() * std::mem::size_of::<CodeKey>()
            + self.accounts.capacity() * std::mem::size_of::<Arc<str>>()
    }

    /// The path of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn check_block(block: &[u8]) -> Result<(), String> {
    let stored = u64::from_le_bytes(block[BLOCK_BODY_BYTES..].try_into().expect("8 bytes"));
    if xxh3_64(&block[..BLOCK_BODY_BYTES]) != stored {
        return Err("checksum does not match".into());
    }
    Ok(())
}

fn parse_dictionary(mut bytes: &[u8], intern: &mut dyn FnMut(&str) -> Arc<str>) -> Result<Vec<Arc<str>>, String> {
    let mut accounts = Vec::new();
    while !bytes.is_empty() {
        if bytes.len() < 2 {
            return Err("a truncated dictionary".into());
        }
        let length = usize::from(u16::from_le_bytes([bytes[0], bytes[1]]));
        let name = bytes
            .get(2..2 + length)
            .and_then(|name| std::str::from_utf8(name).ok())
            .ok_or("a bad dictionary entry")?;
        accounts.push(intern(name));
        bytes = &bytes[2 + length..];
    }
    Ok(accounts)
}

/// A run read whole, in key order ([`Run::scan`]).
pub(crate) struct Scan<'a> {
    run: &'a Run,
    chunk: Vec<u8>,
    /// The next block to load.
    block: usize,
    /// Records in `chunk`.
    loaded: usize,
    /// The next record of `chunk`.
    position: usize,
}

impl Scan<'_> {
    /// The next record, or `None` at the end.
    pub fn next_record(&mut self) -> Result<Option<Found>, StoreError> {
        if self.position == self.loaded {
            let blocks = self.run.first_keys.len();
            if self.block == blocks {
                return Ok(None);
            }
            let count = (blocks - self.block).min(SCAN_BLOCKS);
            let mut bytes = vec![0u8; count * BLOCK_BYTES];
            self.run.read_blocks(self.block, &mut bytes)?;
            // Keep only the records: block checksums and padding dropped.
            self.chunk.clear();
            for (index, block) in bytes.chunks_exact(BLOCK_BYTES).enumerate() {
                let records = self.run.records_in(self.block + index);
                self.chunk.extend_from_slice(&block[..records * RECORD_BYTES]);
            }
            self.block += count;
            self.loaded = self.chunk.len() / RECORD_BYTES;
            self.position = 0;
        }
        let at = self.position * RECORD_BYTES;
        self.position += 1;
        let record = &self.chunk[at..at + RECORD_BYTES];
        self.run.found(record, self.block).map(Some)
    }
}
