//! `markledger stream --metrics-addr` (issue 19): the test scrapes `/metrics` over HTTP while
//! the stream runs against a real tansu broker. The first half of a dataset is published,
//! streamed and scraped; then the second half, and the figures must move (records read,
//! output frontier, outputs produced); once the stream is idle at the end of the data its
//! figures must agree with the summary it prints on SIGTERM (records read, outputs
//! produced, codes held and live in the national index), per-partition figures must add
//! up, and checkpoint, frontier, lag, memory and broker figures must be there.

use markledger_connectors::kafka::{produce_dataset, KafkaSettings};
use markledger_datasets::generator::{generate, Format, GeneratorConfig};
use markledger_tests::broker::{Broker, Storage};
use markledger_tests::process::{free_port, scrape, sigterm, temp_dir, wait_for};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn temp(name: &str) -> PathBuf {
    temp_dir("metrics", name)
}

/// A dataset split into two halves by line count per partition: `first` and `second`
/// hold the same partition file names. Returns the number of lines of each half.
fn halves(work: &Path) -> (PathBuf, PathBuf, u64, u64) {
    let data = work.join("dataset");
    let config = GeneratorConfig {
        accounts: 20,
        codes: 60_000,
        seed: 23,
        format: Format::Json,
        bad_rate: 0.03,
        partitions: 2,
        months: 1,
        ..GeneratorConfig::default()
    };
    generate(&config, &data, &mut |_| {}).expect("generate");
    let (first, second) = (work.join("first"), work.join("second"));
    std::fs::create_dir_all(&first).expect("dir");
    std::fs::create_dir_all(&second).expect("dir");
    let (mut count_first, mut count_second) = (0, 0);
    for file in markledger_connectors::file::list_partitions(std::slice::from_ref(&data)).expect("partitions") {
        let text = std::fs::read_to_string(&file).expect("partition");
        let lines: Vec<&str> = text.lines().collect();
        let (head, tail) = lines.split_at(lines.len() / 2);
        let name = file.file_name().expect("name");
        std::fs::write(first.join(name), head.join("\n") + "\n").expect("write");
        std::fs::write(second.join(name), tail.join("\n") + "\n").expect("write");
        count_first += head.len() as u64;
        count_second += tail.len() as u64;
    }
    (first, second, count_first, count_second)
}

fn sum(samples: &BTreeMap<String, f64>, prefix: &str) -> f64 {
    samples
        .iter()
        .filter(|(name, _)| name.starts_with(prefix))
        .map(|(_, value)| value)
        .sum()
}

fn value(samples: &BTreeMap<String, f64>, name: &str) -> f64 {
    *samples
        .get(name)
        .unwrap_or_else(|| panic!("no {name} in the scrape: {samples:#?}"))
}

/// Scrapes until `done` holds (panics after 120 s or if the stream exits).
fn scrape_until(port: u16, child: &mut Child, done: impl Fn(&BTreeMap<String, f64>) -> bool) -> BTreeMap<String, f64> {
    let mut reached = BTreeMap::new();
    wait_for(
        "the metrics reach the expected figures",
        Duration::from_secs(120),
        child,
        || match scrape(port) {
            Some(samples) if done(&samples) => {
                reached = samples;
                true
            }
            _ => false,
        },
    );
    reached
}

