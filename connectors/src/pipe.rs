//! A partition that a thread of this process writes while the run reads it: the
//! generator source (`markledger run --input gen:…`) feeds each partition through one.
//!
//! In: JSON lines written to a [`PipeWriter`] (any [`Write`] cut, e.g. the
//! [`crate::file::PartitionWriter`] of the generator). Out: a [`PipeReader`], a
//! [`PartitionInput`] yielding the lines decoded exactly as a file's
//! ([`crate::codec::json::decode_event`], blank lines skipped), so a run over the pipe
//! sees the records a run over the written file would.
//!
//! The pipe holds at most [`PIPE_CHUNKS_MAX`] chunks (each one write of the writer's
//! buffer) and never blocks the reader: with nothing to read it answers
//! [`Next::Pending`], so a worker that owns several partitions keeps draining the others
//! while the writer catches up. The writer blocks while the pipe is full (backpressure on
//! the generator). When the writer is dropped the partition finishes once read out; when
//! the reader is dropped (the run ended or failed) a write fails with `BrokenPipe`.

use crate::codec::json::decode_event;
use crate::partition::{Next, PartitionInput};
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};

/// Chunks a pipe holds before its writer waits.
pub const PIPE_CHUNKS_MAX: usize = 8;

/// The writing end.
#[derive(Debug)]
pub struct PipeWriter {
    to_reader: SyncSender<Vec<u8>>,
}

/// The reading end: one input partition.
#[derive(Debug)]
pub struct PipeReader {
    name: String,
    from_writer: Receiver<Vec<u8>>,
    /// Bytes received and not yet decoded start at `at`.
    held: Vec<u8>,
    at: usize,
    bytes_read: u64,
    /// Why the writing side stopped early, if it did (set by the writer's owner).
    error: Arc<Mutex<Option<String>>>,
}

/// A pipe for partition `name`; `error` is where the writing side reports a failure, which
/// the reader then gives as [`PartitionInput::error`].
pub fn pipe(name: String, error: Arc<Mutex<Option<String>>>) -> (PipeWriter, PipeReader) {
    let (to_reader, from_writer) = mpsc::sync_channel(PIPE_CHUNKS_MAX);
    let reader = PipeReader {
        name,
        from_writer,
        held: Vec::new(),
        at: 0,
        bytes_read: 0,
        error,
    };
    (PipeWriter { to_reader }, reader)
}

impl Write for PipeWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if bytes.is_empty() {
            return Ok(0);
        }
        self.to_reader
            .send(bytes.to_vec())
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the run stopped reading"))?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl PipeReader {
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
                Ok(chunk) => self.held.extend_from_slice(&chunk),
                Err(TryRecvError::Empty) => return Next::Pending,
                Err(TryRecvError::Disconnected) => {
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
        let (mut writer, mut reader) = pipe("p".into(), Arc::new(Mutex::new(None)));
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
    fn a_dropped_reader_breaks_the_pipe() {
        let (mut writer, reader) = pipe("p".into(), Arc::new(Mutex::new(None)));
        drop(reader);
        let error = writer.write_all(b"x\n").unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::BrokenPipe);
    }
}
