//! Codecs: input bytes in, [`Decoded`] records out; events and outputs in, bytes out.
//!
//! In: one JSON line ([`json::decode_event`]) or one binary frame ([`binary`]). Out: a
//! [`Decoded`], either a well-formed [`Event`] or a [`Rejection`] with reason `MALFORMED`
//! or `UNKNOWN_TYPE`. The decoders check structure only (JSON shape, required fields,
//! timestamps, the id and account alphabets); semantic checks (amounts, GTINs, codes,
//! lifecycle) are the engine's, because a refused-but-well-formed event still takes part in
//! de-duplication and moves its partition's high-water mark (DOMAIN.md §8).
//!
//! Both formats apply the same structural rules, so the same input refuses the same way
//! whether it arrived as JSON or binary. No input bytes make a decoder panic.

pub mod binary;
pub mod json;

use markledger_operators::event::{Body, Kind};
use markledger_operators::output::{Rejection, RAW_BYTES_MAX};
use markledger_operators::validate;
use markledger_operators::{Event, Reason, Ts};

/// One input record after decoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A well-formed event (it may still be refused by the engine for semantic reasons).
    Event(Event),
    /// A record refused at decoding: reason `MALFORMED` or `UNKNOWN_TYPE`, with `event`,
    /// `event_type`, `account` filled when they could be read as strings, `code: None`, a
    /// detail, and for `MALFORMED` `raw` = the input truncated to [`RAW_BYTES_MAX`] bytes on
    /// a char boundary (lossy UTF-8; for a broken binary record, hex).
    Refused(Rejection),
}

/// The earliest `ts` (and `effective_from`) a decoder accepts: 1924-05-01T23:52:12+05:00
/// (18:52:12Z), when Almaty left local mean time (+05:07:48) for whole-hour offsets. Every
/// output prints its timestamps in Almaty time, and RFC 3339 offsets have no seconds: an
/// earlier instant would print 12 s off (`+05:08`) and read back as another instant.
pub(crate) const TS_MIN: Ts = Ts(-1_441_170_468_000);
/// The latest `ts` a decoder accepts: 9999-12-31T23:59:59.999+05:00, the last instant
/// whose Almaty time has a four-digit year (a later one prints as `+10000-…`, which no
/// RFC 3339 reader accepts).
pub(crate) const TS_MAX: Ts = Ts(253_402_282_799_999);

/// Longest field value quoted in a rejection's detail, in characters.
const DETAIL_VALUE_CHARS_MAX: usize = 64;

