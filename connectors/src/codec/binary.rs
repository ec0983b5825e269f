//! The compact binary format for bulk input and benchmarks (INTERFACE.md: "a compact
//! binary encoding (bincode) of the same events").
//!
//! A binary partition file is [`MAGIC`] followed by frames. A frame is a `u32`
//! little-endian payload length, then the payload: one [`BinaryRecord`] encoded with
//! bincode 2.0.1 (serde, standard configuration). In: an [`Event`] or a raw input line →
//! [`encode_record`]; frames → [`BinaryReader`] → [`Decoded`], in frame order.
//!
//! Records are encoded through private mirror types rather than `Event`'s own serde derive:
//! `rust_decimal`'s `Deserialize` needs `deserialize_any`, which bincode cannot serve, and a
//! mirror also keeps the format fixed when `Event` gains a derive or a field. A decimal is
//! its `(mantissa, scale)`, a timestamp its milliseconds, a date its days since 0001-01-01.
//! The variant order of the mirror enums is part of the format: changing it needs a new
//! [`MAGIC`] version byte.
//!
//! A [`BinaryRecord::Raw`] keeps input that is not a well-formed event as its original JSON
//! bytes, so bad input travels in binary files too and refuses exactly as it would from a
//! JSON file. A decoded event passes the same structural checks as a JSON one.
//!
//! Robustness: a frame whose payload does not decode becomes one `MALFORMED` record (raw =
//! hex) and reading continues with the next frame; a frame longer than [`FRAME_BYTES_MAX`]
//! is skipped the same way; a stream that ends inside a frame yields one `MALFORMED` record
//! and ends. Memory per reader is bounded by one frame.

use super::json::decode_event;
use super::{check_structure, malformed, DecodeError, Decoded, RawInput, Readable};
use crate::file::LINE_BYTES_MAX;
use chrono::{Datelike, NaiveDate};
use markledger_operators::event::{Body, DecimalField, Kind};
use markledger_operators::{Event, Ts};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::io::{self, Read};

/// The first bytes of a binary partition file; format detection looks at them. The last
/// byte is the format version.
pub const MAGIC: &[u8; 8] = b"MLEDGER\x01";

/// Bytes in a frame's length prefix.
pub const FRAME_LENGTH_BYTES: usize = 4;

/// The largest frame payload a reader accepts: a raw record of the longest JSON line a
/// JSON reader accepts, plus the record's own header. Larger frames are skipped as
/// `MALFORMED`, so no declared length makes a reader allocate more than this.
pub const FRAME_BYTES_MAX: usize = LINE_BYTES_MAX + 64;

/// A reader keeps a frame buffer that grew past this only while it needs it.
const FRAME_BUFFER_KEPT_BYTES: usize = 1 << 20;

/// One record of a binary partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BinaryRecord {
    /// A well-formed event.
    Event(Event),
    /// An input that is not a well-formed event, kept as its original JSON bytes; on read
    /// it is decoded with [`decode_event`].
    Raw(Vec<u8>),
}

/// Appends one frame (`u32` LE length + bincode of the record) to `out`.
///
/// Writes nothing for a record that cannot be framed (a payload over [`FRAME_BYTES_MAX`],
/// which no reader would accept); [`crate::file::PartitionWriter`] reports that case as an
/// error.
pub fn encode_record(record: &BinaryRecord, out: &mut Vec<u8>) {
    // The only failure leaves `out` untouched, as documented.
    let _ = frame_record(record, out);
}

/// Why a record could not be framed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    /// bincode refused the record.
    #[error("cannot encode record: {0}")]
    Encode(String),
    /// The payload does not fit the length prefix or the readers' bound.
    #[error("record of {0} bytes exceeds the frame limit of {FRAME_BYTES_MAX} bytes")]
    TooLong(usize),
}

/// Appends one event frame to `out` (see [`frame_wire`]).
pub(crate) fn frame_event(event: &Event, out: &mut Vec<u8>) -> Result<usize, FrameError> {
    frame_wire(&WireRecord::Event(WireEvent::from(event)), out)
}

