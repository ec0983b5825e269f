//! `state-memory DIR|gen:SPEC [--workers N]`: the dataflow's own memory on a dataset (or on
//! the generator straight into the run, no files: `gen:codes=1000000000,bad-rate=0.05`), and
//! its bytes per code held, with the national index's own figures (live codes in RAM, final
//! codes on disk).
//!
//! `markledger run` keeps every output in memory until the end, to write the files in a
//! canonical order, so its peak resident memory is mostly outputs. This runs the same
//! dataflow (default configuration: 5-year retention and de-duplication horizons) on the
//! same partitions, streamed from disk, with a sink that only tallies status changes and
//! drops every output, as tests/tests/long_run.rs does: what stays resident is the engine's
//! state and its buffers in flight.
//!
//! It prints the run's peak resident memory (`VmHWM`, reset just before the run through
//! `/proc/self/clear_refs`) and the resident memory before it, the codes the engine holds
//! at the end — every code emitted, in the national index (none is past the retention
//! horizon in a dataset of months), and of them the live ones (not yet final, also held by
//! their accounts) — and the peak divided by each.

use markledger::checkpoint::NAMES;
use markledger::runner::open_inputs;
use markledger::runtime::{run_inputs, Mode, RunSettings};
use markledger_benches::scenario::config;
use markledger_connectors::partition::PartitionInput;
use markledger_operators::checkpoint::Checkpoints;
use markledger_operators::flow::Time;
use markledger_operators::output::Sink;
use markledger_operators::{Output, Status};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

const MIB: f64 = 1024.0 * 1024.0;

/// Codes per status, from the status changes (new codes count +1, a change moves one),
/// outputs dropped.
#[derive(Default)]
struct StatusTally([i64; Status::ALL.len()]);

impl Sink for StatusTally {
    type Done = [i64; Status::ALL.len()];

    fn emit(&mut self, _time: Time, outputs: &mut Vec<Output>) {
        for output in outputs.drain(..) {
            if let Output::Status(change) = output {
                let n = change.codes.len() as i64;
                self.0[change.to as usize] += n;
                if let Some(from) = change.from {
                    self.0[from as usize] -= n;
                }
            }
        }
    }

    fn finish(self) -> Self::Done {
        self.0
    }
}

/// A field of `/proc/self/status`, in bytes.
fn proc_status(name: &str) -> Result<u64, String> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|error| format!("/proc/self/status: {error}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .ok_or_else(|| format!("no {name} in /proc/self/status"))
}

