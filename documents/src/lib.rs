//! markledger's billing documents: what a person signs and reads.
//!
//! In: period records (INTERFACE.md "periods"), from a run's `periods.jsonl` or the
//! `codes.periods` topic ([`records`]), of which the highest `rev` per key counts. Out, per
//! period and into `OUT/YYYY-MM/`:
//! - per account: the act of completed work with its product detail (000 §6.5, §6.9) and
//!   the reconciliation statement (000 §6.6);
//! - for the operator: the turnover sheet, the debtors list, the payment register by bank
//!   (003 §4.1.7–4.1.8) and the emission SLA;
//!
//! as PDF for signing ([`pdf`]) and CSV for spreadsheets ([`csv_out`]), in Russian, Kazakh
//! or English ([`texts`]). Only final periods become documents unless provisional ones are
//! asked for, and then every page says so. Money is rounded half-up to 2 decimals here and
//! only here ([`model`]); the same records always give the same bytes.

#![deny(missing_docs)]

pub mod csv_out;
pub mod format;
pub mod model;
pub mod pdf;
pub mod records;
pub mod texts;

use markledger_operators::Period;
pub use pdf::Operator;
pub use records::{LatestRecords, RecordError};
use std::path::{Path, PathBuf};
pub use texts::Lang;

/// What to render.
#[derive(Clone, Debug)]
pub struct Options {
    /// Write PDF files.
    pub pdf: bool,
    /// Write CSV files.
    pub csv: bool,
    /// The language.
    pub lang: Lang,
    /// Only this period.
    pub period: Option<Period>,
    /// Only this account's documents (and none of the operator's).
    pub account: Option<String>,
    /// Also render periods that are not closed yet, marked provisional.
    pub provisional: bool,
    /// The issuer.
    pub operator: Operator,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            pdf: true,
            csv: true,
            lang: Lang::Ru,
            period: None,
            account: None,
            provisional: false,
            operator: Operator::default(),
        }
    }
}

/// What was rendered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Periods rendered, each with whether it was final.
    pub periods: Vec<(Period, bool)>,
    /// Periods with records that were not rendered because they are not closed.
    pub skipped_provisional: Vec<Period>,
    /// PDF files written.
    pub pdf_files: usize,
    /// CSV files written.
    pub csv_files: usize,
    /// Bytes written.
    pub bytes: u64,
    /// Where (one directory per period under it).
    pub out: PathBuf,
}

/// Why documents could not be rendered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The records could not be read.
    #[error(transparent)]
    Records(#[from] RecordError),
    /// The asked period is not closed (and provisional documents were not asked for).
    #[error(
        "period {0} is provisional (not closed yet): its figures may still change, so no documents are made; \
         --provisional renders them marked \"provisional\""
    )]
    Provisional(Period),
    /// No period to render.
    #[error("no final period to render{0}")]
    Nothing(String),
    /// Writing a file failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A renderer failed.
    #[error("rendering: {0}")]
    Render(String),
}

fn write(path: &Path, bytes: &[u8], report: &mut Report) -> Result<(), Error> {
    std::fs::write(path, bytes).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    report.bytes += bytes.len() as u64;
    Ok(())
}

/// Renders the documents of `records` into `out` (one directory per period).
pub fn render(records: &LatestRecords, options: &Options, out: &Path) -> Result<Report, Error> {
    let mut report = Report {
        out: out.to_path_buf(),
        ..Report::default()
    };
    let mut chosen = Vec::new();
    for mut docs in model::build(records) {
        if options.period.is_some_and(|p| p != docs.period) {
            continue;
        }
        if !docs.is_final && !options.provisional {
            if options.period.is_some() {
                return Err(Error::Provisional(docs.period));
            }
            report.skipped_provisional.push(docs.period);
            continue;
        }
        if let Some(account) = &options.account {
            docs.acts.retain(|a| &a.account == account);
            docs.reconciliations.retain(|r| &r.account == account);
        }
        chosen.push(docs);
    }
    if chosen.is_empty() {
        let why = match (options.period, report.skipped_provisional.as_slice()) {
            (Some(period), _) => format!(": no records of {period}"),
            (None, []) => ": no period records".to_string(),
            (None, skipped) => format!(
                " (provisional: {}; --provisional renders them marked \"provisional\")",
                skipped.iter().map(Period::to_string).collect::<Vec<_>>().join(", ")
            ),
        };
        return Err(Error::Nothing(why));
    }
    let fonts = pdf::fonts::Fonts::new();
    let texts = options.lang.texts();
    let only_clients = options.account.is_some();
    for docs in &chosen {
        let dir = out.join(docs.period.to_string());
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let suffix = if docs.is_final { "" } else { "-provisional" };
        if options.csv {
            let files = csv_out::render(docs, texts, suffix, only_clients).map_err(|e| Error::Render(e.to_string()))?;
            for file in files {
                write(&dir.join(&file.name), &file.bytes, &mut report)?;
                report.csv_files += 1;
            }
        }
        if options.pdf {
            let context = pdf::Context {
                fonts: &fonts,
                lang: options.lang,
                operator: &options.operator,
                period: docs.period,
                provisional: !docs.is_final,
            };
            for (name, bytes) in pdf::render(&context, docs, suffix, only_clients).map_err(Error::Render)? {
                write(&dir.join(name), &bytes, &mut report)?;
                report.pdf_files += 1;
            }
        }
        report.periods.push((docs.period, docs.is_final));
    }
    Ok(report)
}
