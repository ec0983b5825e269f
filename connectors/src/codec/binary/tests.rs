//! Tests of the binary codec: round trips, framing, corruption and truncation recovery.

use super::*;
use crate::codec::json::encode_event;
use crate::samples::every_kind;
use markledger_operators::output::{Rejection, RAW_BYTES_MAX};
use markledger_operators::Reason;
use std::io::Cursor;

fn frames(records: &[BinaryRecord]) -> Vec<u8> {
    let mut out = Vec::new();
    for record in records {
        encode_record(record, &mut out);
    }
    out
}

fn read_all(bytes: Vec<u8>) -> Vec<Decoded> {
    let mut reader = BinaryReader::new(Cursor::new(bytes));
    let decoded: Vec<Decoded> = reader.by_ref().collect();
    assert!(reader.io_error().is_none());
    decoded
}

fn refused(decoded: &Decoded) -> &Rejection {
    match decoded {
        Decoded::Refused(rejection) => rejection,
        Decoded::Event(event) => panic!("expected a refusal, got {event:?}"),
    }
}

#[test]
fn every_kind_round_trips() {
    // Frames each hand-made event of all 11 types, reads the stream back, and compares;
    // bytes_read must equal the stream length.
    let events = every_kind();
    let records: Vec<BinaryRecord> = events.iter().cloned().map(BinaryRecord::Event).collect();
    let bytes = frames(&records);
    let length = bytes.len() as u64;
    let mut reader = BinaryReader::new(Cursor::new(bytes));
    let decoded: Vec<Decoded> = reader.by_ref().collect();
    let expected: Vec<Decoded> = events.into_iter().map(Decoded::Event).collect();
    assert_eq!(decoded, expected);
    assert_eq!(reader.bytes_read(), length);
}

#[test]
fn a_frame_is_a_length_prefix_and_the_bincode_record() {
    // Checks the frame layout by hand: u32 LE length, then variant 0 (Event) followed by
    // exactly canonical_bytes of the event; canonical bytes are deterministic and distinct.
    let events = every_kind();
    for event in &events {
        let mut frame = Vec::new();
        encode_record(&BinaryRecord::Event(event.clone()), &mut frame);
        let canonical = canonical_bytes(event);
        let length = u32::from_le_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(length, frame.len() - 4);
        assert_eq!(frame[4], 0, "variant index of Event");
        assert_eq!(&frame[5..], canonical.as_slice());
        assert_eq!(canonical_bytes(&event.clone()), canonical);
    }
    let distinct: std::collections::BTreeSet<Vec<u8>> = events.iter().map(canonical_bytes).collect();
    assert_eq!(distinct.len(), events.len());
    // A binary event is smaller than its JSON line.
    let application = events.iter().find(|event| event.code_count() == 500).unwrap();
    assert!(canonical_bytes(application).len() < encode_event(application).len());
}

