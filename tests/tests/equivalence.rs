//! Engine equivalence harness (`markledger_tests::compare`), proven on the reference engine
//! against itself: changes that must not matter (partition order, input format, workers'
//! interleaving of outputs) leave the canonical outputs equal, and changes that must matter
//! (a lost payment, an intermediate revision or record order that differs while the final
//! values agree) are caught. Then the dataflow engine against the reference: every output
//! record, final values and histories, on 1, 2 and 4 workers and several batchings.

use markledger::config::Config;
use markledger_connectors::codec::Decoded;
use markledger_datasets::generator::{Format, GeneratorConfig};
use markledger_operators::output::{Deletion, Entry, Figures, Output};
use markledger_operators::{Body, Reason};
use markledger_tests::compare::{
    assert_equivalent, canonical, diff, diff_final_values, diff_histories, diff_strict, generate_dataset,
    orders_past_their_deadline, reference_outputs, Canonical,
};
use markledger_tests::default_config;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

/// The two datasets every test runs on.
#[derive(Clone, Copy, Debug)]
enum Shape {
    /// ~200,000 code events over 40 accounts: large reports, few events (~400).
    Narrow,
    /// 1,000 accounts (~380,000 code events, ~3,000 events): many small accounts, refunds
    /// refused, and events late beyond the lateness.
    Wide,
}

const SHAPES: [Shape; 2] = [Shape::Narrow, Shape::Wide];

/// Both shapes: 5 % bad input, 4 partitions, 3 months, seed 1, and a tenth of the accounts
/// ending their contract (DOMAIN.md §9: terminations refused then accepted, exports inside
/// and outside the window, deletions a month later).
fn dataset_config(shape: Shape, format: Format) -> GeneratorConfig {
    let accounts = match shape {
        Shape::Narrow => 40,
        Shape::Wide => 1_000,
    };
    GeneratorConfig {
        accounts,
        codes: 200_000,
        seed: 1,
        format,
        bad_rate: 0.05,
        partitions: 4,
        months: 3,
        terminate_rate: 0.1,
        ..GeneratorConfig::default()
    }
}

/// A JSON dataset, the reference engine's outputs on it and their canonical form, computed
/// once per shape for the whole file.
struct Base {
    config: Config,
    partitions: Vec<Vec<Decoded>>,
    outputs: Vec<Output>,
    canonical: Canonical,
}

fn base(shape: Shape) -> &'static Base {
    static NARROW: OnceLock<Base> = OnceLock::new();
    static WIDE: OnceLock<Base> = OnceLock::new();
    let cell = match shape {
        Shape::Narrow => &NARROW,
        Shape::Wide => &WIDE,
    };
    cell.get_or_init(|| {
        let config = default_config();
        let partitions = generate_dataset(&dataset_config(shape, Format::Json));
        let outputs = reference_outputs(&config, partitions.clone());
        let canonical = canonical(&outputs);
        assert!(
            canonical.anomalies.is_empty(),
            "{shape:?}: the reference engine's outputs are inconsistent: {:#?}",
            canonical.anomalies
        );
        Base {
            config,
            partitions,
            outputs,
            canonical,
        }
    })
}

