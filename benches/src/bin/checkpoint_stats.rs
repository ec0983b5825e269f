//! `checkpoint-stats FILE`: what a checkpoint holds — its time, size, each operator's share
//! in bytes, and the codes the national index holds in it, so BENCHMARKS.md can give the
//! checkpoint's bytes per code kept.

use markledger::checkpoint::{Store, NAMES};
use markledger_operators::codes::Codes;
use std::path::PathBuf;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// What a checkpoint file holds.
#[derive(clap::Parser)]
#[command(name = "checkpoint-stats")]
struct Args {
    /// A checkpoint file (`checkpoint-<time>.mlck` in a `--state` directory).
    file: PathBuf,
}

fn main() -> Result<(), Error> {
    let path = <Args as clap::Parser>::parse().file;
    let bytes = std::fs::metadata(&path)?.len();
    let cut = Store::read(&path)?;
    println!(
        "checkpoint {} at {}: {bytes} bytes, {} workers",
        path.display(),
        cut.time,
        cut.workers
    );
    for name in NAMES {
        let size: usize = (0..cut.workers)
            .filter_map(|worker| cut.share(worker, name))
            .map(|share| share.state.len() + share.carried.len())
            .sum();
        println!("  {name:<40} {size:>12} bytes");
    }
    let mut codes = 0;
    for worker in 0..cut.workers {
        let share = cut
            .share(worker, "Codes: national index")
            .ok_or_else(|| format!("no index share of worker {worker}"))?;
        // Counted without restoring: a restore opens the final-code store, whose files
        // are not next to a checkpoint copied elsewhere.
        codes += Codes::live_codes_of(&share.state)?;
    }
    println!(
        "  codes in the index: {codes}; {:.1} bytes of checkpoint per code kept ({:.1} MB per million codes)",
        bytes as f64 / codes.max(1) as f64,
        bytes as f64 / codes.max(1) as f64
    );
    Ok(())
}
