//! A partition that a thread of this process writes while the run reads it: the
//! generator source (`markledger run --input gen:…`) feeds each partition through one.
//!
//! In: JSON lines written to a [`PipeWriter`] (any [`Write`] cut, e.g. the
//! [`crate::file::PartitionWriter`] of the generator). Out: a [`PipeReader`], a
//! [`PartitionInput`] yielding the lines decoded exactly as a file's
//! ([`crate::codec::json::decode_event`], blank lines skipped), so a run over the pipe
//! sees the records a run over the written file would.
//!
//! Backpressure without deadlock. A run places each partition's events by that
//! partition's own high-water mark, so a worker may need the *next* record of a quiet
//! partition before it can finish (and read on from) a busy one; in a file that record is
//! already there, in a pipe it exists only once the generator has written everything
//! before it into the other partitions. So a writer waits while its pipe holds more than
//! [`PIPE_CHUNKS_MAX`] chunks *only while no reader of the same run is hungry* (found its
//! pipe empty and has not been fed since): a hungry reader means the run needs the
//! generator to go on, and the full pipe then grows instead, by the workload's skew between
//! partitions (what the generator writes elsewhere while a partition is quiet: at 10^8 code
//! events, 850 MiB; BENCHMARKS.md). To keep RAM bounded, once the pipes together hold
//! [`Pipes::overflowing`]'s budget, a writer appends further chunks to its pipe's overflow
//! file and sends only where they are (the reader reads them back in order, and the file
//! starts again from empty each time the reader has caught up): the skew goes to disk.
//! With nothing to read
//! a reader answers [`Next::Pending`] and never blocks. When the writer is dropped the
//! partition finishes once read out; when the reader is dropped (the run ended, failed or
//! stopped early, e.g. at the calendar's end) a write fails with `BrokenPipe`, also one
//! already waiting at the bound: nobody would ever empty that pipe again.

use crate::codec::json::decode_event;
use crate::partition::{Next, PartitionInput};
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Chunks a pipe holds before its writer waits (unless a reader is hungry).
pub const PIPE_CHUNKS_MAX: usize = 8;

/// How long a waiting writer sleeps between looks at its pipe.
const WRITER_WAIT: Duration = Duration::from_micros(200);

/// What the pipes of one run share: how many readers are hungry.
#[derive(Debug, Default)]
pub struct Pipes {
    hungry: AtomicUsize,
    /// Bytes written into every pipe and not yet taken by its reader, and their peak.
    queued_bytes: AtomicUsize,
    peak_bytes: AtomicUsize,
    /// The RAM budget of all the pipes together and the directory of their overflow files:
    /// past the budget, a writer's chunks go to its pipe's file there.
    overflow: Option<(usize, PathBuf)>,
    /// Bytes written to overflow files in all.
    overflowed_bytes: AtomicU64,
}

/// Bytes the generator's pipes hold in RAM before they overflow to disk
/// ([`Pipes::overflowing`]).
pub const PIPE_BYTES_IN_RAM_MAX: usize = 64 * 1024 * 1024;

