//! The `markledger` command line (INTERFACE.md "Command line").

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use markledger::config::{parse_duration_ms, Config};
use markledger::runner::{render_summary, run_files};
use markledger_operators::WorkingCalendar;
use std::path::PathBuf;
use std::process::ExitCode;

/// markledger: marking codes, prepaid accounts and monthly billing, computed incrementally.
#[derive(Parser)]
#[command(name = "markledger", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run input files (JSON lines or the binary format) and write the five outputs.
    Run(RunArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// Input partitions: files, or directories whose files are partitions.
    #[arg(long, required = true, num_args = 1..)]
    input: Vec<PathBuf>,
    /// Output directory (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Worker threads (the dataflow engine; the reference engine is single-threaded).
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// A working-day calendar file replacing the shipped Kazakhstan 2020–2027 one.
    #[arg(long)]
    calendar: Option<PathBuf>,
    /// Allowed lateness behind a partition's high-water mark (`5s`, `250ms`, `2m`).
    #[arg(long, default_value = "5s")]
    lateness: String,
    /// How long a command on an unknown code waits for its emission.
    #[arg(long, default_value = "60s")]
    hold: String,
    /// A period closes at the end of this day of the next month.
    #[arg(long, default_value_t = 7)]
    close_after_days: u32,
    /// No progress lines (the summary is still printed).
    #[arg(long)]
    quiet: bool,
}

fn config_from(args: &RunArgs) -> Result<Config> {
    let calendar = match &args.calendar {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading calendar {}", path.display()))?;
            WorkingCalendar::parse(&text).with_context(|| format!("calendar {}", path.display()))?
        }
        None => markledger_datasets::calendars::kazakhstan(),
    };
    let mut config = Config::with_calendar(calendar);
    let Some(lateness) = parse_duration_ms(&args.lateness) else { bail!("--lateness {:?}: expected e.g. 5s, 250ms, 2m", args.lateness) };
    let Some(hold) = parse_duration_ms(&args.hold) else { bail!("--hold {:?}: expected e.g. 60s, 2m", args.hold) };
    config.lateness_ms = lateness;
    config.hold_ms = hold;
    config.close_after_days = args.close_after_days;
    if args.close_after_days > 27 {
        bail!("--close-after-days must be at most 27 (a period must close before the next one ends)");
    }
    Ok(config)
}

fn run(args: RunArgs) -> Result<()> {
    let config = config_from(&args)?;
    if args.workers > 1 && !args.quiet {
        eprintln!("note: the reference engine is single-threaded; --workers {} is ignored", args.workers);
    }
    let report = run_files(&config, &args.input, &args.out, args.quiet)?;
    print!("{}", render_summary(&report, &args.out));
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("markledger: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