/// Appends one raw-record frame to `out` (see [`frame_wire`]).
pub(crate) fn frame_raw(bytes: &[u8], out: &mut Vec<u8>) -> Result<usize, FrameError> {
    frame_wire(&WireRecord::Raw(Cow::Borrowed(bytes)), out)
}

fn frame_record(record: &BinaryRecord, out: &mut Vec<u8>) -> Result<usize, FrameError> {
    match record {
        BinaryRecord::Event(event) => frame_event(event, out),
        BinaryRecord::Raw(bytes) => frame_raw(bytes, out),
    }
}

/// Appends one frame to `out` and returns its length including the prefix; on error `out`
/// is left as it was. Frames longer than [`FRAME_BYTES_MAX`] are refused, since no reader
/// would accept them.
fn frame_wire(wire: &WireRecord<'_>, out: &mut Vec<u8>) -> Result<usize, FrameError> {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_LENGTH_BYTES]);
    if let Err(error) = bincode::serde::encode_into_std_write(wire, out, bincode::config::standard()) {
        out.truncate(start);
        return Err(FrameError::Encode(error.to_string()));
    }
    let payload_bytes = out.len() - start - FRAME_LENGTH_BYTES;
    let length = match u32::try_from(payload_bytes) {
        Ok(length) if payload_bytes <= FRAME_BYTES_MAX => length,
        _ => {
            out.truncate(start);
            return Err(FrameError::TooLong(payload_bytes));
        }
    };
    out[start..start + FRAME_LENGTH_BYTES].copy_from_slice(&length.to_le_bytes());
    Ok(FRAME_LENGTH_BYTES + payload_bytes)
}

/// The bincode of the event alone (no frame, no record tag): a deterministic byte string
/// engines use to break ties between events with the same id.
pub fn canonical_bytes(event: &Event) -> Vec<u8> {
    // Encoding into a Vec fails only for types bincode cannot describe, which the mirror
    // types are not; an empty result would still be deterministic.
    bincode::serde::encode_to_vec(WireEvent::from(event), bincode::config::standard()).unwrap_or_default()
}

/// Decodes one frame payload (without its length prefix). A payload that does not decode,
/// or has bytes after its record, is `MALFORMED` with the payload as hex; a raw record is
/// decoded with [`decode_event`] (a blank one is refused as empty; [`BinaryReader`] skips
/// it, as JSON readers skip blank lines).
pub fn decode_frame(payload: &[u8]) -> Decoded {
    match decode_payload(payload) {
        Payload::Decoded(decoded) => decoded,
        Payload::Blank(bytes) => decode_event(&bytes),
    }
}

enum Payload {
    Decoded(Decoded),
    /// A raw record holding nothing but whitespace.
    Blank(Vec<u8>),
}

fn decode_payload(payload: &[u8]) -> Payload {
    let raw = RawInput::Binary(payload);
    let config = bincode::config::standard().with_limit::<FRAME_BYTES_MAX>();
    let (record, used): (WireRecord<'static>, usize) = match bincode::serde::decode_from_slice(payload, config) {
        Ok(decoded) => decoded,
        Err(error) => {
            let error = DecodeError::BrokenFrame(error.to_string());
            return Payload::Decoded(malformed(Readable::default(), error, raw));
        }
    };
    if used != payload.len() {
        let error = DecodeError::TrailingBytes(payload.len() - used);
        return Payload::Decoded(malformed(Readable::default(), error, raw));
    }
    let wire = match record {
        WireRecord::Raw(bytes) => {
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Payload::Blank(bytes.into_owned());
            }
            return Payload::Decoded(decode_event(&bytes));
        }
        WireRecord::Event(wire) => wire,
    };
    let WireEvent { id, ts, account, body } = wire;
    let kind = body.kind();
    let body = match body.into_body() {
        Ok(body) => body,
        Err(error) => {
            let readable = Readable {
                id: Some(&id),
                event_type: Some(kind.as_str()),
                account: Some(&account),
            };
            return Payload::Decoded(malformed(readable, error, raw));
        }
    };
    let event = Event {
        id: id.into_owned(),
        ts: Ts(ts),
        account: account.into_owned(),
        body,
    };
    Payload::Decoded(match check_structure(&event) {
        Ok(()) => Decoded::Event(event),
        Err(error) => malformed(Readable::of_event(&event), error, raw),
    })
}

