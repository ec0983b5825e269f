//! JSON lines, the interoperable wire format (INTERFACE.md).
//!
//! In: one input line (without its newline) → [`decode_event`] → [`Decoded`]. Out: an
//! [`Event`] → [`encode_event`] (what order stations and the generator write), and an
//! engine's [`Output`] → [`render_output`] (one line of one of the five output files, chosen
//! by [`output_file`]).
//!
//! Decoding is the hot path (a target of 1M events/s), so a line is parsed once into a
//! borrowed struct: every field is optional and accepts any JSON value, recording whether
//! it had the expected shape (string fields borrow from the line unless they contain
//! escapes); amounts are kept as their raw JSON text. No `serde_json::Value` is built. The
//! checks then run in a fixed order (id, type, ts, account, then the type's fields in
//! INTERFACE.md order), so a line with several faults always gets the same detail.
//!
//! Encoding writes keys in a fixed order with strings escaped by `serde_json`; money goes
//! through [`money::render`] and timestamps through [`Ts::render`], so equal values always
//! print the same text.

use super::{
    check_account, check_order, describe_json_error, is_printable_ts, malformed, preview, unknown_type, DecodeError,
    Decoded, RawInput, Readable,
};
use crate::file::OutputFile;
use chrono::{Datelike, NaiveDate};
use markledger_operators::event::{Body, DecimalField, Kind};
use markledger_operators::output::{
    BalanceRecord, Deletion, ExportItem, ExportLine, Figures, LedgerEntry, Output, PeriodRecord, Rejection,
    StatusChange,
};
use markledger_operators::{money, validate, Event, Money, Ts};
use rust_decimal::Decimal;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;
use std::io::Write as _;

/// Codes preallocated for a `codes` array before its elements are read; larger arrays grow.
const CODES_PREALLOCATED_MAX: usize = 4096;

// ---------------------------------------------------------------------------------------
// Decoding

/// Decodes one JSON input line (without its newline; a trailing `'\r'` is tolerated).
///
/// Returns [`Decoded::Event`] for a well-formed event and [`Decoded::Refused`] with reason
/// `MALFORMED` (with `raw`) or `UNKNOWN_TYPE` otherwise. Unknown fields are ignored; a
/// field that is `null` counts as missing.
pub fn decode_event(line: &[u8]) -> Decoded {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let raw = RawInput::Text(line);
    match line.iter().find(|byte| !byte.is_ascii_whitespace()) {
        None => return malformed(Readable::default(), DecodeError::Empty, raw),
        Some(b'{') => {}
        // serde would read a JSON array into the struct by position: refuse it here.
        Some(_) => {
            let error = match serde_json::from_slice::<IgnoredAny>(line) {
                Ok(_) => DecodeError::NotObject,
                Err(error) => DecodeError::NotJson(describe_json_error(&error)),
            };
            return malformed(Readable::default(), error, raw);
        }
    }
    let mut wire: WireEvent<'_> = match serde_json::from_slice(line) {
        Ok(wire) => wire,
        Err(error) if error.is_data() => {
            return malformed(
                Readable::default(),
                DecodeError::BadObject(describe_json_error(&error)),
                raw,
            )
        }
        Err(error) => {
            return malformed(
                Readable::default(),
                DecodeError::NotJson(describe_json_error(&error)),
                raw,
            )
        }
    };
    let id = wire.id.take();
    let event_type = wire.event_type.take();
    let account = wire.account.take();
    let readable = Readable {
        id: id.as_ref().and_then(Text::as_str),
        event_type: event_type.as_ref().and_then(Text::as_str),
        account: account.as_ref().and_then(Text::as_str),
    };
    match build_event(&id, &event_type, &account, wire) {
        Ok(event) => Decoded::Event(event),
        Err(Refusal::Malformed(error)) => malformed(readable, error, raw),
        Err(Refusal::UnknownType(type_name)) => unknown_type(readable, &type_name),
    }
}

/// Why [`build_event`] refused a parsed object.
enum Refusal {
    Malformed(DecodeError),
    UnknownType(String),
}

