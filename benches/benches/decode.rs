//! Decoding input events: JSON lines and binary frames of a generated dataset (the
//! generator of `markledger generate`, 5 % bad records as in the 10^7 benchmark dataset),
//! held in memory so that only decoding is timed. Throughput: code events decoded.
//!
//! `json_lines` and `binary_frames` decode one record at a time ([`decode_event`],
//! [`decode_frame`]); `binary_reader` also splits the frames ([`BinaryReader`] over each
//! partition's bytes), as a file run does.

mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use markledger_benches::dataset::{binary_frames, config, generate_in_memory, json_lines};
use markledger_connectors::codec::binary::{decode_frame, BinaryReader, MAGIC};
use markledger_connectors::codec::json::decode_event;
use markledger_connectors::codec::Decoded;
use markledger_datasets::generator::Format;
use std::hint::black_box;

/// The code events a decoded record names (0 for a refused one).
fn code_events(decoded: Decoded) -> u64 {
    match decoded {
        Decoded::Event(event) => black_box(event).code_count() as u64,
        Decoded::Refused(rejection) => {
            black_box(rejection);
            0
        }
    }
}

fn decode(c: &mut Criterion) {
    let codes = common::scaled(300_000, 5_000);
    let json = generate_in_memory(&config(codes, Format::Json)).expect("a JSON dataset");
    let binary = generate_in_memory(&config(codes, Format::Binary)).expect("a binary dataset");
    let lines: Vec<&[u8]> = json.partitions.iter().flat_map(|p| json_lines(p)).collect();
    let frames: Vec<&[u8]> = binary.partitions.iter().flat_map(|p| binary_frames(p)).collect();
    let total = json.manifest.code_events;
    eprintln!(
        "decode: {} records naming {total} codes; {:.1} MB JSON, {:.1} MB binary",
        lines.len(),
        json.manifest.bytes as f64 / 1e6,
        binary.manifest.bytes as f64 / 1e6
    );

    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(total));
    group.bench_function("json_lines", |b| {
        b.iter(|| {
            let decoded: u64 = lines.iter().map(|line| code_events(decode_event(line))).sum();
            assert_eq!(decoded, total);
        })
    });
    group.bench_function("binary_frames", |b| {
        b.iter(|| {
            let decoded: u64 = frames.iter().map(|frame| code_events(decode_frame(frame))).sum();
            assert_eq!(decoded, total);
        })
    });
    group.bench_function("binary_reader", |b| {
        b.iter(|| {
            let decoded: u64 = binary
                .partitions
                .iter()
                .flat_map(|p| BinaryReader::new(&p[MAGIC.len()..]))
                .map(code_events)
                .sum();
            assert_eq!(decoded, total);
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = decode
}
criterion_main!(benches);
