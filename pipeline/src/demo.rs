//! `markledger demo`: generate a realistic dataset, run it, and show a person what came out:
//! throughput, codes by status, money, top debtors, one account's act and
//! reconciliation for a closed month, and the billing documents of the closed months
//! (`output/documents/`, `markledger documents`).

use crate::config::Config;
use crate::runner::{render_summary, run_files, Engine, FileRun};
use anyhow::{Context, Result};
use markledger_datasets::generator::{generate, GeneratorConfig};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Instant;

/// How many of the largest debtors the demo lists.
pub const TOP_DEBTORS_MAX: usize = 5;

/// Generates `generator` into `dir/input`, runs it into `dir/output`, and returns the text
/// to print.
pub fn run_demo(config: &Config, generator: &GeneratorConfig, dir: &Path, quiet: bool) -> Result<String> {
    let input = dir.join("input");
    let output = dir.join("output");
    let started = Instant::now();
    let mut last_percent = 0;
    let manifest = generate(generator, &input, &mut |progress| {
        let percent = (100 * progress.code_events / progress.target.max(1)).min(100);
        if !quiet && percent >= last_percent + 10 {
            last_percent = percent;
            markledger_operators::note!("generating: {percent}% ({} code events)", progress.code_events);
        }
    })
    .with_context(|| format!("generating into {}", input.display()))?;
    let generated_in = started.elapsed();
    let run = FileRun {
        inputs: std::slice::from_ref(&input),
        out: &output,
        quiet,
        engine: Engine::Dataflow { workers: 2 },
        state: None,
        cluster: Default::default(),
    };
    let report = run_files(config, &run)?;
    let mut text = format!(
        "markledger demo: {} accounts, {} events naming {} codes over {} months, generated in {:.1} s (seed {})\n\n",
        generator.accounts,
        manifest.events,
        manifest.code_events,
        generator.months,
        generated_in.as_secs_f64(),
        generator.seed
    );
    text.push_str(&render_summary(&report, &output));
    text.push('\n');
    text.push_str(&render_debtors(&output)?);
    text.push('\n');
    text.push_str(&render_account_month(&output)?);
    // The closed months' billing documents; a demo with no closed month has none to show.
    text.push_str("\nbilling documents of the closed months (markledger documents):\n");
    match crate::documents::render_documents(&output, &output.join("documents"), &Default::default()) {
        Ok(report) => text.push_str(&crate::documents::render_summary(&report)),
        Err(error) => text.push_str(&format!("  documents   none: {error:#}\n")),
    }
    Ok(text)
}

fn read_json_lines(path: &Path) -> Result<Vec<Value>> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .map(|line| serde_json::from_str(line).with_context(|| format!("parsing {}", path.display())))
        .collect()
}

fn text(value: &Value, field: &str) -> String {
    match &value[field] {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_string(),
        other => other.to_string(),
    }
}

fn money(value: &Value, field: &str) -> f64 {
    // Only for ranking and display of a demo; the figures printed are the exact strings.
    text(value, field).parse().unwrap_or(0.0)
}

fn render_debtors(output: &Path) -> Result<String> {
    let mut last: BTreeMap<String, Value> = BTreeMap::new();
    for balance in read_json_lines(&output.join("balances.jsonl"))? {
        last.insert(text(&balance, "account"), balance);
    }
    let mut debtors: Vec<&Value> = last
        .values()
        .filter(|b| b["unpaid_codes"].as_u64().unwrap_or(0) > 0)
        .collect();
    debtors.sort_by(|a, b| money(b, "unpaid_amount").total_cmp(&money(a, "unpaid_amount")));
    let mut out = format!("top debtors now ({} accounts owe for unpaid codes):\n", debtors.len());
    for debtor in debtors.iter().take(TOP_DEBTORS_MAX) {
        out.push_str(&format!(
            "  {:<20} owes {:>14} KZT for {:>8} codes; balance {}\n",
            text(debtor, "account"),
            text(debtor, "unpaid_amount"),
            text(debtor, "unpaid_codes"),
            text(debtor, "balance")
        ));
    }
    Ok(out)
}

fn render_account_month(output: &Path) -> Result<String> {
    // The account charged most in the first closed month, with that month's act and
    // reconciliation (the latest revision of each).
    let mut latest: BTreeMap<String, Value> = BTreeMap::new();
    for record in read_json_lines(&output.join("periods.jsonl"))? {
        let key = format!(
            "{}/{}/{}/{}",
            text(&record, "kind"),
            text(&record, "account"),
            text(&record, "period"),
            text(&record, "sub")
        );
        latest.insert(key, record);
    }
    let acts: Vec<&Value> = latest
        .values()
        .filter(|r| text(r, "kind") == "act" && r["final"] == Value::Bool(true))
        .collect();
    let Some(first_month) = acts.iter().map(|r| text(r, "period")).min() else {
        return Ok("no period has closed yet: nothing final to show\n".to_string());
    };
    let act = acts
        .iter()
        .filter(|r| text(r, "period") == first_month)
        .max_by(|a, b| money(a, "gross").total_cmp(&money(b, "gross")))
        .expect("a final act of that month exists");
    let account = text(act, "account");
    let mut out = format!("account {account}, {first_month} (closed):\n");
    out.push_str(&format!(
        "  act of completed work     {} codes paid: net {} + VAT {} = {} KZT\n",
        text(act, "codes_paid"),
        text(act, "net"),
        text(act, "vat"),
        text(act, "gross")
    ));
    if let Some(rec) = latest.get(&format!("reconciliation/{account}/{first_month}/-")) {
        out.push_str(&format!(
            "  reconciliation statement  opening {} + payments {} + compensations {} − services {} − refunds {} = closing {}\n",
            text(rec, "opening"),
            text(rec, "payments"),
            text(rec, "compensations"),
            text(rec, "services"),
            text(rec, "refunds"),
            text(rec, "closing")
        ));
    }
    out.push_str(&format!("\noutputs are in {}\n", output.display()));
    Ok(out)
}