/// Reads frames from a byte stream positioned just after [`MAGIC`] and yields one
/// [`Decoded`] per frame, in order (blank raw records are skipped). Give it a buffered
/// reader: it reads each frame's prefix and payload separately.
///
/// An I/O error ends the iteration; it is kept for [`BinaryReader::io_error`].
#[derive(Debug)]
pub struct BinaryReader<R: Read> {
    reader: R,
    frame: Vec<u8>,
    bytes_read: u64,
    done: bool,
    error: Option<io::Error>,
}

impl<R: Read> BinaryReader<R> {
    /// A reader of the frames in `reader`.
    pub fn new(reader: R) -> Self {
        BinaryReader {
            reader,
            frame: Vec::new(),
            bytes_read: 0,
            done: false,
            error: None,
        }
    }

    /// Bytes consumed from the stream so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// The I/O error that ended the iteration, if one did.
    pub fn io_error(&self) -> Option<&io::Error> {
        self.error.as_ref()
    }

    /// The underlying reader.
    pub fn into_inner(self) -> R {
        self.reader
    }

    fn fail(&mut self, error: io::Error) -> Option<Decoded> {
        self.error = Some(error);
        self.done = true;
        None
    }

    fn truncated(&mut self, error: DecodeError, kept: &[u8]) -> Option<Decoded> {
        self.done = true;
        Some(malformed(Readable::default(), error, RawInput::Binary(kept)))
    }
}

impl<R: Read> Iterator for BinaryReader<R> {
    type Item = Decoded;

    fn next(&mut self) -> Option<Decoded> {
        loop {
            if self.done {
                return None;
            }
            let mut prefix = [0; FRAME_LENGTH_BYTES];
            let got = match read_full(&mut self.reader, &mut prefix) {
                Ok(got) => got,
                Err(error) => return self.fail(error),
            };
            self.bytes_read += got as u64;
            if got == 0 {
                self.done = true;
                return None;
            }
            if got < FRAME_LENGTH_BYTES {
                let error = DecodeError::TruncatedFrame(format!("{got} of {FRAME_LENGTH_BYTES} length bytes"));
                return self.truncated(error, &prefix[..got]);
            }
            let length = u64::from(u32::from_le_bytes(prefix));
            if length > FRAME_BYTES_MAX as u64 {
                // Skip the payload without holding it; what follows is the next frame.
                let skipped = match io::copy(&mut (&mut self.reader).take(length), &mut io::sink()) {
                    Ok(skipped) => skipped,
                    Err(error) => return self.fail(error),
                };
                self.bytes_read += skipped;
                if skipped < length {
                    let error = DecodeError::TruncatedFrame(format!("{skipped} of {length} payload bytes"));
                    return self.truncated(error, &prefix);
                }
                let error = DecodeError::FrameTooLong(length, FRAME_BYTES_MAX);
                return Some(malformed(Readable::default(), error, RawInput::Binary(&prefix)));
            }
            self.frame.clear();
            if self.frame.capacity() > FRAME_BUFFER_KEPT_BYTES {
                self.frame.shrink_to(FRAME_BUFFER_KEPT_BYTES);
            }
            let got = match (&mut self.reader).take(length).read_to_end(&mut self.frame) {
                Ok(got) => got as u64,
                Err(error) => return self.fail(error),
            };
            self.bytes_read += got;
            if got < length {
                let error = DecodeError::TruncatedFrame(format!("{got} of {length} payload bytes"));
                let kept = std::mem::take(&mut self.frame);
                return self.truncated(error, &kept);
            }
            match decode_payload(&self.frame) {
                Payload::Decoded(decoded) => return Some(decoded),
                Payload::Blank(_) => continue,
            }
        }
    }
}

/// Reads until `buffer` is full or the stream ends; returns the bytes read.
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

// ---------------------------------------------------------------------------------------
// The format: mirror types. Borrowed when encoding, owned when decoding.

