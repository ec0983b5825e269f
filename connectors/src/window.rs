//! A read window: the bytes a record reader has read from its input and not consumed yet.
//!
//! In: any [`Read`]. Out: the unconsumed bytes as one slice, which a reader grows
//! ([`Window::fill_to`]) until it holds a whole record, then consumes. What it bounds:
//! - **memory**: the buffer never holds more than `limit` bytes (the longest record the
//!   reader accepts, one line or one frame), grows only while a record needs it, shrinks
//!   back after ([`Window::shrink`]), and is freed once the input is exhausted and consumed;
//! - **reads**: at most `chunk` bytes are read ahead of what a record needs, and no more
//!   than the input's expected size (`size_hint`), so a one-line file costs a buffer of its
//!   own size, not a whole chunk;
//! - **descriptors**: the reader is dropped (for a file: closed) as soon as it reports its
//!   end or an error, while the bytes already read stay available.

use std::io::{self, Read};

/// Bytes read and not yet consumed, over a reader that is dropped at its end.
#[derive(Debug)]
pub(crate) struct Window<R> {
    /// `None` once the input reported its end or an error.
    reader: Option<R>,
    /// `buffer[start..]` is the unconsumed part.
    buffer: Vec<u8>,
    start: usize,
    /// Bytes consumed since the window was created.
    consumed: u64,
    /// How far to read ahead of what a record needs.
    chunk: usize,
    /// The most bytes the window ever holds.
    limit: usize,
    /// Bytes the input is expected to hold beyond those read (a file's size), if known.
    size_hint: Option<u64>,
    error: Option<io::Error>,
}

impl<R: Read> Window<R> {
    /// A window over `reader` that reads ahead `chunk` bytes and never holds more than
    /// `limit`. Nothing is allocated until the first read.
    pub(crate) fn new(reader: R, chunk: usize, limit: usize) -> Self {
        debug_assert!(chunk > 0 && limit > 0);
        Window {
            reader: Some(reader),
            buffer: Vec::new(),
            start: 0,
            consumed: 0,
            chunk,
            limit,
            size_hint: None,
            error: None,
        }
    }

    /// Tells the window how many bytes the input holds (a file's size), so it reads no
    /// more than that ahead (one more byte sees the end).
    pub(crate) fn with_size_hint(mut self, bytes: u64) -> Self {
        self.size_hint = Some(bytes);
        self
    }

    /// The unconsumed bytes.
    pub(crate) fn available(&self) -> &[u8] {
        &self.buffer[self.start..]
    }

    /// Reads until at least `wanted` bytes (at most the limit) are available or the input
    /// ends; true when they are. Reads ahead up to a chunk, never past the limit.
    pub(crate) fn fill_to(&mut self, wanted: usize) -> bool {
        let wanted = wanted.min(self.limit);
        let held = self.buffer.len() - self.start;
        if held >= wanted {
            return true;
        }
        if self.reader.is_none() {
            return false;
        }
        // Move the unconsumed bytes to the front, so the buffer holds one record's worth.
        if self.start > 0 {
            self.buffer.copy_within(self.start.., 0);
            self.buffer.truncate(held);
            self.start = 0;
        }
        let target = wanted.max(self.read_ahead(held)).min(self.limit);
        if self.buffer.capacity() < target {
            self.buffer.reserve_exact(target - self.buffer.len());
        }
        let requested = target - held;
        let Some(reader) = self.reader.as_mut() else {
            return false;
        };
        // `read_to_end` on a `Take` reads into the spare capacity without zeroing it and
        // stops at the limit or the input's end; fewer bytes than requested means the end.
        let outcome = reader.by_ref().take(requested as u64).read_to_end(&mut self.buffer);
        let got = self.buffer.len() - held;
        if let Some(hint) = self.size_hint.as_mut() {
            *hint = hint.saturating_sub(got as u64);
        }
        match outcome {
            Ok(_) if got < requested => self.reader = None,
            Ok(_) => {}
            Err(error) => {
                self.error = Some(error);
                self.reader = None;
            }
        }
        if self.reader.is_none() && self.buffer.is_empty() {
            // Nothing came and nothing will: hold no memory.
            self.buffer = Vec::new();
        }
        self.buffer.len() - self.start >= wanted
    }

    /// How many bytes to hold after a read when fewer are wanted: a chunk, but no more
    /// than what is held plus what the input is expected to have left, plus one byte (so a
    /// file read whole also sees its end).
    fn read_ahead(&self, held: usize) -> usize {
        match self.size_hint {
            Some(hint) => {
                let rest = usize::try_from(hint.saturating_add(1)).unwrap_or(usize::MAX);
                self.chunk.min(held.saturating_add(rest))
            }
            None => self.chunk,
        }
    }

