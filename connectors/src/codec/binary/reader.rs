//! [`BinaryReader`]: frames of a binary stream in, one [`Decoded`] per frame out.
//!
//! In: a byte stream positioned just after the file header ([`MAGIC`] or [`MAGIC_V1`]),
//! read through a [`Window`] that holds at most one frame. Out: the frames' records in
//! order; for version 2, each run of bytes that holds no valid frame as one `MALFORMED`
//! record, emitted where the run was, before the good frames after it.

use super::{
    checksum_matches, decode_escaped, decode_payload, frame_header_length, Payload, Version, FRAME_BYTES_MAX,
    FRAME_HEADER_BYTES, FRAME_LENGTH_BYTES, MAGIC, MAGIC_V1,
};
use crate::codec::{malformed, DecodeError, Decoded, FrameFault, FramePart, RawInput, Readable, Skip};
use crate::file::READ_BUFFER_BYTES;
use crate::window::Window;
use markledger_operators::output::RAW_BYTES_MAX;
use std::io::{self, Read};

/// Bytes of a skipped run kept for its rejection's `raw` (as hex, two digits per byte).
const SKIPPED_KEPT_BYTES: usize = RAW_BYTES_MAX / 2;

/// Reads frames from a byte stream positioned just after the file header and yields one
/// [`Decoded`] per frame, in order (blank raw records are skipped). Version 2 streams are
/// checked frame by frame and resynchronised after damage (see the [module](super) doc);
/// version 1 streams are read as they always were.
///
/// It reads ahead at most [`READ_BUFFER_BYTES`] beyond the frame it decodes, holds at most
/// one frame ([`FRAME_HEADER_BYTES`] + [`FRAME_BYTES_MAX`] bytes), and drops the underlying
/// reader (closing a file) at its end. An I/O error ends the iteration; it is kept for
/// [`BinaryReader::io_error`].
#[derive(Debug)]
pub struct BinaryReader<R: Read> {
    input: Window<R>,
    version: Version,
    /// The stream's offset in its file (the header's length), for the details.
    base_offset: u64,
    /// A run of bytes being skipped, reported before the next good frame.
    skipping: Option<Skipping>,
    /// The length of the frame at the window's start, once verified.
    verified: Option<usize>,
    done: bool,
}

/// A run of skipped bytes, as it is scanned.
#[derive(Debug)]
struct Skipping {
    offset: u64,
    bytes: u64,
    fault: FrameFault,
    kept: Vec<u8>,
}

/// What the window's start holds.
enum AtStart {
    /// A frame that verifies, with its payload length.
    Frame(usize),
    /// No valid frame, and why.
    Invalid(FrameFault),
    /// Nothing: the stream is exhausted (or failed).
    End,
}

impl<R: Read> BinaryReader<R> {
    /// A reader of the version-2 frames in `reader` (positioned after [`MAGIC`]).
    pub fn new(reader: R) -> Self {
        Self::with_version(reader, Version::V2)
    }

    /// A reader of frames of the given version (positioned after its header).
    pub fn with_version(reader: R, version: Version) -> Self {
        Self::over(
            Window::new(reader, READ_BUFFER_BYTES, FRAME_HEADER_BYTES + FRAME_BYTES_MAX),
            version,
        )
    }

    pub(crate) fn over(input: Window<R>, version: Version) -> Self {
        let header = match version {
            Version::V1 => MAGIC_V1.len(),
            Version::V2 => MAGIC.len(),
        };
        BinaryReader {
            input,
            version,
            base_offset: header as u64,
            skipping: None,
            verified: None,
            done: false,
        }
    }

    /// The format version being read.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Bytes consumed from the stream so far.
    pub fn bytes_read(&self) -> u64 {
        self.input.consumed()
    }

    /// The I/O error that ended the iteration, if one did.
    pub fn io_error(&self) -> Option<&io::Error> {
        self.input.error()
    }

    /// Bytes allocated for reading now (0 before the first read and after the end).
    pub fn buffer_capacity(&self) -> usize {
        self.input.capacity()
    }

