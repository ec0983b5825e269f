//! Calendar coverage (issue 19): a run never computes a working-day deadline in a year its
//! calendar does not cover. `markledger run` over data that enters the first uncovered year
//! (2028 for the shipped calendar; 2026 for a user calendar ending mid-2026) stops with a
//! message naming the calendar and the year; a timestamp further out stays an ordinary
//! `TS_OUT_OF_RANGE` rejection (an absurd time, not a calendar gap). An emission whose
//! expiry deadline (30 working days) would fall in the uncovered year stops the run the
//! same way, so no deadline is ever counted with weekends only; both engines agree.

use markledger_tests::{emission, markledger_binary, order, payment, tariff, GTIN};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("markledger-calendar-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// `markledger run` over one partition of `lines`, with extra flags.
fn run(dir: &Path, lines: &[String], extra: &[&str]) -> Output {
    let input = dir.join("p0.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").expect("input");
    Command::new(markledger_binary())
        .args(["run", "--quiet", "--input"])
        .arg(&input)
        .arg("--out")
        .arg(dir.join("out"))
        .args(extra)
        .output()
        .expect("markledger run")
}

fn history() -> Vec<String> {
    vec![
        tariff(
            "t1",
            "2026-01-01T00:00:00+05:00",
            "2026-01-01T00:00:00+05:00",
            "1.00",
            "0.12",
        ),
        payment("p1", "2026-02-02T10:00:00+05:00", "A", "100.00", "bank"),
        payment("p2", "2027-12-30T10:00:00+05:00", "A", "5.00", "bank"),
    ]
}

#[test]
fn a_run_entering_2028_stops_with_the_calendar_message() {
    // The shipped calendar ends on 2027-12-31: a payment on 2028-01-05 stops the run with
    // a message naming the calendar, the year and the event; exit status non-zero.
    let dir = temp("2028");
    let mut lines = history();
    lines.push(payment("p2028", "2028-01-05T10:00:00+05:00", "A", "1.00", "bank"));
    let output = run(&dir, &lines, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the run must stop: {stderr}");
    for needle in [
        "\"p2028\"",
        "is in 2028",
        "the shipped calendar (datasets/calendars/kazakhstan.cal) does not cover",
        "its last day is 2027-12-31",
    ] {
        assert!(stderr.contains(needle), "missing {needle:?} in: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_user_calendar_ending_mid_year_stops_the_run_at_its_end_by_name() {
    // A user calendar covering 2020-01-01..2026-06-30: data in July 2026 stops the run,
    // naming that calendar file and the year 2026; the same data with the shipped calendar
    // runs clean.
    let dir = temp("user");
    let calendar = dir.join("short.cal");
    std::fs::write(&calendar, "range 2020-01-01 2026-06-30\n2026-03-23 holiday Nauryz\n").expect("calendar");
    let mut lines = history();
    lines.truncate(2);
    lines.push(payment("p-july", "2026-07-01T09:00:00+05:00", "A", "1.00", "bank"));
    let flag = calendar.to_str().expect("UTF-8").to_string();
    let output = run(&dir, &lines, &["--calendar", &flag]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("is in 2026, a year the calendar {flag} does not cover")),
        "{stderr}"
    );
    let output = run(&dir, &lines, &[]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_absurd_timestamp_is_still_a_rejection_not_a_stop() {
    // A ts in 2999 is not a calendar gap but an absurd time: rejected TS_OUT_OF_RANGE and
    // the run ends cleanly.
    let dir = temp("absurd");
    let mut lines = history();
    lines.push(payment("p2999", "2999-01-05T10:00:00+05:00", "A", "1.00", "bank"));
    let output = run(&dir, &lines, &[]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let rejections = std::fs::read_to_string(dir.join("out/rejections.jsonl")).expect("rejections");
    assert!(
        rejections.contains("p2999") && rejections.contains("TS_OUT_OF_RANGE"),
        "{rejections}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_emission_whose_expiry_deadline_falls_past_the_calendar_stops_the_run() {
    // The 30th working day after Thu 2027-11-18 is Fri 2027-12-31 under the shipped
    // calendar (Thu Dec 16 is a holiday): that emission is taken in (its codes would expire
    // at the end of the calendar's last day). An emission on Wed 2027-12-01 would expire in
    // January 2028: the run stops before it with the calendar message, on both engines; a
    // payment the same day does not stop it.
    let dir = temp("expiry");
    let mut lines = history();
    lines.truncate(2);
    lines.push(order("o1", "2027-11-01T09:00:00+05:00", "A", "O-1", GTIN, 2));
    lines.push(emission("e1", "2027-11-18T10:00:00+05:00", "A", "O-1", GTIN, &["c1"]));
    let covered = run(&dir, &lines, &[]);
    assert!(covered.status.success(), "{}", String::from_utf8_lossy(&covered.stderr));
    let status = std::fs::read_to_string(dir.join("out/status.jsonl")).expect("status");
    assert!(
        status.contains(r#""event":"e1""#) && status.contains(r#""to":"EMITTED""#),
        "{status}"
    );
    lines.push(payment("p-dec", "2027-12-01T10:00:00+05:00", "A", "1.00", "bank"));
    let paid = run(&dir, &lines, &[]);
    assert!(paid.status.success(), "{}", String::from_utf8_lossy(&paid.stderr));
    lines.push(emission("e2", "2027-12-01T11:00:00+05:00", "A", "O-1", GTIN, &["c2"]));
    for engine in [&[][..], &["--engine", "reference"][..]] {
        let output = run(&dir, &lines, engine);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{engine:?}: the run must stop: {stderr}");
        for needle in [
            "\"e2\"",
            "is an emission whose expiry deadline (30 working days later) would fall in 2028",
            "the shipped calendar (datasets/calendars/kazakhstan.cal) does not cover",
        ] {
            assert!(stderr.contains(needle), "{engine:?}: missing {needle:?} in: {stderr}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
