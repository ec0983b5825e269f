//! `markledger documents`: a run's final period records rendered as the billing documents
//! a person signs and reads (the markledger-documents crate, documents/).

use anyhow::{bail, Context, Result};
use markledger_documents::{Lang, LatestRecords, Operator, Options, Report};
use markledger_operators::Period;
use std::path::{Path, PathBuf};

/// The flags of `markledger documents`.
#[derive(clap::Args, Debug)]
pub struct DocumentsArgs {
    /// A run's output directory (its periods.jsonl is read), or a periods.jsonl file.
    #[arg(long)]
    pub input: PathBuf,
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
    let report = render_documents(&args.input, &args.out, &options)
        .with_context(|| format!("documents from {}", args.input.display()))?;
    println!("markledger documents: summary");
    print!("{}", render_summary(&report));
    println!("  took        {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
