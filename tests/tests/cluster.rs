//! Issue 18: `markledger run` on a timely cluster of processes on loopback.
//!
//! - File runs on 2 processes × 1 worker and 2 × 2 write files byte-identical to one
//!   process with 1 and 2 workers, on two generated datasets with bad input; only process 0
//!   writes them.
//! - A process that goes away (SIGKILL, or a worker's panic) makes the other exit non-zero
//!   by itself, within a bounded time, saying why.

use markledger_operators::flow::{route, worker_of_group};
use markledger_tests::markledger_binary;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const OUTPUT_FILES: [&str; 5] = [
    "status.jsonl",
    "ledger.jsonl",
    "balances.jsonl",
    "rejections.jsonl",
    "periods.jsonl",
];

/// How long a process may take to notice that its peer went away.
const STOP_BOUND: Duration = Duration::from_secs(30);

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("markledger-cluster-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn generate(dir: &Path, seed: u64, codes: u64) -> PathBuf {
    let out = dir.join(format!("dataset-{seed}"));
    let status = Command::new(markledger_binary())
        .args([
            "generate",
            "--quiet",
            "--bad-rate",
            "0.05",
            "--partitions",
            "5",
            "--accounts",
            "60",
        ])
        .args(["--codes", &codes.to_string(), "--seed", &seed.to_string()])
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "generating dataset {seed}");
    out
}

/// A hostfile of `n` free loopback ports: all bound at once (so they differ), then released.
fn hostfile(dir: &Path, n: usize) -> PathBuf {
    let listeners: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let text: String = listeners
        .iter()
        .map(|l| format!("127.0.0.1:{}\n", l.local_addr().unwrap().port()))
        .collect();
    let path = dir.join("hostfile");
    std::fs::write(&path, text).unwrap();
    path
}

fn start(
    input: &Path,
    out: &Path,
    workers: usize,
    cluster: Option<(usize, usize, &Path)>,
    env: &[(&str, &str)],
) -> Child {
    let mut command = Command::new(markledger_binary());
    command
        .args(["run", "--quiet", "--workers", &workers.to_string()])
        .arg("--input")
        .arg(input)
        .arg("--out")
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some((processes, process, hostfile)) = cluster {
        command
            .args(["--processes", &processes.to_string(), "--process", &process.to_string()])
            .arg("--hostfile")
            .arg(hostfile);
    }
    for (key, value) in env {
        command.env(key, value);
    }
    command.spawn().unwrap()
}

