//! `markledger documents`: a run's final period records rendered as the billing documents
//! a person signs and reads (the markledger-documents crate, documents/).
//!
//! The records come from a run's `periods.jsonl`, or, with `--brokers`, from the compacted
//! `codes.periods` topic a `stream` produces: every partition is read from its earliest
//! retained offset up to its end as the command starts (nothing is committed), keeping the
//! highest `rev` per key; a tombstone (null value) deletes its key (DOMAIN.md §9).

use anyhow::{bail, Context, Result};
use markledger_connectors::kafka::{partition_count, KafkaSettings, PartitionConsumer, Polled, Start};
use markledger_documents::{Lang, LatestRecords, Operator, Options, Report};
use markledger_operators::output::{AggregateKind, PeriodKey};
use markledger_operators::Period;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long reading the periods topic may go without a record or a partition's end before
/// it is given up (a broker that does not answer).
pub const TOPIC_SILENCE_MAX: Duration = Duration::from_secs(30);

/// The flags of `markledger documents`.
#[derive(clap::Args, Debug)]
pub struct DocumentsArgs {
    /// A run's output directory (its periods.jsonl is read), or a periods.jsonl file.
    #[arg(long, required_unless_present = "brokers", conflicts_with = "brokers")]
    pub input: Option<PathBuf>,
    /// Read the final records from the `codes.periods` topic of these brokers instead.
    #[arg(long)]
    pub brokers: Option<String>,
    /// The periods topic (with --brokers).
    #[arg(long, default_value = "codes.periods")]
    pub topic: String,
    /// Where the documents go: one directory per period.
    #[arg(long)]
    pub out: PathBuf,
    /// `pdf`, `csv` or both, comma-separated.
    #[arg(long, default_value = "pdf,csv")]
    pub format: String,
    /// `ru`, `kk` or `en`.
    #[arg(long, default_value = "ru")]
    pub lang: String,
    /// Only this period, YYYY-MM (refused when it is not closed, unless --provisional).
    #[arg(long)]
    pub period: Option<String>,
    /// Only this account's act and reconciliation statement.
    #[arg(long)]
    pub account: Option<String>,
    /// Also render periods not closed yet, every page marked "provisional".
    #[arg(long)]
    pub provisional: bool,
    /// The operator's name printed on the documents.
    #[arg(long)]
    pub operator: Option<String>,
    /// The operator's business identification number (БИН).
    #[arg(long)]
    pub operator_id: Option<String>,
}

/// Parses the flags into [`Options`].
pub fn options(args: &DocumentsArgs) -> Result<Options> {
    let mut options = Options {
        pdf: false,
        csv: false,
        ..Options::default()
    };
    for format in args.format.split(',').map(str::trim) {
        match format {
            "pdf" => options.pdf = true,
            "csv" => options.csv = true,
            other => bail!("--format {other:?}: expected pdf, csv or pdf,csv"),
        }
    }
    let Some(lang) = Lang::parse(&args.lang) else {
        bail!("--lang {:?}: expected ru, kk or en", args.lang)
    };
    options.lang = lang;
    if let Some(text) = &args.period {
        let Some(period) = Period::parse(text) else {
            bail!("--period {text:?}: expected YYYY-MM")
        };
        options.period = Some(period);
    }
    options.account = args.account.clone();
    options.provisional = args.provisional;
    options.operator = Operator {
        name: args.operator.clone(),
        id: args.operator_id.clone(),
    };
    Ok(options)
}

/// Reads `input` (a run's output directory or a periods.jsonl file) and renders.
pub fn render_documents(input: &Path, out: &Path, options: &Options) -> Result<Report> {
    let file = if input.is_dir() {
        input.join("periods.jsonl")
    } else {
        input.to_path_buf()
    };
    let records = LatestRecords::read_file(&file)?;
    Ok(markledger_documents::render(&records, options, out)?)
}

