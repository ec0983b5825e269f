//! CSV for spreadsheets: one file per document kind and period (`act-2026-01.csv`,
//! `products-…`, `reconciliation-…`, `turnover-…`, `debtors-…`, `payments-…`, `sla-…`),
//! UTF-8 without a byte-order mark, comma-separated, a header row in the document's
//! language, amounts rounded with two decimals and a dot (`1234.50`), counts as integers.
//! Rounding lines and totals are rows like in the PDF, named in the first column.

use crate::format::plain;
use crate::model::{DebtorsList, PaymentRegister, PeriodDocuments, SlaReport, TurnoverRow, TurnoverSheet};
use crate::records::Movements;
use crate::texts::Texts;
use markledger_operators::Money;

/// One CSV file: its name and bytes.
pub struct CsvFile {
    /// File name, e.g. `act-2026-01.csv`.
    pub name: String,
    /// Its content.
    pub bytes: Vec<u8>,
}

fn sheet(rows: Vec<Vec<String>>) -> Result<Vec<u8>, csv::Error> {
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    for row in rows {
        writer.write_record(row)?;
    }
    writer.into_inner().map_err(|e| e.into_error().into())
}

fn opt(amount: Option<Money>) -> String {
    amount.map(plain).unwrap_or_default()
}

fn movement_cells(m: &Movements) -> [String; 6] {
    [
        plain(m.opening),
        plain(m.payments),
        plain(m.compensations),
        plain(m.services),
        plain(m.refunds),
        plain(m.closing),
    ]
}

/// Every CSV file of one period's documents; `only_clients` (with `--account`) writes the
/// client documents only, none of the operator's (turnover, debtors, payments, SLA).
pub fn render(
    docs: &PeriodDocuments,
    texts: &Texts,
    suffix: &str,
    only_clients: bool,
) -> Result<Vec<CsvFile>, csv::Error> {
    let period = docs.period.to_string();
    let mut files = Vec::new();
    let mut add = |kind: &str, rows: Vec<Vec<String>>| -> Result<(), csv::Error> {
        files.push(CsvFile {
            name: format!("{kind}-{period}{suffix}.csv"),
            bytes: sheet(rows)?,
        });
        Ok(())
    };
    if !docs.acts.is_empty() {
        let mut rows = vec![[
            texts.number,
            texts.account,
            texts.period,
            texts.quantity,
            texts.net,
            texts.vat,
            texts.rounding,
            texts.gross,
        ]
        .map(String::from)
        .to_vec()];
        let mut products = vec![[
            texts.number,
            texts.account,
            texts.gtin,
            texts.codes_emitted,
            texts.codes_applied,
            texts.paid_column,
            texts.first_application,
            texts.last_application,
        ]
        .map(String::from)
        .to_vec()];
        for act in &docs.acts {
            rows.push(vec![
                act.number.clone(),
                act.account.clone(),
                period.clone(),
                act.codes_paid.to_string(),
                plain(act.net),
                plain(act.vat),
                opt(act.rounding),
                plain(act.gross),
            ]);
            for product in &act.products {
                products.push(vec![
                    act.number.clone(),
                    act.account.clone(),
                    product.gtin.clone(),
                    product.codes_emitted.to_string(),
                    product.codes_applied.to_string(),
                    product.codes_paid.to_string(),
                    product.first_application.clone().unwrap_or_default(),
                    product.last_application.clone().unwrap_or_default(),
                ]);
            }
        }
        add("act", rows)?;
        add("products", products)?;
    }
    if !docs.reconciliations.is_empty() {
        let mut rows = vec![[
            texts.number,
            texts.account,
            texts.opening,
            texts.payments,
            texts.compensations,
            texts.services,
            texts.refunds,
            texts.rounding,
            texts.closing,
        ]
        .map(String::from)
        .to_vec()];
        for statement in &docs.reconciliations {
            let [opening, payments, compensations, services, refunds, closing] = movement_cells(&statement.figures);
            rows.push(vec![
                statement.number.clone(),
                statement.account.clone(),
                opening,
                payments,
                compensations,
                services,
                refunds,
                opt(statement.rounding),
                closing,
            ]);
        }
        add("reconciliation", rows)?;
    }
    if only_clients {
        return Ok(files);
    }
    if let Some(sheet) = &docs.turnover {
        add("turnover", turnover_rows(sheet, texts))?;
    }
    add("debtors", debtors_rows(&docs.debtors, texts))?;
    add("payments", payments_rows(&docs.payments, texts))?;
    add("sla", sla_rows(&docs.sla, texts))?;
    Ok(files)
}

