//! "Accounts: lifecycle, balance, FIFO" — the order-dependent heart of the dataflow.
//!
//! In (exchanged by account; tariffs broadcast to every worker): payments, compensations,
//! refunds, tariffs, pending-order counts from the order book, and from the national index
//! the codes an account's emissions created, commands on its own codes, and held commands an
//! emission resolved. Out: status changes, ledger entries, balances, rejections
//! (`BAD_AMOUNT`, `REFUND_*`, `INVALID_TRANSITION`, `CODE_UNPAID`) and period facts.
//!
//! Within an instant: timers (month end → debtors, expiry, dormant advance) first, then
//! inputs in account order — (kind rank, event id); an emission's created codes, then the
//! holds it resolved in hold order; pending counts just before refunds. A timer a unit of
//! work sets at or before `now` (the expiry of an emission arriving past it, the dormant
//! advance of a payment or charge over a year old) fires right after that unit, before the
//! next: each instant is stepped once. Invariants: the balance never goes negative and the
//! FIFO head is never affordable while unpaid.

use crate::checkpoint::{decode, encode, RestoreError, Snapshot};
use crate::driver::{run_machine, Drive};
use crate::event::{Body, DecimalField, Kind};
use crate::final_codes::{
    segments_dir, EmissionText, FinalCodes, Manifest, SegmentReader, StoreError, TextRef, Unsynced,
};
use crate::flow::Time;
use crate::flow::{
    code_key, edges, route, take, time_of, ts_of, AccountIn, CodeIn, CodeKey, CodeMap, CodeOut, CodesIn, Edge, Fact,
    Header, Placed,
};
use crate::gate::GateIn;
use crate::intern::Interner;
use crate::machine::{merge_shares, Machine};
use crate::money::Money;
use crate::movements::Movements;
use crate::output::{BalanceRecord, Deletion, Entry, LedgerEntry, Output, RefundReason, Rejection, StatusChange};
use crate::reason::Reason;
use crate::rules::{self, Termination};
use crate::status::Status;
use crate::tariff::{Tariff, TariffHistory};
use crate::time::{Period, Ts};
use crate::wording;
use crate::WorkingCalendar;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::StreamVec;

/// One of the account's codes: 8 bytes, keyed by the code's 16-byte fingerprint.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Code {
    gtin: u32,
    status: Status,
}

/// A run of the FIFO queue: unpaid applied codes, in queue order, of one product applied at
/// one `ts` at one tariff (an application's codes of a product are one run, however many).
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Unpaid {
    codes: VecDeque<String>,
    gtin: u32,
    net: Money,
    vat: Money,
    applied_at: Ts,
}

impl Unpaid {
    /// The charge of each of its codes.
    fn charge(&self) -> Money {
        self.net + self.vat
    }
}

/// The FIFO queue of unpaid codes, as runs.
#[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
struct Queue {
    runs: VecDeque<Unpaid>,
    codes: u64,
}

impl Queue {
    fn push(&mut self, code: String, gtin: u32, net: Money, vat: Money, applied_at: Ts) {
        self.codes += 1;
        if let Some(run) = self.runs.back_mut() {
            if run.gtin == gtin && run.net == net && run.vat == vat && run.applied_at == applied_at {
                run.codes.push_back(code);
                return;
            }
        }
        self.runs.push_back(Unpaid {
            codes: VecDeque::from([code]),
            gtin,
            net,
            vat,
            applied_at,
        });
    }

    /// The charge of the code at the head, if any.
    fn head_charge(&self) -> Option<Money> {
        self.runs.front().map(Unpaid::charge)
    }

    /// Takes the head code: (code, gtin, net, vat).
    fn pop(&mut self) -> Option<(String, u32, Money, Money)> {
        let run = self.runs.front_mut()?;
        let code = run.codes.pop_front().expect("runs are never empty");
        let taken = (code, run.gtin, run.net, run.vat);
        if run.codes.is_empty() {
            self.runs.pop_front();
        }
        self.codes -= 1;
        Some(taken)
    }

    fn len(&self) -> usize {
        self.codes as usize
    }

    fn is_empty(&self) -> bool {
        self.codes == 0
    }

    /// The earliest application among queued codes.
    fn oldest(&self) -> Option<Ts> {
        self.runs.iter().map(|run| run.applied_at).min()
    }
}

#[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
struct Account {
    balance: Money,
    queue: Queue,
    unpaid: Money,
    pending_orders: u64,
    // Looked up by fingerprint, never iterated: a HashMap cannot reach an output's order.
    codes: CodeMap<Code>,
    anchor: Option<Ts>,
    anchor_generation: u64,
    changed_at: Option<Ts>,
    shown: Option<(Money, u64, Money, u64)>,
    /// Balance records emitted (the last one's `rev`).
    balance_revs: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
enum Timer {
    MonthEnd(Period),
    Expiry(u64),
    Dormant(String, u64),
    /// DOMAIN.md §9's deletion at D (after the instant's other timers).
    Delete(String),
}

/// Knobs of the accounts operator.
#[derive(Clone)]
pub struct AccountRules {
    /// Working days and days off.
    pub calendar: WorkingCalendar,
    /// Working days until unapplied codes expire.
    pub expiry_working_days: u32,
    /// Days into the next month a period stays open.
    pub close_after_days: u32,
    /// How long after a code becomes final the national index learns it (the delay of the
    /// dataflow's feedback edge, at least 1 ms); the accounts answer for it until then.
    pub finality_delay_ms: i64,
}

impl AccountRules {
    /// A placeholder while a checkpoint is read (the run's own rules replace it).
    fn placeholder() -> AccountRules {
        AccountRules {
            calendar: WorkingCalendar::parse("range 2020-01-01 2020-01-01\n").expect("a one-day calendar parses"),
            expiry_working_days: 0,
            close_after_days: 0,
            finality_delay_ms: 1,
        }
    }
}

/// An emission waiting for its expiry: its codes' text is in the worker's
/// [`EmissionText`] on disk, RAM keeps where (issue 17: the text was ~86 bytes a code held).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Emission {
    account: String,
    gtin: String,
    text: TextRef,
}

