//! Unit tests of the Kafka connectors that need no broker: the librdkafka options, output
//! routing, output ids and the bounded line reader (the offset tracking's are in
//! `offsets.rs`). The broker-backed tests are in
//! tests/tests/kafka_connectors.rs (they run against a real tansu).

use super::publish::PAYLOAD_BYTES_MAX;
use super::*;
use crate::codec::json::render_output;
use crate::samples::ts;
use markledger_operators::output::{
    AggregateKind, BalanceRecord, Entry, Figures, LedgerEntry, Output, PeriodKey, PeriodRecord, Rejection, StatusChange,
};
use markledger_operators::{Money, Period, Reason, Status};
use std::io::Cursor;
use std::str::FromStr;

fn money(text: &str) -> Money {
    Money::from_str(text).unwrap()
}

fn settings() -> KafkaSettings {
    KafkaSettings {
        group_id: "g1".to_string(),
        client_id: "c1".to_string(),
        ..KafkaSettings::new("10.0.0.1:9092,10.0.0.2:9092")
    }
}

#[test]
fn client_config_sets_every_option_the_pipeline_relies_on() {
    // Builds each role's configuration and checks the values the connectors depend on,
    // and that no role carries another role's options (librdkafka would warn about them).
    let settings = settings();
    let consumer = client_config(&settings, Role::Consumer);
    let producer = client_config(&settings, Role::Producer);
    let admin = client_config(&settings, Role::Admin);
    for config in [&consumer, &producer, &admin] {
        assert_eq!(config.get("bootstrap.servers"), Some("10.0.0.1:9092,10.0.0.2:9092"));
        assert_eq!(config.get("client.id"), Some("c1"));
        assert_eq!(config.get("socket.keepalive.enable"), Some("true"));
        assert_eq!(config.get("reconnect.backoff.ms"), Some("100"));
        assert_eq!(config.get("reconnect.backoff.max.ms"), Some("10000"));
        assert_eq!(config.get("allow.auto.create.topics"), Some("false"));
    }
    let expected_consumer = [
        ("group.id", "g1"),
        ("enable.auto.commit", "false"),
        ("enable.auto.offset.store", "false"),
        ("auto.offset.reset", "earliest"),
        ("isolation.level", "read_committed"),
        ("enable.partition.eof", "true"),
    ];
    for (key, value) in expected_consumer {
        assert_eq!(consumer.get(key), Some(value), "consumer {key}");
        assert_eq!(producer.get(key), None, "producer {key}");
    }
    let expected_producer = [
        ("enable.idempotence", "true"),
        ("acks", "all"),
        ("partitioner", "murmur2_random"),
        ("linger.ms", "5"),
        ("compression.type", "lz4"),
        ("message.timeout.ms", "0"),
        ("max.in.flight.requests.per.connection", "1"),
    ];
    for (key, value) in expected_producer {
        assert_eq!(producer.get(key), Some(value), "producer {key}");
        assert_eq!(consumer.get(key), None, "consumer {key}");
    }
    assert_eq!(admin.get("group.id"), None);
    assert_eq!(admin.get("enable.idempotence"), None);
    // librdkafka itself accepts every option and value (an unknown name or a bad value
    // fails client creation, before any connection is attempted).
    let _: rdkafka::consumer::BaseConsumer = consumer.create().expect("consumer options");
    let _: rdkafka::producer::BaseProducer = producer.create().expect("producer options");
    let _: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> = admin.create().expect("admin options");
}

