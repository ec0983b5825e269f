//! Synthetic workloads for the operators' state machines, and [`Chain`], which steps the
//! national index and the accounts one instant at a time the way the dataflow connects them.
//!
//! In: products (one per account, codes rendered by the generator's own code function, so
//! codes are the ~85-byte DataMatrix strings of real input) and sizes. Out: [`Instant`]s —
//! an effective time and the inputs of each machine at it — ready to be stepped.
//!
//! The machines are the dataflow's own ([`Codes`], [`Accounts`], [`Revisions`]) with the
//! engine's default configuration; only the plumbing differs: no timely, no exchange, one
//! worker's share being all of it. Like the dataflow, [`Chain`] gives the index's output for
//! the accounts to the accounts at the same instant, and the accounts' finality notices back
//! to the index 1 ms later.

use differential_dataflow::difference::Semigroup;
use markledger::config::Config;
use markledger_datasets::calendars::kazakhstan;
use markledger_datasets::generator::codes::{code, gtin, product_key};
use markledger_operators::accounts::AccountsOut;
use markledger_operators::accounts::{AccountRules, Accounts};
use markledger_operators::aggregates::{deltas, Delta, Revisions, Slot};
use markledger_operators::codes::Codes;
use markledger_operators::codes::IndexOut;
use markledger_operators::event::{Body, DecimalField, Event, Kind};
use markledger_operators::flow::Time;
use markledger_operators::flow::{time_of, AccountIn, CodeIn, CodeOut, CodesIn, Fact, Header, Placed};
use markledger_operators::machine::Machine;
use markledger_operators::output::Output;
use markledger_operators::time::{MILLIS_PER_DAY, MILLIS_PER_HOUR};
use markledger_operators::{Money, TariffHistory, Ts};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Codes per emission and per report: the 10^7 benchmark dataset's events name ~850 codes
/// each on average.
pub const REPORT_CODES: usize = 1_000;

/// Where synthetic time starts: Monday 2026-01-12, 09:00 local.
pub fn start() -> Ts {
    Ts::parse_rfc3339("2026-01-12T09:00:00+05:00").expect("a valid timestamp")
}

/// One product of one account.
#[derive(Clone, Debug)]
pub struct Product {
    /// The owning account.
    pub account: String,
    /// Its GTIN.
    pub gtin: String,
    key: u64,
}

impl Product {
    /// The code of serial number `serial` (the generator's rendering: ~85 bytes).
    pub fn code(&self, serial: u64) -> String {
        code(&self.gtin, self.key, serial)
    }

    /// Codes `first..first + count`.
    pub fn codes(&self, first: u64, count: u64) -> Vec<String> {
        (first..first + count).map(|serial| self.code(serial)).collect()
    }
}

/// One product for each of `accounts` accounts.
pub fn products(accounts: u32) -> Vec<Product> {
    (0..accounts)
        .map(|index| Product {
            account: format!("KZ-BENCH-{index:04}"),
            gtin: gtin(487, index + 1, 1),
            key: product_key(1, index, 1),
        })
        .collect()
}

/// The header every code of an event carries.
pub fn header(kind: Kind, id: &str, account: &str, ts: Ts, gtin: &str) -> Header {
    Header {
        effective: ts,
        kind,
        id: id.to_string(),
        account: account.to_string(),
        ts,
        late: false,
        gtin: gtin.to_string(),
    }
}

/// One input per code, in the event's order.
pub fn code_inputs(header: &Header, codes: &[String]) -> Vec<CodeIn> {
    let header = Arc::new(header.clone());
    codes
        .iter()
        .enumerate()
        .map(|(position, code)| CodeIn {
            header: header.clone(),
            position: u32::try_from(position).expect("fewer than 2^32 codes an event"),
            code: code.clone(),
        })
        .collect()
}

/// A payment of `amount` to `account` at `ts`, as the accounts receive it.
pub fn payment(id: &str, account: &str, ts: Ts, amount: Money) -> AccountIn {
    AccountIn::Event(Box::new(Placed {
        effective: ts,
        late: false,
        event: Event {
            id: id.to_string(),
            ts,
            account: account.to_string(),
            body: Body::Payment {
                amount: DecimalField::Parsed(amount.value()),
                channel: "halyk".into(),
            },
        },
    }))
}

/// The charge of one code applied at `ts` under the built-in tariff (3.0016 KZT).
pub fn charge_at(ts: Ts) -> Money {
    TariffHistory::built_in().at(ts).charge()
}

