//! `markledger documents` as a user runs it: a provisional period is refused with a message
//! and a non-zero exit, rendered only with --provisional and then marked on the page;
//! --format, --lang and --account choose what is written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn markledger() -> Command {
    Command::new(env!("CARGO_BIN_EXE_markledger"))
}

fn scenario_output(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../datasets/scenarios")
        .join(name)
        .join("expected")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("markledger-documents-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn documents(input: &Path, out: &Path, extra: &[&str]) -> Output {
    markledger()
        .arg("documents")
        .arg("--input")
        .arg(input)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .expect("binary runs")
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn a_provisional_period_is_refused_unless_asked_for_and_then_marked() {
    // late_event_into_closed_period has January final and February open: --period 2026-02
    // exits non-zero naming the period and writes nothing; with --provisional it writes
    // files named "-provisional" whose PDF pages say ПРЕДВАРИТЕЛЬНЫЙ.
    let input = scenario_output("late_event_into_closed_period");
    let out = scratch("provisional");
    let refused = documents(&input, &out, &["--period", "2026-02"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "a provisional period is refused");
    assert!(stderr.contains("2026-02 is provisional"), "message: {stderr}");
    assert!(names(&out.join("2026-02")).is_empty(), "nothing written");

    let asked = documents(&input, &out, &["--period", "2026-02", "--provisional"]);
    assert!(asked.status.success(), "{}", String::from_utf8_lossy(&asked.stderr));
    let written = names(&out.join("2026-02"));
    assert!(
        written.contains(&"act-KZ-940000000017-provisional.pdf".to_string()),
        "{written:?}"
    );
    assert!(written.iter().all(|name| name.contains("-provisional")), "{written:?}");
    let text = Command::new("pdftotext")
        .arg(out.join("2026-02/act-KZ-940000000017-provisional.pdf"))
        .arg("-")
        .output()
        .expect("pdftotext runs (apt-get install poppler-utils)");
    assert!(String::from_utf8_lossy(&text.stdout).contains("ПРЕДВАРИТЕЛЬНЫЙ"));
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn format_lang_and_account_choose_what_is_written() {
    // Without --period only final January is rendered (and the summary names February as
    // not closed); --format csv writes no PDF; --account writes only that client's files;
    // --lang kk writes Kazakh headers.
    let input = scenario_output("late_event_into_closed_period");
    let out = scratch("choose");
    let csv_only = documents(&input, &out, &["--format", "csv", "--lang", "kk"]);
    let stdout = String::from_utf8_lossy(&csv_only.stdout);
    assert!(
        csv_only.status.success(),
        "{}",
        String::from_utf8_lossy(&csv_only.stderr)
    );
    assert!(stdout.contains("not closed  2026-02"), "summary: {stdout}");
    let written = names(&out.join("2026-01"));
    assert!(
        !written.is_empty() && written.iter().all(|n| n.ends_with(".csv")),
        "{written:?}"
    );
    assert!(names(&out).iter().all(|period| period == "2026-01"), "only January");
    let header = std::fs::read_to_string(out.join("2026-01/debtors-2026-01.csv")).unwrap();
    assert!(header.starts_with("Дербес шот,Төленбеген кодтар"), "{header}");

    let only = scratch("account");
    let account = documents(&input, &only, &["--account", "KZ-940000000017", "--format", "pdf"]);
    assert!(account.status.success());
    assert_eq!(
        names(&only.join("2026-01")),
        ["act-KZ-940000000017.pdf", "reconciliation-KZ-940000000017.pdf"]
    );
    let bad = documents(&input, &only, &["--lang", "de"]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("--lang"));
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_dir_all(&only);
}