#[test]
fn raw_records_decode_as_json_lines() {
    // Frames raw JSON lines (a good one, a malformed one, an unknown type, a blank one)
    // and checks they decode exactly as decode_event would; the blank one is skipped.
    let good = encode_event(&every_kind()[1]);
    let records = [
        BinaryRecord::Raw(good.clone().into_bytes()),
        BinaryRecord::Raw(b"{\"id\":\"bad-1\",\"type\":\"payment\"".to_vec()),
        BinaryRecord::Raw(b"   \r".to_vec()),
        BinaryRecord::Raw(br#"{"id":"u-1","type":"gift","account":"KZ-1"}"#.to_vec()),
    ];
    let decoded = read_all(frames(&records));
    assert_eq!(decoded.len(), 3);
    assert_eq!(decoded[0], Decoded::Event(every_kind()[1].clone()));
    let malformed = refused(&decoded[1]);
    assert_eq!(malformed.reason, Reason::Malformed);
    assert_eq!(malformed.raw.as_deref(), Some("{\"id\":\"bad-1\",\"type\":\"payment\""));
    assert_eq!(refused(&decoded[2]).reason, Reason::UnknownType);
    assert_eq!(refused(&decoded[2]).event.as_deref(), Some("u-1"));
    // decode_frame on its own refuses the blank record instead of skipping it.
    let mut frame = Vec::new();
    encode_record(&BinaryRecord::Raw(b" ".to_vec()), &mut frame);
    assert_eq!(refused(&decode_frame(&frame[4..])).detail, "empty record");
}

#[test]
fn a_corrupted_frame_in_the_middle_loses_only_itself() {
    // Writes three events, overwrites the middle frame's payload with 0xFF, and checks the
    // reader yields event, MALFORMED (raw = hex of the payload), event.
    let events = every_kind();
    let mut bytes = Vec::new();
    encode_record(&BinaryRecord::Event(events[0].clone()), &mut bytes);
    let middle_start = bytes.len();
    encode_record(&BinaryRecord::Event(events[3].clone()), &mut bytes);
    let middle_end = bytes.len();
    encode_record(&BinaryRecord::Event(events[5].clone()), &mut bytes);
    for byte in &mut bytes[middle_start + 4..middle_end] {
        *byte = 0xFF;
    }
    let decoded = read_all(bytes);
    assert_eq!(decoded.len(), 3);
    assert_eq!(decoded[0], Decoded::Event(events[0].clone()));
    let rejection = refused(&decoded[1]);
    assert_eq!(rejection.reason, Reason::Malformed);
    assert!(
        rejection.detail.starts_with("broken binary record"),
        "{}",
        rejection.detail
    );
    let raw = rejection.raw.as_deref().unwrap();
    assert!(raw.starts_with("ffff") && raw.len() <= RAW_BYTES_MAX);
    assert_eq!(decoded[2], Decoded::Event(events[5].clone()));
}

#[test]
fn trailing_bytes_inside_a_frame_are_malformed() {
    // Appends a byte to a frame's payload (and its length) and checks MALFORMED, then the
    // next frame still decodes.
    let events = every_kind();
    let mut frame = Vec::new();
    encode_record(&BinaryRecord::Event(events[0].clone()), &mut frame);
    frame.push(0);
    let length = u32::try_from(frame.len() - 4).unwrap();
    frame[..4].copy_from_slice(&length.to_le_bytes());
    encode_record(&BinaryRecord::Event(events[1].clone()), &mut frame);
    let decoded = read_all(frame);
    assert_eq!(
        refused(&decoded[0]).detail,
        "broken binary record: 1 bytes after the record"
    );
    assert_eq!(decoded[1], Decoded::Event(events[1].clone()));
}

#[test]
fn a_truncated_final_frame_is_one_malformed_record_and_ends_the_stream() {
    // Cuts a stream inside the last frame's payload, and inside its length prefix, and
    // checks the events before it, then exactly one MALFORMED record.
    let events = every_kind();
    let mut bytes = Vec::new();
    encode_record(&BinaryRecord::Event(events[0].clone()), &mut bytes);
    let first_end = bytes.len();
    encode_record(&BinaryRecord::Event(events[6].clone()), &mut bytes);
    for cut in [bytes.len() - 1, first_end + 6, first_end + 4, first_end + 2] {
        let decoded = read_all(bytes[..cut].to_vec());
        assert_eq!(decoded.len(), 2, "cut at {cut}");
        assert_eq!(decoded[0], Decoded::Event(events[0].clone()));
        let rejection = refused(&decoded[1]);
        assert_eq!(rejection.reason, Reason::Malformed);
        assert!(
            rejection.detail.starts_with("truncated binary frame"),
            "{}",
            rejection.detail
        );
    }
}

#[test]
fn an_oversized_frame_is_skipped_without_holding_it() {
    // Declares a frame one byte over FRAME_BYTES_MAX (followed by that many bytes) and
    // then a good frame: one MALFORMED, then the event. A huge declared length at the end
    // of the stream is one truncated MALFORMED.
    let events = every_kind();
    let oversized = FRAME_BYTES_MAX + 1;
    let mut bytes = u32::try_from(oversized).unwrap().to_le_bytes().to_vec();
    bytes.resize(4 + oversized, 7);
    encode_record(&BinaryRecord::Event(events[2].clone()), &mut bytes);
    let decoded = read_all(bytes);
    assert_eq!(decoded.len(), 2);
    assert!(refused(&decoded[0]).detail.contains("exceeds the limit"));
    assert_eq!(decoded[1], Decoded::Event(events[2].clone()));

    let mut bytes = u32::MAX.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"short");
    let decoded = read_all(bytes);
    assert_eq!(decoded.len(), 1);
    assert!(refused(&decoded[0]).detail.starts_with("truncated binary frame"));
}

