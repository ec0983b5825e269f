//! markledger's benchmarks: what the dataflow's speed and memory are compared with.
//!
//! - `benches/run_e2e.sh`: the end-to-end file run (BENCHMARKS.md).
//! - `benches/memory.sh`: peak resident memory of a run and bytes per live code.
//! - `benches/benches/`: criterion benches of the hot parts, each driving one part directly
//!   (no dataflow) and reporting throughput in code events: `decode` (JSON and binary
//!   input), `code_transitions` (the national index, and the index feeding the accounts),
//!   `settlement` (FIFO settlement of long queues), `aggregates` (period revisions),
//!   `final_codes` (the final-code store's lookups and inserts, in operations).
//! - `final-store`: the final-code store at 10^7 records: RAM and disk per record,
//!   checkpoint pause, open, lookups (docs/FINAL_CODES.md).
//! - `bare-loop` ([`bare`]): one thread, decode and per-code transitions in one hash map and
//!   nothing else: the machine's practical limit.
//!
//! The library holds what those share: the bare loop's state machine ([`bare`]), in-memory
//! copies of generated datasets ([`dataset`]) and synthetic workloads for the operators'
//! state machines, chained the way the dataflow chains them ([`scenario`]).

#![deny(missing_docs)]

pub mod bare;
pub mod dataset;
pub mod scenario;

// Every bench and bin measures with the allocator `markledger` runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Whether the process runs as a benchmark (`cargo bench` passes `--bench`), rather than
/// as a quick check under `cargo test`: benches size their workloads by it, so that test
/// runs (debug profile, every routine run once) finish in seconds.
pub fn bench_mode() -> bool {
    std::env::args().any(|arg| arg == "--bench")
}
