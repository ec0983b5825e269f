//! A file run's outputs with bounded memory (issue 17): each worker spills sorted runs to
//! disk and the run merges them. Checked against the in-memory definition of the canonical
//! order (`summary::canonical_order` over every output held at once), byte for byte, with
//! runs forced tiny so spilling and merging happen on small data, on 1, 2 and 4 workers,
//! on data with bad input and late events; the generator source (`--input gen:…`) against
//! the files it would generate; and a spill directory that cannot be written.

use markledger::runner::{run_files, Engine, FileRun};
use markledger::runtime;
use markledger::summary::canonical_order;
use markledger_connectors::codec::json::{output_file, render_output_into};
use markledger_connectors::file::OutputFile;
use markledger_datasets::generator::{generate, GeneratorConfig};
use markledger_tests::compare::load_dataset;
use markledger_tests::{default_config, markledger_binary};
use std::fs;
use std::path::{Path, PathBuf};

/// 5 % bad input (malformed lines, duplicates, unknown codes, late payments within and
/// beyond the lateness), 4 partitions, many accounts so every output interleaves.
fn dataset() -> GeneratorConfig {
    GeneratorConfig {
        accounts: 300,
        codes: 60_000,
        seed: 11,
        bad_rate: 0.05,
        partitions: 4,
        months: 2,
        ..GeneratorConfig::default()
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("markledger-file-outputs-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// The five files' bytes, in `OutputFile::ALL` order.
fn read_outputs(dir: &Path) -> Vec<Vec<u8>> {
    OutputFile::ALL
        .iter()
        .map(|file| fs::read(dir.join(file.file_name())).unwrap_or_else(|e| panic!("{file:?}: {e}")))
        .collect()
}

/// The in-memory path: every output of every worker held, sorted, rendered.
fn in_memory_outputs(partitions: Vec<Vec<markledger_connectors::codec::Decoded>>, workers: usize) -> Vec<Vec<u8>> {
    let mut outputs = runtime::run(&default_config(), partitions, workers);
    canonical_order(&mut outputs);
    let mut files = vec![Vec::new(); OutputFile::ALL.len()];
    for output in &outputs {
        let file = &mut files[output_file(output).index()];
        render_output_into(output, file);
        file.push(b'\n');
    }
    files
}

fn assert_same(actual: &[Vec<u8>], expected: &[Vec<u8>], what: &str) {
    for (index, file) in OutputFile::ALL.iter().enumerate() {
        assert!(
            actual[index] == expected[index],
            "{what}: {} differs ({} bytes vs {} expected)",
            file.file_name(),
            actual[index].len(),
            expected[index].len()
        );
    }
}

#[test]
fn spilled_runs_merge_into_the_in_memory_order() {
    // Runs the dataset through run_files with 4 KiB runs (hundreds of run files per
    // worker) and with the default budget, on 1, 2 and 4 workers, and compares every file
    // with the in-memory sort of all outputs; the spill directory is gone afterwards.
    let dir = scratch("spill");
    let input = dir.join("input");
    generate(&dataset(), &input, &mut |_| {}).unwrap();
    let expected = in_memory_outputs(load_dataset(&input), 2);
    let total: usize = expected.iter().map(Vec::len).sum();
    let run_bytes = 4096;
    assert!(
        total > 50 * run_bytes,
        "too little output ({total} bytes) to force spilling"
    );
    // Every file but exports.jsonl (this dataset has no terminations, so no exports; the
    // equivalence tests cover §9's outputs) has records.
    assert!(
        OutputFile::ALL
            .iter()
            .zip(&expected)
            .all(|(name, file)| *name == OutputFile::Exports || !file.is_empty()),
        "every output file has records"
    );
    for workers in [1, 2, 4] {
        for (budget, name) in [
            (run_bytes, "tiny runs"),
            (markledger_connectors::file::OUTPUT_RUN_BYTES, "default"),
        ] {
            let out = dir.join(format!("out-{workers}-{budget}"));
            let spill_parent = dir.join(format!("spill-{workers}-{budget}"));
            fs::create_dir_all(&spill_parent).unwrap();
            let inputs = [input.clone()];
            let run = FileRun {
                spill_dir: Some(&spill_parent),
                output_run_bytes: budget,
                ..FileRun::new(&inputs, &out, Engine::Dataflow { workers })
            };
            let report = run_files(&default_config(), &run).expect("run succeeds");
            assert_same(&read_outputs(&out), &expected, &format!("{name}, {workers} workers"));
            assert_eq!(
                report.written.total(),
                expected
                    .iter()
                    .map(|f| f.iter().filter(|&&b| b == b'\n').count() as u64)
                    .sum::<u64>()
            );
            assert_eq!(
                fs::read_dir(&spill_parent).unwrap().count(),
                0,
                "the spill directory is removed after the run"
            );
        }
    }
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn the_generator_source_equals_its_files() {
    // `--input gen:…` against a run over the files `generate` writes for the same flags:
    // every output file and the summary's counts, on 1 and 3 workers (3 workers own 4
    // partitions unevenly: one worker reads two pipes).
    let dir = scratch("generator");
    let input = dir.join("input");
    let config = dataset();
    generate(&config, &input, &mut |_| {}).unwrap();
    let spec = PathBuf::from("gen:codes=60000,seed=11,bad-rate=0.05,partitions=4,months=2,accounts=300");
    for workers in [1, 3] {
        let files_out = dir.join(format!("files-{workers}"));
        let generated_out = dir.join(format!("generated-{workers}"));
        let inputs = [input.clone()];
        let from_files = run_files(
            &default_config(),
            &FileRun::new(&inputs, &files_out, Engine::Dataflow { workers }),
        )
        .expect("file run");
        let specs = [spec.clone()];
        let from_generator = run_files(
            &default_config(),
            &FileRun::new(&specs, &generated_out, Engine::Dataflow { workers }),
        )
        .expect("generator run");
        assert_same(
            &read_outputs(&generated_out),
            &read_outputs(&files_out),
            &format!("generator source, {workers} workers"),
        );
        let (a, b) = (&from_generator.summary, &from_files.summary);
        assert_eq!(
            (a.records, a.events, a.code_events, a.late_events),
            (b.records, b.events, b.code_events, b.late_events)
        );
        assert!(
            a.late_events > 0 && !a.rejections.is_empty(),
            "the data has late events and rejections"
        );
        assert_eq!(from_generator.partitions.len(), 4);
        assert_eq!(
            from_generator.bytes, from_files.bytes,
            "the pipes carry the files' bytes"
        );
    }
    let reference = run_files(
        &default_config(),
        &FileRun::new(&[spec], &dir.join("reference"), Engine::Reference),
    );
    assert!(reference.is_err(), "the reference engine refuses the generator source");
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_spill_directory_that_cannot_be_written_fails_the_run_by_name() {
    // The spill directory's parent is a regular file, so the first spill fails: the run
    // returns an error naming the directory and writes no output files; the binary exits
    // non-zero without a summary.
    let dir = scratch("unwritable");
    let input = dir.join("input");
    generate(
        &GeneratorConfig {
            codes: 20_000,
            ..dataset()
        },
        &input,
        &mut |_| {},
    )
    .unwrap();
    let blocker = dir.join("not-a-directory");
    fs::write(&blocker, b"a file").unwrap();
    let out = dir.join("out");
    let inputs = [input.clone()];
    let run = FileRun {
        spill_dir: Some(&blocker),
        output_run_bytes: 1024,
        ..FileRun::new(&inputs, &out, Engine::Dataflow { workers: 2 })
    };
    let error = format!("{:#}", run_files(&default_config(), &run).expect_err("the spill fails"));
    assert!(error.contains("spilling outputs"), "{error}");
    assert!(error.contains(&blocker.display().to_string()), "{error}");
    assert!(!out.join("status.jsonl").exists(), "no outputs after a failed spill");

    let output = std::process::Command::new(markledger_binary())
        .args(["run", "--quiet", "--output-run-bytes", "1024", "--input"])
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .arg("--spill-dir")
        .arg(&blocker)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "exit status {:?}", output.status);
    assert!(stderr.contains(&blocker.display().to_string()), "{stderr}");
    assert!(!stdout.contains("summary"), "no summary after a failure: {stdout}");
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_full_disk_fails_the_run_by_name() {
    // A 1 MiB tmpfs as the spill directory, then as the output directory (spilling to the
    // ordinary disk) (mounting needs
    // root; without it the test says so and checks nothing more, the unwritable directory
    // above being the injected failure): both runs exit 1 naming the file, "No space left
    // on device", and print no summary.
    let dir = scratch("full");
    let input = dir.join("input");
    generate(
        &GeneratorConfig {
            codes: 60_000,
            ..dataset()
        },
        &input,
        &mut |_| {},
    )
    .unwrap();
    let small = dir.join("small");
    fs::create_dir_all(&small).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&small)
        .output()
        .is_ok_and(|output| output.status.success());
    if !mounted {
        eprintln!("a_full_disk_fails_the_run_by_name: cannot mount a tmpfs here (not root?); skipped");
        let _ = fs::remove_dir_all(&dir);
        return;
    }
    let run = |out: &Path, spill: &Path| {
        let mut command = std::process::Command::new(markledger_binary());
        command
            .args(["run", "--quiet", "--output-run-bytes", "200000", "--input"])
            .arg(&input)
            .arg("--out")
            .arg(out);
        command.arg("--spill-dir").arg(spill);
        command.output().unwrap()
    };
    let spilled = run(&dir.join("out"), &small);
    let written = run(&small.join("out"), &dir);
    let _ = std::process::Command::new("umount").arg(&small).status();
    for (output, names) in [(&spilled, "markledger-spill-"), (&written, "status.jsonl")] {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("No space left on device") && stderr.contains(names),
            "{stderr}"
        );
        assert!(!String::from_utf8_lossy(&output.stdout).contains("summary"));
    }
    assert!(
        !dir.join("out").join("status.jsonl").exists(),
        "no outputs after a failed spill"
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_generator_run_stopped_by_the_calendar_ends_with_its_message() {
    // The run stops reading at the calendar's end (2028) while the generator still has
    // four months to write: the generator, waiting for a full pipe nobody reads any more,
    // must give up, and the run end with the calendar's message (it used to wait forever).
    let dir = scratch("calendar-stop");
    let mut child = std::process::Command::new(markledger_binary())
        .args([
            "run",
            "--quiet",
            "--workers",
            "1",
            "--input",
            "gen:codes=400000,start=2027-09,months=6",
            "--out",
        ])
        .arg(dir.join("out"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > std::time::Duration::from_secs(300) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the run did not end within 300 s: it hangs after the calendar stop");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("2028") && stderr.contains("does not cover"),
        "the calendar's message, not the generator's broken pipe: {stderr}"
    );
    assert!(
        !stderr.contains("broken pipe") && !stderr.contains("stopped reading"),
        "{stderr}"
    );
    let _ = fs::remove_dir_all(&dir);
}
