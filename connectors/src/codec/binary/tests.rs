//! Tests of the binary codec: round trips, the version-2 frame layout, detection of every
//! flipped byte, resynchronisation after damage, truncation, bounded memory, and version-1
//! files read as before.

use super::*;
use crate::codec::json::encode_event;
use crate::file::READ_BUFFER_BYTES;
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

fn event_frames(events: &[Event]) -> (Vec<u8>, Vec<std::ops::Range<usize>>) {
    let mut out = Vec::new();
    let mut spans = Vec::new();
    for event in events {
        let start = out.len();
        encode_record(&BinaryRecord::Event(event.clone()), &mut out);
        spans.push(start..out.len());
    }
    (out, spans)
}

fn read_version(bytes: Vec<u8>, version: Version) -> Vec<Decoded> {
    let mut reader = BinaryReader::with_version(Cursor::new(bytes), version);
    let mut decoded = Vec::new();
    while let Some(record) = reader.next() {
        // The bounded-memory guarantee holds after every record.
        assert!(reader.buffer_capacity() <= FRAME_HEADER_BYTES + FRAME_BYTES_MAX);
        decoded.push(record);
    }
    assert!(reader.io_error().is_none());
    assert_eq!(reader.buffer_capacity(), 0, "the buffer is freed at the end");
    assert!(!reader.holds_reader(), "the reader is dropped at the end");
    decoded
}

fn read_all(bytes: Vec<u8>) -> Vec<Decoded> {
    read_version(bytes, Version::V2)
}

/// A version-2 frame around any payload, with a valid header check and checksum.
fn framed_payload(payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len()).unwrap();
    let mut frame = FRAME_MARKER.to_vec();
    frame.extend_from_slice(&length.to_le_bytes());
    frame.extend_from_slice(&header_check(length).to_le_bytes());
    frame.extend_from_slice(&xxh3_64_with_seed(payload, checksum_seed(length)).to_le_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// The same records as a version-1 stream (`u32` length + payload each).
fn to_version_1(stream: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for payload in split_frames(stream).unwrap() {
        let payload = unescape(payload).unwrap();
        out.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_le_bytes());
        out.extend_from_slice(&payload);
    }
    out
}

fn refused(decoded: &Decoded) -> &Rejection {
    match decoded {
        Decoded::Refused(rejection) => rejection,
        Decoded::Event(event) => panic!("expected a refusal, got {event:?}"),
    }
}

/// A seeded xorshift generator, replayable from its seed.
fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

#[test]
fn every_kind_round_trips() {
    // Frames each hand-made event of all 11 types, reads the stream back, and compares;
    // bytes_read must equal the stream length.
    let events = every_kind();
    let (bytes, _) = event_frames(&events);
    let length = bytes.len() as u64;
    let mut reader = BinaryReader::new(Cursor::new(bytes));
    let decoded: Vec<Decoded> = reader.by_ref().collect();
    let expected: Vec<Decoded> = events.into_iter().map(Decoded::Event).collect();
    assert_eq!(decoded, expected);
    assert_eq!(reader.bytes_read(), length);
}

