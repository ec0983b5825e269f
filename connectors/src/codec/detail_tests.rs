//! Tests that every rejection detail the decoders produce reads as words for a person: no
//! Rust debug formatting (`Utf8 { inner: … }`, `UnexpectedEnd { additional: 1 }`,
//! `Some(…)`, `Parsed(…)`), whatever the input.

use super::*;
use crate::codec::binary::{decode_frame, BinaryReader};
use crate::codec::json::decode_event;
use markledger_operators::wording::for_people;
use std::io::Cursor;

/// The position of a variant in [`DecodeError`]'s declaration. The match has no wildcard,
/// so a new variant does not compile until it is added here and to [`every_variant`].
fn variant_index(error: &DecodeError) -> usize {
    match error {
        DecodeError::NotJson(_) => 0,
        DecodeError::NotObject => 1,
        DecodeError::BadObject(_) => 2,
        DecodeError::Empty => 3,
        DecodeError::Missing(_) => 4,
        DecodeError::NotString(_) => 5,
        DecodeError::BadEventId(_) => 6,
        DecodeError::UnknownType(_) => 7,
        DecodeError::BadTimestamp(..) => 8,
        DecodeError::TimestampOutOfRange(..) => 9,
        DecodeError::BadAccount(_) => 10,
        DecodeError::TariffAccount(_) => 11,
        DecodeError::BadOrder(_) => 12,
        DecodeError::BadQuantity => 13,
        DecodeError::CodesNotArray => 14,
        DecodeError::CodeNotString(_) => 15,
        DecodeError::BadActDate(_) => 16,
        DecodeError::ActDateOutOfRange(_) => 17,
        DecodeError::EmptyChannel => 18,
        DecodeError::BadDecimal(_) => 19,
        DecodeError::LineTooLong(..) => 20,
        DecodeError::BrokenRecord(_) => 21,
        DecodeError::TrailingBytes(_) => 22,
        DecodeError::FrameTooLong(..) => 23,
        DecodeError::TruncatedFrame(..) => 24,
        DecodeError::Skipped(_) => 25,
        DecodeError::DamagedHeader => 26,
    }
}

/// How many variants [`variant_index`] numbers.
const VARIANTS: usize = 27;

fn json_error(input: &str) -> serde_json::Error {
    serde_json::from_str::<serde_json::Value>(input).unwrap_err()
}

/// One or more values of every variant, with arguments as the decoders make them.
fn every_variant() -> Vec<DecodeError> {
    let broken = [0u8, 5, 0xFF];
    let bincode_error =
        bincode::serde::decode_from_slice::<String, _>(&broken[1..], bincode::config::standard()).unwrap_err();
    let mut errors = vec![
        DecodeError::NotJson(describe_json_error(&json_error("{\"id\":"))),
        DecodeError::NotJson(describe_json_error(&json_error("{\"id\" 5}"))),
        DecodeError::NotJson(describe_json_error(&json_error("nope"))),
        DecodeError::NotObject,
        DecodeError::BadObject(describe_json_error(
            &serde_json::from_str::<std::collections::BTreeMap<String, u8>>("{\"a\":-1}").unwrap_err(),
        )),
        DecodeError::Empty,
        DecodeError::Missing("id"),
        DecodeError::NotString("account"),
        DecodeError::BadEventId(preview("")),
        DecodeError::UnknownType(preview("gift")),
        DecodeError::BadTimestamp("ts", preview("yesterday")),
        DecodeError::TimestampOutOfRange("ts", format!("{} ms from 1970-01-01", i64::MAX)),
        DecodeError::TimestampOutOfRange("effective_from", preview("1900-01-01T00:00:00Z")),
        DecodeError::BadAccount(preview("KZ 1")),
        DecodeError::TariffAccount(preview("KZ-1")),
        DecodeError::BadOrder(preview(&"o".repeat(65))),
        DecodeError::BadQuantity,
        DecodeError::CodesNotArray,
        DecodeError::CodeNotString(3),
        DecodeError::BadActDate(preview("2026-02-30")),
        DecodeError::ActDateOutOfRange("day 2147483647".to_owned()),
        DecodeError::ActDateOutOfRange("+10000-01-01".to_owned()),
        DecodeError::EmptyChannel,
        DecodeError::BadDecimal("amount"),
        DecodeError::LineTooLong(70_000_000, 67_108_864),
        DecodeError::BrokenRecord(describe_bincode_error(&bincode_error)),
        DecodeError::TrailingBytes(1),
        DecodeError::FrameTooLong(4_000_000_000, 67_108_928),
        DecodeError::TruncatedFrame(2, 4, FramePart::Length),
        DecodeError::TruncatedFrame(10, 300, FramePart::Payload),
        DecodeError::DamagedHeader,
    ];
    for fault in [
        FrameFault::NoMarker,
        FrameFault::HeaderCheck,
        FrameFault::TooLong(80_000_000),
        FrameFault::Checksum,
        FrameFault::Truncated,
    ] {
        for to_end in [false, true] {
            errors.push(DecodeError::Skipped(Skip {
                offset: 8,
                bytes: 300,
                fault,
                to_end,
            }));
        }
    }
    errors
}

