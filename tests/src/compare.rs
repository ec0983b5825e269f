//! Engine equivalence as an INTERFACE.md consumer sees it.
//!
//! Two engines (the reference, the multi-worker dataflow) must produce the same outputs, but
//! not in the same order: a multi-worker engine interleaves its workers' records
//! nondeterministically. [`canonical`] therefore reduces a run's outputs to what a consumer
//! of the five outputs keeps, in a form that does not depend on that interleaving. Two
//! views are kept, and [`diff`] compares both.
//!
//! **Final values**, what a consumer that keeps only the latest state sees:
//! - **balances**: the last balance record per account in output order (meaningful because
//!   one worker, the account's owner, emits all of an account's balance records in order);
//!   compared without `ts`;
//! - **codes**: every code's final status, found by following its chain of status changes
//!   from `null` (each change names `from` and `to`, a code never revisits a status, so the
//!   chain does not depend on the order the records arrived in), and its number of changes;
//! - **ledger**: each account's entries in output order (the account's owner emits them);
//! - **rejections**: a multiset without `detail` (its wording may differ between engines),
//!   and a second multiset with it for [`diff_strict`];
//! - **status changes**: a multiset of records, each with its codes sorted;
//! - **periods**: per key (`kind/account/period[/sub]`) the highest revision: `rev`, `final`
//!   and the figures;
//! - **anomalies**: what no consumer could make sense of in one run alone (a status change
//!   off its code's chain, two different records with one key's highest `rev`, revisions
//!   that do not count 1, 2, 3, … or that follow a final one).
//!
//! **Histories**, every record in the order a consumer of its Kafka key receives it
//! (INTERFACE.md keys status, ledger and balances by account, periods by
//! `kind/account/period[/sub]`): so two engines that reach the same final values through
//! different intermediate records (an extra revision of a period record, a balance record
//! in between, status records of an account in another order) still differ:
//! - **balance history**: each account's balance records in output order, `ts` and `rev`
//!   included;
//! - **status history**: each account's status records in output order, codes in the
//!   record's own order;
//! - **period history**: each key's revisions in `rev` order;
//! - the ledger is compared as a history already, and rejections (keyed by event id, with
//!   no order between events) as a sorted multiset.
//!
//! Money compares by value (`10.0 == 10.00`) because it is `rust_decimal::Decimal`. Every
//! collection is a `BTreeMap`/`BTreeSet`, so [`diff`] is deterministic: it lists the first
//! [`DIFF_LINES_PER_CATEGORY`] differences of each category in key order and counts the rest.

use markledger::config::Config;
use markledger::reference;
use markledger_connectors::codec::Decoded;
use markledger_connectors::file::{list_partitions, PartitionReader};
use markledger_datasets::generator::{generate, GeneratorConfig};
use markledger_operators::money::render as money;
use markledger_operators::output::{Deletion, Entry, Figures, Output, StatusChange};
use markledger_operators::{Body, Money, Period, Reason, Status, Ts};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// How many differences [`diff`] lists per category before it only counts them.
pub const DIFF_LINES_PER_CATEGORY: usize = 20;

/// An account's final state as the personal-account page shows it (the balance record
/// without its `ts`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BalanceState {
    /// Credits − debits.
    pub balance: Money,
    /// Codes in the FIFO queue.
    pub unpaid_codes: u64,
    /// Their charges.
    pub unpaid_amount: Money,
    /// Orders neither emitted in full nor cancelled.
    pub pending_orders: u64,
    /// Balance records the account had (its last record's `rev`).
    pub rev: u64,
}

impl fmt::Display for BalanceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "balance {}, unpaid {} codes / {}, pending orders {}, rev {}",
            money(self.balance),
            self.unpaid_codes,
            money(self.unpaid_amount),
            self.pending_orders,
            self.rev
        )
    }
}

/// One balance record of an account's history: the record without its account (the map
/// key), `ts` and `rev` included.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BalanceRow {
    /// The state the record shows.
    pub state: BalanceState,
    /// The `ts` of the latest event that changed it.
    pub ts: Ts,
}

impl fmt::Display for BalanceRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {}", self.state, self.ts.render())
    }
}

/// Where a code's chain of status changes ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodeFate {
    /// The last status of the chain (`None` when no change of the code starts from `null`).
    pub status: Option<Status>,
    /// Changes on the chain.
    pub changes: u64,
}

impl fmt::Display for CodeFate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} after {} change(s)", status_text(self.status), self.changes)
    }
}

