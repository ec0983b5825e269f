//! `markledger documents --brokers`: the period records read from the `codes.periods` topic
//! of a real broker (tansu on loopback, `markledger_tests::broker`) give the same documents,
//! byte for byte, as the same records read from `periods.jsonl`, and a tombstone removes its
//! key's document. Needs tansu (scripts/kafka/install-tansu.sh).

use markledger::documents::read_topic;
use markledger_connectors::kafka::{ensure_topics, KafkaSettings, OutputProducer, TopicSpec};
use markledger_documents::{render, LatestRecords, Options};
use markledger_tests::broker::{Broker, Storage};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("markledger-documents-kafka-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut found = Vec::new();
    for period in std::fs::read_dir(dir).unwrap() {
        let period = period.unwrap().path();
        for file in std::fs::read_dir(&period).unwrap() {
            let file = file.unwrap().path();
            let name = file.strip_prefix(dir).unwrap().display().to_string();
            found.push((name, std::fs::read(&file).unwrap()));
        }
    }
    found.sort();
    found
}

/// The Kafka key of a period record line: `kind/account/period[/sub]`.
fn key_of(line: &str) -> String {
    let record: serde_json::Value = serde_json::from_str(line).unwrap();
    let mut key = format!(
        "{}/{}/{}",
        record["kind"].as_str().unwrap(),
        record["account"].as_str().unwrap(),
        record["period"].as_str().unwrap()
    );
    if let Some(sub) = record["sub"].as_str() {
        key.push('/');
        key.push_str(sub);
    }
    key
}

#[test]
fn documents_from_the_periods_topic_equal_documents_from_the_file() {
    // Publishes a golden scenario's periods.jsonl to a 3-partition codes.periods topic
    // (keyed as the stream keys it, with an "id" field as the stream adds), reads it back
    // with read_topic, renders, and compares every file with the file path's; then a
    // tombstone for the act's key removes the act from a second read.
    let broker = Broker::start(Storage::Memory);
    let settings = KafkaSettings::new(broker.brokers());
    ensure_topics(&settings, &[TopicSpec::compacted("codes.periods", 3)]).unwrap();
    let periods_file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../datasets/scenarios/late_event_into_closed_period/expected/periods.jsonl");
    let text = std::fs::read_to_string(&periods_file).unwrap();
    let mut producer = OutputProducer::new(&settings).unwrap();
    for (i, line) in text.lines().enumerate() {
        let with_id = format!("{},\"id\":\"p-{i}\"}}", line.trim_end_matches('}'));
        producer
            .send("codes.periods", key_of(line).as_bytes(), with_id.as_bytes(), &[])
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();

    let options = Options {
        provisional: true,
        ..Options::default()
    };
    let from_file = scratch("file");
    render(&LatestRecords::read_file(&periods_file).unwrap(), &options, &from_file).unwrap();
    let from_topic = scratch("topic");
    let records = read_topic(&broker.brokers(), "codes.periods").unwrap();
    assert_eq!(records.lines, text.lines().count() as u64, "every record read once");
    render(&records, &options, &from_topic).unwrap();
    let (expected, actual) = (files(&from_file), files(&from_topic));
    assert!(expected.len() >= 20, "both periods rendered: {}", expected.len());
    assert_eq!(
        actual.iter().map(|(name, _)| name).collect::<Vec<_>>(),
        expected.iter().map(|(name, _)| name).collect::<Vec<_>>()
    );
    for ((name, a), (_, b)) in actual.iter().zip(&expected) {
        assert!(a == b, "{name} differs between the topic and the file");
    }

    producer
        .send("codes.periods", b"act/KZ-940000000017/2026-01", b"", &[])
        .unwrap();
    producer.flush(Duration::from_secs(30)).unwrap();
    let after = scratch("tombstone");
    let records = read_topic(&broker.brokers(), "codes.periods").unwrap();
    render(&records, &options, &after).unwrap();
    assert!(
        !after.join("2026-01/act-KZ-940000000017.pdf").exists(),
        "the tombstoned act is gone"
    );
    assert!(after.join("2026-01/reconciliation-KZ-940000000017.pdf").exists());
    for dir in [from_file, from_topic, after] {
        let _ = std::fs::remove_dir_all(dir);
    }
}
