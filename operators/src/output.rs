//! Output records (INTERFACE.md "Outputs"), shared by every engine.
//!
//! Engines emit [`Output`]s into a [`Sink`]; connectors render them (JSON lines, Kafka).

use crate::money::Money;
use crate::reason::Reason;
use crate::status::Status;
use crate::time::{Period, Ts};

/// A group of codes of one product that changed status for one cause.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct StatusChange {
    /// The cause event's id; `None` for a time-driven change (expiry).
    pub event: Option<String>,
    /// The account owning the codes.
    pub account: String,
    /// The codes' product.
    pub gtin: String,
    /// Previous status; `None` for new codes.
    pub from: Option<Status>,
    /// New status.
    pub to: Status,
    /// The cause's `ts`, or the instant of a time-driven change.
    pub ts: Ts,
    /// The cause arrived late (DOMAIN.md §4).
    pub late: bool,
    /// The codes, in the order they changed.
    pub codes: Vec<String>,
}

/// Kinds of ledger entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum Entry {
    /// A top-up.
    Payment,
    /// An operator credit.
    Compensation,
    /// Codes settled from the balance.
    Charge,
    /// Advance returned.
    Refund,
}

impl Entry {
    /// The wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Entry::Payment => "payment",
            Entry::Compensation => "compensation",
            Entry::Charge => "charge",
            Entry::Refund => "refund",
        }
    }
}

/// One movement of an account's balance.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct LedgerEntry {
    /// The account.
    pub account: String,
    /// What moved.
    pub entry: Entry,
    /// The amount moved (positive).
    pub amount: Money,
    /// The balance after this entry.
    pub balance: Money,
    /// The cause event's `ts`.
    pub ts: Ts,
    /// The cause event's id.
    pub event: String,
    /// Codes settled (charges only).
    pub codes: Option<u64>,
    /// The cause arrived late.
    pub late: bool,
    /// The period the movement is accounted in (differs from the period of `ts` for an
    /// adjustment into the oldest open period, DOMAIN.md §6).
    pub period: Period,
}

/// The latest state of an account.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct BalanceRecord {
    /// The account.
    pub account: String,
    /// Credits − debits, exact.
    pub balance: Money,
    /// Codes in the FIFO queue (annulled ones included).
    pub unpaid_codes: u64,
    /// Their charges.
    pub unpaid_amount: Money,
    /// Orders neither emitted in full nor cancelled.
    pub pending_orders: u64,
    /// The `ts` of the latest event that changed it.
    pub ts: Ts,
    /// The account's balance revision: 1 for its first record, one more for each next one.
    /// On the compacted Kafka topic a consumer keeps the highest (a restart may re-produce
    /// an older record after a newer one; INTERFACE.md consumers, CHANGELOG.md).
    pub rev: u64,
}

/// One refused input, or one refused code of it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Rejection {
    /// The event id, when one could be read.
    pub event: Option<String>,
    /// The event `type`, when one could be read.
    pub event_type: Option<String>,
    /// The account, when one could be read.
    pub account: Option<String>,
    /// The refused code, for per-code refusals.
    pub code: Option<String>,
    /// Stable reason code.
    pub reason: Reason,
    /// Human-readable detail.
    pub detail: String,
    /// For `MALFORMED`: the input, truncated to [`RAW_BYTES_MAX`].
    pub raw: Option<String>,
}

impl Rejection {
    /// The refusal of a well-formed event, or of one `code` of it.
    pub fn of_event(
        id: &str,
        event_type: &str,
        account: &str,
        code: Option<&str>,
        reason: Reason,
        detail: String,
    ) -> Self {
        Rejection {
            event: Some(id.to_string()),
            event_type: Some(event_type.to_string()),
            account: Some(account.to_string()),
            code: code.map(str::to_string),
            reason,
            detail,
            raw: None,
        }
    }
}

/// How much of a malformed input a rejection keeps.
pub const RAW_BYTES_MAX: usize = 1024;

/// Kinds of period aggregates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum AggregateKind {
    /// Act of completed work.
    Act,
    /// Reconciliation statement.
    Reconciliation,
    /// Product detail per GTIN.
    Product,
    /// Turnover sheet row.
    Turnover,
    /// Debtors list entry.
    Debtors,
    /// Payment register row.
    Payments,
    /// Emission SLA.
    Sla,
    /// Dormant advance to refund.
    RefundDue,
}

