//! PDF for signing, made with krilla: A4, DejaVu Sans embedded (subset), the operator's and
//! the client's identifiers, the period, a deterministic document number and places for
//! signatures. One file per client document (`act-ACCOUNT.pdf`, `reconciliation-ACCOUNT.pdf`)
//! and per operator document (`turnover.pdf`, `debtors.pdf`, `payments.pdf`, `sla.pdf`).
//!
//! Deterministic: nothing reads the clock; the creation date is the period's last day
//! (00:00 local), the document id is the document number, and krilla names font subsets
//! from their content, so the same records give byte-identical files.

pub mod fonts;
pub mod layout;

use crate::format::{count, date, grouped, local_time, period_last_day, period_range};
use crate::model::{
    Act, DebtorsList, PaymentRegister, PeriodDocuments, Reconciliation, SlaReport, TurnoverRow, TurnoverSheet,
};
use crate::texts::{Lang, Texts};
use chrono::Datelike;
use fonts::Fonts;
use layout::{Column, Layout, RowStyle, Table, A4, BODY};
use markledger_operators::{Money, Period};

/// Who issues the documents.
#[derive(Clone, Debug, Default)]
pub struct Operator {
    /// The operator's name; `None` prints the language's generic name.
    pub name: Option<String>,
    /// Its business identification number (БИН); `None` prints a dash.
    pub id: Option<String>,
}

/// Everything a renderer needs besides the document.
pub struct Context<'a> {
    /// The faces.
    pub fonts: &'a Fonts,
    /// The language.
    pub lang: Lang,
    /// The issuer.
    pub operator: &'a Operator,
    /// The period.
    pub period: Period,
    /// Mark every page "provisional".
    pub provisional: bool,
}

impl Context<'_> {
    fn texts(&self) -> &'static Texts {
        self.lang.texts()
    }

    fn money(&self, amount: Money) -> String {
        grouped(amount, self.lang)
    }

    fn header(&self, layout: &mut Layout, title: &str, number: &str, client: Option<&str>) {
        let texts = self.texts();
        layout.centered(title, 14.0, true, false);
        layout.gap(2.0);
        let date = period_last_day(self.period).format("%d.%m.%Y").to_string();
        let line = texts.dated.replace("{number}", number).replace("{date}", &date);
        layout.centered(&line, 10.0, false, false);
        if self.provisional {
            layout.gap(4.0);
            layout.centered(texts.provisional, 10.0, true, true);
        }
        layout.gap(12.0);
        let operator = format!(
            "{}, {}: {}",
            self.operator.name.as_deref().unwrap_or(texts.operator_default_name),
            texts.identifier,
            self.operator.id.as_deref().unwrap_or(texts.none)
        );
        let mut fields = vec![
            (texts.period, format!("{} ({})", self.period, period_range(self.period))),
            (texts.operator, operator),
        ];
        if let Some(account) = client {
            fields.push((texts.client, format!("{}: {account}", texts.account)));
        }
        fields.push((texts.currency_label, texts.currency.to_string()));
        layout.fields(&fields, 120.0);
        layout.gap(10.0);
    }

    fn finish(&self, layout: Layout, number: &str, title: &str) -> Result<Vec<u8>, String> {
        let texts = self.texts();
        let size = layout.size;
        let pages = layout.finish(number, texts.page, texts.of);
        let mut document = krilla::Document::new();
        let last = period_last_day(self.period);
        // Almaty: UTC+6 until 2024-03-01, UTC+5 after (DOMAIN.md §4).
        let offset = if self.period < Period::new(2024, 3) { 6 } else { 5 };
        let created = krilla::metadata::DateTime::new(last.year() as u16)
            .month(last.month() as u8)
            .day(last.day() as u8)
            .hour(0)
            .minute(0)
            .second(0)
            .utc_offset_hour(offset)
            .utc_offset_minute(0);
        document.set_metadata(
            krilla::metadata::Metadata::new()
                .title(format!("{title} {number}"))
                .language(self.lang.code().to_string())
                .creator("markledger documents".to_string())
                .creation_date(created)
                .document_id(number.to_string()),
        );
        layout::draw(&mut document, self.fonts, size, &pages);
        document.finish().map_err(|e| format!("{number}: {e:?}"))
    }

    fn rounding_note(&self, layout: &mut Layout) {
        layout.gap(6.0);
        layout.paragraph(self.texts().rounding_note, BODY - 1.0, false);
    }
}

