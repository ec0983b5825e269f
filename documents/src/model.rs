//! The documents of one period, built from the newest period records and rounded for
//! rendering (DOMAIN.md §3: half-up to 2 decimals, only here).
//!
//! In: [`LatestRecords`]. Out: a [`PeriodDocuments`] per period, language-free; the CSV and
//! PDF renderers only format it. Every figure keeps its exact value and is rounded once, by
//! [`round_document`]. Where rounded rows do not add up to the rounded total, the document
//! carries the difference as a rounding line ([`rounding_difference`]) instead of hiding
//! it; a reconciliation statement shows each figure rounded, its closing rounded from the
//! exact closing, and a rounding line when the rounded movements do not reach that closing,
//! so it still closes on its own printed figures (docs/ARCHITECTURE.md "Billing documents").

use crate::records::{Figures, LatestRecords, Movements};
use markledger_operators::money::round_document;
use markledger_operators::output::AggregateKind;
use markledger_operators::{Money, Period};
use std::collections::BTreeMap;

/// The document number of a kind, period and (for a client's document) account:
/// `ACT-2026-01-KZ-940000000017`, `TRN-2026-01`. A function of the key alone, so the same
/// records always give the same numbers, whatever else is rendered with them.
pub fn document_number(prefix: &str, period: Period, account: Option<&str>) -> String {
    match account {
        Some(account) => format!("{prefix}-{period}-{account}"),
        None => format!("{prefix}-{period}"),
    }
}

/// `round(total) − Σ round(row)`: what a rounding line must show so the printed rows add
/// up to the printed total; `None` when they already do.
pub fn rounding_difference(rows: impl IntoIterator<Item = Money>, total: Money) -> Option<Money> {
    let printed: Money = rows.into_iter().map(round_document).sum();
    let difference = round_document(total) - printed;
    (!difference.is_zero()).then_some(difference)
}

/// Act of completed work (000 §6.5) of one account, with its product detail (§6.9).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Act {
    /// Document number.
    pub number: String,
    /// The client's account.
    pub account: String,
    /// Codes paid in the period.
    pub codes_paid: u64,
    /// Net amount, rounded.
    pub net: Money,
    /// VAT, rounded.
    pub vat: Money,
    /// `gross` rounded from the exact gross.
    pub gross: Money,
    /// `gross − (net + vat)` of the rounded figures, when not zero.
    pub rounding: Option<Money>,
    /// One row per GTIN, in GTIN order.
    pub products: Vec<ProductRow>,
}

/// The product detail of one GTIN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProductRow {
    /// The GTIN.
    pub gtin: String,
    /// Codes emitted.
    pub codes_emitted: u64,
    /// Codes applied.
    pub codes_applied: u64,
    /// Codes paid.
    pub codes_paid: u64,
    /// Earliest application `ts`.
    pub first_application: Option<String>,
    /// Latest application `ts`.
    pub last_application: Option<String>,
}

/// A reconciliation statement (000 §6.6) of one account, figures rounded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reconciliation {
    /// Document number.
    pub number: String,
    /// The client's account.
    pub account: String,
    /// Rounded movements; `closing` is rounded from the exact closing.
    pub figures: Movements,
    /// `closing − (opening + payments + compensations − services − refunds)` of the rounded
    /// figures, when not zero: the statement closes on what it prints.
    pub rounding: Option<Money>,
}

impl Reconciliation {
    /// Rounds exact movements into a statement that closes on its printed figures.
    pub fn new(number: String, account: String, exact: &Movements) -> Reconciliation {
        let figures = round_movements(exact);
        let difference = closing_gap(&figures);
        Reconciliation {
            number,
            account,
            figures,
            rounding: (!difference.is_zero()).then_some(difference),
        }
    }
}

fn round_movements(exact: &Movements) -> Movements {
    Movements {
        opening: round_document(exact.opening),
        payments: round_document(exact.payments),
        compensations: round_document(exact.compensations),
        services: round_document(exact.services),
        refunds: round_document(exact.refunds),
        closing: round_document(exact.closing),
    }
}

fn movement_columns(m: &Movements) -> [Money; 6] {
    [m.opening, m.payments, m.compensations, m.services, m.refunds, m.closing]
}

fn movements_of(columns: [Money; 6]) -> Movements {
    let [opening, payments, compensations, services, refunds, closing] = columns;
    Movements {
        opening,
        payments,
        compensations,
        services,
        refunds,
        closing,
    }
}