impl From<DecodeError> for Refusal {
    fn from(error: DecodeError) -> Self {
        Refusal::Malformed(error)
    }
}

fn build_event(
    id: &Option<Text<'_>>,
    event_type: &Option<Text<'_>>,
    account: &Option<Text<'_>>,
    mut wire: WireEvent<'_>,
) -> Result<Event, Refusal> {
    let id = required_ref(id, "id")?;
    if !validate::is_event_id(id) {
        return Err(DecodeError::BadEventId(preview(id)).into());
    }
    let type_name = required_ref(event_type, "type")?;
    let Some(kind) = Kind::parse(type_name) else {
        return Err(Refusal::UnknownType(type_name.to_owned()));
    };
    let ts = timestamp(wire.ts.take(), "ts")?;
    let account = required_ref(account, "account")?;
    check_account(kind, account)?;
    let body = build_body(kind, wire)?;
    Ok(Event {
        id: id.to_owned(),
        ts,
        account: account.to_owned(),
        body,
    })
}

fn build_body(kind: Kind, wire: WireEvent<'_>) -> Result<Body, DecodeError> {
    Ok(match kind {
        Kind::Order => Body::Order {
            order: order(wire.order)?,
            gtin: required(wire.gtin, "gtin")?.into_owned(),
            quantity: match wire.quantity {
                None => return Err(DecodeError::Missing("quantity")),
                Some(Count::Integer(quantity)) if quantity > 0 => quantity,
                Some(_) => return Err(DecodeError::BadQuantity),
            },
        },
        Kind::OrderCancel => Body::OrderCancel {
            order: order(wire.order)?,
        },
        Kind::Emission => Body::Emission {
            order: order(wire.order)?,
            gtin: required(wire.gtin, "gtin")?.into_owned(),
            codes: codes(wire.codes)?,
        },
        Kind::Application => Body::Application {
            report: optional(wire.report, "report")?.into_owned(),
            codes: codes(wire.codes)?,
        },
        Kind::Dropout => Body::Dropout {
            codes: codes(wire.codes)?,
            reason: optional(wire.reason, "reason")?.into_owned(),
        },
        Kind::Defect => Body::Defect {
            codes: codes(wire.codes)?,
            act_date: {
                let text = required(wire.act_date, "act_date")?;
                parse_date(&text).ok_or_else(|| DecodeError::BadActDate(preview(&text)))?
            },
        },
        Kind::Introduction => Body::Introduction {
            codes: codes(wire.codes)?,
        },
        Kind::Payment => Body::Payment {
            amount: decimal(wire.amount, "amount")?,
            channel: {
                let channel = required(wire.channel, "channel")?;
                if channel.is_empty() {
                    return Err(DecodeError::EmptyChannel);
                }
                channel.into_owned()
            },
        },
        Kind::Compensation => Body::Compensation {
            amount: decimal(wire.amount, "amount")?,
            reason: optional(wire.reason, "reason")?.into_owned(),
        },
        Kind::Refund => Body::Refund {
            amount: decimal(wire.amount, "amount")?,
        },
        Kind::Tariff => Body::Tariff {
            effective_from: timestamp(wire.effective_from, "effective_from")?,
            net_price: decimal(wire.net_price, "net_price")?,
            vat_rate: decimal(wire.vat_rate, "vat_rate")?,
        },
        Kind::Terminate => Body::Terminate,
        Kind::Export => Body::Export,
    })
}

fn required_ref<'t>(value: &'t Option<Text<'_>>, name: &'static str) -> Result<&'t str, DecodeError> {
    match value {
        None => Err(DecodeError::Missing(name)),
        Some(Text::Other) => Err(DecodeError::NotString(name)),
        Some(Text::Str(text)) => Ok(text),
    }
}

fn required<'a>(value: Option<Text<'a>>, name: &'static str) -> Result<Cow<'a, str>, DecodeError> {
    match value {
        None => Err(DecodeError::Missing(name)),
        Some(Text::Other) => Err(DecodeError::NotString(name)),
        Some(Text::Str(text)) => Ok(text),
    }
}