/// The act of completed work of one account, with its product detail.
pub fn act(context: &Context, act: &Act) -> Result<Vec<u8>, String> {
    let texts = context.texts();
    let mut layout = Layout::new(context.fonts, A4);
    context.header(&mut layout, texts.act_title, &act.number, Some(&act.account));
    let columns = vec![
        Column::text(texts.item, 22.0),
        Column::text(texts.service_name, 0.0),
        Column::number(texts.quantity, 62.0),
        Column::number(texts.net, 78.0),
        Column::number(texts.vat, 66.0),
        Column::number(texts.gross, 78.0),
    ];
    let mut rows = vec![(
        RowStyle::Body,
        vec![
            "1".into(),
            texts.codes_paid.into(),
            count(act.codes_paid, context.lang),
            context.money(act.net),
            context.money(act.vat),
            context.money(act.net + act.vat),
        ],
    )];
    if let Some(rounding) = act.rounding {
        rows.push((
            RowStyle::Body,
            vec![
                String::new(),
                texts.rounding.into(),
                String::new(),
                String::new(),
                String::new(),
                context.money(rounding),
            ],
        ));
    }
    rows.push((
        RowStyle::Total,
        vec![
            String::new(),
            texts.total.into(),
            count(act.codes_paid, context.lang),
            context.money(act.net),
            context.money(act.vat),
            context.money(act.gross),
        ],
    ));
    layout.table(&Table { columns, rows });
    layout.gap(8.0);
    layout.paragraph(texts.act_statement, BODY, false);
    if act.rounding.is_some() {
        context.rounding_note(&mut layout);
    }
    if !act.products.is_empty() {
        layout.gap(12.0);
        layout.paragraph(texts.product_detail, BODY + 1.0, true);
        layout.gap(4.0);
        let columns = vec![
            Column::text(texts.gtin, 0.0),
            Column::number(texts.codes_emitted, 66.0),
            Column::number(texts.codes_applied, 66.0),
            Column::number(texts.paid_column, 66.0),
            Column::number(texts.first_application, 92.0),
            Column::number(texts.last_application, 92.0),
        ];
        let none = || texts.none.to_string();
        let mut rows: Vec<(RowStyle, Vec<String>)> = act
            .products
            .iter()
            .map(|p| {
                (
                    RowStyle::Body,
                    vec![
                        p.gtin.clone(),
                        count(p.codes_emitted, context.lang),
                        count(p.codes_applied, context.lang),
                        count(p.codes_paid, context.lang),
                        p.first_application.as_deref().map_or_else(none, local_time),
                        p.last_application.as_deref().map_or_else(none, local_time),
                    ],
                )
            })
            .collect();
        let sum = |f: fn(&crate::model::ProductRow) -> u64| count(act.products.iter().map(f).sum(), context.lang);
        rows.push((
            RowStyle::Total,
            vec![
                texts.total.into(),
                sum(|p| p.codes_emitted),
                sum(|p| p.codes_applied),
                sum(|p| p.codes_paid),
                String::new(),
                String::new(),
            ],
        ));
        layout.table(&Table { columns, rows });
    }
    layout.gap(24.0);
    layout.signatures(&[texts.for_operator, texts.for_client], texts.signature, texts.seal);
    context.finish(layout, &act.number, texts.act_title)
}

/// The reconciliation statement of one account.
pub fn reconciliation(context: &Context, statement: &Reconciliation) -> Result<Vec<u8>, String> {
    let texts = context.texts();
    let mut layout = Layout::new(context.fonts, A4);
    context.header(
        &mut layout,
        texts.reconciliation_title,
        &statement.number,
        Some(&statement.account),
    );
    let f = &statement.figures;
    let line = |label: &str, amount: Money| (RowStyle::Body, vec![label.to_string(), context.money(amount)]);
    let mut rows = vec![
        line(texts.opening, f.opening),
        line(&format!("+ {}", texts.payments), f.payments),
        line(&format!("+ {}", texts.compensations), f.compensations),
        line(&format!("− {}", texts.services), f.services),
        line(&format!("− {}", texts.refunds), f.refunds),
    ];
    if let Some(rounding) = statement.rounding {
        rows.push(line(&format!("± {}", texts.rounding), rounding));
    }
    rows.push((
        RowStyle::Total,
        vec![texts.closing.to_string(), context.money(f.closing)],
    ));
    let columns = vec![
        Column::text(texts.service_name, 0.0),
        Column::number(texts.amount, 120.0),
    ];
    layout.table(&Table { columns, rows });
    layout.gap(8.0);
    layout.paragraph(
        // A no-break space inside the amount keeps "7 175,19" on one line.
        &format!(
            "{}: {}\u{a0}KZT.",
            texts.reconciliation_statement,
            context.money(f.closing).replace(' ', "\u{a0}")
        ),
        BODY,
        false,
    );
    if statement.rounding.is_some() {
        context.rounding_note(&mut layout);
    }
    layout.gap(24.0);
    layout.signatures(&[texts.for_operator, texts.for_client], texts.signature, texts.seal);
    context.finish(layout, &statement.number, texts.reconciliation_title)
}

