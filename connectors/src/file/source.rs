//! Input partition files: paths in, [`Decoded`] records out, one file = one partition.
//!
//! [`list_partitions`] expands command-line paths into partition files. A
//! [`PartitionReader`] opens one, detects its format from its first bytes ([`MAGIC`] →
//! binary, else JSON lines) and yields its records in file order, so a partition's
//! high-water mark sees them in the order they were written. Memory per reader is bounded:
//! a read buffer of [`READ_BUFFER_BYTES`] plus at most one line of [`LINE_BYTES_MAX`] (a
//! longer line becomes one `MALFORMED` record and is skipped to its newline).
//! [`PartitionWriter`] is the generator's side: events or raw bad lines into a file in
//! either format.

use super::Format;
use crate::codec::binary::{frame_event, frame_raw, BinaryReader, MAGIC};
use crate::codec::json::{decode_event, encode_event_into};
use crate::codec::{malformed, DecodeError, Decoded, RawInput, Readable};
use markledger_operators::output::RAW_BYTES_MAX;
use markledger_operators::Event;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, BufWriter, Chain, Cursor, Read, Write};
use std::path::{Path, PathBuf};

/// The longest JSON input line accepted, without its newline.
pub const LINE_BYTES_MAX: usize = 16 * 1024 * 1024;

/// The read buffer of one partition reader.
pub const READ_BUFFER_BYTES: usize = 256 * 1024;

/// The write buffer of one partition writer.
const WRITE_BUFFER_BYTES: usize = 256 * 1024;

/// The file a directory of partitions may carry to describe them; it is not a partition.
pub const MANIFEST_FILE_NAME: &str = "manifest.json";

/// More than the keys, punctuation, timestamps and decimals of any event's JSON line add
/// over its binary frame.
const JSON_KEYS_BYTES_MAX: usize = 1024;

/// The UTF-8 byte order mark some editors put at the start of a text file.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Why input paths could not be listed or opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The path does not exist.
    #[error("input path {} does not exist", .path.display())]
    Missing {
        /// The path as given.
        path: PathBuf,
    },
    /// A directory where a partition file was expected.
    #[error("input path {} is a directory, not a partition file", .path.display())]
    IsDirectory {
        /// The path as given.
        path: PathBuf,
    },
    /// The path exists but could not be read.
    #[error("cannot read input path {}: {source}", .path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

impl SourceError {
    fn io(path: &Path, source: io::Error) -> Self {
        if source.kind() == io::ErrorKind::NotFound {
            SourceError::Missing {
                path: path.to_path_buf(),
            }
        } else {
            SourceError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    }
}

/// Expands command-line paths into partition files, in argument order: a file is one
/// partition; a directory contributes its regular files (not recursive), sorted by name,
/// skipping hidden files (name starting with `.`) and [`MANIFEST_FILE_NAME`]. Symbolic
/// links are followed. Errors (a missing path, an unreadable directory) are returned, not
/// panicked on; an empty directory contributes nothing.
pub fn list_partitions(paths: &[PathBuf]) -> Result<Vec<PathBuf>, SourceError> {
    let mut partitions = Vec::new();
    for path in paths {
        let metadata = fs::metadata(path).map_err(|error| SourceError::io(path, error))?;
        if !metadata.is_dir() {
            partitions.push(path.clone());
            continue;
        }
        let mut files = Vec::new();
        for entry in fs::read_dir(path).map_err(|error| SourceError::io(path, error))? {
            let entry = entry.map_err(|error| SourceError::io(path, error))?;
            let name = entry.file_name();
            let name_bytes = name.as_encoded_bytes();
            if name_bytes.starts_with(b".") || name_bytes == MANIFEST_FILE_NAME.as_bytes() {
                continue;
            }
            let entry_path = entry.path();
            let is_file = fs::metadata(&entry_path)
                .map_err(|error| SourceError::io(&entry_path, error))?
                .is_file();
            if is_file {
                files.push((name, entry_path));
            }
        }
        files.sort();
        partitions.extend(files.into_iter().map(|(_, path)| path));
    }
    Ok(partitions)
}

/// The bytes a reader reads: the header bytes format detection already took, then the
/// rest of the file.
type Input = Chain<Cursor<Vec<u8>>, File>;

/// Reads one partition file: detects its format from the first bytes and iterates its
/// records in file order as [`Decoded`]. Blank lines (only whitespace) are skipped, not
/// rejected; a UTF-8 byte order mark at the start of a JSON file is skipped.
///
/// An I/O error while reading ends the iteration; check [`PartitionReader::io_error`]
/// afterwards.
#[derive(Debug)]
pub struct PartitionReader {
    path: PathBuf,
    format: Format,
    records: Records,
}

#[derive(Debug)]
enum Records {
    Json(JsonLines),
    Binary(BinaryReader<BufReader<Input>>),
}

impl PartitionReader {
    /// Opens `path` and detects its format.
    pub fn open(path: &Path) -> Result<Self, SourceError> {
        let io_error = |error| SourceError::io(path, error);
        let metadata = fs::metadata(path).map_err(io_error)?;
        if metadata.is_dir() {
            return Err(SourceError::IsDirectory {
                path: path.to_path_buf(),
            });
        }
        let mut file = File::open(path).map_err(io_error)?;
        let mut header = vec![0; MAGIC.len()];
        let got = read_full(&mut file, &mut header).map_err(io_error)?;
        header.truncate(got);
        let (format, skipped) = if header == MAGIC {
            (Format::Binary, MAGIC.len())
        } else if header.starts_with(UTF8_BOM) {
            (Format::Json, UTF8_BOM.len())
        } else {
            (Format::Json, 0)
        };
        let rest = header.split_off(skipped);
        let input = BufReader::with_capacity(READ_BUFFER_BYTES, Cursor::new(rest).chain(file));
        let records = match format {
            Format::Json => Records::Json(JsonLines::new(input, skipped as u64)),
            Format::Binary => Records::Binary(BinaryReader::new(input)),
        };
        Ok(PartitionReader {
            path: path.to_path_buf(),
            format,
            records,
        })
    }

