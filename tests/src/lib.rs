//! Test support shared by markledger's cross-crate tests: builders for input lines in the
//! wire format of INTERFACE.md, a runner that feeds them through the real JSON decoder
//! into an engine, and queries over the outputs; [`broker`] runs a real Kafka broker
//! (tansu) for the Kafka connector tests; [`process`] holds what the tests running the
//! binary as a process share (scratch directories, ports, SIGTERM, metrics scrapes).

#![deny(missing_docs)]

pub mod broker;
pub mod compare;
pub mod process;

use markledger::config::Config;
use markledger::reference;
use markledger::summary::Summary;
use markledger_connectors::codec::json::decode_event;
use markledger_connectors::codec::Decoded;
use markledger_operators::output::{
    AggregateKind, BalanceRecord, Deletion, ExportLine, Figures, LedgerEntry, Output, PeriodRecord, Rejection,
    StatusChange,
};
use markledger_operators::{Money, Period, Reason, Status};
use std::collections::BTreeMap;
use std::str::FromStr;

/// The `markledger` binary of this build, brought up to date once per test process: a
/// `cargo test -p markledger-tests` does not build the binary of a dependency, and a stale
/// one would test old code.
pub fn markledger_binary() -> std::path::PathBuf {
    static BUILT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().expect("test binary");
            let dir = exe.parent().and_then(std::path::Path::parent).expect("target dir");
            let mut build = std::process::Command::new(env!("CARGO"));
            build.args(["build", "--quiet", "-p", "markledger", "--bin", "markledger"]);
            if dir.file_name().is_some_and(|name| name == "release") {
                build.arg("--release");
            }
            let status = build.status().expect("cargo build");
            assert!(status.success(), "building markledger");
            dir.join("markledger")
        })
        .clone()
}

/// The shipped configuration (Kazakhstan calendar, DOMAIN.md defaults).
pub fn default_config() -> Config {
    Config::with_calendar(markledger_datasets::calendars::kazakhstan())
}

/// An exact amount from text.
pub fn dec(text: &str) -> Money {
    Money::from_str(text).expect("test amount")
}

/// A JSON string literal.
fn q(text: &str) -> String {
    serde_json::to_string(text).expect("string")
}

fn codes_json(codes: &[&str]) -> String {
    let items: Vec<String> = codes.iter().map(|c| q(c)).collect();
    format!("[{}]", items.join(","))
}

/// `payment`.
pub fn payment(id: &str, ts: &str, account: &str, amount: &str, channel: &str) -> String {
    format!(
        r#"{{"id":{},"type":"payment","ts":{},"account":{},"amount":{},"channel":{}}}"#,
        q(id),
        q(ts),
        q(account),
        q(amount),
        q(channel)
    )
}

/// `compensation`.
pub fn compensation(id: &str, ts: &str, account: &str, amount: &str) -> String {
    format!(
        r#"{{"id":{},"type":"compensation","ts":{},"account":{},"amount":{},"reason":"service outage"}}"#,
        q(id),
        q(ts),
        q(account),
        q(amount)
    )
}

/// `refund`.
pub fn refund(id: &str, ts: &str, account: &str, amount: &str) -> String {
    format!(
        r#"{{"id":{},"type":"refund","ts":{},"account":{},"amount":{}}}"#,
        q(id),
        q(ts),
        q(account),
        q(amount)
    )
}

/// `terminate` (DOMAIN.md §9).
pub fn terminate(id: &str, ts: &str, account: &str) -> String {
    format!(
        r#"{{"id":{},"type":"terminate","ts":{},"account":{}}}"#,
        q(id),
        q(ts),
        q(account)
    )
}

/// `export` (DOMAIN.md §9).
pub fn export(id: &str, ts: &str, account: &str) -> String {
    format!(
        r#"{{"id":{},"type":"export","ts":{},"account":{}}}"#,
        q(id),
        q(ts),
        q(account)
    )
}

/// `order`.
pub fn order(id: &str, ts: &str, account: &str, order: &str, gtin: &str, quantity: u64) -> String {
    format!(
        r#"{{"id":{},"type":"order","ts":{},"account":{},"order":{},"gtin":{},"quantity":{quantity}}}"#,
        q(id),
        q(ts),
        q(account),
        q(order),
        q(gtin)
    )
}

/// `order_cancel`.
pub fn order_cancel(id: &str, ts: &str, account: &str, order: &str) -> String {
    format!(
        r#"{{"id":{},"type":"order_cancel","ts":{},"account":{},"order":{}}}"#,
        q(id),
        q(ts),
        q(account),
        q(order)
    )
}

/// `emission`.
pub fn emission(id: &str, ts: &str, account: &str, order: &str, gtin: &str, codes: &[&str]) -> String {
    format!(
        r#"{{"id":{},"type":"emission","ts":{},"account":{},"order":{},"gtin":{},"codes":{}}}"#,
        q(id),
        q(ts),
        q(account),
        q(order),
        q(gtin),
        codes_json(codes)
    )
}