fn turnover_cells(context: &Context, label: &str, row: &TurnoverRow, rounding_column: bool) -> Vec<String> {
    let m = &row.figures;
    let mut cells = vec![label.to_string()];
    cells.extend([m.opening, m.payments, m.compensations, m.services, m.refunds].map(|a| context.money(a)));
    if rounding_column {
        cells.push(if row.rounding.is_zero() {
            String::new()
        } else {
            context.money(row.rounding)
        });
    }
    cells.push(context.money(m.closing));
    cells
}

/// The turnover sheet: A4 landscape, every account and the total row. A rounding column
/// appears when a row's rounded figures need it to close.
pub fn turnover(context: &Context, sheet: &TurnoverSheet) -> Result<Vec<u8>, String> {
    let texts = context.texts();
    let mut layout = Layout::new(context.fonts, (A4.1, A4.0));
    context.header(&mut layout, texts.turnover_title, &sheet.number, None);
    let rounding_column = sheet.has_row_rounding();
    let width = if rounding_column { 84.0 } else { 92.0 };
    let mut columns = vec![
        Column::text(texts.account, 0.0),
        Column::number(texts.t_opening, width),
        Column::number(texts.t_paid, width),
        Column::number(texts.compensations, width),
        Column::number(texts.t_charged, width),
        Column::number(texts.refunds, width),
    ];
    if rounding_column {
        columns.push(Column::number(texts.rounding, width));
    }
    columns.push(Column::number(texts.t_closing, width));
    let mut rows: Vec<(RowStyle, Vec<String>)> = sheet
        .rows
        .iter()
        .map(|row| {
            (
                RowStyle::Body,
                turnover_cells(context, &row.account, row, rounding_column),
            )
        })
        .collect();
    if let Some(others) = &sheet.not_listed {
        rows.push((
            RowStyle::Body,
            turnover_cells(context, texts.not_listed, others, rounding_column),
        ));
    }
    if let Some(rounding) = &sheet.rounding {
        rows.push((
            RowStyle::Body,
            turnover_cells(context, texts.rounding, rounding, rounding_column),
        ));
    }
    rows.push((
        RowStyle::Total,
        turnover_cells(context, texts.total, &sheet.total, rounding_column),
    ));
    layout.table(&Table { columns, rows });
    if rounding_column || sheet.rounding.is_some() {
        context.rounding_note(&mut layout);
    }
    operator_signature(&mut layout, texts);
    context.finish(layout, &sheet.number, texts.turnover_title)
}

fn operator_signature(layout: &mut Layout, texts: &Texts) {
    layout.gap(24.0);
    layout.signatures(&[texts.prepared_by], texts.signature, "");
}

/// The debtors list.
pub fn debtors(context: &Context, list: &DebtorsList) -> Result<Vec<u8>, String> {
    let texts = context.texts();
    let mut layout = Layout::new(context.fonts, A4);
    context.header(&mut layout, texts.debtors_title, &list.number, None);
    let columns = vec![
        Column::text(texts.account, 0.0),
        Column::number(texts.unpaid_codes, 80.0),
        Column::number(texts.amount_owed, 100.0),
        Column::number(texts.oldest_unpaid, 110.0),
    ];
    let mut rows: Vec<(RowStyle, Vec<String>)> = list
        .rows
        .iter()
        .map(|row| {
            (
                RowStyle::Body,
                vec![
                    row.account.clone(),
                    count(row.unpaid_codes, context.lang),
                    context.money(row.amount_owed),
                    row.oldest_unpaid_application
                        .as_deref()
                        .map_or_else(|| texts.none.to_string(), local_time),
                ],
            )
        })
        .collect();
    if let Some(rounding) = list.rounding {
        rows.push((
            RowStyle::Body,
            vec![
                texts.rounding.into(),
                String::new(),
                context.money(rounding),
                String::new(),
            ],
        ));
    }
    rows.push((
        RowStyle::Total,
        vec![
            texts.total.into(),
            count(list.total_codes, context.lang),
            context.money(list.total_owed),
            String::new(),
        ],
    ));
    layout.table(&Table { columns, rows });
    if list.rounding.is_some() {
        context.rounding_note(&mut layout);
    }
    operator_signature(&mut layout, texts);
    context.finish(layout, &list.number, texts.debtors_title)
}