impl AggregateKind {
    /// The wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            AggregateKind::Act => "act",
            AggregateKind::Reconciliation => "reconciliation",
            AggregateKind::Product => "product",
            AggregateKind::Turnover => "turnover",
            AggregateKind::Debtors => "debtors",
            AggregateKind::Payments => "payments",
            AggregateKind::Sla => "sla",
            AggregateKind::RefundDue => "refund_due",
        }
    }

    /// Parses the wire form.
    pub fn parse(text: &str) -> Option<AggregateKind> {
        [
            AggregateKind::Act,
            AggregateKind::Reconciliation,
            AggregateKind::Product,
            AggregateKind::Turnover,
            AggregateKind::Debtors,
            AggregateKind::Payments,
            AggregateKind::Sla,
            AggregateKind::RefundDue,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == text)
    }
}

/// The key of a period aggregate: `kind/account/period[/sub]`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct PeriodKey {
    /// Which aggregate.
    pub kind: AggregateKind,
    /// The account, or `"*"` for totals and registers.
    pub account: String,
    /// The billing period.
    pub period: Period,
    /// GTIN (product), channel or `channel/YYYY-MM-DD` (payments).
    pub sub: Option<String>,
}

impl PeriodKey {
    /// The Kafka key / display form `kind/account/period[/sub]`.
    pub fn render(&self) -> String {
        match &self.sub {
            Some(sub) => format!("{}/{}/{}/{}", self.kind.as_str(), self.account, self.period, sub),
            None => format!("{}/{}/{}", self.kind.as_str(), self.account, self.period),
        }
    }
}

/// The figures of one aggregate record.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum Figures {
    /// Act of completed work: codes paid in the period.
    Act {
        /// Codes paid.
        codes_paid: u64,
        /// Their net amount.
        net: Money,
        /// Their VAT.
        vat: Money,
        /// net + VAT.
        gross: Money,
    },
    /// Reconciliation statement; `closing = opening + payments + compensations − services
    /// − refunds` exactly.
    Reconciliation {
        /// The previous period's closing.
        opening: Money,
        /// Payments received.
        payments: Money,
        /// Compensations credited.
        compensations: Money,
        /// Charges settled.
        services: Money,
        /// Refunds paid out.
        refunds: Money,
        /// Closing balance.
        closing: Money,
    },
    /// Product detail for one GTIN.
    Product {
        /// Codes emitted.
        codes_emitted: u64,
        /// Codes applied.
        codes_applied: u64,
        /// Codes paid.
        codes_paid: u64,
        /// Earliest application `ts`.
        first_application: Option<Ts>,
        /// Latest application `ts`.
        last_application: Option<Ts>,
    },
    /// Turnover sheet row (or the `"*"` total row).
    Turnover {
        /// Opening balance.
        opening: Money,
        /// Charges settled.
        charged: Money,
        /// Payments received.
        paid: Money,
        /// Compensations credited.
        compensations: Money,
        /// Refunds paid out.
        refunds: Money,
        /// Closing balance.
        closing: Money,
    },
    /// Debtors list entry: a snapshot at the month's end.
    Debtors {
        /// Codes in the FIFO queue.
        unpaid_codes: u64,
        /// Their charges.
        amount_owed: Money,
        /// `ts` of the oldest unpaid application.
        oldest_unpaid_application: Option<Ts>,
    },
    /// Payment register row.
    Payments {
        /// Number of payments.
        count: u64,
        /// Their sum.
        amount: Money,
    },
    /// Emission SLA of the orders placed in the period.
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
    /// An advance owed back: dormant for a year, or held when the contract ended.
    RefundDue {
        /// The balance when the year passed, or at termination.
        balance: Money,
        /// The later of the last payment and the last charge; the termination's instant.
        since: Ts,
        /// Why it is owed (DOMAIN.md §9: `dormant` or `termination`).
        reason: RefundReason,
    },
}

/// Why a `refund_due` record exists (DOMAIN.md §3 dormant advance, §9 termination).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum RefundReason {
    /// A year passed without a charge or payment.
    Dormant,
    /// The account's contract ended with a positive balance.
    Termination,
}

impl RefundReason {
    /// The wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            RefundReason::Dormant => "dormant",
            RefundReason::Termination => "termination",
        }
    }

    /// Parses the wire form.
    pub fn parse(text: &str) -> Option<RefundReason> {
        [RefundReason::Dormant, RefundReason::Termination]
            .into_iter()
            .find(|reason| reason.as_str() == text)
    }
}

