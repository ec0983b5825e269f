//! `markledger stream` against a real Kafka-protocol broker (tansu, SQLite storage, on
//! loopback): the same outputs as `markledger run` on the same partitions, compared as an
//! INTERFACE.md consumer would (final balances, final statuses, rejections, ledger entries,
//! latest period revisions), through SIGTERM, SIGKILL and a broker restart in the middle.

use markledger_connectors::kafka::{produce_dataset, KafkaSettings, PartitionConsumer, Polled, Start};
use markledger_datasets::generator::{generate, Format, GeneratorConfig};
use markledger_tests::broker::{Broker, Storage};
use markledger_tests::process::{temp_dir, terminate};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const OUTPUTS: [&str; 5] = ["status", "ledger", "balances", "rejections", "periods"];

fn temp(name: &str) -> PathBuf {
    temp_dir("stream", name)
}

fn binary() -> PathBuf {
    markledger_tests::markledger_binary()
}

/// What a consumer keeps of one run's outputs, as JSON values.
#[derive(Debug, Default, PartialEq)]
struct Consumed {
    balances: BTreeMap<String, Value>,
    statuses: BTreeMap<String, String>,
    rejections: BTreeMap<String, usize>,
    ledger: BTreeMap<String, usize>,
    periods: BTreeMap<String, Value>,
    /// Keys of `balances` and `periods` a deletion removed (DOMAIN.md §9).
    deleted: BTreeSet<String>,
}

impl Consumed {
    /// Folds the five output files of a file run in `out`.
    fn add_files(&mut self, out: &Path) {
        for output in OUTPUTS {
            let text = std::fs::read_to_string(out.join(format!("{output}.jsonl"))).expect("output file");
            for line in text.lines() {
                self.add(output, line);
            }
        }
    }

    /// A deletion of a compacted key (a file's `"deleted": true` record, or a Kafka
    /// tombstone with that key): the consumer drops the key.
    fn delete(&mut self, output: &str, key: &str) {
        // A repeated tombstone (a restart re-sends it) finds the key gone already.
        match output {
            "balances" => self.balances.remove(key),
            "periods" => self.periods.remove(key),
            other => panic!("a deletion on {other}"),
        };
        self.deleted.insert(format!("{output}/{key}"));
    }

    /// The key of a `periods` record as its Kafka key renders it: `kind/account/period[/sub]`.
    fn period_key(value: &Value) -> String {
        let text = |field: &str| value[field].as_str().expect("a key field").to_string();
        let mut key = format!("{}/{}/{}", text("kind"), text("account"), text("period"));
        if let Some(sub) = value["sub"].as_str() {
            key.push('/');
            key.push_str(sub);
        }
        key
    }

    /// Folds records of one output, in their order within an account (key).
    fn add(&mut self, output: &str, line: &str) {
        let value: Value = serde_json::from_str(line).expect("an output is JSON");
        if value["deleted"] == Value::Bool(true) {
            let key = match output {
                "balances" => value["account"].as_str().expect("account").to_string(),
                _ => Self::period_key(&value),
            };
            return self.delete(output, &key);
        }
        match output {
            // Compacted topics: the highest `rev` per key wins (a repeat may come late).
            "balances" => {
                let account = value["account"].as_str().expect("account").to_string();
                let newer = self
                    .balances
                    .get(&account)
                    .is_none_or(|kept| kept["rev"].as_u64() < value["rev"].as_u64());
                if newer {
                    self.balances.insert(account, value);
                }
            }
            "status" => {
                let to = value["to"].as_str().expect("to").to_string();
                for code in value["codes"].as_array().expect("codes") {
                    self.statuses
                        .insert(code.as_str().expect("a code").to_string(), to.clone());
                }
            }
            // Compared as values (key order aside).
            "rejections" => *self.rejections.entry(value.to_string()).or_default() += 1,
            "ledger" => *self.ledger.entry(value.to_string()).or_default() += 1,
            "periods" => {
                let key = Self::period_key(&value);
                let newer = self
                    .periods
                    .get(&key)
                    .is_none_or(|kept| kept["rev"].as_u64() < value["rev"].as_u64());
                if newer {
                    self.periods.insert(key, value);
                }
            }
            other => panic!("unknown output {other}"),
        }
    }
}

fn file_run(dataset: &Path, out: &Path) -> Consumed {
    file_run_with(dataset, out, &[])
}

/// [`file_run`] with extra flags.
fn file_run_with(dataset: &Path, out: &Path, extra: &[&str]) -> Consumed {
    let status = Command::new(binary())
        .args(["run", "--quiet", "--input"])
        .arg(dataset)
        .args(extra)
        .arg("--out")
        .arg(out)
        .stdout(Stdio::null())
        .status()
        .expect("markledger run");
    assert!(status.success());
    let mut consumed = Consumed::default();
    consumed.add_files(out);
    consumed
}

fn stream(brokers: &str, prefix: &str, log: &Path) -> Child {
    stream_with(brokers, prefix, log, &[])
}

/// `markledger stream` with extra flags.
fn stream_with(brokers: &str, prefix: &str, log: &Path, extra: &[&str]) -> Child {
    stream_command(brokers, prefix, log, extra)
        .spawn()
        .expect("markledger stream")
}