/// One ledger entry without its account (the map key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerRow {
    /// What moved.
    pub entry: Entry,
    /// The amount.
    pub amount: Money,
    /// The balance after it.
    pub balance: Money,
    /// The cause's `ts`.
    pub ts: Ts,
    /// The cause event.
    pub event: String,
    /// Codes settled (charges).
    pub codes: Option<u64>,
    /// The cause was late.
    pub late: bool,
    /// The period it is accounted in.
    pub period: Period,
}

impl fmt::Display for LedgerRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} -> balance {} at {} by {}",
            self.entry.as_str(),
            money(self.amount),
            money(self.balance),
            self.ts.render(),
            self.event
        )?;
        if let Some(codes) = self.codes {
            write!(f, ", {codes} codes")?;
        }
        if self.late {
            write!(f, ", late")?;
        }
        write!(f, ", period {}", self.period)
    }
}

/// A rejection as compared by default: everything but `detail`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RejectionKey {
    /// The event id.
    pub event: Option<String>,
    /// The event `type`.
    pub event_type: Option<String>,
    /// The account.
    pub account: Option<String>,
    /// The refused code.
    pub code: Option<String>,
    /// The reason.
    pub reason: Reason,
    /// The raw input (`MALFORMED`).
    pub raw: Option<String>,
}

impl fmt::Display for RejectionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} event {} type {} account {} code {}",
            self.reason.as_str(),
            opt(&self.event),
            opt(&self.event_type),
            opt(&self.account),
            opt(&self.code)
        )?;
        if let Some(raw) = &self.raw {
            write!(f, " raw {}", shorten(raw, 80))?;
        }
        Ok(())
    }
}

/// A status change as compared: the record, with its codes sorted in the multiset of
/// [`Canonical::status_changes`] and in the record's own order in
/// [`Canonical::status_history`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct StatusKey {
    /// The cause event (`None` for expiry).
    pub event: Option<String>,
    /// The account.
    pub account: String,
    /// The product.
    pub gtin: String,
    /// Previous status.
    pub from: Option<Status>,
    /// New status.
    pub to: Status,
    /// The cause's `ts` or the instant.
    pub ts: Ts,
    /// The cause was late.
    pub late: bool,
    /// The codes (see the type's documentation for their order).
    pub codes: Vec<String>,
}

impl fmt::Display for StatusKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "event {} account {} gtin {} {} -> {} at {}{} codes [{}]",
            opt(&self.event),
            self.account,
            self.gtin,
            status_text(self.from),
            self.to.as_str(),
            self.ts.render(),
            if self.late { " late" } else { "" },
            shorten(&self.codes.join(","), 120)
        )
    }
}

/// One revision of a period record (the highest one in [`Canonical::periods`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeriodState {
    /// Its `rev`.
    pub rev: u64,
    /// Its `final`.
    pub is_final: bool,
    /// Its figures.
    pub figures: Figures,
}

impl fmt::Display for PeriodState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rev {}{} {}",
            self.rev,
            if self.is_final { " final" } else { "" },
            figures_text(&self.figures)
        )
    }
}

/// A run's outputs as a consumer keeps them (see the module documentation).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Canonical {
    /// The last balance record per account.
    pub balances: BTreeMap<String, BalanceState>,
    /// Every code's final status and number of changes.
    pub codes: BTreeMap<String, CodeFate>,
    /// Each account's ledger entries in output order.
    pub ledger: BTreeMap<String, Vec<LedgerRow>>,
    /// Rejections without `detail`, with multiplicity.
    pub rejections: BTreeMap<RejectionKey, u64>,
    /// Rejections with `detail`, with multiplicity.
    pub rejections_with_detail: BTreeMap<(RejectionKey, String), u64>,
    /// Status changes, with multiplicity.
    pub status_changes: BTreeMap<StatusKey, u64>,
    /// The highest revision per period key (`PeriodKey::render()`).
    pub periods: BTreeMap<String, PeriodState>,
    /// Inconsistencies inside this run's outputs.
    pub anomalies: BTreeSet<String>,
    /// Each account's balance records in output order.
    pub balance_history: BTreeMap<String, Vec<BalanceRow>>,
    /// Each account's status records in output order, codes in record order.
    pub status_history: BTreeMap<String, Vec<StatusKey>>,
    /// Every revision per period key, in `rev` order.
    pub period_history: BTreeMap<String, Vec<PeriodState>>,
    /// Deleted keys (DOMAIN.md §9): `balances/ACCOUNT` or `periods/KEY` → the deletion's
    /// `rev`. A deleted key is gone from `balances` and `periods`, as for a consumer.
    pub deletions: BTreeMap<String, u64>,
    /// Each account's export lines (DOMAIN.md §9) in output order.
    pub exports: BTreeMap<String, Vec<String>>,
}

