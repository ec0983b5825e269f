//! Poison pills (issue 15; docs/ARCHITECTURE.md, "Decisions: failures").
//!
//! No input is supposed to make a stage fail: every bound is checked and refused as data.
//! If a bug still lets one event make a stage panic, the process ends at once (crate::
//! failure) and its supervisor restarts it; the restart reads the same event again. So that
//! one record cannot stop the country's billing for good, `stream --state DIR` keeps
//! [`FILE_NAME`] in DIR: the last failure's event and how many times in a row it failed.
//! An event that failed **twice in a row** is quarantined: from the next start on it is
//! refused `INTERNAL_ERROR` (with what it made fail) before it is placed, like a malformed
//! record, and the pipeline goes on. A failure without an event, or of another event,
//! starts the count again. The file is written atomically (temporary file, fsync, rename).

use crate::failure::WorkerFailure;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// The failure record's name in a state directory.
pub const FILE_NAME: &str = "failures.json";

/// How many failures in a row of one event quarantine it.
pub const FAILURES_IN_A_ROW_MAX: u32 = 2;

/// What a state directory remembers of failures.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureRecord {
    /// The last failure's event and how many failures in a row it caused.
    pub last: Option<LastFailure>,
    /// Quarantined event ids, each with the failure it caused.
    pub quarantine: BTreeMap<String, String>,
}

/// The event of the last failure.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastFailure {
    /// Its id.
    pub event: String,
    /// Failures in a row.
    pub count: u32,
    /// The last one, as one line.
    pub failure: String,
}

impl FailureRecord {
    /// The record in `dir` (empty when there is none yet).
    pub fn load(dir: &Path) -> Result<FailureRecord> {
        let path = dir.join(FILE_NAME);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| format!("reading {}", path.display())),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(FailureRecord::default()),
            Err(error) => Err(error).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Counts `failure`: a second failure in a row of the same event quarantines it.
    pub fn count(&mut self, failure: &WorkerFailure) {
        let Some(event) = &failure.event else {
            self.last = None;
            return;
        };
        let count = match &self.last {
            Some(last) if &last.event == event => last.count + 1,
            _ => 1,
        };
        let line = failure.to_string();
        if count >= FAILURES_IN_A_ROW_MAX {
            self.quarantine.insert(event.clone(), line);
            self.last = None;
        } else {
            self.last = Some(LastFailure {
                event: event.clone(),
                count,
                failure: line,
            });
        }
    }

    /// Writes the record into `dir`, atomically (a temporary file of this process's own:
    /// the processes of a cluster may share one state directory).
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(FILE_NAME);
        let temporary = dir.join(format!("{FILE_NAME}.{}.tmp", std::process::id()));
        let bytes = serde_json::to_vec_pretty(self).context("encoding the failure record")?;
        let mut file =
            std::fs::File::create(&temporary).with_context(|| format!("creating {}", temporary.display()))?;
        file.write_all(&bytes)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing {}", temporary.display()))?;
        std::fs::rename(&temporary, &path).with_context(|| format!("renaming to {}", path.display()))?;
        Ok(())
    }

    /// Loads the record in `dir`, counts `failure`, saves it.
    pub fn note(dir: &Path, failure: &WorkerFailure) -> Result<FailureRecord> {
        let mut record = FailureRecord::load(dir).unwrap_or_default();
        record.count(failure);
        record.save(dir)?;
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(event: Option<&str>) -> WorkerFailure {
        WorkerFailure {
            thread: "timely:work-0".into(),
            stage: Some("Accounts: lifecycle, balance, FIFO".into()),
            event: event.map(str::to_string),
            message: "boom".into(),
            location: None,
        }
    }

    #[test]
    fn an_event_failing_twice_in_a_row_is_quarantined() {
        // Same event twice → quarantined; another event or no event in between resets.
        let mut record = FailureRecord::default();
        record.count(&failure(Some("p-1")));
        assert!(record.quarantine.is_empty());
        record.count(&failure(Some("p-2")));
        record.count(&failure(Some("p-1")));
        assert!(record.quarantine.is_empty(), "not in a row");
        record.count(&failure(None));
        record.count(&failure(Some("p-1")));
        assert!(record.quarantine.is_empty(), "a failure without event resets");
        record.count(&failure(Some("p-1")));
        assert_eq!(record.quarantine.keys().collect::<Vec<_>>(), ["p-1"]);
        assert!(record.quarantine["p-1"].contains("Accounts: lifecycle"));
        assert_eq!(record.last, None);
    }

    #[test]
    fn the_record_survives_a_save_and_load() {
        // Written atomically and read back equal; a missing file is an empty record.
        let dir = std::env::temp_dir().join(format!("markledger-quarantine-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(FailureRecord::load(&dir).unwrap(), FailureRecord::default());
        FailureRecord::note(&dir, &failure(Some("x"))).unwrap();
        let record = FailureRecord::note(&dir, &failure(Some("x"))).unwrap();
        assert_eq!(FailureRecord::load(&dir).unwrap(), record);
        assert!(record.quarantine.contains_key("x"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
