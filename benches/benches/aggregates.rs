//! Aggregate updates: the facts of everyday traffic (20 accounts, 60 days from mid-January
//! into March; every day each account pays, then emits, applies and introduces its day's
//! codes in events of 1,000), made into deltas, consolidated per record and instant (the
//! arrangement's job in the dataflow) and revised per instant ([`Revisions`]: running
//! figures, revisions, month starts and the January and February closes).
//!
//! The facts are produced once, by the index and accounts ([`facts_of`]); only the
//! aggregates are timed. Aggregates work per event and product, not per code, so the
//! throughput in code events (of the traffic the facts came from) is high; the number of
//! facts is printed first, so facts per second follow from the time.
//!
//! [`Revisions`]: markledger_operators::aggregates::Revisions

mod common;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use markledger_benches::scenario::{code_events, consolidate, daily, facts_of, products, revise};

/// Accounts of the traffic.
const ACCOUNTS: u32 = 20;
/// Days of traffic.
const DAYS: u64 = 60;

fn aggregates(c: &mut Criterion) {
    let codes_per_day = common::scaled(1_000, 10);
    let traffic = daily(&products(ACCOUNTS), DAYS, codes_per_day);
    let total = code_events(&traffic);
    let end = traffic.last().expect("traffic").at;
    let facts = facts_of(traffic);
    eprintln!(
        "aggregates: {} facts from {total} code events over {DAYS} days",
        facts.len()
    );
    let mut group = c.benchmark_group("aggregates");
    group.throughput(Throughput::Elements(total));
    group.bench_function(BenchmarkId::new("daily_traffic", total), |b| {
        b.iter_batched(
            || facts.clone(),
            |facts| {
                let records = revise(consolidate(facts), end);
                assert!(records > 0);
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = aggregates
}
criterion_main!(benches);