    /// True while the underlying reader is held (it is dropped at the end of the stream).
    pub fn holds_reader(&self) -> bool {
        self.input.holds_reader()
    }

    fn offset(&self) -> u64 {
        self.base_offset + self.input.consumed()
    }

    // -----------------------------------------------------------------------------------
    // Version 2

    fn next_v2(&mut self) -> Option<Decoded> {
        loop {
            if self.done {
                return None;
            }
            match self.at_start() {
                AtStart::Frame(length) => {
                    if let Some(skipping) = self.skipping.take() {
                        // The frame stays where it is, verified, for the next call.
                        self.verified = Some(length);
                        return Some(skipping.rejection(false));
                    }
                    self.verified = None;
                    let end = FRAME_HEADER_BYTES + length;
                    let payload = decode_escaped(&self.input.available()[FRAME_HEADER_BYTES..end]);
                    self.input.consume(end);
                    self.input.shrink();
                    match payload {
                        Payload::Decoded(decoded) => return Some(decoded),
                        Payload::Blank(_) => continue,
                    }
                }
                AtStart::Invalid(fault) => self.skip_to_next_marker(fault),
                AtStart::End => {
                    self.done = true;
                    if self.input.error().is_some() {
                        return None;
                    }
                    return self.skipping.take().map(|skipping| skipping.rejection(true));
                }
            }
        }
    }

    /// Checks the frame at the window's start, reading as much of it as it declares.
    fn at_start(&mut self) -> AtStart {
        if let Some(length) = self.verified {
            return AtStart::Frame(length);
        }
        let complete = self.input.fill_to(FRAME_HEADER_BYTES);
        let available = self.input.available();
        if available.is_empty() {
            return AtStart::End;
        }
        let marker_len = available.len().min(FRAME_MARKER_BYTES);
        if available[..marker_len] != super::FRAME_MARKER[..marker_len] {
            return AtStart::Invalid(FrameFault::NoMarker);
        }
        if !complete {
            return AtStart::Invalid(FrameFault::Truncated);
        }
        let Some(length) = frame_header_length(available) else {
            return AtStart::Invalid(FrameFault::HeaderCheck);
        };
        let length = length as usize;
        if length > FRAME_BYTES_MAX {
            return AtStart::Invalid(FrameFault::TooLong(length as u64));
        }
        if !self.input.fill_to(FRAME_HEADER_BYTES + length) {
            return AtStart::Invalid(FrameFault::Truncated);
        }
        let (header, rest) = self.input.available().split_at(FRAME_HEADER_BYTES);
        if checksum_matches(header, &rest[..length]) {
            AtStart::Frame(length)
        } else {
            AtStart::Invalid(FrameFault::Checksum)
        }
    }

    /// Skips the byte at the window's start (it starts no valid frame), then every byte up
    /// to the next frame marker or the end, adding them to the current skipped run.
    fn skip_to_next_marker(&mut self, fault: FrameFault) {
        if self.skipping.is_none() {
            self.skipping = Some(Skipping {
                offset: self.offset(),
                bytes: 0,
                fault,
                kept: Vec::new(),
            });
        }
        self.skip(1);
        loop {
            let available = self.input.available();
            if let Some(at) = find_marker(available) {
                self.skip(at);
                return;
            }
            // Keep a possible marker's first bytes at the end; skip the rest.
            let keep = if self.input.at_end() {
                0
            } else {
                available.len().min(FRAME_MARKER_BYTES - 1)
            };
            self.skip(available.len() - keep);
            if self.input.at_end() {
                return;
            }
            self.input.fill_to(READ_BUFFER_BYTES);
            if self.input.available().len() <= keep && self.input.at_end() {
                let rest = self.input.available().len();
                self.skip(rest);
                return;
            }
        }
    }

    /// Consumes `bytes` from the window's start into the current skipped run.
    fn skip(&mut self, bytes: usize) {
        let skipping = self.skipping.as_mut().expect("a skipped run is open");
        let available = &self.input.available()[..bytes];
        let room = SKIPPED_KEPT_BYTES.saturating_sub(skipping.kept.len());
        skipping.kept.extend_from_slice(&available[..room.min(bytes)]);
        skipping.bytes += bytes as u64;
        self.input.consume(bytes);
    }

