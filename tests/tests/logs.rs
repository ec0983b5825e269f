//! Logs (issue 19): `--log-format json` makes every stderr line a JSON object with time,
//! level, target and message, and `RUST_LOG` filters them; the default text format keeps
//! the lines people read. Checked on `markledger run` stopping at the calendar's end (an
//! error event) with a progress-free input.

use markledger_tests::{markledger_binary, payment, tariff};
use std::path::PathBuf;
use std::process::{Command, Output};

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("markledger-logs-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn run(name: &str, flags: &[&str], rust_log: Option<&str>) -> Output {
    let dir = temp(name);
    let lines = [
        tariff(
            "t1",
            "2026-01-01T00:00:00+05:00",
            "2026-01-01T00:00:00+05:00",
            "1.00",
            "0.12",
        ),
        payment("p1", "2027-12-30T10:00:00+05:00", "A", "5.00", "bank"),
        payment("p2028", "2028-01-05T10:00:00+05:00", "A", "1.00", "bank"),
    ];
    let input = dir.join("p0.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").expect("input");
    let mut command = Command::new(markledger_binary());
    command
        .args(flags)
        .args(["run", "--input"])
        .arg(&input)
        .arg("--out")
        .arg(dir.join("out"));
    command.env_remove("RUST_LOG");
    if let Some(filter) = rust_log {
        command.env("RUST_LOG", filter);
    }
    let output = command.output().expect("markledger run");
    let _ = std::fs::remove_dir_all(&dir);
    output
}

#[test]
fn json_logs_are_one_object_per_line_and_rust_log_filters_them() {
    let output = run("json", &["--log-format", "json"], None);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not a JSON line: {line:?}")))
        .collect();
    let error = events
        .iter()
        .find(|event| event["level"] == "ERROR")
        .unwrap_or_else(|| panic!("no error event in {stderr}"));
    assert_eq!(error["target"], "markledger");
    assert!(error["timestamp"].is_string(), "{error}");
    let message = error["fields"]["message"].as_str().expect("message");
    assert!(message.contains("is in 2028"), "{message}");

    // Errors only: the error stays, nothing else.
    let output = run("filtered", &["--log-format", "json"], Some("error"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.lines().all(|line| line.contains("\"ERROR\"")), "{stderr}");
    assert!(stderr.contains("is in 2028"), "{stderr}");
    // Everything off.
    let output = run("off", &[], Some("off"));
    assert!(!output.status.success());
    assert!(output.stderr.is_empty(), "{}", String::from_utf8_lossy(&output.stderr));

    // Text (the default): the message as people read it, no JSON.
    let output = run("text", &[], None);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("markledger: error: ") && stderr.contains("is in 2028"),
        "{stderr}"
    );
    assert!(!stderr.contains("\"level\""), "{stderr}");
}
