//! The `markledger` command line (INTERFACE.md "Command line").

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use markledger::cluster::Cluster;
use markledger::config::{parse_duration_ms, Config};
use markledger::demo::run_demo;
use markledger::runner::{render_summary, run_files, Engine, FileRun, ProgressLine};
use markledger::stream::{run_stream, StreamFile, StreamOptions, StreamReport};
use markledger_connectors::kafka::{produce_dataset, KafkaSettings};
use markledger_datasets::generator::{generate, Format, GeneratorConfig};
use markledger_operators::console::say_text;
use markledger_operators::{Period, WorkingCalendar};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

// Faster than glibc's malloc for the dataflow's many small per-record allocations freed on
// other threads (BENCHMARKS.md "Profile").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// markledger: marking codes, prepaid accounts and monthly billing, computed incrementally.
#[derive(Parser)]
#[command(name = "markledger", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines on stderr: `text` (one line per event, as read by people) or `json` (one
    /// JSON object per event, with time, level and target). Filter with RUST_LOG, e.g.
    /// RUST_LOG=info,librdkafka=warn.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

/// Installs the log subscriber: `note!` lines and librdkafka's own log lines become
/// tracing events, filtered by RUST_LOG (`target=level,…`; default info), written to
/// stderr as text or JSON.
fn init_logs(format: &str) -> Result<()> {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter: Targets = match std::env::var("RUST_LOG") {
        Ok(text) if !text.trim().is_empty() => text
            .parse()
            .map_err(|error| anyhow::anyhow!("RUST_LOG {text:?}: {error}"))?,
        _ => Targets::new().with_default(tracing::Level::INFO),
    };
    let registry = tracing_subscriber::registry().with(filter);
    let installed = if format == "json" {
        registry
            .with(tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr))
            .try_init()
    } else {
        // As the lines always were: the message alone (and an event's fields after it).
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .without_time()
                    .with_target(false)
                    .with_level(false)
                    .with_writer(std::io::stderr),
            )
            .try_init()
    };
    installed.map_err(|error| anyhow::anyhow!("installing the log subscriber: {error}"))?;
    markledger_operators::console::use_tracing();
    Ok(())
}

#[derive(Subcommand)]
enum Command {
    /// Generate a small realistic dataset, run it, and print what came out (no broker needed).
    Demo(DemoArgs),
    /// Generate a seeded, realistic dataset: one file per partition plus manifest.json.
    Generate(GenerateArgs),
    /// Run input files (JSON lines or the binary format) and write the five outputs.
    Run(RunArgs),
    /// Consume the input topics, produce the five output topics; run until SIGTERM/SIGINT.
    Stream(StreamArgs),
    /// Publish a generated dataset to the input topic (partition file i → partition i, key = account).
    Produce(ProduceArgs),
    /// Render a run's final period records as billing documents (PDF to sign, CSV).
    Documents(markledger::documents::DocumentsArgs),
}

