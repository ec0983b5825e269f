//! The generator's manifest against the reference engine: a generated dataset run
//! through `markledger::reference` must produce exactly the rejections the manifest
//! predicts for the six injected reasons, exactly the intended refusals of the normal
//! traffic, and no rejection of any other reason; exactly the manifest's late orders must
//! take effect past their own 4-hour deadline, and the emission SLA records must count
//! exactly the manifest's `sla_late` late orders.

use markledger::reference;
use markledger_connectors::codec::Decoded;
use markledger_connectors::file::{list_partitions, PartitionReader};
use markledger_datasets::generator::{generate, Format, GeneratorConfig, Manifest, INJECTED_REASONS};
use markledger_operators::flow::Time;
use markledger_operators::output::{Deletion, ExportItem, Figures};
use markledger_operators::{Output, Period, Reason, Sink, Ts};
use markledger_tests::compare::orders_past_their_deadline;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Counts rejections by reason and keeps the latest `late` of every SLA record, nothing
/// else, so large datasets stay cheap.
#[derive(Default)]
struct RejectionCounter {
    by_reason: BTreeMap<Reason, u64>,
    sla_late: BTreeMap<String, (u64, u64)>,
    /// Export deliveries made (their closing lines) and balance keys deleted (DOMAIN.md §9).
    deliveries: u64,
    deleted_accounts: u64,
}

impl Sink for RejectionCounter {
    type Done = RejectionCounter;

    fn emit(&mut self, _time: Time, outputs: &mut Vec<Output>) {
        for output in outputs.drain(..) {
            self.count(output);
        }
    }

    fn finish(self) -> RejectionCounter {
        self
    }
}

impl RejectionCounter {
    fn count(&mut self, output: Output) {
        match output {
            Output::Rejection(rejection) => *self.by_reason.entry(rejection.reason).or_default() += 1,
            Output::Period(record) => {
                if let Figures::Sla { late, .. } = record.figures {
                    let latest = self.sla_late.entry(record.key.render()).or_default();
                    if record.rev > latest.0 {
                        *latest = (record.rev, late);
                    }
                }
            }
            Output::Export(line) => {
                if matches!(line.item, ExportItem::Complete { .. }) {
                    self.deliveries += 1;
                }
            }
            Output::Deleted(Deletion::Balance { .. }) => self.deleted_accounts += 1,
            _ => {}
        }
    }
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("markledger-manifest-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn read_partitions(dir: &Path) -> Vec<Vec<Decoded>> {
    list_partitions(&[dir.to_path_buf()])
        .unwrap()
        .iter()
        .map(|path| PartitionReader::open(path).unwrap().collect())
        .collect()
}

/// Generates `config`, runs the reference engine on it and compares every rejection
/// reason with the manifest.
fn check(name: &str, config: GeneratorConfig) {
    let dir = TempDir::new(name);
    let manifest = generate(&config, &dir.0, &mut |_| {}).unwrap();
    assert_eq!(Manifest::read(&dir.0).unwrap(), manifest);
    let engine_config = markledger::Config::with_calendar(markledger_datasets::calendars::kazakhstan());
    let partitions = read_partitions(&dir.0);
    assert_eq!(
        orders_past_their_deadline(&engine_config, &partitions),
        manifest.late_orders,
        "{name}: late orders"
    );
    let (summary, counter) = reference::run(&engine_config, partitions, RejectionCounter::default(), &mut |_, _| {});
    let sla_late: u64 = counter.sla_late.values().map(|(_, late)| late).sum();
    // DOMAIN.md §9: every accepted export is delivered and every terminated account
    // deleted inside the data (terminations fall in the first half of it).
    assert_eq!(
        counter.deliveries, manifest.exports_accepted,
        "{name}: export deliveries"
    );
    assert_eq!(
        counter.deleted_accounts, manifest.terminated_accounts,
        "{name}: deletions"
    );
    if config.terminate_rate > 0.0 {
        assert!(
            manifest.terminated_accounts > 0 && manifest.exports_accepted > 0,
            "{name}: §9 covered"
        );
    }
    assert_eq!(sla_late, manifest.sla_late, "{name}: SLA late orders");
    assert!(manifest.late_orders > 0, "{name}: no late order");
    let got = counter.by_reason;

    let mut expected: BTreeMap<Reason, u64> = BTreeMap::new();
    for reason in INJECTED_REASONS {
        expected.insert(reason, manifest.injected_count(reason));
    }
    for (reason, count) in &manifest.intended {
        expected.insert(Reason::parse(reason).unwrap(), *count);
    }
    for (reason, count) in &expected {
        assert_eq!(
            got.get(reason).copied().unwrap_or(0),
            *count,
            "{name}: {reason} (engine: {got:?})"
        );
    }
    let unexpected: Vec<_> = got
        .iter()
        .filter(|(reason, _)| !expected.contains_key(reason))
        .collect();
    assert!(
        unexpected.is_empty(),
        "{name}: the normal traffic caused {unexpected:?}"
    );
    assert_eq!(summary.rejections, got, "{name}: summary and records agree");
    assert_eq!(summary.records, manifest.events, "{name}: records");
    assert_eq!(summary.code_events, manifest.code_events, "{name}: code events");
    assert_eq!(summary.last_ts.map(Ts::render).unwrap_or_default(), manifest.last_ts);
    // The data reaches past the close of the last month, so every month closes.
    let mut last = config.start;
    for _ in 1..config.months {
        last = last.next();
    }
    assert!(summary.last_ts.unwrap() >= last.close_instant(engine_config.close_after_days));
    if config.bad_rate > 0.0 {
        assert!(
            manifest.injected.values().all(|&count| count > 0),
            "{name}: every reason injected: {:?}",
            manifest.injected
        );
    }
}

#[test]
fn injected_rejections_match_the_manifest_exactly() {
    // Runs the reference engine on generated datasets of several shapes (formats, bad
    // rates up to the maximum, 1 to 16 partitions, a year with the 2024 time-zone change)
    // and compares each reason's rejection count, the orders taking effect past their
    // deadline and the SLA's late orders with the manifest's predictions.
    let base = GeneratorConfig {
        accounts: 60,
        codes: 150_000,
        ..GeneratorConfig::default()
    };
    check(
        "json",
        GeneratorConfig {
            bad_rate: 0.1,
            ..base.clone()
        },
    );
    check(
        "terminations",
        GeneratorConfig {
            bad_rate: 0.1,
            seed: 7,
            terminate_rate: 0.3,
            ..base.clone()
        },
    );
    check(
        "binary",
        GeneratorConfig {
            bad_rate: 0.1,
            seed: 2,
            format: Format::Binary,
            ..base.clone()
        },
    );
    check(
        "max-bad",
        GeneratorConfig {
            bad_rate: 0.5,
            seed: 3,
            ..base.clone()
        },
    );
    check(
        "one-partition",
        GeneratorConfig {
            bad_rate: 0.2,
            seed: 4,
            partitions: 1,
            ..base.clone()
        },
    );
    check(
        "many-partitions",
        GeneratorConfig {
            bad_rate: 0.2,
            seed: 5,
            partitions: 16,
            ..base.clone()
        },
    );
    check(
        "six-months-2024",
        GeneratorConfig {
            bad_rate: 0.05,
            seed: 6,
            months: 6,
            start: Period::new(2024, 1),
            ..base.clone()
        },
    );
    check(
        "clean",
        GeneratorConfig {
            bad_rate: 0.0,
            seed: 7,
            ..base
        },
    );
}