#[test]
fn a_frame_is_marker_length_checks_and_the_bincode_record() {
    // Checks the version-2 layout byte by byte: marker, u32 LE length, header check, the
    // seeded xxh3-64 of the payload, then variant 0 (Event) and exactly canonical_bytes of
    // the event; canonical bytes are deterministic and distinct.
    let events = every_kind();
    for event in &events {
        let mut frame = Vec::new();
        encode_record(&BinaryRecord::Event(event.clone()), &mut frame);
        let canonical = canonical_bytes(event);
        assert_eq!(frame[..4], FRAME_MARKER);
        let length = u32::from_le_bytes(frame[4..8].try_into().unwrap());
        assert_eq!(length as usize, frame.len() - FRAME_HEADER_BYTES);
        let check = u32::from_le_bytes(frame[8..12].try_into().unwrap());
        assert_eq!(check, xxhash_rust::xxh3::xxh3_64(&length.to_le_bytes()) as u32);
        let checksum = u64::from_le_bytes(frame[12..20].try_into().unwrap());
        let payload = &frame[FRAME_HEADER_BYTES..];
        assert_eq!(checksum, xxh3_64_with_seed(payload, (2 << 32) | u64::from(length)));
        let bincode = unescape(payload).unwrap();
        assert_eq!(bincode[0], 0, "variant index of Event");
        assert_eq!(&bincode[1..], canonical.as_slice());
        assert!(
            !payload.windows(2).any(|pair| pair == [0xFF, b'M']),
            "no marker inside a payload"
        );
        assert_eq!(canonical_bytes(&event.clone()), canonical);
        assert_eq!(split_frames(&frame), Some(vec![payload]));
    }
    let distinct: std::collections::BTreeSet<Vec<u8>> = events.iter().map(canonical_bytes).collect();
    assert_eq!(distinct.len(), events.len());
    // A binary event is smaller than its JSON line.
    let application = events.iter().find(|event| event.code_count() == 500).unwrap();
    assert!(canonical_bytes(application).len() < encode_event(application).len());
    assert_eq!(MAGIC, b"MLEDGER\x02");
    assert_eq!(Version::of_magic(b"MLEDGER\x02rest"), Some(Version::V2));
    assert_eq!(Version::of_magic(MAGIC_V1), Some(Version::V1));
    assert_eq!(Version::of_magic(b"MLEDGER\x03"), None);
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
    assert_eq!(
        refused(&decode_frame(&frame[FRAME_HEADER_BYTES..])).detail,
        "empty record"
    );
}

#[test]
fn every_single_byte_flip_is_refused_and_loses_only_its_frame() {
    // Flips one byte (a random non-zero xor, at a random position, 20,000 seeded times) in a
    // stream of 12 event frames and reads it: the result must be exactly the 11 untouched
    // events in order with ONE MALFORMED record where the damaged frame was, never an
    // event that was not written.
    let events = every_kind();
    let (clean, spans) = event_frames(&events);
    let mut next = xorshift(0x9E37_79B9_7F4A_7C15);
    for round in 0..20_000 {
        let position = (next() % clean.len() as u64) as usize;
        let flip = 1 + (next() % 255) as u8;
        let mut bytes = clean.clone();
        bytes[position] ^= flip;
        let damaged = spans.iter().position(|span| span.contains(&position)).unwrap();
        let decoded = read_all(bytes);
        let mut expected: Vec<Option<&Event>> = events.iter().map(Some).collect();
        expected[damaged] = None;
        assert_eq!(
            decoded.len(),
            expected.len(),
            "round {round}: flip {flip:#x} at {position}"
        );
        for (got, want) in decoded.iter().zip(&expected) {
            match (got, want) {
                (Decoded::Event(got), Some(want)) => assert_eq!(got, *want, "round {round}"),
                (Decoded::Refused(rejection), None) => {
                    assert_eq!(rejection.reason, Reason::Malformed);
                    assert_eq!(rejection.event, None);
                    assert!(
                        rejection.detail.contains("hold no valid binary frame"),
                        "{}",
                        rejection.detail
                    );
                }
                (got, want) => panic!("round {round}: flip {flip:#x} at {position}: got {got:?}, wanted {want:?}"),
            }
        }
    }
}

#[test]
fn several_flips_never_make_a_foreign_event_and_keep_every_untouched_frame() {
    // Flips 2 to 6 random bytes (5,000 seeded rounds): every untouched frame's event is
    // read, in order, no other event appears, and each refusal stands for at least one
    // damaged frame.
    let events = every_kind();
    let (clean, spans) = event_frames(&events);
    let mut next = xorshift(0x2545_F491_4F6C_DD1D);
    for round in 0..5_000 {
        let mut bytes = clean.clone();
        let mut damaged = std::collections::BTreeSet::new();
        for _ in 0..2 + next() % 5 {
            let position = (next() % clean.len() as u64) as usize;
            bytes[position] ^= 1 + (next() % 255) as u8;
            damaged.insert(spans.iter().position(|span| span.contains(&position)).unwrap());
        }
        let decoded = read_all(bytes);
        let got: Vec<&Event> = decoded
            .iter()
            .filter_map(|decoded| match decoded {
                Decoded::Event(event) => Some(event),
                Decoded::Refused(_) => None,
            })
            .collect();
        let wanted: Vec<&Event> = (0..events.len())
            .filter(|index| !damaged.contains(index))
            .map(|index| &events[index])
            .collect();
        assert_eq!(got, wanted, "round {round}");
        let refusals = decoded.len() - got.len();
        assert!((1..=damaged.len()).contains(&refusals), "round {round}");
    }
}

