//! Reading period records (INTERFACE.md "periods"): JSON lines from a run's `periods.jsonl`
//! or the values of the compacted `codes.periods` topic, one record per line or message.
//!
//! A consumer keeps the highest `rev` per key `kind/account/period[/sub]`; a record with
//! `"deleted": true` (a file run) or a null value (a Kafka tombstone) removes its key
//! (DOMAIN.md §9). Kinds this crate does not know are skipped, so a newer pipeline's extra
//! kinds do not stop the documents of the known ones.

use markledger_operators::output::{AggregateKind, PeriodKey};
use markledger_operators::{Money, Period};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;

/// The figures of one period record, as the documents use them. Timestamps stay the text
/// the pipeline wrote (Almaty local time with its offset).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Figures {
    /// Act of completed work.
    Act {
        /// Codes paid in the period.
        codes_paid: u64,
        /// Their net amount.
        net: Money,
        /// Their VAT.
        vat: Money,
        /// net + VAT.
        gross: Money,
    },
    /// Reconciliation statement.
    Reconciliation(Movements),
    /// Product detail of one GTIN.
    Product {
        /// Codes emitted.
        codes_emitted: u64,
        /// Codes applied.
        codes_applied: u64,
        /// Codes paid.
        codes_paid: u64,
        /// Earliest application `ts`.
        first_application: Option<String>,
        /// Latest application `ts`.
        last_application: Option<String>,
    },
    /// A turnover sheet row (the `"*"` row is the total).
    Turnover(Movements),
    /// A debtors list entry.
    Debtors {
        /// Codes in the FIFO queue at the month's end.
        unpaid_codes: u64,
        /// Their charges.
        amount_owed: Money,
        /// `ts` of the oldest unpaid application.
        oldest_unpaid_application: Option<String>,
    },
    /// A payment register row (a channel's month, or one of its days).
    Payments {
        /// Number of payments.
        count: u64,
        /// Their sum.
        amount: Money,
    },
    /// Emission SLA of an account's orders placed in the period.
    Sla {
        /// Orders placed.
        orders: u64,
        /// Emitted in full within 4 hours.
        emitted_within_4h: u64,
        /// Not emitted in full when their 4 hours ran out.
        late: u64,
        /// Neither emitted in full nor cancelled.
        pending: u64,
    },
    /// A refund due (no document of its own; kept so a period's finality counts it).
    RefundDue,
}

/// The money movements of a reconciliation statement or a turnover row:
/// `closing = opening + payments + compensations − services − refunds` exactly.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Movements {
    /// Balance at the period's start.
    pub opening: Money,
    /// Payments received (turnover: `paid`).
    pub payments: Money,
    /// Compensations credited.
    pub compensations: Money,
    /// Charges settled (turnover: `charged`).
    pub services: Money,
    /// Refunds paid out.
    pub refunds: Money,
    /// Balance at the period's end.
    pub closing: Money,
}

/// The newest revision of one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Latest {
    /// Its `rev`.
    pub rev: u64,
    /// `final`: the period is closed and the record never changes again.
    pub is_final: bool,
    /// Its figures; `None` once the key was deleted.
    pub figures: Option<Figures>,
}

/// Why records could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A line is not a period record.
    #[error("{origin}: not a period record: {detail}")]
    Malformed {
        /// Where: `file:line` or `topic/partition@offset`.
        origin: String,
        /// What was wrong.
        detail: String,
    },
}

/// The newest revision of every key read so far.
#[derive(Clone, Debug, Default)]
pub struct LatestRecords {
    records: BTreeMap<PeriodKey, Latest>,
    /// Lines read (records and deletions).
    pub lines: u64,
}