#[test]
fn datasets_exercise_every_category() {
    // Checks that the datasets really exercise what the harness compares, so "equivalent"
    // below is not vacuous: counts per category of the reference run's canonical form, late
    // events, orders taking effect past their own SLA deadline, MALFORMED raw input, codes
    // with 3+ status changes, period records revised 3+ times, accounts with several
    // balance records, and that the canonical form saw every status, balance, period and
    // rejection record.
    for shape in SHAPES {
        let base = base(shape);
        let c = &base.canonical;
        let count = |f: fn(&Output) -> bool| base.outputs.iter().filter(|o| f(o)).count() as u64;
        eprintln!(
            "{shape:?}: {} outputs; {} accounts, {} codes, {} ledger entries, {} status records, \
             {} rejections, {} period keys",
            base.outputs.len(),
            c.balances.len(),
            c.codes.len(),
            c.ledger.values().map(Vec::len).sum::<usize>(),
            c.status_changes.values().sum::<u64>(),
            c.rejections.values().sum::<u64>(),
            c.periods.len()
        );
        assert_eq!(
            c.status_changes.values().sum::<u64>(),
            count(|o| matches!(o, Output::Status(_)))
        );
        assert_eq!(
            c.rejections.values().sum::<u64>(),
            count(|o| matches!(o, Output::Rejection(_)))
        );
        assert!(c.codes.len() >= 50_000, "{shape:?}: {} codes", c.codes.len());
        // Deleted accounts (DOMAIN.md §9) have no balance left: a few of the 40 narrow ones.
        assert!(c.balances.len() >= 35, "{shape:?}: {} balances", c.balances.len());
        assert!(
            c.ledger.len() >= 30,
            "{shape:?}: ledgers of {} accounts",
            c.ledger.len()
        );
        assert!(c.periods.len() >= 500, "{shape:?}: {} period keys", c.periods.len());
        let reasons: BTreeSet<Reason> = c.rejections.keys().map(|k| k.reason).collect();
        assert!(reasons.len() >= 8, "{shape:?}: reasons {reasons:?}");
        assert!(
            c.rejections.keys().any(|k| k.raw.is_some()),
            "{shape:?}: no raw input kept"
        );
        let multi_change = c.codes.values().filter(|fate| fate.changes >= 3).count();
        assert!(multi_change >= 1_000, "{shape:?}: {multi_change} codes with 3+ changes");
        // Histories: every record is in one, and there is history to compare.
        let in_histories = |lengths: Vec<usize>| lengths.into_iter().sum::<usize>() as u64;
        assert_eq!(
            in_histories(c.status_history.values().map(Vec::len).collect()),
            count(|o| matches!(o, Output::Status(_)))
        );
        // A balance key's deletion (DOMAIN.md §9) takes its place in the key's history.
        assert_eq!(
            in_histories(c.balance_history.values().map(Vec::len).collect()),
            count(|o| matches!(o, Output::Balance(_) | Output::Deleted(Deletion::Balance { .. })))
        );
        assert_eq!(
            in_histories(c.period_history.values().map(Vec::len).collect()),
            count(|o| matches!(o, Output::Period(_)))
        );
        let revised = c
            .period_history
            .values()
            .filter(|revisions| revisions.len() >= 3)
            .count();
        assert!(revised >= 100, "{shape:?}: {revised} period records revised 3+ times");
        let rebalanced = c.balance_history.values().filter(|rows| rows.len() >= 3).count();
        assert!(
            rebalanced >= 30,
            "{shape:?}: {rebalanced} accounts with 3+ balance records"
        );
        let late_orders = orders_past_their_deadline(&base.config, &base.partitions);
        eprintln!("{shape:?}: {late_orders} orders take effect past their 4-hour deadline");
        assert!(late_orders >= 1, "{shape:?}: no order takes effect past its deadline");
        let sla_late: u64 = c
            .periods
            .values()
            .map(|state| match state.figures {
                Figures::Sla { late, .. } => late,
                _ => 0,
            })
            .sum();
        assert!(
            sla_late >= late_orders,
            "{shape:?}: SLA late {sla_late} < {late_orders}"
        );
    }
    // DOMAIN.md §9 is exercised: deletions of balance and period keys, export deliveries,
    // and §9's refusals.
    for shape in SHAPES {
        let c = &base(shape).canonical;
        let deleted_balances = c.deletions.keys().filter(|k| k.starts_with("balances/")).count();
        let deleted_periods = c.deletions.keys().filter(|k| k.starts_with("periods/")).count();
        eprintln!(
            "{shape:?}: {deleted_balances} balance and {deleted_periods} period keys deleted, {} accounts exported",
            c.exports.len()
        );
        assert!(deleted_balances >= 1, "{shape:?}: no account deleted");
        assert!(deleted_periods >= 5, "{shape:?}: {deleted_periods} period keys deleted");
        assert!(!c.exports.is_empty(), "{shape:?}: no export delivered");
    }
    let wide_reasons: BTreeSet<Reason> = base(Shape::Wide)
        .canonical
        .rejections
        .keys()
        .map(|k| k.reason)
        .collect();
    for reason in [Reason::AccountTerminated, Reason::TerminationPendingOrder] {
        assert!(wide_reasons.contains(&reason), "wide: no {reason:?}");
    }
    let wide = &base(Shape::Wide).canonical;
    assert!(
        wide.ledger.len() >= 500,
        "wide: ledgers of {} accounts",
        wide.ledger.len()
    );
    assert!(
        wide.ledger.values().flatten().any(|row| row.late),
        "wide: no late ledger entry"
    );
    assert!(
        wide.status_changes.keys().any(|k| k.late),
        "wide: no late status change"
    );
    assert!(wide.rejections.keys().any(|k| k.reason == Reason::RefundExceedsBalance));
}