/// `application`.
pub fn application(id: &str, ts: &str, account: &str, codes: &[&str]) -> String {
    format!(
        r#"{{"id":{},"type":"application","ts":{},"account":{},"report":"R-{}","codes":{}}}"#,
        q(id),
        q(ts),
        q(account),
        id,
        codes_json(codes)
    )
}

/// `dropout`.
pub fn dropout(id: &str, ts: &str, account: &str, codes: &[&str]) -> String {
    format!(
        r#"{{"id":{},"type":"dropout","ts":{},"account":{},"codes":{},"reason":"smudged print"}}"#,
        q(id),
        q(ts),
        q(account),
        codes_json(codes)
    )
}

/// `defect`.
pub fn defect(id: &str, ts: &str, account: &str, act_date: &str, codes: &[&str]) -> String {
    format!(
        r#"{{"id":{},"type":"defect","ts":{},"account":{},"codes":{},"act_date":{}}}"#,
        q(id),
        q(ts),
        q(account),
        codes_json(codes),
        q(act_date)
    )
}

/// `introduction`.
pub fn introduction(id: &str, ts: &str, account: &str, codes: &[&str]) -> String {
    format!(
        r#"{{"id":{},"type":"introduction","ts":{},"account":{},"codes":{}}}"#,
        q(id),
        q(ts),
        q(account),
        codes_json(codes)
    )
}

/// `tariff`.
pub fn tariff(id: &str, ts: &str, effective_from: &str, net_price: &str, vat_rate: &str) -> String {
    format!(
        r#"{{"id":{},"type":"tariff","ts":{},"account":"*","effective_from":{},"net_price":{},"vat_rate":{}}}"#,
        q(id),
        q(ts),
        q(effective_from),
        q(net_price),
        q(vat_rate)
    )
}

/// A valid GTIN used throughout the tests.
pub const GTIN: &str = "04601234567893";
/// A second valid GTIN.
pub const GTIN2: &str = "04607654321091";

/// Everything one engine run produced.
pub struct Outcome {
    /// Outputs in emission order.
    pub outputs: Vec<Output>,
    /// The engine's summary.
    pub summary: Summary,
}

/// Runs the reference engine with the default configuration on partitions of JSON lines.
pub fn run(partitions: &[Vec<String>]) -> Outcome {
    run_with(&default_config(), partitions)
}

/// Runs the reference engine on partitions of JSON lines, and checks that the dataflow
/// engine on 1 and 3 workers produces the same multiset of output records, in the same
/// order per key (each account's balance and status records, each period record's
/// revisions: [`compare::diff_strict`]).
pub fn run_with(config: &Config, partitions: &[Vec<String>]) -> Outcome {
    let outcome = run_reference_only(config, partitions);
    let decoded = decode(partitions);
    let expected = multiset(&outcome.outputs);
    let reference = compare::canonical(&outcome.outputs);
    for workers in [1, 3] {
        let outputs = markledger::runtime::run(config, decoded.clone(), workers);
        let actual = multiset(&outputs);
        if actual != expected {
            let missing: Vec<_> = expected.iter().filter(|l| !actual.contains(l)).take(8).collect();
            let extra: Vec<_> = actual.iter().filter(|l| !expected.contains(l)).take(8).collect();
            panic!("dataflow on {workers} workers differs from the reference:\nmissing {missing:#?}\nextra {extra:#?}");
        }
        let dataflow = compare::canonical(&outputs);
        let differences = compare::diff_strict(&reference, &dataflow, "reference", "dataflow");
        assert!(
            differences.is_empty(),
            "dataflow on {workers} workers orders records differently:\n{}",
            differences.join("\n")
        );
    }
    outcome
}

/// Runs only the reference engine (for rules the dataflow does not implement yet).
pub fn run_reference_only(config: &Config, partitions: &[Vec<String>]) -> Outcome {
    let (summary, outputs) = reference::run(config, decode(partitions), Vec::new(), &mut |_, _| {});
    let outcome = Outcome { outputs, summary };
    outcome.assert_reconciliation_identity();
    outcome.assert_details_for_people();
    outcome
}

fn decode(partitions: &[Vec<String>]) -> Vec<Vec<Decoded>> {
    partitions
        .iter()
        .map(|lines| lines.iter().map(|line| decode_event(line.as_bytes())).collect())
        .collect()
}

/// Output records as a sorted multiset of their debug text (engines interleave workers).
pub fn multiset(outputs: &[Output]) -> Vec<String> {
    let mut lines: Vec<String> = outputs.iter().map(|output| format!("{output:?}")).collect();
    lines.sort();
    lines
}

impl Outcome {
    /// No rejection's detail shows Rust debug formatting (`Parsed(2.68)`, `Utf8 { … }`).
    pub fn assert_details_for_people(&self) {
        for rejection in self.rejections() {
            if let Err(why) = markledger_operators::wording::for_people(&rejection.detail) {
                panic!("{why}: {rejection:?}");
            }
        }
    }

