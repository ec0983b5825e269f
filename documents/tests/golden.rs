//! The golden scenarios' documents, checked against the records they come from: each
//! scenario's `expected/periods.jsonl` is read here on its own (serde_json, highest `rev`
//! per key), rendered in Russian and Kazakh, and every figure of every document is looked
//! for, rounded half-up to 2 decimals, in the CSV (parsed with the csv crate) and in the
//! text of the PDF (extracted with poppler's pdftotext; `apt-get install poppler-utils`).

use markledger_documents::{render, Lang, LatestRecords, Options};
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/scenarios")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("markledger-documents-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The newest revision per key, read independently of the crate's reader.
fn latest(path: &Path) -> BTreeMap<String, Value> {
    let mut latest: BTreeMap<String, Value> = BTreeMap::new();
    for line in std::fs::read_to_string(path).expect("periods.jsonl").lines() {
        let record: Value = serde_json::from_str(line).expect("a JSON record");
        let key = format!(
            "{}/{}/{}/{}",
            record["kind"].as_str().unwrap(),
            record["account"].as_str().unwrap(),
            record["period"].as_str().unwrap(),
            record["sub"].as_str().unwrap_or("")
        );
        let newer = latest
            .get(&key)
            .is_none_or(|kept| kept["rev"].as_u64() < record["rev"].as_u64());
        if newer {
            latest.insert(key, record);
        }
    }
    // A key whose newest record is a deletion (DOMAIN.md §9) is gone.
    latest.retain(|_, record| record["deleted"] != true);
    latest
}

/// A money field rounded half-up to 2 decimals.
fn rounded(record: &Value, field: &str) -> Decimal {
    let exact: Decimal = record[field].as_str().expect("money is a string").parse().unwrap();
    let mut value = exact.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
    value.rescale(2);
    value
}

/// As the PDF prints it in Russian and Kazakh: `1 234,56`.
fn printed(amount: Decimal) -> String {
    let text = amount.to_string();
    let (whole, fraction) = text.split_once('.').unwrap();
    let (sign, digits) = whole.strip_prefix('-').map_or(("", whole), |d| ("-", d));
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(' ');
        }
        grouped.push(c);
    }
    format!("{sign}{grouped},{fraction}")
}

fn count(record: &Value, field: &str) -> String {
    let n = record[field].as_u64().expect("a count");
    let mut cents = Decimal::from(n);
    cents.rescale(2);
    printed(cents).trim_end_matches(",00").to_string()
}

fn pdf_text(path: &Path) -> String {
    let output = Command::new("pdftotext")
        .args(["-layout", "-enc", "UTF-8"])
        .arg(path)
        .arg("-")
        .output()
        .expect("pdftotext runs (apt-get install poppler-utils)");
    assert!(output.status.success(), "pdftotext {}", path.display());
    String::from_utf8(output.stdout).expect("UTF-8 text")
}

fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_path(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    reader
        .records()
        .map(|row| row.unwrap().iter().map(str::to_string).collect())
        .collect()
}

/// The line of `text` that starts with `label` (after spaces) and has every one of `cells`
/// after it, in order; panics naming what is missing.
fn assert_line(text: &str, label: &str, cells: &[String], what: &str) {
    let found = text.lines().any(|line| {
        let Some(rest) = line.trim_start().strip_prefix(label) else {
            return false;
        };
        let mut at = 0;
        cells.iter().all(|cell| match rest[at..].find(cell.as_str()) {
            Some(i) => {
                at += i + cell.len();
                true
            }
            None => false,
        })
    });
    assert!(found, "{what}: no line `{label} … {cells:?}` in:\n{text}");
}

/// The CSV row whose `column` is `value`.
fn csv_row<'a>(rows: &'a [Vec<String>], column: usize, value: &str, what: &str) -> &'a [String] {
    rows.iter()
        .find(|row| row.get(column).map(String::as_str) == Some(value))
        .unwrap_or_else(|| panic!("{what}: no row with {value:?} in column {column}: {rows:?}"))
}

fn plain(amount: Decimal) -> String {
    amount.to_string()
}

struct Account<'a> {
    act: Option<&'a Value>,
    reconciliation: Option<&'a Value>,
    products: Vec<&'a Value>,
}

