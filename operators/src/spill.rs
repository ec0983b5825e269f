//! Temporary spill directories left behind by runs that died.
//!
//! A run without `--state` spills final codes, emission text and its sorted outputs into
//! temporary directories named after its process id, and removes them when it ends. A
//! process that is killed (SIGKILL, the OOM killer, a power cut) or that ends at once on a
//! fatal error cannot: its directories stay. So every run, before it makes its own, removes
//! the ones in the same place whose process is gone, as PostgreSQL removes its temporary
//! files at start.
//!
//! A directory is removed only when its name is `PREFIX<pid>` or `PREFIX<pid>-<anything>`
//! and `/proc/<pid>` does not exist: a live process's directory is never touched (a reused
//! process id keeps a dead run's directory until that process ends: a leak, never a loss).
//! Where `/proc` is not mounted nothing is removed. The one assumption: the spill base is
//! not shared with runs in another PID namespace (two containers mounting one `/tmp`),
//! whose live process ids this process cannot see; give each its own `--spill-dir`.

use std::fs;
use std::path::Path;

/// Removes the directories in `dir` named `PREFIX<pid>[-…]` whose process is gone; returns
/// how many. Errors (a directory that cannot be read or removed) are ignored: cleaning is
/// best effort and never stops a run.
pub fn remove_stale(dir: &Path, prefix: &str) -> usize {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return 0;
    }
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|name| pid_of(name, prefix)) else {
            continue;
        };
        let is_dir = entry.file_type().is_ok_and(|kind| kind.is_dir());
        let gone = is_dir && pid != std::process::id() && !proc.join(pid.to_string()).exists();
        if gone && fs::remove_dir_all(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// The process id in `PREFIX<pid>` or `PREFIX<pid>-<rest>`.
fn pid_of(name: &str, prefix: &str) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?;
    let digits = rest.split_once('-').map_or(rest, |(pid, _)| pid);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::{pid_of, remove_stale};

    #[test]
    fn a_dead_process_s_directories_go_and_a_live_one_s_stay() {
        let base = std::env::temp_dir().join(format!("markledger-stale-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        // A process that has ended: its id is free (reuse within the test is not expected).
        let mut child = std::process::Command::new("true").spawn().expect("spawn true");
        let dead = child.id();
        child.wait().expect("wait");
        let live = std::process::id();
        let names = [
            format!("markledger-spill-{dead}-0"),
            format!("markledger-spill-{dead}"),
            format!("markledger-spill-{live}-3"),
            "markledger-spill-1-0".to_string(), // init: alive
            "markledger-spill-x-0".to_string(),
            format!("other-{dead}-0"),
        ];
        for name in &names {
            std::fs::create_dir_all(base.join(name).join("worker-0")).expect("dir");
        }
        assert_eq!(remove_stale(&base, "markledger-spill-"), 2);
        for (name, kept) in names.iter().zip([false, false, true, true, true, true]) {
            assert_eq!(base.join(name).exists(), kept, "{name}");
        }
        std::fs::remove_dir_all(&base).expect("clean");
    }

    #[test]
    fn only_a_prefix_then_digits_names_a_process() {
        assert_eq!(pid_of("markledger-spill-42-7", "markledger-spill-"), Some(42));
        assert_eq!(pid_of("markledger-spill-42", "markledger-spill-"), Some(42));
        assert_eq!(pid_of(".out-spill-9", ".out-spill-"), Some(9));
        assert_eq!(pid_of("markledger-spill--1", "markledger-spill-"), None);
        assert_eq!(pid_of("markledger-spill-4a", "markledger-spill-"), None);
        assert_eq!(pid_of("markledger-other-4", "markledger-spill-"), None);
    }
}