#[derive(clap::Args)]
struct StreamArgs {
    /// Bootstrap brokers, HOST:PORT[,HOST:PORT…] (or `brokers` in --config).
    #[arg(long)]
    brokers: Option<String>,
    /// Consumer group the input offsets are committed to.
    #[arg(long)]
    group: Option<String>,
    /// Worker threads of the dataflow (1 to 64), per process on a cluster.
    #[arg(long, value_parser = workers_in_range)]
    workers: Option<usize>,
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Input topics (repeatable; default codes.events).
    #[arg(long = "input-topic")]
    input_topics: Vec<String>,
    /// A prefix for every topic name, input and output (one cluster, several pipelines).
    #[arg(long)]
    topic_prefix: Option<String>,
    /// A TOML file with any of these settings (flags win); see README.md.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Allowed lateness behind a partition's high-water mark.
    #[arg(long)]
    lateness: Option<String>,
    /// A caught-up partition silent this long stops holding the watermark back.
    #[arg(long)]
    idle_timeout: Option<String>,
    /// How often input offsets are committed.
    #[arg(long)]
    commit_interval: Option<String>,
    /// Checkpoint directory: state is restored from its newest valid checkpoint and saved
    /// there every --checkpoint-interval (without it a restart re-reads the inputs).
    #[arg(long)]
    state: Option<PathBuf>,
    /// How often a checkpoint is taken (with --state).
    #[arg(long)]
    checkpoint_interval: Option<String>,
    /// Without --state: where final codes spill to disk (a temporary directory made in it,
    /// removed at the end; default: the system's temporary directory).
    #[arg(long)]
    spill_dir: Option<PathBuf>,
    /// Every final code goes to disk at once (tests of the disk path).
    #[arg(long, hide = true)]
    spill_all: bool,
    /// An event whose ts is further ahead of the wall clock than this is refused
    /// TS_OUT_OF_RANGE (default 1d).
    #[arg(long)]
    max_ahead: Option<String>,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics (README.md "Metrics").
    #[arg(long)]
    metrics_addr: Option<String>,
    /// A librdkafka property for every Kafka client, KEY=VALUE (repeatable; e.g.
    /// security.protocol=sasl_ssl). Secrets belong in MARKLEDGER_KAFKA_* variables
    /// (MARKLEDGER_KAFKA_SASL_PASSWORD sets sasl.password); they are never printed.
    #[arg(long = "kafka", value_name = "KEY=VALUE")]
    kafka: Vec<String>,
    /// Partitions of an input topic the stream creates when it is missing (default 4);
    /// an existing topic is never altered.
    #[arg(long)]
    input_partitions: Option<i32>,
    /// Replication factor of the topics the stream creates (default 1; 3 on a production
    /// cluster); existing topics are never altered.
    #[arg(long)]
    replication_factor: Option<i16>,
    /// A working-day calendar file replacing the shipped one (as `run --calendar`).
    #[arg(long)]
    calendar: Option<PathBuf>,
    /// How long a command on an unknown code waits for its emission (as `run --hold`).
    #[arg(long)]
    hold: Option<String>,
    /// A period closes at the end of this day of the next month (1 to 27; as `run`).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=27))]
    close_after_days: Option<u32>,
    /// No progress lines.
    #[arg(long)]
    quiet: bool,
}

#[derive(clap::Args)]
struct ProduceArgs {
    /// Bootstrap brokers, HOST:PORT[,HOST:PORT…].
    #[arg(long)]
    brokers: String,
    /// A dataset directory (`markledger generate`).
    #[arg(long)]
    input: PathBuf,
    /// The input topic.
    #[arg(long, default_value = "codes.events")]
    topic: String,
    /// A prefix for the topic name (as `stream --topic-prefix`).
    #[arg(long, default_value = "")]
    topic_prefix: String,
    /// A librdkafka property, KEY=VALUE (repeatable; as `stream --kafka`).
    #[arg(long = "kafka", value_name = "KEY=VALUE")]
    kafka: Vec<String>,
}

/// The cluster flags of `run` and `stream` (README.md, "Cluster mode").
#[derive(clap::Args)]
struct ClusterArgs {
    /// Processes of a cluster run (timely's cluster mode; needs --hostfile). Every process
    /// is given the same flags but its own --process (`run`: process 0 writes the outputs;
    /// with --state, each process its own state directory or a shared one).
    #[arg(long, default_value_t = 1)]
    processes: usize,
    /// This process of the cluster, 0-based.
    #[arg(long, default_value_t = 0)]
    process: usize,
    /// One host:port per line, process i on line i (with --processes above 1).
    #[arg(long)]
    hostfile: Option<PathBuf>,
}

impl ClusterArgs {
    /// Where this process sits in its cluster.
    fn cluster(&self) -> Result<Cluster> {
        Cluster::from_hostfile(self.hostfile.as_deref(), self.processes, self.process)
            .map_err(|why| anyhow::anyhow!(why))
    }
}