/// The accounts of one worker.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Accounts {
    /// The emission-text segments at the last save. The first field: a checkpoint loader
    /// reads it alone ([`Accounts::segments_of`]) to verify the files before a restore.
    emission_segments: Option<Manifest>,
    #[serde(skip, default = "AccountRules::placeholder")]
    rules: AccountRules,
    tariffs: TariffHistory,
    gtins: Interner,
    accounts: BTreeMap<String, Account>,
    emissions: BTreeMap<u64, Emission>,
    next_emission: u64,
    timers: BTreeSet<(Ts, Timer)>,
    month_end_scheduled: bool,
    touched: BTreeSet<String>,
    /// Codes that became final, by instant: the index learns it `finality_delay_ms` later
    /// and answers for them from then on, so the accounts forget them then.
    retiring: VecDeque<(Ts, String, Vec<CodeKey>)>,
    /// Terminated accounts until their deletion (DOMAIN.md §9; the gate refuses their
    /// events from the instant after T, these are refused here at T itself).
    ended: BTreeMap<String, Termination>,
    /// Emissions' code text (configuration and files: not saved; the manifest above is).
    #[serde(skip)]
    text: Option<EmissionText>,
}

/// Sort key of a unit of work within an instant (see the module docs).
type UnitKey<'a> = (Kind, &'a str, u8, Option<(Ts, Kind, &'a str)>);

enum Unit {
    Event(Box<Placed>),
    Pending(String, u64, Ts),
    Created(Arc<Header>, Vec<CodeIn>),
    Command(Arc<Header>, Vec<CodeIn>),
}

impl Unit {
    /// The event this unit of work belongs to (a failure's message names it).
    fn event_id(&self) -> &str {
        match self {
            Unit::Event(placed) => &placed.event.id,
            Unit::Pending(account, ..) => account,
            Unit::Created(header, _) | Unit::Command(header, _) => &header.id,
        }
    }
}

/// What the accounts emit: one variant per edge of the graph.
#[derive(Clone, Debug)]
pub enum AccountsOut {
    /// A finished record: status change, ledger entry, balance, rejection (→ the outputs).
    Output(Box<Output>),
    /// A change to period aggregates (→ the aggregates).
    Fact(Box<Fact>),
    /// A code that can never change again, from this instant, in this status (→ back to the
    /// national index, the finality delay later).
    Final(CodesIn),
    /// An accepted `terminate` (→ back to the gate, 1 ms later).
    Terminated(GateIn),
}

impl AccountsOut {
    fn output(output: Output) -> AccountsOut {
        AccountsOut::Output(Box::new(output))
    }

    fn fact(fact: Fact) -> AccountsOut {
        AccountsOut::Fact(Box::new(fact))
    }
}

impl Edge for AccountsOut {
    const EDGES: u64 = 4;
    fn edge(&self) -> u64 {
        match self {
            AccountsOut::Output(_) => 0,
            AccountsOut::Fact(_) => 1,
            AccountsOut::Final(_) => 2,
            AccountsOut::Terminated(_) => 3,
        }
    }
}

/// The accounts' typed outputs.
pub struct AccountsEdges<'scope> {
    /// Status changes, ledger entries, balances, rejections.
    pub outputs: StreamVec<'scope, Time, Output>,
    /// Period facts.
    pub facts: StreamVec<'scope, Time, Fact>,
    /// Finality, for the national index (a feedback edge).
    pub finals: StreamVec<'scope, Time, CodesIn>,
    /// Accepted terminations, for the gate (a feedback edge).
    pub terminations: StreamVec<'scope, Time, GateIn>,
}

/// "Accounts: lifecycle, balance, FIFO" over the accounts' inputs (module docs), exchanged
/// by account; tariffs by the worker they are addressed to.
pub fn accounts<'scope>(
    inputs: StreamVec<'scope, Time, AccountIn>,
    accounts: Accounts,
    drive: &Drive,
) -> AccountsEdges<'scope> {
    let mut accounts = accounts;
    accounts
        .text()
        .attach(inputs.scope().index(), drive.checkpoints.clone());
    let mut parts = edges(run_machine(inputs, Exchange::new(AccountIn::route), accounts, drive));
    AccountsEdges {
        outputs: take(parts.next(), |out| {
            if let AccountsOut::Output(o) = out {
                Some(*o)
            } else {
                None
            }
        }),
        facts: take(parts.next(), |out| {
            if let AccountsOut::Fact(f) = out {
                Some(*f)
            } else {
                None
            }
        }),
        finals: take(parts.next(), |out| {
            if let AccountsOut::Final(f) = out {
                Some(f)
            } else {
                None
            }
        }),
        terminations: take(parts.next(), |out| {
            if let AccountsOut::Terminated(t) = out {
                Some(t)
            } else {
                None
            }
        }),
    }
}

fn rejection(header: &Header, code: Option<&str>, reason: Reason, detail: String) -> AccountsOut {
    let rejection = Rejection::of_event(&header.id, header.kind.as_str(), &header.account, code, reason, detail);
    AccountsOut::output(Output::Rejection(rejection))
}

impl Accounts {
    /// Empty accounts with the built-in tariff.
    pub fn new(rules: AccountRules) -> Accounts {
        Accounts {
            emission_segments: None,
            rules,
            tariffs: TariffHistory::built_in(),
            gtins: Interner::default(),
            accounts: BTreeMap::new(),
            emissions: BTreeMap::new(),
            next_emission: 0,
            timers: BTreeSet::new(),
            month_end_scheduled: false,
            touched: BTreeSet::new(),
            retiring: VecDeque::new(),
            ended: BTreeMap::new(),
            text: None,
        }
    }

    /// Emissions' code text goes to `place` (one directory per worker under it).
    pub fn with_emission_text(mut self, place: FinalCodes) -> Accounts {
        self.text = Some(EmissionText::new(place));
        self
    }

    /// The emission-text store, in a temporary directory if none was given.
    fn text(&mut self) -> &mut EmissionText {
        self.text
            .get_or_insert_with(|| EmissionText::new(FinalCodes::temporary(&std::env::temp_dir())))
    }

    /// The emission-text manifest in a saved accounts' state (read without decoding the
    /// rest).
    pub fn segments_of(state: &[u8]) -> Result<Option<Manifest>, RestoreError> {
        decode("the accounts' emission-text manifest", state)
    }

    /// Tells the index that `finals` of `account` became final now, and forgets them once
    /// the index knows (`finality_delay_ms` later).
    fn finalize(&mut self, account: &str, finals: Vec<(CodeKey, Status)>, now: Ts, out: &mut Vec<AccountsOut>) {
        if finals.is_empty() {
            return;
        }
        let keys = finals
            .into_iter()
            .map(|(key, status)| {
                out.push(AccountsOut::Final(CodesIn::Final { key, at: now, status }));
                key
            })
            .collect();
        self.retiring.push_back((now, account.to_string(), keys));
    }

