//! The checks markledger's fuzz targets run on every input (scripts/fuzz.sh runs them;
//! docs/ARCHITECTURE.md, "Fuzzing", says how to run them longer). Each function takes the
//! fuzzer's bytes, feeds them to one decoder and panics when an invariant breaks; libFuzzer
//! reports a panic as a crash and saves the input under `fuzz/artifacts/<target>/`.
//!
//! Invariants, for every input:
//! - the decoder never panics, and never holds more memory than its documented bound;
//! - every record comes out as an event or a refusal: reason `MALFORMED` (with a `raw` of
//!   at most 1 KiB) or `UNKNOWN_TYPE`, and a detail for people (no debug formatting);
//! - a decoded event re-encodes and decodes to the same event, in both formats;
//! - in a stream of good frames, damage never turns into an event that was not written,
//!   and never loses an undamaged frame.

use markledger_connectors::codec::binary::{
    decode_frame, encode_record, split_frames, BinaryReader, BinaryRecord, Version, FRAME_BYTES_MAX,
    FRAME_HEADER_BYTES, MAGIC,
};
use markledger_connectors::codec::json::{decode_event, encode_event};
use markledger_connectors::codec::Decoded;
use markledger_operators::event::{Body, DecimalField};
use markledger_operators::output::RAW_BYTES_MAX;
use markledger_operators::{Event, Reason};
use std::io::Cursor;
use std::sync::OnceLock;

/// The longest detail a decoder writes: its sentence, with quoted values cut to 64
/// characters (several at most).
const DETAIL_BYTES_MAX: usize = 1024;

/// Target `json_line`: one JSON input line.
pub fn json_line(data: &[u8]) {
    let decoded = decode_event(data);
    check_record(&decoded);
    if let Decoded::Event(event) = decoded {
        check_round_trips(&event);
    }
}

/// Target `binary_reader`: the first byte picks a mode, the rest is its input.
/// - 0: the rest as a version-2 stream (after the file header);
/// - 1: the rest as a version-1 stream;
/// - 2: the rest as one frame payload;
/// - 3: the rest as JSON lines, written as a version-2 stream (events as event frames,
///   refusals as raw frames) and read back: the same records come out, then the stream is
///   cut at a point the last two bytes choose and read again;
/// - 4 and up: damage to a fixed stream of good frames, as (position: u16, xor: u8)
///   triples.
pub fn binary_reader(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode {
        0 => read_stream(rest, Version::V2),
        1 => read_stream(rest, Version::V1),
        2 => {
            let decoded = decode_frame(rest);
            check_record(&decoded);
            if let Decoded::Event(event) = decoded {
                check_round_trips(&event);
            }
        }
        3 => written_stream(rest),
        _ => damaged_stream(rest),
    }
}

/// Target `stream_config`: the TOML of `markledger stream --config` (parse only).
pub fn stream_config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        // Parsed or refused, never a panic; a parsed file's values are plain data.
        if let Ok(file) = toml::from_str::<markledger::stream::StreamFile>(text) {
            if let Some(topics) = &file.input_topics {
                assert!(topics.len() <= text.len());
            }
        }
    }
}

fn read_stream(bytes: &[u8], version: Version) {
    let mut reader = BinaryReader::with_version(Cursor::new(bytes), version);
    let mut records = 0usize;
    while let Some(decoded) = reader.next() {
        assert!(
            reader.buffer_capacity() <= FRAME_HEADER_BYTES + FRAME_BYTES_MAX,
            "buffer of {} bytes",
            reader.buffer_capacity()
        );
        check_record(&decoded);
        if let Decoded::Event(event) = decoded {
            check_round_trips(&event);
        }
        records += 1;
        // Every record but a blank one consumes at least one byte.
        assert!(
            records <= bytes.len() + 1,
            "{records} records from {} bytes",
            bytes.len()
        );
    }
    assert!(reader.io_error().is_none());
    assert_eq!(reader.bytes_read(), bytes.len() as u64, "every byte is consumed");
    assert_eq!(reader.buffer_capacity(), 0, "the buffer is freed at the end");
}