/// A free-text field that may be absent (then it reads as `""`).
fn optional<'a>(value: Option<Text<'a>>, name: &'static str) -> Result<Cow<'a, str>, DecodeError> {
    match value {
        None => Ok(Cow::Borrowed("")),
        Some(Text::Other) => Err(DecodeError::NotString(name)),
        Some(Text::Str(text)) => Ok(text),
    }
}

fn order(value: Option<Text<'_>>) -> Result<String, DecodeError> {
    let order = required(value, "order")?;
    check_order(&order)?;
    Ok(order.into_owned())
}

fn timestamp(value: Option<Text<'_>>, name: &'static str) -> Result<Ts, DecodeError> {
    let text = required(value, name)?;
    let ts = Ts::parse_rfc3339(&text).ok_or_else(|| DecodeError::BadTimestamp(name, preview(&text)))?;
    if !is_printable_ts(ts) {
        return Err(DecodeError::TimestampOutOfRange(name, preview(&text)));
    }
    Ok(ts)
}

fn codes(value: Option<Codes>) -> Result<Vec<String>, DecodeError> {
    match value {
        None => Err(DecodeError::Missing("codes")),
        Some(Codes::List(codes)) => Ok(codes),
        Some(Codes::NotArray) => Err(DecodeError::CodesNotArray),
        Some(Codes::NotString(index)) => Err(DecodeError::CodeNotString(index)),
    }
}

/// An amount, price or rate: a decimal string parses, anything else is kept as its text
/// for the engine's `BAD_AMOUNT` detail. Only absence is malformed.
fn decimal(value: Option<&RawValue>, name: &'static str) -> Result<DecimalField, DecodeError> {
    let raw = value.ok_or(DecodeError::Missing(name))?;
    let text = raw.get().trim();
    if !text.starts_with('"') {
        return Ok(DecimalField::Invalid(text.to_owned()));
    }
    let content: Cow<'_, str> = match text.get(1..text.len().saturating_sub(1)) {
        Some(inner) if !inner.contains('\\') => Cow::Borrowed(inner),
        _ => match serde_json::from_str::<String>(text) {
            Ok(unescaped) => Cow::Owned(unescaped),
            Err(_) => Cow::Borrowed(text),
        },
    };
    Ok(match parse_decimal(&content) {
        Some(value) => DecimalField::Parsed(value),
        None => DecimalField::Invalid(content.into_owned()),
    })
}

/// Parses plain decimal notation: an optional sign, digits, optionally `.` and digits
/// (`"1000.00"`, `"-2.5"`, `"+3"`). Exponents, underscores, spaces, a bare `.` and values
/// that do not fit a `Decimal` exactly (more than 28 fractional digits, which
/// `Decimal::from_str` would silently round) are refused.
pub(crate) fn parse_decimal(text: &str) -> Option<Decimal> {
    let unsigned = text
        .strip_prefix('-')
        .or_else(|| text.strip_prefix('+'))
        .unwrap_or(text);
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (unsigned, None),
    };
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|byte| byte.is_ascii_digit());
    if !digits(whole) || !fraction.is_none_or(digits) {
        return None;
    }
    Decimal::from_str_exact(text).ok()
}

/// Parses exactly `YYYY-MM-DD`.
fn parse_date(text: &str) -> Option<NaiveDate> {
    let bytes = text.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = &bytes[range];
        part.iter()
            .all(u8::is_ascii_digit)
            .then(|| part.iter().fold(0, |acc, digit| acc * 10 + u32::from(digit - b'0')))
    };
    let year = i32::try_from(number(0..4)?).ok()?;
    NaiveDate::from_ymd_opt(year, number(5..7)?, number(8..10)?)
}

