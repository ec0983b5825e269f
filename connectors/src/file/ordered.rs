//! The canonical order of a file run's outputs, with bounded memory: sorted runs spilled
//! to disk by each worker, merged into the `--out` files at the end.
//!
//! In: each worker's [`Output`]s, in the order the worker emitted them. Out: the five
//! output files, byte-identical to rendering every output of every worker in memory and
//! sorting them (worker 0's first, then worker 1's, …) stably by [`sort_key`]: records
//! grouped by output file, then by account (status, ledger, balances) or rendered period
//! key (periods), keeping each group's emission order; rejections sorted by their `Ord`.
//!
//! How:
//! - A worker renders each output into a byte arena at once (the JSON line it will be)
//!   next to its sort key ([`SortedRuns::push`]). When the arena reaches the run budget
//!   ([`OUTPUT_RUN_BYTES`] by default), its records are sorted stably by key and written
//!   to a run file in the [`SpillDir`]; the arena starts again. The last run stays in
//!   memory (a small run never touches the disk).
//! - At the end, [`merge_runs`] merges every run of every worker (a heap on
//!   `(key, worker, run)`): ties between equal keys go to the earlier worker and the
//!   earlier run, and within a run the sort was stable, so the merge yields exactly the
//!   stable sort of the concatenation.
//!
//! Memory: per worker one arena of at most the run budget (plus one record), then one read
//! buffer per run during the merge. Disk: the rendered outputs once more, in the spill
//! directory, and never more than that: the merge gives a run file's space back as it
//! reads it (below).
//!
//! A run file holds its records last first: `[key][line][key length u32 LE][line length
//! u32 LE]` each (the line without its newline), the record with the smallest key at the
//! end of the file. The merge reads a run from its end backwards and cuts the file short
//! ([`File::set_len`]) behind every [`RUN_TRUNCATE_BYTES`] it has read, so the page cache
//! pages the spill took are freed while the merge writes the output files, which then
//! reuse them instead of taking fresh ones: on this project's virtual machines a write
//! into pages never used before costs about ten times one into recycled pages
//! (BENCHMARKS.md, "File-run throughput"), and a 10^7 run's status file is 1 GB.
//!
//! An I/O error names the file; the sink keeps the first one and returns it from
//! [`SortedRuns::finish`], so a run that could not spill never writes outputs or reports
//! success.

use super::OutputFile;
use crate::codec::json::render_output_into;
use markledger_operators::output::{Deletion, Rejection};
use markledger_operators::{Output, Reason};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Rendered output bytes a worker holds before it spills them as one sorted run.
pub const OUTPUT_RUN_BYTES: usize = 32 * 1024 * 1024;

/// Buffer of a run file's writer.
const RUN_WRITE_BUFFER_BYTES: usize = 1024 * 1024;

/// Read buffers of all run files together during the merge (each gets a share, at least
/// [`RUN_READ_BUFFER_BYTES_MIN`]).
const MERGE_READ_BUFFERS_BYTES: usize = 64 * 1024 * 1024;

/// Smallest read buffer of one run file during the merge.
const RUN_READ_BUFFER_BYTES_MIN: usize = 16 * 1024;

/// The merge cuts a run file short each time it has read this many bytes of it (a
/// truncation per few MiB: few system calls, and at most this much read and still held
/// per run).
pub const RUN_TRUNCATE_BYTES: u64 = 4 * 1024 * 1024;

/// Bytes after each record of a run file: its key's length and its line's, `u32` LE each.
const RECORD_FOOTER_BYTES: usize = 8;

/// The directory a run spills into: created at the first spill, removed (with its files)
/// when dropped. Shared by the workers of one run.
#[derive(Debug)]
pub struct SpillDir {
    path: PathBuf,
    created: AtomicBool,
}

impl SpillDir {
    /// A spill directory `name` inside `parent` (not created yet). `name` ends with the
    /// process id; the directories of dead processes named alike are removed first
    /// (markledger_operators::spill).
    pub fn new(parent: &Path, name: &str) -> Arc<SpillDir> {
        let pid = std::process::id().to_string();
        if let Some(prefix) = name.strip_suffix(pid.as_str()) {
            markledger_operators::spill::remove_stale(parent, prefix);
        }
        Arc::new(SpillDir {
            path: parent.join(name),
            created: AtomicBool::new(false),
        })
    }