#[test]
fn metrics_move_during_a_stream_and_agree_with_its_summary() {
    let work = temp("stream");
    let (first, second, count_first, count_second) = halves(&work);
    let broker = Broker::start(Storage::Memory);
    let settings = KafkaSettings::new(broker.brokers());
    produce_dataset(&settings, &first, "codes.events").expect("produce the first half");
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let state = work.join("state");
    let mut child = Command::new(markledger_tests::markledger_binary())
        .args(["stream", "--brokers", &broker.brokers(), "--workers", "2", "--quiet"])
        .args([
            "--idle-timeout",
            "2s",
            "--commit-interval",
            "200ms",
            "--checkpoint-interval",
            "1s",
        ])
        .args(["--metrics-addr", &address, "--state"])
        .arg(&state)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(work.join("stream.log")).expect("log"))
        .spawn()
        .expect("markledger stream");

    // The first half read: per-partition records add up to the total read; the national
    // index has reported its codes.
    let half = scrape_until(port, &mut child, |s| {
        s.get("markledger_input_records_read_total") == Some(&(count_first as f64))
            && s.contains_key("markledger_output_frontier_seconds")
            && s.get("markledger_codes_held").is_some_and(|held| *held > 0.0)
    });
    let held_half = value(&half, "markledger_codes_held");
    assert_eq!(
        held_half,
        value(&half, "markledger_codes_live") + value(&half, "markledger_codes_final")
    );
    assert!(value(&half, "markledger_code_state_memory_bytes") > 0.0);
    assert_eq!(value(&half, "markledger_kafka_brokers_reachable"), 1.0);
    assert_eq!(sum(&half, "markledger_input_records_total{"), count_first as f64);
    let frontier_half = value(&half, "markledger_output_frontier_seconds");
    let produced_half = sum(&half, "markledger_output_records_total{");
    assert!(produced_half > 0.0);

    // The second half: the figures move.
    produce_dataset(&settings, &second, "codes.events").expect("produce the second half");
    let total = (count_first + count_second) as f64;
    let end = scrape_until(port, &mut child, |s| {
        s.get("markledger_input_records_read_total") == Some(&total)
            && s.contains_key("markledger_checkpoint_age_seconds")
            && s.keys()
                .filter(|k| k.starts_with("markledger_input_consumer_lag{"))
                .count()
                == 2
            && s.get("markledger_output_frontier_seconds")
                .is_some_and(|f| *f > frontier_half)
            && s.get("markledger_codes_held").is_some_and(|held| *held > held_half)
    });
    assert_eq!(sum(&end, "markledger_input_records_total{"), total);
    assert!(sum(&end, "markledger_output_records_total{") > produced_half);
    assert!(
        sum(&end, "markledger_rejections_total{") > 0.0,
        "the dataset has bad events"
    );
    assert!(value(&end, "markledger_checkpoints_total") >= 1.0);
    assert!(value(&end, "markledger_checkpoint_bytes") > 0.0);
    assert!(value(&end, "markledger_commits_total") >= 1.0);
    assert!(value(&end, "markledger_process_resident_memory_bytes") > 1e6);
    assert_eq!(value(&end, "markledger_calendar_held_partitions"), 0.0);
    // One late-event counter per partition (how many depends on timing: the second half
    // reaches partitions that went idle, behind the watermark the other one set).
    let late: Vec<_> = end
        .iter()
        .filter(|(name, _)| name.starts_with("markledger_input_late_events_total{"))
        .collect();
    assert_eq!(late.len(), 2, "{late:?}");
    for partition in ["0", "1"] {
        let labels = format!("{{topic=\"codes.events\",partition=\"{partition}\"}}");
        let high_water = value(&end, &format!("markledger_input_high_water_seconds{labels}"));
        let watermark = value(&end, &format!("markledger_input_watermark_seconds{labels}"));
        assert_eq!(
            high_water - watermark,
            5.0,
            "the watermark is the high-water mark minus 5 s lateness"
        );
    }
    assert!(value(&end, "markledger_code_state_memory_bytes") > 0.0);
    assert!(value(&end, "markledger_code_state_disk_bytes") >= 0.0);
    assert_eq!(value(&end, "markledger_kafka_brokers_reachable"), 1.0);
    assert_eq!(value(&end, "markledger_kafka_unreachable_total"), 0.0);
    // Idle at the end of the data: what the stream's summary will say, once the index's
    // report (at each checkpoint, every 1 s) stays the same over two checkpoints.
    let mut idle = scrape(port).expect("a scrape");
    wait_for(
        "the codes figures hold still",
        Duration::from_secs(60),
        &mut child,
        || {
            std::thread::sleep(Duration::from_millis(2_500));
            let again = scrape(port).expect("a scrape");
            let steady = ["markledger_codes_held", "markledger_codes_live"]
                .iter()
                .all(|name| again.get(*name) == idle.get(*name));
            idle = again;
            steady
        },
    );
    let produced = sum(&idle, "markledger_output_records_total{");
    let (held, live) = (
        value(&idle, "markledger_codes_held") as u64,
        value(&idle, "markledger_codes_live") as u64,
    );

    sigterm(&child);
    let mut summary = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut summary)
        .expect("summary");
    assert!(child.wait().expect("exit").success(), "{summary}");
    assert!(
        summary.contains(&format!("2 partitions, {} records read", total as u64)),
        "{summary}"
    );
    assert!(
        summary.contains(&format!("outputs     {} produced", produced as u64)),
        "metrics say {produced} produced; the summary:\n{summary}"
    );
    assert!(
        summary.contains(&format!("memory      codes held {held} ({live} live in RAM")),
        "metrics say {held} codes held, {live} live; the summary:\n{summary}"
    );
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
fn a_file_run_serves_its_records_read_while_it_lasts() {
    // `run --metrics-addr`: scraped while the run goes, the records read only grow and
    // never pass the dataset's event count; memory and the codes held are there; the run ends
    // normally and its summary says as many records.
    let work = temp("run");
    let data = work.join("dataset");
    let config = GeneratorConfig {
        accounts: 40,
        codes: 400_000,
        seed: 31,
        format: Format::Json,
        partitions: 4,
        months: 2,
        ..GeneratorConfig::default()
    };
    let manifest = generate(&config, &data, &mut |_| {}).expect("generate");
    let port = free_port();
    let mut child = Command::new(markledger_tests::markledger_binary())
        .args([
            "run",
            "--quiet",
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
            "--input",
        ])
        .arg(&data)
        .arg("--out")
        .arg(work.join("out"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("markledger run");
    let (mut seen, mut codes_held) = (Vec::new(), Vec::new());
    while child.try_wait().expect("child").is_none() {
        if let Some(samples) = scrape(port) {
            assert!(value(&samples, "markledger_process_resident_memory_bytes") > 1e6);
            seen.push(value(&samples, "markledger_input_records_read_total"));
            codes_held.extend(samples.get("markledger_codes_held").copied());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut summary = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut summary)
        .expect("summary");
    assert!(child.wait().expect("exit").success(), "{summary}");
    assert!(!seen.is_empty(), "no scrape succeeded while the run lasted");
    // The national index reports every 64th store advance: a file run shows its codes too.
    assert!(
        codes_held.iter().any(|held| *held > 0.0),
        "no scrape showed codes held: {codes_held:?}"
    );
    assert!(seen.windows(2).all(|pair| pair[0] <= pair[1]), "{seen:?}");
    assert!(*seen.last().expect("one") <= manifest.events as f64, "{seen:?}");
    assert!(summary.contains(&manifest.events.to_string()), "{summary}");
    let _ = std::fs::remove_dir_all(&work);
}