#[test]
fn binary_events_obey_the_json_structural_rules() {
    // Frames structurally bad events (which JSON cannot carry as events) and checks each is
    // refused MALFORMED with the same detail and readable fields as decoding its JSON line.
    let base = every_kind();
    let mut bad = Vec::new();
    let mut event = base[1].clone();
    event.account = "KZ 1".to_owned();
    bad.push(event);
    let mut event = base[0].clone();
    event.account = "KZ-1".to_owned();
    bad.push(event);
    let mut event = base[1].clone();
    event.id = String::new();
    bad.push(event);
    let mut event = base[3].clone();
    event.body = Body::Order {
        order: "ORD-1".to_owned(),
        gtin: "04601234567893".to_owned(),
        quantity: 0,
    };
    bad.push(event);
    let mut event = base[4].clone();
    event.body = Body::OrderCancel { order: "o".repeat(65) };
    bad.push(event);
    let mut event = base[1].clone();
    event.body = Body::Payment {
        amount: crate::samples::decimal("1.00"),
        channel: String::new(),
    };
    bad.push(event);
    for event in bad {
        let mut frame = Vec::new();
        encode_record(&BinaryRecord::Event(event.clone()), &mut frame);
        let from_binary = decode_frame(&frame[4..]);
        let from_json = crate::codec::json::decode_event(encode_event(&event).as_bytes());
        let (binary, json) = (refused(&from_binary), refused(&from_json));
        assert_eq!(binary.reason, Reason::Malformed);
        assert_eq!(binary.detail, json.detail, "{event:?}");
        assert_eq!(
            (&binary.event, &binary.event_type, &binary.account),
            (&json.event, &json.event_type, &json.account)
        );
    }
}

#[test]
fn out_of_range_values_in_a_frame_are_malformed() {
    // Frames mirror records a JSON line cannot express (decimal scale 40, a date beyond
    // chrono's range, a ts in year 10000) and checks each is MALFORMED, not a panic.
    let event = |body: WireBody<'static>, ts: i64| {
        let wire = WireRecord::Event(WireEvent {
            id: Cow::Borrowed("e-1"),
            ts,
            account: Cow::Borrowed("KZ-1"),
            body,
        });
        let mut frame = Vec::new();
        frame_wire(&wire, &mut frame).unwrap();
        decode_frame(&frame[4..])
    };
    let ok_ts = 1_768_449_600_000;
    let bad_scale = event(
        WireBody::Refund {
            amount: WireDecimal::Parsed { mantissa: 1, scale: 40 },
        },
        ok_ts,
    );
    assert_eq!(
        refused(&bad_scale).detail,
        "field `amount` holds an out-of-range decimal"
    );
    assert_eq!(refused(&bad_scale).event_type.as_deref(), Some("refund"));
    let bad_mantissa = event(
        WireBody::Refund {
            amount: WireDecimal::Parsed {
                mantissa: i128::MAX,
                scale: 0,
            },
        },
        ok_ts,
    );
    assert_eq!(refused(&bad_mantissa).reason, Reason::Malformed);
    let bad_date = event(
        WireBody::Defect {
            codes: Cow::Owned(vec![]),
            act_date: i32::MAX,
        },
        ok_ts,
    );
    assert!(refused(&bad_date).detail.starts_with("field `act_date`"));
    let far_date = event(
        WireBody::Defect {
            codes: Cow::Owned(vec![]),
            act_date: NaiveDate::from_ymd_opt(10_000, 1, 1).unwrap().num_days_from_ce(),
        },
        ok_ts,
    );
    assert!(refused(&far_date).detail.starts_with("field `act_date`"));
    let far_ts = event(
        WireBody::Introduction {
            codes: Cow::Owned(vec![]),
        },
        crate::codec::TS_RFC3339_MAX.0 + 1,
    );
    assert!(refused(&far_ts).detail.starts_with("field `ts`"));
    let far_effective = event(
        WireBody::Tariff {
            effective_from: i64::MIN,
            net_price: WireDecimal::Invalid(Cow::Borrowed("x")),
            vat_rate: WireDecimal::Invalid(Cow::Borrowed("y")),
        },
        ok_ts,
    );
    // The account check comes first for a tariff with account "KZ-1".
    assert!(refused(&far_effective).detail.contains("of a tariff must be"));
}

#[test]
fn no_frame_bytes_make_the_reader_panic() {
    // Mutates a multi-frame stream with a fixed-seed xorshift 5,000 times and reads each
    // variant to its end; success is not panicking and every raw staying bounded.
    let records: Vec<BinaryRecord> = every_kind().into_iter().map(BinaryRecord::Event).collect();
    let clean = frames(&records);
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..5_000 {
        let mut bytes = clean.clone();
        for _ in 0..1 + next() % 3 {
            let position = (next() % bytes.len() as u64) as usize;
            bytes[position] = (next() % 256) as u8;
        }
        let cut = bytes.len() - (next() % 8) as usize;
        bytes.truncate(cut);
        for decoded in read_all(bytes) {
            if let Decoded::Refused(rejection) = decoded {
                assert!(rejection.raw.is_none_or(|raw| raw.len() <= RAW_BYTES_MAX));
            }
        }
    }
}