/// JSON lines through the writer's framing and back: what a reader of the written stream
/// yields is what decoding the lines yields; a cut stream yields a prefix of it and at most
/// one refusal.
fn written_stream(text: &[u8]) {
    let mut stream = Vec::new();
    let mut expected = Vec::new();
    for line in text.split(|byte| *byte == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let decoded = decode_event(line);
        let record = match &decoded {
            Decoded::Event(event) => BinaryRecord::Event(event.clone()),
            Decoded::Refused(_) => BinaryRecord::Raw(line.to_vec()),
        };
        encode_record(&record, &mut stream);
        expected.push(decoded);
    }
    let read: Vec<Decoded> = BinaryReader::new(Cursor::new(&stream)).collect();
    assert_eq!(read, expected, "a written stream reads back as its records");
    if stream.is_empty() {
        return;
    }
    let cut = text.len() * 7919 % stream.len();
    let read: Vec<Decoded> = BinaryReader::new(Cursor::new(&stream[..cut])).collect();
    let (last, before) = match read.split_last() {
        Some((last, before)) => (Some(last), before),
        None => (None, &read[..]),
    };
    match last {
        Some(Decoded::Refused(rejection)) if rejection.detail.contains("skipped up to the end") => {
            assert_eq!(before, &expected[..before.len()]);
        }
        _ => assert_eq!(
            read,
            expected[..read.len()],
            "a cut at a frame boundary loses nothing before it"
        ),
    }
}

/// A good stream of one frame per sample event, damaged by the fuzzer's xors: every event
/// of an undamaged frame comes out, in order, and nothing else but refusals.
fn damaged_stream(damage: &[u8]) {
    let (clean, spans, events) = sample_stream();
    let mut bytes = clean.clone();
    // The frames only: the file header is not read by a BinaryReader.
    let frames = bytes.len() - MAGIC.len();
    for triple in damage.chunks_exact(3) {
        let position = MAGIC.len() + usize::from(u16::from_le_bytes([triple[0], triple[1]])) % frames;
        bytes[position] ^= triple[2];
    }
    // A frame is damaged when any of its bytes differs in the end (two equal xors at one
    // position undo each other).
    let damaged: Vec<bool> = spans
        .iter()
        .map(|span| bytes[span.clone()] != clean[span.clone()])
        .collect();
    let mut got = Vec::new();
    let mut refusals = 0;
    for decoded in BinaryReader::new(Cursor::new(&bytes[MAGIC.len()..])) {
        check_record(&decoded);
        match decoded {
            Decoded::Event(event) => got.push(event),
            Decoded::Refused(_) => refusals += 1,
        }
    }
    let wanted: Vec<Event> = events
        .iter()
        .zip(&damaged)
        .filter(|(_, damaged)| !**damaged)
        .map(|(event, _)| event.clone())
        .collect();
    assert_eq!(
        got, wanted,
        "damage lost a good frame or made an event that was not written"
    );
    let damaged_frames = damaged.iter().filter(|damaged| **damaged).count();
    assert!(refusals <= damaged_frames && (damaged_frames == 0) == (refusals == 0));
}

type SampleStream = (Vec<u8>, Vec<std::ops::Range<usize>>, Vec<Event>);

