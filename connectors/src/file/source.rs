//! Input partition files: paths in, [`Decoded`] records out, one file = one partition.
//!
//! [`list_partitions`] expands command-line paths into partition files. A
//! [`PartitionReader`] opens one on its first read, detects its format from its first bytes
//! ([`detect_format`]: a binary header → binary, else JSON lines) and yields its records in
//! file order, so a partition's high-water mark sees them in the order they were written.
//!
//! Memory and descriptors per reader are bounded, so a run over thousands of partitions
//! holds little for each: nothing before its first read; while reading, a read buffer of at
//! most [`READ_BUFFER_BYTES`] (no more than the file's size), grown only while one record
//! needs it — a JSON line up to [`LINE_BYTES_MAX`] (a longer line becomes one `MALFORMED`
//! record carrying the `id`, `type` and `account` read from its first bytes, and is skipped
//! to its newline) or a binary frame; the file descriptor only until the file's end has
//! been read, and no buffer once every record is out.
//! [`PartitionWriter`] is the generator's side: events or raw bad lines into a file in
//! either format.

use super::Format;
use crate::codec::binary::{
    frame_event, frame_header_length, frame_raw, BinaryReader, Version, FRAME_BYTES_MAX, FRAME_HEADER_BYTES, MAGIC,
};
use crate::codec::json::{decode_event, encode_event_into, read_heading};
use crate::codec::{malformed, DecodeError, Decoded, RawInput, Readable};
use crate::window::Window;
use markledger_operators::output::RAW_BYTES_MAX;
use markledger_operators::Event;
use std::fs::{self, File};
use std::io::{self, BufWriter, Chain, Cursor, Read, Write};
use std::path::{Path, PathBuf};

/// The longest JSON input line accepted, without its newline: 64 MiB.
///
/// Why 64 MiB: an emission of 200,000 codes, a realistic batch, is a line of ~20 MB, and
/// the limit should hold a few times that. A reader holds at most one line at a time (and
/// only while that line is read: its buffer shrinks back after), so the cost is 64 MiB per
/// partition that is in the middle of such a line, next to the ~2.5× that size its decoded
/// event takes in the engine anyway. Larger lines are refused one by one as `MALFORMED`
/// with their `id`, never stopping the run.
pub const LINE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// How far a reader reads ahead of the record it decodes (its buffer between long
/// records); a smaller file gets a buffer of its own size.
pub const READ_BUFFER_BYTES: usize = 64 * 1024;

/// How many first bytes of a line over [`LINE_BYTES_MAX`] are searched for its `id`, `type`
/// and `account`: writers put them first (INTERFACE.md's example does), and a bounded scan
/// keeps a refused line cheap.
pub const LINE_HEADING_SCAN_BYTES: usize = 64 * 1024;

/// The write buffer of one partition writer.
const WRITE_BUFFER_BYTES: usize = 256 * 1024;

/// The file a directory of partitions may carry to describe them; it is not a partition.
pub const MANIFEST_FILE_NAME: &str = "manifest.json";

/// More than the keys, punctuation, timestamps and decimals of any event's JSON line add
/// over its binary frame.
const JSON_KEYS_BYTES_MAX: usize = 1024;

/// The UTF-8 byte order mark some editors put at the start of a text file.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Bytes format detection reads: a binary header and a version-2 frame header.
pub const DETECT_BYTES: usize = MAGIC.len() + FRAME_HEADER_BYTES;

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
    #[error("cannot read input path {}: {cause}", .path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause, printed in this error's text; not also its `source()`, so a report
        /// that prints the chain (`{:#}`) names the OS error once.
        cause: io::Error,
    },
}