#[derive(clap::Args)]
struct RunArgs {
    /// Input partitions: files, or directories whose files are partitions; or the
    /// generator itself, `gen:codes=N,seed=S,…` (the flags of `generate`), no files needed.
    #[arg(long, required = true, num_args = 1..)]
    input: Vec<PathBuf>,
    /// Output directory (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Worker threads of the dataflow engine (1 to 64), per process on a cluster.
    #[arg(long, default_value_t = 2, value_parser = workers_in_range)]
    workers: usize,
    #[command(flatten)]
    cluster: ClusterArgs,
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
    /// A period closes at the end of this day of the next month (1 to 27).
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=27))]
    close_after_days: u32,
    /// A backfill: end the run in a checkpoint in this directory (its machines do not
    /// finish: holds stay open), from which `stream --state` with the same workers goes on.
    /// Final codes are kept on disk in it.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Where the run spills to disk (directories made inside it, removed at the end): outputs
    /// waiting for their canonical order (default: a hidden directory beside --out) and,
    /// without --state, final codes (default: the system's temporary directory).
    #[arg(long)]
    spill_dir: Option<PathBuf>,
    /// Rendered output bytes a worker holds before spilling a sorted run (tests force tiny
    /// runs; not for users).
    #[arg(long, hide = true, default_value_t = markledger_connectors::file::OUTPUT_RUN_BYTES)]
    output_run_bytes: usize,
    /// Every final code goes to disk at once (tests of the disk path).
    #[arg(long, hide = true)]
    spill_all: bool,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics while the run lasts (records
    /// read, memory).
    #[arg(long)]
    metrics_addr: Option<String>,
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
    /// Fraction of accounts (0 to 1) that end their contract during the data (DOMAIN.md §9:
    /// terminations, some refused first, exports inside and outside the window).
    #[arg(long, default_value_t = 0.0)]
    terminate_rate: f64,
    /// No progress lines.
    #[arg(long)]
    quiet: bool,
}

/// The most worker threads one process runs. Each is a thread with its own share of the
/// state and a channel to every other worker (W² channels): 64 start in well under a
/// second; thousands made no progress at all and `99999999999` exhausted memory before
/// this bound (issue 15). A larger deployment runs more processes, not more threads.
const WORKERS_MAX: usize = 64;

fn workers_in_range(text: &str) -> Result<usize, String> {
    let workers: usize = text.parse().map_err(|_| format!("{text:?} is not a number"))?;
    if (1..=WORKERS_MAX).contains(&workers) {
        Ok(workers)
    } else {
        Err(format!(
            "{workers} is not in 1..={WORKERS_MAX} (one process runs at most {WORKERS_MAX} workers)"
        ))
    }
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
        terminate_rate: args.terminate_rate,
    };
    let started = std::time::Instant::now();
    let mut last_percent = 0;
    let mut bar = ProgressLine::new(Duration::from_secs(2), args.quiet).with_total(config.codes, "code events", false);
    let manifest = generate(&config, &args.out, &mut |progress| {
        let percent = 100 * progress.code_events / progress.target.max(1);
        if bar.is_bar() {
            bar.advance(progress.code_events, String::new);
        } else if !args.quiet && percent >= last_percent + 5 {
            last_percent = percent;
            markledger_operators::note!(
                "generating: {percent:>3}%  {} code events, {} events, {:.1} MB",
                progress.code_events,
                progress.events,
                progress.bytes as f64 / 1e6
            );
        }
    })
    .with_context(|| format!("generating into {}", args.out.display()))?;
    bar.finish();
    let injected: Vec<String> = manifest
        .injected
        .iter()
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect();
    markledger_operators::say!("markledger generate: summary");
    markledger_operators::say!(
        "  wrote       {} partitions and manifest.json to {}",
        manifest.partitions.len(),
        args.out.display()
    );
    markledger_operators::say!(
        "  events      {} naming {} codes",
        manifest.events,
        manifest.code_events
    );
    markledger_operators::say!("  time span   {} .. {}", manifest.first_ts, manifest.last_ts);
    markledger_operators::say!(
        "  injected    {}",
        if injected.is_empty() {
            "none".to_string()
        } else {
            injected.join(", ")
        }
    );
    markledger_operators::say!("  took        {:.1} s", started.elapsed().as_secs_f64());
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
    say_text(&text);
    Ok(())
}