fn check_account_documents(dir: &Path, period: &str, lang: Lang, records: &Account) {
    let (act, rec, products) = (records.act, records.reconciliation, &records.products);
    if let Some(act) = act {
        let account = act["account"].as_str().unwrap();
        let text = pdf_text(&dir.join(format!("act-{account}.pdf")));
        let [net, vat, gross] = ["net", "vat", "gross"].map(|f| rounded(act, f));
        assert!(text.contains(&format!("ACT-{period}-{account}")), "act number");
        assert!(text.contains(account), "client identifier");
        assert_line(
            &text,
            lang.texts().total,
            &[count(act, "codes_paid"), printed(net), printed(vat), printed(gross)],
            "act totals",
        );
        let rows = csv_rows(&dir.join(format!("act-{period}.csv")));
        let row = csv_row(&rows, 1, account, "act csv");
        assert_eq!(row[3], act["codes_paid"].as_u64().unwrap().to_string());
        assert_eq!([&row[4], &row[5], &row[7]], [&plain(net), &plain(vat), &plain(gross)]);
        // The printed figures add up, with the rounding line when there is one.
        let rounding: Decimal = if row[6].is_empty() {
            Decimal::ZERO
        } else {
            row[6].parse().unwrap()
        };
        assert_eq!(net + vat + rounding, gross, "act adds up on its printed figures");
        let product_rows = csv_rows(&dir.join(format!("products-{period}.csv")));
        for product in products {
            let gtin = product["sub"].as_str().unwrap();
            let cells = ["codes_emitted", "codes_applied", "codes_paid"].map(|f| count(product, f));
            assert_line(&text, gtin, &cells, "product detail");
            let row = csv_row(&product_rows, 2, gtin, "products csv");
            let numbers =
                ["codes_emitted", "codes_applied", "codes_paid"].map(|f| product[f].as_u64().unwrap().to_string());
            assert_eq!(&row[3..6], &numbers);
        }
    }
    if let Some(rec) = rec {
        let account = rec["account"].as_str().unwrap();
        let text = pdf_text(&dir.join(format!("reconciliation-{account}.pdf")));
        assert!(text.contains(&format!("REC-{period}-{account}")), "statement number");
        let fields = ["opening", "payments", "compensations", "services", "refunds", "closing"];
        let figures = fields.map(|f| rounded(rec, f));
        let t = lang.texts();
        let labels = [
            t.opening.to_string(),
            format!("+ {}", t.payments),
            format!("+ {}", t.compensations),
            format!("− {}", t.services),
            format!("− {}", t.refunds),
            t.closing.to_string(),
        ];
        for (label, figure) in labels.iter().zip(figures) {
            assert_line(&text, label, &[printed(figure)], "statement line");
        }
        let rows = csv_rows(&dir.join(format!("reconciliation-{period}.csv")));
        let row = csv_row(&rows, 1, account, "reconciliation csv");
        let csv_figures: Vec<String> = [2, 3, 4, 5, 6, 8].iter().map(|i| row[*i].clone()).collect();
        assert_eq!(csv_figures, figures.map(plain).to_vec());
        let rounding: Decimal = if row[7].is_empty() {
            Decimal::ZERO
        } else {
            row[7].parse().unwrap()
        };
        let [opening, payments, compensations, services, refunds, closing] = figures;
        assert_eq!(
            opening + payments + compensations - services - refunds + rounding,
            closing,
            "the statement closes on its printed figures"
        );
    }
}