    /// The detected format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The partition file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes of the file consumed so far (for progress reports).
    pub fn bytes_read(&self) -> u64 {
        match &self.records {
            Records::Json(lines) => lines.bytes_read,
            Records::Binary(frames) => MAGIC.len() as u64 + frames.bytes_read(),
        }
    }

    /// The I/O error that ended the iteration early, if one did.
    pub fn io_error(&self) -> Option<&io::Error> {
        match &self.records {
            Records::Json(lines) => lines.error.as_ref(),
            Records::Binary(frames) => frames.io_error(),
        }
    }
}

impl Iterator for PartitionReader {
    type Item = Decoded;

    fn next(&mut self) -> Option<Decoded> {
        match &mut self.records {
            Records::Json(lines) => lines.next(),
            Records::Binary(frames) => frames.next(),
        }
    }
}

/// JSON lines with bounded memory. A line that fits the read buffer is decoded in place;
/// a longer one is assembled in `line`, up to [`LINE_BYTES_MAX`].
#[derive(Debug)]
struct JsonLines {
    reader: BufReader<Input>,
    /// The part of the current line read so far (only its first bytes once oversized).
    line: Vec<u8>,
    /// The current line's full length so far.
    line_bytes: u64,
    bytes_read: u64,
    done: bool,
    error: Option<io::Error>,
}

impl JsonLines {
    fn new(reader: BufReader<Input>, bytes_read: u64) -> Self {
        JsonLines {
            reader,
            line: Vec::new(),
            line_bytes: 0,
            bytes_read,
            done: false,
            error: None,
        }
    }

    fn next(&mut self) -> Option<Decoded> {
        loop {
            if self.done {
                return None;
            }
            let buffer = match self.reader.fill_buf() {
                Ok(buffer) => buffer,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    self.error = Some(error);
                    self.done = true;
                    return None;
                }
            };
            if buffer.is_empty() {
                // End of file: a last line without a newline still counts.
                self.done = true;
                if self.line_bytes == 0 {
                    return None;
                }
                return self.finish_line();
            }
            match buffer.iter().position(|&byte| byte == b'\n') {
                Some(end) if self.line_bytes == 0 => {
                    // The whole line is in the buffer: decode it without copying.
                    let decoded = decode_line(&buffer[..end]);
                    self.reader.consume(end + 1);
                    self.bytes_read += end as u64 + 1;
                    if decoded.is_some() {
                        return decoded;
                    }
                }
                Some(end) => {
                    let part = &buffer[..end];
                    append_bounded(&mut self.line, &mut self.line_bytes, part);
                    self.reader.consume(end + 1);
                    self.bytes_read += end as u64 + 1;
                    let decoded = self.finish_line();
                    if decoded.is_some() {
                        return decoded;
                    }
                }
                None => {
                    let taken = buffer.len();
                    append_bounded(&mut self.line, &mut self.line_bytes, buffer);
                    self.reader.consume(taken);
                    self.bytes_read += taken as u64;
                }
            }
        }
    }

    /// Decodes the assembled line and resets it.
    fn finish_line(&mut self) -> Option<Decoded> {
        let decoded = if self.line_bytes > LINE_BYTES_MAX as u64 {
            // `line` holds the line's first bytes, which is what `raw` keeps.
            let error = DecodeError::LineTooLong(self.line_bytes, LINE_BYTES_MAX);
            Some(malformed(Readable::default(), error, RawInput::Text(&self.line)))
        } else {
            decode_line(&self.line)
        };
        self.line.clear();
        if self.line.capacity() > READ_BUFFER_BYTES {
            self.line.shrink_to(READ_BUFFER_BYTES);
        }
        self.line_bytes = 0;
        decoded
    }
}