/// Reduces a run's outputs to their [`Canonical`] form.
pub fn canonical(outputs: &[Output]) -> Canonical {
    let mut canon = Canonical::default();
    let mut status_records: Vec<&StatusChange> = Vec::new();
    for output in outputs {
        match output {
            Output::Balance(b) => {
                let state = BalanceState {
                    balance: b.balance,
                    unpaid_codes: b.unpaid_codes,
                    unpaid_amount: b.unpaid_amount,
                    pending_orders: b.pending_orders,
                    rev: b.rev,
                };
                canon
                    .balance_history
                    .entry(b.account.clone())
                    .or_default()
                    .push(BalanceRow {
                        state: state.clone(),
                        ts: b.ts,
                    });
                canon.balances.insert(b.account.clone(), state);
            }
            Output::Ledger(l) => canon.ledger.entry(l.account.clone()).or_default().push(LedgerRow {
                entry: l.entry,
                amount: l.amount,
                balance: l.balance,
                ts: l.ts,
                event: l.event.clone(),
                codes: l.codes,
                late: l.late,
                period: l.period,
            }),
            Output::Rejection(r) => {
                let key = RejectionKey {
                    event: r.event.clone(),
                    event_type: r.event_type.clone(),
                    account: r.account.clone(),
                    code: r.code.clone(),
                    reason: r.reason,
                    raw: r.raw.clone(),
                };
                *canon
                    .rejections_with_detail
                    .entry((key.clone(), r.detail.clone()))
                    .or_default() += 1;
                *canon.rejections.entry(key).or_default() += 1;
            }
            Output::Status(s) => {
                let in_record_order = StatusKey {
                    event: s.event.clone(),
                    account: s.account.clone(),
                    gtin: s.gtin.clone(),
                    from: s.from,
                    to: s.to,
                    ts: s.ts,
                    late: s.late,
                    codes: s.codes.clone(),
                };
                let mut sorted = in_record_order.clone();
                sorted.codes.sort();
                *canon.status_changes.entry(sorted).or_default() += 1;
                canon
                    .status_history
                    .entry(s.account.clone())
                    .or_default()
                    .push(in_record_order);
                status_records.push(s);
            }
            Output::Period(p) => {
                let key = p.key.render();
                let state = PeriodState {
                    rev: p.rev,
                    is_final: p.is_final,
                    figures: p.figures.clone(),
                };
                canon.period_history.entry(key.clone()).or_default().push(state.clone());
                match canon.periods.get(&key) {
                    Some(kept) if kept.rev > p.rev => {}
                    Some(kept) if kept.rev == p.rev => {
                        if *kept != state {
                            canon.anomalies.insert(format!(
                                "period {key}: two different records with rev {}: {kept} / {state}",
                                p.rev
                            ));
                        }
                    }
                    _ => {
                        canon.periods.insert(key, state);
                    }
                }
            }
            Output::Deleted(deletion) => deleted(&mut canon, deletion),
            Output::Export(line) => canon
                .exports
                .entry(line.account.clone())
                .or_default()
                .push(format!("{line:?}")),
        }
    }
    follow_chains(&status_records, &mut canon);
    check_revisions(&mut canon);
    canon
}

/// A deletion: the key leaves the kept values, and its `rev` must follow the key's last.
fn deleted(canon: &mut Canonical, deletion: &Deletion) {
    let (name, rev, last) = match deletion {
        Deletion::Balance { account, rev, ts } => {
            canon.balances.remove(account);
            let history = canon.balance_history.entry(account.clone()).or_default();
            let last = history.last().map(|row| row.state.rev);
            // The deletion takes its place in the key's revisions (shown as all zero).
            history.push(BalanceRow {
                state: BalanceState {
                    balance: Money::ZERO,
                    unpaid_codes: 0,
                    unpaid_amount: Money::ZERO,
                    pending_orders: 0,
                    rev: *rev,
                },
                ts: *ts,
            });
            (format!("balances/{account}"), *rev, last)
        }
        Deletion::Period { key, rev } => {
            let key = key.render();
            let last = canon.periods.remove(&key).map(|state| state.rev);
            (format!("periods/{key}"), *rev, last)
        }
    };
    if last.is_some_and(|last| last + 1 != rev) {
        canon.anomalies.insert(format!(
            "{name}: deletion rev {rev} does not follow the last revision {last:?}"
        ));
    }
    canon.deletions.insert(name, rev);
}