/// The turnover sheet (003 §4.1.8) of a period: every account and the total row.
///
/// Each row is rounded figure by figure; a row whose rounded movements miss its rounded
/// closing carries the difference in its own rounding cell ([`TurnoverRow::rounding`]), so
/// every printed row closes like a reconciliation statement does. Columns that miss the
/// rounded total get a rounding row; that row closes too (its rounding cell is the
/// rounding column's own difference).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TurnoverSheet {
    /// Document number.
    pub number: String,
    /// One row per account, in account order.
    pub rows: Vec<TurnoverRow>,
    /// What the total holds beyond the listed rows (accounts deleted under DOMAIN.md §9
    /// keep their share in the `"*"` row); `None` when nothing.
    pub not_listed: Option<TurnoverRow>,
    /// Per column, `round(total) − Σ round(rows)`, when any is not zero.
    pub rounding: Option<TurnoverRow>,
    /// The `"*"` row.
    pub total: TurnoverRow,
}

impl TurnoverSheet {
    /// True when some row prints a rounding cell (the PDF then shows the column).
    pub fn has_row_rounding(&self) -> bool {
        let others = self.not_listed.iter().chain(&self.rounding).chain([&self.total]);
        self.rows.iter().chain(others).any(|row| !row.rounding.is_zero())
    }
}

/// A printed turnover row: `closing = opening + payments + compensations − services −
/// refunds + rounding` holds on its rounded figures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TurnoverRow {
    /// The account (empty for the computed rows).
    pub account: String,
    /// Rounded figures.
    pub figures: Movements,
    /// What the row needs to close on its rounded figures.
    pub rounding: Money,
}

impl TurnoverRow {
    fn rounded(account: String, exact: &Movements) -> TurnoverRow {
        let figures = round_movements(exact);
        TurnoverRow {
            account,
            rounding: closing_gap(&figures),
            figures,
        }
    }
}

/// `closing − (opening + payments + compensations − services − refunds)`.
fn closing_gap(m: &Movements) -> Money {
    m.closing - (m.opening + m.payments + m.compensations - m.services - m.refunds)
}

/// The debtors list (003 §4.1.8): accounts with unpaid codes at the month's end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebtorsList {
    /// Document number.
    pub number: String,
    /// One row per debtor, in account order.
    pub rows: Vec<DebtorRow>,
    /// Codes unpaid, all debtors.
    pub total_codes: u64,
    /// Amount owed, all debtors: the exact sum, rounded.
    pub total_owed: Money,
    /// `round(Σ exact) − Σ round(row)`, when not zero.
    pub rounding: Option<Money>,
}

/// One debtor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebtorRow {
    /// The account.
    pub account: String,
    /// Codes in its FIFO queue.
    pub unpaid_codes: u64,
    /// Their charges, rounded.
    pub amount_owed: Money,
    /// `ts` of the oldest unpaid application.
    pub oldest_unpaid_application: Option<String>,
}

/// The payment register by bank (003 §4.1.7–4.1.8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentRegister {
    /// Document number.
    pub number: String,
    /// One block per channel, in channel order.
    pub channels: Vec<ChannelBlock>,
    /// Payments of every channel.
    pub total_count: u64,
    /// Their sum (exact sum of the channels' months), rounded.
    pub total_amount: Money,
    /// `round(total) − Σ round(channel month)`, when not zero.
    pub rounding: Option<Money>,
}

/// One channel's payments of the period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelBlock {
    /// Bank or payment system.
    pub channel: String,
    /// `(YYYY-MM-DD, count, amount rounded)` per day, in date order (a late payment keeps
    /// its own day, which may lie in an earlier month).
    pub days: Vec<(String, u64, Money)>,
    /// `round(month) − Σ round(day)`, when not zero.
    pub rounding: Option<Money>,
    /// The month's count.
    pub count: u64,
    /// The month's amount, rounded.
    pub amount: Money,
}

/// The emission SLA of a period: per account, then totals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlaReport {
    /// Document number.
    pub number: String,
    /// `(account, figures)` in account order.
    pub rows: Vec<(String, SlaFigures)>,
    /// The column sums.
    pub total: SlaFigures,
}

/// Emission SLA figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlaFigures {
    /// Orders placed.
    pub orders: u64,
    /// Emitted in full within 4 hours.
    pub emitted_within_4h: u64,
    /// Late.
    pub late: u64,
    /// Pending.
    pub pending: u64,
}

