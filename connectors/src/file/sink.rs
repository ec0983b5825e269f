//! The `--out` directory: an engine's [`Output`]s in, five JSON-lines files out.
//!
//! Each record is rendered by [`render_output_into`] and appended, with a newline, to the
//! file [`output_file`] names (INTERFACE.md "Outputs"), in emission order. Lines collect in
//! a buffer per file that a writer thread writes out; [`OutputFiles::finish`] hands over the
//! rest and waits for it. [`Sink::emit`] cannot return an error, so the writer stops at the
//! first I/O error, later records are dropped, and `finish` returns it.

use super::OutputFile;
use crate::codec::json::{output_file, render_output_into};
use markledger_operators::{Output, Sink};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, SyncSender};
use std::thread::{self, JoinHandle};

/// Rendered bytes of one output file handed to the writer thread at a time.
pub const WRITE_BUFFER_BYTES: usize = 1024 * 1024;

/// Full buffers waiting for the writer thread at most (bounds the memory of a slow disk).
const BUFFERS_IN_FLIGHT: usize = 8;

/// Records written to each output file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutputCounts {
    /// Lines in `status.jsonl`.
    pub status: u64,
    /// Lines in `ledger.jsonl`.
    pub ledger: u64,
    /// Lines in `balances.jsonl`.
    pub balances: u64,
    /// Lines in `rejections.jsonl`.
    pub rejections: u64,
    /// Lines in `periods.jsonl`.
    pub periods: u64,
    /// Lines in `exports.jsonl`.
    pub exports: u64,
}

impl OutputCounts {
    /// The count of one file.
    pub fn get(&self, file: OutputFile) -> u64 {
        match file {
            OutputFile::Status => self.status,
            OutputFile::Ledger => self.ledger,
            OutputFile::Balances => self.balances,
            OutputFile::Rejections => self.rejections,
            OutputFile::Periods => self.periods,
            OutputFile::Exports => self.exports,
        }
    }

    /// All records.
    pub fn total(&self) -> u64 {
        OutputFile::ALL.iter().map(|&file| self.get(file)).sum()
    }

    fn increment(&mut self, file: OutputFile) {
        let count = match file {
            OutputFile::Status => &mut self.status,
            OutputFile::Ledger => &mut self.ledger,
            OutputFile::Balances => &mut self.balances,
            OutputFile::Rejections => &mut self.rejections,
            OutputFile::Periods => &mut self.periods,
            OutputFile::Exports => &mut self.exports,
        };
        *count += 1;
    }
}

/// The six output files in an `--out` directory, buffered.
///
/// Records are rendered on the caller's thread into one buffer per file; a full buffer
/// goes to a writer thread, so rendering the next records overlaps the kernel's copy of
/// the last ones (a 10^7 run writes about 1 GB of status lines once its dataflow is done:
/// BENCHMARKS.md "Profile").
#[derive(Debug)]
pub struct OutputFiles {
    dir: PathBuf,
    /// Rendered lines not yet handed over, indexed by [`OutputFile::index`].
    buffers: Vec<Vec<u8>>,
    /// Full buffers to the writer thread (`None` once finished).
    to_writer: Option<SyncSender<(usize, Vec<u8>)>>,
    writer: Option<JoinHandle<io::Result<()>>>,
    counts: OutputCounts,
    /// The writer thread stopped (it met an I/O error, which `finish` returns).
    failed: bool,
}

impl OutputFiles {
    /// Creates `dir` if missing and the five files in it (truncating existing ones).
    pub fn create(dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let named =
            |path: &Path, error: io::Error| io::Error::new(error.kind(), format!("{}: {error}", path.display()));
        let mut files = OutputFile::ALL
            .iter()
            .map(|file| {
                let path = dir.join(file.file_name());
                File::create(&path)
                    .map(|file| (path.clone(), file))
                    .map_err(|error| named(&path, error))
            })
            .collect::<io::Result<Vec<_>>>()?;
        let (to_writer, buffers) = mpsc::sync_channel::<(usize, Vec<u8>)>(BUFFERS_IN_FLIGHT);
        let writer = thread::Builder::new().name("output-files".into()).spawn(move || {
            for (index, bytes) in buffers {
                let (path, file) = &mut files[index];
                file.write_all(&bytes).map_err(|error| named(path, error))?;
            }
            Ok(())
        })?;
        Ok(OutputFiles {
            dir: dir.to_path_buf(),
            buffers: OutputFile::ALL
                .iter()
                .map(|_| Vec::with_capacity(WRITE_BUFFER_BYTES))
                .collect(),
            to_writer: Some(to_writer),
            writer: Some(writer),
            counts: OutputCounts::default(),
            failed: false,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Records written so far.
    pub fn counts(&self) -> OutputCounts {
        self.counts
    }

    /// Hands file `index`'s buffer to the writer thread, leaving `next` in its place.
    fn hand_over(&mut self, index: usize, next: Vec<u8>) {
        let bytes = std::mem::replace(&mut self.buffers[index], next);
        let sent = self
            .to_writer
            .as_ref()
            .is_some_and(|to_writer| to_writer.send((index, bytes)).is_ok());
        self.failed |= !sent;
    }

    /// Hands every buffer over (nothing is rendered after this, so no new buffers) and
    /// waits for the writer thread.
    fn close(&mut self) -> io::Result<()> {
        for index in 0..self.buffers.len() {
            if !self.buffers[index].is_empty() && !self.failed {
                self.hand_over(index, Vec::new());
            }
        }
        self.to_writer = None;
        match self.writer.take().map(JoinHandle::join) {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(error))) => Err(error),
            Some(Err(_)) => Err(io::Error::other("the output writer thread panicked")),
        }
    }

    /// Writes everything out; returns the counts, or the first I/O error met while writing.
    pub fn finish(mut self) -> io::Result<OutputCounts> {
        self.close()?;
        Ok(self.counts)
    }

    /// Appends one already rendered record (a JSON line without its newline) to `file`.
    pub fn write_line(&mut self, file: OutputFile, line: &[u8]) {
        if self.failed {
            return;
        }
        let index = file.index();
        let buffer = &mut self.buffers[index];
        buffer.extend_from_slice(line);
        buffer.push(b'\n');
        self.counts.increment(file);
        if buffer.len() >= WRITE_BUFFER_BYTES {
            self.hand_over(index, Vec::with_capacity(WRITE_BUFFER_BYTES));
        }
    }

    /// Renders one output record into its file's buffer.
    pub fn write(&mut self, output: &Output) {
        if self.failed {
            return;
        }
        let file = output_file(output);
        let index = file.index();
        let buffer = &mut self.buffers[index];
        render_output_into(output, buffer);
        buffer.push(b'\n');
        self.counts.increment(file);
        if buffer.len() >= WRITE_BUFFER_BYTES {
            self.hand_over(index, Vec::with_capacity(WRITE_BUFFER_BYTES));
        }
    }
}

impl Drop for OutputFiles {
    fn drop(&mut self) {
        // Not finished: write what was emitted anyway (as a dropped `BufWriter` would).
        let _ = self.close();
    }
}

impl Sink for OutputFiles {
    type Done = io::Result<OutputCounts>;

    fn emit(&mut self, _time: markledger_operators::flow::Time, outputs: &mut Vec<Output>) {
        for output in outputs.drain(..) {
            self.write(&output);
        }
    }

    fn finish(self) -> io::Result<OutputCounts> {
        OutputFiles::finish(self)
    }
}