/// Why a record is refused at decoding; its text becomes the rejection's detail, which a
/// person at an order station or in support reads: plain words, values quoted, no Rust
/// debug formatting (a test renders every variant).
#[derive(Debug, thiserror::Error)]
pub(crate) enum DecodeError {
    /// Bytes that are not JSON at all (the text from [`describe_json_error`]).
    #[error("not valid JSON: {0}")]
    NotJson(String),
    /// Valid JSON, but not an object.
    #[error("not a JSON object")]
    NotObject,
    /// A JSON object the event shape cannot read (a duplicate field).
    #[error("not a valid event object: {0}")]
    BadObject(String),
    /// Nothing but whitespace.
    #[error("empty record")]
    Empty,
    /// A required field is absent (or null).
    #[error("missing field `{0}`")]
    Missing(&'static str),
    /// A field that must be a string is not one.
    #[error("field `{0}` is not a string")]
    NotString(&'static str),
    /// The event id is not 1–128 characters.
    #[error("field `id` must be 1–128 characters, got {0}")]
    BadEventId(String),
    /// The `type` names no known event type.
    #[error("unknown event type {0}")]
    UnknownType(String),
    /// A timestamp field that is not RFC 3339 with an offset (years 0000–9999).
    #[error("field `{0}` is not an RFC 3339 timestamp with offset: {1}")]
    BadTimestamp(&'static str, String),
    /// A timestamp outside [`TS_MIN`]..=[`TS_MAX`] (the JSON text quoted, or a binary
    /// timestamp's milliseconds).
    #[error(
        "field `{0}` is {1}, outside the instants outputs can print in Almaty time \
         (1924-05-01T23:52:12+05:00 to 9999-12-31T23:59:59.999+05:00)"
    )]
    TimestampOutOfRange(&'static str, String),
    /// An account outside the alphabet.
    #[error("field `account` must be 1–64 characters of [A-Za-z0-9._-], got {0}")]
    BadAccount(String),
    /// A tariff whose account is not `"*"`.
    #[error("field `account` of a tariff must be \"*\", got {0}")]
    TariffAccount(String),
    /// An order id that is not 1–64 characters.
    #[error("field `order` must be 1–64 characters, got {0}")]
    BadOrder(String),
    /// A quantity that is not a JSON integer > 0.
    #[error("field `quantity` must be an integer > 0")]
    BadQuantity,
    /// `codes` is not an array.
    #[error("field `codes` is not an array")]
    CodesNotArray,
    /// An element of `codes` is not a string.
    #[error("field `codes` element {0} is not a string")]
    CodeNotString(usize),
    /// `act_date` is not a calendar date written `YYYY-MM-DD`.
    #[error("field `act_date` is not a date YYYY-MM-DD: {0}")]
    BadActDate(String),
    /// A binary `act_date` outside the years 0000–9999 (the date, or its day number).
    #[error("field `act_date` is {0}, outside the years 0000–9999")]
    ActDateOutOfRange(String),
    /// An empty payment channel.
    #[error("field `channel` must be a non-empty string")]
    EmptyChannel,
    /// A binary decimal whose mantissa or scale is out of range.
    #[error("field `{0}` holds an out-of-range decimal")]
    BadDecimal(&'static str),
    /// A JSON line longer than the reader's bound (its length in bytes, the limit).
    #[error("the line is {0} bytes long, over the limit of {1} bytes per line")]
    LineTooLong(u64, usize),
    /// A binary frame whose payload does not decode (the text from [`describe_bincode_error`]).
    #[error("the binary record does not decode: {0}")]
    BrokenRecord(String),
    /// A binary frame with bytes after its record.
    #[error("the binary record is followed by {0} stray bytes inside its frame")]
    TrailingBytes(usize),
    /// A version-1 binary frame longer than the reader's bound (skipped).
    #[error("a binary frame declares {0} bytes, over the limit of {1} bytes; it was skipped")]
    FrameTooLong(u64, usize),
    /// A version-1 stream that ended inside a frame: bytes present, bytes declared, and
    /// which part of the frame.
    #[error("the file ends inside a binary frame: {0} of its {1} {2} bytes are there")]
    TruncatedFrame(u64, u64, FramePart),
    /// Version 2: bytes that hold no valid frame, skipped up to the next valid frame or
    /// the end of the input.
    #[error("{}", skipped_text(.0))]
    Skipped(Skip),
    /// Version 2: a damaged file header before a valid frame (the file is read on).
    #[error("the file's first 8 bytes are not the binary format's header, but a valid binary frame follows them: the file is read as binary format version 2")]
    DamagedHeader,
}

/// The part of a version-1 frame a stream ended in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FramePart {
    /// The `u32` length prefix.
    Length,
    /// The payload.
    Payload,
}

impl std::fmt::Display for FramePart {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            FramePart::Length => "length",
            FramePart::Payload => "payload",
        })
    }
}

/// A run of skipped bytes in a version-2 binary stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Skip {
    /// Where the run starts, in bytes from the start of the file.
    pub(crate) offset: u64,
    /// Its length in bytes.
    pub(crate) bytes: u64,
    /// Why the first position of the run holds no valid frame.
    pub(crate) fault: FrameFault,
    /// True when no valid frame follows (the run reaches the end of the input).
    pub(crate) to_end: bool,
}

/// Why a position in a version-2 binary stream holds no valid frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FrameFault {
    /// No frame marker there.
    NoMarker,
    /// The frame's header check does not match its length.
    HeaderCheck,
    /// A length over the limit (the writer never writes one).
    TooLong(u64),
    /// The payload's checksum does not match.
    Checksum,
    /// The input ends inside the frame.
    Truncated,
}

