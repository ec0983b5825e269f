//! The `markledger` binary as a user runs it: exit codes, messages, and a golden scenario
//! reproduced through the real command line.

use std::path::{Path, PathBuf};
use std::process::Command;

fn markledger() -> Command {
    Command::new(env!("CARGO_BIN_EXE_markledger"))
}

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../datasets/scenarios")
        .join(name)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("markledger-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn run_reproduces_a_golden_scenario_and_exits_zero_despite_rejections() {
    // `markledger run --engine reference` on the refund scenario (which rejects four events)
    // exits 0, prints a summary naming the rejections, and writes the reviewed expected files
    // byte for byte.
    let out = scratch("refund");
    let dir = scenario("refund_refused_then_accepted");
    let result = markledger()
        .args(["run", "--quiet", "--engine", "reference", "--input"])
        .arg(dir.join("input"))
        .arg("--out")
        .arg(&out)
        .output()
        .expect("binary runs");
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(
        result.status.success(),
        "exit {:?}: {}",
        result.status,
        String::from_utf8_lossy(&result.stderr)
    );
    assert!(stdout.contains("rejections  4: "), "summary: {stdout}");
    for file in [
        "status.jsonl",
        "ledger.jsonl",
        "balances.jsonl",
        "rejections.jsonl",
        "periods.jsonl",
    ] {
        let actual = std::fs::read_to_string(out.join(file)).expect("written");
        let expected = std::fs::read_to_string(dir.join("expected").join(file)).expect("expected");
        assert_eq!(actual, expected, "{file}");
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn dataflow_files_are_identical_whatever_the_worker_count() {
    // `markledger run` (the dataflow, the default) on 1 and 4 workers writes byte-identical
    // files, and each file holds exactly the golden (reference) lines, in canonical order.
    let dir = scenario("late_event_into_closed_period");
    let run = |workers: &str| {
        let out = scratch(&format!("workers-{workers}"));
        let result = markledger()
            .args(["run", "--quiet", "--workers", workers, "--input"])
            .arg(dir.join("input"))
            .arg("--out")
            .arg(&out)
            .output()
            .expect("binary runs");
        assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
        assert!(String::from_utf8_lossy(&result.stdout).contains(&format!("dataflow ({workers} workers)")));
        out
    };
    let (one, four) = (run("1"), run("4"));
    for file in [
        "status.jsonl",
        "ledger.jsonl",
        "balances.jsonl",
        "rejections.jsonl",
        "periods.jsonl",
    ] {
        let a = std::fs::read_to_string(one.join(file)).expect("written");
        let b = std::fs::read_to_string(four.join(file)).expect("written");
        assert_eq!(a, b, "{file} differs between 1 and 4 workers");
        let mut lines: Vec<&str> = a.lines().collect();
        let expected = std::fs::read_to_string(dir.join("expected").join(file)).expect("expected");
        let mut expected: Vec<&str> = expected.lines().collect();
        lines.sort_unstable();
        expected.sort_unstable();
        assert_eq!(lines, expected, "{file} holds other records than the golden file");
    }
    let _ = (std::fs::remove_dir_all(&one), std::fs::remove_dir_all(&four));
}

#[test]
fn run_fails_clearly_when_it_cannot_run() {
    // A missing input path and a bad flag value are the only failures: non-zero exit and a
    // message naming the problem.
    let missing = markledger()
        .args(["run", "--input", "/nonexistent/markledger-input", "--out"])
        .arg(scratch("missing"))
        .output()
        .expect("binary runs");
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/markledger-input"));
    let bad_flag = markledger()
        .args(["run", "--lateness", "soon", "--input"])
        .arg(scenario("dropout").join("input"))
        .arg("--out")
        .arg(scratch("bad-flag"))
        .output()
        .expect("binary runs");
    assert!(!bad_flag.status.success());
    assert!(String::from_utf8_lossy(&bad_flag.stderr).contains("--lateness"));
}