/// Waits for `child` at most `bound`; kills it (and fails the test) if it is still running.
fn wait_bounded(child: &mut Child, bound: Duration, what: &str) -> (ExitStatus, String) {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                std::io::Read::read_to_string(&mut pipe, &mut stderr).unwrap();
            }
            return (status, stderr);
        }
        if started.elapsed() > bound {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {bound:?} (a hang)");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One file run on `processes` × `workers` on loopback; the outputs of process 0 in `out`,
/// each other process's in `out-pI` (which must stay empty).
fn run_cluster(dir: &Path, input: &Path, out: &Path, processes: usize, workers: usize) {
    if processes == 1 {
        let mut child = start(input, out, workers, None, &[]);
        let (status, stderr) = wait_bounded(&mut child, Duration::from_secs(600), "one process");
        assert!(status.success(), "1 × {workers}: {stderr}");
        return;
    }
    let hosts = hostfile(dir, processes);
    let outs: Vec<PathBuf> = (0..processes)
        .map(|p| {
            if p == 0 {
                out.to_path_buf()
            } else {
                PathBuf::from(format!("{}-p{p}", out.display()))
            }
        })
        .collect();
    let mut children: Vec<Child> = (0..processes)
        .map(|p| start(input, &outs[p], workers, Some((processes, p, &hosts)), &[]))
        .collect();
    for (p, child) in children.iter_mut().enumerate() {
        let (status, stderr) = wait_bounded(child, Duration::from_secs(600), "a cluster process");
        assert!(status.success(), "{processes} × {workers}, process {p}: {stderr}");
    }
    for other in &outs[1..] {
        let written = std::fs::read_dir(other).map(|entries| entries.count()).unwrap_or(0);
        assert_eq!(
            written,
            0,
            "{} holds outputs: only process 0 writes them",
            other.display()
        );
    }
}

#[test]
fn cluster_file_runs_write_the_files_of_one_process() {
    // Two datasets with bad input; 1 × 1 is the reference, 1 × 2, 2 × 1 and 2 × 2 must give
    // the same bytes in every output file.
    let dir = scratch("equal");
    for seed in [1, 2] {
        let input = generate(&dir, seed, 30_000);
        let reference = dir.join(format!("out-{seed}-1x1"));
        run_cluster(&dir, &input, &reference, 1, 1);
        let rejections = std::fs::read_to_string(reference.join("rejections.jsonl")).unwrap();
        assert!(rejections.lines().count() > 5, "dataset {seed} has bad input");
        for (processes, workers) in [(1, 2), (2, 1), (2, 2)] {
            let out = dir.join(format!("out-{seed}-{processes}x{workers}"));
            run_cluster(&dir, &input, &out, processes, workers);
            for file in OUTPUT_FILES {
                let expected = std::fs::read(reference.join(file)).unwrap();
                let actual = std::fs::read(out.join(file)).unwrap();
                assert!(!expected.is_empty() || file == "rejections.jsonl", "{file} is empty");
                assert!(
                    expected == actual,
                    "dataset {seed}, {processes} × {workers}: {file} differs from 1 × 1"
                );
            }
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Starts a 2 × 1 run; process 1 either is SIGKILLed once process 0 reports progress (the
/// run is under way) or, with `poison`, panics on an event it processes; process 0 must exit non-zero within [`STOP_BOUND`], saying
/// it lost the other process.
fn the_survivor_stops(name: &str, codes: u64, poison: bool) {
    let kill = !poison;
    let dir = scratch(name);
    let input = generate(&dir, 3, codes);
    let poisoned = poison.then(|| event_of_process_1(&input));
    let env_of_process_1: Vec<(&str, &str)> = poisoned
        .iter()
        .map(|id| ("MARKLEDGER_TEST_PANIC_ON_EVENT", id.as_str()))
        .collect();
    let env_of_process_1 = env_of_process_1.as_slice();
    let hosts = hostfile(&dir, 2);
    let mut first = Command::new(markledger_binary());
    first
        .args(["run", "--workers", "1", "--processes", "2", "--process", "0"])
        .arg("--input")
        .arg(&input)
        .arg("--out")
        .arg(dir.join("out"))
        .arg("--hostfile")
        .arg(&hosts)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut first = first.spawn().unwrap();
    let mut second = start(&input, &dir.join("out-p1"), 1, Some((2, 1, &hosts)), env_of_process_1);
    // Process 0's progress lines: the run is under way once one appears.
    let mut lines = BufReader::new(first.stderr.take().unwrap()).lines();
    let started = Instant::now();
    let mut seen = Vec::new();
    if kill {
        loop {
            let line = lines
                .next()
                .expect("process 0 ended before reporting progress")
                .unwrap();
            seen.push(line.clone());
            if line.starts_with('[') {
                second.kill().unwrap();
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(120), "no progress: {seen:?}");
        }
    }
    let struck = Instant::now();
    let (_, second_stderr) = wait_bounded(&mut second, STOP_BOUND, "process 1");
    // Read the rest of process 0's stderr on a thread, so a full pipe never blocks it.
    let rest = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
    let (status, _) = wait_bounded(&mut first, STOP_BOUND, "process 0 after its peer went away");
    seen.extend(rest.join().unwrap());
    let stderr = seen.join("\n");
    assert!(
        !status.success(),
        "process 0 must fail when its peer goes away: {stderr}"
    );
    assert!(
        stderr.contains("lost the connection to another process of the cluster"),
        "process 0 says why: {stderr}\n(process 1: {second_stderr})"
    );
    if poison {
        assert!(
            second_stderr.contains("injected failure"),
            "process 1 failed on the poison: {second_stderr}"
        );
    }
    eprintln!(
        "{name}: process 0 stopped {:?} after process 1 went away",
        struck.elapsed()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An event the first stage ("Dedup", by event id) processes on process 1 of a 2 × 1 run.
fn event_of_process_1(input: &Path) -> String {
    let mut files: Vec<PathBuf> = std::fs::read_dir(input)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "jsonl"))
        .collect();
    files.sort();
    for file in files {
        for line in std::fs::read_to_string(&file).unwrap().lines() {
            let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let Some(id) = value.get("id").and_then(|id| id.as_str()) else {
                continue;
            };
            if worker_of_group(route(id), 2) == 1 {
                return id.to_string();
            }
        }
    }
    panic!("no event of process 1 in {}", input.display());
}

#[test]
fn a_killed_process_stops_the_other() {
    // SIGKILL process 1 mid-run (once process 0 has reported progress).
    the_survivor_stops("killed", 1_500_000, false);
}

#[test]
fn a_failing_process_stops_the_other() {
    // Process 1's first stage panics on an event it processes (the test-only fault hook of
    // debug builds): it ends with status 70, and process 0 must follow, not hang.
    if !cfg!(debug_assertions) {
        return;
    }
    the_survivor_stops("panicked", 20_000, true);
}