/// The configuration with `--calendar FILE` (or the shipped calendar), named for messages.
fn config_with_calendar(path: Option<&std::path::Path>) -> Result<Config> {
    let Some(path) = path else {
        return Ok(Config::with_calendar(markledger_datasets::calendars::kazakhstan()));
    };
    let text = std::fs::read_to_string(path).with_context(|| format!("reading calendar {}", path.display()))?;
    let calendar = WorkingCalendar::parse(&text).with_context(|| format!("calendar {}", path.display()))?;
    let mut config = Config::with_calendar(calendar);
    config.calendar_name = format!("the calendar {}", path.display());
    Ok(config)
}

/// `--kafka KEY=VALUE` pairs, then the config file's `[kafka]` table under them, then
/// `MARKLEDGER_KAFKA_*` variables (secrets) over both.
fn kafka_properties(
    pairs: &[String],
    file: Option<&std::collections::BTreeMap<String, String>>,
) -> Result<markledger_connectors::kafka::Properties> {
    let mut properties = markledger_connectors::kafka::Properties::default();
    for (key, value) in file.into_iter().flatten() {
        properties
            .set(key, value)
            .map_err(|why| anyhow::anyhow!("[kafka] in --config: {why}"))?;
    }
    for pair in pairs {
        properties
            .set_pair(pair)
            .map_err(|why| anyhow::anyhow!("--kafka: {why}"))?;
    }
    properties
        .set_from_environment(std::env::vars())
        .map_err(|why| anyhow::anyhow!("environment: {why}"))?;
    Ok(properties)
}

fn config_from(args: &RunArgs) -> Result<Config> {
    let mut config = config_with_calendar(args.calendar.as_deref())?;
    let Some(lateness) = parse_duration_ms(&args.lateness) else {
        bail!("--lateness {:?}: expected e.g. 5s, 250ms, 2m", args.lateness)
    };
    let Some(hold) = parse_duration_ms(&args.hold) else {
        bail!("--hold {:?}: expected e.g. 60s, 2m", args.hold)
    };
    config.lateness_ms = lateness;
    config.hold_ms = hold;
    config.close_after_days = args.close_after_days;
    config.final_codes.spill_dir = args.spill_dir.clone();
    config.final_codes.spill_all = args.spill_all;
    Ok(config)
}

fn run(args: RunArgs) -> Result<()> {
    let config = config_from(&args)?;
    let engine = match args.engine.as_str() {
        "dataflow" => Engine::Dataflow { workers: args.workers },
        "reference" => Engine::Reference,
        other => bail!("--engine {other:?}: expected dataflow or reference"),
    };
    let cluster = args.cluster.cluster()?;
    let process = cluster.process;
    let records_read = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let metrics = match &args.metrics_addr {
        Some(address) => {
            let (read, codes) = (records_read.clone(), config.final_codes.clone());
            let snapshot = move || markledger::metrics::Snapshot {
                records: read.load(std::sync::atomic::Ordering::Relaxed),
                codes: codes.memory(),
                ..markledger::metrics::Snapshot::default()
            };
            let server = markledger::metrics::MetricsServer::start(address, Box::new(snapshot))?;
            markledger_operators::note!("markledger run: metrics at http://{address}/metrics");
            Some(server)
        }
        None => None,
    };
    let run = FileRun {
        inputs: &args.input,
        out: &args.out,
        quiet: args.quiet,
        engine,
        state: args.state.as_deref(),
        spill_dir: args.spill_dir.as_deref(),
        output_run_bytes: args.output_run_bytes,
        records_read: Some(records_read),
        cluster,
    };
    let report = run_files(&config, &run);
    if let Some(server) = metrics {
        server.stop();
    }
    let report = report?;
    if process == 0 {
        say_text(&render_summary(&report, &args.out));
    } else {
        markledger_operators::say!(
            "markledger run: process {process} of {} done ({} records read here; process 0 wrote the outputs and the summary)",
            report.processes,
            report.summary.records
        );
    }
    Ok(())
}