/// Every field any event type uses. Each accepts any JSON value and records its shape, so
/// a wrong-typed field of no concern to the event's type (a payment with `"codes": 5`) does
/// not spoil the event, and the checks name the first faulty field.
#[derive(Default, Deserialize)]
#[serde(default)]
struct WireEvent<'a> {
    #[serde(borrow)]
    id: Option<Text<'a>>,
    #[serde(borrow, rename = "type")]
    event_type: Option<Text<'a>>,
    #[serde(borrow)]
    ts: Option<Text<'a>>,
    #[serde(borrow)]
    account: Option<Text<'a>>,
    #[serde(borrow)]
    order: Option<Text<'a>>,
    #[serde(borrow)]
    gtin: Option<Text<'a>>,
    quantity: Option<Count>,
    codes: Option<Codes>,
    #[serde(borrow)]
    report: Option<Text<'a>>,
    #[serde(borrow)]
    reason: Option<Text<'a>>,
    #[serde(borrow)]
    act_date: Option<Text<'a>>,
    #[serde(borrow)]
    channel: Option<Text<'a>>,
    #[serde(borrow)]
    effective_from: Option<Text<'a>>,
    #[serde(borrow)]
    amount: Option<&'a RawValue>,
    #[serde(borrow)]
    net_price: Option<&'a RawValue>,
    #[serde(borrow)]
    vat_rate: Option<&'a RawValue>,
}

/// A JSON value where a string is expected.
enum Text<'a> {
    /// The string (borrowed from the line unless it had escapes).
    Str(Cow<'a, str>),
    /// Any other JSON value.
    Other,
}

impl Text<'_> {
    fn as_str(&self) -> Option<&str> {
        match self {
            Text::Str(text) => Some(text),
            Text::Other => None,
        }
    }
}

/// A JSON value where a count is expected.
enum Count {
    /// A non-negative JSON integer that fits `u64`.
    Integer(u64),
    /// Anything else (negative, fractional, a string, …).
    Other,
}

/// A JSON value where an array of strings is expected.
enum Codes {
    /// The strings.
    List(Vec<String>),
    /// Not an array.
    NotArray,
    /// An array whose element at this index is not a string.
    NotString(usize),
}

fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Implements the visitor methods of every JSON value shape that maps to `$other`.
macro_rules! visit_as_other {
    ($other:expr; $($shape:ident),*) => {
        $(visit_as_other!(@one $other; $shape);)*
    };
    (@one $other:expr; bool) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> { Ok($other) }
    };
    (@one $other:expr; i64) => {
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> { Ok($other) }
    };
    (@one $other:expr; u64) => {
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> { Ok($other) }
    };
    (@one $other:expr; f64) => {
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> { Ok($other) }
    };
    (@one $other:expr; str) => {
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> { Ok($other) }
    };
    (@one $other:expr; unit) => {
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> { Ok($other) }
    };
    (@one $other:expr; seq) => {
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            drain_seq(seq)?;
            Ok($other)
        }
    };
    (@one $other:expr; map) => {
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            drain_map(map)?;
            Ok($other)
        }
    };
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Text<'de>, E> {
                Ok(Text::Str(Cow::Borrowed(text)))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Text<'de>, E> {
                Ok(Text::Str(Cow::Owned(text.to_owned())))
            }
            fn visit_string<E: de::Error>(self, text: String) -> Result<Text<'de>, E> {
                Ok(Text::Str(Cow::Owned(text)))
            }
            visit_as_other!(Text::Other; bool, i64, u64, f64, unit, seq, map);
        }
        deserializer.deserialize_any(TextVisitor)
    }
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CountVisitor;
        impl<'de> Visitor<'de> for CountVisitor {
            type Value = Count;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("any JSON value")
            }
            fn visit_u64<E: de::Error>(self, count: u64) -> Result<Count, E> {
                Ok(Count::Integer(count))
            }
            fn visit_i64<E: de::Error>(self, count: i64) -> Result<Count, E> {
                Ok(u64::try_from(count).map_or(Count::Other, Count::Integer))
            }
            visit_as_other!(Count::Other; bool, f64, str, unit, seq, map);
        }
        deserializer.deserialize_any(CountVisitor)
    }
}