impl Drop for Pipes {
    fn drop(&mut self) {
        if let Some((_, dir)) = &self.overflow {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

impl Pipes {
    /// Pipes that keep at most `budget` bytes in RAM together and put the rest in files
    /// under `dir` (created when first needed, removed with the pipes).
    pub fn overflowing(budget: usize, dir: PathBuf) -> Pipes {
        let mut pipes = Pipes::default();
        pipes.overflow = Some((budget, dir));
        pipes
    }

    /// Bytes that went through overflow files.
    pub fn overflowed_bytes(&self) -> u64 {
        self.overflowed_bytes.load(Ordering::Relaxed)
    }

    /// The most bytes the run's pipes held at once: what the workload's skew between
    /// partitions cost in memory (see the module docs).
    pub fn peak_bytes(&self) -> u64 {
        self.peak_bytes.load(Ordering::Relaxed) as u64
    }
}

/// What goes through a pipe's channel: a chunk, or where the writer put one in its
/// overflow file.
#[derive(Debug)]
enum Chunk {
    Bytes(Vec<u8>),
    Overflowed { offset: u64, len: usize },
}

/// A pipe's overflow file: appended by the writer, read at offsets by the reader; emptied
/// by the writer when the reader has read all of it.
#[derive(Debug)]
struct Overflow {
    path: PathBuf,
    /// The writer's append offset.
    written: u64,
    /// Up to where the reader has read (set by the reader).
    read: Arc<AtomicU64>,
    file: Option<File>,
}

/// The writing end.
#[derive(Debug)]
pub struct PipeWriter {
    to_reader: Sender<Chunk>,
    overflow: Overflow,
    /// Chunks sent and not yet received.
    queued: Arc<AtomicUsize>,
    /// Set when the reader is dropped.
    closed: Arc<AtomicBool>,
    pipes: Arc<Pipes>,
}

/// The reading end: one input partition.
#[derive(Debug)]
pub struct PipeReader {
    name: String,
    from_writer: Receiver<Chunk>,
    /// The overflow file (opened at its first use) and how far it was read.
    overflow_path: PathBuf,
    overflow: Option<File>,
    overflow_read: Arc<AtomicU64>,
    queued: Arc<AtomicUsize>,
    closed: Arc<AtomicBool>,
    pipes: Arc<Pipes>,
    /// Found the pipe empty and not fed since (counted in `pipes.hungry`).
    hungry: bool,
    /// Bytes received and not yet decoded start at `at`.
    held: Vec<u8>,
    at: usize,
    bytes_read: u64,
    /// Why the writing side stopped early, if it did (set by the writer's owner).
    error: Arc<Mutex<Option<String>>>,
}

/// A pipe for partition `name` among the run's `pipes`; `error` is where the writing side
/// reports a failure, which the reader then gives as [`PartitionInput::error`].
pub fn pipe(name: String, pipes: &Arc<Pipes>, error: Arc<Mutex<Option<String>>>) -> (PipeWriter, PipeReader) {
    let (to_reader, from_writer) = mpsc::channel();
    let queued = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicBool::new(false));
    let overflow_path = match &pipes.overflow {
        Some((_, dir)) => dir.join(format!("{}.overflow", name.replace(['/', ':'], "_"))),
        None => PathBuf::new(),
    };
    let overflow_read = Arc::new(AtomicU64::new(0));
    let reader = PipeReader {
        name,
        from_writer,
        overflow_path: overflow_path.clone(),
        overflow: None,
        overflow_read: overflow_read.clone(),
        queued: queued.clone(),
        closed: closed.clone(),
        pipes: pipes.clone(),
        hungry: false,
        held: Vec::new(),
        at: 0,
        bytes_read: 0,
        error,
    };
    let writer = PipeWriter {
        to_reader,
        overflow: Overflow {
            path: overflow_path,
            written: 0,
            read: overflow_read,
            file: None,
        },
        queued,
        closed,
        pipes: pipes.clone(),
    };
    (writer, reader)
}

impl Write for PipeWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if bytes.is_empty() {
            return Ok(0);
        }
        let stopped = || io::Error::new(io::ErrorKind::BrokenPipe, "the run stopped reading");
        self.queued.fetch_add(1, Ordering::SeqCst);
        let over_budget = self
            .pipes
            .overflow
            .as_ref()
            .is_some_and(|(budget, _)| self.pipes.queued_bytes.load(Ordering::Relaxed) + bytes.len() > *budget);
        let chunk = if over_budget {
            self.overflow(bytes)?
        } else {
            let held = self.pipes.queued_bytes.fetch_add(bytes.len(), Ordering::Relaxed) + bytes.len();
            self.pipes.peak_bytes.fetch_max(held, Ordering::Relaxed);
            Chunk::Bytes(bytes.to_vec())
        };
        self.to_reader.send(chunk).map_err(|_| stopped())?;
        while self.queued.load(Ordering::SeqCst) > PIPE_CHUNKS_MAX && self.pipes.hungry.load(Ordering::SeqCst) == 0 {
            // The reader's drop sets `closed` before it gives up its hunger, so a writer
            // that sees no hungry reader here sees the close at the latest on its next look.
            if self.closed.load(Ordering::SeqCst) {
                return Err(stopped());
            }
            std::thread::sleep(WRITER_WAIT);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl PipeWriter {
    /// Appends `bytes` to the overflow file (emptied first when the reader has read all of
    /// it) and says where they are.
    fn overflow(&mut self, bytes: &[u8]) -> io::Result<Chunk> {
        let overflow = &mut self.overflow;
        let named = |error: io::Error| io::Error::new(error.kind(), format!("{}: {error}", overflow.path.display()));
        if overflow.file.is_none() {
            if let Some(dir) = overflow.path.parent() {
                fs::create_dir_all(dir).map_err(named)?;
            }
            overflow.file = Some(File::create(&overflow.path).map_err(named)?);
        }
        let file = overflow.file.as_ref().expect("opened");
        if overflow.written > 0 && overflow.read.load(Ordering::SeqCst) == overflow.written {
            // Every chunk in the file was read: nothing in the channel points into it.
            file.set_len(0).map_err(named)?;
            overflow.written = 0;
            overflow.read.store(0, Ordering::SeqCst);
        }
        let offset = overflow.written;
        file.write_all_at(bytes, offset).map_err(named)?;
        overflow.written += bytes.len() as u64;
        self.pipes
            .overflowed_bytes
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(Chunk::Overflowed {
            offset,
            len: bytes.len(),
        })
    }
}

impl Drop for PipeReader {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::SeqCst);
        self.set_hungry(false);
    }
}

impl PipeReader {
    /// Appends the chunk at `offset` of the overflow file to what is held.
    fn read_overflow(&mut self, offset: u64, len: usize) -> io::Result<()> {
        if self.overflow.is_none() {
            self.overflow = Some(File::open(&self.overflow_path)?);
        }
        let start = self.held.len();
        self.held.resize(start + len, 0);
        let file = self.overflow.as_ref().expect("opened");
        file.read_exact_at(&mut self.held[start..], offset)?;
        self.overflow_read.store(offset + len as u64, Ordering::SeqCst);
        Ok(())
    }

