//! A stream at the calendar's end (issue 19), against a real tansu broker: with a calendar
//! that ends on 2026-01-31 and data running into February, `stream --state` holds every
//! partition before February (logged, `markledger_calendar_held_partitions` on the metrics
//! endpoint, the committed frontier never past 2026-02-01): at its first emission whose
//! 30-working-day expiry deadline would fall in February, so no deadline is counted past
//! the calendar, or its first February record, whichever comes first; and restarted
//! with the shipped calendar (which agrees on every day up to 2026-01-31) it restores its
//! checkpoint and goes on to the end of the data.

use markledger_connectors::kafka::{produce_dataset, KafkaSettings, PartitionConsumer, Polled, Start};
use markledger_datasets::generator::{generate, Format, GeneratorConfig};
use markledger_tests::broker::{Broker, Storage};
use markledger_tests::process::{free_port, scrape_one, temp_dir, terminate, wait_for};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn temp(name: &str) -> PathBuf {
    temp_dir("hold", name)
}

/// The shipped calendar cut at 2026-01-31.
fn short_calendar(path: &Path) {
    let mut text = String::new();
    for line in markledger_datasets::calendars::KAZAKHSTAN.lines() {
        if line.starts_with("range ") {
            text.push_str("range 2020-01-01 2026-01-31\n");
        } else if line
            .get(..10)
            .is_some_and(|date| date.starts_with("20") && date > "2026-01-31")
        {
            continue;
        } else {
            text.push_str(line);
            text.push('\n');
        }
    }
    std::fs::write(path, text).expect("calendar");
}

/// The last frontier recorded on the progress topic (0: none).
fn progress(settings: &KafkaSettings) -> u64 {
    let topic = "markledger.progress";
    let Ok(partitions) = markledger_connectors::kafka::partition_count(settings, topic) else {
        return 0;
    };
    let assignment: Vec<(String, i32)> = (0..partitions).map(|p| (topic.to_string(), p)).collect();
    let mut consumer = PartitionConsumer::starting(settings, &assignment, Start::Earliest).expect("consumer");
    let (mut at_end, mut last) = (BTreeSet::new(), 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while at_end.len() < assignment.len() && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Polled::Record(record)) => {
                last = String::from_utf8_lossy(&record.payload).parse().unwrap_or(last);
            }
            Some(Polled::PartitionEof { partition, .. }) => {
                at_end.insert(partition);
            }
            _ => {}
        }
    }
    last
}

fn stream(brokers: &str, state: &Path, log: &Path, extra: &[&str]) -> Child {
    Command::new(markledger_tests::markledger_binary())
        .args(["stream", "--brokers", brokers, "--workers", "2", "--quiet"])
        .args([
            "--idle-timeout",
            "2s",
            "--commit-interval",
            "200ms",
            "--checkpoint-interval",
            "1s",
            "--state",
        ])
        .arg(state)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log"))
        .spawn()
        .expect("markledger stream")
}

#[test]
fn a_stream_holds_at_the_calendar_end_and_goes_on_with_a_calendar_that_covers_it() {
    let work = temp("hold");
    let data = work.join("dataset");
    let config = GeneratorConfig {
        accounts: 16,
        codes: 40_000,
        seed: 28,
        format: Format::Json,
        partitions: 2,
        months: 2,
        ..GeneratorConfig::default()
    };
    let manifest = generate(&config, &data, &mut |_| {}).expect("generate");
    assert!(manifest.last_ts.as_str() > "2026-02", "the data runs into February");
    let end = chrono::DateTime::parse_from_rfc3339(&manifest.last_ts)
        .expect("rfc3339")
        .timestamp_millis() as u64
        + 1;
    let boundary = chrono::DateTime::parse_from_rfc3339("2026-02-01T00:00:00+05:00")
        .expect("rfc3339")
        .timestamp_millis() as u64;
    let calendar = work.join("short.cal");
    short_calendar(&calendar);
    let broker = Broker::start(Storage::Sqlite(work.join("broker.db")));
    let settings = KafkaSettings::new(broker.brokers());
    produce_dataset(&settings, &data, "codes.events").expect("produce");
    let state = work.join("state");
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let log = work.join("held.log");
    let flag = calendar.to_str().expect("UTF-8");
    let mut child = stream(
        &broker.brokers(),
        &state,
        &log,
        &["--calendar", flag, "--metrics-addr", &address],
    );

    // Both partitions held, said in the log and on the metrics endpoint.
    wait_for("both partitions held", Duration::from_secs(120), &mut child, || {
        scrape_one(port, "markledger_calendar_held_partitions") == Some(2.0)
    });
    std::thread::sleep(Duration::from_secs(3));
    let text = std::fs::read_to_string(&log).expect("log");
    assert_eq!(text.matches("is held at offset").count(), 2, "{text}");
    assert!(
        text.contains("a year the working-day calendar does not cover"),
        "{text}"
    );
    // January's emissions expire in February: the holds are at emissions, not at February.
    assert!(
        text.contains("its record is an emission whose expiry deadline (30 working days later) would fall in 2026"),
        "{text}"
    );
    let held_at = progress(&settings);
    assert!(
        held_at > 0 && held_at <= boundary,
        "committed {held_at}, the calendar ends at {boundary}"
    );
    terminate(child);
    assert!(
        std::fs::read_dir(&state).expect("state").any(|entry| entry
            .expect("entry")
            .path()
            .extension()
            .is_some_and(|ext| ext == "mlck")),
        "a checkpoint was written"
    );
    assert!(
        progress(&settings) <= boundary,
        "the orderly stop committed nothing past the calendar"
    );

    // Restarted with the shipped calendar: restored, and on to the end of the data.
    let log = work.join("on.log");
    let mut child = stream(&broker.brokers(), &state, &log, &[]);
    wait_for(
        "the restarted stream reaches the end of the data",
        Duration::from_secs(180),
        &mut child,
        || progress(&settings) >= end,
    );
    terminate(child);
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(text.contains("restored the checkpoint"), "{text}");
    assert!(!text.contains("is held"), "{text}");
    let _ = std::fs::remove_dir_all(&work);
}