impl<'de> Deserialize<'de> for Codes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CodesVisitor;
        impl<'de> Visitor<'de> for CodesVisitor {
            type Value = Codes;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("any JSON value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Codes, A::Error> {
                let capacity = seq.size_hint().unwrap_or(0).min(CODES_PREALLOCATED_MAX);
                let mut codes = Vec::with_capacity(capacity);
                let mut first_bad = None;
                let mut index = 0;
                while let Some(element) = seq.next_element::<Text<'de>>()? {
                    match element {
                        Text::Str(code) if first_bad.is_none() => codes.push(code.into_owned()),
                        Text::Str(_) => {}
                        Text::Other => {
                            first_bad.get_or_insert(index);
                        }
                    }
                    index += 1;
                }
                Ok(first_bad.map_or(Codes::List(codes), Codes::NotString))
            }
            visit_as_other!(Codes::NotArray; bool, i64, u64, f64, str, unit, map);
        }
        deserializer.deserialize_any(CodesVisitor)
    }
}

/// The fields a refusal can carry of a line too long to decode: `id`, `type` and
/// `account`, read from the line's first bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Heading {
    /// `id`, when it is a string within the prefix.
    pub(crate) id: Option<String>,
    /// `type`, likewise.
    pub(crate) event_type: Option<String>,
    /// `account`, likewise.
    pub(crate) account: Option<String>,
}

impl Heading {
    pub(crate) fn readable(&self) -> Readable<'_> {
        Readable {
            id: self.id.as_deref(),
            event_type: self.event_type.as_deref(),
            account: self.account.as_deref(),
        }
    }
}

/// Reads `id`, `type` and `account` from the first bytes of a JSON object (a prefix of a
/// line, cut anywhere): the top-level members are read in order, other values skipped,
/// until the three are found or the prefix ends. A value cut by the end of the prefix is
/// not read. Work and memory are bounded by the prefix's length.
pub(crate) fn read_heading(prefix: &[u8]) -> Heading {
    let mut heading = Heading::default();
    let mut deserializer = serde_json::Deserializer::from_slice(prefix);
    // The prefix ends inside the object, so this always ends in an error: what matters is
    // what was read before it.
    let _ = de::DeserializeSeed::deserialize(HeadingSeed(&mut heading), &mut deserializer);
    heading
}

struct HeadingSeed<'h>(&'h mut Heading);