/// The smallest amount with at most 2 decimals that pays for `codes` codes applied at `ts`.
pub fn amount_for(codes: u64, ts: Ts) -> Money {
    let hundred = markledger_operators::money::Decimal::from(100);
    Money::exact((charge_at(ts).times(codes).value() * hundred).ceil() / hundred)
}

/// The engine's defaults (hold 60 s, 5-year retention, 30 working days to expiry, periods
/// closing on the 7th).
pub fn config() -> Config {
    Config::with_calendar(kazakhstan())
}

/// A national index configured as the engine configures it.
pub fn new_codes() -> Codes {
    let config = config();
    Codes::new(config.hold_ms, config.retention_ms)
}

/// Accounts configured as the engine configures them.
pub fn new_accounts() -> Accounts {
    let config = config();
    Accounts::new(AccountRules {
        calendar: config.calendar,
        expiry_working_days: config.expiry_working_days,
        close_after_days: config.close_after_days,
        finality_delay_ms: 1,
    })
}

/// The inputs of one instant.
#[derive(Clone, Debug, Default)]
pub struct Instant {
    /// The effective time.
    pub at: Time,
    /// Codes for the national index.
    pub to_codes: Vec<CodesIn>,
    /// Inputs of the accounts (credits; and, for the accounts alone, codes).
    pub to_accounts: Vec<AccountIn>,
    /// Code events among the inputs.
    pub code_events: u64,
}

/// Total code events of a workload.
pub fn code_events(instants: &[Instant]) -> u64 {
    instants.iter().map(|instant| instant.code_events).sum()
}

fn commands(kind: Kind, product: &Product, id: &str, ts: Ts, codes: &[String]) -> Vec<CodesIn> {
    let gtin = if kind == Kind::Emission {
        product.gtin.as_str()
    } else {
        ""
    };
    let header = header(kind, id, &product.account, ts, gtin);
    code_inputs(&header, codes).into_iter().map(CodesIn::Code).collect()
}

/// The life of `codes_per_product` new codes of every product, through the index (and, with
/// [`Chain`], the accounts), from [`start`]: see [`lifecycle_at`].
pub fn lifecycle(products: &[Product], codes_per_product: u64, first_serial: u64) -> Vec<Instant> {
    lifecycle_at(products, codes_per_product, first_serial, start())
}

/// The life of `codes_per_product` new codes of every product: at `at` each account pays
/// for its codes, an hour later it emits them (in emissions of [`REPORT_CODES`]), then
/// applies them (paid at once from the balance), then introduces them, an hour apart. 3
/// code events per code. Serial numbers start at `first_serial`, so that consecutive
/// workloads name new codes.
pub fn lifecycle_at(products: &[Product], codes_per_product: u64, first_serial: u64, at: Ts) -> Vec<Instant> {
    let funding = Instant {
        at: time_of(at),
        to_codes: Vec::new(),
        to_accounts: products
            .iter()
            .map(|p| {
                let id = format!("pay-{}-{first_serial}", p.account);
                payment(&id, &p.account, at, amount_for(codes_per_product, at))
            })
            .collect(),
        code_events: 0,
    };
    let mut instants = vec![funding];
    let steps = [
        (Kind::Emission, "em"),
        (Kind::Application, "ap"),
        (Kind::Introduction, "in"),
    ];
    for (step, (kind, prefix)) in steps.into_iter().enumerate() {
        let ts = at.plus_millis(MILLIS_PER_HOUR * (step as i64 + 1));
        let mut instant = Instant {
            at: time_of(ts),
            ..Instant::default()
        };
        for product in products {
            let mut serial = first_serial;
            while serial < first_serial + codes_per_product {
                let count = (REPORT_CODES as u64).min(first_serial + codes_per_product - serial);
                let id = format!("{prefix}-{}-{serial}", product.account);
                instant
                    .to_codes
                    .extend(commands(kind, product, &id, ts, &product.codes(serial, count)));
                instant.code_events += count;
                serial += count;
            }
        }
        instants.push(instant);
    }
    instants
}