/// Puts every key's revisions in `rev` order (a consumer of a compacted topic orders them
/// by `rev`, whatever order they arrived in) and records as anomalies revisions that do not
/// count 1, 2, 3, … or that come after a final one, and balance records whose `rev` does not
/// count 1, 2, 3, … in output order (one worker emits an account's balances).
fn check_revisions(canon: &mut Canonical) {
    for (key, revisions) in &mut canon.period_history {
        revisions.sort_by_key(|revision| revision.rev);
        let revs: Vec<u64> = revisions.iter().map(|revision| revision.rev).collect();
        if revs.iter().zip(1..).any(|(rev, expected)| *rev != expected) {
            canon
                .anomalies
                .insert(format!("period {key}: revisions {revs:?} do not count 1, 2, 3, …"));
        }
        if let Some(position) = revisions.iter().position(|revision| revision.is_final) {
            if position + 1 != revisions.len() {
                canon.anomalies.insert(format!(
                    "period {key}: {} revision(s) after the final one",
                    revisions.len() - position - 1
                ));
            }
        }
    }
    for (account, rows) in &canon.balance_history {
        let revs: Vec<u64> = rows.iter().map(|row| row.state.rev).collect();
        if revs.iter().zip(1..).any(|(rev, expected)| *rev != expected) {
            canon.anomalies.insert(format!(
                "balances of {account}: revisions {revs:?} do not count 1, 2, 3, …"
            ));
        }
    }
}

/// One status change of one code.
struct Step {
    from: Option<Status>,
    to: Status,
    ts: Ts,
}

/// Follows every code's chain of status changes from `null`. At each status the next step
/// is the unused change from it (the earliest `ts` if several, then the lowest `to`). When
/// the chain ends and changes from `null` remain, the code was compacted and issued again
/// (retention, ARCHITECTURE.md) and the chain goes on from `null`. Changes left over are
/// anomalies.
fn follow_chains(records: &[&StatusChange], canon: &mut Canonical) {
    // (code, step) for every code of every record, grouped by code with a sort (stable, so a
    // code's steps keep their output order; faster than a map of vectors on large runs).
    let mut steps: Vec<(&str, Step)> = records
        .iter()
        .flat_map(|record| {
            record.codes.iter().map(|code| {
                (
                    code.as_str(),
                    Step {
                        from: record.from,
                        to: record.to,
                        ts: record.ts,
                    },
                )
            })
        })
        .collect();
    steps.sort_by(|a, b| a.0.cmp(b.0));
    let mut fates: Vec<(String, CodeFate)> = Vec::new();
    for group in steps.chunk_by(|a, b| a.0 == b.0) {
        let code = group[0].0;
        let steps: Vec<&Step> = group.iter().map(|(_, step)| step).collect();
        let (fate, stray) = follow_chain(&steps);
        if !stray.is_empty() {
            let stray: Vec<String> = stray
                .iter()
                .map(|step| {
                    format!(
                        "{} -> {} at {}",
                        status_text(step.from),
                        step.to.as_str(),
                        step.ts.render()
                    )
                })
                .collect();
            canon.anomalies.insert(format!(
                "code {code}: {} status change(s) off its chain (which ends at {}): {}",
                stray.len(),
                status_text(fate.status),
                stray.join("; ")
            ));
        }
        fates.push((code.to_string(), fate));
    }
    // Already sorted by code: the map is built in bulk.
    canon.codes = fates.into_iter().collect();
}

/// One code's chain: its fate and the steps off the chain.
fn follow_chain<'a>(steps: &[&'a Step]) -> (CodeFate, Vec<&'a Step>) {
    let mut used = vec![false; steps.len()];
    let mut current: Option<Status> = None;
    let mut changes = 0u64;
    loop {
        let next = (0..steps.len())
            .filter(|&i| !used[i] && steps[i].from == current)
            .min_by_key(|&i| (steps[i].ts, steps[i].to, i));
        match next {
            Some(i) => {
                used[i] = true;
                current = Some(steps[i].to);
                changes += 1;
            }
            // The chain ended but the code starts again from null: compacted, issued again.
            None if current.is_some() && (0..steps.len()).any(|i| !used[i] && steps[i].from.is_none()) => {
                current = None;
            }
            None => break,
        }
    }
    let stray = (0..steps.len()).filter(|&i| !used[i]).map(|i| steps[i]).collect();
    (
        CodeFate {
            status: current,
            changes,
        },
        stray,
    )
}

/// The differences between two canonical forms, per category, for a person: at most
/// [`DIFF_LINES_PER_CATEGORY`] lines per category (the first in key order), then a line
/// counting the rest. Empty when the two are equivalent: same final values
/// ([`diff_final_values`]) and same histories ([`diff_histories`]). Rejection details are not
/// compared (see [`diff_strict`]).
pub fn diff(left: &Canonical, right: &Canonical, left_name: &str, right_name: &str) -> Vec<String> {
    let mut out = diff_final_values(left, right, left_name, right_name);
    out.extend(diff_histories(left, right, left_name, right_name));
    out
}

