//! Test fixtures: hand-made events of all 11 types and unique temporary directories.
//!
//! The events cover what a codec can get wrong: the GS separator (U+001D) inside codes,
//! quotes, backslashes and Cyrillic in free text, a millisecond timestamp, an input offset
//! other than Almaty's, an empty code list and a long one.

use markledger_operators::event::{Body, DecimalField};
use markledger_operators::{Event, Ts};
use rust_decimal::Decimal;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

/// A code with the GS1 group separator before its crypto tail.
pub(crate) const CODE_WITH_GS: &str = "0104601234567893215abc\u{1d}91EE06\u{1d}92tail";

pub(crate) fn ts(text: &str) -> Ts {
    Ts::parse_rfc3339(text).unwrap()
}

pub(crate) fn decimal(text: &str) -> DecimalField {
    DecimalField::Parsed(Decimal::from_str(text).unwrap())
}

fn event(id: &str, at: &str, account: &str, body: Body) -> Event {
    Event {
        id: id.to_owned(),
        ts: ts(at),
        account: account.to_owned(),
        body,
    }
}

fn codes(list: &[&str]) -> Vec<String> {
    list.iter().map(|code| (*code).to_owned()).collect()
}

/// One or more events of every type, all well-formed, all with parsed decimals.
pub(crate) fn every_kind() -> Vec<Event> {
    let account = "KZ-940000000017";
    vec![
        event(
            "tariff-2026",
            "2025-12-20T10:00:00+05:00",
            "*",
            Body::Tariff {
                effective_from: ts("2026-01-01T00:00:00+05:00"),
                net_price: decimal("2.68"),
                vat_rate: decimal("0.12"),
            },
        ),
        event(
            "st7-000001",
            "2026-01-15T09:00:00.250+05:00",
            account,
            Body::Payment {
                amount: decimal("1000.00"),
                channel: "Halyk Bank".to_owned(),
            },
        ),
        event(
            "op-comp-1",
            "2026-01-15T04:00:00Z",
            account,
            Body::Compensation {
                amount: decimal("15.5"),
                reason: "outage \"INC-7\" \\ сбой сервиса".to_owned(),
            },
        ),
        event(
            "st7-000002",
            "2026-01-15T09:10:00+05:00",
            account,
            Body::Order {
                order: "ORD-1".to_owned(),
                gtin: "04601234567893".to_owned(),
                quantity: 3,
            },
        ),
        event(
            "st7-000003",
            "2026-01-15T09:11:00+05:00",
            account,
            Body::OrderCancel {
                order: "ORD-2/отмена".to_owned(),
            },
        ),
        event(
            "st7-000004",
            "2026-01-15T09:20:00+05:00",
            account,
            Body::Emission {
                order: "ORD-1".to_owned(),
                gtin: "04601234567893".to_owned(),
                codes: codes(&[CODE_WITH_GS, "010460123456789321sN3xkQ", "x"]),
            },
        ),
        event(
            "st7-000123",
            "2026-01-15T09:30:00+05:00",
            account,
            Body::Application {
                report: "R-881".to_owned(),
                codes: codes(&["010460123456789321sN3xkQ", "010460123456789321sN3xkR"]),
            },
        ),
        event(
            "st7-000124",
            "2026-01-15T09:31:00+05:00",
            account,
            Body::Application {
                report: String::new(),
                codes: (0..500).map(|i| format!("0104601234567893{i:08}")).collect(),
            },
        ),
        event(
            "st7-000125",
            "2026-01-15T09:40:00+05:00",
            account,
            Body::Dropout {
                codes: codes(&[CODE_WITH_GS]),
                reason: String::new(),
            },
        ),
        event(
            "st7-000126",
            "2026-01-16T11:00:00+05:00",
            account,
            Body::Defect {
                codes: codes(&["010460123456789321sN3xkR"]),
                act_date: chrono::NaiveDate::from_ymd_opt(2026, 1, 14).unwrap(),
            },
        ),
        event(
            "st7-000127",
            "2026-01-16T12:00:00+05:00",
            account,
            Body::Introduction { codes: Vec::new() },
        ),
        event(
            "st7-000128",
            "2026-02-01T12:00:00+05:00",
            account,
            Body::Refund {
                amount: decimal("-0.01"),
            },
        ),
        event("st7-000129", "2026-02-02T12:00:00+05:00", account, Body::Terminate),
        event("st7-000130", "2026-02-03T12:00:00+05:00", account, Body::Export),
    ]
}

/// A fresh, empty directory under the system temp dir, removed when dropped.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.subsec_nanos())
            .unwrap_or(0);
        let unique = format!(
            "markledger-connectors-{name}-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(unique);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    pub(crate) fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