impl std::fmt::Display for FrameFault {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameFault::NoMarker => formatter.write_str("no frame marker there"),
            FrameFault::HeaderCheck => formatter.write_str("its header check does not match its length"),
            FrameFault::TooLong(bytes) => write!(formatter, "it declares {bytes} bytes, over the frame limit"),
            FrameFault::Checksum => formatter.write_str("its checksum does not match its bytes"),
            FrameFault::Truncated => formatter.write_str("the file ends inside it"),
        }
    }
}

fn skipped_text(skip: &Skip) -> String {
    let until = if skip.to_end {
        "the end of the file"
    } else {
        "the next valid frame"
    };
    format!(
        "{} bytes from byte {} hold no valid binary frame ({}); skipped up to {until}",
        skip.bytes, skip.offset, skip.fault
    )
}

/// serde_json's error in words for a one-line input: its message and the column, without
/// the always-1 line number.
pub(crate) fn describe_json_error(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let (line, column) = (error.line(), error.column());
    let message = text
        .strip_suffix(&format!(" at line {line} column {column}"))
        .unwrap_or(&text);
    if line == 0 {
        return message.to_owned();
    }
    let at = if line == 1 {
        format!("column {column}")
    } else {
        format!("line {line} column {column}")
    };
    if error.classify() == serde_json::error::Category::Eof {
        format!("the input ends before its JSON does, at {at}")
    } else {
        format!("{message} at {at}")
    }
}

/// bincode's decode error in words. Its own `Display` is its `Debug`
/// (`UnexpectedEnd { additional: 1 }`), which no person should read.
pub(crate) fn describe_bincode_error(error: &bincode::error::DecodeError) -> String {
    use bincode::error::DecodeError as Bincode;
    match error {
        Bincode::UnexpectedEnd { .. } => "it ends before the record does".to_owned(),
        Bincode::LimitExceeded => "it declares a field longer than the frame limit".to_owned(),
        Bincode::InvalidIntegerType { .. } | Bincode::OutsideUsizeRange(_) => {
            "a number in it is out of range".to_owned()
        }
        Bincode::UnexpectedVariant { .. } => "it names an unknown kind of record".to_owned(),
        Bincode::Utf8 { .. } => "a text field in it is not valid UTF-8".to_owned(),
        Bincode::InvalidCharEncoding(_) | Bincode::InvalidBooleanValue(_) => {
            "a field in it holds an invalid value".to_owned()
        }
        // serde's messages are sentences already ("invalid value: integer `40`, expected
        // variant index 0 <= i < 2").
        Bincode::OtherString(message) => message.clone(),
        Bincode::Other(message) => (*message).to_owned(),
        _ => "its bytes do not form a record".to_owned(),
    }
}

/// The fields of a refused record that could be read as strings.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Readable<'a> {
    /// `id`.
    pub(crate) id: Option<&'a str>,
    /// `type`.
    pub(crate) event_type: Option<&'a str>,
    /// `account`.
    pub(crate) account: Option<&'a str>,
}

impl<'a> Readable<'a> {
    /// The readable fields of a decoded (binary) event.
    pub(crate) fn of_event(event: &'a Event) -> Self {
        Readable {
            id: Some(&event.id),
            event_type: Some(event.kind().as_str()),
            account: Some(&event.account),
        }
    }
}