    /// Forgets the codes whose finality the index has learnt by `now`.
    fn retire(&mut self, now: Ts) {
        let delay = self.rules.finality_delay_ms;
        while self
            .retiring
            .front()
            .is_some_and(|(at, _, _)| at.plus_millis(delay) <= now)
        {
            let (_, name, keys) = self.retiring.pop_front().expect("peeked");
            // A deleted account (DOMAIN.md §9) has forgotten its codes already.
            let Some(account) = self.accounts.get_mut(&name) else {
                continue;
            };
            for key in keys {
                account.codes.remove(&key);
            }
            if account.codes.capacity() > 64 && account.codes.len() < account.codes.capacity() / 4 {
                account.codes.shrink_to_fit();
            }
        }
    }

    fn account(&mut self, name: &str) -> &mut Account {
        self.accounts.entry(name.to_string()).or_default()
    }

    fn touch(&mut self, name: &str, ts: Ts) {
        let account = self.account(name);
        account.changed_at = Some(account.changed_at.map_or(ts, |t| t.max(ts)));
        self.touched.insert(name.to_string());
    }

    fn period(&self, ts: Ts, now: Ts) -> Period {
        rules::accounting_period(ts, now, self.rules.close_after_days)
    }

    fn movement(&self, account: &str, period: Period, movements: Movements, out: &mut Vec<AccountsOut>) {
        for target in [account, "*"] {
            out.push(AccountsOut::fact(Fact::Movement {
                account: target.to_string(),
                period,
                movements,
            }));
        }
    }

    fn ledger(&self, header: &Header, entry: Entry, amount: Money, codes: Option<u64>, period: Period) -> AccountsOut {
        let balance = self.accounts[&header.account].balance;
        debug_assert!(balance >= Money::ZERO, "balance of {} went negative", header.account);
        AccountsOut::output(Output::Ledger(LedgerEntry {
            account: header.account.clone(),
            entry,
            amount,
            balance,
            ts: header.ts,
            event: header.id.clone(),
            codes,
            late: header.late,
            period,
        }))
    }

    fn status(
        header: &Header,
        groups: BTreeMap<(String, Option<Status>, Status), Vec<String>>,
        out: &mut Vec<AccountsOut>,
    ) {
        for ((gtin, from, to), codes) in groups {
            out.push(AccountsOut::output(Output::Status(StatusChange {
                event: Some(header.id.clone()),
                account: header.account.clone(),
                gtin,
                from,
                to,
                ts: header.ts,
                late: header.late,
                codes,
            })));
        }
    }

    fn anchor(&mut self, name: &str, ts: Ts, now: Ts) {
        let account = self.account(name);
        let anchor = account.anchor.map_or(ts, |a| a.max(ts));
        if account.anchor == Some(anchor) {
            return;
        }
        account.anchor = Some(anchor);
        account.anchor_generation += 1;
        let generation = account.anchor_generation;
        self.timers.insert((
            anchor.plus_one_local_year().max(now),
            Timer::Dormant(name.to_string(), generation),
        ));
    }

    /// Pays from the FIFO head while the balance covers it. Returns the codes that became
    /// `APPLIED_PAID` (annulled codes are paid silently).
    fn settle(&mut self, header: &Header, now: Ts, out: &mut Vec<AccountsOut>) -> Vec<(String, u32)> {
        let period = self.period(header.ts, now);
        let (mut total, mut count, mut became_paid) = (Money::ZERO, 0u64, Vec::new());
        let mut finals = Vec::new();
        let mut paid_by_gtin: BTreeMap<u32, (u64, Money, Money)> = BTreeMap::new();
        let account = self
            .accounts
            .get_mut(&header.account)
            .expect("settling a known account");
        while account
            .queue
            .head_charge()
            .is_some_and(|charge| charge <= account.balance)
        {
            let (head, gtin, net, vat) = account.queue.pop().expect("checked");
            let charge = net + vat;
            account.balance -= charge;
            account.unpaid -= charge;
            total += charge;
            count += 1;
            let paid = paid_by_gtin.entry(gtin).or_default();
            paid.0 += 1;
            paid.1 += net;
            paid.2 += vat;
            let code = account
                .codes
                .get_mut(&code_key(&head))
                .expect("queued codes are the account's");
            if code.status == Status::AppliedUnpaid {
                code.status = Status::AppliedPaid;
                became_paid.push((head, gtin));
            } else {
                // An annulled code, paid at last: now it is final.
                finals.push((code_key(&head), Status::Annulled));
            }
        }
        debug_assert!(account
            .queue
            .head_charge()
            .is_none_or(|charge| charge > account.balance));
        self.finalize(&header.account, finals, now, out);
        for (gtin, (count, net, vat)) in paid_by_gtin {
            out.push(AccountsOut::fact(Fact::Paid {
                account: header.account.clone(),
                period,
                gtin: self.gtins.name(gtin).to_string(),
                count,
                net,
                vat,
            }));
        }
        if count > 0 {
            self.movement(&header.account, period, Movements::services(total), out);
            out.push(self.ledger(header, Entry::Charge, total, Some(count), period));
            self.anchor(&header.account, header.ts, now);
            self.touch(&header.account, header.ts);
        }
        became_paid
    }

    fn credit(&mut self, placed: &Placed, now: Ts, out: &mut Vec<AccountsOut>) {
        let header = Header::of(placed, "");
        let (field, channel) = match &placed.event.body {
            Body::Payment { amount, channel } => (amount, Some(channel)),
            Body::Compensation { amount, .. } => (amount, None),
            _ => unreachable!("credits only"),
        };
        let Some(amount) = self.amount(&header, field, out) else {
            return;
        };
        let balance = self.account(&header.account).balance;
        match rules::credit(balance, amount) {
            Ok(after) => self.account(&header.account).balance = after,
            Err(detail) => return out.push(rejection(&header, None, Reason::BadAmount, detail)),
        }
        let period = self.period(header.ts, now);
        if let Some(channel) = channel {
            let day = header.ts.local_date().format("%Y-%m-%d").to_string();
            out.push(AccountsOut::fact(Fact::Payment {
                period,
                channel: channel.clone(),
                day,
                amount,
            }));
            self.movement(&header.account, period, Movements::payment(amount), out);
            out.push(self.ledger(&header, Entry::Payment, amount, None, period));
            self.anchor(&header.account, header.ts, now);
        } else {
            self.movement(&header.account, period, Movements::compensation(amount), out);
            out.push(self.ledger(&header, Entry::Compensation, amount, None, period));
        }
        self.touch(&header.account, header.ts);
        let mut groups = BTreeMap::new();
        for (code, gtin) in self.settle(&header, now, out) {
            let gtin = self.gtins.name(gtin).to_string();
            groups
                .entry((gtin, Some(Status::AppliedUnpaid), Status::AppliedPaid))
                .or_insert_with(Vec::new)
                .push(code);
        }
        Self::status(&header, groups, out);
    }

