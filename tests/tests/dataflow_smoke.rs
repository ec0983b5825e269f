//! The dataflow engine against the reference engine on every golden scenario, on 1, 2 and
//! 4 workers: the multisets of output records must be equal (outputs interleave across
//! workers, so order is not compared here; tests/tests/equivalence.rs compares as
//! consumers do).

use markledger_connectors::codec::Decoded;
use markledger_connectors::file::{list_partitions, PartitionReader};
use markledger_tests::default_config;
use std::path::Path;

fn load(dir: &Path) -> Vec<Vec<Decoded>> {
    let paths = list_partitions(&[dir.to_path_buf()]).expect("partitions");
    paths
        .iter()
        .map(|p| PartitionReader::open(p).expect("open").collect())
        .collect()
}

fn multiset(outputs: &[markledger_operators::Output]) -> Vec<String> {
    let mut lines: Vec<String> = outputs.iter().map(|o| format!("{o:?}")).collect();
    lines.sort();
    lines
}

#[test]
fn dataflow_equals_reference_on_golden_scenarios() {
    // Each scenario's input through both engines; equal multisets of outputs per worker count.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/scenarios");
    let mut scenarios: Vec<_> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).collect();
    scenarios.sort();
    let config = default_config();
    for scenario in scenarios.iter().filter(|p| p.join("input").is_dir()) {
        let partitions = load(&scenario.join("input"));
        let (_, reference) = markledger::reference::run(&config, partitions.clone(), Vec::new(), &mut |_, _| {});
        let expected = multiset(&reference);
        for workers in [1, 2, 4] {
            let actual = multiset(&markledger::dataflow::run(&config, partitions.clone(), workers));
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