fn check_operator_documents(dir: &Path, period: &str, lang: Lang, records: &[&Value]) {
    let of = |kind: &'static str| records.iter().filter(move |r| r["kind"] == kind);
    let turnover_fields = ["opening", "paid", "compensations", "charged", "refunds", "closing"];
    let turnover_text = pdf_text(&dir.join("turnover.pdf"));
    let turnover_rows = csv_rows(&dir.join(format!("turnover-{period}.csv")));
    for row in of("turnover") {
        let account = row["account"].as_str().unwrap();
        let figures = turnover_fields.map(|f| rounded(row, f));
        let label = if account == "*" { lang.texts().total } else { account };
        assert_line(&turnover_text, label, &figures.map(printed), "turnover row");
        let csv = if account == "*" {
            turnover_rows.last().unwrap().as_slice()
        } else {
            csv_row(&turnover_rows, 0, account, "turnover csv")
        };
        let printed_figures: Vec<String> = [1, 2, 3, 4, 5, 7].iter().map(|i| csv[*i].clone()).collect();
        assert_eq!(printed_figures, figures.map(plain).to_vec());
        let rounding: Decimal = if csv[6].is_empty() {
            Decimal::ZERO
        } else {
            csv[6].parse().unwrap()
        };
        let [opening, paid, compensations, charged, refunds, closing] = figures;
        assert_eq!(
            opening + paid + compensations - charged - refunds + rounding,
            closing,
            "turnover row closes"
        );
    }
    let debtors_text = pdf_text(&dir.join("debtors.pdf"));
    let debtors_rows = csv_rows(&dir.join(format!("debtors-{period}.csv")));
    for row in of("debtors") {
        let account = row["account"].as_str().unwrap();
        let owed = rounded(row, "amount_owed");
        assert_line(
            &debtors_text,
            account,
            &[count(row, "unpaid_codes"), printed(owed)],
            "debtor",
        );
        let csv = csv_row(&debtors_rows, 0, account, "debtors csv");
        assert_eq!(csv[1], row["unpaid_codes"].as_u64().unwrap().to_string());
        assert_eq!(csv[2], plain(owed));
    }
    let payments_text = pdf_text(&dir.join("payments.pdf"));
    let payments_rows = csv_rows(&dir.join(format!("payments-{period}.csv")));
    for row in of("payments") {
        let sub = row["sub"].as_str().unwrap();
        let amount = rounded(row, "amount");
        let cells = [count(row, "count"), printed(amount)];
        match sub.rsplit_once('/') {
            Some((channel, day)) => {
                let (y, m, d) = (&day[..4], &day[5..7], &day[8..10]);
                assert_line(&payments_text, &format!("{d}.{m}.{y}"), &cells, "payment day");
                let csv = payments_rows
                    .iter()
                    .find(|r| r[0] == channel && r[1] == day)
                    .expect("payment day csv row");
                assert_eq!(&csv[2..4], &[row["count"].as_u64().unwrap().to_string(), plain(amount)]);
            }
            None => {
                assert_line(&payments_text, sub, &cells, "payment channel month");
                let csv = payments_rows
                    .iter()
                    .find(|r| r[0] == sub && r[2] == row["count"].as_u64().unwrap().to_string() && r[1] != r[0])
                    .expect("channel month csv row");
                assert_eq!(csv[3], plain(amount));
            }
        }
    }
    let sla_text = pdf_text(&dir.join("sla.pdf"));
    let sla_rows = csv_rows(&dir.join(format!("sla-{period}.csv")));
    for row in of("sla") {
        let account = row["account"].as_str().unwrap();
        let fields = ["orders", "emitted_within_4h", "late", "pending"];
        assert_line(&sla_text, account, &fields.map(|f| count(row, f)), "sla row");
        let csv = csv_row(&sla_rows, 0, account, "sla csv");
        assert_eq!(&csv[1..5], &fields.map(|f| row[f].as_u64().unwrap().to_string()));
    }
}