#[test]
fn a_corrupted_length_resynchronises_and_every_later_frame_is_read() {
    // Sets frame 2's length to 1 GB and, separately, to a plausible 40 bytes: either way
    // the reader yields events 0 and 1, ONE MALFORMED naming frame 2's offset and size
    // (raw = its first bytes in hex), then every later event.
    let events = every_kind();
    let (clean, spans) = event_frames(&events);
    for length in [1_000_000_000u32, 40] {
        let mut bytes = clean.clone();
        let span = spans[2].clone();
        bytes[span.start + 4..span.start + 8].copy_from_slice(&length.to_le_bytes());
        let decoded = read_all(bytes);
        assert_eq!(decoded.len(), events.len());
        assert_eq!(
            decoded[..2],
            [Decoded::Event(events[0].clone()), Decoded::Event(events[1].clone())]
        );
        let rejection = refused(&decoded[2]);
        assert_eq!(rejection.reason, Reason::Malformed);
        let offset = MAGIC.len() + span.start;
        assert_eq!(
            rejection.detail,
            format!(
                "{} bytes from byte {offset} hold no valid binary frame (its header check does not match its \
                 length); skipped up to the next valid frame",
                span.len()
            )
        );
        let raw = rejection.raw.as_deref().unwrap();
        assert!(raw.starts_with("ff4d4cfe"), "{raw}");
        assert!(raw.len() <= RAW_BYTES_MAX);
        for (index, decoded) in decoded.iter().enumerate().skip(3) {
            assert_eq!(decoded, &Decoded::Event(events[index].clone()));
        }
    }
}

#[test]
fn garbage_between_frames_is_one_refusal_and_a_marker_inside_it_is_not_trusted() {
    // Puts 3,000 bytes of garbage, holding false frame markers (with and without a valid
    // header check), between two good frames: one MALFORMED covering exactly the garbage,
    // then the event after it.
    let events = every_kind();
    let mut bytes = Vec::new();
    encode_record(&BinaryRecord::Event(events[1].clone()), &mut bytes);
    let garbage_start = bytes.len();
    let mut next = xorshift(7);
    for index in 0..3_000 {
        bytes.push(if index % 500 == 10 { 0xFF } else { (next() % 256) as u8 });
    }
    bytes[garbage_start + 100..garbage_start + 104].copy_from_slice(&FRAME_MARKER);
    let mut fake = framed_payload(b"\x00\x01\x02");
    fake[12] ^= 1; // a valid header, a bad checksum
    bytes[garbage_start + 200..garbage_start + 200 + fake.len()].copy_from_slice(&fake);
    let garbage_end = bytes.len();
    encode_record(&BinaryRecord::Event(events[2].clone()), &mut bytes);
    let decoded = read_all(bytes);
    assert_eq!(decoded.len(), 3);
    assert_eq!(decoded[0], Decoded::Event(events[1].clone()));
    let detail = &refused(&decoded[1]).detail;
    assert!(
        detail.starts_with(&format!(
            "{} bytes from byte {} hold no valid binary frame (no frame marker there)",
            garbage_end - garbage_start,
            MAGIC.len() + garbage_start
        )),
        "{detail}"
    );
    assert_eq!(decoded[2], Decoded::Event(events[2].clone()));
}

