//! Golden scenarios: every folder of `datasets/scenarios/` is run through the same code
//! path as `markledger run` and its six output files are compared byte for byte with the
//! reviewed ones in `expected/`. `UPDATE_GOLDEN=1` rewrites them (review the diff).

use markledger::runner::{run_files, Engine, FileRun};
use markledger_tests::default_config;
use std::fs;
use std::path::{Path, PathBuf};

const OUTPUT_FILES: [&str; 6] = [
    "status.jsonl",
    "ledger.jsonl",
    "balances.jsonl",
    "rejections.jsonl",
    "periods.jsonl",
    "exports.jsonl",
];

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/scenarios")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("markledger-golden-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    dir
}

fn scenarios() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(scenarios_dir())
        .expect("datasets/scenarios exists")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.join("input").is_dir())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn every_golden_scenario_reproduces_its_expected_outputs() {
    // Runs each scenario's input through runner::run_files (what `markledger run` calls)
    // and compares all six files with expected/, line by line.
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let all = scenarios();
    assert!(all.len() >= 7, "the seven scenarios of issue 2 are missing: {all:?}");
    let mut failures = Vec::new();
    for scenario in &all {
        let name = scenario.file_name().unwrap().to_string_lossy().to_string();
        let out = scratch(&name);
        let inputs = [scenario.join("input")];
        let run = FileRun::new(&inputs, &out, Engine::Reference);
        run_files(&default_config(), &run).expect("run succeeds");
        let expected_dir = scenario.join("expected");
        for file in OUTPUT_FILES {
            let actual = fs::read_to_string(out.join(file)).expect("output written");
            let expected_path = expected_dir.join(file);
            if update {
                fs::create_dir_all(&expected_dir).unwrap();
                fs::write(&expected_path, &actual).unwrap();
                continue;
            }
            let expected = fs::read_to_string(&expected_path).unwrap_or_else(|_| {
                panic!(
                    "{} missing: run with UPDATE_GOLDEN=1 and review",
                    expected_path.display()
                )
            });
            if actual != expected {
                let diff = actual
                    .lines()
                    .zip(expected.lines())
                    .position(|(a, e)| a != e)
                    .unwrap_or(actual.lines().count().min(expected.lines().count()));
                failures.push(format!(
                    "{name}/{file}: first difference at line {}\n  actual:   {}\n  expected: {}",
                    diff + 1,
                    actual.lines().nth(diff).unwrap_or("<end>"),
                    expected.lines().nth(diff).unwrap_or("<end>")
                ));
            }
        }
        let _ = fs::remove_dir_all(&out);
    }
    assert!(failures.is_empty(), "golden mismatches:\n{}", failures.join("\n"));
}

#[test]
fn the_termination_scenario_on_the_dataflow_has_the_expected_lines() {
    // DOMAIN.md §9's golden scenario through `markledger run --engine dataflow` on 1, 2 and
    // 4 workers: each of the six files holds exactly the reviewed expected/ lines (the
    // reference engine writes in event order, the dataflow in its canonical order, so the
    // lines are compared sorted), and the files are byte-identical across worker counts.
    let scenario = scenarios_dir().join("termination_export_deletion");
    let mut first: Option<Vec<String>> = None;
    for workers in [1, 2, 4] {
        let out = scratch(&format!("termination-dataflow-{workers}"));
        let inputs = [scenario.join("input")];
        let run = FileRun::new(&inputs, &out, Engine::Dataflow { workers });
        run_files(&default_config(), &run).expect("run succeeds");
        let mut files = Vec::new();
        for file in OUTPUT_FILES {
            let actual = fs::read_to_string(out.join(file)).expect("output written");
            let expected = fs::read_to_string(scenario.join("expected").join(file)).expect("expected file");
            let sorted = |text: &str| {
                let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
                lines.sort();
                lines
            };
            assert_eq!(sorted(&actual), sorted(&expected), "{file} on {workers} workers");
            files.push(actual);
        }
        match &first {
            None => first = Some(files),
            Some(first) => assert!(*first == files, "files on {workers} workers differ from 1 worker's"),
        }
        let _ = fs::remove_dir_all(&out);
    }
}