    fn set_hungry(&mut self, hungry: bool) {
        if hungry != self.hungry {
            self.hungry = hungry;
            if hungry {
                self.pipes.hungry.fetch_add(1, Ordering::SeqCst);
            } else {
                self.pipes.hungry.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    /// The next complete line held, if any (blank lines skipped).
    fn next_line(&mut self) -> Option<Next> {
        while let Some(end) = self.held[self.at..].iter().position(|&byte| byte == b'\n') {
            let line = &self.held[self.at..self.at + end];
            self.at += end + 1;
            self.bytes_read += end as u64 + 1;
            if !line.iter().all(u8::is_ascii_whitespace) {
                return Some(Next::Record(decode_event(line)));
            }
        }
        None
    }
}

impl PartitionInput for PipeReader {
    fn next_record(&mut self) -> Next {
        loop {
            if let Some(next) = self.next_line() {
                return next;
            }
            self.held.drain(..self.at);
            self.at = 0;
            match self.from_writer.try_recv() {
                Ok(Chunk::Bytes(chunk)) => {
                    self.queued.fetch_sub(1, Ordering::SeqCst);
                    self.pipes.queued_bytes.fetch_sub(chunk.len(), Ordering::Relaxed);
                    self.set_hungry(false);
                    self.held.extend_from_slice(&chunk);
                }
                Ok(Chunk::Overflowed { offset, len }) => {
                    self.queued.fetch_sub(1, Ordering::SeqCst);
                    self.set_hungry(false);
                    if let Err(error) = self.read_overflow(offset, len) {
                        if let Ok(mut slot) = self.error.lock() {
                            slot.get_or_insert(format!("{}: {error}", self.overflow_path.display()));
                        }
                        return Next::Finished;
                    }
                }
                Err(TryRecvError::Empty) => {
                    self.set_hungry(true);
                    return Next::Pending;
                }
                Err(TryRecvError::Disconnected) => {
                    self.set_hungry(false);
                    // A last line without a newline still counts, as in a file.
                    let rest = std::mem::take(&mut self.held);
                    self.bytes_read += rest.len() as u64;
                    if rest.iter().all(u8::is_ascii_whitespace) {
                        return Next::Finished;
                    }
                    return Next::Record(decode_event(&rest));
                }
            }
        }
    }

    fn name(&self) -> String {
        self.name.clone()
    }

    fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    fn error(&self) -> Option<String> {
        self.error.lock().ok().and_then(|error| error.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Decoded;

    #[test]
    fn lines_cut_anywhere_read_back_whole_and_pending_never_blocks() {
        // Writes three lines in odd cuts and checks the reader answers Pending between
        // them and decodes each line as a file reader would.
        let (mut writer, mut reader) = pipe("p".into(), &Arc::default(), Arc::new(Mutex::new(None)));
        assert!(matches!(reader.next_record(), Next::Pending));
        let text = b"{\"id\":\"a\",\"type\":\"refund\",\"ts\":\"2026-01-01T00:00:00+05:00\",\"account\":\"A\",\"amount\":\"1\"}\n\n not json\n{\"id\"";
        writer.write_all(&text[..10]).unwrap();
        assert!(matches!(reader.next_record(), Next::Pending));
        writer.write_all(&text[10..]).unwrap();
        assert!(matches!(reader.next_record(), Next::Record(Decoded::Event(_))));
        assert!(matches!(reader.next_record(), Next::Record(Decoded::Refused(_))));
        assert!(matches!(reader.next_record(), Next::Pending));
        drop(writer);
        assert!(matches!(reader.next_record(), Next::Record(Decoded::Refused(_))));
        assert!(matches!(reader.next_record(), Next::Finished));
        assert_eq!(reader.bytes_read(), text.len() as u64);
    }

    #[test]
    fn the_pipes_peak_is_the_most_bytes_waiting_at_once() {
        let pipes: Arc<Pipes> = Arc::default();
        let (mut a, mut reader_a) = pipe("a".into(), &pipes, Arc::new(Mutex::new(None)));
        let (mut b, _reader_b) = pipe("b".into(), &pipes, Arc::new(Mutex::new(None)));
        a.write_all(b"12345\n").unwrap();
        b.write_all(b"123\n").unwrap();
        assert_eq!(pipes.peak_bytes(), 10, "both pipes count");
        assert!(matches!(reader_a.next_record(), Next::Record(_)));
        a.write_all(b"1\n").unwrap();
        assert_eq!(
            pipes.peak_bytes(),
            10,
            "6 bytes taken, 2 more: 6 waiting, under the peak"
        );
    }

    #[test]
    fn past_the_budget_chunks_wait_on_disk_and_read_back_in_order() {
        // A budget of 40 bytes: the first lines stay in RAM, the rest go to the pipe's
        // overflow file; lines read back whole and in order, and the file starts again
        // from empty once the reader has caught up.
        let dir = std::env::temp_dir().join(format!("markledger-pipe-test-{}", std::process::id()));
        let pipes = Arc::new(Pipes::overflowing(40, dir.clone()));
        let (mut writer, mut reader) = pipe("gen:p000".into(), &pipes, Arc::new(Mutex::new(None)));
        let line = |i: usize| format!("not json, line e{i:02}\n");
        for i in 0..6 {
            writer.write_all(line(i).as_bytes()).unwrap();
        }
        assert!(
            pipes.peak_bytes() <= 40,
            "RAM within the budget: {}",
            pipes.peak_bytes()
        );
        assert!(pipes.overflowed_bytes() > 0);
        let file = dir.join("gen_p000.overflow");
        let full = std::fs::metadata(&file).expect("overflow file").len();
        assert_eq!(full, pipes.overflowed_bytes());
        let mut ids = Vec::new();
        while let Next::Record(Decoded::Refused(refusal)) = reader.next_record() {
            ids.push(refusal.raw.clone());
        }
        let expected: Vec<Option<String>> = (0..6).map(|i| Some(line(i).trim_end().to_string())).collect();
        assert_eq!(ids, expected, "every line, in order");
        // Caught up: the next overflowing chunk starts the file again.
        writer.write_all(&[b' '; 50]).unwrap();
        assert_eq!(std::fs::metadata(&file).expect("overflow file").len(), 50);
        drop((writer, reader));
        drop(pipes);
        assert!(!dir.exists(), "removed with the pipes");
    }

    #[test]
    fn a_dropped_reader_breaks_the_pipe() {
        let (mut writer, reader) = pipe("p".into(), &Arc::default(), Arc::new(Mutex::new(None)));
        drop(reader);
        let error = writer.write_all(b"x\n").unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn a_writer_waiting_at_the_bound_stops_when_its_reader_is_dropped() {
        // The run stopped early (e.g. at the calendar's end) while the generator was
        // waiting for a full pipe to drain: the write must fail, not wait forever (the
        // run's end would hang joining the generator).
        let (mut writer, reader) = pipe("p".into(), &Arc::default(), Arc::new(Mutex::new(None)));
        let (done, finished) = mpsc::channel();
        std::thread::spawn(move || {
            let mut result = Ok(());
            for _ in 0..PIPE_CHUNKS_MAX + 4 {
                result = writer.write_all(b"x\n");
                if result.is_err() {
                    break;
                }
            }
            let _ = done.send(result.map_err(|error| error.kind()));
        });
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            finished.try_recv().is_err(),
            "the writer waits at the bound while the reader lives"
        );
        drop(reader);
        let result = finished
            .recv_timeout(Duration::from_secs(10))
            .expect("the waiting writer gives up once its reader is dropped");
        assert_eq!(result, Err(io::ErrorKind::BrokenPipe));
    }

    #[test]
    fn a_full_pipe_waits_unless_a_reader_is_hungry() {
        // Fills one pipe past its bound on a thread; the write waits until the other
        // pipe's reader finds its pipe empty (hungry), then goes on.
        let pipes = Arc::new(Pipes::default());
        let error = Arc::new(Mutex::new(None));
        let (mut full, _full_reader) = pipe("full".into(), &pipes, error.clone());
        let (_quiet, mut quiet_reader) = pipe("quiet".into(), &pipes, error);
        let writer = std::thread::spawn(move || {
            for _ in 0..PIPE_CHUNKS_MAX + 4 {
                full.write_all(b"x\n").unwrap();
            }
        });
        std::thread::sleep(Duration::from_millis(100));
        assert!(!writer.is_finished(), "the writer waits at the bound");
        assert!(matches!(quiet_reader.next_record(), Next::Pending));
        writer.join().unwrap();
        assert_eq!(pipes.hungry.load(Ordering::SeqCst), 1);
        drop(quiet_reader);
        assert_eq!(pipes.hungry.load(Ordering::SeqCst), 0);
    }
}