impl<'de> de::DeserializeSeed<'de> for HeadingSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for HeadingSeed<'_> {
    type Value = ();
    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let heading = self.0;
        while let Some(key) = map.next_key::<Text<'de>>()? {
            let slot = match key.as_str() {
                Some("id") => &mut heading.id,
                Some("type") => &mut heading.event_type,
                Some("account") => &mut heading.account,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            // The first value of a repeated member counts, as it would be read first.
            if let Text::Str(value) = map.next_value::<Text<'de>>()? {
                slot.get_or_insert_with(|| value.into_owned());
            }
            if heading.id.is_some() && heading.event_type.is_some() && heading.account.is_some() {
                break;
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Encoding events

/// The INTERFACE.md JSON of an event, one line without a newline: common fields, then the
/// type's fields in the INTERFACE.md table order. Amounts are JSON strings; `report` and
/// `reason` are always written. `decode_event(encode_event(e)) == e` for every event whose
/// decimal fields are [`DecimalField::Parsed`].
pub fn encode_event(event: &Event) -> String {
    let mut out = Vec::with_capacity(128 + 32 * event.code_count());
    encode_event_into(event, &mut out);
    into_string(out)
}

/// [`encode_event`], appended to a byte buffer (no allocation per event).
pub fn encode_event_into(event: &Event, out: &mut Vec<u8>) {
    let mut object = ObjectWriter::begin(out);
    object.str("id", &event.id);
    object.str("type", event.kind().as_str());
    object.ts("ts", event.ts);
    object.str("account", &event.account);
    match &event.body {
        Body::Order { order, gtin, quantity } => {
            object.str("order", order);
            object.str("gtin", gtin);
            object.u64("quantity", *quantity);
        }
        Body::OrderCancel { order } => object.str("order", order),
        Body::Emission { order, gtin, codes } => {
            object.str("order", order);
            object.str("gtin", gtin);
            object.strings("codes", codes);
        }
        Body::Application { report, codes } => {
            object.str("report", report);
            object.strings("codes", codes);
        }
        Body::Dropout { codes, reason } => {
            object.strings("codes", codes);
            object.str("reason", reason);
        }
        Body::Defect { codes, act_date } => {
            object.strings("codes", codes);
            let date = format!("{:04}-{:02}-{:02}", act_date.year(), act_date.month(), act_date.day());
            object.str("act_date", &date);
        }
        Body::Introduction { codes } => object.strings("codes", codes),
        Body::Payment { amount, channel } => {
            object.decimal("amount", amount);
            object.str("channel", channel);
        }
        Body::Compensation { amount, reason } => {
            object.decimal("amount", amount);
            object.str("reason", reason);
        }
        Body::Refund { amount } => object.decimal("amount", amount),
        Body::Tariff {
            effective_from,
            net_price,
            vat_rate,
        } => {
            object.ts("effective_from", *effective_from);
            object.decimal("net_price", net_price);
            object.decimal("vat_rate", vat_rate);
        }
        Body::Terminate | Body::Export => {}
    }
    object.end();
}

// ---------------------------------------------------------------------------------------
// Rendering outputs

/// Which of the five output files a record goes to.
pub fn output_file(output: &Output) -> OutputFile {
    match output {
        Output::Status(_) => OutputFile::Status,
        Output::Ledger(_) => OutputFile::Ledger,
        Output::Balance(_) => OutputFile::Balances,
        Output::Rejection(_) => OutputFile::Rejections,
        Output::Period(_) => OutputFile::Periods,
        Output::Deleted(Deletion::Balance { .. }) => OutputFile::Balances,
        Output::Deleted(Deletion::Period { .. }) => OutputFile::Periods,
        Output::Export(_) => OutputFile::Exports,
    }
}

/// One output record as a JSON line (no newline), with exactly the INTERFACE.md fields in
/// a fixed key order.
pub fn render_output(output: &Output) -> String {
    let mut out = Vec::with_capacity(256);
    render_output_into(output, &mut out);
    into_string(out)
}

/// [`render_output`], appended to a byte buffer (no allocation per record beyond the
/// rendered money and timestamps).
pub fn render_output_into(output: &Output, out: &mut Vec<u8>) {
    match output {
        Output::Status(status) => render_status(status, out),
        Output::Ledger(entry) => render_ledger(entry, out),
        Output::Balance(balance) => render_balance(balance, out),
        Output::Rejection(rejection) => render_rejection(rejection, out),
        Output::Period(period) => render_period(period, out),
        Output::Deleted(deletion) => render_deletion(deletion, out),
        Output::Export(line) => render_export(line, out),
    }
}

/// A deleted key (DOMAIN.md §9): the key's fields, the next `rev` and `"deleted": true`.
/// A period key's deletion is `final`: the key never comes back.
fn render_deletion(deletion: &Deletion, out: &mut Vec<u8>) {
    let mut object = ObjectWriter::begin(out);
    match deletion {
        Deletion::Balance { account, rev, ts } => {
            object.str("account", account);
            object.ts("ts", *ts);
            object.u64("rev", *rev);
        }
        Deletion::Period { key, rev } => {
            object.str("kind", key.kind.as_str());
            object.str("account", &key.account);
            object.str("period", &key.period.to_string());
            object.opt_str("sub", key.sub.as_deref());
            object.u64("rev", *rev);
            object.bool("final", true);
        }
    }
    object.bool("deleted", true);
    object.end();
}

/// One export line (INTERFACE.md "Exports"): a record with its `seq`, or the closing line.
fn render_export(line: &ExportLine, out: &mut Vec<u8>) {
    let mut object = ObjectWriter::begin(out);
    object.str("export", &line.export);
    object.str("account", &line.account);
    object.ts("ts", line.ts);
    match &line.item {
        ExportItem::Record { seq, record } => {
            object.u64("seq", *seq);
            let mut rendered = Vec::with_capacity(256);
            render_period(record, &mut rendered);
            object.raw("record", &rendered);
        }
        ExportItem::Complete { records } => {
            object.bool("complete", true);
            object.u64("records", *records);
        }
    }
    object.end();
}

fn render_status(status: &StatusChange, out: &mut Vec<u8>) {
    let mut object = ObjectWriter::begin(out);
    object.opt_str("event", status.event.as_deref());
    object.str("account", &status.account);
    object.str("gtin", &status.gtin);
    object.opt_str("from", status.from.map(|from| from.as_str()));
    object.str("to", status.to.as_str());
    object.ts("ts", status.ts);
    object.bool("late", status.late);
    object.strings("codes", &status.codes);
    object.end();
}

fn render_ledger(entry: &LedgerEntry, out: &mut Vec<u8>) {
    let mut object = ObjectWriter::begin(out);
    object.str("account", &entry.account);
    object.str("entry", entry.entry.as_str());
    object.money("amount", entry.amount);
    object.money("balance", entry.balance);
    object.ts("ts", entry.ts);
    object.str("event", &entry.event);
    object.opt_u64("codes", entry.codes);
    object.bool("late", entry.late);
    object.str("period", &entry.period.to_string());
    object.end();
}

fn render_balance(balance: &BalanceRecord, out: &mut Vec<u8>) {
    let mut object = ObjectWriter::begin(out);
    object.str("account", &balance.account);
    object.money("balance", balance.balance);
    object.u64("unpaid_codes", balance.unpaid_codes);
    object.money("unpaid_amount", balance.unpaid_amount);
    object.u64("pending_orders", balance.pending_orders);
    object.ts("ts", balance.ts);
    object.u64("rev", balance.rev);
    object.end();
}

fn render_rejection(rejection: &Rejection, out: &mut Vec<u8>) {
    let mut object = ObjectWriter::begin(out);
    object.opt_str("event", rejection.event.as_deref());
    object.opt_str("type", rejection.event_type.as_deref());
    object.opt_str("account", rejection.account.as_deref());
    object.opt_str("code", rejection.code.as_deref());
    object.str("reason", rejection.reason.as_str());
    object.str("detail", &rejection.detail);
    object.opt_str("raw", rejection.raw.as_deref());
    object.end();
}

fn render_period(record: &PeriodRecord, out: &mut Vec<u8>) {
    let mut object = ObjectWriter::begin(out);
    object.str("kind", record.key.kind.as_str());
    object.str("account", &record.key.account);
    object.str("period", &record.key.period.to_string());
    object.opt_str("sub", record.key.sub.as_deref());
    object.u64("rev", record.rev);
    object.bool("final", record.is_final);
    match &record.figures {
        Figures::Act {
            codes_paid,
            net,
            vat,
            gross,
        } => {
            object.u64("codes_paid", *codes_paid);
            object.money("net", *net);
            object.money("vat", *vat);
            object.money("gross", *gross);
        }
        Figures::Reconciliation {
            opening,
            payments,
            compensations,
            services,
            refunds,
            closing,
        } => {
            object.money("opening", *opening);
            object.money("payments", *payments);
            object.money("compensations", *compensations);
            object.money("services", *services);
            object.money("refunds", *refunds);
            object.money("closing", *closing);
        }
        Figures::Product {
            codes_emitted,
            codes_applied,
            codes_paid,
            first_application,
            last_application,
        } => {
            object.u64("codes_emitted", *codes_emitted);
            object.u64("codes_applied", *codes_applied);
            object.u64("codes_paid", *codes_paid);
            object.opt_ts("first_application", *first_application);
            object.opt_ts("last_application", *last_application);
        }
        Figures::Turnover {
            opening,
            charged,
            paid,
            compensations,
            refunds,
            closing,
        } => {
            object.money("opening", *opening);
            object.money("charged", *charged);
            object.money("paid", *paid);
            object.money("compensations", *compensations);
            object.money("refunds", *refunds);
            object.money("closing", *closing);
        }
        Figures::Debtors {
            unpaid_codes,
            amount_owed,
            oldest_unpaid_application,
        } => {
            object.u64("unpaid_codes", *unpaid_codes);
            object.money("amount_owed", *amount_owed);
            object.opt_ts("oldest_unpaid_application", *oldest_unpaid_application);
        }
        Figures::Payments { count, amount } => {
            object.u64("count", *count);
            object.money("amount", *amount);
        }
        Figures::Sla {
            orders,
            emitted_within_4h,
            late,
            pending,
        } => {
            object.u64("orders", *orders);
            object.u64("emitted_within_4h", *emitted_within_4h);
            object.u64("late", *late);
            object.u64("pending", *pending);
        }
        Figures::RefundDue { balance, since, reason } => {
            object.money("balance", *balance);
            object.ts("since", *since);
            object.str("reason", reason.as_str());
        }
    }
    object.end();
}

// ---------------------------------------------------------------------------------------
// The object writer

/// Writes one JSON object with keys in call order. Keys are fixed identifiers written as
/// they are; values that are strings are escaped by `serde_json`.
struct ObjectWriter<'o> {
    out: &'o mut Vec<u8>,
    empty: bool,
}

