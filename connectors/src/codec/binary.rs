//! The compact binary format for bulk input and benchmarks (INTERFACE.md: "a compact
//! binary encoding (bincode) of the same events").
//!
//! A binary partition file is an 8-byte header, [`MAGIC`] (`MLEDGER` and a version byte),
//! followed by frames. Each frame carries one [`BinaryRecord`] encoded with bincode 2.0.1
//! (serde, standard configuration) as its payload. In: an [`Event`] or a raw input line →
//! [`encode_record`]; frames → [`BinaryReader`] → [`Decoded`], in frame order.
//!
//! **Version 2** (written since issue 15) frames every payload so that damage is detected
//! and reading resynchronises after it ([`FRAME_HEADER_BYTES`] bytes, little-endian):
//!
//! ```text
//! offset 0   marker        4 bytes   FRAME_MARKER = FF 4D 4C FE  ("ML" between two bytes UTF-8 never uses)
//! offset 4   length        u32       payload bytes, at most FRAME_BYTES_MAX
//! offset 8   header check  u32       low 32 bits of xxh3-64(length bytes)
//! offset 12  checksum      u64       xxh3-64 of the payload, seeded with (version << 32 | length)
//! offset 20  payload       length bytes: the bincode record, each 0xFF byte written FF 00
//! ```
//!
//! A frame is accepted only when its marker, header check, length bound and checksum all
//! hold, so a flipped byte anywhere in it is refused, never read as another value (the
//! chance that damage passes a 64-bit checksum is 2^-64). After a position that holds no
//! valid frame the reader scans forward for the next marker whose frame verifies, and
//! reports the bytes it skipped as ONE `MALFORMED` record (raw = their first bytes in hex),
//! then goes on with the good frames after them. Escaping 0xFF in payloads means the marker
//! never occurs inside one, so the scan cannot land inside a payload and read a frame
//! embedded in it (a raw bad line may hold any bytes, a whole frame included). The header
//! check lets the scan refuse a damaged length, or a marker that occurs by chance among
//! header bytes, from 20 bytes, without reading the (up to 64 MiB) payload it would
//! declare. The version in the checksum's seed keeps a future version's frames from
//! verifying as version 2 ones.
//!
//! **Version 1** files (`MLEDGER\x01`: a `u32` length, then the payload, no checksum) are
//! still read as before: a payload that does not decode is one `MALFORMED` record and reading
//! goes on; a length over [`FRAME_BYTES_MAX`] is skipped the same way; the end of the input
//! inside a frame is one `MALFORMED` record and the end. (A damaged length there loses the
//! rest of the file: version 1 has nothing to resynchronise on.)
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
//! Memory per reader is bounded by one frame: no declared length makes it hold more than
//! [`FRAME_HEADER_BYTES`] + [`FRAME_BYTES_MAX`] bytes.

mod reader;

pub use reader::BinaryReader;

use super::json::decode_event;
use super::{check_structure, describe_bincode_error, malformed, DecodeError, Decoded, RawInput, Readable};
use crate::file::LINE_BYTES_MAX;
use chrono::{Datelike, NaiveDate};
use markledger_operators::event::{Body, DecimalField, Kind};
use markledger_operators::{Event, Ts};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// The header of a binary partition file in the version this build writes (2); format
/// detection looks at it. The last byte is the format version.
pub const MAGIC: &[u8; 8] = b"MLEDGER\x02";

/// The header of a version-1 binary partition file (length-prefixed frames without
/// checksums), still read.
pub const MAGIC_V1: &[u8; 8] = b"MLEDGER\x01";

/// A binary format version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Version {
    /// `u32` length + payload, no checksum (read only).
    V1,
    /// Marker, length, header check, checksum, payload (written and read).
    V2,
}

impl Version {
    /// The version a file header names, if it is one this build reads.
    pub fn of_magic(header: &[u8]) -> Option<Version> {
        if header.starts_with(MAGIC) {
            Some(Version::V2)
        } else if header.starts_with(MAGIC_V1) {
            Some(Version::V1)
        } else {
            None
        }
    }
}

/// The first bytes of every version-2 frame. 0xFF and 0xFE never occur in UTF-8, so the
/// marker never occurs in a JSON line; inside a bincode payload it is rare, and the header
/// check refuses it where it does.
pub const FRAME_MARKER: [u8; 4] = [0xFF, b'M', b'L', 0xFE];

/// Bytes of a version-2 frame before its payload.
pub const FRAME_HEADER_BYTES: usize = 20;