/// One line as the pipeline writes it; every figure field is optional here and checked
/// per kind.
#[derive(Deserialize)]
struct Line {
    kind: String,
    account: String,
    period: String,
    sub: Option<String>,
    rev: u64,
    #[serde(rename = "final", default)]
    is_final: bool,
    #[serde(default)]
    deleted: bool,
    codes_paid: Option<u64>,
    net: Option<Money>,
    vat: Option<Money>,
    gross: Option<Money>,
    opening: Option<Money>,
    payments: Option<Money>,
    compensations: Option<Money>,
    services: Option<Money>,
    refunds: Option<Money>,
    closing: Option<Money>,
    charged: Option<Money>,
    paid: Option<Money>,
    codes_emitted: Option<u64>,
    codes_applied: Option<u64>,
    first_application: Option<String>,
    last_application: Option<String>,
    unpaid_codes: Option<u64>,
    amount_owed: Option<Money>,
    oldest_unpaid_application: Option<String>,
    count: Option<u64>,
    amount: Option<Money>,
    orders: Option<u64>,
    emitted_within_4h: Option<u64>,
    late: Option<u64>,
    pending: Option<u64>,
}

fn need<T>(value: Option<T>, field: &str) -> Result<T, String> {
    value.ok_or_else(|| format!("missing field {field:?}"))
}

impl Line {
    fn figures(self, kind: AggregateKind) -> Result<Figures, String> {
        Ok(match kind {
            AggregateKind::Act => Figures::Act {
                codes_paid: need(self.codes_paid, "codes_paid")?,
                net: need(self.net, "net")?,
                vat: need(self.vat, "vat")?,
                gross: need(self.gross, "gross")?,
            },
            AggregateKind::Reconciliation => Figures::Reconciliation(Movements {
                opening: need(self.opening, "opening")?,
                payments: need(self.payments, "payments")?,
                compensations: need(self.compensations, "compensations")?,
                services: need(self.services, "services")?,
                refunds: need(self.refunds, "refunds")?,
                closing: need(self.closing, "closing")?,
            }),
            AggregateKind::Product => Figures::Product {
                codes_emitted: need(self.codes_emitted, "codes_emitted")?,
                codes_applied: need(self.codes_applied, "codes_applied")?,
                codes_paid: need(self.codes_paid, "codes_paid")?,
                first_application: self.first_application,
                last_application: self.last_application,
            },
            AggregateKind::Turnover => Figures::Turnover(Movements {
                opening: need(self.opening, "opening")?,
                payments: need(self.paid, "paid")?,
                compensations: need(self.compensations, "compensations")?,
                services: need(self.charged, "charged")?,
                refunds: need(self.refunds, "refunds")?,
                closing: need(self.closing, "closing")?,
            }),
            AggregateKind::Debtors => Figures::Debtors {
                unpaid_codes: need(self.unpaid_codes, "unpaid_codes")?,
                amount_owed: need(self.amount_owed, "amount_owed")?,
                oldest_unpaid_application: self.oldest_unpaid_application,
            },
            AggregateKind::Payments => Figures::Payments {
                count: need(self.count, "count")?,
                amount: need(self.amount, "amount")?,
            },
            AggregateKind::Sla => Figures::Sla {
                orders: need(self.orders, "orders")?,
                emitted_within_4h: need(self.emitted_within_4h, "emitted_within_4h")?,
                late: need(self.late, "late")?,
                pending: need(self.pending, "pending")?,
            },
            AggregateKind::RefundDue => Figures::RefundDue,
        })
    }
}

impl LatestRecords {
    /// An empty set.
    pub fn new() -> Self {
        LatestRecords::default()
    }

    /// Reads a `periods.jsonl` file.
    pub fn read_file(path: &Path) -> Result<LatestRecords, RecordError> {
        let io = |source| RecordError::Io {
            path: path.display().to_string(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
        let mut records = LatestRecords::new();
        let mut line = Vec::new();
        let mut number = 0u64;
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line).map_err(io)? == 0 {
                break;
            }
            number += 1;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            records.offer(&line, || format!("{}:{number}", path.display()))?;
        }
        Ok(records)
    }