/// The stream's Kafka settings: brokers, properties, group, topics (flags first, then the
/// TOML file, then defaults).
fn stream_kafka(args: &StreamArgs, file: &StreamFile) -> Result<KafkaSettings> {
    let Some(brokers) = args.brokers.clone().or(file.brokers.clone()) else {
        bail!("--brokers (or `brokers` in --config) is required")
    };
    let mut kafka = KafkaSettings::new(brokers);
    kafka.properties = kafka_properties(&args.kafka, file.kafka.as_ref())?;
    kafka.replication_factor = i32::from(args.replication_factor.or(file.replication_factor).unwrap_or(1));
    if kafka.replication_factor < 1 {
        bail!("replication factor {}: expected at least 1", kafka.replication_factor);
    }
    if let Some(group) = args.group.clone().or(file.group.clone()) {
        kafka.group_id = group;
    }
    let inputs = if args.input_topics.is_empty() {
        file.input_topics.clone()
    } else {
        Some(args.input_topics.clone())
    };
    if let Some(inputs) = inputs.filter(|t| !t.is_empty()) {
        kafka.input_topics = inputs;
    }
    if let Some(topics) = &file.topics {
        topics.apply(&mut kafka.output_topics);
    }
    if let Some(prefix) = args.topic_prefix.clone().or(file.topic_prefix.clone()) {
        kafka.apply_prefix(&prefix);
    }
    Ok(kafka)
}

/// The stream's configuration and options: flags first, then the TOML file, then defaults.
fn stream_options(args: &StreamArgs) -> Result<(Config, StreamOptions)> {
    let file = match &args.config {
        Some(path) => StreamFile::load(path)?,
        None => StreamFile::default(),
    };
    let duration = |flag: &Option<String>, file: &Option<String>, default: &str, name: &str| -> Result<i64> {
        let text = flag
            .clone()
            .or_else(|| file.clone())
            .unwrap_or_else(|| default.to_string());
        parse_duration_ms(&text).with_context(|| format!("{name} {text:?}: expected e.g. 5s, 250ms, 2m"))
    };
    let mut config = config_with_calendar(args.calendar.as_deref().or(file.calendar.as_deref()))?;
    config.lateness_ms = duration(&args.lateness, &file.lateness, "5s", "lateness")?;
    config.hold_ms = duration(&args.hold, &file.hold, "60s", "hold")?;
    config.close_after_days = args.close_after_days.or(file.close_after_days).unwrap_or(7);
    if !(1..=27).contains(&config.close_after_days) {
        bail!("close_after_days {}: expected 1 to 27", config.close_after_days);
    }
    config.final_codes.spill_dir = args.spill_dir.clone();
    config.final_codes.spill_all = args.spill_all;
    let kafka = stream_kafka(args, &file)?;
    let input_partitions = args.input_partitions.or(file.input_partitions).unwrap_or(4);
    if input_partitions < 1 {
        bail!("input partitions {input_partitions}: expected at least 1");
    }
    let options = StreamOptions {
        kafka,
        workers: workers_in_range(&args.workers.or(file.workers).unwrap_or(2).to_string())
            .map_err(|why| anyhow::anyhow!("workers: {why}"))?,
        idle_timeout: Duration::from_millis(
            duration(&args.idle_timeout, &file.idle_timeout, "10s", "idle timeout")?.max(0) as u64,
        ),
        commit_interval: Duration::from_millis(
            duration(&args.commit_interval, &file.commit_interval, "1s", "commit interval")?.max(0) as u64,
        ),
        input_partitions,
        state: args.state.clone().or(file.state.clone()),
        checkpoint_interval: Duration::from_millis(
            duration(
                &args.checkpoint_interval,
                &file.checkpoint_interval,
                "10s",
                "checkpoint interval",
            )?
            .max(1) as u64,
        ),
        max_ahead: Duration::from_millis(duration(&args.max_ahead, &file.max_ahead, "1d", "max ahead")?.max(0) as u64),
        metrics_addr: args.metrics_addr.clone().or(file.metrics_addr.clone()),
        progress_topic: format!(
            "{}markledger.progress",
            args.topic_prefix
                .clone()
                .or(file.topic_prefix.clone())
                .unwrap_or_default()
        ),
        cluster: args.cluster.cluster()?,
    };
    Ok((config, options))
}