#[derive(Serialize, Deserialize)]
enum WireRecord<'a> {
    Event(WireEvent<'a>),
    Raw(#[serde(with = "raw_bytes")] Cow<'a, [u8]>),
}

#[derive(Serialize, Deserialize)]
struct WireEvent<'a> {
    id: Cow<'a, str>,
    /// Milliseconds since the Unix epoch.
    ts: i64,
    account: Cow<'a, str>,
    body: WireBody<'a>,
}

#[derive(Serialize, Deserialize)]
enum WireBody<'a> {
    Order {
        order: Cow<'a, str>,
        gtin: Cow<'a, str>,
        quantity: u64,
    },
    OrderCancel {
        order: Cow<'a, str>,
    },
    Emission {
        order: Cow<'a, str>,
        gtin: Cow<'a, str>,
        codes: Cow<'a, [String]>,
    },
    Application {
        report: Cow<'a, str>,
        codes: Cow<'a, [String]>,
    },
    Dropout {
        codes: Cow<'a, [String]>,
        reason: Cow<'a, str>,
    },
    Defect {
        codes: Cow<'a, [String]>,
        /// Days since 0001-01-01 (that day is 1).
        act_date: i32,
    },
    Introduction {
        codes: Cow<'a, [String]>,
    },
    Payment {
        amount: WireDecimal<'a>,
        channel: Cow<'a, str>,
    },
    Compensation {
        amount: WireDecimal<'a>,
        reason: Cow<'a, str>,
    },
    Refund {
        amount: WireDecimal<'a>,
    },
    Tariff {
        /// Milliseconds since the Unix epoch.
        effective_from: i64,
        net_price: WireDecimal<'a>,
        vat_rate: WireDecimal<'a>,
    },
}

#[derive(Serialize, Deserialize)]
enum WireDecimal<'a> {
    Parsed { mantissa: i128, scale: u32 },
    Invalid(Cow<'a, str>),
}

impl<'a> From<&'a Event> for WireEvent<'a> {
    fn from(event: &'a Event) -> Self {
        WireEvent {
            id: Cow::Borrowed(&event.id),
            ts: event.ts.0,
            account: Cow::Borrowed(&event.account),
            body: WireBody::from(&event.body),
        }
    }
}

impl<'a> From<&'a Body> for WireBody<'a> {
    fn from(body: &'a Body) -> Self {
        let text = |text: &'a String| Cow::Borrowed(text.as_str());
        let codes = |codes: &'a Vec<String>| Cow::Borrowed(codes.as_slice());
        match body {
            Body::Order { order, gtin, quantity } => WireBody::Order {
                order: text(order),
                gtin: text(gtin),
                quantity: *quantity,
            },
            Body::OrderCancel { order } => WireBody::OrderCancel { order: text(order) },
            Body::Emission {
                order,
                gtin,
                codes: list,
            } => WireBody::Emission {
                order: text(order),
                gtin: text(gtin),
                codes: codes(list),
            },
            Body::Application { report, codes: list } => WireBody::Application {
                report: text(report),
                codes: codes(list),
            },
            Body::Dropout { codes: list, reason } => WireBody::Dropout {
                codes: codes(list),
                reason: text(reason),
            },
            Body::Defect { codes: list, act_date } => WireBody::Defect {
                codes: codes(list),
                act_date: act_date.num_days_from_ce(),
            },
            Body::Introduction { codes: list } => WireBody::Introduction { codes: codes(list) },
            Body::Payment { amount, channel } => WireBody::Payment {
                amount: WireDecimal::from(amount),
                channel: text(channel),
            },
            Body::Compensation { amount, reason } => WireBody::Compensation {
                amount: WireDecimal::from(amount),
                reason: text(reason),
            },
            Body::Refund { amount } => WireBody::Refund {
                amount: WireDecimal::from(amount),
            },
            Body::Tariff {
                effective_from,
                net_price,
                vat_rate,
            } => WireBody::Tariff {
                effective_from: effective_from.0,
                net_price: WireDecimal::from(net_price),
                vat_rate: WireDecimal::from(vat_rate),
            },
        }
    }
}

impl<'a> From<&'a DecimalField> for WireDecimal<'a> {
    fn from(field: &'a DecimalField) -> Self {
        match field {
            DecimalField::Parsed(value) => WireDecimal::Parsed {
                mantissa: value.mantissa(),
                scale: value.scale(),
            },
            DecimalField::Invalid(text) => WireDecimal::Invalid(Cow::Borrowed(text)),
        }
    }
}

