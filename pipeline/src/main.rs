//! The `markledger` command line (INTERFACE.md "Command line").

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use markledger::config::{parse_duration_ms, Config};
use markledger::demo::run_demo;
use markledger::runner::{render_summary, run_files, Engine};
use markledger_datasets::generator::{generate, Format, GeneratorConfig};
use markledger_operators::{Period, WorkingCalendar};
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
    /// Generate a small realistic dataset, run it, and print what came out (no broker needed).
    Demo(DemoArgs),
    /// Generate a seeded, realistic dataset: one file per partition plus manifest.json.
    Generate(GenerateArgs),
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
    /// Worker threads of the dataflow engine.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// `dataflow` (the product) or `reference` (the single-threaded oracle it is checked against).
    #[arg(long, default_value = "dataflow")]
    engine: String,
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

#[derive(clap::Args)]
struct DemoArgs {
    /// Code events to generate.
    #[arg(long, default_value_t = 1_000_000)]
    codes: u64,
    /// Accounts.
    #[arg(long, default_value_t = 200)]
    accounts: u32,
    /// Seed of the generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Keep the dataset and outputs in this directory (default: a temporary one, removed).
    #[arg(long)]
    keep: Option<PathBuf>,
    /// No progress lines.
    #[arg(long)]
    quiet: bool,
}

#[derive(clap::Args)]
struct GenerateArgs {
    /// Output directory (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Accounts.
    #[arg(long, default_value_t = 200)]
    accounts: u32,
    /// Target number of code events (codes named by emissions, applications, dropouts,
    /// defects and introductions).
    #[arg(long, default_value_t = 1_000_000)]
    codes: u64,
    /// Seed: the same flags give byte-identical files.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// `json` (JSON lines) or `bin` (the compact binary format).
    #[arg(long, default_value = "json")]
    format: String,
    /// Fraction of deliberately bad events (0 to 0.5); manifest.json predicts their rejections.
    #[arg(long, default_value_t = 0.0)]
    bad_rate: f64,
    /// Partitions (files), accounts spread over them like Kafka's partitioner.
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    /// Months of traffic.
    #[arg(long, default_value_t = 3)]
    months: u32,
    /// First month, YYYY-MM.
    #[arg(long, default_value = "2026-01")]
    start: String,
    /// No progress lines.
    #[arg(long)]
    quiet: bool,
}

fn generate_command(args: GenerateArgs) -> Result<()> {
    let Some(format) = Format::parse(&args.format) else {
        bail!("--format {:?}: expected json or bin", args.format)
    };
    let Some(start) = Period::parse(&args.start) else {
        bail!("--start {:?}: expected YYYY-MM", args.start)
    };
    let config = GeneratorConfig {
        accounts: args.accounts,
        codes: args.codes,
        seed: args.seed,
        format,
        bad_rate: args.bad_rate,
        partitions: args.partitions,
        months: args.months,
        start,
    };
    let started = std::time::Instant::now();
    let mut last_percent = 0;
    let manifest = generate(&config, &args.out, &mut |progress| {
        let percent = 100 * progress.code_events / progress.target.max(1);
        if !args.quiet && percent >= last_percent + 5 {
            last_percent = percent;
            eprintln!(
                "generating: {percent:>3}%  {} code events, {} events, {:.1} MB",
                progress.code_events,
                progress.events,
                progress.bytes as f64 / 1e6
            );
        }
    })
    .with_context(|| format!("generating into {}", args.out.display()))?;
    let injected: Vec<String> = manifest
        .injected
        .iter()
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect();
    println!("markledger generate: summary");
    println!(
        "  wrote       {} partitions and manifest.json to {}",
        manifest.partitions.len(),
        args.out.display()
    );
    println!(
        "  events      {} naming {} codes",
        manifest.events, manifest.code_events
    );
    println!("  time span   {} .. {}", manifest.first_ts, manifest.last_ts);
    println!(
        "  injected    {}",
        if injected.is_empty() {
            "none".to_string()
        } else {
            injected.join(", ")
        }
    );
    println!("  took        {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn demo(args: DemoArgs) -> Result<()> {
    let generator = GeneratorConfig {
        codes: args.codes,
        accounts: args.accounts,
        seed: args.seed,
        bad_rate: 0.01,
        ..GeneratorConfig::default()
    };
    let config = Config::with_calendar(markledger_datasets::calendars::kazakhstan());
    let (dir, temporary) = match &args.keep {
        Some(dir) => (dir.clone(), false),
        None => (
            std::env::temp_dir().join(format!("markledger-demo-{}", std::process::id())),
            true,
        ),
    };
    let result = run_demo(&config, &generator, &dir, args.quiet);
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let mut text = result?;
    if temporary {
        text = text.replace(
            &format!("outputs are in {}", dir.join("output").display()),
            "(run with --keep DIR to keep the dataset and outputs)",
        );
        // The temporary directory is gone: do not name it as if it held the outputs.
        text = text.replace(
            &dir.join("output").display().to_string(),
            "a temporary directory (removed)",
        );
    }
    print!("{text}");
    Ok(())
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
    let Some(lateness) = parse_duration_ms(&args.lateness) else {
        bail!("--lateness {:?}: expected e.g. 5s, 250ms, 2m", args.lateness)
    };
    let Some(hold) = parse_duration_ms(&args.hold) else {
        bail!("--hold {:?}: expected e.g. 60s, 2m", args.hold)
    };
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
    let engine = match args.engine.as_str() {
        "dataflow" if args.workers >= 1 => Engine::Dataflow { workers: args.workers },
        "dataflow" => bail!("--workers must be at least 1"),
        "reference" => Engine::Reference,
        other => bail!("--engine {other:?}: expected dataflow or reference"),
    };
    let report = run_files(&config, &args.input, &args.out, args.quiet, engine)?;
    print!("{}", render_summary(&report, &args.out));
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo(args),
        Command::Generate(args) => generate_command(args),
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
