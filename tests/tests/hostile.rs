//! Issue 15: one bad line must never stop billing. Each hostile case is a fixture under
//! `tests/fixtures/hostile/`, run through the real JSON decoder into the reference engine and
//! the dataflow (which must agree, record for record, on 1 and 3 workers: `run_with`), or
//! through the `markledger` binary where the case is about the process: a run ends with
//! exit 0 and the right rejection, or with a clear one-line error where refusing to run is
//! right — never a hang, never a panic, never a lost output file.

use markledger::config::Config;
use markledger_operators::output::{AggregateKind, Entry, Figures};
use markledger_operators::{Money, Reason};
use markledger_tests::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/hostile")
        .join(format!("{name}.jsonl"))
}

fn fixture(name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(fixture_path(name)).expect("fixture");
    text.lines().map(str::to_string).collect()
}

fn money(text: &str) -> Money {
    Money::from_str(text).expect("amount")
}

/// Both engines on one fixture with the shipped configuration.
fn both(name: &str) -> Outcome {
    run_with(&default_config(), &[fixture(name)])
}

#[test]
fn the_largest_decimal_as_an_amount_is_refused_and_its_neighbours_count() {
    // rust_decimal's maximum as a payment, a compensation and a refund: each BAD_AMOUNT (it
    // used to overflow the balance and hang the run); the payments around them take effect,
    // and the "*" turnover row sums two accounts' maximal payments exactly.
    let out = both("amount_decimal_max");
    let refused: Vec<_> = out.reasons();
    assert_eq!(
        refused,
        [
            (Some("p2"), Reason::BadAmount),
            (Some("c1"), Reason::BadAmount),
            (Some("r1"), Reason::BadAmount)
        ]
    );
    assert_eq!(out.balance("KZ-A").balance, money("150.00"));
    let total = out
        .period(AggregateKind::Turnover, "*", "2026-01", None)
        .expect("total row");
    let Figures::Turnover { paid, closing, .. } = &total.figures else {
        panic!("turnover figures")
    };
    assert_eq!(*paid, money("2000000000150.00"));
    assert_eq!(*closing, money("2000000000150.00"));
}

#[test]
fn an_amount_that_would_cost_exactness_is_refused_and_charges_stay_exact() {
    // A valid 2-decimal payment of 28 digits made later sums round (a 3.0016 charge landed as
    // 3.002); it is above the largest amount and refused, and the charge keeps every digit.
    let out = both("amount_28_digits");
    assert_eq!(out.refusals(), [(Some("p2"), None, Reason::BadAmount)]);
    let charge = out
        .ledger("KZ-A")
        .into_iter()
        .find(|l| l.entry == Entry::Charge)
        .expect("charge");
    assert_eq!(charge.amount, money("3.0016"));
    assert_eq!(out.balance("KZ-A").balance, money("6.9984"));
    let reconciliation = out
        .period(AggregateKind::Reconciliation, "KZ-A", "2026-01", None)
        .expect("reconciliation");
    let Figures::Reconciliation { closing, .. } = &reconciliation.figures else {
        panic!("reconciliation figures")
    };
    assert_eq!(*closing, money("6.9984"));
}

#[test]
fn tariffs_outside_their_bounds_are_refused() {
    // A price of 10²⁰, a rate with 28 decimals, a price with 3 decimals: BAD_AMOUNT each; a
    // bounded one (3.00 + 12.5 %) takes effect and charges 3.375 exactly.
    let out = both("tariff_bounds");
    let refused: Vec<_> = out.reasons();
    assert_eq!(
        refused,
        [
            (Some("t1"), Reason::BadAmount),
            (Some("t2"), Reason::BadAmount),
            (Some("t3"), Reason::BadAmount)
        ]
    );
    let charges: Vec<Money> = out
        .ledger("KZ-A")
        .into_iter()
        .filter(|l| l.entry == Entry::Charge)
        .map(|l| l.amount)
        .collect();
    assert_eq!(charges, [money("3.0016"), money("3.375")]);
}

