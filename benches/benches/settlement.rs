//! FIFO settlement on the accounts ([`Accounts`]): one account with a long queue of unpaid
//! codes (applied in reports of 1,000 with a zero balance, so one run per report), then
//!
//! - `small_payments/Q`: payments of 10 codes' worth each (30.02 KZT for 3.0016 a code),
//!   one an instant, until the whole queue of Q codes is paid: each pays the head codes it
//!   covers, and emits its ledger entries, status changes, facts and balance;
//! - `one_payment/Q`: one payment that pays the whole queue.
//!
//! Building the queue is not timed (it is rebuilt for every iteration). Throughput: codes
//! settled.

mod common;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput};
use markledger_benches::scenario::{
    code_events, new_accounts, one_payment, products, small_payments, unpaid_queue, Instant,
};
use markledger_operators::accounts::Accounts;
use markledger_operators::accounts::AccountsOut;
use markledger_operators::machine::Machine;

/// Codes per application report.
const REPORT_CODES: u64 = 1_000;
/// Codes' worth per small payment.
const CODES_PER_PAYMENT: u64 = 10;

/// Accounts holding the queue, and the payments to step.
fn queued(queue: &[Instant], payments: &[Instant]) -> (Accounts, Vec<Instant>) {
    let mut accounts = new_accounts();
    let mut out = Vec::new();
    for instant in queue.iter().cloned() {
        accounts.step(instant.at, instant.to_accounts, &mut out);
    }
    (accounts, payments.to_vec())
}

fn pay((mut accounts, payments): (Accounts, Vec<Instant>)) -> (Accounts, Vec<AccountsOut>) {
    let mut out = Vec::new();
    for instant in payments {
        accounts.step(instant.at, instant.to_accounts, &mut out);
    }
    (accounts, out)
}

fn settlement(c: &mut Criterion) {
    let mut group = c.benchmark_group("settlement");
    group.sampling_mode(SamplingMode::Flat);
    let product = products(1).remove(0);
    let queue_codes = common::scaled(100_000, 3_000);
    let queue = unpaid_queue(&product, queue_codes, REPORT_CODES);
    for (name, payments) in [
        (
            "small_payments",
            small_payments(&product, queue_codes, CODES_PER_PAYMENT),
        ),
        ("one_payment", one_payment(&product, queue_codes)),
    ] {
        assert_eq!(code_events(&payments), queue_codes, "the payments settle the queue");
        group.throughput(Throughput::Elements(queue_codes));
        group.bench_function(BenchmarkId::new(name, queue_codes), |b| {
            b.iter_batched(|| queued(&queue, &payments), pay, BatchSize::PerIteration)
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = settlement
}
criterion_main!(benches);