#[test]
fn a_frame_that_verifies_but_does_not_decode_is_refused_alone() {
    // Frames 0xFF bytes and a record with a trailing byte with valid checksums (a writer
    // bug, not damage): each is one MALFORMED naming what is wrong, and the frames around
    // them still decode.
    let events = every_kind();
    let mut bytes = Vec::new();
    encode_record(&BinaryRecord::Event(events[0].clone()), &mut bytes);
    bytes.extend(framed_payload(&[0xFF; 40]));
    let mut payload = Vec::new();
    encode_record(&BinaryRecord::Event(events[3].clone()), &mut payload);
    let mut payload = payload[FRAME_HEADER_BYTES..].to_vec();
    payload.push(0);
    bytes.extend(framed_payload(&payload));
    encode_record(&BinaryRecord::Event(events[5].clone()), &mut bytes);
    let decoded = read_all(bytes);
    assert_eq!(decoded.len(), 4);
    assert_eq!(decoded[0], Decoded::Event(events[0].clone()));
    let broken = refused(&decoded[1]);
    assert_eq!(broken.reason, Reason::Malformed);
    assert!(
        broken.detail.starts_with("the binary record does not decode: "),
        "{}",
        broken.detail
    );
    assert!(broken.raw.as_deref().unwrap().starts_with("ffff"));
    assert_eq!(
        refused(&decoded[2]).detail,
        "the binary record is followed by 1 stray bytes inside its frame"
    );
    assert_eq!(decoded[3], Decoded::Event(events[5].clone()));
}

#[test]
fn a_truncated_final_frame_is_one_malformed_record_at_the_end() {
    // Cuts a stream inside the last frame at every position (marker, length, checks,
    // payload) and checks the events before it, then exactly one MALFORMED record saying
    // the bytes were skipped up to the end of the file.
    let events = every_kind();
    let (bytes, spans) = event_frames(&events[..2]);
    let last = spans[1].clone();
    for cut in last.start + 1..last.end {
        let decoded = read_all(bytes[..cut].to_vec());
        assert_eq!(decoded.len(), 2, "cut at {cut}");
        assert_eq!(decoded[0], Decoded::Event(events[0].clone()));
        let rejection = refused(&decoded[1]);
        assert_eq!(rejection.reason, Reason::Malformed);
        assert_eq!(
            rejection.detail,
            format!(
                "{} bytes from byte {} hold no valid binary frame (the file ends inside it); skipped up to \
                 the end of the file",
                cut - last.start,
                MAGIC.len() + last.start
            )
        );
    }
}