#[test]
fn every_final_figure_of_the_golden_scenarios_is_in_the_documents_rounded() {
    // Renders each scenario's final periods in Russian and Kazakh and finds every figure of
    // every final record, rounded half-up, in the PDF text and the parsed CSV; checks that
    // acts and statements add up on their printed figures.
    let mut checked = 0;
    for entry in std::fs::read_dir(scenarios_dir()).unwrap() {
        let scenario = entry.unwrap().path();
        let periods_file = scenario.join("expected/periods.jsonl");
        if !periods_file.exists() {
            continue;
        }
        let latest = latest(&periods_file);
        let finals: Vec<&Value> = latest.values().filter(|r| r["final"] == true).collect();
        if finals.is_empty() {
            continue;
        }
        let records = LatestRecords::read_file(&periods_file).unwrap();
        for lang in [Lang::Ru, Lang::Kk] {
            let name = scenario.file_name().unwrap().to_string_lossy().to_string();
            let out = scratch(&format!("{name}-{}", lang.code()));
            let options = Options {
                lang,
                ..Options::default()
            };
            let report = render(&records, &options, &out).unwrap();
            let periods: std::collections::BTreeSet<&str> =
                finals.iter().map(|r| r["period"].as_str().unwrap()).collect();
            for period in periods {
                let dir = out.join(period);
                let in_period: Vec<&Value> = finals.iter().copied().filter(|r| r["period"] == period).collect();
                let accounts: std::collections::BTreeSet<&str> = in_period
                    .iter()
                    .map(|r| r["account"].as_str().unwrap())
                    .filter(|a| *a != "*")
                    .collect();
                for account in accounts {
                    let find = |kind: &str| {
                        in_period
                            .iter()
                            .copied()
                            .find(|r| r["kind"] == kind && r["account"] == account)
                    };
                    let products: Vec<&Value> = in_period
                        .iter()
                        .copied()
                        .filter(|r| r["kind"] == "product" && r["account"] == account)
                        .collect();
                    let records = Account {
                        act: find("act"),
                        reconciliation: find("reconciliation"),
                        products,
                    };
                    check_account_documents(&dir, period, lang, &records);
                }
                check_operator_documents(&dir, period, lang, &in_period);
                let title = match lang {
                    Lang::Kk => "Айналым ведомосі",
                    _ => "Оборотная ведомость",
                };
                assert!(pdf_text(&dir.join("turnover.pdf")).contains(title), "{lang:?} title");
                checked += in_period.len();
            }
            assert!(report.pdf_files > 0 && report.csv_files > 0);
            let _ = std::fs::remove_dir_all(&out);
        }
    }
    // Four scenarios close a period: 7 + 9 + 8 final records, and 11 left after the deletion
    // of termination_export_deletion (DOMAIN.md §9), each checked in 2 languages.
    assert_eq!(checked, 2 * (7 + 9 + 8 + 11), "final records checked");
}

#[test]
fn the_same_records_render_byte_identical_files() {
    // Renders one scenario (all periods, provisional included) twice into two directories
    // and compares every file byte for byte: nothing depends on the clock or hash order.
    let periods_file = scenarios_dir().join("late_event_into_closed_period/expected/periods.jsonl");
    let records = LatestRecords::read_file(&periods_file).unwrap();
    let options = Options {
        provisional: true,
        ..Options::default()
    };
    let (first, second) = (scratch("twice-1"), scratch("twice-2"));
    render(&records, &options, &first).unwrap();
    render(&records, &options, &second).unwrap();
    let mut files = 0;
    for period in std::fs::read_dir(&first).unwrap() {
        let period = period.unwrap().path();
        for file in std::fs::read_dir(&period).unwrap() {
            let file = file.unwrap().path();
            let twin = second.join(period.file_name().unwrap()).join(file.file_name().unwrap());
            let (a, b) = (std::fs::read(&file).unwrap(), std::fs::read(&twin).unwrap());
            assert!(a == b, "{} differs between two renders", file.display());
            files += 1;
        }
    }
    assert!(files >= 20, "both periods' documents compared ({files} files)");
    let _ = std::fs::remove_dir_all(&first);
    let _ = std::fs::remove_dir_all(&second);
}

#[test]
fn a_statement_that_rounding_breaks_says_so_and_still_closes() {
    // A reconciliation whose rounded movements miss the rounded closing (1.9952 → 2.00,
    // 3.0016 → 3.00, closing 3.9936 → 3.99, but 2.00 + 5.00 − 3.00 = 4.00): the PDF prints
    // a rounding line of −0,01 and the CSV's figures close with it.
    let dir = scratch("rounding");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("periods.jsonl");
    std::fs::write(
        &file,
        r#"{"kind":"reconciliation","account":"KZ-1","period":"2026-02","sub":null,"rev":1,"final":true,"opening":"1.9952","payments":"5.00","compensations":"0.00","services":"3.0016","refunds":"0.00","closing":"3.9936"}
"#,
    )
    .unwrap();
    let records = LatestRecords::read_file(&file).unwrap();
    render(&records, &Options::default(), &dir.join("out")).unwrap();
    let text = pdf_text(&dir.join("out/2026-02/reconciliation-KZ-1.pdf"));
    assert_line(&text, "± Разница округления", &["-0,01".to_string()], "rounding line");
    assert_line(
        &text,
        "Остаток неиспользованных денег на конец периода",
        &["3,99".to_string()],
        "closing",
    );
    let rows = csv_rows(&dir.join("out/2026-02/reconciliation-2026-02.csv"));
    assert_eq!(
        &rows[1][2..9],
        &["2.00", "5.00", "0.00", "3.00", "0.00", "-0.01", "3.99"]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
