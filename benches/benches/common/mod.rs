//! What every criterion bench of this crate shares: one configuration that keeps the whole
//! `cargo bench -p markledger-benches` within a few minutes, and workload sizes that shrink
//! under `cargo test` (which runs each routine once, unoptimised).

use criterion::Criterion;
use std::time::Duration;

/// Samples per benchmark: the routines run for tens of milliseconds to seconds each, so a
/// few samples already give a tight interval.
const SAMPLES: usize = 10;
/// Time spent measuring each benchmark.
const MEASUREMENT_SECONDS: u64 = 4;
/// Time spent warming up each benchmark.
const WARM_UP_SECONDS: u64 = 1;

/// The configuration of every bench (command-line flags still override it).
pub fn criterion() -> Criterion {
    Criterion::default()
        .sample_size(SAMPLES)
        .measurement_time(Duration::from_secs(MEASUREMENT_SECONDS))
        .warm_up_time(Duration::from_secs(WARM_UP_SECONDS))
}

/// `full` when benchmarking, `test` under `cargo test`.
pub fn scaled(full: u64, test: u64) -> u64 {
    if markledger_benches::bench_mode() {
        full
    } else {
        test
    }
}
