//! Logs (issue 19): `--log-format json` makes every stderr line a JSON object with time,
//! level, target and message, and `RUST_LOG` filters them; the default text format keeps
//! the lines people read. Checked on `markledger run` stopping at the calendar's end (an
//! error event) with a progress-free input; and on `markledger stream` when the Kafka
//! brokers are unreachable: at start-up (a port nothing listens on: one event, then the
//! connection error, no hang) and mid-run against a real tansu broker killed and started
//! again (one event each way, and `markledger_kafka_brokers_reachable` following).

use markledger_tests::broker::{Broker, Storage};
use markledger_tests::process::{free_port, scrape_one, temp_dir, terminate, wait_for};
use markledger_tests::{markledger_binary, payment, tariff};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn temp(name: &str) -> PathBuf {
    temp_dir("logs", name)
}

/// The JSON log events of `text` (every non-empty line must be one).
fn json_events(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not a JSON line: {line:?}")))
        .collect()
}

/// The messages of the events of `log` (a JSON log file) that contain `needle`.
fn messages_with(log: &Path, needle: &str) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|event| event["fields"]["message"].as_str().map(str::to_string))
        .filter(|message| message.contains(needle))
        .collect()
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
    let events = json_events(&stderr);
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

#[test]
fn a_stream_without_a_reachable_broker_says_so_once_and_ends_with_the_connection_error() {
    // Nothing listens on the port: the connection check sees librdkafka's AllBrokersDown,
    // logs one "unreachable" event (JSON), and the stream ends non-zero with the connection
    // error within its 15 s check (bounded here at 60 s: a hang fails the test).
    let dir = temp("unreachable");
    let brokers = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(markledger_binary())
        .args(["--log-format", "json", "stream", "--brokers", &brokers, "--quiet"])
        .arg("--state")
        .arg(dir.join("state"))
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr")).expect("log"))
        .spawn()
        .expect("markledger stream");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("child") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the stream hung without a broker");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(!status.success());
    let stderr = std::fs::read_to_string(dir.join("stderr")).expect("stderr");
    let events = json_events(&stderr);
    let unreachable: Vec<_> = events
        .iter()
        .filter(|event| {
            event["fields"]["message"]
                .as_str()
                .is_some_and(|message| message.contains("the brokers are unreachable"))
        })
        .collect();
    assert_eq!(unreachable.len(), 1, "{stderr}");
    assert_eq!(unreachable[0]["target"], "markledger", "{stderr}");
    assert!(
        events.iter().any(|event| event["level"] == "ERROR"
            && event["fields"]["message"]
                .as_str()
                .is_some_and(|message| message.contains("cannot connect to the Kafka cluster"))),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_broker_outage_mid_stream_is_one_event_each_way_and_a_metric() {
    // A stream on a real broker (SQLite storage: topics survive its restart): reachable
    // (metric 1); the broker killed: one "unreachable" event, metric 0; started again: one
    // "reachable again" event, metric 1; the stream then stops cleanly on SIGTERM.
    let dir = temp("outage");
    let mut broker = Broker::start(Storage::Sqlite(dir.join("broker.db")));
    let port = free_port();
    let log = dir.join("stream.log");
    let mut child = Command::new(markledger_binary())
        .args([
            "--log-format",
            "json",
            "stream",
            "--brokers",
            &broker.brokers(),
            "--quiet",
        ])
        .args(["--idle-timeout", "2s", "--commit-interval", "200ms"])
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        .arg("--state")
        .arg(dir.join("state"))
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("markledger stream");
    let reachable = || scrape_one(port, "markledger_kafka_brokers_reachable");
    wait_for("the stream is up", Duration::from_secs(60), &mut child, || {
        reachable() == Some(1.0)
    });
    broker.kill();
    wait_for("the outage is seen", Duration::from_secs(60), &mut child, || {
        reachable() == Some(0.0)
    });
    assert_eq!(scrape_one(port, "markledger_kafka_unreachable_total"), Some(1.0));
    assert_eq!(messages_with(&log, "the brokers are unreachable").len(), 1);
    broker.restart();
    // The consumer's statistics (every 5 s) show the broker up again.
    wait_for("the broker is seen again", Duration::from_secs(60), &mut child, || {
        reachable() == Some(1.0)
    });
    let again = messages_with(&log, "the brokers are reachable again");
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(messages_with(&log, "the brokers are unreachable").len(), 1);
    terminate(child);
    let _ = std::fs::remove_dir_all(&dir);
}