    /// Every rejection record.
    pub fn rejections(&self) -> Vec<&Rejection> {
        self.outputs
            .iter()
            .filter_map(|o| if let Output::Rejection(r) = o { Some(r) } else { None })
            .collect()
    }

    /// (event, reason) of every rejection.
    pub fn reasons(&self) -> Vec<(Option<&str>, Reason)> {
        self.refusals()
            .into_iter()
            .map(|(event, _, reason)| (event, reason))
            .collect()
    }

    /// (event, code, reason) of every rejection.
    pub fn refusals(&self) -> Vec<(Option<&str>, Option<&str>, Reason)> {
        self.rejections()
            .into_iter()
            .map(|r| (r.event.as_deref(), r.code.as_deref(), r.reason))
            .collect()
    }

    /// Every export line (DOMAIN.md §9).
    pub fn exports(&self) -> Vec<&ExportLine> {
        self.outputs
            .iter()
            .filter_map(|o| if let Output::Export(e) = o { Some(e) } else { None })
            .collect()
    }

    /// Every deletion (DOMAIN.md §9).
    pub fn deletions(&self) -> Vec<&Deletion> {
        self.outputs
            .iter()
            .filter_map(|o| if let Output::Deleted(d) = o { Some(d) } else { None })
            .collect()
    }

    /// Every balance record of an account, in order.
    pub fn balances(&self, account: &str) -> Vec<&BalanceRecord> {
        self.outputs
            .iter()
            .filter_map(|o| if let Output::Balance(b) = o { Some(b) } else { None })
            .filter(|b| b.account == account)
            .collect()
    }

    /// Every status change.
    pub fn status_changes(&self) -> Vec<&StatusChange> {
        self.outputs
            .iter()
            .filter_map(|o| if let Output::Status(s) = o { Some(s) } else { None })
            .collect()
    }

    /// The status a code ended in (its last change), if it ever had one.
    pub fn status_of(&self, code: &str) -> Option<Status> {
        self.status_changes()
            .into_iter()
            .filter(|s| s.codes.iter().any(|c| c == code))
            .map(|s| s.to)
            .next_back()
    }

    /// Ledger entries of an account, in order.
    pub fn ledger(&self, account: &str) -> Vec<&LedgerEntry> {
        self.outputs
            .iter()
            .filter_map(|o| if let Output::Ledger(l) = o { Some(l) } else { None })
            .filter(|l| l.account == account)
            .collect()
    }

    /// The last balance record of an account.
    pub fn balance(&self, account: &str) -> &BalanceRecord {
        self.outputs
            .iter()
            .filter_map(|o| if let Output::Balance(b) = o { Some(b) } else { None })
            .rfind(|b| b.account == account)
            .unwrap_or_else(|| panic!("no balance record for {account}"))
    }

    /// (balance, unpaid codes, unpaid amount) of an account's last balance record.
    pub fn balance_figures(&self, account: &str) -> (Money, u64, Money) {
        let balance = self.balance(account);
        (balance.balance, balance.unpaid_codes, balance.unpaid_amount)
    }

    /// All revisions of period records.
    pub fn period_records(&self) -> Vec<&PeriodRecord> {
        self.outputs
            .iter()
            .filter_map(|o| if let Output::Period(p) = o { Some(p) } else { None })
            .collect()
    }

    /// The highest revision of a period record, if it exists.
    pub fn period(&self, kind: AggregateKind, account: &str, period: &str, sub: Option<&str>) -> Option<&PeriodRecord> {
        let period = Period::parse(period).expect("YYYY-MM");
        self.period_records()
            .into_iter()
            .filter(|r| {
                r.key.kind == kind && r.key.account == account && r.key.period == period && r.key.sub.as_deref() == sub
            })
            .max_by_key(|r| r.rev)
    }

    /// The highest revision of every period record by key.
    pub fn latest_periods(&self) -> BTreeMap<String, &PeriodRecord> {
        let mut latest: BTreeMap<String, &PeriodRecord> = BTreeMap::new();
        for record in self.period_records() {
            let key = record.key.render();
            if latest.get(&key).is_none_or(|r| r.rev < record.rev) {
                latest.insert(key, record);
            }
        }
        latest
    }

    /// DOMAIN.md §6: every reconciliation revision closes exactly, every revision number
    /// increases per key, and nothing changes after a final revision.
    pub fn assert_reconciliation_identity(&self) {
        let mut last: BTreeMap<String, (u64, bool)> = BTreeMap::new();
        for record in self.period_records() {
            if let Figures::Reconciliation {
                opening,
                payments,
                compensations,
                services,
                refunds,
                closing,
            } = &record.figures
            {
                assert_eq!(
                    *closing,
                    opening + payments + compensations - services - refunds,
                    "reconciliation identity broken: {record:?}"
                );
            }
            let key = record.key.render();
            if let Some((rev, was_final)) = last.get(&key) {
                assert!(record.rev > *rev, "rev did not increase for {key}");
                assert!(!was_final, "{key} changed after its final revision");
            }
            last.insert(key, (record.rev, record.is_final));
        }
    }
}