    fn amount(&self, header: &Header, field: &DecimalField, out: &mut Vec<AccountsOut>) -> Option<Money> {
        rules::amount(field)
            .map_err(|detail| out.push(rejection(header, None, Reason::BadAmount, detail)))
            .ok()
    }

    fn refund(&mut self, placed: &Placed, now: Ts, out: &mut Vec<AccountsOut>) {
        let header = Header::of(placed, "");
        let Body::Refund { amount } = &placed.event.body else {
            unreachable!("refunds only")
        };
        let Some(amount) = self.amount(&header, amount, out) else {
            return;
        };
        let account = self.account(&header.account);
        let refusal = if !account.queue.is_empty() {
            Some((
                Reason::RefundUnpaidCodes,
                wording::refund_unpaid_codes(account.queue.len()),
            ))
        } else if account.pending_orders > 0 {
            Some((
                Reason::RefundPendingOrder,
                wording::refund_pending_orders(account.pending_orders),
            ))
        } else if amount > account.balance {
            Some((
                Reason::RefundExceedsBalance,
                wording::refund_exceeds_balance(amount, account.balance),
            ))
        } else {
            None
        };
        if let Some((reason, detail)) = refusal {
            out.push(rejection(&header, None, reason, detail));
            return;
        }
        account.balance -= amount;
        let period = self.period(header.ts, now);
        self.movement(&header.account, period, Movements::refund(amount), out);
        out.push(self.ledger(&header, Entry::Refund, amount, None, period));
        self.touch(&header.account, header.ts);
    }

    /// `terminate` (DOMAIN.md §9): refused while codes are unpaid or an order is pending;
    /// accepted, the account's `EMITTED` codes expire, a positive balance is reported owed
    /// back, the gate learns it (1 ms later) and the deletion is scheduled at D.
    fn terminate(&mut self, placed: &Placed, now: Ts, out: &mut Vec<AccountsOut>) {
        let header = Header::of(placed, "");
        let name = &header.account;
        if let Some(termination) = self.ended.get(name) {
            // A second `terminate` at T itself (later ones the gate refuses).
            let detail = wording::account_terminated(termination.at, None);
            return out.push(rejection(&header, None, Reason::AccountTerminated, detail));
        }
        let account = self.account(name);
        if !account.queue.is_empty() {
            let detail = wording::termination_unpaid_codes(account.queue.len());
            return out.push(rejection(&header, None, Reason::TerminationUnpaidCodes, detail));
        }
        if account.pending_orders > 0 {
            let detail = wording::termination_pending_orders(account.pending_orders);
            return out.push(rejection(&header, None, Reason::TerminationPendingOrder, detail));
        }
        let balance = account.balance;
        let termination = Termination::at(now, self.rules.close_after_days);
        self.expire_on_termination(&header, now, out);
        if balance > Money::ZERO {
            out.push(AccountsOut::fact(Fact::RefundDue {
                account: name.clone(),
                period: now.period(),
                balance,
                since: now,
                reason: RefundReason::Termination,
            }));
        }
        self.ended.insert(name.clone(), termination);
        self.timers.insert((termination.deletion, Timer::Delete(name.clone())));
        out.push(AccountsOut::Terminated(GateIn::Terminated {
            account: name.clone(),
            termination,
        }));
    }

    /// The terminated account's `EMITTED` codes expire at T, caused by the `terminate`: one
    /// record per GTIN, codes in emission order; its emissions no longer wait for expiry.
    fn expire_on_termination(&mut self, header: &Header, now: Ts, out: &mut Vec<AccountsOut>) {
        let ids: Vec<u64> = self
            .emissions
            .iter()
            .filter(|(_, emission)| emission.account == header.account)
            .map(|(id, _)| *id)
            .collect();
        let mut by_gtin: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut finals = Vec::new();
        for id in ids {
            let emission = self.emissions.remove(&id).expect("listed");
            let codes = self.text().take(emission.text).codes;
            let account = self
                .accounts
                .get_mut(&header.account)
                .expect("terminating a known account");
            for code in codes {
                let key = code_key(&code);
                if let Some(state) = account.codes.get_mut(&key).filter(|c| c.status == Status::Emitted) {
                    state.status = Status::Expired;
                    finals.push((key, Status::Expired));
                    by_gtin.entry(emission.gtin.clone()).or_default().push(code);
                }
            }
        }
        self.finalize(&header.account, finals, now, out);
        let groups = by_gtin
            .into_iter()
            .map(|(gtin, codes)| ((gtin, Some(Status::Emitted), Status::Expired), codes))
            .collect();
        Self::status(header, groups, out);
    }

    /// `export` (DOMAIN.md §9): accepted within a month of termination; the aggregates
    /// deliver it at the later of now and the close of T's period.
    fn export(&mut self, placed: &Placed, now: Ts, out: &mut Vec<AccountsOut>) {
        let header = Header::of(placed, "");
        self.account(&header.account);
        let Some(termination) = self.ended.get(&header.account) else {
            let detail = wording::export_not_terminated();
            return out.push(rejection(&header, None, Reason::ExportNotTerminated, detail));
        };
        match termination.export(now) {
            Err(detail) => out.push(rejection(&header, None, Reason::ExportOutOfWindow, detail)),
            Ok(at) => {
                let (first, last) = termination.export_periods();
                out.push(AccountsOut::fact(Fact::Export {
                    account: header.account.clone(),
                    export: header.id.clone(),
                    requested: now,
                    at,
                    first,
                    last,
                }));
            }
        }
    }

    /// The deletion at D (DOMAIN.md §9): the balance key's deletion, and the account is
    /// forgotten; the aggregates delete its period keys and leave its balance out of later
    /// `"*"` openings. Its codes stay in the national index under its name. An id used
    /// again after the gate forgets the termination continues the balance key's `rev`.
    fn delete(&mut self, name: &str, now: Ts, out: &mut Vec<AccountsOut>) {
        self.ended.remove(name);
        let Some(account) = self.accounts.remove(name) else {
            return;
        };
        debug_assert!(account.queue.is_empty(), "a terminated account has no unpaid codes");
        if account.balance_revs > 0 {
            let balance_revs = account.balance_revs + 1;
            out.push(AccountsOut::output(Output::Deleted(Deletion::Balance {
                account: name.to_string(),
                rev: balance_revs,
                ts: now,
            })));
            let kept = Account {
                balance_revs,
                ..Account::default()
            };
            self.accounts.insert(name.to_string(), kept);
        }
        out.push(AccountsOut::fact(Fact::Deleted {
            account: name.to_string(),
            period: now.period(),
            balance: account.balance,
        }));
    }