impl SourceError {
    fn io(path: &Path, cause: io::Error) -> Self {
        if cause.kind() == io::ErrorKind::NotFound {
            SourceError::Missing {
                path: path.to_path_buf(),
            }
        } else {
            SourceError::Io {
                path: path.to_path_buf(),
                cause,
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

/// What a partition file's first bytes say it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detected {
    /// JSON lines, after `skip` bytes (a UTF-8 byte order mark, or nothing).
    Json {
        /// Bytes before the first line.
        skip: usize,
    },
    /// The binary format, after its 8-byte header.
    Binary {
        /// The format version.
        version: Version,
        /// True when the header is damaged but a valid version-2 frame follows it.
        damaged_header: bool,
    },
}

impl Detected {
    /// The format.
    pub fn format(self) -> Format {
        match self {
            Detected::Json { .. } => Format::Json,
            Detected::Binary { .. } => Format::Binary,
        }
    }
}

/// Detects a partition file's format from its first [`DETECT_BYTES`] bytes (fewer when the
/// file is shorter). A version-2 frame header that verifies right after the 8-byte file
/// header means binary version 2 whatever those 8 bytes say, so a flipped byte in them
/// (even in the version byte) loses nothing; else a version-1 or version-2 header means
/// binary; anything else is JSON lines (after a byte order mark, if any).
pub fn detect_format(header: &[u8]) -> Detected {
    let magic = MAGIC.len();
    if header.len() >= DETECT_BYTES && frame_header_length(&header[magic..]).is_some() {
        return Detected::Binary {
            version: Version::V2,
            damaged_header: &header[..magic] != MAGIC,
        };
    }
    if let Some(version) = Version::of_magic(header) {
        return Detected::Binary {
            version,
            damaged_header: false,
        };
    }
    let skip = if header.starts_with(UTF8_BOM) {
        UTF8_BOM.len()
    } else {
        0
    };
    Detected::Json { skip }
}

/// The bytes a reader reads: the header bytes format detection already took, then the
/// rest of the file.
type Input = Chain<Cursor<Vec<u8>>, File>;

/// Reads one partition file: opens it at the first read, detects its format and iterates
/// its records in file order as [`Decoded`]. Blank lines (only whitespace) are skipped, not
/// rejected; a UTF-8 byte order mark at the start of a JSON file is skipped. A damaged
/// binary header followed by a valid frame is one `MALFORMED` record, then the frames.
///
/// An I/O error while reading ends the iteration; check [`PartitionReader::io_error`]
/// afterwards.
#[derive(Debug)]
pub struct PartitionReader {
    path: PathBuf,
    records: Records,
    /// Bytes of the file before the records (the header, a byte order mark).
    header_bytes: u64,
    /// A record due before the others (a damaged header's).
    pending: Option<Decoded>,
}

#[derive(Debug)]
enum Records {
    /// Not opened yet.
    Unopened,
    Json(JsonLines<Input>),
    Binary(BinaryReader<Input>),
    /// Opening at the first read failed.
    Failed(io::Error),
}

impl PartitionReader {
    /// Checks that `path` is a readable file; the file is opened again, and held, only
    /// from the first read on (so thousands of readers hold no descriptors until used).
    pub fn open(path: &Path) -> Result<Self, SourceError> {
        let io_error = |error| SourceError::io(path, error);
        let metadata = fs::metadata(path).map_err(io_error)?;
        if metadata.is_dir() {
            return Err(SourceError::IsDirectory {
                path: path.to_path_buf(),
            });
        }
        drop(File::open(path).map_err(io_error)?);
        Ok(PartitionReader {
            path: path.to_path_buf(),
            records: Records::Unopened,
            header_bytes: 0,
            pending: None,
        })
    }

    /// Opens the file, detects its format and sets up its records.
    fn start(&mut self) {
        self.records = match self.start_records() {
            Ok(records) => records,
            Err(error) => Records::Failed(error),
        };
    }

    fn start_records(&mut self) -> io::Result<Records> {
        let mut file = File::open(&self.path)?;
        let size = file.metadata()?.len();
        let mut header = vec![0; DETECT_BYTES];
        let got = read_full(&mut file, &mut header)?;
        header.truncate(got);
        let detected = detect_format(&header);
        let skip = match detected {
            Detected::Json { skip } => skip,
            Detected::Binary { .. } => MAGIC.len(),
        };
        if let Detected::Binary {
            damaged_header: true, ..
        } = detected
        {
            let raw = RawInput::Binary(&header[..skip]);
            self.pending = Some(malformed(Readable::default(), DecodeError::DamagedHeader, raw));
        }
        self.header_bytes = skip as u64;
        let rest = header.split_off(skip);
        let input = Cursor::new(rest).chain(file);
        let expected = size.saturating_sub(skip as u64);
        Ok(match detected {
            Detected::Json { .. } => {
                let window = Window::new(input, READ_BUFFER_BYTES, LINE_BYTES_MAX + 1).with_size_hint(expected);
                Records::Json(JsonLines::new(window))
            }
            Detected::Binary { version, .. } => {
                let limit = FRAME_HEADER_BYTES + FRAME_BYTES_MAX;
                let window = Window::new(input, READ_BUFFER_BYTES, limit).with_size_hint(expected);
                Records::Binary(BinaryReader::over(window, version))
            }
        })
    }

    /// The detected format (`None` until the first read, or when the file could not be
    /// opened then).
    pub fn format(&self) -> Option<Format> {
        match &self.records {
            Records::Json(_) => Some(Format::Json),
            Records::Binary(_) => Some(Format::Binary),
            Records::Unopened | Records::Failed(_) => None,
        }
    }

    /// The partition file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes of the file consumed so far (for progress reports).
    pub fn bytes_read(&self) -> u64 {
        self.header_bytes
            + match &self.records {
                Records::Json(lines) => lines.input.consumed(),
                Records::Binary(frames) => frames.bytes_read(),
                Records::Unopened | Records::Failed(_) => 0,
            }
    }

    /// The I/O error that ended the iteration early, if one did.
    pub fn io_error(&self) -> Option<&io::Error> {
        match &self.records {
            Records::Json(lines) => lines.input.error(),
            Records::Binary(frames) => frames.io_error(),
            Records::Failed(error) => Some(error),
            Records::Unopened => None,
        }
    }

    /// Bytes allocated for reading now: 0 before the first read and after the last record;
    /// in between at most [`READ_BUFFER_BYTES`] (and no more than the file's size), except
    /// while one line or frame longer than that is read.
    pub fn buffer_capacity(&self) -> usize {
        match &self.records {
            Records::Json(lines) => lines.input.capacity(),
            Records::Binary(frames) => frames.buffer_capacity(),
            Records::Unopened | Records::Failed(_) => 0,
        }
    }

    /// True while the file is open: from the first read until its end has been read.
    pub fn holds_file(&self) -> bool {
        match &self.records {
            Records::Json(lines) => lines.input.holds_reader(),
            Records::Binary(frames) => frames.holds_reader(),
            Records::Unopened | Records::Failed(_) => false,
        }
    }
}

impl Iterator for PartitionReader {
    type Item = Decoded;

    fn next(&mut self) -> Option<Decoded> {
        if let Records::Unopened = self.records {
            self.start();
        }
        if let Some(pending) = self.pending.take() {
            return Some(pending);
        }
        match &mut self.records {
            Records::Json(lines) => lines.next(),
            Records::Binary(frames) => frames.next(),
            Records::Unopened | Records::Failed(_) => None,
        }
    }
}

/// JSON lines with bounded memory: a line is decoded where it lies in the read window,
/// which grows up to [`LINE_BYTES_MAX`] + 1 bytes for a long line and shrinks back after.
#[derive(Debug)]
struct JsonLines<R> {
    input: Window<R>,
    /// Bytes of the window's start already searched for a newline.
    scanned: usize,
    done: bool,
}

impl<R: Read> JsonLines<R> {
    fn new(input: Window<R>) -> Self {
        JsonLines {
            input,
            scanned: 0,
            done: false,
        }
    }

    fn next(&mut self) -> Option<Decoded> {
        loop {
            if self.done {
                return None;
            }
            let available = self.input.available();
            if let Some(at) = available[self.scanned..].iter().position(|&byte| byte == b'\n') {
                let end = self.scanned + at;
                let decoded = decode_line(&available[..end]);
                self.input.consume(end + 1);
                self.scanned = 0;
                if end > READ_BUFFER_BYTES {
                    self.input.shrink();
                }
                if decoded.is_some() {
                    return decoded;
                }
                continue;
            }
            self.scanned = available.len();
            if self.scanned > LINE_BYTES_MAX {
                return Some(self.skip_long_line());
            }
            if self.input.at_end() {
                // End of file: a last line without a newline still counts (not after an
                // I/O error, which may have cut it).
                self.done = true;
                if self.input.error().is_some() {
                    return None;
                }
                let decoded = decode_line(available);
                let all = available.len();
                self.input.consume(all);
                return decoded;
            }
            self.input.grow();
        }
    }

    /// Refuses the line at the window's start, which is longer than [`LINE_BYTES_MAX`]:
    /// reads its heading from its first bytes, keeps its first bytes for `raw`, and skips
    /// it to its newline without holding more of it.
    fn skip_long_line(&mut self) -> Decoded {
        let available = self.input.available();
        let heading = read_heading(&available[..available.len().min(LINE_HEADING_SCAN_BYTES)]);
        // A little more than the raw bound, so the cut can land on a char boundary.
        let kept = available[..available.len().min(RAW_BYTES_MAX + 4)].to_vec();
        let mut bytes = available.len() as u64;
        let all = available.len();
        self.input.consume(all);
        self.scanned = 0;
        while self.input.fill_to(1) {
            let available = self.input.available();
            match available.iter().position(|&byte| byte == b'\n') {
                Some(at) => {
                    bytes += at as u64;
                    self.input.consume(at + 1);
                    break;
                }
                None => {
                    bytes += available.len() as u64;
                    let all = available.len();
                    self.input.consume(all);
                }
            }
        }
        self.input.shrink();
        let error = DecodeError::LineTooLong(bytes, LINE_BYTES_MAX);
        malformed(heading.readable(), error, RawInput::Text(&kept))
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