#[test]
fn a_balance_may_not_grow_past_its_maximum() {
    // A thousand payments of 10¹² reach 10¹⁵, the largest balance; a tiyn more is refused,
    // and another account's payment after it takes effect.
    let out = both("balance_cap");
    assert_eq!(out.refusals(), [(Some("p1000"), None, Reason::BadAmount)]);
    assert_eq!(out.balance("KZ-A").balance, money("1000000000000000.00"));
    assert_eq!(out.balance("KZ-B").balance, money("5.00"));
}

#[test]
fn a_far_future_timestamp_is_refused_and_moves_no_watermark() {
    // A payment dated 9999 (and one in mid-2029, beyond the year after the shipped calendar:
    // a 2028 one stops the run, tests/tests/calendar_coverage.rs) is TS_OUT_OF_RANGE;
    // it used to move the watermark to 9999 (574,136 period records from two lines) and
    // make every later event late. Now the next payment is not late and periods stop at the
    // last accepted month.
    let out = both("ts_far_future");
    let refused: Vec<_> = out.reasons();
    assert_eq!(
        refused,
        [(Some("p2"), Reason::TsOutOfRange), (Some("p4"), Reason::TsOutOfRange)]
    );
    let p3 = out
        .ledger("KZ-A")
        .into_iter()
        .find(|l| l.event == "p3")
        .expect("p3 applied");
    assert!(!p3.late, "the refused far-future event must not make later events late");
    let periods: std::collections::BTreeSet<String> =
        out.period_records().iter().map(|r| r.key.period.to_string()).collect();
    assert_eq!(periods.into_iter().collect::<Vec<_>>(), ["2026-01", "2026-02"]);
    assert_eq!(out.balance("KZ-A").balance, money("16.00"));
    let detail = &out.rejections()[0].detail;
    assert!(detail.contains("9998-12-31T19:00:00Z"), "{detail}");
}

#[test]
fn timestamps_before_the_epoch_are_refused_and_register_no_id() {
    // 1969 and one millisecond before 2020 are TS_OUT_OF_RANGE (they were filed under
    // 1969-12); 1900 and year 1 cannot even be printed in Almaty time (its local mean time
    // before 1924 has seconds in its offset) and are MALFORMED at decoding. The epoch itself
    // is accepted, and an id first seen on a refused event is not a duplicate later.
    let out = both("ts_before_epoch");
    let mut refused: Vec<_> = out.reasons();
    refused.sort();
    assert_eq!(
        refused,
        [
            (Some("p1"), Reason::TsOutOfRange),
            (Some("p2"), Reason::Malformed),
            (Some("p3"), Reason::Malformed),
            (Some("p4"), Reason::TsOutOfRange)
        ]
    );
    assert_eq!(out.balance("KZ-A").balance, money("7.00"));
    for rejection in out.rejections() {
        assert!(!rejection.detail.contains("+05:08"), "{}", rejection.detail);
    }
}

#[test]
fn a_quarantined_event_is_refused_as_an_internal_error() {
    // Stream mode's poison pills: an event in the configuration's quarantine is refused
    // INTERNAL_ERROR by both engines, naming what it made fail; its neighbours count.
    let mut config: Config = default_config();
    let quarantine = BTreeMap::from([("p2".to_string(), "stage X failed".to_string())]);
    config.quarantine = Arc::new(quarantine);
    let out = run_with(&config, &[fixture("quarantined_event")]);
    assert_eq!(out.refusals(), [(Some("p2"), None, Reason::InternalError)]);
    assert!(out.rejections()[0].detail.contains("stage X failed"));
    assert_eq!(out.balance("KZ-A").balance, money("40.00"));
}

// ------------------------------------------------------------------- the process