    /// Reads more than is available: up to the read-ahead while a record is shorter than a
    /// chunk, then doubling what is held, so assembling a long record copies it O(1) times
    /// on average. True when anything new came.
    pub(crate) fn grow(&mut self) -> bool {
        let held = self.buffer.len() - self.start;
        let wanted = if held < self.chunk {
            held + 1
        } else {
            held.saturating_mul(2)
        };
        let wanted = wanted.min(self.limit);
        if wanted <= held {
            return false;
        }
        self.fill_to(wanted);
        self.buffer.len() - self.start > held
    }

    /// Marks `bytes` of the available bytes as consumed. Once the input has ended and
    /// everything is consumed, the buffer is freed.
    pub(crate) fn consume(&mut self, bytes: usize) {
        debug_assert!(bytes <= self.buffer.len() - self.start);
        let bytes = bytes.min(self.buffer.len() - self.start);
        self.start += bytes;
        self.consumed += bytes as u64;
        if self.start == self.buffer.len() {
            self.start = 0;
            self.buffer.clear();
            if self.reader.is_none() {
                self.buffer = Vec::new();
            }
        }
    }

    /// Gives memory back after a long record: keeps at most a chunk (or what is still
    /// unconsumed, when more).
    pub(crate) fn shrink(&mut self) {
        if self.buffer.capacity() > 2 * self.chunk {
            self.buffer.drain(..self.start);
            self.start = 0;
            self.buffer.shrink_to(self.chunk.max(self.buffer.len()));
        }
    }

    /// True when the input has ended (or failed): what is available is all there is.
    pub(crate) fn at_end(&self) -> bool {
        self.reader.is_none()
    }

    /// Bytes consumed so far.
    pub(crate) fn consumed(&self) -> u64 {
        self.consumed
    }

    /// The I/O error that ended the input, if one did.
    pub(crate) fn error(&self) -> Option<&io::Error> {
        self.error.as_ref()
    }

    /// The buffer's allocated size in bytes.
    pub(crate) fn capacity(&self) -> usize {
        self.buffer.capacity()
    }

    /// True while the reader is held (for a file: its descriptor is open).
    pub(crate) fn holds_reader(&self) -> bool {
        self.reader.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn a_small_input_costs_its_own_size_and_is_freed_at_its_end() {
        // Reads a 100-byte input with a 64 KiB chunk and a size hint: the buffer holds
        // 101 bytes at most, the reader is dropped at the end, and consuming all frees it.
        let mut window = Window::new(Cursor::new(vec![b'x'; 100]), 65_536, 1 << 20).with_size_hint(100);
        assert_eq!(window.capacity(), 0);
        assert!(window.fill_to(10));
        assert_eq!(window.available().len(), 100);
        assert!(window.capacity() <= 101, "{}", window.capacity());
        assert!(!window.holds_reader());
        window.consume(100);
        assert_eq!(window.capacity(), 0);
        assert_eq!(window.consumed(), 100);
    }

    #[test]
    fn the_window_never_holds_more_than_its_limit() {
        // Grows over a 10,000-byte input with a limit of 3,000: it stops at the limit, and
        // after consuming and shrinking gives the memory back.
        let mut window = Window::new(Cursor::new(vec![7; 10_000]), 512, 3_000);
        while window.grow() {}
        assert_eq!(window.available().len(), 3_000);
        assert!(window.capacity() <= 3_000);
        assert!(window.holds_reader());
        window.consume(2_900);
        window.shrink();
        assert!(window.capacity() <= 512);
        assert!(window.fill_to(3_000));
        assert_eq!(window.consumed(), 2_900);
    }

    #[test]
    fn an_io_error_ends_the_input_and_keeps_the_bytes_read() {
        // A reader that gives 5 bytes then fails: the 5 bytes stay available, the error is
        // kept, and the reader is dropped.
        struct Failing(u8);
        impl Read for Failing {
            fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("disk gone"));
                }
                self.0 = 0;
                buffer[..5].copy_from_slice(b"hello");
                Ok(5)
            }
        }
        let mut window = Window::new(Failing(1), 64, 1_000);
        assert!(!window.fill_to(10));
        assert_eq!(window.available(), b"hello");
        assert!(window.at_end());
        assert_eq!(window.error().map(ToString::to_string).as_deref(), Some("disk gone"));
    }
}
