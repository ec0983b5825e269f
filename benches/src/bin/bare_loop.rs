//! `bare-loop DIR [--no-predecoded]`: the machine's practical limit the dataflow is compared
//! with. One thread reads a generated dataset directory (JSON lines or binary, as
//! `markledger run` reads it), decodes every record and applies each code's lifecycle
//! transition in one hash map ([`BareIndex`]: code fingerprint → account and status), and
//! nothing else: no money, ledger, outputs, de-duplication, holds or time.
//!
//! Passes, each timed on its own (the files are read once first, so every pass reads
//! from the page cache):
//! 1. decode and transitions, streaming: the figure to set beside a `markledger run`;
//! 2. decode alone, into memory (skipped with `--no-predecoded`, which saves holding every
//!    decoded event);
//! 3. transitions alone, on the pre-decoded events, into a fresh map.

use markledger_benches::bare::{BareIndex, Tally};
use markledger_benches::dataset::partition_paths;
use markledger_connectors::codec::Decoded;
use markledger_connectors::file::PartitionReader;
use markledger_operators::Event;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Reads every partition in order, giving each decoded record to `each`. Returns the
/// records refused at decoding.
fn read(paths: &[PathBuf], mut each: impl FnMut(Event)) -> Result<u64, String> {
    let mut refused = 0;
    for path in paths {
        let mut reader = PartitionReader::open(path).map_err(|error| error.to_string())?;
        for record in reader.by_ref() {
            match record {
                Decoded::Event(event) => each(event),
                Decoded::Refused(_) => refused += 1,
            }
        }
        if let Some(error) = reader.io_error() {
            return Err(format!("{}: {error}", path.display()));
        }
    }
    Ok(refused)
}

fn rate(code_events: u64, took: Duration) -> String {
    format!(
        "{code_events} code events in {:.2} s: {:.0} code events/s",
        took.as_secs_f64(),
        code_events as f64 / took.as_secs_f64().max(1e-9)
    )
}

fn summary(index: &BareIndex, refused_records: u64) -> String {
    let Tally {
        accepted,
        already_exists,
        unknown_code,
        wrong_account,
        invalid_transition,
        ..
    } = index.tally();
    let statuses: Vec<String> = index
        .statuses()
        .iter()
        .map(|(status, n)| format!("{} {n}", status.as_str()))
        .collect();
    format!(
        "  codes held    {} ({})\n  transitions   {accepted} taken; refused: ALREADY_EXISTS {already_exists}, \
         UNKNOWN_CODE {unknown_code}, WRONG_ACCOUNT {wrong_account}, INVALID_TRANSITION {invalid_transition}; \
         {refused_records} records refused at decoding",
        index.len(),
        statuses.join(", ")
    )
}

fn run(dir: &Path, predecoded: bool) -> Result<(), String> {
    let paths = partition_paths(dir).map_err(|error| format!("{}: {error}", dir.display()))?;
    if paths.is_empty() {
        return Err(format!("{}: no partition files", dir.display()));
    }
    let started = Instant::now();
    let mut bytes = 0u64;
    for path in &paths {
        bytes += std::fs::read(path)
            .map_err(|error| format!("{}: {error}", path.display()))?
            .len() as u64;
    }
    println!(
        "bare loop: {} ({} partitions, {:.1} MB), one thread",
        dir.display(),
        paths.len(),
        bytes as f64 / 1e6
    );
    println!(
        "  read          {:.2} s (whole files, once)",
        started.elapsed().as_secs_f64()
    );

    let mut index = BareIndex::new();
    let started = Instant::now();
    let refused = read(&paths, |event| index.apply(&event))?;
    let streaming = started.elapsed();
    let code_events = index.tally().code_events;
    println!("  decode+loop   {}", rate(code_events, streaming));
    println!("{}", summary(&index, refused));
    drop(index);
    if !predecoded {
        return Ok(());
    }

    let mut events = Vec::new();
    let started = Instant::now();
    read(&paths, |event| events.push(event))?;
    println!("  decode only   {}", rate(code_events, started.elapsed()));

    let mut index = BareIndex::new();
    let started = Instant::now();
    for event in &events {
        index.apply(event);
    }
    let alone = started.elapsed();
    assert_eq!(index.tally().code_events, code_events, "both passes saw the same codes");
    println!("  loop alone    {}", rate(code_events, alone));
    Ok(())
}

/// The machine's practical limit: decode and per-code hash-map transitions, one thread.
#[derive(clap::Parser)]
#[command(name = "bare-loop")]
struct Args {
    /// A generated dataset directory (JSON lines or binary).
    dir: PathBuf,
    /// Skip the decode-alone and transitions-alone passes (they hold every decoded event).
    #[arg(long)]
    no_predecoded: bool,
}

fn main() -> ExitCode {
    let args = <Args as clap::Parser>::parse();
    match run(&args.dir, !args.no_predecoded) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bare-loop: {error}");
            ExitCode::FAILURE
        }
    }
}
