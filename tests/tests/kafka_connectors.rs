//! The Kafka connectors against a real broker (tansu on loopback, `markledger_tests::broker`):
//! topics, a generated dataset published byte for byte and read back partition by
//! partition, committed offsets and resumption, partition EOF, output routing, and a broker
//! outage that the producer waits out. Needs tansu (scripts/kafka/install-tansu.sh).

use markledger_connectors::codec::json::{decode_event, render_output};
use markledger_connectors::codec::Decoded;
use markledger_connectors::kafka::{
    ensure_topics, partition_count, produce_dataset, Error, KafkaSettings, OutputProducer, PartitionConsumer, Polled,
    Record, TopicSpec,
};
use markledger_datasets::generator::codes::partition_of;
use markledger_datasets::generator::{generate, GeneratorConfig};
use markledger_operators::output::{AggregateKind, BalanceRecord, Figures, Output, PeriodKey, PeriodRecord, Rejection};
use markledger_operators::{Money, Period, Reason};
use markledger_tests::broker::{Broker, Storage};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

/// How long a test waits for a topic to be read to its end.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("markledger-kafka-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn settings(broker: &Broker, group: &str) -> KafkaSettings {
    KafkaSettings {
        group_id: group.to_string(),
        ..KafkaSettings::new(broker.brokers())
    }
}

/// A topic partition.
type TopicPartition = (String, i32);

/// Polls until every assigned partition has reported EOF at least once after its last
/// record; returns the records per (topic, partition) and the EOF offsets.
fn read_to_end(
    consumer: &mut PartitionConsumer,
) -> (BTreeMap<TopicPartition, Vec<Record>>, BTreeMap<TopicPartition, i64>) {
    let assignment = consumer.assignment();
    let mut records: BTreeMap<TopicPartition, Vec<Record>> = BTreeMap::new();
    let mut eof: BTreeMap<TopicPartition, i64> = BTreeMap::new();
    let deadline = Instant::now() + READ_TIMEOUT;
    while eof.len() < assignment.len() {
        assert!(
            Instant::now() < deadline,
            "not every partition reached EOF: {eof:?} of {assignment:?}; positions {:?}; records {:?}",
            consumer.positions(),
            records
                .iter()
                .map(|(key, list)| (key.clone(), list.len()))
                .collect::<Vec<_>>()
        );
        match consumer.poll(Duration::from_millis(500)) {
            Some(Polled::Record(record)) => {
                let key = (record.topic.clone(), record.partition);
                eof.remove(&key);
                records.entry(key).or_default().push(record);
            }
            Some(Polled::PartitionEof {
                topic,
                partition,
                next_offset,
            }) => {
                eof.insert((topic, partition), next_offset);
            }
            Some(Polled::TransientError(error)) => eprintln!("transient: {error}"),
            Some(other) => panic!("unexpected {other:?}"),
            None => {}
        }
    }
    (records, eof)
}

/// The records a partition file holds, as `produce_dataset` publishes them: non-blank
/// lines without their newline, keyed by account when they decode.
fn file_records(path: &Path) -> Vec<(Option<Vec<u8>>, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    bytes
        .split(|byte| *byte == b'\n')
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .map(|line| {
            let key = match decode_event(line) {
                Decoded::Event(event) => Some(event.account.into_bytes()),
                Decoded::Refused(_) => None,
            };
            (key, line.to_vec())
        })
        .collect()
}

#[test]
fn ensure_topics_is_idempotent_and_partition_count_reads_metadata() {
    // Creates plain and compacted topics twice (the second call must succeed and change
    // nothing), then reads their partition counts back, and a missing topic's absence.
    let broker = Broker::start(Storage::Memory);
    let settings = settings(&broker, "admin");
    let topics = [
        TopicSpec::new("codes.status", 3),
        TopicSpec::compacted("codes.balances", 2),
        TopicSpec::compacted("codes.periods", 1),
    ];
    ensure_topics(&settings, &topics).expect("first ensure_topics");
    ensure_topics(&settings, &topics).expect("second ensure_topics");
    // Asking again for more partitions leaves the existing topic as it is.
    ensure_topics(&settings, &[TopicSpec::new("codes.status", 5)]).expect("existing topic");
    assert_eq!(partition_count(&settings, "codes.status").unwrap(), 3);
    assert_eq!(partition_count(&settings, "codes.balances").unwrap(), 2);
    assert_eq!(partition_count(&settings, "codes.periods").unwrap(), 1);
    match partition_count(&settings, "no.such.topic") {
        Err(Error::UnknownTopic { topic }) => assert_eq!(topic, "no.such.topic"),
        other => panic!("expected UnknownTopic, got {other:?}"),
    }
}