/// The key of a Kafka record of the periods topic, `kind/account/period[/sub]` (the account
/// has no `/`; a payment register's sub `channel/day` may).
fn parse_key(key: &[u8]) -> Option<PeriodKey> {
    let text = std::str::from_utf8(key).ok()?;
    let mut parts = text.splitn(4, '/');
    let kind = AggregateKind::parse(parts.next()?)?;
    let account = parts.next()?.to_string();
    let period = Period::parse(parts.next()?)?;
    let sub = parts.next().map(str::to_string);
    Some(PeriodKey {
        kind,
        account,
        period,
        sub,
    })
}

/// Reads every record of the periods `topic` on `brokers`, from the earliest retained
/// offsets to the end each partition has when it is reached.
pub fn read_topic(brokers: &str, topic: &str) -> Result<LatestRecords> {
    let mut settings = KafkaSettings::new(brokers);
    // Its own group: nothing is committed, and a pipeline's group is never disturbed.
    settings.group_id = "markledger-documents".to_string();
    let partitions = partition_count(&settings, topic).with_context(|| format!("topic {topic} on {brokers}"))?;
    let assignment: Vec<(String, i32)> = (0..partitions).map(|p| (topic.to_string(), p)).collect();
    let mut consumer = PartitionConsumer::starting(&settings, &assignment, Start::Earliest)?;
    let mut records = LatestRecords::new();
    let mut caught_up = BTreeSet::new();
    let mut heard = Instant::now();
    while caught_up.len() < assignment.len() {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Polled::Record(record)) => {
                heard = Instant::now();
                let origin = || format!("{}/{}@{}", record.topic, record.partition, record.offset);
                if record.payload.is_empty() {
                    match record.key.as_deref().and_then(parse_key) {
                        Some(key) => records.delete(key),
                        None => bail!("{}: a tombstone without a period key", origin()),
                    }
                } else {
                    records.offer(&record.payload, origin)?;
                }
            }
            Some(Polled::PartitionEof { partition, .. }) => {
                heard = Instant::now();
                caught_up.insert(partition);
            }
            Some(Polled::TransientError(_)) | None => {
                if heard.elapsed() > TOPIC_SILENCE_MAX {
                    bail!(
                        "{topic} on {brokers}: nothing for {} s ({} of {} partitions read to their end)",
                        TOPIC_SILENCE_MAX.as_secs(),
                        caught_up.len(),
                        assignment.len()
                    );
                }
            }
            Some(_) => {}
        }
    }
    Ok(records)
}

/// The closing summary.
pub fn render_summary(report: &Report) -> String {
    let periods: Vec<String> = report
        .periods
        .iter()
        .map(|(period, is_final)| {
            if *is_final {
                period.to_string()
            } else {
                format!("{period} (provisional)")
            }
        })
        .collect();
    let mut text = format!(
        "  documents   {} PDF and {} CSV files ({:.1} MB) for {} in {}\n",
        report.pdf_files,
        report.csv_files,
        report.bytes as f64 / 1e6,
        periods.join(", "),
        report.out.display()
    );
    if !report.skipped_provisional.is_empty() {
        let skipped: Vec<String> = report.skipped_provisional.iter().map(Period::to_string).collect();
        text.push_str(&format!(
            "  not closed  {} (no documents; --provisional renders them marked \"provisional\")\n",
            skipped.join(", ")
        ));
    }
    text
}

/// `markledger documents`.
pub fn documents_command(args: DocumentsArgs) -> Result<()> {
    let options = options(&args)?;
    let started = std::time::Instant::now();
    let report = match (&args.brokers, &args.input) {
        (Some(brokers), _) => {
            let records = read_topic(brokers, &args.topic)?;
            markledger_documents::render(&records, &options, &args.out)
                .with_context(|| format!("documents from {} on {brokers}", args.topic))?
        }
        (None, Some(input)) => render_documents(input, &args.out, &options)
            .with_context(|| format!("documents from {}", input.display()))?,
        (None, None) => bail!("--input or --brokers is required"),
    };
    println!("markledger documents: summary");
    print!("{}", render_summary(&report));
    println!("  took        {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