#[test]
fn every_decode_error_renders_for_a_person() {
    // Renders one or more values of every DecodeError variant (the exhaustive
    // `variant_index` makes a new variant fail to compile until it is listed) and checks
    // each text is non-empty and free of debug formatting outside quoted values.
    let errors = every_variant();
    let covered: std::collections::BTreeSet<usize> = errors.iter().map(variant_index).collect();
    assert_eq!(covered, (0..VARIANTS).collect(), "every variant is rendered");
    for error in &errors {
        let detail = error.to_string();
        for_people(&detail).unwrap_or_else(|why| panic!("{why}"));
    }
}

#[test]
fn every_bincode_error_is_described_in_words() {
    // Describes each bincode decode error kind (bincode's own text is its Debug) and checks
    // the words carry no debug formatting.
    use bincode::error::{AllowedEnumVariants, DecodeError as Bincode, IntegerType};
    let invalid = vec![0xFF, 0xFE];
    let utf8 = std::str::from_utf8(&invalid).unwrap_err();
    let errors = [
        Bincode::UnexpectedEnd { additional: 1 },
        Bincode::LimitExceeded,
        Bincode::InvalidIntegerType {
            expected: IntegerType::U32,
            found: IntegerType::U128,
        },
        Bincode::NonZeroTypeIsZero {
            non_zero_type: IntegerType::U8,
        },
        Bincode::UnexpectedVariant {
            type_name: "WireRecord",
            allowed: &AllowedEnumVariants::Range { min: 0, max: 1 },
            found: 7,
        },
        Bincode::Utf8 { inner: utf8 },
        Bincode::InvalidCharEncoding([0xFF; 4]),
        Bincode::InvalidBooleanValue(7),
        Bincode::OutsideUsizeRange(u64::MAX),
        Bincode::Other("something uncommon"),
        Bincode::OtherString("invalid value: integer `40`, expected variant index 0 <= i < 2".to_owned()),
        Bincode::Io {
            inner: std::io::Error::other("gone"),
            additional: 4,
        },
    ];
    for error in &errors {
        let words = describe_bincode_error(error);
        for_people(&words).unwrap_or_else(|why| panic!("{why}"));
    }
    assert_eq!(describe_bincode_error(&errors[0]), "it ends before the record does");
    assert_eq!(
        describe_bincode_error(&errors[5]),
        "a text field in it is not valid UTF-8"
    );
}

#[test]
fn details_of_random_bytes_are_for_people() {
    // Decodes 20,000 seeded random byte strings as JSON lines, as frame payloads and as
    // binary streams of both versions, and checks every detail with `for_people`.
    let mut state: u64 = 0x5DEE_CE66_D1CE_4E5B;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let alphabet = b"{}[]\":,0123456789.-eE truefalsn\\u00ffidtypeaccountcodes\x1d\xff\x00";
    let mut checked = 0;
    for round in 0..20_000 {
        let length = (next() % 200) as usize;
        let bytes: Vec<u8> = if round % 2 == 0 {
            (0..length)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect()
        } else {
            (0..length).map(|_| (next() % 256) as u8).collect()
        };
        let mut decoded = vec![decode_event(&bytes), decode_frame(&bytes)];
        decoded.extend(BinaryReader::new(Cursor::new(bytes.clone())));
        decoded.extend(BinaryReader::with_version(Cursor::new(bytes), binary::Version::V1));
        for record in decoded {
            if let Decoded::Refused(rejection) = record {
                for_people(&rejection.detail).unwrap_or_else(|why| panic!("round {round}: {why}"));
                checked += 1;
            }
        }
    }
    assert!(checked > 40_000, "{checked}");
}

#[test]
fn the_check_itself_catches_debug_formatting() {
    // The checker must refuse what the issue found (bincode's Debug text, Option and
    // decimal debug output) and accept quoted values that contain braces.
    for bad in [
        "broken binary record: UnexpectedEnd { additional: 1 }",
        "broken binary record: Utf8 { inner: Utf8Error { valid_up_to: 0, error_len: Some(1) } }",
        "amount Parsed(1.00)",
        "value Some(\"x\")",
    ] {
        assert!(for_people(bad).is_err(), "{bad}");
    }
    for good in [
        "field `account` must be 1–64 characters of [A-Za-z0-9._-], got \"{x}\"",
        "not valid JSON: expected `,` or `}` at column 7",
    ] {
        assert_eq!(for_people(good), Ok(()), "{good}");
    }
}
