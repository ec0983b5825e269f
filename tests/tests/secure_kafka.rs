//! `markledger stream` against a secured cluster (issue 19), for real: tansu with
//! `--authentication` and a SCRAM-SHA-512 user made by `tansu user create`, and tansu behind
//! a TLS terminator (socat) with a CA and certificate made by the `openssl` CLI. Each test
//! publishes a small dataset, streams it with the security settings passed as `--kafka`
//! properties and the secret as `MARKLEDGER_KAFKA_*` variable, reads the balances back over
//! the same security and compares them with a file run of the same dataset; a wrong
//! password and an untrusted CA must end the stream with a clear error within seconds
//! (never a hang) and never print the secret.

use markledger_connectors::kafka::{produce_dataset, KafkaSettings, PartitionConsumer, Polled, Start};
use markledger_datasets::generator::{generate, Format, GeneratorConfig};
use markledger_tests::broker::{Broker, Certificates, TlsTerminator};
use markledger_tests::process::{temp_dir, terminate};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a refused credential may take to end the stream (the connection check gives
/// up after 15 s at the latest; a hang would run far past this).
const REFUSAL_WITHIN: Duration = Duration::from_secs(40);

const PASSWORD: &str = "correct-horse-battery-staple";

fn temp(name: &str) -> PathBuf {
    temp_dir("secure", name)
}

/// A small dataset; returns the instant just past its largest `ts` (where the stream's
/// watermark ends once every partition is idle).
fn dataset(dir: &Path) -> u64 {
    let config = GeneratorConfig {
        accounts: 12,
        codes: 20_000,
        seed: 19,
        format: Format::Json,
        bad_rate: 0.02,
        partitions: 2,
        months: 1,
        ..GeneratorConfig::default()
    };
    let manifest = generate(&config, dir, &mut |_| {}).expect("generate");
    let last = chrono::DateTime::parse_from_rfc3339(&manifest.last_ts).expect("rfc3339");
    last.timestamp_millis() as u64 + 1
}

/// The final balance record per account of a file run of `dataset` (highest `rev`).
fn file_balances(dataset: &Path, out: &Path) -> BTreeMap<String, Value> {
    let status = Command::new(markledger_tests::markledger_binary())
        .args(["run", "--quiet", "--input"])
        .arg(dataset)
        .arg("--out")
        .arg(out)
        .stdout(Stdio::null())
        .status()
        .expect("markledger run");
    assert!(status.success());
    let text = std::fs::read_to_string(out.join("balances.jsonl")).expect("balances");
    let mut balances = BTreeMap::new();
    for line in text.lines() {
        keep_latest(&mut balances, serde_json::from_str(line).expect("JSON"));
    }
    balances
}

fn keep_latest(balances: &mut BTreeMap<String, Value>, value: Value) {
    let account = value["account"].as_str().expect("account").to_string();
    if balances
        .get(&account)
        .is_none_or(|kept| kept["rev"].as_u64() < value["rev"].as_u64())
    {
        balances.insert(account, value);
    }
}

/// Settings for a client of the secured cluster: `properties` (the secret included).
fn settings(brokers: &str, properties: &[(String, String)]) -> KafkaSettings {
    let mut settings = KafkaSettings::new(brokers);
    settings.group_id = format!("secure-reader-{}", std::process::id());
    for (key, value) in properties {
        settings.properties.set(key, value).expect("a passable property");
    }
    settings
}

/// Every record of `topic` from the start, as JSON with the `id` removed.
fn read_topic(settings: &KafkaSettings, topic: &str) -> Vec<Value> {
    let partitions = markledger_connectors::kafka::partition_count(settings, topic).expect("topic exists");
    let assignment: Vec<(String, i32)> = (0..partitions).map(|p| (topic.to_string(), p)).collect();
    let mut consumer = PartitionConsumer::starting(settings, &assignment, Start::Earliest).expect("consumer");
    let mut at_end = BTreeSet::new();
    let mut records = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while at_end.len() < assignment.len() {
        assert!(Instant::now() < deadline, "reading {topic} timed out");
        match consumer.poll(Duration::from_millis(200)) {
            Some(Polled::Record(record)) => {
                let mut value: Value = serde_json::from_slice(&record.payload).unwrap_or(Value::Null);
                if let Some(object) = value.as_object_mut() {
                    object.remove("id");
                }
                records.push(value);
            }
            Some(Polled::PartitionEof { partition, .. }) => {
                at_end.insert(partition);
            }
            _ => {}
        }
    }
    records
}

/// The output frontier the stream's last commit covered (0: none yet).
fn progress(settings: &KafkaSettings) -> u64 {
    let topic = "markledger.progress";
    if markledger_connectors::kafka::partition_count(settings, topic).is_err() {
        return 0;
    }
    read_topic(settings, topic).last().and_then(Value::as_u64).unwrap_or(0)
}

/// `markledger stream` with the security flags; the password only in the environment.
fn stream(brokers: &str, flags: &[String], password: Option<&str>, log: &Path) -> Child {
    let mut command = Command::new(markledger_tests::markledger_binary());
    command
        .args([
            "stream",
            "--brokers",
            brokers,
            "--group",
            "secure-test",
            "--workers",
            "2",
        ])
        .args(["--idle-timeout", "2s", "--commit-interval", "200ms", "--quiet"])
        .args(flags)
        .stdout(std::fs::File::create(log.with_extension("out")).expect("stdout file"))
        .stderr(std::fs::File::create(log).expect("log"));
    if let Some(password) = password {
        command.env("MARKLEDGER_KAFKA_SASL_PASSWORD", password);
    }
    command.spawn().expect("markledger stream")
}

/// Publishes `data`, streams it to the end, and checks the balances read back over the
/// same security equal the file run's; the secret appears in no output of the stream.
fn round_trip(work: &Path, brokers: &str, properties: &[(String, String)], flags: &[String], secret: Option<&str>) {
    let data = work.join("dataset");
    let end = dataset(&data);
    let expected = file_balances(&data, &work.join("file-out"));
    assert!(!expected.is_empty());
    let client = settings(brokers, properties);
    let published = produce_dataset(&client, &data, "codes.events").expect("publishing over the secured connection");
    assert!(published.messages > 0);
    let log = work.join("stream.log");
    let mut child = stream(brokers, flags, secret, &log);
    let deadline = Instant::now() + Duration::from_secs(180);
    while progress(&client) < end {
        if let Some(status) = child.try_wait().expect("child") {
            panic!(
                "stream exited early ({status}): {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "the stream did not reach the end of the data"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    terminate(child);
    let mut streamed = BTreeMap::new();
    for value in read_topic(&client, "codes.balances") {
        keep_latest(&mut streamed, value);
    }
    assert_eq!(
        streamed, expected,
        "the stream's final balances differ from the file run's"
    );
    let printed = std::fs::read_to_string(&log).unwrap_or_default()
        + &std::fs::read_to_string(log.with_extension("out")).unwrap_or_default();
    assert!(printed.contains("sasl") || printed.contains("ssl"), "{printed}");
    if let Some(secret) = secret {
        assert!(!printed.contains(secret), "the secret was printed:\n{printed}");
    }
}

/// Runs a stream expected to be refused; returns its stderr, checking it ended non-zero
/// within [`REFUSAL_WITHIN`].
fn refused(brokers: &str, flags: &[String], password: Option<&str>, log: &Path) -> String {
    let started = Instant::now();
    let mut child = stream(brokers, flags, password, log);
    let status = loop {
        if let Some(status) = child.try_wait().expect("child") {
            break status;
        }
        if started.elapsed() > REFUSAL_WITHIN {
            let _ = child.kill();
            panic!(
                "a refused credential hung the stream for {REFUSAL_WITHIN:?}: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        !status.success(),
        "a refused credential must end the stream with an error"
    );
    std::fs::read_to_string(log).expect("log")
}

fn pairs(properties: &[(&str, String)]) -> Vec<(String, String)> {
    properties.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

fn flags(properties: &[(String, String)]) -> Vec<String> {
    properties
        .iter()
        .flat_map(|(key, value)| ["--kafka".to_string(), format!("{key}={value}")])
        .collect()
}

#[test]
fn scram_round_trip_and_a_wrong_password_is_refused_clearly() {
    // tansu with --authentication and a SCRAM-SHA-512 user from `tansu user create`:
    // publish, stream (security.protocol=sasl_plaintext, the password in
    // MARKLEDGER_KAFKA_SASL_PASSWORD), read the balances back: equal to the file run's.
    // Then a wrong password ends the stream within seconds, with an authentication error.
    let work = temp("scram");
    let broker = Broker::start_with_scram("markledger", PASSWORD);
    let public = pairs(&[
        ("security.protocol", "sasl_plaintext".into()),
        ("sasl.mechanisms", "SCRAM-SHA-512".into()),
        ("sasl.username", "markledger".into()),
    ]);
    let mut with_password = public.clone();
    with_password.push(("sasl.password".into(), PASSWORD.into()));
    round_trip(
        &work,
        &broker.brokers(),
        &with_password,
        &flags(&public),
        Some(PASSWORD),
    );

    let log = work.join("wrong-password.log");
    let text = refused(&broker.brokers(), &flags(&public), Some("not-the-password"), &log);
    assert!(
        text.contains("cannot connect to the Kafka cluster") && text.contains("uthentication"),
        "{text}"
    );
    assert!(!text.contains("not-the-password"), "{text}");
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
fn tls_round_trip_and_an_untrusted_ca_is_refused_clearly() {
    // tansu behind socat terminating TLS with a certificate for 127.0.0.1 signed by a test
    // CA (openssl CLI): publish, stream (security.protocol=ssl, ssl.ca.location=the CA),
    // read back: equal to the file run's. Trusting another CA ends the stream within
    // seconds with a certificate error.
    let work = temp("tls");
    let certificates = Certificates::make(&work.join("certificates"));
    let tls_port = TlsTerminator::free_port();
    let broker = Broker::start_advertising(tls_port);
    let terminator = TlsTerminator::start(tls_port, broker.port(), &certificates);
    let trusted = pairs(&[
        ("security.protocol", "ssl".into()),
        ("ssl.ca.location", certificates.ca.display().to_string()),
    ]);
    round_trip(&work, &terminator.brokers(), &trusted, &flags(&trusted), None);

    let untrusted = pairs(&[
        ("security.protocol", "ssl".into()),
        ("ssl.ca.location", certificates.other_ca.display().to_string()),
    ]);
    let log = work.join("untrusted.log");
    let text = refused(&terminator.brokers(), &flags(&untrusted), None, &log);
    assert!(
        text.contains("cannot connect to the Kafka cluster") && text.contains("certificate verify failed"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&work);
}