fn run(dir: &Path, workers: usize, backfill_checkpoint: bool) -> Result<(), String> {
    // The run's own opening of `--input`: files and directories, or the generator.
    let opened = open_inputs(&[dir.to_path_buf()], &|_| true, true).map_err(|error| format!("{error:#}"))?;
    let inputs: Vec<Box<dyn PartitionInput>> = opened.inputs.into_iter().map(|(_, input)| input).collect();
    let generator = opened.generator;
    let partitions = inputs.len();
    // Linux ≥ 4.0: "5" resets the peak (VmHWM) to the current resident set.
    std::fs::write("/proc/self/clear_refs", "5").map_err(|error| format!("/proc/self/clear_refs: {error}"))?;
    let before = proc_status("VmRSS:")?;
    let started = Instant::now();
    let config = config();
    let mut settings = RunSettings::files(&config, workers);
    // A backfill's checkpoint at the end: every machine saves its share as `run --state`
    // does, so the longest worker pause at this many codes held is measured.
    let checkpoints = backfill_checkpoint.then(|| Checkpoints::backfill(workers, &NAMES));
    if let Some(checkpoints) = &checkpoints {
        // No checkpoint file is kept: the stores may collect their garbage from the start
        // (`run --state` names the files already on disk the same way).
        checkpoints.keep_manifests(std::collections::BTreeMap::new());
        settings.mode = Mode::Backfill(checkpoints.clone());
    }
    let result =
        run_inputs(settings, inputs, |_| StatusTally::default(), &mut |_| {}).map_err(|failure| failure.to_string())?;
    let took = started.elapsed().as_secs_f64();
    let peak = proc_status("VmHWM:")?;
    if !result.stats.errors.is_empty() {
        return Err(format!("reading input: {}", result.stats.errors.join("; ")));
    }
    let pipes_peak = generator
        .as_ref()
        .map(|generator| (generator.pipes_peak_bytes(), generator.pipes_overflowed_bytes()));
    if let Some(generator) = generator {
        generator.finish().map_err(|error| format!("{error:#}"))?;
    }
    let mut by_status = [0i64; Status::ALL.len()];
    for tally in &result.sinks {
        for (sum, n) in by_status.iter_mut().zip(tally) {
            *sum += n;
        }
    }
    let count = |statuses: &[Status]| -> u64 { statuses.iter().map(|s| by_status[*s as usize].max(0) as u64).sum() };
    let known = count(&Status::ALL);
    // Annulled codes still unpaid stay live too; the status tally cannot tell them apart,
    // so they count as final here (at most the ANNULLED count).
    let live = count(&[Status::Emitted, Status::AppliedUnpaid, Status::AppliedPaid]);
    let statuses: Vec<String> = Status::ALL
        .iter()
        .filter(|s| by_status[**s as usize] > 0)
        .map(|s| format!("{} {}", s.as_str(), by_status[*s as usize]))
        .collect();
    let code_events = result.stats.code_events;
    println!(
        "state memory: {} ({} partitions), dataflow on {workers} workers, outputs dropped",
        dir.display(),
        partitions
    );
    println!(
        "  run           {code_events} code events in {took:.2} s: {:.0} code events/s",
        code_events as f64 / took.max(1e-9)
    );
    println!(
        "  resident      {:.1} MiB before, peak {:.1} MiB (+{:.1} MiB)",
        before as f64 / MIB,
        peak as f64 / MIB,
        peak.saturating_sub(before) as f64 / MIB
    );
    println!("  codes         {}", statuses.join(", "));
    if let Some((peak, overflowed)) = pipes_peak {
        println!(
            "  generator     its pipes held at most {:.1} MiB of records in RAM at once (waiting while another partition was quiet: in the peak above); {:.1} MiB more waited in their overflow files",
            peak as f64 / MIB,
            overflowed as f64 / MIB
        );
    }
    println!("  codes held    {known} in the index (every code emitted), {live} of them live (not final)");
    let per = |n: u64| if n == 0 { 0.0 } else { peak as f64 / n as f64 };
    println!(
        "  per code      {:.0} bytes of peak per code held, {:.0} per live code",
        per(known),
        per(live)
    );
    let (index_ram, index_disk, index_final) = match &result.final_codes {
        Some(memory) => {
            let per_final = |bytes: u64| bytes as f64 / (memory.final_codes.max(1)) as f64;
            println!(
                "  index         {} live codes in RAM, {} final codes on disk; code state {:.1} MiB in RAM ({:.1} B per final code), {:.1} MiB of run files ({:.1} B per final code)",
                memory.live_codes,
                memory.final_codes,
                memory.ram_bytes as f64 / MIB,
                per_final(memory.ram_bytes),
                memory.disk_bytes as f64 / MIB,
                per_final(memory.disk_bytes),
            );
            let text = &memory.emission_text;
            println!(
                "  emission text {} emissions waiting for expiry: {:.1} MiB in RAM (unsealed buffer), {:.1} MiB of segment files",
                text.emissions,
                text.ram_bytes as f64 / MIB,
                text.disk_bytes as f64 / MIB,
            );
            (memory.ram_bytes, memory.disk_bytes, memory.final_codes)
        }
        None => (0, 0, 0),
    };
    if let Some(checkpoints) = &checkpoints {
        let pauses: Vec<String> = checkpoints
            .longest_saves()
            .iter()
            .map(|(name, took)| format!("{name} {:.1} ms", took.as_secs_f64() * 1e3))
            .collect();
        println!(
            "  checkpoint    longest worker pause {:.1} ms: {}",
            checkpoints.longest_save().as_secs_f64() * 1e3,
            pauses.join(", ")
        );
        if let Some(complete) = checkpoints.take_complete() {
            let cut = complete.encode();
            let shares: Vec<String> = cut
                .shares
                .values()
                .map(|share| format!("{}#{} {} B", share.name, share.worker, share.state.len()))
                .collect();
            println!("  checkpoint    shares: {}", shares.join(", "));
        }
    }
    // One line for scripts.
    println!(
        "  machine       peak_bytes={peak} codes_held={known} live_codes={live} code_events={code_events} \
         index_ram_bytes={index_ram} index_disk_bytes={index_disk} final_codes={index_final} seconds={took:.1}"
    );
    Ok(())
}

/// The dataflow's own memory on a dataset, and its bytes per live code.
#[derive(clap::Parser)]
#[command(name = "state-memory")]
struct Args {
    /// A generated dataset directory (JSON lines or binary), or `gen:SPEC` to run the
    /// generator straight into the dataflow (the keys of `markledger run --input gen:…`).
    dir: PathBuf,
    /// Worker threads of the dataflow.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    workers: u64,
    /// Save a backfill checkpoint at the end (not written) and print each machine's
    /// longest worker pause for it.
    #[arg(long)]
    backfill_checkpoint: bool,
}

fn main() -> ExitCode {
    let args = <Args as clap::Parser>::parse();
    match run(&args.dir, args.workers as usize, args.backfill_checkpoint) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("state-memory: {error}");
            ExitCode::FAILURE
        }
    }
}