/// Everything one period's records become.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeriodDocuments {
    /// The period.
    pub period: Period,
    /// Every record of the period is final.
    pub is_final: bool,
    /// Acts, in account order.
    pub acts: Vec<Act>,
    /// Reconciliation statements, in account order.
    pub reconciliations: Vec<Reconciliation>,
    /// The turnover sheet, when the period has turnover rows.
    pub turnover: Option<TurnoverSheet>,
    /// The debtors list (possibly empty: nobody owed at the month's end).
    pub debtors: DebtorsList,
    /// The payment register (possibly empty).
    pub payments: PaymentRegister,
    /// The emission SLA (possibly empty).
    pub sla: SlaReport,
}

/// The exact figures of one period, grouped by kind; what [`PeriodDocuments`] is rounded from.
#[derive(Default)]
struct Exact {
    acts: BTreeMap<String, (u64, Money, Money, Money)>,
    products: BTreeMap<String, Vec<ProductRow>>,
    reconciliations: BTreeMap<String, Movements>,
    turnover: BTreeMap<String, Movements>,
    turnover_total: Option<Movements>,
    debtors: BTreeMap<String, (u64, Money, Option<String>)>,
    channel_months: BTreeMap<String, (u64, Money)>,
    channel_days: BTreeMap<String, Vec<(String, u64, Money)>>,
    sla: BTreeMap<String, SlaFigures>,
}

impl Exact {
    fn take(&mut self, kind: AggregateKind, account: &str, sub: Option<&str>, figures: &Figures) {
        let account = account.to_string();
        match figures {
            Figures::Act {
                codes_paid,
                net,
                vat,
                gross,
            } => {
                self.acts.insert(account, (*codes_paid, *net, *vat, *gross));
            }
            Figures::Product {
                codes_emitted,
                codes_applied,
                codes_paid,
                first_application,
                last_application,
            } => self.products.entry(account).or_default().push(ProductRow {
                gtin: sub.unwrap_or_default().to_string(),
                codes_emitted: *codes_emitted,
                codes_applied: *codes_applied,
                codes_paid: *codes_paid,
                first_application: first_application.clone(),
                last_application: last_application.clone(),
            }),
            Figures::Reconciliation(movements) => {
                self.reconciliations.insert(account, *movements);
            }
            Figures::Turnover(movements) if account == "*" => self.turnover_total = Some(*movements),
            Figures::Turnover(movements) => {
                self.turnover.insert(account, *movements);
            }
            Figures::Debtors {
                unpaid_codes,
                amount_owed,
                oldest_unpaid_application,
            } => {
                self.debtors.insert(
                    account,
                    (*unpaid_codes, *amount_owed, oldest_unpaid_application.clone()),
                );
            }
            Figures::Payments { count, amount } => match sub.and_then(split_day) {
                Some((channel, day)) => {
                    self.channel_days
                        .entry(channel.to_string())
                        .or_default()
                        .push((day.to_string(), *count, *amount))
                }
                None => {
                    self.channel_months
                        .insert(sub.unwrap_or_default().to_string(), (*count, *amount));
                }
            },
            Figures::Sla {
                orders,
                emitted_within_4h,
                late,
                pending,
            } => {
                self.sla.insert(
                    account,
                    SlaFigures {
                        orders: *orders,
                        emitted_within_4h: *emitted_within_4h,
                        late: *late,
                        pending: *pending,
                    },
                );
            }
            Figures::RefundDue => {}
        }
        debug_assert!(
            kind != AggregateKind::Product || sub.is_some(),
            "a product record names its GTIN"
        );
    }
}

/// `channel/YYYY-MM-DD` → `(channel, day)`; a channel's month row (`channel`) → `None`. The
/// day is the last segment, so a channel name may itself contain `/`.
fn split_day(sub: &str) -> Option<(&str, &str)> {
    let (channel, day) = sub.rsplit_once('/')?;
    chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?;
    Some((channel, day))
}

/// Groups the newest records by period: `(period, all final)` → its exact figures.
fn exact_by_period(records: &LatestRecords) -> BTreeMap<Period, (bool, Exact)> {
    let mut periods: BTreeMap<Period, (bool, Exact)> = BTreeMap::new();
    for (key, latest) in records.iter() {
        let Some(figures) = &latest.figures else { continue };
        let (all_final, exact) = periods.entry(key.period).or_insert_with(|| (true, Exact::default()));
        *all_final &= latest.is_final;
        exact.take(key.kind, &key.account, key.sub.as_deref(), figures);
    }
    periods
}

/// The documents of every period in `records` (final or not: the caller decides what to
/// render).
pub fn build(records: &LatestRecords) -> Vec<PeriodDocuments> {
    exact_by_period(records)
        .into_iter()
        .map(|(period, (is_final, exact))| build_period(period, is_final, exact))
        .collect()
}