#[test]
fn user_properties_reach_every_client_and_secrets_are_never_shown() {
    // Sets TLS/SASL properties from `--kafka` pairs and MARKLEDGER_KAFKA_* variables:
    // all three roles carry them (last, so they win), librdkafka accepts them (this build
    // has TLS and SASL/SCRAM), a protected property is refused, and neither `Debug` nor
    // `shown()` prints the password.
    let mut settings = settings();
    let properties = &mut settings.properties;
    properties.set_pair("security.protocol=sasl_ssl").unwrap();
    properties.set_pair("sasl.mechanisms=SCRAM-SHA-512").unwrap();
    properties.set_pair("sasl.username=alice").unwrap();
    properties.set_pair("socket.timeout.ms=5000").unwrap();
    properties
        .set_from_environment([
            (
                "MARKLEDGER_KAFKA_SASL_PASSWORD".to_string(),
                "hunter2-secret".to_string(),
            ),
            ("HOME".to_string(), "/root".to_string()),
        ])
        .unwrap();
    for role in [Role::Consumer, Role::Producer, Role::Admin] {
        let config = client_config(&settings, role);
        assert_eq!(config.get("security.protocol"), Some("sasl_ssl"), "{role:?}");
        assert_eq!(config.get("sasl.username"), Some("alice"), "{role:?}");
        assert_eq!(config.get("sasl.password"), Some("hunter2-secret"), "{role:?}");
        // The user's value wins over the project's default.
        assert_eq!(config.get("socket.timeout.ms"), Some("5000"), "{role:?}");
    }
    let _: rdkafka::consumer::BaseConsumer = client_config(&settings, Role::Consumer)
        .create()
        .expect("librdkafka is built with TLS and SASL/SCRAM");
    let shown = format!("{:?} {:?}", settings, settings.properties.shown());
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("sasl.password") && shown.contains(REDACTED), "{shown}");
    let mut other = Properties::default();
    let refused = other.set_pair("enable.auto.commit=true").unwrap_err();
    assert!(refused.contains("cannot be overridden"), "{refused}");
    assert!(other.set_pair("sasl.password").unwrap_err().contains(REDACTED));
    assert!(other
        .set_from_environment([("MARKLEDGER_KAFKA_ACKS".to_string(), "1".to_string())])
        .unwrap_err()
        .contains("MARKLEDGER_KAFKA_ACKS"));
}

#[test]
fn default_settings_use_interface_topic_names() {
    // Compares the defaults with INTERFACE.md's table.
    let settings = KafkaSettings::default();
    assert_eq!(settings.input_topics, vec!["codes.events".to_string()]);
    let topics = &settings.output_topics;
    assert_eq!(
        [
            &topics.status,
            &topics.ledger,
            &topics.balances,
            &topics.rejections,
            &topics.periods,
            &topics.exports
        ],
        [
            "codes.status",
            "codes.ledger",
            "codes.balances",
            "codes.rejections",
            "codes.periods",
            "codes.exports"
        ]
    );
    let compacted: Vec<_> = crate::file::OutputFile::ALL
        .into_iter()
        .filter(|output| OutputTopics::is_compacted(*output))
        .map(|output| topics.topic(output))
        .collect();
    assert_eq!(compacted, ["codes.balances", "codes.periods"]);
}

fn period(sub: Option<&str>) -> Output {
    Output::Period(PeriodRecord {
        key: PeriodKey {
            kind: AggregateKind::Payments,
            account: "*".to_string(),
            period: Period::new(2026, 1),
            sub: sub.map(str::to_string),
        },
        rev: 2,
        is_final: true,
        figures: Figures::Payments {
            count: 1,
            amount: money("10"),
        },
    })
}

#[test]
fn output_route_uses_interface_topics_and_keys() {
    // Routes one output of each kind and checks topic and key against INTERFACE.md.
    let settings = KafkaSettings::default();
    let at = ts("2026-01-15T09:30:00+05:00");
    let account = "KZ-940000000017".to_string();
    let status = Output::Status(StatusChange {
        event: Some("e1".to_string()),
        account: account.clone(),
        gtin: "04601234567893".to_string(),
        from: None,
        to: Status::Emitted,
        ts: at,
        late: false,
        codes: vec!["c1".to_string()],
    });
    let ledger = Output::Ledger(LedgerEntry {
        account: account.clone(),
        entry: Entry::Payment,
        amount: money("10"),
        balance: money("10"),
        ts: at,
        event: "e2".to_string(),
        codes: None,
        late: false,
        period: Period::new(2026, 1),
    });
    let balance = Output::Balance(BalanceRecord {
        account: account.clone(),
        balance: money("10"),
        unpaid_codes: 0,
        unpaid_amount: money("0"),
        pending_orders: 0,
        ts: at,
        rev: 1,
    });
    let rejection = Output::Rejection(Rejection::of_event(
        "e3",
        "payment",
        &account,
        None,
        Reason::BadAmount,
        "x".to_string(),
    ));
    let anonymous = Output::Rejection(Rejection {
        event: None,
        event_type: None,
        account: None,
        code: None,
        reason: Reason::Malformed,
        detail: "not JSON".to_string(),
        raw: Some("{".to_string()),
    });
    let routed = |output: &Output| {
        let (topic, key) = output_route(output, &settings);
        (topic.to_string(), key)
    };
    let pair = |topic: &str, key: &str| (topic.to_string(), key.to_string());
    assert_eq!(routed(&status), pair("codes.status", &account));
    assert_eq!(routed(&ledger), pair("codes.ledger", &account));
    assert_eq!(routed(&balance), pair("codes.balances", &account));
    assert_eq!(routed(&rejection), pair("codes.rejections", "e3"));
    assert_eq!(routed(&anonymous), pair("codes.rejections", ""));
    assert_eq!(routed(&period(None)), pair("codes.periods", "payments/*/2026-01"));
    assert_eq!(
        routed(&period(Some("kaspi/2026-01-15"))),
        pair("codes.periods", "payments/*/2026-01/kaspi/2026-01-15")
    );
}

