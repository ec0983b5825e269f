//! The dataflow engine against the reference engine on every golden scenario, on 1, 2 and
//! 4 workers: the multisets of output records must be equal (outputs interleave across
//! workers, so order is not compared here; tests/tests/equivalence.rs compares as
//! consumers do).

use markledger_tests::compare::load_dataset;
use markledger_tests::{default_config, multiset};
use std::path::Path;

#[test]
fn dataflow_equals_reference_on_golden_scenarios() {
    // Each scenario's input through both engines; equal multisets of outputs per worker count.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/scenarios");
    let mut scenarios: Vec<_> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).collect();
    scenarios.sort();
    let config = default_config();
    for scenario in scenarios.iter().filter(|p| p.join("input").is_dir()) {
        let partitions = load_dataset(&scenario.join("input"));
        let (_, reference) = markledger::reference::run(&config, partitions.clone(), Vec::new(), &mut |_, _| {});
        let expected = multiset(&reference);
        for workers in [1, 2, 4] {
            let actual = multiset(&markledger::runtime::run(&config, partitions.clone(), workers));
            if actual != expected {
                let missing: Vec<_> = expected.iter().filter(|l| !actual.contains(l)).take(5).collect();
                let extra: Vec<_> = actual.iter().filter(|l| !expected.contains(l)).take(5).collect();
                panic!(
                    "{} on {workers} workers:\nmissing {missing:#?}\nextra {extra:#?}",
                    scenario.display()
                );
            }
        }
    }
}

#[test]
fn dataflow_equals_reference_on_the_peer_fixtures() {
    // The fixtures the PostgreSQL peer is checked on (benches/postgres/fixtures): held codes
    // emitted in another order than their command's, repeated, re-emitted and malformed
    // codes, duplicates, refunds and defects.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../benches/postgres/fixtures");
    let config = default_config();
    for fixture in ["holds", "refusals"] {
        let partitions = load_dataset(&root.join(fixture));
        assert!(!partitions.is_empty(), "{fixture}: no partitions");
        let (_, reference) = markledger::reference::run(&config, partitions.clone(), Vec::new(), &mut |_, _| {});
        let expected = multiset(&reference);
        for workers in [1, 2, 4] {
            let actual = multiset(&markledger::runtime::run(&config, partitions.clone(), workers));
            let missing: Vec<_> = expected.iter().filter(|l| !actual.contains(l)).take(5).collect();
            let extra: Vec<_> = actual.iter().filter(|l| !expected.contains(l)).take(5).collect();
            assert!(
                actual == expected,
                "{fixture} on {workers} workers:\nmissing {missing:#?}\nextra {extra:#?}"
            );
        }
    }
}

#[test]
fn dataflow_equals_reference_on_a_generated_dataset_with_bad_input() {
    // 150k code events, 30 accounts, 5 % deliberately bad input, 4 partitions, 3 months:
    // equal multisets of outputs on 1, 2 and 4 workers.
    use markledger_datasets::generator::{generate, GeneratorConfig};
    let dir = std::env::temp_dir().join(format!("markledger-df-smoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = GeneratorConfig {
        codes: 150_000,
        accounts: 30,
        bad_rate: 0.05,
        ..GeneratorConfig::default()
    };
    generate(&config, &dir, &mut |_| {}).expect("generate");
    let partitions = load_dataset(&dir);
    let engine_config = default_config();
    let (_, reference) = markledger::reference::run(&engine_config, partitions.clone(), Vec::new(), &mut |_, _| {});
    let expected = multiset(&reference);
    for workers in [1, 2, 4] {
        let actual = multiset(&markledger::runtime::run(&engine_config, partitions.clone(), workers));
        if actual != expected {
            let missing: Vec<_> = expected.iter().filter(|l| !actual.contains(l)).take(5).collect();
            let extra: Vec<_> = actual.iter().filter(|l| !expected.contains(l)).take(5).collect();
            panic!(
                "{workers} workers: {} vs {} records\nmissing {missing:#?}\nextra {extra:#?}",
                actual.len(),
                expected.len()
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
