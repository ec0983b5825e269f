//! `--metrics-addr HOST:PORT` (issue 19): the run's figures as Prometheus text at
//! `/metrics`, so an operator can see and alert on what a stream is doing (a silent
//! partition holding the watermark back, consumer lag, checkpoints that stopped).
//!
//! In: a [`Snapshot`] closure, called once per scrape (the figures are atomics and short
//! locks in the connectors and checkpoints; nothing is kept here). Out: the text format of
//! the official Rust client (prometheus-client), served by tiny_http on one thread.
//! Names follow Prometheus conventions: `markledger_` prefix, counters end in `_total`
//! (the client adds it), base units (`_seconds`, `_bytes`); event time is seconds since the
//! Unix epoch. README.md ("Metrics") shows a sample and a watermark-lag alert.

use anyhow::{Context, Result};
use markledger_connectors::kafka::health::BrokerFigures;
use markledger_connectors::kafka::{OutputFigures, PartitionSnapshot};
use markledger_operators::final_codes::CodesMemory;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// What a scrape shows.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Per input partition.
    pub partitions: Vec<PartitionSnapshot>,
    /// Allowed lateness: a partition's watermark is its high-water mark minus this.
    pub lateness_ms: i64,
    /// Input records read (the summary's figure).
    pub records: u64,
    /// Outputs produced by topic, rejections by reason.
    pub outputs: OutputFigures,
    /// Outputs not produced again after a restart.
    pub suppressed: u64,
    /// The output frontier: every output before it is handed to the producer (ms).
    pub output_frontier_ms: u64,
    /// The frontier the last offset commit covered (ms; 0: none).
    pub committed_frontier_ms: u64,
    /// Offset commits.
    pub commits: u64,
    /// Checkpoints written.
    pub checkpoints: u64,
    /// The last checkpoint: bytes, time to write, and how long ago.
    pub last_checkpoint: Option<(u64, Duration, Duration)>,
    /// The longest a machine's save held up its worker.
    pub longest_pause: Duration,
    /// Partitions held at the calendar's end.
    pub calendar_held: usize,
    /// The national index's last memory report: codes held (live and final), its RAM and
    /// disk (the summary's memory line; None before the first report).
    pub codes: Option<CodesMemory>,
    /// Whether the Kafka cluster is reachable, its outages and client errors (a stream;
    /// None for a file run).
    pub kafka: Option<BrokerFigures>,
}