/// Bytes in a frame's length field (a version-1 frame's whole prefix).
pub const FRAME_LENGTH_BYTES: usize = 4;

/// The largest frame payload a reader accepts: a raw record of the longest JSON line a
/// JSON reader accepts, plus the record's own header. Larger frames are refused as
/// `MALFORMED`, so no declared length makes a reader allocate more than this.
pub const FRAME_BYTES_MAX: usize = LINE_BYTES_MAX + 64;

/// The version-2 checksum's seed: the version and the length, so the checksum covers the
/// length as well as the payload.
const fn checksum_seed(length: u32) -> u64 {
    (2 << 32) | length as u64
}

/// The header check of a version-2 frame of `length` payload bytes.
fn header_check(length: u32) -> u32 {
    // The low half of the hash, by design.
    xxhash_rust::xxh3::xxh3_64(&length.to_le_bytes()) as u32
}

/// The payload length of the version-2 frame header at the start of `bytes`, when its
/// marker and header check hold (the length may still be over the limit).
pub(crate) fn frame_header_length(bytes: &[u8]) -> Option<u32> {
    let header = bytes.get(..FRAME_HEADER_BYTES)?;
    if header[..4] != FRAME_MARKER {
        return None;
    }
    let length = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let check = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
    (check == header_check(length)).then_some(length)
}

/// True when `payload` is the payload of the version-2 frame whose header starts `frame`.
fn checksum_matches(header: &[u8], payload: &[u8]) -> bool {
    let length = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let stored = u64::from_le_bytes([
        header[12], header[13], header[14], header[15], header[16], header[17], header[18], header[19],
    ]);
    stored == xxh3_64_with_seed(payload, checksum_seed(length))
}

/// One record of a binary partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BinaryRecord {
    /// A well-formed event.
    Event(Event),
    /// An input that is not a well-formed event, kept as its original JSON bytes; on read
    /// it is decoded with [`decode_event`].
    Raw(Vec<u8>),
}

/// Appends one version-2 frame (header + bincode of the record) to `out`.
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
    /// bincode refused the record (its text in words).
    #[error("cannot encode the record: {0}")]
    Encode(String),
    /// The payload does not fit the length field or the readers' bound.
    #[error("the record is {0} bytes, over the frame limit of {FRAME_BYTES_MAX} bytes")]
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

/// Appends one version-2 frame to `out` and returns its length including the header; on
/// error `out` is left as it was. Frames longer than [`FRAME_BYTES_MAX`] are refused, since
/// no reader would accept them.
fn frame_wire(wire: &WireRecord<'_>, out: &mut Vec<u8>) -> Result<usize, FrameError> {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER_BYTES]);
    if bincode::serde::encode_into_std_write(wire, out, bincode::config::standard()).is_err() {
        out.truncate(start);
        // bincode's encode errors print as their Debug, and the mirror types never cause
        // one: say what happened in words.
        return Err(FrameError::Encode("bincode refused one of its fields".to_owned()));
    }
    escape_in_place(out, start + FRAME_HEADER_BYTES);
    let payload_bytes = out.len() - start - FRAME_HEADER_BYTES;
    let length = match u32::try_from(payload_bytes) {
        Ok(length) if payload_bytes <= FRAME_BYTES_MAX => length,
        _ => {
            out.truncate(start);
            return Err(FrameError::TooLong(payload_bytes));
        }
    };
    let checksum = xxh3_64_with_seed(&out[start + FRAME_HEADER_BYTES..], checksum_seed(length));
    let header = &mut out[start..start + FRAME_HEADER_BYTES];
    header[..4].copy_from_slice(&FRAME_MARKER);
    header[4..8].copy_from_slice(&length.to_le_bytes());
    header[8..12].copy_from_slice(&header_check(length).to_le_bytes());
    header[12..20].copy_from_slice(&checksum.to_le_bytes());
    Ok(FRAME_HEADER_BYTES + payload_bytes)
}

/// The byte every 0xFF of a version-2 payload is followed by on disk, so the frame marker
/// (which starts with 0xFF, then `M`) never occurs inside a payload.
const ESCAPE_FILL: u8 = 0x00;

/// Writes every 0xFF byte of `out[from..]` as `FF 00`, in place.
fn escape_in_place(out: &mut Vec<u8>, from: usize) {
    let escapes = out[from..].iter().filter(|&&byte| byte == 0xFF).count();
    if escapes == 0 {
        return;
    }
    let old_len = out.len();
    out.resize(old_len + escapes, 0);
    // Move bytes from the end towards their escaped places, back to front.
    let (mut read, mut write) = (old_len, old_len + escapes);
    while read > from {
        read -= 1;
        let byte = out[read];
        if byte == 0xFF {
            write -= 1;
            out[write] = ESCAPE_FILL;
        }
        write -= 1;
        out[write] = byte;
    }
    debug_assert_eq!(read, write);
}