    /// Takes one record (a JSON object); `origin` names it in an error.
    pub fn offer(&mut self, bytes: &[u8], origin: impl Fn() -> String) -> Result<(), RecordError> {
        let malformed = |detail: String| RecordError::Malformed {
            origin: origin(),
            detail,
        };
        let line: Line = serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
        self.lines += 1;
        let Some(kind) = AggregateKind::parse(&line.kind) else {
            return Ok(());
        };
        let period =
            Period::parse(&line.period).ok_or_else(|| malformed(format!("period {:?} is not YYYY-MM", line.period)))?;
        let key = PeriodKey {
            kind,
            account: line.account.clone(),
            period,
            sub: line.sub.clone(),
        };
        if self.records.get(&key).is_some_and(|kept| kept.rev >= line.rev) {
            return Ok(());
        }
        let (rev, is_final) = (line.rev, line.is_final);
        let figures = if line.deleted {
            None
        } else {
            Some(line.figures(kind).map_err(malformed)?)
        };
        self.records.insert(key, Latest { rev, is_final, figures });
        Ok(())
    }

    /// A Kafka tombstone: the key is deleted for good (DOMAIN.md §9), whatever arrives later.
    pub fn delete(&mut self, key: PeriodKey) {
        self.lines += 1;
        self.records.insert(
            key,
            Latest {
                rev: u64::MAX,
                is_final: true,
                figures: None,
            },
        );
    }

    /// Every key's newest revision that is not deleted, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&PeriodKey, &Latest)> {
        self.records.iter().filter(|(_, latest)| latest.figures.is_some())
    }

    /// The periods that have records, each with whether all of its records are final.
    pub fn periods(&self) -> BTreeMap<Period, bool> {
        let mut periods = BTreeMap::new();
        for (key, latest) in self.iter() {
            let all_final = periods.entry(key.period).or_insert(true);
            *all_final &= latest.is_final;
        }
        periods
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn money(text: &str) -> Money {
        text.parse().unwrap()
    }

    #[test]
    fn keeps_the_highest_rev_whatever_the_order() {
        // Offers three revisions of one act out of order and checks the rev-3 figures win.
        let mut records = LatestRecords::new();
        for rev in [2, 3, 1] {
            let line = format!(
                r#"{{"kind":"act","account":"A","period":"2026-01","sub":null,"rev":{rev},"final":{},"codes_paid":{rev},"net":"1.00","vat":"0.12","gross":"1.12"}}"#,
                rev == 3
            );
            records.offer(line.as_bytes(), String::new).unwrap();
        }
        let (_, latest) = records.iter().next().unwrap();
        assert_eq!(latest.rev, 3);
        assert!(latest.is_final);
        assert_eq!(
            latest.figures,
            Some(Figures::Act {
                codes_paid: 3,
                net: money("1.00"),
                vat: money("0.12"),
                gross: money("1.12")
            })
        );
        assert_eq!(records.periods(), BTreeMap::from([(Period::new(2026, 1), true)]));
    }

    #[test]
    fn a_deletion_removes_the_key_and_unknown_kinds_are_skipped() {
        // A deleted record's key disappears from iter(); an unknown kind is read without error.
        let mut records = LatestRecords::new();
        let lines = [
            r#"{"kind":"debtors","account":"A","period":"2026-01","sub":null,"rev":1,"final":true,"unpaid_codes":1,"amount_owed":"3.0016","oldest_unpaid_application":null}"#,
            r#"{"kind":"debtors","account":"A","period":"2026-01","sub":null,"rev":2,"final":true,"deleted":true}"#,
            r#"{"kind":"forecast","account":"A","period":"2026-01","sub":null,"rev":1,"final":true}"#,
        ];
        for line in lines {
            records.offer(line.as_bytes(), String::new).unwrap();
        }
        assert_eq!(records.iter().count(), 0);
        assert_eq!(records.lines, 3);
        let bad = records.offer(
            br#"{"kind":"act","account":"A","period":"2026-01","sub":null,"rev":1}"#,
            || "x:1".into(),
        );
        assert!(matches!(bad, Err(RecordError::Malformed { ref origin, .. }) if origin == "x:1"));
    }
}
