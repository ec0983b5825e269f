//! What a checkpoint records of a final-code store: the run files it is made of.
//!
//! A [`Manifest`] names every live run file with its size and checksum, so that
//! [`super::FinalStore::open`] can refuse a torn or corrupt file by name. The filter is not
//! in it: `open` rebuilds it from the runs' keys while it verifies them (it reads each file
//! whole anyway), so a checkpoint costs the bytes sealed since the previous one and a manifest
//! of a few dozen bytes per run file.

use super::run::RunMeta;
use serde::{Deserialize, Serialize};

/// The manifest format; bumped whenever a field changes meaning.
pub const MANIFEST_FORMAT_VERSION: u32 = 1;

/// The run files of a store at one checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT_VERSION`] of the build that wrote it.
    pub format_version: u32,
    /// The epoch length the runs were grouped by ([`super::Settings::epoch_ms`]).
    pub epoch_ms: i64,
    /// Run files, by epoch, oldest first within an epoch.
    pub runs: Vec<RunRef>,
    /// The next run sequence number the store would have used.
    pub next_sequence: u64,
}

/// One run file of a [`Manifest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRef {
    /// File name inside the store's directory.
    pub file: String,
    /// The epoch its records' `final_at` fall in (`final_at / epoch_ms`).
    pub epoch: i64,
    /// Recency among the runs of its epoch (a later insert wins a tie on `final_at`).
    pub order: u64,
    /// Records in it.
    pub records: u64,
    /// Its size.
    pub bytes: u64,
    /// xxh3-64 of its bytes before the checksum field (the trailer's last 8 bytes).
    pub checksum: u64,
}

impl Manifest {
    /// The manifest of a store with no file.
    pub fn empty() -> Manifest {
        Manifest {
            format_version: MANIFEST_FORMAT_VERSION,
            epoch_ms: 0,
            runs: Vec::new(),
            next_sequence: 0,
        }
    }

    /// Records in every run.
    pub fn records(&self) -> u64 {
        self.runs.iter().map(|run| run.records).sum()
    }

    /// Bytes of every run file.
    pub fn bytes(&self) -> u64 {
        self.runs.iter().map(|run| run.bytes).sum()
    }

    /// Refuses a manifest of another format than this build's, naming `what` (the kind of
    /// files) and `dir`.
    pub fn check_format(&self, what: &str, dir: &std::path::Path) -> Result<(), super::StoreError> {
        if self.format_version == MANIFEST_FORMAT_VERSION {
            return Ok(());
        }
        Err(super::StoreError::Manifest {
            dir: dir.to_path_buf(),
            detail: format!(
                "{what} manifest format {}, this build reads {MANIFEST_FORMAT_VERSION}",
                self.format_version
            ),
        })
    }
}

impl From<&RunMeta> for RunRef {
    fn from(meta: &RunMeta) -> RunRef {
        RunRef {
            file: meta.file.clone(),
            epoch: meta.epoch,
            order: meta.order,
            records: meta.records,
            bytes: meta.bytes,
            checksum: meta.checksum,
        }
    }
}

impl From<&RunRef> for RunMeta {
    fn from(run: &RunRef) -> RunMeta {
        RunMeta {
            file: run.file.clone(),
            epoch: run.epoch,
            order: run.order,
            records: run.records,
            bytes: run.bytes,
            checksum: run.checksum,
        }
    }
}