/// The histories' part of [`diff`]: each account's balance records and status records in
/// order, each period key's revisions in `rev` order.
pub fn diff_histories(left: &Canonical, right: &Canonical, left_name: &str, right_name: &str) -> Vec<String> {
    let names = Names {
        left: left_name,
        right: right_name,
    };
    let mut out = Vec::new();
    limit(
        &mut out,
        "balance history",
        diff_sequences("account", &left.balance_history, &right.balance_history, &names),
    );
    limit(
        &mut out,
        "status history",
        diff_sequences("account", &left.status_history, &right.status_history, &names),
    );
    limit(
        &mut out,
        "period history",
        diff_sequences("key", &left.period_history, &right.period_history, &names),
    );
    out
}

/// The final values' part of [`diff`] (see the module documentation).
pub fn diff_final_values(left: &Canonical, right: &Canonical, left_name: &str, right_name: &str) -> Vec<String> {
    let names = Names {
        left: left_name,
        right: right_name,
    };
    let mut out = Vec::new();
    limit(&mut out, "balances", diff_maps(&left.balances, &right.balances, &names));
    limit(&mut out, "codes", diff_maps(&left.codes, &right.codes, &names));
    limit(
        &mut out,
        "ledger",
        diff_sequences("account", &left.ledger, &right.ledger, &names),
    );
    limit(
        &mut out,
        "rejections",
        diff_multisets(&left.rejections, &right.rejections, &names),
    );
    limit(
        &mut out,
        "status changes",
        diff_multisets(&left.status_changes, &right.status_changes, &names),
    );
    limit(&mut out, "periods", diff_maps(&left.periods, &right.periods, &names));
    limit(
        &mut out,
        "deletions",
        diff_maps(&left.deletions, &right.deletions, &names),
    );
    limit(
        &mut out,
        "exports",
        diff_sequences("account", &left.exports, &right.exports, &names),
    );
    limit(
        &mut out,
        "anomalies",
        diff_sets(&left.anomalies, &right.anomalies, &names),
    );
    out
}

/// [`diff`], plus the rejections compared with their `detail`.
pub fn diff_strict(left: &Canonical, right: &Canonical, left_name: &str, right_name: &str) -> Vec<String> {
    let names = Names {
        left: left_name,
        right: right_name,
    };
    let mut out = diff(left, right, left_name, right_name);
    let details = |c: &Canonical| -> BTreeMap<String, u64> {
        c.rejections_with_detail
            .iter()
            .map(|((key, detail), n)| (format!("{key} detail {detail:?}"), *n))
            .collect()
    };
    limit(
        &mut out,
        "rejection details",
        diff_multisets(&details(left), &details(right), &names),
    );
    out
}

/// Panics with the [`diff`] when the two are not equivalent; `names` = (left, right).
pub fn assert_equivalent(left: &Canonical, right: &Canonical, names: (&str, &str)) {
    let differences = diff(left, right, names.0, names.1);
    assert!(
        differences.is_empty(),
        "{} and {} are not equivalent:\n{}",
        names.0,
        names.1,
        differences.join("\n")
    );
}

/// Reads a directory (or file) of partitions as an engine gets them: one `Vec` per
/// partition file, in `list_partitions` order. Panics on an I/O error.
pub fn load_dataset(dir: &Path) -> Vec<Vec<Decoded>> {
    list_partitions(&[dir.to_path_buf()])
        .unwrap_or_else(|error| panic!("listing {}: {error}", dir.display()))
        .iter()
        .map(|path| {
            let mut reader =
                PartitionReader::open(path).unwrap_or_else(|error| panic!("opening {}: {error}", path.display()));
            let records: Vec<Decoded> = reader.by_ref().collect();
            if let Some(error) = reader.io_error() {
                panic!("reading {}: {error}", path.display());
            }
            records
        })
        .collect()
}

/// Generates `config` into a fresh temporary directory, loads it with [`load_dataset`] and
/// removes the directory.
pub fn generate_dataset(config: &GeneratorConfig) -> Vec<Vec<Decoded>> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "markledger-compare-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let result = generate(config, &dir, &mut |_| {}).map(|_| load_dataset(&dir));
    let _ = std::fs::remove_dir_all(&dir);
    result.unwrap_or_else(|error| panic!("generating {config:?}: {error}"))
}

/// Orders that take effect at or after their own 4-hour deadline (`config.sla_ms`), counted
/// from the partitions as an engine reads them: an event takes effect at
/// `max(ts, high-water of its partition before it − lateness)` (DOMAIN.md §4).
pub fn orders_past_their_deadline(config: &Config, partitions: &[Vec<Decoded>]) -> u64 {
    let mut count = 0;
    for partition in partitions {
        let mut high_water: Option<Ts> = None;
        for record in partition {
            let Decoded::Event(event) = record else { continue };
            let effective = high_water.map_or(event.ts, |hw| event.ts.max(hw.minus_millis(config.lateness_ms)));
            if matches!(event.body, Body::Order { .. }) && event.ts.plus_millis(config.sla_ms) <= effective {
                count += 1;
            }
            high_water = Some(high_water.map_or(event.ts, |hw| hw.max(event.ts)));
        }
    }
    count
}

