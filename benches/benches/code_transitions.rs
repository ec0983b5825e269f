//! Code-state transitions: new codes emitted, applied and introduced (3 code events a
//! code), in events of 1,000 codes over 10 accounts.
//!
//! - `index/N`: the national index alone ([`Codes`]), N codes: ownership checks and
//!   forwarding, keyed by the code's xxh3-128 fingerprint.
//! - `index_and_accounts/N`: the index feeding the accounts as in the dataflow
//!   ([`Chain`]): the accounts' lifecycle transitions, the balance paying each
//!   application at once, status changes, ledger entries, facts, and finality fed back to
//!   the index.
//!
//! Each iteration starts from empty state; building the inputs is not timed, dropping the
//! state is not timed. Throughput: code events.

mod common;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput};
use markledger_benches::scenario::{code_events, lifecycle, new_codes, products, Chain, Instant};
use markledger_operators::codes::Codes;
use markledger_operators::codes::IndexOut;
use markledger_operators::machine::Machine;

/// Accounts (one product each) the codes are spread over.
const ACCOUNTS: u32 = 10;

fn index_only(instants: Vec<Instant>) -> (Codes, Vec<IndexOut>) {
    let mut codes = new_codes();
    let mut out = Vec::new();
    for instant in instants {
        if !instant.to_codes.is_empty() {
            codes.step(instant.at, instant.to_codes, &mut out);
        }
    }
    assert!(!codes.is_empty());
    (codes, out)
}

fn chained(instants: Vec<Instant>) -> Chain {
    let mut chain = Chain::new(false);
    for instant in instants {
        chain.step(instant);
    }
    debug_assert_eq!(chain.produced().rejections, 0);
    chain
}

fn transitions(c: &mut Criterion) {
    let mut group = c.benchmark_group("code_transitions");
    group.sampling_mode(SamplingMode::Flat);
    let sizes = [common::scaled(100_000, 2_000), common::scaled(1_000_000, 4_000)];
    for codes in sizes {
        let workload = lifecycle(&products(ACCOUNTS), codes / u64::from(ACCOUNTS), 0);
        group.throughput(Throughput::Elements(code_events(&workload)));
        group.bench_with_input(BenchmarkId::new("index", codes), &workload, |b, workload| {
            b.iter_batched(|| workload.clone(), index_only, BatchSize::PerIteration)
        });
        group.bench_with_input(
            BenchmarkId::new("index_and_accounts", codes),
            &workload,
            |b, workload| b.iter_batched(|| workload.clone(), chained, BatchSize::PerIteration),
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = transitions
}
criterion_main!(benches);