#[test]
fn period_key_render_matches_the_rendered_record() {
    // The Kafka key of a period record must be INTERFACE.md's `kind/account/period[/sub]`
    // built from the very fields the record's JSON carries.
    for output in [period(None), period(Some("04601234567893"))] {
        let json: serde_json::Value = serde_json::from_str(&render_output(&output)).unwrap();
        let mut parts = vec![
            json["kind"].as_str().unwrap().to_string(),
            json["account"].as_str().unwrap().to_string(),
            json["period"].as_str().unwrap().to_string(),
        ];
        if let Some(sub) = json["sub"].as_str() {
            parts.push(sub.to_string());
        }
        let Output::Period(record) = &output else {
            unreachable!()
        };
        assert_eq!(record.key.render(), parts.join("/"));
    }
}

#[test]
fn the_content_hash_is_the_xxh3_128_of_topic_newline_payload() {
    // Ids must not change between releases: consumers drop repeats by them. Compares the
    // in-place hash with xxh3-128 of the joined text, for short, empty and long inputs.
    for (topic, payload) in [
        ("codes.ledger", r#"{"account":"A"}"#),
        ("", ""),
        ("t", &"x".repeat(5000)),
    ] {
        let joined = format!("{topic}\n{payload}");
        assert_eq!(
            sink::content_hash(topic, payload),
            xxhash_rust::xxh3::xxh3_128(joined.as_bytes())
        );
    }
}

#[test]
fn an_id_is_added_as_the_last_field() {
    // Adds an id to a rendered record and checks the text (last field) and that it parses.
    let payload = r#"{"account":"A","balance":"1.00"}"#;
    let with = sink::with_id(payload, "abc-0");
    assert_eq!(with, r#"{"account":"A","balance":"1.00","id":"abc-0"}"#);
    let value: serde_json::Value = serde_json::from_str(&with).expect("JSON");
    assert_eq!(value["id"], "abc-0");
}

#[test]
fn read_line_bounded_splits_lines_and_skips_oversized_ones() {
    // Feeds short lines, a line over the payload limit and a last line without a newline;
    // the long line comes back truncated to limit + 1 bytes and the reader resumes after it.
    let long = vec![b'x'; PAYLOAD_BYTES_MAX + 10];
    let mut input = b"a\r\n\nb\n".to_vec();
    input.extend_from_slice(&long);
    input.extend_from_slice(b"\nlast");
    let mut reader = Cursor::new(input);
    let mut lines = Vec::new();
    loop {
        let mut line = Vec::new();
        let complete = publish::read_line_bounded(&mut reader, &mut line).unwrap();
        if line.is_empty() && !complete {
            break;
        }
        lines.push((line.len(), line.get(..4).map(<[u8]>::to_vec), complete));
    }
    assert_eq!(
        lines,
        vec![
            (2, None, true),
            (0, None, true),
            (1, None, true),
            (PAYLOAD_BYTES_MAX + 1, Some(b"xxxx".to_vec()), true),
            (4, Some(b"last".to_vec()), false),
        ]
    );
}

/// librdkafka's in-process mock cluster with `topics` created (its admin API does not
/// create topics; TOOLCHAIN.md). A fast check of the connector logic only: the real-broker
/// evidence is tests/tests/kafka_connectors.rs.
fn mock_cluster(
    topics: &[(&str, i32)],
) -> rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    for (topic, partitions) in topics {
        cluster.create_topic(topic, *partitions, 1).expect("mock topic");
    }
    cluster
}

#[test]
fn mock_cluster_round_trip_with_eof_commit_and_resume() {
    // Against librdkafka's mock cluster: sends keyed records to two partitions, reads them
    // back through split partition queues (every record once, in order, then EOF at the
    // right offset), commits, and checks a new consumer resumes at the commit.
    let cluster = mock_cluster(&[("in", 2)]);
    let settings = KafkaSettings {
        group_id: "mock".to_string(),
        ..KafkaSettings::new(cluster.bootstrap_servers())
    };
    assert_eq!(partition_count(&settings, "in").unwrap(), 2);
    let mut producer = OutputProducer::new(&settings).unwrap();
    for index in 0..10 {
        let payload = format!("r{index}");
        producer
            .send_record("in", Some(index % 2), Some(b"k"), payload.as_bytes(), &[])
            .unwrap();
    }
    producer.flush(std::time::Duration::from_secs(30)).unwrap();
    let assignment = vec![("in".to_string(), 0), ("in".to_string(), 1)];
    let read = |consumer: &mut PartitionConsumer| {
        let mut records = Vec::new();
        let mut eof = std::collections::BTreeMap::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while eof.len() < 2 {
            assert!(std::time::Instant::now() < deadline, "no EOF: {eof:?}");
            match consumer.poll(std::time::Duration::from_millis(200)) {
                Some(Polled::Record(record)) => {
                    eof.remove(&record.partition);
                    records.push((
                        record.partition,
                        record.offset,
                        String::from_utf8(record.payload).unwrap(),
                    ));
                }
                Some(Polled::PartitionEof {
                    partition, next_offset, ..
                }) => {
                    eof.insert(partition, next_offset);
                }
                _ => {}
            }
        }
        records.sort();
        (records, eof)
    };
    let mut consumer = PartitionConsumer::new(&settings, &assignment).unwrap();
    let (records, eof) = read(&mut consumer);
    let want: Vec<_> = (0..10)
        .map(|index| (index % 2, i64::from(index / 2), format!("r{index}")))
        .collect();
    let mut want = want;
    want.sort();
    assert_eq!(records, want);
    assert_eq!(eof.into_iter().collect::<Vec<_>>(), vec![(0, 5), (1, 5)]);
    consumer.commit(&[("in", 0, 3), ("in", 1, 5)]).unwrap();
    drop(consumer);
    let mut resumed = PartitionConsumer::new(&settings, &assignment).unwrap();
    assert_eq!(
        resumed.committed().unwrap(),
        vec![("in".to_string(), 0, Some(3)), ("in".to_string(), 1, Some(5))]
    );
    let (records, eof) = read(&mut resumed);
    assert_eq!(records, vec![(0, 3, "r6".to_string()), (0, 4, "r8".to_string())]);
    assert_eq!(eof.into_iter().collect::<Vec<_>>(), vec![(0, 5), (1, 5)]);
}

#[test]
fn kafka_errors_print_their_cause_once_in_the_whole_chain() {
    // Renders a dataset read error and a client error with their source chains as `{:#}`
    // does: each cause's text appears exactly once.
    let error = Error::Io {
        path: "/data/p001.bin".to_owned(),
        cause: std::io::Error::other("Input/output error (os error 5)"),
    };
    let text = crate::file::tests::chain_text(&error);
    assert_eq!(text, "reading /data/p001.bin: Input/output error (os error 5)");
    let error = Error::client(
        "creating the consumer",
        rdkafka::error::KafkaError::ClientCreation("bad bootstrap.servers".to_owned()),
    );
    let text = crate::file::tests::chain_text(&error);
    assert_eq!(text.matches("bad bootstrap.servers").count(), 1, "{text}");
}
