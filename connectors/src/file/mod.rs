//! File connectors: input partitions in, output files out.
//!
//! In: command-line paths → [`list_partitions`] → one [`PartitionReader`] per file, each
//! yielding its records in file order (one file = one partition, DOMAIN.md §4). The
//! generator writes partition files with [`PartitionWriter`]. Out: an engine's outputs →
//! [`OutputFiles`], the five JSON-lines files of the `--out` directory (INTERFACE.md), in
//! the canonical order of a file run through [`SortedRuns`] and [`merge_runs`] (bounded
//! memory: sorted runs spilled to disk, merged at the end).

pub mod ordered;
pub mod sink;
pub mod source;

pub use ordered::{merge_runs, SortedRun, SortedRuns, SpillDir, OUTPUT_RUN_BYTES};
pub use sink::{OutputCounts, OutputFiles, WRITE_BUFFER_BYTES};
pub use source::{
    detect_format, list_partitions, Detected, PartitionReader, PartitionWriter, SourceError, DETECT_BYTES,
    LINE_BYTES_MAX, LINE_HEADING_SCAN_BYTES, MANIFEST_FILE_NAME, READ_BUFFER_BYTES,
};

/// The five output files of a run (INTERFACE.md "Outputs").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OutputFile {
    /// Status changes.
    Status,
    /// Ledger entries.
    Ledger,
    /// Balances.
    Balances,
    /// Rejections.
    Rejections,
    /// Period aggregates.
    Periods,
    /// Export deliveries (DOMAIN.md §9).
    Exports,
}

impl OutputFile {
    /// Every output file, in INTERFACE.md order.
    pub const ALL: [OutputFile; 6] = [
        OutputFile::Status,
        OutputFile::Ledger,
        OutputFile::Balances,
        OutputFile::Rejections,
        OutputFile::Periods,
        OutputFile::Exports,
    ];

    /// The file's name in the `--out` directory.
    pub fn file_name(self) -> &'static str {
        match self {
            OutputFile::Status => "status.jsonl",
            OutputFile::Ledger => "ledger.jsonl",
            OutputFile::Balances => "balances.jsonl",
            OutputFile::Rejections => "rejections.jsonl",
            OutputFile::Periods => "periods.jsonl",
            OutputFile::Exports => "exports.jsonl",
        }
    }

    /// Position in [`OutputFile::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The format of an input partition file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// One JSON object per line (INTERFACE.md), the interoperable default.
    Json,
    /// [`crate::codec::binary::MAGIC`] then checksummed bincode frames.
    Binary,
}

impl Format {
    /// The command-line name (`json`, `bin`).
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Binary => "bin",
        }
    }

    /// Parses the command-line name (`json`, or `bin` / `binary`).
    pub fn parse(text: &str) -> Option<Format> {
        match text {
            "json" => Some(Format::Json),
            "bin" | "binary" => Some(Format::Binary),
            _ => None,
        }
    }

    /// The conventional file extension (`jsonl`, `bin`).
    pub fn extension(self) -> &'static str {
        match self {
            Format::Json => "jsonl",
            Format::Binary => "bin",
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