fn stream(args: StreamArgs) -> Result<()> {
    let (config, options) = stream_options(&args)?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone()).context("installing the signal handlers")?;
    }
    markledger_operators::note!(
        "markledger stream: {} → {} … on {} ({} workers, group {}); SIGTERM or Ctrl-C stops it",
        options.kafka.input_topics.join(","),
        options.kafka.output_topics.status,
        options.kafka.brokers,
        options.workers,
        options.kafka.group_id
    );
    if !options.kafka.properties.is_empty() {
        let shown: Vec<String> = options
            .kafka
            .properties
            .shown()
            .into_iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        markledger_operators::note!("markledger stream: Kafka properties {}", shown.join(" "));
    }
    let mut line = ProgressLine::new(Duration::from_secs(2), args.quiet);
    let report = run_stream(&config, &options, stop, &mut |report| {
        line.tick(|| {
            format!(
                "read {} records; produced {} outputs ({} not produced again); {} commits",
                report.records, report.produced, report.suppressed, report.commits
            )
        })
    })?;
    print_stream_summary(&report, line.elapsed());
    Ok(())
}

/// The closing summary of a stream run.
fn print_stream_summary(report: &StreamReport, took: Duration) {
    markledger_operators::say!("markledger stream: summary");
    markledger_operators::say!(
        "  input       {} partitions, {} records read",
        report.partitions,
        report.records
    );
    markledger_operators::say!(
        "  outputs     {} produced, {} already produced before a restart (skipped)",
        report.produced,
        report.suppressed
    );
    markledger_operators::say!(
        "  offsets     {} commits; the last covered every output before {}",
        report.commits,
        report
            .committed_frontier
            .map_or("nothing".into(), |t| markledger_operators::flow::ts_of(t).to_string())
    );
    if let Some(time) = report.restored_from {
        markledger_operators::say!(
            "  state       restored from the checkpoint at {}",
            markledger_operators::flow::ts_of(time)
        );
    }
    if let Some((time, bytes, millis)) = report.last_checkpoint {
        markledger_operators::say!(
            "  checkpoints {} written; the last at {} ({:.1} MB, {millis} ms to write); \
             a worker paused at most {:.1} ms to save a machine ({})",
            report.checkpoints,
            markledger_operators::flow::ts_of(time),
            bytes as f64 / 1e6,
            report.longest_save.as_secs_f64() * 1e3,
            report.pauses
        );
    }
    if let Some(memory) = &report.memory {
        markledger_operators::say!("  memory      {}", markledger::runner::render_memory(memory));
    }
    markledger_operators::say!("  took        {:.1} s", took.as_secs_f64());
}

fn produce(args: ProduceArgs) -> Result<()> {
    let mut settings = KafkaSettings::new(args.brokers.clone());
    settings.properties = kafka_properties(&args.kafka, None)?;
    markledger_connectors::kafka::check_connection(&settings)?;
    let topic = format!("{}{}", args.topic_prefix, args.topic);
    let report = produce_dataset(&settings, &args.input, &topic)
        .with_context(|| format!("publishing {} to {topic}", args.input.display()))?;
    markledger_operators::say!("markledger produce: summary");
    markledger_operators::say!(
        "  published   {} records ({:.1} MB) from {} partitions to {topic} on {}",
        report.messages,
        report.bytes as f64 / 1e6,
        report.partitions,
        args.brokers
    );
    if report.skipped > 0 {
        markledger_operators::say!(
            "  skipped     {} records Kafka cannot carry (over 1 MB)",
            report.skipped
        );
    }
    markledger_operators::say!("  took        {:.1} s", report.elapsed.as_secs_f64());
    Ok(())
}

fn main() -> ExitCode {
    // Any panic ends the process at once with one line (pipeline/src/failure.rs): a worker
    // that died must never leave the others waiting.
    markledger::failure::exit_on_panic();
    let cli = Cli::parse();
    if let Err(error) = init_logs(&cli.log_format) {
        markledger_operators::note!("markledger: error: {error:#}");
        return ExitCode::FAILURE;
    }
    let result = match cli.command {
        Command::Demo(args) => demo(args),
        Command::Generate(args) => generate_command(args),
        Command::Run(args) => run(args),
        Command::Stream(args) => stream(args),
        Command::Produce(args) => produce(args),
        Command::Documents(args) => markledger::documents::documents_command(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            markledger_operators::console::error_line(format_args!("markledger: error: {error:#}"));
            ExitCode::FAILURE
        }
    }
}
