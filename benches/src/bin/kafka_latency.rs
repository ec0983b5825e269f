//! `kafka-latency`: ingest-to-output latency of `markledger stream` through a real broker.
//!
//! Reads a generated dataset, merges its partitions by `ts` (each partition keeps its file
//! order) and produces every event to the input topic, file `i` to partition `i`, paced at
//! `--rate` code events per second (an event weighs its codes, at least 1; `--rate 0`: as
//! fast as possible). The instant each event is handed to the producer is kept. Meanwhile a
//! consumer reads the status, ledger and rejection topics from their start, and the first
//! output naming an event (its `event` field) gives that event's latency: output received
//! minus event sent. Events whose effects go only to balances and period aggregates
//! (orders, cancels, tariffs) are never answered there and are counted apart.
//!
//! At the end (every sent event answered, or no new output for `--quiet-after`) it prints
//! the latency percentiles (hdrhistogram, microsecond resolution), the rate actually
//! produced, and the throughput the pipeline sustained: code events of answered events over
//! the time from the first send to the last answer. The topics must be fresh (a new
//! `--topic-prefix` per run); the pipeline is started by the caller (benches/kafka_latency.sh).

use clap::Parser;
use hdrhistogram::Histogram;
use markledger_connectors::codec::json::encode_event;
use markledger_connectors::codec::Decoded;
use markledger_connectors::file::{list_partitions, PartitionReader};
use markledger_connectors::kafka::{
    ensure_topics, partition_count, KafkaSettings, OutputProducer, PartitionConsumer, Polled, Start, TopicSpec,
};
use markledger_operators::event::Event;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Ingest-to-output latency of `markledger stream` through Kafka
#[derive(Parser)]
#[command(name = "kafka-latency")]
struct Args {
    /// Bootstrap brokers, HOST:PORT
    #[arg(long)]
    brokers: String,
    /// The prefix of every topic (the pipeline's --topic-prefix); fresh for each run
    #[arg(long)]
    topic_prefix: String,
    /// A generated dataset directory (JSON lines or binary)
    #[arg(long)]
    input: PathBuf,
    /// Code events per second to produce (0: as fast as possible)
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Stop waiting for outputs after this long without a new one (seconds)
    #[arg(long, default_value_t = 10.0)]
    quiet_after: f64,
    /// Wait at most this long for the pipeline to create its output topics (seconds)
    #[arg(long, default_value_t = 60.0)]
    startup: f64,
    /// No pipeline: consume the input topic itself and match events by `id` (the latency
    /// the broker and the clients add on their own, one produce-to-consume hop)
    #[arg(long)]
    loopback: bool,
}

/// An event to send, from input partition `partition`.
struct Outgoing {
    partition: i32,
    event: Event,
}

/// The dataset's events merged by `ts`, each partition in its file order.
fn merged(input: &PathBuf) -> Result<Vec<Outgoing>, String> {
    let paths = list_partitions(std::slice::from_ref(input)).map_err(|error| error.to_string())?;
    let mut queues: Vec<std::collections::VecDeque<Event>> = Vec::new();
    for path in &paths {
        let reader = PartitionReader::open(path).map_err(|error| error.to_string())?;
        // Lines that do not decode have no id to match an output with: left out.
        queues.push(
            reader
                .filter_map(|decoded| match decoded {
                    Decoded::Event(event) => Some(event),
                    Decoded::Refused(_) => None,
                })
                .collect(),
        );
    }
    let mut events = Vec::new();
    loop {
        let next = queues
            .iter()
            .enumerate()
            .filter_map(|(i, queue)| queue.front().map(|event| (event.ts, i)))
            .min();
        let Some((_, i)) = next else { break };
        let event = queues[i].pop_front().expect("a front");
        events.push(Outgoing {
            partition: i as i32,
            event,
        });
    }
    Ok(events)
}

/// Sent events not yet answered: id → (sent at, code events).
type Pending = Arc<Mutex<HashMap<String, (Instant, u64)>>>;

/// What the consumer measured.
struct Answers {
    latencies: Histogram<u64>,
    code_events: u64,
    last: Option<Instant>,
}