/// The reference engine's outputs on `partitions`.
pub fn reference_outputs(config: &Config, partitions: Vec<Vec<Decoded>>) -> Vec<Output> {
    reference::run(config, partitions, Vec::new(), &mut |_, _| {}).1
}

// ---------------------------------------------------------------------------------------
// Diff helpers

struct Names<'a> {
    left: &'a str,
    right: &'a str,
}

fn limit(out: &mut Vec<String>, category: &str, lines: Vec<String>) {
    let total = lines.len();
    out.extend(
        lines
            .into_iter()
            .take(DIFF_LINES_PER_CATEGORY)
            .map(|line| format!("{category}: {line}")),
    );
    if total > DIFF_LINES_PER_CATEGORY {
        out.push(format!(
            "{category}: … and {} more ({total} differences in all)",
            total - DIFF_LINES_PER_CATEGORY
        ));
    }
}

fn diff_maps<K: Ord + fmt::Display, V: PartialEq + fmt::Display>(
    left: &BTreeMap<K, V>,
    right: &BTreeMap<K, V>,
    names: &Names<'_>,
) -> Vec<String> {
    let keys: BTreeSet<&K> = left.keys().chain(right.keys()).collect();
    keys.into_iter()
        .filter_map(|key| match (left.get(key), right.get(key)) {
            (Some(l), Some(r)) if l == r => None,
            (Some(l), Some(r)) => Some(format!("{key}: {}: {l} / {}: {r}", names.left, names.right)),
            (Some(l), None) => Some(format!("{key}: only in {}: {l}", names.left)),
            (None, Some(r)) => Some(format!("{key}: only in {}: {r}", names.right)),
            (None, None) => None,
        })
        .collect()
}

fn diff_multisets<K: Ord + fmt::Display>(
    left: &BTreeMap<K, u64>,
    right: &BTreeMap<K, u64>,
    names: &Names<'_>,
) -> Vec<String> {
    let keys: BTreeSet<&K> = left.keys().chain(right.keys()).collect();
    keys.into_iter()
        .filter_map(|key| {
            let (l, r) = (
                left.get(key).copied().unwrap_or(0),
                right.get(key).copied().unwrap_or(0),
            );
            (l != r).then(|| format!("{key}: {} ×{l} / {} ×{r}", names.left, names.right))
        })
        .collect()
}

fn diff_sets(left: &BTreeSet<String>, right: &BTreeSet<String>, names: &Names<'_>) -> Vec<String> {
    let only_left = left.difference(right).map(|a| format!("only in {}: {a}", names.left));
    let only_right = right.difference(left).map(|a| format!("only in {}: {a}", names.right));
    let mut lines: Vec<String> = only_left.chain(only_right).collect();
    lines.sort();
    lines
}

/// Per key, whether two sequences are equal; when not, their lengths, how many positions
/// differ and the first one that does.
fn diff_sequences<V: PartialEq + fmt::Display>(
    key_name: &str,
    left: &BTreeMap<String, Vec<V>>,
    right: &BTreeMap<String, Vec<V>>,
    names: &Names<'_>,
) -> Vec<String> {
    let keys: BTreeSet<&String> = left.keys().chain(right.keys()).collect();
    keys.into_iter()
        .filter_map(|key| {
            let l = left.get(key).map_or(&[][..], Vec::as_slice);
            let r = right.get(key).map_or(&[][..], Vec::as_slice);
            if l == r {
                return None;
            }
            let first = (0..l.len().max(r.len())).find(|&i| l.get(i) != r.get(i)).unwrap_or(0);
            let differing = (0..l.len().max(r.len())).filter(|&i| l.get(i) != r.get(i)).count();
            let row = |rows: &[V]| rows.get(first).map_or("(none)".to_string(), |row| row.to_string());
            let (left_name, right_name) = (names.left, names.right);
            Some(format!(
                "{key_name} {key}: {left_name} has {} records, {right_name} has {}; {differing} positions differ, \
                 first #{first}: {left_name}: {} / {right_name}: {}",
                l.len(),
                r.len(),
                row(l),
                row(r)
            ))
        })
        .collect()
}

fn opt(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("null")
}

fn status_text(status: Option<Status>) -> &'static str {
    status.map_or("null", Status::as_str)
}