#[test]
fn partition_order_does_not_matter() {
    // Checks that partition order does not matter (lateness depends only on an event's own
    // partition): the same partitions given to the reference engine in reverse order give
    // canonical outputs equal to the original run's, rejection details included.
    for shape in SHAPES {
        let base = base(shape);
        let mut reversed = base.partitions.clone();
        reversed.reverse();
        let other = canonical(&reference_outputs(&base.config, reversed));
        let name = format!("{shape:?} reversed order");
        assert_equivalent(&base.canonical, &other, ("original order", name.as_str()));
        assert_eq!(
            diff_strict(&base.canonical, &other, "original order", &name),
            Vec::<String>::new()
        );
    }
}

#[test]
fn json_and_binary_inputs_are_equivalent() {
    // Checks that the input format does not matter: the same seed and flags generated as
    // binary instead of JSON lines and run through the reference engine give canonical
    // outputs equal to the JSON run's, rejection details (and MALFORMED raw input) included.
    for shape in SHAPES {
        let base = base(shape);
        let binary = generate_dataset(&dataset_config(shape, Format::Binary));
        assert_eq!(binary.len(), base.partitions.len());
        let binary = canonical(&reference_outputs(&base.config, binary));
        let (json_name, binary_name) = (format!("{shape:?} json"), format!("{shape:?} binary"));
        assert_equivalent(&base.canonical, &binary, (json_name.as_str(), binary_name.as_str()));
        assert_eq!(
            diff_strict(&base.canonical, &binary, &json_name, &binary_name),
            Vec::<String>::new()
        );
    }
}

/// Deals `outputs` to simulated workers (`worker` picks one per record) and merges them back
/// in a scrambled order that keeps each worker's own order, as a multi-worker engine's sink
/// receives them.
fn interleave(outputs: &[Output], workers: usize, worker: impl Fn(&Output) -> usize) -> Vec<Output> {
    let mut streams: Vec<Vec<&Output>> = vec![Vec::new(); workers];
    for output in outputs {
        streams[worker(output)].push(output);
    }
    // A fixed linear congruential sequence picks the next worker (the next non-empty one
    // when it has nothing left).
    let mut merged = Vec::with_capacity(outputs.len());
    let mut positions = vec![0usize; workers];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    while merged.len() < outputs.len() {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let mut worker = (state >> 33) as usize % workers;
        while positions[worker] == streams[worker].len() {
            worker = (worker + 1) % workers;
        }
        merged.push(streams[worker][positions[worker]].clone());
        positions[worker] += 1;
    }
    merged
}