fn build_period(period: Period, is_final: bool, exact: Exact) -> PeriodDocuments {
    let Exact {
        acts,
        mut products,
        reconciliations,
        turnover,
        turnover_total,
        debtors,
        channel_months,
        channel_days,
        sla,
    } = exact;
    let acts = acts
        .into_iter()
        .map(|(account, (codes_paid, net, vat, gross))| {
            let (net, vat, gross) = (round_document(net), round_document(vat), round_document(gross));
            let difference = gross - net - vat;
            Act {
                number: document_number("ACT", period, Some(&account)),
                products: products.remove(&account).unwrap_or_default(),
                account,
                codes_paid,
                net,
                vat,
                gross,
                rounding: (!difference.is_zero()).then_some(difference),
            }
        })
        .collect();
    let reconciliations = reconciliations
        .into_iter()
        .map(|(account, exact)| Reconciliation::new(document_number("REC", period, Some(&account)), account, &exact))
        .collect();
    PeriodDocuments {
        period,
        is_final,
        acts,
        reconciliations,
        turnover: turnover_sheet(period, turnover, turnover_total),
        debtors: debtors_list(period, debtors),
        payments: payment_register(period, channel_months, channel_days),
        sla: sla_report(period, sla),
    }
}

fn turnover_sheet(
    period: Period,
    rows: BTreeMap<String, Movements>,
    total: Option<Movements>,
) -> Option<TurnoverSheet> {
    if rows.is_empty() && total.is_none() {
        return None;
    }
    let mut row_sum = [Money::ZERO; 6];
    for movements in rows.values() {
        for (sum, value) in row_sum.iter_mut().zip(movement_columns(movements)) {
            *sum += value;
        }
    }
    let total_exact = total.map_or(row_sum, |t| movement_columns(&t));
    let unlisted: [Money; 6] = std::array::from_fn(|i| total_exact[i] - row_sum[i]);
    let rows: Vec<TurnoverRow> = rows
        .into_iter()
        .map(|(account, exact)| TurnoverRow::rounded(account, &exact))
        .collect();
    let not_listed = unlisted
        .iter()
        .any(|m| !m.is_zero())
        .then(|| TurnoverRow::rounded(String::new(), &movements_of(unlisted)));
    let total = TurnoverRow::rounded(String::new(), &movements_of(total_exact));
    // The rounding row: per column, the printed total minus the printed rows above it.
    let listed: Vec<&TurnoverRow> = rows.iter().chain(&not_listed).collect();
    let printed = |column: usize| -> Money { listed.iter().map(|row| movement_columns(&row.figures)[column]).sum() };
    let columns: [Money; 6] = std::array::from_fn(|i| movement_columns(&total.figures)[i] - printed(i));
    let rounding_cell = total.rounding - listed.iter().map(|row| row.rounding).sum::<Money>();
    let rounding = (columns.iter().any(|m| !m.is_zero()) || !rounding_cell.is_zero()).then(|| TurnoverRow {
        account: String::new(),
        figures: movements_of(columns),
        rounding: rounding_cell,
    });
    Some(TurnoverSheet {
        number: document_number("TRN", period, None),
        rows,
        not_listed,
        rounding,
        total,
    })
}

fn debtors_list(period: Period, debtors: BTreeMap<String, (u64, Money, Option<String>)>) -> DebtorsList {
    let total_exact: Money = debtors.values().map(|(_, owed, _)| *owed).sum();
    DebtorsList {
        number: document_number("DEB", period, None),
        total_codes: debtors.values().map(|(codes, _, _)| codes).sum(),
        total_owed: round_document(total_exact),
        rounding: rounding_difference(debtors.values().map(|(_, owed, _)| *owed), total_exact),
        rows: debtors
            .into_iter()
            .map(|(account, (unpaid_codes, owed, oldest))| DebtorRow {
                account,
                unpaid_codes,
                amount_owed: round_document(owed),
                oldest_unpaid_application: oldest,
            })
            .collect(),
    }
}