    /// The default for a run writing to `out`: a hidden sibling of the output directory,
    /// `.NAME-spill-PID`, so it is on the same disk as the outputs and never mixes with them.
    pub fn beside(out: &Path) -> Arc<SpillDir> {
        let parent = match out.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let name = out.file_name().map_or("out".into(), |name| name.to_string_lossy());
        SpillDir::new(parent, &format!(".{name}-spill-{}", std::process::id()))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates the directory if needed and returns the path of file `name` in it.
    fn file(&self, name: &str) -> io::Result<PathBuf> {
        if !self.created.load(Ordering::Acquire) {
            fs::create_dir_all(&self.path).map_err(|error| named(&self.path, error))?;
            self.created.store(true, Ordering::Release);
        }
        Ok(self.path.join(name))
    }
}

impl Drop for SpillDir {
    fn drop(&mut self) {
        if self.created.load(Ordering::Acquire) {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// An I/O error that names its file.
fn named(path: &Path, error: io::Error) -> io::Error {
    io::Error::new(error.kind(), format!("{}: {error}", path.display()))
}

/// Appends `output`'s canonical sort key to `key`: its output file's index, then the
/// account (status, ledger, balances), nothing (rejections: then the record itself, in an
/// encoding whose byte order is the derived `Ord` of [`Rejection`]), or the rendered period
/// key. Byte order of keys is the canonical order.
pub fn sort_key(output: &Output, key: &mut Vec<u8>) {
    match output {
        Output::Status(status) => {
            key.push(OutputFile::Status.index() as u8);
            key.extend_from_slice(status.account.as_bytes());
        }
        Output::Ledger(entry) => {
            key.push(OutputFile::Ledger.index() as u8);
            key.extend_from_slice(entry.account.as_bytes());
        }
        Output::Balance(balance) => {
            key.push(OutputFile::Balances.index() as u8);
            key.extend_from_slice(balance.account.as_bytes());
        }
        Output::Rejection(rejection) => {
            key.push(OutputFile::Rejections.index() as u8);
            rejection_key(rejection, key);
        }
        Output::Period(period) => {
            key.push(OutputFile::Periods.index() as u8);
            key.extend_from_slice(period.key.render().as_bytes());
        }
        // A deletion sorts with the records of the key it deletes, after them (stable
        // within a key: its worker emits it last).
        Output::Deleted(Deletion::Balance { account, .. }) => {
            key.push(OutputFile::Balances.index() as u8);
            key.extend_from_slice(account.as_bytes());
        }
        Output::Deleted(Deletion::Period { key: period, .. }) => {
            key.push(OutputFile::Periods.index() as u8);
            key.extend_from_slice(period.render().as_bytes());
        }
        Output::Export(export) => {
            key.push(OutputFile::Exports.index() as u8);
            key.extend_from_slice(export.account.as_bytes());
        }
    }
}

/// The fields of a rejection in `Ord` order, each encoded so that byte order is the
/// field's order: an option as 0 (none) or 1 then the value; a string with every 0 byte
/// escaped as 0 0xFF and ended by 0 0 (so a prefix sorts first); a reason as its rank.
fn rejection_key(rejection: &Rejection, key: &mut Vec<u8>) {
    fn text(value: &str, key: &mut Vec<u8>) {
        for &byte in value.as_bytes() {
            key.push(byte);
            if byte == 0 {
                key.push(0xFF);
            }
        }
        key.extend_from_slice(&[0, 0]);
    }
    fn optional(value: Option<&str>, key: &mut Vec<u8>) {
        match value {
            None => key.push(0),
            Some(value) => {
                key.push(1);
                text(value, key);
            }
        }
    }
    optional(rejection.event.as_deref(), key);
    optional(rejection.event_type.as_deref(), key);
    optional(rejection.account.as_deref(), key);
    optional(rejection.code.as_deref(), key);
    key.push(reason_rank(rejection.reason));
    text(&rejection.detail, key);
    optional(rejection.raw.as_deref(), key);
}

/// A reason's position in `Reason`'s `Ord` ([`Reason::ALL`] is in that order: a test
/// checks it).
fn reason_rank(reason: Reason) -> u8 {
    Reason::ALL
        .iter()
        .position(|r| *r == reason)
        .map_or(u8::MAX, |rank| rank as u8)
}

/// One record in a worker's arena: where its key and line lie.
#[derive(Clone, Copy, Debug)]
struct Slot {
    key_start: usize,
    key_end: usize,
    line_start: usize,
    line_end: usize,
}

/// A sorted run: in memory (the last of a worker) or in a file.
#[derive(Debug)]
pub enum SortedRun {
    /// Records in key order.
    Memory {
        /// Keys, back to back.
        keys: Vec<u8>,
        /// Lines, back to back.
        lines: Vec<u8>,
        /// Each record's key and line, in key order.
        slots: Vec<(usize, usize, usize, usize)>,
    },
    /// A run file in the spill directory.
    File(PathBuf),
}

/// A worker's outputs as sorted runs (see the module's doc).
#[derive(Debug)]
pub struct SortedRuns {
    worker: usize,
    run_bytes: usize,
    spill: Arc<SpillDir>,
    keys: Vec<u8>,
    lines: Vec<u8>,
    slots: Vec<Slot>,
    runs: Vec<SortedRun>,
    /// The first I/O error; outputs after it are dropped.
    error: Option<io::Error>,
}

impl SortedRuns {
    /// Worker `worker`'s runs, spilled into `spill` whenever `run_bytes` of rendered
    /// outputs are held (at least one record per run).
    pub fn new(worker: usize, run_bytes: usize, spill: Arc<SpillDir>) -> SortedRuns {
        SortedRuns {
            worker,
            run_bytes: run_bytes.max(1),
            spill,
            keys: Vec::new(),
            lines: Vec::new(),
            slots: Vec::new(),
            runs: Vec::new(),
            error: None,
        }
    }

    /// Renders one output and holds it; spills a run when the budget is reached.
    pub fn push(&mut self, output: &Output) {
        if self.error.is_some() {
            return;
        }
        let key_start = self.keys.len();
        sort_key(output, &mut self.keys);
        let line_start = self.lines.len();
        render_output_into(output, &mut self.lines);
        self.slots.push(Slot {
            key_start,
            key_end: self.keys.len(),
            line_start,
            line_end: self.lines.len(),
        });
        if self.keys.len() + self.lines.len() >= self.run_bytes {
            if let Err(error) = self.spill() {
                self.error = Some(error);
                self.keys = Vec::new();
                self.lines = Vec::new();
                self.slots = Vec::new();
            }
        }
    }

    /// Sorts the held records stably by key.
    fn sort(&mut self) {
        let keys = &self.keys;
        self.slots
            .sort_by(|a, b| keys[a.key_start..a.key_end].cmp(&keys[b.key_start..b.key_end]));
    }

    /// Writes the held records as one sorted run file and empties the arena.
    fn spill(&mut self) -> io::Result<()> {
        self.sort();
        let path = self
            .spill
            .file(&format!("w{:03}-r{:06}.run", self.worker, self.runs.len()))?;
        let write = || -> io::Result<()> {
            let file = File::create(&path)?;
            let mut out = BufWriter::with_capacity(RUN_WRITE_BUFFER_BYTES, file);
            // Last first: the merge reads a run file backwards (see the module's doc).
            for slot in self.slots.iter().rev() {
                write_record(
                    &mut out,
                    &self.keys[slot.key_start..slot.key_end],
                    &self.lines[slot.line_start..slot.line_end],
                )?;
            }
            out.into_inner().map_err(|error| error.into_error())?;
            Ok(())
        };
        write().map_err(|error| named(&path, error))?;
        self.runs.push(SortedRun::File(path));
        self.keys.clear();
        self.lines.clear();
        self.slots.clear();
        Ok(())
    }

    /// The worker's runs in the order made (the last one in memory), or the first I/O error.
    pub fn finish(mut self) -> io::Result<Vec<SortedRun>> {
        if let Some(error) = self.error.take() {
            return Err(error);
        }
        if !self.slots.is_empty() {
            self.sort();
            let slots = self
                .slots
                .iter()
                .map(|s| (s.key_start, s.key_end, s.line_start, s.line_end))
                .collect();
            self.runs.push(SortedRun::Memory {
                keys: std::mem::take(&mut self.keys),
                lines: std::mem::take(&mut self.lines),
                slots,
            });
        }
        Ok(self.runs)
    }
}

fn write_record(out: &mut impl Write, key: &[u8], line: &[u8]) -> io::Result<()> {
    let length = |bytes: &[u8]| {
        u32::try_from(bytes.len())
            .map(u32::to_le_bytes)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a record over 4 GiB"))
    };
    out.write_all(key)?;
    out.write_all(line)?;
    out.write_all(&length(key)?)?;
    out.write_all(&length(line)?)
}

/// A run file read from its end backwards, cut short behind what was read.
struct Backwards {
    path: PathBuf,
    file: File,
    /// Bytes of the file from `start` on: the first `end - start` not read yet, the rest read.
    window: Vec<u8>,
    start: u64,
    /// Where the records not yet read end (everything after was read).
    end: u64,
    /// The file's length on disk (it is cut to `end` every [`RUN_TRUNCATE_BYTES`]).
    length: u64,
    /// Bytes of file the window reads at once (more when one record is bigger).
    buffer_bytes: usize,
    /// The file is cut short each time this many bytes were read ([`RUN_TRUNCATE_BYTES`]).
    truncate_bytes: u64,
    /// The current record's key and line, as ranges of `window`.
    key: std::ops::Range<usize>,
    line: std::ops::Range<usize>,
}

impl Backwards {
    fn open(path: PathBuf, buffer_bytes: usize, truncate_bytes: u64) -> io::Result<Backwards> {
        let file = fs::OpenOptions::new().read(true).write(true).open(&path)?;
        let length = file.metadata()?.len();
        Ok(Backwards {
            path,
            file,
            window: Vec::new(),
            start: length,
            end: length,
            length,
            buffer_bytes,
            truncate_bytes: truncate_bytes.max(1),
            key: 0..0,
            line: 0..0,
        })
    }

    /// Makes the window hold at least the `bytes` before `end`.
    fn load(&mut self, bytes: u64) -> io::Result<()> {
        use std::os::unix::fs::FileExt as _;
        if self.end - self.start >= bytes {
            return Ok(());
        }
        let size = bytes.max(self.buffer_bytes as u64).min(self.end);
        if size < bytes {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "a run record runs past the file's start",
            ));
        }
        self.start = self.end - size;
        self.window.resize(size as usize, 0);
        self.file.read_exact_at(&mut self.window, self.start)
    }

    /// Moves to the previous record (the next in key order); false at the file's start.
    /// Cuts the file behind what was read every `truncate_bytes`.
    fn advance(&mut self) -> io::Result<bool> {
        if self.length - self.end >= self.truncate_bytes {
            self.file.set_len(self.end)?;
            self.length = self.end;
        }
        if self.end == 0 {
            return Ok(false);
        }
        self.load(RECORD_FOOTER_BYTES as u64)?;
        let footer_at = (self.end - self.start) as usize - RECORD_FOOTER_BYTES;
        let footer = &self.window[footer_at..footer_at + RECORD_FOOTER_BYTES];
        let key_bytes = u64::from(u32::from_le_bytes([footer[0], footer[1], footer[2], footer[3]]));
        let line_bytes = u64::from(u32::from_le_bytes([footer[4], footer[5], footer[6], footer[7]]));
        let record_bytes = key_bytes + line_bytes + RECORD_FOOTER_BYTES as u64;
        self.load(record_bytes)?;
        let record_end = (self.end - self.start) as usize;
        let record_start = record_end - record_bytes as usize;
        let line_start = record_start + key_bytes as usize;
        self.key = record_start..line_start;
        self.line = line_start..record_end - RECORD_FOOTER_BYTES;
        self.end -= record_bytes;
        Ok(true)
    }
}

/// Reads one run's records in key order.
enum Cursor {
    Memory {
        run: SortedRun,
        /// The current record's index in `slots` plus one (0: before the first).
        next: usize,
    },
    File(Box<Backwards>),
}

impl Cursor {
    fn open(run: SortedRun, buffer_bytes: usize, truncate_bytes: u64) -> io::Result<Cursor> {
        Ok(match run {
            SortedRun::File(path) => match Backwards::open(path.clone(), buffer_bytes, truncate_bytes) {
                Ok(file) => Cursor::File(Box::new(file)),
                Err(error) => return Err(named(&path, error)),
            },
            memory => Cursor::Memory { run: memory, next: 0 },
        })
    }