/// The text of one scrape.
pub fn render(snapshot: &Snapshot) -> String {
    let mut registry = Registry::with_prefix("markledger");
    let partition = |p: &PartitionSnapshot| {
        vec![
            ("topic".to_string(), p.topic.clone()),
            ("partition".to_string(), p.partition.to_string()),
        ]
    };
    let records = Family::<Vec<(String, String)>, Counter>::default();
    let high_water = Family::<Vec<(String, String)>, Gauge<f64, AtomicU64>>::default();
    let watermark = Family::<Vec<(String, String)>, Gauge<f64, AtomicU64>>::default();
    let lag = Family::<Vec<(String, String)>, Gauge>::default();
    let held = Family::<Vec<(String, String)>, Gauge>::default();
    let late = Family::<Vec<(String, String)>, Counter>::default();
    for p in &snapshot.partitions {
        let labels = partition(p);
        records.get_or_create(&labels).inc_by(p.records);
        if p.high_water_ms > 0 {
            high_water.get_or_create(&labels).set(seconds(p.high_water_ms));
            watermark
                .get_or_create(&labels)
                .set(seconds(p.high_water_ms - snapshot.lateness_ms));
        }
        if let Some(behind) = p.lag {
            lag.get_or_create(&labels).set(behind);
        }
        held.get_or_create(&labels).set(i64::from(p.held));
        late.get_or_create(&labels).inc_by(p.late);
    }
    registry.register(
        "input_late_events",
        "Events that took effect late (behind the watermark), per partition",
        late,
    );
    registry.register("input_records", "Input records read, per partition", records);
    registry.register(
        "input_high_water_seconds",
        "The largest event ts read per partition (Unix seconds)",
        high_water,
    );
    registry.register(
        "input_watermark_seconds",
        "Per partition, its high-water mark minus the allowed lateness (Unix seconds)",
        watermark,
    );
    registry.register(
        "input_consumer_lag",
        "Records behind the partition's end (librdkafka statistics)",
        lag,
    );
    registry.register(
        "input_held_by_calendar",
        "1 when the partition is held at the end of the working-day calendar",
        held,
    );
    let total = Counter::<u64>::default();
    total.inc_by(snapshot.records);
    registry.register("input_records_read", "Input records read in all", total);
    let outputs = Family::<Vec<(String, String)>, Counter>::default();
    for (topic, count) in &snapshot.outputs.by_topic {
        outputs
            .get_or_create(&vec![("topic".to_string(), topic.clone())])
            .inc_by(*count);
    }
    registry.register("output_records", "Output records produced, per topic", outputs);
    let rejections = Family::<Vec<(String, String)>, Counter>::default();
    for (reason, count) in &snapshot.outputs.rejections {
        rejections
            .get_or_create(&vec![("reason".to_string(), reason.to_string())])
            .inc_by(*count);
    }
    registry.register("rejections", "Rejections produced, per reason code", rejections);
    register_counter(
        &mut registry,
        "output_suppressed",
        "Outputs not produced again after a restart",
        snapshot.suppressed,
    );
    register_counter(&mut registry, "commits", "Input offset commits", snapshot.commits);
    register_seconds(
        &mut registry,
        "output_frontier_seconds",
        "Every output before this event time is handed to the producer (Unix seconds)",
        snapshot.output_frontier_ms as i64,
    );
    register_seconds(
        &mut registry,
        "committed_frontier_seconds",
        "The output frontier the last offset commit covered (Unix seconds)",
        snapshot.committed_frontier_ms as i64,
    );
    register_counter(
        &mut registry,
        "checkpoints",
        "Checkpoints written",
        snapshot.checkpoints,
    );
    if let Some((bytes, took, ago)) = snapshot.last_checkpoint {
        register_gauge(
            &mut registry,
            "checkpoint_bytes",
            "Size of the last checkpoint",
            bytes as f64,
        );
        register_gauge(
            &mut registry,
            "checkpoint_duration_seconds",
            "Time to write the last checkpoint",
            took.as_secs_f64(),
        );
        register_gauge(
            &mut registry,
            "checkpoint_age_seconds",
            "Time since the last checkpoint was written",
            ago.as_secs_f64(),
        );
    }
    register_gauge(
        &mut registry,
        "checkpoint_worker_pause_max_seconds",
        "The longest a machine's save held up its worker",
        snapshot.longest_pause.as_secs_f64(),
    );
    register_gauge(
        &mut registry,
        "calendar_held_partitions",
        "Partitions held at the end of the working-day calendar (alert: extend the calendar)",
        snapshot.calendar_held as f64,
    );
    if let Some(kafka) = &snapshot.kafka {
        register_gauge(
            &mut registry,
            "kafka_brokers_reachable",
            "0 while every Kafka broker is down (librdkafka's AllBrokersDown until one is up again), else 1",
            f64::from(u8::from(kafka.reachable)),
        );
        register_counter(
            &mut registry,
            "kafka_unreachable",
            "Times every Kafka broker became unreachable",
            kafka.outages,
        );
        register_counter(
            &mut registry,
            "kafka_client_errors",
            "Client-level errors librdkafka reported (transport failures, timeouts, refused credentials)",
            kafka.errors,
        );
    }
    if let Some(codes) = &snapshot.codes {
        register_codes(&mut registry, codes);
    }
    if let Some(bytes) = resident_bytes() {
        register_gauge(
            &mut registry,
            "process_resident_memory_bytes",
            "Resident memory of the process",
            bytes as f64,
        );
    }
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut text, &registry);
    text
}

/// The national index's state as gauges (they go down as well as up: codes become final,
/// retention drops them).
fn register_codes(registry: &mut Registry, codes: &CodesMemory) {
    let gauges = [
        (
            "codes_held",
            "Codes the national index holds: live in RAM plus final in its store",
            codes.live_codes + codes.final_codes,
        ),
        (
            "codes_live",
            "Codes not final yet, held in RAM by the national index",
            codes.live_codes,
        ),
        (
            "codes_final",
            "Final codes held in the national index's store (memtable and run files, within retention)",
            codes.final_codes,
        ),
        (
            "code_state_memory_bytes",
            "RAM the national index's code state takes (an estimate from its tables' sizes)",
            codes.ram_bytes,
        ),
        (
            "code_state_disk_bytes",
            "Bytes of the national index's run files on disk",
            codes.disk_bytes,
        ),
    ];
    for (name, help, value) in gauges {
        let gauge = Gauge::<i64>::default();
        gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
        registry.register(name, help, gauge);
    }
}

fn seconds(ms: i64) -> f64 {
    ms as f64 / 1e3
}

fn register_counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let counter = Counter::<u64>::default();
    counter.inc_by(value);
    registry.register(name, help, counter);
}

fn register_gauge(registry: &mut Registry, name: &str, help: &str, value: f64) {
    let gauge = Gauge::<f64, AtomicU64>::default();
    gauge.set(value);
    registry.register(name, help, gauge);
}

fn register_seconds(registry: &mut Registry, name: &str, help: &str, ms: i64) {
    if ms > 0 {
        register_gauge(registry, name, help, seconds(ms));
    }
}