#[test]
fn worker_interleaving_does_not_matter() {
    // Checks that the canonical form ignores how a multi-worker engine interleaves its
    // workers' outputs: the reference outputs are dealt to 4 simulated workers by their
    // Kafka keys (status, ledger and balances by account, periods by key, rejections by
    // event id) and merged back in a scrambled order that keeps each worker's own order; the
    // canonical forms, histories included, must be equal. Dealt instead by cause event (so
    // one code's changes land on different workers), the final values must still be equal,
    // and the status histories must see the accounts' records out of order.
    const WORKERS: usize = 4;
    let owner = |text: &str| {
        let hash = text
            .bytes()
            .fold(17u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
        (hash % WORKERS as u64) as usize
    };
    let key_worker = |output: &Output| match output {
        Output::Balance(b) => owner(&b.account),
        Output::Ledger(l) => owner(&l.account),
        Output::Period(p) => owner(&p.key.render()),
        Output::Rejection(r) => owner(r.event.as_deref().unwrap_or("")),
        Output::Status(s) => owner(&s.account),
        Output::Deleted(markledger_operators::output::Deletion::Balance { account, .. }) => owner(account),
        Output::Deleted(markledger_operators::output::Deletion::Period { key, .. }) => owner(&key.render()),
        Output::Export(e) => owner(&e.account),
    };
    for shape in SHAPES {
        let base = base(shape);
        let by_key = interleave(&base.outputs, WORKERS, key_worker);
        assert_ne!(by_key, base.outputs, "{shape:?}: the interleaving changed nothing");
        let interleaved = canonical(&by_key);
        assert!(interleaved.anomalies.is_empty(), "{:#?}", interleaved.anomalies);
        let name = format!("{shape:?} interleaved");
        assert_equivalent(&base.canonical, &interleaved, ("reference", name.as_str()));

        let by_event = interleave(&base.outputs, WORKERS, |output| match output {
            Output::Status(s) => owner(s.event.as_deref().unwrap_or(&s.account)),
            other => key_worker(other),
        });
        let scrambled = canonical(&by_event);
        assert!(scrambled.anomalies.is_empty(), "{:#?}", scrambled.anomalies);
        let name = format!("{shape:?} status by cause event");
        assert_eq!(
            diff_final_values(&base.canonical, &scrambled, "reference", &name),
            Vec::<String>::new()
        );
        let histories = diff_histories(&base.canonical, &scrambled, "reference", &name);
        assert!(!histories.is_empty(), "{shape:?}: no account's status records moved");
        assert!(
            histories.iter().all(|line| line.starts_with("status history: ")),
            "{histories:#?}"
        );
    }
}

#[test]
fn a_different_history_with_the_same_final_values_is_detected() {
    // Checks that the histories see what final values cannot: in the reference outputs, an
    // intermediate revision of a period record is given the figures of the next one (the
    // shape of a revision too many), an intermediate balance record gets another balance,
    // and two status records of one account are swapped. Each leaves every final value as
    // it was (diff_final_values is empty) and is named by diff_histories.
    let base = base(Shape::Wide);
    let outputs = &base.outputs;
    // A period key whose first two revisions differ and that has a third.
    let key = base
        .canonical
        .period_history
        .iter()
        .find(|(_, revisions)| revisions.len() >= 3 && revisions[0].figures != revisions[1].figures)
        .map(|(key, _)| key.clone())
        .expect("a period record revised at least three times");
    let next_figures: Figures = base.canonical.period_history[&key][1].figures.clone();
    let mut changed_period = outputs.clone();
    for output in &mut changed_period {
        if let Output::Period(p) = output {
            if p.key.render() == key && p.rev == 1 {
                p.figures = next_figures.clone();
            }
        }
    }
    // An account with at least two balance records: its first gets one tiyn more.
    let account = base
        .canonical
        .balance_history
        .iter()
        .find(|(_, rows)| rows.len() >= 2)
        .map(|(account, _)| account.clone())
        .expect("an account with two balance records");
    let mut changed_balance = outputs.clone();
    if let Some(Output::Balance(b)) = changed_balance
        .iter_mut()
        .find(|o| matches!(o, Output::Balance(b) if b.account == account))
    {
        b.balance += markledger_tests::dec("0.01");
    }
    // Two status records of one account, of different cause events, swapped.
    let first = outputs
        .iter()
        .position(|o| matches!(o, Output::Status(s) if s.event.is_some()))
        .expect("a status record");
    let Output::Status(a) = &outputs[first] else {
        unreachable!()
    };
    let second = (first + 1..outputs.len())
        .find(|&i| matches!(&outputs[i], Output::Status(s) if s.account == a.account && s.event != a.event))
        .expect("a second status record of the account");
    let mut swapped = outputs.clone();
    swapped.swap(first, second);
    for (what, changed, category) in [
        ("an intermediate period revision", changed_period, "period history: "),
        ("an intermediate balance record", changed_balance, "balance history: "),
        ("two status records", swapped, "status history: "),
    ] {
        let other = canonical(&changed);
        assert_eq!(
            diff_final_values(&base.canonical, &other, "reference", what),
            Vec::<String>::new(),
            "{what}: a final value moved"
        );
        let lines = diff(&base.canonical, &other, "reference", what);
        assert!(
            !lines.is_empty() && lines.iter().all(|line| line.starts_with(category)),
            "{what}: {lines:#?}"
        );
    }
}

#[test]
fn dropping_a_payment_is_detected() {
    // Checks that the harness can fail: one accepted payment (a payment ledger entry whose id
    // occurs once in the input) is removed from its partition and the reference engine rerun;
    // the diff must be non-empty and name the balances or the ledger, and the payment's id.
    for shape in SHAPES {
        let base = base(shape);
        let mut id_counts: BTreeMap<&str, u64> = BTreeMap::new();
        for record in base.partitions.iter().flatten() {
            if let Decoded::Event(event) = record {
                *id_counts.entry(event.id.as_str()).or_default() += 1;
            }
        }
        let victim = base
            .outputs
            .iter()
            .find_map(|output| match output {
                Output::Ledger(l) if l.entry == Entry::Payment && id_counts.get(l.event.as_str()) == Some(&1) => {
                    Some(l.event.clone())
                }
                _ => None,
            })
            .expect("an accepted payment with a unique id");
        let mut partitions = base.partitions.clone();
        let mut removed = 0;
        for partition in &mut partitions {
            partition.retain(|record| {
                let hit =
                    matches!(record, Decoded::Event(e) if e.id == victim && matches!(e.body, Body::Payment { .. }));
                removed += usize::from(hit);
                !hit
            });
        }
        assert_eq!(removed, 1, "{shape:?}: payment {victim}");

        let without = canonical(&reference_outputs(&base.config, partitions));
        let lines = diff(&base.canonical, &without, "full", "without payment");
        assert!(!lines.is_empty(), "{shape:?}: dropping payment {victim} went unnoticed");
        assert!(
            lines
                .iter()
                .any(|line| line.starts_with("balances: ") || line.starts_with("ledger: ")),
            "{lines:#?}"
        );
        assert!(
            lines.iter().any(|line| line.contains(&victim)),
            "{shape:?}: the diff does not name payment {victim}: {lines:#?}"
        );
    }
}

/// `config` with every final code sent to disk at once (a memtable of one record).
fn spilling(config: &markledger::config::Config) -> markledger::config::Config {
    let mut config = config.clone();
    config.final_codes.spill_all = true;
    config
}

#[test]
fn dataflow_equals_reference_on_1_2_4_workers() {
    // Checks that the dataflow engine on 1, 2 and 4 workers produces outputs equivalent to the
    // reference engine's on both datasets (terminations, exports and deletions included),
    // record for record: canonical forms compared
    // strictly, final values and histories (every balance and status record of each account
    // in order, every revision of each period record; rejection details included: both
    // engines word them the same), no anomalies within a run. Every final code goes to disk
    // at once (issue 17: the national index's lookups of final codes read run files).
    for shape in SHAPES {
        let base = base(shape);
        let config = spilling(&base.config);
        for w in [1, 2, 4] {
            let outputs = markledger::runtime::run(&config, base.partitions.clone(), w);
            let dataflow = canonical(&outputs);
            let name = format!("{shape:?} dataflow on {w} workers");
            assert!(dataflow.anomalies.is_empty(), "{name}: {:#?}", dataflow.anomalies);
            let differences = diff_strict(&base.canonical, &dataflow, "reference", &name);
            assert!(differences.is_empty(), "{name}:\n{}", differences.join("\n"));
        }
    }
}

#[test]
fn dataflow_batching_does_not_matter() {
    // Checks that how sources batch their input cannot change an output: one event per
    // activation in lock-step with the dataflow, and small odd batches with a few events in
    // flight, on 2 workers, strictly equivalent to the reference on the wide dataset,
    // histories included (an instant split over batches must still give one revision).
    let base = base(Shape::Wide);
    let config = spilling(&base.config);
    for (batch, in_flight) in [(1, 1), (7, 3), (100_000, 100_000)] {
        let batching = markledger::source::Batching { batch, in_flight };
        let outputs = markledger::runtime::run_batched(&config, base.partitions.clone(), 2, batching);
        let name = format!("dataflow, batch {batch}, {in_flight} in flight");
        let differences = diff_strict(&base.canonical, &canonical(&outputs), "reference", &name);
        assert!(differences.is_empty(), "{name}:\n{}", differences.join("\n"));
    }
}

#[test]
#[ignore = "large: run with `cargo test --release -p markledger-tests --test equivalence -- --ignored`"]
fn large_dataflow_equals_reference() {
    // Checks the dataflow against the reference at scale: MARKLEDGER_EQUIVALENCE_CODES code
    // events (default 10^7), 200 accounts, 5 % bad input, 8 partitions, 3 months; canonical
    // forms, histories included, compared strictly on 1, 2 and 4 workers.
    let codes = std::env::var("MARKLEDGER_EQUIVALENCE_CODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let generator = GeneratorConfig {
        codes,
        bad_rate: 0.05,
        partitions: 8,
        terminate_rate: 0.1,
        ..GeneratorConfig::default()
    };
    let partitions = markledger_tests::compare::generate_dataset(&generator);
    let config = default_config();
    let reference = canonical(&markledger_tests::compare::reference_outputs(
        &config,
        partitions.clone(),
    ));
    for workers in [1, 2, 4] {
        let dataflow = canonical(&markledger::runtime::run(&config, partitions.clone(), workers));
        let name = format!("dataflow on {workers} workers, {codes} code events");
        assert!(dataflow.anomalies.is_empty(), "{name}: {:#?}", dataflow.anomalies);
        let differences = diff_strict(&reference, &dataflow, "reference", &name);
        assert!(differences.is_empty(), "{name}:\n{}", differences.join("\n"));
    }
}