impl WireDecimal<'_> {
    fn into_field(self, name: &'static str) -> Result<DecimalField, DecodeError> {
        match self {
            WireDecimal::Parsed { mantissa, scale } => Decimal::try_from_i128_with_scale(mantissa, scale)
                .map(DecimalField::Parsed)
                .map_err(|_| DecodeError::BadDecimal(name)),
            WireDecimal::Invalid(text) => Ok(DecimalField::Invalid(text.into_owned())),
        }
    }
}

impl WireBody<'_> {
    fn kind(&self) -> Kind {
        match self {
            WireBody::Order { .. } => Kind::Order,
            WireBody::OrderCancel { .. } => Kind::OrderCancel,
            WireBody::Emission { .. } => Kind::Emission,
            WireBody::Application { .. } => Kind::Application,
            WireBody::Dropout { .. } => Kind::Dropout,
            WireBody::Defect { .. } => Kind::Defect,
            WireBody::Introduction { .. } => Kind::Introduction,
            WireBody::Payment { .. } => Kind::Payment,
            WireBody::Compensation { .. } => Kind::Compensation,
            WireBody::Refund { .. } => Kind::Refund,
            WireBody::Tariff { .. } => Kind::Tariff,
        }
    }

    fn into_body(self) -> Result<Body, DecodeError> {
        Ok(match self {
            WireBody::Order { order, gtin, quantity } => Body::Order {
                order: order.into_owned(),
                gtin: gtin.into_owned(),
                quantity,
            },
            WireBody::OrderCancel { order } => Body::OrderCancel {
                order: order.into_owned(),
            },
            WireBody::Emission { order, gtin, codes } => Body::Emission {
                order: order.into_owned(),
                gtin: gtin.into_owned(),
                codes: codes.into_owned(),
            },
            WireBody::Application { report, codes } => Body::Application {
                report: report.into_owned(),
                codes: codes.into_owned(),
            },
            WireBody::Dropout { codes, reason } => Body::Dropout {
                codes: codes.into_owned(),
                reason: reason.into_owned(),
            },
            WireBody::Defect { codes, act_date } => Body::Defect {
                act_date: NaiveDate::from_num_days_from_ce_opt(act_date)
                    .ok_or_else(|| DecodeError::BadActDate(format!("day {act_date}")))?,
                codes: codes.into_owned(),
            },
            WireBody::Introduction { codes } => Body::Introduction {
                codes: codes.into_owned(),
            },
            WireBody::Payment { amount, channel } => Body::Payment {
                amount: amount.into_field("amount")?,
                channel: channel.into_owned(),
            },
            WireBody::Compensation { amount, reason } => Body::Compensation {
                amount: amount.into_field("amount")?,
                reason: reason.into_owned(),
            },
            WireBody::Refund { amount } => Body::Refund {
                amount: amount.into_field("amount")?,
            },
            WireBody::Tariff {
                effective_from,
                net_price,
                vat_rate,
            } => Body::Tariff {
                effective_from: Ts(effective_from),
                net_price: net_price.into_field("net_price")?,
                vat_rate: vat_rate.into_field("vat_rate")?,
            },
        })
    }
}

/// Raw input bytes as one bincode byte string (length + bytes) rather than a sequence of
/// `u8` elements.
mod raw_bytes {
    use serde::de::{self, Deserializer, Visitor};
    use serde::Serializer;
    use std::borrow::Cow;
    use std::fmt;

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    pub(super) fn deserialize<'de, 'a, D: Deserializer<'de>>(deserializer: D) -> Result<Cow<'a, [u8]>, D::Error> {
        struct BytesVisitor;
        impl Visitor<'_> for BytesVisitor {
            type Value = Vec<u8>;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a byte string")
            }
            fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
                Ok(bytes.to_vec())
            }
            fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(bytes)
            }
        }
        deserializer.deserialize_byte_buf(BytesVisitor).map(Cow::Owned)
    }
}

#[cfg(test)]
mod tests;
