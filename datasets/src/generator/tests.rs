//! Tests of the whole generator: reproducibility, decodability, order, recounts, shape.

use super::*;
use markledger_connectors::codec::json::decode_event;
use markledger_connectors::codec::Decoded;
use markledger_connectors::file::{list_partitions, PartitionReader};
use markledger_operators::event::{Body, DecimalField};
use markledger_operators::money::check_amount;
use markledger_operators::validate::{is_code, is_gtin};
use markledger_operators::{Kind, Ts};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("markledger-generator-{}-{name}", std::process::id()));
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

fn small(format: Format, bad_rate: f64) -> GeneratorConfig {
    GeneratorConfig {
        accounts: 40,
        codes: 120_000,
        seed: 7,
        format,
        bad_rate,
        partitions: 3,
        ..GeneratorConfig::default()
    }
}

fn files_of(dir: &Path) -> Vec<PathBuf> {
    list_partitions(&[dir.to_path_buf()]).unwrap()
}

/// Every record of a dataset, partition by partition.
fn read_all(dir: &Path) -> Vec<Vec<Decoded>> {
    files_of(dir)
        .iter()
        .map(|path| {
            let mut reader = PartitionReader::open(path).unwrap();
            let records: Vec<Decoded> = reader.by_ref().collect();
            assert!(reader.io_error().is_none());
            records
        })
        .collect()
}

#[test]
fn same_config_gives_the_same_bytes_in_both_formats() {
    // Generates each format twice into separate directories (with bad input on) and
    // compares every file byte for byte, manifest included; a different seed differs.
    for format in [Format::Json, Format::Binary] {
        let config = small(format, 0.05);
        let first = TempDir::new(&format!("det-a-{}", format.as_str()));
        let second = TempDir::new(&format!("det-b-{}", format.as_str()));
        generate(&config, &first.0, &mut |_| {}).unwrap();
        generate(&config, &second.0, &mut |_| {}).unwrap();
        let names: Vec<_> = fs::read_dir(&first.0)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), config.partitions as usize + 1);
        for name in names {
            let a = fs::read(first.0.join(&name)).unwrap();
            let b = fs::read(second.0.join(&name)).unwrap();
            assert!(a == b, "{name:?} differs between two runs ({})", format.as_str());
        }
        let other = TempDir::new(&format!("det-c-{}", format.as_str()));
        generate(&GeneratorConfig { seed: 8, ..config }, &other.0, &mut |_| {}).unwrap();
        let name = writer::partition_file_name(0, format);
        assert_ne!(
            fs::read(first.0.join(&name)).unwrap(),
            fs::read(other.0.join(&name)).unwrap()
        );
    }
}

#[test]
fn json_and_binary_datasets_read_back_the_same() {
    // Generates the same config as JSON and as binary and reads both with the partition
    // reader: the decoded record sequences must be equal, refusals included.
    let json = TempDir::new("same-json");
    let binary = TempDir::new("same-bin");
    let from_json = generate(&small(Format::Json, 0.1), &json.0, &mut |_| {}).unwrap();
    let from_binary = generate(&small(Format::Binary, 0.1), &binary.0, &mut |_| {}).unwrap();
    assert_eq!(from_json.events, from_binary.events);
    assert_eq!(from_json.injected, from_binary.injected);
    assert_eq!(read_all(&json.0), read_all(&binary.0));
}