/// A FIFO queue of `queue_codes` unpaid codes for `product`'s account, built on the
/// accounts alone: one instant creates the codes (as the index would forward them), then
/// one instant per report of `report_codes` applies them with a zero balance, so the queue
/// holds one run per report.
pub fn unpaid_queue(product: &Product, queue_codes: u64, report_codes: u64) -> Vec<Instant> {
    let at = start();
    let codes = product.codes(0, queue_codes);
    let mut created = Instant {
        at: time_of(at),
        ..Instant::default()
    };
    let mut applications = Vec::new();
    for (report, chunk) in codes.chunks(report_codes as usize).enumerate() {
        let emitted = header(
            Kind::Emission,
            &format!("em-{report}"),
            &product.account,
            at,
            &product.gtin,
        );
        created.to_accounts.extend(
            code_inputs(&emitted, chunk)
                .into_iter()
                .map(|code| AccountIn::Code(CodeOut::Created(code))),
        );
        created.code_events += chunk.len() as u64;
        let ts = at.plus_millis(MILLIS_PER_HOUR + report as i64 * 1_000);
        let applied = header(Kind::Application, &format!("ap-{report}"), &product.account, ts, "");
        applications.push(Instant {
            at: time_of(ts),
            to_codes: Vec::new(),
            to_accounts: code_inputs(&applied, chunk)
                .into_iter()
                .map(|code| AccountIn::Code(CodeOut::Command(code)))
                .collect(),
            code_events: chunk.len() as u64,
        });
    }
    let mut instants = vec![created];
    instants.extend(applications);
    instants
}

/// Payments of `codes_per_payment` codes' worth each (rounded up to the tiyn), one an
/// instant, until they pay for `queue_codes` codes applied at `start() + 1 h`: each settles
/// `codes_per_payment` codes (one more now and then, from the rounding). The instants
/// carry the codes they settle as their code events, so that throughput counts codes
/// settled.
pub fn small_payments(product: &Product, queue_codes: u64, codes_per_payment: u64) -> Vec<Instant> {
    let applied_at = start().plus_millis(MILLIS_PER_HOUR);
    let charge = charge_at(applied_at);
    let amount = amount_for(codes_per_payment, applied_at);
    let owed = charge.times(queue_codes);
    let first = start().plus_millis(2 * MILLIS_PER_DAY);
    let (mut paid, mut settled, mut instants) = (Money::ZERO, 0u64, Vec::new());
    while paid < owed {
        let ts = first.plus_millis(instants.len() as i64 * 1_000);
        paid += amount;
        // Codes settled so far: whole charges the payments cover, bounded by the queue.
        let now_settled = queue_codes.min(
            (paid.value() / charge.value())
                .floor()
                .to_string()
                .parse()
                .expect("an integer"),
        );
        let id = format!("pay-{}", instants.len());
        instants.push(Instant {
            at: time_of(ts),
            to_codes: Vec::new(),
            to_accounts: vec![payment(&id, &product.account, ts, amount)],
            code_events: now_settled - settled,
        });
        settled = now_settled;
    }
    instants
}

/// One payment that pays for the whole queue of [`unpaid_queue`] at once.
pub fn one_payment(product: &Product, queue_codes: u64) -> Vec<Instant> {
    let applied_at = start().plus_millis(MILLIS_PER_HOUR);
    let ts = start().plus_millis(2 * MILLIS_PER_DAY);
    vec![Instant {
        at: time_of(ts),
        to_codes: Vec::new(),
        to_accounts: vec![payment(
            "pay-all",
            &product.account,
            ts,
            amount_for(queue_codes, applied_at),
        )],
        code_events: queue_codes,
    }]
}

/// Everyday traffic over `days` days from [`start`], for the aggregates: every day each
/// account lives through [`lifecycle_at`] with `codes_per_day` new codes (pays at 09:00,
/// emits, applies, introduces by 12:00). Sixty days from mid-January reach into March, so
/// that January and February close and months start on the way.
pub fn daily(products: &[Product], days: u64, codes_per_day: u64) -> Vec<Instant> {
    (0..days)
        .flat_map(|day| {
            let morning = start().plus_millis(day as i64 * MILLIS_PER_DAY);
            lifecycle_at(products, codes_per_day, day * codes_per_day, morning)
        })
        .collect()
}

/// What a [`Chain`] produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Produced {
    /// Finished outputs (status changes, ledger entries, balances, rejections).
    pub outputs: u64,
    /// Of them, rejections.
    pub rejections: u64,
    /// Facts for the aggregates.
    pub facts: u64,
}