fn turnover_rows(sheet: &TurnoverSheet, texts: &Texts) -> Vec<Vec<String>> {
    let mut rows = vec![[
        texts.account,
        texts.t_opening,
        texts.t_paid,
        texts.compensations,
        texts.t_charged,
        texts.refunds,
        texts.rounding,
        texts.t_closing,
    ]
    .map(String::from)
    .to_vec()];
    let mut push = |label: &str, row: &TurnoverRow| {
        let [opening, paid, compensations, charged, refunds, closing] = movement_cells(&row.figures);
        let rounding = (!row.rounding.is_zero()).then_some(row.rounding);
        rows.push(vec![
            label.to_string(),
            opening,
            paid,
            compensations,
            charged,
            refunds,
            opt(rounding),
            closing,
        ]);
    };
    for row in &sheet.rows {
        push(&row.account, row);
    }
    if let Some(others) = &sheet.not_listed {
        push(texts.not_listed, others);
    }
    if let Some(rounding) = &sheet.rounding {
        push(texts.rounding, rounding);
    }
    push(texts.total, &sheet.total);
    rows
}

fn debtors_rows(list: &DebtorsList, texts: &Texts) -> Vec<Vec<String>> {
    let mut rows = vec![[
        texts.account,
        texts.unpaid_codes,
        texts.amount_owed,
        texts.oldest_unpaid,
    ]
    .map(String::from)
    .to_vec()];
    for row in &list.rows {
        rows.push(vec![
            row.account.clone(),
            row.unpaid_codes.to_string(),
            plain(row.amount_owed),
            row.oldest_unpaid_application.clone().unwrap_or_default(),
        ]);
    }
    if let Some(rounding) = list.rounding {
        rows.push(vec![
            texts.rounding.into(),
            String::new(),
            plain(rounding),
            String::new(),
        ]);
    }
    rows.push(vec![
        texts.total.into(),
        list.total_codes.to_string(),
        plain(list.total_owed),
        String::new(),
    ]);
    rows
}

fn payments_rows(register: &PaymentRegister, texts: &Texts) -> Vec<Vec<String>> {
    let mut rows = vec![[texts.channel, texts.day, texts.payment_count, texts.amount]
        .map(String::from)
        .to_vec()];
    for block in &register.channels {
        for (day, count, amount) in &block.days {
            rows.push(vec![
                block.channel.clone(),
                day.clone(),
                count.to_string(),
                plain(*amount),
            ]);
        }
        if let Some(rounding) = block.rounding {
            rows.push(vec![
                block.channel.clone(),
                texts.rounding.into(),
                String::new(),
                plain(rounding),
            ]);
        }
        rows.push(vec![
            block.channel.clone(),
            texts.month_total.into(),
            block.count.to_string(),
            plain(block.amount),
        ]);
    }
    if let Some(rounding) = register.rounding {
        rows.push(vec![
            texts.rounding.into(),
            String::new(),
            String::new(),
            plain(rounding),
        ]);
    }
    rows.push(vec![
        texts.total.into(),
        String::new(),
        register.total_count.to_string(),
        plain(register.total_amount),
    ]);
    rows
}

fn sla_rows(report: &SlaReport, texts: &Texts) -> Vec<Vec<String>> {
    let mut rows = vec![[
        texts.account,
        texts.orders,
        texts.emitted_within_4h,
        texts.late,
        texts.pending,
    ]
    .map(String::from)
    .to_vec()];
    let line = |label: &str, f: &crate::model::SlaFigures| {
        vec![
            label.to_string(),
            f.orders.to_string(),
            f.emitted_within_4h.to_string(),
            f.late.to_string(),
            f.pending.to_string(),
        ]
    };
    for (account, figures) in &report.rows {
        rows.push(line(account, figures));
    }
    rows.push(line(texts.total, &report.total));
    rows
}