    fn create(&mut self, header: &Header, codes: Vec<CodeIn>, now: Ts, out: &mut Vec<AccountsOut>) {
        let created: Vec<String> = codes.into_iter().map(|c| c.code).collect();
        let gtin = self.gtins.intern(&header.gtin);
        let account = self.account(&header.account);
        for code in &created {
            account.codes.insert(
                code_key(code),
                Code {
                    gtin,
                    status: Status::Emitted,
                },
            );
        }
        let period = self.period(header.ts, now);
        out.push(AccountsOut::fact(Fact::Emitted {
            account: header.account.clone(),
            period,
            gtin: header.gtin.clone(),
            count: created.len() as u64,
        }));
        let text = self.text().append(&header.account, &header.gtin, &created);
        let mut groups = BTreeMap::new();
        groups.insert((header.gtin.clone(), None, Status::Emitted), created);
        Self::status(header, groups, out);
        let expiry = self
            .rules
            .calendar
            .deadline_after(header.ts.local_date(), self.rules.expiry_working_days);
        let id = self.next_emission;
        self.next_emission += 1;
        let emission = Emission {
            account: header.account.clone(),
            gtin: header.gtin.clone(),
            text,
        };
        self.emissions.insert(id, emission);
        self.timers.insert((expiry.max(now), Timer::Expiry(id)));
    }

    fn command(&mut self, header: &Header, codes: Vec<CodeIn>, now: Ts, out: &mut Vec<AccountsOut>) {
        let kind = header.kind;
        let tariff: Tariff = self.tariffs.at(header.ts);
        let period = self.period(header.ts, now);
        let mut groups: BTreeMap<(String, Option<Status>, Status), Vec<String>> = BTreeMap::new();
        let mut applied: Vec<(String, u32)> = Vec::new();
        let mut applied_by_gtin: BTreeMap<u32, u64> = BTreeMap::new();
        let mut changed: Vec<(u32, Status, Status, String)> = Vec::new();
        let mut finals = Vec::new();
        for code in codes {
            let account = self
                .accounts
                .get_mut(&header.account)
                .expect("commands reach known accounts");
            let state = account
                .codes
                .get_mut(&code_key(&code.code))
                .expect("the index forwards only the account's codes");
            let from = state.status;
            let to = match (kind, from) {
                (Kind::Application, Status::Emitted) => Status::AppliedUnpaid,
                (Kind::Dropout, Status::Emitted) => Status::Rejected,
                (Kind::Defect, Status::AppliedUnpaid | Status::AppliedPaid) => Status::Annulled,
                (Kind::Introduction, Status::AppliedPaid) => Status::Introduced,
                (Kind::Introduction, Status::AppliedUnpaid) => {
                    out.push(rejection(
                        header,
                        Some(&code.code),
                        Reason::CodeUnpaid,
                        wording::code_unpaid(),
                    ));
                    continue;
                }
                _ => {
                    let detail = wording::invalid_transition(kind, from);
                    out.push(rejection(header, Some(&code.code), Reason::InvalidTransition, detail));
                    continue;
                }
            };
            state.status = to;
            let gtin = state.gtin;
            // A code that can never change again is final (an annulled one only once paid).
            if matches!(to, Status::Rejected | Status::Introduced)
                || (to == Status::Annulled && from == Status::AppliedPaid)
            {
                finals.push((code_key(&code.code), to));
            }
            if kind == Kind::Application {
                account
                    .queue
                    .push(code.code.clone(), gtin, tariff.net_price, tariff.vat(), header.ts);
                account.unpaid += tariff.charge();
                *applied_by_gtin.entry(gtin).or_default() += 1;
                applied.push((code.code, gtin));
            } else {
                changed.push((gtin, from, to, code.code));
            }
        }
        self.finalize(&header.account, finals, now, out);
        for (gtin, from, to, code) in changed {
            groups
                .entry((self.gtins.name(gtin).to_string(), Some(from), to))
                .or_default()
                .push(code);
        }
        for (gtin, count) in applied_by_gtin {
            let account = header.account.clone();
            out.push(AccountsOut::fact(Fact::Applied {
                account,
                period,
                gtin: self.gtins.name(gtin).to_string(),
                count,
                at: header.ts,
            }));
        }
        if kind == Kind::Application && !applied.is_empty() {
            self.touch(&header.account, header.ts);
            let paid: BTreeSet<String> = self
                .settle(header, now, out)
                .into_iter()
                .map(|(code, _)| code)
                .collect();
            for (code, gtin) in applied {
                let to = if paid.contains(&code) {
                    Status::AppliedPaid
                } else {
                    Status::AppliedUnpaid
                };
                let gtin = self.gtins.name(gtin).to_string();
                groups.entry((gtin, Some(Status::Emitted), to)).or_default().push(code);
            }
        }
        Self::status(header, groups, out);
    }

    /// Fires every timer due at or before `now`: at the start of an instant those due then,
    /// after a unit of work those it set at `max(deadline, now)` because its deadline had
    /// passed (DOMAIN.md §8: they come before the instant's later events).
    fn fire_due(&mut self, now: Ts, out: &mut Vec<AccountsOut>) {
        while self.timers.first().is_some_and(|(at, _)| *at <= now) {
            let (_, timer) = self.timers.pop_first().expect("peeked");
            self.fire(timer, now, out);
        }
    }