#[test]
fn produce_dataset_publishes_each_file_to_its_partition_and_consumers_resume_from_commits() {
    // Generates a small dataset with malformed lines, publishes it, reads every partition
    // back and compares bytes, order and keys with the files; then commits offsets, drops
    // the consumer and checks a new consumer of the group resumes exactly there.
    //
    // SQLite storage, not memory: tansu 0.6.0's memory storage (dynostore) serves a fetch
    // only from batch boundaries, so resuming inside a produced batch skips the rest of that
    // batch (or, in the last batch, never returns it); its SQLite storage keeps records one
    // by one and resumes at any offset.
    let dir = temp_dir("dataset");
    let broker = Broker::start(Storage::Sqlite(dir.join("broker").join("tansu.db")));
    let settings = settings(&broker, "resume");
    let config = GeneratorConfig {
        accounts: 12,
        codes: 3_000,
        seed: 11,
        bad_rate: 0.1,
        partitions: 3,
        months: 1,
        ..GeneratorConfig::default()
    };
    let dataset = dir.join("dataset");
    generate(&config, &dataset, &mut |_| {}).expect("generate");
    let files: Vec<PathBuf> = (0..3).map(|index| dataset.join(format!("p{index:03}.jsonl"))).collect();
    let expected: Vec<_> = files.iter().map(|path| file_records(path)).collect();
    let total: usize = expected.iter().map(Vec::len).sum();
    let unkeyed: usize = expected.iter().flatten().filter(|(key, _)| key.is_none()).count();
    assert!(unkeyed > 0, "the dataset must include lines that do not decode");

    let report = produce_dataset(&settings, &dataset, "codes.events").expect("produce_dataset");
    assert_eq!(report.messages as usize, total);
    assert_eq!(report.partitions, 3);
    assert_eq!(report.skipped, 0);
    let payload_bytes: usize = expected.iter().flatten().map(|(_, line)| line.len()).sum();
    assert_eq!(report.bytes as usize, payload_bytes);
    assert_eq!(
        partition_count(&settings, "codes.events").unwrap(),
        3,
        "created with one partition per file"
    );

    let assignment: Vec<(String, i32)> = (0..3).map(|p| ("codes.events".to_string(), p)).collect();
    let mut consumer = PartitionConsumer::new(&settings, &assignment).expect("consumer");
    let (records, eof) = read_to_end(&mut consumer);
    for (partition, lines) in expected.iter().enumerate() {
        let key = ("codes.events".to_string(), partition as i32);
        let got = records.get(&key).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(got.len(), lines.len(), "partition {partition}: record count");
        for (index, (record, (line_key, line))) in got.iter().zip(lines).enumerate() {
            assert_eq!(record.offset, index as i64, "partition {partition}: offsets in order");
            assert_eq!(&record.payload, line, "partition {partition} record {index}: bytes");
            assert_eq!(&record.key, line_key, "partition {partition} record {index}: key");
        }
        assert_eq!(eof[&key], lines.len() as i64, "partition {partition}: EOF offset");
        // Well-formed events carry their account as the key, and the generator placed
        // every account where Kafka's murmur2 partitioner would (tariffs, account "*",
        // are everyone's and go where the generator puts them).
        for record in got {
            if let Some(account) = record.key.as_deref().filter(|key| *key != b"*") {
                let account = std::str::from_utf8(account).unwrap();
                assert_eq!(partition_of(account, 3) as i32, record.partition, "{account}");
            }
        }
    }
    assert_eq!(
        consumer.committed().unwrap(),
        vec![
            ("codes.events".to_string(), 0, None),
            ("codes.events".to_string(), 1, None),
            ("codes.events".to_string(), 2, None)
        ],
        "nothing is committed unless asked"
    );

    // Commit partition 0 mid-way, partition 1 at its end, nothing for partition 2.
    let middle = (expected[0].len() / 2) as i64;
    let end_1 = expected[1].len() as i64;
    consumer
        .commit(&[("codes.events", 0, middle), ("codes.events", 1, end_1)])
        .expect("commit");
    drop(consumer);

    let mut resumed = PartitionConsumer::new(&settings, &assignment).expect("second consumer");
    assert_eq!(
        resumed.committed().unwrap(),
        vec![
            ("codes.events".to_string(), 0, Some(middle)),
            ("codes.events".to_string(), 1, Some(end_1)),
            ("codes.events".to_string(), 2, None)
        ]
    );
    let (records, eof) = read_to_end(&mut resumed);
    let partition_0 = &records[&("codes.events".to_string(), 0)];
    assert_eq!(
        partition_0[0].offset, middle,
        "partition 0 resumes at the committed offset"
    );
    assert_eq!(partition_0.len(), expected[0].len() - middle as usize);
    assert_eq!(partition_0[0].payload, expected[0][middle as usize].1);
    assert!(
        !records.contains_key(&("codes.events".to_string(), 1)),
        "partition 1 was committed at its end"
    );
    assert_eq!(eof[&("codes.events".to_string(), 1)], end_1);
    let partition_2 = &records[&("codes.events".to_string(), 2)];
    assert_eq!(
        partition_2.len(),
        expected[2].len(),
        "partition 2 starts at the earliest offset"
    );
    assert_eq!(resumed.positions()[0].2, expected[0].len() as i64);
    drop(resumed);
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn produce_dataset_refuses_a_topic_with_too_few_partitions() {
    // A 3-file dataset cannot go onto an existing 2-partition topic: partition file i must
    // be topic partition i.
    let broker = Broker::start(Storage::Memory);
    let settings = settings(&broker, "small");
    let dir = temp_dir("small");
    for index in 0..3 {
        std::fs::write(dir.join(format!("p{index:03}.jsonl")), "{}\n").unwrap();
    }
    ensure_topics(&settings, &[TopicSpec::new("narrow", 2)]).unwrap();
    match produce_dataset(&settings, &dir, "narrow") {
        Err(Error::TooFewPartitions {
            topic,
            partitions,
            needed,
        }) => assert_eq!((topic.as_str(), partitions, needed), ("narrow", 2, 3)),
        other => panic!("expected TooFewPartitions, got {other:?}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn money(text: &str) -> Money {
    Money::from_str(text).unwrap()
}

fn sample_outputs() -> Vec<Output> {
    let at = markledger_operators::Ts(1_768_447_800_000);
    let mut outputs = Vec::new();
    for account in [
        "KZ-940000000001",
        "KZ-940000000002",
        "KZ-940000000003",
        "KZ-940000000004",
    ] {
        outputs.push(Output::Balance(BalanceRecord {
            account: account.to_string(),
            balance: money("12.50"),
            unpaid_codes: 1,
            unpaid_amount: money("3.0016"),
            pending_orders: 0,
            ts: at,
            rev: 1,
        }));
    }
    outputs.push(Output::Rejection(Rejection::of_event(
        "st1-000007",
        "payment",
        "KZ-940000000001",
        None,
        Reason::BadAmount,
        "amount is not a decimal".to_string(),
    )));
    outputs.push(Output::Period(PeriodRecord {
        key: PeriodKey {
            kind: AggregateKind::Payments,
            account: "*".to_string(),
            period: Period::new(2026, 1),
            sub: Some("kaspi/2026-01-15".to_string()),
        },
        rev: 1,
        is_final: false,
        figures: Figures::Payments {
            count: 2,
            amount: money("25"),
        },
    }));
    outputs
}

#[test]
fn output_producer_routes_outputs_to_their_topics_and_keys() {
    // Sends balances, a rejection and a period record through OutputProducer, then reads
    // every partition of the output topics: each record is on its topic with its INTERFACE.md
    // key, on the partition Kafka's murmur2 gives that key, with the rendered JSON as payload;
    // partitions nothing was sent to report EOF at offset 0.
    let broker = Broker::start(Storage::Memory);
    let settings = settings(&broker, "outputs");
    let topics = &settings.output_topics;
    ensure_topics(
        &settings,
        &[
            TopicSpec::compacted(topics.balances.clone(), 4),
            TopicSpec::new(topics.rejections.clone(), 2),
            TopicSpec::compacted(topics.periods.clone(), 2),
        ],
    )
    .unwrap();
    let outputs = sample_outputs();
    let mut producer = OutputProducer::new(&settings).unwrap();
    for output in &outputs {
        producer.send_output(output, &settings).unwrap();
    }
    producer
        .send(
            &topics.rejections,
            b"raw-key",
            b"{\"raw\":true}",
            &[("origin", b"test".as_slice())],
        )
        .unwrap();
    producer
        .flush(Duration::from_secs(30))
        .expect("every record acknowledged");
    assert_eq!(producer.delivery_failures(), 0);
    assert_eq!(producer.in_flight(), 0);

    let mut assignment = Vec::new();
    for (topic, partitions) in [(&topics.balances, 4), (&topics.rejections, 2), (&topics.periods, 2)] {
        assignment.extend((0..partitions).map(|p| (topic.clone(), p)));
    }
    let mut consumer = PartitionConsumer::new(&settings, &assignment).unwrap();
    let (records, eof) = read_to_end(&mut consumer);
    let got: Vec<(String, String, String)> = records
        .values()
        .flatten()
        .map(|record| {
            let key = String::from_utf8(record.key.clone().unwrap_or_default()).unwrap();
            let partitions = if record.topic == topics.balances { 4 } else { 2 };
            assert_eq!(
                partition_of(&key, partitions) as i32,
                record.partition,
                "{key} on {}: murmur2 partitioning",
                record.topic
            );
            (
                record.topic.clone(),
                key,
                String::from_utf8(record.payload.clone()).unwrap(),
            )
        })
        .collect();
    let mut want: Vec<(String, String, String)> = outputs
        .iter()
        .map(|output| {
            let (topic, key) = markledger_connectors::kafka::output_route(output, &settings);
            (topic.to_string(), key, render_output(output))
        })
        .collect();
    want.push((
        topics.rejections.clone(),
        "raw-key".to_string(),
        "{\"raw\":true}".to_string(),
    ));
    let mut got_sorted = got.clone();
    got_sorted.sort();
    want.sort();
    assert_eq!(got_sorted, want);
    assert!(want
        .iter()
        .any(|(_, key, _)| key == "payments/*/2026-01/kaspi/2026-01-15"));
    for ((topic, partition), next_offset) in &eof {
        let sent = records.get(&(topic.clone(), *partition)).map_or(0, Vec::len);
        assert_eq!(*next_offset, sent as i64, "{topic}/{partition}: EOF offset");
    }
    assert!(
        eof.keys().any(|key| !records.contains_key(key)),
        "some partition received nothing and still reported EOF"
    );
}

#[test]
fn producer_waits_out_a_broker_outage_and_sqlite_keeps_data_across_restarts() {
    // With SQLite storage: publishes, kills the broker, sends more while it is down (flush
    // must time out, not fail), restarts it on the same port and checks the flush then
    // succeeds and every record — sent before and during the outage — is there, once.
    let dir = temp_dir("outage");
    let mut broker = Broker::start(Storage::Sqlite(dir.join("tansu.db")));
    let settings = settings(&broker, "outage");
    ensure_topics(&settings, &[TopicSpec::new("codes.ledger", 1)]).unwrap();
    let mut producer = OutputProducer::new(&settings).unwrap();
    for index in 0..10 {
        let payload = format!("{{\"n\":{index}}}");
        producer
            .send("codes.ledger", b"KZ-940000000001", payload.as_bytes(), &[])
            .unwrap();
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("flush before the outage");

    broker.kill();
    for index in 10..20 {
        let payload = format!("{{\"n\":{index}}}");
        producer
            .send("codes.ledger", b"KZ-940000000001", payload.as_bytes(), &[])
            .unwrap();
    }
    match producer.flush(Duration::from_secs(2)) {
        Err(Error::FlushTimeout { pending, .. }) => assert!(pending > 0),
        other => panic!("expected a flush timeout while the broker is down, got {other:?}"),
    }
    broker.restart();
    producer
        .flush(Duration::from_secs(60))
        .unwrap_or_else(|error| panic!("flush after the restart: {error}\n{}", broker.log_tail()));
    assert_eq!(producer.delivery_failures(), 0);

    let mut consumer = PartitionConsumer::new(&settings, &[("codes.ledger".to_string(), 0)]).unwrap();
    let (records, _) = read_to_end(&mut consumer);
    let payloads: Vec<String> = records
        .values()
        .flatten()
        .map(|record| String::from_utf8(record.payload.clone()).unwrap())
        .collect();
    let want: Vec<String> = (0..20).map(|index| format!("{{\"n\":{index}}}")).collect();
    assert_eq!(payloads, want, "every record once, in order, across the outage");
    drop(consumer);
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Applies the compacted topics' records in offset order as a consumer does: the latest
/// value per key, a tombstone (null value) removing the key; the stream's `id` field is
/// dropped. Keyed `topic key`.
fn apply_compacted(records: &BTreeMap<TopicPartition, Vec<Record>>) -> (BTreeMap<String, serde_json::Value>, usize) {
    let mut kept = BTreeMap::new();
    let mut tombstones = 0;
    for ((topic, _), list) in records {
        for record in list {
            let key = format!(
                "{topic} {}",
                String::from_utf8(record.key.clone().unwrap_or_default()).unwrap()
            );
            if record.payload.is_empty() {
                tombstones += 1;
                kept.remove(&key);
            } else {
                let mut value: serde_json::Value = serde_json::from_slice(&record.payload).unwrap();
                value.as_object_mut().unwrap().remove("id");
                kept.insert(key, value);
            }
        }
    }
    (kept, tombstones)
}

#[test]
fn deletions_are_tombstones_that_leave_no_record_of_the_account_across_a_restart() {
    // DOMAIN.md §9 on Kafka: the golden scenario termination_export_deletion (reference
    // engine) sent through the stream's sink (KafkaSink) to a tansu broker with SQLite
    // storage. A consumer applying the compacted topics (tombstone = remove the key) ends
    // with no balances or periods key of the deleted account and every other key equal to
    // the file run's last record for it; the export lines are on codes.exports. After a
    // broker restart the same consumer gets the same result: no key came back.
    use markledger_connectors::file::OutputFile;
    use markledger_connectors::kafka::{KafkaSink, OutputTopics, SharedProducer};
    use std::sync::Arc;
    const DELETED: &str = "KZ-940000000017";
    let input = Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/scenarios/termination_export_deletion/input");
    let partitions = markledger_tests::compare::load_dataset(&input);
    let (_, outputs) = markledger::reference::run(
        &markledger_tests::default_config(),
        partitions,
        Vec::new(),
        &mut |_, _| {},
    );
    assert!(outputs.iter().any(|o| matches!(o, Output::Deleted(_))));

    let dir = temp_dir("tombstones");
    let mut broker = Broker::start(Storage::Sqlite(dir.join("tansu.db")));
    let settings = settings(&broker, "tombstones");
    let specs: Vec<TopicSpec> = OutputFile::ALL
        .iter()
        .map(|file| {
            let name = settings.output_topics.topic(*file).to_string();
            if OutputTopics::is_compacted(*file) {
                TopicSpec::compacted(name, 2)
            } else {
                TopicSpec::new(name, 2)
            }
        })
        .collect();
    ensure_topics(&settings, &specs).unwrap();
    let producer = Arc::new(SharedProducer::new(&settings).unwrap());
    let mut sink = KafkaSink::new(producer.clone(), 0);
    let mut batch = outputs.clone();
    sink.emit(1, &mut batch);
    producer.acknowledge("the test's outputs").unwrap();

    // What a consumer of the files keeps: the highest rev per key, a deletion removing it.
    let mut files: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for output in &outputs {
        let (topic, key) = markledger_connectors::kafka::output_route(output, &settings);
        if !(topic == settings.output_topics.balances || topic == settings.output_topics.periods) {
            continue;
        }
        let key = format!("{topic} {key}");
        match output {
            Output::Deleted(_) => {
                files.remove(&key);
            }
            _ => {
                files.insert(key, serde_json::from_str(&render_output(output)).unwrap());
            }
        }
    }
    let deletions = outputs.iter().filter(|o| matches!(o, Output::Deleted(_))).count();
    let exports = outputs.iter().filter(|o| matches!(o, Output::Export(_))).count();

    let compacted: Vec<(String, i32)> = [&settings.output_topics.balances, &settings.output_topics.periods]
        .into_iter()
        .flat_map(|topic| (0..2).map(move |p| (topic.clone(), p)))
        .collect();
    for round in ["before the restart", "after the restart"] {
        let mut consumer = PartitionConsumer::new(&settings, &compacted).unwrap();
        let (records, _) = read_to_end(&mut consumer);
        drop(consumer);
        let (kept, tombstones) = apply_compacted(&records);
        assert!(
            tombstones <= deletions,
            "{round}: {tombstones} tombstones for {deletions} deletions"
        );
        assert!(
            kept.keys().all(|key| !key.contains(DELETED)),
            "{round}: a key of the deleted account is kept: {:?}",
            kept.keys().filter(|key| key.contains(DELETED)).collect::<Vec<_>>()
        );
        assert_eq!(kept, files, "{round}: every other record as in the files");
        let mut consumer = PartitionConsumer::new(
            &settings,
            &[
                (settings.output_topics.exports.clone(), 0),
                (settings.output_topics.exports.clone(), 1),
            ],
        )
        .unwrap();
        let (export_records, _) = read_to_end(&mut consumer);
        drop(consumer);
        assert_eq!(
            export_records.values().map(Vec::len).sum::<usize>(),
            exports,
            "{round}: exports"
        );
        broker.restart();
    }
    drop(producer);
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}