/// Appends a part of a line, keeping only the first bytes (enough for a rejection's `raw`)
/// once the line is longer than [`LINE_BYTES_MAX`].
fn append_bounded(line: &mut Vec<u8>, line_bytes: &mut u64, part: &[u8]) {
    *line_bytes += part.len() as u64;
    if *line_bytes <= LINE_BYTES_MAX as u64 {
        line.extend_from_slice(part);
    } else {
        // Keep a little more than the raw bound so the cut can land on a char boundary.
        let kept_max = RAW_BYTES_MAX + 4;
        line.truncate(kept_max);
        let room = kept_max.saturating_sub(line.len());
        line.extend_from_slice(&part[..room.min(part.len())]);
    }
}

/// Decodes one line; `None` for a blank line.
fn decode_line(line: &[u8]) -> Option<Decoded> {
    if line.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(decode_event(line))
    }
}

/// Reads until `buffer` is full or the file ends; returns the bytes read.
fn read_full(reader: &mut impl Read, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(got) => filled += got,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

/// Writes a partition file in either format (the generator's side): well-formed events,
/// and raw lines that are deliberately not well-formed events. The same calls in either
/// format produce files that read back as the same [`Decoded`] sequence.
#[derive(Debug)]
pub struct PartitionWriter {
    out: BufWriter<File>,
    format: Format,
    scratch: Vec<u8>,
    bytes_written: u64,
}

impl PartitionWriter {
    /// Creates (or truncates) `path`; a binary file starts with [`MAGIC`].
    pub fn create(path: &Path, format: Format) -> io::Result<Self> {
        let mut out = BufWriter::with_capacity(WRITE_BUFFER_BYTES, File::create(path)?);
        let mut bytes_written = 0;
        if format == Format::Binary {
            out.write_all(MAGIC)?;
            bytes_written = MAGIC.len() as u64;
        }
        Ok(PartitionWriter {
            out,
            format,
            scratch: Vec::with_capacity(4096),
            bytes_written,
        })
    }

    /// The file's format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Bytes written so far (buffered ones included).
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    /// Writes one event (JSON: [`crate::codec::json::encode_event`] and a newline; binary:
    /// a [`crate::codec::binary::BinaryRecord::Event`] frame). An event whose JSON line
    /// would exceed [`LINE_BYTES_MAX`] is refused with `InvalidInput` in both formats, since
    /// a JSON reader would not accept it.
    pub fn write_event(&mut self, event: &Event) -> io::Result<()> {
        self.scratch.clear();
        match self.format {
            Format::Json => {
                encode_event_into(event, &mut self.scratch);
                if self.scratch.len() > LINE_BYTES_MAX {
                    return Err(line_too_long(self.scratch.len()));
                }
                self.scratch.push(b'\n');
            }
            Format::Binary => {
                let frame_bytes = frame_event(event, &mut self.scratch).map_err(invalid_input)?;
                // A JSON line is at most 6 bytes per binary byte (an escaped control
                // character) plus its keys, so only a big frame can stand for a line over
                // the limit: measure its JSON only then.
                if frame_bytes.saturating_mul(6).saturating_add(JSON_KEYS_BYTES_MAX) > LINE_BYTES_MAX {
                    let json_bytes = crate::codec::json::encode_event(event).len();
                    if json_bytes > LINE_BYTES_MAX {
                        return Err(line_too_long(json_bytes));
                    }
                }
            }
        }
        self.write_scratch()
    }

    /// Writes one raw input line as it is (JSON: the bytes and a newline; binary: a
    /// [`crate::codec::binary::BinaryRecord::Raw`] frame). A line containing a newline
    /// (it would be two lines in a JSON file) or longer than [`LINE_BYTES_MAX`] is refused
    /// with `InvalidInput` in both formats.
    pub fn write_raw(&mut self, raw_json_line: &[u8]) -> io::Result<()> {
        if raw_json_line.contains(&b'\n') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a raw input line must not contain a newline",
            ));
        }
        if raw_json_line.len() > LINE_BYTES_MAX {
            return Err(line_too_long(raw_json_line.len()));
        }
        self.scratch.clear();
        match self.format {
            Format::Json => {
                self.scratch.extend_from_slice(raw_json_line);
                self.scratch.push(b'\n');
            }
            Format::Binary => {
                frame_raw(raw_json_line, &mut self.scratch).map_err(invalid_input)?;
            }
        }
        self.write_scratch()
    }

    fn write_scratch(&mut self) -> io::Result<()> {
        self.out.write_all(&self.scratch)?;
        self.bytes_written += self.scratch.len() as u64;
        Ok(())
    }

    /// Flushes and closes the file; returns the bytes written.
    pub fn finish(self) -> io::Result<u64> {
        // Flushing is enough: the generator's files need no fsync to be read back.
        self.out.into_inner().map_err(|error| error.into_error())?;
        Ok(self.bytes_written)
    }
}

fn line_too_long(bytes: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("a line of {bytes} bytes exceeds the limit of {LINE_BYTES_MAX} bytes"),
    )
}

fn invalid_input(error: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, error)
}