    fn fire(&mut self, timer: Timer, now: Ts, out: &mut Vec<AccountsOut>) {
        match timer {
            Timer::MonthEnd(period) => {
                for (name, account) in &self.accounts {
                    if account.queue.is_empty() {
                        continue;
                    }
                    out.push(AccountsOut::fact(Fact::Debtor {
                        account: name.clone(),
                        period,
                        unpaid_codes: account.queue.len() as u64,
                        amount_owed: account.unpaid,
                        oldest: account.queue.oldest(),
                    }));
                }
                self.timers
                    .insert((period.next().end(), Timer::MonthEnd(period.next())));
            }
            Timer::Expiry(id) => {
                let Some(emission) = self.emissions.remove(&id) else {
                    return;
                };
                let entry = self.text().take(emission.text);
                debug_assert_eq!(entry.account, emission.account);
                let (name, gtin) = (emission.account, emission.gtin);
                let account = self.accounts.get_mut(&name).expect("emitting account");
                let mut expired = Vec::new();
                let mut finals = Vec::new();
                for code in entry.codes {
                    let key = code_key(&code);
                    let state = account.codes.get_mut(&key);
                    if let Some(state) = state.filter(|c| c.status == Status::Emitted) {
                        state.status = Status::Expired;
                        finals.push((key, Status::Expired));
                        expired.push(code);
                    }
                }
                self.finalize(&name, finals, now, out);
                if !expired.is_empty() {
                    out.push(AccountsOut::output(Output::Status(StatusChange {
                        event: None,
                        account: name,
                        gtin,
                        from: Some(Status::Emitted),
                        to: Status::Expired,
                        ts: now,
                        late: false,
                        codes: expired,
                    })));
                }
            }
            Timer::Dormant(name, generation) => {
                // No dormant advance after termination (DOMAIN.md §9).
                let Some(account) = self.accounts.get(&name).filter(|_| !self.ended.contains_key(&name)) else {
                    return;
                };
                if account.anchor_generation == generation && account.balance > Money::ZERO {
                    out.push(AccountsOut::fact(Fact::RefundDue {
                        account: name.clone(),
                        period: now.period(),
                        balance: account.balance,
                        since: account.anchor.unwrap_or(now),
                        reason: RefundReason::Dormant,
                    }));
                }
            }
            Timer::Delete(name) => self.delete(&name, now, out),
        }
    }

    /// Groups an instant's inputs into units of work in account order. Inputs are sorted
    /// by a borrowed key and neighbours grouped, so no key is copied per code.
    fn units(mut inputs: Vec<AccountIn>) -> Vec<Unit> {
        fn key(input: &AccountIn) -> UnitKey<'_> {
            match input {
                AccountIn::Event(placed) | AccountIn::Tariff { placed, .. } => {
                    (placed.event.kind(), &placed.event.id, 0, None)
                }
                // Pending counts sort before every refund (ids are never empty).
                AccountIn::Pending { account, .. } => (Kind::Refund, "", 0, Some((Ts(0), Kind::Refund, account))),
                AccountIn::Code(CodeOut::Created(code)) => (Kind::Emission, &code.header.id, 0, None),
                // Held commands right after the emission that resolved them, in hold order.
                AccountIn::Code(CodeOut::Resolved { after, command }) => {
                    let held = &command.header;
                    (
                        Kind::Emission,
                        &after.id,
                        1,
                        Some((held.effective, held.kind, &held.id)),
                    )
                }
                AccountIn::Code(CodeOut::Command(code)) => (code.header.kind, &code.header.id, 0, None),
            }
        }
        // Codes of one event share their header: equal keys, without comparing ids.
        fn same_event(a: &AccountIn, b: &AccountIn) -> bool {
            match (a, b) {
                (AccountIn::Code(CodeOut::Created(a)), AccountIn::Code(CodeOut::Created(b)))
                | (AccountIn::Code(CodeOut::Command(a)), AccountIn::Code(CodeOut::Command(b))) => {
                    Arc::ptr_eq(&a.header, &b.header)
                }
                _ => false,
            }
        }
        inputs.sort_by(|a, b| {
            if same_event(a, b) {
                std::cmp::Ordering::Equal
            } else {
                key(a).cmp(&key(b))
            }
        });
        // Sorted, a code belongs to the previous unit exactly when that unit is of the same
        // sort and event: a held command's codes resolved by two emissions are separated by
        // the second emission's created codes.
        let mut units: Vec<Unit> = Vec::new();
        for input in inputs {
            match input {
                AccountIn::Event(placed) | AccountIn::Tariff { placed, .. } => units.push(Unit::Event(placed)),
                AccountIn::Pending { account, pending, ts } => units.push(Unit::Pending(account, pending, ts)),
                AccountIn::Code(CodeOut::Created(code)) => match units.last_mut() {
                    Some(Unit::Created(header, codes)) if header.id == code.header.id => codes.push(code),
                    _ => units.push(Unit::Created(code.header.clone(), vec![code])),
                },
                AccountIn::Code(CodeOut::Resolved { command: code, .. } | CodeOut::Command(code)) => {
                    match units.last_mut() {
                        Some(Unit::Command(header, codes)) if header.id == code.header.id => codes.push(code),
                        _ => units.push(Unit::Command(code.header.clone(), vec![code])),
                    }
                }
            }
        }
        units
    }
}

impl crate::machine::Durable for Accounts {
    fn keep_configuration(&mut self, restored: &mut Accounts) {
        std::mem::swap(&mut restored.rules, &mut self.rules);
        restored.text = self.text.take();
    }

    /// Seals the emission text's active buffer into a segment file and records the
    /// manifest: earlier segments are shared with earlier checkpoints, never copied.
    fn save(&mut self) -> Vec<u8> {
        self.emission_segments = Some(self.text().checkpoint());
        if let Some(unsynced) = self.text().take_unsynced() {
            unsynced.settle_or_end();
        }
        encode(self)
    }

    /// Seals the emission text's buffer on the worker (not fsynced), then hands the writer
    /// the segments to fsync and a copy of the state to encode: with the code text on disk
    /// what is left is the live codes' flat maps (16-byte keys, 8-byte values: copied
    /// without allocating per code, several times faster than bincode encodes them),
    /// queues and per-emission references.
    fn snapshot(&mut self) -> Snapshot {
        self.emission_segments = Some(self.text().checkpoint());
        let unsynced = self.text().take_unsynced();
        // The fields `Accounts` serializes, in its order (`rules`, `text` are skipped).
        Snapshot::of((
            self.emission_segments.clone(),
            self.tariffs.clone(),
            self.gtins.clone(),
            self.accounts.clone(),
            self.emissions.clone(),
            self.next_emission,
            self.timers.clone(),
            self.month_end_scheduled,
            self.touched.clone(),
            self.retiring.clone(),
            self.ended.clone(),
        ))
        .after(move || unsynced.into_iter().for_each(Unsynced::settle_or_end))
    }

