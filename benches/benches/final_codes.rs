//! The final-code store (operators/src/final_codes; docs/FINAL_CODES.md), holding N
//! records of one worker's share (final over 100 days of event time, default settings,
//! every merge done, the page cache warm):
//!
//! - `negative/N`: 100,000 lookups of absent keys (a new code being emitted: the common
//!   case), answered by the filter in RAM;
//! - `positive/N`: 10,000 lookups of present keys in random order (filter, sparse index,
//!   one 4 KiB block read and checked per run of the key's epoch);
//! - `insert/1000000`: 10^6 inserts into an empty store in time order, with its seals
//!   (write + fsync) and background merges, `advance` every 1,000;
//! - `xorf_per_run/negative/R`: the alternative the store does not take, one xorf
//!   BinaryFuse16 filter per run file: 100,000 absent keys probed against R filters
//!   holding 10^7 keys together (R = 1 is the best case of a single run).
//!
//! Throughput: lookups or inserts (criterion's elem/s).

mod common;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput};
use markledger_operators::final_codes::{FinalRecord, FinalStore, Settings};
use markledger_operators::time::{Ts, MILLIS_PER_DAY};
use markledger_operators::Status;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use xorf::{BinaryFuse16, Filter};

const START: Ts = Ts(1_767_225_600_000);
const NEGATIVE_LOOKUPS: u64 = 100_000;
const POSITIVE_LOOKUPS: u64 = 10_000;
const DAYS: i64 = 100;

fn key(i: u64) -> u128 {
    xxhash_rust::xxh3::xxh3_128(&i.to_le_bytes())
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn at(i: u64, records: u64) -> Ts {
    START.plus_millis((i as i128 * (DAYS * MILLIS_PER_DAY) as i128 / records as i128) as i64)
}

fn directory(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("markledger-bench-final-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Inserts `records` into `store`, in time order.
fn fill(store: &mut FinalStore, records: u64, accounts: &[Arc<str>]) {
    for i in 0..records {
        let record = FinalRecord {
            account: accounts[(mix(i) % accounts.len() as u64) as usize].clone(),
            status: Status::Introduced,
            final_at: at(i, records),
        };
        store.insert(key(i), record).expect("insert");
        if i % 1_000 == 999 {
            store.advance(at(i, records)).expect("advance");
        }
    }
}

fn accounts() -> Vec<Arc<str>> {
    (0..2_000).map(|i| Arc::from(format!("KZ-{i:012}"))).collect()
}

fn lookups(c: &mut Criterion) {
    let mut group = c.benchmark_group("final_codes");
    group.sampling_mode(SamplingMode::Flat);
    let accounts = accounts();
    let sizes = if markledger_benches::bench_mode() {
        vec![1_000_000, 10_000_000]
    } else {
        vec![20_000]
    };
    for records in sizes {
        let dir = directory(&format!("lookups-{records}"));
        let settings = Settings {
            expected_codes: records,
            ..Settings::default()
        };
        let mut store = FinalStore::create(&dir, settings).expect("store");
        fill(&mut store, records, &accounts);
        store.finish_compaction().expect("merged");
        store.checkpoint().expect("sealed");
        let now = at(records, records);
        group.throughput(Throughput::Elements(NEGATIVE_LOOKUPS));
        group.bench_function(BenchmarkId::new("negative", records), |b| {
            b.iter(|| {
                let mut found = 0;
                for i in 0..NEGATIVE_LOOKUPS {
                    found += usize::from(store.get(key(u64::MAX - i), now).expect("get").is_some());
                }
                assert_eq!(found, 0, "absent keys");
            })
        });
        group.throughput(Throughput::Elements(POSITIVE_LOOKUPS));
        let mut round = 0u64;
        group.bench_function(BenchmarkId::new("positive", records), |b| {
            b.iter(|| {
                round += 1;
                for i in 0..POSITIVE_LOOKUPS {
                    let wanted = mix(round << 32 | i) % records;
                    assert!(store.get(key(wanted), now).expect("get").is_some(), "present key");
                }
            })
        });
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
    group.finish();
}

fn inserts(c: &mut Criterion) {
    let mut group = c.benchmark_group("final_codes");
    group.sampling_mode(SamplingMode::Flat);
    let accounts = accounts();
    let records = common::scaled(1_000_000, 20_000);
    let dir = directory("insert");
    group.throughput(Throughput::Elements(records));
    group.bench_function(BenchmarkId::new("insert", records), |b| {
        b.iter_batched(
            || {
                let _ = std::fs::remove_dir_all(&dir);
                FinalStore::create(&dir, Settings::default()).expect("store")
            },
            |mut store| {
                fill(&mut store, records, &accounts);
                store
            },
            BatchSize::PerIteration,
        )
    });
    let _ = std::fs::remove_dir_all(&dir);
    group.finish();
}

fn per_run_filters(c: &mut Criterion) {
    let mut group = c.benchmark_group("final_codes");
    group.sampling_mode(SamplingMode::Flat);
    let records = common::scaled(10_000_000, 20_000);
    for runs in [1u64, 8, 32] {
        let filters: Vec<BinaryFuse16> = (0..runs)
            .map(|run| {
                let keys: Vec<u64> = (0..records / runs).map(|i| key(run * records + i) as u64).collect();
                BinaryFuse16::try_from(&keys[..]).expect("a filter")
            })
            .collect();
        group.throughput(Throughput::Elements(NEGATIVE_LOOKUPS));
        group.bench_function(BenchmarkId::new("xorf_per_run/negative", runs), |b| {
            b.iter(|| {
                let mut found = 0;
                for i in 0..NEGATIVE_LOOKUPS {
                    let probe = key(u64::MAX - i) as u64;
                    found += filters.iter().filter(|filter| filter.contains(&probe)).count();
                }
                black_box(found)
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = lookups, inserts, per_run_filters
}
criterion_main!(benches);