fn shorten(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars {
        text.to_string()
    } else {
        let mut short: String = text.chars().take(chars).collect();
        short.push('…');
        short
    }
}

fn ts_text(ts: Option<Ts>) -> String {
    ts.map_or("null".to_string(), Ts::render)
}

fn figures_text(figures: &Figures) -> String {
    match figures {
        Figures::Act {
            codes_paid,
            net,
            vat,
            gross,
        } => format!(
            "act codes_paid {codes_paid} net {} vat {} gross {}",
            money(*net),
            money(*vat),
            money(*gross)
        ),
        Figures::Reconciliation {
            opening,
            payments,
            compensations,
            services,
            refunds,
            closing,
        } => format!(
            "reconciliation opening {} payments {} compensations {} services {} refunds {} closing {}",
            money(*opening),
            money(*payments),
            money(*compensations),
            money(*services),
            money(*refunds),
            money(*closing)
        ),
        Figures::Product {
            codes_emitted,
            codes_applied,
            codes_paid,
            first_application,
            last_application,
        } => format!(
            "product emitted {codes_emitted} applied {codes_applied} paid {codes_paid} first {} last {}",
            ts_text(*first_application),
            ts_text(*last_application)
        ),
        Figures::Turnover {
            opening,
            charged,
            paid,
            compensations,
            refunds,
            closing,
        } => format!(
            "turnover opening {} charged {} paid {} compensations {} refunds {} closing {}",
            money(*opening),
            money(*charged),
            money(*paid),
            money(*compensations),
            money(*refunds),
            money(*closing)
        ),
        Figures::Debtors {
            unpaid_codes,
            amount_owed,
            oldest_unpaid_application,
        } => format!(
            "debtors unpaid_codes {unpaid_codes} amount_owed {} oldest {}",
            money(*amount_owed),
            ts_text(*oldest_unpaid_application)
        ),
        Figures::Payments { count, amount } => format!("payments count {count} amount {}", money(*amount)),
        Figures::Sla {
            orders,
            emitted_within_4h,
            late,
            pending,
        } => format!("sla orders {orders} within_4h {emitted_within_4h} late {late} pending {pending}"),
        Figures::RefundDue { balance, since, reason } => format!(
            "refund_due balance {} since {} reason {}",
            money(*balance),
            since.render(),
            reason.as_str()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use markledger_operators::output::{BalanceRecord, LedgerEntry};
    use std::str::FromStr;

    fn dec(text: &str) -> Money {
        Money::from_str(text).unwrap()
    }

    fn status(event: &str, from: Option<Status>, to: Status, ts: i64, codes: &[&str]) -> Output {
        Output::Status(StatusChange {
            event: Some(event.to_string()),
            account: "A".to_string(),
            gtin: "04601234567893".to_string(),
            from,
            to,
            ts: Ts(ts),
            late: false,
            codes: codes.iter().map(|c| c.to_string()).collect(),
        })
    }

    fn balance(account: &str, amount: &str) -> Output {
        Output::Balance(BalanceRecord {
            account: account.to_string(),
            balance: dec(amount),
            unpaid_codes: 0,
            unpaid_amount: Money::ZERO,
            pending_orders: 0,
            ts: Ts(0),
            rev: 1,
        })
    }

    fn payment(account: &str, amount: &str, event: &str) -> Output {
        Output::Ledger(LedgerEntry {
            account: account.to_string(),
            entry: Entry::Payment,
            amount: dec(amount),
            balance: dec(amount),
            ts: Ts(0),
            event: event.to_string(),
            codes: None,
            late: false,
            period: Period::new(2026, 1),
        })
    }

    #[test]
    fn money_compares_by_value() {
        let left = canonical(&[balance("A", "10.0"), payment("A", "10.0", "p1")]);
        let right = canonical(&[balance("A", "10.00"), payment("A", "10", "p1")]);
        assert_eq!(diff(&left, &right, "l", "r"), Vec::<String>::new());
    }

    #[test]
    fn chains_do_not_depend_on_record_order() {
        use Status::*;
        // A held application's record carries the command's ts, earlier than the emission's.
        let records = [
            status("e1", None, Emitted, 20, &["c1", "c2"]),
            status("a1", Some(Emitted), AppliedUnpaid, 10, &["c2", "c1"]),
            status("p1", Some(AppliedUnpaid), AppliedPaid, 30, &["c1"]),
        ];
        let forward = canonical(&records);
        let mut reversed = records.to_vec();
        reversed.reverse();
        let backward = canonical(&reversed);
        assert_eq!(diff_final_values(&forward, &backward, "l", "r"), Vec::<String>::new());
        // The account's history, though, is in another order.
        let histories = diff_histories(&forward, &backward, "l", "r");
        assert_eq!(histories.len(), 1, "{histories:#?}");
        assert!(histories[0].starts_with("status history: account A: "));
        assert_eq!(
            forward.codes["c1"],
            CodeFate {
                status: Some(AppliedPaid),
                changes: 3
            }
        );
        assert_eq!(
            forward.codes["c2"],
            CodeFate {
                status: Some(AppliedUnpaid),
                changes: 2
            }
        );
        assert!(forward.anomalies.is_empty(), "{:?}", forward.anomalies);
        let broken = canonical(&records[1..]);
        assert_eq!(broken.codes["c1"].status, None);
        assert_eq!(broken.anomalies.len(), 2);
    }

    #[test]
    #[should_panic(expected = "left and right are not equivalent:\nledger: account A")]
    fn assert_equivalent_panics_with_the_diff() {
        let left = canonical(&[payment("A", "10", "p1")]);
        let right = canonical(&[payment("A", "10", "p2")]);
        assert_equivalent(&left, &right, ("left", "right"));
    }

    fn revision(rev: u64, is_final: bool, count: u64) -> Output {
        use markledger_operators::output::{AggregateKind, PeriodKey, PeriodRecord};
        Output::Period(PeriodRecord {
            key: PeriodKey {
                kind: AggregateKind::Payments,
                account: "*".to_string(),
                period: Period::new(2026, 1),
                sub: Some("Kaspi Bank".to_string()),
            },
            rev,
            is_final,
            figures: Figures::Payments {
                count,
                amount: dec("1"),
            },
        })
    }

    #[test]
    fn period_histories_are_in_rev_order_and_gaps_are_anomalies() {
        // Revisions received out of order are kept in rev order, without anomaly (a consumer
        // orders them by rev); a missing revision, a repeated one, a revision after the final
        // one and balance records not counting 1, 2, … are anomalies; and one revision more
        // in between shows in the period history.
        let shuffled = canonical(&[revision(2, false, 2), revision(1, false, 1), revision(3, true, 2)]);
        assert!(shuffled.anomalies.is_empty(), "{:?}", shuffled.anomalies);
        let revs: Vec<u64> = shuffled.period_history["payments/*/2026-01/Kaspi Bank"]
            .iter()
            .map(|r| r.rev)
            .collect();
        assert_eq!(revs, vec![1, 2, 3]);
        let gap = canonical(&[revision(1, false, 1), revision(3, true, 2)]);
        assert_eq!(gap.anomalies.len(), 1, "{:?}", gap.anomalies);
        let repeated = canonical(&[revision(1, false, 1), revision(1, false, 1), revision(2, true, 1)]);
        assert_eq!(repeated.anomalies.len(), 1, "{:?}", repeated.anomalies);
        let after_final = canonical(&[revision(1, true, 1), revision(2, false, 2)]);
        assert_eq!(after_final.anomalies.len(), 1, "{:?}", after_final.anomalies);
        let mut second = balance("A", "2");
        if let Output::Balance(b) = &mut second {
            b.rev = 3;
        }
        let balances = canonical(&[balance("A", "1"), second]);
        assert_eq!(balances.anomalies.len(), 1, "{:?}", balances.anomalies);
        // The same final revision reached through another first revision: final values
        // agree, the period history does not.
        let other_first = canonical(&[revision(1, false, 2), revision(2, false, 2), revision(3, true, 2)]);
        assert!(diff_final_values(&shuffled, &other_first, "l", "r").is_empty());
        let lines = diff(&shuffled, &other_first, "l", "r");
        assert_eq!(lines.len(), 1, "{lines:#?}");
        assert!(
            lines[0].starts_with("period history: key payments/*/2026-01/Kaspi Bank: l has 3 records, r has 3; 1 positions differ, first #0"),
            "{lines:#?}"
        );
    }

    #[test]
    fn last_balance_per_account_wins_and_diff_is_capped() {
        let mut left = Vec::new();
        let mut right = Vec::new();
        for i in 0..30 {
            let account = format!("A{i:02}");
            left.push(balance(&account, "1"));
            left.push(balance(&account, "2"));
            right.push(balance(&account, "2"));
            right.push(balance(&account, "3"));
        }
        let lines = diff_final_values(&canonical(&left), &canonical(&right), "l", "r");
        assert_eq!(lines.len(), DIFF_LINES_PER_CATEGORY + 1, "{lines:#?}");
        assert_eq!(
            lines[0],
            "balances: A00: l: balance 2.00, unpaid 0 codes / 0.00, pending orders 0, rev 1 \
             / r: balance 3.00, unpaid 0 codes / 0.00, pending orders 0, rev 1"
        );
        assert_eq!(lines[20], "balances: … and 10 more (30 differences in all)");
    }
}