/// The process's resident memory, from /proc (Linux); None elsewhere.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// The HTTP server of `/metrics`: one thread, ended by [`MetricsServer::stop`] or drop.
pub struct MetricsServer {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Serves `snapshot()` as Prometheus text at `http://address/metrics`.
    pub fn start(address: &str, snapshot: Box<dyn Fn() -> Snapshot + Send>) -> Result<MetricsServer> {
        let server = Arc::new(
            tiny_http::Server::http(address)
                .map_err(|error| anyhow::anyhow!("{error}"))
                .with_context(|| format!("serving metrics on {address}"))?,
        );
        let serving = server.clone();
        let thread = std::thread::spawn(move || {
            for request in serving.incoming_requests() {
                let response = if request.url() == "/metrics" {
                    let header = tiny_http::Header::from_bytes(
                        &b"Content-Type"[..],
                        &b"application/openmetrics-text; version=1.0.0; charset=utf-8"[..],
                    )
                    .expect("a valid header");
                    tiny_http::Response::from_string(render(&snapshot())).with_header(header)
                } else {
                    tiny_http::Response::from_string("markledger: metrics are at /metrics\n").with_status_code(404)
                };
                let _ = request.respond(response);
            }
        });
        Ok(MetricsServer {
            server,
            thread: Some(thread),
        })
    }

    /// Stops serving and waits for the thread.
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.shut_down();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_the_readme_names_is_one_a_stream_serves() {
        // README.md's Metrics section (sample and alerts): each `markledger_…` name in it
        // is rendered from a stream's snapshot with every figure present.
        let readme = include_str!("../../README.md");
        let start = readme.find("#### Metrics").expect("a Metrics section");
        let end = start + readme[start..].find("#### Logs").expect("the section after");
        let section = &readme[start..end];
        let snapshot = Snapshot {
            partitions: vec![PartitionSnapshot {
                topic: "codes.events".into(),
                partition: 0,
                records: 1,
                high_water_ms: 1_767_225_600_000,
                lag: Some(0),
                held: false,
                late: 0,
            }],
            records: 1,
            outputs: OutputFigures {
                by_topic: [("codes.ledger".to_string(), 1)].into(),
                rejections: [("CODE_UNPAID", 1)].into(),
            },
            output_frontier_ms: 1_767_225_600_000,
            committed_frontier_ms: 1_767_225_600_000,
            last_checkpoint: Some((1, Duration::from_millis(1), Duration::from_secs(1))),
            codes: Some(CodesMemory::default()),
            kafka: Some(BrokerFigures::default()),
            ..Snapshot::default()
        };
        let rendered: std::collections::BTreeSet<String> = render(&snapshot)
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.split(['{', ' ']).next())
            .map(str::to_string)
            .collect();
        let mut named = 0;
        for (at, _) in section.match_indices("markledger_") {
            let name: String = section[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(
                rendered.contains(&name),
                "README names {name}, not served: {rendered:?}"
            );
            named += 1;
        }
        assert!(named > 30, "the section names {named} metrics");
    }

    #[test]
    fn a_snapshot_renders_as_prometheus_text_with_conventional_names() {
        // Renders a snapshot with one partition, outputs and a checkpoint: the counters end
        // in _total, times are in seconds, labels name topic/partition/reason.
        let snapshot = Snapshot {
            partitions: vec![PartitionSnapshot {
                topic: "codes.events".into(),
                partition: 0,
                records: 42,
                high_water_ms: 1_767_225_600_000,
                lag: Some(7),
                held: false,
                late: 2,
            }],
            lateness_ms: 5_000,
            records: 42,
            outputs: OutputFigures {
                by_topic: [("codes.ledger".to_string(), 3)].into(),
                rejections: [("BAD_AMOUNT", 2)].into(),
            },
            output_frontier_ms: 1_767_225_590_000,
            checkpoints: 1,
            last_checkpoint: Some((1024, Duration::from_millis(5), Duration::from_secs(3))),
            codes: Some(CodesMemory {
                live_codes: 10,
                final_codes: 32,
                ram_bytes: 4096,
                disk_bytes: 2048,
                ..CodesMemory::default()
            }),
            kafka: Some(BrokerFigures {
                reachable: false,
                outages: 1,
                errors: 3,
            }),
            ..Snapshot::default()
        };
        let text = render(&snapshot);
        for line in [
            "markledger_input_records_total{topic=\"codes.events\",partition=\"0\"} 42",
            "markledger_input_high_water_seconds{topic=\"codes.events\",partition=\"0\"} 1767225600.0",
            "markledger_input_watermark_seconds{topic=\"codes.events\",partition=\"0\"} 1767225595.0",
            "markledger_input_consumer_lag{topic=\"codes.events\",partition=\"0\"} 7",
            "markledger_input_records_read_total 42",
            "markledger_input_late_events_total{topic=\"codes.events\",partition=\"0\"} 2",
            "markledger_output_records_total{topic=\"codes.ledger\"} 3",
            "markledger_rejections_total{reason=\"BAD_AMOUNT\"} 2",
            "markledger_output_frontier_seconds 1767225590.0",
            "markledger_checkpoint_bytes 1024.0",
            "markledger_checkpoint_age_seconds 3.0",
            "markledger_codes_held 42",
            "markledger_codes_live 10",
            "markledger_codes_final 32",
            "markledger_code_state_memory_bytes 4096",
            "markledger_code_state_disk_bytes 2048",
            "markledger_kafka_brokers_reachable 0.0",
            "markledger_kafka_unreachable_total 1",
            "markledger_kafka_client_errors_total 3",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
    }
}