#[test]
fn a_declared_length_over_the_limit_is_refused_from_the_header() {
    // A frame header that verifies but declares FRAME_BYTES_MAX + 1 bytes (only a crafted
    // file has one) is refused without reading or holding its payload; the frame after it
    // is read.
    let events = every_kind();
    let oversized = u32::try_from(FRAME_BYTES_MAX + 1).unwrap();
    let mut bytes = FRAME_MARKER.to_vec();
    bytes.extend_from_slice(&oversized.to_le_bytes());
    bytes.extend_from_slice(&header_check(oversized).to_le_bytes());
    bytes.extend_from_slice(&[0; 8]);
    encode_record(&BinaryRecord::Event(events[2].clone()), &mut bytes);
    let mut reader = BinaryReader::new(Cursor::new(bytes));
    let first = reader.next().unwrap();
    assert!(
        refused(&first)
            .detail
            .contains(&format!("it declares {oversized} bytes, over the frame limit")),
        "{}",
        refused(&first).detail
    );
    assert!(reader.buffer_capacity() <= READ_BUFFER_BYTES);
    assert_eq!(reader.next(), Some(Decoded::Event(events[2].clone())));
    assert_eq!(reader.next(), None);
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
        let from_binary = decode_frame(&frame[FRAME_HEADER_BYTES..]);
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
        decode_frame(&frame[FRAME_HEADER_BYTES..])
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
    assert_eq!(
        refused(&bad_date).detail,
        "field `act_date` is day 2147483647, outside the years 0000–9999"
    );
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
        crate::codec::TS_MAX.0 + 1,
    );
    assert_eq!(
        refused(&far_ts).detail,
        "field `ts` is 253402282800000 ms from 1970-01-01, outside the instants outputs can print in Almaty \
         time (1924-05-01T23:52:12+05:00 to 9999-12-31T23:59:59.999+05:00)"
    );
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
fn no_bytes_make_either_reader_panic_or_hold_more_than_a_frame() {
    // Mutates a multi-frame stream (both versions) with a fixed-seed xorshift 5,000 times,
    // also cutting its end, and reads each variant to its end; success is not panicking,
    // the buffer bound holding after every record (read_version asserts it) and every raw
    // staying bounded.
    let records: Vec<BinaryRecord> = every_kind().into_iter().map(BinaryRecord::Event).collect();
    let clean = frames(&records);
    let clean_v1 = to_version_1(&clean);
    let mut next = xorshift(0x2545_F491_4F6C_DD1D);
    for _ in 0..5_000 {
        for (version, clean) in [(Version::V2, &clean), (Version::V1, &clean_v1)] {
            let mut bytes = clean.clone();
            for _ in 0..1 + next() % 3 {
                let position = (next() % bytes.len() as u64) as usize;
                bytes[position] = (next() % 256) as u8;
            }
            let cut = bytes.len() - (next() % 8) as usize;
            bytes.truncate(cut);
            for decoded in read_version(bytes, version) {
                if let Decoded::Refused(rejection) = decoded {
                    assert!(rejection.raw.is_none_or(|raw| raw.len() <= RAW_BYTES_MAX));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Version 1, read as before

#[test]
fn version_1_streams_still_read_as_before() {
    // Converts a stream of every kind of event to version 1 (length + payload) and reads
    // it back with the version-1 reader: the same events, every byte consumed.
    let events = every_kind();
    let (clean, _) = event_frames(&events);
    let bytes = to_version_1(&clean);
    let length = bytes.len() as u64;
    let mut reader = BinaryReader::with_version(Cursor::new(bytes), Version::V1);
    let decoded: Vec<Decoded> = reader.by_ref().collect();
    assert_eq!(decoded, events.into_iter().map(Decoded::Event).collect::<Vec<_>>());
    assert_eq!(reader.bytes_read(), length);
    assert_eq!(reader.version(), Version::V1);
}

#[test]
fn version_1_a_corrupted_frame_in_the_middle_loses_only_itself() {
    // Writes three events (version 1), overwrites the middle frame's payload with 0xFF, and
    // checks the reader yields event, MALFORMED (raw = hex of the payload), event.
    let events = every_kind();
    let (clean, _) = event_frames(&[events[0].clone(), events[3].clone(), events[5].clone()]);
    let mut bytes = to_version_1(&clean);
    let first = 4 + unescape(split_frames(&clean).unwrap()[0]).unwrap().len();
    let middle = 4 + unescape(split_frames(&clean).unwrap()[1]).unwrap().len();
    for byte in &mut bytes[first + 4..first + middle] {
        *byte = 0xFF;
    }
    let decoded = read_version(bytes, Version::V1);
    assert_eq!(decoded.len(), 3);
    assert_eq!(decoded[0], Decoded::Event(events[0].clone()));
    let rejection = refused(&decoded[1]);
    assert_eq!(rejection.reason, Reason::Malformed);
    assert!(
        rejection.detail.starts_with("the binary record does not decode"),
        "{}",
        rejection.detail
    );
    let raw = rejection.raw.as_deref().unwrap();
    assert!(raw.starts_with("ffff") && raw.len() <= RAW_BYTES_MAX);
    assert_eq!(decoded[2], Decoded::Event(events[5].clone()));
}

#[test]
fn version_1_a_truncated_final_frame_is_one_malformed_record_and_ends_the_stream() {
    // Cuts a version-1 stream inside the last frame's payload and inside its length
    // prefix, and checks the event before it, then exactly one MALFORMED record.
    let events = every_kind();
    let (clean, _) = event_frames(&[events[0].clone(), events[6].clone()]);
    let bytes = to_version_1(&clean);
    let first_end = 4 + unescape(split_frames(&clean).unwrap()[0]).unwrap().len();
    for (cut, detail) in [
        (
            bytes.len() - 1,
            format!(
                "{} of its {}",
                bytes.len() - 1 - first_end - 4,
                bytes.len() - first_end - 4
            ),
        ),
        (first_end + 6, format!("2 of its {}", bytes.len() - first_end - 4)),
        (first_end + 2, "2 of its 4 length bytes".to_owned()),
    ] {
        let decoded = read_version(bytes[..cut].to_vec(), Version::V1);
        assert_eq!(decoded.len(), 2, "cut at {cut}");
        assert_eq!(decoded[0], Decoded::Event(events[0].clone()));
        let rejection = refused(&decoded[1]);
        assert_eq!(rejection.reason, Reason::Malformed);
        assert!(
            rejection
                .detail
                .starts_with(&format!("the file ends inside a binary frame: {detail}")),
            "{}",
            rejection.detail
        );
    }
}

#[test]
fn version_1_an_oversized_frame_is_skipped_without_holding_it() {
    // Declares a version-1 frame one byte over FRAME_BYTES_MAX (followed by that many
    // bytes) and then a good frame: one MALFORMED, then the event, with the buffer never
    // over a read chunk. A huge declared length at the end of the stream is one truncated
    // MALFORMED.
    let events = every_kind();
    let oversized = FRAME_BYTES_MAX + 1;
    let mut bytes = u32::try_from(oversized).unwrap().to_le_bytes().to_vec();
    bytes.resize(4 + oversized, 7);
    let (good, _) = event_frames(&events[2..3]);
    bytes.extend(to_version_1(&good));
    let mut reader = BinaryReader::with_version(Cursor::new(bytes), Version::V1);
    let first = reader.next().unwrap();
    assert_eq!(
        refused(&first).detail,
        format!("a binary frame declares {oversized} bytes, over the limit of {FRAME_BYTES_MAX} bytes; it was skipped")
    );
    assert!(reader.buffer_capacity() <= 2 * READ_BUFFER_BYTES);
    assert_eq!(reader.next(), Some(Decoded::Event(events[2].clone())));
    assert_eq!(reader.next(), None);

    let mut bytes = u32::MAX.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"short");
    let decoded = read_version(bytes, Version::V1);
    assert_eq!(decoded.len(), 1);
    assert!(refused(&decoded[0])
        .detail
        .starts_with("the file ends inside a binary frame: 5 of its 4294967295 payload bytes"));
}

#[test]
fn payloads_escape_0xff_so_a_frame_inside_a_raw_line_is_never_read() {
    // A raw bad line holding a whole valid frame (an event's) and 0xFF bytes: written, it
    // reads back as the line's refusal. With the outer frame's header damaged, the scan
    // must not land on the frame inside the line: one MALFORMED, then the next real frame,
    // and never the embedded event. Also checks the escaping on its own (FF → FF 00, a
    // lone FF refused).
    let events = every_kind();
    let mut line = b"{\"id\":\"x\",\xFF\xFF".to_vec();
    encode_record(&BinaryRecord::Event(events[1].clone()), &mut line);
    line.extend_from_slice(b"\xFF");
    let mut bytes = Vec::new();
    encode_record(&BinaryRecord::Raw(line.clone()), &mut bytes);
    let outer = bytes.len();
    encode_record(&BinaryRecord::Event(events[2].clone()), &mut bytes);
    let expected_line = crate::codec::json::decode_event(&line);
    assert_eq!(
        read_all(bytes.clone()),
        vec![expected_line, Decoded::Event(events[2].clone())]
    );
    for damaged in [0, 5, 9, 13, 30, outer - 1] {
        let mut broken = bytes.clone();
        broken[damaged] ^= 0x40;
        let decoded = read_all(broken);
        assert_eq!(decoded.len(), 2, "damage at {damaged}: {decoded:?}");
        assert!(refused(&decoded[0])
            .detail
            .ends_with("skipped up to the next valid frame"));
        assert_eq!(decoded[1], Decoded::Event(events[2].clone()));
    }
    let mut escaped = vec![1, 2];
    escaped.extend_from_slice(&[0xFF, 3, 0xFF]);
    escape_in_place(&mut escaped, 1);
    assert_eq!(escaped, [1, 2, 0xFF, 0, 3, 0xFF, 0]);
    assert_eq!(unescape(&escaped[1..]).unwrap().as_ref(), [2, 0xFF, 3, 0xFF]);
    assert_eq!(unescape(&[0xFF, 1]), None);
    assert_eq!(unescape(&[2, 0xFF]), None);
}