/// The national index feeding the accounts, stepped one instant at a time.
pub struct Chain {
    /// The national index.
    pub codes: Codes,
    /// The accounts.
    pub accounts: Accounts,
    /// Finality notices for the index, and the instant they take effect there.
    finals: Option<(Time, Vec<CodesIn>)>,
    /// Facts with their instants, when kept.
    kept_facts: Option<Vec<(Time, Fact)>>,
    produced: Produced,
    from_index: Vec<IndexOut>,
    from_accounts: Vec<AccountsOut>,
}

impl Chain {
    /// A fresh index and accounts; `keep_facts` keeps the facts for the aggregates.
    pub fn new(keep_facts: bool) -> Chain {
        Chain {
            codes: new_codes(),
            accounts: new_accounts(),
            finals: None,
            kept_facts: keep_facts.then(Vec::new),
            produced: Produced::default(),
            from_index: Vec::new(),
            from_accounts: Vec::new(),
        }
    }

    /// Steps both machines at `instant`, after stepping them at every earlier instant
    /// something is due at (finality notices for the index, timers), as the dataflow would.
    pub fn step(&mut self, instant: Instant) {
        loop {
            let finals_at = self.finals.as_ref().map(|(at, _)| *at);
            let due = [finals_at, self.codes.next_timer(), self.accounts.next_timer()]
                .into_iter()
                .flatten()
                .filter(|at| *at < instant.at)
                .min();
            let Some(at) = due else { break };
            self.step_at(Instant {
                at,
                ..Instant::default()
            });
        }
        self.step_at(instant);
    }

    fn step_at(&mut self, instant: Instant) {
        let Instant {
            at,
            mut to_codes,
            mut to_accounts,
            ..
        } = instant;
        if self.finals.as_ref().is_some_and(|(finals_at, _)| *finals_at == at) {
            let (_, finals) = self.finals.take().expect("checked");
            to_codes.extend(finals);
        }
        if !to_codes.is_empty() || self.codes.next_timer().is_some_and(|timer| timer <= at) {
            self.codes.step(at, to_codes, &mut self.from_index);
        }
        for out in self.from_index.drain(..) {
            match out {
                IndexOut::ToAccount(code) => to_accounts.push(AccountIn::Code(code)),
                IndexOut::Refused(output) => {
                    self.produced.outputs += 1;
                    self.produced.rejections += u64::from(matches!(*output, Output::Rejection(_)));
                }
            }
        }
        self.accounts.step(at, to_accounts, &mut self.from_accounts);
        let mut finals = Vec::new();
        for out in self.from_accounts.drain(..) {
            match out {
                AccountsOut::Output(output) => {
                    self.produced.outputs += 1;
                    self.produced.rejections += u64::from(matches!(*output, Output::Rejection(_)));
                }
                AccountsOut::Fact(fact) => {
                    self.produced.facts += 1;
                    if let Some(kept) = &mut self.kept_facts {
                        kept.push((at, *fact));
                    }
                }
                AccountsOut::Final(notice) => finals.push(notice),
                // The bench's workloads have no terminations; the gate is not run here.
                AccountsOut::Terminated(_) => {}
            }
        }
        if !finals.is_empty() {
            debug_assert!(self.finals.is_none(), "earlier notices were taken at their instant");
            self.finals = Some((at + 1, finals));
        }
    }

    /// What was produced so far.
    pub fn produced(&self) -> &Produced {
        &self.produced
    }

    /// The facts kept so far, in instant order.
    pub fn take_facts(&mut self) -> Vec<(Time, Fact)> {
        self.kept_facts.as_mut().map(std::mem::take).unwrap_or_default()
    }
}

/// Runs a workload through a fresh [`Chain`] and returns its facts, for the aggregates.
pub fn facts_of(instants: Vec<Instant>) -> Vec<(Time, Fact)> {
    let mut chain = Chain::new(true);
    for instant in instants {
        chain.step(instant);
    }
    chain.take_facts()
}

/// Steps `machine` over `inputs` at the instants given, in order, stepping its timers due
/// before each instant at their own instants (as `run_machine` does), and after the last up
/// to `end`. Returns how many records it produced.
pub fn drive<M: Machine>(machine: &mut M, inputs: Vec<(Time, Vec<M::In>)>, end: Time) -> u64 {
    fn timers_before<M: Machine>(machine: &mut M, limit: Time, out: &mut Vec<M::Out>) {
        while let Some(timer) = machine.next_timer().filter(|t| *t < limit) {
            machine.step(timer, Vec::new(), out);
        }
    }
    let mut out = Vec::new();
    let mut produced = 0u64;
    for (at, batch) in inputs {
        timers_before(machine, at, &mut out);
        machine.step(at, batch, &mut out);
        produced += out.len() as u64;
        out.clear();
    }
    timers_before(machine, end.saturating_add(1), &mut out);
    produced + out.len() as u64
}