    /// Restores the accounts and opens the emission-text segments the saved manifest names
    /// (each file verified: a torn or corrupt one refuses the restore, naming it).
    fn restore(&mut self, state: &[u8]) -> Result<(), RestoreError> {
        let mut restored: Accounts = decode(std::any::type_name::<Accounts>(), state)?;
        self.keep_configuration(&mut restored);
        if let Some(manifest) = restored.emission_segments.clone() {
            let live: Vec<TextRef> = restored.emissions.values().map(|emission| emission.text).collect();
            restored
                .text()
                .open(&manifest, live.iter())
                .map_err(|error| RestoreError {
                    what: "the accounts' emission text".into(),
                    detail: error.to_string(),
                })?;
        }
        *self = restored;
        Ok(())
    }

    /// Accounts, their emissions, timers, retiring codes and terminations by the account's
    /// key group. Tariffs (a copy on every worker), the interned GTINs and the month's
    /// clock are the worker's: kept whole.
    fn retain_groups(&mut self, owned: &dyn Fn(u64) -> bool) {
        let mine = |account: &str| owned(route(account));
        self.accounts.retain(|name, _| mine(name));
        self.emissions.retain(|_, emission| mine(&emission.account));
        let emissions = &self.emissions;
        self.timers.retain(|(_, timer)| match timer {
            Timer::MonthEnd(_) => true,
            Timer::Expiry(id) => emissions.contains_key(id),
            Timer::Dormant(account, _) | Timer::Delete(account) => mine(account),
        });
        self.touched.retain(|name| mine(name));
        self.retiring.retain(|(_, account, _)| mine(account));
        self.ended.retain(|name, _| mine(name));
    }

    /// `other`'s accounts with their GTIN ids re-interned here, its emissions renumbered
    /// after this one's (in their order: an account's emissions keep theirs), its timers
    /// re-pointed at them; retiring codes merged in time order.
    fn absorb(&mut self, other: Accounts) {
        let gtins: Vec<u32> = (0..other.gtins.len())
            .map(|id| self.gtins.intern(other.gtins.name(id as u32)))
            .collect();
        for (name, mut account) in other.accounts {
            for code in account.codes.values_mut() {
                code.gtin = gtins[code.gtin as usize];
            }
            for run in account.queue.runs.iter_mut() {
                run.gtin = gtins[run.gtin as usize];
            }
            self.accounts.insert(name, account);
        }
        let offset = self.next_emission;
        for (id, emission) in other.emissions {
            self.emissions.insert(id + offset, emission);
        }
        self.next_emission += other.next_emission;
        for (at, timer) in other.timers {
            let timer = match timer {
                Timer::Expiry(id) => Timer::Expiry(id + offset),
                timer => timer,
            };
            self.timers.insert((at, timer));
        }
        self.month_end_scheduled |= other.month_end_scheduled;
        self.touched.extend(other.touched);
        let mut retiring: Vec<_> = std::mem::take(&mut self.retiring)
            .into_iter()
            .chain(other.retiring)
            .collect();
        retiring.sort_by_key(|(at, _, _)| *at);
        self.retiring = retiring.into();
        self.ended.extend(other.ended);
    }

    /// Every old worker's share, each keeping this worker's groups; the text of each kept
    /// emission is read from its old worker's segments and written into this worker's
    /// store (its `TextRef` re-pointed), then the shares are merged.
    fn restore_rescaled(&mut self, shares: &[(usize, &[u8])], owned: &dyn Fn(u64) -> bool) -> Result<(), RestoreError> {
        let failed = |error: StoreError| RestoreError {
            what: "the accounts' emission text".into(),
            detail: error.to_string(),
        };
        self.text();
        let mut text = self.text.take().expect("made");
        text.open(&Manifest::empty(), std::iter::empty()).map_err(failed)?;
        let merged = merge_shares::<Accounts>(shares, owned, |old_worker, part| {
            // Each kept emission's text moves into this worker's segments.
            let mut reader = SegmentReader::new(segments_dir(text.place().root(), old_worker));
            for emission in part.emissions.values_mut() {
                let entry = reader.read(emission.text).map_err(failed)?;
                emission.text = text.append(&entry.account, &entry.gtin, &entry.codes);
            }
            part.emission_segments = None;
            Ok(())
        })?;
        let Some(mut restored) = merged else {
            self.text = Some(text);
            return Ok(());
        };
        self.keep_configuration(&mut restored);
        restored.text = Some(text);
        *self = restored;
        Ok(())
    }
}

impl Machine for Accounts {
    const NAME: &'static str = "Accounts: lifecycle, balance, FIFO";
    type In = AccountIn;
    type Out = AccountsOut;

    fn step(&mut self, now: Time, inputs: Vec<AccountIn>, out: &mut Vec<AccountsOut>) {
        let now = ts_of(now);
        self.retire(now);
        if let Some(text) = &mut self.text {
            text.collect_garbage();
        }
        if !self.month_end_scheduled {
            self.month_end_scheduled = true;
            let period = now.period();
            self.timers.insert((period.end(), Timer::MonthEnd(period)));
        }
        self.fire_due(now, out);
        for unit in Self::units(inputs) {
            crate::failure::processing(unit.event_id());
            match unit {
                Unit::Event(placed) => match &placed.event.body {
                    Body::Tariff {
                        effective_from,
                        net_price,
                        vat_rate,
                    } => {
                        // Checked before the broadcast; refused ones never arrive.
                        if let Ok(tariff) = rules::tariff(*effective_from, net_price, vat_rate, placed.effective) {
                            self.tariffs.insert(*effective_from, tariff);
                        }
                    }
                    Body::Payment { .. } | Body::Compensation { .. } => self.credit(&placed, now, out),
                    Body::Refund { .. } => self.refund(&placed, now, out),
                    Body::Terminate => self.terminate(&placed, now, out),
                    Body::Export => self.export(&placed, now, out),
                    _ => unreachable!("order and code events arrive as codes"),
                },
                Unit::Pending(name, pending, ts) => {
                    self.account(&name).pending_orders = pending;
                    self.touch(&name, ts);
                }
                Unit::Created(header, mut codes) => {
                    codes.sort_by_key(|c| c.position);
                    self.create(&header, codes, now, out);
                }
                Unit::Command(header, mut codes) => {
                    codes.sort_by_key(|c| c.position);
                    self.command(&header, codes, now, out);
                }
            }
            // What the unit scheduled behind the watermark is decided before the next unit.
            self.fire_due(now, out);
        }
        debug_assert!(self.timers.first().is_none_or(|(at, _)| *at > now));
        for name in std::mem::take(&mut self.touched) {
            let account = self.accounts.get_mut(&name).expect("touched accounts exist");
            let shown = (
                account.balance,
                account.queue.len() as u64,
                account.unpaid,
                account.pending_orders,
            );
            if account.shown == Some(shown) {
                continue;
            }
            account.shown = Some(shown);
            account.balance_revs += 1;
            out.push(AccountsOut::output(Output::Balance(BalanceRecord {
                account: name,
                balance: shown.0,
                unpaid_codes: shown.1,
                unpaid_amount: shown.2,
                pending_orders: shown.3,
                ts: account.changed_at.unwrap_or(now),
                rev: account.balance_revs,
            })));
        }
    }