/// The payment register by bank: each channel's days, its month, then the total.
pub fn payments(context: &Context, register: &PaymentRegister) -> Result<Vec<u8>, String> {
    let texts = context.texts();
    let mut layout = Layout::new(context.fonts, A4);
    context.header(&mut layout, texts.payments_title, &register.number, None);
    let columns = vec![
        Column::text(texts.channel, 0.0),
        Column::text(texts.day, 90.0),
        Column::number(texts.payment_count, 80.0),
        Column::number(texts.amount, 110.0),
    ];
    let mut rows = Vec::new();
    for block in &register.channels {
        rows.push((RowStyle::Section, vec![block.channel.clone()]));
        for (day, n, amount) in &block.days {
            rows.push((
                RowStyle::Body,
                vec![
                    String::new(),
                    date(day),
                    count(*n, context.lang),
                    context.money(*amount),
                ],
            ));
        }
        if let Some(rounding) = block.rounding {
            rows.push((
                RowStyle::Body,
                vec![
                    texts.rounding.into(),
                    String::new(),
                    String::new(),
                    context.money(rounding),
                ],
            ));
        }
        rows.push((
            RowStyle::Total,
            vec![
                format!("{}, {}", block.channel, texts.month_total),
                String::new(),
                count(block.count, context.lang),
                context.money(block.amount),
            ],
        ));
    }
    if let Some(rounding) = register.rounding {
        rows.push((
            RowStyle::Body,
            vec![
                texts.rounding.into(),
                String::new(),
                String::new(),
                context.money(rounding),
            ],
        ));
    }
    rows.push((
        RowStyle::Total,
        vec![
            texts.total.into(),
            String::new(),
            count(register.total_count, context.lang),
            context.money(register.total_amount),
        ],
    ));
    layout.table(&Table { columns, rows });
    operator_signature(&mut layout, texts);
    context.finish(layout, &register.number, texts.payments_title)
}

/// The emission SLA.
pub fn sla(context: &Context, report: &SlaReport) -> Result<Vec<u8>, String> {
    let texts = context.texts();
    let mut layout = Layout::new(context.fonts, A4);
    context.header(&mut layout, texts.sla_title, &report.number, None);
    let columns = vec![
        Column::text(texts.account, 0.0),
        Column::number(texts.orders, 70.0),
        Column::number(texts.emitted_within_4h, 80.0),
        Column::number(texts.late, 70.0),
        Column::number(texts.pending, 70.0),
    ];
    let cells = |label: &str, f: &crate::model::SlaFigures| {
        vec![
            label.to_string(),
            count(f.orders, context.lang),
            count(f.emitted_within_4h, context.lang),
            count(f.late, context.lang),
            count(f.pending, context.lang),
        ]
    };
    let mut rows: Vec<(RowStyle, Vec<String>)> = report
        .rows
        .iter()
        .map(|(account, f)| (RowStyle::Body, cells(account, f)))
        .collect();
    rows.push((RowStyle::Total, cells(texts.total, &report.total)));
    layout.table(&Table { columns, rows });
    operator_signature(&mut layout, texts);
    context.finish(layout, &report.number, texts.sla_title)
}

/// Every PDF of one period: `(file name, bytes)`; `only_clients` leaves out the operator's
/// documents.
pub fn render(
    context: &Context,
    docs: &PeriodDocuments,
    suffix: &str,
    only_clients: bool,
) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut files = Vec::new();
    for item in &docs.acts {
        files.push((format!("act-{}{suffix}.pdf", item.account), act(context, item)?));
    }
    for item in &docs.reconciliations {
        files.push((
            format!("reconciliation-{}{suffix}.pdf", item.account),
            reconciliation(context, item)?,
        ));
    }
    if only_clients {
        return Ok(files);
    }
    if let Some(sheet) = &docs.turnover {
        files.push((format!("turnover{suffix}.pdf"), turnover(context, sheet)?));
    }
    files.push((format!("debtors{suffix}.pdf"), debtors(context, &docs.debtors)?));
    files.push((format!("payments{suffix}.pdf"), payments(context, &docs.payments)?));
    files.push((format!("sla{suffix}.pdf"), sla(context, &docs.sla)?));
    Ok(files)
}
