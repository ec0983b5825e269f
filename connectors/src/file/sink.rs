//! The `--out` directory: an engine's [`Output`]s in, five JSON-lines files out.
//!
//! Each record is rendered by [`render_output_into`] and appended, with a newline, to the
//! file [`output_file`] names (INTERFACE.md "Outputs"), in emission order. Files are
//! buffered; [`OutputFiles::finish`] flushes them. [`Sink::emit`] cannot return an error,
//! so the first I/O error is kept, later records are dropped, and `finish` returns it.

use super::OutputFile;
use crate::codec::json::{output_file, render_output_into};
use markledger_operators::{Output, Sink};
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// The write buffer of each output file.
pub const WRITE_BUFFER_BYTES: usize = 256 * 1024;

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
        };
        *count += 1;
    }
}

/// The five output files in an `--out` directory, buffered.
#[derive(Debug)]
pub struct OutputFiles {
    dir: PathBuf,
    /// Indexed by [`OutputFile::index`].
    files: Vec<BufWriter<File>>,
    line: Vec<u8>,
    counts: OutputCounts,
    error: Option<io::Error>,
}

impl OutputFiles {
    /// Creates `dir` if missing and the five files in it (truncating existing ones).
    pub fn create(dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let files = OutputFile::ALL
            .iter()
            .map(|file| {
                let path = dir.join(file.file_name());
                let handle = File::create(&path)
                    .map_err(|error| io::Error::new(error.kind(), format!("{}: {error}", path.display())))?;
                Ok(BufWriter::with_capacity(WRITE_BUFFER_BYTES, handle))
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(OutputFiles {
            dir: dir.to_path_buf(),
            files,
            line: Vec::with_capacity(1024),
            counts: OutputCounts::default(),
            error: None,
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

    /// Flushes every file; returns the counts, or the first I/O error met while writing.
    pub fn finish(mut self) -> io::Result<OutputCounts> {
        for file in &mut self.files {
            if let Err(error) = file.flush() {
                self.error.get_or_insert(error);
            }
        }
        match self.error {
            Some(error) => Err(error),
            None => Ok(self.counts),
        }
    }
}

impl Sink for OutputFiles {
    fn emit(&mut self, output: Output) {
        if self.error.is_some() {
            return;
        }
        let file = output_file(&output);
        self.line.clear();
        render_output_into(&output, &mut self.line);
        self.line.push(b'\n');
        match self.files[file.index()].write_all(&self.line) {
            Ok(()) => self.counts.increment(file),
            Err(error) => self.error = Some(error),
        }
    }
}