fn payment_register(
    period: Period,
    months: BTreeMap<String, (u64, Money)>,
    mut days: BTreeMap<String, Vec<(String, u64, Money)>>,
) -> PaymentRegister {
    let total_exact: Money = months.values().map(|(_, amount)| *amount).sum();
    let channels: Vec<ChannelBlock> = months
        .iter()
        .map(|(channel, (count, amount))| {
            let mut channel_days = days.remove(channel).unwrap_or_default();
            channel_days.sort();
            ChannelBlock {
                channel: channel.clone(),
                rounding: rounding_difference(channel_days.iter().map(|(_, _, a)| *a), *amount),
                days: channel_days
                    .into_iter()
                    .map(|(day, count, amount)| (day, count, round_document(amount)))
                    .collect(),
                count: *count,
                amount: round_document(*amount),
            }
        })
        .collect();
    PaymentRegister {
        number: document_number("PAY", period, None),
        total_count: months.values().map(|(count, _)| count).sum(),
        total_amount: round_document(total_exact),
        rounding: rounding_difference(months.values().map(|(_, amount)| *amount), total_exact),
        channels,
    }
}

fn sla_report(period: Period, rows: BTreeMap<String, SlaFigures>) -> SlaReport {
    let mut total = SlaFigures::default();
    for figures in rows.values() {
        total.orders += figures.orders;
        total.emitted_within_4h += figures.emitted_within_4h;
        total.late += figures.late;
        total.pending += figures.pending;
    }
    SlaReport {
        number: document_number("SLA", period, None),
        rows: rows.into_iter().collect(),
        total,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(text: &str) -> Money {
        text.parse().unwrap()
    }

    #[test]
    fn a_statement_closes_on_its_rounded_figures() {
        // Exact 0.005 + 0.005 = 0.01 rounds to 0.01 + 0.01 ≠ 0.01: the statement must print a
        // rounding line of −0.01 so that its printed figures close.
        let exact = Movements {
            opening: m("0.005"),
            payments: m("0.005"),
            closing: m("0.01"),
            ..Movements::default()
        };
        let statement = Reconciliation::new("REC".into(), "A".into(), &exact);
        let f = statement.figures;
        assert_eq!((f.opening, f.payments, f.closing), (m("0.01"), m("0.01"), m("0.01")));
        assert_eq!(statement.rounding, Some(m("-0.01")));
        let printed = f.opening + f.payments + f.compensations - f.services - f.refunds + m("-0.01");
        assert_eq!(printed, f.closing);
    }

    #[test]
    fn rounding_lines_appear_only_when_rows_miss_the_total() {
        // Three rows of 1.005 round to 1.01 each (3.03) but their exact sum 3.015 rounds to
        // 3.02: the difference is −0.01. Rows of 2 decimals never need a line.
        assert_eq!(rounding_difference([m("1.005"); 3], m("3.015")), Some(m("-0.01")));
        assert_eq!(rounding_difference([m("1.00"), m("2.50")], m("3.50")), None);
    }

    #[test]
    fn every_printed_turnover_row_and_column_adds_up() {
        // Two accounts whose rows each miss their closing by a tiyn after rounding, and a
        // total with a share of a deleted account: every printed row closes with its
        // rounding cell, and every printed column (rounding row included) sums to the total.
        let row = |opening: &str, payments: &str, services: &str, closing: &str| Movements {
            opening: m(opening),
            payments: m(payments),
            services: m(services),
            closing: m(closing),
            ..Movements::default()
        };
        let rows = BTreeMap::from([
            ("A".to_string(), row("1.9952", "5.00", "3.0016", "3.9936")),
            ("B".to_string(), row("0.005", "0.005", "0", "0.01")),
        ]);
        let total = row("12.0002", "15.005", "3.0016", "24.0036");
        let sheet = turnover_sheet(Period::new(2026, 2), rows, Some(total)).unwrap();
        assert!(sheet.not_listed.is_some() && sheet.rounding.is_some() && sheet.has_row_rounding());
        let printed: Vec<&TurnoverRow> = sheet
            .rows
            .iter()
            .chain(&sheet.not_listed)
            .chain(&sheet.rounding)
            .collect();
        for row in printed.iter().chain([&&sheet.total]) {
            assert_eq!(closing_gap(&row.figures), row.rounding, "{row:?} closes");
        }
        for column in 0..6 {
            let sum: Money = printed.iter().map(|r| movement_columns(&r.figures)[column]).sum();
            assert_eq!(sum, movement_columns(&sheet.total.figures)[column], "column {column}");
        }
        let rounding_sum: Money = printed.iter().map(|r| r.rounding).sum();
        assert_eq!(rounding_sum, sheet.total.rounding);
    }

    #[test]
    fn document_numbers_depend_on_the_key_only() {
        // The number is built from kind prefix, period and account, nothing else.
        let period = Period::new(2026, 1);
        assert_eq!(document_number("ACT", period, Some("KZ-1")), "ACT-2026-01-KZ-1");
        assert_eq!(document_number("TRN", period, None), "TRN-2026-01");
    }
}