/// A binary file (header included) of one frame per event of a few sample lines.
fn sample_stream() -> &'static SampleStream {
    static STREAM: OnceLock<SampleStream> = OnceLock::new();
    STREAM.get_or_init(|| {
        let lines = [
            r#"{"id":"p-1","type":"payment","ts":"2026-01-15T09:00:00+05:00","account":"KZ-1","amount":"1000.00","channel":"Halyk"}"#,
            r#"{"id":"e-1","type":"emission","ts":"2026-01-15T09:20:00+05:00","account":"KZ-1","order":"O-1","gtin":"04601234567893","codes":["0104601234567893215abc\u001d91EE06","x"]}"#,
            r#"{"id":"a-1","type":"application","ts":"2026-01-15T09:30:00.250+05:00","account":"KZ-1","report":"R-1","codes":["x"]}"#,
            r#"{"id":"t-1","type":"tariff","ts":"2025-12-20T10:00:00+05:00","account":"*","effective_from":"2026-01-01T00:00:00+05:00","net_price":"2.68","vat_rate":"0.12"}"#,
            r#"{"id":"d-1","type":"defect","ts":"2026-01-16T11:00:00+05:00","account":"KZ-1","codes":["x"],"act_date":"2026-01-14"}"#,
            r#"{"id":"r-1","type":"refund","ts":"2026-02-01T12:00:00+05:00","account":"KZ-1","amount":"0.01"}"#,
        ];
        let events: Vec<Event> = lines
            .iter()
            .map(|line| match decode_event(line.as_bytes()) {
                Decoded::Event(event) => event,
                Decoded::Refused(rejection) => panic!("sample refused: {}", rejection.detail),
            })
            .collect();
        let mut bytes = MAGIC.to_vec();
        let mut spans: Vec<std::ops::Range<usize>> = Vec::new();
        for event in &events {
            let start = bytes.len();
            encode_record(&BinaryRecord::Event(event.clone()), &mut bytes);
            spans.push(start..bytes.len());
        }
        (bytes, spans, events)
    })
}

/// A record is an event, or a refusal with a stable reason, a bounded raw and a detail
/// for people.
fn check_record(decoded: &Decoded) {
    let Decoded::Refused(rejection) = decoded else {
        return;
    };
    match rejection.reason {
        Reason::Malformed => assert!(rejection.raw.is_some(), "a MALFORMED record keeps its raw input"),
        Reason::UnknownType => assert!(rejection.raw.is_none()),
        other => panic!("a decoder refused with {other:?}"),
    }
    assert!(rejection.code.is_none());
    if let Some(raw) = &rejection.raw {
        assert!(raw.len() <= RAW_BYTES_MAX, "raw of {} bytes", raw.len());
    }
    assert!(
        rejection.detail.len() <= DETAIL_BYTES_MAX,
        "detail of {} bytes",
        rejection.detail.len()
    );
    if let Err(why) = markledger_operators::wording::for_people(&rejection.detail) {
        panic!("{why}");
    }
}

/// `decode(encode(e)) == e` in binary always; in JSON when every decimal field parsed (a
/// non-string amount such as `5.0` is kept as its text and re-encoded as a string, which
/// then parses), and JSON encoding is a fixpoint after one round.
fn check_round_trips(event: &Event) {
    let mut frame = Vec::new();
    encode_record(&BinaryRecord::Event(event.clone()), &mut frame);
    let payloads = split_frames(&frame).expect("a frame the encoder wrote verifies");
    assert_eq!(payloads.len(), 1);
    assert_eq!(
        decode_frame(payloads[0]),
        Decoded::Event(event.clone()),
        "binary round trip"
    );

    let line = encode_event(event);
    let again = match decode_event(line.as_bytes()) {
        Decoded::Event(again) => again,
        Decoded::Refused(rejection) => panic!("re-encoded event refused: {} in {line}", rejection.detail),
    };
    if all_decimals_parsed(&event.body) {
        assert_eq!(&again, event, "JSON round trip of {line}");
    } else {
        let line_again = encode_event(&again);
        assert_eq!(line_again, line, "JSON encoding is a fixpoint");
    }
}

fn all_decimals_parsed(body: &Body) -> bool {
    let parsed = |field: &DecimalField| matches!(field, DecimalField::Parsed(_));
    match body {
        Body::Payment { amount, .. } | Body::Compensation { amount, .. } | Body::Refund { amount } => parsed(amount),
        Body::Tariff {
            net_price, vat_rate, ..
        } => parsed(net_price) && parsed(vat_rate),
        _ => true,
    }
}