/// The aggregate updates of facts, as the dataflow forms them: each fact's deltas,
/// consolidated per record and instant (the arrangement's job there). In instant order.
pub fn consolidate(facts: Vec<(Time, Fact)>) -> Vec<(Time, Vec<(Slot, Delta)>)> {
    let mut by_instant: BTreeMap<Time, BTreeMap<Slot, Delta>> = BTreeMap::new();
    for (at, fact) in facts {
        let records = by_instant.entry(at).or_default();
        for (slot, delta) in deltas(fact) {
            records
                .entry(slot)
                .and_modify(|sum| sum.plus_equals(&delta))
                .or_insert(delta);
        }
    }
    by_instant
        .into_iter()
        .map(|(at, records)| (at, records.into_iter().collect()))
        .collect()
}

/// Period revisions of consolidated updates, stepped through `end`. Returns the number of
/// period records produced.
pub fn revise(updates: Vec<(Time, Vec<(Slot, Delta)>)>, end: Time) -> u64 {
    let mut revisions = Revisions::new(config().close_after_days);
    drive(&mut revisions, updates, end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use markledger_operators::Status;

    /// The lifecycle workload runs through the index and the accounts without a refusal:
    /// every code is created, paid on application and introduced, and the index still holds
    /// every code (final ones are kept for the retention horizon).
    #[test]
    fn the_lifecycle_is_refused_nowhere() {
        let products = products(3);
        let workload = lifecycle(&products, 2_500, 0);
        assert_eq!(code_events(&workload), 3 * 3 * 2_500);
        let mut chain = Chain::new(true);
        for instant in workload {
            chain.step(instant);
        }
        assert_eq!(chain.produced().rejections, 0);
        assert_eq!(chain.codes.len(), 3 * 2_500);
        let paid: u64 = chain
            .take_facts()
            .iter()
            .map(|(_, fact)| match fact {
                Fact::Paid { count, .. } => *count,
                _ => 0,
            })
            .sum();
        assert_eq!(paid, 3 * 2_500);
    }

    /// Small payments pay the whole queue, head first, the number of codes the workload
    /// says each one settles; after the last the account owes nothing.
    #[test]
    fn small_payments_settle_the_queue() {
        let product = products(1).remove(0);
        let mut accounts = new_accounts();
        let mut out = Vec::new();
        for instant in unpaid_queue(&product, 5_000, 1_000) {
            accounts.step(instant.at, instant.to_accounts, &mut out);
        }
        out.clear();
        let payments = small_payments(&product, 5_000, 10);
        let expected: Vec<u64> = payments.iter().map(|instant| instant.code_events).collect();
        assert_eq!(expected.iter().sum::<u64>(), 5_000);
        let mut settled = Vec::new();
        let mut last_balance = None;
        for instant in payments {
            accounts.step(instant.at, instant.to_accounts, &mut out);
            let mut codes = 0;
            for out in out.drain(..) {
                if let AccountsOut::Output(output) = out {
                    match *output {
                        Output::Status(change) => {
                            assert_eq!(change.to, Status::AppliedPaid);
                            codes += change.codes.len() as u64;
                        }
                        Output::Balance(balance) => last_balance = Some(balance),
                        _ => {}
                    }
                }
            }
            settled.push(codes);
        }
        assert_eq!(settled, expected);
        let balance = last_balance.expect("a balance record");
        assert_eq!(balance.unpaid_codes, 0);
        assert!(balance.balance < charge_at(start()));
    }

    /// The daily traffic's facts revise aggregates for every month it spans, and both
    /// closes happen before the end.
    #[test]
    fn daily_traffic_revises_and_closes() {
        let traffic = daily(&products(2), 60, 20);
        let end = traffic.last().expect("traffic").at;
        let facts = facts_of(traffic);
        assert!(facts.iter().any(|(_, fact)| matches!(fact, Fact::Payment { .. })));
        let updates = consolidate(facts);
        let mut revisions = Revisions::new(config().close_after_days);
        let records = drive(&mut revisions, updates, end);
        assert!(records > 0);
        let march = markledger_operators::Period::new(2026, 3);
        assert_eq!(revisions.periods_held(), vec![march]);
    }
}