/// A version-2 payload as bincode: `FF 00` back to `FF` (borrowed when it holds no 0xFF);
/// `None` when a 0xFF is not followed by 0x00 (never written so).
fn unescape(payload: &[u8]) -> Option<Cow<'_, [u8]>> {
    if !payload.contains(&0xFF) {
        return Some(Cow::Borrowed(payload));
    }
    let mut bytes = Vec::with_capacity(payload.len());
    let mut iter = payload.iter();
    while let Some(&byte) = iter.next() {
        bytes.push(byte);
        if byte == 0xFF && iter.next() != Some(&ESCAPE_FILL) {
            return None;
        }
    }
    Some(Cow::Owned(bytes))
}

/// The payloads of a whole, undamaged version-2 stream (the bytes after [`MAGIC`]), in
/// order; `None` if any frame does not verify or bytes are left over. For tools that
/// measure decoding apart from framing (the benchmarks).
pub fn split_frames(mut stream: &[u8]) -> Option<Vec<&[u8]>> {
    let mut payloads = Vec::new();
    while !stream.is_empty() {
        let length = frame_header_length(stream)? as usize;
        let end = FRAME_HEADER_BYTES.checked_add(length)?;
        if length > FRAME_BYTES_MAX || stream.len() < end {
            return None;
        }
        let (header, payload) = stream[..end].split_at(FRAME_HEADER_BYTES);
        if !checksum_matches(header, payload) {
            return None;
        }
        payloads.push(payload);
        stream = &stream[end..];
    }
    Some(payloads)
}

/// The bincode of the event alone (no frame, no record tag): a deterministic byte string
/// engines use to break ties between events with the same id.
pub fn canonical_bytes(event: &Event) -> Vec<u8> {
    // Encoding into a Vec fails only for types bincode cannot describe, which the mirror
    // types are not; an empty result would still be deterministic.
    bincode::serde::encode_to_vec(WireEvent::from(event), bincode::config::standard()).unwrap_or_default()
}

/// Decodes one version-2 frame payload (without its frame header, as
/// [`split_frames`] gives it). A payload that does not decode, or has bytes after its
/// record, is `MALFORMED` with the payload as hex; a raw record is decoded with
/// [`decode_event`] (a blank one is refused as empty; [`BinaryReader`] skips it, as JSON
/// readers skip blank lines).
pub fn decode_frame(payload: &[u8]) -> Decoded {
    match decode_escaped(payload) {
        Payload::Decoded(decoded) => decoded,
        Payload::Blank(bytes) => decode_event(&bytes),
    }
}

/// Decodes a version-2 payload (escaped).
fn decode_escaped(payload: &[u8]) -> Payload {
    match unescape(payload) {
        Some(bincode) => decode_payload(&bincode, payload),
        None => {
            let error = DecodeError::BrokenRecord("a 0xFF byte in it is not followed by 0x00".to_owned());
            Payload::Decoded(malformed(Readable::default(), error, RawInput::Binary(payload)))
        }
    }
}

enum Payload {
    Decoded(Decoded),
    /// A raw record holding nothing but whitespace.
    Blank(Vec<u8>),
}

/// Decodes bincode `payload`; a refusal keeps `on_disk` (the payload as the file holds it)
/// as its raw.
fn decode_payload(payload: &[u8], on_disk: &[u8]) -> Payload {
    let raw = RawInput::Binary(on_disk);
    let config = bincode::config::standard().with_limit::<FRAME_BYTES_MAX>();
    let (record, used): (WireRecord<'static>, usize) = match bincode::serde::decode_from_slice(payload, config) {
        Ok(decoded) => decoded,
        Err(error) => {
            let error = DecodeError::BrokenRecord(describe_bincode_error(&error));
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
    // New kinds go last: bincode numbers the variants, so older files keep their meaning.
    Terminate,
    Export,
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
            Body::Terminate => WireBody::Terminate,
            Body::Export => WireBody::Export,
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
            WireBody::Terminate => Kind::Terminate,
            WireBody::Export => Kind::Export,
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
                    .ok_or_else(|| DecodeError::ActDateOutOfRange(format!("day {act_date}")))?,
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
            WireBody::Terminate => Body::Terminate,
            WireBody::Export => Body::Export,
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