#[test]
fn every_line_decodes_except_the_injected_raw_ones_and_counts_match_the_manifest() {
    // Decodes every JSON line with decode_event: refusals must be exactly the manifest's
    // MALFORMED and UNKNOWN_TYPE counts; recounts records, types and codes; checks
    // GTINs, codes and amounts; and that Manifest::read returns what generate returned.
    let dir = TempDir::new("decode");
    let manifest = generate(&small(Format::Json, 0.2), &dir.0, &mut |_| {}).unwrap();
    assert_eq!(Manifest::read(&dir.0).unwrap(), manifest);
    let mut refused = BTreeMap::new();
    let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
    let mut codes_by_type: BTreeMap<String, u64> = BTreeMap::new();
    let mut records = 0u64;
    let mut bad_amounts = 0u64;
    let mut ids = BTreeSet::new();
    let mut duplicate_ids = 0u64;
    for path in files_of(&dir.0) {
        let text = fs::read(&path).unwrap();
        for line in text.split(|&b| b == b'\n').filter(|line| !line.is_empty()) {
            records += 1;
            let event = match decode_event(line) {
                Decoded::Event(event) => event,
                Decoded::Refused(rejection) => {
                    *refused.entry(rejection.reason.as_str().to_string()).or_insert(0u64) += 1;
                    continue;
                }
            };
            if !ids.insert(event.id.clone()) {
                duplicate_ids += 1;
            }
            *by_type.entry(event.kind().as_str().to_string()).or_default() += 1;
            if event.code_count() > 0
                || matches!(
                    event.kind(),
                    Kind::Emission | Kind::Application | Kind::Dropout | Kind::Defect | Kind::Introduction
                )
            {
                *codes_by_type.entry(event.kind().as_str().to_string()).or_default() += event.code_count() as u64;
            }
            for code in event.body.codes() {
                assert!(is_code(code), "{code:?}");
            }
            match &event.body {
                Body::Order { gtin, quantity, .. } => {
                    assert!(is_gtin(gtin));
                    assert!(*quantity <= sim::ORDER_CODES_MAX);
                }
                Body::Emission { gtin, codes, .. } => {
                    assert!(is_gtin(gtin));
                    assert!(codes.iter().all(|code| code[2..16] == gtin[..]));
                }
                Body::Payment { amount, .. } | Body::Compensation { amount, .. } => match amount {
                    DecimalField::Parsed(value) if check_amount(*value).is_ok() => {}
                    _ => bad_amounts += 1,
                },
                Body::Refund {
                    amount: DecimalField::Parsed(value),
                } => assert!(check_amount(*value).is_ok()),
                _ => {}
            }
        }
    }
    assert_eq!(records, manifest.events);
    assert_eq!(
        refused.get("MALFORMED").copied().unwrap_or(0),
        manifest.injected["MALFORMED"]
    );
    assert_eq!(
        refused.get("UNKNOWN_TYPE").copied().unwrap_or(0),
        manifest.injected["UNKNOWN_TYPE"]
    );
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert_eq!(bad_amounts, manifest.injected["BAD_AMOUNT"]);
    assert_eq!(duplicate_ids, manifest.injected["DUPLICATE"]);
    let nonzero = |map: &BTreeMap<String, u64>| {
        map.iter()
            .filter(|(_, &v)| v > 0)
            .map(|(k, v)| (k.clone(), *v))
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(nonzero(&by_type), nonzero(&manifest.events_by_type));
    assert_eq!(nonzero(&codes_by_type), nonzero(&manifest.code_events_by_type));
    assert_eq!(codes_by_type.values().sum::<u64>(), manifest.code_events);
    for reason in INJECTED_REASONS {
        assert!(manifest.injected[reason.as_str()] > 0, "no {reason} injected");
    }
    assert!(manifest.late_written > 0 && manifest.late_beyond_lateness > 0);
    assert!(manifest.late_beyond_lateness < manifest.late_written);
}

#[test]
fn partitions_are_in_ts_order_except_the_late_payments_orders_and_duplicates() {
    // Reads each partition and counts records whose ts is below the partition's running
    // high-water mark: exactly the manifest's late_written plus its late_orders plus its
    // duplicates; each is a payment or compensation, an order more than the 4-hour SLA plus
    // the lateness behind (so past its own deadline when it takes effect), or an exact copy
    // of an earlier record. Also checks one partition per account and the tariff in
    // partition 0.
    let dir = TempDir::new("order");
    let manifest = generate(&small(Format::Binary, 0.2), &dir.0, &mut |_| {}).unwrap();
    let mut behind = 0u64;
    let mut beyond = 0u64;
    let mut late_orders = 0u64;
    let mut copies = 0u64;
    let mut partition_of_account = BTreeMap::new();
    let mut tariffs = Vec::new();
    for (partition, records) in read_all(&dir.0).into_iter().enumerate() {
        let mut high_water: Option<Ts> = None;
        let mut seen = BTreeMap::new();
        for record in records {
            let Decoded::Event(event) = record else { continue };
            if event.kind() == Kind::Tariff {
                tariffs.push(partition);
            } else {
                let first = *partition_of_account.entry(event.account.clone()).or_insert(partition);
                assert_eq!(first, partition, "account {} in two partitions", event.account);
            }
            if let Some(earlier) = seen.get(&event.id) {
                assert_eq!(earlier, &event, "a re-sent id must be an exact copy");
                copies += 1;
            } else if high_water.is_some_and(|hw| event.ts < hw) {
                let lag = high_water.unwrap().0 - event.ts.0;
                if event.kind() == Kind::Order {
                    assert!(lag > writer::SLA_MS + writer::LATENESS_MS, "{lag} ms: {event:?}");
                    late_orders += 1;
                } else {
                    assert!(matches!(event.kind(), Kind::Payment | Kind::Compensation), "{event:?}");
                    behind += 1;
                    if lag > writer::LATENESS_MS {
                        beyond += 1;
                    }
                }
            }
            if let Some(hw) = high_water {
                if event.ts > hw {
                    high_water = Some(event.ts);
                }
            } else {
                high_water = Some(event.ts);
            }
            seen.entry(event.id.clone()).or_insert(event);
        }
    }
    assert_eq!(behind, manifest.late_written);
    assert_eq!(beyond, manifest.late_beyond_lateness);
    assert_eq!(late_orders, manifest.late_orders);
    assert!(late_orders > 0, "no late order");
    assert!(manifest.sla_late >= late_orders);
    assert_eq!(copies, manifest.injected["DUPLICATE"]);
    assert_eq!(tariffs, vec![0]);
}

#[test]
fn the_dataset_has_the_shape_of_a_country() {
    // Generates a default-shaped dataset at half size and checks the shape: code
    // events near the target, factories' reports of 100–10,000 codes seconds apart at
    // 6,000+ packs a minute, several channels, amounts of at most 2 decimals, dropouts
    // near 0.5 %, defects, refusals on purpose, expiring codes, and the data running
    // past the close of the last month.
    let dir = TempDir::new("shape");
    let config = GeneratorConfig {
        codes: 500_000,
        ..GeneratorConfig::default()
    };
    let manifest = generate(&config, &dir.0, &mut |_| {}).unwrap();
    let off = manifest.code_events.abs_diff(config.codes) as f64 / config.codes as f64;
    assert!(
        off < 0.1,
        "{} code events for a target of {}",
        manifest.code_events,
        config.codes
    );
    assert_eq!(manifest.accounts_by_profile["factory"], 6);
    let mut channels = BTreeSet::new();
    let mut reports: BTreeMap<String, Vec<(Ts, usize)>> = BTreeMap::new();
    let mut factory_accounts = BTreeSet::new();
    for plan in accounts::population(config.seed, config.accounts, 1, config.partitions) {
        if plan.profile == Profile::Factory {
            factory_accounts.insert(plan.id);
        }
    }
    for records in read_all(&dir.0) {
        for record in records {
            let Decoded::Event(event) = record else {
                panic!("no bad input at rate 0")
            };
            match &event.body {
                Body::Payment { channel, amount } => {
                    channels.insert(channel.clone());
                    let DecimalField::Parsed(value) = amount else { panic!() };
                    assert!(value.scale() <= 2);
                }
                Body::Application { codes, .. } if factory_accounts.contains(&event.account) => {
                    reports
                        .entry(event.account.clone())
                        .or_default()
                        .push((event.ts, codes.len()));
                }
                _ => {}
            }
        }
    }
    assert!(channels.len() >= 5, "{channels:?}");
    let mut fast_gaps = 0;
    for list in reports.values() {
        for pair in list.windows(2) {
            assert!((1..=10_000).contains(&pair[1].1));
            let gap = pair[1].0 .0 - pair[0].0 .0;
            if gap <= 15_000 {
                fast_gaps += 1;
            }
        }
    }
    assert!(
        fast_gaps > 50,
        "factories report every few seconds while running ({fast_gaps})"
    );
    let applied = manifest.code_events_by_type["application"] as f64;
    let dropout = manifest.code_events_by_type["dropout"] as f64 / applied;
    assert!((0.002..0.01).contains(&dropout), "dropout rate {dropout}");
    assert!(manifest.code_events_by_type["defect"] > 0);
    assert!(manifest.intended.values().sum::<u64>() > 0, "{:?}", manifest.intended);
    assert!(manifest.codes_left_to_expire > 0);
    assert!(manifest.events_by_type["order_cancel"] > 0 && manifest.events_by_type["refund"] > 0);
    let last = Ts::parse_rfc3339(&manifest.last_ts).unwrap();
    assert!(last >= Period::new(2026, 3).close_instant(7));
}

#[test]
fn progress_is_reported_about_every_percent() {
    // Counts progress callbacks for a small dataset: about 100, increasing, ending with
    // the final counts.
    let dir = TempDir::new("progress");
    let mut seen = Vec::new();
    let manifest = generate(&small(Format::Json, 0.0), &dir.0, &mut |p| seen.push(*p)).unwrap();
    assert!((50..=130).contains(&seen.len()), "{} calls", seen.len());
    assert!(seen.windows(2).all(|w| w[0].code_events <= w[1].code_events));
    let last = seen.last().unwrap();
    assert_eq!(
        (last.code_events, last.events, last.bytes),
        (manifest.code_events, manifest.events, manifest.bytes)
    );
}

#[test]
fn bad_configs_are_refused_and_reruns_replace_the_dataset() {
    // Out-of-range flags give InvalidInput before anything is written; flags round-trip
    // through the manifest; regenerating replaces only an earlier dataset's files.
    let dir = TempDir::new("bad-config");
    for config in [
        GeneratorConfig {
            bad_rate: 0.6,
            ..GeneratorConfig::default()
        },
        GeneratorConfig {
            partitions: 0,
            ..GeneratorConfig::default()
        },
        GeneratorConfig {
            accounts: 0,
            ..GeneratorConfig::default()
        },
        GeneratorConfig {
            months: 0,
            ..GeneratorConfig::default()
        },
    ] {
        let error = generate(&config, &dir.0, &mut |_| {}).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }
    // A smaller dataset written over a larger one leaves no stale partition behind.
    let tiny = GeneratorConfig {
        codes: 5_000,
        accounts: 5,
        ..GeneratorConfig::default()
    };
    generate(
        &GeneratorConfig {
            partitions: 4,
            ..tiny.clone()
        },
        &dir.0,
        &mut |_| {},
    )
    .unwrap();
    fs::write(dir.0.join("notes.txt"), b"kept").unwrap();
    generate(&GeneratorConfig { partitions: 2, ..tiny }, &dir.0, &mut |_| {}).unwrap();
    let mut names: Vec<String> = fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["manifest.json", "notes.txt", "p000.jsonl", "p001.jsonl"]);
    let flags = GeneratorConfig::default().flags();
    assert_eq!(GeneratorConfig::from_flags(&flags).unwrap(), GeneratorConfig::default());
}

#[test]
#[ignore = "release-mode measurement: MARKLEDGER_GENERATE_CODES=10000000 cargo test --release -p markledger-datasets generator::tests::memory -- --ignored --nocapture"]
fn memory_stays_bounded_at_ten_million_code_events() {
    // Generates MARKLEDGER_GENERATE_CODES (default 10^7) code events and reads the peak
    // resident set (VmHWM) from /proc/self/status: it must stay under 1 GiB.
    let codes = std::env::var("MARKLEDGER_GENERATE_CODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let dir = TempDir::new("memory");
    let started = std::time::Instant::now();
    let config = GeneratorConfig {
        codes,
        bad_rate: 0.01,
        ..GeneratorConfig::default()
    };
    let manifest = generate(&config, &dir.0, &mut |_| {}).unwrap();
    let elapsed = started.elapsed();
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let peak_kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    println!(
        "{} code events, {} records, {} MB in {:.1} s; peak RSS {} MiB",
        manifest.code_events,
        manifest.events,
        manifest.bytes / 1_000_000,
        elapsed.as_secs_f64(),
        peak_kib / 1024
    );
    assert!(peak_kib < 1024 * 1024, "peak RSS {peak_kib} KiB");
}