impl Figures {
    /// True when every figure is zero (such a record does not exist, DOMAIN.md §8).
    pub fn is_zero(&self) -> bool {
        match self {
            Figures::Act {
                codes_paid,
                net,
                vat,
                gross,
            } => *codes_paid == 0 && net.is_zero() && vat.is_zero() && gross.is_zero(),
            Figures::Reconciliation {
                opening,
                payments,
                compensations,
                services,
                refunds,
                closing,
            } => [opening, payments, compensations, services, refunds, closing]
                .iter()
                .all(|m| m.is_zero()),
            Figures::Product {
                codes_emitted,
                codes_applied,
                codes_paid,
                ..
            } => *codes_emitted == 0 && *codes_applied == 0 && *codes_paid == 0,
            Figures::Turnover {
                opening,
                charged,
                paid,
                compensations,
                refunds,
                closing,
            } => [opening, charged, paid, compensations, refunds, closing]
                .iter()
                .all(|m| m.is_zero()),
            Figures::Debtors {
                unpaid_codes,
                amount_owed,
                ..
            } => *unpaid_codes == 0 && amount_owed.is_zero(),
            Figures::Payments { count, amount } => *count == 0 && amount.is_zero(),
            Figures::Sla {
                orders,
                emitted_within_4h,
                late,
                pending,
            } => *orders == 0 && *emitted_within_4h == 0 && *late == 0 && *pending == 0,
            Figures::RefundDue { balance, .. } => balance.is_zero(),
        }
    }
}

/// One revision of a period aggregate.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct PeriodRecord {
    /// `kind/account/period[/sub]`.
    pub key: PeriodKey,
    /// Increases with every change of the record; a consumer keeps the highest.
    pub rev: u64,
    /// True once the period is closed: the record never changes again.
    pub is_final: bool,
    /// The figures.
    pub figures: Figures,
}

/// A key of a compacted output removed when its account is deleted (DOMAIN.md §9): a
/// `"deleted": true` record in files, a tombstone (null value) on Kafka.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum Deletion {
    /// The account's `balances` key.
    Balance {
        /// The account.
        account: String,
        /// The next balance revision.
        rev: u64,
        /// The deletion's instant.
        ts: Ts,
    },
    /// One `periods` key of the account.
    Period {
        /// The key.
        key: PeriodKey,
        /// The next revision of the key.
        rev: u64,
    },
}

impl Deletion {
    /// The account whose key this is.
    pub fn account(&self) -> &str {
        match self {
            Deletion::Balance { account, .. } => account,
            Deletion::Period { key, .. } => &key.account,
        }
    }
}

/// One line of an export delivery (DOMAIN.md §9, INTERFACE.md "Exports").
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct ExportLine {
    /// The `export` request's event id.
    pub export: String,
    /// The account exported.
    pub account: String,
    /// The delivery instant.
    pub ts: Ts,
    /// A record, or the closing line.
    pub item: ExportItem,
}

/// What an export line carries.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum ExportItem {
    /// One final period record of the account, numbered from 1 in each delivery.
    Record {
        /// Position in the delivery, from 1.
        seq: u64,
        /// The period record as it stands at delivery.
        record: PeriodRecord,
    },
    /// The delivery's last line: how many records it held.
    Complete {
        /// Records delivered.
        records: u64,
    },
}

/// Anything an engine emits.
// Serializable: a cluster's file run sends every output to process 0 (pipeline/src/cluster.rs).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Output {
    /// A status change.
    Status(StatusChange),
    /// A ledger entry.
    Ledger(LedgerEntry),
    /// An account's latest state.
    Balance(BalanceRecord),
    /// A refusal.
    Rejection(Rejection),
    /// A period aggregate revision.
    Period(PeriodRecord),
    /// A key of a deleted account removed from `balances` or `periods` (DOMAIN.md §9).
    Deleted(Deletion),
    /// One line of an export delivery (DOMAIN.md §9).
    Export(ExportLine),
}

/// Where an engine's outputs go: files, a topic, memory. The one sink interface of both
/// engines: outputs come in batches, each made at one instant (`time`, the dataflow's
/// timestamp); `frontier` says which instants are complete (none before its least element
/// can come any more); `finish` ends the run and gives back what the sink made of it.
pub trait Sink {
    /// What the sink gives back when the run ends.
    type Done;
    /// Takes (drains) a batch of outputs made at `time`.
    fn emit(&mut self, time: crate::time::Time, outputs: &mut Vec<Output>);
    /// Outputs at times before `frontier` are all emitted.
    fn frontier(&mut self, _frontier: &[crate::time::Time]) {}
    /// The run ended.
    fn finish(self) -> Self::Done;
}

/// Keeps every output in memory, in the order emitted (tests; file runs sort them).
impl Sink for Vec<Output> {
    type Done = Vec<Output>;

    fn emit(&mut self, _time: crate::time::Time, outputs: &mut Vec<Output>) {
        self.append(outputs);
    }

    fn finish(self) -> Vec<Output> {
        self
    }
}