    // -----------------------------------------------------------------------------------
    // Version 1

    fn next_v1(&mut self) -> Option<Decoded> {
        loop {
            if self.done {
                return None;
            }
            if !self.input.fill_to(FRAME_LENGTH_BYTES) {
                return self.v1_short(FRAME_LENGTH_BYTES as u64, FramePart::Length, 0);
            }
            let available = self.input.available();
            let prefix = [available[0], available[1], available[2], available[3]];
            let length = u64::from(u32::from_le_bytes(prefix));
            if length > FRAME_BYTES_MAX as u64 {
                // Skip the payload without holding it; what follows is the next frame.
                self.input.consume(FRAME_LENGTH_BYTES);
                let skipped = self.discard(length);
                if skipped < length {
                    if self.input.error().is_some() {
                        return self.fail();
                    }
                    self.done = true;
                    let error = DecodeError::TruncatedFrame(skipped, length, FramePart::Payload);
                    return Some(malformed(Readable::default(), error, RawInput::Binary(&prefix)));
                }
                let error = DecodeError::FrameTooLong(length, FRAME_BYTES_MAX);
                return Some(malformed(Readable::default(), error, RawInput::Binary(&prefix)));
            }
            let length = length as usize;
            if !self.input.fill_to(FRAME_LENGTH_BYTES + length) {
                return self.v1_short(length as u64, FramePart::Payload, FRAME_LENGTH_BYTES);
            }
            let end = FRAME_LENGTH_BYTES + length;
            let payload = &self.input.available()[FRAME_LENGTH_BYTES..end];
            let payload = decode_payload(payload, payload);
            self.input.consume(end);
            self.input.shrink();
            match payload {
                Payload::Decoded(decoded) => return Some(decoded),
                Payload::Blank(_) => continue,
            }
        }
    }

    /// The stream ended (or failed) with fewer bytes than a frame part needs: nothing at a
    /// frame boundary ends the stream; a part of a frame is one `MALFORMED` record.
    fn v1_short(&mut self, wanted: u64, part: FramePart, skip: usize) -> Option<Decoded> {
        if self.input.error().is_some() {
            return self.fail();
        }
        self.done = true;
        let available = self.input.available();
        if available.is_empty() {
            return None;
        }
        let kept = &available[skip.min(available.len())..];
        let error = DecodeError::TruncatedFrame(kept.len() as u64, wanted, part);
        let decoded = malformed(Readable::default(), error, RawInput::Binary(kept));
        let all = available.len();
        self.input.consume(all);
        Some(decoded)
    }

    /// Consumes up to `bytes` bytes without holding more than a chunk; returns how many.
    fn discard(&mut self, bytes: u64) -> u64 {
        let mut discarded = 0;
        while discarded < bytes {
            if !self.input.fill_to(1) {
                break;
            }
            let step = (self.input.available().len() as u64).min(bytes - discarded) as usize;
            self.input.consume(step);
            discarded += step as u64;
        }
        discarded
    }

    fn fail(&mut self) -> Option<Decoded> {
        self.done = true;
        None
    }
}

impl Skipping {
    fn rejection(self, to_end: bool) -> Decoded {
        let error = DecodeError::Skipped(Skip {
            offset: self.offset,
            bytes: self.bytes,
            fault: self.fault,
            to_end,
        });
        malformed(Readable::default(), error, RawInput::Binary(&self.kept))
    }
}

const FRAME_MARKER_BYTES: usize = super::FRAME_MARKER.len();

/// The position of the first frame marker in `bytes`.
fn find_marker(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(FRAME_MARKER_BYTES)
        .position(|window| window == super::FRAME_MARKER)
}

impl<R: Read> Iterator for BinaryReader<R> {
    type Item = Decoded;

    fn next(&mut self) -> Option<Decoded> {
        match self.version {
            Version::V1 => self.next_v1(),
            Version::V2 => self.next_v2(),
        }
    }
}