/// What a refused record keeps of its input.
#[derive(Clone, Copy, Debug)]
pub(crate) enum RawInput<'a> {
    /// Text input (a JSON line): kept as lossy UTF-8.
    Text(&'a [u8]),
    /// Binary input: kept as hex.
    Binary(&'a [u8]),
}

/// A `MALFORMED` refusal.
pub(crate) fn malformed(readable: Readable<'_>, error: DecodeError, raw: RawInput<'_>) -> Decoded {
    let raw = match raw {
        RawInput::Text(bytes) => raw_text(bytes),
        RawInput::Binary(bytes) => raw_hex(bytes),
    };
    refusal(Reason::Malformed, readable, error, Some(raw))
}

/// An `UNKNOWN_TYPE` refusal (no `raw`: the record was well-formed).
pub(crate) fn unknown_type(readable: Readable<'_>, type_name: &str) -> Decoded {
    let error = DecodeError::UnknownType(preview(type_name));
    refusal(Reason::UnknownType, readable, error, None)
}

fn refusal(reason: Reason, readable: Readable<'_>, error: DecodeError, raw: Option<String>) -> Decoded {
    Decoded::Refused(Rejection {
        event: readable.id.map(str::to_owned),
        event_type: readable.event_type.map(str::to_owned),
        account: readable.account.map(str::to_owned),
        code: None,
        reason,
        detail: error.to_string(),
        raw,
    })
}

/// A field value quoted for a detail, cut to [`DETAIL_VALUE_CHARS_MAX`] characters so a
/// huge bad value does not make a huge detail.
pub(crate) fn preview(value: &str) -> String {
    match value.char_indices().nth(DETAIL_VALUE_CHARS_MAX) {
        Some((cut, _)) => format!("{:?}…", &value[..cut]),
        None => format!("{value:?}"),
    }
}

/// The input as lossy UTF-8, at most [`RAW_BYTES_MAX`] bytes, cut on a char boundary.
pub(crate) fn raw_text(bytes: &[u8]) -> String {
    let mut end = bytes.len().min(RAW_BYTES_MAX);
    // Back up over the continuation bytes of a character the cut would split, so the kept
    // text does not end in a replacement character that was not in the input.
    let mut steps = 0;
    while end < bytes.len() && end > 0 && steps < 3 && bytes[end] & 0xC0 == 0x80 {
        end -= 1;
        steps += 1;
    }
    let text = String::from_utf8_lossy(&bytes[..end]);
    // Invalid bytes become U+FFFD (3 bytes each), which can push the text over the bound.
    truncate_on_char_boundary(text.into_owned(), RAW_BYTES_MAX)
}

/// The input as lowercase hex, at most [`RAW_BYTES_MAX`] characters.
pub(crate) fn raw_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let kept = &bytes[..bytes.len().min(RAW_BYTES_MAX / 2)];
    let mut text = String::with_capacity(kept.len() * 2);
    for byte in kept {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0F)]));
    }
    text
}

