//! Issue 17: final codes on disk, seen from outside. A run spills every final code to its
//! directory and removes it at the end, with a memory line in its summary; a disk that
//! fills up (a real size-limited tmpfs where this process may mount one, and a write-failure
//! injection in debug builds) ends the run with a clear error naming the directory, never a
//! summary or an output file that would say the run is done.

use markledger::runtime::{in_memory, run_inputs, RunSettings};
use markledger_datasets::generator::{generate, Format, GeneratorConfig};
use markledger_tests::{default_config, markledger_binary};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("markledger-final-codes-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A small dataset with every kind of final code (introduced, expired, rejected, paid).
fn dataset(dir: &Path) {
    let config = GeneratorConfig {
        accounts: 20,
        codes: 20_000,
        seed: 17,
        format: Format::Json,
        bad_rate: 0.02,
        partitions: 2,
        months: 2,
        ..GeneratorConfig::default()
    };
    generate(&config, dir, &mut |_| {}).expect("generate");
}

/// `markledger run` with `args` and `env`: (exit code, stdout, stderr).
fn run_binary(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut command = Command::new(markledger_binary());
    command.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("markledger runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|listing| {
            listing
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn spilled_final_codes_are_on_disk_during_the_run_and_gone_after_it() {
    let work = temp("spill");
    let data = work.join("data");
    dataset(&data);
    let spill = work.join("spill");
    std::fs::create_dir_all(&spill).expect("spill dir");
    let mut config = default_config();
    config.final_codes.spill_dir = Some(spill.clone());
    config.final_codes.spill_all = true;
    let partitions = markledger::runner::read_partitions(
        std::slice::from_ref(&data),
        &mut markledger::runner::ProgressLine::new(std::time::Duration::from_secs(60), true),
    )
    .expect("read")
    .1;
    let run = run_inputs(
        RunSettings::files(&config, 2),
        in_memory(partitions),
        |_| Vec::new(),
        &mut |_| {},
    )
    .unwrap_or_else(|failure| panic!("{failure}"));
    let memory = run.final_codes.expect("the index reported its state");
    assert!(memory.final_codes > 1_000, "{memory:?}");
    // 28 bytes a record in 4 KiB blocks, plus a dictionary and trailer per run file.
    assert!(memory.disk_bytes >= memory.final_codes * 28, "{memory:?}");
    assert!(entries(&spill).is_empty(), "left behind: {:?}", entries(&spill));

    // The binary says what state cost, and leaves nothing in its spill directory.
    let out = work.join("out");
    let (code, stdout, stderr) = run_binary(
        &[
            "run",
            "--quiet",
            "--input",
            data.to_str().expect("UTF-8"),
            "--out",
            out.to_str().expect("UTF-8"),
            "--spill-dir",
            spill.to_str().expect("UTF-8"),
        ],
        &[],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let line = stdout
        .lines()
        .find(|line| line.trim_start().starts_with("memory"))
        .unwrap_or_else(|| panic!("no memory line:\n{stdout}"));
    assert!(line.contains("codes held") && line.contains("on disk"), "{line}");
    assert!(entries(&spill).is_empty(), "left behind: {:?}", entries(&spill));
    let _ = std::fs::remove_dir_all(&work);
}

/// A full disk under `spill`: exit 70, one fatal line naming the directory and the lack of
/// space, no summary, no output file.
fn assert_refused_for_space(data: &Path, out: &Path, spill: &Path, env: &[(&str, &str)]) {
    let (code, stdout, stderr) = run_binary(
        &[
            "run",
            "--quiet",
            "--input",
            data.to_str().expect("UTF-8"),
            "--out",
            out.to_str().expect("UTF-8"),
            "--spill-dir",
            spill.to_str().expect("UTF-8"),
            "--spill-all",
        ],
        env,
    );
    assert_eq!(code, Some(70), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let fatal: Vec<&str> = stderr.lines().filter(|l| l.starts_with("markledger: fatal:")).collect();
    assert_eq!(fatal.len(), 1, "{stderr}");
    assert!(
        fatal[0].contains(spill.to_str().expect("UTF-8")),
        "the error names the directory: {stderr}"
    );
    assert!(
        fatal[0].to_lowercase().contains("no space left"),
        "the error says the disk is full: {stderr}"
    );
    assert!(!stdout.contains("summary"), "a failed run printed a summary:\n{stdout}");
    assert!(
        !out.join("status.jsonl").exists() && !out.join("balances.jsonl").exists(),
        "a failed run wrote outputs: {:?}",
        entries(out)
    );
}

#[test]
fn a_full_disk_is_a_clear_error_and_never_a_false_done() {
    let work = temp("full");
    let data = work.join("data");
    dataset(&data);

    // A real disk that fills up: a 256 KiB tmpfs, where this process may mount one.
    let small = work.join("small");
    std::fs::create_dir_all(&small).expect("mount point");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&small)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if mounted {
        // Unmounted before asserting: a failed assertion must not leave a mount behind.
        let out = work.join("out-tmpfs");
        let refused = std::panic::catch_unwind(|| assert_refused_for_space(&data, &out, &small, &[]));
        let unmounted = Command::new("umount")
            .arg(&small)
            .status()
            .is_ok_and(|status| status.success());
        if !unmounted {
            let _ = Command::new("umount").arg("-l").arg(&small).status();
        }
        if let Err(panic) = refused {
            std::panic::resume_unwind(panic);
        }
    } else {
        eprintln!("no tmpfs (mount needs privileges here): the write-failure injection only");
    }

    // A write-failure injection (debug builds): writes fail after 40 KB.
    if cfg!(debug_assertions) {
        let spill = work.join("injected");
        std::fs::create_dir_all(&spill).expect("spill dir");
        assert_refused_for_space(
            &data,
            &work.join("out-injected"),
            &spill,
            &[("MARKLEDGER_SPILL_WRITE_LIMIT", "40000")],
        );
    }
    assert!(
        mounted || cfg!(debug_assertions),
        "neither a tmpfs nor the injection: nothing was tested"
    );
    let _ = std::fs::remove_dir_all(&work);
}