/// The command line of `markledger stream` the tests run, with extra flags.
fn stream_command(brokers: &str, prefix: &str, log: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(binary());
    command
        .args([
            "stream",
            "--brokers",
            brokers,
            "--topic-prefix",
            prefix,
            "--group",
            "markledger-test",
        ])
        // Longer than the broker outage below plus a slow fetch: a partition that is merely
        // waiting for the broker must not count as idle (docs/ARCHITECTURE.md, stream mode).
        .args(["--idle-timeout", "6s", "--commit-interval", "200ms", "--quiet"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log"));
    command
}

fn settings(brokers: &str) -> KafkaSettings {
    let mut settings = KafkaSettings::new(brokers);
    settings.group_id = format!("markledger-test-reader-{}", std::process::id());
    settings
}

/// Every record of `topic` from the start: (payload, id header); a tombstone (null value) as
/// an empty payload, its id from the `markledger-id` header, and its key after a newline.
fn read_topic(brokers: &str, topic: &str) -> Vec<(String, Option<String>)> {
    let settings = settings(brokers);
    let partitions = markledger_connectors::kafka::partition_count(&settings, topic).expect("topic exists");
    let assignment: Vec<(String, i32)> = (0..partitions).map(|p| (topic.to_string(), p)).collect();
    let mut consumer = PartitionConsumer::starting(&settings, &assignment, Start::Earliest).expect("consumer");
    let mut at_end = BTreeSet::new();
    let mut records = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while at_end.len() < assignment.len() {
        assert!(Instant::now() < deadline, "reading {topic} timed out");
        match consumer.poll(Duration::from_millis(200)) {
            Some(Polled::Record(record)) if record.payload.is_empty() => {
                let header = record.headers.iter().find(|(name, _)| name == "markledger-id");
                let id = header.map(|(_, id)| String::from_utf8_lossy(id).to_string());
                let key = String::from_utf8(record.key.clone().unwrap_or_default()).expect("UTF-8 key");
                records.push((format!("\n{key}"), id));
            }
            Some(Polled::Record(record)) => {
                let mut value: Value = serde_json::from_slice(&record.payload).unwrap_or(Value::Null);
                let id = value
                    .as_object_mut()
                    .and_then(|object| object.remove("id"))
                    .and_then(|id| id.as_str().map(str::to_string));
                let payload = if id.is_some() {
                    value.to_string()
                } else {
                    String::from_utf8(record.payload).expect("UTF-8")
                };
                records.push((payload, id));
            }
            Some(Polled::PartitionEof { partition, .. }) => {
                at_end.insert(partition);
            }
            _ => {}
        }
    }
    records
}

/// The output frontier the group's last commit covered (0: none yet).
fn progress(brokers: &str, prefix: &str) -> u64 {
    let topic = format!("{prefix}markledger.progress");
    // The stream creates it when it starts.
    if markledger_connectors::kafka::partition_count(&settings(brokers), &topic).is_err() {
        return 0;
    }
    // The last frontier (a cluster's checkpoint records, `checkpoint T`, are not one).
    read_topic(brokers, &topic)
        .iter()
        .rev()
        .find_map(|(text, _)| text.parse().ok())
        .unwrap_or(0)
}

fn wait_for_progress(brokers: &str, prefix: &str, at_least: u64, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(180);
    while progress(brokers, prefix) < at_least {
        assert!(child.try_wait().expect("child").is_none(), "stream exited early");
        assert!(Instant::now() < deadline, "stream did not reach {at_least}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Consumes the outputs of `prefix` as CHANGELOG.md tells a consumer to: repeats on the
/// appended topics are dropped by their `id`; on the compacted ones (balances, periods) the
/// highest `rev` per key wins ([`Consumed::add`]), since compaction may have removed the
/// first copy of an older record whose repeat comes after a newer one.
fn consume(brokers: &str, prefix: &str) -> (Consumed, usize) {
    let mut consumed = Consumed::default();
    let repeats = consume_into(brokers, prefix, &mut consumed);
    (consumed, repeats)
}

/// [`consume`] on top of what `consumed` holds; returns the repeats dropped.
fn consume_into(brokers: &str, prefix: &str, consumed: &mut Consumed) -> usize {
    let mut repeats = 0;
    for output in OUTPUTS {
        let mut seen = BTreeSet::new();
        for (payload, id) in read_topic(brokers, &format!("{prefix}codes.{output}")) {
            let id = id.expect("every output carries markledger-id");
            if !seen.insert(id) {
                repeats += 1;
                if !matches!(output, "balances" | "periods") {
                    continue;
                }
            }
            match payload.strip_prefix('\n') {
                Some(key) => consumed.delete(output, key),
                None => consumed.add(output, &payload),
            }
        }
    }
    repeats
}

fn dataset(dir: &Path) -> u64 {
    let config = GeneratorConfig {
        accounts: 40,
        codes: 300_000,
        seed: 5,
        format: Format::Json,
        bad_rate: 0.05,
        partitions: 4,
        months: 2,
        // DOMAIN.md §9 in every stream test: terminations, exports and deletions.
        terminate_rate: 0.15,
        ..GeneratorConfig::default()
    };
    let manifest = generate(&config, dir, &mut |_| {}).expect("generate");
    // The watermark's last position: just past the largest ts (stream.rs, idle partitions).
    let last = chrono::DateTime::parse_from_rfc3339(&manifest.last_ts).expect("rfc3339");
    last.timestamp_millis() as u64 + 1
}

fn differences(file: &Consumed, stream: &Consumed) -> Vec<String> {
    let mut out = Vec::new();
    macro_rules! compare {
        ($field:ident) => {
            for (key, value) in &file.$field {
                if stream.$field.get(key) != Some(value) {
                    out.push(format!(
                        "{}: {key}: file {value:?}, stream {:?}",
                        stringify!($field),
                        stream.$field.get(key)
                    ));
                }
            }
            for key in stream.$field.keys().filter(|k| !file.$field.contains_key(*k)) {
                out.push(format!("{}: {key} only in the stream", stringify!($field)));
            }
        };
    }
    compare!(balances);
    compare!(statuses);
    compare!(rejections);
    compare!(ledger);
    compare!(periods);
    out
}

/// A dataset, its file run, and a broker: what both tests start from.
fn setup(name: &str) -> (PathBuf, PathBuf, u64, Consumed, Broker) {
    let work = temp(name);
    let data = work.join("dataset");
    let end = dataset(&data);
    let expected = file_run(&data, &work.join("file-out"));
    assert!(!expected.rejections.is_empty() && !expected.ledger.is_empty() && !expected.periods.is_empty());
    let broker = Broker::start(Storage::Sqlite(work.join("broker.db")));
    (work, data, end, expected, broker)
}

#[test]
fn stream_equals_the_file_run() {
    let (work, data, end, expected, broker) = setup("e2e");
    let brokers = broker.brokers();
    produce_dataset(&settings(&brokers), &data, "u.codes.events").expect("produce");
    let mut child = stream(&brokers, "u.", &work.join("u.log"));
    wait_for_progress(&brokers, "u.", end, &mut child);
    terminate(child);
    let (uninterrupted, repeats) = consume(&brokers, "u.");
    assert_eq!(repeats, 0, "an uninterrupted run repeats nothing");
    let diff = differences(&expected, &uninterrupted);
    assert!(diff.is_empty(), "stream vs file run:\n{}", diff.join("\n"));
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
fn stream_equals_the_file_run_through_sigterm_sigkill_and_a_broker_restart() {
    let (work, data, end, expected, mut broker) = setup("restart");
    let brokers = broker.brokers();

    // Interrupted: SIGKILL after the first commit, SIGTERM after the next, the broker killed
    // and restarted in the third run; then to the end.
    produce_dataset(&settings(&brokers), &data, "r.codes.events").expect("produce");
    let mut child = stream(&brokers, "r.", &work.join("r1.log"));
    wait_for_progress(&brokers, "r.", 1, &mut child);
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    let first = progress(&brokers, "r.");
    assert!(
        first < end,
        "killed in the middle (raise the dataset size if this fails)"
    );
    let child = stream(&brokers, "r.", &work.join("r2.log"));
    std::thread::sleep(Duration::from_millis(1500));
    terminate(child);
    let mut child = stream(&brokers, "r.", &work.join("r3.log"));
    std::thread::sleep(Duration::from_millis(500));
    broker.kill();
    std::thread::sleep(Duration::from_secs(2));
    broker.restart();
    wait_for_progress(&brokers, "r.", end, &mut child);
    terminate(child);
    let (interrupted, _repeats) = consume(&brokers, "r.");
    let diff = differences(&expected, &interrupted);
    assert!(diff.is_empty(), "interrupted stream vs file run:\n{}", diff.join("\n"));
    // Deletions survived the restarts: the same keys deleted, none of them back (a
    // consumer applying tombstones holds no record of the deleted accounts, and every other
    // record equals the file run's: `differences` above).
    assert!(
        expected.deleted.iter().any(|key| key.starts_with("balances/")),
        "the dataset deletes no account (raise terminate_rate)"
    );
    assert_eq!(expected.deleted, interrupted.deleted);
    for key in &interrupted.deleted {
        let (output, key) = key.split_once('/').expect("output/key");
        let back = match output {
            "balances" => interrupted.balances.contains_key(key),
            _ => interrupted.periods.contains_key(key),
        };
        assert!(!back, "{output}/{key} came back after its deletion");
    }
    let _ = std::fs::remove_dir_all(&work);
}

/// A crash test's kills (the environment variable `kills`, else `default`) and its seed
/// (`MARKLEDGER_CRASH_SEED`, else the clock's).
fn kills_and_seed(kills: &str, default: usize) -> (usize, u64) {
    let kills = std::env::var(kills)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default);
    let seed = std::env::var("MARKLEDGER_CRASH_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_nanos() as u64
                | 1
        });
    (kills, seed)
}

/// A seeded xorshift: the crash moments, replayable from the printed seed.
struct Moments(u64);

impl Moments {
    fn next_millis(&mut self, low: u64, high: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        low + self.0 % (high - low)
    }
}

fn checkpoint_files(state: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(state)
        .map(|dir| dir.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|path| path.extension().is_some_and(|ext| ext == "mlck"));
    files.sort();
    files
}

/// Issue 7's crash test: `stream --state` killed with SIGKILL at seeded random moments
/// (`MARKLEDGER_CRASH_KILLS`, default 20; `MARKLEDGER_CRASH_SEED` replays a run), restarted
/// each time from its newest checkpoint, then run to the end: after de-duplication (ids on
/// appended topics, highest `rev` on compacted ones) the outputs equal the file run's: no
/// event lost, no charge applied twice, identical balances and periods.
#[test]
fn checkpointed_stream_survives_sigkills_at_random_moments() {
    let (work, data, end, expected, broker) = setup("crash");
    let brokers = broker.brokers();
    let (kills, seed) = kills_and_seed("MARKLEDGER_CRASH_KILLS", 20);
    eprintln!("crash test: {kills} kills, seed {seed} (MARKLEDGER_CRASH_SEED={seed} replays it)");
    let mut moments = Moments(seed);
    produce_dataset(&settings(&brokers), &data, "c.codes.events").expect("produce");
    let state = work.join("state");
    let state_flag = state.to_str().expect("UTF-8 path").to_string();
    let flags = ["--state", state_flag.as_str(), "--checkpoint-interval", "250ms"];
    let mut restored = 0;
    let mut not_restored = Vec::new();
    for kill in 0..kills {
        let log = work.join(format!("c{kill}.log"));
        let had_checkpoint = !checkpoint_files(&state).is_empty();
        let mut child = stream_with(&brokers, "c.", &log, &flags);
        std::thread::sleep(Duration::from_millis(moments.next_millis(200, 2500)));
        assert!(
            child.try_wait().expect("child").is_none(),
            "stream exited early: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("restored the checkpoint") {
            restored += 1;
        } else if had_checkpoint && text.contains("no checkpoint in") {
            // Looked for a checkpoint with one on disk, and did not restore it.
            not_restored.push(kill);
        }
    }
    let mut child = stream_with(&brokers, "c.", &work.join("final.log"), &flags);
    wait_for_progress(&brokers, "c.", end, &mut child);
    terminate(child);
    let (crashed, repeats) = consume(&brokers, "c.");
    eprintln!("crash test: {restored} of {kills} restarts restored a checkpoint; {repeats} repeated records");
    let diff = differences(&expected, &crashed);
    assert!(
        diff.is_empty(),
        "seed {seed}: crashed stream vs file run:\n{}",
        diff.join("\n")
    );
    assert!(
        not_restored.is_empty(),
        "seed {seed}: runs {not_restored:?} started with a checkpoint on disk and did not restore it"
    );
    assert!(
        restored * 4 >= kills,
        "seed {seed}: only {restored} of {kills} restarts restored a checkpoint: too few to test recovery"
    );
    let _ = std::fs::remove_dir_all(&work);
}

/// Issue 7's torn-checkpoint test: the newest checkpoint cut short (as a crash in the
/// middle of a write would leave it, were the write not atomic) is skipped, the one before
/// it restored, and the outputs are still exact.
#[test]
fn a_torn_newest_checkpoint_falls_back_to_the_one_before() {
    let (work, data, end, expected, broker) = setup("torn");
    let brokers = broker.brokers();
    produce_dataset(&settings(&brokers), &data, "t.codes.events").expect("produce");
    let state = work.join("state");
    let state_flag = state.to_str().expect("UTF-8 path").to_string();
    let flags = ["--state", state_flag.as_str(), "--checkpoint-interval", "200ms"];
    let mut child = stream_with(&brokers, "t.", &work.join("t1.log"), &flags);
    let deadline = Instant::now() + Duration::from_secs(120);
    while checkpoint_files(&state).len() < 2 {
        assert!(Instant::now() < deadline, "no two checkpoints written");
        assert!(child.try_wait().expect("child").is_none(), "stream exited early");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    let files = checkpoint_files(&state);
    let newest = files.last().expect("a checkpoint");
    let bytes = std::fs::read(newest).expect("read");
    std::fs::write(newest, &bytes[..bytes.len() / 2]).expect("tear");
    let log = work.join("t2.log");
    let mut child = stream_with(&brokers, "t.", &log, &flags);
    wait_for_progress(&brokers, "t.", end, &mut child);
    terminate(child);
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(
        text.contains("skipping a checkpoint") && text.contains("torn"),
        "{text}"
    );
    assert!(text.contains("restored the checkpoint"), "{text}");
    let (consumed, _) = consume(&brokers, "t.");
    let diff = differences(&expected, &consumed);
    assert!(diff.is_empty(), "after a torn checkpoint:\n{}", diff.join("\n"));
    let _ = std::fs::remove_dir_all(&work);
}

/// Issue 17: a checkpoint names the final-code run files it needs (its manifest, with
/// their checksums). One run file named by the newest checkpoint and by no older one is
/// corrupted (a bit flipped): that checkpoint is refused with a message naming the file,
/// the one before it restored (its files are still there: garbage collection keeps what
/// any kept checkpoint names), and the outputs are still exact.
#[test]
fn a_corrupt_final_code_file_refuses_its_checkpoint_and_falls_back() {
    use markledger::checkpoint::final_code_manifests;
    let manifests = |cut: &_| final_code_manifests(cut).expect("manifests");
    corrupt_a_file_and_fall_back("corrupt", &manifests, |state, worker| {
        state.join("final-codes").join(format!("worker-{worker}"))
    });
}

/// Issue 17: the same for the accounts' emission-text segments (the codes' text waiting
/// for expiry): a corrupt segment refuses its checkpoint by name and the one before is
/// restored, outputs exact.
#[test]
fn a_corrupt_emission_text_segment_refuses_its_checkpoint_and_falls_back() {
    use markledger::checkpoint::emission_text_manifests;
    let manifests = |cut: &_| emission_text_manifests(cut).expect("manifests");
    corrupt_a_file_and_fall_back("corrupt-text", &manifests, |state, worker| {
        state
            .join("final-codes")
            .join("emission-text")
            .join(format!("worker-{worker}"))
    });
}

/// A checkpoint's manifests of one kind of state file, by worker.
type ManifestsOf<'a> =
    &'a dyn Fn(&markledger_operators::checkpoint::Cut) -> BTreeMap<usize, markledger_operators::final_codes::Manifest>;

fn corrupt_a_file_and_fall_back(name: &str, manifests_of: ManifestsOf, dir_of: fn(&Path, usize) -> PathBuf) {
    use markledger::checkpoint::Store;
    let (work, data, end, expected, broker) = setup(name);
    let brokers = broker.brokers();
    produce_dataset(&settings(&brokers), &data, "k.codes.events").expect("produce");
    let state = work.join("state");
    let state_flag = state.to_str().expect("UTF-8 path").to_string();
    let flags = ["--state", state_flag.as_str(), "--checkpoint-interval", "200ms"];
    // Run until the newest checkpoint names a file no older kept one names (a generous
    // bound: on a loaded machine each attempt gets little done before it is killed, and
    // 180 s was once too short at load 10).
    let deadline = Instant::now() + Duration::from_secs(420);
    let mut attempt = 0;
    let (newest, victim) = loop {
        assert!(Instant::now() < deadline, "no checkpoint with a file of its own");
        let mut child = stream_with(&brokers, "k.", &work.join(format!("k{attempt}.log")), &flags);
        let started = checkpoint_files(&state).len();
        while checkpoint_files(&state).len() < (started + 2).min(3) {
            assert!(Instant::now() < deadline, "no two checkpoints written");
            assert!(child.try_wait().expect("child").is_none(), "stream exited early");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(300));
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        attempt += 1;
        let files = checkpoint_files(&state);
        let manifests: Vec<_> = files
            .iter()
            .map(|path| manifests_of(&Store::read(path).expect("a whole checkpoint")))
            .collect();
        let (newest, older) = manifests.split_last().expect("checkpoints");
        let named_before = |worker: &usize, file: &str| {
            older
                .iter()
                .any(|m| m.get(worker).is_some_and(|m| m.runs.iter().any(|run| run.file == file)))
        };
        let own = newest.iter().find_map(|(worker, manifest)| {
            let run = manifest.runs.iter().find(|run| !named_before(worker, &run.file))?;
            Some(dir_of(&state, *worker).join(&run.file))
        });
        if let Some(victim) = own {
            break (files.last().expect("newest").clone(), victim);
        }
    };
    let mut bytes = std::fs::read(&victim).expect("state file");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&victim, &bytes).expect("corrupt");
    let log = work.join("k-restart.log");
    let mut child = stream_with(&brokers, "k.", &log, &flags);
    wait_for_progress(&brokers, "k.", end, &mut child);
    terminate(child);
    let text = std::fs::read_to_string(&log).expect("log");
    let name = victim.file_name().and_then(|n| n.to_str()).expect("name");
    assert!(
        text.contains("skipping a checkpoint") && text.contains("torn or corrupt") && text.contains(name),
        "the refusal names the file {name}:\n{text}"
    );
    assert!(text.contains("restored the checkpoint"), "{text}");
    eprintln!(
        "refused {} (corrupt {}), restored the one before",
        newest.display(),
        victim.display()
    );
    let (consumed, _) = consume(&brokers, "k.");
    let diff = differences(&expected, &consumed);
    assert!(diff.is_empty(), "after a corrupt state file:\n{}", diff.join("\n"));
    let _ = std::fs::remove_dir_all(&work);
}

/// Splits every partition of `data` at the latest `ts` that divides each partition into a
/// prefix before it and a suffix from it, near the middle of the data: `before` gets the
/// prefixes, `after` the suffixes.
fn split_at_a_clean_cut(data: &Path, before: &Path, after: &Path) {
    split_at_a_clean_cut_within(data, before, after, (1, 3), (2, 3));
}

/// [`split_at_a_clean_cut`], the cut the latest clean one between the fractions `from` and
/// `to` (numerator, denominator) of the data's distinct `ts`.
fn split_at_a_clean_cut_within(data: &Path, before: &Path, after: &Path, from: (usize, usize), to: (usize, usize)) {
    let ts_of = |line: &str| -> Option<i64> {
        let value: Value = serde_json::from_str(line).ok()?;
        let ts = chrono::DateTime::parse_from_rfc3339(value["ts"].as_str()?).ok()?;
        Some(ts.timestamp_millis())
    };
    let files = markledger_connectors::file::list_partitions(&[data.to_path_buf()]).expect("partitions");
    let texts: Vec<String> = files
        .iter()
        .map(|f| std::fs::read_to_string(f).expect("partition"))
        .collect();
    let mut all: Vec<i64> = texts.iter().flat_map(|t| t.lines().filter_map(ts_of)).collect();
    all.sort_unstable();
    all.dedup();
    // A cut `c` is clean when, in every partition, no line with ts < c follows one with ts >= c.
    let clean = |cut: i64| {
        texts.iter().all(|text| {
            let mut crossed = false;
            text.lines().filter_map(ts_of).all(|ts| {
                crossed |= ts >= cut;
                !(crossed && ts < cut)
            })
        })
    };
    let cut = all[all.len() * from.0 / from.1..all.len() * to.0 / to.1]
        .iter()
        .rev()
        .copied()
        .find(|cut| clean(*cut))
        .expect("a clean cut in the range");
    std::fs::create_dir_all(before).expect("dir");
    std::fs::create_dir_all(after).expect("dir");
    for (file, text) in files.iter().zip(&texts) {
        let name = file.file_name().expect("file name");
        let (mut head, mut tail) = (String::new(), String::new());
        let mut crossed = false;
        for line in text.lines() {
            crossed |= ts_of(line).is_some_and(|ts| ts >= cut);
            let side = if crossed { &mut tail } else { &mut head };
            side.push_str(line);
            side.push('\n');
        }
        std::fs::write(before.join(name), head).expect("write");
        std::fs::write(after.join(name), tail).expect("write");
    }
}

/// Issue 7's backfill: `run --state` over the history, then `stream --state` over what
/// came after it, consumed together, equal the file run over everything.
#[test]
fn a_backfill_checkpoint_lets_stream_go_on() {
    let (work, data, end, expected, broker) = setup("backfill");
    let brokers = broker.brokers();
    let (history, live) = (work.join("history"), work.join("live"));
    split_at_a_clean_cut(&data, &history, &live);
    let state = work.join("state");
    let state_flag = state.to_str().expect("UTF-8 path").to_string();
    // The backfill: a file run that ends in a checkpoint.
    let mut consumed = file_run_with(
        &history,
        &work.join("history-out"),
        &["--workers", "2", "--state", &state_flag],
    );
    assert_eq!(checkpoint_files(&state).len(), 1, "the backfill wrote its checkpoint");
    produce_dataset(&settings(&brokers), &live, "b.codes.events").expect("produce");
    let log = work.join("b.log");
    let mut child = stream_with(&brokers, "b.", &log, &["--state", &state_flag]);
    wait_for_progress(&brokers, "b.", end, &mut child);
    terminate(child);
    assert!(std::fs::read_to_string(&log)
        .expect("log")
        .contains("restored the checkpoint"));
    consume_into(&brokers, "b.", &mut consumed);
    let diff = differences(&expected, &consumed);
    assert!(diff.is_empty(), "backfill + stream vs file run:\n{}", diff.join("\n"));
    let _ = std::fs::remove_dir_all(&work);
}

/// Issue 19: settings that change outputs travel with state. A backfill with
/// `--close-after-days 5`, then `stream --state` without it: refused, naming the setting
/// (within seconds, nothing produced); with it: goes on, and backfill + stream equal a file
/// run with `--close-after-days 5` over everything.
#[test]
fn a_backfill_with_other_settings_is_refused_and_goes_on_with_the_same() {
    let (work, data, end, _, broker) = setup("settings");
    let expected = file_run_with(&data, &work.join("file-out-5"), &["--close-after-days", "5"]);
    let brokers = broker.brokers();
    let (history, live) = (work.join("history"), work.join("live"));
    split_at_a_clean_cut(&data, &history, &live);
    let state = work.join("state");
    let state_flag = state.to_str().expect("UTF-8 path").to_string();
    let mut consumed = file_run_with(
        &history,
        &work.join("history-out"),
        &["--workers", "2", "--close-after-days", "5", "--state", &state_flag],
    );
    produce_dataset(&settings(&brokers), &live, "s.codes.events").expect("produce");
    let log = work.join("refused.log");
    let started = Instant::now();
    let status = stream_command(&brokers, "s.", &log, &["--state", &state_flag])
        .status()
        .expect("markledger stream");
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(
        !status.success(),
        "a restore under other settings must be refused: {text}"
    );
    assert!(started.elapsed() < Duration::from_secs(60), "refused, not hung");
    assert!(
        text.contains("--close-after-days: the checkpoint was made with 5, this run has 7"),
        "{text}"
    );
    let log = work.join("s.log");
    let mut child = stream_with(
        &brokers,
        "s.",
        &log,
        &["--state", &state_flag, "--close-after-days", "5"],
    );
    wait_for_progress(&brokers, "s.", end, &mut child);
    terminate(child);
    assert!(std::fs::read_to_string(&log)
        .expect("log")
        .contains("restored the checkpoint"));
    consume_into(&brokers, "s.", &mut consumed);
    let diff = differences(&expected, &consumed);
    assert!(
        diff.is_empty(),
        "backfill + stream (5 days) vs file run:\n{}",
        diff.join("\n")
    );
    let _ = std::fs::remove_dir_all(&work);
}

/// `stream --state` with the test-only fault hook set to fail the accounts stage on `event`.
fn failing_stream(brokers: &str, prefix: &str, state: &Path, event: &str, log: &Path) -> Child {
    let state = state.to_str().expect("UTF-8 path");
    let mut command = stream_command(brokers, prefix, log, &["--state", state]);
    command
        .env("MARKLEDGER_TEST_PANIC_ON_EVENT", event)
        .env("MARKLEDGER_TEST_PANIC_STAGE", "Accounts");
    command.spawn().expect("markledger stream")
}

/// Runs `stream --state` with the test-only fault hook on `event` until it exits by itself
/// (the hook's panic): its exit status and log.
fn stream_failing_on(brokers: &str, prefix: &str, state: &Path, event: &str, log: &Path) -> (Option<i32>, String) {
    let mut child = failing_stream(brokers, prefix, state, event, log);
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(status) = child.try_wait().expect("child") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the failing stream did not end by itself: a hang");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    (status.code(), std::fs::read_to_string(log).expect("log"))
}

#[test]
fn an_event_failing_twice_in_a_row_is_quarantined_and_billing_goes_on() {
    // Issue 15's poison pill: a payment that makes the accounts stage fail (the test-only
    // hook) ends `stream --state` with exit 70 and one line naming it, twice; the third start
    // refuses it INTERNAL_ERROR and goes on. A consumer then sees the file run of the dataset
    // without that line, plus the rejection.
    let (work, data, end, _expected, broker) = setup("poison");
    let brokers = broker.brokers();
    // The poison: the first payment of the first partition, which the file run without it
    // is compared against.
    let first = data.join("p000.jsonl");
    let text = std::fs::read_to_string(&first).expect("partition");
    let poison_line = text
        .lines()
        .find(|line| line.contains(r#""type":"payment""#))
        .expect("a payment")
        .to_string();
    let poison: Value = serde_json::from_str(&poison_line).expect("JSON");
    let poison_id = poison["id"].as_str().expect("id").to_string();
    let without = work.join("without");
    std::fs::create_dir_all(&without).expect("dir");
    for entry in std::fs::read_dir(&data).expect("dataset") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "jsonl") {
            let text = std::fs::read_to_string(&path).expect("partition");
            let kept: String = text
                .lines()
                .filter(|l| *l != poison_line)
                .map(|l| format!("{l}\n"))
                .collect();
            std::fs::write(without.join(path.file_name().expect("name")), kept).expect("write");
        }
    }
    let expected = file_run(&without, &work.join("without-out"));
    produce_dataset(&settings(&brokers), &data, "q.codes.events").expect("produce");
    let state = work.join("state");
    for attempt in 1..=2 {
        let log = work.join(format!("q{attempt}.log"));
        let (code, log) = stream_failing_on(&brokers, "q.", &state, &poison_id, &log);
        assert_eq!(code, Some(70), "attempt {attempt}: {log}");
        let fatal: Vec<&str> = log.lines().filter(|l| l.starts_with("markledger: fatal:")).collect();
        assert_eq!(fatal.len(), 1, "{log}");
        assert!(
            fatal[0].contains(&format!("while processing event \"{poison_id}\"")),
            "{log}"
        );
    }
    let log = work.join("q3.log");
    let mut child = failing_stream(&brokers, "q.", &state, &poison_id, &log);
    wait_for_progress(&brokers, "q.", end, &mut child);
    terminate(child);
    assert!(std::fs::read_to_string(&log).expect("log").contains("is quarantined"));
    let (mut consumed, _) = consume(&brokers, "q.");
    let internal: Vec<String> = consumed
        .rejections
        .keys()
        .filter(|r| r.contains("INTERNAL_ERROR"))
        .cloned()
        .collect();
    assert_eq!(internal.len(), 1, "{internal:?}");
    assert!(internal[0].contains(&poison_id));
    consumed.rejections.remove(&internal[0]);
    let diff = differences(&expected, &consumed);
    assert!(
        diff.is_empty(),
        "quarantined stream vs file run without the poison:\n{}",
        diff.join("\n")
    );
    let _ = std::fs::remove_dir_all(&work);
}

/// The final-code store directories under a state directory (`worker-N`, sorted).
fn final_code_stores(state: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(state.join("final-codes"))
        .map(|dir| {
            dir.filter_map(|entry| entry.ok()?.file_name().into_string().ok())
                .filter(|name| name.starts_with("worker-"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Issue 18: a checkpoint restores at any worker count. A backfill on 1 × 2 workers, then
/// `stream --state` on a copy of its state with 1 worker, with 3 (not a power of two: key
/// groups move between workers unevenly) and with 4; each backfill + stream, consumed
/// together, equals the file run over everything, and each new worker has built its
/// final-code store from the old ones'.
#[test]
fn a_backfill_on_two_workers_goes_on_with_one_three_and_four() {
    let (work, data, end, expected, broker) = setup("rescale");
    let brokers = broker.brokers();
    let (history, live) = (work.join("history"), work.join("live"));
    split_at_a_clean_cut(&data, &history, &live);
    let state = work.join("state");
    let state_flag = state.to_str().expect("UTF-8 path").to_string();
    let history_out = work.join("history-out");
    file_run_with(&history, &history_out, &["--workers", "2", "--state", &state_flag]);
    assert_eq!(checkpoint_files(&state).len(), 1, "the backfill wrote its checkpoint");
    assert_eq!(final_code_stores(&state), ["worker-0", "worker-1"]);
    for store in final_code_stores(&state) {
        let files = std::fs::read_dir(state.join("final-codes").join(&store))
            .expect("store")
            .count();
        assert!(
            files > 0,
            "{store} holds final codes: the restores below rebuild from them"
        );
    }
    for workers in [1usize, 3, 4] {
        let prefix = format!("r{workers}.");
        let copy = work.join(format!("state-{workers}"));
        let copied = Command::new("cp")
            .arg("-r")
            .arg(&state)
            .arg(&copy)
            .status()
            .expect("cp");
        assert!(copied.success());
        produce_dataset(&settings(&brokers), &live, &format!("{prefix}codes.events")).expect("produce");
        let copy_flag = copy.to_str().expect("UTF-8 path").to_string();
        let count = workers.to_string();
        let log = work.join(format!("r{workers}.log"));
        let mut child = stream_with(&brokers, &prefix, &log, &["--state", &copy_flag, "--workers", &count]);
        wait_for_progress(&brokers, &prefix, end, &mut child);
        terminate(child);
        let text = std::fs::read_to_string(&log).expect("log");
        assert!(
            text.contains(&format!("written by 2 workers, restored on {workers}")),
            "{text}"
        );
        // Every new worker has a store (rebuilt from both old ones: its groups' final codes).
        let expected_stores: Vec<String> = (0..workers.max(2)).map(|w| format!("worker-{w}")).collect();
        assert_eq!(final_code_stores(&copy), expected_stores);
        // The consumer read the backfill's files, then the stream's topics.
        let mut consumed = Consumed::default();
        consumed.add_files(&history_out);
        consume_into(&brokers, &prefix, &mut consumed);
        let diff = differences(&expected, &consumed);
        assert!(
            diff.is_empty(),
            "backfill on 2 workers + stream on {workers} vs file run:\n{}",
            diff.join("\n")
        );
    }
    let _ = std::fs::remove_dir_all(&work);
}

/// Issue 18: a stream's own checkpoints (machine state and each partition's offsets)
/// restore at another worker count: `stream --state` on 2 workers is SIGKILLed once it has
/// written a checkpoint, restarted on 3 workers (each partition's offsets go to the worker
/// that reads it now), SIGKILLed again once that run has written a newer checkpoint, and
/// restarted on 1 worker to the end. Consumed, the outputs equal the file run.
#[test]
fn a_stream_checkpoint_restores_on_three_workers_then_on_one() {
    let (work, data, end, expected, broker) = setup("rescale-stream");
    let brokers = broker.brokers();
    produce_dataset(&settings(&brokers), &data, "s.codes.events").expect("produce");
    let state = work.join("state");
    let state_flag = state.to_str().expect("UTF-8 path").to_string();
    let newest = |state: &Path| checkpoint_files(state).last().cloned();
    let mut previous: Option<PathBuf> = None;
    for (hop, workers) in [2usize, 3].into_iter().enumerate() {
        let count = workers.to_string();
        let log = work.join(format!("s{hop}.log"));
        let flags = [
            "--state",
            state_flag.as_str(),
            "--checkpoint-interval",
            "250ms",
            "--workers",
            &count,
        ];
        let mut child = stream_with(&brokers, "s.", &log, &flags);
        // Killed as soon as it has written a checkpoint of its own (a newer file).
        let deadline = Instant::now() + Duration::from_secs(120);
        while newest(&state) == previous {
            assert!(child.try_wait().expect("child").is_none(), "stream exited early");
            assert!(Instant::now() < deadline, "no checkpoint written on {workers} workers");
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        previous = newest(&state);
        if hop > 0 {
            let text = std::fs::read_to_string(&log).expect("log");
            assert!(text.contains("written by 2 workers, restored on 3"), "{text}");
        }
    }
    assert!(
        progress(&brokers, "s.") < end,
        "the kills came before the end (the restores below have work left)"
    );
    let log = work.join("s-final.log");
    let mut child = stream_with(&brokers, "s.", &log, &["--state", &state_flag, "--workers", "1"]);
    wait_for_progress(&brokers, "s.", end, &mut child);
    terminate(child);
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(text.contains("written by 3 workers, restored on 1"), "{text}");
    let (consumed, _) = consume(&brokers, "s.");
    let diff = differences(&expected, &consumed);
    assert!(
        diff.is_empty(),
        "stream on 2, then 3, then 1 workers vs file run:\n{}",
        diff.join("\n")
    );
    let _ = std::fs::remove_dir_all(&work);
}

/// A hostfile of `n` free loopback ports (all bound at once, so they differ, then released).
fn hostfile(dir: &Path, n: usize) -> PathBuf {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    let text: String = listeners
        .iter()
        .map(|l| format!("127.0.0.1:{}\n", l.local_addr().expect("address").port()))
        .collect();
    let path = dir.join(format!(
        "hostfile-{n}-{}",
        listeners[0].local_addr().expect("address").port()
    ));
    std::fs::write(&path, text).expect("hostfile");
    path
}

/// `stream` on `processes` × `workers` on loopback (one process: no cluster flags), each
/// process with `extra` flags and its log in `work/NAME-pI.log`.
fn stream_cluster(
    brokers: &str,
    prefix: &str,
    work: &Path,
    name: &str,
    (processes, workers): (usize, usize),
    extra: &[&str],
) -> Vec<Child> {
    let hosts = hostfile(work, processes);
    let hosts_flag = hosts.to_str().expect("UTF-8 path").to_string();
    (0..processes)
        .map(|process| {
            let (count, of, me) = (workers.to_string(), processes.to_string(), process.to_string());
            let mut flags: Vec<&str> = vec!["--workers", &count];
            if processes > 1 {
                flags.extend(["--processes", &of, "--process", &me, "--hostfile", &hosts_flag]);
            }
            flags.extend(extra);
            stream_with(brokers, prefix, &work.join(format!("{name}-p{process}.log")), &flags)
        })
        .collect()
}

/// `stream` on 2 processes × 1 worker on loopback, process `p` with `--state states[p]` and
/// `extra`, its log in `work/NAME-pP.log`.
fn stream_pair(brokers: &str, prefix: &str, work: &Path, name: &str, states: &[String], extra: &[&str]) -> Vec<Child> {
    let hosts = hostfile(work, 2);
    let hosts_flag = hosts.to_str().expect("UTF-8 path").to_string();
    (0..2)
        .map(|p: usize| {
            let me = p.to_string();
            let mut flags = vec![
                "--workers",
                "1",
                "--processes",
                "2",
                "--process",
                &me,
                "--hostfile",
                &hosts_flag,
                "--state",
                &states[p],
            ];
            flags.extend(extra);
            stream_with(brokers, prefix, &work.join(format!("{name}-p{p}.log")), &flags)
        })
        .collect()
}

/// Stops every process of a cluster with SIGTERM at once; each must exit successfully
/// within the bound [`terminate`] allows.
fn terminate_all(children: Vec<Child>) {
    for child in &children {
        markledger_tests::process::sigterm(child);
    }
    for child in children {
        terminate(child);
    }
}

/// Issue 18: a stream on 2 processes × 1 worker (timely's cluster mode on loopback) equals
/// the file run as a consumer sees it: each process reads its partitions and produces what
/// its workers make; the progress topic's frontier is the cluster's (process 0 records the
/// lowest every process's commits cover).
#[test]
fn a_stream_on_two_processes_equals_the_file_run() {
    let (work, data, end, expected, broker) = setup("cluster-e2e");
    let brokers = broker.brokers();
    produce_dataset(&settings(&brokers), &data, "c.codes.events").expect("produce");
    let mut children = stream_cluster(&brokers, "c.", &work, "c", (2, 1), &[]);
    wait_for_progress(&brokers, "c.", end, &mut children[0]);
    for child in children.iter_mut() {
        assert!(child.try_wait().expect("child").is_none(), "a process exited early");
    }
    terminate_all(children);
    let (consumed, repeats) = consume(&brokers, "c.");
    assert_eq!(repeats, 0, "an uninterrupted run repeats nothing");
    let diff = differences(&expected, &consumed);
    assert!(diff.is_empty(), "stream on 2 × 1 vs file run:\n{}", diff.join("\n"));
    let _ = std::fs::remove_dir_all(&work);
}

/// The cluster manifests in a state directory (`checkpoint-T.cluster.json`), sorted.
fn cluster_manifests(state: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(state)
        .map(|dir| dir.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|path| path.to_string_lossy().ends_with(".cluster.json"));
    files.sort();
    files
}

/// Issue 18: checkpoints of a cluster, restored at any process and worker count. One state
/// directory shared by every process (each writes its part of a cut,
/// `checkpoint-T.part-P-of-N.mlck`; process 0 completes it with `checkpoint-T.cluster.json`
/// and records it on the progress topic). The input is produced in three parts, one before
/// each of the first three hops, so each hop has work of its own after its restore: a
/// stream on 1 × 2 is SIGKILLed once it has written a checkpoint; 2 × 2 restores it and is
/// SIGKILLed (both processes) once it has completed a cluster checkpoint of its own; 2 × 1
/// likewise; then 1 × 3 restores the 2 × 1 cut and runs to the end. Consumed, the outputs
/// equal the file run.
#[test]
fn cluster_checkpoints_restore_on_other_process_and_worker_counts() {
    let (work, data, end, expected, broker) = setup("cluster-rescale");
    let brokers = broker.brokers();
    let (first, rest) = (work.join("first"), work.join("rest"));
    let (second, third) = (work.join("second"), work.join("third"));
    split_at_a_clean_cut_within(&data, &first, &rest, (1, 4), (2, 5));
    split_at_a_clean_cut_within(&rest, &second, &third, (1, 3), (2, 3));
    let produce = |part: &Path| produce_dataset(&settings(&brokers), part, "k.codes.events").expect("produce");
    let state = work.join("state");
    let state_flag = state.to_str().expect("UTF-8 path").to_string();
    let flags = ["--state", state_flag.as_str(), "--checkpoint-interval", "250ms"];
    // Hop 1: 1 × 2 until its first checkpoint.
    produce(&first);
    let mut children = stream_cluster(&brokers, "k.", &work, "h1", (1, 2), &flags);
    let deadline = Instant::now() + Duration::from_secs(120);
    while checkpoint_files(&state).is_empty() {
        assert!(children[0].try_wait().expect("child").is_none(), "stream exited early");
        assert!(Instant::now() < deadline, "no checkpoint written on 1 × 2");
        std::thread::sleep(Duration::from_millis(20));
    }
    for child in children.iter_mut() {
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
    }
    // Hops 2 and 3: clusters, each with new input, until it has completed a cut of its own.
    for (hop, shape, restored, part) in [
        (2, (2usize, 2usize), "written by 2 workers, restored on 4", &second),
        (3, (2, 1), "written by 4 workers, restored on 2", &third),
    ] {
        produce(part);
        let before = cluster_manifests(&state).last().cloned();
        let name = format!("h{hop}");
        let mut children = stream_cluster(&brokers, "k.", &work, &name, shape, &flags);
        let deadline = Instant::now() + Duration::from_secs(180);
        while cluster_manifests(&state).last().cloned() == before {
            for child in children.iter_mut() {
                assert!(
                    child.try_wait().expect("child").is_none(),
                    "hop {hop}: a process exited early"
                );
            }
            assert!(Instant::now() < deadline, "hop {hop}: no cluster checkpoint completed");
            std::thread::sleep(Duration::from_millis(20));
        }
        for child in children.iter_mut() {
            child.kill().expect("SIGKILL");
            child.wait().expect("reaped");
        }
        for process in 0..shape.0 {
            let text = std::fs::read_to_string(work.join(format!("{name}-p{process}.log"))).expect("log");
            assert!(text.contains(restored), "hop {hop}, process {process}: {text}");
        }
    }
    // Hop 4: one process of 3 workers restores the 2 × 1 cluster's cut (the newest complete
    // one: its manifest), to the end (which hop 3 may have reached already: the restored
    // checkpoint's frontier is recorded at the start).
    let mut children = stream_cluster(&brokers, "k.", &work, "h4", (1, 3), &flags);
    wait_for_progress(&brokers, "k.", end, &mut children[0]);
    terminate_all(children);
    let text = std::fs::read_to_string(work.join("h4-p0.log")).expect("log");
    assert!(text.contains("written by 2 workers, restored on 3"), "{text}");
    let (consumed, _) = consume(&brokers, "k.");
    let diff = differences(&expected, &consumed);
    assert!(
        diff.is_empty(),
        "stream on 1 × 2, 2 × 2, 2 × 1, then 1 × 3 vs file run:\n{}",
        diff.join("\n")
    );
    let _ = std::fs::remove_dir_all(&work);
}

/// How long the survivor of a cluster whose other process was killed may take to stop by
/// itself: it notices the lost connection at once, says so, and exits non-zero; killed
/// before the two had connected, it gives up connecting after 60 s (runtime.rs,
/// `CONNECT_TIMEOUT`), saying so.
const SURVIVOR_STOPS_WITHIN: Duration = Duration::from_secs(90);

/// Issue 18's crash test: a stream on 2 processes × 1 worker, each with its own state
/// directory, one process SIGKILLed at seeded random moments (`MARKLEDGER_CLUSTER_KILLS`,
/// default 10; `MARKLEDGER_CRASH_SEED` replays a run), alternating which. Each time the
/// other stops by itself within [`SURVIVOR_STOPS_WITHIN`], exiting non-zero; the set is
/// restarted and restores the cluster's last complete checkpoint. Run to the end, the
/// outputs (consumed with de-duplication) equal the file run's.
#[test]
fn a_cluster_stream_survives_a_process_killed_at_random_moments() {
    let (work, data, end, expected, broker) = setup("cluster-crash");
    let brokers = broker.brokers();
    let (kills, seed) = kills_and_seed("MARKLEDGER_CLUSTER_KILLS", 10);
    eprintln!("cluster crash test: {kills} kills, seed {seed} (MARKLEDGER_CRASH_SEED={seed} replays it)");
    let mut moments = Moments(seed);
    produce_dataset(&settings(&brokers), &data, "x.codes.events").expect("produce");
    let states: Vec<String> = (0..2)
        .map(|p| {
            work.join(format!("state-p{p}"))
                .to_str()
                .expect("UTF-8 path")
                .to_string()
        })
        .collect();
    // Each process its own state directory.
    let start = |name: &str| {
        stream_pair(
            &brokers,
            "x.",
            &work,
            name,
            &states,
            &["--checkpoint-interval", "250ms"],
        )
    };
    let mut restored = 0;
    for kill in 0..kills {
        let name = format!("x{kill}");
        let mut children = start(&name);
        std::thread::sleep(Duration::from_millis(moments.next_millis(1000, 5000)));
        let victim = kill % 2;
        let survivor = 1 - victim;
        for (p, child) in children.iter_mut().enumerate() {
            assert!(
                child.try_wait().expect("child").is_none(),
                "round {kill}: process {p} exited early: {}",
                std::fs::read_to_string(work.join(format!("{name}-p{p}.log"))).unwrap_or_default()
            );
        }
        children[victim].kill().expect("SIGKILL");
        children[victim].wait().expect("reaped");
        let started = Instant::now();
        let status = loop {
            if let Some(status) = children[survivor].try_wait().expect("child") {
                break status;
            }
            if started.elapsed() > SURVIVOR_STOPS_WITHIN {
                let _ = children[survivor].kill();
                panic!(
                    "seed {seed}, round {kill}: process {survivor} still runs {SURVIVOR_STOPS_WITHIN:?} after process \
                     {victim} was killed (a hang)"
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let text = std::fs::read_to_string(work.join(format!("{name}-p{survivor}.log"))).unwrap_or_default();
        assert!(
            !status.success(),
            "seed {seed}, round {kill}: the survivor exited successfully: {text}"
        );
        assert!(
            text.contains("lost the connection to another process")
                || text.contains("could not connect to every other"),
            "seed {seed}, round {kill}: the survivor's log does not say why it stopped: {text}"
        );
        let first = std::fs::read_to_string(work.join(format!("{name}-p0.log"))).unwrap_or_default();
        if first.contains("restored the checkpoint") {
            restored += 1;
        }
    }
    let mut children = start("final");
    wait_for_progress(&brokers, "x.", end, &mut children[0]);
    terminate_all(children);
    let (crashed, repeats) = consume(&brokers, "x.");
    eprintln!("cluster crash test: {restored} of {kills} restarts restored a checkpoint; {repeats} repeated records");
    let diff = differences(&expected, &crashed);
    assert!(
        diff.is_empty(),
        "seed {seed}: crashed cluster stream vs file run:\n{}",
        diff.join("\n")
    );
    assert!(
        restored * 3 >= kills,
        "seed {seed}: only {restored} of {kills} restarts restored a checkpoint: too few to test recovery"
    );
    let _ = std::fs::remove_dir_all(&work);
}

/// `markledger run` on 2 processes × 1 worker, each with its own `--state`; process 0's
/// outputs in `out`.
fn backfill_on_two_processes(work: &Path, input: &Path, out: &Path, states: &[String]) {
    let hosts = hostfile(work, 2);
    let mut children: Vec<Child> = (0..2)
        .map(|p: usize| {
            let target = if p == 0 {
                out.to_path_buf()
            } else {
                work.join("backfill-out-p1")
            };
            Command::new(binary())
                .args([
                    "run",
                    "--quiet",
                    "--workers",
                    "1",
                    "--processes",
                    "2",
                    "--process",
                    &p.to_string(),
                ])
                .arg("--hostfile")
                .arg(&hosts)
                .arg("--input")
                .arg(input)
                .arg("--out")
                .arg(target)
                .args(["--state", &states[p]])
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(work.join(format!("backfill-p{p}.log"))).expect("log"))
                .spawn()
                .expect("markledger run")
        })
        .collect();
    for (p, child) in children.iter_mut().enumerate() {
        let status = child.wait().expect("run");
        assert!(
            status.success(),
            "backfill process {p}: {}",
            std::fs::read_to_string(work.join(format!("backfill-p{p}.log"))).unwrap_or_default()
        );
    }
}

/// Issue 18: a backfill on a cluster. `run --state` on 2 × 1, each process with its own
/// state directory: each writes its part of the checkpoint, process 0 the manifest. A
/// stream on 2 × 1 over those directories before process 1's holds the manifest stops at
/// once (the processes would restore different cuts); with the manifest copied there it
/// goes on, and backfill + stream, consumed together, equal the file run.
#[test]
fn a_backfill_on_two_processes_goes_on_as_a_cluster_stream() {
    let (work, data, end, expected, broker) = setup("cluster-backfill");
    let brokers = broker.brokers();
    let (history, live) = (work.join("history"), work.join("live"));
    split_at_a_clean_cut(&data, &history, &live);
    let states: Vec<String> = (0..2)
        .map(|p| {
            work.join(format!("state-p{p}"))
                .to_str()
                .expect("UTF-8 path")
                .to_string()
        })
        .collect();
    let history_out = work.join("history-out");
    backfill_on_two_processes(&work, &history, &history_out, &states);
    let names = |dir: &str| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("state")
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .filter(|name| name.starts_with("checkpoint-"))
            .collect();
        names.sort();
        names
    };
    let (p0, p1) = (names(&states[0]), names(&states[1]));
    assert!(
        p0.len() == 2 && p0[0].ends_with(".cluster.json") && p0[1].ends_with(".part-0-of-2.mlck"),
        "{p0:?}"
    );
    assert!(p1.len() == 1 && p1[0].ends_with(".part-1-of-2.mlck"), "{p1:?}");
    produce_dataset(&settings(&brokers), &live, "b.codes.events").expect("produce");
    let start = |name: &str| stream_pair(&brokers, "b.", &work, name, &states, &[]);
    // Process 1's directory lacks the manifest: it would restore nothing, process 0 the
    // backfill's cut. Both stop by themselves, saying so, and nothing is produced.
    for mut child in start("disagree") {
        let deadline = Instant::now() + Duration::from_secs(90);
        let status = loop {
            if let Some(status) = child.try_wait().expect("child") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "a process did not stop on disagreeing restores"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(!status.success());
    }
    let text = std::fs::read_to_string(work.join("disagree-p0.log")).expect("log")
        + &std::fs::read_to_string(work.join("disagree-p1.log")).expect("log");
    assert!(text.contains("every process must restore the same cut"), "{text}");
    assert!(read_topic(&brokers, "b.codes.status").is_empty(), "nothing produced");
    // With the manifest beside process 1's part, both restore the backfill's cut.
    let manifest = &p0[0];
    std::fs::copy(
        Path::new(&states[0]).join(manifest),
        Path::new(&states[1]).join(manifest),
    )
    .expect("copy the manifest");
    let mut children = start("goes-on");
    wait_for_progress(&brokers, "b.", end, &mut children[0]);
    terminate_all(children);
    for p in 0..2 {
        let text = std::fs::read_to_string(work.join(format!("goes-on-p{p}.log"))).expect("log");
        assert!(
            text.contains("written by 2 workers, restored on 2"),
            "process {p}: {text}"
        );
    }
    let mut consumed = Consumed::default();
    consumed.add_files(&history_out);
    consume_into(&brokers, "b.", &mut consumed);
    let diff = differences(&expected, &consumed);
    assert!(
        diff.is_empty(),
        "backfill on 2 × 1 + stream on 2 × 1 vs file run:\n{}",
        diff.join("\n")
    );
    let _ = std::fs::remove_dir_all(&work);
}

/// Issue 18: a cluster whose processes are not all given `--state` stops at its start,
/// every process, saying so (no process waits for ever for the others' restores), and
/// produces nothing.
#[test]
fn a_cluster_with_state_on_one_process_only_stops_saying_so() {
    let work = temp_dir("stream", "cluster-mixed-state");
    let broker = Broker::start(Storage::Memory);
    let brokers = broker.brokers();
    let hosts = hostfile(&work, 2);
    let hosts_flag = hosts.to_str().expect("UTF-8 path").to_string();
    let state = work.join("state").to_str().expect("UTF-8 path").to_string();
    let children: Vec<Child> = (0..2)
        .map(|p: usize| {
            let me = p.to_string();
            let mut flags = vec![
                "--workers",
                "1",
                "--processes",
                "2",
                "--process",
                &me,
                "--hostfile",
                &hosts_flag,
                "--input-partitions",
                "2",
            ];
            if p == 0 {
                flags.extend(["--state", state.as_str()]);
            }
            stream_with(&brokers, "m.", &work.join(format!("m-p{p}.log")), &flags)
        })
        .collect();
    for mut child in children {
        let deadline = Instant::now() + Duration::from_secs(90);
        let status = loop {
            if let Some(status) = child.try_wait().expect("child") {
                break status;
            }
            assert!(Instant::now() < deadline, "a process did not stop");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(!status.success());
    }
    let text = std::fs::read_to_string(work.join("m-p0.log")).expect("log")
        + &std::fs::read_to_string(work.join("m-p1.log")).expect("log");
    assert!(
        text.contains("runs without --state") && text.contains("Give every process --state (or none)"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&work);
}