    fn next_timer(&self) -> Option<Time> {
        self.timers.first().map(|(at, _)| time_of(*at))
    }

    fn finish(&mut self, _end: Time, _out: &mut Vec<AccountsOut>) {}
}

#[cfg(test)]
mod tests {
    use super::{AccountRules, Accounts, Code, Emission, Timer};
    use crate::flow::code_key;
    use crate::machine::Durable;
    use crate::status::Status;
    use crate::time::Ts;

    #[test]
    fn a_snapshot_encodes_as_save_does_and_the_text_reads_back_after_a_restore() {
        // The copy handed to the writer is byte for byte `save`'s, changes after it do not
        // reach it, and a restore reopens the emission text the manifest names.
        let base = std::env::temp_dir().join(format!("markledger-accounts-snapshot-{}", std::process::id()));
        std::fs::create_dir_all(&base).expect("test dir");
        let place = crate::final_codes::FinalCodes::temporary(&base);
        let mut accounts = Accounts::new(AccountRules::placeholder()).with_emission_text(place.clone());
        let codes: Vec<String> = vec!["0104601234567893215abc".into(), "01\u{1d}21x\"y\\z".into()];
        let text = accounts.text().append("KZ-1", "04601234567893", &codes);
        let gtin = accounts.gtins.intern("04601234567893");
        for code in &codes {
            let state = Code {
                gtin,
                status: Status::Emitted,
            };
            accounts.account("KZ-1").codes.insert(code_key(code), state);
        }
        let emission = Emission {
            account: "KZ-1".into(),
            gtin: "04601234567893".into(),
            text,
        };
        accounts.emissions.insert(0, emission);
        accounts.timers.insert((Ts(1_000), Timer::Expiry(0)));
        let saved = accounts.save();
        let snapshot = accounts.snapshot();
        accounts.account("KZ-2").balance_revs = 3;
        accounts.emissions.clear();
        assert_eq!(snapshot.encode(), saved);
        let mut restored = Accounts::new(AccountRules::placeholder()).with_emission_text(place);
        restored.restore(&saved).expect("restores");
        let reference = restored.emissions[&0].text;
        assert_eq!(restored.text().take(reference).codes, codes);
        assert_eq!(restored.accounts["KZ-1"].codes.len(), 2);
        assert!(!restored.accounts.contains_key("KZ-2"));
        let _ = std::fs::remove_dir_all(&base);
    }
    /// Issue 18: accounts saved by 2 workers restore on 1 and on 3: each new worker holds
    /// exactly the accounts of its key groups, their codes' GTINs re-interned (the old
    /// workers interned them in other orders), their emissions renumbered with their expiry
    /// timers, and each emission's text copied from its old worker's segments into its own.
    #[test]
    fn accounts_saved_by_two_workers_restore_their_groups_on_one_and_three() {
        use crate::flow::{route, worker_of_group};
        let root = std::env::temp_dir().join(format!("markledger-accounts-rescale-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let place = crate::final_codes::FinalCodes::in_state(&root);
        let name = |i: usize| format!("KZ-{i:02}");
        let gtin_of = |i: usize| format!("0460123456789{}", i % 3);
        let codes_of = |i: usize| -> Vec<String> { (0..3).map(|c| format!("code-{i}-{c}")).collect() };
        let owner = |i: usize, workers: usize| worker_of_group(route(&name(i)), workers);
        let mut saved = Vec::new();
        for worker in 0..2 {
            let mut accounts = Accounts::new(AccountRules::placeholder()).with_emission_text(place.clone());
            accounts.text().attach(worker, None);
            if worker == 1 {
                accounts.gtins.intern("00000000000000");
            }
            for i in (0..24).filter(|i| owner(*i, 2) == worker) {
                let gtin = accounts.gtins.intern(&gtin_of(i));
                let text = accounts.text().append(&name(i), &gtin_of(i), &codes_of(i));
                for code in codes_of(i) {
                    let state = Code {
                        gtin,
                        status: Status::Emitted,
                    };
                    accounts.account(&name(i)).codes.insert(code_key(&code), state);
                }
                let id = accounts.next_emission;
                accounts.next_emission += 1;
                let emission = Emission {
                    account: name(i),
                    gtin: gtin_of(i),
                    text,
                };
                accounts.emissions.insert(id, emission);
                accounts.timers.insert((Ts(1_000 + i as i64), Timer::Expiry(id)));
            }
            saved.push((worker, accounts.save()));
        }
        let shares: Vec<(usize, &[u8])> = saved.iter().map(|(worker, state)| (*worker, &state[..])).collect();
        for workers in [1usize, 3] {
            for worker in 0..workers {
                let mut accounts = Accounts::new(AccountRules::placeholder()).with_emission_text(place.clone());
                accounts.text().attach(worker, None);
                accounts
                    .restore_rescaled(&shares, &|group| worker_of_group(group, workers) == worker)
                    .expect("restored");
                let mine: Vec<usize> = (0..24).filter(|i| owner(*i, workers) == worker).collect();
                let held: Vec<String> = accounts.accounts.keys().cloned().collect();
                assert_eq!(held, mine.iter().map(|i| name(*i)).collect::<Vec<_>>());
                assert_eq!(accounts.emissions.len(), mine.len());
                for (at, timer) in accounts.timers.clone() {
                    let Timer::Expiry(id) = timer else { continue };
                    let emission = accounts.emissions[&id].clone();
                    let i: usize = emission.account[3..].parse().expect("KZ-NN");
                    assert_eq!(at, Ts(1_000 + i as i64), "the expiry of {}", emission.account);
                    assert_eq!(accounts.text().take(emission.text).codes, codes_of(i));
                    for code in codes_of(i) {
                        let gtin = accounts.accounts[&name(i)].codes[&code_key(&code)].gtin;
                        assert_eq!(accounts.gtins.name(gtin), gtin_of(i));
                    }
                }
            }
        }
        let _ = std::fs::remove_dir_all(&root);
    }
}