/// Runs the binary with `args`, killing it (and failing) if it has not ended in `limit`:
/// a hang is the failure these tests exist to catch. Returns (status code, stderr).
fn run_binary(args: &[&str], env: &[(&str, &str)], limit: Duration) -> (Option<i32>, String) {
    let mut command = Command::new(markledger_binary());
    command.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("markledger starts");
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut stderr = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .expect("stderr")
                .read_to_string(&mut stderr)
                .expect("stderr");
            return (status.code(), stderr);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("markledger {args:?} did not end within {limit:?}: a hang");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("markledger-hostile-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn close_after_days_outside_1_to_27_is_a_clear_error() {
    // 0 used to pass validation and then fail an assertion mid-run ("closed period
    // changed") with the run hanging; 0 and 28 are refused before the run, 1 and 27 run.
    let input = fixture_path("small_run");
    let out = temp_dir("close-days");
    for (days, ok) in [("0", false), ("28", false), ("1", true), ("27", true)] {
        let args = [
            "run",
            "--input",
            input.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--close-after-days",
            days,
        ];
        let (code, stderr) = run_binary(&args, &[], Duration::from_secs(120));
        if ok {
            assert_eq!(code, Some(0), "--close-after-days {days}: {stderr}");
        } else {
            assert_eq!(code, Some(2), "--close-after-days {days}: {stderr}");
            assert!(stderr.contains("1..=27") || stderr.contains("1..28"), "{stderr}");
        }
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn an_absurd_worker_count_is_a_clear_error() {
    // --workers 99999999999 allocated until the kernel killed it; 0, 65 and that are refused
    // at once with the allowed range.
    let input = fixture_path("small_run");
    let out = temp_dir("workers");
    for workers in ["0", "65", "99999999999"] {
        let args = [
            "run",
            "--input",
            input.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--workers",
            workers,
        ];
        let (code, stderr) = run_binary(&args, &[], Duration::from_secs(30));
        assert_eq!(code, Some(2), "--workers {workers}: {stderr}");
        assert!(stderr.contains("1..=64"), "{stderr}");
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn closed_stdout_and_stderr_do_not_lose_the_outputs() {
    // A run whose stdout and stderr are closed pipes (the reader went away) used to panic
    // in the summary; it now writes its files and exits 0.
    let input = fixture_path("small_run");
    let out = temp_dir("pipes");
    let mut child = Command::new(markledger_binary())
        .args([
            "run",
            "--input",
            input.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("markledger starts");
    drop(child.stdout.take());
    drop(child.stderr.take());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "a hang");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    for file in ["status", "ledger", "balances", "rejections", "periods"] {
        let text = std::fs::read_to_string(out.join(format!("{file}.jsonl"))).expect("output file");
        if file != "rejections" {
            assert!(!text.is_empty(), "{file}.jsonl is empty");
        }
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn a_worker_panic_ends_the_run_promptly_with_one_line() {
    // The test-only hook makes the accounts stage panic on event a1; on 1 and 4 workers the
    // process ends within seconds with exit 70 and one line naming the stage and the event
    // (a panicking worker used to leave the others waiting forever).
    let input = fixture_path("small_run");
    let out = temp_dir("panic");
    for workers in ["1", "4"] {
        let args = [
            "run",
            "--input",
            input.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--workers",
            workers,
        ];
        let env = [
            ("MARKLEDGER_TEST_PANIC_ON_EVENT", "a1"),
            ("MARKLEDGER_TEST_PANIC_STAGE", "Accounts"),
        ];
        let started = Instant::now();
        let (code, stderr) = run_binary(&args, &env, Duration::from_secs(60));
        assert_eq!(code, Some(70), "{stderr}");
        let fatal: Vec<&str> = stderr.lines().filter(|l| l.starts_with("markledger: fatal:")).collect();
        assert_eq!(fatal.len(), 1, "{stderr}");
        assert!(
            fatal[0].contains("in stage \"Accounts: lifecycle, balance, FIFO\""),
            "{stderr}"
        );
        assert!(fatal[0].contains("while processing event \"a1\""), "{stderr}");
        assert!(fatal[0].contains("injected failure"), "{stderr}");
        eprintln!("{workers} workers: ended {:?} after start", started.elapsed());
    }
    let _ = std::fs::remove_dir_all(&out);
}