    /// Moves to the next record; false at the end (a run file is then deleted).
    fn advance(&mut self) -> io::Result<bool> {
        match self {
            Cursor::Memory {
                run: SortedRun::Memory { slots, .. },
                next,
            } => {
                if *next >= slots.len() {
                    return Ok(false);
                }
                *next += 1;
                Ok(true)
            }
            Cursor::Memory { .. } => Ok(false),
            Cursor::File(file) => {
                let more = file.advance().map_err(|error| named(&file.path, error))?;
                if !more {
                    fs::remove_file(&file.path).map_err(|error| named(&file.path, error))?;
                }
                Ok(more)
            }
        }
    }

    /// The current record's key and line (after an `advance` that returned true).
    fn record(&self) -> (&[u8], &[u8]) {
        match self {
            Cursor::Memory {
                run: SortedRun::Memory { keys, lines, slots },
                next,
            } => {
                let (key_start, key_end, line_start, line_end) = slots[*next - 1];
                (&keys[key_start..key_end], &lines[line_start..line_end])
            }
            Cursor::Memory { .. } => (&[], &[]),
            Cursor::File(file) => (&file.window[file.key.clone()], &file.window[file.line.clone()]),
        }
    }
}

/// Merges every worker's runs (`workers[w]` = worker `w`'s runs in the order made) in
/// canonical order, handing each record to `write(file, line)`. Run files shrink as they
/// are read and are deleted once read.
pub fn merge_runs(workers: Vec<Vec<SortedRun>>, write: &mut dyn FnMut(OutputFile, &[u8])) -> io::Result<()> {
    merge_runs_cutting(workers, RUN_TRUNCATE_BYTES, write)
}

/// [`merge_runs`], cutting run files short every `truncate_bytes` read (tests cut often).
fn merge_runs_cutting(
    workers: Vec<Vec<SortedRun>>,
    truncate_bytes: u64,
    write: &mut dyn FnMut(OutputFile, &[u8]),
) -> io::Result<()> {
    let runs: Vec<SortedRun> = workers.into_iter().flatten().collect();
    let files = runs.iter().filter(|run| matches!(run, SortedRun::File(_))).count();
    let buffer_bytes = (MERGE_READ_BUFFERS_BYTES / files.max(1)).max(RUN_READ_BUFFER_BYTES_MIN);
    let mut cursors = Vec::with_capacity(runs.len());
    // Heap entries: (key, run index); the run index is the tiebreak (worker, then run).
    let mut heap = BinaryHeap::with_capacity(runs.len());
    for (index, run) in runs.into_iter().enumerate() {
        let mut cursor = Cursor::open(run, buffer_bytes, truncate_bytes)?;
        if cursor.advance()? {
            heap.push(Reverse((cursor.record().0.to_vec(), index)));
        }
        cursors.push(cursor);
    }
    while let Some(Reverse((mut key, index))) = heap.pop() {
        let file = OutputFile::ALL
            .get(usize::from(key[0]))
            .copied()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "a run record names no output file"))?;
        write(file, cursors[index].record().1);
        if cursors[index].advance()? {
            key.clear();
            key.extend_from_slice(cursors[index].record().0);
            heap.push(Reverse((key, index)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejection(i: u64) -> Output {
        // Keys collide often (a few accounts and events) so that ties between runs and
        // workers are exercised; the detail makes lines of very different lengths.
        Output::Rejection(Rejection {
            event: Some(format!("e{}", (i * 7919) % 13)),
            event_type: None,
            account: Some(format!("A{}", i % 3)),
            code: None,
            reason: Reason::ALL[(i % 4) as usize],
            detail: "x".repeat(((i * 104_729) % 300) as usize),
            raw: Some(format!("{i}")),
        })
    }

    #[test]
    fn run_files_shrink_as_the_merge_reads_them_and_the_order_is_the_stable_sort() {
        // Two workers spill many tiny runs; the merge, cutting files every 64 bytes read,
        // must give the stable sort of worker 0's outputs then worker 1's, and every run
        // file must be shorter than it was written while the merge is under way.
        let parent = std::env::temp_dir();
        let spill = SpillDir::new(&parent, &format!("ordered-test-{}", std::process::id()));
        let mut expected: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut workers = Vec::new();
        for worker in 0..2u64 {
            let mut runs = SortedRuns::new(worker as usize, 700, spill.clone());
            for i in 0..400 {
                let output = rejection(i * 2 + worker);
                let (mut key, mut line) = (Vec::new(), Vec::new());
                sort_key(&output, &mut key);
                render_output_into(&output, &mut line);
                expected.push((key, line));
                runs.push(&output);
            }
            workers.push(runs.finish().unwrap());
        }
        expected.sort_by(|a, b| a.0.cmp(&b.0));
        let files: Vec<(PathBuf, u64)> = workers
            .iter()
            .flatten()
            .filter_map(|run| match run {
                SortedRun::File(path) => Some((path.clone(), fs::metadata(path).unwrap().len())),
                SortedRun::Memory { .. } => None,
            })
            .collect();
        assert!(files.len() > 20, "tiny runs spill many files: {}", files.len());
        let mut merged = Vec::new();
        let mut shrunk = 0;
        merge_runs_cutting(workers, 64, &mut |file, line| {
            assert_eq!(file, OutputFile::Rejections);
            merged.push(line.to_vec());
            if merged.len() == expected.len() / 2 {
                for (path, written) in &files {
                    match fs::metadata(path) {
                        Ok(now) if now.len() < *written => shrunk += 1,
                        Ok(_) => {}
                        Err(_) => shrunk += 1, // read to its end and deleted
                    }
                }
            }
        })
        .unwrap();
        let expected: Vec<Vec<u8>> = expected.into_iter().map(|(_, line)| line).collect();
        assert_eq!(merged, expected);
        assert!(shrunk > files.len() / 2, "{shrunk} of {} run files shrank", files.len());
        for (path, _) in &files {
            assert!(!path.exists(), "{} is deleted once read", path.display());
        }
    }

    #[test]
    fn reasons_are_listed_in_their_order() {
        // The rejection key ranks a reason by its position in Reason::ALL.
        assert!(Reason::ALL.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn rejection_keys_sort_as_rejections_do() {
        let base = Rejection {
            event: Some("e1".into()),
            event_type: Some("payment".into()),
            account: Some("A".into()),
            code: None,
            reason: Reason::ALL[3],
            detail: "d".into(),
            raw: None,
        };
        let variants = vec![
            base.clone(),
            Rejection {
                event: None,
                ..base.clone()
            },
            Rejection {
                event: Some("e".into()),
                ..base.clone()
            },
            Rejection {
                event: Some("e1\0".into()),
                ..base.clone()
            },
            Rejection {
                event: Some("e1\0a".into()),
                ..base.clone()
            },
            Rejection {
                code: Some(String::new()),
                ..base.clone()
            },
            Rejection {
                reason: Reason::ALL[0],
                ..base.clone()
            },
            Rejection {
                reason: Reason::ALL[5],
                detail: String::new(),
                ..base.clone()
            },
            Rejection {
                detail: "d\0".into(),
                ..base.clone()
            },
            Rejection {
                raw: Some("{".into()),
                ..base.clone()
            },
            Rejection {
                account: Some("B".into()),
                ..base.clone()
            },
        ];
        for a in &variants {
            for b in &variants {
                let (mut ka, mut kb) = (Vec::new(), Vec::new());
                rejection_key(a, &mut ka);
                rejection_key(b, &mut kb);
                assert_eq!(ka.cmp(&kb), a.cmp(b), "{a:?} vs {b:?}");
            }
        }
    }
}