impl<'o> ObjectWriter<'o> {
    fn begin(out: &'o mut Vec<u8>) -> Self {
        out.push(b'{');
        ObjectWriter { out, empty: true }
    }

    fn key(&mut self, key: &str) {
        debug_assert!(key.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_'));
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        write_json_string(self.out, value);
    }

    fn opt_str(&mut self, key: &str, value: Option<&str>) {
        match value {
            Some(value) => self.str(key, value),
            None => self.null(key),
        }
    }

    fn null(&mut self, key: &str) {
        self.key(key);
        self.out.extend_from_slice(b"null");
    }

    /// A value that is already JSON (a nested object rendered by this module).
    fn raw(&mut self, key: &str, json: &[u8]) {
        self.key(key);
        self.out.extend_from_slice(json);
    }

    fn u64(&mut self, key: &str, value: u64) {
        self.key(key);
        // Writing into a Vec cannot fail.
        let _ = write!(self.out, "{value}");
    }

    fn opt_u64(&mut self, key: &str, value: Option<u64>) {
        match value {
            Some(value) => self.u64(key, value),
            None => self.null(key),
        }
    }

    fn bool(&mut self, key: &str, value: bool) {
        self.key(key);
        self.out
            .extend_from_slice(if value { b"true" as &[u8] } else { b"false" });
    }

    fn strings(&mut self, key: &str, values: &[String]) {
        self.key(key);
        self.out.push(b'[');
        for (index, value) in values.iter().enumerate() {
            if index > 0 {
                self.out.push(b',');
            }
            write_json_string(self.out, value);
        }
        self.out.push(b']');
    }

    fn money(&mut self, key: &str, value: Money) {
        self.str(key, &money::render(value));
    }

    fn decimal(&mut self, key: &str, value: &DecimalField) {
        match value {
            DecimalField::Parsed(value) => self.str(key, &value.to_string()),
            DecimalField::Invalid(text) => self.str(key, text),
        }
    }

    fn ts(&mut self, key: &str, value: Ts) {
        self.str(key, &value.render());
    }

    fn opt_ts(&mut self, key: &str, value: Option<Ts>) {
        match value {
            Some(value) => self.ts(key, value),
            None => self.null(key),
        }
    }

    fn end(self) {
        self.out.push(b'}');
    }
}

fn write_json_string(out: &mut Vec<u8>, value: &str) {
    // Serialising a str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

fn into_string(bytes: Vec<u8>) -> String {
    // The writer only appends whole UTF-8 strings and ASCII, so this never loses anything.
    String::from_utf8(bytes).unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests;