fn truncate_on_char_boundary(mut text: String, bytes_max: usize) -> String {
    if text.len() > bytes_max {
        let mut cut = bytes_max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

/// The structural rules every decoded event obeys, whatever its format: the JSON decoder
/// checks them field by field as it reads; the binary decoder checks a decoded event with
/// this function. The order of the checks fixes which detail a record with several faults
/// gets.
pub(crate) fn check_structure(event: &Event) -> Result<(), DecodeError> {
    if !validate::is_event_id(&event.id) {
        return Err(DecodeError::BadEventId(preview(&event.id)));
    }
    if !is_printable_ts(event.ts) {
        return Err(DecodeError::TimestampOutOfRange("ts", millis_text(event.ts)));
    }
    check_account(event.kind(), &event.account)?;
    match &event.body {
        Body::Order { order, quantity, .. } => {
            check_order(order)?;
            if *quantity == 0 {
                return Err(DecodeError::BadQuantity);
            }
        }
        Body::OrderCancel { order } | Body::Emission { order, .. } => check_order(order)?,
        Body::Defect { act_date, .. } => {
            use chrono::Datelike;
            if !(0..=9999).contains(&act_date.year()) {
                return Err(DecodeError::ActDateOutOfRange(act_date.to_string()));
            }
        }
        Body::Payment { channel, .. } => {
            if channel.is_empty() {
                return Err(DecodeError::EmptyChannel);
            }
        }
        Body::Tariff { effective_from, .. } => {
            if !is_printable_ts(*effective_from) {
                return Err(DecodeError::TimestampOutOfRange(
                    "effective_from",
                    millis_text(*effective_from),
                ));
            }
        }
        Body::Application { .. }
        | Body::Dropout { .. }
        | Body::Introduction { .. }
        | Body::Compensation { .. }
        | Body::Refund { .. }
        | Body::Terminate
        | Body::Export => {}
    }
    Ok(())
}

/// The account rule: a tariff's account is exactly `"*"`, every other event's account is
/// in the account alphabet.
pub(crate) fn check_account(kind: Kind, account: &str) -> Result<(), DecodeError> {
    if kind == Kind::Tariff {
        if account != "*" {
            return Err(DecodeError::TariffAccount(preview(account)));
        }
    } else if !validate::is_account(account) {
        return Err(DecodeError::BadAccount(preview(account)));
    }
    Ok(())
}

/// The order id rule.
pub(crate) fn check_order(order: &str) -> Result<(), DecodeError> {
    if validate::is_order(order) {
        Ok(())
    } else {
        Err(DecodeError::BadOrder(preview(order)))
    }
}

/// True when `ts` is in [`TS_MIN`]..=[`TS_MAX`]: an output can print it in Almaty time and
/// read it back as the same instant.
pub(crate) fn is_printable_ts(ts: Ts) -> bool {
    (TS_MIN..=TS_MAX).contains(&ts)
}

/// A binary timestamp for a detail.
fn millis_text(ts: Ts) -> String {
    format!("{} ms from 1970-01-01", ts.0)
}

#[cfg(test)]
pub(crate) mod detail_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accepted_timestamps_are_exactly_those_outputs_print_back() {
        // Renders the bounds and the instants just outside them in Almaty time (as every
        // output does) and parses them back: the bounds come back as themselves, the
        // instants outside do not (12 s off in local mean time, a five-digit year).
        let round_trips = |ts: Ts| Ts::parse_rfc3339(&ts.render()) == Some(ts);
        assert!(round_trips(TS_MIN), "{}", TS_MIN.render());
        assert!(round_trips(TS_MAX), "{}", TS_MAX.render());
        assert_eq!(TS_MIN.render(), "1924-05-01T23:52:12+05:00");
        assert_eq!(TS_MAX.render(), "9999-12-31T23:59:59.999+05:00");
        assert!(
            !round_trips(TS_MIN.minus_millis(1000)),
            "{}",
            TS_MIN.minus_millis(1000).render()
        );
        assert!(
            !round_trips(TS_MAX.plus_millis(1)),
            "{}",
            TS_MAX.plus_millis(1).render()
        );
        assert!(is_printable_ts(TS_MIN) && is_printable_ts(TS_MAX));
        assert!(!is_printable_ts(TS_MIN.minus_millis(1)) && !is_printable_ts(TS_MAX.plus_millis(1)));
    }

    #[test]
    fn raw_text_is_bounded_and_cut_on_a_char_boundary() {
        // Feeds 2-byte characters straddling the 1 KiB cut and invalid bytes; checks length
        // and that no replacement character is invented at the cut.
        let mut input = vec![b'a'];
        input.extend("ж".repeat(1000).as_bytes());
        let text = raw_text(&input);
        assert!(text.len() <= RAW_BYTES_MAX);
        assert_eq!(text.len(), 1023);
        assert!(!text.contains('\u{FFFD}'));

        let invalid = vec![0xFF; 2000];
        let text = raw_text(&invalid);
        assert!(text.len() <= RAW_BYTES_MAX);
        assert!(text.chars().all(|c| c == '\u{FFFD}'));
    }

    #[test]
    fn raw_hex_is_bounded() {
        // Hex of 2000 bytes keeps the first 512 bytes as 1024 lowercase digits.
        let text = raw_hex(&[0xAB; 2000]);
        assert_eq!(text.len(), RAW_BYTES_MAX);
        assert!(text.starts_with("abab"));
    }

    #[test]
    fn preview_cuts_long_values() {
        // A 100-char value is quoted and cut to 64 chars plus an ellipsis.
        let text = preview(&"x".repeat(100));
        assert_eq!(text, format!("{:?}…", "x".repeat(64)));
        assert_eq!(preview("ab"), "\"ab\"");
    }
}