fn consume(
    settings: &KafkaSettings,
    topics: &[String],
    pending: Pending,
    sending: Arc<AtomicBool>,
    quiet_after: Duration,
) -> Result<Answers, String> {
    let mut assignment = Vec::new();
    for topic in topics {
        let partitions = partition_count(settings, topic).map_err(|error| error.to_string())?;
        assignment.extend((0..partitions).map(|p| (topic.clone(), p)));
    }
    let mut consumer =
        PartitionConsumer::starting(settings, &assignment, Start::Earliest).map_err(|error| error.to_string())?;
    let mut answers = Answers {
        latencies: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("bounds"),
        code_events: 0,
        last: None,
    };
    let mut last_output = Instant::now();
    loop {
        let done_sending = !sending.load(Ordering::SeqCst);
        if done_sending && (pending.lock().expect("pending").is_empty() || last_output.elapsed() >= quiet_after) {
            return Ok(answers);
        }
        let Some(Polled::Record(record)) = consumer.poll(Duration::from_millis(50)) else {
            continue;
        };
        let received = Instant::now();
        last_output = received;
        // An output names its cause in `event`; an input event (loopback) is its own `id`.
        #[derive(serde::Deserialize)]
        struct Named {
            event: Option<String>,
            id: Option<String>,
        }
        let Ok(Named { event, id }) = serde_json::from_slice::<Named>(&record.payload) else {
            continue;
        };
        let Some(id) = event.or(id) else { continue };
        if let Some((sent, weight)) = pending.lock().expect("pending").remove(&id) {
            let micros = received.duration_since(sent).as_micros().max(1) as u64;
            answers.latencies.saturating_record(micros);
            answers.code_events += weight;
            answers.last = Some(received);
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let events = merged(&args.input)?;
    let partitions = events.iter().map(|e| e.partition).max().map_or(1, |p| p + 1);
    let mut settings = KafkaSettings::new(args.brokers.clone());
    settings.client_id = "markledger-latency".into();
    settings.apply_prefix(&args.topic_prefix);
    let input = settings.input_topics[0].clone();
    ensure_topics(&settings, &[TopicSpec::new(&input, partitions)]).map_err(|error| error.to_string())?;
    eprintln!("kafka-latency: input topic {input} ready; waiting for the pipeline's output topics");
    // The pipeline creates its output topics when it starts.
    let outputs = settings.output_topics.clone();
    let topics = if args.loopback {
        vec![input.clone()]
    } else {
        vec![
            outputs.status.clone(),
            outputs.ledger.clone(),
            outputs.rejections.clone(),
        ]
    };
    let waited = Instant::now();
    while topics.iter().any(|topic| partition_count(&settings, topic).is_err()) {
        if waited.elapsed().as_secs_f64() > args.startup {
            return Err(format!(
                "the pipeline did not create {topics:?} within {} s",
                args.startup
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    let pending: Pending = Arc::default();
    let sending = Arc::new(AtomicBool::new(true));
    let consumer = {
        let (settings, pending, sending) = (settings.clone(), pending.clone(), sending.clone());
        let quiet_after = Duration::from_secs_f64(args.quiet_after);
        std::thread::spawn(move || consume(&settings, &topics, pending, sending, quiet_after))
    };

    let mut producer = OutputProducer::new(&settings).map_err(|error| error.to_string())?;
    let total_weight: u64 = events.iter().map(|e| e.event.code_count().max(1) as u64).sum();
    let mut by_type: BTreeMap<&'static str, u64> = BTreeMap::new();
    for outgoing in &events {
        *by_type.entry(outgoing.event.kind().as_str()).or_default() += 1;
    }
    let started = Instant::now();
    let mut weight_sent = 0u64;
    for outgoing in &events {
        if args.rate > 0.0 {
            let due = started + Duration::from_secs_f64(weight_sent as f64 / args.rate);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        let weight = outgoing.event.code_count().max(1) as u64;
        let payload = encode_event(&outgoing.event);
        pending
            .lock()
            .expect("pending")
            .insert(outgoing.event.id.clone(), (Instant::now(), weight));
        producer
            .send_record(
                &input,
                Some(outgoing.partition),
                Some(outgoing.event.account.as_bytes()),
                payload.as_bytes(),
                &[],
            )
            .map_err(|error| error.to_string())?;
        weight_sent += weight;
    }
    producer
        .flush(Duration::from_secs(60))
        .map_err(|error| error.to_string())?;
    let produced_in = started.elapsed().as_secs_f64();
    sending.store(false, Ordering::SeqCst);
    let answers = consumer.join().map_err(|_| "the consumer panicked".to_string())??;
    let unanswered = pending.lock().expect("pending").len();

    let ms = |micros: u64| micros as f64 / 1000.0;
    let h = &answers.latencies;
    println!(
        "kafka-latency: {} events ({total_weight} code events) in {produced_in:.2} s: {:.0} code events/s produced{}",
        events.len(),
        total_weight as f64 / produced_in.max(1e-9),
        if args.rate > 0.0 {
            format!(" (asked {:.0})", args.rate)
        } else {
            " (as fast as possible)".into()
        }
    );
    let types: Vec<String> = by_type.iter().map(|(kind, n)| format!("{kind} {n}")).collect();
    println!("  sent          {}", types.join(", "));
    println!(
        "  answered      {} events in status/ledger/rejections; {unanswered} not (their outputs are balances and periods only)",
        h.len()
    );
    if let Some(last) = answers.last {
        let span = last.duration_since(started).as_secs_f64();
        println!(
            "  sustained     {} code events answered in {span:.2} s from the first send: {:.0} code events/s",
            answers.code_events,
            answers.code_events as f64 / span.max(1e-9)
        );
    }
    println!(
        "  latency (ms)  p50 {:.1}, p99 {:.1}, p99.9 {:.1}, max {:.1}",
        ms(h.value_at_quantile(0.50)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max())
    );
    println!(
        "  machine       answered={} p50_ms={:.3} p99_ms={:.3} p999_ms={:.3} max_ms={:.3} produced_rate={:.0} sustained_rate={:.0}",
        h.len(),
        ms(h.value_at_quantile(0.50)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max()),
        total_weight as f64 / produced_in.max(1e-9),
        answers
            .last
            .map_or(0.0, |last| answers.code_events as f64 / last.duration_since(started).as_secs_f64().max(1e-9)),
    );
    if h.is_empty() {
        return Err("no event was answered: is the pipeline running on these topics?".into());
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("kafka-latency: {error}");
            ExitCode::FAILURE
        }
    }
}
