//! `final-store --records N --dir DIR [--days D] [--lookups L]`: the final-code store
//! (operators/src/final_codes) at scale — RAM and disk per record, insert rate, the pause
//! of a checkpoint, the time to open a checkpoint, and lookups (docs/FINAL_CODES.md).
//!
//! It inserts N records final over D days of event time in time order (one worker's
//! share: keys are xxh3-128 fingerprints), with the default settings (5-year retention,
//! 10-day epochs, 65,536-record memtable, background merges), `advance` every 1,000
//! inserts, then waits for the merges and checkpoints. It prints the store's own heap
//! accounting and the growth of the process's resident memory (`VmRSS`), both per record,
//! and the bytes of the run files per record; then the longest checkpoint pause (sealing a
//! full memtable); then reopens the checkpoint (verifying every file, rebuilding the
//! filter) and times L lookups of absent and of present keys, in random order.

use clap::Parser;
use markledger_operators::final_codes::{FinalRecord, FinalStore, Settings};
use markledger_operators::time::{Ts, MILLIS_PER_DAY};
use markledger_operators::Status;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

#[derive(Parser)]
#[command(about = "The final-code store at scale: RAM, disk, insert, checkpoint, open, lookups")]
struct Args {
    /// Records to insert.
    #[arg(long, default_value_t = 10_000_000)]
    records: u64,
    /// The store's directory (emptied first).
    #[arg(long)]
    dir: PathBuf,
    /// Days of event time the records become final over.
    #[arg(long, default_value_t = 100)]
    days: u64,
    /// Lookups of each kind to time.
    #[arg(long, default_value_t = 1_000_000)]
    lookups: u64,
}

/// The fingerprint of the i-th code.
fn key(i: u64) -> u128 {
    xxhash_rust::xxh3::xxh3_128(&i.to_le_bytes())
}

/// `VmRSS` of this process, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// splitmix64, for lookup order.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn run(args: &Args) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(&args.dir);
    let settings = Settings {
        expected_codes: args.records,
        ..Settings::default()
    };
    let accounts: Vec<Arc<str>> = (0..2_000).map(|i| Arc::from(format!("KZ-{i:012}"))).collect();
    let span_ms = (args.days * MILLIS_PER_DAY as u64) as i64;
    let start = Ts(1_767_225_600_000); // 2026-01-01T00:00:00Z
    let at = |i: u64| start.plus_millis((i as i128 * span_ms as i128 / args.records as i128) as i64);
    let rss_before = rss();
    let mut store = FinalStore::create(&args.dir, settings.clone()).map_err(|e| e.to_string())?;
    let began = Instant::now();
    for i in 0..args.records {
        let record = FinalRecord {
            account: accounts[(mix(i) % 2_000) as usize].clone(),
            status: Status::Introduced,
            final_at: at(i),
        };
        store.insert(key(i), record).map_err(|e| e.to_string())?;
        if i % 1_000 == 999 {
            store.advance(at(i)).map_err(|e| e.to_string())?;
        }
    }
    let inserting = began.elapsed();
    store.finish_compaction().map_err(|e| e.to_string())?;
    let manifest = store.checkpoint().map_err(|e| e.to_string())?;
    let all = began.elapsed();
    let stats = store.stats();
    let rss_after = rss();
    let n = args.records as f64;
    println!("records                     {}", args.records);
    println!(
        "insert (merges running)     {:.2} s, {:.0} ns/record",
        inserting.as_secs_f64(),
        inserting.as_nanos() as f64 / n
    );
    println!("insert + merges + checkpoint {:.2} s", all.as_secs_f64());
    println!("runs / epochs               {} / {}", stats.runs, stats.epochs);
    println!(
        "heap, store's accounting    {} B = {:.2} B/record (filter {:.2}, sparse index {:.3}, memtable {:.3})",
        stats.heap_bytes(),
        stats.heap_bytes() as f64 / n,
        stats.filter_bytes as f64 / n,
        stats.index_bytes as f64 / n,
        stats.memtable_bytes as f64 / n
    );
    println!(
        "filter load                 {:.3}",
        stats.filter_live as f64 / stats.filter_slots as f64
    );
    println!(
        "RSS growth                  {} B = {:.2} B/record",
        rss_after.saturating_sub(rss_before),
        rss_after.saturating_sub(rss_before) as f64 / n
    );
    println!(
        "disk (run files)            {} B = {:.2} B/record",
        stats.disk_bytes,
        stats.disk_bytes as f64 / n
    );
    // A checkpoint's pause: sealing a memtable one record short of full.
    let base = args.records;
    for i in 0..(settings.memtable_records_max as u64 - 1) {
        let record = FinalRecord {
            account: accounts[0].clone(),
            status: Status::Expired,
            final_at: at(args.records - 1),
        };
        store.insert(key(base + i), record).map_err(|e| e.to_string())?;
    }
    let pause = Instant::now();
    let manifest_after = store.checkpoint().map_err(|e| e.to_string())?;
    let pause = pause.elapsed();
    let written = manifest_after.bytes() - manifest.bytes();
    println!(
        "checkpoint pause            {:.1} ms, {} B written ({} records sealed)",
        pause.as_secs_f64() * 1e3,
        written,
        settings.memtable_records_max - 1
    );
    drop(store);
    let opening = Instant::now();
    let store = FinalStore::open(&args.dir, settings, &manifest_after).map_err(|e| e.to_string())?;
    println!("open (verify + rebuild)     {:.2} s", opening.elapsed().as_secs_f64());
    let now = at(args.records);
    let lookups = Instant::now();
    let mut found = 0u64;
    for i in 0..args.lookups {
        found += u64::from(
            store
                .get(key(u64::MAX - mix(i) % (1 << 62)), now)
                .map_err(|e| e.to_string())?
                .is_some(),
        );
    }
    let negative = lookups.elapsed().as_nanos() as f64 / args.lookups as f64;
    let reads = store.stats().lookup_block_reads;
    println!(
        "negative lookup             {negative:.1} ns ({found} false answers, {reads} block reads in {})",
        args.lookups
    );
    let positives = args.lookups.min(200_000);
    let lookups = Instant::now();
    for i in 0..positives {
        let present = store.get(key(mix(i) % args.records), now).map_err(|e| e.to_string())?;
        if present.is_none() {
            return Err(format!("a present key was not found (lookup {i})"));
        }
    }
    println!(
        "positive lookup             {:.0} ns (page cache warm)",
        lookups.elapsed().as_nanos() as f64 / positives as f64
    );
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("final-store: {error}");
            ExitCode::FAILURE
        }
    }
}
